//! The [`Planner`]: ingest, forecast per metric, time to limit, report.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysmanage_core::{
    Error, Forecast, LoadForecast, Result, Sample, Timestamp, WindowStats, ensure_finite,
};

use crate::hygiene::{HygieneConfig, Resampled, prepare};
use crate::ingest::{Recorded, SampleStore, check_forward_jump};
use crate::metric::{Direction, MetricKind, MetricSpec};
use crate::model::{FittedModel, Forecaster, HoltWinters, MAX_PATH_STEPS, ModelKind};
use crate::report::{
    CapacityHealth, CapacityReport, Evidence, LimitBasis, MetricForecast, Recommendation,
    ReportSummary, SkippedMetric, TimeToLimit, TrendLabel, Urgency,
};
use crate::select::{Selection, SelectionConfig, select_measured};
use crate::stats::index_slope;
use crate::validate::{MAX_DURATION, count_in, duration_in, finite_in};

/// The crate's main trait: something that ingests capacity samples and
/// produces forecasts and reports.
///
/// [`Planner`] is the implementation; the trait lets hosts hold a planner as
/// `Box<dyn CapacityPlanner>` and substitute fakes in tests.
pub trait CapacityPlanner: Send + Sync + fmt::Debug {
    /// Adds one sample of `metric` and says what became of it: stored, or
    /// not stored because it is older than the retention window or than
    /// every sample of a full metric ([`Recorded`]).
    ///
    /// # Errors
    /// [`Error::Unknown`] for an unregistered metric, [`Error::NonFinite`]
    /// for a NaN or infinite value, [`Error::InvalidConfig`] (field
    /// `sample.at`) for a sample too far ahead of the newest (nothing is
    /// stored).
    fn record(&mut self, metric: &str, at: Timestamp, value: f64) -> Result<Recorded>;

    /// The forecast of one metric as of `now`.
    ///
    /// # Errors
    /// [`Error::Unknown`] for an unregistered metric,
    /// [`Error::InsufficientData`] when there is too little data (fewer
    /// than `min_samples` samples at distinct times),
    /// [`Error::InvalidConfig`] (field `now`) when `now` is before the
    /// metric's newest sample.
    fn analyze(&self, metric: &str, now: Timestamp) -> Result<MetricForecast>;

    /// A report over every metric as of `now`; updates trend labels
    /// (hysteresis state). Metrics that cannot be forecast are listed in
    /// [`CapacityReport::skipped`].
    fn report(&mut self, now: Timestamp) -> CapacityReport;

    /// Adds many samples of `metric`; returns how many were stored (the
    /// others were older than the retention window or than every sample of
    /// a full metric).
    ///
    /// # Errors
    /// As [`record`](Self::record); samples before a failing one are kept.
    fn record_all(&mut self, metric: &str, samples: &[Sample]) -> Result<usize> {
        let mut stored = 0;
        for s in samples {
            stored += usize::from(self.record(metric, s.at, s.value)?.is_stored());
        }
        Ok(stored)
    }
}

/// Planner settings. Every default is documented on its field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PlannerConfig {
    /// Samples older than this behind the newest are dropped (1 ms to 100
    /// years). Default: 30 days.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub retention: Duration,
    /// At most this many samples are kept per metric (1 to
    /// [`MAX_SAMPLES_PER_METRIC`]). Default: 500 000.
    pub max_samples_per_metric: NonZeroUsize,
    /// How far ahead to forecast (1 ms to 100 years). Default: 7 days.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub horizon: Duration,
    /// Prediction interval coverage, in `(0, 1)`. Default: 0.95.
    pub interval_level: f64,
    /// A point-forecast crossing sooner than this is high urgency (0 to
    /// `medium_within`). Default: 1 day.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub high_within: Duration,
    /// A point-forecast crossing sooner than this is medium urgency
    /// (`high_within` to 100 years). Default: 3 days.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub medium_within: Duration,
    /// Recommend (low urgency) when only the interval bound crosses within
    /// `medium_within`. Default: true.
    pub recommend_on_bound: bool,
    /// Window of the trend slope (1 ms to 100 years). Default: 7 days.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub trend_window: Duration,
    /// Relative slope per day (fraction of the limit) that enters
    /// increasing/decreasing (`trend_exit` to [`MAX_TREND_THRESHOLD`]).
    /// Default: 0.005 (0.5 % of the limit a day).
    pub trend_enter: f64,
    /// Relative slope per day below which a trend returns to stable (0 to
    /// `trend_enter`). Default: 0.0025.
    pub trend_exit: f64,
    /// Season of the seasonal models and of the outlier guard (2 ms to 100
    /// years). Default: 1 day.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub season: Duration,
    /// Fewest raw samples (at distinct times) to forecast from (3 to
    /// [`MAX_SAMPLES_PER_METRIC`]). Default: 3.
    pub min_samples: usize,
    /// Most forecast points listed per metric in a report (1 to
    /// [`MAX_PATH_STEPS`]). Default: 336.
    pub max_report_points: usize,
    /// Most grid steps forecast per metric (bounds work and memory when the
    /// step is small or `now` is long after the data; 1 to
    /// [`MAX_PATH_STEPS`]). Default: 50 000.
    pub max_forecast_steps: usize,
    /// A sample more than this ahead of the metric's newest sample is
    /// rejected with [`Error::InvalidConfig`] (field `sample.at`): retention
    /// counts back from the newest sample, so one far-future timestamp would
    /// otherwise evict the whole history and every later sample. A metric
    /// that really resumes after a longer silence is restarted with
    /// [`Planner::clear_metric`]. 1 ms to 100 years. Default: 7 days.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub max_forward_jump: Duration,
    /// Threads a report analyses metrics on (scoped threads, joined before
    /// the report returns; the result is the same as on one thread). `0`
    /// uses [`std::thread::available_parallelism`]; at most 1024. Default: 0.
    #[serde(default)]
    pub report_threads: usize,
    /// Hygiene (the grid step lives here; default 1 hour).
    pub hygiene: HygieneConfig,
    /// Model selection.
    pub selection: SelectionConfig,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 86_400),
            max_samples_per_metric: NonZeroUsize::new(500_000).unwrap_or(NonZeroUsize::MIN),
            horizon: Duration::from_secs(7 * 86_400),
            interval_level: 0.95,
            high_within: Duration::from_secs(86_400),
            medium_within: Duration::from_secs(3 * 86_400),
            recommend_on_bound: true,
            trend_window: Duration::from_secs(7 * 86_400),
            trend_enter: 0.005,
            trend_exit: 0.0025,
            season: Duration::from_secs(86_400),
            min_samples: 3,
            max_report_points: 336,
            max_forecast_steps: 50_000,
            max_forward_jump: Duration::from_secs(7 * 86_400),
            report_threads: 0,
            hygiene: HygieneConfig::default(),
            selection: SelectionConfig::default(),
        }
    }
}

impl PlannerConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let ms = Duration::from_millis(1);
        duration_in("planner.retention", self.retention, ms, MAX_DURATION)?;
        count_in(
            "planner.max_samples_per_metric",
            self.max_samples_per_metric.get(),
            1,
            MAX_SAMPLES_PER_METRIC,
        )?;
        duration_in("planner.horizon", self.horizon, ms, MAX_DURATION)?;
        finite_in("planner.interval_level", self.interval_level, 0.0, 1.0)?;
        if !(self.interval_level > 0.0 && self.interval_level < 1.0) {
            return Err(Error::invalid(
                "planner.interval_level",
                format!("must be in (0, 1), got {}", self.interval_level),
            ));
        }
        duration_in(
            "planner.high_within",
            self.high_within,
            Duration::ZERO,
            MAX_DURATION,
        )?;
        duration_in(
            "planner.medium_within",
            self.medium_within,
            self.high_within,
            MAX_DURATION,
        )
        .map_err(|_| {
            Error::invalid(
                "planner.high_within",
                format!(
                    "must not exceed medium_within, and medium_within must be in [high_within, {MAX_DURATION:?}]; got {:?} and {:?}",
                    self.high_within, self.medium_within
                ),
            )
        })?;
        duration_in("planner.trend_window", self.trend_window, ms, MAX_DURATION)?;
        finite_in(
            "planner.trend_exit",
            self.trend_exit,
            0.0,
            MAX_TREND_THRESHOLD,
        )?;
        finite_in(
            "planner.trend_enter",
            self.trend_enter,
            self.trend_exit,
            MAX_TREND_THRESHOLD,
        )
        .map_err(|_| {
            Error::invalid(
                "planner.trend_enter",
                format!(
                    "must be a finite number in [trend_exit = {}, {MAX_TREND_THRESHOLD}], got {}",
                    self.trend_exit, self.trend_enter
                ),
            )
        })?;
        duration_in(
            "planner.season",
            self.season,
            Duration::from_millis(2),
            MAX_DURATION,
        )?;
        count_in(
            "planner.min_samples",
            self.min_samples,
            3,
            MAX_SAMPLES_PER_METRIC,
        )?;
        count_in(
            "planner.max_report_points",
            self.max_report_points,
            1,
            MAX_PATH_STEPS,
        )?;
        count_in(
            "planner.max_forecast_steps",
            self.max_forecast_steps,
            1,
            MAX_PATH_STEPS,
        )?;
        duration_in(
            "planner.max_forward_jump",
            self.max_forward_jump,
            ms,
            MAX_DURATION,
        )?;
        count_in("planner.report_threads", self.report_threads, 0, 1024)?;
        self.hygiene.validate()?;
        self.selection.validate()
    }
}

/// Largest [`PlannerConfig::max_samples_per_metric`] (and
/// [`PlannerConfig::min_samples`]): 100 million samples, 1.6 GB per metric.
pub const MAX_SAMPLES_PER_METRIC: usize = 100_000_000;

/// Largest trend threshold ([`PlannerConfig::trend_enter`] and
/// [`PlannerConfig::trend_exit`]): 100 × the limit per day.
pub const MAX_TREND_THRESHOLD: f64 = 100.0;

/// All eight SysManage metrics at one instant (SysManage's `CapacityMetrics`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CapacitySnapshot {
    /// When the values were measured.
    pub at: Timestamp,
    /// CPU utilisation as a fraction in `[0, 1]` (limit 0.8).
    pub cpu_utilization: f64,
    /// Memory utilisation as a fraction in `[0, 1]` (limit 0.85).
    pub memory_utilization: f64,
    /// Disk utilisation as a fraction in `[0, 1]` (limit 0.9).
    pub disk_utilization: f64,
    /// Network throughput, in the host's unit (no default limit).
    pub network_throughput: f64,
    /// Requests per second (no default limit).
    pub request_rate: f64,
    /// Response time in seconds (limit 2.0).
    pub response_time: f64,
    /// Open connections (no default limit).
    pub active_connections: f64,
    /// Queued items (limit 1000).
    pub queue_length: f64,
}

impl CapacitySnapshot {
    /// A snapshot; values in [`MetricKind::BUILT_IN`] order.
    pub fn new(at: Timestamp, values: [f64; 8]) -> Self {
        let [
            cpu_utilization,
            memory_utilization,
            disk_utilization,
            network_throughput,
            request_rate,
            response_time,
            active_connections,
            queue_length,
        ] = values;
        Self {
            at,
            cpu_utilization,
            memory_utilization,
            disk_utilization,
            network_throughput,
            request_rate,
            response_time,
            active_connections,
            queue_length,
        }
    }

    fn values(&self) -> [f64; 8] {
        [
            self.cpu_utilization,
            self.memory_utilization,
            self.disk_utilization,
            self.network_throughput,
            self.request_rate,
            self.response_time,
            self.active_connections,
            self.queue_length,
        ]
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct MetricState {
    spec: MetricSpec,
    samples: SampleStore,
    trend: TrendLabel,
}

/// A cached fit: the data-dependent (not `now`-dependent) part of an analysis.
#[derive(Debug)]
struct Fit {
    resampled: Resampled,
    /// Mean and max of the raw (undamped) samples within one grid step of
    /// the newest sample: what "already over" is decided on.
    recent: (f64, f64),
    model: FittedModel,
    selection: Selection,
}

/// Per-metric state summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricStatus {
    /// Metric name.
    pub metric: String,
    /// Samples held.
    pub samples: usize,
    /// Oldest sample time.
    pub oldest: Option<Timestamp>,
    /// Newest sample time.
    pub newest: Option<Timestamp>,
    /// Current trend label.
    pub trend: TrendLabel,
}

/// Capacity planner over any number of metrics.
///
/// Adding a sample is O(1) amortised, in order or late: each sample is
/// appended to its time bucket and a disordered bucket is sorted when it is
/// read (10 million samples shuffled within 6 days ingest within 2× of the
/// same samples in order; see `docs/BENCHMARKS.md`). A report analyses
/// metrics on [`PlannerConfig::report_threads`] scoped threads, with the
/// same result as one. Fits are computed on demand
/// and cached until the metric's next sample. The whole planner (settings,
/// samples and trend state, not the cache) is `serde`-serialisable, so it can
/// be persisted and restored.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use sysmanage_capacity::{CapacityPlanner, Planner, PlannerConfig};
/// use sysmanage_core::Timestamp;
///
/// let mut planner = Planner::sysmanage(PlannerConfig::default())?;
/// let t0 = Timestamp::from_secs(1_700_000_000);
/// // Disk fills by 1 % a day from 70 %.
/// for h in 0..24 * 14 {
///     let at = t0 + Duration::from_secs(3600 * h);
///     planner.record("disk_utilization", at, 0.70 + 0.01 * h as f64 / 24.0)?;
/// }
/// let now = t0 + Duration::from_secs(3600 * (24 * 14 - 1));
/// let f = planner.analyze("disk_utilization", now)?;
/// let hours = f.time_to_limit.hours().unwrap();
/// assert!((hours - 24.0 * 6.0).abs() < 2.0, "{hours}"); // 0.84 → 0.90 at 0.01/day
/// # Ok::<(), sysmanage_core::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(try_from = "PlannerState")]
pub struct Planner {
    config: PlannerConfig,
    metrics: BTreeMap<String, MetricState>,
    #[serde(skip)]
    cache: Mutex<HashMap<String, Arc<Fit>>>,
}

/// The serialised form of a [`Planner`], checked by `TryFrom` on restore.
#[derive(Deserialize)]
struct PlannerState {
    config: PlannerConfig,
    metrics: BTreeMap<String, MetricState>,
}

impl TryFrom<PlannerState> for Planner {
    type Error = Error;

    /// Restores a planner, validating the settings and every metric spec as
    /// [`Planner::new`] and [`Planner::register`] would.
    fn try_from(state: PlannerState) -> Result<Self> {
        state.config.validate()?;
        for (name, m) in &state.metrics {
            if *name != m.spec.name {
                return Err(Error::invalid(
                    "planner.metrics",
                    format!("entry {name:?} holds the spec of {:?}", m.spec.name),
                ));
            }
            m.spec.validate()?;
        }
        Ok(Self {
            config: state.config,
            metrics: state.metrics,
            cache: Mutex::default(),
        })
    }
}

impl fmt::Debug for Planner {
    /// A summary (metric names and sample counts), not every sample.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Planner")
            .field("config", &self.config)
            .field(
                "metrics",
                &self
                    .metrics
                    .iter()
                    .map(|(name, m)| (name.as_str(), m.samples.len()))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Planner {
    /// A planner with no metrics.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for bad settings.
    pub fn new(config: PlannerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            metrics: BTreeMap::new(),
            cache: Mutex::default(),
        })
    }

    /// A planner tracking SysManage's eight metrics with their default limits.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for bad settings.
    pub fn sysmanage(config: PlannerConfig) -> Result<Self> {
        let mut p = Self::new(config)?;
        for kind in MetricKind::BUILT_IN {
            p.register(MetricSpec::builtin(kind))?;
        }
        Ok(p)
    }

    /// The settings.
    pub fn config(&self) -> &PlannerConfig {
        &self.config
    }

    /// Starts tracking a metric.
    ///
    /// # Errors
    /// [`Error::Duplicate`] when the name is taken, [`Error::InvalidConfig`]
    /// for a spec that fails [`MetricSpec::validate`].
    pub fn register(&mut self, spec: MetricSpec) -> Result<()> {
        spec.validate()?;
        if self.metrics.contains_key(&spec.name) {
            return Err(Error::Duplicate {
                kind: "metric",
                name: spec.name,
            });
        }
        let samples = SampleStore::new(self.config.max_samples_per_metric, self.config.retention)?;
        self.metrics.insert(
            spec.name.clone(),
            MetricState {
                spec,
                samples,
                trend: TrendLabel::Stable,
            },
        );
        Ok(())
    }

    /// Drops every sample of `metric` and resets its trend label, keeping
    /// its spec: the way to restart a metric after a clock jump or a silence
    /// longer than [`PlannerConfig::max_forward_jump`].
    ///
    /// # Errors
    /// [`Error::Unknown`] for an unregistered metric.
    pub fn clear_metric(&mut self, metric: &str) -> Result<()> {
        let state = self
            .metrics
            .get_mut(metric)
            .ok_or_else(|| unknown(metric))?;
        state.samples.clear();
        state.trend = TrendLabel::Stable;
        self.cache
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(metric);
        Ok(())
    }

    /// The spec of a metric.
    pub fn spec(&self, metric: &str) -> Option<&MetricSpec> {
        self.metrics.get(metric).map(|m| &m.spec)
    }

    /// Records all eight SysManage metrics at once. Nothing is stored when
    /// any value is non-finite. Returns [`Recorded::Stored`] when every value
    /// was stored, else the first other outcome (in
    /// [`MetricKind::BUILT_IN`] order).
    ///
    /// # Errors
    /// [`Error::NonFinite`] naming the first bad value, [`Error::Unknown`] when
    /// a built-in metric is not registered.
    pub fn record_snapshot(&mut self, snapshot: &CapacitySnapshot) -> Result<Recorded> {
        let values = snapshot.values();
        for (kind, v) in MetricKind::BUILT_IN.iter().zip(values) {
            ensure_finite(kind.name(), v)?;
            let state = self
                .metrics
                .get(kind.name())
                .ok_or_else(|| unknown(kind.name()))?;
            self.check_time(state, snapshot.at)?;
        }
        let mut outcome = Recorded::Stored;
        for (kind, v) in MetricKind::BUILT_IN.iter().zip(values) {
            let r = self.record(kind.name(), snapshot.at, v)?;
            if outcome.is_stored() {
                outcome = r;
            }
        }
        Ok(outcome)
    }

    /// Per-metric sample counts and trend state.
    pub fn status(&self) -> Vec<MetricStatus> {
        self.metrics
            .iter()
            .map(|(name, m)| MetricStatus {
                metric: name.clone(),
                samples: m.samples.len(),
                oldest: m.samples.first_at(),
                newest: m.samples.last().map(|s| s.at),
                trend: m.trend,
            })
            .collect()
    }

    fn check_time(&self, state: &MetricState, at: Timestamp) -> Result<()> {
        check_forward_jump(
            &state.spec.name,
            &state.samples,
            self.config.max_forward_jump,
            at,
        )
    }

    fn fit(&self, metric: &str) -> Result<Arc<Fit>> {
        let state = self.metrics.get(metric).ok_or_else(|| unknown(metric))?;
        if let Some(f) = self.lock_cache().get(metric) {
            return Ok(Arc::clone(f));
        }
        let have = state.samples.len();
        if have < self.config.min_samples {
            return Err(Error::InsufficientData {
                what: "capacity forecast",
                needed: self.config.min_samples,
                have,
            });
        }
        let span = match (state.samples.first_at(), state.samples.last()) {
            (Some(a), Some(b)) => b.at - a,
            _ => Duration::ZERO,
        };
        let samples: Vec<Sample> = state.samples.to_sorted_vec();
        // Samples that share few timestamps carry no trend: say so, rather
        // than letting a grid refined to nothing ask for a day of seconds.
        let distinct = 1 + samples
            .windows(2)
            .filter(|w| w[1].at != w[0].at)
            .take(self.config.min_samples)
            .count();
        if distinct < self.config.min_samples {
            return Err(Error::InsufficientData {
                what: "capacity forecast (samples at distinct times)",
                needed: self.config.min_samples,
                have: distinct,
            });
        }
        let hygiene = HygieneConfig {
            step: {
                let step = self.config.hygiene.step;
                // The median gap only matters for a short history.
                let gap = if span >= step.saturating_mul(24) {
                    Duration::ZERO
                } else {
                    median_gap(&samples)
                };
                effective_step(step, span, gap)
            },
            ..self.config.hygiene.clone()
        };
        let mut resampled = prepare(&samples, &hygiene, Some(self.config.season))?;
        drop_partial_last_bucket(&mut resampled);
        // What the models fit stays within the metric's physical bounds
        // (e.g. a utilisation reading of 1.02 is 1).
        let bounds = state.spec.bounds;
        for v in resampled
            .mean
            .values
            .iter_mut()
            .chain(resampled.max.values.iter_mut())
        {
            *v = bounds.clamp(*v);
        }
        let recent = samples
            .last()
            .and_then(|s| {
                let from = s.at - hygiene.step + Duration::from_millis(1);
                let i = samples.partition_point(|x| x.at < from);
                WindowStats::of(samples[i..].iter().copied())
            })
            .map_or((f64::NAN, f64::NAN), |w| (w.mean, w.max));
        let forecasters: Vec<Box<dyn Forecaster>> = self
            .config
            .selection
            .candidates
            .iter()
            .map(|k| match k {
                ModelKind::HoltWinters => {
                    Box::new(HoltWinters::with_season(self.config.season)) as Box<dyn Forecaster>
                }
                k => k.forecaster(),
            })
            .collect();
        // Holdout errors only on buckets that held samples: an interpolated
        // bucket is a straight line any trend model "forecasts" well.
        let measured: Vec<bool> = resampled.counts.iter().map(|c| *c > 0).collect();
        let (model, selection) = select_measured(
            &resampled.mean,
            &measured,
            &forecasters,
            &self.config.selection,
        )?;
        let fit = Arc::new(Fit {
            resampled,
            recent,
            model,
            selection,
        });
        self.lock_cache()
            .insert(metric.to_owned(), Arc::clone(&fit));
        Ok(fit)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Fit>>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn analyze_with(
        &self,
        metric: &str,
        now: Timestamp,
        previous: TrendLabel,
    ) -> Result<MetricForecast> {
        let state = self.metrics.get(metric).ok_or_else(|| unknown(metric))?;
        if let Some(newest) = state.samples.last()
            && now < newest.at
        {
            return Err(Error::invalid(
                "now",
                format!(
                    "{metric}: analysis time {} ms is before the newest sample at {} ms; \
                     analyse as of a time at or after the data",
                    now.as_millis(),
                    newest.at.as_millis()
                ),
            ));
        }
        let fit = self.fit(metric)?;
        let spec = &state.spec;
        let cfg = &self.config;
        let series = &fit.resampled.mean;
        let n = series.len();
        // The raw newest step, not the damped bucket: outlier damping must
        // never hide that the metric is over its limit right now.
        let (current, current_max) = fit.recent;

        // Trend: least-squares slope over the trend window, of the one-season
        // moving average when the window holds two seasons (a daily cycle
        // would otherwise bias the slope by where in the day the data ends).
        let window = ((cfg.trend_window.as_millis() / series.step.as_millis().max(1)) as usize)
            .clamp(2, n.max(2));
        let recent = &series.values[n.saturating_sub(window)..];
        let slope_per_step = match series.season_len(cfg.season) {
            Some(m) if recent.len() >= 2 * m => index_slope(&moving_average(recent, m)),
            _ => index_slope(recent),
        };
        let slope_per_day = slope_per_step * 86_400.0 / series.step_secs();
        let level = recent.iter().map(|v| v.abs()).sum::<f64>() / recent.len() as f64;
        let reference = spec
            .limit
            .map(f64::abs)
            .filter(|l| *l > 0.0)
            .unwrap_or(level);
        let rel = if reference > 0.0 {
            slope_per_day / reference
        } else {
            0.0
        };
        let trend = trend_label(previous, rel, cfg.trend_enter, cfg.trend_exit);

        // Forecast path from the last bucket to now + horizon.
        let end = now + cfg.horizon;
        let steps_f = fit.model.steps_until(end).ceil().max(1.0);
        if steps_f > cfg.max_forecast_steps as f64 && series.step < cfg.hygiene.step {
            // A refined grid for a very short history: the history, not the
            // settings, is what is lacking.
            return Err(Error::InsufficientData {
                what: "capacity forecast over the horizon (history too short for its grid)",
                needed: cfg.min_samples.max(24),
                have: state.samples.len(),
            });
        }
        if steps_f > cfg.max_forecast_steps as f64 {
            return Err(Error::invalid(
                "planner.max_forecast_steps",
                format!(
                    "forecasting {} to now + horizon takes {steps_f} steps of {:?} from its last sample, more than {}",
                    spec.name, series.step, cfg.max_forecast_steps
                ),
            ));
        }
        let steps = steps_f as usize;
        let level_z = cfg.interval_level;
        let path = fit
            .model
            .forecast_path(steps, level_z, |v| spec.bounds.clamp(v))?;
        let clamped_values = (1..=steps)
            .map(|h| {
                let p = fit.model.predict(h);
                let (lo, hi) = p.interval(level_z);
                [p.point, lo, hi]
                    .iter()
                    .filter(|v| spec.bounds.clamp(**v) != **v)
                    .count()
            })
            .sum();
        let origin = fit.model.last_time();
        let horizon_hours = cfg.horizon.as_secs_f64() / 3600.0;
        let bound_of = |f: &Forecast| match spec.direction {
            Direction::Ceiling => f.upper,
            Direction::Floor => f.lower,
        };
        let time_to_limit = crossing(
            spec,
            current,
            origin,
            &path,
            |f| f.point,
            now,
            horizon_hours,
        );
        let time_to_limit_bound =
            crossing(spec, current, origin, &path, bound_of, now, horizon_hours);
        let (peak_excess, time_to_limit_peak) = match spec.direction {
            Direction::Ceiling => {
                let from = n.saturating_sub(window);
                let mut excess: Vec<f64> = (from..n)
                    .filter(|&i| fit.resampled.counts[i] >= 2)
                    .map(|i| (fit.resampled.max.values[i] - series.values[i]).max(0.0))
                    .collect();
                let e = if excess.is_empty() {
                    0.0
                } else {
                    crate::stats::median_in_place(&mut excess)
                };
                let peak = |f: &Forecast| spec.bounds.clamp(f.point + e);
                let ttl = crossing(spec, current_max, origin, &path, peak, now, horizon_hours);
                (e, ttl)
            }
            Direction::Floor => (0.0, time_to_limit),
        };
        // The label agrees with the forecast: a metric whose point forecast
        // crosses its limit within the horizon is moving towards it,
        // whatever the (noisier) trend-window slope says.
        let trend = match (time_to_limit, spec.direction) {
            (TimeToLimit::Within { .. }, Direction::Ceiling) => TrendLabel::Increasing,
            (TimeToLimit::Within { .. }, Direction::Floor) => TrendLabel::Decreasing,
            _ => trend,
        };
        let history = downsample(series, cfg.max_report_points);
        let stride = path.len().div_ceil(cfg.max_report_points).max(1);
        let forecasts: Vec<Forecast> = path
            .iter()
            .enumerate()
            .filter(|(i, _)| (i + 1) % stride == 0 || *i + 1 == path.len())
            .map(|(_, f)| *f)
            .collect();
        let confidence = (1.0 - fit.selection.relative_error.unwrap_or(0.9)).clamp(0.1, 0.95);
        Ok(MetricForecast {
            metric: spec.name.clone(),
            kind: spec.kind,
            direction: spec.direction,
            limit: spec.limit,
            current_value: current,
            current_max,
            trend,
            slope_per_day,
            relative_slope_per_day: rel,
            selection: fit.selection.clone(),
            parameters: fit.model.parameters(),
            interval_level: level_z,
            time_to_limit,
            time_to_limit_bound,
            peak_excess,
            time_to_limit_peak,
            forecasts,
            clamped_values,
            data_quality: fit.resampled.quality.clone(),
            step_secs: series.step_secs(),
            confidence,
            unit: spec.unit.clone(),
            history,
        })
    }

    /// [`CapacityPlanner::analyze`] for every name, on up to
    /// [`PlannerConfig::report_threads`] scoped threads taking metrics from
    /// a shared counter. Each metric's analysis is independent and
    /// deterministic, so the results are those of a sequential loop.
    fn analyze_many(&self, names: &[String], now: Timestamp) -> Vec<Result<MetricForecast>> {
        let threads = match self.config.report_threads {
            0 => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            n => n,
        }
        .min(names.len());
        if threads <= 1 {
            return names.iter().map(|n| self.analyze(n, now)).collect();
        }
        let next = AtomicUsize::new(0);
        let mut out: Vec<Option<Result<MetricForecast>>> = names.iter().map(|_| None).collect();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, AtomicOrdering::Relaxed);
                            let Some(name) = names.get(i) else {
                                break;
                            };
                            done.push((i, self.analyze(name, now)));
                        }
                        done
                    })
                })
                .collect();
            for w in workers {
                match w.join() {
                    Ok(done) => {
                        for (i, r) in done {
                            out[i] = Some(r);
                        }
                    }
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });
        out.into_iter()
            .zip(names)
            .map(|(r, name)| r.unwrap_or_else(|| self.analyze(name, now)))
            .collect()
    }

    /// Changes [`PlannerConfig::report_threads`] (0 to 1024; 0 = the
    /// available parallelism) without touching samples or fits.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (field `planner.report_threads`) above 1024.
    pub fn set_report_threads(&mut self, threads: usize) -> Result<()> {
        count_in("planner.report_threads", threads, 0, 1024)?;
        self.config.report_threads = threads;
        Ok(())
    }

    /// Drops every cached fit: the next report or analysis refits each
    /// metric from its samples. The cache holds one fit per metric (its
    /// bucket grid, model and selection evidence: about 20 bytes per grid
    /// bucket), dropped for a metric anyway when it gets a new sample.
    pub fn clear_cache(&mut self) {
        self.cache
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    fn recommend(&self, f: &MetricForecast) -> Option<Recommendation> {
        let spec = self.metrics.get(&f.metric)?.spec.clone();
        let limit = spec.limit?;
        let high = self.config.high_within.as_secs_f64() / 3600.0;
        let medium = self.config.medium_within.as_secs_f64() / 3600.0;
        let (urgency, hours, basis) = match (f.time_to_limit, f.time_to_limit_bound.hours()) {
            (TimeToLimit::AlreadyOver, _) => (Urgency::High, 0.0, LimitBasis::Current),
            (TimeToLimit::Within { hours, .. }, _) if hours < high => {
                (Urgency::High, hours, LimitBasis::Point)
            }
            (TimeToLimit::Within { hours, .. }, _) if hours < medium => {
                (Urgency::Medium, hours, LimitBasis::Point)
            }
            (_, Some(b)) if self.config.recommend_on_bound && b < medium => {
                (Urgency::Low, b, LimitBasis::Bound)
            }
            _ => return None,
        };
        let at = match basis {
            LimitBasis::Point => match f.time_to_limit {
                TimeToLimit::Within { at, .. } => Some(at),
                _ => None,
            },
            LimitBasis::Bound => match f.time_to_limit_bound {
                TimeToLimit::Within { at, .. } => Some(at),
                _ => None,
            },
            LimitBasis::Current => None,
        };
        let interval_at_crossing = at.and_then(|at| {
            f.forecasts
                .iter()
                .min_by_key(|p| (p.at.as_millis() - at.as_millis()).unsigned_abs())
                .map(|p| (p.lower, p.upper))
        });
        Some(Recommendation {
            metric: f.metric.clone(),
            urgency,
            time_to_limit_hours: hours,
            basis,
            current_value: f.current_value,
            capacity_limit: limit,
            recommended_action: spec.action.clone(),
            confidence: f.confidence,
            evidence: Evidence {
                model: f.selection.model,
                holdout_mae: f.selection.holdout_mae,
                interval_level: f.interval_level,
                interval_at_crossing,
                data_quality: f.data_quality.flags(),
                samples: f.data_quality.raw_samples,
            },
        })
    }

    fn build_report(
        &self,
        now: Timestamp,
        forecasts: Vec<MetricForecast>,
        skipped: Vec<SkippedMetric>,
    ) -> CapacityReport {
        let mut recommendations: Vec<Recommendation> =
            forecasts.iter().filter_map(|f| self.recommend(f)).collect();
        recommendations.sort_by(|a, b| {
            b.urgency
                .cmp(&a.urgency)
                .then(a.time_to_limit_hours.total_cmp(&b.time_to_limit_hours))
        });
        let near: Vec<f64> = forecasts
            .iter()
            .filter_map(|f| f.time_to_limit.hours())
            .collect();
        let high = recommendations
            .iter()
            .filter(|r| r.urgency == Urgency::High)
            .count();
        let capacity_health = if high > 0 {
            CapacityHealth::Critical
        } else if !near.is_empty() || !recommendations.is_empty() {
            CapacityHealth::Warning
        } else {
            CapacityHealth::Healthy
        };
        let summary = ReportSummary {
            total_metrics_monitored: forecasts.len(),
            metrics_near_limit: near.len(),
            high_urgency_items: high,
            recommendations: recommendations.len(),
            prediction_horizon_days: self.config.horizon.as_secs_f64() / 86_400.0,
            earliest_limit_hours: near.iter().copied().reduce(f64::min),
        };
        tracing::debug!(
            target: "sysmanage_capacity",
            health = ?capacity_health,
            metrics = summary.total_metrics_monitored,
            recommendations = summary.recommendations,
            "sysmanage.capacity.report"
        );
        CapacityReport {
            generated_at: now,
            capacity_health,
            forecasts,
            skipped,
            recommendations,
            summary,
        }
    }
}

impl CapacityPlanner for Planner {
    fn record(&mut self, metric: &str, at: Timestamp, value: f64) -> Result<Recorded> {
        let state = self
            .metrics
            .get_mut(metric)
            .ok_or_else(|| unknown(metric))?;
        ensure_finite("sample value", value)?;
        check_forward_jump(
            &state.spec.name,
            &state.samples,
            self.config.max_forward_jump,
            at,
        )?;
        let recorded = state.samples.push(at, value)?;
        if recorded.is_stored() {
            let cache = self
                .cache
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !cache.is_empty() {
                cache.remove(metric);
            }
        }
        Ok(recorded)
    }

    /// As the trait's default, with one metric look-up for the batch.
    fn record_all(&mut self, metric: &str, samples: &[Sample]) -> Result<usize> {
        let state = self
            .metrics
            .get_mut(metric)
            .ok_or_else(|| unknown(metric))?;
        let mut stored = 0;
        let mut result = Ok(());
        for s in samples {
            let r = ensure_finite("sample value", s.value)
                .and_then(|_| {
                    check_forward_jump(
                        &state.spec.name,
                        &state.samples,
                        self.config.max_forward_jump,
                        s.at,
                    )
                })
                .and_then(|()| state.samples.push(s.at, s.value));
            match r {
                Ok(r) => stored += usize::from(r.is_stored()),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if stored > 0 {
            self.cache
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(metric);
        }
        result.map(|()| stored)
    }

    fn analyze(&self, metric: &str, now: Timestamp) -> Result<MetricForecast> {
        let previous = self
            .metrics
            .get(metric)
            .ok_or_else(|| unknown(metric))?
            .trend;
        self.analyze_with(metric, now, previous)
    }

    fn report(&mut self, now: Timestamp) -> CapacityReport {
        let mut forecasts = Vec::new();
        let mut skipped = Vec::new();
        let names: Vec<String> = self.metrics.keys().cloned().collect();
        let results = self.analyze_many(&names, now);
        for (name, result) in names.into_iter().zip(results) {
            match result {
                Ok(f) => {
                    if let Some(state) = self.metrics.get_mut(&name) {
                        state.trend = f.trend;
                    }
                    forecasts.push(f);
                }
                Err(e) => skipped.push(SkippedMetric {
                    metric: name,
                    label: e.label().to_owned(),
                    reason: e.to_string(),
                }),
            }
        }
        let report = self.build_report(now, forecasts, skipped);
        crate::telemetry::record_report(&report);
        report
    }
}

impl LoadForecast for Planner {
    fn forecast(&self, metric: &str, now: Timestamp, horizon: Duration) -> Result<Forecast> {
        let fit = self.fit(metric)?;
        let spec = &self
            .metrics
            .get(metric)
            .ok_or_else(|| unknown(metric))?
            .spec;
        let at = now + horizon;
        let p = fit.model.predict_at(fit.model.steps_until(at));
        let (lo, hi) = p.interval(self.config.interval_level);
        let c = |v: f64| spec.bounds.clamp(v);
        Forecast::new(at, c(p.point), c(lo), c(hi), self.config.interval_level)
    }

    fn recent_error(&self, metric: &str) -> Option<f64> {
        self.fit(metric).ok()?.selection.relative_error
    }
}

fn unknown(metric: &str) -> Error {
    Error::Unknown {
        kind: "metric",
        name: metric.to_owned(),
    }
}

/// Drops the newest bucket when it holds fewer than half the samples of a
/// typical recent bucket (a bucket still filling): every bucket is stamped
/// at the same offset within its step, so a partial one would stand for a
/// time up to half a step later than its samples and shift every forecast
/// and crossing by as much. Its samples still count for "already over"
/// (decided on the raw newest step).
fn drop_partial_last_bucket(r: &mut Resampled) {
    let n = r.counts.len();
    if n < 4 {
        return;
    }
    let from = n.saturating_sub(25);
    let mut recent: Vec<u32> = r.counts[from..n - 1].to_vec();
    recent.sort_unstable();
    let typical = recent[recent.len() / 2];
    if typical >= 4 && r.counts[n - 1] * 2 < typical {
        r.mean.values.pop();
        r.max.values.pop();
        r.counts.pop();
        r.quality.buckets -= 1;
        r.quality.partial_bucket_dropped = true;
    }
}

/// Median gap between consecutive distinct sample times (zero with fewer
/// than two distinct times).
fn median_gap(samples: &[Sample]) -> Duration {
    let mut gaps: Vec<i64> = samples
        .windows(2)
        .map(|w| w[1].at.as_millis() - w[0].at.as_millis())
        .filter(|g| *g > 0)
        .collect();
    if gaps.is_empty() {
        return Duration::ZERO;
    }
    let mid = gaps.len() / 2;
    let (_, m, _) = gaps.select_nth_unstable(mid);
    Duration::from_millis(u64::try_from(*m).unwrap_or(0))
}

/// The configured step, or a finer "round" one when the data spans fewer
/// than 24 steps (so a short history still gets a usable grid), but never
/// finer than the median gap between samples: a grid finer than the data
/// would be mostly interpolated buckets scored as if measured.
fn effective_step(step: Duration, span: Duration, median_gap: Duration) -> Duration {
    if span >= step.saturating_mul(24) {
        return step;
    }
    const NICE: [u64; 11] = [1, 5, 10, 15, 30, 60, 300, 600, 900, 1800, 3600];
    let target = (span.as_secs_f64() / 24.0).max(median_gap.as_secs_f64());
    NICE.iter()
        .rev()
        .map(|s| Duration::from_secs(*s))
        .find(|s| s.as_secs_f64() <= target && *s <= step)
        .unwrap_or(Duration::from_secs(1).min(step))
}

/// At most `max_points` samples of `series`: consecutive buckets averaged
/// in groups, each stamped at its group's mean time.
fn downsample(series: &crate::hygiene::RegularSeries, max_points: usize) -> Vec<Sample> {
    let n = series.len();
    let k = n.div_ceil(max_points.max(1)).max(1);
    (0..n)
        .step_by(k)
        .map(|from| {
            let to = (from + k).min(n);
            let mean = series.values[from..to].iter().sum::<f64>() / (to - from) as f64;
            Sample::new(series.time_at((from + to - 1) as f64 / 2.0), mean)
        })
        .collect()
}

/// Means of every run of `m` consecutive values.
fn moving_average(v: &[f64], m: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(v.len() + 1 - m);
    let mut sum: f64 = v[..m].iter().sum();
    out.push(sum / m as f64);
    for i in m..v.len() {
        sum += v[i] - v[i - m];
        out.push(sum / m as f64);
    }
    out
}

fn trend_label(previous: TrendLabel, rel: f64, enter: f64, exit: f64) -> TrendLabel {
    match previous {
        TrendLabel::Increasing if rel >= exit => TrendLabel::Increasing,
        TrendLabel::Decreasing if rel <= -exit => TrendLabel::Decreasing,
        _ if rel > enter => TrendLabel::Increasing,
        _ if rel < -enter => TrendLabel::Decreasing,
        _ => TrendLabel::Stable,
    }
}

/// First crossing of the limit along `(origin, current), path…`, linearly
/// interpolated between grid points.
fn crossing(
    spec: &MetricSpec,
    current: f64,
    origin: Timestamp,
    path: &[Forecast],
    value: impl Fn(&Forecast) -> f64,
    now: Timestamp,
    horizon_hours: f64,
) -> TimeToLimit {
    let Some(limit) = spec.limit else {
        return TimeToLimit::NoLimit;
    };
    if spec.is_over(current) {
        return TimeToLimit::AlreadyOver;
    }
    let (mut t0, mut v0) = (origin, current);
    for f in path {
        let v1 = value(f);
        if spec.is_over(v1) {
            let frac = if v1 != v0 {
                ((limit - v0) / (v1 - v0)).clamp(0.0, 1.0)
            } else {
                1.0
            };
            let ms = t0.as_millis() as f64 + frac * (f.at.as_millis() - t0.as_millis()) as f64;
            let at = Timestamp::from_millis(ms.round() as i64).max(now);
            let hours = at.secs_since(now) / 3600.0;
            if hours > horizon_hours {
                break;
            }
            return TimeToLimit::Within { hours, at };
        }
        (t0, v0) = (f.at, v1);
    }
    TimeToLimit::NotWithinHorizon { horizon_hours }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis_holds_a_label_until_the_exit_threshold() {
        let s = TrendLabel::Stable;
        assert_eq!(trend_label(s, 0.015, 0.02, 0.01), TrendLabel::Stable);
        let up = trend_label(s, 0.03, 0.02, 0.01);
        assert_eq!(up, TrendLabel::Increasing);
        assert_eq!(trend_label(up, 0.015, 0.02, 0.01), TrendLabel::Increasing);
        assert_eq!(trend_label(up, 0.005, 0.02, 0.01), TrendLabel::Stable);
        assert_eq!(trend_label(up, -0.05, 0.02, 0.01), TrendLabel::Decreasing);
    }

    #[test]
    fn seasonal_moving_average_removes_the_cycle() {
        let v: Vec<f64> = (0..24 * 7)
            .map(|i| 0.5 + 0.3 * (std::f64::consts::TAU * (i % 24) as f64 / 24.0).sin())
            .collect();
        let ma = moving_average(&v[5..], 24);
        assert!(index_slope(&ma).abs() < 1e-12);
        assert!(index_slope(&v[5..]).abs() > 1e-4, "the raw slope is biased");
    }

    #[test]
    fn effective_step_refines_short_histories() {
        let h = Duration::from_secs(3600);
        let z = Duration::ZERO;
        assert_eq!(effective_step(h, Duration::from_secs(86_400 * 2), z), h);
        assert_eq!(
            effective_step(h, Duration::from_secs(600), z),
            Duration::from_secs(15)
        );
        assert_eq!(
            effective_step(h, Duration::from_secs(3), z),
            Duration::from_secs(1)
        );
        // Never finer than the samples: ten samples a minute apart get a
        // one-minute grid, not a 15 s one.
        assert_eq!(
            effective_step(h, Duration::from_secs(540), Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(
            effective_step(h, Duration::from_secs(3 * 3600), Duration::from_secs(7200)),
            h
        );
    }

    #[test]
    fn config_is_validated() {
        let bad = PlannerConfig {
            interval_level: 1.0,
            ..PlannerConfig::default()
        };
        assert_eq!(Planner::new(bad).unwrap_err().label(), "invalid_config");
        let bad = PlannerConfig {
            high_within: Duration::from_secs(10 * 86_400),
            ..PlannerConfig::default()
        };
        assert!(Planner::new(bad).is_err());
    }
}
