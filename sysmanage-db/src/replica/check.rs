//! [`RouterCheck`]: the replica router as a [`HealthCheck`] for a
//! [`HealthRegistry`](sysmanage_core::HealthRegistry).

use std::time::Duration;

use sysmanage_core::{CheckResult, Criticality, HealthCheck};

use super::config::Role;
use super::pool::NodePool;
use super::router::ReplicaRouter;
use super::status::{NodeState, RouterStatus};

/// The replica router's health from what its monitor knows, without a
/// query of its own:
///
/// - **unhealthy** when there is no primary, or the primary is banned
///   (writes fail);
/// - **degraded** when fewer replicas serve reads than
///   [`min_serving`](Self::min_serving) (reads fall back to the primary),
///   or a serving replica lags more than [`max_lag`](Self::max_lag);
/// - **healthy** otherwise.
///
/// Details: `primary`, `serving_replicas`, `replicas`, `max_lag_bytes`,
/// `max_lag_seconds`.
///
/// # Examples
/// ```
/// use sysmanage_core::{HealthCheck, HealthStatus};
/// use sysmanage_db::replica::{MemoryCluster, NodeSpec, ReplicaRouter, RouterCheck};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sysmanage_db::Error> {
/// let cluster = MemoryCluster::new();
/// let router = ReplicaRouter::builder()
///     .primary(NodeSpec::new("primary", cluster.add_primary()))
///     .replica(NodeSpec::new("replica", cluster.add_replica()))
///     .build()
///     .await?;
/// router.probe_all().await;
/// let check = RouterCheck::new("postgres", router);
/// assert_eq!(check.check().await.status, HealthStatus::Healthy);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RouterCheck<P> {
    name: String,
    router: ReplicaRouter<P>,
    criticality: Criticality,
    min_serving: usize,
    max_lag: Option<Duration>,
}

impl<P: NodePool> RouterCheck<P> {
    /// A critical check named `name`, degraded below one serving replica.
    pub fn new(name: impl Into<String>, router: ReplicaRouter<P>) -> Self {
        RouterCheck {
            name: name.into(),
            router,
            criticality: Criticality::Critical,
            min_serving: 1,
            max_lag: None,
        }
    }

    /// Degraded when fewer than `n` replicas serve reads (default 1; 0
    /// never degrades for that).
    pub fn min_serving(mut self, n: usize) -> Self {
        self.min_serving = n;
        self
    }

    /// Degraded when a serving replica's replay lag exceeds `lag`.
    pub fn max_lag(mut self, lag: Duration) -> Self {
        self.max_lag = Some(lag);
        self
    }

    /// Whether readiness depends on it (default: critical).
    pub fn criticality(mut self, c: Criticality) -> Self {
        self.criticality = c;
        self
    }
}

/// The check's verdict on a router status (a pure function).
pub(crate) fn judge(
    status: &RouterStatus,
    min_serving: usize,
    max_lag: Option<Duration>,
) -> CheckResult {
    let primary = status
        .nodes
        .iter()
        .find(|n| n.is_primary)
        .filter(|n| n.state == NodeState::Healthy);
    let replicas: Vec<_> = status.nodes.iter().filter(|n| !n.is_primary).collect();
    // As the router selects: a healthy standby with weight, on the
    // primary's history (a diverged or draining node serves no read).
    let serving: Vec<_> = replicas
        .iter()
        .filter(|n| {
            n.state == NodeState::Healthy
                && n.role == Role::Replica
                && n.weight > 0.0
                && n.history.on_history()
        })
        .collect();
    let max_lag_bytes = serving.iter().filter_map(|n| n.lag_bytes).max();
    let max_lag_secs = serving
        .iter()
        .filter_map(|n| n.lag_seconds)
        .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));
    let result = match primary {
        None => CheckResult::unhealthy(match &status.primary {
            None => "no primary".to_owned(),
            Some(p) => format!("primary {p} is banned"),
        }),
        Some(_) if serving.len() < min_serving => CheckResult::degraded(format!(
            "{} of {} replicas serve reads (want {min_serving}); reads fall back to the primary",
            serving.len(),
            replicas.len()
        )),
        Some(_) => match (max_lag, max_lag_secs) {
            (Some(limit), Some(lag)) if lag > limit.as_secs_f64() => {
                CheckResult::degraded(format!(
                    "a replica lags {lag:.1} s (limit {:.1} s)",
                    limit.as_secs_f64()
                ))
            }
            _ => CheckResult::healthy(),
        },
    };
    let mut result = result
        .with_detail("primary", status.primary.as_deref().unwrap_or("none"))
        .with_detail("serving_replicas", serving.len())
        .with_detail("replicas", replicas.len());
    if let Some(b) = max_lag_bytes {
        result = result.with_detail("max_lag_bytes", b);
    }
    if let Some(s) = max_lag_secs {
        result = result.with_detail("max_lag_seconds", format!("{s:.3}"));
    }
    result
}

#[async_trait::async_trait]
impl<P: NodePool> HealthCheck for RouterCheck<P> {
    fn name(&self) -> &str {
        &self.name
    }

    fn criticality(&self) -> Criticality {
        self.criticality
    }

    async fn check(&self) -> CheckResult {
        judge(&self.router.status(), self.min_serving, self.max_lag)
    }
}
