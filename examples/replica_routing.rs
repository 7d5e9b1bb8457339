//! Replica routing against the local PostgreSQL topology (`scripts/services up`):
//! a mixed write/read workload with read-your-writes and bounded staleness,
//! through two phases of faults:
//!
//! 1. standby1's replay is paused while standby2 is stopped
//!    (`pg_ctl stop -m immediate`) and restarted;
//! 2. a promotion past a lagging standby: standby1 stops, the primary keeps
//!    writing to standby2 for a while, the primary dies (`immediate`),
//!    standby1 comes back and is promoted. standby2 then holds WAL of the
//!    old timeline that the new primary's history does not contain: it is
//!    diverged and must serve nothing.
//!
//! Leaves a fresh PostgreSQL topology behind (`scripts/services pg-reset`).
//!
//! ```text
//! scripts/services up && eval "$(scripts/services env)"
//! cargo run -p sysmanage-examples --features postgres --example replica_routing
//! ```
//!
//! With `-- --tls` the router's pools and probes connect over TLS
//! (`verify-full` against the topology's CA) as a role that may only log in
//! over TLS, its password in `PgNodeOptions` rather than the URL.
//!
//! The last line is `summary: reads=<n> read_errors=<n> stale_reads=<n>
//! writes=<n> lost_writes=<n> lost_async=<n> fallbacks=<n> promotions=<n>
//! diverged=<n>`. `lost_writes` counts writes acknowledged by the new primary
//! (after the promotion) that are missing afterwards; `lost_async` the writes
//! the old primary acknowledged but never shipped to the standby that was
//! promoted (asynchronous replication loses them; no router can save them).
//! The exit status is non-zero when read_errors, stale_reads or lost_writes
//! is, or when the promotion or the divergence was not seen.

use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sysmanage_db::replica::{Consistency, QueryFailure, ReplicaConfig, ReplicaRouter, pg_node};
use sysmanage_examples::{init_tracing, pretty, section, secure};

const HINT: &str =
    "start the topology with `scripts/services up` and run `eval \"$(scripts/services env)\"`";
const BOUND: Duration = Duration::from_millis(500);

fn env(name: &str) -> Result<String, String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{name} is not set: {HINT}"))
}

/// Runs `scripts/services <args>`.
fn services(args: &[&str]) -> Result<(), String> {
    let script = env("SYSMANAGE_SERVICES")?;
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

/// Puts the topology back as it was, also on early returns and panics.
struct Restore {
    standby1_url: String,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = services(&["pg-start", "standby2"]) {
            eprintln!("restore: {e}");
        }
        let url = self.standby1_url.clone();
        // Drop runs inside the runtime: resume replay from a thread of its
        // own, on a fresh connection (the router's pool belongs to the main
        // runtime and must not be driven by another one).
        let resumed = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(async {
                    let mut conn = sqlx::PgConnection::connect(&url)
                        .await
                        .map_err(|e| e.to_string())?;
                    let resumed = sqlx::query("select pg_wal_replay_resume()")
                        .execute(&mut conn)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string());
                    let _ = conn.close().await;
                    resumed
                })
        })
        .join();
        if !matches!(resumed, Ok(Ok(()))) {
            eprintln!("restore: could not resume replay on standby1: {resumed:?}");
        }
    }
}

#[derive(Default)]
struct Counters {
    reads: AtomicU64,
    read_errors: AtomicU64,
    /// Tags of rows a read did not see. Stale only if the row is part of
    /// the final history: a row the old primary acknowledged but never
    /// shipped is lost (`lost_async`), not read stale.
    missed: std::sync::Mutex<Vec<String>>,
    writes: AtomicU64,
    write_errors: AtomicU64,
}

impl Counters {
    fn missed(&self, tag: String) {
        self.missed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(tag);
    }
}

/// Resets the PostgreSQL topology (after the promotion), also on early
/// returns and panics.
struct Reset;

impl Drop for Reset {
    fn drop(&mut self) {
        if let Err(e) = services(&["pg-reset"]) {
            eprintln!("restore: {e}");
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    match run().await {
        Ok(clean) => {
            if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Router = ReplicaRouter<sqlx::PgPool>;

/// A row acknowledged by the server listening on `port` at `at`.
#[derive(Clone, Debug)]
struct Acked {
    tag: String,
    port: i32,
    at: Instant,
}

async fn count_tag(
    router: &Router,
    c: Consistency,
    tag: Option<String>,
) -> Result<i64, QueryFailure<sqlx::Error>> {
    router
        .read(c, |pool| {
            let tag = tag.clone();
            async move {
                sqlx::query_scalar::<_, i64>("select count(*) from replica_example where tag = $1")
                    .bind(tag.unwrap_or_default())
                    .fetch_one(&pool)
                    .await
            }
        })
        .await
}

/// One worker: writes rows with unique tags (row ids are not unique across
/// a promotion that lost writes: the new primary's sequence hands them out
/// again), reads each back with its token, and reads an older row of its
/// own with bounded staleness.
async fn worker(
    router: Router,
    worker: String,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> Vec<Acked> {
    let mut acked: Vec<Acked> = Vec::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let tag = format!("{worker}-{seq}");
        let t = tag.clone();
        let write = router
            .write_with_token(|pool| async move {
                sqlx::query_scalar::<_, i32>(
                    "insert into replica_example (tag) values ($1) returning inet_server_port()",
                )
                .bind(t)
                .fetch_one(&pool)
                .await
            })
            .await;
        let (port, token) = match write {
            Ok(v) => v,
            Err(e) => {
                if !e.is_connection() {
                    eprintln!("write failed: {e}");
                }
                // The primary is down or being replaced: expected while
                // it fails over; counted, and the worker waits a moment.
                counters.write_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        counters.writes.fetch_add(1, Ordering::Relaxed);
        acked.push(Acked {
            tag: tag.clone(),
            port,
            at: Instant::now(),
        });

        // Read-your-writes: the row must be there.
        let c = Consistency::at_least(token).with_wait(Duration::from_millis(20));
        counters.reads.fetch_add(1, Ordering::Relaxed);
        match count_tag(&router, c, Some(tag.clone())).await {
            Ok(1) => {}
            Ok(_) => counters.missed(tag),
            Err(e) => {
                eprintln!("read failed: {e}");
                counters.read_errors.fetch_add(1, Ordering::Relaxed);
            }
        }

        // Bounded staleness: this worker's latest row acknowledged more
        // than BOUND ago by the server that acknowledged its last write
        // (rows of a failed primary may be lost) must be visible.
        let read_at = Instant::now();
        let required = acked
            .iter()
            .rev()
            .find(|a| a.at + BOUND <= read_at && a.port == port)
            .map(|a| a.tag.clone());
        counters.reads.fetch_add(1, Ordering::Relaxed);
        match count_tag(&router, Consistency::bounded_time(BOUND), required.clone()).await {
            Ok(n) if required.is_none() || n == 1 => {}
            Ok(_) => counters.missed(required.unwrap_or_default()),
            Err(e) => {
                eprintln!("read failed: {e}");
                counters.read_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    acked
}

struct Workload {
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<Vec<Acked>>,
}

impl Workload {
    fn start(router: &Router, counters: &Arc<Counters>, phase: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..4 {
            let name = format!("p{phase}w{i}");
            tasks.spawn(worker(router.clone(), name, counters.clone(), stop.clone()));
        }
        Self { stop, tasks }
    }

    async fn finish(mut self) -> Result<Vec<Acked>, tokio::task::JoinError> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        while let Some(joined) = self.tasks.join_next().await {
            all.extend(joined?);
        }
        Ok(all)
    }
}

async fn blocking(args: &'static [&'static str]) -> Result<(), String> {
    tokio::task::spawn_blocking(move || services(args))
        .await
        .map_err(|e| e.to_string())?
}

/// Tags of `rows` missing on the server behind `pool`.
async fn missing(pool: &sqlx::PgPool, rows: &[&Acked]) -> Result<u64, sqlx::Error> {
    let tags: Vec<&str> = rows.iter().map(|a| a.tag.as_str()).collect();
    let present: i64 =
        sqlx::query_scalar("select count(*) from replica_example where tag = any($1)")
            .bind(&tags)
            .fetch_one(pool)
            .await?;
    Ok(tags.len() as u64 - present as u64)
}

fn port_of(url: &str) -> Result<i32, String> {
    url.rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no port in {url}"))
}

async fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let tls = secure::tls_requested();
    let target = secure::pg_target(tls)?;
    let primary_url = target.primary.clone();
    let [standby1_url, standby2_url] = target.standbys.as_slice() else {
        return Err(format!("expected two standby URLs: {HINT}").into());
    };
    let standby1_port = port_of(standby1_url)?;
    // Fault injection and clean-up act as the administrator, in plain text.
    let admin_standby1_url = secure::pg_target(false)?.standbys.remove(0);
    if tls {
        println!("nodes over TLS (verify-full) as the TLS-only role");
    }

    let mut config = ReplicaConfig::default();
    config.monitor_interval = Duration::from_millis(100);
    config.monitor_jitter = Duration::from_millis(10);
    if tls {
        // Each probe opens a connection of its own: over TLS that is a
        // handshake and a SCRAM login, slow in a debug build on a busy
        // machine.
        config.probe_timeout = Duration::from_secs(2);
    }
    let opts = target.options.clone();
    let router = ReplicaRouter::builder()
        .config(config)
        .primary(pg_node("primary", primary_url.as_str(), &opts)?)
        .replica(pg_node("standby1", standby1_url.as_str(), &opts)?)
        .replica(pg_node("standby2", standby2_url.as_str(), &opts)?)
        .build()
        .await?;
    let _reset = Reset;

    section("setup");
    let primary = router.primary_pool().ok_or("no primary")?;
    sqlx::query("drop table if exists replica_example")
        .execute(&primary)
        .await?;
    sqlx::query(
        "create table replica_example (id bigserial primary key, tag text not null unique, \
         at timestamptz not null default clock_timestamp())",
    )
    .execute(&primary)
    .await?;
    for name in ["standby1", "standby2"] {
        let pool = router.node_pool(name).ok_or("missing standby")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sqlx::query_scalar::<_, bool>("select to_regclass('replica_example') is not null")
            .fetch_one(&pool)
            .await?
        {
            if Instant::now() > deadline {
                return Err(format!("the table never reached {name}").into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let at = || format!("{:.1} s", started.elapsed().as_secs_f64());

    section("phase 1: paused replay, a standby stopped and restarted");
    let standby1 = router.node_pool("standby1").ok_or("missing standby1")?;
    let restore = Restore {
        standby1_url: admin_standby1_url.clone(),
    };
    sqlx::query("select pg_wal_replay_pause()")
        .execute(&standby1)
        .await?;
    println!("{}: standby1 replay paused", at());
    let load = Workload::start(&router, &counters, 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    blocking(&["pg-stop", "standby2", "immediate"]).await?;
    println!("{}: standby2 stopped (immediate)", at());
    tokio::time::sleep(Duration::from_secs(2)).await;
    blocking(&["pg-start", "standby2"]).await?;
    println!("{}: standby2 started again", at());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut acked = load.finish().await?;
    drop(restore);
    println!("{}: standby1 replay resumed", at());

    section("phase 2: promotion past a lagging standby");
    let load = Workload::start(&router, &counters, 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    blocking(&["pg-stop", "standby1", "fast"]).await?;
    println!("{}: standby1 stopped; standby2 keeps streaming", at());
    tokio::time::sleep(Duration::from_secs(5)).await;
    blocking(&["pg-stop", "primary", "immediate"]).await?;
    println!("{}: primary stopped (immediate)", at());
    blocking(&["pg-start", "standby1"]).await?;
    blocking(&["pg-promote", "standby1"]).await?;
    println!("{}: standby1 promoted", at());
    let deadline = Instant::now() + Duration::from_secs(60);
    while router.primary_name().as_deref() != Some("standby1") {
        if Instant::now() > deadline {
            return Err("writes were not re-pointed to standby1 within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("{}: writes re-pointed to standby1", at());
    tokio::time::sleep(Duration::from_secs(4)).await;
    acked.extend(load.finish().await?);

    section("status");
    let status = router.status();
    println!("{}", pretty(&status));

    // Every write the new primary acknowledged is on it; writes the old
    // primary acknowledged while standby1 was stopped are lost with it.
    let new_primary = router.primary_pool().ok_or("no primary")?;
    let (after, before): (Vec<&Acked>, Vec<&Acked>) =
        acked.iter().partition(|a| a.port == standby1_port);
    let lost = missing(&new_primary, &after).await?;
    let lost_async = missing(&new_primary, &before).await?;

    let c = &counters;
    let missed: Vec<String> = c
        .missed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let missed_present: i64 =
        sqlx::query_scalar("select count(*) from replica_example where tag = any($1)")
            .bind(&missed)
            .fetch_one(&new_primary)
            .await?;
    let (reads, read_errors, stale_reads, writes, write_errors) = (
        c.reads.load(Ordering::Relaxed),
        c.read_errors.load(Ordering::Relaxed),
        missed_present as u64,
        c.writes.load(Ordering::Relaxed),
        c.write_errors.load(Ordering::Relaxed),
    );
    let standby2 = status
        .node("standby2")
        .map(|n| n.history.label())
        .unwrap_or("?");
    println!(
        "reads of rows lost with the old primary: {}",
        missed.len() as u64 - stale_reads
    );
    println!(
        "write_errors={write_errors} (while no primary answered) retries={} standby2={standby2} timeline={:?}",
        status.retries, status.timeline
    );
    println!(
        "summary: reads={reads} read_errors={read_errors} stale_reads={stale_reads} writes={writes} \
         lost_writes={lost} lost_async={lost_async} fallbacks={} promotions={} diverged={}",
        status.fallbacks, status.role_changes, status.divergences
    );
    Ok(read_errors == 0
        && stale_reads == 0
        && lost == 0
        && status.role_changes == 1
        && status.divergences == 1)
}
