//! sysmanage-cache: `slot()`, multi-key reads across slots on the local
//! Redis Cluster, and single-key overhead against the raw fred client.
//!
//! The Redis groups need the cluster (`scripts/services up` and
//! `eval "$(scripts/services env)"`); without `SYSMANAGE_REDIS_NODES` only
//! the `slot` group runs and a note says so.
//!
//! | group | compares |
//! |---|---|
//! | `slot/16B`, `slot/64B` | CRC16 + hash-tag parsing per key |
//! | `mget100/cluster_cache` vs `mget100/sequential_get` | one cross-slot `mget` of 100 keys vs 100 awaited `get`s (target ≥ 10×) |
//! | `mget100/cluster_cache` vs `mget100/fred_pipeline` | vs a hand-written fred pipeline of 100 `GET`s (target ≤ 1.2× its time) |
//! | `single/get|set/{cluster_cache,fred}` | one `GET`/`SET` through `ClusterCache` vs the raw client (target ≥ 0.95 of its throughput) |

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use fred::clients::Client;
use fred::interfaces::{ClientLike, KeysInterface};
use fred::types::config::{Config, ServerConfig};
use fred::types::{Builder, Value};
use sysmanage_cache::{ClusterCache, RedisCache, RedisConfig, SetOptions, slot};

fn slots(c: &mut Criterion) {
    let k16 = b"user:0000123456a".to_vec();
    let k64 = b"tenant:{acme-industries}:sessions:0123456789abcdef0123456789abcd".to_vec();
    assert_eq!((k16.len(), k64.len()), (16, 64));
    c.bench_function("slot/16B", |b| b.iter(|| slot(black_box(&k16))));
    c.bench_function("slot/64B", |b| b.iter(|| slot(black_box(&k64))));
}

fn nodes() -> Option<Vec<String>> {
    let v = std::env::var("SYSMANAGE_REDIS_NODES").ok()?;
    Some(v.split(',').map(str::to_owned).collect())
}

fn redis(c: &mut Criterion) {
    let Some(nodes) = nodes() else {
        eprintln!(
            "SYSMANAGE_REDIS_NODES is not set: skipping the Redis benchmarks (scripts/services up)"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cache = rt
        .block_on(RedisCache::connect(RedisConfig::new(nodes.clone())))
        .expect("connect to the cluster");
    let raw: Client = rt.block_on(async {
        let hosts = nodes
            .iter()
            .filter_map(|n| n.rsplit_once(':'))
            .map(|(h, p)| (h.to_owned(), p.parse::<u16>().expect("port")))
            .collect();
        let client = Builder::from_config(Config {
            server: ServerConfig::new_clustered(hosts),
            ..Config::default()
        })
        .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(1))
        .build()
        .expect("fred client");
        client.init().await.expect("fred connect");
        client
    });
    let keys: Vec<String> = (0..100).map(|i| format!("bench:cache:{i}")).collect();
    let nslots: std::collections::BTreeSet<u16> = keys.iter().map(|k| slot(k.as_bytes())).collect();
    assert!(nslots.len() > 90, "keys must span many slots");
    let entries: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), "x".repeat(64))).collect();
    rt.block_on(cache.mset(&entries, None)).expect("preload");

    // Each variant is timed while the variants it is compared with run
    // interleaved, untimed, between its iterations: on a shared machine the
    // compared numbers then see the same load.
    let mget = || async { black_box(cache.mget(&keys).await.expect("mget")) };
    let pipeline = || async {
        let p = raw.pipeline();
        for k in &keys {
            let _: () = p.get(k.as_str()).await.expect("queue");
        }
        let v: Vec<Value> = p.all().await.expect("pipeline");
        black_box(v)
    };
    let sequential = || async {
        for k in &keys {
            black_box(cache.get(k.as_bytes()).await.expect("get"));
        }
    };
    let mut g = c.benchmark_group("mget100");
    g.bench_function("cluster_cache", |b| {
        b.iter_custom(|n| {
            interleaved(&rt, n, mget, || async {
                pipeline().await;
                sequential().await;
            })
        })
    });
    g.bench_function("fred_pipeline", |b| {
        b.iter_custom(|n| {
            interleaved(&rt, n, pipeline, || async {
                mget().await;
                sequential().await;
            })
        })
    });
    g.bench_function("sequential_get", |b| {
        b.iter_custom(|n| {
            interleaved(&rt, n, sequential, || async {
                mget().await;
                pipeline().await;
            })
        })
    });
    g.finish();

    let key = "bench:cache:single";
    let cache_get = || async { black_box(cache.get(key.as_bytes()).await.expect("get")) };
    let fred_get = || async { black_box(raw.get::<Option<Vec<u8>>, _>(key).await.expect("get")) };
    let cache_set = || async {
        black_box(
            cache
                .set(key.as_bytes(), b"value", SetOptions::default())
                .await
                .expect("set"),
        )
    };
    let fred_set = || async {
        raw.set::<(), _, _>(key, "value", None, None, false)
            .await
            .expect("set");
    };
    let mut g = c.benchmark_group("single");
    g.bench_function("get/cluster_cache", |b| {
        b.iter_custom(|n| interleaved(&rt, n, cache_get, fred_get))
    });
    g.bench_function("get/fred", |b| {
        b.iter_custom(|n| interleaved(&rt, n, fred_get, cache_get))
    });
    g.bench_function("set/cluster_cache", |b| {
        b.iter_custom(|n| interleaved(&rt, n, cache_set, fred_set))
    });
    g.bench_function("set/fred", |b| {
        b.iter_custom(|n| interleaved(&rt, n, fred_set, cache_set))
    });
    g.finish();
}

/// Runs `measured` `iters` times, each followed by an untimed `other`, and
/// returns the time spent in `measured` only.
fn interleaved<A, FA, B, FB>(
    rt: &tokio::runtime::Runtime,
    iters: u64,
    mut measured: A,
    mut other: B,
) -> Duration
where
    A: FnMut() -> FA,
    FA: std::future::Future,
    B: FnMut() -> FB,
    FB: std::future::Future,
{
    rt.block_on(async {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let t = Instant::now();
            black_box(measured().await);
            total += t.elapsed();
            black_box(other().await);
        }
        total
    })
}

criterion_group!(benches, slots, redis);
criterion_main!(benches);
