//! [`Composite`]: SysManage's weighted multi-signal scaler, opt-in, with its defects fixed.
//!
//! The original (`IntelligentAutoScaler`) turns CPU, memory, p95 latency,
//! queue length and error rate into factors, averages them with fixed weights
//! (0.3 / 0.25 / 0.2 / 0.15 / 0.1), multiplies by a request-rate trend, and
//! truncates `current × factor`. This version keeps the factors and weights and
//! fixes, each with a test in `tests/composite.rs`:
//!
//! 1. **Dilution.** A saturated signal was averaged away: at 100 % CPU with an
//!    empty queue the weighted factor is ≈ 1.099, so nothing happens below 11
//!    replicas. Scale-up now follows the *largest* factor; the weighted average
//!    is used only to scale down, when no factor is above 1.
//! 2. **Truncation.** `int(current × factor)` rounded every scale-up down; the
//!    target is now `ceil`, as in the HPA.
//! 3. **A target it does not act on.** Dampening turned the action into
//!    "no action" but still reported the new target; here the reported desired
//!    count is always the one to actuate.
//! 4. **Cooldown on the wrong side.** Any decision within five minutes blocked
//!    every action, scale-ups included, and counted decisions that were never
//!    actuated. Now only *scale-down* waits, and only after a *confirmed* actuation.
//! 5. **Trend both ways.** The trend factor (clamped to `[0.5, 2]`) could shrink
//!    a hot service; it now only amplifies a scale-up (clamped to `[1, 2]`).
//! 6. **Noise.** Scale-down needs the weighted factor below `1 − tolerance` (0.1).
//! 7. **Bad input.** NaN or negative signals are typed errors, not silent maths.
//! 8. **Missing signals.** A signal that was not reported counted as "at
//!    target" (factor 1.0). Now its proposal carries the error `no reading`
//!    and it takes no part in the factors; as in the HPA, a missing signal
//!    may block a scale-down but never a scale-up, and with no signal at all
//!    nothing changes (`FailedGetMetrics`). A signal with weight 0 is
//!    switched off: it is neither read nor required.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysmanage_core::Timestamp;

use crate::error::{Result, ScalingError, check_value};
use crate::hpa::{Action, Decision, MetricProposal};
use crate::kube::Reason;
use crate::observe::{MetricValue, Observation};
use crate::scaler::AutoScaler;

/// Configuration of [`Composite`]; defaults are SysManage's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompositeConfig {
    /// Fewest replicas (default 2; at most `max_replicas`).
    pub min_replicas: u32,
    /// Most replicas (default 50; `1..=2147483647`).
    pub max_replicas: u32,
    /// CPU/memory utilization above which they push up, in percent (default 70).
    pub scale_up_threshold: f64,
    /// CPU/memory utilization below which they push down, in percent (default 30).
    pub scale_down_threshold: f64,
    /// p95 latency target in ms (default 500).
    pub target_latency_ms: f64,
    /// Queue length target (default 10).
    pub target_queue: f64,
    /// Error rate above which errors push up (default 0.05).
    pub error_threshold: f64,
    /// Weights of cpu, memory, latency, queue, errors (default 0.3, 0.25,
    /// 0.2, 0.15, 0.1). A weight of 0 switches that signal off.
    pub weights: [f64; 5],
    /// Scale-down waits this long after a confirmed actuation (default 300 s; at most one day).
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub scale_down_cooldown: Duration,
    /// Weighted factor must be below `1 − tolerance` to scale down (default 0.1).
    pub tolerance: f64,
}

impl Default for CompositeConfig {
    fn default() -> Self {
        Self {
            min_replicas: 2,
            max_replicas: 50,
            scale_up_threshold: 70.0,
            scale_down_threshold: 30.0,
            target_latency_ms: 500.0,
            target_queue: 10.0,
            error_threshold: 0.05,
            weights: [0.3, 0.25, 0.2, 0.15, 0.1],
            scale_down_cooldown: Duration::from_secs(300),
            tolerance: 0.1,
        }
    }
}

/// Names of the readings [`Composite`] looks at: `cpu` and `memory` (average
/// utilization percent), `queue` (total), `rps` (total request rate, for the
/// trend); latency and error rate come from the observation's guard fields.
pub const COMPOSITE_READINGS: [&str; 4] = ["cpu", "memory", "queue", "rps"];

/// The weighted multi-signal scaler (see the module docs for what changed).
///
/// # Examples
/// ```
/// use sysmanage_core::Timestamp;
/// use sysmanage_scaling::{AutoScaler, Composite, CompositeConfig, MetricValue, Observation};
/// let mut c = Composite::new(CompositeConfig::default())?;
/// // 100 % CPU, empty queue, 4 replicas: the original never scaled this up.
/// let obs = Observation::new(4)
///     .reading("cpu", MetricValue::Average(100.0))
///     .reading("memory", MetricValue::Average(50.0))
///     .reading("queue", MetricValue::Total(0.0));
/// assert_eq!(c.decide(&obs, Timestamp::from_secs(0))?.desired_replicas, 6);
/// # Ok::<(), sysmanage_scaling::ScalingError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Composite {
    cfg: CompositeConfig,
    state: CompositeState,
}

/// Request rates the trend looks at.
const TREND_SAMPLES: usize = 10;

/// What a [`Composite`] remembers; serde-serialisable, so a restart keeps
/// its trend and its scale-down cooldown.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompositeState {
    /// The last request rates (at most 10), oldest first.
    pub rps: VecDeque<f64>,
    /// The last confirmed actuation.
    pub last_actuation: Option<Timestamp>,
}

/// The signals, in the order of [`CompositeConfig::weights`].
const SIGNALS: [&str; 5] = ["cpu", "memory", "latency", "queue", "errors"];

impl Composite {
    /// Validates the configuration.
    ///
    /// # Errors
    /// [`ScalingError::MinAboveMax`], [`ScalingError::InvalidSpec`] for
    /// non-positive thresholds or targets, or weights that are negative or sum to 0;
    /// [`ScalingError::OutOfRange`] for replica bounds above
    /// [`MAX_REPLICAS`](crate::limits::MAX_REPLICAS) or a cooldown above one day.
    pub fn new(cfg: CompositeConfig) -> Result<Self> {
        Self::with_state(cfg, CompositeState::default())
    }

    /// As [`new`](Self::new), resuming from saved state. Only the newest 10
    /// request rates are kept.
    ///
    /// # Errors
    /// As [`new`](Self::new); [`ScalingError::NonFinite`] or
    /// [`ScalingError::Negative`] for a bad saved request rate.
    pub fn with_state(cfg: CompositeConfig, mut state: CompositeState) -> Result<Self> {
        crate::limits::replicas("minReplicas", cfg.min_replicas)?;
        crate::limits::replicas("maxReplicas", cfg.max_replicas)?;
        crate::limits::duration(
            "scaleDownCooldown",
            cfg.scale_down_cooldown,
            Duration::ZERO,
            crate::limits::MAX_WINDOW,
        )?;
        if cfg.max_replicas == 0 {
            return Err(ScalingError::invalid(
                "maxReplicas",
                "must be greater than zero",
            ));
        }
        if cfg.min_replicas > cfg.max_replicas {
            return Err(ScalingError::MinAboveMax {
                min: cfg.min_replicas,
                max: cfg.max_replicas,
            });
        }
        for (field, v) in [
            ("scaleUpThreshold", cfg.scale_up_threshold),
            ("scaleDownThreshold", cfg.scale_down_threshold),
            ("targetLatencyMs", cfg.target_latency_ms),
            ("targetQueue", cfg.target_queue),
            ("errorThreshold", cfg.error_threshold),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(ScalingError::invalid(
                    field,
                    format!("must be a finite number > 0, got {v}"),
                ));
            }
        }
        if cfg.scale_down_threshold >= cfg.scale_up_threshold {
            return Err(ScalingError::invalid(
                "scaleDownThreshold",
                "must be below scaleUpThreshold",
            ));
        }
        let sum: f64 = cfg.weights.iter().sum();
        if cfg.weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || sum <= 0.0 {
            return Err(ScalingError::invalid(
                "weights",
                "must be finite, >= 0 and not all zero",
            ));
        }
        if !(cfg.tolerance.is_finite() && (0.0..1.0).contains(&cfg.tolerance)) {
            return Err(ScalingError::invalid("tolerance", "must be in [0, 1)"));
        }
        for v in &state.rps {
            check_value("rps", "value", *v)?;
        }
        while state.rps.len() > TREND_SAMPLES {
            state.rps.pop_front();
        }
        Ok(Self { cfg, state })
    }

    /// A snapshot of the state to persist.
    pub fn state(&self) -> &CompositeState {
        &self.state
    }

    fn reading(obs: &Observation, name: &str) -> Result<Option<f64>> {
        match obs.get(name) {
            Some(MetricValue::Average(v) | MetricValue::Total(v)) => {
                Ok(Some(check_value(name, "value", *v)?))
            }
            _ => Ok(None),
        }
    }

    /// The five factors (cpu, memory, latency, queue, errors); `None` for a
    /// missing signal.
    fn factors(&self, obs: &Observation) -> Result<[Option<f64>; 5]> {
        let c = &self.cfg;
        let util = |u: f64| {
            if u > c.scale_up_threshold {
                (u / c.scale_up_threshold).min(2.0)
            } else if u < c.scale_down_threshold {
                (u / c.scale_down_threshold).max(0.5)
            } else {
                1.0
            }
        };
        let cpu = Self::reading(obs, "cpu")?.map(util);
        let mem = Self::reading(obs, "memory")?.map(util);
        let lat = match obs.latency_p95_ms {
            Some(l) if check_value("latency_p95_ms", "value", l)? > c.target_latency_ms => {
                Some((l / c.target_latency_ms).min(3.0))
            }
            Some(_) => Some(1.0),
            None => None,
        };
        let queue = Self::reading(obs, "queue")?.map(|q| {
            if q > c.target_queue {
                (q / c.target_queue).min(2.0)
            } else {
                (q / c.target_queue).max(0.8)
            }
        });
        let err = match obs.error_rate {
            Some(e) if check_value("error_rate", "value", e)? > c.error_threshold => {
                Some((1.0 + e).min(2.0))
            }
            Some(_) => Some(1.0),
            None => None,
        };
        Ok([cpu, mem, lat, queue, err])
    }

    /// Least-squares slope of the last 10 request rates, as a load factor
    /// five periods ahead, clamped to `[1, 2]` (only amplifies scale-ups).
    fn trend(&self) -> f64 {
        let n = self.state.rps.len();
        if n < TREND_SAMPLES {
            return 1.0;
        }
        let nf = n as f64;
        let (sx, sy, sxy, sxx) = self.state.rps.iter().enumerate().fold(
            (0.0, 0.0, 0.0, 0.0),
            |(a, b, c, d), (i, &y)| {
                let x = i as f64;
                (a + x, b + y, c + x * y, d + x * x)
            },
        );
        let denom = nf * sxx - sx * sx;
        let avg = sy / nf;
        if denom == 0.0 || avg <= 0.0 {
            return 1.0;
        }
        let slope = (nf * sxy - sx * sy) / denom;
        ((avg + slope * 5.0) / avg).clamp(1.0, 2.0)
    }
}

impl AutoScaler for Composite {
    fn name(&self) -> &str {
        "composite"
    }

    fn decide(&mut self, obs: &Observation, now: Timestamp) -> Result<Decision> {
        crate::Hpa::check_observation(obs)?;
        let f = self.factors(obs)?;
        if let Some(r) = Self::reading(obs, "rps")? {
            if self.state.rps.len() == TREND_SAMPLES {
                self.state.rps.pop_front();
            }
            self.state.rps.push_back(r);
        }
        let c = &self.cfg;
        let current = obs.current_replicas;
        let cur = f64::from(current.max(1));
        let mut proposals = Vec::with_capacity(SIGNALS.len());
        let (mut max_factor, mut wsum, mut wtotal, mut missing) = (f64::MIN, 0.0, 0.0, 0usize);
        for ((name, factor), w) in SIGNALS.iter().zip(f).zip(c.weights) {
            if w == 0.0 {
                continue; // switched off
            }
            let Some(x) = factor else {
                missing += 1;
                proposals.push(MetricProposal {
                    metric: (*name).to_owned(),
                    replicas: None,
                    usage_ratio: None,
                    current: None,
                    error: Some("no reading".into()),
                });
                continue;
            };
            max_factor = max_factor.max(x);
            wsum += w;
            wtotal += x * w;
            proposals.push(MetricProposal {
                metric: (*name).to_owned(),
                replicas: Some((cur * x).ceil().min(f64::from(u32::MAX)) as u32),
                usage_ratio: Some(x),
                current: None,
                error: None,
            });
        }
        if wsum == 0.0 {
            // no enabled signal was reported: change nothing
            let mut d = Decision::fixed(now, current, current, Reason::FailedGetMetrics);
            d.proposals = proposals;
            return Ok(d);
        }
        let weighted = wtotal / wsum;
        let mut reasons = Vec::new();
        if missing > 0 {
            reasons.push(Reason::PartialMetricsFailure);
        }
        // ceil, ignoring floating-point noise (7 × 100/70 must give 10, not 11)
        let ceil = |x: f64| (x - 1e-9).ceil();
        let raw = if max_factor > 1.0 {
            ceil(cur * max_factor * self.trend())
        } else if weighted < 1.0 - c.tolerance {
            ceil(cur * weighted)
        } else {
            f64::from(current)
        };
        let raw = raw.min(f64::from(u32::MAX)) as u32;
        let mut desired = raw;
        if desired > c.max_replicas {
            desired = c.max_replicas;
            reasons.push(Reason::TooManyReplicas);
        } else if desired < c.min_replicas {
            desired = c.min_replicas;
            reasons.push(Reason::TooFewReplicas);
        } else {
            reasons.push(Reason::DesiredWithinRange);
        }
        if desired < current && missing > 0 && current <= c.max_replicas {
            // a missing signal may block a scale-down, never a scale-up
            desired = current;
            reasons.push(Reason::FailedGetMetrics);
        } else if desired < current
            && self
                .state
                .last_actuation
                .is_some_and(|t| now.saturating_since(t) < c.scale_down_cooldown)
        {
            desired = current;
            reasons.push(Reason::ScaleDownCooldown);
        }
        Ok(Decision {
            at: now,
            current_replicas: current,
            desired_replicas: desired,
            action: Action::between(current, desired),
            proposals,
            combined: Some(raw),
            reasons,
            forecast: None,
        })
    }

    fn record_actuation(&mut self, from: u32, to: u32, now: Timestamp) {
        if from != to {
            self.state.last_actuation = Some(now);
        }
    }

    fn export_state(&self) -> Option<serde_json::Value> {
        serde_json::to_value(&self.state).ok()
    }

    fn import_state(&mut self, state: serde_json::Value) -> Result<()> {
        let state = crate::scaler::decode_state("composite", state)?;
        *self = Self::with_state(self.cfg.clone(), state)?;
        Ok(())
    }
}
