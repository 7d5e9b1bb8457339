//! The error type of `sysmanage-db`.

impl From<sysmanage_core::Error> for Error {
    /// A rejected setting stays [`Error::InvalidConfig`] with its field, so
    /// callers match one variant whichever crate checked the value.
    fn from(e: sysmanage_core::Error) -> Self {
        match e {
            sysmanage_core::Error::InvalidConfig { field, reason } => {
                Self::InvalidConfig { field, reason }
            }
            other => Self::Core(other),
        }
    }
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors returned by `sysmanage-db`.
///
/// Messages are lowercase, name the offending input and never contain a
/// password (URLs are shown redacted).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A shared building block rejected its input (configuration errors of
    /// core types arrive as [`Error::InvalidConfig`] instead).
    #[error(transparent)]
    Core(sysmanage_core::Error),
    /// A configuration value was rejected.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The field that was rejected.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// No replica qualified for a read and the policy is
    /// [`NoReplicaPolicy::Error`](crate::replica::NoReplicaPolicy::Error).
    #[error(
        "no replica qualifies for a read at consistency {consistency} ({checked} replicas checked)"
    )]
    NoReplica {
        /// The read's consistency level, e.g. `"bounded_staleness"`.
        consistency: &'static str,
        /// Replicas considered.
        checked: usize,
    },
    /// No node currently acts as the primary.
    #[error("no primary available")]
    NoPrimary,
    /// A query failed on a node; the cause (e.g. a `sqlx::Error`) is in
    /// `source()` and can be downcast.
    #[error("query on node {node:?} failed")]
    Query {
        /// The node's name.
        node: String,
        /// Whether the failure was at the connection level (the node was
        /// unreachable or the connection broke), as opposed to an SQL error.
        connection: bool,
        /// The underlying error.
        #[source]
        source: sysmanage_core::BoxError,
    },
    /// A node name is not part of the topology.
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    /// A node name was added twice.
    #[error("duplicate node name {0:?}")]
    DuplicateNode(String),
    /// Text that should be a WAL position (`X/Y`, hexadecimal) was not.
    #[error("invalid wal position {input:?}: expected two hexadecimal numbers separated by '/'")]
    InvalidWalPosition {
        /// The rejected text (at most 40 characters).
        input: String,
    },
    /// Text that should be a read-your-writes token (`X/Y@T` or `X/Y`) was
    /// not.
    #[error(
        "invalid wal token {input:?}: expected a wal position X/Y (hexadecimal), optionally followed by @ and a timeline id (decimal, at least 1)"
    )]
    InvalidWalToken {
        /// The rejected text (at most 40 characters).
        input: String,
    },
    /// A timeline history file (`pg_wal/0000000N.history`) did not parse.
    #[error("invalid history of timeline {timeline}: {reason}")]
    InvalidTimelineHistory {
        /// The timeline whose history was read.
        timeline: u32,
        /// What was wrong, with the line number.
        reason: String,
    },
    /// The router was shut down; no query runs any more.
    #[error("the router is shut down")]
    ShutDown,
    // --- replica routing variants (ReplicaRouter) go above this line ---
    /// A shard function found no shard for a key (a gap between ranges, a
    /// value in no list). Never turned into a broadcast.
    #[error("no shard owns key {key} under the {function} shard function")]
    NoShardForKey {
        /// The shard function's name.
        function: &'static str,
        /// The key, rendered.
        key: String,
    },
    /// A key's type differs from the one the shard function was built for.
    #[error("the {function} shard function takes {expected} keys, got a {got} key")]
    KeyTypeMismatch {
        /// The shard function's name.
        function: &'static str,
        /// The key type it was built for.
        expected: &'static str,
        /// The key type it was given.
        got: &'static str,
    },
    /// A key could not be parsed.
    #[error("invalid {key_type} key: {reason}")]
    InvalidKey {
        /// The key type.
        key_type: &'static str,
        /// Why.
        reason: String,
    },
    /// A shard id outside the router's `0..shards`.
    #[error("{shard} does not exist (the router has {shards} shards)")]
    UnknownShard {
        /// The requested shard.
        shard: crate::shard::ShardId,
        /// How many shards the router has.
        shards: u32,
    },
    /// Work on one shard failed (or, in a fail-fast fan-out, the first shard
    /// that failed).
    #[error(transparent)]
    ShardFailed(Box<crate::shard::ShardFailure>),
    /// A fan-out did not complete on every shard; each failed shard is named
    /// with its reason.
    #[error("fan-out incomplete: {} of {total} shards failed ({})", failed.len(), crate::shard::failure_list(failed))]
    PartialFanOut {
        /// Every failed shard and why.
        failed: Vec<crate::shard::ShardFailure>,
        /// How many shards the fan-out targeted.
        total: usize,
    },
    /// A resharding plan involves a shard function that does not route every
    /// key (ranges, lists), so it cannot be estimated from synthetic keys;
    /// pass real keys to
    /// [`ReshardPlan::compute_with_sample`](crate::shard::ReshardPlan::compute_with_sample).
    #[error(
        "a resharding plan with the {function} shard function needs a sample of real keys (use compute_with_sample)"
    )]
    PlanNeedsSample {
        /// The shard function's name.
        function: &'static str,
    },
    /// A write to a shard whose writes are fenced while a move switches it,
    /// not admitted within the router's fence hold. Retryable: the fence
    /// lasts until the switch (normally well under a second).
    #[error("writes to {shard} are fenced by a shard move (routing epoch {epoch}); retry")]
    ShardFenced {
        /// The shard.
        shard: crate::shard::ShardId,
        /// The router's routing epoch when it gave up.
        epoch: u64,
    },
    /// A write reached a node set that no longer owns the shard (the router's
    /// map was stale) and was rejected there, and no newer map arrived within
    /// the router's fence hold. Retryable once the router has the new map.
    #[error(
        "{shard} has moved (the write was rejected by its old node set at routing epoch {epoch}); retry"
    )]
    ShardMoved {
        /// The shard.
        shard: crate::shard::ShardId,
        /// The router's routing epoch when it gave up.
        epoch: u64,
    },
    // --- sharding variants (ShardRouter) go above this line ---
    /// Another executor holds the move, or its shards are claimed by another
    /// move, or its stored state contradicts the request.
    #[error("shard move {id:?} conflicts: {reason}")]
    MoveConflict {
        /// The move's id.
        id: String,
        /// What conflicts.
        reason: String,
    },
    /// The move was cancelled before its switch: the source stays
    /// authoritative and the target was cleaned.
    #[error("shard move {id:?} was cancelled")]
    MoveCancelled {
        /// The move's id.
        id: String,
    },
    /// A cancel arrived after the routing switch: the target owns the shards,
    /// the move can only be finished (resumed).
    #[error("shard move {id:?} cannot be cancelled: it is past the routing switch ({phase})")]
    MovePastSwitch {
        /// The move's id.
        id: String,
        /// The phase it is in.
        phase: &'static str,
    },
    /// Verification found tables whose target rows differ from the source
    /// rows at the switch. The source rows are kept for inspection.
    #[error("shard move {id:?} failed verification: {}", mismatches.join("; "))]
    MoveVerifyFailed {
        /// The move's id.
        id: String,
        /// One line per table that differs (counts and checksums).
        mismatches: Vec<String>,
    },
    /// The `before_phase` guard refused to let the move enter a phase (e.g. a
    /// lost leadership); the move's state is kept for a resume.
    #[error("shard move {id:?}: the phase guard refused phase {phase}")]
    MoveGuardRejected {
        /// The move's id.
        id: String,
        /// The phase that was refused.
        phase: &'static str,
        /// The guard's reason.
        #[source]
        source: sysmanage_core::BoxError,
    },
    /// A step of a shard move failed; the move's state is kept, so running
    /// it again resumes from the last completed step.
    #[error("shard move {id:?} failed in phase {phase} ({step})")]
    MoveFailed {
        /// The move's id.
        id: String,
        /// The phase.
        phase: &'static str,
        /// The step within the phase, e.g. `"create subscription"`.
        step: &'static str,
        /// The cause (often a `sqlx::Error`).
        #[source]
        source: sysmanage_core::BoxError,
    },
}

impl Error {
    /// Whether retrying the same call may succeed without any other change:
    /// a write met a shard fence or a stale routing map.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::ShardFenced { .. } | Self::ShardMoved { .. } => true,
            Self::ShardFailed(f) => f.rejection().is_some(),
            _ => false,
        }
    }
}
