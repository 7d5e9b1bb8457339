//! Leader election on PostgreSQL: [`PgLease`], a session-level advisory
//! lock plus a lease row with a fencing epoch, for
//! [`Elector`](sysmanage_core::lease::Elector).
//!
//! The row `sysmanage_lease(name, holder, epoch, holder_pid, expires_at)`
//! is the authority; the advisory lock ties the term to the leader's
//! database session.
//!
//! - **Grant.** A candidate takes the advisory lock
//!   (`pg_try_advisory_lock`) on its own session, then in one statement
//!   takes the row if it has expired (or is its own), incrementing `epoch`
//!   and setting `expires_at = clock_timestamp() + ttl`. The new epoch is
//!   the term's [`FencingToken`]. A row that has not expired yet stays with
//!   its holder (its session may be gone, but its process may still
//!   believe it leads until its own deadline), and the candidate lets go of
//!   the lock.
//! - **Renewal** runs on the same session and extends the row only while
//!   the row is unexpired and still names this holder, epoch and session
//!   (`holder_pid = pg_backend_pid()`). A session that died (a killed
//!   backend, a broken connection, a restarted server) takes its lock with
//!   it, and its holder cannot renew from a new session: the term is lost
//!   at the next renewal.
//! - **Release** expires the row at once (from any session) and unlocks.
//! - **A paused holder** keeps its session, so its lock outlives its lease.
//!   Once the row has expired, the next candidate ends that session with
//!   `pg_terminate_backend` (only a session that holds this lease's
//!   advisory lock, in this database), and takes the lock at its next try.
//!   Candidates therefore run as the same role, or as a role with
//!   `pg_signal_backend`.
//!
//! Only the server's `clock_timestamp()` decides expiry. Each `PgLease`
//! is one candidate: it owns one connection (its session), opened lazily
//! and reopened after any error.

use std::str::FromStr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use sysmanage_core::lease::{FencingToken, LeaseBackend};
use sysmanage_core::{BoxError, ConnectionUrl};

use crate::error::{Error, Result};

/// The table of [`PgLease`].
pub const LEASE_TABLE: &str = "sysmanage_lease";

/// The first key of every lease's advisory lock (`"SMLS"`); the second is
/// a hash of the lease name. The two-key form never collides with
/// single-`bigint` advisory locks an application takes.
pub const LOCK_CLASS: i32 = 0x534d_4c53;

const SCHEMA: &str = "create table if not exists sysmanage_lease (
    name text primary key,
    holder text not null,
    epoch bigint not null,
    holder_pid integer not null,
    expires_at timestamptz not null)";

const GRANT: &str = "insert into sysmanage_lease as t (name, holder, epoch, holder_pid, expires_at)
    values ($1, $2, 1, pg_backend_pid(), clock_timestamp() + make_interval(secs => $3::float8 / 1e6))
    on conflict (name) do update set holder = excluded.holder, epoch = t.epoch + 1,
        holder_pid = excluded.holder_pid, expires_at = excluded.expires_at
    where t.expires_at <= clock_timestamp() or t.holder = excluded.holder
    returning epoch";

/// Ends the session that holds this lease's lock once the lease has
/// expired: a paused or hung holder.
const END_STALE: &str = "select count(pg_terminate_backend(l.pid)) from pg_locks l
    where l.locktype = 'advisory' and l.granted and l.pid <> pg_backend_pid()
      and l.database = (select oid from pg_database where datname = current_database())
      and l.classid = $2::int4::oid and l.objid = $3::int4::oid and l.objsubid = 2
      and not exists (select 1 from sysmanage_lease t where t.name = $1 and t.expires_at > clock_timestamp())";

const RENEW: &str = "update sysmanage_lease
    set expires_at = clock_timestamp() + make_interval(secs => $4::float8 / 1e6)
    where name = $1 and holder = $2 and epoch = $3 and holder_pid = pg_backend_pid()
      and expires_at > clock_timestamp()";

const RELEASE: &str = "update sysmanage_lease set expires_at = clock_timestamp()
    where name = $1 and holder = $2 and epoch = $3 and expires_at > clock_timestamp()";

/// The candidate's session. `clean` is false while a statement is in
/// flight: a call cut short by a timeout leaves it false and the next call
/// opens a new session.
#[derive(Debug)]
struct Session {
    conn: PgConnection,
    clean: bool,
}

/// A [`LeaseBackend`] on PostgreSQL; see the [module docs](self).
///
/// # Examples
/// ```no_run
/// use std::sync::Arc;
/// use sysmanage_core::lease::{Elector, LeaseConfig};
/// use sysmanage_db::lease::PgLease;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let lease = PgLease::connect("postgres://app@db/app", "autoscaler/web").await?;
/// let (elector, driver) = Elector::start("pod-a", Arc::new(lease), LeaseConfig::default())?;
/// tokio::spawn(driver);
/// let token = elector.campaign().await?;
/// # let _ = token; Ok(()) }
/// ```
#[derive(Debug)]
pub struct PgLease {
    options: PgConnectOptions,
    url: ConnectionUrl,
    name: String,
    lock_key: i32,
    session: tokio::sync::Mutex<Option<Session>>,
    pid: AtomicI32,
}

/// FNV-1a, 31 bits: the advisory lock's second key (positive, so it
/// compares equal as an `oid` in `pg_locks`).
fn lock_key(name: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i32::try_from(h & 0x7fff_ffff).unwrap_or(0)
}

fn ttl_micros(ttl: Duration) -> f64 {
    // at most an hour (LeaseConfig's range): exact in f64
    ttl.as_micros() as f64
}

fn epoch_of(token: FencingToken) -> std::result::Result<i64, BoxError> {
    i64::try_from(token.get())
        .map_err(|_| format!("fencing token {token} does not fit PostgreSQL's bigint").into())
}

impl PgLease {
    /// A candidate for the lease `name` (1 to 200 bytes) on the database
    /// at `url`. Creates the lease table if it does not exist.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad URL or name; [`Error::Query`]
    /// when the database cannot be reached or the table not created.
    pub async fn connect(url: &str, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if name.is_empty() || name.len() > 200 {
            return Err(Error::InvalidConfig {
                field: "lease.name",
                reason: format!("must be 1 to 200 bytes long, got {}", name.len()),
            });
        }
        let shown = ConnectionUrl::new(url);
        let options = PgConnectOptions::from_str(url).map_err(|e| Error::InvalidConfig {
            field: "lease.url",
            reason: format!("{shown}: {e}"),
        })?;
        let lease = Self {
            options: options.disable_statement_logging(),
            url: shown,
            lock_key: lock_key(&name),
            name,
            session: tokio::sync::Mutex::new(None),
            pid: AtomicI32::new(0),
        };
        let mut conn = lease.open().await.map_err(|e| lease.query_error(e))?;
        ensure_schema(&mut conn, SCHEMA)
            .await
            .map_err(|e| lease.query_error(e.into()))?;
        *lease.session.lock().await = Some(Session { conn, clean: true });
        Ok(lease)
    }

    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The backend process id of the candidate's current session (0
    /// before the first), e.g. for `pg_terminate_backend` in fault tests.
    pub fn backend_pid(&self) -> i32 {
        self.pid.load(Ordering::Relaxed)
    }

    fn query_error(&self, source: BoxError) -> Error {
        let connection = source.downcast_ref::<sqlx::Error>().is_some_and(|e| {
            matches!(
                e,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_)
            )
        });
        Error::Query {
            node: self.url.to_string(),
            connection,
            source,
        }
    }

    async fn open(&self) -> std::result::Result<PgConnection, BoxError> {
        let mut conn = self.options.connect().await?;
        let pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
            .fetch_one(&mut conn)
            .await?;
        self.pid.store(pid, Ordering::Relaxed);
        Ok(conn)
    }

    /// Runs `f` on the session, opening one when there is none or the
    /// last call was cut short; any error closes the session.
    async fn with_session<T, F>(&self, f: F) -> std::result::Result<T, BoxError>
    where
        F: for<'c> FnOnce(
            &'c mut PgConnection,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = std::result::Result<T, BoxError>> + Send + 'c>,
        >,
    {
        let mut guard = self.session.lock().await;
        if !guard.as_ref().is_some_and(|s| s.clean) {
            *guard = None;
            *guard = Some(Session {
                conn: self.open().await?,
                clean: true,
            });
        }
        let Some(session) = guard.as_mut() else {
            return Err("no session".into());
        };
        session.clean = false;
        match f(&mut session.conn).await {
            Ok(v) => {
                session.clean = true;
                Ok(v)
            }
            Err(e) => {
                *guard = None;
                Err(e)
            }
        }
    }
}

/// Creates a table once, even when several candidates start together
/// (`create table if not exists` alone races on the catalog).
pub(crate) async fn ensure_schema(conn: &mut PgConnection, ddl: &'static str) -> sqlx::Result<()> {
    let mut tx = conn.begin().await?;
    sqlx::query("select pg_advisory_xact_lock($1, 0)")
        .bind(LOCK_CLASS)
        .execute(&mut *tx)
        .await?;
    sqlx::query(ddl).execute(&mut *tx).await?;
    tx.commit().await
}

use std::future::Future;

#[async_trait::async_trait]
impl LeaseBackend for PgLease {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn try_acquire(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> std::result::Result<Option<FencingToken>, BoxError> {
        let (name, key) = (self.name.clone(), self.lock_key);
        let holder = holder.to_owned();
        self.with_session(move |c| {
            Box::pin(async move {
                let locked: bool = sqlx::query_scalar("select pg_try_advisory_lock($1, $2)")
                    .bind(LOCK_CLASS)
                    .bind(key)
                    .fetch_one(&mut *c)
                    .await?;
                if !locked {
                    let _: i64 = sqlx::query_scalar(END_STALE)
                        .bind(&name)
                        .bind(LOCK_CLASS)
                        .bind(key)
                        .fetch_one(&mut *c)
                        .await?;
                    return Ok(None);
                }
                let epoch: Option<i64> = sqlx::query_scalar(GRANT)
                    .bind(&name)
                    .bind(&holder)
                    .bind(ttl_micros(ttl))
                    .fetch_optional(&mut *c)
                    .await?;
                match epoch {
                    Some(e) => Ok(Some(FencingToken::new(u64::try_from(e)?))),
                    None => {
                        sqlx::query("select pg_advisory_unlock($1, $2)")
                            .bind(LOCK_CLASS)
                            .bind(key)
                            .execute(&mut *c)
                            .await?;
                        Ok(None)
                    }
                }
            })
        })
        .await
    }

    async fn renew(
        &self,
        holder: &str,
        token: FencingToken,
        ttl: Duration,
    ) -> std::result::Result<bool, BoxError> {
        let epoch = epoch_of(token)?;
        let name = self.name.clone();
        let holder = holder.to_owned();
        self.with_session(move |c| {
            Box::pin(async move {
                let n = sqlx::query(RENEW)
                    .bind(&name)
                    .bind(&holder)
                    .bind(epoch)
                    .bind(ttl_micros(ttl))
                    .execute(&mut *c)
                    .await?
                    .rows_affected();
                if n == 0 {
                    // the term is over: do not keep others waiting on the lock
                    sqlx::query("select pg_advisory_unlock_all()")
                        .execute(&mut *c)
                        .await?;
                }
                Ok(n == 1)
            })
        })
        .await
    }

    async fn release(
        &self,
        holder: &str,
        token: FencingToken,
    ) -> std::result::Result<(), BoxError> {
        let epoch = epoch_of(token)?;
        let name = self.name.clone();
        let holder = holder.to_owned();
        self.with_session(move |c| {
            Box::pin(async move {
                sqlx::query(RELEASE)
                    .bind(&name)
                    .bind(&holder)
                    .bind(epoch)
                    .execute(&mut *c)
                    .await?;
                sqlx::query("select pg_advisory_unlock_all()")
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_positive_and_stable() {
        assert_eq!(lock_key("autoscaler/web"), lock_key("autoscaler/web"));
        assert_ne!(lock_key("a"), lock_key("b"));
        for n in ["", "a", "x".repeat(200).as_str(), "ÿÿÿÿ"] {
            assert!(lock_key(n) >= 0);
        }
        assert!(epoch_of(FencingToken::new(u64::MAX)).is_err());
        assert_eq!(epoch_of(FencingToken::new(7)).unwrap(), 7);
    }
}
