//! Shared by the live fault tests.

use std::time::{Duration, Instant};

use fred::interfaces::ClientLike;
use sysmanage_cache::RedisCache;
use sysmanage_cache::stats::{ClusterNode, Role};

/// The cluster's layout once every node agrees with it: each primary with
/// slots says it is a primary and each replica says it is a replica (a node
/// restarted by an earlier test may still advertise its old role for a
/// moment, and a test that kills "the primary of these slots" must not
/// kill a node that is no longer one).
///
/// # Panics
/// When the layout does not settle within 30 s, or a node is failing.
pub(crate) async fn settled_layout(cache: &RedisCache) -> Vec<ClusterNode> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = cache.refresh_now().await;
        let nodes = cache.cluster_nodes().await.expect("CLUSTER NODES");
        let mut agree = nodes.iter().all(|n| !n.failing);
        for n in nodes
            .iter()
            .filter(|n| n.slot_count() > 0 || n.role == Role::Replica)
        {
            if !agree {
                break;
            }
            let Ok(client) = cache.node_client(&n.addr).await else {
                agree = false;
                break;
            };
            let info: String = client
                .info(Some(fred::types::InfoKind::Replication))
                .await
                .unwrap_or_default();
            let says = if info.contains("role:master") {
                Role::Primary
            } else {
                Role::Replica
            };
            agree &= says == n.role;
        }
        let routed = cache.routing();
        agree &= nodes.iter().filter(|n| n.slot_count() > 0).all(|n| {
            n.slots
                .iter()
                .all(|&(a, _)| routed.node_for_slot(a) == Some(n.addr.as_str()))
        });
        if agree {
            return nodes;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster layout did not settle: {nodes:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
