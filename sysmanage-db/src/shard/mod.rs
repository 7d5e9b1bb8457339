//! Sharding: keys to logical shards exactly as PostgreSQL partitions them,
//! logical shards on physical node sets, fan-out with explicit partial
//! failure, merge helpers and resharding plans.
//!
//! # The pieces
//!
//! | item | what |
//! |---|---|
//! | [`ShardKey`] | the value sharded on: `int2`/`int4`/`int8`, `text`, `bytea`, `uuid` |
//! | [`ShardFunction`] | key → logical shard; built-ins [`PgHash`], [`JumpHash`], [`Rendezvous`], [`RangeShards`], [`ListShards`] |
//! | [`NodeSet`] | where a shard's data lives: a `PgPool` (feature `postgres`), a [`MemoryNodeSet`], later a replica router |
//! | [`ShardRouter`] | shard for a key, run a closure on a key's shard, group keys, fan out with bounded concurrency and per-shard deadlines |
//! | [`FanOut`] | every shard's outcome; [`FanOut::into_complete`] or [`FanOut::into_partial`] |
//! | [`merge_sorted`], [`concat()`], [`combine_count`] … | merging per-shard results |
//! | [`ReshardPlan`] | dry run of a topology change: which keys move where, and how many |
//! | [`ShardMap`] | the versioned placement every router follows (routing epochs); [`ShardRouter::write`] holds writes to fenced shards and retries writes a stale map sent to the old owner |
//! | `moves` (feature `postgres`) | the online shard-move executor: copy, logical-replication catch-up, write fence, atomic switch, verify, clean up; `ShardMapStore` and `ShardMapWatcher` for the map |
//!
//! # PostgreSQL compatibility
//!
//! [`PgHash`] with modulus `n` sends every key to the shard whose number is
//! the `REMAINDER` of the partition PostgreSQL itself stores the key in, for
//! a table `PARTITION BY HASH (key)` with partitions `MODULUS n`. It is the
//! same computation PostgreSQL runs (`hash*extended(key, HASH_PARTITION_SEED)`,
//! folded with `hash_combine64`, modulo `n`), ported bit for bit, so a host
//! can move a sharded table into native partitions (or the reverse) without
//! moving a row, and two processes never disagree about where a key lives.
//! The integration tests check every row against the partition PostgreSQL 15
//! chose for it (`tableoid`), for moduli 3, 7 and 8: 100,000+ keys each of
//! `int4`, `int8`, `text`, `char(n)`, `bytea`, `uuid` and a two-column key with
//! `NULL`s, and the whole `int2` domain.
//!
//! PostgreSQL reads text, bytea and uuid bytes in native-endian words, so a
//! big-endian server (s390x) places those keys differently; `PgHash` always
//! computes what little-endian servers (x86-64, AArch64) do, on any platform.
//!
//! The values below are what PostgreSQL 15 answers to
//! `satisfies_hash_partition(t, 8, remainder, value)`:
//!
//! ```
//! use sysmanage_db::shard::{PgHash, ShardFunction, ShardId, ShardKey};
//!
//! let f = PgHash::new(8)?;
//! assert_eq!(f.shard_for(&ShardKey::Int(42))?, ShardId(2));
//! assert_eq!(f.shard_for(&ShardKey::Text("hello"))?, ShardId(4));
//! let id = ShardKey::parse_uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")?;
//! assert_eq!(f.shard_for(&id)?, ShardId(0));
//! # Ok::<(), sysmanage_db::Error>(())
//! ```
//!
//! # Fan-out never drops a shard silently
//!
//! ```
//! use std::time::Duration;
//! use sysmanage_db::shard::{merge_sorted, MemoryNodeSet, PgHash, ShardId, ShardRouter};
//! use sysmanage_db::Error;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Error> {
//! let sets: Vec<MemoryNodeSet<i64>> =
//!     (0..4).map(|i| MemoryNodeSet::new(format!("db{i}"))).collect();
//! let mut builder = ShardRouter::builder(PgHash::new(4)?).shard_timeout(Duration::from_secs(1));
//! for set in &sets {
//!     builder = builder.node_set(set.name(), set.clone());
//! }
//! let router = builder.build()?;
//! for id in 0..100_i64 {
//!     router.node_set_for(id)?.insert(id);
//! }
//! sets[2].set_down("connection refused");
//!
//! // Each shard returns its 5 smallest ids, sorted.
//! let top5 = |ctx: sysmanage_db::shard::ShardCtx<MemoryNodeSet<i64>>| async move {
//!     ctx.nodes()
//!         .query(|rows| {
//!             let mut v = rows.to_vec();
//!             v.sort();
//!             v.truncate(5);
//!             v
//!         })
//!         .await
//! };
//!
//! // Collect-partial: values from the healthy shards, the failure named.
//! let partial = router.fan_out(top5).await.into_partial();
//! assert_eq!(partial.failed_shards(), vec![ShardId(2)]);
//! assert_eq!(partial.failed[0].reason, "node set db2 is down: connection refused");
//! let merged = merge_sorted(partial.into_values(), |v| *v, Some(5))?;
//! assert_eq!(merged.len(), 5);
//!
//! // Fail-fast: a typed error naming the shard.
//! match router.fan_out_fail_fast(top5).await {
//!     Err(Error::ShardFailed(failure)) => assert_eq!(failure.shard, ShardId(2)),
//!     other => panic!("expected a shard failure, got {other:?}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Observability
//!
//! [`ShardRouter::stats`] returns a serialisable snapshot: per shard, its node
//! set, the node set's [`NodeSetStatus`], and query, error and timeout counts
//! with the last error. `tracing` names (stable):
//!
//! | name | kind | fields |
//! |---|---|---|
//! | `sysmanage_db.shard` | span (debug) around one shard's work | `shard`, `node_set`, `op` (`run` / `fan_out`) |
//! | `sysmanage_db.shard.fan_out` | span (debug) around a fan-out | `shards`, `failed` |
//! | `sysmanage_db.shard.failed` | event (warn) | `shard`, `node_set`, `kind`, `reason` |
//! | `sysmanage_db.shard.epoch` | event (debug) | `epoch`: the router applied a newer [`ShardMap`] |
//!
//! # Bounds
//!
//! A fan-out works on at most [`DEFAULT_MAX_CONCURRENCY`] shards at a time and
//! gives each [`DEFAULT_SHARD_TIMEOUT`] unless configured otherwise; both are
//! set on [`ShardRouterBuilder`]. Shard functions, routers and plans have at
//! most [`MAX_SHARDS`] logical shards. Every built-in shard function validates
//! its configuration when deserialised exactly as its constructor does.

mod epoch;
mod function;
mod key;
mod merge;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod moves;
mod node_set;
mod pg_hash;
mod plan;
mod router;
mod routing;

pub use epoch::{
    SQLSTATE_FENCED, SQLSTATE_MOVED, ShardMap, ShardPlacement, WriteRejection, classify_rejection,
    rejection_for_sqlstate,
};

pub use function::{
    JumpHash, KeyRange, ListShards, ListShardsBuilder, MAX_SHARDS, RangeShards, RangeShardsBuilder,
    Rendezvous, ShardFunction,
};
pub use key::{OwnedShardKey, ShardId, ShardKey};
pub use merge::{
    combine_avg, combine_count, combine_max, combine_min, combine_sum, concat, merge_sorted,
};
pub use node_set::{MemoryNodeSet, NodeSet, NodeSetDown, NodeSetHealth, NodeSetStatus};
pub use pg_hash::{
    HASH_PARTITION_SEED, PgHash, hash_bytes_extended, hash_combine64, hash_int8_extended,
    hash_key_extended, hash_uint32_extended, partition_hash, partition_hash_columns,
};
pub use plan::{DEFAULT_SAMPLE_KEYS, Estimate, KeyFlow, KeyLoss, ReshardPlan, Topology};
#[doc(hidden)]
pub use router::failure_list;
pub use router::{
    DEFAULT_FENCE_HOLD, DEFAULT_MAX_CONCURRENCY, DEFAULT_SHARD_TIMEOUT, EpochTarget, FailureKind,
    FanOut, Partial, ShardCtx, ShardFailure, ShardOutcome, ShardRouter, ShardRouterBuilder,
    ShardRouterStats, ShardStats,
};
