//! A [`CapacityReport`] as one self-contained HTML page: inline CSS and
//! SVG charts ([`crate::chart`]), no scripts, fonts or anything else
//! fetched, readable in a narrow window and printable.
//!
//! The page opens with the summary (health, every metric ordered by
//! urgency, each recommendation with its evidence), then one section per
//! metric: a chart of the fitted history, the forecast with its prediction
//! interval, the limit and markers where the mean and the bound cross it
//! (or a note that they do not within the horizon), a text alternative
//! saying the same in words, and the data-quality notes.

use std::fmt::Write as _;

use crate::chart::{LineStyle, TimeChart, esc, format_utc};
use crate::metric::{Direction, Unit};
use crate::report::{
    CapacityHealth, CapacityReport, MetricForecast, Recommendation, TimeToLimit, TrendLabel,
    Urgency,
};

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d1d1f; background: #fafafa; }
main { max-width: 980px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.5em; margin: 0.2em 0; }
h2 { font-size: 1.2em; margin: 0 0 0.3em; }
.meta { color: #555; margin: 0 0 1em; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 10px; font-weight: 600; }
.healthy { background: #e3f4ea; color: #17622f; }
.warning { background: #fff3d6; color: #7a4b00; }
.critical { background: #fde2e1; color: #8f1d18; }
.high { color: #8f1d18; font-weight: 600; }
.medium { color: #7a4b00; font-weight: 600; }
.low { color: #33507a; }
section, article { background: #fff; border: 1px solid #e2e2e2; border-radius: 8px; padding: 12px 16px; margin: 12px 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.93em; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; white-space: nowrap; }
figure { margin: 8px 0; }
figcaption { color: #333; font-size: 0.93em; }
ul.quality { margin: 4px 0; padding-left: 1.2em; color: #444; font-size: 0.93em; }
svg.chart { display: block; max-width: 100%; height: auto; }
@media (max-width: 640px) { body { font-size: 14px; } main { padding: 6px; } section, article { padding: 8px; } }
@media print { body { background: #fff; } section, article { border: none; break-inside: avoid; page-break-inside: avoid; } .scroll { overflow: visible; } }
"#;

/// Renders `report` as a complete HTML document titled `title`.
///
/// # Examples
/// ```
/// use sysmanage_capacity::{CapacityPlanner, Planner, PlannerConfig};
/// use sysmanage_core::Timestamp;
/// use std::time::Duration;
///
/// let mut p = Planner::sysmanage(PlannerConfig::default())?;
/// let t0 = Timestamp::from_secs(1_790_812_800);
/// for h in 0..24 * 7 {
///     p.record("disk_utilization", t0 + Duration::from_secs(3600 * h), 0.6 + 0.002 * h as f64)?;
/// }
/// let report = p.report(t0 + Duration::from_secs(3600 * (24 * 7 - 1)));
/// let html = report.to_html("Capacity report");
/// assert!(html.starts_with("<!doctype html>"));
/// assert!(html.contains(r#"<svg class="chart""#) && !html.contains("<script"));
/// # Ok::<(), sysmanage_core::Error>(())
/// ```
pub fn render(report: &CapacityReport, title: &str) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{}</title><style>{STYLE}</style></head><body><main>"#,
        esc(title)
    );
    let health = match report.capacity_health {
        CapacityHealth::Healthy => ("healthy", "Healthy"),
        CapacityHealth::Warning => ("warning", "Warning"),
        _ => ("critical", "Critical"),
    };
    let _ = write!(
        h,
        r#"<header><h1>{}</h1><p class="meta">Generated for {} UTC · horizon {} days · <span class="badge {}">{}</span></p></header>"#,
        esc(title),
        format_utc(report.generated_at),
        trim(report.summary.prediction_horizon_days),
        health.0,
        health.1
    );
    summary(&mut h, report);
    recommendations(&mut h, report);
    if !report.skipped.is_empty() {
        let _ = write!(h, r#"<section class="skipped"><h2>Not forecast</h2><ul>"#);
        for s in &report.skipped {
            let _ = write!(h, "<li><b>{}</b>: {}</li>", esc(&s.metric), esc(&s.reason));
        }
        h.push_str("</ul></section>");
    }
    for f in ordered(report) {
        metric_section(&mut h, report, f);
    }
    h.push_str("</main></body></html>\n");
    h
}

impl CapacityReport {
    /// This report as one self-contained HTML page (see [`crate::html`]).
    pub fn to_html(&self, title: &str) -> String {
        render(self, title)
    }
}

/// Forecasts ordered by urgency: recommendation urgency (high first), then
/// time to limit, then name.
fn ordered(report: &CapacityReport) -> Vec<&MetricForecast> {
    let mut v: Vec<&MetricForecast> = report.forecasts.iter().collect();
    let rank = |f: &MetricForecast| {
        let urgency = recommendation(report, &f.metric).map(|r| r.urgency);
        let u = match urgency {
            Some(Urgency::High) => 0,
            Some(Urgency::Medium) => 1,
            Some(Urgency::Low) => 2,
            _ => 3,
        };
        let hours = f
            .time_to_limit
            .hours()
            .or(f.time_to_limit_bound.hours())
            .unwrap_or(f64::INFINITY);
        (u, hours)
    };
    v.sort_by(|a, b| {
        let (ua, ha) = rank(a);
        let (ub, hb) = rank(b);
        ua.cmp(&ub)
            .then(ha.total_cmp(&hb))
            .then(a.metric.cmp(&b.metric))
    });
    v
}

fn recommendation<'a>(report: &'a CapacityReport, metric: &str) -> Option<&'a Recommendation> {
    report.recommendations.iter().find(|r| r.metric == metric)
}

fn urgency_class(u: Urgency) -> (&'static str, &'static str) {
    match u {
        Urgency::High => ("high", "high"),
        Urgency::Medium => ("medium", "medium"),
        _ => ("low", "low"),
    }
}

fn trend_text(t: TrendLabel) -> &'static str {
    match t {
        TrendLabel::Increasing => "increasing",
        TrendLabel::Decreasing => "decreasing",
        _ => "stable",
    }
}

/// "in 5.2 h (Oct 3 14:05)" / "in 2.6 days, 61 h (…)" — one unit rule for
/// every time to limit on the page.
fn when(t: &TimeToLimit) -> String {
    match t {
        TimeToLimit::NoLimit => "no limit".to_owned(),
        TimeToLimit::AlreadyOver => "already over".to_owned(),
        TimeToLimit::Within { hours, at } => {
            format!("in {} ({} UTC)", duration_text(*hours), format_utc(*at))
        }
        TimeToLimit::NotWithinHorizon { horizon_hours } => {
            format!("not within {}", duration_text(*horizon_hours))
        }
    }
}

/// The summary table's short form: "61 h<br>Nov 2 13:17" / "–".
fn when_short(t: &TimeToLimit) -> String {
    match t {
        TimeToLimit::NoLimit => "no limit".to_owned(),
        TimeToLimit::AlreadyOver => "already over".to_owned(),
        TimeToLimit::Within { hours, at } => {
            let short = if *hours < 48.0 {
                format!("{hours:.1} h")
            } else {
                format!("{:.1} d", hours / 24.0)
            };
            format!("{short}<br><small>{} UTC</small>", esc(&format_utc(*at)))
        }
        TimeToLimit::NotWithinHorizon { .. } => "beyond horizon".to_owned(),
    }
}

fn duration_text(hours: f64) -> String {
    if hours < 48.0 {
        format!("{hours:.1} h")
    } else {
        format!("{:.1} days ({hours:.0} h)", hours / 24.0)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `v` in its unit with four significant digits, trailing zeros dropped.
fn value(unit: &Unit, v: f64) -> String {
    if !v.is_finite() {
        return "–".to_owned();
    }
    let res = if v == 0.0 {
        1.0
    } else {
        10f64.powf(v.abs().log10().floor() - 3.0)
    };
    let text = unit.format(v, res);
    // Drop trailing zeros of the number part ("80.00 %" → "80 %").
    let (num, rest) = text.split_at(text.find(' ').unwrap_or(text.len()));
    if num.contains('.') {
        format!("{}{rest}", num.trim_end_matches('0').trim_end_matches('.'))
    } else {
        text
    }
}

fn summary(h: &mut String, report: &CapacityReport) {
    let s = &report.summary;
    let _ = write!(
        h,
        r#"<section class="summary"><h2>Summary</h2><p>Metrics forecast: {}; reaching their limit within the horizon: {}; recommendations: {} ({} high urgency){}.</p><div class="scroll"><table><caption class="meta">Metrics by urgency</caption><thead><tr><th scope="col">metric</th><th scope="col">now</th><th scope="col">limit</th><th scope="col">mean at limit in</th><th scope="col">{} bound at limit in</th><th scope="col">trend</th><th scope="col">model</th><th scope="col">urgency</th></tr></thead><tbody>"#,
        s.total_metrics_monitored,
        s.metrics_near_limit,
        s.recommendations,
        s.high_urgency_items,
        s.earliest_limit_hours
            .map(|h| format!("; the earliest crossing is {} away", duration_text(h)))
            .unwrap_or_default(),
        report
            .forecasts
            .first()
            .map_or("95 %".to_owned(), |f| format!(
                "{} %",
                trim(f.interval_level * 100.0)
            ))
    );
    for f in ordered(report) {
        let urgency = recommendation(report, &f.metric).map_or(r#"<td>–</td>"#.to_owned(), |r| {
            let (c, t) = urgency_class(r.urgency);
            format!(r#"<td class="{c}">{t}</td>"#)
        });
        let _ = write!(
            h,
            r##"<tr><th scope="row"><a href="#m-{}">{}</a></th><td class="num">{}</td><td class="num">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{urgency}</tr>"##,
            anchor(&f.metric),
            esc(&f.metric),
            esc(&value(&f.unit, f.current_value)),
            f.limit.map_or("–".to_owned(), |l| esc(&value(&f.unit, l))),
            when_short(&f.time_to_limit),
            when_short(&f.time_to_limit_bound),
            trend_text(f.trend),
            f.selection.model
        );
    }
    h.push_str("</tbody></table></div></section>");
}

fn recommendations(h: &mut String, report: &CapacityReport) {
    h.push_str(r#"<section class="recommendations"><h2>Recommendations</h2>"#);
    if report.recommendations.is_empty() {
        h.push_str("<p>None: no metric reaches its limit within the horizon.</p></section>");
        return;
    }
    h.push_str("<ol>");
    for r in &report.recommendations {
        let f = report.forecasts.iter().find(|f| f.metric == r.metric);
        let unit = f.map_or(Unit::None, |f| f.unit.clone());
        let (class, text) = urgency_class(r.urgency);
        let basis = match r.basis {
            crate::report::LimitBasis::Point => "the mean forecast",
            crate::report::LimitBasis::Bound => "the interval bound",
            _ => "the current value",
        };
        let _ = write!(
            h,
            r##"<li><p><span class="{class}">{text}</span> · <a href="#m-{}"><b>{}</b></a>: {} — {} reaches the limit of {} {}.</p><ul class="quality">"##,
            anchor(&r.metric),
            esc(&r.metric),
            esc(&r.recommended_action),
            basis,
            esc(&value(&unit, r.capacity_limit)),
            if r.time_to_limit_hours == 0.0 {
                "now".to_owned()
            } else {
                format!("in {}", duration_text(r.time_to_limit_hours))
            }
        );
        let e = &r.evidence;
        let _ = write!(
            h,
            "<li>model {} (holdout mean absolute error {})</li>",
            e.model,
            e.holdout_mae
                .map_or("not measured".to_owned(), |m| esc(&value(&unit, m)))
        );
        if let Some(f) = f {
            let _ = write!(
                h,
                "<li>mean reaches the limit {}; the {} % bound {}</li>",
                esc(&when(&f.time_to_limit)),
                trim(e.interval_level * 100.0),
                esc(&when(&f.time_to_limit_bound))
            );
        }
        if let Some((lo, hi)) = e.interval_at_crossing {
            let _ = write!(
                h,
                "<li>{} % interval at the crossing: {} to {}</li>",
                trim(e.interval_level * 100.0),
                esc(&value(&unit, lo)),
                esc(&value(&unit, hi))
            );
        }
        let _ = write!(
            h,
            "<li>{} samples{}</li></ul></li>",
            e.samples,
            if e.data_quality.is_empty() {
                String::new()
            } else {
                format!("; hygiene: {}", esc(&e.data_quality.join(", ")))
            }
        );
    }
    h.push_str("</ol></section>");
}

fn anchor(metric: &str) -> String {
    metric
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn metric_section(h: &mut String, report: &CapacityReport, f: &MetricForecast) {
    let unit = &f.unit;
    let level = trim(f.interval_level * 100.0);
    let mut chart = TimeChart::new(f.metric.clone(), unit.clone())
        .line(
            "history (bucket means)",
            LineStyle::Solid,
            f.history.iter().map(|s| (s.at, s.value)).collect(),
        )
        .band(
            format!("{level} % interval"),
            f.forecasts
                .iter()
                .map(|p| (p.at, p.lower, p.upper))
                .collect(),
        )
        .line(
            "forecast (mean)",
            LineStyle::Dashed,
            f.forecasts.iter().map(|p| (p.at, p.point)).collect(),
        );
    let mut words = vec![format!(
        "{}: now {}, trend {}, forecast by the {} model with a {level} % interval.",
        f.metric,
        value(unit, f.current_value),
        trend_text(f.trend),
        f.selection.model
    )];
    if let Some(limit) = f.limit {
        let side = match f.direction {
            Direction::Ceiling => "ceiling",
            Direction::Floor => "floor",
        };
        chart = chart.limit(format!("limit {}", value(unit, limit)), limit);
        words.push(format!("The limit is a {side} at {}.", value(unit, limit)));
        for (name, t) in [
            ("mean", &f.time_to_limit),
            ("bound", &f.time_to_limit_bound),
        ] {
            match t {
                TimeToLimit::Within { hours, at } => {
                    let note = format!(
                        "the {} reaches the limit at {} UTC, in {}",
                        if name == "mean" {
                            "mean forecast".to_owned()
                        } else {
                            format!("{level} % bound")
                        },
                        format_utc(*at),
                        duration_text(*hours)
                    );
                    chart = chart.marker(format!("{name} crosses"), *at, note.clone());
                    words.push(format!("{}.", capitalise(&note)));
                }
                TimeToLimit::AlreadyOver => {
                    let note = "the metric is already over its limit".to_owned();
                    if name == "mean" {
                        chart = chart.note(capitalise(&note));
                        words.push(format!("{}.", capitalise(&note)));
                    }
                }
                TimeToLimit::NotWithinHorizon { horizon_hours } => {
                    let note = format!(
                        "the {} does not reach the limit within {}",
                        if name == "mean" {
                            "mean forecast".to_owned()
                        } else {
                            format!("{level} % bound")
                        },
                        duration_text(*horizon_hours)
                    );
                    chart = chart.note(capitalise(&note));
                    words.push(format!("{}.", capitalise(&note)));
                }
                _ => {}
            }
        }
    } else {
        chart = chart.note("No limit is set for this metric.");
        words.push("No limit is set.".to_owned());
    }
    let description = words.join(" ");
    let svg = chart.description(description.clone()).to_svg();
    let rec = recommendation(report, &f.metric)
        .map(|r| {
            let (c, t) = urgency_class(r.urgency);
            format!(r#" <span class="{c}">· {t} urgency</span>"#)
        })
        .unwrap_or_default();
    let _ = write!(
        h,
        r#"<article class="metric" id="m-{}"><h2>{}{rec}</h2><figure>{svg}<figcaption>{}</figcaption></figure>"#,
        anchor(&f.metric),
        esc(&f.metric),
        esc(&description)
    );
    let q = &f.data_quality;
    let _ = write!(
        h,
        r#"<ul class="quality"><li>{} samples in {} buckets of {}</li>"#,
        q.raw_samples,
        q.buckets,
        duration_text_secs(f.step_secs)
    );
    for (n, what) in [
        (q.gaps_filled, "empty buckets filled by interpolation"),
        (q.duplicates_merged, "samples sharing a timestamp averaged"),
        (q.outliers_damped, "isolated spikes damped"),
        (q.max_outliers_damped, "bucket maxima damped"),
        (
            f.clamped_values,
            "forecast values clamped to the physical bounds",
        ),
    ] {
        if n > 0 {
            let _ = write!(h, "<li>{n} {what}</li>");
        }
    }
    if q.partial_bucket_dropped {
        h.push_str("<li>the newest bucket was still filling and was left out of the fit</li>");
    }
    if q.gaps_filled + q.duplicates_merged + q.outliers_damped + q.max_outliers_damped == 0 {
        h.push_str("<li>no gaps, duplicates or outliers</li>");
    }
    h.push_str("</ul></article>");
}

fn duration_text_secs(secs: f64) -> String {
    if secs >= 86_400.0 && (secs / 86_400.0).fract() == 0.0 {
        format!("{} day(s)", secs / 86_400.0)
    } else if secs >= 3600.0 && (secs / 3600.0).fract() == 0.0 {
        format!("{} h", secs / 3600.0)
    } else if secs >= 60.0 && (secs / 60.0).fract() == 0.0 {
        format!("{} min", secs / 60.0)
    } else {
        format!("{} s", trim(secs))
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}
