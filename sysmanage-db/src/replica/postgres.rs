//! The PostgreSQL backend: one `sqlx::PgPool` per node.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use sysmanage_core::{BoxError, ConnectionUrl, Secret, TlsConfig};

use super::config::{NodeSpec, invalid};
use super::failure::FailureClass;
use super::lsn::Lsn;
use super::pool::{NodePool, PoolStats, Probe};
use super::timeline::{TimelineHistory, TimelineId, WalToken};
use crate::error::Result;
use sysmanage_core::duration::{DAY, MILLISECOND, check_count, check_duration};

/// The monitor's one query per node: role, WAL positions, replay age and
/// timelines.
///
/// The primary's position is its *flush* position: that is what standbys
/// receive and replay. The insert position can point past a page header
/// (after a segment switch on an idle primary, 40 bytes past the replay
/// position every standby stops at), which would make every replica look
/// behind forever. Tokens use the insert position (see `wal_token`).
///
/// Timelines: a primary's is the first eight hex digits of
/// `pg_walfile_name()` (the insert timeline; `pg_control_checkpoint()` lags
/// behind a promotion until the next checkpoint). A standby's exact one is
/// its WAL receiver's `received_tli`, visible to `pg_read_all_stats`; every
/// role can read the restartpoint's timeline, a lower bound. A receiver row
/// exists while the receiver runs (its details need `pg_read_all_stats`).
const PROBE_SQL: &str = "select pg_is_in_recovery(), \
     case when pg_is_in_recovery() then null else pg_current_wal_flush_lsn()::text end, \
     pg_last_wal_replay_lsn()::text, \
     extract(epoch from (clock_timestamp() - pg_last_xact_replay_timestamp()))::float8, \
     case when pg_is_in_recovery() then null \
          else substr(pg_walfile_name(pg_current_wal_flush_lsn()), 1, 8) end, \
     (select received_tli::int8 from pg_stat_wal_receiver limit 1), \
     (select timeline_id::int8 from pg_control_checkpoint()), \
     (select coalesce(status = 'streaming', true) from pg_stat_wal_receiver limit 1)";

/// A token: the insert position and the insert timeline, read together.
const TOKEN_SQL: &str = "select pg_current_wal_insert_lsn()::text, \
     substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8)";

type ProbeRow = (
    bool,
    Option<String>,
    Option<String>,
    Option<f64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<bool>,
);

fn timeline_of(n: Option<i64>) -> Option<TimelineId> {
    n.and_then(|n| u32::try_from(n).ok())
        .and_then(TimelineId::new)
}

fn timeline_of_hex(text: &str) -> std::result::Result<TimelineId, BoxError> {
    u32::from_str_radix(text, 16)
        .ok()
        .and_then(TimelineId::new)
        .ok_or_else(|| format!("unexpected timeline {text:?} in a wal file name").into())
}

impl NodePool for PgPool {
    /// Runs the probe on a connection of its own, opened for the probe and
    /// closed after it (as Pgpool-II's health check does): a saturated pool
    /// cannot delay it, and a server that refuses connections fails it at
    /// once instead of after the pool's connect retries.
    async fn probe(&self) -> std::result::Result<Probe, BoxError> {
        let mut conn = self.connect_options().connect().await?;
        let row: ProbeRow = sqlx::query_as(PROBE_SQL).fetch_one(&mut conn).await?;
        // Closing politely is best effort; the server cleans up either way.
        let _ = conn.close().await;
        let (
            in_recovery,
            current,
            replay,
            age,
            primary_tli,
            received_tli,
            checkpoint_tli,
            streaming,
        ) = row;
        let parse = |s: Option<String>| s.map(|s| s.parse::<Lsn>()).transpose();
        let current = parse(current)?;
        let replay = parse(replay)?;
        let age = age
            .filter(|a| a.is_finite())
            .map(|a| Duration::from_secs_f64(a.clamp(0.0, 1e9)));
        Ok(match (in_recovery, current, primary_tli) {
            (false, Some(lsn), Some(tli)) => {
                Probe::primary(lsn).with_timeline(timeline_of_hex(&tli)?)
            }
            (false, _, _) => return Err("primary returned no wal position".into()),
            (true, _, _) => {
                let mut p = Probe::replica(replay.unwrap_or(Lsn::ZERO), age)
                    .with_streaming(streaming.unwrap_or(false));
                if let Some(t) = timeline_of(received_tli) {
                    p = p.with_timeline(t);
                }
                if let Some(t) = timeline_of(checkpoint_tli) {
                    p = p.with_min_timeline(t);
                }
                p
            }
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

    async fn wal_token(&self) -> std::result::Result<WalToken, BoxError> {
        let (lsn, tli): (String, String) = sqlx::query_as(TOKEN_SQL).fetch_one(self).await?;
        Ok(WalToken::new(lsn.parse()?, timeline_of_hex(&tli)?))
    }

    /// Reads `pg_wal/<timeline>.history` with `pg_read_file`, which needs
    /// superuser, `pg_read_server_files`, or `EXECUTE` on
    /// `pg_read_file(text, bigint, bigint, boolean)` granted to the role.
    /// Without it the router still never serves a stale read; replicas on
    /// an earlier timeline just serve nothing after a promotion until they
    /// follow the new primary.
    async fn timeline_history(
        &self,
        timeline: TimelineId,
    ) -> std::result::Result<Option<TimelineHistory>, BoxError> {
        if timeline.get() == 1 {
            return Ok(Some(TimelineHistory::root(timeline)));
        }
        let text: Option<String> = sqlx::query_scalar("select pg_read_file($1, 0, 1048576, true)")
            .bind(format!("pg_wal/{:08X}.history", timeline.get()))
            .fetch_one(self)
            .await?;
        Ok(text
            .map(|t| TimelineHistory::parse(timeline, &t))
            .transpose()?)
    }

    async fn close(&self) {
        PgPool::close(self).await;
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.size(),
            idle: u32::try_from(self.num_idle()).unwrap_or(u32::MAX),
        }
    }
}

/// How the router classifies a sqlx error: I/O, TLS, protocol and pool
/// failures and the SQLSTATEs of class 08 (connection exception) and
/// 57P01–57P03 (server shutting down or starting) are connection-level; a
/// pool timeout is saturation (retried elsewhere without banning a node
/// that answers its probes); SQLSTATE 25006 (`read_only_sql_transaction`)
/// is a write on a node in recovery.
pub(super) fn classify_sqlx(e: &sqlx::Error) -> FailureClass {
    match e {
        sqlx::Error::PoolTimedOut => FailureClass::Saturated,
        sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => FailureClass::Rejected,
        sqlx::Error::Io(io) if super::failure::is_tls_failure(io) => FailureClass::Rejected,
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => FailureClass::Connection,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("25006") => FailureClass::ReadOnly,
            // invalid_authorization_specification, invalid_password, …
            Some(c) if c.starts_with("28") => FailureClass::Rejected,
            Some(c) if c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03") => {
                FailureClass::Connection
            }
            _ => FailureClass::Query,
        },
        _ => FailureClass::Query,
    }
}

/// Pool, login and TLS settings for one PostgreSQL node.
///
/// # Examples
/// ```
/// use sysmanage_core::{Pem, Secret, TlsConfig};
/// use sysmanage_db::replica::PgNodeOptions;
///
/// let mut options = PgNodeOptions::default();
/// options.password = Some(Secret::new("s3cret"));
/// options.tls = Some(TlsConfig::verify_full().ca(Pem::file("/etc/sysmanage/db-ca.crt")));
/// assert!(!format!("{options:?}").contains("s3cret"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct PgNodeOptions {
    /// Largest number of connections. Default: 10. Range: 1 – 10,000.
    pub max_connections: u32,
    /// Connections kept open. Default: 0.
    pub min_connections: u32,
    /// How long a query waits for a connection (this also bounds connecting
    /// to a node that is down). Default: 2 s. Range: 1 ms – 1 day.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub acquire_timeout: Duration,
    /// Idle connections are closed after this. Default: 10 min. Range:
    /// 1 ms – 1 day.
    #[serde(with = "sysmanage_core::duration::serde_human_opt")]
    pub idle_timeout: Option<Duration>,
    /// Password of the URL's user, kept out of the URL (and so out of
    /// every place a URL is shown). Overrides a password in the URL.
    /// Default: none. Never printed, never serialised.
    #[serde(skip_serializing)]
    pub password: Option<Secret>,
    /// TLS to the node, for its pool and the monitor's probes alike:
    /// `require`, `verify-ca` or `verify-full` (the default) with a CA (the
    /// platform's trust store when none) and an optional client
    /// certificate. Overrides `sslmode`, `sslrootcert`, `sslcert` and
    /// `sslkey` in the URL; without it those URL parameters apply. Needs
    /// the `postgres-tls` feature. The files are read when the node is
    /// created. `server_name` is refused: PostgreSQL's `verify-full` checks
    /// the host connected to. Default: none.
    pub tls: Option<TlsConfig>,
}

impl Default for PgNodeOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(2),
            idle_timeout: Some(Duration::from_secs(600)),
            password: None,
            tls: None,
        }
    }
}

impl PgNodeOptions {
    /// The sqlx pool options these settings describe.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for
    /// `max_connections` outside 1–10,000, `min_connections` above
    /// `max_connections`, or `acquire_timeout` / `idle_timeout` outside
    /// 1 ms – 1 day.
    pub fn pool_options(&self) -> Result<PgPoolOptions> {
        check_count("max_connections", self.max_connections, 1, 10_000)?;
        check_duration("acquire_timeout", self.acquire_timeout, MILLISECOND, DAY)?;
        if let Some(idle) = self.idle_timeout {
            check_duration("idle_timeout", idle, MILLISECOND, DAY)?;
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
        Ok(PgPoolOptions::new()
            .max_connections(self.max_connections)
            .min_connections(self.min_connections)
            .acquire_timeout(self.acquire_timeout)
            .idle_timeout(self.idle_timeout))
    }

    /// The sqlx connection options of `url` with these settings' password
    /// and TLS applied.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) when `url` is
    /// not a `postgres://` URL or does not parse (the message shows it
    /// redacted), the TLS settings are invalid, a certificate or key file
    /// cannot be read, TLS is asked for without the `postgres-tls`
    /// feature, or `tls.server_name` is set.
    pub fn connect_options(&self, url: &ConnectionUrl) -> Result<PgConnectOptions> {
        let mut options = parse_url(url)?;
        if let Some(password) = &self.password {
            options = options.password(password.expose());
        }
        if let Some(tls) = &self.tls {
            options = apply_tls(options, tls)?;
        }
        Ok(options)
    }
}

/// Parses a `postgres://` / `postgresql://` URL.
fn parse_url(url: &ConnectionUrl) -> Result<PgConnectOptions> {
    let scheme = url.expose().split_once("://").map(|(s, _)| s);
    if !matches!(scheme, Some("postgres" | "postgresql")) {
        return Err(invalid(
            "url",
            format!(
                "{} is not a postgres:// or postgresql:// url",
                url.redacted()
            ),
        ));
    }
    PgConnectOptions::from_str(url.expose()).map_err(|_| {
        invalid(
            "url",
            format!("cannot parse connection url {}", url.redacted()),
        )
    })
}

fn apply_tls(options: PgConnectOptions, tls: &TlsConfig) -> Result<PgConnectOptions> {
    if !cfg!(feature = "postgres-tls") {
        return Err(invalid(
            "tls",
            "TLS needs the `postgres-tls` feature of sysmanage-db",
        ));
    }
    tls.validate()?;
    if tls.server_name.is_some() {
        return Err(invalid(
            "tls.server_name",
            "not supported for PostgreSQL: verify-full checks the host connected to; connect \
             by a name the certificate carries, or use verify-ca",
        ));
    }
    let mode = match tls.mode {
        sysmanage_core::TlsMode::Require => sqlx::postgres::PgSslMode::Require,
        sysmanage_core::TlsMode::VerifyCa => sqlx::postgres::PgSslMode::VerifyCa,
        _ => sqlx::postgres::PgSslMode::VerifyFull,
    };
    let mut options = options.ssl_mode(mode);
    // Read now: a missing file is an error naming the setting at start-up,
    // not a failed connection later.
    if let Some(ca) = &tls.ca {
        options = options.ssl_root_cert_from_pem(ca.read("tls.ca")?);
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        options = options
            .ssl_client_cert_from_pem(cert.read("tls.client_cert")?)
            .ssl_client_key_from_pem(key.read("tls.client_key")?);
    }
    Ok(options)
}

/// A lazily connecting pool for `url` with `options` (pool size, password,
/// TLS): what [`pg_node`] wraps, and a
/// [`NodeSet`](crate::shard::NodeSet) of its own for the shard router.
///
/// # Errors
/// As [`pg_node`].
///
/// # Examples
/// ```
/// use sysmanage_db::replica::{PgNodeOptions, pg_pool};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sysmanage_db::Error> {
/// let shard_a = pg_pool("postgres://app@127.0.0.1:25432/app", &PgNodeOptions::default())?;
/// assert!(!shard_a.is_closed());
/// # Ok(())
/// # }
/// ```
pub fn pg_pool(url: impl Into<ConnectionUrl>, options: &PgNodeOptions) -> Result<PgPool> {
    let url = url.into();
    let connect = options.connect_options(&url)?;
    lazy_pool(options.pool_options()?, connect)
}

/// `options` checked, then a pool that connects on first use.
fn lazy_pool(options: PgPoolOptions, connect: PgConnectOptions) -> Result<PgPool> {
    if tokio::runtime::Handle::try_current().is_err() {
        // sqlx starts the pool's maintenance task right away.
        return Err(invalid(
            "runtime",
            "pools must be created inside a tokio runtime",
        ));
    }
    if options.get_max_connections() == 0 {
        return Err(invalid("max_connections", "pool size must be at least 1"));
    }
    // sqlx adds these to `Instant::now()`: bounded, so they cannot overflow.
    check_duration(
        "acquire_timeout",
        options.get_acquire_timeout(),
        MILLISECOND,
        DAY,
    )?;
    for (field, d) in [
        ("idle_timeout", options.get_idle_timeout()),
        ("max_lifetime", options.get_max_lifetime()),
    ] {
        if let Some(d) = d {
            check_duration(field, d, MILLISECOND, DAY * 365)?;
        }
    }
    Ok(options.connect_lazy_with(connect))
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
    let name = name.into();
    let url = url.into();
    let pool = options
        .pool_options()
        .and_then(|pool| Ok((pool, options.connect_options(&url)?)))
        .and_then(|(pool, connect)| lazy_pool(pool, connect))
        .map_err(|e| for_node(&name, e))?;
    Ok(NodeSpec::new(name, pool).url(url))
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
    let pool = parse_url(&url)
        .and_then(|connect| lazy_pool(options, connect))
        .map_err(|e| for_node(&name, e))?;
    Ok(NodeSpec::new(name, pool).url(url))
}

/// A rejected setting with the node's name in front of the reason.
fn for_node(name: &str, e: crate::Error) -> crate::Error {
    match e {
        crate::Error::InvalidConfig { field, reason } => {
            invalid(field, format!("node {name:?}: {reason}"))
        }
        other => other,
    }
}
