//! The node table: which node takes writes and which serve `Any` reads.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};

use super::node::{Node, ROLE_REPLICA};

#[derive(Debug)]
pub(super) struct Topology<P> {
    pub(super) nodes: Vec<Arc<Node<P>>>,
    pub(super) primary: Option<usize>,
    /// The replicas that serve [`Consistency::Any`] reads (lowest tier only),
    /// recomputed whenever a ban, role, lag ban or weight changes, so the
    /// common read picks in O(1).
    pub(super) any: RwLock<Vec<u32>>,
}

impl<P> Topology<P> {
    pub(super) fn new(nodes: Vec<Arc<Node<P>>>, primary: Option<usize>) -> Self {
        let topo = Self {
            nodes,
            primary,
            any: RwLock::new(Vec::new()),
        };
        topo.refresh_any();
        topo
    }

    pub(super) fn primary(&self) -> Option<&Arc<Node<P>>> {
        self.primary.map(|i| &self.nodes[i])
    }

    pub(super) fn serves_any(&self, i: usize) -> bool {
        let node = &self.nodes[i];
        Some(i) != self.primary
            && node.role.load(Ordering::Acquire) == ROLE_REPLICA
            && node.weight() > 0.0
            && !node.banned.load(Ordering::Acquire)
            && !node.lag_banned.load(Ordering::Acquire)
            && node.on_history()
    }

    /// Recomputes the list under its write lock, so that concurrent
    /// refreshes cannot overwrite a newer list with an older one: the last
    /// to take the lock reads the latest node state.
    pub(super) fn refresh_any(&self) {
        let mut any = self.any.write().unwrap_or_else(PoisonError::into_inner);
        let mut best = u8::MAX;
        let list = &mut *any;
        list.clear();
        for (i, node) in self.nodes.iter().enumerate() {
            if !self.serves_any(i) || node.tier > best {
                continue;
            }
            if node.tier < best {
                best = node.tier;
                list.clear();
            }
            list.push(u32::try_from(i).unwrap_or(u32::MAX));
        }
    }
}
