//! The [`ShardFunction`] trait and the non-PostgreSQL built-ins: jump
//! consistent hash, weighted rendezvous hashing, explicit ranges and lists.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::key::{OwnedShardKey, ShardId, ShardKey};
use super::pg_hash::{PgHash, partition_hash};
use crate::{Error, Result};

/// Maps a key to the logical shard that owns it.
///
/// A shard function is a pure, deterministic function of the key: it reads no
/// clock, no randomness and no process state, so every process on every
/// platform routes a key to the same shard. Built-ins:
///
/// | function | use it when |
/// |---|---|
/// | [`PgHash`] | the shards are (or may become) `PARTITION BY HASH` partitions, or another tool must agree with PostgreSQL |
/// | [`JumpHash`] | shards are only ever appended and as few keys as possible should move |
/// | [`Rendezvous`] | shards have different capacities, or any shard may be removed |
/// | [`RangeShards`] | keys are ordered (time, tenant ids) and ranges move as a unit |
/// | [`ListShards`] | keys are a known set (regions, tenants) placed by hand |
///
/// A key a function cannot place is an error ([`Error::NoShardForKey`] or
/// [`Error::KeyTypeMismatch`]), never a broadcast.
pub trait ShardFunction: Send + Sync + fmt::Debug {
    /// A short stable name for logs and plans, e.g. `"pg_hash"`.
    fn name(&self) -> &'static str;

    /// The number of logical shards; every result is in `0..shard_count()`.
    fn shard_count(&self) -> u32;

    /// The shard that owns `key`.
    ///
    /// # Errors
    /// When the key matches no shard or has a type the function cannot place.
    fn shard_for(&self, key: &ShardKey<'_>) -> Result<ShardId>;

    /// This function as a [`PgHash`], which lets resharding plans compute the
    /// moved fraction exactly instead of by sampling.
    fn as_pg_hash(&self) -> Option<PgHash> {
        None
    }
}

impl<F: ShardFunction + ?Sized> ShardFunction for Arc<F> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn shard_count(&self) -> u32 {
        (**self).shard_count()
    }
    fn shard_for(&self, key: &ShardKey<'_>) -> Result<ShardId> {
        (**self).shard_for(key)
    }
    fn as_pg_hash(&self) -> Option<PgHash> {
        (**self).as_pg_hash()
    }
}

impl<F: ShardFunction + ?Sized> ShardFunction for Box<F> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn shard_count(&self) -> u32 {
        (**self).shard_count()
    }
    fn shard_for(&self, key: &ShardKey<'_>) -> Result<ShardId> {
        (**self).shard_for(key)
    }
    fn as_pg_hash(&self) -> Option<PgHash> {
        (**self).as_pg_hash()
    }
}

/// The 64-bit key hash the hash-based functions other than [`PgHash`] start
/// from: PostgreSQL's partition hash, which is already stable and well mixed.
#[inline]
fn key_hash(key: &ShardKey<'_>) -> u64 {
    partition_hash(key)
}

/// Jump consistent hash (Lamping & Veach, 2014) over `n` shards.
///
/// Growing from `n` to `n + 1` shards moves exactly the keys that land on the
/// new shard, about `1 / (n + 1)` of them, and no key moves between old
/// shards. Shards can only be added or removed at the end.
///
/// ```
/// use sysmanage_db::shard::{JumpHash, ShardFunction, ShardKey};
///
/// let f = JumpHash::new(10)?;
/// let shard = f.shard_for(&ShardKey::Text("host-17"))?;
/// assert!(shard.0 < 10);
/// # Ok::<(), sysmanage_db::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JumpHash {
    shards: u32,
}

impl JumpHash {
    /// Jump hash over `shards` shards.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `shards` is 0 or above `i32::MAX`.
    pub fn new(shards: u32) -> Result<Self> {
        if shards == 0 || shards > i32::MAX as u32 {
            return Err(Error::InvalidConfig {
                field: "shards",
                reason: format!("must be in 1..=2147483647, got {shards}"),
            });
        }
        Ok(JumpHash { shards })
    }

    /// The jump hash of a 64-bit value, as in the paper.
    #[inline]
    pub fn bucket(mut hash: u64, shards: u32) -> u32 {
        let mut b: i64 = -1;
        let mut j: i64 = 0;
        while j < i64::from(shards) {
            b = j;
            hash = hash.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
            j = ((b + 1) as f64 * ((1_u64 << 31) as f64 / ((hash >> 33) + 1) as f64)) as i64;
        }
        b as u32
    }
}

impl ShardFunction for JumpHash {
    fn name(&self) -> &'static str {
        "jump_hash"
    }
    fn shard_count(&self) -> u32 {
        self.shards
    }
    #[inline]
    fn shard_for(&self, key: &ShardKey<'_>) -> Result<ShardId> {
        Ok(ShardId(Self::bucket(key_hash(key), self.shards)))
    }
}

/// Weighted rendezvous (highest random weight) hashing.
///
/// Every shard scores every key; the highest score wins. With weights the
/// score is `-w / ln(u)` for a per-(key, shard) uniform `u` (the logarithmic
/// method), so a shard owns a `w / Σw` share of keys. Adding a shard of weight
/// `w` moves only the keys it now wins (`w / (Σw + w)` of them); removing one
/// moves only its own keys. The logarithm is computed with basic IEEE
/// operations only, so scores are identical on every platform.
///
/// ```
/// use sysmanage_db::shard::{Rendezvous, ShardFunction, ShardKey};
///
/// // Shard 2 has twice the capacity of shards 0 and 1.
/// let f = Rendezvous::weighted(&[1.0, 1.0, 2.0])?;
/// assert!(f.shard_for(&ShardKey::Int(99))?.0 < 3);
/// # Ok::<(), sysmanage_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendezvous {
    weights: Vec<f64>,
    uniform: bool,
}

impl Rendezvous {
    /// `shards` equally weighted shards.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `shards` is 0.
    pub fn new(shards: u32) -> Result<Self> {
        if shards == 0 {
            return Err(Error::InvalidConfig {
                field: "shards",
                reason: "must be at least 1".into(),
            });
        }
        Ok(Rendezvous {
            weights: vec![1.0; shards as usize],
            uniform: true,
        })
    }

    /// One shard per weight, shard `i` with `weights[i]`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the list is empty or a weight is not a
    /// finite positive number.
    pub fn weighted(weights: &[f64]) -> Result<Self> {
        if weights.is_empty() {
            return Err(Error::InvalidConfig {
                field: "weights",
                reason: "must not be empty".into(),
            });
        }
        if weights.len() > u32::MAX as usize {
            return Err(Error::InvalidConfig {
                field: "weights",
                reason: "too many shards".into(),
            });
        }
        if let Some((i, w)) = weights
            .iter()
            .enumerate()
            .find(|(_, w)| !(w.is_finite() && **w > 0.0))
        {
            return Err(Error::InvalidConfig {
                field: "weights",
                reason: format!("weight of shard {i} must be finite and positive, got {w}"),
            });
        }
        let uniform = weights.iter().all(|w| *w == weights[0]);
        Ok(Rendezvous {
            weights: weights.to_vec(),
            uniform,
        })
    }

    /// The weights, by shard.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    #[inline]
    fn draw(key_hash: u64, shard: u32) -> u64 {
        // SplitMix64's finaliser over the key hash and a per-shard constant.
        let mut z = key_hash ^ u64::from(shard).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Natural logarithm of `x` in `(0, 1]` from additions, multiplications and
/// divisions only (IEEE 754 rounds those identically everywhere, unlike a
/// platform `libm`).
fn portable_ln(x: f64) -> f64 {
    const LN2: f64 = std::f64::consts::LN_2;
    let bits = x.to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | (1023_u64 << 52));
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        exponent += 1;
    }
    // ln(m) = 2·atanh(s), s = (m−1)/(m+1), |s| ≤ 0.172.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    let mut k = 1.0;
    for _ in 0..14 {
        sum += term / k;
        term *= s2;
        k += 2.0;
    }
    exponent as f64 * LN2 + 2.0 * sum
}

impl ShardFunction for Rendezvous {
    fn name(&self) -> &'static str {
        "rendezvous"
    }
    fn shard_count(&self) -> u32 {
        self.weights.len() as u32
    }
    fn shard_for(&self, key: &ShardKey<'_>) -> Result<ShardId> {
        let h = key_hash(key);
        let mut best = 0_u32;
        if self.uniform {
            let mut best_draw = 0_u64;
            for shard in 0..self.weights.len() as u32 {
                let d = Self::draw(h, shard);
                if shard == 0 || d > best_draw {
                    best = shard;
                    best_draw = d;
                }
            }
        } else {
            let mut best_score = f64::NEG_INFINITY;
            for (shard, w) in self.weights.iter().enumerate() {
                // u in (0, 1): 53 random bits, offset by half a step.
                let u = ((Self::draw(h, shard as u32) >> 11) as f64 + 0.5) / (1_u64 << 53) as f64;
                let score = -w / portable_ln(u);
                if score > best_score {
                    best = shard as u32;
                    best_score = score;
                }
            }
        }
        Ok(ShardId(best))
    }
}

/// One range of [`RangeShards`]: keys in `[from, to)`, like PostgreSQL's
/// `FOR VALUES FROM (from) TO (to)`; `None` is `MINVALUE` / `MAXVALUE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    /// Inclusive lower bound; `None` is unbounded.
    pub from: Option<OwnedShardKey>,
    /// Exclusive upper bound; `None` is unbounded.
    pub to: Option<OwnedShardKey>,
    /// The shard that owns the range.
    pub shard: ShardId,
}

/// Explicit key ranges, each owned by one shard. A key in no range is
/// [`Error::NoShardForKey`].
///
/// Integers order numerically, text and bytea by bytes (PostgreSQL's `C`
/// collation), uuids by bytes (as PostgreSQL orders them).
///
/// ```
/// use sysmanage_db::shard::{RangeShards, ShardFunction, ShardId, ShardKey};
/// use sysmanage_db::Error;
///
/// let f = RangeShards::builder()
///     .range(None, Some(1_000_i64.into()), ShardId(0))
///     .range(Some(1_000_i64.into()), Some(5_000_i64.into()), ShardId(1))
///     .build()?;
/// assert_eq!(f.shard_for(&ShardKey::Int(999))?, ShardId(0));
/// assert_eq!(f.shard_for(&ShardKey::Int(1_000))?, ShardId(1));
/// assert!(matches!(f.shard_for(&ShardKey::Int(5_000)), Err(Error::NoShardForKey { .. })));
/// # Ok::<(), sysmanage_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeShards {
    ranges: Vec<KeyRange>,
    key_type: &'static str,
    shards: u32,
}

/// Builds [`RangeShards`].
#[derive(Debug, Default, Clone)]
pub struct RangeShardsBuilder {
    ranges: Vec<KeyRange>,
}

impl RangeShardsBuilder {
    /// Adds the range `[from, to)` owned by `shard`.
    pub fn range(
        mut self,
        from: Option<OwnedShardKey>,
        to: Option<OwnedShardKey>,
        shard: ShardId,
    ) -> Self {
        self.ranges.push(KeyRange { from, to, shard });
        self
    }

    /// Validates the ranges.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when there are no ranges, bounds mix key
    /// types, a range is empty or two ranges overlap.
    pub fn build(mut self) -> Result<RangeShards> {
        let invalid = |reason: String| Error::InvalidConfig {
            field: "ranges",
            reason,
        };
        if self.ranges.is_empty() {
            return Err(invalid("must not be empty".into()));
        }
        let mut key_type = None;
        for r in &self.ranges {
            for bound in [&r.from, &r.to].into_iter().flatten() {
                let t = bound.as_key().type_name();
                match key_type {
                    None => key_type = Some(t),
                    Some(k) if k != t => {
                        return Err(invalid(format!("bounds mix {k} and {t} keys")));
                    }
                    Some(_) => {}
                }
            }
            if let (Some(from), Some(to)) = (&r.from, &r.to)
                && from >= to
            {
                return Err(invalid(format!("range [{from}, {to}) is empty")));
            }
        }
        // Sort by lower bound (MINVALUE first) and reject overlaps.
        self.ranges.sort_by(|a, b| match (&a.from, &b.from) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x.cmp(y),
        });
        for pair in self.ranges.windows(2) {
            let overlap = match (&pair[0].to, &pair[1].from) {
                (None, _) | (_, None) => true,
                (Some(end), Some(start)) => start < end,
            };
            if overlap {
                return Err(invalid(format!(
                    "ranges of {} and {} overlap",
                    pair[0].shard, pair[1].shard
                )));
            }
        }
        let shards = self.ranges.iter().map(|r| r.shard.0).max().unwrap_or(0) + 1;
        Ok(RangeShards {
            ranges: self.ranges,
            key_type: key_type.unwrap_or("any"),
            shards,
        })
    }
}

impl RangeShards {
    /// Starts a builder.
    pub fn builder() -> RangeShardsBuilder {
        RangeShardsBuilder::default()
    }

    /// The ranges, ordered by lower bound.
    pub fn ranges(&self) -> &[KeyRange] {
        &self.ranges
    }
}

impl ShardFunction for RangeShards {
    fn name(&self) -> &'static str {
        "range"
    }
    fn shard_count(&self) -> u32 {
        self.shards
    }
    fn shard_for(&self, key: &ShardKey<'_>) -> Result<ShardId> {
        if self.key_type != "any" && key.type_name() != self.key_type {
            return Err(Error::KeyTypeMismatch {
                function: "range",
                expected: self.key_type,
                got: key.type_name(),
            });
        }
        // The last range whose lower bound is <= key.
        let idx = self
            .ranges
            .partition_point(|r| r.from.as_ref().is_none_or(|f| f.as_key() <= *key));
        if idx > 0 {
            let r = &self.ranges[idx - 1];
            if r.to.as_ref().is_none_or(|t| *key < t.as_key()) {
                return Ok(r.shard);
            }
        }
        Err(Error::NoShardForKey {
            function: "range",
            key: key.to_string(),
        })
    }
}

/// Explicit value lists, each value owned by one shard, like PostgreSQL's
/// `PARTITION BY LIST`. A value in no list is [`Error::NoShardForKey`].
///
/// ```
/// use sysmanage_db::shard::{ListShards, ShardFunction, ShardId, ShardKey};
///
/// let f = ListShards::builder()
///     .values(ShardId(0), ["eu-west", "eu-north"])
///     .values(ShardId(1), ["us-east"])
///     .build()?;
/// assert_eq!(f.shard_for(&ShardKey::Text("us-east"))?, ShardId(1));
/// assert!(f.shard_for(&ShardKey::Text("ap-south")).is_err());
/// # Ok::<(), sysmanage_db::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListShards {
    /// Sorted by value for binary search.
    entries: Vec<(OwnedShardKey, ShardId)>,
    shards: u32,
}

/// Builds [`ListShards`].
#[derive(Debug, Default, Clone)]
pub struct ListShardsBuilder {
    entries: Vec<(OwnedShardKey, ShardId)>,
}

impl ListShardsBuilder {
    /// Assigns every value in `values` to `shard`.
    pub fn values<K: Into<OwnedShardKey>>(
        mut self,
        shard: ShardId,
        values: impl IntoIterator<Item = K>,
    ) -> Self {
        self.entries
            .extend(values.into_iter().map(|v| (v.into(), shard)));
        self
    }

    /// Validates the lists.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when there are no values or a value is listed twice.
    pub fn build(mut self) -> Result<ListShards> {
        if self.entries.is_empty() {
            return Err(Error::InvalidConfig {
                field: "lists",
                reason: "must not be empty".into(),
            });
        }
        self.entries.sort();
        for pair in self.entries.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(Error::InvalidConfig {
                    field: "lists",
                    reason: format!(
                        "value {} is listed for {} and {}",
                        pair[0].0, pair[0].1, pair[1].1
                    ),
                });
            }
        }
        let shards = self.entries.iter().map(|e| e.1.0).max().unwrap_or(0) + 1;
        Ok(ListShards {
            entries: self.entries,
            shards,
        })
    }
}

impl ListShards {
    /// Starts a builder.
    pub fn builder() -> ListShardsBuilder {
        ListShardsBuilder::default()
    }
}

impl ShardFunction for ListShards {
    fn name(&self) -> &'static str {
        "list"
    }
    fn shard_count(&self) -> u32 {
        self.shards
    }
    fn shard_for(&self, key: &ShardKey<'_>) -> Result<ShardId> {
        match self.entries.binary_search_by(|(v, _)| v.as_key().cmp(key)) {
            Ok(i) => Ok(self.entries[i].1),
            Err(_) => Err(Error::NoShardForKey {
                function: "list",
                key: key.to_string(),
            }),
        }
    }
}

impl ShardFunction for PgHash {
    fn name(&self) -> &'static str {
        "pg_hash"
    }

    fn shard_count(&self) -> u32 {
        self.modulus()
    }

    #[inline]
    fn shard_for(&self, key: &ShardKey<'_>) -> Result<ShardId> {
        Ok(self.shard_for_hash(partition_hash(key)))
    }

    fn as_pg_hash(&self) -> Option<PgHash> {
        Some(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_ln_agrees_with_libm() {
        for x in [1e-16, 1e-9, 0.001, 0.1, 0.25, 0.5, 0.7, 0.9, 0.999_999, 1.0] {
            let ours = portable_ln(x);
            let libm = x.ln();
            assert!(
                (ours - libm).abs() <= 4.0 * f64::EPSILON * libm.abs().max(1.0),
                "{x}: {ours} vs {libm}"
            );
        }
    }

    /// The paper's C++ reference implementation, as checked by ClickHouse's
    /// `00580_consistent_hashing_functions` test (`jumpConsistentHash`).
    #[test]
    fn jump_hash_matches_reference_vectors() {
        let cases: [(u64, u32, u32); 6] = [
            (1, 1, 0),
            (42, 57, 43),
            (256, 1024, 520),
            (3_735_883_980, 1, 0),
            (3_735_883_980, 666, 361),
            (16_045_690_984_833_335_023, 255, 237),
        ];
        for (key, n, expected) in cases {
            assert_eq!(JumpHash::bucket(key, n), expected, "jump({key}, {n})");
        }
    }

    #[test]
    fn invalid_configs_are_typed_errors() {
        assert!(JumpHash::new(0).is_err());
        assert!(Rendezvous::new(0).is_err());
        assert!(Rendezvous::weighted(&[]).is_err());
        assert!(Rendezvous::weighted(&[1.0, f64::NAN]).is_err());
        assert!(Rendezvous::weighted(&[1.0, 0.0]).is_err());
        assert!(RangeShards::builder().build().is_err());
        let overlap = RangeShards::builder()
            .range(None, Some(10_i64.into()), ShardId(0))
            .range(Some(5_i64.into()), None, ShardId(1))
            .build();
        assert!(matches!(
            overlap,
            Err(Error::InvalidConfig {
                field: "ranges",
                ..
            })
        ));
        let mixed = RangeShards::builder()
            .range(None, Some(10_i64.into()), ShardId(0))
            .range(Some("a".into()), None, ShardId(1))
            .build();
        assert!(mixed.is_err());
        let dup = ListShards::builder()
            .values(ShardId(0), ["a"])
            .values(ShardId(1), ["a"])
            .build();
        assert!(dup.is_err());
    }

    #[test]
    fn range_gaps_and_wrong_types_are_errors_not_broadcasts() {
        let f = RangeShards::builder()
            .range(Some(0_i64.into()), Some(10_i64.into()), ShardId(0))
            .range(Some(20_i64.into()), None, ShardId(1))
            .build()
            .unwrap();
        assert_eq!(f.shard_for(&ShardKey::Int(0)).unwrap(), ShardId(0));
        assert_eq!(f.shard_for(&ShardKey::Int(9)).unwrap(), ShardId(0));
        assert_eq!(f.shard_for(&ShardKey::Int(i64::MAX)).unwrap(), ShardId(1));
        for gap in [-1, 10, 19] {
            assert!(matches!(
                f.shard_for(&ShardKey::Int(gap)),
                Err(Error::NoShardForKey {
                    function: "range",
                    ..
                })
            ));
        }
        assert!(matches!(
            f.shard_for(&ShardKey::Text("x")),
            Err(Error::KeyTypeMismatch {
                expected: "int",
                got: "text",
                ..
            })
        ));
    }

    #[test]
    fn weighted_rendezvous_follows_weights() {
        let f = Rendezvous::weighted(&[1.0, 3.0]).unwrap();
        let n = 40_000;
        let on_1 = (0..n)
            .filter(|i| f.shard_for(&ShardKey::Int(*i)).unwrap() == ShardId(1))
            .count();
        let share = on_1 as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.015, "share {share}");
    }
}
