//! The crate's error type.

/// Errors returned by `sysmanage-scaling`.
///
/// Messages are lowercase and name the offending input. Invalid
/// configuration is rejected with the same bounds the Kubernetes API server
/// enforces for `autoscaling/v2` objects.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScalingError {
    /// A spec field was outside its allowed range.
    #[error("invalid {field}: {reason}")]
    InvalidSpec {
        /// The rejected field, e.g. `"behavior.scaleDown.stabilizationWindowSeconds"`.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// `minReplicas` is greater than `maxReplicas`.
    #[error("minReplicas ({min}) must not exceed maxReplicas ({max})")]
    MinAboveMax {
        /// The configured minimum.
        min: u32,
        /// The configured maximum.
        max: u32,
    },
    /// A count, duration or number was outside its documented range
    /// (see [`limits`](crate::limits)).
    #[error("{field} must be in {range}, got {value}")]
    OutOfRange {
        /// The rejected field, e.g. `"maxReplicas"` or `"controller.interval"`.
        field: &'static str,
        /// The value that was given.
        value: String,
        /// The accepted range.
        range: String,
    },
    /// A Kubernetes manifest did not parse or does not pass the API server's validation.
    #[error("manifest {path}: {reason}")]
    Manifest {
        /// Where: a field path such as `spec.metrics[0].resource.target`, or `line L column C`.
        path: String,
        /// What is wrong, in the API server's words where it has them.
        reason: String,
    },
    /// The controller has been shut down ([`ControllerHandle::shutdown`](crate::ControllerHandle::shutdown)).
    #[error("the controller has been shut down")]
    ShutDown,
    /// A metric value or target was NaN or infinite.
    #[error("metric {metric:?}: {field} must be a finite number, got {value}")]
    NonFinite {
        /// The metric name.
        metric: String,
        /// Which number was bad (`"value"`, `"target"`, `"request"` …).
        field: &'static str,
        /// The value that was given.
        value: f64,
    },
    /// A metric value was negative.
    #[error("metric {metric:?}: {field} must not be negative, got {value}")]
    Negative {
        /// The metric name.
        metric: String,
        /// Which number was bad.
        field: &'static str,
        /// The value that was given.
        value: f64,
    },
    /// A reading's shape does not fit the metric's target (e.g. a total for a per-pod utilization target).
    #[error("metric {metric:?}: {reason}")]
    MismatchedReading {
        /// The metric name.
        metric: String,
        /// What did not fit.
        reason: String,
    },
    /// The same metric name was configured twice.
    #[error("duplicate metric name {0:?}")]
    DuplicateMetric(String),
    /// A shared building block rejected its input.
    #[error(transparent)]
    Core(#[from] sysmanage_core::Error),
    /// A metrics source or scale target failed; the cause is in `source()`.
    #[error("{backend} failed")]
    Backend {
        /// `"metrics source"` or `"scale target"`.
        backend: &'static str,
        /// The underlying failure.
        #[source]
        source: sysmanage_core::BoxError,
    },
}

impl ScalingError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidSpec {
            field,
            reason: reason.into(),
        }
    }

    /// A short, stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::InvalidSpec { .. } => "invalid_spec",
            Self::MinAboveMax { .. } => "min_above_max",
            Self::OutOfRange { .. } => "out_of_range",
            Self::Manifest { .. } => "manifest",
            Self::ShutDown => "shut_down",
            Self::NonFinite { .. } => "non_finite",
            Self::Negative { .. } => "negative",
            Self::MismatchedReading { .. } => "mismatched_reading",
            Self::DuplicateMetric(_) => "duplicate_metric",
            Self::Core(_) => "core",
            Self::Backend { .. } => "backend",
        }
    }
}

/// `Result` with [`ScalingError`].
pub type Result<T, E = ScalingError> = std::result::Result<T, E>;

/// Rejects NaN, infinite and negative values.
pub(crate) fn check_value(metric: &str, field: &'static str, value: f64) -> Result<f64> {
    if !value.is_finite() {
        return Err(ScalingError::NonFinite {
            metric: metric.to_owned(),
            field,
            value,
        });
    }
    if value < 0.0 {
        return Err(ScalingError::Negative {
            metric: metric.to_owned(),
            field,
            value,
        });
    }
    Ok(value)
}
