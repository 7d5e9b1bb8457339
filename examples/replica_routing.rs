//! Replica routing against the local PostgreSQL topology (`scripts/services up`):
//! a mixed write/read workload with read-your-writes while standby1's replay
//! is paused and standby2 is stopped (`pg_ctl stop -m immediate`) and
//! restarted. Restores both standbys before it exits.
//!
//! ```text
//! scripts/services up && eval "$(scripts/services env)"
//! cargo run -p sysmanage-examples --example replica_routing
//! ```
//!
//! The last line is
//! `summary: reads=<n> read_errors=<n> stale_reads=<n> writes=<n> lost_writes=<n> fallbacks=<n>`;
//! the exit status is non-zero when read_errors, stale_reads or lost_writes is.

use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sysmanage_db::replica::{Consistency, PgNodeOptions, ReplicaConfig, ReplicaRouter, pg_node};
use sysmanage_examples::{init_tracing, pretty, section};

const HINT: &str =
    "start the topology with `scripts/services up` and run `eval \"$(scripts/services env)\"`";
const RUN_FOR: Duration = Duration::from_secs(6);
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
    stale_reads: AtomicU64,
    writes: AtomicU64,
    write_errors: AtomicU64,
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

async fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let primary_url = env("SYSMANAGE_PG_PRIMARY_URL")?;
    let standby_urls: Vec<String> = env("SYSMANAGE_PG_STANDBY_URLS")?
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect();
    let [standby1_url, standby2_url] = standby_urls.as_slice() else {
        return Err(format!("expected two standby URLs: {HINT}").into());
    };

    let mut config = ReplicaConfig::default();
    config.monitor_interval = Duration::from_millis(100);
    config.monitor_jitter = Duration::from_millis(10);
    let opts = PgNodeOptions::default();
    let router = ReplicaRouter::builder()
        .config(config)
        .primary(pg_node("primary", primary_url.as_str(), &opts)?)
        .replica(pg_node("standby1", standby1_url.as_str(), &opts)?)
        .replica(pg_node("standby2", standby2_url.as_str(), &opts)?)
        .build()
        .await?;

    section("setup");
    let primary = router.primary_pool().ok_or("no primary")?;
    sqlx::query("drop table if exists replica_example")
        .execute(&primary)
        .await?;
    sqlx::query(
        "create table replica_example (id bigserial primary key, body text not null, \
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
    let standby1 = router.node_pool("standby1").ok_or("missing standby1")?;
    let restore = Restore {
        standby1_url: standby1_url.clone(),
    };
    sqlx::query("select pg_wal_replay_pause()")
        .execute(&standby1)
        .await?;
    println!("standby1: replay paused");

    section("workload");
    let counters = Arc::new(Counters::default());
    let acked = Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let (router, counters, acked) = (router.clone(), counters.clone(), acked.clone());
        workers.spawn(async move {
            let mut committed: Vec<(i64, Instant)> = Vec::new();
            while started.elapsed() < RUN_FOR {
                let body = format!("worker {worker}");
                let write = router
                    .write_with_token(|pool| async move {
                        sqlx::query_scalar::<_, i64>(
                            "insert into replica_example (body) values ($1) returning id",
                        )
                        .bind(body)
                        .fetch_one(&pool)
                        .await
                    })
                    .await;
                let (id, token) = match write {
                    Ok(v) => v,
                    Err(e) => {
                        eprintln!("write failed: {e}");
                        counters.write_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                counters.writes.fetch_add(1, Ordering::Relaxed);
                acked.lock().unwrap_or_else(|p| p.into_inner()).push(id);
                committed.push((id, Instant::now()));

                // Read-your-writes: the row must be there.
                let c = Consistency::at_least(token).with_wait(Duration::from_millis(20));
                let read = router
                    .read(c, |pool| async move {
                        sqlx::query_scalar::<_, i64>(
                            "select count(*) from replica_example where id = $1",
                        )
                        .bind(id)
                        .fetch_one(&pool)
                        .await
                    })
                    .await;
                counters.reads.fetch_add(1, Ordering::Relaxed);
                match read {
                    Ok(1) => {}
                    Ok(_) => {
                        counters.stale_reads.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("read failed: {e}");
                        counters.read_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }

                // Bounded staleness: this worker's rows committed more than
                // BOUND ago must be visible.
                let read_at = Instant::now();
                let required = committed
                    .iter()
                    .rev()
                    .find(|(_, at)| *at + BOUND <= read_at)
                    .map(|(id, _)| *id);
                let read = router
                    .read(Consistency::bounded_time(BOUND), |pool| async move {
                        sqlx::query_scalar::<_, i64>(
                            "select count(*) from replica_example where id = $1",
                        )
                        .bind(required.unwrap_or(0))
                        .fetch_one(&pool)
                        .await
                    })
                    .await;
                counters.reads.fetch_add(1, Ordering::Relaxed);
                match read {
                    Ok(n) if required.is_none() || n == 1 => {}
                    Ok(_) => {
                        counters.stale_reads.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("read failed: {e}");
                        counters.read_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::spawn_blocking(|| services(&["pg-stop", "standby2", "immediate"])).await??;
    println!("standby2: stopped (immediate) at {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::spawn_blocking(|| services(&["pg-start", "standby2"])).await??;
    println!("standby2: started again at {:?}", started.elapsed());
    while let Some(joined) = workers.join_next().await {
        joined?;
    }

    section("status");
    let status = router.status();
    println!("{}", pretty(&status));
    drop(restore);
    println!("standby1: replay resumed; standby2 running");

    // Every acknowledged write is on the primary.
    let ids = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let present: i64 =
        sqlx::query_scalar("select count(*) from replica_example where id = any($1)")
            .bind(&ids)
            .fetch_one(&primary)
            .await?;
    let lost = ids.len() as u64 - present as u64;
    sqlx::query("drop table replica_example")
        .execute(&primary)
        .await?;

    let c = &counters;
    let (reads, read_errors, stale_reads, writes, write_errors) = (
        c.reads.load(Ordering::Relaxed),
        c.read_errors.load(Ordering::Relaxed),
        c.stale_reads.load(Ordering::Relaxed),
        c.writes.load(Ordering::Relaxed),
        c.write_errors.load(Ordering::Relaxed),
    );
    println!("write_errors={write_errors} retries={}", status.retries);
    println!(
        "summary: reads={reads} read_errors={read_errors} stale_reads={stale_reads} writes={writes} lost_writes={lost} fallbacks={}",
        status.fallbacks
    );
    Ok(read_errors == 0 && stale_reads == 0 && lost == 0 && write_errors == 0)
}
