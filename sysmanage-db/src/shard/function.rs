//! The [`ShardFunction`] trait and the non-PostgreSQL built-ins: jump
//! consistent hash, weighted rendezvous hashing, explicit ranges and lists.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::key::{OwnedShardKey, ShardId, ShardKey};
use super::pg_hash::{PgHash, partition_hash};
use crate::{Error, Result};

/// The most logical shards a shard function or a [`ShardRouter`](super::ShardRouter)
/// may have: 2^20 (1,048,576).
///
/// Routers and plans keep per-shard state, so the count is bounded; real
/// deployments use tens to thousands of logical shards. Constructors and
/// builders reject larger counts with [`Error::InvalidConfig`].
pub const MAX_SHARDS: u32 = 1 << 20;

/// `n` as a shard count: in `1..=MAX_SHARDS`.
pub(crate) fn check_shard_count(field: &'static str, n: u64) -> Result<u32> {
    if n == 0 || n > u64::from(MAX_SHARDS) {
        return Err(Error::InvalidConfig {
            field,
            reason: format!("must be in 1..={MAX_SHARDS}, got {n}"),
        });
    }
    Ok(n as u32)
}

/// The shard count implied by the largest shard id of an explicit mapping.
fn count_from_max_id(field: &'static str, max: ShardId) -> Result<u32> {
    // `max + 1` cannot overflow: ids at or above MAX_SHARDS are rejected first.
    if max.0 >= MAX_SHARDS {
        return Err(Error::InvalidConfig {
            field,
            reason: format!("{max} is above the largest shard id {}", MAX_SHARDS - 1),
        });
    }
    Ok(max.0 + 1)
}

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

    /// Whether every key of every type has a shard (true for hash functions,
    /// false for ranges and lists). Only then can
    /// [`ReshardPlan::compute`](super::ReshardPlan::compute) estimate a plan
    /// from synthetic keys; other functions need a sample of real keys.
    fn routes_every_key(&self) -> bool {
        false
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
    fn routes_every_key(&self) -> bool {
        (**self).routes_every_key()
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
    fn routes_every_key(&self) -> bool {
        (**self).routes_every_key()
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
///
/// Deserialising validates like [`JumpHash::new`]:
///
/// ```
/// use sysmanage_db::shard::JumpHash;
///
/// let f: JumpHash = serde_json::from_str(r#"{"shards": 10}"#)?;
/// assert_eq!(f, JumpHash::new(10)?);
/// assert!(serde_json::from_str::<JumpHash>(r#"{"shards": 0}"#).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "JumpHashConfig")]
pub struct JumpHash {
    shards: u32,
}

/// The serialised form of [`JumpHash`], validated on the way in.
#[derive(Deserialize)]
struct JumpHashConfig {
    shards: u32,
}

impl TryFrom<JumpHashConfig> for JumpHash {
    type Error = Error;
    fn try_from(c: JumpHashConfig) -> Result<Self> {
        JumpHash::new(c.shards)
    }
}

impl JumpHash {
    /// Jump hash over `shards` shards.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `shards` is 0 or above [`MAX_SHARDS`].
    pub fn new(shards: u32) -> Result<Self> {
        check_shard_count("shards", u64::from(shards))?;
        Ok(JumpHash { shards })
    }

    /// The jump hash of a 64-bit value, as in the paper: a bucket in
    /// `0..shards`, or `None` when `shards` is 0 (there is no bucket).
    ///
    /// ```
    /// use sysmanage_db::shard::JumpHash;
    ///
    /// assert_eq!(JumpHash::bucket(42, 57), Some(43));
    /// assert_eq!(JumpHash::bucket(42, 0), None);
    /// ```
    #[inline]
    pub fn bucket(hash: u64, shards: u32) -> Option<u32> {
        (shards > 0).then(|| Self::jump(hash, shards))
    }

    /// The jump hash for `shards >= 1`.
    #[inline]
    fn jump(mut hash: u64, shards: u32) -> u32 {
        debug_assert!(shards > 0);
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
        // `new` guarantees at least one shard.
        Ok(ShardId(Self::jump(key_hash(key), self.shards)))
    }
    fn routes_every_key(&self) -> bool {
        true
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
///
/// It serialises as `{"weights": [...]}`; deserialising validates like
/// [`Rendezvous::weighted`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RendezvousConfig")]
pub struct Rendezvous {
    weights: Vec<f64>,
    /// Derived from `weights`.
    #[serde(skip_serializing)]
    uniform: bool,
}

/// The serialised form of [`Rendezvous`], validated on the way in.
#[derive(Deserialize)]
struct RendezvousConfig {
    weights: Vec<f64>,
}

impl TryFrom<RendezvousConfig> for Rendezvous {
    type Error = Error;
    fn try_from(c: RendezvousConfig) -> Result<Self> {
        Rendezvous::weighted(&c.weights)
    }
}

impl Rendezvous {
    /// `shards` equally weighted shards.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `shards` is 0 or above [`MAX_SHARDS`].
    pub fn new(shards: u32) -> Result<Self> {
        check_shard_count("shards", u64::from(shards))?;
        Ok(Rendezvous {
            weights: vec![1.0; shards as usize],
            uniform: true,
        })
    }

    /// One shard per weight, shard `i` with `weights[i]`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the list is empty or longer than
    /// [`MAX_SHARDS`], or a weight is not a finite positive number.
    pub fn weighted(weights: &[f64]) -> Result<Self> {
        if weights.is_empty() {
            return Err(Error::InvalidConfig {
                field: "weights",
                reason: "must not be empty".into(),
            });
        }
        check_shard_count("weights", weights.len() as u64)?;
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
    fn routes_every_key(&self) -> bool {
        true
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
///
/// It serialises as `{"ranges": [...]}`; deserialising sorts and validates
/// the ranges exactly as [`RangeShardsBuilder::build`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RangeShardsConfig")]
pub struct RangeShards {
    ranges: Vec<KeyRange>,
    /// The bounds' key type; `None` when every bound is unbounded.
    #[serde(skip_serializing)]
    key_type: Option<KeyType>,
    #[serde(skip_serializing)]
    shards: u32,
}

/// The type of the keys an explicit mapping was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Int,
    Text,
    Bytea,
    Uuid,
}

impl KeyType {
    fn of(key: &ShardKey<'_>) -> Self {
        match key {
            ShardKey::Int(_) => KeyType::Int,
            ShardKey::Text(_) => KeyType::Text,
            ShardKey::Bytes(_) => KeyType::Bytea,
            ShardKey::Uuid(_) => KeyType::Uuid,
        }
    }

    /// As [`ShardKey::type_name`].
    fn name(self) -> &'static str {
        match self {
            KeyType::Int => "int",
            KeyType::Text => "text",
            KeyType::Bytea => "bytea",
            KeyType::Uuid => "uuid",
        }
    }
}

/// The serialised form of [`RangeShards`], validated on the way in.
#[derive(Deserialize)]
struct RangeShardsConfig {
    ranges: Vec<KeyRange>,
}

impl TryFrom<RangeShardsConfig> for RangeShards {
    type Error = Error;
    fn try_from(c: RangeShardsConfig) -> Result<Self> {
        RangeShardsBuilder { ranges: c.ranges }.build()
    }
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
    /// types, a range is empty, two ranges overlap or a shard id is at or
    /// above [`MAX_SHARDS`].
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
                let t = KeyType::of(&bound.as_key());
                match key_type {
                    None => key_type = Some(t),
                    Some(k) if k != t => {
                        return Err(invalid(format!(
                            "bounds mix {} and {} keys",
                            k.name(),
                            t.name()
                        )));
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
        let max = self
            .ranges
            .iter()
            .map(|r| r.shard)
            .max()
            .unwrap_or_default();
        let shards = count_from_max_id("ranges", max)?;
        Ok(RangeShards {
            ranges: self.ranges,
            key_type,
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
        if let Some(expected) = self.key_type
            && KeyType::of(key) != expected
        {
            return Err(Error::KeyTypeMismatch {
                function: "range",
                expected: expected.name(),
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
///
/// It serialises as `{"entries": [[value, shard], ...]}`; deserialising sorts
/// and validates the entries exactly as [`ListShardsBuilder::build`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ListShardsConfig")]
pub struct ListShards {
    /// Sorted by value for binary search.
    entries: Vec<(OwnedShardKey, ShardId)>,
    #[serde(skip_serializing)]
    shards: u32,
}

/// The serialised form of [`ListShards`], validated on the way in.
#[derive(Deserialize)]
struct ListShardsConfig {
    entries: Vec<(OwnedShardKey, ShardId)>,
}

impl TryFrom<ListShardsConfig> for ListShards {
    type Error = Error;
    fn try_from(c: ListShardsConfig) -> Result<Self> {
        ListShardsBuilder { entries: c.entries }.build()
    }
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
    /// [`Error::InvalidConfig`] when there are no values, a value is listed
    /// twice or a shard id is at or above [`MAX_SHARDS`].
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
        let max = self.entries.iter().map(|e| e.1).max().unwrap_or_default();
        let shards = count_from_max_id("lists", max)?;
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

    fn routes_every_key(&self) -> bool {
        true
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
            assert_eq!(JumpHash::bucket(key, n), Some(expected), "jump({key}, {n})");
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
    fn jump_bucket_of_zero_shards_is_none() {
        assert_eq!(JumpHash::bucket(0, 0), None);
        assert_eq!(JumpHash::bucket(u64::MAX, 0), None);
        assert_eq!(JumpHash::bucket(u64::MAX, 1), Some(0));
        // Any non-zero count has buckets, even above MAX_SHARDS.
        assert!(JumpHash::bucket(7, u32::MAX).is_some_and(|b| b < u32::MAX));
    }

    #[test]
    fn shard_counts_are_capped() {
        let over = MAX_SHARDS + 1;
        for err in [
            JumpHash::new(2_000_000_000).unwrap_err(),
            JumpHash::new(over).unwrap_err(),
            Rendezvous::new(over).unwrap_err(),
            Rendezvous::weighted(&vec![1.0; over as usize]).unwrap_err(),
        ] {
            assert!(
                matches!(&err, Error::InvalidConfig { reason, .. } if reason.contains("1..=1048576")),
                "{err}"
            );
        }
        assert_eq!(JumpHash::new(MAX_SHARDS).unwrap().shard_count(), MAX_SHARDS);
        assert_eq!(
            Rendezvous::new(MAX_SHARDS).unwrap().shard_count(),
            MAX_SHARDS
        );
    }

    /// A shard id of u32::MAX made `max + 1` overflow (a panic in debug
    /// builds, a shard count of 0 in release builds).
    #[test]
    fn huge_shard_ids_are_typed_errors_not_overflows() {
        for id in [u32::MAX, MAX_SHARDS] {
            let range = RangeShards::builder()
                .range(None, None, ShardId(id))
                .build()
                .unwrap_err();
            assert_eq!(
                range.to_string(),
                format!("invalid ranges: shard-{id} is above the largest shard id 1048575")
            );
            let list = ListShards::builder()
                .values(ShardId(id), [1_i64])
                .build()
                .unwrap_err();
            assert!(
                matches!(list, Error::InvalidConfig { field: "lists", .. }),
                "{list}"
            );
        }
        let top = ListShards::builder()
            .values(ShardId(MAX_SHARDS - 1), [1_i64])
            .build()
            .unwrap();
        assert_eq!(top.shard_count(), MAX_SHARDS);
    }

    #[test]
    fn deserialising_validates_every_function() {
        use serde_json::{from_str, from_value, json, to_value};

        assert!(from_str::<JumpHash>(r#"{"shards": 0}"#).is_err());
        assert!(from_str::<JumpHash>(r#"{"shards": 2000000000}"#).is_err());
        assert!(from_str::<Rendezvous>(r#"{"weights": []}"#).is_err());
        assert!(from_str::<Rendezvous>(r#"{"weights": [1.0, -2.0]}"#).is_err());
        assert!(from_str::<Rendezvous>(r#"{"weights": [1.0, 0.0]}"#).is_err());
        // `uniform` is derived from the weights, never trusted from input.
        let w: Rendezvous = from_str(r#"{"weights": [1.0, 3.0], "uniform": true}"#).unwrap();
        assert_eq!(w, Rendezvous::weighted(&[1.0, 3.0]).unwrap());

        // Unsorted ranges are sorted (they were binary-searched as given).
        let ranges = json!({"ranges": [
            {"from": {"int": 100}, "to": null, "shard": 1},
            {"from": null, "to": {"int": 100}, "shard": 0},
        ]});
        // From a non-'static value: the key type is an enum, not a &'static str.
        let r: RangeShards = from_value(ranges).unwrap();
        assert_eq!(r.shard_for(&ShardKey::Int(5)).unwrap(), ShardId(0));
        assert_eq!(r.shard_for(&ShardKey::Int(500)).unwrap(), ShardId(1));
        assert_eq!(r.shard_count(), 2);
        assert!(matches!(
            r.shard_for(&ShardKey::Text("x")),
            Err(Error::KeyTypeMismatch {
                expected: "int",
                got: "text",
                ..
            })
        ));
        assert_eq!(from_value::<RangeShards>(to_value(&r).unwrap()).unwrap(), r);
        for bad in [
            json!({"ranges": []}),
            json!({"ranges": [
                {"from": null, "to": {"int": 10}, "shard": 0},
                {"from": {"int": 5}, "to": null, "shard": 1},
            ]}),
            json!({"ranges": [{"from": {"int": 10}, "to": {"int": 10}, "shard": 0}]}),
            json!({"ranges": [{"from": null, "to": {"int": 1}, "shard": 4294967295_u32}]}),
            json!({"ranges": [
                {"from": null, "to": {"int": 10}, "shard": 0},
                {"from": {"text": "a"}, "to": null, "shard": 1},
            ]}),
        ] {
            assert!(from_value::<RangeShards>(bad.clone()).is_err(), "{bad}");
        }

        // Unsorted lists are sorted; duplicates are rejected.
        let lists = json!({"entries": [
            [{"text": "us-east"}, 1], [{"text": "eu-west"}, 0], [{"text": "ap-south"}, 2],
        ]});
        let l: ListShards = from_value(lists).unwrap();
        for (value, shard) in [("us-east", 1), ("eu-west", 0), ("ap-south", 2)] {
            assert_eq!(l.shard_for(&ShardKey::Text(value)).unwrap(), ShardId(shard));
        }
        assert_eq!(from_value::<ListShards>(to_value(&l).unwrap()).unwrap(), l);
        let dup = json!({"entries": [[{"int": 1}, 0], [{"int": 1}, 1]]});
        assert!(from_value::<ListShards>(dup).is_err());
        assert!(from_value::<ListShards>(json!({"entries": []})).is_err());
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
