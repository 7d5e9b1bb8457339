//! The [`LoadForecast`] trait: how scaling asks capacity for a forecast.
//!
//! `sysmanage-scaling` consumes forecasts and `sysmanage-capacity` produces
//! them; the trait lives here so neither crate depends on the other. A host
//! wires a planner into a scaler with an `Arc`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result, ensure_finite};
use crate::series::Timestamp;

/// A point forecast with a prediction interval.
///
/// # Examples
/// ```
/// use sysmanage_core::{Forecast, Timestamp};
/// let f = Forecast::new(Timestamp::from_secs(60), 0.7, 0.6, 0.85, 0.95)?;
/// assert_eq!(f.width(), 0.85 - 0.6);
/// assert!(Forecast::new(Timestamp::EPOCH, f64::NAN, 0.0, 1.0, 0.95).is_err());
/// # Ok::<(), sysmanage_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Forecast {
    /// The time the forecast is for.
    pub at: Timestamp,
    /// The expected value.
    pub point: f64,
    /// Lower bound of the prediction interval.
    pub lower: f64,
    /// Upper bound of the prediction interval.
    pub upper: f64,
    /// Coverage of the interval, in `(0, 1)`, e.g. 0.95.
    pub level: f64,
}

impl Forecast {
    /// A validated forecast.
    ///
    /// # Errors
    /// [`Error::NonFinite`] for NaN/infinite values, [`Error::InvalidConfig`]
    /// when `lower <= point <= upper` does not hold or `level` is outside `(0, 1)`.
    pub fn new(at: Timestamp, point: f64, lower: f64, upper: f64, level: f64) -> Result<Self> {
        ensure_finite("forecast.point", point)?;
        ensure_finite("forecast.lower", lower)?;
        ensure_finite("forecast.upper", upper)?;
        ensure_finite("forecast.level", level)?;
        if !(lower <= point && point <= upper) {
            return Err(Error::invalid(
                "forecast",
                format!("interval [{lower}, {upper}] does not contain point {point}"),
            ));
        }
        if !(level > 0.0 && level < 1.0) {
            return Err(Error::invalid(
                "forecast.level",
                format!("must be in (0, 1), got {level}"),
            ));
        }
        Ok(Self {
            at,
            point,
            lower,
            upper,
            level,
        })
    }

    /// A forecast with no uncertainty (`lower == point == upper`).
    ///
    /// # Errors
    /// [`Error::NonFinite`] for a NaN or infinite value.
    pub fn exact(at: Timestamp, value: f64) -> Result<Self> {
        Self::new(at, value, value, value, 0.5)
    }

    /// Interval width, `upper − lower`.
    pub fn width(&self) -> f64 {
        self.upper - self.lower
    }
}

/// Something that can forecast a named load signal.
///
/// Implementations are pure computation over data they already hold, so the
/// methods are synchronous; a host that must fetch data refreshes the
/// forecaster before asking it.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use sysmanage_core::{Forecast, LoadForecast, Result, Timestamp};
///
/// /// Load grows by a fixed amount per minute.
/// #[derive(Debug)]
/// struct Linear { now_value: f64, per_minute: f64 }
///
/// impl LoadForecast for Linear {
///     fn forecast(&self, _metric: &str, now: Timestamp, horizon: Duration) -> Result<Forecast> {
///         let v = self.now_value + self.per_minute * horizon.as_secs_f64() / 60.0;
///         Forecast::new(now + horizon, v, v * 0.9, v * 1.1, 0.8)
///     }
/// }
///
/// let f = Linear { now_value: 100.0, per_minute: 10.0 };
/// let peak = f.forecast_max("rps", Timestamp::EPOCH, Duration::from_secs(300), Duration::from_secs(60))?;
/// assert_eq!(peak.point, 150.0);
/// # Ok::<(), sysmanage_core::Error>(())
/// ```
pub trait LoadForecast: Send + Sync + fmt::Debug {
    /// The forecast of `metric` at `now + horizon`.
    ///
    /// # Errors
    /// [`Error::Unknown`] for a metric the forecaster does not know,
    /// [`Error::InsufficientData`] when it cannot forecast yet, or any other
    /// error of the implementation.
    fn forecast(&self, metric: &str, now: Timestamp, horizon: Duration) -> Result<Forecast>;

    /// The forecast with the highest point value among `now + step`,
    /// `now + 2·step`, … up to `now + horizon` (inclusive). Predictive scalers
    /// use this to provision for the peak of a lead time, not just its end.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero step or horizon, else as
    /// [`forecast`](Self::forecast).
    fn forecast_max(
        &self,
        metric: &str,
        now: Timestamp,
        horizon: Duration,
        step: Duration,
    ) -> Result<Forecast> {
        crate::error::ensure_nonzero("forecast.step", step)?;
        crate::error::ensure_nonzero("forecast.horizon", horizon)?;
        let mut best: Option<Forecast> = None;
        let mut h = step.min(horizon);
        loop {
            let f = self.forecast(metric, now, h)?;
            if best.is_none_or(|b| f.point > b.point) {
                best = Some(f);
            }
            if h >= horizon {
                break;
            }
            h = (h + step).min(horizon);
        }
        best.ok_or(Error::Empty {
            field: "forecast horizons",
        })
    }

    /// The forecaster's recent relative error for `metric` (for example the
    /// mean absolute percentage error of its last holdout), if it measures one.
    /// Consumers may ignore forecasts whose error is too high.
    fn recent_error(&self, metric: &str) -> Option<f64> {
        let _ = metric;
        None
    }
}

impl<T: LoadForecast + ?Sized> LoadForecast for &T {
    fn forecast(&self, metric: &str, now: Timestamp, horizon: Duration) -> Result<Forecast> {
        (**self).forecast(metric, now, horizon)
    }
    fn recent_error(&self, metric: &str) -> Option<f64> {
        (**self).recent_error(metric)
    }
}

impl<T: LoadForecast + ?Sized> LoadForecast for Arc<T> {
    fn forecast(&self, metric: &str, now: Timestamp, horizon: Duration) -> Result<Forecast> {
        (**self).forecast(metric, now, horizon)
    }
    fn recent_error(&self, metric: &str) -> Option<f64> {
        (**self).recent_error(metric)
    }
}

impl<T: LoadForecast + ?Sized> LoadForecast for Box<T> {
    fn forecast(&self, metric: &str, now: Timestamp, horizon: Duration) -> Result<Forecast> {
        (**self).forecast(metric, now, horizon)
    }
    fn recent_error(&self, metric: &str) -> Option<f64> {
        (**self).recent_error(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Sine;
    impl LoadForecast for Sine {
        fn forecast(&self, metric: &str, now: Timestamp, horizon: Duration) -> Result<Forecast> {
            if metric != "rps" {
                return Err(Error::Unknown {
                    kind: "metric",
                    name: metric.into(),
                });
            }
            let v = (horizon.as_secs_f64() / 600.0 * std::f64::consts::PI).sin();
            Forecast::exact(now + horizon, v)
        }
    }

    #[test]
    fn forecast_max_finds_the_peak_and_includes_the_horizon() {
        let f: Arc<dyn LoadForecast> = Arc::new(Sine);
        let t0 = Timestamp::from_secs(0);
        let peak = f
            .forecast_max("rps", t0, Duration::from_secs(900), Duration::from_secs(60))
            .unwrap();
        assert_eq!(peak.at, t0 + Duration::from_secs(300));
        let end = f
            .forecast_max("rps", t0, Duration::from_secs(90), Duration::from_secs(60))
            .unwrap();
        assert_eq!(end.at, t0 + Duration::from_secs(90));
        assert!(
            f.forecast_max("rps", t0, Duration::from_secs(90), Duration::ZERO)
                .is_err()
        );
        assert_eq!(
            f.forecast("cpu", t0, Duration::from_secs(1))
                .unwrap_err()
                .to_string(),
            "unknown metric \"cpu\""
        );
        assert_eq!(f.recent_error("rps"), None);
    }

    #[test]
    fn forecast_validates() {
        assert!(Forecast::new(Timestamp::EPOCH, 1.0, 2.0, 3.0, 0.9).is_err());
        assert!(Forecast::new(Timestamp::EPOCH, 1.0, 0.0, 3.0, 1.0).is_err());
        assert!(Forecast::new(Timestamp::EPOCH, 1.0, 0.0, f64::INFINITY, 0.9).is_err());
        assert!(Forecast::exact(Timestamp::EPOCH, 2.0).is_ok());
    }
}
