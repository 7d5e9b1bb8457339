//! The sysmanage-rs family on embedded backends: no servers needed.
//!
//! Run with `cargo run --example quickstart`. It shows, in order: the health
//! registry's three reports (sysmanage-core), read routing over in-memory
//! replicas and sharding over in-memory shards (sysmanage-db), the in-memory
//! cluster cache, a session store and the two-tier cache (sysmanage-cache), an
//! HPA-compatible scaler on in-memory metrics (sysmanage-scaling) and a
//! capacity report on embedded data (sysmanage-capacity). The live examples
//! (`replica_routing`, `sharding`, `cluster_cache`, `tiered_cache`) run the
//! same crates against the local servers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sysmanage_core::{CheckResult, Criticality, FnCheck, HealthCheck, HealthRegistry};
use sysmanage_examples::{
    cache_demo, capacity_demo, init_tracing, replica_demo, scaling_demo, section, sharding_demo,
    tiered_demo,
};

/// A check whose dependency recovers after a few probes, as a restarted cache would.
#[derive(Debug, Default)]
struct Warming {
    probes: AtomicU32,
}

#[async_trait::async_trait]
impl HealthCheck for Warming {
    fn name(&self) -> &str {
        "cache"
    }
    fn criticality(&self) -> Criticality {
        Criticality::NonCritical
    }
    async fn check(&self) -> CheckResult {
        match self.probes.fetch_add(1, Ordering::Relaxed) {
            0 => CheckResult::unhealthy("connection refused"),
            1 => CheckResult::degraded("warming up").with_detail("hit_ratio", 0.12),
            _ => CheckResult::healthy().with_detail("hit_ratio", 0.93),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();

    section("sysmanage-core: health registry");
    let warming = Arc::new(Warming::default());
    let registry = HealthRegistry::builder()
        .default_timeout(Duration::from_millis(250))
        .check(FnCheck::new("database", Criticality::Critical, || async {
            CheckResult::healthy().with_detail("pool_idle", 8)
        }))
        .check_arc(warming.clone())
        .check_with_timeout(
            FnCheck::new("billing-api", Criticality::NonCritical, || async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                CheckResult::healthy()
            }),
            Duration::from_millis(100),
        )
        .build()?;

    let live = registry.liveness();
    println!("liveness  -> HTTP {}", live.http_status());
    let ready = registry.readiness().await;
    println!(
        "readiness -> HTTP {} (failing critical checks: {})",
        ready.http_status(),
        if ready.failing.is_empty() {
            "none".to_owned()
        } else {
            ready.failing.join(", ")
        }
    );
    // The cache recovers over three probes; the billing API never answers in time.
    let mut detailed = registry.detailed().await;
    for round in 1..=3 {
        if round > 1 {
            detailed = registry.detailed().await;
        }
        let checks: Vec<String> = detailed
            .checks
            .iter()
            .map(|c| format!("{}={}", c.name, c.status))
            .collect();
        println!(
            "detailed  -> HTTP {} overall={} [{}]",
            detailed.http_status(),
            detailed.status,
            checks.join(", ")
        );
    }
    println!("detailed report (served as JSON on /health/detailed):");
    for c in &detailed.checks {
        println!(
            "  {:<12} {:<13} {:<10} {:>6.1} ms  {}",
            c.name,
            format!("{:?}", c.criticality).to_lowercase(),
            c.status.to_string(),
            c.duration_ms,
            c.reason.as_deref().unwrap_or("")
        );
    }

    section("sysmanage-db: replica routing (in-memory nodes)");
    replica_demo::demo_replicas().await?;

    section("sysmanage-db: sharding (in-memory shards)");
    sharding_demo::demo_sharding().await?;

    section("sysmanage-cache: cluster cache and sessions (in memory)");
    cache_demo::demo_cache().await?;

    section("sysmanage-cache: two-tier cache (L1 over the in-memory L2)");
    tiered_demo::demo_tiered().await?;

    section("sysmanage-scaling: autoscaler (in-memory metrics and target)");
    scaling_demo::demo_scaling().await?;

    section("sysmanage-capacity: capacity report (embedded data)");
    capacity_demo::demo_capacity().await?;

    section("summary");
    println!(
        "summary: crates=5 demos=7 health_checks={} ready={} overall={}",
        registry.len(),
        ready.ready,
        detailed.status
    );
    Ok(())
}
