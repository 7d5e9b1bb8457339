//! Timelines: the read-your-writes token as "a position on a timeline
//! history", PostgreSQL's timeline history files, and the pure decisions
//! that tell whether a replica's replayed history contains a token and
//! whether it can still follow the primary.
//!
//! PostgreSQL starts a new timeline at every promotion. The new timeline's
//! history file (`pg_wal/0000000N.history`) lists, for each earlier timeline
//! of its ancestry, the WAL position where the history left it (the
//! *switch point*). Two servers agree on the WAL below a position `x` exactly
//! when the timeline that wrote the byte before `x` is the same in both
//! histories. WAL positions alone are not comparable across a promotion: a
//! standby that kept streaming from the old primary after another standby was
//! promoted holds old-timeline WAL past the switch point, at positions the new
//! primary writes different data to.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use super::lsn::Lsn;
use crate::error::Error;

/// A PostgreSQL timeline ID (`pg_control_checkpoint().timeline_id`, the
/// first eight hexadecimal digits of a WAL file name). Timeline 1 is the
/// one `initdb` starts; each promotion starts the next unused one.
pub type TimelineId = NonZeroU32;

/// The read-your-writes token: the primary's WAL insert position taken after
/// a write committed, and the timeline it was taken on.
///
/// A replica may serve a read carrying this token only when its replayed
/// history contains the token's position **on the token's timeline
/// history** (see [`history_relation`](super::history_relation) and [`token_on_history`](super::token_on_history)); comparing positions
/// alone is wrong across a promotion.
///
/// # Text form
/// `X/Y@T`: PostgreSQL's `pg_lsn` text, `@`, and the timeline in decimal
/// (for example `0/3000148@2`). It contains no character that needs
/// escaping in a cookie or a URL. The bare `X/Y` form of earlier versions
/// still parses, as a token whose timeline is unknown: the router then
/// assumes the current primary's timeline.
///
/// # Examples
/// ```
/// use sysmanage_db::replica::{Lsn, WalToken};
/// let token: WalToken = "16/B374D848@2".parse()?;
/// assert_eq!(token.lsn(), "16/B374D848".parse::<Lsn>()?);
/// assert_eq!(token.timeline().map(|t| t.get()), Some(2));
/// assert_eq!(token.to_string(), "16/B374D848@2");
/// // A token minted before timelines were recorded.
/// let legacy: WalToken = "16/B374D848".parse()?;
/// assert_eq!(legacy.timeline(), None);
/// assert!("16/B374D848@0".parse::<WalToken>().is_err());
/// # Ok::<(), sysmanage_db::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WalToken {
    lsn: Lsn,
    timeline: Option<TimelineId>,
}

impl WalToken {
    /// The token [`write_with_token`](super::ReplicaRouter::write_with_token)
    /// returns when a write committed but its position could not be read:
    /// no replica ever qualifies for it, so reads with it go to the primary.
    pub const UNAVAILABLE: Self = Self {
        lsn: Lsn::MAX,
        timeline: None,
    };

    /// The token for position `lsn` on `timeline`.
    pub const fn new(lsn: Lsn, timeline: TimelineId) -> Self {
        Self {
            lsn,
            timeline: Some(timeline),
        }
    }

    /// A token whose timeline is unknown (the bare `X/Y` form): it is read
    /// as a position on the current primary's timeline.
    pub const fn without_timeline(lsn: Lsn) -> Self {
        Self {
            lsn,
            timeline: None,
        }
    }

    /// The WAL position.
    pub const fn lsn(self) -> Lsn {
        self.lsn
    }

    /// The timeline the position was taken on, when known.
    pub const fn timeline(self) -> Option<TimelineId> {
        self.timeline
    }

    /// Whether this is [`WalToken::UNAVAILABLE`] (or any token at the
    /// largest position, which no replica reaches).
    pub const fn is_unavailable(self) -> bool {
        self.lsn.as_u64() == u64::MAX
    }
}

impl From<Lsn> for WalToken {
    /// A token without a timeline; see [`WalToken::without_timeline`].
    fn from(lsn: Lsn) -> Self {
        Self::without_timeline(lsn)
    }
}

impl fmt::Display for WalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.timeline {
            Some(t) => write!(f, "{}@{t}", self.lsn),
            None => write!(f, "{}", self.lsn),
        }
    }
}

impl FromStr for WalToken {
    type Err = Error;

    /// Parses `X/Y@T` (timeline in decimal, 1 to 4294967295) or the bare
    /// `X/Y` of earlier versions.
    ///
    /// # Errors
    /// [`Error::InvalidWalToken`] for anything else.
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidWalToken {
            input: s.chars().take(40).collect(),
        };
        let s = s.trim();
        if s.contains(char::is_whitespace) {
            return Err(invalid());
        }
        let (lsn, timeline) = match s.split_once('@') {
            Some((lsn, tli)) => {
                if tli.is_empty() || tli.len() > 10 || !tli.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid());
                }
                let tli = tli
                    .parse::<u32>()
                    .ok()
                    .and_then(NonZeroU32::new)
                    .ok_or_else(invalid)?;
                (lsn, Some(tli))
            }
            None => (s, None),
        };
        let lsn: Lsn = lsn.parse().map_err(|_| invalid())?;
        Ok(Self { lsn, timeline })
    }
}

impl serde::Serialize for WalToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for WalToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where one earlier timeline of a history ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TimelineSwitch {
    /// The earlier timeline.
    pub timeline: TimelineId,
    /// The WAL position where the history left it: WAL below this position
    /// belongs to the history, WAL at or past it on that timeline does not.
    pub switchpoint: Lsn,
}

/// The ancestry of one timeline: every earlier timeline of its history and
/// where the history left it, as PostgreSQL's `0000000N.history` file lists
/// them.
///
/// # Examples
/// ```
/// use sysmanage_db::replica::{Lsn, TimelineHistory};
/// # let t = |n| std::num::NonZeroU32::new(n).unwrap();
/// // Timeline 2 forked off timeline 1 at 0/3000148 (the file PostgreSQL
/// // writes when a standby on timeline 1 is promoted).
/// let h = TimelineHistory::parse(t(2), "1\t0/3000148\tno recovery target specified\n")?;
/// let lsn = |s: &str| s.parse::<Lsn>().unwrap();
/// assert_eq!(h.timeline_at(lsn("0/3000147")).get(), 1);
/// assert_eq!(h.timeline_at(lsn("0/3000148")).get(), 2);
/// // Timeline 1 up to the switch point belongs to this history; past it, not.
/// assert!(h.contains(t(1), lsn("0/3000148")));
/// assert!(!h.contains(t(1), lsn("0/3000149")));
/// assert!(h.contains(t(2), lsn("FF/0")));
/// assert!(!h.contains(t(3), lsn("0/1")));
/// # Ok::<(), sysmanage_db::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TimelineHistory {
    timeline: TimelineId,
    /// Ancestors, oldest first, with strictly increasing timelines and
    /// non-decreasing switch points.
    ancestors: Vec<TimelineSwitch>,
}

/// History files longer than this are refused (PostgreSQL's are a few
/// dozen bytes a line, one line per promotion).
const MAX_HISTORY_LINES: usize = 100_000;

impl TimelineHistory {
    /// A timeline with no ancestors (timeline 1, or a history not known).
    pub fn root(timeline: TimelineId) -> Self {
        Self {
            timeline,
            ancestors: Vec::new(),
        }
    }

    /// Parses the content of timeline `timeline`'s history file: one line
    /// per ancestor, `parent_timeline<TAB>switchpoint<TAB>reason`; blank
    /// lines and lines starting with `#` are ignored, as PostgreSQL does.
    ///
    /// # Errors
    /// [`Error::InvalidTimelineHistory`] when a line does not parse, the
    /// timelines do not increase, a switch point goes backwards, or an
    /// ancestor is not older than `timeline`.
    pub fn parse(timeline: TimelineId, text: &str) -> Result<Self, Error> {
        let bad = |line: usize, reason: &str| Error::InvalidTimelineHistory {
            timeline: timeline.get(),
            reason: format!("line {line}: {reason}"),
        };
        let mut ancestors: Vec<TimelineSwitch> = Vec::new();
        for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if ancestors.len() >= MAX_HISTORY_LINES {
                return Err(bad(n, "too many lines"));
            }
            let mut fields = line.split_whitespace();
            let tli = fields
                .next()
                .and_then(|f| f.parse::<u32>().ok())
                .and_then(NonZeroU32::new)
                .ok_or_else(|| bad(n, "expected a timeline id"))?;
            let switchpoint: Lsn = fields
                .next()
                .ok_or_else(|| bad(n, "expected a switch point"))?
                .parse()
                .map_err(|_| bad(n, "switch point is not a wal position"))?;
            if let Some(prev) = ancestors.last() {
                if tli <= prev.timeline {
                    return Err(bad(n, "timeline ids must increase"));
                }
                if switchpoint < prev.switchpoint {
                    return Err(bad(n, "switch points must not go backwards"));
                }
            }
            if tli >= timeline {
                return Err(bad(n, "an ancestor must be older than the timeline"));
            }
            ancestors.push(TimelineSwitch {
                timeline: tli,
                switchpoint,
            });
        }
        Ok(Self {
            timeline,
            ancestors,
        })
    }

    /// The timeline this is the history of.
    pub fn timeline(&self) -> TimelineId {
        self.timeline
    }

    /// The ancestors, oldest first.
    pub fn ancestors(&self) -> &[TimelineSwitch] {
        &self.ancestors
    }

    /// The timeline that wrote the WAL byte at `lsn` in this history.
    pub fn timeline_at(&self, lsn: Lsn) -> TimelineId {
        self.ancestors
            .iter()
            .find(|a| lsn < a.switchpoint)
            .map_or(self.timeline, |a| a.timeline)
    }

    /// Where this history leaves `timeline`: `Some(None)` for the history's
    /// own timeline (open-ended), `Some(Some(switchpoint))` for an ancestor,
    /// `None` when `timeline` is not part of this history.
    pub fn end_of(&self, timeline: TimelineId) -> Option<Option<Lsn>> {
        if timeline == self.timeline {
            return Some(None);
        }
        self.ancestors
            .iter()
            .find(|a| a.timeline == timeline)
            .map(|a| Some(a.switchpoint))
    }

    /// Whether the WAL below `lsn` on `timeline`'s history is part of this
    /// history: `timeline` is this history's own timeline, or an ancestor
    /// that this history left at or after `lsn`.
    pub fn contains(&self, timeline: TimelineId, lsn: Lsn) -> bool {
        match self.end_of(timeline) {
            Some(None) => true,
            Some(Some(end)) => lsn <= end,
            None => false,
        }
    }
}

/// Where a replica stands relative to the primary's timeline history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HistoryRelation {
    /// On the primary's timeline (or timelines are not reported at all).
    #[default]
    Current,
    /// On an earlier timeline of the primary's history and not past the
    /// point where the history left it: what it replayed is a prefix of the
    /// primary's history. It catches up once it follows the primary.
    Behind,
    /// Its replayed history is not a prefix of the primary's: it replayed
    /// past the point where the primary's history left its timeline, or its
    /// timeline is not in that history. It can never catch up (it needs a
    /// rewind or a new base backup) and serves no reads.
    Diverged,
    /// Cannot be decided yet (the primary's history file or the replica's
    /// timeline could not be read). Serves no reads until it can.
    Unknown,
}

impl HistoryRelation {
    /// Whether what the replica replayed is part of the primary's history,
    /// so that its data may be served.
    pub const fn on_history(self) -> bool {
        matches!(self, Self::Current | Self::Behind)
    }

    /// A short, stable label.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Behind => "behind",
            Self::Diverged => "diverged",
            Self::Unknown => "unknown",
        }
    }
}

/// What the router knows of the primary's timeline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrimaryTimeline {
    /// The backend does not report timelines: positions are compared as
    /// they are (single-timeline backends, custom pools).
    #[default]
    NotReported,
    /// The primary's timeline, but not (yet) its history file.
    Timeline(TimelineId),
    /// The primary's full history.
    History(std::sync::Arc<TimelineHistory>),
}

impl PrimaryTimeline {
    /// The primary's timeline, when known.
    pub fn timeline(&self) -> Option<TimelineId> {
        match self {
            Self::NotReported => None,
            Self::Timeline(t) => Some(*t),
            Self::History(h) => Some(h.timeline()),
        }
    }
}

/// What the router knows of one replica's position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaPosition {
    /// The replica's timeline, when known.
    pub timeline: Option<TimelineId>,
    /// Whether `timeline` is the timeline the replica receives (exact), or
    /// only a lower bound of it (the timeline of its last restartpoint,
    /// which is an ancestor of — or the same as — the one it replays).
    pub exact: bool,
    /// Its replay position, when known.
    pub replay: Option<Lsn>,
}

/// Where a replica stands relative to the primary's history (a pure
/// function; the router applies it after every probe).
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use sysmanage_db::replica::{
///     HistoryRelation, Lsn, PrimaryTimeline, ReplicaPosition, TimelineHistory, history_relation,
/// };
/// # let t = |n| std::num::NonZeroU32::new(n);
/// let h = TimelineHistory::parse(t(2).unwrap(), "1\t0/5000\tno recovery target specified")?;
/// let primary = PrimaryTimeline::History(Arc::new(h));
/// let at = |tli, replay: &str| ReplicaPosition {
///     timeline: t(tli), exact: true, replay: Some(replay.parse::<Lsn>().unwrap()),
/// };
/// assert_eq!(history_relation(&primary, at(2, "0/9000")), HistoryRelation::Current);
/// // stopped on timeline 1 before the switch point: a prefix, can catch up
/// assert_eq!(history_relation(&primary, at(1, "0/4000")), HistoryRelation::Behind);
/// // kept streaming from the old primary past the switch point
/// assert_eq!(history_relation(&primary, at(1, "0/6000")), HistoryRelation::Diverged);
/// # Ok::<(), sysmanage_db::Error>(())
/// ```
pub fn history_relation(primary: &PrimaryTimeline, replica: ReplicaPosition) -> HistoryRelation {
    let Some(primary_tli) = primary.timeline() else {
        return HistoryRelation::Current;
    };
    let Some(tli) = replica.timeline else {
        return HistoryRelation::Unknown;
    };
    if tli == primary_tli {
        return HistoryRelation::Current;
    }
    let PrimaryTimeline::History(history) = primary else {
        return HistoryRelation::Unknown;
    };
    match history.end_of(tli) {
        Some(Some(end)) => match replica.replay {
            Some(r) if r <= end => HistoryRelation::Behind,
            // Past the switch point on an ancestor: diverged when the
            // timeline is exact; a lower bound may be stale (the replica
            // may have followed the switch since its last restartpoint).
            Some(_) if replica.exact => HistoryRelation::Diverged,
            _ => HistoryRelation::Unknown,
        },
        // On the primary's own timeline (checked above) or not in its
        // history at all: another branch, e.g. an old primary's or a
        // second promotion's.
        Some(None) => HistoryRelation::Current,
        None if replica.exact => HistoryRelation::Diverged,
        None => HistoryRelation::Unknown,
    }
}

/// Whether the write behind `token` is part of the primary's history, so
/// that a replica on that history which replayed past the token's position
/// holds it. A token without a timeline is read as a position on the
/// primary's timeline; with timelines not reported, every token qualifies.
///
/// A token that is not part of the history was minted on a branch the
/// primary does not follow (typically a write the old primary acknowledged
/// but never shipped before it failed): no replica on the primary's
/// history has it, and neither has the primary.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use sysmanage_db::replica::{PrimaryTimeline, TimelineHistory, token_on_history};
/// # let t = |n| std::num::NonZeroU32::new(n).unwrap();
/// let h = TimelineHistory::parse(t(2), "1\t0/5000\tno recovery target specified")?;
/// let primary = PrimaryTimeline::History(Arc::new(h));
/// assert!(token_on_history(&primary, "0/4000@1".parse()?)); // before the promotion
/// assert!(!token_on_history(&primary, "0/6000@1".parse()?)); // lost with the old primary
/// assert!(token_on_history(&primary, "0/6000@2".parse()?));
/// # Ok::<(), sysmanage_db::Error>(())
/// ```
pub fn token_on_history(primary: &PrimaryTimeline, token: WalToken) -> bool {
    let (Some(primary_tli), Some(tli)) = (primary.timeline(), token.timeline()) else {
        return true;
    };
    if tli == primary_tli {
        return true;
    }
    match primary {
        PrimaryTimeline::History(h) => h.contains(tli, token.lsn()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(n: u32) -> TimelineId {
        NonZeroU32::new(n).unwrap()
    }

    fn lsn(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    #[test]
    fn parses_the_files_postgres_writes() {
        // Written by PostgreSQL 15 at two successive promotions.
        let text = "1\t0/1477BFF8\tno recovery target specified\n\n\
                    2\t0/15000060\tno recovery target specified\n";
        let h = TimelineHistory::parse(t(3), text).unwrap();
        assert_eq!(h.ancestors().len(), 2);
        assert_eq!(h.timeline_at(lsn("0/1477BFF7")), t(1));
        assert_eq!(h.timeline_at(lsn("0/1477BFF8")), t(2));
        assert_eq!(h.timeline_at(lsn("0/15000060")), t(3));
        assert_eq!(h.end_of(t(2)), Some(Some(lsn("0/15000060"))));
        assert_eq!(h.end_of(t(3)), Some(None));
        assert_eq!(h.end_of(t(4)), None);
        assert!(TimelineHistory::parse(t(2), "# comment\n1 0/10 reason").is_ok());
    }

    #[test]
    fn malformed_history_files_are_typed_errors() {
        for bad in [
            "x\t0/1\tr",
            "1\tnope\tr",
            "1",
            "0\t0/1\tr",
            "2\t0/1\tr\n1\t0/2\tr",
            "1\t0/5\tr\n2\t0/4\tr",
            "3\t0/1\tr",
        ] {
            let err = TimelineHistory::parse(t(3), bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidTimelineHistory { timeline: 3, .. }),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn token_text_round_trips_and_rejects_garbage() {
        let token = WalToken::new(lsn("16/B374D848"), t(7));
        assert_eq!(token.to_string(), "16/B374D848@7");
        assert_eq!("16/B374D848@7".parse::<WalToken>().unwrap(), token);
        assert_eq!(serde_json::to_string(&token).unwrap(), "\"16/B374D848@7\"");
        for bad in [
            "",
            "@1",
            "0/1@",
            "0/1@0",
            "0/1@-1",
            "0/1@x",
            "0/1@4294967296",
            "0/1@1@2",
            "0/1 @1",
            "nope",
        ] {
            assert!(
                matches!(bad.parse::<WalToken>(), Err(Error::InvalidWalToken { .. })),
                "{bad:?}"
            );
        }
        assert!(WalToken::UNAVAILABLE.is_unavailable());
    }

    #[test]
    fn the_issue_reproduction_is_decided_right() {
        // standby1 stopped at S and promoted (timeline 2 from S); standby2
        // kept streaming timeline 1 from the old primary to S + 0x8000.
        let s = lsn("0/1477BFF8");
        let h =
            TimelineHistory::parse(t(2), "1\t0/1477BFF8\tno recovery target specified").unwrap();
        let primary = PrimaryTimeline::History(std::sync::Arc::new(h));
        let standby2 = ReplicaPosition {
            timeline: Some(t(1)),
            exact: true,
            replay: Some(Lsn::new(s.as_u64() + 0x8000)),
        };
        assert_eq!(
            history_relation(&primary, standby2),
            HistoryRelation::Diverged
        );
        // A new write on timeline 2 at a position standby2 has passed on
        // timeline 1: it must not count.
        let token = WalToken::new(Lsn::new(s.as_u64() + 0x100), t(2));
        assert!(token_on_history(&primary, token));
        // Old writes: those before the switch point survive, the others
        // were lost with the old primary.
        assert!(token_on_history(&primary, WalToken::new(s, t(1))));
        assert!(!token_on_history(
            &primary,
            WalToken::new(Lsn::new(s.as_u64() + 1), t(1))
        ));
        // Only a lower bound of standby2's timeline: undecided, not diverged.
        let inexact = ReplicaPosition {
            exact: false,
            ..standby2
        };
        assert_eq!(
            history_relation(&primary, inexact),
            HistoryRelation::Unknown
        );
    }

    #[test]
    fn without_a_history_file_only_the_primary_timeline_is_trusted() {
        let primary = PrimaryTimeline::Timeline(t(2));
        let on = |tli| ReplicaPosition {
            timeline: Some(t(tli)),
            exact: true,
            replay: Some(Lsn::new(1)),
        };
        assert_eq!(history_relation(&primary, on(2)), HistoryRelation::Current);
        assert_eq!(history_relation(&primary, on(1)), HistoryRelation::Unknown);
        assert!(token_on_history(&primary, WalToken::new(Lsn::new(9), t(2))));
        assert!(!token_on_history(
            &primary,
            WalToken::new(Lsn::new(9), t(1))
        ));
        assert!(token_on_history(&primary, WalToken::from(Lsn::new(9))));
        // Timelines not reported at all: the position-only behaviour.
        let none = PrimaryTimeline::NotReported;
        assert_eq!(history_relation(&none, on(5)), HistoryRelation::Current);
        assert!(token_on_history(&none, WalToken::new(Lsn::new(9), t(1))));
    }

    proptest! {
        #[test]
        fn token_text_round_trips(x in any::<u64>(), tli in 1u32..) {
            let token = WalToken::new(Lsn::new(x), t(tli));
            prop_assert_eq!(token.to_string().parse::<WalToken>().unwrap(), token);
            let legacy = WalToken::from(Lsn::new(x));
            prop_assert_eq!(legacy.to_string().parse::<WalToken>().unwrap(), legacy);
        }

        /// A replica on the history serves a token exactly when the
        /// position it replayed on the primary's history reaches the
        /// token's, over random two-promotion histories.
        #[test]
        fn agreement_is_decided_by_the_writing_timeline(
            s1 in 0u64..1000, gap in 0u64..1000, r in 0u64..3000, x in 0u64..3000,
            rt in 1u32..=3, xt in 1u32..=3,
        ) {
            let s2 = s1 + gap;
            let h = TimelineHistory::parse(
                t(3),
                &format!("1\t{}\tr\n2\t{}\tr", Lsn::new(s1), Lsn::new(s2)),
            ).unwrap();
            let ends = [s1, s2, u64::MAX];
            let primary = PrimaryTimeline::History(std::sync::Arc::new(h));
            let rel = history_relation(&primary, ReplicaPosition {
                timeline: Some(t(rt)), exact: true, replay: Some(Lsn::new(r)),
            });
            // model: the replica's data is on the history iff r <= end of its timeline
            let on = r <= ends[rt as usize - 1];
            prop_assert_eq!(rel.on_history(), on);
            prop_assert_eq!(rel == HistoryRelation::Diverged, !on);
            let token_ok = token_on_history(&primary, WalToken::new(Lsn::new(x), t(xt)));
            prop_assert_eq!(token_ok, x <= ends[xt as usize - 1]);
        }
    }
}
