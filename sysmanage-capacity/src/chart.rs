//! Time-series charts as self-contained SVG: dated time axis, y ticks with
//! units, lines, shaded bands (prediction intervals), horizontal reference
//! lines (limits), shaded time spans and labelled event markers.
//!
//! Small and dependency-free on purpose: a report must be one HTML file
//! that renders offline in any browser and prints, so the output is plain
//! SVG with inline presentation attributes, a `<title>` and `<desc>` for
//! screen readers, and stable class names (`axis x`, `axis y`, `series`,
//! `band`, `limit`, `marker`, `span`) that tests and style sheets can find.
//! Many events of one kind (a scaler's scale events) are drawn as a rug of
//! short ticks along the time axis ([`TimeChart::events`], class
//! `marker events`) rather than one labelled line each.
//! A plotting crate (plotters' SVG backend) would add a dependency tree
//! and font handling for what is a few hundred lines here, and its output
//! has no semantic classes or text alternatives to test against.
//!
//! Times are UTC. Tick steps are "nice": 1, 2 or 5 × 10ᵏ for values and
//! minutes, hours, days, weeks, months or years for time, about
//! [`TimeChart::target_ticks`] of them.
//!
//! # Examples
//! ```
//! use sysmanage_capacity::chart::{LineStyle, TimeChart};
//! use sysmanage_capacity::Unit;
//! use sysmanage_core::Timestamp;
//!
//! let t = |h: i64| Timestamp::from_secs(1_790_812_800 + 3600 * h);
//! let history: Vec<(Timestamp, f64)> = (0..48).map(|h| (t(h), 0.4 + 0.005 * h as f64)).collect();
//! let svg = TimeChart::new("cpu_utilization", Unit::Ratio)
//!     .description("CPU rises 12 % a day")
//!     .line("history", LineStyle::Solid, history)
//!     .limit("limit 80 %", 0.8)
//!     .marker("mean crosses", t(70), "crosses in 22 h")
//!     .to_svg();
//! assert!(svg.starts_with("<svg") && svg.contains("class=\"axis x\""));
//! assert!(svg.contains("<title"));
//! ```

use std::fmt::Write as _;

use sysmanage_core::Timestamp;

use crate::metric::Unit;

/// How a line is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineStyle {
    /// Solid (measured data).
    Solid,
    /// Dashed (forecasts).
    Dashed,
    /// A step line: each value holds until the next point (capacity
    /// provided, replica counts).
    Step,
}

#[derive(Clone, Debug)]
struct Line {
    label: String,
    style: LineStyle,
    color: &'static str,
    points: Vec<(Timestamp, f64)>,
}

#[derive(Clone, Debug)]
struct Band {
    label: String,
    points: Vec<(Timestamp, f64, f64)>,
}

#[derive(Clone, Debug)]
struct Marker {
    label: String,
    at: Timestamp,
    note: String,
}

#[derive(Clone, Debug)]
struct Rug {
    label: String,
    times: Vec<Timestamp>,
}

#[derive(Clone, Debug)]
struct Span {
    label: String,
    from: Timestamp,
    to: Timestamp,
}

/// Most ticks one rug draws; longer rugs are thinned evenly.
pub const MAX_RUG_TICKS: usize = 2000;

/// Rug colours, in order (distinct from the series palette's first two).
const RUG_COLORS: [&str; 3] = ["#6a3d9a", "#444444", "#009e73"];

/// Series colours, in order (colour-blind safe: Okabe–Ito).
const PALETTE: [&str; 6] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
];

/// A chart of values over time, rendered by [`to_svg`](Self::to_svg).
#[derive(Clone, Debug)]
pub struct TimeChart {
    title: String,
    description: String,
    unit: Unit,
    width: f64,
    height: f64,
    target_ticks: usize,
    lines: Vec<Line>,
    bands: Vec<Band>,
    limits: Vec<(String, f64)>,
    markers: Vec<Marker>,
    rugs: Vec<Rug>,
    spans: Vec<Span>,
    notes: Vec<String>,
}

impl TimeChart {
    /// An empty chart titled `title` whose values are in `unit`.
    pub fn new(title: impl Into<String>, unit: Unit) -> Self {
        Self {
            title: title.into(),
            description: String::new(),
            unit,
            width: 760.0,
            height: 300.0,
            target_ticks: 6,
            lines: Vec::new(),
            bands: Vec::new(),
            limits: Vec::new(),
            markers: Vec::new(),
            rugs: Vec::new(),
            spans: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The text alternative (`<desc>`): what the chart shows, in words.
    #[must_use]
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// Drawing size in user units (the SVG scales to its container);
    /// clamped to 200–4000 × 120–3000.
    #[must_use]
    pub fn size(mut self, width: f64, height: f64) -> Self {
        self.width = clamp_or(width, 200.0, 4000.0, 760.0);
        self.height = clamp_or(height, 120.0, 3000.0, 300.0);
        self
    }

    /// About how many ticks each axis gets (clamped to 2–20).
    #[must_use]
    pub fn target_ticks(mut self, n: usize) -> Self {
        self.target_ticks = n.clamp(2, 20);
        self
    }

    /// Adds a line; non-finite points are skipped.
    #[must_use]
    pub fn line(
        mut self,
        label: impl Into<String>,
        style: LineStyle,
        points: Vec<(Timestamp, f64)>,
    ) -> Self {
        let color = PALETTE[self.lines.len() % PALETTE.len()];
        self.lines.push(Line {
            label: label.into(),
            style,
            color,
            points: points.into_iter().filter(|p| p.1.is_finite()).collect(),
        });
        self
    }

    /// Adds a shaded band between `(time, low, high)` points (a prediction
    /// interval); non-finite points are skipped.
    #[must_use]
    pub fn band(mut self, label: impl Into<String>, points: Vec<(Timestamp, f64, f64)>) -> Self {
        self.bands.push(Band {
            label: label.into(),
            points: points
                .into_iter()
                .filter(|p| p.1.is_finite() && p.2.is_finite())
                .collect(),
        });
        self
    }

    /// Adds a horizontal reference line (a limit). When it lies far outside
    /// the data the y range does not stretch to it: it is shown as an
    /// annotation at the edge it lies beyond.
    #[must_use]
    pub fn limit(mut self, label: impl Into<String>, y: f64) -> Self {
        if y.is_finite() {
            self.limits.push((label.into(), y));
        }
        self
    }

    /// Adds a vertical event marker at `at` with a short label and a note
    /// (shown on hover and in the text alternative).
    #[must_use]
    pub fn marker(
        mut self,
        label: impl Into<String>,
        at: Timestamp,
        note: impl Into<String>,
    ) -> Self {
        self.markers.push(Marker {
            label: label.into(),
            at,
            note: note.into(),
        });
        self
    }

    /// Adds a rug of events: one short tick per time along the bottom of
    /// the plot (at most [`MAX_RUG_TICKS`], evenly thinned beyond), for
    /// events too many to label one by one (scale events). The label is
    /// the rug's legend entry and, with the count, its text alternative.
    #[must_use]
    pub fn events(mut self, label: impl Into<String>, times: Vec<Timestamp>) -> Self {
        self.rugs.push(Rug {
            label: label.into(),
            times,
        });
        self
    }

    /// Shades the time span `[from, to]` (e.g. an SLO violation).
    #[must_use]
    pub fn span(mut self, label: impl Into<String>, from: Timestamp, to: Timestamp) -> Self {
        self.spans.push(Span {
            label: label.into(),
            from: from.min(to),
            to: from.max(to),
        });
        self
    }

    /// Adds a note printed under the plot (e.g. "the mean does not cross
    /// the limit within 7 days").
    #[must_use]
    pub fn note(mut self, text: impl Into<String>) -> Self {
        self.notes.push(text.into());
        self
    }

    fn time_range(&self) -> Option<(i64, i64)> {
        let times = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.0))
            .chain(self.bands.iter().flat_map(|b| b.points.iter().map(|p| p.0)))
            .chain(self.markers.iter().map(|m| m.at))
            .chain(self.rugs.iter().flat_map(|r| r.times.iter().copied()))
            .chain(self.spans.iter().flat_map(|s| [s.from, s.to]))
            .map(Timestamp::as_millis);
        let (lo, hi) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
        (lo <= hi).then(|| {
            if lo == hi {
                (lo.saturating_sub(3_600_000), hi.saturating_add(3_600_000))
            } else {
                (lo, hi)
            }
        })
    }

    /// The data's y range (lines and bands), padded; limits near it are
    /// included, far ones are not (they become edge annotations).
    fn value_range(&self) -> (f64, f64) {
        let values = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .chain(
                self.bands
                    .iter()
                    .flat_map(|b| b.points.iter().flat_map(|p| [p.1, p.2])),
            );
        let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if lo > hi {
            (lo, hi) = self
                .limits
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, y)| {
                    (lo.min(*y), hi.max(*y))
                });
            if lo > hi {
                (lo, hi) = (0.0, 1.0);
            }
        }
        let span = (hi - lo).max(hi.abs().max(lo.abs()) * 1e-6).max(1e-12);
        for (_, y) in &self.limits {
            // A limit within half the data's span of it is drawn in range.
            if *y >= lo - 0.5 * span && *y <= hi + 0.5 * span {
                lo = lo.min(*y);
                hi = hi.max(*y);
            }
        }
        let span = (hi - lo).max(hi.abs().max(lo.abs()) * 1e-6).max(1e-12);
        let (mut lo, hi) = (lo - 0.05 * span, hi + 0.05 * span);
        // Non-negative data keeps a zero floor when zero is close.
        if lo < 0.0 && lo > -0.1 * span {
            lo = 0.0;
        }
        // Values near ±f64::MAX: keep every coordinate computation finite.
        let cap = f64::MAX / 4.0;
        let (mut lo, mut hi) = (lo.clamp(-cap, cap), hi.clamp(-cap, cap));
        if hi <= lo {
            let pad = (lo.abs() * 0.1).max(1.0);
            (lo, hi) = (lo - pad, hi + pad);
        }
        (lo, hi)
    }

    /// The chart as a standalone `<svg>` element.
    pub fn to_svg(&self) -> String {
        let (w, h) = (self.width, self.height);
        let (left, right, top) = (74.0, 18.0, 34.0);
        let legend_h = 20.0;
        let bottom = 40.0 + legend_h + 16.0 * self.notes.len() as f64;
        let total_h = h + bottom - 40.0;
        let (pw, ph) = (w - left - right, h - top - 40.0);
        let id = slug(&self.title);
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {total_h}" width="100%" role="img" aria-labelledby="{id}-title {id}-desc" font-family="system-ui, sans-serif" font-size="12">"#
        );
        let _ = write!(
            s,
            r#"<title id="{id}-title">{}</title><desc id="{id}-desc">{}</desc>"#,
            esc(&self.title),
            esc(&self.description)
        );
        let _ = write!(
            s,
            r##"<text x="{left}" y="20" font-size="14" font-weight="600" fill="#222">{}</text>"##,
            esc(&self.title)
        );
        let Some((t0, t1)) = self.time_range() else {
            let _ = write!(
                s,
                r##"<text class="empty" x="{left}" y="{}" fill="#555">no data</text></svg>"##,
                top + ph / 2.0
            );
            return s;
        };
        let (lo, hi) = self.value_range();
        let y_ticks = nice_ticks(lo, hi, self.target_ticks);
        let (lo, hi) = (
            y_ticks.first().copied().unwrap_or(lo).min(lo),
            y_ticks.last().copied().unwrap_or(hi).max(hi),
        );
        let width_ms = (i128::from(t1) - i128::from(t0)) as f64;
        let x = |t: i64| left + (i128::from(t) - i128::from(t0)) as f64 / width_ms * pw;
        let y = |v: f64| top + (hi - v.clamp(-f64::MAX / 2.0, f64::MAX / 2.0)) / (hi - lo) * ph;
        let clip = format!("{id}-plot");
        let _ = write!(
            s,
            r#"<defs><clipPath id="{clip}"><rect x="{left}" y="{top}" width="{pw}" height="{ph}"/></clipPath></defs>"#
        );
        // Spans under everything.
        for sp in &self.spans {
            let (a, b) = (
                x(sp.from.as_millis()).clamp(left, left + pw),
                x(sp.to.as_millis()).clamp(left, left + pw),
            );
            let _ = write!(
                s,
                r##"<rect class="span" x="{a:.1}" y="{top}" width="{:.1}" height="{ph}" fill="#d55e00" fill-opacity="0.12"><title>{}</title></rect>"##,
                (b - a).max(1.0),
                esc(&sp.label)
            );
        }
        // Y axis: gridlines and ticks with units.
        let step = if y_ticks.len() >= 2 {
            y_ticks[1] - y_ticks[0]
        } else {
            (hi - lo).abs()
        };
        let _ = write!(s, r#"<g class="axis y">"#);
        for v in &y_ticks {
            let yy = y(*v);
            let _ = write!(
                s,
                r##"<line x1="{left}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e3e3e3"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##,
                left + pw,
                left - 6.0,
                yy + 4.0,
                esc(&self.unit.format(*v, step))
            );
        }
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{left}" y1="{top}" y2="{:.1}" stroke="#888"/></g>"##,
            top + ph
        );
        // X axis: dated ticks.
        let _ = write!(s, r#"<g class="axis x">"#);
        for (t, label) in time_ticks(t0, t1, self.target_ticks) {
            let xx = x(t);
            let _ = write!(
                s,
                r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{top}" y2="{:.1}" stroke="#efefef"/><line x1="{xx:.1}" x2="{xx:.1}" y1="{:.1}" y2="{:.1}" stroke="#888"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
                top + ph,
                top + ph,
                top + ph + 5.0,
                top + ph + 18.0,
                esc(&label)
            );
        }
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#888"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#666" font-size="11">UTC</text></g>"##,
            left + pw,
            top + ph,
            top + ph,
            left + pw,
            top + ph + 32.0
        );
        // Bands, then lines, clipped to the plot.
        let _ = write!(s, r#"<g clip-path="url(#{clip})">"#);
        for b in &self.bands {
            if b.points.is_empty() {
                continue;
            }
            let mut d = String::new();
            for (i, (t, _, up)) in b.points.iter().enumerate() {
                let _ = write!(
                    d,
                    "{}{:.1},{:.1}",
                    if i == 0 { "M" } else { "L" },
                    x(t.as_millis()),
                    y(*up)
                );
            }
            for (t, low, _) in b.points.iter().rev() {
                let _ = write!(d, "L{:.1},{:.1}", x(t.as_millis()), y(*low));
            }
            let _ = write!(
                s,
                r##"<path class="band" data-series="{}" d="{d}Z" fill="#0072b2" fill-opacity="0.15" stroke="none"/>"##,
                esc(&b.label)
            );
        }
        for l in &self.lines {
            if l.points.is_empty() {
                continue;
            }
            let mut d = String::new();
            let mut prev_y = None;
            for (i, (t, v)) in l.points.iter().enumerate() {
                let (xx, yy) = (x(t.as_millis()), y(*v));
                if i > 0
                    && l.style == LineStyle::Step
                    && let Some(py) = prev_y
                {
                    let _ = write!(d, "L{xx:.1},{py:.1}");
                }
                let _ = write!(d, "{}{xx:.1},{yy:.1}", if i == 0 { "M" } else { "L" });
                prev_y = Some(yy);
            }
            let dash = if l.style == LineStyle::Dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = write!(
                s,
                r#"<path class="series" data-series="{}" d="{d}" fill="none" stroke="{}" stroke-width="1.6"{dash}/>"#,
                esc(&l.label),
                l.color
            );
        }
        let _ = write!(s, "</g>");
        // Limits: a line in range, an edge annotation when far away.
        for (label, v) in &self.limits {
            if *v >= lo && *v <= hi {
                let yy = y(*v);
                let _ = write!(
                    s,
                    r##"<g class="limit"><line x1="{left}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#c0392b" stroke-width="1.4" stroke-dasharray="2 3"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#c0392b">{}</text></g>"##,
                    left + pw,
                    left + pw - 4.0,
                    yy - 4.0,
                    esc(label)
                );
            } else {
                let (yy, arrow) = if *v > hi {
                    (top + 12.0, "↑")
                } else {
                    (top + ph - 6.0, "↓")
                };
                let _ = write!(
                    s,
                    r##"<g class="limit annotation"><text x="{:.1}" y="{yy:.1}" text-anchor="end" fill="#c0392b">{arrow} {} (off scale)</text></g>"##,
                    left + pw - 4.0,
                    esc(label)
                );
            }
        }
        // Markers.
        for (i, m) in self.markers.iter().enumerate() {
            let xx = x(m.at.as_millis()).clamp(left, left + pw);
            let ty = top + 12.0 + 14.0 * (i % 3) as f64;
            let anchor = if xx > left + pw * 0.7 { "end" } else { "start" };
            let dx = if anchor == "end" { -4.0 } else { 4.0 };
            let _ = write!(
                s,
                r##"<g class="marker" data-marker="{}"><title>{}</title><line x1="{xx:.1}" x2="{xx:.1}" y1="{top}" y2="{:.1}" stroke="#6a3d9a" stroke-width="1.2"/><circle cx="{xx:.1}" cy="{:.1}" r="3" fill="#6a3d9a"/><text x="{:.1}" y="{ty:.1}" text-anchor="{anchor}" fill="#6a3d9a">{}</text></g>"##,
                esc(&m.label),
                esc(&m.note),
                top + ph,
                top + ph,
                xx + dx,
                esc(&m.label)
            );
        }
        // Rugs: short ticks just above the time axis, one row per rug.
        for (i, r) in self.rugs.iter().enumerate() {
            let color = RUG_COLORS[i % RUG_COLORS.len()];
            let y1 = top + ph - 1.0 - 8.0 * i as f64;
            let stride = r.times.len().div_ceil(MAX_RUG_TICKS).max(1);
            let mut d = String::new();
            for t in r.times.iter().step_by(stride) {
                let xx = x(t.as_millis());
                if (left..=left + pw).contains(&xx) {
                    let _ = write!(d, "M{xx:.1},{y1:.1}v-6");
                }
            }
            let _ = write!(
                s,
                r#"<g class="marker events" data-marker="{}"><title>{}: {} events</title><path d="{d}" stroke="{color}" stroke-width="1"/></g>"#,
                esc(&r.label),
                esc(&r.label),
                r.times.len()
            );
        }
        // Legend and notes.
        let mut lx = left;
        let ly = top + ph + 46.0;
        let _ = write!(s, r#"<g class="legend">"#);
        for l in &self.lines {
            let dash = if l.style == LineStyle::Dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = write!(
                s,
                r##"<line x1="{lx:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{ly:.1}" fill="#333">{}</text>"##,
                lx + 18.0,
                ly - 4.0,
                ly - 4.0,
                l.color,
                lx + 22.0,
                esc(&l.label)
            );
            lx += 34.0 + 7.0 * l.label.chars().count() as f64;
        }
        for b in &self.bands {
            let _ = write!(
                s,
                r##"<rect x="{lx:.1}" y="{:.1}" width="18" height="9" fill="#0072b2" fill-opacity="0.15"/><text x="{:.1}" y="{ly:.1}" fill="#333">{}</text>"##,
                ly - 9.0,
                lx + 22.0,
                esc(&b.label)
            );
            lx += 34.0 + 7.0 * b.label.chars().count() as f64;
        }
        for (i, r) in self.rugs.iter().enumerate() {
            let color = RUG_COLORS[i % RUG_COLORS.len()];
            let _ = write!(
                s,
                r##"<path d="M{:.1},{:.1}v-9M{:.1},{:.1}v-9M{:.1},{:.1}v-9" stroke="{color}" stroke-width="1.4"/><text x="{:.1}" y="{ly:.1}" fill="#333">{}</text>"##,
                lx + 3.0,
                ly,
                lx + 9.0,
                ly,
                lx + 15.0,
                ly,
                lx + 22.0,
                esc(&r.label)
            );
            lx += 34.0 + 7.0 * r.label.chars().count() as f64;
        }
        let _ = write!(s, "</g>");
        for (i, n) in self.notes.iter().enumerate() {
            let _ = write!(
                s,
                r##"<text class="note" x="{left}" y="{:.1}" fill="#555">{}</text>"##,
                ly + 18.0 + 16.0 * i as f64,
                esc(n)
            );
        }
        s.push_str("</svg>");
        s
    }
}

fn clamp_or(v: f64, lo: f64, hi: f64, default: f64) -> f64 {
    if v.is_finite() {
        v.clamp(lo, hi)
    } else {
        default
    }
}

/// Escapes text for XML/HTML content and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An id-safe version of `s`.
fn slug(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    if out.is_empty() {
        out.push('c');
    }
    format!("chart-{out}")
}

/// About `target` "nice" ticks (1, 2, 5 × 10ᵏ apart) covering `[lo, hi]`.
///
/// # Examples
/// ```
/// use sysmanage_capacity::chart::nice_ticks;
/// assert_eq!(nice_ticks(0.13, 0.87, 5), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
/// ```
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi < lo {
        return Vec::new();
    }
    let span = (hi - lo).max(hi.abs().max(1e-300) * 1e-9);
    let raw = span / target.clamp(2, 20) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let m = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|m| m * mag >= raw)
        .unwrap_or(10.0);
    let step = m * mag;
    let first = (lo / step).floor();
    let last = (hi / step).ceil();
    if !(first.is_finite() && last.is_finite()) || last - first > 100.0 {
        return vec![lo, hi];
    }
    // Print-friendly values (0.6, not 0.6000000000000001): divide by the
    // integer 1/mag rather than multiply by mag when mag < 1.
    let inv = (1.0 / mag).round();
    (0..=(last - first) as i64)
        .map(|k| {
            let units = (first + k as f64) * m;
            if mag < 1.0 && inv.is_finite() {
                units / inv
            } else {
                units * mag
            }
        })
        .filter(|v| v.is_finite())
        .collect()
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Ticks between `t0` and `t1` (ms) at a "nice" calendar step, labelled in
/// UTC: times of day for hour steps (with the date at midnight), dates for
/// day and week steps, months and years beyond.
pub fn time_ticks(t0: i64, t1: i64, target: usize) -> Vec<(i64, String)> {
    if t1 <= t0 {
        return Vec::new();
    }
    let span = (i128::from(t1) - i128::from(t0)) as f64;
    let raw = span / target.clamp(2, 20) as f64;
    const STEPS: [i64; 14] = [
        MINUTE,
        5 * MINUTE,
        15 * MINUTE,
        30 * MINUTE,
        HOUR,
        3 * HOUR,
        6 * HOUR,
        12 * HOUR,
        DAY,
        2 * DAY,
        7 * DAY,
        14 * DAY,
        30 * DAY,
        91 * DAY,
    ];
    if let Some(&step) = STEPS.iter().find(|s| **s as f64 >= raw) {
        if step >= 30 * DAY {
            return month_ticks(t0, t1, if step == 30 * DAY { 1 } else { 3 });
        }
        // Weeks start on Mondays (1970-01-05 was one).
        let offset = if step == 7 * DAY || step == 14 * DAY {
            4 * DAY
        } else {
            0
        };
        // In i128: the first tick may lie before i64::MIN.
        let (t0w, stepw) = (i128::from(t0), i128::from(step));
        let mut first = (t0w - i128::from(offset)).div_euclid(stepw) * stepw + i128::from(offset);
        if first < t0w {
            first += stepw;
        }
        let mut out = Vec::new();
        let Ok(mut t) = i64::try_from(first) else {
            return out;
        };
        while t <= t1 && out.len() < 64 {
            let (_, mo, d) = civil(t.div_euclid(DAY));
            let tod = t.rem_euclid(DAY);
            let label = if step >= DAY || tod == 0 {
                format!("{} {d}", MONTHS[mo - 1])
            } else {
                format!("{:02}:{:02}", tod / HOUR, (tod % HOUR) / MINUTE)
            };
            out.push((t, label));
            t = match t.checked_add(step) {
                Some(n) => n,
                None => break,
            };
        }
        return out;
    }
    // Years.
    let years = ((span / (365.25 * DAY as f64)) / target.clamp(2, 20) as f64)
        .ceil()
        .max(1.0) as i64;
    let (y0, ..) = civil(t0.div_euclid(DAY));
    let mut out = Vec::new();
    let mut y = y0 - y0.rem_euclid(years);
    while out.len() < 64 {
        let t = days_from_civil(y, 1, 1).saturating_mul(DAY);
        if t > t1 {
            break;
        }
        if t >= t0 {
            out.push((t, y.to_string()));
        }
        match y.checked_add(years) {
            Some(next) => y = next,
            None => break,
        }
    }
    out
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn month_ticks(t0: i64, t1: i64, every: usize) -> Vec<(i64, String)> {
    let (mut y, mut m, _) = civil(t0.div_euclid(DAY));
    let mut out = Vec::new();
    while out.len() < 64 {
        let t = days_from_civil(y, m, 1).saturating_mul(DAY);
        if t > t1 {
            break;
        }
        if t >= t0 && (m - 1) % every == 0 {
            let label = if m == 1 {
                format!("{} {y}", MONTHS[0])
            } else {
                MONTHS[m - 1].to_owned()
            };
            out.push((t, label));
        }
        m += 1;
        if m > 12 {
            m = 1;
            y += 1;
        }
    }
    out
}

/// `(year, month, day)` of a day count since 1970-01-01 (Hinnant's
/// algorithm, proleptic Gregorian).
fn civil(days: i64) -> (i64, usize, i64) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as usize, d)
}

/// Days since 1970-01-01 of a date, saturating at the `i64` range.
fn days_from_civil(y: i64, m: usize, d: i64) -> i64 {
    let y = i128::from(if m <= 2 { y.saturating_sub(1) } else { y });
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i128;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i128::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    i64::try_from(days).unwrap_or(if days < 0 { i64::MIN } else { i64::MAX })
}

/// A UTC date and time, `2026-10-31 14:05`.
///
/// # Examples
/// ```
/// use sysmanage_capacity::chart::format_utc;
/// use sysmanage_core::Timestamp;
/// assert_eq!(format_utc(Timestamp::from_secs(1_790_812_800 + 3600 * 14 + 300)), "2026-10-01 14:05");
/// ```
pub fn format_utc(t: Timestamp) -> String {
    let ms = t.as_millis();
    let (y, m, d) = civil(ms.div_euclid(DAY));
    let tod = ms.rem_euclid(DAY);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        tod / HOUR,
        (tod % HOUR) / MINUTE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        for days in [-719_468, -1, 0, 1, 59, 365, 20_000, 20_392, 2_932_896] {
            let (y, m, d) = civil(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil(20_362), (2025, 10, 1));
    }

    #[test]
    fn time_ticks_are_dated_and_inside_the_range() {
        let t0 = 1_790_812_800_000; // 2026-10-01
        let week = time_ticks(t0, t0 + 7 * DAY, 6);
        assert!(week.len() >= 4, "{week:?}");
        assert!(week.iter().all(|(t, _)| *t >= t0 && *t <= t0 + 7 * DAY));
        assert!(week.iter().all(|(_, l)| l.starts_with("Oct ")), "{week:?}");
        let day = time_ticks(t0 + 3 * HOUR, t0 + 27 * HOUR, 6);
        assert!(day.iter().any(|(_, l)| l == "Oct 2"), "{day:?}");
        assert!(day.iter().any(|(_, l)| l == "12:00"), "{day:?}");
        let years = time_ticks(t0 - 4 * 365 * DAY, t0 + 3 * 365 * DAY, 6);
        assert!(years.iter().any(|(_, l)| l == "2024"), "{years:?}");
        assert!(time_ticks(i64::MIN, i64::MAX, 6).len() <= 64);
    }

    #[test]
    fn a_far_limit_is_an_annotation_and_a_near_one_a_line() {
        let t = |h: i64| Timestamp::from_secs(1_790_812_800 + 3600 * h);
        let data: Vec<(Timestamp, f64)> = (0..24).map(|h| (t(h), 20.0 + h as f64)).collect();
        let far = TimeChart::new("queue", Unit::Count)
            .line("history", LineStyle::Solid, data.clone())
            .limit("limit 1k", 1000.0)
            .to_svg();
        assert!(far.contains("limit annotation") && far.contains("off scale"));
        // The y axis follows the data: no tick anywhere near 1,000.
        assert!(!far.contains(">1 k<") && !far.contains(">1000<"), "{far}");
        let near = TimeChart::new("queue", Unit::Count)
            .line("history", LineStyle::Solid, data)
            .limit("limit 50", 50.0)
            .to_svg();
        assert!(near.contains(r#"<g class="limit">"#));
    }

    #[test]
    fn a_rug_draws_one_tick_per_event_and_thins_long_ones() {
        let t = |m: i64| Timestamp::from_secs(1_790_812_800 + 60 * m);
        let data: Vec<(Timestamp, f64)> = (0..600).map(|m| (t(m), m as f64)).collect();
        let few = TimeChart::new("replicas", Unit::Count)
            .line("demand", LineStyle::Solid, data.clone())
            .events("scale events", vec![t(10), t(20), t(30)])
            .to_svg();
        assert!(few.contains(r#"<g class="marker events" data-marker="scale events">"#));
        assert!(few.contains("<title>scale events: 3 events</title>"));
        let rug = few.split("marker events").nth(1).unwrap();
        assert_eq!(rug.split("</g>").next().unwrap().matches("v-6").count(), 3);
        let many = TimeChart::new("replicas", Unit::Count)
            .line("demand", LineStyle::Solid, data)
            .events("scale events", (0..6000).map(|i| t(i % 600)).collect())
            .to_svg();
        let rug = many.split("marker events").nth(1).unwrap();
        let ticks = rug.split("</g>").next().unwrap().matches("v-6").count();
        assert!(
            (MAX_RUG_TICKS / 2..=MAX_RUG_TICKS).contains(&ticks),
            "{ticks}"
        );
        assert!(many.contains("scale events: 6000 events"));
    }

    #[test]
    fn hostile_text_and_values_are_escaped_or_skipped() {
        let t = Timestamp::from_secs(0);
        let svg = TimeChart::new("<script>alert(1)</script>", Unit::None)
            .line("a\"b", LineStyle::Step, vec![(t, f64::NAN), (t, 1.0)])
            .band("band", vec![(t, f64::NEG_INFINITY, 1.0)])
            .limit("nan", f64::NAN)
            .size(f64::NAN, 1e300)
            .to_svg();
        assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
