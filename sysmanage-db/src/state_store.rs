//! [`PgStateStore`]: a [`StateStore`] in a PostgreSQL table, fenced by
//! token in the same statement that writes.
//!
//! `sysmanage_state(key text primary key, token bigint, value bytea)`:
//! a claim raises `token` (never lowers it) and returns `value`; a save
//! writes both, only while the stored token is not newer than the saving
//! term's. The row lives on the primary and is as durable as any other
//! committed row.

use std::str::FromStr;

use sqlx::ConnectOptions;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sysmanage_core::lease::{Fenced, FencingToken, StateStore};
use sysmanage_core::{BoxError, ConnectionUrl};

use crate::error::{Error, Result};

/// The table of [`PgStateStore`].
pub const STATE_TABLE: &str = "sysmanage_state";

const SCHEMA: &str = "create table if not exists sysmanage_state (
    key text primary key,
    token bigint not null,
    value bytea)";

const CLAIM: &str = "insert into sysmanage_state as s (key, token) values ($1, $2)
    on conflict (key) do update set token = excluded.token where s.token <= excluded.token
    returning value";

const SAVE: &str = "insert into sysmanage_state as s (key, token, value) values ($1, $2, $3)
    on conflict (key) do update set token = excluded.token, value = excluded.value
    where s.token <= excluded.token";

fn token_of(token: FencingToken) -> std::result::Result<i64, BoxError> {
    i64::try_from(token.get())
        .map_err(|_| format!("fencing token {token} does not fit PostgreSQL's bigint").into())
}

fn token_from(v: i64) -> std::result::Result<FencingToken, BoxError> {
    Ok(FencingToken::new(u64::try_from(v)?))
}

/// A [`StateStore`] on PostgreSQL; see the [module docs](self).
///
/// # Examples
/// ```no_run
/// use sysmanage_core::lease::{FencingToken, StateStore};
/// use sysmanage_db::state_store::PgStateStore;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let store = PgStateStore::connect("postgres://app@db/app").await?;
/// store.save("autoscaler/web", FencingToken::new(3), b"{}").await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PgStateStore {
    pool: PgPool,
}

impl PgStateStore {
    /// A store on the database at `url` (a pool of at most 4
    /// connections). Creates the table if it does not exist.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad URL; [`Error::Query`] when the
    /// database cannot be reached or the table not created.
    pub async fn connect(url: &str) -> Result<Self> {
        let shown = ConnectionUrl::new(url);
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| Error::InvalidConfig {
                field: "stateStore.url",
                reason: format!("{shown}: {e}"),
            })?
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| Error::Query {
                node: shown.to_string(),
                connection: true,
                source: e.into(),
            })?;
        Self::with_pool(pool).await
    }

    /// A store on `pool`. Creates the table if it does not exist.
    ///
    /// # Errors
    /// [`Error::Query`] when the table cannot be created.
    pub async fn with_pool(pool: PgPool) -> Result<Self> {
        let mut conn = pool.acquire().await.map_err(|e| Error::Query {
            node: "state store".to_owned(),
            connection: true,
            source: e.into(),
        })?;
        crate::lease::ensure_schema(&mut conn, SCHEMA)
            .await
            .map_err(|e| Error::Query {
                node: "state store".to_owned(),
                connection: false,
                source: e.into(),
            })?;
        Ok(Self { pool })
    }

    async fn newest(&self, key: &str) -> std::result::Result<FencingToken, BoxError> {
        let t: i64 = sqlx::query_scalar("select token from sysmanage_state where key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await?;
        token_from(t)
    }
}

#[async_trait::async_trait]
impl StateStore for PgStateStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn claim(
        &self,
        key: &str,
        token: FencingToken,
    ) -> std::result::Result<Fenced<Option<Vec<u8>>>, BoxError> {
        let row: Option<Option<Vec<u8>>> = sqlx::query_scalar(CLAIM)
            .bind(key)
            .bind(token_of(token)?)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(value) => Ok(Fenced::Applied(value)),
            None => Ok(Fenced::Stale {
                newest: self.newest(key).await?,
            }),
        }
    }

    async fn save(
        &self,
        key: &str,
        token: FencingToken,
        value: &[u8],
    ) -> std::result::Result<Fenced<()>, BoxError> {
        let n = sqlx::query(SAVE)
            .bind(key)
            .bind(token_of(token)?)
            .bind(value)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 1 {
            Ok(Fenced::Applied(()))
        } else {
            Ok(Fenced::Stale {
                newest: self.newest(key).await?,
            })
        }
    }

    async fn load(
        &self,
        key: &str,
    ) -> std::result::Result<Option<(FencingToken, Vec<u8>)>, BoxError> {
        let row: Option<(i64, Option<Vec<u8>>)> =
            sqlx::query_as("select token, value from sysmanage_state where key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some((t, Some(v))) => Ok(Some((token_from(t)?, v))),
            _ => Ok(None),
        }
    }
}
