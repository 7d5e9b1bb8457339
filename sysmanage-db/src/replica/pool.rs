//! What the router needs of a node's connection pool, and how it
//! classifies query errors.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use sysmanage_core::BoxError;

use super::lsn::Lsn;
use super::timeline::{TimelineHistory, TimelineId, WalToken};
use crate::error::Result;

/// What one health probe of a node found.
///
/// PostgreSQL's backend fills it from one query:
/// `pg_is_in_recovery()`, `pg_current_wal_flush_lsn()` and the timeline of
/// `pg_walfile_name()` on a primary; `pg_last_wal_replay_lsn()`, the age of
/// `pg_last_xact_replay_timestamp()`, the WAL receiver's timeline and state
/// (`pg_stat_wal_receiver`) and the last restartpoint's timeline
/// (`pg_control_checkpoint()`) on a standby.
///
/// Backends that know nothing of timelines leave the timeline fields
/// `None`; positions are then compared as they are. A backend that reports
/// the primary's timeline should report the standbys' too: a standby whose
/// timeline is unknown while the primary's is known serves no reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Probe {
    /// `pg_is_in_recovery()`: true on a standby.
    pub in_recovery: bool,
    /// The primary's current WAL position (primaries only): the end of the
    /// WAL flushed so far, which is what standbys can replay. (The insert
    /// position is not suitable: at a page boundary it points past the page
    /// header, which no standby's replay position ever equals, so an idle
    /// primary would look a few bytes ahead of every replica forever.)
    pub current_lsn: Option<Lsn>,
    /// The standby's replay position (standbys only).
    pub replay_lsn: Option<Lsn>,
    /// Time since the last replayed commit, by the standby's clock.
    pub replay_age: Option<Duration>,
    /// The timeline: a primary's insert timeline; a standby's receive
    /// timeline (`pg_stat_wal_receiver.received_tli`, visible to roles with
    /// `pg_read_all_stats`, e.g. members of `pg_monitor`), `None` when not
    /// visible or no WAL receiver runs.
    pub timeline: Option<TimelineId>,
    /// A standby's lower bound of its timeline when `timeline` is not
    /// visible: the timeline of its last restartpoint
    /// (`pg_control_checkpoint()`, readable by every role).
    pub min_timeline: Option<TimelineId>,
    /// Whether a standby's WAL receiver is streaming; `None` when unknown.
    pub streaming: Option<bool>,
}

impl Probe {
    /// A primary at WAL position `current`.
    pub fn primary(current: Lsn) -> Self {
        Self {
            in_recovery: false,
            current_lsn: Some(current),
            replay_lsn: None,
            replay_age: None,
            timeline: None,
            min_timeline: None,
            streaming: None,
        }
    }

    /// A standby that has replayed up to `replay`, its last replayed commit
    /// `replay_age` ago.
    pub fn replica(replay: Lsn, replay_age: Option<Duration>) -> Self {
        Self {
            in_recovery: true,
            current_lsn: None,
            replay_lsn: Some(replay),
            replay_age,
            timeline: None,
            min_timeline: None,
            streaming: None,
        }
    }

    /// With the node's timeline (see [`Probe::timeline`]).
    #[must_use]
    pub fn with_timeline(mut self, timeline: TimelineId) -> Self {
        self.timeline = Some(timeline);
        self
    }

    /// With a standby's lower bound of its timeline (see
    /// [`Probe::min_timeline`]).
    #[must_use]
    pub fn with_min_timeline(mut self, timeline: TimelineId) -> Self {
        self.min_timeline = Some(timeline);
        self
    }

    /// With whether a standby's WAL receiver is streaming.
    #[must_use]
    pub fn with_streaming(mut self, streaming: bool) -> Self {
        self.streaming = Some(streaming);
        self
    }
}

/// Connection pool statistics for the status snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// Open connections.
    pub size: u32,
    /// Idle connections.
    pub idle: u32,
}

/// A node's connection pool, as the router needs it: a clonable handle that
/// can probe its server.
///
/// Implemented for `sqlx::PgPool` (feature `postgres`) and
/// [`MemoryNode`](super::MemoryNode). Reads and writes hand the caller's
/// closure a clone of the pool.
pub trait NodePool: Clone + Send + Sync + fmt::Debug + 'static {
    /// One health probe: role, WAL positions and replay age.
    fn probe(&self) -> impl Future<Output = Result<Probe, BoxError>> + Send;

    /// A primary's current WAL insert position and timeline: the
    /// read-your-writes token after a commit. An error on a standby.
    fn wal_token(&self) -> impl Future<Output = Result<WalToken, BoxError>> + Send;

    /// A standby's replay position (`None` on a primary); polled while a
    /// read waits for a replica to reach a token, so it should be cheap.
    fn replay_lsn(&self) -> impl Future<Output = Result<Option<Lsn>, BoxError>> + Send;

    /// The history of `timeline` (its history file), read from this node;
    /// `Ok(None)` when the backend cannot tell (the default). The router
    /// asks the primary for its own timeline's history once per timeline.
    fn timeline_history(
        &self,
        timeline: TimelineId,
    ) -> impl Future<Output = Result<Option<TimelineHistory>, BoxError>> + Send {
        let _ = timeline;
        std::future::ready(Ok(None))
    }

    /// Closes the pool's connections (at shutdown). Default: nothing to
    /// close.
    fn close(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// Pool statistics; zero by default.
    fn pool_stats(&self) -> PoolStats {
        PoolStats::default()
    }
}
