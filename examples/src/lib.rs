//! Helpers and demos shared by the sysmanage-rs examples.
//!
//! Each `*_demo` module shows one crate on its embedded backend; the
//! `quickstart` example runs them all, and the live examples reuse them.

pub mod cache_demo;
pub mod capacity_demo;
#[cfg(feature = "config")]
pub mod host_config;
pub mod replay_report;
pub mod replica_demo;
pub mod scaling_demo;
pub mod secure;
pub mod sharding_demo;
pub mod tiered_demo;

/// Installs a `tracing` subscriber that honours `RUST_LOG` (default: `warn`).
///
/// Only binaries install subscribers; the libraries never do.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Prints a heading for one section of an example's output.
pub fn section(title: &str) {
    println!("\n== {title} ==");
}

/// Serialises `value` as pretty JSON for display.
pub fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("<unserialisable: {e}>"))
}
