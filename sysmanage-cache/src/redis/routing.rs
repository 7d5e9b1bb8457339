//! The slot table: owners from `CLUSTER SLOTS`, patched at once by `MOVED`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::RedisCache;
use super::classify::Redirect;

use crate::slot::SLOT_COUNT;
use crate::topology::RoutingSnapshot;

/// No owner, in [`Routing`]'s slot table.
const NO_NODE: u16 = u16::MAX;

/// Slot owners for routing, and the snapshot they came from.
///
/// The slot table holds indexes into a short list of node names, so that a
/// `MOVED` (one slot patched, under the routing lock, many times per second
/// while slots migrate) copies 32 KiB and bumps no reference count per slot.
pub(super) struct Routing {
    owners: Vec<u16>,
    nodes: Vec<Arc<str>>,
    pub(super) snapshot: Arc<RoutingSnapshot>,
    /// Owners learnt from `MOVED` since the snapshot: slot → (node, the
    /// sequence number of the redirection).
    pub(super) patches: BTreeMap<u16, (Arc<str>, u64)>,
}

impl Routing {
    pub(super) fn new(snapshot: RoutingSnapshot) -> Self {
        let mut owners = vec![NO_NODE; usize::from(SLOT_COUNT)];
        let mut nodes: Vec<Arc<str>> = Vec::new();
        for r in &snapshot.ranges {
            let i = Self::index_in(&mut nodes, &r.node);
            for s in r.start..=r.end.min(SLOT_COUNT - 1) {
                owners[usize::from(s)] = i;
            }
        }
        Self {
            owners,
            nodes,
            snapshot: Arc::new(snapshot),
            patches: BTreeMap::new(),
        }
    }

    /// The index of `node` in `nodes`, added if missing.
    fn index_in(nodes: &mut Vec<Arc<str>>, node: &str) -> u16 {
        match nodes.iter().position(|n| &**n == node) {
            Some(i) => i as u16,
            None => {
                nodes.push(Arc::from(node));
                // At most 16,384 distinct owners: always below NO_NODE.
                (nodes.len() - 1) as u16
            }
        }
    }

    /// The node serving `slot`.
    pub(super) fn owner_of(&self, slot: u16) -> Option<&Arc<str>> {
        match self.owners.get(usize::from(slot)) {
            Some(&i) if i != NO_NODE => self.nodes.get(usize::from(i)),
            _ => None,
        }
    }

    /// This table with `slot` pointed at `node` (a `MOVED` numbered `seq`).
    pub(super) fn patched(&self, slot: u16, node: &str, seq: u64) -> Self {
        let mut owners = self.owners.clone();
        let mut nodes = self.nodes.clone();
        let mut patches = self.patches.clone();
        if let Some(o) = owners.get_mut(usize::from(slot)) {
            let i = Self::index_in(&mut nodes, node);
            *o = i;
            patches.insert(slot, (nodes[usize::from(i)].clone(), seq));
        }
        Self {
            owners,
            nodes,
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
                let i = Self::index_in(&mut next.nodes, node);
                next.owners[usize::from(slot)] = i;
                next.patches.insert(slot, (node.clone(), *seq));
            }
        }
        next
    }
}

impl RedisCache {
    /// Which primary serves which slot, as of the last topology refresh.
    pub fn routing(&self) -> RoutingSnapshot {
        (*self.routing_table().snapshot).clone()
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
            .owner_of(slot)
            .cloned()
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
