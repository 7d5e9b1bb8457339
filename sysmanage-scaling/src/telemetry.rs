//! The metrics this crate exports through the [`metrics`] facade.
//!
//! A running [`Controller`](crate::Controller) records them after each pass,
//! labelled with the scaler's name (keep names few and fixed: they are
//! label values). The scalers' `decide` functions record nothing: they stay
//! pure. [`describe`] hands the help texts below to the recorder.
//!
//! | metric | kind | labels | meaning |
//! |---|---|---|---|
//! | `sysmanage_scaling_current_replicas` | gauge | `scaler` | replicas the target had when the last decision was made |
//! | `sysmanage_scaling_desired_replicas` | gauge | `scaler` | replicas the last decision asked for |
//! | `sysmanage_scaling_decisions_total` | counter | `scaler`, `action` | decisions made (`action`: `scale_up`, `scale_down`, `none`) |
//! | `sysmanage_scaling_decision_reasons_total` | counter | `scaler`, `reason` | reasons that shaped decisions, with Kubernetes' condition names (`ScaleUpLimit`, `ScaleDownStabilized`, `ForecastUsed`, …) |
//! | `sysmanage_scaling_actuations_total` | counter | `scaler`, `result` | calls to scale the target (`ok`, `error`) |
//! | `sysmanage_scaling_errors_total` | counter | `scaler`, `stage` | failed stages of a pass (`stage`: `metrics` — the pass goes on with every reading unavailable —, `target`, `decision`) |
//! | `sysmanage_scaling_forecast` | gauge | `scaler` | the point forecast the last decision considered |
//! | `sysmanage_scaling_forecast_replicas` | gauge | `scaler` | replicas that forecast asks for |
//! | `sysmanage_scaling_forecast_error_ratio` | gauge | `scaler` | the forecaster's measured recent relative error (forecast vs actual) |
//! | `sysmanage_scaling_flap_reversals` | gauge | `scaler` | direction reversals counted against the flap budget now |
//! | `sysmanage_scaling_flap_budget_reversals` | gauge | `scaler` | the flap budget's maximum reversals |

use sysmanage_core::telemetry::{MetricDef, MetricKind};

use crate::Decision;

/// Current replicas by scaler.
pub const CURRENT_REPLICAS: &str = "sysmanage_scaling_current_replicas";
/// Desired replicas by scaler.
pub const DESIRED_REPLICAS: &str = "sysmanage_scaling_desired_replicas";
/// Decisions by scaler and action.
pub const DECISIONS: &str = "sysmanage_scaling_decisions_total";
/// Decision reasons by scaler and reason.
pub const DECISION_REASONS: &str = "sysmanage_scaling_decision_reasons_total";
/// Actuations by scaler and result.
pub const ACTUATIONS: &str = "sysmanage_scaling_actuations_total";
/// Failed passes by scaler and stage.
pub const ERRORS: &str = "sysmanage_scaling_errors_total";
/// The forecast considered.
pub const FORECAST: &str = "sysmanage_scaling_forecast";
/// Replicas the forecast asks for.
pub const FORECAST_REPLICAS: &str = "sysmanage_scaling_forecast_replicas";
/// The forecaster's recent relative error.
pub const FORECAST_ERROR: &str = "sysmanage_scaling_forecast_error_ratio";
/// Reversals counted against the flap budget.
pub const FLAP_REVERSALS: &str = "sysmanage_scaling_flap_reversals";
/// The flap budget.
pub const FLAP_BUDGET: &str = "sysmanage_scaling_flap_budget_reversals";

/// Every metric of this crate, with its labels and meaning.
pub const METRICS: &[MetricDef] = &[
    MetricDef::new(
        CURRENT_REPLICAS,
        MetricKind::Gauge,
        &["scaler"],
        "Replicas the target had when the last decision was made.",
    ),
    MetricDef::new(
        DESIRED_REPLICAS,
        MetricKind::Gauge,
        &["scaler"],
        "Replicas the last decision asked for.",
    ),
    MetricDef::new(
        DECISIONS,
        MetricKind::Counter,
        &["scaler", "action"],
        "Decisions made (action: scale_up, scale_down, none).",
    ),
    MetricDef::new(
        DECISION_REASONS,
        MetricKind::Counter,
        &["scaler", "reason"],
        "Reasons that shaped decisions (Kubernetes condition names).",
    ),
    MetricDef::new(
        ACTUATIONS,
        MetricKind::Counter,
        &["scaler", "result"],
        "Calls to scale the target (ok, error).",
    ),
    MetricDef::new(
        ERRORS,
        MetricKind::Counter,
        &["scaler", "stage"],
        "Failed stages of a pass (stage: metrics, target, decision).",
    ),
    MetricDef::new(
        FORECAST,
        MetricKind::Gauge,
        &["scaler"],
        "The point forecast the last decision considered.",
    ),
    MetricDef::new(
        FORECAST_REPLICAS,
        MetricKind::Gauge,
        &["scaler"],
        "Replicas the forecast asks for.",
    ),
    MetricDef::new(
        FORECAST_ERROR,
        MetricKind::Gauge,
        &["scaler"],
        "The forecaster's measured recent relative error (forecast vs actual).",
    ),
    MetricDef::new(
        FLAP_REVERSALS,
        MetricKind::Gauge,
        &["scaler"],
        "Direction reversals counted against the flap budget now.",
    ),
    MetricDef::new(
        FLAP_BUDGET,
        MetricKind::Gauge,
        &["scaler"],
        "The flap budget's maximum reversals.",
    ),
];

/// Describes [`METRICS`] to the installed recorder.
pub fn describe() {
    sysmanage_core::telemetry::describe(METRICS);
}

/// Records one decision of `scaler` (and its flap budget use).
pub(crate) fn record_decision(scaler: &str, d: &Decision, flap: Option<(u32, u32)>) {
    let s = || scaler.to_owned();
    metrics::gauge!(CURRENT_REPLICAS, "scaler" => s()).set(f64::from(d.current_replicas));
    metrics::gauge!(DESIRED_REPLICAS, "scaler" => s()).set(f64::from(d.desired_replicas));
    metrics::counter!(DECISIONS, "scaler" => s(), "action" => d.action.label()).increment(1);
    for r in &d.reasons {
        metrics::counter!(DECISION_REASONS, "scaler" => s(), "reason" => r.as_str()).increment(1);
    }
    if let Some(f) = &d.forecast {
        metrics::gauge!(FORECAST, "scaler" => s()).set(f.value);
        metrics::gauge!(FORECAST_REPLICAS, "scaler" => s()).set(f64::from(f.replicas));
        if let Some(e) = f.recent_error {
            metrics::gauge!(FORECAST_ERROR, "scaler" => s()).set(e);
        }
    }
    if let Some((used, max)) = flap {
        metrics::gauge!(FLAP_REVERSALS, "scaler" => s()).set(f64::from(used));
        metrics::gauge!(FLAP_BUDGET, "scaler" => s()).set(f64::from(max));
    }
}

/// Counts an actuation.
pub(crate) fn record_actuation(scaler: &str, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    metrics::counter!(ACTUATIONS, "scaler" => scaler.to_owned(), "result" => result).increment(1);
}

/// Counts a failed stage of a pass.
pub(crate) fn record_error(scaler: &str, stage: &'static str) {
    metrics::counter!(ERRORS, "scaler" => scaler.to_owned(), "stage" => stage).increment(1);
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
}
