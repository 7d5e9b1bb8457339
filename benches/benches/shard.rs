//! sysmanage-db sharding: shard-for-key cost and fan-out overhead.
//!
//! `shard_for/*`: one `ShardRouter::shard_for` call on a `PgHash(8)` router
//! (targets: ≤ 20 ns int8, ≤ 60 ns 36-character text).
//! `fan_out/*`: eight in-memory shards with latencies 1–8 ms; the fan-out's
//! latency against the slowest shard alone, in the same run (target ≤ 1.2×).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sysmanage_db::shard::{JumpHash, MemoryNodeSet, PgHash, Rendezvous, ShardKey, ShardRouter};

fn router() -> ShardRouter<MemoryNodeSet<u8>> {
    let sets: Vec<MemoryNodeSet<u8>> = (0..8)
        .map(|i| MemoryNodeSet::new(format!("m{i}")))
        .collect();
    let mut b = ShardRouter::builder(PgHash::new(8).expect("modulus"));
    for s in &sets {
        b = b.node_set(s.name(), s.clone());
    }
    b.build().expect("router")
}

fn shard_for(c: &mut Criterion) {
    let r = router();
    let text = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"; // 36 characters
    let uuid = ShardKey::parse_uuid(text).expect("uuid");
    let mut g = c.benchmark_group("shard_for");
    let mut n: i64 = 0x1234_5678;
    g.bench_function("pg_hash_int8", |b| {
        b.iter(|| {
            n = n.wrapping_add(0x9e37_79b9);
            r.shard_for(black_box(n))
        })
    });
    g.bench_function("pg_hash_text36", |b| {
        b.iter(|| r.shard_for(black_box(text)))
    });
    g.bench_function("pg_hash_uuid", |b| b.iter(|| r.shard_for(black_box(uuid))));
    let jump = JumpHash::new(64).expect("jump");
    let hrw = Rendezvous::new(16).expect("hrw");
    g.bench_function("jump64_int8", |b| {
        b.iter(|| {
            sysmanage_db::shard::ShardFunction::shard_for(&jump, &black_box(ShardKey::Int(n)))
        })
    });
    g.bench_function("rendezvous16_int8", |b| {
        b.iter(|| sysmanage_db::shard::ShardFunction::shard_for(&hrw, &black_box(ShardKey::Int(n))))
    });
    g.finish();
}

fn fan_out(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let sets: Vec<MemoryNodeSet<u8>> = (0..8)
        .map(|i| MemoryNodeSet::new(format!("m{i}")))
        .collect();
    let mut b = ShardRouter::builder(PgHash::new(8).expect("modulus")).max_concurrency(8);
    for (i, s) in sets.iter().enumerate() {
        s.set_latency(Duration::from_millis(i as u64 + 1));
        b = b.node_set(s.name(), s.clone());
    }
    let router = b.build().expect("router");
    let slowest = sets[7].clone();
    let mut g = c.benchmark_group("fan_out");
    g.sample_size(30);
    g.bench_function("slowest_single_shard_8ms", |b| {
        b.iter(|| rt.block_on(async { slowest.query(|rows| rows.len()).await }))
    });
    g.bench_function("fan_out_8_shards_1_to_8ms", |b| {
        b.iter(|| {
            rt.block_on(async {
                router
                    .fan_out(|ctx| async move { ctx.nodes().query(|rows| rows.len()).await })
                    .await
                    .into_complete()
            })
        })
    });
    g.finish();
}

/// The same comparison against the local PostgreSQL primary, when its
/// address is in the environment (`eval "$(scripts/services env)"`): four
/// shards whose query is `pg_sleep` of 1, 2, 3 and 4 ms, each through its
/// own pool. Without the topology this group reports that and measures
/// nothing.
fn fan_out_postgres(c: &mut Criterion) {
    let Ok(url) = std::env::var("SYSMANAGE_PG_PRIMARY_URL") else {
        eprintln!(
            "fan_out_postgres: SYSMANAGE_PG_PRIMARY_URL is not set; start the topology with \
             `scripts/services up` and `eval \"$(scripts/services env)\"` to measure it"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut b = ShardRouter::builder(PgHash::new(4).expect("modulus")).max_concurrency(4);
    for i in 0..4 {
        let pool = rt
            .block_on(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .connect(&url),
            )
            .expect("connect to the PostgreSQL primary");
        b = b.node_set(format!("pg{i}"), pool);
    }
    let router = b.build().expect("router");
    let sleep = |ctx: sysmanage_db::shard::ShardCtx<sqlx::PgPool>| async move {
        let secs = f64::from(ctx.shard().0 + 1) / 1000.0;
        sqlx::query("SELECT pg_sleep($1)")
            .bind(secs)
            .execute(ctx.nodes())
            .await
            .map(drop)
    };
    let mut g = c.benchmark_group("fan_out_postgres");
    g.sample_size(30);
    g.bench_function("slowest_single_shard_4ms", |b| {
        b.iter(|| rt.block_on(router.run_on(sysmanage_db::ShardId(3), sleep)))
    });
    g.bench_function("fan_out_4_shards_1_to_4ms", |b| {
        b.iter(|| rt.block_on(async { router.fan_out(sleep).await.into_complete() }))
    });
    g.finish();
}

criterion_group!(benches, shard_for, fan_out, fan_out_postgres);
criterion_main!(benches);
