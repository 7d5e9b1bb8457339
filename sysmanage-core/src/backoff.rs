//! Exponential backoff with jitter.
//!
//! [`Backoff`] is validated configuration and a pure function from an attempt
//! number and a uniform random number to a delay, so it can be tested without
//! sleeping. [`BackoffIter`] is the stateful iterator most callers use; it
//! draws randomness from a small seedable generator ([`SplitMix64`]).
//!
//! The jitter modes follow the well-known "exponential backoff and jitter"
//! analysis: `Full` spreads retries the most and is the default.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::duration::{DAY, check_duration};
use crate::error::{Error, Result, ensure_finite, ensure_nonzero};

/// How randomness is mixed into each delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness: `min(max, initial × multiplier^attempt)`.
    None,
    /// Uniform in `[0, capped]`.
    #[default]
    Full,
    /// Uniform in `[capped / 2, capped]`.
    Equal,
    /// Uniform in `[initial, min(max, previous × 3)]`; needs the previous delay,
    /// so it is only available through [`BackoffIter`].
    Decorrelated,
}

/// Validated exponential backoff settings.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use sysmanage_core::{Backoff, Jitter};
///
/// let backoff = Backoff::builder()
///     .initial(Duration::from_millis(100))
///     .max(Duration::from_secs(2))
///     .jitter(Jitter::None)
///     .max_retries(4)
///     .build()?;
/// let delays: Vec<_> = backoff.iter(7).collect();
/// assert_eq!(delays, [100, 200, 400, 800].map(Duration::from_millis));
/// # Ok::<(), sysmanage_core::Error>(())
/// ```
///
/// In a config file it reads (every field optional, defaults as
/// [`Backoff::default`], validated as [`BackoffBuilder::build`] does):
/// `{ initial = "20ms", max = "400ms", multiplier = 2, jitter = "equal", max_retries = 12 }`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "BackoffConfig")]
pub struct Backoff {
    #[serde(with = "crate::duration::serde_human")]
    initial: Duration,
    #[serde(with = "crate::duration::serde_human")]
    max: Duration,
    multiplier: f64,
    jitter: Jitter,
    max_retries: Option<NonZeroU32>,
}

/// The file form of a [`Backoff`], validated into one by the builder.
#[derive(serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct BackoffConfig {
    #[serde(with = "crate::duration::serde_human")]
    initial: Duration,
    #[serde(with = "crate::duration::serde_human")]
    max: Duration,
    multiplier: f64,
    jitter: Jitter,
    max_retries: Option<u32>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        let d = Backoff::default();
        Self {
            initial: d.initial,
            max: d.max,
            multiplier: d.multiplier,
            jitter: d.jitter,
            max_retries: None,
        }
    }
}

impl TryFrom<BackoffConfig> for Backoff {
    type Error = Error;

    fn try_from(c: BackoffConfig) -> Result<Self> {
        let mut b = Backoff::builder()
            .initial(c.initial)
            .max(c.max)
            .multiplier(c.multiplier)
            .jitter(c.jitter);
        if let Some(n) = c.max_retries {
            b = b.max_retries(n);
        }
        b.build()
    }
}

impl Default for Backoff {
    /// 100 ms initial, 10 s cap, ×2 per attempt, full jitter, unlimited retries.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: Jitter::Full,
            max_retries: None,
        }
    }
}

impl Backoff {
    /// A builder starting from [`Backoff::default`].
    pub fn builder() -> BackoffBuilder {
        BackoffBuilder {
            config: Self::default(),
            max_retries: None,
        }
    }

    /// The first delay before jitter.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The largest delay ever returned.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The growth factor per attempt.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// The jitter mode.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The retry limit, if any.
    pub fn max_retries(&self) -> Option<NonZeroU32> {
        self.max_retries
    }

    /// The delay before jitter for `attempt` (0-based): `min(max, initial × multiplier^attempt)`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exp = i32::try_from(attempt).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exp);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The delay for `attempt` (0-based) given `unit`, a uniform random number
    /// in `[0, 1)`. Values outside that range are clamped into it.
    ///
    /// The result is always within `[0, max]`. [`Jitter::Decorrelated`] has no
    /// memory here and behaves like [`Jitter::Full`] over `[initial, capped]`.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let u = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let capped = self.base_delay(attempt);
        match self.jitter {
            Jitter::None => capped,
            Jitter::Full => capped.mul_f64(u),
            Jitter::Equal => capped / 2 + (capped / 2).mul_f64(u),
            Jitter::Decorrelated => {
                let lo = self.initial.min(capped);
                lo + (capped - lo).mul_f64(u)
            }
        }
    }

    /// An iterator of delays, seeded for reproducible jitter. It ends after
    /// [`max_retries`](Self::max_retries) delays, or never without a limit.
    pub fn iter(&self, seed: u64) -> BackoffIter {
        BackoffIter {
            backoff: *self,
            attempt: 0,
            previous: self.initial,
            rng: SplitMix64::new(seed),
        }
    }
}

/// Builder for [`Backoff`]; validated by [`build`](Self::build).
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `.build()` is called"]
pub struct BackoffBuilder {
    config: Backoff,
    max_retries: Option<u32>,
}

impl BackoffBuilder {
    /// The first delay. Default: 100 ms. Must be non-zero.
    pub fn initial(mut self, d: Duration) -> Self {
        self.config.initial = d;
        self
    }

    /// The largest delay. Default: 10 s. Must be at least `initial`.
    pub fn max(mut self, d: Duration) -> Self {
        self.config.max = d;
        self
    }

    /// Growth factor per attempt. Default: 2.0. Must be finite and ≥ 1.
    pub fn multiplier(mut self, m: f64) -> Self {
        self.config.multiplier = m;
        self
    }

    /// Jitter mode. Default: [`Jitter::Full`].
    pub fn jitter(mut self, j: Jitter) -> Self {
        self.config.jitter = j;
        self
    }

    /// Stop after this many retries. Default: unlimited. Must be ≥ 1.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// Validates and returns the backoff.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `initial` is zero or `max` above one
    /// day, `max < initial`, `multiplier` outside 1–1,000 or `max_retries`
    /// is zero; [`Error::NonFinite`] for a NaN or infinite multiplier.
    pub fn build(self) -> Result<Backoff> {
        let mut c = self.config;
        ensure_nonzero("backoff.initial", c.initial)?;
        check_duration("backoff.max", c.max, Duration::ZERO, DAY)?;
        if c.max < c.initial {
            return Err(Error::invalid(
                "backoff.max",
                format!("{:?} is less than backoff.initial {:?}", c.max, c.initial),
            ));
        }
        ensure_finite("backoff.multiplier", c.multiplier)?;
        if !(1.0..=1_000.0).contains(&c.multiplier) {
            return Err(Error::invalid(
                "backoff.multiplier",
                format!("must be between 1 and 1000, got {}", c.multiplier),
            ));
        }
        c.max_retries = match self.max_retries {
            None => None,
            Some(n) => Some(
                NonZeroU32::new(n)
                    .ok_or_else(|| Error::invalid("backoff.max_retries", "must be at least 1"))?,
            ),
        };
        Ok(c)
    }
}

/// Iterator of backoff delays; see [`Backoff::iter`].
#[derive(Clone, Debug)]
pub struct BackoffIter {
    backoff: Backoff,
    attempt: u32,
    previous: Duration,
    rng: SplitMix64,
}

impl BackoffIter {
    /// The number of delays returned so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts again from the first attempt (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.previous = self.backoff.initial;
    }
}

impl Iterator for BackoffIter {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if let Some(limit) = self.backoff.max_retries
            && self.attempt >= limit.get()
        {
            return None;
        }
        let u = self.rng.next_f64();
        let delay = match self.backoff.jitter {
            Jitter::Decorrelated => {
                let hi = self
                    .backoff
                    .max
                    .min(self.previous.saturating_mul(3))
                    .max(self.backoff.initial);
                let lo = self.backoff.initial;
                lo + (hi - lo).mul_f64(u)
            }
            _ => self.backoff.delay(self.attempt, u),
        };
        self.previous = delay;
        self.attempt = self.attempt.saturating_add(1);
        Some(delay)
    }
}

/// A small, fast, seedable pseudo-random generator (SplitMix64).
///
/// Good enough for jitter and load-balancer choices; **not** for secrets.
///
/// # Examples
/// ```
/// use sysmanage_core::SplitMix64;
/// let mut a = SplitMix64::new(1);
/// let mut b = SplitMix64::new(1);
/// assert_eq!(a.next_u64(), b.next_u64());
/// let x = a.next_f64();
/// assert!((0.0..1.0).contains(&x));
/// ```
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator with the given seed.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator seeded from the clock and a counter, different each call.
    pub fn from_entropy() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0x5EED);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let n = COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        Self::new(nanos ^ n)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `[0, n)`; returns 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift; the bias is below 2^-64 × n, irrelevant here.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_bad_config() {
        let ms = Duration::from_millis;
        assert!(Backoff::builder().initial(Duration::ZERO).build().is_err());
        assert!(
            Backoff::builder()
                .initial(ms(10))
                .max(ms(5))
                .build()
                .is_err()
        );
        assert!(Backoff::builder().multiplier(0.5).build().is_err());
        assert!(Backoff::builder().multiplier(f64::NAN).build().is_err());
        assert!(
            Backoff::builder()
                .multiplier(f64::INFINITY)
                .build()
                .is_err()
        );
        let e = Backoff::builder().max_retries(0).build().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid backoff.max_retries: must be at least 1"
        );
    }

    #[test]
    fn no_jitter_doubles_then_caps() {
        let b = Backoff::builder()
            .initial(Duration::from_millis(100))
            .max(Duration::from_millis(1000))
            .jitter(Jitter::None)
            .build()
            .unwrap();
        let got: Vec<u64> = (0..6).map(|a| b.delay(a, 0.5).as_millis() as u64).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX, 0.5), Duration::from_millis(1000));
    }

    #[test]
    fn equal_jitter_stays_in_upper_half() {
        let b = Backoff::builder().jitter(Jitter::Equal).build().unwrap();
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(50));
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(100));
    }

    #[test]
    fn iter_respects_retry_limit_and_reset() {
        let b = Backoff::builder().max_retries(3).build().unwrap();
        let mut it = b.iter(42);
        assert_eq!(it.by_ref().count(), 3);
        assert_eq!(it.next(), None);
        it.reset();
        assert!(it.next().is_some());
    }

    #[test]
    fn full_jitter_spreads() {
        let b = Backoff::builder()
            .initial(Duration::from_secs(1))
            .max(Duration::from_secs(1))
            .build()
            .unwrap();
        let delays: Vec<Duration> = b.iter(3).take(1000).collect();
        let mean = delays.iter().map(Duration::as_secs_f64).sum::<f64>() / 1000.0;
        assert!((0.45..0.55).contains(&mean), "mean {mean}");
    }

    #[test]
    fn rng_below_is_in_range_and_uniformish() {
        let mut r = SplitMix64::new(9);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[r.below(4) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(r.below(0), 0);
    }

    fn jitter_strategy() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated)
        ]
    }

    proptest! {
        #[test]
        fn delays_stay_within_bounds(
            initial_ms in 1u64..5_000,
            extra_ms in 0u64..60_000,
            multiplier in 1.0f64..10.0,
            jitter in jitter_strategy(),
            seed in any::<u64>(),
            attempt in any::<u32>(),
            unit in any::<f64>(),
        ) {
            let initial = Duration::from_millis(initial_ms);
            let max = initial + Duration::from_millis(extra_ms);
            let b = Backoff::builder().initial(initial).max(max).multiplier(multiplier)
                .jitter(jitter).build().unwrap();
            let d = b.delay(attempt, unit);
            prop_assert!(d <= max);
            prop_assert!(b.base_delay(attempt) >= initial.min(max));
            for d in b.iter(seed).take(64) {
                prop_assert!(d <= max, "{d:?} > {max:?}");
                if matches!(jitter, Jitter::None | Jitter::Decorrelated) {
                    prop_assert!(d >= initial, "{d:?} < {initial:?}");
                }
            }
        }

        #[test]
        fn base_delay_is_monotone(initial_ms in 1u64..1000, a in 0u32..100) {
            let b = Backoff::builder().initial(Duration::from_millis(initial_ms)).build().unwrap();
            prop_assert!(b.base_delay(a) <= b.base_delay(a + 1));
        }
    }
}
