//! A circuit breaker as a pure state machine over an explicit `now`.
//!
//! ```text
//!            N consecutive failures, or failure ratio ≥ r
//!            over the window with ≥ min_calls calls
//!   Closed ───────────────────────────────────────────► Open
//!     ▲                                                  │ cool-down elapsed
//!     │ all trial calls succeeded                        ▼
//!     └────────────────────────────────────────────── HalfOpen
//!                    any trial call failed ──► Open (cool-down again)
//! ```
//!
//! The breaker never reads a clock: every method takes `now`, so tests drive
//! it with constructed [`Instant`]s and hosts wrap it in whatever lock suits
//! them.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use crate::duration::{DAY, MILLISECOND, check_duration};
use crate::error::{Error, Result, ensure_finite};

/// Number of buckets the failure-ratio window is divided into.
const WINDOW_BUCKETS: u32 = 10;

/// Open the circuit when the share of failed calls over a sliding window
/// reaches `ratio`, once at least `min_calls` calls were seen in it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureRatio {
    /// Failure share in `(0, 1]` that opens the circuit.
    pub ratio: f64,
    /// Minimum calls in the window before the ratio is judged.
    pub min_calls: u32,
    /// Length of the sliding window (counted in 10 buckets).
    #[serde(with = "crate::duration::serde_human")]
    pub window: Duration,
}

/// Circuit breaker settings.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit. Default: 5.
    pub consecutive_failures: NonZeroU32,
    /// Optional failure-ratio trigger. Default: none.
    pub failure_ratio: Option<FailureRatio>,
    /// How long the circuit stays open before trial calls. Default: 30 s.
    #[serde(with = "crate::duration::serde_human")]
    pub cool_down: Duration,
    /// Trial calls admitted while half-open; all must succeed to close. Default: 1.
    pub half_open_max_calls: NonZeroU32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: NonZeroU32::new(5).expect("non-zero literal"),
            failure_ratio: None,
            cool_down: Duration::from_secs(30),
            half_open_max_calls: NonZeroU32::MIN,
        }
    }
}

impl BreakerConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero cool-down, a ratio outside `(0, 1]`,
    /// a zero window or zero `min_calls`; [`Error::NonFinite`] for a NaN ratio.
    pub fn validate(&self) -> Result<()> {
        check_duration("breaker.cool_down", self.cool_down, MILLISECOND, DAY)?;
        if let Some(fr) = &self.failure_ratio {
            ensure_finite("breaker.failure_ratio.ratio", fr.ratio)?;
            if !(fr.ratio > 0.0 && fr.ratio <= 1.0) {
                return Err(Error::invalid(
                    "breaker.failure_ratio.ratio",
                    format!("must be in (0, 1], got {}", fr.ratio),
                ));
            }
            if fr.min_calls == 0 {
                return Err(Error::invalid(
                    "breaker.failure_ratio.min_calls",
                    "must be at least 1",
                ));
            }
            check_duration("breaker.failure_ratio.window", fr.window, MILLISECOND, DAY)?;
        }
        Ok(())
    }
}

/// The breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls flow; failures are counted.
    Closed,
    /// Calls are rejected until the cool-down ends.
    Open,
    /// A bounded number of trial calls may run.
    HalfOpen,
}

#[derive(Clone, Copy, Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { admitted: u32, succeeded: u32 },
}

/// A serialisable snapshot of a breaker.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct BreakerStatus {
    /// Current state.
    pub state: CircuitState,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Calls in the failure-ratio window.
    pub window_calls: u64,
    /// Failures in the failure-ratio window.
    pub window_failures: u64,
    /// Time until trial calls are admitted, when open.
    pub retry_in: Option<Duration>,
    /// How many times the circuit has opened.
    pub times_opened: u64,
}

/// A circuit breaker; see the [module docs](self).
///
/// # Examples
/// ```
/// use std::num::NonZeroU32;
/// use std::time::{Duration, Instant};
/// use sysmanage_core::{BreakerConfig, CircuitBreaker, CircuitState};
///
/// let mut config = BreakerConfig::default();
/// config.consecutive_failures = NonZeroU32::new(2).unwrap();
/// config.cool_down = Duration::from_secs(10);
/// let mut breaker = CircuitBreaker::new(config)?;
/// let t0 = Instant::now();
///
/// breaker.try_acquire(t0)?;
/// breaker.record_failure(t0);
/// breaker.try_acquire(t0)?;
/// breaker.record_failure(t0);
/// assert_eq!(breaker.state(t0), CircuitState::Open);
/// assert!(breaker.try_acquire(t0).is_err());
///
/// let later = t0 + Duration::from_secs(10);
/// breaker.try_acquire(later)?; // the trial call
/// breaker.record_success(later);
/// assert_eq!(breaker.state(later), CircuitState::Closed);
/// # Ok::<(), sysmanage_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: State,
    consecutive_failures: u32,
    times_opened: u64,
    window: Window,
}

impl CircuitBreaker {
    /// A closed breaker.
    ///
    /// # Errors
    /// As [`BreakerConfig::validate`].
    pub fn new(config: BreakerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            window: Window::new(config.failure_ratio.map(|f| f.window)),
            config,
            state: State::Closed,
            consecutive_failures: 0,
            times_opened: 0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The state at `now` (an open breaker whose cool-down has passed reports
    /// `HalfOpen`).
    pub fn state(&self, now: Instant) -> CircuitState {
        match self.state {
            State::Closed => CircuitState::Closed,
            State::Open { until } if now >= until => CircuitState::HalfOpen,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Asks to make a call at `now`. Every `Ok` must be followed by exactly
    /// one [`record_success`](Self::record_success) or
    /// [`record_failure`](Self::record_failure).
    ///
    /// # Errors
    /// [`Error::CircuitOpen`] with the time left when the circuit is open or
    /// all half-open trial slots are taken.
    pub fn try_acquire(&mut self, now: Instant) -> Result<()> {
        match self.state {
            State::Closed => Ok(()),
            State::Open { until } if now < until => Err(Error::CircuitOpen {
                retry_in: until - now,
            }),
            State::Open { .. } => {
                self.state = State::HalfOpen {
                    admitted: 1,
                    succeeded: 0,
                };
                tracing::debug!(target: "sysmanage_core::breaker", "circuit half-open");
                Ok(())
            }
            State::HalfOpen {
                admitted,
                succeeded,
            } => {
                if admitted < self.config.half_open_max_calls.get() {
                    self.state = State::HalfOpen {
                        admitted: admitted + 1,
                        succeeded,
                    };
                    Ok(())
                } else {
                    Err(Error::CircuitOpen {
                        retry_in: Duration::ZERO,
                    })
                }
            }
        }
    }

    /// Records a successful call.
    pub fn record_success(&mut self, now: Instant) {
        self.consecutive_failures = 0;
        self.window.record(now, false);
        if let State::HalfOpen {
            admitted,
            succeeded,
        } = self.state
        {
            let succeeded = succeeded + 1;
            if succeeded >= self.config.half_open_max_calls.get() {
                self.close();
            } else {
                self.state = State::HalfOpen {
                    admitted,
                    succeeded,
                };
            }
        }
    }

    /// Records a failed call.
    pub fn record_failure(&mut self, now: Instant) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.window.record(now, true);
        match self.state {
            State::HalfOpen { .. } => self.open(now),
            State::Closed => {
                let by_count = self.consecutive_failures >= self.config.consecutive_failures.get();
                let by_ratio = self.config.failure_ratio.is_some_and(|fr| {
                    let (calls, failures) = self.window.totals(now);
                    calls >= u64::from(fr.min_calls) && failures as f64 >= fr.ratio * calls as f64
                });
                if by_count || by_ratio {
                    self.open(now);
                }
            }
            State::Open { .. } => {}
        }
    }

    /// Forces the breaker closed and forgets its counts.
    pub fn reset(&mut self) {
        self.close();
        self.window.clear();
    }

    /// A serialisable snapshot at `now`.
    pub fn status(&self, now: Instant) -> BreakerStatus {
        let (window_calls, window_failures) = self.window.totals(now);
        BreakerStatus {
            state: self.state(now),
            consecutive_failures: self.consecutive_failures,
            window_calls,
            window_failures,
            retry_in: match self.state {
                State::Open { until } => Some(until.saturating_duration_since(now)),
                _ => None,
            },
            times_opened: self.times_opened,
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = State::Open {
            until: crate::duration::deadline(now, self.config.cool_down),
        };
        self.times_opened += 1;
        tracing::debug!(
            target: "sysmanage_core::breaker",
            consecutive_failures = self.consecutive_failures,
            "circuit opened"
        );
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.consecutive_failures = 0;
        self.window.clear();
    }
}

/// A sliding window of call outcomes kept as fixed-width buckets, so memory
/// is bounded whatever the call rate.
#[derive(Clone, Debug)]
struct Window {
    bucket_width: Option<Duration>,
    origin: Option<Instant>,
    /// (bucket index, calls, failures), oldest first.
    buckets: VecDeque<(u64, u64, u64)>,
}

impl Window {
    fn new(window: Option<Duration>) -> Self {
        Self {
            bucket_width: window.map(|w| (w / WINDOW_BUCKETS).max(Duration::from_nanos(1))),
            origin: None,
            buckets: VecDeque::with_capacity(WINDOW_BUCKETS as usize + 1),
        }
    }

    fn index(&mut self, now: Instant) -> Option<u64> {
        let width = self.bucket_width?;
        let origin = *self.origin.get_or_insert(now);
        Some((now.saturating_duration_since(origin).as_nanos() / width.as_nanos()) as u64)
    }

    fn record(&mut self, now: Instant, failed: bool) {
        let Some(idx) = self.index(now) else { return };
        self.evict(idx);
        match self.buckets.back_mut() {
            Some(b) if b.0 >= idx => {
                b.1 += 1;
                b.2 += u64::from(failed);
            }
            _ => self.buckets.push_back((idx, 1, u64::from(failed))),
        }
    }

    fn evict(&mut self, idx: u64) {
        while self
            .buckets
            .front()
            .is_some_and(|b| b.0 + u64::from(WINDOW_BUCKETS) <= idx)
        {
            self.buckets.pop_front();
        }
    }

    fn totals(&self, now: Instant) -> (u64, u64) {
        let (Some(width), Some(origin)) = (self.bucket_width, self.origin) else {
            return (0, 0);
        };
        let idx = (now.saturating_duration_since(origin).as_nanos() / width.as_nanos()) as u64;
        self.buckets
            .iter()
            .filter(|b| b.0 + u64::from(WINDOW_BUCKETS) > idx)
            .fold((0, 0), |(c, f), b| (c + b.1, f + b.2))
    }

    fn clear(&mut self) {
        self.buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn breaker(n: u32, cool: u64, trials: u32) -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            consecutive_failures: NonZeroU32::new(n).unwrap(),
            cool_down: Duration::from_secs(cool),
            half_open_max_calls: NonZeroU32::new(trials).unwrap(),
            ..BreakerConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn rejects_bad_config() {
        let c = BreakerConfig {
            cool_down: Duration::ZERO,
            ..BreakerConfig::default()
        };
        assert!(CircuitBreaker::new(c).is_err());
        for ratio in [0.0, -0.1, 1.5, f64::NAN] {
            let c = BreakerConfig {
                failure_ratio: Some(FailureRatio {
                    ratio,
                    min_calls: 10,
                    window: Duration::from_secs(10),
                }),
                ..BreakerConfig::default()
            };
            assert!(CircuitBreaker::new(c).is_err(), "ratio {ratio}");
        }
    }

    #[test]
    fn success_resets_consecutive_count() {
        let t = Instant::now();
        let mut b = breaker(3, 5, 1);
        for _ in 0..10 {
            b.record_failure(t);
            b.record_failure(t);
            b.record_success(t);
        }
        assert_eq!(b.state(t), CircuitState::Closed);
        b.record_failure(t);
        b.record_failure(t);
        b.record_failure(t);
        assert_eq!(b.state(t), CircuitState::Open);
        let err = b.try_acquire(t + Duration::from_secs(2)).unwrap_err();
        assert!(
            matches!(err, Error::CircuitOpen { retry_in } if retry_in == Duration::from_secs(3))
        );
    }

    #[test]
    fn half_open_admits_bounded_trials() {
        let t = Instant::now();
        let mut b = breaker(1, 5, 2);
        b.record_failure(t);
        let t1 = t + Duration::from_secs(5);
        assert_eq!(b.state(t1), CircuitState::HalfOpen);
        b.try_acquire(t1).unwrap();
        b.try_acquire(t1).unwrap();
        assert!(b.try_acquire(t1).is_err(), "third trial admitted");
        b.record_success(t1);
        assert_eq!(b.state(t1), CircuitState::HalfOpen);
        b.record_success(t1);
        assert_eq!(b.state(t1), CircuitState::Closed);
        assert_eq!(b.status(t1).times_opened, 1);
    }

    #[test]
    fn failed_trial_reopens_for_a_full_cool_down() {
        let t = Instant::now();
        let mut b = breaker(1, 5, 1);
        b.record_failure(t);
        let t1 = t + Duration::from_secs(6);
        b.try_acquire(t1).unwrap();
        b.record_failure(t1);
        assert_eq!(b.state(t1), CircuitState::Open);
        assert_eq!(b.status(t1).retry_in, Some(Duration::from_secs(5)));
        assert_eq!(b.state(t1 + Duration::from_secs(5)), CircuitState::HalfOpen);
    }

    #[test]
    fn ratio_trigger_needs_min_calls_and_forgets_old_buckets() {
        let t = Instant::now();
        let mut b = CircuitBreaker::new(BreakerConfig {
            consecutive_failures: NonZeroU32::new(1000).unwrap(),
            failure_ratio: Some(FailureRatio {
                ratio: 0.5,
                min_calls: 10,
                window: Duration::from_secs(10),
            }),
            ..BreakerConfig::default()
        })
        .unwrap();
        // 4 failures of 8 calls: ratio met but too few calls.
        for i in 0..8 {
            if i % 2 == 0 {
                b.record_failure(t);
            } else {
                b.record_success(t);
            }
        }
        assert_eq!(b.state(t), CircuitState::Closed);
        // 20 s later the old calls have left the window.
        let t2 = t + Duration::from_secs(20);
        assert_eq!(b.status(t2).window_calls, 0);
        for _ in 0..6 {
            b.record_success(t2);
        }
        for _ in 0..4 {
            b.record_failure(t2);
        }
        assert_eq!(b.state(t2), CircuitState::Closed, "4/10 < 0.5");
        b.record_failure(t2);
        b.record_failure(t2);
        assert_eq!(b.state(t2), CircuitState::Open, "6/12 >= 0.5");
    }

    #[derive(Clone, Debug)]
    enum Op {
        Acquire,
        Success,
        Failure,
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Acquire),
            Just(Op::Success),
            Just(Op::Failure),
            (0u64..20_000).prop_map(Op::Wait),
        ]
    }

    proptest! {
        /// Transitions follow the documented diagram whatever the call sequence.
        #[test]
        fn transitions_are_legal(ops in proptest::collection::vec(op(), 1..200), n in 1u32..5, trials in 1u32..4) {
            let mut b = breaker(n, 5, trials);
            let mut now = Instant::now();
            let mut admitted_half_open = 0;
            for op in ops {
                let before = b.state(now);
                match op {
                    Op::Acquire => {
                        let res = b.try_acquire(now);
                        match before {
                            CircuitState::Closed => prop_assert!(res.is_ok()),
                            CircuitState::Open => prop_assert!(res.is_err()),
                            CircuitState::HalfOpen => {
                                if res.is_ok() { admitted_half_open += 1; }
                                prop_assert!(admitted_half_open <= trials);
                            }
                        }
                    }
                    Op::Success => {
                        b.record_success(now);
                        let after = b.state(now);
                        prop_assert!(after != CircuitState::Open || before == CircuitState::Open);
                    }
                    Op::Failure => {
                        let in_trial = matches!(b.state, State::HalfOpen { .. });
                        b.record_failure(now);
                        let after = b.state(now);
                        if in_trial {
                            prop_assert_eq!(after, CircuitState::Open, "a failed trial must reopen");
                        }
                        if before == CircuitState::Closed && after == CircuitState::Open {
                            prop_assert!(b.status(now).consecutive_failures >= n);
                        }
                    }
                    Op::Wait(ms) => now += Duration::from_millis(ms),
                }
                if b.state(now) != CircuitState::HalfOpen { admitted_half_open = 0; }
                if let State::HalfOpen { admitted, .. } = b.state { admitted_half_open = admitted; }
            }
        }
    }
}
