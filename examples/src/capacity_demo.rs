//! A short capacity report on embedded data, for the quickstart.

use std::time::Duration;

use sysmanage_capacity::{CapacityPlanner, CapacitySnapshot, Planner, PlannerConfig};
use sysmanage_core::{LoadForecast, Timestamp};

/// Two weeks of hourly SysManage metrics (a busy afternoon on a slowly
/// growing level, and a disk that fills steadily), then the capacity report
/// and one forecast served through core's `LoadForecast`.
///
/// # Errors
/// Only if the planner rejects the embedded data, which it does not.
pub async fn demo_capacity() -> Result<(), Box<dyn std::error::Error>> {
    let mut planner = Planner::sysmanage(PlannerConfig::default())?;
    let t0 = Timestamp::from_secs(1_790_812_800); // 2026-10-01 00:00 UTC
    let hours = 24 * 14 + 9; // up to 09:00 on day 15
    for h in 0..hours {
        let day = h as f64 / 24.0;
        let busy = (-((h % 24) as f64 - 14.0).powi(2) / 8.0).exp();
        let wiggle = ((h as f64) * 0.618_033_988_749_895).fract() - 0.5;
        let cpu = 0.26 + 0.01 * day + 0.40 * busy + 0.01 * wiggle;
        let snapshot = CapacitySnapshot::new(
            t0 + Duration::from_secs(3600 * h),
            [
                cpu,
                0.55 + 0.002 * day + 0.05 * busy, // memory
                0.70 + 0.01 * day,                // disk fills 1 %/day
                4.0e7 * (0.5 + busy),             // network bytes/s
                600.0 * (0.4 + busy),             // requests/s
                0.15 + 0.3 * cpu * cpu,           // response time, s
                1500.0 * (0.4 + busy),            // connections
                (20.0 + 10.0 * wiggle).max(0.0),  // queue
            ],
        );
        planner.record_snapshot(&snapshot)?;
    }
    let now = t0 + Duration::from_secs(3600 * (hours - 1));
    let report = planner.report(now);
    println!(
        "capacity health: {}",
        format!("{:?}", report.capacity_health).to_lowercase()
    );
    println!(
        "  {:<20} {:>12}  {:<14} {:<11} time to limit",
        "metric", "now", "model", "trend"
    );
    for f in &report.forecasts {
        let ttl = f
            .time_to_limit
            .hours()
            .map_or_else(|| "beyond the horizon".to_owned(), |h| format!("{h:.1} h"));
        let now = f
            .unit
            .format(f.current_value, f.current_value.abs() / 100.0);
        println!(
            "  {:<20} {:>12}  {:<14} {:<11} {ttl}",
            f.metric,
            now,
            f.selection.model.to_string(),
            format!("{:?}", f.trend).to_lowercase()
        );
    }
    for r in &report.recommendations {
        println!(
            "  -> {} urgency: {} reaches its limit in {:.1} h ({})",
            format!("{:?}", r.urgency).to_lowercase(),
            r.metric,
            r.time_to_limit_hours,
            r.recommended_action
        );
    }
    let next_hour = planner.forecast("cpu_utilization", now, Duration::from_secs(3600))?;
    println!(
        "  cpu in 1 h: {:.1} % (interval {:.1} – {:.1} %)",
        next_hour.point * 100.0,
        next_hour.lower * 100.0,
        next_hour.upper * 100.0
    );
    Ok(())
}
