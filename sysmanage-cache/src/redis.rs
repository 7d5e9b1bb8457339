//! The Redis Cluster backend, built on [fred](https://docs.rs/fred) 10.
//!
//! [`RedisCache`] routes commands itself and uses one fred client per
//! cluster node (each with its own connection and reconnect loop), rather
//! than fred's cluster client. Two measured defects of fred 10.1's cluster
//! client motivate this: it follows `ASK` by writing `ASKING` and reading the
//! reply inline on a connection with other commands in flight, which handed
//! one key's reply to another key's command during a live reshard; and it
//! reconnects inside its single router task, so one dead primary held back
//! commands for every node until the failover finished.
//!
//! What the backend adds:
//!
//! * **Multi-key operations across slots.** Keys are grouped by slot, the
//!   slot groups by owning primary (from the routing table), each node's
//!   commands go out as pipelines of up to 1,000 commands (each with its
//!   own command timeout) on that node's connection, nodes run
//!   concurrently, and results come back in input order. A node whose whole batch fails reports
//!   [`CacheError::NodeBatch`] on each of its keys — never a miss. When all
//!   keys share a slot a single command is sent.
//! * **Redirections.** `MOVED` updates the slot's owner at once and schedules
//!   a full refresh; `ASK` re-sends to the importing node as `ASKING` +
//!   command, written contiguously. Both count against
//!   [`RedisConfig::max_redirections`].
//! * **Resilience defaults.** A command timeout (fred has none by default),
//!   a reconnect policy per node, retries with jittered exponential backoff
//!   for transient errors (`TRYAGAIN`, `CLUSTERDOWN`, timeouts, lost
//!   connections) bounded in attempts and in time, a topology refresh
//!   (`CLUSTER SLOTS`) every [`RedisConfig::refresh_interval`] with jitter
//!   and after errors, typed [`TopologyEvent`]s, and a [`RoutingSnapshot`].
//! * **Stats** of every node, primaries and replicas, parsed from `INFO`,
//!   `CLUSTER INFO` and `CLUSTER NODES` ([`RedisCache::cluster_stats`]).
//!
//! Retries and idempotency: reads, `DEL`, `PEXPIRE`, unconditional and `XX`
//! writes are retried after any transient error. `INCRBY` and `SET … NX` are
//! retried only after errors that prove the server did not run the command
//! (`TRYAGAIN`, `CLUSTERDOWN`, `MOVED`, `ASK`, `LOADING`, `READONLY`, no
//! connection); after a timeout or a connection lost mid-command they return
//! the error, since the command may have run.
//!
//! A retried `DEL` (after a timeout or a lost connection) may have deleted
//! the key on its first attempt; the retry then finds nothing, so
//! `delete`/`mdel` report `false` ("did not exist") for a key this call
//! removed. Treat that flag as a hint; the key is gone either way.
//!
//! Each node client queues at most 4,096 commands while its connection is
//! down (beyond that a command fails at once, unsent, and is retried like
//! any transient error) and gives up reconnecting after 10 attempts (about
//! 6 s); the next use of the node connects afresh. A command that timed out
//! while queued may still be sent if the connection comes back within
//! those attempts. Clients of nodes that no longer serve slots and are not
//! connected are dropped at each topology refresh.
//!
//! # Tracing
//!
//! | target | level | event |
//! |---|---|---|
//! | `sysmanage.cache.retry` | debug | a transient error, before a retry (`op`, `attempt`, `error`) |
//! | `sysmanage.cache.topology` | debug/info | refresh failures (debug), [`TopologyEvent`]s (info) |

use crate::join::join_all;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use fred::clients::Client;
use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::{ClientLike, KeysInterface};
use fred::types::cluster::ClusterRouting;
use fred::types::config::{Config, ReconnectPolicy, ServerConfig};
use fred::types::{
    Builder, ClusterHash, CustomCommand, Expiration, Key, SetOptions as FredSet, Value,
};
use sysmanage_core::{Backoff, Jitter, Secret, SplitMix64, Timestamp};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

use crate::cache::{ClusterCache, Limits, SetCondition, SetOptions, Ttl, check_ttl};
use crate::error::{CacheError, KeyResult, Result, SharedError};
use crate::slot::{SLOT_COUNT, group_by_slot, slot};
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
    /// Deadline of one command or one pipeline (up to 1,000 commands).
    /// Default: 1 s.
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
    /// multi-key operations) before it fails with
    /// [`CacheError::Unavailable`]. Default: 16.
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
            .enumerate()
            .map(|(i, n)| {
                // The raw text is not echoed: a URL-shaped entry may carry
                // a password.
                parse_addr(n).ok_or_else(|| {
                    CacheError::invalid(
                        "redis.nodes",
                        format!(
                            "entry {i} is not host:port (URLs, schemes and credentials are \
                             not accepted; set username/password instead)"
                        ),
                    )
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

/// `host:port` or `[v6]:port`; a host is letters, digits, `.`, `-` and
/// `_` (or hex digits, `:` and `.` inside brackets). Anything URL-shaped
/// (`redis://`, `user:pw@host`, paths) is rejected.
fn parse_addr(s: &str) -> Option<(String, u16)> {
    let (host, port_text) = s.trim().rsplit_once(':')?;
    let port: u16 = port_text.parse().ok()?;
    if port == 0 || port.to_string() != port_text {
        return None; // "0", "+7000", "07000"
    }
    let plain = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    let ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            !v6.is_empty()
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        }
        None => plain(host),
    };
    ok.then(|| (host.to_owned(), port))
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

/// Slot owners for routing, and the snapshot they came from.
struct Routing {
    owners: Vec<Option<Arc<str>>>,
    snapshot: RoutingSnapshot,
    /// Owners learnt from `MOVED` since the snapshot: slot → (node, the
    /// sequence number of the redirection).
    patches: BTreeMap<u16, (Arc<str>, u64)>,
}

impl Routing {
    fn new(snapshot: RoutingSnapshot) -> Self {
        let mut owners = vec![None; usize::from(SLOT_COUNT)];
        for r in &snapshot.ranges {
            let node: Arc<str> = Arc::from(r.node.as_str());
            for s in r.start..=r.end.min(SLOT_COUNT - 1) {
                owners[usize::from(s)] = Some(node.clone());
            }
        }
        Self {
            owners,
            snapshot,
            patches: BTreeMap::new(),
        }
    }

    /// This table with `slot` pointed at `node` (a `MOVED` numbered `seq`).
    fn patched(&self, slot: u16, node: &str, seq: u64) -> Self {
        let mut owners = self.owners.clone();
        let mut patches = self.patches.clone();
        if let Some(o) = owners.get_mut(usize::from(slot)) {
            let node: Arc<str> = Arc::from(node);
            *o = Some(node.clone());
            patches.insert(slot, (node, seq));
        }
        Self {
            owners,
            snapshot: self.snapshot.clone(),
            patches,
        }
    }

    /// The table of a fresh `snapshot`, keeping the `MOVED` patches of
    /// `current` numbered after `moved_before` (the count when the
    /// snapshot was requested): the snapshot may predate them, and undoing
    /// them would cost a redirection each.
    fn refreshed(snapshot: RoutingSnapshot, current: &Self, moved_before: u64) -> Self {
        let mut next = Self::new(snapshot);
        for (&slot, (node, seq)) in &current.patches {
            if *seq > moved_before {
                next.owners[usize::from(slot)] = Some(node.clone());
                next.patches.insert(slot, (node.clone(), *seq));
            }
        }
        next
    }
}

/// Whether a caller of `refresh_now` may return on the last successful
/// refresh: true when that refresh (numbered `last_ok`) started after the
/// caller arrived (when `started_at_call` refreshes had started).
fn shares_refresh(last_ok: u64, started_at_call: u64) -> bool {
    last_ok > started_at_call
}

/// The client of one node and its connection task (which ends when its
/// reconnect attempts are used up).
struct NodeConn {
    client: Client,
    task: fred::types::ConnectHandle,
}

impl NodeConn {
    fn usable(&self) -> Option<Client> {
        (!self.task.is_finished()).then(|| self.client.clone())
    }
}

/// Most commands in one pipeline; a node's batch is sent as consecutive
/// pipelines of this size.
const MAX_PIPELINE: usize = 1_000;

/// Reconnect attempts of one node client before it gives up; the next use
/// of the node then connects afresh. With 50 ms doubling to 1 s, about 6 s.
const RECONNECT_ATTEMPTS: u32 = 10;

/// Commands one node client queues while its connection is down; beyond
/// that a command fails at once with fred's `Backpressure` (not sent, so
/// safe to retry) instead of queuing without bound.
const MAX_QUEUED_COMMANDS: usize = 4096;

struct Inner {
    config: RedisConfig,
    routing: RwLock<Arc<Routing>>,
    nodes: RwLock<HashMap<String, NodeConn>>,
    /// One lock per address: connecting to a node that does not answer
    /// holds back only that node.
    creating: StdMutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Serialises refreshes; holds the number of the last successful one.
    refreshing: tokio::sync::Mutex<u64>,
    /// Refreshes started so far.
    refresh_started: AtomicU64,
    /// `MOVED` redirections applied so far.
    moved_seq: AtomicU64,
    /// Wakes the refresher; shared with it so that it can wait without
    /// keeping the cache alive.
    refresh: Arc<Notify>,
    events: broadcast::Sender<TopologyEvent>,
    counters: Counters,
    tasks: StdMutex<Vec<JoinHandle<()>>>,
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
        // Ends each node client's connection task (and its reconnect loop).
        for (_, n) in self
            .nodes
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            n.task.abort();
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

#[derive(Clone, Debug, PartialEq, Eq)]
enum Redirect {
    None,
    Moved(u16, String),
    Ask(String),
}

struct Classified {
    error: CacheError,
    retry: bool,
    not_executed: bool,
    redirect: Redirect,
}

fn shared(e: FredError) -> SharedError {
    Arc::new(e)
}

fn classify(e: FredError, slot: u16, node: &str, timeout: Duration) -> Classified {
    let details = e.details().to_owned();
    let mut words = details.split_whitespace();
    let first = words.next().unwrap_or("");
    let unavailable = |e: FredError| CacheError::Unavailable {
        slot,
        node: node.to_owned(),
        source: shared(e),
    };
    let plain = |error, retry, not_executed| Classified {
        error,
        retry,
        not_executed,
        redirect: Redirect::None,
    };
    match first {
        "MOVED" | "ASK" => {
            let s = words.next().and_then(|s| s.parse().ok()).unwrap_or(slot);
            let target = words.next().unwrap_or("").to_owned();
            let redirect = if target.is_empty() {
                Redirect::None
            } else if first == "MOVED" {
                Redirect::Moved(s, target)
            } else {
                Redirect::Ask(target)
            };
            return Classified {
                error: unavailable(e),
                retry: true,
                not_executed: true,
                redirect,
            };
        }
        "TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "MASTERDOWN" | "READONLY" => {
            return plain(unavailable(e), true, true);
        }
        "OOM" => {
            return plain(
                CacheError::OutOfMemory {
                    needed: 0,
                    limit: 0,
                },
                false,
                true,
            );
        }
        _ => {}
    }
    if details.contains("not an integer") {
        return plain(CacheError::NotAnInteger, false, true);
    }
    if details.contains("overflow") {
        return plain(CacheError::Overflow, false, true);
    }
    match e.kind() {
        ErrorKind::Timeout => plain(CacheError::Timeout(timeout), true, false),
        ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Cluster => {
            plain(unavailable(e), true, false)
        }
        // No route, no connection or a full command queue: nothing was sent.
        ErrorKind::Routing | ErrorKind::Backpressure => plain(unavailable(e), true, true),
        _ => plain(
            CacheError::Backend {
                backend: "redis",
                source: shared(e),
            },
            false,
            true,
        ),
    }
}

/// Whether a command that failed with `c` may be sent again: the error is
/// transient, the command is idempotent or provably did not run, and the
/// redirections so far (`redirects`, this one included) are within `max`.
fn may_resend(c: &Classified, mode: Retry, redirects: u32, max: u32) -> bool {
    c.retry && (mode == Retry::Always || c.not_executed) && redirects <= max
}

/// One command, described so it can be sent directly or after `ASKING`.
#[derive(Clone)]
enum Cmd<'a> {
    Get(&'a [u8]),
    Set(&'a [u8], &'a [u8], Option<Expiration>, Option<FredSet>),
    Del(&'a [u8]),
    Exists(&'a [u8]),
    PExpire(&'a [u8], i64),
    PTtl(&'a [u8]),
    IncrBy(&'a [u8], i64),
    MGet(Vec<&'a [u8]>),
    MSet(Vec<(&'a [u8], &'a [u8])>),
    Scan(Vec<Value>),
}

async fn send_cmd<C: KeysInterface + Sync>(
    c: &C,
    cmd: &Cmd<'_>,
) -> std::result::Result<Value, FredError> {
    match cmd {
        Cmd::Get(k) => c.get(*k).await,
        Cmd::Set(k, v, exp, cond) => c.set(*k, *v, exp.clone(), cond.clone(), false).await,
        Cmd::Del(k) => c.del(*k).await,
        Cmd::Exists(k) => c.exists(*k).await,
        Cmd::PExpire(k, ms) => c.pexpire(*k, *ms, None).await,
        Cmd::PTtl(k) => c.pttl(*k).await,
        Cmd::IncrBy(k, by) => c.incr_by(*k, *by).await,
        Cmd::MGet(keys) => {
            c.mget(keys.iter().map(|k| Key::from(*k)).collect::<Vec<_>>())
                .await
        }
        Cmd::MSet(pairs) => {
            let pairs: Vec<(Key, Value)> = pairs
                .iter()
                .map(|(k, v)| (Key::from(*k), Value::from(*v)))
                .collect();
            c.mset(pairs).await.map(|()| Value::Null)
        }
        Cmd::Scan(args) => {
            c.custom(
                CustomCommand::new_static("SCAN", ClusterHash::Random, false),
                args.clone(),
            )
            .await
        }
    }
}

/// Sends `cmd` on `client`; after an `ASK`, as `ASKING` + `cmd` written
/// back to back on the node's connection.
async fn exec(
    client: &Client,
    cmd: &Cmd<'_>,
    asking: bool,
) -> std::result::Result<Value, FredError> {
    if !asking {
        return send_cmd(client, cmd).await;
    }
    let p = client.pipeline();
    let _: () = p
        .custom(
            CustomCommand::new_static("ASKING", ClusterHash::Random, false),
            Vec::<Value>::new(),
        )
        .await?;
    // Queuing only buffers the command.
    let _ = send_cmd(&p, cmd).await;
    let mut replies = p.try_all::<Value>().await;
    match replies.len() {
        2 => replies
            .pop()
            .unwrap_or_else(|| Err(FredError::new(ErrorKind::Unknown, "no reply"))),
        _ => replies
            .into_iter()
            .find(std::result::Result::is_err)
            .unwrap_or_else(|| Err(FredError::new(ErrorKind::Unknown, "no reply"))),
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

/// One command of a multi-key operation: the keys (by input index) of one
/// slot that travel together.
#[derive(Clone, Debug)]
struct Unit {
    slot: u16,
    idx: Vec<usize>,
    redirects: u32,
    ask: Option<String>,
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

impl<'a> Multi<'a> {
    /// Whether each key needs its own command (else one per slot).
    fn per_key(self) -> bool {
        matches!(self, Self::SetEach(..) | Self::Del)
    }

    fn cmd(self, keys: &[&'a [u8]], u: &Unit) -> Cmd<'a> {
        match self {
            Self::Get => Cmd::MGet(u.idx.iter().map(|&i| keys[i]).collect()),
            Self::SetAll(values) => {
                Cmd::MSet(u.idx.iter().map(|&i| (keys[i], values[i])).collect())
            }
            Self::SetEach(values, ms) => {
                let i = u.idx[0];
                Cmd::Set(keys[i], values[i], Some(Expiration::PX(ms as i64)), None)
            }
            Self::Del => Cmd::Del(keys[u.idx[0]]),
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

/// The node named in errors about a slot no known node serves.
const NO_OWNER: &str = "(no owner)";

fn routing_error(what: &str) -> FredError {
    FredError::new(ErrorKind::Routing, what.to_owned())
}

impl RedisCache {
    /// Connects to the cluster: reads `CLUSTER SLOTS` from the first seed
    /// node that answers, connects to the primaries and starts the topology
    /// refresher.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] for bad settings, a backend error when
    /// no seed node answers.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let cache = Self::unconnected(config)?;
        cache.refresh_now().await?;
        for node in cache.routing().primaries() {
            // Connect eagerly; a node that is down now is retried on use.
            let _ = cache.node(node).await;
        }
        let task = tokio::spawn(refresher(
            Arc::downgrade(&cache.inner),
            cache.inner.refresh.clone(),
        ));
        cache
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
        Ok(cache)
    }

    /// A cache with an empty routing table, no connections and no
    /// background task.
    fn unconnected(config: RedisConfig) -> Result<Self> {
        config.validate()?;
        let (events, _) = broadcast::channel(config.event_capacity);
        let inner = Arc::new(Inner {
            config,
            routing: RwLock::new(Arc::new(Routing::new(RoutingSnapshot::new(
                Vec::new(),
                Timestamp::now(),
            )))),
            nodes: RwLock::new(HashMap::new()),
            creating: StdMutex::new(HashMap::new()),
            refreshing: tokio::sync::Mutex::new(0),
            refresh_started: AtomicU64::new(0),
            moved_seq: AtomicU64::new(0),
            refresh: Arc::new(Notify::new()),
            events,
            counters: Counters::default(),
            tasks: StdMutex::new(Vec::new()),
        });
        Ok(Self { inner })
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// A fred client connected to the node `host:port` (primary or replica),
    /// for commands this crate does not wrap.
    ///
    /// # Errors
    /// A backend error when the node cannot be reached.
    pub async fn node_client(&self, addr: &str) -> Result<Client> {
        self.node(addr).await.map_err(|e| CacheError::Backend {
            backend: "redis",
            source: shared(e),
        })
    }

    /// Which primary serves which slot, as of the last topology refresh.
    pub fn routing(&self) -> RoutingSnapshot {
        self.routing_table().snapshot.clone()
    }

    fn routing_table(&self) -> Arc<Routing> {
        self.inner
            .routing
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn owner(&self, slot: u16) -> Option<Arc<str>> {
        self.inner
            .routing
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .owners
            .get(usize::from(slot))
            .cloned()
            .flatten()
    }

    /// Points `slot` at `node` at once (after `MOVED`); the next refresh
    /// brings the snapshot up to date.
    fn patch_owner(&self, slot: u16, node: &str) {
        let mut guard = self
            .inner
            .routing
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let seq = self.inner.moved_seq.fetch_add(1, Ordering::SeqCst) + 1;
        *guard = Arc::new(guard.patched(slot, node, seq));
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

    /// Re-reads `CLUSTER SLOTS` now, publishes the resulting events and
    /// returns once the routing table is updated. Concurrent calls share one
    /// refresh: a call returns without its own when a refresh that started
    /// after the call began has succeeded meanwhile.
    ///
    /// # Errors
    /// A backend error when no node answers.
    pub async fn refresh_now(&self) -> Result<()> {
        let started_at_call = self.inner.refresh_started.load(Ordering::SeqCst);
        let mut last_ok = self.inner.refreshing.lock().await;
        if shares_refresh(*last_ok, started_at_call) {
            return Ok(()); // another caller refreshed while we waited
        }
        let number = self.inner.refresh_started.fetch_add(1, Ordering::SeqCst) + 1;
        let moved_before = self.inner.moved_seq.load(Ordering::SeqCst);
        let old = self.routing_table();
        let mut candidates: Vec<String> = old
            .snapshot
            .primaries()
            .into_iter()
            .map(str::to_owned)
            .collect();
        for seed in &self.inner.config.nodes {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        // Nodes with a live connection first: a dead node would cost a timeout.
        let connected: HashSet<String> = {
            let nodes = self
                .inner
                .nodes
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            nodes
                .iter()
                .filter(|(_, n)| n.client.is_connected())
                .map(|(a, _)| a.clone())
                .collect()
        };
        candidates.sort_by_key(|a| !connected.contains(a));
        let mut last = None;
        for addr in candidates {
            let reply = match self.node(&addr).await {
                Ok(c) => {
                    c.custom::<Value, Value>(
                        CustomCommand::new_static("CLUSTER", ClusterHash::Random, false),
                        vec!["SLOTS".into()],
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            let parsed = reply.and_then(|v| {
                let host = parse_addr(&addr).map(|(h, _)| h).unwrap_or_default();
                ClusterRouting::from_cluster_slots(v, host)
            });
            match parsed {
                Ok(table) if !table.slots().is_empty() => {
                    let ranges = table
                        .slots()
                        .iter()
                        .map(|s| SlotOwner::new(s.start, s.end, s.primary.to_string()))
                        .collect();
                    let snapshot = RoutingSnapshot::new(ranges, Timestamp::now());
                    let events = diff(&old.snapshot, &snapshot);
                    self.prune_nodes(&snapshot);
                    {
                        let mut routing = self
                            .inner
                            .routing
                            .write()
                            .unwrap_or_else(PoisonError::into_inner);
                        *routing = Arc::new(Routing::refreshed(snapshot, &routing, moved_before));
                    }
                    *last_ok = number;
                    self.inner
                        .counters
                        .refreshes
                        .fetch_add(1, Ordering::Relaxed);
                    for ev in events {
                        tracing::info!(target: "sysmanage.cache.topology", event = ?ev, "topology changed");
                        self.inner.counters.events.fetch_add(1, Ordering::Relaxed);
                        let _ = self.inner.events.send(ev);
                    }
                    return Ok(());
                }
                Ok(_) => {
                    last = Some(CacheError::invalid(
                        "cluster slots",
                        format!("{addr} serves no slots"),
                    ))
                }
                Err(e) => {
                    tracing::debug!(target: "sysmanage.cache.topology", node = %addr, error = %e, "refresh failed");
                    last = Some(CacheError::Backend {
                        backend: "redis",
                        source: shared(e),
                    });
                }
            }
        }
        Err(last.unwrap_or_else(|| CacheError::invalid("redis.nodes", "no node to ask")))
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

    /// The client of one node, connecting it on first use.
    async fn node(&self, addr: &str) -> std::result::Result<Client, FredError> {
        if let Some(c) = self.cached_node(addr) {
            return Ok(c);
        }
        let lock = self
            .inner
            .creating
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(addr.to_owned())
            .or_default()
            .clone();
        let _creating = lock.lock().await;
        if let Some(c) = self.cached_node(addr) {
            return Ok(c);
        }
        let (host, port) =
            parse_addr(addr).ok_or_else(|| routing_error("node address is not host:port"))?;
        let cfg = &self.inner.config;
        let fred_config = Config {
            server: ServerConfig::new_centralized(host, port),
            username: cfg.username.clone(),
            password: cfg.password.as_ref().map(|s| s.expose().to_owned()),
            ..Config::default()
        };
        let (timeout, connect) = (cfg.command_timeout, cfg.connect_timeout);
        let client = Builder::from_config(fred_config)
            .with_connection_config(|c| {
                c.connection_timeout = connect;
                c.internal_command_timeout = connect;
                // A command in flight when the connection drops fails; the
                // retry loop here decides whether it may be repeated.
                c.max_command_attempts = 1;
                c.max_command_buffer_len = MAX_QUEUED_COMMANDS;
            })
            .with_performance_config(|p| p.default_command_timeout = timeout)
            .set_policy(ReconnectPolicy::new_exponential(
                RECONNECT_ATTEMPTS,
                50,
                1_000,
                2,
            ))
            .build()?;
        let task = client.init().await?;
        let old = self
            .inner
            .nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                addr.to_owned(),
                NodeConn {
                    client: client.clone(),
                    task,
                },
            );
        if let Some(old) = old {
            old.task.abort();
        }
        Ok(client)
    }

    /// The node's client if it exists and its connection task still runs.
    fn cached_node(&self, addr: &str) -> Option<Client> {
        self.inner
            .nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(addr)
            .and_then(NodeConn::usable)
    }

    /// Drops the clients of nodes that serve no slot in `snapshot` and are
    /// not connected (failed or removed nodes), ending their reconnect
    /// loops. Connected replicas stay (statistics use them).
    fn prune_nodes(&self, snapshot: &RoutingSnapshot) {
        let keep: HashSet<&str> = snapshot.primaries().into_iter().collect();
        let mut nodes = self
            .inner
            .nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let gone: Vec<String> = nodes
            .iter()
            .filter(|(a, n)| {
                !keep.contains(a.as_str()) && (!n.client.is_connected() || n.task.is_finished())
            })
            .map(|(a, _)| a.clone())
            .collect();
        for a in &gone {
            if let Some(n) = nodes.remove(a) {
                n.task.abort();
            }
        }
        drop(nodes);
        let mut creating = self
            .inner
            .creating
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for a in &gone {
            // An entry another task holds is in use; it is dropped later.
            if creating.get(a).is_some_and(|l| Arc::strong_count(l) == 1) {
                creating.remove(a);
            }
        }
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

    /// Handles a redirection; returns the `ASK` target if there is one.
    fn follow(&self, redirect: &Redirect) -> Option<String> {
        match redirect {
            Redirect::Moved(slot, node) => {
                self.patch_owner(*slot, node);
                self.request_refresh();
                None
            }
            Redirect::Ask(node) => Some(node.clone()),
            Redirect::None => None,
        }
    }

    /// Sends a single-key command to the key's node, following redirections
    /// and retrying transient errors within the budget.
    async fn run(&self, op: &'static str, key: &[u8], mode: Retry, cmd: Cmd<'_>) -> Result<Value> {
        let s = slot(key);
        let started = Instant::now();
        let (mut attempt, mut redirects) = (0, 0);
        let mut ask: Option<String> = None;
        loop {
            let asking = ask.is_some();
            let node: Option<Arc<str>> = ask.take().map(Arc::from).or_else(|| self.owner(s));
            let res = match &node {
                Some(n) => match self.node(n).await {
                    Ok(c) => exec(&c, &cmd, asking).await,
                    Err(e) => Err(e),
                },
                None => Err(routing_error("no node serves this slot")),
            };
            let e = match res {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let c = classify(
                e,
                s,
                node.as_deref().unwrap_or(NO_OWNER),
                self.inner.config.command_timeout,
            );
            let redirected = c.redirect != Redirect::None;
            redirects += u32::from(redirected);
            let allowed = may_resend(&c, mode, redirects, self.inner.config.max_redirections);
            if !allowed || !self.may_retry(attempt, started) {
                self.inner.counters.failures.fetch_add(1, Ordering::Relaxed);
                // Only transport and cluster errors say anything about the
                // topology; WRONGTYPE, OOM or "not an integer" do not.
                if c.retry {
                    self.request_refresh();
                }
                return Err(c.error);
            }
            self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: "sysmanage.cache.retry", op, attempt, error = %c.error);
            if redirected {
                ask = self.follow(&c.redirect);
            } else {
                self.request_refresh();
                tokio::time::sleep(self.retry_delay(attempt)).await;
                attempt += 1;
            }
        }
    }

    /// Runs the commands of `units` on one node, each with its own reply.
    async fn node_batch(
        &self,
        op: Multi<'_>,
        keys: &[&[u8]],
        node: String,
        units: Vec<Unit>,
    ) -> Vec<(Unit, std::result::Result<Vec<Out>, Classified>)> {
        let timeout = self.inner.config.command_timeout;
        let replies: Vec<std::result::Result<Value, FredError>> = match self.node(&node).await {
            Err(e) => {
                let keys_in_batch = units.iter().map(|u| u.idx.len()).sum();
                let c = classify(e, units[0].slot, &node, timeout);
                return batch_failed(units, &node, keys_in_batch, c);
            }
            Ok(client) => {
                let cmds: Vec<(Cmd<'_>, bool)> = units
                    .iter()
                    .map(|u| (op.cmd(keys, u), u.ask.is_some()))
                    .collect();
                if cmds.len() == 1 {
                    // Fast path: one slot on this node (e.g. all keys share a tag).
                    vec![exec(&client, &cmds[0].0, cmds[0].1).await]
                } else if cmds.iter().any(|(_, asking)| *asking) {
                    join_all(
                        cmds.iter()
                            .map(|(c, asking)| exec(&client, c, *asking))
                            .collect(),
                    )
                    .await
                } else {
                    // Pipelines of at most MAX_PIPELINE commands, one after
                    // the other: each is a single hand-off to the node's
                    // connection task, written back to back, with its own
                    // command timeout (100,000 keys are not one pipeline
                    // under one deadline, and a timed-out chunk is all a
                    // retry re-sends). This client follows no redirection
                    // itself, so replies stay in order; a redirected
                    // command just reports its error.
                    let mut replies = Vec::with_capacity(cmds.len());
                    for chunk in cmds.chunks(MAX_PIPELINE) {
                        let p = client.pipeline();
                        for (c, _) in chunk {
                            // Queuing only buffers the command.
                            let _ = send_cmd(&p, c).await;
                        }
                        let mut part = p.try_all::<Value>().await;
                        if part.len() != chunk.len() {
                            // The pipeline as a whole failed: every command
                            // shares its error.
                            let e = part
                                .pop()
                                .and_then(std::result::Result::err)
                                .unwrap_or_else(|| {
                                    FredError::new(
                                        ErrorKind::Unknown,
                                        "pipeline returned too few replies",
                                    )
                                });
                            part = chunk.iter().map(|_| Err(e.clone())).collect();
                        }
                        replies.extend(part);
                    }
                    replies
                }
            }
        };
        let transport = |e: &FredError| {
            matches!(
                e.kind(),
                ErrorKind::Timeout | ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Routing
            )
        };
        if units.len() > 1 && replies.iter().all(|r| r.as_ref().is_err_and(transport)) {
            let keys_in_batch = units.iter().map(|u| u.idx.len()).sum();
            let err = replies
                .into_iter()
                .find_map(std::result::Result::err)
                .unwrap_or_else(|| FredError::new(ErrorKind::Unknown, "no reply"));
            let c = classify(err, units[0].slot, &node, timeout);
            return batch_failed(units, &node, keys_in_batch, c);
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
                        redirect: Redirect::None,
                    }),
                    Err(e) => Err(classify(e, u.slot, &node, timeout)),
                };
                (u, res)
            })
            .collect()
    }

    /// Splits by slot, batches per node, runs nodes concurrently, follows
    /// redirections, retries failed slots, and returns per-key results in
    /// input order.
    async fn multi(&self, op: Multi<'_>, keys: &[&[u8]]) -> Vec<KeyResult<Out>> {
        let mut results: Vec<Option<KeyResult<Out>>> = vec![None; keys.len()];
        let unit = |slot, idx| Unit {
            slot,
            idx,
            redirects: 0,
            ask: None,
        };
        let groups = group_by_slot(keys);
        let mut pending: Vec<Unit> = if op.per_key() {
            groups
                .into_iter()
                .flat_map(|(s, idx)| idx.into_iter().map(move |i| unit(s, vec![i])))
                .collect()
        } else {
            groups.into_iter().map(|(s, idx)| unit(s, idx)).collect()
        };
        let started = Instant::now();
        let mut attempt = 0;
        while !pending.is_empty() {
            let routing = self.routing_table();
            let mut by_node: BTreeMap<String, Vec<Unit>> = BTreeMap::new();
            // Slots without a known owner fail (retryably) without a
            // connection attempt, as in `run`.
            let mut unrouted = Vec::new();
            for u in pending.drain(..) {
                let node = u.ask.clone().or_else(|| {
                    routing.owners[usize::from(u.slot)]
                        .as_ref()
                        .map(|n| n.to_string())
                });
                match node {
                    Some(node) => by_node.entry(node).or_default().push(u),
                    None => {
                        let c = classify(
                            routing_error("no node serves this slot"),
                            u.slot,
                            NO_OWNER,
                            self.inner.config.command_timeout,
                        );
                        unrouted.push((u, Err(c)));
                    }
                }
            }
            let batches = by_node
                .into_iter()
                .map(|(node, units)| self.node_batch(op, keys, node, units))
                .collect();
            let retry_allowed = self.may_retry(attempt, started);
            let (mut failed_keys, mut must_wait, mut topology_suspect) = (0u64, false, false);
            let outcomes = join_all(batches).await.into_iter().flatten();
            for (mut u, res) in outcomes.chain(unrouted) {
                match res {
                    Ok(outs) => {
                        for (&i, out) in u.idx.iter().zip(outs) {
                            results[i] = Some(Ok(out));
                        }
                    }
                    // Every multi-key command may be repeated (MGET, MSET,
                    // SET … PX, DEL).
                    Err(c)
                        if retry_allowed
                            && may_resend(
                                &c,
                                Retry::Always,
                                u.redirects + u32::from(c.redirect != Redirect::None),
                                self.inner.config.max_redirections,
                            ) =>
                    {
                        if c.redirect == Redirect::None {
                            must_wait = true;
                            u.ask = None;
                        } else {
                            u.redirects += 1;
                            u.ask = self.follow(&c.redirect);
                        }
                        pending.push(u);
                    }
                    Err(c) => {
                        failed_keys += u.idx.len() as u64;
                        topology_suspect |= c.retry;
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
                if topology_suspect {
                    self.request_refresh();
                }
            }
            if !pending.is_empty() {
                self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target: "sysmanage.cache.retry", op = "multi", attempt, slots = pending.len());
                if must_wait {
                    self.request_refresh();
                    tokio::time::sleep(self.retry_delay(attempt)).await;
                    attempt += 1;
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(CacheError::invalid("keys", "internal: key without result"))
                })
            })
            .collect()
    }

    /// The nodes of the cluster as `CLUSTER NODES` reports them (failed
    /// nodes included), asked of the primaries and seed nodes in turn.
    ///
    /// # Errors
    /// A backend error when no node answers.
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
            let reply = match self.node(&addr).await {
                Ok(c) => {
                    c.custom::<String, Value>(
                        CustomCommand::new_static("CLUSTER", ClusterHash::Random, false),
                        vec!["NODES".into()],
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match reply {
                Ok(text) => return ClusterNode::parse_nodes(&text),
                Err(e) => {
                    last = Some(CacheError::Backend {
                        backend: "redis",
                        source: shared(e),
                    });
                }
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

fn batch_failed(
    units: Vec<Unit>,
    node: &str,
    keys: usize,
    c: Classified,
) -> Vec<(Unit, std::result::Result<Vec<Out>, Classified>)> {
    let error = CacheError::NodeBatch {
        node: node.to_owned(),
        keys,
        source: Arc::new(c.error),
    };
    units
        .into_iter()
        .map(|u| {
            let e = Classified {
                error: error.clone(),
                retry: c.retry,
                not_executed: c.not_executed,
                redirect: Redirect::None,
            };
            (u, Err(e))
        })
        .collect()
}

/// The periodic and on-demand topology refresh. It holds the cache only
/// while refreshing: while it waits, dropping the last `RedisCache` frees
/// everything at once (and `Inner::drop` ends this task).
async fn refresher(inner: Weak<Inner>, wake: Arc<Notify>) {
    let mut rng = SplitMix64::from_entropy();
    loop {
        let (period, gap) = {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let cfg = &strong.config;
            let spread = 1.0 - cfg.refresh_jitter + 2.0 * cfg.refresh_jitter * rng.next_f64();
            (cfg.refresh_interval.mul_f64(spread), cfg.min_refresh_gap)
        };
        {
            let notified = wake.notified();
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = notified => {}
            }
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let cache = RedisCache { inner: strong };
        let _ = cache.refresh_now().await;
        drop(cache);
        tokio::time::sleep(gap).await;
    }
}

/// A `SCAN` reply: the next cursor and the keys. Any other shape is an
/// error, never an early end of the scan.
fn scan_page(reply: Value) -> Result<(u64, Vec<Vec<u8>>)> {
    let bad = |what: &str| CacheError::Backend {
        backend: "redis",
        source: Arc::new(std::io::Error::other(format!(
            "malformed SCAN reply: {what}"
        ))),
    };
    let Value::Array(mut parts) = reply else {
        return Err(unexpected(&reply));
    };
    if parts.len() != 2 {
        return Err(bad("not [cursor, keys]"));
    }
    let keys = parts.pop().unwrap_or(Value::Null);
    let next = parts.pop().unwrap_or(Value::Null);
    let cursor = next
        .as_bytes()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| bad("cursor is not an unsigned integer"))?;
    let Value::Array(keys) = keys else {
        return Err(bad("keys are not an array"));
    };
    let keys = keys
        .into_iter()
        .map(|k| {
            k.as_bytes()
                .map(<[u8]>::to_vec)
                .ok_or_else(|| bad("a key is not a string"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((cursor, keys))
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
        bytes_of(self.run("get", key, Retry::Always, Cmd::Get(key)).await?)
    }

    async fn set(&self, key: &[u8], value: &[u8], opts: SetOptions) -> Result<bool> {
        let limits = &self.inner.config.limits;
        limits.check_key(key)?;
        limits.check_value(value)?;
        let (exp, cond, mode) = set_parts(opts)?;
        let v = self
            .run("set", key, mode, Cmd::Set(key, value, exp, cond))
            .await?;
        Ok(!matches!(v, Value::Null))
    }

    async fn delete(&self, key: &[u8]) -> Result<bool> {
        self.inner.config.limits.check_key(key)?;
        Ok(int_of(
            &self
                .run("delete", key, Retry::Always, Cmd::Del(key))
                .await?,
        )? > 0)
    }

    async fn exists(&self, key: &[u8]) -> Result<bool> {
        self.inner.config.limits.check_key(key)?;
        Ok(int_of(
            &self
                .run("exists", key, Retry::Always, Cmd::Exists(key))
                .await?,
        )? > 0)
    }

    async fn expire(&self, key: &[u8], ttl: Duration) -> Result<bool> {
        self.inner.config.limits.check_key(key)?;
        let ms = check_ttl(ttl)? as i64;
        Ok(int_of(
            &self
                .run("expire", key, Retry::Always, Cmd::PExpire(key, ms))
                .await?,
        )? > 0)
    }

    async fn ttl(&self, key: &[u8]) -> Result<Ttl> {
        self.inner.config.limits.check_key(key)?;
        let v = self.run("ttl", key, Retry::Always, Cmd::PTtl(key)).await?;
        Ok(match int_of(&v)? {
            -2 => Ttl::Missing,
            -1 => Ttl::Persistent,
            ms => Ttl::ExpiresIn(Duration::from_millis(ms.max(0) as u64)),
        })
    }

    async fn incr(&self, key: &[u8], by: i64) -> Result<i64> {
        self.inner.config.limits.check_key(key)?;
        int_of(
            &self
                .run("incr", key, Retry::OnlyIfNotExecuted, Cmd::IncrBy(key, by))
                .await?,
        )
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
                // Never a miss: an unexpected shape is an error.
                other => Err(CacheError::Backend {
                    backend: "redis",
                    source: Arc::new(std::io::Error::other(format!(
                        "mget decoded {other:?} instead of a value"
                    ))),
                }),
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
        let snapshot = self.routing();
        let timeout = self.inner.config.command_timeout;
        for first in snapshot.primaries() {
            // A slot of this node: after a failure, the scan restarts on
            // whichever node serves it then (a promoted replica).
            let probe = snapshot
                .ranges
                .iter()
                .find(|r| r.node == first)
                .map_or(0, |r| r.start);
            let mut node = first.to_owned();
            let (started, mut attempt) = (Instant::now(), 0);
            let mut cursor: u64 = 0;
            // Bounded: at most 10,000 pages per node.
            for _ in 0..10_000 {
                let args: Vec<Value> = vec![
                    cursor.to_string().into(),
                    "MATCH".into(),
                    Value::from(&pattern[..]),
                    "COUNT".into(),
                    1000.into(),
                ];
                let res = match self.node(&node).await {
                    Ok(c) => exec(&c, &Cmd::Scan(args), false).await,
                    Err(e) => Err(e),
                };
                let reply = match res {
                    Ok(v) => v,
                    Err(e) => {
                        let c = classify(e, probe, &node, timeout);
                        if !c.retry || !self.may_retry(attempt, started) {
                            self.inner.counters.failures.fetch_add(1, Ordering::Relaxed);
                            if c.retry {
                                self.request_refresh();
                            }
                            return Err(c.error);
                        }
                        self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(target: "sysmanage.cache.retry", op = "scan_prefix", attempt, error = %c.error);
                        tokio::time::sleep(self.retry_delay(attempt)).await;
                        attempt += 1;
                        let _ = self.refresh_now().await;
                        if let Some(owner) = self.owner(probe)
                            && *owner != *node
                        {
                            // A cursor is only valid on the node that issued it.
                            node = owner.to_string();
                            cursor = 0;
                        }
                        continue;
                    }
                };
                let (next, keys) = scan_page(reply)?;
                for k in keys {
                    if k.starts_with(prefix) {
                        seen.insert(k);
                        if seen.len() >= limit {
                            return Ok(seen.into_iter().collect());
                        }
                    }
                }
                cursor = next;
                if cursor == 0 {
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
    fn url_shaped_seeds_are_rejected_without_echoing_them() {
        for good in [
            "127.0.0.1:7000",
            "redis-0.svc.local:6379",
            "[::1]:7001",
            "h_1:1",
        ] {
            assert!(parse_addr(good).is_some(), "{good}");
        }
        for bad in [
            "redis://:hunter2@host:7000",
            "user:hunter2@host:7000",
            "host:7000/0",
            "redis://host:7000",
            "host:0",
            "host:+7000",
            "host:99999",
            ":7000",
            "[]:7000",
            "ho st:7000",
        ] {
            assert!(parse_addr(bad).is_none(), "{bad}");
            let err = RedisConfig::new([bad]).validate().unwrap_err().to_string();
            assert!(err.contains("redis.nodes"), "{err}");
            assert!(!err.contains("hunter2") && !err.contains(bad), "{err}");
        }
    }

    #[tokio::test]
    async fn keys_of_unowned_slots_fail_without_a_connection_attempt() {
        let cfg = RedisConfig {
            retry_budget: Duration::from_millis(50),
            ..RedisConfig::new(["127.0.0.1:1"])
        };
        let cache = RedisCache::unconnected(cfg).unwrap();
        let keys: Vec<Vec<u8>> = (0..20).map(|i| format!("k{i}").into_bytes()).collect();
        let results = cache.mget(&keys).await.unwrap();
        assert_eq!(results.len(), keys.len());
        for r in results {
            match r {
                Err(CacheError::Unavailable { node, .. }) => assert_eq!(node, NO_OWNER),
                other => panic!("expected a routing error, got {other:?}"),
            }
        }
        assert!(
            cache.inner.nodes.read().unwrap().is_empty(),
            "no client was created for an unowned slot"
        );
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
        assert!(t.retry && t.not_executed && t.redirect == Redirect::None);
        assert!(matches!(t.error, CacheError::Unavailable { slot: 1, .. }));
        assert_eq!(
            c("MOVED 3999 127.0.0.1:6381").redirect,
            Redirect::Moved(3999, "127.0.0.1:6381".into())
        );
        assert_eq!(
            c("ASK 3999 127.0.0.1:6381").redirect,
            Redirect::Ask("127.0.0.1:6381".into())
        );
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
        let no_route = classify(
            FredError::new(ErrorKind::Routing, "no node"),
            1,
            "n:1",
            Duration::from_secs(1),
        );
        assert!(no_route.retry && no_route.not_executed);
    }

    #[test]
    fn malformed_scan_replies_are_errors_not_the_end_of_the_scan() {
        let page = |cursor: Value, keys: Value| scan_page(Value::Array(vec![cursor, keys]));
        let (next, keys) = page("17".into(), Value::Array(vec!["a".into(), "b".into()])).unwrap();
        assert_eq!((next, keys), (17, vec![b"a".to_vec(), b"b".to_vec()]));
        assert_eq!(page("0".into(), Value::Array(vec![])).unwrap().0, 0);
        for (cursor, keys) in [
            (Value::from("x1"), Value::Array(vec![])),
            (Value::Null, Value::Array(vec![])),
            (Value::from("5"), Value::from("k")),
            (Value::from("5"), Value::Array(vec![Value::Array(vec![])])),
        ] {
            assert!(
                matches!(page(cursor, keys), Err(CacheError::Backend { .. })),
                "must be an error"
            );
        }
        assert!(scan_page(Value::Array(vec!["0".into()])).is_err());
        assert!(scan_page(Value::Null).is_err());
    }

    #[test]
    fn a_refresh_keeps_moved_patches_newer_than_its_view() {
        let snap = |split: u16| {
            RoutingSnapshot::new(
                vec![
                    SlotOwner::new(0, split - 1, "a:1"),
                    SlotOwner::new(split, SLOT_COUNT - 1, "b:1"),
                ],
                Timestamp::from_secs(0),
            )
        };
        let owner = |r: &Routing, s: u16| r.owners[usize::from(s)].as_deref().map(str::to_owned);
        let t = Routing::new(snap(100));
        // MOVED #1 (slot 10 → b) before the refresh asked, #2 (slot 20 → b) after.
        let t = t.patched(10, "b:1", 1).patched(20, "b:1", 2);
        let stale = Routing::refreshed(snap(100), &t, 1);
        assert_eq!(
            owner(&stale, 20).as_deref(),
            Some("b:1"),
            "newer patch kept"
        );
        assert_eq!(
            owner(&stale, 10).as_deref(),
            Some("a:1"),
            "older patch dropped"
        );
        let next = Routing::refreshed(snap(100), &stale, 2);
        assert_eq!(
            owner(&next, 20).as_deref(),
            Some("a:1"),
            "a later view wins"
        );
        assert!(next.patches.is_empty());
    }

    #[test]
    fn concurrent_refresh_calls_share_only_a_later_refresh() {
        // Two refreshes had started when the call arrived; the one in
        // flight (#2) may have read an older view: not shared.
        assert!(!shares_refresh(2, 2));
        // #3 started after the call and succeeded: shared.
        assert!(shares_refresh(3, 2));
        assert!(!shares_refresh(0, 0));
    }

    #[tokio::test]
    async fn a_waiting_refresher_does_not_keep_the_cache_alive() {
        let cfg = RedisConfig {
            refresh_interval: Duration::from_secs(3600),
            ..RedisConfig::new(["127.0.0.1:1"])
        };
        let cache = RedisCache::unconnected(cfg).unwrap();
        let weak = Arc::downgrade(&cache.inner);
        let task = tokio::spawn(refresher(weak.clone(), cache.inner.refresh.clone()));
        cache.inner.tasks.lock().unwrap().push(task);
        // Let the refresher reach its wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(cache);
        assert!(
            weak.upgrade().is_none(),
            "dropped at once, not after the period"
        );
    }

    fn classified(kind: ErrorKind, msg: &str) -> Classified {
        classify(
            FredError::new(kind, msg.to_owned()),
            7,
            "n:1",
            Duration::from_secs(1),
        )
    }

    #[test]
    fn resend_decisions() {
        let timeout = classified(ErrorKind::Timeout, "t");
        let lost = classified(ErrorKind::IO, "connection reset");
        let full = classified(ErrorKind::Backpressure, "queue full");
        let moved = classified(ErrorKind::Unknown, "MOVED 7 127.0.0.1:7001");
        let ask = classified(ErrorKind::Unknown, "ASK 7 127.0.0.1:7001");
        let tryagain = classified(ErrorKind::Unknown, "TRYAGAIN");
        let wrongtype = classified(ErrorKind::Unknown, "WRONGTYPE Operation");
        // INCRBY / SET NX: never after an ambiguous failure.
        for c in [&timeout, &lost] {
            assert!(!may_resend(c, Retry::OnlyIfNotExecuted, 0, 16));
            assert!(may_resend(c, Retry::Always, 0, 16));
        }
        // ...but after errors that prove the command did not run.
        for c in [&full, &moved, &ask, &tryagain] {
            assert!(may_resend(c, Retry::OnlyIfNotExecuted, 1, 16));
        }
        // Redirections are capped; user errors are final.
        assert!(may_resend(&moved, Retry::Always, 16, 16));
        assert!(!may_resend(&moved, Retry::Always, 17, 16));
        assert!(!may_resend(&wrongtype, Retry::Always, 0, 16));
    }

    #[test]
    fn a_failed_node_batch_is_reported_per_key_as_node_batch() {
        let units = vec![
            Unit {
                slot: 1,
                idx: vec![0, 3],
                redirects: 0,
                ask: None,
            },
            Unit {
                slot: 2,
                idx: vec![1],
                redirects: 2,
                ask: Some("a:1".into()),
            },
        ];
        let out = batch_failed(units, "n:1", 3, classified(ErrorKind::IO, "reset"));
        assert_eq!(out.len(), 2);
        for (u, r) in out {
            let Err(c) = r else {
                panic!("unit {u:?} must fail")
            };
            assert!(c.retry && !c.not_executed && c.redirect == Redirect::None);
            match c.error {
                CacheError::NodeBatch { node, keys, .. } => {
                    assert_eq!((node.as_str(), keys), ("n:1", 3))
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn replies_are_decoded_per_unit_and_odd_shapes_are_errors() {
        let u = |idx: Vec<usize>| Unit {
            slot: 0,
            idx,
            redirects: 0,
            ask: None,
        };
        let got = Multi::Get
            .decode(&u(vec![4, 2]), Value::Array(vec!["x".into(), Value::Null]))
            .unwrap();
        assert!(matches!(&got[..], [Out::Value(Some(x)), Out::Value(None)] if x == b"x"));
        // An array of the wrong length is not silently truncated.
        assert!(
            Multi::Get
                .decode(&u(vec![0, 1, 2]), Value::Array(vec!["x".into()]))
                .is_err()
        );
        assert!(matches!(
            Multi::Del.decode(&u(vec![0]), Value::Integer(1)).unwrap()[..],
            [Out::Existed(true)]
        ));
        assert!(Multi::Del.decode(&u(vec![0]), "x".into()).is_err());
        // Per-key operations build one command per unit.
        let keys: Vec<&[u8]> = vec![b"a", b"b"];
        let values: Vec<&[u8]> = vec![b"1", b"2"];
        assert!(Multi::SetEach(&values, 5).per_key() && Multi::Del.per_key());
        assert!(!Multi::Get.per_key() && !Multi::SetAll(&values).per_key());
        match Multi::SetEach(&values, 5).cmd(&keys, &u(vec![1])) {
            Cmd::Set(k, v, Some(Expiration::PX(5)), None) => {
                assert_eq!((k, v), (&b"b"[..], &b"2"[..]))
            }
            _ => panic!("SET b 2 PX 5 expected"),
        }
    }
}
