//! The per-metric sample store behind [`Planner`](crate::Planner): bounded
//! by count and age like core's `SampleBuffer`, with a late sample costing
//! O(1) (amortised, plus a share of one cache-sized sort) instead of an
//! O(n) insertion into the middle of a ring.
//!
//! The samples kept, and their order, are exactly those of an eager
//! in-place insertion (core's `SampleBuffer`): eviction by count and by age
//! takes the overall oldest sample, and samples sharing a time stay in
//! arrival order.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysmanage_core::{Error, Result, Sample, Timestamp, ensure_finite};

/// What [`CapacityPlanner::record`](crate::CapacityPlanner::record) did with
/// a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Recorded {
    /// The sample is held (it may later be evicted by newer samples).
    Stored,
    /// The sample is older than the retention window (counted back from the
    /// metric's newest sample, `cutoff`) and was not stored.
    TooOld {
        /// The oldest time the metric still keeps.
        cutoff: Timestamp,
    },
    /// The metric holds its maximum number of samples, all newer than this
    /// one, so it was not stored.
    OverCapacity {
        /// The oldest sample time held.
        oldest: Timestamp,
    },
}

impl Recorded {
    /// Whether the sample was stored.
    pub fn is_stored(&self) -> bool {
        matches!(self, Self::Stored)
    }
}

/// One time bucket of a [`SampleStore`]: samples in arrival order, sorted
/// (stably, by time) only when it matters.
#[derive(Clone, Debug)]
struct Bucket {
    samples: Vec<Sample>,
    /// Samples before this index were evicted (a sorted bucket only).
    head: usize,
    /// Whether `samples[head..]` is in time order.
    sorted: bool,
    /// Earliest live time in ms (`i64::MAX` when empty).
    min_at: i64,
}

impl Default for Bucket {
    fn default() -> Self {
        Self {
            samples: Vec::new(),
            head: 0,
            sorted: true,
            min_at: i64::MAX,
        }
    }
}

impl Bucket {
    fn live(&self) -> &[Sample] {
        &self.samples[self.head..]
    }

    fn len(&self) -> usize {
        self.samples.len() - self.head
    }

    fn push(&mut self, s: Sample) {
        if self.samples.len() == self.head {
            self.samples.clear();
            self.head = 0;
            self.sorted = true;
        } else if self.sorted && self.samples.last().is_some_and(|l| s.at < l.at) {
            self.sorted = false;
        }
        self.min_at = self.min_at.min(s.at.as_millis());
        self.samples.push(s);
    }

    /// Drops the first `k` live samples of a sorted bucket.
    fn advance(&mut self, k: usize) {
        self.head += k;
        self.min_at = self.live().first().map_or(i64::MAX, |s| s.at.as_millis());
    }

    /// Stable sort by time: samples sharing a time stay in arrival order,
    /// as an in-place insertion after its equals would leave them.
    fn sort(&mut self) {
        if !self.sorted {
            self.samples[self.head..].sort_by_key(|s| s.at);
            self.sorted = true;
        }
    }

    fn first_at(&self) -> Option<Timestamp> {
        (self.len() > 0).then(|| Timestamp::from_millis(self.min_at))
    }
}

/// Samples of one metric, bounded by count and by age behind the newest.
///
/// Time is cut into [`BUCKETS`] buckets per `max_age`; a sample is appended
/// to its bucket whatever the arrival order (O(1)), and a bucket that
/// received a sample out of order is sorted when it is evicted from, or
/// sorted in the copy when read (a cache-sized sort per disordered bucket).
/// Reading in time order concatenates the buckets.
#[derive(Clone, Debug)]
pub(crate) struct SampleStore {
    max_len: NonZeroUsize,
    max_age: Duration,
    /// Bucket width in ms (≥ 1).
    width: i128,
    /// Start (ms) of `buckets[0]`.
    base: i128,
    buckets: VecDeque<Bucket>,
    len: usize,
    newest: Option<Sample>,
}

/// Buckets per retention window.
const BUCKETS: i128 = 256;

/// The serialised form: the same shape as core's `SampleBuffer`, samples
/// in time order.
#[derive(Serialize, Deserialize)]
struct StoreRepr {
    max_len: NonZeroUsize,
    max_age: Duration,
    samples: Vec<Sample>,
}

impl Serialize for SampleStore {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        StoreRepr {
            max_len: self.max_len,
            max_age: self.max_age,
            samples: self.to_sorted_vec(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SampleStore {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let repr = StoreRepr::deserialize(d)?;
        let mut store = Self::new(repr.max_len, repr.max_age).map_err(serde::de::Error::custom)?;
        for s in repr.samples {
            store
                .push(s.at, s.value)
                .map_err(serde::de::Error::custom)?;
        }
        Ok(store)
    }
}

impl SampleStore {
    pub(crate) fn new(max_len: NonZeroUsize, max_age: Duration) -> Result<Self> {
        sysmanage_core::ensure_nonzero("planner.retention", max_age)?;
        let age_ms = i128::try_from(max_age.as_millis()).unwrap_or(i128::MAX);
        Ok(Self {
            max_len,
            max_age,
            width: (age_ms / BUCKETS).max(1),
            base: 0,
            buckets: VecDeque::new(),
            len: 0,
            newest: None,
        })
    }

    fn age_ms(&self) -> i128 {
        i128::try_from(self.max_age.as_millis()).unwrap_or(i128::MAX)
    }

    /// Adds a sample unless it falls outside the bounds (then says why).
    pub(crate) fn push(&mut self, at: Timestamp, value: f64) -> Result<Recorded> {
        ensure_finite("sample value", value)?;
        let sample = Sample::new(at, value);
        match self.newest {
            Some(newest) if at < newest.at => {
                let cutoff = newest.at - self.max_age;
                if at < cutoff {
                    return Ok(Recorded::TooOld { cutoff });
                }
                if self.len >= self.max_len.get()
                    && let Some(oldest) = self.first_at()
                    && at < oldest
                {
                    return Ok(Recorded::OverCapacity { oldest });
                }
            }
            _ => self.newest = Some(sample),
        }
        self.insert(sample);
        self.evict();
        Ok(Recorded::Stored)
    }

    /// Appends `s` to its bucket, adding buckets at either end as needed
    /// (never more than one retention window of them: buckets wholly before
    /// the cutoff are dropped first).
    fn insert(&mut self, s: Sample) {
        let t = i128::from(s.at.as_millis());
        let cutoff = i128::from(self.newest.map_or(s.at, |n| n.at).as_millis()) - self.age_ms();
        while self.buckets.len() > 1 && self.base + self.width <= cutoff {
            if let Some(b) = self.buckets.pop_front() {
                self.len -= b.len();
            }
            self.base += self.width;
        }
        if self.buckets.len() == 1
            && self.base + self.width <= cutoff
            && let Some(b) = self.buckets.pop_front()
        {
            self.len -= b.len();
        }
        if self.buckets.is_empty() {
            self.base = t.div_euclid(self.width) * self.width;
            self.buckets.push_back(Bucket::default());
        }
        if t < self.base {
            // A late sample before the first bucket (but within the window).
            let add = (self.base - t + self.width - 1) / self.width;
            for _ in 0..add {
                self.buckets.push_front(Bucket::default());
            }
            self.base -= add * self.width;
        }
        let idx = usize::try_from((t - self.base) / self.width).unwrap_or(usize::MAX);
        while self.buckets.len() <= idx {
            self.buckets.push_back(Bucket::default());
        }
        self.buckets[idx].push(s);
        self.len += 1;
    }

    /// Drops the overall oldest samples beyond the count bound and those
    /// older than the age bound.
    fn evict(&mut self) {
        while self.len > self.max_len.get() {
            self.pop_oldest();
        }
        let Some(newest) = self.newest else {
            return;
        };
        let cutoff = newest.at - self.max_age;
        loop {
            let many = self.buckets.len() > 1;
            let Some(front) = self.buckets.front_mut() else {
                break;
            };
            if front.len() == 0 && many {
                self.buckets.pop_front();
                self.base += self.width;
                continue;
            }
            if front.first_at().is_some_and(|t| t < cutoff) {
                front.sort();
                let gone = front.live().partition_point(|s| s.at < cutoff);
                front.advance(gone);
                self.len -= gone;
                if front.len() == 0 {
                    continue;
                }
            }
            break;
        }
    }

    fn pop_oldest(&mut self) {
        loop {
            let many = self.buckets.len() > 1;
            let Some(front) = self.buckets.front_mut() else {
                return;
            };
            if front.len() == 0 {
                if !many {
                    return;
                }
                self.buckets.pop_front();
                self.base += self.width;
                continue;
            }
            front.sort();
            front.advance(1);
            self.len -= 1;
            return;
        }
    }

    /// Every sample in time order (samples sharing a time in arrival order).
    pub(crate) fn to_sorted_vec(&self) -> Vec<Sample> {
        let mut out = Vec::with_capacity(self.len);
        for b in &self.buckets {
            let from = out.len();
            out.extend_from_slice(b.live());
            if !b.sorted {
                out[from..].sort_by_key(|s| s.at);
            }
        }
        out
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The earliest sample time held.
    pub(crate) fn first_at(&self) -> Option<Timestamp> {
        self.buckets
            .iter()
            .find(|b| b.len() > 0)
            .and_then(Bucket::first_at)
    }

    pub(crate) fn last(&self) -> Option<Sample> {
        self.newest
    }

    pub(crate) fn clear(&mut self) {
        self.buckets.clear();
        self.len = 0;
        self.newest = None;
    }
}

/// Checks a sample time against the store for the planner's forward-jump
/// rule.
pub(crate) fn check_forward_jump(
    name: &str,
    store: &SampleStore,
    max_forward_jump: Duration,
    at: Timestamp,
) -> Result<()> {
    match store.last() {
        Some(newest) if at > newest.at + max_forward_jump => Err(Error::invalid(
            "sample.at",
            format!(
                "{name}: sample at {} ms is more than max_forward_jump ({max_forward_jump:?}) after the newest sample at {} ms; \
                 fix the clock, or call clear_metric to restart the metric",
                at.as_millis(),
                newest.at.as_millis()
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use sysmanage_core::SampleBuffer;

    use super::*;

    /// Deterministic pseudo-random sequence.
    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        *seed >> 33
    }

    #[test]
    fn keeps_exactly_what_an_eager_insertion_keeps() {
        for (max_len, max_age_s, spread) in [(50, 10_000, 500), (10_000, 300, 200), (64, 90, 2000)]
        {
            let mut seed = max_len as u64;
            let len = NonZeroUsize::new(max_len).unwrap();
            let age = Duration::from_secs(max_age_s);
            let mut eager = SampleBuffer::new(len, age).unwrap();
            let mut store = SampleStore::new(len, age).unwrap();
            for i in 0..5_000i64 {
                // Shuffled within `spread` seconds, with repeated times.
                let at = Timestamp::from_secs(i + (lcg(&mut seed) % spread) as i64);
                let v = i as f64;
                eager.push(at, v).unwrap();
                let stored = store.push(at, v).unwrap();
                assert_eq!(store.len(), eager.len(), "i={i}");
                // A sample reported as not stored is not held.
                assert_eq!(
                    stored.is_stored(),
                    eager.iter().any(|s| s.value == v),
                    "i={i}: {stored:?}"
                );
            }
            let want: Vec<Sample> = eager.iter().copied().collect();
            assert_eq!(store.to_sorted_vec(), want);
            assert_eq!(store.first_at(), eager.first().map(|s| s.at));
            assert_eq!(store.last(), eager.last());
        }
    }

    #[test]
    fn a_sample_older_than_retention_says_so() {
        let mut s =
            SampleStore::new(NonZeroUsize::new(10).unwrap(), Duration::from_secs(60)).unwrap();
        let t = Timestamp::from_secs;
        assert_eq!(s.push(t(1000), 1.0).unwrap(), Recorded::Stored);
        assert_eq!(
            s.push(t(900), 1.0).unwrap(),
            Recorded::TooOld { cutoff: t(940) }
        );
        assert_eq!(s.push(t(950), 1.0).unwrap(), Recorded::Stored);
        for i in 0..8 {
            s.push(t(1001 + i), 1.0).unwrap();
        }
        assert_eq!(
            s.push(t(949), 1.0).unwrap(),
            Recorded::OverCapacity { oldest: t(950) }
        );
        assert_eq!(s.len(), 10);
    }

    #[test]
    fn serialises_like_a_sample_buffer() {
        let mut s =
            SampleStore::new(NonZeroUsize::new(10).unwrap(), Duration::from_secs(60)).unwrap();
        for at in [5, 3, 4, 1] {
            s.push(Timestamp::from_secs(at), at as f64).unwrap();
        }
        let json = serde_json::to_value(&s).unwrap();
        let buf: SampleBuffer = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(buf.len(), 4);
        let back: SampleStore = serde_json::from_value(json).unwrap();
        assert_eq!(back.to_sorted_vec(), s.to_sorted_vec());
        let bad =
            serde_json::json!({"max_len": 3, "max_age": {"secs": 0, "nanos": 0}, "samples": []});
        assert!(serde_json::from_value::<SampleStore>(bad).is_err());
    }
}
