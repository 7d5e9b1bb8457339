//! PostgreSQL WAL positions (`pg_lsn`) and the read-your-writes token.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A position in PostgreSQL's write-ahead log, PostgreSQL's `pg_lsn`.
///
/// It is a 64-bit byte offset, written as two hexadecimal numbers
/// `high/low` (for example `16/B374D848`), exactly as PostgreSQL prints it.
/// The difference of two positions is a number of WAL bytes, which is how
/// replication lag in bytes is measured.
///
/// A `Lsn` taken on the primary **after** a write committed, together with
/// the primary's timeline, is the read-your-writes token
/// ([`WalToken`](super::WalToken)). It serialises as its text form.
///
/// # Examples
/// ```
/// use sysmanage_db::replica::Lsn;
/// let lsn: Lsn = "16/B374D848".parse()?;
/// assert_eq!(lsn.as_u64(), 0x16_B374_D848);
/// assert_eq!(lsn.to_string(), "16/B374D848");
/// assert_eq!(lsn.bytes_since("16/B374D800".parse()?), 0x48);
/// # Ok::<(), sysmanage_db::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(u64);

impl Lsn {
    /// The zero position (`0/0`).
    pub const ZERO: Self = Self(0);

    /// The largest position (`FFFFFFFF/FFFFFFFF`). No replica reaches it:
    /// [`WalToken::UNAVAILABLE`](super::WalToken::UNAVAILABLE) uses it.
    pub const MAX: Self = Self(u64::MAX);

    /// From a 64-bit WAL byte offset.
    pub const fn new(offset: u64) -> Self {
        Self(offset)
    }

    /// The 64-bit WAL byte offset.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Bytes from `earlier` to `self`, or 0 when `earlier` is not earlier.
    pub const fn bytes_since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = Error;

    /// Parses PostgreSQL's `X/Y` text form (each part 1–8 hex digits).
    ///
    /// # Errors
    /// [`Error::InvalidWalPosition`] for anything else.
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidWalPosition {
            input: s.chars().take(40).collect(),
        };
        let (hi, lo) = s.trim().split_once('/').ok_or_else(invalid)?;
        let part = |p: &str| {
            if p.is_empty() || p.len() > 8 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid());
            }
            u32::from_str_radix(p, 16).map_err(|_| invalid())
        };
        Ok(Self((u64::from(part(hi)?) << 32) | u64::from(part(lo)?)))
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_formats_postgres_text() {
        // Forms printed by PostgreSQL 15 (`select pg_current_wal_lsn()`).
        for text in ["0/0", "0/3000148", "16/B374D848", "FFFFFFFF/FFFFFFFF"] {
            let lsn: Lsn = text.parse().unwrap();
            assert_eq!(lsn.to_string(), text);
        }
        assert_eq!("0/3000148".parse::<Lsn>().unwrap().as_u64(), 0x300_0148);
        assert_eq!(" 1/0 ".parse::<Lsn>().unwrap().as_u64(), 1 << 32);
    }

    #[test]
    fn rejects_malformed_text_with_a_typed_error() {
        for bad in [
            "",
            "/",
            "1/",
            "/1",
            "12345",
            "1/2/3",
            "G/0",
            "-1/0",
            "123456789/0",
            "0x1/0",
        ] {
            let err = bad.parse::<Lsn>().unwrap_err();
            assert!(
                matches!(err, Error::InvalidWalPosition { .. }),
                "{bad:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn serialises_as_text() {
        let lsn = Lsn::new(0x16_B374_D848);
        let json = serde_json::to_string(&lsn).unwrap();
        assert_eq!(json, "\"16/B374D848\"");
        assert_eq!(serde_json::from_str::<Lsn>(&json).unwrap(), lsn);
        assert!(serde_json::from_str::<Lsn>("\"nope\"").is_err());
    }

    proptest! {
        #[test]
        fn text_round_trips(x in any::<u64>()) {
            let lsn = Lsn::new(x);
            prop_assert_eq!(lsn.to_string().parse::<Lsn>().unwrap(), lsn);
        }

        #[test]
        fn order_matches_offsets(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(Lsn::new(a).cmp(&Lsn::new(b)), a.cmp(&b));
            prop_assert_eq!(Lsn::new(a).bytes_since(Lsn::new(b)), a.saturating_sub(b));
        }
    }
}
