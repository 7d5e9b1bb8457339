//! What a capacity report records through the `metrics` facade.

use std::time::Duration;

use sysmanage_capacity::telemetry::{self, METRICS};
use sysmanage_capacity::{CapacityPlanner, Planner, PlannerConfig, TimeToLimit};
use sysmanage_core::Timestamp;
use sysmanage_test::metrics::Capture;

#[test]
fn a_report_records_forecast_and_time_to_limit_per_metric() {
    let capture = Capture::new();
    let report = capture.run(|| {
        let mut planner = Planner::sysmanage(PlannerConfig::default()).unwrap();
        let t0 = Timestamp::from_secs(1_700_006_400);
        for h in 0_u32..24 * 14 + 10 {
            let hour = f64::from(h % 24);
            let peak = (-(hour - 14.0).powi(2) / 8.0).exp();
            let cpu = 0.26 + 0.01 * f64::from(h) / 24.0 + 0.40 * peak;
            planner
                .record(
                    "cpu_utilization",
                    t0 + Duration::from_secs(3600 * u64::from(h)),
                    cpu,
                )
                .unwrap();
        }
        planner.report(t0 + Duration::from_secs(3600 * (24 * 14 + 9)))
    });
    let cpu = &report.forecasts[0];
    let metric = [("metric", "cpu_utilization")];
    assert_eq!(
        capture.value(telemetry::CURRENT, &metric),
        Some(cpu.current_value)
    );
    assert_eq!(capture.value(telemetry::LIMIT, &metric), cpu.limit);
    assert_eq!(
        capture.value(telemetry::FORECAST, &metric),
        cpu.forecasts.last().map(|f| f.point)
    );
    let secs = |t: &TimeToLimit| match t {
        TimeToLimit::Within { hours, .. } => hours * 3600.0,
        TimeToLimit::AlreadyOver => 0.0,
        _ => f64::INFINITY,
    };
    assert_eq!(
        capture.value(
            telemetry::TIME_TO_LIMIT,
            &[("metric", "cpu_utilization"), ("estimate", "mean")]
        ),
        Some(secs(&cpu.time_to_limit))
    );
    assert_eq!(
        capture.value(
            telemetry::TIME_TO_LIMIT,
            &[("metric", "cpu_utilization"), ("estimate", "bound")]
        ),
        Some(secs(&cpu.time_to_limit_bound))
    );
    assert!(matches!(
        cpu.time_to_limit_bound,
        TimeToLimit::Within { .. }
    ));
    assert!(capture.value(telemetry::HEALTH, &[]).unwrap() >= 1.0);
    #[allow(clippy::cast_precision_loss)]
    let skipped = report.skipped.len() as f64;
    assert_eq!(capture.value(telemetry::SKIPPED, &[]), Some(skipped));
    capture.assert_documented(METRICS);
}
