//! Clean shutdown of a router.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use super::pool::NodePool;
use super::router::ReplicaRouter;
use crate::error::{Error, Result};

impl<P: NodePool> ReplicaRouter<P> {
    /// Shuts the router down, for every clone: new reads and writes fail at
    /// once with [`Error::ShutDown`]; the monitor stops; queries in flight
    /// may finish until `deadline` passes; then every node's pool is closed
    /// (for sqlx, `PgPool::close`, which ends its connections). Calling it
    /// again is harmless.
    ///
    /// # Errors
    /// A [`Timeout`](sysmanage_core::Error::Timeout) when queries were still
    /// in flight at the deadline (their pools are closed anyway).
    pub async fn shutdown(&self, deadline: Duration) -> Result<()> {
        let inner = &*self.inner;
        inner.closed.store(true, Ordering::Release);
        if let Some(monitor) = inner
            .monitor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            monitor.abort();
        }
        let until = tokio::time::Instant::now() + deadline.min(sysmanage_core::duration::DAY);
        let topo = inner.topology();
        let busy = || {
            topo.nodes
                .iter()
                .map(|n| n.in_flight.load(Ordering::Acquire))
                .sum::<u32>()
        };
        while busy() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let drained = busy() == 0;
        // A pool closes once its connections are back; one still lent out
        // past the deadline is not waited for.
        let close_by = until.max(tokio::time::Instant::now() + Duration::from_millis(200));
        let nodes: Vec<Arc<_>> = topo.nodes.clone();
        let closes = nodes.iter().map(|n| {
            let pool = n.pool.clone();
            async move {
                let _ = tokio::time::timeout_at(close_by, pool.close()).await;
            }
        });
        for c in closes {
            c.await;
        }
        if drained {
            Ok(())
        } else {
            Err(Error::Core(sysmanage_core::Error::Timeout(deadline)))
        }
    }

    /// Whether [`shutdown`](Self::shutdown) was called (on any clone).
    pub fn is_shut_down(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }
}
