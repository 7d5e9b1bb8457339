//! One fred client per node, created on first use, dropped when the node
//! leaves the topology.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError};
use tokio::task::JoinHandle;

use fred::clients::Client;
use fred::error::Error as FredError;
use fred::interfaces::ClientLike;
use fred::interfaces::EventInterface;
use fred::types::Builder;
use fred::types::config::{Config, ReconnectPolicy, ServerConfig};

use super::RedisCache;
use super::classify::routing_error;
use super::config::parse_addr;

use crate::telemetry::NodeMetrics;
use crate::topology::RoutingSnapshot;

/// The client of one node and its connection task (which ends when its
/// reconnect attempts are used up).
pub(super) struct NodeConn {
    pub(super) client: Client,
    pub(super) task: fred::types::ConnectHandle,
    /// Requests a topology refresh when the connection reports an error.
    pub(super) watcher: JoinHandle<()>,
    /// The node's exported metrics.
    pub(super) metrics: Arc<NodeMetrics>,
}

impl NodeConn {
    pub(super) fn usable(&self) -> Option<Client> {
        (!self.task.is_finished()).then(|| self.client.clone())
    }

    /// Ends the connection task (and its reconnect loop) and the watcher.
    /// Commands still queued on the client fail, and are re-sent elsewhere
    /// when they may be.
    pub(super) fn close(&self) {
        self.task.abort();
        self.watcher.abort();
    }
}

/// Reconnect attempts of one node client before it gives up; the next use
/// of the node then connects afresh. With 50 ms doubling to 1 s, about 6 s.
pub(super) const RECONNECT_ATTEMPTS: u32 = 10;

/// Commands one node client queues while its connection is down; beyond
/// that a command fails at once with fred's `Backpressure` (not sent, so
/// safe to retry) instead of queuing without bound.
pub(super) const MAX_QUEUED_COMMANDS: usize = 4096;

/// The TLS client settings of every connection to the cluster, built once
/// from [`RedisConfig::tls`](super::RedisConfig::tls) (files read, keys
/// parsed) and shared by the node clients, the tracking connections and
/// the scaling executor.
#[derive(Clone, Default)]
pub(crate) struct NodeTls {
    #[cfg(feature = "redis-tls")]
    config: Option<Arc<rustls::ClientConfig>>,
}

impl NodeTls {
    /// The settings `config` asks for.
    ///
    /// # Errors
    /// As [`RedisConfig::validate`](super::RedisConfig::validate), and a
    /// certificate or key that cannot be read or used.
    pub(crate) fn new(config: &super::RedisConfig) -> crate::Result<Self> {
        #[cfg(feature = "redis-tls")]
        {
            Ok(Self {
                config: config
                    .tls
                    .as_ref()
                    .map(super::tls::client_config)
                    .transpose()?,
            })
        }
        #[cfg(not(feature = "redis-tls"))]
        {
            let _ = config;
            Ok(Self {})
        }
    }

    /// The fred configuration of a connection to the node `host:port`
    /// under `cfg`: credentials and TLS (fred's default of failing fast on
    /// the first connection attempt is kept).
    pub(crate) fn fred_config(&self, cfg: &super::RedisConfig, host: String, port: u16) -> Config {
        #[cfg(feature = "redis-tls")]
        let (server, tls) = match &self.config {
            Some(tls) => (
                fred::types::config::Server::new_with_tls(
                    host,
                    port,
                    cfg.tls.as_ref().and_then(|t| t.server_name.clone()),
                ),
                Some(fred::types::config::TlsConfig::from(
                    rustls::ClientConfig::clone(tls),
                )),
            ),
            None => (fred::types::config::Server::new(host, port), None),
        };
        #[cfg(not(feature = "redis-tls"))]
        let server = fred::types::config::Server::new(host, port);
        Config {
            server: ServerConfig::Centralized { server },
            username: cfg.username.clone(),
            password: cfg.password.as_ref().map(|s| s.expose().to_owned()),
            #[cfg(feature = "redis-tls")]
            tls,
            ..Config::default()
        }
    }
}

impl RedisCache {
    /// The fred configuration of a connection to one node of this cache.
    pub(crate) fn fred_config(&self, host: String, port: u16) -> Config {
        self.inner.tls.fred_config(&self.inner.config, host, port)
    }

    /// A failed connection attempt to `node` as a [`CacheError`]: refused
    /// credentials and failed TLS handshakes typed and in words.
    pub(crate) fn connect_failure(&self, e: FredError, node: &str) -> crate::CacheError {
        super::tls::connect_error(e, node)
    }

    /// The client of one node, connecting it on first use.
    pub(super) async fn node(&self, addr: &str) -> std::result::Result<Client, FredError> {
        self.node_conn(addr).await.map(|(c, _)| c)
    }

    /// [`node`](Self::node) and the node's metrics handles.
    pub(super) async fn node_conn(
        &self,
        addr: &str,
    ) -> std::result::Result<(Client, Arc<NodeMetrics>), FredError> {
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
        let fred_config = self.fred_config(host, port);
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
        // A connection that drops (a node killed, a network fault) asks for a
        // topology refresh at once rather than at the next period, so a
        // promoted replica is found as soon as `CLUSTER SLOTS` shows it.
        let mut errors = client.error_rx();
        let refresh = Arc::downgrade(&self.inner.refresh);
        let watcher = tokio::spawn(async move {
            loop {
                match errors.recv().await {
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        match refresh.upgrade() {
                            Some(r) => r.notify_one(),
                            None => return,
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let task = match client.init().await {
            Ok(task) => task,
            Err(e) => {
                watcher.abort();
                return Err(e);
            }
        };
        let metrics = Arc::new(NodeMetrics::new(addr));
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
                    watcher,
                    metrics: Arc::clone(&metrics),
                },
            );
        if let Some(old) = old {
            old.close();
        }
        Ok((client, metrics))
    }

    /// The node's client if it exists and its connection task still runs.
    pub(super) fn cached_node(&self, addr: &str) -> Option<(Client, Arc<NodeMetrics>)> {
        self.inner
            .nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(addr)
            .and_then(|n| Some((n.usable()?, Arc::clone(&n.metrics))))
    }

    /// Drops the clients of nodes that serve no slot in `snapshot` and are
    /// not connected (failed or removed nodes), ending their reconnect
    /// loops. Connected replicas stay (statistics use them).
    pub(super) fn prune_nodes(&self, snapshot: &RoutingSnapshot) {
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
                n.close();
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
}
