//! `CLUSTER NODES`, `INFO` and `CLUSTER INFO` of every node.

use crate::join::join_all;

use fred::interfaces::ClientLike;
use fred::types::{ClusterHash, CustomCommand, Value};
use sysmanage_core::Timestamp;

use super::RedisCache;
use super::classify::shared;
use crate::error::{CacheError, Result};
use crate::stats::{ClusterInfo, ClusterNode, ClusterStats, NodeReport, NodeStats};

impl RedisCache {
    /// The nodes of the cluster as `CLUSTER NODES` reports them (failed
    /// nodes included), asked of the primaries and seed nodes in turn.
    ///
    /// # Errors
    /// A backend error when no node answers.
    pub async fn cluster_nodes(&self) -> Result<Vec<ClusterNode>> {
        let _op = self.begin()?;
        let mut candidates: Vec<String> = self
            .routing()
            .primaries()
            .into_iter()
            .map(str::to_owned)
            .collect();
        candidates.extend(self.inner.config.nodes.iter().cloned());
        let mut last = None;
        for addr in candidates {
            let reply = match self.node(&addr).await {
                Ok(c) => {
                    c.custom::<String, Value>(
                        CustomCommand::new_static("CLUSTER", ClusterHash::Random, false),
                        vec!["NODES".into()],
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match reply {
                Ok(text) => return ClusterNode::parse_nodes(&text),
                Err(e) => last = Some(self.connect_failure(e, &addr)),
            }
        }
        Err(last.unwrap_or_else(|| CacheError::invalid("redis.nodes", "no node to ask")))
    }

    /// `INFO` of every node (primaries and replicas), `CLUSTER INFO`, and the
    /// healthy-node ratio. A node that does not answer is reported down, not
    /// skipped.
    ///
    /// # Errors
    /// A backend error when the node list cannot be read at all.
    pub async fn cluster_stats(&self) -> Result<ClusterStats> {
        let nodes = self.cluster_nodes().await?;
        let reports = join_all(
            nodes
                .iter()
                .map(|n| async move {
                    let res = async {
                        let c = self.node_client(&n.addr).await?;
                        let text: String = c.info(None).await.map_err(|e| CacheError::Backend {
                            backend: "redis",
                            source: shared(e),
                        })?;
                        NodeStats::parse_info(&n.addr, &text)
                    }
                    .await;
                    NodeReport::from_result(n, res)
                })
                .collect(),
        )
        .await;
        let mut info = None;
        for r in reports.iter().filter(|r| r.stats.is_some()) {
            if let Ok(c) = self.node_client(&r.node).await
                && let Ok(text) = c
                    .custom::<String, Value>(
                        CustomCommand::new_static("CLUSTER", ClusterHash::Random, false),
                        vec!["INFO".into()],
                    )
                    .await
            {
                info = ClusterInfo::parse(&text).ok();
                break;
            }
        }
        Ok(ClusterStats::new(reports, info, Timestamp::now()))
    }
}
