//! The initial copy: a cut that ties a snapshot to the replication slot's
//! start, then binary `COPY` of every partition in parallel inside that
//! snapshot.
//!
//! The cut: with the publication in place and the slot created, the
//! executor takes a `SHARE` lock on the moved partitions (it waits for the
//! writers in flight and holds new ones back), exports a `REPEATABLE READ`
//! snapshot, reads `pg_current_wal_insert_lsn()` and releases the lock:
//! every change to those partitions is either visible in the snapshot (its
//! commit record lies before that position) or commits after it. The slot
//! is then advanced to exactly that position, so the subscription applies
//! precisely the changes the snapshot lacks. (A walsender connection with
//! `EXPORT_SNAPSHOT` would avoid the lock, but sqlx cannot open one; the
//! lock lasts a few milliseconds and is measured as the cut pause.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection, PgPool};
use tokio::task::JoinSet;

use super::catalog::Partition;
use super::copy_format::CopyRowCounter;
use super::executor::Run;
use super::phase::{MoveState, Phase};
use super::sql::{DELTA_TRIGGER, quote_ident, quote_literal};
use crate::{Error, Result};

/// What the copy phase measured.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CopyStats {
    pub(crate) rows: u64,
    pub(crate) elapsed: Duration,
    pub(crate) cut_pause: Duration,
}

impl Run<'_> {
    /// Undoes any earlier, interrupted copy: subscription, slot, target rows.
    async fn reset_copy(&self) -> Result<()> {
        self.drop_subscription().await?;
        self.drop_slot().await?;
        for p in &self.parts {
            self.exec_target(
                "truncate target partition",
                &format!("TRUNCATE {}", p.table.quoted()),
            )
            .await?;
            self.exec_target(
                "drop delta trigger",
                &format!(
                    "DROP TRIGGER IF EXISTS {DELTA_TRIGGER} ON {}",
                    p.table.quoted()
                ),
            )
            .await?;
        }
        Ok(())
    }

    pub(crate) async fn ensure_publication(&self) -> Result<()> {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)")
                .bind(&self.name)
                .fetch_one(&self.source)
                .await
                .map_err(self.fail(Phase::Copy, "read publications"))?;
        if exists {
            return Ok(());
        }
        let tables: Vec<String> = self.parts.iter().map(|p| p.table.quoted()).collect();
        self.exec_source(
            "create publication",
            &format!(
                "CREATE PUBLICATION {} FOR TABLE {}, sysmanage.move_markers WHERE (move_id = {}) \
                 WITH (publish = 'insert, update, delete')",
                quote_ident(&self.name),
                tables.join(", "),
                quote_literal(&self.spec.id)
            ),
        )
        .await
    }

    /// The copy phase: publication, slot, cut, parallel copy, delta triggers.
    pub(crate) async fn copy(&mut self) -> Result<CopyStats> {
        self.reset_copy().await?;
        self.store
            .set_state(&self.spec.id, MoveState::Copying)
            .await?;
        // The publication must exist before the slot's start: decoding
        // reads it through the catalog as of each change.
        self.ensure_publication().await?;
        sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
            .bind(&self.name)
            .execute(&self.source)
            .await
            .map_err(self.fail(Phase::Copy, "create replication slot"))?;
        let started = Instant::now();
        let (snapshot_tx, snapshot, cut_lsn, cut_pause) = self.cut().await?;
        self.store
            .set_copy(&self.spec.id, Some(&cut_lsn), 0)
            .await?;
        let estimated: u64 = self.parts.iter().map(|p| p.estimated_rows).sum();
        let copied = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(self.opts.copy_parallelism));
        for p in self.parts.clone() {
            let (source, target, snapshot, copied, permits) = (
                self.source.clone(),
                self.target.clone(),
                snapshot.clone(),
                Arc::clone(&copied),
                Arc::clone(&permits),
            );
            tasks.spawn(async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .map_err(|e| copy_err(&p, "wait", e))?;
                copy_partition(&source, &target, &snapshot, &p, &copied).await
            });
        }
        let mut rows = 0_u64;
        let mut last = Instant::now();
        loop {
            if self.cancel.is_cancelled() {
                tasks.abort_all();
                return Err(self.cancelled());
            }
            match tokio::time::timeout(self.opts.progress_interval, tasks.join_next()).await {
                Ok(None) => break,
                Ok(Some(joined)) => {
                    let n = joined
                        .map_err(|e| Error::MoveFailed {
                            id: self.spec.id.clone(),
                            phase: Phase::Copy.as_str(),
                            step: "copy task",
                            source: Box::new(e),
                        })?
                        .map_err(|e| Error::MoveFailed {
                            id: self.spec.id.clone(),
                            phase: Phase::Copy.as_str(),
                            step: "copy partition",
                            source: e,
                        })?;
                    rows += n;
                }
                Err(_) => {}
            }
            if last.elapsed() >= self.opts.progress_interval {
                last = Instant::now();
                let done = copied.load(Ordering::Relaxed);
                let est = estimated.max(done);
                self.report.emit(
                    Phase::Copy,
                    done,
                    est,
                    None,
                    super::progress::eta(done, est - done, started.elapsed()),
                );
            }
        }
        let elapsed = started.elapsed();
        let _ = snapshot_tx.close().await;
        for p in &self.parts {
            self.exec_target(
                "create delta trigger",
                &format!(
                    "CREATE TRIGGER {DELTA_TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {} \
                     FOR EACH ROW EXECUTE FUNCTION sysmanage.move_delta({})",
                    p.table.quoted(),
                    quote_literal(&self.spec.id)
                ),
            )
            .await?;
        }
        self.store
            .set_copy(&self.spec.id, Some(&cut_lsn), rows)
            .await?;
        self.store
            .set_state(&self.spec.id, MoveState::CatchingUp)
            .await?;
        self.report
            .emit(Phase::Copy, rows, rows, None, Some(Duration::ZERO));
        Ok(CopyStats {
            rows,
            elapsed,
            cut_pause,
        })
    }

    /// Lock, export a snapshot, read the WAL position, unlock; advance the
    /// slot to that position. Returns the open snapshot transaction (it must
    /// outlive the copies), the snapshot id, the position and the lock time.
    async fn cut(&self) -> Result<(sqlx::PgConnection, String, String, Duration)> {
        let tables: Vec<String> = self.parts.iter().map(|p| p.table.quoted()).collect();
        let lock_sql = format!("LOCK TABLE {} IN SHARE MODE", tables.join(", "));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut lock = self
                .source
                .acquire()
                .await
                .map_err(self.fail(Phase::Copy, "connect"))?;
            // Detached: closing it (also on an error path) ends the snapshot.
            let mut snap = self
                .source
                .acquire()
                .await
                .map_err(self.fail(Phase::Copy, "connect"))?
                .detach();
            let mut tx = lock
                .begin()
                .await
                .map_err(self.fail(Phase::Copy, "begin cut"))?;
            sqlx::raw_sql(AssertSqlSafe(format!(
                "SET LOCAL lock_timeout = '{}ms'",
                self.opts.lock_timeout.as_millis()
            )))
            .execute(&mut *tx)
            .await
            .map_err(self.fail(Phase::Copy, "set lock_timeout"))?;
            let locked_at = Instant::now();
            match sqlx::raw_sql(AssertSqlSafe(lock_sql.clone()))
                .execute(&mut *tx)
                .await
            {
                Ok(_) => {}
                Err(e) if is_lock_timeout(&e) && attempt < 10 => {
                    drop(tx);
                    tokio::time::sleep(self.opts.poll_interval).await;
                    continue;
                }
                Err(e) => return Err(self.fail(Phase::Copy, "lock partitions for the cut")(e)),
            }
            let locked_at = locked_at.max(Instant::now());
            sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut snap)
                .await
                .map_err(self.fail(Phase::Copy, "begin snapshot"))?;
            let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
                .fetch_one(&mut snap)
                .await
                .map_err(self.fail(Phase::Copy, "export snapshot"))?;
            let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
                .fetch_one(&mut *tx)
                .await
                .map_err(self.fail(Phase::Copy, "read cut position"))?;
            tx.commit()
                .await
                .map_err(self.fail(Phase::Copy, "release cut lock"))?;
            let pause = locked_at.elapsed();
            // The slot can only advance to flushed WAL.
            loop {
                let flushed: bool =
                    sqlx::query_scalar("SELECT pg_current_wal_flush_lsn() >= $1::text::pg_lsn")
                        .bind(&lsn)
                        .fetch_one(&self.source)
                        .await
                        .map_err(self.fail(Phase::Copy, "wait for wal flush"))?;
                if flushed {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let end: String = sqlx::query_scalar(
                "SELECT end_lsn::text FROM pg_replication_slot_advance($1, $2::text::pg_lsn)",
            )
            .bind(&self.name)
            .bind(&lsn)
            .fetch_one(&self.source)
            .await
            .map_err(self.fail(Phase::Copy, "advance slot to the cut"))?;
            if end != lsn {
                return Err(Error::MoveFailed {
                    id: self.spec.id.clone(),
                    phase: Phase::Copy.as_str(),
                    step: "advance slot to the cut",
                    source: format!("the slot advanced to {end}, not to the cut at {lsn}").into(),
                });
            }
            return Ok((snap, snapshot, lsn, pause));
        }
    }
}

/// Bytes gathered before one write to the target.
const COPY_BATCH: usize = 256 * 1024;

fn is_lock_timeout(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03"))
}

fn copy_err(p: &Partition, what: &str, e: impl std::fmt::Display) -> sysmanage_core::BoxError {
    format!("{} ({what}): {e}", p.table).into()
}

/// Streams one partition from the source (inside the exported snapshot) to
/// the target in binary, counting rows as they pass.
async fn copy_partition(
    source: &PgPool,
    target: &PgPool,
    snapshot: &str,
    p: &Partition,
    copied: &AtomicU64,
) -> std::result::Result<u64, sysmanage_core::BoxError> {
    // Detached: an interrupted copy closes its connections instead of
    // returning them to the pool mid-transaction or mid-COPY.
    let mut src = source
        .acquire()
        .await
        .map_err(|e| copy_err(p, "connect to source", e))?
        .detach();
    let mut dst = target
        .acquire()
        .await
        .map_err(|e| copy_err(p, "connect to target", e))?
        .detach();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT {}",
        quote_literal(snapshot)
    )))
    .execute(&mut src)
    .await
    .map_err(|e| copy_err(p, "import snapshot", e))?;
    let cols = p.column_list();
    let mut sink = dst
        .copy_in_raw(&format!(
            "COPY {} {cols} FROM STDIN (FORMAT binary)",
            p.table.quoted()
        ))
        .await
        .map_err(|e| copy_err(p, "start COPY FROM", e))?;
    let mut counter = CopyRowCounter::default();
    {
        let mut stream = src
            .copy_out_raw(&format!(
                "COPY {} {cols} TO STDOUT (FORMAT binary)",
                p.table.quoted()
            ))
            .await
            .map_err(|e| copy_err(p, "start COPY TO", e))?;
        // The source sends one message per row: gather them into larger
        // writes to the target.
        let mut batch: Vec<u8> = Vec::with_capacity(COPY_BATCH + 4096);
        loop {
            let next = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await;
            if let Some(chunk) = &next {
                let chunk = chunk.as_ref().map_err(|e| copy_err(p, "read", e))?;
                batch.extend_from_slice(chunk);
            }
            if batch.len() >= COPY_BATCH || (next.is_none() && !batch.is_empty()) {
                let before = counter.rows();
                counter.feed(&batch);
                copied.fetch_add(counter.rows() - before, Ordering::Relaxed);
                sink.send(batch.as_slice())
                    .await
                    .map_err(|e| copy_err(p, "write", e))?;
                batch.clear();
            }
            if next.is_none() {
                break;
            }
        }
    }
    let rows = sink
        .finish()
        .await
        .map_err(|e| copy_err(p, "finish COPY FROM", e))?;
    sqlx::raw_sql("COMMIT")
        .execute(&mut src)
        .await
        .map_err(|e| copy_err(p, "end snapshot", e))?;
    if counter.is_done() && counter.rows() != rows {
        return Err(copy_err(
            p,
            "count",
            format!(
                "the stream carried {} rows but the target stored {rows}",
                counter.rows()
            ),
        ));
    }
    Ok(rows)
}
