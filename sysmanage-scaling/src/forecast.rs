//! [`SeasonalMedian`]: a burst-robust online forecaster that measures its own
//! error and reports calibrated prediction intervals.
//!
//! Predictive scaling needs two things from a forecaster: a point forecast
//! that one unusual day (a burst, an outage) does not distort, and an honest
//! statement of how far off it tends to be, so the scaler can decide how much
//! to trust it on *this* signal. [`SeasonalMedian`] gives both in O(1) per
//! observation and per forecast:
//!
//! - the point forecast for time `t` is the **median** of the values observed
//!   at the same phase of the last `seasons` seasons (e.g. the same 15-second
//!   slot of the last seven days), times a **level** factor: the last hour's
//!   observed load over what the same medians expected for that hour, clamped
//!   to `0.5..=2` (trend, weather, a slow week);
//! - every observation is compared with the forecast the forecaster made for
//!   it one evaluation horizon earlier (the consumer's lead time); the signed
//!   relative errors of the last error window give
//!   [`recent_error`](LoadForecast::recent_error) (their mean absolute value)
//!   and the prediction interval (their empirical quantiles at
//!   `(1 − coverage) / 2` and `(1 + coverage) / 2`, scaled by the point).

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sysmanage_core::{Forecast, LoadForecast, Timestamp};

use crate::error::{Result, ScalingError};

/// Most seasons one median looks back over.
pub const MAX_SEASONS: usize = 16;
/// Most `season / step × seasons` values a [`SeasonalMedian`] may keep (2^22).
pub const MAX_STORED_VALUES: usize = 1 << 22;

/// Error-histogram resolution: one bin per percentage point of relative error.
const BINS_PER_UNIT: f64 = 100.0;
/// Relative errors are recorded in `-1.0 ..= ERROR_CAP` (the last bin holds everything above).
const ERROR_CAP: f64 = 2.0;
const BINS: usize = ((1.0 + ERROR_CAP) * BINS_PER_UNIT) as usize + 1;

/// A seasonal-median forecaster with a level correction and empirical
/// prediction intervals; see the [module docs](self).
///
/// Observations are slotted by time (`floor(at / step)`); a second
/// observation for the same or an earlier slot is ignored, and missing slots
/// simply contribute nothing.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use sysmanage_core::{LoadForecast, Timestamp};
/// use sysmanage_scaling::SeasonalMedian;
///
/// let minute = Duration::from_secs(60);
/// let f = SeasonalMedian::new("rps", minute, Duration::from_secs(3600), Duration::from_secs(300))?
///     .with_seasons(3)?;
/// // three "hours" of a ramp 0..59, then a burst in minute 10 of the third
/// for i in 0..180i64 {
///     let v = if i == 130 { 10_000.0 } else { (i % 60) as f64 + 100.0 };
///     f.observe(Timestamp::from_secs(i * 60), v);
/// }
/// // the burst is one of three values for minute 10: the median ignores it
/// let fc = f.forecast("rps", Timestamp::from_secs(179 * 60), Duration::from_secs(11 * 60))?;
/// assert!((fc.point - 110.0).abs() < 2.0, "{fc:?}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SeasonalMedian {
    signal: String,
    step_ms: i64,
    season: usize,
    seasons: usize,
    horizon_slots: usize,
    hour_slots: usize,
    window: usize,
    coverage: f64,
    inner: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// `values[phase * seasons + k]`: the last `seasons` values at `phase`, a ring.
    values: Vec<f64>,
    /// How many values each phase holds (at most `seasons`).
    filled: Vec<u8>,
    /// Where each phase's ring writes next.
    head: Vec<u8>,
    /// The median per phase (NaN before the first value).
    median: Vec<f64>,
    last_slot: Option<i64>,
    /// The last hour's observed/expected ratios as level bins, oldest first,
    /// and their histogram.
    level_bins: VecDeque<usize>,
    level_hist: Vec<u32>,
    /// Where the median of the ratios is in `level_hist`.
    level_median: Cursor,
    /// The median of those ratios.
    level: f64,
    /// Forecasts made `horizon` ahead, as (target slot, value), oldest first.
    pending: VecDeque<(i64, f64)>,
    /// Signed relative errors `(actual − forecast) / forecast`, oldest first.
    errors: VecDeque<f64>,
    histogram: Vec<u32>,
    abs_histogram: Vec<u32>,
    /// Empirical error quantiles `(lower, upper)` of the current window.
    quantiles: (f64, f64),
    /// Errors recorded since the quantiles were last computed.
    since_quantiles: usize,
}

impl SeasonalMedian {
    /// A forecaster of `signal` observed every `step`, with seasonality
    /// `season` (e.g. one day), evaluating its own error at `horizon` ahead
    /// (the consumer's lead time). Defaults: medians over 7 seasons, error
    /// window of one season, 90 % intervals.
    ///
    /// # Errors
    /// [`ScalingError::OutOfRange`] for a step outside 1 s ..= 1 day, a
    /// horizon outside `step ..= season`, or more than
    /// [`MAX_STORED_VALUES`] stored values; [`ScalingError::InvalidSpec`]
    /// for an empty signal or a season that is not a whole multiple of the
    /// step.
    pub fn new(
        signal: impl Into<String>,
        step: Duration,
        season: Duration,
        horizon: Duration,
    ) -> Result<Self> {
        let signal = signal.into();
        if signal.is_empty() {
            return Err(ScalingError::invalid(
                "seasonalMedian.signal",
                "must not be empty",
            ));
        }
        crate::limits::duration(
            "seasonalMedian.step",
            step,
            crate::limits::MIN_STEP,
            crate::limits::MAX_WINDOW,
        )?;
        let step_ms = step.as_millis();
        if season < step || !season.as_millis().is_multiple_of(step_ms) {
            return Err(ScalingError::invalid(
                "seasonalMedian.season",
                "must be a whole multiple of the step",
            ));
        }
        let slots = season.as_millis() / step_ms;
        crate::limits::duration("seasonalMedian.horizon", horizon, step, season)?;
        let mut f = Self {
            signal,
            // at most one day in milliseconds: fits easily
            step_ms: i64::try_from(step_ms).unwrap_or(i64::MAX),
            season: 0,
            seasons: 0,
            horizon_slots: usize::try_from(horizon.as_millis() / step_ms).unwrap_or(usize::MAX),
            hour_slots: usize::try_from(3_600_000 / step_ms).unwrap_or(1).max(1),
            window: 0,
            coverage: 0.9,
            inner: Mutex::new(State::empty()),
        };
        f.season = usize::try_from(slots)
            .ok()
            .filter(|&s| s <= MAX_STORED_VALUES)
            .ok_or_else(|| ScalingError::OutOfRange {
                field: "seasonalMedian.season",
                value: format!("{season:?}"),
                range: format!("at most {MAX_STORED_VALUES} steps"),
            })?;
        f.window = f.season;
        f.with_seasons(7)
    }

    /// Medians over the last `seasons` seasons (`1..=16`; 1 is seasonal naive).
    ///
    /// # Errors
    /// [`ScalingError::OutOfRange`] for a count outside `1..=16` or more than
    /// [`MAX_STORED_VALUES`] stored values.
    pub fn with_seasons(mut self, seasons: usize) -> Result<Self> {
        if !(1..=MAX_SEASONS).contains(&seasons) {
            return Err(ScalingError::OutOfRange {
                field: "seasonalMedian.seasons",
                value: seasons.to_string(),
                range: format!("1..={MAX_SEASONS}"),
            });
        }
        if self.season.saturating_mul(seasons) > MAX_STORED_VALUES {
            return Err(ScalingError::OutOfRange {
                field: "seasonalMedian.seasons",
                value: seasons.to_string(),
                range: format!(
                    "season steps × seasons at most {MAX_STORED_VALUES} (the season has {} steps)",
                    self.season
                ),
            });
        }
        self.seasons = seasons;
        *self.inner.get_mut().unwrap_or_else(PoisonError::into_inner) =
            State::new(self.season, seasons);
        Ok(self)
    }

    /// The coverage of the prediction intervals, in `0.5 ..= 0.99` (default 0.9).
    ///
    /// # Errors
    /// [`ScalingError::OutOfRange`] outside that range.
    pub fn with_coverage(mut self, coverage: f64) -> Result<Self> {
        self.coverage = crate::limits::number("seasonalMedian.coverage", coverage, 0.5, 0.99)?;
        Ok(self)
    }

    /// Feeds one observation. Negative and non-finite values are ignored.
    pub fn observe(&self, at: Timestamp, value: f64) {
        if !(value.is_finite() && value >= 0.0) {
            return;
        }
        let slot = at.as_millis().div_euclid(self.step_ms);
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let st = &mut *guard;
        if st.last_slot.is_some_and(|l| slot <= l) {
            return;
        }
        st.last_slot = Some(slot);
        let phase = self.phase(slot);

        // 1. score the forecast made `horizon` ago for this slot
        while st.pending.front().is_some_and(|&(s, _)| s < slot) {
            st.pending.pop_front();
        }
        if st.pending.front().is_some_and(|&(s, _)| s == slot)
            && let Some((_, predicted)) = st.pending.pop_front()
            && predicted > 0.0
        {
            let e = ((value - predicted) / predicted).clamp(-1.0, ERROR_CAP);
            self.record_error(st, e);
        }

        // 2. the level: the last hour observed against what the medians expected
        let expected = st.median[phase];
        let expected = if expected.is_nan() { value } else { expected };
        if st.level_bins.len() >= self.hour_slots
            && let Some(b) = st.level_bins.pop_front()
        {
            st.level_hist[b] = st.level_hist[b].saturating_sub(1);
            if b < st.level_median.bin {
                st.level_median.below -= 1;
            }
        }
        let ratio = if expected > 0.0 {
            value / expected
        } else {
            1.0
        };
        let b = level_bin(ratio);
        st.level_bins.push_back(b);
        st.level_hist[b] += 1;
        if b < st.level_median.bin {
            st.level_median.below += 1;
        }
        let half = st.level_bins.len().div_ceil(2);
        st.level = level_of_bin(st.level_median.seek(&st.level_hist, half));

        // 3. this phase's median, for the same phase of the next season
        let base = phase * self.seasons;
        let head = usize::from(st.head[phase]);
        st.values[base + head] = value;
        st.head[phase] = u8::try_from((head + 1) % self.seasons).unwrap_or(0);
        let n = (usize::from(st.filled[phase]) + 1).min(self.seasons);
        st.filled[phase] = u8::try_from(n).unwrap_or(u8::MAX);
        st.median[phase] = median(&st.values[base..base + n]);

        // 4. the forecast for `horizon` ahead, scored when that slot is observed
        let target = slot.saturating_add(i64::try_from(self.horizon_slots).unwrap_or(i64::MAX));
        let m = st.median[self.phase(target)];
        if !m.is_nan() {
            let p = m * st.level;
            st.pending.push_back((target, p));
        }
    }

    fn phase(&self, slot: i64) -> usize {
        // `season` is at most 2^22, so the remainder fits
        usize::try_from(slot.rem_euclid(i64::try_from(self.season).unwrap_or(i64::MAX)))
            .unwrap_or(0)
    }

    fn record_error(&self, st: &mut State, e: f64) {
        if st.errors.len() >= self.window
            && let Some(old) = st.errors.pop_front()
        {
            let b = bin(old);
            st.histogram[b] = st.histogram[b].saturating_sub(1);
            let a = abs_bin(old);
            st.abs_histogram[a] = st.abs_histogram[a].saturating_sub(1);
        }
        st.errors.push_back(e);
        st.histogram[bin(e)] += 1;
        st.abs_histogram[abs_bin(e)] += 1;
        // the quantiles move slowly over a window of many errors: refresh
        // them every 1/64 of the window (every error while it fills)
        st.since_quantiles += 1;
        let n = st.errors.len();
        if st.since_quantiles >= (n / 64).max(1) {
            st.since_quantiles = 0;
            let tail = (n as f64 * (1.0 - self.coverage) / 2.0).ceil().max(1.0) as usize;
            st.quantiles = (
                quantile_from_bottom(&st.histogram, tail),
                quantile_from_top(&st.histogram, tail),
            );
        }
    }

    /// The point forecast at `now + horizon`, with the state already locked.
    fn point_locked(
        &self,
        st: &State,
        now: Timestamp,
        horizon: Duration,
    ) -> sysmanage_core::Result<f64> {
        let ahead = horizon.as_millis() / self.step_ms.unsigned_abs().max(1) as u128;
        if ahead >= self.season as u128 {
            return Err(sysmanage_core::Error::InsufficientData {
                what: "seasonal median forecast (horizon beyond one season)",
                needed: self.season,
                have: usize::try_from(ahead).unwrap_or(usize::MAX),
            });
        }
        let target = (now + horizon).as_millis().div_euclid(self.step_ms);
        let m = st.median[self.phase(target)];
        if m.is_nan() {
            return Err(sysmanage_core::Error::InsufficientData {
                what: "seasonal median forecast (a season of history)",
                needed: self.season,
                have: 0,
            });
        }
        Ok(m * st.level)
    }

    /// A point forecast with the interval of the current error quantiles.
    fn with_interval(
        &self,
        st: &State,
        at: Timestamp,
        point: f64,
    ) -> sysmanage_core::Result<Forecast> {
        let (lo, hi) = st.quantiles;
        let lower = (point * (1.0 + lo.min(0.0))).max(0.0);
        let upper = point * (1.0 + hi.max(0.0));
        Forecast::new(at, point, lower.min(point), upper, self.coverage)
    }
}

impl State {
    fn empty() -> Self {
        Self::new(0, 0)
    }

    fn new(season: usize, seasons: usize) -> Self {
        Self {
            values: vec![0.0; season * seasons],
            filled: vec![0; season],
            head: vec![0; season],
            median: vec![f64::NAN; season],
            last_slot: None,
            level_bins: VecDeque::new(),
            level_hist: vec![0; LEVEL_BINS],
            level_median: Cursor::default(),
            level: 1.0,
            pending: VecDeque::new(),
            errors: VecDeque::new(),
            histogram: vec![0; BINS],
            abs_histogram: vec![0; BINS],
            quantiles: (0.0, 0.0),
            since_quantiles: 0,
        }
    }
}

/// A position in a histogram that follows an order statistic as entries
/// come and go: `below` counts the entries in bins before `bin`. Moving it
/// costs the distance the statistic moved, not the histogram's length.
#[derive(Debug, Default)]
struct Cursor {
    bin: usize,
    below: usize,
}

impl Cursor {
    /// Moves to the bin holding the `n`-th smallest entry (1-based) and returns it.
    fn seek(&mut self, h: &[u32], n: usize) -> usize {
        while self.bin > 0 && self.below >= n {
            self.bin -= 1;
            self.below -= h[self.bin] as usize;
        }
        while self.bin + 1 < h.len() && self.below + (h[self.bin] as usize) < n {
            self.below += h[self.bin] as usize;
            self.bin += 1;
        }
        self.bin
    }
}

/// The index of the bin holding the `n`-th smallest entry (1-based).
fn nth_bin(h: &[u32], n: usize) -> usize {
    let mut seen = 0usize;
    for (i, &c) in h.iter().enumerate() {
        seen += c as usize;
        if seen >= n {
            return i;
        }
    }
    h.len().saturating_sub(1)
}

/// The median of at most [`MAX_SEASONS`] values.
fn median(values: &[f64]) -> f64 {
    let mut buf = [0.0f64; MAX_SEASONS];
    let n = values.len().min(MAX_SEASONS);
    buf[..n].copy_from_slice(&values[..n]);
    let s = &mut buf[..n];
    s.sort_unstable_by(f64::total_cmp);
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

/// Level bins: 0.5 % steps of log2(ratio) over `0.5 ..= 2`.
const LEVEL_BINS: usize = 401;

fn level_bin(r: f64) -> usize {
    let x = (r.clamp(0.5, 2.0).log2() + 1.0) * 200.0;
    (x.round().max(0.0) as usize).min(LEVEL_BINS - 1)
}

fn level_of_bin(i: usize) -> f64 {
    (i as f64 / 200.0 - 1.0).exp2()
}

fn abs_bin(e: f64) -> usize {
    ((e.abs() * BINS_PER_UNIT).floor() as usize).min(BINS - 1)
}

fn bin(e: f64) -> usize {
    (((e + 1.0) * BINS_PER_UNIT).floor().max(0.0) as usize).min(BINS - 1)
}

/// The lower edge of the bin holding the `tail`-th smallest error.
fn quantile_from_bottom(h: &[u32], tail: usize) -> f64 {
    nth_bin(h, tail) as f64 / BINS_PER_UNIT - 1.0
}

/// The upper edge of the bin holding the `tail`-th largest error.
fn quantile_from_top(h: &[u32], tail: usize) -> f64 {
    let mut seen = 0usize;
    for (i, &c) in h.iter().enumerate().rev() {
        seen += c as usize;
        if seen >= tail {
            return (i + 1) as f64 / BINS_PER_UNIT - 1.0;
        }
    }
    0.0
}

impl LoadForecast for SeasonalMedian {
    fn forecast(
        &self,
        metric: &str,
        now: Timestamp,
        horizon: Duration,
    ) -> sysmanage_core::Result<Forecast> {
        self.check_metric(metric)?;
        let st = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let point = self.point_locked(&st, now, horizon)?;
        self.with_interval(&st, now + horizon, point)
    }

    fn forecast_max(
        &self,
        metric: &str,
        now: Timestamp,
        horizon: Duration,
        step: Duration,
    ) -> sysmanage_core::Result<Forecast> {
        self.check_metric(metric)?;
        if step.is_zero() || horizon.is_zero() {
            return Err(sysmanage_core::Error::invalid(
                "forecast.step",
                "step and horizon must be greater than zero",
            ));
        }
        let st = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // the highest point first, then one interval for it
        let mut best: Option<(Duration, f64)> = None;
        let mut h = step.min(horizon);
        loop {
            let p = self.point_locked(&st, now, h)?;
            if best.is_none_or(|(_, b)| p > b) {
                best = Some((h, p));
            }
            if h >= horizon {
                break;
            }
            h = (h + step).min(horizon);
        }
        let (h, p) = best.ok_or(sysmanage_core::Error::Empty {
            field: "forecast horizons",
        })?;
        self.with_interval(&st, now + h, p)
    }

    fn recent_error(&self, metric: &str) -> Option<f64> {
        if metric != self.signal {
            return None;
        }
        let st = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // an hour of scored forecasts before the error means anything
        if st.errors.len() < self.hour_slots {
            return None;
        }
        // the upper edge of the bin holding the median absolute error
        let half = st.errors.len().div_ceil(2);
        Some((nth_bin(&st.abs_histogram, half) + 1) as f64 / BINS_PER_UNIT)
    }
}

impl SeasonalMedian {
    fn check_metric(&self, metric: &str) -> sysmanage_core::Result<()> {
        if metric != self.signal {
            return Err(sysmanage_core::Error::Unknown {
                kind: "metric",
                name: metric.into(),
            });
        }
        Ok(())
    }
}
