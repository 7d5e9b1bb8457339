//! The slot table: owners from `CLUSTER SLOTS`, patched at once by `MOVED`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::RedisCache;
use super::classify::Redirect;

use crate::slot::SLOT_COUNT;
use crate::topology::RoutingSnapshot;

/// Slot owners for routing, and the snapshot they came from.
pub(super) struct Routing {
    pub(super) owners: Vec<Option<Arc<str>>>,
    pub(super) snapshot: RoutingSnapshot,
    /// Owners learnt from `MOVED` since the snapshot: slot → (node, the
    /// sequence number of the redirection).
    pub(super) patches: BTreeMap<u16, (Arc<str>, u64)>,
}

impl Routing {
    pub(super) fn new(snapshot: RoutingSnapshot) -> Self {
        let mut owners = vec![None; usize::from(SLOT_COUNT)];
        for r in &snapshot.ranges {
            let node: Arc<str> = Arc::from(r.node.as_str());
            for s in r.start..=r.end.min(SLOT_COUNT - 1) {
                owners[usize::from(s)] = Some(node.clone());
            }
        }
        Self {
            owners,
            snapshot,
            patches: BTreeMap::new(),
        }
    }

    /// This table with `slot` pointed at `node` (a `MOVED` numbered `seq`).
    pub(super) fn patched(&self, slot: u16, node: &str, seq: u64) -> Self {
        let mut owners = self.owners.clone();
        let mut patches = self.patches.clone();
        if let Some(o) = owners.get_mut(usize::from(slot)) {
            let node: Arc<str> = Arc::from(node);
            *o = Some(node.clone());
            patches.insert(slot, (node, seq));
        }
        Self {
            owners,
            snapshot: self.snapshot.clone(),
            patches,
        }
    }

    /// The table of a fresh `snapshot`, keeping the `MOVED` patches of
    /// `current` numbered after `moved_before` (the count when the
    /// snapshot was requested): the snapshot may predate them, and undoing
    /// them would cost a redirection each.
    pub(super) fn refreshed(snapshot: RoutingSnapshot, current: &Self, moved_before: u64) -> Self {
        let mut next = Self::new(snapshot);
        for (&slot, (node, seq)) in &current.patches {
            if *seq > moved_before {
                next.owners[usize::from(slot)] = Some(node.clone());
                next.patches.insert(slot, (node.clone(), *seq));
            }
        }
        next
    }
}

impl RedisCache {
    /// Which primary serves which slot, as of the last topology refresh.
    pub fn routing(&self) -> RoutingSnapshot {
        self.routing_table().snapshot.clone()
    }

    pub(super) fn routing_table(&self) -> Arc<Routing> {
        self.inner
            .routing
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn owner(&self, slot: u16) -> Option<Arc<str>> {
        self.inner
            .routing
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .owners
            .get(usize::from(slot))
            .cloned()
            .flatten()
    }

    /// Points `slot` at `node` at once (after `MOVED`); the next refresh
    /// brings the snapshot up to date.
    pub(super) fn patch_owner(&self, slot: u16, node: &str) {
        let mut guard = self
            .inner
            .routing
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let seq = self.inner.moved_seq.fetch_add(1, Ordering::SeqCst) + 1;
        *guard = Arc::new(guard.patched(slot, node, seq));
    }

    /// Handles a redirection; returns the `ASK` target if there is one.
    pub(super) fn follow(&self, redirect: &Redirect) -> Option<String> {
        match redirect {
            Redirect::Moved(slot, node) => {
                self.patch_owner(*slot, node);
                self.request_refresh();
                None
            }
            Redirect::Ask(node) => Some(node.clone()),
            Redirect::None => None,
        }
    }
}
