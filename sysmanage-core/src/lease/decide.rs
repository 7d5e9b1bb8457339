//! The lease's decisions as pure functions of `now`: when a term ends, when
//! to renew, what a renewal's outcome means, how long a call may take.
//! The [`Elector`](super::Elector) only sleeps, calls the backend and
//! applies these.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::config::LeaseConfig;
use crate::duration::deadline;

/// Why a leader stopped leading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepDown {
    /// [`Elector::resign`](super::Elector::resign) or
    /// [`Elector::stop`](super::Elector::stop) was called.
    Resigned,
    /// The backend said the term is over: the lease expired on the server,
    /// another holder took it, or the session that held it is gone.
    Lost,
    /// No renewal succeeded before the term's deadline (the backend was
    /// unreachable or too slow, or the leader's task was not running).
    DeadlinePassed,
}

impl StepDown {
    /// A short, stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Resigned => "resigned",
            Self::Lost => "lost",
            Self::DeadlinePassed => "deadline_passed",
        }
    }
}

/// The end of the term that a grant or renewal *sent* at `sent_at`
/// started or extended: `sent_at + renew_deadline`. Counting from the send
/// (not from the reply) makes the local term end before the server's
/// `ttl`, which the server counts from when it handled the call.
pub fn term_deadline(sent_at: Instant, cfg: &LeaseConfig) -> Instant {
    deadline(sent_at, cfg.renew_deadline)
}

/// Whether a term ending at `deadline` still allows acting at `now`.
pub fn is_valid(now: Instant, deadline: Instant) -> bool {
    now < deadline
}

/// How long a backend call started at `now` may take: at most
/// `call_timeout`, and never past the term's `deadline` when there is one.
/// `None` when the deadline has passed.
pub fn call_budget(
    now: Instant,
    deadline: Option<Instant>,
    call_timeout: Duration,
) -> Option<Duration> {
    match deadline {
        None => Some(call_timeout),
        Some(d) if now < d => Some(call_timeout.min(d - now)),
        Some(_) => None,
    }
}

/// What a renewal call returned, as the driver saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewResult {
    /// The backend extended the term.
    Renewed,
    /// The backend said the term is over.
    Lost,
    /// The call failed or timed out; the term may or may not be extended.
    Failed,
}

/// What a leader does after a renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderNext {
    /// Keep leading until `deadline`; renew again at `renew_at`.
    Lead {
        /// The term's (possibly extended) deadline.
        deadline: Instant,
        /// When to send the next renewal.
        renew_at: Instant,
    },
    /// Stop acting now.
    StepDown(StepDown),
}

/// The leader's decision after a renewal sent at `sent_at` returned
/// `result` at `now`, for a term that ended at `deadline` before it.
///
/// A successful renewal moves the deadline to `sent_at + renew_deadline`
/// and schedules the next one `renew_interval` after the send. A failed one
/// keeps the old deadline and retries after a quarter of `renew_interval`
/// (at least 1 ms), as long as the deadline has not passed; a lost term
/// ends at once.
///
/// # Examples
/// ```
/// use std::time::{Duration, Instant};
/// use sysmanage_core::lease::{LeaseConfig, LeaderNext, RenewResult, StepDown, after_renew};
/// let cfg = LeaseConfig::default(); // 10 s deadline, 2 s renewals
/// let t0 = Instant::now();
/// let old = t0 + Duration::from_secs(3);
/// let next = after_renew(&cfg, t0, t0 + Duration::from_millis(40), RenewResult::Renewed, old);
/// assert_eq!(next, LeaderNext::Lead { deadline: t0 + Duration::from_secs(10), renew_at: t0 + Duration::from_secs(2) });
/// let late = after_renew(&cfg, t0, old, RenewResult::Failed, old);
/// assert_eq!(late, LeaderNext::StepDown(StepDown::DeadlinePassed));
/// ```
pub fn after_renew(
    cfg: &LeaseConfig,
    sent_at: Instant,
    now: Instant,
    result: RenewResult,
    old_deadline: Instant,
) -> LeaderNext {
    match result {
        RenewResult::Renewed => {
            let new_deadline = term_deadline(sent_at, cfg).max(old_deadline);
            if !is_valid(now, new_deadline) {
                return LeaderNext::StepDown(StepDown::DeadlinePassed);
            }
            LeaderNext::Lead {
                deadline: new_deadline,
                renew_at: deadline(sent_at, cfg.renew_interval),
            }
        }
        RenewResult::Lost => LeaderNext::StepDown(StepDown::Lost),
        RenewResult::Failed if !is_valid(now, old_deadline) => {
            LeaderNext::StepDown(StepDown::DeadlinePassed)
        }
        RenewResult::Failed => {
            let backoff = (cfg.renew_interval / 4).max(Duration::from_millis(1));
            LeaderNext::Lead {
                deadline: old_deadline,
                renew_at: deadline(now, backoff).min(old_deadline),
            }
        }
    }
}

/// The decision after a grant sent at `sent_at` came back at `now`: lead
/// until the returned deadline, or (when the call took so long that the
/// deadline has already passed) do not lead at all.
pub fn after_grant(cfg: &LeaseConfig, sent_at: Instant, now: Instant) -> Option<Instant> {
    let d = term_deadline(sent_at, cfg);
    is_valid(now, d).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn renewed_extends_from_the_send_not_the_reply() {
        let cfg = LeaseConfig::new(ms(600)).unwrap(); // 400 ms deadline, 100 ms renew
        let t0 = Instant::now();
        match after_renew(&cfg, t0, t0 + ms(90), RenewResult::Renewed, t0 + ms(50)) {
            LeaderNext::Lead { deadline, renew_at } => {
                assert_eq!(deadline, t0 + ms(400));
                assert_eq!(renew_at, t0 + ms(100));
            }
            other => panic!("{other:?}"),
        }
        // a renewal whose reply came after its own deadline does not count
        assert_eq!(
            after_renew(&cfg, t0, t0 + ms(400), RenewResult::Renewed, t0 + ms(10)),
            LeaderNext::StepDown(StepDown::DeadlinePassed)
        );
    }

    #[test]
    fn failures_retry_until_the_deadline_and_loss_is_immediate() {
        let cfg = LeaseConfig::new(ms(600)).unwrap();
        let t0 = Instant::now();
        let d = t0 + ms(300);
        assert_eq!(
            after_renew(&cfg, t0, t0 + ms(5), RenewResult::Failed, d),
            LeaderNext::Lead {
                deadline: d,
                renew_at: t0 + ms(30)
            }
        );
        // the retry never lands after the deadline
        assert_eq!(
            after_renew(&cfg, t0, t0 + ms(290), RenewResult::Failed, d),
            LeaderNext::Lead {
                deadline: d,
                renew_at: d
            }
        );
        assert_eq!(
            after_renew(&cfg, t0, t0 + ms(300), RenewResult::Failed, d),
            LeaderNext::StepDown(StepDown::DeadlinePassed)
        );
        assert_eq!(
            after_renew(&cfg, t0, t0 + ms(1), RenewResult::Lost, d),
            LeaderNext::StepDown(StepDown::Lost)
        );
    }

    #[test]
    fn budgets_never_reach_past_the_deadline() {
        let t0 = Instant::now();
        assert_eq!(call_budget(t0, None, ms(50)), Some(ms(50)));
        assert_eq!(call_budget(t0, Some(t0 + ms(20)), ms(50)), Some(ms(20)));
        assert_eq!(call_budget(t0, Some(t0 + ms(80)), ms(50)), Some(ms(50)));
        assert_eq!(call_budget(t0 + ms(20), Some(t0 + ms(20)), ms(50)), None);
        let cfg = LeaseConfig::new(ms(600)).unwrap();
        assert_eq!(after_grant(&cfg, t0, t0 + ms(10)), Some(t0 + ms(400)));
        assert_eq!(after_grant(&cfg, t0, t0 + ms(400)), None);
    }

    proptest::proptest! {
        /// Whatever the timing, a leader never extends its term past
        /// `send + renew_deadline`, never schedules a renewal past its
        /// deadline, and never leads once the deadline has passed.
        #[test]
        fn decisions_never_reach_past_the_term(
            ttl_ms in 10u64..3_600_000,
            sent_ms in 0u64..10_000_000,
            reply_ms in 0u64..10_000_000,
            old_ms in 0u64..10_000_000,
            result in 0u8..3,
        ) {
            let cfg = LeaseConfig::new(ms(ttl_ms)).unwrap();
            let t0 = Instant::now();
            let sent = t0 + ms(sent_ms);
            let now = sent + ms(reply_ms);
            let old = t0 + ms(old_ms);
            let result = [RenewResult::Renewed, RenewResult::Lost, RenewResult::Failed][usize::from(result)];
            match after_renew(&cfg, sent, now, result, old) {
                LeaderNext::Lead { deadline, renew_at } => {
                    proptest::prop_assert!(now < deadline);
                    proptest::prop_assert!(deadline <= old.max(sent + cfg.renew_deadline));
                    proptest::prop_assert!(renew_at <= deadline || result == RenewResult::Renewed);
                    proptest::prop_assert!(result != RenewResult::Lost);
                }
                LeaderNext::StepDown(_) => {}
            }
            if let Some(d) = after_grant(&cfg, sent, now) {
                proptest::prop_assert!(now < d && d == sent + cfg.renew_deadline);
            }
            if let Some(b) = call_budget(now, Some(old), cfg.call_timeout) {
                proptest::prop_assert!(now + b <= old && b <= cfg.call_timeout);
            }
        }
    }

    #[test]
    fn the_local_term_ends_before_the_server_lease_under_the_margin() {
        // Server handles the grant `delay` after the send and keeps it for
        // ttl; the leader's clock runs slow by `drift`: its deadline, in
        // real time, is renew_deadline * (1 + drift) after the send.
        let cfg = LeaseConfig::default();
        for delay_ms in [0u64, 10, 1000] {
            for drift in [0.0, 0.1, 0.49] {
                let local_end = cfg.renew_deadline.as_secs_f64() * (1.0 + drift);
                let server_end = delay_ms as f64 / 1000.0 + cfg.ttl.as_secs_f64();
                assert!(local_end < server_end, "{delay_ms} ms, drift {drift}");
            }
        }
    }
}
