//! `autoscaling/v2` `HorizontalPodAutoscaler`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Quantity, check_dns1123_label, check_path_segment, invalid};
use crate::error::{Result, ScalingError};
use crate::spec::{
    Behavior, HpaSpec, MAX_PERIOD_SECONDS, MAX_STABILIZATION_WINDOW_SECONDS, MetricSource,
    MetricSpec, MetricTarget, PolicyType, ScalingPolicy, ScalingRules, SelectPolicy,
};

/// Kubernetes feature gates that change what the API server accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeatureGates {
    /// `HPAScaleToZero` (alpha, off by default): `minReplicas: 0` is accepted
    /// when an Object or External metric is configured.
    pub hpa_scale_to_zero: bool,
}

impl FeatureGates {
    /// Every gate at its Kubernetes default (off).
    pub const fn new() -> Self {
        Self {
            hpa_scale_to_zero: false,
        }
    }
    /// Sets `HPAScaleToZero`.
    #[must_use]
    pub const fn hpa_scale_to_zero(mut self, on: bool) -> Self {
        self.hpa_scale_to_zero = on;
        self
    }
}

/// An `autoscaling/v2` `HorizontalPodAutoscaler` as stored by the API server.
///
/// # Examples
/// ```
/// use sysmanage_scaling::manifest::HorizontalPodAutoscaler;
/// let hpa = HorizontalPodAutoscaler::from_json(r#"{
///   "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
///   "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "4711"},
///   "spec": {
///     "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
///     "minReplicas": 2, "maxReplicas": 10,
///     "metrics": [{"type": "Resource",
///                  "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]
///   },
///   "status": {"currentReplicas": 3, "desiredReplicas": 3}
/// }"#)?;
/// let spec = hpa.to_spec()?;
/// assert_eq!((spec.min_replicas, spec.max_replicas), (2, 10));
/// assert_eq!(spec.metrics[0].name, "cpu");
/// # Ok::<(), sysmanage_scaling::ScalingError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HorizontalPodAutoscaler {
    /// Must be `autoscaling/v2`.
    pub api_version: String,
    /// Must be `HorizontalPodAutoscaler`.
    pub kind: String,
    /// Name, namespace, labels; everything else kubectl prints is ignored.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec (unknown fields rejected).
    pub spec: HorizontalPodAutoscalerSpec,
    /// The status, if printed (read, never used for decisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<HorizontalPodAutoscalerStatus>,
}

/// The parts of `ObjectMeta` that identify an object; other fields (`uid`,
/// `managedFields`, `creationTimestamp`, …) are accepted and dropped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `metadata.namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.labels`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The parts of the status the controller reports; others are accepted and dropped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HorizontalPodAutoscalerStatus {
    /// `status.currentReplicas`.
    #[serde(default)]
    pub current_replicas: Option<i32>,
    /// `status.desiredReplicas`.
    #[serde(default)]
    pub desired_replicas: Option<i32>,
}

/// `HorizontalPodAutoscalerSpec`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HorizontalPodAutoscalerSpec {
    /// `scaleTargetRef`.
    pub scale_target_ref: CrossVersionObjectReference,
    /// `minReplicas` (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    /// `maxReplicas`.
    pub max_replicas: i32,
    /// `metrics` (default: CPU at 80 % utilization).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<HpaMetricSpec>,
    /// `behavior`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<ScalingBehavior>,
}

/// `CrossVersionObjectReference`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrossVersionObjectReference {
    /// `apiVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `kind`.
    #[serde(default)]
    pub kind: String,
    /// `name`.
    #[serde(default)]
    pub name: String,
}

/// `MetricSpec`: exactly one source, matching `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaMetricSpec {
    /// `Resource`, `ContainerResource`, `Pods`, `Object` or `External`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `resource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceMetricSource>,
    /// `containerResource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_resource: Option<ContainerResourceMetricSource>,
    /// `pods`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<PodsMetricSource>,
    /// `object`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectMetricSource>,
    /// `external`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalMetricSource>,
}

/// `ResourceMetricSource`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceMetricSource {
    /// The resource, e.g. `cpu`.
    #[serde(default)]
    pub name: String,
    /// The target.
    pub target: HpaMetricTarget,
}

/// `ContainerResourceMetricSource`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerResourceMetricSource {
    /// The resource, e.g. `cpu`.
    #[serde(default)]
    pub name: String,
    /// The container whose usage counts.
    #[serde(default)]
    pub container: String,
    /// The target.
    pub target: HpaMetricTarget,
}

/// `PodsMetricSource`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodsMetricSource {
    /// The metric.
    pub metric: MetricIdentifier,
    /// The target.
    pub target: HpaMetricTarget,
}

/// `ObjectMetricSource`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMetricSource {
    /// The object the metric describes.
    pub described_object: CrossVersionObjectReference,
    /// The metric.
    pub metric: MetricIdentifier,
    /// The target.
    pub target: HpaMetricTarget,
}

/// `ExternalMetricSource`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalMetricSource {
    /// The metric.
    pub metric: MetricIdentifier,
    /// The target.
    pub target: HpaMetricTarget,
}

/// `MetricIdentifier`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricIdentifier {
    /// The metric's name.
    #[serde(default)]
    pub name: String,
    /// A label selector narrowing the metric (passed to the metrics source, not interpreted here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// `LabelSelector`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// `matchLabels`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// `matchExpressions`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// `LabelSelectorRequirement`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// The values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// `MetricTarget`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaMetricTarget {
    /// `Utilization`, `Value` or `AverageValue`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Quantity>,
    /// `averageValue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_value: Option<Quantity>,
    /// `averageUtilization`, whole percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_utilization: Option<i32>,
}

/// `HorizontalPodAutoscalerBehavior`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingBehavior {
    /// `scaleUp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<HpaScalingRules>,
    /// `scaleDown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<HpaScalingRules>,
}

/// `HPAScalingRules`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaScalingRules {
    /// `stabilizationWindowSeconds`, `0..=3600`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization_window_seconds: Option<i32>,
    /// `Max`, `Min` or `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<String>,
    /// `policies`; when given, at least one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<HpaScalingPolicy>>,
    /// `tolerance` (Kubernetes 1.33+), a quantity `>= 0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<Quantity>,
}

/// `HPAScalingPolicy`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaScalingPolicy {
    /// `Pods` or `Percent`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `value`, greater than zero.
    #[serde(default)]
    pub value: i32,
    /// `periodSeconds`, `1..=1800`.
    #[serde(default)]
    pub period_seconds: i32,
}

impl HorizontalPodAutoscaler {
    /// Parses a JSON manifest (`kubectl get hpa NAME -o json`).
    ///
    /// # Errors
    /// [`ScalingError::Manifest`] naming the line and column of a syntax
    /// error, an unknown `spec` field, a missing required field or a bad quantity.
    pub fn from_json(text: &str) -> Result<Self> {
        super::from_json(text)
    }

    /// Parses a YAML manifest (`kubectl get hpa NAME -o yaml`), one document.
    ///
    /// # Errors
    /// As [`from_json`](Self::from_json).
    #[cfg(feature = "yaml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
    pub fn from_yaml(text: &str) -> Result<Self> {
        super::from_yaml(text)
    }

    /// Converts to an [`HpaSpec`] with Kubernetes' defaults and validation,
    /// all feature gates off.
    ///
    /// # Errors
    /// [`ScalingError::Manifest`] naming the field path (e.g.
    /// `spec.behavior.scaleUp.policies[0].periodSeconds`) for anything the
    /// API server rejects, and for target types the controller can never
    /// compute (e.g. an Object metric of type `Value` without `value`).
    pub fn to_spec(&self) -> Result<HpaSpec> {
        self.to_spec_with(FeatureGates::default())
    }

    /// As [`to_spec`](Self::to_spec), with the given feature gates.
    ///
    /// # Errors
    /// As [`to_spec`](Self::to_spec).
    pub fn to_spec_with(&self, gates: FeatureGates) -> Result<HpaSpec> {
        if self.api_version != "autoscaling/v2" {
            return Err(invalid(
                "apiVersion",
                format!(
                    "{:?}: only autoscaling/v2 is supported (v1 and the removed v2beta versions convert with `kubectl convert`)",
                    self.api_version
                ),
            ));
        }
        if self.kind != "HorizontalPodAutoscaler" {
            return Err(invalid(
                "kind",
                format!("{:?}: expected HorizontalPodAutoscaler", self.kind),
            ));
        }
        if let Some(name) = &self.metadata.name {
            check_dns1123_subdomain("metadata.name", name)?;
        }
        self.spec.to_spec(gates)
    }
}

fn check_dns1123_subdomain(path: &str, v: &str) -> Result<()> {
    if v.is_empty() || v.len() > 253 {
        return Err(invalid(path, format!("{v:?}: must be 1..=253 characters")));
    }
    for label in v.split('.') {
        check_dns1123_label(path, label)?;
    }
    Ok(())
}

fn check_ref(path: &str, r: &CrossVersionObjectReference) -> Result<()> {
    check_path_segment(&format!("{path}.kind"), &r.kind)?;
    check_path_segment(&format!("{path}.name"), &r.name)
}

impl HorizontalPodAutoscalerSpec {
    /// Converts with defaults and validation (see
    /// [`HorizontalPodAutoscaler::to_spec_with`]).
    ///
    /// # Errors
    /// As [`HorizontalPodAutoscaler::to_spec`].
    pub fn to_spec(&self, gates: FeatureGates) -> Result<HpaSpec> {
        let lower = i32::from(!gates.hpa_scale_to_zero);
        let min = self.min_replicas.unwrap_or(1);
        if min < lower {
            return Err(invalid(
                "spec.minReplicas",
                format!("{min}: must be greater than or equal to {lower}"),
            ));
        }
        if self.max_replicas < 1 {
            return Err(invalid(
                "spec.maxReplicas",
                format!("{}: must be greater than 0", self.max_replicas),
            ));
        }
        if self.max_replicas < min {
            return Err(invalid(
                "spec.maxReplicas",
                format!(
                    "{}: must be greater than or equal to `minReplicas`",
                    self.max_replicas
                ),
            ));
        }
        check_ref("spec.scaleTargetRef", &self.scale_target_ref)?;
        let mut metrics = Vec::with_capacity(self.metrics.len().max(1));
        for (i, m) in self.metrics.iter().enumerate() {
            let spec = m.to_metric(&format!("spec.metrics[{i}]"))?;
            if let Some(j) = metrics
                .iter()
                .position(|o: &MetricSpec| o.name == spec.name)
            {
                return Err(invalid(
                    &format!("spec.metrics[{i}]"),
                    format!(
                        "reads the metric {:?} as spec.metrics[{j}] does; readings are matched by name, \
                         so each metric needs its own name",
                        spec.name
                    ),
                ));
            }
            metrics.push(spec);
        }
        if metrics.is_empty() {
            // SetDefaults_HorizontalPodAutoscaler
            metrics.push(MetricSpec::resource_utilization("cpu", 80));
        }
        if min == 0
            && !metrics
                .iter()
                .any(|m| matches!(m.source, MetricSource::Object | MetricSource::External))
        {
            return Err(invalid(
                "spec.metrics",
                "must specify at least one Object or External metric to support scaling to zero replicas",
            ));
        }
        let mut spec = HpaSpec::new(
            u32::try_from(min).unwrap_or(0),
            u32::try_from(self.max_replicas).unwrap_or(0),
            metrics,
        );
        if let Some(b) = &self.behavior {
            spec = spec.with_behavior(Behavior {
                scale_up: b
                    .scale_up
                    .as_ref()
                    .map(|r| r.to_rules("spec.behavior.scaleUp"))
                    .transpose()?,
                scale_down: b
                    .scale_down
                    .as_ref()
                    .map(|r| r.to_rules("spec.behavior.scaleDown"))
                    .transpose()?,
            });
        }
        spec.validate()?;
        Ok(spec)
    }
}

impl HpaMetricTarget {
    /// `validateMetricTarget`.
    fn check(&self, path: &str) -> Result<()> {
        if self.kind.is_empty() {
            return Err(invalid(
                &format!("{path}.type"),
                "Required value: must specify a metric target type",
            ));
        }
        if !matches!(self.kind.as_str(), "Utilization" | "Value" | "AverageValue") {
            return Err(invalid(
                &format!("{path}.type"),
                format!(
                    "{:?}: must be either Utilization, Value, or AverageValue",
                    self.kind
                ),
            ));
        }
        if let Some(v) = &self.value
            && !v.is_positive()
        {
            return Err(invalid(
                &format!("{path}.value"),
                format!("{v}: must be positive"),
            ));
        }
        if let Some(v) = &self.average_value
            && !v.is_positive()
        {
            return Err(invalid(
                &format!("{path}.averageValue"),
                format!("{v}: must be positive"),
            ));
        }
        if let Some(u) = self.average_utilization
            && u < 1
        {
            return Err(invalid(
                &format!("{path}.averageUtilization"),
                format!("{u}: must be greater than 0"),
            ));
        }
        Ok(())
    }
}

/// A quantity as the controller reads it: `MilliValue()`, rounded up.
fn milli(q: &Quantity) -> f64 {
    q.milli_value() as f64 / 1000.0
}

/// Resource and ContainerResource targets (`validateResourceSource`; the
/// controller prefers `averageValue` when both could apply).
fn resource_target(path: &str, t: &HpaMetricTarget) -> Result<MetricTarget> {
    t.check(path)?;
    match (&t.average_utilization, &t.average_value) {
        (None, None) => Err(invalid(
            &format!("{path}.averageUtilization"),
            "Required value: must set either a target raw value or a target utilization",
        )),
        (Some(_), Some(_)) => Err(invalid(
            &format!("{path}.averageValue"),
            "Forbidden: may not set both a target raw value and a target utilization",
        )),
        (_, Some(v)) => Ok(MetricTarget::AverageValue(milli(v))),
        (Some(u), None) => Ok(MetricTarget::Utilization(*u)),
    }
}

impl HpaMetricSpec {
    fn to_metric(&self, path: &str) -> Result<MetricSpec> {
        let present: Vec<&str> = [
            ("resource", self.resource.is_some()),
            ("containerResource", self.container_resource.is_some()),
            ("pods", self.pods.is_some()),
            ("object", self.object.is_some()),
            ("external", self.external.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, p)| p.then_some(n))
        .collect();
        let expected = match self.kind.as_str() {
            "" => {
                return Err(invalid(
                    &format!("{path}.type"),
                    "Required value: must specify a metric source type",
                ));
            }
            "Resource" => "resource",
            "ContainerResource" => "containerResource",
            "Pods" => "pods",
            "Object" => "object",
            "External" => "external",
            other => {
                return Err(invalid(
                    &format!("{path}.type"),
                    format!(
                        "Unsupported value: {other:?}: supported values: \"ContainerResource\", \"External\", \"Object\", \"Pods\", \"Resource\""
                    ),
                ));
            }
        };
        if !present.contains(&expected) {
            return Err(invalid(
                &format!("{path}.{expected}"),
                "Required value: must populate information for the given metric source",
            ));
        }
        if let Some(extra) = present.iter().find(|p| **p != expected) {
            return Err(invalid(
                &format!("{path}.{extra}"),
                "Forbidden: must populate the given metric source only",
            ));
        }
        if let Some(r) = &self.resource {
            let p = format!("{path}.resource");
            if r.name.is_empty() {
                return Err(invalid(
                    &format!("{p}.name"),
                    "Required value: must specify a resource name",
                ));
            }
            let target = resource_target(&format!("{p}.target"), &r.target)?;
            return Ok(MetricSpec::new(&r.name, MetricSource::Resource, target));
        }
        if let Some(r) = &self.container_resource {
            let p = format!("{path}.containerResource");
            if r.name.is_empty() {
                return Err(invalid(
                    &format!("{p}.name"),
                    "Required value: must specify a resource name",
                ));
            }
            if r.container.is_empty() {
                return Err(invalid(
                    &format!("{p}.container"),
                    "Required value: must specify a container",
                ));
            }
            check_dns1123_label(&format!("{p}.container"), &r.container)?;
            let target = resource_target(&format!("{p}.target"), &r.target)?;
            return Ok(MetricSpec::new(
                format!("{}/{}", r.container, r.name),
                MetricSource::ContainerResource,
                target,
            ));
        }
        if let Some(s) = &self.pods {
            let p = format!("{path}.pods");
            check_path_segment(&format!("{p}.metric.name"), &s.metric.name)?;
            s.target.check(&format!("{p}.target"))?;
            let Some(v) = &s.target.average_value else {
                return Err(invalid(
                    &format!("{p}.target.averageValue"),
                    "Required value: must specify a positive target averageValue",
                ));
            };
            return Ok(MetricSpec::pods_average_value(&s.metric.name, milli(v)));
        }
        if let Some(s) = &self.object {
            let p = format!("{path}.object");
            check_ref(&format!("{p}.describedObject"), &s.described_object)?;
            check_path_segment(&format!("{p}.metric.name"), &s.metric.name)?;
            s.target.check(&format!("{p}.target"))?;
            if s.target.value.is_none() && s.target.average_value.is_none() {
                return Err(invalid(
                    &format!("{p}.target.averageValue"),
                    "Required value: must set either a target value or averageValue",
                ));
            }
            // the controller picks by type and fails the metric on a mismatch
            let target = match (
                s.target.kind.as_str(),
                &s.target.value,
                &s.target.average_value,
            ) {
                ("Value", Some(v), _) => MetricTarget::Value(milli(v)),
                ("AverageValue", _, Some(v)) => MetricTarget::AverageValue(milli(v)),
                (k, _, _) => {
                    return Err(invalid(
                        &format!("{p}.target.type"),
                        format!(
                            "{k:?}: the controller reads an Object metric's `value` for type Value and \
                             its `averageValue` for type AverageValue; this combination never computes"
                        ),
                    ));
                }
            };
            return Ok(MetricSpec::new(
                &s.metric.name,
                MetricSource::Object,
                target,
            ));
        }
        if let Some(s) = &self.external {
            let p = format!("{path}.external");
            check_path_segment(&format!("{p}.metric.name"), &s.metric.name)?;
            s.target.check(&format!("{p}.target"))?;
            let target = match (&s.target.value, &s.target.average_value) {
                (None, None) => {
                    return Err(invalid(
                        &format!("{p}.target.averageValue"),
                        "Required value: must set either a target value for metric or a per-pod target",
                    ));
                }
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        &format!("{p}.target.value"),
                        "Forbidden: may not set both a target value for metric and a per-pod target",
                    ));
                }
                (_, Some(v)) => MetricTarget::AverageValue(milli(v)),
                (Some(v), None) => MetricTarget::Value(milli(v)),
            };
            return Ok(MetricSpec::new(
                &s.metric.name,
                MetricSource::External,
                target,
            ));
        }
        Err(ScalingError::invalid("metrics", "unreachable: no source"))
    }
}

impl HpaScalingRules {
    fn to_rules(&self, path: &str) -> Result<ScalingRules> {
        let window = match self.stabilization_window_seconds {
            Some(w) if w < 0 => {
                return Err(invalid(
                    &format!("{path}.stabilizationWindowSeconds"),
                    format!("{w}: must be greater than or equal to zero"),
                ));
            }
            Some(w) if w > MAX_STABILIZATION_WINDOW_SECONDS as i32 => {
                return Err(invalid(
                    &format!("{path}.stabilizationWindowSeconds"),
                    format!(
                        "{w}: must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"
                    ),
                ));
            }
            w => w.map(i32::unsigned_abs),
        };
        let select = match self.select_policy.as_deref() {
            None => None,
            Some("Max") => Some(SelectPolicy::Max),
            Some("Min") => Some(SelectPolicy::Min),
            Some("Disabled") => Some(SelectPolicy::Disabled),
            Some(other) => {
                return Err(invalid(
                    &format!("{path}.selectPolicy"),
                    format!(
                        "Unsupported value: {other:?}: supported values: \"Disabled\", \"Max\", \"Min\""
                    ),
                ));
            }
        };
        let policies = match &self.policies {
            None => None,
            Some(p) if p.is_empty() => {
                return Err(invalid(
                    &format!("{path}.policies"),
                    "Required value: must specify at least one Policy",
                ));
            }
            Some(p) => Some(
                p.iter()
                    .enumerate()
                    .map(|(i, pol)| pol.to_policy(&format!("{path}.policies[{i}]")))
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        let tolerance = match &self.tolerance {
            Some(t) if t.value() < 0.0 => {
                return Err(invalid(
                    &format!("{path}.tolerance"),
                    format!("{t}: must be greater than or equal to 0"),
                ));
            }
            t => t.as_ref().map(Quantity::value),
        };
        Ok(ScalingRules {
            stabilization_window_seconds: window,
            select_policy: select,
            policies,
            tolerance,
        })
    }
}

impl HpaScalingPolicy {
    fn to_policy(&self, path: &str) -> Result<ScalingPolicy> {
        let kind = match self.kind.as_str() {
            "Pods" => PolicyType::Pods,
            "Percent" => PolicyType::Percent,
            other => {
                return Err(invalid(
                    &format!("{path}.type"),
                    format!(
                        "Unsupported value: {other:?}: supported values: \"Percent\", \"Pods\""
                    ),
                ));
            }
        };
        if self.value <= 0 {
            return Err(invalid(
                &format!("{path}.value"),
                format!("{}: must be greater than zero", self.value),
            ));
        }
        if self.period_seconds <= 0 {
            return Err(invalid(
                &format!("{path}.periodSeconds"),
                format!("{}: must be greater than zero", self.period_seconds),
            ));
        }
        if self.period_seconds > MAX_PERIOD_SECONDS as i32 {
            return Err(invalid(
                &format!("{path}.periodSeconds"),
                format!(
                    "{}: must be less than or equal to {MAX_PERIOD_SECONDS}",
                    self.period_seconds
                ),
            ));
        }
        Ok(ScalingPolicy {
            kind,
            value: self.value.unsigned_abs(),
            period_seconds: self.period_seconds.unsigned_abs(),
        })
    }
}

impl HpaSpec {
    /// Reads an `autoscaling/v2` `HorizontalPodAutoscaler` manifest in JSON;
    /// see [`HorizontalPodAutoscaler::to_spec`].
    ///
    /// # Errors
    /// As [`HorizontalPodAutoscaler::from_json`] and [`HorizontalPodAutoscaler::to_spec`].
    pub fn from_manifest_json(text: &str) -> Result<Self> {
        HorizontalPodAutoscaler::from_json(text)?.to_spec()
    }

    /// Reads an `autoscaling/v2` `HorizontalPodAutoscaler` manifest in YAML;
    /// see [`HorizontalPodAutoscaler::to_spec`].
    ///
    /// # Errors
    /// As [`HorizontalPodAutoscaler::from_yaml`] and [`HorizontalPodAutoscaler::to_spec`].
    #[cfg(feature = "yaml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
    pub fn from_manifest_yaml(text: &str) -> Result<Self> {
        HorizontalPodAutoscaler::from_yaml(text)?.to_spec()
    }
}
