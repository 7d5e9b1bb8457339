//! The per-metric sample store behind [`Planner`](crate::Planner): bounded
//! by count and age like core's `SampleBuffer`, with late samples costing
//! O(log n) instead of an O(n) insertion into the middle of a ring.
//!
//! Samples at or after the newest go to the back of a sorted ring. Older
//! ("late") ones go to a min-heap keyed by time; the two are merged in one
//! linear pass when the heap grows past half the ring (amortised O(1) per
//! late sample) and whenever the samples are read in order. Eviction by
//! count and by age takes the overall oldest sample from whichever side
//! holds it, so the samples kept are exactly those an eager in-place
//! insertion keeps.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
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

/// A late sample in the heap: ordered by time, then arrival.
#[derive(Clone, Copy, Debug)]
struct Late {
    at: i64,
    seq: u64,
    value: f64,
}

impl PartialEq for Late {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Late {}
impl PartialOrd for Late {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Late {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Samples of one metric, bounded by count and by age behind the newest.
#[derive(Clone, Debug)]
pub(crate) struct SampleStore {
    max_len: NonZeroUsize,
    max_age: Duration,
    sorted: VecDeque<Sample>,
    late: BinaryHeap<Reverse<Late>>,
    seq: u64,
}

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
        let mut store =
            Self::new(repr.max_len, repr.max_age).map_err(serde::de::Error::custom)?;
        for s in repr.samples {
            store.push(s.at, s.value).map_err(serde::de::Error::custom)?;
        }
        Ok(store)
    }
}

impl SampleStore {
    pub(crate) fn new(max_len: NonZeroUsize, max_age: Duration) -> Result<Self> {
        sysmanage_core::ensure_nonzero("planner.retention", max_age)?;
        Ok(Self {
            max_len,
            max_age,
            sorted: VecDeque::new(),
            late: BinaryHeap::new(),
            seq: 0,
        })
    }

    /// Adds a sample unless it falls outside the bounds (then says why).
    pub(crate) fn push(&mut self, at: Timestamp, value: f64) -> Result<Recorded> {
        ensure_finite("sample value", value)?;
        let sample = Sample::new(at, value);
        match self.sorted.back() {
            Some(newest) if at < newest.at => {
                let cutoff = newest.at - self.max_age;
                if at < cutoff {
                    return Ok(Recorded::TooOld { cutoff });
                }
                if self.len() >= self.max_len.get()
                    && let Some(oldest) = self.first()
                    && at < oldest.at
                {
                    return Ok(Recorded::OverCapacity { oldest: oldest.at });
                }
                self.seq += 1;
                self.late.push(Reverse(Late {
                    at: at.as_millis(),
                    seq: self.seq,
                    value,
                }));
                if self.late.len() > 1024 && self.late.len() > self.sorted.len() / 2 {
                    self.merge();
                }
            }
            _ => self.sorted.push_back(sample),
        }
        self.evict();
        Ok(Recorded::Stored)
    }

    /// Drops the overall oldest samples beyond the count bound and those
    /// older than the age bound.
    fn evict(&mut self) {
        while self.len() > self.max_len.get() {
            self.pop_oldest();
        }
        if let Some(newest) = self.sorted.back().map(|s| s.at) {
            let cutoff = newest - self.max_age;
            while self.sorted.front().is_some_and(|s| s.at < cutoff) {
                self.sorted.pop_front();
            }
            while self
                .late
                .peek()
                .is_some_and(|l| l.0.at < cutoff.as_millis())
            {
                self.late.pop();
            }
        }
    }

    fn pop_oldest(&mut self) {
        let from_late = match (self.sorted.front(), self.late.peek()) {
            (Some(s), Some(l)) => l.0.at < s.at.as_millis(),
            (None, Some(_)) => true,
            _ => false,
        };
        if from_late {
            self.late.pop();
        } else {
            self.sorted.pop_front();
        }
    }

    /// Merges the late samples into the sorted ring (one linear pass).
    fn merge(&mut self) {
        if self.late.is_empty() {
            return;
        }
        let merged = self.to_sorted_vec();
        self.late.clear();
        self.sorted = VecDeque::from(merged);
    }

    /// Every sample in time order (late ones after earlier arrivals at the
    /// same time).
    pub(crate) fn to_sorted_vec(&self) -> Vec<Sample> {
        let (a, b) = self.sorted.as_slices();
        if self.late.is_empty() {
            let mut v = Vec::with_capacity(a.len() + b.len());
            v.extend_from_slice(a);
            v.extend_from_slice(b);
            return v;
        }
        let mut late: Vec<Late> = self.late.iter().map(|r| r.0).collect();
        late.sort_unstable();
        let mut out = Vec::with_capacity(self.len());
        let mut main = a.iter().chain(b).peekable();
        let mut late = late.into_iter().peekable();
        loop {
            match (main.peek(), late.peek()) {
                (Some(m), Some(l)) => {
                    if l.at < m.at.as_millis() {
                        out.push(Sample::new(Timestamp::from_millis(l.at), l.value));
                        late.next();
                    } else {
                        out.push(**m);
                        main.next();
                    }
                }
                (Some(m), None) => {
                    out.push(**m);
                    main.next();
                }
                (None, Some(l)) => {
                    out.push(Sample::new(Timestamp::from_millis(l.at), l.value));
                    late.next();
                }
                (None, None) => break,
            }
        }
        out
    }

    pub(crate) fn len(&self) -> usize {
        self.sorted.len() + self.late.len()
    }

    pub(crate) fn first(&self) -> Option<Sample> {
        let s = self.sorted.front().copied();
        let l = self
            .late
            .peek()
            .map(|l| Sample::new(Timestamp::from_millis(l.0.at), l.0.value));
        match (s, l) {
            (Some(s), Some(l)) if l.at < s.at => Some(l),
            (Some(s), _) => Some(s),
            (None, l) => l,
        }
    }

    pub(crate) fn last(&self) -> Option<Sample> {
        self.sorted.back().copied()
    }

    pub(crate) fn clear(&mut self) {
        self.sorted.clear();
        self.late.clear();
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
            assert_eq!(store.first(), eager.first());
            assert_eq!(store.last(), eager.last());
        }
    }

    #[test]
    fn a_sample_older_than_retention_says_so() {
        let mut s = SampleStore::new(NonZeroUsize::new(10).unwrap(), Duration::from_secs(60))
            .unwrap();
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
        let mut s = SampleStore::new(NonZeroUsize::new(10).unwrap(), Duration::from_secs(60))
            .unwrap();
        for at in [5, 3, 4, 1] {
            s.push(Timestamp::from_secs(at), at as f64).unwrap();
        }
        let json = serde_json::to_value(&s).unwrap();
        let buf: SampleBuffer = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(buf.len(), 4);
        let back: SampleStore = serde_json::from_value(json).unwrap();
        assert_eq!(back.to_sorted_vec(), s.to_sorted_vec());
        let bad = serde_json::json!({"max_len": 3, "max_age": {"secs": 0, "nanos": 0}, "samples": []});
        assert!(serde_json::from_value::<SampleStore>(bad).is_err());
    }
}
