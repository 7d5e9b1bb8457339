//! [`FreshnessCheck`]: whether the planner still receives data, as a
//! [`HealthCheck`] for a [`HealthRegistry`](sysmanage_core::HealthRegistry).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sysmanage_core::{CheckResult, Criticality, HealthCheck, Timestamp};

use crate::planner::{MetricStatus, Planner};

/// The planner's data freshness:
///
/// - **unhealthy** when no metric has a sample (forecasts would be empty);
/// - **degraded** when a metric that had samples has none newer than
///   the `max_age` given to [`new`](Self::new) (its collector stopped; its forecast ages),
///   naming those metrics;
/// - **healthy** otherwise. Registered metrics that never received a sample
///   are listed in the details (`never_sampled`), not judged.
///
/// Details: `metrics`, `stale`, `newest_age_seconds` (the stalest metric's).
///
/// # Examples
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use sysmanage_capacity::{CapacityPlanner, FreshnessCheck, Planner, PlannerConfig};
/// use sysmanage_core::{HealthCheck, HealthStatus, Timestamp};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sysmanage_capacity::Error> {
/// let planner = Arc::new(Mutex::new(Planner::sysmanage(PlannerConfig::default())?));
/// planner.lock().unwrap().record("cpu_utilization", Timestamp::now(), 0.4)?;
/// let check = FreshnessCheck::new("capacity", planner.clone(), Duration::from_secs(600));
/// assert_eq!(check.check().await.status, HealthStatus::Healthy);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FreshnessCheck {
    name: String,
    planner: Arc<Mutex<Planner>>,
    max_age: Duration,
    criticality: Criticality,
}

impl FreshnessCheck {
    /// A non-critical check named `name`: stale after `max_age` without a
    /// sample.
    pub fn new(name: impl Into<String>, planner: Arc<Mutex<Planner>>, max_age: Duration) -> Self {
        FreshnessCheck {
            name: name.into(),
            planner,
            max_age,
            criticality: Criticality::NonCritical,
        }
    }

    /// Whether readiness depends on it (default: non-critical).
    pub fn criticality(mut self, c: Criticality) -> Self {
        self.criticality = c;
        self
    }
}

/// The verdict on the planner's metrics at `now` (a pure function).
pub(crate) fn judge(metrics: &[MetricStatus], now: Timestamp, max_age: Duration) -> CheckResult {
    let sampled: Vec<(&str, Duration)> = metrics
        .iter()
        .filter_map(|m| Some((m.metric.as_str(), now.saturating_since(m.newest?))))
        .collect();
    let never: Vec<&str> = metrics
        .iter()
        .filter(|m| m.newest.is_none())
        .map(|m| m.metric.as_str())
        .collect();
    let stale: Vec<&str> = sampled
        .iter()
        .filter(|(_, age)| *age > max_age)
        .map(|(m, _)| *m)
        .collect();
    let oldest = sampled.iter().map(|(_, a)| *a).max();
    let result = if sampled.is_empty() {
        CheckResult::unhealthy("no metric has data")
    } else if !stale.is_empty() {
        CheckResult::degraded(format!(
            "no sample for over {:.0} s: {}",
            max_age.as_secs_f64(),
            stale.join(", ")
        ))
    } else {
        CheckResult::healthy()
    };
    let mut result = result
        .with_detail("metrics", sampled.len())
        .with_detail("stale", stale.len());
    if let Some(a) = oldest {
        result = result.with_detail("newest_age_seconds", format!("{:.3}", a.as_secs_f64()));
    }
    if !never.is_empty() {
        result = result.with_detail("never_sampled", never.join(", "));
    }
    result
}

#[async_trait::async_trait]
impl HealthCheck for FreshnessCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn criticality(&self) -> Criticality {
        self.criticality
    }

    async fn check(&self) -> CheckResult {
        let status = self
            .planner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .status();
        judge(&status, Timestamp::now(), self.max_age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::TrendLabel;
    use sysmanage_core::HealthStatus;

    fn m(name: &str, newest: Option<i64>) -> MetricStatus {
        MetricStatus {
            metric: name.to_owned(),
            samples: usize::from(newest.is_some()),
            oldest: newest.map(Timestamp::from_secs),
            newest: newest.map(Timestamp::from_secs),
            trend: TrendLabel::Stable,
        }
    }

    #[test]
    fn verdicts() {
        let now = Timestamp::from_secs(10_000);
        let max = Duration::from_secs(600);
        assert_eq!(judge(&[], now, max).status, HealthStatus::Unhealthy);
        assert_eq!(
            judge(&[m("cpu", None)], now, max).status,
            HealthStatus::Unhealthy
        );
        let fresh = judge(&[m("cpu", Some(9_900)), m("disk", None)], now, max);
        assert_eq!(fresh.status, HealthStatus::Healthy);
        assert_eq!(fresh.details["never_sampled"], "disk");
        let stale = judge(&[m("cpu", Some(9_900)), m("mem", Some(1_000))], now, max);
        assert_eq!(stale.status, HealthStatus::Degraded);
        assert!(stale.reason.unwrap().contains("mem"));
    }
}
