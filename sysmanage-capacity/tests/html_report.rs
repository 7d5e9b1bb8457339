//! The HTML report: one self-contained page whose charts carry axes,
//! series, limits, crossing markers or notes, and text alternatives; and
//! trend labels that agree with the forecast.

use std::time::Duration;

use sysmanage_capacity::{
    CapacityPlanner, Direction, MetricSpec, Planner, PlannerConfig, TimeToLimit, TrendLabel,
};
use sysmanage_core::Timestamp;

const T0: i64 = 1_790_812_800; // 2026-10-01 00:00 UTC

fn at_hour(h: u64) -> Timestamp {
    Timestamp::from_secs(T0) + Duration::from_secs(3600 * h)
}

fn noise(i: u64) -> f64 {
    (i as f64 * 0.618_033_988_749_895).fract() - 0.5
}

/// Disk creeping towards 0.9 slower than the trend threshold (0.3 % of the
/// limit a day), a queue far below its limit, a crossing CPU and a custom
/// metric with a hostile name.
fn planner() -> (Planner, Timestamp) {
    let mut p = Planner::sysmanage(PlannerConfig::default()).unwrap();
    p.register(MetricSpec::custom("<script>alert(1)</script>", 50.0, Direction::Floor).unwrap())
        .unwrap();
    let hours = 24 * 14;
    for h in 0..hours {
        let day = h as f64 / 24.0;
        let hour = (h % 24) as f64;
        let peak = (-(hour - 14.0).powi(2) / 8.0).exp();
        p.record(
            "disk_utilization",
            at_hour(h),
            0.885 - 0.0027 * 14.0 + 0.0027 * day + 0.0002 * noise(h),
        )
        .unwrap();
        p.record("queue_length", at_hour(h), 20.0 + 5.0 * peak + noise(h))
            .unwrap();
        p.record("cpu_utilization", at_hour(h), 0.3 + 0.02 * day + 0.3 * peak)
            .unwrap();
        p.record(
            "<script>alert(1)</script>",
            at_hour(h),
            100.0 - 0.1 * h as f64,
        )
        .unwrap();
    }
    (p, at_hour(hours - 1))
}

#[test]
fn a_metric_forecast_to_cross_its_limit_is_never_stable() {
    let (p, now) = planner();
    let disk = p.analyze("disk_utilization", now).unwrap();
    assert!(
        matches!(disk.time_to_limit, TimeToLimit::Within { .. }),
        "{:?}",
        disk.time_to_limit
    );
    assert!(
        disk.relative_slope_per_day.abs() < 0.005,
        "slope {} is below the entry threshold",
        disk.relative_slope_per_day
    );
    assert_eq!(disk.trend, TrendLabel::Increasing);
    let (mut p, now) = planner();
    for f in p.report(now).forecasts {
        if matches!(f.time_to_limit, TimeToLimit::Within { .. }) {
            assert_ne!(f.trend, TrendLabel::Stable, "{}", f.metric);
        }
    }
}

#[test]
fn the_report_is_one_self_contained_page_with_complete_charts() {
    let (mut p, now) = planner();
    let report = p.report(now);
    let html = report.to_html("Capacity <report>");
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<title>Capacity &lt;report&gt;</title>"));
    // Nothing executable or fetched.
    assert!(!html.contains("<script"), "hostile names are escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let fetchable = html.replace(r#"xmlns="http://www.w3.org/2000/svg""#, "");
    for fetch in ["http://", "https://", "src=", "@import", "url(http"] {
        assert!(!fetchable.contains(fetch), "{fetch}");
    }
    // One chart per forecast, each with axes, series, a text alternative.
    let charts: Vec<&str> = html.split(r#"<svg class="chart""#).skip(1).collect();
    assert_eq!(charts.len(), report.forecasts.len());
    for c in &charts {
        let c = &c[..c.find("</svg>").unwrap()];
        for part in [
            r#"class="axis x""#,
            r#"class="axis y""#,
            r#"class="series""#,
            r#"class="band""#,
            "<title",
            "<desc",
        ] {
            assert!(c.contains(part), "{part} missing in {c}");
        }
        assert!(
            c.contains(r#"class="marker""#) || c.contains(r#"class="note""#),
            "a crossing marker or a note"
        );
    }
    // The CPU crossing is marked; the far queue limit is an annotation and
    // does not stretch the axis; the no-crossing note is there.
    let cpu = charts
        .iter()
        .find(|c| c.contains("<title id=\"chart-cpu-utilization-title\">"))
        .unwrap();
    assert!(cpu.contains(r#"data-marker="mean crosses""#));
    let queue = charts
        .iter()
        .find(|c| c.contains("chart-queue-length-title"))
        .unwrap();
    assert!(queue.contains("off scale"));
    assert!(!queue.contains(">1 k<") && !queue.contains(">800<"));
    // Units from the spec on the y ticks.
    assert!(cpu.contains(" %</text>"));
    // The summary comes first and orders by urgency.
    let summary = html.find("Summary").unwrap();
    assert!(summary < html.find("<article").unwrap());
    assert!(html.contains("Recommendations"));
    // Data-quality notes per metric, print and narrow-window styles.
    assert!(html.contains(r#"<ul class="quality">"#));
    assert!(html.contains("@media print") && html.contains("max-width: 640px"));
}

#[test]
fn an_empty_report_still_renders() {
    let mut p = Planner::sysmanage(PlannerConfig::default()).unwrap();
    let html = p.report(Timestamp::from_secs(T0)).to_html("empty");
    assert!(html.contains("Not forecast"));
    assert!(html.ends_with("</html>\n"));
}
