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
