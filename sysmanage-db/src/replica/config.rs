//! Configuration of a [`ReplicaRouter`](super::ReplicaRouter): plain data with
//! documented defaults, validated when the router is built.

use std::time::Duration;

use sysmanage_core::duration::{MILLISECOND, check_duration};
use sysmanage_core::{Backoff, ConnectionUrl, Jitter};

use super::timeline::WalToken;
use crate::error::{Error, Result};

/// How fresh a read must be.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use sysmanage_db::replica::{Consistency, WalToken};
/// let token: WalToken = "0/3000148@1".parse()?;
/// let c = Consistency::at_least(token).with_wait(Duration::from_millis(20));
/// assert_eq!(c.label(), "at_least");
/// assert_eq!(Consistency::bounded_time(Duration::from_secs(1)).label(), "bounded_staleness");
/// # Ok::<(), sysmanage_db::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "level")]
#[non_exhaustive]
pub enum Consistency {
    /// Any healthy replica within the router's
    /// [`max_lag_bytes`](ReplicaConfig::max_lag_bytes) /
    /// [`max_lag`](ReplicaConfig::max_lag) (replicas beyond them are
    /// lag-banned, with hysteresis).
    #[default]
    Any,
    /// Replicas whose measured lag is within these bounds. `None` means no
    /// bound on that axis.
    ///
    /// The time bound is checked against a conservative estimate: a replica
    /// is at most `now − t` stale, where `t` is the start of the latest probe
    /// of the primary whose flushed WAL position the replica had replayed
    /// (with PostgreSQL's default `synchronous_commit = on`, every commit
    /// acknowledged before `t` is flushed before `t`). The bound therefore
    /// holds at the moment of the read, not only at the last probe; a bound
    /// shorter than the monitor interval sends most reads to the primary. A
    /// replica whose lag is unknown (the primary has not been probed since
    /// start-up or a role change) does not qualify.
    BoundedStaleness {
        /// Largest WAL distance to the primary, in bytes, as measured by the
        /// last probe.
        max_bytes: Option<u64>,
        /// Largest staleness in time.
        max_time: Option<Duration>,
    },
    /// Replicas whose replay position has reached `token` (read-your-writes).
    /// When none has, wait up to `wait` (capped at the router's
    /// [`max_token_wait`](ReplicaConfig::max_token_wait)) for one to catch
    /// up, then read from the primary.
    AtLeast {
        /// A [`WalToken`] taken after the write committed.
        token: WalToken,
        /// How long to wait for a replica to catch up; `None` goes to the
        /// primary at once.
        wait: Option<Duration>,
    },
    /// The primary.
    Primary,
}

impl Consistency {
    /// Bounded staleness in time only.
    pub const fn bounded_time(max: Duration) -> Self {
        Self::BoundedStaleness {
            max_bytes: None,
            max_time: Some(max),
        }
    }

    /// Bounded staleness in WAL bytes only.
    pub const fn bounded_bytes(max: u64) -> Self {
        Self::BoundedStaleness {
            max_bytes: Some(max),
            max_time: None,
        }
    }

    /// Read-your-writes after the write that produced `token`, without waiting.
    pub const fn at_least(token: WalToken) -> Self {
        Self::AtLeast { token, wait: None }
    }

    /// Sets the wait of an [`AtLeast`](Self::AtLeast) level; other levels are
    /// returned unchanged.
    #[must_use]
    pub const fn with_wait(self, wait: Duration) -> Self {
        match self {
            Self::AtLeast { token, .. } => Self::AtLeast {
                token,
                wait: Some(wait),
            },
            other => other,
        }
    }

    /// A short, stable label for logs and metrics.
    pub const fn label(&self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::BoundedStaleness { .. } => "bounded_staleness",
            Self::AtLeast { .. } => "at_least",
            Self::Primary => "primary",
        }
    }
}

/// What a read does when no replica qualifies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NoReplicaPolicy {
    /// Read from the primary (SysManage's behaviour). Counted in
    /// [`RouterStatus::fallbacks`](super::RouterStatus::fallbacks).
    #[default]
    FallbackToPrimary,
    /// Return [`Error::NoReplica`].
    Error,
    /// Ignore bans and lag bans (pgcat's behaviour) but keep the read's
    /// consistency requirement; if still nothing qualifies, use the primary.
    UnbanAll,
}

/// How a replica is chosen among those that qualify.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Strategy {
    /// Power of two choices: two random candidates, keep the one with the
    /// lower peak-EWMA latency × (in-flight + 1) ÷ weight (Finagle, tower).
    #[default]
    PowerOfTwoChoices,
    /// The fewest requests in flight ÷ weight, counted by the router; ties
    /// broken at random.
    LeastOutstanding,
    /// Random, with weight × `max(0.1, 2.0 − latency_secs)` (SysManage's
    /// response-time weights).
    WeightedRandom,
    /// Each candidate in turn.
    RoundRobin,
}

/// What a node is, as last observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// Not probed successfully yet.
    Unknown,
    /// Accepts writes (`pg_is_in_recovery()` is false).
    Primary,
    /// In recovery: a streaming standby.
    Replica,
}

/// Settings of a [`ReplicaRouter`](super::ReplicaRouter).
///
/// Start from [`Default`] and assign fields; [`validate`](Self::validate) runs
/// when the router is built.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ReplicaConfig {
    /// Balancing strategy. Default: [`Strategy::PowerOfTwoChoices`].
    pub strategy: Strategy,
    /// What reads do when no replica qualifies. Default: fall back to the primary.
    pub no_replica: NoReplicaPolicy,
    /// Replicas lagging more bytes than this are lag-banned for
    /// [`Consistency::Any`] reads. Default: 16 MiB.
    pub max_lag_bytes: Option<u64>,
    /// Replicas lagging more than this (time lag, counted only when the byte
    /// lag is non-zero) are lag-banned for [`Consistency::Any`] reads.
    /// Default: 10 s.
    #[serde(with = "sysmanage_core::duration::serde_human_opt")]
    pub max_lag: Option<Duration>,
    /// A lag-banned replica is re-admitted when its lag falls below this
    /// fraction of the limits (hysteresis). Default: 0.5. Must be in `(0, 1]`.
    pub lag_recovery_ratio: f64,
    /// Lag bans are not applied when they would leave fewer replicas serving
    /// than this; the least lagged ones keep serving. Default: 0 (off).
    pub min_serving_replicas: usize,
    /// Time between probe rounds. Default: 1 s.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub monitor_interval: Duration,
    /// Consecutive failed probes of the current primary before writes may
    /// move to a promoted standby (a primary that answers in recovery, i.e.
    /// was demoted, is replaced at once). A node that lost the primary role
    /// takes over again only after it was seen in recovery, so a diverged old
    /// primary that comes back writable never gets the writes back. Default:
    /// 2. Must be at least 1.
    pub primary_failure_probes: u32,
    /// Timeout of one probe. Default: 500 ms. (The PostgreSQL backend
    /// probes on a connection of its own, so a saturated pool never delays
    /// a probe.)
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub probe_timeout: Duration,
    /// Random extra delay added to each interval, up to this. Default: 100 ms.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub monitor_jitter: Duration,
    /// Ban duration growth on repeated failures; a ban ends only with a
    /// successful probe after it expired. Default: 250 ms initial, ×2, 30 s cap,
    /// equal jitter.
    pub ban_backoff: Backoff,
    /// Consecutive query errors (not connection errors, which ban at once)
    /// after which a node is banned. Default: 5.
    pub max_consecutive_errors: u32,
    /// Time constant of the peak-EWMA latency. Default: 10 s.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub ewma_decay: Duration,
    /// Latency assumed for a node without observations. Default: 0, which is
    /// optimistic (as Finagle's peak EWMA): a new node is tried at once and
    /// its real latency learned. Balancing never treats a latency as below
    /// [`MIN_COST_LATENCY_SECS`](super::MIN_COST_LATENCY_SECS), so requests
    /// in flight count against an unobserved (or long idle, decayed) node
    /// just as against any other.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub initial_latency: Duration,
    /// While waiting for a replica to reach a token, how often each lagging
    /// replica is re-polled (one cheap query). Default: 10 ms.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub token_poll_interval: Duration,
    /// The longest a [`Consistency::AtLeast`] read waits for a replica to
    /// reach its token, whatever its `wait` says (the level is
    /// deserialisable, so the wait may come from outside). Default: 5 s.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub max_token_wait: Duration,
    /// How long a read keeps retrying after connection-level failures
    /// (the node it ran on died, or the primary it fell back to is failing
    /// over), with a short backoff, before it fails. The first retry runs at
    /// once on another node; later ones re-route from scratch, so a read
    /// rides through a failover to the promoted node. Read closures must be
    /// safe to repeat. Zero: one retry only. Default: 5 s.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub read_retry_budget: Duration,
    /// Seed of the router's random numbers; `None` seeds from entropy.
    /// Default: `None`.
    pub seed: Option<u64>,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::default(),
            no_replica: NoReplicaPolicy::default(),
            max_lag_bytes: Some(16 << 20),
            max_lag: Some(Duration::from_secs(10)),
            lag_recovery_ratio: 0.5,
            min_serving_replicas: 0,
            monitor_interval: Duration::from_secs(1),
            primary_failure_probes: 2,
            probe_timeout: Duration::from_millis(500),
            monitor_jitter: Duration::from_millis(100),
            ban_backoff: default_ban_backoff(),
            max_consecutive_errors: 5,
            ewma_decay: Duration::from_secs(10),
            initial_latency: Duration::ZERO,
            token_poll_interval: Duration::from_millis(10),
            max_token_wait: Duration::from_secs(5),
            read_retry_budget: Duration::from_secs(5),
            seed: None,
        }
    }
}

fn default_ban_backoff() -> Backoff {
    Backoff::builder()
        .initial(Duration::from_millis(250))
        .max(Duration::from_secs(30))
        .multiplier(2.0)
        .jitter(Jitter::Equal)
        .build()
        .unwrap_or_default()
}

impl ReplicaConfig {
    /// The largest duration any setting accepts (one day): larger values
    /// are certainly mistakes, and rejecting them keeps all time arithmetic
    /// far from overflow.
    pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first field that is out of range:
    /// zero intervals or timeouts, durations above
    /// [`MAX_DURATION`](Self::MAX_DURATION), a recovery ratio outside
    /// `(0, 1]`, zero error or failover thresholds.
    pub fn validate(&self) -> Result<()> {
        let bounded = |field: &'static str, d: Duration| {
            check_duration(field, d, Duration::ZERO, Self::MAX_DURATION).map(drop)
        };
        let nonzero = |field: &'static str, d: Duration| {
            check_duration(field, d, MILLISECOND, Self::MAX_DURATION).map(drop)
        };
        nonzero("monitor_interval", self.monitor_interval)?;
        nonzero("probe_timeout", self.probe_timeout)?;
        nonzero("ewma_decay", self.ewma_decay)?;
        nonzero("token_poll_interval", self.token_poll_interval)?;
        bounded("monitor_jitter", self.monitor_jitter)?;
        bounded("initial_latency", self.initial_latency)?;
        bounded("max_token_wait", self.max_token_wait)?;
        bounded("read_retry_budget", self.read_retry_budget)?;
        bounded("ban_backoff", self.ban_backoff.max())?;
        bounded("ban_backoff", self.ban_backoff.initial())?;
        if let Some(d) = self.max_lag {
            nonzero("max_lag", d)?;
        }
        if self.primary_failure_probes == 0 {
            return Err(invalid("primary_failure_probes", "must be at least 1"));
        }
        let r = self.lag_recovery_ratio;
        if !(r.is_finite() && r > 0.0 && r <= 1.0) {
            return Err(invalid(
                "lag_recovery_ratio",
                format!("must be in (0, 1], got {r}"),
            ));
        }
        if self.max_consecutive_errors == 0 {
            return Err(invalid("max_consecutive_errors", "must be at least 1"));
        }
        Ok(())
    }
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field,
        reason: reason.into(),
    }
}

/// One node handed to the router: a name, its connection pool and how it
/// takes part in balancing.
///
/// # Examples
/// ```
/// use sysmanage_db::replica::{MemoryCluster, NodeSpec};
/// let cluster = MemoryCluster::new();
/// let spec = NodeSpec::new("replica-a", cluster.add_replica()).weight(2.0).tier(1);
/// assert_eq!(spec.name(), "replica-a");
/// ```
#[derive(Clone, Debug)]
pub struct NodeSpec<P> {
    pub(crate) name: String,
    pub(crate) pool: P,
    pub(crate) weight: f64,
    pub(crate) tier: u8,
    pub(crate) url: Option<ConnectionUrl>,
}

impl<P> NodeSpec<P> {
    /// A node called `name` reached through `pool`, weight 1, tier 0.
    pub fn new(name: impl Into<String>, pool: P) -> Self {
        Self {
            name: name.into(),
            pool,
            weight: 1.0,
            tier: 0,
            url: None,
        }
    }

    /// Relative share of reads; 0 drains the node (no new reads). Validated
    /// when added: finite and not negative. Default: 1.
    pub fn weight(mut self, weight: f64) -> Self {
        self.weight = weight;
        self
    }

    /// Locality tier: reads go to the lowest tier that has a qualifying
    /// replica (0 = same zone). Default: 0.
    pub fn tier(mut self, tier: u8) -> Self {
        self.tier = tier;
        self
    }

    /// The URL the pool connects to, shown redacted in status and logs.
    pub fn url(mut self, url: ConnectionUrl) -> Self {
        self.url = Some(url);
        self
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's pool.
    pub fn pool(&self) -> &P {
        &self.pool
    }
}

pub(crate) fn validate_weight(name: &str, weight: f64) -> Result<f64> {
    if weight.is_finite() && weight >= 0.0 {
        Ok(weight)
    } else {
        Err(invalid(
            "weight",
            format!("node {name:?}: must be a finite number >= 0, got {weight}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        ReplicaConfig::default().validate().unwrap();
    }

    #[test]
    fn zero_intervals_are_typed_errors() {
        let c = ReplicaConfig {
            monitor_interval: Duration::ZERO,
            ..ReplicaConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(Error::InvalidConfig {
                field: "monitor_interval",
                ..
            })
        ));
        let c = ReplicaConfig {
            probe_timeout: Duration::ZERO,
            ..ReplicaConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(Error::InvalidConfig {
                field: "probe_timeout",
                ..
            })
        ));
        let c = ReplicaConfig {
            lag_recovery_ratio: f64::NAN,
            ..ReplicaConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(Error::InvalidConfig {
                field: "lag_recovery_ratio",
                ..
            })
        ));
    }

    #[test]
    fn oversized_durations_are_typed_errors() {
        type Set = fn(&mut ReplicaConfig, Duration);
        let huge = Duration::MAX;
        let cases: [(&str, Set); 5] = [
            ("monitor_interval", |c, d| c.monitor_interval = d),
            ("monitor_jitter", |c, d| c.monitor_jitter = d),
            ("probe_timeout", |c, d| c.probe_timeout = d),
            ("max_token_wait", |c, d| c.max_token_wait = d),
            ("read_retry_budget", |c, d| c.read_retry_budget = d),
        ];
        for (field, set) in cases {
            let mut c = ReplicaConfig::default();
            set(&mut c, huge);
            match c.validate() {
                Err(Error::InvalidConfig { field: f, reason }) => {
                    assert_eq!(f, field);
                    assert!(reason.contains("must be between"), "{reason}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        let c = ReplicaConfig {
            primary_failure_probes: 0,
            ..ReplicaConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(Error::InvalidConfig {
                field: "primary_failure_probes",
                ..
            })
        ));
    }

    #[test]
    fn negative_and_nan_weights_are_rejected() {
        assert!(validate_weight("a", -1.0).is_err());
        assert!(validate_weight("a", f64::NAN).is_err());
        assert!(validate_weight("a", f64::INFINITY).is_err());
        assert_eq!(validate_weight("a", 0.0).unwrap(), 0.0);
    }

    #[test]
    fn consistency_serialises_with_a_level_tag() {
        let c = Consistency::at_least(super::super::Lsn::new(0x300_0148).into());
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            r#"{"level":"at_least","token":"0/3000148","wait":null}"#
        );
        assert_eq!(serde_json::from_str::<Consistency>(&json).unwrap(), c);
    }
}
