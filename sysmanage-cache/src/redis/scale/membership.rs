//! Reading the cluster and changing its membership: `CLUSTER NODES` of
//! every member, `CLUSTER MEET` and the wait for gossip, `CLUSTER
//! REPLICATE`, `CLUSTER FORGET` on every node and `CLUSTER RESET HARD`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::admin::{cluster, down, int, is_reply, refused, text};
use super::error::{ScaleError, ScaleResult};
use super::executor::Scaler;
use super::plan::ReplicaAttach;
use super::progress::ScaleEvent;
use super::view::{ClusterView, NodeRole, parse_nodes};
use crate::join::join_all;

/// Poll period while waiting for gossip.
const POLL: Duration = Duration::from_millis(50);

impl Scaler {
    /// `CLUSTER NODES` of one node as text.
    async fn nodes_text(&self, addr: &str) -> ScaleResult<String> {
        let v = self
            .inner
            .admin
            .run(addr, cluster("NODES", []))
            .await
            .map_err(|e| down(addr, None, e))?;
        text(&v)
            .ok_or_else(|| ScaleError::ClusterState(format!("{addr}: CLUSTER NODES is not text")))
    }

    /// The merged view of every member: the first seed that serves slots
    /// lists the members, every member is asked, and members only some
    /// of them list are asked in a second round.
    pub(super) async fn read_view(&self) -> ScaleResult<ClusterView> {
        let seeds = self.inner.admin.config().nodes.clone();
        let mut members: BTreeSet<String> = BTreeSet::new();
        let mut last = None;
        for seed in &seeds {
            match self.nodes_text(seed).await {
                Ok(t) => {
                    let lines = parse_nodes(&t)?;
                    if lines.iter().any(|l| !l.slots.is_empty()) {
                        members.extend(
                            lines
                                .iter()
                                .filter(|l| !l.handshake)
                                .filter_map(|l| l.addr.clone()),
                        );
                        break;
                    }
                }
                Err(e) => last = Some(e),
            }
        }
        if members.is_empty() {
            return Err(last.unwrap_or_else(|| {
                ScaleError::ClusterState(
                    "no seed node is a member of a cluster serving slots".into(),
                )
            }));
        }
        let mut replies: Vec<(String, Option<String>)> = Vec::new();
        let mut asked: BTreeSet<String> = BTreeSet::new();
        let mut round: Vec<String> = members.into_iter().collect();
        for _ in 0..2 {
            let got = join_all(
                round
                    .iter()
                    .map(|a| async move { (a.clone(), self.nodes_text(a).await.ok()) })
                    .collect(),
            )
            .await;
            asked.extend(round.iter().cloned());
            let mut more = BTreeSet::new();
            for (_, t) in &got {
                if let Some(t) = t {
                    for l in parse_nodes(t)? {
                        if let Some(a) = l.addr.filter(|a| !l.handshake && !asked.contains(a)) {
                            more.insert(a);
                        }
                    }
                }
            }
            replies.extend(got);
            if more.is_empty() {
                break;
            }
            round = more.into_iter().collect();
        }
        ClusterView::from_replies(&replies)
    }

    /// Checks that `addr` can join: answers, cluster-enabled, no slots, no
    /// keys, and knows no other cluster (a node that knows members of this
    /// one is a join an earlier run began).
    pub(super) async fn check_joinable(&self, addr: &str, view: &ClusterView) -> ScaleResult<()> {
        let no = |reason: String| ScaleError::NodeNotJoinable {
            node: addr.to_owned(),
            reason,
        };
        let admin = &self.inner.admin;
        let info = admin
            .run(addr, ("INFO", vec!["cluster".into()]))
            .await
            .map_err(|e| no(format!("does not answer: {e}")))?;
        if !text(&info)
            .unwrap_or_default()
            .contains("cluster_enabled:1")
        {
            return Err(no("cluster support is disabled (cluster-enabled no)".into()));
        }
        let lines = parse_nodes(&self.nodes_text(addr).await?)?;
        if let Some(me) = lines.iter().find(|l| l.myself)
            && !me.slots.is_empty()
        {
            return Err(no("it serves slots".into()));
        }
        let strangers = lines
            .iter()
            .filter(|l| !l.myself && !l.handshake)
            .filter(|l| view.node(&l.id).is_none())
            .count();
        if strangers > 0 {
            return Err(no(format!(
                "it knows {strangers} nodes that are not members of this cluster"
            )));
        }
        let keys = admin
            .run(addr, ("DBSIZE", Vec::new()))
            .await
            .map_err(|e| no(format!("DBSIZE failed: {e}")))?;
        let keys = int(&keys).unwrap_or(0);
        if keys != 0 {
            return Err(no(format!("it holds {keys} keys")));
        }
        Ok(())
    }

    /// `CLUSTER MEET <a member>` on each node of `nodes`.
    pub(super) async fn join(&self, view: &ClusterView, nodes: &[String]) -> ScaleResult<()> {
        let member = view
            .primaries()
            .find(|n| n.answered && !n.failing)
            .ok_or_else(|| ScaleError::ClusterState("no healthy primary to meet".into()))?;
        // CLUSTER MEET takes an IP address.
        let sock = tokio::net::lookup_host(member.addr.as_str())
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ScaleError::ClusterState(format!("cannot resolve {}", member.addr)))?;
        for node in nodes {
            self.inner
                .admin
                .run(
                    node,
                    cluster(
                        "MEET",
                        [sock.ip().to_string().into(), i64::from(sock.port()).into()],
                    ),
                )
                .await
                .map_err(|e| refused("CLUSTER MEET", node, e))?;
            tracing::info!(target: "sysmanage_cache::redis::scale", node = %node, "node met");
            self.emit(ScaleEvent::NodeMet { node: node.clone() });
        }
        Ok(())
    }

    /// Polls the view until `done` holds, up to the gossip timeout.
    async fn wait_view(
        &self,
        what: &str,
        done: impl Fn(&ClusterView) -> bool,
    ) -> ScaleResult<ClusterView> {
        let deadline = Instant::now() + self.inner.config.gossip_timeout;
        loop {
            let view = self.read_view().await;
            if let Ok(v) = &view
                && done(v)
            {
                return view;
            }
            if Instant::now() >= deadline {
                let detail = match &view {
                    Ok(v) if !v.disputed().is_empty() => {
                        let d = v.disputed();
                        let first: Vec<String> = d
                            .iter()
                            .take(5)
                            .map(|(s, n)| format!("slot {s} on {n}"))
                            .collect();
                        format!(
                            "; {} slot views differ from the others ({})",
                            d.len(),
                            first.join(", ")
                        )
                    }
                    Ok(v) if !v.handshaking().is_empty() => {
                        format!("; still in handshake: {:?}", v.handshaking())
                    }
                    Err(e) => format!("; {e}"),
                    Ok(_) => String::new(),
                };
                return Err(ScaleError::ClusterState(format!(
                    "{what} did not happen within {:?}{detail}",
                    self.inner.config.gossip_timeout
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every member knows `nodes` and the members agree.
    pub(super) async fn wait_joined(&self, nodes: &[String]) -> ScaleResult<ClusterView> {
        let view = self
            .wait_view("gossip of the joined nodes", |v| {
                v.agreed()
                    && nodes
                        .iter()
                        .all(|n| v.node_at(n).is_some_and(|x| x.answered))
            })
            .await?;
        self.wait_serving(nodes).await?;
        self.emit(ScaleEvent::Joined {
            nodes: nodes.to_vec(),
        });
        Ok(view)
    }

    /// Waits until each node of `nodes` reports `cluster_state:ok`. A
    /// primary that just joined keeps its state `fail` for about
    /// `cluster-node-timeout` after it last saw itself in a minority (it
    /// was alone), and answers `CLUSTERDOWN` meanwhile, `MIGRATE`'s
    /// restores included.
    pub(super) async fn wait_serving(&self, nodes: &[String]) -> ScaleResult<()> {
        let deadline = Instant::now() + self.inner.config.gossip_timeout;
        for node in nodes {
            loop {
                let ok = self
                    .inner
                    .admin
                    .run(node, cluster("INFO", []))
                    .await
                    .ok()
                    .and_then(|v| text(&v))
                    .is_some_and(|t| t.contains("cluster_state:ok"));
                if ok {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(ScaleError::ClusterState(format!(
                        "{node} did not report cluster_state:ok within {:?}",
                        self.inner.config.gossip_timeout
                    )));
                }
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(())
    }

    /// Waits until every member agrees on every slot's owner.
    pub(super) async fn wait_agreed(&self) -> ScaleResult<ClusterView> {
        self.wait_view("agreement on slot owners", ClusterView::agreed)
            .await
    }

    /// `CLUSTER REPLICATE` for each attachment, then waits until every
    /// member sees it and the replication link is up.
    pub(super) async fn attach(
        &self,
        view: &ClusterView,
        attach: &[ReplicaAttach],
    ) -> ScaleResult<ClusterView> {
        let admin = &self.inner.admin;
        for a in attach {
            let p = view.node_at(&a.primary).ok_or_else(|| {
                ScaleError::ClusterState(format!("primary {} is not a member", a.primary))
            })?;
            admin
                .run(&a.replica, cluster("REPLICATE", [p.id.as_str().into()]))
                .await
                .map_err(|e| refused("CLUSTER REPLICATE", &a.replica, e))?;
        }
        let view = self
            .wait_view("attachment of the replicas", |v| {
                v.agreed()
                    && attach.iter().all(|a| {
                        let p = v.node_at(&a.primary).map(|p| p.id.as_str());
                        v.node_at(&a.replica).is_some_and(|r| {
                            r.role == NodeRole::Replica && r.primary_id.as_deref() == p
                        })
                    })
            })
            .await?;
        let deadline = Instant::now() + self.inner.config.gossip_timeout;
        for a in attach {
            loop {
                let up = admin
                    .run(&a.replica, ("INFO", vec!["replication".into()]))
                    .await
                    .ok()
                    .and_then(|v| text(&v))
                    .is_some_and(|t| t.contains("master_link_status:up"));
                if up {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(ScaleError::ClusterState(format!(
                        "replica {} did not sync with {} within {:?}",
                        a.replica, a.primary, self.inner.config.gossip_timeout
                    )));
                }
                tokio::time::sleep(POLL).await;
            }
            tracing::info!(target: "sysmanage_cache::redis::scale", replica = %a.replica, primary = %a.primary, "replica attached");
            self.emit(ScaleEvent::ReplicaAttached {
                replica: a.replica.clone(),
                primary: a.primary.clone(),
            });
        }
        Ok(view)
    }

    /// Forgets the member at `addr` on every other member, then resets it
    /// (with [`ScaleConfig::reset_removed`](super::ScaleConfig::reset_removed)).
    pub(super) async fn forget(&self, view: &ClusterView, addr: &str) -> ScaleResult<()> {
        let node = view
            .node_at(addr)
            .ok_or_else(|| ScaleError::ClusterState(format!("{addr} is not a member")))?;
        if node.slots > 0 {
            return Err(ScaleError::ClusterState(format!(
                "{addr} still serves {} slots; it cannot be forgotten",
                node.slots
            )));
        }
        let others: Vec<&str> = view
            .nodes()
            .iter()
            .filter(|n| n.id != node.id)
            .map(|n| n.addr.as_str())
            .collect();
        if let Some(n) = view.nodes().iter().find(|n| n.id != node.id && !n.answered) {
            return Err(ScaleError::NodeDown {
                node: n.addr.clone(),
                slot: None,
                source: std::sync::Arc::new(std::io::Error::other(
                    "a member that does not answer cannot forget a removed node",
                )),
            });
        }
        let admin = &self.inner.admin;
        // Every other node, at once: the 60 s ban each FORGET starts must
        // cover the whole round, and the reset below.
        let results = join_all(
            others
                .iter()
                .map(|o| async move {
                    (
                        *o,
                        admin
                            .run(o, cluster("FORGET", [node.id.as_str().into()]))
                            .await,
                    )
                })
                .collect(),
        )
        .await;
        for (o, r) in results {
            if let Err(e) = r {
                // Already forgotten (a rerun) is fine.
                if is_reply(&e) && e.details().contains("Unknown node") {
                    continue;
                }
                return Err(refused("CLUSTER FORGET", o, e));
            }
        }
        tracing::info!(target: "sysmanage_cache::redis::scale", node = %addr, "node forgotten");
        self.emit(ScaleEvent::NodeForgotten {
            node: addr.to_owned(),
        });
        if self.inner.config.reset_removed {
            admin
                .run(addr, cluster("RESET", ["HARD".into()]))
                .await
                .map_err(|e| refused("CLUSTER RESET HARD", addr, e))?;
            admin.forget_client(addr);
            tracing::info!(target: "sysmanage_cache::redis::scale", node = %addr, "node reset");
            self.emit(ScaleEvent::NodeReset {
                node: addr.to_owned(),
            });
        }
        Ok(())
    }
}
