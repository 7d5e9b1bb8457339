//! `ClusterCache` on the local Redis Cluster through a live reshard, a
//! manual failover and a SIGKILL of a primary.
//!
//! Start the cluster with `scripts/services up`, then
//! `cargo run -p sysmanage-examples --features redis --example cluster_cache`.
//! With `-- --tls` it runs against the TLS-only cluster instead, as its
//! ACL user, verifying the nodes against the topology's CA (the addresses
//! and credentials come from `eval "$(scripts/services env)"`).
//!
//! Four workers each own a set of keys (half of them in the 100 slots the
//! reshard moves, so the move meets live traffic), write new versions with `mset`/`set`
//! and read them back with `mget`/`get`, checking every value, while the
//! example moves 100 slots between two primaries (`redis-cli --cluster
//! reshard`), promotes a replica with `CLUSTER FAILOVER`, moves the slots
//! back, then kills a primary with SIGKILL (its replica takes over after
//! `cluster-node-timeout`; the operations on its slots wait and are re-sent
//! to the new owner) and restarts it. Topology events are printed as they
//! arrive; node stats and the scaling advisor's view close the run. The
//! last line is `summary: ops=… errors=… wrong_values=… reshard_slots=…
//! failovers=… kills=…`, and the exit status is non-zero when there were
//! errors or wrong values.

use sysmanage_examples::cache_demo;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sysmanage_cache::advisor::{AdvisorConfig, AdvisorState, advise};
use sysmanage_cache::stats::Role;
use sysmanage_cache::{ClusterCache, RedisCache, SetOptions, slot};
use sysmanage_core::Timestamp;
use sysmanage_examples::{init_tracing, section, secure};

#[derive(Default)]
struct Totals {
    ops: AtomicU64,
    errors: AtomicU64,
    wrong: AtomicU64,
}

fn services(args: &[&str]) -> Result<(), String> {
    let script = std::env::var("SYSMANAGE_SERVICES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services").to_owned());
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`services {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn port(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(_, p)| p)
}

async fn worker(
    cache: RedisCache,
    id: usize,
    moving: Arc<Vec<u16>>,
    stop: Arc<AtomicBool>,
    totals: Arc<Totals>,
) {
    let name = |k: usize| format!("example:cluster_cache:w{id}:{k}");
    let in_moving = |k: &String| moving.binary_search(&slot(k.as_bytes())).is_ok();
    // 200 keys in the slots that move, 200 anywhere.
    let mut keys: Vec<String> = (0..).map(name).filter(in_moving).take(200).collect();
    keys.extend((0..200).map(|k| name(1_000_000 + k)));
    // Every value a key may hold (a failed write may or may not have landed).
    let mut expected: HashMap<&str, Vec<String>> = HashMap::new();
    let mut version = 0u64;
    let record = |ok: bool| {
        totals.ops.fetch_add(1, Ordering::Relaxed);
        if !ok {
            totals.errors.fetch_add(1, Ordering::Relaxed);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        version += 1;
        let start = (version as usize * 13) % keys.len();
        let batch: Vec<&str> = (0..20)
            .map(|i| keys[(start + i * 17) % keys.len()].as_str())
            .collect();
        let entries: Vec<(&str, String)> = batch
            .iter()
            .map(|k| (*k, format!("{k}#{version}")))
            .collect();
        match cache.mset(&entries, Some(Duration::from_secs(600))).await {
            Ok(results) => {
                for ((k, v), r) in entries.iter().zip(results) {
                    record(r.is_ok());
                    let slot = expected.entry(k).or_default();
                    if r.is_ok() {
                        *slot = vec![v.clone()];
                    } else {
                        slot.push(v.clone());
                    }
                }
            }
            Err(e) => {
                eprintln!("mset rejected: {e}");
                record(false);
            }
        }
        match cache.mget(&batch).await {
            Ok(results) => {
                for (k, r) in batch.iter().zip(results) {
                    record(r.is_ok());
                    if let Ok(v) = r {
                        let got = v.map(|b| String::from_utf8_lossy(&b).into_owned());
                        if !got.as_ref().is_some_and(|g| expected[k].contains(g)) {
                            totals.wrong.fetch_add(1, Ordering::Relaxed);
                            eprintln!("wrong value for {k}: {got:?}");
                        }
                    }
                }
            }
            Err(e) => {
                eprintln!("mget rejected: {e}");
                record(false);
            }
        }
        let k = batch[0];
        let v = format!("{k}#s{version}");
        let ok = cache
            .set(k.as_bytes(), v.as_bytes(), SetOptions::default())
            .await
            .is_ok();
        record(ok);
        if ok {
            expected.insert(k, vec![v]);
        } else {
            // It may have landed before the error.
            expected.entry(k).or_default().push(v);
        }
        match cache.get(k.as_bytes()).await {
            Ok(got) => {
                record(true);
                let got = got.map(|b| String::from_utf8_lossy(&b).into_owned());
                if !got.as_ref().is_some_and(|g| expected[k].contains(g)) {
                    totals.wrong.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => record(false),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    section("in-memory backend (the quickstart demo)");
    cache_demo::demo_cache().await?;

    let tls = secure::tls_requested();
    section(if tls {
        "connect (TLS, ACL user)"
    } else {
        "connect"
    });
    let config = secure::redis_config(tls)?;
    let nodes = config.nodes.clone();
    let cache = RedisCache::connect(config).await.map_err(|e| {
        format!(
            "cannot reach the Redis Cluster at {nodes:?} ({e}); start it with `scripts/services up`"
        )
    })?;
    for (node, slots) in cache.routing().slots_per_node() {
        println!("{node} serves {slots} slots");
    }
    let mut events = cache.subscribe();
    tokio::spawn(async move {
        while let Ok(ev) = events.recv().await {
            println!(
                "topology event: {}",
                serde_json::to_string(&ev).unwrap_or_default()
            );
        }
    });

    section("mixed workload with a reshard and a manual failover");
    let layout = cache.cluster_nodes().await?;
    let mut primaries: Vec<_> = layout
        .iter()
        .filter(|n| n.role == Role::Primary && n.slot_count() > 0)
        .collect();
    primaries.sort_by_key(|n| n.addr.clone());
    if primaries.len() < 2 {
        return Err("the cluster needs two primaries with slots".into());
    }
    let (a, b) = (primaries[0].addr.clone(), primaries[1].addr.clone());
    // `redis-cli --cluster reshard` moves the source's lowest slots first.
    let owned = |s: u16| {
        primaries[0]
            .slots
            .iter()
            .any(|&(lo, hi)| s >= lo && s <= hi)
    };
    let moving: Arc<Vec<u16>> = Arc::new((0..16384u16).filter(|&s| owned(s)).take(100).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let totals = Arc::new(Totals::default());
    let workers: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(worker(
                cache.clone(),
                i,
                moving.clone(),
                stop.clone(),
                totals.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut reshard_slots = 0;
    let (pa, pb) = (port(&a).to_owned(), port(&b).to_owned());
    println!("resharding 100 slots {a} -> {b}");
    tokio::task::spawn_blocking(move || services(&["redis-reshard", &pa, &pb, "100"])).await??;
    reshard_slots += 100;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Fail over the third primary, so the slots just moved stay put.
    let (ida, idb) = (primaries[0].id.clone(), primaries[1].id.clone());
    let replica = layout
        .iter()
        .find(|n| {
            n.role == Role::Replica
                && n.primary_id
                    .as_ref()
                    .is_some_and(|p| *p != ida && *p != idb)
        })
        .or_else(|| layout.iter().find(|n| n.role == Role::Replica))
        .ok_or("no replica")?
        .addr
        .clone();
    let pr = port(&replica).to_owned();
    println!("CLUSTER FAILOVER on replica {replica}");
    tokio::task::spawn_blocking(move || services(&["redis-failover", &pr])).await??;
    let failovers = 1;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Move the slots back from whoever serves them now.
    cache.refresh_now().await?;
    let moved_slot = moving.first().copied().unwrap_or(0);
    let b = cache
        .routing()
        .node_for_slot(moved_slot)
        .unwrap_or(&b)
        .to_owned();
    let (pa, pb) = (port(&a).to_owned(), port(&b).to_owned());
    println!("resharding 100 slots back {b} -> {a}");
    tokio::task::spawn_blocking(move || services(&["redis-reshard", &pb, &pa, "100"])).await??;
    reshard_slots += 100;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // SIGKILL a primary that has a replica (the workers keep going).
    let now = cache.cluster_nodes().await?;
    let victim = now
        .iter()
        .find(|n| {
            n.role == Role::Primary
                && n.slot_count() > 0
                && now.iter().any(|r| r.primary_id.as_ref() == Some(&n.id))
        })
        .ok_or("no primary with a replica")?
        .addr
        .clone();
    let pv = port(&victim).to_owned();
    println!("SIGKILL of primary {victim}");
    let killed = std::time::Instant::now();
    {
        let pv = pv.clone();
        tokio::task::spawn_blocking(move || {
            services(&["redis-kill", &pv])?;
            services(&["redis-wait-failover", &pv])
        })
        .await??;
    }
    println!(
        "its replica took over {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    let kills = 1;
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("restarting {victim} (it rejoins as a replica)");
    tokio::task::spawn_blocking(move || {
        services(&["redis-start", &pv])?;
        services(&["redis-wait"])
    })
    .await??;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await?;
    }

    section("stats and advice");
    let stats = cache.cluster_stats().await?;
    println!(
        "health {:?}: {}/{} nodes healthy (ratio {:.2})",
        stats.health, stats.healthy_nodes, stats.total_nodes, stats.health_ratio
    );
    for n in &stats.nodes {
        if let Some(s) = &n.stats {
            println!(
                "  {} {:?} slots={} keys={} used_memory={} ops/sec={} clients={}",
                n.node, s.role, n.slots, s.keys, s.used_memory, s.ops_per_sec, s.clients
            );
        }
    }
    let (rec, _) = advise(
        &AdvisorConfig::default(),
        &stats,
        &AdvisorState::default(),
        Timestamp::now(),
    );
    println!("advisor: {:?} — {}", rec.action, rec.reason);
    println!(
        "client counters: {}",
        serde_json::to_string(&cache.counters())?
    );

    let (ops, errors, wrong) = (
        totals.ops.load(Ordering::Relaxed),
        totals.errors.load(Ordering::Relaxed),
        totals.wrong.load(Ordering::Relaxed),
    );
    println!(
        "summary: ops={ops} errors={errors} wrong_values={wrong} reshard_slots={reshard_slots} failovers={failovers} kills={kills}"
    );
    if errors > 0 || wrong > 0 {
        std::process::exit(1);
    }
    Ok(())
}
