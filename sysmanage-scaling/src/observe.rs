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

/// A pod's lifecycle phase, as Kubernetes reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PodPhase {
    /// Accepted, not running yet.
    Pending,
    /// Running.
    Running,
    /// Terminated successfully.
    Succeeded,
    /// Terminated with a failure.
    Failed,
    /// Unknown.
    Unknown,
}

/// The `Ready` condition of a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadyCondition {
    /// `status == "True"`.
    pub ready: bool,
    /// `lastTransitionTime`.
    pub last_transition: sysmanage_core::Timestamp,
}

/// What [`classify_pod`] needs to know about a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInfo {
    /// The phase.
    pub phase: PodPhase,
    /// `deletionTimestamp` is set.
    pub deleting: bool,
    /// The `Ready` condition, if present.
    pub ready: Option<ReadyCondition>,
    /// `status.startTime`, if set.
    pub start_time: Option<sysmanage_core::Timestamp>,
}

/// When a metric sample was taken and over which window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleTime {
    /// The sample's timestamp.
    pub at: sysmanage_core::Timestamp,
    /// The window it averages over.
    pub window: std::time::Duration,
}

/// The controller's readiness settings for the CPU resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessRules {
    /// `--horizontal-pod-autoscaler-cpu-initialization-period` (default 5 min).
    pub cpu_initialization_period: std::time::Duration,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay` (default 30 s).
    pub initial_readiness_delay: std::time::Duration,
}

impl Default for ReadinessRules {
    fn default() -> Self {
        Self {
            cpu_initialization_period: std::time::Duration::from_secs(300),
            initial_readiness_delay: std::time::Duration::from_secs(30),
        }
    }
}

/// Classifies a pod as Kubernetes' `groupPods` does, for a [`PodSample`].
///
/// Deleted and failed pods are ignored; pending pods are pending; a pod
/// without a sample is left to count as *missing* (give it `value: None`);
/// for CPU, a pod without a `Ready` condition or start time, a pod inside the
/// CPU initialization period that is not ready or whose sample predates one
/// full window after becoming ready, and a pod past that period that has
/// never been ready within the initial readiness delay are unready. Every
/// other pod is ready.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use sysmanage_core::Timestamp;
/// use sysmanage_scaling::{classify_pod, PodInfo, PodPhase, PodStatus, ReadinessRules, ReadyCondition, SampleTime};
/// let now = Timestamp::from_secs(10_000);
/// let pod = PodInfo {
///     phase: PodPhase::Running,
///     deleting: false,
///     ready: Some(ReadyCondition { ready: true, last_transition: now - Duration::from_secs(30) }),
///     start_time: Some(now - Duration::from_secs(60)),
/// };
/// // a sample covering time before the pod became ready is ignored for CPU
/// let stale = SampleTime { at: now, window: Duration::from_secs(60) };
/// assert_eq!(classify_pod(&pod, Some(stale), true, now, &ReadinessRules::default()), PodStatus::Unready);
/// assert_eq!(classify_pod(&pod, Some(stale), false, now, &ReadinessRules::default()), PodStatus::Ready);
/// ```
pub fn classify_pod(
    pod: &PodInfo,
    sample: Option<SampleTime>,
    is_cpu: bool,
    now: sysmanage_core::Timestamp,
    rules: &ReadinessRules,
) -> PodStatus {
    if pod.deleting || pod.phase == PodPhase::Failed {
        return PodStatus::Ignored;
    }
    if pod.phase == PodPhase::Pending {
        return PodStatus::Pending;
    }
    let Some(sample) = sample else {
        // missing: the calculator sees `value: None`
        return PodStatus::Ready;
    };
    if !is_cpu {
        return PodStatus::Ready;
    }
    let (Some(cond), Some(start)) = (pod.ready, pod.start_time) else {
        return PodStatus::Unready;
    };
    let unready = if start + rules.cpu_initialization_period > now {
        !cond.ready || sample.at < cond.last_transition + sample.window
    } else {
        !cond.ready && start + rules.initial_readiness_delay > cond.last_transition
    };
    if unready {
        PodStatus::Unready
    } else {
        PodStatus::Ready
    }
}
