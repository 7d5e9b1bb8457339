//! [`Hpa`]: the Kubernetes `HorizontalPodAutoscaler` decision, as a value.

use serde::{Deserialize, Serialize};
use sysmanage_core::Timestamp;

use crate::calc::{Calculation, ReplicaCounts, Tolerances, calculate_valid};
use crate::error::{Result, check_value};
use crate::kube::{self, Reason, Recommendation, ScaleEvent};
use crate::observe::Observation;
use crate::spec::{HpaSpec, MetricSpec, ResolvedRules};

/// Which way a decision goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Action {
    /// More replicas.
    ScaleUp,
    /// Fewer replicas.
    ScaleDown,
    /// No change.
    None,
}

impl Action {
    /// The action taking `current` to `desired`.
    pub fn between(current: u32, desired: u32) -> Self {
        match desired.cmp(&current) {
            std::cmp::Ordering::Greater => Self::ScaleUp,
            std::cmp::Ordering::Less => Self::ScaleDown,
            std::cmp::Ordering::Equal => Self::None,
        }
    }

    /// `"scale_up"`, `"scale_down"` or `"none"`.
    pub fn label(self) -> &'static str {
        match self {
            Self::ScaleUp => "scale_up",
            Self::ScaleDown => "scale_down",
            Self::None => "none",
        }
    }
}

/// One metric's part in a decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricProposal {
    /// The metric name (`"forecast:<signal>"` for a predictive proposal).
    pub metric: String,
    /// The proposed replica count, if the metric could be computed.
    pub replicas: Option<u32>,
    /// The usage ratio (current / target).
    pub usage_ratio: Option<f64>,
    /// The current value as the HPA status reports it.
    pub current: Option<f64>,
    /// Why the metric could not be computed.
    pub error: Option<String>,
}

/// The forecast a decision looked at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForecastUse {
    /// The forecast signal.
    pub signal: String,
    /// The point forecast at the lead time (what pre-warming acts on).
    pub value: f64,
    /// The time that forecast is for.
    pub at: Timestamp,
    /// The forecaster's measured recent relative error, if known.
    pub recent_error: Option<f64>,
    /// Replicas the forecast at the lead time asks for.
    pub replicas: u32,
    /// The peak point forecast over the lead time (what bounds scale-in).
    pub peak: f64,
    /// Replicas the peak asks for with the measured error as a margin,
    /// `ceil(peak × (1 + recent_error) / per_replica)`: the scale-in floor
    /// while the forecast is trusted.
    pub peak_replicas: u32,
    /// Whether it changed the decision's input (false in shadow mode or when rejected).
    pub applied: bool,
}

/// An explainable decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// When it was made.
    pub at: Timestamp,
    /// Replicas before.
    pub current_replicas: u32,
    /// Replicas to actuate.
    pub desired_replicas: u32,
    /// Direction.
    pub action: Action,
    /// Each metric's proposal.
    pub proposals: Vec<MetricProposal>,
    /// The combined (max) proposal before stabilization and limits.
    pub combined: Option<u32>,
    /// What shaped the result, in order of application.
    pub reasons: Vec<Reason>,
    /// The forecast considered, if any.
    pub forecast: Option<ForecastUse>,
}

impl Decision {
    pub(crate) fn fixed(at: Timestamp, current: u32, desired: u32, reason: Reason) -> Self {
        Self {
            at,
            current_replicas: current,
            desired_replicas: desired,
            action: Action::between(current, desired),
            proposals: Vec::new(),
            combined: None,
            reasons: vec![reason],
            forecast: None,
        }
    }
    /// Whether `reason` contributed.
    pub fn has(&self, reason: Reason) -> bool {
        self.reasons.contains(&reason)
    }
    /// Sets `desired_replicas` and recomputes the action.
    pub(crate) fn set_desired(&mut self, desired: u32) {
        self.desired_replicas = desired;
        self.action = Action::between(self.current_replicas, desired);
    }
}

/// What an HPA remembers between decisions. Serialise it to survive restarts
/// without forgetting stabilization windows and rate-limit periods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HpaState {
    /// Recent unstabilized recommendations.
    pub recommendations: Vec<Recommendation>,
    /// Confirmed scale-ups.
    pub scale_up_events: Vec<ScaleEvent>,
    /// Confirmed scale-downs.
    pub scale_down_events: Vec<ScaleEvent>,
}

/// The outcome of the metric step, before normalization.
#[derive(Clone, Debug, PartialEq)]
pub enum Proposed {
    /// The replica count is corrected or left alone without looking at metrics.
    Fixed(u32, Reason),
    /// Metrics failed in a way that forbids any change.
    Failed(Vec<MetricProposal>),
    /// The combined proposal.
    Combined {
        /// The largest proposal (0 if every proposal was 0).
        replicas: u32,
        /// Every metric's proposal.
        proposals: Vec<MetricProposal>,
        /// Whether some metric failed (scale-up continues anyway).
        partial_failure: bool,
    },
}

/// [`Proposed`] without the per-metric report.
enum Combination {
    Fixed(u32, Reason),
    Failed,
    Combined { replicas: u32, partial: bool },
}

/// A Kubernetes-compatible horizontal autoscaler: spec plus state, deciding on
/// an explicit `now`.
///
/// # Examples
/// ```
/// use sysmanage_core::Timestamp;
/// use sysmanage_scaling::{Hpa, HpaSpec, MetricSpec, MetricValue, Observation, Reason};
///
/// let spec = HpaSpec::new(1, 10, vec![MetricSpec::resource_utilization("cpu", 50)]);
/// let mut hpa = Hpa::new(spec)?;
/// let now = Timestamp::from_secs(1_000);
/// // 3 pods at 90 % CPU against a 50 % target: ceil(90/50 × 3) = 6.
/// let d = hpa.decide(&Observation::new(3).reading("cpu", MetricValue::Average(90.0)), now)?;
/// assert_eq!(d.desired_replicas, 6);
/// hpa.record_actuation(3, 6, now);
/// // Load falls right away: the 5-minute downscale window holds 6.
/// let d = hpa.decide(&Observation::new(6).reading("cpu", MetricValue::Average(20.0)), now)?;
/// assert_eq!(d.desired_replicas, 6);
/// assert!(d.has(Reason::ScaleDownStabilized));
/// # Ok::<(), sysmanage_scaling::ScalingError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Hpa {
    spec: HpaSpec,
    rules: Option<(ResolvedRules, ResolvedRules)>,
    state: HpaState,
}

impl Hpa {
    /// Validates `spec` and starts with empty state.
    ///
    /// # Errors
    /// See [`HpaSpec::validate`].
    pub fn new(spec: HpaSpec) -> Result<Self> {
        Self::with_state(spec, HpaState::default())
    }

    /// Validates `spec` and resumes from saved `state`.
    ///
    /// # Errors
    /// See [`HpaSpec::validate`].
    pub fn with_state(spec: HpaSpec, state: HpaState) -> Result<Self> {
        spec.validate()?;
        let rules = spec
            .behavior
            .as_ref()
            .map(|b| b.resolve(spec.downscale_stabilization, spec.tolerance));
        Ok(Self { spec, rules, state })
    }

    /// The spec.
    pub fn spec(&self) -> &HpaSpec {
        &self.spec
    }

    /// The state to persist.
    pub fn state(&self) -> &HpaState {
        &self.state
    }

    /// Replaces the state (recommendations and scale events) with `state`,
    /// keeping the spec; a successor resumes its predecessor's windows.
    pub fn restore(&mut self, state: HpaState) {
        self.state = state;
    }

    /// The resolved `(scale_up, scale_down)` rules, or `None` on the legacy path.
    pub fn rules(&self) -> Option<&(ResolvedRules, ResolvedRules)> {
        self.rules.as_ref()
    }

    pub(crate) fn tolerances(&self) -> Tolerances {
        match &self.rules {
            Some((up, down)) => Tolerances {
                scale_down: down.tolerance,
                scale_up: up.tolerance,
            },
            None => Tolerances::symmetric(self.spec.tolerance),
        }
    }

    /// Validates the observation's replica counts and guard signals.
    pub(crate) fn check_observation(obs: &Observation) -> Result<()> {
        crate::limits::replicas("observation.currentReplicas", obs.current_replicas)?;
        if let Some(n) = obs.status_replicas {
            crate::limits::replicas("observation.statusReplicas", n)?;
        }
        if let Some(n) = obs.ready_replicas {
            crate::limits::replicas("observation.readyReplicas", n)?;
        }
        if let Some(l) = obs.latency_p95_ms {
            check_value("latency_p95_ms", "value", l)?;
        }
        if let Some(e) = obs.error_rate {
            check_value("error_rate", "value", e)?;
        }
        Ok(())
    }

    /// The metric step: corrections of out-of-range counts, per-metric
    /// proposals and their combination (`computeReplicasForMetrics`). Pure.
    ///
    /// # Errors
    /// Bad input: NaN or negative readings, readings that do not fit their
    /// target, replica counts above [`MAX_REPLICAS`](crate::limits::MAX_REPLICAS).
    pub fn propose(&self, obs: &Observation) -> Result<Proposed> {
        Self::check_observation(obs)?;
        self.propose_valid(obs, self.tolerances())
    }

    /// [`propose`](Self::propose) with explicit tolerances (finite, `>= 0`)
    /// for an observation that passed [`check_observation`](Self::check_observation).
    pub(crate) fn propose_valid(&self, obs: &Observation, tol: Tolerances) -> Result<Proposed> {
        let mut proposals = Vec::with_capacity(self.spec.metrics.len());
        let outcome = self.combine(obs, tol, |m, calculated| {
            proposals.push(match calculated {
                Ok(c) => MetricProposal {
                    metric: m.name.clone(),
                    replicas: Some(c.replicas),
                    usage_ratio: Some(c.usage_ratio),
                    current: Some(c.current),
                    error: None,
                },
                Err(e) => MetricProposal {
                    metric: m.name.clone(),
                    replicas: None,
                    usage_ratio: None,
                    current: None,
                    error: Some(e),
                },
            });
        })?;
        Ok(match outcome {
            Combination::Fixed(d, r) => Proposed::Fixed(d, r),
            Combination::Failed => Proposed::Failed(proposals),
            Combination::Combined { replicas, partial } => Proposed::Combined {
                replicas,
                proposals,
                partial_failure: partial,
            },
        })
    }

    /// The combined proposal alone, without building the per-metric report
    /// (no allocation): `None` when the metric step fixes or blocks the count.
    pub(crate) fn combined_valid(&self, obs: &Observation, tol: Tolerances) -> Result<Option<u32>> {
        Ok(match self.combine(obs, tol, |_, _| {})? {
            Combination::Combined { replicas, .. } => Some(replicas),
            Combination::Fixed(..) | Combination::Failed => None,
        })
    }

    /// `computeReplicasForMetrics`: corrections of out-of-range counts, each
    /// metric's proposal (handed to `each`) and their combination.
    fn combine(
        &self,
        obs: &Observation,
        tol: Tolerances,
        mut each: impl FnMut(&MetricSpec, Result<Calculation, String>),
    ) -> Result<Combination> {
        let current = obs.current_replicas;
        let (min, max) = (self.spec.min_replicas, self.spec.max_replicas);
        if current == 0 && min != 0 {
            return Ok(Combination::Fixed(0, Reason::ScalingDisabled));
        }
        if current > max {
            return Ok(Combination::Fixed(max, Reason::CurrentAboveMax));
        }
        if current < min {
            return Ok(Combination::Fixed(min, Reason::CurrentBelowMin));
        }
        let counts = ReplicaCounts {
            spec: current,
            status: obs.status_replicas.unwrap_or(current),
            ready: obs.ready_replicas.unwrap_or(current),
        };
        let mut replicas = 0u32;
        let mut invalid = 0usize;
        for m in &self.spec.metrics {
            // the spec was validated when this Hpa was built, the counts by the caller
            let calculated = match obs.get(&m.name) {
                Some(value) => calculate_valid(m, value, counts, tol)?,
                None => Err("no reading".to_owned()),
            };
            match &calculated {
                Ok(c) => {
                    if replicas == 0 || c.replicas > replicas {
                        replicas = c.replicas;
                    }
                }
                Err(_) => invalid += 1,
            }
            each(m, calculated);
        }
        // A failing metric may block a scale-down, never a scale-up.
        if invalid >= self.spec.metrics.len() || (invalid > 0 && replicas < current) {
            return Ok(Combination::Failed);
        }
        Ok(Combination::Combined {
            replicas,
            partial: invalid > 0,
        })
    }

    /// The normalization step: stabilization, then rate policies and bounds
    /// (`normalizeDesiredReplicas[WithBehaviors]`). Records the recommendation.
    /// Returns the desired count and the two reasons (stabilization, limit).
    ///
    /// # Errors
    /// [`ScalingError::OutOfRange`](crate::ScalingError::OutOfRange) for a
    /// `current` or `proposed` count above
    /// [`MAX_REPLICAS`](crate::limits::MAX_REPLICAS); nothing is recorded then.
    pub fn normalize(
        &mut self,
        current: u32,
        proposed: u32,
        now: Timestamp,
    ) -> Result<(u32, Reason, Reason)> {
        crate::limits::replicas("currentReplicas", current)?;
        crate::limits::replicas("proposedReplicas", proposed)?;
        Ok(self.normalize_checked(current, proposed, now))
    }

    /// [`normalize`](Self::normalize) for counts already known to be at most
    /// [`MAX_REPLICAS`](crate::limits::MAX_REPLICAS).
    pub(crate) fn normalize_checked(
        &mut self,
        current: u32,
        proposed: u32,
        now: Timestamp,
    ) -> (u32, Reason, Reason) {
        let (min, max) = (self.spec.min_replicas, self.spec.max_replicas);
        self.record_initial_recommendation(current, now);
        match &self.rules {
            None => {
                let stabilized = kube::stabilize(
                    &mut self.state.recommendations,
                    proposed,
                    self.spec.downscale_stabilization,
                    now,
                );
                let stab_reason = if stabilized == proposed {
                    Reason::ReadyForNewScale
                } else {
                    Reason::ScaleDownStabilized
                };
                let (d, limit) = kube::convert_with_rules(current, stabilized, min, max);
                (d, stab_reason, limit)
            }
            Some((up, down)) => {
                let (stabilized, why) = kube::stabilize_with_behaviors(
                    &mut self.state.recommendations,
                    current,
                    proposed,
                    up.stabilization_window_seconds,
                    down.stabilization_window_seconds,
                    now,
                );
                let stab_reason = if stabilized == proposed {
                    Reason::ReadyForNewScale
                } else {
                    why
                };
                let (d, limit) = kube::convert_with_behavior_rate(
                    kube::RateArgs {
                        current,
                        desired: stabilized,
                        min,
                        max,
                        up,
                        down,
                        up_events: &self.state.scale_up_events,
                        down_events: &self.state.scale_down_events,
                    },
                    now,
                );
                (d, stab_reason, limit)
            }
        }
    }

    /// The rate policies and bounds alone, without stabilization and without
    /// recording anything.
    pub(crate) fn limit(&self, current: u32, desired: u32, now: Timestamp) -> (u32, Reason) {
        let (min, max) = (self.spec.min_replicas, self.spec.max_replicas);
        match &self.rules {
            None => kube::convert_with_rules(current, desired, min, max),
            Some((up, down)) => kube::convert_with_behavior_rate(
                kube::RateArgs {
                    current,
                    desired,
                    min,
                    max,
                    up,
                    down,
                    up_events: &self.state.scale_up_events,
                    down_events: &self.state.scale_down_events,
                },
                now,
            ),
        }
    }

    /// `recordInitialRecommendation`: the first pass remembers the current count.
    pub(crate) fn record_initial_recommendation(&mut self, current: u32, now: Timestamp) {
        if self.state.recommendations.is_empty() {
            self.state.recommendations.push(Recommendation {
                replicas: current,
                at: now,
            });
        }
    }

    /// One full decision, as one pass of the controller's `reconcileAutoscaler`.
    ///
    /// # Errors
    /// Bad input: NaN or negative readings, readings that do not fit their target.
    pub fn decide(&mut self, obs: &Observation, now: Timestamp) -> Result<Decision> {
        Self::check_observation(obs)?;
        let current = obs.current_replicas;
        let proposed = self.propose_valid(obs, self.tolerances())?;
        self.record_initial_recommendation(current, now);
        match proposed {
            Proposed::Fixed(d, r) => Ok(Decision::fixed(now, current, d, r)),
            Proposed::Failed(proposals) => {
                let mut d = Decision::fixed(now, current, current, Reason::FailedGetMetrics);
                d.proposals = proposals;
                Ok(d)
            }
            Proposed::Combined {
                replicas,
                proposals,
                partial_failure,
            } => {
                // `current` was checked with the observation; proposals saturate at MAX_REPLICAS
                let (desired, stab, limit) = self.normalize_checked(current, replicas, now);
                let mut reasons = Vec::with_capacity(3);
                if partial_failure {
                    reasons.push(Reason::PartialMetricsFailure);
                }
                reasons.push(stab);
                reasons.push(limit);
                Ok(Decision {
                    at: now,
                    current_replicas: current,
                    desired_replicas: desired,
                    action: Action::between(current, desired),
                    proposals,
                    combined: Some(replicas),
                    reasons,
                    forecast: None,
                })
            }
        }
    }

    /// Records a confirmed actuation from `from` to `to` replicas
    /// (`storeScaleEvent`). Rate policies count only confirmed events; the
    /// legacy path stores none, as in Kubernetes. Counts above
    /// [`MAX_REPLICAS`](crate::limits::MAX_REPLICAS) are clamped to it.
    pub fn record_actuation(&mut self, from: u32, to: u32, now: Timestamp) {
        let Some((up, down)) = &self.rules else {
            return;
        };
        let (from, to) = (
            from.min(crate::limits::MAX_REPLICAS),
            to.min(crate::limits::MAX_REPLICAS),
        );
        if to > from {
            kube::store_scale_event(
                &mut self.state.scale_up_events,
                up.longest_period_seconds(),
                to - from,
                now,
            );
        } else if to < from {
            kube::store_scale_event(
                &mut self.state.scale_down_events,
                down.longest_period_seconds(),
                from - to,
                now,
            );
        }
    }
}

impl From<Hpa> for HpaState {
    fn from(h: Hpa) -> Self {
        h.state
    }
}
