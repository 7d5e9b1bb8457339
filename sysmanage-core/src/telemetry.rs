//! Metrics export through the [`metrics`] facade.
//!
//! Every sysmanage crate records its counters, gauges and histograms with
//! the `metrics` crate's macros; nothing is exported until the host installs
//! a recorder (`metrics-exporter-prometheus`, an OpenTelemetry bridge,
//! statsd…). Without a recorder, recording costs a load and a branch.
//!
//! Names follow Prometheus conventions: a `sysmanage_` prefix and the
//! crate's area, base units in the name (`_seconds`, `_bytes`), `_total` on
//! counters. Labels have bounded cardinality: node names and addresses,
//! shard numbers, operations, reasons — never a key or a query. Each crate
//! lists its metrics as a `&[MetricDef]` (`sysmanage_db::telemetry::METRICS`,
//! `sysmanage_cache::telemetry::METRICS`, …), which [`describe`] hands to
//! the recorder as help texts and units.
//!
//! **Install the recorder before you build routers, caches and
//! controllers.** Per-node handles are registered once, when a node is
//! added, so the hot path only bumps an atomic; handles registered before a
//! recorder exists stay no-ops.
//!
//! ```
//! use sysmanage_core::telemetry::{MetricDef, MetricKind, describe};
//!
//! const METRICS: &[MetricDef] = &[MetricDef {
//!     name: "sysmanage_example_requests_total",
//!     kind: MetricKind::Counter,
//!     labels: &["node"],
//!     help: "Requests sent to a node.",
//! }];
//! assert!(METRICS[0].is_well_formed());
//! describe(METRICS); // a no-op until a recorder is installed
//! ```

use std::fmt;

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Only ever goes up (`_total`).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution of observations (exported as a histogram or a summary,
    /// as the recorder chooses).
    Histogram,
}

impl MetricKind {
    /// `"counter"`, `"gauge"` or `"histogram"`.
    pub fn label(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One exported metric: its stable name, kind, label names and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MetricDef {
    /// The metric's name, e.g. `sysmanage_cache_operations_total`.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The label names every series of the metric carries.
    pub labels: &'static [&'static str],
    /// What it measures (the exporter's help text).
    pub help: &'static str,
}

impl MetricDef {
    /// A metric definition (for the crates' `const` lists).
    pub const fn new(
        name: &'static str,
        kind: MetricKind,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        MetricDef {
            name,
            kind,
            labels,
            help,
        }
    }

    /// The unit implied by the name's suffix: seconds, bytes or none.
    pub fn unit(&self) -> Option<metrics::Unit> {
        let base = self.name.strip_suffix("_total").unwrap_or(self.name);
        if base.ends_with("_seconds") {
            Some(metrics::Unit::Seconds)
        } else if base.ends_with("_bytes") {
            Some(metrics::Unit::Bytes)
        } else {
            None
        }
    }

    /// Whether the name follows the conventions above: the `sysmanage_`
    /// prefix, `[a-z0-9_]` only, `_total` exactly on counters, and label
    /// names that are valid and not reserved (`le`, `quantile`, `__…`).
    pub fn is_well_formed(&self) -> bool {
        let valid = |s: &str| {
            !s.is_empty()
                && !s.starts_with(|c: char| c.is_ascii_digit())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        let counter_suffix = self.name.ends_with("_total") == (self.kind == MetricKind::Counter);
        self.name.starts_with("sysmanage_")
            && valid(self.name)
            && counter_suffix
            && !self.help.is_empty()
            && self
                .labels
                .iter()
                .all(|l| valid(l) && !l.starts_with("__") && *l != "le" && *l != "quantile")
    }
}

/// Checks a crate's list: every definition well formed
/// ([`MetricDef::is_well_formed`]), names unique, and each listed in
/// `docs` (the crate's module docs) as a table row starting
/// `` | `name` | kind | ``.
///
/// # Errors
/// A message naming the first offending metric.
pub fn check(defs: &[MetricDef], docs: &str) -> Result<(), String> {
    for (i, d) in defs.iter().enumerate() {
        if !d.is_well_formed() {
            return Err(format!("{} is not well formed", d.name));
        }
        if defs[..i].iter().any(|o| o.name == d.name) {
            return Err(format!("{} is listed twice", d.name));
        }
        if !docs.contains(&format!("| `{}` | {} |", d.name, d.kind)) {
            return Err(format!("{} is missing from the docs table", d.name));
        }
    }
    Ok(())
}

/// Hands the help text and unit of each metric to the installed recorder
/// (`describe_counter!` and friends). Call it once after installing the
/// recorder; a no-op without one.
pub fn describe(defs: &[MetricDef]) {
    for d in defs {
        let help = metrics::SharedString::const_str(d.help);
        match (d.kind, d.unit()) {
            (MetricKind::Counter, Some(u)) => metrics::describe_counter!(d.name, u, help),
            (MetricKind::Counter, None) => metrics::describe_counter!(d.name, help),
            (MetricKind::Gauge, Some(u)) => metrics::describe_gauge!(d.name, u, help),
            (MetricKind::Gauge, None) => metrics::describe_gauge!(d.name, help),
            (MetricKind::Histogram, Some(u)) => metrics::describe_histogram!(d.name, u, help),
            (MetricKind::Histogram, None) => metrics::describe_histogram!(d.name, help),
        }
    }
}

/// Renders `defs` as a Markdown table (name, kind, labels, meaning), the
/// form the crates' docs list them in.
pub fn markdown_table(defs: &[MetricDef]) -> String {
    let mut out = String::from("| metric | kind | labels | meaning |\n|---|---|---|---|\n");
    for d in defs {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            d.name,
            d.kind,
            d.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", "),
            d.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_names() {
        let ok = MetricDef {
            name: "sysmanage_x_latency_seconds",
            kind: MetricKind::Histogram,
            labels: &["node"],
            help: "h",
        };
        assert!(ok.is_well_formed());
        assert_eq!(ok.unit(), Some(metrics::Unit::Seconds));
        let counter_without_total = MetricDef {
            kind: MetricKind::Counter,
            ..ok
        };
        assert!(!counter_without_total.is_well_formed());
        let reserved = MetricDef {
            labels: &["le"],
            ..ok
        };
        assert!(!reserved.is_well_formed());
        let upper = MetricDef {
            name: "sysmanage_X_seconds",
            ..ok
        };
        assert!(!upper.is_well_formed());
        let no_prefix = MetricDef {
            name: "x_seconds",
            ..ok
        };
        assert!(!no_prefix.is_well_formed());
        assert!(
            markdown_table(&[ok])
                .contains("| `sysmanage_x_latency_seconds` | histogram | `node` | h |")
        );
    }
}
