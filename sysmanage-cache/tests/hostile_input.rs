//! Every public entry point of sysmanage-cache that takes numbers,
//! durations, bytes or strings, driven with arbitrary values in the debug
//! profile: no panic, and every result is a typed error or within its
//! documented bounds.

use std::time::Duration;

use proptest::prelude::*;
use sysmanage_cache::advisor::{AdvisorConfig, AdvisorState, advise};
use sysmanage_cache::session::{SessionConfig, SessionId, SessionStore};
use sysmanage_cache::stats::{ClusterInfo, ClusterNode, ClusterStats, NodeReport, NodeStats};
use sysmanage_cache::{
    ClusterCache, Limits, MemoryCache, SetOptions, TieredCache, TieredConfig, slot,
};
use sysmanage_core::Timestamp;

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        1 => Just(Duration::ZERO),
        1 => Just(Duration::MAX),
        1 => Just(Duration::from_nanos(1)),
        1 => (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        8 => (1u64..100_000).prop_map(Duration::from_millis),
    ]
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(0.0),
        1 => Just(-0.0),
        1 => Just(f64::MIN_POSITIVE / 2.0),
        1 => any::<f64>(),
        4 => 0.0..1.0f64,
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The review's case: a `local_ttl` of `Duration::MAX` panicked at the
/// first `get` ("overflow when adding duration to instant"). It is refused
/// now, naming the field and its range.
#[test]
fn an_unbounded_local_ttl_is_refused() {
    let mut c = TieredConfig::default();
    c.local_ttl = Duration::MAX;
    let err = TieredCache::new(MemoryCache::new(), c)
        .map(drop)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tiered.local_ttl") && err.contains("between 1ms and 1d"),
        "{err}"
    );
}

/// The review's case: `refresh_interval = Duration::MAX` made the
/// background refresher panic. It is refused now.
#[cfg(feature = "redis")]
#[test]
fn an_unbounded_refresh_interval_is_refused() {
    for set in [
        (|c: &mut sysmanage_cache::RedisConfig| c.refresh_interval = Duration::MAX)
            as fn(&mut sysmanage_cache::RedisConfig),
        |c| c.command_timeout = Duration::MAX,
        |c| c.retry_budget = Duration::MAX,
        |c| c.event_capacity = usize::MAX,
    ] {
        let mut c = sysmanage_cache::RedisConfig::new(["127.0.0.1:7000"]);
        set(&mut c);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("must be between"), "{err}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn slots_are_in_range(key in proptest::collection::vec(any::<u8>(), 0..300)) {
        prop_assert!(slot(&key) < 16_384);
    }

    #[test]
    fn session_ids_parse_or_refuse(text in ".{0,80}") {
        if let Ok(id) = SessionId::parse(&text) {
            let again = SessionId::parse(id.expose()).unwrap();
            prop_assert_eq!(again.expose(), id.expose());
        }
    }

    #[test]
    fn memory_cache_takes_any_ttl_and_increment(
        ttl in any_duration(),
        by in any::<i64>(),
        start in any::<i64>(),
        value in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        runtime().block_on(async {
            let cache = MemoryCache::new();
            let _ = cache.set(b"k", &value, SetOptions::ttl(ttl)).await;
            let _ = cache.expire(b"k", ttl).await;
            let _ = cache.ttl(b"k").await.unwrap();
            cache.set(b"n", start.to_string().as_bytes(), SetOptions::default()).await.unwrap();
            match cache.incr(b"n", by).await {
                Ok(v) => assert_eq!(Some(v), start.checked_add(by)),
                Err(e) => assert!(start.checked_add(by).is_none(), "{e}"),
            }
        });
    }

    #[test]
    fn tiered_config_validates_and_any_accepted_one_serves(
        local_ttl in any_duration(),
        negative in proptest::option::of(any_duration()),
        jitter in any_f64(),
        beta in proptest::option::of(any_f64()),
        entries in any::<u64>(),
        weight in any::<u64>(),
        max_value in any::<usize>(),
        ttl in any_duration(),
    ) {
        let mut c = TieredConfig::default();
        c.local_ttl = local_ttl;
        c.negative_ttl = negative;
        c.ttl_jitter = jitter;
        c.early_refresh_beta = beta;
        c.max_entries = entries.min(1 << 20);
        c.max_weight_bytes = weight.min(1 << 30);
        c.max_value_bytes = max_value;
        if c.validate().is_err() {
            return Ok(());
        }
        runtime().block_on(async {
            let Ok(cache) = TieredCache::new(MemoryCache::new(), c) else { return };
            let _ = cache.set(b"k", b"v", SetOptions::ttl(ttl)).await;
            for _ in 0..3 {
                let _ = cache.get(b"k").await.unwrap();
                let _ = cache.get(b"missing").await.unwrap();
            }
            let _ = cache.mget(&[b"k".as_slice(), b"missing"]).await.unwrap();
        });
    }

    #[test]
    fn limits_validate(v in any::<usize>(), k in any::<usize>(), n in any::<usize>(), s in any::<usize>()) {
        let mut l = Limits::default();
        l.max_value_bytes = v;
        l.max_key_bytes = k;
        l.max_keys_per_call = n;
        l.max_scan_results = s;
        let _ = l.validate();
    }

    #[test]
    fn sessions_take_any_accepted_lifetime(ttl in any_duration(), life in any_duration(), per_user in any::<usize>(), attempts in any::<u32>()) {
        let mut c = SessionConfig::default();
        c.ttl = ttl;
        c.max_lifetime = life;
        c.max_sessions_per_user = per_user;
        c.create_attempts = attempts;
        runtime().block_on(async {
            let Ok(store) = SessionStore::new(MemoryCache::new(), c) else { return };
            let id = store.create("user-1", &serde_json::json!({"a": 1})).await.unwrap();
            let _ = store.get::<serde_json::Value>(&id.id).await.unwrap();
            let _ = store.revoke_all("user-1").await.unwrap();
        });
    }

    #[test]
    fn stats_parsers_take_any_text(text in ".{0,200}") {
        let _ = NodeStats::parse_info("n:1", &text);
        let _ = ClusterInfo::parse(&text);
        let _ = ClusterNode::parse_nodes(&text);
    }

    #[test]
    fn the_advisor_takes_any_numbers(
        used in any::<u64>(), max in any::<u64>(), ops in any::<u64>(), keys in any::<u64>(),
        high in any_f64(), target in any_f64(), low in any_f64(),
        primaries in 0usize..5,
        elapsed_ms in any::<i64>(),
    ) {
        let info = format!(
            "used_memory:{used}\\r\\nmaxmemory:{max}\\r\\ninstantaneous_ops_per_sec:{ops}\\r\\n\
             connected_clients:1\\r\\nrole:master\\r\\ndb0:keys={keys},expires=0,avg_ttl=0\\r\\n"
        );
        let mut nodes = Vec::new();
        for i in 0..primaries {
            let line = format!("n{i} 127.0.0.1:{}@1 master - 0 0 1 connected {}-{}", 7000 + i, i * 100, i * 100 + 99);
            let node = ClusterNode::parse_nodes(&line).unwrap().remove(0);
            let stats = NodeStats::parse_info(&node.addr, &info);
            nodes.push(NodeReport::from_result(&node, stats));
        }
        let stats = ClusterStats::new(nodes, None, Timestamp::from_millis(0));
        let mut config = AdvisorConfig::default();
        config.memory_high = high;
        config.memory_target = target;
        config.memory_low = low;
        if config.validate().is_err() {
            config = AdvisorConfig::default();
        }
        let (rec, state) = advise(&config, &stats, &AdvisorState::default(), Timestamp::from_millis(elapsed_ms));
        let _ = advise(&config, &stats, &state, Timestamp::from_millis(elapsed_ms.saturating_add(1)));
        let _ = serde_json::to_string(&rec).unwrap();
    }
}
