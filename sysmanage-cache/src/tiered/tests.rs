use std::sync::atomic::AtomicUsize;

use sysmanage_core::{ManualClock, Timestamp};

use super::*;
use crate::MemoryCache;

fn setup(config: TieredConfig) -> (TieredCache<MemoryCache>, MemoryCache, ManualClock) {
    let clock = ManualClock::new(Timestamp::from_secs(1_000));
    let l2 = MemoryCache::builder().clock(clock.clone()).build().unwrap();
    let tiered = TieredCache::with_clock(l2.clone(), config, Arc::new(clock.clone())).unwrap();
    (tiered, l2, clock)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test]
async fn local_ttl_bounds_staleness_of_foreign_writes() {
    let config = TieredConfig {
        local_ttl: secs(10),
        ttl_jitter: 0.0,
        ..TieredConfig::default()
    };
    let (tiered, l2, clock) = setup(config);
    l2.set(b"k", b"old", SetOptions::default()).await.unwrap();
    assert_eq!(
        tiered.get(b"k").await.unwrap().as_deref(),
        Some(&b"old"[..])
    );
    // A writer that bypasses this instance (no tracker here).
    l2.set(b"k", b"new", SetOptions::default()).await.unwrap();
    clock.advance(Duration::from_millis(9_990));
    assert_eq!(
        tiered.get(b"k").await.unwrap().as_deref(),
        Some(&b"old"[..])
    );
    clock.advance(Duration::from_millis(20));
    assert_eq!(
        tiered.get(b"k").await.unwrap().as_deref(),
        Some(&b"new"[..])
    );
    let st = tiered.stats();
    assert_eq!((st.l1.hits, st.l1.misses, st.l2.hits), (1, 2, 2));
}

#[tokio::test]
async fn l1_never_outlives_the_l2_ttl() {
    let (tiered, _l2, clock) = setup(TieredConfig::default());
    tiered
        .set(b"k", b"v", SetOptions::ttl(secs(2)))
        .await
        .unwrap();
    assert!(tiered.get(b"k").await.unwrap().is_some());
    assert!(tiered.is_cached_locally(b"k"));
    clock.advance(Duration::from_millis(2_001));
    assert!(!tiered.is_cached_locally(b"k"));
    assert_eq!(tiered.get(b"k").await.unwrap(), None);
}

#[tokio::test]
async fn jitter_spreads_lifetimes_below_local_ttl() {
    let config = TieredConfig {
        local_ttl: secs(10),
        ttl_jitter: 0.5,
        ..TieredConfig::default()
    };
    let (tiered, l2, clock) = setup(config);
    let keys: Vec<Vec<u8>> = (0..64).map(|i| format!("j{i}").into_bytes()).collect();
    for k in &keys {
        l2.set(k, b"v", SetOptions::default()).await.unwrap();
        tiered.get(k).await.unwrap();
    }
    let live =
        |t: &TieredCache<MemoryCache>| keys.iter().filter(|k| t.is_cached_locally(k)).count();
    clock.advance(Duration::from_millis(4_999));
    assert_eq!(
        live(&tiered),
        64,
        "no lifetime is below local_ttl * (1 - jitter)"
    );
    clock.advance(secs(3));
    let mid = live(&tiered);
    assert!(
        mid > 0 && mid < 64,
        "lifetimes are spread: {mid} of 64 live at 8 s"
    );
    clock.advance(Duration::from_millis(2_002));
    assert_eq!(live(&tiered), 0, "no lifetime exceeds local_ttl");
}

#[tokio::test]
async fn own_writes_invalidate_at_once() {
    let (tiered, _l2, _clock) = setup(TieredConfig::default());
    tiered.set(b"k", b"1", SetOptions::default()).await.unwrap();
    assert_eq!(tiered.get(b"k").await.unwrap().as_deref(), Some(&b"1"[..]));
    tiered.set(b"k", b"2", SetOptions::default()).await.unwrap();
    assert_eq!(tiered.get(b"k").await.unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(tiered.incr(b"n", 5).await.unwrap(), 5);
    assert_eq!(tiered.get(b"n").await.unwrap().as_deref(), Some(&b"5"[..]));
    assert_eq!(tiered.incr(b"n", 1).await.unwrap(), 6);
    assert_eq!(tiered.get(b"n").await.unwrap().as_deref(), Some(&b"6"[..]));
    tiered.mset(&[(b"k", b"3")], None).await.unwrap();
    assert_eq!(tiered.get(b"k").await.unwrap().as_deref(), Some(&b"3"[..]));
    assert!(tiered.delete(b"k").await.unwrap());
    assert_eq!(tiered.get(b"k").await.unwrap(), None);
    assert!(tiered.stats().l1.invalidations >= 5);
}

#[tokio::test]
async fn negative_caching_is_opt_in_and_bounded() {
    let (plain, l2, _clock) = setup(TieredConfig::default());
    assert_eq!(plain.get(b"absent").await.unwrap(), None);
    assert!(!plain.is_cached_locally(b"absent"));
    l2.set(b"absent", b"now", SetOptions::default())
        .await
        .unwrap();
    assert!(plain.get(b"absent").await.unwrap().is_some());

    let config = TieredConfig {
        negative_ttl: Some(secs(1)),
        ttl_jitter: 0.0,
        ..TieredConfig::default()
    };
    let (tiered, l2, clock) = setup(config);
    assert_eq!(tiered.get(b"absent").await.unwrap(), None);
    assert!(tiered.is_cached_locally(b"absent"));
    l2.set(b"absent", b"now", SetOptions::default())
        .await
        .unwrap();
    assert_eq!(tiered.get(b"absent").await.unwrap(), None, "cached miss");
    clock.advance(Duration::from_millis(1_001));
    assert!(tiered.get(b"absent").await.unwrap().is_some());
    // A write through this instance drops a cached miss at once.
    assert_eq!(tiered.get(b"other").await.unwrap(), None);
    tiered
        .set(b"other", b"x", SetOptions::default())
        .await
        .unwrap();
    assert!(tiered.get(b"other").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_misses_cause_one_load() {
    let (tiered, l2, _clock) = setup(TieredConfig::default());
    let loads = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (t, loads, barrier) = (tiered.clone(), loads.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                t.get_or_load(b"hot", Some(secs(60)), || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Some(b"value".to_vec()))
                })
                .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().as_deref(), Some(&b"value"[..]));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let st = tiered.stats();
    assert_eq!(st.origin.loads, 1);
    assert_eq!(st.l2.misses, 1, "one L2 read for 100 callers");
    assert!(st.origin.coalesced >= 1);
    assert_eq!(
        l2.get(b"hot").await.unwrap().as_deref(),
        Some(&b"value"[..])
    );
    assert!(matches!(l2.ttl(b"hot").await.unwrap(), Ttl::ExpiresIn(_)));
}

#[tokio::test]
async fn loader_errors_reach_every_waiter_and_are_not_cached() {
    let (tiered, _l2, _clock) = setup(TieredConfig::default());
    let err = tiered
        .get_or_load(b"k", None, || async {
            Err(CacheError::invalid("origin", "down"))
        })
        .await
        .unwrap_err();
    assert_eq!(err.label(), "invalid_argument");
    let ok = tiered
        .get_or_load(b"k", None, || async { Ok(Some(b"v".to_vec())) })
        .await
        .unwrap();
    assert_eq!(ok.as_deref(), Some(&b"v"[..]));
    let st = tiered.stats().origin;
    assert_eq!((st.loads, st.errors), (2, 1));
}

#[tokio::test]
async fn a_fill_raced_by_an_invalidation_is_dropped() {
    let (tiered, _l2, _clock) = setup(TieredConfig::default());
    let t = tiered.clone();
    let v = tiered
        .get_or_load(b"k", None, || async move {
            // An invalidation arrives while the value is being loaded.
            t.invalidate_local(b"k");
            Ok(Some(b"maybe-stale".to_vec()))
        })
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some(&b"maybe-stale"[..]));
    assert!(!tiered.is_cached_locally(b"k"));
    assert_eq!(tiered.stats().l1.fills_dropped, 1);
    // A flush voids fills in flight the same way.
    let t = tiered.clone();
    tiered
        .get_or_load(b"k2", None, || async move {
            t.flush_local();
            Ok(Some(b"x".to_vec()))
        })
        .await
        .unwrap();
    assert!(!tiered.is_cached_locally(b"k2"));
}

#[tokio::test]
async fn xfetch_refreshes_before_expiry() {
    let config = TieredConfig {
        early_refresh_beta: Some(1e6),
        ..TieredConfig::default()
    };
    let (tiered, _l2, clock) = setup(config);
    let c = clock.clone();
    tiered
        .get_or_load(b"k", Some(secs(60)), || async move {
            c.advance(Duration::from_millis(100)); // a slow load: δ = 100 ms
            Ok(Some(b"v".to_vec()))
        })
        .await
        .unwrap();
    assert!(tiered.is_cached_locally(b"k"));
    // With a huge β every read is "close to expiry" and refreshes from L2.
    let got = tiered
        .get_or_load(b"k", Some(secs(60)), || async {
            panic!("L2 has the value")
        })
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some(&b"v"[..]));
    let st = tiered.stats();
    assert_eq!(st.l1.early_refreshes, 1);
    assert_eq!(st.l2.hits, 1);
    assert_eq!(st.origin.loads, 1);
}

#[tokio::test]
async fn prefixes_and_size_limit_decide_what_l1_keeps() {
    let config = TieredConfig {
        prefixes: vec![b"app:".to_vec()],
        max_value_bytes: 8,
        ..TieredConfig::default()
    };
    let (tiered, l2, _clock) = setup(config);
    l2.mset(
        &[
            (&b"app:a"[..], &b"small"[..]),
            (b"other", b"small"),
            (b"app:big", b"0123456789"),
        ],
        None,
    )
    .await
    .unwrap();
    for k in [&b"app:a"[..], b"other", b"app:big"] {
        assert!(tiered.get(k).await.unwrap().is_some());
    }
    assert!(tiered.is_cached_locally(b"app:a"));
    assert!(!tiered.is_cached_locally(b"other"));
    assert!(!tiered.is_cached_locally(b"app:big"));
    assert_eq!(tiered.stats().l1.bypassed, 1);
}

#[tokio::test]
async fn mget_mixes_l1_hits_and_l2_reads_in_order() {
    let config = TieredConfig {
        clamp_to_l2_ttl: false,
        ..TieredConfig::default()
    };
    let (tiered, l2, _clock) = setup(config);
    l2.mset(&[(&b"a"[..], &b"1"[..]), (b"b", b"2")], None)
        .await
        .unwrap();
    tiered.get(b"a").await.unwrap();
    let got = tiered.mget(&[&b"b"[..], b"missing", b"a"]).await.unwrap();
    let got: Vec<_> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(got, vec![Some(b"2".to_vec()), None, Some(b"1".to_vec())]);
    assert!(
        tiered.is_cached_locally(b"b"),
        "mget fills L1 without clamping"
    );
    let empty: [&[u8]; 0] = [];
    assert!(matches!(
        tiered.mget(&empty).await,
        Err(CacheError::EmptyKeys { op: "mget" })
    ));
}

#[tokio::test]
async fn l1_is_bounded_by_entries_and_weight() {
    let config = TieredConfig {
        max_entries: 10,
        max_weight_bytes: 10 * 1024,
        ..TieredConfig::default()
    };
    let (tiered, l2, _clock) = setup(config);
    for i in 0..200 {
        let k = format!("k{i}");
        l2.set(k.as_bytes(), b"v", SetOptions::default())
            .await
            .unwrap();
        tiered.get(k.as_bytes()).await.unwrap();
    }
    tiered.shared.l1.run_pending_tasks();
    let st = tiered.stats();
    assert!(st.l1.entries <= 10, "{} entries", st.l1.entries);
    assert!(st.l1.weight_bytes <= 10 * 1024);
}

#[test]
fn stats_serialize_and_config_is_validated() {
    let json = serde_json::to_value(TieredStats::default()).unwrap();
    assert_eq!(json["l1"]["hits"], 0);
    assert_eq!(json["origin"]["loads"], 0);
    let bad = [
        TieredConfig {
            max_entries: 0,
            ..TieredConfig::default()
        },
        TieredConfig {
            ttl_jitter: 1.0,
            ..TieredConfig::default()
        },
        TieredConfig {
            ttl_jitter: f64::NAN,
            ..TieredConfig::default()
        },
        TieredConfig {
            negative_ttl: Some(secs(60)),
            ..TieredConfig::default()
        },
        TieredConfig {
            early_refresh_beta: Some(f64::INFINITY),
            ..TieredConfig::default()
        },
        TieredConfig {
            prefixes: vec![Vec::new()],
            ..TieredConfig::default()
        },
        TieredConfig {
            local_ttl: Duration::ZERO,
            ..TieredConfig::default()
        },
    ];
    for c in bad {
        match TieredCache::new(MemoryCache::new(), c) {
            Err(CacheError::InvalidArgument { field, .. }) => assert!(field.starts_with("tiered.")),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_cancelled_load_leaves_no_flight_behind() {
    let (tiered, _l2, _clock) = setup(TieredConfig::default());
    let t = tiered.clone();
    let stuck = tokio::spawn(async move { t.get_or_load(b"k", None, std::future::pending).await });
    tokio::task::yield_now().await;
    while tiered.stats().origin.loads == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(tiered.shared.flights.lock().unwrap().len(), 1);
    stuck.abort();
    assert!(stuck.await.unwrap_err().is_cancelled());
    assert!(tiered.shared.flights.lock().unwrap().is_empty());
    let v = tiered
        .get_or_load(b"k", None, || async { Ok(Some(b"v".to_vec())) })
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some(&b"v"[..]));
    assert_eq!(tiered.stats().origin.loads, 2);
    assert!(tiered.shared.flights.lock().unwrap().is_empty());
}

#[tokio::test]
async fn mget_fills_l1_within_the_l2_ttl() {
    let (tiered, l2, clock) = setup(TieredConfig::default());
    l2.set(b"short", b"1", SetOptions::ttl(secs(2)))
        .await
        .unwrap();
    l2.set(b"long", b"2", SetOptions::default()).await.unwrap();
    let got = tiered
        .mget(&[&b"short"[..], b"long", b"none"])
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    assert!(tiered.is_cached_locally(b"short") && tiered.is_cached_locally(b"long"));
    assert!(
        !tiered.is_cached_locally(b"none"),
        "misses are not cached by default"
    );
    clock.advance(Duration::from_millis(2_001));
    assert!(!tiered.is_cached_locally(b"short"), "L1 never outlives L2");
    assert!(tiered.is_cached_locally(b"long"));
    // Only the first MGET_FILL_LIMIT found keys are kept.
    let keys: Vec<Vec<u8>> = (0..100).map(|i| format!("many{i}").into_bytes()).collect();
    let entries: Vec<(Vec<u8>, &[u8])> = keys.iter().map(|k| (k.clone(), &b"v"[..])).collect();
    l2.mset(&entries, None).await.unwrap();
    tiered.mget(&keys).await.unwrap();
    let kept = keys.iter().filter(|k| tiered.is_cached_locally(k)).count();
    assert_eq!(kept, MGET_FILL_LIMIT);
}
