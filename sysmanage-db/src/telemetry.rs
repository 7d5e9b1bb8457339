//! The metrics this crate exports through the [`metrics`] facade.
//!
//! Install a recorder (for example `metrics-exporter-prometheus`) **before**
//! building routers: per-node and per-shard handles are registered when a
//! node or shard is added, and handles registered before a recorder exists
//! stay no-ops. [`describe`] hands the help texts below to the recorder.
//!
//! | metric | kind | labels | meaning |
//! |---|---|---|---|
//! | `sysmanage_replica_reads_total` | counter | `node`, `consistency` | reads run on a node, by the consistency asked for (`any`, `bounded_staleness`, `at_least`, `primary`) |
//! | `sysmanage_replica_writes_total` | counter | `node` | writes run on the primary |
//! | `sysmanage_replica_query_duration_seconds` | histogram | `node`, `kind` | time the closure ran on a node (`kind`: `read` or `write`) |
//! | `sysmanage_replica_query_errors_total` | counter | `node`, `connection` | failed closures; `connection` is `true` for connection-level failures |
//! | `sysmanage_replica_retries_total` | counter | `node` | reads retried after a connection-level failure on `node` |
//! | `sysmanage_replica_fallbacks_total` | counter | `consistency` | reads that fell back to the primary because no replica qualified |
//! | `sysmanage_replica_bans_total` | counter | `node`, `reason` | bans (`not_probed`, `probe_failed`, `connection_error`, `query_errors`, `lag`) |
//! | `sysmanage_replica_unbans_total` | counter | `node`, `reason` | re-admissions (`probe_ok`, `lag`) |
//! | `sysmanage_replica_lag_bytes` | gauge | `node` | replay lag behind the primary in bytes, as last measured (absent until first known; it keeps its last value while the lag is unknown, e.g. during a ban: `ReplicaRouter::status` says when it is) |
//! | `sysmanage_replica_lag_seconds` | gauge | `node` | replay lag in seconds, as last measured (as above) |
//! | `sysmanage_replica_role_changes_total` | counter | — | primary changes the monitor applied |
//! | `sysmanage_shard_queries_total` | counter | `shard` | per-shard legs run (single-shard calls and fan-out legs) |
//! | `sysmanage_shard_failures_total` | counter | `shard`, `kind` | failed legs (`timeout` or `error`) |
//! | `sysmanage_shard_fan_out_duration_seconds` | histogram | — | wall time of a whole fan-out |
//! | `sysmanage_shard_fan_out_failed_shards_total` | counter | — | shards that failed inside fan-outs |

use metrics::{Counter, Gauge, Histogram};
use sysmanage_core::telemetry::{MetricDef, MetricKind};

/// Reads by node and consistency.
pub const REPLICA_READS: &str = "sysmanage_replica_reads_total";
/// Writes by node.
pub const REPLICA_WRITES: &str = "sysmanage_replica_writes_total";
/// Query latency by node and kind.
pub const REPLICA_QUERY_DURATION: &str = "sysmanage_replica_query_duration_seconds";
/// Failed closures by node.
pub const REPLICA_QUERY_ERRORS: &str = "sysmanage_replica_query_errors_total";
/// Read retries by node.
pub const REPLICA_RETRIES: &str = "sysmanage_replica_retries_total";
/// Fallbacks to the primary by consistency.
pub const REPLICA_FALLBACKS: &str = "sysmanage_replica_fallbacks_total";
/// Bans by node and reason.
pub const REPLICA_BANS: &str = "sysmanage_replica_bans_total";
/// Re-admissions by node and reason.
pub const REPLICA_UNBANS: &str = "sysmanage_replica_unbans_total";
/// Replay lag in bytes.
pub const REPLICA_LAG_BYTES: &str = "sysmanage_replica_lag_bytes";
/// Replay lag in seconds.
pub const REPLICA_LAG_SECONDS: &str = "sysmanage_replica_lag_seconds";
/// Primary changes.
pub const REPLICA_ROLE_CHANGES: &str = "sysmanage_replica_role_changes_total";
/// Shard legs by shard.
pub const SHARD_QUERIES: &str = "sysmanage_shard_queries_total";
/// Failed shard legs by shard and kind.
pub const SHARD_FAILURES: &str = "sysmanage_shard_failures_total";
/// Fan-out wall time.
pub const SHARD_FAN_OUT_DURATION: &str = "sysmanage_shard_fan_out_duration_seconds";
/// Shards failed inside fan-outs.
pub const SHARD_FAN_OUT_FAILED: &str = "sysmanage_shard_fan_out_failed_shards_total";

/// Every metric of this crate, with its labels and meaning.
pub const METRICS: &[MetricDef] = &[
    MetricDef::new(
        REPLICA_READS,
        MetricKind::Counter,
        &["node", "consistency"],
        "Reads run on a node, by the consistency asked for.",
    ),
    MetricDef::new(
        REPLICA_WRITES,
        MetricKind::Counter,
        &["node"],
        "Writes run on the primary.",
    ),
    MetricDef::new(
        REPLICA_QUERY_DURATION,
        MetricKind::Histogram,
        &["node", "kind"],
        "Time the closure ran on a node (kind: read or write).",
    ),
    MetricDef::new(
        REPLICA_QUERY_ERRORS,
        MetricKind::Counter,
        &["node", "connection"],
        "Failed closures; connection=true for connection-level failures.",
    ),
    MetricDef::new(
        REPLICA_RETRIES,
        MetricKind::Counter,
        &["node"],
        "Reads retried after a connection-level failure on the node.",
    ),
    MetricDef::new(
        REPLICA_FALLBACKS,
        MetricKind::Counter,
        &["consistency"],
        "Reads that fell back to the primary because no replica qualified.",
    ),
    MetricDef::new(
        REPLICA_BANS,
        MetricKind::Counter,
        &["node", "reason"],
        "Bans by reason (not_probed, probe_failed, connection_error, query_errors, lag).",
    ),
    MetricDef::new(
        REPLICA_UNBANS,
        MetricKind::Counter,
        &["node", "reason"],
        "Re-admissions by reason (probe_ok, lag).",
    ),
    MetricDef::new(
        REPLICA_LAG_BYTES,
        MetricKind::Gauge,
        &["node"],
        "Replay lag behind the primary in bytes.",
    ),
    MetricDef::new(
        REPLICA_LAG_SECONDS,
        MetricKind::Gauge,
        &["node"],
        "Replay lag behind the primary in seconds.",
    ),
    MetricDef::new(
        REPLICA_ROLE_CHANGES,
        MetricKind::Counter,
        &[],
        "Primary changes the monitor applied.",
    ),
    MetricDef::new(
        SHARD_QUERIES,
        MetricKind::Counter,
        &["shard"],
        "Per-shard legs run (single-shard calls and fan-out legs).",
    ),
    MetricDef::new(
        SHARD_FAILURES,
        MetricKind::Counter,
        &["shard", "kind"],
        "Failed shard legs (kind: timeout or error).",
    ),
    MetricDef::new(
        SHARD_FAN_OUT_DURATION,
        MetricKind::Histogram,
        &[],
        "Wall time of a whole fan-out.",
    ),
    MetricDef::new(
        SHARD_FAN_OUT_FAILED,
        MetricKind::Counter,
        &[],
        "Shards that failed inside fan-outs.",
    ),
];

/// Describes [`METRICS`] to the installed recorder.
pub fn describe() {
    sysmanage_core::telemetry::describe(METRICS);
}

/// The consistency labels, in the order of [`NodeMetrics::reads`].
const CONSISTENCIES: [&str; 4] = ["any", "bounded_staleness", "at_least", "primary"];

/// One replica-router node's handles, registered once.
pub(crate) struct NodeMetrics {
    reads: [Counter; 4],
    pub(crate) writes: Counter,
    pub(crate) read_seconds: Histogram,
    pub(crate) write_seconds: Histogram,
    pub(crate) connection_errors: Counter,
    pub(crate) query_errors: Counter,
    pub(crate) retries: Counter,
    pub(crate) lag_bytes: Gauge,
    pub(crate) lag_seconds: Gauge,
    node: String,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl NodeMetrics {
    pub(crate) fn new(node: &str) -> Self {
        let n = node.to_owned();
        let reads = CONSISTENCIES
            .map(|c| metrics::counter!(REPLICA_READS, "node" => n.clone(), "consistency" => c));
        NodeMetrics {
            reads,
            writes: metrics::counter!(REPLICA_WRITES, "node" => n.clone()),
            read_seconds: metrics::histogram!(REPLICA_QUERY_DURATION, "node" => n.clone(), "kind" => "read"),
            write_seconds: metrics::histogram!(REPLICA_QUERY_DURATION, "node" => n.clone(), "kind" => "write"),
            connection_errors: metrics::counter!(REPLICA_QUERY_ERRORS, "node" => n.clone(), "connection" => "true"),
            query_errors: metrics::counter!(REPLICA_QUERY_ERRORS, "node" => n.clone(), "connection" => "false"),
            retries: metrics::counter!(REPLICA_RETRIES, "node" => n.clone()),
            lag_bytes: metrics::gauge!(REPLICA_LAG_BYTES, "node" => n.clone()),
            lag_seconds: metrics::gauge!(REPLICA_LAG_SECONDS, "node" => n.clone()),
            node: n,
        }
    }

    /// The read counter for a consistency label.
    pub(crate) fn reads(&self, consistency: &'static str) -> &Counter {
        let i = CONSISTENCIES
            .iter()
            .position(|c| *c == consistency)
            .unwrap_or(0);
        &self.reads[i]
    }

    /// A failed closure.
    pub(crate) fn count_error(&self, connection: bool) {
        if connection {
            self.connection_errors.increment(1);
        } else {
            self.query_errors.increment(1);
        }
    }

    /// A ban (rare: registered on use).
    pub(crate) fn banned(&self, reason: &'static str) {
        metrics::counter!(REPLICA_BANS, "node" => self.node.clone(), "reason" => reason)
            .increment(1);
    }

    /// A re-admission (rare: registered on use).
    pub(crate) fn unbanned(&self, reason: &'static str) {
        metrics::counter!(REPLICA_UNBANS, "node" => self.node.clone(), "reason" => reason)
            .increment(1);
    }
}

/// One shard's handles, registered once.
#[derive(Debug)]
pub(crate) struct ShardMetrics {
    pub(crate) queries: Counter,
    pub(crate) timeouts: Counter,
    pub(crate) errors: Counter,
}

impl ShardMetrics {
    pub(crate) fn new(shard: u32) -> Self {
        let s = shard.to_string();
        ShardMetrics {
            queries: metrics::counter!(SHARD_QUERIES, "shard" => s.clone()),
            timeouts: metrics::counter!(SHARD_FAILURES, "shard" => s.clone(), "kind" => "timeout"),
            errors: metrics::counter!(SHARD_FAILURES, "shard" => s, "kind" => "error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions_and_the_docs_list_every_metric() {
        assert_eq!(
            sysmanage_core::telemetry::check(METRICS, include_str!("telemetry.rs")),
            Ok(())
        );
    }
}
