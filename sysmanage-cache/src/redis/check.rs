//! [`ClusterCheck`]: a Redis Cluster as a [`HealthCheck`] for a
//! [`HealthRegistry`](sysmanage_core::HealthRegistry).

use sysmanage_core::{CheckResult, Criticality, HealthCheck};

use super::RedisCache;
use crate::stats::ClusterStats;
use crate::topology::RoutingSnapshot;

/// The number of hash slots of a Redis Cluster.
const SLOTS: u32 = 16_384;

/// The cluster's health as the cache sees it and as the cluster reports it
/// (`CLUSTER INFO`, `INFO` on every node):
///
/// - **unhealthy** when `cluster_state` is not `ok`, some slot is served by
///   no node (in `CLUSTER INFO` or in the cache's routing table), slots are
///   failing, or the cluster cannot be asked at all;
/// - **degraded** when some node does not answer or some slots are
///   possibly failing (`cluster_slots_pfail`);
/// - **healthy** otherwise.
///
/// Details: `cluster_state`, `slots_ok`, `slots_pfail`, `slots_fail`,
/// `nodes_up`, `nodes`, `routing_covers_all_slots`.
#[derive(Debug, Clone)]
pub struct ClusterCheck {
    name: String,
    cache: RedisCache,
    criticality: Criticality,
}

impl ClusterCheck {
    /// A critical check named `name` over `cache`.
    pub fn new(name: impl Into<String>, cache: RedisCache) -> Self {
        ClusterCheck {
            name: name.into(),
            cache,
            criticality: Criticality::Critical,
        }
    }

    /// Whether readiness depends on it (default: critical).
    pub fn criticality(mut self, c: Criticality) -> Self {
        self.criticality = c;
        self
    }
}

/// The verdict on what the cluster reports and the cache's routing table
/// (a pure function).
pub(crate) fn judge(stats: &ClusterStats, routing: &RoutingSnapshot) -> CheckResult {
    let covered = routing.covers_all_slots();
    let result = match &stats.cluster {
        None => CheckResult::unhealthy("no node answered CLUSTER INFO"),
        Some(info) if !info.state_ok => CheckResult::unhealthy("cluster_state is not ok"),
        Some(info) if info.slots_fail > 0 => {
            CheckResult::unhealthy(format!("{} slots failing", info.slots_fail))
        }
        Some(info) if info.slots_assigned < SLOTS || info.slots_ok + info.slots_pfail < SLOTS => {
            CheckResult::unhealthy(format!(
                "{} of {SLOTS} slots served",
                info.slots_ok + info.slots_pfail
            ))
        }
        Some(_) if !covered => {
            CheckResult::unhealthy("the cache's routing table leaves slots without a node")
        }
        Some(info) if info.slots_pfail > 0 => {
            CheckResult::degraded(format!("{} slots possibly failing", info.slots_pfail))
        }
        Some(_) if stats.healthy_nodes < stats.total_nodes => CheckResult::degraded(format!(
            "{} of {} nodes answer",
            stats.healthy_nodes, stats.total_nodes
        )),
        Some(_) => CheckResult::healthy(),
    };
    let mut result = result
        .with_detail("nodes_up", stats.healthy_nodes)
        .with_detail("nodes", stats.total_nodes)
        .with_detail("routing_covers_all_slots", covered);
    if let Some(info) = &stats.cluster {
        result = result
            .with_detail("cluster_state", if info.state_ok { "ok" } else { "fail" })
            .with_detail("slots_ok", info.slots_ok)
            .with_detail("slots_pfail", info.slots_pfail)
            .with_detail("slots_fail", info.slots_fail);
    }
    result
}

#[async_trait::async_trait]
impl HealthCheck for ClusterCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn criticality(&self) -> Criticality {
        self.criticality
    }

    async fn check(&self) -> CheckResult {
        match self.cache.cluster_stats().await {
            Ok(stats) => judge(&stats, &self.cache.routing()),
            Err(e) => CheckResult::unhealthy(format!("cluster unreachable: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ClusterInfo;
    use crate::topology::SlotOwner;
    use sysmanage_core::{HealthStatus, Timestamp};

    fn info(state: &str, ok: u32, pfail: u32, fail: u32) -> ClusterInfo {
        ClusterInfo::parse(&format!(
            "cluster_state:{state}\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:{ok}\r\n\
             cluster_slots_pfail:{pfail}\r\ncluster_slots_fail:{fail}\r\ncluster_known_nodes:6\r\n\
             cluster_size:3\r\ncluster_current_epoch:6\r\n"
        ))
        .unwrap()
    }

    fn routing(end: u16) -> RoutingSnapshot {
        RoutingSnapshot::new(
            vec![SlotOwner::new(0, end, "127.0.0.1:7000")],
            Timestamp::from_secs(0),
        )
    }

    #[test]
    fn verdicts() {
        let stats = |i| ClusterStats::new(Vec::new(), i, Timestamp::from_secs(0));
        let full = routing(16_383);
        assert_eq!(
            judge(&stats(Some(info("ok", 16_384, 0, 0))), &full).status,
            HealthStatus::Healthy
        );
        assert_eq!(
            judge(&stats(Some(info("ok", 16_000, 384, 0))), &full).status,
            HealthStatus::Degraded
        );
        for bad in [info("fail", 16_384, 0, 0), info("ok", 16_000, 0, 384)] {
            assert_eq!(
                judge(&stats(Some(bad)), &full).status,
                HealthStatus::Unhealthy
            );
        }
        assert_eq!(judge(&stats(None), &full).status, HealthStatus::Unhealthy);
        let partial = routing(8_000);
        let r = judge(&stats(Some(info("ok", 16_384, 0, 0))), &partial);
        assert_eq!(r.status, HealthStatus::Unhealthy);
    }
}
