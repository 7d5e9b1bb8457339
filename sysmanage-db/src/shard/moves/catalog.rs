//! Reading the source's catalog: which partition holds each moved shard of
//! each table, its columns, and the DDL to recreate a parent on the target.

use sqlx::{AssertSqlSafe, PgPool, Row};

use super::sql::{
    ColumnDef, QualifiedName, cascading_index_sql, create_parent_sql, parse_hash_bound,
};
use crate::shard::ShardId;
use crate::{Error, Result};

/// One moved shard of one table: a hash partition of `parent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Partition {
    pub(crate) parent: QualifiedName,
    pub(crate) table: QualifiedName,
    pub(crate) shard: ShardId,
    pub(crate) modulus: u32,
    /// Columns a `COPY` carries (not dropped, not generated), in order.
    pub(crate) columns: Vec<String>,
    /// The source's row estimate (`reltuples`), for progress.
    pub(crate) estimated_rows: u64,
}

impl Partition {
    /// `("a", "b")` for `COPY table (a, b)`.
    pub(crate) fn column_list(&self) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| super::sql::quote_ident(c))
            .collect();
        format!("({})", cols.join(", "))
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidConfig {
        field: "tables",
        reason,
    }
}

/// The partitions holding `shards` of `tables` on the source; every table
/// must be `PARTITION BY HASH` with modulus `shard_count` and have a
/// partition for every moved shard.
pub(crate) async fn discover(
    source: &PgPool,
    tables: &[QualifiedName],
    shards: &[ShardId],
    shard_count: u32,
) -> Result<Vec<Partition>> {
    let err = |e: sqlx::Error| Error::Query {
        node: "source (read catalog)".into(),
        connection: false,
        source: Box::new(e),
    };
    let mut out = Vec::new();
    for parent in tables {
        let strategy: Option<String> = sqlx::query_scalar(
            "SELECT p.partstrat::text FROM pg_partitioned_table p WHERE p.partrelid = to_regclass($1)",
        )
        .bind(parent.quoted())
        .fetch_optional(source)
        .await
        .map_err(err)?;
        match strategy.as_deref() {
            Some("h") => {}
            Some(_) => return Err(invalid(format!("{parent} is not PARTITION BY HASH"))),
            None => {
                return Err(invalid(format!(
                    "{parent} is not a partitioned table on the source"
                )));
            }
        }
        let rows = sqlx::query(
            "SELECT n.nspname::text, c.relname::text, pg_get_expr(c.relpartbound, c.oid), \
                    greatest(c.reltuples, 0)::bigint \
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = to_regclass($1)",
        )
        .bind(parent.quoted())
        .fetch_all(source)
        .await
        .map_err(err)?;
        for &shard in shards {
            let mut found = None;
            for r in &rows {
                let bound: String = r.get(2);
                let Some((modulus, remainder)) = parse_hash_bound(&bound) else {
                    continue;
                };
                if remainder == shard.0 {
                    if modulus != shard_count {
                        return Err(invalid(format!(
                            "{parent} has modulus {modulus} but the shard map has {shard_count} shards"
                        )));
                    }
                    let table = QualifiedName::parse(
                        "tables",
                        &format!("{}.{}", r.get::<String, _>(0), r.get::<String, _>(1)),
                    )?;
                    found = Some((table, modulus, r.get::<i64, _>(3).max(0) as u64));
                }
            }
            let Some((table, modulus, estimated_rows)) = found else {
                return Err(invalid(format!(
                    "{parent} has no partition for {shard} (REMAINDER {})",
                    shard.0
                )));
            };
            let columns: Vec<String> = sqlx::query_scalar(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) \
                 AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
            )
            .bind(table.quoted())
            .fetch_all(source)
            .await
            .map_err(err)?;
            out.push(Partition {
                parent: parent.clone(),
                table,
                shard,
                modulus,
                columns,
                estimated_rows,
            });
        }
    }
    Ok(out)
}

/// The statements that recreate `parent` (table, constraints, indexes) as
/// the source defines it.
pub(crate) async fn parent_ddl(source: &PgPool, parent: &QualifiedName) -> Result<Vec<String>> {
    let err = |e: sqlx::Error| Error::Query {
        node: "source (read table definition)".into(),
        connection: false,
        source: Box::new(e),
    };
    let rel = parent.quoted();
    let columns = sqlx::query(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                pg_get_expr(d.adbin, d.adrelid), a.attgenerated = 's' \
         FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(&rel)
    .fetch_all(source)
    .await
    .map_err(err)?
    .iter()
    .map(|r| ColumnDef {
        name: r.get(0),
        type_sql: r.get(1),
        not_null: r.get(2),
        default: r.get(3),
        generated: r.get(4),
    })
    .collect::<Vec<_>>();
    let constraints: Vec<(String, String)> = sqlx::query(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE conrelid = to_regclass($1) AND contype IN ('p', 'u', 'c', 'x') ORDER BY contype, conname",
    )
    .bind(&rel)
    .fetch_all(source)
    .await
    .map_err(err)?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    let key: String = sqlx::query_scalar("SELECT pg_get_partkeydef(to_regclass($1))")
        .bind(&rel)
        .fetch_one(source)
        .await
        .map_err(err)?;
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = to_regclass($1) \
         AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY i.indexrelid",
    )
    .bind(&rel)
    .fetch_all(source)
    .await
    .map_err(err)?;
    let mut out = vec![
        format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            super::sql::quote_ident(&parent.schema)
        ),
        create_parent_sql(parent, &columns, &constraints, &key),
    ];
    out.extend(indexes.iter().map(|i| cascading_index_sql(i)));
    Ok(out)
}

/// Whether `table` exists on `pool`.
pub(crate) async fn exists(
    pool: &PgPool,
    table: &QualifiedName,
) -> std::result::Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table.quoted())
        .fetch_one(pool)
        .await
}

/// Whether `table` has at least one row.
pub(crate) async fn has_rows(
    pool: &PgPool,
    table: &QualifiedName,
) -> std::result::Result<bool, sqlx::Error> {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM ONLY {})",
        table.quoted()
    )))
    .fetch_one(pool)
    .await
}
