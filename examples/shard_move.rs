//! Moving four of eight logical shards to another PostgreSQL cluster while
//! the application writes.
//!
//! 1. Node set `a` is a database on the local primary, node set `b` a
//!    database on the separate shard cluster. `accounts` and `events` are
//!    `PARTITION BY HASH (id)` with eight partitions, 100,000 rows each.
//! 2. Baseline: `pg_dump --data-only` of the four partitions piped into
//!    `psql` on the shard cluster (a scratch database), timed.
//! 3. Two routers (as two application processes would have), each with a
//!    `ShardMapWatcher`, serve four writers that insert, update and delete
//!    accounts; meanwhile `ShardMove` moves shards 1, 3, 5 and 7 from `a` to
//!    `b`: copy, catch-up, fence, switch, verify, clean up.
//! 4. Every acknowledged write is checked against the final data on both
//!    node sets.
//!
//! Needs the local topology: `scripts/services up && eval "$(scripts/services env)"`,
//! then `cargo run -p sysmanage-examples --features postgres --example shard_move`.
//! The last line is
//! `summary: writes=<n> lost_writes=<n> duplicate_rows=<n> verify_mismatches=<n> rows_moved=<n> max_write_pause_ms=<n>`;
//! the exit status is non-zero on any lost write, duplicate or mismatch.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};
use sysmanage_db::shard::moves::{
    Endpoint, MoveOptions, MoveSpec, ShardMapStore, ShardMapWatcher, ShardMove,
};
use sysmanage_db::shard::{EpochTarget, PgHash, ShardFunction, ShardId, ShardKey, ShardRouter};
use sysmanage_examples::{init_tracing, section};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SHARDS: u32 = 8;
const ROWS: i64 = 100_000;
const MOVED: [u32; 4] = [1, 3, 5, 7];

fn env(name: &str) -> Result<String, BoxError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| {
            format!(
                "{name} is not set: start the local topology with `scripts/services up` and run \
             `eval \"$(scripts/services env)\"`"
            )
            .into()
        })
}

fn db_url(admin: &str, db: &str) -> Result<String, BoxError> {
    let (base, _) = admin
        .rsplit_once('/')
        .ok_or("admin url has no database part")?;
    Ok(format!("{base}/{db}"))
}

async fn connect(url: &str, max: u32) -> Result<PgPool, BoxError> {
    Ok(PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await?)
}

async fn exec(pool: &PgPool, sql: &str) -> Result<(), BoxError> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await?;
    Ok(())
}

/// A fresh database `name` (an earlier run's subscriptions and slots
/// removed first).
async fn fresh_db(admin_url: &str, name: &str) -> Result<String, BoxError> {
    let admin = connect(admin_url, 2).await?;
    let url = db_url(admin_url, name)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&admin)
            .await?;
    if exists {
        let db = connect(&url, 1).await?;
        let subs: Vec<String> = sqlx::query_scalar("SELECT subname::text FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
            .fetch_all(&db)
            .await?;
        for s in subs {
            exec(&db, &format!("ALTER SUBSCRIPTION \"{s}\" DISABLE; ALTER SUBSCRIPTION \"{s}\" SET (slot_name = NONE); DROP SUBSCRIPTION \"{s}\"")).await?;
        }
        db.close().await;
        sqlx::query("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active")
            .bind(name)
            .execute(&admin)
            .await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        sqlx::query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1")
            .bind(name)
            .execute(&admin)
            .await?;
        exec(&admin, &format!("DROP DATABASE {name} WITH (FORCE)")).await?;
    }
    exec(&admin, &format!("CREATE DATABASE {name}")).await?;
    admin.close().await;
    Ok(url)
}

fn schema_sql() -> String {
    let mut ddl = String::from(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL DEFAULT 0, note text) PARTITION BY HASH (id);
         CREATE TABLE events (id bigint PRIMARY KEY, account bigint NOT NULL, payload jsonb, at timestamptz NOT NULL DEFAULT now()) PARTITION BY HASH (id);",
    );
    for r in 0..SHARDS {
        ddl.push_str(&format!(
            "CREATE TABLE accounts_p{r} PARTITION OF accounts FOR VALUES WITH (MODULUS {SHARDS}, REMAINDER {r});
             CREATE TABLE events_p{r} PARTITION OF events FOR VALUES WITH (MODULUS {SHARDS}, REMAINDER {r});"
        ));
    }
    ddl
}

#[derive(Default)]
struct Tally {
    writes: u64,
    errors: u64,
    missing: u64,
    expected: HashMap<i64, i64>,
    max_pause: BTreeMap<u32, Duration>,
}

/// Writer `w` owns ids `10_000_000 * (w + 1) + n`.
async fn writer(w: usize, router: ShardRouter<PgPool>, stop: Arc<AtomicBool>) -> Tally {
    let f = PgHash::new(SHARDS).expect("modulus");
    let mut t = Tally::default();
    let base = 10_000_000 * (w as i64 + 1);
    let (mut next, mut live, mut step) = (0_i64, Vec::<i64>::new(), 0_u64);
    while !stop.load(Ordering::Relaxed) {
        step += 1;
        let (id, sql) = if step % 10 < 5 || live.len() < 4 {
            next += 1;
            (
                base + next,
                "INSERT INTO accounts (id, balance, note) VALUES ($1, 0, 'w')",
            )
        } else if step % 10 < 9 {
            (
                live[(step as usize * 7) % live.len()],
                "UPDATE accounts SET balance = balance + 1 WHERE id = $1",
            )
        } else {
            let i = (step as usize * 13) % live.len();
            (live.swap_remove(i), "DELETE FROM accounts WHERE id = $1")
        };
        let shard = f.shard_for(&ShardKey::Int(id)).map_or(u32::MAX, |s| s.0);
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
        let pause = t.max_pause.entry(shard).or_default();
        *pause = (*pause).max(started.elapsed());
        match res {
            Ok(n) => {
                t.writes += 1;
                t.missing += u64::from(n != 1);
                match &sql[..6] {
                    "INSERT" => {
                        t.expected.insert(id, 0);
                        live.push(id);
                    }
                    "UPDATE" => *t.expected.entry(id).or_default() += 1,
                    _ => {
                        t.expected.remove(&id);
                    }
                }
            }
            Err(e) => {
                eprintln!("write failed: {e}");
                t.errors += 1;
                match &sql[..6] {
                    "INSERT" => next -= 1,
                    "DELETE" => live.push(id),
                    _ => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    t
}

/// `pg_dump --data-only` of the moved partitions piped into `psql`: the
/// baseline the executor's copy is compared with.
async fn dump_baseline(
    a_url: &str,
    scratch_url: &str,
    a: &PgPool,
) -> Result<(u64, Duration), BoxError> {
    let mut tables = String::new();
    let mut rows = 0_u64;
    for s in MOVED {
        for t in ["accounts", "events"] {
            tables.push_str(&format!(" -t public.{t}_p{s}"));
            let n: i64 =
                sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {t}_p{s}")))
                    .fetch_one(a)
                    .await?;
            rows += n as u64;
        }
    }
    let cmd = format!(
        "set -o pipefail; pg_dump --data-only --no-owner{tables} '{a_url}' | psql -X -q -v ON_ERROR_STOP=1 '{scratch_url}' >/dev/null"
    );
    let started = Instant::now();
    // A blocking child process: nothing else runs meanwhile.
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .arg("-c")
            .arg(&cmd)
            .status()
    })
    .await??;
    let took = started.elapsed();
    if !status.success() {
        return Err(format!("pg_dump | psql failed ({status})").into());
    }
    Ok((rows, took))
}

async fn run() -> Result<bool, BoxError> {
    let admin_a = env("SYSMANAGE_PG_ADMIN_URL")?;
    let admin_b = env("SYSMANAGE_PG_SHARD_ADMIN_URL")?;

    section("1. node sets a (primary cluster) and b (shard cluster)");
    let a_url = fresh_db(&admin_a, "shard_move_demo_a").await?;
    let b_url = fresh_db(&admin_b, "shard_move_demo_b").await?;
    let scratch_url = fresh_db(&admin_b, "shard_move_demo_dump").await?;
    let (a, b, scratch) = (
        connect(&a_url, 20).await?,
        connect(&b_url, 20).await?,
        connect(&scratch_url, 2).await?,
    );
    exec(&a, &schema_sql()).await?;
    exec(&scratch, &schema_sql()).await?;
    exec(
        &a,
        &format!(
            "INSERT INTO accounts SELECT g, g % 100, 'note ' || g FROM generate_series(1, {rows}) g;
             INSERT INTO events SELECT g, g % 977, jsonb_build_object('n', g) FROM generate_series(1, {rows}) g;
             ANALYZE accounts; ANALYZE events;",
            rows = ROWS
        ),
    )
    .await?;
    println!("loaded {ROWS} accounts and {ROWS} events on a");

    section("2. baseline: pg_dump --data-only | psql of the same partitions");
    let (dump_rows, dump_time) = dump_baseline(&a_url, &scratch_url, &a).await?;
    let dump_rate = dump_rows as f64 / dump_time.as_secs_f64();
    println!("{dump_rows} rows in {dump_time:?}: {dump_rate:.0} rows/s");
    scratch.close().await;

    section("3. move shards 1, 3, 5, 7 to b under writes from two routers");
    let store = ShardMapStore::open(a.clone(), "demo").await?;
    store.init(&["a"; SHARDS as usize]).await?;
    let mut routers = Vec::new();
    let mut watchers = Vec::new();
    for _ in 0..2 {
        let router = ShardRouter::builder(PgHash::new(SHARDS)?)
            .node_set("a", a.clone())
            .node_set("b", b.clone())
            .fence_hold(Duration::from_secs(10))
            .shard_map(store.load().await?)
            .build()?;
        watchers.push(
            ShardMapWatcher::start(
                store.clone(),
                vec![Arc::new(router.clone()) as Arc<dyn EpochTarget>],
                Duration::from_secs(1),
            )
            .await?,
        );
        routers.push(router);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(writer(w, routers[w % 2].clone(), Arc::clone(&stop))))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut options = MoveOptions::default();
    options.cleanup_grace = Duration::from_secs(1);
    let spec = MoveSpec::new(
        "demo",
        MOVED.map(ShardId),
        ["accounts", "events"],
        Endpoint::new("a", &a_url),
        Endpoint::new("b", &b_url),
    );
    let report = ShardMove::builder(store.clone(), spec)
        .options(options)
        .on_progress(|p| {
            println!(
                "  {:>8} rows_copied={:>7} lag={:>8} eta={:?}",
                p.phase.as_str(),
                p.rows_copied,
                p.lag_bytes.map_or("-".into(), |l| format!("{l}B")),
                p.eta
            );
        })
        .build()?
        .run()
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    for w in writers {
        let t = w.await?;
        tally.writes += t.writes;
        tally.errors += t.errors;
        tally.missing += t.missing;
        tally.expected.extend(t.expected);
        for (s, p) in t.max_pause {
            let m = tally.max_pause.entry(s).or_default();
            *m = (*m).max(p);
        }
    }
    drop(watchers);
    let copy_rate = report.rows_copied as f64 / report.copy_time.as_secs_f64().max(1e-9);
    println!(
        "copy: {} rows in {:?}: {copy_rate:.0} rows/s ({:.2}x pg_dump | psql); cut pause {:?}; fence to switch {:?} ({} attempt(s))",
        report.rows_copied,
        report.copy_time,
        copy_rate / dump_rate,
        report.cut_pause,
        report.fence_pause,
        report.fence_attempts
    );
    for r in &routers {
        println!(
            "router epoch {}: {}",
            r.epoch(),
            (0..SHARDS)
                .map(|s| r.node_set_name(ShardId(s)).unwrap_or("?"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }

    section("4. audit");
    let mut rows: HashMap<i64, Vec<i64>> = HashMap::new();
    for pool in [&a, &b] {
        for r in sqlx::query("SELECT id, balance FROM accounts")
            .fetch_all(pool)
            .await?
        {
            rows.entry(r.get(0)).or_default().push(r.get(1));
        }
    }
    let duplicates = rows.values().filter(|v| v.len() > 1).count();
    let mut lost = tally.missing as usize;
    lost += tally
        .expected
        .iter()
        .filter(|(id, bal)| rows.get(id).map(|v| v[0]) != Some(**bal))
        .count();
    lost += (1..=ROWS)
        .filter(|id| rows.get(id).map(|v| v[0]) != Some(id % 100))
        .count();
    lost += rows
        .keys()
        .filter(|id| **id > 10_000_000 && !tally.expected.contains_key(id))
        .count();
    let pauses: Vec<String> = tally
        .max_pause
        .iter()
        .map(|(s, p)| format!("shard-{s}={}ms", p.as_millis()))
        .collect();
    println!("longest write per shard: {}", pauses.join(" "));
    let max_pause = tally.max_pause.values().max().copied().unwrap_or_default();
    let mismatches = report.mismatches().count();
    println!(
        "summary: writes={} lost_writes={lost} duplicate_rows={duplicates} verify_mismatches={mismatches} rows_moved={} max_write_pause_ms={}",
        tally.writes,
        report.rows_copied,
        max_pause.as_millis()
    );
    Ok(lost == 0 && duplicates == 0 && mismatches == 0 && tally.errors == 0)
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
