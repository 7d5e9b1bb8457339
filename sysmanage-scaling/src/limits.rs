//! The ranges every count, duration and size in this crate is validated against.
//!
//! Configuration is checked when it is built ([`Hpa::new`](crate::Hpa::new),
//! [`Scaler::new`](crate::Scaler::new), [`Composite::new`](crate::Composite::new),
//! [`Controller::new`](crate::Controller::new), [`simulate`](crate::simulate), …);
//! a value outside its range is a [`ScalingError::OutOfRange`] naming the field
//! and the range. A value that passes never panics or overflows later.

use std::time::Duration;

use crate::error::{Result, ScalingError};

/// The most replicas anything may have: Kubernetes stores replica counts as
/// `int32`, so `minReplicas`, `maxReplicas`, current/ready/status replicas and
/// policy values are bounded by `i32::MAX` (2,147,483,647).
pub const MAX_REPLICAS: u32 = i32::MAX as u32;

/// The longest duration accepted for windows, cooldowns, lead times, start-up
/// times, decision intervals and call timeouts: one day.
pub const MAX_WINDOW: Duration = Duration::from_secs(86_400);

/// The shortest decision or forecast step: one second (Kubernetes' HPA sync
/// period and policy periods are whole seconds).
pub const MIN_STEP: Duration = Duration::from_secs(1);

/// Rejects a replica count above [`MAX_REPLICAS`].
pub(crate) fn replicas(field: &'static str, value: u32) -> Result<u32> {
    if value > MAX_REPLICAS {
        return Err(ScalingError::OutOfRange {
            field,
            value: value.to_string(),
            range: format!("0..={MAX_REPLICAS}"),
        });
    }
    Ok(value)
}

/// Rejects a duration outside `min..=max`.
pub(crate) fn duration(
    field: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration> {
    if value < min || value > max {
        return Err(ScalingError::OutOfRange {
            field,
            value: format!("{value:?}"),
            range: format!("{min:?}..={max:?}"),
        });
    }
    Ok(value)
}

/// Rejects a number that is not finite or lies outside `min..=max`.
pub(crate) fn number(field: &'static str, value: f64, min: f64, max: f64) -> Result<f64> {
    if !(value.is_finite() && value >= min && value <= max) {
        return Err(ScalingError::OutOfRange {
            field,
            value: value.to_string(),
            range: format!("{min}..={max} (finite)"),
        });
    }
    Ok(value)
}
