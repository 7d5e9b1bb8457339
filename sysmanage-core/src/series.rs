//! Timestamps and a bounded buffer of samples with window queries.
//!
//! [`Timestamp`] is wall-clock time in milliseconds since the Unix epoch, the
//! resolution Prometheus uses. [`SampleBuffer`] keeps samples sorted by time
//! and evicts by count and by age, so memory stays bounded however long a
//! host runs.

use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroUsize;
use std::ops::{Add, Sub};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Result, ensure_finite, ensure_nonzero};

/// Milliseconds since the Unix epoch (UTC).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use sysmanage_core::Timestamp;
/// let t = Timestamp::from_secs(1_700_000_000);
/// assert_eq!((t + Duration::from_secs(60)).as_millis(), 1_700_000_060_000);
/// assert_eq!((t + Duration::from_secs(60)) - t, Duration::from_secs(60));
/// ```
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);

    /// From milliseconds since the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// From whole seconds since the epoch.
    pub const fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    /// The current wall-clock time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Seconds since the epoch as a float (what regression code wants, after centring).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// `self − earlier`, or zero when `earlier` is later.
    pub fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// Signed seconds from `origin` to `self`.
    pub fn secs_since(self, origin: Self) -> f64 {
        // Any two timestamps differ by less than 2^64 ms: i128 when i64
        // overflows (rare, and slower to convert), the same value either way.
        match self.0.checked_sub(origin.0) {
            Some(d) => d as f64 / 1000.0,
            None => (i128::from(self.0) - i128::from(origin.0)) as f64 / 1000.0,
        }
    }
}

fn millis_i64(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Add<Duration> for Timestamp {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(millis_i64(d)))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Self;
    fn sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(millis_i64(d)))
    }
}

impl Sub for Timestamp {
    type Output = Duration;
    /// The time from `rhs` to `self`, saturating at zero.
    fn sub(self, rhs: Self) -> Duration {
        self.saturating_since(rhs)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self(millis_i64(d)),
            Err(e) => Self(-millis_i64(e.duration())),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:03}",
            self.0.div_euclid(1000),
            self.0.rem_euclid(1000)
        )
    }
}

/// One observation.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// When it was observed.
    pub at: Timestamp,
    /// The observed value (always finite in a [`SampleBuffer`]).
    pub value: f64,
}

impl Sample {
    /// A sample; see [`SampleBuffer::push`] for validation.
    pub const fn new(at: Timestamp, value: f64) -> Self {
        Self { at, value }
    }
}

/// Summary statistics of a window of samples.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct WindowStats {
    /// Number of samples.
    pub count: usize,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// The most recent value.
    pub last: f64,
    /// Least-squares slope in units per second (0 with fewer than two distinct timestamps).
    pub slope_per_sec: f64,
}

/// A time-ordered buffer of samples bounded by count and by age.
///
/// Age is measured against the newest sample, so the buffer behaves the same
/// in a replay as live. Out-of-order samples are inserted in place.
///
/// # Examples
/// ```
/// use std::num::NonZeroUsize;
/// use std::time::Duration;
/// use sysmanage_core::{SampleBuffer, Timestamp};
///
/// let mut buf = SampleBuffer::new(NonZeroUsize::new(1000).unwrap(), Duration::from_secs(3600))?;
/// let t0 = Timestamp::from_secs(1_000);
/// for i in 0..10 {
///     buf.push(t0 + Duration::from_secs(60 * i), i as f64)?;
/// }
/// let last_5_min = buf.stats_since(t0 + Duration::from_secs(9 * 60) - Duration::from_secs(300)).unwrap();
/// assert_eq!(last_5_min.count, 6);
/// assert_eq!(last_5_min.max, 9.0);
/// assert!(buf.push(t0, f64::NAN).is_err());
/// # Ok::<(), sysmanage_core::Error>(())
/// ```
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SampleBuffer {
    max_len: NonZeroUsize,
    max_age: Duration,
    samples: VecDeque<Sample>,
}

impl SampleBuffer {
    /// An empty buffer keeping at most `max_len` samples no older than
    /// `max_age` behind the newest.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a zero `max_age`.
    pub fn new(max_len: NonZeroUsize, max_age: Duration) -> Result<Self> {
        ensure_nonzero("sample_buffer.max_age", max_age)?;
        Ok(Self {
            max_len,
            max_age,
            samples: VecDeque::new(),
        })
    }

    /// Adds a sample, evicting what falls outside the bounds.
    ///
    /// # Errors
    /// [`Error::NonFinite`](crate::Error::NonFinite) for NaN or infinite values (nothing is stored).
    pub fn push(&mut self, at: Timestamp, value: f64) -> Result<()> {
        ensure_finite("sample value", value)?;
        let sample = Sample { at, value };
        match self.samples.back() {
            Some(last) if last.at > at => {
                let idx = self.samples.partition_point(|s| s.at <= at);
                self.samples.insert(idx, sample);
            }
            _ => self.samples.push_back(sample),
        }
        self.evict();
        Ok(())
    }

    fn evict(&mut self) {
        while self.samples.len() > self.max_len.get() {
            self.samples.pop_front();
        }
        if let Some(newest) = self.samples.back().map(|s| s.at) {
            let cutoff = newest - self.max_age;
            while self.samples.front().is_some_and(|s| s.at < cutoff) {
                self.samples.pop_front();
            }
        }
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The newest sample.
    pub fn last(&self) -> Option<Sample> {
        self.samples.back().copied()
    }

    /// The oldest sample.
    pub fn first(&self) -> Option<Sample> {
        self.samples.front().copied()
    }

    /// All samples, oldest first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Sample> + DoubleEndedIterator {
        self.samples.iter()
    }

    /// Samples with `from <= at < to`, oldest first.
    pub fn window(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> impl DoubleEndedIterator<Item = &Sample> {
        let start = self.samples.partition_point(|s| s.at < from);
        let end = self.samples.partition_point(|s| s.at < to).max(start);
        self.samples.range(start..end)
    }

    /// Samples at or after `from`, oldest first.
    pub fn since(&self, from: Timestamp) -> impl DoubleEndedIterator<Item = &Sample> {
        let start = self.samples.partition_point(|s| s.at < from);
        self.samples.range(start..)
    }

    /// Statistics of the samples at or after `from`; `None` when there are none.
    pub fn stats_since(&self, from: Timestamp) -> Option<WindowStats> {
        WindowStats::of(self.since(from).copied())
    }

    /// Statistics of the samples with `from <= at < to`; `None` when there are none.
    pub fn stats_window(&self, from: Timestamp, to: Timestamp) -> Option<WindowStats> {
        WindowStats::of(self.window(from, to).copied())
    }

    /// Removes every sample.
    pub fn clear(&mut self) {
        self.samples.clear();
    }
}

impl WindowStats {
    /// Statistics of `samples` (which need not be sorted); `None` when empty.
    pub fn of(samples: impl IntoIterator<Item = Sample>) -> Option<Self> {
        let mut count = 0usize;
        let (mut min, mut max, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
        let mut last = Sample::new(Timestamp(i64::MIN), 0.0);
        let mut origin = None::<Timestamp>;
        // Welford-style running sums for the slope, centred on the first timestamp.
        let (mut mt, mut mv, mut stt, mut stv) = (0.0, 0.0, 0.0, 0.0);
        for s in samples {
            count += 1;
            min = min.min(s.value);
            max = max.max(s.value);
            sum += s.value;
            if s.at >= last.at {
                last = s;
            }
            let o = *origin.get_or_insert(s.at);
            let t = s.at.secs_since(o);
            let n = count as f64;
            let dt = t - mt;
            mt += dt / n;
            let dv = s.value - mv;
            mv += dv / n;
            stt += dt * (t - mt);
            stv += dt * (s.value - mv);
        }
        (count > 0).then(|| Self {
            count,
            min,
            max,
            mean: sum / count as f64,
            last: last.value,
            slope_per_sec: if stt > 0.0 { stv / stt } else { 0.0 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn buf(n: usize, age_secs: u64) -> SampleBuffer {
        SampleBuffer::new(NonZeroUsize::new(n).unwrap(), Duration::from_secs(age_secs)).unwrap()
    }

    #[test]
    fn bounded_by_count_and_age() {
        let mut b = buf(5, 100);
        let t0 = Timestamp::from_secs(0);
        for i in 0..10 {
            b.push(t0 + Duration::from_secs(i), i as f64).unwrap();
        }
        assert_eq!(b.len(), 5);
        assert_eq!(b.first().unwrap().value, 5.0);
        b.push(t0 + Duration::from_secs(1000), 1.0).unwrap();
        assert_eq!(b.len(), 1, "old samples aged out");
        assert!(SampleBuffer::new(NonZeroUsize::MIN, Duration::ZERO).is_err());
    }

    #[test]
    fn rejects_non_finite_without_storing() {
        let mut b = buf(5, 100);
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = b.push(Timestamp::EPOCH, v).unwrap_err();
            assert_eq!(e.label(), "non_finite");
        }
        assert!(b.is_empty());
        assert!(b.stats_since(Timestamp::EPOCH).is_none());
    }

    #[test]
    fn out_of_order_inserts_sorted() {
        let mut b = buf(10, 100);
        for s in [5, 1, 3, 2, 4] {
            b.push(Timestamp::from_secs(s), s as f64).unwrap();
        }
        let order: Vec<f64> = b.iter().map(|s| s.value).collect();
        assert_eq!(order, [1.0, 2.0, 3.0, 4.0, 5.0]);
        let w: Vec<f64> = b
            .window(Timestamp::from_secs(2), Timestamp::from_secs(4))
            .map(|s| s.value)
            .collect();
        assert_eq!(w, [2.0, 3.0]);
        assert_eq!(
            b.window(Timestamp::from_secs(9), Timestamp::from_secs(1))
                .count(),
            0
        );
    }

    #[test]
    fn stats_slope_of_a_line() {
        let samples = (0..50).map(|i| {
            Sample::new(
                Timestamp::from_secs(1_700_000_000 + i * 15),
                3.0 + 0.2 * i as f64,
            )
        });
        let s = WindowStats::of(samples).unwrap();
        assert!(
            (s.slope_per_sec - 0.2 / 15.0).abs() < 1e-12,
            "{}",
            s.slope_per_sec
        );
        assert_eq!(s.count, 50);
        assert_eq!(s.last, 3.0 + 0.2 * 49.0);
        let one = WindowStats::of([Sample::new(Timestamp::EPOCH, 1.0)]).unwrap();
        assert_eq!(one.slope_per_sec, 0.0);
    }

    #[test]
    fn timestamp_arithmetic_saturates() {
        let t = Timestamp::from_millis(i64::MAX - 1);
        assert_eq!((t + Duration::from_secs(10)).as_millis(), i64::MAX);
        assert_eq!(Timestamp::EPOCH - Timestamp::from_secs(5), Duration::ZERO);
        assert_eq!(Timestamp::from_millis(-1500).to_string(), "-2.500");
        assert_eq!(
            Timestamp::from(UNIX_EPOCH + Duration::from_millis(1234)).as_millis(),
            1234
        );
    }

    proptest! {
        #[test]
        fn never_exceeds_bounds_and_stays_sorted(
            ts in proptest::collection::vec((0i64..100_000, -1e6f64..1e6), 0..300),
            n in 1usize..64,
            age in 1u64..50,
        ) {
            let mut b = buf(n, age);
            for (t, v) in ts {
                b.push(Timestamp::from_millis(t * 10), v).unwrap();
                prop_assert!(b.len() <= n);
                let newest = b.last().unwrap().at;
                prop_assert!(b.iter().all(|s| newest - s.at <= Duration::from_secs(age)));
                prop_assert!(b.iter().zip(b.iter().skip(1)).all(|(a, c)| a.at <= c.at));
            }
        }
    }
}
