//! The router handle: its builder, reads, writes and runtime administration.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use sysmanage_core::{Clock, SplitMix64, SystemClock, Timestamp};
use tracing::Instrument;

use super::config::{
    Consistency, NoReplicaPolicy, NodeSpec, ReplicaConfig, invalid, validate_weight,
};
use super::failure::{FailureClass, QueryError, QueryFailure};
use super::health::{PrimaryHistory, Transition};
use super::monitor::monitor_loop;
use super::node::{Failure, InFlight, Node, ROLE_PRIMARY, ROLE_REPLICA, failure_of, new_node};
use super::pool::NodePool;
use super::timeline::{PrimaryTimeline, TimelineHistory, TimelineId, WalToken};
use super::topology::Topology;
use crate::error::{Error, Result};

pub(super) const TARGET: &str = "sysmanage_db::replica";

pub(super) struct Inner<P> {
    pub(super) config: ReplicaConfig,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) epoch: Instant,
    pub(super) topology: RwLock<Arc<Topology<P>>>,
    pub(super) rng: Mutex<SplitMix64>,
    pub(super) turn: AtomicU64,
    pub(super) history: Mutex<PrimaryHistory>,
    pub(super) reads: AtomicU64,
    pub(super) writes: AtomicU64,
    pub(super) fallbacks: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) role_changes: AtomicU64,
    /// Set by `shutdown`: reads and writes are refused from then on.
    pub(super) closed: AtomicBool,
    /// Replicas found diverged from the primary's history (events).
    pub(super) divergences: AtomicU64,
    /// Whether more than one node answers as writable (reported once).
    pub(super) split_brain: AtomicBool,
    /// What is known of the current primary's timeline and history.
    pub(super) primary_timeline: RwLock<PrimaryTimeline>,
    /// Timeline histories read so far (they never change).
    pub(super) histories: Mutex<HashMap<TimelineId, Arc<TimelineHistory>>>,
    pub(super) wake: Arc<tokio::sync::Notify>,
    pub(super) apply: Mutex<()>,
    pub(super) monitor: Mutex<Option<tokio::task::JoinHandle<()>>>,
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
    pub(super) inner: Arc<Inner<P>>,
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
            divergences: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            split_brain: AtomicBool::new(false),
            primary_timeline: RwLock::new(PrimaryTimeline::NotReported),
            histories: Mutex::new(HashMap::new()),
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

impl<P> Inner<P> {
    pub(super) fn topology(&self) -> Arc<Topology<P>> {
        Arc::clone(&self.topology.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// What is known of the primary's timeline (a cheap clone).
    pub(super) fn primary_timeline(&self) -> PrimaryTimeline {
        self.primary_timeline
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn unit(&self) -> f64 {
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_f64()
    }

    pub(super) fn next_delay(&self) -> Duration {
        let jitter = self.config.monitor_jitter.mul_f64(self.unit());
        self.config.monitor_interval.saturating_add(jitter)
    }

    pub(super) fn nanos_since_epoch(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    pub(super) fn wall_of(&self, t: Instant) -> Timestamp {
        let now = self.clock.now();
        let wall = self.clock.wall();
        if t >= now {
            wall + (t - now)
        } else {
            wall - (now - t)
        }
    }

    pub(super) fn record_ok(&self, node: &Node<P>, started: Instant) {
        let now = self.clock.now();
        let mut g = node.lock();
        g.ewma.observe(now.saturating_duration_since(started), now);
        g.health.query_ok();
        node.latency
            .store(g.ewma.estimate_secs().to_bits(), Ordering::Relaxed);
    }

    pub(super) fn record_error(&self, node: &Node<P>, failure: Failure) {
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
            node.metrics.banned(reason.label());
            self.topology().refresh_any();
            tracing::warn!(target: TARGET, event = "replica.ban", node = %node.name,
                reason = reason.label(), until = ?until, "node banned");
            self.wake.notify_one();
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
    /// fails at the connection level ([`FailureClass::is_connection`]),
    /// the node is banned and `f` runs once more on another node at once,
    /// then again with a short backoff (re-routed each time, so it reaches a
    /// promoted primary) until
    /// [`read_retry_budget`](ReplicaConfig::read_retry_budget) is spent:
    /// make read closures safe to repeat. Latency and in-flight counts feed
    /// the balancer; consecutive SQL errors ban a node.
    ///
    /// `f` may return any error type (see [`QueryError`]); a failure comes
    /// back as [`QueryFailure::Query`] holding `f`'s error as it was
    /// returned, and `?` into [`Result`](crate::Result) erases it into
    /// [`Error::Query`].
    ///
    /// # Errors
    /// [`QueryFailure::Query`] with `f`'s error;
    /// [`QueryFailure::Router`] with [`Error::NoReplica`] when nothing
    /// qualifies and the policy is [`NoReplicaPolicy::Error`], or
    /// [`Error::NoPrimary`] when the read must go to the primary and there
    /// is none.
    pub async fn read<T, E, F, Fut>(
        &self,
        consistency: Consistency,
        mut f: F,
    ) -> std::result::Result<T, QueryFailure<E>>
    where
        F: FnMut(P) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: QueryError,
    {
        let inner = &*self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(QueryFailure::Router(Error::ShutDown));
        }
        inner.reads.fetch_add(1, Ordering::Relaxed);
        let first_try = tokio::time::Instant::now();
        // The node of the last connection-level failure and its error;
        // `exclude` only for the immediate retry on another node.
        let mut failed: Option<(Arc<Node<P>>, E)> = None;
        let mut exclude = false;
        let mut attempt: u32 = 0;
        loop {
            let routed = self
                .route(
                    &consistency,
                    failed.as_ref().filter(|_| exclude).map(|f| &f.0),
                )
                .await;
            let node = match routed {
                Ok(node) => node,
                Err(e) => match failed.take() {
                    // Nothing else to try now: wait for the topology to
                    // change (a promotion) while the budget lasts.
                    Some(f) if self.may_retry_read(first_try, attempt).await => {
                        attempt += 1;
                        failed = Some(f);
                        exclude = false;
                        continue;
                    }
                    Some((node, error)) => return Err(query_error(&node.name, true, error)),
                    None => return Err(QueryFailure::Router(e)),
                },
            };
            let span = tracing::debug_span!(target: TARGET, "sysmanage.replica.read",
                consistency = consistency.label(), node = %node.name, retry = failed.is_some());
            let started = inner.clock.now();
            node.metrics.reads(consistency.label()).increment(1);
            let result = {
                let _in_flight = InFlight::new(&node.in_flight);
                f(node.pool.clone()).instrument(span).await
            };
            node.metrics
                .read_seconds
                .record(inner.clock.now().saturating_duration_since(started));
            match result {
                Ok(v) => {
                    inner.record_ok(&node, started);
                    return Ok(v);
                }
                Err(e) => {
                    let class = e.class();
                    let connection = class.is_connection();
                    node.metrics.count_error(connection);
                    inner.record_error(&node, failure_of(class));
                    if !connection {
                        return Err(query_error(&node.name, false, e));
                    }
                    let immediate = failed.is_none();
                    if immediate || self.may_retry_read(first_try, attempt).await {
                        if !immediate {
                            attempt += 1;
                        }
                        inner.retries.fetch_add(1, Ordering::Relaxed);
                        node.metrics.retries.increment(1);
                        tracing::debug!(target: TARGET, event = "replica.retry", node = %node.name,
                            error = %e, attempt, "connection-level read failure, retrying");
                        exclude = immediate;
                        failed = Some((node, e));
                        continue;
                    }
                    return Err(query_error(&node.name, true, e));
                }
            }
        }
    }

    /// Whether a read that failed at the connection level may try again,
    /// after sleeping the backoff for `attempt` (50 ms doubling to 500 ms)
    /// and waking the monitor so that a promotion is found soon.
    async fn may_retry_read(&self, first_try: tokio::time::Instant, attempt: u32) -> bool {
        let budget = self.inner.config.read_retry_budget;
        let delay = Duration::from_millis(50)
            .saturating_mul(1 << attempt.min(4))
            .min(Duration::from_millis(500));
        if first_try.elapsed().saturating_add(delay) >= budget {
            return false;
        }
        self.inner.wake.notify_one();
        tokio::time::sleep(delay).await;
        true
    }

    /// Runs `f` on the primary. Writes are never retried; a connection-level
    /// failure or a read-only error triggers an immediate probe round so a
    /// promoted standby is found quickly.
    ///
    /// # Errors
    /// [`QueryFailure::Router`] with [`Error::NoPrimary`], or
    /// [`QueryFailure::Query`] with `f`'s error.
    pub async fn write<T, E, F, Fut>(&self, f: F) -> std::result::Result<T, QueryFailure<E>>
    where
        F: FnOnce(P) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: QueryError,
    {
        let inner = &*self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(QueryFailure::Router(Error::ShutDown));
        }
        inner.writes.fetch_add(1, Ordering::Relaxed);
        let topo = inner.topology();
        let node = Arc::clone(topo.primary().ok_or(Error::NoPrimary)?);
        drop(topo);
        let span =
            tracing::debug_span!(target: TARGET, "sysmanage.replica.write", node = %node.name);
        let started = inner.clock.now();
        node.metrics.writes.increment(1);
        let result = {
            let _in_flight = InFlight::new(&node.in_flight);
            f(node.pool.clone()).instrument(span).await
        };
        node.metrics
            .write_seconds
            .record(inner.clock.now().saturating_duration_since(started));
        match result {
            Ok(v) => {
                inner.record_ok(&node, started);
                Ok(v)
            }
            Err(e) => {
                let class = e.class();
                node.metrics.count_error(class.is_connection());
                if class.is_connection() || class == FailureClass::ReadOnly {
                    inner.wake.notify_one();
                }
                inner.record_error(&node, failure_of(class));
                Err(query_error(&node.name, class.is_connection(), e))
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
        match node.pool.wal_token().await {
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
    /// [`WalToken::UNAVAILABLE`], which no replica reaches, so reads with it go to the
    /// primary (event `replica.token_unavailable`). The caller keeps the
    /// result of a write that did commit and does not retry it.
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub async fn write_with_token<T, E, F, Fut>(
        &self,
        f: F,
    ) -> std::result::Result<(T, WalToken), QueryFailure<E>>
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
                WalToken::UNAVAILABLE
            }
        };
        Ok((value, token))
    }

    pub(super) async fn route(
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
                && !token.is_unavailable()
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
            metrics::counter!(crate::telemetry::REPLICA_FALLBACKS, "consistency" => consistency.label())
                .increment(1);
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
}

pub(super) fn query_error<E>(node: &str, connection: bool, e: E) -> QueryFailure<E> {
    QueryFailure::Query {
        node: node.to_owned(),
        connection,
        source: e,
    }
}
