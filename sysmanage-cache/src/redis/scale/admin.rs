//! The executor's own connections: one fred client per node, separate from
//! any `RedisCache`'s data connections, so that long `MIGRATE`s never queue
//! behind (or in front of) application traffic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fred::clients::Client;
use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::ClientLike;
use fred::types::config::{Options, ReconnectPolicy};
use fred::types::{Builder, ClusterHash, CustomCommand, Value};

use super::error::ScaleError;
use crate::redis::RedisConfig;
use crate::redis::config::parse_addr;
use crate::redis::connections::NodeTls;

/// One command: its name and arguments.
pub(super) type Cmd = (&'static str, Vec<Value>);

/// `CLUSTER <sub> <args…>`.
pub(super) fn cluster(sub: &'static str, args: impl IntoIterator<Item = Value>) -> Cmd {
    let mut v = vec![Value::from(sub)];
    v.extend(args);
    ("CLUSTER", v)
}

pub(super) struct Admin {
    config: RedisConfig,
    tls: NodeTls,
    clients: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Client>>>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("seeds", &self.config.nodes)
            .finish_non_exhaustive()
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        for (_, c) in self
            .clients
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            if let Some(c) = c.get() {
                let c = c.clone();
                // Best effort: ends the connection task.
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        let _ = c.quit().await;
                    });
                }
            }
        }
    }
}

impl Admin {
    pub(super) fn new(config: RedisConfig, tls: NodeTls) -> Self {
        Self {
            config,
            tls,
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn config(&self) -> &RedisConfig {
        &self.config
    }

    pub(super) fn tls(&self) -> &NodeTls {
        &self.tls
    }

    /// The client of `addr`, connected on first use.
    pub(super) async fn client(&self, addr: &str) -> Result<Client, FredError> {
        let cell = self
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(addr.to_owned())
            .or_default()
            .clone();
        if let Some(c) = cell.get()
            && !c.is_connected()
        {
            // A node restarted or reset: connect afresh.
            self.clients
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(addr);
            let _ = c.quit().await;
            return Box::pin(self.client(addr)).await;
        }
        cell.get_or_try_init(|| self.connect(addr)).await.cloned()
    }

    async fn connect(&self, addr: &str) -> Result<Client, FredError> {
        let (host, port) = parse_addr(addr)
            .ok_or_else(|| FredError::new(ErrorKind::Config, "node address is not host:port"))?;
        let cfg = &self.config;
        let fred_config = self.tls.fred_config(cfg, host, port);
        let connect = cfg.connect_timeout;
        let timeout = cfg.command_timeout;
        let client = Builder::from_config(fred_config)
            .with_connection_config(|c| {
                c.connection_timeout = connect;
                c.internal_command_timeout = connect;
                // Never re-sent behind our back: MIGRATE and SETSLOT
                // outcomes are checked by the executor.
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| p.default_command_timeout = timeout)
            .set_policy(ReconnectPolicy::new_constant(3, 100))
            .build()?;
        client.init().await?;
        Ok(client)
    }

    /// Runs one command on `addr` with a reply deadline of `timeout`.
    pub(super) async fn call(
        &self,
        addr: &str,
        (name, args): Cmd,
        timeout: Duration,
    ) -> Result<Value, FredError> {
        let c = self.client(addr).await?;
        let opts = Options {
            timeout: Some(timeout),
            ..Options::default()
        };
        c.with_options(&opts)
            .custom(
                CustomCommand::new_static(name, ClusterHash::Random, false),
                args,
            )
            .await
    }

    /// Runs one command on `addr` with the default deadline.
    pub(super) async fn run(&self, addr: &str, cmd: Cmd) -> Result<Value, FredError> {
        self.call(addr, cmd, self.config.command_timeout).await
    }

    /// Sends `cmds` to `addr` back to back and returns one reply per
    /// command; `timeout` bounds the whole pipeline.
    pub(super) async fn pipeline(
        &self,
        addr: &str,
        cmds: Vec<Cmd>,
        timeout: Duration,
    ) -> Result<Vec<Result<Value, FredError>>, FredError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let n = cmds.len();
        let c = self.client(addr).await?;
        let p = c.pipeline();
        let opts = Options {
            timeout: Some(timeout),
            ..Options::default()
        };
        for (i, (name, args)) in cmds.into_iter().enumerate() {
            // Queuing only buffers the command. The pipeline's deadline is
            // its first command's.
            let cmd = CustomCommand::new_static(name, ClusterHash::Random, false);
            let _: Result<Value, _> = if i == 0 {
                p.with_options(&opts).custom(cmd, args).await
            } else {
                p.custom(cmd, args).await
            };
        }
        let mut replies = p.try_all::<Value>().await;
        if replies.len() != n {
            let e = replies.pop().and_then(Result::err).unwrap_or_else(|| {
                FredError::new(ErrorKind::Unknown, "pipeline returned too few replies")
            });
            return Err(e);
        }
        Ok(replies)
    }

    /// Drops the client of `addr` (a node that was reset).
    pub(super) fn forget_client(&self, addr: &str) {
        let cell = self
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(addr);
        if let Some(c) = cell.and_then(|c| c.get().cloned()) {
            tokio::spawn(async move {
                let _ = c.quit().await;
            });
        }
    }
}

/// A node that did not answer, as a typed error.
pub(super) fn down(node: &str, slot: Option<u16>, e: FredError) -> ScaleError {
    ScaleError::NodeDown {
        node: node.to_owned(),
        slot,
        source: Arc::new(e),
    }
}

/// A refused cluster command, as a typed error.
pub(super) fn refused(command: &'static str, node: &str, e: FredError) -> ScaleError {
    ScaleError::Command {
        command,
        node: node.to_owned(),
        source: Arc::new(e),
    }
}

/// Whether `e` is the server's error reply (the node answered) rather than
/// a transport failure.
pub(super) fn is_reply(e: &FredError) -> bool {
    !matches!(
        e.kind(),
        ErrorKind::IO
            | ErrorKind::Timeout
            | ErrorKind::Canceled
            | ErrorKind::Routing
            | ErrorKind::Backpressure
    ) && !matches!(
        e.details(),
        "channel closed"
            | "Canceled."
            | "Connection closed unexpectedly."
            | "Failed to route command."
    )
}

/// A reply as text (bulk or simple string).
pub(super) fn text(v: &Value) -> Option<String> {
    v.as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// A reply as an integer.
pub(super) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        other => other.as_i64(),
    }
}

/// An array reply of keys.
pub(super) fn keys(v: Value) -> Vec<Vec<u8>> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|k| k.as_bytes().map(<[u8]>::to_vec))
            .collect(),
        _ => Vec::new(),
    }
}
