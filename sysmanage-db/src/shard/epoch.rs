//! Routing epochs: a versioned shard map that every router instance follows,
//! and the typed rejections a write meets while its shard moves.
//!
//! A [`ShardMap`] says, per logical shard, which node set owns it and whether
//! its writes are fenced. Its `version` only grows. A router applies a map
//! only when it is newer than the one it has
//! ([`ShardRouter::apply_map`](super::ShardRouter::apply_map)), so
//! notifications that arrive twice or out of order are harmless. With the
//! `postgres` feature the map lives in a metadata table and
//! `ShardMapWatcher` keeps every router in every process on its latest
//! version (`LISTEN`/`NOTIFY` plus polling).
//!
//! A write routed with a stale map reaches the old location, which rejects
//! it: a guard trigger on the source's partitions raises
//! [`SQLSTATE_FENCED`] while the shard is fenced and [`SQLSTATE_MOVED`] once
//! it has moved. [`classify_rejection`] turns those into
//! [`WriteRejection`]s, and [`ShardRouter::write`](super::ShardRouter::write)
//! waits for the newer map and retries.

use std::error::Error as StdError;

use serde::{Deserialize, Serialize};

use super::key::ShardId;

/// SQLSTATE the source raises for a write to a shard whose writes are fenced
/// (a move is switching it): retry after the fence lifts.
pub const SQLSTATE_FENCED: &str = "SMF01";
/// SQLSTATE the old location raises for a write to a shard that has moved
/// away: refresh the shard map and retry on the new owner.
pub const SQLSTATE_MOVED: &str = "SMM01";

/// Where one logical shard lives in a [`ShardMap`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlacement {
    /// The name of the node set that owns the shard.
    pub node_set: String,
    /// Whether the shard's writes are fenced (a move is switching it).
    pub fenced: bool,
}

/// A versioned shard map: per logical shard, its node set and fence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    /// The map's version (its routing epoch); only grows.
    pub version: u64,
    /// One entry per logical shard, in shard order.
    pub shards: Vec<ShardPlacement>,
}

impl ShardMap {
    /// A map at `version` with every shard unfenced on the node set
    /// `placement[i]`.
    pub fn new(version: u64, placement: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ShardMap {
            version,
            shards: placement
                .into_iter()
                .map(|n| ShardPlacement {
                    node_set: n.into(),
                    fenced: false,
                })
                .collect(),
        }
    }

    /// The shards whose node set or fence differ between `self` and `newer`.
    pub fn changed_shards(&self, newer: &ShardMap) -> Vec<ShardId> {
        let n = self.shards.len().max(newer.shards.len());
        (0..n)
            .filter(|&i| self.shards.get(i) != newer.shards.get(i))
            .map(|i| ShardId(i as u32))
            .collect()
    }
}

/// Why the old location refused a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WriteRejection {
    /// The shard's writes are fenced while a move switches it.
    Fenced,
    /// The shard has moved to another node set.
    Moved,
}

/// Finds a [`WriteRejection`] anywhere in `err`'s source chain: a database
/// error carrying [`SQLSTATE_FENCED`] or [`SQLSTATE_MOVED`] (with the
/// `postgres` feature, a `sqlx::Error`), or an [`Error::ShardFenced`] /
/// [`Error::ShardMoved`](crate::Error::ShardMoved).
///
/// [`Error::ShardFenced`]: crate::Error::ShardFenced
pub fn classify_rejection(err: &(dyn StdError + 'static)) -> Option<WriteRejection> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = rejection_of(e) {
            return Some(r);
        }
        cur = e.source();
    }
    None
}

fn rejection_of(e: &(dyn StdError + 'static)) -> Option<WriteRejection> {
    if let Some(ours) = e.downcast_ref::<crate::Error>() {
        return match ours {
            crate::Error::ShardFenced { .. } => Some(WriteRejection::Fenced),
            crate::Error::ShardMoved { .. } => Some(WriteRejection::Moved),
            _ => None,
        };
    }
    #[cfg(feature = "postgres")]
    if let Some(sqlx::Error::Database(db)) = e.downcast_ref::<sqlx::Error>() {
        return db.code().and_then(|c| rejection_for_sqlstate(&c));
    }
    None
}

/// The rejection a SQLSTATE stands for, if any.
pub fn rejection_for_sqlstate(code: &str) -> Option<WriteRejection> {
    match code {
        SQLSTATE_FENCED => Some(WriteRejection::Fenced),
        SQLSTATE_MOVED => Some(WriteRejection::Moved),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapper")]
    struct Wrapper(#[source] crate::Error);

    #[test]
    fn rejections_are_found_through_the_source_chain() {
        let inner = crate::Error::ShardMoved {
            shard: ShardId(3),
            epoch: 7,
        };
        assert_eq!(
            classify_rejection(&Wrapper(inner)),
            Some(WriteRejection::Moved)
        );
        let fenced = crate::Error::ShardFenced {
            shard: ShardId(1),
            epoch: 2,
        };
        assert_eq!(classify_rejection(&fenced), Some(WriteRejection::Fenced));
        assert_eq!(classify_rejection(&crate::Error::NoPrimary), None);
    }

    #[test]
    fn sqlstates_map_to_rejections() {
        assert_eq!(
            rejection_for_sqlstate("SMF01"),
            Some(WriteRejection::Fenced)
        );
        assert_eq!(rejection_for_sqlstate("SMM01"), Some(WriteRejection::Moved));
        assert_eq!(rejection_for_sqlstate("23505"), None);
    }

    #[test]
    fn changed_shards_lists_placement_and_fence_changes() {
        let a = ShardMap::new(1, ["a", "a", "a"]);
        let mut b = ShardMap::new(2, ["a", "b", "a"]);
        b.shards[2].fenced = true;
        assert_eq!(a.changed_shards(&b), vec![ShardId(1), ShardId(2)]);
        assert!(a.changed_shards(&a).is_empty());
    }
}
