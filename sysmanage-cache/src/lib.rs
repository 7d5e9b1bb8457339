//! Cluster-aware caching for sysmanage-rs: one [`ClusterCache`] trait with a
//! Redis Cluster backend and an in-memory backend of identical semantics,
//! slot-aware multi-key operations, node statistics, a cache scaling
//! advisor and a session store.
//!
//! | module | what |
//! |---|---|
//! | [`cache`] | [`ClusterCache`] (bytes in/out), [`SetOptions`] (TTL, `NX`/`XX`), [`Limits`], [`Typed`] serde helpers over a [`Codec`] (JSON by default) |
//! | [`memory`] | [`MemoryCache`]: TTLs against an injectable clock, `NX`/`XX`, per-slot key counts, a memory bound with LRU or `noeviction` |
//! | `redis` (feature `redis`) | `RedisCache` on fred 10: multi-key operations split by slot, batched per node, pipelined, nodes concurrently; timeouts, retries, redirections, topology refresh and events |
//! | `redis::lease`, `redis::state_store` (feature `redis`) | `RedisLease` (a `SET NX PX` lease on one slot with fencing tokens, for `sysmanage_core::lease::Elector`) and the fenced `RedisStateStore` |
//! | `redis::scale` (feature `redis`) | `Scaler`: add and remove primaries and move slots online — a dry-run plan (balanced by slots, keys or bytes), the migration protocol, progress events, cancel, resume from the cluster's own state, typed errors that never lose a key |
//! | [`slot`](mod@slot) | [`slot()`], [`hash_tag`], [`same_slot`], [`group_by_slot`]: CRC16/XMODEM mod 16384 with Redis' hash-tag rule |
//! | [`topology`] | [`RoutingSnapshot`](topology::RoutingSnapshot) (slot → node) and typed [`TopologyEvent`](topology::TopologyEvent)s |
//! | [`stats`] | node stats from `INFO`, `CLUSTER INFO`/`CLUSTER NODES`, the healthy-node ratio |
//! | [`advisor`] | [`advise`](advisor::advise): scale out / in / rebalance with reasons and `redis-cli --cluster` steps; with `redis`, `ScaleTarget::from_recommendation` acts on it |
//! | [`session`] | [`SessionStore`](session::SessionStore) over any cache: 128-bit ids, sliding expiry, revoke-all per user |
//! | [`tiered`] | [`TieredCache`]: a bounded in-process L1 (moka) over any cache, jittered TTLs, negative caching, one load per key under a stampede, XFetch; with `redis`, invalidation by RESP3 client tracking |
//!
//! # Example
//!
//! Multi-key operations across slots, typed values and a session, on the
//! in-memory backend (the Redis backend takes the same calls):
//!
//! ```
//! use std::time::Duration;
//! use sysmanage_cache::session::{SessionConfig, SessionStore};
//! use sysmanage_cache::{CacheError, ClusterCache, MemoryCache, SetOptions, Typed, slot};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), CacheError> {
//! let cache = MemoryCache::new();
//! cache.mset(&[("user:1", "ada"), ("user:2", "grace")], Some(Duration::from_secs(60))).await?;
//! let got = cache.mget(&["user:2", "user:3", "user:1"]).await?;
//! assert_eq!(got[0].as_ref().unwrap().as_deref(), Some(&b"grace"[..]));
//! assert!(matches!(got[1], Ok(None)));
//!
//! // Keys with one hash tag share a slot, so they live on one node.
//! assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
//!
//! // Bad input is a typed error, never a panic or a silent miss.
//! let none: [&str; 0] = [];
//! assert!(matches!(cache.mget(&none).await, Err(CacheError::EmptyKeys { .. })));
//! assert!(matches!(
//!     cache.set(b"k", b"v", SetOptions::ttl(Duration::ZERO)).await,
//!     Err(CacheError::InvalidTtl { .. })
//! ));
//!
//! let typed = Typed::new(cache.clone());
//! typed.set(b"config", &vec![1, 2, 3], SetOptions::default()).await?;
//! assert_eq!(typed.get::<Vec<u32>>(b"config").await?, Some(vec![1, 2, 3]));
//!
//! let sessions = SessionStore::new(cache, SessionConfig::default())?;
//! let s = sessions.create("user-1", &"dashboard").await?;
//! assert!(sessions.touch(&s.id).await?);
//! # Ok(())
//! # }
//! ```
//!
//! With the `redis` feature, `RedisCache::connect(RedisConfig::new(["127.0.0.1:7000"]))`
//! gives the same trait on a Redis Cluster.
//!
//! # Semantics worth knowing
//!
//! * A failure is never a miss: multi-key operations return one result per
//!   key, in input order, and a key whose node failed carries a typed error
//!   ([`CacheError::NodeBatch`], [`CacheError::Unavailable`],
//!   [`CacheError::Timeout`]).
//! * TTLs have millisecond resolution; a zero TTL is rejected.
//! * `mset` without a TTL writes each slot's pairs atomically (one `MSET`
//!   per slot); with a TTL each pair is its own `SET … PX`.
//!
//! # Validation
//!
//! Settings are validated when a cache, tiered cache or session store is
//! built, each against a documented range, with
//! [`CacheError::InvalidArgument`] naming the field: Redis timeouts and
//! intervals 1 ms – 1 day, retry budget and refresh gap at most one day,
//! 1–1,000 seed nodes and redirections, channel capacities up to 2^20, L1
//! `local_ttl` 1 ms – 1 day, session lifetimes 1 ms – 365 days, limits up
//! to Redis' 512 MiB bulk size. Per-call inputs (keys, values, TTLs,
//! increments) are checked on each call into typed errors (`incr` overflow
//! is [`CacheError::Overflow`]). Clamped rather than refused: expiry
//! deadlines past what `Instant` can hold.
//!
//! # Tracing
//!
//! Every target starts with `sysmanage_cache`, so
//! `RUST_LOG=sysmanage_cache=debug` shows them all.
//!
//! | target | level | event |
//! |---|---|---|
//! | `sysmanage_cache::redis::retry` | debug | a transient error before a retry (`op`, `attempt`, `error`) |
//! | `sysmanage_cache::redis::topology` | debug / info | a failed refresh (debug); a topology event (info) |
//! | `sysmanage_cache::tiered` | debug | L1 flushes (`reason`), origin load failures, L2 write-back failures |
//! | `sysmanage_cache::tiered::tracking` | info / warn | tracking subscribed / lost per node (`node`, `error`) |
//! | `sysmanage_cache::redis::scale` | info / debug | scaling phases, nodes joined / forgotten, the plan, the end of a run (info); each slot and progress (debug) |
//! | `sysmanage_cache::redis::scale::migrate` | debug | a failed `MIGRATE` batch, a `BUSYKEY` resolved, a target not serving yet |
//!
//! # Feature flags
//!
//! * `redis`: the Redis Cluster backend (fred 10, with its `i-cluster` and
//!   `i-keys` interfaces).
//! * `integration`: the live-cluster tests (`scripts/services up` first).
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod advisor;
pub mod cache;
pub mod error;
mod join;
pub mod memory;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub mod session;
pub mod slot;
pub mod stats;
pub mod telemetry;
pub mod tiered;
pub mod topology;

pub use cache::{
    BoxFuture, ClusterCache, Codec, DynClusterCache, JsonCodec, Limits, SetCondition, SetOptions,
    Ttl, Typed, check_ttl,
};
pub use error::{CacheError, KeyResult, Result, SharedError};
pub use memory::{Eviction, MemoryCache, MemoryCacheBuilder, MemoryConfig, MemoryStats};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{ClusterCheck, RedisCache, RedisConfig, RedisCounters};
pub use slot::{SLOT_COUNT, group_by_slot, hash_tag, same_slot, slot};
pub use tiered::{TieredCache, TieredConfig, TieredStats};
