//! What to move and how: [`MoveSpec`] and [`MoveOptions`], validated before
//! anything connects.

use std::time::Duration;

use sysmanage_core::duration::{DAY, MILLISECOND, check_count, check_duration};

use super::sql::QualifiedName;
use crate::shard::ShardId;
use crate::{Error, Result};

/// A node set taking part in a move: its name in the shard map and the URL
/// of its database.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The node set's name in the shard map.
    pub node_set: String,
    /// `postgres://` URL of its database. The source's URL is also what the
    /// target's subscription connects to, so it must work from the target
    /// server.
    pub url: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("node_set", &self.node_set)
            .field("url", &sysmanage_core::ConnectionUrl::new(&self.url))
            .finish()
    }
}

impl Endpoint {
    /// A node set and its database URL.
    pub fn new(node_set: impl Into<String>, url: impl Into<String>) -> Self {
        Endpoint {
            node_set: node_set.into(),
            url: url.into(),
        }
    }
}

/// Where the target's tables come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaSource {
    /// Copied from the source: for each table, the partitioned parent (its
    /// columns, defaults, generated columns, `NOT NULL`, primary key,
    /// unique, check and exclusion constraints, indexes and partition key)
    /// when the target lacks it, then the moved shards' partitions.
    /// Sequences, foreign keys, triggers, grants and policies are not
    /// copied: supply DDL when the target needs them.
    CopyFromSource,
    /// The host's statements, run once on the target before the copy; they
    /// must create every moved shard's partition (empty).
    Ddl(Vec<String>),
}

/// One shard move: which logical shards of which tables go from which node
/// set to which.
///
/// Each table is a parent `PARTITION BY HASH` on the shard key with one
/// partition per logical shard (`MODULUS` = the shard count), the layout
/// [`PgHash`](crate::shard::PgHash) matches: a shard's rows are exactly one
/// partition per table, which is what is copied, replicated, fenced and
/// verified.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MoveSpec {
    /// The move's id: 1–32 characters of `a-z`, `0-9`, `_`. It names the
    /// move's state row and its replication objects
    /// (`sysmanage_move_<id>`); running a move with an id that exists
    /// resumes it.
    pub id: String,
    /// The logical shards to move (at least one, no duplicates).
    pub shards: Vec<ShardId>,
    /// The partitioned parent tables (`table` or `schema.table`, plain
    /// lower-case identifiers).
    pub tables: Vec<String>,
    /// Where the shards are now.
    pub source: Endpoint,
    /// Where they go.
    pub target: Endpoint,
    /// How the target's tables are made. Default: copied from the source.
    pub schema: SchemaSource,
}

impl MoveSpec {
    /// A move of `shards` of `tables` from `source` to `target`, copying the
    /// schema from the source.
    pub fn new(
        id: impl Into<String>,
        shards: impl IntoIterator<Item = ShardId>,
        tables: impl IntoIterator<Item = impl Into<String>>,
        source: Endpoint,
        target: Endpoint,
    ) -> Self {
        MoveSpec {
            id: id.into(),
            shards: shards.into_iter().collect(),
            tables: tables.into_iter().map(Into::into).collect(),
            source,
            target,
            schema: SchemaSource::CopyFromSource,
        }
    }

    /// Uses the host's DDL for the target instead of copying it.
    pub fn with_ddl(mut self, statements: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.schema = SchemaSource::Ddl(statements.into_iter().map(Into::into).collect());
        self
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field: an id that is not 1–32
    /// characters of `a-z0-9_`, no shard or a repeated one, no table, a
    /// table name that is not a plain identifier or is listed twice, node
    /// set names that are empty or equal, or a URL that is not
    /// `postgres://`/`postgresql://`.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &'static str, reason: String| Error::InvalidConfig { field, reason };
        // Digits may lead an id: it is always used behind a prefix.
        let id_ok = (1..=32).contains(&self.id.len())
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !id_ok {
            return Err(invalid(
                "id",
                format!("{:?} is not 1-32 characters of a-z, 0-9 and _", self.id),
            ));
        }
        if self.shards.is_empty() {
            return Err(invalid("shards", "must not be empty".into()));
        }
        let mut shards = self.shards.clone();
        shards.sort_unstable();
        if let Some(w) = shards.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid("shards", format!("{} is listed twice", w[0])));
        }
        if self.tables.is_empty() {
            return Err(invalid("tables", "must not be empty".into()));
        }
        let mut names = Vec::with_capacity(self.tables.len());
        for t in &self.tables {
            let q = QualifiedName::parse("tables", t)?;
            if names.contains(&q) {
                return Err(invalid("tables", format!("{q} is listed twice")));
            }
            names.push(q);
        }
        for (field, e) in [("source", &self.source), ("target", &self.target)] {
            if e.node_set.trim().is_empty() {
                return Err(invalid(field, "node_set must not be empty".into()));
            }
            let scheme = e.url.split_once("://").map(|(s, _)| s);
            if !matches!(scheme, Some("postgres" | "postgresql")) {
                return Err(invalid(
                    field,
                    format!(
                        "{} is not a postgres:// or postgresql:// url",
                        sysmanage_core::ConnectionUrl::new(&e.url)
                    ),
                ));
            }
        }
        if self.source.node_set == self.target.node_set {
            return Err(invalid(
                "target",
                format!("node set {:?} is also the source", self.target.node_set),
            ));
        }
        if let SchemaSource::Ddl(stmts) = &self.schema
            && stmts.iter().all(|s| s.trim().is_empty())
        {
            return Err(invalid(
                "schema",
                "Ddl needs at least one statement (or use CopyFromSource)".into(),
            ));
        }
        Ok(())
    }

    /// The tables, parsed (after [`validate`](Self::validate)).
    pub(crate) fn table_names(&self) -> Result<Vec<QualifiedName>> {
        self.tables
            .iter()
            .map(|t| QualifiedName::parse("tables", t))
            .collect()
    }

    /// A canonical text of what the move does, stored with its state: a
    /// resume with a different spec under the same id is refused.
    /// URLs are not part of it (credentials may rotate).
    pub(crate) fn fingerprint(&self) -> String {
        let mut shards: Vec<u32> = self.shards.iter().map(|s| s.0).collect();
        shards.sort_unstable();
        let schema = match &self.schema {
            SchemaSource::CopyFromSource => "copy".to_owned(),
            SchemaSource::Ddl(s) => format!("ddl:{}", s.len()),
        };
        format!(
            "shards={shards:?} tables={:?} source={} target={} schema={schema}",
            self.tables, self.source.node_set, self.target.node_set
        )
    }
}

/// How the executor paces itself. Every field is checked by
/// [`validate`](Self::validate).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MoveOptions {
    /// Partitions copied at once. Default 4; 1–64.
    pub copy_parallelism: usize,
    /// Catch-up ends (and the fence starts) once the subscription is at
    /// most this many bytes of WAL behind the source. Default 1 MiB; at
    /// most 1 TiB.
    pub max_lag_bytes: u64,
    /// How long catch-up may take before the move fails (resumable).
    /// Default 1 hour; 1 ms – 1 day.
    pub catch_up_timeout: Duration,
    /// The longest a fence may last: when the final catch-up has not
    /// finished by then, the fence is lifted, catch-up continues and the
    /// fence is tried again. Default 2 s; 1 ms – 1 hour.
    pub max_fence: Duration,
    /// Fence attempts before the move fails (resumable). Default 5; 1–100.
    pub fence_attempts: u32,
    /// Lock timeout for the brief locks the move takes on the source's
    /// partitions (the copy's cut and the guard trigger); a timeout is
    /// retried. Default 1 s; 1 ms – 1 hour.
    pub lock_timeout: Duration,
    /// How often lag and markers are polled. Default 20 ms; 1 ms – 1 min.
    pub poll_interval: Duration,
    /// How often progress is reported. Default 500 ms; 1 ms – 1 hour.
    pub progress_interval: Duration,
    /// Wait between the switch and deleting the source rows, so routers
    /// that have not yet applied the new map stop reading them. Default
    /// 2 s; at most 1 day.
    pub cleanup_grace: Duration,
}

impl Default for MoveOptions {
    fn default() -> Self {
        MoveOptions {
            // Two partitions per core of a small server.
            copy_parallelism: 4,
            // About a second of apply at modest write rates.
            max_lag_bytes: 1 << 20,
            catch_up_timeout: Duration::from_secs(3600),
            // Half the target write pause of one second, so a retry fits.
            max_fence: Duration::from_secs(2),
            fence_attempts: 5,
            lock_timeout: Duration::from_secs(1),
            poll_interval: Duration::from_millis(20),
            progress_interval: Duration::from_millis(500),
            cleanup_grace: Duration::from_secs(2),
        }
    }
}

impl MoveOptions {
    /// Checks every field against its documented range.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field and the range.
    pub fn validate(&self) -> Result<()> {
        let hour = Duration::from_secs(3600);
        check_count("copy_parallelism", self.copy_parallelism, 1, 64)?;
        check_count("max_lag_bytes", self.max_lag_bytes, 0, 1 << 40)?;
        check_duration("catch_up_timeout", self.catch_up_timeout, MILLISECOND, DAY)?;
        check_duration("max_fence", self.max_fence, MILLISECOND, hour)?;
        check_count("fence_attempts", self.fence_attempts, 1, 100)?;
        check_duration("lock_timeout", self.lock_timeout, MILLISECOND, hour)?;
        check_duration(
            "poll_interval",
            self.poll_interval,
            MILLISECOND,
            Duration::from_secs(60),
        )?;
        check_duration(
            "progress_interval",
            self.progress_interval,
            MILLISECOND,
            hour,
        )?;
        check_duration("cleanup_grace", self.cleanup_grace, Duration::ZERO, DAY)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MoveSpec {
        MoveSpec::new(
            "m1",
            [ShardId(1), ShardId(3)],
            ["accounts", "app.events"],
            Endpoint::new("a", "postgres://u@h:1/a"),
            Endpoint::new("b", "postgresql://u@h:2/b"),
        )
    }

    #[test]
    fn a_good_spec_validates() {
        spec().validate().unwrap();
        let mut s = spec();
        s.id = "2026_01_move".into();
        s.validate().unwrap();
    }

    #[test]
    fn bad_specs_name_the_field() {
        type Edit = Box<dyn Fn(&mut MoveSpec)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|s| s.id = "Move-1".into()), "invalid id:"),
            (Box::new(|s| s.id = "a".repeat(33)), "invalid id:"),
            (Box::new(|s| s.id.clear()), "invalid id:"),
            (
                Box::new(|s| s.shards.clear()),
                "invalid shards: must not be empty",
            ),
            (
                Box::new(|s| s.shards = vec![ShardId(2), ShardId(2)]),
                "shard-2 is listed twice",
            ),
            (
                Box::new(|s| s.tables.clear()),
                "invalid tables: must not be empty",
            ),
            (
                Box::new(|s| s.tables = vec!["a;drop".into()]),
                "invalid tables:",
            ),
            (
                Box::new(|s| s.tables = vec!["t".into(), "public.t".into()]),
                "public.t is listed twice",
            ),
            (
                Box::new(|s| s.source.url = "mysql://h/a".into()),
                "invalid source:",
            ),
            (
                Box::new(|s| s.target.node_set = "a".into()),
                "is also the source",
            ),
            (
                Box::new(|s| s.target.node_set = " ".into()),
                "invalid target: node_set",
            ),
            (
                Box::new(|s| s.schema = SchemaSource::Ddl(vec![])),
                "invalid schema:",
            ),
        ];
        for (edit, want) in cases {
            let mut s = spec();
            edit(&mut s);
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }

    #[test]
    fn the_fingerprint_ignores_urls_and_shard_order() {
        let a = spec();
        let mut b = spec();
        b.shards.reverse();
        b.source.url = "postgres://other@h:1/a".into();
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.target.node_set = "c".into();
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn options_are_range_checked() {
        MoveOptions::default().validate().unwrap();
        let o = MoveOptions {
            copy_parallelism: 0,
            ..MoveOptions::default()
        };
        assert!(
            o.validate()
                .unwrap_err()
                .to_string()
                .contains("copy_parallelism")
        );
        let o = MoveOptions {
            max_fence: Duration::ZERO,
            ..MoveOptions::default()
        };
        assert!(o.validate().unwrap_err().to_string().contains("max_fence"));
        let o = MoveOptions {
            poll_interval: Duration::from_secs(61),
            ..MoveOptions::default()
        };
        assert!(
            o.validate()
                .unwrap_err()
                .to_string()
                .contains("poll_interval")
        );
        let o = MoveOptions {
            max_lag_bytes: u64::MAX,
            ..MoveOptions::default()
        };
        assert!(
            o.validate()
                .unwrap_err()
                .to_string()
                .contains("max_lag_bytes")
        );
    }
}
