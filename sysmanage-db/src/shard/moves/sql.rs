//! SQL text the executor builds: quoting, object names, partition bounds and
//! the fixed DDL of its helper objects. Pure functions, tested without a
//! server.

use crate::{Error, Result};

/// The schema that holds the executor's objects on every database it uses
/// (metadata tables, guard and delta functions, markers).
pub const SCHEMA: &str = "sysmanage";

/// A table name split into schema and relation, both validated as plain
/// lower-case SQL identifiers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct QualifiedName {
    pub(crate) schema: String,
    pub(crate) name: String,
}

impl QualifiedName {
    /// `table` or `schema.table`; the schema defaults to `public`.
    pub(crate) fn parse(field: &'static str, text: &str) -> Result<Self> {
        let (schema, name) = match text.split_once('.') {
            Some((s, n)) => (s, n),
            None => ("public", text),
        };
        check_ident(field, schema)?;
        check_ident(field, name)?;
        Ok(QualifiedName {
            schema: schema.to_owned(),
            name: name.to_owned(),
        })
    }

    /// `"schema"."name"`.
    pub(crate) fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// `schema.name` as a string literal, for `::regclass` casts.
    pub(crate) fn literal(&self) -> String {
        quote_literal(&self.quoted())
    }
}

impl std::fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// A plain identifier: 1–63 characters of `a-z`, `0-9`, `_`, not starting
/// with a digit. Anything else is refused rather than quoted, so names stay
/// unambiguous in logs, object names and error messages.
pub(crate) fn check_ident(field: &'static str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            field,
            reason: format!(
                "{s:?} is not a plain identifier (1-63 characters of a-z, 0-9 and _, not starting with a digit)"
            ),
        })
    }
}

/// `"ident"` with embedded quotes doubled.
pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled (standard_conforming_strings).
pub(crate) fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Name of the publication, replication slot and subscription of move `id`.
pub(crate) fn replication_name(id: &str) -> String {
    format!("sysmanage_move_{id}")
}

/// Parses `FOR VALUES WITH (modulus 8, remainder 3)` (what
/// `pg_get_expr(relpartbound, oid)` prints for a hash partition).
pub(crate) fn parse_hash_bound(bound: &str) -> Option<(u32, u32)> {
    let lower = bound.to_ascii_lowercase();
    let inner = lower.strip_prefix("for values with (")?.strip_suffix(')')?;
    let mut modulus = None;
    let mut remainder = None;
    for part in inner.split(',') {
        let mut words = part.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("modulus"), Some(v), None) => modulus = v.parse().ok(),
            (Some("remainder"), Some(v), None) => remainder = v.parse().ok(),
            _ => return None,
        }
    }
    Some((modulus?, remainder?))
}

/// A column as the catalog describes it, for copying a table's DDL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnDef {
    pub(crate) name: String,
    pub(crate) type_sql: String,
    pub(crate) not_null: bool,
    pub(crate) default: Option<String>,
    /// `attgenerated = 's'`: the expression in `default`.
    pub(crate) generated: bool,
}

/// `CREATE TABLE parent (...) PARTITION BY key` from catalog facts, with
/// its constraints (primary key, unique, check, exclusion).
pub(crate) fn create_parent_sql(
    table: &QualifiedName,
    columns: &[ColumnDef],
    constraints: &[(String, String)],
    partition_key: &str,
) -> String {
    let mut items: Vec<String> = columns
        .iter()
        .map(|c| {
            let mut d = format!("{} {}", quote_ident(&c.name), c.type_sql);
            match (&c.default, c.generated) {
                (Some(expr), true) => d.push_str(&format!(" GENERATED ALWAYS AS ({expr}) STORED")),
                (Some(expr), false) => d.push_str(&format!(" DEFAULT {expr}")),
                (None, _) => {}
            }
            if c.not_null {
                d.push_str(" NOT NULL");
            }
            d
        })
        .collect();
    items.extend(
        constraints
            .iter()
            .map(|(name, def)| format!("CONSTRAINT {} {def}", quote_ident(name))),
    );
    format!(
        "CREATE TABLE {} ({}) PARTITION BY {partition_key}",
        table.quoted(),
        items.join(", ")
    )
}

/// `CREATE TABLE part PARTITION OF parent FOR VALUES WITH (MODULUS m, REMAINDER r)`.
pub(crate) fn create_partition_sql(
    partition: &QualifiedName,
    parent: &QualifiedName,
    modulus: u32,
    remainder: u32,
) -> String {
    format!(
        "CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS {modulus}, REMAINDER {remainder})",
        partition.quoted(),
        parent.quoted()
    )
}

/// `pg_get_indexdef` of a partitioned table's index says `ON ONLY`, which
/// would create an index that does not cascade to partitions.
pub(crate) fn cascading_index_sql(indexdef: &str) -> String {
    indexdef.replacen(" ON ONLY ", " ON ", 1)
}

/// The helper objects on a node set (source or target) of a move: the guard
/// table and trigger function that refuse writes to fenced or moved shards,
/// the markers the final catch-up waits for, and the delta log that keeps
/// the switch-time checksum of the target computable after the switch.
pub(crate) const NODE_SET_DDL: &str = r#"
CREATE SCHEMA IF NOT EXISTS sysmanage;
CREATE TABLE IF NOT EXISTS sysmanage.shard_guards (
    relid oid PRIMARY KEY,
    shard integer NOT NULL,
    state text NOT NULL CHECK (state IN ('fenced', 'moved')),
    epoch bigint NOT NULL,
    node_set text NOT NULL,
    move_id text NOT NULL
);
CREATE OR REPLACE FUNCTION sysmanage.shard_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    g sysmanage.shard_guards%ROWTYPE;
BEGIN
    SELECT * INTO g FROM sysmanage.shard_guards WHERE relid = TG_RELID;
    IF NOT FOUND THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END IF;
    IF g.state = 'fenced' THEN
        RAISE EXCEPTION 'shard % of %.% is fenced by shard move %; retry',
            g.shard, TG_TABLE_SCHEMA, TG_TABLE_NAME, g.move_id
            USING ERRCODE = 'SMF01';
    END IF;
    RAISE EXCEPTION 'shard % of %.% has moved to node set % (routing epoch %); refresh the shard map and retry',
        g.shard, TG_TABLE_SCHEMA, TG_TABLE_NAME, g.node_set, g.epoch
        USING ERRCODE = 'SMM01';
END
$fn$;
CREATE TABLE IF NOT EXISTS sysmanage.move_markers (
    move_id text PRIMARY KEY,
    seq bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS sysmanage.move_delta (
    move_id text NOT NULL,
    relid oid NOT NULL,
    sign smallint NOT NULL,
    h bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS move_delta_move ON sysmanage.move_delta (move_id, relid);
CREATE OR REPLACE FUNCTION sysmanage.move_delta() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO sysmanage.move_delta VALUES
            (TG_ARGV[0], TG_RELID, -1, hashtextextended(to_jsonb(OLD)::text, 0));
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO sysmanage.move_delta VALUES
            (TG_ARGV[0], TG_RELID, 1, hashtextextended(to_jsonb(NEW)::text, 0));
    END IF;
    RETURN NULL;
END
$fn$;
"#;

/// Name of the guard trigger on a source partition.
pub(crate) const GUARD_TRIGGER: &str = "sysmanage_shard_guard";
/// Name of the delta trigger on a target partition.
pub(crate) const DELTA_TRIGGER: &str = "sysmanage_move_delta";

/// Row count and checksum of one table: the checksum is the sum of a 64-bit
/// hash of each row's `to_jsonb` text (column-order independent, so a target
/// created from other DDL with the same columns compares equal).
pub(crate) fn checksum_sql(table: &QualifiedName) -> String {
    format!(
        "SELECT count(*)::bigint, coalesce(sum({ROW_HASH}::numeric), 0)::text FROM ONLY {} t",
        table.quoted()
    )
}

/// As [`checksum_sql`] for the target, minus what the delta log recorded
/// since the switch (`$1` = move id): the table as it was at the switch.
pub(crate) fn checksum_at_switch_sql(table: &QualifiedName) -> String {
    format!(
        "WITH cur AS (SELECT count(*)::bigint AS n, coalesce(sum({ROW_HASH}::numeric), 0) AS s FROM ONLY {q} t), \
         d AS (SELECT coalesce(sum(sign), 0)::bigint AS n, coalesce(sum(sign * h::numeric), 0) AS s \
         FROM sysmanage.move_delta WHERE move_id = $1 AND relid = {lit}::regclass) \
         SELECT (cur.n - d.n)::bigint, (cur.s - d.s)::text FROM cur, d",
        q = table.quoted(),
        lit = table.literal()
    )
}

/// The per-row hash both checksums and the delta trigger use.
const ROW_HASH: &str = "hashtextextended(to_jsonb(t)::text, 0)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_identifiers_or_typed_errors() {
        let q = QualifiedName::parse("tables", "app.accounts").unwrap();
        assert_eq!(q.quoted(), "\"app\".\"accounts\"");
        assert_eq!(q.literal(), "'\"app\".\"accounts\"'");
        assert_eq!(
            QualifiedName::parse("tables", "accounts").unwrap().schema,
            "public"
        );
        for bad in [
            "",
            "Accounts",
            "a-b",
            "1abc",
            "a.b.c",
            "x;drop",
            &"a".repeat(64),
        ] {
            let err = QualifiedName::parse("tables", bad).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid tables:"),
                "{bad}: {err}"
            );
        }
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn hash_bounds_parse() {
        assert_eq!(
            parse_hash_bound("FOR VALUES WITH (modulus 8, remainder 3)"),
            Some((8, 3))
        );
        assert_eq!(parse_hash_bound("FOR VALUES FROM (1) TO (5)"), None);
        assert_eq!(parse_hash_bound("DEFAULT"), None);
        assert_eq!(parse_hash_bound("FOR VALUES WITH (modulus 8)"), None);
    }

    #[test]
    fn parent_ddl_keeps_defaults_generated_columns_and_constraints() {
        let t = QualifiedName::parse("tables", "accounts").unwrap();
        let cols = [
            ColumnDef {
                name: "id".into(),
                type_sql: "bigint".into(),
                not_null: true,
                default: None,
                generated: false,
            },
            ColumnDef {
                name: "balance".into(),
                type_sql: "bigint".into(),
                not_null: false,
                default: Some("0".into()),
                generated: false,
            },
            ColumnDef {
                name: "double".into(),
                type_sql: "bigint".into(),
                not_null: false,
                default: Some("(balance * 2)".into()),
                generated: true,
            },
        ];
        let sql = create_parent_sql(
            &t,
            &cols,
            &[("accounts_pkey".into(), "PRIMARY KEY (id)".into())],
            "HASH (id)",
        );
        assert_eq!(
            sql,
            "CREATE TABLE \"public\".\"accounts\" (\"id\" bigint NOT NULL, \"balance\" bigint DEFAULT 0, \
             \"double\" bigint GENERATED ALWAYS AS ((balance * 2)) STORED, \
             CONSTRAINT \"accounts_pkey\" PRIMARY KEY (id)) PARTITION BY HASH (id)"
        );
        assert_eq!(
            cascading_index_sql("CREATE INDEX i ON ONLY public.accounts USING btree (balance)"),
            "CREATE INDEX i ON public.accounts USING btree (balance)"
        );
    }

    #[test]
    fn checksum_queries_name_the_table() {
        let t = QualifiedName::parse("tables", "accounts_p3").unwrap();
        assert!(checksum_sql(&t).ends_with("FROM ONLY \"public\".\"accounts_p3\" t"));
        let at = checksum_at_switch_sql(&t);
        assert!(
            at.contains("relid = '\"public\".\"accounts_p3\"'::regclass"),
            "{at}"
        );
        assert!(
            at.contains("FROM ONLY \"public\".\"accounts_p3\" t"),
            "{at}"
        );
    }
}
