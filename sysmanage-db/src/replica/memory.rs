//! An in-memory cluster: a primary with a write log and replicas that replay
//! it when told to. It exercises every routing decision without servers.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sysmanage_core::BoxError;

use super::lsn::Lsn;
use super::pool::{NodePool, Probe, QueryError};

/// Bytes of WAL each write takes in the simulation.
const RECORD_BYTES: u64 = 64;

/// Errors of [`MemoryNode`] operations.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// The node is down (a connection-level failure).
    #[error("node {0} is down")]
    Down(usize),
    /// A write reached a node in recovery.
    #[error("node {0} is read-only (in recovery)")]
    ReadOnly(usize),
}

impl QueryError for MemoryError {
    fn is_connection_error(&self) -> bool {
        matches!(self, Self::Down(_))
    }
    fn is_read_only_error(&self) -> bool {
        matches!(self, Self::ReadOnly(_))
    }
}

#[derive(Debug, Default)]
struct Sim {
    log: Vec<(String, String)>,
    nodes: Vec<SimNode>,
}

#[derive(Debug)]
struct SimNode {
    up: bool,
    primary: bool,
    paused: bool,
    applied: usize,
}

/// A simulated PostgreSQL cluster with streaming replication.
///
/// Writes append to one shared log; each node has applied a prefix of it.
/// The primary applies every write at once; replicas catch up when
/// [`replicate`](Self::replicate) runs, unless their replay is paused.
/// Clones share the cluster.
///
/// # Examples
/// ```
/// use sysmanage_db::replica::MemoryCluster;
/// let cluster = MemoryCluster::new();
/// let primary = cluster.add_primary();
/// let replica = cluster.add_replica();
/// let lsn = primary.write("k", "v")?;
/// assert_eq!(replica.get("k")?, None); // not replayed yet
/// cluster.replicate();
/// assert_eq!(replica.get("k")?.as_deref(), Some("v"));
/// assert!(replica.replay_lsn() >= lsn);
/// # Ok::<(), sysmanage_db::replica::MemoryError>(())
/// ```
#[derive(Clone, Default)]
pub struct MemoryCluster {
    sim: Arc<Mutex<Sim>>,
}

impl fmt::Debug for MemoryCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sim = lock(&self.sim);
        f.debug_struct("MemoryCluster")
            .field("writes", &sim.log.len())
            .field("nodes", &sim.nodes.len())
            .finish()
    }
}

fn lock(sim: &Mutex<Sim>) -> MutexGuard<'_, Sim> {
    sim.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryCluster {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&self, primary: bool) -> MemoryNode {
        let mut sim = lock(&self.sim);
        let applied = sim.log.len();
        sim.nodes.push(SimNode {
            up: true,
            primary,
            paused: false,
            applied,
        });
        MemoryNode {
            sim: Arc::clone(&self.sim),
            id: sim.nodes.len() - 1,
        }
    }

    /// Adds a node that accepts writes.
    pub fn add_primary(&self) -> MemoryNode {
        self.add(true)
    }

    /// Adds a replica that has replayed everything written so far.
    pub fn add_replica(&self) -> MemoryNode {
        self.add(false)
    }

    /// Every running replica whose replay is not paused catches up.
    pub fn replicate(&self) {
        let mut sim = lock(&self.sim);
        let end = sim.log.len();
        for n in sim.nodes.iter_mut().filter(|n| n.up && !n.paused) {
            n.applied = end;
        }
    }

    /// The WAL position of the end of the log.
    pub fn current_lsn(&self) -> Lsn {
        lsn_of(lock(&self.sim).log.len())
    }
}

fn lsn_of(records: usize) -> Lsn {
    Lsn::new(0x100_0000 + records as u64 * RECORD_BYTES)
}

/// One node of a [`MemoryCluster`]; the "pool" handed to read and write
/// closures. Clones refer to the same node.
#[derive(Clone)]
pub struct MemoryNode {
    sim: Arc<Mutex<Sim>>,
    id: usize,
}

impl fmt::Debug for MemoryNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryNode").field("id", &self.id).finish()
    }
}

impl MemoryNode {
    fn with<T>(&self, f: impl FnOnce(&mut Sim, usize) -> T) -> T {
        let mut sim = lock(&self.sim);
        f(&mut sim, self.id)
    }

    /// The node's index in its cluster.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Writes `key = value`; returns the WAL position after the write (a
    /// read-your-writes token).
    ///
    /// # Errors
    /// [`MemoryError::Down`], or [`MemoryError::ReadOnly`] on a replica.
    pub fn write(&self, key: &str, value: &str) -> Result<Lsn, MemoryError> {
        self.with(|sim, id| {
            let n = &sim.nodes[id];
            if !n.up {
                return Err(MemoryError::Down(id));
            }
            if !n.primary {
                return Err(MemoryError::ReadOnly(id));
            }
            sim.log.push((key.to_owned(), value.to_owned()));
            sim.nodes[id].applied = sim.log.len();
            Ok(lsn_of(sim.log.len()))
        })
    }

    /// The latest value of `key` this node has applied.
    ///
    /// # Errors
    /// [`MemoryError::Down`].
    pub fn get(&self, key: &str) -> Result<Option<String>, MemoryError> {
        self.with(|sim, id| {
            let n = &sim.nodes[id];
            if !n.up {
                return Err(MemoryError::Down(id));
            }
            Ok(sim.log[..n.applied.min(sim.log.len())]
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone()))
        })
    }

    /// Every key and latest value this node has applied.
    ///
    /// # Errors
    /// [`MemoryError::Down`].
    pub fn snapshot(&self) -> Result<HashMap<String, String>, MemoryError> {
        self.with(|sim, id| {
            let n = &sim.nodes[id];
            if !n.up {
                return Err(MemoryError::Down(id));
            }
            Ok(sim.log[..n.applied.min(sim.log.len())]
                .iter()
                .cloned()
                .collect())
        })
    }

    /// Starts or stops the node (a stopped node fails every call).
    pub fn set_up(&self, up: bool) {
        self.with(|sim, id| sim.nodes[id].up = up);
    }

    /// Pauses replay, like `pg_wal_replay_pause()`.
    pub fn pause_replay(&self) {
        self.with(|sim, id| sim.nodes[id].paused = true);
    }

    /// Resumes replay, like `pg_wal_replay_resume()`.
    pub fn resume_replay(&self) {
        self.with(|sim, id| sim.nodes[id].paused = false);
    }

    /// Makes this node writable, like `pg_ctl promote`. The cluster's history
    /// becomes this node's: writes it had not replayed are gone, and nodes
    /// that had applied more are treated as having applied exactly its
    /// history (in PostgreSQL they would have diverged and need a rewind).
    pub fn promote(&self) {
        self.with(|sim, id| {
            let n = &mut sim.nodes[id];
            n.primary = true;
            n.paused = false;
            // A promoted standby's history ends where its replay ended.
            let applied = n.applied;
            sim.log.truncate(applied);
            for other in &mut sim.nodes {
                other.applied = other.applied.min(applied);
            }
        });
    }

    /// Moves this node's replay position back to `lsn` (never forward), like
    /// a standby restarted after `pg_ctl stop -m immediate` that comes back
    /// at an older consistent point.
    pub fn rewind_to(&self, lsn: Lsn) {
        self.with(|sim, id| {
            let records = lsn.as_u64().saturating_sub(lsn_of(0).as_u64()) / RECORD_BYTES;
            let records = usize::try_from(records).unwrap_or(usize::MAX);
            let n = &mut sim.nodes[id];
            n.applied = n.applied.min(records);
        });
    }

    /// Makes this node a replica again.
    pub fn demote(&self) {
        self.with(|sim, id| sim.nodes[id].primary = false);
    }

    /// The position this node has applied up to.
    pub fn replay_lsn(&self) -> Lsn {
        self.with(|sim, id| lsn_of(sim.nodes[id].applied))
    }
}

impl NodePool for MemoryNode {
    async fn probe(&self) -> Result<Probe, BoxError> {
        self.with(|sim, id| {
            let n = &sim.nodes[id];
            if !n.up {
                return Err(MemoryError::Down(id).into());
            }
            Ok(if n.primary {
                Probe::primary(lsn_of(sim.log.len()))
            } else {
                Probe::replica(lsn_of(n.applied), None)
            })
        })
    }

    async fn replay_lsn(&self) -> Result<Option<Lsn>, BoxError> {
        self.with(|sim, id| {
            let n = &sim.nodes[id];
            if !n.up {
                Err(MemoryError::Down(id).into())
            } else {
                Ok((!n.primary).then(|| lsn_of(n.applied)))
            }
        })
    }

    async fn current_wal_lsn(&self) -> Result<Lsn, BoxError> {
        self.with(|sim, id| {
            let n = &sim.nodes[id];
            if !n.up {
                Err(MemoryError::Down(id).into())
            } else if !n.primary {
                Err(MemoryError::ReadOnly(id).into())
            } else {
                Ok(lsn_of(sim.log.len()))
            }
        })
    }
}
