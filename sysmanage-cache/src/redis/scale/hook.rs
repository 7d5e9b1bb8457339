//! The hook run at every slot boundary, and cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cache::BoxFuture;

/// A type-erased error returned by a [`BeforeSlot`] hook.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A slot about to be touched.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotStep {
    /// The slot.
    pub slot: u16,
    /// Its source, `host:port`.
    pub from: String,
    /// Its target, `host:port`.
    pub to: String,
    /// Whether the slot is being closed after an earlier run (rather than
    /// opened by this one).
    pub closing: bool,
}

/// A check run before each slot is opened (and before a half-migrated slot
/// is closed). An error stops the run at that boundary: the slot is not
/// touched and the cluster stays consistent; the run returns
/// [`ScaleError::Refused`](super::ScaleError::Refused).
///
/// This is where a leader-election lease or fencing token is checked, so
/// that an executor that lost its lease stops before its next slot. Plain
/// closures implement it:
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use sysmanage_cache::redis::scale::{BeforeSlot, SlotStep};
/// let current = Arc::new(AtomicU64::new(7));
/// let mine = 7;
/// let fence = move |_: &SlotStep| {
///     if current.load(Ordering::SeqCst) == mine {
///         Ok(())
///     } else {
///         Err("fencing token superseded".into())
///     }
/// };
/// # fn takes(_: impl BeforeSlot) {}
/// takes(fence);
/// ```
pub trait BeforeSlot: Send + Sync {
    /// Called before `step`; `Err` stops the run there.
    fn before_slot<'a>(&'a self, step: &'a SlotStep) -> BoxFuture<'a, Result<(), BoxError>>;
}

impl<F> BeforeSlot for F
where
    F: Fn(&SlotStep) -> Result<(), BoxError> + Send + Sync,
{
    fn before_slot<'a>(&'a self, step: &'a SlotStep) -> BoxFuture<'a, Result<(), BoxError>> {
        let r = self(step);
        Box::pin(async move { r })
    }
}

/// Stops a run at the next slot boundary. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Canceller {
    flag: Arc<AtomicBool>,
}

impl Canceller {
    /// Asks the run to stop: slots in flight finish, no new slot starts,
    /// and [`Scaler::execute`](super::Scaler::execute) returns a report
    /// with [`Outcome::Cancelled`](super::Outcome::Cancelled).
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Clears the request (for the next run).
    pub(super) fn reset(&self) {
        self.flag.store(false, Ordering::SeqCst);
    }
}
