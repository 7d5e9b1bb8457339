//! The replica calculator: one metric's proposal, with Kubernetes' arithmetic
//! (`replica_calculator.go` and `metrics/utilization.go`).

use serde::{Deserialize, Serialize};

use crate::error::{Result, ScalingError, check_value};
use crate::observe::{MetricValue, PodSample, PodStatus};
use crate::spec::{MetricSource, MetricSpec, MetricTarget, to_milli};

/// Usage-ratio tolerances per direction (`Tolerances` in the controller).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tolerances {
    /// Ratios down to `1 − scale_down` change nothing.
    pub scale_down: f64,
    /// Ratios up to `1 + scale_up` change nothing.
    pub scale_up: f64,
}

impl Tolerances {
    /// The same tolerance both ways.
    pub const fn symmetric(t: f64) -> Self {
        Self {
            scale_down: t,
            scale_up: t,
        }
    }
    /// Both tolerances finite and `>= 0`.
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`] naming the bad direction.
    pub fn validate(&self) -> Result<()> {
        for (field, t) in [
            ("tolerances.scaleDown", self.scale_down),
            ("tolerances.scaleUp", self.scale_up),
        ] {
            if !(t.is_finite() && t >= 0.0) {
                return Err(ScalingError::invalid(
                    field,
                    format!("must be a finite number >= 0, got {t}"),
                ));
            }
        }
        Ok(())
    }
    /// `(1 − down) ≤ ratio ≤ (1 + up)`: inclusive, as in Kubernetes.
    pub fn is_within(&self, ratio: f64) -> bool {
        (1.0 - self.scale_down) <= ratio && ratio <= (1.0 + self.scale_up)
    }
}

/// A metric's computed proposal.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Calculation {
    /// Proposed replica count.
    pub replicas: u32,
    /// Usage ratio before the missing/unready corrections (`usageRatio`);
    /// always finite (an Object/External average-value target with no
    /// replicas reports the ratio against one replica).
    pub usage_ratio: f64,
    /// The current value as Kubernetes reports it in the HPA status: whole
    /// percent for utilization targets, else the (average) value.
    pub current: f64,
}

/// Replica counts the calculator needs besides the reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaCounts {
    /// `scale.spec.replicas`.
    pub spec: u32,
    /// `scale.status.replicas`.
    pub status: u32,
    /// Running and ready pods.
    pub ready: u32,
}

impl ReplicaCounts {
    /// Every count at most [`MAX_REPLICAS`](crate::limits::MAX_REPLICAS).
    ///
    /// # Errors
    /// [`ScalingError::OutOfRange`] naming the count.
    pub fn validate(&self) -> Result<()> {
        crate::limits::replicas("replicas.spec", self.spec)?;
        crate::limits::replicas("replicas.status", self.status)?;
        crate::limits::replicas("replicas.ready", self.ready)?;
        Ok(())
    }
}

fn ceil_to_u32(x: f64) -> u32 {
    let c = x.ceil();
    if c >= f64::from(i32::MAX) {
        i32::MAX as u32
    } else if c <= 0.0 {
        0
    } else {
        c as u32
    }
}

enum Target {
    /// Whole percent of requests.
    Util(i64),
    /// Milli-value per pod.
    Plain(i64),
}

/// Computes one metric's proposal.
///
/// Returns `Ok(Err(reason))` when the metric cannot produce a proposal
/// (Kubernetes counts it as an invalid metric: no ready pod reported, a pod
/// without a request under a utilization target, the reading is
/// unavailable), and `Err` for bad input (NaN, negative values, a reading
/// that does not fit the target). Pods classified
/// [`Ignored`](PodStatus::Ignored) need no request.
///
/// The metric is validated as [`MetricSpec::validate`] does (a zero or
/// negative target is an error, never a division by zero), the tolerances
/// must be finite and `>= 0`, and every count at most
/// [`MAX_REPLICAS`](crate::limits::MAX_REPLICAS).
///
/// # Errors
/// [`ScalingError::NonFinite`], [`ScalingError::Negative`],
/// [`ScalingError::MismatchedReading`]; [`ScalingError::InvalidSpec`] for a
/// bad metric spec or tolerance; [`ScalingError::OutOfRange`] for a count
/// above `MAX_REPLICAS`.
pub fn calculate(
    spec: &MetricSpec,
    value: &MetricValue,
    counts: ReplicaCounts,
    tol: Tolerances,
) -> Result<Result<Calculation, String>> {
    spec.validate()?;
    tol.validate()?;
    counts.validate()?;
    calculate_valid(spec, value, counts, tol)
}

/// [`calculate`] for a metric, tolerances and counts the caller has already
/// validated (an [`Hpa`](crate::Hpa) validates its spec once when it is
/// built and each observation's counts once per decision). Readings are
/// still checked here: they are new on every call.
pub(crate) fn calculate_valid(
    spec: &MetricSpec,
    value: &MetricValue,
    counts: ReplicaCounts,
    tol: Tolerances,
) -> Result<Result<Calculation, String>> {
    let name = spec.name.as_str();
    let source = match spec.source {
        MetricSource::ContainerResource => MetricSource::Resource,
        s => s,
    };
    match (source, spec.target, value) {
        (_, _, MetricValue::Unavailable(reason)) => Ok(Err(reason.clone())),
        (MetricSource::Resource, MetricTarget::Utilization(t), MetricValue::PerPod(pods)) => {
            pods_replicas(name, pods, counts.spec, Target::Util(i64::from(t)), tol)
        }
        (
            MetricSource::Resource | MetricSource::Pods,
            MetricTarget::AverageValue(t),
            MetricValue::PerPod(pods),
        ) => pods_replicas(name, pods, counts.spec, Target::Plain(to_milli(t)), tol),
        (MetricSource::Resource, MetricTarget::Utilization(t), MetricValue::Average(v)) => {
            let v = check_value(name, "value", *v)?;
            // Kubernetes' utilization is an integer percent.
            let cu = v.floor();
            let ratio = cu / f64::from(t);
            Ok(average_replicas(counts, ratio, tol).map(|r| Calculation {
                replicas: r,
                usage_ratio: ratio,
                current: cu,
            }))
        }
        (
            MetricSource::Resource | MetricSource::Pods,
            MetricTarget::AverageValue(t),
            MetricValue::Average(v),
        ) => {
            let v = check_value(name, "value", *v)?;
            let cu = to_milli(v);
            let ratio = cu as f64 / to_milli(t) as f64;
            Ok(average_replicas(counts, ratio, tol).map(|r| Calculation {
                replicas: r,
                usage_ratio: ratio,
                current: cu as f64 / 1000.0,
            }))
        }
        (
            MetricSource::Object | MetricSource::External,
            MetricTarget::Value(t),
            MetricValue::Total(v),
        ) => {
            let usage = to_milli(check_value(name, "value", *v)?);
            let ratio = usage as f64 / to_milli(t) as f64;
            // getUsageRatioReplicaCount
            let replicas = if counts.spec != 0 {
                if tol.is_within(ratio) {
                    counts.spec
                } else {
                    ceil_to_u32(ratio * f64::from(counts.ready))
                }
            } else {
                ceil_to_u32(ratio)
            };
            Ok(Ok(Calculation {
                replicas,
                usage_ratio: ratio,
                current: usage as f64 / 1000.0,
            }))
        }
        (
            MetricSource::Object | MetricSource::External,
            MetricTarget::AverageValue(t),
            MetricValue::Total(v),
        ) => {
            // GetObjectPerPodMetricReplicas / GetExternalPerPodMetricReplicas
            let usage = to_milli(check_value(name, "value", *v)?) as f64;
            let target = to_milli(t) as f64;
            let status = counts.status;
            // With no replicas Kubernetes' ratio is +Inf or NaN and never within
            // the tolerance; report the ratio against one replica instead.
            let ratio = usage / (target * f64::from(status.max(1)));
            let mut replicas = status;
            if status == 0 || !tol.is_within(ratio) {
                replicas = ceil_to_u32(usage / target);
            }
            let per_pod = if status == 0 {
                usage
            } else {
                (usage / f64::from(status)).ceil()
            };
            Ok(Ok(Calculation {
                replicas,
                usage_ratio: ratio,
                current: per_pod / 1000.0,
            }))
        }
        (source, target, v) => Err(ScalingError::MismatchedReading {
            metric: name.to_owned(),
            reason: format!(
                "a {} reading does not fit a {source:?} metric with a {target:?} target",
                match v {
                    MetricValue::PerPod(_) => "per-pod",
                    MetricValue::Average(_) => "average",
                    MetricValue::Total(_) => "total",
                    MetricValue::Unavailable(_) => "unavailable",
                }
            ),
        }),
    }
}

/// Aggregate readings: every ready pod reported the average, none missing or unready.
fn average_replicas(counts: ReplicaCounts, ratio: f64, tol: Tolerances) -> Result<u32, String> {
    if counts.ready == 0 {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    if tol.is_within(ratio) {
        return Ok(counts.spec);
    }
    Ok(ceil_to_u32(ratio * f64::from(counts.ready)))
}

/// `(value, request)` in milli-units.
type Entry = (i64, i64);

fn ratio_of(entries: &[Entry], target: &Target) -> Result<(f64, i64), String> {
    match *target {
        Target::Util(t) => {
            let (sum, req) = entries.iter().fold((0i64, 0i64), |(s, r), &(v, q)| {
                (s.saturating_add(v), r.saturating_add(q))
            });
            if req == 0 {
                return Err("no metrics returned matched known pods".into());
            }
            let cu = sum.saturating_mul(100) / req;
            Ok((cu as f64 / t as f64, cu))
        }
        Target::Plain(t) => {
            let sum = entries.iter().fold(0i64, |s, &(v, _)| s.saturating_add(v));
            let cu = sum / entries.len() as i64;
            Ok((cu as f64 / t as f64, cu))
        }
    }
}

/// `GetResourceReplicas` / `calcPlainMetricReplicas`.
fn pods_replicas(
    name: &str,
    pods: &[PodSample],
    current: u32,
    target: Target,
    tol: Tolerances,
) -> Result<Result<Calculation, String>> {
    let util = matches!(target, Target::Util(_));
    let mut ready: Vec<Entry> = Vec::with_capacity(pods.len());
    let mut missing: Vec<i64> = Vec::new();
    let mut unready: Vec<i64> = Vec::new();
    // calculatePodRequests: a pod without a request invalidates this metric
    // only (the other metrics still decide), after the empty-metrics check.
    let mut missing_request: Option<usize> = None;
    for (i, p) in pods.iter().enumerate() {
        if p.status == PodStatus::Ignored {
            continue;
        }
        let req = match p.request {
            Some(r) => to_milli(check_value(name, "request", r)?),
            None => {
                if util && missing_request.is_none() {
                    missing_request = Some(i);
                }
                0
            }
        };
        if p.status == PodStatus::Pending {
            unready.push(req);
            continue;
        }
        let Some(v) = p.value else {
            missing.push(req);
            continue;
        };
        let v = to_milli(check_value(name, "value", v)?);
        if p.status == PodStatus::Unready {
            unready.push(req);
            continue;
        }
        ready.push((v, req));
    }
    if ready.is_empty() {
        return Ok(Err(
            "did not receive metrics for targeted pods (pods might be unready)".into(),
        ));
    }
    if let Some(i) = missing_request {
        return Ok(Err(format!(
            "missing request for {name} in pod {i} (a utilization target needs every pod's request)"
        )));
    }
    let (ratio, cu) = match ratio_of(&ready, &target) {
        Ok(x) => x,
        Err(e) => return Ok(Err(e)),
    };
    let current_value = if util { cu as f64 } else { cu as f64 / 1000.0 };
    let done = |replicas: u32| {
        Ok(Ok(Calculation {
            replicas,
            usage_ratio: ratio,
            current: current_value,
        }))
    };
    let scale_up_with_unready = !unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        if tol.is_within(ratio) {
            return done(current);
        }
        return done(ceil_to_u32(ratio * ready.len() as f64));
    }
    let mut entries = ready;
    if !missing.is_empty() {
        if ratio < 1.0 {
            for req in &missing {
                let fill = match target {
                    // treat missing pods as using 100 % of their request, or the target if it is higher
                    Target::Util(t) => req.saturating_mul(t.max(100)) / 100,
                    Target::Plain(t) => t,
                };
                entries.push((fill, *req));
            }
        } else if ratio > 1.0 {
            entries.extend(missing.iter().map(|&req| (0, req)));
        }
    }
    if scale_up_with_unready {
        entries.extend(unready.iter().map(|&req| (0, req)));
    }
    let new_ratio = match ratio_of(&entries, &target) {
        Ok((r, _)) => r,
        Err(e) => return Ok(Err(e)),
    };
    if tol.is_within(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return done(current);
    }
    let new_replicas = ceil_to_u32(new_ratio * entries.len() as f64);
    if (new_ratio < 1.0 && new_replicas > current) || (new_ratio > 1.0 && new_replicas < current) {
        return done(current);
    }
    done(new_replicas)
}
