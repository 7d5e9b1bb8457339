//! The `--tls` flag of the live examples: connect to the secure servers of
//! the local topology with the addresses, CA and credentials that
//! `scripts/services env` exports, instead of the plain-text ones.

#[cfg(any(feature = "redis", feature = "postgres"))]
use sysmanage_core::{Pem, Secret, TlsConfig};

/// Whether the example was started with `--tls`.
pub fn tls_requested() -> bool {
    std::env::args().skip(1).any(|a| a == "--tls")
}

#[cfg(any(feature = "redis", feature = "postgres"))]
fn env(name: &str) -> Result<String, String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            format!(
                "{name} is not set: start the topology with `scripts/services up` and run \
             `eval \"$(scripts/services env)\"`"
            )
        })
}

/// The Redis Cluster settings: the plain cluster (`SYSMANAGE_REDIS_NODES`,
/// default `127.0.0.1:7000-7005`), or with `tls` the TLS-only cluster as
/// its ACL user, verifying the nodes against the topology's CA.
///
/// # Errors
/// A variable of the secure cluster is missing.
#[cfg(feature = "redis")]
pub fn redis_config(tls: bool) -> Result<sysmanage_cache::RedisConfig, String> {
    use sysmanage_cache::RedisConfig;
    if !tls {
        let nodes = std::env::var("SYSMANAGE_REDIS_NODES").unwrap_or_else(|_| {
            (7000..7006)
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(",")
        });
        return Ok(RedisConfig::new(nodes.split(',').map(str::to_owned)));
    }
    let nodes = env("SYSMANAGE_REDIS_TLS_NODES")?;
    let mut cfg = RedisConfig::new(nodes.split(',').map(str::to_owned));
    cfg.username = Some(env("SYSMANAGE_REDIS_USER")?);
    cfg.password = Some(Secret::new(env("SYSMANAGE_REDIS_PASSWORD")?));
    cfg.tls = Some(TlsConfig::verify_full().ca(Pem::file(env("SYSMANAGE_TLS_CA")?)));
    Ok(cfg)
}

/// The PostgreSQL nodes an example routes over.
#[cfg(feature = "postgres")]
#[derive(Debug)]
pub struct PgTarget {
    /// The primary's URL (no password in it).
    pub primary: String,
    /// The standbys' URLs.
    pub standbys: Vec<String>,
    /// Pool settings, with the password and TLS settings in the secure case.
    pub options: sysmanage_db::replica::PgNodeOptions,
}

/// The plain nodes (`SYSMANAGE_PG_PRIMARY_URL`, `SYSMANAGE_PG_STANDBY_URLS`),
/// or with `tls` the same nodes as the role that may only log in over TLS:
/// `verify-full` against the topology's CA, the password in the options
/// rather than the URL.
///
/// # Errors
/// A variable is missing.
#[cfg(feature = "postgres")]
pub fn pg_target(tls: bool) -> Result<PgTarget, String> {
    let split = |v: String| -> Vec<String> {
        v.split(',')
            .map(|s| s.trim().split('?').next().unwrap_or(s).to_owned())
            .collect()
    };
    let mut options = sysmanage_db::replica::PgNodeOptions::default();
    if !tls {
        return Ok(PgTarget {
            primary: env("SYSMANAGE_PG_PRIMARY_URL")?,
            standbys: split(env("SYSMANAGE_PG_STANDBY_URLS")?),
            options,
        });
    }
    options.password = Some(Secret::new(env("SYSMANAGE_PG_TLS_PASSWORD")?));
    options.tls = Some(TlsConfig::verify_full().ca(Pem::file(env("SYSMANAGE_TLS_CA")?)));
    // The URLs carry sslmode and sslrootcert as well; the options say the
    // same in code, so the query strings are dropped.
    Ok(PgTarget {
        primary: split(env("SYSMANAGE_PG_TLS_PRIMARY_URL")?).remove(0),
        standbys: split(env("SYSMANAGE_PG_TLS_STANDBY_URLS")?),
        options,
    })
}
