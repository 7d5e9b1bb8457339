//! Clean shutdown: refuse new operations, let those in flight finish until a
//! deadline, stop the refresher and close every node connection.

use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use fred::interfaces::ClientLike;
use tokio::sync::Notify;

use super::RedisCache;
use crate::error::{CacheError, Result};

/// Shutdown state of one cache (all clones).
#[derive(Debug, Default)]
pub(super) struct Life {
    closed: AtomicBool,
    in_flight: AtomicUsize,
    drained: Notify,
}

/// One operation in flight; dropping it ends it.
pub(super) struct InFlight<'a>(&'a Life);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1
            && self.0.closed.load(Ordering::Acquire)
        {
            self.0.drained.notify_waiters();
        }
    }
}

impl Life {
    /// Admits an operation, or refuses it after shutdown began.
    pub(super) fn begin(&self) -> Result<InFlight<'_>> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(self);
        if self.closed.load(Ordering::Acquire) {
            return Err(CacheError::ShutDown);
        }
        Ok(guard)
    }
}

impl RedisCache {
    /// Admits one operation (see [`shutdown`](Self::shutdown)).
    pub(super) fn begin(&self) -> Result<InFlight<'_>> {
        self.inner.life.begin()
    }

    /// Whether [`shutdown`](Self::shutdown) was called (on any clone).
    pub fn is_shut_down(&self) -> bool {
        self.inner.life.closed.load(Ordering::Acquire)
    }

    /// Shuts the cache down, for every clone: new operations fail at once
    /// with [`CacheError::ShutDown`]; operations in flight may finish until
    /// `deadline` passes; then the topology refresher stops and every node
    /// connection is closed with `QUIT` (or dropped if a node does not answer
    /// in time). Calling it again is harmless.
    ///
    /// # Errors
    /// [`CacheError::Timeout`] when operations were still in flight at the
    /// deadline (they fail; the connections are closed anyway).
    pub async fn shutdown(&self, deadline: Duration) -> Result<()> {
        let life = &self.inner.life;
        life.closed.store(true, Ordering::Release);
        let until = tokio::time::Instant::now() + deadline.min(sysmanage_core::duration::DAY);
        let drained = loop {
            let notified = life.drained.notified();
            if life.in_flight.load(Ordering::Acquire) == 0 {
                break true;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                break life.in_flight.load(Ordering::Acquire) == 0;
            }
        };
        for t in self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
        let conns: Vec<_> = self
            .inner
            .nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        let quit_by = tokio::time::Instant::now()
            + until
                .saturating_duration_since(tokio::time::Instant::now())
                .max(Duration::from_millis(200));
        crate::join::join_all(
            conns
                .iter()
                .map(|(_, n)| async move {
                    let _ = tokio::time::timeout_at(quit_by, n.client.quit()).await;
                    n.close();
                })
                .collect(),
        )
        .await;
        if drained {
            Ok(())
        } else {
            Err(CacheError::Timeout(deadline))
        }
    }
}
