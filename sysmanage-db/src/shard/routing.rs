//! A router's live placement: which node set owns each logical shard, which
//! shards are fenced, and the routing epoch, shared by every clone of a
//! [`ShardRouter`](super::ShardRouter) and changed only by newer shard maps.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, watch};

/// Per-shard placement and fence flags behind atomics: routing a key reads
/// one atomic, and a new map is applied without stopping readers. Maps are
/// applied one at a time (`apply`), each shard's entry is consistent on its
/// own, and the epoch is published last.
pub(crate) struct Routing {
    placement: Box<[AtomicUsize]>,
    fenced: Box<[AtomicBool]>,
    epoch: AtomicU64,
    changes: watch::Sender<u64>,
    apply: Mutex<()>,
    refresh: Arc<Notify>,
}

impl Routing {
    pub(crate) fn new(placement: Vec<usize>) -> Self {
        let fenced = placement.iter().map(|_| AtomicBool::new(false)).collect();
        Routing {
            placement: placement.into_iter().map(AtomicUsize::new).collect(),
            fenced,
            epoch: AtomicU64::new(0),
            changes: watch::Sender::new(0),
            apply: Mutex::new(()),
            refresh: Arc::new(Notify::new()),
        }
    }

    /// A copy with its own epoch channel, at the same epoch.
    pub(crate) fn fork(&self, placement: Vec<usize>) -> Self {
        let r = Routing::new(placement);
        for (dst, src) in r.fenced.iter().zip(self.fenced.iter()) {
            dst.store(src.load(Ordering::Acquire), Ordering::Release);
        }
        let epoch = self.epoch();
        r.epoch.store(epoch, Ordering::Release);
        r.changes.send_replace(epoch);
        r
    }

    pub(crate) fn len(&self) -> usize {
        self.placement.len()
    }

    pub(crate) fn node_set_index(&self, shard: usize) -> Option<usize> {
        self.placement.get(shard).map(|p| p.load(Ordering::Acquire))
    }

    pub(crate) fn is_fenced(&self, shard: usize) -> bool {
        self.fenced
            .get(shard)
            .is_some_and(|f| f.load(Ordering::Acquire))
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn placement(&self) -> Vec<usize> {
        self.placement
            .iter()
            .map(|p| p.load(Ordering::Acquire))
            .collect()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn refresh_signal(&self) -> Arc<Notify> {
        Arc::clone(&self.refresh)
    }

    /// Asks whoever keeps this router's map current (a watcher) to look for
    /// a newer one now.
    pub(crate) fn request_refresh(&self) {
        self.refresh.notify_waiters();
        self.refresh.notify_one();
    }

    /// Applies `placement` and `fenced` (already validated, one entry per
    /// shard) when `version` is newer than the current epoch.
    pub(crate) fn apply(&self, version: u64, placement: &[usize], fenced: &[bool]) -> bool {
        let _one_at_a_time = self.apply.lock().unwrap_or_else(PoisonError::into_inner);
        if version <= self.epoch() {
            return false;
        }
        for (slot, &p) in self.placement.iter().zip(placement) {
            slot.store(p, Ordering::Release);
        }
        for (slot, &f) in self.fenced.iter().zip(fenced) {
            slot.store(f, Ordering::Release);
        }
        self.epoch.store(version, Ordering::Release);
        self.changes.send_replace(version);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_newer_versions_apply() {
        let r = Routing::new(vec![0, 0, 1]);
        let mut rx = r.subscribe();
        assert!(r.apply(3, &[1, 1, 1], &[false, true, false]));
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 3);
        assert_eq!(r.placement(), vec![1, 1, 1]);
        assert!(r.is_fenced(1));
        // Older and equal versions are ignored: a late notification cannot
        // roll the map back.
        assert!(!r.apply(2, &[0, 0, 0], &[false; 3]));
        assert!(!r.apply(3, &[0, 0, 0], &[false; 3]));
        assert_eq!(r.placement(), vec![1, 1, 1]);
        assert!(!rx.has_changed().unwrap());
        let f = r.fork(vec![0, 1, 1]);
        assert_eq!(f.epoch(), 3);
        assert!(f.is_fenced(1));
        assert_eq!(f.placement(), vec![0, 1, 1]);
    }
}
