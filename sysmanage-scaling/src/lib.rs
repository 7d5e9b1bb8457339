//! Autoscaling decisions with exact Kubernetes HPA semantics, and the things
//! the HPA does not do: prediction, anti-flapping, service-level guards,
//! scale to and from zero, and a trace-replay simulator to compare scalers.
//!
//! | module | what |
//! |---|---|
//! | [`spec`] | [`HpaSpec`]: metrics, targets and `behavior`, with Kubernetes' defaults and validation bounds |
//! | [`calc`] | the replica calculator: `ceil(ratio × ready pods)`, tolerance, missing and unready pods |
//! | [`kube`] | the controller's stabilization, rate-policy and bound steps as pure functions |
//! | [`hpa`] | [`Hpa`]: one `reconcileAutoscaler` pass over explicit state and `now`; explainable [`Decision`]s |
//! | [`scaler`] | [`Scaler`]: HPA plus [`LoadForecast`](sysmanage_core::LoadForecast) prediction, flap budget, guards, activation, fallback; the [`AutoScaler`] trait |
//! | [`predictive`] | [`PredictiveConfig`]: pre-warming and scale-in from a trusted forecast, peak-load scale-in without one |
//! | [`composite`] | [`Composite`]: SysManage's weighted multi-signal model, opt-in, defects fixed |
//! | [`control`] | async [`MetricsSource`] / [`ScaleTarget`], in-memory implementations, the [`Controller`] loop, [`DecisionStats`] |
//! | [`fleet`] | [`Fleet`]: the [`Controller`] as one replica of several: leader election, fenced actuation ([`ScaleTarget::scale_fenced`], [`FencedTarget`]), state shared through a [`StateStore`](sysmanage_core::lease::StateStore) |
//! | [`sim`] | [`Trace`], [`ServiceModel`], [`simulate`] and the traces shipped in `traces/` |
//! | [`forecast`] | [`SeasonalMedian`]: a burst-robust seasonal forecaster that measures its own error |
//! | [`rightsizing`] | [`RightSizer`](rightsizing::RightSizer): CPU and memory requests with the VPA recommender's semantics |
//! | `prometheus` | (feature `prometheus`) `PrometheusSource`: a [`MetricsSource`] reading a Prometheus server, KEDA-style |
//! | [`limits`] | the ranges every count and duration is validated against |
//!
//! Every decision is a pure function of a spec, saved state, an
//! [`Observation`] and an explicit `now`. Scale events count only when the
//! caller confirms an actuation with [`AutoScaler::record_actuation`], and the
//! state is serde-serialisable, so a restart keeps its stabilization windows.
//!
//! # Example
//!
//! ```
//! use sysmanage_core::Timestamp;
//! use sysmanage_scaling::{
//!     Behavior, Hpa, HpaSpec, MetricSpec, MetricValue, Observation, Reason,
//! };
//!
//! // autoscaling/v2: CPU at 60 % of requests, queue length 30 per pod, behavior defaults.
//! let spec = HpaSpec::new(2, 20, vec![
//!     MetricSpec::resource_utilization("cpu", 60),
//!     MetricSpec::external_average_value("queue", 30.0),
//! ])
//! .with_behavior(Behavior::default());
//! let mut hpa = Hpa::new(spec)?;
//!
//! let now = Timestamp::from_secs(1_700_000_000);
//! let obs = Observation::new(4)
//!     .reading("cpu", MetricValue::Average(90.0))   // ceil(90/60 × 4) = 6
//!     .reading("queue", MetricValue::Total(330.0)); // ceil(330/30) = 11
//! let d = hpa.decide(&obs, now)?;
//! // the larger proposal wins, then the default rate limit (max(+4 pods, +100 %) per 15 s) applies
//! assert_eq!(d.combined, Some(11));
//! assert_eq!(d.desired_replicas, 8);
//! assert!(d.has(Reason::ScaleUpLimit));
//! hpa.record_actuation(4, 8, now);
//! # Ok::<(), sysmanage_scaling::ScalingError>(())
//! ```
//!
//! # Units
//!
//! Values are plain `f64`s in the metric's own unit; they are converted to
//! Kubernetes milli-units (rounded to nearest) before Kubernetes' integer
//! arithmetic. Utilization readings are percent of the pods' requests.
//!
//! # What is validated, what is clamped
//!
//! Validated when built or called, with a typed error naming the field and
//! the range ([`ScalingError::OutOfRange`], [`ScalingError::InvalidSpec`],
//! [`ScalingError::NonFinite`], [`ScalingError::Negative`]):
//!
//! - replica counts everywhere they enter (`minReplicas`, `maxReplicas`,
//!   policy values, an [`Observation`]'s current/status/ready replicas,
//!   [`ReplicaCounts`], [`Hpa::normalize`]'s inputs, [`CompositeConfig`]
//!   bounds, [`ServiceModel::initial_replicas`]): at most
//!   [`limits::MAX_REPLICAS`] = `i32::MAX`, as Kubernetes' `int32`;
//! - metric targets (greater than zero, finite; at least 0.001 for values),
//!   in [`HpaSpec::validate`] *and* in [`calc::calculate`];
//! - tolerances (finite, `>= 0`), readings, requests, latency and error
//!   signals (finite, `>= 0`);
//! - durations: stabilization windows `0..=3600 s` and policy periods
//!   `1..=1800 s` (Kubernetes' bounds); lead times, flap windows,
//!   cooldowns, start-up times, controller intervals and call timeouts at
//!   most [`limits::MAX_WINDOW`] (one day); forecast and simulation steps at
//!   least [`limits::MIN_STEP`] (one second); at most 1440 forecasts per
//!   decision;
//! - traces (2 ..= 2^24 finite, non-negative samples), simulations (at most
//!   [`MAX_SIM_STEPS`] steps).
//!
//! Clamped, never an error: proposals saturate at `i32::MAX` before the
//! bounds apply; [`AutoScaler::record_actuation`] clamps counts to
//! `MAX_REPLICAS`; [`DecisionStats::new`] clamps its capacity to
//! `1..=`[`control::MAX_STATS_CAP`]; timestamp arithmetic saturates at the
//! ends of [`Timestamp`](sysmanage_core::Timestamp)'s range (a window reaching
//! before the earliest timestamp covers everything); stored
//! recommendations and events are capped at [`kube::MAX_HISTORY`]. A
//! forecast that is not finite or cannot be converted is ignored and
//! reported, never acted on.
//!
//! # Tracing
//!
//! Every event's target starts with `sysmanage_scaling`, so
//! `RUST_LOG=sysmanage_scaling=debug` shows them all and
//! `RUST_LOG=sysmanage_scaling::controller=info` one module. Each carries a
//! stable `event` field. No subscriber is installed.
//!
//! | target | event | level | when |
//! |---|---|---|---|
//! | `sysmanage_scaling::controller` | `decision` | debug | every pass of the [`Controller`] |
//! | `sysmanage_scaling::controller` | `actuated` | info | the target was scaled and the actuation recorded |
//! | `sysmanage_scaling::controller` | `actuation_failed` | warn | the scale call failed or timed out |
//! | `sysmanage_scaling::controller` | `metrics_failed` | warn | the metrics source failed or timed out |
//! | `sysmanage_scaling::controller` | `decision_rejected` | warn | the scaler rejected the observation |
//! | `sysmanage_scaling::controller` | `shutdown` | info / warn | a [`ControllerHandle::shutdown`] finished (warn: the pass in flight was abandoned) |
//! | `sysmanage_scaling::fleet` | `resumed` | info | a new leader claimed the shared state (`token`, `saved_by`) |
//! | `sysmanage_scaling::scaler` | `forecast_failed` | debug | [`Scaler`]'s forecaster failed or returned an unusable value |
//!
//! # Feature flags
//!
//! - `yaml`: Kubernetes manifests in YAML ([`HpaSpec::from_manifest_yaml`],
//!   [`manifest::documents_from_yaml`]) through `serde_norway`. JSON manifests
//!   need no feature.
//! - `prometheus`: [`prometheus::PrometheusSource`], a [`MetricsSource`]
//!   running one PromQL query per metric against a Prometheus server
//!   (KEDA's Prometheus scaler), through `sysmanage-core`'s client.
//! - `integration`: the live tests against the local Prometheus.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

pub mod calc;
pub mod check;
pub mod composite;
pub mod control;
pub mod error;
pub mod fleet;
pub mod forecast;
pub mod hpa;
pub mod kube;
pub mod limits;
pub mod manifest;
pub mod observe;
pub mod predictive;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub mod prometheus;
pub mod rightsizing;
pub mod scaler;
pub mod sim;
pub mod spec;
pub mod telemetry;

pub use calc::{Calculation, ReplicaCounts, Tolerances};
pub use check::ControllerCheck;
pub use composite::{COMPOSITE_READINGS, Composite, CompositeConfig, CompositeState};
pub use control::{
    Controller, ControllerHandle, ControllerStatus, DEFAULT_CALL_TIMEOUT, DecisionStats,
    InMemoryMetrics, InMemoryTarget, MetricsSource, ScaleTarget, Shutdown, StatsSnapshot, Trend,
};
pub use error::{Result, ScalingError};
pub use fleet::{ControllerState, FencedTarget, Fleet, ForecastInput, MAX_FORECAST_INPUTS};
pub use forecast::SeasonalMedian;
pub use hpa::{Action, Decision, ForecastUse, Hpa, HpaState, MetricProposal, Proposed};
pub use kube::{Reason, Recommendation, ScaleEvent};
pub use observe::{
    MetricReading, MetricValue, Observation, PodInfo, PodPhase, PodSample, PodStatus,
    ReadinessRules, ReadyCondition, SampleTime, classify_pod,
};
pub use scaler::{
    Activation, AutoScaler, Fallback, FlapBudget, Guards, PredictiveConfig, Scaler, ScalerConfig,
    ScalerState,
};
pub use sim::{
    MAX_SIM_STEPS, SIM_START, SeasonalNaive, ServiceModel, SimReport, SimStep, Trace, simulate,
    simulate_steps,
};
pub use spec::{
    Behavior, HpaSpec, MetricSource, MetricSpec, MetricTarget, PolicyType, ResolvedRules,
    ScalingPolicy, ScalingRules, SelectPolicy,
};
