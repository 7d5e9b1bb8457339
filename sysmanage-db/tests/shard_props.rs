//! Property tests of the shard functions: determinism, range coverage,
//! and minimal movement (jump and rendezvous move ≈ 1/(n+1) of the keys
//! when an (n+1)-th shard is added, and only to the new shard).

use proptest::prelude::*;
use sysmanage_db::shard::{
    JumpHash, ListShards, PgHash, RangeShards, Rendezvous, ShardFunction, ShardId, ShardKey,
};

fn key_strategy() -> impl Strategy<Value = KeyValue> {
    prop_oneof![
        any::<i64>().prop_map(KeyValue::Int),
        ".{0,40}".prop_map(KeyValue::Text),
        any::<[u8; 16]>().prop_map(KeyValue::Uuid),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(KeyValue::Bytes),
    ]
}

#[derive(Debug, Clone)]
enum KeyValue {
    Int(i64),
    Text(String),
    Uuid([u8; 16]),
    Bytes(Vec<u8>),
}

impl KeyValue {
    fn key(&self) -> ShardKey<'_> {
        match self {
            KeyValue::Int(v) => ShardKey::Int(*v),
            KeyValue::Text(s) => ShardKey::Text(s),
            KeyValue::Uuid(u) => ShardKey::Uuid(*u),
            KeyValue::Bytes(b) => ShardKey::Bytes(b),
        }
    }
}

fn functions(n: u32) -> Vec<Box<dyn ShardFunction>> {
    vec![
        Box::new(PgHash::new(n).unwrap()),
        Box::new(JumpHash::new(n).unwrap()),
        Box::new(Rendezvous::new(n).unwrap()),
        Box::new(Rendezvous::weighted(&(1..=n).map(f64::from).collect::<Vec<_>>()).unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Same key, same shard, always in range; a fresh copy of the function
    /// (as another process would build) agrees.
    #[test]
    fn hash_functions_are_deterministic_and_in_range(k in key_strategy(), n in 1_u32..300) {
        for (a, b) in functions(n).into_iter().zip(functions(n)) {
            let s = a.shard_for(&k.key()).unwrap();
            prop_assert!(s.0 < n, "{} gave {s} for {n} shards", a.name());
            prop_assert_eq!(s, a.shard_for(&k.key()).unwrap());
            prop_assert_eq!(s, b.shard_for(&k.key()).unwrap());
        }
    }

    /// Integer widths are one key: int2, int4 and int8 of the same value agree.
    #[test]
    fn integer_widths_agree(v in any::<i16>(), n in 1_u32..64) {
        let f = PgHash::new(n).unwrap();
        let a = f.shard_for(&ShardKey::from(v)).unwrap();
        prop_assert_eq!(a, f.shard_for(&ShardKey::from(i32::from(v))).unwrap());
        prop_assert_eq!(a, f.shard_for(&ShardKey::from(i64::from(v))).unwrap());
    }

    /// Contiguous ranges from MINVALUE to MAXVALUE cover every key exactly
    /// once; the owning range contains the key.
    #[test]
    fn contiguous_ranges_cover_every_key(
        mut cuts in proptest::collection::btree_set(any::<i64>(), 1..12),
        key in any::<i64>(),
    ) {
        let cuts: Vec<i64> = std::mem::take(&mut cuts).into_iter().collect();
        let mut b = RangeShards::builder().range(None, Some(cuts[0].into()), ShardId(0));
        for (i, w) in cuts.windows(2).enumerate() {
            b = b.range(Some(w[0].into()), Some(w[1].into()), ShardId(i as u32 + 1));
        }
        b = b.range(Some((*cuts.last().unwrap()).into()), None, ShardId(cuts.len() as u32));
        let f = b.build().unwrap();
        let s = f.shard_for(&ShardKey::Int(key)).unwrap();
        let expected = cuts.iter().filter(|c| **c <= key).count() as u32;
        prop_assert_eq!(s, ShardId(expected));
    }

    /// A key outside every range or list is an error, never a shard.
    #[test]
    fn unmatched_keys_are_errors(lo in -1000_i64..0, hi in 1_i64..1000, key in any::<i64>()) {
        let f = RangeShards::builder().range(Some(lo.into()), Some(hi.into()), ShardId(0)).build().unwrap();
        let r = f.shard_for(&ShardKey::Int(key));
        prop_assert_eq!(r.is_ok(), lo <= key && key < hi);
        let l = ListShards::builder().values(ShardId(0), [lo, hi]).build().unwrap();
        prop_assert_eq!(l.shard_for(&ShardKey::Int(key)).is_ok(), key == lo || key == hi);
    }
}

/// Adding shard n to n shards moves ≈ 1/(n+1) of the keys, all to shard n.
fn moved_fraction(old: &dyn ShardFunction, new: &dyn ShardFunction, keys: i64) -> f64 {
    let new_shard = ShardId(old.shard_count());
    let mut moved = 0;
    for k in 0..keys {
        let key = ShardKey::Int(k);
        let (a, b) = (old.shard_for(&key).unwrap(), new.shard_for(&key).unwrap());
        if a != b {
            assert_eq!(b, new_shard, "key {k} moved between old shards {a} -> {b}");
            moved += 1;
        }
    }
    moved as f64 / keys as f64
}

#[test]
fn jump_moves_one_over_n_plus_one() {
    for n in [1_u32, 2, 4, 7, 10, 31] {
        let f = moved_fraction(
            &JumpHash::new(n).unwrap(),
            &JumpHash::new(n + 1).unwrap(),
            100_000,
        );
        let expected = 1.0 / f64::from(n + 1);
        assert!(
            (f - expected).abs() < 0.01,
            "jump {n}->{}: moved {f}, expected {expected}",
            n + 1
        );
    }
}

#[test]
fn rendezvous_moves_one_over_n_plus_one() {
    for n in [1_u32, 2, 4, 7, 10, 31] {
        let f = moved_fraction(
            &Rendezvous::new(n).unwrap(),
            &Rendezvous::new(n + 1).unwrap(),
            100_000,
        );
        let expected = 1.0 / f64::from(n + 1);
        assert!(
            (f - expected).abs() < 0.01,
            "rendezvous {n}->{}: moved {f}, expected {expected}",
            n + 1
        );
    }
    // Weighted: adding a shard of weight 2 to weights [1, 1, 2] moves 2/6.
    let old = Rendezvous::weighted(&[1.0, 1.0, 2.0]).unwrap();
    let new = Rendezvous::weighted(&[1.0, 1.0, 2.0, 2.0]).unwrap();
    let f = moved_fraction(&old, &new, 100_000);
    assert!((f - 2.0 / 6.0).abs() < 0.01, "weighted: moved {f}");
}

#[test]
fn modulo_hashing_moves_most_keys_for_contrast() {
    // PgHash n -> n+1 is not minimal: most keys change shard. (This is why
    // PgHash grows by doubling, which splits shards instead.)
    let old = PgHash::new(10).unwrap();
    let new = PgHash::new(11).unwrap();
    let moved = (0..20_000_i64)
        .filter(|k| {
            old.shard_for(&ShardKey::Int(*k)).unwrap() != new.shard_for(&ShardKey::Int(*k)).unwrap()
        })
        .count();
    assert!(moved as f64 / 20_000.0 > 0.85);
}

#[test]
fn shards_are_balanced() {
    let n = 16_u32;
    // Uniform functions: every shard within ±5% of its fair share.
    for f in [
        Box::new(PgHash::new(n).unwrap()) as Box<dyn ShardFunction>,
        Box::new(JumpHash::new(n).unwrap()),
        Box::new(Rendezvous::new(n).unwrap()),
    ] {
        let mut counts = vec![0_u32; n as usize];
        for k in 0..160_000_i64 {
            counts[f.shard_for(&ShardKey::Int(k)).unwrap().index()] += 1;
        }
        for (s, c) in counts.iter().enumerate() {
            assert!(
                (9_500..=10_500).contains(c),
                "{}: shard {s} has {c} of 160000",
                f.name()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A k-way merge of sorted parts with LIMIT equals sorting the union
    /// (stably, in part order) and truncating: what `ORDER BY … LIMIT` on one
    /// unsharded table returns.
    #[test]
    fn merge_equals_sort_of_union(
        mut parts in proptest::collection::vec(proptest::collection::vec(0_u8..20, 0..15), 0..6),
        limit in proptest::option::of(0_usize..40),
    ) {
        for p in &mut parts {
            p.sort();
        }
        let tagged: Vec<Vec<(u8, usize, usize)>> = parts
            .iter()
            .enumerate()
            .map(|(pi, p)| p.iter().enumerate().map(|(i, v)| (*v, pi, i)).collect())
            .collect();
        let merged = sysmanage_db::shard::merge_sorted(tagged.clone(), |r| r.0, limit).unwrap();
        let mut expected: Vec<(u8, usize, usize)> = tagged.into_iter().flatten().collect();
        expected.sort_by_key(|r| r.0); // stable: part order, then row order
        if let Some(l) = limit {
            expected.truncate(l);
        }
        prop_assert_eq!(merged, expected);
    }

    /// The exact PgHash plan agrees with a sampled one.
    #[test]
    fn exact_pg_hash_plan_agrees_with_sampling(n in 1_u32..40, m in 1_u32..40) {
        use sysmanage_db::shard::{ReshardPlan, Topology};
        let (a, b) = (PgHash::new(n).unwrap(), PgHash::new(m).unwrap());
        let old = Topology::round_robin(&a, &["x", "y", "z"]).unwrap();
        let new = Topology::round_robin(&b, &["x", "y"]).unwrap();
        let exact = ReshardPlan::compute(&old, &new).unwrap();
        let keys: Vec<String> = (0..20_000).map(|i| format!("key-{i}")).collect();
        let sampled =
            ReshardPlan::compute_with_sample(&old, &new, keys.iter().map(|k| ShardKey::Text(k))).unwrap();
        prop_assert!((exact.moved_fraction - sampled.moved_fraction).abs() < 0.02);
        prop_assert!((exact.copied_fraction - sampled.copied_fraction).abs() < 0.02);
        let total: f64 = exact.flows.iter().map(|f| f.fraction).sum();
        prop_assert!((total - 1.0).abs() < 1e-9);
    }
}
