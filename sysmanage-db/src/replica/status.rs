//! Serialisable snapshots of the router and its nodes.

use std::sync::atomic::Ordering;

use sysmanage_core::Timestamp;

use super::config::{Role, Strategy};
use super::health::BanReason;
use super::lsn::Lsn;
use super::node::{STREAMING_NO, STREAMING_YES, role_from};
use super::pool::NodePool;
use super::router::ReplicaRouter;
use super::timeline::HistoryRelation;

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
    /// Excluded from [`Consistency::Any`](super::Consistency::Any) reads for lagging.
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
    /// The node's timeline, when known (for a standby, the one it receives
    /// or a lower bound of it; see `timeline_exact`).
    pub timeline: Option<u32>,
    /// Whether `timeline` is exact.
    pub timeline_exact: bool,
    /// Where a replica stands on the primary's timeline history; a
    /// replica that is not [`on_history`](HistoryRelation::on_history)
    /// serves no reads.
    pub history: HistoryRelation,
    /// Whether a standby's WAL receiver streams; `None` when unknown.
    pub streaming: Option<bool>,
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
    /// The primary's timeline, when the backend reports timelines.
    pub timeline: Option<u32>,
    /// Times a replica was found diverged from the primary's history
    /// (event `replica.diverged`).
    pub divergences: u64,
    /// Every node.
    pub nodes: Vec<NodeStatus>,
}

impl RouterStatus {
    /// The status of node `name`.
    pub fn node(&self, name: &str) -> Option<&NodeStatus> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

impl<P: NodePool> ReplicaRouter<P> {
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
                    timeline: std::num::NonZeroU32::new(node.timeline.load(Ordering::Relaxed))
                        .map(std::num::NonZeroU32::get),
                    timeline_exact: node.timeline_exact.load(Ordering::Relaxed),
                    history: node.relation(),
                    streaming: match node.streaming.load(Ordering::Relaxed) {
                        STREAMING_YES => Some(true),
                        STREAMING_NO => Some(false),
                        _ => None,
                    },
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
            timeline: inner
                .primary_timeline()
                .timeline()
                .map(std::num::NonZeroU32::get),
            divergences: inner.divergences.load(Ordering::Relaxed),
            nodes,
        }
    }
}
