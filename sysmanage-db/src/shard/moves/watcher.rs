//! [`ShardMapWatcher`]: keeps routers on the latest shard map, in every
//! process, through `LISTEN`/`NOTIFY` plus polling.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::task::JoinHandle;

use super::store::{NOTIFY_CHANNEL, ShardMapStore};
use crate::shard::EpochTarget;
use crate::{Error, Result};

/// Default interval between polls of the map's version.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A background task that applies every new version of a shard map to a set
/// of routers: on each notification on [`NOTIFY_CHANNEL`], on every poll
/// interval (notifications are not delivered while the listening connection
/// is down, and polling bounds how stale a router can be), and whenever a
/// router asks for a refresh (a write it routed was refused as fenced or
/// moved).
///
/// Dropping the watcher stops it.
#[derive(Debug)]
pub struct ShardMapWatcher {
    task: JoinHandle<()>,
}

impl Drop for ShardMapWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ShardMapWatcher {
    /// Loads the map, applies it to every target, then keeps them current
    /// from a spawned task.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `targets` is empty, the poll interval
    /// is outside 1 ms – 1 hour, or the map does not fit a target;
    /// [`Error::Query`] when the map cannot be loaded.
    pub async fn start(
        store: ShardMapStore,
        targets: Vec<Arc<dyn EpochTarget>>,
        poll_interval: Duration,
    ) -> Result<Self> {
        if targets.is_empty() {
            return Err(Error::InvalidConfig {
                field: "targets",
                reason: "a watcher needs at least one router".into(),
            });
        }
        sysmanage_core::duration::check_duration(
            "poll_interval",
            poll_interval,
            sysmanage_core::duration::MILLISECOND,
            Duration::from_secs(3600),
        )?;
        let map = store.load().await?;
        for t in &targets {
            t.apply_map(&map)?;
        }
        // A listener that fails now is retried inside the loop: polling
        // covers the gap.
        let listener = listen(&store).await.ok();
        let task = tokio::spawn(run(store, targets, poll_interval, listener));
        Ok(ShardMapWatcher { task })
    }

    /// Stops the watcher.
    pub fn stop(self) {
        self.task.abort();
    }
}

async fn listen(store: &ShardMapStore) -> std::result::Result<PgListener, sqlx::Error> {
    let mut l = PgListener::connect_with(store.pool()).await?;
    l.listen(NOTIFY_CHANNEL).await?;
    Ok(l)
}

enum Wake {
    Notified(bool),
    ListenerLost,
    Tick,
    Refresh,
}

async fn run(
    store: ShardMapStore,
    targets: Vec<Arc<dyn EpochTarget>>,
    poll: Duration,
    mut listener: Option<PgListener>,
) {
    let signals: Vec<_> = targets.iter().map(|t| t.refresh_signal()).collect();
    let prefix = format!("{} ", store.name());
    loop {
        let wake = {
            let sleep = tokio::time::sleep(poll);
            tokio::pin!(sleep);
            let mut refreshes: Vec<Pin<Box<_>>> =
                signals.iter().map(|s| Box::pin(s.notified())).collect();
            let mut recv = listener.as_mut().map(|l| Box::pin(l.try_recv()));
            poll_fn(|cx| {
                if let Some(r) = recv.as_mut()
                    && let Poll::Ready(n) = r.as_mut().poll(cx)
                {
                    return Poll::Ready(match n {
                        Ok(Some(n)) => Wake::Notified(n.payload().starts_with(&prefix)),
                        Ok(None) | Err(_) => Wake::ListenerLost,
                    });
                }
                if refreshes.iter_mut().any(|r| r.as_mut().poll(cx).is_ready()) {
                    return Poll::Ready(Wake::Refresh);
                }
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Tick);
                }
                Poll::Pending
            })
            .await
        };
        match wake {
            Wake::Notified(false) => continue,
            Wake::ListenerLost => {
                // Reconnect on the next round; poll meanwhile.
                listener = None;
            }
            Wake::Tick if listener.is_none() => listener = listen(&store).await.ok(),
            _ => {}
        }
        refresh(&store, &targets).await;
    }
}

async fn refresh(store: &ShardMapStore, targets: &[Arc<dyn EpochTarget>]) {
    let current = targets.iter().map(|t| t.epoch()).min().unwrap_or(0);
    match store.version().await {
        Ok(v) if v <= current => return,
        Ok(_) => {}
        Err(e) => {
            tracing::debug!(target: "sysmanage_db::shard::moves", error = %e, "sysmanage_db.shard.map_poll_failed");
            return;
        }
    }
    match store.load().await {
        Ok(map) => {
            for t in targets {
                if let Err(e) = t.apply_map(&map) {
                    tracing::warn!(target: "sysmanage_db::shard::moves", error = %e, "sysmanage_db.shard.map_rejected");
                }
            }
        }
        Err(e) => {
            tracing::debug!(target: "sysmanage_db::shard::moves", error = %e, "sysmanage_db.shard.map_load_failed");
        }
    }
}
