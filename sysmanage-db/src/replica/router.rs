//! The router handle, its node table and the monitor driver.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use sysmanage_core::{BoxError, Clock, ConnectionUrl, SplitMix64, SystemClock, Timestamp};
use tracing::Instrument;

use super::balance::{Candidate, PeakEwma, pick};
use super::config::{
    Consistency, NoReplicaPolicy, NodeSpec, ReplicaConfig, Role, Strategy, invalid, validate_weight,
};
use super::health::{
    BanReason, LagInput, LagLimits, NodeHealth, PrimaryHistory, Transition, lag_bans,
};
use super::lsn::{Lsn, WalToken};
use crate::error::{Error, Result};

const TARGET: &str = "sysmanage_db::replica";

/// What one health probe of a node found.
///
/// PostgreSQL's backend fills it from one query:
/// `pg_is_in_recovery()`, `pg_current_wal_flush_lsn()` on a primary,
/// `pg_last_wal_replay_lsn()` and the age of `pg_last_xact_replay_timestamp()`
/// on a standby.
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
}

impl Probe {
    /// A primary at WAL position `current`.
    pub fn primary(current: Lsn) -> Self {
        Self {
            in_recovery: false,
            current_lsn: Some(current),
            replay_lsn: None,
            replay_age: None,
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
        }
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

    /// The current WAL insert position of a primary, for a [`WalToken`].
    fn current_wal_lsn(&self) -> impl Future<Output = Result<Lsn, BoxError>> + Send;

    /// A standby's replay position (`None` on a primary); polled while a
    /// read waits for a replica to reach a token, so it should be cheap.
    fn replay_lsn(&self) -> impl Future<Output = Result<Option<Lsn>, BoxError>> + Send;

    /// Pool statistics; zero by default.
    fn pool_stats(&self) -> PoolStats {
        PoolStats::default()
    }
}

/// Errors of the caller's queries, classified so that a replica dying under
/// load costs no failed reads.
pub trait QueryError: std::error::Error + Send + Sync + 'static {
    /// Whether the failure is at the connection level (unreachable server,
    /// broken connection, server shutting down) rather than an SQL error.
    /// Connection-level read failures are retried once on another node and
    /// ban the node.
    fn is_connection_error(&self) -> bool;

    /// Whether this failure bans the node at once. Default: the same as
    /// [`is_connection_error`](Self::is_connection_error).
    fn bans_node(&self) -> bool {
        self.is_connection_error()
    }

    /// Whether a write failed because the node is read-only (it was demoted);
    /// this triggers an immediate probe round. Default: false.
    fn is_read_only_error(&self) -> bool {
        false
    }
}

/// Whether a node serves reads, as shown in [`NodeStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
#[non_exhaustive]
pub enum NodeState {
    /// Serves reads (or writes, for the primary).
    Healthy,
    /// Banned: excluded from reads until a successful probe after `until`.
    Banned {
        /// Why.
        reason: BanReason,
        /// Earliest re-admission, wall-clock.
        until: Timestamp,
    },
    /// Excluded from [`Consistency::Any`] reads for lagging.
    LagBanned,
}

/// A serialisable snapshot of one node.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct NodeStatus {
    /// The node's name.
    pub name: String,
    /// Its URL with the password redacted.
    pub url: Option<String>,
    /// Role as last observed.
    pub role: Role,
    /// Whether writes go here.
    pub is_primary: bool,
    /// Health.
    #[serde(flatten)]
    pub state: NodeState,
    /// Balancing weight (0 = draining).
    pub weight: f64,
    /// Locality tier.
    pub tier: u8,
    /// Replay position (standbys).
    pub replay_lsn: Option<Lsn>,
    /// WAL bytes behind the primary, at the last probe; `None` when unknown
    /// (not a replica, or the primary has not been probed since start-up or
    /// a role change).
    pub lag_bytes: Option<u64>,
    /// Time lag at the last probe (zero when `lag_bytes` is zero; `None` when
    /// unknown).
    pub lag_seconds: Option<f64>,
    /// Peak-EWMA latency in milliseconds.
    pub latency_ms: f64,
    /// Requests in flight through the router.
    pub in_flight: u32,
    /// Failed probes.
    pub probe_failures: u64,
    /// Connection-level query failures.
    pub connection_errors: u64,
    /// Other query failures.
    pub query_errors: u64,
    /// Pool size.
    pub pool_size: u32,
    /// Idle connections.
    pub pool_idle: u32,
    /// Wall-clock time of the last successful probe.
    pub last_probe: Option<Timestamp>,
}

/// A serialisable snapshot of the router.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct RouterStatus {
    /// The balancing strategy.
    pub strategy: Strategy,
    /// The name of the node taking writes.
    pub primary: Option<String>,
    /// Reads routed.
    pub reads: u64,
    /// Writes routed.
    pub writes: u64,
    /// Reads sent to the primary because no replica qualified.
    pub fallbacks: u64,
    /// Reads retried on another node after a connection-level failure.
    pub retries: u64,
    /// Primary changes detected.
    pub role_changes: u64,
    /// Every node.
    pub nodes: Vec<NodeStatus>,
}

impl RouterStatus {
    /// The status of node `name`.
    pub fn node(&self, name: &str) -> Option<&NodeStatus> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

// ---------------------------------------------------------------------------

const ROLE_PRIMARY: u8 = 1;
const ROLE_REPLICA: u8 = 2;

fn role_from(v: u8) -> Role {
    match v {
        ROLE_PRIMARY => Role::Primary,
        ROLE_REPLICA => Role::Replica,
        _ => Role::Unknown,
    }
}

/// What the last probe of a node found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Observed {
    Unknown,
    Failed,
    Answered { in_recovery: bool },
}

#[derive(Debug)]
struct NodeInner {
    observed: Observed,
    /// Consecutive failed probes.
    failed_probes: u32,
    /// Lost the primary role and not seen in recovery since: it may not
    /// take the writes back.
    deposed: bool,
    health: NodeHealth,
    ewma: PeakEwma,
    lag_time: Option<Duration>,
    last_probe: Option<Timestamp>,
}

/// One node: immutable identity, atomics read by the hot path, and a mutex
/// for the rest.
struct Node<P> {
    name: String,
    url: Option<ConnectionUrl>,
    pool: P,
    tier: u8,
    weight: AtomicU64,
    banned: AtomicBool,
    lag_banned: AtomicBool,
    role: AtomicU8,
    replay_lsn: AtomicU64,
    has_replay: AtomicBool,
    /// Bumped (under the node's mutex) whenever what is known of its replay
    /// position becomes void: a ban or a role change. A replay position
    /// read before a bump is never stored after it.
    generation: AtomicU64,
    /// [`LAG_UNKNOWN`] when unknown.
    lag_bytes: AtomicU64,
    /// Nanoseconds since the router's epoch + 1 of the staleness bound; 0 = unknown.
    fresh_as_of: AtomicU64,
    in_flight: AtomicU32,
    latency: AtomicU64,
    probing: AtomicBool,
    inner: Mutex<NodeInner>,
}

impl<P> fmt::Debug for Node<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl<P> Node<P> {
    fn lock(&self) -> std::sync::MutexGuard<'_, NodeInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn weight(&self) -> f64 {
        f64::from_bits(self.weight.load(Ordering::Relaxed))
    }

    fn candidate(&self) -> Candidate {
        Candidate {
            weight: self.weight(),
            latency_secs: f64::from_bits(self.latency.load(Ordering::Relaxed)),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }

    fn sync_ban(&self, health: &NodeHealth) {
        self.banned.store(health.is_banned(), Ordering::Release);
    }

    fn lag_bytes(&self) -> Option<u64> {
        Some(self.lag_bytes.load(Ordering::Relaxed)).filter(|&b| b != LAG_UNKNOWN)
    }

    /// Forgets the replay position and lag (after a ban or a role change: a
    /// standby restarted after a crash may come back *behind* the position it
    /// had reached). Call with the node's mutex held.
    fn forget_replay(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.has_replay.store(false, Ordering::Release);
        self.replay_lsn.store(0, Ordering::Release);
        self.lag_bytes.store(LAG_UNKNOWN, Ordering::Relaxed);
        self.fresh_as_of.store(0, Ordering::Release);
    }
}

/// `lag_bytes` of a node whose lag is unknown.
const LAG_UNKNOWN: u64 = u64::MAX;

/// What a query failure does to the node it ran on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// Bans it at once (the server is unreachable or going away).
    Ban,
    /// Nothing (the client side was saturated); counted only.
    Transient,
    /// Counts toward `max_consecutive_errors`.
    Query,
}

fn failure_of<E: QueryError>(e: &E) -> Failure {
    if e.bans_node() {
        Failure::Ban
    } else if e.is_connection_error() {
        Failure::Transient
    } else {
        Failure::Query
    }
}

/// Clears a node's `probing` flag however its probe task ends (completion,
/// panic, or abort when the caller of `probe_all` is cancelled).
struct Probing<P>(Arc<Node<P>>);

impl<P> Drop for Probing<P> {
    fn drop(&mut self) {
        self.0.probing.store(false, Ordering::Release);
    }
}

struct InFlight<'a>(&'a AtomicU32);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicU32) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Topology<P> {
    nodes: Vec<Arc<Node<P>>>,
    primary: Option<usize>,
    /// The replicas that serve [`Consistency::Any`] reads (lowest tier only),
    /// recomputed whenever a ban, role, lag ban or weight changes, so the
    /// common read picks in O(1).
    any: RwLock<Vec<u32>>,
}

impl<P> Topology<P> {
    fn new(nodes: Vec<Arc<Node<P>>>, primary: Option<usize>) -> Self {
        let topo = Self {
            nodes,
            primary,
            any: RwLock::new(Vec::new()),
        };
        topo.refresh_any();
        topo
    }

    fn primary(&self) -> Option<&Arc<Node<P>>> {
        self.primary.map(|i| &self.nodes[i])
    }

    fn serves_any(&self, i: usize) -> bool {
        let node = &self.nodes[i];
        Some(i) != self.primary
            && node.role.load(Ordering::Acquire) == ROLE_REPLICA
            && node.weight() > 0.0
            && !node.banned.load(Ordering::Acquire)
            && !node.lag_banned.load(Ordering::Acquire)
    }

    /// Recomputes the list under its write lock, so that concurrent
    /// refreshes cannot overwrite a newer list with an older one: the last
    /// to take the lock reads the latest node state.
    fn refresh_any(&self) {
        let mut any = self.any.write().unwrap_or_else(PoisonError::into_inner);
        let mut best = u8::MAX;
        let list = &mut *any;
        list.clear();
        for (i, node) in self.nodes.iter().enumerate() {
            if !self.serves_any(i) || node.tier > best {
                continue;
            }
            if node.tier < best {
                best = node.tier;
                list.clear();
            }
            list.push(u32::try_from(i).unwrap_or(u32::MAX));
        }
    }
}

struct Inner<P> {
    config: ReplicaConfig,
    clock: Arc<dyn Clock>,
    epoch: Instant,
    topology: RwLock<Arc<Topology<P>>>,
    rng: Mutex<SplitMix64>,
    turn: AtomicU64,
    history: Mutex<PrimaryHistory>,
    reads: AtomicU64,
    writes: AtomicU64,
    fallbacks: AtomicU64,
    retries: AtomicU64,
    role_changes: AtomicU64,
    /// Whether more than one node answers as writable (reported once).
    split_brain: AtomicBool,
    wake: Arc<tokio::sync::Notify>,
    apply: Mutex<()>,
    monitor: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<P> Drop for Inner<P> {
    fn drop(&mut self) {
        if let Some(h) = self
            .monitor
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            h.abort();
        }
    }
}

/// Routes writes to the primary and reads to a healthy, fresh-enough
/// replica. A cheap-to-clone handle (`Arc` inside); clones share everything.
///
/// See the [module documentation](super) for an overview and examples.
pub struct ReplicaRouter<P> {
    inner: Arc<Inner<P>>,
}

impl<P> Clone for ReplicaRouter<P> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<P> fmt::Debug for ReplicaRouter<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let topo = self.inner.topology();
        f.debug_struct("ReplicaRouter")
            .field("strategy", &self.inner.config.strategy)
            .field("primary", &topo.primary().map(|n| n.name.as_str()))
            .field("nodes", &topo.nodes.len())
            .finish()
    }
}

/// Builder for [`ReplicaRouter`].
#[must_use = "a builder does nothing until `.build()` is called"]
pub struct ReplicaRouterBuilder<P> {
    config: ReplicaConfig,
    clock: Arc<dyn Clock>,
    primary: Option<NodeSpec<P>>,
    replicas: Vec<NodeSpec<P>>,
    monitor: bool,
}

impl<P: fmt::Debug> fmt::Debug for ReplicaRouterBuilder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaRouterBuilder")
            .field("config", &self.config)
            .field("primary", &self.primary)
            .field("replicas", &self.replicas)
            .field("monitor", &self.monitor)
            .finish_non_exhaustive()
    }
}

impl<P: NodePool> ReplicaRouterBuilder<P> {
    /// Replaces the configuration (default: [`ReplicaConfig::default`]).
    pub fn config(mut self, config: ReplicaConfig) -> Self {
        self.config = config;
        self
    }

    /// The primary node (required).
    pub fn primary(mut self, spec: NodeSpec<P>) -> Self {
        self.primary = Some(spec);
        self
    }

    /// Adds a replica.
    pub fn replica(mut self, spec: NodeSpec<P>) -> Self {
        self.replicas.push(spec);
        self
    }

    /// The clock for bans, staleness and latency (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Whether to run the background monitor (default: true). Without it,
    /// call [`ReplicaRouter::probe_all`] yourself (tests with a manual clock).
    pub fn monitor(mut self, enabled: bool) -> Self {
        self.monitor = enabled;
        self
    }

    /// Validates the configuration, probes every node once (a node that does
    /// not answer starts banned) and starts the monitor on the current tokio
    /// runtime.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an invalid [`ReplicaConfig`], a missing
    /// primary or a negative / non-finite weight; [`Error::DuplicateNode`]
    /// when two nodes share a name. An unreachable node is not an error.
    pub async fn build(self) -> Result<ReplicaRouter<P>> {
        self.config.validate()?;
        let primary = self
            .primary
            .ok_or_else(|| invalid("primary", "a primary node is required"))?;
        let clock = self.clock;
        let now = clock.now();
        let mut nodes: Vec<Arc<Node<P>>> = Vec::with_capacity(1 + self.replicas.len());
        for (i, spec) in std::iter::once(primary).chain(self.replicas).enumerate() {
            if nodes.iter().any(|n| n.name == spec.name) {
                return Err(Error::DuplicateNode(spec.name));
            }
            let role = if i == 0 { ROLE_PRIMARY } else { ROLE_REPLICA };
            nodes.push(Arc::new(new_node(spec, role, &self.config, now)?));
        }
        let seed = self
            .config
            .seed
            .unwrap_or_else(|| SplitMix64::from_entropy().next_u64());
        let inner = Arc::new(Inner {
            epoch: now,
            clock,
            topology: RwLock::new(Arc::new(Topology::new(nodes, Some(0)))),
            rng: Mutex::new(SplitMix64::new(seed)),
            turn: AtomicU64::new(0),
            history: Mutex::new(PrimaryHistory::new(256)),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            role_changes: AtomicU64::new(0),
            split_brain: AtomicBool::new(false),
            wake: Arc::new(tokio::sync::Notify::new()),
            apply: Mutex::new(()),
            monitor: Mutex::new(None),
            config: self.config,
        });
        inner.probe_round(true).await;
        if self.monitor {
            let handle = tokio::spawn(monitor_loop(Arc::downgrade(&inner), inner.wake.clone()));
            *inner.monitor.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        }
        Ok(ReplicaRouter { inner })
    }
}

fn new_node<P>(
    spec: NodeSpec<P>,
    role: u8,
    config: &ReplicaConfig,
    now: Instant,
) -> Result<Node<P>> {
    let weight = validate_weight(&spec.name, spec.weight)?;
    Ok(Node {
        name: spec.name,
        url: spec.url,
        pool: spec.pool,
        tier: spec.tier,
        weight: AtomicU64::new(weight.to_bits()),
        banned: AtomicBool::new(true),
        lag_banned: AtomicBool::new(false),
        role: AtomicU8::new(role),
        replay_lsn: AtomicU64::new(0),
        has_replay: AtomicBool::new(false),
        generation: AtomicU64::new(0),
        lag_bytes: AtomicU64::new(LAG_UNKNOWN),
        fresh_as_of: AtomicU64::new(0),
        in_flight: AtomicU32::new(0),
        latency: AtomicU64::new(config.initial_latency.as_secs_f64().to_bits()),
        probing: AtomicBool::new(false),
        inner: Mutex::new(NodeInner {
            observed: Observed::Unknown,
            failed_probes: 0,
            deposed: false,
            health: NodeHealth::unprobed(now),
            ewma: PeakEwma::new(config.initial_latency, config.ewma_decay),
            lag_time: None,
            last_probe: None,
        }),
    })
}

async fn monitor_loop<P: NodePool>(
    weak: std::sync::Weak<Inner<P>>,
    wake: Arc<tokio::sync::Notify>,
) {
    loop {
        let delay = match weak.upgrade() {
            Some(inner) => inner.next_delay(),
            None => return,
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = wake.notified() => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        inner.probe_round(false).await;
    }
}

/// Up to 64 candidate indices on the stack; more spill to the heap.
enum Picks {
    Inline([u16; 64], usize),
    Heap(Vec<usize>),
}

impl Picks {
    fn new(n: usize) -> Self {
        if n <= 64 {
            Self::Inline([0; 64], 0)
        } else {
            Self::Heap(Vec::with_capacity(n))
        }
    }
    fn clear(&mut self) {
        match self {
            Self::Inline(_, len) => *len = 0,
            Self::Heap(v) => v.clear(),
        }
    }
    fn push(&mut self, i: usize) {
        match self {
            Self::Inline(a, len) => {
                a[*len] = i as u16;
                *len += 1;
            }
            Self::Heap(v) => v.push(i),
        }
    }
    fn len(&self) -> usize {
        match self {
            Self::Inline(_, len) => *len,
            Self::Heap(v) => v.len(),
        }
    }
    fn get(&self, k: usize) -> usize {
        match self {
            Self::Inline(a, _) => usize::from(a[k]),
            Self::Heap(v) => v[k],
        }
    }
}

impl<P> Inner<P> {
    fn topology(&self) -> Arc<Topology<P>> {
        Arc::clone(&self.topology.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn unit(&self) -> f64 {
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_f64()
    }

    fn next_delay(&self) -> Duration {
        let jitter = self.config.monitor_jitter.mul_f64(self.unit());
        self.config.monitor_interval.saturating_add(jitter)
    }

    fn nanos_since_epoch(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn wall_of(&self, t: Instant) -> Timestamp {
        let now = self.clock.now();
        let wall = self.clock.wall();
        if t >= now {
            wall + (t - now)
        } else {
            wall - (now - t)
        }
    }

    /// The replica to read from, if one qualifies. Pure apart from reading
    /// the clock (bounded staleness only) and drawing random numbers.
    fn select(
        &self,
        topo: &Topology<P>,
        consistency: &Consistency,
        exclude: Option<&Arc<Node<P>>>,
        ignore_bans: bool,
    ) -> (Option<Arc<Node<P>>>, usize) {
        if *consistency == Consistency::Any && exclude.is_none() && !ignore_bans {
            let any = topo.any.read().unwrap_or_else(PoisonError::into_inner);
            let n = any.len();
            let at = |k: usize| any[k] as usize;
            let chosen = match (n, self.config.strategy) {
                (0, _) => None,
                (1, _) => Some(at(0)),
                (_, Strategy::RoundRobin) => {
                    let turn = self.turn.fetch_add(1, Ordering::Relaxed);
                    Some(at((turn % n as u64) as usize))
                }
                (_, strategy) => {
                    let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
                    pick(strategy, n, |k| topo.nodes[at(k)].candidate(), 0, &mut rng).map(at)
                }
            };
            // The cached list may trail a ban by a moment (it is refreshed
            // after the node's state changes): never hand out a node that no
            // longer serves; the full scan below decides instead.
            if let Some(i) = chosen
                && topo.serves_any(i)
            {
                return (Some(Arc::clone(&topo.nodes[i])), n);
            }
        }
        let now_ns = match consistency {
            Consistency::BoundedStaleness {
                max_time: Some(_), ..
            } => self.nanos_since_epoch(self.clock.now()),
            _ => 0,
        };
        let mut picks = Picks::new(topo.nodes.len());
        let mut best_tier = u8::MAX;
        let mut checked = 0;
        for (i, node) in topo.nodes.iter().enumerate() {
            if Some(i) == topo.primary
                || node.role.load(Ordering::Relaxed) != ROLE_REPLICA
                || exclude.is_some_and(|e| Arc::ptr_eq(e, node))
            {
                continue;
            }
            checked += 1;
            if node.weight() <= 0.0 || node.tier > best_tier {
                continue;
            }
            if !ignore_bans && node.banned.load(Ordering::Acquire) {
                continue;
            }
            let ok = match consistency {
                Consistency::Any => ignore_bans || !node.lag_banned.load(Ordering::Relaxed),
                Consistency::BoundedStaleness {
                    max_bytes,
                    max_time,
                } => {
                    max_bytes.is_none_or(|m| node.lag_bytes().is_some_and(|lag| lag <= m))
                        && max_time.is_none_or(|m| {
                            let fresh = node.fresh_as_of.load(Ordering::Acquire);
                            fresh != 0 && now_ns.saturating_sub(fresh - 1) <= duration_nanos(m)
                        })
                }
                Consistency::AtLeast { token, .. } => {
                    node.has_replay.load(Ordering::Acquire)
                        && node.replay_lsn.load(Ordering::Acquire) >= token.as_u64()
                }
                Consistency::Primary => false,
            };
            if !ok {
                continue;
            }
            if node.tier < best_tier {
                best_tier = node.tier;
                picks.clear();
            }
            picks.push(i);
        }
        let n = picks.len();
        let chosen = match (n, self.config.strategy) {
            (0, _) => None,
            (1, _) => Some(picks.get(0)),
            (_, Strategy::RoundRobin) => {
                let turn = self.turn.fetch_add(1, Ordering::Relaxed);
                Some(picks.get((turn % n as u64) as usize))
            }
            (_, strategy) => {
                let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
                pick(
                    strategy,
                    n,
                    |k| topo.nodes[picks.get(k)].candidate(),
                    0,
                    &mut rng,
                )
                .map(|k| picks.get(k))
            }
        };
        (chosen.map(|i| Arc::clone(&topo.nodes[i])), checked)
    }

    fn record_ok(&self, node: &Node<P>, started: Instant) {
        let now = self.clock.now();
        let mut g = node.lock();
        g.ewma.observe(now.saturating_duration_since(started), now);
        g.health.query_ok();
        node.latency
            .store(g.ewma.estimate_secs().to_bits(), Ordering::Relaxed);
    }

    fn record_error(&self, node: &Node<P>, failure: Failure) {
        let now = self.clock.now();
        let unit = self.unit();
        let mut g = node.lock();
        let t = match failure {
            Failure::Ban => g
                .health
                .connection_error(now, &self.config.ban_backoff, unit),
            Failure::Transient => {
                g.health.transient_error();
                return;
            }
            Failure::Query => g.health.query_error(
                now,
                self.config.max_consecutive_errors,
                &self.config.ban_backoff,
                unit,
            ),
        };
        if matches!(t, Transition::Banned(_)) {
            node.forget_replay();
        }
        node.sync_ban(&g.health);
        if let Transition::Banned(reason) = t {
            let until = g.health.ban().map(|b| self.wall_of(b.until));
            drop(g);
            self.topology().refresh_any();
            tracing::warn!(target: TARGET, event = "replica.ban", node = %node.name,
                reason = reason.label(), until = ?until, "node banned");
            self.wake.notify_one();
        }
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What the router knows about one node when deciding which takes writes
/// (input to [`choose_primary`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoleView {
    /// `Some(in_recovery)` when the node's last probe answered; `None` when
    /// it failed or has not run yet.
    pub answered: Option<bool>,
    /// Consecutive failed probes.
    pub failed_probes: u32,
    /// Whether the node lost the primary role (writes moved away from it)
    /// and has not been seen in recovery since. Such a node never takes the
    /// writes: an old primary that comes back writable after a failover has
    /// a diverged history. Once it answers in recovery (rewound and
    /// re-attached as a standby) it is a candidate like any other.
    pub deposed: bool,
}

/// Which node should take writes: the current primary while it answers as a
/// primary, or has not failed `failure_probes` probes in a row; otherwise
/// (it answers in recovery, or is down) the only other node that answers as
/// writable and is not [`deposed`](RoleView::deposed) (a promoted standby);
/// otherwise no change. Never a guess: with two such candidates the current
/// primary stays. (At start-up nothing is deposed, so a router configured
/// with a primary that has since been demoted finds the promoted node.)
///
/// # Examples
/// ```
/// use sysmanage_db::replica::{RoleView, choose_primary};
/// let down = RoleView { answered: None, failed_probes: 2, deposed: false };
/// let promoted = RoleView { answered: Some(false), failed_probes: 0, deposed: false };
/// let standby = RoleView { answered: Some(true), failed_probes: 0, deposed: false };
/// // standby 1 was promoted while the old primary (0) is down
/// assert_eq!(choose_primary(Some(0), &[down, promoted, standby], 2), Some(1));
/// // one failed probe is not enough
/// let blip = RoleView { failed_probes: 1, ..down };
/// assert_eq!(choose_primary(Some(0), &[blip, promoted, standby], 2), Some(0));
/// // the old primary back writable never takes the writes back while the
/// // new one (1) blips
/// let old = RoleView { answered: Some(false), failed_probes: 0, deposed: true };
/// assert_eq!(choose_primary(Some(1), &[old, down, standby], 2), Some(1));
/// ```
pub fn choose_primary(
    current: Option<usize>,
    nodes: &[RoleView],
    failure_probes: u32,
) -> Option<usize> {
    if let Some(p) = current {
        let Some(view) = nodes.get(p) else {
            return current;
        };
        match view.answered {
            Some(false) => return current,
            // Demoted: in recovery now.
            Some(true) => {}
            None if view.failed_probes >= failure_probes.max(1) => {}
            None => return current,
        }
    }
    let mut promoted = (0..nodes.len())
        .filter(|&i| Some(i) != current && nodes[i].answered == Some(false) && !nodes[i].deposed);
    match (promoted.next(), promoted.next()) {
        (Some(i), None) => Some(i),
        _ => current,
    }
}

impl<P: NodePool> Inner<P> {
    /// Probes every node not already being probed, each in its own task that
    /// applies its outcome as soon as it arrives, so a node that hangs until
    /// the probe timeout never delays what the others report (a promotion,
    /// say). With `wait`, returns once this round's probes are applied; if
    /// that wait is cancelled the probes are aborted, and each clears its
    /// node's `probing` flag as it goes (so the node is probed again next
    /// round).
    async fn probe_round(self: &Arc<Self>, wait: bool) {
        let topo = self.topology();
        let timeout = self.config.probe_timeout;
        let mut set = tokio::task::JoinSet::new();
        for node in &topo.nodes {
            if node.probing.swap(true, Ordering::AcqRel) {
                continue;
            }
            let guard = Probing(Arc::clone(node));
            let weak = Arc::downgrade(self);
            let clock = Arc::clone(&self.clock);
            set.spawn(async move {
                let node = &guard.0;
                let generation = node.generation.load(Ordering::Acquire);
                let started = clock.now();
                let result = match tokio::time::timeout(timeout, node.pool.probe()).await {
                    Ok(Ok(p)) => Ok(p),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("probe timed out after {timeout:?}")),
                };
                if let Some(inner) = weak.upgrade() {
                    inner.apply_outcome(node, started, generation, result);
                }
                drop(guard);
            });
        }
        if wait {
            while set.join_next().await.is_some() {}
        } else {
            set.detach_all();
        }
    }

    /// Applies one probe outcome: the node's role, health and lag, then the
    /// router-wide decisions that depend on it (primary, lag bans).
    /// `generation` is the node's generation when the probe started.
    fn apply_outcome(
        &self,
        node: &Arc<Node<P>>,
        started: Instant,
        generation: u64,
        result: Result<Probe, String>,
    ) {
        let _apply = self.apply.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.clock.now();
        let mut topo = self.topology();
        let Some(i) = topo.nodes.iter().position(|n| Arc::ptr_eq(n, node)) else {
            return; // removed while being probed
        };
        let unit = self.unit();
        let (transition, until) = {
            let mut g = node.lock();
            if result.is_ok() && node.generation.load(Ordering::Acquire) != generation {
                // Banned while this probe ran: what it saw may predate the
                // failure, so it neither re-admits the node nor tells its
                // replay position. The next probe will.
                return;
            }
            g.ewma.decay(now);
            node.latency
                .store(g.ewma.estimate_secs().to_bits(), Ordering::Relaxed);
            let t = match &result {
                Ok(probe) => {
                    g.observed = Observed::Answered {
                        in_recovery: probe.in_recovery,
                    };
                    g.failed_probes = 0;
                    if probe.in_recovery {
                        g.deposed = false;
                    }
                    let role = if probe.in_recovery {
                        ROLE_REPLICA
                    } else {
                        ROLE_PRIMARY
                    };
                    if node.role.swap(role, Ordering::AcqRel) != role {
                        node.forget_replay();
                    }
                    // The replay position as it is now (it may have moved
                    // back), stored before a re-admission below.
                    if let (true, Some(replay)) = (probe.in_recovery, probe.replay_lsn) {
                        node.replay_lsn.store(replay.as_u64(), Ordering::Release);
                        node.has_replay.store(true, Ordering::Release);
                    }
                    g.last_probe = Some(self.wall_of(started));
                    g.health.probe_ok(now)
                }
                Err(_) => {
                    g.observed = Observed::Failed;
                    g.failed_probes = g.failed_probes.saturating_add(1);
                    g.health.probe_failed(now, &self.config.ban_backoff, unit)
                }
            };
            if matches!(t, Transition::Banned(_)) {
                node.forget_replay();
            }
            node.sync_ban(&g.health);
            (t, g.health.ban().map(|b| self.wall_of(b.until)))
        };
        match transition {
            Transition::Banned(reason) => {
                let error = result.as_ref().err().map(String::as_str).unwrap_or("");
                tracing::warn!(target: TARGET, event = "replica.ban", node = %node.name,
                    reason = reason.label(), until = ?until, error, "node banned");
            }
            Transition::Unbanned => {
                tracing::info!(target: TARGET, event = "replica.unban", node = %node.name,
                    "node re-admitted");
            }
            Transition::None => {}
        }

        // Which node takes writes.
        let views: Vec<RoleView> = topo
            .nodes
            .iter()
            .map(|n| {
                let g = n.lock();
                RoleView {
                    answered: match g.observed {
                        Observed::Answered { in_recovery } => Some(in_recovery),
                        _ => None,
                    },
                    failed_probes: g.failed_probes,
                    deposed: g.deposed,
                }
            })
            .collect();
        self.check_split_brain(&topo, &views);
        let new_primary = choose_primary(topo.primary, &views, self.config.primary_failure_probes);
        if new_primary != topo.primary {
            let mut guard = self
                .topology
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if Arc::ptr_eq(&guard, &topo) {
                let old = topo.primary().map(|n| n.name.clone());
                if let Some(old) = topo.primary() {
                    // It must be seen in recovery before it may lead again.
                    old.lock().deposed = true;
                }
                let next = Arc::new(Topology::new(topo.nodes.clone(), new_primary));
                *guard = Arc::clone(&next);
                drop(guard);
                topo = next;
                self.history
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
                for n in &topo.nodes {
                    // Lag against the old primary means nothing now.
                    let mut g = n.lock();
                    n.lag_bytes.store(LAG_UNKNOWN, Ordering::Relaxed);
                    n.fresh_as_of.store(0, Ordering::Release);
                    g.lag_time = None;
                }
                self.role_changes.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: TARGET, event = "replica.role_change",
                    old_primary = ?old, new_primary = ?topo.primary().map(|n| n.name.as_str()),
                    "primary changed: writes re-pointed");
            }
        }

        // The primary's position, sampled at the start of its probe.
        if let (Some(p), Ok(probe)) = (topo.primary, &result)
            && p == i
            && let (false, Some(lsn)) = (probe.in_recovery, probe.current_lsn)
        {
            self.history
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(started, lsn);
            // Replicas whose lag was unknown for want of a primary sample.
            for (k, n) in topo.nodes.iter().enumerate() {
                if k != p && n.lag_bytes().is_none() && n.has_replay.load(Ordering::Acquire) {
                    let mut g = n.lock();
                    self.update_lag(n, &mut g, now, None);
                }
            }
        }

        // This replica's lag.
        if let Ok(probe) = &result {
            let mut g = node.lock();
            if probe.in_recovery && Some(i) != topo.primary {
                let age = probe
                    .replay_age
                    .map(|a| a.saturating_add(now.saturating_duration_since(started)));
                self.update_lag(node, &mut g, now, age);
            } else {
                node.lag_bytes.store(LAG_UNKNOWN, Ordering::Relaxed);
                g.lag_time = None;
            }
        }

        // Lag bans over every replica, with hysteresis and the guard.
        let mut lag_inputs = Vec::new();
        for (k, n) in topo.nodes.iter().enumerate() {
            if Some(k) != topo.primary && n.role.load(Ordering::Relaxed) == ROLE_REPLICA {
                let g = n.lock();
                lag_inputs.push((
                    k,
                    LagInput {
                        available: !g.health.is_banned() && n.weight() > 0.0,
                        lag_banned: n.lag_banned.load(Ordering::Relaxed),
                        lag_bytes: n.lag_bytes(),
                        lag_time: g.lag_time.unwrap_or(Duration::MAX),
                    },
                ));
            } else {
                n.lag_banned.store(false, Ordering::Relaxed);
            }
        }
        let limits = LagLimits {
            max_bytes: self.config.max_lag_bytes,
            max_time: self.config.max_lag,
            recovery_ratio: self.config.lag_recovery_ratio,
        };
        let inputs: Vec<LagInput> = lag_inputs.iter().map(|(_, l)| *l).collect();
        let bans = lag_bans(&inputs, &limits, self.config.min_serving_replicas);
        for ((k, input), banned) in lag_inputs.iter().zip(bans) {
            let n = &topo.nodes[*k];
            if banned != input.lag_banned {
                n.lag_banned.store(banned, Ordering::Relaxed);
                if banned {
                    tracing::warn!(target: TARGET, event = "replica.lag_ban", node = %n.name,
                        lag_bytes = ?input.lag_bytes, lag_secs = input.lag_time.as_secs_f64(),
                        "replica lag-banned");
                } else {
                    tracing::info!(target: TARGET, event = "replica.lag_unban", node = %n.name,
                        lag_bytes = ?input.lag_bytes, "replica re-admitted after lagging");
                }
            }
        }
        topo.refresh_any();
    }

    /// A replica's lag from its stored replay position and the primary's
    /// history. `replay_age` is the standby's own estimate, if any.
    fn update_lag(
        &self,
        node: &Node<P>,
        g: &mut NodeInner,
        now: Instant,
        replay_age: Option<Duration>,
    ) {
        if !node.has_replay.load(Ordering::Acquire) {
            node.lag_bytes.store(LAG_UNKNOWN, Ordering::Relaxed);
            node.fresh_as_of.store(0, Ordering::Release);
            g.lag_time = None;
            return;
        }
        let replay = Lsn::new(node.replay_lsn.load(Ordering::Acquire));
        let (primary_lsn, fresh) = {
            let h = self.history.lock().unwrap_or_else(PoisonError::into_inner);
            (h.latest(), h.fresh_as_of(replay))
        };
        let lag_bytes = primary_lsn.map(|p| p.bytes_since(replay).min(LAG_UNKNOWN - 1));
        node.lag_bytes
            .store(lag_bytes.unwrap_or(LAG_UNKNOWN), Ordering::Relaxed);
        node.fresh_as_of.store(
            fresh.map_or(0, |t| self.nanos_since_epoch(t).saturating_add(1)),
            Ordering::Release,
        );
        g.lag_time = match lag_bytes {
            None => None,
            Some(0) => Some(Duration::ZERO),
            Some(_) => {
                let by_history = fresh.map(|t| now.saturating_duration_since(t));
                match (by_history, replay_age) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        };
    }

    /// Reports (once per episode) when more than one node answers as
    /// writable: a split brain, e.g. an old primary back after a failover.
    fn check_split_brain(&self, topo: &Topology<P>, views: &[RoleView]) {
        let writable: Vec<&str> = views
            .iter()
            .zip(&topo.nodes)
            .filter(|(v, _)| v.answered == Some(false))
            .map(|(_, n)| n.name.as_str())
            .collect();
        if writable.len() > 1 {
            if !self.split_brain.swap(true, Ordering::Relaxed) {
                tracing::warn!(target: TARGET, event = "replica.split_brain",
                    writable = ?writable, primary = ?topo.primary().map(|n| n.name.as_str()),
                    "more than one node accepts writes; writes stay on the current primary");
            }
        } else if self.split_brain.swap(false, Ordering::Relaxed) {
            tracing::info!(target: TARGET, event = "replica.split_brain_resolved",
                writable = ?writable, "at most one node accepts writes again");
        }
    }

    /// Re-polls qualifying-but-behind replicas until one reaches `token` or
    /// `wait` (capped at `max_token_wait`) passes.
    async fn wait_for_token(
        &self,
        topo: &Topology<P>,
        consistency: &Consistency,
        token: Lsn,
        wait: Duration,
    ) -> Option<Arc<Node<P>>> {
        let start = tokio::time::Instant::now();
        let wait = wait.min(self.config.max_token_wait);
        let deadline = start.checked_add(wait).unwrap_or(start);
        loop {
            for (i, node) in topo.nodes.iter().enumerate() {
                if Some(i) == topo.primary
                    || node.role.load(Ordering::Relaxed) != ROLE_REPLICA
                    || node.banned.load(Ordering::Acquire)
                    || node.weight() <= 0.0
                    || (node.has_replay.load(Ordering::Acquire)
                        && node.replay_lsn.load(Ordering::Acquire) >= token.as_u64())
                {
                    continue;
                }
                let generation = node.generation.load(Ordering::Acquire);
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if let Ok(Ok(Some(replay))) =
                    tokio::time::timeout(left, node.pool.replay_lsn()).await
                {
                    let _g = node.lock();
                    // Not across a ban: the node may have restarted behind.
                    if node.generation.load(Ordering::Acquire) == generation {
                        node.replay_lsn.store(replay.as_u64(), Ordering::Release);
                        node.has_replay.store(true, Ordering::Release);
                    }
                }
            }
            if let (Some(node), _) = self.select(topo, consistency, None, false) {
                return Some(node);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return None;
            }
            let step = self.config.token_poll_interval.min(deadline - now);
            tokio::time::sleep(step).await;
        }
    }
}

impl<P: NodePool> ReplicaRouter<P> {
    /// A builder with the default configuration.
    pub fn builder() -> ReplicaRouterBuilder<P> {
        ReplicaRouterBuilder {
            config: ReplicaConfig::default(),
            clock: Arc::new(SystemClock),
            primary: None,
            replicas: Vec::new(),
            monitor: true,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ReplicaConfig {
        &self.inner.config
    }

    /// Runs `f` on a node chosen for `consistency` and returns its result.
    ///
    /// `f` receives a clone of the node's pool (for sqlx, a `PgPool`). If it
    /// fails at the connection level ([`QueryError::is_connection_error`]),
    /// the node is banned and `f` runs once more on another node: make read
    /// closures safe to repeat. Latency and in-flight counts feed the
    /// balancer; consecutive SQL errors ban a node.
    ///
    /// # Errors
    /// [`Error::Query`] with `f`'s error as the source;
    /// [`Error::NoReplica`] when nothing qualifies and the policy is
    /// [`NoReplicaPolicy::Error`]; [`Error::NoPrimary`] when the read must go
    /// to the primary and there is none.
    pub async fn read<T, E, F, Fut>(&self, consistency: Consistency, mut f: F) -> Result<T>
    where
        F: FnMut(P) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: QueryError,
    {
        let inner = &*self.inner;
        inner.reads.fetch_add(1, Ordering::Relaxed);
        let mut failed: Option<(Arc<Node<P>>, E)> = None;
        loop {
            let node = match self
                .route(&consistency, failed.as_ref().map(|f| &f.0))
                .await
            {
                Ok(node) => node,
                Err(e) => {
                    return Err(match failed {
                        Some((node, error)) => query_error(&node.name, true, error),
                        None => e,
                    });
                }
            };
            let span = tracing::debug_span!(target: TARGET, "sysmanage.replica.read",
                consistency = consistency.label(), node = %node.name, retry = failed.is_some());
            let started = inner.clock.now();
            let result = {
                let _in_flight = InFlight::new(&node.in_flight);
                f(node.pool.clone()).instrument(span).await
            };
            match result {
                Ok(v) => {
                    inner.record_ok(&node, started);
                    return Ok(v);
                }
                Err(e) => {
                    let connection = e.is_connection_error();
                    inner.record_error(&node, failure_of(&e));
                    if connection && failed.is_none() {
                        inner.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(target: TARGET, event = "replica.retry", node = %node.name,
                            error = %e, "connection-level read failure, retrying on another node");
                        failed = Some((node, e));
                        continue;
                    }
                    return Err(query_error(&node.name, connection, e));
                }
            }
        }
    }

    /// Runs `f` on the primary. Writes are never retried; a connection-level
    /// failure or a read-only error triggers an immediate probe round so a
    /// promoted standby is found quickly.
    ///
    /// # Errors
    /// [`Error::NoPrimary`], or [`Error::Query`] with `f`'s error as the source.
    pub async fn write<T, E, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(P) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: QueryError,
    {
        let inner = &*self.inner;
        inner.writes.fetch_add(1, Ordering::Relaxed);
        let topo = inner.topology();
        let node = Arc::clone(topo.primary().ok_or(Error::NoPrimary)?);
        drop(topo);
        let span =
            tracing::debug_span!(target: TARGET, "sysmanage.replica.write", node = %node.name);
        let started = inner.clock.now();
        let result = {
            let _in_flight = InFlight::new(&node.in_flight);
            f(node.pool.clone()).instrument(span).await
        };
        match result {
            Ok(v) => {
                inner.record_ok(&node, started);
                Ok(v)
            }
            Err(e) => {
                let connection = e.is_connection_error();
                if connection || e.is_read_only_error() {
                    inner.wake.notify_one();
                }
                inner.record_error(&node, failure_of(&e));
                Err(query_error(&node.name, connection, e))
            }
        }
    }

    /// The primary's current WAL insert position: call it **after** a write
    /// committed and pass it to [`Consistency::at_least`] for read-your-writes.
    ///
    /// # Errors
    /// [`Error::NoPrimary`], or [`Error::Query`] when the primary fails.
    pub async fn wal_token(&self) -> Result<WalToken> {
        let inner = &*self.inner;
        let node = Arc::clone(inner.topology().primary().ok_or(Error::NoPrimary)?);
        match node.pool.current_wal_lsn().await {
            Ok(lsn) => Ok(lsn),
            Err(source) => Err(Error::Query {
                node: node.name.clone(),
                connection: false,
                source,
            }),
        }
    }

    /// [`write`](Self::write), then [`wal_token`](Self::wal_token): the
    /// result and a token for reading the write back from a replica.
    ///
    /// Once the write succeeded this never fails: if the token cannot be
    /// read (the primary died just after the commit), the token is
    /// [`Lsn::MAX`], which no replica reaches, so reads with it go to the
    /// primary (event `replica.token_unavailable`). The caller keeps the
    /// result of a write that did commit and does not retry it.
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub async fn write_with_token<T, E, F, Fut>(&self, f: F) -> Result<(T, WalToken)>
    where
        F: FnOnce(P) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: QueryError,
    {
        let value = self.write(f).await?;
        let token = match self.wal_token().await {
            Ok(token) => token,
            Err(error) => {
                let source = std::error::Error::source(&error).map(ToString::to_string);
                tracing::warn!(target: TARGET, event = "replica.token_unavailable",
                    error = %error, source = ?source,
                    "write committed but its wal position could not be read; reads with its token go to the primary");
                Lsn::MAX
            }
        };
        Ok((value, token))
    }

    async fn route(
        &self,
        consistency: &Consistency,
        exclude: Option<&Arc<Node<P>>>,
    ) -> Result<Arc<Node<P>>> {
        let inner = &*self.inner;
        let topo = inner.topology();
        if *consistency != Consistency::Primary {
            let (node, checked) = inner.select(&topo, consistency, exclude, false);
            if let Some(node) = node {
                return Ok(node);
            }
            if let Consistency::AtLeast {
                token,
                wait: Some(wait),
            } = consistency
                && exclude.is_none()
                && *token != Lsn::MAX
                && let Some(node) = inner
                    .wait_for_token(&topo, consistency, *token, *wait)
                    .await
            {
                return Ok(node);
            }
            match inner.config.no_replica {
                NoReplicaPolicy::FallbackToPrimary => {}
                NoReplicaPolicy::Error => {
                    return Err(Error::NoReplica {
                        consistency: consistency.label(),
                        checked,
                    });
                }
                NoReplicaPolicy::UnbanAll => {
                    if let (Some(node), _) = inner.select(&topo, consistency, exclude, true) {
                        tracing::debug!(target: TARGET, event = "replica.unban_all", node = %node.name,
                            "no replica qualified; ignoring bans");
                        return Ok(node);
                    }
                }
            }
            inner.fallbacks.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: TARGET, event = "replica.fallback",
                consistency = consistency.label(), checked, "no replica qualified; reading from the primary");
        }
        let primary = topo.primary().ok_or(Error::NoPrimary)?;
        if exclude.is_some_and(|e| Arc::ptr_eq(e, primary)) {
            return Err(Error::NoPrimary);
        }
        Ok(Arc::clone(primary))
    }

    /// The name of the node [`read`](Self::read) would use for `consistency`
    /// now, without running anything (no waiting for tokens). `None` when no
    /// replica qualifies and the read would fall back or fail.
    pub fn pick_replica(&self, consistency: &Consistency) -> Option<String> {
        let topo = self.inner.topology();
        self.inner
            .select(&topo, consistency, None, false)
            .0
            .map(|n| n.name.clone())
    }

    /// Like [`pick_replica`](Self::pick_replica) but without allocating: only
    /// whether a replica qualifies (used by benchmarks of the hot path).
    #[doc(hidden)]
    pub fn has_replica_for(&self, consistency: &Consistency) -> bool {
        let topo = self
            .inner
            .topology
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        self.inner
            .select(&topo, consistency, None, false)
            .0
            .is_some()
    }

    /// Probes every node once and applies the results (bans, lag, roles),
    /// returning when all are applied. The monitor does this every interval
    /// (without waiting for slow nodes); call it yourself when the monitor is
    /// off. A node whose probe is already running is not probed twice.
    pub async fn probe_all(&self) {
        self.inner.probe_round(true).await;
    }

    /// Adds a replica at runtime. It serves after its first successful probe
    /// (the monitor is woken to probe it at once).
    ///
    /// # Errors
    /// [`Error::DuplicateNode`], or [`Error::InvalidConfig`] for a bad weight.
    pub fn add_replica(&self, spec: NodeSpec<P>) -> Result<()> {
        let inner = &*self.inner;
        let node = Arc::new(new_node(
            spec,
            ROLE_REPLICA,
            &inner.config,
            inner.clock.now(),
        )?);
        // Serialised with probe outcomes, so none is applied to a topology
        // this replaces.
        let _apply = inner.apply.lock().unwrap_or_else(PoisonError::into_inner);
        let mut guard = inner
            .topology
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if guard.nodes.iter().any(|n| n.name == node.name) {
            return Err(Error::DuplicateNode(node.name.clone()));
        }
        let mut nodes = guard.nodes.clone();
        nodes.push(node);
        *guard = Arc::new(Topology::new(nodes, guard.primary));
        drop(guard);
        inner.wake.notify_one();
        Ok(())
    }

    /// Removes a node at runtime. Queries already running on it finish
    /// undisturbed.
    ///
    /// # Errors
    /// [`Error::UnknownNode`]; [`Error::InvalidConfig`] for the current primary.
    pub fn remove_node(&self, name: &str) -> Result<()> {
        let _apply = self
            .inner
            .apply
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut guard = self
            .inner
            .topology
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let i = guard
            .nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| Error::UnknownNode(name.to_owned()))?;
        if guard.primary == Some(i) {
            return Err(invalid(
                "node",
                format!("cannot remove {name:?}: it is the current primary"),
            ));
        }
        let mut nodes = guard.nodes.clone();
        nodes.remove(i);
        let primary = guard.primary.map(|p| if p > i { p - 1 } else { p });
        *guard = Arc::new(Topology::new(nodes, primary));
        Ok(())
    }

    /// Changes a node's weight at runtime; 0 drains it.
    ///
    /// # Errors
    /// [`Error::UnknownNode`]; [`Error::InvalidConfig`] for a negative or
    /// non-finite weight.
    pub fn set_weight(&self, name: &str, weight: f64) -> Result<()> {
        let weight = validate_weight(name, weight)?;
        let topo = self.inner.topology();
        let node = topo
            .nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| Error::UnknownNode(name.to_owned()))?;
        node.weight.store(weight.to_bits(), Ordering::Relaxed);
        topo.refresh_any();
        Ok(())
    }

    /// The pool of node `name`, e.g. to run maintenance on one node.
    pub fn node_pool(&self, name: &str) -> Option<P> {
        self.inner
            .topology()
            .nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.pool.clone())
    }

    /// The pool of the current primary.
    pub fn primary_pool(&self) -> Option<P> {
        self.inner.topology().primary().map(|n| n.pool.clone())
    }

    /// The name of the current primary.
    pub fn primary_name(&self) -> Option<String> {
        self.inner.topology().primary().map(|n| n.name.clone())
    }

    /// A serialisable snapshot of every node and the router's counters.
    pub fn status(&self) -> RouterStatus {
        let inner = &*self.inner;
        let topo = inner.topology();
        let nodes = topo
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let g = node.lock();
                let state = match g.health.ban() {
                    Some(ban) => NodeState::Banned {
                        reason: ban.reason,
                        until: inner.wall_of(ban.until),
                    },
                    None if node.lag_banned.load(Ordering::Relaxed) => NodeState::LagBanned,
                    None => NodeState::Healthy,
                };
                let stats = node.pool.pool_stats();
                NodeStatus {
                    name: node.name.clone(),
                    url: node.url.as_ref().map(|u| u.redacted().to_owned()),
                    role: role_from(node.role.load(Ordering::Relaxed)),
                    is_primary: topo.primary == Some(i),
                    state,
                    weight: node.weight(),
                    tier: node.tier,
                    replay_lsn: node
                        .has_replay
                        .load(Ordering::Relaxed)
                        .then(|| Lsn::new(node.replay_lsn.load(Ordering::Relaxed))),
                    lag_bytes: node.lag_bytes(),
                    lag_seconds: g.lag_time.map(|d| d.as_secs_f64()),
                    latency_ms: g.ewma.estimate_secs() * 1e3,
                    in_flight: node.in_flight.load(Ordering::Relaxed),
                    probe_failures: g.health.probe_failures,
                    connection_errors: g.health.connection_errors,
                    query_errors: g.health.query_errors,
                    pool_size: stats.size,
                    pool_idle: stats.idle,
                    last_probe: g.last_probe,
                }
            })
            .collect();
        RouterStatus {
            strategy: inner.config.strategy,
            primary: topo.primary().map(|n| n.name.clone()),
            reads: inner.reads.load(Ordering::Relaxed),
            writes: inner.writes.load(Ordering::Relaxed),
            fallbacks: inner.fallbacks.load(Ordering::Relaxed),
            retries: inner.retries.load(Ordering::Relaxed),
            role_changes: inner.role_changes.load(Ordering::Relaxed),
            nodes,
        }
    }
}

fn query_error<E: QueryError>(node: &str, connection: bool, e: E) -> Error {
    Error::Query {
        node: node.to_owned(),
        connection,
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::{MemoryCluster, MemoryNode};

    #[tokio::test]
    async fn a_stale_any_list_never_hands_out_a_banned_node() {
        let cluster = MemoryCluster::new();
        let router: ReplicaRouter<MemoryNode> = ReplicaRouter::builder()
            .monitor(false)
            .primary(NodeSpec::new("p", cluster.add_primary()))
            .replica(NodeSpec::new("r0", cluster.add_replica()))
            .replica(NodeSpec::new("r1", cluster.add_replica()))
            .build()
            .await
            .unwrap();
        let topo = router.inner.topology();
        assert_eq!(topo.any.read().unwrap().len(), 2);
        // Banned, but the cached list not refreshed yet (the window a
        // concurrent refresh could leave open).
        topo.nodes[1].banned.store(true, Ordering::Release);
        for _ in 0..100 {
            assert_eq!(
                router.pick_replica(&Consistency::Any).as_deref(),
                Some("r1")
            );
        }
        // Nothing serves: no pick at all.
        topo.nodes[2].banned.store(true, Ordering::Release);
        assert_eq!(router.pick_replica(&Consistency::Any), None);
    }
}
