//! Merging per-shard results: concatenation, k-way merge with a global
//! `LIMIT`, and aggregate combiners.
//!
//! The helpers take one part per shard (e.g. [`Partial::into_values`] or
//! [`FanOut::into_complete`]), so what to do about failed shards is decided
//! before merging, never inside it.
//!
//! [`Partial::into_values`]: super::Partial::into_values
//! [`FanOut::into_complete`]: super::FanOut::into_complete

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::{Error, Result};

/// Concatenates the parts in order.
pub fn concat<T>(parts: impl IntoIterator<Item = Vec<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for mut part in parts {
        out.append(&mut part);
    }
    out
}

struct Head<K> {
    key: K,
    part: usize,
}

impl<K: Ord> PartialEq for Head<K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<K: Ord> Eq for Head<K> {}
impl<K: Ord> PartialOrd for Head<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: Ord> Ord for Head<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Equal keys: the earlier part first, so the merge is stable.
        self.key.cmp(&other.key).then(self.part.cmp(&other.part))
    }
}

/// Merges parts that are each sorted ascending by `key` (as each shard's
/// `ORDER BY key LIMIT n` returns them) into one sorted list of at most
/// `limit` rows: the same rows, in the same order, as `ORDER BY key LIMIT
/// limit` over the union. Rows with equal keys keep part order, then
/// in-part order. For descending order, return [`std::cmp::Reverse`] from
/// `key`.
///
/// Each shard only needs to return its own first `limit` rows. Runs in
/// `O(limit · log parts)` after checking the input.
///
/// # Errors
/// [`Error::InvalidConfig`] when a part is not sorted by `key` (a merge of
/// unsorted parts would silently return wrong rows).
///
/// ```
/// use sysmanage_db::shard::merge_sorted;
///
/// let shard_a = vec![1, 4, 9];
/// let shard_b = vec![2, 3, 10];
/// let top4 = merge_sorted(vec![shard_a, shard_b], |v| *v, Some(4))?;
/// assert_eq!(top4, vec![1, 2, 3, 4]);
/// # Ok::<(), sysmanage_db::Error>(())
/// ```
pub fn merge_sorted<T, K: Ord>(
    parts: impl IntoIterator<Item = Vec<T>>,
    mut key: impl FnMut(&T) -> K,
    limit: Option<usize>,
) -> Result<Vec<T>> {
    let parts: Vec<Vec<T>> = parts.into_iter().collect();
    for (p, part) in parts.iter().enumerate() {
        if let Some(i) = (1..part.len()).find(|&i| key(&part[i - 1]) > key(&part[i])) {
            return Err(Error::InvalidConfig {
                field: "merge input",
                reason: format!("part {p} is not sorted by the merge key at row {i}"),
            });
        }
    }
    let total: usize = parts.iter().map(Vec::len).sum();
    let limit = limit.unwrap_or(total).min(total);
    let mut iters: Vec<std::vec::IntoIter<T>> = parts.into_iter().map(Vec::into_iter).collect();
    let mut pending: Vec<Option<T>> = iters.iter_mut().map(Iterator::next).collect();
    let mut heap = BinaryHeap::with_capacity(pending.len());
    for (part, row) in pending.iter().enumerate() {
        if let Some(row) = row {
            heap.push(Reverse(Head {
                key: key(row),
                part,
            }));
        }
    }
    let mut out = Vec::with_capacity(limit);
    while out.len() < limit {
        let Some(Reverse(head)) = heap.pop() else {
            break;
        };
        let row = pending[head.part].take();
        if let Some(row) = row {
            out.push(row);
        }
        if let Some(next) = iters[head.part].next() {
            heap.push(Reverse(Head {
                key: key(&next),
                part: head.part,
            }));
            pending[head.part] = Some(next);
        }
    }
    Ok(out)
}

/// The total of per-shard `count(*)` values.
pub fn combine_count(parts: impl IntoIterator<Item = i64>) -> i64 {
    parts.into_iter().sum()
}

/// The total of per-shard `sum(x)` values, where a shard with no rows
/// reports SQL `NULL` (`None`); `None` when every shard did, as SQL's `sum`
/// over no rows. Choose `T` wide enough for the total (`i128`, `f64`, a
/// decimal type).
pub fn combine_sum<T: std::iter::Sum<T>>(parts: impl IntoIterator<Item = Option<T>>) -> Option<T> {
    let mut any = false;
    let total = parts
        .into_iter()
        .flatten()
        .inspect(|_| any = true)
        .sum::<T>();
    any.then_some(total)
}

/// The minimum of per-shard `min(x)` values (`None` for shards without rows).
pub fn combine_min<T: Ord>(parts: impl IntoIterator<Item = Option<T>>) -> Option<T> {
    parts.into_iter().flatten().min()
}

/// The maximum of per-shard `max(x)` values (`None` for shards without rows).
pub fn combine_max<T: Ord>(parts: impl IntoIterator<Item = Option<T>>) -> Option<T> {
    parts.into_iter().flatten().max()
}

/// The global average from per-shard `(sum(x), count(x))` pairs: shards must
/// return both, since an average of averages is wrong when shards hold
/// different numbers of rows. `None` when there are no rows at all.
pub fn combine_avg(parts: impl IntoIterator<Item = (f64, i64)>) -> Option<f64> {
    let (sum, count) = parts
        .into_iter()
        .fold((0.0, 0_i64), |(s, c), (ps, pc)| (s + ps, c + pc));
    (count > 0).then(|| sum / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_matches_sorting_the_union() {
        let parts = vec![
            vec![(1, 'a'), (5, 'b'), (5, 'c')],
            vec![],
            vec![(0, 'x'), (5, 'y'), (7, 'z')],
        ];
        let merged = merge_sorted(parts.clone(), |r| r.0, None).unwrap();
        let mut expected: Vec<_> = parts.into_iter().flatten().collect();
        expected.sort_by_key(|r| r.0);
        assert_eq!(merged, expected);
        let top = merge_sorted(vec![vec![3, 2], vec![5]], |v| Reverse(*v), Some(2)).unwrap();
        assert_eq!(top, vec![5, 3]);
    }

    #[test]
    fn unsorted_input_is_an_error() {
        let err = merge_sorted(vec![vec![1, 2], vec![3, 1]], |v| *v, Some(1)).unwrap_err();
        assert!(err.to_string().contains("part 1 is not sorted"), "{err}");
    }

    #[test]
    fn aggregates_follow_sql_semantics() {
        assert_eq!(combine_count([3, 0, 4]), 7);
        assert_eq!(combine_sum::<i64>([None, Some(2), Some(5)]), Some(7));
        assert_eq!(combine_sum::<i64>([None, None]), None);
        assert_eq!(combine_min([None, Some(4), Some(-1)]), Some(-1));
        assert_eq!(combine_max([Some(4), None]), Some(4));
        // Average of averages would be (1 + 10) / 2 = 5.5; the right answer is 31 / 4.
        assert_eq!(combine_avg([(1.0, 1), (30.0, 3)]), Some(7.75));
        assert_eq!(combine_avg([(0.0, 0)]), None);
    }
}
