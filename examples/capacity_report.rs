//! Capacity report over 30 days of minute samples for SysManage's eight
//! metrics (synthetic, with daily and weekly seasonality and growth), plus
//! one real series: the Mauna Loa weekly CO2 record as distributed in the
//! statsmodels package on PyPI (public domain; see `data/`).
//!
//! Prints the report, writes each report as one self-contained HTML page
//! (summary, one chart per metric, data-quality notes; rendered by the
//! library's `CapacityReport::to_html`) into `target/capacity_report/`,
//! and ends with a `summary:` line naming the page.
//!
//! Run with `cargo run --release --example capacity_report`
//! (`-- --quickstart-demo` runs the short quickstart demo instead).

use sysmanage_examples::capacity_demo;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sysmanage_capacity::{
    Bounds, CapacityPlanner, CapacityReport, CapacitySnapshot, Direction, MetricSpec, Planner,
    PlannerConfig, SelectionConfig, TimeToLimit,
};
use sysmanage_core::{Sample, SplitMix64, Timestamp};
use sysmanage_examples::{init_tracing, section};

const DAY: f64 = 86_400.0;
/// 2026-10-01 00:00 UTC, a Thursday.
const START: i64 = 1_790_812_800;
const MINUTES: u64 = 30 * 24 * 60;

/// Busy-hour shape: 1 at 14:00 UTC, ~0 at night.
fn busy(hour_of_day: f64) -> f64 {
    (-(hour_of_day - 14.0).powi(2) / 10.0).exp()
}

/// The eight metrics at minute `m`, in `MetricKind::BUILT_IN` order.
fn synthetic(m: u64, rng: &mut SplitMix64) -> [f64; 8] {
    let t = m as f64 * 60.0;
    let day = t / DAY;
    let hour = (t % DAY) / 3600.0;
    // 2026-10-01 is a Thursday: days 2 and 3 of each week are the weekend.
    let weekend = matches!((day as u64) % 7, 2 | 3);
    let load = busy(hour) * if weekend { 0.55 } else { 1.0 };
    let mut n = |scale: f64| scale * (rng.next_f64() - 0.5);
    let cpu = 0.22 + 0.007 * day + 0.36 * load + n(0.04);
    let memory = 0.52 + 0.003 * day + 0.06 * load + n(0.01);
    let disk = 0.61 + 0.0085 * day + n(0.002);
    let network = 3.0e7 * (1.0 + 0.01 * day) * (0.35 + load) + n(2.0e6);
    let requests = 450.0 * (1.0 + 0.012 * day) * (0.3 + load) + n(30.0);
    let response = 0.12 + 0.9 * cpu.powi(4) + n(0.02);
    let connections = 900.0 * (1.0 + 0.01 * day) * (0.4 + load) + n(60.0);
    let mut queue = (15.0 + 40.0 * load + n(10.0)).max(0.0);
    if m == 20 * 24 * 60 + 11 * 60 + 7 {
        queue = 5000.0; // one absurd scrape: damped, not recommended on
    }
    [
        cpu,
        memory,
        disk,
        network,
        requests,
        response,
        connections,
        queue,
    ]
}

fn fmt_ttl(t: &TimeToLimit) -> String {
    match t {
        TimeToLimit::NoLimit => "no limit".into(),
        TimeToLimit::AlreadyOver => "already over".into(),
        TimeToLimit::Within { hours, .. } => format!("{hours:.1} h"),
        TimeToLimit::NotWithinHorizon { horizon_hours } => format!("> {horizon_hours:.0} h"),
        _ => "?".into(),
    }
}

fn print_report(report: &CapacityReport) {
    println!(
        "{:<20} {:>12} {:>12} {:<18} {:>10} {:<10} {:>13} {:>13}",
        "metric", "current", "limit", "model", "mae", "trend", "ttl(point)", "ttl(bound)"
    );
    for f in &report.forecasts {
        println!(
            "{:<20} {:>12.4} {:>12} {:<18} {:>10.3e} {:<10} {:>13} {:>13}",
            f.metric,
            f.current_value,
            f.limit.map_or("-".into(), |l| format!("{l}")),
            f.selection.model.to_string(),
            f.selection.holdout_mae.unwrap_or(f64::NAN),
            format!("{:?}", f.trend).to_lowercase(),
            fmt_ttl(&f.time_to_limit),
            fmt_ttl(&f.time_to_limit_bound),
        );
        let flags = f.data_quality.flags();
        if !flags.is_empty() {
            println!("{:<20} data quality: {}", "", flags.join(", "));
        }
    }
    for s in &report.skipped {
        println!("{:<20} skipped: {}", s.metric, s.reason);
    }
    println!("health: {:?}", report.capacity_health);
    for r in &report.recommendations {
        println!(
            "recommendation [{:?}] {}: limit {} in {:.1} h ({:?}); {} (model {}, confidence {:.2}{})",
            r.urgency,
            r.metric,
            r.capacity_limit,
            r.time_to_limit_hours,
            r.basis,
            r.recommended_action,
            r.evidence.model,
            r.confidence,
            r.evidence
                .interval_at_crossing
                .map_or(String::new(), |(lo, hi)| format!(
                    ", interval at crossing [{lo:.3}, {hi:.3}]"
                )),
        );
    }
}

fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        });
    target.join("capacity_report")
}

fn co2_samples() -> Result<Vec<Sample>, Box<dyn std::error::Error>> {
    let csv = include_str!("data/mauna_loa_co2_weekly.csv");
    let mut out = Vec::new();
    for line in csv.lines().filter(|l| !l.starts_with('#')).skip(1) {
        let (t, v) = line.split_once(',').ok_or("malformed CSV line")?;
        out.push(Sample::new(Timestamp::from_millis(t.parse()?), v.parse()?));
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    if std::env::args().any(|a| a == "--quickstart-demo") {
        return capacity_demo::demo_capacity().await;
    }
    let dir = out_dir();
    std::fs::create_dir_all(&dir)?;

    section("synthetic: 30 days of minute samples, eight metrics");
    let mut planner = Planner::sysmanage(PlannerConfig::default())?;
    let mut rng = SplitMix64::new(0x5EED_CAFE);
    let t0 = Timestamp::from_secs(START);
    let started = std::time::Instant::now();
    for m in 0..MINUTES {
        let at = t0 + Duration::from_secs(60 * m);
        let values = synthetic(m, &mut rng);
        planner.record_snapshot(&CapacitySnapshot::new(at, values))?;
    }
    let now = t0 + Duration::from_secs(60 * (MINUTES - 1));
    let report = planner.report(now);
    let elapsed = started.elapsed();
    print_report(&report);
    println!(
        "({} samples ingested and forecast in {:.0} ms)",
        8 * MINUTES,
        elapsed.as_secs_f64() * 1e3
    );
    let html = dir.join("capacity_report.html");
    std::fs::write(
        &html,
        report.to_html("Capacity report: synthetic fleet, 30 days of minute samples"),
    )?;

    section("real: Mauna Loa weekly CO2 (statsmodels dataset, public domain)");
    let co2 = co2_samples()?;
    let mut cfg = PlannerConfig::default();
    cfg.retention = Duration::from_secs(15 * 365 * 86_400);
    cfg.hygiene.step = Duration::from_secs(7 * 86_400);
    cfg.season = Duration::from_secs(52 * 7 * 86_400);
    cfg.horizon = Duration::from_secs(3 * 365 * 86_400);
    cfg.trend_window = Duration::from_secs(2 * 365 * 86_400);
    cfg.high_within = Duration::from_secs(30 * 86_400);
    cfg.medium_within = Duration::from_secs(180 * 86_400);
    let mut selection = SelectionConfig::default();
    selection.test_window = Duration::from_secs(52 * 7 * 86_400);
    cfg.selection = selection;
    let mut real = Planner::new(cfg)?;
    real.register(
        MetricSpec::custom("co2_ppm", 375.0, Direction::Ceiling)?
            .with_bounds(Bounds::NON_NEGATIVE)
            .with_action("Budget for the next threshold"),
    )?;
    real.record_all("co2_ppm", &co2)?;
    let real_now = co2.last().ok_or("empty CO2 data")?.at;
    let real_report = real.report(real_now);
    print_report(&real_report);
    let co2_html = dir.join("co2_report.html");
    std::fs::write(
        &co2_html,
        real_report.to_html("Capacity report: Mauna Loa weekly CO2"),
    )?;
    println!(
        "HTML reports written to {} and {}",
        html.display(),
        co2_html.display()
    );

    let metrics = report.forecasts.len() + real_report.forecasts.len();
    let recommendations = report.recommendations.len() + real_report.recommendations.len();
    let earliest = report
        .summary
        .earliest_limit_hours
        .into_iter()
        .chain(real_report.summary.earliest_limit_hours)
        .reduce(f64::min)
        .map_or_else(|| "none".to_owned(), |h| format!("{h:.1}"));
    println!(
        "summary: metrics={metrics} recommendations={recommendations} earliest_limit_hours={earliest} html={}",
        html.display()
    );
    Ok(())
}
