//! [`LeaseConfig`]: the timing of a lease, and its validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::{MILLISECOND, check_duration};
use crate::error::{Error, Result};

/// The shortest lease accepted (10 ms).
pub const MIN_TTL: Duration = Duration::from_millis(10);
/// The longest lease accepted (one hour).
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// How long a lease lasts and how its holder keeps it.
///
/// The defaults are Kubernetes' leader-election defaults (client-go
/// `LeaseDuration` 15 s, `RenewDeadline` 10 s, `RetryPeriod` 2 s).
///
/// The safety margin is `ttl − renew_deadline`: a leader counts its term
/// from the moment it *sent* its last successful renewal and steps down
/// `renew_deadline` after that, while the server counts `ttl` from the
/// moment it *handled* it. The leader therefore stops before the server can
/// grant the lease to anyone else, as long as its monotonic clock does not
/// run slower than the server's by more than the margin over a
/// `renew_deadline` (see the module docs for the whole argument).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use sysmanage_core::lease::LeaseConfig;
/// let cfg = LeaseConfig::default();
/// assert_eq!(cfg.margin(), Duration::from_secs(5));
/// let fast = LeaseConfig::new(Duration::from_millis(600))?; // 400 ms deadline, 100 ms renewals
/// assert_eq!(fast.renew_deadline, Duration::from_millis(400));
/// let mut bad = LeaseConfig::default();
/// bad.renew_deadline = Duration::from_secs(20); // past the 15 s ttl
/// assert!(bad.validate().is_err());
/// # Ok::<(), sysmanage_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct LeaseConfig {
    /// How long the server keeps a lease after each grant or renewal.
    /// Default 15 s; 10 ms ..= 1 h.
    #[serde(with = "crate::duration::serde_human")]
    pub ttl: Duration,
    /// How long after sending its last successful renewal a leader keeps
    /// acting; then it steps down. Default 10 s; greater than
    /// `renew_interval`, less than `ttl`.
    #[serde(with = "crate::duration::serde_human")]
    pub renew_deadline: Duration,
    /// How often a leader renews. Default 2 s; at least 1 ms, less than
    /// `renew_deadline`.
    #[serde(with = "crate::duration::serde_human")]
    pub renew_interval: Duration,
    /// How often a follower tries to take the lease. Default 2 s;
    /// 1 ms ..= `ttl`.
    #[serde(with = "crate::duration::serde_human")]
    pub retry_interval: Duration,
    /// The longest one call to the backend may take before it counts as
    /// failed. Default 5 s; 1 ms ..= `ttl`. A leader's renewal is also cut
    /// short at its deadline.
    #[serde(with = "crate::duration::serde_human")]
    pub call_timeout: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew_interval: Duration::from_secs(2),
            retry_interval: Duration::from_secs(2),
            call_timeout: Duration::from_secs(5),
        }
    }
}

impl LeaseConfig {
    /// A configuration scaled from `ttl` in Kubernetes' proportions:
    /// `renew_deadline` = 2/3 ttl, `renew_interval`, `retry_interval` and
    /// `call_timeout` = 1/6 ttl (at least 1 ms), validated.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a ttl outside 10 ms ..= 1 h.
    pub fn new(ttl: Duration) -> Result<Self> {
        check_duration("lease.ttl", ttl, MIN_TTL, MAX_TTL)?;
        let sixth = (ttl / 6).max(MILLISECOND);
        let cfg = Self {
            ttl,
            renew_deadline: ttl * 2 / 3,
            renew_interval: sixth,
            retry_interval: sixth,
            call_timeout: sixth,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// `ttl − renew_deadline`: how much slower than the server a leader's
    /// clock may run, summed over one term, before the two could overlap.
    pub fn margin(&self) -> Duration {
        self.ttl.saturating_sub(self.renew_deadline)
    }

    /// The longest time without a usable leader after the leader's
    /// process dies or is paused, while the candidates can reach the
    /// backend: the rest of the dead leader's lease (at most `ttl`) plus one
    /// follower retry and one call (`retry_interval + call_timeout`).
    ///
    /// A leader that steps down on its own (resigns, loses its session or
    /// its backend and still reaches it afterwards) releases the lease, and
    /// a successor takes over within `retry_interval + call_timeout`.
    pub fn takeover_bound(&self) -> Duration {
        self.ttl
            .saturating_add(self.retry_interval)
            .saturating_add(self.call_timeout)
    }

    /// Checks every field against its documented range.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field and its range.
    pub fn validate(&self) -> Result<()> {
        check_duration("lease.ttl", self.ttl, MIN_TTL, MAX_TTL)?;
        if self.renew_deadline.is_zero() || self.renew_deadline >= self.ttl {
            return Err(Error::invalid(
                "lease.renewDeadline",
                format!(
                    "must be greater than zero and less than lease.ttl ({:?}), got {:?}",
                    self.ttl, self.renew_deadline
                ),
            ));
        }
        if self.renew_interval < MILLISECOND || self.renew_interval >= self.renew_deadline {
            return Err(Error::invalid(
                "lease.renewInterval",
                format!(
                    "must be at least 1ms and less than lease.renewDeadline ({:?}), got {:?}",
                    self.renew_deadline, self.renew_interval
                ),
            ));
        }
        check_duration(
            "lease.retryInterval",
            self.retry_interval,
            MILLISECOND,
            self.ttl,
        )?;
        check_duration(
            "lease.callTimeout",
            self.call_timeout,
            MILLISECOND,
            self.ttl,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_scaled_configs_too() {
        LeaseConfig::default().validate().unwrap();
        for ms in [10, 11, 59, 600, 15_000, 3_600_000] {
            let c = LeaseConfig::new(Duration::from_millis(ms)).unwrap();
            assert!(c.renew_interval < c.renew_deadline && c.renew_deadline < c.ttl);
        }
        assert!(LeaseConfig::new(Duration::from_millis(9)).is_err());
        assert!(LeaseConfig::new(Duration::from_secs(3601)).is_err());
    }

    #[test]
    fn every_field_is_range_checked_by_name() {
        let base = LeaseConfig::default();
        let cases = [
            (
                LeaseConfig {
                    renew_deadline: base.ttl,
                    ..base.clone()
                },
                "lease.renewDeadline",
            ),
            (
                LeaseConfig {
                    renew_deadline: Duration::ZERO,
                    ..base.clone()
                },
                "lease.renewDeadline",
            ),
            (
                LeaseConfig {
                    renew_interval: base.renew_deadline,
                    ..base.clone()
                },
                "lease.renewInterval",
            ),
            (
                LeaseConfig {
                    retry_interval: Duration::ZERO,
                    ..base.clone()
                },
                "lease.retryInterval",
            ),
            (
                LeaseConfig {
                    call_timeout: base.ttl + MILLISECOND,
                    ..base.clone()
                },
                "lease.callTimeout",
            ),
            (
                LeaseConfig {
                    ttl: Duration::MAX,
                    ..base.clone()
                },
                "lease.ttl",
            ),
        ];
        for (cfg, field) in cases {
            match cfg.validate() {
                Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn bounds() {
        let c = LeaseConfig::default();
        assert_eq!(c.margin(), Duration::from_secs(5));
        assert_eq!(c.takeover_bound(), Duration::from_secs(22));
    }
}
