//! [`ShardMove`]: runs (or resumes, or cancels) one move, phase by phase,
//! storing its state after each step.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};

use super::catalog::{self, Partition};
use super::hook::{BeforePhase, CancelToken};
use super::phase::{MoveState, Phase};
use super::progress::MoveProgress;
use super::report::MoveReport;
use super::spec::{MoveOptions, MoveSpec};
use super::sql::replication_name;
use super::store::ShardMapStore;
use crate::{Error, Result};

/// How long a run waits for the move's lock before reporting that another
/// executor holds it.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&MoveProgress) + Send + Sync>;

/// Builds a [`ShardMove`].
#[must_use = "a builder does nothing until `.build()` is called"]
pub struct ShardMoveBuilder {
    store: ShardMapStore,
    spec: MoveSpec,
    options: MoveOptions,
    progress: Option<ProgressFn>,
    guard: Option<Arc<dyn BeforePhase>>,
    cancel: CancelToken,
}

impl std::fmt::Debug for ShardMoveBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardMoveBuilder")
            .field("spec", &self.spec)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ShardMoveBuilder {
    /// Pacing and thresholds (default [`MoveOptions::default`]).
    pub fn options(mut self, options: MoveOptions) -> Self {
        self.options = options;
        self
    }

    /// Called with every progress report (from the executor's task: keep it
    /// short).
    pub fn on_progress(mut self, f: impl Fn(&MoveProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Checked before every phase (see [`BeforePhase`]).
    pub fn before_phase(mut self, guard: impl BeforePhase + 'static) -> Self {
        self.guard = Some(Arc::new(guard));
        self
    }

    /// A token that cancels the run from another task.
    pub fn cancel_token(mut self, token: CancelToken) -> Self {
        self.cancel = token;
        self
    }

    /// Validates the spec and options.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] from [`MoveSpec::validate`] or
    /// [`MoveOptions::validate`].
    pub fn build(self) -> Result<ShardMove> {
        self.spec.validate()?;
        self.options.validate()?;
        Ok(ShardMove {
            store: self.store,
            spec: self.spec,
            options: self.options,
            progress: self.progress,
            guard: self.guard,
            cancel: self.cancel,
        })
    }
}

/// The online shard-move executor: see the [module docs](super).
pub struct ShardMove {
    store: ShardMapStore,
    spec: MoveSpec,
    options: MoveOptions,
    progress: Option<ProgressFn>,
    guard: Option<Arc<dyn BeforePhase>>,
    cancel: CancelToken,
}

impl std::fmt::Debug for ShardMove {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardMove")
            .field("spec", &self.spec)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Emits progress events.
#[derive(Clone)]
pub(crate) struct Reporter {
    id: String,
    cb: Option<ProgressFn>,
    started: Instant,
}

impl Reporter {
    pub(crate) fn emit(
        &self,
        phase: Phase,
        rows_copied: u64,
        rows_estimated: u64,
        lag_bytes: Option<u64>,
        eta: Option<Duration>,
    ) {
        let event = MoveProgress {
            move_id: self.id.clone(),
            phase,
            rows_copied,
            rows_estimated,
            lag_bytes,
            eta,
            elapsed: self.started.elapsed(),
        };
        tracing::debug!(
            target: "sysmanage_db::shard::moves",
            move_id = %event.move_id,
            phase = phase.as_str(),
            rows_copied,
            lag_bytes,
            "sysmanage_db.shard.move.progress"
        );
        if let Some(cb) = &self.cb {
            cb(&event);
        }
    }
}

/// One run's connections and facts, shared by the phase modules.
pub(crate) struct Run<'a> {
    pub(crate) spec: &'a MoveSpec,
    pub(crate) opts: &'a MoveOptions,
    pub(crate) store: &'a ShardMapStore,
    pub(crate) source: PgPool,
    pub(crate) target: PgPool,
    pub(crate) parts: Vec<Partition>,
    /// Publication, slot and subscription name.
    pub(crate) name: String,
    pub(crate) report: Reporter,
    pub(crate) cancel: CancelToken,
    pub(crate) created: Vec<String>,
}

impl Run<'_> {
    pub(crate) fn fail(
        &self,
        phase: Phase,
        step: &'static str,
    ) -> impl FnOnce(sqlx::Error) -> Error + use<> {
        let id = self.spec.id.clone();
        move |e| Error::MoveFailed {
            id,
            phase: phase.as_str(),
            step,
            source: Box::new(e),
        }
    }

    pub(crate) fn cancelled(&self) -> Error {
        Error::MoveCancelled {
            id: self.spec.id.clone(),
        }
    }

    pub(crate) async fn exec_source(&self, step: &'static str, sql: &str) -> Result<()> {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&self.source)
            .await
            .map_err(self.fail(Phase::Copy, step))?;
        Ok(())
    }

    pub(crate) async fn exec_target(&self, step: &'static str, sql: &str) -> Result<()> {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&self.target)
            .await
            .map_err(self.fail(Phase::Copy, step))?;
        Ok(())
    }
}

fn pool_options(parallelism: usize) -> PgPoolOptions {
    PgPoolOptions::new()
        // Copies (two connections each: one detached per side) plus the
        // cut, catch-up polling and checksums.
        .max_connections(parallelism as u32 + 4)
        .acquire_timeout(Duration::from_secs(30))
}

impl ShardMove {
    /// Starts a move of `spec` recorded in `store`'s metadata database.
    pub fn builder(store: ShardMapStore, spec: MoveSpec) -> ShardMoveBuilder {
        ShardMoveBuilder {
            store,
            spec,
            options: MoveOptions::default(),
            progress: None,
            guard: None,
            cancel: CancelToken::new(),
        }
    }

    /// The move's spec.
    pub fn spec(&self) -> &MoveSpec {
        &self.spec
    }

    /// The token that cancels this move's runs.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Holds the move's advisory lock on a connection of its own (closing
    /// it, also by a crash, releases the lock).
    async fn lock(&self) -> Result<sqlx::PgConnection> {
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(super::store::db_err("connect for the move lock"))?
            .detach();
        // The session of an executor that just died may take a moment to
        // end on the server: try for a few seconds before reporting a
        // conflict.
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            let got: bool = sqlx::query_scalar(
                "SELECT pg_try_advisory_lock(hashtext('sysmanage.move'), hashtext($1))",
            )
            .bind(&self.spec.id)
            .fetch_one(&mut conn)
            .await
            .map_err(super::store::db_err("take the move lock"))?;
            if got {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::MoveConflict {
                    id: self.spec.id.clone(),
                    reason: "another executor is running this move".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(conn)
    }

    async fn open<'a>(&'a self, created: Vec<String>) -> Result<Run<'a>> {
        let connect = |url: &str, side: &'static str| {
            let url = url.to_owned();
            let opts = pool_options(self.options.copy_parallelism);
            async move {
                opts.connect(&url).await.map_err(|e| Error::Query {
                    node: side.into(),
                    connection: true,
                    source: Box::new(e),
                })
            }
        };
        let source = connect(&self.spec.source.url, "source").await?;
        let target = connect(&self.spec.target.url, "target").await?;
        let shard_count = self.store.load().await?.shards.len() as u32;
        let parts = catalog::discover(
            &source,
            &self.spec.table_names()?,
            &self.spec.shards,
            shard_count,
        )
        .await?;
        Ok(Run {
            spec: &self.spec,
            opts: &self.options,
            store: &self.store,
            source,
            target,
            parts,
            name: replication_name(&self.spec.id),
            report: Reporter {
                id: self.spec.id.clone(),
                cb: self.progress.clone(),
                started: Instant::now(),
            },
            cancel: self.cancel.clone(),
            created,
        })
    }

    async fn guard(&self, phase: Phase) -> Result<()> {
        if let Some(g) = &self.guard {
            g.before_phase(&self.spec.id, phase)
                .await
                .map_err(|source| Error::MoveGuardRejected {
                    id: self.spec.id.clone(),
                    phase: phase.as_str(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Runs the move to the end: a first run, or a resume from whatever
    /// state the last run (or crash) left. A cancel (through the token)
    /// before the switch undoes the move.
    ///
    /// # Errors
    /// [`Error::MoveConflict`] when another executor runs the move, its
    /// shards are claimed elsewhere or not on the source, or the stored
    /// spec differs; [`Error::MoveCancelled`] after a cancel;
    /// [`Error::MoveVerifyFailed`]; [`Error::MoveGuardRejected`];
    /// [`Error::MoveFailed`] naming the phase and step (running again
    /// resumes).
    pub async fn run(&self) -> Result<MoveReport> {
        let started = Instant::now();
        let _lock = self.lock().await?;
        let id = &self.spec.id;
        let row = match self.store.load_move(id).await? {
            Some(row) => row,
            None => {
                self.store
                    .create_move(
                        id,
                        &self.spec.fingerprint(),
                        &self.spec.shards,
                        &self.spec.source.node_set,
                    )
                    .await?;
                self.store
                    .load_move(id)
                    .await?
                    .ok_or_else(|| Error::MoveConflict {
                        id: id.clone(),
                        reason: "the move's row vanished after it was created".into(),
                    })?
            }
        };
        if row.spec != self.spec.fingerprint() || row.map != self.store.name() {
            return Err(Error::MoveConflict {
                id: id.clone(),
                reason: format!(
                    "it was started as {} on map {:?}, not {} on map {:?}",
                    row.spec,
                    row.map,
                    self.spec.fingerprint(),
                    self.store.name()
                ),
            });
        }
        if row.state == MoveState::Cancelled {
            return Err(self.cancelled_err());
        }
        let mut report = MoveReport {
            move_id: id.clone(),
            state: row.state,
            resumed_from: (row.state != MoveState::Planned).then_some(row.state),
            rows_copied: row.rows_copied,
            copy_time: Duration::ZERO,
            cut_pause: Duration::ZERO,
            fence_pause: Duration::ZERO,
            fence_attempts: 0,
            switch_epoch: row.switch_epoch,
            checks: Vec::new(),
            elapsed: Duration::ZERO,
        };
        if row.state == MoveState::VerifyFailed {
            return Err(Error::MoveVerifyFailed {
                id: id.clone(),
                mismatches: vec![
                    "an earlier run failed verification; the source rows were kept".into(),
                ],
            });
        }
        let mut run = self.open(row.created_tables.clone()).await?;
        let mut state = row.state;
        let result = self.drive(&mut run, &mut state, &mut report).await;
        report.state = state;
        report.elapsed = started.elapsed();
        match result {
            Ok(()) => Ok(report),
            Err(Error::MoveCancelled { .. }) if state.cancellable() => {
                run.undo(state).await?;
                Err(self.cancelled_err())
            }
            Err(e) => {
                let _ = self.store.set_error(id, &render(&e)).await;
                Err(e)
            }
        }
    }

    async fn drive(
        &self,
        run: &mut Run<'_>,
        state: &mut MoveState,
        report: &mut MoveReport,
    ) -> Result<()> {
        while let Some(phase) = state.resume_phase() {
            if self.cancel.is_cancelled() && state.cancellable() {
                return Err(self.cancelled_err());
            }
            self.guard(phase).await?;
            run.report
                .emit(phase, report.rows_copied, report.rows_copied, None, None);
            match phase {
                Phase::Prepare => {
                    run.prepare().await?;
                    *state = MoveState::Prepared;
                }
                Phase::Copy => {
                    let stats = run.copy().await?;
                    report.rows_copied = stats.rows;
                    report.copy_time = stats.elapsed;
                    report.cut_pause = stats.cut_pause;
                    *state = MoveState::CatchingUp;
                }
                Phase::CatchUp | Phase::Switch => {
                    if phase == Phase::CatchUp {
                        run.catch_up().await?;
                        self.guard(Phase::Switch).await?;
                    }
                    let switched = run.switch(self).await?;
                    report.fence_pause = switched.pause;
                    report.fence_attempts = switched.attempts;
                    report.switch_epoch = Some(switched.epoch);
                    *state = MoveState::Switched;
                }
                Phase::Verify => {
                    // A crash right after the switch may have left the
                    // guards saying "fenced".
                    if let Some(epoch) = report.switch_epoch {
                        run.mark_moved(epoch).await?;
                    }
                    report.checks = run.verify().await?;
                    let bad: Vec<String> = report
                        .mismatches()
                        .map(|c| {
                            format!(
                                "{} ({}): source {} rows / {}, target {} rows / {}",
                                c.table,
                                c.shard,
                                c.source_rows,
                                c.source_checksum,
                                c.target_rows,
                                c.target_checksum
                            )
                        })
                        .collect();
                    if !bad.is_empty() {
                        self.store
                            .set_state(&self.spec.id, MoveState::VerifyFailed)
                            .await?;
                        *state = MoveState::VerifyFailed;
                        return Err(Error::MoveVerifyFailed {
                            id: self.spec.id.clone(),
                            mismatches: bad,
                        });
                    }
                    self.store
                        .set_state(&self.spec.id, MoveState::Verified)
                        .await?;
                    *state = MoveState::Verified;
                }
                Phase::Cleanup => {
                    run.cleanup().await?;
                    *state = MoveState::Done;
                }
                Phase::Cancel | Phase::Done => break,
            }
        }
        run.report.emit(
            Phase::Done,
            report.rows_copied,
            report.rows_copied,
            None,
            None,
        );
        Ok(())
    }

    /// `switch` needs the guard between its fence attempts.
    pub(crate) async fn check_guard(&self, phase: Phase) -> Result<()> {
        self.guard(phase).await
    }

    fn cancelled_err(&self) -> Error {
        Error::MoveCancelled {
            id: self.spec.id.clone(),
        }
    }

    /// Undoes a move that is not running (e.g. after its executor crashed):
    /// the source stays authoritative, the target's rows, tables created by
    /// the move and replication objects are removed, the shards are
    /// released. A no-op for a move already cancelled.
    ///
    /// # Errors
    /// [`Error::MovePastSwitch`] after the switch; [`Error::MoveConflict`]
    /// when an executor is running it (use its [`CancelToken`]) or the move
    /// does not exist; database errors.
    pub async fn cancel(&self) -> Result<()> {
        let _lock = self.lock().await?;
        let Some(row) = self.store.load_move(&self.spec.id).await? else {
            return Err(Error::MoveConflict {
                id: self.spec.id.clone(),
                reason: "no such move".into(),
            });
        };
        if row.state == MoveState::Cancelled {
            return Ok(());
        }
        if !row.state.cancellable() {
            return Err(Error::MovePastSwitch {
                id: self.spec.id.clone(),
                phase: row.state.as_str(),
            });
        }
        let run = self.open(row.created_tables).await?;
        run.undo(row.state).await
    }
}

/// An error with its causes, for the stored `error` column.
fn render(e: &Error) -> String {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
