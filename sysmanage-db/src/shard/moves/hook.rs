//! Hooks around a move: the `before_phase` guard and cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sysmanage_core::BoxError;
use tokio::sync::Notify;

use super::phase::Phase;

/// Checked before every phase a move enters (including phases a resume
/// re-enters): an error stops the move with
/// [`Error::MoveGuardRejected`](crate::Error::MoveGuardRejected) and keeps
/// its state for a later resume.
///
/// This is where an executor elected by leader election checks that its
/// fencing token is still current, so a deposed leader cannot switch a
/// shard behind its successor's back. Closures
/// `Fn(&str, Phase) -> Result<(), BoxError>` (move id, phase) implement it.
#[async_trait::async_trait]
pub trait BeforePhase: Send + Sync + std::fmt::Debug {
    /// Allows or refuses `phase` of move `move_id`.
    async fn before_phase(&self, move_id: &str, phase: Phase) -> Result<(), BoxError>;
}

/// A [`BeforePhase`] from a synchronous closure.
pub struct PhaseGuardFn<F>(pub F);

impl<F> std::fmt::Debug for PhaseGuardFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PhaseGuardFn")
    }
}

#[async_trait::async_trait]
impl<F> BeforePhase for PhaseGuardFn<F>
where
    F: Fn(&str, Phase) -> Result<(), BoxError> + Send + Sync,
{
    async fn before_phase(&self, move_id: &str, phase: Phase) -> Result<(), BoxError> {
        (self.0)(move_id, phase)
    }
}

/// Cancels a running move from another task: the executor stops at its
/// next check and undoes the move when it is still before its switch.
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    inner: Arc<(AtomicBool, Notify)>,
}

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation.
    pub fn cancel(&self) {
        self.inner.0.store(true, Ordering::Release);
        self.inner.1.notify_waiters();
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.inner.0.load(Ordering::Acquire)
    }

    /// Resolves once cancellation is requested.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.1.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_token_wakes_waiters() {
        let t = CancelToken::new();
        let w = tokio::spawn({
            let t = t.clone();
            async move { t.cancelled().await }
        });
        tokio::task::yield_now().await;
        assert!(!t.is_cancelled());
        t.cancel();
        w.await.unwrap();
        assert!(t.is_cancelled());
    }

    #[tokio::test]
    async fn closures_guard_phases() {
        let g = PhaseGuardFn(|_id: &str, p: Phase| {
            if p == Phase::Switch {
                Err("fencing token is stale".into())
            } else {
                Ok(())
            }
        });
        assert!(g.before_phase("m", Phase::Copy).await.is_ok());
        let err = g.before_phase("m", Phase::Switch).await.unwrap_err();
        assert_eq!(err.to_string(), "fencing token is stale");
    }
}
