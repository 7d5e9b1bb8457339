//! Range checks shared by every settings type: one rule, one message shape
//! ("must be in [min, max], got x"), naming the field.

use std::time::Duration;

use sysmanage_core::{Error, Result};

/// The longest duration any setting accepts (about 13 months): long enough
/// for a yearly season with a margin, short enough that every timestamp
/// arithmetic on it stays far inside `i64` milliseconds.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// `d` within `[min, max]`.
pub(crate) fn duration_in(
    field: &'static str,
    d: Duration,
    min: Duration,
    max: Duration,
) -> Result<()> {
    if d < min || d > max {
        return Err(Error::invalid(
            field,
            format!("must be in [{min:?}, {max:?}], got {d:?}"),
        ));
    }
    Ok(())
}

/// `n` within `[min, max]`.
pub(crate) fn count_in(field: &'static str, n: usize, min: usize, max: usize) -> Result<()> {
    if n < min || n > max {
        return Err(Error::invalid(
            field,
            format!("must be in [{min}, {max}], got {n}"),
        ));
    }
    Ok(())
}

/// A finite `x` within `[min, max]`.
pub(crate) fn finite_in(field: &'static str, x: f64, min: f64, max: f64) -> Result<()> {
    if !(x.is_finite() && x >= min && x <= max) {
        return Err(Error::invalid(
            field,
            format!("must be a finite number in [{min}, {max}], got {x}"),
        ));
    }
    Ok(())
}

/// `a − b` in milliseconds as `f64`, for any two `i64` times: the i64
/// difference when it fits (the common case, and a fast conversion), the
/// i128 one otherwise; both round to the same `f64`.
#[inline]
pub(crate) fn diff_ms(a: i64, b: i64) -> f64 {
    match a.checked_sub(b) {
        Some(d) => d as f64,
        None => (i128::from(a) - i128::from(b)) as f64,
    }
}
