//! The executor: a state machine over the phases of [`Phase`], each phase
//! derived afresh from the cluster's own state, so that a rerun after a
//! crash or a cancel continues where the cluster is.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinSet;

use super::admin::Admin;
use super::config::ScaleConfig;
use super::error::{ScaleError, ScaleResult};
use super::hook::{BeforeSlot, Canceller, SlotStep};
use super::migrate::{Group, NodeRef, group_moves};
use super::plan::{Plan, ReplicaAttach, compute_plan};
use super::progress::{Closed, Phase, Progress, ScaleEvent};
use super::resume::{CloseAction, close_actions, counts_needed};
use super::target::ScaleTarget;
use super::view::{ClusterView, NodeRole};
use super::weights::SlotWeights;
use crate::error::CacheError;
use crate::redis::RedisConfig;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The cluster reached the target.
    Done,
    /// Stopped at a slot boundary by [`Canceller::cancel`]; the cluster is
    /// consistent and a rerun with the same target finishes the job.
    Cancelled,
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// How it ended.
    pub outcome: Outcome,
    /// Nodes introduced with `CLUSTER MEET`.
    pub joined: Vec<String>,
    /// Replicas attached.
    pub attached: Vec<ReplicaAttach>,
    /// Half-migrated slots (from an earlier run) closed.
    pub slots_closed: usize,
    /// Slots moved.
    pub slots_moved: usize,
    /// Slots the plan still had when the run stopped (0 when done).
    pub slots_left: usize,
    /// Keys moved (closing included).
    pub keys_moved: u64,
    /// Bytes moved (`MEMORY USAGE` of the moved keys).
    pub bytes_moved: u64,
    /// Nodes forgotten (and reset, with
    /// [`ScaleConfig::reset_removed`]).
    pub forgotten: Vec<String>,
    /// The moves' plan, as computed after joins and closings.
    pub plan: Option<Plan>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Time spent moving slots.
    pub migrate_elapsed: Duration,
}

impl Report {
    fn new() -> Self {
        Self {
            outcome: Outcome::Done,
            joined: Vec::new(),
            attached: Vec::new(),
            slots_closed: 0,
            slots_moved: 0,
            slots_left: 0,
            keys_moved: 0,
            bytes_moved: 0,
            forgotten: Vec::new(),
            plan: None,
            elapsed: Duration::ZERO,
            migrate_elapsed: Duration::ZERO,
        }
    }
}

/// Keys and bytes moved so far, shared by the slot tasks of a run.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) keys: AtomicU64,
    pub(super) bytes: AtomicU64,
}

pub(super) struct Inner {
    pub(super) admin: Admin,
    pub(super) config: ScaleConfig,
    pub(super) events: broadcast::Sender<ScaleEvent>,
    pub(super) hook: Option<Arc<dyn BeforeSlot>>,
    pub(super) cancel: Canceller,
}

/// The scaling executor: plans and carries out adding and removing
/// primaries and moving slots, online, on a Redis Cluster.
///
/// Cheap to clone (clones share connections, events and the canceller).
/// See the [module documentation](super) for the protocol, the phases and
/// resume.
#[derive(Clone)]
pub struct Scaler {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Scaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaler")
            .field("seeds", &self.inner.admin.config().nodes)
            .field("config", &self.inner.config)
            .field("before_slot", &self.inner.hook.is_some())
            .finish_non_exhaustive()
    }
}

/// Groups in flight, by source and by target node.
///
/// A source running `MIGRATE` answers nothing else until its target has
/// restored the keys. Were a target also the source of another group in
/// flight, two nodes could wait on each other (A → B while B → A, or a
/// longer cycle) until `MIGRATE`'s timeout, answering no ping meanwhile,
/// and the cluster would fail them over. So no node is a source and a
/// target at once, which rules out any cycle.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    sources: BTreeMap<String, usize>,
    targets: BTreeMap<String, usize>,
}

impl InFlight {
    /// Whether a group `from` → `to` may start now.
    pub(super) fn may_start(&self, from: &str, to: &str, per_source: usize) -> bool {
        self.sources.get(from).copied().unwrap_or(0) < per_source
            && !self.targets.contains_key(from)
            && !self.sources.contains_key(to)
    }

    pub(super) fn start(&mut self, from: &str, to: &str) {
        *self.sources.entry(from.to_owned()).or_default() += 1;
        *self.targets.entry(to.to_owned()).or_default() += 1;
    }

    pub(super) fn finish(&mut self, from: &str, to: &str) {
        for (map, key) in [(&mut self.sources, from), (&mut self.targets, to)] {
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
    }
}

/// The joins, attachments and removals of `target` on `view` (its moves
/// are not looked at, so no measurement is needed).
fn membership(view: &ClusterView, target: &ScaleTarget) -> ScaleResult<Plan> {
    let mut t = target.clone();
    t.balance = super::target::Balance::Slots;
    compute_plan(view, &t, &SlotWeights::unmeasured(), 1.0, 0.0)
}

impl Scaler {
    /// An executor for the cluster reachable through `redis.nodes` (seed
    /// nodes; credentials and timeouts from `redis` too). Connects lazily.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] for bad settings of either config.
    pub fn new(redis: RedisConfig, config: ScaleConfig) -> Result<Self, CacheError> {
        redis.validate()?;
        config.validate()?;
        let tls = crate::redis::connections::NodeTls::new(&redis)?;
        let (events, _) = broadcast::channel(config.event_capacity);
        Ok(Self {
            inner: Arc::new(Inner {
                admin: Admin::new(redis, tls),
                config,
                events,
                hook: None,
                cancel: Canceller::default(),
            }),
        })
    }

    /// This executor with `hook` run before every slot (see
    /// [`BeforeSlot`]). Call before cloning: clones made earlier keep
    /// their hook.
    #[must_use]
    pub fn with_before_slot(self, hook: impl BeforeSlot + 'static) -> Self {
        let inner = &self.inner;
        Self {
            inner: Arc::new(Inner {
                admin: Admin::new(inner.admin.config().clone(), inner.admin.tls().clone()),
                config: inner.config.clone(),
                events: inner.events.clone(),
                hook: Some(Arc::new(hook)),
                cancel: inner.cancel.clone(),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ScaleConfig {
        &self.inner.config
    }

    /// Events of the runs from now on. Slow receivers lose the oldest
    /// events (`RecvError::Lagged`); the [`Report`] of a run has the totals.
    pub fn subscribe(&self) -> broadcast::Receiver<ScaleEvent> {
        self.inner.events.subscribe()
    }

    /// The handle that stops a run at the next slot boundary. A request
    /// made while no run is active stops the next run at its first
    /// boundary; a run consumes the request when it returns.
    pub fn canceller(&self) -> Canceller {
        self.inner.cancel.clone()
    }

    /// The merged `CLUSTER NODES` of every member.
    ///
    /// # Errors
    /// [`ScaleError::ClusterState`] when no member answers.
    pub async fn view(&self) -> ScaleResult<ClusterView> {
        self.read_view().await
    }

    /// A target removing the primaries at `primaries` and their replicas
    /// (as the cluster lists them now). Build it once and keep it for a
    /// resume: once a primary has given its slots away, Redis may turn it
    /// and its replicas into replicas of another primary.
    ///
    /// # Errors
    /// [`ScaleError::InvalidTarget`] when an address is not a primary.
    pub async fn remove_primaries<S: AsRef<str>>(
        &self,
        primaries: &[S],
    ) -> ScaleResult<ScaleTarget> {
        let view = self.read_view().await?;
        let mut remove = Vec::new();
        for p in primaries {
            let p = p.as_ref();
            let n = view
                .node_at(p)
                .filter(|n| n.role == NodeRole::Primary)
                .ok_or_else(|| {
                    ScaleError::InvalidTarget(format!("{p} is not a primary of the cluster"))
                })?;
            remove.push(n.addr.clone());
            remove.extend(view.replicas_of(&n.id).map(|r| r.addr.clone()));
        }
        Ok(ScaleTarget::scale_in(remove))
    }

    /// The dry run: what [`execute`](Self::execute) would do now, with the
    /// keys and bytes each move carries. Reads the cluster and probes the
    /// nodes to add; changes nothing.
    ///
    /// # Errors
    /// As [`compute_plan`](super::compute_plan), plus
    /// [`ScaleError::NodeNotJoinable`] for a node to add that could not
    /// join.
    pub async fn plan(&self, target: &ScaleTarget) -> ScaleResult<Plan> {
        target.validate()?;
        let view = self.read_view().await?;
        let members = membership(&view, target)?;
        for node in &members.join {
            self.check_joinable(node, &view).await?;
        }
        let weights = self.measure(&view).await?;
        self.plan_with(&view, target, &weights)
    }

    fn plan_with(
        &self,
        view: &ClusterView,
        target: &ScaleTarget,
        w: &SlotWeights,
    ) -> ScaleResult<Plan> {
        let c = &self.inner.config;
        compute_plan(view, target, w, c.tolerance, c.slot_floor)
    }

    /// Carries the target out: joins nodes, attaches replicas, closes
    /// slots an earlier run left open, moves slots, waits until every node
    /// agrees, forgets removed nodes. Rerun it with the same target after a
    /// crash, an error or a cancel: every phase starts from what the
    /// cluster shows.
    ///
    /// # Errors
    /// Any [`ScaleError`]; the cluster keeps every key, and slots left open
    /// are named in the error.
    pub async fn execute(&self, target: &ScaleTarget) -> ScaleResult<Report> {
        let started = Instant::now();
        let res = self.run(target, started).await;
        self.inner.cancel.reset();
        if let Err(e) = &res {
            tracing::debug!(target: "sysmanage_cache::redis::scale", error = %e, "run failed");
        }
        res
    }

    pub(super) fn emit(&self, ev: ScaleEvent) {
        let _ = self.inner.events.send(ev);
    }

    fn phase(&self, phase: Phase) {
        tracing::info!(target: "sysmanage_cache::redis::scale", ?phase, "phase started");
        self.emit(ScaleEvent::PhaseStarted { phase });
    }

    async fn run(&self, target: &ScaleTarget, started: Instant) -> ScaleResult<Report> {
        target.validate()?;
        let mut report = Report::new();
        self.phase(Phase::Discover);
        let mut view = self.read_view().await?;
        let members = membership(&view, target)?;

        if !members.join.is_empty() {
            self.phase(Phase::Join);
            for node in &members.join {
                self.check_joinable(node, &view).await?;
            }
            self.join(&view, &members.join).await?;
            view = self.wait_joined(&members.join).await?;
            report.joined.clone_from(&members.join);
        }
        let members = membership(&view, target)?;
        if !members.replicate.is_empty() {
            self.phase(Phase::AttachReplicas);
            view = self.attach(&view, &members.replicate).await?;
            report.attached.clone_from(&members.replicate);
        }
        if !view.open_slots().is_empty() {
            self.phase(Phase::CloseOpenSlots);
            self.close_open(&view, &mut report).await?;
            view = self.wait_agreed().await?;
        }

        self.phase(Phase::Plan);
        let weights = self.measure(&view).await?;
        let plan = self.plan_with(&view, target, &weights)?;
        self.emit(ScaleEvent::Planned {
            slots: plan.moves.len(),
            expected_keys: plan.expected_keys,
            expected_bytes: plan.expected_bytes,
        });
        tracing::info!(target: "sysmanage_cache::redis::scale", plan = %plan.summary(), "planned");
        report.plan = Some(plan.clone());

        if !plan.moves.is_empty() {
            self.phase(Phase::Migrate);
            let mut targets: Vec<String> = plan.moves.iter().map(|m| m.to.clone()).collect();
            targets.sort();
            targets.dedup();
            self.wait_serving(&targets).await?;
            let t0 = Instant::now();
            let res = self.migrate(&view, &plan, &mut report).await;
            report.migrate_elapsed = t0.elapsed();
            res?;
        }
        if report.outcome == Outcome::Cancelled {
            self.phase(Phase::Converge);
            self.wait_agreed().await?;
            self.emit(ScaleEvent::Cancelled {
                slots_done: report.slots_moved,
                slots_left: report.slots_left,
            });
            report.elapsed = started.elapsed();
            return Ok(report);
        }
        self.phase(Phase::Converge);
        view = self.wait_agreed().await?;
        if !plan.forget.is_empty() {
            self.phase(Phase::Forget);
            for node in &plan.forget {
                if view.node_at(node).is_some() {
                    self.forget(&view, node).await?;
                    report.forgotten.push(node.clone());
                    view = self.read_view().await?;
                }
            }
        }
        report.elapsed = started.elapsed();
        self.emit(ScaleEvent::Done {
            slots: report.slots_moved,
            keys: report.keys_moved,
            bytes: report.bytes_moved,
        });
        tracing::info!(
            target: "sysmanage_cache::redis::scale",
            slots = report.slots_moved,
            keys = report.keys_moved,
            bytes = report.bytes_moved,
            elapsed_secs = report.elapsed.as_secs_f64(),
            "done"
        );
        Ok(report)
    }

    /// Closes every open slot of `view` (the resume of an interrupted run).
    async fn close_open(&self, view: &ClusterView, report: &mut Report) -> ScaleResult<()> {
        let mut counts = BTreeMap::new();
        for (slot, id) in counts_needed(view) {
            if let Some(n) = view.node(&id)
                && let Ok(k) = self.count_keys(&n.addr, slot).await
            {
                counts.insert((slot, id), k);
            }
        }
        let others = |a: &str, b: &str| -> Vec<String> {
            view.primaries()
                .filter(|n| n.id != a && n.id != b && !n.failing)
                .map(|n| n.addr.clone())
                .collect()
        };
        let node = |id: &str| -> ScaleResult<NodeRef> {
            view.node(id)
                .map(|n| NodeRef {
                    addr: n.addr.clone(),
                    id: n.id.clone(),
                })
                .ok_or_else(|| ScaleError::ClusterState(format!("node {id} is not a member")))
        };
        for action in close_actions(view, &counts)? {
            let slot = action.slot();
            let (how, keys) = match &action {
                CloseAction::Finish {
                    from,
                    to,
                    open_source,
                    open_target,
                    ..
                } => {
                    let (f, t) = (node(from)?, node(to)?);
                    self.check_hook(slot, &f.addr, &t.addr, true).await?;
                    let g = Group {
                        others: others(from, to),
                        from: f,
                        to: t,
                        slots: vec![slot],
                        set_importing: *open_target,
                        set_migrating: *open_source,
                        closing: true,
                    };
                    let tally = Tally::default();
                    let done = self.move_group(&g, &tally).await?;
                    (Closed::Finished, done.keys)
                }
                CloseAction::Assign { owner, .. } => {
                    let o = node(owner)?;
                    self.check_hook(slot, &o.addr, &o.addr, true).await?;
                    self.assign(slot, &o, &others(owner, owner)).await?;
                    (Closed::Assigned, 0)
                }
                CloseAction::Stable { node: id, .. } => {
                    let n = node(id)?;
                    self.check_hook(slot, &n.addr, &n.addr, true).await?;
                    self.stable(slot, &n).await?;
                    (Closed::Cleared, 0)
                }
            };
            tracing::info!(target: "sysmanage_cache::redis::scale", slot, ?how, keys, "open slot closed");
            report.slots_closed += 1;
            report.keys_moved += keys;
            self.emit(ScaleEvent::OpenSlotClosed { slot, how, keys });
        }
        Ok(())
    }

    async fn check_hook(&self, slot: u16, from: &str, to: &str, closing: bool) -> ScaleResult<()> {
        let Some(hook) = &self.inner.hook else {
            return Ok(());
        };
        let step = SlotStep {
            slot,
            from: from.to_owned(),
            to: to.to_owned(),
            closing,
        };
        hook.before_slot(&step)
            .await
            .map_err(|e| ScaleError::Refused {
                slot,
                source: Arc::from(e),
            })
    }

    /// Moves the slots of `plan`: groups of slots sharing source and
    /// target, at most [`ScaleConfig::parallel_per_source`] groups per
    /// source at a time and [`ScaleConfig::parallel_slots`] in all.
    async fn migrate(
        &self,
        view: &ClusterView,
        plan: &Plan,
        report: &mut Report,
    ) -> ScaleResult<()> {
        let cfg = &self.inner.config;
        let total = plan.moves.len();
        let node = |addr: &str| -> ScaleResult<NodeRef> {
            view.node_at(addr)
                .map(|n| NodeRef {
                    addr: n.addr.clone(),
                    id: n.id.clone(),
                })
                .ok_or_else(|| ScaleError::ClusterState(format!("{addr} is not a member")))
        };
        let primaries: Vec<(String, String)> = view
            .primaries()
            .filter(|n| !n.failing)
            .map(|n| (n.id.clone(), n.addr.clone()))
            .collect();
        let mut queues: BTreeMap<String, VecDeque<Group>> = BTreeMap::new();
        for slots in group_moves(&plan.moves, cfg.slots_per_group, cfg.group_keys) {
            let (from, to) = (node(&slots[0].from)?, node(&slots[0].to)?);
            let others = primaries
                .iter()
                .filter(|(id, _)| *id != from.id && *id != to.id)
                .map(|(_, a)| a.clone())
                .collect();
            queues
                .entry(from.addr.clone())
                .or_default()
                .push_back(Group {
                    from,
                    to,
                    others,
                    slots: slots.iter().map(|m| m.slot).collect(),
                    set_importing: true,
                    set_migrating: true,
                    closing: false,
                });
        }
        let tally = Arc::new(Tally::default());
        let started = Instant::now();
        let mut set: JoinSet<(String, String, usize, ScaleResult<u64>)> = JoinSet::new();
        // Groups in flight by source and by target.
        let mut busy = InFlight::default();
        let mut first_error: Option<ScaleError> = None;
        let mut done = 0usize;
        let sources: Vec<String> = queues.keys().cloned().collect();
        let mut next_source = 0usize;
        loop {
            // Start groups while there is room, round-robin over sources.
            while first_error.is_none()
                && report.outcome != Outcome::Cancelled
                && set.len() < cfg.parallel_slots
            {
                let pick = (0..sources.len())
                    .map(|i| &sources[(next_source + i) % sources.len()])
                    .find_map(|s| {
                        let q = queues.get(s)?;
                        let at = q.iter().position(|g| {
                            busy.may_start(&g.from.addr, &g.to.addr, cfg.parallel_per_source)
                        })?;
                        Some((s.clone(), at))
                    });
                let Some((src, at)) = pick else { break };
                next_source =
                    (sources.iter().position(|s| *s == src).unwrap_or(0) + 1) % sources.len();
                if self.inner.cancel.is_cancelled() {
                    report.outcome = Outcome::Cancelled;
                    break;
                }
                let Some(group) = queues.get_mut(&src).and_then(|q| q.remove(at)) else {
                    break;
                };
                let mut refused = None;
                for &slot in &group.slots {
                    if let Err(e) = self
                        .check_hook(slot, &group.from.addr, &group.to.addr, false)
                        .await
                    {
                        refused = Some(e);
                        break;
                    }
                }
                if let Some(e) = refused {
                    first_error = Some(e);
                    queues.entry(src).or_default().push_front(group);
                    break;
                }
                busy.start(&group.from.addr, &group.to.addr);
                let (me, tally) = (self.clone(), tally.clone());
                set.spawn(async move {
                    let n = group.slots.len();
                    let res = me.move_group(&group, &tally).await.map(|d| d.keys);
                    let pause = me.inner.config.pause_between_slots;
                    if res.is_ok() && !pause.is_zero() {
                        tokio::time::sleep(pause.saturating_mul(n as u32)).await;
                    }
                    (group.from.addr, group.to.addr, n, res)
                });
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            let (src, dst, n, res) = joined.map_err(|e| {
                ScaleError::ClusterState(format!("a slot task ended abnormally: {e}"))
            })?;
            busy.finish(&src, &dst);
            match res {
                Ok(_) => {
                    done += n;
                    report.slots_moved += n;
                    let p = Progress::compute(
                        done,
                        total,
                        tally.keys.load(Ordering::Relaxed),
                        tally.bytes.load(Ordering::Relaxed),
                        plan.expected_keys,
                        plan.expected_bytes,
                        started.elapsed(),
                    );
                    tracing::debug!(target: "sysmanage_cache::redis::scale", done, total, eta = ?p.eta, "progress");
                    self.emit(ScaleEvent::Progress(p));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        report.keys_moved += tally.keys.load(Ordering::Relaxed);
        report.bytes_moved += tally.bytes.load(Ordering::Relaxed);
        report.slots_left = total - done;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Keys of `slot` on the node at `addr`.
    pub(super) async fn count_keys(&self, addr: &str, slot: u16) -> ScaleResult<u64> {
        let v = self
            .inner
            .admin
            .run(
                addr,
                super::admin::cluster("COUNTKEYSINSLOT", [i64::from(slot).into()]),
            )
            .await
            .map_err(|e| super::admin::down(addr, Some(slot), e))?;
        Ok(super::admin::int(&v).unwrap_or(0).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_node_is_a_source_and_a_target_at_once() {
        let mut f = InFlight::default();
        assert!(f.may_start("a", "b", 1));
        f.start("a", "b");
        assert!(!f.may_start("a", "c", 1), "one group per source");
        assert!(f.may_start("a", "c", 2));
        assert!(
            !f.may_start("b", "a", 4),
            "b is a target, a a source: they would wait on each other"
        );
        assert!(!f.may_start("b", "c", 4), "b is a target");
        assert!(!f.may_start("c", "a", 4), "a is a source");
        assert!(
            f.may_start("c", "b", 4),
            "two sources into one target is fine"
        );
        f.start("c", "b");
        f.finish("a", "b");
        assert!(!f.may_start("b", "a", 4), "b still receives from c");
        f.finish("c", "b");
        assert!(f.may_start("b", "a", 1));
        f.finish("x", "y");
        assert!(
            f.may_start("b", "a", 1),
            "finishing what never started changes nothing"
        );
    }
}
