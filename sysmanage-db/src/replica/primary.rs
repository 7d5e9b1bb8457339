//! Which node takes writes.

/// What the router knows about one node when deciding which takes writes
/// (input to [`choose_primary`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoleView {
    /// `Some(in_recovery)` when the node's last probe answered; `None` when
    /// it failed or has not run yet.
    pub answered: Option<bool>,
    /// Consecutive failed probes.
    pub failed_probes: u32,
    /// Whether the node lost the primary role (writes moved away from it)
    /// and has not been seen in recovery since. Such a node never takes the
    /// writes: an old primary that comes back writable after a failover has
    /// a diverged history. Once it answers in recovery (rewound and
    /// re-attached as a standby) it is a candidate like any other.
    pub deposed: bool,
}

/// Which node should take writes: the current primary while it answers as a
/// primary, or has not failed `failure_probes` probes in a row; otherwise
/// (it answers in recovery, or is down) the only other node that answers as
/// writable and is not [`deposed`](RoleView::deposed) (a promoted standby);
/// otherwise no change. Never a guess: with two such candidates the current
/// primary stays. (At start-up nothing is deposed, so a router configured
/// with a primary that has since been demoted finds the promoted node.)
///
/// # Examples
/// ```
/// use sysmanage_db::replica::{RoleView, choose_primary};
/// let down = RoleView { answered: None, failed_probes: 2, deposed: false };
/// let promoted = RoleView { answered: Some(false), failed_probes: 0, deposed: false };
/// let standby = RoleView { answered: Some(true), failed_probes: 0, deposed: false };
/// // standby 1 was promoted while the old primary (0) is down
/// assert_eq!(choose_primary(Some(0), &[down, promoted, standby], 2), Some(1));
/// // one failed probe is not enough
/// let blip = RoleView { failed_probes: 1, ..down };
/// assert_eq!(choose_primary(Some(0), &[blip, promoted, standby], 2), Some(0));
/// // the old primary back writable never takes the writes back while the
/// // new one (1) blips
/// let old = RoleView { answered: Some(false), failed_probes: 0, deposed: true };
/// assert_eq!(choose_primary(Some(1), &[old, down, standby], 2), Some(1));
/// ```
pub fn choose_primary(
    current: Option<usize>,
    nodes: &[RoleView],
    failure_probes: u32,
) -> Option<usize> {
    if let Some(p) = current {
        let Some(view) = nodes.get(p) else {
            return current;
        };
        match view.answered {
            Some(false) => return current,
            // Demoted: in recovery now.
            Some(true) => {}
            None if view.failed_probes >= failure_probes.max(1) => {}
            None => return current,
        }
    }
    let mut promoted = (0..nodes.len())
        .filter(|&i| Some(i) != current && nodes[i].answered == Some(false) && !nodes[i].deposed);
    match (promoted.next(), promoted.next()) {
        (Some(i), None) => Some(i),
        _ => current,
    }
}
