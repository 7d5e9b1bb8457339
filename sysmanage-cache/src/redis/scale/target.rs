//! What a scaling run should achieve: nodes to add, nodes to remove, how to
//! balance, and the conversion from the advisor's recommendation.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::error::{ScaleError, ScaleResult};
use crate::advisor::{Recommendation, ScalingAction, SkewKind};
use crate::redis::config::parse_addr;
use crate::slot::SLOT_COUNT;

/// What slots are balanced by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Balance {
    /// Slot counts (what `redis-cli --cluster rebalance` does). A node
    /// gives away its lowest-numbered slots (runs of consecutive slots),
    /// passing over hot slots (more than 4× its mean bytes or keys per
    /// slot) unless it must give them too.
    #[default]
    Slots,
    /// Keys per slot (`CLUSTER COUNTKEYSINSLOT`): hot hash tags count for
    /// what they hold.
    Keys,
    /// Bytes per slot (keys × the owner's bytes per key from `INFO`, or
    /// sampled with `MEMORY USAGE`).
    Memory,
}

/// A primary to add, with the replicas to attach to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NewPrimary {
    /// `host:port` of the new primary: running, cluster-enabled, empty and
    /// not a member of another cluster.
    pub addr: String,
    /// `host:port` of its replicas (same requirements).
    pub replicas: Vec<String>,
}

impl NewPrimary {
    /// A new primary at `addr` with these replicas.
    pub fn new<S: Into<String>>(
        addr: impl Into<String>,
        replicas: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            addr: addr.into(),
            replicas: replicas.into_iter().map(Into::into).collect(),
        }
    }
}

/// The goal of a scaling run. Plain data (serde): keep it to resume a run
/// with the same goal.
///
/// A run adds the nodes of [`add`](Self::add) (`CLUSTER MEET`, replicas
/// attached), moves slots so that the primaries that stay or join hold
/// their share (by [`balance`](Self::balance) and
/// [`weights`](Self::weights)), moves every slot off the nodes of
/// [`remove`](Self::remove), then forgets those nodes. With
/// [`assign`](Self::assign) set, exactly those slots move (plus the slots of
/// leaving nodes) and nothing else is rebalanced.
///
/// ```
/// use sysmanage_cache::redis::scale::{Balance, NewPrimary, ScaleTarget};
/// let out = ScaleTarget::scale_out([NewPrimary::new("10.0.0.9:6379", ["10.0.0.10:6379"])])
///     .balance_by(Balance::Memory);
/// assert_eq!(out.add.len(), 1);
/// let back = ScaleTarget::scale_in(["10.0.0.9:6379", "10.0.0.10:6379"]);
/// assert!(back.add.is_empty());
/// assert!(ScaleTarget::rebalance().validate().is_ok());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ScaleTarget {
    /// Primaries to add (with their replicas).
    pub add: Vec<NewPrimary>,
    /// Nodes to remove, `host:port`: primaries (their slots move first) and
    /// replicas. A primary's replicas are not removed unless listed
    /// ([`Scaler::remove_primaries`](super::Scaler::remove_primaries)
    /// lists them for you). A listed node that is no longer a member counts
    /// as removed already.
    pub remove: Vec<String>,
    /// What the slots are balanced by. Default: [`Balance::Slots`].
    pub balance: Balance,
    /// Capacity weight per primary (`host:port` → weight in (0, 10⁶]);
    /// unlisted primaries weigh 1. A primary with weight 2 gets twice the
    /// share of one with weight 1.
    pub weights: BTreeMap<String, f64>,
    /// Explicit moves (slot → destination primary `host:port`): a reshard.
    /// When non-empty, only these slots (and those of leaving nodes) move.
    pub assign: BTreeMap<u16, String>,
}

impl ScaleTarget {
    /// Add these primaries and balance.
    pub fn scale_out(add: impl IntoIterator<Item = NewPrimary>) -> Self {
        Self {
            add: add.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Remove these nodes (primaries and replicas), moving the primaries'
    /// slots to the others first.
    pub fn scale_in<S: Into<String>>(remove: impl IntoIterator<Item = S>) -> Self {
        Self {
            remove: remove.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Balance the current primaries.
    pub fn rebalance() -> Self {
        Self::default()
    }

    /// Move exactly these slots to `to` (a reshard).
    pub fn move_slots(slots: impl IntoIterator<Item = u16>, to: impl Into<String>) -> Self {
        let to = to.into();
        Self {
            assign: slots.into_iter().map(|s| (s, to.clone())).collect(),
            ..Self::default()
        }
    }

    /// This target, balanced by `balance`.
    #[must_use]
    pub fn balance_by(mut self, balance: Balance) -> Self {
        self.balance = balance;
        self
    }

    /// Converts the advisor's recommendation into a target in one call.
    ///
    /// * `ScaleOut { add }` takes the first `add` entries of `spares`
    ///   (balanced by memory when memory pressure decided it, else by keys);
    /// * `ScaleIn` removes the primaries the advisor chose, with their
    ///   replicas ([`Recommendation::leaving`]), balanced by memory;
    /// * `Rebalance` balances by what was skewed (slots, keys; keys for an
    ///   ops/sec skew, the closest per-slot measure of load);
    /// * `None` gives `Ok(None)`.
    ///
    /// # Errors
    /// [`ScaleError::InvalidTarget`] when fewer spares than the
    /// recommendation adds are given, or a scale-in names no node.
    ///
    /// ```
    /// # use sysmanage_cache::redis::scale::{NewPrimary, ScaleTarget};
    /// # fn f(rec: &sysmanage_cache::advisor::Recommendation) -> Result<(), sysmanage_cache::redis::scale::ScaleError> {
    /// let spares = [NewPrimary::new("10.0.0.9:6379", ["10.0.0.10:6379"])];
    /// if let Some(target) = ScaleTarget::from_recommendation(rec, &spares)? {
    ///     // scaler.execute(&target).await?
    /// #   let _ = target;
    /// }
    /// # Ok(()) }
    /// # fn main() { let _ = f; }
    /// ```
    pub fn from_recommendation(
        rec: &Recommendation,
        spares: &[NewPrimary],
    ) -> ScaleResult<Option<Self>> {
        match rec.action {
            ScalingAction::ScaleOut { add } => {
                if spares.len() < add {
                    return Err(ScaleError::InvalidTarget(format!(
                        "the recommendation adds {add} primaries but {} spare nodes were given",
                        spares.len()
                    )));
                }
                let balance = if rec.reason.starts_with("memory") {
                    Balance::Memory
                } else {
                    Balance::Keys
                };
                Ok(Some(
                    Self::scale_out(spares[..add].iter().cloned()).balance_by(balance),
                ))
            }
            ScalingAction::ScaleIn { .. } => {
                if rec.leaving.is_empty() {
                    return Err(ScaleError::InvalidTarget(
                        "the scale-in recommendation names no leaving node".into(),
                    ));
                }
                Ok(Some(
                    Self::scale_in(rec.leaving.iter().cloned()).balance_by(Balance::Memory),
                ))
            }
            ScalingAction::Rebalance => Ok(Some(Self::rebalance().balance_by(match rec.skew {
                Some(SkewKind::Slots) | None => Balance::Slots,
                Some(SkewKind::Keys | SkewKind::Ops) => Balance::Keys,
            }))),
            ScalingAction::None => Ok(None),
        }
    }

    /// Checks the target on its own (addresses, duplicates, weights,
    /// slots); [`Scaler::plan`](super::Scaler::plan) checks it against the
    /// cluster too.
    ///
    /// # Errors
    /// [`ScaleError::InvalidTarget`] naming the problem.
    pub fn validate(&self) -> ScaleResult<()> {
        let invalid = |m: String| Err(ScaleError::InvalidTarget(m));
        let mut seen = BTreeSet::new();
        let added = self
            .add
            .iter()
            .flat_map(|p| std::iter::once(&p.addr).chain(&p.replicas));
        for a in added.chain(&self.remove) {
            if parse_addr(a).is_none() {
                return invalid(format!("{a:?} is not host:port"));
            }
            if !seen.insert(a.as_str()) {
                return invalid(format!("{a} is listed twice (add and remove are disjoint)"));
            }
        }
        for (node, w) in &self.weights {
            if !(w.is_finite() && *w > 0.0 && *w <= 1e6) {
                return invalid(format!("weight of {node} must be in (0, 1e6], got {w}"));
            }
        }
        if self.assign.keys().any(|&s| s >= SLOT_COUNT) {
            return invalid(format!("assigned slots must be below {SLOT_COUNT}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysmanage_core::Timestamp;

    fn rec(action: ScalingAction, reason: &str) -> Recommendation {
        Recommendation {
            action,
            reason: reason.into(),
            current_primaries: 3,
            target_primaries: 3,
            steps: Vec::new(),
            leaving: vec!["10.0.0.1:6379".into(), "10.0.1.1:6379".into()],
            skew: None,
            at: Timestamp::from_secs(0),
        }
    }

    #[test]
    fn recommendations_convert_in_one_call() {
        let spares = [
            NewPrimary::new("10.0.0.9:6379", ["10.0.1.9:6379"]),
            NewPrimary::new("10.0.0.8:6379", Vec::<String>::new()),
        ];
        let t = ScaleTarget::from_recommendation(
            &rec(ScalingAction::ScaleOut { add: 2 }, "memory pressure: …"),
            &spares,
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.add, spares);
        assert_eq!(t.balance, Balance::Memory);
        let t = ScaleTarget::from_recommendation(
            &rec(ScalingAction::ScaleOut { add: 1 }, "ops pressure: …"),
            &spares,
        )
        .unwrap()
        .unwrap();
        assert_eq!((t.add.len(), t.balance), (1, Balance::Keys));
        let err = ScaleTarget::from_recommendation(
            &rec(ScalingAction::ScaleOut { add: 3 }, "ops"),
            &spares,
        )
        .unwrap_err();
        assert!(err.to_string().contains("adds 3 primaries but 2"), "{err}");
        let t =
            ScaleTarget::from_recommendation(&rec(ScalingAction::ScaleIn { remove: 1 }, "x"), &[])
                .unwrap()
                .unwrap();
        assert_eq!(t.remove, ["10.0.0.1:6379", "10.0.1.1:6379"]);
        let mut r = rec(ScalingAction::Rebalance, "keys skew");
        r.skew = Some(SkewKind::Keys);
        let t = ScaleTarget::from_recommendation(&r, &[]).unwrap().unwrap();
        assert_eq!(t.balance, Balance::Keys);
        assert!(
            ScaleTarget::from_recommendation(&rec(ScalingAction::None, "fine"), &[])
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn validation_names_the_problem() {
        let mut t = ScaleTarget::scale_out([NewPrimary::new("h:1", ["h:2"])]);
        t.remove = vec!["h:2".into()];
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("h:2 is listed twice")
        );
        let t = ScaleTarget::scale_in(["redis://h:1"]);
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("not host:port")
        );
        let mut t = ScaleTarget::rebalance();
        t.weights.insert("h:1".into(), f64::NAN);
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("weight of h:1")
        );
        let t = ScaleTarget::move_slots([16384], "h:1");
        assert!(t.validate().is_err());
        assert!(
            ScaleTarget::move_slots([0, 16383], "h:1")
                .validate()
                .is_ok()
        );
    }
}
