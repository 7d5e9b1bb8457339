//! Routing snapshots (slot → node) and the typed events derived from them.
//!
//! A [`RoutingSnapshot`] is an immutable copy of which primary serves which
//! slot range, as `CLUSTER SLOTS` reports it. [`diff`] compares two
//! snapshots and yields [`TopologyEvent`]s; the Redis backend publishes them
//! after every topology refresh. Both are plain data, so hosts and tests can
//! build and compare snapshots without a server.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sysmanage_core::Timestamp;

use crate::slot::{SLOT_COUNT, slot};

/// One contiguous slot range and the primary that serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SlotOwner {
    /// First slot of the range.
    pub start: u16,
    /// Last slot of the range (inclusive).
    pub end: u16,
    /// The primary, `host:port`.
    pub node: String,
}

impl SlotOwner {
    /// A range `start..=end` served by `node`.
    pub fn new(start: u16, end: u16, node: impl Into<String>) -> Self {
        Self {
            start,
            end,
            node: node.into(),
        }
    }
}

/// Which primary serves each slot, at one moment.
///
/// ```
/// use sysmanage_cache::topology::{RoutingSnapshot, SlotOwner};
/// use sysmanage_core::Timestamp;
/// let snap = RoutingSnapshot::new(
///     vec![SlotOwner::new(0, 8191, "a:1"), SlotOwner::new(8192, 16383, "b:1")],
///     Timestamp::from_secs(0),
/// );
/// assert_eq!(snap.node_for_slot(100), Some("a:1"));
/// assert_eq!(snap.node_for_key(b"foo"), Some("b:1")); // slot 12182
/// assert!(snap.covers_all_slots());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RoutingSnapshot {
    /// Ranges sorted by `start`.
    pub ranges: Vec<SlotOwner>,
    /// When the snapshot was taken.
    pub taken_at: Timestamp,
}

impl RoutingSnapshot {
    /// A snapshot of `ranges`, sorted here. A range that ends before it
    /// starts or starts past the last slot is dropped; one that ends past
    /// the last slot is cut there.
    pub fn new(mut ranges: Vec<SlotOwner>, taken_at: Timestamp) -> Self {
        ranges.retain(|r| r.start <= r.end && r.start < SLOT_COUNT);
        for r in &mut ranges {
            r.end = r.end.min(SLOT_COUNT - 1);
        }
        ranges.sort_by_key(|r| r.start);
        Self { ranges, taken_at }
    }

    /// The primary serving `slot`.
    pub fn node_for_slot(&self, slot: u16) -> Option<&str> {
        let idx = self.ranges.partition_point(|r| r.end < slot);
        self.ranges
            .get(idx)
            .filter(|r| r.start <= slot)
            .map(|r| r.node.as_str())
    }

    /// The primary serving `key`'s slot.
    pub fn node_for_key(&self, key: &[u8]) -> Option<&str> {
        self.node_for_slot(slot(key))
    }

    /// Every primary, sorted.
    pub fn primaries(&self) -> Vec<&str> {
        let set: BTreeSet<&str> = self.ranges.iter().map(|r| r.node.as_str()).collect();
        set.into_iter().collect()
    }

    /// Number of slots per primary.
    pub fn slots_per_node(&self) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for r in &self.ranges {
            // Checked: a deserialized snapshot bypasses `new`'s validation.
            let end = r.end.min(SLOT_COUNT - 1);
            let n = end.checked_sub(r.start).map_or(0, |d| u32::from(d) + 1);
            *out.entry(r.node.clone()).or_insert(0) += n;
        }
        out
    }

    /// Whether every one of the 16384 slots has an owner.
    pub fn covers_all_slots(&self) -> bool {
        let mut next: u32 = 0;
        for r in &self.ranges {
            if u32::from(r.start) > next {
                return false;
            }
            next = next.max(u32::from(r.end) + 1);
        }
        next >= u32::from(SLOT_COUNT)
    }

    /// Owner of every slot, `None` where uncovered.
    fn owners(&self) -> Vec<Option<&str>> {
        let mut out = vec![None; usize::from(SLOT_COUNT)];
        for r in &self.ranges {
            for s in r.start..=r.end.min(SLOT_COUNT - 1) {
                out[usize::from(s)] = Some(r.node.as_str());
            }
        }
        out
    }
}

/// A change between two routing snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TopologyEvent {
    /// A primary appeared.
    PrimaryAdded {
        /// The node, `host:port`.
        node: String,
    },
    /// A primary disappeared (failed over, removed or demoted).
    PrimaryRemoved {
        /// The node, `host:port`.
        node: String,
    },
    /// Slots changed owner (reshard, rebalance or failover).
    SlotsMoved {
        /// The previous owner, `None` if the slots were uncovered.
        from: Option<String>,
        /// The new owner, `None` if the slots are now uncovered.
        to: Option<String>,
        /// How many slots moved between this pair.
        slots: u32,
    },
}

/// The events that lead from `old` to `new`: primaries added, then removed,
/// then slot moves per (from, to) pair, all in sorted order.
pub fn diff(old: &RoutingSnapshot, new: &RoutingSnapshot) -> Vec<TopologyEvent> {
    let mut events = Vec::new();
    let (po, pn): (BTreeSet<&str>, BTreeSet<&str>) = (
        old.primaries().into_iter().collect(),
        new.primaries().into_iter().collect(),
    );
    events.extend(pn.difference(&po).map(|n| TopologyEvent::PrimaryAdded {
        node: (*n).to_owned(),
    }));
    events.extend(po.difference(&pn).map(|n| TopologyEvent::PrimaryRemoved {
        node: (*n).to_owned(),
    }));
    let mut moves: BTreeMap<(Option<&str>, Option<&str>), u32> = BTreeMap::new();
    for (a, b) in old.owners().into_iter().zip(new.owners()) {
        if a != b {
            *moves.entry((a, b)).or_insert(0) += 1;
        }
    }
    events.extend(
        moves
            .into_iter()
            .map(|((from, to), slots)| TopologyEvent::SlotsMoved {
                from: from.map(str::to_owned),
                to: to.map(str::to_owned),
                slots,
            }),
    );
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(ranges: &[(u16, u16, &str)]) -> RoutingSnapshot {
        RoutingSnapshot::new(
            ranges
                .iter()
                .map(|&(s, e, n)| SlotOwner::new(s, e, n))
                .collect(),
            Timestamp::from_secs(0),
        )
    }

    #[test]
    fn lookup_and_coverage() {
        let s = snap(&[(5461, 10922, "b"), (0, 5460, "a"), (10923, 16383, "c")]);
        assert_eq!(s.node_for_slot(0), Some("a"));
        assert_eq!(s.node_for_slot(5461), Some("b"));
        assert_eq!(s.node_for_slot(16383), Some("c"));
        assert!(s.covers_all_slots());
        assert_eq!(s.slots_per_node()["a"], 5461);
        let gap = snap(&[(0, 99, "a"), (200, 16383, "b")]);
        assert!(!gap.covers_all_slots());
        assert_eq!(gap.node_for_slot(150), None);
    }

    #[test]
    fn inverted_or_out_of_range_slot_ranges_do_not_panic() {
        let s = snap(&[(10, 5, "bad"), (20000, 20001, "far"), (16000, 20000, "c")]);
        assert_eq!(s.ranges.len(), 1);
        assert_eq!(s.slots_per_node()["c"], 384);
        // A deserialized snapshot skips `new`.
        let raw = RoutingSnapshot {
            ranges: vec![SlotOwner::new(10, 5, "bad"), SlotOwner::new(0, 99, "a")],
            taken_at: Timestamp::from_secs(0),
        };
        let per = raw.slots_per_node();
        assert_eq!((per["bad"], per["a"]), (0, 100));
    }

    #[test]
    fn reshard_and_failover_events() {
        let before = snap(&[(0, 5460, "a"), (5461, 10922, "b"), (10923, 16383, "c")]);
        let reshard = snap(&[(0, 5360, "a"), (5361, 10922, "b"), (10923, 16383, "c")]);
        assert_eq!(
            diff(&before, &reshard),
            vec![TopologyEvent::SlotsMoved {
                from: Some("a".into()),
                to: Some("b".into()),
                slots: 100
            }]
        );
        let failover = snap(&[(0, 5460, "a2"), (5461, 10922, "b"), (10923, 16383, "c")]);
        let ev = diff(&before, &failover);
        assert_eq!(ev[0], TopologyEvent::PrimaryAdded { node: "a2".into() });
        assert_eq!(ev[1], TopologyEvent::PrimaryRemoved { node: "a".into() });
        assert!(matches!(
            &ev[2],
            TopologyEvent::SlotsMoved { slots: 5461, .. }
        ));
        assert!(diff(&before, &before).is_empty());
    }
}
