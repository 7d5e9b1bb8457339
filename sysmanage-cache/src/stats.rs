//! Node and cluster statistics, parsed from `INFO`, `CLUSTER INFO` and
//! `CLUSTER NODES` into typed fields.
//!
//! Parsing is pure, so the same code reads a live server and a recorded
//! reply in tests. [`ClusterStats`] computes the healthy-node ratio and the
//! health levels SysManage uses (healthy ≥ 0.9, degraded ≥ 0.7, else
//! critical), over primaries *and* replicas, and marks the cluster critical
//! whenever `CLUSTER INFO` does not report `cluster_state:ok`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sysmanage_core::Timestamp;

use crate::error::{CacheError, Result};

/// A node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// Serves slots (`role:master`).
    Primary,
    /// Replicates a primary (`role:slave`).
    Replica,
}

fn info_fields(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .collect()
}

fn num<T: std::str::FromStr>(fields: &HashMap<&str, &str>, name: &'static str) -> Result<T> {
    let raw = fields
        .get(name)
        .ok_or_else(|| CacheError::invalid("info", format!("field {name} missing")))?;
    raw.trim()
        .parse()
        .map_err(|_| CacheError::invalid("info", format!("field {name} is not a number: {raw:?}")))
}

fn num_or<T: std::str::FromStr>(
    fields: &HashMap<&str, &str>,
    name: &'static str,
    default: T,
) -> Result<T> {
    if fields.contains_key(name) {
        num(fields, name)
    } else {
        Ok(default)
    }
}

/// One node's figures from `INFO`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeStats {
    /// The node, `host:port`.
    pub node: String,
    /// `role`.
    pub role: Role,
    /// `used_memory`, bytes.
    pub used_memory: u64,
    /// `maxmemory`, bytes; 0 means no limit is configured.
    pub maxmemory: u64,
    /// `total_system_memory`, bytes (0 when not reported).
    pub total_system_memory: u64,
    /// Keys in `db0` (`keys=` of the `# Keyspace` section; 0 when empty).
    pub keys: u64,
    /// Keys with an expiry in `db0`.
    pub expires: u64,
    /// `connected_clients`.
    pub clients: u64,
    /// `instantaneous_ops_per_sec`.
    pub ops_per_sec: u64,
    /// `keyspace_hits`.
    pub hits: u64,
    /// `keyspace_misses`.
    pub misses: u64,
    /// `evicted_keys`.
    pub evictions: u64,
    /// `expired_keys`.
    pub expired: u64,
    /// `uptime_in_seconds`.
    pub uptime_secs: u64,
}

impl NodeStats {
    /// Parses the reply of `INFO` (all default sections).
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] naming a missing or malformed field.
    ///
    /// ```
    /// use sysmanage_cache::stats::{NodeStats, Role};
    /// let info = "# Server\r\nuptime_in_seconds:10\r\n# Clients\r\nconnected_clients:3\r\n\
    ///             # Memory\r\nused_memory:1048576\r\nmaxmemory:4194304\r\n\
    ///             # Stats\r\ninstantaneous_ops_per_sec:120\r\nkeyspace_hits:9\r\n\
    ///             keyspace_misses:1\r\nevicted_keys:0\r\nexpired_keys:2\r\n\
    ///             # Replication\r\nrole:master\r\n# Keyspace\r\ndb0:keys=42,expires=5,avg_ttl=0\r\n";
    /// let s = NodeStats::parse_info("127.0.0.1:7000", info).unwrap();
    /// assert_eq!((s.role, s.keys, s.memory_ratio()), (Role::Primary, 42, Some(0.25)));
    /// ```
    pub fn parse_info(node: &str, text: &str) -> Result<Self> {
        let f = info_fields(text);
        let role = match f.get("role").map(|r| r.trim()) {
            Some("master") => Role::Primary,
            Some("slave") => Role::Replica,
            other => {
                return Err(CacheError::invalid(
                    "info",
                    format!("unknown role {other:?}"),
                ));
            }
        };
        let (mut keys, mut expires) = (0, 0);
        if let Some(db0) = f.get("db0") {
            for part in db0.split(',') {
                match part.split_once('=') {
                    Some(("keys", v)) => {
                        keys = v
                            .trim()
                            .parse()
                            .map_err(|_| CacheError::invalid("info", "db0 keys is not a number"))?
                    }
                    Some(("expires", v)) => {
                        expires = v.trim().parse().map_err(|_| {
                            CacheError::invalid("info", "db0 expires is not a number")
                        })?
                    }
                    _ => {}
                }
            }
        }
        Ok(Self {
            node: node.to_owned(),
            role,
            used_memory: num(&f, "used_memory")?,
            maxmemory: num_or(&f, "maxmemory", 0)?,
            total_system_memory: num_or(&f, "total_system_memory", 0)?,
            keys,
            expires,
            clients: num(&f, "connected_clients")?,
            ops_per_sec: num(&f, "instantaneous_ops_per_sec")?,
            hits: num(&f, "keyspace_hits")?,
            misses: num(&f, "keyspace_misses")?,
            evictions: num(&f, "evicted_keys")?,
            expired: num_or(&f, "expired_keys", 0)?,
            uptime_secs: num_or(&f, "uptime_in_seconds", 0)?,
        })
    }

    /// The memory this node may use: `maxmemory`, or the machine's memory
    /// when no `maxmemory` is set, or `None` when neither is known.
    pub fn memory_limit(&self) -> Option<u64> {
        [self.maxmemory, self.total_system_memory]
            .into_iter()
            .find(|&m| m > 0)
    }

    /// `used_memory / memory_limit()`.
    pub fn memory_ratio(&self) -> Option<f64> {
        self.memory_limit()
            .map(|m| self.used_memory as f64 / m as f64)
    }

    /// `hits / (hits + misses)`, `None` before the first read.
    pub fn hit_ratio(&self) -> Option<f64> {
        let total = self.hits + self.misses;
        (total > 0).then(|| self.hits as f64 / total as f64)
    }
}

/// The reply of `CLUSTER INFO`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClusterInfo {
    /// `cluster_state:ok`.
    pub state_ok: bool,
    /// `cluster_slots_assigned`.
    pub slots_assigned: u32,
    /// `cluster_slots_ok`.
    pub slots_ok: u32,
    /// `cluster_slots_pfail`.
    pub slots_pfail: u32,
    /// `cluster_slots_fail`.
    pub slots_fail: u32,
    /// `cluster_known_nodes`.
    pub known_nodes: u32,
    /// `cluster_size`: primaries serving at least one slot.
    pub size: u32,
    /// `cluster_current_epoch`.
    pub current_epoch: u64,
}

impl ClusterInfo {
    /// Parses the reply of `CLUSTER INFO`.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] naming a missing or malformed field.
    pub fn parse(text: &str) -> Result<Self> {
        let f = info_fields(text);
        Ok(Self {
            state_ok: f.get("cluster_state").map(|s| s.trim()) == Some("ok"),
            slots_assigned: num(&f, "cluster_slots_assigned")?,
            slots_ok: num(&f, "cluster_slots_ok")?,
            slots_pfail: num(&f, "cluster_slots_pfail")?,
            slots_fail: num(&f, "cluster_slots_fail")?,
            known_nodes: num(&f, "cluster_known_nodes")?,
            size: num(&f, "cluster_size")?,
            current_epoch: num_or(&f, "cluster_current_epoch", 0)?,
        })
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClusterNode {
    /// The 40-character node id.
    pub id: String,
    /// `host:port` (cluster bus port and hostname removed).
    pub addr: String,
    /// Primary or replica.
    pub role: Role,
    /// For a replica, its primary's id.
    pub primary_id: Option<String>,
    /// Flagged `fail` or `fail?` by the cluster.
    pub failing: bool,
    /// Whether the cluster bus link is `connected`.
    pub connected: bool,
    /// Slot ranges served (inclusive); migrating/importing markers skipped.
    pub slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    /// Parses the reply of `CLUSTER NODES`; nodes without an address
    /// (`:0`, a node that was never reached) are skipped.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] for a malformed line.
    ///
    /// ```
    /// use sysmanage_cache::stats::{ClusterNode, Role};
    /// let text = "07c3 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
    ///             e5a1 127.0.0.1:7003@17003 slave 07c3 0 1700000000000 1 connected\n";
    /// let nodes = ClusterNode::parse_nodes(text).unwrap();
    /// assert_eq!(nodes[0].slot_count(), 5461);
    /// assert_eq!(nodes[1].role, Role::Replica);
    /// assert_eq!(nodes[1].primary_id.as_deref(), Some("07c3"));
    /// ```
    pub fn parse_nodes(text: &str) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() < 8 {
                return Err(CacheError::invalid(
                    "cluster nodes",
                    format!("short line {line:?}"),
                ));
            }
            let addr = parts[1].split(['@', ',']).next().unwrap_or("");
            if addr.is_empty() || addr.ends_with(":0") {
                continue;
            }
            let flags: Vec<&str> = parts[2].split(',').collect();
            let role = if flags.contains(&"master") {
                Role::Primary
            } else if flags.contains(&"slave") {
                Role::Replica
            } else {
                continue; // handshake / noaddr nodes
            };
            let mut slots = Vec::new();
            for s in &parts[8..] {
                if s.starts_with('[') {
                    continue;
                }
                let (a, b) = s.split_once('-').unwrap_or((s, s));
                match (a.parse(), b.parse()) {
                    (Ok(a), Ok(b)) => slots.push((a, b)),
                    _ => {
                        return Err(CacheError::invalid(
                            "cluster nodes",
                            format!("bad slot range {s:?}"),
                        ));
                    }
                }
            }
            out.push(Self {
                id: parts[0].to_owned(),
                addr: addr.to_owned(),
                role,
                primary_id: (parts[3] != "-").then(|| parts[3].to_owned()),
                failing: flags.iter().any(|f| *f == "fail" || *f == "fail?"),
                connected: parts[7] == "connected",
                slots,
            });
        }
        Ok(out)
    }

    /// Number of slots served.
    pub fn slot_count(&self) -> u32 {
        self.slots
            .iter()
            .map(|&(a, b)| u32::from(b.saturating_sub(a)) + 1)
            .sum()
    }
}

/// One node in a [`ClusterStats`]: its identity and either its stats or why
/// they could not be read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeReport {
    /// `host:port`.
    pub node: String,
    /// Node id from `CLUSTER NODES`.
    pub id: String,
    /// Role from `CLUSTER NODES`.
    pub role: Role,
    /// For a replica, its primary's id.
    pub primary_id: Option<String>,
    /// Slots served.
    pub slots: u32,
    /// The stats, when the node answered.
    pub stats: Option<NodeStats>,
    /// Why the node is counted unhealthy, when it is.
    pub error: Option<String>,
}

impl NodeReport {
    /// A report for `node` from the outcome of reading its `INFO`.
    pub fn from_result(node: &ClusterNode, res: Result<NodeStats>) -> Self {
        let (stats, mut error) = match res {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(error_chain(&e))),
        };
        if node.failing && error.is_none() {
            error = Some("flagged failing by the cluster".to_owned());
        }
        Self {
            node: node.addr.clone(),
            id: node.id.clone(),
            role: node.role,
            primary_id: node.primary_id.clone(),
            slots: node.slot_count(),
            stats,
            error,
        }
    }

    /// Answered `INFO` and is not flagged failing.
    pub fn is_healthy(&self) -> bool {
        self.stats.is_some() && self.error.is_none()
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Cluster health from the healthy-node ratio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClusterHealth {
    /// Ratio ≥ 0.9 and `cluster_state:ok`.
    Healthy,
    /// 0.7 ≤ ratio < 0.9.
    Degraded,
    /// Ratio < 0.7, or the cluster reports a state other than `ok`.
    Critical,
}

impl ClusterHealth {
    /// SysManage's thresholds: healthy ≥ 0.9, degraded ≥ 0.7, else critical
    /// (NaN is critical).
    pub fn from_ratio(ratio: f64) -> Self {
        if ratio >= 0.9 {
            Self::Healthy
        } else if ratio >= 0.7 {
            Self::Degraded
        } else {
            Self::Critical
        }
    }
}

/// A snapshot of every node and the cluster, for dashboards and the
/// [scaling advisor](crate::advisor).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Every known node, primaries and replicas.
    pub nodes: Vec<NodeReport>,
    /// `CLUSTER INFO`, when a node answered it.
    pub cluster: Option<ClusterInfo>,
    /// Nodes that answered and are not failing.
    pub healthy_nodes: usize,
    /// Nodes known.
    pub total_nodes: usize,
    /// `healthy_nodes / total_nodes` (0 when no node is known).
    pub health_ratio: f64,
    /// Health level.
    pub health: ClusterHealth,
    /// When the snapshot was taken.
    pub taken_at: Timestamp,
}

impl ClusterStats {
    /// Assembles a snapshot and computes the health figures.
    pub fn new(nodes: Vec<NodeReport>, cluster: Option<ClusterInfo>, taken_at: Timestamp) -> Self {
        let total = nodes.len();
        let healthy = nodes.iter().filter(|n| n.is_healthy()).count();
        let ratio = if total == 0 {
            0.0
        } else {
            healthy as f64 / total as f64
        };
        let mut health = ClusterHealth::from_ratio(ratio);
        if cluster.as_ref().is_none_or(|c| !c.state_ok) {
            health = ClusterHealth::Critical;
        }
        Self {
            nodes,
            cluster,
            healthy_nodes: healthy,
            total_nodes: total,
            health_ratio: ratio,
            health,
            taken_at,
        }
    }

    /// Primaries that serve at least one slot.
    pub fn primaries(&self) -> impl Iterator<Item = &NodeReport> {
        self.nodes
            .iter()
            .filter(|n| n.role == Role::Primary && n.slots > 0)
    }

    /// Replicas.
    pub fn replicas(&self) -> impl Iterator<Item = &NodeReport> {
        self.nodes.iter().filter(|n| n.role == Role::Replica)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:1234\r\n\r\n# Clients\r\nconnected_clients:7\r\n\r\n# Memory\r\nused_memory:2000000\r\nused_memory_human:1.91M\r\ntotal_system_memory:8000000000\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n\r\n# Stats\r\ninstantaneous_ops_per_sec:350\r\nkeyspace_hits:80\r\nkeyspace_misses:20\r\nevicted_keys:3\r\nexpired_keys:4\r\n\r\n# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\n\r\n# Keyspace\r\ndb0:keys=1000,expires=10,avg_ttl=500\r\n";

    #[test]
    fn parses_info_fields() {
        let s = NodeStats::parse_info("n:1", INFO).unwrap();
        assert_eq!(s.role, Role::Replica);
        assert_eq!((s.used_memory, s.maxmemory), (2_000_000, 0));
        assert_eq!(
            s.memory_limit(),
            Some(8_000_000_000),
            "falls back to system memory"
        );
        assert_eq!(
            (s.keys, s.expires, s.clients, s.ops_per_sec),
            (1000, 10, 7, 350)
        );
        assert_eq!((s.hits, s.misses, s.evictions, s.expired), (80, 20, 3, 4));
        assert_eq!(s.hit_ratio(), Some(0.8));
    }

    #[test]
    fn malformed_info_is_a_typed_error() {
        let err = NodeStats::parse_info("n:1", "role:master\r\nused_memory:abc\r\n").unwrap_err();
        assert!(err.to_string().contains("used_memory"), "{err}");
        assert!(NodeStats::parse_info("n:1", "").is_err());
        let empty_db = INFO.replace("db0:keys=1000,expires=10,avg_ttl=500\r\n", "");
        assert_eq!(NodeStats::parse_info("n:1", &empty_db).unwrap().keys, 0);
    }

    #[test]
    fn parses_cluster_info_and_nodes() {
        let ci = ClusterInfo::parse("cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:6\r\ncluster_size:3\r\ncluster_current_epoch:6\r\n").unwrap();
        assert!(ci.state_ok);
        assert_eq!((ci.known_nodes, ci.size), (6, 3));
        let nodes = ClusterNode::parse_nodes(
            "a1 127.0.0.1:7000@17000,host myself,master - 0 0 1 connected 0-5460 [5461->-b2]\n\
             b2 127.0.0.1:7001@17001 master,fail - 1 2 2 disconnected 5461-10922\n\
             c3 127.0.0.1:7002@17002 master - 0 0 3 connected 10923 10924-16383\n\
             d4 127.0.0.1:7003@17003 slave a1 0 0 1 connected\n\
             e5 :0@0 master,noaddr - 0 0 0 disconnected\n",
        )
        .unwrap();
        assert_eq!(nodes.len(), 4);
        assert_eq!(nodes[0].addr, "127.0.0.1:7000");
        assert!(nodes[1].failing && !nodes[1].connected);
        assert_eq!(nodes[2].slot_count(), 5461);
        assert_eq!(nodes[3].primary_id.as_deref(), Some("a1"));
    }

    #[test]
    fn health_thresholds_follow_sysmanage() {
        assert_eq!(ClusterHealth::from_ratio(1.0), ClusterHealth::Healthy);
        assert_eq!(ClusterHealth::from_ratio(0.9), ClusterHealth::Healthy);
        assert_eq!(
            ClusterHealth::from_ratio(5.0 / 6.0),
            ClusterHealth::Degraded
        );
        assert_eq!(ClusterHealth::from_ratio(0.7), ClusterHealth::Degraded);
        assert_eq!(
            ClusterHealth::from_ratio(4.0 / 6.0),
            ClusterHealth::Critical
        );
        assert_eq!(ClusterHealth::from_ratio(f64::NAN), ClusterHealth::Critical);
    }
}
