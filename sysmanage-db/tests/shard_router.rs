//! ShardRouter behaviour on in-memory node sets: placement, grouping,
//! bounded concurrency, per-shard deadlines, fail-fast cancellation, stats.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use sysmanage_db::Error;
use sysmanage_db::shard::{
    FailureKind, JumpHash, MemoryNodeSet, NodeSetHealth, PgHash, ShardFunction, ShardId, ShardKey,
    ShardRouter,
};

type Mem = MemoryNodeSet<i64>;

fn sets(n: usize) -> Vec<Mem> {
    (0..n)
        .map(|i| MemoryNodeSet::new(format!("mem{i}")))
        .collect()
}

fn router_over(f: PgHash, sets: &[Mem]) -> ShardRouter<Mem> {
    let mut b = ShardRouter::builder(f).shard_timeout(Duration::from_secs(1));
    for s in sets {
        b = b.node_set(s.name(), s.clone());
    }
    b.build().unwrap()
}

#[test]
fn builder_rejects_bad_configurations() {
    let s = sets(2);
    let f = || PgHash::new(4).unwrap();
    let err = |b: sysmanage_db::shard::ShardRouterBuilder<Mem, PgHash>| {
        b.build().unwrap_err().to_string()
    };
    assert_eq!(
        err(ShardRouter::builder(f())),
        "invalid node_sets: must not be empty"
    );
    assert!(
        err(ShardRouter::builder(f())
            .node_set("a", s[0].clone())
            .node_set("a", s[1].clone()))
        .contains("duplicate node set name \"a\"")
    );
    assert!(
        err(ShardRouter::builder(f())
            .node_set("a", s[0].clone())
            .place([9], "a"))
        .contains("shard-9 is outside")
    );
    assert!(
        err(ShardRouter::builder(f())
            .node_set("a", s[0].clone())
            .place([1], "zzz"))
        .contains("unknown node set \"zzz\"")
    );
    assert!(
        err(ShardRouter::builder(f())
            .node_set("a", s[0].clone())
            .place([1], "a")
            .place([1], "a"))
        .contains("placed twice")
    );
    assert!(
        err(ShardRouter::builder(f())
            .node_set("a", s[0].clone())
            .max_concurrency(0))
        .contains("max_concurrency")
    );
    assert!(
        err(ShardRouter::builder(f())
            .node_set("a", s[0].clone())
            .shard_timeout(Duration::ZERO))
        .contains("shard_timeout")
    );
}

#[test]
fn explicit_placement_and_round_robin() {
    let s = sets(3);
    let router = ShardRouter::builder(PgHash::new(6).unwrap())
        .node_set("mem0", s[0].clone())
        .node_set("mem1", s[1].clone())
        .node_set("mem2", s[2].clone())
        .place([5, 4], "mem0")
        .build()
        .unwrap();
    let names: Vec<&str> = (0..6)
        .map(|i| router.node_set_name(ShardId(i)).unwrap())
        .collect();
    assert_eq!(names, ["mem0", "mem1", "mem2", "mem0", "mem0", "mem0"]);
    assert!(matches!(
        router.node_set_name(ShardId(6)),
        Err(Error::UnknownShard {
            shard: ShardId(6),
            shards: 6
        })
    ));
    assert_eq!(router.topology().placement, names);
}

#[test]
fn group_by_shard_keeps_order_and_agrees_with_shard_for() {
    let s = sets(2);
    let router = router_over(PgHash::new(4).unwrap(), &s);
    let hosts: Vec<String> = (0..200).map(|i| format!("host-{i}")).collect();
    let groups = router
        .group_by_shard(hosts.iter(), |h| ShardKey::Text(h))
        .unwrap();
    assert_eq!(groups.values().map(Vec::len).sum::<usize>(), 200);
    for (shard, members) in &groups {
        assert!(
            members.windows(2).all(
                |w| hosts.iter().position(|h| h == w[0]) < hosts.iter().position(|h| h == w[1])
            )
        );
        for h in members {
            assert_eq!(router.shard_for(h.as_str()).unwrap(), *shard);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn per_shard_deadline_reports_the_slow_shard_as_timeout() {
    let s = sets(4);
    s[3].set_latency(Duration::from_secs(5));
    s[1].set_latency(Duration::from_millis(900));
    let router = router_over(PgHash::new(4).unwrap(), &s);
    let fan = router
        .fan_out(|ctx| async move { ctx.nodes().query(|rows| rows.len()).await })
        .await;
    assert_eq!(fan.failed_shards(), vec![ShardId(3)]);
    let f = fan.failures().next().unwrap();
    assert_eq!(f.kind, FailureKind::Timeout);
    assert_eq!(f.reason, "deadline of 1s exceeded");
    assert_eq!(
        f.to_string(),
        "shard-3 on node set mem3 failed: deadline of 1s exceeded"
    );
    assert!(fan.outcomes()[1].result.is_ok());
    assert_eq!(router.stats().shards[3].timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded() {
    let s = sets(1);
    let router = ShardRouter::builder(JumpHash::new(12).unwrap())
        .node_set("mem0", s[0].clone())
        .max_concurrency(3)
        .build()
        .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let fan = router
        .fan_out(|ctx| {
            let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(ctx.shard())
            }
        })
        .await;
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    let shards = fan.into_complete().unwrap();
    assert_eq!(shards, (0..12).map(ShardId).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn fail_fast_cancels_the_rest() {
    let s = sets(4);
    s[0].set_down("disk full");
    for other in &s[1..] {
        other.set_latency(Duration::from_millis(500));
    }
    let router = router_over(PgHash::new(4).unwrap(), &s);
    let finished = Arc::new(AtomicUsize::new(0));
    let err = router
        .fan_out_fail_fast(|ctx| {
            let finished = Arc::clone(&finished);
            async move {
                let r = ctx.nodes().query(|rows| rows.len()).await;
                finished.fetch_add(1, Ordering::SeqCst);
                r
            }
        })
        .await
        .unwrap_err();
    match &err {
        Error::ShardFailed(f) => {
            assert_eq!(f.shard, ShardId(0));
            assert_eq!(f.reason, "node set mem0 is down: disk full");
            // The cause is the source, not repeated in the message.
            assert_eq!(err.to_string(), "shard-0 on node set mem0 failed");
            assert_eq!(
                std::error::Error::source(&err).map(|e| e.to_string()),
                Some("node set mem0 is down: disk full".to_string())
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "slow shards were not cancelled"
    );
}

#[tokio::test]
async fn partial_fan_out_error_names_every_failed_shard() {
    let s = sets(4);
    s[1].set_down("connection refused");
    s[3].set_down("too many clients");
    let router = router_over(PgHash::new(4).unwrap(), &s);
    let err = router
        .fan_out(|ctx| async move { ctx.nodes().query(|rows| rows.len()).await })
        .await
        .into_complete()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "fan-out incomplete: 2 of 4 shards failed (shard-1: node set mem1 is down: connection refused; \
         shard-3: node set mem3 is down: too many clients)"
    );
    let stats = router.stats();
    assert_eq!(stats.shards[1].status.health, NodeSetHealth::Down);
    assert_eq!(
        stats.shards[1].last_error.as_deref(),
        Some("node set mem1 is down: connection refused")
    );
    assert_eq!(stats.shards[0].status.health, NodeSetHealth::Up);
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["shards"][1]["status"]["health"], "down");
}

#[tokio::test]
async fn grouped_fan_out_hands_each_shard_its_keys() {
    let s = sets(2);
    let router = router_over(PgHash::new(8).unwrap(), &s);
    let keys: Vec<i64> = (0..500).collect();
    let groups = router
        .group_by_shard(keys.clone(), |k| ShardKey::Int(*k))
        .unwrap();
    let fan = router
        .fan_out_grouped(groups, |ctx, keys: Vec<i64>| async move {
            let f = PgHash::new(8).unwrap();
            assert!(
                keys.iter()
                    .all(|k| f.shard_for(&ShardKey::Int(*k)).unwrap() == ctx.shard())
            );
            Ok::<_, std::io::Error>(keys)
        })
        .await
        .unwrap();
    let mut all: Vec<i64> = fan.into_complete().unwrap().concat();
    all.sort();
    assert_eq!(all, keys);
    assert!(matches!(
        router
            .fan_out_to([ShardId(8)], |_| async { Ok::<_, std::io::Error>(()) })
            .await,
        Err(Error::UnknownShard { .. })
    ));
}

#[tokio::test]
async fn run_routes_to_the_owning_node_set() {
    let s = sets(2);
    let router = router_over(PgHash::new(2).unwrap(), &s);
    for id in 0..100_i64 {
        router.node_set_for(id).unwrap().insert(id);
    }
    for id in [3_i64, 77] {
        let found = router
            .run(id, |ctx| async move {
                ctx.nodes().query(|rows| rows.contains(&id)).await
            })
            .await
            .unwrap();
        assert!(found);
    }
    let range_err = ShardRouter::builder(
        sysmanage_db::shard::RangeShards::builder()
            .range(Some(0_i64.into()), Some(10_i64.into()), ShardId(0))
            .build()
            .unwrap(),
    )
    .node_set("mem0", s[0].clone())
    .build()
    .unwrap()
    .run(10_i64, |_| async { Ok::<_, std::io::Error>(()) })
    .await;
    assert!(matches!(
        range_err,
        Err(Error::NoShardForKey {
            function: "range",
            ..
        })
    ));
}

#[tokio::test]
async fn shards_can_be_replicated_node_sets() {
    use sysmanage_db::replica::{Consistency, MemoryCluster, MemoryNode, NodeSpec, ReplicaRouter};
    use sysmanage_db::shard::NodeSet;

    // Two shards, each a primary with one replica behind a ReplicaRouter.
    let mut clusters = Vec::new();
    let mut b = ShardRouter::builder(PgHash::new(2).unwrap());
    for i in 0..2 {
        let cluster = MemoryCluster::new();
        let replica = ReplicaRouter::builder()
            .primary(NodeSpec::new("primary", cluster.add_primary()))
            .replica(NodeSpec::new("replica", cluster.add_replica()))
            .build()
            .await
            .unwrap();
        b = b.node_set(format!("cluster{i}"), replica);
        clusters.push(cluster);
    }
    let router: ShardRouter<ReplicaRouter<MemoryNode>> = b.build().unwrap();
    for host in ["host-1", "host-2", "host-3", "host-4"] {
        router
            .run(host, |ctx| async move {
                ctx.nodes()
                    .write(|db| async move { db.write(host, "up").map(drop) })
                    .await
            })
            .await
            .unwrap();
    }
    for c in &clusters {
        c.replicate();
    }
    for host in ["host-1", "host-4"] {
        let value = router
            .run(host, |ctx| async move {
                ctx.nodes()
                    .read(Consistency::Any, |db| async move { db.get(host) })
                    .await
            })
            .await
            .unwrap();
        assert_eq!(value.as_deref(), Some("up"));
    }
    // Each cluster holds exactly the hosts its shard owns.
    let owned = router
        .fan_out(|ctx| async move {
            ctx.nodes()
                .read(Consistency::Primary, |db| async move { db.snapshot() })
                .await
                .map(|snap| {
                    let mut keys: Vec<String> = snap.into_keys().collect();
                    keys.sort();
                    (ctx.shard(), keys)
                })
        })
        .await
        .into_complete()
        .unwrap();
    assert_eq!(owned.iter().map(|(_, keys)| keys.len()).sum::<usize>(), 4);
    for (shard, keys) in owned {
        for k in keys {
            assert_eq!(router.shard_for(k.as_str()).unwrap(), shard);
        }
    }
    let status = NodeSet::status(router.node_set_for("host-1").unwrap());
    assert_eq!(status.health, NodeSetHealth::Up, "{status:?}");
}

#[tokio::test]
async fn moving_a_shard_changes_its_node_set_and_nothing_else() {
    use sysmanage_db::shard::ReshardPlan;

    let s = sets(3);
    let router = ShardRouter::builder(PgHash::new(4).unwrap())
        .node_set("mem0", s[0].clone())
        .node_set("mem1", s[1].clone())
        .node_set("mem2", s[2].clone())
        .place([0, 1, 2, 3], "mem0")
        .build()
        .unwrap();
    let moved = router.with_shard_moved(ShardId(3), "mem2").unwrap();
    for k in 0..1_000_i64 {
        assert_eq!(router.shard_for(k).unwrap(), moved.shard_for(k).unwrap());
    }
    let names: Vec<&str> = (0..4)
        .map(|i| moved.node_set_name(ShardId(i)).unwrap())
        .collect();
    assert_eq!(names, ["mem0", "mem0", "mem0", "mem2"]);
    let plan = ReshardPlan::compute(&router.topology(), &moved.topology()).unwrap();
    assert_eq!(plan.moved_fraction, 0.0);
    assert!((plan.copied_fraction - 0.25).abs() < 1e-12);
    assert!(matches!(
        router.with_shard_moved(ShardId(4), "mem2"),
        Err(Error::UnknownShard { .. })
    ));
    assert!(router.with_shard_moved(ShardId(0), "nowhere").is_err());
}

/// Moving a shard used to give the new router fresh counters, silently
/// erasing every shard's query and error history.
#[tokio::test]
async fn moving_a_shard_keeps_the_counters() {
    let s = sets(2);
    s[1].set_down("disk full");
    let router = router_over(PgHash::new(4).unwrap(), &s);
    let query = |ctx: sysmanage_db::shard::ShardCtx<Mem>| async move {
        ctx.nodes().query(|rows| rows.len()).await
    };
    for _ in 0..2 {
        let _ = router.fan_out(query).await;
    }
    let before = router.stats();
    assert_eq!(before.shards[1].errors, 2);

    let moved = router.with_shard_moved(ShardId(1), "mem0").unwrap();
    let after = moved.stats();
    for (b, a) in before.shards.iter().zip(&after.shards) {
        assert_eq!(
            (b.queries, b.errors, b.consecutive_failures, &b.last_error),
            (a.queries, a.errors, a.consecutive_failures, &a.last_error),
            "{}",
            a.shard
        );
    }
    assert_eq!(after.shards[1].node_set, "mem0");
    // Both routers count into the same totals while they coexist.
    let _ = moved.fan_out(query).await;
    assert_eq!(router.stats().shards[1].queries, 3);
    assert_eq!(router.stats().shards[1].consecutive_failures, 0);
    assert_eq!(moved.stats().shards[3].errors, 3);
}

/// A shard function whose count is not bounded by a constructor.
#[derive(Debug)]
struct Growing(AtomicU32);

impl ShardFunction for Growing {
    fn name(&self) -> &'static str {
        "growing"
    }
    fn shard_count(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
    fn shard_for(&self, key: &ShardKey<'_>) -> sysmanage_db::Result<ShardId> {
        PgHash::new(self.shard_count())?.shard_for(key)
    }
}

#[test]
fn router_rejects_unbounded_shard_counts_before_allocating() {
    for count in [0, sysmanage_db::shard::MAX_SHARDS + 1, u32::MAX] {
        let err = ShardRouter::builder(Growing(count.into()))
            .node_set("mem0", Mem::new("mem0"))
            .build()
            .unwrap_err();
        assert!(
            matches!(
                &err,
                Error::InvalidConfig {
                    field: "shard_count",
                    ..
                }
            ),
            "{err}"
        );
    }
}

/// A shard the router has no placement for is reported, never skipped:
/// here the function's count grows after `build`.
#[tokio::test]
async fn fan_out_reports_a_shard_it_cannot_place() {
    let router = ShardRouter::builder(Arc::new(Growing(2.into())))
        .node_set("mem0", Mem::new("mem0"))
        .build()
        .unwrap();
    router.function().0.store(3, Ordering::SeqCst);
    let fan = router
        .fan_out(|ctx| async move { ctx.nodes().query(|rows| rows.len()).await })
        .await;
    assert_eq!(fan.len(), 3);
    assert_eq!(fan.failed_shards(), vec![ShardId(2)]);
    assert!(matches!(
        fan.into_complete(),
        Err(Error::PartialFanOut { total: 3, .. })
    ));
    assert!(
        router
            .fan_out_fail_fast(|ctx| async move { ctx.nodes().query(|rows| rows.len()).await })
            .await
            .is_err()
    );
    // Stats cover the placed shards (and do not index past them).
    assert_eq!(router.stats().shards.len(), 2);
}

/// Pinned outputs: these functions must never change for existing data.
/// (PgHash is pinned against PostgreSQL itself in the unit tests and the
/// integration suite; jump hash against its reference vectors.)
#[test]
fn shard_assignments_are_pinned() {
    let keys = [
        ShardKey::Int(0),
        ShardKey::Int(-1),
        ShardKey::Int(1 << 40),
        ShardKey::Text(""),
        ShardKey::Text("host-0001"),
        ShardKey::parse_uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap(),
    ];
    let shards = |f: &dyn ShardFunction| -> Vec<u32> {
        keys.iter().map(|k| f.shard_for(k).unwrap().0).collect()
    };
    assert_eq!(shards(&PgHash::new(16).unwrap()), PINNED_PG16);
    assert_eq!(shards(&JumpHash::new(16).unwrap()), PINNED_JUMP16);
    assert_eq!(
        shards(&sysmanage_db::shard::Rendezvous::new(16).unwrap()),
        PINNED_HRW16
    );
    assert_eq!(
        shards(&sysmanage_db::shard::Rendezvous::weighted(&[1.0, 2.0, 3.0, 4.0]).unwrap()),
        PINNED_WHRW4
    );
}

/// PostgreSQL 15: `satisfies_hash_partition(t, 16, r, key)` for each key.
const PINNED_PG16: [u32; 6] = [0, 5, 14, 6, 2, 0];
const PINNED_JUMP16: [u32; 6] = [15, 2, 10, 6, 13, 11];
const PINNED_HRW16: [u32; 6] = [7, 11, 1, 10, 5, 1];
const PINNED_WHRW4: [u32; 6] = [3, 3, 1, 1, 3, 1];
