//! Physical node sets: where a logical shard's data lives.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The physical home of one or more logical shards: a connection pool today,
/// a primary with replicas (a replica router) when a shard is replicated, or
/// an in-memory store in tests.
///
/// The router hands a clone of the node set to the closures it runs on a
/// shard, so implementations are cheap handles (`Arc` inside), like sqlx's
/// `PgPool`.
pub trait NodeSet: Clone + Send + Sync + fmt::Debug + 'static {
    /// A point-in-time view of the node set's health for
    /// [`ShardRouter::stats`](super::ShardRouter::stats). Cheap and
    /// non-blocking: it reports what the node set already knows.
    fn status(&self) -> NodeSetStatus {
        NodeSetStatus::unknown()
    }
}

/// Health of a node set as a status snapshot reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeSetHealth {
    /// Serving.
    Up,
    /// Serving with reduced capacity or redundancy.
    Degraded,
    /// Not serving.
    Down,
    /// The node set does not track its health.
    Unknown,
}

/// A node set's [`NodeSet::status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSetStatus {
    /// Health.
    pub health: NodeSetHealth,
    /// Human-readable detail (pool size, the reason it is down); never a secret.
    pub detail: String,
}

impl NodeSetStatus {
    /// Health not tracked.
    pub fn unknown() -> Self {
        NodeSetStatus {
            health: NodeSetHealth::Unknown,
            detail: String::new(),
        }
    }
}

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
impl NodeSet for sqlx::PgPool {
    /// `down` once the pool is closed; otherwise `up` with its size and idle
    /// connections (a pool does not probe the server by itself: failures
    /// show in the router's per-shard error counts).
    ///
    /// sqlx's pool retries a refused connection until its `acquire_timeout`
    /// and then returns `PoolTimedOut`; keep that timeout below the router's
    /// shard timeout so an unreachable shard fails fast with that error.
    fn status(&self) -> NodeSetStatus {
        if self.is_closed() {
            NodeSetStatus {
                health: NodeSetHealth::Down,
                detail: "pool closed".into(),
            }
        } else {
            NodeSetStatus {
                health: NodeSetHealth::Up,
                detail: format!("pool size={} idle={}", self.size(), self.num_idle()),
            }
        }
    }
}

/// A replicated shard: writes go to its primary and reads to a fresh-enough
/// replica, as the [`ReplicaRouter`](crate::replica::ReplicaRouter) decides.
///
/// Health: `down` without a known primary, `degraded` while any node is
/// banned, `up` otherwise.
impl<P: crate::replica::NodePool> NodeSet for crate::replica::ReplicaRouter<P> {
    fn status(&self) -> NodeSetStatus {
        let status = self.status();
        let unhealthy = status
            .nodes
            .iter()
            .filter(|n| !matches!(n.state, crate::replica::NodeState::Healthy))
            .count();
        let health = match (&status.primary, unhealthy) {
            (None, _) => NodeSetHealth::Down,
            (Some(_), 0) => NodeSetHealth::Up,
            (Some(_), _) => NodeSetHealth::Degraded,
        };
        NodeSetStatus {
            health,
            detail: format!(
                "primary={} nodes={} unhealthy={unhealthy}",
                status.primary.as_deref().unwrap_or("none"),
                status.nodes.len()
            ),
        }
    }
}

/// An in-memory node set holding rows of type `T`: routing, fan-out and
/// partial failure without a server, for tests, examples and simulations.
///
/// It can be taken down ([`set_down`](Self::set_down)) and slowed
/// ([`set_latency`](Self::set_latency)) to exercise failure handling.
///
/// ```
/// use sysmanage_db::shard::MemoryNodeSet;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let nodes = MemoryNodeSet::new("mem-0");
/// nodes.insert(1_u64);
/// nodes.insert(2);
/// assert_eq!(nodes.query(|rows| rows.iter().sum::<u64>()).await.unwrap(), 3);
/// nodes.set_down("maintenance");
/// assert!(nodes.query(|rows| rows.len()).await.is_err());
/// # }
/// ```
pub struct MemoryNodeSet<T> {
    inner: Arc<MemoryInner<T>>,
}

impl<T> Clone for MemoryNodeSet<T> {
    fn clone(&self) -> Self {
        MemoryNodeSet {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct MemoryInner<T> {
    name: String,
    rows: Mutex<Vec<T>>,
    down: Mutex<Option<String>>,
    latency: Mutex<Duration>,
}

impl<T> fmt::Debug for MemoryNodeSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryNodeSet")
            .field("name", &self.inner.name)
            .field("rows", &lock(&self.inner.rows).len())
            .field("down", &*lock(&self.inner.down))
            .finish()
    }
}

fn lock<V>(m: &Mutex<V>) -> std::sync::MutexGuard<'_, V> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> MemoryNodeSet<T> {
    /// An empty, available node set.
    pub fn new(name: impl Into<String>) -> Self {
        MemoryNodeSet {
            inner: Arc::new(MemoryInner {
                name: name.into(),
                rows: Mutex::new(Vec::new()),
                down: Mutex::new(None),
                latency: Mutex::new(Duration::ZERO),
            }),
        }
    }

    /// The node set's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Stores a row (regardless of availability: this is the test's back door).
    pub fn insert(&self, row: T) {
        lock(&self.inner.rows).push(row);
    }

    /// Makes every query fail with [`NodeSetDown`] carrying `reason`.
    pub fn set_down(&self, reason: impl Into<String>) {
        *lock(&self.inner.down) = Some(reason.into());
    }

    /// Makes the node set available again.
    pub fn set_up(&self) {
        *lock(&self.inner.down) = None;
    }

    /// Delays every query by `latency` (simulating network and server time).
    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.inner.latency) = latency;
    }

    /// Runs `f` over the rows after the configured latency.
    ///
    /// # Errors
    /// [`NodeSetDown`] while the node set is down.
    pub async fn query<R>(&self, f: impl FnOnce(&[T]) -> R) -> Result<R, NodeSetDown> {
        let latency = *lock(&self.inner.latency);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if let Some(reason) = lock(&self.inner.down).clone() {
            return Err(NodeSetDown {
                node_set: self.inner.name.clone(),
                reason,
            });
        }
        Ok(f(&lock(&self.inner.rows)))
    }
}

impl<T: Send + 'static> NodeSet for MemoryNodeSet<T> {
    fn status(&self) -> NodeSetStatus {
        match &*lock(&self.inner.down) {
            Some(reason) => NodeSetStatus {
                health: NodeSetHealth::Down,
                detail: reason.clone(),
            },
            None => NodeSetStatus {
                health: NodeSetHealth::Up,
                detail: format!("{} rows", lock(&self.inner.rows).len()),
            },
        }
    }
}

/// A query on a [`MemoryNodeSet`] that is down.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node set {node_set} is down: {reason}")]
pub struct NodeSetDown {
    /// The node set.
    pub node_set: String,
    /// The reason given to [`MemoryNodeSet::set_down`].
    pub reason: String,
}
