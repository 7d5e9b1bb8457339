//! The topology refresh: `CLUSTER SLOTS` periodically, on demand and after
//! errors; concurrent requests share one refresh.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};

use fred::interfaces::ClientLike;
use fred::types::cluster::ClusterRouting;
use fred::types::{ClusterHash, CustomCommand, Value};
use sysmanage_core::{SplitMix64, Timestamp};
use tokio::sync::Notify;

use super::config::parse_addr;
use super::routing::Routing;
use super::{Inner, RedisCache};
use crate::error::{CacheError, Result};
use crate::topology::{RoutingSnapshot, SlotOwner, diff};

/// Whether a caller of `refresh_now` may return on the last successful
/// refresh: true when that refresh (numbered `last_ok`) started after the
/// caller arrived (when `started_at_call` refreshes had started).
pub(super) fn shares_refresh(last_ok: u64, started_at_call: u64) -> bool {
    last_ok > started_at_call
}

impl RedisCache {
    /// Asks the refresher to re-read the topology now (rate-limited by
    /// [`RedisConfig::min_refresh_gap`](super::RedisConfig::min_refresh_gap)).
    pub fn request_refresh(&self) {
        self.inner.refresh.notify_one();
    }

    /// Re-reads `CLUSTER SLOTS` now, publishes the resulting events and
    /// returns once the routing table is updated. Concurrent calls share one
    /// refresh: a call returns without its own when a refresh that started
    /// after the call began has succeeded meanwhile.
    ///
    /// # Errors
    /// A backend error when no node answers.
    pub async fn refresh_now(&self) -> Result<()> {
        let started_at_call = self.inner.refresh_started.load(Ordering::SeqCst);
        let mut last_ok = self.inner.refreshing.lock().await;
        if shares_refresh(*last_ok, started_at_call) {
            return Ok(()); // another caller refreshed while we waited
        }
        let number = self.inner.refresh_started.fetch_add(1, Ordering::SeqCst) + 1;
        let moved_before = self.inner.moved_seq.load(Ordering::SeqCst);
        let old = self.routing_table();
        let mut candidates: Vec<String> = old
            .snapshot
            .primaries()
            .into_iter()
            .map(str::to_owned)
            .collect();
        for seed in &self.inner.config.nodes {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        // Nodes with a live connection first: a dead node would cost a timeout.
        let connected: HashSet<String> = {
            let nodes = self
                .inner
                .nodes
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            nodes
                .iter()
                .filter(|(_, n)| n.client.is_connected())
                .map(|(a, _)| a.clone())
                .collect()
        };
        candidates.sort_by_key(|a| !connected.contains(a));
        let mut last = None;
        for addr in candidates {
            let reply = match self.node(&addr).await {
                Ok(c) => {
                    c.custom::<Value, Value>(
                        CustomCommand::new_static("CLUSTER", ClusterHash::Random, false),
                        vec!["SLOTS".into()],
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            let parsed = reply.and_then(|v| {
                let host = parse_addr(&addr).map(|(h, _)| h).unwrap_or_default();
                ClusterRouting::from_cluster_slots(v, host)
            });
            match parsed {
                Ok(table) if !table.slots().is_empty() => {
                    let ranges = table
                        .slots()
                        .iter()
                        .map(|s| SlotOwner::new(s.start, s.end, s.primary.to_string()))
                        .collect();
                    let snapshot = RoutingSnapshot::new(ranges, Timestamp::now());
                    let events = diff(&old.snapshot, &snapshot);
                    self.prune_nodes(&snapshot);
                    {
                        let mut routing = self
                            .inner
                            .routing
                            .write()
                            .unwrap_or_else(PoisonError::into_inner);
                        *routing = Arc::new(Routing::refreshed(snapshot, &routing, moved_before));
                    }
                    *last_ok = number;
                    self.inner
                        .counters
                        .refreshes
                        .fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(crate::telemetry::CACHE_TOPOLOGY_REFRESHES, "result" => "ok")
                        .increment(1);
                    for ev in events {
                        tracing::info!(target: "sysmanage_cache::redis::topology", event = ?ev, "topology changed");
                        self.inner.counters.events.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!(crate::telemetry::CACHE_TOPOLOGY_EVENTS).increment(1);
                        let _ = self.inner.events.send(ev);
                    }
                    return Ok(());
                }
                Ok(_) => {
                    last = Some(CacheError::invalid(
                        "cluster slots",
                        format!("{addr} serves no slots"),
                    ))
                }
                Err(e) => {
                    let cfg = &self.inner.config;
                    let e = self.connect_failure(e, &addr);
                    let e =
                        super::tls::explain(&addr, e, cfg.tls.is_some(), cfg.connect_timeout).await;
                    tracing::debug!(target: "sysmanage_cache::redis::topology", node = %addr, error = %e, "refresh failed");
                    // Refused credentials or a failed handshake say more
                    // than a later node that is merely down.
                    if !matches!(last, Some(CacheError::Auth { .. } | CacheError::Tls { .. })) {
                        last = Some(e);
                    }
                }
            }
        }
        metrics::counter!(crate::telemetry::CACHE_TOPOLOGY_REFRESHES, "result" => "error")
            .increment(1);
        Err(last.unwrap_or_else(|| CacheError::invalid("redis.nodes", "no node to ask")))
    }
}

/// The periodic and on-demand topology refresh. It holds the cache only
/// while refreshing: while it waits, dropping the last `RedisCache` frees
/// everything at once (and `Inner::drop` ends this task).
pub(super) async fn refresher(inner: Weak<Inner>, wake: Arc<Notify>) {
    let mut rng = SplitMix64::from_entropy();
    loop {
        let (period, gap) = {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let cfg = &strong.config;
            let spread = 1.0 - cfg.refresh_jitter + 2.0 * cfg.refresh_jitter * rng.next_f64();
            (cfg.refresh_interval.mul_f64(spread), cfg.min_refresh_gap)
        };
        {
            let notified = wake.notified();
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = notified => {}
            }
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let cache = RedisCache { inner: strong };
        let _ = cache.refresh_now().await;
        drop(cache);
        tokio::time::sleep(gap).await;
    }
}
