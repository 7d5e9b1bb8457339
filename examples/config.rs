//! A whole host configured from one file: `examples/config/sysmanage.toml`
//! (or the path given as the first argument), with the deployment knobs
//! overridden from the environment (`SYSMANAGE_PG_PRIMARY_URL`,
//! `SYSMANAGE_PG_STANDBY_URLS`, `SYSMANAGE_REDIS_NODES`,
//! `SYSMANAGE_REDIS_USERNAME`, `SYSMANAGE_REDIS_PASSWORD`).
//!
//! ```text
//! cargo run -p sysmanage-examples --features config --example config
//! ```
//!
//! It loads and validates every section, shows what it loaded (URLs and
//! passwords redacted), then builds each piece that needs no server on its
//! embedded backend from the loaded settings: the replica router over an
//! in-memory cluster, the shard function, the tiered cache, the session
//! store, the autoscaler and the capacity planner. The PostgreSQL pools
//! are created lazily (no connection is made); the Redis settings are
//! validated only. The last line is
//! `summary: sections=… replicas=… shards=… redis_nodes=… built=… errors=0`.

use std::path::PathBuf;
use std::process::ExitCode;

use sysmanage_cache::MemoryCache;
use sysmanage_cache::session::SessionStore;
use sysmanage_cache::tiered::TieredCache;
use sysmanage_capacity::Planner;
use sysmanage_db::replica::{MemoryCluster, NodeSpec, ReplicaRouter, pg_node};
use sysmanage_db::shard::ShardFunction;
use sysmanage_examples::host_config::{ENV_OVERRIDES, HostConfig};
use sysmanage_examples::{init_tracing, section};
use sysmanage_scaling::Scaler;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    init_tracing();
    let path = std::env::args_os().nth(1).map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/config/sysmanage.toml"
            ))
        },
        PathBuf::from,
    );
    section("load");
    let config = match HostConfig::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let overridden: Vec<&str> = ENV_OVERRIDES
        .iter()
        .copied()
        .filter(|k| std::env::var(k).is_ok_and(|v| !v.is_empty()))
        .collect();
    println!(
        "{} loaded and validated; environment overrides: {overridden:?}",
        path.display()
    );

    section("what was loaded");
    println!("primary   {}", config.replica.primary);
    for r in &config.replica.replicas {
        println!("replica   {r}");
    }
    println!(
        "router    strategy {:?}, monitor every {}, max token wait {}",
        config.replica.router.strategy,
        sysmanage_core::duration::format_duration(config.replica.router.monitor_interval),
        sysmanage_core::duration::format_duration(config.replica.router.max_token_wait)
    );
    println!(
        "shards    {} logical shards ({}) over {:?}",
        config.shards.function.shard_count(),
        config.shards.function.name(),
        config.shards.node_sets
    );
    println!(
        "redis     {} seed nodes, user {:?}, password {}",
        config.redis.nodes.len(),
        config.redis.username,
        if config.redis.password.is_some() {
            "set (redacted)"
        } else {
            "none"
        }
    );
    println!(
        "tiered    local ttl {}, at most {} entries",
        sysmanage_core::duration::format_duration(config.tiered.local_ttl),
        config.tiered.max_entries
    );
    println!(
        "scaler    {:?}: {}–{} replicas, {} metric(s)",
        config.scaler.name,
        config.scaler.hpa.min_replicas,
        config.scaler.hpa.max_replicas,
        config.scaler.hpa.metrics.len()
    );
    println!(
        "planner   retention {}, horizon {}",
        sysmanage_core::duration::format_duration(config.planner.retention),
        sysmanage_core::duration::format_duration(config.planner.horizon)
    );

    section("built from it (embedded backends)");
    let mut built = 0;
    let mut errors = 0;
    let mut report = |what: &str, r: Result<(), String>| match r {
        Ok(()) => {
            built += 1;
            println!("ok        {what}");
        }
        Err(e) => {
            errors += 1;
            println!("FAILED    {what}: {e}");
        }
    };
    let cluster = MemoryCluster::new();
    let router = ReplicaRouter::builder()
        .config(config.replica.router.clone())
        .monitor(false)
        .primary(NodeSpec::new("primary", cluster.add_primary()))
        .replica(NodeSpec::new("standby", cluster.add_replica()))
        .build()
        .await;
    report(
        "replica router (in-memory cluster)",
        router.map(drop).map_err(|e| e.to_string()),
    );
    let pools: Result<Vec<_>, _> = std::iter::once(&config.replica.primary)
        .chain(&config.replica.replicas)
        .enumerate()
        .map(|(i, url)| pg_node(format!("node{i}"), url.clone(), &config.replica.pool))
        .collect();
    report(
        "PostgreSQL pools (lazy, not connected)",
        pools.map(drop).map_err(|e| e.to_string()),
    );
    report(
        "tiered cache over the in-memory cache",
        TieredCache::new(MemoryCache::new(), config.tiered.clone())
            .map(drop)
            .map_err(|e| e.to_string()),
    );
    report(
        "session store",
        SessionStore::new(MemoryCache::new(), config.session.clone())
            .map(drop)
            .map_err(|e| e.to_string()),
    );
    report(
        "autoscaler",
        Scaler::new(config.scaler.clone(), None)
            .map(drop)
            .map_err(|e| e.to_string()),
    );
    report(
        "capacity planner",
        Planner::sysmanage(config.planner.clone())
            .map(drop)
            .map_err(|e| e.to_string()),
    );

    println!(
        "summary: sections=8 replicas={} shards={} redis_nodes={} built={built} errors={errors}",
        config.replica.replicas.len(),
        config.shards.function.shard_count(),
        config.redis.nodes.len()
    );
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
