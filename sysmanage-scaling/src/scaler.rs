//! [`Scaler`]: the HPA core plus prediction, a flap budget, guards and
//! KEDA-style scale to/from zero with fallback replicas.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysmanage_core::{LoadForecast, Timestamp};

use crate::error::{Result, ScalingError, check_value};
use crate::hpa::{Action, Decision, ForecastUse, Hpa, HpaState, MetricProposal, Proposed};
use crate::kube::Reason;
use crate::observe::{MetricValue, Observation};
use crate::predictive::PeakWindow;
pub use crate::predictive::PredictiveConfig;
use crate::spec::HpaSpec;

/// Something that decides replica counts. Pure: the caller supplies `now` and
/// reports actuations, so the same scaler runs live, in tests and in replays.
pub trait AutoScaler: Send + fmt::Debug {
    /// A short name for reports, e.g. `"hpa"`.
    fn name(&self) -> &str;
    /// Decides on one observation.
    ///
    /// # Errors
    /// Bad input (NaN or negative readings, readings that do not fit their metric).
    fn decide(&mut self, obs: &Observation, now: Timestamp) -> Result<Decision>;
    /// Records that the target was actually scaled from `from` to `to`
    /// replicas. Rate limits and flap budgets count only confirmed actuations.
    fn record_actuation(&mut self, from: u32, to: u32, now: Timestamp);

    /// How much of its flap budget the scaler has used at `now`: direction
    /// reversals in the window and the budget's maximum. `None` (the
    /// default) when it has no flap budget.
    fn flap_budget_used(&self, now: Timestamp) -> Option<(u32, u32)> {
        let _ = now;
        None
    }

    /// The state a successor must resume from (stabilization windows,
    /// scale events, flap budget, …) as JSON, for a
    /// [`StateStore`](sysmanage_core::lease::StateStore). `None` (the
    /// default): the scaler keeps no state it can share.
    fn export_state(&self) -> Option<serde_json::Value> {
        None
    }

    /// Replaces the state with one [`export_state`](Self::export_state)
    /// produced, by a scaler of the same configuration.
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`] (field `state`) for a state of another
    /// shape; the default refuses every state.
    fn import_state(&mut self, state: serde_json::Value) -> Result<()> {
        let _ = state;
        Err(ScalingError::invalid(
            "state",
            format!("scaler {:?} does not import state", self.name()),
        ))
    }
}

/// Decodes an exported state, naming the scaler in the error.
pub(crate) fn decode_state<T: serde::de::DeserializeOwned>(
    scaler: &str,
    state: serde_json::Value,
) -> Result<T> {
    serde_json::from_value(state)
        .map_err(|e| ScalingError::invalid("state", format!("not a {scaler} state: {e}")))
}

impl AutoScaler for Hpa {
    fn name(&self) -> &str {
        "hpa"
    }
    fn decide(&mut self, obs: &Observation, now: Timestamp) -> Result<Decision> {
        Hpa::decide(self, obs, now)
    }
    fn record_actuation(&mut self, from: u32, to: u32, now: Timestamp) {
        Hpa::record_actuation(self, from, to, now);
    }
    fn export_state(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self.state()).ok()
    }
    fn import_state(&mut self, state: serde_json::Value) -> Result<()> {
        self.restore(decode_state("hpa", state)?);
        Ok(())
    }
}

impl<T: AutoScaler + ?Sized> AutoScaler for Box<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn decide(&mut self, obs: &Observation, now: Timestamp) -> Result<Decision> {
        (**self).decide(obs, now)
    }
    fn record_actuation(&mut self, from: u32, to: u32, now: Timestamp) {
        (**self).record_actuation(from, to, now);
    }
    fn export_state(&self) -> Option<serde_json::Value> {
        (**self).export_state()
    }
    fn import_state(&mut self, state: serde_json::Value) -> Result<()> {
        (**self).import_state(state)
    }
}

/// At most `max_reversals` direction reversals of confirmed actuations per
/// `window`; past that, scale-down freezes (scale-up still works).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlapBudget {
    /// Reversals allowed in the window (`1..=255`: the last 256 actuations are remembered).
    pub max_reversals: u32,
    /// The window (1 s ..= 1 day).
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub window: Duration,
}

/// Service-level guards. A firing guard blocks scale-down and, with
/// `extra_step_up`, adds one replica to a scale-up the metrics already want;
/// a guard alone never starts a scale-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Guards {
    /// Fire when p95 latency (ms) is above this (finite, `>= 0`).
    pub latency_slo_ms: Option<f64>,
    /// Fire when the error rate is above this fraction (`0..=1`).
    pub max_error_rate: Option<f64>,
    /// Add one replica to a metric-driven scale-up while a guard fires.
    pub extra_step_up: bool,
}

/// KEDA-style activation: scale from zero when the metric exceeds the
/// threshold, back to zero after `cooldown` without activity.
///
/// As in KEDA, scale to zero needs `hpa.min_replicas == 0` (KEDA's
/// `minReplicaCount: 0`); the HPA part then scales between 1 and
/// `max_replicas`, and only the activation step goes from 1 to 0, once the
/// cooldown has passed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Activation {
    /// The metric whose value decides activity (a Total or Average reading).
    pub metric: String,
    /// Active when the value is strictly above this (`activationThreshold`).
    pub threshold: f64,
    /// Wait this long after the last activity before scaling to zero (KEDA's
    /// `cooldownPeriod`, default 300 s; at most one day).
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub cooldown: Duration,
}

/// KEDA-style fallback: after `failure_threshold` consecutive decisions in
/// which the metrics could not be computed, scale to `replicas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fallback {
    /// Consecutive failures before falling back (at least 1).
    pub failure_threshold: u32,
    /// Replicas to run while metrics are failing.
    pub replicas: u32,
}

/// Everything a [`Scaler`] is configured with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalerConfig {
    /// A name for reports.
    pub name: String,
    /// The HPA core.
    pub hpa: HpaSpec,
    /// Prediction, if any.
    pub predictive: Option<PredictiveConfig>,
    /// Flap budget, if any.
    pub flap_budget: Option<FlapBudget>,
    /// Guards.
    #[serde(default)]
    pub guards: Guards,
    /// Scale to/from zero, if any.
    pub activation: Option<Activation>,
    /// Fallback replicas, if any.
    pub fallback: Option<Fallback>,
}

impl ScalerConfig {
    /// Only the HPA core; add extensions with the builder methods.
    pub fn new(name: impl Into<String>, hpa: HpaSpec) -> Self {
        Self {
            name: name.into(),
            hpa,
            predictive: None,
            flap_budget: None,
            guards: Guards::default(),
            activation: None,
            fallback: None,
        }
    }
    /// Adds prediction.
    #[must_use]
    pub fn predictive(mut self, p: PredictiveConfig) -> Self {
        self.predictive = Some(p);
        self
    }
    /// Adds a flap budget.
    #[must_use]
    pub fn flap_budget(mut self, max_reversals: u32, window: Duration) -> Self {
        self.flap_budget = Some(FlapBudget {
            max_reversals,
            window,
        });
        self
    }
    /// Sets the guards.
    #[must_use]
    pub fn guards(mut self, g: Guards) -> Self {
        self.guards = g;
        self
    }
    /// Adds scale to/from zero.
    #[must_use]
    pub fn activation(
        mut self,
        metric: impl Into<String>,
        threshold: f64,
        cooldown: Duration,
    ) -> Self {
        self.activation = Some(Activation {
            metric: metric.into(),
            threshold,
            cooldown,
        });
        self
    }
    /// Adds fallback replicas.
    #[must_use]
    pub fn fallback(mut self, failure_threshold: u32, replicas: u32) -> Self {
        self.fallback = Some(Fallback {
            failure_threshold,
            replicas,
        });
        self
    }

    fn validate(&self) -> Result<()> {
        self.hpa.validate()?;
        if let Some(p) = &self.predictive {
            p.validate()?;
        }
        if let Some(f) = &self.flap_budget {
            if f.max_reversals == 0 {
                return Err(ScalingError::invalid(
                    "flapBudget.maxReversals",
                    "must be at least 1 (0 would freeze every scale-down)",
                ));
            }
            if f.max_reversals as usize >= MAX_ACTUATIONS {
                return Err(ScalingError::OutOfRange {
                    field: "flapBudget.maxReversals",
                    value: f.max_reversals.to_string(),
                    range: format!("1..={}", MAX_ACTUATIONS - 1),
                });
            }
            crate::limits::duration(
                "flapBudget.window",
                f.window,
                crate::limits::MIN_STEP,
                crate::limits::MAX_WINDOW,
            )?;
        }
        if let Some(v) = self.guards.latency_slo_ms {
            crate::limits::number("guards.latencySloMs", v, 0.0, f64::MAX)?;
        }
        if let Some(v) = self.guards.max_error_rate {
            crate::limits::number("guards.maxErrorRate", v, 0.0, 1.0)?;
        }
        if let Some(a) = &self.activation {
            if a.metric.is_empty() {
                return Err(ScalingError::invalid(
                    "activation.metric",
                    "must not be empty",
                ));
            }
            crate::limits::duration(
                "activation.cooldown",
                a.cooldown,
                Duration::ZERO,
                crate::limits::MAX_WINDOW,
            )?;
            if !(a.threshold.is_finite() && a.threshold >= 0.0) {
                return Err(ScalingError::invalid(
                    "activation.threshold",
                    format!("must be a finite number >= 0, got {}", a.threshold),
                ));
            }
            // KEDA scales to zero only when minReplicaCount is 0.
            if self.hpa.min_replicas != 0 {
                return Err(ScalingError::invalid(
                    "activation",
                    format!(
                        "scale to zero needs hpa.minReplicas = 0, got {}",
                        self.hpa.min_replicas
                    ),
                ));
            }
        }
        if let Some(f) = &self.fallback {
            if f.failure_threshold == 0 {
                return Err(ScalingError::invalid(
                    "fallback.failureThreshold",
                    "must be at least 1",
                ));
            }
            if f.replicas > self.hpa.max_replicas {
                return Err(ScalingError::invalid(
                    "fallback.replicas",
                    format!(
                        "{} exceeds maxReplicas {}",
                        f.replicas, self.hpa.max_replicas
                    ),
                ));
            }
        }
        Ok(())
    }
}

enum Step {
    Done(Decision),
    Continue { inactive: bool },
}

/// What may take a decision below the HPA's.
#[derive(Clone, Copy, Debug)]
enum ScaleIn {
    /// A trusted forecast: at least this many replicas.
    Forecast(u32),
    /// No trusted forecast: the exact proposal times `ratio` (peak load over
    /// current load, at least 1), and at least `floor` replicas.
    PeakLoad { ratio: f64, floor: u32 },
}

impl ScaleIn {
    /// The least the floor can be, known before the exact proposal.
    fn floor(self) -> u32 {
        match self {
            Self::Forecast(f) | Self::PeakLoad { floor: f, .. } => f,
        }
    }
}

/// `ceil(replicas × ratio)`, saturating at
/// [`MAX_REPLICAS`](crate::limits::MAX_REPLICAS).
fn scale_replicas(replicas: u32, ratio: f64) -> u32 {
    let r = (f64::from(replicas) * ratio).ceil();
    if r.is_finite() && r < f64::from(crate::limits::MAX_REPLICAS) {
        // `ratio >= 1` and finite: `r >= replicas >= 0`
        r as u32
    } else {
        crate::limits::MAX_REPLICAS
    }
}

/// Most actuations remembered for the flap budget.
const MAX_ACTUATIONS: usize = 256;

/// What a [`Scaler`] remembers; serde-serialisable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalerState {
    /// The HPA core's state.
    pub hpa: HpaState,
    /// Recent confirmed actuations (time, direction), newest last.
    pub actuations: VecDeque<(Timestamp, Action)>,
    /// Consecutive decisions whose metrics failed.
    pub consecutive_failures: u32,
    /// The last time the activation metric was active.
    pub last_active: Option<Timestamp>,
    /// The prediction signal's peak over the last lead time (reactive scale-in).
    #[serde(default)]
    pub recent_load: PeakWindow,
}

/// The HPA core with the extensions of [`ScalerConfig`].
///
/// One decision applies, in order: activation (scale from/to zero, cooldown);
/// the HPA metric step (on failure: no change, or fallback replicas after N
/// failures in a row); the forecast proposal; the guards; the HPA
/// stabilization windows, rate policies and bounds; scale-in below the HPA
/// (forecast-gated, or bounded by the recent peak load without a trusted
/// forecast; see [`PredictiveConfig`]); the flap budget. Each step that
/// changes or holds the count adds its [`Reason`].
///
/// # Examples
/// A latency guard holds replicas while the SLO is breached, even though CPU
/// says scale down:
/// ```
/// use sysmanage_core::Timestamp;
/// use sysmanage_scaling::{
///     AutoScaler, Behavior, Guards, HpaSpec, MetricSpec, MetricValue, Observation, Reason, Scaler,
///     ScalerConfig, ScalingRules,
/// };
///
/// let hpa = HpaSpec::new(1, 20, vec![MetricSpec::resource_utilization("cpu", 60)])
///     .with_behavior(Behavior { scale_up: None, scale_down: Some(ScalingRules { stabilization_window_seconds: Some(0), ..Default::default() }) });
/// let cfg = ScalerConfig::new("guarded", hpa)
///     .guards(Guards { latency_slo_ms: Some(250.0), ..Guards::default() });
/// let mut s = Scaler::new(cfg, None)?;
/// let obs = Observation::new(8).reading("cpu", MetricValue::Average(20.0)).latency_p95_ms(400.0);
/// let d = s.decide(&obs, Timestamp::from_secs(10))?;
/// assert_eq!(d.desired_replicas, 8);
/// assert!(d.has(Reason::LatencyGuard));
/// # Ok::<(), sysmanage_scaling::ScalingError>(())
/// ```
#[derive(Clone)]
pub struct Scaler {
    cfg: ScalerConfig,
    /// `forecast:<signal>`, the name of the forecast's proposal.
    forecast_metric: String,
    hpa: Hpa,
    forecaster: Option<Arc<dyn LoadForecast>>,
    state: ScalerState,
}

impl fmt::Debug for Scaler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scaler")
            .field("name", &self.cfg.name)
            .field("forecaster", &self.forecaster.is_some())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Scaler {
    /// Validates `cfg`. A forecaster is required when `cfg.predictive` is set.
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`] (including prediction configured without
    /// a forecaster, a flap budget of 0 reversals, and activation with
    /// `hpa.min_replicas` above 0) and the errors of [`HpaSpec::validate`].
    pub fn new(cfg: ScalerConfig, forecaster: Option<Arc<dyn LoadForecast>>) -> Result<Self> {
        Self::with_state(cfg, forecaster, ScalerState::default())
    }

    /// As [`new`](Self::new), resuming from saved state.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_state(
        cfg: ScalerConfig,
        forecaster: Option<Arc<dyn LoadForecast>>,
        state: ScalerState,
    ) -> Result<Self> {
        cfg.validate()?;
        if cfg.predictive.is_some() && forecaster.is_none() {
            return Err(ScalingError::invalid(
                "predictive",
                "prediction is configured but no forecaster was given",
            ));
        }
        // KEDA hands 1..=max to the HPA and keeps 0 <-> 1 for itself.
        let mut hpa_spec = cfg.hpa.clone();
        if cfg.activation.is_some() {
            hpa_spec.min_replicas = hpa_spec.min_replicas.max(1);
        }
        let hpa = Hpa::with_state(hpa_spec, state.hpa.clone())?;
        let forecast_metric = cfg
            .predictive
            .as_ref()
            .map_or_else(String::new, |p| format!("forecast:{}", p.signal));
        Ok(Self {
            cfg,
            forecast_metric,
            hpa,
            forecaster,
            state,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ScalerConfig {
        &self.cfg
    }

    /// A snapshot of the state to persist.
    pub fn state(&self) -> ScalerState {
        let mut s = self.state.clone();
        s.hpa = self.hpa.state().clone();
        s
    }

    /// Replaces the state with `state` (saved by [`state`](Self::state)),
    /// keeping the configuration: a successor resumes its predecessor's
    /// stabilization windows, scale events and flap budget.
    pub fn restore(&mut self, state: ScalerState) {
        self.hpa.restore(state.hpa.clone());
        self.state = state;
    }

    fn reversals(&self, now: Timestamp, window: Duration) -> u32 {
        let cutoff = now - window;
        let mut last: Option<Action> = None;
        let mut n = 0;
        for &(at, dir) in &self.state.actuations {
            if at < cutoff {
                continue;
            }
            if last.is_some_and(|l| l != dir) {
                n += 1;
            }
            last = Some(dir);
        }
        n
    }

    /// The reactive proposal without the scale-down tolerance (the HPA's
    /// own target, exactly), at least the replicas the current load needs.
    fn untolerated_proposal(&self, obs: &Observation) -> Result<Option<u32>> {
        let mut tol = self.hpa.tolerances();
        tol.scale_down = 0.0;
        self.hpa.combined_valid(obs, tol)
    }

    fn activation_step(&mut self, obs: &Observation, now: Timestamp) -> Result<Step> {
        let Some(act) = &self.cfg.activation else {
            return Ok(Step::Continue { inactive: false });
        };
        let current = obs.current_replicas;
        let value = match obs.get(&act.metric) {
            Some(MetricValue::Total(v) | MetricValue::Average(v)) => {
                Some(check_value(&act.metric, "value", *v)?)
            }
            _ => None,
        };
        // An unreadable activation metric never activates nor scales to zero:
        // the replica count holds and the HPA's failure rules (and fallback) apply.
        let Some(value) = value else {
            if current == 0 {
                return Ok(Step::Done(Decision::fixed(
                    now,
                    0,
                    0,
                    Reason::FailedGetMetrics,
                )));
            }
            return Ok(Step::Continue { inactive: false });
        };
        let active = value > act.threshold;
        if active {
            self.state.last_active = Some(now);
        }
        if current == 0 {
            if active {
                let to = self.cfg.hpa.min_replicas.max(1);
                return Ok(Step::Done(Decision::fixed(now, 0, to, Reason::Activated)));
            }
            return Ok(Step::Done(Decision::fixed(
                now,
                0,
                0,
                Reason::ScalingDisabled,
            )));
        }
        if !active {
            let since = *self.state.last_active.get_or_insert(now);
            if now.saturating_since(since) >= act.cooldown {
                return Ok(Step::Done(Decision::fixed(
                    now,
                    current,
                    0,
                    Reason::ScaledToZero,
                )));
            }
        }
        Ok(Step::Continue { inactive: !active })
    }
}

impl AutoScaler for Scaler {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn flap_budget_used(&self, now: Timestamp) -> Option<(u32, u32)> {
        let f = self.cfg.flap_budget.as_ref()?;
        Some((self.reversals(now, f.window), f.max_reversals))
    }

    fn decide(&mut self, obs: &Observation, now: Timestamp) -> Result<Decision> {
        Hpa::check_observation(obs)?;
        let in_cooldown = match self.activation_step(obs, now)? {
            Step::Done(d) => return Ok(d),
            Step::Continue { inactive } => inactive,
        };
        let current = obs.current_replicas;
        // checked once above: the counts, latency and error signals
        let proposed = self.hpa.propose_valid(obs, self.hpa.tolerances())?;
        self.hpa.record_initial_recommendation(current, now);
        let (mut combined, mut proposals, partial) = match proposed {
            Proposed::Fixed(d, r) => return Ok(Decision::fixed(now, current, d, r)),
            Proposed::Failed(proposals) => {
                self.state.consecutive_failures = self.state.consecutive_failures.saturating_add(1);
                let mut d = Decision::fixed(now, current, current, Reason::FailedGetMetrics);
                d.proposals = proposals;
                if let Some(fb) = self.cfg.fallback
                    && self.state.consecutive_failures >= fb.failure_threshold
                {
                    let to = fb
                        .replicas
                        .clamp(self.cfg.hpa.min_replicas, self.cfg.hpa.max_replicas);
                    d.set_desired(to);
                    d.reasons.push(Reason::FallbackReplicas);
                }
                return Ok(d);
            }
            Proposed::Combined {
                replicas,
                proposals,
                partial_failure,
            } => (replicas, proposals, partial_failure),
        };
        self.state.consecutive_failures = 0;
        let mut reasons = Vec::with_capacity(4);
        if partial {
            reasons.push(Reason::PartialMetricsFailure);
        }
        if in_cooldown {
            reasons.push(Reason::CooldownHold);
        }

        // Prediction: the forecast at exactly the lead time decides
        // pre-warming (replicas started now serve from then on); the peak
        // over the lead time bounds scale-in (replicas removed now cannot be
        // back sooner). Both act only while the forecaster's own measured
        // error is within `max_recent_error`; without a trusted forecast the
        // recent peak load bounds scale-in instead.
        let mut forecast = None;
        let mut scale_in: Option<ScaleIn> = None;
        if let (Some(p), Some(f)) = (&self.cfg.predictive, &self.forecaster) {
            let load = p.current_load(obs);
            if let Some(v) = load {
                self.state.recent_load.record(now, v, p.lead_time);
            }
            let load_replicas = load.map_or(0, |v| p.replicas_for(v));
            let mut trusted = false;
            match p.forecasts(f.as_ref(), now) {
                Ok((at_lead, peak)) => {
                    let err = f.recent_error(&p.signal).filter(|e| e.is_finite());
                    trusted = err.is_some_and(|e| e <= p.max_recent_error) && !p.shadow;
                    let replicas = p.replicas_for(at_lead.point);
                    // the scale-in floor: the peak plus the measured error,
                    // a margin for an under-forecast (trusted: at most
                    // `max_recent_error`)
                    let peak_replicas = p.replicas_for(peak.point * (1.0 + err.unwrap_or(0.0)));
                    let applied = trusted && replicas > combined;
                    if applied {
                        combined = replicas;
                    }
                    if trusted && p.allow_scale_in {
                        scale_in = Some(ScaleIn::Forecast(peak_replicas.max(load_replicas)));
                    }
                    reasons.push(if applied {
                        Reason::ForecastUsed
                    } else {
                        Reason::ForecastIgnored
                    });
                    proposals.push(MetricProposal {
                        metric: self.forecast_metric.clone(),
                        replicas: Some(replicas),
                        usage_ratio: None,
                        current: Some(at_lead.point),
                        error: None,
                    });
                    forecast = Some(ForecastUse {
                        signal: p.signal.clone(),
                        value: at_lead.point,
                        at: at_lead.at,
                        recent_error: err,
                        replicas,
                        peak: peak.point,
                        peak_replicas,
                        applied,
                    });
                }
                Err(e) => {
                    tracing::debug!(target: "sysmanage_scaling::scaler", event = "forecast_failed", error = %e);
                    reasons.push(Reason::ForecastIgnored);
                    proposals.push(MetricProposal {
                        metric: self.forecast_metric.clone(),
                        replicas: None,
                        usage_ratio: None,
                        current: None,
                        error: Some(e),
                    });
                }
            }
            // Without a trusted forecast: the HPA's exact proposal scaled to
            // the peak load of the last lead time. No current load, or none
            // now but some in the window: no evidence, no scale-in.
            if !trusted
                && p.reactive_scale_in
                && !p.shadow
                && let (Some(load), Some(peak)) = (load, self.state.recent_load.peak())
                && (load > 0.0 || peak == 0.0)
            {
                let ratio = if load > 0.0 {
                    (peak / load).max(1.0)
                } else {
                    1.0
                };
                scale_in = Some(ScaleIn::PeakLoad {
                    ratio,
                    floor: load_replicas,
                });
            }
        }

        // Guards.
        let g = self.cfg.guards;
        let latency =
            matches!((g.latency_slo_ms, obs.latency_p95_ms), (Some(slo), Some(l)) if l > slo);
        let errors = matches!((g.max_error_rate, obs.error_rate), (Some(max), Some(e)) if e > max);
        if latency {
            reasons.push(Reason::LatencyGuard);
        }
        if errors {
            reasons.push(Reason::ErrorRateGuard);
        }
        let latency_or_errors = latency || errors;
        if latency || errors {
            if combined < current {
                combined = current;
            } else if g.extra_step_up && combined > current {
                combined = combined.saturating_add(1).min(crate::limits::MAX_REPLICAS);
            }
        }

        // `current` was checked with the observation; every proposal saturates at MAX_REPLICAS
        let (mut desired, stab, limit) = self.hpa.normalize_checked(current, combined, now);
        reasons.push(stab);
        reasons.push(limit);

        // Scale-in below the HPA: the reactive signal drives it, the
        // forecast (or the recent peak load) is only a floor. With that
        // evidence neither the downscale window nor the scale-down tolerance
        // has to guard against load coming back, so scale in to the larger
        // of the HPA's proposal at its exact target and the floor:
        // - trusted forecast: the replicas the forecast peak over the lead
        //   time (plus its measured error) and the current load need;
        // - otherwise: the exact proposal scaled to the peak load of the
        //   last lead time.
        // Rate policies and bounds still apply; never while a guard fires.
        if let Some(si) = scale_in
            && si.floor() < desired
            && desired <= current
            && desired > self.cfg.hpa.min_replicas
            && !latency_or_errors
            && let Some(reactive) = self.untolerated_proposal(obs)?
        {
            let (floor, why) = match si {
                ScaleIn::Forecast(f) => (reactive.max(f), Reason::ForecastScaleIn),
                ScaleIn::PeakLoad { ratio, floor } => (
                    scale_replicas(reactive, ratio).max(floor),
                    Reason::PeakLoadScaleIn,
                ),
            };
            if floor < desired && floor < current {
                let (limited, _) = self.hpa.limit(current, floor, now);
                if limited < desired {
                    desired = limited;
                    reasons.push(why);
                }
            }
        }

        // Flap budget.
        if let Some(fb) = self.cfg.flap_budget
            && desired < current
            && self.reversals(now, fb.window) >= fb.max_reversals
        {
            desired = current;
            reasons.push(Reason::FlapBudgetExhausted);
        }

        Ok(Decision {
            at: now,
            current_replicas: current,
            desired_replicas: desired,
            action: Action::between(current, desired),
            proposals,
            combined: Some(combined),
            reasons,
            forecast,
        })
    }

    fn record_actuation(&mut self, from: u32, to: u32, now: Timestamp) {
        self.hpa.record_actuation(from, to, now);
        let dir = Action::between(from, to);
        if dir == Action::None {
            return;
        }
        if let Some(fb) = self.cfg.flap_budget {
            let cutoff = now - fb.window;
            while self
                .state
                .actuations
                .front()
                .is_some_and(|(at, _)| *at < cutoff)
            {
                self.state.actuations.pop_front();
            }
        }
        if self.state.actuations.len() >= MAX_ACTUATIONS {
            self.state.actuations.pop_front();
        }
        self.state.actuations.push_back((now, dir));
        if to > 0 && self.cfg.activation.is_some() && from == 0 {
            self.state.last_active = Some(now);
        }
    }

    fn export_state(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self.state()).ok()
    }

    fn import_state(&mut self, state: serde_json::Value) -> Result<()> {
        self.restore(decode_state("scaler", state)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_replicas_round_up_and_saturate() {
        assert_eq!(scale_replicas(19, 1.0), 19);
        assert_eq!(scale_replicas(19, 1300.0 / 1100.0), 23);
        assert_eq!(scale_replicas(0, 5.0), 0);
        let max = crate::limits::MAX_REPLICAS;
        assert_eq!(scale_replicas(max, 1.5), max);
        assert_eq!(scale_replicas(1, f64::INFINITY), max);
        assert_eq!(scale_replicas(1, f64::MAX), max);
    }
}
