//! [`ControllerCheck`]: a running [`Controller`](crate::Controller) as a
//! [`HealthCheck`] for a [`HealthRegistry`](sysmanage_core::HealthRegistry).

use std::time::Duration;

use sysmanage_core::{CheckResult, Criticality, HealthCheck, Timestamp};

use crate::control::ControllerHandle;

/// Whether the control loop keeps deciding:
///
/// - **unhealthy** once the controller shut down, or when its last decision
///   is older than [`max_age`](Self::max_age) (default three intervals: the
///   loop is stuck, e.g. on a metrics source or target that hangs);
/// - **degraded** before its first decision;
/// - **healthy** otherwise.
///
/// Details: `scaler`, `last_decision_age_seconds`, `desired_replicas`.
#[derive(Debug, Clone)]
pub struct ControllerCheck {
    name: String,
    handle: ControllerHandle,
    criticality: Criticality,
    max_age: Duration,
}

impl ControllerCheck {
    /// A non-critical check named `name` (a stuck autoscaler does not make
    /// the service unable to serve), stale after three intervals.
    pub fn new(name: impl Into<String>, handle: ControllerHandle) -> Self {
        let max_age = handle.interval().saturating_mul(3);
        ControllerCheck {
            name: name.into(),
            handle,
            criticality: Criticality::NonCritical,
            max_age,
        }
    }

    /// How old the last decision may be.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// Whether readiness depends on it (default: non-critical).
    pub fn criticality(mut self, c: Criticality) -> Self {
        self.criticality = c;
        self
    }
}

/// The verdict on the last decision's time (a pure function).
pub(crate) fn judge(
    last: Option<(Timestamp, u32)>,
    now: Timestamp,
    max_age: Duration,
) -> CheckResult {
    match last {
        None => CheckResult::degraded("no decision yet"),
        Some((at, desired)) => {
            let age = now.saturating_since(at);
            let r = if age > max_age {
                CheckResult::unhealthy(format!(
                    "last decision {:.0} s ago (limit {:.0} s)",
                    age.as_secs_f64(),
                    max_age.as_secs_f64()
                ))
            } else {
                CheckResult::healthy()
            };
            r.with_detail(
                "last_decision_age_seconds",
                format!("{:.3}", age.as_secs_f64()),
            )
            .with_detail("desired_replicas", desired)
        }
    }
}

#[async_trait::async_trait]
impl HealthCheck for ControllerCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn criticality(&self) -> Criticality {
        self.criticality
    }

    async fn check(&self) -> CheckResult {
        match self.handle.last_decision() {
            Ok(last) => judge(
                last.map(|d| (d.at, d.desired_replicas)),
                self.handle.now(),
                self.max_age,
            )
            .with_detail("scaler", self.handle.scaler_name()),
            Err(e) => CheckResult::unhealthy(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysmanage_core::HealthStatus;

    #[test]
    fn verdicts() {
        let t = Timestamp::from_secs(1_000);
        let max = Duration::from_secs(45);
        assert_eq!(judge(None, t, max).status, HealthStatus::Degraded);
        assert_eq!(
            judge(Some((t, 3)), t + Duration::from_secs(30), max).status,
            HealthStatus::Healthy
        );
        let stale = judge(Some((t, 3)), t + Duration::from_secs(60), max);
        assert_eq!(stale.status, HealthStatus::Unhealthy);
        assert_eq!(stale.details["desired_replicas"], "3");
    }
}
