//! sysmanage-cache `TieredCache`: an L1 hit against an L2-only read, in one
//! run.
//!
//! | group | compares |
//! |---|---|
//! | `tiered_memory/l1_hit` vs `tiered_memory/memory_cache` | L1 hit vs `MemoryCache::get` (no server needed) |
//! | `tiered_redis/l1_hit` vs `tiered_redis/l2_only` | L1 hit of a tracked `TieredCache` vs `RedisCache::get` on the local cluster (target ≥ 20× faster) |
//! | `tiered_redis/l1_hit_4tasks` vs `tiered_redis/l2_only_4tasks` | throughput of 4 concurrent readers, 1,000 reads each |
//!
//! The Redis group needs the cluster (`scripts/services up` and
//! `eval "$(scripts/services env)"`); without `SYSMANAGE_REDIS_NODES` only
//! the in-memory group runs and a note says so.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sysmanage_cache::tiered::TrackingConfig;
use sysmanage_cache::{
    ClusterCache, MemoryCache, RedisCache, RedisConfig, SetOptions, TieredCache, TieredConfig,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn config(prefix: &str) -> TieredConfig {
    let mut config = TieredConfig::default();
    config.local_ttl = Duration::from_secs(600);
    config.prefixes = vec![prefix.as_bytes().to_vec()];
    config
}

/// Times `iters` sequential awaits of `f`.
fn timed<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future,
{
    rt.block_on(async {
        let t = Instant::now();
        for _ in 0..iters {
            black_box(f().await);
        }
        t.elapsed()
    })
}

fn memory(c: &mut Criterion) {
    let rt = runtime();
    let l2 = MemoryCache::new();
    let tiered = TieredCache::new(l2.clone(), config("bench:")).expect("tiered");
    let key = b"bench:tiered:hot";
    rt.block_on(async {
        l2.set(key, &[b'x'; 64], SetOptions::default())
            .await
            .expect("set");
        tiered.get(key).await.expect("fill");
    });
    let mut g = c.benchmark_group("tiered_memory");
    g.throughput(Throughput::Elements(1));
    g.bench_function("l1_hit", |b| {
        b.iter_custom(|n| timed(&rt, n, || tiered.get(key)))
    });
    g.bench_function("memory_cache", |b| {
        b.iter_custom(|n| timed(&rt, n, || l2.get(key)))
    });
    g.finish();
    assert!(tiered.stats().l1.hits > 0);
}

fn redis(c: &mut Criterion) {
    let Ok(nodes) = std::env::var("SYSMANAGE_REDIS_NODES") else {
        eprintln!(
            "SYSMANAGE_REDIS_NODES is not set: skipping the Redis benchmarks (scripts/services up)"
        );
        return;
    };
    let nodes: Vec<String> = nodes.split(',').map(str::to_owned).collect();
    let rt = runtime();
    let prefix = format!("bench:tiered:{}:", std::process::id());
    let (l2, tiered) = rt.block_on(async {
        let l2 = RedisCache::connect(RedisConfig::new(nodes))
            .await
            .expect("connect to the cluster");
        let mut tracking = TrackingConfig::default();
        tracking.client_name = "tiered-bench".to_owned();
        let tiered =
            TieredCache::with_tracking(l2.clone(), config(&prefix), tracking).expect("tiered");
        let started = Instant::now();
        while !tiered.stats().coherent {
            assert!(started.elapsed() < Duration::from_secs(20), "tracking");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (l2, tiered)
    });
    let key = format!("{prefix}hot").into_bytes();
    rt.block_on(async {
        l2.set(&key, &[b'x'; 64], SetOptions::default())
            .await
            .expect("set");
        tiered.get(&key).await.expect("fill");
    });
    assert!(tiered.is_cached_locally(&key));

    let mut g = c.benchmark_group("tiered_redis");
    g.throughput(Throughput::Elements(1));
    g.bench_function("l1_hit", |b| {
        b.iter_custom(|n| timed(&rt, n, || tiered.get(&key)))
    });
    g.bench_function("l2_only", |b| {
        b.iter_custom(|n| timed(&rt, n, || l2.get(&key)))
    });
    g.throughput(Throughput::Elements(4_000));
    let concurrent = |read_l1: bool| {
        let (tiered, l2, key) = (tiered.clone(), l2.clone(), key.clone());
        async move {
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let (tiered, l2, key) = (tiered.clone(), l2.clone(), key.clone());
                    tokio::spawn(async move {
                        for _ in 0..1_000 {
                            let v = if read_l1 {
                                tiered.get(&key).await
                            } else {
                                l2.get(&key).await
                            };
                            black_box(v.expect("get"));
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("reader");
            }
        }
    };
    g.sample_size(10);
    g.bench_function("l1_hit_4tasks", |b| {
        b.iter_custom(|n| timed(&rt, n, || concurrent(true)))
    });
    g.bench_function("l2_only_4tasks", |b| {
        b.iter_custom(|n| timed(&rt, n, || concurrent(false)))
    });
    g.finish();
    let stats = tiered.stats();
    println!(
        "tiered stats after the run: l1 hits {}, misses {}, flushes {}",
        stats.l1.hits, stats.l1.misses, stats.l1.flushes
    );
    rt.block_on(l2.delete(&key)).expect("cleanup");
}

criterion_group!(benches, memory, redis);
criterion_main!(benches);
