//! The cost of TLS, measured in one run against the local topology's plain
//! and secure servers (`scripts/services up` and
//! `eval "$(scripts/services env)"`; without the variables the benchmark
//! only prints a note): the plain Redis Cluster against the TLS-only one (an
//! ACL user, certificates verified), and the same PostgreSQL primary in
//! plain text against `sslmode=verify-full`.
//!
//! | group | compares |
//! |---|---|
//! | `tls/redis_get`, `tls/redis_set` | one `GET`/`SET` through `RedisCache`, `plain` vs `tls` (latency) |
//! | `tls/redis_get_x64` | 64 concurrent `GET`s per iteration, `plain` vs `tls` (throughput) |
//! | `tls/redis_connect` | connecting one fred client to one node: TCP (+ TLS handshake + `AUTH`) + `HELLO` |
//! | `tls/pg_select1` | `SELECT 1` on a warm pool, `plain` vs `tls` |
//! | `tls/pg_select1_x16` | 16 concurrent `SELECT 1` per iteration on a pool of 4 (throughput) |
//! | `tls/pg_connect` | a new connection: `plain` (trust), `tls` (trust over TLS), `tls_scram` (TLS and a scram-sha-256 login) |

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fred::interfaces::ClientLike;
use fred::types::Builder;
use sqlx::{ConnectOptions, Connection, PgPool};
use sysmanage_cache::{ClusterCache, RedisCache, RedisConfig, SetOptions};
use sysmanage_core::{Pem, Secret, TlsConfig};
use sysmanage_db::replica::{PgNodeOptions, pg_pool};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

struct Servers {
    redis_plain: Vec<String>,
    redis_tls: Vec<String>,
    redis_user: String,
    redis_password: String,
    ca: String,
    pg_plain: String,
    pg_tls: String,
    pg_password: String,
}

fn servers() -> Option<Servers> {
    let list = |v: String| v.split(',').map(str::to_owned).collect::<Vec<_>>();
    Some(Servers {
        redis_plain: list(var("SYSMANAGE_REDIS_NODES")?),
        redis_tls: list(var("SYSMANAGE_REDIS_TLS_NODES")?),
        redis_user: var("SYSMANAGE_REDIS_USER")?,
        redis_password: var("SYSMANAGE_REDIS_PASSWORD")?,
        ca: var("SYSMANAGE_TLS_CA")?,
        pg_plain: var("SYSMANAGE_PG_PRIMARY_URL")?,
        pg_tls: var("SYSMANAGE_PG_TLS_PRIMARY_URL")?
            .split('?')
            .next()?
            .to_owned(),
        pg_password: var("SYSMANAGE_PG_TLS_PASSWORD")?,
    })
}

fn tls(ca: &str) -> TlsConfig {
    TlsConfig::verify_full().ca(Pem::file(ca))
}

fn redis_configs(s: &Servers) -> [(&'static str, RedisConfig); 2] {
    let mut secure = RedisConfig::new(s.redis_tls.clone());
    secure.username = Some(s.redis_user.clone());
    secure.password = Some(Secret::new(s.redis_password.clone()));
    secure.tls = Some(tls(&s.ca));
    [
        ("plain", RedisConfig::new(s.redis_plain.clone())),
        ("tls", secure),
    ]
}

fn redis(c: &mut Criterion, s: &Servers, rt: &tokio::runtime::Runtime) {
    let caches: Vec<(&str, RedisCache)> = redis_configs(s)
        .into_iter()
        .map(|(name, cfg)| {
            (
                name,
                rt.block_on(RedisCache::connect(cfg)).expect("connect"),
            )
        })
        .collect();
    let keys: Vec<String> = (0..64).map(|i| format!("bench:tls:{i}")).collect();
    let value = "v".repeat(64);
    let entries: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), value.as_str())).collect();
    for (_, cache) in &caches {
        rt.block_on(cache.mset(&entries, None)).expect("preload");
    }

    let mut g = c.benchmark_group("tls/redis_get");
    for (name, cache) in &caches {
        g.bench_function(*name, |b| {
            b.iter(|| {
                rt.block_on(async { black_box(cache.get(keys[0].as_bytes()).await.expect("get")) })
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("tls/redis_set");
    for (name, cache) in &caches {
        g.bench_function(*name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    black_box(
                        cache
                            .set(keys[1].as_bytes(), b"value", SetOptions::default())
                            .await
                            .expect("set"),
                    )
                })
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("tls/redis_get_x64");
    g.throughput(Throughput::Elements(keys.len() as u64));
    for (name, cache) in &caches {
        g.bench_function(*name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let gets = keys.iter().map(|k| {
                        let cache = cache.clone();
                        let k = k.clone();
                        tokio::spawn(async move { cache.get(k.as_bytes()).await.expect("get") })
                    });
                    for t in gets.collect::<Vec<_>>() {
                        black_box(t.await.expect("task"));
                    }
                })
            })
        });
    }
    g.finish();

    // Connecting: the fred configuration the cache itself uses for a node.
    let mut g = c.benchmark_group("tls/redis_connect");
    g.sample_size(30);
    for (name, cache) in &caches {
        let node = cache.routing().primaries()[0].to_owned();
        g.bench_function(*name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let config = cache.fred_config_for(&node).expect("config");
                    let client = Builder::from_config(config).build().expect("client");
                    let task = client.init().await.expect("connect");
                    client.quit().await.expect("quit");
                    let _ = task.await;
                })
            })
        });
    }
    g.finish();
}

fn postgres(c: &mut Criterion, s: &Servers, rt: &tokio::runtime::Runtime) {
    let _guard = rt.enter();
    let mut plain_opts = PgNodeOptions::default();
    plain_opts.max_connections = 4;
    let mut tls_opts = plain_opts.clone();
    tls_opts.password = Some(Secret::new(s.pg_password.clone()));
    tls_opts.tls = Some(tls(&s.ca));
    let pools: Vec<(&str, PgPool)> = vec![
        (
            "plain",
            pg_pool(s.pg_plain.as_str(), &plain_opts).expect("pool"),
        ),
        ("tls", pg_pool(s.pg_tls.as_str(), &tls_opts).expect("pool")),
    ];
    for (_, pool) in &pools {
        // Warm: every connection open before timing.
        rt.block_on(async {
            let held: Vec<_> = futures_acquire(pool, 4).await;
            drop(held);
        });
    }

    let mut g = c.benchmark_group("tls/pg_select1");
    for (name, pool) in &pools {
        g.bench_function(*name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    black_box(
                        sqlx::query_scalar::<_, i32>("select 1")
                            .fetch_one(pool)
                            .await
                            .expect("select 1"),
                    )
                })
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("tls/pg_select1_x16");
    g.throughput(Throughput::Elements(16));
    for (name, pool) in &pools {
        g.bench_function(*name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let queries = (0..16).map(|_| {
                        let pool = pool.clone();
                        tokio::spawn(async move {
                            sqlx::query_scalar::<_, i32>("select 1")
                                .fetch_one(&pool)
                                .await
                                .expect("select 1")
                        })
                    });
                    for t in queries.collect::<Vec<_>>() {
                        black_box(t.await.expect("task"));
                    }
                })
            })
        });
    }
    g.finish();

    // New connections: plain trust, trust over TLS (the postgres role may
    // log in over TLS too), and TLS with a scram-sha-256 login.
    let plain: sqlx::postgres::PgConnectOptions = s.pg_plain.parse().expect("plain url");
    let mut tls_trust_opts = PgNodeOptions::default();
    tls_trust_opts.tls = Some(tls(&s.ca));
    let tls_trust = tls_trust_opts
        .connect_options(&s.pg_plain.as_str().into())
        .expect("tls trust");
    let tls_scram = tls_opts
        .connect_options(&s.pg_tls.as_str().into())
        .expect("tls scram");
    let mut g = c.benchmark_group("tls/pg_connect");
    g.sample_size(30);
    for (name, opts) in [
        ("plain", plain),
        ("tls", tls_trust),
        ("tls_scram", tls_scram),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let conn = opts.connect().await.expect("connect");
                    conn.close().await.expect("close");
                })
            })
        });
    }
    g.finish();
}

async fn futures_acquire(
    pool: &PgPool,
    n: usize,
) -> Vec<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.acquire().await.expect("acquire"));
    }
    held
}

fn cost_of_tls(c: &mut Criterion) {
    let Some(s) = servers() else {
        eprintln!(
            "the local topology's variables are not set: skipping the TLS benchmarks \
             (scripts/services up && eval \"$(scripts/services env)\")"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    redis(c, &s, &rt);
    postgres(c, &s, &rt);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = cost_of_tls
}
criterion_main!(benches);
