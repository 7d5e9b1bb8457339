//! Autoscaling decisions with exact Kubernetes HPA semantics.
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod calc;
pub mod error;
pub mod hpa;
pub mod kube;
pub mod observe;
pub mod spec;

pub use calc::{Calculation, ReplicaCounts, Tolerances};
pub use error::{Result, ScalingError};
pub use hpa::{Action, Decision, ForecastUse, Hpa, HpaState, MetricProposal, Proposed};
pub use kube::{Reason, Recommendation, ScaleEvent};
pub use observe::{MetricReading, MetricValue, Observation, PodSample, PodStatus};
pub use spec::{
    Behavior, HpaSpec, MetricSource, MetricSpec, MetricTarget, PolicyType, ResolvedRules,
    ScalingPolicy, ScalingRules, SelectPolicy,
};
