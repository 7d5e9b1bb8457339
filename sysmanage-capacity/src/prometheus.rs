//! PromQL's forecasting functions with Prometheus' exact semantics.
//!
//! * [`predict_linear`] is `predict_linear(v[range], t)`: an ordinary least
//!   squares line through the samples, with the intercept taken at the
//!   evaluation time (not at the first sample), extrapolated `t` seconds.
//! * [`deriv`] is `deriv(v[range])`: the slope of that line per second.
//! * [`double_exponential_smoothing`] is `double_exponential_smoothing(v[range], sf, tf)`
//!   (called `holt_winters` before Prometheus 3.0): level seeded with the first
//!   sample, trend with the difference of the first two, and the smoothed
//!   level after the last sample as the result.
//!
//! Sums use Kahan–Neumaier compensation exactly as `promql/functions.go`
//! does, and a constant series has slope 0. Selecting the samples of a range
//! (`(t − range, t]` since Prometheus 3.0) is the caller's job. Where
//! Prometheus returns NaN for an infinite sample these functions return
//! [`Error::NonFinite`], and where it returns nothing (fewer than two samples)
//! they return [`Error::InsufficientData`].

use sysmanage_core::{Error, Result, Sample, Timestamp, ensure_finite};

fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

fn check(samples: &[Sample], what: &'static str) -> Result<()> {
    if samples.len() < 2 {
        return Err(Error::InsufficientData {
            what,
            needed: 2,
            have: samples.len(),
        });
    }
    for s in samples {
        ensure_finite("sample value", s.value)?;
    }
    Ok(())
}

/// Least-squares `(slope per second, intercept at intercept_time)`, as
/// Prometheus' `linearRegression`.
///
/// # Errors
/// [`Error::InsufficientData`] with fewer than two samples,
/// [`Error::NonFinite`] for a NaN or infinite value, or when the sums
/// overflow `f64` (values near `f64::MAX`).
pub fn linear_regression(samples: &[Sample], intercept_time: Timestamp) -> Result<(f64, f64)> {
    check(samples, "linear regression")?;
    let init_y = samples[0].value;
    let mut const_y = true;
    let (mut n, mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    for (i, s) in samples.iter().enumerate() {
        if const_y && i > 0 && s.value != init_y {
            const_y = false;
        }
        n += 1.0;
        // Any two i64 millisecond timestamps differ by less than 2^64: no
        // overflow, and the same f64 as an i64 difference where that fits.
        let x = crate::validate::diff_ms(s.at.as_millis(), intercept_time.as_millis()) / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(s.value, sy, cy);
        (sxy, cxy) = kahan_inc(x * s.value, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        return Ok((0.0, init_y));
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov_xy = sxy - sx * sy / n;
    let var_x = sx2 - sx * sx / n;
    if var_x == 0.0 {
        return Err(Error::InsufficientData {
            what: "linear regression (distinct timestamps)",
            needed: 2,
            have: 1,
        });
    }
    let slope = cov_xy / var_x;
    let intercept = sy / n - slope * sx / n;
    // Finite samples can still overflow the sums (values near f64::MAX, or
    // times ~2^63 ms apart squared): no silent NaN or infinity.
    ensure_finite("linear regression slope", slope)?;
    ensure_finite("linear regression intercept", intercept)?;
    Ok((slope, intercept))
}

/// PromQL `predict_linear(v[range], horizon_secs)` evaluated at `eval_time`
/// over `samples` (the samples of the range, oldest first).
///
/// # Errors
/// As [`linear_regression`], plus [`Error::NonFinite`] for a non-finite
/// horizon or a result that overflows `f64`.
///
/// # Examples
/// Prometheus' own test: `0+10x4 0+10x5` at 5 m steps, evaluated at 50 m over
/// `[50m]` (which excludes the sample at 0), one hour ahead:
/// ```
/// use sysmanage_capacity::prometheus::predict_linear;
/// use sysmanage_core::{Sample, Timestamp};
/// let ys = [10.0, 20.0, 30.0, 40.0, 0.0, 10.0, 20.0, 30.0, 40.0, 50.0];
/// let samples: Vec<Sample> = ys.iter().enumerate()
///     .map(|(i, y)| Sample::new(Timestamp::from_secs(300 * (i as i64 + 1)), *y))
///     .collect();
/// let v = predict_linear(&samples, Timestamp::from_secs(3000), 3600.0)?;
/// assert!((v - 70.0).abs() < 1e-9);
/// # Ok::<(), sysmanage_core::Error>(())
/// ```
pub fn predict_linear(samples: &[Sample], eval_time: Timestamp, horizon_secs: f64) -> Result<f64> {
    ensure_finite("predict_linear horizon", horizon_secs)?;
    let (slope, intercept) = linear_regression(samples, eval_time)?;
    ensure_finite("predict_linear result", intercept + slope * horizon_secs)
}

/// PromQL `deriv(v[range])`: the least-squares slope per second.
///
/// # Errors
/// As [`linear_regression`].
pub fn deriv(samples: &[Sample]) -> Result<f64> {
    let first = samples.first().map_or(Timestamp::EPOCH, |s| s.at);
    linear_regression(samples, first).map(|(slope, _)| slope)
}

/// PromQL `double_exponential_smoothing(v[range], sf, tf)` over the values of
/// the range, oldest first.
///
/// # Errors
/// [`Error::InvalidConfig`] unless `0 < sf < 1` and `0 < tf < 1` (Prometheus
/// fails the query), [`Error::InsufficientData`] with fewer than two values,
/// [`Error::NonFinite`] for a NaN or infinite value or a result that
/// overflows `f64`.
///
/// # Examples
/// ```
/// use sysmanage_capacity::prometheus::double_exponential_smoothing;
/// let v: Vec<f64> = (0..6).map(|i| 7950.0 + 10.0 * i as f64).collect();
/// assert_eq!(double_exponential_smoothing(&v, 0.01, 0.1)?, 8000.0);
/// # Ok::<(), sysmanage_core::Error>(())
/// ```
pub fn double_exponential_smoothing(values: &[f64], sf: f64, tf: f64) -> Result<f64> {
    let (level, _) = des_state(values, sf, tf)?;
    ensure_finite("double_exponential_smoothing result", level)
}

/// The final `(level, trend)` of Prometheus' double exponential smoothing.
pub(crate) fn des_state(values: &[f64], sf: f64, tf: f64) -> Result<(f64, f64)> {
    if !(sf > 0.0 && sf < 1.0) {
        return Err(Error::invalid(
            "smoothing factor",
            format!("expected 0 < sf < 1, got {sf}"),
        ));
    }
    if !(tf > 0.0 && tf < 1.0) {
        return Err(Error::invalid(
            "trend factor",
            format!("expected 0 < tf < 1, got {tf}"),
        ));
    }
    if values.len() < 2 {
        return Err(Error::InsufficientData {
            what: "double exponential smoothing",
            needed: 2,
            have: values.len(),
        });
    }
    for v in values {
        ensure_finite("sample value", *v)?;
    }
    let mut s0 = 0.0;
    let mut s1 = values[0];
    let mut b = values[1] - values[0];
    for (i, y) in values.iter().enumerate().skip(1) {
        let x = sf * y;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let yy = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + yy;
    }
    Ok((s1, b))
}
