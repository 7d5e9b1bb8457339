//! The cache scaling advisor: a pure function from a [`ClusterStats`]
//! snapshot, the advisor's previous state and an explicit `now` to a
//! [`Recommendation`].
//!
//! Compared with SysManage's `CacheScalingStrategy`:
//! * memory pressure is measured against each primary's **real**
//!   `maxmemory` (or the machine's memory when none is set), not an assumed
//!   1 GB;
//! * only primaries carry load decisions (replicas mirror them);
//! * a signal must hold for [`AdvisorConfig::sustain`] before it is acted on
//!   (hysteresis), and after a recommendation the advisor stays quiet for
//!   [`AdvisorConfig::cooldown`];
//! * scale-in is never advised while the cluster is not healthy;
//! * every recommendation carries its reason, the node counts and the
//!   `redis-cli --cluster` commands that carry it out.
//!
//! ```
//! use std::time::Duration;
//! use sysmanage_cache::advisor::{AdvisorConfig, AdvisorState, ScalingAction, advise};
//! use sysmanage_core::Timestamp;
//! # use sysmanage_cache::stats::{ClusterInfo, ClusterNode, ClusterStats, NodeReport, NodeStats};
//! # let nodes = ClusterNode::parse_nodes(
//! #     "p0 10.0.0.0:6379@16379 master - 0 0 0 connected 0-5460\n\
//! #      p1 10.0.0.1:6379@16379 master - 0 0 1 connected 5461-10922\n\
//! #      p2 10.0.0.2:6379@16379 master - 0 0 2 connected 10923-16383\n\
//! #      r0 10.0.1.0:6379@16379 slave p0 0 0 0 connected\n\
//! #      r1 10.0.1.1:6379@16379 slave p1 0 0 1 connected\n\
//! #      r2 10.0.1.2:6379@16379 slave p2 0 0 2 connected\n",
//! # ).unwrap();
//! # let limit: u64 = 4 << 30;
//! # let reports = nodes.iter().enumerate().map(|(i, n)| {
//! #     let used = ([0.9, 0.85, 0.88][i % 3] * limit as f64) as u64;
//! #     let role = if i < 3 { "master" } else { "slave" };
//! #     let info = format!(
//! #         "role:{role}\r\nused_memory:{used}\r\nmaxmemory:{limit}\r\nconnected_clients:10\r\n\
//! #          instantaneous_ops_per_sec:1000\r\nkeyspace_hits:0\r\nkeyspace_misses:0\r\n\
//! #          evicted_keys:0\r\ndb0:keys=1000,expires=0,avg_ttl=0\r\n");
//! #     NodeReport::from_result(n, NodeStats::parse_info(&n.addr, &info))
//! # }).collect();
//! # let info = ClusterInfo::parse(
//! #     "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n\
//! #      cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:6\r\ncluster_size:3\r\n",
//! # ).ok();
//! # let stats = ClusterStats::new(reports, info, Timestamp::from_secs(0));
//! let mut config = AdvisorConfig::default();
//! config.sustain = Duration::from_secs(60);
//! let t0 = Timestamp::from_secs(1_000);
//! let (first, state) = advise(&config, &stats, &AdvisorState::default(), t0);
//! assert_eq!(first.action, ScalingAction::None); // pressure seen, not yet sustained
//! let (rec, _) = advise(&config, &stats, &state, t0 + Duration::from_secs(61));
//! assert!(matches!(rec.action, ScalingAction::ScaleOut { add: 2 }));
//! assert!(rec.steps[0].starts_with("redis-cli --cluster add-node"));
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysmanage_core::Timestamp;

use crate::stats::{ClusterHealth, ClusterStats, NodeReport};

/// Thresholds of the advisor. Ratios are fractions of a node's memory limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AdvisorConfig {
    /// Scale out when any primary uses more than this. Default: 0.80.
    pub memory_high: f64,
    /// Memory utilisation to size the cluster for. Default: 0.60.
    pub memory_target: f64,
    /// A primary below this (and below `ops_low`) is under-used. Default: 0.30.
    pub memory_low: f64,
    /// Scale out when any primary serves more ops/sec. Default: 10,000.
    pub ops_high: f64,
    /// Ops/sec per primary to size the cluster for. Default: 6,000.
    pub ops_target: f64,
    /// A primary below this (and below `memory_low`) is under-used. Default: 1,000.
    pub ops_low: f64,
    /// Scale in when at least this fraction of primaries is under-used.
    /// Default: 0.7.
    pub underused_fraction: f64,
    /// Never advise fewer primaries. Default: 3 (Redis Cluster's minimum).
    pub min_primaries: usize,
    /// Never advise more primaries. Default: 100.
    pub max_primaries: usize,
    /// Rebalance when the busiest primary exceeds the mean by this factor
    /// (slots, keys or ops/sec). Default: 1.5.
    pub skew_factor: f64,
    /// Key and ops skew are ignored below these cluster totals. Default: 10,000 keys, 1,000 ops/sec.
    pub skew_min_keys: u64,
    /// See `skew_min_keys`.
    pub skew_min_ops: u64,
    /// A signal must persist this long before it is acted on. Default: 5 min.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub sustain: Duration,
    /// Quiet period after a recommendation. Default: 15 min.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub cooldown: Duration,
}

impl Default for AdvisorConfig {
    fn default() -> Self {
        Self {
            memory_high: 0.80,
            memory_target: 0.60,
            memory_low: 0.30,
            ops_high: 10_000.0,
            ops_target: 6_000.0,
            ops_low: 1_000.0,
            underused_fraction: 0.7,
            min_primaries: 3,
            max_primaries: 100,
            skew_factor: 1.5,
            skew_min_keys: 10_000,
            skew_min_ops: 1_000,
            sustain: Duration::from_secs(300),
            cooldown: Duration::from_secs(900),
        }
    }
}

impl AdvisorConfig {
    /// Checks that the thresholds are finite, ordered and non-zero.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`](crate::CacheError::InvalidArgument) naming the field.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::CacheError;
        for (f, v) in [
            ("advisor.memory_high", self.memory_high),
            ("advisor.memory_target", self.memory_target),
            ("advisor.memory_low", self.memory_low),
            ("advisor.ops_high", self.ops_high),
            ("advisor.ops_target", self.ops_target),
            ("advisor.ops_low", self.ops_low),
            ("advisor.underused_fraction", self.underused_fraction),
            ("advisor.skew_factor", self.skew_factor),
        ] {
            if !v.is_finite() || v <= 0.0 {
                return Err(CacheError::invalid(
                    f,
                    format!("must be a positive finite number, got {v}"),
                ));
            }
        }
        if !(self.memory_low < self.memory_target && self.memory_target < self.memory_high) {
            return Err(CacheError::invalid(
                "advisor.memory_target",
                "need memory_low < memory_target < memory_high",
            ));
        }
        if !(self.ops_low < self.ops_target && self.ops_target < self.ops_high) {
            return Err(CacheError::invalid(
                "advisor.ops_target",
                "need ops_low < ops_target < ops_high",
            ));
        }
        if self.min_primaries == 0 || self.min_primaries > self.max_primaries {
            return Err(CacheError::invalid(
                "advisor.min_primaries",
                "need 0 < min_primaries <= max_primaries",
            ));
        }
        // A cluster has at most 16,384 slots, hence primaries.
        sysmanage_core::duration::check_count(
            "advisor.max_primaries",
            self.max_primaries,
            1,
            16_384,
        )?;
        sysmanage_core::duration::check_duration(
            "advisor.sustain",
            self.sustain,
            Duration::ZERO,
            sysmanage_core::duration::DAY,
        )?;
        sysmanage_core::duration::check_duration(
            "advisor.cooldown",
            self.cooldown,
            Duration::ZERO,
            sysmanage_core::duration::DAY,
        )?;
        Ok(())
    }
}

/// What to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum ScalingAction {
    /// Nothing.
    None,
    /// Add primaries (each with as many replicas as the current primaries have).
    ScaleOut {
        /// Primaries to add.
        add: usize,
    },
    /// Remove primaries.
    ScaleIn {
        /// Primaries to remove.
        remove: usize,
    },
    /// Move slots between existing primaries.
    Rebalance,
}

/// What a rebalance recommendation found skewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkewKind {
    /// Slot counts per primary.
    Slots,
    /// Keys per primary.
    Keys,
    /// Operations per second per primary.
    Ops,
}

/// The advisor's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Recommendation {
    /// The action.
    pub action: ScalingAction,
    /// Why, in one sentence with the numbers that decided it.
    pub reason: String,
    /// Primaries serving slots now.
    pub current_primaries: usize,
    /// Primaries after the action.
    pub target_primaries: usize,
    /// The `redis-cli --cluster` commands that carry the action out, in
    /// order. `<NEW_NODE_n>` placeholders stand for hosts the operator
    /// provisions; node ids are real.
    pub steps: Vec<String>,
    /// For a scale-in: the `host:port` of the primaries to remove and of
    /// their replicas (empty otherwise).
    #[serde(default)]
    pub leaving: Vec<String>,
    /// For a rebalance: what was skewed.
    #[serde(default)]
    pub skew: Option<SkewKind>,
    /// When it was computed.
    pub at: Timestamp,
}

/// What the advisor remembers between calls (hysteresis and cooldown).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AdvisorState {
    /// Since when scale-out pressure has been seen continuously.
    pub scale_out_since: Option<Timestamp>,
    /// Since when under-use has been seen continuously.
    pub scale_in_since: Option<Timestamp>,
    /// Since when skew has been seen continuously.
    pub rebalance_since: Option<Timestamp>,
    /// When the last non-`None` recommendation was made.
    pub last_action_at: Option<Timestamp>,
}

struct Primary<'a> {
    report: &'a NodeReport,
    used: u64,
    limit: Option<u64>,
    keys: u64,
    ops: u64,
}

fn since(prev: Option<Timestamp>, active: bool, now: Timestamp) -> Option<Timestamp> {
    if active {
        Some(prev.unwrap_or(now))
    } else {
        None
    }
}

fn held(since: Option<Timestamp>, now: Timestamp, sustain: Duration) -> bool {
    since.is_some_and(|s| now.saturating_since(s) >= sustain)
}

/// Computes a recommendation. Pure: the same inputs give the same output.
///
/// The returned state must be passed to the next call. Check the config
/// once with [`AdvisorConfig::validate`]; `advise` does not, and never
/// panics on one that fails it (with `min_primaries > max_primaries` the
/// target node count is `max_primaries`).
pub fn advise(
    config: &AdvisorConfig,
    stats: &ClusterStats,
    state: &AdvisorState,
    now: Timestamp,
) -> (Recommendation, AdvisorState) {
    let primaries: Vec<Primary<'_>> = stats
        .primaries()
        .filter_map(|r| {
            r.stats.as_ref().map(|s| Primary {
                report: r,
                used: s.used_memory,
                limit: s.memory_limit(),
                keys: s.keys,
                ops: s.ops_per_sec,
            })
        })
        .collect();
    let current = stats.primaries().count();
    let seed = primaries
        .first()
        .map_or("<ANY_NODE>", |p| p.report.node.as_str())
        .to_owned();
    let replicas_per_primary = stats.replicas().count().checked_div(current).unwrap_or(0);
    let rec = |action, reason: String, target, steps| Recommendation {
        action,
        reason,
        current_primaries: current,
        target_primaries: target,
        steps,
        leaving: Vec::new(),
        skew: None,
        at: now,
    };
    let mut next = state.clone();
    if primaries.is_empty() {
        return (
            rec(
                ScalingAction::None,
                "no primary answered INFO".into(),
                current,
                vec![],
            ),
            next,
        );
    }

    // Signals.
    let mem_ratio = |p: &Primary<'_>| p.limit.map(|l| p.used as f64 / l as f64);
    let hottest_mem = primaries
        .iter()
        .filter_map(|p| mem_ratio(p).map(|r| (r, p)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let hottest_ops = primaries.iter().max_by_key(|p| p.ops);
    let mem_pressure = hottest_mem.filter(|(r, _)| *r > config.memory_high);
    let ops_pressure = hottest_ops.filter(|p| p.ops as f64 > config.ops_high);
    let total_used: u64 = primaries.iter().map(|p| p.used).sum();
    let limits: Vec<u64> = primaries.iter().filter_map(|p| p.limit).collect();
    let mean_limit = if limits.is_empty() {
        0.0
    } else {
        limits.iter().sum::<u64>() as f64 / limits.len() as f64
    };
    let total_ops: u64 = primaries.iter().map(|p| p.ops).sum();
    let need_mem = if mean_limit > 0.0 {
        (total_used as f64 / (mean_limit * config.memory_target)).ceil() as usize
    } else {
        0
    };
    let need_ops = (total_ops as f64 / config.ops_target).ceil() as usize;
    // Not `clamp`: it panics when min > max, and `advise` does not require
    // a validated config.
    let needed = need_mem
        .max(need_ops)
        .max(config.min_primaries)
        .min(config.max_primaries);

    let underused = primaries
        .iter()
        .filter(|p| {
            mem_ratio(p).is_some_and(|r| r < config.memory_low) && (p.ops as f64) < config.ops_low
        })
        .count();
    let scale_in_signal = current > config.min_primaries
        && stats.health == ClusterHealth::Healthy
        && underused as f64 >= config.underused_fraction * primaries.len() as f64
        && needed < current;

    let skew = |vals: Vec<u64>, min_total: u64| -> Option<f64> {
        let total: u64 = vals.iter().sum();
        if vals.len() < 2 || total < min_total.max(1) {
            return None;
        }
        let mean = total as f64 / vals.len() as f64;
        let max = *vals.iter().max()? as f64;
        Some(max / mean)
    };
    let slot_skew = skew(
        primaries
            .iter()
            .map(|p| u64::from(p.report.slots))
            .collect(),
        1,
    );
    let key_skew = skew(
        primaries.iter().map(|p| p.keys).collect(),
        config.skew_min_keys,
    );
    let ops_skew = skew(
        primaries.iter().map(|p| p.ops).collect(),
        config.skew_min_ops,
    );
    let worst_skew = [
        ("slots", slot_skew),
        ("keys", key_skew),
        ("ops/sec", ops_skew),
    ]
    .into_iter()
    .filter_map(|(n, s)| s.map(|s| (n, s)))
    .filter(|(_, s)| *s > config.skew_factor)
    .max_by(|a, b| a.1.total_cmp(&b.1));

    let out_signal =
        (mem_pressure.is_some() || ops_pressure.is_some()) && current < config.max_primaries;
    next.scale_out_since = since(state.scale_out_since, out_signal, now);
    next.scale_in_since = since(state.scale_in_since, scale_in_signal && !out_signal, now);
    next.rebalance_since = since(state.rebalance_since, worst_skew.is_some(), now);

    let cooling = state
        .last_action_at
        .is_some_and(|t| now.saturating_since(t) < config.cooldown);
    let none = |reason: String, next: AdvisorState| {
        (rec(ScalingAction::None, reason, current, vec![]), next)
    };

    let decided = if held(next.scale_out_since, now, config.sustain) {
        let add = needed
            .saturating_sub(current)
            .max(1)
            .min(config.max_primaries - current);
        let reason = match (mem_pressure, ops_pressure) {
            (Some((r, p)), _) => format!(
                "memory pressure: {} uses {:.0}% of its {} byte limit (> {:.0}%); {} bytes in use need {} primaries at {:.0}%",
                p.report.node,
                r * 100.0,
                p.limit.unwrap_or(0),
                config.memory_high * 100.0,
                total_used,
                needed,
                config.memory_target * 100.0
            ),
            (None, Some(p)) => format!(
                "ops pressure: {} serves {} ops/sec (> {}); {} ops/sec in total need {} primaries at {} each",
                p.report.node, p.ops, config.ops_high, total_ops, needed, config.ops_target
            ),
            (None, None) => "scale-out pressure".into(),
        };
        let mut steps = Vec::new();
        for i in 1..=add {
            steps.push(format!(
                "redis-cli --cluster add-node <NEW_NODE_{i}> {seed}"
            ));
            for j in 1..=replicas_per_primary {
                steps.push(format!(
                    "redis-cli --cluster add-node <NEW_REPLICA_{i}_{j}> {seed} --cluster-slave --cluster-master-id <ID_OF_NEW_NODE_{i}>"
                ));
            }
        }
        steps.push(format!(
            "redis-cli --cluster rebalance {seed} --cluster-use-empty-masters"
        ));
        Some(rec(
            ScalingAction::ScaleOut { add },
            reason,
            current + add,
            steps,
        ))
    } else if held(next.scale_in_since, now, config.sustain) {
        let remove = current - needed;
        let mut by_load: Vec<&Primary<'_>> = primaries.iter().collect();
        by_load.sort_by_key(|p| (p.used, p.ops));
        let leaving: Vec<&Primary<'_>> = by_load.into_iter().take(remove).collect();
        let keep_seed = primaries
            .iter()
            .find(|p| !leaving.iter().any(|l| l.report.id == p.report.id))
            .map_or(seed.clone(), |p| p.report.node.clone());
        let weights: Vec<String> = leaving
            .iter()
            .map(|p| format!("{}=0", p.report.id))
            .collect();
        let mut steps = vec![format!(
            "redis-cli --cluster rebalance {keep_seed} --cluster-weight {}",
            weights.join(" ")
        )];
        let mut leaving_addrs = Vec::new();
        for p in &leaving {
            leaving_addrs.push(p.report.node.clone());
            for r in stats
                .replicas()
                .filter(|r| r.primary_id.as_deref() == Some(p.report.id.as_str()))
            {
                leaving_addrs.push(r.node.clone());
                steps.push(format!("redis-cli --cluster del-node {keep_seed} {}", r.id));
            }
            steps.push(format!(
                "redis-cli --cluster del-node {keep_seed} {}",
                p.report.id
            ));
        }
        let reason = format!(
            "{underused} of {} primaries under-used (< {:.0}% memory and < {} ops/sec); {} primaries suffice (minimum {})",
            primaries.len(),
            config.memory_low * 100.0,
            config.ops_low,
            needed,
            config.min_primaries
        );
        let mut r = rec(ScalingAction::ScaleIn { remove }, reason, needed, steps);
        r.leaving = leaving_addrs;
        Some(r)
    } else if held(next.rebalance_since, now, config.sustain) {
        let (what, factor) = worst_skew.unwrap_or(("slots", 0.0));
        let steps = if what == "slots" {
            vec![format!("redis-cli --cluster rebalance {seed}")]
        } else {
            // Hot keys, not slot counts: move slots off the hottest primary.
            let metric = |p: &Primary<'_>| if what == "keys" { p.keys } else { p.ops };
            let hot = primaries.iter().max_by_key(|p| metric(p));
            let cold = primaries.iter().min_by_key(|p| metric(p));
            match (hot, cold) {
                (Some(h), Some(c)) if h.report.id != c.report.id => {
                    let mean =
                        primaries.iter().map(metric).sum::<u64>() as f64 / primaries.len() as f64;
                    let excess = 1.0 - mean / metric(h).max(1) as f64;
                    let slots = ((f64::from(h.report.slots) * excess / 2.0).round() as u32).max(1);
                    vec![format!(
                        "redis-cli --cluster reshard {seed} --cluster-from {} --cluster-to {} --cluster-slots {slots} --cluster-yes",
                        h.report.id, c.report.id
                    )]
                }
                _ => vec![format!("redis-cli --cluster rebalance {seed}")],
            }
        };
        let reason = format!(
            "{what} skew: the busiest primary has {factor:.2}x the mean (> {:.2}x)",
            config.skew_factor
        );
        let mut r = rec(ScalingAction::Rebalance, reason, current, steps);
        r.skew = Some(match what {
            "keys" => SkewKind::Keys,
            "ops/sec" => SkewKind::Ops,
            _ => SkewKind::Slots,
        });
        Some(r)
    } else {
        None
    };

    let left = config
        .cooldown
        .saturating_sub(now.saturating_since(state.last_action_at.unwrap_or(now)));
    match decided {
        Some(r) if cooling => none(
            format!("cooldown: {left:?} left; would advise: {}", r.reason),
            next,
        ),
        Some(r) => {
            next = AdvisorState {
                last_action_at: Some(now),
                ..AdvisorState::default()
            };
            (r, next)
        }
        None => {
            let pending = [
                (next.scale_out_since, "scale-out pressure"),
                (next.scale_in_since, "under-use"),
                (next.rebalance_since, "skew"),
            ]
            .into_iter()
            .find_map(|(s, what)| {
                s.map(|s| {
                    format!(
                        "{what} seen for {:?}, acting after {:?}",
                        now.saturating_since(s),
                        config.sustain
                    )
                })
            });
            let reason = pending.unwrap_or_else(|| "within thresholds".into());
            if cooling {
                none(format!("cooldown: {left:?} left; {reason}"), next)
            } else {
                none(reason, next)
            }
        }
    }
}

/// A [`ClusterStats`] with one primary per entry of `memory_ratios`
/// (4 GiB `maxmemory` each, `ops` ops/sec, one replica each), for examples
/// and tests.
#[cfg(test)]
fn example_stats(memory_ratios: &[f64], ops: u64) -> ClusterStats {
    use crate::stats::{ClusterInfo, ClusterNode, NodeStats};
    let limit: u64 = 4 << 30;
    let per = 16384 / memory_ratios.len().clamp(1, 16384) as u32;
    let mut text = String::new();
    for (i, _) in memory_ratios.iter().enumerate() {
        let start = i as u32 * per;
        let end = if i + 1 == memory_ratios.len() {
            16383
        } else {
            start + per - 1
        };
        text.push_str(&format!(
            "p{i} 10.0.0.{i}:6379@16379 master - 0 0 {i} connected {start}-{end}\n"
        ));
        text.push_str(&format!(
            "r{i} 10.0.1.{i}:6379@16379 slave p{i} 0 0 {i} connected\n"
        ));
    }
    let nodes = ClusterNode::parse_nodes(&text).unwrap_or_default();
    let reports = nodes
        .iter()
        .map(|n| {
            let i: usize = n.id[1..].parse().unwrap_or(0);
            let used = (memory_ratios.get(i).copied().unwrap_or(0.0) * limit as f64) as u64;
            let role = if n.role == crate::stats::Role::Primary { "master" } else { "slave" };
            let info = format!(
                "role:{role}\r\nused_memory:{used}\r\nmaxmemory:{limit}\r\nconnected_clients:10\r\n\
                 instantaneous_ops_per_sec:{ops}\r\nkeyspace_hits:0\r\nkeyspace_misses:0\r\nevicted_keys:0\r\n\
                 db0:keys=1000,expires=0,avg_ttl=0\r\n"
            );
            crate::stats::NodeReport::from_result(n, NodeStats::parse_info(&n.addr, &info))
        })
        .collect();
    let info = ClusterInfo::parse(
        "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\n\
         cluster_slots_fail:0\r\ncluster_known_nodes:6\r\ncluster_size:3\r\n",
    )
    .ok();
    ClusterStats::new(reports, info, Timestamp::from_secs(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AdvisorConfig {
        AdvisorConfig {
            sustain: Duration::from_secs(60),
            cooldown: Duration::from_secs(600),
            ..AdvisorConfig::default()
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    fn stats_node_id(stats: &ClusterStats, addr: &str) -> String {
        stats
            .nodes
            .iter()
            .find(|n| n.node == addr)
            .unwrap()
            .id
            .clone()
    }

    #[test]
    fn default_config_is_valid_and_bad_config_is_named() {
        AdvisorConfig::default().validate().unwrap();
        let c = AdvisorConfig {
            memory_high: f64::NAN,
            ..AdvisorConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("memory_high")
        );
        let c = AdvisorConfig {
            memory_low: 0.9,
            ..AdvisorConfig::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn memory_pressure_uses_real_maxmemory_and_hysteresis() {
        // 85%, 70%, 75% of 4 GiB: total 9.2 GiB at a 60% target of 4 GiB → 4 primaries.
        let stats = example_stats(&[0.85, 0.70, 0.75], 100);
        let (r, s) = advise(&cfg(), &stats, &AdvisorState::default(), t(0));
        assert_eq!(r.action, ScalingAction::None);
        assert!(r.reason.contains("acting after"), "{}", r.reason);
        let (r, s2) = advise(&cfg(), &stats, &s, t(30));
        assert_eq!(r.action, ScalingAction::None);
        let (r, s3) = advise(&cfg(), &stats, &s2, t(60));
        assert_eq!(r.action, ScalingAction::ScaleOut { add: 1 });
        assert_eq!((r.current_primaries, r.target_primaries), (3, 4));
        assert!(
            r.reason.contains("85%") && r.reason.contains("4294967296"),
            "{}",
            r.reason
        );
        assert_eq!(r.steps.len(), 3, "{:?}", r.steps); // node, its replica, rebalance
        assert!(r.steps[1].contains("--cluster-slave"));
        assert!(r.steps[2].contains("--cluster-use-empty-masters"));
        // Cooldown: the same pressure right after is not advised again.
        let (r, _) = advise(&cfg(), &stats, &s3, t(200));
        assert_eq!(r.action, ScalingAction::None);
        assert!(r.reason.starts_with("cooldown"), "{}", r.reason);
    }

    #[test]
    fn a_blip_resets_the_hysteresis() {
        let hot = example_stats(&[0.9, 0.5, 0.5], 100);
        let calm = example_stats(&[0.5, 0.5, 0.5], 100);
        let (_, s) = advise(&cfg(), &hot, &AdvisorState::default(), t(0));
        let (_, s) = advise(&cfg(), &calm, &s, t(30));
        let (r, _) = advise(&cfg(), &hot, &s, t(70));
        assert_eq!(r.action, ScalingAction::None, "pressure restarted at t=70");
    }

    #[test]
    fn ops_pressure_scales_out() {
        let stats = example_stats(&[0.2, 0.2, 0.2], 15_000);
        let (_, s) = advise(&cfg(), &stats, &AdvisorState::default(), t(0));
        let (r, _) = advise(&cfg(), &stats, &s, t(60));
        // 45,000 ops/sec at 6,000 per primary → 8 primaries.
        assert_eq!(r.action, ScalingAction::ScaleOut { add: 5 });
        assert!(r.reason.starts_with("ops pressure"), "{}", r.reason);
    }

    #[test]
    fn scale_in_only_above_the_minimum() {
        let three = example_stats(&[0.05, 0.05, 0.05], 10);
        let (_, s) = advise(&cfg(), &three, &AdvisorState::default(), t(0));
        let (r, _) = advise(&cfg(), &three, &s, t(120));
        assert_eq!(r.action, ScalingAction::None, "3 is the minimum");
        let six = example_stats(&[0.05; 6], 10);
        let (_, s) = advise(&cfg(), &six, &AdvisorState::default(), t(0));
        let (r, _) = advise(&cfg(), &six, &s, t(120));
        assert_eq!(r.action, ScalingAction::ScaleIn { remove: 3 });
        assert!(r.steps[0].contains("--cluster-weight") && r.steps[0].contains("=0"));
        assert_eq!(
            r.steps.iter().filter(|s| s.contains("del-node")).count(),
            6,
            "3 primaries + their replicas"
        );
        // The same nodes, by address, for the scaling executor.
        assert_eq!(r.leaving.len(), 6, "{:?}", r.leaving);
        for a in &r.leaving {
            let id = &stats_node_id(&six, a);
            assert!(r.steps.iter().any(|s| s.ends_with(id.as_str())), "{a}");
        }
    }

    #[test]
    fn an_invalid_config_does_not_panic() {
        let inverted = AdvisorConfig {
            min_primaries: 10,
            max_primaries: 2,
            ..cfg()
        };
        assert!(inverted.validate().is_err());
        let stats = example_stats(&[0.95, 0.95, 0.95], 100);
        let (_, s) = advise(&inverted, &stats, &AdvisorState::default(), t(0));
        let (r, _) = advise(&inverted, &stats, &s, t(60));
        assert!(r.target_primaries <= 10, "{r:?}");
    }

    #[test]
    fn slot_skew_advises_rebalance() {
        let mut stats = example_stats(&[0.4, 0.4, 0.4], 100);
        let p: Vec<usize> = stats
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.slots > 0)
            .map(|(i, _)| i)
            .collect();
        stats.nodes[p[0]].slots = 12000;
        stats.nodes[p[1]].slots = 2192;
        stats.nodes[p[2]].slots = 2192;
        let (_, s) = advise(&cfg(), &stats, &AdvisorState::default(), t(0));
        let (r, _) = advise(&cfg(), &stats, &s, t(60));
        assert_eq!(r.action, ScalingAction::Rebalance);
        assert_eq!(r.skew, Some(SkewKind::Slots));
        assert!(r.reason.starts_with("slots skew"), "{}", r.reason);
        assert!(r.steps[0].starts_with("redis-cli --cluster rebalance"));
    }
}
