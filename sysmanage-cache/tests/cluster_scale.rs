//! The scaling executor on the live cluster (feature `integration`;
//! `scripts/services up` first; the tests start the spare nodes with
//! `scripts/services redis-spare-up` and make them non-members again when
//! they end, even on failure).
//!
//! Every scenario runs under load: eight tasks doing SET/GET/MGET/MSET/DEL
//! through `RedisCache` and a tracked `TieredCache` reading keys written
//! before the run. Each must see zero errors and zero wrong values, and
//! every key written before and during the run must read back afterwards
//! with its last value. Scenarios run one at a time and leave the
//! six-node cluster with its three primaries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sysmanage_cache::redis::scale::{
    Balance, NewPrimary, Outcome, ScaleConfig, ScaleError, ScaleEvent, ScaleTarget, Scaler,
};
use sysmanage_cache::tiered::TrackingConfig;
use sysmanage_cache::{
    CacheError, ClusterCache, RedisCache, RedisConfig, SetOptions, TieredCache, TieredConfig, slot,
};
use sysmanage_test::{SpareNodes, redis_nodes, redis_spare_primaries, redis_spare_replicas, run_id, services};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) {
    let _guard = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(f());
}

fn chain(e: &CacheError) -> String {
    let mut s = format!("{}: {e}", e.label());
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(&format!(" <- {c}"));
        src = c.source();
    }
    s
}

async fn connect() -> RedisCache {
    RedisCache::connect(RedisConfig::new(redis_nodes()))
        .await
        .expect("connect to the local Redis Cluster")
}

fn scaler(config: ScaleConfig) -> Scaler {
    Scaler::new(RedisConfig::new(redis_nodes()), config).expect("scaler")
}

fn spare() -> NewPrimary {
    NewPrimary::new(redis_spare_primaries()[0].clone(), [redis_spare_replicas()[0].clone()])
}

/// Counts of the workload, shared by its tasks.
#[derive(Debug, Default)]
struct Totals {
    ops: AtomicU64,
    errors: Mutex<Vec<String>>,
    wrong: Mutex<Vec<String>>,
}

impl Totals {
    fn error(&self, e: String) {
        self.errors.lock().unwrap().push(e);
    }
    fn wrong(&self, w: String) {
        self.wrong.lock().unwrap().push(w);
    }
}

/// Keys a worker wrote and the values each may hold now (one writer per
/// key: the last acknowledged write, plus writes whose outcome is unknown).
type Expected = HashMap<String, Vec<String>>;

/// One worker: MSET a batch, MGET it back, SET + GET one key, DEL a
/// scratch key and check it is gone, then write it again.
async fn worker(cache: RedisCache, prefix: String, stop: Arc<AtomicBool>, totals: Arc<Totals>) -> Expected {
    let keys: Vec<String> = (0..300).map(|i| format!("{prefix}{i}")).collect();
    let mut expected: Expected = HashMap::new();
    let init: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("{k}=0"))).collect();
    for r in cache.mset(&init, None).await.expect("mset input") {
        r.expect("preload");
    }
    for (k, v) in init {
        expected.insert(k, vec![v]);
    }
    let check = |k: &str, got: &Result<Option<Vec<u8>>, CacheError>, expected: &Expected| match got {
        Ok(Some(v)) => {
            let v = String::from_utf8_lossy(v).into_owned();
            if !expected[k].contains(&v) {
                totals.wrong(format!("{k}: got {v}, expected one of {:?}", expected[k]));
            }
        }
        Ok(None) => totals.wrong(format!("{k}: missing")),
        Err(e) => totals.error(chain(e)),
    };
    let mut version = 0u64;
    while !stop.load(Ordering::Relaxed) {
        version += 1;
        let batch: Vec<&String> = (0..20).map(|i| &keys[(version as usize * 7 + i * 13) % keys.len()]).collect();
        let entries: Vec<(String, String)> = batch.iter().map(|k| ((*k).clone(), format!("{k}={version}"))).collect();
        for ((k, v), r) in entries.iter().zip(cache.mset(&entries, None).await.expect("mset input")) {
            match r {
                Ok(()) => {
                    expected.insert(k.clone(), vec![v.clone()]);
                }
                Err(e) => {
                    expected.get_mut(k).unwrap().push(v.clone());
                    totals.error(chain(&e));
                }
            }
        }
        let got = cache.mget(&batch).await.expect("mget input");
        for (k, r) in batch.iter().zip(&got) {
            check(k, r, &expected);
        }
        let k = batch[0];
        let v = format!("{k}=s{version}");
        match cache.set(k.as_bytes(), v.as_bytes(), SetOptions::default()).await {
            Ok(_) => {
                expected.insert(k.clone(), vec![v]);
            }
            Err(e) => {
                expected.get_mut(k).unwrap().push(v);
                totals.error(chain(&e));
            }
        }
        check(k, &cache.get(k.as_bytes()).await, &expected);
        let scratch = format!("{prefix}scratch:{}", version % 50);
        match cache.delete(scratch.as_bytes()).await {
            Ok(_) => match cache.get(scratch.as_bytes()).await {
                Ok(None) => {}
                Ok(Some(_)) => totals.wrong(format!("{scratch}: present after DEL")),
                Err(e) => totals.error(chain(&e)),
            },
            Err(e) => totals.error(chain(&e)),
        }
        if let Err(e) = cache.set(scratch.as_bytes(), b"x", SetOptions::default()).await {
            totals.error(chain(&e));
        }
        totals.ops.fetch_add(6, Ordering::Relaxed);
    }
    expected
}

/// A tracked `TieredCache` reading keys written once before the run.
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
            Err(e) => totals.error(format!("tiered: {}", chain(&e))),
        }
        totals.ops.fetch_add(1, Ordering::Relaxed);
        i += 1;
        if i % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Eight workers and a tiered reader, until stopped.
struct Load {
    cache: RedisCache,
    stop: Arc<AtomicBool>,
    totals: Arc<Totals>,
    workers: Vec<tokio::task::JoinHandle<Expected>>,
    reader: tokio::task::JoinHandle<()>,
    stable: Arc<Vec<(String, String)>>,
    tiered: TieredCache<RedisCache>,
}

impl Load {
    async fn start(name: &str) -> Self {
        let cache = connect().await;
        let run = run_id();
        let stable_prefix = format!("scale:{name}:{run}:stable:");
        let stable: Vec<(String, String)> = (0..2000)
            .map(|i| (format!("{stable_prefix}{i}"), format!("stable-{i}")))
            .collect();
        for r in cache.mset(&stable, None).await.unwrap() {
            r.unwrap();
        }
        let mut config = TieredConfig::default();
        config.local_ttl = Duration::from_secs(10);
        config.prefixes = vec![stable_prefix.into_bytes()];
        let mut tracking = TrackingConfig::default();
        tracking.client_name = format!("scale-{name}-{}", std::process::id());
        let tiered = TieredCache::with_tracking(connect().await, config, tracking).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let totals = Arc::new(Totals::default());
        let workers = (0..8)
            .map(|w| {
                tokio::spawn(worker(
                    cache.clone(),
                    format!("scale:{name}:{run}:w{w}:"),
                    stop.clone(),
                    totals.clone(),
                ))
            })
            .collect();
        let stable = Arc::new(stable);
        let reader = tokio::spawn(tiered_reader(tiered.clone(), stable.clone(), stop.clone(), totals.clone()));
        // Let every worker preload before the scaling starts.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Self {
            cache,
            stop,
            totals,
            workers,
            reader,
            stable,
            tiered,
        }
    }

    /// Stops the load and checks: zero errors, zero wrong values, and every
    /// key written before and during the run reads back with its last value.
    async fn finish(self, during: &str) -> u64 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.stop.store(true, Ordering::Relaxed);
        let mut expected = Expected::new();
        for w in self.workers {
            expected.extend(w.await.unwrap());
        }
        self.reader.await.unwrap();
        let mut lost = Vec::new();
        let keys: Vec<&String> = expected.keys().collect();
        for chunk in keys.chunks(1000) {
            for (k, r) in chunk.iter().zip(self.cache.mget(chunk).await.unwrap()) {
                match r {
                    Ok(Some(v)) if expected[*k].contains(&String::from_utf8_lossy(&v).into_owned()) => {}
                    other => lost.push(format!("{k}: {other:?}")),
                }
            }
        }
        for (k, v) in self.stable.iter() {
            if self.cache.get(k.as_bytes()).await.unwrap().as_deref() != Some(v.as_bytes()) {
                lost.push(k.clone());
            }
        }
        let ops = self.totals.ops.load(Ordering::Relaxed);
        let errors = self.totals.errors.lock().unwrap().clone();
        let wrong = self.totals.wrong.lock().unwrap().clone();
        println!(
            "{during}: ops={ops} errors={} wrong_values={} lost_keys={} keys_checked={} tiered_l1_hits={} counters={:?}",
            errors.len(),
            wrong.len(),
            lost.len(),
            expected.len() + self.stable.len(),
            self.tiered.stats().l1.hits,
            self.cache.counters()
        );
        assert!(ops > 1000, "the load must have run during {during}");
        assert!(errors.is_empty(), "errors during {during}: {:?}", &errors[..errors.len().min(10)]);
        assert!(wrong.is_empty(), "wrong values during {during}: {:?}", &wrong[..wrong.len().min(10)]);
        assert!(lost.is_empty(), "lost keys after {during}: {:?}", &lost[..lost.len().min(10)]);
        ops
    }
}

/// The cluster is whole: every node agrees, no slot is open, and the
/// primaries serving slots are exactly `primaries`.
async fn assert_consistent(s: &Scaler, primaries: usize) {
    let view = s.view().await.unwrap();
    assert!(view.open_slots().is_empty(), "open slots: {:?}", view.open_slots());
    assert!(view.uncovered().is_empty());
    let serving = view.primaries().filter(|n| n.slots > 0).count();
    assert_eq!(serving, primaries, "{:#?}", view.nodes());
}

fn spares_are_not_members(view: &sysmanage_cache::redis::scale::ClusterView) {
    for a in redis_spare_primaries().iter().chain(&redis_spare_replicas()) {
        assert!(view.node_at(a).is_none(), "{a} is still a member");
    }
}

/// Scale out 3 → 4 primaries (the new one with a replica) and back to 3,
/// under load; slots by count.
#[test]
fn scale_out_to_four_primaries_and_back_under_load() {
    serial(|| async {
        services(&["redis-wait"]);
        let spares = SpareNodes::start();
        let s = scaler(ScaleConfig::default());
        assert_consistent(&s, 3).await;
        let load = Load::start("outin").await;
        let out = ScaleTarget::scale_out([spare()]);
        let plan = s.plan(&out).await.unwrap();
        assert_eq!(plan.moves.len(), 4096, "{}", plan.summary());
        assert_eq!(plan.join.len(), 2);
        let mut events = s.subscribe();
        let collector = tokio::spawn(async move {
            let (mut finished, mut progress, mut last_eta) = (0, 0, None);
            loop {
                match events.recv().await {
                    Ok(ScaleEvent::PhaseStarted { phase }) => eprintln!("{:?} {phase:?}", Instant::now()),
                    Ok(ScaleEvent::SlotFinished { .. }) => finished += 1,
                    Ok(ScaleEvent::Progress(p)) => {
                        progress += 1;
                        assert!(p.slots_done <= p.slots_total);
                        last_eta = p.eta;
                    }
                    Ok(ScaleEvent::Done { .. }) => return (finished, progress, last_eta),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let report = s.execute(&out).await.unwrap();
        assert_eq!(report.outcome, Outcome::Done);
        assert_eq!(report.slots_moved, 4096);
        assert_eq!(report.joined.len(), 2);
        assert_eq!(report.attached.len(), 1);
        let view = s.view().await.unwrap();
        for p in view.primaries().filter(|n| n.slots > 0) {
            assert_eq!(p.slots, 4096, "{}", p.addr);
        }
        assert_consistent(&s, 4).await;
        let (finished, progress, last_eta) = collector.await.unwrap();
        assert_eq!(finished, 4096, "one SlotFinished per slot");
        assert!(progress > 0);
        assert_eq!(last_eta, Some(Duration::ZERO));
        let back = s.remove_primaries(&[&spare().addr]).await.unwrap();
        assert_eq!(back.remove.len(), 2, "the spare primary and its replica");
        let report_in = s.execute(&back).await.unwrap();
        assert_eq!(report_in.outcome, Outcome::Done);
        assert_eq!(report_in.slots_moved, 4096);
        assert_eq!(report_in.forgotten.len(), 2);
        assert_consistent(&s, 3).await;
        spares_are_not_members(&s.view().await.unwrap());
        println!(
            "scale out: {:.2} s (migrate {:.2} s, {} keys); scale in: {:.2} s ({} keys)",
            report.elapsed.as_secs_f64(),
            report.migrate_elapsed.as_secs_f64(),
            report.keys_moved,
            report_in.elapsed.as_secs_f64(),
            report_in.keys_moved
        );
        load.finish("scale out and in").await;
        spares.reset();
    });
}
