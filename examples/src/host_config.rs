//! A whole host's configuration in one TOML file — replica router, shard
//! layout, Redis cache, tiered cache and its tracking, sessions, autoscaler
//! and capacity planner — with environment overrides for the deployment
//! knobs (URLs, passwords).
//!
//! Every section is the crate's own config type, deserialised with human
//! durations (`"250ms"`, `"5m"`) and unknown fields refused (the error names
//! the field, the line and the column), then validated by the same
//! `validate()` the crates' builders run.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use sysmanage_cache::RedisConfig;
use sysmanage_cache::session::SessionConfig;
use sysmanage_cache::tiered::{TieredConfig, TrackingConfig};
use sysmanage_capacity::PlannerConfig;
use sysmanage_core::{ConnectionUrl, Secret};
use sysmanage_db::replica::{PgNodeOptions, ReplicaConfig};
use sysmanage_db::shard::PgHash;
use sysmanage_scaling::ScalerConfig;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// PostgreSQL: the primary, its standbys, router and pool settings.
    pub replica: ReplicaSection,
    /// How keys map to logical shards and shards to node sets.
    pub shards: ShardSection,
    /// The Redis Cluster backend.
    pub redis: RedisConfig,
    /// The in-process L1 in front of Redis.
    #[serde(default)]
    pub tiered: TieredConfig,
    /// The L1's invalidation connections.
    #[serde(default)]
    pub tracking: TrackingConfig,
    /// Shared sessions.
    #[serde(default)]
    pub session: SessionConfig,
    /// The autoscaler (Kubernetes HPA semantics plus extensions).
    pub scaler: ScalerConfig,
    /// The capacity planner.
    #[serde(default)]
    pub planner: PlannerConfig,
}

/// `[replica]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaSection {
    /// The primary's URL (`SYSMANAGE_PG_PRIMARY_URL` overrides it).
    pub primary: ConnectionUrl,
    /// The standbys' URLs (`SYSMANAGE_PG_STANDBY_URLS`, comma-separated,
    /// overrides them).
    #[serde(default)]
    pub replicas: Vec<ConnectionUrl>,
    /// Router settings.
    #[serde(default)]
    pub router: ReplicaConfig,
    /// Pool settings of every node.
    #[serde(default)]
    pub pool: PgNodeOptions,
}

/// `[shards]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSection {
    /// PostgreSQL-compatible hash partitioning (`{ modulus = 8 }`).
    pub function: PgHash,
    /// Node set names; shards are placed round robin.
    pub node_sets: Vec<String>,
}

/// Why a configuration file was refused.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read(String, std::io::Error),
    /// It is not valid TOML for these types (the message names the field,
    /// line and column).
    Parse(String),
    /// A value is out of its documented range (the message names the field).
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(path, e) => write!(f, "cannot read {path}: {e}"),
            Self::Parse(m) | Self::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Environment variables the loader reads.
pub const ENV_OVERRIDES: [&str; 5] = [
    "SYSMANAGE_PG_PRIMARY_URL",
    "SYSMANAGE_PG_STANDBY_URLS",
    "SYSMANAGE_REDIS_NODES",
    "SYSMANAGE_REDIS_USERNAME",
    "SYSMANAGE_REDIS_PASSWORD",
];

impl HostConfig {
    /// Reads, overrides from the environment and validates `path`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(name.clone(), e))?;
        let mut config = Self::parse(&text, &name)?;
        config.apply_env(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
        config.validate(&name)?;
        Ok(config)
    }

    /// Parses TOML text (`source` names it in errors).
    ///
    /// # Errors
    /// [`ConfigError::Parse`].
    pub fn parse(text: &str, source: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(format!("{source}: {e}")))
    }

    /// Applies the deployment overrides read through `var`; secrets stay
    /// [`Secret`]s and URLs [`ConnectionUrl`]s, so they print redacted.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(url) = var("SYSMANAGE_PG_PRIMARY_URL") {
            self.replica.primary = ConnectionUrl::new(url);
        }
        if let Some(urls) = var("SYSMANAGE_PG_STANDBY_URLS") {
            self.replica.replicas = urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(ConnectionUrl::new)
                .collect();
        }
        if let Some(nodes) = var("SYSMANAGE_REDIS_NODES") {
            self.redis.nodes = nodes.split(',').map(|n| n.trim().to_owned()).collect();
        }
        if let Some(user) = var("SYSMANAGE_REDIS_USERNAME") {
            self.redis.username = Some(user);
        }
        if let Some(password) = var("SYSMANAGE_REDIS_PASSWORD") {
            self.redis.password = Some(Secret::new(password));
        }
    }

    /// Runs every section's own validation.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the section and the field.
    pub fn validate(&self, source: &str) -> Result<(), ConfigError> {
        let bad = |section: &str, e: &dyn fmt::Display| {
            ConfigError::Invalid(format!("{source}: [{section}] {e}"))
        };
        self.replica
            .router
            .validate()
            .map_err(|e| bad("replica.router", &e))?;
        self.replica
            .pool
            .pool_options()
            .map_err(|e| bad("replica.pool", &e))?;
        if self.shards.node_sets.is_empty() {
            return Err(bad("shards", &"node_sets must not be empty"));
        }
        self.redis.validate().map_err(|e| bad("redis", &e))?;
        self.tiered.validate().map_err(|e| bad("tiered", &e))?;
        self.tracking.validate().map_err(|e| bad("tracking", &e))?;
        self.session.validate().map_err(|e| bad("session", &e))?;
        self.scaler
            .hpa
            .validate()
            .map_err(|e| bad("scaler.hpa", &e))?;
        sysmanage_capacity::Planner::new(self.planner.clone()).map_err(|e| bad("planner", &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = include_str!("../config/sysmanage.toml");

    #[test]
    fn the_shipped_file_configures_every_section() {
        let mut c = HostConfig::parse(FILE, "sysmanage.toml").unwrap();
        c.validate("sysmanage.toml").unwrap();
        assert_eq!(c.replica.replicas.len(), 2);
        assert_eq!(c.shards.function.modulus(), 8);
        assert_eq!(
            c.redis.command_timeout,
            std::time::Duration::from_millis(1500)
        );
        assert_eq!(c.tiered.local_ttl, std::time::Duration::from_secs(20));
        assert_eq!(c.scaler.hpa.max_replicas, 20);
        c.apply_env(|k| match k {
            "SYSMANAGE_REDIS_PASSWORD" => Some("hunter2".into()),
            "SYSMANAGE_PG_PRIMARY_URL" => Some("postgres://app:s3cret@db:5432/app".into()),
            _ => None,
        });
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert_eq!(
            c.redis.password.as_ref().map(Secret::expose),
            Some("hunter2")
        );
    }

    #[test]
    fn an_unknown_field_names_itself_and_its_line() {
        let text = FILE.replace(
            "command_timeout = \"1500ms\"",
            "command_timout = \"1500ms\"",
        );
        let err = HostConfig::parse(&text, "sysmanage.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("command_timout") && err.contains("line"),
            "{err}"
        );
    }

    #[test]
    fn an_out_of_range_value_names_its_section_and_field() {
        let text = FILE.replace("local_ttl = \"20s\"", "local_ttl = \"2d\"");
        let c = HostConfig::parse(&text, "sysmanage.toml").unwrap();
        let err = c.validate("sysmanage.toml").unwrap_err().to_string();
        assert!(
            err.contains("[tiered]") && err.contains("tiered.local_ttl"),
            "{err}"
        );
        let text = FILE.replace(
            "monitor_interval = \"500ms\"",
            "monitor_interval = \"soon\"",
        );
        let err = HostConfig::parse(&text, "sysmanage.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("monitor_interval") || err.contains("soon"),
            "{err}"
        );
    }
}
