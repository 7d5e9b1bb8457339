//! Kubernetes manifests: `autoscaling/v2` `HorizontalPodAutoscaler` as
//! [`HorizontalPodAutoscaler`], converted to an [`HpaSpec`](crate::HpaSpec)
//! with the API server's defaults and validation, and
//! `autoscaling.k8s.io/v1` `VerticalPodAutoscaler` as
//! [`VerticalPodAutoscaler`], whose container policies configure a
//! [`RightSizer`](crate::rightsizing::RightSizer).
//!
//! A manifest is accepted exactly as `kubectl get hpa -o yaml` (or `-o json`)
//! prints it: `metadata` (with `managedFields`, `annotations`, …) and
//! `status` are read and otherwise ignored. Inside `spec`, unknown fields are
//! rejected with an error naming the field and its position, as the API
//! server does under `fieldValidation=Strict` (kubectl's default
//! `--validate=strict` since Kubernetes 1.27); a server asked to `Ignore`
//! would drop them silently instead, which hides typos such as
//! `stabilizationWindow`.
//!
//! YAML needs the `yaml` feature; JSON is always available.
//!
//! | Kubernetes | here |
//! |---|---|
//! | `metrics` empty | defaulted to CPU at 80 % utilization (`SetDefaults_HorizontalPodAutoscaler`) |
//! | `minReplicas` unset | 1 |
//! | `minReplicas: 0` | rejected unless [`FeatureGates::hpa_scale_to_zero`] (then it needs an Object or External metric) |
//! | `behavior` unset | the controller's legacy path (`behavior: None`) |
//! | `behavior.scaleUp`/`scaleDown` unset or partly set | Kubernetes' defaults for the missing fields |
//! | quantities (`500m`, `1Gi`, `2e3`) | [`Quantity`]; targets use `MilliValue()`, rounded up |
//! | a reading's name | `resource.name` (`cpu`), `container/resource` for ContainerResource, else `metric.name` |

mod hpa;
mod quantity;
mod vpa;

pub use hpa::{
    ContainerResourceMetricSource, CrossVersionObjectReference, ExternalMetricSource, FeatureGates,
    HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, HorizontalPodAutoscalerStatus,
    HpaMetricSpec, HpaMetricTarget, HpaScalingPolicy, HpaScalingRules, LabelSelector,
    LabelSelectorRequirement, MetricIdentifier, ObjectMeta, ObjectMetricSource, PodsMetricSource,
    ResourceMetricSource, ScalingBehavior,
};
pub use quantity::Quantity;
pub use vpa::{
    VerticalPodAutoscaler, VpaContainerPolicy, VpaResourcePolicy, VpaSpec, VpaUpdatePolicy,
};

use crate::error::{Result, ScalingError};

/// Parses JSON into `T`, naming the line and column of a syntax or schema error.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| ScalingError::Manifest {
        path: format!("line {} column {}", e.line(), e.column()),
        reason: e.to_string(),
    })
}

/// Parses one YAML document into `T`, naming the position of an error.
#[cfg(feature = "yaml")]
pub(crate) fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_norway::from_str(text).map_err(yaml_error)
}

#[cfg(feature = "yaml")]
fn yaml_error(e: serde_norway::Error) -> ScalingError {
    let path = e.location().map_or_else(
        || "document".to_owned(),
        |l| format!("line {} column {}", l.line(), l.column()),
    );
    ScalingError::Manifest {
        path,
        reason: e.to_string(),
    }
}

/// One document of a multi-document YAML stream (`---` separated), by kind.
#[cfg(feature = "yaml")]
#[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Document {
    /// `autoscaling/v2` `HorizontalPodAutoscaler`.
    HorizontalPodAutoscaler(Box<HorizontalPodAutoscaler>),
    /// `autoscaling.k8s.io/v1` `VerticalPodAutoscaler`.
    VerticalPodAutoscaler(Box<VerticalPodAutoscaler>),
    /// Any other kind, left unparsed.
    Other {
        /// `apiVersion`.
        api_version: String,
        /// `kind`.
        kind: String,
    },
}

/// Reads every document of a YAML stream, such as a file holding several
/// manifests separated by `---`. Empty documents are skipped.
///
/// # Errors
/// [`ScalingError::Manifest`] naming the position of the first document
/// that does not parse or (for a known kind) does not fit its schema.
#[cfg(feature = "yaml")]
#[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
pub fn documents_from_yaml(text: &str) -> Result<Vec<Document>> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let value = serde_norway::Value::deserialize(doc).map_err(yaml_error)?;
        if value.is_null() {
            continue;
        }
        let field = |k: &str| {
            value
                .get(k)
                .and_then(serde_norway::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        if kind == "HorizontalPodAutoscaler" {
            let hpa: HorizontalPodAutoscaler =
                serde_norway::from_value(value).map_err(yaml_error)?;
            out.push(Document::HorizontalPodAutoscaler(Box::new(hpa)));
        } else if kind == "VerticalPodAutoscaler" {
            let vpa: VerticalPodAutoscaler = serde_norway::from_value(value).map_err(yaml_error)?;
            out.push(Document::VerticalPodAutoscaler(Box::new(vpa)));
        } else {
            out.push(Document::Other { api_version, kind });
        }
    }
    Ok(out)
}

/// `IsValidPathSegmentName`: not `.` or `..`, no `/` or `%`.
pub(crate) fn check_path_segment(path: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(invalid(path, "Required value"));
    }
    if value == "." || value == ".." {
        return Err(invalid(path, format!("{value:?}: may not be '.' or '..'")));
    }
    if value.contains('/') || value.contains('%') {
        return Err(invalid(
            path,
            format!("{value:?}: may not contain '/' or '%'"),
        ));
    }
    Ok(())
}

/// A DNS-1123 label: at most 63 of `[a-z0-9-]`, starting and ending alphanumeric.
pub(crate) fn check_dns1123_label(path: &str, value: &str) -> Result<()> {
    let b = value.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    if !ok {
        return Err(invalid(
            path,
            format!(
                "{value:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric \
                 characters or '-', start and end with an alphanumeric character, at most 63 characters"
            ),
        ));
    }
    Ok(())
}

pub(crate) fn invalid(path: &str, reason: impl Into<String>) -> ScalingError {
    ScalingError::Manifest {
        path: path.to_owned(),
        reason: reason.into(),
    }
}
