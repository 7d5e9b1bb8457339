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
//! | `SYSMANAGE_REDIS_NODES` | comma-separated `host:port` of the six cluster nodes |
//! | `SYSMANAGE_REDIS_SPARE_PRIMARIES` | `host:port` of the two spare primaries (not cluster members; `scripts/services redis-spare-up` starts them) |
//! | `SYSMANAGE_REDIS_SPARE_REPLICAS` | `host:port` of their replicas, in the same order |
//! | `SYSMANAGE_SERVICES` | path of the `scripts/services` script, for fault injection |
//!
//! Faults are injected through that script, e.g. `scripts/services pg-stop standby1`;
//! see `scripts/services help`.

use std::process::Command;

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
    fn lists_split_and_trim() {
        assert_eq!(split_list(" a, b,,c "), ["a", "b", "c"]);
    }

    #[test]
    #[should_panic(expected = "scripts/services up")]
    fn missing_variable_names_the_start_command() {
        required_env("SYSMANAGE_DEFINITELY_UNSET_VARIABLE");
    }
}
