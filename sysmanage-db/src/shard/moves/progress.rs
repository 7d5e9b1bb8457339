//! Progress events: phase, rows copied, lag and an ETA.

use std::time::Duration;

use serde::Serialize;

use super::phase::Phase;

/// One progress report of a move, passed to the callback set with
/// [`ShardMoveBuilder::on_progress`](super::ShardMoveBuilder::on_progress).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct MoveProgress {
    /// The move's id.
    pub move_id: String,
    /// What the executor is doing.
    pub phase: Phase,
    /// Rows copied so far by the initial copy (of this run's copy: a
    /// restarted copy starts again from zero).
    pub rows_copied: u64,
    /// Rows the copy expects (the source's statistics, exact once copied).
    pub rows_estimated: u64,
    /// Bytes of source WAL the target has not confirmed, while catching up.
    pub lag_bytes: Option<u64>,
    /// Estimated time until the phase ends, when the rate allows one.
    pub eta: Option<Duration>,
    /// Time since this run started.
    pub elapsed: Duration,
}

/// Time left for `remaining` units at the rate `done / elapsed`; `None`
/// until something was done (or when it would not fit a `Duration`).
pub fn eta(done: u64, remaining: u64, elapsed: Duration) -> Option<Duration> {
    if done == 0 || elapsed.is_zero() {
        return None;
    }
    let secs = elapsed.as_secs_f64() * remaining as f64 / done as f64;
    Duration::try_from_secs_f64(secs).ok()
}

/// Time until a lag of `lag` bytes drains, from two samples `dt` apart;
/// `None` while the lag does not shrink.
pub fn lag_eta(previous: u64, lag: u64, dt: Duration) -> Option<Duration> {
    if lag == 0 {
        return Some(Duration::ZERO);
    }
    let drained = previous.checked_sub(lag).filter(|&d| d > 0)?;
    eta(drained, lag, dt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_follows_the_rate() {
        assert_eq!(eta(0, 10, Duration::from_secs(1)), None);
        assert_eq!(eta(10, 0, Duration::from_secs(1)), Some(Duration::ZERO));
        assert_eq!(
            eta(100, 300, Duration::from_secs(2)),
            Some(Duration::from_secs(6))
        );
        // Absurd ratios are no ETA, not a panic.
        assert_eq!(eta(1, u64::MAX, Duration::from_secs(u64::MAX / 2)), None);
    }

    #[test]
    fn lag_eta_needs_a_shrinking_lag() {
        assert_eq!(lag_eta(100, 120, Duration::from_secs(1)), None);
        assert_eq!(lag_eta(100, 100, Duration::from_secs(1)), None);
        assert_eq!(
            lag_eta(100, 0, Duration::from_secs(1)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            lag_eta(300, 100, Duration::from_secs(1)),
            Some(Duration::from_millis(500))
        );
    }
}
