//! `PgHash` against PostgreSQL's own `PARTITION BY HASH`.
//!
//! Reference: the live PostgreSQL primary of the local topology. For each key
//! type and each modulus in {3, 7, 8}, a table `PARTITION BY HASH (k)` gets
//! ≥ 100,000 keys (int2: its whole domain, twice); PostgreSQL routes every
//! row itself, and for every row the partition it chose (`tableoid`) must have
//! the `REMAINDER` that `PgHash` computes. Zero mismatches allowed.

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};
use sysmanage_db::shard::{PgHash, ShardFunction, ShardKey};

const MODULI: [u32; 3] = [3, 7, 8];

async fn pool() -> PgPool {
    let url = sysmanage_test::pg_primary_url();
    PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot connect to the PostgreSQL primary: {e}; {}",
                sysmanage_test::START_HINT
            )
        })
}

/// Creates `shard_pt_<ty>_m<modulus>` with its partitions, fills it with
/// `keys_sql` (a SELECT producing column `k`) and returns (key text, remainder)
/// for every row.
async fn load(
    pool: &PgPool,
    ty: &str,
    sql_type: &str,
    modulus: u32,
    keys_sql: &str,
) -> Vec<(String, u32)> {
    let table = format!("shard_pt_{ty}_m{modulus}");
    let mut ddl = format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (k {sql_type}) PARTITION BY HASH (k);"
    );
    for r in 0..modulus {
        ddl.push_str(&format!(
            "CREATE TABLE {table}_p{r} PARTITION OF {table} FOR VALUES WITH (MODULUS {modulus}, REMAINDER {r});"
        ));
    }
    ddl.push_str(&format!("INSERT INTO {table} (k) {keys_sql};"));
    sqlx::raw_sql(AssertSqlSafe(ddl))
        .execute(pool)
        .await
        .expect("create and load");
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT k::text AS k, tableoid::regclass::text AS part FROM {table}"
    )))
    .fetch_all(pool)
    .await
    .expect("read back");
    let prefix = format!("{table}_p");
    let out = rows
        .iter()
        .map(|row| {
            let k: String = row.get("k");
            let part: String = row.get("part");
            let r = part
                .strip_prefix(&prefix)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("unexpected partition {part}"));
            (k, r)
        })
        .collect();
    sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {table}")))
        .execute(pool)
        .await
        .expect("drop");
    out
}

fn check(
    ty: &str,
    modulus: u32,
    rows: &[(String, u32)],
    key: impl for<'a> Fn(&'a str, &'a mut Vec<u8>) -> ShardKey<'a>,
) {
    assert!(rows.len() >= 100_000, "{ty}: only {} rows", rows.len());
    let f = PgHash::new(modulus).unwrap();
    let mut buf = Vec::new();
    let mut mismatches = Vec::new();
    for (k, pg) in rows {
        let ours = f.shard_for(&key(k, &mut buf)).unwrap();
        if ours.0 != *pg {
            mismatches.push(format!("{k:?}: postgres {pg}, ours {}", ours.0));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{ty} modulus {modulus}: {} of {} rows mismatch, e.g. {:?}",
        mismatches.len(),
        rows.len(),
        &mismatches[..mismatches.len().min(5)]
    );
}

fn int_key<'a>(k: &'a str, _: &'a mut Vec<u8>) -> ShardKey<'a> {
    ShardKey::Int(k.parse().expect("integer"))
}

async fn run(
    ty: &str,
    sql_type: &str,
    keys_sql: &str,
    key: impl for<'a> Fn(&'a str, &'a mut Vec<u8>) -> ShardKey<'a> + Copy,
) {
    let pool = pool().await;
    for modulus in MODULI {
        let rows = load(&pool, ty, sql_type, modulus, keys_sql).await;
        check(ty, modulus, &rows, key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int2_whole_domain_matches_postgres() {
    // int2 has 65,536 values: all of them, twice.
    run(
        "int2",
        "int2",
        "SELECT v::int2 FROM generate_series(-32768, 32767) v, generate_series(1, 2)",
        int_key,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int4_matches_postgres() {
    run(
        "int4",
        "int4",
        "SELECT g::int4 FROM generate_series(-20000, 20000) g \
         UNION ALL SELECT ((g * 2654435761::int8) % 4294967296 - 2147483648)::int4 FROM generate_series(1, 80000) g \
         UNION ALL SELECT unnest(array[2147483647, -2147483648, 2147483646, -2147483647])::int4",
        int_key,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int8_matches_postgres() {
    run(
        "int8",
        "int8",
        "SELECT g::int8 FROM generate_series(-20000, 20000) g \
         UNION ALL SELECT ('x' || md5(g::text))::bit(64)::int8 FROM generate_series(1, 80000) g \
         UNION ALL SELECT (g::int8 << 32) + g FROM generate_series(-1000, 1000) g \
         UNION ALL SELECT unnest(array[9223372036854775807, -9223372036854775808, 4294967296, -4294967297, 2147483648])::int8",
        int_key,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_matches_postgres() {
    // Every length from 0 to 69 bytes, ASCII and multi-byte UTF-8, and the
    // 36-character shape of a UUID-like host id.
    run(
        "text",
        "text",
        "SELECT CASE g % 4 \
            WHEN 0 THEN md5(g::text) \
            WHEN 1 THEN 'host-' || g \
            WHEN 2 THEN left(repeat(md5(g::text), 3), g % 70) \
            ELSE 'ключ-' || g || '-✓' END \
         FROM generate_series(1, 110000) g \
         UNION ALL SELECT md5(g::text)::uuid::text FROM generate_series(1, 10000) g",
        |k, _| ShardKey::Text(k),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uuid_matches_postgres() {
    run(
        "uuid",
        "uuid",
        "SELECT md5(g::text)::uuid FROM generate_series(1, 110000) g \
         UNION ALL SELECT '00000000-0000-0000-0000-000000000000'::uuid \
         UNION ALL SELECT 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid",
        |k, _| ShardKey::parse_uuid(k).expect("uuid"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytea_matches_postgres() {
    run(
        "bytea",
        "bytea",
        "SELECT substring(decode(md5(g::text) || md5((g + 1)::text), 'hex') FROM 1 FOR g % 33) \
         FROM generate_series(1, 110000) g",
        |k, buf| {
            let hex = k.strip_prefix("\\x").expect("bytea hex output");
            buf.clear();
            buf.extend(
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")),
            );
            ShardKey::Bytes(buf)
        },
    )
    .await;
}

/// `PARTITION BY HASH (a int8, b text)`, with NULLs in either column:
/// per-column hashes folded with `hash_combine64`, NULLs skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_column_keys_with_nulls_match_postgres() {
    let pool = pool().await;
    for modulus in MODULI {
        let table = format!("shard_pt_pair_m{modulus}");
        let mut ddl = format!(
            "DROP TABLE IF EXISTS {table}; \
             CREATE TABLE {table} (a int8, b text) PARTITION BY HASH (a, b);"
        );
        for r in 0..modulus {
            ddl.push_str(&format!(
                "CREATE TABLE {table}_p{r} PARTITION OF {table} \
                 FOR VALUES WITH (MODULUS {modulus}, REMAINDER {r});"
            ));
        }
        ddl.push_str(&format!(
            "INSERT INTO {table} (a, b) SELECT \
               CASE WHEN g % 11 = 0 THEN NULL ELSE ('x' || md5(g::text))::bit(64)::int8 END, \
               CASE WHEN g % 7 = 0 THEN NULL ELSE 'tenant-' || (g % 1000) END \
             FROM generate_series(1, 100000) g;"
        ));
        sqlx::raw_sql(AssertSqlSafe(ddl))
            .execute(&pool)
            .await
            .expect("create and load");
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT a, b, tableoid::regclass::text AS part FROM {table}"
        )))
        .fetch_all(&pool)
        .await
        .expect("read back");
        assert!(rows.len() >= 100_000);
        let f = PgHash::new(modulus).unwrap();
        let prefix = format!("{table}_p");
        let mut mismatches = 0;
        let mut nulls = 0;
        for row in &rows {
            let a: Option<i64> = row.get("a");
            let b: Option<String> = row.get("b");
            let part: String = row.get("part");
            let pg: u32 = part.strip_prefix(&prefix).unwrap().parse().unwrap();
            nulls += usize::from(a.is_none() || b.is_none());
            let ours =
                f.shard_for_columns([a.map(ShardKey::Int), b.as_deref().map(ShardKey::Text)]);
            mismatches += usize::from(ours.0 != pg);
        }
        assert!(nulls > 20_000, "the data has NULLs");
        assert_eq!(
            mismatches,
            0,
            "modulus {modulus}: {mismatches} of {} rows mismatch",
            rows.len()
        );
        sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {table}")))
            .execute(&pool)
            .await
            .expect("drop");
    }
}

/// `char(n)` hashes its value without trailing spaces (`hashbpcharextended`);
/// `k::text` drops them too, so the trimmed text is the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bpchar_matches_postgres_as_trimmed_text() {
    run(
        "bpchar",
        "char(24)",
        "SELECT left(md5(g::text), g % 25) FROM generate_series(1, 100000) g",
        |k, _| ShardKey::Text(k),
    )
    .await;
}
