//! The error type of `sysmanage-cache`.

use std::sync::Arc;
use std::time::Duration;

/// A shared, type-erased cause. `Arc` so that one failed node batch can be
/// reported on every key of the batch ([`CacheError`] is `Clone`).
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`CacheError`] as the default error type.
pub type Result<T, E = CacheError> = std::result::Result<T, E>;

/// The result for one key of a multi-key operation.
pub type KeyResult<T> = Result<T, CacheError>;

/// Errors returned by the caches, the session store and the stats readers.
///
/// Messages are lowercase, name the offending input and never contain key
/// values, cached data or secrets. A cause, when there is one, is available
/// through [`std::error::Error::source`] and is not repeated in the message.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// A multi-key operation was given no keys.
    #[error("{op} needs at least one key")]
    EmptyKeys {
        /// The operation, e.g. `"mget"`.
        op: &'static str,
    },
    /// A value exceeds [`Limits::max_value_bytes`](crate::Limits::max_value_bytes).
    #[error("value of {size} bytes exceeds the limit of {limit} bytes")]
    ValueTooLarge {
        /// Size of the rejected value.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A key exceeds [`Limits::max_key_bytes`](crate::Limits::max_key_bytes).
    #[error("key of {size} bytes exceeds the limit of {limit} bytes")]
    KeyTooLarge {
        /// Size of the rejected key.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A multi-key operation was given more keys than
    /// [`Limits::max_keys_per_call`](crate::Limits::max_keys_per_call).
    #[error("{op} got {count} keys, more than the limit of {limit}")]
    TooManyKeys {
        /// The operation, e.g. `"mset"`.
        op: &'static str,
        /// Number of keys given.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A TTL was zero or below the backend's resolution of one millisecond.
    #[error("invalid ttl {ttl:?}: {reason}")]
    InvalidTtl {
        /// The rejected TTL.
        ttl: Duration,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An argument or configuration value was rejected.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The argument or field, e.g. `"redis.nodes"`.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// `incr` on a value that is not a decimal 64-bit integer.
    #[error("value is not an integer")]
    NotAnInteger,
    /// `incr` would overflow a signed 64-bit integer.
    #[error("increment would overflow")]
    Overflow,
    /// The memory bound was reached and the eviction policy forbids evicting
    /// (the in-memory `NoEviction` policy, or Redis' `OOM` reply).
    #[error("out of memory: {needed} bytes needed, limit {limit} bytes")]
    OutOfMemory {
        /// Bytes the write needed (0 when the server did not say).
        needed: usize,
        /// The memory limit in bytes (0 when the server did not say).
        limit: usize,
    },
    /// A value could not be encoded or decoded by the codec.
    #[error("{codec} codec failed")]
    Codec {
        /// The codec, e.g. `"json"`.
        codec: &'static str,
        /// The underlying failure.
        #[source]
        source: SharedError,
    },
    /// A session id did not have the shape the session store issues.
    #[error("malformed session id")]
    InvalidSessionId,
    /// The operation did not finish before its deadline.
    #[error("operation timed out after {0:?}")]
    Timeout(Duration),
    /// The cluster could not serve the key's slot right now (failover,
    /// migration, `CLUSTERDOWN`, `TRYAGAIN`, connection lost), after retries.
    #[error("slot {slot} unavailable on {node}")]
    Unavailable {
        /// The slot of the key.
        slot: u16,
        /// The node that was asked, `host:port`, or `"unknown"`.
        node: String,
        /// The underlying failure.
        #[source]
        source: SharedError,
    },
    /// A whole batch sent to one node failed; every key of the batch reports
    /// this error (never a miss).
    #[error("batch of {keys} keys on node {node} failed")]
    NodeBatch {
        /// The node, `host:port`.
        node: String,
        /// Number of keys in the failed batch.
        keys: usize,
        /// The underlying failure.
        #[source]
        source: SharedError,
    },
    /// A command that must not run twice (`INCRBY`, `SET … NX`) failed in a
    /// way that leaves its outcome unknown: the connection was lost or the
    /// deadline passed after it may have been sent. It was not retried; the
    /// caller decides (re-read the key, or retry knowing it may apply
    /// twice).
    #[error("{op} on node {node} (slot {slot}) may or may not have run")]
    Indeterminate {
        /// The operation, e.g. `"incr"`.
        op: &'static str,
        /// The slot of the key.
        slot: u16,
        /// The node it was sent to, `host:port`.
        node: String,
        /// The underlying failure.
        #[source]
        source: SharedError,
    },
    /// The cache was shut down; no operation runs any more.
    #[error("the cache is shut down")]
    ShutDown,
    /// A node refused the credentials (wrong user name or password, a
    /// disabled user, a password missing) or the permission an operation
    /// needs. Not retried: waiting does not fix it.
    #[error("node {node} refused the credentials: {reason}")]
    Auth {
        /// The node, `host:port`.
        node: String,
        /// What the node said, in words (never the credentials).
        reason: String,
        /// The underlying failure.
        #[source]
        source: SharedError,
    },
    /// The TLS handshake with a node failed: its certificate did not verify
    /// (untrusted issuer, wrong name, expired), it rejected the client
    /// certificate, or one end spoke TLS and the other did not. Not retried:
    /// waiting does not fix it.
    #[error("tls with node {node} failed: {reason}")]
    Tls {
        /// The node, `host:port`.
        node: String,
        /// Why, in words.
        reason: String,
        /// The underlying failure.
        #[source]
        source: SharedError,
    },
    /// The backend failed in another way; the cause is in `source()`.
    #[error("{backend} backend failed")]
    Backend {
        /// The backend, e.g. `"redis"`.
        backend: &'static str,
        /// The underlying failure.
        #[source]
        source: SharedError,
    },
}

impl CacheError {
    /// Builds an [`CacheError::InvalidArgument`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn codec(
        codec: &'static str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Codec {
            codec,
            source: Arc::new(e),
        }
    }

    /// Whether retrying the same call later may succeed.
    ///
    /// Timeouts, unavailable slots, failed node batches and backend failures
    /// are transient; invalid input, codec failures and type errors are not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Timeout(_)
                | Self::Indeterminate { .. }
                | Self::Unavailable { .. }
                | Self::NodeBatch { .. }
                | Self::Backend { .. }
        )
    }

    /// A short, stable, low-cardinality label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::EmptyKeys { .. } => "empty_keys",
            Self::ValueTooLarge { .. } => "value_too_large",
            Self::KeyTooLarge { .. } => "key_too_large",
            Self::TooManyKeys { .. } => "too_many_keys",
            Self::InvalidTtl { .. } => "invalid_ttl",
            Self::InvalidArgument { .. } => "invalid_argument",
            Self::NotAnInteger => "not_an_integer",
            Self::Overflow => "overflow",
            Self::OutOfMemory { .. } => "out_of_memory",
            Self::Codec { .. } => "codec",
            Self::InvalidSessionId => "invalid_session_id",
            Self::Timeout(_) => "timeout",
            Self::Unavailable { .. } => "unavailable",
            Self::NodeBatch { .. } => "node_batch",
            Self::Indeterminate { .. } => "indeterminate",
            Self::ShutDown => "shut_down",
            Self::Auth { .. } => "auth",
            Self::Tls { .. } => "tls",
            Self::Backend { .. } => "backend",
        }
    }
}

impl From<sysmanage_core::Error> for CacheError {
    fn from(e: sysmanage_core::Error) -> Self {
        match e {
            sysmanage_core::Error::Timeout(d) => Self::Timeout(d),
            sysmanage_core::Error::InvalidConfig { field, reason } => {
                Self::InvalidArgument { field, reason }
            }
            other => Self::InvalidArgument {
                field: "config",
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_input_and_not_the_cause() {
        let e = CacheError::ValueTooLarge { size: 10, limit: 4 };
        assert_eq!(
            e.to_string(),
            "value of 10 bytes exceeds the limit of 4 bytes"
        );
        assert!(!e.is_transient());
        let cause: SharedError = Arc::new(std::io::Error::other("connection reset"));
        let e = CacheError::NodeBatch {
            node: "127.0.0.1:7000".into(),
            keys: 3,
            source: cause,
        };
        assert_eq!(
            e.to_string(),
            "batch of 3 keys on node 127.0.0.1:7000 failed"
        );
        assert_eq!(
            std::error::Error::source(&e)
                .map(ToString::to_string)
                .as_deref(),
            Some("connection reset")
        );
        assert!(e.is_transient());
        assert_eq!(e.label(), "node_batch");
    }

    #[test]
    fn error_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<CacheError>();
    }
}
