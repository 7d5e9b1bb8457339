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
    Consistency, NodeState, PgNodeOptions, ReplicaConfig, ReplicaRouter, Strategy, pg_node,
};
use sysmanage_test::{pg_primary_url, pg_standby_urls, services};

static TOPOLOGY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Short enough to keep the tests quick, long enough that a loaded 2-core CI
/// machine opens each probe's connection well within the probe timeout.
const INTERVAL: Duration = Duration::from_millis(250);

/// Settings for CI: nothing here depends on a tight wall-clock bound.
fn config() -> ReplicaConfig {
    let mut c = ReplicaConfig::default();
    c.monitor_interval = INTERVAL;
    c.monitor_jitter = Duration::from_millis(25);
    // A probe opens a connection of its own; on a loaded machine that can
    // take a while, and a spurious ban would break `fallbacks == 0`.
    c.probe_timeout = Duration::from_secs(2);
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
    router_with(config()).await
}

/// Round robin: for checks of *distribution*, which must not depend on
/// latencies measured on a busy machine.
async fn round_robin_router() -> ReplicaRouter<PgPool> {
    let mut c = config();
    c.strategy = Strategy::RoundRobin;
    router_with(c).await
}

async fn router_with(config: ReplicaConfig) -> ReplicaRouter<PgPool> {
    let opts = PgNodeOptions::default();
    let standbys = pg_standby_urls();
    ReplicaRouter::builder()
        .config(config)
        .primary(pg_node("primary", pg_primary_url(), &opts).unwrap())
        .replica(pg_node("standby1", standbys[0].clone(), &opts).unwrap())
        .replica(pg_node("standby2", standbys[1].clone(), &opts).unwrap())
        .build()
        .await
        .unwrap()
}

/// Which server answered: its port.
async fn served_by(router: &ReplicaRouter<PgPool>, c: Consistency) -> sysmanage_db::Result<i32> {
    // `?` erases the typed query error into the crate's error.
    Ok(router
        .read(c, |pool| async move {
            sqlx::query_scalar::<_, i32>("select inet_server_port()")
                .fetch_one(&pool)
                .await
        })
        .await?)
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

/// Reads with `c` until `port` has served one (the node may need a probe
/// round, a new connection, …): a deadline, not a timed assertion.
async fn until_served_by(router: &ReplicaRouter<PgPool>, c: Consistency, port: i32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen: HashMap<i32, usize> = HashMap::new();
    while Instant::now() < deadline {
        let p = served_by(router, c).await.unwrap();
        if p == port {
            return;
        }
        *seen.entry(p).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!(
        "{what}: port {port} served none of the reads within 20 s ({seen:?}): {:#?}",
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
    let router = round_robin_router().await;
    let first = router.status().node("standby1").unwrap().last_probe;
    wait_for(&router, "monitor probes", Duration::from_secs(20), |s| {
        s.node("standby1").unwrap().last_probe > first
    })
    .await;
    let standbys = pg_standby_urls();
    // Eight concurrent readers, as an application would have. Round robin
    // makes the spread independent of latencies on a busy machine.
    let seen = spread(&router, Consistency::Any, 8, 100).await;
    for url in &standbys {
        let n = seen.get(&port_of(url)).copied().unwrap_or(0);
        assert!(
            n >= 300,
            "standby {} served {n} of 800: {seen:?}",
            port_of(url)
        );
    }
    assert_eq!(seen.get(&port_of(&pg_primary_url())), None, "{seen:?}");
    // The default strategy (P2C over latency × in-flight) uses both too.
    let p2c = router_with(config()).await;
    for url in &standbys {
        until_served_by(&p2c, Consistency::Any, port_of(url), "p2c").await;
    }
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
    assert_eq!(status["fallbacks"], 0, "{status:#}");
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
        Duration::from_secs(20),
        |s| s.node("standby1").unwrap().state == NodeState::Healthy,
    )
    .await;
    // It serves again (its first reads open new connections: poll, with a
    // deadline, rather than expect a share of a fixed number of reads).
    until_served_by(&router, Consistency::Any, standby1, "after restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replay_never_serves_a_stale_row() {
    let _lock = TOPOLOGY.lock().await;
    let router = router().await;
    fresh_table(&router, "replica_pause_t").await;
    let standby1_url = pg_standby_urls()[0].clone();
    let standby1 = port_of(&standby1_url);
    let standby2 = port_of(&pg_standby_urls()[1]);
    let bound = Duration::from_millis(400);
    let bounded = Consistency::bounded_time(bound);
    // Not vacuous: standby1 serves bounded reads before it falls behind.
    until_served_by(&router, bounded, standby1, "bounded reads before the pause").await;
    let pool1 = router.node_pool("standby1").unwrap();
    sqlx::query("select pg_wal_replay_pause()")
        .execute(&pool1)
        .await
        .unwrap();
    let resume = ResumeOnDrop(standby1_url);

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
    // Not vacuous: standby1 really lagged, and read-your-writes reads were
    // served by a replica (standby2), not all by the primary.
    assert!(
        s.node("standby1").unwrap().lag_bytes.is_some_and(|b| b > 0),
        "{s:#?}"
    );
    let at_least_on_standby2 = by_port.get(&("at_least", standby2)).copied().unwrap_or(0);
    assert!(
        at_least_on_standby2 > 0,
        "no at_least read was served by standby2: {by_port:?}"
    );
    // It serves again after resuming (its lag is measured against the
    // primary's flush position, so an idle primary lets it reach zero).
    wait_for(
        &router,
        "standby1 caught up (lag_bytes == 0)",
        Duration::from_secs(20),
        |s| s.node("standby1").unwrap().lag_bytes == Some(0),
    )
    .await;
    until_served_by(&router, bounded, standby1, "bounded reads after resume").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_repoints_writes_without_losing_acknowledged_ones() {
    let _lock = TOPOLOGY.lock().await;
    let _reset = ResetOnDrop;
    let router = router().await;
    fresh_table(&router, "replica_promote_t").await;
    let standby1 = port_of(&pg_standby_urls()[0]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let on_new_primary = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let router = router.clone();
        let stop = stop.clone();
        let on_new_primary = on_new_primary.clone();
        tokio::spawn(async move {
            // (id, port of the server that acknowledged it)
            let mut acked: Vec<(i64, i32)> = Vec::new();
            let mut failures = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match router
                    .write(|pool| async move {
                        sqlx::query_as::<_, (i64, i32)>(
                            "insert into replica_promote_t default values \
                             returning id, inet_server_port()",
                        )
                        .fetch_one(&pool)
                        .await
                    })
                    .await
                {
                    Ok(row) => {
                        if row.1 == standby1 {
                            on_new_primary.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        acked.push(row);
                    }
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
    eprintln!("pg_ctl promote took {:?}", promoting.elapsed());
    // Re-pointed within two monitor intervals' worth of probe rounds (plus
    // the failed probes the failover needs), counted in probes of standby1
    // rather than wall-clock time, so a loaded machine cannot fail it.
    let probed = |s: &sysmanage_db::replica::RouterStatus| s.node("standby1").unwrap().last_probe;
    let mut rounds = 0;
    let mut last = probed(&router.status());
    let deadline = Instant::now() + Duration::from_secs(60);
    while router.primary_name().as_deref() != Some("standby1") {
        assert!(
            Instant::now() < deadline,
            "writes not re-pointed after {rounds} probe rounds: {:#?}",
            router.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = probed(&router.status());
        if now != last {
            rounds += 1;
            last = now;
        }
    }
    let limit = 2 + config().primary_failure_probes;
    eprintln!("writes re-pointed after {rounds} probe rounds of standby1 (limit {limit})");
    assert!(
        rounds <= limit,
        "re-pointed after {rounds} probe rounds, limit {limit}"
    );
    // Let a few writes reach the new primary, then stop the writer.
    let repointed = Instant::now();
    while on_new_primary.load(std::sync::atomic::Ordering::SeqCst) < 20
        && Instant::now() < repointed + Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (acked, failures) = writer.await.unwrap();
    assert!(
        acked.iter().any(|(_, port)| *port == standby1),
        "no write reached the new primary ({} acknowledged, {failures} failed)",
        acked.len()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_primary_after_a_wal_switch_leaves_replicas_at_zero_lag() {
    let _lock = TOPOLOGY.lock().await;
    let router = router().await;
    // Something to switch away from (a switch right after a switch is a no-op).
    fresh_table(&router, "replica_switch_t").await;
    let primary = router.primary_pool().unwrap();
    sqlx::query("select pg_switch_wal()")
        .execute(&primary)
        .await
        .unwrap();
    let (insert, flush): (String, String) = sqlx::query_as(
        "select pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text",
    )
    .fetch_one(&primary)
    .await
    .unwrap();
    // The insert position now points past the new segment's page header,
    // which no standby's replay position ever equals; lag is measured
    // against the flush position, so the standbys reach zero.
    eprintln!("after pg_switch_wal(): insert {insert}, flush {flush}");
    // Two full probe rounds after the switch, so the lag below is measured
    // after it.
    for _ in 0..2 {
        let before = router.status();
        wait_for(&router, "a probe round", Duration::from_secs(20), |s| {
            s.nodes
                .iter()
                .zip(&before.nodes)
                .all(|(now, then)| now.last_probe > then.last_probe)
        })
        .await;
    }
    wait_for(
        &router,
        "both standbys at lag_bytes == 0 after pg_switch_wal()",
        Duration::from_secs(20),
        |s| {
            ["standby1", "standby2"]
                .iter()
                .all(|n| s.node(n).unwrap().lag_bytes == Some(0))
        },
    )
    .await;
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
