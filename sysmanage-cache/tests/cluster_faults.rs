//! Fault tests on the live cluster (feature `integration`): a live reshard,
//! a manual `CLUSTER FAILOVER` and a SIGKILL of a primary, each while a
//! read/write loop runs. They run one at a time (a process-wide lock), use
//! their own key prefixes, discover the layout from `CLUSTER NODES` (it
//! changes between runs) and leave the cluster healthy: the killed node is
//! restarted and rejoins as a replica, resharded slots are moved back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sysmanage_cache::stats::{ClusterNode, Role};
use sysmanage_cache::topology::TopologyEvent;
use sysmanage_cache::{CacheError, ClusterCache, RedisCache, SetOptions, slot};
use sysmanage_test::{KilledRedisNode, port_of, redis_nodes, run_id, services};

mod common;

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

/// Outcome of one operation of the loop.
#[derive(Clone, Copy, Debug)]
struct Op {
    started: Instant,
    took: Duration,
    ok: bool,
    /// A successful write of a key the test watches (on a killed node).
    watched_write: bool,
}

impl Op {
    fn new(started: Instant, ok: bool) -> Self {
        Self {
            started,
            took: started.elapsed(),
            ok,
            watched_write: false,
        }
    }
}

#[derive(Debug, Default)]
struct LoopReport {
    ops: Vec<Op>,
    wrong: Vec<String>,
    errors: Vec<String>,
}

impl LoopReport {
    /// The loop ran and saw no error and no wrong value `during` the fault.
    fn assert_clean(&self, during: &str) {
        assert!(self.ops.len() > 100, "the loop must have run");
        assert!(
            self.errors.is_empty(),
            "errors during {during}: {:?}",
            &self.errors[..self.errors.len().min(10)]
        );
        assert!(
            self.wrong.is_empty(),
            "wrong values: {:?}",
            &self.wrong[..self.wrong.len().min(10)]
        );
    }
}

/// Writes new versions of `keys` in batches (mset, set) and reads them back
/// (mget, get), checking every value, until `stop`. One writer per key set,
/// so the expected value of each key is known; a failed write leaves both
/// the old and the new value possible.
async fn workload(cache: RedisCache, keys: Vec<String>, stop: Arc<AtomicBool>) -> LoopReport {
    watched_workload(cache, keys, stop, Arc::default()).await
}

/// [`workload`], marking successful single-key writes of `watched` keys.
async fn watched_workload(
    cache: RedisCache,
    keys: Vec<String>,
    stop: Arc<AtomicBool>,
    watched: Arc<std::collections::HashSet<String>>,
) -> LoopReport {
    let mut report = LoopReport::default();
    let mut expected: HashMap<String, Vec<String>> = HashMap::new();
    let init: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("{k}=0"))).collect();
    for chunk in init.chunks(2000) {
        let r = cache.mset(chunk, None).await.expect("preload");
        assert!(r.iter().all(Result::is_ok), "preload failed");
    }
    for (k, v) in &init {
        expected.insert(k.clone(), vec![v.clone()]);
    }
    let mut version = 0u64;
    let mut pos = 0;
    let check = |got: &Result<Option<Vec<u8>>, CacheError>,
                 k: &str,
                 expected: &HashMap<String, Vec<String>>,
                 report: &mut LoopReport|
     -> bool {
        match got {
            Ok(Some(v)) => {
                let v = String::from_utf8_lossy(v).into_owned();
                if !expected[k].contains(&v) {
                    report
                        .wrong
                        .push(format!("{k}: got {v}, expected one of {:?}", expected[k]));
                }
                true
            }
            Ok(None) => {
                report
                    .wrong
                    .push(format!("{k}: missing (a failure reported as a miss?)"));
                true
            }
            Err(e) => {
                report.errors.push(chain(e));
                false
            }
        }
    };
    while !stop.load(Ordering::Relaxed) {
        version += 1;
        let batch: Vec<String> = (0..25)
            .map(|i| keys[(pos + i * 7919) % keys.len()].clone())
            .collect();
        pos += 1;
        // mset a new version of the batch
        let entries: Vec<(String, String)> = batch
            .iter()
            .map(|k| (k.clone(), format!("{k}={version}")))
            .collect();
        let started = Instant::now();
        match cache.mset(&entries, None).await {
            Ok(res) => {
                let ok = res.iter().all(Result::is_ok);
                for ((k, v), r) in entries.iter().zip(&res) {
                    match r {
                        Ok(()) => {
                            expected.insert(k.clone(), vec![v.clone()]);
                        }
                        Err(e) => {
                            expected.get_mut(k).unwrap().push(v.clone());
                            report.errors.push(chain(e));
                        }
                    }
                }
                report.ops.push(Op::new(started, ok));
            }
            Err(e) => panic!("mset input rejected: {e}"),
        }
        // mget it back
        let started = Instant::now();
        let res = cache.mget(&batch).await.expect("mget input rejected");
        let mut ok = true;
        for (k, r) in batch.iter().zip(&res) {
            ok &= check(r, k, &expected, &mut report);
        }
        report.ops.push(Op::new(started, ok));
        // single-key set + get
        let k = &batch[0];
        let v = format!("{k}=s{version}");
        let started = Instant::now();
        match cache
            .set(k.as_bytes(), v.as_bytes(), SetOptions::default())
            .await
        {
            Ok(_) => {
                expected.insert(k.clone(), vec![v]);
                let mut op = Op::new(started, true);
                op.watched_write = watched.contains(k);
                report.ops.push(op);
            }
            Err(e) => {
                expected.get_mut(k).unwrap().push(v);
                report.errors.push(chain(&e));
                report.ops.push(Op::new(started, false));
            }
        }
        let started = Instant::now();
        let got = cache.get(k.as_bytes()).await;
        let ok = check(&got, k, &expected, &mut report);
        report.ops.push(Op::new(started, ok));
    }
    // Final read of everything: after the fault, every key must hold a value
    // it may hold.
    for chunk in keys.chunks(2000) {
        let res = cache.mget(chunk).await.expect("final mget");
        for (k, r) in chunk.iter().zip(&res) {
            let started = Instant::now();
            let ok = check(r, k, &expected, &mut report);
            report.ops.push(Op::new(started, ok));
        }
    }
    report
}

async fn connect() -> RedisCache {
    RedisCache::connect(common::redis_config())
        .await
        .expect("connect")
}

async fn layout(cache: &RedisCache) -> Vec<ClusterNode> {
    common::settled_layout(cache).await
}

/// A live reshard of 100 slots (`redis-cli --cluster reshard`) while the
/// loop writes and reads keys in exactly those slots: zero errors, zero
/// wrong values, and a `SlotsMoved` event for the move.
#[test]
fn live_reshard_of_100_slots_has_no_errors() {
    serial(|| async {
        services(&["redis-wait"]);
        let cache = connect().await;
        let nodes = layout(&cache).await;
        let mut primaries: Vec<&ClusterNode> = nodes
            .iter()
            .filter(|n| n.role == Role::Primary && n.slot_count() > 0)
            .collect();
        primaries.sort_by_key(|n| n.addr.clone());
        let (from, to) = (primaries[0], primaries[1]);
        // redis-cli moves the source's lowest slots first: aim keys at them.
        let owned = |s: u16| from.slots.iter().any(|&(a, b)| s >= a && s <= b);
        let moving_slots: Vec<u16> = (0..16384u16).filter(|&s| owned(s)).take(100).collect();
        assert_eq!(moving_slots.len(), 100);
        let first = moving_slots[0];
        let moving = |s: u16| moving_slots.binary_search(&s).is_ok();
        let prefix = format!("it:reshard:{}:", run_id());
        let keys: Vec<String> = (0..)
            .map(|i| format!("{prefix}{i}"))
            .filter(|k| moving(slot(k.as_bytes())))
            .take(3000)
            .collect();
        let mut events = cache.subscribe();
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(workload(cache.clone(), keys.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        eprintln!(
            "reshard: loop running, moving 100 slots from {} to {}",
            from.addr, to.addr
        );
        let t0 = Instant::now();
        let (f, t) = (port_of(&from.addr), port_of(&to.addr));
        tokio::task::spawn_blocking(move || services(&["redis-reshard", &f, &t, "100"]))
            .await
            .unwrap();
        let reshard_secs = t0.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stop.store(true, Ordering::Relaxed);
        let report = task.await.unwrap();
        eprintln!("reshard: loop stopped after {} ops", report.ops.len());
        // The move is visible in the routing snapshot and as a typed event.
        eprintln!("reshard: refresh_now");
        let r = tokio::time::timeout(Duration::from_secs(5), cache.refresh_now()).await;
        eprintln!("reshard: refresh_now -> {r:?}");
        let routing_after_move = cache.routing();
        assert_eq!(
            routing_after_move.node_for_slot(first),
            Some(to.addr.as_str())
        );
        // Routing changes as the slots move (a MOVED patches one slot, the
        // refresher re-reads CLUSTER SLOTS on its timer and after errors),
        // so the 100 slots may arrive as several events, and a refresh from
        // a node with an older view may move a slot back and forth: the
        // event total is at least 100, and the routing snapshot must show
        // each of the 100 distinct slots at the target.
        cache.request_refresh();
        let mut moved = 0;
        let _ = tokio::time::timeout(Duration::from_secs(15), async {
            while moved < 100 {
                if let Ok(TopologyEvent::SlotsMoved {
                    from: Some(a),
                    to: Some(b),
                    slots,
                }) = events.recv().await
                    && a == from.addr
                    && b == to.addr
                {
                    moved += slots;
                }
            }
        })
        .await;
        // Restore the original balance.
        let (f, t) = (port_of(&to.addr), port_of(&from.addr));
        tokio::task::spawn_blocking(move || services(&["redis-reshard", &f, &t, "100"]))
            .await
            .unwrap();
        println!(
            "reshard: 100 slots in {reshard_secs:.2} s; ops={} errors={} wrong={} event_slots={moved} counters={:?}",
            report.ops.len(),
            report.errors.len(),
            report.wrong.len(),
            cache.counters()
        );
        report.assert_clean("reshard");
        assert!(moved >= 100, "SlotsMoved events covered {moved} slots");
        let at_target = moving_slots
            .iter()
            .filter(|&&s| routing_after_move.node_for_slot(s) == Some(to.addr.as_str()))
            .count();
        assert_eq!(at_target, 100, "distinct moved slots routed to the target");
    });
}

/// `CLUSTER FAILOVER` on a replica while the loop runs on that primary's
/// slots: zero errors, zero wrong values.
#[test]
fn manual_failover_has_no_errors() {
    serial(|| async {
        services(&["redis-wait"]);
        let cache = connect().await;
        let nodes = layout(&cache).await;
        let replica = nodes
            .iter()
            .find(|n| n.role == Role::Replica)
            .expect("a replica");
        let primary = nodes
            .iter()
            .find(|n| Some(&n.id) == replica.primary_id.as_ref())
            .expect("its primary");
        let owned = |s: u16| primary.slots.iter().any(|&(a, b)| s >= a && s <= b);
        let prefix = format!("it:failover:{}:", run_id());
        let keys: Vec<String> = (0..)
            .map(|i| format!("{prefix}{i}"))
            .filter(|k| owned(slot(k.as_bytes())))
            .take(2000)
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(workload(cache.clone(), keys, stop.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let p = port_of(&replica.addr);
        let t0 = Instant::now();
        tokio::task::spawn_blocking(move || services(&["redis-failover", &p]))
            .await
            .unwrap();
        let secs = t0.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.store(true, Ordering::Relaxed);
        let report = task.await.unwrap();
        cache.refresh_now().await.unwrap();
        let first = primary.slots[0].0;
        assert_eq!(
            cache.routing().node_for_slot(first),
            Some(replica.addr.as_str())
        );
        println!(
            "manual failover of {} to {} in {secs:.2} s; ops={} errors={} wrong={} counters={:?}",
            primary.addr,
            replica.addr,
            report.ops.len(),
            report.errors.len(),
            report.wrong.len(),
            cache.counters()
        );
        report.assert_clean("failover");
    });
}

/// SIGKILL of a primary while eight loops run SET/GET/MGET/MSET over all
/// slots (the victim's included): with the default settings every
/// operation rides through the failover (re-sent to the promoted replica
/// once the topology shows it) — zero errors, zero wrong values, never a
/// miss. An `INCRBY` loop on the victim's slots alongside: each increment
/// either succeeds or fails as `Indeterminate` (it may have run), and the
/// counter ends between the successes and the successes plus the
/// indeterminate ones. Prints the longest operation, the time from the kill
/// to the first write acknowledged by the promoted replica, and the
/// failover time the cluster itself shows.
#[test]
fn sigkill_of_a_primary_costs_no_error() {
    serial(|| async {
        services(&["redis-wait"]);
        let cache = connect().await;
        let nodes = layout(&cache).await;
        let victim = nodes
            .iter()
            .find(|n| {
                n.role == Role::Primary
                    && n.slot_count() > 0
                    && nodes.iter().any(|r| r.primary_id.as_ref() == Some(&n.id))
            })
            .expect("a primary with a replica");
        let owned = |s: u16| victim.slots.iter().any(|&(a, b)| s >= a && s <= b);
        let prefix = format!("it:kill:{}:", run_id());
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let mut watched = std::collections::HashSet::new();
        for t in 0..8 {
            let keys: Vec<String> = (0..400).map(|i| format!("{prefix}{t}:{i}")).collect();
            watched.extend(keys.iter().filter(|k| owned(slot(k.as_bytes()))).cloned());
            tasks.push(keys);
        }
        assert!(!watched.is_empty());
        let watched = Arc::new(watched);
        let tasks: Vec<_> = tasks
            .into_iter()
            .map(|keys| {
                tokio::spawn(watched_workload(
                    cache.clone(),
                    keys,
                    stop.clone(),
                    watched.clone(),
                ))
            })
            .collect();
        // Increments on the victim's slots.
        let counter = (0..)
            .map(|i| format!("{prefix}counter:{i}"))
            .find(|k| owned(slot(k.as_bytes())))
            .unwrap();
        let incr = {
            let (cache, stop, counter) = (cache.clone(), stop.clone(), counter.clone());
            tokio::spawn(async move {
                let (mut ok, mut indeterminate, mut other) = (0i64, 0i64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match cache.incr(counter.as_bytes(), 1).await {
                        Ok(_) => ok += 1,
                        Err(CacheError::Indeterminate { .. }) => indeterminate += 1,
                        Err(e) => other.push(chain(&e)),
                    }
                }
                (ok, indeterminate, other)
            })
        };
        tokio::time::sleep(Duration::from_millis(700)).await;
        let port = port_of(&victim.addr);
        let node = KilledRedisNode::kill(&port);
        // The SIGKILL has been sent when the script returns.
        let killed_at = Instant::now();
        // The cluster's own view: when a surviving node has flagged the
        // victim failed, promoted its replica and reports ok again.
        let survivor = nodes
            .iter()
            .find(|n| n.addr != victim.addr)
            .unwrap()
            .addr
            .clone();
        let p = port_of(&survivor);
        let victim_addr = victim.addr.clone();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            // Through scripts/services, which speaks TLS to the secure cluster.
            let cli = |args: &[&str]| {
                let mut all = vec!["redis-cli", p.as_str()];
                all.extend_from_slice(args);
                services(&all)
            };
            loop {
                let failed = ClusterNode::parse_nodes(&cli(&["cluster", "nodes"]))
                    .map(|ns| {
                        ns.iter().any(|n| {
                            n.addr == victim_addr
                                && n.failing
                                && n.role == Role::Primary
                                && n.slots.is_empty()
                        })
                    })
                    .unwrap_or(false);
                if failed && cli(&["cluster", "info"]).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "no failover within 30 s");
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .await
        .unwrap();
        let cluster_ok_at = Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::Relaxed);
        let mut report = LoopReport::default();
        for t in tasks {
            let r = t.await.unwrap();
            report.ops.extend(r.ops);
            report.wrong.extend(r.wrong);
            report.errors.extend(r.errors);
        }
        let (ok, indeterminate, other) = incr.await.unwrap();
        // Restore: the killed node rejoins as a replica.
        node.restore();
        let during: Vec<&Op> = report
            .ops
            .iter()
            .filter(|o| o.started >= killed_at)
            .collect();
        let longest = during.iter().map(|o| o.took).max().unwrap_or_default();
        // A write of a victim's key started after the kill and acknowledged
        // was acknowledged by the promoted replica.
        let first_write = during
            .iter()
            .filter(|o| o.ok && o.watched_write)
            .map(|o| (o.started + o.took).duration_since(killed_at))
            .min();
        println!(
            "sigkill of {}: cluster ok after {:.2} s; first write on the promoted replica {:.2} s after the kill; longest operation {:.2} s; ops={} errors={} wrong={} incr ok={ok} indeterminate={indeterminate} counters={:?}",
            victim.addr,
            (cluster_ok_at - killed_at).as_secs_f64(),
            first_write.map_or(f64::NAN, |d| d.as_secs_f64()),
            longest.as_secs_f64(),
            report.ops.len(),
            report.errors.len(),
            report.wrong.len(),
            cache.counters()
        );
        assert!(
            during.len() > 100,
            "the loops must run through the failover"
        );
        report.assert_clean("a SIGKILL of a primary");
        assert!(
            other.is_empty(),
            "INCRBY failed otherwise than as indeterminate: {other:?}"
        );
        let value: i64 = cache
            .get(counter.as_bytes())
            .await
            .unwrap()
            .map(|v| String::from_utf8(v).unwrap().parse().unwrap())
            .unwrap_or(0);
        assert!(
            (ok..=ok + indeterminate).contains(&value),
            "counter {value}: {ok} acknowledged and {indeterminate} indeterminate increments"
        );
    });
}

/// With a short retry budget, a read issued right after a primary is killed
/// reports every key on that node as a typed, transient error (its node
/// batch failed) — never as a value or a miss — while every key on the live
/// nodes reads correctly in the same call.
#[test]
fn a_dead_node_is_reported_as_errors_never_as_misses() {
    serial(|| async {
        services(&["redis-wait"]);
        let mut cfg = common::redis_config();
        // A short retry budget so the dead node's keys fail instead of
        // waiting out the failover; a generous command timeout so the live
        // nodes answer in time even on a loaded machine.
        cfg.command_timeout = Duration::from_secs(3);
        cfg.retry_budget = Duration::from_millis(400);
        let cache = RedisCache::connect(cfg).await.expect("connect");
        let nodes = layout(&cache).await;
        let victim = nodes
            .iter()
            .find(|n| n.role == Role::Primary && n.slot_count() > 0)
            .expect("a primary");
        let owned = |s: u16| victim.slots.iter().any(|&(a, b)| s >= a && s <= b);
        let prefix = format!("it:deadnode:{}:", run_id());
        let keys: Vec<String> = (0..300).map(|i| format!("{prefix}{i}")).collect();
        let entries: Vec<(String, String)> =
            keys.iter().map(|k| (k.clone(), format!("v:{k}"))).collect();
        assert!(
            cache
                .mset(&entries, None)
                .await
                .unwrap()
                .iter()
                .all(Result::is_ok)
        );
        let port = port_of(&victim.addr);
        let node = KilledRedisNode::kill(&port);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let got = cache.mget(&keys).await.expect("input is valid");
        node.restore();
        let (mut dead_err, mut live_err, mut live_ok, mut batch_err) = (0, 0, 0, 0);
        for (k, r) in keys.iter().zip(&got) {
            let on_victim = owned(slot(k.as_bytes()));
            match r {
                Ok(v) => {
                    assert!(!on_victim, "{k} on the killed node read as {v:?}");
                    assert_eq!(v.as_deref(), Some(format!("v:{k}").as_bytes()), "{k}");
                    live_ok += 1;
                }
                Err(e) => {
                    assert!(e.is_transient(), "{e}");
                    batch_err += usize::from(matches!(e, CacheError::NodeBatch { .. }));

                    if on_victim {
                        dead_err += 1;
                    } else {
                        live_err += 1;
                    }
                }
            }
        }
        println!(
            "dead node {}: {dead_err} of its keys failed; live nodes: {live_ok} read, {live_err} failed; {batch_err} errors were NodeBatch",
            victim.addr
        );
        assert!(dead_err > 50, "every key on the killed node fails");
        assert_eq!(live_err, 0, "a dead node must not hold back the others");
        assert!(batch_err > 0, "a failed node batch is reported as such");
    });
}

/// The client of a node that died and serves no slots is dropped at the
/// next topology refresh (its reconnect loop ends with it): after the node
/// comes back, the cache talks to it through a new client.
#[test]
fn clients_of_dead_nodes_are_dropped_at_refresh() {
    serial(|| async {
        services(&["redis-wait"]);
        let cache = connect().await;
        let nodes = layout(&cache).await;
        let replica = nodes
            .iter()
            .find(|n| n.role == Role::Replica)
            .expect("a replica")
            .addr
            .clone();
        let before = cache.node_client(&replica).await.expect("replica client");
        let first_id = fred::interfaces::ClientLike::id(&before).to_owned();
        let node = KilledRedisNode::kill(&port_of(&replica));
        let deadline = Instant::now() + Duration::from_secs(10);
        while fred::interfaces::ClientLike::is_connected(&before) {
            assert!(Instant::now() < deadline, "the client never saw the kill");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cache.refresh_now().await.expect("refresh");
        node.restore();
        let after = cache.node_client(&replica).await.expect("replica client");
        assert_ne!(
            fred::interfaces::ClientLike::id(&after),
            first_id,
            "the dead node's client was kept"
        );
        assert!(fred::interfaces::ClientLike::is_connected(&after));
    });
}

/// Clients connected to each node, as the servers count them.
async fn connected_clients(nodes: &[String]) -> Vec<u64> {
    let mut out = Vec::new();
    for n in nodes {
        let port = port_of(n);
        let text = tokio::task::spawn_blocking(move || common::node_info(&port, "clients"))
            .await
            .unwrap();
        let n = text
            .lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(u64::MAX);
        out.push(n);
    }
    out
}

/// `shutdown` of a tracked `TieredCache` over a `RedisCache`: operations in
/// flight finish, later ones fail with `ShutDown`, and every connection of
/// both (data and tracking) is closed, counted server-side.
#[test]
fn shutdown_closes_every_connection() {
    serial(|| async {
        services(&["redis-wait"]);
        let nodes = redis_nodes();
        // Each count includes the redis-cli asking.
        let before = connected_clients(&nodes).await;
        let prefix = format!("it:shutdown:{}:", run_id());
        let redis = connect().await;
        let mut config = sysmanage_cache::TieredConfig::default();
        config.prefixes = vec![prefix.as_bytes().to_vec()];
        let tiered =
            sysmanage_cache::TieredCache::with_tracking(redis, config, Default::default()).unwrap();
        let keys: Vec<String> = (0..200).map(|i| format!("{prefix}{i}")).collect();
        let entries: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), k.clone())).collect();
        assert!(
            tiered
                .mset(&entries, None)
                .await
                .unwrap()
                .iter()
                .all(Result::is_ok)
        );
        assert!(tiered.mget(&keys).await.unwrap().iter().all(Result::is_ok));
        let during = connected_clients(&nodes).await;
        assert!(
            during.iter().zip(&before).any(|(d, b)| d > b),
            "the caches hold connections: {before:?} -> {during:?}"
        );
        let in_flight = {
            let t = tiered.clone();
            let keys = keys.clone();
            tokio::spawn(async move { t.mget(&keys).await })
        };
        tiered.shutdown(Duration::from_secs(5)).await.unwrap();
        let _ = in_flight.await.unwrap();
        assert!(matches!(
            tiered.get(keys[0].as_bytes()).await,
            Err(CacheError::ShutDown)
        ));
        assert!(matches!(
            tiered.l2().get(keys[0].as_bytes()).await,
            Err(CacheError::ShutDown)
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let after = connected_clients(&nodes).await;
            if after.iter().zip(&before).all(|(a, b)| a <= b) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "connections left after shutdown: {before:?} -> {after:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Clean up through a fresh client.
        let cleanup = connect().await;
        let _ = cleanup.mdel(&keys).await;
    });
}
