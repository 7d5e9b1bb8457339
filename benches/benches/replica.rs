//! sysmanage-db replica routing: node selection and routed-query overhead.
//!
//! `replica_pick/<strategy>/<n>`: one replica selection for a
//! `Consistency::Any` read on a `ReplicaRouter` over `n` in-memory replicas
//! (target: power of two choices ≤ 100 ns per pick).
//! `replica_read/memory_any_8`: a whole routed read with a trivial closure
//! (router overhead per query).
//! `select1/{direct,routed}`: `SELECT 1` on standby1's `PgPool` directly and
//! through the router (its only replica), in the same run (target: routed
//! throughput ≥ 0.95 of direct). Needs the local topology
//! (`scripts/services up && eval "$(scripts/services env)"`); without it the
//! group is skipped with a message.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sysmanage_db::replica::{
    Consistency, MemoryCluster, MemoryNode, NodeSpec, PgNodeOptions, ReplicaConfig, ReplicaRouter,
    Strategy, pg_node,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn memory_router(
    rt: &tokio::runtime::Runtime,
    strategy: Strategy,
    n: usize,
) -> ReplicaRouter<MemoryNode> {
    let cluster = MemoryCluster::new();
    let mut config = ReplicaConfig::default();
    config.strategy = strategy;
    config.seed = Some(1);
    let mut b = ReplicaRouter::builder()
        .config(config)
        .monitor(false)
        .primary(NodeSpec::new("primary", cluster.add_primary()));
    for i in 0..n {
        b = b.replica(NodeSpec::new(format!("r{i}"), cluster.add_replica()));
    }
    let router = rt.block_on(b.build()).expect("router");
    // Give the replicas different latencies and loads, as in production.
    for i in 0..200u64 {
        rt.block_on(router.read(Consistency::Any, |_| async move {
            std::thread::sleep(Duration::from_micros(i % 7));
            Ok::<_, sysmanage_db::replica::MemoryError>(())
        }))
        .expect("warm-up read");
    }
    router
}

fn pick(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("replica_pick");
    for (name, strategy) in [
        ("p2c", Strategy::PowerOfTwoChoices),
        ("least_outstanding", Strategy::LeastOutstanding),
        ("weighted_random", Strategy::WeightedRandom),
        ("round_robin", Strategy::RoundRobin),
    ] {
        for n in [2usize, 8, 32] {
            let router = memory_router(&rt, strategy, n);
            let any = Consistency::Any;
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| black_box(router.has_replica_for(black_box(&any))));
            });
        }
    }
    group.finish();

    // A whole routed read with a trivial closure: selection, in-flight
    // accounting, latency and health bookkeeping.
    let mut group = c.benchmark_group("replica_read");
    let router = memory_router(&rt, Strategy::PowerOfTwoChoices, 8);
    group.bench_function("memory_any_8", |b| {
        b.iter(|| {
            rt.block_on(router.read(Consistency::Any, |node| async move {
                Ok::<_, sysmanage_db::replica::MemoryError>(black_box(node.id()))
            }))
            .expect("read")
        });
    });
    group.finish();
}

fn select1(c: &mut Criterion) {
    let (Ok(primary), Ok(standbys)) = (
        std::env::var("SYSMANAGE_PG_PRIMARY_URL"),
        std::env::var("SYSMANAGE_PG_STANDBY_URLS"),
    ) else {
        eprintln!(
            "select1: skipped, SYSMANAGE_PG_PRIMARY_URL / SYSMANAGE_PG_STANDBY_URLS unset \
             (scripts/services up && eval \"$(scripts/services env)\")"
        );
        return;
    };
    let standby = standbys.split(',').next().unwrap_or_default().to_owned();
    let rt = runtime();
    let _in_runtime = rt.enter();
    let mut opts = PgNodeOptions::default();
    opts.max_connections = 4;
    let router = rt
        .block_on(
            ReplicaRouter::builder()
                .primary(pg_node("primary", primary, &opts).expect("primary url"))
                .replica(pg_node("standby1", standby, &opts).expect("standby url"))
                .build(),
        )
        .expect("router");
    let pool = router.node_pool("standby1").expect("pool");
    let direct = || {
        rt.block_on(async {
            let one: i32 = sqlx::query_scalar("select 1")
                .fetch_one(&pool)
                .await
                .expect("select 1");
            black_box(one)
        })
    };
    let routed = || {
        rt.block_on(async {
            let one: i32 = router
                .read(Consistency::Any, |pool| async move {
                    sqlx::query_scalar("select 1").fetch_one(&pool).await
                })
                .await
                .expect("routed select 1");
            black_box(one)
        })
    };
    // The machine is shared: each sample runs direct and routed queries
    // alternately, so both see the same background load, and each benchmark
    // reports its own half.
    let paired = |iters: u64| {
        let (mut d, mut r) = (Duration::ZERO, Duration::ZERO);
        for i in 0..iters {
            if i % 2 == 0 {
                let t = Instant::now();
                direct();
                d += t.elapsed();
                let t = Instant::now();
                routed();
                r += t.elapsed();
            } else {
                let t = Instant::now();
                routed();
                r += t.elapsed();
                let t = Instant::now();
                direct();
                d += t.elapsed();
            }
        }
        (d, r)
    };
    let totals = std::cell::Cell::new((Duration::ZERO, Duration::ZERO));
    let record = |d: Duration, r: Duration| {
        let (td, tr) = totals.get();
        totals.set((td + d, tr + r));
    };
    let mut group = c.benchmark_group("select1");
    group.bench_function("direct", |b| {
        b.iter_custom(|iters| {
            let (d, r) = paired(iters);
            record(d, r);
            d
        });
    });
    group.bench_function("routed", |b| {
        b.iter_custom(|iters| {
            let (d, r) = paired(iters);
            record(d, r);
            r
        });
    });
    group.finish();
    let (d, r) = totals.get();
    eprintln!(
        "select1: routed/direct throughput ratio over all paired samples = {:.3}",
        d.as_secs_f64() / r.as_secs_f64()
    );
    assert_eq!(
        router.status().fallbacks,
        0,
        "routed reads fell back to the primary"
    );
}

criterion_group!(benches, pick, select1);
criterion_main!(benches);
