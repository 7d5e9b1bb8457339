//! Bans, lag bans and staleness estimates: pure state machines over an
//! explicit `now`, driven by the router's monitor and by query outcomes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use sysmanage_core::Backoff;

use super::lsn::Lsn;

/// Why a node is banned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BanReason {
    /// Not probed successfully yet (start-up, or added at runtime).
    NotProbed,
    /// A health probe failed or timed out.
    ProbeFailed,
    /// A query failed at the connection level.
    ConnectionError,
    /// Too many consecutive query errors.
    QueryErrors,
}

impl BanReason {
    /// A short, stable label.
    pub const fn label(self) -> &'static str {
        match self {
            Self::NotProbed => "not_probed",
            Self::ProbeFailed => "probe_failed",
            Self::ConnectionError => "connection_error",
            Self::QueryErrors => "query_errors",
        }
    }
}

/// An active ban.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ban {
    /// Why.
    pub reason: BanReason,
    /// The earliest moment a successful probe re-admits the node.
    pub until: Instant,
    /// Bans in a row (drives the backoff).
    pub strikes: u32,
}

/// What a health event did to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transition {
    /// Nothing changed.
    None,
    /// The node was banned (or its ban was extended).
    Banned(BanReason),
    /// The node was re-admitted.
    Unbanned,
}

/// Health of one node: ban state and error counters.
///
/// A ban lasts at least the backoff delay for its strike count and ends only
/// with a successful probe after that. The strike count (which grows the
/// backoff) is cleared only once the node has stayed healthy for the
/// backoff's cap ([`Backoff::max`]) since its last re-admission, so a node
/// that flaps (banned, re-admitted, banned again soon after) backs off
/// exponentially.
///
/// # Examples
/// ```
/// use std::time::{Duration, Instant};
/// use sysmanage_core::{Backoff, Jitter};
/// use sysmanage_db::replica::{BanReason, NodeHealth, Transition};
/// let backoff = Backoff::builder().initial(Duration::from_secs(1)).jitter(Jitter::None).build()?;
/// let t0 = Instant::now();
/// let mut h = NodeHealth::healthy();
/// assert_eq!(h.probe_failed(t0, &backoff, 0.5), Transition::Banned(BanReason::ProbeFailed));
/// assert_eq!(h.probe_ok(t0 + Duration::from_millis(999)), Transition::None); // too early
/// assert_eq!(h.probe_ok(t0 + Duration::from_secs(1)), Transition::Unbanned);
/// # Ok::<(), sysmanage_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct NodeHealth {
    ban: Option<Ban>,
    strikes: u32,
    consecutive_errors: u32,
    /// When the node was last re-admitted (or first seen healthy).
    healthy_since: Option<Instant>,
    /// How long it must stay healthy before its strikes are forgotten.
    reset_after: Duration,
    /// Probes that failed, ever.
    pub probe_failures: u64,
    /// Connection-level query failures, ever.
    pub connection_errors: u64,
    /// Other query failures, ever.
    pub query_errors: u64,
}

impl NodeHealth {
    /// A node that serves.
    pub fn healthy() -> Self {
        Self {
            ban: None,
            strikes: 0,
            consecutive_errors: 0,
            healthy_since: None,
            reset_after: Duration::ZERO,
            probe_failures: 0,
            connection_errors: 0,
            query_errors: 0,
        }
    }

    /// A node banned until its first successful probe.
    pub fn unprobed(now: Instant) -> Self {
        Self {
            ban: Some(Ban {
                reason: BanReason::NotProbed,
                until: now,
                strikes: 0,
            }),
            ..Self::healthy()
        }
    }

    /// The active ban, if any.
    pub fn ban(&self) -> Option<Ban> {
        self.ban
    }

    /// Whether the node is banned.
    pub fn is_banned(&self) -> bool {
        self.ban.is_some()
    }

    /// A probe succeeded at `now`.
    pub fn probe_ok(&mut self, now: Instant) -> Transition {
        self.consecutive_errors = 0;
        match self.ban {
            Some(ban) if now >= ban.until => {
                self.ban = None;
                self.healthy_since = Some(now);
                Transition::Unbanned
            }
            Some(_) => Transition::None,
            None => {
                let since = *self.healthy_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= self.reset_after {
                    self.strikes = 0;
                }
                Transition::None
            }
        }
    }

    /// A probe failed at `now`; `unit` is a uniform random number in `[0, 1)`
    /// for the backoff jitter.
    pub fn probe_failed(&mut self, now: Instant, backoff: &Backoff, unit: f64) -> Transition {
        self.probe_failures += 1;
        self.ban_for(BanReason::ProbeFailed, now, backoff, unit)
    }

    /// A query failed at the connection level at `now`.
    pub fn connection_error(&mut self, now: Instant, backoff: &Backoff, unit: f64) -> Transition {
        self.connection_errors += 1;
        self.ban_for(BanReason::ConnectionError, now, backoff, unit)
    }

    /// A query failed at the connection level for a reason that says nothing
    /// about the node's health (e.g. the client's own pool was saturated): it
    /// is counted with the connection errors but neither bans the node nor
    /// counts toward [`query_error`](Self::query_error)'s consecutive errors.
    pub fn transient_error(&mut self) {
        self.connection_errors += 1;
    }

    /// A query failed with an SQL error at `now`; bans after `max_consecutive`
    /// in a row.
    pub fn query_error(
        &mut self,
        now: Instant,
        max_consecutive: u32,
        backoff: &Backoff,
        unit: f64,
    ) -> Transition {
        self.query_errors += 1;
        self.consecutive_errors += 1;
        if self.consecutive_errors >= max_consecutive && self.ban.is_none() {
            self.consecutive_errors = 0;
            self.ban_for(BanReason::QueryErrors, now, backoff, unit)
        } else {
            Transition::None
        }
    }

    /// A query succeeded.
    pub fn query_ok(&mut self) {
        self.consecutive_errors = 0;
    }

    fn ban_for(
        &mut self,
        reason: BanReason,
        now: Instant,
        backoff: &Backoff,
        unit: f64,
    ) -> Transition {
        if self.ban.is_some_and(|b| b.reason != BanReason::NotProbed) {
            // Already banned: failures while down do not grow the backoff;
            // only flapping (banned again soon after re-admission) does.
            return Transition::None;
        }
        let until = saturating_add(now, backoff.delay(self.strikes, unit));
        self.strikes = self.strikes.saturating_add(1);
        self.reset_after = backoff.max();
        self.healthy_since = None;
        self.ban = Some(Ban {
            reason,
            until,
            strikes: self.strikes,
        });
        Transition::Banned(reason)
    }
}

/// `now + d`, or the latest representable moment not further than a year
/// ahead when `d` is absurdly large (it never panics).
fn saturating_add(now: Instant, d: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    now.checked_add(d)
        .or_else(|| now.checked_add(d.min(YEAR)))
        .unwrap_or(now)
}

/// Limits beyond which a replica is lag-banned for
/// [`Consistency::Any`](super::Consistency::Any) reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LagLimits {
    /// Bytes.
    pub max_bytes: Option<u64>,
    /// Time (only counted when bytes > 0).
    pub max_time: Option<Duration>,
    /// Re-admission below this fraction of the limits.
    pub recovery_ratio: f64,
}

/// One replica's lag, as input to [`lag_bans`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LagInput {
    /// Whether the replica would otherwise serve (not banned, not drained).
    pub available: bool,
    /// Currently lag-banned.
    pub lag_banned: bool,
    /// WAL bytes behind the primary; `None` when unknown (the primary's
    /// position has not been sampled yet), which leaves the lag ban as it is.
    pub lag_bytes: Option<u64>,
    /// Time lag (zero when `lag_bytes` is zero).
    pub lag_time: Duration,
}

/// Decides which replicas are lag-banned, with hysteresis and the
/// `min_serving` guard: a replica over a limit is banned; a banned one is
/// re-admitted only when under `recovery_ratio` × every limit; a replica
/// whose lag is unknown keeps its current state; and bans are lifted from the
/// least lagged replicas (known lag first) while fewer than `min_serving`
/// available replicas would serve.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use sysmanage_db::replica::{LagInput, LagLimits, lag_bans};
/// let limits = LagLimits { max_bytes: Some(1000), max_time: None, recovery_ratio: 0.5 };
/// let r = |lag, lag_banned| LagInput { available: true, lag_banned, lag_bytes: Some(lag), lag_time: Duration::ZERO };
/// assert_eq!(lag_bans(&[r(1500, false), r(10, false)], &limits, 0), [true, false]);
/// // hysteresis: 800 is under the limit but not under 500, so the ban stays
/// assert_eq!(lag_bans(&[r(800, true), r(10, false)], &limits, 0), [true, false]);
/// // the guard keeps two replicas serving: the least lagged banned one returns
/// assert_eq!(lag_bans(&[r(800, true), r(10, false)], &limits, 2), [false, false]);
/// ```
pub fn lag_bans(replicas: &[LagInput], limits: &LagLimits, min_serving: usize) -> Vec<bool> {
    let over = |r: &LagInput, scale: f64| {
        let Some(lag_bytes) = r.lag_bytes else {
            return r.lag_banned;
        };
        let bytes = limits
            .max_bytes
            .is_some_and(|m| lag_bytes as f64 > m as f64 * scale);
        let time = lag_bytes > 0
            && limits
                .max_time
                .is_some_and(|m| r.lag_time.as_secs_f64() > m.as_secs_f64() * scale);
        bytes || time
    };
    let mut banned: Vec<bool> = replicas
        .iter()
        .map(|r| {
            if r.lag_banned {
                over(r, limits.recovery_ratio)
            } else {
                over(r, 1.0)
            }
        })
        .collect();
    let serving = |banned: &[bool]| {
        replicas
            .iter()
            .zip(banned)
            .filter(|(r, b)| r.available && !**b)
            .count()
    };
    if serving(&banned) < min_serving {
        let mut order: Vec<usize> = (0..replicas.len())
            .filter(|&i| replicas[i].available && banned[i])
            .collect();
        order.sort_by_key(|&i| {
            let r = &replicas[i];
            (r.lag_bytes.is_none(), r.lag_bytes, r.lag_time)
        });
        for i in order {
            if serving(&banned) >= min_serving {
                break;
            }
            banned[i] = false;
        }
    }
    banned
}

/// Recent primary WAL positions with the moment each probe started, to bound
/// a replica's staleness in time.
///
/// A replica that has replayed a position `p` sampled when a probe started at
/// `t` holds every transaction committed before `t`, so it is at most
/// `now − t` stale. Keeps the last `capacity` samples.
///
/// # Examples
/// ```
/// use std::time::{Duration, Instant};
/// use sysmanage_db::replica::{Lsn, PrimaryHistory};
/// let t0 = Instant::now();
/// let mut h = PrimaryHistory::new(8);
/// h.push(t0, Lsn::new(100));
/// h.push(t0 + Duration::from_secs(1), Lsn::new(200));
/// assert_eq!(h.fresh_as_of(Lsn::new(150)), Some(t0));
/// assert_eq!(h.fresh_as_of(Lsn::new(200)), Some(t0 + Duration::from_secs(1)));
/// assert_eq!(h.fresh_as_of(Lsn::new(99)), None); // older than anything we know
/// ```
#[derive(Clone, Debug)]
pub struct PrimaryHistory {
    samples: VecDeque<(Instant, Lsn)>,
    capacity: usize,
}

impl PrimaryHistory {
    /// An empty history keeping up to `capacity` (at least 1) samples.
    pub fn new(capacity: usize) -> Self {
        Self {
            samples: VecDeque::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
        }
    }

    /// Records the primary's position `lsn` read by a probe that started at `at`.
    /// Out-of-order samples are ignored.
    pub fn push(&mut self, at: Instant, lsn: Lsn) {
        if let Some(&(t, l)) = self.samples.back()
            && (at < t || lsn < l)
        {
            return;
        }
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back((at, lsn));
    }

    /// The latest sampled position.
    pub fn latest(&self) -> Option<Lsn> {
        self.samples.back().map(|s| s.1)
    }

    /// Forgets everything (after the primary changed).
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// The start of the latest probe whose primary position `replay` has
    /// reached, or `None` when it is behind every sample.
    pub fn fresh_as_of(&self, replay: Lsn) -> Option<Instant> {
        self.samples
            .iter()
            .rev()
            .find(|(_, lsn)| *lsn <= replay)
            .map(|(t, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sysmanage_core::Jitter;

    fn backoff() -> Backoff {
        Backoff::builder()
            .initial(Duration::from_millis(100))
            .max(Duration::from_secs(2))
            .jitter(Jitter::None)
            .build()
            .unwrap()
    }

    #[test]
    fn ban_lasts_the_backoff_and_ends_with_a_probe() {
        let t0 = Instant::now();
        let b = backoff();
        let mut h = NodeHealth::healthy();
        assert_eq!(
            h.connection_error(t0, &b, 0.0),
            Transition::Banned(BanReason::ConnectionError)
        );
        assert_eq!(h.ban().unwrap().until, t0 + Duration::from_millis(100));
        // Time alone does not re-admit: only a successful probe after `until`.
        assert!(h.is_banned());
        assert_eq!(h.probe_ok(t0 + Duration::from_millis(99)), Transition::None);
        assert!(h.is_banned());
        assert_eq!(
            h.probe_ok(t0 + Duration::from_millis(100)),
            Transition::Unbanned
        );
        assert!(!h.is_banned());
    }

    #[test]
    fn flapping_backs_off_exponentially_up_to_the_cap() {
        let t0 = Instant::now();
        let b = backoff();
        let ms = |v: u64| Duration::from_millis(v);
        let mut h = NodeHealth::healthy();
        let mut t = t0;
        let mut got = Vec::new();
        for _ in 0..7 {
            assert!(matches!(h.probe_failed(t, &b, 0.0), Transition::Banned(_)));
            // More failures while banned neither extend nor grow the ban.
            assert_eq!(h.probe_failed(t + ms(1), &b, 0.0), Transition::None);
            let until = h.ban().unwrap().until;
            got.push(until - t);
            assert_eq!(h.probe_ok(until), Transition::Unbanned);
            t = until;
        }
        assert_eq!(
            got,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(2000),
                ms(2000)
            ]
        );
        // Staying healthy for the backoff's cap (2 s) resets the backoff.
        h.probe_ok(t + ms(1000));
        h.probe_ok(t + ms(2000));
        h.probe_failed(t + ms(2500), &b, 0.0);
        assert_eq!(h.ban().unwrap().until, t + ms(2600));
    }

    #[test]
    fn a_healthy_probe_between_bans_does_not_reset_the_backoff() {
        let t0 = Instant::now();
        let b = backoff();
        let ms = |v: u64| Duration::from_millis(v);
        let mut h = NodeHealth::healthy();
        let mut t = t0;
        let mut got = Vec::new();
        for _ in 0..4 {
            assert!(matches!(h.probe_failed(t, &b, 0.0), Transition::Banned(_)));
            let until = h.ban().unwrap().until;
            got.push(until - t);
            assert_eq!(h.probe_ok(until), Transition::Unbanned);
            // Serving again: one more healthy probe, then it flaps.
            assert_eq!(h.probe_ok(until + ms(100)), Transition::None);
            t = until + ms(200);
        }
        assert_eq!(got, [ms(100), ms(200), ms(400), ms(800)]);
    }

    #[test]
    fn huge_backoffs_do_not_panic() {
        let b = Backoff::builder()
            .initial(sysmanage_core::duration::DAY)
            .max(sysmanage_core::duration::DAY)
            .jitter(Jitter::None)
            .build()
            .unwrap();
        let t0 = Instant::now();
        let mut h = NodeHealth::healthy();
        assert!(matches!(h.probe_failed(t0, &b, 0.5), Transition::Banned(_)));
        assert!(h.ban().unwrap().until > t0);
    }

    #[test]
    fn unknown_lag_keeps_the_lag_ban_state() {
        let limits = LagLimits {
            max_bytes: Some(100),
            max_time: Some(Duration::from_secs(1)),
            recovery_ratio: 0.5,
        };
        let mut banned = lag(500, 60, true);
        banned.lag_bytes = None;
        let mut serving = lag(0, 0, false);
        serving.lag_bytes = None;
        assert_eq!(lag_bans(&[banned, serving], &limits, 0), [true, false]);
    }

    #[test]
    fn query_errors_ban_only_when_consecutive() {
        let t0 = Instant::now();
        let b = backoff();
        let mut h = NodeHealth::healthy();
        for _ in 0..4 {
            assert_eq!(h.query_error(t0, 3, &b, 0.0), Transition::None);
            h.query_ok();
        }
        assert_eq!(h.query_error(t0, 3, &b, 0.0), Transition::None);
        assert_eq!(h.query_error(t0, 3, &b, 0.0), Transition::None);
        assert_eq!(
            h.query_error(t0, 3, &b, 0.0),
            Transition::Banned(BanReason::QueryErrors)
        );
        assert_eq!(h.query_errors, 7);
    }

    #[test]
    fn unprobed_nodes_need_a_probe() {
        let t0 = Instant::now();
        let mut h = NodeHealth::unprobed(t0);
        assert_eq!(h.ban().unwrap().reason, BanReason::NotProbed);
        assert_eq!(h.probe_ok(t0), Transition::Unbanned);
    }

    fn lag(bytes: u64, secs: u64, lag_banned: bool) -> LagInput {
        LagInput {
            available: true,
            lag_banned,
            lag_bytes: Some(bytes),
            lag_time: Duration::from_secs(secs),
        }
    }

    #[test]
    fn time_lag_counts_only_with_byte_lag() {
        let limits = LagLimits {
            max_bytes: None,
            max_time: Some(Duration::from_secs(5)),
            recovery_ratio: 0.5,
        };
        // An idle primary: replay timestamp is old but nothing is missing.
        assert_eq!(lag_bans(&[lag(0, 60, false)], &limits, 0), [false]);
        assert_eq!(lag_bans(&[lag(1, 60, false)], &limits, 0), [true]);
        // Hysteresis on time: 4 s is under 5 s but not under 2.5 s.
        assert_eq!(lag_bans(&[lag(1, 4, true)], &limits, 0), [true]);
        assert_eq!(lag_bans(&[lag(1, 2, true)], &limits, 0), [false]);
    }

    #[test]
    fn guard_keeps_the_least_lagged_serving_and_ignores_unavailable() {
        let limits = LagLimits {
            max_bytes: Some(100),
            max_time: None,
            recovery_ratio: 1.0,
        };
        let mut down = lag(0, 0, false);
        down.available = false;
        let r = [
            lag(500, 0, false),
            lag(300, 0, false),
            lag(900, 0, false),
            down,
        ];
        assert_eq!(lag_bans(&r, &limits, 0), [true, true, true, false]);
        assert_eq!(lag_bans(&r, &limits, 1), [true, false, true, false]);
        assert_eq!(lag_bans(&r, &limits, 2), [false, false, true, false]);
        assert_eq!(lag_bans(&r, &limits, 9), [false, false, false, false]);
    }

    proptest! {
        #[test]
        fn ban_never_exceeds_backoff_cap(units in proptest::collection::vec(0.0f64..1.0, 1..30)) {
            let t0 = Instant::now();
            let b = Backoff::default();
            let mut h = NodeHealth::healthy();
            for u in units {
                h.probe_failed(t0, &b, u);
                let d = h.ban().unwrap().until - t0;
                prop_assert!(d <= b.max());
            }
        }

        #[test]
        fn guard_reaches_min_serving_when_possible(
            lags in proptest::collection::vec((0u64..2000, any::<bool>(), any::<bool>()), 0..12),
            min in 0usize..6,
        ) {
            let limits = LagLimits { max_bytes: Some(1000), max_time: None, recovery_ratio: 0.5 };
            let input: Vec<LagInput> = lags.iter().map(|&(b, banned, avail)| LagInput {
                available: avail, lag_banned: banned, lag_bytes: Some(b), lag_time: Duration::ZERO,
            }).collect();
            let out = lag_bans(&input, &limits, min);
            let available = input.iter().filter(|r| r.available).count();
            let serving = input.iter().zip(&out).filter(|(r, b)| r.available && !**b).count();
            prop_assert!(serving >= min.min(available));
            // Nothing under the recovery threshold is ever banned.
            for (r, b) in input.iter().zip(&out) {
                if r.lag_bytes.is_some_and(|l| l <= 500) { prop_assert!(!b); }
            }
        }

        #[test]
        fn fresh_as_of_is_a_sample_the_replica_reached(
            steps in proptest::collection::vec((1u64..100, 0u64..1000), 1..40),
            replay in 0u64..50_000,
        ) {
            let t0 = Instant::now();
            let mut h = PrimaryHistory::new(16);
            let (mut t, mut l) = (t0, 0u64);
            let mut all = Vec::new();
            for (dt, dl) in steps {
                t += Duration::from_millis(dt);
                l += dl;
                h.push(t, Lsn::new(l));
                all.push((t, l));
            }
            let kept = &all[all.len().saturating_sub(16)..];
            let want = kept.iter().rev().find(|(_, lsn)| *lsn <= replay).map(|(t, _)| *t);
            prop_assert_eq!(h.fresh_as_of(Lsn::new(replay)), want);
        }
    }
}
