//! Choosing the replica for a read, and waiting for one to reach a token.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use sysmanage_core::Clock;

use super::balance::pick;
use super::config::{Consistency, Strategy};
use super::node::{Node, ROLE_REPLICA, STREAMING_NO};
use super::pool::NodePool;
use super::router::Inner;
use super::timeline::{HistoryRelation, WalToken, token_on_history};
use super::topology::Topology;

/// Up to 64 candidate indices on the stack; more spill to the heap.
pub(super) enum Picks {
    Inline([u16; 64], usize),
    Heap(Vec<usize>),
}

impl Picks {
    pub(super) fn new(n: usize) -> Self {
        if n <= 64 {
            Self::Inline([0; 64], 0)
        } else {
            Self::Heap(Vec::with_capacity(n))
        }
    }
    pub(super) fn clear(&mut self) {
        match self {
            Self::Inline(_, len) => *len = 0,
            Self::Heap(v) => v.clear(),
        }
    }
    pub(super) fn push(&mut self, i: usize) {
        match self {
            Self::Inline(a, len) => {
                a[*len] = i as u16;
                *len += 1;
            }
            Self::Heap(v) => v.push(i),
        }
    }
    pub(super) fn len(&self) -> usize {
        match self {
            Self::Inline(_, len) => *len,
            Self::Heap(v) => v.len(),
        }
    }
    pub(super) fn get(&self, k: usize) -> usize {
        match self {
            Self::Inline(a, _) => usize::from(a[k]),
            Self::Heap(v) => v[k],
        }
    }
}

impl<P> Inner<P> {
    /// The replica to read from, if one qualifies. Pure apart from reading
    /// the clock (bounded staleness only) and drawing random numbers.
    pub(super) fn select(
        &self,
        topo: &Topology<P>,
        consistency: &Consistency,
        exclude: Option<&Arc<Node<P>>>,
        ignore_bans: bool,
    ) -> (Option<Arc<Node<P>>>, usize) {
        if *consistency == Consistency::Any && exclude.is_none() && !ignore_bans {
            let any = topo.any.read().unwrap_or_else(PoisonError::into_inner);
            let n = any.len();
            let at = |k: usize| any[k] as usize;
            let chosen = match (n, self.config.strategy) {
                (0, _) => None,
                (1, _) => Some(at(0)),
                (_, Strategy::RoundRobin) => {
                    let turn = self.turn.fetch_add(1, Ordering::Relaxed);
                    Some(at((turn % n as u64) as usize))
                }
                (_, strategy) => {
                    let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
                    pick(strategy, n, |k| topo.nodes[at(k)].candidate(), 0, &mut rng).map(at)
                }
            };
            // The cached list may trail a ban by a moment (it is refreshed
            // after the node's state changes): never hand out a node that no
            // longer serves; the full scan below decides instead.
            if let Some(i) = chosen
                && topo.serves_any(i)
            {
                return (Some(Arc::clone(&topo.nodes[i])), n);
            }
        }
        let now_ns = match consistency {
            Consistency::BoundedStaleness {
                max_time: Some(_), ..
            } => self.nanos_since_epoch(self.clock.now()),
            _ => 0,
        };
        // A token written on a branch the primary's history does not
        // follow (lost with an old primary) is held by no replica.
        let token_ok = match consistency {
            Consistency::AtLeast { token, .. } => {
                token_on_history(&self.primary_timeline(), *token)
            }
            _ => true,
        };
        let mut picks = Picks::new(topo.nodes.len());
        let mut best_tier = u8::MAX;
        let mut checked = 0;
        for (i, node) in topo.nodes.iter().enumerate() {
            if Some(i) == topo.primary
                || node.role.load(Ordering::Relaxed) != ROLE_REPLICA
                || exclude.is_some_and(|e| Arc::ptr_eq(e, node))
            {
                continue;
            }
            checked += 1;
            // A replica off the primary's history never serves, bans
            // ignored or not: its data is not the primary's.
            if node.weight() <= 0.0 || node.tier > best_tier || !node.on_history() {
                continue;
            }
            if !ignore_bans && node.banned.load(Ordering::Acquire) {
                continue;
            }
            let ok = match consistency {
                Consistency::Any => ignore_bans || !node.lag_banned.load(Ordering::Relaxed),
                Consistency::BoundedStaleness {
                    max_bytes,
                    max_time,
                } => {
                    max_bytes.is_none_or(|m| node.lag_bytes().is_some_and(|lag| lag <= m))
                        && max_time.is_none_or(|m| {
                            let fresh = node.fresh_as_of.load(Ordering::Acquire);
                            fresh != 0 && now_ns.saturating_sub(fresh - 1) <= duration_nanos(m)
                        })
                }
                Consistency::AtLeast { token, .. } => {
                    token_ok
                        && node.has_replay.load(Ordering::Acquire)
                        && node.replay_lsn.load(Ordering::Acquire) >= token.lsn().as_u64()
                }
                Consistency::Primary => false,
            };
            if !ok {
                continue;
            }
            if node.tier < best_tier {
                best_tier = node.tier;
                picks.clear();
            }
            picks.push(i);
        }
        let n = picks.len();
        let chosen = match (n, self.config.strategy) {
            (0, _) => None,
            (1, _) => Some(picks.get(0)),
            (_, Strategy::RoundRobin) => {
                let turn = self.turn.fetch_add(1, Ordering::Relaxed);
                Some(picks.get((turn % n as u64) as usize))
            }
            (_, strategy) => {
                let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
                pick(
                    strategy,
                    n,
                    |k| topo.nodes[picks.get(k)].candidate(),
                    0,
                    &mut rng,
                )
                .map(|k| picks.get(k))
            }
        };
        (chosen.map(|i| Arc::clone(&topo.nodes[i])), checked)
    }
}

pub(super) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<P: NodePool> Inner<P> {
    /// Whether `node` can reach `token` by replaying what it receives: it
    /// serves, is on the primary's own timeline and its WAL receiver is not
    /// known to be stopped. A replica that stopped streaming, sits on an
    /// earlier timeline or diverged never reaches a new token: waiting for
    /// it would only delay the read.
    fn can_reach(&self, topo: &Topology<P>, i: usize) -> bool {
        let node = &topo.nodes[i];
        Some(i) != topo.primary
            && node.role.load(Ordering::Relaxed) == ROLE_REPLICA
            && !node.banned.load(Ordering::Acquire)
            && node.weight() > 0.0
            && node.relation() == HistoryRelation::Current
            && node.streaming.load(Ordering::Acquire) != STREAMING_NO
    }

    /// Re-polls replicas that can reach `token` but have not yet, until one
    /// has or `wait` (capped at `max_token_wait`) passes. Returns at once
    /// when no replica can reach it.
    pub(super) async fn wait_for_token(
        &self,
        topo: &Topology<P>,
        consistency: &Consistency,
        token: WalToken,
        wait: Duration,
    ) -> Option<Arc<Node<P>>> {
        if !token_on_history(&self.primary_timeline(), token) {
            return None;
        }
        let start = tokio::time::Instant::now();
        let wait = wait.min(self.config.max_token_wait);
        let deadline = start.checked_add(wait).unwrap_or(start);
        let target = token.lsn().as_u64();
        loop {
            let mut reachable = false;
            for (i, node) in topo.nodes.iter().enumerate() {
                if !self.can_reach(topo, i) {
                    continue;
                }
                reachable = true;
                if node.has_replay.load(Ordering::Acquire)
                    && node.replay_lsn.load(Ordering::Acquire) >= target
                {
                    continue;
                }
                let generation = node.generation.load(Ordering::Acquire);
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if let Ok(Ok(Some(replay))) =
                    tokio::time::timeout(left, node.pool.replay_lsn()).await
                {
                    let _g = node.lock();
                    // Not across a ban: the node may have restarted behind.
                    if node.generation.load(Ordering::Acquire) == generation {
                        node.replay_lsn.store(replay.as_u64(), Ordering::Release);
                        node.has_replay.store(true, Ordering::Release);
                    }
                }
            }
            if let (Some(node), _) = self.select(topo, consistency, None, false) {
                return Some(node);
            }
            let now = tokio::time::Instant::now();
            if !reachable || now >= deadline {
                return None;
            }
            let step = self.config.token_poll_interval.min(deadline - now);
            tokio::time::sleep(step).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::{MemoryCluster, MemoryNode, NodeSpec, ReplicaRouter};

    #[tokio::test]
    async fn a_stale_any_list_never_hands_out_a_banned_node() {
        let cluster = MemoryCluster::new();
        let router: ReplicaRouter<MemoryNode> = ReplicaRouter::builder()
            .monitor(false)
            .primary(NodeSpec::new("p", cluster.add_primary()))
            .replica(NodeSpec::new("r0", cluster.add_replica()))
            .replica(NodeSpec::new("r1", cluster.add_replica()))
            .build()
            .await
            .unwrap();
        let topo = router.inner.topology();
        assert_eq!(topo.any.read().unwrap().len(), 2);
        // Banned, but the cached list not refreshed yet (the window a
        // concurrent refresh could leave open).
        topo.nodes[1].banned.store(true, Ordering::Release);
        for _ in 0..100 {
            assert_eq!(
                router.pick_replica(&Consistency::Any).as_deref(),
                Some("r1")
            );
        }
        // Nothing serves: no pick at all.
        topo.nodes[2].banned.store(true, Ordering::Release);
        assert_eq!(router.pick_replica(&Consistency::Any), None);
    }
}
