//! `TieredCache`: an in-process L1 over the local Redis Cluster, kept
//! coherent by RESP3 client tracking.
//!
//! Start the cluster with `scripts/services up`, then
//! `cargo run -p sysmanage-examples --features redis --example tiered_cache`.
//!
//! Two instances (think: two application servers) share the cluster. Four
//! readers hammer instance B with a skewed key distribution (most reads are
//! L1 hits); instance A then rewrites keys B has cached, and every read B
//! makes after its L1 entry was invalidated is checked for a stale value;
//! finally 100 concurrent `get_or_load` calls for one cold key show a single
//! origin load. The last line is
//! `summary: reads=… l1_hit_ratio=… stale_reads_after_invalidation=… loads_per_key_under_stampede=…`,
//! and the exit status is non-zero when a stale read was seen or the
//! stampede loaded more than once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sysmanage_cache::tiered::TrackingConfig;
use sysmanage_cache::{
    ClusterCache, RedisCache, RedisConfig, SetOptions, TieredCache, TieredConfig,
};
use sysmanage_core::SplitMix64;
use sysmanage_examples::{init_tracing, section};

const KEYS: usize = 200;
const READS_PER_READER: usize = 5_000;

async fn instance(
    nodes: &[String],
    prefix: &str,
    name: &str,
) -> Result<TieredCache<RedisCache>, Box<dyn std::error::Error>> {
    let l2 = RedisCache::connect(RedisConfig::new(nodes.iter().cloned())).await?;
    let mut config = TieredConfig::default();
    config.local_ttl = Duration::from_secs(10);
    config.prefixes = vec![prefix.as_bytes().to_vec()];
    let mut tracking = TrackingConfig::default();
    tracking.client_name = name.to_owned();
    let cache = TieredCache::with_tracking(l2, config, tracking)?;
    let started = Instant::now();
    while !cache.stats().coherent {
        if started.elapsed() > Duration::from_secs(20) {
            return Err(format!("{name}: tracking not established on every primary").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{name}: tracking {} primaries after {:?}",
        cache.stats().tracking.tracked_nodes,
        started.elapsed()
    );
    Ok(cache)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let nodes: Vec<String> = std::env::var("SYSMANAGE_REDIS_NODES")
        .unwrap_or_else(|_| {
            (7000..7006)
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .split(',')
        .map(str::to_owned)
        .collect();
    let prefix: &'static str =
        Box::leak(format!("example:tiered:{}:", std::process::id()).into_boxed_str());
    let key = move |i: usize| format!("{prefix}item:{i}").into_bytes();

    section("two instances with client tracking");
    let a = instance(&nodes, prefix, "tiered-example-a").await?;
    let b = instance(&nodes, prefix, "tiered-example-b").await?;
    let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..KEYS)
        .map(|i| (key(i), format!("v0-{i}").into_bytes()))
        .collect();
    for r in a.mset(&entries, Some(Duration::from_secs(300))).await? {
        r?;
    }

    section("skewed reads through B");
    let reads = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let readers: Vec<_> = (0..4u64)
        .map(|r| {
            let (b, reads, key) = (b.clone(), reads.clone(), key);
            tokio::spawn(async move {
                let mut rng = SplitMix64::new(r + 1);
                for _ in 0..READS_PER_READER {
                    // 90 % of reads on 10 % of the keys.
                    let u = rng.next_f64();
                    let hot = rng.next_f64() < 0.9;
                    let span = if hot { KEYS / 10 } else { KEYS };
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let i = ((u * span as f64) as usize).min(span - 1);
                    b.get(&key(i)).await?;
                    reads.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, sysmanage_cache::CacheError>(())
            })
        })
        .collect();
    for r in readers {
        r.await??;
    }
    let elapsed = started.elapsed();
    let n = reads.load(Ordering::Relaxed);
    println!(
        "{n} reads in {elapsed:?} ({:.0} reads/s)",
        n as f64 / elapsed.as_secs_f64()
    );

    section("writes through A invalidate B");
    let mut stale = 0u64;
    let mut lags = Vec::new();
    for i in 0..50 {
        let k = key(i);
        b.get(&k).await?; // cached in B's L1
        let version = format!("v1-{i}");
        let written = Instant::now();
        a.set(
            &k,
            version.as_bytes(),
            SetOptions::ttl(Duration::from_secs(300)),
        )
        .await?;
        // Wait until B's L1 entry is gone (the invalidation arrived)…
        while b.is_cached_locally(&k) {
            if written.elapsed() > Duration::from_secs(10) {
                return Err("an invalidation did not arrive within the local TTL".into());
            }
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        lags.push(written.elapsed());
        // …then no read through B may return the old version.
        for _ in 0..5 {
            let got = b.get(&k).await?;
            reads.fetch_add(1, Ordering::Relaxed);
            if got.as_deref() != Some(version.as_bytes()) {
                stale += 1;
            }
        }
    }
    lags.sort();
    println!(
        "invalidation reached B after a write: median {:?}, max {:?}",
        lags[lags.len() / 2],
        lags[lags.len() - 1]
    );

    section("stampede: 100 concurrent misses of one key");
    let cold = format!("{prefix}cold").into_bytes();
    let loads = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let (b, cold, loads, barrier) =
                (b.clone(), cold.clone(), loads.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                b.get_or_load(&cold, Some(Duration::from_secs(60)), || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await; // a slow query
                    Ok(Some(b"computed".to_vec()))
                })
                .await
            })
        })
        .collect();
    for c in callers {
        c.await??;
    }
    let loads = loads.load(Ordering::SeqCst);
    println!("origin loads: {loads}; B stats: {:?}", b.stats().origin);

    section("stats");
    let stats = b.stats();
    println!("B: {}", serde_json::to_string(&stats)?);
    let mut keys: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
    keys.push(cold);
    a.mdel(&keys).await?;

    // Every read through B: the skewed phase, the checks after each
    // invalidation, and the stampede.
    let reads = stats.l1.hits + stats.l1.misses + stats.l1.bypassed;
    #[allow(clippy::cast_precision_loss)]
    let ratio = stats.l1.hits as f64 / reads.max(1) as f64;
    println!(
        "summary: reads={reads} l1_hit_ratio={ratio:.3} stale_reads_after_invalidation={stale} loads_per_key_under_stampede={loads}"
    );
    if stale > 0 || loads != 1 {
        std::process::exit(1);
    }
    Ok(())
}
