//! The phases of a move, the state stored after each, and what a resume does
//! from each stored state: pure decisions the executor follows.

use serde::Serialize;

use crate::{Error, Result};

/// What the executor is doing; progress events and the `before_phase`
/// guard name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// Claiming the shards and preparing the target's tables.
    Prepare,
    /// The initial copy (binary `COPY`, in parallel per partition).
    Copy,
    /// Logical replication until the lag is under the threshold.
    CatchUp,
    /// Write fence, final catch-up and the atomic routing switch.
    Switch,
    /// Counts and checksums per table, target against source.
    Verify,
    /// Dropping replication objects and the source's rows.
    Cleanup,
    /// Undoing a move before its switch.
    Cancel,
    /// Finished.
    Done,
}

impl Phase {
    /// A stable lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Prepare => "prepare",
            Phase::Copy => "copy",
            Phase::CatchUp => "catch_up",
            Phase::Switch => "switch",
            Phase::Verify => "verify",
            Phase::Cleanup => "cleanup",
            Phase::Cancel => "cancel",
            Phase::Done => "done",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A move's durable state, stored in the metadata database after each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MoveState {
    /// Shards claimed; nothing on the target yet.
    Planned,
    /// Target tables exist and are empty; helper objects installed.
    Prepared,
    /// Publication and slot made, the copy under way.
    Copying,
    /// Copy complete; the subscription applies changes.
    CatchingUp,
    /// The shards' writes are fenced (in the map, then by the source's
    /// guard); the final catch-up runs.
    Fenced,
    /// The map points at the target (the switch committed).
    Switched,
    /// Target rows matched the source rows at the switch.
    Verified,
    /// Verification found differences; source rows kept.
    VerifyFailed,
    /// Cleaned up; the move is complete.
    Done,
    /// Undone before the switch.
    Cancelled,
}

impl MoveState {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            MoveState::Planned => "planned",
            MoveState::Prepared => "prepared",
            MoveState::Copying => "copying",
            MoveState::CatchingUp => "catching_up",
            MoveState::Fenced => "fenced",
            MoveState::Switched => "switched",
            MoveState::Verified => "verified",
            MoveState::VerifyFailed => "verify_failed",
            MoveState::Done => "done",
            MoveState::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (field `phase`) for an unknown name.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "planned" => MoveState::Planned,
            "prepared" => MoveState::Prepared,
            "copying" => MoveState::Copying,
            "catching_up" => MoveState::CatchingUp,
            "fenced" => MoveState::Fenced,
            "switched" => MoveState::Switched,
            "verified" => MoveState::Verified,
            "verify_failed" => MoveState::VerifyFailed,
            "done" => MoveState::Done,
            "cancelled" => MoveState::Cancelled,
            other => {
                return Err(Error::InvalidConfig {
                    field: "phase",
                    reason: format!("unknown stored move state {other:?}"),
                });
            }
        })
    }

    /// The phase a run (first or resumed) starts with from this state, or
    /// `None` when the move is finished (done, cancelled) or stopped for an
    /// operator (verification failed).
    ///
    /// A copy cannot continue after a crash (its snapshot died with the
    /// executor's session), so `Copying` restarts the copy; every other
    /// phase resumes where it stopped, each step being idempotent.
    pub const fn resume_phase(self) -> Option<Phase> {
        match self {
            MoveState::Planned => Some(Phase::Prepare),
            MoveState::Prepared | MoveState::Copying => Some(Phase::Copy),
            MoveState::CatchingUp => Some(Phase::CatchUp),
            MoveState::Fenced => Some(Phase::Switch),
            MoveState::Switched => Some(Phase::Verify),
            MoveState::Verified => Some(Phase::Cleanup),
            MoveState::VerifyFailed | MoveState::Done | MoveState::Cancelled => None,
        }
    }

    /// Whether a cancel may still undo the move: only before the switch.
    pub const fn cancellable(self) -> bool {
        matches!(
            self,
            MoveState::Planned
                | MoveState::Prepared
                | MoveState::Copying
                | MoveState::CatchingUp
                | MoveState::Fenced
        )
    }

    /// Whether the routing map may point at the target.
    pub const fn past_switch(self) -> bool {
        matches!(
            self,
            MoveState::Switched | MoveState::Verified | MoveState::VerifyFailed | MoveState::Done
        )
    }
}

impl std::fmt::Display for MoveState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [MoveState; 10] = [
        MoveState::Planned,
        MoveState::Prepared,
        MoveState::Copying,
        MoveState::CatchingUp,
        MoveState::Fenced,
        MoveState::Switched,
        MoveState::Verified,
        MoveState::VerifyFailed,
        MoveState::Done,
        MoveState::Cancelled,
    ];

    #[test]
    fn stored_names_round_trip() {
        for s in ALL {
            assert_eq!(MoveState::parse(s.as_str()).unwrap(), s);
        }
        assert!(
            MoveState::parse("flying")
                .unwrap_err()
                .to_string()
                .contains("unknown stored move state \"flying\"")
        );
    }

    #[test]
    fn cancel_is_possible_exactly_before_the_switch() {
        for s in ALL {
            assert_eq!(
                s.cancellable(),
                !s.past_switch() && !matches!(s, MoveState::Done | MoveState::Cancelled),
                "{s}"
            );
        }
    }

    #[test]
    fn a_crash_mid_copy_restarts_the_copy_and_later_phases_resume() {
        assert_eq!(MoveState::Copying.resume_phase(), Some(Phase::Copy));
        assert_eq!(MoveState::CatchingUp.resume_phase(), Some(Phase::CatchUp));
        assert_eq!(MoveState::Fenced.resume_phase(), Some(Phase::Switch));
        assert_eq!(MoveState::Switched.resume_phase(), Some(Phase::Verify));
        assert_eq!(MoveState::Verified.resume_phase(), Some(Phase::Cleanup));
        assert_eq!(MoveState::Done.resume_phase(), None);
        assert_eq!(MoveState::VerifyFailed.resume_phase(), None);
    }
}
