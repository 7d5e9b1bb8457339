//! The metadata database: the versioned shard map every router follows and
//! the durable state of each move.
//!
//! Tables (schema `sysmanage`): `shard_maps` (name, version),
//! `shard_placements` (map, shard, node set, fence, claiming move) and
//! `shard_moves` (id, state, cut LSN, switch epoch, tables created on the
//! target). Every change to a map bumps its version and sends
//! `NOTIFY sysmanage_shard_map, '<map> <version>'` in the same transaction,
//! so a listener never sees a version before it is committed.

use sqlx::{AssertSqlSafe, PgPool, Postgres, Row, Transaction};

use super::phase::MoveState;
use crate::shard::{ShardId, ShardMap, ShardPlacement};
use crate::{Error, Result};

/// The `NOTIFY` channel of shard-map changes; the payload is
/// `<map name> <version>`.
pub const NOTIFY_CHANNEL: &str = "sysmanage_shard_map";

const METADATA_DDL: &str = r#"
CREATE SCHEMA IF NOT EXISTS sysmanage;
CREATE TABLE IF NOT EXISTS sysmanage.shard_maps (
    name text PRIMARY KEY,
    version bigint NOT NULL CHECK (version > 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS sysmanage.shard_placements (
    map text NOT NULL REFERENCES sysmanage.shard_maps (name) ON DELETE CASCADE,
    shard integer NOT NULL CHECK (shard >= 0),
    node_set text NOT NULL,
    fenced boolean NOT NULL DEFAULT false,
    move_id text,
    PRIMARY KEY (map, shard)
);
CREATE TABLE IF NOT EXISTS sysmanage.shard_moves (
    id text PRIMARY KEY,
    map text NOT NULL,
    spec text NOT NULL,
    state text NOT NULL,
    cut_lsn text,
    switch_epoch bigint,
    rows_copied bigint NOT NULL DEFAULT 0,
    created_tables text[] NOT NULL DEFAULT '{}',
    error text,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
"#;

pub(crate) fn db_err(step: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |e| Error::Query {
        node: format!("metadata ({step})"),
        connection: matches!(
            e,
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
        ),
        source: Box::new(e),
    }
}

/// Creates the executor's schema objects under an advisory lock, so that
/// processes starting together do not race on `CREATE … IF NOT EXISTS`.
pub(crate) async fn install(pool: &PgPool, ddl: &'static str, what: &'static str) -> Result<()> {
    let mut tx = pool.begin().await.map_err(db_err(what))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('sysmanage.schema'))")
        .execute(&mut *tx)
        .await
        .map_err(db_err(what))?;
    sqlx::raw_sql(AssertSqlSafe(ddl))
        .execute(&mut *tx)
        .await
        .map_err(db_err(what))?;
    tx.commit().await.map_err(db_err(what))
}

/// A move's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MoveRow {
    pub(crate) state: MoveState,
    pub(crate) spec: String,
    pub(crate) map: String,
    pub(crate) cut_lsn: Option<String>,
    pub(crate) switch_epoch: Option<u64>,
    pub(crate) rows_copied: u64,
    pub(crate) created_tables: Vec<String>,
}

/// Where a move stands, as [`ShardMapStore::move_status`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MoveStatus {
    /// The stored state.
    pub state: MoveState,
    /// Rows the last completed copy moved.
    pub rows_copied: u64,
    /// The routing epoch of the switch, once switched.
    pub switch_epoch: Option<u64>,
    /// The last error a run stopped with, if any.
    pub error: Option<String>,
}

/// The shard map of one name in the metadata database (and the moves'
/// state beside it). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ShardMapStore {
    pool: PgPool,
    name: String,
}

impl ShardMapStore {
    /// Opens the map called `name`, creating the metadata tables when they
    /// do not exist.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an empty name; [`Error::Query`] when
    /// the database refuses.
    pub async fn open(pool: PgPool, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if name.trim().is_empty() || name.len() > 200 || name.contains(' ') {
            return Err(Error::InvalidConfig {
                field: "map",
                reason: format!("{name:?} must be 1-200 characters without spaces"),
            });
        }
        install(&pool, METADATA_DDL, "install metadata tables").await?;
        Ok(ShardMapStore { pool, name })
    }

    /// The map's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The metadata database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the map at version 1 with `placement[i]` the node set of
    /// shard `i`, unless it exists; returns the map as stored.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `placement` is empty or the stored map
    /// has another shard count; [`Error::Query`] on database errors.
    pub async fn init(&self, placement: &[&str]) -> Result<ShardMap> {
        if placement.is_empty() || placement.len() > crate::shard::MAX_SHARDS as usize {
            return Err(Error::InvalidConfig {
                field: "placement",
                reason: format!(
                    "needs 1 to {} shards, got {}",
                    crate::shard::MAX_SHARDS,
                    placement.len()
                ),
            });
        }
        let step = "create shard map";
        let mut tx = self.pool.begin().await.map_err(db_err(step))?;
        let created = sqlx::query(
            "INSERT INTO sysmanage.shard_maps (name, version) VALUES ($1, 1) ON CONFLICT DO NOTHING",
        )
        .bind(&self.name)
        .execute(&mut *tx)
        .await
        .map_err(db_err(step))?
        .rows_affected()
            == 1;
        if created {
            let shards: Vec<i32> = (0..placement.len() as i32).collect();
            let sets: Vec<&str> = placement.to_vec();
            sqlx::query(
                "INSERT INTO sysmanage.shard_placements (map, shard, node_set) \
                 SELECT $1, s, n FROM unnest($2::int[], $3::text[]) AS u(s, n)",
            )
            .bind(&self.name)
            .bind(&shards)
            .bind(&sets)
            .execute(&mut *tx)
            .await
            .map_err(db_err(step))?;
            notify(&mut tx, &self.name, 1).await?;
        }
        tx.commit().await.map_err(db_err(step))?;
        let map = self.load().await?;
        if map.shards.len() != placement.len() {
            return Err(Error::InvalidConfig {
                field: "placement",
                reason: format!(
                    "map {:?} exists with {} shards, not {}",
                    self.name,
                    map.shards.len(),
                    placement.len()
                ),
            });
        }
        Ok(map)
    }

    /// The current map, read in one statement (one snapshot).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the map does not exist;
    /// [`Error::Query`] on database errors.
    pub async fn load(&self) -> Result<ShardMap> {
        let rows = sqlx::query(
            "SELECT m.version, p.shard, p.node_set, p.fenced FROM sysmanage.shard_maps m \
             JOIN sysmanage.shard_placements p ON p.map = m.name WHERE m.name = $1 ORDER BY p.shard",
        )
        .bind(&self.name)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("load shard map"))?;
        let Some(first) = rows.first() else {
            return Err(Error::InvalidConfig {
                field: "map",
                reason: format!("shard map {:?} does not exist (init it first)", self.name),
            });
        };
        let version: i64 = first.get(0);
        let mut shards = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let shard: i32 = row.get(1);
            if shard as usize != i {
                return Err(Error::InvalidConfig {
                    field: "map",
                    reason: format!("shard map {:?} has no entry for shard-{i}", self.name),
                });
            }
            shards.push(ShardPlacement {
                node_set: row.get(2),
                fenced: row.get(3),
            });
        }
        Ok(ShardMap {
            version: version as u64,
            shards,
        })
    }

    /// The map's version alone (what a poll reads first).
    ///
    /// # Errors
    /// [`Error::Query`] on database errors (a missing map reads as 0).
    pub async fn version(&self) -> Result<u64> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT version FROM sysmanage.shard_maps WHERE name = $1")
                .bind(&self.name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("read shard map version"))?;
        Ok(v.unwrap_or(0) as u64)
    }

    /// A move's stored state, if the move exists.
    ///
    /// # Errors
    /// [`Error::Query`] on database errors.
    pub async fn move_status(&self, id: &str) -> Result<Option<MoveStatus>> {
        let row = sqlx::query(
            "SELECT state, rows_copied, switch_epoch, error FROM sysmanage.shard_moves WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("read move status"))?;
        row.map(|r| {
            Ok(MoveStatus {
                state: MoveState::parse(r.get::<String, _>(0).as_str())?,
                rows_copied: r.get::<i64, _>(1) as u64,
                switch_epoch: r.get::<Option<i64>, _>(2).map(|v| v as u64),
                error: r.get(3),
            })
        })
        .transpose()
    }

    pub(crate) async fn load_move(&self, id: &str) -> Result<Option<MoveRow>> {
        let row = sqlx::query(
            "SELECT state, spec, map, cut_lsn, switch_epoch, rows_copied, created_tables \
             FROM sysmanage.shard_moves WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("load move"))?;
        row.map(|r| {
            Ok(MoveRow {
                state: MoveState::parse(r.get::<String, _>(0).as_str())?,
                spec: r.get(1),
                map: r.get(2),
                cut_lsn: r.get(3),
                switch_epoch: r.get::<Option<i64>, _>(4).map(|v| v as u64),
                rows_copied: r.get::<i64, _>(5) as u64,
                created_tables: r.get(6),
            })
        })
        .transpose()
    }

    /// Creates the move's row and claims its shards in one transaction:
    /// every shard must be on `source` and unclaimed.
    pub(crate) async fn create_move(
        &self,
        id: &str,
        spec: &str,
        shards: &[ShardId],
        source: &str,
    ) -> Result<()> {
        let step = "claim shards";
        let mut tx = self.pool.begin().await.map_err(db_err(step))?;
        let ids: Vec<i32> = shards.iter().map(|s| s.0 as i32).collect();
        let rows = sqlx::query(
            "SELECT shard, node_set, move_id FROM sysmanage.shard_placements \
             WHERE map = $1 AND shard = ANY($2) ORDER BY shard FOR UPDATE",
        )
        .bind(&self.name)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err(step))?;
        let conflict = |reason: String| Error::MoveConflict {
            id: id.to_owned(),
            reason,
        };
        if rows.len() != ids.len() {
            return Err(conflict(format!(
                "map {:?} does not have all of shards {ids:?}",
                self.name
            )));
        }
        for r in &rows {
            let shard: i32 = r.get(0);
            let node_set: String = r.get(1);
            let claimed: Option<String> = r.get(2);
            if let Some(other) = claimed {
                return Err(conflict(format!(
                    "shard-{shard} is claimed by move {other:?}"
                )));
            }
            if node_set != source {
                return Err(conflict(format!(
                    "shard-{shard} is on node set {node_set:?}, not on the source {source:?}"
                )));
            }
        }
        sqlx::query(
            "UPDATE sysmanage.shard_placements SET move_id = $3 WHERE map = $1 AND shard = ANY($2)",
        )
        .bind(&self.name)
        .bind(&ids)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err(step))?;
        sqlx::query("INSERT INTO sysmanage.shard_moves (id, map, spec, state) VALUES ($1, $2, $3, 'planned')")
            .bind(id)
            .bind(&self.name)
            .bind(spec)
            .execute(&mut *tx)
            .await
            .map_err(db_err(step))?;
        tx.commit().await.map_err(db_err(step))
    }

    pub(crate) async fn set_state(&self, id: &str, state: MoveState) -> Result<()> {
        sqlx::query(
            "UPDATE sysmanage.shard_moves SET state = $2, error = NULL, updated_at = now() WHERE id = $1",
        )
        .bind(id)
        .bind(state.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_err("store move state"))?;
        Ok(())
    }

    pub(crate) async fn set_error(&self, id: &str, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE sysmanage.shard_moves SET error = $2, updated_at = now() WHERE id = $1",
        )
        .bind(id)
        .bind(error)
        .execute(&self.pool)
        .await
        .map_err(db_err("store move error"))?;
        Ok(())
    }

    pub(crate) async fn set_copy(&self, id: &str, cut_lsn: Option<&str>, rows: u64) -> Result<()> {
        sqlx::query(
            "UPDATE sysmanage.shard_moves SET cut_lsn = $2, rows_copied = $3, updated_at = now() WHERE id = $1",
        )
        .bind(id)
        .bind(cut_lsn)
        .bind(rows as i64)
        .execute(&self.pool)
        .await
        .map_err(db_err("store copy progress"))?;
        Ok(())
    }

    pub(crate) async fn add_created(&self, id: &str, table: &str) -> Result<()> {
        sqlx::query(
            "UPDATE sysmanage.shard_moves SET created_tables = array_append(created_tables, $2) \
             WHERE id = $1 AND NOT ($2 = ANY(created_tables))",
        )
        .bind(id)
        .bind(table)
        .execute(&self.pool)
        .await
        .map_err(db_err("record created table"))?;
        Ok(())
    }

    /// Fences (or unfences) the move's shards and stores the move's state,
    /// in one transaction with a version bump and its notification.
    pub(crate) async fn set_fence(&self, id: &str, fenced: bool, state: MoveState) -> Result<u64> {
        let step = if fenced {
            "fence shards"
        } else {
            "unfence shards"
        };
        let mut tx = self.pool.begin().await.map_err(db_err(step))?;
        sqlx::query(
            "UPDATE sysmanage.shard_placements SET fenced = $3 WHERE map = $1 AND move_id = $2",
        )
        .bind(&self.name)
        .bind(id)
        .bind(fenced)
        .execute(&mut *tx)
        .await
        .map_err(db_err(step))?;
        let version = bump(&mut tx, &self.name).await?;
        store_state(&mut tx, id, state).await?;
        tx.commit().await.map_err(db_err(step))?;
        Ok(version)
    }

    /// The atomic routing switch: every shard of the move onto `target`,
    /// unfenced, the version bumped and notified, and the move marked
    /// switched, in one transaction.
    pub(crate) async fn switch(&self, id: &str, target: &str) -> Result<u64> {
        let step = "switch routing";
        let mut tx = self.pool.begin().await.map_err(db_err(step))?;
        sqlx::query(
            "UPDATE sysmanage.shard_placements SET node_set = $3, fenced = false WHERE map = $1 AND move_id = $2",
        )
        .bind(&self.name)
        .bind(id)
        .bind(target)
        .execute(&mut *tx)
        .await
        .map_err(db_err(step))?;
        let version = bump(&mut tx, &self.name).await?;
        sqlx::query(
            "UPDATE sysmanage.shard_moves SET state = 'switched', switch_epoch = $2, error = NULL, updated_at = now() WHERE id = $1",
        )
        .bind(id)
        .bind(version as i64)
        .execute(&mut *tx)
        .await
        .map_err(db_err(step))?;
        tx.commit().await.map_err(db_err(step))?;
        Ok(version)
    }

    /// Releases the move's claim on its shards and stores its final state.
    pub(crate) async fn finish(&self, id: &str, state: MoveState, unfence: bool) -> Result<()> {
        let step = "release shards";
        let mut tx = self.pool.begin().await.map_err(db_err(step))?;
        let was_fenced: bool = sqlx::query_scalar(
            "SELECT count(*) > 0 FROM sysmanage.shard_placements WHERE map = $1 AND move_id = $2 AND fenced",
        )
        .bind(&self.name)
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err(step))?;
        sqlx::query(
            "UPDATE sysmanage.shard_placements SET move_id = NULL, fenced = false WHERE map = $1 AND move_id = $2",
        )
        .bind(&self.name)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err(step))?;
        if unfence && was_fenced {
            bump(&mut tx, &self.name).await?;
        }
        store_state(&mut tx, id, state).await?;
        tx.commit().await.map_err(db_err(step))
    }
}

async fn store_state(tx: &mut Transaction<'_, Postgres>, id: &str, state: MoveState) -> Result<()> {
    sqlx::query(
        "UPDATE sysmanage.shard_moves SET state = $2, error = NULL, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(state.as_str())
    .execute(&mut **tx)
    .await
    .map_err(db_err("store move state"))?;
    Ok(())
}

async fn bump(tx: &mut Transaction<'_, Postgres>, name: &str) -> Result<u64> {
    let v: i64 = sqlx::query_scalar(
        "UPDATE sysmanage.shard_maps SET version = version + 1, updated_at = now() WHERE name = $1 RETURNING version",
    )
    .bind(name)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_err("bump shard map version"))?;
    notify(tx, name, v as u64).await?;
    Ok(v as u64)
}

async fn notify(tx: &mut Transaction<'_, Postgres>, name: &str, version: u64) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(NOTIFY_CHANNEL)
        .bind(format!("{name} {version}"))
        .execute(&mut **tx)
        .await
        .map_err(db_err("notify shard map change"))?;
    Ok(())
}
