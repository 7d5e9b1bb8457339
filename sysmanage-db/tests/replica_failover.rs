//! Read-your-writes through real promotions on the local PostgreSQL
//! topology (`scripts/services`): a promotion past a standby that kept
//! streaming from the old primary (it diverges), the plain promotion of a
//! caught-up standby, and a standby re-pointed at the new primary.
//!
//! Four writers insert through the router and read each row back with its
//! token. The promises checked: zero stale reads with a token, zero writes
//! sent to a node in recovery, zero acknowledged writes lost after the
//! promotion, and no read-your-writes read waiting for a replica that
//! cannot catch up. Every test resets the PostgreSQL topology when done.
#![cfg(feature = "integration")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sysmanage_core::{Backoff, Jitter};
use sysmanage_db::replica::{
    Consistency, HistoryRelation, PgNodeOptions, ReplicaConfig, ReplicaRouter, RouterStatus,
    pg_node,
};
use sysmanage_test::{pg_primary_url, pg_standby_urls, services};

static TOPOLOGY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a read-your-writes read may wait for a replica.
const WAIT: Duration = Duration::from_secs(5);

fn config() -> ReplicaConfig {
    let mut c = ReplicaConfig::default();
    c.monitor_interval = Duration::from_millis(250);
    c.monitor_jitter = Duration::from_millis(25);
    c.probe_timeout = Duration::from_secs(2);
    c.max_token_wait = WAIT;
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

fn port_of(url: &str) -> i32 {
    let rest = url.rsplit(':').next().unwrap();
    rest.split('/').next().unwrap().parse().unwrap()
}

async fn blocking_services(args: &'static [&'static str]) {
    tokio::task::spawn_blocking(move || services(args))
        .await
        .unwrap();
}

/// Resets PostgreSQL when dropped, quietly when the test already fails.
struct ResetOnDrop;
impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if std::panic::catch_unwind(|| services(&["pg-reset"])).is_err() {
                eprintln!("could not reset the PostgreSQL topology");
            }
        } else {
            services(&["pg-reset"]);
        }
    }
}

async fn fresh_table(router: &ReplicaRouter<PgPool>, name: &'static str) {
    let primary = router.primary_pool().unwrap();
    for sql in [
        format!("drop table if exists {name}"),
        format!(
            "create table {name} (id bigserial primary key, writer int not null, tag text not null unique)"
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&primary)
            .await
            .unwrap();
    }
    for standby in ["standby1", "standby2"] {
        let pool = router.node_pool(standby).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sqlx::query_scalar::<_, bool>("select to_regclass($1) is not null")
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap()
        {
            assert!(Instant::now() < deadline, "{name} not on {standby}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// One read-your-writes read: when it started, how long it took, whether it
/// failed, whether it missed the row, and which server answered.
#[derive(Clone, Debug)]
struct Read {
    started: Instant,
    took: Duration,
    failed: bool,
    /// The row's tag when the read did not see it.
    missed: Option<String>,
    port: i32,
}

#[derive(Debug, Default)]
struct Report {
    /// (the row's unique tag, port of the server that acknowledged it).
    /// Not the id: after a promotion that lost writes, the new primary's
    /// sequence hands out the lost rows' ids again.
    acked: Vec<(String, i32)>,
    reads: Vec<Read>,
    write_errors: usize,
    /// Writes rejected as read-only: sent to a node in recovery.
    to_recovery: Vec<String>,
}

impl Report {
    fn merge(&mut self, other: Self) {
        self.acked.extend(other.acked);
        self.reads.extend(other.reads);
        self.write_errors += other.write_errors;
        self.to_recovery.extend(other.to_recovery);
    }
}

async fn writer(
    router: ReplicaRouter<PgPool>,
    table: &'static str,
    id: i32,
    stop: Arc<AtomicBool>,
) -> Report {
    let mut report = Report::default();
    let insert = format!(
        "insert into {table} (writer, tag) values ($1, $2) returning tag, inet_server_port()"
    );
    let select = format!("select count(*)::int8, inet_server_port() from {table} where tag = $1");
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        seq += 1;
        let sql = insert.clone();
        let tag = format!("{id}-{seq}");
        let written = router
            .write_with_token(|pool| async move {
                sqlx::query_as::<_, (String, i32)>(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(tag)
                    .fetch_one(&pool)
                    .await
            })
            .await;
        let ((row, port), token) = match written {
            Ok(w) => w,
            Err(e) => {
                report.write_errors += 1;
                let read_only = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<sqlx::Error>())
                    .and_then(|s| s.as_database_error())
                    .and_then(|d| d.code())
                    .is_some_and(|c| c == "25006");
                if read_only {
                    report.to_recovery.push(e.to_string());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        report.acked.push((row.clone(), port));
        let sql = select.clone();
        let started = Instant::now();
        let read = router
            .read(Consistency::at_least(token).with_wait(WAIT), |pool| {
                let (sql, row) = (sql.clone(), row.clone());
                async move {
                    sqlx::query_as::<_, (i64, i32)>(sqlx::AssertSqlSafe(sql))
                        .bind(row)
                        .fetch_one(&pool)
                        .await
                }
            })
            .await;
        report.reads.push(match read {
            Ok((n, port)) => Read {
                started,
                took: started.elapsed(),
                failed: false,
                missed: (n != 1).then_some(row),
                port,
            },
            Err(_) => Read {
                started,
                took: started.elapsed(),
                failed: true,
                missed: None,
                port: 0,
            },
        });
    }
    report
}

struct Writers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Report>>,
}

impl Writers {
    fn start(router: &ReplicaRouter<PgPool>, table: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..4)
            .map(|i| tokio::spawn(writer(router.clone(), table, i, stop.clone())))
            .collect();
        Self { stop, tasks }
    }

    async fn finish(self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        let mut report = Report::default();
        for t in self.tasks {
            report.merge(t.await.unwrap());
        }
        report
    }
}

async fn wait_until(
    router: &ReplicaRouter<PgPool>,
    what: &str,
    f: impl Fn(&RouterStatus) -> bool,
) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if f(&router.status()) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{what} not reached within 60 s: {:#?}",
            router.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Rows of `acked` that are missing on the server behind `pool`.
async fn missing(pool: &PgPool, table: &'static str, acked: &[(String, i32)]) -> usize {
    let ids: Vec<&str> = acked.iter().map(|(tag, _)| tag.as_str()).collect();
    let present: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select count(*) from {table} where tag = any($1)"
    )))
    .bind(&ids)
    .fetch_one(pool)
    .await
    .unwrap();
    ids.len() - present as usize
}

/// Checks the promises. A read that missed its row is stale when the row
/// is part of the final history (on the new primary `pool`); a row the old
/// primary acknowledged but never shipped is lost, not read stale.
async fn assert_promises(report: &Report, repointed: Instant, pool: &PgPool, table: &'static str) {
    let mut stale: Vec<&Read> = Vec::new();
    for r in &report.reads {
        if let Some(tag) = &r.missed
            && missing(pool, table, &[(tag.clone(), 0)]).await == 0
        {
            stale.push(r);
        }
    }
    assert!(
        stale.is_empty(),
        "{} stale reads with a token, the first: {:?}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
    assert!(
        report.to_recovery.is_empty(),
        "writes sent to a node in recovery: {:?}",
        report.to_recovery
    );
    let after: Vec<&Read> = report
        .reads
        .iter()
        .filter(|r| r.started >= repointed)
        .collect();
    assert!(after.len() > 50, "too few reads after the promotion");
    let failed = after.iter().filter(|r| r.failed).count();
    assert_eq!(
        failed, 0,
        "read-your-writes reads failed after the promotion"
    );
    // No read waited for a replica that cannot catch up: each went where it
    // could be served at once (WAIT is the cost of waiting in vain).
    let slowest = after.iter().map(|r| r.took).max().unwrap();
    assert!(
        slowest < WAIT / 2,
        "a read after the promotion took {slowest:?} (a wait for an unreachable replica)"
    );
}

/// The reproduction: standby1 stops, the primary keeps writing to standby2,
/// the primary dies, standby1 is promoted. standby2 replayed timeline-1 WAL
/// past the switch point, so LSNs alone would say it holds tokens of the
/// new primary that it never received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_past_a_streaming_standby_marks_it_diverged_and_serves_no_stale_read() {
    let _lock = TOPOLOGY.lock().await;
    let _reset = ResetOnDrop;
    let router = router().await;
    let table = "failover_diverged_t";
    fresh_table(&router, table).await;
    let standby1 = port_of(&pg_standby_urls()[0]);
    let standby2 = port_of(&pg_standby_urls()[1]);
    let writers = Writers::start(&router, table);
    tokio::time::sleep(Duration::from_millis(500)).await;
    blocking_services(&["pg-stop", "standby1", "fast"]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    blocking_services(&["pg-stop", "primary", "immediate"]).await;
    blocking_services(&["pg-start", "standby1"]).await;
    blocking_services(&["pg-promote", "standby1"]).await;
    let repointed = wait_until(&router, "writes re-pointed to standby1", |s| {
        s.primary.as_deref() == Some("standby1")
    })
    .await;
    let status = router.status();
    assert_eq!(status.timeline, Some(2), "{status:#?}");
    assert_eq!(
        status.node("standby2").unwrap().history,
        HistoryRelation::Diverged,
        "{status:#?}"
    );
    assert_eq!(status.divergences, 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = writers.finish().await;
    let new_primary = router.node_pool("standby1").unwrap();
    assert_promises(&report, repointed, &new_primary, table).await;
    assert!(
        report
            .reads
            .iter()
            .all(|r| r.started < repointed || r.port != standby2),
        "the diverged standby served a read after the promotion"
    );
    let after: Vec<(String, i32)> = report
        .acked
        .iter()
        .filter(|(_, p)| *p == standby1)
        .cloned()
        .collect();
    assert!(
        after.len() >= 100,
        "only {} writes on the new primary",
        after.len()
    );
    assert_eq!(missing(&new_primary, table, &after).await, 0, "lost writes");
    let before: Vec<(String, i32)> = report
        .acked
        .iter()
        .filter(|(_, p)| *p != standby1)
        .cloned()
        .collect();
    let lost_async = missing(&new_primary, table, &before).await;
    eprintln!(
        "diverged: acked={} reads={} write_errors={} lost_async={lost_async} status={:?}",
        report.acked.len(),
        report.reads.len(),
        report.write_errors,
        router.status().node("standby2").unwrap()
    );
    assert!(
        lost_async > 0,
        "standby1 was stopped: the writes it missed are lost"
    );
}

/// The plain promotion of a caught-up standby, then standby2 re-pointed at
/// the new primary: it sits at the switch point (behind, never diverged),
/// is not waited for while it does not stream from the new primary, and
/// serves read-your-writes again once it follows timeline 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_promotion_then_repointed_standby_serves_tokens_again() {
    let _lock = TOPOLOGY.lock().await;
    let _reset = ResetOnDrop;
    let router = router().await;
    let table = "failover_plain_t";
    fresh_table(&router, table).await;
    let standby1 = port_of(&pg_standby_urls()[0]);
    let standby2 = port_of(&pg_standby_urls()[1]);
    let writers = Writers::start(&router, table);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A fast shutdown ships all WAL to both standbys first.
    blocking_services(&["pg-stop", "primary", "fast"]).await;
    blocking_services(&["pg-promote", "standby1"]).await;
    let repointed = wait_until(&router, "writes re-pointed to standby1", |s| {
        s.primary.as_deref() == Some("standby1")
    })
    .await;
    wait_until(&router, "standby2 behind on timeline 1", |s| {
        s.node("standby2").unwrap().history == HistoryRelation::Behind
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    blocking_services(&["pg-repoint", "standby2", "standby1"]).await;
    wait_until(&router, "standby2 follows timeline 2", |s| {
        let n = s.node("standby2").unwrap();
        n.history == HistoryRelation::Current && n.timeline == Some(2)
    })
    .await;
    // It serves read-your-writes reads again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let primary = router.primary_pool().unwrap();
        let (_, token) = router
            .write_with_token(|_| async move {
                sqlx::query("select 1").execute(&primary).await.map(drop)
            })
            .await
            .unwrap();
        let port: i32 = router
            .read(
                Consistency::at_least(token).with_wait(WAIT),
                |pool| async move {
                    sqlx::query_scalar("select inet_server_port()")
                        .fetch_one(&pool)
                        .await
                },
            )
            .await
            .unwrap();
        if port == standby2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "standby2 never served a token read"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = writers.finish().await;
    let new_primary = router.node_pool("standby1").unwrap();
    assert_promises(&report, repointed, &new_primary, table).await;
    let status = router.status();
    assert_eq!(status.divergences, 0, "{status:#?}");
    // Nothing was lost: the fast shutdown shipped every acknowledged write.
    assert_eq!(missing(&new_primary, table, &report.acked).await, 0);
    assert!(report.acked.iter().any(|(_, p)| *p == standby1));
    eprintln!(
        "plain: acked={} reads={} write_errors={} served_by_standby2_after={}",
        report.acked.len(),
        report.reads.len(),
        report.write_errors,
        report
            .reads
            .iter()
            .filter(|r| r.started >= repointed && r.port == standby2)
            .count()
    );
}
