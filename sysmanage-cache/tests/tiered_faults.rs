//! Two `TieredCache` instances with client tracking on the live cluster
//! (feature `integration`) through a SIGKILL of a primary, a manual
//! `CLUSTER FAILOVER` and a live reshard: writes go through instance A,
//! reads through instance B. Every read must see every write acknowledged
//! more than the invalidation bound before it started (the tracking
//! heartbeat: a tracking connection that goes silent is taken as lost, and
//! L1 flushed, within it), and no operation may fail.
//!
//! The tests run one at a time, use their own key prefixes and client
//! names, and leave the cluster healthy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sysmanage_cache::stats::{ClusterNode, Role};
use sysmanage_cache::tiered::TrackingConfig;
use sysmanage_cache::{ClusterCache, RedisCache, SetOptions, TieredCache, TieredConfig, slot};
use sysmanage_test::{KilledRedisNode, port_of, run_id, services};

mod common;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) {
    let _guard = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f());
}

/// The documented bound on how long a stale L1 entry can outlive a write
/// acknowledged elsewhere, under faults: the tracking heartbeat.
fn bound() -> Duration {
    TrackingConfig::default().heartbeat
}

async fn tiered(prefix: &str, name: &str) -> TieredCache<RedisCache> {
    let redis = RedisCache::connect(common::redis_config())
        .await
        .expect("connect");
    let mut config = TieredConfig::default();
    config.prefixes = vec![prefix.as_bytes().to_vec()];
    let mut tracking = TrackingConfig::default();
    tracking.client_name = name.to_owned();
    let cache = TieredCache::with_tracking(redis, config, tracking).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cache.stats().coherent {
        assert!(Instant::now() < deadline, "tracking not established");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cache
}

/// Versions written to each key and when each write was acknowledged.
type Acks = Arc<Mutex<HashMap<String, Vec<(u64, Instant)>>>>;

#[derive(Debug, Default)]
struct Outcome {
    writes: u64,
    reads: u64,
    errors: Vec<String>,
    /// Reads that returned a version older than one acknowledged more than
    /// [`bound`] before the read started.
    stale: Vec<String>,
    /// The longest time a newer acknowledged version had existed when a
    /// read returned an older one.
    max_lag: Duration,
}

async fn writer(
    a: TieredCache<RedisCache>,
    keys: Arc<Vec<String>>,
    acks: Acks,
    stop: Arc<AtomicBool>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut version = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for k in keys.iter() {
            version += 1;
            let res = a
                .set(
                    k.as_bytes(),
                    version.to_string().as_bytes(),
                    SetOptions::default(),
                )
                .await;
            match res {
                Ok(_) => {
                    out.writes += 1;
                    acks.lock()
                        .unwrap()
                        .entry(k.clone())
                        .or_default()
                        .push((version, Instant::now()));
                }
                Err(e) => out.errors.push(format!("set {k}: {e}")),
            }
            // Paced, so that most reads of a key between two of its writes
            // are served from B's L1: staleness can only come from there.
            tokio::time::sleep(Duration::from_millis(2)).await;
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    out
}

async fn reader(
    b: TieredCache<RedisCache>,
    keys: Arc<Vec<String>>,
    acks: Acks,
    stop: Arc<AtomicBool>,
) -> Outcome {
    let mut out = Outcome::default();
    while !stop.load(Ordering::Relaxed) {
        for (i, k) in keys.iter().enumerate() {
            if i % 20 == 0 {
                // A paced reader: a loop that never waits starves the
                // runtime's timers on a two-thread runtime.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let started = Instant::now();
            let got = match b.get(k.as_bytes()).await {
                Ok(v) => v.map(|v| String::from_utf8(v).unwrap().parse::<u64>().unwrap()),
                Err(e) => {
                    out.errors.push(format!("get {k}: {e}"));
                    continue;
                }
            };
            out.reads += 1;
            let got = got.unwrap_or(0);
            // The first acknowledged version newer than what was read, if
            // it was acknowledged before the read started.
            let newer = acks.lock().unwrap().get(k).and_then(|versions| {
                versions
                    .iter()
                    .find(|(v, at)| *v > got && *at < started)
                    .map(|(_, at)| *at)
            });
            if let Some(at) = newer {
                let lag = started.duration_since(at);
                out.max_lag = out.max_lag.max(lag);
                if lag > bound() {
                    out.stale.push(format!(
                        "{k}: read {got}, newer acknowledged {lag:?} earlier"
                    ));
                }
            }
        }
    }
    out
}

/// Runs the writer (through A) and the reader (through B) on `keys` while
/// `fault` runs, then checks the outcome.
async fn through<F, Fut>(what: &str, keys: Vec<String>, fault: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let run = run_id();
    let prefix = keys[0].split(':').take(3).collect::<Vec<_>>().join(":") + ":";
    let a = tiered(&prefix, &format!("l1f-a-{run}")).await;
    let b = tiered(&prefix, &format!("l1f-b-{run}")).await;
    let keys = Arc::new(keys);
    let acks: Acks = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer(a.clone(), keys.clone(), acks.clone(), stop.clone()));
    let r = tokio::spawn(reader(b.clone(), keys.clone(), acks.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    fault().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (w, r) = (w.await.unwrap(), r.await.unwrap());
    let stats = b.stats();
    println!(
        "tiered through {what}: writes={} reads={} errors={} stale={} max_lag={:?} (bound {:?}); B: l1 hits={} flushes={} tracking lost={} subscriptions={}",
        w.writes,
        r.reads,
        w.errors.len() + r.errors.len(),
        r.stale.len(),
        r.max_lag,
        bound(),
        stats.l1.hits,
        stats.l1.flushes,
        stats.tracking.connections_lost,
        stats.tracking.subscriptions,
    );
    assert!(w.writes > 100 && r.reads > 100, "the loops must have run");
    let errors: Vec<&String> = w.errors.iter().chain(&r.errors).take(10).collect();
    assert!(errors.is_empty(), "errors through {what}: {errors:?}");
    assert!(
        r.stale.is_empty(),
        "stale reads through {what}: {:?}",
        &r.stale[..r.stale.len().min(10)]
    );
    assert!(stats.l1.hits > 100, "B served from L1: {stats:?}");
}

async fn layout() -> Vec<ClusterNode> {
    let cache = RedisCache::connect(common::redis_config())
        .await
        .expect("connect");
    common::settled_layout(&cache).await
}

/// 200 keys of the test, half on `node`'s slots (its lowest `lowest`
/// slots when given).
fn keys_on(node: &ClusterNode, tag: &str, lowest: Option<usize>) -> Vec<String> {
    let mine: Vec<u16> = (0..16384u16)
        .filter(|&s| node.slots.iter().any(|&(a, b)| s >= a && s <= b))
        .take(lowest.unwrap_or(usize::MAX))
        .collect();
    let owned = |s: u16| mine.binary_search(&s).is_ok();
    let prefix = format!("it:l1{tag}:{}:", run_id());
    let on: Vec<String> = (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|k| owned(slot(k.as_bytes())))
        .take(100)
        .collect();
    let off: Vec<String> = (0..)
        .map(|i| format!("{prefix}x{i}"))
        .filter(|k| !owned(slot(k.as_bytes())))
        .take(100)
        .collect();
    on.into_iter().chain(off).collect()
}

#[test]
fn tiered_reads_stay_fresh_through_a_sigkill_of_a_primary() {
    serial(|| async {
        services(&["redis-wait"]);
        let nodes = layout().await;
        let victim = nodes
            .iter()
            .find(|n| {
                n.role == Role::Primary
                    && n.slot_count() > 0
                    && nodes.iter().any(|r| r.primary_id.as_ref() == Some(&n.id))
            })
            .expect("a primary with a replica")
            .clone();
        let keys = keys_on(&victim, "kill", None);
        let port = port_of(&victim.addr);
        let mut killed = None;
        through("a SIGKILL", keys, || async {
            killed = Some(KilledRedisNode::kill(&port));
            let port = port.clone();
            tokio::task::spawn_blocking(move || services(&["redis-wait-failover", &port]))
                .await
                .unwrap();
        })
        .await;
        killed.unwrap().restore();
    });
}

#[test]
fn tiered_reads_stay_fresh_through_a_manual_failover() {
    serial(|| async {
        services(&["redis-wait"]);
        let nodes = layout().await;
        let replica = nodes
            .iter()
            .find(|n| n.role == Role::Replica)
            .expect("a replica")
            .clone();
        let primary = nodes
            .iter()
            .find(|n| Some(&n.id) == replica.primary_id.as_ref())
            .expect("its primary")
            .clone();
        let keys = keys_on(&primary, "failover", None);
        let port = port_of(&replica.addr);
        through("a CLUSTER FAILOVER", keys, || async {
            tokio::task::spawn_blocking(move || services(&["redis-failover", &port]))
                .await
                .unwrap();
        })
        .await;
    });
}

#[test]
fn tiered_reads_stay_fresh_through_a_live_reshard() {
    serial(|| async {
        services(&["redis-wait"]);
        let nodes = layout().await;
        let mut primaries: Vec<ClusterNode> = nodes
            .into_iter()
            .filter(|n| n.role == Role::Primary && n.slot_count() > 0)
            .collect();
        primaries.sort_by_key(|n| n.addr.clone());
        let (from, to) = (primaries[0].clone(), primaries[1].clone());
        // redis-cli moves the source's lowest slots first.
        let keys = keys_on(&from, "reshard", Some(200));
        let (f, t) = (port_of(&from.addr), port_of(&to.addr));
        through("a live reshard", keys, || async {
            let (f, t) = (f.clone(), t.clone());
            tokio::task::spawn_blocking(move || services(&["redis-reshard", &f, &t, "200"]))
                .await
                .unwrap();
        })
        .await;
        tokio::task::spawn_blocking(move || services(&["redis-reshard", &t, &f, "200"]))
            .await
            .unwrap();
    });
}
