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
//! then A keeps writing and B keeps reading while a primary is killed with
//! SIGKILL (and restarted) and a replica is promoted with `CLUSTER
//! FAILOVER`: every read through B must see each write acknowledged more
//! than the tracking heartbeat before it started, and nothing may fail;
//! finally 100 concurrent `get_or_load` calls for one cold key show a single
//! origin load. The last line is
//! `summary: reads=… l1_hit_ratio=… stale_reads_after_invalidation=… errors=… loads_per_key_under_stampede=… kills=… failovers=…`,
//! and the exit status is non-zero when a stale read or an error was seen
//! or the stampede loaded more than once.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sysmanage_cache::stats::Role;
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

fn services(args: &[&str]) -> Result<(), String> {
    let script = std::env::var("SYSMANAGE_SERVICES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services").to_owned());
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`services {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

async fn blocking(args: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        services(&args)
    })
    .await??;
    Ok(())
}

/// Versions written through A and when each was acknowledged, per key.
type Acks = Arc<Mutex<HashMap<Vec<u8>, Vec<(u64, Instant)>>>>;

/// What the reader through B saw while the faults ran.
#[derive(Default)]
struct Seen {
    stale: u64,
    errors: u64,
    max_lag: Duration,
}

/// A writes new versions of `keys` until `stop`.
async fn write_loop(
    a: TieredCache<RedisCache>,
    keys: Vec<Vec<u8>>,
    acks: Acks,
    stop: Arc<AtomicBool>,
) -> u64 {
    let (mut version, mut errors) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        for k in &keys {
            version += 1;
            match a
                .set(k, version.to_string().as_bytes(), SetOptions::default())
                .await
            {
                Ok(_) => acks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(k.clone())
                    .or_default()
                    .push((version, Instant::now())),
                Err(e) => {
                    eprintln!("write through A failed: {e}");
                    errors += 1;
                }
            }
        }
    }
    errors
}

/// B reads `keys` until `stop`; a read is stale when it returns a version
/// older than one acknowledged more than `bound` before the read started.
async fn read_loop(
    b: TieredCache<RedisCache>,
    keys: Vec<Vec<u8>>,
    acks: Acks,
    stop: Arc<AtomicBool>,
    bound: Duration,
) -> Seen {
    let mut seen = Seen::default();
    while !stop.load(Ordering::Relaxed) {
        for (i, k) in keys.iter().enumerate() {
            if i % 20 == 0 {
                // Paced: a loop of L1 hits that never waits would starve
                // the runtime's timers.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let started = Instant::now();
            let got = match b.get(k).await {
                Ok(v) => v
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0),
                Err(e) => {
                    eprintln!("read through B failed: {e}");
                    seen.errors += 1;
                    continue;
                }
            };
            let newer = acks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(k)
                .and_then(|vs| {
                    vs.iter()
                        .find(|(v, at)| *v > got && *at < started)
                        .map(|(_, at)| *at)
                });
            if let Some(at) = newer {
                let lag = started.duration_since(at);
                seen.max_lag = seen.max_lag.max(lag);
                if lag > bound {
                    seen.stale += 1;
                }
            }
        }
    }
    seen
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

    // The hit ratio of the read phases above; during the faults A rewrites
    // every key B reads, so almost nothing can be served from L1 there.
    let steady = b.stats();
    section("faults: a primary killed, a replica promoted");
    let bound = TrackingConfig::default().heartbeat;
    let fault_keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| format!("{prefix}fault:{i}").into_bytes())
        .collect();
    let acks: Acks = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_loop(
        a.clone(),
        fault_keys.clone(),
        acks.clone(),
        stop.clone(),
    ));
    let reader = tokio::spawn(read_loop(
        b.clone(),
        fault_keys.clone(),
        acks.clone(),
        stop.clone(),
        bound,
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let layout = a.l2().cluster_nodes().await?;
    let victim = layout
        .iter()
        .find(|n| {
            n.role == Role::Primary
                && n.slot_count() > 0
                && layout.iter().any(|r| r.primary_id.as_ref() == Some(&n.id))
        })
        .ok_or("no primary with a replica")?;
    let vport = victim
        .addr
        .rsplit_once(':')
        .map_or("", |(_, p)| p)
        .to_owned();
    println!("SIGKILL of primary {}", victim.addr);
    blocking(vec!["redis-kill".into(), vport.clone()]).await?;
    blocking(vec!["redis-wait-failover".into(), vport.clone()]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    blocking(vec!["redis-start".into(), vport.clone()]).await?;
    blocking(vec!["redis-wait".into()]).await?;
    println!("{} restarted; it rejoined as a replica", victim.addr);
    let kills = 1;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let layout = a.l2().cluster_nodes().await?;
    let replica = layout
        .iter()
        .find(|n| n.role == Role::Replica)
        .ok_or("no replica")?;
    let rport = replica
        .addr
        .rsplit_once(':')
        .map_or("", |(_, p)| p)
        .to_owned();
    println!("CLUSTER FAILOVER on replica {}", replica.addr);
    blocking(vec!["redis-failover".into(), rport]).await?;
    let failovers = 1;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let write_errors = writer.await?;
    let seen = reader.await?;
    println!(
        "through the faults: {} stale reads (bound {bound:?}), longest lag of a read behind an acknowledged write {:?}, {} read errors, {write_errors} write errors",
        seen.stale, seen.max_lag, seen.errors
    );
    stale += seen.stale;
    let errors = seen.errors + write_errors;
    a.mdel(&fault_keys).await?;

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
    // invalidation, the faults and the stampede; the hit ratio is that of
    // the steady phases before the faults.
    let reads = stats.l1.hits + stats.l1.misses + stats.l1.bypassed;
    let steady_reads = steady.l1.hits + steady.l1.misses + steady.l1.bypassed;
    #[allow(clippy::cast_precision_loss)]
    let ratio = steady.l1.hits as f64 / steady_reads.max(1) as f64;
    println!(
        "summary: reads={reads} l1_hit_ratio={ratio:.3} stale_reads_after_invalidation={stale} errors={errors} loads_per_key_under_stampede={loads} kills={kills} failovers={failovers}"
    );
    if stale > 0 || errors > 0 || loads != 1 {
        std::process::exit(1);
    }
    Ok(())
}
