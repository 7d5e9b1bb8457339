//! `TieredCache` with RESP3 client tracking on the live Redis Cluster
//! (feature `integration`; `scripts/services up` first): cross-instance
//! invalidation within a bounded time, one load for 100 concurrent misses,
//! and L1 flushed when a tracking connection drops.
//!
//! Every test uses its own key prefix and tracking client name, and
//! tolerates a cluster that other tests reshard or fail over meanwhile: a
//! flush or an L1 bypass only ever makes reads fresher.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fred::interfaces::ClientLike;
use fred::types::{ClusterHash, CustomCommand, Value};
use sysmanage_cache::tiered::TrackingConfig;
use sysmanage_cache::{ClusterCache, RedisCache, SetOptions, TieredCache, TieredConfig};

const LOCAL_TTL: Duration = Duration::from_secs(10);

fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

async fn redis() -> RedisCache {
    RedisCache::connect(common::redis_config())
        .await
        .expect("connect to the local Redis Cluster")
}

/// A tracked tiered cache over its own `RedisCache`, caching `prefix`.
async fn tiered(prefix: &str, client_name: &str) -> TieredCache<RedisCache> {
    let mut config = TieredConfig::default();
    config.local_ttl = LOCAL_TTL;
    config.prefixes = vec![prefix.as_bytes().to_vec()];
    let mut tracking = TrackingConfig::default();
    tracking.client_name = client_name.to_owned();
    let cache = TieredCache::with_tracking(redis().await, config, tracking).unwrap();
    wait_coherent(&cache).await;
    cache
}

async fn wait_coherent(cache: &TieredCache<RedisCache>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cache.stats().coherent {
        assert!(
            Instant::now() < deadline,
            "tracking not established on every primary: {:?}",
            cache.stats().tracking
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads through `cache` until `key` holds `want`; returns how long it took.
async fn visible_after(cache: &TieredCache<RedisCache>, key: &[u8], want: &[u8]) -> Duration {
    let started = Instant::now();
    loop {
        if cache.get(key).await.unwrap().as_deref() == Some(want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() <= LOCAL_TTL,
            "a write stayed invisible longer than the local TTL"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_instance_invalidates_the_other() {
    let run = run_id();
    let prefix = format!("tiered-live:{run}:");
    let a = tiered(&prefix, &format!("l1t-a-{run}")).await;
    let b = tiered(&prefix, &format!("l1t-b-{run}")).await;
    let mut lags = Vec::new();
    for i in 0..20 {
        // Keys spread over slots, hence over every primary.
        let key = format!("{prefix}k{i}").into_bytes();
        a.set(&key, b"old", SetOptions::ttl(Duration::from_secs(60)))
            .await
            .unwrap();
        assert_eq!(visible_after(&b, &key, b"old").await.as_secs(), 0);
        // B now serves the key from L1 (unless a concurrent fault test just
        // made it flush, which only makes B fresher).
        b.get(&key).await.unwrap();
        let written = Instant::now();
        a.set(&key, b"new", SetOptions::ttl(Duration::from_secs(60)))
            .await
            .unwrap();
        let write_time = written.elapsed();
        lags.push(visible_after(&b, &key, b"new").await + write_time);
    }
    lags.sort();
    let stats = b.stats();
    println!(
        "cross-instance visibility after a write: median {:?}, max {:?} (local ttl {LOCAL_TTL:?}); \
         b: {} l1 hits, {} invalidation messages",
        lags[lags.len() / 2],
        lags[lags.len() - 1],
        stats.l1.hits,
        stats.tracking.messages
    );
    assert!(lags.iter().all(|l| *l < LOCAL_TTL));
    assert!(stats.l1.hits > 0, "B served reads from L1: {stats:?}");
    assert!(
        stats.tracking.messages > 0,
        "B received invalidations: {stats:?}"
    );
    // A write by a client that is not a TieredCache invalidates as well.
    let key = format!("{prefix}foreign").into_bytes();
    let plain = redis().await;
    plain.set(&key, b"1", SetOptions::default()).await.unwrap();
    visible_after(&b, &key, b"1").await;
    plain.set(&key, b"2", SetOptions::default()).await.unwrap();
    let lag = visible_after(&b, &key, b"2").await;
    println!("visibility of a plain client's write: {lag:?}");
    plain.delete(&key).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_misses_cause_exactly_one_load() {
    let run = run_id();
    let prefix = format!("tiered-live-stampede:{run}:");
    let cache = tiered(&prefix, &format!("l1t-s-{run}")).await;
    let key = format!("{prefix}hot").into_bytes();
    let loads = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (c, k, loads, barrier) =
                (cache.clone(), key.clone(), loads.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                c.get_or_load(&k, Some(Duration::from_secs(60)), || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok(Some(b"origin".to_vec()))
                })
                .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().as_deref(), Some(&b"origin"[..]));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1, "{:?}", cache.stats());
    println!("stampede: {:?}", cache.stats().origin);
    // The load was written back to L2 with its TTL.
    assert_eq!(
        cache.l2().get(&key).await.unwrap().as_deref(),
        Some(&b"origin"[..])
    );
    cache.delete(&key).await.unwrap();
}

/// `(node, client id)` of every connection named `name`.
async fn connections_named(redis: &RedisCache, name: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for node in redis.routing().primaries() {
        let client = redis.node_client(node).await.unwrap();
        let list: Value = client
            .custom(
                CustomCommand::new_static("CLIENT", ClusterHash::Random, false),
                vec!["LIST".to_owned()],
            )
            .await
            .unwrap();
        let text = list.as_string().unwrap_or_default();
        for line in text.lines() {
            let field = |f: &str| {
                line.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(f))
                    .map(str::to_owned)
            };
            if field("name=").as_deref() == Some(name)
                && let Some(id) = field("id=")
            {
                out.push((node.to_owned(), id));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_is_flushed_when_a_tracking_connection_drops() {
    let run = run_id();
    let prefix = format!("tiered-live-drop:{run}:");
    let name = format!("l1t-d-{run}");
    let cache = tiered(&prefix, &name).await;
    let keys: Vec<Vec<u8>> = (0..20)
        .map(|i| format!("{prefix}k{i}").into_bytes())
        .collect();
    for k in &keys {
        cache
            .set(k, b"v", SetOptions::ttl(Duration::from_secs(60)))
            .await
            .unwrap();
        cache.get(k).await.unwrap();
    }
    assert!(
        keys.iter().any(|k| cache.is_cached_locally(k)),
        "L1 holds entries before the drop"
    );
    let admin = redis().await;
    let conns = connections_named(&admin, &name).await;
    assert!(
        !conns.is_empty(),
        "tracking connections are visible in CLIENT LIST"
    );
    let (node, id) = &conns[0];
    let lost_before = cache.stats().tracking.connections_lost;
    let client = admin.node_client(node).await.unwrap();
    let _: Value = client
        .custom(
            CustomCommand::new_static("CLIENT", ClusterHash::Random, false),
            vec!["KILL".to_owned(), "ID".to_owned(), id.clone()],
        )
        .await
        .unwrap();
    let killed = Instant::now();
    while cache.stats().tracking.connections_lost == lost_before {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the killed tracking connection was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("tracking loss noticed after {:?}", killed.elapsed());
    assert!(
        keys.iter().all(|k| !cache.is_cached_locally(k)),
        "L1 was flushed"
    );
    // Tracking comes back by itself and L1 serves again.
    wait_coherent(&cache).await;
    println!("tracking restored after {:?}", killed.elapsed());
    cache.get(&keys[0]).await.unwrap();
    assert!(cache.is_cached_locally(&keys[0]));
    assert!(cache.stats().tracking.subscriptions > conns.len() as u64 - 1);
    cache.mdel(&keys).await.unwrap();
    // Dropping the cache closes its tracking connections.
    drop(cache);
    let dropped = Instant::now();
    while !connections_named(&admin, &name).await.is_empty() {
        assert!(
            dropped.elapsed() < Duration::from_secs(10),
            "tracking connections outlived the cache"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn overlapping_tracking_prefixes_are_rejected() {
    let mut config = TieredConfig::default();
    config.prefixes = vec![b"app:".to_vec(), b"app:users:".to_vec()];
    match TieredCache::with_tracking(redis().await, config, TrackingConfig::default()) {
        Err(sysmanage_cache::CacheError::InvalidArgument { field, .. }) => {
            assert_eq!(field, "tiered.prefixes");
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}
