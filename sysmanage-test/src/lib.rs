//! Test support shared by the sysmanage-rs crates.
//!
//! Integration tests read the addresses of the local topology that
//! `scripts/services up` starts from environment variables printed by
//! `scripts/services env`. A missing variable is a loud failure naming the
//! command that sets it: tests never skip because a server is absent.
//!
//! | variable | value |
//! |---|---|
//! | `SYSMANAGE_PG_PRIMARY_URL` | `postgres://postgres@127.0.0.1:25432/sysmanage_test` |
//! | `SYSMANAGE_PG_STANDBY_URLS` | comma-separated URLs of the two standbys |
//! | `SYSMANAGE_PG_ADMIN_URL` | the primary's `postgres` database, for creating databases |
//! | `SYSMANAGE_PG_SHARD_URL` | the second, independent cluster (`wal_level = logical`): `postgres://postgres@127.0.0.1:25435/sysmanage_test` |
//! | `SYSMANAGE_PG_SHARD_ADMIN_URL` | that cluster's `postgres` database, for creating databases |
//! | `SYSMANAGE_REDIS_NODES` | comma-separated `host:port` of the six cluster nodes |
//! | `SYSMANAGE_REDIS_SPARE_PRIMARIES` | `host:port` of the two spare primaries (not cluster members; `scripts/services redis-spare-up` starts them) |
//! | `SYSMANAGE_REDIS_SPARE_REPLICAS` | `host:port` of their replicas, in the same order |
//! | `SYSMANAGE_SERVICES` | path of the `scripts/services` script, for fault injection |
//! | `SYSMANAGE_TLS_DIR`, `SYSMANAGE_TLS_CA` | the throw-away CA and certificates of the secure servers |
//! | `SYSMANAGE_REDIS_TLS_NODES` | the six nodes of the TLS-only Redis Cluster |
//! | `SYSMANAGE_REDIS_USER`, `SYSMANAGE_REDIS_PASSWORD` | its ACL user; `SYSMANAGE_REDIS_LEGACY_PASSWORD`: its `requirepass` |
//! | `SYSMANAGE_PG_TLS_PRIMARY_URL`, `…_STANDBY_URLS`, `…_SHARD_URL`, `SYSMANAGE_PG_TLS_PASSWORD` | the PostgreSQL nodes as the role that logs in only over TLS (`sslmode=verify-full`) |
//! | `SYSMANAGE_PROMETHEUS_URL`, `SYSMANAGE_PROMETHEUS_TARGETS_DIR` | the local Prometheus and the directory of its file-discovered scrape targets |
//!
//! **Secure runs.** With `SYSMANAGE_TEST_SECURE=1` the same suites target
//! the secure servers: [`redis_nodes`] lists the TLS cluster,
//! [`redis_security`] gives its user, password and CA, and the PostgreSQL URLs log in as the TLS
//! role with `sslmode=verify-full` (password included). `scripts/test` runs
//! the conformance, cluster-fault and replica-router suites a second time
//! this way.
//!
//! Faults are injected through that script, e.g. `scripts/services pg-stop standby1`;
//! see `scripts/services help`.

use std::process::Command;

#[cfg(feature = "fleet")]
pub mod fleet;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "prometheus")]
pub mod prometheus;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
pub use tls::TlsDecoy;

/// How to start the servers, quoted in every failure message.
pub const START_HINT: &str = "start the local topology with `scripts/services up` and load its \
addresses with `eval \"$(scripts/services env)\"`, or run the whole suite with `scripts/test`";

/// The value of environment variable `name`.
///
/// # Panics
/// When the variable is unset or empty, with a message naming the command
/// that starts the servers.
pub fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!("{name} is not set: {START_HINT}"),
    }
}

/// URL of the PostgreSQL primary's test database.
///
/// # Panics
/// As [`required_env`].
pub fn pg_primary_url() -> String {
    if secure() {
        return with_tls_password(&required_env("SYSMANAGE_PG_TLS_PRIMARY_URL"));
    }
    required_env("SYSMANAGE_PG_PRIMARY_URL")
}

/// URL of the primary's `postgres` maintenance database.
///
/// # Panics
/// As [`required_env`].
pub fn pg_admin_url() -> String {
    if secure() {
        return with_database(&pg_primary_url(), "postgres");
    }
    required_env("SYSMANAGE_PG_ADMIN_URL")
}

/// URL of the shard cluster's test database: a second PostgreSQL cluster
/// with `wal_level = logical`, the target node set of shard moves.
///
/// # Panics
/// As [`required_env`].
pub fn pg_shard_url() -> String {
    if secure() {
        return with_tls_password(&required_env("SYSMANAGE_PG_TLS_SHARD_URL"));
    }
    required_env("SYSMANAGE_PG_SHARD_URL")
}

/// URL of the shard cluster's `postgres` maintenance database.
///
/// # Panics
/// As [`required_env`].
pub fn pg_shard_admin_url() -> String {
    if secure() {
        return with_database(&pg_shard_url(), "postgres");
    }
    required_env("SYSMANAGE_PG_SHARD_ADMIN_URL")
}

/// `url` with its database name replaced by `db` (the part after the last
/// `/`); the query string (TLS settings) is kept.
///
/// # Panics
/// When `url` has no `/database` part.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (prefix, _) = base
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("{url:?} has no /database part"));
    match query {
        Some(q) => format!("{prefix}/{db}?{q}"),
        None => format!("{prefix}/{db}"),
    }
}

/// URLs of the streaming-replication standbys.
///
/// # Panics
/// As [`required_env`].
pub fn pg_standby_urls() -> Vec<String> {
    if secure() {
        return split_list(&required_env("SYSMANAGE_PG_TLS_STANDBY_URLS"))
            .iter()
            .map(|u| with_tls_password(u))
            .collect();
    }
    split_list(&required_env("SYSMANAGE_PG_STANDBY_URLS"))
}

/// `host:port` of every Redis Cluster node.
///
/// # Panics
/// As [`required_env`].
pub fn redis_nodes() -> Vec<String> {
    if secure() {
        return redis_tls_nodes();
    }
    split_list(&required_env("SYSMANAGE_REDIS_NODES"))
}

/// The nodes of the TLS-only Redis Cluster, whatever the run targets.
///
/// # Panics
/// As [`required_env`].
pub fn redis_tls_nodes() -> Vec<String> {
    split_list(&required_env("SYSMANAGE_REDIS_TLS_NODES"))
}

/// Whether this run targets the secure servers (`SYSMANAGE_TEST_SECURE=1`).
pub fn secure() -> bool {
    std::env::var("SYSMANAGE_TEST_SECURE").is_ok_and(|v| v == "1")
}

/// A secure PostgreSQL URL with the TLS role's password filled in.
fn with_tls_password(url: &str) -> String {
    let password = required_env("SYSMANAGE_PG_TLS_PASSWORD");
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("{url:?} is not a URL"));
    let (user, host) = rest
        .split_once('@')
        .unwrap_or_else(|| panic!("{url:?} names no user"));
    format!("{scheme}://{user}:{password}@{host}")
}

/// A file of the throw-away CA directory: `ca.crt`, `client.crt`,
/// `client.key`, `other-ca.crt`, `other-client.crt`, `other-client.key`,
/// `expired.crt`, `self-signed.crt`, `server.crt`, `server.key`.
///
/// # Panics
/// As [`required_env`].
pub fn tls_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(&required_env("SYSMANAGE_TLS_DIR")).join(name)
}

/// How to log in to the secure Redis Cluster.
#[derive(Clone)]
pub struct RedisSecurity {
    /// The ACL user.
    pub username: String,
    /// Its password (not in `Debug`).
    pub password: String,
    /// The CA that signed the nodes' certificates.
    pub ca: std::path::PathBuf,
}

impl std::fmt::Debug for RedisSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSecurity")
            .field("username", &self.username)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

/// The ACL user, password and CA of the secure cluster, whatever the run
/// targets.
///
/// # Panics
/// As [`required_env`].
pub fn redis_tls_security() -> RedisSecurity {
    RedisSecurity {
        username: required_env("SYSMANAGE_REDIS_USER"),
        password: required_env("SYSMANAGE_REDIS_PASSWORD"),
        ca: required_env("SYSMANAGE_TLS_CA").into(),
    }
}

/// The login of the cluster this run targets: `None` for the plain one.
///
/// # Panics
/// As [`required_env`], in a secure run.
pub fn redis_security() -> Option<RedisSecurity> {
    secure().then(redis_tls_security)
}

/// `host:port` of the spare primaries: running only after
/// `scripts/services redis-spare-up` (see [`SpareNodes`]), never members
/// of the cluster until a test adds them.
///
/// # Panics
/// As [`required_env`].
pub fn redis_spare_primaries() -> Vec<String> {
    split_list(&required_env("SYSMANAGE_REDIS_SPARE_PRIMARIES"))
}

/// `host:port` of the spare replicas; the i-th replicates the i-th spare
/// primary.
///
/// # Panics
/// As [`required_env`].
pub fn redis_spare_replicas() -> Vec<String> {
    split_list(&required_env("SYSMANAGE_REDIS_SPARE_REPLICAS"))
}

/// The spare Redis nodes, started for a test (`services redis-spare-up`)
/// and made non-members again when dropped (`services redis-spare-reset`:
/// their slots move back, every node forgets them, they are reset), so
/// that a failing scaling test still leaves the six-node cluster as it was.
#[derive(Debug)]
pub struct SpareNodes {
    armed: bool,
}

impl SpareNodes {
    /// Starts the spare nodes (idempotent) and makes sure none is a member.
    ///
    /// # Panics
    /// As [`services`].
    pub fn start() -> Self {
        services(&["redis-spare-up"]);
        services(&["redis-spare-reset"]);
        Self { armed: true }
    }

    /// Resets the spares now, failing the test if that fails.
    ///
    /// # Panics
    /// As [`services`].
    pub fn reset(mut self) {
        self.armed = false;
        services(&["redis-spare-reset"]);
    }
}

impl Drop for SpareNodes {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // No panics here: this may run while unwinding.
        let Ok(script) = std::env::var("SYSMANAGE_SERVICES") else {
            eprintln!("cannot reset the spare nodes: SYSMANAGE_SERVICES unset");
            return;
        };
        match Command::new("bash")
            .arg(&script)
            .arg("redis-spare-reset")
            .status()
        {
            Ok(s) if s.success() => {}
            other => eprintln!("clean-up `redis-spare-reset` failed: {other:?}"),
        }
    }
}

/// Runs `scripts/services <args>` (a fault injection such as
/// `pg-stop standby1 immediate`) and returns its standard output.
///
/// # Panics
/// When the script cannot be run or exits non-zero; the message includes its
/// standard error.
pub fn services(args: &[&str]) -> String {
    let script = required_env("SYSMANAGE_SERVICES");
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(
        out.status.success(),
        "`{script} {}` failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A string unique to this test run (process id and time), for key
/// prefixes and client names that must not collide with other runs.
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// The port of a `host:port` address.
///
/// # Panics
/// When `addr` has no `:port` suffix.
pub fn port_of(addr: &str) -> String {
    addr.rsplit_once(':')
        .unwrap_or_else(|| panic!("{addr:?} is not host:port"))
        .1
        .to_owned()
}

/// A Redis node killed with `SIGKILL` (`services redis-kill`), restarted
/// (`redis-start`) and waited for (`redis-wait`) when dropped, so that a
/// failing assertion still leaves the cluster whole for the next test.
/// [`restore`](Self::restore) does it on the normal path, where a failure
/// should fail the test.
#[derive(Debug)]
pub struct KilledRedisNode {
    port: String,
    armed: bool,
}

impl KilledRedisNode {
    /// Kills the node on `port`.
    ///
    /// # Panics
    /// As [`services`].
    pub fn kill(port: &str) -> Self {
        let guard = Self {
            port: port.to_owned(),
            armed: true,
        };
        services(&["redis-kill", port]);
        guard
    }

    /// Restarts the node and waits for a healthy cluster.
    ///
    /// # Panics
    /// As [`services`].
    pub fn restore(mut self) {
        self.armed = false;
        services(&["redis-start", &self.port]);
        services(&["redis-wait"]);
    }
}

impl Drop for KilledRedisNode {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // No panics here: this may run while unwinding.
        let Ok(script) = std::env::var("SYSMANAGE_SERVICES") else {
            eprintln!(
                "cannot restart redis {}: SYSMANAGE_SERVICES unset",
                self.port
            );
            return;
        };
        for args in [vec!["redis-start", self.port.as_str()], vec!["redis-wait"]] {
            match Command::new("bash").arg(&script).args(&args).status() {
                Ok(s) if s.success() => {}
                other => eprintln!("clean-up `{}` failed: {other:?}", args.join(" ")),
            }
        }
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_and_the_query_kept() {
        assert_eq!(
            with_database(
                "postgres://u@127.0.0.1:25435/postgres?sslmode=verify-full",
                "moves_b"
            ),
            "postgres://u@127.0.0.1:25435/moves_b?sslmode=verify-full"
        );
        assert_eq!(
            with_database("postgres://u@127.0.0.1:25435/postgres", "x"),
            "postgres://u@127.0.0.1:25435/x"
        );
    }

    #[test]
    fn lists_split_and_trim() {
        assert_eq!(split_list(" a, b,,c "), ["a", "b", "c"]);
    }

    #[test]
    #[should_panic(expected = "scripts/services up")]
    fn missing_variable_names_the_start_command() {
        required_env("SYSMANAGE_DEFINITELY_UNSET_VARIABLE");
    }
}
