//! The Kubernetes HPA controller's normalization steps as pure functions.
//!
//! Each function mirrors one in `pkg/controller/podautoscaler/horizontal.go`
//! (named in its docs) and takes the controller's state and `now` explicitly.
//! [`Hpa`](crate::Hpa) composes them; they are public so that hosts and tests
//! can check each step against the controller's own test tables.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysmanage_core::Timestamp;

use crate::spec::{PolicyType, ResolvedRules, SelectPolicy};

/// Upper bound on stored recommendations and events per direction. The
/// controller's own reuse of outdated entries keeps the lists short when
/// decisions come at a steady rate; this cap bounds them whatever the rate.
pub const MAX_HISTORY: usize = 4096;

/// Why a decision came out as it did. The names are the HPA condition reasons
/// Kubernetes uses where one exists (`Display` prints them verbatim).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Reason {
    /// The target has zero replicas and `minReplicas` is not zero: autoscaling is off.
    ScalingDisabled,
    /// The current count was above `maxReplicas` and is corrected to it.
    CurrentAboveMax,
    /// The current count was below `minReplicas` and is corrected to it.
    CurrentBelowMin,
    /// Metrics failed and the rest would scale down (or every metric failed): no change.
    FailedGetMetrics,
    /// Some metric failed, but another proposes a scale-up, which goes ahead.
    PartialMetricsFailure,
    /// No stabilization applied.
    ReadyForNewScale,
    /// Lower recent recommendations held a scale-up back.
    ScaleUpStabilized,
    /// Higher recent recommendations held a scale-down back.
    ScaleDownStabilized,
    /// Nothing limited the stabilized recommendation.
    DesiredWithinRange,
    /// A scale-up rate limit applied.
    ScaleUpLimit,
    /// A scale-down rate limit applied.
    ScaleDownLimit,
    /// Capped at `maxReplicas`.
    TooManyReplicas,
    /// Raised to `minReplicas`.
    TooFewReplicas,
    /// A forecast raised the combined proposal.
    ForecastUsed,
    /// A forecast was computed but not used (error too high or unknown, shadow mode, or it failed).
    ForecastIgnored,
    /// Too many direction reversals in the flap window: scale-down is frozen.
    FlapBudgetExhausted,
    /// p95 latency above its SLO: scale-down blocked (and maybe one extra step up).
    LatencyGuard,
    /// Error rate above its threshold: scale-down blocked (and maybe one extra step up).
    ErrorRateGuard,
    /// An activation metric crossed its threshold: scale from zero.
    Activated,
    /// Inactive for the whole cooldown: scale to zero.
    ScaledToZero,
    /// Inactive, but still inside the cooldown: stay up.
    CooldownHold,
    /// Metrics failed too many times in a row: fallback replicas.
    FallbackReplicas,
    /// The composite scaler's scale-down cooldown after a recent scale event.
    ScaleDownCooldown,
    /// A trusted forecast let a scale-down through that the downscale window
    /// or the scale-down tolerance band would have held.
    ForecastScaleIn,
    /// Without a trusted forecast, a scale-down the downscale window or the
    /// scale-down tolerance band would have held, let through because the
    /// peak load of the last lead time fits the HPA's exact target.
    PeakLoadScaleIn,
}

impl Reason {
    /// The reason's name, e.g. `"ScaleUpLimit"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScalingDisabled => "ScalingDisabled",
            Self::CurrentAboveMax => "CurrentAboveMax",
            Self::CurrentBelowMin => "CurrentBelowMin",
            Self::FailedGetMetrics => "FailedGetMetrics",
            Self::PartialMetricsFailure => "PartialMetricsFailure",
            Self::ReadyForNewScale => "ReadyForNewScale",
            Self::ScaleUpStabilized => "ScaleUpStabilized",
            Self::ScaleDownStabilized => "ScaleDownStabilized",
            Self::DesiredWithinRange => "DesiredWithinRange",
            Self::ScaleUpLimit => "ScaleUpLimit",
            Self::ScaleDownLimit => "ScaleDownLimit",
            Self::TooManyReplicas => "TooManyReplicas",
            Self::TooFewReplicas => "TooFewReplicas",
            Self::ForecastUsed => "ForecastUsed",
            Self::ForecastIgnored => "ForecastIgnored",
            Self::FlapBudgetExhausted => "FlapBudgetExhausted",
            Self::LatencyGuard => "LatencyGuard",
            Self::ErrorRateGuard => "ErrorRateGuard",
            Self::Activated => "Activated",
            Self::ScaledToZero => "ScaledToZero",
            Self::CooldownHold => "CooldownHold",
            Self::FallbackReplicas => "FallbackReplicas",
            Self::ScaleDownCooldown => "ScaleDownCooldown",
            Self::ForecastScaleIn => "ForecastScaleIn",
            Self::PeakLoadScaleIn => "PeakLoadScaleIn",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A past recommendation (`timestampedRecommendation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The unstabilized recommendation.
    pub replicas: u32,
    /// When it was made.
    pub at: Timestamp,
}

/// A confirmed scale event (`timestampedScaleEvent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleEvent {
    /// Replicas added (scale-up list) or removed (scale-down list).
    pub change: u32,
    /// When it happened.
    pub at: Timestamp,
    /// Older than the longest policy period; the slot may be reused.
    pub outdated: bool,
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

/// `getReplicasChangePerPeriod`: the sum of changes strictly after `now − period`.
pub fn replicas_change_per_period(
    period_seconds: u32,
    events: &[ScaleEvent],
    now: Timestamp,
) -> i64 {
    let cutoff = now - secs(period_seconds);
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| i64::from(e.change))
        .sum()
}

/// `calculateScaleUpLimitWithScalingRules`: the most replicas the policies allow now.
pub fn scale_up_limit(
    current: u32,
    up_events: &[ScaleEvent],
    down_events: &[ScaleEvent],
    rules: &ResolvedRules,
    now: Timestamp,
) -> i64 {
    let current = i64::from(current);
    let (mut result, pick): (i64, fn(i64, i64) -> i64) = match rules.select_policy {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i64::from(i32::MAX), i64::min),
        SelectPolicy::Max => (i64::from(i32::MIN), i64::max),
    };
    for p in &rules.policies {
        let added = replicas_change_per_period(p.period_seconds, up_events, now);
        let deleted = replicas_change_per_period(p.period_seconds, down_events, now);
        let start = current - added + deleted;
        let proposed = match p.kind {
            PolicyType::Pods => start + i64::from(p.value),
            // rounded up so that a small percentage still allows one more pod
            PolicyType::Percent => {
                (start as f64 * (1.0 + f64::from(p.value) / 100.0)).ceil() as i64
            }
        };
        result = pick(result, proposed);
    }
    result
}

/// `calculateScaleDownLimitWithBehaviors`: the fewest replicas the policies allow now.
pub fn scale_down_limit(
    current: u32,
    up_events: &[ScaleEvent],
    down_events: &[ScaleEvent],
    rules: &ResolvedRules,
    now: Timestamp,
) -> i64 {
    let current = i64::from(current);
    let (mut result, pick): (i64, fn(i64, i64) -> i64) = match rules.select_policy {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => (i64::from(i32::MIN), i64::max),
        SelectPolicy::Max => (i64::from(i32::MAX), i64::min),
    };
    for p in &rules.policies {
        let added = replicas_change_per_period(p.period_seconds, up_events, now);
        let deleted = replicas_change_per_period(p.period_seconds, down_events, now);
        let start = current - added + deleted;
        let proposed = match p.kind {
            PolicyType::Pods => start - i64::from(p.value),
            // truncated toward zero, as Go's int32 conversion does
            PolicyType::Percent => (start as f64 * (1.0 - f64::from(p.value) / 100.0)) as i64,
        };
        result = pick(result, proposed);
    }
    result
}

/// Inputs of [`convert_with_behavior_rate`] (`NormalizationArg`).
#[derive(Clone, Copy, Debug)]
pub struct RateArgs<'a> {
    /// Current replicas.
    pub current: u32,
    /// The stabilized recommendation.
    pub desired: u32,
    /// `minReplicas`.
    pub min: u32,
    /// `maxReplicas`.
    pub max: u32,
    /// Resolved scale-up rules.
    pub up: &'a ResolvedRules,
    /// Resolved scale-down rules.
    pub down: &'a ResolvedRules,
    /// Confirmed scale-up events.
    pub up_events: &'a [ScaleEvent],
    /// Confirmed scale-down events.
    pub down_events: &'a [ScaleEvent],
}

fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// `convertDesiredReplicasWithBehaviorRate`: applies the rate policies and the replica bounds.
pub fn convert_with_behavior_rate(a: RateArgs<'_>, now: Timestamp) -> (u32, Reason) {
    let current = i64::from(a.current);
    let desired = i64::from(a.desired);
    if desired > current {
        let limit = scale_up_limit(a.current, a.up_events, a.down_events, a.up, now).max(current);
        let (allowed, reason) = if i64::from(a.max) > limit {
            (limit, Reason::ScaleUpLimit)
        } else {
            (i64::from(a.max), Reason::TooManyReplicas)
        };
        if desired > allowed {
            return (clamp_u32(allowed), reason);
        }
    } else if desired < current {
        let limit =
            scale_down_limit(a.current, a.up_events, a.down_events, a.down, now).min(current);
        let (allowed, reason) = if i64::from(a.min) < limit {
            (limit, Reason::ScaleDownLimit)
        } else {
            (i64::from(a.min), Reason::TooFewReplicas)
        };
        if desired < allowed {
            return (clamp_u32(allowed), reason);
        }
    }
    (a.desired, Reason::DesiredWithinRange)
}

/// `calculateScaleUpLimit`: the legacy path's scale-up cap, `max(2 × current, 4)`.
pub fn legacy_scale_up_limit(current: u32) -> u32 {
    (2.0 * f64::from(current)).max(4.0) as u32
}

/// `convertDesiredReplicasWithRules`: the legacy path's bounds.
pub fn convert_with_rules(current: u32, desired: u32, min: u32, max: u32) -> (u32, Reason) {
    let limit = legacy_scale_up_limit(current);
    let (allowed_max, reason) = if max > limit {
        (limit, Reason::ScaleUpLimit)
    } else {
        (max, Reason::TooManyReplicas)
    };
    if desired < min {
        (min, Reason::TooFewReplicas)
    } else if desired > allowed_max {
        (allowed_max, reason)
    } else {
        (desired, Reason::DesiredWithinRange)
    }
}

fn push_bounded<T>(v: &mut Vec<T>, item: T) {
    if v.len() >= MAX_HISTORY {
        v.remove(0);
    }
    v.push(item);
}

/// `stabilizeRecommendation` (legacy path): the highest recommendation within
/// `window`; records `desired`, reusing an expired slot.
pub fn stabilize(
    recs: &mut Vec<Recommendation>,
    desired: u32,
    window: Duration,
    now: Timestamp,
) -> u32 {
    let cutoff = now - window;
    let mut max = desired;
    let mut old = None;
    for (i, r) in recs.iter().enumerate() {
        if r.at < cutoff {
            old = Some(i);
        } else if r.replicas > max {
            max = r.replicas;
        }
    }
    let rec = Recommendation {
        replicas: desired,
        at: now,
    };
    match old {
        Some(i) => recs[i] = rec,
        None => push_bounded(recs, rec),
    }
    max
}

/// `stabilizeRecommendationWithBehaviors`: bounds the recommendation by the
/// lowest recommendation in the scale-up window and the highest in the
/// scale-down window, starting from `current`; records `desired`.
/// Returns the stabilized count and `ScaleUpStabilized`/`ScaleDownStabilized`
/// (the reason that applies if the result differs from `desired`).
pub fn stabilize_with_behaviors(
    recs: &mut Vec<Recommendation>,
    current: u32,
    desired: u32,
    up_window_seconds: u32,
    down_window_seconds: u32,
    now: Timestamp,
) -> (u32, Reason) {
    let up_cutoff = now - secs(up_window_seconds);
    let down_cutoff = now - secs(down_window_seconds);
    let mut up_rec = desired;
    let mut down_rec = desired;
    let mut old = None;
    for (i, r) in recs.iter().enumerate() {
        if r.at > up_cutoff {
            up_rec = up_rec.min(r.replicas);
        }
        if r.at > down_cutoff {
            down_rec = down_rec.max(r.replicas);
        }
        if r.at < up_cutoff && r.at < down_cutoff {
            old = Some(i);
        }
    }
    let mut rec = current;
    if rec < up_rec {
        rec = up_rec;
    }
    if rec > down_rec {
        rec = down_rec;
    }
    let new = Recommendation {
        replicas: desired,
        at: now,
    };
    match old {
        Some(i) => recs[i] = new,
        None => push_bounded(recs, new),
    }
    let reason = if desired >= current {
        Reason::ScaleUpStabilized
    } else {
        Reason::ScaleDownStabilized
    };
    (rec, reason)
}

/// `storeScaleEvent` for one direction: marks events older than the longest
/// policy period outdated and stores the new change in the last outdated slot,
/// or appends it.
pub fn store_scale_event(
    events: &mut Vec<ScaleEvent>,
    longest_period_seconds: u32,
    change: u32,
    now: Timestamp,
) {
    let cutoff = now - secs(longest_period_seconds);
    let mut old = None;
    for (i, e) in events.iter_mut().enumerate() {
        if e.at < cutoff {
            e.outdated = true;
        }
        if e.outdated {
            old = Some(i);
        }
    }
    let new = ScaleEvent {
        change,
        at: now,
        outdated: false,
    };
    match old {
        Some(i) => events[i] = new,
        None => push_bounded(events, new),
    }
}
