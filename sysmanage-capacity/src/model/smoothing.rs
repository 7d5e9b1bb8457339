//! Exponential smoothing: additive Holt-Winters (ETS(A,A,A)) and Prometheus'
//! double exponential smoothing as a forecaster.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysmanage_core::{Error, Result};

use super::{FittedModel, FittedState, Forecaster, ModelKind, Prediction, ensure_points};
use crate::hygiene::RegularSeries;

/// Smoothing parameters of ETS(A,A,A) in Hyndman's notation.
///
/// Plain data; [`validate`](Self::validate) (run by
/// [`HoltWinters::fixed`] and by every fit) requires `0 < α < 1`,
/// `0 ≤ β ≤ α` and `0 ≤ γ ≤ 1 − α`, the usual admissible region.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EtsParams {
    /// Level smoothing `α`.
    pub alpha: f64,
    /// Trend smoothing `β` (`β ≤ α` under the usual bounds).
    pub beta: f64,
    /// Seasonal smoothing `γ` (`γ ≤ 1 − α`).
    pub gamma: f64,
}

/// Initial states of ETS(A,A,A): level and trend before the first
/// observation, and the seasonal term of each observation of the first season.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EtsInit {
    /// `l₀`.
    pub level: f64,
    /// `b₀`.
    pub trend: f64,
    /// `s` for observations `0..m`, in the same order as statsmodels'
    /// `ETSModel` `initial_seasonal` (the reference data records the
    /// orientation that reproduces the recursion: `as_is`).
    pub seasonal: Vec<f64>,
}

impl EtsParams {
    /// Checks `0 < α < 1`, `0 ≤ β ≤ α`, `0 ≤ γ ≤ 1 − α` (all finite).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the parameter and its range.
    ///
    /// # Examples
    /// ```
    /// use sysmanage_capacity::model::EtsParams;
    /// assert!(EtsParams { alpha: 0.5, beta: 0.1, gamma: 0.2 }.validate().is_ok());
    /// assert!(EtsParams { alpha: f64::NAN, beta: 0.1, gamma: 0.2 }.validate().is_err());
    /// assert!(EtsParams { alpha: 5.0, beta: 3.0, gamma: -2.0 }.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        let EtsParams { alpha, beta, gamma } = *self;
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(Error::invalid(
                "holt_winters.alpha",
                format!("must be in (0, 1), got {alpha}"),
            ));
        }
        if !(beta >= 0.0 && beta <= alpha) {
            return Err(Error::invalid(
                "holt_winters.beta",
                format!("must be in [0, alpha = {alpha}], got {beta}"),
            ));
        }
        // A hair of slack: fitted parameters live on [1e-4, 1 − 1e-4] and
        // γ = 1e-4 at α = 1 − 1e-4 is admissible up to rounding.
        if !(gamma >= 0.0 && gamma <= 1.0 - alpha + 1e-9) {
            return Err(Error::invalid(
                "holt_winters.gamma",
                format!("must be in [0, 1 - alpha = {}], got {gamma}", 1.0 - alpha),
            ));
        }
        Ok(())
    }
}

impl EtsInit {
    /// Checks that there are at least two seasonal states and every state
    /// is finite.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for fewer than two seasonal states,
    /// [`Error::NonFinite`] for a NaN or infinite state.
    pub fn validate(&self) -> Result<()> {
        if self.seasonal.len() < 2 {
            return Err(Error::invalid(
                "holt_winters.init.seasonal",
                format!(
                    "must hold at least 2 states (one per step of the season), has {}",
                    self.seasonal.len()
                ),
            ));
        }
        sysmanage_core::ensure_finite("holt_winters.init.level", self.level)?;
        sysmanage_core::ensure_finite("holt_winters.init.trend", self.trend)?;
        for s in &self.seasonal {
            sysmanage_core::ensure_finite("holt_winters.init.seasonal", *s)?;
        }
        Ok(())
    }

    /// The heuristic start: `b₀` from the difference of the first two
    /// seasonal means, `l₀` back-cast from the first season's mean, and the
    /// first season's deviations from that line (which sum to zero).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a season shorter than 2,
    /// [`Error::InsufficientData`] with fewer than two full seasons,
    /// [`Error::NonFinite`] for a NaN or infinite value among them or
    /// states that overflow `f64`.
    pub fn heuristic(values: &[f64], m: usize) -> Result<Self> {
        if m < 2 {
            return Err(Error::invalid(
                "holt_winters.season",
                format!("must be at least 2 steps, got {m}"),
            ));
        }
        ensure_points(
            "holt-winters initialisation (two seasons)",
            m.saturating_mul(2),
            values.len(),
        )?;
        ensure_all_finite(&values[..2 * m])?;
        let mf = m as f64;
        let mean1 = values[..m].iter().sum::<f64>() / mf;
        let mean2 = values[m..2 * m].iter().sum::<f64>() / mf;
        let trend = (mean2 - mean1) / mf;
        let level = mean1 - trend * (mf + 1.0) / 2.0;
        let seasonal = (0..m)
            .map(|j| values[j] - (level + trend * (j as f64 + 1.0)))
            .collect();
        let init = Self {
            level,
            trend,
            seasonal,
        };
        init.validate()?;
        Ok(init)
    }
}

impl EtsInit {
    /// statsmodels' own starting states (`ETSModel(...,
    /// initialization_method="heuristic")`, its `_initialization_heuristic`,
    /// after Hyndman & Athanasopoulos §2.6): the seasonal terms are the
    /// per-phase means of the data detrended by a centred moving average
    /// (2×m for even `m`) over the first `k` cycles (`k = min(5, n / m)`,
    /// enough to leave 10 smoothed values), normalised to sum to zero; level
    /// and trend are the intercept and slope of a line through the first 10
    /// moving-average values at x = 1…10.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `m < 2`, [`Error::InsufficientData`]
    /// with fewer than `max(2m, 10 + 2⌊m/2⌋)` values.
    ///
    /// # Examples
    /// ```
    /// use sysmanage_capacity::model::EtsInit;
    /// let y: Vec<f64> = (0..48).map(|i| 10.0 + 0.5 * i as f64 + [1.0, -1.0][i % 2]).collect();
    /// let init = EtsInit::statsmodels_heuristic(&y, 2)?;
    /// assert!((init.trend - 0.5).abs() < 1e-12);
    /// assert!((init.seasonal[0] - 1.0).abs() < 1e-12);
    /// # Ok::<(), sysmanage_core::Error>(())
    /// ```
    pub fn statsmodels_heuristic(values: &[f64], m: usize) -> Result<Self> {
        if m < 2 {
            return Err(Error::invalid(
                "holt_winters.season",
                format!("must be at least 2 steps, got {m}"),
            ));
        }
        let n = values.len();
        ensure_all_finite(values)?;
        let min_obs = (m / 2).saturating_mul(2).saturating_add(10);
        ensure_points(
            "statsmodels heuristic initialisation",
            m.saturating_mul(2).max(min_obs),
            n,
        )?;
        let k_cycles = (n / m).min(5).max(min_obs.div_ceil(m));
        let len = (m * k_cycles).min(n);
        let x = &values[..len];
        // Centred moving average as pandas' rolling(m, center=True).mean():
        // the window for index i is [i − m/2, i + m − 1 − m/2].
        let half = m / 2;
        let mut ma = vec![f64::NAN; len];
        if len >= m {
            let mut sum: f64 = x[..m].iter().sum();
            for end in m - 1..len {
                if end >= m {
                    sum += x[end] - x[end - m];
                }
                let i = end + half + 1 - m;
                ma[i] = sum / m as f64;
            }
        }
        let trend_ma: Vec<f64> = if m.is_multiple_of(2) {
            // .shift(-1).rolling(2).mean(): the mean of ma[i] and ma[i + 1].
            (0..len)
                .map(|i| {
                    if i + 1 < len {
                        (ma[i] + ma[i + 1]) / 2.0
                    } else {
                        f64::NAN
                    }
                })
                .collect()
        } else {
            ma
        };
        let mut seasonal = vec![0.0; m];
        for (j, s) in seasonal.iter_mut().enumerate() {
            let (mut sum, mut count) = (0.0, 0usize);
            for c in 0..k_cycles {
                let i = c * m + j;
                if i < len && !trend_ma[i].is_nan() {
                    sum += x[i] - trend_ma[i];
                    count += 1;
                }
            }
            *s = if count > 0 {
                sum / count as f64
            } else {
                f64::NAN
            };
        }
        let mean = seasonal.iter().sum::<f64>() / m as f64;
        for s in &mut seasonal {
            *s -= mean;
        }
        let smooth: Vec<f64> = trend_ma.into_iter().filter(|v| !v.is_nan()).collect();
        if smooth.len() < 10 || seasonal.iter().any(|s| s.is_nan()) {
            return Err(Error::InsufficientData {
                what: "statsmodels heuristic initialisation",
                needed: min_obs,
                have: n,
            });
        }
        // Least squares on x = 1..=10: mean x = 5.5, Σ(x − 5.5)² = 82.5.
        let ybar = smooth[..10].iter().sum::<f64>() / 10.0;
        let sxy: f64 = smooth[..10]
            .iter()
            .enumerate()
            .map(|(i, y)| (i as f64 + 1.0 - 5.5) * (y - ybar))
            .sum();
        let trend = sxy / 82.5;
        let level = ybar - trend * 5.5;
        let init = Self {
            level,
            trend,
            seasonal,
        };
        init.validate()?;
        Ok(init)
    }
}

/// [`Error::NonFinite`] for the first NaN or infinite value.
fn ensure_all_finite(values: &[f64]) -> Result<()> {
    if values.iter().all(|v| v.is_finite()) {
        return Ok(());
    }
    let bad = values.iter().copied().find(|v| !v.is_finite());
    Err(Error::NonFinite {
        field: "series value",
        value: bad.unwrap_or(f64::NAN),
    })
}

/// Runs Hyndman's ETS(A,A,A) recursion; returns the SSE of the one-step errors.
///
/// `μₜ = lₜ₋₁ + bₜ₋₁ + sₜ₋ₘ`, `eₜ = yₜ − μₜ`, `lₜ = lₜ₋₁ + bₜ₋₁ + α eₜ`,
/// `bₜ = bₜ₋₁ + β eₜ`, `sₜ = sₜ₋ₘ + γ eₜ`.
fn ets_run(
    y: &[f64],
    p: EtsParams,
    init: &EtsInit,
    ring: &mut Vec<f64>,
    fitted: Option<&mut Vec<f64>>,
) -> (f64, f64, f64, f64) {
    let m = init.seasonal.len();
    ring.clear();
    ring.extend_from_slice(&init.seasonal);
    // State kept as `lb = l + b` and `b`: the same recursion with a shorter
    // dependency chain per step (lb → μ → e → lb).
    let mut b = init.trend;
    let mut lb = init.level + b;
    let mut sse = 0.0;
    let mut last_mu = lb;
    let mut out = fitted;
    let EtsParams { alpha, beta, gamma } = p;
    let alpha_beta = alpha + beta;
    // Walk the data one season at a time so the seasonal index needs no modulo.
    // An empty seasonal state (m = 0) runs no steps rather than panicking.
    for chunk in y.chunks(m.max(1)) {
        for (s, &yt) in ring.iter_mut().zip(chunk) {
            let mu = lb + *s;
            let e = yt - mu;
            sse += e * e;
            // lₜ = lₜ₋₁ + bₜ₋₁ + αe and bₜ = bₜ₋₁ + βe, so lₜ + bₜ = lb + b + (α + β)e.
            lb = (lb + b) + alpha_beta * e;
            b += beta * e;
            *s += gamma * e;
            last_mu = mu;
            if let Some(f) = out.as_deref_mut() {
                f.push(mu);
            }
        }
    }
    let l = lb - b;
    (sse, l, b, last_mu)
}

/// A fitted ETS(A,A,A).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct EtsFit {
    pub(crate) params: EtsParams,
    pub(crate) m: usize,
    level: f64,
    trend: f64,
    /// Seasonal states indexed by observation index modulo `m`.
    season: Vec<f64>,
    n: usize,
    /// `SSE / n`, the variance statsmodels' `ETSResults.mse` uses for intervals.
    sigma2: f64,
    pub(crate) last_fitted: f64,
}

impl EtsFit {
    /// Consistency of a deserialised fit.
    pub(crate) fn check(&self) -> Result<()> {
        if self.m < 2 || self.season.len() != self.m {
            return Err(Error::invalid(
                "fitted_model.state",
                format!(
                    "holt-winters needs m ≥ 2 seasonal states, has m = {} and {}",
                    self.m,
                    self.season.len()
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn predict(&self, h: usize) -> Prediction {
        let hf = h as f64;
        // (n + h − 1) mod m without overflowing for any h.
        let phase = (self.n % self.m + h.saturating_sub(1) % self.m) % self.m;
        let point = self.level + hf * self.trend + self.season[phase];
        let EtsParams { alpha, beta, gamma } = self.params;
        let m = self.m as f64;
        let k = (h.saturating_sub(1) / self.m) as f64;
        // Hyndman et al. (2008), Table 6.1, class 1, ETS(A,A,A).
        let rel = 1.0
            + (hf - 1.0)
                * (alpha * alpha + alpha * beta * hf + beta * beta * hf * (2.0 * hf - 1.0) / 6.0)
            + k * (gamma * (2.0 * alpha + gamma) + beta * gamma * m * (k + 1.0));
        Prediction {
            point,
            sd: (self.sigma2 * rel).sqrt(),
        }
    }
}

/// Additive Holt-Winters, ETS(A,A,A) with Hyndman's recursion, one season
/// (default: a day).
///
/// Forecasts follow statsmodels' `ETSModel` (not `ExponentialSmoothing`,
/// whose 0.15 `forecast` mis-indexes the season at horizons that are multiples
/// of it): `ŷₙ₊ₕ = lₙ + h bₙ + sₙ₊ₕ₋ₘ₍ₖ₊₁₎`, `k = ⌊(h−1)/m⌋`. Parameters are
/// fitted by minimising the SSE of the one-step errors (the maximum
/// likelihood estimate for additive errors) with BFGS on the exact gradient under the usual
/// bounds `0 < α < 1`, `0 < β < α`, `0 < γ < 1 − α`, from the
/// [`EtsInit::heuristic`] start (pass [`EtsInit::statsmodels_heuristic`]
/// through [`fixed`](Self::fixed) for statsmodels' own starting states).
/// Intervals use the analytic forecast variance
/// of Hyndman et al. (2008) with `σ² = SSE / n`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HoltWinters {
    /// Season length. Default: one day.
    season: Duration,
    /// Fixed smoothing parameters; `None` (default) fits them.
    params: Option<EtsParams>,
    /// Fixed initial states; `None` (default) uses [`EtsInit::heuristic`].
    init: Option<EtsInit>,
}

impl Default for HoltWinters {
    fn default() -> Self {
        Self {
            season: Duration::from_secs(86_400),
            params: None,
            init: None,
        }
    }
}

impl HoltWinters {
    /// With a season of `season` and fitted parameters. The season is
    /// checked when fitting: it must be 2 ms to 100 years and a whole number
    /// (≥ 2) of the series' steps.
    pub fn with_season(season: Duration) -> Self {
        Self {
            season,
            ..Self::default()
        }
    }

    /// With fixed parameters (no fitting) and optionally fixed initial states.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for parameters outside the admissible region
    /// (see [`EtsParams::validate`]) or initial states with fewer than two
    /// seasonal terms, [`Error::NonFinite`] for a NaN or infinite state.
    pub fn fixed(mut self, params: EtsParams, init: Option<EtsInit>) -> Result<Self> {
        params.validate()?;
        if let Some(i) = &init {
            i.validate()?;
        }
        self.params = Some(params);
        self.init = init;
        Ok(self)
    }

    /// The season length.
    pub fn season(&self) -> Duration {
        self.season
    }

    /// The fixed parameters, if any.
    pub fn params(&self) -> Option<EtsParams> {
        self.params
    }

    /// The fixed initial states, if any.
    pub fn init(&self) -> Option<&EtsInit> {
        self.init.as_ref()
    }

    fn season_len(&self, series: &RegularSeries) -> Result<usize> {
        crate::validate::duration_in(
            "holt_winters.season",
            self.season,
            Duration::from_millis(2),
            crate::validate::MAX_DURATION,
        )?;
        series.season_len(self.season).ok_or_else(|| {
            Error::invalid(
                "holt_winters.season",
                format!(
                    "{:?} is not a whole number (≥ 2) of {:?} steps",
                    self.season, series.step
                ),
            )
        })
    }

    /// The SSE-minimising parameters for `values` with season length `m`
    /// from initial states `init`.
    ///
    /// # Errors
    /// [`Error::InsufficientData`] with fewer than two values,
    /// [`Error::NonFinite`] for a NaN or infinite value or state,
    /// [`Error::InvalidConfig`] for fewer than two seasonal states.
    pub fn fit_params(values: &[f64], init: &EtsInit) -> Result<EtsParams> {
        init.validate()?;
        ensure_points("holt-winters parameter fit", 2, values.len())?;
        ensure_all_finite(values)?;
        Ok(Self::fit_params_checked(values, init))
    }

    /// [`fit_params`](Self::fit_params) on checked input.
    fn fit_params_checked(values: &[f64], init: &EtsInit) -> EtsParams {
        let m = init.seasonal.len();
        let mut scratch = GradScratch::new(m);
        // Quasi-Newton (BFGS) on the SSE with its exact gradient, computed by
        // forward-mode differentiation through the recursion in the same pass
        // (the derivative chains run beside the latency-bound state chain, so
        // a gradient costs little more than an SSE). Parameters live in an
        // unconstrained space mapped onto the usual bounds.
        // Start from the best of a few typical points (one cheap SSE pass
        // each), then one BFGS run from there.
        let mut ring = Vec::with_capacity(m);
        let mut start = [0.0; 3];
        let mut start_sse = f64::INFINITY;
        for (alpha, beta, gamma) in [
            (0.3, 0.03, 0.1),
            (0.05, 0.005, 0.4),
            (0.1, 0.001, 0.1),
            (0.6, 0.06, 0.05),
            (0.02, 0.0005, 0.02),
        ] {
            let x = ets_to_unconstrained(EtsParams { alpha, beta, gamma });
            let (sse, ..) = ets_run(values, ets_from_unconstrained(&x), init, &mut ring, None);
            if sse < start_sse {
                start_sse = sse;
                start = [x[0], x[1], x[2]];
            }
        }
        let (x, _) = bfgs(
            &mut |x: &[f64; 3]| sse_and_grad(values, init, x, &mut scratch),
            start,
            200,
        );
        ets_from_unconstrained(&x)
    }
}

/// Derivative buffers for [`sse_and_grad`].
struct GradScratch {
    ring: Vec<f64>,
    dring: Vec<[f64; 3]>,
}

impl GradScratch {
    fn new(m: usize) -> Self {
        Self {
            ring: Vec::with_capacity(m),
            dring: Vec::with_capacity(m),
        }
    }
}

/// SSE of ETS(A,A,A) at unconstrained `x` and its gradient with respect to `x`.
fn sse_and_grad(y: &[f64], init: &EtsInit, x: &[f64; 3], w: &mut GradScratch) -> (f64, [f64; 3]) {
    let p = ets_from_unconstrained(x);
    let m = init.seasonal.len();
    w.ring.clear();
    w.ring.extend_from_slice(&init.seasonal);
    w.dring.clear();
    w.dring.resize(m, [0.0; 3]);
    let (alpha, beta, gamma) = (p.alpha, p.beta, p.gamma);
    let ab = alpha + beta;
    let mut b = init.trend;
    let mut lb = init.level + b;
    let (mut dlb, mut db) = ([0.0; 3], [0.0; 3]);
    let mut sse = 0.0;
    let mut g = [0.0; 3]; // dSSE/d(α, β, γ)
    for chunk in y.chunks(m.max(1)) {
        for ((s, ds), &yt) in w.ring.iter_mut().zip(w.dring.iter_mut()).zip(chunk) {
            let e = yt - (lb + *s);
            let de = [-(dlb[0] + ds[0]), -(dlb[1] + ds[1]), -(dlb[2] + ds[2])];
            sse += e * e;
            for k in 0..3 {
                g[k] += 2.0 * e * de[k];
            }
            // ∂(α+β)/∂θ = (1, 1, 0), ∂β/∂θ = (0, 1, 0), ∂γ/∂θ = (0, 0, 1).
            dlb = [
                dlb[0] + db[0] + ab * de[0] + e,
                dlb[1] + db[1] + ab * de[1] + e,
                dlb[2] + db[2] + ab * de[2],
            ];
            db = [
                db[0] + beta * de[0],
                db[1] + beta * de[1] + e,
                db[2] + beta * de[2],
            ];
            *ds = [
                ds[0] + gamma * de[0],
                ds[1] + gamma * de[1],
                ds[2] + gamma * de[2] + e,
            ];
            lb = (lb + b) + ab * e;
            b += beta * e;
            *s += gamma * e;
        }
    }
    // Chain rule through the bound-respecting map x → (α, β, γ).
    let (s0, s1, s2) = (sigmoid(x[0]), sigmoid(x[1]), sigmoid(x[2]));
    let da_dx0 = (HI - LO) * s0 * (1.0 - s0);
    let db_dx0 = s1 * da_dx0;
    let db_dx1 = (alpha - LO) * s1 * (1.0 - s1);
    let dg_dx0 = -s2 * da_dx0;
    let dg_dx2 = (HI - alpha - LO).max(0.0) * s2 * (1.0 - s2);
    let grad = [
        g[0] * da_dx0 + g[1] * db_dx0 + g[2] * dg_dx0,
        g[1] * db_dx1,
        g[2] * dg_dx2,
    ];
    if sse.is_finite() && grad.iter().all(|v| v.is_finite()) {
        (sse, grad)
    } else {
        (f64::MAX, [0.0; 3])
    }
}

/// BFGS with a backtracking (Armijo) line search; returns the best point and value.
fn bfgs(
    f: &mut impl FnMut(&[f64; 3]) -> (f64, [f64; 3]),
    x0: [f64; 3],
    max_iter: usize,
) -> ([f64; 3], f64) {
    let dot = |a: &[f64; 3], b: &[f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    let mut x = x0;
    let (mut fx, mut g) = f(&x);
    let mut h = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let mut scaled = false;
    for _ in 0..max_iter {
        let mut d = [0.0; 3];
        for i in 0..3 {
            d[i] = -(h[i][0] * g[0] + h[i][1] * g[1] + h[i][2] * g[2]);
        }
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            // Not a descent direction: reset to steepest descent.
            h = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
            d = [-g[0], -g[1], -g[2]];
            slope = dot(&g, &d);
        }
        if slope.abs() <= 1e-14 * fx.abs().max(1e-300) {
            break;
        }
        // Keep the first trial step moderate in the unconstrained space.
        let norm = dot(&d, &d).sqrt();
        let mut t = if norm > 4.0 { 4.0 / norm } else { 1.0 };
        let mut accepted = None;
        for _ in 0..40 {
            let xn = [x[0] + t * d[0], x[1] + t * d[1], x[2] + t * d[2]];
            let (fnew, gnew) = f(&xn);
            if fnew <= fx + 1e-4 * t * slope {
                accepted = Some((xn, fnew, gnew));
                break;
            }
            t *= 0.5;
        }
        let Some((xn, fnew, gnew)) = accepted else {
            break;
        };
        let sv = [xn[0] - x[0], xn[1] - x[1], xn[2] - x[2]];
        let yv = [gnew[0] - g[0], gnew[1] - g[1], gnew[2] - g[2]];
        let sy = dot(&sv, &yv);
        let improvement = fx - fnew;
        x = xn;
        g = gnew;
        fx = fnew;
        if sy > 1e-300 {
            if !scaled {
                // Shanno's scaling of the initial inverse Hessian.
                let gamma = sy / dot(&yv, &yv);
                for (i, row) in h.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = if i == j { gamma } else { 0.0 };
                    }
                }
                scaled = true;
            }
            let rho = 1.0 / sy;
            let mut hy = [0.0; 3];
            for i in 0..3 {
                hy[i] = h[i][0] * yv[0] + h[i][1] * yv[1] + h[i][2] * yv[2];
            }
            let yhy = dot(&yv, &hy);
            for i in 0..3 {
                for j in 0..3 {
                    h[i][j] += -rho * (hy[i] * sv[j] + sv[i] * hy[j])
                        + (rho * rho * yhy + rho) * sv[i] * sv[j];
                }
            }
        }
        if improvement <= 1e-12 * fx.abs() {
            break;
        }
    }
    (x, fx)
}

const LO: f64 = 1e-4;
const HI: f64 = 1.0 - 1e-4;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

fn ets_from_unconstrained(x: &[f64]) -> EtsParams {
    let alpha = LO + (HI - LO) * sigmoid(x[0]);
    let beta = LO + (alpha - LO) * sigmoid(x[1]);
    let gamma = LO + (HI - alpha - LO).max(0.0) * sigmoid(x[2]);
    EtsParams { alpha, beta, gamma }
}

fn ets_to_unconstrained(p: EtsParams) -> Vec<f64> {
    let a = (p.alpha - LO) / (HI - LO);
    let b = (p.beta - LO) / (p.alpha - LO);
    let c = (p.gamma - LO) / (HI - p.alpha - LO);
    vec![logit(a), logit(b), logit(c)]
}

impl Forecaster for HoltWinters {
    fn kind(&self) -> ModelKind {
        ModelKind::HoltWinters
    }
    fn min_points(&self, series: &RegularSeries) -> usize {
        self.season_len(series)
            .map_or(usize::MAX, |m| m.saturating_mul(2).saturating_add(2))
    }
    fn fit(&self, series: &RegularSeries) -> Result<FittedModel> {
        let m = self.season_len(series)?;
        ensure_points(
            "holt-winters forecast (two seasons)",
            m.saturating_mul(2).saturating_add(2),
            series.len(),
        )?;
        let y = &series.values;
        let init = match &self.init {
            Some(i) if i.seasonal.len() == m => {
                i.validate()?;
                i.clone()
            }
            Some(i) => {
                return Err(Error::invalid(
                    "holt_winters.init",
                    format!("{} seasonal states for a season of {m}", i.seasonal.len()),
                ));
            }
            // The first-two-seasons heuristic. statsmodels' start
            // (`EtsInit::statsmodels_heuristic`) gives a lower in-sample SSE
            // on some series, but its holdout error on the example's
            // synthetic metrics was 1.6–14× higher (lower only on the CO₂
            // series), so it is offered, not the default.
            None => EtsInit::heuristic(y, m)?,
        };
        let params = match self.params {
            Some(p) => {
                p.validate()?;
                p
            }
            None => Self::fit_params_checked(y, &init),
        };
        let mut ring = Vec::with_capacity(m);
        let (sse, level, trend, last_mu) = ets_run(y, params, &init, &mut ring, None);
        let sigma2 = sse / y.len() as f64;
        tracing::trace!(
            target: "sysmanage_capacity",
            alpha = params.alpha, beta = params.beta, gamma = params.gamma, sse,
            "sysmanage.capacity.holt_winters.fitted"
        );
        let fit = EtsFit {
            params,
            m,
            level,
            trend,
            season: ring,
            n: y.len(),
            sigma2,
            last_fitted: last_mu,
        };
        FittedModel::checked(
            ModelKind::HoltWinters,
            series,
            sigma2.sqrt(),
            FittedState::Ets(fit),
        )
    }
}

/// One-step fitted values `μₜ` of ETS(A,A,A) with fixed parameters and
/// initial states, and their SSE (what statsmodels' `ETSModel.smooth` computes).
///
/// # Errors
/// [`Error::InvalidConfig`] for parameters outside the admissible region or
/// fewer than two seasonal states, [`Error::NonFinite`] for a NaN or
/// infinite value or state, or fitted values that overflow `f64`.
pub fn ets_fitted_values(
    values: &[f64],
    params: EtsParams,
    init: &EtsInit,
) -> Result<(Vec<f64>, f64)> {
    params.validate()?;
    init.validate()?;
    ensure_all_finite(values)?;
    let mut ring = Vec::new();
    let mut fitted = Vec::with_capacity(values.len());
    let (sse, ..) = ets_run(values, params, init, &mut ring, Some(&mut fitted));
    sysmanage_core::ensure_finite("holt_winters sse", sse)?;
    Ok((fitted, sse))
}

/// Prometheus' double exponential smoothing as a forecaster.
///
/// The recursion is exactly [`crate::prometheus::double_exponential_smoothing`]'s;
/// the forecast `h` steps ahead is `level + h · trend`. In ETS terms this is
/// ETS(A,A,N) with `α = sf`, `β = sf · tf`, which gives the analytic
/// interval. Factors left as `None` (the default) are fitted by minimising
/// the SSE of the one-step errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DoubleExponential {
    /// Smoothing factor `sf` in `(0, 1)`; `None` fits it.
    pub smoothing_factor: Option<f64>,
    /// Trend factor `tf` in `(0, 1)`; `None` fits it.
    pub trend_factor: Option<f64>,
}

impl DoubleExponential {
    /// With fixed factors, as in a PromQL query.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless both are in `(0, 1)`.
    pub fn with_factors(sf: f64, tf: f64) -> Result<Self> {
        if !(sf > 0.0 && sf < 1.0 && tf > 0.0 && tf < 1.0) {
            return Err(Error::invalid(
                "double_exponential",
                format!("factors must be in (0, 1), got sf={sf} tf={tf}"),
            ));
        }
        Ok(Self {
            smoothing_factor: Some(sf),
            trend_factor: Some(tf),
        })
    }
}

/// Runs Prometheus' recursion; returns (SSE of one-step errors from the third
/// value on, count, level, next trend, last one-step fitted value).
fn des_run(y: &[f64], sf: f64, tf: f64) -> (f64, usize, f64, f64, f64) {
    let (mut s0, mut s1, mut b) = (0.0, y[0], y[1] - y[0]);
    let (mut sse, mut count, mut last_fit) = (0.0, 0, y[0]);
    for (i, &yi) in y.iter().enumerate().skip(1) {
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
            let e = yi - (s1 + b);
            sse += e * e;
            count += 1;
        }
        last_fit = s1 + b;
        let next = sf * yi + (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = next;
    }
    let next_trend = tf * (s1 - s0) + (1.0 - tf) * b;
    (sse, count, s1, next_trend, last_fit)
}

/// A fitted double exponential smoothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct DesFit {
    pub(crate) sf: f64,
    pub(crate) tf: f64,
    level: f64,
    trend: f64,
    sigma2: f64,
    pub(crate) last_fitted: f64,
}

impl DesFit {
    pub(crate) fn predict(&self, h: usize) -> Prediction {
        let hf = h as f64;
        let (alpha, beta) = (self.sf, self.sf * self.tf);
        let rel = 1.0
            + (hf - 1.0)
                * (alpha * alpha + alpha * beta * hf + beta * beta * hf * (2.0 * hf - 1.0) / 6.0);
        Prediction {
            point: self.level + hf * self.trend,
            sd: (self.sigma2 * rel).sqrt(),
        }
    }
}

impl DoubleExponential {
    /// `(sf, tf)` from the optimiser's unconstrained coordinates (or the
    /// fixed factors).
    fn unpack(&self, x: &[f64]) -> (f64, f64) {
        (
            self.smoothing_factor
                .unwrap_or_else(|| LO + (HI - LO) * sigmoid(x.first().copied().unwrap_or(0.0))),
            self.trend_factor
                .unwrap_or_else(|| LO + (HI - LO) * sigmoid(x.get(1).copied().unwrap_or(0.0))),
        )
    }

    /// The fitted model on `y[..len]` with factors `(sf, tf)`.
    fn finish(&self, series: &RegularSeries, len: usize, sf: f64, tf: f64) -> Result<FittedModel> {
        if !(sf > 0.0 && sf < 1.0 && tf > 0.0 && tf < 1.0) {
            return Err(Error::invalid(
                "double_exponential",
                format!("factors must be in (0, 1), got sf={sf} tf={tf}"),
            ));
        }
        let series = series.prefix(len);
        let (sse, count, level, trend, last_fitted) = des_run(&series.values, sf, tf);
        let sigma2 = sse / count.max(1) as f64;
        let fit = DesFit {
            sf,
            tf,
            level,
            trend,
            sigma2,
            last_fitted,
        };
        FittedModel::checked(
            ModelKind::DoubleExponential,
            &series,
            sigma2.sqrt(),
            FittedState::Des(fit),
        )
    }

    /// Fits on each prefix `y[..len]`: the coarse grid of every prefix in
    /// one pass, then one Nelder–Mead per prefix, all stepping together so
    /// that each pass over the data evaluates every minimisation's pending
    /// points. Each fit is the one [`fit`](Forecaster::fit) computes alone.
    fn fit_many(&self, series: &RegularSeries, lens: &[usize]) -> Vec<Result<FittedModel>> {
        let y = &series.values;
        let checked: Vec<Result<usize>> = lens
            .iter()
            .map(|&len| {
                ensure_points("double exponential smoothing forecast", 4, len.min(y.len()))
                    .map(|()| len.min(y.len()))
            })
            .collect();
        if let (Some(sf), Some(tf)) = (self.smoothing_factor, self.trend_factor) {
            return checked
                .into_iter()
                .map(|r| r.and_then(|len| self.finish(series, len, sf, tf)))
                .collect();
        }
        let valid: Vec<usize> = checked
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        let objective = |lanes: &[(f64, f64, usize)]| -> Vec<f64> {
            des_sse_lanes(y, lanes)
                .into_iter()
                .map(|sse| if sse.is_finite() { sse } else { f64::MAX })
                .collect()
        };
        // Best of a coarse grid per prefix, then Nelder–Mead refinements.
        let grid: Vec<[f64; 2]> = [0.1, 0.3, 0.6, 0.9]
            .iter()
            .flat_map(|&sf| [0.05, 0.2, 0.5].map(|tf| [logit(sf), logit(tf)]))
            .collect();
        let lanes: Vec<(f64, f64, usize)> = valid
            .iter()
            .flat_map(|&len| {
                grid.iter().map(move |x| {
                    let (sf, tf) = self.unpack(x);
                    (sf, tf, len)
                })
            })
            .collect();
        let values = objective(&lanes);
        let mut nms: Vec<NelderMead> = values
            .chunks(grid.len())
            .map(|vs| {
                let mut start = [logit(0.3), logit(0.1)];
                let mut start_f = f64::INFINITY;
                for (x, v) in grid.iter().zip(vs) {
                    if *v < start_f {
                        (start, start_f) = (*x, *v);
                    }
                }
                NelderMead::new(&start, 0.5, 250)
            })
            .collect();
        loop {
            let mut lanes = Vec::new();
            for (nm, &len) in nms.iter().zip(&valid) {
                for x in nm.pending() {
                    let (sf, tf) = self.unpack(x);
                    lanes.push((sf, tf, len));
                }
            }
            if lanes.is_empty() {
                break;
            }
            let values = objective(&lanes);
            let mut at = 0;
            for nm in &mut nms {
                let k = nm.pending().len();
                if k > 0 {
                    nm.tell(&values[at..at + k]);
                    at += k;
                }
            }
        }
        let mut fits = nms.into_iter().zip(&valid).map(|(nm, &len)| {
            let (x, _) = nm.result();
            let (sf, tf) = self.unpack(&x);
            self.finish(series, len, sf, tf)
        });
        checked
            .into_iter()
            .map(|r| match r {
                Ok(_) => fits.next().unwrap_or_else(|| {
                    Err(Error::invalid(
                        "double_exponential",
                        "internal: missing fit",
                    ))
                }),
                Err(e) => Err(e),
            })
            .collect()
    }
}

impl Forecaster for DoubleExponential {
    fn kind(&self) -> ModelKind {
        ModelKind::DoubleExponential
    }
    fn min_points(&self, _: &RegularSeries) -> usize {
        4
    }
    fn fit(&self, series: &RegularSeries) -> Result<FittedModel> {
        self.fit_many(series, &[series.len()])
            .pop()
            .unwrap_or_else(|| Err(Error::invalid("double_exponential", "internal: no fit")))
    }
    fn fit_prefixes(&self, series: &RegularSeries, lens: &[usize]) -> Vec<Result<FittedModel>> {
        self.fit_many(series, lens)
    }
}

/// Nelder–Mead minimisation (standard coefficients 1, 2, ½, ½).
/// Returns the best point and its value.
/// The SSE of [`des_run`] on `y[..len]` for each `(sf, tf, len)` lane,
/// [`DES_LANES`] recursions interleaved per pass over the data (each lane
/// does exactly `des_run`'s arithmetic, so the values are the same as one
/// at a time; the recursions are latency-bound, so several run in the time
/// of one).
fn des_sse_lanes(y: &[f64], lanes: &[(f64, f64, usize)]) -> Vec<f64> {
    // A lone fit's four candidates take the narrow kernel; the holdout
    // origins' candidates together the wide one.
    if lanes.len() <= 4 {
        des_sse_chunks::<4>(y, lanes)
    } else {
        des_sse_chunks::<DES_LANES>(y, lanes)
    }
}

/// [`des_sse_lanes`] with `L` recursions per pass.
fn des_sse_chunks<const L: usize>(y: &[f64], lanes: &[(f64, f64, usize)]) -> Vec<f64> {
    let mut out = Vec::with_capacity(lanes.len());
    for chunk in lanes.chunks(L) {
        let k = chunk.len();
        let (mut sf, mut tf, mut len) = ([0.5; L], [0.5; L], [0usize; L]);
        for (j, &(a, b, n)) in chunk.iter().enumerate() {
            (sf[j], tf[j], len[j]) = (a, b, n.min(y.len()));
        }
        let end = len.iter().copied().max().unwrap_or(0);
        let mut result = [0.0; L];
        if end < 2 {
            out.extend_from_slice(&result[..k]);
            continue;
        }
        let mut s0 = [0.0; L];
        let mut s1 = [y[0]; L];
        let mut b = [y[1] - y[0]; L];
        let mut sse = [0.0; L];
        for j in 0..L {
            let next = sf[j] * y[1] + (1.0 - sf[j]) * (s1[j] + b[j]);
            s0[j] = s1[j];
            s1[j] = next;
        }
        // Segments between the lanes' lengths, so the inner loop has no
        // per-step bookkeeping; each lane's SSE is read where it ends.
        let mut ends: Vec<usize> = len[..k].to_vec();
        ends.sort_unstable();
        ends.dedup();
        let mut from = 2;
        for &to in &ends {
            for &yi in y.get(from..to).unwrap_or(&[]) {
                for j in 0..L {
                    b[j] = tf[j] * (s1[j] - s0[j]) + (1.0 - tf[j]) * b[j];
                    let e = yi - (s1[j] + b[j]);
                    sse[j] += e * e;
                    let next = sf[j] * yi + (1.0 - sf[j]) * (s1[j] + b[j]);
                    s0[j] = s1[j];
                    s1[j] = next;
                }
            }
            from = from.max(to);
            for j in 0..k {
                if len[j] == to {
                    result[j] = sse[j];
                }
            }
        }
        out.extend_from_slice(&result[..k]);
    }
    out
}

/// Recursions per pass in [`des_sse_lanes`]: twelve, the four candidate
/// points of three holdout origins (measured fastest of 2–16 on x86-64).
const DES_LANES: usize = 12;

#[cfg(test)]
pub(crate) fn nelder_mead(
    f: &mut impl FnMut(&[f64]) -> f64,
    x0: &[f64],
    step: f64,
    max_evals: usize,
) -> (Vec<f64>, f64) {
    nelder_mead_batched(
        &mut |xs: &[Vec<f64>]| xs.iter().map(|x| f(x)).collect(),
        x0,
        step,
        max_evals,
    )
}

/// Nelder–Mead with the candidate points of each iteration (reflection,
/// expansion and both contractions) evaluated in one call of `f`, which
/// may compute them together. The path, the evaluation count that bounds
/// it and the result are those of evaluating the points one by one.
#[cfg(test)]
pub(crate) fn nelder_mead_batched(
    f: &mut impl FnMut(&[Vec<f64>]) -> Vec<f64>,
    x0: &[f64],
    step: f64,
    max_evals: usize,
) -> (Vec<f64>, f64) {
    let mut nm = NelderMead::new(x0, step, max_evals);
    while !nm.is_done() {
        let values = f(nm.pending());
        nm.tell(&values);
    }
    nm.result()
}

/// What a [`NelderMead`] waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NmStage {
    /// Values of the starting simplex.
    Start,
    /// Values of reflection, expansion, outside and inside contraction.
    Candidates,
    /// Values of the shrunk simplex (all but the best vertex).
    Shrink,
    Done,
}

/// Nelder–Mead as a stepper: [`pending`](Self::pending) points to evaluate,
/// [`tell`](Self::tell) their values. Several minimisations can then share
/// one pass over the data per step (see [`DoubleExponential`]'s
/// `fit_prefixes`), each following exactly the path it would alone.
#[derive(Clone, Debug)]
pub(crate) struct NelderMead {
    d: usize,
    simplex: Vec<(Vec<f64>, f64)>,
    evals: usize,
    max_evals: usize,
    pending: Vec<Vec<f64>>,
    stage: NmStage,
}

impl NelderMead {
    pub(crate) fn new(x0: &[f64], step: f64, max_evals: usize) -> Self {
        let d = x0.len();
        let mut start = vec![x0.to_vec()];
        for i in 0..d {
            let mut x = x0.to_vec();
            x[i] += step;
            start.push(x);
        }
        Self {
            d,
            simplex: Vec::with_capacity(d + 1),
            evals: 0,
            max_evals,
            pending: start,
            stage: NmStage::Start,
        }
    }

    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.stage == NmStage::Done
    }

    /// Points whose values [`tell`](Self::tell) expects (empty when done).
    pub(crate) fn pending(&self) -> &[Vec<f64>] {
        &self.pending
    }

    fn point(a: &[f64], b: &[f64], t: f64) -> Vec<f64> {
        a.iter().zip(b).map(|(ai, bi)| ai + t * (bi - ai)).collect()
    }

    /// The values of [`pending`](Self::pending), in order.
    pub(crate) fn tell(&mut self, values: &[f64]) {
        let points = std::mem::take(&mut self.pending);
        if values.len() != points.len() {
            self.stage = NmStage::Done;
            return;
        }
        let d = self.d;
        match self.stage {
            NmStage::Start => {
                self.simplex = points.into_iter().zip(values.iter().copied()).collect();
                self.evals = d + 1;
            }
            NmStage::Candidates => {
                let [reflected, expanded, outside, inside]: [Vec<f64>; 4] = match points.try_into()
                {
                    Ok(p) => p,
                    Err(_) => {
                        self.stage = NmStage::Done;
                        return;
                    }
                };
                let (fr, fe, f_out, f_in) = (values[0], values[1], values[2], values[3]);
                let simplex = &mut self.simplex;
                self.evals += 1;
                if fr < simplex[0].1 {
                    self.evals += 1;
                    simplex[d] = if fe < fr {
                        (expanded, fe)
                    } else {
                        (reflected, fr)
                    };
                } else if fr < simplex[d - 1].1 {
                    simplex[d] = (reflected, fr);
                } else {
                    let (target, fc) = if fr < simplex[d].1 {
                        (outside, f_out)
                    } else {
                        (inside, f_in)
                    };
                    self.evals += 1;
                    if fc < simplex[d].1.min(fr) {
                        simplex[d] = (target, fc);
                    } else {
                        let best_x = simplex[0].0.clone();
                        self.pending = simplex[1..]
                            .iter()
                            .map(|(x, _)| Self::point(&best_x, x, 0.5))
                            .collect();
                        self.stage = NmStage::Shrink;
                        return;
                    }
                }
            }
            NmStage::Shrink => {
                for (slot, (x, v)) in self.simplex[1..]
                    .iter_mut()
                    .zip(points.into_iter().zip(values.iter().copied()))
                {
                    *slot = (x, v);
                    self.evals += 1;
                }
            }
            NmStage::Done => return,
        }
        self.next_iteration();
    }

    /// Starts the next iteration: sorts, checks convergence and the
    /// evaluation budget, and asks for the iteration's candidate points.
    fn next_iteration(&mut self) {
        let d = self.d;
        if self.evals >= self.max_evals {
            self.stage = NmStage::Done;
            return;
        }
        let simplex = &mut self.simplex;
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (best, worst) = (simplex[0].1, simplex[d].1);
        let size = simplex[1..]
            .iter()
            .flat_map(|(x, _)| x.iter().zip(&simplex[0].0).map(|(a, b)| (a - b).abs()))
            .fold(0.0, f64::max);
        if (worst - best).abs() <= 1e-13 * best.abs().max(1e-300) && size < 1e-7 {
            self.stage = NmStage::Done;
            return;
        }
        let mut centroid = vec![0.0; d];
        for (x, _) in &simplex[..d] {
            for (c, xi) in centroid.iter_mut().zip(x) {
                *c += xi / d as f64;
            }
        }
        let reflected = Self::point(&centroid, &simplex[d].0, -1.0);
        let expanded = Self::point(&centroid, &simplex[d].0, -2.0);
        let outside = Self::point(&centroid, &reflected, 0.5);
        let inside = Self::point(&centroid, &simplex[d].0, 0.5);
        self.pending = vec![reflected, expanded, outside, inside];
        self.stage = NmStage::Candidates;
    }

    /// The best vertex and its value.
    pub(crate) fn result(mut self) -> (Vec<f64>, f64) {
        self.simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        if self.simplex.is_empty() {
            return (Vec::new(), f64::INFINITY);
        }
        self.simplex.swap_remove(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysmanage_core::Timestamp;

    #[test]
    fn batched_double_exponential_fit_is_bit_identical_to_one_point_at_a_time() {
        for seed in 0..6u64 {
            let y: Vec<f64> = (0..300)
                .map(|i| {
                    let x = i as f64;
                    10.0 + 0.05 * x * (seed as f64 + 1.0)
                        + 3.0 * (x * 0.26).sin()
                        + ((x * 0.618_034 + seed as f64 * 0.1).fract() - 0.5)
                })
                .collect();
            // The one-at-a-time path: des_run per point, scalar Nelder–Mead.
            let unpack = |x: &[f64]| {
                (
                    LO + (HI - LO) * sigmoid(x[0]),
                    LO + (HI - LO) * sigmoid(x[1]),
                )
            };
            let mut f = |x: &[f64]| {
                let (sf, tf) = unpack(x);
                let (sse, ..) = des_run(&y, sf, tf);
                if sse.is_finite() { sse } else { f64::MAX }
            };
            let mut start = [logit(0.3), logit(0.1)];
            let mut start_f = f64::INFINITY;
            for sf in [0.1, 0.3, 0.6, 0.9] {
                for tf in [0.05, 0.2, 0.5] {
                    let x = [logit(sf), logit(tf)];
                    let v = f(&x);
                    if v < start_f {
                        (start, start_f) = (x, v);
                    }
                }
            }
            let (x, _) = nelder_mead(&mut f, &start, 0.5, 250);
            let want = unpack(&x);
            let s = RegularSeries::new(
                sysmanage_core::Timestamp::EPOCH,
                Duration::from_secs(60),
                y.clone(),
            )
            .unwrap();
            let fit = DoubleExponential::default().fit(&s).unwrap();
            let p = fit.parameters();
            assert_eq!(p[0].1.to_bits(), want.0.to_bits(), "seed {seed}");
            assert_eq!(p[1].1.to_bits(), want.1.to_bits(), "seed {seed}");
        }
    }

    #[test]
    fn fits_on_several_prefixes_equal_fits_one_at_a_time() {
        let y: Vec<f64> = (0..500)
            .map(|i| {
                let x = i as f64;
                5.0 + 0.02 * x + 2.0 * (x * 0.26).sin() + ((x * 0.618_034).fract() - 0.5)
            })
            .collect();
        let s = RegularSeries::new(sysmanage_core::Timestamp::EPOCH, Duration::from_secs(60), y)
            .unwrap();
        let lens = [3, 120, 380, 404, 428, 452, 500, 600];
        let des = DoubleExponential::default();
        let many = des.fit_prefixes(&s, &lens);
        for (len, got) in lens.iter().zip(many) {
            let alone = des.fit(&s.prefix(*len));
            match (got, alone) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "len {len}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("len {len}: {a:?} vs {b:?}"),
            }
        }
    }

    #[test]
    fn nelder_mead_finds_a_quadratic_minimum() {
        let mut f = |x: &[f64]| (x[0] - 1.0).powi(2) + 10.0 * (x[1] + 2.0).powi(2);
        let (x, v) = nelder_mead(&mut f, &[0.0, 0.0], 1.0, 2000);
        assert!(
            (x[0] - 1.0).abs() < 1e-4 && (x[1] + 2.0).abs() < 1e-4,
            "{x:?}"
        );
        assert!(v < 1e-8);
    }

    #[test]
    fn sse_gradient_matches_finite_differences() {
        let m = 12;
        let y: Vec<f64> = (0..m * 6)
            .map(|i| 5.0 + 0.05 * i as f64 + (i % m) as f64 * 0.3 + ((i as f64) * 0.618).fract())
            .collect();
        let init = EtsInit::heuristic(&y, m).unwrap();
        let mut w = GradScratch::new(m);
        let x = [-0.4, 0.3, -1.2];
        let (f, g) = sse_and_grad(&y, &init, &x, &mut w);
        let mut ring = Vec::new();
        let mut sse =
            |x: &[f64; 3]| ets_run(&y, ets_from_unconstrained(x), &init, &mut ring, None).0;
        assert!((sse(&x) - f).abs() <= 1e-12 * f);
        for k in 0..3 {
            let h = 1e-6;
            let (mut xp, mut xm) = (x, x);
            xp[k] += h;
            xm[k] -= h;
            let fd = (sse(&xp) - sse(&xm)) / (2.0 * h);
            assert!(
                (fd - g[k]).abs() <= 1e-5 * fd.abs().max(1.0),
                "k={k}: {fd} vs {}",
                g[k]
            );
        }
        // BFGS reaches at least Nelder–Mead's optimum.
        let p = HoltWinters::fit_params(&y, &init).unwrap();
        let (_, nm_f) = nelder_mead(
            &mut |x: &[f64]| sse(&[x[0], x[1], x[2]]),
            &[0.0, 0.0, 0.0],
            1.0,
            3000,
        );
        let (_, fitted_sse) = ets_fitted_values(&y, p, &init).unwrap();
        assert!(fitted_sse <= nm_f * (1.0 + 1e-9), "{fitted_sse} vs {nm_f}");
    }

    #[test]
    fn holt_winters_reproduces_a_pure_seasonal_trend() {
        let m = 24;
        let y: Vec<f64> = (0..m * 6)
            .map(|i| {
                10.0 + 0.1 * i as f64
                    + 3.0 * (std::f64::consts::TAU * (i % m) as f64 / m as f64).sin()
            })
            .collect();
        let s = RegularSeries::new(Timestamp::EPOCH, Duration::from_secs(3600), y).unwrap();
        let f = HoltWinters::default().fit(&s).unwrap();
        for h in [1, 24, 25, 48] {
            let i = m * 6 - 1 + h;
            let truth = 10.0
                + 0.1 * i as f64
                + 3.0 * (std::f64::consts::TAU * (i % m) as f64 / m as f64).sin();
            assert!(
                (f.predict(h).point - truth).abs() < 1e-3,
                "h={h}: {}",
                f.predict(h).point
            );
        }
        assert!(
            HoltWinters::with_season(Duration::from_secs(5000))
                .fit(&s)
                .is_err()
        );
    }

    #[test]
    fn des_forecaster_matches_prometheus_level() {
        let y = [1.0, 3.0, 2.0, 5.0, 4.0, 6.0];
        let s = RegularSeries::new(Timestamp::EPOCH, Duration::from_secs(60), y.to_vec()).unwrap();
        let f = DoubleExponential::with_factors(0.4, 0.3)
            .unwrap()
            .fit(&s)
            .unwrap();
        let level = crate::prometheus::double_exponential_smoothing(&y, 0.4, 0.3).unwrap();
        let (_, trend) = crate::prometheus::des_state(&y, 0.4, 0.3).unwrap();
        let next_trend = match &f.state {
            FittedState::Des(d) => d.trend,
            _ => unreachable!(),
        };
        assert!((f.predict(1).point - (level + next_trend)).abs() < 1e-12);
        assert!(trend.is_finite());
        assert!(DoubleExponential::with_factors(1.0, 0.5).is_err());
    }
}
