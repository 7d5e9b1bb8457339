//! Catch-up: the target's subscription applies what changed since the cut,
//! until it is less than `max_lag_bytes` of WAL behind.

use std::time::{Duration, Instant};

use super::executor::Run;
use super::phase::Phase;
use super::progress::lag_eta;
use super::sql::{quote_ident, quote_literal};
use crate::{Error, Result};

impl Run<'_> {
    /// Creates (or re-enables) the subscription: no slot of its own (the
    /// slot was made and advanced at the cut; a subscription to a database in
    /// the same cluster could not make one anyway) and no copy.
    pub(crate) async fn ensure_subscription(&self) -> Result<()> {
        self.ensure_publication().await?;
        let enabled: Option<bool> =
            sqlx::query_scalar("SELECT subenabled FROM pg_subscription WHERE subname = $1")
                .bind(&self.name)
                .fetch_optional(&self.target)
                .await
                .map_err(self.fail(Phase::CatchUp, "read subscriptions"))?;
        match enabled {
            Some(true) => Ok(()),
            Some(false) => {
                self.exec_target(
                    "enable subscription",
                    &format!("ALTER SUBSCRIPTION {} ENABLE", quote_ident(&self.name)),
                )
                .await
            }
            None => {
                self.exec_target(
                    "create subscription",
                    &format!(
                        "CREATE SUBSCRIPTION {n} CONNECTION {c} PUBLICATION {n} \
                         WITH (create_slot = false, slot_name = {s}, copy_data = false, enabled = true)",
                        n = quote_ident(&self.name),
                        c = quote_literal(&self.spec.source.url),
                        s = quote_literal(&self.name)
                    ),
                )
                .await
            }
        }
    }

    /// Bytes of source WAL the subscription has not confirmed, and whether
    /// its walsender is connected.
    pub(crate) async fn lag(&self) -> Result<(u64, bool)> {
        let row: Option<(Option<i64>, bool)> = sqlx::query_as(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(r.flush_lsn, s.confirmed_flush_lsn))::bigint, s.active \
             FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid \
             WHERE s.slot_name = $1",
        )
        .bind(&self.name)
        .fetch_optional(&self.source)
        .await
        .map_err(self.fail(Phase::CatchUp, "read lag"))?;
        let Some((lag, active)) = row else {
            return Err(Error::MoveFailed {
                id: self.spec.id.clone(),
                phase: Phase::CatchUp.as_str(),
                step: "read lag",
                source: format!("replication slot {} is missing on the source", self.name).into(),
            });
        };
        Ok((lag.unwrap_or(0).max(0) as u64, active))
    }

    /// Waits until the lag is at most `max_lag_bytes`.
    pub(crate) async fn catch_up(&self) -> Result<()> {
        self.ensure_subscription().await?;
        let started = Instant::now();
        let mut last_report = Instant::now();
        let mut previous: Option<(u64, Instant)> = None;
        loop {
            if self.cancel.is_cancelled() {
                return Err(self.cancelled());
            }
            let (lag, active) = self.lag().await?;
            if last_report.elapsed() >= self.opts.progress_interval
                || lag <= self.opts.max_lag_bytes
            {
                let eta = previous.and_then(|(p, t)| lag_eta(p, lag, t.elapsed()));
                self.report.emit(Phase::CatchUp, 0, 0, Some(lag), eta);
                previous = Some((lag, Instant::now()));
                last_report = Instant::now();
            }
            if active && lag <= self.opts.max_lag_bytes {
                return Ok(());
            }
            if started.elapsed() > self.opts.catch_up_timeout {
                return Err(Error::MoveFailed {
                    id: self.spec.id.clone(),
                    phase: Phase::CatchUp.as_str(),
                    step: "wait for lag",
                    source: format!(
                        "still {lag} bytes behind (walsender connected: {active}) after {:?}; see the target's server log",
                        self.opts.catch_up_timeout
                    )
                    .into(),
                });
            }
            tokio::time::sleep(self.opts.poll_interval.max(Duration::from_millis(1))).await;
        }
    }
}
