//! The monitor: probes every node and applies what it finds (bans, roles,
//! lag, split brain).

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use sysmanage_core::Clock;

use super::health::{LagInput, LagLimits, Transition, lag_bans};
use super::lsn::Lsn;
use super::node::{
    LAG_UNKNOWN, Node, NodeInner, Observed, Probing, ROLE_PRIMARY, ROLE_REPLICA, STREAMING_NO,
    STREAMING_UNKNOWN, STREAMING_YES, relation_code, relation_of,
};
use super::pool::{NodePool, Probe};
use super::primary::{RoleView, choose_primary};
use super::router::{Inner, TARGET};
use super::timeline::{
    HistoryRelation, PrimaryTimeline, TimelineHistory, TimelineId, history_relation,
};
use super::topology::Topology;
use crate::error::Result;

pub(super) async fn monitor_loop<P: NodePool>(
    weak: std::sync::Weak<Inner<P>>,
    wake: Arc<tokio::sync::Notify>,
) {
    loop {
        let delay = match weak.upgrade() {
            Some(inner) => inner.next_delay(),
            None => return,
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = wake.notified() => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        inner.probe_round(false).await;
    }
}

impl<P: NodePool> Inner<P> {
    /// Probes every node not already being probed, each in its own task that
    /// applies its outcome as soon as it arrives, so a node that hangs until
    /// the probe timeout never delays what the others report (a promotion,
    /// say). With `wait`, returns once this round's probes are applied; if
    /// that wait is cancelled the probes are aborted, and each clears its
    /// node's `probing` flag as it goes (so the node is probed again next
    /// round).
    pub(super) async fn probe_round(self: &Arc<Self>, wait: bool) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let topo = self.topology();
        let timeout = self.config.probe_timeout;
        let mut set = tokio::task::JoinSet::new();
        for node in &topo.nodes {
            if node.probing.swap(true, Ordering::AcqRel) {
                continue;
            }
            let guard = Probing(Arc::clone(node));
            let weak = Arc::downgrade(self);
            let clock = Arc::clone(&self.clock);
            set.spawn(async move {
                let node = &guard.0;
                let generation = node.generation.load(Ordering::Acquire);
                let started = clock.now();
                let result = match tokio::time::timeout(timeout, node.pool.probe()).await {
                    Ok(Ok(p)) => Ok(p),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("probe timed out after {timeout:?}")),
                };
                // A writable node's timeline history, once per timeline: it
                // is what tells, after a promotion, which replicas' data is
                // still the primary's.
                if let Ok(Probe {
                    in_recovery: false,
                    timeline: Some(tli),
                    ..
                }) = &result
                    && let Some(inner) = weak.upgrade()
                    && !inner.knows_history(*tli)
                {
                    let left =
                        timeout.saturating_sub(clock.now().saturating_duration_since(started));
                    match tokio::time::timeout(left, node.pool.timeline_history(*tli)).await {
                        Ok(Ok(Some(h))) if h.timeline() == *tli => inner.remember_history(h),
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(target: TARGET, event = "replica.history_unavailable",
                                node = %node.name, timeline = tli.get(), error = %e,
                                "cannot read the timeline history");
                        }
                        Err(_) => {}
                    }
                }
                if let Some(inner) = weak.upgrade() {
                    inner.apply_outcome(node, started, generation, result);
                }
                drop(guard);
            });
        }
        if wait {
            while set.join_next().await.is_some() {}
        } else {
            set.detach_all();
        }
    }

    /// Applies one probe outcome: the node's role, health and lag, then the
    /// router-wide decisions that depend on it (primary, lag bans).
    /// `generation` is the node's generation when the probe started.
    pub(super) fn apply_outcome(
        &self,
        node: &Arc<Node<P>>,
        started: Instant,
        generation: u64,
        result: Result<Probe, String>,
    ) {
        let _apply = self.apply.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.clock.now();
        let mut topo = self.topology();
        let Some(i) = topo.nodes.iter().position(|n| Arc::ptr_eq(n, node)) else {
            return; // removed while being probed
        };
        let unit = self.unit();
        let (transition, until) = {
            let mut g = node.lock();
            if result.is_ok() && node.generation.load(Ordering::Acquire) != generation {
                // Banned while this probe ran: what it saw may predate the
                // failure, so it neither re-admits the node nor tells its
                // replay position. The next probe will.
                return;
            }
            g.ewma.decay(now);
            node.latency
                .store(g.ewma.estimate_secs().to_bits(), Ordering::Relaxed);
            let t = match &result {
                Ok(probe) => {
                    g.observed = Observed::Answered {
                        in_recovery: probe.in_recovery,
                    };
                    g.failed_probes = 0;
                    if probe.in_recovery {
                        g.deposed = false;
                    }
                    let role = if probe.in_recovery {
                        ROLE_REPLICA
                    } else {
                        ROLE_PRIMARY
                    };
                    if node.role.swap(role, Ordering::AcqRel) != role {
                        node.forget_replay();
                    }
                    // The replay position as it is now (it may have moved
                    // back), stored before a re-admission below.
                    if let (true, Some(replay)) = (probe.in_recovery, probe.replay_lsn) {
                        node.replay_lsn.store(replay.as_u64(), Ordering::Release);
                        node.has_replay.store(true, Ordering::Release);
                    }
                    // Its timeline and where it stands on the primary's
                    // history, also before a re-admission.
                    node.observe_timeline(probe.timeline, probe.min_timeline);
                    node.streaming.store(
                        match probe.streaming {
                            None => STREAMING_UNKNOWN,
                            Some(true) => STREAMING_YES,
                            Some(false) => STREAMING_NO,
                        },
                        Ordering::Release,
                    );
                    if probe.in_recovery {
                        self.classify(node, &self.primary_timeline());
                    }
                    g.last_probe = Some(self.wall_of(started));
                    g.health.probe_ok(now)
                }
                Err(_) => {
                    g.observed = Observed::Failed;
                    g.failed_probes = g.failed_probes.saturating_add(1);
                    g.health.probe_failed(now, &self.config.ban_backoff, unit)
                }
            };
            if matches!(t, Transition::Banned(_)) {
                node.forget_replay();
            }
            node.sync_ban(&g.health);
            (t, g.health.ban().map(|b| self.wall_of(b.until)))
        };
        match transition {
            Transition::Banned(reason) => {
                node.metrics.banned(reason.label());
                let error = result.as_ref().err().map(String::as_str).unwrap_or("");
                tracing::warn!(target: TARGET, event = "replica.ban", node = %node.name,
                    reason = reason.label(), until = ?until, error, "node banned");
            }
            Transition::Unbanned => {
                node.metrics.unbanned("probe_ok");
                tracing::info!(target: TARGET, event = "replica.unban", node = %node.name,
                    "node re-admitted");
            }
            Transition::None => {}
        }

        // Which node takes writes.
        let views: Vec<RoleView> = topo
            .nodes
            .iter()
            .map(|n| {
                let g = n.lock();
                RoleView {
                    answered: match g.observed {
                        Observed::Answered { in_recovery } => Some(in_recovery),
                        _ => None,
                    },
                    failed_probes: g.failed_probes,
                    deposed: g.deposed,
                }
            })
            .collect();
        self.check_split_brain(&topo, &views);
        let new_primary = choose_primary(topo.primary, &views, self.config.primary_failure_probes);
        // Where every replica stands on the (new) primary's history, decided
        // before writes move: a replica that diverged stops serving before
        // any token from the new primary exists.
        self.refresh_timelines(&topo, new_primary);
        if new_primary != topo.primary {
            let mut guard = self
                .topology
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if Arc::ptr_eq(&guard, &topo) {
                let old = topo.primary().map(|n| n.name.clone());
                if let Some(old) = topo.primary() {
                    // It must be seen in recovery before it may lead again.
                    old.lock().deposed = true;
                }
                let next = Arc::new(Topology::new(topo.nodes.clone(), new_primary));
                *guard = Arc::clone(&next);
                drop(guard);
                topo = next;
                self.history
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
                for n in &topo.nodes {
                    // Lag against the old primary means nothing now.
                    let mut g = n.lock();
                    n.lag_bytes.store(LAG_UNKNOWN, Ordering::Relaxed);
                    n.fresh_as_of.store(0, Ordering::Release);
                    g.lag_time = None;
                }
                self.role_changes.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(crate::telemetry::REPLICA_ROLE_CHANGES).increment(1);
                tracing::warn!(target: TARGET, event = "replica.role_change",
                    old_primary = ?old, new_primary = ?topo.primary().map(|n| n.name.as_str()),
                    "primary changed: writes re-pointed");
            }
        }

        // The primary's position, sampled at the start of its probe.
        if let (Some(p), Ok(probe)) = (topo.primary, &result)
            && p == i
            && let (false, Some(lsn)) = (probe.in_recovery, probe.current_lsn)
        {
            self.history
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(started, lsn);
            // Replicas whose lag was unknown for want of a primary sample.
            for (k, n) in topo.nodes.iter().enumerate() {
                if k != p && n.lag_bytes().is_none() && n.has_replay.load(Ordering::Acquire) {
                    let mut g = n.lock();
                    self.update_lag(n, &mut g, now, None);
                }
            }
        }

        // This replica's lag.
        if let Ok(probe) = &result {
            let mut g = node.lock();
            if probe.in_recovery && Some(i) != topo.primary {
                let age = probe
                    .replay_age
                    .map(|a| a.saturating_add(now.saturating_duration_since(started)));
                self.update_lag(node, &mut g, now, age);
            } else {
                node.lag_bytes.store(LAG_UNKNOWN, Ordering::Relaxed);
                g.lag_time = None;
            }
        }

        // Lag bans over every replica, with hysteresis and the guard.
        let mut lag_inputs = Vec::new();
        for (k, n) in topo.nodes.iter().enumerate() {
            if Some(k) != topo.primary && n.role.load(Ordering::Relaxed) == ROLE_REPLICA {
                let g = n.lock();
                lag_inputs.push((
                    k,
                    LagInput {
                        available: !g.health.is_banned() && n.weight() > 0.0 && n.on_history(),
                        lag_banned: n.lag_banned.load(Ordering::Relaxed),
                        lag_bytes: n.lag_bytes(),
                        lag_time: g.lag_time.unwrap_or(Duration::MAX),
                    },
                ));
            } else {
                n.lag_banned.store(false, Ordering::Relaxed);
            }
        }
        let limits = LagLimits {
            max_bytes: self.config.max_lag_bytes,
            max_time: self.config.max_lag,
            recovery_ratio: self.config.lag_recovery_ratio,
        };
        let inputs: Vec<LagInput> = lag_inputs.iter().map(|(_, l)| *l).collect();
        let bans = lag_bans(&inputs, &limits, self.config.min_serving_replicas);
        for ((k, input), banned) in lag_inputs.iter().zip(bans) {
            let n = &topo.nodes[*k];
            if banned != input.lag_banned {
                n.lag_banned.store(banned, Ordering::Relaxed);
                if banned {
                    n.metrics.banned("lag");
                    tracing::warn!(target: TARGET, event = "replica.lag_ban", node = %n.name,
                        lag_bytes = ?input.lag_bytes, lag_secs = input.lag_time.as_secs_f64(),
                        "replica lag-banned");
                } else {
                    n.metrics.unbanned("lag");
                    tracing::info!(target: TARGET, event = "replica.lag_unban", node = %n.name,
                        lag_bytes = ?input.lag_bytes, "replica re-admitted after lagging");
                }
            }
        }
        topo.refresh_any();
    }

    /// Whether the history of `timeline` has been read.
    pub(super) fn knows_history(&self, timeline: TimelineId) -> bool {
        self.histories
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&timeline)
    }

    /// Keeps a timeline's history (histories never change).
    pub(super) fn remember_history(&self, history: TimelineHistory) {
        self.histories
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(history.timeline(), Arc::new(history));
    }

    /// Decides where `node` stands on the primary's history and reports a
    /// divergence (or its end) once per episode.
    pub(super) fn classify(&self, node: &Node<P>, primary: &PrimaryTimeline) {
        let relation = history_relation(primary, node.position());
        let old = relation_of(
            node.relation
                .swap(relation_code(relation), Ordering::AcqRel),
        );
        if old == relation {
            return;
        }
        let position = node.position();
        let timeline = position.timeline.map(TimelineId::get);
        let replay = position.replay.map(|r| r.to_string());
        let primary_timeline = primary.timeline().map(TimelineId::get);
        if relation == HistoryRelation::Diverged {
            self.divergences.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: TARGET, event = "replica.diverged", node = %node.name,
                timeline, replay = ?replay, primary_timeline,
                "replica replayed wal the primary's history does not contain; it serves no reads until it is rebuilt and follows the primary");
        } else if old == HistoryRelation::Diverged {
            tracing::info!(target: TARGET, event = "replica.diverged_resolved", node = %node.name,
                timeline, replay = ?replay, primary_timeline, relation = relation.label(),
                "replica is on the primary's history again");
        }
    }

    /// Re-reads what is known of the primary's timeline (node `primary` of
    /// `topo`) and classifies every replica against it.
    pub(super) fn refresh_timelines(&self, topo: &Topology<P>, primary: Option<usize>) {
        let pt = match primary
            .and_then(|p| topo.nodes.get(p))
            .and_then(|n| TimelineId::new(n.timeline.load(Ordering::Acquire)))
        {
            None => PrimaryTimeline::NotReported,
            Some(t) => match self
                .histories
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&t)
            {
                Some(h) => PrimaryTimeline::History(Arc::clone(h)),
                None => PrimaryTimeline::Timeline(t),
            },
        };
        for (k, n) in topo.nodes.iter().enumerate() {
            if Some(k) == primary || n.role.load(Ordering::Acquire) != ROLE_REPLICA {
                n.relation
                    .store(relation_code(HistoryRelation::Current), Ordering::Release);
            } else {
                self.classify(n, &pt);
            }
        }
        *self
            .primary_timeline
            .write()
            .unwrap_or_else(PoisonError::into_inner) = pt;
    }

    /// A replica's lag from its stored replay position and the primary's
    /// history. `replay_age` is the standby's own estimate, if any.
    pub(super) fn update_lag(
        &self,
        node: &Node<P>,
        g: &mut NodeInner,
        now: Instant,
        replay_age: Option<Duration>,
    ) {
        if !node.has_replay.load(Ordering::Acquire) || !node.on_history() {
            // Unknown; lag against a history the replica does not share
            // means nothing.
            node.lag_bytes.store(LAG_UNKNOWN, Ordering::Relaxed);
            node.fresh_as_of.store(0, Ordering::Release);
            g.lag_time = None;
            return;
        }
        let replay = Lsn::new(node.replay_lsn.load(Ordering::Acquire));
        let (primary_lsn, fresh) = {
            let h = self.history.lock().unwrap_or_else(PoisonError::into_inner);
            (h.latest(), h.fresh_as_of(replay))
        };
        let lag_bytes = primary_lsn.map(|p| p.bytes_since(replay).min(LAG_UNKNOWN - 1));
        node.lag_bytes
            .store(lag_bytes.unwrap_or(LAG_UNKNOWN), Ordering::Relaxed);
        node.fresh_as_of.store(
            fresh.map_or(0, |t| self.nanos_since_epoch(t).saturating_add(1)),
            Ordering::Release,
        );
        g.lag_time = match lag_bytes {
            None => None,
            Some(0) => Some(Duration::ZERO),
            Some(_) => {
                let by_history = fresh.map(|t| now.saturating_duration_since(t));
                match (by_history, replay_age) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        };
        if let Some(bytes) = lag_bytes {
            #[allow(clippy::cast_precision_loss)]
            node.metrics.lag_bytes.set(bytes as f64);
        }
        if let Some(t) = g.lag_time {
            node.metrics.lag_seconds.set(t.as_secs_f64());
        }
    }

    /// Reports (once per episode) when more than one node answers as
    /// writable: a split brain, e.g. an old primary back after a failover.
    pub(super) fn check_split_brain(&self, topo: &Topology<P>, views: &[RoleView]) {
        let writable: Vec<&str> = views
            .iter()
            .zip(&topo.nodes)
            .filter(|(v, _)| v.answered == Some(false))
            .map(|(_, n)| n.name.as_str())
            .collect();
        if writable.len() > 1 {
            if !self.split_brain.swap(true, Ordering::Relaxed) {
                tracing::warn!(target: TARGET, event = "replica.split_brain",
                    writable = ?writable, primary = ?topo.primary().map(|n| n.name.as_str()),
                    "more than one node accepts writes; writes stay on the current primary");
            }
        } else if self.split_brain.swap(false, Ordering::Relaxed) {
            tracing::info!(target: TARGET, event = "replica.split_brain_resolved",
                writable = ?writable, "at most one node accepts writes again");
        }
    }
}
