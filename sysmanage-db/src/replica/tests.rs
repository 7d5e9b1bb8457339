//! Router tests over the in-memory backend, with a manual clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sysmanage_core::{Backoff, Jitter, ManualClock, Timestamp};

use super::*;
use crate::Error;

struct Fixture {
    cluster: MemoryCluster,
    clock: ManualClock,
    primary: MemoryNode,
    replicas: Vec<MemoryNode>,
}

fn config() -> ReplicaConfig {
    ReplicaConfig {
        seed: Some(7),
        ban_backoff: Backoff::builder()
            .initial(Duration::from_secs(1))
            .max(Duration::from_secs(8))
            .jitter(Jitter::None)
            .build()
            .unwrap(),
        ..ReplicaConfig::default()
    }
}

async fn router_with(
    n: usize,
    config: ReplicaConfig,
    spec: impl Fn(usize, NodeSpec<MemoryNode>) -> NodeSpec<MemoryNode>,
) -> (Fixture, ReplicaRouter<MemoryNode>) {
    let cluster = MemoryCluster::new();
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let primary = cluster.add_primary();
    let replicas: Vec<_> = (0..n).map(|_| cluster.add_replica()).collect();
    let mut b = ReplicaRouter::builder()
        .config(config)
        .clock(Arc::new(clock.clone()))
        .monitor(false)
        .primary(NodeSpec::new("primary", primary.clone()));
    for (i, r) in replicas.iter().enumerate() {
        b = b.replica(spec(i, NodeSpec::new(format!("r{i}"), r.clone())));
    }
    let router = b.build().await.unwrap();
    (
        Fixture {
            cluster,
            clock,
            primary,
            replicas,
        },
        router,
    )
}

async fn router(n: usize) -> (Fixture, ReplicaRouter<MemoryNode>) {
    router_with(n, config(), |_, s| s).await
}

/// Reads `n` times and counts which node served (by the node id the closure saw).
async fn spread(
    router: &ReplicaRouter<MemoryNode>,
    c: Consistency,
    n: usize,
) -> HashMap<usize, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let id = router
            .read(c, |node| async move { Ok::<_, MemoryError>(node.id()) })
            .await
            .unwrap();
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

#[tokio::test]
async fn reads_spread_over_replicas_and_writes_hit_the_primary() {
    let (fx, router) = router(2).await;
    let seen = spread(&router, Consistency::Any, 1000).await;
    assert_eq!(seen.get(&0), None, "the primary served reads: {seen:?}");
    for id in [1, 2] {
        assert!((400..=600).contains(&seen[&id]), "{seen:?}");
    }
    let id = router
        .write(|node| async move { node.write("k", "v").map(|_| node.id()) })
        .await
        .unwrap();
    assert_eq!(id, fx.primary.id());
    let s = router.status();
    assert_eq!((s.reads, s.writes, s.fallbacks), (1000, 1, 0));
}

#[tokio::test]
async fn weight_zero_drains_and_reweighting_applies_at_runtime() {
    let mut c = config();
    c.strategy = Strategy::WeightedRandom;
    let (_fx, router) = router_with(2, c, |i, s| s.weight(if i == 0 { 0.0 } else { 1.0 })).await;
    let seen = spread(&router, Consistency::Any, 300).await;
    assert_eq!(seen.get(&1), None, "drained node served: {seen:?}");
    router.set_weight("r0", 3.0).unwrap();
    let seen = spread(&router, Consistency::Any, 4000).await;
    let share = seen[&1] as f64 / 4000.0;
    assert!((share - 0.75).abs() < 0.03, "{seen:?}");
    router.set_weight("r0", 0.0).unwrap();
    router.set_weight("r1", 0.0).unwrap();
    // Everything drained: the primary serves, counted as fallbacks.
    let seen = spread(&router, Consistency::Any, 10).await;
    assert_eq!(seen[&0], 10);
    assert_eq!(router.status().fallbacks, 10);
    assert!(matches!(
        router.set_weight("r0", -1.0),
        Err(Error::InvalidConfig {
            field: "weight",
            ..
        })
    ));
    assert!(matches!(
        router.set_weight("nope", 1.0),
        Err(Error::UnknownNode(_))
    ));
}

#[tokio::test]
async fn every_strategy_drains_weight_zero() {
    for strategy in [
        Strategy::PowerOfTwoChoices,
        Strategy::LeastOutstanding,
        Strategy::WeightedRandom,
        Strategy::RoundRobin,
    ] {
        let mut c = config();
        c.strategy = strategy;
        let (_fx, router) =
            router_with(3, c, |i, s| s.weight(if i == 1 { 0.0 } else { 1.0 })).await;
        let seen = spread(&router, Consistency::Any, 600).await;
        assert_eq!(seen.get(&2), None, "{strategy:?}: {seen:?}");
        assert!(seen[&1] > 150 && seen[&3] > 150, "{strategy:?}: {seen:?}");
    }
}

#[tokio::test]
async fn probe_failure_bans_with_backoff_and_only_a_probe_readmits() {
    let (fx, router) = router(2).await;
    let r0 = &fx.replicas[0];
    r0.set_up(false);
    router.probe_all().await;
    let s = router.status();
    let NodeState::Banned { reason, until } = s.node("r0").unwrap().state else {
        panic!("not banned: {s:?}")
    };
    assert_eq!(reason, BanReason::ProbeFailed);
    assert_eq!(until, Timestamp::from_secs(1_700_000_001)); // 1 s backoff
    assert_eq!(spread(&router, Consistency::Any, 50).await.get(&1), None);

    // Back up, but the ban has not expired: still banned.
    r0.set_up(true);
    fx.clock.advance(Duration::from_millis(500));
    router.probe_all().await;
    assert!(matches!(
        router.status().node("r0").unwrap().state,
        NodeState::Banned { .. }
    ));
    // Expired, but time alone does not re-admit …
    fx.clock.advance(Duration::from_millis(600));
    assert_eq!(spread(&router, Consistency::Any, 50).await.get(&1), None);
    // … a successful probe does.
    router.probe_all().await;
    assert_eq!(
        router.status().node("r0").unwrap().state,
        NodeState::Healthy
    );
    assert!(spread(&router, Consistency::Any, 100).await[&1] > 20);

    // A second failure in a row doubles the backoff.
    r0.set_up(false);
    router.probe_all().await;
    let NodeState::Banned { until, .. } = router.status().node("r0").unwrap().state else {
        panic!()
    };
    assert_eq!(until, Timestamp::from_millis(1_700_000_001_100 + 2_000));
}

#[tokio::test]
async fn a_replica_dying_under_load_costs_no_failed_read() {
    let (fx, router) = router(2).await;
    fx.replicas[0].set_up(false); // the router does not know yet
    for _ in 0..200 {
        let id = router
            .read(Consistency::Any, |node| async move {
                node.get("k").map(|_| node.id())
            })
            .await
            .unwrap();
        assert_eq!(id, fx.replicas[1].id());
    }
    let s = router.status();
    assert!(s.retries >= 1, "{s:?}");
    let r0 = s.node("r0").unwrap();
    assert!(matches!(
        r0.state,
        NodeState::Banned {
            reason: BanReason::ConnectionError,
            ..
        }
    ));
    assert_eq!(r0.connection_errors, 1);
    // Both replicas down: the retry goes to the primary via fallback.
    fx.replicas[1].set_up(false);
    let id = router
        .read(Consistency::Any, |node| async move {
            node.get("k").map(|_| node.id())
        })
        .await
        .unwrap();
    assert_eq!(id, fx.primary.id());
}

#[tokio::test]
async fn sql_errors_are_not_retried_but_repeated_ones_ban() {
    #[derive(Debug, thiserror::Error)]
    #[error("syntax error")]
    struct Syntax;
    let mut c = config();
    c.max_consecutive_errors = 3;
    c.strategy = Strategy::RoundRobin;
    let (_fx, router) = router_with(1, c, |_, s| s).await;
    for k in 0..3 {
        let err = router
            .read(Consistency::Any, |_| async { Err::<(), _>(Syntax) })
            .await
            .unwrap_err();
        // The closure's own error type comes back, no downcast needed.
        let QueryFailure::Query {
            node,
            connection,
            source: Syntax,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!((node.as_str(), *connection), ("r0", false));
        assert_eq!(router.status().retries, 0, "attempt {k}");
    }
    assert!(matches!(
        router.status().node("r0").unwrap().state,
        NodeState::Banned {
            reason: BanReason::QueryErrors,
            ..
        }
    ));
}

#[tokio::test]
async fn at_least_token_reads_skip_replicas_behind_the_token() {
    let (fx, router) = router(2).await;
    fx.replicas[1].pause_replay();
    let ((), token) = router
        .write_with_token(|db| async move { db.write("k", "1").map(drop) })
        .await
        .unwrap();
    // Nobody has replayed it: the primary serves (fallback) and sees the write.
    let v = router
        .read(
            Consistency::at_least(token),
            |db| async move { db.get("k") },
        )
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("1"));
    assert_eq!(router.status().fallbacks, 1);
    fx.cluster.replicate();
    router.probe_all().await;
    for _ in 0..100 {
        let (id, v) = router
            .read(Consistency::at_least(token), |db| async move {
                db.get("k").map(|v| (db.id(), v))
            })
            .await
            .unwrap();
        assert_eq!((id, v.as_deref()), (fx.replicas[0].id(), Some("1")));
    }
    // Judged per replica: the paused one still lags but serves `Any` reads.
    assert!(
        spread(&router, Consistency::Any, 200)
            .await
            .contains_key(&fx.replicas[1].id())
    );
}

#[tokio::test]
async fn at_least_token_reads_wait_for_a_replica_to_catch_up() {
    let (fx, router) = router(1).await;
    let ((), token) = router
        .write_with_token(|db| async move { db.write("k", "1").map(drop) })
        .await
        .unwrap();
    let cluster = fx.cluster.clone();
    let catch_up = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        cluster.replicate();
    });
    let c = Consistency::at_least(token).with_wait(Duration::from_secs(5));
    let id = router
        .read(c, |db| async move { Ok::<_, MemoryError>(db.id()) })
        .await
        .unwrap();
    assert_eq!(id, fx.replicas[0].id());
    assert_eq!(router.status().fallbacks, 0);
    catch_up.await.unwrap();
    // A wait that expires falls back to the primary.
    fx.replicas[0].pause_replay();
    let ((), token) = router
        .write_with_token(|db| async move { db.write("k", "2").map(drop) })
        .await
        .unwrap();
    let c = Consistency::at_least(token).with_wait(Duration::from_millis(10));
    let id = router
        .read(c, |db| async move { Ok::<_, MemoryError>(db.id()) })
        .await
        .unwrap();
    assert_eq!(id, fx.primary.id());
    assert_eq!(router.status().fallbacks, 1);
}

#[tokio::test]
async fn bounded_staleness_in_time_uses_a_conservative_estimate() {
    let (fx, router) = router(2).await;
    let bound = Consistency::bounded_time(Duration::from_secs(2));
    fx.replicas[1].pause_replay();
    router.probe_all().await; // both caught up at t0
    assert_eq!(spread(&router, bound, 200).await.len(), 2);
    fx.primary.write("k", "1").unwrap();
    fx.cluster.replicate();
    fx.clock.advance(Duration::from_secs(1));
    router.probe_all().await; // r1 has not replayed the t0+1 s position
    fx.clock.advance(Duration::from_millis(1500));
    // r1 is fresh as of t0 (2.5 s ago), r0 as of t0 + 1 s (1.5 s ago).
    let seen = spread(&router, bound, 200).await;
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        [fx.replicas[0].id()]
    );
    // Bytes bound: r1 is 64 bytes behind.
    assert_eq!(router.status().node("r1").unwrap().lag_bytes, Some(64));
    let seen = spread(&router, Consistency::bounded_bytes(63), 100).await;
    assert!(!seen.contains_key(&fx.replicas[1].id()));
    let seen = spread(&router, Consistency::bounded_bytes(64), 400).await;
    assert!(seen.contains_key(&fx.replicas[1].id()));
    // After 1.5 s more without a probe, even r0 is too stale: the primary serves.
    fx.clock.advance(Duration::from_millis(600));
    assert_eq!(
        spread(&router, bound, 10)
            .await
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [0]
    );
    // Resuming replay and probing re-admits both.
    fx.replicas[1].resume_replay();
    fx.cluster.replicate();
    router.probe_all().await;
    assert_eq!(spread(&router, bound, 200).await.len(), 2);
}

#[tokio::test]
async fn an_idle_primary_does_not_make_replicas_stale() {
    let mut c = config();
    c.max_lag = Some(Duration::from_secs(1));
    let (fx, router) = router_with(1, c, |_, s| s).await;
    fx.clock.advance(Duration::from_secs(3600));
    router.probe_all().await;
    let r = router.status();
    let r0 = r.node("r0").unwrap();
    assert_eq!(
        (r0.lag_bytes, r0.lag_seconds, r0.state),
        (Some(0), Some(0.0), NodeState::Healthy)
    );
}

#[tokio::test]
async fn lag_bans_have_hysteresis_and_respect_min_serving() {
    let mut c = config();
    c.max_lag_bytes = Some(64 * 10);
    c.max_lag = None;
    c.lag_recovery_ratio = 0.5;
    let (fx, router) = router_with(2, c, |_, s| s).await;
    let r0 = &fx.replicas[0];
    r0.pause_replay();
    for i in 0..11 {
        fx.primary.write("k", &i.to_string()).unwrap();
    }
    fx.cluster.replicate();
    router.probe_all().await;
    assert_eq!(
        router.status().node("r0").unwrap().state,
        NodeState::LagBanned
    );
    assert_eq!(spread(&router, Consistency::Any, 100).await.len(), 1);
    // Bounded-staleness reads judge by their own bound, not the lag ban.
    let seen = spread(&router, Consistency::bounded_bytes(10_000), 400).await;
    assert!(seen.contains_key(&r0.id()));
    // Catching up to 6 records behind (384 B, under 640 but not under 320) keeps the ban.
    r0.resume_replay();
    fx.cluster.replicate();
    r0.pause_replay();
    for i in 0..6 {
        fx.primary.write("k", &i.to_string()).unwrap();
    }
    router.probe_all().await;
    assert_eq!(
        router.status().node("r0").unwrap().state,
        NodeState::LagBanned
    );
    // 4 behind (256 B < 320 B): re-admitted.
    r0.resume_replay();
    fx.cluster.replicate();
    r0.pause_replay();
    for i in 0..4 {
        fx.primary.write("k", &i.to_string()).unwrap();
    }
    fx.cluster.replicate();
    router.probe_all().await;
    assert_eq!(
        router.status().node("r0").unwrap().state,
        NodeState::Healthy
    );

    // With the guard at 2, both replicas keep serving even when both lag.
    let mut c = config();
    c.max_lag_bytes = Some(64);
    c.min_serving_replicas = 2;
    let (fx, router) = router_with(2, c, |_, s| s).await;
    fx.replicas[0].pause_replay();
    fx.replicas[1].pause_replay();
    for i in 0..5 {
        fx.primary.write("k", &i.to_string()).unwrap();
    }
    router.probe_all().await;
    assert_eq!(spread(&router, Consistency::Any, 400).await.len(), 2);
}

#[tokio::test]
async fn no_replica_policies() {
    let mut c = config();
    c.no_replica = NoReplicaPolicy::Error;
    let (fx, router) = router_with(1, c, |_, s| s).await;
    fx.replicas[0].set_up(false);
    router.probe_all().await;
    let err = router
        .read(Consistency::Any, |db| async move {
            Ok::<_, MemoryError>(db.id())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            QueryFailure::Router(Error::NoReplica {
                consistency: "any",
                checked: 1
            })
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "no replica qualifies for a read at consistency any (1 replicas checked)"
    );

    let mut c = config();
    c.no_replica = NoReplicaPolicy::UnbanAll;
    let (fx, router) = router_with(1, c, |_, s| s).await;
    fx.replicas[0].set_up(false);
    router.probe_all().await;
    fx.replicas[0].set_up(true);
    // Banned, but un-ban-all lets it serve.
    let id = router
        .read(Consistency::Any, |db| async move {
            Ok::<_, MemoryError>(db.id())
        })
        .await
        .unwrap();
    assert_eq!(id, fx.replicas[0].id());
}

#[tokio::test]
async fn promotion_repoints_writes() {
    let (fx, router) = router(2).await;
    fx.primary.write("a", "1").unwrap();
    fx.cluster.replicate();
    fx.primary.set_up(false);
    let err = router
        .write(|db| async move { db.write("b", "2") })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        QueryFailure::Query {
            connection: true,
            source: MemoryError::Down(_),
            ..
        }
    ));
    fx.replicas[0].promote();
    router.probe_all().await;
    // One failed probe of the primary is not enough to fail over …
    assert_eq!(router.primary_name().as_deref(), Some("primary"));
    // … two in a row are.
    router.probe_all().await;
    assert_eq!(router.primary_name().as_deref(), Some("r0"));
    let id = router
        .write(|db| async move { db.write("b", "2").map(|_| db.id()) })
        .await
        .unwrap();
    assert_eq!(id, fx.replicas[0].id());
    let s = router.status();
    assert_eq!(s.role_changes, 1);
    assert!(s.node("r0").unwrap().is_primary);
    // The new primary no longer serves replica reads; r1 does.
    let seen = spread(&router, Consistency::Any, 50).await;
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        [fx.replicas[1].id()]
    );
    // The old primary coming back writable does not steal the writes back,
    // not even while the new primary fails its probes: it lost the primary
    // role and has not been seen in recovery since (a diverged history).
    fx.primary.set_up(true);
    router.probe_all().await;
    assert_eq!(router.primary_name().as_deref(), Some("r0"));
    fx.replicas[0].set_up(false);
    for _ in 0..3 {
        router.probe_all().await;
        assert_eq!(router.primary_name().as_deref(), Some("r0"));
    }
    fx.replicas[0].set_up(true);
    router.probe_all().await;
    // Nor does it serve reads (it is not in recovery).
    assert!(!spread(&router, Consistency::Any, 50).await.contains_key(&0));
}

#[tokio::test]
async fn start_up_succeeds_with_a_replica_down() {
    let cluster = MemoryCluster::new();
    let primary = cluster.add_primary();
    let down = cluster.add_replica();
    down.set_up(false);
    let router = ReplicaRouter::builder()
        .monitor(false)
        .primary(NodeSpec::new("p", primary))
        .replica(NodeSpec::new("down", down))
        .build()
        .await
        .unwrap();
    assert!(matches!(
        router.status().node("down").unwrap().state,
        NodeState::Banned {
            reason: BanReason::ProbeFailed,
            ..
        }
    ));
}

#[tokio::test]
async fn bad_configuration_is_a_typed_error() {
    let cluster = MemoryCluster::new();
    let err = ReplicaRouter::<MemoryNode>::builder()
        .replica(NodeSpec::new("r", cluster.add_replica()))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "primary",
                ..
            }
        ),
        "{err:?}"
    );
    let err = ReplicaRouter::builder()
        .primary(NodeSpec::new("p", cluster.add_primary()))
        .replica(NodeSpec::new("r", cluster.add_replica()).weight(-1.0))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "weight",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"r\""));
    let c = ReplicaConfig {
        monitor_interval: Duration::ZERO,
        ..ReplicaConfig::default()
    };
    let err = ReplicaRouter::builder()
        .config(c)
        .primary(NodeSpec::new("p", cluster.add_primary()))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidConfig {
            field: "monitor_interval",
            ..
        }
    ));
    let err = ReplicaRouter::builder()
        .primary(NodeSpec::new("p", cluster.add_primary()))
        .replica(NodeSpec::new("p", cluster.add_replica()))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateNode(ref n) if n == "p"));
}

#[tokio::test]
async fn tiers_prefer_the_closest_qualifying_replicas() {
    let (fx, router) = router_with(3, config(), |i, s| s.tier(if i == 2 { 0 } else { 1 })).await;
    let seen = spread(&router, Consistency::Any, 100).await;
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        [fx.replicas[2].id()]
    );
    fx.replicas[2].set_up(false);
    router.probe_all().await;
    let seen = spread(&router, Consistency::Any, 200).await;
    assert_eq!(seen.len(), 2);
    assert!(!seen.contains_key(&fx.replicas[2].id()));
}

#[tokio::test]
async fn nodes_change_at_runtime_without_disturbing_reads_in_flight() {
    let (fx, router) = router(1).await;
    let gate = Arc::new(tokio::sync::Notify::new());
    let (r, g) = (router.clone(), gate.clone());
    let in_flight = tokio::spawn(async move {
        r.read(Consistency::Any, |db| {
            let g = g.clone();
            async move {
                g.notified().await;
                db.get("k").map(|_| db.id())
            }
        })
        .await
    });
    tokio::task::yield_now().await;
    assert_eq!(router.status().node("r0").unwrap().in_flight, 1);
    router.remove_node("r0").unwrap();
    assert!(router.status().node("r0").is_none());
    gate.notify_one();
    assert_eq!(in_flight.await.unwrap().unwrap(), fx.replicas[0].id());

    let extra = fx.cluster.add_replica();
    router
        .add_replica(NodeSpec::new("r9", extra.clone()))
        .unwrap();
    // Not serving before its first probe.
    assert_eq!(router.pick_replica(&Consistency::Any), None);
    router.probe_all().await;
    assert_eq!(
        router.pick_replica(&Consistency::Any).as_deref(),
        Some("r9")
    );
    assert!(matches!(
        router.add_replica(NodeSpec::new("r9", extra)),
        Err(Error::DuplicateNode(_))
    ));
    assert!(matches!(
        router.remove_node("primary"),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(matches!(
        router.remove_node("zz"),
        Err(Error::UnknownNode(_))
    ));
}

#[tokio::test]
async fn least_outstanding_uses_the_routers_own_in_flight_counts() {
    let mut c = config();
    c.strategy = Strategy::LeastOutstanding;
    let (fx, router) = router_with(2, c, |_, s| s).await;
    let gate = Arc::new(tokio::sync::Notify::new());
    let (r, g) = (router.clone(), gate.clone());
    let held = tokio::spawn(async move {
        r.read(Consistency::Any, |db| {
            let g = g.clone();
            async move {
                g.notified().await;
                Ok::<_, MemoryError>(db.id())
            }
        })
        .await
    });
    tokio::task::yield_now().await;
    let busy = fx.replicas[held_node(&router).expect("one read is held")].id();
    for _ in 0..20 {
        let id = router
            .read(Consistency::Any, |db| async move {
                Ok::<_, MemoryError>(db.id())
            })
            .await
            .unwrap();
        assert_ne!(id, busy);
    }
    gate.notify_one();
    held.await.unwrap().unwrap();
}

#[tokio::test]
async fn p2c_counts_in_flight_even_without_latency_observations() {
    // With no latency signal at all (the default optimistic initial latency
    // of zero, never observed), and with a non-zero one: the node with a read
    // in flight loses every comparison.
    for initial_latency in [Duration::ZERO, Duration::from_millis(10)] {
        let mut c = config();
        c.initial_latency = initial_latency;
        assert_eq!(c.strategy, Strategy::PowerOfTwoChoices);
        let (fx, router) = router_with(2, c, |_, s| s).await;
        let gate = Arc::new(tokio::sync::Notify::new());
        let (r, g) = (router.clone(), gate.clone());
        let held = tokio::spawn(async move {
            r.read(Consistency::Any, |db| {
                let g = g.clone();
                async move {
                    g.notified().await;
                    Ok::<_, MemoryError>(db.id())
                }
            })
            .await
        });
        tokio::task::yield_now().await;
        let busy = fx.replicas[held_node(&router).expect("one read is held")].id();
        for _ in 0..50 {
            let id = router
                .read(Consistency::Any, |db| async move {
                    Ok::<_, MemoryError>(db.id())
                })
                .await
                .unwrap();
            assert_ne!(id, busy, "initial latency {initial_latency:?}");
        }
        gate.notify_one();
        held.await.unwrap().unwrap();
    }
}

fn held_node(router: &ReplicaRouter<MemoryNode>) -> Option<usize> {
    let s = router.status();
    (0..2).find(|i| s.node(&format!("r{i}")).unwrap().in_flight == 1)
}

#[tokio::test]
async fn p2c_learns_latency_from_real_outcomes() {
    let (fx, router) = router(2).await;
    let slow = fx.replicas[0].id();
    // Each read on r0 "takes" 50 ms on the manual clock, r1 1 ms.
    for _ in 0..200 {
        let clock = fx.clock.clone();
        router
            .read(Consistency::Any, move |db| {
                let clock = clock.clone();
                async move {
                    let ms = if db.id() == slow { 50 } else { 1 };
                    clock.advance(Duration::from_millis(ms));
                    Ok::<_, MemoryError>(())
                }
            })
            .await
            .unwrap();
    }
    let s = router.status();
    let (r0, r1) = (s.node("r0").unwrap(), s.node("r1").unwrap());
    assert!(
        r0.latency_ms > 10.0 * r1.latency_ms,
        "{} vs {}",
        r0.latency_ms,
        r1.latency_ms
    );
    let seen = spread(&router, Consistency::Any, 100).await;
    assert_eq!(seen.get(&slow), None, "{seen:?}");
}

#[tokio::test]
async fn status_is_serialisable_and_redacts_urls() {
    let cluster = MemoryCluster::new();
    let router = ReplicaRouter::builder()
        .monitor(false)
        .primary(
            NodeSpec::new("p", cluster.add_primary())
                .url("postgres://app:s3cret@db:5432/app".into()),
        )
        .build()
        .await
        .unwrap();
    let json = serde_json::to_string(&router.status()).unwrap();
    assert!(json.contains("postgres://app:***@db:5432/app"), "{json}");
    assert!(!json.contains("s3cret"));
    assert!(!format!("{router:?}").contains("s3cret"));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["nodes"][0]["state"], "healthy");
    assert_eq!(v["nodes"][0]["role"], "primary");
}

#[test]
fn handles_are_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<ReplicaRouter<MemoryNode>>();
    assert_eq!(
        std::mem::size_of::<ReplicaRouter<MemoryNode>>(),
        std::mem::size_of::<usize>()
    );
}

#[tokio::test]
async fn monitor_probes_in_the_background() {
    let cluster = MemoryCluster::new();
    let primary = cluster.add_primary();
    let replica = cluster.add_replica();
    let c = ReplicaConfig {
        monitor_interval: Duration::from_millis(10),
        monitor_jitter: Duration::from_millis(1),
        ban_backoff: Backoff::builder()
            .initial(Duration::from_millis(5))
            .jitter(Jitter::None)
            .build()
            .unwrap(),
        ..ReplicaConfig::default()
    };
    let router = ReplicaRouter::builder()
        .config(c)
        .primary(NodeSpec::new("p", primary))
        .replica(NodeSpec::new("r", replica.clone()))
        .build()
        .await
        .unwrap();
    replica.set_up(false);
    wait_until(&router, |s| {
        matches!(s.node("r").unwrap().state, NodeState::Banned { .. })
    })
    .await;
    replica.set_up(true);
    wait_until(&router, |s| {
        s.node("r").unwrap().state == NodeState::Healthy
    })
    .await;
}

async fn wait_until(router: &ReplicaRouter<MemoryNode>, f: impl Fn(&RouterStatus) -> bool) {
    for _ in 0..500 {
        if f(&router.status()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached: {:?}", router.status());
}

#[test]
fn choose_primary_never_guesses() {
    let primary = RoleView {
        answered: Some(false),
        failed_probes: 0,
        deposed: false,
    };
    let standby = RoleView {
        answered: Some(true),
        ..primary
    };
    let promoted = primary;
    let old_primary_back = RoleView {
        deposed: true,
        ..primary
    };
    let down = |failed_probes| RoleView {
        answered: None,
        failed_probes,
        deposed: false,
    };
    let unprobed = RoleView::default();
    // Current primary answers as primary: keep it.
    assert_eq!(choose_primary(Some(0), &[primary, standby], 2), Some(0));
    // Current primary demoted (in recovery) and one promoted standby: switch
    // at once (also at start-up, with a stale configuration).
    assert_eq!(choose_primary(Some(0), &[standby, promoted], 2), Some(1));
    // Down: only after `failure_probes` failed probes in a row.
    assert_eq!(choose_primary(Some(0), &[down(1), promoted], 2), Some(0));
    assert_eq!(choose_primary(Some(0), &[down(2), promoted], 2), Some(1));
    assert_eq!(choose_primary(Some(0), &[down(1), promoted], 1), Some(1));
    // Not probed yet: no change.
    assert_eq!(choose_primary(Some(0), &[unprobed, promoted], 2), Some(0));
    // Two candidates: ambiguous, keep the current one.
    assert_eq!(
        choose_primary(Some(0), &[down(5), promoted, promoted], 2),
        Some(0)
    );
    // An old primary back writable after a failover is no candidate, even
    // when it is the only writable node.
    assert_eq!(
        choose_primary(Some(1), &[old_primary_back, down(9)], 2),
        Some(1)
    );
    // Nobody writable: no change.
    assert_eq!(choose_primary(Some(0), &[down(9), standby], 2), Some(0));
    assert_eq!(choose_primary(None, &[standby, promoted], 2), Some(1));
}

#[tokio::test]
async fn a_router_configured_with_a_demoted_primary_finds_the_promoted_one() {
    let cluster = MemoryCluster::new();
    let old = cluster.add_primary();
    let new = cluster.add_replica();
    // The failover happened before the application started.
    old.demote();
    new.promote();
    let router = ReplicaRouter::builder()
        .config(config())
        .monitor(false)
        .primary(NodeSpec::new("old", old))
        .replica(NodeSpec::new("new", new.clone()))
        .build()
        .await
        .unwrap();
    assert_eq!(router.primary_name().as_deref(), Some("new"));
    let id = router
        .write(|db| async move { db.write("k", "v").map(|_| db.id()) })
        .await
        .unwrap();
    assert_eq!(id, new.id());
}

#[tokio::test]
async fn saturation_errors_are_retried_without_banning() {
    #[derive(Debug, thiserror::Error)]
    #[error("pool timed out")]
    struct Saturated;
    let (fx, router) = router(2).await;
    let busy = fx.replicas[0].id();
    let max = router.config().max_consecutive_errors;
    for _ in 0..200 {
        let id = router
            .read(Consistency::Any, |db| async move {
                if db.id() == busy {
                    Err(Classified::saturated(Saturated))
                } else {
                    Ok(db.id())
                }
            })
            .await
            .unwrap();
        assert_ne!(id, busy);
        if router.status().node("r0").unwrap().connection_errors > u64::from(3 * max) {
            break;
        }
    }
    let status = router.status();
    let r0 = status.node("r0").unwrap();
    // Well past `max_consecutive_errors` saturation failures in a row …
    assert!(r0.connection_errors > u64::from(3 * max), "{status:?}");
    assert!(status.retries >= r0.connection_errors, "{status:?}");
    // … and the node still serves: saturation says nothing about its health.
    assert_eq!(r0.query_errors, 0);
    assert_eq!(r0.state, NodeState::Healthy);
}

#[tokio::test]
async fn a_replica_restarted_behind_its_old_position_does_not_serve_the_token() {
    let (fx, router) = router(1).await;
    let r0 = &fx.replicas[0];
    let before = fx.cluster.current_lsn();
    let ((), token) = router
        .write_with_token(|db| async move { db.write("k", "1").map(drop) })
        .await
        .unwrap();
    fx.cluster.replicate();
    router.probe_all().await;
    let read_your_write = Consistency::at_least(token);
    assert_eq!(router.pick_replica(&read_your_write).as_deref(), Some("r0"));

    // Restarted between two probes at an older consistent point: the next
    // probe's (lower) position replaces the one it had reached.
    r0.rewind_to(before);
    r0.pause_replay();
    router.probe_all().await;
    assert_eq!(router.pick_replica(&read_your_write), None);
    let v = router
        .read(read_your_write, |db| async move { db.get("k") })
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("1"), "stale read");

    // Caught up again, then it dies under a read: the ban forgets its
    // position, and re-admission brings the position it restarted at.
    r0.resume_replay();
    fx.cluster.replicate();
    router.probe_all().await;
    assert_eq!(router.pick_replica(&read_your_write).as_deref(), Some("r0"));
    r0.set_up(false);
    let v = router
        .read(read_your_write, |db| async move { db.get("k") })
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("1"));
    let s = router.status();
    let n = s.node("r0").unwrap();
    assert!(matches!(n.state, NodeState::Banned { .. }), "{s:?}");
    assert_eq!((n.replay_lsn, n.lag_bytes), (None, None));
    r0.rewind_to(before);
    r0.pause_replay();
    r0.set_up(true);
    fx.clock.advance(Duration::from_secs(2));
    router.probe_all().await;
    let n = router.status().node("r0").unwrap().clone();
    assert_eq!((n.state, n.replay_lsn), (NodeState::Healthy, Some(before)));
    assert_eq!(router.pick_replica(&read_your_write), None);
    let v = router
        .read(read_your_write, |db| async move { db.get("k") })
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("1"), "stale read after re-admission");
}

/// A memory node whose probes can hang and whose WAL position can fail.
#[derive(Clone, Debug)]
struct Gated {
    node: MemoryNode,
    hang: Arc<std::sync::atomic::AtomicBool>,
    fail_token: Arc<std::sync::atomic::AtomicBool>,
}

impl Gated {
    fn new(node: MemoryNode) -> Self {
        Self {
            node,
            hang: Arc::default(),
            fail_token: Arc::default(),
        }
    }
}

impl NodePool for Gated {
    async fn probe(&self) -> Result<Probe, sysmanage_core::BoxError> {
        if self.hang.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        NodePool::probe(&self.node).await
    }
    async fn wal_token(&self) -> Result<WalToken, sysmanage_core::BoxError> {
        if self.fail_token.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("connection reset by peer".into());
        }
        NodePool::wal_token(&self.node).await
    }
    async fn timeline_history(
        &self,
        timeline: TimelineId,
    ) -> Result<Option<TimelineHistory>, sysmanage_core::BoxError> {
        NodePool::timeline_history(&self.node, timeline).await
    }
    async fn replay_lsn(&self) -> Result<Option<Lsn>, sysmanage_core::BoxError> {
        NodePool::replay_lsn(&self.node).await
    }
}

async fn gated_router(
    config: ReplicaConfig,
) -> (MemoryCluster, Gated, Gated, ReplicaRouter<Gated>) {
    let cluster = MemoryCluster::new();
    let primary = Gated::new(cluster.add_primary());
    let replica = Gated::new(cluster.add_replica());
    let router = ReplicaRouter::builder()
        .config(config)
        .monitor(false)
        .primary(NodeSpec::new("primary", primary.clone()))
        .replica(NodeSpec::new("r0", replica.clone()))
        .build()
        .await
        .unwrap();
    (cluster, primary, replica, router)
}

#[tokio::test]
async fn cancelling_probe_all_does_not_stop_a_node_from_being_probed() {
    let (_cluster, _primary, replica, router) = gated_router(config()).await;
    replica
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let cancelled = tokio::time::timeout(Duration::from_millis(20), router.probe_all()).await;
    assert!(cancelled.is_err(), "the probe should hang");
    replica
        .hang
        .store(false, std::sync::atomic::Ordering::SeqCst);
    replica.node.set_up(false);
    // Let the runtime drop the aborted probe task.
    tokio::time::sleep(Duration::from_millis(10)).await;
    router.probe_all().await;
    assert!(
        matches!(
            router.status().node("r0").unwrap().state,
            NodeState::Banned {
                reason: BanReason::ProbeFailed,
                ..
            }
        ),
        "{:?}",
        router.status()
    );
}

#[tokio::test]
async fn a_committed_write_is_returned_even_when_its_token_cannot_be_read() {
    let (_cluster, primary, replica, router) = gated_router(config()).await;
    primary
        .fail_token
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (lsn, token) = router
        .write_with_token(|db| async move { db.node.write("k", "1") })
        .await
        .expect("the write committed");
    assert_eq!(primary.node.get("k").unwrap().as_deref(), Some("1"));
    assert!(lsn > Lsn::ZERO);
    assert_eq!(token, WalToken::UNAVAILABLE);
    // No replica qualifies for it, not even one that has replayed everything,
    // and the read does not wait for one.
    replica.node.resume_replay();
    router.probe_all().await;
    let c = Consistency::at_least(token).with_wait(Duration::from_secs(3600));
    assert_eq!(router.pick_replica(&c), None);
    let v = router
        .read(c, |db| async move { db.node.get("k") })
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("1"));
    assert_eq!(router.status().fallbacks, 1);
}

#[tokio::test]
async fn a_huge_token_wait_is_capped_not_a_panic() {
    let mut c = config();
    c.max_token_wait = Duration::from_millis(30);
    let (fx, router) = router_with(1, c, |_, s| s).await;
    fx.replicas[0].pause_replay();
    let ((), token) = router
        .write_with_token(|db| async move { db.write("k", "1").map(drop) })
        .await
        .unwrap();
    // `Consistency` is deserialisable: the wait may come from outside.
    let c: Consistency = serde_json::from_value(serde_json::json!({
        "level": "at_least",
        "token": token.to_string(),
        "wait": { "secs": u64::MAX, "nanos": 999_999_999 },
    }))
    .unwrap();
    let id = router
        .read(c, |db| async move { Ok::<_, MemoryError>(db.id()) })
        .await
        .unwrap();
    assert_eq!(id, fx.primary.id());
    assert_eq!(router.status().fallbacks, 1);
}

#[tokio::test]
async fn memory_promotion_leaves_replicas_that_had_applied_more_diverged() {
    let (fx, _router) = router(2).await;
    let (r0, r1) = (&fx.replicas[0], &fx.replicas[1]);
    r0.pause_replay();
    fx.primary.write("a", "1").unwrap();
    fx.primary.write("b", "2").unwrap();
    fx.cluster.replicate();
    assert_eq!(r1.get("b").unwrap().as_deref(), Some("2"));
    fx.primary.set_up(false);
    r0.promote();
    assert_eq!(r0.timeline().get(), 2);
    r0.write("c", "3").unwrap();
    fx.cluster.replicate();
    // r1 keeps the write the new history lost, and cannot follow it.
    assert_eq!(r1.get("b").unwrap().as_deref(), Some("2"));
    assert_eq!(r1.get("c").unwrap(), None);
    assert_eq!(r1.timeline().get(), 1);
    // Rebuilt, it follows again and holds exactly the new history.
    r1.resync();
    fx.cluster.replicate();
    assert_eq!(r1.get("b").unwrap(), None);
    assert_eq!(r1.get("c").unwrap().as_deref(), Some("3"));
    assert_eq!(r1.replay_lsn(), r0.replay_lsn());
}

#[tokio::test]
async fn min_serving_replicas_does_not_count_drained_nodes() {
    let mut c = config();
    c.max_lag_bytes = Some(64);
    c.min_serving_replicas = 1;
    let (fx, router) = router_with(2, c, |i, s| s.weight(if i == 1 { 0.0 } else { 1.0 })).await;
    fx.replicas[0].pause_replay();
    for i in 0..5 {
        fx.primary.write("k", &i.to_string()).unwrap();
    }
    fx.cluster.replicate(); // r1 catches up, r0 (paused) does not
    router.probe_all().await;
    // r1 is drained: r0, lagging, is the only replica that could serve, so
    // the guard keeps it serving.
    let s = router.status();
    assert_eq!(s.node("r0").unwrap().state, NodeState::Healthy, "{s:?}");
    let seen = spread(&router, Consistency::Any, 50).await;
    assert_eq!(seen.get(&fx.replicas[0].id()), Some(&50), "{seen:?}");
}

#[tokio::test]
async fn unknown_lag_is_not_zero_lag() {
    let cluster = MemoryCluster::new();
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let primary = cluster.add_primary();
    let replica = cluster.add_replica();
    primary.set_up(false);
    let router = ReplicaRouter::builder()
        .config(config())
        .clock(Arc::new(clock.clone()))
        .monitor(false)
        .primary(NodeSpec::new("primary", primary.clone()))
        .replica(NodeSpec::new("r0", replica))
        .build()
        .await
        .unwrap();
    // The primary's position was never sampled: the replica's lag is unknown.
    let s = router.status();
    assert_eq!(s.node("r0").unwrap().lag_bytes, None, "{s:?}");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["nodes"][1]["lag_bytes"], serde_json::Value::Null);
    assert_eq!(
        router.pick_replica(&Consistency::bounded_bytes(1 << 30)),
        None
    );
    // Any reads do not need a known lag.
    assert_eq!(
        router.pick_replica(&Consistency::Any).as_deref(),
        Some("r0")
    );
    // Once the primary answers, the lag is known.
    primary.set_up(true);
    clock.advance(Duration::from_secs(2));
    router.probe_all().await;
    assert_eq!(router.status().node("r0").unwrap().lag_bytes, Some(0));
    assert_eq!(
        router
            .pick_replica(&Consistency::bounded_bytes(1 << 30))
            .as_deref(),
        Some("r0")
    );
}

// --- timelines ---------------------------------------------------------------

/// Reads `key` `n` times at `consistency` and returns which nodes served
/// and what they returned.
async fn read_key(
    router: &ReplicaRouter<MemoryNode>,
    c: Consistency,
    key: &'static str,
    n: usize,
) -> Vec<(usize, Option<String>)> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            router
                .read(
                    c,
                    |node| async move { node.get(key).map(|v| (node.id(), v)) },
                )
                .await
                .unwrap(),
        );
    }
    out
}

/// The reproduction of a promotion past a lagging standby: r0 stops, r1
/// keeps streaming from the old primary, the primary dies, r0 comes back
/// and is promoted. r1 holds old-timeline WAL at positions past the switch
/// point, so comparing positions alone would let it serve tokens from the
/// new primary that it never received.
#[tokio::test]
async fn a_replica_past_the_switch_point_is_diverged_and_serves_no_token() {
    let mut c = config();
    c.max_token_wait = Duration::from_secs(30);
    let (fx, router) = router_with(2, c, |_, s| s).await;
    let (r0, r1) = (&fx.replicas[0], &fx.replicas[1]);
    let ((), old_token) = router
        .write_with_token(|db| async move { db.write("k", "before").map(drop) })
        .await
        .unwrap();
    fx.cluster.replicate();
    r0.set_up(false);
    for i in 0..20 {
        fx.primary.write("lost", &i.to_string()).unwrap();
    }
    let ((), lost_token) = router
        .write_with_token(|db| async move { db.write("k", "lost").map(drop) })
        .await
        .unwrap();
    fx.cluster.replicate(); // r1 only
    fx.primary.set_up(false);
    r1.set_streaming(false); // its upstream is gone
    r0.set_up(true);
    r0.promote();
    router.probe_all().await;
    router.probe_all().await;
    fx.clock.advance(Duration::from_secs(2));
    router.probe_all().await;
    assert_eq!(router.primary_name().as_deref(), Some("r0"));
    let s = router.status();
    assert_eq!(s.timeline, Some(2));
    assert_eq!(s.divergences, 1);
    assert_eq!(s.node("r1").unwrap().history, HistoryRelation::Diverged);
    assert!(lost_token.lsn() <= r1.replay_lsn());

    // New writes on timeline 2, at positions r1 has passed on timeline 1.
    let ((), token) = router
        .write_with_token(|db| async move { db.write("k", "after").map(drop) })
        .await
        .unwrap();
    assert_eq!(token.timeline().map(|t| t.get()), Some(2));
    assert!(
        token.lsn() <= r1.replay_lsn(),
        "the hazard this test is about"
    );
    // Read-your-writes never asks r1 and never waits for it.
    let started = std::time::Instant::now();
    let c = Consistency::at_least(token).with_wait(Duration::from_secs(20));
    for (id, v) in read_key(&router, c, "k", 20).await {
        assert_eq!((id, v.as_deref()), (r0.id(), Some("after")));
    }
    assert!(started.elapsed() < Duration::from_secs(5), "a read waited");
    // Nor does r1 serve any other read.
    for c in [Consistency::Any, Consistency::bounded_bytes(u64::MAX)] {
        assert!(
            read_key(&router, c, "k", 20)
                .await
                .iter()
                .all(|(id, _)| *id == r0.id())
        );
    }
    // A token from before the promotion: written before the switch point,
    // so still part of the history.
    assert!(token_on_history(
        &router.inner.primary_timeline(),
        old_token
    ));
    // The write lost with the old primary is on no node of the history:
    // its token goes to the primary, which does not have it either.
    assert!(!token_on_history(
        &router.inner.primary_timeline(),
        lost_token
    ));
    let served = read_key(&router, Consistency::at_least(lost_token), "k", 5).await;
    assert!(served.iter().all(|(id, _)| *id == r0.id()));

    // Rebuilt from the new primary, r1 follows timeline 2 and serves again.
    r1.resync();
    fx.cluster.replicate();
    router.probe_all().await;
    let s = router.status();
    assert_eq!(s.node("r1").unwrap().history, HistoryRelation::Current);
    assert_eq!(s.node("r1").unwrap().timeline, Some(2));
    assert_eq!(
        router
            .pick_replica(&Consistency::at_least(token))
            .as_deref(),
        Some("r1")
    );
}

/// The plain promotion: both standbys caught up, the primary stops, one is
/// promoted. The other sits exactly at the switch point: behind, not
/// diverged. It serves old tokens and `Any` reads, never a new token, and
/// is not waited for (it does not stream from the new primary); once
/// re-pointed it streams timeline 2 and serves new tokens.
#[tokio::test]
async fn a_standby_at_the_switch_point_is_behind_and_becomes_current_when_repointed() {
    let mut c = config();
    c.max_token_wait = Duration::from_secs(30);
    let (fx, router) = router_with(2, c, |_, s| s).await;
    let (r0, r1) = (&fx.replicas[0], &fx.replicas[1]);
    let ((), old_token) = router
        .write_with_token(|db| async move { db.write("k", "v1").map(drop) })
        .await
        .unwrap();
    fx.cluster.replicate();
    fx.primary.set_up(false);
    r1.set_streaming(false);
    r0.promote();
    router.probe_all().await;
    router.probe_all().await;
    assert_eq!(router.primary_name().as_deref(), Some("r0"));
    let s = router.status();
    assert_eq!(s.node("r1").unwrap().history, HistoryRelation::Behind);
    assert_eq!(s.divergences, 0);
    assert_eq!(
        router
            .pick_replica(&Consistency::at_least(old_token))
            .as_deref(),
        Some("r1")
    );
    let ((), token) = router
        .write_with_token(|db| async move { db.write("k", "v2").map(drop) })
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let c = Consistency::at_least(token).with_wait(Duration::from_secs(20));
    for (id, v) in read_key(&router, c, "k", 10).await {
        assert_eq!((id, v.as_deref()), (r0.id(), Some("v2")));
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited for a standby that cannot catch up"
    );
    // Re-pointed at the new primary: it follows the timeline switch.
    r1.set_streaming(true);
    fx.cluster.replicate();
    router.probe_all().await;
    let s = router.status();
    assert_eq!(s.node("r1").unwrap().history, HistoryRelation::Current);
    assert_eq!(
        router
            .pick_replica(&Consistency::at_least(token))
            .as_deref(),
        Some("r1")
    );
    for (id, v) in read_key(&router, Consistency::at_least(token), "k", 10).await {
        assert_eq!((id, v.as_deref()), (r1.id(), Some("v2")));
    }
}

/// Without the primary's history file, a replica on an earlier timeline
/// cannot be placed: it serves nothing (never a stale read) until it is
/// known to follow the primary's timeline.
#[tokio::test]
async fn without_a_history_file_only_replicas_on_the_primary_timeline_serve() {
    let cluster = MemoryCluster::new();
    let primary = Gated::new(cluster.add_primary());
    let r0 = cluster.add_replica();
    let r1 = cluster.add_replica();
    #[derive(Clone, Debug)]
    struct NoHistory(MemoryNode);
    impl NodePool for NoHistory {
        async fn probe(&self) -> Result<Probe, sysmanage_core::BoxError> {
            NodePool::probe(&self.0).await
        }
        async fn wal_token(&self) -> Result<WalToken, sysmanage_core::BoxError> {
            NodePool::wal_token(&self.0).await
        }
        async fn replay_lsn(&self) -> Result<Option<Lsn>, sysmanage_core::BoxError> {
            NodePool::replay_lsn(&self.0).await
        }
    }
    let router = ReplicaRouter::builder()
        .config(config())
        .monitor(false)
        .primary(NodeSpec::new("p", NoHistory(primary.node.clone())))
        .replica(NodeSpec::new("r0", NoHistory(r0.clone())))
        .replica(NodeSpec::new("r1", NoHistory(r1.clone())))
        .build()
        .await
        .unwrap();
    assert!(router.pick_replica(&Consistency::Any).is_some());
    primary.node.set_up(false);
    r1.set_streaming(false);
    r0.promote();
    router.probe_all().await;
    router.probe_all().await;
    assert_eq!(router.primary_name().as_deref(), Some("r0"));
    assert_eq!(
        router.status().node("r1").unwrap().history,
        HistoryRelation::Unknown
    );
    assert_eq!(router.pick_replica(&Consistency::Any), None);
    assert_eq!(router.status().divergences, 0);
}

/// A read sent to the primary while it fails over is re-routed to the
/// promoted node instead of failing (within `read_retry_budget`).
#[tokio::test]
async fn a_read_rides_through_a_primary_failover() {
    let cluster = MemoryCluster::new();
    let primary = cluster.add_primary();
    let r0 = cluster.add_replica();
    let mut c = config();
    c.monitor_interval = Duration::from_millis(20);
    c.monitor_jitter = Duration::from_millis(2);
    c.ban_backoff = Backoff::builder()
        .initial(Duration::from_millis(10))
        .max(Duration::from_millis(50))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let router = ReplicaRouter::builder()
        .config(c.clone())
        .primary(NodeSpec::new("p", primary.clone()))
        .replica(NodeSpec::new("r0", r0.clone()))
        .build()
        .await
        .unwrap();
    primary.write("k", "v").unwrap();
    cluster.replicate();
    primary.set_up(false);
    let promote = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        r0.promote();
        r0
    });
    let read = |router: ReplicaRouter<MemoryNode>| async move {
        router
            .read(Consistency::Primary, |db| async move {
                db.get("k").map(|v| (db.id(), v))
            })
            .await
    };
    let (id, v) = read(router.clone()).await.unwrap();
    let r0 = promote.await.unwrap();
    assert_eq!((id, v.as_deref()), (r0.id(), Some("v")));
    assert!(router.status().retries >= 2);

    // With no budget, the same read fails after one retry.
    c.read_retry_budget = Duration::ZERO;
    let cluster = MemoryCluster::new();
    let primary = cluster.add_primary();
    let router = ReplicaRouter::builder()
        .config(c)
        .primary(NodeSpec::new("p", primary.clone()))
        .build()
        .await
        .unwrap();
    primary.set_up(false);
    assert!(matches!(
        read(router).await,
        Err(QueryFailure::Query {
            connection: true,
            ..
        })
    ));
}

/// Shutdown refuses new queries at once and lets one in flight finish.
#[tokio::test]
async fn shutdown_drains_in_flight_queries_then_refuses() {
    let (_fx, router) = router(1).await;
    let slow = {
        let router = router.clone();
        tokio::spawn(async move {
            router
                .read(Consistency::Any, |db| async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    db.get("k")
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = std::time::Instant::now();
    router.shutdown(Duration::from_secs(5)).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "waited for the query"
    );
    assert_eq!(
        slow.await.unwrap().unwrap(),
        None,
        "the query in flight finished"
    );
    assert!(router.is_shut_down());
    let err = router
        .read(Consistency::Any, |db| async move { db.get("k") })
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueryFailure::Router(Error::ShutDown)),
        "{err:?}"
    );
    let err = router
        .write(|db| async move { db.write("k", "v") })
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueryFailure::Router(Error::ShutDown)),
        "{err:?}"
    );
    // A query that outlives the deadline is reported.
    let (_fx2, router2) = self::router(1).await;
    let stuck = {
        let router = router2.clone();
        tokio::spawn(async move {
            router
                .read(Consistency::Any, |db| async move {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    db.get("k")
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(router2.shutdown(Duration::from_millis(50)).await.is_err());
    stuck.abort();
}
