//! Forecasting models behind the [`Forecaster`] trait.
//!
//! Every model fits a [`RegularSeries`] (see [`crate::hygiene`]) and returns a
//! [`FittedModel`]: a small, serialisable value that predicts any number of
//! steps past the last bucket with the standard deviation of the forecast
//! error, from which prediction intervals follow.
//!
//! | model | [`ModelKind`] | what it captures | intervals |
//! |---|---|---|---|
//! | [`Linear`] | `linear` | straight-line trend (the line of Prometheus' `predict_linear`) | OLS prediction variance |
//! | [`DoubleExponential`] | `double_exponential` | Prometheus' double exponential smoothing, factors fitted by SSE | ETS(A,A,N) analytic variance |
//! | [`Poly2`] | `poly2` | SysManage's quadratic trend, for compatibility | OLS prediction variance |
//! | [`Fourier`] | `fourier` | linear trend + daily and weekly harmonics (Prophet-style) | OLS prediction variance |
//! | [`HoltWinters`] | `holt_winters` | additive Holt-Winters, ETS(A,A,A), Hyndman's recursion, SSE-fitted | ETS(A,A,A) analytic variance |
//!
//! Numerics: regressions use time centred on the middle of the sample and
//! scaled to `[-1, 1]`, never raw Unix seconds in a polynomial, and are
//! solved by power sums (normal equations) and a Cholesky factor
//! (`nalgebra`), which that scaling keeps well conditioned. Harmonics take
//! their phase from the timestamp modulo the period in integer milliseconds.

mod regression;
mod smoothing;

use std::fmt;

use serde::{Deserialize, Serialize};
use sysmanage_core::{Error, Forecast, Result, Timestamp};

use crate::hygiene::RegularSeries;
use crate::stats::normal_quantile;

pub use regression::{Fourier, Linear, MAX_HARMONICS, Poly2, SysManagePoly2, sysmanage_poly2};
pub use smoothing::{DoubleExponential, EtsInit, EtsParams, HoltWinters, ets_fitted_values};

pub(crate) use regression::RegressionFit;
pub(crate) use smoothing::{DesFit, EtsFit};

/// Which model produced a forecast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ModelKind {
    /// Least-squares line ([`Linear`]).
    Linear,
    /// Prometheus double exponential smoothing ([`DoubleExponential`]).
    DoubleExponential,
    /// SysManage's degree-2 polynomial ([`Poly2`]).
    Poly2,
    /// Trend + daily/weekly harmonics ([`Fourier`]).
    Fourier,
    /// Additive Holt-Winters, ETS(A,A,A) ([`HoltWinters`]).
    HoltWinters,
}

impl ModelKind {
    /// All kinds from simplest to most complex (the order used to break ties
    /// in model selection).
    pub const ALL: [Self; 5] = [
        Self::Linear,
        Self::DoubleExponential,
        Self::Poly2,
        Self::Fourier,
        Self::HoltWinters,
    ];

    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::DoubleExponential => "double_exponential",
            Self::Poly2 => "poly2",
            Self::Fourier => "fourier",
            Self::HoltWinters => "holt_winters",
        }
    }

    /// The forecaster with default settings.
    pub fn forecaster(self) -> Box<dyn Forecaster> {
        match self {
            Self::Linear => Box::new(Linear),
            Self::DoubleExponential => Box::new(DoubleExponential::default()),
            Self::Poly2 => Box::new(Poly2),
            Self::Fourier => Box::new(Fourier::default()),
            Self::HoltWinters => Box::new(HoltWinters::default()),
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A point forecast and the standard deviation of its error.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Expected value.
    pub point: f64,
    /// Standard deviation of the forecast error (0 when exact).
    pub sd: f64,
}

impl Prediction {
    /// `(lower, upper)` of the central interval with coverage `level`
    /// (normal errors). `level` must lie in `(0, 1)`; outside it both bounds
    /// are NaN (the planner validates its `interval_level`,
    /// [`FittedModel::forecast_path`] rejects such a level with a typed
    /// error, and [`try_interval`](Self::try_interval) returns one).
    pub fn interval(&self, level: f64) -> (f64, f64) {
        let z = normal_quantile(0.5 + level / 2.0);
        (self.point - z * self.sd, self.point + z * self.sd)
    }

    /// [`interval`](Self::interval) with typed errors instead of NaN.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (field `level`) for a level outside
    /// `(0, 1)`, [`Error::NonFinite`] for bounds that overflow `f64`.
    ///
    /// # Examples
    /// ```
    /// use sysmanage_capacity::Prediction;
    /// let p = Prediction { point: 10.0, sd: 1.0 };
    /// let (lo, hi) = p.try_interval(0.95)?;
    /// assert!((hi - 10.0 - 1.959964).abs() < 1e-6 && lo < 10.0);
    /// assert!(p.try_interval(1.5).is_err());
    /// # Ok::<(), sysmanage_core::Error>(())
    /// ```
    pub fn try_interval(&self, level: f64) -> Result<(f64, f64)> {
        if !(level > 0.0 && level < 1.0) {
            return Err(Error::invalid(
                "level",
                format!("must be in (0, 1), got {level}"),
            ));
        }
        let (lo, hi) = self.interval(level);
        sysmanage_core::ensure_finite("interval lower bound", lo)?;
        sysmanage_core::ensure_finite("interval upper bound", hi)?;
        Ok((lo, hi))
    }
}

/// Fits a model to a regular series.
///
/// Implementations are cheap, immutable settings; the fitted state lives in
/// the returned [`FittedModel`].
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use sysmanage_capacity::hygiene::RegularSeries;
/// use sysmanage_capacity::model::{Forecaster, Linear};
/// use sysmanage_core::Timestamp;
///
/// let y: Vec<f64> = (0..48).map(|i| 0.2 + 0.01 * i as f64).collect();
/// let s = RegularSeries::new(Timestamp::EPOCH, Duration::from_secs(3600), y)?;
/// let fit = Linear.fit(&s)?;
/// let next = fit.predict(1);
/// assert!((next.point - 0.68).abs() < 1e-9);
/// # Ok::<(), sysmanage_core::Error>(())
/// ```
pub trait Forecaster: Send + Sync + fmt::Debug {
    /// Which model this is.
    fn kind(&self) -> ModelKind;

    /// The fewest buckets [`fit`](Self::fit) accepts for `series`' step.
    fn min_points(&self, series: &RegularSeries) -> usize;

    /// Fits the model.
    ///
    /// # Errors
    /// [`Error::InsufficientData`] with fewer than
    /// [`min_points`](Self::min_points) buckets, [`Error::InvalidConfig`] for
    /// settings that do not suit the series (e.g. a season that is not a whole
    /// number of steps).
    fn fit(&self, series: &RegularSeries) -> Result<FittedModel>;

    /// This forecaster with any length-dependent design choice (such as
    /// which Fourier harmonics to use) fixed from `series`, or `None` when
    /// the design does not depend on the length. Model selection calls it
    /// with the shortest training series so that every holdout fold and the
    /// final fit score the same model.
    fn with_design_for(&self, series: &RegularSeries) -> Option<Box<dyn Forecaster>> {
        let _ = series;
        None
    }

    /// [`fit`](Self::fit) on each prefix `series[..len]` (lengths beyond
    /// the series are the whole series), in order. Model selection fits
    /// every holdout origin this way; a model may share work between the
    /// fits (double exponential smoothing steps its optimisations
    /// together), but each result is the one `fit` gives on that prefix.
    fn fit_prefixes(&self, series: &RegularSeries, lens: &[usize]) -> Vec<Result<FittedModel>> {
        lens.iter().map(|&n| self.fit(&series.prefix(n))).collect()
    }
}

impl<F: Forecaster + ?Sized> Forecaster for Box<F> {
    fn kind(&self) -> ModelKind {
        (**self).kind()
    }
    fn with_design_for(&self, series: &RegularSeries) -> Option<Box<dyn Forecaster>> {
        (**self).with_design_for(series)
    }
    fn min_points(&self, series: &RegularSeries) -> usize {
        (**self).min_points(series)
    }
    fn fit(&self, series: &RegularSeries) -> Result<FittedModel> {
        (**self).fit(series)
    }
    fn fit_prefixes(&self, series: &RegularSeries, lens: &[usize]) -> Vec<Result<FittedModel>> {
        (**self).fit_prefixes(series, lens)
    }
}

/// Largest horizon, in steps, that [`FittedModel::predict`] computes
/// (larger ones are clamped to it) and [`FittedModel::try_predict`] accepts:
/// about 2.1 billion steps (4,000 years of minutes).
pub const MAX_PREDICT_STEPS: usize = (u32::MAX / 2) as usize;

/// Most steps [`FittedModel::forecast_path`] produces in one call (bounds
/// the memory of a path: 1 million forecasts).
pub const MAX_PATH_STEPS: usize = 1_000_000;

fn finite_prediction(p: Prediction) -> Result<Prediction> {
    sysmanage_core::ensure_finite("prediction point", p.point)?;
    sysmanage_core::ensure_finite("prediction sd", p.sd)?;
    Ok(p)
}

pub(crate) fn ensure_points(what: &'static str, needed: usize, have: usize) -> Result<()> {
    if have < needed {
        Err(Error::InsufficientData { what, needed, have })
    } else {
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum FittedState {
    Regression(RegressionFit),
    Ets(EtsFit),
    Des(DesFit),
}

/// A fitted model: predicts past the end of the series it was fitted on.
///
/// Serialisable, so a planner's fits can be persisted with its state; a
/// deserialised model is checked for consistency (a corrupt one is an
/// [`Error::InvalidConfig`], never a later panic).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FittedModelRaw")]
pub struct FittedModel {
    kind: ModelKind,
    start: Timestamp,
    step_ms: u64,
    n: usize,
    /// Residual standard deviation of the in-sample one-step (or regression) errors.
    sigma: f64,
    state: FittedState,
}

/// The serialised form of a [`FittedModel`], checked on restore.
#[derive(Deserialize)]
struct FittedModelRaw {
    kind: ModelKind,
    start: Timestamp,
    step_ms: u64,
    n: usize,
    sigma: f64,
    state: FittedState,
}

impl TryFrom<FittedModelRaw> for FittedModel {
    type Error = Error;

    fn try_from(raw: FittedModelRaw) -> Result<Self> {
        if raw.n == 0 {
            return Err(Error::invalid("fitted_model.n", "must be at least 1"));
        }
        if raw.step_ms == 0 {
            return Err(Error::invalid("fitted_model.step_ms", "must be at least 1"));
        }
        if !(raw.sigma.is_finite() && raw.sigma >= 0.0) {
            return Err(Error::invalid(
                "fitted_model.sigma",
                "must be a finite number ≥ 0",
            ));
        }
        match &raw.state {
            FittedState::Regression(r) => r.check()?,
            FittedState::Ets(e) => e.check()?,
            FittedState::Des(_) => {}
        }
        Ok(Self {
            kind: raw.kind,
            start: raw.start,
            step_ms: raw.step_ms,
            n: raw.n,
            sigma: raw.sigma,
            state: raw.state,
        })
    }
}

impl FittedModel {
    pub(crate) fn new(
        kind: ModelKind,
        series: &RegularSeries,
        sigma: f64,
        state: FittedState,
    ) -> Self {
        Self {
            kind,
            start: series.start,
            step_ms: u64::try_from(series.step.as_millis()).unwrap_or(u64::MAX),
            n: series.len(),
            sigma,
            state,
        }
    }

    /// [`new`](Self::new), rejecting a fit whose residual deviation or
    /// value at the last bucket is not finite (data so large that the sums
    /// overflow `f64`).
    pub(crate) fn checked(
        kind: ModelKind,
        series: &RegularSeries,
        sigma: f64,
        state: FittedState,
    ) -> Result<Self> {
        let fit = Self::new(kind, series, sigma, state);
        sysmanage_core::ensure_finite("fitted model sigma", fit.sigma)?;
        sysmanage_core::ensure_finite("fitted model value", fit.at_origin().point)?;
        Ok(fit)
    }

    /// The model.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// Buckets the model was fitted on.
    pub fn n_obs(&self) -> usize {
        self.n
    }

    /// Residual standard deviation.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// Time the last fitted value stands for.
    pub fn last_time(&self) -> Timestamp {
        self.time_after(0.0)
    }

    /// Time `h` steps after the last fitted bucket.
    pub fn time_after(&self, h: f64) -> Timestamp {
        let idx = (self.n as f64 - 1.0) + h;
        let ms = self.start.as_millis() as f64 + idx * self.step_ms as f64;
        Timestamp::from_millis(ms.round() as i64)
    }

    /// Steps (possibly fractional) from the last bucket to `t`.
    pub fn steps_until(&self, t: Timestamp) -> f64 {
        let last = self.last_time();
        crate::validate::diff_ms(t.as_millis(), last.as_millis()) / self.step_ms as f64
    }

    /// The forecast `h` steps after the last bucket, with `h` clamped to
    /// `1..=`[`MAX_PREDICT_STEPS`] (`h = 0` is treated as 1; use
    /// [`at_origin`](Self::at_origin) for the fitted value at the last
    /// bucket). [`try_predict`](Self::try_predict) rejects such an `h`
    /// instead, and a result that overflows `f64`.
    pub fn predict(&self, h: usize) -> Prediction {
        let h = h.clamp(1, MAX_PREDICT_STEPS);
        match &self.state {
            FittedState::Regression(r) => r.predict(
                self.n.saturating_sub(1).saturating_add(h),
                self.start,
                self.step_ms,
            ),
            FittedState::Ets(e) => e.predict(h),
            FittedState::Des(d) => d.predict(h),
        }
    }

    /// The forecast `h` steps after the last bucket.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (field `h`) unless `1 ≤ h ≤`
    /// [`MAX_PREDICT_STEPS`], [`Error::NonFinite`] when the extrapolation
    /// overflows `f64`.
    pub fn try_predict(&self, h: usize) -> Result<Prediction> {
        if !(1..=MAX_PREDICT_STEPS).contains(&h) {
            return Err(Error::invalid(
                "h",
                format!("must be in [1, {MAX_PREDICT_STEPS}] steps, got {h}"),
            ));
        }
        finite_prediction(self.predict(h))
    }

    /// [`predict_at`](Self::predict_at) with a typed error instead of a
    /// clamp.
    ///
    /// # Errors
    /// [`Error::NonFinite`] for a NaN or infinite `h`,
    /// [`Error::InvalidConfig`] (field `h`) for `h >`
    /// [`MAX_PREDICT_STEPS`], [`Error::NonFinite`] when the extrapolation
    /// overflows `f64`.
    pub fn try_predict_at(&self, h: f64) -> Result<Prediction> {
        sysmanage_core::ensure_finite("h", h)?;
        if h > MAX_PREDICT_STEPS as f64 {
            return Err(Error::invalid(
                "h",
                format!("must be at most {MAX_PREDICT_STEPS} steps, got {h}"),
            ));
        }
        finite_prediction(self.predict_at(h))
    }

    /// The forecast at a fractional number of steps `h`, interpolated
    /// linearly between whole steps.
    ///
    /// For `h ≤ 1` (including at or before the last bucket, and NaN, which
    /// is treated as 0) the point is interpolated from the model's value at
    /// the last bucket and the standard deviation is the one-step value: a
    /// value the model has not seen is never more certain than one step
    /// ahead. `h` above [`MAX_PREDICT_STEPS`] (including +∞) is clamped to
    /// it; [`try_predict_at`](Self::try_predict_at) rejects it instead.
    pub fn predict_at(&self, h: f64) -> Prediction {
        let h = h.min(MAX_PREDICT_STEPS as f64);
        if h.is_nan() || h <= 1.0 {
            let one = self.predict(1);
            let origin = self.at_origin();
            let f = if h.is_nan() { 0.0 } else { h.max(0.0) };
            return Prediction {
                point: origin.point + (one.point - origin.point) * f,
                sd: one.sd,
            };
        }
        let lo = h.floor();
        let frac = h - lo;
        let a = self.predict(lo as usize);
        if frac == 0.0 {
            return a;
        }
        let b = self.predict(lo as usize + 1);
        Prediction {
            point: a.point + (b.point - a.point) * frac,
            sd: a.sd + (b.sd - a.sd) * frac,
        }
    }

    /// The model's (smoothed or fitted) value at the last bucket, with no uncertainty.
    pub fn at_origin(&self) -> Prediction {
        let point = match &self.state {
            FittedState::Regression(r) => r.predict(self.n - 1, self.start, self.step_ms).point,
            FittedState::Ets(e) => e.last_fitted,
            FittedState::Des(d) => d.last_fitted,
        };
        Prediction { point, sd: 0.0 }
    }

    /// Forecasts for steps `1..=steps`, as core [`Forecast`]s with intervals of
    /// coverage `level`, each value passed through `clamp`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a level outside `(0, 1)` (field
    /// `level`) or more than [`MAX_PATH_STEPS`] steps (field `steps`),
    /// [`Error::NonFinite`] if the model produced a non-finite value.
    pub fn forecast_path(
        &self,
        steps: usize,
        level: f64,
        clamp: impl Fn(f64) -> f64,
    ) -> Result<Vec<Forecast>> {
        if !(level > 0.0 && level < 1.0) {
            return Err(Error::invalid(
                "level",
                format!("must be in (0, 1), got {level}"),
            ));
        }
        if steps > MAX_PATH_STEPS {
            return Err(Error::invalid(
                "steps",
                format!("must be in [0, {MAX_PATH_STEPS}], got {steps}"),
            ));
        }
        (1..=steps)
            .map(|h| {
                let p = self.predict(h);
                let (lo, hi) = p.interval(level);
                Forecast::new(
                    self.time_after(h as f64),
                    clamp(p.point),
                    clamp(lo),
                    clamp(hi),
                    level,
                )
            })
            .collect()
    }

    /// Named parameters, for evidence in reports.
    pub fn parameters(&self) -> Vec<(String, f64)> {
        match &self.state {
            FittedState::Regression(r) => r.parameters(),
            FittedState::Ets(e) => vec![
                ("alpha".into(), e.params.alpha),
                ("beta".into(), e.params.beta),
                ("gamma".into(), e.params.gamma),
                ("season_len".into(), e.m as f64),
            ],
            FittedState::Des(d) => vec![
                ("smoothing_factor".into(), d.sf),
                ("trend_factor".into(), d.tf),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn minutes(n: usize) -> RegularSeries {
        let y = (0..n)
            .map(|i| 0.5 + 0.2 * (i as f64 * std::f64::consts::TAU / 1440.0).sin())
            .collect();
        RegularSeries::new(Timestamp::EPOCH, Duration::from_secs(60), y).unwrap()
    }

    #[test]
    fn many_fourier_harmonics_predict_without_panicking() {
        let f = Fourier::new(40, 0).unwrap();
        let fit = f.fit(&minutes(2 * 1440)).unwrap();
        assert_eq!(fit.parameters().len(), 2 + 2 * 40);
        let p = fit.predict(60);
        assert!(p.point.is_finite() && p.sd.is_finite(), "{p:?}");
    }

    #[test]
    fn empty_seasonal_states_are_errors_not_panics() {
        assert_eq!(
            EtsInit::heuristic(&[1.0; 10], 0).unwrap_err().label(),
            "invalid_config"
        );
        let init = EtsInit {
            level: 1.0,
            trend: 0.0,
            seasonal: Vec::new(),
        };
        let params = EtsParams {
            alpha: 0.5,
            beta: 0.1,
            gamma: 0.1,
        };
        let e = ets_fitted_values(&[1.0, 2.0], params, &init).unwrap_err();
        assert_eq!(e.label(), "invalid_config");
        let e = HoltWinters::fit_params(&[1.0, 2.0, 3.0], &init).unwrap_err();
        assert_eq!(e.label(), "invalid_config");
    }

    #[test]
    fn corrupt_fitted_models_do_not_deserialise() {
        let y: Vec<f64> = (0..24 * 4).map(|i| (i % 24) as f64).collect();
        let s = RegularSeries::new(Timestamp::EPOCH, Duration::from_secs(3600), y).unwrap();
        for fit in [
            Linear.fit(&s).unwrap(),
            HoltWinters::default().fit(&s).unwrap(),
        ] {
            let good = serde_json::to_value(&fit).unwrap();
            let back: FittedModel = serde_json::from_value(good.clone()).unwrap();
            assert_eq!(back, fit);
            let mut bad = good.clone();
            bad["n"] = 0.into();
            assert!(serde_json::from_value::<FittedModel>(bad).is_err());
            let mut bad = good.clone();
            bad["step_ms"] = 0.into();
            assert!(serde_json::from_value::<FittedModel>(bad).is_err());
            let mut bad = good;
            match fit.kind() {
                ModelKind::HoltWinters => bad["state"]["m"] = 0.into(),
                _ => bad["state"]["r"] = serde_json::json!([1.0]),
            }
            assert!(serde_json::from_value::<FittedModel>(bad).is_err());
        }
    }
}
