//! Settings of the Redis Cluster backend.

use std::time::Duration;

use sysmanage_core::{Backoff, Jitter, Secret, TlsConfig};

use crate::cache::{Limits, MAX_CHANNEL};
use crate::error::{CacheError, Result};
use sysmanage_core::duration::{DAY, MILLISECOND, check_count, check_duration};

/// Settings of [`RedisCache`](super::RedisCache).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Seed nodes, `host:port`. 1 to 1,000 of them.
    pub nodes: Vec<String>,
    /// ACL user name. Default: none.
    pub username: Option<String>,
    /// Password: of [`username`](Self::username) (ACL), or of the
    /// default user (`requirepass`) when no user name is set. Default:
    /// none. Never printed, never serialised. A node that refuses it fails
    /// the operation with [`CacheError::Auth`] naming the node (no retry).
    #[serde(skip_serializing)]
    pub password: Option<Secret>,
    /// TLS to every node: the per-node clients, the topology refresh,
    /// [`cluster_stats`](super::RedisCache::cluster_stats) and the tracking
    /// connections of a [`TieredCache`](crate::TieredCache). Needs the
    /// `redis-tls` feature. Cluster nodes are announced by IP address, so
    /// their certificates must carry it, or set
    /// [`TlsConfig::server_name`] to a name they carry. A failed handshake
    /// fails the operation with [`CacheError::Tls`] naming the node (no
    /// retry). Default: none (plain text).
    pub tls: Option<TlsConfig>,
    /// Deadline of one command or one pipeline (up to 1,000 commands).
    /// Default: 1 s. Range: 1 ms – 1 day.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub command_timeout: Duration,
    /// Deadline of one connection attempt. Default: 2 s. Range: 1 ms – 1 day.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub connect_timeout: Duration,
    /// Backoff between retries of transient errors; its `max_retries`
    /// bounds the attempts. Default: 20 ms doubling to 400 ms, equal jitter,
    /// at most 12 retries. Its `max` is at most 1 day.
    pub retry: Backoff,
    /// Total time one operation may spend retrying. Default: 6 s (longer
    /// than a typical automatic failover at `cluster-node-timeout 2000`).
    /// Range: 0 – 1 day.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub retry_budget: Duration,
    /// `MOVED`/`ASK` redirections followed per command (per slot for
    /// multi-key operations) before it fails with
    /// [`CacheError::Unavailable`]. Default: 16. Range: 1 – 1,000.
    pub max_redirections: u32,
    /// Period of the background topology refresh. Default: 10 s. Range:
    /// 1 ms – 1 day.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub refresh_interval: Duration,
    /// Random spread of the period, as a fraction of it (0 ≤ j < 1).
    /// Default: 0.2.
    pub refresh_jitter: f64,
    /// Smallest gap between two refreshes triggered by errors. Default:
    /// 200 ms. Range: 0 – 1 day.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub min_refresh_gap: Duration,
    /// Capacity of the topology event channel. Default: 64. Range: 1 –
    /// 1,048,576.
    pub event_capacity: usize,
    /// Input limits. Default: [`Limits::default`].
    pub limits: Limits,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            username: None,
            password: None,
            tls: None,
            // fred's own default is "no timeout": a call issued during a
            // failover would block for the whole failover.
            command_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            retry: Backoff::builder()
                .initial(Duration::from_millis(20))
                .max(Duration::from_millis(400))
                .jitter(Jitter::Equal)
                .max_retries(12)
                .build()
                .unwrap_or_default(),
            retry_budget: Duration::from_secs(6),
            max_redirections: 16,
            refresh_interval: Duration::from_secs(10),
            refresh_jitter: 0.2,
            min_refresh_gap: Duration::from_millis(200),
            event_capacity: 64,
            limits: Limits::default(),
        }
    }
}

impl RedisConfig {
    /// The defaults with these seed nodes.
    pub fn new<S: Into<String>>(nodes: impl IntoIterator<Item = S>) -> Self {
        Self {
            nodes: nodes.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Validates the settings and parses the seed nodes.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] naming the field.
    pub fn validate(&self) -> Result<Vec<(String, u16)>> {
        if self.nodes.is_empty() {
            return Err(CacheError::invalid(
                "redis.nodes",
                "at least one seed node is required",
            ));
        }
        let nodes = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                // The raw text is not echoed: a URL-shaped entry may carry
                // a password.
                parse_addr(n).ok_or_else(|| {
                    CacheError::invalid(
                        "redis.nodes",
                        format!(
                            "entry {i} is not host:port (URLs, schemes and credentials are \
                             not accepted; set username/password instead)"
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        check_count("redis.nodes", self.nodes.len(), 1, MAX_SEED_NODES)?;
        for (field, d, min) in [
            ("redis.command_timeout", self.command_timeout, MILLISECOND),
            ("redis.connect_timeout", self.connect_timeout, MILLISECOND),
            ("redis.refresh_interval", self.refresh_interval, MILLISECOND),
            ("redis.retry_budget", self.retry_budget, Duration::ZERO),
            (
                "redis.min_refresh_gap",
                self.min_refresh_gap,
                Duration::ZERO,
            ),
            ("redis.retry.max", self.retry.max(), Duration::ZERO),
        ] {
            check_duration(field, d, min, DAY)?;
        }
        if !(0.0..1.0).contains(&self.refresh_jitter) {
            return Err(CacheError::invalid(
                "redis.refresh_jitter",
                "must be in [0, 1)",
            ));
        }
        check_count("redis.max_redirections", self.max_redirections, 1, 1_000)?;
        check_count("redis.event_capacity", self.event_capacity, 1, MAX_CHANNEL)?;
        self.limits.validate()?;
        if let Some(user) = &self.username
            && (user.is_empty() || user.len() > 256 || user.chars().any(char::is_whitespace))
        {
            return Err(CacheError::invalid(
                "redis.username",
                "must be 1 to 256 characters without spaces",
            ));
        }
        if let Some(tls) = &self.tls {
            if !cfg!(feature = "redis-tls") {
                return Err(CacheError::invalid(
                    "redis.tls",
                    "TLS needs the `redis-tls` feature of sysmanage-cache",
                ));
            }
            tls.validate()?;
        }
        Ok(nodes)
    }
}

/// Most seed nodes a config may list.
const MAX_SEED_NODES: usize = 1_000;

/// `host:port` or `[v6]:port`; a host is letters, digits, `.`, `-` and
/// `_` (or hex digits, `:` and `.` inside brackets). Anything URL-shaped
/// (`redis://`, `user:pw@host`, paths) is rejected.
pub(super) fn parse_addr(s: &str) -> Option<(String, u16)> {
    let (host, port_text) = s.trim().rsplit_once(':')?;
    let port: u16 = port_text.parse().ok()?;
    if port == 0 || port.to_string() != port_text {
        return None; // "0", "+7000", "07000"
    }
    let plain = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    let ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            !v6.is_empty()
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        }
        None => plain(host),
    };
    ok.then(|| (host.to_owned(), port))
}
