//! Verification: per table and shard, row count and checksum of the source
//! (frozen by its guard since the fence) against the target as it was at
//! the switch (its rows now, minus what the delta trigger logged since).

use sqlx::{AssertSqlSafe, Connection};

use super::executor::Run;
use super::phase::Phase;
use super::report::TableCheck;
use super::sql::{checksum_at_switch_sql, checksum_sql};
use crate::Result;

impl Run<'_> {
    pub(crate) async fn verify(&self) -> Result<Vec<TableCheck>> {
        let mut out = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            self.report.emit(Phase::Verify, 0, 0, None, None);
            let (source_rows, source_checksum): (i64, String) =
                sqlx::query_as(AssertSqlSafe(checksum_sql(&p.table)))
                    .fetch_one(&self.source)
                    .await
                    .map_err(self.fail(Phase::Verify, "checksum source"))?;
            // Rows and delta log from one snapshot.
            let mut conn = self
                .target
                .acquire()
                .await
                .map_err(self.fail(Phase::Verify, "connect"))?;
            let mut tx = conn
                .begin()
                .await
                .map_err(self.fail(Phase::Verify, "begin"))?;
            sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await
                .map_err(self.fail(Phase::Verify, "isolation"))?;
            let (target_rows, target_checksum): (i64, String) =
                sqlx::query_as(AssertSqlSafe(checksum_at_switch_sql(&p.table)))
                    .bind(&self.spec.id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(self.fail(Phase::Verify, "checksum target"))?;
            tx.commit().await.map_err(self.fail(Phase::Verify, "end"))?;
            out.push(TableCheck {
                table: p.table.to_string(),
                shard: p.shard,
                source_rows: source_rows.max(0) as u64,
                target_rows: target_rows.max(0) as u64,
                source_checksum,
                target_checksum,
            });
        }
        Ok(out)
    }
}
