//! HPA specs: metrics, targets, `behavior`, with Kubernetes' defaults and validation bounds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Result, ScalingError};

/// Largest `stabilizationWindowSeconds` the Kubernetes API server accepts (one hour).
pub const MAX_STABILIZATION_WINDOW_SECONDS: u32 = 3600;
/// Largest policy `periodSeconds` the Kubernetes API server accepts (30 minutes).
pub const MAX_PERIOD_SECONDS: u32 = 1800;
/// The controller's default tolerance (`--horizontal-pod-autoscaler-tolerance`).
pub const DEFAULT_TOLERANCE: f64 = 0.1;
/// The controller's default downscale stabilization window
/// (`--horizontal-pod-autoscaler-downscale-stabilization`), used when
/// `behavior.scaleDown.stabilizationWindowSeconds` is not set.
pub const DEFAULT_DOWNSCALE_STABILIZATION: Duration = Duration::from_secs(300);

/// Where a metric comes from, as in `autoscaling/v2` `MetricSourceType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MetricSource {
    /// A resource of the pods (CPU, memory), compared per pod against their requests.
    Resource,
    /// A resource of one container in each pod; the host supplies that
    /// container's usage and request per pod. Computed like [`Resource`](Self::Resource).
    ContainerResource,
    /// A per-pod custom metric, averaged across pods.
    Pods,
    /// A metric describing one object (an ingress's request rate, a queue's length).
    Object,
    /// A metric from outside the cluster.
    External,
}

/// What a metric is compared against, as in `autoscaling/v2` `MetricTarget`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum MetricTarget {
    /// Average utilization in whole percent of the pods' requests (Resource metrics only).
    Utilization(i32),
    /// Average value per pod.
    AverageValue(f64),
    /// Total value (Object and External metrics only).
    Value(f64),
}

/// One metric of an HPA.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricSpec {
    /// The metric's name; readings are matched to it.
    pub name: String,
    /// Where it comes from.
    pub source: MetricSource,
    /// What it is compared against.
    pub target: MetricTarget,
}

impl MetricSpec {
    /// A metric from its parts; see [`HpaSpec::validate`] for the accepted combinations.
    pub fn new(name: impl Into<String>, source: MetricSource, target: MetricTarget) -> Self {
        Self {
            name: name.into(),
            source,
            target,
        }
    }
    /// `type: Resource` with `target.averageUtilization` (whole percent of requests).
    pub fn resource_utilization(name: impl Into<String>, percent: i32) -> Self {
        Self::new(
            name,
            MetricSource::Resource,
            MetricTarget::Utilization(percent),
        )
    }
    /// `type: Resource` with `target.averageValue`.
    pub fn resource_average_value(name: impl Into<String>, value: f64) -> Self {
        Self::new(
            name,
            MetricSource::Resource,
            MetricTarget::AverageValue(value),
        )
    }
    /// `type: Pods` with `target.averageValue`.
    pub fn pods_average_value(name: impl Into<String>, value: f64) -> Self {
        Self::new(name, MetricSource::Pods, MetricTarget::AverageValue(value))
    }
    /// `type: Object` with `target.value`.
    pub fn object_value(name: impl Into<String>, value: f64) -> Self {
        Self::new(name, MetricSource::Object, MetricTarget::Value(value))
    }
    /// `type: Object` with `target.averageValue`.
    pub fn object_average_value(name: impl Into<String>, value: f64) -> Self {
        Self::new(
            name,
            MetricSource::Object,
            MetricTarget::AverageValue(value),
        )
    }
    /// `type: External` with `target.value`.
    pub fn external_value(name: impl Into<String>, value: f64) -> Self {
        Self::new(name, MetricSource::External, MetricTarget::Value(value))
    }
    /// `type: External` with `target.averageValue`.
    pub fn external_average_value(name: impl Into<String>, value: f64) -> Self {
        Self::new(
            name,
            MetricSource::External,
            MetricTarget::AverageValue(value),
        )
    }

    /// Checks the metric on its own: a non-empty name, a target type its
    /// source accepts, and a target greater than zero (at least 0.001 for
    /// values, Kubernetes' milli-unit).
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`], [`ScalingError::NonFinite`].
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(ScalingError::invalid("metrics.name", "must not be empty"));
        }
        let ok = matches!(
            (self.source, self.target),
            (
                MetricSource::Resource | MetricSource::ContainerResource,
                MetricTarget::Utilization(_) | MetricTarget::AverageValue(_)
            ) | (MetricSource::Pods, MetricTarget::AverageValue(_))
                | (
                    MetricSource::Object | MetricSource::External,
                    MetricTarget::Value(_) | MetricTarget::AverageValue(_)
                )
        );
        if !ok {
            return Err(ScalingError::invalid(
                "metrics.target",
                format!(
                    "metric {:?}: a {:?} metric cannot have a {:?} target",
                    self.name, self.source, self.target
                ),
            ));
        }
        match self.target {
            MetricTarget::Utilization(p) if p <= 0 => Err(ScalingError::invalid(
                "metrics.target.averageUtilization",
                format!("metric {:?}: must be greater than zero, got {p}", self.name),
            )),
            MetricTarget::AverageValue(v) | MetricTarget::Value(v) => {
                if !v.is_finite() {
                    return Err(ScalingError::NonFinite {
                        metric: self.name.clone(),
                        field: "target",
                        value: v,
                    });
                }
                // Kubernetes compares milli-quantities: a target must be at least 0.001.
                if to_milli(v) <= 0 {
                    return Err(ScalingError::invalid(
                        "metrics.target.value",
                        format!("metric {:?}: must be greater than zero, got {v}", self.name),
                    ));
                }
                Ok(())
            }
            MetricTarget::Utilization(_) => Ok(()),
        }
    }
}

/// Converts a value to Kubernetes milli-units (`Quantity::MilliValue`), rounding to nearest.
pub(crate) fn to_milli(v: f64) -> i64 {
    let m = (v * 1000.0).round();
    if m >= i64::MAX as f64 {
        i64::MAX
    } else {
        m as i64
    }
}

/// `selectPolicy` of a scaling direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SelectPolicy {
    /// Pick the policy allowing the biggest change (the default).
    #[default]
    Max,
    /// Pick the policy allowing the smallest change.
    Min,
    /// Never scale in this direction.
    Disabled,
}

/// The unit of a scaling policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PolicyType {
    /// An absolute number of pods per period.
    Pods,
    /// A percentage of the replicas at the start of the period.
    Percent,
}

/// One `HPAScalingPolicy`: at most `value` pods or percent per `period_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicy {
    /// Pods or Percent.
    #[serde(rename = "type")]
    pub kind: PolicyType,
    /// The amount, in `1..=2147483647` (`int32`).
    pub value: u32,
    /// The window the amount applies to, in `1..=1800` seconds.
    pub period_seconds: u32,
}

impl ScalingPolicy {
    /// At most `value` pods per `period_seconds`.
    pub const fn pods(value: u32, period_seconds: u32) -> Self {
        Self {
            kind: PolicyType::Pods,
            value,
            period_seconds,
        }
    }
    /// At most `value` percent per `period_seconds`.
    pub const fn percent(value: u32, period_seconds: u32) -> Self {
        Self {
            kind: PolicyType::Percent,
            value,
            period_seconds,
        }
    }
}

/// `HPAScalingRules` of one direction as written by the user; unset fields take
/// Kubernetes' defaults (see [`Behavior::resolve`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRules {
    /// `stabilizationWindowSeconds`, in `0..=3600`.
    pub stabilization_window_seconds: Option<u32>,
    /// `selectPolicy`.
    pub select_policy: Option<SelectPolicy>,
    /// `policies`; when given, must not be empty.
    pub policies: Option<Vec<ScalingPolicy>>,
    /// Per-direction `tolerance` (Kubernetes 1.33+); defaults to the spec's tolerance.
    pub tolerance: Option<f64>,
}

impl ScalingRules {
    /// Rules with the given stabilization window and policies, selecting `Max`.
    pub fn new(stabilization_window_seconds: u32, policies: Vec<ScalingPolicy>) -> Self {
        Self {
            stabilization_window_seconds: Some(stabilization_window_seconds),
            select_policy: Some(SelectPolicy::Max),
            policies: Some(policies),
            tolerance: None,
        }
    }
    /// Sets `selectPolicy`.
    #[must_use]
    pub fn select(mut self, policy: SelectPolicy) -> Self {
        self.select_policy = Some(policy);
        self
    }
    /// Sets the per-direction tolerance.
    #[must_use]
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = Some(tolerance);
        self
    }

    fn validate(&self, dir: &'static str) -> Result<()> {
        if let Some(w) = self.stabilization_window_seconds
            && w > MAX_STABILIZATION_WINDOW_SECONDS
        {
            return Err(ScalingError::invalid(
                dir_field(dir, "stabilizationWindowSeconds"),
                format!(
                    "must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}, got {w}"
                ),
            ));
        }
        if let Some(p) = &self.policies {
            if p.is_empty() {
                return Err(ScalingError::invalid(
                    dir_field(dir, "policies"),
                    "must specify at least one Policy",
                ));
            }
            for pol in p {
                if pol.value == 0 || pol.value > crate::limits::MAX_REPLICAS {
                    return Err(ScalingError::invalid(
                        dir_field(dir, "policies.value"),
                        format!(
                            "must be in 1..={} (int32), got {}",
                            crate::limits::MAX_REPLICAS,
                            pol.value
                        ),
                    ));
                }
                if pol.period_seconds == 0 || pol.period_seconds > MAX_PERIOD_SECONDS {
                    return Err(ScalingError::invalid(
                        dir_field(dir, "policies.periodSeconds"),
                        format!(
                            "must be in 1..={MAX_PERIOD_SECONDS}, got {}",
                            pol.period_seconds
                        ),
                    ));
                }
            }
        }
        if let Some(t) = self.tolerance {
            check_tolerance(dir_field(dir, "tolerance"), t)?;
        }
        Ok(())
    }
}

fn dir_field(dir: &'static str, f: &'static str) -> &'static str {
    match (dir, f) {
        ("up", "stabilizationWindowSeconds") => "behavior.scaleUp.stabilizationWindowSeconds",
        ("up", "policies") => "behavior.scaleUp.policies",
        ("up", "policies.value") => "behavior.scaleUp.policies.value",
        ("up", "policies.periodSeconds") => "behavior.scaleUp.policies.periodSeconds",
        ("up", _) => "behavior.scaleUp.tolerance",
        (_, "stabilizationWindowSeconds") => "behavior.scaleDown.stabilizationWindowSeconds",
        (_, "policies") => "behavior.scaleDown.policies",
        (_, "policies.value") => "behavior.scaleDown.policies.value",
        (_, "policies.periodSeconds") => "behavior.scaleDown.policies.periodSeconds",
        _ => "behavior.scaleDown.tolerance",
    }
}

fn check_tolerance(field: &'static str, t: f64) -> Result<()> {
    if !t.is_finite() || t < 0.0 {
        return Err(ScalingError::invalid(
            field,
            format!("must be a finite number >= 0, got {t}"),
        ));
    }
    Ok(())
}

/// `HorizontalPodAutoscalerBehavior`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Behavior {
    /// Rules for scaling up; `None` takes every default.
    pub scale_up: Option<ScalingRules>,
    /// Rules for scaling down; `None` takes every default.
    pub scale_down: Option<ScalingRules>,
}

/// Scaling rules with every default filled in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedRules {
    /// Stabilization window in seconds.
    pub stabilization_window_seconds: u32,
    /// The policy selection.
    pub select_policy: SelectPolicy,
    /// The policies (never empty).
    pub policies: Vec<ScalingPolicy>,
    /// The tolerance for this direction.
    pub tolerance: f64,
}

impl ResolvedRules {
    /// The longest `periodSeconds` among the policies.
    pub fn longest_period_seconds(&self) -> u32 {
        self.policies
            .iter()
            .map(|p| p.period_seconds)
            .max()
            .unwrap_or(0)
    }
}

impl Behavior {
    /// Fills unset fields exactly as Kubernetes does (`GenerateHPAScaleUpRules` /
    /// `GenerateHPAScaleDownRules` plus the controller's downscale window):
    ///
    /// | | stabilization | policies | selectPolicy |
    /// |---|---|---|---|
    /// | scale up | 0 s | 4 pods / 15 s and 100 % / 15 s | Max |
    /// | scale down | `downscale_default` (300 s) | 100 % / 15 s | Max |
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use sysmanage_scaling::{Behavior, ScalingPolicy};
    /// let (up, down) = Behavior::default().resolve(Duration::from_secs(300), 0.1);
    /// assert_eq!(up.stabilization_window_seconds, 0);
    /// assert_eq!(up.policies, vec![ScalingPolicy::pods(4, 15), ScalingPolicy::percent(100, 15)]);
    /// assert_eq!(down.stabilization_window_seconds, 300);
    /// assert_eq!(down.policies, vec![ScalingPolicy::percent(100, 15)]);
    /// ```
    pub fn resolve(
        &self,
        downscale_default: Duration,
        tolerance: f64,
    ) -> (ResolvedRules, ResolvedRules) {
        let up = self.scale_up.clone().unwrap_or_default();
        let down = self.scale_down.clone().unwrap_or_default();
        let down_default = u32::try_from(downscale_default.as_secs()).unwrap_or(u32::MAX);
        (
            ResolvedRules {
                stabilization_window_seconds: up.stabilization_window_seconds.unwrap_or(0),
                select_policy: up.select_policy.unwrap_or_default(),
                policies: up.policies.unwrap_or_else(|| {
                    vec![ScalingPolicy::pods(4, 15), ScalingPolicy::percent(100, 15)]
                }),
                tolerance: up.tolerance.unwrap_or(tolerance),
            },
            ResolvedRules {
                stabilization_window_seconds: down
                    .stabilization_window_seconds
                    .unwrap_or(down_default),
                select_policy: down.select_policy.unwrap_or_default(),
                policies: down
                    .policies
                    .unwrap_or_else(|| vec![ScalingPolicy::percent(100, 15)]),
                tolerance: down.tolerance.unwrap_or(tolerance),
            },
        )
    }
}

/// A `HorizontalPodAutoscaler` spec plus the controller settings that shape its decisions.
///
/// # Examples
/// ```
/// use sysmanage_scaling::{HpaSpec, MetricSpec, ScalingError};
/// let spec = HpaSpec::new(2, 10, vec![MetricSpec::resource_utilization("cpu", 60)]);
/// assert!(spec.validate().is_ok());
/// let bad = HpaSpec::new(5, 3, vec![MetricSpec::resource_utilization("cpu", 60)]);
/// assert!(matches!(bad.validate(), Err(ScalingError::MinAboveMax { min: 5, max: 3 })));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaSpec {
    /// `minReplicas` (Kubernetes defaults it to 1, and so does a missing
    /// field here). Zero is accepted only with an
    /// Object or External metric, as with Kubernetes' `HPAScaleToZero`. At most
    /// [`MAX_REPLICAS`](crate::limits::MAX_REPLICAS).
    #[serde(default = "one")]
    pub min_replicas: u32,
    /// `maxReplicas`, at least 1, at least `min_replicas` and at most
    /// [`MAX_REPLICAS`](crate::limits::MAX_REPLICAS) (`int32`).
    pub max_replicas: u32,
    /// The metrics; the largest proposal wins.
    pub metrics: Vec<MetricSpec>,
    /// `behavior`; `None` selects the controller's legacy path (scale-up limit
    /// `max(2 × current, 4)`, downscale stabilization only).
    #[serde(default)]
    pub behavior: Option<Behavior>,
    /// Tolerance around a usage ratio of 1.0 within which nothing changes (default 0.1, inclusive).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Downscale stabilization used by the legacy path and when
    /// `behavior.scaleDown.stabilizationWindowSeconds` is unset (default 300 s).
    #[serde(with = "secs", default = "default_downscale_stabilization")]
    pub downscale_stabilization: Duration,
}

fn one() -> u32 {
    1
}

fn default_tolerance() -> f64 {
    DEFAULT_TOLERANCE
}

fn default_downscale_stabilization() -> Duration {
    DEFAULT_DOWNSCALE_STABILIZATION
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

impl HpaSpec {
    /// A spec with the controller defaults: no `behavior` (legacy path), tolerance 0.1, 300 s downscale window.
    pub fn new(min_replicas: u32, max_replicas: u32, metrics: Vec<MetricSpec>) -> Self {
        Self {
            min_replicas,
            max_replicas,
            metrics,
            behavior: None,
            tolerance: DEFAULT_TOLERANCE,
            downscale_stabilization: DEFAULT_DOWNSCALE_STABILIZATION,
        }
    }

    /// Sets `behavior` (use `Behavior::default()` for every Kubernetes default).
    #[must_use]
    pub fn with_behavior(mut self, behavior: Behavior) -> Self {
        self.behavior = Some(behavior);
        self
    }

    /// Sets the tolerance.
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Checks the spec against Kubernetes' `autoscaling/v2` validation.
    ///
    /// # Errors
    /// [`ScalingError::MinAboveMax`], [`ScalingError::InvalidSpec`] for zero
    /// `maxReplicas`, an empty metric list, zero or non-positive targets,
    /// windows above 3600 s, periods outside `1..=1800` s, empty policy lists,
    /// zero policy values or a bad tolerance; [`ScalingError::NonFinite`] for
    /// NaN targets; [`ScalingError::DuplicateMetric`];
    /// [`ScalingError::OutOfRange`] for `minReplicas` or `maxReplicas` above
    /// [`MAX_REPLICAS`](crate::limits::MAX_REPLICAS) (Kubernetes' `int32`).
    pub fn validate(&self) -> Result<()> {
        crate::limits::replicas("minReplicas", self.min_replicas)?;
        crate::limits::replicas("maxReplicas", self.max_replicas)?;
        if self.max_replicas == 0 {
            return Err(ScalingError::invalid(
                "maxReplicas",
                "must be greater than zero",
            ));
        }
        if self.min_replicas > self.max_replicas {
            return Err(ScalingError::MinAboveMax {
                min: self.min_replicas,
                max: self.max_replicas,
            });
        }
        if self.metrics.is_empty() {
            return Err(ScalingError::invalid(
                "metrics",
                "must specify at least one metric",
            ));
        }
        for (i, m) in self.metrics.iter().enumerate() {
            m.validate()?;
            if self.metrics[..i].iter().any(|o| o.name == m.name) {
                return Err(ScalingError::DuplicateMetric(m.name.clone()));
            }
        }
        if self.min_replicas == 0
            && !self
                .metrics
                .iter()
                .any(|m| matches!(m.source, MetricSource::Object | MetricSource::External))
        {
            return Err(ScalingError::invalid(
                "minReplicas",
                "must be at least 1 unless an Object or External metric is configured",
            ));
        }
        check_tolerance("tolerance", self.tolerance)?;
        if self.downscale_stabilization
            > Duration::from_secs(u64::from(MAX_STABILIZATION_WINDOW_SECONDS))
        {
            return Err(ScalingError::invalid(
                "downscaleStabilization",
                format!(
                    "must be at most {MAX_STABILIZATION_WINDOW_SECONDS} s, got {:?}",
                    self.downscale_stabilization
                ),
            ));
        }
        if let Some(b) = &self.behavior {
            if let Some(r) = &b.scale_up {
                r.validate("up")?;
            }
            if let Some(r) = &b.scale_down {
                r.validate("down")?;
            }
        }
        Ok(())
    }
}
