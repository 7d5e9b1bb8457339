//! PostgreSQL's hash functions, bit for bit, and `PARTITION BY HASH` routing.
//!
//! Ported from PostgreSQL's `src/common/hashfn.c` (`hash_bytes_extended`,
//! `hash_bytes_uint32_extended`: Bob Jenkins' lookup3), `hashfn.h`
//! (`hash_combine64`), `access/hash/hashfunc.c` (`hashint2extended`,
//! `hashint4extended`, `hashint8extended`, `hashtextextended`,
//! `hashvarlenaextended`), `utils/adt/uuid.c` (`uuid_hash_extended`) and
//! `partitioning/partbounds.c` (`compute_partition_hash_value`,
//! `HASH_PARTITION_SEED`).
//!
//! # Byte order
//! PostgreSQL reads variable-length data (text, bytea, uuid) in native-endian
//! 32-bit words, so a big-endian server (s390x) partitions those types
//! differently from a little-endian one (x86-64, AArch64). This module always
//! computes the little-endian result, on every platform it runs on, so it
//! agrees with PostgreSQL on little-endian servers. Integer keys hash the same
//! on both.

use serde::{Deserialize, Serialize};

use super::function::check_shard_count;
use super::key::{ShardId, ShardKey};
use crate::{Error, Result};

/// The seed PostgreSQL passes to every column's extended hash function when
/// routing a row to a hash partition (`HASH_PARTITION_SEED` in `partbounds.c`).
pub const HASH_PARTITION_SEED: u64 = 0x7A5B_2236_7996_DCFD;

const GOLDEN: u32 = 0x9e37_79b9;
const INIT_BIAS: u32 = 3_923_095;

#[inline(always)]
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

#[inline(always)]
fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

#[inline(always)]
fn seed_state(len: u32, seed: u64) -> (u32, u32, u32) {
    let init = GOLDEN.wrapping_add(len).wrapping_add(INIT_BIAS);
    let (mut a, mut b, mut c) = (init, init, init);
    if seed != 0 {
        a = a.wrapping_add((seed >> 32) as u32);
        b = b.wrapping_add(seed as u32);
        mix(&mut a, &mut b, &mut c);
    }
    (a, b, c)
}

/// Little-endian word from up to four bytes (missing high bytes are zero).
#[inline(always)]
fn le_word(bytes: &[u8]) -> u32 {
    let mut w = 0u32;
    for (i, &byte) in bytes.iter().enumerate() {
        w |= u32::from(byte) << (8 * i);
    }
    w
}

/// `hash_bytes_extended(k, len, seed)`: PostgreSQL's 64-bit lookup3 hash of
/// a byte string, as computed on a little-endian server.
///
/// Keys longer than `i32::MAX` bytes (which PostgreSQL cannot store) hash
/// with their length truncated to 32 bits.
pub fn hash_bytes_extended(key: &[u8], seed: u64) -> u64 {
    let (mut a, mut b, mut c) = seed_state(key.len() as u32, seed);
    let mut chunks = key.chunks_exact(12);
    for chunk in &mut chunks {
        a = a.wrapping_add(le_word(&chunk[0..4]));
        b = b.wrapping_add(le_word(&chunk[4..8]));
        c = c.wrapping_add(le_word(&chunk[8..12]));
        mix(&mut a, &mut b, &mut c);
    }
    let rest = chunks.remainder();
    // The lowest byte of `c` is reserved for the length (it was folded in at
    // set-up), so the 9th..11th tail bytes go to c's upper three bytes.
    match rest.len() {
        0 => {}
        1..=3 => a = a.wrapping_add(le_word(rest)),
        4..=7 => {
            a = a.wrapping_add(le_word(&rest[0..4]));
            b = b.wrapping_add(le_word(&rest[4..]));
        }
        _ => {
            a = a.wrapping_add(le_word(&rest[0..4]));
            b = b.wrapping_add(le_word(&rest[4..8]));
            c = c.wrapping_add(le_word(&rest[8..]) << 8);
        }
    }
    final_mix(&mut a, &mut b, &mut c);
    (u64::from(b) << 32) | u64::from(c)
}

/// `hash_bytes_uint32_extended(k, seed)`: PostgreSQL's 64-bit hash of one
/// 32-bit value.
#[inline]
pub fn hash_uint32_extended(k: u32, seed: u64) -> u64 {
    let (mut a, mut b, mut c) = seed_state(4, seed);
    a = a.wrapping_add(k);
    final_mix(&mut a, &mut b, &mut c);
    (u64::from(b) << 32) | u64::from(c)
}

/// `hash_combine64(a, b)`: how PostgreSQL folds per-column hashes together.
#[inline]
pub fn hash_combine64(a: u64, b: u64) -> u64 {
    a ^ b
        .wrapping_add(0x49a0_f4dd_15e5_a8e3)
        .wrapping_add(a << 54)
        .wrapping_add(a >> 7)
}

/// `hashint8extended`: the high half is folded into the low half so that
/// equal `int2`/`int4`/`int8` values hash alike.
#[inline]
pub fn hash_int8_extended(value: i64, seed: u64) -> u64 {
    let lo = value as u32;
    let hi = (value >> 32) as u32;
    let folded = lo ^ if value >= 0 { hi } else { !hi };
    hash_uint32_extended(folded, seed)
}

/// The extended hash PostgreSQL's default hash operator class computes for
/// one column value: `hashint{2,4,8}extended`, `hashtextextended`
/// (deterministic collations), `hashvarlenaextended` (bytea) or
/// `uuid_hash_extended`.
#[inline]
pub fn hash_key_extended(key: &ShardKey<'_>, seed: u64) -> u64 {
    match *key {
        ShardKey::Int(v) => hash_int8_extended(v, seed),
        ShardKey::Text(s) => hash_bytes_extended(s.as_bytes(), seed),
        ShardKey::Bytes(b) => hash_bytes_extended(b, seed),
        ShardKey::Uuid(u) => hash_bytes_extended(&u, seed),
    }
}

/// The row hash `compute_partition_hash_value` computes for a
/// `PARTITION BY HASH (key)` table: the column's extended hash with
/// [`HASH_PARTITION_SEED`], combined into 0 with [`hash_combine64`].
#[inline]
pub fn partition_hash(key: &ShardKey<'_>) -> u64 {
    hash_combine64(0, hash_key_extended(key, HASH_PARTITION_SEED))
}

/// The row hash of a multi-column key, `PARTITION BY HASH (c1, c2, …)`.
///
/// `None` is SQL `NULL`, which PostgreSQL skips (a row whose every key column
/// is `NULL` hashes to 0 and lands in the partition with remainder 0).
pub fn partition_hash_columns<'a, I>(columns: I) -> u64
where
    I: IntoIterator<Item = Option<ShardKey<'a>>>,
{
    columns.into_iter().flatten().fold(0, |acc, key| {
        hash_combine64(acc, hash_key_extended(&key, HASH_PARTITION_SEED))
    })
}

/// Shards exactly as PostgreSQL's `PARTITION BY HASH (key)` with
/// `MODULUS n`: a key's shard is the `REMAINDER` of the partition
/// PostgreSQL stores it in.
///
/// Supports `int2`/`int4`/`int8`, `text`/`varchar` under a deterministic
/// collation, `bytea` and `uuid` keys. The same computation is what pgcat does
/// for `bigint` keys; it is stable across processes, platforms and releases
/// because PostgreSQL must keep it stable for `pg_upgrade`.
///
/// ```
/// use sysmanage_db::shard::{PgHash, ShardFunction, ShardId, ShardKey};
///
/// let f = PgHash::new(8)?;
/// // `CREATE TABLE t (id int8) PARTITION BY HASH (id)` with eight partitions
/// // stores id 42 in the one with `REMAINDER 2`.
/// assert_eq!(f.shard_for(&ShardKey::Int(42))?, ShardId(2));
/// # Ok::<(), sysmanage_db::Error>(())
/// ```
///
/// It serialises as `{"modulus": n}`; deserialising validates like
/// [`PgHash::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PgHashConfig")]
pub struct PgHash {
    modulus: u32,
}

/// The serialised form of [`PgHash`], validated on the way in.
#[derive(Deserialize)]
struct PgHashConfig {
    modulus: u32,
}

impl TryFrom<PgHashConfig> for PgHash {
    type Error = Error;
    fn try_from(c: PgHashConfig) -> Result<Self> {
        PgHash::new(c.modulus)
    }
}

impl PgHash {
    /// `MODULUS modulus`: shards `0..modulus`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `modulus` is 0 or above
    /// [`MAX_SHARDS`](super::MAX_SHARDS).
    pub fn new(modulus: u32) -> Result<Self> {
        check_shard_count("modulus", u64::from(modulus))?;
        Ok(PgHash { modulus })
    }

    /// The modulus.
    pub fn modulus(&self) -> u32 {
        self.modulus
    }

    /// The shard of a multi-column key, as `PARTITION BY HASH (c1, c2, …)`
    /// with this modulus would place the row; `None` is SQL `NULL`.
    ///
    /// ```
    /// use sysmanage_db::shard::{PgHash, ShardKey};
    ///
    /// let f = PgHash::new(7)?;
    /// let shard = f.shard_for_columns([Some(ShardKey::Int(42)), Some(ShardKey::Text("eu"))]);
    /// assert!(shard.0 < 7);
    /// // A row whose key columns are all NULL goes to remainder 0.
    /// assert_eq!(f.shard_for_columns([None, None]).0, 0);
    /// # Ok::<(), sysmanage_db::Error>(())
    /// ```
    pub fn shard_for_columns<'a>(
        &self,
        columns: impl IntoIterator<Item = Option<ShardKey<'a>>>,
    ) -> ShardId {
        self.shard_for_hash(partition_hash_columns(columns))
    }

    /// The shard of a row hash from [`partition_hash`] or
    /// [`partition_hash_columns`].
    #[inline]
    pub fn shard_for_hash(&self, row_hash: u64) -> ShardId {
        ShardId((row_hash % u64::from(self.modulus)) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: u64 = HASH_PARTITION_SEED;

    // Reference values from PostgreSQL 15.20 (x86-64):
    //   SELECT hashint8extended(v, 8816678312871386365) ...
    // printed as signed bigint there, compared as u64 here.
    #[test]
    fn int8_matches_postgresql_hashint8extended() {
        let cases: [(i64, i64); 10] = [
            (0, -4403592609991167795),
            (1, 5968994663651403477),
            (-1, -5017072347659237694),
            (42, 7363975540656877951),
            (2147483647, -6050265599104649060),
            (-2147483648, 4938542303000433043),
            (4294967296, 5968994663651403477),
            (-4294967297, 2147707635919668551),
            (i64::MAX, 4938542303000433043),
            (i64::MIN, -6050265599104649060),
        ];
        for (value, pg) in cases {
            assert_eq!(
                hash_int8_extended(value, SEED),
                pg as u64,
                "hashint8extended({value})"
            );
        }
    }

    #[test]
    fn unseeded_and_narrow_ints_match_postgresql() {
        // SELECT hashint8extended(42, 0)
        assert_eq!(hash_int8_extended(42, 0), 8010225493015854792);
        // SELECT hashint2extended((-7)::int2, seed), hashint8extended(-7, seed)
        let k = ShardKey::from(-7_i16);
        assert_eq!(
            hash_key_extended(&k, SEED),
            (-7298374200968567817_i64) as u64
        );
        assert_eq!(
            hash_int8_extended(-7, SEED),
            (-7298374200968567817_i64) as u64
        );
    }

    #[test]
    fn text_matches_postgresql_hashtextextended() {
        let cases: [(&str, i64); 4] = [
            ("", -5700645584453517373),
            ("hello", -2635279551741001039),
            ("sysmanage-host-000000000000000000001", 2245005029455808899),
            ("héllo wörld ✓", -3958577835331020376),
        ];
        for (text, pg) in cases {
            assert_eq!(
                hash_bytes_extended(text.as_bytes(), SEED),
                pg as u64,
                "{text:?}"
            );
        }
        assert_eq!(hash_bytes_extended(b"hello", 0), 3449563369152288809);
    }

    /// Every tail length and several 12-byte blocks:
    /// `hashtextextended(left('The quick brown fox jumps over the lazy dog', n), seed)`.
    #[test]
    fn every_length_matches_postgresql() {
        const PG: [u64; 44] = [
            12746098489256034243,
            12701965698509211580,
            14548465510528243283,
            3515404771647576006,
            16194724700105226857,
            12743092699940550380,
            17496860017589309964,
            2490044116434112174,
            8197177666979083362,
            1128990387745890170,
            11196837458383179440,
            13210944215848610453,
            13074243240317016098,
            3994320958599819571,
            12582814798321613463,
            3195964990734746365,
            11856549581578675276,
            7392068388824108558,
            17015017806134509262,
            17647067228804354721,
            16440665712211209190,
            12925911127108622228,
            1104219756816140633,
            18320436672508968286,
            11839685839671394317,
            5652438115739902581,
            1201374509327364659,
            1093108374719870778,
            2679886066821309172,
            16993075452144719850,
            18423689077525875484,
            6095676194959125135,
            14135270652423591528,
            12325290340497719062,
            8383156270552832646,
            6179957028112146251,
            442266231356727434,
            7921285396333654282,
            8814142132011124817,
            14265146883660500676,
            17393865410494466833,
            15870626539543676201,
            14175595860328605181,
            5870222023910117606,
        ];
        let text = b"The quick brown fox jumps over the lazy dog";
        for (n, expected) in PG.iter().enumerate() {
            assert_eq!(
                hash_bytes_extended(&text[..n], SEED),
                *expected,
                "length {n}"
            );
        }
    }

    #[test]
    fn uuid_matches_postgresql_uuid_hash_extended() {
        let nil = ShardKey::Uuid([0; 16]);
        assert_eq!(
            hash_key_extended(&nil, SEED),
            (-5281082146396728638_i64) as u64
        );
        let u = ShardKey::parse_uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
        assert_eq!(hash_key_extended(&u, SEED), 424513190990560493);
    }

    #[test]
    fn partition_hash_is_pgcat_formula() {
        // pgcat: hashint8extended(key, HASH_PARTITION_SEED) + 0x49a0f4dd15e5a8e3 (wrapping).
        for v in [-3_i64, 0, 1, 42, 1 << 40] {
            let expected = hash_int8_extended(v, SEED).wrapping_add(0x49a0_f4dd_15e5_a8e3);
            assert_eq!(partition_hash(&ShardKey::Int(v)), expected);
        }
        assert_eq!(
            partition_hash_columns([Some(ShardKey::Int(9))]),
            partition_hash(&ShardKey::Int(9))
        );
        assert_eq!(partition_hash_columns([None, None]), 0);
    }

    #[test]
    fn zero_modulus_is_rejected() {
        assert!(matches!(
            PgHash::new(0),
            Err(Error::InvalidConfig {
                field: "modulus",
                ..
            })
        ));
    }

    #[test]
    fn oversized_modulus_is_rejected() {
        assert!(PgHash::new(crate::shard::MAX_SHARDS).is_ok());
        let err = PgHash::new(crate::shard::MAX_SHARDS + 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid modulus: must be in 1..=1048576, got 1048577"
        );
    }

    /// Deserialising goes through `PgHash::new`: a zero modulus would make
    /// every `shard_for` divide by zero.
    #[test]
    fn deserialising_validates_the_modulus() {
        let f: PgHash = serde_json::from_str(r#"{"modulus": 8}"#).unwrap();
        assert_eq!(f, PgHash::new(8).unwrap());
        assert_eq!(serde_json::to_string(&f).unwrap(), r#"{"modulus":8}"#);
        let err = serde_json::from_str::<PgHash>(r#"{"modulus": 0}"#).unwrap_err();
        assert!(err.to_string().contains("invalid modulus"), "{err}");
        assert!(serde_json::from_str::<PgHash>(r#"{"modulus": 4294967295}"#).is_err());
    }
}
