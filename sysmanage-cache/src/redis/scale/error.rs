//! The scaling executor's errors.

use std::time::Duration;

use crate::error::{CacheError, SharedError};

/// Errors of the scaling executor ([`Scaler`](super::Scaler)).
///
/// Every error leaves the data where it was: a key is deleted from its
/// source only after its target acknowledged it (that is `MIGRATE`'s
/// contract), so a failed run never loses a key. Where a slot was left open
/// (`MIGRATING`/`IMPORTING`), the error says so and rerunning
/// [`Scaler::execute`](super::Scaler::execute) finishes it.
///
/// Messages name slots, nodes and sizes but never key bytes (as
/// [`CacheError`] does); the key of a key-specific error is in its `key`
/// field.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ScaleError {
    /// The target asks for something the cluster cannot do (an address
    /// that is not `host:port`, a node both added and removed, no primary
    /// left, a weight out of range, …).
    #[error("invalid scaling target: {0}")]
    InvalidTarget(String),
    /// A node to add cannot join: unreachable, not cluster-enabled, a
    /// member of another cluster, or holding data or slots.
    #[error("node {node} cannot join the cluster: {reason}")]
    NodeNotJoinable {
        /// The node, `host:port`.
        node: String,
        /// Why.
        reason: String,
    },
    /// The cluster is in a state the executor does not act on (a slot no
    /// node serves, gossip that does not converge in time, a half-migrated
    /// slot whose nodes are gone).
    #[error("cluster state: {0}")]
    ClusterState(String),
    /// A key is larger than [`ScaleConfig::max_key_bytes`](super::ScaleConfig::max_key_bytes):
    /// moving it would block its source and target for too long. Found
    /// before its slot was opened, unless the key grew while the slot
    /// migrated (`slot_open` then says so). Nothing was moved for it.
    #[error(
        "a key of {bytes} bytes in slot {slot} exceeds the {limit}-byte limit for MIGRATE (slot left {})",
        if *.slot_open { "open; rerun to finish it" } else { "untouched" }
    )]
    BigKey {
        /// The slot.
        slot: u16,
        /// The key.
        key: Vec<u8>,
        /// Its `MEMORY USAGE`.
        bytes: u64,
        /// The configured limit.
        limit: u64,
        /// Whether the slot is left open (keys on both nodes).
        slot_open: bool,
    },
    /// `MIGRATE` found the key already on the target with different
    /// contents (`BUSYKEY`) and
    /// [`ScaleConfig::replace_busy_keys`](super::ScaleConfig::replace_busy_keys)
    /// is off. Both copies are kept; the slot is left open.
    #[error(
        "slot {slot}: a key exists on both {source_node} and {target} with different contents (BUSYKEY); slot left open"
    )]
    BusyKey {
        /// The slot.
        slot: u16,
        /// The key.
        key: Vec<u8>,
        /// The source node, `host:port`.
        source_node: String,
        /// The target node, `host:port`.
        target: String,
    },
    /// `MIGRATE` of a key timed out (the source's `IOERR`, or no reply in
    /// time) while the target still answers. The key stays on the source
    /// (or on both, identical); the slot is left open.
    #[error(
        "slot {slot}: MIGRATE of a key to {target} timed out after {timeout:?}; slot left open"
    )]
    MigrateTimeout {
        /// The slot.
        slot: u16,
        /// The key.
        key: Vec<u8>,
        /// The target node, `host:port`.
        target: String,
        /// The `MIGRATE` timeout that passed.
        timeout: Duration,
    },
    /// `MIGRATE` failed otherwise (the target replied with an error).
    #[error("slot {slot}: MIGRATE of a key to {target} failed: {message}; slot left open")]
    MigrateFailed {
        /// The slot.
        slot: u16,
        /// The key.
        key: Vec<u8>,
        /// The target node, `host:port`.
        target: String,
        /// The server's error text.
        message: String,
    },
    /// A node the step needs does not answer (the target of a slot, its
    /// source, a node to forget). `slot` is the slot being moved, if any.
    #[error("node {node} is down{}", .slot.map(|s| format!(" (moving slot {s})")).unwrap_or_default())]
    NodeDown {
        /// The node, `host:port`.
        node: String,
        /// The slot being moved, if any.
        slot: Option<u16>,
        /// The failure.
        #[source]
        source: SharedError,
    },
    /// A cluster command was refused (`CLUSTER SETSLOT`, `MEET`,
    /// `REPLICATE`, `FORGET`).
    #[error("{command} on {node} failed")]
    Command {
        /// The command, e.g. `"CLUSTER SETSLOT NODE"`.
        command: &'static str,
        /// The node, `host:port`.
        node: String,
        /// The server's error.
        #[source]
        source: SharedError,
    },
    /// The [`BeforeSlot`](super::BeforeSlot) hook refused a slot (e.g. a
    /// fencing token is no longer valid). The slot was not opened; the
    /// cluster is consistent.
    #[error("the before-slot hook refused slot {slot}")]
    Refused {
        /// The slot that was about to move.
        slot: u16,
        /// The hook's error.
        #[source]
        source: SharedError,
    },
    /// An error of the cache layer (settings, connections).
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl ScaleError {
    /// A short, stable, low-cardinality label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::InvalidTarget(_) => "invalid_target",
            Self::NodeNotJoinable { .. } => "node_not_joinable",
            Self::ClusterState(_) => "cluster_state",
            Self::BigKey { .. } => "big_key",
            Self::BusyKey { .. } => "busy_key",
            Self::MigrateTimeout { .. } => "migrate_timeout",
            Self::MigrateFailed { .. } => "migrate_failed",
            Self::NodeDown { .. } => "node_down",
            Self::Command { .. } => "command",
            Self::Refused { .. } => "refused",
            Self::Cache(e) => e.label(),
        }
    }

    /// Whether rerunning later may succeed without a change of settings or
    /// data: nodes down, timeouts, gossip not yet converged, refused
    /// commands.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::NodeDown { .. }
            | Self::MigrateTimeout { .. }
            | Self::ClusterState(_)
            | Self::Command { .. } => true,
            Self::Cache(e) => e.is_transient(),
            _ => false,
        }
    }

    /// The slot the error is about, if any.
    pub fn slot(&self) -> Option<u16> {
        match self {
            Self::BigKey { slot, .. }
            | Self::BusyKey { slot, .. }
            | Self::MigrateTimeout { slot, .. }
            | Self::MigrateFailed { slot, .. }
            | Self::Refused { slot, .. } => Some(*slot),
            Self::NodeDown { slot, .. } => *slot,
            _ => None,
        }
    }

    /// The key the error is about, if any.
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Self::BigKey { key, .. }
            | Self::BusyKey { key, .. }
            | Self::MigrateTimeout { key, .. }
            | Self::MigrateFailed { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// `Result` with [`ScaleError`].
pub type ScaleResult<T> = std::result::Result<T, ScaleError>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn messages_name_slot_and_sizes_but_not_key_bytes() {
        let e = ScaleError::BigKey {
            slot: 42,
            key: b"secret-key-name".to_vec(),
            bytes: 70 << 20,
            limit: 64 << 20,
            slot_open: false,
        };
        let m = e.to_string();
        assert!(m.contains("slot 42") && m.contains("73400320"), "{m}");
        assert!(m.contains("untouched"), "{m}");
        assert!(!m.contains("secret-key-name"), "{m}");
        assert_eq!(e.key(), Some(&b"secret-key-name"[..]));
        assert_eq!(
            (e.slot(), e.label(), e.is_transient()),
            (Some(42), "big_key", false)
        );
        let down = ScaleError::NodeDown {
            node: "127.0.0.1:7006".into(),
            slot: Some(7),
            source: Arc::new(std::io::Error::other("connection refused")),
        };
        assert_eq!(
            down.to_string(),
            "node 127.0.0.1:7006 is down (moving slot 7)"
        );
        assert!(down.is_transient());
        let e: ScaleError = CacheError::invalid("scale.keys_per_migrate", "too big").into();
        assert_eq!(e.label(), "invalid_argument");
        assert!(e.to_string().contains("scale.keys_per_migrate"));
    }

    #[test]
    fn error_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<ScaleError>();
    }
}
