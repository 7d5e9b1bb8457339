//! The metrics this crate exports through the [`metrics`] facade.
//!
//! Install a recorder (for example `metrics-exporter-prometheus`) **before**
//! building caches: per-node handles are registered when a node's
//! connection is made and the tiered cache's when it is built; handles
//! registered before a recorder exists stay no-ops. [`describe`] hands the
//! help texts below to the recorder. Keys never appear in labels.
//!
//! | metric | kind | labels | meaning |
//! |---|---|---|---|
//! | `sysmanage_cache_operations_total` | counter | `node`, `result` | keys served by a Redis node: `hit` / `miss` for reads, `ok` for writes and other commands, `error` for failures |
//! | `sysmanage_cache_operation_duration_seconds` | histogram | `node` | time of a successful single-key command until its reply, redirections and retries included |
//! | `sysmanage_cache_redirections_total` | counter | `node`, `kind` | `MOVED` and `ASK` replies from a node (`kind`: `moved`, `ask`) |
//! | `sysmanage_cache_retries_total` | counter | `node` | commands re-sent after a transient error or a redirection from a node |
//! | `sysmanage_cache_topology_refreshes_total` | counter | `result` | `CLUSTER SLOTS` refreshes (`ok`, `error`) |
//! | `sysmanage_cache_topology_events_total` | counter | — | topology changes seen by refreshes (slots moved, nodes added or lost) |
//! | `sysmanage_tiered_l1_total` | counter | `result` | tiered cache local (L1) lookups: `hit`, `miss` |
//! | `sysmanage_tiered_invalidations_total` | counter | `source` | L1 invalidations: `tracking` and `local` count keys (a server invalidation message, a write through this cache); `flush` counts whole-L1 flushes (tracking (re)subscribed or lost, topology change, server flush, lagged messages, a requested flush) |
//! | `sysmanage_tiered_loads_total` | counter | `result` | loads of missing values through `get_or_load` (`ok`, `error`) |
//! | `sysmanage_tiered_coalesced_total` | counter | — | callers that waited for another caller's L2 read or load of the same key instead of running their own |

use metrics::{Counter, Histogram};
use sysmanage_core::telemetry::{MetricDef, MetricKind};

/// Keys served by node and result.
pub const CACHE_OPERATIONS: &str = "sysmanage_cache_operations_total";
/// Single-key command latency by node.
pub const CACHE_OPERATION_DURATION: &str = "sysmanage_cache_operation_duration_seconds";
/// MOVED/ASK replies by node.
pub const CACHE_REDIRECTIONS: &str = "sysmanage_cache_redirections_total";
/// Re-sent commands by node.
pub const CACHE_RETRIES: &str = "sysmanage_cache_retries_total";
/// Topology refreshes by result.
pub const CACHE_TOPOLOGY_REFRESHES: &str = "sysmanage_cache_topology_refreshes_total";
/// Topology changes seen.
pub const CACHE_TOPOLOGY_EVENTS: &str = "sysmanage_cache_topology_events_total";
/// L1 lookups by result.
pub const TIERED_L1: &str = "sysmanage_tiered_l1_total";
/// L1 invalidations by source.
pub const TIERED_INVALIDATIONS: &str = "sysmanage_tiered_invalidations_total";
/// Loads by result.
pub const TIERED_LOADS: &str = "sysmanage_tiered_loads_total";
/// Coalesced waiters.
pub const TIERED_COALESCED: &str = "sysmanage_tiered_coalesced_total";

/// Every metric of this crate, with its labels and meaning.
pub const METRICS: &[MetricDef] = &[
    MetricDef::new(
        CACHE_OPERATIONS,
        MetricKind::Counter,
        &["node", "result"],
        "Keys served by a Redis node: hit/miss for reads, ok for other commands, error for failures.",
    ),
    MetricDef::new(
        CACHE_OPERATION_DURATION,
        MetricKind::Histogram,
        &["node"],
        "Time of a successful single-key command until its reply, redirections and retries included.",
    ),
    MetricDef::new(
        CACHE_REDIRECTIONS,
        MetricKind::Counter,
        &["node", "kind"],
        "MOVED and ASK replies from a node.",
    ),
    MetricDef::new(
        CACHE_RETRIES,
        MetricKind::Counter,
        &["node"],
        "Commands re-sent after a transient error or a redirection from a node.",
    ),
    MetricDef::new(
        CACHE_TOPOLOGY_REFRESHES,
        MetricKind::Counter,
        &["result"],
        "CLUSTER SLOTS refreshes by result (ok, error).",
    ),
    MetricDef::new(
        CACHE_TOPOLOGY_EVENTS,
        MetricKind::Counter,
        &[],
        "Topology changes seen by refreshes.",
    ),
    MetricDef::new(
        TIERED_L1,
        MetricKind::Counter,
        &["result"],
        "Tiered cache local (L1) lookups by result (hit, miss).",
    ),
    MetricDef::new(
        TIERED_INVALIDATIONS,
        MetricKind::Counter,
        &["source"],
        "L1 invalidations: keys (source tracking or local) and whole-L1 flushes (source flush).",
    ),
    MetricDef::new(
        TIERED_LOADS,
        MetricKind::Counter,
        &["result"],
        "Loads of missing values through get_or_load (ok, error).",
    ),
    MetricDef::new(
        TIERED_COALESCED,
        MetricKind::Counter,
        &[],
        "Callers that waited for another caller's L2 read or load of the same key.",
    ),
];

/// Describes [`METRICS`] to the installed recorder.
pub fn describe() {
    sysmanage_core::telemetry::describe(METRICS);
}

/// One Redis node's handles, registered with its connection.
#[cfg(feature = "redis")]
#[derive(Debug)]
pub(crate) struct NodeMetrics {
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) ok: Counter,
    pub(crate) errors: Counter,
    pub(crate) duration: Histogram,
    pub(crate) moved: Counter,
    pub(crate) ask: Counter,
    pub(crate) retries: Counter,
}

#[cfg(feature = "redis")]
impl NodeMetrics {
    pub(crate) fn new(node: &str) -> Self {
        let n = || node.to_owned();
        NodeMetrics {
            hits: metrics::counter!(CACHE_OPERATIONS, "node" => n(), "result" => "hit"),
            misses: metrics::counter!(CACHE_OPERATIONS, "node" => n(), "result" => "miss"),
            ok: metrics::counter!(CACHE_OPERATIONS, "node" => n(), "result" => "ok"),
            errors: metrics::counter!(CACHE_OPERATIONS, "node" => n(), "result" => "error"),
            duration: metrics::histogram!(CACHE_OPERATION_DURATION, "node" => n()),
            moved: metrics::counter!(CACHE_REDIRECTIONS, "node" => n(), "kind" => "moved"),
            ask: metrics::counter!(CACHE_REDIRECTIONS, "node" => n(), "kind" => "ask"),
            retries: metrics::counter!(CACHE_RETRIES, "node" => n()),
        }
    }
}

/// Counts `n` keys that failed for good on `node` (after retries), also
/// when no connection to it could be made (registered per event: rare).
#[cfg(feature = "redis")]
pub(crate) fn count_failures(node: &str, n: u64) {
    metrics::counter!(CACHE_OPERATIONS, "node" => node.to_owned(), "result" => "error")
        .increment(n);
}

/// A tiered cache's handles, registered when it is built.
#[derive(Debug)]
pub(crate) struct TieredMetrics {
    pub(crate) l1_hits: Counter,
    pub(crate) l1_misses: Counter,
    pub(crate) invalidated_tracking: Counter,
    pub(crate) invalidated_flush: Counter,
    pub(crate) invalidated_local: Counter,
    pub(crate) loads_ok: Counter,
    pub(crate) loads_failed: Counter,
    pub(crate) coalesced: Counter,
}

impl TieredMetrics {
    pub(crate) fn new() -> Self {
        TieredMetrics {
            l1_hits: metrics::counter!(TIERED_L1, "result" => "hit"),
            l1_misses: metrics::counter!(TIERED_L1, "result" => "miss"),
            invalidated_tracking: metrics::counter!(TIERED_INVALIDATIONS, "source" => "tracking"),
            invalidated_flush: metrics::counter!(TIERED_INVALIDATIONS, "source" => "flush"),
            invalidated_local: metrics::counter!(TIERED_INVALIDATIONS, "source" => "local"),
            loads_ok: metrics::counter!(TIERED_LOADS, "result" => "ok"),
            loads_failed: metrics::counter!(TIERED_LOADS, "result" => "error"),
            coalesced: metrics::counter!(TIERED_COALESCED),
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
