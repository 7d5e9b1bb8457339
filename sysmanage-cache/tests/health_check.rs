//! `ClusterCheck` against the local Redis Cluster (started by scripts/test).

mod common;

use sysmanage_cache::{ClusterCheck, RedisCache};
use sysmanage_core::{HealthCheck, HealthRegistry, HealthStatus};

#[tokio::test]
async fn the_local_cluster_is_healthy_with_every_slot_served() {
    let cache = RedisCache::connect(common::redis_config()).await.unwrap();
    let check = ClusterCheck::new("redis", cache.clone());
    let r = check.check().await;
    assert_eq!(r.status, HealthStatus::Healthy, "{:?}", r.reason);
    let detail = |k: &str| r.details.get(k).cloned();
    assert_eq!(detail("cluster_state").as_deref(), Some("ok"));
    assert_eq!(detail("slots_ok").as_deref(), Some("16384"));
    assert_eq!(detail("routing_covers_all_slots").as_deref(), Some("true"));
    let registry = HealthRegistry::builder().check(check).build().unwrap();
    assert!(registry.readiness().await.ready);
}
