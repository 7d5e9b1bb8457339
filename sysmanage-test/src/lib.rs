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
//! | `SYSMANAGE_SERVICES` | path of the `scripts/services` script, for fault injection |
//!
//! Faults are injected through that script, e.g. `scripts/services pg-stop standby1`;
//! see `scripts/services help`.

use std::process::Command;

#[cfg(feature = "fleet")]
pub mod fleet;

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
    required_env("SYSMANAGE_PG_PRIMARY_URL")
}

/// URL of the primary's `postgres` maintenance database.
///
/// # Panics
/// As [`required_env`].
pub fn pg_admin_url() -> String {
    required_env("SYSMANAGE_PG_ADMIN_URL")
}

/// URL of the shard cluster's test database: a second PostgreSQL cluster
/// with `wal_level = logical`, the target node set of shard moves.
///
/// # Panics
/// As [`required_env`].
pub fn pg_shard_url() -> String {
    required_env("SYSMANAGE_PG_SHARD_URL")
}

/// URL of the shard cluster's `postgres` maintenance database.
///
/// # Panics
/// As [`required_env`].
pub fn pg_shard_admin_url() -> String {
    required_env("SYSMANAGE_PG_SHARD_ADMIN_URL")
}

/// `url` with its database name replaced by `db` (the part after the last
/// `/`, query string dropped).
///
/// # Panics
/// When `url` has no `/database` part.
pub fn with_database(url: &str, db: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let (prefix, _) = base
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("{url:?} has no /database part"));
    format!("{prefix}/{db}")
}

/// URLs of the streaming-replication standbys.
///
/// # Panics
/// As [`required_env`].
pub fn pg_standby_urls() -> Vec<String> {
    split_list(&required_env("SYSMANAGE_PG_STANDBY_URLS"))
}

/// `host:port` of every Redis Cluster node.
///
/// # Panics
/// As [`required_env`].
pub fn redis_nodes() -> Vec<String> {
    split_list(&required_env("SYSMANAGE_REDIS_NODES"))
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
    fn database_is_replaced() {
        assert_eq!(
            with_database(
                "postgres://u@127.0.0.1:25435/postgres?sslmode=disable",
                "moves_b"
            ),
            "postgres://u@127.0.0.1:25435/moves_b"
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
