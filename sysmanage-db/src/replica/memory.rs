//! An in-memory cluster: a primary with a write log and replicas that replay
//! it when told to. It exercises every routing decision without servers.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sysmanage_core::BoxError;

use super::lsn::Lsn;
use super::pool::{NodePool, Probe};
use super::timeline::{TimelineHistory, TimelineId, WalToken};

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

/// One timeline: the history it inherited from its parent up to the switch
/// point, then its own writes.
#[derive(Debug, Default)]
struct TimelineLog {
    /// (parent timeline index, records of the parent's history it kept).
    parent: Option<(usize, usize)>,
    log: Vec<(String, String)>,
}

#[derive(Debug)]
struct Sim {
    /// Index `i` is timeline `i + 1`.
    timelines: Vec<TimelineLog>,
    nodes: Vec<SimNode>,
}

impl Default for Sim {
    fn default() -> Self {
        Self {
            timelines: vec![TimelineLog::default()],
            nodes: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct SimNode {
    up: bool,
    primary: bool,
    paused: bool,
    /// Streams from the cluster's newest primary (when its history allows).
    streaming: bool,
    /// The timeline (index) it is on and the records of that timeline's
    /// history it has applied.
    timeline: usize,
    applied: usize,
}

impl Sim {
    /// The newest timeline a running primary writes (the cluster's
    /// current history).
    fn current(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.primary && n.up)
            .map(|n| n.timeline)
            .max()
            .unwrap_or(self.timelines.len() - 1)
    }

    /// Where timeline `history`'s history leaves timeline `tli`
    /// (`usize::MAX` when it is the history's own), or `None` when `tli` is
    /// not part of it.
    fn end_of(&self, history: usize, tli: usize) -> Option<usize> {
        let mut at = history;
        let mut end = usize::MAX;
        loop {
            if at == tli {
                return Some(end);
            }
            let (parent, kept) = self.timelines[at].parent?;
            end = kept;
            at = parent;
        }
    }

    fn history(&self, tli: usize) -> TimelineHistory {
        let mut ancestors = Vec::new();
        let mut at = tli;
        while let Some((parent, kept)) = self.timelines[at].parent {
            ancestors.push(format!("{}\t{}\tpromoted", parent + 1, lsn_of(kept)));
            at = parent;
        }
        ancestors.reverse();
        TimelineHistory::parse(timeline_id(tli), &ancestors.join("\n"))
            .unwrap_or_else(|_| TimelineHistory::root(timeline_id(tli)))
    }
}

fn timeline_id(index: usize) -> TimelineId {
    u32::try_from(index + 1)
        .ok()
        .and_then(TimelineId::new)
        .unwrap_or(TimelineId::MAX)
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
        let current = sim.current();
        f.debug_struct("MemoryCluster")
            .field("timeline", &(current + 1))
            .field("writes", &sim.timelines[current].log.len())
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
        let timeline = sim.current();
        let applied = sim.timelines[timeline].log.len();
        sim.nodes.push(SimNode {
            up: true,
            primary,
            paused: false,
            streaming: true,
            timeline,
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

    /// Every running, streaming replica whose replay is not paused catches
    /// up with the newest primary's history, following a timeline switch
    /// when what it replayed is part of that history. A replica that
    /// replayed past the point where the history left its timeline has
    /// diverged and stays where it is (in PostgreSQL it needs a rewind).
    pub fn replicate(&self) {
        let mut sim = lock(&self.sim);
        let current = sim.current();
        let end = sim.timelines[current].log.len();
        let follow: Vec<bool> = sim
            .nodes
            .iter()
            .map(|n| {
                n.up && !n.paused
                    && !n.primary
                    && n.streaming
                    && sim
                        .end_of(current, n.timeline)
                        .is_some_and(|e| n.applied <= e)
            })
            .collect();
        for (n, follow) in sim.nodes.iter_mut().zip(follow) {
            if follow {
                n.timeline = current;
                n.applied = end;
            }
        }
    }

    /// The WAL position of the end of the newest primary's history.
    pub fn current_lsn(&self) -> Lsn {
        let sim = lock(&self.sim);
        lsn_of(sim.timelines[sim.current()].log.len())
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

    /// Writes `key = value`; returns the WAL position after the write.
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
            let log = &mut sim.timelines[n.timeline].log;
            log.push((key.to_owned(), value.to_owned()));
            let len = log.len();
            sim.nodes[id].applied = len;
            Ok(lsn_of(len))
        })
    }

    fn data(sim: &Sim, id: usize) -> Result<&[(String, String)], MemoryError> {
        let n = &sim.nodes[id];
        if !n.up {
            return Err(MemoryError::Down(id));
        }
        let log = &sim.timelines[n.timeline].log;
        Ok(&log[..n.applied.min(log.len())])
    }

    /// The latest value of `key` this node has applied.
    ///
    /// # Errors
    /// [`MemoryError::Down`].
    pub fn get(&self, key: &str) -> Result<Option<String>, MemoryError> {
        self.with(|sim, id| {
            Ok(Self::data(sim, id)?
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
        self.with(|sim, id| Ok(Self::data(sim, id)?.iter().cloned().collect()))
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

    /// Stops or starts the node's WAL receiver: a standby whose upstream
    /// died stops streaming; re-pointing it at the new primary starts it
    /// again. A replica that does not stream keeps what it has.
    pub fn set_streaming(&self, streaming: bool) {
        self.with(|sim, id| sim.nodes[id].streaming = streaming);
    }

    /// Makes this node writable on a new timeline, like `pg_ctl promote`:
    /// the new timeline's history is this node's up to where its replay
    /// ended. Writes it had not replayed are not part of it; replicas that
    /// had applied more have diverged and never follow it (see
    /// [`MemoryCluster::replicate`] and [`resync`](Self::resync)).
    pub fn promote(&self) {
        self.with(|sim, id| {
            let (parent, kept) = (sim.nodes[id].timeline, sim.nodes[id].applied);
            let log = sim.timelines[parent].log[..kept].to_vec();
            sim.timelines.push(TimelineLog {
                parent: Some((parent, kept)),
                log,
            });
            let n = &mut sim.nodes[id];
            n.timeline = sim.timelines.len() - 1;
            n.primary = true;
            n.paused = false;
        });
    }

    /// Rebuilds a (diverged) replica from the newest primary's history,
    /// like `pg_rewind` or a new base backup: it keeps what it shares with
    /// that history and follows it again.
    pub fn resync(&self) {
        self.with(|sim, id| {
            let current = sim.current();
            let common = sim.end_of(current, sim.nodes[id].timeline).unwrap_or(0);
            let n = &mut sim.nodes[id];
            n.applied = n.applied.min(common);
            n.timeline = current;
            n.streaming = true;
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

    /// The node's timeline.
    pub fn timeline(&self) -> TimelineId {
        self.with(|sim, id| timeline_id(sim.nodes[id].timeline))
    }
}

impl NodePool for MemoryNode {
    /// Reports timelines as PostgreSQL does to a role with
    /// `pg_read_all_stats`: a standby's exact timeline only while it
    /// streams, its lower bound (here: the same timeline) always.
    async fn probe(&self) -> Result<Probe, BoxError> {
        self.with(|sim, id| {
            let n = &sim.nodes[id];
            if !n.up {
                return Err(MemoryError::Down(id).into());
            }
            let tli = timeline_id(n.timeline);
            Ok(if n.primary {
                Probe::primary(lsn_of(sim.timelines[n.timeline].log.len())).with_timeline(tli)
            } else {
                let p = Probe::replica(lsn_of(n.applied), None)
                    .with_streaming(n.streaming)
                    .with_min_timeline(tli);
                if n.streaming { p.with_timeline(tli) } else { p }
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

    async fn wal_token(&self) -> Result<WalToken, BoxError> {
        self.with(|sim, id| {
            let n = &sim.nodes[id];
            if !n.up {
                Err(MemoryError::Down(id).into())
            } else if !n.primary {
                Err(MemoryError::ReadOnly(id).into())
            } else {
                Ok(WalToken::new(
                    lsn_of(sim.timelines[n.timeline].log.len()),
                    timeline_id(n.timeline),
                ))
            }
        })
    }

    async fn timeline_history(
        &self,
        timeline: TimelineId,
    ) -> Result<Option<TimelineHistory>, BoxError> {
        self.with(|sim, id| {
            if !sim.nodes[id].up {
                return Err(MemoryError::Down(id).into());
            }
            let index = timeline.get() as usize - 1;
            Ok((index < sim.timelines.len()).then(|| sim.history(index)))
        })
    }
}
