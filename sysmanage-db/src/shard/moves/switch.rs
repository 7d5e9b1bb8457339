//! The write fence, the final catch-up and the atomic routing switch.
//!
//! 1. Fence in the map (version bump + `NOTIFY`): routers hold the shards'
//!    writes.
//! 2. Guard on the source: a trigger on each moved partition refuses
//!    writes (`SMF01`), catching routers that have not seen the fence yet.
//!    Creating it waits for the writes in flight, so once it commits no
//!    write can change those partitions.
//! 3. Final catch-up: bump the move's marker row on the source and wait
//!    until the target has applied it: apply is in commit order, so every
//!    earlier change is there too.
//! 4. Switch in the map (one transaction: placements, version, `NOTIFY`,
//!    state), then mark the guards "moved" (`SMM01`).
//!
//! If step 2 or 3 overruns `max_fence`, the guard is dropped and the fence
//! lifted, catch-up continues, and the fence is tried again.

use std::time::{Duration, Instant};

use super::executor::{Run, ShardMove};
use super::phase::{MoveState, Phase};
use super::sql::GUARD_TRIGGER;
use crate::{Error, Result};

/// The outcome of a switch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Switched {
    pub(crate) epoch: u64,
    pub(crate) pause: Duration,
    pub(crate) attempts: u32,
}

impl Run<'_> {
    pub(crate) async fn switch(&self, mv: &ShardMove) -> Result<Switched> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            if self.cancel.is_cancelled() {
                return Err(self.cancelled());
            }
            self.store
                .set_fence(&self.spec.id, true, MoveState::Fenced)
                .await?;
            let fenced_at = Instant::now();
            let deadline = fenced_at + self.opts.max_fence;
            self.report.emit(Phase::Switch, 0, 0, None, None);
            match self.final_catch_up(deadline).await {
                Ok(()) => {
                    let epoch = self
                        .store
                        .switch(&self.spec.id, &self.spec.target.node_set)
                        .await?;
                    let pause = fenced_at.elapsed();
                    self.mark_moved(epoch).await?;
                    return Ok(Switched {
                        epoch,
                        pause,
                        attempts,
                    });
                }
                Err(FenceOverrun(why)) => {
                    self.drop_guards().await?;
                    self.store
                        .set_fence(&self.spec.id, false, MoveState::CatchingUp)
                        .await?;
                    tracing::debug!(target: "sysmanage_db::shard::moves", move_id = %self.spec.id, attempts, reason = %why, "sysmanage_db.shard.move.fence_retry");
                    if attempts >= self.opts.fence_attempts {
                        return Err(Error::MoveFailed {
                            id: self.spec.id.clone(),
                            phase: Phase::Switch.as_str(),
                            step: "final catch-up",
                            source: format!(
                                "{attempts} fences overran max_fence ({:?}); last: {why}",
                                self.opts.max_fence
                            )
                            .into(),
                        });
                    }
                    self.catch_up().await?;
                    mv.check_guard(Phase::Switch).await?;
                }
            }
        }
    }

    /// Guard, marker, wait; `FenceOverrun` when `deadline` passes.
    async fn final_catch_up(&self, deadline: Instant) -> std::result::Result<(), FenceOverrun> {
        let left = || deadline.saturating_duration_since(Instant::now());
        self.install_guards(left())
            .await
            .map_err(|e| FenceOverrun(format!("guard: {e}")))?;
        let seq: i64 = sqlx::query_scalar(
            "UPDATE sysmanage.move_markers SET seq = seq + 1 WHERE move_id = $1 RETURNING seq",
        )
        .bind(&self.spec.id)
        .fetch_one(&self.source)
        .await
        .map_err(|e| FenceOverrun(format!("marker: {e}")))?;
        loop {
            let applied: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM sysmanage.move_markers WHERE move_id = $1")
                    .bind(&self.spec.id)
                    .fetch_optional(&self.target)
                    .await
                    .map_err(|e| FenceOverrun(format!("marker: {e}")))?;
            if applied.unwrap_or(0) >= seq {
                return Ok(());
            }
            if left().is_zero() {
                return Err(FenceOverrun(format!(
                    "marker {seq} not applied on the target (at {})",
                    applied.unwrap_or(0)
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn install_guards(&self, budget: Duration) -> std::result::Result<(), sqlx::Error> {
        let mut tx = self.source.begin().await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET LOCAL lock_timeout = '{}ms'",
            budget.min(self.opts.lock_timeout).as_millis().max(1)
        )))
        .execute(&mut *tx)
        .await?;
        for p in &self.parts {
            sqlx::query(
                "INSERT INTO sysmanage.shard_guards (relid, shard, state, epoch, node_set, move_id) \
                 VALUES ($1::regclass, $2, 'fenced', 0, $3, $4) \
                 ON CONFLICT (relid) DO UPDATE SET state = 'fenced', move_id = excluded.move_id",
            )
            .bind(p.table.quoted())
            .bind(p.shard.0 as i32)
            .bind(&self.spec.target.node_set)
            .bind(&self.spec.id)
            .execute(&mut *tx)
            .await?;
            let has: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2)",
            )
            .bind(p.table.quoted())
            .bind(GUARD_TRIGGER)
            .fetch_one(&mut *tx)
            .await?;
            if !has {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "CREATE TRIGGER {GUARD_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE ON {} \
                     FOR EACH ROW EXECUTE FUNCTION sysmanage.shard_guard()",
                    p.table.quoted()
                )))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await
    }

    /// Removes the guards (a lifted fence or a cancel).
    pub(crate) async fn drop_guards(&self) -> Result<()> {
        for p in &self.parts {
            self.exec_source(
                "drop guard trigger",
                &format!(
                    "DROP TRIGGER IF EXISTS {GUARD_TRIGGER} ON {}",
                    p.table.quoted()
                ),
            )
            .await?;
            sqlx::query(
                "DELETE FROM sysmanage.shard_guards WHERE relid = to_regclass($1) AND move_id = $2",
            )
            .bind(p.table.quoted())
            .bind(&self.spec.id)
            .execute(&self.source)
            .await
            .map_err(self.fail(Phase::Cancel, "drop guard"))?;
        }
        Ok(())
    }

    /// After the switch the guards say where the shards went.
    pub(crate) async fn mark_moved(&self, epoch: u64) -> Result<()> {
        sqlx::query(
            "UPDATE sysmanage.shard_guards SET state = 'moved', epoch = $2, node_set = $3 WHERE move_id = $1",
        )
        .bind(&self.spec.id)
        .bind(epoch as i64)
        .bind(&self.spec.target.node_set)
        .execute(&self.source)
        .await
        .map_err(self.fail(Phase::Switch, "mark guards moved"))?;
        Ok(())
    }
}

/// The fence could not finish in time.
struct FenceOverrun(String);
