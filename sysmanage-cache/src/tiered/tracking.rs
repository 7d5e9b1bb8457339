//! Server-assisted invalidation of L1 through RESP3 `CLIENT TRACKING`.
//!
//! One dedicated RESP3 connection per primary, in `BCAST` mode with the
//! configured prefixes: the server pushes `invalidate` for every key under a
//! prefix that any client modifies on that node (a null key list means the
//! node's data set was flushed). The data connections of
//! [`RedisCache`] are untouched.
//!
//! A supervisor task follows the primary set of the cache's routing table
//! (and its topology events), starting a node task per new primary and
//! stopping those of removed ones. L1 serves only while every primary has a
//! live subscription; any lost connection, missed heartbeat, lagged
//! invalidation channel or topology event flushes L1.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use sysmanage_core::duration::{DAY, MILLISECOND, check_count, check_duration};

use fred::interfaces::{ClientInterface, ClientLike, TrackingInterface};
use fred::types::config::Config;
use fred::types::{Builder, Key, RespVersion, Value};
use serde::{Deserialize, Serialize};
use sysmanage_core::{Backoff, Jitter, SplitMix64};
use tokio::sync::{Notify, broadcast::error::RecvError};
use tokio::task::JoinHandle;

use super::{Shared, TieredCache, TieredConfig, bump};
use crate::error::{CacheError, Result};
use crate::redis::RedisCache;

/// Settings of the invalidation connections of
/// [`TieredCache::with_tracking`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TrackingConfig {
    /// `PING` period on each tracking connection; a ping that fails or
    /// takes longer than this counts as a lost connection. Default: 1 s.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub heartbeat: Duration,
    /// How often the supervisor compares the tracked nodes with the routing
    /// table. Default: 250 ms.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub reconcile_interval: Duration,
    /// First wait before reconnecting a lost tracking connection; it
    /// doubles per failed attempt up to `reconnect_max`, with equal jitter,
    /// and starts over after a successful subscription. Default: 200 ms.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub reconnect_delay: Duration,
    /// Longest wait between reconnection attempts. Default: 5 s.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub reconnect_max: Duration,
    /// Capacity of each connection's invalidation channel; falling behind
    /// it flushes L1. Default: 4096.
    pub channel_capacity: usize,
    /// `CLIENT SETNAME` of the tracking connections (letters, digits, `-`,
    /// `_`, `.`, `:`). Default: `sysmanage-l1-tracking`.
    pub client_name: String,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(1),
            reconcile_interval: Duration::from_millis(250),
            reconnect_delay: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(5),
            channel_capacity: 4096,
            client_name: "sysmanage-l1-tracking".to_owned(),
        }
    }
}

impl TrackingConfig {
    /// Validates the settings.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] naming the field.
    pub fn validate(&self) -> Result<()> {
        for (field, d) in [
            ("tracking.heartbeat", self.heartbeat),
            ("tracking.reconcile_interval", self.reconcile_interval),
            ("tracking.reconnect_delay", self.reconnect_delay),
            ("tracking.reconnect_max", self.reconnect_max),
        ] {
            check_duration(field, d, MILLISECOND, DAY)?;
        }
        self.backoff()?;
        check_count(
            "tracking.channel_capacity",
            self.channel_capacity,
            1,
            crate::cache::MAX_CHANNEL,
        )?;
        if self.client_name.is_empty()
            || !self
                .client_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return Err(CacheError::invalid(
                "tracking.client_name",
                "must be non-empty letters, digits, '-', '_', '.' or ':'",
            ));
        }
        Ok(())
    }
}

impl TrackingConfig {
    fn backoff(&self) -> Result<Backoff> {
        Backoff::builder()
            .initial(self.reconnect_delay)
            .max(self.reconnect_max)
            .jitter(Jitter::Equal)
            .build()
            .map_err(|e| CacheError::invalid("tracking.reconnect_max", e.to_string()))
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl TieredCache<RedisCache> {
    /// An L1 of `config` in front of `l2`, kept coherent by RESP3 client
    /// tracking on every primary (see the [module docs](super)).
    ///
    /// Returns at once; L1 starts serving when every primary is tracked
    /// ([`TieredStats::coherent`](super::TieredStats::coherent)); until then
    /// reads go to L2.
    ///
    /// The write-back of [`get_or_load`](TieredCache::get_or_load) is itself
    /// a write, so its invalidation reaches this instance too and removes
    /// the entry just filled: the next read fills L1 from L2.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] for bad settings, overlapping
    /// prefixes, or a call outside a Tokio runtime.
    pub fn with_tracking(
        l2: RedisCache,
        config: TieredConfig,
        tracking: TrackingConfig,
    ) -> Result<Self> {
        tracking.validate()?;
        let prefixes = &config.prefixes;
        if prefixes.iter().enumerate().any(|(i, p)| {
            prefixes
                .iter()
                .enumerate()
                .any(|(j, q)| i != j && q.starts_with(p))
        }) {
            return Err(CacheError::invalid(
                "tiered.prefixes",
                "prefixes overlap (one starts with another), which CLIENT TRACKING BCAST rejects",
            ));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(CacheError::invalid(
                "runtime",
                "with_tracking must be called inside a Tokio runtime",
            ));
        }
        let cache = Self::new(l2, config)?;
        cache.shared.tracking.store(true, Ordering::SeqCst);
        cache.shared.coherent.store(false, Ordering::SeqCst);
        let task = tokio::spawn(supervise(
            Arc::downgrade(&cache.shared),
            cache.l2.clone(),
            Arc::new(tracking),
        ));
        cache
            .tasks
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(task);
        Ok(cache)
    }
}

struct NodeTask {
    tracked: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Drop for NodeTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

async fn supervise(shared: Weak<Shared>, l2: RedisCache, cfg: Arc<TrackingConfig>) {
    let mut events = l2.subscribe();
    let changed = Arc::new(Notify::new());
    let mut nodes: HashMap<String, NodeTask> = HashMap::new();
    loop {
        let Some(s) = shared.upgrade() else { return };
        let primaries: BTreeSet<String> = l2
            .routing()
            .primaries()
            .into_iter()
            .map(str::to_owned)
            .collect();
        nodes.retain(|addr, _| primaries.contains(addr));
        for addr in &primaries {
            if !nodes.contains_key(addr) {
                let tracked = Arc::new(AtomicBool::new(false));
                let handle = tokio::spawn(track_node(
                    shared.clone(),
                    l2.clone(),
                    addr.clone(),
                    tracked.clone(),
                    cfg.clone(),
                    changed.clone(),
                ));
                nodes.insert(addr.clone(), NodeTask { tracked, handle });
            }
        }
        let tracked = nodes
            .values()
            .filter(|n| n.tracked.load(Ordering::SeqCst))
            .count();
        s.counters
            .tracked_nodes
            .store(tracked as u64, Ordering::Relaxed);
        s.counters
            .primaries
            .store(primaries.len() as u64, Ordering::Relaxed);
        let coherent = !primaries.is_empty() && tracked == primaries.len();
        if coherent != s.serving() {
            s.set_coherent(
                coherent,
                if coherent {
                    "tracking complete"
                } else {
                    "primary not tracked"
                },
            );
            // A node task may have lost its connection between the count
            // and the switch; it clears its flag before it flushes.
            if coherent && nodes.values().any(|n| !n.tracked.load(Ordering::SeqCst)) {
                s.set_coherent(false, "primary not tracked");
            }
        }
        drop(s);
        tokio::select! {
            ev = events.recv() => {
                if let Some(s) = shared.upgrade() {
                    // Slots moved or primaries changed: keys may now be
                    // written where no invalidation reaches us yet.
                    s.flush(match ev {
                        Ok(_) => "topology changed",
                        Err(RecvError::Lagged(_)) => "topology events lagged",
                        Err(RecvError::Closed) => return,
                    });
                }
            }
            () = changed.notified() => {}
            () = tokio::time::sleep(cfg.reconcile_interval) => {}
        }
    }
}

/// Connects, subscribes and relays invalidations for one primary until the
/// task is aborted; reconnects after every loss.
async fn track_node(
    shared: Weak<Shared>,
    l2: RedisCache,
    addr: String,
    tracked: Arc<AtomicBool>,
    cfg: Arc<TrackingConfig>,
    changed: Arc<Notify>,
) {
    let backoff = cfg.backoff().unwrap_or_default();
    let mut rng = SplitMix64::from_entropy();
    let mut attempt = 0;
    loop {
        let outcome = track_once(&shared, &l2, &addr, &tracked, &cfg, &changed).await;
        let was_tracked = tracked.swap(false, Ordering::SeqCst);
        attempt = if was_tracked { 0 } else { attempt + 1 };
        let Some(s) = shared.upgrade() else { return };
        // Flush before anything else can read L1 (and before the loss is
        // counted): invalidations may have been lost with the connection.
        s.set_coherent(false, "tracking connection lost");
        if was_tracked {
            bump(&s.counters.tracking_lost);
            tracing::warn!(target: "sysmanage_cache::tiered::tracking", node = %addr, error = %outcome, "tracking connection lost; l1 flushed");
        } else {
            tracing::debug!(target: "sysmanage_cache::tiered::tracking", node = %addr, error = %outcome, "tracking not established");
        }
        drop(s);
        changed.notify_one();
        tokio::time::sleep(backoff.delay(attempt, rng.next_f64())).await;
    }
}

/// The connection task of a tracking client, ended when dropped (also when
/// the node task is aborted), which closes the connection.
struct ConnectionTask(fred::types::ConnectHandle);

impl Drop for ConnectionTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn track_once(
    shared: &Weak<Shared>,
    l2: &RedisCache,
    addr: &str,
    tracked: &AtomicBool,
    cfg: &TrackingConfig,
    changed: &Notify,
) -> String {
    let Some((host, port)) = addr
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
    else {
        return "node address is not host:port".to_owned();
    };
    let config = Config {
        version: RespVersion::RESP3,
        ..l2.fred_config(host, port)
    };
    let client = match Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = l2.config().connect_timeout;
            c.internal_command_timeout = l2.config().connect_timeout;
            c.max_command_attempts = 1;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = cfg.heartbeat;
            p.broadcast_channel_capacity = cfg.channel_capacity;
        })
        .build()
    {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    let handle = match client.init().await {
        Ok(h) => h,
        // Refused credentials and failed handshakes in words, with the node.
        Err(e) => return l2.connect_failure(e, addr).to_string(),
    };
    let mut connection_task = ConnectionTask(handle);
    // Subscribe to the channel before tracking starts so nothing is missed.
    let mut rx = client.invalidation_rx();
    if let Err(e) = client.client_setname(cfg.client_name.clone()).await {
        return e.to_string();
    }
    let prefixes: Vec<Key> = shared
        .upgrade()
        .map(|s| {
            s.config
                .prefixes
                .iter()
                .map(|p| Key::from(p.as_slice()))
                .collect()
        })
        .unwrap_or_default();
    if let Err(e) = client
        .client_tracking::<Value, _, _>("ON", None, prefixes, true, false, false, false)
        .await
    {
        return e.to_string();
    }
    {
        let Some(s) = shared.upgrade() else {
            return "cache dropped".to_owned();
        };
        // Entries filled before this point may have missed invalidations.
        s.flush("tracking subscribed");
        bump(&s.counters.tracking_subscriptions);
    }
    tracked.store(true, Ordering::SeqCst);
    changed.notify_one();
    tracing::info!(target: "sysmanage_cache::tiered::tracking", node = %addr, "tracking subscribed");
    let mut heartbeat = tokio::time::interval(cfg.heartbeat);
    heartbeat.tick().await;
    let reason = loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(s) = shared.upgrade() else { break "cache dropped".to_owned() };
                match msg {
                    Ok(inv) => {
                        bump(&s.counters.tracking_messages);
                        if inv.keys.is_empty() {
                            s.flush("server flushed");
                        } else {
                            for k in &inv.keys {
                                s.invalidate(k.as_bytes());
                                s.metrics.invalidated_tracking.increment(1);
                            }
                        }
                    }
                    Err(RecvError::Lagged(_)) => s.flush("invalidations lagged"),
                    Err(RecvError::Closed) => break "invalidation channel closed".to_owned(),
                }
            }
            r = &mut connection_task.0 => {
                break match r {
                    Ok(Ok(())) => "connection closed".to_owned(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
            }
            _ = heartbeat.tick() => {
                let ping = tokio::time::timeout(cfg.heartbeat, client.ping::<Value>(None)).await;
                match ping {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => break e.to_string(),
                    Err(_) => break "heartbeat timed out".to_owned(),
                }
            }
        }
    };
    // `track_node` clears `tracked`, counts the loss and flushes; dropping
    // the connection task closes the connection.
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_config_is_validated() {
        assert!(TrackingConfig::default().validate().is_ok());
        let zero = TrackingConfig {
            heartbeat: Duration::ZERO,
            ..TrackingConfig::default()
        };
        let name = TrackingConfig {
            client_name: "has space".to_owned(),
            ..TrackingConfig::default()
        };
        let capacity = TrackingConfig {
            channel_capacity: 0,
            ..TrackingConfig::default()
        };
        let inverted = TrackingConfig {
            reconnect_max: Duration::from_millis(10),
            ..TrackingConfig::default()
        };
        for (cfg, want) in [
            (zero, "tracking.heartbeat"),
            (name, "tracking.client_name"),
            (capacity, "tracking.channel_capacity"),
            (inverted, "tracking.reconnect_max"),
        ] {
            match cfg.validate() {
                Err(CacheError::InvalidArgument { field, .. }) => assert_eq!(field, want),
                other => panic!("expected InvalidArgument for {want}, got {other:?}"),
            }
        }
    }
}
