//! `RouterCheck` over the in-memory cluster: healthy, degraded when no
//! replica serves reads, unhealthy without a primary.

use std::time::Duration;

use sysmanage_core::{HealthCheck, HealthStatus};
use sysmanage_db::replica::{MemoryCluster, NodeSpec, ReplicaRouter, RouterCheck};

#[tokio::test]
async fn verdicts_follow_the_topology() {
    let cluster = MemoryCluster::new();
    let (primary, replica) = (cluster.add_primary(), cluster.add_replica());
    let router = ReplicaRouter::builder()
        .primary(NodeSpec::new("primary", primary.clone()))
        .replica(NodeSpec::new("replica", replica.clone()))
        .monitor(false)
        .build()
        .await
        .unwrap();
    router.probe_all().await;
    let check = RouterCheck::new("postgres", router.clone()).max_lag(Duration::from_secs(30));
    let r = check.check().await;
    assert_eq!(r.status, HealthStatus::Healthy, "{:?}", r.reason);
    assert_eq!(
        r.details.get("serving_replicas").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        r.details.get("primary").map(String::as_str),
        Some("primary")
    );

    // A drained replica (weight 0) serves no read: the check says so.
    router.set_weight("replica", 0.0).unwrap();
    let r = check.check().await;
    assert_eq!(r.status, HealthStatus::Degraded, "{:?}", r.reason);
    router.set_weight("replica", 1.0).unwrap();
    assert_eq!(check.check().await.status, HealthStatus::Healthy);

    replica.set_up(false);
    router.probe_all().await;
    let r = check.check().await;
    assert_eq!(r.status, HealthStatus::Degraded, "{:?}", r.reason);
    assert!(r.reason.unwrap().contains("0 of 1 replicas"));
    // Without a replica requirement the same topology is healthy.
    let lenient = RouterCheck::new("postgres", router.clone()).min_serving(0);
    assert_eq!(lenient.check().await.status, HealthStatus::Healthy);

    primary.set_up(false);
    router.probe_all().await;
    let r = check.check().await;
    assert_eq!(r.status, HealthStatus::Unhealthy, "{:?}", r.reason);
}
