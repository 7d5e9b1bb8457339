//! The metrics this crate exports through the [`metrics`] facade.
//!
//! [`CapacityPlanner::report`](crate::CapacityPlanner::report) records them
//! for every metric of the report (call [`record_report`] yourself for a
//! report built another way). The `metric` label is the planner's metric
//! name: keep those few and fixed. [`describe`] hands the help texts below
//! to the recorder.
//!
//! | metric | kind | labels | meaning |
//! |---|---|---|---|
//! | `sysmanage_capacity_current` | gauge | `metric` | the metric's latest value, in its own unit |
//! | `sysmanage_capacity_limit` | gauge | `metric` | the metric's limit (absent without one) |
//! | `sysmanage_capacity_forecast` | gauge | `metric` | the point forecast at the end of the horizon |
//! | `sysmanage_capacity_forecast_upper` | gauge | `metric` | the upper bound of the prediction interval there |
//! | `sysmanage_capacity_time_to_limit_seconds` | gauge | `metric`, `estimate` | time until the forecast crosses the limit: `estimate` `mean` (the point forecast) or `bound` (the interval's bound); 0 when already over, +Inf when not within the horizon; absent without a limit |
//! | `sysmanage_capacity_health` | gauge | — | the report's health: 0 healthy, 1 warning, 2 critical |
//! | `sysmanage_capacity_skipped_metrics` | gauge | — | metrics the last report could not forecast |

use sysmanage_core::telemetry::{MetricDef, MetricKind};

use crate::report::{CapacityHealth, CapacityReport, TimeToLimit};

/// Latest value by metric.
pub const CURRENT: &str = "sysmanage_capacity_current";
/// Limit by metric.
pub const LIMIT: &str = "sysmanage_capacity_limit";
/// Point forecast at the horizon by metric.
pub const FORECAST: &str = "sysmanage_capacity_forecast";
/// Upper interval bound at the horizon by metric.
pub const FORECAST_UPPER: &str = "sysmanage_capacity_forecast_upper";
/// Time to limit by metric and estimate.
pub const TIME_TO_LIMIT: &str = "sysmanage_capacity_time_to_limit_seconds";
/// Report health.
pub const HEALTH: &str = "sysmanage_capacity_health";
/// Metrics skipped by the last report.
pub const SKIPPED: &str = "sysmanage_capacity_skipped_metrics";

/// Every metric of this crate, with its labels and meaning.
pub const METRICS: &[MetricDef] = &[
    MetricDef::new(
        CURRENT,
        MetricKind::Gauge,
        &["metric"],
        "The metric's latest value, in its own unit.",
    ),
    MetricDef::new(LIMIT, MetricKind::Gauge, &["metric"], "The metric's limit."),
    MetricDef::new(
        FORECAST,
        MetricKind::Gauge,
        &["metric"],
        "The point forecast at the end of the horizon.",
    ),
    MetricDef::new(
        FORECAST_UPPER,
        MetricKind::Gauge,
        &["metric"],
        "The upper bound of the prediction interval at the end of the horizon.",
    ),
    MetricDef::new(
        TIME_TO_LIMIT,
        MetricKind::Gauge,
        &["metric", "estimate"],
        "Time until the forecast (estimate=mean) or its bound (estimate=bound) crosses the limit; +Inf when not within the horizon.",
    ),
    MetricDef::new(
        HEALTH,
        MetricKind::Gauge,
        &[],
        "The report's health: 0 healthy, 1 warning, 2 critical.",
    ),
    MetricDef::new(
        SKIPPED,
        MetricKind::Gauge,
        &[],
        "Metrics the last report could not forecast.",
    ),
];

/// Describes [`METRICS`] to the installed recorder.
pub fn describe() {
    sysmanage_core::telemetry::describe(METRICS);
}

/// Records `report`'s figures as gauges.
pub fn record_report(report: &CapacityReport) {
    for f in &report.forecasts {
        let m = || f.metric.clone();
        metrics::gauge!(CURRENT, "metric" => m()).set(f.current_value);
        if let Some(limit) = f.limit {
            metrics::gauge!(LIMIT, "metric" => m()).set(limit);
        }
        if let Some(last) = f.forecasts.last() {
            metrics::gauge!(FORECAST, "metric" => m()).set(last.point);
            metrics::gauge!(FORECAST_UPPER, "metric" => m()).set(last.upper);
        }
        for (estimate, t) in [
            ("mean", &f.time_to_limit),
            ("bound", &f.time_to_limit_bound),
        ] {
            if let Some(secs) = seconds_to_limit(t) {
                metrics::gauge!(TIME_TO_LIMIT, "metric" => m(), "estimate" => estimate).set(secs);
            }
        }
    }
    metrics::gauge!(HEALTH).set(match report.capacity_health {
        CapacityHealth::Healthy => 0.0,
        CapacityHealth::Warning => 1.0,
        CapacityHealth::Critical => 2.0,
    });
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!(SKIPPED).set(report.skipped.len() as f64);
}

/// The gauge value of a time to limit: seconds, 0 when already over, +Inf
/// beyond the horizon, `None` without a limit.
fn seconds_to_limit(t: &TimeToLimit) -> Option<f64> {
    match t {
        TimeToLimit::NoLimit => None,
        TimeToLimit::AlreadyOver => Some(0.0),
        TimeToLimit::Within { hours, .. } => Some(hours * 3600.0),
        TimeToLimit::NotWithinHorizon { .. } => Some(f64::INFINITY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions_and_the_docs_list_every_metric() {
        assert_eq!(
            sysmanage_core::telemetry::check(METRICS, include_str!("telemetry.rs")),
            Ok(())
        );
    }

    #[test]
    fn time_to_limit_gauges() {
        assert_eq!(seconds_to_limit(&TimeToLimit::NoLimit), None);
        assert_eq!(seconds_to_limit(&TimeToLimit::AlreadyOver), Some(0.0));
        assert_eq!(
            seconds_to_limit(&TimeToLimit::NotWithinHorizon {
                horizon_hours: 24.0
            }),
            Some(f64::INFINITY)
        );
    }
}
