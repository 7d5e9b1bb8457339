//! One node of the router: identity, the atomics the hot path reads, and
//! the mutex-guarded rest.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sysmanage_core::{ConnectionUrl, Timestamp};

use super::balance::{Candidate, PeakEwma};
use super::config::{NodeSpec, ReplicaConfig, Role, validate_weight};
use super::failure::FailureClass;
use super::health::NodeHealth;
use super::lsn::Lsn;
use super::timeline::{HistoryRelation, ReplicaPosition, TimelineId};
use crate::error::Result;

pub(super) const ROLE_PRIMARY: u8 = 1;
pub(super) const ROLE_REPLICA: u8 = 2;

pub(super) fn role_from(v: u8) -> Role {
    match v {
        ROLE_PRIMARY => Role::Primary,
        ROLE_REPLICA => Role::Replica,
        _ => Role::Unknown,
    }
}

/// What the last probe of a node found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Observed {
    Unknown,
    Failed,
    Answered { in_recovery: bool },
}

#[derive(Debug)]
pub(super) struct NodeInner {
    pub(super) observed: Observed,
    /// Consecutive failed probes.
    pub(super) failed_probes: u32,
    /// Lost the primary role and not seen in recovery since: it may not
    /// take the writes back.
    pub(super) deposed: bool,
    pub(super) health: NodeHealth,
    pub(super) ewma: PeakEwma,
    pub(super) lag_time: Option<Duration>,
    pub(super) last_probe: Option<Timestamp>,
}

/// One node: immutable identity, atomics read by the hot path, and a mutex
/// for the rest.
pub(super) struct Node<P> {
    pub(super) name: String,
    pub(super) url: Option<ConnectionUrl>,
    pub(super) pool: P,
    pub(super) tier: u8,
    pub(super) weight: AtomicU64,
    pub(super) banned: AtomicBool,
    pub(super) lag_banned: AtomicBool,
    pub(super) role: AtomicU8,
    pub(super) replay_lsn: AtomicU64,
    pub(super) has_replay: AtomicBool,
    /// Bumped (under the node's mutex) whenever what is known of its replay
    /// position becomes void: a ban or a role change. A replay position
    /// read before a bump is never stored after it.
    pub(super) generation: AtomicU64,
    /// [`LAG_UNKNOWN`] when unknown.
    pub(super) lag_bytes: AtomicU64,
    /// Nanoseconds since the router's epoch + 1 of the staleness bound; 0 = unknown.
    pub(super) fresh_as_of: AtomicU64,
    pub(super) in_flight: AtomicU32,
    /// Exported metrics (handles registered when the node was added).
    pub(super) metrics: crate::telemetry::NodeMetrics,
    pub(super) latency: AtomicU64,
    pub(super) probing: AtomicBool,
    /// The node's timeline; 0 = unknown.
    pub(super) timeline: AtomicU32,
    /// Whether `timeline` is exact (a standby's receive timeline, a
    /// primary's insert timeline) rather than a lower bound.
    pub(super) timeline_exact: AtomicBool,
    /// Whether a standby's WAL receiver streams: [`STREAMING_UNKNOWN`],
    /// [`STREAMING_YES`] or [`STREAMING_NO`].
    pub(super) streaming: AtomicU8,
    /// Its [`HistoryRelation`] to the primary, as [`relation_code`].
    pub(super) relation: AtomicU8,
    pub(super) inner: Mutex<NodeInner>,
}

pub(super) const STREAMING_UNKNOWN: u8 = 0;
pub(super) const STREAMING_YES: u8 = 1;
pub(super) const STREAMING_NO: u8 = 2;

pub(super) const fn relation_code(r: HistoryRelation) -> u8 {
    match r {
        HistoryRelation::Current => 0,
        HistoryRelation::Behind => 1,
        HistoryRelation::Diverged => 2,
        _ => 3,
    }
}

pub(super) const fn relation_of(code: u8) -> HistoryRelation {
    match code {
        0 => HistoryRelation::Current,
        1 => HistoryRelation::Behind,
        2 => HistoryRelation::Diverged,
        _ => HistoryRelation::Unknown,
    }
}

impl<P> fmt::Debug for Node<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl<P> Node<P> {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, NodeInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn weight(&self) -> f64 {
        f64::from_bits(self.weight.load(Ordering::Relaxed))
    }

    pub(super) fn candidate(&self) -> Candidate {
        Candidate {
            weight: self.weight(),
            latency_secs: f64::from_bits(self.latency.load(Ordering::Relaxed)),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }

    pub(super) fn sync_ban(&self, health: &NodeHealth) {
        self.banned.store(health.is_banned(), Ordering::Release);
    }

    /// Its relation to the primary's timeline history.
    pub(super) fn relation(&self) -> HistoryRelation {
        relation_of(self.relation.load(Ordering::Acquire))
    }

    /// Whether what it replayed is part of the primary's history.
    pub(super) fn on_history(&self) -> bool {
        self.relation().on_history()
    }

    /// What the router knows of its timeline and replay position.
    pub(super) fn position(&self) -> ReplicaPosition {
        ReplicaPosition {
            timeline: TimelineId::new(self.timeline.load(Ordering::Acquire)),
            exact: self.timeline_exact.load(Ordering::Acquire),
            replay: self
                .has_replay
                .load(Ordering::Acquire)
                .then(|| Lsn::new(self.replay_lsn.load(Ordering::Acquire))),
        }
    }

    /// Records the timeline a probe reported: an exact one replaces what was
    /// known; a lower bound replaces only a lower bound or an older exact
    /// timeline (the node moved on, e.g. it was rebuilt from a newer primary).
    pub(super) fn observe_timeline(
        &self,
        exact: Option<TimelineId>,
        lower_bound: Option<TimelineId>,
    ) {
        if let Some(t) = exact {
            self.timeline.store(t.get(), Ordering::Release);
            self.timeline_exact.store(true, Ordering::Release);
        } else if let Some(t) = lower_bound {
            let known = self.timeline.load(Ordering::Acquire);
            let known_exact = self.timeline_exact.load(Ordering::Acquire);
            if !known_exact || known < t.get() {
                self.timeline.store(t.get(), Ordering::Release);
                self.timeline_exact.store(false, Ordering::Release);
            }
        }
    }

    pub(super) fn lag_bytes(&self) -> Option<u64> {
        Some(self.lag_bytes.load(Ordering::Relaxed)).filter(|&b| b != LAG_UNKNOWN)
    }

    /// Forgets the replay position and lag (after a ban or a role change: a
    /// standby restarted after a crash may come back *behind* the position it
    /// had reached). Call with the node's mutex held.
    pub(super) fn forget_replay(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.has_replay.store(false, Ordering::Release);
        self.replay_lsn.store(0, Ordering::Release);
        self.lag_bytes.store(LAG_UNKNOWN, Ordering::Relaxed);
        self.fresh_as_of.store(0, Ordering::Release);
        // A node that went away may come back rebuilt on another timeline;
        // until a probe says exactly, what was known is only a lower bound.
        self.timeline_exact.store(false, Ordering::Release);
    }
}

/// `lag_bytes` of a node whose lag is unknown.
pub(super) const LAG_UNKNOWN: u64 = u64::MAX;

/// What a query failure does to the node it ran on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// Bans it at once (the server is unreachable or going away).
    Ban,
    /// Nothing (the client side was saturated); counted only.
    Transient,
    /// Counts toward `max_consecutive_errors`.
    Query,
}

pub(super) fn failure_of(class: FailureClass) -> Failure {
    match class {
        FailureClass::Connection | FailureClass::Rejected => Failure::Ban,
        FailureClass::Saturated => Failure::Transient,
        _ => Failure::Query,
    }
}

/// Clears a node's `probing` flag however its probe task ends (completion,
/// panic, or abort when the caller of `probe_all` is cancelled).
pub(super) struct Probing<P>(pub(super) Arc<Node<P>>);

impl<P> Drop for Probing<P> {
    fn drop(&mut self) {
        self.0.probing.store(false, Ordering::Release);
    }
}

pub(super) struct InFlight<'a>(&'a AtomicU32);

impl<'a> InFlight<'a> {
    pub(super) fn new(counter: &'a AtomicU32) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) fn new_node<P>(
    spec: NodeSpec<P>,
    role: u8,
    config: &ReplicaConfig,
    now: Instant,
) -> Result<Node<P>> {
    let weight = validate_weight(&spec.name, spec.weight)?;
    Ok(Node {
        metrics: crate::telemetry::NodeMetrics::new(&spec.name),
        name: spec.name,
        url: spec.url,
        pool: spec.pool,
        tier: spec.tier,
        weight: AtomicU64::new(weight.to_bits()),
        banned: AtomicBool::new(true),
        lag_banned: AtomicBool::new(false),
        role: AtomicU8::new(role),
        replay_lsn: AtomicU64::new(0),
        has_replay: AtomicBool::new(false),
        generation: AtomicU64::new(0),
        lag_bytes: AtomicU64::new(LAG_UNKNOWN),
        fresh_as_of: AtomicU64::new(0),
        in_flight: AtomicU32::new(0),
        latency: AtomicU64::new(config.initial_latency.as_secs_f64().to_bits()),
        probing: AtomicBool::new(false),
        timeline: AtomicU32::new(0),
        timeline_exact: AtomicBool::new(false),
        streaming: AtomicU8::new(STREAMING_UNKNOWN),
        relation: AtomicU8::new(relation_code(HistoryRelation::Current)),
        inner: Mutex::new(NodeInner {
            observed: Observed::Unknown,
            failed_probes: 0,
            deposed: false,
            health: NodeHealth::unprobed(now),
            ewma: PeakEwma::new(config.initial_latency, config.ewma_decay),
            lag_time: None,
            last_probe: None,
        }),
    })
}
