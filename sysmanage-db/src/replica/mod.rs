//! Health-, lag- and consistency-aware read routing over PostgreSQL replicas.
//!
//! A [`ReplicaRouter`] sends writes (and transactions) to the primary and
//! each read to a replica that qualifies for the read's [`Consistency`]:
//!
//! | level | a replica qualifies when |
//! |---|---|
//! | [`Consistency::Any`] | healthy and within the router's maximum lag (lag bans have hysteresis) |
//! | [`Consistency::BoundedStaleness`] | its measured lag is within the read's bound (bytes and/or time) |
//! | [`Consistency::AtLeast`] | its replay position has reached the caller's [`WalToken`] (read-your-writes), optionally after waiting |
//! | [`Consistency::Primary`] | never: the primary serves |
//!
//! Among qualifying replicas of the lowest locality tier, a pluggable
//! [`Strategy`] picks one: power of two choices over peak-EWMA latency ×
//! (in-flight + 1) by default, least outstanding requests, SysManage's
//! latency-weighted random, or round robin. When none qualifies the
//! [`NoReplicaPolicy`] decides: fall back to the primary (default), fail with
//! [`Error::NoReplica`](crate::Error::NoReplica), or ignore bans.
//!
//! A background monitor probes every node each
//! [`monitor_interval`](ReplicaConfig::monitor_interval) with one query
//! (role, WAL positions, replay age). Lag in bytes is the primary's WAL
//! position minus the replica's replay position; time lag counts only when
//! bytes are behind, so an idle primary never makes replicas look stale.
//! Failed probes and connection errors ban a node with exponential backoff;
//! only a successful probe re-admits it (and what was known of its replay
//! position is forgotten, since a restarted standby may come back behind).
//! A promoted standby takes the writes once the old primary is in recovery
//! or has failed [`primary_failure_probes`](ReplicaConfig::primary_failure_probes)
//! probes in a row; an old primary that comes back writable never gets the
//! writes back unless it was first seen in recovery. A read that fails at the
//! connection level runs once more on another node at once, then keeps
//! re-routing with a short backoff for up to
//! [`read_retry_budget`](ReplicaConfig::read_retry_budget), so neither a
//! replica dying under load nor a primary failing over costs a failed read.
//!
//! Timelines: a [`WalToken`] is a WAL position *on a timeline history*. After
//! a promotion the router reads the new primary's timeline history file and
//! classifies every replica ([`history_relation`]): on the primary's
//! timeline, behind on an earlier one (a prefix of the history: it serves
//! until it lags), or diverged (it replayed WAL the new history does not
//! contain; it serves nothing, event `replica.diverged`). A token qualifies
//! a replica only when the token is part of the primary's history
//! ([`token_on_history`]) and the replica replayed past it on that history;
//! read-your-writes reads never wait for a replica that cannot reach the
//! token (diverged, on an earlier timeline, or not streaming).
//!
//! Decisions are pure functions ([`pick`], [`NodeHealth`], [`lag_bans`],
//! [`choose_primary`], [`PrimaryHistory`]) over an explicit `now`; the router
//! and its monitor are thin drivers around them. The in-memory backend
//! ([`MemoryCluster`]) exercises all of it without servers; the `postgres`
//! feature adds `sqlx::PgPool` nodes ([`pg_node`]).
//!
//! # Example
//!
//! Read-your-writes over an in-memory cluster with one paused replica:
//!
//! ```
//! use sysmanage_db::replica::{Consistency, MemoryCluster, NodeSpec, ReplicaRouter};
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
//! let ((), token) = router
//!     .write_with_token(|db| async move { db.write("greeting", "hello").map(drop) })
//!     .await?;
//! cluster.replicate(); // "fast" replays the write, "paused" does not
//! router.probe_all().await;
//!
//! // Only a replica that has replayed the token may serve this read.
//! let read_your_write = Consistency::at_least(token);
//! assert_eq!(router.pick_replica(&read_your_write).as_deref(), Some("fast"));
//! let value = router.read(read_your_write, |db| async move { db.get("greeting") }).await?;
//! assert_eq!(value.as_deref(), Some("hello"));
//!
//! // The token survives a cookie.
//! let cookie = token.to_string();
//! assert_eq!(cookie.parse::<sysmanage_db::replica::WalToken>()?, token);
//! # Ok(())
//! # }
//! ```
//!
//! With PostgreSQL (feature `postgres`), nodes are `sqlx::PgPool`s and the
//! closures run ordinary sqlx queries:
//!
//! ```no_run
//! # #[cfg(not(feature = "postgres"))]
//! # fn main() {}
//! # #[cfg(feature = "postgres")]
//! # #[tokio::main]
//! # async fn main() -> Result<(), sysmanage_db::Error> {
//! use sysmanage_db::replica::{Consistency, PgNodeOptions, ReplicaRouter, pg_node};
//! let opts = PgNodeOptions::default();
//! let router = ReplicaRouter::builder()
//!     .primary(pg_node("primary", "postgres://app:pw@db-0:5432/app", &opts)?)
//!     .replica(pg_node("standby1", "postgres://app:pw@db-1:5432/app", &opts)?)
//!     .build()
//!     .await?;
//! let (_, token) = router
//!     .write_with_token(|pool| async move {
//!         sqlx::query("insert into notes(body) values ($1)").bind("hi").execute(&pool).await
//!     })
//!     .await?;
//! let n: i64 = router
//!     .read(Consistency::at_least(token), |pool| async move {
//!         sqlx::query_scalar("select count(*) from notes").fetch_one(&pool).await
//!     })
//!     .await?;
//! # let _ = n;
//! # Ok(())
//! # }
//! ```
//!
//! # Tracing
//!
//! Target `sysmanage_db::replica`. Spans `sysmanage.replica.read` and
//! `sysmanage.replica.write` (debug; fields `consistency`, `node`, `retry`)
//! wrap each query. Events carry a stable `event` field:
//!
//! | event | level | when |
//! |---|---|---|
//! | `replica.ban` | warn | a node is banned (`reason`, `until`) |
//! | `replica.unban` | info | a successful probe re-admits it |
//! | `replica.lag_ban` / `replica.lag_unban` | warn / info | lag crosses the limits |
//! | `replica.role_change` | warn | writes are re-pointed to a new primary |
//! | `replica.diverged` | warn | a replica replayed WAL the primary's timeline history does not contain (`timeline`, `replay`, `primary_timeline`); it serves no reads |
//! | `replica.diverged_resolved` | info | a diverged replica is on the primary's history again (rebuilt or re-pointed) |
//! | `replica.history_unavailable` | debug | the primary's timeline history file cannot be read (see [`NodePool::timeline_history`]) |
//! | `replica.split_brain` | warn | more than one node answers as writable (`writable`, `primary`); once per episode |
//! | `replica.split_brain_resolved` | info | at most one node answers as writable again |
//! | `replica.token_unavailable` | warn | a write committed but its WAL token could not be read (the token sends reads to the primary) |
//! | `replica.fallback` | debug | no replica qualified; the primary serves |
//! | `replica.unban_all` | debug | no replica qualified; [`NoReplicaPolicy::UnbanAll`] picked a banned one |
//! | `replica.retry` | debug | a connection-level read failure is retried (`attempt`) |
//!
//! Connection URLs appear only redacted (`postgres://app:***@host/db`).

mod balance;
mod check;
mod config;
mod failure;
mod health;
mod lifecycle;
mod lsn;
mod memory;
mod monitor;
mod node;
mod pool;
#[cfg(feature = "postgres")]
mod postgres;
mod primary;
mod router;
mod select;
mod status;
mod timeline;
mod topology;

pub use balance::{Candidate, MIN_COST_LATENCY_SECS, PeakEwma, pick};
pub use check::RouterCheck;
pub use config::{Consistency, NoReplicaPolicy, NodeSpec, ReplicaConfig, Role, Strategy};
pub use failure::{Classified, DynError, FailureClass, QueryError, QueryFailure, classify};
pub use health::{
    Ban, BanReason, LagInput, LagLimits, NodeHealth, PrimaryHistory, Transition, lag_bans,
};
pub use lsn::Lsn;
pub use memory::{MemoryCluster, MemoryError, MemoryNode};
pub use pool::{NodePool, PoolStats, Probe};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{PgNodeOptions, pg_node, pg_node_with, pg_pool};
pub use primary::{RoleView, choose_primary};
pub use router::{ReplicaRouter, ReplicaRouterBuilder};
pub use status::{NodeState, NodeStatus, RouterStatus};
pub use timeline::{
    HistoryRelation, PrimaryTimeline, ReplicaPosition, TimelineHistory, TimelineId, TimelineSwitch,
    WalToken, history_relation, token_on_history,
};

#[cfg(test)]
mod tests;
