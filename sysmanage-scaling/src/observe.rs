//! What a scaler decides on: the replica counts and one reading per metric.

use serde::{Deserialize, Serialize};

/// How Kubernetes would classify a pod for the replica calculation.
///
/// The host classifies; Kubernetes' rule (`groupPods`) is: deleted or failed
/// pods are [`Ignored`](Self::Ignored); `Pending` pods are
/// [`Pending`](Self::Pending); a pod with no sample is *missing*, whatever its
/// readiness; for the CPU resource only, a pod that is not ready, or whose
/// first sample after becoming ready is still inside the CPU initialization
/// period, is [`Unready`](Self::Unready). For every other metric a running pod
/// with a sample is [`Ready`](Self::Ready).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PodStatus {
    /// Counted with its sample.
    Ready,
    /// Set aside; counted as 0 % only when the others would scale up.
    Unready,
    /// Not scheduled or not started yet; treated like [`Unready`](Self::Unready).
    Pending,
    /// Being deleted or failed: not counted at all.
    Ignored,
}

/// One pod's sample for a Resource or Pods metric.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodSample {
    /// The pod's usage, or `None` when the metrics pipeline has no sample for it.
    pub value: Option<f64>,
    /// The pod's request for the resource (needed for utilization targets), in the unit of `value`.
    pub request: Option<f64>,
    /// The pod's classification.
    pub status: PodStatus,
}

impl PodSample {
    /// A ready pod with a sample.
    pub const fn ready(value: f64) -> Self {
        Self {
            value: Some(value),
            request: None,
            status: PodStatus::Ready,
        }
    }
    /// A pod with a sample and a request, ready.
    pub const fn with_request(value: f64, request: f64) -> Self {
        Self {
            value: Some(value),
            request: Some(request),
            status: PodStatus::Ready,
        }
    }
    /// A pod without a sample (missing), with an optional request.
    pub const fn missing(request: Option<f64>) -> Self {
        Self {
            value: None,
            request,
            status: PodStatus::Ready,
        }
    }
    /// Sets the status.
    #[must_use]
    pub const fn status(mut self, status: PodStatus) -> Self {
        self.status = status;
        self
    }
}

/// The reading of one metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum MetricValue {
    /// Per-pod samples (Resource and Pods metrics): the exact Kubernetes rules for
    /// missing and unready pods apply.
    PerPod(Vec<PodSample>),
    /// The average over the ready pods (Resource and Pods metrics). For a
    /// utilization target this is the utilization in percent of requests.
    Average(f64),
    /// The total value (Object and External metrics).
    Total(f64),
    /// The metric could not be read; the reason is reported in the decision.
    Unavailable(String),
}

/// A named reading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricReading {
    /// The metric name, matching a [`MetricSpec`](crate::MetricSpec).
    pub name: String,
    /// The reading.
    pub value: MetricValue,
}

/// Everything one decision looks at.
///
/// # Examples
/// ```
/// use sysmanage_scaling::{MetricValue, Observation};
/// let obs = Observation::new(4)
///     .reading("cpu", MetricValue::Average(85.0))
///     .latency_p95_ms(120.0);
/// assert_eq!(obs.current_replicas, 4);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    /// The target's desired replica count (`scale.spec.replicas`).
    pub current_replicas: u32,
    /// Replicas that exist (`scale.status.replicas`); defaults to `current_replicas`.
    /// Object and External average-value targets divide by it.
    pub status_replicas: Option<u32>,
    /// Running and ready replicas; defaults to `current_replicas`. Aggregate
    /// readings and Object/External value targets multiply by it.
    pub ready_replicas: Option<u32>,
    /// One reading per metric. A metric with no reading counts as unavailable.
    pub readings: Vec<MetricReading>,
    /// p95 latency in milliseconds, for latency guards.
    pub latency_p95_ms: Option<f64>,
    /// Error rate as a fraction in `[0, 1]`, for error guards.
    pub error_rate: Option<f64>,
}

impl Observation {
    /// An observation of a target running `current_replicas`.
    pub fn new(current_replicas: u32) -> Self {
        Self {
            current_replicas,
            ..Self::default()
        }
    }
    /// Adds a reading.
    #[must_use]
    pub fn reading(mut self, name: impl Into<String>, value: MetricValue) -> Self {
        self.readings.push(MetricReading {
            name: name.into(),
            value,
        });
        self
    }
    /// Sets the ready replica count.
    #[must_use]
    pub fn ready(mut self, ready: u32) -> Self {
        self.ready_replicas = Some(ready);
        self
    }
    /// Sets the status replica count.
    #[must_use]
    pub fn status_replicas(mut self, n: u32) -> Self {
        self.status_replicas = Some(n);
        self
    }
    /// Sets the p95 latency.
    #[must_use]
    pub fn latency_p95_ms(mut self, ms: f64) -> Self {
        self.latency_p95_ms = Some(ms);
        self
    }
    /// Sets the error rate.
    #[must_use]
    pub fn error_rate(mut self, rate: f64) -> Self {
        self.error_rate = Some(rate);
        self
    }
    /// The reading named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&MetricValue> {
        self.readings
            .iter()
            .find(|r| r.name == name)
            .map(|r| &r.value)
    }
}
