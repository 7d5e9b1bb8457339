//! The plan: from a cluster view, a target and measured slot weights to
//! the nodes to join, the replicas to attach, the slot moves (with the keys
//! and bytes they carry) and the nodes to forget. Pure.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::error::{ScaleError, ScaleResult};
use super::resume::{CloseAction, close_actions};
use super::target::{Balance, ScaleTarget};
use super::view::{ClusterView, NodeRole, OpenSlot};
use super::weights::SlotWeights;
use crate::slot::SLOT_COUNT;

/// One slot to move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SlotMove {
    /// The slot.
    pub slot: u16,
    /// The primary that serves it now, `host:port`.
    pub from: String,
    /// The primary that will serve it, `host:port`.
    pub to: String,
    /// Keys measured in it.
    pub keys: u64,
    /// Bytes measured in it.
    pub bytes: u64,
}

/// A primary's load before or after the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeLoad {
    /// `host:port`.
    pub node: String,
    /// Slots served.
    pub slots: u32,
    /// Keys in them (measured).
    pub keys: u64,
    /// Bytes in them (measured).
    pub bytes: u64,
    /// Capacity weight (1 unless the target says otherwise; 0 for a
    /// leaving node).
    pub weight: f64,
}

/// A replica to attach to a primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReplicaAttach {
    /// The replica, `host:port`.
    pub replica: String,
    /// Its primary, `host:port`.
    pub primary: String,
}

/// What a run will do, in order: join nodes, attach replicas, close slots
/// an earlier run left open, move slots, forget removed nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Plan {
    /// What the slots are balanced by.
    pub balance: Balance,
    /// Nodes to `CLUSTER MEET` (primaries first).
    pub join: Vec<String>,
    /// Replicas to attach.
    pub replicate: Vec<ReplicaAttach>,
    /// Slots an earlier run left half-migrated; closed before anything else moves.
    pub open: Vec<OpenSlot>,
    /// Slot moves.
    pub moves: Vec<SlotMove>,
    /// Keys the moves carry (as measured).
    pub expected_keys: u64,
    /// Bytes the moves carry (as measured).
    pub expected_bytes: u64,
    /// Members to forget (`CLUSTER FORGET` on every other node) once they
    /// serve no slot.
    pub forget: Vec<String>,
    /// Nodes of the target's `remove` list that are members no more.
    pub already_removed: Vec<String>,
    /// Primaries before the moves (members with slots, nodes joining).
    pub before: Vec<NodeLoad>,
    /// Primaries after the moves.
    pub after: Vec<NodeLoad>,
    /// Whether keys and bytes were measured (else they read 0).
    pub measured: bool,
}

impl Plan {
    /// Whether the run has nothing left to do.
    pub fn is_empty(&self) -> bool {
        self.join.is_empty()
            && self.replicate.is_empty()
            && self.open.is_empty()
            && self.moves.is_empty()
            && self.forget.is_empty()
    }

    /// One line: the counts of each kind of step.
    pub fn summary(&self) -> String {
        format!(
            "join {} nodes, attach {} replicas, close {} open slots, move {} slots ({} keys, {} bytes), forget {} nodes",
            self.join.len(),
            self.replicate.len(),
            self.open.len(),
            self.moves.len(),
            self.expected_keys,
            self.expected_bytes,
            self.forget.len()
        )
    }
}

/// A primary taking part in the balance.
#[derive(Clone, Debug)]
struct Member {
    addr: String,
    weight: f64,
    leaving: bool,
}

/// The plan for `target` on `view` with `weights`. `tolerance` and
/// `slot_floor` are [`ScaleConfig`](super::ScaleConfig)'s.
///
/// # Errors
/// [`ScaleError::InvalidTarget`] for a target the cluster cannot meet (a
/// node to add that is a replica elsewhere, no primary left, weights or
/// assignments naming nodes that will not serve slots, a weighted balance
/// without measurements); [`ScaleError::ClusterState`] for uncovered slots
/// or open slots that cannot be closed.
pub fn compute_plan(
    view: &ClusterView,
    target: &ScaleTarget,
    weights: &SlotWeights,
    tolerance: f64,
    slot_floor: f64,
) -> ScaleResult<Plan> {
    target.validate()?;
    let invalid = |m: String| ScaleError::InvalidTarget(m);
    if target.balance != Balance::Slots && !weights.is_measured() {
        return Err(invalid(format!(
            "balance by {:?} needs measured slot weights (measure is off)",
            target.balance
        )));
    }
    let uncovered = view.uncovered();
    if !uncovered.is_empty() {
        return Err(ScaleError::ClusterState(format!(
            "{} slots are served by no node (first: {})",
            uncovered.len(),
            uncovered[0]
        )));
    }
    let removing: BTreeSet<&str> = target.remove.iter().map(String::as_str).collect();

    // Joins and replica attachments.
    let mut join = Vec::new();
    let mut replicate = Vec::new();
    for p in &target.add {
        match view.node_at(&p.addr) {
            None => join.push(p.addr.clone()),
            Some(n) if n.role == NodeRole::Replica => {
                return Err(invalid(format!(
                    "{} is a replica in the cluster; it cannot be added as a primary",
                    p.addr
                )));
            }
            Some(_) => {}
        }
    }
    for p in &target.add {
        let primary_id = view.node_at(&p.addr).map(|n| n.id.as_str());
        for r in &p.replicas {
            match view.node_at(r) {
                None => {
                    join.push(r.clone());
                    replicate.push(ReplicaAttach {
                        replica: r.clone(),
                        primary: p.addr.clone(),
                    });
                }
                Some(n) => {
                    let attached = primary_id.is_some() && n.primary_id.as_deref() == primary_id;
                    if !attached {
                        if n.slots > 0 {
                            return Err(invalid(format!(
                                "{r} serves slots; it cannot become a replica"
                            )));
                        }
                        replicate.push(ReplicaAttach {
                            replica: r.clone(),
                            primary: p.addr.clone(),
                        });
                    }
                }
            }
        }
    }

    // Who serves slots after the run.
    let mut members: Vec<Member> = Vec::new();
    for n in view.primaries().filter(|n| n.slots > 0) {
        members.push(Member {
            addr: n.addr.clone(),
            weight: 0.0,
            leaving: removing.contains(n.addr.as_str()),
        });
    }
    for p in &target.add {
        if !members.iter().any(|m| m.addr == p.addr) {
            members.push(Member {
                addr: p.addr.clone(),
                weight: 0.0,
                leaving: false,
            });
        }
    }
    members.sort_by(|a, b| a.addr.cmp(&b.addr));
    for m in members.iter_mut().filter(|m| !m.leaving) {
        m.weight = target.weights.get(&m.addr).copied().unwrap_or(1.0);
    }
    if members.iter().all(|m| m.leaving) {
        return Err(invalid("no primary would serve slots".into()));
    }
    for node in target.weights.keys() {
        if !members.iter().any(|m| !m.leaving && &m.addr == node) {
            return Err(invalid(format!(
                "weight given for {node}, which will not serve slots"
            )));
        }
    }
    let index: BTreeMap<&str, usize> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.addr.as_str(), i))
        .collect();

    // Owners after open slots are closed (a finished slot belongs to its target).
    let actions = close_actions(view, &BTreeMap::new()).unwrap_or_default();
    let mut owner: Vec<usize> = Vec::with_capacity(usize::from(SLOT_COUNT));
    for s in 0..SLOT_COUNT {
        let mut addr = view.owner(s).map(|n| n.addr.as_str()).unwrap_or("");
        for a in actions.iter().filter(|a| a.slot() == s) {
            if let CloseAction::Finish { to, .. } = a
                && let Some(n) = view.node(to)
            {
                addr = n.addr.as_str();
            }
        }
        let i = index.get(addr).copied().ok_or_else(|| {
            ScaleError::ClusterState(format!(
                "slot {s} is served by {addr}, which is not a primary"
            ))
        })?;
        owner.push(i);
    }

    let before = loads(&members, &owner, weights);
    let moves: Vec<(u16, usize, usize)> = if target.assign.is_empty() {
        balance_moves(
            &members,
            &owner,
            weights,
            target.balance,
            tolerance,
            slot_floor,
        )
    } else {
        let mut moves = Vec::new();
        let mut after = owner.clone();
        for (&slot, dest) in &target.assign {
            let to = index
                .get(dest.as_str())
                .copied()
                .filter(|&i| !members[i].leaving)
                .ok_or_else(|| {
                    invalid(format!(
                        "slot {slot} assigned to {dest}, which will not serve slots"
                    ))
                })?;
            if owner[usize::from(slot)] != to {
                moves.push((slot, owner[usize::from(slot)], to));
                after[usize::from(slot)] = to;
            }
        }
        // Leaving nodes still give every slot away, balanced.
        let rest = balance_moves(&members, &after, weights, target.balance, 1.0, slot_floor);
        let assigned: BTreeSet<u16> = moves.iter().map(|m| m.0).collect();
        moves.extend(
            rest.into_iter()
                .filter(|m| members[m.1].leaving && !assigned.contains(&m.0)),
        );
        moves
    };
    let mut after_owner = owner.clone();
    for &(s, _, to) in &moves {
        after_owner[usize::from(s)] = to;
    }
    let after = loads(&members, &after_owner, weights);
    let mut slot_moves: Vec<SlotMove> = moves
        .iter()
        .map(|&(slot, from, to)| SlotMove {
            slot,
            from: members[from].addr.clone(),
            to: members[to].addr.clone(),
            keys: weights.keys(slot),
            bytes: weights.bytes(slot),
        })
        .collect();
    slot_moves.sort_by(|a, b| a.from.cmp(&b.from).then(a.slot.cmp(&b.slot)));
    let expected_keys = slot_moves
        .iter()
        .fold(0u64, |a, m| a.saturating_add(m.keys));
    let expected_bytes = slot_moves
        .iter()
        .fold(0u64, |a, m| a.saturating_add(m.bytes));

    // Removal: members leave; replicas first (a replica refuses to forget
    // its own primary).
    let mut forget = Vec::new();
    let mut already_removed = Vec::new();
    for r in &target.remove {
        match view.node_at(r) {
            Some(_) => forget.push(r.clone()),
            None => already_removed.push(r.clone()),
        }
    }
    forget.sort_by_key(|a| {
        (
            view.node_at(a).is_some_and(|n| n.role == NodeRole::Primary),
            a.clone(),
        )
    });
    Ok(Plan {
        balance: target.balance,
        join,
        replicate,
        open: view.open_slots().to_vec(),
        moves: slot_moves,
        expected_keys,
        expected_bytes,
        forget,
        already_removed,
        before,
        after,
        measured: weights.is_measured(),
    })
}

fn loads(members: &[Member], owner: &[usize], w: &SlotWeights) -> Vec<NodeLoad> {
    let mut out: Vec<NodeLoad> = members
        .iter()
        .map(|m| NodeLoad {
            node: m.addr.clone(),
            slots: 0,
            keys: 0,
            bytes: 0,
            weight: m.weight,
        })
        .collect();
    for (s, &o) in owner.iter().enumerate() {
        let s = s as u16;
        let l = &mut out[o];
        l.slots += 1;
        l.keys = l.keys.saturating_add(w.keys(s));
        l.bytes = l.bytes.saturating_add(w.bytes(s));
    }
    out
}

/// The cost of each slot under `balance`: 1 per slot, or its keys / bytes
/// plus `slot_floor` times the mean slot's (so empty slots still spread).
fn slot_costs(balance: Balance, w: &SlotWeights, slot_floor: f64) -> Vec<f64> {
    let metric = |s: u16| match balance {
        Balance::Slots => 1.0,
        Balance::Keys => w.keys(s) as f64,
        Balance::Memory => w.bytes(s) as f64,
    };
    if balance == Balance::Slots {
        return vec![1.0; usize::from(SLOT_COUNT)];
    }
    let total: f64 = (0..SLOT_COUNT).map(metric).sum();
    let mean = total / f64::from(SLOT_COUNT);
    // All slots empty: balance slot counts.
    let floor = if mean > 0.0 { slot_floor * mean } else { 1.0 };
    (0..SLOT_COUNT).map(|s| metric(s) + floor).collect()
}

/// Shares of `total` by weight as integers summing to `total` (largest
/// remainders, ties to the lower index).
fn integer_shares(weights: &[f64], total: u64) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    if sum <= 0.0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| w / sum * total as f64).collect();
    let mut shares: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let given: u64 = shares.iter().sum();
    let mut order: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0.0).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for &i in order
        .iter()
        .cycle()
        .take(total.saturating_sub(given) as usize)
    {
        shares[i] += 1;
    }
    shares
}

/// A slot holding more than this many times its owner's mean (bytes or
/// keys per slot) is hot: a slot-count balance moves it last.
const HOT: f64 = 4.0;

/// The moves `(slot, from, to)` that bring every member to its share.
fn balance_moves(
    members: &[Member],
    owner: &[usize],
    w: &SlotWeights,
    balance: Balance,
    tolerance: f64,
    slot_floor: f64,
) -> Vec<(u16, usize, usize)> {
    let n = members.len();
    let weights: Vec<f64> = members.iter().map(|m| m.weight).collect();
    let mut owned: Vec<Vec<u16>> = vec![Vec::new(); n];
    for (s, &o) in owner.iter().enumerate() {
        owned[o].push(s as u16);
    }
    let must_move = members
        .iter()
        .enumerate()
        .any(|(i, m)| m.leaving && !owned[i].is_empty());
    if balance == Balance::Slots {
        let quota = integer_shares(&weights, u64::from(SLOT_COUNT));
        let off = (0..n).any(|i| {
            let (k, q) = (owned[i].len() as f64, quota[i] as f64);
            (k - q).abs() > (tolerance * q).max(1.0)
        });
        if !must_move && !off {
            return Vec::new();
        }
        // Donors give their lowest-numbered slots (runs of consecutive
        // slots, as redis-cli does), passing over hot slots (more than
        // `HOT` times the donor's mean bytes, or keys, per slot) unless
        // they must go; receivers fill up in address order.
        let mut pool: Vec<(u16, usize)> = Vec::new();
        for i in 0..n {
            let give = owned[i].len().saturating_sub(quota[i] as usize);
            let mine = &owned[i];
            let count = mine.len().max(1) as f64;
            let mean_b = mine.iter().map(|&s| w.bytes(s) as f64).sum::<f64>() / count;
            let mean_k = mine.iter().map(|&s| w.keys(s) as f64).sum::<f64>() / count;
            let hot = |s: u16| {
                w.bytes(s) as f64 > HOT * mean_b.max(1.0)
                    || w.keys(s) as f64 > HOT * mean_k.max(1.0)
            };
            let mut order = mine.clone();
            order.sort_by_key(|&s| (hot(s), s));
            pool.extend(order.into_iter().take(give).map(|s| (s, i)));
        }
        pool.sort_unstable();
        let mut moves = Vec::with_capacity(pool.len());
        let mut it = pool.into_iter();
        for r in 0..n {
            let take = (quota[r] as usize).saturating_sub(owned[r].len());
            moves.extend(it.by_ref().take(take).map(|(s, from)| (s, from, r)));
        }
        return moves;
    }

    // Weighted: a greedy that moves the slot that most reduces the total
    // distance to the shares, from the most loaded member to the least.
    let cost = slot_costs(balance, w, slot_floor);
    let total: f64 = cost.iter().sum();
    let wsum: f64 = weights.iter().sum();
    let share: Vec<f64> = weights.iter().map(|x| total * x / wsum).collect();
    let mut load: Vec<f64> = owned
        .iter()
        .map(|o| o.iter().map(|&s| cost[usize::from(s)]).sum())
        .collect();
    let mut moves = Vec::new();
    let receiver = |load: &[f64]| {
        (0..n).filter(|&i| !members[i].leaving).max_by(|&a, &b| {
            (share[a] - load[a])
                .total_cmp(&(share[b] - load[b]))
                .then(b.cmp(&a))
        })
    };
    // Leaving members: heaviest slots first, each to the largest deficit.
    for i in (0..n).filter(|&i| members[i].leaving) {
        let mut mine = owned[i].clone();
        mine.sort_by(|&a, &b| {
            cost[usize::from(b)]
                .total_cmp(&cost[usize::from(a)])
                .then(a.cmp(&b))
        });
        for s in mine {
            if let Some(r) = receiver(&load) {
                let c = cost[usize::from(s)];
                load[i] -= c;
                load[r] += c;
                moves.push((s, i, r));
            }
        }
        owned[i].clear();
    }
    let off = (0..n)
        .filter(|&i| !members[i].leaving)
        .any(|i| (load[i] - share[i]).abs() > tolerance * share[i]);
    if !off {
        return moves;
    }
    // Staying members: donors' slots sorted by cost for a best-fit search.
    let mut by_cost: Vec<Vec<(f64, u16)>> = owned
        .iter()
        .map(|o| {
            let mut v: Vec<(f64, u16)> = o.iter().map(|&s| (cost[usize::from(s)], s)).collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            v
        })
        .collect();
    let eps = total * 1e-12;
    for _ in 0..SLOT_COUNT {
        let Some(d) = (0..n).filter(|&i| !members[i].leaving).max_by(|&a, &b| {
            (load[a] - share[a])
                .total_cmp(&(load[b] - share[b]))
                .then(b.cmp(&a))
        }) else {
            break;
        };
        let Some(r) = receiver(&load) else { break };
        let (e, f) = (load[d] - share[d], share[r] - load[r]);
        if d == r || e <= tolerance * share[d] && f <= tolerance * share[r] || e <= 0.0 || f <= 0.0
        {
            break;
        }
        // Moving cost c changes |e| + |f| into |e - c| + |f - c|.
        let gain = |c: f64| e + f - (e - c).abs() - (f - c).abs();
        let list = &by_cost[d];
        let hi = e.max(f);
        let at = list.partition_point(|x| x.0 <= hi);
        let mut best: Option<(f64, usize)> = None;
        for k in [at.checked_sub(1), (at < list.len()).then_some(at)]
            .into_iter()
            .flatten()
        {
            let g = gain(list[k].0);
            if best.is_none_or(|(bg, _)| g > bg) {
                best = Some((g, k));
            }
        }
        let Some((g, k)) = best.filter(|(g, _)| *g > eps) else {
            break;
        };
        let _ = g;
        let (c, s) = by_cost[d].remove(k);
        load[d] -= c;
        load[r] += c;
        moves.push((s, d, r));
    }
    moves
}

#[cfg(test)]
mod tests;
