//! Measured load per slot (keys and bytes) and the pure arithmetic that
//! turns node figures and samples into it.

use super::error::{ScaleError, ScaleResult};
use crate::slot::SLOT_COUNT;

/// Keys and bytes per slot, as measured for a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotWeights {
    keys: Vec<u64>,
    bytes: Vec<u64>,
    measured: bool,
}

impl SlotWeights {
    /// No measurement: every slot weighs nothing.
    pub fn unmeasured() -> Self {
        Self {
            keys: vec![0; usize::from(SLOT_COUNT)],
            bytes: vec![0; usize::from(SLOT_COUNT)],
            measured: false,
        }
    }

    /// Keys and bytes of each of the 16,384 slots.
    ///
    /// # Errors
    /// [`ScaleError::InvalidTarget`] unless both have one entry per slot.
    pub fn new(keys: Vec<u64>, bytes: Vec<u64>) -> ScaleResult<Self> {
        if keys.len() != usize::from(SLOT_COUNT) || bytes.len() != usize::from(SLOT_COUNT) {
            return Err(ScaleError::InvalidTarget(format!(
                "slot weights need {SLOT_COUNT} entries each, got {} keys and {} bytes",
                keys.len(),
                bytes.len()
            )));
        }
        Ok(Self {
            keys,
            bytes,
            measured: true,
        })
    }

    /// Whether these come from a measurement.
    pub fn is_measured(&self) -> bool {
        self.measured
    }

    /// Keys in `slot`.
    pub fn keys(&self, slot: u16) -> u64 {
        self.keys.get(usize::from(slot)).copied().unwrap_or(0)
    }

    /// Bytes in `slot`.
    pub fn bytes(&self, slot: u16) -> u64 {
        self.bytes.get(usize::from(slot)).copied().unwrap_or(0)
    }

    /// Keys in all slots.
    pub fn total_keys(&self) -> u64 {
        self.keys.iter().fold(0u64, |a, &k| a.saturating_add(k))
    }

    /// Bytes in all slots.
    pub fn total_bytes(&self) -> u64 {
        self.bytes.iter().fold(0u64, |a, &b| a.saturating_add(b))
    }
}

/// A node's bytes per key from `INFO`: `used_memory_dataset / keys`
/// (0 for a node without keys).
pub(crate) fn bytes_per_key(dataset_bytes: u64, keys: u64) -> f64 {
    if keys == 0 {
        0.0
    } else {
        dataset_bytes as f64 / keys as f64
    }
}

/// The bytes of a slot of `keys` keys at `per_key` bytes each, rounded and
/// saturating.
pub(crate) fn estimate_bytes(keys: u64, per_key: f64) -> u64 {
    let b = keys as f64 * per_key;
    if b.is_finite() && b > 0.0 {
        // `as` saturates at u64::MAX.
        b.round() as u64
    } else {
        0
    }
}

/// The bytes of a slot of `keys` keys whose sampled keys measured
/// `sample` bytes each (`MEMORY USAGE`): their mean times `keys`; when the
/// slot holds no more keys than were sampled, their exact sum.
pub(crate) fn sampled_bytes(keys: u64, sample: &[u64]) -> u64 {
    if sample.is_empty() {
        return 0;
    }
    let sum = sample.iter().fold(0u64, |a, &b| a.saturating_add(b));
    if keys <= sample.len() as u64 {
        return sum;
    }
    estimate_bytes(keys, sum as f64 / sample.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_are_exact_where_they_can_be_and_never_overflow() {
        assert_eq!(bytes_per_key(1000, 0), 0.0);
        assert_eq!(bytes_per_key(1000, 10), 100.0);
        assert_eq!(estimate_bytes(3, 33.4), 100);
        assert_eq!(estimate_bytes(u64::MAX, 1e30), u64::MAX);
        assert_eq!(estimate_bytes(5, f64::NAN), 0);
        assert_eq!(sampled_bytes(2, &[10, 20]), 30);
        assert_eq!(sampled_bytes(10, &[10, 20]), 150);
        assert_eq!(sampled_bytes(10, &[]), 0);
        assert_eq!(sampled_bytes(1, &[u64::MAX, u64::MAX]), u64::MAX);
    }

    #[test]
    fn weights_need_one_entry_per_slot() {
        assert!(SlotWeights::new(vec![0; 3], vec![0; 16384]).is_err());
        let mut keys = vec![0; 16384];
        keys[7] = 5;
        let mut bytes = vec![0; 16384];
        bytes[7] = 500;
        let w = SlotWeights::new(keys, bytes).unwrap();
        assert_eq!(
            (w.keys(7), w.bytes(7), w.total_keys(), w.total_bytes()),
            (5, 500, 5, 500)
        );
        assert!(w.is_measured() && !SlotWeights::unmeasured().is_measured());
        assert_eq!(w.keys(16384), 0);
    }
}
