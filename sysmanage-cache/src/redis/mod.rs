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
//!   [`CacheError::NodeBatch`](crate::CacheError::NodeBatch) on each of its keys — never a miss. When all
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
//! connection); after a timeout or a connection lost mid-command they fail
//! with [`CacheError::Indeterminate`](crate::CacheError::Indeterminate), since the command may have run.
//!
//! Failover: with the defaults an operation rides through the loss of a
//! primary (SIGKILL included): it waits and retries while the replica takes
//! over (a dropped connection requests a topology refresh at once), then is
//! re-sent to the promoted node as soon as `CLUSTER SLOTS` shows it.
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
//! | `sysmanage_cache::redis::retry` | debug | a transient error, before a retry (`op`, `attempt`, `error`) |
//! | `sysmanage_cache::redis::topology` | debug/info | refresh failures (debug), [`TopologyEvent`]s (info) |
//!
//! The [`scale`] module (online scaling) has its own table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError, RwLock};

use fred::clients::Client;

use sysmanage_core::Timestamp;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::topology::{RoutingSnapshot, TopologyEvent};
use connections::NodeConn;
use refresh::refresher;
use routing::Routing;

mod check;
mod classify;
mod cluster_info;
mod command;
mod config;
mod connections;
pub mod lease;
mod lifecycle;
mod multi;
mod ops;
mod refresh;
mod routing;
pub mod scale;
pub mod state_store;
#[cfg(test)]
mod tests;
mod tls;

pub use check::ClusterCheck;
pub use config::RedisConfig;

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

/// A [`ClusterCache`](crate::ClusterCache) on a Redis Cluster. Cheap to clone; clones share the
/// connections. Dropping the last clone stops the background tasks.
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

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
    /// Shutdown state: refuses new operations, counts those in flight.
    life: lifecycle::Life,
    /// The TLS client configuration, built once from `config.tls`.
    tls: connections::NodeTls,
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
            n.close();
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

impl RedisCache {
    /// Connects to the cluster: reads `CLUSTER SLOTS` from the first seed
    /// node that answers, connects to the primaries and starts the topology
    /// refresher.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`](crate::CacheError::InvalidArgument) for bad settings, a backend error when
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
        let tls = connections::NodeTls::new(&config)?;
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
            life: lifecycle::Life::default(),
            tls,
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
        let _op = self.begin()?;
        self.node(addr)
            .await
            .map_err(|e| self.connect_failure(e, addr))
    }

    /// The fred configuration this cache uses to connect to the node
    /// `host:port`: its credentials and TLS settings, for fred clients of
    /// your own (fred's other settings at their defaults).
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`](crate::CacheError::InvalidArgument) when `addr` is not `host:port`.
    pub fn fred_config_for(&self, addr: &str) -> Result<fred::types::config::Config> {
        let (host, port) = config::parse_addr(addr)
            .ok_or_else(|| crate::CacheError::invalid("addr", "not host:port"))?;
        Ok(self.fred_config(host, port))
    }

    /// Topology events published after each refresh. Slow receivers lose
    /// the oldest events (`RecvError::Lagged`), never block the cache.
    pub fn subscribe(&self) -> broadcast::Receiver<TopologyEvent> {
        self.inner.events.subscribe()
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
}
