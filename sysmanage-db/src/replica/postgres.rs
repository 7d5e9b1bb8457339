//! The PostgreSQL backend: one `sqlx::PgPool` per node.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use sysmanage_core::{BoxError, ConnectionUrl};

use super::config::{NodeSpec, invalid};
use super::lsn::Lsn;
use super::pool::{NodePool, PoolStats, Probe, QueryError};
use crate::error::Result;

/// The monitor's one query per node: role, WAL positions, replay age.
///
/// The primary's position is its *flush* position: that is what standbys
/// receive and replay. The insert position can point past a page header
/// (after a segment switch on an idle primary, 40 bytes past the replay
/// position every standby stops at), which would make every replica look
/// behind forever. Tokens use the insert position (see `current_wal_lsn`).
const PROBE_SQL: &str = "select pg_is_in_recovery(), \
     case when pg_is_in_recovery() then null else pg_current_wal_flush_lsn()::text end, \
     pg_last_wal_replay_lsn()::text, \
     extract(epoch from (clock_timestamp() - pg_last_xact_replay_timestamp()))::float8";

impl NodePool for PgPool {
    /// Runs the probe on a connection of its own, opened for the probe and
    /// closed after it (as Pgpool-II's health check does): a saturated pool
    /// cannot delay it, and a server that refuses connections fails it at
    /// once instead of after the pool's connect retries.
    async fn probe(&self) -> std::result::Result<Probe, BoxError> {
        let mut conn = self.connect_options().connect().await?;
        let row: (bool, Option<String>, Option<String>, Option<f64>) =
            sqlx::query_as(PROBE_SQL).fetch_one(&mut conn).await?;
        // Closing politely is best effort; the server cleans up either way.
        let _ = conn.close().await;
        let (in_recovery, current, replay, age) = row;
        let parse = |s: Option<String>| s.map(|s| s.parse::<Lsn>()).transpose();
        let current = parse(current)?;
        let replay = parse(replay)?;
        let age = age
            .filter(|a| a.is_finite())
            .map(|a| Duration::from_secs_f64(a.max(0.0)));
        Ok(match (in_recovery, current) {
            (false, Some(lsn)) => Probe::primary(lsn),
            (false, None) => return Err("primary returned no wal position".into()),
            (true, _) => Probe::replica(replay.unwrap_or(Lsn::ZERO), age),
        })
    }

    async fn replay_lsn(&self) -> std::result::Result<Option<Lsn>, BoxError> {
        let text: Option<String> = sqlx::query_scalar(
            "select case when pg_is_in_recovery() then pg_last_wal_replay_lsn()::text end",
        )
        .fetch_one(self)
        .await?;
        Ok(text.map(|t| t.parse()).transpose()?)
    }

    async fn current_wal_lsn(&self) -> std::result::Result<Lsn, BoxError> {
        let text: String = sqlx::query_scalar("select pg_current_wal_insert_lsn()::text")
            .fetch_one(self)
            .await?;
        Ok(text.parse()?)
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.size(),
            idle: u32::try_from(self.num_idle()).unwrap_or(u32::MAX),
        }
    }
}

impl QueryError for sqlx::Error {
    /// I/O, TLS, protocol and pool failures, and the SQLSTATEs of class 08
    /// (connection exception) and 57P01–57P03 (server shutting down or
    /// starting).
    fn is_connection_error(&self) -> bool {
        match self {
            Self::Io(_)
            | Self::Tls(_)
            | Self::Protocol(_)
            | Self::PoolTimedOut
            | Self::PoolClosed
            | Self::WorkerCrashed => true,
            Self::Database(db) => db
                .code()
                .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
            _ => false,
        }
    }

    /// Not for [`PoolTimedOut`](sqlx::Error::PoolTimedOut): a saturated
    /// pool is retried elsewhere but does not ban a node that answers its
    /// probes (an unreachable one fails them and is banned that way).
    fn bans_node(&self) -> bool {
        self.is_connection_error() && !matches!(self, Self::PoolTimedOut)
    }

    /// SQLSTATE 25006, `read_only_sql_transaction`.
    fn is_read_only_error(&self) -> bool {
        matches!(self, Self::Database(db) if db.code().as_deref() == Some("25006"))
    }
}

/// Pool settings for one PostgreSQL node.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgNodeOptions {
    /// Largest number of connections. Default: 10. Must be at least 1.
    pub max_connections: u32,
    /// Connections kept open. Default: 0.
    pub min_connections: u32,
    /// How long a query waits for a connection (this also bounds connecting
    /// to a node that is down). Default: 2 s.
    pub acquire_timeout: Duration,
    /// Idle connections are closed after this. Default: 10 min.
    pub idle_timeout: Option<Duration>,
}

impl Default for PgNodeOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(2),
            idle_timeout: Some(Duration::from_secs(600)),
        }
    }
}

impl PgNodeOptions {
    /// The sqlx pool options these settings describe.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for zero
    /// `max_connections` or `acquire_timeout`, or `min_connections` above
    /// `max_connections`.
    pub fn pool_options(&self) -> Result<PgPoolOptions> {
        if self.max_connections == 0 {
            return Err(invalid("max_connections", "pool size must be at least 1"));
        }
        if self.min_connections > self.max_connections {
            return Err(invalid(
                "min_connections",
                format!(
                    "{} is above max_connections ({})",
                    self.min_connections, self.max_connections
                ),
            ));
        }
        if self.acquire_timeout.is_zero() {
            return Err(invalid("acquire_timeout", "must be greater than zero"));
        }
        Ok(PgPoolOptions::new()
            .max_connections(self.max_connections)
            .min_connections(self.min_connections)
            .acquire_timeout(self.acquire_timeout)
            .idle_timeout(self.idle_timeout))
    }
}

/// A PostgreSQL node for [`ReplicaRouterBuilder::primary`] /
/// [`replica`](super::ReplicaRouterBuilder::replica): a lazily connecting
/// `PgPool` for `url`. Connecting lazily is what lets the router start with a
/// node down; the first probe bans it.
///
/// [`ReplicaRouterBuilder::primary`]: super::ReplicaRouterBuilder::primary
///
/// # Errors
/// [`Error::InvalidConfig`](crate::Error::InvalidConfig) when `url` does not
/// parse (the message shows it redacted), the options are invalid, or there
/// is no tokio runtime to run the pool on.
///
/// # Examples
/// ```
/// use sysmanage_db::replica::{PgNodeOptions, pg_node};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sysmanage_db::Error> {
/// let spec = pg_node("standby1", "postgres://app:s3cret@127.0.0.1:25433/app", &PgNodeOptions::default())?;
/// assert_eq!(spec.name(), "standby1");
/// assert!(!format!("{spec:?}").contains("s3cret")); // the URL is redacted
/// let mut bad = PgNodeOptions::default();
/// bad.max_connections = 0;
/// assert!(pg_node("x", "postgres://127.0.0.1/app", &bad).is_err());
/// # Ok(())
/// # }
/// ```
pub fn pg_node(
    name: impl Into<String>,
    url: impl Into<ConnectionUrl>,
    options: &PgNodeOptions,
) -> Result<NodeSpec<PgPool>> {
    pg_node_with(name, url, options.pool_options()?)
}

/// As [`pg_node`], with sqlx pool options of your own.
///
/// # Errors
/// As [`pg_node`].
pub fn pg_node_with(
    name: impl Into<String>,
    url: impl Into<ConnectionUrl>,
    options: PgPoolOptions,
) -> Result<NodeSpec<PgPool>> {
    let name = name.into();
    let url = url.into();
    if tokio::runtime::Handle::try_current().is_err() {
        // sqlx starts the pool's maintenance task right away.
        return Err(invalid(
            "runtime",
            format!("node {name:?}: pools must be created inside a tokio runtime"),
        ));
    }
    if options.get_max_connections() == 0 {
        return Err(invalid(
            "max_connections",
            format!("node {name:?}: pool size must be at least 1"),
        ));
    }
    let connect = PgConnectOptions::from_str(url.expose()).map_err(|_| {
        invalid(
            "url",
            format!(
                "node {name:?}: cannot parse connection url {}",
                url.redacted()
            ),
        )
    })?;
    let pool = options.connect_lazy_with(connect);
    Ok(NodeSpec::new(name, pool).url(url))
}
