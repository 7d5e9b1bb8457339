//! Capacity planning for infrastructure services: forecast each capacity
//! metric with seasonal models and prediction intervals, find when it reaches
//! its limit, and turn that into recommendations and a report.
//!
//! This is the Rust successor of SysManage's `CapacityPlanner`, which fits a
//! quadratic per metric and so misses daily cycles, extrapolates utilisation
//! above 100 % and recommends scaling after a single spike. Here:
//!
//! * **Hygiene** ([`hygiene`]): NaN/∞ rejected with a typed error, samples
//!   sorted, duplicate timestamps averaged, resampled to a regular grid keeping
//!   mean and max, isolated spikes damped (recurring daily peaks are kept);
//!   retention is bounded (30 days by default).
//! * **Models** ([`model`]) behind the [`Forecaster`] trait: Prometheus
//!   `predict_linear`'s line and double exponential smoothing ([`prometheus`]
//!   has the exact PromQL functions), additive Holt-Winters / ETS(A,A,A) with
//!   analytic intervals, trend + daily/weekly Fourier regression, and
//!   SysManage's quadratic for compatibility.
//! * **Selection** ([`select`]) per metric by rolling-origin holdout error,
//!   preferring the simplest adequate model.
//! * **Time to limit** from the point forecast and from the interval bound,
//!   interpolated between grid points, with "already over" distinct from "not
//!   within the horizon", on forecasts clamped to physical bounds.
//! * **Reports** ([`report`]): trend labels with hysteresis that agree with
//!   the forecast (never "stable" when the point forecast crosses the limit
//!   within the horizon), recommendations with urgency, action text and
//!   evidence, and overall health; all `serde`. [`CapacityReport::to_html`]
//!   ([`html`]) renders one self-contained HTML page with a chart per metric
//!   drawn by the reusable [`chart`] module (dated time axis, unit ticks,
//!   interval band, limit, crossing markers, text alternatives).
//! * **Fleets**: late samples cost O(1) ([`Recorded`] says what became of
//!   each), and a report analyses metrics on
//!   [`PlannerConfig::report_threads`] scoped threads with the same result
//!   as one thread.
//!
//! [`Planner`] implements [`CapacityPlanner`] and core's
//! [`LoadForecast`](sysmanage_core::LoadForecast), so a predictive autoscaler
//! can consume it through `sysmanage-core` alone.
//!
//! # Example
//!
//! Two weeks of hourly CPU with a busy afternoon on a level that grows 1 % a
//! day: the peak, not the average, decides when the limit is reached.
//!
//! ```
//! use std::time::Duration;
//! use sysmanage_capacity::{CapacityHealth, CapacityPlanner, Planner, PlannerConfig, Urgency};
//! use sysmanage_core::{LoadForecast, Timestamp};
//!
//! let mut planner = Planner::sysmanage(PlannerConfig::default())?;
//! let t0 = Timestamp::from_secs(1_700_006_400); // a midnight, UTC
//! for h in 0..24 * 14 + 10 {
//!     let hour = (h % 24) as f64;
//!     let peak = (-(hour - 14.0).powi(2) / 8.0).exp(); // busiest at 14:00
//!     let cpu = 0.26 + 0.01 * h as f64 / 24.0 + 0.40 * peak;
//!     planner.record("cpu_utilization", t0 + Duration::from_secs(3600 * h), cpu)?;
//! }
//! let now = t0 + Duration::from_secs(3600 * (24 * 14 + 9)); // 09:00
//! let report = planner.report(now);
//! let cpu = &report.forecasts[0];
//! assert_eq!(cpu.metric, "cpu_utilization");
//! let hours = cpu.time_to_limit.hours().expect("the peak crosses 0.8");
//! assert!(hours > 3.0 && hours < 6.0, "peak-driven: {hours} h"); // this afternoon
//! assert_eq!(report.recommendations[0].urgency, Urgency::High);
//! assert_eq!(report.capacity_health, CapacityHealth::Critical);
//!
//! // The same planner answers autoscalers through sysmanage-core's trait.
//! let f = planner.forecast("cpu_utilization", now, Duration::from_secs(3600))?;
//! assert!(f.lower <= f.point && f.point <= f.upper && f.upper <= 1.0);
//! # Ok::<(), sysmanage_core::Error>(())
//! ```
//!
//! # What is validated, and what is clamped
//!
//! Every settings type ([`PlannerConfig`], [`hygiene::HygieneConfig`],
//! [`SelectionConfig`], [`model::Fourier`], [`model::HoltWinters`] with
//! fixed [`model::EtsParams`] / [`model::EtsInit`], [`MetricSpec`]) checks
//! each duration, count and number when it is built or used, against a
//! range documented on the field, and refuses anything else with
//! [`Error::InvalidConfig`] naming the field and the range (durations: 1 ms
//! to 100 years; counts: see each field and `MAX_*` constant). A value that
//! validation accepts never panics later.
//!
//! * **Refused with a typed error:** NaN or infinite samples and values
//!   ([`Error::NonFinite`]); data so large that sums overflow `f64`
//!   ([`Error::NonFinite`], never a silent ∞, NaN or a confident wrong R²);
//!   timestamps whose grid would exceed `max_buckets` (including samples at
//!   both ends of `i64`); a sample more than `max_forward_jump` ahead of a
//!   metric's newest; `analyze` as of a time before the data; horizons past
//!   [`model::MAX_PREDICT_STEPS`] in [`FittedModel::try_predict`];
//!   fewer samples at distinct times than `min_samples`.
//! * **Reported, not refused:** a sample older than the retention window,
//!   or older than every sample of a full metric, is not stored and
//!   `record` says so ([`Recorded`]).
//! * **Clamped (documented where it happens):** forecasts to the metric's
//!   physical [`Bounds`] (e.g. utilisation to `[0, 1]`); the horizon of
//!   [`FittedModel::predict`] / [`FittedModel::predict_at`] to
//!   `1..=`[`model::MAX_PREDICT_STEPS`] (the `try_` variants refuse
//!   instead); the number of points a report lists (`max_report_points`,
//!   by striding).
//!
//! All arithmetic on caller-supplied timestamps, horizons and counts is
//! checked (or done in `i128` where any `i64` input fits), in debug and
//! release builds alike.
//!
//! # Tracing
//!
//! Events under target `sysmanage_capacity`, at `debug`/`trace` level:
//! `sysmanage.capacity.model_selected` (fields `model`, `holdout_mae`,
//! `buckets`), `sysmanage.capacity.report` (`health`, `metrics`,
//! `recommendations`), `sysmanage.capacity.holt_winters.fitted`.
//!
//! # Feature flags
//!
//! - `prometheus`: the `history` module, importing a metric's history from a
//!   Prometheus server (`query_range`, split under the 11,000-points limit,
//!   counters through `rate`) into a planner, with `sysmanage-core`'s client.
//! - `integration`: the live import test against the local Prometheus.
//!
//! Everything else is pure computation and always available. The HTML
//! report and its charts are plain string building over `std` (no
//! plotting crate, no fonts, no scripts), so they add no dependency that a
//! feature would keep out.
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod chart;
mod check;
#[cfg(feature = "prometheus")]
pub mod history;
pub mod html;
pub mod hygiene;
mod ingest;
pub mod metric;
pub mod model;
mod planner;
pub mod prometheus;
pub mod report;
pub mod select;
mod stats;
pub mod telemetry;
mod validate;

pub use check::FreshnessCheck;
pub use ingest::Recorded;
pub use metric::{Bounds, Direction, MetricKind, MetricSpec, Unit};
pub use model::{FittedModel, Forecaster, ModelKind, Prediction};
pub use planner::{
    CapacityPlanner, CapacitySnapshot, MAX_SAMPLES_PER_METRIC, MAX_TREND_THRESHOLD, MetricStatus,
    Planner, PlannerConfig,
};
pub use report::{
    CapacityHealth, CapacityReport, Evidence, LimitBasis, MetricForecast, Recommendation,
    ReportSummary, SkippedMetric, TimeToLimit, TrendLabel, Urgency,
};
pub use select::{CandidateScore, Selection, SelectionConfig};
pub use sysmanage_core::{Error, Result};

/// The README's example is tested too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
