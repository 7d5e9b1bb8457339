//! Shard keys and logical shard ids.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A logical shard number, `0..shard_count`.
///
/// Under [`PgHash`](super::PgHash) it is the `REMAINDER` of the
/// `PARTITION BY HASH` partition that would hold the key.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct ShardId(pub u32);

impl ShardId {
    /// The shard number as an index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard-{}", self.0)
    }
}

impl From<u32> for ShardId {
    fn from(n: u32) -> Self {
        ShardId(n)
    }
}

/// A value to shard on, borrowed so that routing allocates nothing.
///
/// PostgreSQL hashes `int2`, `int4` and `int8` values identically when they are
/// numerically equal (that is what lets it hash-join across integer types), so
/// one [`ShardKey::Int`] covers all three: `ShardKey::from(7_i16)`,
/// `ShardKey::from(7_i32)` and `ShardKey::from(7_i64)` land on the same shard,
/// exactly as they would in a `PARTITION BY HASH` table of either type.
///
/// Text is compared and hashed as its UTF-8 bytes, which is what PostgreSQL
/// does for every deterministic collation (`C`, `POSIX`, the libc and ICU
/// defaults); nondeterministic ICU collations hash a sort key instead and are
/// not supported. A `char(n)` (`bpchar`) value hashes without its trailing
/// spaces: pass the trimmed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ShardKey<'a> {
    /// An `int2`, `int4` or `int8` value.
    Int(i64),
    /// A `text` or `varchar` value.
    Text(&'a str),
    /// A `bytea` value.
    Bytes(&'a [u8]),
    /// A `uuid`, as its 16 bytes in the usual (RFC 9562) order.
    Uuid([u8; 16]),
}

impl ShardKey<'_> {
    /// The key's type, for error messages: `"int"`, `"text"`, `"bytea"` or `"uuid"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ShardKey::Int(_) => "int",
            ShardKey::Text(_) => "text",
            ShardKey::Bytes(_) => "bytea",
            ShardKey::Uuid(_) => "uuid",
        }
    }

    /// Parses a UUID in its canonical hyphenated form
    /// (`a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11`) or as 32 hex digits.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] naming the input when it is not a UUID.
    pub fn parse_uuid(s: &str) -> Result<ShardKey<'static>> {
        parse_uuid(s).map(ShardKey::Uuid)
    }

    /// The owned form of this key, for storing in plans and errors.
    pub fn to_owned_key(&self) -> OwnedShardKey {
        match *self {
            ShardKey::Int(v) => OwnedShardKey::Int(v),
            ShardKey::Text(s) => OwnedShardKey::Text(s.to_owned()),
            ShardKey::Bytes(b) => OwnedShardKey::Bytes(b.to_vec()),
            ShardKey::Uuid(u) => OwnedShardKey::Uuid(u),
        }
    }
}

impl fmt::Display for ShardKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardKey::Int(v) => write!(f, "{v}"),
            ShardKey::Text(s) => write!(f, "{s:?}"),
            ShardKey::Bytes(b) => {
                f.write_str("\\x")?;
                for byte in b.iter().take(32) {
                    write!(f, "{byte:02x}")?;
                }
                if b.len() > 32 {
                    f.write_str("…")?;
                }
                Ok(())
            }
            ShardKey::Uuid(u) => {
                for (i, byte) in u.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

impl From<i16> for ShardKey<'_> {
    fn from(v: i16) -> Self {
        ShardKey::Int(i64::from(v))
    }
}
impl From<i32> for ShardKey<'_> {
    fn from(v: i32) -> Self {
        ShardKey::Int(i64::from(v))
    }
}
impl From<i64> for ShardKey<'_> {
    fn from(v: i64) -> Self {
        ShardKey::Int(v)
    }
}
impl<'a> From<&'a str> for ShardKey<'a> {
    fn from(v: &'a str) -> Self {
        ShardKey::Text(v)
    }
}
impl<'a> From<&'a String> for ShardKey<'a> {
    fn from(v: &'a String) -> Self {
        ShardKey::Text(v.as_str())
    }
}
impl<'a> From<&'a [u8]> for ShardKey<'a> {
    fn from(v: &'a [u8]) -> Self {
        ShardKey::Bytes(v)
    }
}
impl From<[u8; 16]> for ShardKey<'_> {
    /// A 16-byte array is taken as a UUID.
    fn from(v: [u8; 16]) -> Self {
        ShardKey::Uuid(v)
    }
}
impl<'a> From<&'a OwnedShardKey> for ShardKey<'a> {
    fn from(v: &'a OwnedShardKey) -> Self {
        v.as_key()
    }
}

/// An owned [`ShardKey`], for configuration (range bounds, list values) and reports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OwnedShardKey {
    /// An `int2`, `int4` or `int8` value.
    Int(i64),
    /// A `text` value.
    Text(String),
    /// A `bytea` value.
    Bytes(Vec<u8>),
    /// A `uuid`.
    Uuid([u8; 16]),
}

impl OwnedShardKey {
    /// Borrows this key.
    pub fn as_key(&self) -> ShardKey<'_> {
        match self {
            OwnedShardKey::Int(v) => ShardKey::Int(*v),
            OwnedShardKey::Text(s) => ShardKey::Text(s),
            OwnedShardKey::Bytes(b) => ShardKey::Bytes(b),
            OwnedShardKey::Uuid(u) => ShardKey::Uuid(*u),
        }
    }
}

impl fmt::Display for OwnedShardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_key().fmt(f)
    }
}

impl From<i64> for OwnedShardKey {
    fn from(v: i64) -> Self {
        OwnedShardKey::Int(v)
    }
}
impl From<i32> for OwnedShardKey {
    fn from(v: i32) -> Self {
        OwnedShardKey::Int(i64::from(v))
    }
}
impl From<&str> for OwnedShardKey {
    fn from(v: &str) -> Self {
        OwnedShardKey::Text(v.to_owned())
    }
}
impl From<String> for OwnedShardKey {
    fn from(v: String) -> Self {
        OwnedShardKey::Text(v)
    }
}

fn parse_uuid(s: &str) -> Result<[u8; 16]> {
    let bad = || Error::InvalidKey {
        key_type: "uuid",
        reason: format!("{s:?} is not a UUID"),
    };
    let hex: Vec<u8> = match s.len() {
        36 => {
            let b = s.as_bytes();
            if b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
                return Err(bad());
            }
            b.iter().copied().filter(|&c| c != b'-').collect()
        }
        32 => s.as_bytes().to_vec(),
        _ => return Err(bad()),
    };
    if hex.len() != 32 {
        return Err(bad());
    }
    let nibble = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let hi = nibble(pair[0]).ok_or_else(bad)?;
        let lo = nibble(pair[1]).ok_or_else(bad)?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_round_trips_through_display() {
        let text = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        let key = ShardKey::parse_uuid(text).unwrap();
        assert_eq!(key.to_string(), text);
        assert_eq!(
            ShardKey::parse_uuid("A0EEBC999C0B4EF8BB6D6BB9BD380A11").unwrap(),
            key
        );
    }

    #[test]
    fn malformed_uuids_are_typed_errors() {
        for bad in [
            "",
            "a0eebc99",
            "a0eebc99x9c0b-4ef8-bb6d-6bb9bd380a11",
            "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        ] {
            let err = ShardKey::parse_uuid(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidKey {
                        key_type: "uuid",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn integer_widths_are_one_key() {
        assert_eq!(ShardKey::from(-5_i16), ShardKey::from(-5_i64));
        assert_eq!(ShardKey::from(70_000_i32), ShardKey::Int(70_000));
    }
}
