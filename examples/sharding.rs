//! Sharding against the local PostgreSQL primary.
//!
//! 1. Checks `PgHash` against PostgreSQL's own `PARTITION BY HASH` for
//!    100,000 keys each of `int8`, `text` and `uuid` (modulus 8).
//! 2. Creates four shard databases, loads 20,000 rows into eight logical
//!    shards (two per database) and fans a query out to all of them.
//! 3. Makes one database refuse connections and fans out again: the partial
//!    result names the two logical shards that live there.
//! 4. Prints the stats snapshot and the plan for doubling to 16 shards.
//!
//! Needs the local topology: `scripts/services up && eval "$(scripts/services env)"`,
//! then `cargo run -p sysmanage-examples --example sharding`. The last line is
//! `summary: keys=<n> mismatches=<n> fanout_shards=<n> failed_shards_reported=<n>`;
//! the exit status is non-zero on any mismatch or if the failure is not
//! reported exactly.

use sysmanage_examples::sharding_demo;

use std::process::ExitCode;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};
use sysmanage_db::shard::{
    PgHash, ReshardPlan, ShardCtx, ShardFunction, ShardId, ShardKey, ShardRouter, Topology,
    merge_sorted,
};
use sysmanage_examples::{init_tracing, pretty, section};

type BoxError = Box<dyn std::error::Error>;

const DBS: usize = 4;
const MODULUS: u32 = 8;
const ROWS: i64 = 20_000;

fn admin_url() -> Result<String, BoxError> {
    std::env::var("SYSMANAGE_PG_ADMIN_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| {
            "SYSMANAGE_PG_ADMIN_URL is not set: start the local topology with \
             `scripts/services up` and run `eval \"$(scripts/services env)\"`"
                .into()
        })
}

fn db_url(admin: &str, db: &str) -> Result<String, BoxError> {
    let (base, _) = admin
        .rsplit_once('/')
        .ok_or("SYSMANAGE_PG_ADMIN_URL has no database part")?;
    Ok(format!("{base}/{db}"))
}

async fn connect(url: &str) -> Result<PgPool, BoxError> {
    Ok(PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(3))
        .connect(url)
        .await?)
}

/// Step 1: returns (keys checked, mismatches). The `int8` keys include every
/// event id loaded in step 2 (`0..ROWS`).
async fn check_against_postgres(pool: &PgPool) -> Result<(u64, u64), BoxError> {
    let f = PgHash::new(MODULUS)?;
    let cases = [
        // Includes ids 0..ROWS, the event ids loaded into the shards below.
        (
            "int8",
            "CASE WHEN g <= 20000 THEN g - 1 ELSE ('x' || md5(g::text))::bit(64)::int8 END",
        ),
        ("text", "'host-' || md5(g::text)"),
        ("uuid", "md5(g::text)::uuid"),
    ];
    let (mut keys, mut mismatches) = (0, 0);
    for (ty, expr) in cases {
        let table = format!("sharding_example_{ty}");
        let mut sql = format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (k {ty}) PARTITION BY HASH (k);"
        );
        for r in 0..MODULUS {
            sql.push_str(&format!(
                "CREATE TABLE {table}_{r} PARTITION OF {table} FOR VALUES WITH (MODULUS {MODULUS}, REMAINDER {r});"
            ));
        }
        sql.push_str(&format!(
            "INSERT INTO {table} SELECT {expr} FROM generate_series(1, 100000) g;"
        ));
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(pool).await?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT k::text AS k, tableoid::regclass::text AS part FROM {table}"
        )))
        .fetch_all(pool)
        .await?;
        let prefix = format!("{table}_");
        let mut bad = 0;
        for row in &rows {
            let k: String = row.get("k");
            let part: String = row.get("part");
            let pg: u32 = part
                .strip_prefix(&prefix)
                .and_then(|r| r.parse().ok())
                .ok_or_else(|| format!("unexpected partition {part}"))?;
            let key = match ty {
                "int8" => ShardKey::Int(k.parse()?),
                "uuid" => ShardKey::parse_uuid(&k)?,
                _ => ShardKey::Text(&k),
            };
            let ours = f.shard_for(&key)?;
            if ours.0 != pg {
                bad += 1;
                if bad <= 5 {
                    eprintln!("mismatch: {ty} {k}: postgres {pg}, sysmanage {}", ours.0);
                }
            }
        }
        println!("{ty}: {} keys, {bad} mismatches", rows.len());
        keys += rows.len() as u64;
        mismatches += bad;
        sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {table}")))
            .execute(pool)
            .await?;
    }
    Ok((keys, mismatches))
}

async fn lowest_values(ctx: ShardCtx<PgPool>) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT value, id FROM sharding_example_events WHERE shard = $1 ORDER BY value, id LIMIT 5",
    )
    .bind(ctx.shard().0 as i32)
    .fetch_all(ctx.nodes())
    .await?;
    Ok(rows.iter().map(|r| (r.get("value"), r.get("id"))).collect())
}

async fn run() -> Result<(u64, u64, usize, usize), BoxError> {
    let admin_url = admin_url()?;
    let admin = connect(&admin_url).await?;
    let names: Vec<String> = (0..DBS)
        .map(|i| format!("sysmanage_shard_example_{i}"))
        .collect();
    for db in &names {
        for sql in [
            format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            format!("CREATE DATABASE {db}"),
        ] {
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&admin).await?;
        }
        let pool = connect(&db_url(&admin_url, db)?).await?;
        sqlx::raw_sql(
            "CREATE TABLE sharding_example_events \
             (id int8 PRIMARY KEY, shard int4 NOT NULL, value int8 NOT NULL)",
        )
        .execute(&pool)
        .await?;
        pool.close().await;
    }

    section("PgHash against PostgreSQL PARTITION BY HASH");
    let first = connect(&db_url(&admin_url, &names[0])?).await?;
    let (keys, mismatches) = check_against_postgres(&first).await?;
    first.close().await;

    section("load 8 logical shards onto 4 databases");
    let mut builder = ShardRouter::builder(PgHash::new(MODULUS)?)
        .max_concurrency(8)
        .shard_timeout(Duration::from_secs(5));
    for db in &names {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(&db_url(&admin_url, db)?)?;
        builder = builder.node_set(db.clone(), pool);
    }
    let router = builder.build()?;
    let ids: Vec<i64> = (0..ROWS).collect();
    let groups = router.group_by_shard(ids, |id| ShardKey::Int(*id))?;
    let loaded = router
        .fan_out_grouped(groups, |ctx, ids: Vec<i64>| async move {
            let values: Vec<i64> = ids.iter().map(|id| (id * 7919) % 1000).collect();
            let shards = vec![ctx.shard().0 as i32; ids.len()];
            sqlx::query(
                "INSERT INTO sharding_example_events SELECT * FROM unnest($1::int8[], $2::int4[], $3::int8[])",
            )
            .bind(&ids)
            .bind(shards)
            .bind(values)
            .execute(ctx.nodes())
            .await
            .map(|r| r.rows_affected())
        })
        .await?
        .into_complete()?;
    println!("rows per logical shard: {loaded:?}");

    let all_up = router.fan_out(lowest_values).await.into_complete()?;
    let top = merge_sorted(all_up, |r| *r, Some(5))?;
    println!("5 lowest (value, id) across all shards: {top:?}");

    section("one database refuses connections");
    let down = &names[3];
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER DATABASE {down} ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{down}'"
    )))
    .execute(&admin)
    .await?;
    // Fresh pools: the router's old connections to that database are gone.
    let mut builder = ShardRouter::builder(PgHash::new(MODULUS)?)
        .max_concurrency(8)
        .shard_timeout(Duration::from_secs(5));
    for db in &names {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(&db_url(&admin_url, db)?)?;
        builder = builder.node_set(db.clone(), pool);
    }
    let router = builder.build()?;
    let fan = router.fan_out(lowest_values).await;
    let fanout_shards = fan.len();
    for o in fan.outcomes() {
        match &o.result {
            Ok(rows) => println!(
                "{} on {}: {} rows in {:?}",
                o.shard,
                o.node_set,
                rows.len(),
                o.elapsed
            ),
            Err(f) => println!(
                "{} on {}: FAILED ({:?}): {}",
                o.shard, o.node_set, f.kind, f.reason
            ),
        }
    }
    let failed = fan.failed_shards();
    let expected: Vec<ShardId> = (0..MODULUS)
        .map(ShardId)
        .filter(|s| router.node_set_name(*s).is_ok_and(|n| n == down))
        .collect();
    if failed != expected {
        return Err(format!(
            "expected failed shards {expected:?}, the fan-out reported {failed:?}"
        )
        .into());
    }
    let partial = fan.into_partial();
    println!(
        "partial result: {} shards answered, failed: {:?}",
        partial.values.len(),
        partial.failed_shards()
    );
    println!("stats: {}", pretty(&router.stats()));

    section("resharding plan: 8 -> 16 logical shards");
    let doubled = PgHash::new(16)?;
    let placement = (0..16).map(|s| names[s % 8 % DBS].clone()).collect();
    let plan = ReshardPlan::compute(&router.topology(), &Topology::new(&doubled, placement)?)?;
    println!(
        "splits: {:?}\nmoved fraction {:.3}, copied fraction {:.3}",
        plan.splits(),
        plan.moved_fraction,
        plan.copied_fraction
    );

    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER DATABASE {down} ALLOW_CONNECTIONS true"
    )))
    .execute(&admin)
    .await?;
    drop(router);
    for db in &names {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
        )))
        .execute(&admin)
        .await?;
    }
    Ok((keys, mismatches, fanout_shards, failed.len()))
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    section("in-memory shards");
    if let Err(e) = sharding_demo::demo_sharding().await {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    match run().await {
        Ok((keys, mismatches, fanout_shards, failed)) => {
            println!(
                "summary: keys={keys} mismatches={mismatches} fanout_shards={fanout_shards} failed_shards_reported={failed}"
            );
            if mismatches == 0 {
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
