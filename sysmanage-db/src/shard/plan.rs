//! Resharding plans: what moves between an old and a new topology.

use std::collections::BTreeMap;

use serde::Serialize;

use super::function::{ShardFunction, check_shard_count};
use super::key::{ShardId, ShardKey};
use crate::{Error, Result};

/// A shard function and where each of its logical shards lives: enough to
/// plan a migration without connecting to anything.
#[derive(Debug, Clone)]
pub struct Topology<'a> {
    /// The shard function.
    pub function: &'a dyn ShardFunction,
    /// `placement[i]` is the name of the node set logical shard `i` lives on.
    pub placement: Vec<String>,
}

impl<'a> Topology<'a> {
    /// A topology with an explicit placement.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `placement` does not have one entry per shard.
    pub fn new(function: &'a dyn ShardFunction, placement: Vec<String>) -> Result<Self> {
        if placement.len() != function.shard_count() as usize {
            return Err(Error::InvalidConfig {
                field: "placement",
                reason: format!(
                    "has {} entries for {} shards",
                    placement.len(),
                    function.shard_count()
                ),
            });
        }
        Ok(Topology {
            function,
            placement,
        })
    }

    /// Shard `i` on `node_sets[i % len]`, as [`ShardRouter`](super::ShardRouter)
    /// places shards that were not placed explicitly.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `node_sets` is empty or the function
    /// has 0 or more than [`MAX_SHARDS`](super::MAX_SHARDS) shards.
    pub fn round_robin(function: &'a dyn ShardFunction, node_sets: &[&str]) -> Result<Self> {
        if node_sets.is_empty() {
            return Err(Error::InvalidConfig {
                field: "node_sets",
                reason: "must not be empty".into(),
            });
        }
        // A custom function's count is not bounded by a constructor.
        check_shard_count("shard_count", u64::from(function.shard_count()))?;
        let placement = (0..function.shard_count() as usize)
            .map(|i| node_sets[i % node_sets.len()].to_owned())
            .collect();
        Ok(Topology {
            function,
            placement,
        })
    }

    fn node_set(&self, shard: ShardId) -> &str {
        self.placement
            .get(shard.index())
            .map_or("<unplaced>", String::as_str)
    }
}

/// How a plan's fractions were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "method")]
#[non_exhaustive]
pub enum Estimate {
    /// Exactly, for a uniformly distributed 64-bit hash (both functions are
    /// [`PgHash`](super::PgHash): counted over residues modulo
    /// `lcm(old modulus, new modulus)`).
    Exact,
    /// From a sample of keys.
    Sampled {
        /// Keys in the sample.
        keys: usize,
    },
}

/// A share of the key space that goes from one (shard, node set) to another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyFlow {
    /// The key's shard in the old topology.
    pub from: ShardId,
    /// Its node set there.
    pub from_node_set: String,
    /// The key's shard in the new topology.
    pub to: ShardId,
    /// Its node set there.
    pub to_node_set: String,
    /// Fraction of all keys in this flow.
    pub fraction: f64,
}

impl KeyFlow {
    /// Whether rows in this flow must be copied to another node set.
    pub fn copies_data(&self) -> bool {
        self.from_node_set != self.to_node_set
    }
    /// Whether keys in this flow change logical shard.
    pub fn changes_shard(&self) -> bool {
        self.from != self.to
    }
}

/// A share of the key space the old topology routes and the new one does not:
/// rows that would be orphaned (no shard owns them any more).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyLoss {
    /// The key's shard in the old topology.
    pub from: ShardId,
    /// Its node set there.
    pub from_node_set: String,
    /// Fraction of all sampled keys.
    pub fraction: f64,
}

/// A dry run of a resharding: every flow of keys between old and new
/// (shard, node set) pairs and the fractions that move, for a migration tool
/// to act on. Computing it touches no data.
///
/// Keys the old topology routes but the new one does not (a range or list
/// value dropped) are reported apart, in [`lost_fraction`](Self::lost_fraction)
/// and [`lost`](Self::lost): a migration must not go ahead while they are
/// non-zero.
///
/// Doubling a [`PgHash`](super::PgHash) modulus from `n` to `2n` splits each
/// shard `r` into `r` and `r + n`, half each; placing `r + n` on `r`'s node
/// set first makes the split copy nothing, and moving it afterwards is a
/// placement change (no rehash):
///
/// ```
/// use sysmanage_db::shard::{PgHash, ReshardPlan, ShardId, Topology};
///
/// let (old_f, new_f) = (PgHash::new(4)?, PgHash::new(8)?);
/// let old = Topology::round_robin(&old_f, &["a", "b"])?;
/// // Shard r + 4 starts on the node set of r.
/// let new = Topology::new(&new_f, ["a", "b", "a", "b", "a", "b", "a", "b"].map(String::from).to_vec())?;
/// let plan = ReshardPlan::compute(&old, &new)?;
/// assert_eq!(plan.moved_fraction, 0.5);      // half the keys change logical shard…
/// assert_eq!(plan.copied_fraction, 0.0);     // …but no row changes database
/// assert_eq!(plan.splits()[&ShardId(0)], vec![ShardId(0), ShardId(4)]);
/// # Ok::<(), sysmanage_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReshardPlan {
    /// Old shard function's name.
    pub old_function: &'static str,
    /// New shard function's name.
    pub new_function: &'static str,
    /// Old number of logical shards.
    pub old_shards: u32,
    /// New number of logical shards.
    pub new_shards: u32,
    /// How the fractions were obtained.
    pub estimate: Estimate,
    /// Fraction of keys whose logical shard changes.
    pub moved_fraction: f64,
    /// Fraction of keys whose rows must be copied to another node set.
    pub copied_fraction: f64,
    /// Fraction of sampled keys the old topology routes and the new one does
    /// not: their rows would be orphaned. 0 for hash functions.
    pub lost_fraction: f64,
    /// Fraction of sampled keys the old topology does not route (so no row
    /// can hold them today), whether or not the new one does. 0 for hash
    /// functions; non-zero means the sample or the old ranges/lists have gaps.
    pub unroutable_fraction: f64,
    /// Every non-empty flow, ordered by (from, to).
    pub flows: Vec<KeyFlow>,
    /// Per old shard, the keys the new topology no longer routes, ordered by
    /// shard; empty when nothing is lost.
    pub lost: Vec<KeyLoss>,
}

/// Keys in the default sample for functions without an exact method.
pub const DEFAULT_SAMPLE_KEYS: usize = 200_000;
const MAX_EXACT_LCM: u64 = 1 << 22;

impl ReshardPlan {
    /// The plan from `old` to `new` for hash-based shard functions (those
    /// whose [`routes_every_key`](ShardFunction::routes_every_key) is true):
    /// exact when both use [`PgHash`](super::PgHash), otherwise estimated
    /// from [`DEFAULT_SAMPLE_KEYS`] well-spread `int8` keys (within about
    /// ±0.3 percentage points). A hash function places a key by its hash
    /// alone, so synthetic keys stand for real ones.
    ///
    /// Range and list functions place keys by value: synthetic keys say
    /// nothing about where real keys go, so for them pass a sample of real
    /// keys to [`compute_with_sample`](Self::compute_with_sample).
    ///
    /// # Errors
    /// [`Error::PlanNeedsSample`] when either function is not hash-based.
    pub fn compute(old: &Topology<'_>, new: &Topology<'_>) -> Result<Self> {
        for f in [old.function, new.function] {
            if !f.routes_every_key() {
                return Err(Error::PlanNeedsSample { function: f.name() });
            }
        }
        if let (Some(a), Some(b)) = (old.function.as_pg_hash(), new.function.as_pg_hash()) {
            let (n, m) = (u64::from(a.modulus()), u64::from(b.modulus()));
            let lcm = n / gcd(n, m) * m;
            if lcm <= MAX_EXACT_LCM {
                let mut counts: BTreeMap<(ShardId, ShardId), u64> = BTreeMap::new();
                for x in 0..lcm {
                    *counts
                        .entry((ShardId((x % n) as u32), ShardId((x % m) as u32)))
                        .or_default() += 1;
                }
                return Ok(Self::from_counts(
                    old,
                    new,
                    Counts {
                        flows: counts,
                        lost: BTreeMap::new(),
                        unroutable: 0,
                        total: lcm,
                    },
                    Estimate::Exact,
                ));
            }
        }
        let mut state = 0x5EED_u64;
        let keys: Vec<i64> = (0..DEFAULT_SAMPLE_KEYS)
            .map(|_| splitmix64(&mut state) as i64)
            .collect();
        Self::compute_with_sample(old, new, keys.iter().map(|&k| ShardKey::Int(k)))
    }

    /// The plan from `old` to `new` estimated from `sample` keys: for range
    /// and list functions, real keys (or their distinct values).
    ///
    /// ```
    /// use sysmanage_db::shard::{RangeShards, ReshardPlan, ShardId, ShardKey, Topology};
    ///
    /// let old_f = RangeShards::builder()
    ///     .range(None, Some(100_i64.into()), ShardId(0))
    ///     .range(Some(100_i64.into()), Some(200_i64.into()), ShardId(1))
    ///     .build()?;
    /// // The new ranges forget [150, 200).
    /// let new_f = RangeShards::builder()
    ///     .range(None, Some(50_i64.into()), ShardId(0))
    ///     .range(Some(50_i64.into()), Some(150_i64.into()), ShardId(1))
    ///     .build()?;
    /// let old = Topology::round_robin(&old_f, &["a", "b"])?;
    /// let new = Topology::round_robin(&new_f, &["a", "b"])?;
    /// let keys: Vec<i64> = (0..200).collect();
    /// let plan = ReshardPlan::compute_with_sample(&old, &new, keys.iter().map(|k| ShardKey::Int(*k)))?;
    /// assert_eq!(plan.moved_fraction, 0.25);  // [50, 100) moves from shard 0 to 1
    /// assert_eq!(plan.lost_fraction, 0.25);   // [150, 200) would be orphaned
    /// assert_eq!(plan.lost[0].from, ShardId(1));
    /// # Ok::<(), sysmanage_db::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the sample is empty.
    pub fn compute_with_sample<'k>(
        old: &Topology<'_>,
        new: &Topology<'_>,
        sample: impl IntoIterator<Item = ShardKey<'k>>,
    ) -> Result<Self> {
        let mut counts = Counts::default();
        for key in sample {
            counts.total += 1;
            match (old.function.shard_for(&key), new.function.shard_for(&key)) {
                (Ok(a), Ok(b)) => *counts.flows.entry((a, b)).or_default() += 1,
                (Ok(a), Err(_)) => *counts.lost.entry(a).or_default() += 1,
                (Err(_), _) => counts.unroutable += 1,
            }
        }
        let total = counts.total;
        if total == 0 {
            return Err(Error::InvalidConfig {
                field: "sample",
                reason: "must not be empty".into(),
            });
        }
        let n = usize::try_from(total).unwrap_or(usize::MAX);
        Ok(Self::from_counts(
            old,
            new,
            counts,
            Estimate::Sampled { keys: n },
        ))
    }

    fn from_counts(
        old: &Topology<'_>,
        new: &Topology<'_>,
        counts: Counts,
        estimate: Estimate,
    ) -> Self {
        let denom = counts.total as f64;
        let lost: Vec<KeyLoss> = counts
            .lost
            .into_iter()
            .map(|(from, c)| KeyLoss {
                from,
                from_node_set: old.node_set(from).to_owned(),
                fraction: c as f64 / denom,
            })
            .collect();
        let lost_fraction = lost.iter().fold(0.0, |acc, l| acc + l.fraction);
        let flows: Vec<KeyFlow> = counts
            .flows
            .into_iter()
            .map(|((from, to), c)| KeyFlow {
                from,
                from_node_set: old.node_set(from).to_owned(),
                to,
                to_node_set: new.node_set(to).to_owned(),
                fraction: c as f64 / denom,
            })
            .collect();
        let moved_fraction = flows
            .iter()
            .filter(|f| f.changes_shard())
            .fold(0.0, |acc, f| acc + f.fraction);
        let copied_fraction = flows
            .iter()
            .filter(|f| f.copies_data())
            .fold(0.0, |acc, f| acc + f.fraction);
        ReshardPlan {
            old_function: old.function.name(),
            new_function: new.function.name(),
            old_shards: old.function.shard_count(),
            new_shards: new.function.shard_count(),
            estimate,
            moved_fraction,
            copied_fraction,
            lost_fraction,
            unroutable_fraction: counts.unroutable as f64 / denom,
            flows,
            lost,
        }
    }

    /// For each old shard, the new shards its keys go to.
    pub fn splits(&self) -> BTreeMap<ShardId, Vec<ShardId>> {
        let mut out: BTreeMap<ShardId, Vec<ShardId>> = BTreeMap::new();
        for f in &self.flows {
            out.entry(f.from).or_default().push(f.to);
        }
        out
    }

    /// The flows that copy rows to another node set: the migration work.
    pub fn copies(&self) -> impl Iterator<Item = &KeyFlow> {
        self.flows.iter().filter(|f| f.copies_data())
    }
}

/// Key counts behind a plan.
#[derive(Default)]
struct Counts {
    /// (old shard, new shard) → keys routed by both.
    flows: BTreeMap<(ShardId, ShardId), u64>,
    /// Old shard → keys the new topology does not route.
    lost: BTreeMap<ShardId, u64>,
    /// Keys the old topology does not route.
    unroutable: u64,
    total: u64,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::{JumpHash, PgHash};

    #[test]
    fn doubling_splits_r_into_r_and_r_plus_n() {
        let (a, b) = (PgHash::new(3).unwrap(), PgHash::new(6).unwrap());
        let old = Topology::round_robin(&a, &["x"]).unwrap();
        let new = Topology::round_robin(&b, &["x", "y"]).unwrap();
        let plan = ReshardPlan::compute(&old, &new).unwrap();
        assert_eq!(plan.estimate, Estimate::Exact);
        for r in 0..3 {
            assert_eq!(plan.splits()[&ShardId(r)], vec![ShardId(r), ShardId(r + 3)]);
        }
        assert!((plan.moved_fraction - 0.5).abs() < 1e-12);
        // Shards 1, 3, 5 are on y: 1/2 of the keys are copied.
        assert!((plan.copied_fraction - 0.5).abs() < 1e-12);
    }

    #[test]
    fn placement_change_moves_data_without_rehashing() {
        let f = PgHash::new(4).unwrap();
        let old = Topology::round_robin(&f, &["a"]).unwrap();
        let new = Topology::new(&f, ["a", "a", "a", "b"].map(String::from).to_vec()).unwrap();
        let plan = ReshardPlan::compute(&old, &new).unwrap();
        assert_eq!(plan.moved_fraction, 0.0);
        assert!((plan.copied_fraction - 0.25).abs() < 1e-12);
        let copies: Vec<_> = plan.copies().collect();
        assert_eq!(copies.len(), 1);
        assert_eq!((copies[0].from, copies[0].to), (ShardId(3), ShardId(3)));
    }

    #[test]
    fn jump_growth_is_sampled_and_minimal() {
        let (a, b) = (JumpHash::new(9).unwrap(), JumpHash::new(10).unwrap());
        let old = Topology::round_robin(&a, &["a"]).unwrap();
        let new = Topology::round_robin(&b, &["a"]).unwrap();
        let plan = ReshardPlan::compute(&old, &new).unwrap();
        assert!(matches!(plan.estimate, Estimate::Sampled { .. }));
        assert!(
            (plan.moved_fraction - 0.1).abs() < 0.005,
            "{}",
            plan.moved_fraction
        );
        // Every moved key goes to the new shard.
        assert!(
            plan.flows
                .iter()
                .filter(|f| f.changes_shard())
                .all(|f| f.to == ShardId(9))
        );
    }

    /// Synthetic int keys fall outside text ranges and int lists, so the old
    /// estimate reported that (almost) nothing moves.
    #[test]
    fn compute_refuses_functions_that_need_real_keys() {
        use crate::shard::{ListShards, RangeShards};

        let text_old = RangeShards::builder()
            .range(None, Some("m".into()), ShardId(0))
            .range(Some("m".into()), None, ShardId(1))
            .build()
            .unwrap();
        let text_new = RangeShards::builder()
            .range(None, Some("g".into()), ShardId(0))
            .range(Some("g".into()), None, ShardId(1))
            .build()
            .unwrap();
        let old = Topology::round_robin(&text_old, &["a", "b"]).unwrap();
        let new = Topology::round_robin(&text_new, &["a", "b"]).unwrap();
        assert!(matches!(
            ReshardPlan::compute(&old, &new),
            Err(Error::PlanNeedsSample { function: "range" })
        ));
        let list = ListShards::builder()
            .values(ShardId(0), [1_i64, 2])
            .values(ShardId(1), [3_i64])
            .build()
            .unwrap();
        let hash = PgHash::new(2).unwrap();
        let (l, h) = (
            Topology::round_robin(&list, &["a"]).unwrap(),
            Topology::round_robin(&hash, &["a"]).unwrap(),
        );
        let err = ReshardPlan::compute(&h, &l).unwrap_err();
        assert!(matches!(err, Error::PlanNeedsSample { function: "list" }));
        assert_eq!(
            err.to_string(),
            "a resharding plan with the list shard function needs a sample of real keys (use compute_with_sample)"
        );
        assert!(ReshardPlan::compute(&l, &h).is_err());

        // With real keys the same change is planned: keys in [g, m) move.
        let keys = ["apple", "grape", "kiwi", "mango", "pear", "zucchini"];
        let plan = ReshardPlan::compute_with_sample(&old, &new, keys.map(ShardKey::Text)).unwrap();
        assert!((plan.moved_fraction - 2.0 / 6.0).abs() < 1e-12);
        assert_eq!(plan.lost_fraction, 0.0);
    }

    /// Keys routed before and not after were lumped into
    /// `unroutable_fraction` with keys no topology routes.
    #[test]
    fn keys_lost_by_the_new_topology_are_reported_apart() {
        use crate::shard::RangeShards;

        let old_f = RangeShards::builder()
            .range(Some(0_i64.into()), Some(100_i64.into()), ShardId(0))
            .range(Some(100_i64.into()), Some(200_i64.into()), ShardId(1))
            .build()
            .unwrap();
        let new_f = RangeShards::builder()
            .range(Some(0_i64.into()), Some(100_i64.into()), ShardId(0))
            .range(Some(200_i64.into()), Some(300_i64.into()), ShardId(1))
            .build()
            .unwrap();
        let old = Topology::round_robin(&old_f, &["a", "b"]).unwrap();
        let new = Topology::round_robin(&new_f, &["a", "b"]).unwrap();
        // 0..100 stays, 100..200 is lost, 200..300 is new (never routed before).
        let plan =
            ReshardPlan::compute_with_sample(&old, &new, (0..300).map(ShardKey::Int)).unwrap();
        assert!((plan.lost_fraction - 1.0 / 3.0).abs() < 1e-12);
        assert!((plan.unroutable_fraction - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(plan.moved_fraction, 0.0);
        assert_eq!(
            plan.lost,
            vec![KeyLoss {
                from: ShardId(1),
                from_node_set: "b".into(),
                fraction: plan.lost_fraction,
            }]
        );
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["lost"][0]["from"], 1);
        // Hash plans lose nothing.
        let (a, b) = (PgHash::new(3).unwrap(), JumpHash::new(5).unwrap());
        let hash_plan = ReshardPlan::compute(
            &Topology::round_robin(&a, &["a"]).unwrap(),
            &Topology::round_robin(&b, &["a"]).unwrap(),
        )
        .unwrap();
        assert_eq!((hash_plan.lost_fraction, hash_plan.lost.len()), (0.0, 0));
    }

    #[test]
    fn round_robin_rejects_unbounded_custom_functions() {
        #[derive(Debug)]
        struct Huge;
        impl ShardFunction for Huge {
            fn name(&self) -> &'static str {
                "huge"
            }
            fn shard_count(&self) -> u32 {
                u32::MAX
            }
            fn shard_for(&self, _: &ShardKey<'_>) -> Result<ShardId> {
                Ok(ShardId(0))
            }
        }
        assert!(matches!(
            Topology::round_robin(&Huge, &["a"]),
            Err(Error::InvalidConfig {
                field: "shard_count",
                ..
            })
        ));
    }

    #[test]
    fn placement_length_is_checked() {
        let f = PgHash::new(4).unwrap();
        assert!(Topology::new(&f, vec!["a".into()]).is_err());
        assert!(Topology::round_robin(&f, &[]).is_err());
    }
}
