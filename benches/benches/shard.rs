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

criterion_group!(benches, shard_for, fan_out);
criterion_main!(benches);
