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
use std::time::Duration;

use fred::interfaces::ClientLike;
use fred::types::{ClusterHash, CustomCommand, Value};
use sysmanage_cache::redis::scale::{
    Balance, BoxError, NewPrimary, Outcome, ScaleConfig, ScaleError, ScaleEvent, ScaleTarget,
    Scaler, SlotStep, ViewNode,
};
use sysmanage_cache::tiered::TrackingConfig;
use sysmanage_cache::{
    CacheError, ClusterCache, RedisCache, RedisConfig, SetOptions, TieredCache, TieredConfig, slot,
};
use sysmanage_test::{
    SpareNodes, redis_nodes, redis_spare_primaries, redis_spare_replicas, run_id, services,
};

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
    NewPrimary::new(
        redis_spare_primaries()[0].clone(),
        [redis_spare_replicas()[0].clone()],
    )
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
async fn worker(
    cache: RedisCache,
    prefix: String,
    stop: Arc<AtomicBool>,
    totals: Arc<Totals>,
) -> Expected {
    let keys: Vec<String> = (0..300).map(|i| format!("{prefix}{i}")).collect();
    let mut expected: Expected = HashMap::new();
    let init: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("{k}=0"))).collect();
    for r in cache.mset(&init, None).await.expect("mset input") {
        r.expect("preload");
    }
    for (k, v) in init {
        expected.insert(k, vec![v]);
    }
    let check = |k: &str, got: &Result<Option<Vec<u8>>, CacheError>, expected: &Expected| match got
    {
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
        let batch: Vec<&String> = (0..20)
            .map(|i| &keys[(version as usize * 7 + i * 13) % keys.len()])
            .collect();
        let entries: Vec<(String, String)> = batch
            .iter()
            .map(|k| ((*k).clone(), format!("{k}={version}")))
            .collect();
        for ((k, v), r) in entries
            .iter()
            .zip(cache.mset(&entries, None).await.expect("mset input"))
        {
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
        match cache
            .set(k.as_bytes(), v.as_bytes(), SetOptions::default())
            .await
        {
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
        if let Err(e) = cache
            .set(scratch.as_bytes(), b"x", SetOptions::default())
            .await
        {
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
    scratch: Vec<String>,
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
        let scratch = (0..8)
            .flat_map(|w| (0..50).map(move |i| (w, i)))
            .map(|(w, i)| format!("scale:{name}:{run}:w{w}:scratch:{i}"))
            .collect();
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
        let reader = tokio::spawn(tiered_reader(
            tiered.clone(),
            stable.clone(),
            stop.clone(),
            totals.clone(),
        ));
        // Let every worker preload before the scaling starts.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Self {
            cache,
            stop,
            totals,
            workers,
            reader,
            stable,
            scratch,
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
                    Ok(Some(v))
                        if expected[*k].contains(&String::from_utf8_lossy(&v).into_owned()) => {}
                    other => lost.push(format!("{k}: {other:?}")),
                }
            }
        }
        for (k, v) in self.stable.iter() {
            if self.cache.get(k.as_bytes()).await.unwrap().as_deref() != Some(v.as_bytes()) {
                lost.push(k.clone());
            }
        }
        // Leave the cluster as it was.
        let mut all: Vec<String> = expected.keys().cloned().collect();
        all.extend(self.stable.iter().map(|(k, _)| k.clone()));
        all.extend(self.scratch.iter().cloned());
        for chunk in all.chunks(2000) {
            self.cache.mdel(chunk).await.unwrap();
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
        assert!(
            errors.is_empty(),
            "errors during {during}: {:?}",
            &errors[..errors.len().min(10)]
        );
        assert!(
            wrong.is_empty(),
            "wrong values during {during}: {:?}",
            &wrong[..wrong.len().min(10)]
        );
        assert!(
            lost.is_empty(),
            "lost keys after {during}: {:?}",
            &lost[..lost.len().min(10)]
        );
        ops
    }
}

/// The cluster is whole: every node agrees, no slot is open, and the
/// primaries serving slots are exactly `primaries`.
async fn assert_consistent(s: &Scaler, primaries: usize) {
    let view = s.view().await.unwrap();
    assert!(
        view.open_slots().is_empty(),
        "open slots: {:?}",
        view.open_slots()
    );
    assert!(view.uncovered().is_empty());
    let serving = view.primaries().filter(|n| n.slots > 0).count();
    assert_eq!(serving, primaries, "{:#?}", view.nodes());
}

fn spares_are_not_members(view: &sysmanage_cache::redis::scale::ClusterView) {
    for a in redis_spare_primaries()
        .iter()
        .chain(&redis_spare_replicas())
    {
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
        // By memory: the plan moves the slots that hold the load, keys included.
        let out = ScaleTarget::scale_out([spare()]).balance_by(Balance::Memory);
        let plan = s.plan(&out).await.unwrap();
        assert!(
            !plan.moves.is_empty() && plan.expected_keys > 0,
            "{}",
            plan.summary()
        );
        assert_eq!(plan.join.len(), 2);
        let mut events = s.subscribe();
        let collector = tokio::spawn(async move {
            let (mut finished, mut progress, mut last_eta) = (0, 0, None);
            loop {
                match events.recv().await {
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
        assert_eq!(report.joined.len(), 2);
        assert_eq!(report.attached.len(), 1);
        assert!(report.keys_moved > 0, "{report:?}");
        let moved = report.slots_moved;
        // Balanced by bytes: every primary within a few percent of a quarter.
        let after = report.plan.as_ref().unwrap().after.clone();
        let total: u64 = after.iter().map(|l| l.bytes).sum();
        for l in &after {
            let share = l.bytes as f64 / total as f64;
            assert!((0.2..0.3).contains(&share), "{after:?}");
        }
        assert_consistent(&s, 4).await;
        let (finished, progress, last_eta) = collector.await.unwrap();
        assert_eq!(finished, moved, "one SlotFinished per slot");
        assert!(progress > 0);
        assert_eq!(last_eta, Some(Duration::ZERO));
        let back = s.remove_primaries(&[&spare().addr]).await.unwrap();
        assert_eq!(back.remove.len(), 2, "the spare primary and its replica");
        let report_in = s.execute(&back).await.unwrap();
        assert_eq!(report_in.outcome, Outcome::Done);
        assert_eq!(
            report_in.slots_moved, moved,
            "every slot of the leaving primary"
        );
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

/// Two primaries serving slots, sorted by address.
async fn two_primaries(s: &Scaler) -> (ViewNode, ViewNode) {
    let view = s.view().await.unwrap();
    let mut p: Vec<ViewNode> = view.primaries().filter(|n| n.slots > 0).cloned().collect();
    p.sort_by(|a, b| a.addr.cmp(&b.addr));
    (p[0].clone(), p[1].clone())
}

/// A hash tag whose slot `owner` serves, avoiding `taken`.
async fn tag_on(s: &Scaler, owner: &ViewNode, taken: &[u16]) -> (String, u16) {
    let view = s.view().await.unwrap();
    let run = run_id();
    (0..)
        .map(|i| format!("scale-tag-{run}-{i}"))
        .map(|t| {
            let sl = slot(format!("{{{t}}}").as_bytes());
            (t, sl)
        })
        .find(|(_, sl)| {
            view.owner(*sl).map(|o| o.id.as_str()) == Some(owner.id.as_str()) && !taken.contains(sl)
        })
        .unwrap()
}

/// `count` keys `{tag}:i` holding `v-i`.
async fn fill_slot(cache: &RedisCache, tag: &str, count: usize) -> Vec<(String, String)> {
    let entries: Vec<(String, String)> = (0..count)
        .map(|i| (format!("{{{tag}}}:{i}"), format!("v-{i}")))
        .collect();
    for chunk in entries.chunks(2000) {
        for r in cache.mset(chunk, None).await.unwrap() {
            r.unwrap();
        }
    }
    entries
}

async fn assert_values(cache: &RedisCache, entries: &[(String, String)]) {
    for chunk in entries.chunks(2000) {
        let keys: Vec<&String> = chunk.iter().map(|(k, _)| k).collect();
        for ((k, v), got) in chunk.iter().zip(cache.mget(&keys).await.unwrap()) {
            assert_eq!(got.unwrap().as_deref(), Some(v.as_bytes()), "{k}");
        }
    }
}

/// The executor's task is aborted while it migrates a slot of 10,000
/// keys (the slot is left open on both sides, keys split between the two
/// nodes); a new executor with the same target closes that slot forward
/// and finishes the job. Every key keeps its value.
#[test]
fn a_killed_executor_is_resumed_by_a_rerun() {
    serial(|| async {
        services(&["redis-wait"]);
        let s = scaler(ScaleConfig::default());
        assert_consistent(&s, 3).await;
        let (a, b) = two_primaries(&s).await;
        let load = Load::start("kill").await;
        let (tag, big) = tag_on(&s, &a, &[]).await;
        let entries = fill_slot(&load.cache, &tag, 10_000).await;
        // The big slot and 31 more of A's, to B.
        let view = s.view().await.unwrap();
        let mut slots: Vec<u16> = (0..16384u16)
            .filter(|&x| x != big && view.owner(x).map(|o| o.id.as_str()) == Some(a.id.as_str()))
            .take(31)
            .collect();
        slots.push(big);
        let target = ScaleTarget::move_slots(slots.iter().copied(), b.addr.clone());
        // Small batches so that the big slot stays open a while.
        let mut slow = ScaleConfig::default();
        slow.keys_per_migrate = 10;
        slow.migrate_pipeline = 1;
        let doomed = scaler(slow);
        let mut events = doomed.subscribe();
        let task = tokio::spawn({
            let (doomed, target) = (doomed.clone(), target.clone());
            async move { doomed.execute(&target).await }
        });
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match events.recv().await {
                    Ok(ScaleEvent::KeysMoved { slot, .. }) if slot == big => return,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        })
        .await
        .expect("the big slot started moving");
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        drop(doomed);
        let view = s.view().await.unwrap();
        let open: Vec<u16> = view.open_slots().iter().map(|o| o.slot).collect();
        assert!(
            open.contains(&big),
            "the big slot is half-migrated: {open:?}"
        );
        assert_eq!(view.owner(big).unwrap().id, a.id);
        let fresh = scaler(ScaleConfig::default());
        let plan = fresh.plan(&target).await.unwrap();
        assert!(!plan.open.is_empty());
        let report = fresh.execute(&target).await.unwrap();
        assert_eq!(report.outcome, Outcome::Done);
        assert!(report.slots_closed >= 1, "{report:?}");
        assert_consistent(&fresh, 3).await;
        let view = fresh.view().await.unwrap();
        for x in &slots {
            assert_eq!(view.owner(*x).unwrap().id, b.id, "slot {x}");
        }
        assert_values(&load.cache, &entries).await;
        // Back where they were.
        let back = fresh
            .execute(&ScaleTarget::move_slots(
                slots.iter().copied(),
                a.addr.clone(),
            ))
            .await
            .unwrap();
        assert_eq!(back.slots_moved, 32);
        assert_values(&load.cache, &entries).await;
        load.cache
            .mdel(&entries.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .await
            .unwrap();
        load.finish("a killed and resumed executor").await;
    });
}

/// A cancel stops a scale-out at a slot boundary with the cluster
/// consistent (no slot open, every node agreeing); a rerun finishes it;
/// then back to three primaries.
#[test]
fn a_cancelled_scale_out_is_finished_by_a_rerun() {
    serial(|| async {
        services(&["redis-wait"]);
        let spares = SpareNodes::start();
        let s = scaler(ScaleConfig::default());
        assert_consistent(&s, 3).await;
        let load = Load::start("cancel").await;
        let out = ScaleTarget::scale_out([spare()]);
        let canceller = s.canceller();
        let mut events = s.subscribe();
        let watcher = tokio::spawn(async move {
            let mut finished = 0;
            loop {
                match events.recv().await {
                    Ok(ScaleEvent::SlotFinished { .. }) => {
                        finished += 1;
                        if finished == 200 {
                            canceller.cancel();
                        }
                    }
                    Ok(ScaleEvent::Cancelled {
                        slots_done,
                        slots_left,
                    }) => return (slots_done, slots_left),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let first = s.execute(&out).await.unwrap();
        assert_eq!(first.outcome, Outcome::Cancelled);
        let (done, left) = watcher.await.unwrap();
        assert_eq!((done, left), (first.slots_moved, first.slots_left));
        assert!(
            first.slots_moved >= 200 && first.slots_left > 0,
            "{first:?}"
        );
        assert_eq!(first.slots_moved + first.slots_left, 4096);
        assert!(first.forgotten.is_empty());
        let view = s.view().await.unwrap();
        assert!(view.agreed() && view.open_slots().is_empty());
        assert_eq!(
            view.node_at(&spare().addr).unwrap().slots as usize,
            first.slots_moved
        );
        // The cancel was consumed: the rerun goes to the end.
        let second = s.execute(&out).await.unwrap();
        assert_eq!(second.outcome, Outcome::Done);
        assert!(second.joined.is_empty() && second.attached.is_empty());
        assert_eq!(second.slots_moved, first.slots_left);
        assert_consistent(&s, 4).await;
        let back = s.remove_primaries(&[&spare().addr]).await.unwrap();
        assert_eq!(s.execute(&back).await.unwrap().outcome, Outcome::Done);
        assert_consistent(&s, 3).await;
        load.finish("a cancelled and resumed scale-out").await;
        spares.reset();
    });
}

/// A slot of 10,000 keys and a slot holding a 20 MB value move to another
/// primary and back, under load, every byte intact.
#[test]
fn a_slot_of_10000_keys_and_a_20_mb_value_move_intact() {
    serial(|| async {
        services(&["redis-wait"]);
        let s = scaler(ScaleConfig::default());
        assert_consistent(&s, 3).await;
        let (a, b) = two_primaries(&s).await;
        let load = Load::start("big").await;
        let (tag, many) = tag_on(&s, &a, &[]).await;
        let entries = fill_slot(&load.cache, &tag, 10_000).await;
        let (blob_tag, blob_slot) = tag_on(&s, &a, &[many]).await;
        let blob_key = format!("{{{blob_tag}}}:blob");
        let blob: Vec<u8> = (0..20_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let mut big_cfg = RedisConfig::new(redis_nodes());
        big_cfg.command_timeout = Duration::from_secs(10);
        big_cfg.limits.max_value_bytes = 32 << 20;
        let big_cache = RedisCache::connect(big_cfg).await.unwrap();
        big_cache
            .set(blob_key.as_bytes(), &blob, SetOptions::default())
            .await
            .unwrap();
        let mut events = s.subscribe();
        let report = s
            .execute(&ScaleTarget::move_slots([many, blob_slot], b.addr.clone()))
            .await
            .unwrap();
        assert_eq!(report.slots_moved, 2);
        assert!(report.keys_moved >= 10_001, "{report:?}");
        assert!(report.bytes_moved >= 20_000_000, "{report:?}");
        let mut seen = HashMap::new();
        while let Ok(ev) = events.try_recv() {
            if let ScaleEvent::SlotFinished {
                slot, keys, bytes, ..
            } = ev
            {
                seen.insert(slot, (keys, bytes));
            }
        }
        // The load's own keys may share the slot.
        assert!(seen[&many].0 >= 10_000, "{seen:?}");
        assert!(seen[&blob_slot].1 >= 20_000_000, "{seen:?}");
        let view = s.view().await.unwrap();
        assert_eq!(view.owner(many).unwrap().id, b.id);
        assert_eq!(view.owner(blob_slot).unwrap().id, b.id);
        assert_values(&load.cache, &entries).await;
        assert!(
            big_cache.get(blob_key.as_bytes()).await.unwrap() == Some(blob.clone()),
            "the 20 MB value"
        );
        s.execute(&ScaleTarget::move_slots([many, blob_slot], a.addr.clone()))
            .await
            .unwrap();
        assert_values(&load.cache, &entries).await;
        assert!(
            big_cache.get(blob_key.as_bytes()).await.unwrap() == Some(blob),
            "the 20 MB value, back"
        );
        big_cache.delete(blob_key.as_bytes()).await.unwrap();
        load.cache
            .mdel(&entries.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .await
            .unwrap();
        assert_consistent(&s, 3).await;
        load.finish("moves of a 10,000-key slot and a 20 MB value")
            .await;
    });
}

/// A key above `max_key_bytes` stops the run with a typed error naming
/// its slot and key, before the slot is opened; the value stays.
#[test]
fn a_key_above_the_limit_stops_the_run_before_its_slot_opens() {
    serial(|| async {
        services(&["redis-wait"]);
        let mut cfg = ScaleConfig::default();
        cfg.max_key_bytes = 1 << 20;
        let s = scaler(cfg);
        let (a, b) = two_primaries(&s).await;
        let cache = connect().await;
        let (tag, sl) = tag_on(&s, &a, &[]).await;
        let key = format!("{{{tag}}}:large");
        let value = vec![7u8; 2 << 20];
        cache
            .set(key.as_bytes(), &value, SetOptions::default())
            .await
            .unwrap();
        let err = s
            .execute(&ScaleTarget::move_slots([sl], b.addr.clone()))
            .await
            .unwrap_err();
        match &err {
            ScaleError::BigKey {
                slot,
                key: k,
                bytes,
                limit,
                slot_open,
            } => {
                assert_eq!(
                    (*slot, k.as_slice(), *limit, *slot_open),
                    (sl, key.as_bytes(), 1 << 20, false)
                );
                assert!(*bytes >= 2 << 20);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.slot(), Some(sl));
        assert_consistent(&s, 3).await;
        assert_eq!(s.view().await.unwrap().owner(sl).unwrap().id, a.id);
        assert_eq!(cache.get(key.as_bytes()).await.unwrap(), Some(value));
        cache.delete(key.as_bytes()).await.unwrap();
    });
}

/// A key already on the target with other contents (`BUSYKEY`) is a
/// typed error naming slot and key; both copies are kept and the slot
/// stays open. Once the operator removes the stray copy, a rerun finishes
/// the move with the source's value.
#[test]
fn a_busy_key_is_reported_and_both_copies_are_kept() {
    serial(|| async {
        services(&["redis-wait"]);
        let s = scaler(ScaleConfig::default());
        let (a, b) = two_primaries(&s).await;
        let cache = connect().await;
        let (tag, sl) = tag_on(&s, &a, &[]).await;
        let key = format!("{{{tag}}}:busy");
        cache
            .set(key.as_bytes(), b"source", SetOptions::default())
            .await
            .unwrap();
        // A stray copy on B: B imports the slot and gets a write with ASKING.
        let on_b = cache.node_client(&b.addr).await.unwrap();
        let raw = |cmd: &'static str, args: Vec<Value>| {
            let on_b = on_b.clone();
            async move {
                on_b.custom::<Value, Value>(
                    CustomCommand::new_static(cmd, ClusterHash::Random, false),
                    args,
                )
                .await
            }
        };
        raw(
            "CLUSTER",
            vec![
                "SETSLOT".into(),
                i64::from(sl).into(),
                "IMPORTING".into(),
                a.id.as_str().into(),
            ],
        )
        .await
        .unwrap();
        let asking = |cmd: &'static str, args: Vec<Value>| {
            let on_b = on_b.clone();
            async move {
                let p = on_b.pipeline();
                let _: Result<Value, _> = p
                    .custom(
                        CustomCommand::new_static("ASKING", ClusterHash::Random, false),
                        Vec::<Value>::new(),
                    )
                    .await;
                let _: Result<Value, _> = p
                    .custom(
                        CustomCommand::new_static(cmd, ClusterHash::Random, false),
                        args,
                    )
                    .await;
                p.try_all::<Value>().await.pop().unwrap()
            }
        };
        asking("SET", vec![key.as_str().into(), "stray".into()])
            .await
            .unwrap();
        let target = ScaleTarget::move_slots([sl], b.addr.clone());
        let err = s.execute(&target).await.unwrap_err();
        match &err {
            ScaleError::BusyKey { slot, key: k, .. } => {
                assert_eq!((*slot, k.as_slice()), (sl, key.as_bytes()))
            }
            other => panic!("{other:?}"),
        }
        // Clients still read the source's value; the stray copy is there too.
        assert_eq!(
            cache.get(key.as_bytes()).await.unwrap().as_deref(),
            Some(&b"source"[..])
        );
        let stray = asking("GET", vec![key.as_str().into()]).await.unwrap();
        assert_eq!(stray.as_bytes(), Some(&b"stray"[..]));
        let view = s.view().await.unwrap();
        assert!(view.open_slots().iter().any(|o| o.slot == sl), "left open");
        // The operator drops the stray copy; the rerun finishes.
        asking("DEL", vec![key.as_str().into()]).await.unwrap();
        let report = s.execute(&target).await.unwrap();
        assert_eq!(report.slots_closed, 1);
        assert_eq!(
            cache.get(key.as_bytes()).await.unwrap().as_deref(),
            Some(&b"source"[..])
        );
        assert_eq!(s.view().await.unwrap().owner(sl).unwrap().id, b.id);
        s.execute(&ScaleTarget::move_slots([sl], a.addr.clone()))
            .await
            .unwrap();
        cache.delete(key.as_bytes()).await.unwrap();
        assert_consistent(&s, 3).await;
    });
}

/// A before-slot hook that refuses (a fencing token superseded) stops the
/// run before the slot is touched.
#[test]
fn a_refusing_hook_stops_the_run_before_the_slot() {
    serial(|| async {
        services(&["redis-wait"]);
        let s = scaler(ScaleConfig::default());
        let (a, b) = two_primaries(&s).await;
        let (_, sl) = tag_on(&s, &a, &[]).await;
        let asked = Arc::new(Mutex::new(Vec::new()));
        let fenced = scaler(ScaleConfig::default()).with_before_slot({
            let asked = asked.clone();
            move |step: &SlotStep| -> Result<(), BoxError> {
                asked.lock().unwrap().push(step.clone());
                Err("fencing token 7 superseded by 8".into())
            }
        });
        let err = fenced
            .execute(&ScaleTarget::move_slots([sl], b.addr.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ScaleError::Refused { slot, .. } if slot == sl),
            "{err:?}"
        );
        assert!(
            std::error::Error::source(&err)
                .unwrap()
                .to_string()
                .contains("superseded")
        );
        let steps = asked.lock().unwrap().clone();
        assert_eq!(steps.len(), 1);
        assert_eq!(
            (
                steps[0].slot,
                steps[0].from.as_str(),
                steps[0].to.as_str(),
                steps[0].closing
            ),
            (sl, a.addr.as_str(), b.addr.as_str(), false)
        );
        assert_consistent(&s, 3).await;
        assert_eq!(s.view().await.unwrap().owner(sl).unwrap().id, a.id);
    });
}
