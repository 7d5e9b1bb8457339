//! ReplicaRouter against the local PostgreSQL topology (primary + standby1 +
//! standby2, see `scripts/services`): real standbys stopped with
//! `pg_ctl stop -m immediate`, real `pg_wal_replay_pause()`, a real promotion.
//!
//! Fault tests share one topology, so every test here takes `TOPOLOGY` first
//! and leaves the topology as it found it (guards restore it even when an
//! assertion fails; the promotion test resets it).
#![cfg(feature = "integration")]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sysmanage_core::{Backoff, Jitter};
use sysmanage_db::Error;
use sysmanage_db::replica::{
    Consistency, NodeState, PgNodeOptions, ReplicaConfig, ReplicaRouter, pg_node,
};
use sysmanage_test::{pg_primary_url, pg_standby_urls, services};

static TOPOLOGY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const INTERVAL: Duration = Duration::from_millis(100);

fn config() -> ReplicaConfig {
    let mut c = ReplicaConfig::default();
    c.monitor_interval = INTERVAL;
    c.monitor_jitter = Duration::from_millis(10);
    c.probe_timeout = Duration::from_millis(500);
    // A connection being opened is a latency peak; forget peaks within a second.
    c.ewma_decay = Duration::from_secs(1);
    c.ban_backoff = Backoff::builder()
        .initial(Duration::from_millis(200))
        .max(Duration::from_secs(2))
        .jitter(Jitter::Equal)
        .build()
        .unwrap();
    c
}

async fn router() -> ReplicaRouter<PgPool> {
    let opts = PgNodeOptions::default();
    let standbys = pg_standby_urls();
    ReplicaRouter::builder()
        .config(config())
        .primary(pg_node("primary", pg_primary_url(), &opts).unwrap())
        .replica(pg_node("standby1", standbys[0].clone(), &opts).unwrap())
        .replica(pg_node("standby2", standbys[1].clone(), &opts).unwrap())
        .build()
        .await
        .unwrap()
}

/// Which server answered: its port.
async fn served_by(router: &ReplicaRouter<PgPool>, c: Consistency) -> sysmanage_db::Result<i32> {
    router
        .read(c, |pool| async move {
            sqlx::query_scalar::<_, i32>("select inet_server_port()")
                .fetch_one(&pool)
                .await
        })
        .await
}

/// `tasks` concurrent readers doing `per_task` reads each: reads per port.
async fn spread(
    router: &ReplicaRouter<PgPool>,
    c: Consistency,
    tasks: usize,
    per_task: usize,
) -> HashMap<i32, usize> {
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let router = router.clone();
        readers.spawn(async move {
            let mut ports = Vec::new();
            for _ in 0..per_task {
                ports.push(served_by(&router, c).await.unwrap());
            }
            ports
        });
    }
    let mut seen: HashMap<i32, usize> = HashMap::new();
    while let Some(ports) = readers.join_next().await {
        for port in ports.unwrap() {
            *seen.entry(port).or_default() += 1;
        }
    }
    seen
}

fn port_of(url: &str) -> i32 {
    url.rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

async fn wait_for(
    router: &ReplicaRouter<PgPool>,
    what: &str,
    timeout: Duration,
    f: impl Fn(&sysmanage_db::replica::RouterStatus) -> bool,
) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f(&router.status()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{what} not reached within {timeout:?}: {:#?}",
        router.status()
    );
}

/// A table of our own, visible on both standbys (DDL replays too).
async fn fresh_table(router: &ReplicaRouter<PgPool>, name: &str) {
    let primary = router.primary_pool().unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("drop table if exists {name}")))
        .execute(&primary)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "create table {name} (id bigserial primary key, at timestamptz default clock_timestamp())"
    )))
    .execute(&primary)
    .await
    .unwrap();
    for standby in ["standby1", "standby2"] {
        let pool = router.node_pool(standby).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen: bool = sqlx::query_scalar("select to_regclass($1) is not null")
                .bind(name)
                .fetch_one(&pool)
                .await
                .unwrap();
            if seen {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never replayed on {standby}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn blocking_services(args: &'static [&'static str]) -> String {
    tokio::task::spawn_blocking(move || services(args))
        .await
        .unwrap()
}

/// Runs a restoring `services` command from a guard's `drop`: loudly when
/// the test is otherwise fine, without a second panic (which would abort the
/// whole test binary) when it is already failing.
fn restore(args: &[&str]) {
    if std::thread::panicking() {
        if std::panic::catch_unwind(|| services(args)).is_err() {
            eprintln!(
                "could not restore the topology with `services {}`",
                args.join(" ")
            );
        }
    } else {
        services(args);
    }
}

/// Starts `node` again when dropped (idempotent in the script).
struct RestartOnDrop(&'static str);
impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        restore(&["pg-start", self.0]);
    }
}

/// Resumes replay on a standby when dropped.
struct ResumeOnDrop(String);
impl Drop for ResumeOnDrop {
    fn drop(&mut self) {
        let url = self.0.clone();
        // A fresh runtime on its own thread: Drop may run inside a runtime.
        let resumed = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let pool = PgPool::connect(&url).await.map_err(|e| e.to_string())?;
                sqlx::query("select pg_wal_replay_resume()")
                    .execute(&pool)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        match resumed {
            Ok(Ok(())) => {}
            other if std::thread::panicking() => eprintln!("could not resume replay: {other:?}"),
            other => panic!("could not resume replay: {other:?}"),
        }
    }
}

/// Resets the whole topology when dropped (after a promotion).
struct ResetOnDrop;
impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        restore(&["reset"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_spread_over_both_standbys() {
    let _lock = TOPOLOGY.lock().await;
    let router = router().await;
    let first = router.status().node("standby1").unwrap().last_probe;
    wait_for(&router, "monitor probes", Duration::from_secs(2), |s| {
        s.node("standby1").unwrap().last_probe > first
    })
    .await;
    let standbys = pg_standby_urls();
    // Eight concurrent readers, as an application would have: P2C balances
    // on latency × in-flight. The first round opens the pools' connections.
    spread(&router, Consistency::Any, 8, 50).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = spread(&router, Consistency::Any, 8, 50).await;
    for url in &standbys {
        let n = seen.get(&port_of(url)).copied().unwrap_or(0);
        assert!(
            n >= 60,
            "standby {} served {n} of 400: {seen:?}",
            port_of(url)
        );
    }
    assert_eq!(seen.get(&port_of(&pg_primary_url())), None, "{seen:?}");
    // Writes go to the primary.
    let port: i32 = router
        .write(|pool| async move {
            sqlx::query_scalar("select inet_server_port()")
                .fetch_one(&pool)
                .await
        })
        .await
        .unwrap();
    assert_eq!(port, port_of(&pg_primary_url()));
    let status = serde_json::to_value(router.status()).unwrap();
    assert_eq!(status["reads"], 800);
    assert_eq!(status["fallbacks"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_stopped_immediately_costs_no_read_and_is_readmitted() {
    let _lock = TOPOLOGY.lock().await;
    let router = router().await;
    let standby1 = port_of(&pg_standby_urls()[0]);
    let reader = {
        let router = router.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0usize, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                match served_by(&router, Consistency::Any).await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(format!("{e:?}")),
                }
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restart = RestartOnDrop("standby1");
    blocking_services(&["pg-stop", "standby1", "immediate"]).await;
    let (ok, failed) = reader.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} failed reads of {}: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 100, "only {ok} reads");
    let s = router.status();
    assert!(
        matches!(s.node("standby1").unwrap().state, NodeState::Banned { .. }),
        "{s:#?}"
    );
    drop(restart); // pg-start standby1
    wait_for(
        &router,
        "standby1 re-admitted",
        Duration::from_secs(10),
        |s| s.node("standby1").unwrap().state == NodeState::Healthy,
    )
    .await;
    // Its first reads open new connections (a latency peak P2C avoids until
    // it fades): warm up, let the peak decay, then look at the spread.
    spread(&router, Consistency::Any, 8, 25).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let back = spread(&router, Consistency::Any, 8, 25).await;
    assert!(
        back.get(&standby1).copied().unwrap_or(0) >= 10,
        "after restart: {back:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replay_never_serves_a_stale_row() {
    let _lock = TOPOLOGY.lock().await;
    let router = router().await;
    fresh_table(&router, "replica_pause_t").await;
    let standby1_url = pg_standby_urls()[0].clone();
    let standby1 = port_of(&standby1_url);
    let pool1 = router.node_pool("standby1").unwrap();
    sqlx::query("select pg_wal_replay_pause()")
        .execute(&pool1)
        .await
        .unwrap();
    let resume = ResumeOnDrop(standby1_url);

    let bound = Duration::from_millis(400);
    let bounded = Consistency::bounded_time(bound);
    let (mut stale, mut cycles) = (0usize, 0usize);
    let mut by_port: HashMap<(&str, i32), usize> = HashMap::new();
    let mut commits: Vec<(i64, Instant)> = Vec::new();
    let started = Instant::now();
    while cycles < 1000 || started.elapsed() < 2 * bound {
        let (id, token) = router
            .write_with_token(|pool| async move {
                sqlx::query_scalar::<_, i64>(
                    "insert into replica_pause_t default values returning id",
                )
                .fetch_one(&pool)
                .await
            })
            .await
            .unwrap();
        commits.push((id, Instant::now()));
        let read = |c: Consistency| {
            let router = &router;
            async move {
                router
                    .read(c, |pool| async move {
                        sqlx::query_as::<_, (Option<i64>, i32)>(
                            "select max(id), inet_server_port() from replica_pause_t",
                        )
                        .fetch_one(&pool)
                        .await
                    })
                    .await
                    .unwrap()
            }
        };
        // Read-your-writes: must see `id`.
        let (max, port) =
            read(Consistency::at_least(token).with_wait(Duration::from_millis(20))).await;
        if max.unwrap_or(0) < id {
            stale += 1;
        }
        *by_port.entry(("at_least", port)).or_default() += 1;
        // Bounded staleness: must see every row committed more than `bound` ago.
        let read_at = Instant::now();
        let (max, port) = read(bounded).await;
        let required = commits
            .iter()
            .rev()
            .find(|(_, at)| *at + bound <= read_at)
            .map_or(0, |(id, _)| *id);
        if max.unwrap_or(0) < required {
            stale += 1;
        }
        *by_port.entry(("bounded", port)).or_default() += 1;
        cycles += 1;
    }
    let s = router.status();
    eprintln!("paused replay: {cycles} cycles, reads by (level, port): {by_port:?}");
    drop(resume);
    assert_eq!(
        stale, 0,
        "{stale} stale reads in {cycles} cycles: {by_port:?}"
    );
    assert!(cycles >= 1000);
    // Not vacuous: standby1 really lagged.
    assert!(s.node("standby1").unwrap().lag_bytes > 0, "{s:#?}");
    // It serves again after resuming.
    wait_for(
        &router,
        "standby1 caught up",
        Duration::from_secs(10),
        |s| s.node("standby1").unwrap().lag_bytes == 0,
    )
    .await;
    spread(&router, bounded, 8, 25).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let back = spread(&router, bounded, 8, 25).await;
    assert!(
        back.get(&standby1).copied().unwrap_or(0) >= 10,
        "bounded reads after resume: {back:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_repoints_writes_without_losing_acknowledged_ones() {
    let _lock = TOPOLOGY.lock().await;
    let _reset = ResetOnDrop;
    let router = router().await;
    fresh_table(&router, "replica_promote_t").await;
    let writer = {
        let router = router.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut failures = 0usize;
            let deadline = Instant::now() + Duration::from_secs(4);
            while Instant::now() < deadline {
                match router
                    .write(|pool| async move {
                        sqlx::query_scalar::<_, i64>(
                            "insert into replica_promote_t default values returning id",
                        )
                        .fetch_one(&pool)
                        .await
                    })
                    .await
                {
                    Ok(id) => acked.push((id, router.primary_name().unwrap())),
                    Err(_) => {
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (acked, failures)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A fast shutdown sends all WAL to the standbys first, so every
    // acknowledged write is on standby1 when it is promoted.
    blocking_services(&["pg-stop", "primary", "fast"]).await;
    let promoting = Instant::now();
    blocking_services(&["pg-promote", "standby1"]).await;
    let promoted = Instant::now();
    eprintln!("pg_ctl promote took {:?}", promoted - promoting);
    wait_for(&router, "writes re-pointed", Duration::from_secs(5), |s| {
        s.primary.as_deref() == Some("standby1")
    })
    .await;
    let repointed = promoted.elapsed();
    eprintln!("writes re-pointed {repointed:?} after the promotion");
    let (acked, failures) = writer.await.unwrap();
    let limit = 2 * (INTERVAL + config().monitor_jitter);
    assert!(
        repointed <= limit,
        "re-pointed after {repointed:?}, limit {limit:?}"
    );
    assert!(
        acked.iter().any(|(_, p)| p == "standby1"),
        "no write reached the new primary"
    );
    // Every acknowledged write is on the new primary.
    let ids: Vec<i64> = acked.iter().map(|(id, _)| *id).collect();
    let new_primary = router.node_pool("standby1").unwrap();
    let present: i64 =
        sqlx::query_scalar("select count(*) from replica_promote_t where id = any($1)")
            .bind(&ids)
            .fetch_one(&new_primary)
            .await
            .unwrap();
    assert_eq!(
        present as usize,
        ids.len(),
        "lost acknowledged writes ({failures} unacknowledged attempts)"
    );
    assert_eq!(router.status().role_changes, 1);
}

#[tokio::test]
async fn bad_configuration_is_a_typed_error() {
    let _lock = TOPOLOGY.lock().await;
    let opts = PgNodeOptions::default();
    let mut zero = PgNodeOptions::default();
    zero.max_connections = 0;
    assert!(matches!(
        pg_node("p", pg_primary_url(), &zero),
        Err(Error::InvalidConfig {
            field: "max_connections",
            ..
        })
    ));
    let err = pg_node("p", "postgres://app:s3cret@[nonsense", &opts).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { field: "url", .. }));
    assert!(!err.to_string().contains("s3cret"), "{err}");
    let err = ReplicaRouter::<PgPool>::builder()
        .replica(pg_node("s", pg_standby_urls()[0].clone(), &opts).unwrap())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidConfig {
            field: "primary",
            ..
        }
    ));
    let err = ReplicaRouter::builder()
        .primary(pg_node("p", pg_primary_url(), &opts).unwrap())
        .replica(
            pg_node("s", pg_standby_urls()[0].clone(), &opts)
                .unwrap()
                .weight(-2.0),
        )
        .build()
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidConfig {
            field: "weight",
            ..
        }
    ));
    let mut c = ReplicaConfig::default();
    c.probe_timeout = Duration::ZERO;
    let err = ReplicaRouter::builder()
        .config(c)
        .primary(pg_node("p", pg_primary_url(), &opts).unwrap())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidConfig {
            field: "probe_timeout",
            ..
        }
    ));
    // A replica that is down at start-up: the router starts, the replica is banned.
    let router = ReplicaRouter::builder()
        .config(config())
        .primary(pg_node("p", pg_primary_url(), &opts).unwrap())
        .replica(
            pg_node(
                "down",
                "postgres://postgres:pw@127.0.0.1:1/sysmanage_test",
                &opts,
            )
            .unwrap(),
        )
        .build()
        .await
        .unwrap();
    let s = router.status();
    assert!(matches!(
        s.node("down").unwrap().state,
        NodeState::Banned { .. }
    ));
    assert_eq!(
        s.node("down").unwrap().url.as_deref(),
        Some("postgres://postgres:***@127.0.0.1:1/sysmanage_test")
    );
    // Reads fall back to the primary.
    assert_eq!(
        served_by(&router, Consistency::Any).await.unwrap(),
        port_of(&pg_primary_url())
    );
}
