//! Resume: what to do with slots an interrupted run left open, derived
//! from the cluster's own state. Pure.
//!
//! A slot is moved by `SETSLOT IMPORTING` on the target, `SETSLOT
//! MIGRATING` on the source, `MIGRATE` of its keys, then `SETSLOT NODE` on
//! the target, the source and the other primaries. A run stopped anywhere
//! in between leaves markers that say how far it got. The rule is to
//! finish forward whenever keys may already sit on the target (so no key
//! is ever dropped), and to clear a marker only where nothing can have
//! moved through it:
//!
//! | markers | owner | action |
//! |---|---|---|
//! | source migrating → target, target importing ← source | source | finish: move the rest, assign to target |
//! | the same | target | assign to target everywhere (the tail of the protocol) |
//! | source migrating → target only | source | finish (re-open the target side first) |
//! | the same, target now a replica of P | source | finish to P (the replica's primary holds what was restored) |
//! | the same, target no longer a member | source | clear the source's marker (`STABLE`): its keys never left |
//! | target importing ← source only, target holds no key of the slot | source | clear the target's marker |
//! | the same, target holds keys | source | finish (re-open the source side first) |
//! | any marker | the marked node owns the slot | assign to the owner everywhere |
//!
//! Any other combination is reported as [`ScaleError::ClusterState`] naming
//! the slot: the executor never guesses.

use std::collections::{BTreeMap, BTreeSet};

use super::error::{ScaleError, ScaleResult};
use super::view::{ClusterView, NodeRole, OpenSide};

/// How one open slot is closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CloseAction {
    /// Move the keys still on `from` to `to`, then assign the slot to `to`
    /// everywhere. `open_source`/`open_target`: set the `MIGRATING` /
    /// `IMPORTING` marker first (it is missing).
    Finish {
        slot: u16,
        from: String,
        to: String,
        open_source: bool,
        open_target: bool,
    },
    /// The slot already belongs to `owner`: assign it there on every node
    /// (clears leftover markers).
    Assign { slot: u16, owner: String },
    /// Clear the marker on `node` (`SETSLOT STABLE`): nothing moved through it.
    Stable { slot: u16, node: String },
}

impl CloseAction {
    pub(crate) fn slot(&self) -> u16 {
        match self {
            Self::Finish { slot, .. } | Self::Assign { slot, .. } | Self::Stable { slot, .. } => {
                *slot
            }
        }
    }
}

/// Keys a node holds in a slot (`CLUSTER COUNTKEYSINSLOT` on that node),
/// by `(slot, node id)`. Missing entries count as unknown, which the rules
/// treat as "may hold keys".
pub(crate) type KeyCounts = BTreeMap<(u16, String), u64>;

/// The (slot, node id) pairs whose key counts [`close_actions`] needs.
pub(crate) fn counts_needed(view: &ClusterView) -> BTreeSet<(u16, String)> {
    let mut need = BTreeSet::new();
    for o in view.open_slots() {
        need.insert((o.slot, o.node.clone()));
        match &o.side {
            OpenSide::Migrating { to } => need.insert((o.slot, to.clone())),
            OpenSide::Importing { from } => need.insert((o.slot, from.clone())),
        };
    }
    need.retain(|(_, id)| view.node(id).is_some());
    need
}

/// The actions closing every open slot of `view`.
pub(crate) fn close_actions(
    view: &ClusterView,
    counts: &KeyCounts,
) -> ScaleResult<Vec<CloseAction>> {
    let mut by_slot: BTreeMap<u16, Vec<(&str, &OpenSide)>> = BTreeMap::new();
    for o in view.open_slots() {
        by_slot
            .entry(o.slot)
            .or_default()
            .push((o.node.as_str(), &o.side));
    }
    let mut out = Vec::new();
    for (slot, marks) in by_slot {
        out.push(close_one(view, counts, slot, &marks)?);
    }
    Ok(out)
}

fn close_one(
    view: &ClusterView,
    counts: &KeyCounts,
    slot: u16,
    marks: &[(&str, &OpenSide)],
) -> ScaleResult<CloseAction> {
    let state = |why: String| ScaleError::ClusterState(format!("slot {slot}: {why}"));
    let owner = view
        .owner(slot)
        .ok_or_else(|| state("open and served by no node".into()))?
        .id
        .clone();
    let keys = |node: &str| counts.get(&(slot, node.to_owned())).copied();
    let mut migrating = None;
    let mut importing = None;
    for (node, side) in marks {
        match side {
            OpenSide::Migrating { to } => {
                if migrating.replace((*node, to.as_str())).is_some() {
                    return Err(state("migrating on two nodes".into()));
                }
            }
            OpenSide::Importing { from } => {
                if importing.replace((*node, from.as_str())).is_some() {
                    return Err(state("importing on two nodes".into()));
                }
            }
        }
    }
    let primary = |id: &str| {
        view.node(id)
            .is_some_and(|n| n.role == NodeRole::Primary && !n.failing)
    };
    // A marked node that owns the slot: the protocol's tail is left.
    let marked: Vec<&str> = marks.iter().map(|(n, _)| *n).collect();
    let finish_tail = |on: &str| -> ScaleResult<CloseAction> {
        // Every other marked node must have no key left in the slot.
        for n in marked.iter().filter(|n| **n != on) {
            if keys(n) != Some(0) {
                return Err(state(format!(
                    "served by {on} but {n} still holds keys of it ({:?})",
                    keys(n)
                )));
            }
        }
        Ok(CloseAction::Assign {
            slot,
            owner: on.to_owned(),
        })
    };
    if marked.contains(&owner.as_str()) && migrating.is_none_or(|(s, _)| s != owner) {
        return finish_tail(&owner);
    }
    match (migrating, importing) {
        (Some((s, t)), Some((t2, s2))) if t == t2 && s == s2 => {
            if owner == s {
                Ok(CloseAction::Finish {
                    slot,
                    from: s.into(),
                    to: t.into(),
                    open_source: false,
                    open_target: false,
                })
            } else {
                Err(state(format!("moving {s} → {t} but served by {owner}")))
            }
        }
        (Some((s, t)), None) => {
            if owner != s {
                return Err(state(format!("migrating on {s} but served by {owner}")));
            }
            match view.node(t) {
                None => Ok(CloseAction::Stable {
                    slot,
                    node: s.into(),
                }),
                Some(_) if primary(t) => Ok(CloseAction::Finish {
                    slot,
                    from: s.into(),
                    to: t.into(),
                    open_source: false,
                    open_target: true,
                }),
                Some(n) => match n.primary_id.as_deref() {
                    // The target failed over: its primary now holds what it
                    // restored (by replication).
                    Some(p) if n.role == NodeRole::Replica && primary(p) && p != s => {
                        Ok(CloseAction::Finish {
                            slot,
                            from: s.into(),
                            to: p.into(),
                            open_source: true,
                            open_target: true,
                        })
                    }
                    _ => Err(state(format!(
                        "migrating to {t}, which is neither a healthy primary nor a replica of one"
                    ))),
                },
            }
        }
        (None, Some((t, s))) => {
            if keys(t) == Some(0) {
                return Ok(CloseAction::Stable {
                    slot,
                    node: t.into(),
                });
            }
            if owner == s && primary(t) {
                Ok(CloseAction::Finish {
                    slot,
                    from: s.into(),
                    to: t.into(),
                    open_source: true,
                    open_target: false,
                })
            } else {
                Err(state(format!(
                    "importing on {t} from {s}, served by {owner}, and {t} holds keys of it"
                )))
            }
        }
        _ => Err(state(format!("unexpected markers {marks:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccccccc";
    const GONE: &str = "dddddddddddddddddddddddddddddddddddddddd";

    /// A view with A serving 0-8191, B 8192-16383 and C a replica of B;
    /// `a_marks`/`b_marks` are added to A's and B's own lines; `b_slot5`
    /// gives slot 5 to B with a higher epoch.
    fn view(a_marks: &str, b_marks: &str, b_slot5: bool, c_role: &str) -> ClusterView {
        let b_slots = if b_slot5 {
            "5 8192-16383"
        } else {
            "8192-16383"
        };
        let a_slots = if b_slot5 { "0-4 6-8191" } else { "0-8191" };
        let b_epoch = if b_slot5 { 9 } else { 2 };
        let c_line = match c_role {
            "replica" => format!("{C} 127.0.0.1:7002@17002 slave {B} 0 0 2 connected"),
            _ => format!("{C} 127.0.0.1:7002@17002 master - 0 0 3 connected"),
        };
        let text = |me: &str| {
            format!(
                "{A} 127.0.0.1:7000@17000 {}master - 0 0 1 connected {a_slots} {}\n\
                 {B} 127.0.0.1:7001@17001 {}master - 0 0 {b_epoch} connected {b_slots} {}\n\
                 {c_line}\n",
                if me == "a" { "myself," } else { "" },
                if me == "a" { a_marks } else { "" },
                if me == "b" { "myself," } else { "" },
                if me == "b" { b_marks } else { "" },
            )
        };
        ClusterView::from_replies(&[
            ("127.0.0.1:7000".into(), Some(text("a"))),
            ("127.0.0.1:7001".into(), Some(text("b"))),
        ])
        .unwrap()
    }

    fn counts(pairs: &[(&str, u64)]) -> KeyCounts {
        pairs
            .iter()
            .map(|(n, k)| ((5, (*n).to_owned()), *k))
            .collect()
    }

    #[test]
    fn a_slot_open_on_both_sides_is_finished_forward() {
        let v = view(
            &format!("[5->-{B}]"),
            &format!("[5-<-{A}]"),
            false,
            "replica",
        );
        assert_eq!(
            counts_needed(&v),
            [(5, A.to_owned()), (5, B.to_owned())].into_iter().collect()
        );
        let got = close_actions(&v, &counts(&[(A, 10), (B, 7)])).unwrap();
        assert_eq!(
            got,
            [CloseAction::Finish {
                slot: 5,
                from: A.into(),
                to: B.into(),
                open_source: false,
                open_target: false
            }]
        );
        // Even with no key on the target: finishing is always safe.
        assert!(matches!(
            close_actions(&v, &counts(&[(A, 10), (B, 0)])).unwrap()[0],
            CloseAction::Finish { .. }
        ));
    }

    #[test]
    fn a_slot_the_target_already_owns_gets_the_protocol_tail() {
        let v = view(
            &format!("[5->-{B}]"),
            &format!("[5-<-{A}]"),
            true,
            "replica",
        );
        assert_eq!(v.owner(5).unwrap().id, B);
        assert_eq!(
            close_actions(&v, &counts(&[(A, 0), (B, 3)])).unwrap(),
            [CloseAction::Assign {
                slot: 5,
                owner: B.into()
            }]
        );
        // The source still holding keys while the target owns the slot is
        // not something the executor produces: reported, not guessed.
        let e = close_actions(&v, &counts(&[(A, 2), (B, 3)])).unwrap_err();
        assert!(e.to_string().contains("slot 5"), "{e}");
        // Unknown count: treated as "may hold keys".
        assert!(close_actions(&v, &counts(&[(B, 3)])).is_err());
    }

    #[test]
    fn a_lone_importing_marker_is_cleared_only_when_nothing_arrived() {
        let v = view("", &format!("[5-<-{A}]"), false, "replica");
        assert_eq!(
            close_actions(&v, &counts(&[(A, 4), (B, 0)])).unwrap(),
            [CloseAction::Stable {
                slot: 5,
                node: B.into()
            }]
        );
        assert_eq!(
            close_actions(&v, &counts(&[(A, 4), (B, 1)])).unwrap(),
            [CloseAction::Finish {
                slot: 5,
                from: A.into(),
                to: B.into(),
                open_source: true,
                open_target: false
            }]
        );
    }

    #[test]
    fn a_lone_migrating_marker_reopens_the_target_or_follows_its_failover() {
        let v = view(&format!("[5->-{B}]"), "", false, "replica");
        assert_eq!(
            close_actions(&v, &counts(&[(A, 4), (B, 0)])).unwrap(),
            [CloseAction::Finish {
                slot: 5,
                from: A.into(),
                to: B.into(),
                open_source: false,
                open_target: true
            }]
        );
        // Migrating to C, now a replica of B: finish to B.
        let v = view(&format!("[5->-{C}]"), "", false, "replica");
        assert_eq!(
            close_actions(&v, &KeyCounts::new()).unwrap(),
            [CloseAction::Finish {
                slot: 5,
                from: A.into(),
                to: B.into(),
                open_source: true,
                open_target: true
            }]
        );
        // Migrating to a node that is no longer a member: its keys never
        // left the source.
        let v = view(&format!("[5->-{GONE}]"), "", false, "replica");
        assert_eq!(
            close_actions(&v, &KeyCounts::new()).unwrap(),
            [CloseAction::Stable {
                slot: 5,
                node: A.into()
            }]
        );
    }

    #[test]
    fn inconsistent_markers_are_reported_with_the_slot() {
        // Importing on B from C while A owns and migrates to B.
        let v = view(
            &format!("[5->-{B}]"),
            &format!("[5-<-{C}]"),
            false,
            "master",
        );
        let e = close_actions(&v, &counts(&[(A, 1), (B, 1), (C, 0)])).unwrap_err();
        assert!(e.to_string().starts_with("cluster state: slot 5"), "{e}");
        // Migrating on a node that does not serve the slot.
        let v = view("", &format!("[5->-{A}]"), false, "replica");
        assert!(close_actions(&v, &KeyCounts::new()).is_err());
    }
}
