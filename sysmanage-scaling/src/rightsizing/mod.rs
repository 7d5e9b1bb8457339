//! [`RightSizer`]: CPU and memory requests with the semantics of the
//! Kubernetes Vertical Pod Autoscaler's recommender.
//!
//! Per container, CPU usage samples go into a decaying histogram weighted by
//! the container's CPU request (at least 0.1 core), and memory goes in as
//! one peak per 24-hour aggregation window; both histograms use the VPA's
//! exponential buckets (first bucket 0.01 core / 10 MB, ratio 1.05) and a
//! 24-hour half-life. A recommendation is, per resource:
//!
//! | bound | percentile | then |
//! |---|---|---|
//! | target | 90th | × (1 + 15 % safety margin), at least the pod minimum |
//! | lower bound | 50th | × 1.15, × `(1 + 0.001 / confidence)^-2`, at least the pod minimum |
//! | upper bound | 95th | × 1.15, × `(1 + 1 / confidence)`, at least the pod minimum |
//!
//! where `confidence = min(history span, samples / 1440)` in days, so bounds
//! are wide with little history (no history: lower 0, upper unbounded). The
//! pod minimum (25 millicores, 250 MiB) is divided among the containers.
//! Then the `VerticalPodAutoscaler`'s container policy applies: `mode: Off`
//! drops the container, `controlledResources` keeps only the listed
//! resources, and `minAllowed`/`maxAllowed` clamp every bound. An OOM event
//! records `max(used + 100 MiB, used × 1.2)` as the window's memory peak.
//!
//! Amounts are integers like the VPA's `ResourceAmount`: millicores and
//! bytes, at most 10^14. State round-trips through [`RightSizerCheckpoint`]
//! (serde), whose histograms use the VPA's compact checkpoint format.
//!
//! # Examples
//! ```
//! use std::time::Duration;
//! use sysmanage_core::Timestamp;
//! use sysmanage_scaling::rightsizing::{RightSizer, RightSizerConfig};
//!
//! let mut rs = RightSizer::new(RightSizerConfig::default(), vec![])?;
//! let t0 = Timestamp::from_secs(1_700_000_000);
//! for m in 0..(3 * 1440) {
//!     let at = t0 + Duration::from_secs(60 * m);
//!     let cpu = if m % 60 < 12 { 1.2 } else { 0.3 }; // cores, busy 20 % of the time
//!     rs.add_cpu_sample("app", at, cpu, 0.5)?;
//!     rs.add_memory_sample("app", at, 600e6)?; // bytes
//! }
//! let rec = &rs.recommend()?[0];
//! assert!(rec.target.cpu_millicores.unwrap() > 1200); // p90 covers the busy minutes, + 15 %
//! assert!(rec.lower_bound.cpu_millicores < rec.target.cpu_millicores);
//! assert!(rec.upper_bound.cpu_millicores > rec.target.cpu_millicores);
//! # Ok::<(), sysmanage_scaling::ScalingError>(())
//! ```

pub mod histogram;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysmanage_core::Timestamp;

pub use histogram::{
    DecayingHistogram, Histogram, HistogramCheckpoint, HistogramOptions, MAX_CHECKPOINT_WEIGHT,
};

use crate::error::{Result, ScalingError};

/// The largest resource amount (`MaxResourceAmount`): 10^14 millicores or bytes.
pub const MAX_RESOURCE_AMOUNT: i64 = 100_000_000_000_000;

/// `resourceAmountFromFloat`: truncated, 0 for negative or NaN, capped at [`MAX_RESOURCE_AMOUNT`].
pub fn resource_amount(v: f64) -> i64 {
    if v.is_nan() || v < 0.0 {
        0
    } else if v > MAX_RESOURCE_AMOUNT as f64 {
        MAX_RESOURCE_AMOUNT
    } else {
        v as i64
    }
}

/// `CPUAmountFromCores`.
pub fn cpu_amount_from_cores(cores: f64) -> i64 {
    resource_amount(cores * 1000.0)
}

/// `CoresFromCPUAmount`.
pub fn cores_from_cpu_amount(millicores: i64) -> f64 {
    millicores as f64 / 1000.0
}

/// `ScaleResource`.
pub fn scale_resource(amount: i64, factor: f64) -> i64 {
    resource_amount(amount as f64 * factor)
}

/// `WithConfidenceMultiplier`: `amount × (1 + multiplier / confidence)^exponent`.
pub fn confidence_multiplier(amount: i64, multiplier: f64, exponent: f64, confidence: f64) -> i64 {
    scale_resource(amount, (1.0 + multiplier / confidence).powf(exponent))
}

/// A resource a container policy controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Resource {
    /// CPU, in millicores.
    Cpu,
    /// Memory, in bytes.
    Memory,
}

/// `controlledValues`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ControlledValues {
    /// Requests and limits are scaled together (the default).
    #[default]
    RequestsAndLimits,
    /// Only requests are changed.
    RequestsOnly,
}

/// A recommendation's amounts; `None` for a resource the policy does not control.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// CPU, millicores.
    pub cpu_millicores: Option<i64>,
    /// Memory, bytes.
    pub memory_bytes: Option<i64>,
}

/// A container's resource policy (`ContainerResourcePolicy`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPolicy {
    /// The container, or `*` for every container without its own policy.
    pub container_name: String,
    /// `mode: Off` turns recommendations off for the container.
    pub off: bool,
    /// `minAllowed`.
    pub min_allowed: Resources,
    /// `maxAllowed`.
    pub max_allowed: Resources,
    /// `controlledResources` (default: both).
    pub controlled_resources: Vec<Resource>,
    /// `controlledValues`.
    pub controlled_values: ControlledValues,
}

impl ContainerPolicy {
    /// A policy for `container_name` with no bounds, controlling both resources.
    pub fn new(container_name: impl Into<String>) -> Self {
        Self {
            container_name: container_name.into(),
            off: false,
            min_allowed: Resources::default(),
            max_allowed: Resources::default(),
            controlled_resources: vec![Resource::Cpu, Resource::Memory],
            controlled_values: ControlledValues::default(),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.container_name.is_empty() {
            return Err(ScalingError::invalid(
                "containerPolicies.containerName",
                "must not be empty",
            ));
        }
        for (field, min, max) in [
            (
                "containerPolicies.minAllowed.cpu",
                self.min_allowed.cpu_millicores,
                self.max_allowed.cpu_millicores,
            ),
            (
                "containerPolicies.minAllowed.memory",
                self.min_allowed.memory_bytes,
                self.max_allowed.memory_bytes,
            ),
        ] {
            for v in [min, max].into_iter().flatten() {
                if !(0..=MAX_RESOURCE_AMOUNT).contains(&v) {
                    return Err(ScalingError::OutOfRange {
                        field,
                        value: v.to_string(),
                        range: format!("0..={MAX_RESOURCE_AMOUNT}"),
                    });
                }
            }
            if let (Some(a), Some(b)) = (min, max)
                && a > b
            {
                return Err(ScalingError::invalid(
                    field,
                    format!("{a} is above maxAllowed {b}"),
                ));
            }
        }
        Ok(())
    }
}

/// The recommender's settings, with the VPA's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RightSizerConfig {
    /// Target percentile (0.9).
    pub target_percentile: f64,
    /// Lower-bound percentile (0.5).
    pub lower_bound_percentile: f64,
    /// Upper-bound percentile (0.95).
    pub upper_bound_percentile: f64,
    /// `--recommendation-margin-fraction` (0.15).
    pub safety_margin: f64,
    /// `--pod-recommendation-min-cpu-millicores` (25).
    pub pod_min_cpu_millicores: f64,
    /// `--pod-recommendation-min-memory-mb` (250, MiB).
    pub pod_min_memory_mib: f64,
    /// Histogram half-life (24 h; the VPA uses the same for CPU and memory).
    pub half_life: Duration,
    /// Memory aggregation window (24 h).
    pub memory_aggregation_interval: Duration,
    /// The history length behind a confidence of 1 (24 h).
    pub confidence_interval: Duration,
    /// OOM bump ratio (1.2).
    pub oom_bump_up_ratio: f64,
    /// OOM minimum bump (100 MiB).
    pub oom_min_bump_up_bytes: f64,
}

impl Default for RightSizerConfig {
    fn default() -> Self {
        Self {
            target_percentile: 0.9,
            lower_bound_percentile: 0.5,
            upper_bound_percentile: 0.95,
            safety_margin: 0.15,
            pod_min_cpu_millicores: 25.0,
            pod_min_memory_mib: 250.0,
            half_life: Duration::from_secs(86_400),
            memory_aggregation_interval: Duration::from_secs(86_400),
            confidence_interval: Duration::from_secs(86_400),
            oom_bump_up_ratio: 1.2,
            oom_min_bump_up_bytes: 100.0 * 1024.0 * 1024.0,
        }
    }
}

impl RightSizerConfig {
    fn validate(&self) -> Result<()> {
        use crate::limits::{duration, number};
        for (f, v) in [
            ("rightSizer.targetPercentile", self.target_percentile),
            (
                "rightSizer.lowerBoundPercentile",
                self.lower_bound_percentile,
            ),
            (
                "rightSizer.upperBoundPercentile",
                self.upper_bound_percentile,
            ),
        ] {
            number(f, v, 0.0, 1.0)?;
        }
        number("rightSizer.safetyMargin", self.safety_margin, 0.0, 10.0)?;
        number(
            "rightSizer.podMinCpuMillicores",
            self.pod_min_cpu_millicores,
            0.0,
            1e9,
        )?;
        number(
            "rightSizer.podMinMemoryMib",
            self.pod_min_memory_mib,
            0.0,
            1e9,
        )?;
        number(
            "rightSizer.oomBumpUpRatio",
            self.oom_bump_up_ratio,
            1.0,
            100.0,
        )?;
        number(
            "rightSizer.oomMinBumpUpBytes",
            self.oom_min_bump_up_bytes,
            0.0,
            1e13,
        )?;
        let (min, max) = (Duration::from_secs(60), Duration::from_secs(365 * 86_400));
        duration("rightSizer.halfLife", self.half_life, min, max)?;
        duration(
            "rightSizer.memoryAggregationInterval",
            self.memory_aggregation_interval,
            min,
            max,
        )?;
        duration(
            "rightSizer.confidenceInterval",
            self.confidence_interval,
            min,
            max,
        )?;
        Ok(())
    }
}

/// One container's history (`AggregateContainerState` plus the memory window of `ContainerState`).
#[derive(Clone, Debug)]
struct ContainerState {
    cpu: DecayingHistogram,
    memory: DecayingHistogram,
    first_sample: Option<Timestamp>,
    last_sample: Option<Timestamp>,
    total_samples: u64,
    window_end: Option<Timestamp>,
    memory_peak: f64,
    last_memory_sample: Option<Timestamp>,
}

/// A container's serialisable history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerCheckpoint {
    /// CPU usage histogram.
    pub cpu_histogram: HistogramCheckpoint,
    /// Memory peaks histogram.
    pub memory_histogram: HistogramCheckpoint,
    /// First CPU sample.
    pub first_sample_start: Option<Timestamp>,
    /// Last CPU sample.
    pub last_sample_start: Option<Timestamp>,
    /// CPU samples seen.
    pub total_samples_count: u64,
    /// End of the current memory window.
    pub window_end: Option<Timestamp>,
    /// The current window's memory peak, bytes.
    pub memory_peak: f64,
}

/// A [`RightSizer`]'s serialisable state (`VerticalPodAutoscalerCheckpoint`s).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RightSizerCheckpoint {
    /// Per container.
    pub containers: BTreeMap<String, ContainerCheckpoint>,
}

/// One container's recommendation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecommendation {
    /// The container.
    pub container_name: String,
    /// What to request.
    pub target: Resources,
    /// Below this, the request is too small.
    pub lower_bound: Resources,
    /// Above this, the request is too large.
    pub upper_bound: Resources,
    /// The target before `minAllowed`/`maxAllowed`.
    pub uncapped_target: Resources,
    /// How the host should apply it.
    pub controlled_values: ControlledValues,
}

/// The VPA recommender for the containers of one workload.
#[derive(Clone, Debug)]
pub struct RightSizer {
    cfg: RightSizerConfig,
    policies: Vec<ContainerPolicy>,
    containers: BTreeMap<String, ContainerState>,
}

/// Most containers one right-sizer tracks.
const MAX_CONTAINERS: usize = 4096;

fn check_time(at: Timestamp) -> Result<Timestamp> {
    // keep a century of headroom either side so window arithmetic never saturates
    let limit = 3_000_000_000_000_000i64;
    if at.as_millis().abs() > limit {
        return Err(ScalingError::OutOfRange {
            field: "rightSizer.sampleTime",
            value: at.to_string(),
            range: format!("±{limit} ms since the epoch"),
        });
    }
    Ok(at)
}

impl RightSizer {
    /// A right-sizer with `cfg` and container policies (empty: every container, both resources, no bounds).
    ///
    /// # Errors
    /// [`ScalingError::OutOfRange`] / [`ScalingError::InvalidSpec`] for a bad
    /// setting or policy (`minAllowed` above `maxAllowed`).
    pub fn new(cfg: RightSizerConfig, policies: Vec<ContainerPolicy>) -> Result<Self> {
        cfg.validate()?;
        for p in &policies {
            p.validate()?;
        }
        Ok(Self {
            cfg,
            policies,
            containers: BTreeMap::new(),
        })
    }

    /// The container policies.
    pub fn policies(&self) -> &[ContainerPolicy] {
        &self.policies
    }

    fn state(&mut self, container: &str) -> Result<&mut ContainerState> {
        if container.is_empty() {
            return Err(ScalingError::invalid("container", "must not be empty"));
        }
        if !self.containers.contains_key(container) {
            if self.containers.len() >= MAX_CONTAINERS {
                return Err(ScalingError::OutOfRange {
                    field: "rightSizer.containers",
                    value: (MAX_CONTAINERS + 1).to_string(),
                    range: format!("at most {MAX_CONTAINERS}"),
                });
            }
            let st = ContainerState {
                cpu: DecayingHistogram::new(HistogramOptions::vpa_cpu(), self.cfg.half_life)?,
                memory: DecayingHistogram::new(HistogramOptions::vpa_memory(), self.cfg.half_life)?,
                first_sample: None,
                last_sample: None,
                total_samples: 0,
                window_end: None,
                memory_peak: 0.0,
                last_memory_sample: None,
            };
            self.containers.insert(container.to_owned(), st);
        }
        self.containers
            .get_mut(container)
            .ok_or_else(|| ScalingError::invalid("container", "vanished"))
    }

    /// Adds a CPU usage sample (cores), weighted by the container's CPU
    /// request (cores, at least 0.1), as `AddSample` does.
    ///
    /// # Errors
    /// [`ScalingError::NonFinite`] / [`ScalingError::Negative`] for bad
    /// numbers; [`ScalingError::OutOfRange`] for a timestamp out of range or
    /// too many containers.
    pub fn add_cpu_sample(
        &mut self,
        container: &str,
        at: Timestamp,
        usage_cores: f64,
        request_cores: f64,
    ) -> Result<()> {
        crate::error::check_value(container, "cpu usage", usage_cores)?;
        crate::error::check_value(container, "cpu request", request_cores)?;
        check_time(at)?;
        let st = self.state(container)?;
        st.cpu.add_sample(usage_cores, request_cores.max(0.1), at);
        if st.first_sample.is_none_or(|f| at < f) {
            st.first_sample = Some(at);
        }
        if st.last_sample.is_none_or(|l| at > l) {
            st.last_sample = Some(at);
        }
        st.total_samples = st.total_samples.saturating_add(1);
        Ok(())
    }

    /// Adds a memory usage sample (bytes). Each aggregation window keeps its
    /// peak: a larger sample inside the window replaces it; a sample past
    /// the window starts the next one. Samples older than the last one are
    /// ignored (returns `false`), as the VPA does.
    ///
    /// # Errors
    /// As [`add_cpu_sample`](Self::add_cpu_sample).
    pub fn add_memory_sample(
        &mut self,
        container: &str,
        at: Timestamp,
        bytes: f64,
    ) -> Result<bool> {
        crate::error::check_value(container, "memory usage", bytes)?;
        check_time(at)?;
        let interval = self.cfg.memory_aggregation_interval;
        let st = self.state(container)?;
        Ok(Self::memory_sample(st, interval, at, bytes, false))
    }

    fn memory_sample(
        st: &mut ContainerState,
        interval: Duration,
        at: Timestamp,
        bytes: f64,
        oom: bool,
    ) -> bool {
        if !oom && st.last_memory_sample.is_some_and(|l| at < l) {
            return false;
        }
        st.last_memory_sample = Some(st.last_memory_sample.map_or(at, |l| l.max(at)));
        let end = *st.window_end.get_or_insert(at);
        let mut add = false;
        if at < end {
            if st.memory_peak != 0.0 && bytes > st.memory_peak {
                st.memory.subtract_sample(st.memory_peak, 1.0, end);
                add = true;
            } else if st.memory_peak == 0.0 {
                add = true;
            }
        } else {
            // shift the window: whole intervals past `at`
            let iv = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
            let behind = at.as_millis().saturating_sub(end.as_millis());
            let shift = (behind / iv).saturating_mul(iv).saturating_add(iv);
            st.window_end = Some(Timestamp::from_millis(
                end.as_millis().saturating_add(shift),
            ));
            st.memory_peak = 0.0;
            add = true;
        }
        if add {
            let end = st.window_end.unwrap_or(at);
            st.memory.add_sample(bytes, 1.0, end);
            st.memory_peak = bytes;
        }
        true
    }

    /// Records an out-of-memory kill (`RecordOOM`): the window's peak becomes
    /// `max(used + 100 MiB, used × 1.2)`, where `used` is the larger of the
    /// memory request and the window's peak.
    ///
    /// # Errors
    /// As [`add_cpu_sample`](Self::add_cpu_sample); [`ScalingError::InvalidSpec`]
    /// for an OOM older than the current window.
    pub fn record_oom(&mut self, container: &str, at: Timestamp, request_bytes: f64) -> Result<()> {
        crate::error::check_value(container, "memory request", request_bytes)?;
        check_time(at)?;
        let (interval, ratio, bump) = (
            self.cfg.memory_aggregation_interval,
            self.cfg.oom_bump_up_ratio,
            self.cfg.oom_min_bump_up_bytes,
        );
        let st = self.state(container)?;
        if let Some(end) = st.window_end
            && at < end - interval
        {
            return Err(ScalingError::invalid(
                "oom",
                "the OOM event is older than the current memory window and is discarded",
            ));
        }
        let used = request_bytes.max(st.memory_peak);
        let needed = (used + bump).max(used * ratio);
        Self::memory_sample(st, interval, at, needed, true);
        Ok(())
    }

    fn policy_for(&self, container: &str) -> Option<&ContainerPolicy> {
        self.policies
            .iter()
            .find(|p| p.container_name == container)
            .or_else(|| self.policies.iter().find(|p| p.container_name == "*"))
    }

    /// `getConfidence` of one container's history, in confidence intervals (days by default).
    fn confidence(&self, st: &ContainerState) -> f64 {
        let iv = self.cfg.confidence_interval;
        let span = match (st.first_sample, st.last_sample) {
            (Some(a), Some(b)) => b.saturating_since(a).as_secs_f64() / iv.as_secs_f64(),
            _ => 0.0,
        };
        let samples = st.total_samples as f64 / (iv.as_secs_f64() / 60.0);
        span.min(samples)
    }

    /// The confidence in a container's history (`getConfidence`): the smaller
    /// of its span and its CPU sample count per minute of interval, in
    /// confidence intervals; `None` for an unknown container.
    pub fn confidence_of(&self, container: &str) -> Option<f64> {
        self.containers.get(container).map(|st| self.confidence(st))
    }

    /// Recommendations for every container seen, in name order, skipping
    /// containers whose policy is `mode: Off`.
    ///
    /// # Errors
    /// Never today; kept fallible for policies that need history.
    pub fn recommend(&self) -> Result<Vec<ContainerRecommendation>> {
        let c = &self.cfg;
        let n = self.containers.len().max(1) as f64;
        let min_cpu = scale_resource(
            cpu_amount_from_cores(c.pod_min_cpu_millicores * 0.001),
            1.0 / n,
        );
        let min_mem = scale_resource(
            resource_amount(c.pod_min_memory_mib * 1024.0 * 1024.0),
            1.0 / n,
        );
        let margin = 1.0 + c.safety_margin;
        let mut out = Vec::with_capacity(self.containers.len());
        for (name, st) in &self.containers {
            let policy = self.policy_for(name);
            if policy.is_some_and(|p| p.off) {
                continue;
            }
            let conf = self.confidence(st);
            let cpu = |p: f64| scale_resource(cpu_amount_from_cores(st.cpu.percentile(p)), margin);
            let mem = |p: f64| scale_resource(resource_amount(st.memory.percentile(p)), margin);
            let target = (
                cpu(c.target_percentile).max(min_cpu),
                mem(c.target_percentile).max(min_mem),
            );
            let lower = (
                confidence_multiplier(cpu(c.lower_bound_percentile), 0.001, -2.0, conf)
                    .max(min_cpu),
                confidence_multiplier(mem(c.lower_bound_percentile), 0.001, -2.0, conf)
                    .max(min_mem),
            );
            let upper = (
                confidence_multiplier(cpu(c.upper_bound_percentile), 1.0, 1.0, conf).max(min_cpu),
                confidence_multiplier(mem(c.upper_bound_percentile), 1.0, 1.0, conf).max(min_mem),
            );
            let controls = |r: Resource| policy.is_none_or(|p| p.controlled_resources.contains(&r));
            let cap = |v: i64, r: Resource| -> Option<i64> {
                if !controls(r) {
                    return None;
                }
                let (lo, hi) = match (policy, r) {
                    (Some(p), Resource::Cpu) => {
                        (p.min_allowed.cpu_millicores, p.max_allowed.cpu_millicores)
                    }
                    (Some(p), Resource::Memory) => {
                        (p.min_allowed.memory_bytes, p.max_allowed.memory_bytes)
                    }
                    (None, _) => (None, None),
                };
                let v = lo.map_or(v, |lo| v.max(lo));
                Some(hi.map_or(v, |hi| v.min(hi)))
            };
            let res = |(cpu, mem): (i64, i64), capped: bool| Resources {
                cpu_millicores: if capped {
                    cap(cpu, Resource::Cpu)
                } else {
                    controls(Resource::Cpu).then_some(cpu)
                },
                memory_bytes: if capped {
                    cap(mem, Resource::Memory)
                } else {
                    controls(Resource::Memory).then_some(mem)
                },
            };
            out.push(ContainerRecommendation {
                container_name: name.clone(),
                target: res(target, true),
                lower_bound: res(lower, true),
                upper_bound: res(upper, true),
                uncapped_target: res(target, false),
                controlled_values: policy
                    .map_or(ControlledValues::default(), |p| p.controlled_values),
            });
        }
        Ok(out)
    }

    /// The state to persist.
    pub fn checkpoint(&self) -> RightSizerCheckpoint {
        RightSizerCheckpoint {
            containers: self
                .containers
                .iter()
                .map(|(n, st)| {
                    (
                        n.clone(),
                        ContainerCheckpoint {
                            cpu_histogram: st.cpu.checkpoint(),
                            memory_histogram: st.memory.checkpoint(),
                            first_sample_start: st.first_sample,
                            last_sample_start: st.last_sample,
                            total_samples_count: st.total_samples,
                            window_end: st.window_end,
                            memory_peak: st.memory_peak,
                        },
                    )
                })
                .collect(),
        }
    }

    /// A right-sizer resumed from a checkpoint.
    ///
    /// # Errors
    /// As [`new`](Self::new); [`ScalingError::InvalidSpec`] for a checkpoint
    /// whose histograms do not fit the bucketing or whose numbers are bad.
    pub fn from_checkpoint(
        cfg: RightSizerConfig,
        policies: Vec<ContainerPolicy>,
        cp: &RightSizerCheckpoint,
    ) -> Result<Self> {
        let mut rs = Self::new(cfg, policies)?;
        let interval = rs.cfg.memory_aggregation_interval;
        for (name, c) in &cp.containers {
            crate::error::check_value(name, "memoryPeak", c.memory_peak)?;
            let st = rs.state(name)?;
            st.cpu.load_checkpoint(&c.cpu_histogram)?;
            st.memory.load_checkpoint(&c.memory_histogram)?;
            st.first_sample = c.first_sample_start;
            st.last_sample = c.last_sample_start;
            st.total_samples = c.total_samples_count;
            st.window_end = c.window_end;
            st.memory_peak = c.memory_peak;
            st.last_memory_sample = c.window_end.map(|e| e - interval);
        }
        Ok(rs)
    }
}
