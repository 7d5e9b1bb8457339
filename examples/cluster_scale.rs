//! Scaling the local Redis Cluster online with the library's executor
//! (`sysmanage_cache::redis::scale`): 3 → 4 primaries and back to 3 while
//! eight tasks run SET/GET/MGET/MSET/DEL through `RedisCache` and a tracked
//! `TieredCache` reads.
//!
//! Start the cluster with `scripts/services up`, then
//! `cargo run -p sysmanage-examples --features redis --example cluster_scale`.
//! The example starts the spare nodes itself (`scripts/services
//! redis-spare-up`: a primary and its replica that are not members yet),
//! prints the dry-run plan, scales out (joining the spare primary and its
//! replica, moving a quarter of the keys by measured load), prints progress
//! as it goes, scales back in (the spare primary's slots move back, then
//! both spare nodes are forgotten and reset), and puts every slot back on
//! the primary that served it at the start, so that it leaves the cluster
//! as it found it. Every key written before and during the run is read
//! back at the end. The last line is
//! `summary: ops=… errors=… wrong_values=… lost_keys=… slots_moved=… keys_moved=… scale_out_s=… scale_in_s=…`,
//! and the exit status is non-zero when any of errors, wrong values or
//! lost keys is not zero.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sysmanage_cache::redis::scale::{
    Balance, NewPrimary, Outcome, ScaleConfig, ScaleEvent, ScaleTarget, Scaler,
};
use sysmanage_cache::tiered::TrackingConfig;
use sysmanage_cache::{
    CacheError, ClusterCache, RedisCache, RedisConfig, SetOptions, TieredCache, TieredConfig,
};
use sysmanage_examples::{init_tracing, section};

fn env_list(name: &str, default_ports: &[u16]) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| {
            default_ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .split(',')
        .map(str::to_owned)
        .collect()
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

#[derive(Default)]
struct Totals {
    ops: AtomicU64,
    errors: AtomicU64,
    wrong: AtomicU64,
}

impl Totals {
    fn error(&self, e: &CacheError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        eprintln!("error: {e}");
    }
    fn wrong(&self, what: String) {
        self.wrong.fetch_add(1, Ordering::Relaxed);
        eprintln!("wrong value: {what}");
    }
}

/// Every value a key may hold (the last acknowledged write, plus writes
/// whose outcome is unknown).
type Expected = HashMap<String, Vec<String>>;

async fn worker(
    cache: RedisCache,
    prefix: String,
    stop: Arc<AtomicBool>,
    totals: Arc<Totals>,
) -> Expected {
    let keys: Vec<String> = (0..2500).map(|i| format!("{prefix}{i}")).collect();
    let mut expected = Expected::new();
    let init: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("{k}=0"))).collect();
    for chunk in init.chunks(1000) {
        match cache.mset(chunk, None).await {
            Ok(res) => {
                for ((k, v), r) in chunk.iter().zip(res) {
                    if let Err(e) = r {
                        totals.error(&e);
                    }
                    expected.insert(k.clone(), vec![v.clone()]);
                }
            }
            Err(e) => totals.error(&e),
        }
    }
    let check = |k: &str, got: Result<Option<Vec<u8>>, CacheError>, expected: &Expected| match got {
        Ok(Some(v)) => {
            let v = String::from_utf8_lossy(&v).into_owned();
            if !expected[k].contains(&v) {
                totals.wrong(format!("{k}: {v}"));
            }
        }
        Ok(None) => totals.wrong(format!("{k}: missing")),
        Err(e) => totals.error(&e),
    };
    let mut version = 0u64;
    while !stop.load(Ordering::Relaxed) {
        version += 1;
        let batch: Vec<&String> = (0..20)
            .map(|i| &keys[(version as usize * 7 + i * 131) % keys.len()])
            .collect();
        let entries: Vec<(String, String)> = batch
            .iter()
            .map(|k| ((*k).clone(), format!("{k}={version}")))
            .collect();
        match cache.mset(&entries, None).await {
            Ok(res) => {
                for ((k, v), r) in entries.iter().zip(res) {
                    match r {
                        Ok(()) => {
                            expected.insert(k.clone(), vec![v.clone()]);
                        }
                        Err(e) => {
                            expected.entry(k.clone()).or_default().push(v.clone());
                            totals.error(&e);
                        }
                    }
                }
            }
            Err(e) => totals.error(&e),
        }
        match cache.mget(&batch).await {
            Ok(res) => {
                for (k, r) in batch.iter().zip(res) {
                    check(k, r, &expected);
                }
            }
            Err(e) => totals.error(&e),
        }
        let k = batch[0];
        let v = format!("{k}=s{version}");
        match cache
            .set(k.as_bytes(), v.as_bytes(), SetOptions::default())
            .await
        {
            Ok(_) => {
                expected.insert(k.clone(), vec![v]);
            }
            Err(e) => {
                expected.entry(k.clone()).or_default().push(v);
                totals.error(&e);
            }
        }
        check(k, cache.get(k.as_bytes()).await, &expected);
        // DEL of a scratch key: gone at once, then written again.
        let scratch = format!("{prefix}scratch:{}", version % 50);
        match cache.delete(scratch.as_bytes()).await {
            Ok(_) => match cache.get(scratch.as_bytes()).await {
                Ok(None) => {}
                Ok(Some(_)) => totals.wrong(format!("{scratch}: present after DEL")),
                Err(e) => totals.error(&e),
            },
            Err(e) => totals.error(&e),
        }
        if let Err(e) = cache
            .set(scratch.as_bytes(), b"x", SetOptions::default())
            .await
        {
            totals.error(&e);
        }
        totals.ops.fetch_add(6, Ordering::Relaxed);
    }
    expected
}

async fn tiered_reader(
    cache: TieredCache<RedisCache>,
    stable: Arc<Vec<(String, String)>>,
    stop: Arc<AtomicBool>,
    totals: Arc<Totals>,
) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let (k, v) = &stable[i % stable.len()];
        match cache.get(k.as_bytes()).await {
            Ok(Some(got)) if got == v.as_bytes() => {}
            Ok(other) => totals.wrong(format!("tiered {k}: {other:?}")),
            Err(e) => totals.error(&e),
        }
        totals.ops.fetch_add(1, Ordering::Relaxed);
        i += 1;
        if i % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Prints the executor's events: phases, joins, removals and a progress
/// line every 10 % of the slots.
fn print_events(scaler: &Scaler) -> tokio::task::JoinHandle<()> {
    let mut events = scaler.subscribe();
    tokio::spawn(async move {
        let mut next_tenth = 1;
        loop {
            match events.recv().await {
                Ok(ScaleEvent::PhaseStarted { phase }) => println!("  phase {phase:?}"),
                Ok(ScaleEvent::NodeMet { node }) => println!("  met {node}"),
                Ok(ScaleEvent::ReplicaAttached { replica, primary }) => {
                    println!("  {replica} replicates {primary}")
                }
                Ok(ScaleEvent::Planned {
                    slots,
                    expected_keys,
                    expected_bytes,
                }) => {
                    next_tenth = 1;
                    println!(
                        "  planned: {slots} slots, {expected_keys} keys, {expected_bytes} bytes"
                    );
                }
                Ok(ScaleEvent::Progress(p)) => {
                    if p.slots_done * 10 >= p.slots_total * next_tenth {
                        next_tenth = p.slots_done * 10 / p.slots_total.max(1) + 1;
                        println!(
                            "  {}/{} slots, {} keys ({:.0} keys/s, {:.1} MB/s), eta {:.1} s",
                            p.slots_done,
                            p.slots_total,
                            p.keys_moved,
                            p.keys_per_sec,
                            p.bytes_per_sec / 1e6,
                            p.eta.map_or(f64::NAN, |d| d.as_secs_f64())
                        );
                    }
                }
                Ok(ScaleEvent::NodeForgotten { node }) => println!("  forgot {node}"),
                Ok(ScaleEvent::NodeReset { node }) => println!("  reset {node}"),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    section("connect");
    let nodes = env_list(
        "SYSMANAGE_REDIS_NODES",
        &[7000, 7001, 7002, 7003, 7004, 7005],
    );
    let spare = NewPrimary::new(
        env_list("SYSMANAGE_REDIS_SPARE_PRIMARIES", &[7006, 7007])[0].clone(),
        [env_list("SYSMANAGE_REDIS_SPARE_REPLICAS", &[7008, 7009])[0].clone()],
    );
    let cache = RedisCache::connect(RedisConfig::new(nodes.clone())).await.map_err(|e| {
        format!("cannot reach the Redis Cluster at {nodes:?} ({e}); start it with `scripts/services up`")
    })?;
    services(&["redis-spare-up"])?;
    let scaler = Scaler::new(RedisConfig::new(nodes.clone()), ScaleConfig::default())?;
    let view = scaler.view().await?;
    if !view.open_slots().is_empty() || view.node_at(&spare.addr).is_some() {
        return Err("the cluster has open slots or the spare is a member already: run `scripts/services redis-spare-reset`".into());
    }
    // Who serves each slot now, to put everything back at the end.
    let original: BTreeMap<u16, String> = (0..16384u16)
        .filter_map(|s| view.owner(s).map(|o| (s, o.addr.clone())))
        .collect();
    let primaries = view.primaries().filter(|n| n.slots > 0).count();
    println!(
        "{primaries} primaries; spare primary {} with replica {}",
        spare.addr, spare.replicas[0]
    );

    section("load");
    let run = std::process::id();
    let stable: Vec<(String, String)> = (0..2000)
        .map(|i| {
            (
                format!("example:scale:{run}:stable:{i}"),
                format!("stable-{i}"),
            )
        })
        .collect();
    for r in cache.mset(&stable, None).await? {
        r?;
    }
    let mut tiered_config = TieredConfig::default();
    tiered_config.prefixes = vec![format!("example:scale:{run}:stable:").into_bytes()];
    let mut tracking = TrackingConfig::default();
    tracking.client_name = format!("example-scale-{run}");
    let tiered = TieredCache::with_tracking(
        RedisCache::connect(RedisConfig::new(nodes.clone())).await?,
        tiered_config,
        tracking,
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let totals = Arc::new(Totals::default());
    let workers: Vec<_> = (0..8)
        .map(|w| {
            tokio::spawn(worker(
                cache.clone(),
                format!("example:scale:{run}:w{w}:"),
                stop.clone(),
                totals.clone(),
            ))
        })
        .collect();
    let stable = Arc::new(stable);
    let reader = tokio::spawn(tiered_reader(
        tiered.clone(),
        stable.clone(),
        stop.clone(),
        totals.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("8 workers (20,000 keys) and a tiered reader (2,000 keys) running");

    section("scale out: plan (dry run)");
    let out = ScaleTarget::scale_out([spare.clone()]).balance_by(Balance::Keys);
    let plan = scaler.plan(&out).await?;
    println!("{}", plan.summary());
    for l in &plan.after {
        println!(
            "  after: {} slots={} keys={} bytes={}",
            l.node, l.slots, l.keys, l.bytes
        );
    }

    section("scale out");
    let printer = print_events(&scaler);
    let report_out = scaler.execute(&out).await?;
    println!(
        "{:?}: {} slots, {} keys, {} bytes in {:.2} s",
        report_out.outcome,
        report_out.slots_moved,
        report_out.keys_moved,
        report_out.bytes_moved,
        report_out.elapsed.as_secs_f64()
    );

    section("scale in");
    let back = scaler.remove_primaries(&[&spare.addr]).await?;
    let report_in = scaler.execute(&back).await?;
    println!(
        "{:?}: {} slots, {} keys back in {:.2} s; forgot {:?}",
        report_in.outcome,
        report_in.slots_moved,
        report_in.keys_moved,
        report_in.elapsed.as_secs_f64(),
        report_in.forgotten
    );

    section("restore the original layout");
    let view = scaler.view().await?;
    let mut restore = ScaleTarget::rebalance();
    restore.assign = original
        .iter()
        .filter(|(s, owner)| view.owner(**s).map(|o| &o.addr) != Some(*owner))
        .map(|(s, owner)| (*s, owner.clone()))
        .collect();
    let restored = if restore.assign.is_empty() {
        0
    } else {
        scaler.execute(&restore).await?.slots_moved
    };
    println!("{restored} slots moved back to their first owner");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut expected = Expected::new();
    for w in workers {
        expected.extend(w.await?);
    }
    reader.await?;
    printer.abort();

    section("check");
    let mut lost = 0u64;
    let keys: Vec<&String> = expected.keys().collect();
    for chunk in keys.chunks(2000) {
        for (k, r) in chunk.iter().zip(cache.mget(chunk).await?) {
            match r {
                Ok(Some(v)) if expected[*k].contains(&String::from_utf8_lossy(&v).into_owned()) => {
                }
                other => {
                    lost += 1;
                    eprintln!("lost or changed: {k}: {other:?}");
                }
            }
        }
    }
    for (k, v) in stable.iter() {
        if cache.get(k.as_bytes()).await?.as_deref() != Some(v.as_bytes()) {
            lost += 1;
        }
    }
    let view = scaler.view().await?;
    let same_layout = (0..16384u16).all(|s| view.owner(s).map(|o| &o.addr) == original.get(&s));
    println!(
        "{} keys checked; layout as found: {same_layout}; spare a member: {}; tiered L1 hits: {}",
        expected.len() + stable.len(),
        view.node_at(&spare.addr).is_some(),
        tiered.stats().l1.hits
    );
    // Clean up the keys of this run.
    let mut all: Vec<String> = expected.into_keys().collect();
    all.extend(stable.iter().map(|(k, _)| k.clone()));
    all.extend(
        (0..8).flat_map(|w| (0..50).map(move |i| format!("example:scale:{run}:w{w}:scratch:{i}"))),
    );
    for chunk in all.chunks(2000) {
        cache.mdel(chunk).await?;
    }
    let (ops, errors, wrong) = (
        totals.ops.load(Ordering::Relaxed),
        totals.errors.load(Ordering::Relaxed),
        totals.wrong.load(Ordering::Relaxed),
    );
    let done =
        report_out.outcome == Outcome::Done && report_in.outcome == Outcome::Done && same_layout;
    println!(
        "summary: ops={ops} errors={errors} wrong_values={wrong} lost_keys={lost} slots_moved={} keys_moved={} scale_out_s={:.2} scale_in_s={:.2}",
        report_out.slots_moved + report_in.slots_moved,
        report_out.keys_moved + report_in.keys_moved,
        report_out.elapsed.as_secs_f64(),
        report_in.elapsed.as_secs_f64()
    );
    if errors > 0 || wrong > 0 || lost > 0 || !done {
        std::process::exit(1);
    }
    Ok(())
}
