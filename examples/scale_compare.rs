//! Side by side, in one run: the scaling executor
//! (`sysmanage_cache::redis::scale`) against `redis-cli --cluster reshard`,
//! moving the same slots holding the same keys between the same two
//! primaries, with a client measuring its latency during each move.
//!
//! Start the cluster with `scripts/services up`, then
//! `cargo run --release -p sysmanage-examples --features redis --example scale_compare`
//! (`SCALE_COMPARE_SLOTS`, `SCALE_COMPARE_KEYS_PER_SLOT`,
//! `SCALE_COMPARE_VALUE_BYTES` and `SCALE_COMPARE_ROUNDS` change the size;
//! defaults 1,000 slots × 100 keys of 100 bytes, 2 rounds;
//! `SCALE_COMPARE_GROUP`, `_GROUP_KEYS`, `_PER_SOURCE`, `_PIPELINE`,
//! `_KEYS_PER_MIGRATE` and `_PAUSE_US` override the executor's settings;
//! `SCALE_COMPARE_PROBE_OUTSIDE=1` aims the latency probe at keys outside
//! the moving slots).
//!
//! Slots `0..N` start on the primary serving slot 0 (A; the executor gathers
//! them there first if needed, untimed). Each round moves
//! them A → B and back twice: once with redis-cli (its defaults:
//! `--cluster-pipeline 10`, which takes the source's lowest slots, i.e.
//! exactly `0..N`) and once with the executor (`ScaleTarget::move_slots`,
//! default `ScaleConfig`), alternating which tool goes first. While each
//! move runs, four client tasks GET and SET keys of the moving slots
//! through `RedisCache`; their p50/p99/max latency is reported per move.
//! Every key is checked at the end. The last line is
//! `summary: executor_s=… redis_cli_s=… ratio=… executor_p99_ms=… redis_cli_p99_ms=… errors=… lost_keys=…`.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sysmanage_cache::redis::scale::{ScaleConfig, ScaleTarget, Scaler};
use sysmanage_cache::{ClusterCache, RedisCache, RedisConfig, SetOptions, slot};
use sysmanage_examples::{init_tracing, section};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn nodes() -> Vec<String> {
    std::env::var("SYSMANAGE_REDIS_NODES")
        .unwrap_or_else(|_| {
            (7000..7006)
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// Latencies of the probe, in microseconds, while one move runs.
#[derive(Default)]
struct Probe {
    samples: Mutex<Vec<u64>>,
    errors: AtomicU64,
    recording: AtomicBool,
}

impl Probe {
    fn take(&self) -> Vec<u64> {
        let mut v = std::mem::take(
            &mut *self
                .samples
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        v.sort_unstable();
        v
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn probe(
    cache: RedisCache,
    keys: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
    probe: Arc<Probe>,
    seed: usize,
) {
    let mut i = seed * 7919;
    while !stop.load(Ordering::Relaxed) {
        let k = &keys[i % keys.len()];
        i += 13;
        let t = Instant::now();
        let ok = if i.is_multiple_of(2) {
            cache
                .get(k.as_bytes())
                .await
                .map(|v| v.is_some())
                .unwrap_or(false)
        } else {
            cache
                .set(k.as_bytes(), b"probe", SetOptions::default())
                .await
                .is_ok()
        };
        let us = t.elapsed().as_micros() as u64;
        if !ok {
            probe.errors.fetch_add(1, Ordering::Relaxed);
        }
        if probe.recording.load(Ordering::Relaxed) {
            probe
                .samples
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(us);
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

fn redis_cli_reshard(seed: &str, from: &str, to: &str, slots: u64) -> Result<(), String> {
    let out = Command::new("redis-cli")
        .args([
            "--cluster",
            "reshard",
            seed,
            "--cluster-from",
            from,
            "--cluster-to",
            to,
        ])
        .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
        .output()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "redis-cli reshard failed: {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(())
}

/// CPU seconds of this process and of its waited-for children (redis-cli),
/// from `/proc/self/stat` (0 where it cannot be read).
fn cpu_secs() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // Fields 14-17 (utime, stime, cutime, cstime) are at 11-14 after the
    // command name; clock ticks are 100 per second on Linux.
    let get = |i: usize| f.get(i).copied().unwrap_or(0.0) / 100.0;
    (get(11) + get(12), get(13) + get(14))
}

struct Move {
    tool: &'static str,
    secs: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let n_slots = env_num("SCALE_COMPARE_SLOTS", 1000).clamp(1, 5000) as u16;
    let per_slot = env_num("SCALE_COMPARE_KEYS_PER_SLOT", 100).clamp(0, 100_000);
    let value_bytes = env_num("SCALE_COMPARE_VALUE_BYTES", 100).clamp(1, 1 << 20) as usize;
    let rounds = env_num("SCALE_COMPARE_ROUNDS", 2).clamp(1, 10);
    let cache = RedisCache::connect(RedisConfig::new(nodes()))
        .await
        .map_err(|e| {
            format!("cannot reach the Redis Cluster ({e}); start it with `scripts/services up`")
        })?;
    let mut config = ScaleConfig::default();
    // Overrides for tuning runs; the documented figures use the defaults.
    if let Ok(v) = std::env::var("SCALE_COMPARE_GROUP") {
        config.slots_per_group = v.parse()?;
    }
    if let Ok(v) = std::env::var("SCALE_COMPARE_GROUP_KEYS") {
        config.group_keys = v.parse()?;
    }
    if let Ok(v) = std::env::var("SCALE_COMPARE_PER_SOURCE") {
        config.parallel_per_source = v.parse()?;
    }
    if let Ok(v) = std::env::var("SCALE_COMPARE_PAUSE_US") {
        config.pause_between_slots = Duration::from_micros(v.parse()?);
    }
    if let Ok(v) = std::env::var("SCALE_COMPARE_PIPELINE") {
        config.migrate_pipeline = v.parse()?;
    }
    if let Ok(v) = std::env::var("SCALE_COMPARE_KEYS_PER_MIGRATE") {
        config.keys_per_migrate = v.parse()?;
    }
    println!("executor settings: {config:?}");
    let scaler = Scaler::new(RedisConfig::new(nodes()), config)?;

    section("layout");
    let view = scaler.view().await?;
    let a = view.owner(0).ok_or("slot 0 has no owner")?.clone();
    let b = view
        .primaries()
        .filter(|n| n.slots > 0 && n.id != a.id)
        .max_by_key(|n| n.addr.clone())
        .ok_or("a second primary is needed")?
        .clone();
    if (0..n_slots).any(|s| view.owner(s).map(|o| o.id.as_str()) != Some(a.id.as_str())) {
        // Not timed: gather the slots on A first.
        scaler
            .execute(&ScaleTarget::move_slots(0..n_slots, a.addr.clone()))
            .await?;
    }
    println!(
        "moving slots 0..{n_slots} between A={} and B={}",
        a.addr, b.addr
    );

    section("load");
    let value = "v".repeat(value_bytes);
    let prefix = format!("scale_compare:{}:", std::process::id());
    let mut keys: Vec<String> = Vec::new();
    let mut per: Vec<u64> = vec![0; usize::from(n_slots)];
    let mut i = 0u64;
    let want = u64::from(n_slots) * per_slot;
    while (keys.len() as u64) < want {
        let k = format!("{prefix}{i}");
        i += 1;
        let s = slot(k.as_bytes());
        if s < n_slots && per[usize::from(s)] < per_slot {
            per[usize::from(s)] += 1;
            keys.push(k);
        }
    }
    for chunk in keys.chunks(5000) {
        let entries: Vec<(&str, &str)> =
            chunk.iter().map(|k| (k.as_str(), value.as_str())).collect();
        for r in cache.mset(&entries, None).await? {
            r?;
        }
    }
    println!(
        "{} keys of {value_bytes} bytes in {n_slots} slots",
        keys.len()
    );
    // The probe reads and writes keys of its own in the moving slots.
    let probe_keys: Arc<Vec<String>> = Arc::new(
        (0..)
            .map(|i| format!("{prefix}probe:{i}"))
            .filter(|k| {
                (slot(k.as_bytes()) < n_slots)
                    != std::env::var("SCALE_COMPARE_PROBE_OUTSIDE").is_ok()
            })
            .take(2000)
            .collect(),
    );
    for chunk in probe_keys.chunks(1000) {
        let entries: Vec<(&str, &str)> = chunk.iter().map(|k| (k.as_str(), "probe")).collect();
        for r in cache.mset(&entries, None).await? {
            r?;
        }
    }
    let stats = Arc::new(Probe::default());
    let stop = Arc::new(AtomicBool::new(false));
    let probes: Vec<_> = (0..4)
        .map(|t| {
            tokio::spawn(probe(
                cache.clone(),
                probe_keys.clone(),
                stop.clone(),
                stats.clone(),
                t,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    section("moves");
    let mut moves: Vec<Move> = Vec::new();
    let seed = a.addr.clone();
    for round in 0..rounds {
        let cli_first = round % 2 == 0;
        for leg in 0..2 {
            let use_cli = (leg == 0) == cli_first;
            // Leg 0 moves A → B, leg 1 moves B → A.
            let (from, to) = if leg == 0 { (&a, &b) } else { (&b, &a) };
            stats.take();
            stats.recording.store(true, Ordering::Relaxed);
            let t = Instant::now();
            let cpu0 = cpu_secs();
            if use_cli {
                let (seed, f, to_id) = (seed.clone(), from.id.clone(), to.id.clone());
                let n = u64::from(n_slots);
                tokio::task::spawn_blocking(move || redis_cli_reshard(&seed, &f, &to_id, n))
                    .await??;
            } else {
                let report = scaler
                    .execute(&ScaleTarget::move_slots(0..n_slots, to.addr.clone()))
                    .await?;
                if report.slots_moved != usize::from(n_slots) {
                    return Err(format!("the executor moved {} slots", report.slots_moved).into());
                }
            }
            let secs = t.elapsed().as_secs_f64();
            let cpu1 = cpu_secs();
            // The mover's CPU: redis-cli's own (a child), or this process's
            // (the executor and the probe together).
            let cpu = if use_cli {
                cpu1.1 - cpu0.1
            } else {
                cpu1.0 - cpu0.0
            };
            stats.recording.store(false, Ordering::Relaxed);
            let lat = stats.take();
            let tool = if use_cli { "redis-cli" } else { "executor" };
            let m = Move {
                tool,
                secs,
                p50: pct(&lat, 0.5),
                p99: pct(&lat, 0.99),
                max: pct(&lat, 1.0),
            };
            println!(
                "round {round} {tool:9} {} -> {}: {:.2} s, {:.0} keys/s, cpu {cpu:.2} s; client latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms ({} ops)",
                from.addr,
                to.addr,
                m.secs,
                keys.len() as f64 / m.secs,
                m.p50,
                m.p99,
                m.max,
                lat.len()
            );
            moves.push(m);
            // The cluster settles between moves (redis-cli checks it first).
            let deadline = Instant::now() + Duration::from_secs(30);
            while !scaler.view().await?.agreed() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for p in probes {
        p.await?;
    }

    section("check");
    let mut lost = 0u64;
    for chunk in keys.chunks(5000) {
        for r in cache.mget(chunk).await? {
            if r?.as_deref() != Some(value.as_bytes()) {
                lost += 1;
            }
        }
    }
    let mut dels = 0;
    for chunk in keys.chunks(5000).chain(probe_keys.chunks(5000)) {
        dels += cache.mdel(chunk).await?.len();
    }
    println!(
        "{} keys checked, {lost} lost; {dels} keys deleted",
        keys.len()
    );
    let median = |tool: &str, f: fn(&Move) -> f64| {
        let mut v: Vec<f64> = moves.iter().filter(|m| m.tool == tool).map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (e, c) = (
        median("executor", |m| m.secs),
        median("redis-cli", |m| m.secs),
    );
    let errors = stats.errors.load(Ordering::Relaxed);
    println!(
        "summary: executor_s={e:.2} redis_cli_s={c:.2} ratio={:.2} executor_p99_ms={:.2} redis_cli_p99_ms={:.2} executor_max_ms={:.2} redis_cli_max_ms={:.2} errors={errors} lost_keys={lost}",
        c / e,
        median("executor", |m| m.p99),
        median("redis-cli", |m| m.p99),
        median("executor", |m| m.max),
        median("redis-cli", |m| m.max),
    );
    if errors > 0 || lost > 0 {
        std::process::exit(1);
    }
    Ok(())
}
