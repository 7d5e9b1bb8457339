//! The prepare phase: helper objects on both sides, the target's tables
//! (copied from the source or the host's DDL), the move's markers.

use sqlx::AssertSqlSafe;

use super::catalog::{self, Partition};
use super::executor::Run;
use super::phase::{MoveState, Phase};
use super::spec::SchemaSource;
use super::sql::NODE_SET_DDL;
use super::store::install;
use crate::{Error, Result};

impl Run<'_> {
    /// Helper objects on both sides, the target's tables, the markers.
    pub(crate) async fn prepare(&mut self) -> Result<()> {
        install(
            &self.source,
            NODE_SET_DDL,
            "install helper objects on the source",
        )
        .await?;
        install(
            &self.target,
            NODE_SET_DDL,
            "install helper objects on the target",
        )
        .await?;
        match &self.spec.schema {
            SchemaSource::Ddl(stmts) => {
                let missing = self.missing_partitions().await?;
                if !missing.is_empty() {
                    let mut tx = self
                        .target
                        .begin()
                        .await
                        .map_err(self.fail(Phase::Prepare, "begin ddl"))?;
                    for s in stmts {
                        sqlx::raw_sql(AssertSqlSafe(s.clone()))
                            .execute(&mut *tx)
                            .await
                            .map_err(self.fail(Phase::Prepare, "run host ddl"))?;
                    }
                    tx.commit()
                        .await
                        .map_err(self.fail(Phase::Prepare, "commit host ddl"))?;
                    let still = self.missing_partitions().await?;
                    if let Some(p) = still.first() {
                        return Err(Error::InvalidConfig {
                            field: "schema",
                            reason: format!("the host DDL did not create {p} on the target"),
                        });
                    }
                }
            }
            SchemaSource::CopyFromSource => {
                let mut parents: Vec<Partition> = Vec::new();
                for p in &self.parts {
                    if !parents.iter().any(|q| q.parent == p.parent) {
                        parents.push(p.clone());
                    }
                }
                for p in parents {
                    let exists = catalog::exists(&self.target, &p.parent)
                        .await
                        .map_err(self.fail(Phase::Prepare, "inspect target"))?;
                    if !exists {
                        let ddl = catalog::parent_ddl(&self.source, &p.parent).await?;
                        let mut tx = self
                            .target
                            .begin()
                            .await
                            .map_err(self.fail(Phase::Prepare, "begin ddl"))?;
                        for s in ddl {
                            sqlx::raw_sql(AssertSqlSafe(s))
                                .execute(&mut *tx)
                                .await
                                .map_err(self.fail(Phase::Prepare, "create parent table"))?;
                        }
                        tx.commit()
                            .await
                            .map_err(self.fail(Phase::Prepare, "commit parent table"))?;
                        self.record_created(&p.parent.to_string()).await?;
                    }
                }
                for p in self.parts.clone() {
                    let exists = catalog::exists(&self.target, &p.table)
                        .await
                        .map_err(self.fail(Phase::Prepare, "inspect target"))?;
                    if !exists {
                        self.exec_target(
                            "create partition",
                            &super::sql::create_partition_sql(
                                &p.table, &p.parent, p.modulus, p.shard.0,
                            ),
                        )
                        .await?;
                        self.record_created(&p.table.to_string()).await?;
                    }
                }
            }
        }
        for p in &self.parts {
            let has = catalog::has_rows(&self.target, &p.table)
                .await
                .map_err(self.fail(Phase::Prepare, "inspect target"))?;
            if has {
                return Err(Error::MoveConflict {
                    id: self.spec.id.clone(),
                    reason: format!("{} already has rows on the target", p.table),
                });
            }
        }
        for pool in [&self.source, &self.target] {
            sqlx::query("INSERT INTO sysmanage.move_markers (move_id, seq) VALUES ($1, 0) ON CONFLICT DO NOTHING")
                .bind(&self.spec.id)
                .execute(pool)
                .await
                .map_err(self.fail(Phase::Prepare, "create marker"))?;
        }
        self.store
            .set_state(&self.spec.id, MoveState::Prepared)
            .await
    }

    async fn missing_partitions(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for p in &self.parts {
            if !catalog::exists(&self.target, &p.table)
                .await
                .map_err(self.fail(Phase::Prepare, "inspect target"))?
            {
                out.push(p.table.to_string());
            }
        }
        Ok(out)
    }

    async fn record_created(&mut self, table: &str) -> Result<()> {
        self.store.add_created(&self.spec.id, table).await?;
        self.created.push(table.to_owned());
        Ok(())
    }
}
