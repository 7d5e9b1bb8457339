//! `autoscaling.k8s.io/v1` `VerticalPodAutoscaler`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CrossVersionObjectReference, ObjectMeta, Quantity, check_path_segment, invalid};
use crate::error::Result;
use crate::rightsizing::{
    ContainerPolicy, ControlledValues, MAX_RESOURCE_AMOUNT, Resource, Resources, RightSizer,
    RightSizerConfig,
};

/// An `autoscaling.k8s.io/v1` `VerticalPodAutoscaler`; `status` and
/// unknown `metadata` are accepted and dropped, unknown `spec` fields rejected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerticalPodAutoscaler {
    /// Must be `autoscaling.k8s.io/v1`.
    pub api_version: String,
    /// Must be `VerticalPodAutoscaler`.
    pub kind: String,
    /// Name and namespace.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec.
    pub spec: VpaSpec,
}

/// `VerticalPodAutoscalerSpec`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VpaSpec {
    /// `targetRef`.
    pub target_ref: CrossVersionObjectReference,
    /// `updatePolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_policy: Option<VpaUpdatePolicy>,
    /// `resourcePolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_policy: Option<VpaResourcePolicy>,
    /// `recommenders` (names only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommenders: Vec<BTreeMap<String, String>>,
}

/// `PodUpdatePolicy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VpaUpdatePolicy {
    /// `Off`, `Initial`, `Recreate`, `InPlaceOrRecreate` or `Auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_mode: Option<String>,
    /// `minReplicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
}

/// `PodResourcePolicy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VpaResourcePolicy {
    /// `containerPolicies`.
    #[serde(default)]
    pub container_policies: Vec<VpaContainerPolicy>,
}

/// `ContainerResourcePolicy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VpaContainerPolicy {
    /// The container, or `*`.
    #[serde(default)]
    pub container_name: String,
    /// `Auto` (default) or `Off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `minAllowed` (`cpu`, `memory`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub min_allowed: BTreeMap<String, Quantity>,
    /// `maxAllowed`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_allowed: BTreeMap<String, Quantity>,
    /// `controlledResources` (default `[cpu, memory]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controlled_resources: Option<Vec<String>>,
    /// `RequestsAndLimits` (default) or `RequestsOnly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controlled_values: Option<String>,
}

fn resources(path: &str, m: &BTreeMap<String, Quantity>) -> Result<Resources> {
    let mut r = Resources::default();
    for (k, q) in m {
        let p = format!("{path}.{k}");
        if q.value() < 0.0 {
            return Err(invalid(&p, format!("{q}: must not be negative")));
        }
        match k.as_str() {
            // millicores, rounded up as Quantity.MilliValue()
            "cpu" => r.cpu_millicores = Some(q.milli_value().min(MAX_RESOURCE_AMOUNT)),
            "memory" => {
                r.memory_bytes = Some((q.value().ceil() as i64).min(MAX_RESOURCE_AMOUNT));
            }
            other => {
                return Err(invalid(
                    &p,
                    format!("{other:?}: the recommender sizes cpu and memory only"),
                ));
            }
        }
    }
    Ok(r)
}

impl VerticalPodAutoscaler {
    /// Parses a JSON manifest.
    ///
    /// # Errors
    /// [`ScalingError::Manifest`](crate::ScalingError::Manifest) naming the position.
    pub fn from_json(text: &str) -> Result<Self> {
        super::from_json(text)
    }

    /// Parses a YAML manifest (one document).
    ///
    /// # Errors
    /// As [`from_json`](Self::from_json).
    #[cfg(feature = "yaml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
    pub fn from_yaml(text: &str) -> Result<Self> {
        super::from_yaml(text)
    }

    /// The container policies, validated as the VPA's admission controller
    /// does (modes, controlled values and resources, `minAllowed <= maxAllowed`).
    ///
    /// # Errors
    /// [`ScalingError::Manifest`](crate::ScalingError::Manifest) naming the field path.
    pub fn container_policies(&self) -> Result<Vec<ContainerPolicy>> {
        if self.api_version != "autoscaling.k8s.io/v1" {
            return Err(invalid(
                "apiVersion",
                format!("{:?}: expected autoscaling.k8s.io/v1", self.api_version),
            ));
        }
        if self.kind != "VerticalPodAutoscaler" {
            return Err(invalid(
                "kind",
                format!("{:?}: expected VerticalPodAutoscaler", self.kind),
            ));
        }
        check_path_segment("spec.targetRef.kind", &self.spec.target_ref.kind)?;
        check_path_segment("spec.targetRef.name", &self.spec.target_ref.name)?;
        if let Some(m) = self
            .spec
            .update_policy
            .as_ref()
            .and_then(|u| u.update_mode.as_deref())
            && !matches!(
                m,
                "Off" | "Initial" | "Recreate" | "InPlaceOrRecreate" | "Auto"
            )
        {
            return Err(invalid(
                "spec.updatePolicy.updateMode",
                format!(
                    "Unsupported value: {m:?}: supported values: \"Auto\", \"InPlaceOrRecreate\", \"Initial\", \"Off\", \"Recreate\""
                ),
            ));
        }
        let mut out = Vec::new();
        let list = self
            .spec
            .resource_policy
            .as_ref()
            .map(|r| r.container_policies.as_slice())
            .unwrap_or_default();
        for (i, c) in list.iter().enumerate() {
            let path = format!("spec.resourcePolicy.containerPolicies[{i}]");
            if c.container_name.is_empty() {
                return Err(invalid(&format!("{path}.containerName"), "Required value"));
            }
            let off = match c.mode.as_deref() {
                None | Some("Auto") => false,
                Some("Off") => true,
                Some(m) => {
                    return Err(invalid(
                        &format!("{path}.mode"),
                        format!("Unsupported value: {m:?}: supported values: \"Auto\", \"Off\""),
                    ));
                }
            };
            let controlled_values = match c.controlled_values.as_deref() {
                None | Some("RequestsAndLimits") => ControlledValues::RequestsAndLimits,
                Some("RequestsOnly") => ControlledValues::RequestsOnly,
                Some(v) => {
                    return Err(invalid(
                        &format!("{path}.controlledValues"),
                        format!(
                            "Unsupported value: {v:?}: supported values: \"RequestsAndLimits\", \"RequestsOnly\""
                        ),
                    ));
                }
            };
            let controlled_resources = match &c.controlled_resources {
                None => vec![Resource::Cpu, Resource::Memory],
                Some(list) => list
                    .iter()
                    .map(|r| match r.as_str() {
                        "cpu" => Ok(Resource::Cpu),
                        "memory" => Ok(Resource::Memory),
                        other => Err(invalid(
                            &format!("{path}.controlledResources"),
                            format!("Unsupported value: {other:?}: supported values: \"cpu\", \"memory\""),
                        )),
                    })
                    .collect::<Result<Vec<_>>>()?,
            };
            let min_allowed = resources(&format!("{path}.minAllowed"), &c.min_allowed)?;
            let max_allowed = resources(&format!("{path}.maxAllowed"), &c.max_allowed)?;
            for (r, lo, hi) in [
                (
                    "cpu",
                    min_allowed.cpu_millicores,
                    max_allowed.cpu_millicores,
                ),
                ("memory", min_allowed.memory_bytes, max_allowed.memory_bytes),
            ] {
                if let (Some(lo), Some(hi)) = (lo, hi)
                    && lo > hi
                {
                    return Err(invalid(
                        &format!("{path}.maxAllowed.{r}"),
                        format!("max resource for {r} is lower than min"),
                    ));
                }
            }
            out.push(ContainerPolicy {
                container_name: c.container_name.clone(),
                off,
                min_allowed,
                max_allowed,
                controlled_resources,
                controlled_values,
            });
        }
        Ok(out)
    }

    /// A [`RightSizer`] with this manifest's container policies.
    ///
    /// # Errors
    /// As [`container_policies`](Self::container_policies) and [`RightSizer::new`].
    pub fn right_sizer(&self, cfg: RightSizerConfig) -> Result<RightSizer> {
        RightSizer::new(cfg, self.container_policies()?)
    }
}
