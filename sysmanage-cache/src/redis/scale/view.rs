//! The cluster as the executor sees it: `CLUSTER NODES` of every node,
//! merged into one view with slot owners, open (half-migrated) slots and
//! whether the nodes agree. Pure: built from reply texts, so tests feed it
//! recorded replies.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::error::{ScaleError, ScaleResult};
use crate::slot::SLOT_COUNT;

/// One line of `CLUSTER NODES`, with the markers the stats parser skips.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeLine {
    pub(crate) id: String,
    /// `host:port`; `None` for a node without an address (`noaddr`, `:0`).
    pub(crate) addr: Option<String>,
    pub(crate) myself: bool,
    pub(crate) primary: bool,
    pub(crate) primary_id: Option<String>,
    /// `fail` or `fail?`.
    pub(crate) failing: bool,
    /// Still in the `MEET` handshake.
    pub(crate) handshake: bool,
    pub(crate) config_epoch: u64,
    pub(crate) slots: Vec<(u16, u16)>,
    /// Slots this node migrates, and to which node id (`[s->-id]`).
    pub(crate) migrating: Vec<(u16, String)>,
    /// Slots this node imports, and from which node id (`[s-<-id]`).
    pub(crate) importing: Vec<(u16, String)>,
}

fn bad(line: &str, what: &str) -> ScaleError {
    ScaleError::ClusterState(format!(
        "malformed CLUSTER NODES line ({what}): {:?}",
        line.chars().take(200).collect::<String>()
    ))
}

fn slot_number(s: &str, line: &str) -> ScaleResult<u16> {
    s.parse::<u16>()
        .ok()
        .filter(|&n| n < SLOT_COUNT)
        .ok_or_else(|| bad(line, "slot out of range"))
}

/// Parses the reply of `CLUSTER NODES`.
pub(crate) fn parse_nodes(text: &str) -> ScaleResult<Vec<NodeLine>> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            return Err(bad(line, "fewer than 8 fields"));
        }
        let host_port = f[1].split(['@', ',']).next().unwrap_or("");
        let addr = match host_port.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p != "0" && p.parse::<u16>().is_ok() => {
                Some(host_port.to_owned())
            }
            _ => None,
        };
        let flags: Vec<&str> = f[2].split(',').collect();
        let has = |x: &str| flags.contains(&x);
        let primary_id = (f[3] != "-").then(|| f[3].to_owned());
        let config_epoch = f[6].parse().map_err(|_| bad(line, "config epoch"))?;
        let (mut slots, mut migrating, mut importing) = (Vec::new(), Vec::new(), Vec::new());
        for s in &f[8..] {
            if let Some(inner) = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
                if let Some((n, id)) = inner.split_once("->-") {
                    migrating.push((slot_number(n, line)?, id.to_owned()));
                } else if let Some((n, id)) = inner.split_once("-<-") {
                    importing.push((slot_number(n, line)?, id.to_owned()));
                } else {
                    return Err(bad(line, "slot marker"));
                }
            } else if let Some((a, b)) = s.split_once('-') {
                let (a, b) = (slot_number(a, line)?, slot_number(b, line)?);
                if a > b {
                    return Err(bad(line, "slot range ends before it starts"));
                }
                slots.push((a, b));
            } else {
                let n = slot_number(s, line)?;
                slots.push((n, n));
            }
        }
        out.push(NodeLine {
            id: f[0].to_owned(),
            addr,
            myself: has("myself"),
            primary: has("master"),
            primary_id,
            failing: has("fail") || has("fail?"),
            handshake: has("handshake"),
            config_epoch,
            slots,
            migrating,
            importing,
        });
    }
    Ok(out)
}

/// A node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeRole {
    /// A primary (with or without slots).
    Primary,
    /// A replica of [`ViewNode::primary_id`].
    Replica,
}

/// One member of the cluster in a [`ClusterView`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ViewNode {
    /// The 40-character node id.
    pub id: String,
    /// `host:port`.
    pub addr: String,
    /// Primary or replica, as the node itself says when it answered.
    pub role: NodeRole,
    /// A replica's primary.
    pub primary_id: Option<String>,
    /// Flagged `fail`/`fail?` by some node.
    pub failing: bool,
    /// Whether the node answered `CLUSTER NODES`.
    pub answered: bool,
    /// Its config epoch.
    pub config_epoch: u64,
    /// Slots it serves in the merged view.
    pub slots: u32,
}

/// Which side of a half-migrated slot a node reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "side")]
#[non_exhaustive]
pub enum OpenSide {
    /// `CLUSTER SETSLOT … MIGRATING <to>` on this node.
    Migrating {
        /// The node id it migrates to.
        to: String,
    },
    /// `CLUSTER SETSLOT … IMPORTING <from>` on this node.
    Importing {
        /// The node id it imports from.
        from: String,
    },
}

/// A slot some node reports as migrating or importing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OpenSlot {
    /// The slot.
    pub slot: u16,
    /// The reporting node's id.
    pub node: String,
    /// Which side it is.
    pub side: OpenSide,
}

/// The merged view of every node's `CLUSTER NODES`.
///
/// Slot owners: each node's claim (its own line in every reply) with its
/// config epoch; the highest epoch wins a slot, as in Redis' own conflict
/// rule. Open slots come from each node's own line only (Redis shows
/// `MIGRATING`/`IMPORTING` markers just for `myself`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    nodes: Vec<ViewNode>,
    owners: Vec<Option<usize>>,
    open: Vec<OpenSlot>,
    agreed: bool,
    disputed: Vec<(u16, String)>,
    handshaking: Vec<String>,
    unreachable: Vec<String>,
}

impl ClusterView {
    /// Builds the view from `(address asked, reply)` pairs; a reply of
    /// `None` marks a node that did not answer.
    ///
    /// # Errors
    /// [`ScaleError::ClusterState`] for a malformed reply or when no node
    /// answered.
    pub fn from_replies(replies: &[(String, Option<String>)]) -> ScaleResult<Self> {
        let mut parsed = Vec::new();
        let mut unreachable = Vec::new();
        for (addr, text) in replies {
            match text {
                Some(t) => parsed.push((addr.clone(), parse_nodes(t)?)),
                None => unreachable.push(addr.clone()),
            }
        }
        if parsed.is_empty() {
            return Err(ScaleError::ClusterState(
                "no node answered CLUSTER NODES".into(),
            ));
        }
        Ok(Self::merge(&parsed, unreachable))
    }

    fn merge(parsed: &[(String, Vec<NodeLine>)], unreachable: Vec<String>) -> Self {
        // Nodes by id: the node's own line when it answered, else the first
        // line about it from another node.
        let mut lines: BTreeMap<&str, (&NodeLine, bool)> = BTreeMap::new();
        let mut handshaking = BTreeSet::new();
        for (_, ls) in parsed {
            for l in ls {
                if l.handshake {
                    if let Some(a) = &l.addr {
                        handshaking.insert(a.clone());
                    }
                    continue;
                }
                if l.addr.is_none() {
                    continue;
                }
                let e = lines.entry(l.id.as_str()).or_insert((l, l.myself));
                if l.myself && !e.1 {
                    *e = (l, true);
                }
            }
        }
        let mut nodes: Vec<ViewNode> = lines
            .values()
            .map(|(l, own)| ViewNode {
                id: l.id.clone(),
                addr: l.addr.clone().unwrap_or_default(),
                role: if l.primary {
                    NodeRole::Primary
                } else {
                    NodeRole::Replica
                },
                primary_id: if l.primary {
                    None
                } else {
                    l.primary_id.clone()
                },
                failing: false,
                answered: *own,
                config_epoch: l.config_epoch,
                slots: 0,
            })
            .collect();
        nodes.sort_by(|a, b| a.addr.cmp(&b.addr).then(a.id.cmp(&b.id)));
        let index: BTreeMap<String, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect();
        for (_, ls) in parsed {
            for l in ls.iter().filter(|l| l.failing && !l.myself) {
                if let Some(&i) = index.get(&l.id) {
                    nodes[i].failing = true;
                }
            }
        }
        // Slot claims: (epoch, claimed by itself, node index).
        let mut best: Vec<Option<(u64, bool, usize)>> = vec![None; usize::from(SLOT_COUNT)];
        let mut open = Vec::new();
        for (_, ls) in parsed {
            for l in ls {
                let Some(&i) = index.get(&l.id) else {
                    continue;
                };
                // Another node's view of a node that answered itself is
                // older or equal: only its own line counts then.
                if nodes[i].answered && !l.myself {
                    continue;
                }
                if l.primary {
                    let claim = (l.config_epoch, l.myself, i);
                    for &(a, b) in &l.slots {
                        for s in a..=b {
                            let cur = &mut best[usize::from(s)];
                            let better = match cur {
                                None => true,
                                Some((e, own, j)) => {
                                    (claim.0, claim.1, std::cmp::Reverse(claim.2))
                                        > (*e, *own, std::cmp::Reverse(*j))
                                }
                            };
                            if better {
                                *cur = Some(claim);
                            }
                        }
                    }
                }
                if l.myself {
                    for (s, to) in &l.migrating {
                        open.push(OpenSlot {
                            slot: *s,
                            node: l.id.clone(),
                            side: OpenSide::Migrating { to: to.clone() },
                        });
                    }
                    for (s, from) in &l.importing {
                        open.push(OpenSlot {
                            slot: *s,
                            node: l.id.clone(),
                            side: OpenSide::Importing { from: from.clone() },
                        });
                    }
                }
            }
        }
        open.sort_by(|a, b| a.slot.cmp(&b.slot).then(a.node.cmp(&b.node)));
        open.dedup();
        let owners: Vec<Option<usize>> = best.iter().map(|b| b.map(|(_, _, i)| i)).collect();
        for o in owners.iter().flatten() {
            nodes[*o].slots += 1;
        }
        // Agreement: every answering node's table equals the merged one, and
        // every answering node knows every member.
        let mut agreed = true;
        let mut disputed = BTreeSet::new();
        for (asked, ls) in parsed {
            let mut table: Vec<Option<&str>> = vec![None; usize::from(SLOT_COUNT)];
            let mut known = 0;
            for l in ls.iter().filter(|l| !l.handshake && l.addr.is_some()) {
                known += usize::from(index.contains_key(&l.id));
                if l.primary {
                    for &(a, b) in &l.slots {
                        for s in a..=b {
                            table[usize::from(s)] = Some(l.id.as_str());
                        }
                    }
                }
            }
            agreed &= known == nodes.len();
            for (s, (t, o)) in table.iter().zip(&owners).enumerate() {
                if *t != o.map(|i| nodes[i].id.as_str()) {
                    agreed = false;
                    disputed.insert((s as u16, asked.clone()));
                }
            }
        }
        Self {
            nodes,
            owners,
            open,
            agreed: agreed && handshaking.is_empty(),
            disputed: disputed.into_iter().collect(),
            handshaking: handshaking.into_iter().collect(),
            unreachable,
        }
    }

    /// Every member, sorted by address.
    pub fn nodes(&self) -> &[ViewNode] {
        &self.nodes
    }

    /// The member with this id.
    pub fn node(&self, id: &str) -> Option<&ViewNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The member at this address.
    pub fn node_at(&self, addr: &str) -> Option<&ViewNode> {
        self.nodes.iter().find(|n| n.addr == addr)
    }

    /// The node serving `slot`.
    pub fn owner(&self, slot: u16) -> Option<&ViewNode> {
        self.owners
            .get(usize::from(slot))
            .copied()
            .flatten()
            .map(|i| &self.nodes[i])
    }

    /// Primaries (with or without slots).
    pub fn primaries(&self) -> impl Iterator<Item = &ViewNode> {
        self.nodes.iter().filter(|n| n.role == NodeRole::Primary)
    }

    /// The replicas of the primary with id `primary_id`.
    pub fn replicas_of<'a>(&'a self, primary_id: &'a str) -> impl Iterator<Item = &'a ViewNode> {
        self.nodes
            .iter()
            .filter(move |n| n.primary_id.as_deref() == Some(primary_id))
    }

    /// Slots some node reports as migrating or importing.
    pub fn open_slots(&self) -> &[OpenSlot] {
        &self.open
    }

    /// Whether every answering node agrees on every slot's owner and knows
    /// every member, with no `MEET` handshake in progress.
    pub fn agreed(&self) -> bool {
        self.agreed
    }

    /// Slots some node sees served otherwise than the merged view, with
    /// the node that disagrees (`host:port` as asked).
    pub fn disputed(&self) -> &[(u16, String)] {
        &self.disputed
    }

    /// Addresses still in the `MEET` handshake.
    pub fn handshaking(&self) -> &[String] {
        &self.handshaking
    }

    /// Addresses asked that did not answer.
    pub fn unreachable(&self) -> &[String] {
        &self.unreachable
    }

    /// The slots no node serves.
    pub fn uncovered(&self) -> Vec<u16> {
        (0..SLOT_COUNT)
            .filter(|&s| self.owners[usize::from(s)].is_none())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn parses_markers_epochs_and_flags() {
        let text = format!(
            "{A} 127.0.0.1:7000@17000,host-a myself,master - 0 0 5 connected 0-10 12 [11->-{B}] [20-<-{B}]\n\
             {B} :0@0 master,fail,noaddr - 0 0 2 disconnected\n\
             cccc 127.0.0.1:7002@17002 handshake - 0 0 0 connected\n"
        );
        let ls = parse_nodes(&text).unwrap();
        assert_eq!(ls.len(), 3);
        assert_eq!(ls[0].addr.as_deref(), Some("127.0.0.1:7000"));
        assert!(ls[0].myself && ls[0].primary);
        assert_eq!(ls[0].config_epoch, 5);
        assert_eq!(ls[0].slots, vec![(0, 10), (12, 12)]);
        assert_eq!(ls[0].migrating, vec![(11, B.to_owned())]);
        assert_eq!(ls[0].importing, vec![(20, B.to_owned())]);
        assert_eq!(ls[1].addr, None);
        assert!(ls[1].failing);
        assert!(ls[2].handshake);
        for broken in [
            "x 127.0.0.1:1@2 master - 0 0 1",
            "x 127.0.0.1:1@2 master - 0 0 one connected",
            "x 127.0.0.1:1@2 master - 0 0 1 connected 16384",
            "x 127.0.0.1:1@2 master - 0 0 1 connected 9-3",
            "x 127.0.0.1:1@2 master - 0 0 1 connected [5-?-y]",
        ] {
            assert!(parse_nodes(broken).is_err(), "{broken}");
        }
    }

    #[test]
    fn the_highest_epoch_wins_a_contested_slot_and_disagreement_is_seen() {
        // A still claims 0-8191 (epoch 1); B took 100 with epoch 7, and A's
        // view of B is stale.
        let from_a = format!(
            "{A} 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-8191\n\
             {B} 127.0.0.1:7001@17001 master - 0 0 2 connected 8192-16383\n"
        );
        let from_b = format!(
            "{A} 127.0.0.1:7000@17000 master - 0 0 1 connected 0-99 101-8191\n\
             {B} 127.0.0.1:7001@17001 myself,master - 0 0 7 connected 100 8192-16383\n"
        );
        let v = ClusterView::from_replies(&[
            ("127.0.0.1:7000".into(), Some(from_a)),
            ("127.0.0.1:7001".into(), Some(from_b.clone())),
        ])
        .unwrap();
        assert_eq!(v.owner(100).unwrap().id, B);
        assert_eq!(v.owner(99).unwrap().id, A);
        assert_eq!(v.owner(8192).unwrap().id, B);
        assert!(!v.agreed(), "A's table still has 100");
        assert_eq!(v.disputed(), [(100, "127.0.0.1:7000".to_owned())]);
        assert!(v.uncovered().is_empty());
        assert_eq!(v.node(A).unwrap().slots, 8191);
        // B alone agrees with itself; A did not answer: its claims come from B's view.
        let v = ClusterView::from_replies(&[
            ("127.0.0.1:7000".into(), None),
            ("127.0.0.1:7001".into(), Some(from_b)),
        ])
        .unwrap();
        assert!(v.agreed());
        assert_eq!(v.owner(5).unwrap().id, A);
        assert!(!v.node(A).unwrap().answered);
        assert_eq!(v.unreachable(), ["127.0.0.1:7000"]);
    }

    #[test]
    fn open_slots_come_from_each_nodes_own_line() {
        let from_a = format!(
            "{A} 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-8191 [5->-{B}]\n\
             {B} 127.0.0.1:7001@17001 master - 0 0 2 connected 8192-16383\n"
        );
        let from_b = format!(
            "{A} 127.0.0.1:7000@17000 master - 0 0 1 connected 0-8191\n\
             {B} 127.0.0.1:7001@17001 myself,master - 0 0 2 connected 8192-16383 [5-<-{A}]\n"
        );
        let v =
            ClusterView::from_replies(&[("a".into(), Some(from_a)), ("b".into(), Some(from_b))])
                .unwrap();
        assert_eq!(
            v.open_slots(),
            [
                OpenSlot {
                    slot: 5,
                    node: A.into(),
                    side: OpenSide::Migrating { to: B.into() }
                },
                OpenSlot {
                    slot: 5,
                    node: B.into(),
                    side: OpenSide::Importing { from: A.into() }
                },
            ]
        );
        assert!(v.agreed());
    }

    #[test]
    fn replicas_handshakes_and_unknown_members() {
        let text = format!(
            "{A} 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-16383\n\
             {B} 127.0.0.1:7001@17001 slave {A} 0 0 1 connected\n\
             dddd 127.0.0.1:7009@17009 handshake - 0 0 0 connected\n"
        );
        let v = ClusterView::from_replies(&[("a".into(), Some(text))]).unwrap();
        assert_eq!(v.nodes().len(), 2);
        assert_eq!(v.replicas_of(A).count(), 1);
        assert_eq!(v.handshaking(), ["127.0.0.1:7009"]);
        assert!(!v.agreed());
        assert_eq!(v.primaries().count(), 1);
        assert!(ClusterView::from_replies(&[("a".into(), None)]).is_err());
    }
}
