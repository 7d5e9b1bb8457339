//! [`ShardRouter`]: logical shards on physical node sets, per-key routing and
//! fan-out with explicit partial failure.

use std::collections::BTreeMap;
use std::fmt;
use std::future::{Future, poll_fn};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysmanage_core::BoxError;
use tracing::Instrument;

use super::epoch::{ShardMap, WriteRejection, classify_rejection};
use super::function::{ShardFunction, check_shard_count};
use super::key::{ShardId, ShardKey};
use super::node_set::{NodeSet, NodeSetStatus};
use super::pg_hash::PgHash;
use super::plan::Topology;
use super::routing::Routing;
use crate::{Error, Result};

/// Default bound on shards worked on at once by one fan-out.
pub const DEFAULT_MAX_CONCURRENCY: usize = 16;
/// Default deadline for the work on one shard.
pub const DEFAULT_SHARD_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time [`ShardRouter::write`] holds a write to a fenced or moving
/// shard before it returns a retryable error.
pub const DEFAULT_FENCE_HOLD: Duration = Duration::from_secs(5);

/// Why the work on one shard failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The closure returned an error (connection refused, query error, …).
    Error,
    /// The per-shard deadline passed first; the work was cancelled.
    Timeout,
}

/// One shard's failure: which shard, on which node set, and why.
///
/// `reason` is the full rendered cause (the error and its sources), kept as
/// text so reports and serialised snapshots carry it; the error itself is
/// also available through [`std::error::Error::source`].
#[derive(Debug, Clone, Serialize)]
pub struct ShardFailure {
    /// The shard.
    pub shard: ShardId,
    /// The node set it lives on.
    pub node_set: String,
    /// The kind of failure.
    pub kind: FailureKind,
    /// Why, rendered.
    pub reason: String,
    #[serde(skip)]
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl ShardFailure {
    fn from_error(shard: ShardId, node_set: &str, err: BoxError) -> Self {
        let mut reason = err.to_string();
        let mut cur = err.source();
        while let Some(s) = cur {
            // Some errors (sqlx's among them) repeat their source in their
            // own message; render each cause once.
            let text = s.to_string();
            if !reason.contains(&text) {
                reason.push_str(": ");
                reason.push_str(&text);
            }
            cur = s.source();
        }
        ShardFailure {
            shard,
            node_set: node_set.to_owned(),
            kind: FailureKind::Error,
            reason,
            source: Some(Arc::from(err)),
        }
    }

    /// A target the router has no placement for. Callers validate targets,
    /// so this only happens when a shard function's `shard_count` changes
    /// after the router was built; it is reported, never skipped.
    fn unplaced(shard: ShardId, shards: usize) -> Self {
        ShardFailure {
            shard,
            node_set: "<unplaced>".to_owned(),
            kind: FailureKind::Error,
            reason: format!(
                "{shard} is not placed on any node set (the router has {shards} shards)"
            ),
            source: None,
        }
    }

    fn timeout(shard: ShardId, node_set: &str, deadline: Duration) -> Self {
        ShardFailure {
            shard,
            node_set: node_set.to_owned(),
            kind: FailureKind::Timeout,
            reason: format!("deadline of {deadline:?} exceeded"),
            source: None,
        }
    }
}

impl ShardFailure {
    /// Whether the node set refused the work because the shard is fenced or
    /// has moved away (the router's map was stale), found in the cause chain.
    pub fn rejection(&self) -> Option<WriteRejection> {
        self.source
            .as_deref()
            .and_then(|e| classify_rejection(e as &(dyn std::error::Error + 'static)))
    }
}

impl fmt::Display for ShardFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            // The cause is the source; not repeated here.
            FailureKind::Error => write!(f, "{} on node set {} failed", self.shard, self.node_set),
            FailureKind::Timeout => write!(
                f,
                "{} on node set {} failed: {}",
                self.shard, self.node_set, self.reason
            ),
        }
    }
}

impl std::error::Error for ShardFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Renders failures for [`Error::PartialFanOut`]'s message.
#[doc(hidden)]
pub fn failure_list(failed: &[ShardFailure]) -> String {
    const SHOWN: usize = 8;
    let mut out = failed
        .iter()
        .take(SHOWN)
        .map(|f| format!("{}: {}", f.shard, f.reason))
        .collect::<Vec<_>>()
        .join("; ");
    if failed.len() > SHOWN {
        out.push_str(&format!("; and {} more", failed.len() - SHOWN));
    }
    out
}

/// What a closure run on a shard receives: the shard id and its node set.
#[derive(Debug, Clone)]
pub struct ShardCtx<N> {
    shard: ShardId,
    node_set: Arc<str>,
    nodes: N,
}

impl<N> ShardCtx<N> {
    /// The logical shard.
    pub fn shard(&self) -> ShardId {
        self.shard
    }
    /// The name of the node set the shard lives on.
    pub fn node_set(&self) -> &str {
        &self.node_set
    }
    /// The node set (a `PgPool`, a replica router, a [`MemoryNodeSet`](super::MemoryNodeSet)).
    pub fn nodes(&self) -> &N {
        &self.nodes
    }
    /// Takes the node set out.
    pub fn into_nodes(self) -> N {
        self.nodes
    }
}

/// One shard's result in a [`FanOut`].
#[derive(Debug, Clone)]
pub struct ShardOutcome<T> {
    /// The shard.
    pub shard: ShardId,
    /// The node set it ran on.
    pub node_set: String,
    /// How long the shard's work took (until success, error or deadline).
    pub elapsed: Duration,
    /// The value, or why there is none.
    pub result: std::result::Result<T, ShardFailure>,
}

/// The outcome of a fan-out on every targeted shard, in shard order.
///
/// Nothing is dropped: a failed shard is an outcome like a successful one.
/// Decide what partial means for the caller with [`into_complete`]
/// (any failure is an error) or [`into_partial`] (values plus the named
/// failures).
///
/// [`into_complete`]: FanOut::into_complete
/// [`into_partial`]: FanOut::into_partial
#[derive(Debug, Clone)]
pub struct FanOut<T> {
    outcomes: Vec<ShardOutcome<T>>,
}

/// The successful values of a fan-out and every failure, named.
#[derive(Debug, Clone)]
pub struct Partial<T> {
    /// Values of the shards that succeeded, in shard order.
    pub values: Vec<(ShardId, T)>,
    /// The shards that failed and why, in shard order.
    pub failed: Vec<ShardFailure>,
}

impl<T> Partial<T> {
    /// Whether every shard succeeded.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
    /// The ids of the failed shards.
    pub fn failed_shards(&self) -> Vec<ShardId> {
        self.failed.iter().map(|f| f.shard).collect()
    }
    /// The values without their shard ids, e.g. for the merge helpers.
    pub fn into_values(self) -> Vec<T> {
        self.values.into_iter().map(|(_, v)| v).collect()
    }
}

impl<T> FanOut<T> {
    /// Every shard's outcome, in shard order.
    pub fn outcomes(&self) -> &[ShardOutcome<T>] {
        &self.outcomes
    }
    /// How many shards were targeted.
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }
    /// Whether no shard was targeted.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }
    /// Whether every targeted shard succeeded.
    pub fn is_complete(&self) -> bool {
        self.outcomes.iter().all(|o| o.result.is_ok())
    }
    /// The failures, in shard order.
    pub fn failures(&self) -> impl Iterator<Item = &ShardFailure> {
        self.outcomes.iter().filter_map(|o| o.result.as_ref().err())
    }
    /// The ids of the failed shards.
    pub fn failed_shards(&self) -> Vec<ShardId> {
        self.failures().map(|f| f.shard).collect()
    }
    /// The slowest shard's elapsed time.
    pub fn slowest(&self) -> Option<Duration> {
        self.outcomes.iter().map(|o| o.elapsed).max()
    }

    /// All values in shard order, or an error naming every failed shard.
    ///
    /// # Errors
    /// [`Error::PartialFanOut`] when any shard failed.
    pub fn into_complete(self) -> Result<Vec<T>> {
        let total = self.outcomes.len();
        let partial = self.into_partial();
        if partial.failed.is_empty() {
            Ok(partial.into_values())
        } else {
            Err(Error::PartialFanOut {
                failed: partial.failed,
                total,
            })
        }
    }

    /// The values that arrived and the named failures.
    pub fn into_partial(self) -> Partial<T> {
        let mut values = Vec::with_capacity(self.outcomes.len());
        let mut failed = Vec::new();
        for o in self.outcomes {
            match o.result {
                Ok(v) => values.push((o.shard, v)),
                Err(f) => failed.push(f),
            }
        }
        Partial { values, failed }
    }
}

#[derive(Debug)]
struct ShardCounters {
    metrics: crate::telemetry::ShardMetrics,
    queries: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    consecutive_failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// Per-shard counters and node-set status, from [`ShardRouter::stats`].
#[derive(Debug, Clone, Serialize)]
pub struct ShardStats {
    /// The shard.
    pub shard: ShardId,
    /// Its node set.
    pub node_set: String,
    /// The node set's own view of its health.
    pub status: NodeSetStatus,
    /// Closures run on the shard (single-shard runs and fan-out legs).
    pub queries: u64,
    /// Of those, how many returned an error.
    pub errors: u64,
    /// Of those, how many passed their deadline.
    pub timeouts: u64,
    /// Failures (errors or timeouts) since the last success: a node set
    /// that reports itself up but fails every query shows here.
    pub consecutive_failures: u64,
    /// The most recent failure's reason.
    pub last_error: Option<String>,
}

/// A serialisable snapshot of a [`ShardRouter`].
#[derive(Debug, Clone, Serialize)]
pub struct ShardRouterStats {
    /// The shard function's name.
    pub function: &'static str,
    /// Number of logical shards.
    pub shard_count: u32,
    /// Per shard, in shard order.
    pub shards: Vec<ShardStats>,
}

struct Inner<N, F> {
    function: F,
    node_sets: Vec<(Arc<str>, N)>,
    /// Logical shard → index into `node_sets`, fences and the routing epoch.
    routing: Routing,
    max_concurrency: usize,
    shard_timeout: Duration,
    fence_hold: Duration,
    /// Per logical shard; shared with routers made by
    /// [`ShardRouter::with_shard_moved`].
    counters: Arc<[ShardCounters]>,
}

/// Routes keys to logical shards and runs work on them.
///
/// Keys map to logical shards through a [`ShardFunction`] (by default
/// [`PgHash`], bit-exact with PostgreSQL's `PARTITION BY HASH`); logical shards
/// map to physical [`NodeSet`]s through a placement table, so many logical
/// shards can share a database and a shard can move to another database
/// without rehashing any key (change its placement, see
/// [`ReshardPlan`](super::ReshardPlan)).
///
/// Cloning is cheap (`Arc` inside). All methods take `&self`.
///
/// ```
/// use sysmanage_db::shard::{MemoryNodeSet, PgHash, ShardRouter};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sysmanage_db::Error> {
/// // Eight logical shards on two node sets (0, 2, 4, 6 on a; 1, 3, 5, 7 on b).
/// let router = ShardRouter::builder(PgHash::new(8)?)
///     .node_set("a", MemoryNodeSet::<i64>::new("a"))
///     .node_set("b", MemoryNodeSet::<i64>::new("b"))
///     .build()?;
/// for id in 0..1_000_i64 {
///     router.node_set_for(id)?.insert(id);
/// }
/// let counts = router
///     .fan_out(|ctx| async move { ctx.nodes().query(|rows| rows.len()).await })
///     .await
///     .into_complete()?;
/// // Shards 0 and 1 see their node set's rows (both of its shards' keys).
/// assert_eq!(counts[0] + counts[1], 1_000);
/// # Ok(())
/// # }
/// ```
pub struct ShardRouter<N, F = PgHash> {
    inner: Arc<Inner<N, F>>,
}

impl<N, F> Clone for ShardRouter<N, F> {
    fn clone(&self) -> Self {
        ShardRouter {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<N: fmt::Debug, F: fmt::Debug> fmt::Debug for ShardRouter<N, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardRouter")
            .field("function", &self.inner.function)
            .field(
                "node_sets",
                &self
                    .inner
                    .node_sets
                    .iter()
                    .map(|(n, _)| &**n)
                    .collect::<Vec<_>>(),
            )
            .field("placement", &self.inner.routing.placement())
            .field("epoch", &self.inner.routing.epoch())
            .field("max_concurrency", &self.inner.max_concurrency)
            .field("shard_timeout", &self.inner.shard_timeout)
            .field("fence_hold", &self.inner.fence_hold)
            .finish()
    }
}

/// Builds a [`ShardRouter`].
#[derive(Debug)]
pub struct ShardRouterBuilder<N, F> {
    function: F,
    node_sets: Vec<(String, N)>,
    placements: Vec<(ShardId, String)>,
    max_concurrency: usize,
    shard_timeout: Duration,
    fence_hold: Duration,
    map: Option<ShardMap>,
}

impl<N: NodeSet, F: ShardFunction> ShardRouterBuilder<N, F> {
    /// Adds a physical node set under a unique name.
    pub fn node_set(mut self, name: impl Into<String>, nodes: N) -> Self {
        self.node_sets.push((name.into(), nodes));
        self
    }

    /// Places logical `shards` on the node set called `node_set`. Shards
    /// not placed explicitly are spread round-robin (shard `i` on node set
    /// `i % node_sets`, in the order they were added).
    pub fn place(
        mut self,
        shards: impl IntoIterator<Item = u32>,
        node_set: impl Into<String>,
    ) -> Self {
        let name = node_set.into();
        self.placements
            .extend(shards.into_iter().map(|s| (ShardId(s), name.clone())));
        self
    }

    /// Bounds how many shards one fan-out works on at once (default
    /// [`DEFAULT_MAX_CONCURRENCY`]).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n;
        self
    }

    /// The deadline for the work on one shard (default
    /// [`DEFAULT_SHARD_TIMEOUT`]); the clock starts when that shard's work
    /// starts, not while it waits for a concurrency slot.
    pub fn shard_timeout(mut self, timeout: Duration) -> Self {
        self.shard_timeout = timeout;
        self
    }

    /// How long [`ShardRouter::write`] holds a write to a fenced shard (or
    /// one its old node set refused) waiting for a newer shard map, before
    /// it returns a retryable [`Error::ShardFenced`] / [`Error::ShardMoved`]
    /// (default [`DEFAULT_FENCE_HOLD`]; zero rejects at once).
    pub fn fence_hold(mut self, hold: Duration) -> Self {
        self.fence_hold = hold;
        self
    }

    /// Starts from a versioned shard map (e.g. loaded from the metadata
    /// table) instead of the explicit placements: its placements and fences
    /// apply and its version becomes the router's routing epoch.
    pub fn shard_map(mut self, map: ShardMap) -> Self {
        self.map = Some(map);
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when there is no node set, two share a name,
    /// a placement names an unknown node set or a shard outside
    /// `0..shard_count`, a shard is placed twice, `max_concurrency` is
    /// outside 1–65,536, the shard timeout outside 1 ms – 1 day, the fence
    /// hold above 1 day, a shard map that does not fit (see
    /// [`ShardRouter::apply_map`]), or the function has 0 or more than
    /// [`MAX_SHARDS`](super::MAX_SHARDS) shards (the router keeps state per
    /// shard).
    pub fn build(self) -> Result<ShardRouter<N, F>> {
        let invalid = |field: &'static str, reason: String| Error::InvalidConfig { field, reason };
        if self.node_sets.is_empty() {
            return Err(invalid("node_sets", "must not be empty".into()));
        }
        sysmanage_core::duration::check_count("max_concurrency", self.max_concurrency, 1, 65_536)?;
        sysmanage_core::duration::check_duration(
            "shard_timeout",
            self.shard_timeout,
            sysmanage_core::duration::MILLISECOND,
            sysmanage_core::duration::DAY,
        )?;
        sysmanage_core::duration::check_duration(
            "fence_hold",
            self.fence_hold,
            Duration::ZERO,
            sysmanage_core::duration::DAY,
        )?;
        let mut names: Vec<&str> = self.node_sets.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(
                "node_sets",
                format!("duplicate node set name {:?}", w[0]),
            ));
        }
        // Bounded before anything is allocated per shard: a custom function
        // is not checked by a constructor.
        let count = check_shard_count("shard_count", u64::from(self.function.shard_count()))?;
        let mut placement: Vec<Option<usize>> = vec![None; count as usize];
        for (shard, name) in &self.placements {
            let Some(idx) = self.node_sets.iter().position(|(n, _)| n == name) else {
                return Err(invalid("placement", format!("unknown node set {name:?}")));
            };
            let Some(slot) = placement.get_mut(shard.index()) else {
                return Err(invalid(
                    "placement",
                    format!("{shard} is outside the function's {count} shards"),
                ));
            };
            if slot.is_some() {
                return Err(invalid("placement", format!("{shard} is placed twice")));
            }
            *slot = Some(idx);
        }
        let sets = self.node_sets.len();
        let placement = placement
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.unwrap_or(i % sets))
            .collect();
        let router = ShardRouter {
            inner: Arc::new(Inner {
                counters: (0..count)
                    .map(|i| ShardCounters {
                        metrics: crate::telemetry::ShardMetrics::new(i),
                        queries: AtomicU64::new(0),
                        errors: AtomicU64::new(0),
                        timeouts: AtomicU64::new(0),
                        consecutive_failures: AtomicU64::new(0),
                        last_error: Mutex::new(None),
                    })
                    .collect(),
                function: self.function,
                node_sets: self
                    .node_sets
                    .into_iter()
                    .map(|(n, s)| (Arc::from(n), s))
                    .collect(),
                routing: Routing::new(placement),
                max_concurrency: self.max_concurrency,
                shard_timeout: self.shard_timeout,
                fence_hold: self.fence_hold,
            }),
        };
        if let Some(map) = &self.map {
            router.apply_map(map)?;
        }
        Ok(router)
    }
}

fn lock<V>(m: &Mutex<V>) -> std::sync::MutexGuard<'_, V> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits for a new routing epoch until `deadline`; false when none came.
async fn wait_for_change(
    changes: &mut tokio::sync::watch::Receiver<u64>,
    deadline: tokio::time::Instant,
) -> bool {
    matches!(
        tokio::time::timeout_at(deadline, changes.changed()).await,
        Ok(Ok(()))
    )
}

/// What a shard-map watcher keeps current: object-safe, so one watcher can
/// serve routers of different node-set and function types.
pub trait EpochTarget: Send + Sync + fmt::Debug {
    /// As [`ShardRouter::apply_map`].
    ///
    /// # Errors
    /// As [`ShardRouter::apply_map`].
    fn apply_map(&self, map: &ShardMap) -> Result<bool>;
    /// As [`ShardRouter::epoch`].
    fn epoch(&self) -> u64;
    /// Notified when the router asks for a refresh
    /// ([`ShardRouter::request_refresh`]).
    fn refresh_signal(&self) -> Arc<tokio::sync::Notify>;
}

impl<N: NodeSet, F: ShardFunction> EpochTarget for ShardRouter<N, F> {
    fn apply_map(&self, map: &ShardMap) -> Result<bool> {
        ShardRouter::apply_map(self, map)
    }
    fn epoch(&self) -> u64 {
        ShardRouter::epoch(self)
    }
    fn refresh_signal(&self) -> Arc<tokio::sync::Notify> {
        self.inner.routing.refresh_signal()
    }
}

impl<N: NodeSet, F: ShardFunction> ShardRouter<N, F> {
    /// Starts a builder around a shard function.
    pub fn builder(function: F) -> ShardRouterBuilder<N, F> {
        ShardRouterBuilder {
            function,
            node_sets: Vec::new(),
            placements: Vec::new(),
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            shard_timeout: DEFAULT_SHARD_TIMEOUT,
            fence_hold: DEFAULT_FENCE_HOLD,
            map: None,
        }
    }

    /// The shard function.
    pub fn function(&self) -> &F {
        &self.inner.function
    }

    /// The number of logical shards.
    pub fn shard_count(&self) -> u32 {
        self.inner.function.shard_count()
    }

    /// The shard that owns `key`.
    ///
    /// # Errors
    /// As the shard function's [`ShardFunction::shard_for`].
    #[inline]
    pub fn shard_for<'k>(&self, key: impl Into<ShardKey<'k>>) -> Result<ShardId> {
        self.inner.function.shard_for(&key.into())
    }

    /// The name of the node set `shard` lives on.
    ///
    /// # Errors
    /// [`Error::UnknownShard`] for a shard outside `0..shard_count`.
    pub fn node_set_name(&self, shard: ShardId) -> Result<&str> {
        let idx = self.placement(shard)?;
        Ok(&self.inner.node_sets[idx].0)
    }

    /// The node set that owns `key`.
    ///
    /// # Errors
    /// As [`shard_for`](Self::shard_for).
    pub fn node_set_for<'k>(&self, key: impl Into<ShardKey<'k>>) -> Result<&N> {
        let shard = self.shard_for(key)?;
        Ok(&self.inner.node_sets[self.placement(shard)?].1)
    }

    fn placement(&self, shard: ShardId) -> Result<usize> {
        self.inner
            .routing
            .node_set_index(shard.index())
            .ok_or(Error::UnknownShard {
                shard,
                shards: self.shard_count(),
            })
    }

    fn ctx(&self, shard: ShardId) -> Result<ShardCtx<N>> {
        let (name, nodes) = &self.inner.node_sets[self.placement(shard)?];
        Ok(ShardCtx {
            shard,
            node_set: Arc::clone(name),
            nodes: nodes.clone(),
        })
    }

    /// The current topology (function and placement), for
    /// [`ReshardPlan::compute`](super::ReshardPlan::compute).
    pub fn topology(&self) -> Topology<'_> {
        Topology {
            function: &self.inner.function,
            placement: self
                .inner
                .routing
                .placement()
                .into_iter()
                .map(|i| self.inner.node_sets[i].0.to_string())
                .collect(),
        }
    }

    /// A router identical to this one except that logical `shard` lives on
    /// the node set called `to`: how a shard moves to another database
    /// without rehashing a key. Copy the shard's rows first (see
    /// [`ReshardPlan`](super::ReshardPlan)), then swap the routers.
    ///
    /// The new router shares the node sets and the per-shard counters with
    /// this one: counts are per logical shard, so [`stats`](Self::stats) on
    /// either router keeps the history from before the move (the moved
    /// shard's counts include its queries on the old node set) and both
    /// count into the same totals while they coexist.
    ///
    /// # Errors
    /// [`Error::UnknownShard`], or [`Error::InvalidConfig`] when `to` names
    /// no node set of this router.
    pub fn with_shard_moved(&self, shard: ShardId, to: &str) -> Result<Self>
    where
        F: Clone,
    {
        self.placement(shard)?;
        let Some(idx) = self.inner.node_sets.iter().position(|(n, _)| &**n == to) else {
            return Err(Error::InvalidConfig {
                field: "placement",
                reason: format!("unknown node set {to:?}"),
            });
        };
        let mut placement = self.inner.routing.placement();
        placement[shard.index()] = idx;
        Ok(ShardRouter {
            inner: Arc::new(Inner {
                function: self.inner.function.clone(),
                node_sets: self.inner.node_sets.clone(),
                routing: self.inner.routing.fork(placement),
                max_concurrency: self.inner.max_concurrency,
                shard_timeout: self.inner.shard_timeout,
                fence_hold: self.inner.fence_hold,
                counters: Arc::clone(&self.inner.counters),
            }),
        })
    }

    /// The routing epoch: the version of the last [`ShardMap`] applied (0
    /// for a router built from explicit placements only).
    pub fn epoch(&self) -> u64 {
        self.inner.routing.epoch()
    }

    /// Whether writes to `shard` are fenced (a move is switching it).
    pub fn is_fenced(&self, shard: ShardId) -> bool {
        self.inner.routing.is_fenced(shard.index())
    }

    /// A receiver that sees every new routing epoch this router applies.
    pub fn epoch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.routing.subscribe()
    }

    /// The router's current map: placements, fences and epoch.
    pub fn shard_map(&self) -> ShardMap {
        let mut map = ShardMap::new(
            self.epoch(),
            self.inner
                .routing
                .placement()
                .into_iter()
                .map(|i| self.inner.node_sets[i].0.to_string()),
        );
        for (i, p) in map.shards.iter_mut().enumerate() {
            p.fenced = self.inner.routing.is_fenced(i);
        }
        map
    }

    /// Applies `map` when its version is newer than the router's epoch, for
    /// this router and every clone of it; returns whether it applied. Older
    /// or equal versions are ignored, so duplicate or late notifications
    /// never roll the routing back.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (field `shard_map`) when the map does not
    /// have one entry per shard or names a node set the router does not
    /// have; nothing is applied then.
    pub fn apply_map(&self, map: &ShardMap) -> Result<bool> {
        let shards = self.inner.routing.len();
        if map.shards.len() != shards {
            return Err(Error::InvalidConfig {
                field: "shard_map",
                reason: format!(
                    "version {} has {} shards, the router has {shards}",
                    map.version,
                    map.shards.len()
                ),
            });
        }
        let mut placement = Vec::with_capacity(shards);
        for (i, p) in map.shards.iter().enumerate() {
            let Some(idx) = self
                .inner
                .node_sets
                .iter()
                .position(|(n, _)| **n == *p.node_set)
            else {
                return Err(Error::InvalidConfig {
                    field: "shard_map",
                    reason: format!(
                        "version {} places shard-{i} on unknown node set {:?}",
                        map.version, p.node_set
                    ),
                });
            };
            placement.push(idx);
        }
        let fenced: Vec<bool> = map.shards.iter().map(|p| p.fenced).collect();
        let applied = self.inner.routing.apply(map.version, &placement, &fenced);
        if applied {
            tracing::debug!(
                target: "sysmanage_db::shard::router",
                epoch = map.version,
                "sysmanage_db.shard.epoch"
            );
        }
        Ok(applied)
    }

    /// Asks the watcher that keeps this router's map current to look for a
    /// newer map now (the router does so itself when a node set rejects a
    /// write as fenced or moved).
    pub fn request_refresh(&self) {
        self.inner.routing.request_refresh();
    }

    /// Runs the write `f` on the shard that owns `key`, honouring shard
    /// fences and stale-map rejections; see [`write_on`](Self::write_on).
    ///
    /// # Errors
    /// As [`write_on`](Self::write_on), or a routing error for the key.
    pub async fn write<'k, T, E, Fut>(
        &self,
        key: impl Into<ShardKey<'k>>,
        f: impl Fn(ShardCtx<N>) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<BoxError>,
    {
        let shard = self.shard_for(key)?;
        self.write_on(shard, f).await
    }

    /// Runs the write `f` on `shard` under the per-shard deadline, the way a
    /// shard move needs writes to behave:
    ///
    /// - while the shard is fenced, the write is held (reads through
    ///   [`run`](Self::run) continue) until a newer map lifts the fence,
    ///   then it goes to the shard's node set in that map;
    /// - when the node set refuses it as fenced or moved (this router's
    ///   map was stale), the router asks for a refresh, waits for the newer
    ///   map and runs `f` again on the new owner.
    ///
    /// A refused write changed nothing, so running `f` again is safe; `f`
    /// is only re-run after such a refusal. Holding lasts at most the
    /// router's fence hold ([`ShardRouterBuilder::fence_hold`]) in total.
    ///
    /// # Errors
    /// [`Error::ShardFenced`] / [`Error::ShardMoved`] (both
    /// [retryable](Error::is_retryable)) when the hold runs out,
    /// [`Error::UnknownShard`], or [`Error::ShardFailed`] naming the shard
    /// and why for any other failure.
    pub async fn write_on<T, E, Fut>(
        &self,
        shard: ShardId,
        f: impl Fn(ShardCtx<N>) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<BoxError>,
    {
        self.placement(shard)?;
        let deadline = tokio::time::Instant::now() + self.inner.fence_hold;
        let mut changes = self.inner.routing.subscribe();
        loop {
            // Seen before the state is read: a change after this wakes us.
            changes.borrow_and_update();
            let epoch = self.epoch();
            if self.is_fenced(shard) {
                if !wait_for_change(&mut changes, deadline).await {
                    return Err(Error::ShardFenced { shard, epoch });
                }
                continue;
            }
            let ctx = self.ctx(shard)?;
            let name = Arc::clone(&ctx.node_set);
            let (_, result) = self.leg(shard, &name, "write", f(ctx)).await;
            let failure = match result {
                Ok(v) => return Ok(v),
                Err(failure) => failure,
            };
            let Some(rejection) = failure.rejection() else {
                return Err(Error::ShardFailed(Box::new(failure)));
            };
            self.request_refresh();
            if !wait_for_change(&mut changes, deadline).await {
                return Err(match rejection {
                    WriteRejection::Fenced => Error::ShardFenced { shard, epoch },
                    _ => Error::ShardMoved { shard, epoch },
                });
            }
        }
    }

    /// Groups items by the shard that owns each item's key, keeping input
    /// order within a shard.
    ///
    /// # Errors
    /// The first key that no shard owns (nothing is broadcast or dropped).
    pub fn group_by_shard<T, G>(
        &self,
        items: impl IntoIterator<Item = T>,
        key: G,
    ) -> Result<BTreeMap<ShardId, Vec<T>>>
    where
        G: for<'a> Fn(&'a T) -> ShardKey<'a>,
    {
        let mut groups: BTreeMap<ShardId, Vec<T>> = BTreeMap::new();
        for item in items {
            let shard = self.inner.function.shard_for(&key(&item))?;
            groups.entry(shard).or_default().push(item);
        }
        Ok(groups)
    }

    /// Runs `f` on the shard that owns `key`, under the per-shard deadline.
    ///
    /// # Errors
    /// A routing error, or [`Error::ShardFailed`] naming the shard and why.
    pub async fn run<'k, T, E, Fut>(
        &self,
        key: impl Into<ShardKey<'k>>,
        f: impl FnOnce(ShardCtx<N>) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<BoxError>,
    {
        let shard = self.shard_for(key)?;
        self.run_on(shard, f).await
    }

    /// Runs `f` on `shard`, under the per-shard deadline.
    ///
    /// # Errors
    /// [`Error::UnknownShard`], or [`Error::ShardFailed`] naming the shard and why.
    pub async fn run_on<T, E, Fut>(
        &self,
        shard: ShardId,
        f: impl FnOnce(ShardCtx<N>) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<BoxError>,
    {
        let ctx = self.ctx(shard)?;
        let name = Arc::clone(&ctx.node_set);
        let fut = self.leg(shard, &name, "run", f(ctx));
        fut.await.1.map_err(|f| Error::ShardFailed(Box::new(f)))
    }

    /// Wraps one shard's work: deadline, span, stats.
    fn leg<T, E, Fut>(
        &self,
        shard: ShardId,
        node_set: &Arc<str>,
        op: &'static str,
        fut: Fut,
    ) -> impl Future<Output = (Duration, std::result::Result<T, ShardFailure>)> + use<T, E, Fut, N, F>
    where
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<BoxError>,
    {
        let inner = Arc::clone(&self.inner);
        let node_set = Arc::clone(node_set);
        let span = tracing::debug_span!(
            "sysmanage_db.shard",
            shard = shard.0,
            node_set = &*node_set,
            op
        );
        async move {
            let started = tokio::time::Instant::now();
            let deadline = inner.shard_timeout;
            let result = match tokio::time::timeout(deadline, fut).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(ShardFailure::from_error(shard, &node_set, e.into())),
                Err(_) => Err(ShardFailure::timeout(shard, &node_set, deadline)),
            };
            let elapsed = started.elapsed();
            let c = &inner.counters[shard.index()];
            c.queries.fetch_add(1, Ordering::Relaxed);
            c.metrics.queries.increment(1);
            if result.is_ok() {
                c.consecutive_failures.store(0, Ordering::Relaxed);
            }
            if let Err(failure) = &result {
                c.consecutive_failures.fetch_add(1, Ordering::Relaxed);
                match failure.kind {
                    FailureKind::Timeout => {
                        c.metrics.timeouts.increment(1);
                        c.timeouts.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => {
                        c.metrics.errors.increment(1);
                        c.errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
                *lock(&c.last_error) = Some(failure.reason.clone());
                tracing::warn!(
                    shard = shard.0,
                    node_set = &*node_set,
                    kind = ?failure.kind,
                    reason = %failure.reason,
                    "sysmanage_db.shard.failed"
                );
            }
            (elapsed, result)
        }
        .instrument(span)
    }

    /// Runs `f` on every shard, at most `max_concurrency` at a time, each
    /// under the per-shard deadline, and returns every shard's outcome.
    ///
    /// Work is polled on the calling task (nothing is spawned), so `f` may
    /// borrow from the caller; dropping the returned future cancels every
    /// shard's work. The concurrency bound is per call.
    pub async fn fan_out<T, E, Fut>(&self, f: impl Fn(ShardCtx<N>) -> Fut) -> FanOut<T>
    where
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<BoxError>,
    {
        let all: Vec<ShardId> = (0..self.shard_count()).map(ShardId).collect();
        match self.drive(all, f, false).await {
            Ok(outcomes) | Err((outcomes, _)) => FanOut { outcomes },
        }
    }

    /// Like [`fan_out`](Self::fan_out) on the listed shards only (each once,
    /// in shard order).
    ///
    /// # Errors
    /// [`Error::UnknownShard`] for a shard outside `0..shard_count`.
    pub async fn fan_out_to<T, E, Fut>(
        &self,
        shards: impl IntoIterator<Item = ShardId>,
        f: impl Fn(ShardCtx<N>) -> Fut,
    ) -> Result<FanOut<T>>
    where
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<BoxError>,
    {
        let mut targets: Vec<ShardId> = shards.into_iter().collect();
        targets.sort_unstable();
        targets.dedup();
        for s in &targets {
            self.placement(*s)?;
        }
        match self.drive(targets, f, false).await {
            Ok(outcomes) | Err((outcomes, _)) => Ok(FanOut { outcomes }),
        }
    }

    /// Runs `f` on every shard that owns one of the grouped items (see
    /// [`group_by_shard`](Self::group_by_shard)), handing each shard its
    /// items.
    pub async fn fan_out_grouped<K, T, E, Fut>(
        &self,
        groups: BTreeMap<ShardId, Vec<K>>,
        f: impl Fn(ShardCtx<N>, Vec<K>) -> Fut,
    ) -> Result<FanOut<T>>
    where
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<BoxError>,
    {
        for s in groups.keys() {
            self.placement(*s)?;
        }
        let targets: Vec<ShardId> = groups.keys().copied().collect();
        let mut groups = groups;
        let make = |ctx: ShardCtx<N>| {
            let items = groups.remove(&ctx.shard).unwrap_or_default();
            f(ctx, items)
        };
        match self.drive(targets, make, false).await {
            Ok(outcomes) | Err((outcomes, _)) => Ok(FanOut { outcomes }),
        }
    }

    /// Runs `f` on every shard and stops at the first failure: the shards
    /// still running are cancelled (their futures dropped) and the failure
    /// is returned.
    ///
    /// # Errors
    /// [`Error::ShardFailed`] naming the first shard that failed and why.
    pub async fn fan_out_fail_fast<T, E, Fut>(
        &self,
        f: impl Fn(ShardCtx<N>) -> Fut,
    ) -> Result<Vec<T>>
    where
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<BoxError>,
    {
        let all: Vec<ShardId> = (0..self.shard_count()).map(ShardId).collect();
        match self.drive(all, f, true).await {
            Ok(outcomes) => Ok(outcomes.into_iter().filter_map(|o| o.result.ok()).collect()),
            Err((_, failure)) => Err(Error::ShardFailed(Box::new(failure))),
        }
    }

    /// The fan-out engine: bounded concurrency, polled on the caller's task.
    async fn drive<T, E, Fut>(
        &self,
        targets: Vec<ShardId>,
        mut make: impl FnMut(ShardCtx<N>) -> Fut,
        fail_fast: bool,
    ) -> std::result::Result<Vec<ShardOutcome<T>>, (Vec<ShardOutcome<T>>, ShardFailure)>
    where
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<BoxError>,
    {
        let total = targets.len();
        let span = tracing::debug_span!(
            "sysmanage_db.shard.fan_out",
            shards = total,
            failed = tracing::field::Empty
        );
        let mut slots: Vec<Option<ShardOutcome<T>>> = (0..total).map(|_| None).collect();
        let mut queue = targets.iter().copied().enumerate();
        let mut in_flight = Vec::with_capacity(self.inner.max_concurrency.min(total));
        let max = self.inner.max_concurrency;
        let mut first_failure: Option<ShardFailure> = None;
        let mut failed = 0_usize;
        let fan_out_started = tokio::time::Instant::now();
        poll_fn(|cx| {
            loop {
                while in_flight.len() < max {
                    let Some((slot, shard)) = queue.next() else {
                        break;
                    };
                    // Callers validate targets; should a function's shard
                    // count have changed since `build`, the shard is reported
                    // as failed, never skipped.
                    let Ok(ctx) = self.ctx(shard) else {
                        let failure = ShardFailure::unplaced(shard, self.inner.routing.len());
                        failed += 1;
                        if fail_fast && first_failure.is_none() {
                            first_failure = Some(failure.clone());
                        }
                        slots[slot] = Some(ShardOutcome {
                            shard,
                            node_set: failure.node_set.clone(),
                            elapsed: Duration::ZERO,
                            result: Err(failure),
                        });
                        if first_failure.is_some() {
                            in_flight.clear();
                            return Poll::Ready(());
                        }
                        continue;
                    };
                    let name = Arc::clone(&ctx.node_set);
                    // Created inside the fan-out span, so shard spans are its children.
                    let leg = span.in_scope(|| self.leg(shard, &name, "fan_out", make(ctx)));
                    in_flight.push((slot, shard, name, Box::pin(leg)));
                }
                let mut progressed = false;
                let mut i = 0;
                while i < in_flight.len() {
                    let polled = span.in_scope(|| in_flight[i].3.as_mut().poll(cx));
                    match polled {
                        Poll::Pending => i += 1,
                        Poll::Ready((elapsed, result)) => {
                            let (slot, shard, name, _) = in_flight.swap_remove(i);
                            progressed = true;
                            if let Err(f) = &result {
                                failed += 1;
                                if fail_fast && first_failure.is_none() {
                                    first_failure = Some(f.clone());
                                }
                            }
                            slots[slot] = Some(ShardOutcome {
                                shard,
                                node_set: name.to_string(),
                                elapsed,
                                result,
                            });
                            if first_failure.is_some() {
                                // Cancel everything still running.
                                in_flight.clear();
                                return Poll::Ready(());
                            }
                        }
                    }
                }
                if in_flight.is_empty() && queue.len() == 0 {
                    return Poll::Ready(());
                }
                if !progressed {
                    return Poll::Pending;
                }
            }
        })
        .await;
        span.record("failed", failed);
        metrics::histogram!(crate::telemetry::SHARD_FAN_OUT_DURATION)
            .record(fan_out_started.elapsed());
        if failed > 0 {
            metrics::counter!(crate::telemetry::SHARD_FAN_OUT_FAILED)
                .increment(u64::try_from(failed).unwrap_or(u64::MAX));
        }
        let outcomes: Vec<ShardOutcome<T>> = slots.into_iter().flatten().collect();
        match first_failure {
            Some(f) => Err((outcomes, f)),
            None => Ok(outcomes),
        }
    }

    /// Per-shard counters and node-set status.
    pub fn stats(&self) -> ShardRouterStats {
        // The placed shards (the function's count when the router was built).
        let placement = self.inner.routing.placement();
        let placed = placement.len() as u32;
        let shards = (0..placed)
            .map(|s| {
                let (name, nodes) = &self.inner.node_sets[placement[s as usize]];
                let c = &self.inner.counters[s as usize];
                ShardStats {
                    shard: ShardId(s),
                    node_set: name.to_string(),
                    status: nodes.status(),
                    queries: c.queries.load(Ordering::Relaxed),
                    errors: c.errors.load(Ordering::Relaxed),
                    timeouts: c.timeouts.load(Ordering::Relaxed),
                    consecutive_failures: c.consecutive_failures.load(Ordering::Relaxed),
                    last_error: lock(&c.last_error).clone(),
                }
            })
            .collect();
        ShardRouterStats {
            function: self.inner.function.name(),
            shard_count: placed,
            shards,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::MemoryNodeSet;

    fn router(shards: u32) -> ShardRouter<MemoryNodeSet<i64>> {
        ShardRouter::builder(PgHash::new(shards).unwrap())
            .node_set("mem0", MemoryNodeSet::new("mem0"))
            .build()
            .unwrap()
    }

    fn two_sets(hold: Duration) -> ShardRouter<MemoryNodeSet<i64>> {
        ShardRouter::builder(PgHash::new(2).unwrap())
            .node_set("a", MemoryNodeSet::new("a"))
            .node_set("b", MemoryNodeSet::new("b"))
            .fence_hold(hold)
            .shard_map(ShardMap::new(1, ["a", "a"]))
            .build()
            .unwrap()
    }

    fn fenced(version: u64, placement: [&str; 2], fenced: [bool; 2]) -> ShardMap {
        let mut m = ShardMap::new(version, placement);
        for (p, f) in m.shards.iter_mut().zip(fenced) {
            p.fenced = f;
        }
        m
    }

    /// A write to a fenced shard waits for the switch and then lands on the
    /// new owner; the other shard's writes and all reads carry on meanwhile.
    #[tokio::test(start_paused = true)]
    async fn a_fenced_write_is_held_until_the_switch() {
        let r = two_sets(Duration::from_secs(5));
        assert_eq!(r.epoch(), 1);
        assert!(r.apply_map(&fenced(2, ["a", "a"], [true, false])).unwrap());
        let name = |ctx: ShardCtx<MemoryNodeSet<i64>>| async move {
            Ok::<_, std::io::Error>(ctx.node_set().to_owned())
        };
        // Unfenced shard and reads: immediate.
        assert_eq!(r.write_on(ShardId(1), name).await.unwrap(), "a");
        assert_eq!(r.run_on(ShardId(0), name).await.unwrap(), "a");
        let held = tokio::spawn({
            let r = r.clone();
            async move {
                let started = tokio::time::Instant::now();
                (r.write_on(ShardId(0), name).await, started.elapsed())
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!held.is_finished(), "the write must be held while fenced");
        // The switch: shard 0 on b, unfenced.
        assert!(r.apply_map(&fenced(3, ["b", "a"], [false, false])).unwrap());
        let (result, waited) = held.await.unwrap();
        assert_eq!(result.unwrap(), "b");
        assert!(waited >= Duration::from_millis(300), "waited {waited:?}");
        // A late, older map is ignored.
        assert!(!r.apply_map(&fenced(2, ["a", "a"], [true, false])).unwrap());
        assert_eq!(r.node_set_name(ShardId(0)).unwrap(), "b");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fence_that_outlasts_the_hold_is_a_retryable_error() {
        let r = two_sets(Duration::from_millis(200));
        r.apply_map(&fenced(2, ["a", "a"], [true, false])).unwrap();
        let err = r
            .write_on(ShardId(0), |_ctx| async { Ok::<_, std::io::Error>(()) })
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::ShardFenced {
                    shard: ShardId(0),
                    epoch: 2
                }
            ),
            "{err:?}"
        );
        assert!(err.is_retryable());
        // Zero hold rejects at once.
        let r = two_sets(Duration::ZERO);
        r.apply_map(&fenced(2, ["a", "a"], [true, false])).unwrap();
        let err = r
            .write_on(ShardId(0), |_ctx| async { Ok::<_, std::io::Error>(()) })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ShardFenced { .. }));
    }

    /// The old owner refuses a write routed with a stale map: the router asks
    /// for a refresh, waits for the new map and re-runs the write there.
    #[tokio::test(start_paused = true)]
    async fn a_write_refused_by_the_old_owner_is_retried_on_the_new_one() {
        let r = two_sets(Duration::from_secs(5));
        let refresh = EpochTarget::refresh_signal(&r);
        let attempts = Arc::new(AtomicU64::new(0));
        let write = {
            let attempts = Arc::clone(&attempts);
            move |ctx: ShardCtx<MemoryNodeSet<i64>>| {
                let attempts = Arc::clone(&attempts);
                async move {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    if ctx.node_set() == "a" {
                        Err(Error::ShardMoved {
                            shard: ctx.shard(),
                            epoch: 1,
                        })
                    } else {
                        Ok(ctx.node_set().to_owned())
                    }
                }
            }
        };
        let task = tokio::spawn({
            let r = r.clone();
            async move { r.write_on(ShardId(0), write).await }
        });
        // The watcher side: wait for the refresh request, then deliver.
        tokio::time::timeout(Duration::from_secs(1), refresh.notified())
            .await
            .expect("the router asks for a refresh");
        r.apply_map(&ShardMap::new(2, ["b", "a"])).unwrap();
        assert_eq!(task.await.unwrap().unwrap(), "b");
        assert_eq!(attempts.load(Ordering::SeqCst), 2);

        // Without a newer map the refusal surfaces, typed and retryable.
        let stale = two_sets(Duration::from_millis(100));
        let err = stale
            .write_on(ShardId(0), |ctx: ShardCtx<MemoryNodeSet<i64>>| async move {
                Err::<(), _>(Error::ShardMoved {
                    shard: ctx.shard(),
                    epoch: 1,
                })
            })
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::ShardMoved {
                    shard: ShardId(0),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.is_retryable());
    }

    #[test]
    fn maps_that_do_not_fit_are_refused_whole() {
        let r = two_sets(Duration::ZERO);
        let err = r.apply_map(&ShardMap::new(5, ["a"])).unwrap_err();
        assert!(
            err.to_string().contains("has 1 shards, the router has 2"),
            "{err}"
        );
        let err = r.apply_map(&ShardMap::new(5, ["a", "z"])).unwrap_err();
        assert!(err.to_string().contains("unknown node set \"z\""), "{err}");
        assert_eq!(r.epoch(), 1);
        let err = ShardRouter::<MemoryNodeSet<i64>>::builder(PgHash::new(2).unwrap())
            .node_set("a", MemoryNodeSet::new("a"))
            .fence_hold(Duration::from_secs(90_000))
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("fence_hold"), "{err}");
    }

    /// A target without a placement used to be skipped (`continue`), so its
    /// slot stayed empty and the fan-out looked complete without it.
    #[tokio::test]
    async fn an_unplaced_target_is_a_failure_not_a_gap() {
        let r = router(2);
        let ok =
            |ctx: ShardCtx<MemoryNodeSet<i64>>| async move { Ok::<_, std::io::Error>(ctx.shard()) };
        let outcomes = match r
            .drive(vec![ShardId(0), ShardId(5), ShardId(1)], ok, false)
            .await
        {
            Ok(o) => o,
            Err((o, _)) => panic!("collect-partial never stops early: {} outcomes", o.len()),
        };
        let fan = FanOut { outcomes };
        assert_eq!(fan.len(), 3);
        assert!(!fan.is_complete());
        assert_eq!(fan.failed_shards(), vec![ShardId(5)]);
        let f = fan.failures().next().unwrap();
        assert_eq!(f.kind, FailureKind::Error);
        assert_eq!(
            f.reason,
            "shard-5 is not placed on any node set (the router has 2 shards)"
        );
        assert_eq!(fan.into_partial().values.len(), 2);

        // Fail-fast stops at it.
        match r.drive(vec![ShardId(7), ShardId(0)], ok, true).await {
            Err((_, failure)) => assert_eq!(failure.shard, ShardId(7)),
            Ok(o) => panic!("expected a failure, got {} outcomes", o.len()),
        }
    }
}
