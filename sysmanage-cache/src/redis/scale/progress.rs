//! Progress of a run: typed events, and the pure rate and ETA arithmetic.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The executor's phases, in the order a run goes through them. A phase
/// with nothing to do is passed through at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// Reading every node's `CLUSTER NODES` and checking the target.
    Discover,
    /// `CLUSTER MEET` of new nodes, then waiting until every node knows them.
    Join,
    /// `CLUSTER REPLICATE` of new replicas, then waiting for gossip.
    AttachReplicas,
    /// Closing slots an interrupted run left half-migrated.
    CloseOpenSlots,
    /// Measuring keys and bytes per slot and computing the moves.
    Plan,
    /// Moving slots.
    Migrate,
    /// Waiting until every node agrees on every slot's owner.
    Converge,
    /// `CLUSTER FORGET` of removed nodes on every other node, then
    /// `CLUSTER RESET HARD` of the removed nodes.
    Forget,
}

/// Rates and the estimated time left, after a slot finished.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Progress {
    /// Slots moved so far in this run.
    pub slots_done: usize,
    /// Slots this run moves.
    pub slots_total: usize,
    /// Keys moved so far.
    pub keys_moved: u64,
    /// Bytes moved so far (`MEMORY USAGE` of the moved keys).
    pub bytes_moved: u64,
    /// Keys the plan expected to move.
    pub expected_keys: u64,
    /// Bytes the plan expected to move.
    pub expected_bytes: u64,
    /// Time spent moving slots.
    pub elapsed: Duration,
    /// Slots per second.
    pub slots_per_sec: f64,
    /// Keys per second.
    pub keys_per_sec: f64,
    /// Bytes per second.
    pub bytes_per_sec: f64,
    /// Estimated time left; `None` before anything is done.
    pub eta: Option<Duration>,
}

impl Progress {
    /// Progress after `slots_done` of `slots_total` slots carried `keys`
    /// and `bytes` in `elapsed`. The fraction done weighs slots and bytes
    /// equally when the plan expected bytes (a slot costs round trips, a
    /// byte costs transfer time), slots alone otherwise, and is 1 once
    /// every slot moved (expected bytes are an estimate); the ETA is the
    /// time so far scaled by the fraction left.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sysmanage_cache::redis::scale::Progress;
    /// let p = Progress::compute(50, 100, 500, 5_000, 1_000, 10_000, Duration::from_secs(10));
    /// assert_eq!(p.eta, Some(Duration::from_secs(10)));
    /// assert_eq!(p.keys_per_sec, 50.0);
    /// ```
    pub fn compute(
        slots_done: usize,
        slots_total: usize,
        keys: u64,
        bytes: u64,
        expected_keys: u64,
        expected_bytes: u64,
        elapsed: Duration,
    ) -> Self {
        let secs = elapsed.as_secs_f64();
        let rate = |x: f64| if secs > 0.0 { x / secs } else { 0.0 };
        let slot_frac = if slots_total == 0 {
            1.0
        } else {
            (slots_done as f64 / slots_total as f64).min(1.0)
        };
        let done = if slots_done >= slots_total {
            // Every slot moved: nothing is left, whatever the estimate of
            // bytes said.
            1.0
        } else if expected_bytes > 0 {
            0.5 * slot_frac + 0.5 * (bytes as f64 / expected_bytes as f64).min(1.0)
        } else {
            slot_frac
        };
        let eta = if done >= 1.0 {
            Some(Duration::ZERO)
        } else if done > 0.0 {
            Duration::try_from_secs_f64(secs * (1.0 - done) / done).ok()
        } else {
            None
        };
        Self {
            slots_done,
            slots_total,
            keys_moved: keys,
            bytes_moved: bytes,
            expected_keys,
            expected_bytes,
            elapsed,
            slots_per_sec: rate(slots_done as f64),
            keys_per_sec: rate(keys as f64),
            bytes_per_sec: rate(bytes as f64),
            eta,
        }
    }
}

/// How an open slot was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Closed {
    /// Its remaining keys were moved and the slot assigned to the target.
    Finished,
    /// It already belonged to its target; every node was told.
    Assigned,
    /// A marker through which nothing had moved was cleared.
    Cleared,
}

/// What the executor reports while it runs
/// ([`Scaler::subscribe`](super::Scaler::subscribe)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
#[non_exhaustive]
pub enum ScaleEvent {
    /// A phase began.
    PhaseStarted {
        /// The phase.
        phase: Phase,
    },
    /// A node was introduced with `CLUSTER MEET`.
    NodeMet {
        /// The node, `host:port`.
        node: String,
    },
    /// Every member knows the joined nodes.
    Joined {
        /// The nodes, `host:port`.
        nodes: Vec<String>,
    },
    /// A replica was attached.
    ReplicaAttached {
        /// The replica, `host:port`.
        replica: String,
        /// Its primary, `host:port`.
        primary: String,
    },
    /// A slot an earlier run left open was closed.
    OpenSlotClosed {
        /// The slot.
        slot: u16,
        /// How.
        how: Closed,
        /// Keys moved to close it.
        keys: u64,
    },
    /// The moves were computed.
    Planned {
        /// Slots to move.
        slots: usize,
        /// Keys they hold (measured).
        expected_keys: u64,
        /// Bytes they hold (measured).
        expected_bytes: u64,
    },
    /// A slot was opened (`IMPORTING` on the target, `MIGRATING` on the
    /// source).
    SlotStarted {
        /// The slot.
        slot: u16,
        /// Its source, `host:port`.
        from: String,
        /// Its target, `host:port`.
        to: String,
        /// Keys in it when it was opened.
        keys: u64,
    },
    /// `MIGRATE`s of one slot were acknowledged (after each round trip).
    KeysMoved {
        /// The slot.
        slot: u16,
        /// Keys in this round.
        keys: u64,
        /// Bytes in this round.
        bytes: u64,
    },
    /// A slot now belongs to its target on every primary.
    SlotFinished {
        /// The slot.
        slot: u16,
        /// Its former owner, `host:port`.
        from: String,
        /// Its owner, `host:port`.
        to: String,
        /// Keys moved.
        keys: u64,
        /// Bytes moved.
        bytes: u64,
        /// Time from opening to the last `SETSLOT NODE`.
        elapsed: Duration,
    },
    /// Rates and ETA after each slot.
    Progress(Progress),
    /// A removed node was forgotten by every other node.
    NodeForgotten {
        /// The node, `host:port`.
        node: String,
    },
    /// A removed node was reset (`CLUSTER RESET HARD`).
    NodeReset {
        /// The node, `host:port`.
        node: String,
    },
    /// The run stopped at a slot boundary after [`Canceller::cancel`](super::Canceller::cancel).
    Cancelled {
        /// Slots moved before the stop.
        slots_done: usize,
        /// Slots the plan still had.
        slots_left: usize,
    },
    /// The run reached its target.
    Done {
        /// Slots moved.
        slots: usize,
        /// Keys moved.
        keys: u64,
        /// Bytes moved.
        bytes: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_weighs_slots_and_bytes_and_is_none_before_any_progress() {
        let p = Progress::compute(0, 10, 0, 0, 100, 1000, Duration::from_secs(1));
        assert_eq!(p.eta, None);
        // Half the slots but all the bytes: 75 % done.
        let p = Progress::compute(5, 10, 100, 1000, 100, 1000, Duration::from_secs(3));
        assert_eq!(p.eta, Some(Duration::from_secs(1)));
        // Nothing measured: slots alone.
        let p = Progress::compute(1, 4, 0, 0, 0, 0, Duration::from_secs(2));
        assert_eq!(p.eta, Some(Duration::from_secs(6)));
        assert_eq!(p.slots_per_sec, 0.5);
        // Done, or more bytes than expected: zero left, never negative.
        let p = Progress::compute(4, 4, 9, 9_000, 1, 10, Duration::from_secs(2));
        assert_eq!(p.eta, Some(Duration::ZERO));
        // 3/4 of the slots and all the bytes: 7/8 done, 2/7 s left.
        let p = Progress::compute(3, 4, 9, 9_000, 1, 10, Duration::from_secs(2));
        assert!((p.eta.unwrap().as_secs_f64() - 2.0 / 7.0).abs() < 1e-6);
        // Every slot moved, fewer bytes than estimated: nothing left.
        let p = Progress::compute(4, 4, 9, 10, 9, 1_000_000, Duration::from_secs(2));
        assert_eq!(p.eta, Some(Duration::ZERO));
        // Zero elapsed: rates are zero, not NaN or infinite.
        let p = Progress::compute(1, 4, 5, 5, 10, 10, Duration::ZERO);
        assert_eq!((p.keys_per_sec, p.eta), (0.0, Some(Duration::ZERO)));
        // Nothing to move at all.
        assert_eq!(
            Progress::compute(0, 0, 0, 0, 0, 0, Duration::ZERO).eta,
            Some(Duration::ZERO)
        );
    }
}
