//! Moving logical shards between node sets online (feature `postgres`).
//!
//! [`ShardMove`] moves one or more logical shards of hash-partitioned
//! tables from a source node set to a target node set while the
//! application keeps writing through its [`ShardRouter`]s:
//!
//! 1. **Prepare**: claim the shards in the metadata database, create the
//!    target's tables (copied from the source, or the host's DDL) and the
//!    helper objects.
//! 2. **Copy**: a publication and a logical replication slot on the
//!    source, a cut that ties a snapshot to the slot's start (a `SHARE` lock
//!    on the moved partitions for a few milliseconds), then binary `COPY`
//!    of every partition, in parallel, inside that snapshot.
//! 3. **Catch-up**: a subscription on the target (`create_slot = false`,
//!    `copy_data = false`) applies the changes since the cut, until it is
//!    less than `max_lag_bytes` behind.
//! 4. **Switch**: fence the shards' writes in the map (routers hold them),
//!    install a guard trigger on the source partitions (writes routed with
//!    a stale map fail with a retryable SQLSTATE), wait until a marker row
//!    written after the guard has been applied on the target, then switch
//!    the map in one transaction (version bump + `NOTIFY`).
//! 5. **Verify** row counts and checksums per table, **clean up** the
//!    replication objects and the source's rows (the guard stays).
//!
//! Every step stores the move's state; running the same move again resumes
//! it (a copy interrupted by a crash restarts). A [`CancelToken`] or
//! [`ShardMove::cancel`] undoes a move before its switch. See
//! `docs/ARCHITECTURE.md` for what a crash in each phase leaves behind.
//!
//! Routers follow the map through a [`ShardMapWatcher`]; writes go through
//! [`ShardRouter::write`], which holds writes to fenced shards and retries
//! a write the old owner refused.
//!
//! # Requirements
//!
//! - Tables are `PARTITION BY HASH` on the shard key with one partition per
//!   logical shard (`MODULUS` = the map's shard count); partitions keep
//!   their names on the target.
//! - `wal_level = logical` on the source; the executor's role may create
//!   replication slots and publications there, and subscriptions on the
//!   target (superuser in PostgreSQL 15).
//! - The source's URL must be reachable from the target server (the
//!   subscription connects with it).
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use sqlx::PgPool;
//! use sysmanage_db::shard::moves::{Endpoint, MoveSpec, ShardMapStore, ShardMapWatcher, ShardMove};
//! use sysmanage_db::shard::{EpochTarget, PgHash, ShardId, ShardRouter};
//!
//! # async fn demo(a: PgPool, b: PgPool, a_url: &str, b_url: &str) -> Result<(), sysmanage_db::Error> {
//! // The map lives in a metadata database (here: node set a's).
//! let store = ShardMapStore::open(a.clone(), "orders").await?;
//! let map = store.init(&["a"; 8]).await?;
//! let router = ShardRouter::builder(PgHash::new(8)?)
//!     .node_set("a", a.clone())
//!     .node_set("b", b.clone())
//!     .shard_map(map)
//!     .build()?;
//! let _watcher = ShardMapWatcher::start(
//!     store.clone(),
//!     vec![Arc::new(router.clone()) as Arc<dyn EpochTarget>],
//!     Duration::from_secs(1),
//! )
//! .await?;
//!
//! let spec = MoveSpec::new(
//!     "orders_to_b",
//!     [ShardId(1), ShardId(3), ShardId(5), ShardId(7)],
//!     ["orders"],
//!     Endpoint::new("a", a_url),
//!     Endpoint::new("b", b_url),
//! );
//! let report = ShardMove::builder(store, spec)
//!     .on_progress(|p| println!("{} rows={} lag={:?} eta={:?}", p.phase, p.rows_copied, p.lag_bytes, p.eta))
//!     .build()?
//!     .run()
//!     .await?;
//! assert_eq!(report.mismatches().count(), 0);
//! assert_eq!(router.node_set_name(ShardId(1))?, "b");
//! # Ok(())
//! # }
//! # fn main() { let _ = demo; }
//! ```
//!
//! [`ShardRouter`]: crate::shard::ShardRouter
//! [`ShardRouter::write`]: crate::shard::ShardRouter::write

mod catalog;
mod catchup;
mod cleanup;
mod copy;
mod copy_format;
mod executor;
mod hook;
mod phase;
mod prepare;
mod progress;
mod report;
mod spec;
mod sql;
mod store;
mod switch;
mod verify;
mod watcher;

pub use executor::{ProgressFn, ShardMove, ShardMoveBuilder};
pub use hook::{BeforePhase, CancelToken, PhaseGuardFn};
pub use phase::{MoveState, Phase};
pub use progress::{MoveProgress, eta, lag_eta};
pub use report::{MoveReport, TableCheck};
pub use spec::{Endpoint, MoveOptions, MoveSpec, SchemaSource};
pub use sql::SCHEMA;
pub use store::{MoveStatus, NOTIFY_CHANNEL, ShardMapStore};
pub use watcher::{DEFAULT_POLL_INTERVAL, ShardMapWatcher};
