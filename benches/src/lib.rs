//! Criterion benchmarks for the sysmanage-rs crates; see `docs/BENCHMARKS.md`.
//!
//! Run them with `cargo bench -p sysmanage-benches`.
