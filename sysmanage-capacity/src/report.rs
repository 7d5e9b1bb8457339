//! Report types: per-metric forecasts, recommendations and overall health.
//!
//! Everything here is plain data with `serde` derives, so a report can be
//! served as JSON, stored, or diffed between runs.

use serde::{Deserialize, Serialize};
use sysmanage_core::{Forecast, Sample, Timestamp};

use crate::hygiene::DataQuality;
use crate::metric::{Direction, MetricKind, Unit};
use crate::model::ModelKind;
use crate::select::Selection;

/// When a metric reaches its limit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TimeToLimit {
    /// The metric has no limit.
    NoLimit,
    /// The current value is already at or beyond the limit.
    AlreadyOver,
    /// The forecast crosses the limit within the horizon.
    Within {
        /// Hours from `now` to the crossing (interpolated between grid points).
        hours: f64,
        /// When.
        at: Timestamp,
    },
    /// The forecast stays on the good side for the whole horizon.
    NotWithinHorizon {
        /// The horizon searched, in hours.
        horizon_hours: f64,
    },
}

impl TimeToLimit {
    /// Hours until the limit: `Some(0.0)` when already over, `None` when
    /// there is no limit or it is not reached within the horizon.
    pub fn hours(&self) -> Option<f64> {
        match self {
            Self::AlreadyOver => Some(0.0),
            Self::Within { hours, .. } => Some(*hours),
            Self::NoLimit | Self::NotWithinHorizon { .. } => None,
        }
    }
}

/// Direction of the recent trend, with hysteresis between runs.
///
/// The rule: the least-squares slope per day over the trend window (of the
/// one-season moving average once the window holds two seasons, so the
/// daily cycle does not bias it), relative to the limit (or to the mean
/// level without one), enters `increasing`/`decreasing` above
/// `trend_enter` (0.5 % of the limit a day) and returns to `stable` below
/// `trend_exit` (0.25 %). And the label agrees with the forecast: a metric
/// whose point forecast crosses its limit within the horizon is never
/// `stable`; it is `increasing` towards a ceiling (`decreasing` towards a
/// floor) whatever the slope says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TrendLabel {
    /// Rising faster than the entry threshold.
    Increasing,
    /// Falling faster than the entry threshold.
    Decreasing,
    /// Neither.
    #[default]
    Stable,
}

/// How soon to act.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Urgency {
    /// Only the prediction interval's bound crosses the limit soon: watch.
    Low,
    /// The point forecast crosses within the medium window (default 3 days).
    Medium,
    /// The point forecast crosses within the high window (default 1 day), or
    /// the metric is already over its limit.
    High,
}

/// Which forecast crossed the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitBasis {
    /// The current value.
    Current,
    /// The point forecast.
    Point,
    /// The interval's upper bound (lower for floor metrics).
    Bound,
}

/// Overall capacity health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CapacityHealth {
    /// No metric is forecast to reach its limit within the horizon.
    Healthy,
    /// Some metric will reach its limit within the horizon, none urgently.
    Warning,
    /// Some recommendation has high urgency.
    Critical,
}

/// The forecast of one metric and everything behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricForecast {
    /// Metric name.
    pub metric: String,
    /// Metric kind.
    pub kind: MetricKind,
    /// Which side of the limit is bad.
    pub direction: Direction,
    /// The limit, if any.
    pub limit: Option<f64>,
    /// Mean of the raw samples within one grid step of the newest sample
    /// (before outlier damping). "Already over" is decided on this value.
    pub current_value: f64,
    /// Max of the raw samples within one grid step of the newest sample.
    pub current_max: f64,
    /// Trend label (with hysteresis).
    pub trend: TrendLabel,
    /// Least-squares slope over the trend window, in units per day.
    pub slope_per_day: f64,
    /// `slope_per_day` relative to the limit (or to the mean level without one).
    pub relative_slope_per_day: f64,
    /// The model chosen and the holdout evidence.
    pub selection: Selection,
    /// Fitted parameters of the chosen model.
    pub parameters: Vec<(String, f64)>,
    /// Coverage of the intervals, e.g. 0.95.
    pub interval_level: f64,
    /// Time to limit of the point forecast.
    pub time_to_limit: TimeToLimit,
    /// Time to limit of the interval's bound (upper for ceilings, lower for floors).
    pub time_to_limit_bound: TimeToLimit,
    /// Typical peak above the bucket mean: the median, over the trend
    /// window, of each bucket's max minus its mean (0 for floors and for
    /// buckets of one sample).
    pub peak_excess: f64,
    /// Time to limit of the within-bucket peaks (ceilings): "already over"
    /// when the newest step's raw max is at or over the limit, else the
    /// point forecast raised by [`peak_excess`](Self::peak_excess). For
    /// floors it equals [`time_to_limit`](Self::time_to_limit). Reported as
    /// evidence; recommendations stay on the mean forecast and its bound.
    pub time_to_limit_peak: TimeToLimit,
    /// Forecasts over the horizon (at most a few hundred, evenly strided),
    /// clamped to the metric's physical bounds.
    pub forecasts: Vec<Forecast>,
    /// Forecast values that were clamped to physical bounds.
    pub clamped_values: usize,
    /// What hygiene found.
    pub data_quality: DataQuality,
    /// Grid step used, in seconds.
    pub step_secs: f64,
    /// SysManage-style confidence: `1 − relative holdout error`, clamped to `[0.1, 0.95]`.
    pub confidence: f64,
    /// Unit of the values (from the metric's spec).
    #[serde(default)]
    pub unit: Unit,
    /// The fitted history: bucket means after hygiene, clamped to the
    /// physical bounds, at most `max_report_points` (consecutive buckets
    /// averaged when there are more), oldest first. What charts draw.
    #[serde(default)]
    pub history: Vec<Sample>,
}

/// Why a recommendation was made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Evidence {
    /// The model behind the forecast.
    pub model: ModelKind,
    /// Its holdout mean absolute error.
    pub holdout_mae: Option<f64>,
    /// Interval coverage.
    pub interval_level: f64,
    /// `(lower, upper)` of the forecast at the crossing, if it crosses.
    pub interval_at_crossing: Option<(f64, f64)>,
    /// Data-quality flags, e.g. `"gaps_filled=3"`.
    pub data_quality: Vec<String>,
    /// Raw samples behind the forecast.
    pub samples: usize,
}

/// A recommended action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Recommendation {
    /// Metric name.
    pub metric: String,
    /// How soon to act.
    pub urgency: Urgency,
    /// Hours until the limit (0 when already over).
    pub time_to_limit_hours: f64,
    /// Which forecast crossed.
    pub basis: LimitBasis,
    /// Current value.
    pub current_value: f64,
    /// The limit.
    pub capacity_limit: f64,
    /// What to do.
    pub recommended_action: String,
    /// SysManage-style confidence in `[0.1, 0.95]`.
    pub confidence: f64,
    /// Why.
    pub evidence: Evidence,
}

/// A metric that could not be forecast, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SkippedMetric {
    /// Metric name.
    pub metric: String,
    /// Error label, e.g. `"insufficient_data"`.
    pub label: String,
    /// Error message.
    pub reason: String,
}

/// Report totals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReportSummary {
    /// Metrics forecast.
    pub total_metrics_monitored: usize,
    /// Metrics whose point forecast reaches the limit within the horizon.
    pub metrics_near_limit: usize,
    /// Recommendations with high urgency.
    pub high_urgency_items: usize,
    /// All recommendations.
    pub recommendations: usize,
    /// Horizon in days.
    pub prediction_horizon_days: f64,
    /// The soonest point-forecast time to limit, in hours.
    pub earliest_limit_hours: Option<f64>,
}

/// A capacity report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CapacityReport {
    /// The `now` the report was computed for.
    pub generated_at: Timestamp,
    /// Overall health.
    pub capacity_health: CapacityHealth,
    /// One entry per metric that could be forecast.
    pub forecasts: Vec<MetricForecast>,
    /// Metrics that could not be forecast.
    pub skipped: Vec<SkippedMetric>,
    /// Recommendations, most urgent first.
    pub recommendations: Vec<Recommendation>,
    /// Totals.
    pub summary: ReportSummary,
}
