//! Errors of the Prometheus client.

use std::time::Duration;

use crate::BoxError;

/// The most characters of a query an error message carries; longer queries
/// are cut and end in `…`.
pub const MAX_QUERY_IN_ERROR: usize = 200;

/// Shortens a query for an error message.
pub(crate) fn short(query: &str) -> String {
    if query.chars().count() <= MAX_QUERY_IN_ERROR {
        return query.to_owned();
    }
    let mut s: String = query.chars().take(MAX_QUERY_IN_ERROR).collect();
    s.push('…');
    s
}

/// What went wrong talking to Prometheus. Every variant about a request
/// names its query; none carries a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrometheusError {
    /// A setting was rejected.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The setting, e.g. `"prometheus.url"`.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// No answer within the configured timeout.
    #[error("prometheus query {query:?} timed out after {after:?}")]
    Timeout {
        /// The query (shortened).
        query: String,
        /// The timeout.
        after: Duration,
    },
    /// The server could not be reached or the connection failed (refused,
    /// reset, TLS handshake); the cause is the source.
    #[error("prometheus query {query:?} failed: cannot reach {url}")]
    Transport {
        /// The query (shortened).
        query: String,
        /// The server's base URL.
        url: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The server refused the credentials (HTTP 401 or 403).
    #[error("prometheus query {query:?} refused: HTTP {status}, credentials rejected")]
    Unauthorized {
        /// The query (shortened).
        query: String,
        /// 401 or 403.
        status: u16,
    },
    /// The server answered with an error (`"status": "error"`): a bad
    /// query (`bad_data`, HTTP 400), an execution error (422), a
    /// server-side timeout or cancellation (503), or another HTTP error.
    #[error("prometheus query {query:?} failed: HTTP {status}, {error_type}: {message}")]
    Api {
        /// The query (shortened).
        query: String,
        /// The HTTP status.
        status: u16,
        /// Prometheus' `errorType` (`bad_data`, `execution`, `timeout`,
        /// `canceled`, `internal`, `unavailable`), or `http` for a response
        /// without one.
        error_type: String,
        /// Prometheus' `error` text, shortened.
        message: String,
    },
    /// The answer was not a Prometheus API response of the expected shape.
    #[error("prometheus query {query:?}: malformed response: {reason}")]
    Decode {
        /// The query (shortened).
        query: String,
        /// What was wrong.
        reason: String,
    },
    /// The result was of another type than the caller needs (a matrix where
    /// a vector was expected).
    #[error("prometheus query {query:?} returned a {found}, expected a {expected}")]
    UnexpectedType {
        /// The query (shortened).
        query: String,
        /// The type needed.
        expected: &'static str,
        /// The type returned.
        found: &'static str,
    },
}

impl PrometheusError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }

    /// Whether the same call may succeed later (timeouts, transport
    /// failures, HTTP 429 and 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Transport { .. } => true,
            Self::Api { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// The query the error is about, when it is about one.
    pub fn query(&self) -> Option<&str> {
        match self {
            Self::InvalidConfig { .. } => None,
            Self::Timeout { query, .. }
            | Self::Transport { query, .. }
            | Self::Unauthorized { query, .. }
            | Self::Api { query, .. }
            | Self::Decode { query, .. }
            | Self::UnexpectedType { query, .. } => Some(query),
        }
    }

    /// A low-cardinality label for metrics and logs: `invalid_config`,
    /// `timeout`, `transport`, `unauthorized`, `api`, `decode`,
    /// `unexpected_type`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::InvalidConfig { .. } => "invalid_config",
            Self::Timeout { .. } => "timeout",
            Self::Transport { .. } => "transport",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Api { .. } => "api",
            Self::Decode { .. } => "decode",
            Self::UnexpectedType { .. } => "unexpected_type",
        }
    }
}
