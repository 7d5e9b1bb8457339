//! Injectable clocks.
//!
//! Decisions in sysmanage take `now` as an argument; the async drivers around
//! them read it from a [`Clock`], which tests replace with a [`ManualClock`].

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::series::Timestamp;

/// A source of monotonic and wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Monotonic time, for timeouts, cool-downs and rate limits.
    fn now(&self) -> Instant;
    /// Wall-clock time, for samples and reports.
    fn wall(&self) -> Timestamp;
}

/// The real clocks of the operating system.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to. Clones share the same time.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use sysmanage_core::{Clock, ManualClock, Timestamp};
/// let clock = ManualClock::new(Timestamp::from_secs(100));
/// let start = clock.now();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now() - start, Duration::from_secs(5));
/// assert_eq!(clock.wall(), Timestamp::from_secs(105));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<(Instant, Timestamp)>>,
}

impl ManualClock {
    /// A clock whose wall time starts at `wall`.
    pub fn new(wall: Timestamp) -> Self {
        Self {
            inner: Arc::new(Mutex::new((Instant::now(), wall))),
        }
    }

    /// Moves both clocks forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.0 += d;
        g.1 = g.1 + d;
    }

    fn get(&self) -> (Instant, Timestamp) {
        *self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("wall", &self.get().1)
            .finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.get().0
    }
    fn wall(&self) -> Timestamp {
        self.get().1
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }
    fn wall(&self) -> Timestamp {
        (**self).wall()
    }
}
