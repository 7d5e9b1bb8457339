//! The Redis Cluster backend, built on [fred](https://docs.rs/fred) 10.
//!
//! [`RedisCache`] adds to fred what a cluster cache needs and fred leaves to
//! the caller:
//!
//! * **Multi-key operations across slots.** fred sends a cross-slot `MGET`
//!   as one command and gets `CROSSSLOT` back. Here keys are grouped by slot,
//!   the slot groups by owning primary (from the routing table), each node's
//!   commands are written back to back without waiting for replies
//!   (pipelined on the connection, each with its own reply channel), nodes
//!   run concurrently, and results come back in input order. A node whose batch fails reports
//!   [`CacheError::NodeBatch`] on each of its keys — never a miss. When all
//!   keys share a slot one command is sent without a pipeline.
//! * **Resilience defaults.** A command timeout (fred has none by default),
//!   a reconnect policy, bounded `MOVED`/`ASK` redirections (followed here:
//!   fred refreshes its slot table on `MOVED`, this crate re-sends; see the
//!   note on fred 10.1 in the source), retries with jittered exponential backoff for transient errors
//!   (`TRYAGAIN`, `CLUSTERDOWN`, `MOVED` storms, timeouts, lost connections)
//!   bounded in attempts and in time, a topology refresh every
//!   [`RedisConfig::refresh_interval`] with jitter and after errors, typed
//!   [`TopologyEvent`]s, and a [`RoutingSnapshot`].
//! * **Stats** of every node, primaries and replicas, parsed from `INFO`,
//!   `CLUSTER INFO` and `CLUSTER NODES` ([`RedisCache::cluster_stats`]).
//!
//! Retries and idempotency: reads, `DEL`, `PEXPIRE`, unconditional and `XX`
//! writes are retried after any transient error. `INCRBY` and `SET … NX` are
//! retried only after errors that prove the server did not run the command
//! (`TRYAGAIN`, `CLUSTERDOWN`, `MOVED`, `LOADING`, `READONLY`); after a
//! timeout or a lost connection they return the error, since the command may
//! have run.
//!
//! # Tracing
//!
//! | target | level | event |
//! |---|---|---|
//! | `sysmanage.cache.retry` | debug | a transient error, before a retry (`op`, `attempt`, `error`) |
//! | `sysmanage.cache.topology` | debug/info | refresh failures (debug), [`TopologyEvent`]s (info) |

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use fred::clients::Client;
use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::{ClientLike, ClusterInterface, KeysInterface};
use fred::types::config::{Config, ReconnectPolicy, Server, ServerConfig, UnresponsiveConfig};
use fred::types::{
    Builder, ClusterHash, CustomCommand, Expiration, Key, SetOptions as FredSet, Value,
};
use sysmanage_core::{Backoff, Jitter, Secret, SplitMix64, Timestamp};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

use crate::cache::{ClusterCache, Limits, SetCondition, SetOptions, Ttl, check_ttl};
use crate::error::{CacheError, KeyResult, Result, SharedError};
use crate::slot::{group_by_slot, slot};
use crate::stats::{ClusterInfo, ClusterNode, ClusterStats, NodeReport, NodeStats};
use crate::topology::{RoutingSnapshot, SlotOwner, TopologyEvent, diff};

/// Settings of [`RedisCache`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Seed nodes, `host:port`. At least one is required.
    pub nodes: Vec<String>,
    /// ACL user name. Default: none.
    pub username: Option<String>,
    /// Password. Default: none. Never printed.
    pub password: Option<Secret>,
    /// Deadline of one command or one node's pipeline. Default: 1 s.
    pub command_timeout: Duration,
    /// Deadline of one connection attempt. Default: 2 s.
    pub connect_timeout: Duration,
    /// Backoff between retries of transient errors; its `max_retries`
    /// bounds the attempts. Default: 20 ms doubling to 400 ms, equal jitter,
    /// at most 12 retries.
    pub retry: Backoff,
    /// Total time one operation may spend retrying. Default: 6 s (longer
    /// than a typical automatic failover at `cluster-node-timeout 2000`).
    pub retry_budget: Duration,
    /// `MOVED`/`ASK` redirections followed per command (per slot for
    /// multi-key operations); a slot still migrating after that many is
    /// reported as [`CacheError::Unavailable`]. Default: 16.
    pub max_redirections: u32,
    /// Period of the background topology refresh. Default: 10 s.
    pub refresh_interval: Duration,
    /// Random spread of the period, as a fraction of it (0 ≤ j < 1).
    /// Default: 0.2.
    pub refresh_jitter: f64,
    /// Smallest gap between two refreshes triggered by errors. Default: 200 ms.
    pub min_refresh_gap: Duration,
    /// Capacity of the topology event channel. Default: 64.
    pub event_capacity: usize,
    /// Input limits. Default: [`Limits::default`].
    pub limits: Limits,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            username: None,
            password: None,
            // fred's own default is "no timeout": a call issued during a
            // failover would block for the whole failover.
            command_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            retry: Backoff::builder()
                .initial(Duration::from_millis(20))
                .max(Duration::from_millis(400))
                .jitter(Jitter::Equal)
                .max_retries(12)
                .build()
                .unwrap_or_default(),
            retry_budget: Duration::from_secs(6),
            max_redirections: 16,
            refresh_interval: Duration::from_secs(10),
            refresh_jitter: 0.2,
            min_refresh_gap: Duration::from_millis(200),
            event_capacity: 64,
            limits: Limits::default(),
        }
    }
}

impl RedisConfig {
    /// The defaults with these seed nodes.
    pub fn new<S: Into<String>>(nodes: impl IntoIterator<Item = S>) -> Self {
        Self {
            nodes: nodes.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Validates the settings and parses the seed nodes.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] naming the field.
    pub fn validate(&self) -> Result<Vec<(String, u16)>> {
        if self.nodes.is_empty() {
            return Err(CacheError::invalid(
                "redis.nodes",
                "at least one seed node is required",
            ));
        }
        let nodes = self
            .nodes
            .iter()
            .map(|n| {
                parse_addr(n).ok_or_else(|| {
                    CacheError::invalid("redis.nodes", format!("{n:?} is not host:port"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        for (field, d) in [
            ("redis.command_timeout", self.command_timeout),
            ("redis.connect_timeout", self.connect_timeout),
            ("redis.refresh_interval", self.refresh_interval),
        ] {
            if d.is_zero() {
                return Err(CacheError::invalid(field, "must be greater than zero"));
            }
        }
        if !(0.0..1.0).contains(&self.refresh_jitter) {
            return Err(CacheError::invalid(
                "redis.refresh_jitter",
                "must be in [0, 1)",
            ));
        }
        if self.max_redirections == 0 {
            return Err(CacheError::invalid(
                "redis.max_redirections",
                "must be at least 1",
            ));
        }
        if self.event_capacity == 0 {
            return Err(CacheError::invalid(
                "redis.event_capacity",
                "must be greater than zero",
            ));
        }
        self.limits.validate()?;
        Ok(nodes)
    }
}

fn parse_addr(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.trim().rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// Counters of one [`RedisCache`], for dashboards and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RedisCounters {
    /// Retries after transient errors.
    pub retries: u64,
    /// Operations (or keys of multi-key operations) that failed after retries.
    pub failures: u64,
    /// Topology refreshes performed.
    pub refreshes: u64,
    /// Topology events published.
    pub topology_events: u64,
}

#[derive(Debug, Default)]
struct Counters {
    retries: AtomicU64,
    failures: AtomicU64,
    refreshes: AtomicU64,
    events: AtomicU64,
}

/// A [`ClusterCache`] on a Redis Cluster. Cheap to clone; clones share the
/// connections. Dropping the last clone stops the background tasks.
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    config: RedisConfig,
    refresh: Arc<Notify>,
    events: broadcast::Sender<TopologyEvent>,
    counters: Arc<Counters>,
    node_clients: tokio::sync::Mutex<HashMap<String, Client>>,
    tasks: StdMutex<Vec<JoinHandle<()>>>,
    connection: Arc<StdMutex<Option<fred::types::ConnectHandle>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in self
            .tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
        if let Some(c) = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            c.abort();
        }
    }
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("nodes", &self.inner.config.nodes)
            .field("command_timeout", &self.inner.config.command_timeout)
            .finish_non_exhaustive()
    }
}

/// Whether an operation may be repeated after an ambiguous failure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    Always,
    OnlyIfNotExecuted,
}

struct Classified {
    error: CacheError,
    retry: bool,
    not_executed: bool,
    redirect: bool,
}

fn shared(e: FredError) -> SharedError {
    Arc::new(e)
}

fn classify(e: FredError, slot: u16, node: &str, timeout: Duration) -> Classified {
    let first = e
        .details()
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned();
    let unavailable = |e: FredError| CacheError::Unavailable {
        slot,
        node: node.to_owned(),
        source: shared(e),
    };
    match e.kind() {
        ErrorKind::Timeout => Classified {
            error: CacheError::Timeout(timeout),
            retry: true,
            not_executed: false,
            redirect: false,
        },
        ErrorKind::Routing if e.details().contains("redirections") => Classified {
            error: unavailable(e),
            retry: true,
            not_executed: true,
            redirect: true,
        },
        ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Routing | ErrorKind::Backpressure => {
            Classified {
                error: unavailable(e),
                retry: true,
                not_executed: false,
                redirect: false,
            }
        }
        _ => match first.as_str() {
            "TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "MASTERDOWN" | "MOVED" | "ASK"
            | "READONLY" => Classified {
                redirect: first == "MOVED" || first == "ASK",
                error: unavailable(e),
                retry: true,
                not_executed: true,
            },
            "OOM" => Classified {
                error: CacheError::OutOfMemory {
                    needed: 0,
                    limit: 0,
                },
                retry: false,
                not_executed: true,
                redirect: false,
            },
            _ if e.details().contains("not an integer") => Classified {
                error: CacheError::NotAnInteger,
                retry: false,
                not_executed: true,
                redirect: false,
            },
            _ if e.details().contains("overflow") => Classified {
                error: CacheError::Overflow,
                retry: false,
                not_executed: true,
                redirect: false,
            },
            _ if *e.kind() == ErrorKind::Cluster => Classified {
                error: unavailable(e),
                retry: true,
                not_executed: false,
                redirect: false,
            },
            _ => Classified {
                error: CacheError::Backend {
                    backend: "redis",
                    source: shared(e),
                },
                retry: false,
                not_executed: true,
                redirect: false,
            },
        },
    }
}

fn bytes_of(v: Value) -> Result<Option<Vec<u8>>> {
    match v {
        Value::Null => Ok(None),
        other => other
            .as_bytes()
            .map(|b| Some(b.to_vec()))
            .ok_or_else(|| unexpected(&other)),
    }
}

fn int_of(v: &Value) -> Result<i64> {
    match v {
        Value::Integer(i) => Ok(*i),
        other => other.as_i64().ok_or_else(|| unexpected(other)),
    }
}

fn unexpected(v: &Value) -> CacheError {
    CacheError::Backend {
        backend: "redis",
        source: Arc::new(std::io::Error::other(format!(
            "unexpected reply of kind {:?}",
            v.kind()
        ))),
    }
}

/// Polls every future until all are ready; outputs in input order.
async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futs.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// One command of a multi-key operation: the keys (by input index) of one
/// slot that travel together.
#[derive(Clone, Debug)]
struct Unit {
    slot: u16,
    idx: Vec<usize>,
    redirects: u32,
}

#[derive(Clone, Copy)]
enum Multi<'a> {
    Get,
    SetAll(&'a [&'a [u8]]),
    SetEach(&'a [&'a [u8]], u64),
    Del,
}

#[derive(Clone, Debug)]
enum Out {
    Value(Option<Vec<u8>>),
    Done,
    Existed(bool),
}

impl Multi<'_> {
    /// Whether each key needs its own command (else one per slot).
    fn per_key(self) -> bool {
        matches!(self, Self::SetEach(..) | Self::Del)
    }

    async fn send<C: KeysInterface + Sync>(
        self,
        c: &C,
        keys: &[&[u8]],
        u: &Unit,
    ) -> std::result::Result<Value, FredError> {
        let k = |i: usize| Key::from(keys[i]);
        match self {
            Self::Get => {
                c.mget(u.idx.iter().map(|&i| k(i)).collect::<Vec<_>>())
                    .await
            }
            Self::SetAll(values) => {
                let pairs: Vec<(Key, Value)> = u
                    .idx
                    .iter()
                    .map(|&i| (k(i), Value::from(values[i])))
                    .collect();
                c.mset(pairs).await.map(|()| Value::Null)
            }
            Self::SetEach(values, ms) => {
                let i = u.idx[0];
                c.set(
                    k(i),
                    Value::from(values[i]),
                    Some(Expiration::PX(ms as i64)),
                    None,
                    false,
                )
                .await
            }
            Self::Del => c.del(k(u.idx[0])).await,
        }
    }

    fn decode(self, u: &Unit, v: Value) -> Result<Vec<Out>> {
        match self {
            Self::Get => match v {
                Value::Array(items) if items.len() == u.idx.len() => items
                    .into_iter()
                    .map(|v| bytes_of(v).map(Out::Value))
                    .collect(),
                other if u.idx.len() == 1 => Ok(vec![Out::Value(bytes_of(other)?)]),
                other => Err(unexpected(&other)),
            },
            Self::SetAll(_) | Self::SetEach(..) => Ok(vec![Out::Done; u.idx.len()]),
            Self::Del => Ok(vec![Out::Existed(int_of(&v)? > 0)]),
        }
    }
}

impl RedisCache {
    /// Connects to the cluster and starts the topology refresher.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] for bad settings, a backend error when
    /// no seed node can be reached.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let nodes = config.validate()?;
        let fred_config = Config {
            server: ServerConfig::new_clustered(nodes),
            username: config.username.clone(),
            password: config.password.as_ref().map(|s| s.expose().to_owned()),
            ..Config::default()
        };
        let (cmd_timeout, connect_timeout) = (config.command_timeout, config.connect_timeout);
        let client = Builder::from_config(fred_config)
            .with_connection_config(|c| {
                c.connection_timeout = connect_timeout;
                c.internal_command_timeout = connect_timeout;
                // fred 10.1 follows ASK by writing ASKING and reading its
                // reply inline on a connection that has other commands in
                // flight, which can hand one key's reply to another key's
                // command (measured: wrong values during a live reshard);
                // and when a command's attempts run out during a
                // redirection, its router task ends. So fred follows no
                // redirection itself: on MOVED it still refreshes its slot
                // table (from a separate connection) and returns an error,
                // and the retry loop here re-sends, counting redirections
                // against `max_redirections`.
                c.max_redirections = 0;
                c.max_command_attempts = 3;
                c.unresponsive = UnresponsiveConfig {
                    max_timeout: Some(cmd_timeout.max(Duration::from_millis(500)) * 2),
                    interval: Duration::from_millis(250),
                };
            })
            .with_performance_config(|p| p.default_command_timeout = cmd_timeout)
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 1_000, 2))
            .build()
            .map_err(|e| CacheError::invalid("redis", e.details().to_owned()))?;
        let handle = client.init().await.map_err(|e| CacheError::Backend {
            backend: "redis",
            source: shared(e),
        })?;
        let (events, _) = broadcast::channel(config.event_capacity);
        let inner = Arc::new(Inner {
            client,
            config,
            refresh: Arc::new(Notify::new()),
            events,
            counters: Arc::new(Counters::default()),
            node_clients: tokio::sync::Mutex::new(HashMap::new()),
            tasks: StdMutex::new(Vec::new()),
            connection: Arc::new(StdMutex::new(Some(handle))),
        });
        let task = tokio::spawn(refresher(
            inner.client.clone(),
            inner.refresh.clone(),
            inner.events.clone(),
            inner.counters.clone(),
            inner.config.clone(),
            inner.connection.clone(),
        ));
        inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
        Ok(Self { inner })
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The underlying fred client, for commands this crate does not wrap.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Which primary serves which slot, as the client currently routes.
    pub fn routing(&self) -> RoutingSnapshot {
        snapshot_of(&self.inner.client)
    }

    /// Topology events published after each refresh. Slow receivers lose
    /// the oldest events (`RecvError::Lagged`), never block the cache.
    pub fn subscribe(&self) -> broadcast::Receiver<TopologyEvent> {
        self.inner.events.subscribe()
    }

    /// Asks the refresher to re-read the topology now (rate-limited by
    /// [`RedisConfig::min_refresh_gap`]).
    pub fn request_refresh(&self) {
        self.inner.refresh.notify_one();
    }

    /// Re-reads the topology and waits for it.
    ///
    /// # Errors
    /// A backend error when no node answers `CLUSTER SLOTS`.
    pub async fn refresh_now(&self) -> Result<()> {
        let limit = self.inner.config.connect_timeout * 2;
        match tokio::time::timeout(limit, self.inner.client.sync_cluster()).await {
            Ok(r) => r.map_err(|e| CacheError::Backend {
                backend: "redis",
                source: shared(e),
            }),
            Err(_) => {
                self.request_refresh();
                Err(CacheError::Timeout(limit))
            }
        }
    }

    /// Retry and refresh counters.
    pub fn counters(&self) -> RedisCounters {
        let c = &self.inner.counters;
        RedisCounters {
            retries: c.retries.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            refreshes: c.refreshes.load(Ordering::Relaxed),
            topology_events: c.events.load(Ordering::Relaxed),
        }
    }

    fn node_of(&self, slot: u16) -> String {
        self.inner
            .client
            .cached_cluster_state()
            .and_then(|r| r.get_server(slot).map(ToString::to_string))
            .unwrap_or_else(|| "unknown".to_owned())
    }

    fn retry_delay(&self, attempt: u32) -> Duration {
        self.inner
            .config
            .retry
            .delay(attempt, SplitMix64::from_entropy().next_f64())
    }

    fn may_retry(&self, attempt: u32, started: Instant) -> bool {
        let cfg = &self.inner.config;
        cfg.retry.max_retries().is_none_or(|m| attempt < m.get())
            && started.elapsed() + self.retry_delay(attempt) < cfg.retry_budget
    }

    async fn run<T, F, Fut>(&self, op: &'static str, key: &[u8], mode: Retry, f: F) -> Result<T>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = std::result::Result<T, FredError>> + Send,
        T: Send,
    {
        let started = Instant::now();
        let mut attempt = 0;
        let mut redirects = 0;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let s = slot(key);
                    let c = classify(e, s, &self.node_of(s), self.inner.config.command_timeout);
                    self.request_refresh();
                    redirects += u32::from(c.redirect);
                    let allowed = c.retry
                        && (mode == Retry::Always || c.not_executed)
                        && redirects <= self.inner.config.max_redirections;
                    if !allowed || !self.may_retry(attempt, started) {
                        self.inner.counters.failures.fetch_add(1, Ordering::Relaxed);
                        return Err(c.error);
                    }
                    tracing::debug!(target: "sysmanage.cache.retry", op, attempt, error = %c.error);
                    self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.retry_delay(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Runs the commands of `units` for one node in one pipeline.
    async fn node_batch(
        &self,
        op: Multi<'_>,
        keys: &[&[u8]],
        node: String,
        units: Vec<Unit>,
    ) -> Vec<(Unit, std::result::Result<Vec<Out>, Classified>)> {
        let timeout = self.inner.config.command_timeout;
        // Every command has its own reply channel and goes out without
        // waiting for the previous reply, so the node's commands are
        // pipelined on the connection and a reply can never be matched with
        // another key's command.
        let replies: Vec<std::result::Result<Value, FredError>> = if units.len() == 1 {
            // Fast path: one slot on this node (e.g. all keys share a tag).
            vec![op.send(&self.inner.client, keys, &units[0]).await]
        } else {
            join_all(
                units
                    .iter()
                    .map(|u| op.send(&self.inner.client, keys, u))
                    .collect(),
            )
            .await
        };
        let transport = |e: &FredError| {
            matches!(
                e.kind(),
                ErrorKind::Timeout | ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Routing
            )
        };
        if units.len() > 1 && replies.iter().all(|r| r.as_ref().is_err_and(transport)) {
            // The node as a whole failed (timeout, connection lost).
            let err = replies
                .into_iter()
                .find_map(std::result::Result::err)
                .unwrap_or_else(|| FredError::new(ErrorKind::Unknown, "no reply"));
            let keys_in_batch = units.iter().map(|u| u.idx.len()).sum();
            let c = classify(err, units[0].slot, &node, timeout);
            let error = CacheError::NodeBatch {
                node: node.clone(),
                keys: keys_in_batch,
                source: Arc::new(c.error),
            };
            return units
                .into_iter()
                .map(|u| {
                    let e = Classified {
                        error: error.clone(),
                        retry: c.retry,
                        not_executed: c.not_executed,
                        redirect: false,
                    };
                    (u, Err(e))
                })
                .collect();
        }
        units
            .into_iter()
            .zip(replies)
            .map(|(u, r)| {
                let res = match r {
                    Ok(v) => op.decode(&u, v).map_err(|error| Classified {
                        error,
                        retry: false,
                        not_executed: true,
                        redirect: false,
                    }),
                    Err(e) => Err(classify(e, u.slot, &node, timeout)),
                };
                (u, res)
            })
            .collect()
    }

    /// Splits by slot, batches per node, pipelines, runs nodes concurrently,
    /// retries failed slots, and returns per-key results in input order.
    async fn multi(&self, op: Multi<'_>, keys: &[&[u8]]) -> Vec<KeyResult<Out>> {
        let mut results: Vec<Option<KeyResult<Out>>> = vec![None; keys.len()];
        let groups = group_by_slot(keys);
        let mut pending: Vec<Unit> = if op.per_key() {
            groups
                .into_iter()
                .flat_map(|(slot, idx)| {
                    idx.into_iter().map(move |i| Unit {
                        slot,
                        idx: vec![i],
                        redirects: 0,
                    })
                })
                .collect()
        } else {
            groups
                .into_iter()
                .map(|(slot, idx)| Unit {
                    slot,
                    idx,
                    redirects: 0,
                })
                .collect()
        };
        let started = Instant::now();
        let mut attempt = 0;
        while !pending.is_empty() {
            let routing = self.inner.client.cached_cluster_state();
            let mut by_node: BTreeMap<String, Vec<Unit>> = BTreeMap::new();
            for u in pending.drain(..) {
                let node = routing
                    .as_ref()
                    .and_then(|r| r.get_server(u.slot).map(ToString::to_string))
                    .unwrap_or_else(|| "unknown".to_owned());
                by_node.entry(node).or_default().push(u);
            }
            let batches = by_node
                .into_iter()
                .map(|(node, units)| self.node_batch(op, keys, node, units))
                .collect();
            let retry_allowed = self.may_retry(attempt, started);
            let mut failed_keys = 0u64;
            for (u, res) in join_all(batches).await.into_iter().flatten() {
                match res {
                    Ok(outs) => {
                        for (&i, out) in u.idx.iter().zip(outs) {
                            results[i] = Some(Ok(out));
                        }
                    }
                    Err(c)
                        if c.retry
                            && retry_allowed
                            && u.redirects + u32::from(c.redirect)
                                <= self.inner.config.max_redirections =>
                    {
                        let mut u = u;
                        u.redirects += u32::from(c.redirect);
                        pending.push(u);
                    }
                    Err(c) => {
                        failed_keys += u.idx.len() as u64;
                        for &i in &u.idx {
                            results[i] = Some(Err(c.error.clone()));
                        }
                    }
                }
            }
            if failed_keys > 0 {
                self.inner
                    .counters
                    .failures
                    .fetch_add(failed_keys, Ordering::Relaxed);
            }
            if !pending.is_empty() {
                self.request_refresh();
                tracing::debug!(target: "sysmanage.cache.retry", op = "multi", attempt, slots = pending.len());
                self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(self.retry_delay(attempt)).await;
                attempt += 1;
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(CacheError::invalid("mget", "internal: key without result"))
                })
            })
            .collect()
    }

    /// A fred client connected to exactly one node (primary or replica), for
    /// `INFO` and other per-node commands.
    async fn node_client(&self, addr: &str) -> Result<Client> {
        let mut map = self.inner.node_clients.lock().await;
        if let Some(c) = map.get(addr) {
            if c.is_connected() {
                return Ok(c.clone());
            }
            map.remove(addr);
        }
        let (host, port) = parse_addr(addr)
            .ok_or_else(|| CacheError::invalid("node", format!("{addr:?} is not host:port")))?;
        let cfg = Config {
            server: ServerConfig::new_centralized(host, port),
            username: self.inner.config.username.clone(),
            password: self
                .inner
                .config
                .password
                .as_ref()
                .map(|s| s.expose().to_owned()),
            ..Config::default()
        };
        let t = self.inner.config.command_timeout;
        let ct = self.inner.config.connect_timeout;
        let client = Builder::from_config(cfg)
            .with_connection_config(|c| {
                c.connection_timeout = ct;
                c.internal_command_timeout = ct;
            })
            .with_performance_config(|p| p.default_command_timeout = t)
            .build()
            .map_err(|e| CacheError::invalid("node", e.details().to_owned()))?;
        client.init().await.map_err(|e| CacheError::Backend {
            backend: "redis",
            source: shared(e),
        })?;
        map.insert(addr.to_owned(), client.clone());
        Ok(client)
    }

    /// The nodes of the cluster as `CLUSTER NODES` reports them (failed
    /// nodes included), asked of the seed nodes in turn.
    ///
    /// # Errors
    /// A backend error when no seed node answers.
    pub async fn cluster_nodes(&self) -> Result<Vec<ClusterNode>> {
        let mut candidates: Vec<String> = self
            .routing()
            .primaries()
            .into_iter()
            .map(str::to_owned)
            .collect();
        candidates.extend(self.inner.config.nodes.iter().cloned());
        let mut last = None;
        for addr in candidates {
            match self.node_client(&addr).await {
                Ok(c) => match c
                    .custom::<String, Value>(
                        CustomCommand::new_static("CLUSTER", ClusterHash::Random, false),
                        vec!["NODES".into()],
                    )
                    .await
                {
                    Ok(text) => return ClusterNode::parse_nodes(&text),
                    Err(e) => {
                        last = Some(CacheError::Backend {
                            backend: "redis",
                            source: shared(e),
                        })
                    }
                },
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| CacheError::invalid("redis.nodes", "no node to ask")))
    }

    /// `INFO` of every node (primaries and replicas), `CLUSTER INFO`, and the
    /// healthy-node ratio. A node that does not answer is reported down, not
    /// skipped.
    ///
    /// # Errors
    /// A backend error when the node list cannot be read at all.
    pub async fn cluster_stats(&self) -> Result<ClusterStats> {
        let nodes = self.cluster_nodes().await?;
        let reports = join_all(
            nodes
                .iter()
                .map(|n| async move {
                    let res = async {
                        let c = self.node_client(&n.addr).await?;
                        let text: String = c.info(None).await.map_err(|e| CacheError::Backend {
                            backend: "redis",
                            source: shared(e),
                        })?;
                        NodeStats::parse_info(&n.addr, &text)
                    }
                    .await;
                    NodeReport::from_result(n, res)
                })
                .collect(),
        )
        .await;
        let mut info = None;
        for r in reports.iter().filter(|r| r.stats.is_some()) {
            if let Ok(c) = self.node_client(&r.node).await
                && let Ok(text) = c
                    .custom::<String, Value>(
                        CustomCommand::new_static("CLUSTER", ClusterHash::Random, false),
                        vec!["INFO".into()],
                    )
                    .await
            {
                info = ClusterInfo::parse(&text).ok();
                break;
            }
        }
        Ok(ClusterStats::new(reports, info, Timestamp::now()))
    }
}

fn snapshot_of(client: &Client) -> RoutingSnapshot {
    let ranges = client
        .cached_cluster_state()
        .map(|r| {
            r.slots()
                .iter()
                .map(|s| SlotOwner::new(s.start, s.end, s.primary.to_string()))
                .collect()
        })
        .unwrap_or_default();
    RoutingSnapshot::new(ranges, Timestamp::now())
}

async fn refresher(
    client: Client,
    notify: Arc<Notify>,
    events: broadcast::Sender<TopologyEvent>,
    counters: Arc<Counters>,
    config: RedisConfig,
    connection: Arc<StdMutex<Option<fred::types::ConnectHandle>>>,
) {
    let mut rng = SplitMix64::from_entropy();
    let mut last = snapshot_of(&client);
    loop {
        let spread = 1.0 - config.refresh_jitter + 2.0 * config.refresh_jitter * rng.next_f64();
        let period = config.refresh_interval.mul_f64(spread);
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = notify.notified() => {}
        }
        // Watchdog: fred ends its connection task on some routing errors;
        // without this the client would fail every command from then on.
        let ended = connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(JoinHandle::is_finished);
        if ended {
            tracing::info!(target: "sysmanage.cache.topology", "connection task ended; reconnecting");
            let handle = client.connect();
            let _ =
                tokio::time::timeout(config.connect_timeout * 2, client.wait_for_connect()).await;
            *connection.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        }
        match tokio::time::timeout(config.connect_timeout * 2, client.sync_cluster()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(target: "sysmanage.cache.topology", error = %e, "refresh failed")
            }
            Err(_) => tracing::debug!(target: "sysmanage.cache.topology", "refresh timed out"),
        }
        counters.refreshes.fetch_add(1, Ordering::Relaxed);
        let now = snapshot_of(&client);
        for ev in diff(&last, &now) {
            tracing::info!(target: "sysmanage.cache.topology", event = ?ev, "topology changed");
            counters.events.fetch_add(1, Ordering::Relaxed);
            let _ = events.send(ev);
        }
        last = now;
        tokio::time::sleep(config.min_refresh_gap).await;
    }
}

fn set_parts(opts: SetOptions) -> Result<(Option<Expiration>, Option<FredSet>, Retry)> {
    let exp = opts
        .ttl
        .map(check_ttl)
        .transpose()?
        .map(|ms| Expiration::PX(ms as i64));
    Ok(match opts.condition {
        SetCondition::Always => (exp, None, Retry::Always),
        SetCondition::IfPresent => (exp, Some(FredSet::XX), Retry::Always),
        SetCondition::IfAbsent => (exp, Some(FredSet::NX), Retry::OnlyIfNotExecuted),
    })
}

fn key_vec<K: AsRef<[u8]>>(keys: &[K]) -> Vec<&[u8]> {
    keys.iter().map(AsRef::as_ref).collect()
}

impl ClusterCache for RedisCache {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.config.limits.check_key(key)?;
        let v = self
            .run("get", key, Retry::Always, || {
                self.inner.client.get::<Value, _>(key)
            })
            .await?;
        bytes_of(v)
    }

    async fn set(&self, key: &[u8], value: &[u8], opts: SetOptions) -> Result<bool> {
        let limits = &self.inner.config.limits;
        limits.check_key(key)?;
        limits.check_value(value)?;
        let (exp, cond, mode) = set_parts(opts)?;
        let v = self
            .run("set", key, mode, || {
                self.inner
                    .client
                    .set::<Value, _, _>(key, value, exp.clone(), cond.clone(), false)
            })
            .await?;
        Ok(!matches!(v, Value::Null))
    }

    async fn delete(&self, key: &[u8]) -> Result<bool> {
        self.inner.config.limits.check_key(key)?;
        let v = self
            .run("delete", key, Retry::Always, || {
                self.inner.client.del::<Value, _>(key)
            })
            .await?;
        Ok(int_of(&v)? > 0)
    }

    async fn exists(&self, key: &[u8]) -> Result<bool> {
        self.inner.config.limits.check_key(key)?;
        let v = self
            .run("exists", key, Retry::Always, || {
                self.inner.client.exists::<Value, _>(key)
            })
            .await?;
        Ok(int_of(&v)? > 0)
    }

    async fn expire(&self, key: &[u8], ttl: Duration) -> Result<bool> {
        self.inner.config.limits.check_key(key)?;
        let ms = check_ttl(ttl)? as i64;
        let v = self
            .run("expire", key, Retry::Always, || {
                self.inner.client.pexpire::<Value, _>(key, ms, None)
            })
            .await?;
        Ok(int_of(&v)? > 0)
    }

    async fn ttl(&self, key: &[u8]) -> Result<Ttl> {
        self.inner.config.limits.check_key(key)?;
        let v = self
            .run("ttl", key, Retry::Always, || {
                self.inner.client.pttl::<Value, _>(key)
            })
            .await?;
        Ok(match int_of(&v)? {
            -2 => Ttl::Missing,
            -1 => Ttl::Persistent,
            ms => Ttl::ExpiresIn(Duration::from_millis(ms.max(0) as u64)),
        })
    }

    async fn incr(&self, key: &[u8], by: i64) -> Result<i64> {
        self.inner.config.limits.check_key(key)?;
        let v = self
            .run("incr", key, Retry::OnlyIfNotExecuted, || {
                self.inner.client.incr_by::<Value, _>(key, by)
            })
            .await?;
        int_of(&v)
    }

    async fn mget<K: AsRef<[u8]> + Sync>(
        &self,
        keys: &[K],
    ) -> Result<Vec<KeyResult<Option<Vec<u8>>>>> {
        self.inner.config.limits.check_keys("mget", keys)?;
        let keys = key_vec(keys);
        Ok(self
            .multi(Multi::Get, &keys)
            .await
            .into_iter()
            .map(|r| match r? {
                Out::Value(v) => Ok(v),
                _ => Ok(None),
            })
            .collect())
    }

    async fn mset<K: AsRef<[u8]> + Sync, V: AsRef<[u8]> + Sync>(
        &self,
        entries: &[(K, V)],
        ttl: Option<Duration>,
    ) -> Result<Vec<KeyResult<()>>> {
        let limits = &self.inner.config.limits;
        let keys: Vec<&[u8]> = entries.iter().map(|(k, _)| k.as_ref()).collect();
        limits.check_keys("mset", &keys)?;
        let values: Vec<&[u8]> = entries.iter().map(|(_, v)| v.as_ref()).collect();
        values.iter().try_for_each(|v| limits.check_value(v))?;
        let op = match ttl.map(check_ttl).transpose()? {
            None => Multi::SetAll(&values),
            Some(ms) => Multi::SetEach(&values, ms),
        };
        Ok(self
            .multi(op, &keys)
            .await
            .into_iter()
            .map(|r| r.map(|_| ()))
            .collect())
    }

    async fn mdel<K: AsRef<[u8]> + Sync>(&self, keys: &[K]) -> Result<Vec<KeyResult<bool>>> {
        self.inner.config.limits.check_keys("mdel", keys)?;
        let keys = key_vec(keys);
        Ok(self
            .multi(Multi::Del, &keys)
            .await
            .into_iter()
            .map(|r| r.map(|o| matches!(o, Out::Existed(true))))
            .collect())
    }

    async fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<Vec<u8>>> {
        if limit == 0 {
            return Err(CacheError::invalid("limit", "must be greater than zero"));
        }
        let limit = limit.min(self.inner.config.limits.max_scan_results);
        let mut pattern = Vec::with_capacity(prefix.len() + 8);
        for &b in prefix {
            if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                pattern.push(b'\\');
            }
            pattern.push(b);
        }
        pattern.push(b'*');
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        for node in self.routing().primaries() {
            let Some((host, port)) = parse_addr(node) else {
                continue;
            };
            let target = self.inner.client.with_cluster_node(Server::new(host, port));
            let mut cursor = "0".to_owned();
            // Bounded: at most 10,000 pages per node.
            for _ in 0..10_000 {
                let args: Vec<Value> = vec![
                    cursor.as_str().into(),
                    "MATCH".into(),
                    Value::from(&pattern[..]),
                    "COUNT".into(),
                    1000.into(),
                ];
                let reply = self
                    .run("scan", prefix, Retry::Always, || {
                        target.custom::<Value, Value>(
                            CustomCommand::new_static("SCAN", ClusterHash::Random, false),
                            args.clone(),
                        )
                    })
                    .await?;
                let Value::Array(mut parts) = reply else {
                    return Err(unexpected(&reply));
                };
                if parts.len() != 2 {
                    return Err(CacheError::invalid("scan", "reply is not [cursor, keys]"));
                }
                let keys = parts.pop().unwrap_or(Value::Null);
                let next = parts.pop().unwrap_or(Value::Null);
                if let Value::Array(keys) = keys {
                    for k in keys {
                        if let Some(b) = k.as_bytes().filter(|b| b.starts_with(prefix)) {
                            seen.insert(b.to_vec());
                            if seen.len() >= limit {
                                return Ok(seen.into_iter().collect());
                            }
                        }
                    }
                }
                cursor = next
                    .as_bytes()
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .unwrap_or("0")
                    .to_owned();
                if cursor == "0" {
                    break;
                }
            }
        }
        Ok(seen.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_validated_and_never_prints_the_password() {
        let mut cfg = RedisConfig::new(["127.0.0.1:7000", "[::1]:7001"]);
        cfg.password = Some(Secret::new("hunter2"));
        assert_eq!(cfg.validate().unwrap().len(), 2);
        assert!(!format!("{cfg:?}").contains("hunter2"));
        for (field, bad) in [
            ("redis.nodes", RedisConfig::new(Vec::<String>::new())),
            ("redis.nodes", RedisConfig::new(["localhost"])),
            (
                "redis.refresh_jitter",
                RedisConfig {
                    refresh_jitter: 1.5,
                    ..RedisConfig::new(["h:1"])
                },
            ),
            (
                "redis.command_timeout",
                RedisConfig {
                    command_timeout: Duration::ZERO,
                    ..RedisConfig::new(["h:1"])
                },
            ),
        ] {
            let err = bad.validate().unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn server_errors_are_classified() {
        let c = |msg: &str| {
            classify(
                FredError::new(ErrorKind::Unknown, msg.to_owned()),
                1,
                "n:1",
                Duration::from_secs(1),
            )
        };
        let t = c("TRYAGAIN Multiple keys request during rehashing of slot");
        assert!(t.retry && t.not_executed && !t.redirect);
        assert!(matches!(t.error, CacheError::Unavailable { slot: 1, .. }));
        assert!(c("MOVED 3999 127.0.0.1:6381").redirect);
        assert!(matches!(
            c("ERR value is not an integer or out of range").error,
            CacheError::NotAnInteger
        ));
        assert!(matches!(
            c("ERR increment or decrement would overflow").error,
            CacheError::Overflow
        ));
        assert!(matches!(
            c("OOM command not allowed").error,
            CacheError::OutOfMemory { .. }
        ));
        let w = c("WRONGTYPE Operation against a key holding the wrong kind of value");
        assert!(!w.retry && matches!(w.error, CacheError::Backend { .. }));
        let timeout = classify(
            FredError::new(ErrorKind::Timeout, "t"),
            1,
            "n:1",
            Duration::from_secs(1),
        );
        assert!(
            timeout.retry && !timeout.not_executed,
            "a timeout is ambiguous"
        );
        let redirected = classify(
            FredError::new(ErrorKind::Routing, "Too many redirections."),
            1,
            "n:1",
            Duration::from_secs(1),
        );
        assert!(redirected.redirect && redirected.not_executed);
    }

    #[tokio::test]
    async fn join_all_keeps_input_order() {
        let futs = (0..5u64)
            .map(|i| async move {
                tokio::time::sleep(Duration::from_millis(10 * (5 - i))).await;
                i
            })
            .collect();
        assert_eq!(join_all(futs).await, vec![0, 1, 2, 3, 4]);
    }
}
