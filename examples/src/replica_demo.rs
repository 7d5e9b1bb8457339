//! Replica routing over in-memory nodes: no servers needed.

use sysmanage_db::replica::{
    Consistency, MemoryCluster, MemoryError, NodeSpec, NodeState, ReplicaRouter,
};

/// Routes reads over two in-memory replicas: spreads plain reads, keeps
/// read-your-writes with a WAL token while one replica's replay is paused,
/// and fails over reads when a replica goes down.
pub async fn demo_replicas() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = MemoryCluster::new();
    let (primary, east, west) = (
        cluster.add_primary(),
        cluster.add_replica(),
        cluster.add_replica(),
    );
    let router = ReplicaRouter::builder()
        .primary(NodeSpec::new("primary", primary))
        .replica(NodeSpec::new("east", east.clone()))
        .replica(NodeSpec::new("west", west.clone()))
        .build()
        .await?;

    // Writes go to the primary; the token names the WAL position after commit.
    west.pause_replay();
    let ((), token) = router
        .write_with_token(|db| async move { db.write("host:42", "online").map(drop) })
        .await?;
    cluster.replicate(); // east replays the write; west is paused
    router.probe_all().await;
    println!("token after the write: {token} (keep it in the session or a cookie)");

    // Read-your-writes: only a replica that has replayed the token qualifies.
    let mut served = std::collections::BTreeMap::new();
    for _ in 0..100 {
        let (node, value) = router
            .read(Consistency::at_least(token), |db| async move {
                db.get("host:42").map(|v| (db.id(), v))
            })
            .await?;
        assert_eq!(value.as_deref(), Some("online"));
        *served.entry(node).or_insert(0) += 1;
    }
    let mut by_node: Vec<_> = served.iter().collect();
    by_node.sort();
    let by_node: Vec<String> = by_node
        .iter()
        .map(|(n, c)| format!("node {n}: {c}"))
        .collect();
    println!(
        "read-your-writes reads served: {} (east is node 1; west's replay is paused)",
        by_node.join(", ")
    );

    // A replica dying under load costs no failed read: the read is retried
    // on another node (here the primary, the only other one with the write).
    east.set_up(false);
    let value = router
        .read(Consistency::at_least(token), |db| async move {
            db.get("host:42")
        })
        .await?;
    assert_eq!(value.as_deref(), Some("online"));
    let status = router.status();
    let east_state = &status.node("east").ok_or("east missing")?.state;
    assert!(matches!(east_state, NodeState::Banned { .. }));
    let state = match east_state {
        NodeState::Banned { reason, until } => format!(
            "banned ({}) for {} ms more",
            reason.label().replace('_', " "),
            until
                .saturating_since(sysmanage_core::Timestamp::now())
                .as_millis()
        ),
        other => format!("{other:?}"),
    };
    println!(
        "east went down mid-read and is now {state}; reads {}, retried {}, fell back to the primary {}",
        status.reads, status.retries, status.fallbacks
    );

    // Draining a node: weight 0 takes it out of rotation without removing it.
    router.set_weight("west", 0.0)?;
    let id = router
        .read(Consistency::Any, |db| async move {
            Ok::<_, MemoryError>(db.id())
        })
        .await?;
    println!("with east down and west drained, the primary (id {id}) serves");
    Ok(())
}
