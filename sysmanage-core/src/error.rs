//! The error type shared by the sysmanage crates.

use std::time::Duration;

/// A type-erased error, used for the causes of backend failures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors returned by `sysmanage-core`.
///
/// Messages are lowercase, name the offending input and never contain secrets.
/// A cause, when there is one, is available through [`std::error::Error::source`]
/// and is not repeated in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value or argument was rejected.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The field or argument that was rejected, e.g. `"backoff.max"`.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A numeric input was NaN or infinite.
    #[error("{field} must be a finite number, got {value}")]
    NonFinite {
        /// The input that was rejected.
        field: &'static str,
        /// The value that was given.
        value: f64,
    },
    /// A list that must not be empty was empty.
    #[error("{field} must not be empty")]
    Empty {
        /// The list that was empty.
        field: &'static str,
    },
    /// Too little data for the requested computation.
    #[error("insufficient data for {what}: need at least {needed}, have {have}")]
    InsufficientData {
        /// The computation that needed the data.
        what: &'static str,
        /// The number of samples needed.
        needed: usize,
        /// The number of samples available.
        have: usize,
    },
    /// A name (health check, metric, …) was registered twice.
    #[error("duplicate {kind} name {name:?}")]
    Duplicate {
        /// What kind of thing was duplicated, e.g. `"health check"`.
        kind: &'static str,
        /// The duplicated name.
        name: String,
    },
    /// A name was not known.
    #[error("unknown {kind} {name:?}")]
    Unknown {
        /// What kind of thing was looked up, e.g. `"metric"`.
        kind: &'static str,
        /// The name that was looked up.
        name: String,
    },
    /// A circuit breaker rejected the call.
    #[error("circuit open, retry in {retry_in:?}")]
    CircuitOpen {
        /// Time left until the breaker lets a trial call through.
        retry_in: Duration,
    },
    /// An operation did not finish before its deadline.
    #[error("operation timed out after {0:?}")]
    Timeout(Duration),
    /// A call carried a fencing token older than the newest the actuator
    /// has seen: it speaks for a leadership term that is over.
    #[error("fencing token {token} is older than the newest seen ({newest})")]
    StaleToken {
        /// The token the call carried.
        token: crate::lease::FencingToken,
        /// The newest token seen.
        newest: crate::lease::FencingToken,
    },
    /// This instance does not lead (any more).
    #[error("not the leader")]
    NotLeader,
    /// A pluggable backend failed; the cause is in `source()`.
    #[error("{backend} backend failed")]
    Backend {
        /// The backend, e.g. `"postgres"` or `"forecaster"`.
        backend: &'static str,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Builds an [`Error::InvalidConfig`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }

    /// Whether retrying the same call later may succeed.
    ///
    /// Timeouts, open circuits and backend failures are transient; invalid
    /// input is not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Timeout(_) | Self::CircuitOpen { .. } | Self::Backend { .. }
        )
    }

    /// A short, stable, low-cardinality label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::InvalidConfig { .. } => "invalid_config",
            Self::NonFinite { .. } => "non_finite",
            Self::Empty { .. } => "empty",
            Self::InsufficientData { .. } => "insufficient_data",
            Self::Duplicate { .. } => "duplicate",
            Self::Unknown { .. } => "unknown",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Timeout(_) => "timeout",
            Self::StaleToken { .. } => "stale_token",
            Self::NotLeader => "not_leader",
            Self::Backend { .. } => "backend",
        }
    }
}

/// Returns `value` when it is finite, else [`Error::NonFinite`] naming `field`.
///
/// # Errors
/// [`Error::NonFinite`] for NaN and ±infinity.
///
/// # Examples
/// ```
/// use sysmanage_core::ensure_finite;
/// assert_eq!(ensure_finite("cpu", 0.5).unwrap(), 0.5);
/// assert!(ensure_finite("cpu", f64::NAN).is_err());
/// ```
pub fn ensure_finite(field: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(Error::NonFinite { field, value })
    }
}

/// Returns `value` when it is non-zero, else [`Error::InvalidConfig`] naming `field`.
///
/// # Errors
/// [`Error::InvalidConfig`] for [`Duration::ZERO`].
pub fn ensure_nonzero(field: &'static str, value: Duration) -> Result<Duration> {
    if value.is_zero() {
        Err(Error::invalid(field, "must be greater than zero"))
    } else {
        Ok(value)
    }
}

/// Converts seconds given as `f64` (as in config files) to a [`Duration`],
/// rejecting NaN, infinity, negative and zero values with a typed error.
///
/// # Errors
/// [`Error::NonFinite`] for NaN/infinity, [`Error::InvalidConfig`] for values
/// that are not strictly positive or too large to represent.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use sysmanage_core::positive_secs;
/// assert_eq!(positive_secs("timeout", 1.5).unwrap(), Duration::from_millis(1500));
/// assert!(positive_secs("timeout", -1.0).is_err());
/// assert!(positive_secs("timeout", 0.0).is_err());
/// ```
pub fn positive_secs(field: &'static str, secs: f64) -> Result<Duration> {
    ensure_finite(field, secs)?;
    if secs <= 0.0 {
        return Err(Error::invalid(
            field,
            format!("must be greater than zero, got {secs} s"),
        ));
    }
    let d = Duration::try_from_secs_f64(secs)
        .map_err(|_| Error::invalid(field, format!("{secs} s is out of range")))?;
    if d.is_zero() {
        // A subnormal or sub-nanosecond value: positive, but zero as a Duration.
        return Err(Error::invalid(
            field,
            format!("{secs} s is below the resolution of one nanosecond"),
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_input() {
        let e = Error::invalid("backoff.max", "must be at least backoff.initial");
        assert_eq!(
            e.to_string(),
            "invalid backoff.max: must be at least backoff.initial"
        );
        assert_eq!(e.label(), "invalid_config");
        assert!(!e.is_transient());
        let e = ensure_finite("cpu", f64::NAN).unwrap_err();
        assert_eq!(e.to_string(), "cpu must be a finite number, got NaN");
        assert!(Error::Timeout(Duration::from_secs(1)).is_transient());
    }

    #[test]
    fn backend_cause_is_source_not_message() {
        let cause: BoxError = "connection refused".into();
        let e = Error::Backend {
            backend: "postgres",
            source: cause,
        };
        assert_eq!(e.to_string(), "postgres backend failed");
        let src = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(src.as_deref(), Some("connection refused"));
    }

    #[test]
    fn positive_secs_rejects_bad_values() {
        for bad in [
            0.0,
            -0.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            1e-12,
            1.1e-308,
        ] {
            assert!(positive_secs("t", bad).is_err(), "{bad} accepted");
        }
        assert!(ensure_nonzero("t", Duration::ZERO).is_err());
        assert_eq!(
            ensure_nonzero("t", Duration::from_millis(1)).unwrap(),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn error_is_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
    }
}
