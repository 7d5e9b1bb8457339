//! Live shard moves on the local topology: node set "a" is a database on the
//! primary cluster, node set "b" a database on the separate shard cluster
//! (`scripts/services up`). Eight logical shards start on "a"; writers
//! insert, update and delete through two router instances (each with its
//! own map watcher, as two processes would) while shards move.
//!
//! Checked every time: zero lost writes (every acknowledged write is in the
//! final data), zero duplicated rows (no key on both node sets), clean
//! verification, and the longest write pause per shard (printed).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};
use sysmanage_db::Error;
use sysmanage_db::shard::moves::{
    CancelToken, Endpoint, MoveOptions, MoveSpec, MoveState, Phase, PhaseGuardFn, ShardMapStore,
    ShardMapWatcher, ShardMove,
};
use sysmanage_db::shard::{EpochTarget, PgHash, ShardFunction, ShardId, ShardKey, ShardRouter};

type Router = ShardRouter<PgPool>;

const SHARDS: u32 = 8;

/// Tests share two clusters: one at a time keeps their pauses meaningful.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) {
    let _one = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f());
}

async fn pool(url: &str, max: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect: {e}; {}", sysmanage_test::START_HINT))
}

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Drops and recreates database `name` on the cluster of `admin_url`,
/// removing subscriptions and replication slots left by an earlier run.
async fn fresh_db(admin_url: &str, name: &str) -> String {
    let admin = pool(admin_url, 2).await;
    let url = sysmanage_test::with_database(admin_url, name);
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&admin)
            .await
            .unwrap();
    if exists {
        let db = pool(&url, 1).await;
        let subs: Vec<String> = sqlx::query_scalar(
            "SELECT subname::text FROM pg_subscription \
             WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_all(&db)
        .await
        .unwrap();
        for s in subs {
            exec(&db, &format!("ALTER SUBSCRIPTION \"{s}\" DISABLE")).await;
            exec(
                &db,
                &format!("ALTER SUBSCRIPTION \"{s}\" SET (slot_name = NONE)"),
            )
            .await;
            exec(&db, &format!("DROP SUBSCRIPTION \"{s}\"")).await;
        }
        db.close().await;
        for _ in 0..50 {
            let left: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                 WHERE database = $1 AND active) t",
            )
            .bind(name)
            .fetch_one(&admin)
            .await
            .unwrap();
            let _ = sqlx::query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active",
            )
            .bind(name)
            .execute(&admin)
            .await;
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        exec(
            &admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await;
    }
    exec(&admin, &format!("CREATE DATABASE {name}")).await;
    admin.close().await;
    url
}

struct Env {
    a_url: String,
    b_url: String,
    a: PgPool,
    b: PgPool,
    store: ShardMapStore,
}

/// Node set a: `accounts` and `events`, each `PARTITION BY HASH (id)` with
/// eight partitions, `accounts_rows` / `events_rows` preloaded (ids from 1).
async fn setup(test: &str, accounts_rows: i64, events_rows: i64) -> Env {
    let a_url = fresh_db(&sysmanage_test::pg_admin_url(), &format!("sm_{test}_a")).await;
    let b_url = fresh_db(
        &sysmanage_test::pg_shard_admin_url(),
        &format!("sm_{test}_b"),
    )
    .await;
    let a = pool(&a_url, 20).await;
    let b = pool(&b_url, 20).await;
    let mut ddl = String::from(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0, note text) PARTITION BY HASH (id);
         CREATE INDEX accounts_note ON accounts (note);
         CREATE TABLE events (id bigint PRIMARY KEY, account bigint NOT NULL, payload jsonb, at timestamptz NOT NULL DEFAULT now()) PARTITION BY HASH (id);",
    );
    for r in 0..SHARDS {
        ddl.push_str(&format!(
            "CREATE TABLE accounts_p{r} PARTITION OF accounts FOR VALUES WITH (MODULUS {SHARDS}, REMAINDER {r});
             CREATE TABLE events_p{r} PARTITION OF events FOR VALUES WITH (MODULUS {SHARDS}, REMAINDER {r});"
        ));
    }
    ddl.push_str(&format!(
        "INSERT INTO accounts SELECT g, g % 100, 'note ' || g FROM generate_series(1, {accounts_rows}) g;
         INSERT INTO events SELECT g, g % 977, jsonb_build_object('n', g, 's', repeat('x', (g % 20)::int)) FROM generate_series(1, {events_rows}) g;
         ANALYZE accounts; ANALYZE events;"
    ));
    exec(&a, &ddl).await;
    let store = ShardMapStore::open(a.clone(), "main")
        .await
        .expect("open store");
    store.init(&["a"; SHARDS as usize]).await.expect("init map");
    Env {
        a_url,
        b_url,
        a,
        b,
        store,
    }
}

impl Env {
    async fn router(&self, hold: Duration) -> (Router, ShardMapWatcher) {
        let router = ShardRouter::builder(PgHash::new(SHARDS).unwrap())
            .node_set("a", self.a.clone())
            .node_set("b", self.b.clone())
            .fence_hold(hold)
            .shard_map(self.store.load().await.unwrap())
            .build()
            .unwrap();
        let watcher = ShardMapWatcher::start(
            self.store.clone(),
            vec![Arc::new(router.clone()) as Arc<dyn EpochTarget>],
            Duration::from_millis(500),
        )
        .await
        .expect("watcher");
        (router, watcher)
    }

    fn spec(&self, id: &str, shards: &[u32]) -> MoveSpec {
        MoveSpec::new(
            id,
            shards.iter().map(|&s| ShardId(s)),
            ["accounts", "events"],
            Endpoint::new("a", &self.a_url),
            Endpoint::new("b", &self.b_url),
        )
    }

    fn mover(
        &self,
        spec: MoveSpec,
        opts: MoveOptions,
    ) -> sysmanage_db::shard::moves::ShardMoveBuilder {
        ShardMove::builder(self.store.clone(), spec).options(opts)
    }
}

fn fast_options() -> MoveOptions {
    let mut o = MoveOptions::default();
    o.cleanup_grace = Duration::from_millis(600);
    o.progress_interval = Duration::from_millis(20);
    o.max_lag_bytes = 64 * 1024;
    o
}

/// What the writers saw.
#[derive(Default)]
struct Tally {
    writes: u64,
    errors: Vec<String>,
    /// id → balance, for every row a writer created and did not delete.
    expected: HashMap<i64, i64>,
    /// Per shard, the longest write (hold included).
    max_pause: BTreeMap<u32, Duration>,
    /// Updates or deletes that found no row: a lost write.
    missing: u64,
}

/// Writers: each owns ids `base + n` and inserts, updates and deletes them
/// through `routers[i % 2]` until `stop`.
fn start_writers(
    routers: &[Router],
    writers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Tally>> {
    (0..writers)
        .map(|w| {
            let router = routers[w % routers.len()].clone();
            let stop = Arc::clone(stop);
            tokio::spawn(async move {
                let f = PgHash::new(SHARDS).unwrap();
                let mut t = Tally::default();
                let base = 10_000_000 * (w as i64 + 1);
                let mut next = 0_i64;
                let mut live: Vec<i64> = Vec::new();
                let mut step = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    step += 1;
                    let op = step % 10;
                    let (id, sql) = if op < 5 || live.len() < 4 {
                        next += 1;
                        (
                            base + next,
                            "INSERT INTO accounts (id, balance, note) VALUES ($1, 0, 'w')",
                        )
                    } else if op < 9 {
                        (
                            live[(step as usize * 7) % live.len()],
                            "UPDATE accounts SET balance = balance + 1 WHERE id = $1",
                        )
                    } else {
                        let i = (step as usize * 13) % live.len();
                        (live.swap_remove(i), "DELETE FROM accounts WHERE id = $1")
                    };
                    let shard = f.shard_for(&ShardKey::Int(id)).unwrap().0;
                    let started = Instant::now();
                    let res = router
                        .write(id, |ctx| async move {
                            sqlx::query(sql)
                                .bind(id)
                                .execute(ctx.nodes())
                                .await
                                .map(|r| r.rows_affected())
                        })
                        .await;
                    let took = started.elapsed();
                    let m = t.max_pause.entry(shard).or_default();
                    *m = (*m).max(took);
                    match res {
                        Ok(n) => {
                            t.writes += 1;
                            if n != 1 {
                                t.missing += 1;
                            }
                            if sql.starts_with("INSERT") {
                                t.expected.insert(id, 0);
                                live.push(id);
                            } else if sql.starts_with("UPDATE") {
                                *t.expected.get_mut(&id).unwrap() += 1;
                            } else {
                                t.expected.remove(&id);
                            }
                        }
                        Err(e) => {
                            // A refused write changed nothing; keep the
                            // deleted id out of `live` consistent.
                            if sql.starts_with("DELETE") {
                                live.push(id);
                            }
                            if sql.starts_with("INSERT") {
                                next -= 1;
                            }
                            t.errors.push(format!(
                                "{e}: {:?}",
                                std::error::Error::source(&e).map(|s| s.to_string())
                            ));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                t
            })
        })
        .collect()
}

async fn stop_writers(stop: &AtomicBool, tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    stop.store(true, Ordering::Relaxed);
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await.expect("writer");
        all.writes += t.writes;
        all.missing += t.missing;
        all.errors.extend(t.errors);
        all.expected.extend(t.expected);
        for (s, p) in t.max_pause {
            let m = all.max_pause.entry(s).or_default();
            *m = (*m).max(p);
        }
    }
    all
}

/// Every `accounts` row on both node sets: id → (node set, balance) list.
async fn all_accounts(env: &Env) -> HashMap<i64, Vec<(&'static str, i64)>> {
    let mut out: HashMap<i64, Vec<(&'static str, i64)>> = HashMap::new();
    for (name, pool) in [("a", &env.a), ("b", &env.b)] {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('accounts') IS NOT NULL")
            .fetch_one(pool)
            .await
            .unwrap();
        if !exists {
            continue;
        }
        let rows = sqlx::query("SELECT id, balance FROM accounts")
            .fetch_all(pool)
            .await
            .unwrap();
        for r in rows {
            out.entry(r.get(0)).or_default().push((name, r.get(1)));
        }
    }
    out
}

/// Lost writes and duplicated rows against what the writers were told, and
/// the preloaded rows `1..=preloaded`.
async fn audit(env: &Env, tally: &Tally, preloaded: i64) -> (u64, u64) {
    let rows = all_accounts(env).await;
    let duplicates = rows.values().filter(|v| v.len() > 1).count() as u64;
    let mut lost = tally.missing;
    for (id, balance) in &tally.expected {
        match rows.get(id).map(|v| v[0].1) {
            Some(b) if b == *balance => {}
            _ => lost += 1,
        }
    }
    for id in 1..=preloaded {
        match rows.get(&id).map(|v| v[0].1) {
            Some(b) if b == id % 100 => {}
            _ => lost += 1,
        }
    }
    // Rows written by the writers but not expected: a write reported as
    // failed that happened anyway, or a delete that did not.
    let unexpected = rows
        .keys()
        .filter(|id| **id > 10_000_000 && !tally.expected.contains_key(id))
        .count() as u64;
    (lost + unexpected, duplicates)
}

async fn replication_leftovers(env: &Env) -> (i64, i64, i64) {
    let slots: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'sysmanage_move_%' AND database = current_database()")
        .fetch_one(&env.a)
        .await
        .unwrap();
    let pubs: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_publication")
        .fetch_one(&env.a)
        .await
        .unwrap();
    let subs: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
        .fetch_one(&env.b)
        .await
        .unwrap();
    (slots, pubs, subs)
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM ONLY {table}")))
        .fetch_one(pool)
        .await
        .unwrap()
}

fn print_pauses(test: &str, tally: &Tally) {
    let pauses: Vec<String> = tally
        .max_pause
        .iter()
        .map(|(s, p)| format!("shard-{s}={}ms", p.as_millis()))
        .collect();
    println!(
        "{test}: writes={} longest write per shard: {}",
        tally.writes,
        pauses.join(" ")
    );
}

#[test]
fn moves_four_of_eight_shards_under_writes_through_two_routers() {
    serial(|| async {
        let env = setup("four", 20_000, 20_000).await;
        let (r1, _w1) = env.router(Duration::from_secs(10)).await;
        let (r2, _w2) = env.router(Duration::from_secs(10)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let writers = start_writers(&[r1.clone(), r2.clone()], 4, &stop);
        tokio::time::sleep(Duration::from_millis(300)).await;

        let events = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let report = env
            .mover(env.spec("four", &[1, 3, 5, 7]), fast_options())
            .on_progress({
                let events = Arc::clone(&events);
                move |p| {
                    events
                        .lock()
                        .unwrap()
                        .push((p.phase, p.rows_copied, p.lag_bytes, p.elapsed))
                }
            })
            .build()
            .unwrap()
            .run()
            .await
            .expect("move");
        let took = started.elapsed();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let tally = stop_writers(&stop, writers).await;
        let mut first: Vec<(Phase, Duration)> = Vec::new();
        for e in events.lock().unwrap().iter() {
            if !first.iter().any(|f| f.0 == e.0) {
                first.push((e.0, e.3));
            }
        }
        println!("four: phases started at {first:?}");

        assert_eq!(report.state, MoveState::Done);
        assert_eq!(report.resumed_from, None);
        assert_eq!(report.checks.len(), 8, "4 shards x 2 tables");
        assert_eq!(report.mismatches().count(), 0, "{:?}", report.checks);
        assert!(
            report.rows_copied >= 20_000,
            "half of 40,000 preloaded rows, got {}",
            report.rows_copied
        );
        let phases: Vec<Phase> = events.lock().unwrap().iter().map(|e| e.0).collect();
        for p in [
            Phase::Prepare,
            Phase::Copy,
            Phase::CatchUp,
            Phase::Switch,
            Phase::Verify,
            Phase::Cleanup,
            Phase::Done,
        ] {
            assert!(phases.contains(&p), "no {p} event in {phases:?}");
        }
        assert!(
            events
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.0 == Phase::CatchUp && e.2.is_some()),
            "catch-up reports lag"
        );

        // Both router instances followed the switch.
        let epoch = report.switch_epoch.expect("switch epoch");
        for r in [&r1, &r2] {
            assert!(r.epoch() >= epoch);
            for s in 0..SHARDS {
                let want = if s % 2 == 1 { "b" } else { "a" };
                assert_eq!(r.node_set_name(ShardId(s)).unwrap(), want, "shard {s}");
                assert!(!r.is_fenced(ShardId(s)));
            }
        }
        assert!(
            tally.errors.is_empty(),
            "writes failed: {:?}",
            &tally.errors[..tally.errors.len().min(5)]
        );
        let (lost, duplicates) = audit(&env, &tally, 20_000).await;
        print_pauses("four", &tally);
        println!(
            "four: move took {took:?}, rows_copied={} copy={:?} cut_pause={:?} fence_pause={:?} attempts={}",
            report.rows_copied,
            report.copy_time,
            report.cut_pause,
            report.fence_pause,
            report.fence_attempts
        );
        assert_eq!(lost, 0, "lost writes");
        assert_eq!(duplicates, 0, "duplicated rows");
        assert!(
            tally.writes > 100,
            "the writers ran ({} writes)",
            tally.writes
        );

        // Source partitions emptied, guard kept; replication objects gone.
        for s in [1, 3, 5, 7] {
            assert_eq!(count(&env.a, &format!("accounts_p{s}")).await, 0);
            assert_eq!(count(&env.a, &format!("events_p{s}")).await, 0);
            assert!(count(&env.b, &format!("events_p{s}")).await > 0);
        }
        assert_eq!(replication_leftovers(&env).await, (0, 0, 0));

        // A router that never saw the switch writes to the old owner: the
        // guard refuses, typed and retryable, and nothing lands there.
        let stale: Router = ShardRouter::builder(PgHash::new(SHARDS).unwrap())
            .node_set("a", env.a.clone())
            .node_set("b", env.b.clone())
            .fence_hold(Duration::from_millis(200))
            .shard_map(sysmanage_db::shard::ShardMap::new(
                1,
                ["a"; SHARDS as usize],
            ))
            .build()
            .unwrap();
        let f = PgHash::new(SHARDS).unwrap();
        let id = (90_000_000_i64..)
            .find(|&i| f.shard_for(&ShardKey::Int(i)).unwrap() == ShardId(3))
            .unwrap();
        let err = stale
            .write(id, |ctx| async move {
                sqlx::query("INSERT INTO accounts (id) VALUES ($1)")
                    .bind(id)
                    .execute(ctx.nodes())
                    .await
            })
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::ShardMoved {
                    shard: ShardId(3),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.is_retryable());
        assert_eq!(count(&env.a, "accounts_p3").await, 0);
        let message = sqlx::query("INSERT INTO accounts (id) VALUES ($1)")
            .bind(id)
            .execute(&env.a)
            .await
            .unwrap_err()
            .to_string();
        assert!(message.contains("has moved to node set b"), "{message}");
    });
}

/// A phase guard that never lets the move enter `phase`: the executor
/// waits there until its task is dropped (killed).
#[derive(Debug)]
struct StallAt {
    phase: Phase,
    reached: tokio::sync::mpsc::UnboundedSender<()>,
}

#[async_trait::async_trait]
impl sysmanage_db::shard::moves::BeforePhase for StallAt {
    async fn before_phase(&self, _id: &str, phase: Phase) -> Result<(), sysmanage_core::BoxError> {
        if phase == self.phase {
            let _ = self.reached.send(());
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[test]
fn killed_mid_copy_and_mid_catch_up_then_resumed() {
    serial(|| async {
        let env = setup("resume", 150_000, 50_000).await;
        let (r1, _w1) = env.router(Duration::from_secs(10)).await;
        let (r2, _w2) = env.router(Duration::from_secs(10)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let writers = start_writers(&[r1.clone(), r2.clone()], 2, &stop);
        let spec = env.spec("resume", &[0, 2, 4, 6]);
        let mut opts = fast_options();
        opts.copy_parallelism = 1;
        opts.progress_interval = Duration::from_millis(5);

        // 1. Killed mid-copy: the task is dropped at the first copy progress
        //    with rows copied (its connections close, as in a crash).
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mv = env
            .mover(spec.clone(), opts.clone())
            .on_progress(move |p| {
                if p.phase == Phase::Copy && p.rows_copied > 0 && p.rows_copied < p.rows_estimated {
                    let _ = tx.send(p.rows_copied);
                }
            })
            .build()
            .unwrap();
        let task = tokio::spawn(async move { mv.run().await });
        let at = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("copy progress")
            .unwrap();
        task.abort();
        let _ = task.await;
        let status = env.store.move_status("resume").await.unwrap().unwrap();
        assert_eq!(status.state, MoveState::Copying, "killed at {at} rows");

        // 2. Resumed, then killed after catch-up began (the subscription
        //    runs; the guard before the switch never returns).
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mv = env
            .mover(spec.clone(), opts.clone())
            .before_phase(StallAt {
                phase: Phase::Switch,
                reached: tx,
            })
            .build()
            .unwrap();
        let task = tokio::spawn(async move { mv.run().await });
        tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("reached catch-up");
        task.abort();
        let status = env.store.move_status("resume").await.unwrap().unwrap();
        assert_eq!(status.state, MoveState::CatchingUp);
        assert!(
            status.rows_copied >= 100_000,
            "copy completed: {}",
            status.rows_copied
        );

        // 3. Resumed to the end.
        let report = env
            .mover(spec, opts)
            .build()
            .unwrap()
            .run()
            .await
            .expect("resumed move");
        assert_eq!(report.resumed_from, Some(MoveState::CatchingUp));
        assert_eq!(report.state, MoveState::Done);
        assert_eq!(report.mismatches().count(), 0, "{:?}", report.checks);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let tally = stop_writers(&stop, writers).await;
        assert!(
            tally.errors.is_empty(),
            "writes failed: {:?}",
            &tally.errors[..tally.errors.len().min(5)]
        );
        let (lost, duplicates) = audit(&env, &tally, 150_000).await;
        print_pauses("resume", &tally);
        assert_eq!(lost, 0, "lost writes");
        assert_eq!(duplicates, 0, "duplicated rows");
        assert_eq!(replication_leftovers(&env).await, (0, 0, 0));
        for s in [0, 2, 4, 6] {
            assert_eq!(r1.node_set_name(ShardId(s)).unwrap(), "b");
            assert_eq!(r2.node_set_name(ShardId(s)).unwrap(), "b");
        }
    });
}

#[test]
fn cancel_before_the_switch_leaves_the_source_authoritative() {
    serial(|| async {
        let env = setup("cancel", 20_000, 5_000).await;
        let (r1, _w1) = env.router(Duration::from_secs(10)).await;
        let (r2, _w2) = env.router(Duration::from_secs(10)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let writers = start_writers(&[r1.clone(), r2.clone()], 2, &stop);
        let before = env.store.load().await.unwrap();

        // Cancelled through the token at the end of catch-up.
        let token = CancelToken::new();
        let mv = env
            .mover(env.spec("cancel", &[2, 5]), fast_options())
            .cancel_token(token.clone())
            .before_phase(PhaseGuardFn({
                let token = token.clone();
                move |_id: &str, p: Phase| {
                    if p == Phase::Switch {
                        token.cancel();
                    }
                    Ok(())
                }
            }))
            .build()
            .unwrap();
        let err = mv.run().await.unwrap_err();
        assert!(matches!(err, Error::MoveCancelled { .. }), "{err:?}");
        let status = env.store.move_status("cancel").await.unwrap().unwrap();
        assert_eq!(status.state, MoveState::Cancelled);
        let after = env.store.load().await.unwrap();
        assert_eq!(
            after.shards, before.shards,
            "placements and fences unchanged"
        );
        assert_eq!(replication_leftovers(&env).await, (0, 0, 0));
        for t in ["accounts_p2", "events_p5", "accounts", "events"] {
            let left: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(t)
                .fetch_one(&env.b)
                .await
                .unwrap();
            assert!(!left, "{t} should have been dropped from the target");
        }
        // A cancelled move stays cancelled.
        let again = env
            .mover(env.spec("cancel", &[2, 5]), fast_options())
            .build()
            .unwrap()
            .run()
            .await;
        assert!(matches!(again, Err(Error::MoveCancelled { .. })));

        // Killed mid-copy, then cancelled from outside.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut opts = fast_options();
        opts.copy_parallelism = 1;
        opts.progress_interval = Duration::from_millis(2);
        let mv = env
            .mover(env.spec("cancel2", &[1]), opts.clone())
            .before_phase(PhaseGuardFn(move |_id: &str, p: Phase| {
                if p == Phase::Copy {
                    let _ = tx.send(());
                }
                Ok(())
            }))
            .build()
            .unwrap();
        let task = tokio::spawn(async move { mv.run().await });
        tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("reached copy");
        tokio::time::sleep(Duration::from_millis(30)).await;
        task.abort();
        let _ = task.await;
        env.mover(env.spec("cancel2", &[1]), opts)
            .build()
            .unwrap()
            .cancel()
            .await
            .expect("cancel after a crash");
        assert_eq!(
            env.store
                .move_status("cancel2")
                .await
                .unwrap()
                .unwrap()
                .state,
            MoveState::Cancelled
        );
        assert_eq!(replication_leftovers(&env).await, (0, 0, 0));

        tokio::time::sleep(Duration::from_millis(200)).await;
        let tally = stop_writers(&stop, writers).await;
        assert!(
            tally.errors.is_empty(),
            "writes failed: {:?}",
            &tally.errors[..tally.errors.len().min(5)]
        );
        let (lost, duplicates) = audit(&env, &tally, 20_000).await;
        assert_eq!(lost, 0, "lost writes");
        assert_eq!(duplicates, 0, "duplicated rows");
        // Everything still on a.
        let on_a: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts")
            .fetch_one(&env.a)
            .await
            .unwrap();
        assert_eq!(on_a as usize, all_accounts(&env).await.len());
    });
}

#[test]
fn moves_a_shard_of_one_million_rows() {
    serial(|| async {
        let env = setup("million", 1_000, 1_000).await;
        // One million extra ids that PgHash puts in shard 2.
        let f = PgHash::new(SHARDS).unwrap();
        let ids: Vec<i64> = (1_000_001_i64..)
            .filter(|&i| f.shard_for(&ShardKey::Int(i)).unwrap() == ShardId(2))
            .take(1_000_000)
            .collect();
        let load = Instant::now();
        sqlx::query("INSERT INTO accounts (id, balance, note) SELECT id, id % 100, 'note ' || id FROM unnest($1::bigint[]) id")
            .bind(&ids)
            .execute(&env.a)
            .await
            .unwrap();
        exec(&env.a, "ANALYZE accounts").await;
        let loaded = load.elapsed();
        let (r1, _w1) = env.router(Duration::from_secs(10)).await;
        let (r2, _w2) = env.router(Duration::from_secs(10)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let writers = start_writers(&[r1, r2], 2, &stop);
        let started = Instant::now();
        let report = env
            .mover(env.spec("million", &[2]), fast_options())
            .build()
            .unwrap()
            .run()
            .await
            .expect("move");
        let took = started.elapsed();
        let tally = stop_writers(&stop, writers).await;
        assert_eq!(report.mismatches().count(), 0, "{:?}", report.checks);
        assert!(report.rows_copied >= 1_000_000, "{}", report.rows_copied);
        assert!(
            tally.errors.is_empty(),
            "writes failed: {:?}",
            &tally.errors[..tally.errors.len().min(5)]
        );
        let b_rows = count(&env.b, "accounts_p2").await;
        assert!(b_rows >= 1_000_000);
        let (lost, duplicates) = audit(&env, &tally, 1_000).await;
        assert_eq!(lost, 0, "lost writes");
        assert_eq!(duplicates, 0, "duplicated rows");
        let rate = report.rows_copied as f64 / report.copy_time.as_secs_f64();
        print_pauses("million", &tally);
        println!(
            "million: load {loaded:?}, move {took:?}, copy {:?} ({rate:.0} rows/s), cut_pause={:?} fence_pause={:?}",
            report.copy_time, report.cut_pause, report.fence_pause
        );
    });
}

/// Deletes one row of `table` on the target behind the delta log's back
/// (replica role: no triggers) when the move reaches verification.
#[derive(Debug)]
struct LoseRowAt {
    target: PgPool,
    table: &'static str,
}

#[async_trait::async_trait]
impl sysmanage_db::shard::moves::BeforePhase for LoseRowAt {
    async fn before_phase(&self, _id: &str, phase: Phase) -> Result<(), sysmanage_core::BoxError> {
        if phase == Phase::Verify {
            let mut conn = self.target.acquire().await?;
            sqlx::raw_sql("SET session_replication_role = replica")
                .execute(&mut *conn)
                .await?;
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DELETE FROM {} WHERE ctid = (SELECT min(ctid) FROM {})",
                self.table, self.table
            )))
            .execute(&mut *conn)
            .await?;
            sqlx::raw_sql("RESET session_replication_role")
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// Writes after the switch do not disturb verification (the delta log
/// accounts for them), but a row the target lost does: the move stops in
/// `verify_failed`, naming the table, and keeps the source's rows.
#[test]
fn verification_catches_a_row_the_target_lost() {
    serial(|| async {
        let env = setup("verify", 5_000, 1_000).await;
        let (r1, _w1) = env.router(Duration::from_secs(10)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let writers = start_writers(&[r1], 2, &stop);
        let err = env
            .mover(env.spec("verify", &[4]), fast_options())
            .before_phase(LoseRowAt {
                target: env.b.clone(),
                table: "accounts_p4",
            })
            .build()
            .unwrap()
            .run()
            .await
            .unwrap_err();
        let tally = stop_writers(&stop, writers).await;
        match &err {
            Error::MoveVerifyFailed { mismatches, .. } => {
                assert_eq!(mismatches.len(), 1, "{mismatches:?}");
                assert!(
                    mismatches[0].starts_with("public.accounts_p4 (shard-4)"),
                    "{mismatches:?}"
                );
            }
            other => panic!("expected a verification failure, got {other:?}"),
        }
        let status = env.store.move_status("verify").await.unwrap().unwrap();
        assert_eq!(status.state, MoveState::VerifyFailed);
        assert!(status.error.is_some());
        assert!(count(&env.a, "accounts_p4").await > 0, "source rows kept");
        assert!(
            tally.errors.is_empty(),
            "{:?}",
            &tally.errors[..tally.errors.len().min(5)]
        );
        // A run of a move that failed verification refuses to go on.
        let again = env
            .mover(env.spec("verify", &[4]), fast_options())
            .build()
            .unwrap()
            .run()
            .await;
        assert!(matches!(again, Err(Error::MoveVerifyFailed { .. })));
        // Left for an operator by design; removed here so that later tests
        // do not find a subscription streaming.
        env.a.close().await;
        env.b.close().await;
        fresh_db(&sysmanage_test::pg_shard_admin_url(), "sm_verify_b").await;
        fresh_db(&sysmanage_test::pg_admin_url(), "sm_verify_a").await;
    });
}

/// Killed right after the fence committed: routers hold the shards' writes
/// while no executor runs; the resumed move fences again, finishes the
/// final catch-up and switches, and the held writes land on the target.
#[test]
fn killed_while_fenced_then_resumed() {
    serial(|| async {
        let env = setup("fenced", 10_000, 2_000).await;
        let (r1, _w1) = env.router(Duration::from_secs(20)).await;
        let (r2, _w2) = env.router(Duration::from_secs(20)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let writers = start_writers(&[r1.clone(), r2.clone()], 2, &stop);
        let spec = env.spec("fenced", &[3, 6]);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mv = env
            .mover(spec.clone(), fast_options())
            .on_progress(move |p| {
                if p.phase == Phase::Switch {
                    let _ = tx.send(());
                    // Keeps the executor from going on until it is killed.
                    std::thread::sleep(Duration::from_millis(500));
                }
            })
            .build()
            .unwrap();
        let task = tokio::spawn(async move { mv.run().await });
        tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("reached the fence")
            .unwrap();
        task.abort();
        let _ = task.await;
        assert_eq!(
            env.store
                .move_status("fenced")
                .await
                .unwrap()
                .unwrap()
                .state,
            MoveState::Fenced
        );
        let map = env.store.load().await.unwrap();
        assert!(map.shards[3].fenced && map.shards[6].fenced);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            r1.is_fenced(ShardId(3)) && r2.is_fenced(ShardId(6)),
            "routers saw the fence"
        );

        let report = env
            .mover(spec, fast_options())
            .build()
            .unwrap()
            .run()
            .await
            .expect("resumed");
        assert_eq!(report.resumed_from, Some(MoveState::Fenced));
        assert_eq!(report.mismatches().count(), 0, "{:?}", report.checks);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let tally = stop_writers(&stop, writers).await;
        assert!(
            tally.errors.is_empty(),
            "writes failed: {:?}",
            &tally.errors[..tally.errors.len().min(5)]
        );
        let (lost, duplicates) = audit(&env, &tally, 10_000).await;
        print_pauses("fenced", &tally);
        assert_eq!(lost, 0, "lost writes");
        assert_eq!(duplicates, 0, "duplicated rows");
        assert!(!r1.is_fenced(ShardId(3)));
        assert_eq!(r2.node_set_name(ShardId(6)).unwrap(), "b");
        assert_eq!(replication_leftovers(&env).await, (0, 0, 0));
    });
}
