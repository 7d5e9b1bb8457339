//! Fencing tokens and the guard that actuators put in front of their work.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The epoch of one leadership term. A backend grants every new term a
/// larger token than every term it granted before, so an actuator that has
/// seen token `n` knows that a caller with a smaller token speaks for a
/// term that is over.
///
/// # Examples
/// ```
/// use sysmanage_core::lease::FencingToken;
/// assert!(FencingToken::new(7) > FencingToken::new(6));
/// assert_eq!(FencingToken::new(7).to_string(), "7");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FencingToken(u64);

impl FencingToken {
    /// The token with epoch `epoch`.
    pub const fn new(epoch: u64) -> Self {
        Self(epoch)
    }
    /// The epoch.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Whether a call carrying `token` may act when `newest` is the newest token
/// the actuator has seen: tokens equal to the newest (the current term,
/// acting again) and newer ones (a new term) may, older ones may not.
///
/// # Examples
/// ```
/// use sysmanage_core::lease::{FencingToken, admits};
/// let t = FencingToken::new;
/// assert!(admits(None, t(1)));
/// assert!(admits(Some(t(4)), t(4)));
/// assert!(admits(Some(t(4)), t(5)));
/// assert!(!admits(Some(t(4)), t(3)));
/// ```
pub fn admits(newest: Option<FencingToken>, token: FencingToken) -> bool {
    newest.is_none_or(|n| token >= n)
}

/// The newest fencing token an actuator has seen, and the check that turns
/// away calls from terms that are over.
///
/// Put one guard in front of each thing that acts (a scale target, an
/// executor's step hook) and share it by `Arc` among everything that acts
/// on that thing. [`check`](Self::check) admits a token not older than the
/// newest seen and records it, atomically; [`enter`](Self::enter) does the
/// same and also holds every other `enter` back until the returned permit
/// is dropped, so an action that takes time (an HTTP call, a database
/// transaction) cannot interleave with the next term's action.
///
/// The guard protects what runs behind it. A guard inside one process
/// fences the callers in that process; callers in several processes need
/// the check where the action lands (a row, a key, an API object).
///
/// # Examples
/// ```
/// use sysmanage_core::lease::{FenceGuard, FencingToken};
/// let guard = FenceGuard::new();
/// guard.check(FencingToken::new(3))?;            // term 3 acts
/// guard.check(FencingToken::new(4))?;            // term 4 takes over
/// let stale = guard.check(FencingToken::new(3)); // term 3, paused, wakes up
/// assert!(stale.is_err());
/// assert_eq!(guard.newest(), Some(FencingToken::new(4)));
/// # Ok::<(), sysmanage_core::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct FenceGuard {
    newest: Mutex<Option<FencingToken>>,
    rejected: AtomicU64,
    serial: tokio::sync::Mutex<()>,
}

/// Held while a fenced action runs; see [`FenceGuard::enter`].
#[derive(Debug)]
#[must_use = "the fence is held only while the permit lives"]
pub struct FencePermit<'a> {
    token: FencingToken,
    _serial: tokio::sync::MutexGuard<'a, ()>,
}

impl FencePermit<'_> {
    /// The token that was admitted.
    pub fn token(&self) -> FencingToken {
        self.token
    }
}

impl FenceGuard {
    /// A guard that has seen no token yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A guard that has already seen `newest` (e.g. loaded from where the
    /// actuator persists it).
    pub fn starting_at(newest: FencingToken) -> Self {
        let g = Self::default();
        *g.newest.lock().unwrap_or_else(PoisonError::into_inner) = Some(newest);
        g
    }

    /// The newest token admitted so far.
    pub fn newest(&self) -> Option<FencingToken> {
        *self.newest.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many calls were turned away.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Admits `token` if it is not older than the newest seen, and records
    /// it as the newest.
    ///
    /// # Errors
    /// [`Error::StaleToken`] when a newer token has been seen: the caller
    /// speaks for a term that is over and must not act.
    pub fn check(&self, token: FencingToken) -> Result<()> {
        let mut newest = self.newest.lock().unwrap_or_else(PoisonError::into_inner);
        match *newest {
            Some(n) if !admits(Some(n), token) => {
                drop(newest);
                self.rejected.fetch_add(1, Ordering::Relaxed);
                Err(Error::StaleToken { token, newest: n })
            }
            _ => {
                *newest = Some(token);
                Ok(())
            }
        }
    }

    /// Waits until no other permit is held, then [`check`](Self::check)s
    /// `token`. The action runs while the permit lives; a newer term's
    /// `enter` waits for it, so the actuator's log never shows an older
    /// term's action after a newer one's.
    ///
    /// # Errors
    /// As [`check`](Self::check).
    pub async fn enter(&self, token: FencingToken) -> Result<FencePermit<'_>> {
        let serial = self.serial.lock().await;
        self.check(token)?;
        Ok(FencePermit {
            token,
            _serial: serial,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_admits_equal_and_newer_and_rejects_older() {
        let g = FenceGuard::new();
        assert_eq!(g.newest(), None);
        g.check(FencingToken::new(0)).unwrap();
        assert_eq!(g.newest(), Some(FencingToken::new(0)));
        g.check(FencingToken::new(5)).unwrap();
        g.check(FencingToken::new(5)).unwrap();
        let e = g.check(FencingToken::new(4)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "fencing token 4 is older than the newest seen (5)"
        );
        assert_eq!(g.rejected(), 1);
        assert_eq!(g.newest(), Some(FencingToken::new(5)));
    }

    #[test]
    fn top_epoch_orders_correctly() {
        let g = FenceGuard::starting_at(FencingToken::new(u64::MAX - 1));
        g.check(FencingToken::new(u64::MAX)).unwrap();
        assert!(g.check(FencingToken::new(u64::MAX - 1)).is_err());
        g.check(FencingToken::new(u64::MAX)).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn enter_serialises_actions() {
        use std::sync::Arc;
        use std::time::Duration;
        let g = Arc::new(FenceGuard::new());
        let p = g.enter(FencingToken::new(1)).await.unwrap();
        let g2 = g.clone();
        let newer = tokio::spawn(async move {
            let p = g2.enter(FencingToken::new(2)).await.unwrap();
            p.token()
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        // the newer term waits for the older action to finish
        assert!(!newer.is_finished());
        assert_eq!(g.newest(), Some(FencingToken::new(1)));
        drop(p);
        assert_eq!(newer.await.unwrap(), FencingToken::new(2));
        assert!(g.enter(FencingToken::new(1)).await.is_err());
    }
}
