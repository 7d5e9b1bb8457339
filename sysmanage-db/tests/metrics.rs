//! What the routers record through the `metrics` facade, with the names,
//! labels and values the crate documents.

use sysmanage_db::replica::{Consistency, MemoryCluster, NodeSpec, ReplicaRouter};
use sysmanage_db::shard::MemoryNodeSet;
use sysmanage_db::telemetry::{self, METRICS};
use sysmanage_db::{PgHash, ShardRouter};
use sysmanage_test::metrics::Capture;

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn replica_router_records_reads_writes_latency_lag_and_fallbacks() {
    let capture = Capture::new();
    capture.run(|| {
        block_on(async {
            let cluster = MemoryCluster::new();
            let (primary, fast, paused) = (
                cluster.add_primary(),
                cluster.add_replica(),
                cluster.add_replica(),
            );
            let router = ReplicaRouter::builder()
                .primary(NodeSpec::new("primary", primary))
                .replica(NodeSpec::new("fast", fast))
                .replica(NodeSpec::new("paused", paused.clone()))
                .monitor(false)
                .build()
                .await
                .unwrap();
            router.probe_all().await;
            for i in 0..5 {
                router
                    .write(|db| async move { db.write("k", &i.to_string()).map(drop) })
                    .await
                    .unwrap();
            }
            cluster.replicate();
            router.probe_all().await;
            for _ in 0..10 {
                router
                    .read(Consistency::Any, |db| async move { db.get("k") })
                    .await
                    .unwrap();
            }
            // No replica has the next write: a read-your-writes read with
            // no wait falls back to the primary.
            paused.pause_replay();
            let ((), token) = router
                .write_with_token(|db| async move { db.write("k", "new").map(drop) })
                .await
                .unwrap();
            router
                .read(
                    Consistency::at_least(token),
                    |db| async move { db.get("k") },
                )
                .await
                .unwrap();
            cluster.replicate();
            // Twice: lag is measured against the primary's previous sample.
            router.probe_all().await;
            router.probe_all().await;
        });
    });

    let writes = capture
        .value(telemetry::REPLICA_WRITES, &[("node", "primary")])
        .unwrap();
    assert_eq!(writes, 6.0);
    let replica_reads: f64 = ["fast", "paused"]
        .iter()
        .filter_map(|n| {
            capture.value(
                telemetry::REPLICA_READS,
                &[("node", n), ("consistency", "any")],
            )
        })
        .sum();
    assert_eq!(replica_reads, 10.0);
    assert_eq!(
        capture.value(
            telemetry::REPLICA_READS,
            &[("node", "primary"), ("consistency", "at_least")]
        ),
        Some(1.0)
    );
    assert_eq!(
        capture.value(telemetry::REPLICA_FALLBACKS, &[("consistency", "at_least")]),
        Some(1.0)
    );
    // One latency observation per query, split by kind.
    assert_eq!(
        capture.value(telemetry::REPLICA_QUERY_DURATION, &[("kind", "write")]),
        Some(6.0)
    );
    assert_eq!(
        capture.value(telemetry::REPLICA_QUERY_DURATION, &[("kind", "read")]),
        Some(11.0)
    );
    // Lag is known for both replicas after the probes; the paused one lags.
    assert_eq!(
        capture.value(telemetry::REPLICA_LAG_BYTES, &[("node", "fast")]),
        Some(0.0)
    );
    assert!(
        capture
            .value(telemetry::REPLICA_LAG_BYTES, &[("node", "paused")])
            .unwrap()
            > 0.0
    );
    // Every series recorded is a documented metric with its documented labels.
    capture.assert_documented(METRICS);
}

#[test]
fn a_failing_node_is_counted_as_errors_and_a_ban() {
    let capture = Capture::new();
    capture.run(|| {
        block_on(async {
            let cluster = MemoryCluster::new();
            let (primary, replica) = (cluster.add_primary(), cluster.add_replica());
            let router = ReplicaRouter::builder()
                .primary(NodeSpec::new("primary", primary))
                .replica(NodeSpec::new("replica", replica.clone()))
                .monitor(false)
                .build()
                .await
                .unwrap();
            router.probe_all().await;
            replica.set_up(false);
            router.probe_all().await;
        });
    });
    assert_eq!(
        capture.value(
            telemetry::REPLICA_BANS,
            &[("node", "replica"), ("reason", "probe_failed")]
        ),
        Some(1.0)
    );
}

#[test]
fn shard_router_records_queries_failures_and_fan_outs() {
    let capture = Capture::new();
    capture.run(|| {
        block_on(async {
            let down = MemoryNodeSet::<i64>::new("db1");
            let shards = ShardRouter::builder(PgHash::new(4).unwrap())
                .node_set("db0", MemoryNodeSet::<i64>::new("db0"))
                .node_set("db1", down.clone())
                .build()
                .unwrap();
            let fan = shards
                .fan_out(|ctx| async move { ctx.nodes().query(|rows| rows.len()).await })
                .await;
            assert_eq!(fan.failed_shards().len(), 0);
            down.set_down("maintenance");
            let fan = shards
                .fan_out(|ctx| async move { ctx.nodes().query(|rows| rows.len()).await })
                .await;
            assert_eq!(fan.failed_shards().len(), 2);
        });
    });
    let queries: f64 = (0..4)
        .map(|s| {
            capture
                .value(telemetry::SHARD_QUERIES, &[("shard", &s.to_string())])
                .unwrap()
        })
        .sum();
    assert_eq!(queries, 8.0);
    assert_eq!(
        capture.value(telemetry::SHARD_FAILURES, &[("kind", "error")]),
        Some(2.0)
    );
    assert_eq!(
        capture.value(telemetry::SHARD_FAN_OUT_DURATION, &[]),
        Some(2.0)
    );
    assert_eq!(
        capture.value(telemetry::SHARD_FAN_OUT_FAILED, &[]),
        Some(2.0)
    );
}
