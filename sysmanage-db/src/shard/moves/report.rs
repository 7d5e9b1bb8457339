//! What a run reports: per-table verification and the run's figures.

use std::time::Duration;

use serde::Serialize;

use super::phase::MoveState;
use crate::shard::ShardId;

/// Per table and shard: the source's rows at the switch against the
/// target's rows at the switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TableCheck {
    /// The partition (same name on both sides).
    pub table: String,
    /// Its logical shard.
    pub shard: ShardId,
    /// Rows on the source.
    pub source_rows: u64,
    /// Rows on the target at the switch.
    pub target_rows: u64,
    /// Checksum of the source's rows (sum of 64-bit row hashes, decimal).
    pub source_checksum: String,
    /// Checksum of the target's rows at the switch.
    pub target_checksum: String,
}

impl TableCheck {
    /// Whether counts and checksums agree.
    pub fn matches(&self) -> bool {
        self.source_rows == self.target_rows && self.source_checksum == self.target_checksum
    }
}

/// What a finished run did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct MoveReport {
    /// The move's id.
    pub move_id: String,
    /// The state the run ended in ([`MoveState::Done`] on success).
    pub state: MoveState,
    /// The state the run found (not `Planned` when it resumed a move).
    pub resumed_from: Option<MoveState>,
    /// Rows the initial copy moved (the stored figure when this run did
    /// not copy).
    pub rows_copied: u64,
    /// Duration of this run's copy phase (zero when it did not copy).
    pub copy_time: Duration,
    /// How long the cut held writers to the moved partitions back.
    pub cut_pause: Duration,
    /// From the fence in the map to the switch committed, in the fence
    /// attempt that switched: the longest a router held a write.
    pub fence_pause: Duration,
    /// Fence attempts (more than one when the final catch-up overran
    /// `max_fence`).
    pub fence_attempts: u32,
    /// The routing epoch of the switch.
    pub switch_epoch: Option<u64>,
    /// Verification, per table and shard.
    pub checks: Vec<TableCheck>,
    /// Duration of the run.
    pub elapsed: Duration,
}

impl MoveReport {
    /// The checks that did not match.
    pub fn mismatches(&self) -> impl Iterator<Item = &TableCheck> {
        self.checks.iter().filter(|c| !c.matches())
    }
}
