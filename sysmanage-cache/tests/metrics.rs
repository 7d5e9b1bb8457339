//! What the caches record through the `metrics` facade: the tiered cache's
//! L1 over the in-memory backend, and RedisCache against the local cluster
//! (started by scripts/test), with the names and labels the crate documents.

mod common;

use std::time::Duration;

use sysmanage_cache::telemetry::{self, METRICS};
use sysmanage_cache::tiered::{TieredCache, TieredConfig};
use sysmanage_cache::{ClusterCache, MemoryCache, RedisCache, SetOptions};
use sysmanage_test::metrics::Capture;

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn tiered_cache_records_l1_loads_coalescing_and_invalidations() {
    let capture = Capture::new();
    capture.run(|| {
        block_on(async {
            let cache = TieredCache::new(MemoryCache::new(), TieredConfig::default()).unwrap();
            let ttl = SetOptions::ttl(Duration::from_secs(60));
            cache.set(b"user:1", b"ada", ttl).await.unwrap();
            for _ in 0..3 {
                cache.get(b"user:1").await.unwrap(); // a miss, then two hits
            }
            cache.invalidate_local(b"user:1");
            cache
                .get_or_load(b"user:2", Some(Duration::from_secs(60)), || async {
                    Ok(Some(b"grace".to_vec()))
                })
                .await
                .unwrap();
            let failed = cache
                .get_or_load(b"user:3", None, || async {
                    Err(sysmanage_cache::CacheError::invalid("origin", "down"))
                })
                .await;
            assert!(failed.is_err());
            // Concurrent loads of one key: one loads, the others wait.
            let load = || {
                cache.get_or_load(b"user:4", None, || async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Some(b"x".to_vec()))
                })
            };
            let (a, b, c) = tokio::join!(load(), load(), load());
            assert!(a.is_ok() && b.is_ok() && c.is_ok());
        });
    });
    let l1 = |r| {
        capture
            .value(telemetry::TIERED_L1, &[("result", r)])
            .unwrap()
    };
    assert!(l1("hit") >= 2.0, "hits {}", l1("hit"));
    assert!(l1("miss") >= 1.0);
    assert_eq!(
        capture.value(telemetry::TIERED_LOADS, &[("result", "ok")]),
        Some(2.0)
    );
    assert_eq!(
        capture.value(telemetry::TIERED_LOADS, &[("result", "error")]),
        Some(1.0)
    );
    assert_eq!(capture.value(telemetry::TIERED_COALESCED, &[]), Some(2.0));
    assert!(
        capture
            .value(telemetry::TIERED_INVALIDATIONS, &[("source", "local")])
            .unwrap()
            >= 1.0
    );
    capture.assert_documented(METRICS);
}

#[test]
fn redis_cache_records_operations_by_node_and_result() {
    let capture = Capture::new();
    let nodes = capture.run(|| {
        block_on(async {
            let cache = RedisCache::connect(common::redis_config()).await.unwrap();
            let ttl = SetOptions::ttl(Duration::from_secs(60));
            for i in 0..30 {
                let key = format!("metrics:{i}");
                cache.set(key.as_bytes(), b"v", ttl).await.unwrap();
                cache.get(key.as_bytes()).await.unwrap();
                cache
                    .get(format!("metrics:absent:{i}").as_bytes())
                    .await
                    .unwrap();
            }
            let keys: Vec<String> = (0..30).map(|i| format!("metrics:{i}")).collect();
            let got = cache.mget(&keys).await.unwrap();
            assert_eq!(got.len(), 30);
            cache.mdel(&keys).await.unwrap();
            let nodes = cache.routing().primaries().len();
            cache.shutdown(Duration::from_secs(5)).await.unwrap();
            nodes
        })
    });
    let total = |r| {
        capture
            .value(telemetry::CACHE_OPERATIONS, &[("result", r)])
            .unwrap()
    };
    // 30 GETs and 30 MGET keys hit, 30 GETs miss; 30 SETs and 30 deletes.
    assert_eq!(total("hit"), 60.0);
    assert_eq!(total("miss"), 30.0);
    assert_eq!(total("ok"), 60.0);
    assert_eq!(total("error"), 0.0);
    // Spread over every primary, each named by its address.
    let serving = capture
        .series()
        .into_iter()
        .filter(|s| s.name == telemetry::CACHE_OPERATIONS && s.value > 0.0)
        .filter_map(|s| s.labels.into_iter().find(|(k, _)| k == "node"))
        .map(|(_, v)| v)
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(serving.len(), nodes);
    assert!(serving.iter().all(|n| n.starts_with("127.0.0.1:")));
    // One latency observation per single-key command.
    assert_eq!(
        capture.value(telemetry::CACHE_OPERATION_DURATION, &[]),
        Some(90.0)
    );
    assert!(
        capture
            .value(telemetry::CACHE_TOPOLOGY_REFRESHES, &[("result", "ok")])
            .unwrap()
            >= 1.0
    );
    capture.assert_documented(METRICS);
}
