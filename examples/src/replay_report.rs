//! HTML pages for `autoscaler_replay`: one self-contained page per trace
//! (inline SVG and CSS, no scripts) and an index with the Pareto table.
//!
//! Each trace page shows the Pareto table of its scalers, an overview of
//! the whole trace (demand against each scaler's serving capacity), and a
//! zoom on the 24 hours in which hpa-default violated the SLO longest: per
//! scaler the demand, the capacity it served and provisioned, the
//! SLO-violation spans shaded and its scale events as ticks. Capacity is
//! drawn *within the SLO*, ready replicas × the load one replica carries at
//! the SLO-safe utilisation, so the SLO is violated exactly where the demand
//! line rises above the capacity line.
//!
//! Charts come from [`sysmanage_capacity::chart`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sysmanage_capacity::Unit;
use sysmanage_capacity::chart::{LineStyle, TimeChart, esc, format_utc};
use sysmanage_core::Timestamp;
use sysmanage_scaling::{SIM_START, SimReport, SimStep, Trace};

/// Buckets of the whole-trace overview chart.
const OVERVIEW_BUCKETS: usize = 720;
/// The zoom window.
const ZOOM: Duration = Duration::from_secs(86_400);

/// What one scaler did at every step of a replay, compactly.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// Ready (serving) replicas per step.
    pub ready: Vec<u32>,
    /// Provisioned (paid-for) replicas per step.
    pub provisioned: Vec<u32>,
    /// Whether each step violated the SLO.
    pub violating: Vec<bool>,
    /// The steps at whose end the scaler actuated.
    pub events: Vec<usize>,
}

impl Timeline {
    /// An empty timeline with room for `steps` steps.
    pub fn with_capacity(steps: usize) -> Self {
        Self {
            ready: Vec::with_capacity(steps),
            provisioned: Vec::with_capacity(steps),
            violating: Vec::with_capacity(steps),
            events: Vec::new(),
        }
    }

    /// Appends one step of [`sysmanage_scaling::simulate_steps`].
    pub fn push(&mut self, s: &SimStep) {
        if s.scaled_to.is_some() {
            self.events.push(self.ready.len());
        }
        self.ready.push(s.ready);
        self.provisioned.push(s.provisioned);
        self.violating.push(s.violating);
    }
}

/// One trace's replay, ready to render.
#[derive(Debug)]
pub struct TraceReplay<'a> {
    /// The trace.
    pub trace: &'a Trace,
    /// Its shape in words ("diurnal + bursts").
    pub shape: &'a str,
    /// Whether the trace was held out of tuning.
    pub held_out: bool,
    /// Decision (and simulation) interval.
    pub interval: Duration,
    /// The load one ready replica carries within the SLO, req/s.
    pub slo_capacity_per_replica: f64,
    /// One report per scaler; the first is the baseline (hpa-default).
    pub reports: &'a [SimReport],
    /// One timeline per scaler, in the order of `reports`.
    pub timelines: &'a [Timeline],
}

impl TraceReplay<'_> {
    fn at(&self, step: usize) -> Timestamp {
        SIM_START
            + self
                .interval
                .saturating_mul(u32::try_from(step).unwrap_or(u32::MAX))
    }

    fn rps(&self, step: usize) -> f64 {
        self.trace.rps_at(
            self.interval
                .saturating_mul(u32::try_from(step).unwrap_or(u32::MAX)),
        )
    }

    fn steps(&self) -> usize {
        self.timelines.first().map_or(0, |t| t.ready.len())
    }

    /// The [`ZOOM`] window (first and end step) in which the baseline
    /// violated the SLO longest, after the first day when the trace is long
    /// enough (windows start on whole hours of the replay).
    fn zoom_window(&self) -> (usize, usize) {
        let n = self.steps();
        let per_window = (ZOOM.as_secs_f64() / self.interval.as_secs_f64()) as usize;
        let per_hour = ((3600.0 / self.interval.as_secs_f64()) as usize).max(1);
        if n <= per_window {
            return (0, n);
        }
        let Some(base) = self.timelines.first() else {
            return (0, n);
        };
        let mut prefix = Vec::with_capacity(n + 1);
        prefix.push(0usize);
        for v in &base.violating {
            prefix.push(prefix.last().copied().unwrap_or(0) + usize::from(*v));
        }
        // after the first day when there is room: that day is the
        // forecaster's learning period and the start from the initial replicas
        let first = if n >= 2 * per_window { per_window } else { 0 };
        let count = |s: usize| prefix[s + per_window] - prefix[s];
        let most = (first..=n - per_window)
            .step_by(per_hour)
            .map(count)
            .max()
            .unwrap_or(0);
        // of the first run of windows with that count, the middle one: the
        // violations sit in the middle of the window, not at an edge
        let run: Vec<usize> = (first..=n - per_window)
            .step_by(per_hour)
            .skip_while(|&s| count(s) < most)
            .take_while(|&s| count(s) == most)
            .collect();
        let best = run.get(run.len() / 2).copied().unwrap_or(first);
        (best, best + per_window)
    }
}

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d1d1f; background: #fafafa; }
main { max-width: 980px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.5em; margin: 0.2em 0; }
h2 { font-size: 1.2em; margin: 0 0 0.3em; }
.meta { color: #555; margin: 0 0 1em; }
section { background: #fff; border: 1px solid #e2e2e2; border-radius: 8px; padding: 12px 16px; margin: 12px 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.93em; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; white-space: nowrap; }
.yes { color: #17622f; font-weight: 600; }
.no { color: #8f1d18; }
figure { margin: 8px 0; }
figcaption { color: #333; font-size: 0.93em; }
svg.chart { display: block; max-width: 100%; height: auto; }
@media (max-width: 640px) { body { font-size: 14px; } main { padding: 6px; } section { padding: 8px; } }
@media print { body { background: #fff; } section { border: none; break-inside: avoid; page-break-inside: avoid; } .scroll { overflow: visible; } }
"#;

fn head(title: &str) -> String {
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{}</title><style>{STYLE}</style></head><body><main>"#,
        esc(title)
    )
}

const TAIL: &str = "</main></body></html>\n";

/// "yes" / "no" / "–" (the baseline itself) against the first report.
fn dominance(r: &SimReport, base: &SimReport) -> (&'static str, &'static str) {
    if std::ptr::eq(r, base) {
        ("", "–")
    } else if r.dominates(base) {
        ("yes", "yes")
    } else if r.slo_violation_minutes == base.slo_violation_minutes
        && r.replica_hours == base.replica_hours
    {
        ("no", "no (equal)")
    } else {
        ("no", "no")
    }
}

fn pareto_rows(h: &mut String, rows: &[(&TraceReplay<'_>, &SimReport)], with_trace: bool) {
    for (t, r) in rows {
        let Some(base) = t.reports.first() else {
            continue;
        };
        let (class, dom) = dominance(r, base);
        let vs = if std::ptr::eq(*r, base) {
            String::new()
        } else {
            format!(
                "{:+.1} %",
                100.0 * (r.replica_hours / base.replica_hours - 1.0)
            )
        };
        h.push_str("<tr>");
        if with_trace {
            let _ = write!(
                h,
                r#"<td><a href="{}">{}</a></td><td>{}</td>"#,
                esc(&page_name(t.trace)),
                esc(t.trace.name()),
                if t.held_out { "held out" } else { "tuning" }
            );
        }
        let _ = write!(
            h,
            r#"<td>{}</td><td class="num">{:.1}</td><td class="num">{:.1}</td><td class="num">{vs}</td><td class="num">{}</td><td class="num">{}</td><td class="{class}">{dom}</td></tr>"#,
            esc(&r.scaler),
            r.slo_violation_minutes,
            r.replica_hours,
            r.scale_events,
            r.peak_replicas
        );
    }
}

fn pareto_table(h: &mut String, rows: &[(&TraceReplay<'_>, &SimReport)], with_trace: bool) {
    h.push_str(r#"<div class="scroll"><table><thead><tr>"#);
    if with_trace {
        h.push_str(r#"<th scope="col">trace</th><th scope="col">set</th>"#);
    }
    h.push_str(
        r#"<th scope="col">scaler</th><th scope="col">SLO-violation min</th><th scope="col">replica-hours</th><th scope="col">vs hpa-default</th><th scope="col">scale events</th><th scope="col">peak replicas</th><th scope="col">dominates hpa-default</th></tr></thead><tbody>"#,
    );
    pareto_rows(h, rows, with_trace);
    h.push_str("</tbody></table></div>");
}

/// The file name of a trace's page.
pub fn page_name(trace: &Trace) -> String {
    let slug: String = trace
        .name()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("replay-{slug}.html")
}

fn hours(d: Duration) -> String {
    let h = d.as_secs_f64() / 3600.0;
    if h >= 48.0 {
        format!("{:.1} days", h / 24.0)
    } else {
        format!("{h:.1} h")
    }
}

/// The whole trace: demand (each bucket's maximum) against every scaler's
/// serving capacity (each bucket's minimum).
fn overview(t: &TraceReplay<'_>) -> String {
    let n = t.steps();
    let per = n.div_ceil(OVERVIEW_BUCKETS).max(1);
    let mut demand = Vec::with_capacity(OVERVIEW_BUCKETS + 1);
    let mut caps: Vec<Vec<(Timestamp, f64)>> = vec![Vec::new(); t.timelines.len()];
    for lo in (0..n).step_by(per) {
        let hi = (lo + per).min(n);
        let peak = (lo..hi).map(|k| t.rps(k)).fold(0.0, f64::max);
        demand.push((t.at(lo), peak));
        for (tl, out) in t.timelines.iter().zip(&mut caps) {
            let low = tl.ready[lo..hi].iter().copied().min().unwrap_or(0);
            out.push((t.at(lo), f64::from(low) * t.slo_capacity_per_replica));
        }
    }
    let bucket = t
        .interval
        .saturating_mul(u32::try_from(per).unwrap_or(u32::MAX));
    let mut chart = TimeChart::new(
        format!("{}: the whole trace", t.trace.name()),
        Unit::RequestsPerSecond,
    )
    .description(format!(
        "Demand of the {} trace over {} of replay against the capacity each scaler served within the SLO; per {} bucket the demand's maximum and the capacity's minimum, so a bucket in which demand rose above a scaler's capacity shows the lines crossing. {}",
        t.trace.name(),
        hours(t.trace.duration()),
        hours(bucket),
        t.reports
            .iter()
            .map(|r| format!(
                "{}: {:.1} SLO-violation minutes, {:.1} replica-hours.",
                r.scaler, r.slo_violation_minutes, r.replica_hours
            ))
            .collect::<Vec<_>>()
            .join(" ")
    ))
    .size(900.0, 320.0)
    .line("demand (max per bucket)", LineStyle::Solid, demand);
    for (r, c) in t.reports.iter().zip(caps) {
        chart = chart.line(format!("{} capacity (min)", r.scaler), LineStyle::Step, c);
    }
    chart
        .note(format!(
            "Per {} bucket: demand's maximum, capacity's minimum (ready replicas × {} req/s, the load one replica serves within the SLO).",
            hours(bucket),
            t.slo_capacity_per_replica
        ))
        .to_svg()
}

/// One scaler over the zoom window, at full resolution.
fn zoom(t: &TraceReplay<'_>, which: usize, (lo, hi): (usize, usize)) -> String {
    let tl = &t.timelines[which];
    let r = &t.reports[which];
    // the trace is linear between its samples (at least a minute apart):
    // one demand point a minute loses nothing
    let stride = ((60.0 / t.interval.as_secs_f64()).round() as usize).max(1);
    let mut demand: Vec<(Timestamp, f64)> = (lo..hi)
        .step_by(stride)
        .map(|k| (t.at(k), t.rps(k)))
        .collect();
    if hi > lo {
        demand.push((t.at(hi - 1), t.rps(hi - 1)));
    }
    // change points only; `corners` draws the step itself (for a dashed line)
    let steps = |v: &[u32], corners: bool| {
        let mut out: Vec<(Timestamp, f64)> = Vec::new();
        let mut last: Option<u32> = None;
        for (k, &n) in v.iter().enumerate().take(hi).skip(lo) {
            if last != Some(n) {
                if corners && let Some(prev) = last {
                    out.push((t.at(k), f64::from(prev) * t.slo_capacity_per_replica));
                }
                out.push((t.at(k), f64::from(n) * t.slo_capacity_per_replica));
                last = Some(n);
            }
        }
        if hi > lo {
            out.push((t.at(hi), f64::from(v[hi - 1]) * t.slo_capacity_per_replica));
        }
        out
    };
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (k, &violating) in tl.violating.iter().enumerate().take(hi).skip(lo) {
        if violating {
            match spans.last_mut() {
                Some((_, end)) if *end == k => *end = k + 1,
                _ => spans.push((k, k + 1)),
            }
        }
    }
    let violated: usize = spans.iter().map(|(a, b)| b - a).sum();
    let minutes = violated as f64 * t.interval.as_secs_f64() / 60.0;
    let events: Vec<Timestamp> = tl
        .events
        .iter()
        .filter(|&&k| k >= lo && k < hi)
        .map(|&k| t.at(k))
        .collect();
    let (dmin, dmax) = (lo..hi)
        .map(|k| t.rps(k))
        .fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let (cmin, cmax) = tl.ready[lo..hi]
        .iter()
        .fold((u32::MAX, 0), |(a, b), &v| (a.min(v), b.max(v)));
    let mut chart = TimeChart::new(
        format!("{} on {}", r.scaler, t.trace.name()),
        Unit::RequestsPerSecond,
    )
    .description(format!(
        "{} from {} to {} UTC (simulated): demand between {dmin:.0} and {dmax:.0} req/s; capacity served within the SLO between {:.0} and {:.0} req/s ({cmin} to {cmax} ready replicas); the SLO was violated for {minutes:.1} minutes in {} spans (shaded); {} scale events (ticks along the time axis).",
        r.scaler,
        format_utc(t.at(lo)),
        format_utc(t.at(hi)),
        f64::from(cmin) * t.slo_capacity_per_replica,
        f64::from(cmax) * t.slo_capacity_per_replica,
        spans.len(),
        events.len()
    ))
    .size(900.0, 300.0)
    .line("demand", LineStyle::Solid, demand)
    .line("serving capacity", LineStyle::Step, steps(&tl.ready, false))
    .line("provisioned", LineStyle::Dashed, steps(&tl.provisioned, true))
    .events(format!("scale events ({})", events.len()), events);
    for (a, b) in &spans {
        chart = chart.span("SLO violated", t.at(*a), t.at(*b));
    }
    chart
        .note(format!(
            "SLO violated for {minutes:.1} min in this window ({} spans, shaded); serving capacity = ready replicas × {} req/s.",
            spans.len(),
            t.slo_capacity_per_replica
        ))
        .to_svg()
}

/// The page of one trace.
pub fn trace_page(t: &TraceReplay<'_>, model_line: &str) -> String {
    let title = format!("Autoscaler replay: {}", t.trace.name());
    let mut h = head(&title);
    let _ = write!(
        h,
        r#"<header><h1>{}</h1><p class="meta">{} · {} · {} of replay at {} s decisions · <a href="index.html">all traces</a></p><p>{}</p></header>"#,
        esc(&title),
        esc(t.shape),
        if t.held_out {
            "held out of tuning"
        } else {
            "tuning trace"
        },
        hours(t.trace.duration()),
        t.interval.as_secs(),
        esc(model_line)
    );
    h.push_str(r#"<section><h2>Pareto comparison</h2><p>A scaler <em>dominates</em> hpa-default when it has at most its SLO-violation minutes and replica-hours, and fewer of one.</p>"#);
    let rows: Vec<(&TraceReplay<'_>, &SimReport)> = t.reports.iter().map(|r| (t, r)).collect();
    pareto_table(&mut h, &rows, false);
    h.push_str("</section>");
    let _ = write!(
        h,
        r#"<section><h2>The whole trace</h2><figure>{}<figcaption>Demand against the capacity each scaler served within the SLO.</figcaption></figure></section>"#,
        overview(t)
    );
    let window = t.zoom_window();
    let _ = write!(
        h,
        r#"<section><h2>Zoom: {} to {} UTC</h2><p>The 24 hours after the first day (the forecaster's learning period) in which hpa-default violated the SLO longest, at full resolution. The SLO holds while demand stays under the serving-capacity line; the dashed line is what was provisioned (and paid for), which serves only after the start-up time.</p>"#,
        format_utc(t.at(window.0)),
        format_utc(t.at(window.1))
    );
    for i in 0..t.timelines.len().min(t.reports.len()) {
        let _ = write!(h, "<figure>{}</figure>", zoom(t, i, window));
    }
    h.push_str("</section>");
    h.push_str(TAIL);
    h
}

/// The index page: the Pareto table over every trace, linking the pages.
pub fn index_page(replays: &[TraceReplay<'_>], model_line: &str, summary: &str) -> String {
    let title = "Autoscaler replay";
    let mut h = head(title);
    let _ = write!(
        h,
        r#"<header><h1>{title}</h1><p>{}</p><p class="meta"><code>{}</code></p></header><section><h2>Pareto comparison per trace</h2><p>A scaler <em>dominates</em> hpa-default when it has at most its SLO-violation minutes and replica-hours, and fewer of one. Each trace links to its charts.</p>"#,
        esc(model_line),
        esc(summary)
    );
    let rows: Vec<(&TraceReplay<'_>, &SimReport)> = replays
        .iter()
        .flat_map(|t| t.reports.iter().map(move |r| (t, r)))
        .collect();
    pareto_table(&mut h, &rows, true);
    h.push_str("</section>");
    h.push_str(TAIL);
    h
}

/// Where the pages go: `$CARGO_TARGET_DIR/autoscaler_replay`, or the
/// workspace's `target/autoscaler_replay`.
pub fn out_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        })
        .join("autoscaler_replay")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(scaler: &str, slo: f64, hours: f64) -> SimReport {
        SimReport {
            trace: "t".into(),
            scaler: scaler.into(),
            slo_violation_minutes: slo,
            replica_hours: hours,
            scale_events: 1,
            peak_replicas: 4,
            decision_errors: 0,
        }
    }

    /// Three days at 15 s steps; the baseline violates for an hour on day 2
    /// (and for longer in the first hours, which the zoom skips).
    fn timelines(steps: usize) -> Vec<Timeline> {
        let hour = 240;
        let mut base = Timeline::with_capacity(steps);
        let mut other = Timeline::with_capacity(steps);
        for k in 0..steps {
            let violating = k < 3 * hour || (k >= 36 * hour && k < 37 * hour);
            for (tl, v) in [(&mut base, violating), (&mut other, false)] {
                tl.ready.push(4);
                tl.provisioned.push(5);
                tl.violating.push(v);
            }
        }
        base.events = vec![10, 36 * hour + 5];
        vec![base, other]
    }

    #[test]
    fn the_zoom_skips_the_first_day_and_centres_the_violations() {
        let trace = Trace::new("t", Duration::from_secs(60), vec![100.0; 3 * 1440]).unwrap();
        let tls = timelines(3 * 1440 * 4);
        let reports = [report("hpa-default", 15.0, 10.0), report("p", 0.0, 9.0)];
        let replay = TraceReplay {
            trace: &trace,
            shape: "flat",
            held_out: false,
            interval: Duration::from_secs(15),
            slo_capacity_per_replica: 80.0,
            reports: &reports,
            timelines: &tls,
        };
        let (lo, hi) = replay.zoom_window();
        assert_eq!(hi - lo, 24 * 240);
        // windows start after the first day; those starting from 24 h to 36 h
        // hold the violating hour (36–37 h): the middle one, 30 h
        assert_eq!(lo, 30 * 240);
        let page = trace_page(&replay, "model");
        assert_eq!(page.matches(r#"<svg class="chart""#).count(), 3);
        assert!(!page.contains("<script"));
        assert!(page.contains(r#"class="yes">yes"#));
        assert!(page.contains("scale events (1)"));
        let index = index_page(std::slice::from_ref(&replay), "model", "summary: x");
        assert!(index.contains(r#"<a href="replay-t.html">t</a>"#));
        assert!(index.contains("summary: x"));
    }
}
