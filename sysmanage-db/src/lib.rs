//! Replica-aware read routing and PostgreSQL-compatible sharding.
//!
//! Two routers, each usable alone:
//!
//! - [`ReplicaRouter`] sends writes to the primary and each read to a healthy,
//!   fresh-enough replica chosen for the read's [`Consistency`] (any / bounded
//!   staleness / at least a [`WalToken`] for read-your-writes / primary), with
//!   a background monitor that bans, re-admits and detects promotions. See
//!   [`replica`].
//! - [`ShardRouter`] maps keys to logical shards exactly as PostgreSQL's
//!   `PARTITION BY HASH` does ([`PgHash`]), or by jump hash, rendezvous,
//!   ranges or lists; places logical shards on node sets (a `PgPool` or a
//!   `ReplicaRouter`); and fans queries out with bounded concurrency,
//!   per-shard deadlines and partial failures that are always named. See
//!   [`shard`].
//!
//! Every backend is behind a feature: the in-memory nodes are always there,
//! PostgreSQL through sqlx comes with `postgres`.
//!
//! # Example
//!
//! Read-your-writes over an in-memory cluster whose second replica has its
//! replay paused, then keys placed exactly where PostgreSQL would put them:
//!
//! ```
//! use sysmanage_db::replica::{Consistency, MemoryCluster, NodeSpec, ReplicaRouter};
//! use sysmanage_db::shard::MemoryNodeSet;
//! use sysmanage_db::{PgHash, ShardId, ShardKey, ShardRouter};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sysmanage_db::Error> {
//! let cluster = MemoryCluster::new();
//! let (primary, fast, paused) = (cluster.add_primary(), cluster.add_replica(), cluster.add_replica());
//! paused.pause_replay();
//! let router = ReplicaRouter::builder()
//!     .primary(NodeSpec::new("primary", primary))
//!     .replica(NodeSpec::new("fast", fast))
//!     .replica(NodeSpec::new("paused", paused))
//!     .build()
//!     .await?;
//!
//! // The token is taken after the write committed; only replicas that have
//! // replayed it may serve the read.
//! let ((), token) = router
//!     .write_with_token(|db| async move { db.write("greeting", "hello").map(drop) })
//!     .await?;
//! cluster.replicate();
//! router.probe_all().await;
//! let value = router
//!     .read(Consistency::at_least(token), |db| async move { db.get("greeting") })
//!     .await?;
//! assert_eq!(value.as_deref(), Some("hello"));
//! assert_eq!(router.pick_replica(&Consistency::at_least(token)).as_deref(), Some("fast"));
//!
//! // `PARTITION BY HASH (id)` with `MODULUS 4` stores id 42 in remainder 2.
//! let shards = ShardRouter::builder(PgHash::new(4)?)
//!     .node_set("db0", MemoryNodeSet::<i64>::new("db0"))
//!     .node_set("db1", MemoryNodeSet::<i64>::new("db1"))
//!     .build()?;
//! assert_eq!(shards.shard_for(ShardKey::Int(42))?, ShardId(2));
//! # Ok(())
//! # }
//! ```
//!
//! # Validation
//!
//! Configurations are validated when a router is built, each field against
//! a documented range, with [`Error::InvalidConfig`] naming it: replica
//! router durations at most one day (intervals and timeouts at least 1 ms),
//! pool sizes 1–10,000, pool timeouts 1 ms – 1 day, fan-out concurrency
//! 1–65,536, shard timeouts 1 ms – 1 day, at most
//! [`MAX_SHARDS`](shard::MAX_SHARDS) logical shards, weights finite and
//! non-negative, and connection URLs `postgres://` / `postgresql://` only.
//! Text inputs (WAL positions and tokens, timeline history files) are
//! parsed strictly into typed errors. Nothing a validated configuration
//! allows can overflow later; what is clamped rather than refused: ban
//! deadlines past what `Instant` can hold, and lag figures beyond `u64`.
//!
//! # Tracing
//!
//! Every target starts with `sysmanage_db`, so
//! `RUST_LOG=sysmanage_db=debug` shows them all.
//!
//! | target | events |
//! |---|---|
//! | `sysmanage_db::replica` | bans, lag bans, role changes, divergence, split brain, retries and fallbacks (the table in [`replica`]) |
//! | `sysmanage_db::shard::router` | span `sysmanage_db.shard` per shard (`shard`, `node_set`, `op`), span `sysmanage_db.shard.fan_out`, event `sysmanage_db.shard.failed` (warn), event `sysmanage_db.shard.epoch` (debug, a new routing epoch) |
//! | `sysmanage_db::shard::moves` | events `sysmanage_db.shard.move.progress`, `sysmanage_db.shard.move.fence_retry` (debug), `sysmanage_db.shard.map_poll_failed` / `map_load_failed` (debug), `sysmanage_db.shard.map_rejected` (warn) |
//!
//! # Feature flags
//!
//! - `postgres`: PostgreSQL nodes through `sqlx` (tokio runtime): `replica::pg_node`,
//!   `NodeSet` for `sqlx::PgPool`; `shard::moves`: the online shard-move executor, the
//!   shard-map store and its watcher; leader election (`lease::PgLease`, an advisory lock plus
//!   a lease row with a fencing epoch) and the fenced `state_store::PgStateStore` for
//!   `sysmanage_core::lease`.
//! - `postgres-tls`: TLS to the nodes (`sslmode` `require` / `verify-ca` / `verify-full`, a CA,
//!   a client certificate) through `replica::PgNodeOptions::tls` or the URL's `sslmode`,
//!   `sslrootcert`, `sslcert` and `sslkey` parameters; rustls with the ring provider.
//! - `integration`: the tests against the local topology (`scripts/services up`).
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

pub mod error;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod lease;
pub mod replica;
pub mod shard;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod state_store;
pub mod telemetry;

pub use error::{Error, Result};
pub use replica::{Consistency, NodeSpec, ReplicaConfig, ReplicaRouter, WalToken};
pub use shard::{FanOut, NodeSet, PgHash, ShardFunction, ShardId, ShardKey, ShardRouter};
