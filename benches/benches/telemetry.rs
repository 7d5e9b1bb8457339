//! The cost of recording metrics on the hot paths: each operation without a
//! recorder and with `metrics-exporter-prometheus`'s recorder installed, in
//! one run (`<group>/no_recorder` vs `<group>/prometheus`).
//!
//! | group | what |
//! |---|---|
//! | `telemetry_pick` | `ReplicaRouter` replica selection for a `Consistency::Any` read over 8 in-memory replicas (records nothing) |
//! | `telemetry_read` | a whole routed read (selection, per-node read counter and latency histogram) |
//! | `telemetry_slot` | the Redis key slot of a 16-byte key (records nothing) |
//! | `telemetry_l1_hit` | a `TieredCache` L1 hit over the in-memory cache (the L1 hit counter) |
//! | `telemetry_decide` | one `Hpa` decision, 1 metric (pure: records nothing) |
//! | `telemetry_tick` | one `Controller` pass over in-memory metrics and target (replica gauges, decision and reason counters) |
//!
//! The recorder is installed thread-locally (`metrics::with_local_recorder`)
//! around building each object and measuring it, on a current-thread runtime.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use metrics_exporter_prometheus::PrometheusBuilder;
use sysmanage_cache::slot;
use sysmanage_cache::{ClusterCache, MemoryCache, SetOptions, TieredCache, TieredConfig};
use sysmanage_core::{ManualClock, Timestamp};
use sysmanage_db::replica::{
    Consistency, MemoryCluster, MemoryError, MemoryNode, NodeSpec, ReplicaConfig, ReplicaRouter,
};
use sysmanage_scaling::{
    Controller, Hpa, HpaSpec, InMemoryMetrics, InMemoryTarget, MetricSpec, MetricValue, Observation,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn router(rt: &tokio::runtime::Runtime) -> ReplicaRouter<MemoryNode> {
    let cluster = MemoryCluster::new();
    let mut config = ReplicaConfig::default();
    config.seed = Some(1);
    let mut b = ReplicaRouter::builder()
        .config(config)
        .monitor(false)
        .primary(NodeSpec::new("primary", cluster.add_primary()));
    for i in 0..8 {
        b = b.replica(NodeSpec::new(format!("r{i}"), cluster.add_replica()));
    }
    let router = rt.block_on(b.build()).expect("router");
    rt.block_on(router.probe_all());
    router
}

fn tiered(rt: &tokio::runtime::Runtime) -> TieredCache<MemoryCache> {
    let mut config = TieredConfig::default();
    config.local_ttl = Duration::from_secs(600);
    let cache = TieredCache::new(MemoryCache::new(), config).expect("tiered");
    rt.block_on(async {
        cache
            .set(b"hot", &[b'x'; 64], SetOptions::default())
            .await
            .expect("set");
        cache.get(b"hot").await.expect("fill L1");
    });
    cache
}

fn hpa_obs() -> (Hpa, Observation) {
    let hpa = Hpa::new(HpaSpec::new(
        1,
        100,
        vec![MetricSpec::resource_utilization("cpu", 60)],
    ))
    .expect("spec");
    let obs = Observation::new(10).reading("cpu", MetricValue::Average(75.0));
    (hpa, obs)
}

/// Runs `bench` once without a recorder and once inside a Prometheus
/// recorder's scope, under `<group>/no_recorder` and `<group>/prometheus`.
fn both(c: &mut Criterion, group: &str, mut bench: impl FnMut(&mut criterion::Bencher<'_>)) {
    let mut g = c.benchmark_group(group);
    g.bench_function("no_recorder", &mut bench);
    let recorder = PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&recorder, || {
        g.bench_function("prometheus", &mut bench);
    });
    g.finish();
}

fn hot_paths(c: &mut Criterion) {
    let rt = runtime();
    let any = Consistency::Any;

    // Objects are built inside the measured closure's first call so that
    // their handles come from the recorder in scope.
    both(c, "telemetry_pick", |b| {
        let router = router(&rt);
        b.iter(|| black_box(router.has_replica_for(black_box(&any))));
    });
    both(c, "telemetry_read", |b| {
        let router = router(&rt);
        b.iter(|| {
            rt.block_on(router.read(Consistency::Any, |node| async move {
                Ok::<_, MemoryError>(black_box(node.id()))
            }))
            .expect("read")
        });
    });
    let key = [7u8; 16];
    both(c, "telemetry_slot", |b| b.iter(|| slot(black_box(&key))));
    both(c, "telemetry_l1_hit", |b| {
        let cache = tiered(&rt);
        b.iter(|| rt.block_on(cache.get(black_box(b"hot"))).expect("get"));
    });
    both(c, "telemetry_decide", |b| {
        let (hpa, obs) = hpa_obs();
        let now = Timestamp::from_secs(1_700_000_000);
        b.iter_batched_ref(
            || hpa.clone(),
            |h| black_box(h.decide(black_box(&obs), now).expect("decide")),
            criterion::BatchSize::SmallInput,
        );
    });
    both(c, "telemetry_tick", |b| {
        let (hpa, obs) = hpa_obs();
        let metrics = Arc::new(InMemoryMetrics::new(obs));
        let target = Arc::new(InMemoryTarget::new(10));
        let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
        let mut ctl = Controller::new(
            hpa,
            metrics,
            target,
            Arc::new(clock.clone()),
            Duration::from_secs(15),
        )
        .expect("controller");
        b.iter(|| {
            clock.advance(Duration::from_secs(15));
            black_box(rt.block_on(ctl.tick()).expect("tick"))
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = hot_paths
}
criterion_main!(benches);
