//! Fan-out across real shard databases on the local PostgreSQL primary.
//!
//! Four databases `sysmanage_shard_fan_0..3` (recreated at test start) each
//! hold the rows of the logical shards placed on them; the same rows are also
//! loaded into one unsharded table, which is the reference for the merged
//! results. Shard databases are made unreachable for real: one refuses
//! connections (`ALTER DATABASE … ALLOW_CONNECTIONS false`), another points
//! at a Unix-socket directory with no server in it (the connect fails at
//! once, with no port that another process could take in the meantime).

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};
use sysmanage_db::Error;
use sysmanage_db::shard::{
    FailureKind, PgHash, ShardCtx, ShardId, ShardRouter, combine_avg, combine_count, combine_max,
    combine_min, combine_sum, merge_sorted,
};

type Rows = Vec<(i64, i64, String)>;
/// (id, shard, value, host) columns for an `unnest` bulk insert.
type Columns = (Vec<i64>, Vec<i32>, Vec<i64>, Vec<String>);
const DBS: usize = 4;
const KEYS: i64 = 20_000;

fn db_name(prefix: &str, i: usize) -> String {
    format!("sysmanage_shard_{prefix}_{i}")
}

fn url_for(db: &str) -> String {
    let admin = sysmanage_test::pg_admin_url();
    let (base, _) = admin.rsplit_once('/').expect("admin url has a database");
    format!("{base}/{db}")
}

async fn connect(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot connect to {url}: {e}; {}",
                sysmanage_test::START_HINT
            )
        })
}

/// Lazy pools (nothing connects until the router runs a query).
fn lazy(url: &str) -> PgPool {
    let opts: PgConnectOptions = url.parse().expect("url");
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(opts)
}

/// Recreates the shard databases and loads `KEYS` rows: row `id` has
/// `value = (id * 7919) % 1000` and goes to the database of its shard under
/// `PgHash(modulus)` placed round-robin; every row also goes to the unsharded
/// reference table. Returns the reference pool.
async fn setup(prefix: &str, modulus: u32) -> PgPool {
    let admin = connect(&sysmanage_test::pg_admin_url()).await;
    for i in 0..DBS {
        let db = db_name(prefix, i);
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
        )))
        .execute(&admin)
        .await
        .expect("drop database");
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&admin)
            .await
            .expect("create database");
    }
    admin.close().await;

    let f = PgHash::new(modulus).unwrap();
    let mut per_db: Vec<Columns> = (0..DBS).map(|_| Default::default()).collect();
    let (mut ids, mut values, mut hosts) = (Vec::new(), Vec::new(), Vec::new());
    for id in 0..KEYS {
        let shard = sysmanage_db::shard::ShardFunction::shard_for(&f, &id.into()).unwrap();
        let value = (id * 7919) % 1000;
        let host = format!("host-{id:05}");
        let d = &mut per_db[shard.index() % DBS];
        d.0.push(id);
        d.1.push(shard.0 as i32);
        d.2.push(value);
        d.3.push(host.clone());
        ids.push(id);
        values.push(value);
        hosts.push(host);
    }
    for (i, (ids, shards, values, hosts)) in per_db.into_iter().enumerate() {
        let pool = connect(&url_for(&db_name(prefix, i))).await;
        sqlx::raw_sql(
            "CREATE TABLE shard_events (id int8 PRIMARY KEY, shard int4 NOT NULL, value int8 NOT NULL, host text NOT NULL)",
        )
        .execute(&pool)
        .await
        .expect("create table");
        sqlx::query(
            "INSERT INTO shard_events (id, shard, value, host) SELECT * FROM unnest($1::int8[], $2::int4[], $3::int8[], $4::text[])",
        )
        .bind(ids)
        .bind(shards)
        .bind(values)
        .bind(hosts)
        .execute(&pool)
        .await
        .expect("load shard");
        pool.close().await;
    }
    let reference = connect(&sysmanage_test::pg_primary_url()).await;
    let table = format!("shard_events_ref_{prefix}");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int8 PRIMARY KEY, value int8 NOT NULL, host text NOT NULL)"
    )))
    .execute(&reference)
    .await
    .expect("create reference");
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (id, value, host) SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[])"
    )))
    .bind(ids)
    .bind(values)
    .bind(hosts)
    .execute(&reference)
    .await
    .expect("load reference");
    reference
}

fn router(prefix: &str, modulus: u32, pools: Vec<PgPool>) -> ShardRouter<PgPool> {
    let mut b = ShardRouter::builder(PgHash::new(modulus).unwrap())
        .max_concurrency(4)
        .shard_timeout(Duration::from_secs(10));
    for (i, pool) in pools.into_iter().enumerate() {
        b = b.node_set(db_name(prefix, i), pool);
    }
    b.build().unwrap()
}

async fn top_rows(ctx: ShardCtx<PgPool>, limit: i64) -> Result<Rows, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT value, id, host FROM shard_events WHERE shard = $1 ORDER BY value, id LIMIT $2",
    )
    .bind(ctx.shard().0 as i32)
    .bind(limit)
    .fetch_all(ctx.nodes())
    .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("value"), r.get("id"), r.get("host")))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_merge_and_aggregates_equal_the_unsharded_table() {
    // Eight logical shards on four databases: two per database.
    let reference = setup("merge", 8).await;
    let pools = (0..DBS)
        .map(|i| lazy(&url_for(&db_name("merge", i))))
        .collect();
    let router = router("merge", 8, pools);

    for limit in [1_i64, 10, 137, 5_000] {
        let parts = router
            .fan_out(|ctx| top_rows(ctx, limit))
            .await
            .into_complete()
            .expect("all shards up");
        let merged = merge_sorted(parts, |r| (r.0, r.1), Some(limit as usize)).unwrap();
        let expected: Rows = sqlx::query(
            "SELECT value, id, host FROM shard_events_ref_merge ORDER BY value, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&reference)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("value"), r.get("id"), r.get("host")))
        .collect();
        assert_eq!(merged.len(), limit as usize);
        assert_eq!(merged, expected, "LIMIT {limit}");
    }

    // count / sum / min / max / avg (as sum and count) per shard, combined.
    let parts = router
        .fan_out(|ctx| async move {
            let r = sqlx::query(
                "SELECT count(*) AS n, sum(value)::int8 AS s, min(value) AS lo, max(value) AS hi \
                 FROM shard_events WHERE shard = $1",
            )
            .bind(ctx.shard().0 as i32)
            .fetch_one(ctx.nodes())
            .await?;
            Ok::<_, sqlx::Error>((
                r.get::<i64, _>("n"),
                r.get::<Option<i64>, _>("s"),
                r.get::<Option<i64>, _>("lo"),
                r.get::<Option<i64>, _>("hi"),
            ))
        })
        .await
        .into_complete()
        .unwrap();
    let expected = sqlx::query(
        "SELECT count(*) AS n, sum(value)::int8 AS s, min(value) AS lo, max(value) AS hi, avg(value)::float8 AS a \
         FROM shard_events_ref_merge",
    )
    .fetch_one(&reference)
    .await
    .unwrap();
    let n = combine_count(parts.iter().map(|p| p.0));
    let s = combine_sum(parts.iter().map(|p| p.1));
    assert_eq!(n, expected.get::<i64, _>("n"));
    assert_eq!(s, expected.get::<Option<i64>, _>("s"));
    assert_eq!(
        combine_min(parts.iter().map(|p| p.2)),
        expected.get::<Option<i64>, _>("lo")
    );
    assert_eq!(
        combine_max(parts.iter().map(|p| p.3)),
        expected.get::<Option<i64>, _>("hi")
    );
    let avg = combine_avg(parts.iter().map(|p| (p.1.unwrap_or(0) as f64, p.0))).unwrap();
    assert!((avg - expected.get::<f64, _>("a")).abs() < 1e-9);

    // Routing a single key reaches the row on its database.
    let host: String = router
        .run(12_345_i64, |ctx| async move {
            sqlx::query_scalar::<_, String>("SELECT host FROM shard_events WHERE id = $1")
                .bind(12_345_i64)
                .fetch_one(ctx.nodes())
                .await
        })
        .await
        .unwrap();
    assert_eq!(host, "host-12345");
    let stats = router.stats();
    assert_eq!(stats.shards.len(), 8);
    assert!(stats.shards.iter().all(|s| s.queries >= 5 && s.errors == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_refusing_connections_is_named_in_the_partial_result() {
    // One logical shard per database; database 2 stops accepting connections.
    let _reference = setup("down", 4).await;
    let admin = connect(&sysmanage_test::pg_admin_url()).await;
    let down = db_name("down", 2);
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER DATABASE {down} ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{down}'"
    )))
    .execute(&admin)
    .await
    .expect("disallow connections");

    let pools = (0..DBS)
        .map(|i| lazy(&url_for(&db_name("down", i))))
        .collect();
    let router = router("down", 4, pools);

    let fan = router.fan_out(|ctx| top_rows(ctx, 10)).await;
    assert_eq!(fan.len(), 4);
    assert_eq!(fan.failed_shards(), vec![ShardId(2)]);
    let failure = fan.failures().next().unwrap();
    assert_eq!(failure.node_set, down);
    assert_eq!(failure.kind, FailureKind::Error);
    assert!(
        failure
            .reason
            .contains("not currently accepting connections"),
        "reason: {}",
        failure.reason
    );
    // The other three shards' rows are all there.
    let partial = fan.clone().into_partial();
    assert_eq!(partial.values.len(), 3);
    assert!(partial.values.iter().all(|(_, rows)| rows.len() == 10));
    // into_complete refuses to hide the failure.
    match fan.into_complete() {
        Err(Error::PartialFanOut { failed, total }) => {
            assert_eq!(total, 4);
            assert_eq!(failed.len(), 1);
            assert_eq!(failed[0].shard, ShardId(2));
        }
        other => panic!("expected PartialFanOut, got {other:?}"),
    }

    // Fail-fast: a typed error naming the shard.
    match router.fan_out_fail_fast(|ctx| top_rows(ctx, 10)).await {
        Err(Error::ShardFailed(f)) => {
            assert_eq!(f.shard, ShardId(2));
            assert_eq!(f.node_set, down);
        }
        other => panic!("expected ShardFailed, got {other:?}"),
    }

    // Stats name the failing shard too.
    let stats = router.stats();
    assert_eq!(stats.shards[2].errors, 2);
    assert_eq!(stats.shards[2].consecutive_failures, 2);
    assert!(
        stats
            .shards
            .iter()
            .enumerate()
            .all(|(i, s)| i == 2 || s.errors == 0)
    );

    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER DATABASE {down} ALLOW_CONNECTIONS true"
    )))
    .execute(&admin)
    .await
    .expect("allow connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_named_with_its_connection_error() {
    let _reference = setup("port", 4).await;
    // An empty directory: no server listens on a socket in it, and nothing
    // else can start listening there while the test runs.
    let dir = std::env::temp_dir().join(format!("sysmanage-shard-nosocket-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).expect("create socket directory");
    let mut pools: Vec<PgPool> = (0..DBS)
        .map(|i| lazy(&url_for(&db_name("port", i))))
        .collect();
    let opts: PgConnectOptions = url_for(&db_name("port", 1)).parse().expect("url");
    pools[1] = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(opts.socket(&dir));
    let router = router("port", 4, pools);

    let fan = router.fan_out(|ctx| top_rows(ctx, 5)).await;
    assert_eq!(fan.failed_shards(), vec![ShardId(1)]);
    let failure = fan.failures().next().unwrap();
    assert_eq!(failure.kind, FailureKind::Error);
    assert_eq!(failure.node_set, db_name("port", 1));
    // The cause is the connection failure itself, not a pool timeout: sqlx
    // returns a missing socket at once (it only retries refused connects).
    let cause = std::error::Error::source(failure)
        .and_then(|e| e.downcast_ref::<sqlx::Error>())
        .unwrap_or_else(|| panic!("source is not a sqlx::Error: {failure:?}"));
    assert!(
        matches!(cause, sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound),
        "{cause:?}"
    );
    assert!(
        failure.reason.contains("No such file or directory"),
        "{}",
        failure.reason
    );
    assert_eq!(fan.into_partial().values.len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}
