//! Cleaning up after a switch, and undoing a move before one.

use std::time::Duration;

use super::executor::Run;
use super::phase::{MoveState, Phase};
use super::sql::{DELTA_TRIGGER, QualifiedName, quote_ident};
use crate::Result;

impl Run<'_> {
    /// Drops the subscription without touching the remote slot (which may
    /// live in the same cluster; it is dropped separately).
    pub(crate) async fn drop_subscription(&self) -> Result<()> {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)")
                .bind(&self.name)
                .fetch_one(&self.target)
                .await
                .map_err(self.fail(Phase::Cleanup, "read subscriptions"))?;
        if exists {
            let n = quote_ident(&self.name);
            self.exec_target(
                "disable subscription",
                &format!("ALTER SUBSCRIPTION {n} DISABLE"),
            )
            .await?;
            self.exec_target(
                "detach subscription slot",
                &format!("ALTER SUBSCRIPTION {n} SET (slot_name = NONE)"),
            )
            .await?;
            self.exec_target("drop subscription", &format!("DROP SUBSCRIPTION {n}"))
                .await?;
        }
        Ok(())
    }

    /// Drops the replication slot, ending a walsender still attached.
    pub(crate) async fn drop_slot(&self) -> Result<()> {
        for _ in 0..200 {
            let row: Option<(bool, Option<i32>)> = sqlx::query_as(
                "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1",
            )
            .bind(&self.name)
            .fetch_optional(&self.source)
            .await
            .map_err(self.fail(Phase::Cleanup, "read slots"))?;
            match row {
                None => return Ok(()),
                Some((true, Some(pid))) => {
                    sqlx::query("SELECT pg_terminate_backend($1)")
                        .bind(pid)
                        .execute(&self.source)
                        .await
                        .map_err(self.fail(Phase::Cleanup, "end walsender"))?;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Some(_) => {
                    match sqlx::query("SELECT pg_drop_replication_slot($1)")
                        .bind(&self.name)
                        .execute(&self.source)
                        .await
                    {
                        Ok(_) => return Ok(()),
                        // Became active again in between: retry.
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
        }
        Err(crate::Error::MoveFailed {
            id: self.spec.id.clone(),
            phase: Phase::Cleanup.as_str(),
            step: "drop replication slot",
            source: format!("slot {} stayed in use", self.name).into(),
        })
    }

    async fn drop_replication(&self) -> Result<()> {
        self.drop_subscription().await?;
        self.drop_slot().await?;
        self.exec_source(
            "drop publication",
            &format!("DROP PUBLICATION IF EXISTS {}", quote_ident(&self.name)),
        )
        .await
    }

    async fn drop_markers_and_deltas(&self) -> Result<()> {
        for p in &self.parts {
            self.exec_target(
                "drop delta trigger",
                &format!(
                    "DROP TRIGGER IF EXISTS {DELTA_TRIGGER} ON {}",
                    p.table.quoted()
                ),
            )
            .await?;
        }
        sqlx::query("DELETE FROM sysmanage.move_delta WHERE move_id = $1")
            .bind(&self.spec.id)
            .execute(&self.target)
            .await
            .map_err(self.fail(Phase::Cleanup, "drop delta log"))?;
        for pool in [&self.source, &self.target] {
            sqlx::query("DELETE FROM sysmanage.move_markers WHERE move_id = $1")
                .bind(&self.spec.id)
                .execute(pool)
                .await
                .map_err(self.fail(Phase::Cleanup, "drop marker"))?;
        }
        Ok(())
    }

    /// After verification: replication objects, then (after the grace) the
    /// source's rows; the guard triggers stay on the emptied source
    /// partitions and keep refusing writes routed with a stale map.
    pub(crate) async fn cleanup(&self) -> Result<()> {
        self.report.emit(Phase::Cleanup, 0, 0, None, None);
        self.drop_replication().await?;
        tokio::time::sleep(self.opts.cleanup_grace).await;
        for p in &self.parts {
            self.exec_source(
                "truncate source partition",
                &format!("TRUNCATE {}", p.table.quoted()),
            )
            .await?;
        }
        self.drop_markers_and_deltas().await?;
        self.store
            .finish(&self.spec.id, MoveState::Done, false)
            .await
    }

    /// Undoes a move before its switch: the source stays authoritative.
    pub(crate) async fn undo(&self, state: MoveState) -> Result<()> {
        self.report.emit(Phase::Cancel, 0, 0, None, None);
        self.drop_replication().await?;
        if state == MoveState::Fenced {
            self.drop_guards().await?;
        }
        // Unfence (if fenced) and release the shards before the target is
        // emptied: nothing routes there either way.
        self.store
            .finish(&self.spec.id, MoveState::Cancelled, true)
            .await?;
        self.drop_markers_and_deltas().await?;
        for p in &self.parts {
            let created = self.created.iter().any(|c| *c == p.table.to_string());
            let sql = if created {
                format!("DROP TABLE IF EXISTS {}", p.table.quoted())
            } else {
                format!("TRUNCATE {}", p.table.quoted())
            };
            if created
                || super::catalog::exists(&self.target, &p.table)
                    .await
                    .unwrap_or(false)
            {
                self.exec_target("clean target", &sql).await?;
            }
        }
        // Parents the move created, once they have no partitions left.
        for c in &self.created {
            let q = QualifiedName::parse("tables", c)?;
            let left: Option<i64> = sqlx::query_scalar(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass($1)",
            )
            .bind(q.quoted())
            .fetch_optional(&self.target)
            .await
            .map_err(self.fail(Phase::Cancel, "inspect target"))?;
            let is_parent: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass($1))",
            )
            .bind(q.quoted())
            .fetch_one(&self.target)
            .await
            .map_err(self.fail(Phase::Cancel, "inspect target"))?;
            if is_parent && left == Some(0) {
                self.exec_target(
                    "drop created parent",
                    &format!("DROP TABLE IF EXISTS {}", q.quoted()),
                )
                .await?;
            }
        }
        Ok(())
    }
}
