//! Behaviour of the planner: edge cases, time to limit, reports, persistence
//! and properties.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use sysmanage_capacity::model::sysmanage_poly2;
use sysmanage_capacity::{
    CapacityHealth, CapacityPlanner, CapacitySnapshot, Direction, LimitBasis, MetricKind,
    MetricSpec, Planner, PlannerConfig, TimeToLimit, TrendLabel, Urgency,
};
use sysmanage_core::{LoadForecast, Sample, Timestamp};

/// A UTC midnight.
const T0: i64 = 1_764_028_800;

fn at_hour(h: f64) -> Timestamp {
    Timestamp::from_millis(T0 * 1000 + (h * 3_600_000.0).round() as i64)
}

fn planner() -> Planner {
    Planner::sysmanage(PlannerConfig::default()).unwrap()
}

/// Deterministic noise in [-0.5, 0.5).
fn noise(i: u64) -> f64 {
    (i as f64 * 0.6180339887498949).fract() - 0.5
}

/// Busy-hour shape: 1 at 14:00, falling off over a few hours.
fn peak(hour_of_day: f64) -> f64 {
    (-(hour_of_day - 14.0).powi(2) / 8.0).exp()
}

#[test]
fn constant_series_is_stable_and_healthy() {
    let mut p = planner();
    for h in 0..24 * 7 {
        p.record("cpu_utilization", at_hour(h as f64), 0.42)
            .unwrap();
    }
    let now = at_hour(24.0 * 7.0 - 1.0);
    let f = p.analyze("cpu_utilization", now).unwrap();
    assert_eq!(f.trend, TrendLabel::Stable);
    assert!(matches!(
        f.time_to_limit,
        TimeToLimit::NotWithinHorizon { .. }
    ));
    for fc in &f.forecasts {
        assert!((fc.point - 0.42).abs() < 1e-9, "{fc:?}");
    }
    let r = p.report(now);
    assert_eq!(r.capacity_health, CapacityHealth::Healthy);
    assert!(r.recommendations.is_empty());
    // The seven metrics without data are listed as skipped, with a typed reason.
    assert_eq!(r.skipped.len(), 7);
    assert!(r.skipped.iter().all(|s| s.label == "insufficient_data"));
}

#[test]
fn two_samples_are_insufficient_data() {
    let mut p = planner();
    p.record("memory_utilization", at_hour(0.0), 0.5).unwrap();
    p.record("memory_utilization", at_hour(1.0), 0.6).unwrap();
    let e = p.analyze("memory_utilization", at_hour(1.0)).unwrap_err();
    assert_eq!(e.label(), "insufficient_data");
    assert_eq!(
        e.to_string(),
        "insufficient data for capacity forecast: need at least 3, have 2"
    );
    let e = p
        .forecast("memory_utilization", at_hour(1.0), Duration::from_secs(60))
        .unwrap_err();
    assert_eq!(e.label(), "insufficient_data");
}

#[test]
fn bad_input_is_a_typed_error() {
    let mut p = planner();
    let e = p
        .record("cpu_utilization", at_hour(0.0), f64::NAN)
        .unwrap_err();
    assert_eq!(e.label(), "non_finite");
    let e = p.record("gpu", at_hour(0.0), 0.5).unwrap_err();
    assert_eq!(e.to_string(), "unknown metric \"gpu\"");
    let mut values = [0.5; 8];
    values[5] = f64::INFINITY;
    let e = p
        .record_snapshot(&CapacitySnapshot::new(at_hour(0.0), values))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "response_time must be a finite number, got inf"
    );
    assert!(p.status().iter().all(|s| s.samples == 0), "nothing stored");
    assert_eq!(
        p.register(MetricSpec::builtin(MetricKind::QueueLength))
            .unwrap_err()
            .label(),
        "duplicate"
    );
}

#[test]
fn duplicate_timestamps_are_averaged() {
    let mut a = planner();
    let mut b = planner();
    for h in 0..48 {
        let v = 0.3 + 0.001 * h as f64;
        a.record("disk_utilization", at_hour(h as f64), v - 0.05)
            .unwrap();
        a.record("disk_utilization", at_hour(h as f64), v + 0.05)
            .unwrap();
        b.record("disk_utilization", at_hour(h as f64), v).unwrap();
    }
    let now = at_hour(47.0);
    let fa = a.analyze("disk_utilization", now).unwrap();
    let fb = b.analyze("disk_utilization", now).unwrap();
    assert_eq!(fa.data_quality.duplicates_merged, 48);
    assert!((fa.current_value - fb.current_value).abs() < 1e-12);
    assert!((fa.forecasts[10].point - fb.forecasts[10].point).abs() < 1e-9);
}

/// Noise-free CPU at hour `h`: a busy afternoon on a level growing 1 %/day.
fn cpu_truth(h: f64) -> f64 {
    0.26 + 0.01 * h / 24.0 + 0.40 * peak(h % 24.0)
}

/// Hourly CPU with quiet nights and busy afternoons.
fn daily_peaks(hours: usize) -> Vec<Sample> {
    (0..hours)
        .map(|h| {
            let v = cpu_truth(h as f64) + 0.01 * noise(h as u64);
            Sample::new(at_hour(h as f64), v)
        })
        .collect()
}

#[test]
fn daily_peaks_drive_time_to_limit() {
    let mut p = planner();
    // History ends at 09:00 on day 15.
    let samples = daily_peaks(24 * 14 + 10);
    p.record_all("cpu_utilization", &samples).unwrap();
    let now = samples.last().unwrap().at;
    let f = p.analyze("cpu_utilization", now).unwrap();
    // No sample so far reaches the limit; the noise-free curve first does
    // this afternoon.
    assert!(samples.iter().all(|s| s.value < 0.8));
    let last_h = (24 * 14 + 9) as f64;
    let truth_hours = (0..1000)
        .map(|k| k as f64 / 100.0)
        .find(|dh| cpu_truth(last_h + dh) >= 0.8)
        .unwrap();
    let hours = f.time_to_limit.hours().unwrap();
    assert!(
        (hours - truth_hours).abs() < 1.0,
        "model {} says {hours:.2} h, truth {truth_hours:.2} h",
        f.selection.model
    );
    assert!(matches!(
        f.selection.model,
        sysmanage_capacity::ModelKind::Fourier | sysmanage_capacity::ModelKind::HoltWinters
    ));
    // SysManage's quadratic misses it by days.
    let quad = sysmanage_poly2(&samples).unwrap();
    let quad_hours = (1..=168).find(|h| quad.predict(now + Duration::from_secs(3600 * h)) >= 0.8);
    assert!(
        quad_hours.is_none_or(|h| h > 48),
        "quadratic: {quad_hours:?}"
    );
    // The report recommends with high urgency and evidence.
    let r = p.report(now);
    let rec = &r.recommendations[0];
    assert_eq!(rec.metric, "cpu_utilization");
    assert_eq!(rec.urgency, Urgency::High);
    assert_eq!(rec.basis, LimitBasis::Point);
    assert_eq!(rec.recommended_action, "Scale out application servers");
    let (lo, hi) = rec.evidence.interval_at_crossing.unwrap();
    // The interval of the forecast step nearest the crossing straddles the limit (± one step's change).
    assert!(lo < hi && lo < 0.82 && hi > 0.8, "({lo}, {hi})");
    assert_eq!(r.capacity_health, CapacityHealth::Critical);
    assert_eq!(r.summary.earliest_limit_hours, Some(hours));
}

#[test]
fn a_single_spike_does_not_recommend() {
    // Hourly: one absurd hour in the middle of two calm weeks.
    let mut p = planner();
    let mut samples: Vec<Sample> = (0..24 * 14)
        .map(|h| {
            Sample::new(
                at_hour(h as f64),
                0.35 + 0.1 * peak((h % 24) as f64) + 0.01 * noise(h),
            )
        })
        .collect();
    samples[24 * 10 + 3].value = 0.99;
    p.record_all("cpu_utilization", &samples).unwrap();
    let now = samples.last().unwrap().at;
    let r = p.report(now);
    assert!(r.recommendations.is_empty(), "{:#?}", r.recommendations);
    assert_eq!(r.capacity_health, CapacityHealth::Healthy);
    assert_eq!(r.forecasts[0].data_quality.outliers_damped, 1);

    // Minutes: one spike in the last hour.
    let mut p = planner();
    for m in 0..60 * 24 * 7u64 {
        let h = m as f64 / 60.0;
        let v = if m == 60 * 24 * 7 - 20 {
            0.98
        } else {
            0.3 + 0.1 * peak(h % 24.0) + 0.02 * noise(m)
        };
        p.record("cpu_utilization", at_hour(h), v).unwrap();
    }
    let r = p.report(at_hour(24.0 * 7.0));
    assert!(r.recommendations.is_empty(), "{:#?}", r.recommendations);
}

#[test]
fn forecasts_are_clamped_to_physical_bounds() {
    let mut p = planner();
    for h in 0..72 {
        // Utilisation rising 2 %/h: unclamped it would pass 1.0 within the horizon.
        p.record(
            "memory_utilization",
            at_hour(h as f64),
            0.2 + 0.02 * h as f64 / 3.0,
        )
        .unwrap();
        // Queue draining: unclamped it would go negative.
        p.record("queue_length", at_hour(h as f64), 500.0 - 5.0 * h as f64)
            .unwrap();
    }
    let now = at_hour(71.0);
    let mem = p.analyze("memory_utilization", now).unwrap();
    assert!(
        mem.forecasts
            .iter()
            .all(|f| f.upper <= 1.0 && f.lower >= 0.0)
    );
    assert!(mem.clamped_values > 0);
    assert!(matches!(mem.time_to_limit, TimeToLimit::Within { .. }));
    let q = p.analyze("queue_length", now).unwrap();
    assert!(q.forecasts.iter().all(|f| f.lower >= 0.0 && f.point >= 0.0));
    assert_eq!(q.trend, TrendLabel::Decreasing);
    let f = p
        .forecast("queue_length", now, Duration::from_secs(86_400 * 6))
        .unwrap();
    assert_eq!(f.point, 0.0);
}

#[test]
fn already_over_is_distinct_from_not_within_horizon() {
    let mut p = planner();
    for h in 0..48 {
        p.record("response_time", at_hour(h as f64), 2.5 + 0.001 * noise(h))
            .unwrap();
        p.record("disk_utilization", at_hour(h as f64), 0.5)
            .unwrap();
    }
    let now = at_hour(47.0);
    let rt = p.analyze("response_time", now).unwrap();
    assert_eq!(rt.time_to_limit, TimeToLimit::AlreadyOver);
    assert_eq!(rt.time_to_limit.hours(), Some(0.0));
    let disk = p.analyze("disk_utilization", now).unwrap();
    assert_eq!(
        disk.time_to_limit,
        TimeToLimit::NotWithinHorizon {
            horizon_hours: 168.0
        }
    );
    assert_eq!(disk.time_to_limit.hours(), None);
    let r = p.report(now);
    assert_eq!(r.recommendations.len(), 1);
    assert_eq!(r.recommendations[0].basis, LimitBasis::Current);
    assert_eq!(r.recommendations[0].urgency, Urgency::High);
    // network_throughput has no limit.
    for h in 0..48 {
        p.record("network_throughput", at_hour(h as f64), 1e6)
            .unwrap();
    }
    let net = p.analyze("network_throughput", now).unwrap();
    assert_eq!(net.time_to_limit, TimeToLimit::NoLimit);
}

#[test]
fn forecasts_far_past_the_data_are_refused_not_unbounded() {
    let mut p = planner();
    for h in 0..48 {
        p.record("disk_utilization", at_hour(h as f64), 0.5)
            .unwrap();
    }
    // Ten years after the last sample: 87 600 hourly steps > 50 000.
    let e = p
        .analyze("disk_utilization", at_hour(24.0 * 3650.0))
        .unwrap_err();
    assert_eq!(e.label(), "invalid_config");
    assert!(e.to_string().contains("max_forecast_steps"), "{e}");
}

#[test]
fn floor_metrics_use_the_lower_bound() {
    let mut p = Planner::new(PlannerConfig::default()).unwrap();
    p.register(MetricSpec::custom("free_gb", 50.0, Direction::Floor).unwrap())
        .unwrap();
    for h in 0..24 * 5 {
        // Losing 0.7 GB/h from 200 GB, with some noise.
        p.record(
            "free_gb",
            at_hour(h as f64),
            200.0 - 0.7 * h as f64 + 3.0 * noise(h),
        )
        .unwrap();
    }
    let now = at_hour(24.0 * 5.0 - 1.0);
    let f = p.analyze("free_gb", now).unwrap();
    let point = f.time_to_limit.hours().unwrap();
    let bound = f.time_to_limit_bound.hours().unwrap();
    // 116.7 GB left at 0.7 GB/h: 50 GB in about 95 h; the lower bound gets there first.
    assert!((point - 95.3).abs() < 3.0, "{point}");
    assert!(bound < point, "bound {bound} vs point {point}");
    assert_eq!(f.trend, TrendLabel::Decreasing);
}

#[test]
fn retention_is_bounded() {
    let mut p = planner();
    for h in 0..24 * 40 {
        p.record("cpu_utilization", at_hour(h as f64), 0.5).unwrap();
    }
    let s = p
        .status()
        .into_iter()
        .find(|s| s.metric == "cpu_utilization")
        .unwrap();
    assert_eq!(s.samples, 24 * 30 + 1);
    let mut cfg = PlannerConfig::default();
    cfg.max_samples_per_metric = std::num::NonZeroUsize::new(100).unwrap();
    let mut p = Planner::sysmanage(cfg).unwrap();
    for h in 0..1000 {
        p.record("cpu_utilization", at_hour(h as f64), 0.5).unwrap();
    }
    let cpu = p
        .status()
        .into_iter()
        .find(|s| s.metric == "cpu_utilization")
        .unwrap();
    assert_eq!(cpu.samples, 100);
}

#[test]
fn trend_label_has_hysteresis_across_reports() {
    let mut p = planner();
    // Rising 0.8 % of the limit per day: enters "increasing" (threshold 0.5 %).
    for h in 0..24 * 7 {
        p.record(
            "cpu_utilization",
            at_hour(h as f64),
            0.3 + 0.0064 * h as f64 / 24.0,
        )
        .unwrap();
    }
    let r = p.report(at_hour(24.0 * 7.0));
    assert_eq!(r.forecasts[0].trend, TrendLabel::Increasing);
    // The next week rises 0.35 %/day: below the entry threshold but above the
    // exit one (0.25 %), so the label holds; a fresh planner says "stable".
    let mut fresh = planner();
    for h in 24 * 7..24 * 14 {
        let v = 0.3 + 0.0064 * 7.0 + 0.0028 * (h - 24 * 7) as f64 / 24.0;
        p.record("cpu_utilization", at_hour(h as f64), v).unwrap();
        fresh
            .record("cpu_utilization", at_hour(h as f64), v)
            .unwrap();
    }
    let now = at_hour(24.0 * 14.0 - 1.0);
    assert_eq!(p.report(now).forecasts[0].trend, TrendLabel::Increasing);
    assert_eq!(fresh.report(now).forecasts[0].trend, TrendLabel::Stable);
}

#[test]
fn state_persists_and_restores() {
    let mut p = planner();
    p.record_all("cpu_utilization", &daily_peaks(24 * 10))
        .unwrap();
    let now = at_hour(24.0 * 10.0 - 1.0);
    let before = p.report(now);
    let json = serde_json::to_string(&p).unwrap();
    let mut restored: Planner = serde_json::from_str(&json).unwrap();
    let after = restored.report(now);
    // serde_json's default float parsing may differ in the last bit, so
    // compare the decisions and the numbers with a tolerance.
    assert_eq!(before.capacity_health, after.capacity_health);
    assert_eq!(before.recommendations.len(), after.recommendations.len());
    let (fb, fa) = (&before.forecasts[0], &after.forecasts[0]);
    assert_eq!(fb.selection.model, fa.selection.model);
    assert_eq!(fb.trend, fa.trend);
    assert_eq!(fb.data_quality, fa.data_quality);
    let (hb, ha) = (fb.time_to_limit.hours(), fa.time_to_limit.hours());
    assert_eq!(hb.is_some(), ha.is_some());
    assert!((hb.unwrap_or(0.0) - ha.unwrap_or(0.0)).abs() < 1e-6);
    for (x, y) in fb.forecasts.iter().zip(&fa.forecasts) {
        assert_eq!(x.at, y.at);
        assert!((x.point - y.point).abs() < 1e-9 && (x.upper - y.upper).abs() < 1e-9);
    }
    // Reports themselves round-trip too.
    let back: sysmanage_capacity::CapacityReport =
        serde_json::from_str(&serde_json::to_string(&before).unwrap()).unwrap();
    assert_eq!(back.summary, before.summary);
}

#[test]
fn planner_serves_load_forecast_through_core() {
    let mut p = planner();
    for h in 0..24 * 3 {
        p.record("request_rate", at_hour(h as f64), 100.0 + 2.0 * h as f64)
            .unwrap();
    }
    let lf: Arc<dyn LoadForecast> = Arc::new(p);
    let now = at_hour(71.0);
    let f = lf
        .forecast("request_rate", now, Duration::from_secs(3600 * 10))
        .unwrap();
    assert!((f.point - (100.0 + 2.0 * 81.0)).abs() < 1e-6, "{f:?}");
    let peak = lf
        .forecast_max(
            "request_rate",
            now,
            Duration::from_secs(3600 * 4),
            Duration::from_secs(900),
        )
        .unwrap();
    assert_eq!(peak.at, now + Duration::from_secs(3600 * 4));
    assert!(lf.recent_error("request_rate").unwrap() < 1e-9);
    assert_eq!(
        lf.forecast("gpu", now, Duration::from_secs(1))
            .unwrap_err()
            .label(),
        "unknown"
    );
}

#[test]
fn short_histories_use_a_finer_grid() {
    // SysManage's own minimum: ten samples a minute apart.
    let mut p = planner();
    for m in 0..10 {
        p.record(
            "queue_length",
            at_hour(m as f64 / 60.0),
            100.0 + 50.0 * m as f64,
        )
        .unwrap();
    }
    let f = p.analyze("queue_length", at_hour(9.0 / 60.0)).unwrap();
    // A grid as fine as the samples, none of it interpolated.
    assert_eq!(f.step_secs, 60.0);
    assert_eq!(f.data_quality.gaps_filled, 0);
    // 550 now, +3000/h: the 1000 limit is about 9 minutes away.
    let hours = f.time_to_limit.hours().unwrap();
    assert!((hours * 60.0 - 9.0).abs() < 1.0, "{hours}");

    // Three samples a second apart cannot be forecast a week ahead: that is
    // too little data, not a bad setting.
    let mut p = planner();
    for s in 0..3 {
        p.record("queue_length", at_hour(s as f64 / 3600.0), 10.0)
            .unwrap();
    }
    let e = p
        .analyze("queue_length", at_hour(2.0 / 3600.0))
        .unwrap_err();
    assert_eq!(e.label(), "insufficient_data", "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn hygiene_ignores_order_and_averages_duplicates(
        keys in proptest::collection::vec(any::<u64>(), 24 * 3 + 20),
        dups in proptest::collection::vec(0usize..24 * 3, 20),
    ) {
        use sysmanage_capacity::hygiene::{HygieneConfig, prepare};
        // Values on a 1/8 grid so sums are exact in any order.
        let mut samples: Vec<Sample> = (0..24 * 3u64)
            .map(|h| Sample::new(at_hour(h as f64), 0.25 + (h % 5) as f64 / 8.0))
            .collect();
        // Duplicates: extra samples at existing timestamps.
        for (k, &i) in dups.iter().enumerate() {
            samples.push(Sample::new(samples[i].at, (k % 4) as f64 / 8.0));
        }
        let mut shuffled: Vec<(u64, Sample)> = keys.into_iter().zip(samples.iter().copied()).collect();
        shuffled.sort_by_key(|(k, _)| *k);
        let shuffled: Vec<Sample> = shuffled.into_iter().map(|(_, s)| s).collect();
        let mut sorted = samples.clone();
        sorted.sort_by_key(|s| s.at);
        let cfg = HygieneConfig::default();
        let a = prepare(&sorted, &cfg, Some(Duration::from_secs(86_400))).unwrap();
        let b = prepare(&shuffled, &cfg, Some(Duration::from_secs(86_400))).unwrap();
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.quality.duplicates_merged, dups.len());
        prop_assert_eq!(a.mean.len(), 24 * 3);
    }

    #[test]
    fn a_linear_series_forecasts_linearly(
        intercept in -100.0f64..100.0,
        slope in -5.0f64..5.0,
        n in 30usize..200,
        ahead in 1u64..100,
    ) {
        let mut p = Planner::new(PlannerConfig::default()).unwrap();
        let spec = MetricSpec::custom("x", 1e9, Direction::Ceiling).unwrap().with_bounds(sysmanage_capacity::Bounds::UNBOUNDED);
        p.register(spec).unwrap();
        for h in 0..n {
            p.record("x", at_hour(h as f64), intercept + slope * h as f64).unwrap();
        }
        let now = at_hour((n - 1) as f64);
        let f = p.forecast("x", now, Duration::from_secs(3600 * ahead)).unwrap();
        let truth = intercept + slope * (n - 1 + ahead as usize) as f64;
        prop_assert!((f.point - truth).abs() <= 1e-6 * (1.0 + truth.abs()), "{} vs {truth}", f.point);
    }

    #[test]
    fn input_order_does_not_matter(keys in proptest::collection::vec(any::<u64>(), 24 * 4)) {
        let samples = daily_peaks(24 * 4);
        let mut shuffled: Vec<(u64, Sample)> = keys.into_iter().zip(samples.iter().copied()).collect();
        shuffled.sort_by_key(|(k, _)| *k);
        let mut a = planner();
        let mut b = planner();
        a.record_all("cpu_utilization", &samples).unwrap();
        for (_, s) in shuffled {
            b.record("cpu_utilization", s.at, s.value).unwrap();
        }
        let now = at_hour(24.0 * 4.0 - 1.0);
        prop_assert_eq!(
            serde_json::to_value(a.report(now)).unwrap(),
            serde_json::to_value(b.report(now)).unwrap()
        );
    }
}

#[test]
fn planner_is_object_safe_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Planner>();
    assert_send_sync::<sysmanage_capacity::CapacityReport>();
    let mut boxed: Box<dyn CapacityPlanner> = Box::new(planner());
    boxed.record("cpu_utilization", at_hour(0.0), 0.5).unwrap();
    assert_eq!(boxed.report(at_hour(0.0)).skipped.len(), 8);
    // Debug summarises instead of dumping every sample.
    let p = planner();
    assert!(format!("{p:?}").len() < 4000);
}

/// Two calm weeks of minute CPU samples; `last(m)` overrides the final minutes.
fn calm_minutes(days: u64, last: impl Fn(u64) -> Option<f64>) -> Planner {
    let mut p = planner();
    let total = 60 * 24 * days;
    for m in 0..total {
        let h = m as f64 / 60.0;
        let v = last(total - m).unwrap_or(0.3 + 0.1 * peak(h % 24.0) + 0.02 * noise(m));
        p.record("cpu_utilization", at_hour(h), v).unwrap();
    }
    p
}

#[test]
fn a_spike_in_the_last_hourly_bucket_does_not_recommend() {
    // Hourly samples: the very last hour is absurd, everything before calm.
    let mut p = planner();
    let n = 24 * 14;
    for h in 0..n {
        let v = 0.35 + 0.1 * peak((h % 24) as f64) + 0.01 * noise(h as u64);
        p.record("cpu_utilization", at_hour(h as f64), v).unwrap();
    }
    // One minute at 0.99 inside the newest hour: diluted in the bucket mean,
    // and the raw newest hour is not over the limit either.
    p.record("cpu_utilization", at_hour(n as f64 - 1.0 + 0.5), 0.99)
        .unwrap();
    p.record("cpu_utilization", at_hour(n as f64 - 1.0 + 0.9), 0.40)
        .unwrap();
    let now = at_hour(n as f64 - 1.0 + 0.9);
    let r = p.report(now);
    assert!(r.recommendations.is_empty(), "{:#?}", r.recommendations);
    assert_eq!(r.capacity_health, CapacityHealth::Healthy);
    let f = &r.forecasts[0];
    assert!(f.current_max >= 0.99 && f.current_value < 0.8, "{f:?}");
}

#[test]
fn a_sustained_overload_in_the_last_hour_is_already_over() {
    // Two calm weeks of minutes, then the final hour genuinely at 0.95: damping
    // must not turn that into a healthy report.
    let mut p = calm_minutes(14, |from_end| (from_end <= 60).then_some(0.95));
    let now = at_hour(24.0 * 14.0);
    let f = p.analyze("cpu_utilization", now).unwrap();
    assert_eq!(f.time_to_limit, TimeToLimit::AlreadyOver, "{f:#?}");
    assert!((f.current_value - 0.95).abs() < 1e-9);
    let r = p.report(now);
    assert_eq!(r.capacity_health, CapacityHealth::Critical);
    assert_eq!(r.recommendations[0].urgency, Urgency::High);
    assert_eq!(r.recommendations[0].basis, LimitBasis::Current);

    // Hourly samples, the last one to four hours at 0.95: always already over,
    // and no forecast or history point above what was measured.
    for k in 1..=4u64 {
        let mut p = planner();
        let n = 24 * 14u64;
        for h in 0..n {
            let v = if h >= n - k {
                0.95
            } else {
                0.35 + 0.1 * peak((h % 24) as f64) + 0.01 * noise(h)
            };
            p.record("cpu_utilization", at_hour(h as f64), v).unwrap();
        }
        let f = p
            .analyze("cpu_utilization", at_hour((n - 1) as f64))
            .unwrap();
        assert_eq!(f.time_to_limit, TimeToLimit::AlreadyOver, "k={k}");
        assert!(f.forecasts.iter().all(|x| x.upper <= 1.0), "k={k}");
    }
}

#[test]
fn a_far_future_sample_is_rejected_and_a_metric_can_be_cleared() {
    let count = |p: &Planner| {
        p.status()
            .into_iter()
            .find(|s| s.metric == "cpu_utilization")
            .unwrap()
            .samples
    };
    let mut p = planner();
    for h in 0..48 {
        p.record("cpu_utilization", at_hour(h as f64), 0.4).unwrap();
    }
    // Year 2100: rejected with a typed error, history intact.
    let e = p
        .record("cpu_utilization", Timestamp::from_secs(4_102_444_800), 0.4)
        .unwrap_err();
    assert_eq!(e.label(), "invalid_config");
    assert!(e.to_string().contains("clear_metric"), "{e}");
    assert_eq!(count(&p), 48);
    p.record("cpu_utilization", at_hour(48.0), 0.4).unwrap();
    assert_eq!(count(&p), 49);
    // A snapshot with a far-future time stores nothing.
    let snap = CapacitySnapshot::new(Timestamp::from_secs(4_102_444_800), [0.1; 8]);
    assert!(p.record_snapshot(&snap).is_err());
    assert!(p.status().iter().all(|s| s.samples <= 49));
    // Clearing restarts the metric at any time.
    p.clear_metric("cpu_utilization").unwrap();
    assert_eq!(count(&p), 0);
    p.record("cpu_utilization", Timestamp::from_secs(4_102_444_800), 0.4)
        .unwrap();
    assert!(p.clear_metric("nope").is_err());
}

#[test]
fn limits_outside_the_physical_bounds_are_rejected() {
    let mut p = Planner::new(PlannerConfig::default()).unwrap();
    let cpu = MetricSpec::builtin(MetricKind::CpuUtilization);
    assert!(cpu.clone().with_limit(0.0).is_err());
    assert!(cpu.clone().with_limit(1.5).is_err());
    let mut spec = cpu;
    spec.limit = Some(-1.0);
    assert_eq!(p.register(spec).unwrap_err().label(), "invalid_config");
    assert!(MetricSpec::custom("queue", 0.0, Direction::Ceiling).is_err());
    assert!(MetricSpec::custom("free", -5.0, Direction::Floor).is_err());
}

#[test]
fn corrupt_persisted_state_is_an_error_not_a_panic() {
    let mut p = planner();
    for h in 0..72 {
        p.record("cpu_utilization", at_hour(h as f64), 0.5).unwrap();
    }
    let good = serde_json::to_value(&p).unwrap();
    // Invalid settings (max_report_points = 0 would divide by zero).
    let mut bad = good.clone();
    bad["config"]["max_report_points"] = 0.into();
    assert!(serde_json::from_value::<Planner>(bad).is_err());
    let mut bad = good.clone();
    bad["config"]["selection"]["folds"] = serde_json::json!(1u64 << 63);
    assert!(serde_json::from_value::<Planner>(bad).is_err());
    // A map key that is not its spec's name.
    let mut bad = good.clone();
    let cpu = bad["metrics"]["cpu_utilization"].clone();
    bad["metrics"]
        .as_object_mut()
        .unwrap()
        .insert("cpu".into(), cpu);
    assert!(serde_json::from_value::<Planner>(bad).is_err());
    // A spec with an impossible limit.
    let mut bad = good.clone();
    bad["metrics"]["cpu_utilization"]["spec"]["limit"] = serde_json::json!(-1.0);
    assert!(serde_json::from_value::<Planner>(bad).is_err());
    // The good state still restores and reports.
    let mut q: Planner = serde_json::from_value(good).unwrap();
    assert_eq!(q.report(at_hour(71.0)).forecasts.len(), 1);
}

#[test]
fn a_daily_step_with_a_daily_season_does_not_panic() {
    let mut cfg = PlannerConfig::default();
    cfg.hygiene.step = Duration::from_secs(86_400);
    cfg.horizon = Duration::from_secs(30 * 86_400);
    cfg.trend_window = Duration::from_secs(60 * 86_400);
    let mut p = Planner::sysmanage(cfg).unwrap();
    // Retention keeps the last 30 days: 0.50 → 0.80 at 0.01 a day.
    for d in 0..31 {
        p.record(
            "disk_utilization",
            at_hour(24.0 * d as f64),
            0.5 + 0.01 * d as f64,
        )
        .unwrap();
    }
    let f = p.analyze("disk_utilization", at_hour(24.0 * 30.0)).unwrap();
    let hw = f
        .selection
        .candidates
        .iter()
        .find(|c| c.model == sysmanage_capacity::ModelKind::HoltWinters)
        .unwrap();
    assert!(hw.holdout_mae.is_none() && hw.skipped.is_some(), "{hw:?}");
    let hours = f.time_to_limit.hours().unwrap();
    assert!((hours - 240.0).abs() < 1.0, "{hours}");
}

#[test]
fn sub_step_load_forecasts_are_as_wide_as_one_step() {
    let mut p = planner();
    for h in 0..24 * 7u64 {
        let v = 0.4 + 0.05 * noise(h);
        p.record("cpu_utilization", at_hour(h as f64), v).unwrap();
    }
    let last = at_hour(24.0 * 7.0 - 1.0);
    let one = p
        .forecast("cpu_utilization", last, Duration::from_secs(3600))
        .unwrap();
    let width = |f: &sysmanage_core::Forecast| f.upper - f.lower;
    assert!(width(&one) > 0.01, "{one:?}");
    for secs in [0, 1, 300, 1800] {
        let f = p
            .forecast("cpu_utilization", last, Duration::from_secs(secs))
            .unwrap();
        assert!(
            (width(&f) - width(&one)).abs() < 1e-9,
            "{secs} s: {f:?} vs {one:?}"
        );
    }
    // Before the last bucket as well.
    let f = p
        .forecast("cpu_utilization", at_hour(100.0), Duration::ZERO)
        .unwrap();
    assert!((width(&f) - width(&one)).abs() < 1e-9);
}

#[test]
fn peak_minutes_are_reported_beside_the_mean_forecast() {
    // Mean about 0.52, but the first five minutes of every hour at 0.85.
    let mut p = planner();
    let total = 60 * 24 * 4u64;
    for m in 0..total {
        let v = if m % 60 < 5 { 0.85 } else { 0.5 };
        p.record("cpu_utilization", at_hour(m as f64 / 60.0), v)
            .unwrap();
    }
    let now = at_hour((total - 1) as f64 / 60.0);
    let f = p.analyze("cpu_utilization", now).unwrap();
    assert!(
        matches!(f.time_to_limit, TimeToLimit::NotWithinHorizon { .. }),
        "{:?}",
        f.time_to_limit
    );
    assert!((f.peak_excess - (0.85 - (5.0 * 0.85 + 55.0 * 0.5) / 60.0)).abs() < 1e-6);
    assert_eq!(f.time_to_limit_peak, TimeToLimit::AlreadyOver);

    // Peaks below the limit that the mean's growth will carry over it.
    let mut p = planner();
    for m in 0..total {
        let base = 0.4 + 0.05 * m as f64 / (60.0 * 24.0);
        let v = if m % 60 < 5 { base + 0.2 } else { base };
        p.record("cpu_utilization", at_hour(m as f64 / 60.0), v)
            .unwrap();
    }
    let f = p.analyze("cpu_utilization", now).unwrap();
    let (mean_h, peak_h) = (
        f.time_to_limit.hours().unwrap(),
        f.time_to_limit_peak.hours().unwrap(),
    );
    assert!(peak_h < mean_h, "peak {peak_h} h, mean {mean_h} h");
}

#[test]
fn a_held_trend_label_survives_persistence() {
    // A week climbing 0.008/day (1 % of the 0.8 limit a day: increasing),
    // then a week at 0.003/day (0.375 %: between exit 0.25 % and enter 0.5 %).
    let value = |h: u64| {
        let d = h as f64 / 24.0;
        let steep = 0.3 + 0.008 * d.min(7.0);
        steep + 0.003 * (d - 7.0).max(0.0)
    };
    let mut p = planner();
    for h in 0..24 * 7 {
        p.record("cpu_utilization", at_hour(h as f64), value(h))
            .unwrap();
    }
    let r = p.report(at_hour(24.0 * 7.0 - 1.0));
    assert_eq!(r.forecasts[0].trend, TrendLabel::Increasing);
    for h in 24 * 7..24 * 15 {
        p.record("cpu_utilization", at_hour(h as f64), value(h))
            .unwrap();
    }
    let now = at_hour(24.0 * 15.0 - 1.0);
    let mut restored: Planner = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    let f = &restored.report(now).forecasts[0];
    assert!(
        f.relative_slope_per_day > 0.0025 && f.relative_slope_per_day < 0.005,
        "{}",
        f.relative_slope_per_day
    );
    assert_eq!(
        f.trend,
        TrendLabel::Increasing,
        "hysteresis held across restore"
    );
    // Without the held label the same data is stable.
    let mut fresh = planner();
    for h in 0..24 * 15 {
        fresh
            .record("cpu_utilization", at_hour(h as f64), value(h))
            .unwrap();
    }
    assert_eq!(fresh.report(now).forecasts[0].trend, TrendLabel::Stable);
}

#[test]
fn a_partial_newest_bucket_does_not_shift_time_to_limit() {
    // Disk grows 0.01 an hour from 0.5 (limit 0.9 at hour 40), sampled every
    // minute; "now" is ten minutes into a new hour.
    let mut cfg = PlannerConfig::default();
    cfg.selection.candidates = vec![sysmanage_capacity::ModelKind::DoubleExponential];
    let mut p = Planner::sysmanage(cfg).unwrap();
    let minutes = 60 * 24 + 10;
    for m in 0..minutes {
        let h = m as f64 / 60.0;
        p.record("disk_utilization", at_hour(h), 0.5 + 0.01 * h)
            .unwrap();
    }
    let now = at_hour((minutes - 1) as f64 / 60.0);
    let f = p.analyze("disk_utilization", now).unwrap();
    let truth = 40.0 - (minutes - 1) as f64 / 60.0;
    let hours = f.time_to_limit.hours().unwrap();
    assert!((hours - truth).abs() < 0.05, "{hours} vs {truth}");
    assert!(f.data_quality.partial_bucket_dropped);
    assert!(
        f.data_quality
            .flags()
            .contains(&"partial_bucket_dropped".to_owned())
    );
}

#[test]
fn readings_outside_physical_bounds_are_fitted_clamped() {
    // Some tools report utilisation slightly above 1: readings around 1.0.
    let mut p = planner();
    for h in 0..72u64 {
        p.record("cpu_utilization", at_hour(h as f64), 1.0 + 0.05 * noise(h))
            .unwrap();
    }
    let f = p.analyze("cpu_utilization", at_hour(71.0)).unwrap();
    assert_eq!(f.time_to_limit, TimeToLimit::AlreadyOver);
    // The model fits what the metric can be (≤ 1), so its level sits below
    // 1 instead of straddling it.
    assert!(
        f.forecasts.iter().all(|x| x.point < 0.999),
        "{:?}",
        &f.forecasts[..3]
    );
}

#[test]
fn a_report_on_several_threads_equals_the_sequential_report() {
    let mut p = planner();
    for h in 0..24 * 10 {
        let hour = (h % 24) as f64;
        for (i, kind) in MetricKind::BUILT_IN.iter().enumerate() {
            let base = 0.2 + 0.05 * i as f64;
            let v = base + 0.002 * h as f64 / 24.0 + 0.1 * peak(hour) + 0.01 * noise(h + i as u64);
            p.record(kind.name(), at_hour(h as f64), v).unwrap();
        }
    }
    let now = at_hour(24.0 * 10.0 - 1.0);
    p.set_report_threads(1).unwrap();
    let sequential = p.report(now);
    for threads in [2, 3, 8] {
        p.set_report_threads(threads).unwrap();
        p.clear_cache();
        assert_eq!(p.report(now), sequential, "{threads} threads");
    }
    assert!(p.set_report_threads(100_000).is_err());
}
