//! Autoscaling decisions with exact Kubernetes HPA semantics.
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod calc;
pub mod composite;
pub mod control;
pub mod error;
pub mod hpa;
pub mod kube;
pub mod observe;
pub mod scaler;
pub mod sim;
pub mod spec;

pub use calc::{Calculation, ReplicaCounts, Tolerances};
pub use composite::{COMPOSITE_READINGS, Composite, CompositeConfig};
pub use control::{
    Controller, DecisionStats, InMemoryMetrics, InMemoryTarget, MetricsSource, ScaleTarget,
    StatsSnapshot, Trend,
};
pub use error::{Result, ScalingError};
pub use hpa::{Action, Decision, ForecastUse, Hpa, HpaState, MetricProposal, Proposed};
pub use kube::{Reason, Recommendation, ScaleEvent};
pub use scaler::{
    Activation, AutoScaler, Fallback, FlapBudget, Guards, PredictiveConfig, Scaler, ScalerConfig,
    ScalerState,
};
pub use observe::{MetricReading, MetricValue, Observation, PodSample, PodStatus};
pub use sim::{SeasonalNaive, ServiceModel, SimReport, Trace, simulate};
pub use spec::{
    Behavior, HpaSpec, MetricSource, MetricSpec, MetricTarget, PolicyType, ResolvedRules,
    ScalingPolicy, ScalingRules, SelectPolicy,
};
