use super::*;
use crate::redis::scale::target::NewPrimary;
use proptest::prelude::*;

fn id(addr: &str) -> String {
    format!("{:0>40}", addr.rsplit(':').next().unwrap())
}

/// `CLUSTER NODES` as the first primary sees it: `primaries` with their
/// slot ranges, `replicas` as (replica, primary).
fn view_with(primaries: &[(&str, Vec<(u16, u16)>)], replicas: &[(&str, &str)]) -> ClusterView {
    let mut text = String::new();
    for (i, (addr, ranges)) in primaries.iter().enumerate() {
        let slots: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        text.push_str(&format!(
            "{} {addr}@1{} {}master - 0 0 {} connected {}\n",
            id(addr),
            addr.rsplit(':').next().unwrap(),
            if i == 0 { "myself," } else { "" },
            i + 1,
            slots.join(" ")
        ));
    }
    for (r, p) in replicas {
        text.push_str(&format!(
            "{} {r}@1{} slave {} 0 0 1 connected\n",
            id(r),
            r.rsplit(':').next().unwrap(),
            id(p)
        ));
    }
    ClusterView::from_replies(&[(primaries[0].0.to_owned(), Some(text))]).unwrap()
}

fn three() -> ClusterView {
    view_with(
        &[
            ("h:7000", vec![(0, 5460)]),
            ("h:7001", vec![(5461, 10922)]),
            ("h:7002", vec![(10923, 16383)]),
        ],
        &[
            ("h:7003", "h:7001"),
            ("h:7004", "h:7002"),
            ("h:7005", "h:7000"),
        ],
    )
}

fn plan(view: &ClusterView, target: &ScaleTarget) -> Plan {
    compute_plan(view, target, &SlotWeights::unmeasured(), 0.02, 0.25).unwrap()
}

fn slots_of(loads: &[NodeLoad]) -> Vec<(String, u32)> {
    loads.iter().map(|l| (l.node.clone(), l.slots)).collect()
}

#[test]
fn scale_out_from_three_to_four_moves_a_quarter_into_the_new_node() {
    let target = ScaleTarget::scale_out([NewPrimary::new("h:7006", ["h:7008"])]);
    let p = plan(&three(), &target);
    assert_eq!(p.join, ["h:7006", "h:7008"]);
    assert_eq!(
        p.replicate,
        [ReplicaAttach {
            replica: "h:7008".into(),
            primary: "h:7006".into()
        }]
    );
    assert_eq!(p.moves.len(), 4096);
    assert!(p.moves.iter().all(|m| m.to == "h:7006"));
    let after = slots_of(&p.after);
    assert_eq!(
        after,
        [
            ("h:7000".into(), 4096),
            ("h:7001".into(), 4096),
            ("h:7002".into(), 4096),
            ("h:7006".into(), 4096)
        ]
    );
    // Unmeasured: each donor gives its lowest slots, in runs.
    assert_eq!(p.moves[0].slot, 0);
    assert_eq!(
        (p.expected_keys, p.expected_bytes, p.measured),
        (0, 0, false)
    );
    assert!(p.forget.is_empty() && !p.is_empty());
    assert!(p.summary().contains("move 4096 slots"), "{}", p.summary());
}

#[test]
fn scale_in_moves_every_slot_of_the_leaving_node_and_forgets_replicas_first() {
    let four = view_with(
        &[
            ("h:7000", vec![(0, 4095)]),
            ("h:7001", vec![(4096, 8191)]),
            ("h:7002", vec![(8192, 12287)]),
            ("h:7006", vec![(12288, 16383)]),
        ],
        &[("h:7008", "h:7006")],
    );
    let p = plan(&four, &ScaleTarget::scale_in(["h:7006", "h:7008"]));
    assert_eq!(p.moves.len(), 4096);
    assert!(p.moves.iter().all(|m| m.from == "h:7006"));
    assert_eq!(
        slots_of(&p.after),
        [
            ("h:7000".into(), 5462),
            ("h:7001".into(), 5461),
            ("h:7002".into(), 5461),
            ("h:7006".into(), 0)
        ]
    );
    assert_eq!(p.forget, ["h:7008", "h:7006"], "the replica first");
    // Resumed after the node was forgotten: nothing left.
    let p = plan(&three(), &ScaleTarget::scale_in(["h:7006", "h:7008"]));
    assert!(p.is_empty());
    assert_eq!(p.already_removed, ["h:7006", "h:7008"]);
}

#[test]
fn a_balanced_cluster_is_left_alone_and_a_skewed_one_is_evened() {
    assert!(plan(&three(), &ScaleTarget::rebalance()).moves.is_empty());
    let skewed = view_with(
        &[
            ("h:7000", vec![(0, 9999)]),
            ("h:7001", vec![(10000, 12999)]),
            ("h:7002", vec![(13000, 16383)]),
        ],
        &[],
    );
    let p = plan(&skewed, &ScaleTarget::rebalance());
    assert_eq!(
        slots_of(&p.after),
        [
            ("h:7000".into(), 5462),
            ("h:7001".into(), 5461),
            ("h:7002".into(), 5461)
        ]
    );
    assert!(p.moves.iter().all(|m| m.from == "h:7000"));
}

#[test]
fn weights_give_a_bigger_node_a_bigger_share() {
    let mut t = ScaleTarget::rebalance();
    t.weights.insert("h:7000".into(), 2.0);
    let p = plan(&three(), &t);
    assert_eq!(
        slots_of(&p.after),
        [
            ("h:7000".into(), 8192),
            ("h:7001".into(), 4096),
            ("h:7002".into(), 4096)
        ]
    );
    t.weights.insert("h:9999".into(), 1.0);
    let e = compute_plan(&three(), &t, &SlotWeights::unmeasured(), 0.02, 0.25).unwrap_err();
    assert!(e.to_string().contains("h:9999"), "{e}");
}

fn hot_weights() -> SlotWeights {
    // 10 keys of 100 bytes per slot; slot 100 holds 20,000 keys (a hot tag).
    let mut keys = vec![10u64; 16384];
    keys[100] = 20_000;
    let bytes = keys.iter().map(|k| k * 100).collect();
    SlotWeights::new(keys, bytes).unwrap()
}

#[test]
fn measured_balance_counts_a_hot_slot_for_what_it_holds() {
    let w = hot_weights();
    let t = ScaleTarget::rebalance().balance_by(Balance::Memory);
    let p = compute_plan(&three(), &t, &w, 0.02, 0.1).unwrap();
    // Slot 100's node (7000) gives slots away until the loads (bytes plus
    // a tenth of the mean slot's bytes per slot) are even.
    let cost = |l: &NodeLoad| {
        l.bytes as f64 + f64::from(l.slots) * 0.1 * (w.total_bytes() as f64 / 16384.0)
    };
    let costs: Vec<f64> = p.after.iter().map(cost).collect();
    let mean = costs.iter().sum::<f64>() / 3.0;
    for c in &costs {
        assert!((c - mean).abs() / mean < 0.02, "{costs:?}");
    }
    let bytes: Vec<u64> = p.after.iter().map(|l| l.bytes).collect();
    let mean = bytes.iter().sum::<u64>() as f64 / 3.0;
    for b in &bytes {
        assert!((*b as f64 - mean).abs() / mean < 0.05, "{bytes:?}");
    }
    assert!(p.after[0].slots < p.after[1].slots, "{:?}", p.after);
    assert!(p.moves.iter().all(|m| m.from == "h:7000" && m.slot != 100));
    assert_eq!(p.expected_keys, p.moves.iter().map(|m| m.keys).sum::<u64>());
    assert_eq!(p.expected_bytes, p.expected_keys * 100);
    assert!(p.measured);
    // By slot count the same cluster is balanced already.
    let p = compute_plan(&three(), &ScaleTarget::rebalance(), &w, 0.02, 0.1).unwrap();
    assert!(p.moves.is_empty());
    // A weighted balance needs measurements.
    let e = compute_plan(&three(), &t, &SlotWeights::unmeasured(), 0.02, 0.25).unwrap_err();
    assert!(e.to_string().contains("measured"), "{e}");
}

#[test]
fn a_slot_count_plan_moves_runs_of_slots_and_leaves_hot_slots_alone() {
    let w = hot_weights();
    let target = ScaleTarget::scale_out([NewPrimary::new("h:7006", Vec::<String>::new())]);
    let p = compute_plan(&three(), &target, &w, 0.02, 0.25).unwrap();
    assert_eq!(p.moves.len(), 4096);
    assert!(p.moves.iter().all(|m| m.slot != 100), "the hot slot stays");
    assert_eq!(p.expected_keys, 4096 * 10);
    // 7000 gives 0-99 and 101-1465: two runs around the hot slot.
    let from_7000: Vec<u16> = p
        .moves
        .iter()
        .filter(|m| m.from == "h:7000")
        .map(|m| m.slot)
        .collect();
    assert_eq!(from_7000.len(), 1365);
    assert_eq!((from_7000[0], from_7000[99], from_7000[100]), (0, 99, 101));
}

#[test]
fn explicit_assignments_move_only_those_slots() {
    let p = plan(&three(), &ScaleTarget::move_slots(0..100, "h:7001"));
    assert_eq!(p.moves.len(), 100);
    assert!(
        p.moves
            .iter()
            .all(|m| m.from == "h:7000" && m.to == "h:7001")
    );
    // Already there: nothing to do.
    let p = plan(&three(), &ScaleTarget::move_slots(5461..5561, "h:7001"));
    assert!(p.moves.is_empty());
    let e = compute_plan(
        &three(),
        &ScaleTarget::move_slots([1], "h:7009"),
        &SlotWeights::unmeasured(),
        0.02,
        0.25,
    )
    .unwrap_err();
    assert!(e.to_string().contains("slot 1 assigned to h:7009"), "{e}");
}

#[test]
fn impossible_targets_are_refused_with_the_reason() {
    let err = |v: &ClusterView, t: &ScaleTarget| {
        compute_plan(v, t, &SlotWeights::unmeasured(), 0.02, 0.25)
            .unwrap_err()
            .to_string()
    };
    let e = err(
        &three(),
        &ScaleTarget::scale_in(["h:7000", "h:7001", "h:7002"]),
    );
    assert!(e.contains("no primary"), "{e}");
    let e = err(
        &three(),
        &ScaleTarget::scale_out([NewPrimary::new("h:7003", Vec::<String>::new())]),
    );
    assert!(e.contains("h:7003 is a replica"), "{e}");
    let e = err(
        &three(),
        &ScaleTarget::scale_out([NewPrimary::new("h:7009", ["h:7001"])]),
    );
    assert!(e.contains("h:7001 serves slots"), "{e}");
    let holes = view_with(&[("h:7000", vec![(0, 100)])], &[]);
    let e = err(&holes, &ScaleTarget::rebalance());
    assert!(e.contains("16283 slots are served by no node"), "{e}");
}

#[test]
fn a_resumed_scale_out_finishes_the_share() {
    // The new node joined and got 1,000 slots before the run stopped.
    let partial = view_with(
        &[
            ("h:7000", vec![(1000, 5460)]),
            ("h:7001", vec![(5461, 10922)]),
            ("h:7002", vec![(10923, 16383)]),
            ("h:7006", vec![(0, 999)]),
        ],
        &[("h:7008", "h:7006")],
    );
    let target = ScaleTarget::scale_out([NewPrimary::new("h:7006", ["h:7008"])]);
    let p = plan(&partial, &target);
    assert!(p.join.is_empty() && p.replicate.is_empty());
    assert_eq!(p.moves.len(), 3096);
    assert!(slots_of(&p.after).iter().all(|(_, n)| *n == 4096));
}

#[test]
fn a_half_migrated_slot_counts_as_moved_in_the_plan() {
    let a = id("h:7000");
    let b = id("h:7001");
    let text_a = format!(
        "{a} h:7000@17000 myself,master - 0 0 1 connected 0-8191 [0->-{b}]\n\
         {b} h:7001@17001 master - 0 0 2 connected 8192-16383\n"
    );
    let text_b = format!(
        "{a} h:7000@17000 master - 0 0 1 connected 0-8191\n\
         {b} h:7001@17001 myself,master - 0 0 2 connected 8192-16383 [0-<-{a}]\n"
    );
    let v = ClusterView::from_replies(&[
        ("h:7000".into(), Some(text_a)),
        ("h:7001".into(), Some(text_b)),
    ])
    .unwrap();
    let p = plan(&v, &ScaleTarget::rebalance());
    assert_eq!(p.open.len(), 2);
    // Slot 0 will belong to 7001 after closing: 8191 / 8193, within tolerance.
    assert!(p.moves.is_empty(), "{:?}", p.moves);
    assert_eq!(
        slots_of(&p.before),
        [("h:7000".into(), 8191), ("h:7001".into(), 8193)]
    );
}

#[test]
fn integer_shares_sum_to_the_total() {
    assert_eq!(integer_shares(&[1.0, 1.0, 1.0], 16384), [5462, 5461, 5461]);
    assert_eq!(integer_shares(&[1.0, 0.0, 3.0], 16384), [4096, 0, 12288]);
    assert_eq!(integer_shares(&[0.0], 10), [0]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the layout, the target and the weights: every slot ends on
    /// a primary that stays, no slot moves twice, every move starts at the
    /// slot's current owner, and a slot-count plan hits the shares exactly.
    #[test]
    fn plans_are_complete_and_consistent(
        cuts in proptest::collection::btree_set(1u16..16383, 2..6),
        add in 0usize..3,
        remove_first in any::<bool>(),
        measured in any::<bool>(),
        memory in any::<bool>(),
        hot in proptest::collection::vec((0u16..16384, 0u64..1_000_000), 0..20),
    ) {
        let mut bounds: Vec<u16> = vec![0];
        bounds.extend(cuts.iter().copied());
        bounds.push(16384);
        let addrs: Vec<String> = (0..bounds.len() - 1).map(|i| format!("h:{}", 7000 + i)).collect();
        let prims: Vec<(&str, Vec<(u16, u16)>)> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| (a.as_str(), vec![(bounds[i], bounds[i + 1] - 1)]))
            .collect();
        let v = view_with(&prims, &[]);
        let mut target = ScaleTarget::scale_out(
            (0..add).map(|i| NewPrimary::new(format!("h:{}", 8000 + i), Vec::<String>::new())),
        );
        if remove_first {
            target.remove.push(addrs[0].clone());
        }
        let w = if measured {
            let mut keys = vec![3u64; 16384];
            for (s, k) in &hot {
                keys[usize::from(*s)] = *k;
            }
            let bytes = keys.iter().map(|k| k * 50).collect();
            target.balance = if memory { Balance::Memory } else { Balance::Keys };
            SlotWeights::new(keys, bytes).unwrap()
        } else {
            SlotWeights::unmeasured()
        };
        let p = compute_plan(&v, &target, &w, 0.02, 0.25).unwrap();
        let mut owner: Vec<String> = (0..16384u16).map(|s| v.owner(s).unwrap().addr.clone()).collect();
        let mut seen = BTreeSet::new();
        for m in &p.moves {
            prop_assert!(seen.insert(m.slot), "slot {} moves twice", m.slot);
            prop_assert_eq!(&owner[usize::from(m.slot)], &m.from);
            prop_assert_ne!(&m.from, &m.to);
            owner[usize::from(m.slot)] = m.to.clone();
        }
        for o in &owner {
            prop_assert!(!target.remove.contains(o), "a slot stays on leaving {}", o);
        }
        let stay = p.after.iter().filter(|l| l.weight > 0.0).count();
        prop_assert_eq!(stay, addrs.len() + add - usize::from(remove_first));
        if !measured {
            let shares = integer_shares(&p.after.iter().map(|l| l.weight).collect::<Vec<_>>(), 16384);
            let counts: Vec<u64> = p.after.iter().map(|l| u64::from(l.slots)).collect();
            if add > 0 || remove_first {
                prop_assert_eq!(counts, shares);
            }
        }
    }
}
