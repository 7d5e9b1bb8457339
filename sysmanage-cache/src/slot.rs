//! Redis Cluster key slots.
//!
//! A key's slot is `CRC16(key) mod 16384`, CRC16 being the XMODEM variant
//! (polynomial 0x1021, initial value 0), computed over the key's *hash tag*
//! when it has one: the bytes between the first `{` and the first `}` after
//! it, provided that is not empty. This is exactly the rule of the
//! [Redis Cluster specification](https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags),
//! so keys that share a tag (`{user1000}.following`, `{user1000}.followers`)
//! share a slot and can be used together in one multi-key command.
//!
//! ```
//! use sysmanage_cache::slot::{hash_tag, same_slot, slot};
//! assert_eq!(slot(b"123456789"), 12739);
//! assert_eq!(hash_tag(b"foo{bar}{zap}"), Some(&b"bar"[..]));
//! assert!(same_slot([&b"{user1000}.following"[..], b"{user1000}.followers"]));
//! ```

use std::collections::BTreeMap;

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

/// The part of `key` that is hashed: its hash tag when it has a non-empty
/// one, else `None` (the whole key is hashed).
///
/// Only the first `{` counts, and the tag ends at the first `}` after it:
/// `foo{{bar}}` has the tag `{bar`, `foo{}{bar}` has none.
pub fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let rest = &key[open + 1..];
    let close = rest.iter().position(|&b| b == b'}')?;
    (close > 0).then(|| &rest[..close])
}

/// The cluster slot of `key` (0..16384), as `CLUSTER KEYSLOT` computes it.
pub fn slot(key: &[u8]) -> u16 {
    let hashed = hash_tag(key).unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed) & (SLOT_COUNT - 1)
}

/// Whether all `keys` map to one slot (true for zero or one key).
pub fn same_slot<K: AsRef<[u8]>>(keys: impl IntoIterator<Item = K>) -> bool {
    let mut iter = keys.into_iter();
    let Some(first) = iter.next() else {
        return true;
    };
    let s = slot(first.as_ref());
    iter.all(|k| slot(k.as_ref()) == s)
}

/// Groups key *indices* by slot, in ascending slot order; within a slot the
/// indices keep the input order. Indices let callers put results back in
/// input order.
///
/// ```
/// use sysmanage_cache::slot::group_by_slot;
/// let groups = group_by_slot(&["{a}1", "b", "{a}2"]);
/// assert_eq!(groups.len(), 2);
/// assert!(groups.values().any(|idx| idx == &[0, 2]));
/// ```
pub fn group_by_slot<K: AsRef<[u8]>>(keys: &[K]) -> BTreeMap<u16, Vec<usize>> {
    let mut groups: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        groups.entry(slot(k.as_ref())).or_default().push(i);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Values measured with `CLUSTER KEYSLOT` on Redis 7.0 (TOPOLOGY_NOTES.md)
    /// and the examples of the Redis Cluster specification.
    #[test]
    fn matches_cluster_keyslot_reference_values() {
        let cases: &[(&[u8], u16)] = &[
            (b"123456789", 12739),
            (b"foo", 12182),
            (b"{user1000}.following", 3443),
            (b"{user1000}.followers", 3443),
            (b"foo{}{bar}", 8363),
            (b"foo{{bar}}zap", 4015),
            (b"foo{bar}{zap}", 5061),
            (b"", 0),
            (b"{}", 15257),
        ];
        for (key, want) in cases {
            assert_eq!(slot(key), *want, "key {:?}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn crc16_check_value_is_xmodem() {
        // The CRC catalogue's check value for CRC-16/XMODEM, quoted by the spec.
        assert_eq!(
            crc16::State::<crc16::XMODEM>::calculate(b"123456789"),
            0x31C3
        );
    }

    #[test]
    fn hash_tag_rules_from_the_spec() {
        assert_eq!(hash_tag(b"{user1000}.following"), Some(&b"user1000"[..]));
        assert_eq!(hash_tag(b"foo{}{bar}"), None);
        assert_eq!(hash_tag(b"foo{{bar}}zap"), Some(&b"{bar"[..]));
        assert_eq!(hash_tag(b"foo{bar}{zap}"), Some(&b"bar"[..]));
        assert_eq!(hash_tag(b"foo}{bar"), None);
        assert_eq!(hash_tag(b"foo{bar"), None);
        assert_eq!(hash_tag(b"plain"), None);
    }

    #[test]
    fn same_slot_and_grouping() {
        assert!(same_slot(Vec::<&[u8]>::new()));
        assert!(same_slot(["x"]));
        assert!(!same_slot(["foo", "123456789"]));
        let keys = ["foo", "{foo}x", "123456789", "{foo}y"];
        let groups = group_by_slot(&keys);
        assert_eq!(groups[&12182], vec![0, 1, 3]);
        assert_eq!(groups[&12739], vec![2]);
    }

    proptest! {
        #[test]
        fn tagged_keys_share_the_tags_slot(tag in "[a-z0-9]{1,12}", a in ".{0,20}", b in ".{0,20}") {
            let k1 = format!("{{{tag}}}{a}");
            let k2 = format!("{{{tag}}}{b}");
            prop_assert_eq!(slot(k1.as_bytes()), slot(tag.as_bytes()));
            prop_assert!(same_slot([k1, k2]));
        }

        #[test]
        fn slot_is_in_range(key in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert!(slot(&key) < SLOT_COUNT);
        }
    }
}
