//! [`PredictiveConfig`]: how a [`Scaler`](crate::Scaler) uses a load
//! signal and its forecast, and the pure helpers behind it.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysmanage_core::{Forecast, LoadForecast, Timestamp};

use crate::error::{Result, ScalingError};
use crate::observe::{MetricValue, Observation};

/// Prediction through a [`LoadForecast`]: pre-warming before the load
/// arrives and scale-in without waiting out the downscale window.
///
/// Forecasts are converted with `ceil(forecast / per_replica)` (no
/// tolerance band: `per_replica` is already the load one replica can carry
/// within the SLO) and act only while the forecaster's measured recent
/// error is at most `max_recent_error`:
///
/// - **scale-out** (pre-warm): the forecast at exactly `lead_time` ahead
///   enters the combination as one more proposal, so
///   `max(reactive, predictive)` goes through the same stabilization and
///   rate limits. Replicas started now serve only after their start-up time,
///   so that is the forecast that matters.
/// - **scale-in** (`allow_scale_in`): the reactive signal drives it, the
///   forecast is a floor. The scaler scales in to the larger of the HPA's
///   proposal at its exact target (no tolerance band) and the replicas the
///   forecast *peak* over the lead time, raised by the forecaster's measured
///   recent error (`peak × (1 + recent_error)`: a margin for an
///   under-forecast), and the current load need, without waiting out the
///   downscale window: replicas removed now cannot be back sooner than the
///   lead time, so the peak is what they must cover.
///
/// Without a trusted forecast the decision is the HPA's, except for one
/// reactive rule (`reactive_scale_in`): the scaler scales in to the HPA's
/// exact-target proposal *for the highest load of the last lead time*
/// (the proposal × peak load / current load), again without the tolerance
/// band and the downscale window. The recent peak is the persistence
/// forecast of what removed replicas must still cover; the HPA's window
/// (300 s by default) and band hold replicas whether or not the load has
/// been steady.
///
/// The load signal is read from the observation: a `Total` reading as it
/// is, an `Average` one times the current replicas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PredictiveConfig {
    /// The load signal to forecast, e.g. `"rps"` (not empty).
    pub signal: String,
    /// Load one replica should carry (finite, at least 0.001).
    pub per_replica: f64,
    /// How far ahead to provision: replica start-up plus warm-up (1 s ..= 1 day).
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub lead_time: Duration,
    /// Spacing of the forecasts inside the lead time (default 60 s; 1 s ..=
    /// `lead_time`, and at most 1440 forecasts per decision).
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub step: Duration,
    /// Use the forecast only while the forecaster's measured recent relative
    /// error ([`LoadForecast::recent_error`]; for
    /// [`SeasonalMedian`](crate::SeasonalMedian) the median absolute
    /// relative error at the lead time) is at most this. Default 0.09, chosen
    /// on the tuning traces only (see docs/BENCHMARKS.md). A forecaster that
    /// measures no error is never trusted.
    pub max_recent_error: f64,
    /// Forecast-gated scale-in (default `true`; see above). Rate policies
    /// and bounds still apply; never while a guard fires.
    pub allow_scale_in: bool,
    /// Compute and report the forecast, never act on it (default `false`).
    pub shadow: bool,
    /// Scale-in without a trusted forecast (default `true`; see above):
    /// while no forecast is trusted (its error is too high, it fails, or it
    /// has too little history), scale in to the HPA's exact-target proposal
    /// for the peak load of the last `lead_time`, without waiting out the
    /// downscale window. Needs the signal in the observations; never in
    /// shadow mode or while a guard fires.
    #[serde(default = "default_true")]
    pub reactive_scale_in: bool,
}

impl PredictiveConfig {
    /// A configuration with the defaults above.
    pub fn new(signal: impl Into<String>, per_replica: f64, lead_time: Duration) -> Self {
        Self {
            signal: signal.into(),
            per_replica,
            lead_time,
            step: Duration::from_secs(60),
            max_recent_error: 0.09,
            allow_scale_in: true,
            shadow: false,
            reactive_scale_in: true,
        }
    }

    /// `ceil(load / per_replica)`, saturating at
    /// [`MAX_REPLICAS`](crate::limits::MAX_REPLICAS); negative load is no load.
    pub fn replicas_for(&self, load: f64) -> u32 {
        let r = (load.max(0.0) / self.per_replica).ceil();
        if r >= f64::from(crate::limits::MAX_REPLICAS) {
            crate::limits::MAX_REPLICAS
        } else if r >= 0.0 {
            r as u32
        } else {
            0
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        use crate::limits::{MAX_WINDOW, MIN_STEP, duration, number};
        if self.signal.is_empty() {
            return Err(ScalingError::invalid(
                "predictive.signal",
                "must not be empty",
            ));
        }
        // Kubernetes compares milli-quantities: one replica's load must be at least 0.001.
        number("predictive.perReplica", self.per_replica, 0.001, f64::MAX)?;
        duration("predictive.leadTime", self.lead_time, MIN_STEP, MAX_WINDOW)?;
        duration("predictive.step", self.step, MIN_STEP, self.lead_time)?;
        if self.lead_time.as_secs_f64() / self.step.as_secs_f64() > MAX_HORIZONS {
            return Err(ScalingError::OutOfRange {
                field: "predictive.step",
                value: format!("{:?}", self.step),
                range: format!(
                    "at least leadTime / {MAX_HORIZONS} = {:?}",
                    self.lead_time.div_f64(MAX_HORIZONS)
                ),
            });
        }
        number(
            "predictive.maxRecentError",
            self.max_recent_error,
            0.0,
            f64::MAX,
        )?;
        Ok(())
    }

    /// The forecast at the lead time and the peak over it; an error message
    /// when either fails or is not finite (the forecast is then ignored).
    pub(crate) fn forecasts(
        &self,
        f: &dyn LoadForecast,
        now: Timestamp,
    ) -> std::result::Result<(Forecast, Forecast), String> {
        let finite = |fc: Forecast| {
            if fc.point.is_finite() {
                Ok(fc)
            } else {
                Err(format!("the forecast is not a finite number: {}", fc.point))
            }
        };
        let at_lead = f
            .forecast(&self.signal, now, self.lead_time)
            .map_err(|e| e.to_string())
            .and_then(finite)?;
        let peak = f
            .forecast_max(&self.signal, now, self.lead_time, self.step)
            .map_err(|e| e.to_string())
            .and_then(finite)?;
        Ok((at_lead, peak))
    }

    /// The current value of the forecast signal, if the observation has it:
    /// a total as it is, a per-pod average times the current replicas.
    pub(crate) fn current_load(&self, obs: &Observation) -> Option<f64> {
        let v = match obs.get(&self.signal)? {
            MetricValue::Total(v) => *v,
            MetricValue::Average(v) => *v * f64::from(obs.current_replicas),
            _ => return None,
        };
        (v.is_finite() && v >= 0.0).then_some(v)
    }
}

fn default_true() -> bool {
    true
}

/// The most forecasts one decision asks for (`leadTime / step`).
const MAX_HORIZONS: f64 = 1440.0;

/// Buckets of a [`PeakWindow`] per window.
const PEAK_BUCKETS: u32 = 16;

/// The peak of the load signal over a sliding window, kept as the maxima of
/// at most 17 time buckets (a sixteenth of the window each): constant
/// memory and time per decision whatever the decision rate, and an answer
/// that errs high by at most one bucket's worth of older load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeakWindow {
    /// `(bucket start, maximum in the bucket)`, oldest first.
    buckets: VecDeque<(Timestamp, f64)>,
}

impl PeakWindow {
    /// Records `value` at `now` and forgets buckets wholly older than `window`.
    /// Non-finite and negative values are ignored.
    pub fn record(&mut self, now: Timestamp, value: f64, window: Duration) {
        let width = (window / PEAK_BUCKETS).max(Duration::from_millis(1));
        let cutoff = now - window;
        while self
            .buckets
            .front()
            .is_some_and(|&(start, _)| start + width <= cutoff)
        {
            self.buckets.pop_front();
        }
        if !(value.is_finite() && value >= 0.0) {
            return;
        }
        match self.buckets.back_mut() {
            // inside the newest bucket (or a clock that went back): fold in
            Some((start, peak)) if now < *start + width => *peak = peak.max(value),
            _ => self.buckets.push_back((now, value)),
        }
        // time-based expiry bounds the buckets; this bounds a clock that jumps
        while self.buckets.len() > PEAK_BUCKETS as usize + 1 {
            self.buckets.pop_front();
        }
    }

    /// The highest value recorded within the window, if any.
    pub fn peak(&self) -> Option<f64> {
        self.buckets.iter().map(|b| b.1).reduce(f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_secs(1_700_000_000);

    fn at(secs: u64) -> Timestamp {
        T0 + Duration::from_secs(secs)
    }

    #[test]
    fn the_peak_covers_the_window_and_forgets_what_is_older() {
        let window = Duration::from_secs(160); // buckets of 10 s
        let mut w = PeakWindow::default();
        assert_eq!(w.peak(), None);
        w.record(at(0), 50.0, window);
        w.record(at(5), 90.0, window);
        w.record(at(30), 70.0, window);
        assert_eq!(w.peak(), Some(90.0));
        // the bucket of 90 (0..10 s) ends at 10 s: gone once 10 s is older than the window
        w.record(at(169), 60.0, window);
        assert_eq!(w.peak(), Some(90.0));
        w.record(at(171), 60.0, window);
        assert_eq!(w.peak(), Some(70.0));
        w.record(at(400), 10.0, window);
        assert_eq!(w.peak(), Some(10.0));
        // not a number, negative: ignored
        w.record(at(401), f64::NAN, window);
        w.record(at(402), -5.0, window);
        w.record(at(403), f64::INFINITY, window);
        assert_eq!(w.peak(), Some(10.0));
    }

    #[test]
    fn the_window_stays_small_whatever_the_rate_or_the_clock() {
        let window = Duration::from_secs(600);
        let mut w = PeakWindow::default();
        for ms in 0..100_000u64 {
            w.record(T0 + Duration::from_millis(ms * 7), ms as f64, window);
            assert!(w.buckets.len() <= PEAK_BUCKETS as usize + 1);
        }
        // a clock that jumps back and forth and to the ends of time
        for (i, t) in [
            Timestamp::from_millis(i64::MAX),
            Timestamp::from_millis(i64::MIN),
            T0,
            Timestamp::from_millis(i64::MAX),
        ]
        .into_iter()
        .enumerate()
        {
            w.record(t, i as f64, window);
            assert!(w.buckets.len() <= PEAK_BUCKETS as usize + 1);
            assert!(w.peak().is_some());
        }
        // a zero window still keeps the newest value
        let mut w = PeakWindow::default();
        w.record(T0, 3.0, Duration::ZERO);
        w.record(at(1), 2.0, Duration::ZERO);
        assert_eq!(w.peak(), Some(2.0));
    }
}
