//! Trace replay: a request-rate trace drives a service model and any
//! [`AutoScaler`]; the report counts SLO-violation minutes, replica-hours and
//! scale events.
//!
//! The model: each replica serves `capacity_per_replica` requests/s at 100 %
//! CPU; new replicas serve only after `startup`; removed replicas stop at
//! once. p95 latency follows an M/M/1-like curve, `base / (1 − ρ)` with
//! utilisation ρ capped at 0.99, and any overload (ρ ≥ 1) or latency above the
//! SLO counts as a violating minute. Scalers see CPU (percent, capped at 100),
//! the request rate (`rps`), the backlog (`queue`), p95 latency and an error
//! rate equal to the shed fraction.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysmanage_core::{Forecast, LoadForecast, SplitMix64, Timestamp};

use crate::error::{Result, ScalingError};
use crate::observe::{MetricValue, Observation};
use crate::scaler::AutoScaler;

/// A request-rate trace with uniform spacing.
///
/// Always valid: at least two samples (at most [`Trace::MAX_SAMPLES`]), every
/// rate finite and `>= 0`, and a step of whole minutes between one minute
/// and one day (the `minute,rps` CSV format). Deserialising checks the same.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use sysmanage_scaling::Trace;
/// let t = Trace::new("ramp", Duration::from_secs(60), vec![100.0, 200.0])?;
/// assert_eq!(t.rps_at(Duration::from_secs(30)), 150.0);
/// assert!(Trace::new("empty", Duration::from_secs(60), vec![]).is_err());
/// # Ok::<(), sysmanage_scaling::ScalingError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TraceData", into = "TraceData")]
pub struct Trace {
    name: String,
    step: Duration,
    rps: Vec<f64>,
}

/// The serialised form of a [`Trace`], validated on the way in.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TraceData {
    name: String,
    step: Duration,
    rps: Vec<f64>,
}

impl TryFrom<TraceData> for Trace {
    type Error = ScalingError;
    fn try_from(d: TraceData) -> Result<Self> {
        Self::new(d.name, d.step, d.rps)
    }
}

impl From<Trace> for TraceData {
    fn from(t: Trace) -> Self {
        Self {
            name: t.name,
            step: t.step,
            rps: t.rps,
        }
    }
}

/// The synthetic trace shipped with the crate (`traces/synthetic_daily_bursts.csv`).
pub const SYNTHETIC_CSV: &str = include_str!("../traces/synthetic_daily_bursts.csv");
/// UK half-hourly electricity demand, 12 weeks (`traces/uk_electricity_demand_2000.csv`): diurnal and weekly.
pub const UK_ELECTRICITY_CSV: &str = include_str!("../traces/uk_electricity_demand_2000.csv");
/// Washington DC bike-share rentals per hour, 8 weeks (`traces/bikeshare_dc_2011.csv`): diurnal, weather-driven.
pub const BIKESHARE_CSV: &str = include_str!("../traces/bikeshare_dc_2011.csv");
/// MSFT daily share volume, 2,520 trading days (`traces/msft_volume.csv`): bursty.
pub const MSFT_VOLUME_CSV: &str = include_str!("../traces/msft_volume.csv");
/// Box & Jenkins airline passengers, 144 months (`traces/air_passengers.csv`): trending and seasonal.
pub const AIR_PASSENGERS_CSV: &str = include_str!("../traces/air_passengers.csv");
/// Monthly sunspot numbers, 2,820 months (`traces/sunspots_monthly.csv`): noisy.
pub const SUNSPOTS_CSV: &str = include_str!("../traces/sunspots_monthly.csv");

impl Trace {
    /// Most samples a trace may hold (2^24: 32 years at one-minute steps).
    pub const MAX_SAMPLES: usize = 1 << 24;

    /// A validated trace.
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`] for fewer than two or more than
    /// [`MAX_SAMPLES`](Self::MAX_SAMPLES) samples, a negative or non-finite
    /// rate (naming its index), or a step that is not a whole number of
    /// minutes between one minute and one day.
    pub fn new(name: impl Into<String>, step: Duration, rps: Vec<f64>) -> Result<Self> {
        if rps.len() < 2 || rps.len() > Self::MAX_SAMPLES {
            return Err(ScalingError::invalid(
                "trace",
                format!(
                    "needs between 2 and {} samples, got {}",
                    Self::MAX_SAMPLES,
                    rps.len()
                ),
            ));
        }
        if let Some((i, v)) = rps
            .iter()
            .enumerate()
            .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
        {
            return Err(ScalingError::invalid(
                "trace",
                format!("sample {i}: rps must be finite and >= 0, got {v}"),
            ));
        }
        if step < Duration::from_secs(60)
            || step > Duration::from_secs(86_400)
            || step.subsec_nanos() != 0
            || !step.as_secs().is_multiple_of(60)
        {
            return Err(ScalingError::invalid(
                "trace.step",
                format!("must be a whole number of minutes between 1 min and 1 day, got {step:?}"),
            ));
        }
        Ok(Self {
            name: name.into(),
            step,
            rps,
        })
    }

    /// The name for reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the trace.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Spacing of the samples.
    pub fn step(&self) -> Duration {
        self.step
    }

    /// Requests per second, one value per step.
    pub fn rps(&self) -> &[f64] {
        &self.rps
    }

    /// Parses `minute,rps` CSV: `#` comment lines and one header line are
    /// skipped; minutes must start at 0 and be evenly spaced.
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`] naming the line for malformed rows,
    /// uneven spacing, negative or non-finite rates, or fewer than two rows.
    pub fn from_csv(name: impl Into<String>, text: &str) -> Result<Self> {
        let mut minutes = Vec::new();
        let mut rps = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with("minute") {
                continue;
            }
            let bad = |why: &str| ScalingError::invalid("trace", format!("line {}: {why}", i + 1));
            let (m, v) = line
                .split_once(',')
                .ok_or_else(|| bad("expected `minute,rps`"))?;
            let m: u64 = m
                .trim()
                .parse()
                .map_err(|_| bad("minute is not an integer"))?;
            let v: f64 = v.trim().parse().map_err(|_| bad("rps is not a number"))?;
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad("rps must be finite and >= 0"));
            }
            if rps.len() >= Self::MAX_SAMPLES {
                return Err(bad("too many rows"));
            }
            minutes.push(m);
            rps.push(v);
        }
        if rps.len() < 2 {
            return Err(ScalingError::invalid("trace", "needs at least two rows"));
        }
        let step = minutes[1].saturating_sub(minutes[0]);
        if minutes[0] != 0
            || step == 0
            || minutes
                .windows(2)
                .any(|w| w[0].checked_add(step) != Some(w[1]))
        {
            return Err(ScalingError::invalid(
                "trace",
                "minutes must start at 0 and be evenly spaced",
            ));
        }
        Self::new(name, Duration::from_secs(step.saturating_mul(60)), rps)
    }

    /// The traces shipped in `traces/`, in this order: `synthetic`,
    /// `uk-electricity` (diurnal), `bikeshare-dc` (diurnal, weather-driven),
    /// `msft-volume` (bursty), `air-passengers` (trending), `sunspots` (noisy).
    /// Sources and licences are in `traces/README.md`.
    ///
    /// # Errors
    /// Never for the shipped files (they are tested); kept fallible for symmetry with [`from_csv`](Self::from_csv).
    pub fn shipped() -> Result<Vec<Self>> {
        Ok(vec![
            Self::from_csv("synthetic", SYNTHETIC_CSV)?,
            Self::from_csv("uk-electricity", UK_ELECTRICITY_CSV)?,
            Self::from_csv("bikeshare-dc", BIKESHARE_CSV)?,
            Self::from_csv("msft-volume", MSFT_VOLUME_CSV)?,
            Self::from_csv("air-passengers", AIR_PASSENGERS_CSV)?,
            Self::from_csv("sunspots", SUNSPOTS_CSV)?,
        ])
    }

    /// A deterministic synthetic trace at one-minute steps: a daily cycle
    /// between `base` and about `3 × base` (peak mid-afternoon), a weekend
    /// dip, ±5 % noise, and a few bursts a day that triple the load for
    /// 5–20 minutes.
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`] for `days` outside `1..=11_000` or a
    /// `base` that is negative or not finite.
    pub fn synthetic(seed: u64, days: u32, base: f64) -> Result<Self> {
        if !(1..=11_000).contains(&days) {
            return Err(ScalingError::invalid(
                "trace.days",
                format!("must be between 1 and 11000, got {days}"),
            ));
        }
        if !(base.is_finite() && base >= 0.0) {
            return Err(ScalingError::invalid(
                "trace.base",
                format!("must be a finite number >= 0, got {base}"),
            ));
        }
        let mut rng = SplitMix64::new(seed);
        let mut unit = move || rng.next_f64();
        let n = days as usize * 1440;
        let mut rps = Vec::with_capacity(n);
        let mut burst_left = 0u32;
        for m in 0..n {
            let day = m / 1440;
            let hour = (m % 1440) as f64 / 60.0;
            let daily = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * (hour - 3.0) / 24.0).cos();
            let weekend = if day % 7 >= 5 { 0.7 } else { 1.0 };
            let mut v = base * (1.0 + 2.0 * daily * weekend) * (0.95 + 0.1 * unit());
            if burst_left == 0 && unit() < 3.0 / 1440.0 {
                burst_left = 5 + (unit() * 15.0) as u32;
            }
            if burst_left > 0 {
                burst_left -= 1;
                v *= 3.0;
            }
            rps.push((v * 100.0).round() / 100.0);
        }
        Self::new("synthetic", Duration::from_secs(60), rps)
    }

    /// The trace as `minute,rps` CSV with a comment header.
    pub fn to_csv(&self, comment: &str) -> String {
        let mut out = String::with_capacity(self.rps.len() * 12);
        for line in comment.lines() {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("minute,rps\n");
        let step = self.step.as_secs() / 60;
        for (i, v) in self.rps.iter().enumerate() {
            out.push_str(&format!("{},{v:.2}\n", i as u64 * step));
        }
        out
    }

    /// The trace's length.
    pub fn duration(&self) -> Duration {
        // both bounded by `new`: at most 2^24 samples of at most one day
        self.step
            .checked_mul(u32::try_from(self.rps.len()).unwrap_or(u32::MAX))
            .unwrap_or(Duration::MAX)
    }

    /// The request rate `t` after the start, linearly interpolated (held after the end).
    pub fn rps_at(&self, t: Duration) -> f64 {
        let x = t.as_secs_f64() / self.step.as_secs_f64();
        // `as` saturates; the trace has at least two samples
        let i = x.floor() as usize;
        let last = self.rps.len() - 1;
        if i >= last {
            return self.rps[last];
        }
        let frac = x - i as f64;
        self.rps[i] * (1.0 - frac) + self.rps[i + 1] * frac
    }

    /// The first `d` of the trace (at least its first two samples).
    #[must_use]
    pub fn truncated(&self, d: Duration) -> Self {
        let n =
            ((d.as_secs_f64() / self.step.as_secs_f64()).ceil() as usize).clamp(2, self.rps.len());
        Self {
            name: self.name.clone(),
            step: self.step,
            rps: self.rps[..n].to_vec(),
        }
    }
}

/// The simulated service; [`simulate`] validates it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceModel {
    /// Requests/s one replica serves at 100 % CPU (finite, `> 0`).
    pub capacity_per_replica: f64,
    /// Time from scale-up to serving (at most one day).
    pub startup: Duration,
    /// p95 latency of an idle replica, ms (`> 0`, at most 10^9).
    pub base_latency_ms: f64,
    /// The latency SLO, ms (`> 0`, at most 10^9).
    pub slo_latency_ms: f64,
    /// Replicas at the start (at most [`MAX_REPLICAS`](crate::limits::MAX_REPLICAS)).
    pub initial_replicas: u32,
}

impl Default for ServiceModel {
    fn default() -> Self {
        Self {
            capacity_per_replica: 100.0,
            startup: Duration::from_secs(120),
            base_latency_ms: 50.0,
            slo_latency_ms: 250.0,
            initial_replicas: 4,
        }
    }
}

/// What a replay measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimReport {
    /// The trace.
    pub trace: String,
    /// The scaler.
    pub scaler: String,
    /// Minutes with p95 latency above the SLO or overload.
    pub slo_violation_minutes: f64,
    /// Provisioned replicas × hours (starting replicas count: they are paid for).
    pub replica_hours: f64,
    /// Actuations.
    pub scale_events: u32,
    /// The most replicas provisioned at once.
    pub peak_replicas: u32,
    /// Decisions that returned an error.
    pub decision_errors: u32,
}

impl SimReport {
    /// Pareto dominance: at most as many SLO-violation minutes *and*
    /// replica-hours as `other`, and strictly fewer of one.
    pub fn dominates(&self, other: &Self) -> bool {
        let (a, b) = (
            (self.slo_violation_minutes, self.replica_hours),
            (other.slo_violation_minutes, other.replica_hours),
        );
        a.0 <= b.0 && a.1 <= b.1 && (a.0 < b.0 || a.1 < b.1)
    }
}

/// Most steps one [`simulate`] call runs (2^25: over 15 years at 15 s steps).
pub const MAX_SIM_STEPS: u64 = 1 << 25;

/// Replays `trace` through `scaler` deciding every `interval` (simulation
/// step = `interval`). `feed` receives every observed request rate (for a
/// forecaster that learns online).
///
/// A decision above [`MAX_REPLICAS`](crate::limits::MAX_REPLICAS) (possible
/// only from a custom [`AutoScaler`]) counts as a decision error and is not
/// actuated.
///
/// # Errors
/// [`ScalingError::OutOfRange`] for an interval outside 1 s ..= 1 day, a
/// model outside the ranges documented on [`ServiceModel`];
/// [`ScalingError::InvalidSpec`] for more than [`MAX_SIM_STEPS`] steps.
pub fn simulate(
    trace: &Trace,
    scaler: &mut dyn AutoScaler,
    model: &ServiceModel,
    interval: Duration,
    feed: Option<&mut dyn FnMut(Timestamp, f64)>,
) -> Result<SimReport> {
    simulate_steps(trace, scaler, model, interval, feed, &mut |_| {})
}

/// One step of a replay, as [`simulate_steps`] reports it: what the service
/// saw and what the scaler did.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SimStep {
    /// When (the replay starts at [`SIM_START`]).
    pub at: Timestamp,
    /// The demand, requests/s.
    pub rps: f64,
    /// Replicas provisioned (paid for) during the step.
    pub provisioned: u32,
    /// Replicas serving during the step (start-up over).
    pub ready: u32,
    /// Whether the step counted as SLO-violating (p95 above the SLO or overload).
    pub violating: bool,
    /// The replica count the scaler actuated at the end of the step, if it scaled.
    pub scaled_to: Option<u32>,
}

/// The simulated time at which every replay starts (2023-11-14 22:13:20 UTC).
pub const SIM_START: Timestamp = Timestamp::from_secs(1_700_000_000);

/// As [`simulate`], handing every step to `on_step` (for charts and
/// timelines); the report is the same.
///
/// # Errors
/// As [`simulate`].
pub fn simulate_steps(
    trace: &Trace,
    scaler: &mut dyn AutoScaler,
    model: &ServiceModel,
    interval: Duration,
    mut feed: Option<&mut dyn FnMut(Timestamp, f64)>,
    on_step: &mut dyn FnMut(&SimStep),
) -> Result<SimReport> {
    crate::limits::duration(
        "simulate.interval",
        interval,
        crate::limits::MIN_STEP,
        crate::limits::MAX_WINDOW,
    )?;
    for (f, v, max) in [
        (
            "model.capacityPerReplica",
            model.capacity_per_replica,
            f64::MAX,
        ),
        ("model.baseLatencyMs", model.base_latency_ms, 1e9),
        ("model.sloLatencyMs", model.slo_latency_ms, 1e9),
    ] {
        if !(v.is_finite() && v > 0.0 && v <= max) {
            return Err(ScalingError::OutOfRange {
                field: f,
                value: v.to_string(),
                range: format!("(0, {max:e}]"),
            });
        }
    }
    crate::limits::duration(
        "model.startup",
        model.startup,
        Duration::ZERO,
        crate::limits::MAX_WINDOW,
    )?;
    crate::limits::replicas("model.initialReplicas", model.initial_replicas)?;
    let start = SIM_START;
    let steps = (trace.duration().as_secs_f64() / interval.as_secs_f64()).floor() as u64;
    if steps > MAX_SIM_STEPS {
        return Err(ScalingError::invalid(
            "simulate.interval",
            format!(
                "{interval:?} over {:?} makes {steps} steps, more than {MAX_SIM_STEPS}",
                trace.duration()
            ),
        ));
    }
    let step_h = interval.as_secs_f64() / 3600.0;
    let step_min = interval.as_secs_f64() / 60.0;
    // provisioned replicas still starting as (ready at, how many), oldest
    // first: one entry per scale-up, so memory follows the scale events, not
    // the replica count; those whose start-up is over are only counted
    let mut replicas: VecDeque<(Timestamp, u32)> = VecDeque::new();
    let mut ready_count = model.initial_replicas;
    let mut provisioned = model.initial_replicas;
    let mut report = SimReport {
        trace: trace.name.clone(),
        scaler: scaler.name().to_owned(),
        slo_violation_minutes: 0.0,
        replica_hours: 0.0,
        scale_events: 0,
        peak_replicas: model.initial_replicas,
        decision_errors: 0,
    };
    let mut obs = Observation::new(0)
        .reading("cpu", MetricValue::Average(0.0))
        .reading("rps", MetricValue::Total(0.0))
        .reading("queue", MetricValue::Total(0.0));
    for k in 0..steps {
        // k × interval <= the trace's duration, which `Trace::new` bounds
        let t = interval
            .checked_mul(u32::try_from(k).unwrap_or(u32::MAX))
            .unwrap_or(Duration::MAX);
        let now = start + t;
        let rps = trace.rps_at(t);
        if let Some(f) = feed.as_mut() {
            f(now, rps);
        }
        // replicas whose start-up is over join the ready count for good
        while let Some(&(at, n)) = replicas.front()
            && at <= now
        {
            ready_count = ready_count.saturating_add(n);
            replicas.pop_front();
        }
        let ready = ready_count;
        let capacity = f64::from(ready) * model.capacity_per_replica;
        let util = if capacity > 0.0 {
            rps / capacity
        } else {
            f64::INFINITY
        };
        let latency = if util >= 1.0 {
            model.base_latency_ms / 0.01
        } else {
            model.base_latency_ms / (1.0 - util)
        };
        let overload = util >= 1.0 && rps > 0.0;
        let violating = overload || latency > model.slo_latency_ms;
        if violating {
            report.slo_violation_minutes += step_min;
        }
        let mut step = SimStep {
            at: now,
            rps,
            provisioned,
            ready,
            violating,
            scaled_to: None,
        };
        report.replica_hours += f64::from(provisioned) * step_h;
        report.peak_replicas = report.peak_replicas.max(provisioned);
        let shed = if util > 1.0 { 1.0 - 1.0 / util } else { 0.0 };
        // one observation reused across steps: no allocation per decision
        obs.current_replicas = provisioned;
        obs.ready_replicas = Some(ready);
        obs.readings[0].value = MetricValue::Average(if util.is_finite() {
            (util * 100.0).min(100.0)
        } else {
            100.0
        });
        obs.readings[1].value = MetricValue::Total(rps);
        obs.readings[2].value = MetricValue::Total((rps - capacity).max(0.0));
        obs.latency_p95_ms = Some(latency.min(60_000.0));
        obs.error_rate = Some(shed);
        match scaler.decide(&obs, now) {
            Ok(d) if d.desired_replicas > crate::limits::MAX_REPLICAS => {
                report.decision_errors += 1;
            }
            Ok(d) if d.desired_replicas != provisioned => {
                let to = d.desired_replicas;
                if to > provisioned {
                    replicas.push_back((now + model.startup, to - provisioned));
                } else {
                    // the newest replicas go first
                    let mut remove = provisioned - to;
                    while remove > 0 {
                        let Some(last) = replicas.back_mut() else {
                            break;
                        };
                        let n = last.1.min(remove);
                        last.1 -= n;
                        remove -= n;
                        if last.1 == 0 {
                            replicas.pop_back();
                        }
                    }
                    // then ready ones
                    ready_count -= remove.min(ready_count);
                }
                scaler.record_actuation(provisioned, to, now);
                provisioned = to;
                report.scale_events += 1;
                step.scaled_to = Some(to);
            }
            Ok(_) => {}
            Err(_) => report.decision_errors += 1,
        }
        on_step(&step);
    }
    Ok(report)
}

/// The largest relative error [`SeasonalNaive`] records for one forecast.
const MAX_RELATIVE_ERROR: f64 = 1e6;

/// The longest season [`SeasonalNaive`] accepts, in steps.
const MAX_SEASON_STEPS: usize = 1 << 20;

/// A small online forecaster for replays and tests: seasonal naive with a
/// level correction, `ŷ(t+h) = y(t+h−S) × mean(last hour) / mean(the hour a season earlier)`,
/// reporting its own rolling mean absolute percentage error as `recent_error`.
#[derive(Debug)]
pub struct SeasonalNaive {
    signal: String,
    step: Duration,
    season: usize,
    inner: Mutex<NaiveState>,
}

#[derive(Debug)]
struct NaiveState {
    history: VecDeque<(Timestamp, f64)>,
    /// `cum[i]`: the sum of every value observed up to and including `history[i]`.
    cum: VecDeque<f64>,
    /// The sum of every value observed before `history[0]`.
    base: f64,
    errors: VecDeque<f64>,
    /// Level correction as of the last observation.
    level: f64,
}

impl NaiveState {
    /// The sum of `history[lo..hi]` in O(1).
    fn sum(&self, lo: usize, hi: usize) -> f64 {
        if hi <= lo {
            return 0.0;
        }
        let before = if lo == 0 { self.base } else { self.cum[lo - 1] };
        self.cum[hi - 1] - before
    }
}

impl SeasonalNaive {
    /// A forecaster for `signal` sampled every `step` with season `season` (e.g. one day).
    ///
    /// # Errors
    /// [`ScalingError::OutOfRange`] for a step outside 1 s ..= 1 day or a
    /// season of more than 2^20 steps; [`ScalingError::InvalidSpec`] when the
    /// season is not a whole multiple of the step.
    pub fn new(signal: impl Into<String>, step: Duration, season: Duration) -> Result<Self> {
        crate::limits::duration(
            "seasonalNaive.step",
            step,
            crate::limits::MIN_STEP,
            crate::limits::MAX_WINDOW,
        )?;
        if season < step || !season.as_millis().is_multiple_of(step.as_millis()) {
            return Err(ScalingError::invalid(
                "seasonalNaive.season",
                "must be a whole multiple of the step",
            ));
        }
        if season.as_millis() / step.as_millis() > MAX_SEASON_STEPS as u128 {
            return Err(ScalingError::OutOfRange {
                field: "seasonalNaive.season",
                value: format!("{season:?}"),
                range: format!("at most {MAX_SEASON_STEPS} steps"),
            });
        }
        Ok(Self {
            signal: signal.into(),
            step,
            season: (season.as_millis() / step.as_millis()) as usize,
            inner: Mutex::new(NaiveState {
                history: VecDeque::new(),
                cum: VecDeque::new(),
                base: 0.0,
                errors: VecDeque::new(),
                level: 1.0,
            }),
        })
    }

    fn hour(&self) -> usize {
        ((3_600_000 / self.step.as_millis().max(1)) as usize).max(1)
    }

    /// The level correction: mean of the last hour over the mean of the hour a season earlier.
    fn level(&self, st: &NaiveState) -> f64 {
        let n = st.history.len();
        let h = self.hour().min(n);
        if h == 0 {
            return 1.0;
        }
        let recent = st.sum(n - h, n) / h as f64;
        let Some(then) = n.checked_sub(self.season) else {
            return 1.0;
        };
        let lo = then.saturating_sub(h);
        if then == lo {
            return 1.0;
        }
        let m = st.sum(lo, then) / (then - lo) as f64;
        if m > 0.0 {
            (recent / m).clamp(0.5, 2.0)
        } else {
            1.0
        }
    }

    fn predict(st: &NaiveState, back: usize) -> Option<f64> {
        // value `back` samples ago, corrected by the level change over the last hour
        let n = st.history.len();
        if back == 0 || back > n {
            return None;
        }
        Some(st.history[n - back].1 * st.level)
    }

    /// Feeds one observation (they must come every `step`).
    pub fn observe(&self, at: Timestamp, value: f64) {
        let mut st = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if st.history.len() >= self.season
            && let Some(p) = Self::predict(&st, self.season)
            && value > 0.0
        {
            if st.errors.len() >= self.hour() {
                st.errors.pop_front();
            }
            // capped: a subnormal actual value must not make the mean infinite
            st.errors
                .push_back(((p - value) / value).abs().min(MAX_RELATIVE_ERROR));
        }
        if st.history.len() >= self.season + self.hour() {
            st.history.pop_front();
            if let Some(c) = st.cum.pop_front() {
                st.base = c;
            }
        }
        let total = st.cum.back().copied().unwrap_or(st.base) + value;
        st.history.push_back((at, value));
        st.cum.push_back(total);
        st.level = self.level(&st);
    }
}

impl LoadForecast for SeasonalNaive {
    fn forecast(
        &self,
        metric: &str,
        now: Timestamp,
        horizon: Duration,
    ) -> sysmanage_core::Result<Forecast> {
        if metric != self.signal {
            return Err(sysmanage_core::Error::Unknown {
                kind: "metric",
                name: metric.into(),
            });
        }
        let st = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // a horizon beyond usize is beyond any season: insufficient data
        let ahead =
            usize::try_from(horizon.as_millis() / self.step.as_millis()).unwrap_or(usize::MAX);
        let have = st.history.len();
        if have < self.season || ahead >= self.season {
            return Err(sysmanage_core::Error::InsufficientData {
                what: "seasonal naive forecast",
                needed: self.season,
                have,
            });
        }
        let v = Self::predict(&st, self.season - ahead).unwrap_or(0.0);
        Forecast::exact(now + horizon, v)
    }

    fn recent_error(&self, metric: &str) -> Option<f64> {
        if metric != self.signal {
            return None;
        }
        let st = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if st.errors.len() < self.hour() {
            return None;
        }
        Some(st.errors.iter().sum::<f64>() / st.errors.len() as f64)
    }
}
