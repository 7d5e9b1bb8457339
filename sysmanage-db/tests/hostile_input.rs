//! Every public entry point of sysmanage-db that takes numbers, durations
//! or strings, driven with arbitrary values (NaN, ±inf, integer extremes,
//! empty and huge inputs), in the debug profile: no panic, and every result
//! is a typed error or within its documented bounds.

use std::time::Duration;

use proptest::prelude::*;
use sysmanage_db::Error;
use sysmanage_db::replica::{
    Consistency, Lsn, MemoryCluster, NodeSpec, PrimaryTimeline, ReplicaConfig, ReplicaPosition,
    ReplicaRouter, Strategy as Balance, TimelineHistory, WalToken, history_relation,
    token_on_history,
};
use sysmanage_db::shard::{JumpHash, PgHash, Rendezvous, ShardFunction, ShardKey};

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(f64::MIN_POSITIVE / 2.0),
        Just(f64::MAX),
        any::<f64>(),
        0.0..10.0f64,
    ]
}

/// Mostly plausible durations, so that whole configs pass validation
/// often enough to exercise the router; the extremes in between.
fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        1 => Just(Duration::ZERO),
        1 => Just(Duration::MAX),
        1 => (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        12 => (1u64..5_000).prop_map(Duration::from_millis),
    ]
}

/// Mostly small counts, sometimes the extremes.
fn any_count() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 1u32..8, 1 => Just(0), 1 => Just(u32::MAX)]
}

static ROUTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[test]
fn the_router_property_routes_for_many_accepted_configs() {
    // Runs the property itself, then checks it was not vacuous.
    any_accepted_replica_config_routes_without_panicking();
    assert!(
        ROUTED.load(std::sync::atomic::Ordering::Relaxed) >= 20,
        "too few generated configs passed validation"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn wal_text_parses_or_is_a_typed_error(text in ".{0,48}") {
        match text.parse::<Lsn>() {
            Ok(lsn) => prop_assert_eq!(lsn.to_string().parse::<Lsn>().unwrap(), lsn),
            Err(e) => prop_assert!(matches!(e, Error::InvalidWalPosition { .. }), "{e}"),
        }
        match text.parse::<WalToken>() {
            Ok(t) => prop_assert_eq!(t.to_string().parse::<WalToken>().unwrap(), t),
            Err(e) => prop_assert!(matches!(e, Error::InvalidWalToken { .. }), "{e}"),
        }
    }

    #[test]
    fn timeline_histories_parse_or_refuse(tli in 1u32.., text in "[0-9A-F/\\t #\\n]{0,80}", lsn in any::<u64>()) {
        let tli = std::num::NonZeroU32::new(tli).unwrap();
        if let Ok(h) = TimelineHistory::parse(tli, &text) {
            let at = h.timeline_at(Lsn::new(lsn));
            prop_assert!(at <= tli);
            let primary = PrimaryTimeline::History(std::sync::Arc::new(h));
            let _ = history_relation(&primary, ReplicaPosition {
                timeline: Some(at), exact: true, replay: Some(Lsn::new(lsn)),
            });
            let _ = token_on_history(&primary, WalToken::new(Lsn::new(lsn), at));
        }
    }

    #[test]
    fn any_accepted_replica_config_routes_without_panicking(
        interval in any_duration(),
        probe_timeout in any_duration(),
        jitter in any_duration(),
        wait in any_duration(),
        budget in any_duration(),
        ewma in any_duration(),
        ratio in prop_oneof![4 => 0.01..1.0f64, 1 => any_f64()],
        probes in any_count(),
        errors in any_count(),
        min_serving in any::<usize>(),
        max_lag_bytes in proptest::option::of(any::<u64>()),
        weight in any_f64(),
        token_wait in any_duration(),
        bound in any_duration(),
        balance in prop_oneof![
            Just(Balance::PowerOfTwoChoices), Just(Balance::LeastOutstanding),
            Just(Balance::WeightedRandom), Just(Balance::RoundRobin),
        ],
    ) {
        let mut c = ReplicaConfig::default();
        c.monitor_interval = interval;
        c.probe_timeout = probe_timeout;
        c.monitor_jitter = jitter;
        c.max_token_wait = wait;
        c.read_retry_budget = budget.min(Duration::from_millis(50));
        c.ewma_decay = ewma;
        c.lag_recovery_ratio = ratio;
        c.primary_failure_probes = probes;
        c.max_consecutive_errors = errors;
        c.min_serving_replicas = min_serving;
        c.max_lag_bytes = max_lag_bytes;
        c.strategy = balance;
        c.seed = Some(1);
        if c.validate().is_err() {
            return Ok(());
        }
        ROUTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        runtime().block_on(async {
            let cluster = MemoryCluster::new();
            let primary = cluster.add_primary();
            let r = ReplicaRouter::builder()
                .config(c)
                .monitor(false)
                .primary(NodeSpec::new("p", primary))
                .replica(NodeSpec::new("r", cluster.add_replica()).weight(weight))
                .build()
                .await;
            let Ok(router) = r else { return };
            let ((), token) = router
                .write_with_token(|db| async move { db.write("k", "v").map(drop) })
                .await
                .unwrap();
            cluster.replicate();
            router.probe_all().await;
            for consistency in [
                Consistency::Any,
                Consistency::bounded_time(bound),
                Consistency::bounded_bytes(u64::MAX),
                Consistency::at_least(token).with_wait(token_wait.min(Duration::from_millis(5))),
                Consistency::Primary,
            ] {
                let v = router.read(consistency, |db| async move { db.get("k") }).await.unwrap();
                assert_eq!(v.as_deref(), Some("v"));
            }
            let _ = router.set_weight("r", weight);
            let _ = serde_json::to_string(&router.status()).unwrap();
        });
    }

    #[test]
    fn shard_functions_place_every_key_or_refuse(
        count in any::<u32>(),
        key in prop_oneof![
            any::<i64>().prop_map(|i| (0, i, String::new(), Vec::new())),
            ".{0,40}".prop_map(|s| (1, 0, s, Vec::new())),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| (2, 0, String::new(), b)),
        ],
        weights in proptest::collection::vec(any_f64(), 0..8),
    ) {
        let (kind, i, s, b) = key;
        let key = match kind {
            0 => ShardKey::Int(i),
            1 => ShardKey::Text(&s),
            _ => ShardKey::Bytes(&b),
        };
        let functions: Vec<Box<dyn ShardFunction>> = [
            PgHash::new(count).map(|f| Box::new(f) as Box<dyn ShardFunction>),
            JumpHash::new(count).map(|f| Box::new(f) as Box<dyn ShardFunction>),
            Rendezvous::new(count.min(1 << 12)).map(|f| Box::new(f) as Box<dyn ShardFunction>),
            Rendezvous::weighted(&weights).map(|f| Box::new(f) as Box<dyn ShardFunction>),
        ]
        .into_iter()
        .filter_map(Result::ok)
        .collect();
        for f in functions {
            match f.shard_for(&key) {
                Ok(shard) => prop_assert!(shard.0 < f.shard_count()),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}

/// The cases the hostile-input review found, each a typed error now.
#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use sysmanage_db::replica::{PgNodeOptions, pg_node};

    #[test]
    fn an_unbounded_acquire_timeout_is_refused_before_it_can_overflow() {
        let mut o = PgNodeOptions::default();
        o.acquire_timeout = Duration::MAX;
        match o.pool_options() {
            Err(Error::InvalidConfig { field, reason }) => {
                assert_eq!(field, "acquire_timeout");
                assert!(reason.contains("between 1ms and 1d"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_url_of_another_database_is_refused() {
        runtime().block_on(async {
            for url in [
                "mysql://root:hunter2@127.0.0.1:3306/app",
                "redis://127.0.0.1:6379",
                "127.0.0.1:5432",
                "",
            ] {
                match pg_node("n", url, &PgNodeOptions::default()) {
                    Err(Error::InvalidConfig {
                        field: "url",
                        reason,
                    }) => {
                        assert!(!reason.contains("hunter2"), "{reason}");
                    }
                    other => panic!("{url}: {other:?}"),
                }
            }
            assert!(pg_node("n", "postgresql://u:p@h/db", &PgNodeOptions::default()).is_ok());
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn pool_options_build_or_refuse(
            max in any::<u32>(), min in any::<u32>(),
            acquire in any_duration(), idle in proptest::option::of(any_duration()),
        ) {
            let mut o = PgNodeOptions::default();
            o.max_connections = max;
            o.min_connections = min;
            o.acquire_timeout = acquire;
            o.idle_timeout = idle;
            let _ = o.pool_options();
        }

        #[test]
        fn any_url_text_is_a_node_or_a_typed_error_without_the_password(rest in ".{0,60}") {
            runtime().block_on(async {
                let url = format!("postgres://app:hunter2@{rest}");
                if let Err(e) = pg_node("n", url.as_str(), &PgNodeOptions::default()) {
                    assert!(!e.to_string().contains("hunter2"), "{e}");
                }
            });
        }
    }
}
