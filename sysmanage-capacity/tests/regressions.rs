//! One test per hostile-input case that used to panic, hang, or answer with
//! a wrong number: each failed before its fix.

use std::time::Duration;

use sysmanage_capacity::hygiene::{HygieneConfig, RegularSeries, prepare};
use sysmanage_capacity::model::{
    EtsInit, EtsParams, Forecaster, Fourier, HoltWinters, Linear, MAX_PREDICT_STEPS,
    ets_fitted_values, sysmanage_poly2,
};
use sysmanage_capacity::prometheus::{deriv, predict_linear};
use sysmanage_capacity::select::{SelectionConfig, select};
use sysmanage_capacity::{CapacityPlanner, Planner, PlannerConfig, Recorded};
use sysmanage_core::{Error, Sample, Timestamp};

fn hourly(values: Vec<f64>) -> RegularSeries {
    RegularSeries::new(
        Timestamp::from_secs(1_764_028_800),
        Duration::from_secs(3600),
        values,
    )
    .unwrap()
}

fn line(n: usize) -> RegularSeries {
    hourly((0..n).map(|i| 0.2 + 0.01 * i as f64).collect())
}

fn field(e: &Error) -> &'static str {
    match e {
        Error::InvalidConfig { field, .. }
        | Error::NonFinite { field, .. }
        | Error::Empty { field } => field,
        _ => "",
    }
}

#[test]
fn predict_linear_with_timestamps_at_both_ends_of_i64_does_not_overflow() {
    let samples = [
        Sample::new(Timestamp::from_millis(i64::MAX - 1000), 1.0),
        Sample::new(Timestamp::from_millis(i64::MAX), 2.0),
    ];
    // Evaluated at the other end of the range: ~2^64 ms away.
    match predict_linear(&samples, Timestamp::from_millis(i64::MIN), 60.0) {
        Ok(v) => assert!(v.is_finite()),
        // At ~2^63 ms from the evaluation time, one second is below f64
        // resolution: the times are indistinguishable there.
        Err(e) => assert!(
            ["non_finite", "insufficient_data"].contains(&e.label()),
            "{e}"
        ),
    }
    let slope = deriv(&samples).unwrap();
    assert!((slope - 1.0).abs() < 1e-9, "{slope}"); // one per second
}

#[test]
fn prepare_with_timestamps_at_both_ends_of_i64_is_a_typed_error() {
    let samples = [
        Sample::new(Timestamp::from_millis(i64::MIN), 1.0),
        Sample::new(Timestamp::from_millis(i64::MAX), 2.0),
    ];
    let e = prepare(&samples, &HygieneConfig::default(), None).unwrap_err();
    assert_eq!(field(&e), "hygiene.step", "{e}");
    // At one extreme alone, the grid is fine.
    let near_min = [
        Sample::new(Timestamp::from_millis(i64::MIN), 1.0),
        Sample::new(Timestamp::from_millis(i64::MIN + 7_200_000), 2.0),
    ];
    let r = prepare(&near_min, &HygieneConfig::default(), None).unwrap();
    assert_eq!(r.mean.len(), 3);
    assert!(r.mean.start() >= Timestamp::from_millis(i64::MIN));
}

#[test]
fn predict_far_past_the_horizon_is_clamped_or_rejected_never_wrapped() {
    let fit = Linear.fit(&line(48)).unwrap();
    // Used to wrap to an index in the past (0.478 on this line).
    let far = fit.predict(usize::MAX);
    assert!(far.point > fit.predict(1000).point, "{far:?}");
    assert_eq!(far, fit.predict(MAX_PREDICT_STEPS));
    assert_eq!(
        field(&fit.try_predict(usize::MAX).unwrap_err()),
        "h",
        "beyond MAX_PREDICT_STEPS"
    );
    assert!(fit.try_predict(10).is_ok());
    let inf = fit.predict_at(f64::INFINITY);
    assert!(inf.point.is_finite() && inf.point > 1.0, "{inf:?}");
    assert_eq!(
        fit.try_predict_at(f64::INFINITY).unwrap_err().label(),
        "non_finite"
    );

    let hw = HoltWinters::default().fit(&hourly(
        (0..24 * 4)
            .map(|i| (i % 24) as f64 + 0.01 * i as f64)
            .collect(),
    ));
    let hw = hw.unwrap();
    let p = hw.predict(usize::MAX);
    assert!(p.point.is_finite() && p.sd.is_finite(), "{p:?}");
    let p = hw.predict_at(f64::INFINITY);
    assert!(p.point.is_finite(), "{p:?}");
}

#[test]
fn regular_series_checks_cannot_be_skipped() {
    // Fields are private; deserialisation runs new()'s checks.
    let zero_step = serde_json::json!({
        "start": 0, "step": {"secs": 0, "nanos": 0}, "values": [1.0, 2.0, 3.0]
    });
    let e = serde_json::from_value::<RegularSeries>(zero_step).unwrap_err();
    assert!(e.to_string().contains("series.step"), "{e}");
    let nan = serde_json::json!({
        "start": 0, "step": {"secs": 60, "nanos": 0}, "values": [1.0, null, 3.0]
    });
    assert!(serde_json::from_value::<RegularSeries>(nan).is_err());
    assert!(RegularSeries::new(Timestamp::EPOCH, Duration::ZERO, vec![1.0]).is_err());
    assert!(RegularSeries::new(Timestamp::EPOCH, Duration::from_micros(10), vec![1.0]).is_err());
}

#[test]
fn holt_winters_fixed_validates_its_parameters() {
    let nan = EtsParams {
        alpha: f64::NAN,
        beta: 0.1,
        gamma: 0.1,
    };
    let e = HoltWinters::default().fixed(nan, None).unwrap_err();
    assert_eq!(field(&e), "holt_winters.alpha");
    let wild = EtsParams {
        alpha: 5.0,
        beta: 3.0,
        gamma: -2.0,
    };
    assert!(HoltWinters::default().fixed(wild, None).is_err());
    let bad_gamma = EtsParams {
        alpha: 0.5,
        beta: 0.1,
        gamma: -2.0,
    };
    assert_eq!(
        field(&HoltWinters::default().fixed(bad_gamma, None).unwrap_err()),
        "holt_winters.gamma"
    );
    let nan_init = EtsInit {
        level: f64::NAN,
        trend: 0.0,
        seasonal: vec![0.0; 24],
    };
    let ok = EtsParams {
        alpha: 0.5,
        beta: 0.1,
        gamma: 0.1,
    };
    assert_eq!(
        HoltWinters::default()
            .fixed(ok, Some(nan_init))
            .unwrap_err()
            .label(),
        "non_finite"
    );
}

#[test]
fn ets_helpers_reject_nan_and_empty_input() {
    let mut y: Vec<f64> = (0..48).map(|i| (i % 24) as f64).collect();
    y[3] = f64::NAN;
    assert_eq!(
        EtsInit::heuristic(&y, 24).unwrap_err().label(),
        "non_finite"
    );
    let init = EtsInit::heuristic(&[1.0, 2.0, 3.0, 4.0], 2).unwrap();
    let p = EtsParams {
        alpha: 0.5,
        beta: 0.1,
        gamma: 0.1,
    };
    assert_eq!(
        ets_fitted_values(&[1.0, f64::NAN], p, &init)
            .unwrap_err()
            .label(),
        "non_finite"
    );
    assert_eq!(
        HoltWinters::fit_params(&[1.0, f64::NAN, 2.0], &init)
            .unwrap_err()
            .label(),
        "non_finite"
    );
    assert_eq!(
        HoltWinters::fit_params(&[], &init).unwrap_err().label(),
        "insufficient_data"
    );
}

#[test]
fn sysmanage_poly2_on_huge_values_reports_the_true_r2() {
    for (lo, hi) in [(1e160, 1e170), (1e180, 1e200)] {
        // A cloud with a weak trend: true R² is small.
        let samples: Vec<Sample> = (0..200)
            .map(|i| {
                let x = ((i * 7919) % 200) as f64 / 200.0; // scrambled
                let v = lo + (hi - lo) * (0.5 * x + 0.1 * i as f64 / 200.0);
                Sample::new(Timestamp::from_secs(3600 * i), v)
            })
            .collect();
        // Reference R² on values scaled to ~1 (exactly representable scaling).
        let scaled: Vec<Sample> = samples
            .iter()
            .map(|s| Sample::new(s.at, s.value / hi))
            .collect();
        let want = sysmanage_poly2(&scaled).unwrap().r2;
        assert!(want < 0.2, "reference R² {want}");
        let fit = sysmanage_poly2(&samples).unwrap();
        assert!((fit.r2 - want).abs() < 1e-9, "{} vs {want}", fit.r2);
        assert!(fit.confidence < 0.5, "{}", fit.confidence);
        let mid = fit.predict(Timestamp::from_secs(3600 * 100));
        assert!(mid.is_finite() && mid > lo && mid < hi, "{mid}");
    }
    // Values whose squares overflow even after scaling cannot occur, but
    // coefficients can: a typed error, not a number.
    let extreme = [
        Sample::new(Timestamp::from_secs(0), -f64::MAX),
        Sample::new(Timestamp::from_secs(1), f64::MAX),
        Sample::new(Timestamp::from_secs(2), -f64::MAX),
    ];
    match sysmanage_poly2(&extreme) {
        Ok(fit) => assert!(fit.intercept.is_finite() && fit.r2.is_finite()),
        Err(e) => assert_eq!(e.label(), "non_finite"),
    }
}

#[test]
fn forecast_path_rejects_a_bad_level_as_its_docs_say() {
    let fit = Linear.fit(&line(48)).unwrap();
    let e = fit.forecast_path(10, 1.5, |v| v).unwrap_err();
    assert_eq!(e.label(), "invalid_config");
    assert_eq!(field(&e), "level");
    assert!(fit.forecast_path(usize::MAX, 0.9, |v| v).is_err());
}

#[test]
fn select_with_no_candidates_says_so() {
    let e = select(&line(48), &[], &SelectionConfig::default()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Empty {
                field: "forecasters"
            }
        ),
        "{e}"
    );
}

#[test]
fn select_reports_the_simplest_candidates_need() {
    let forecasters: Vec<Box<dyn Forecaster>> =
        vec![Box::new(Linear), Box::new(HoltWinters::default())];
    let e = select(&line(2), &forecasters, &SelectionConfig::default()).unwrap_err();
    match e {
        Error::InsufficientData { needed, have, .. } => assert_eq!((needed, have), (3, 2)),
        e => panic!("{e}"),
    }
}

#[test]
fn a_metric_whose_samples_share_one_timestamp_says_it_needs_distinct_times() {
    let mut p = Planner::sysmanage(PlannerConfig::default()).unwrap();
    let t = Timestamp::from_secs(1_764_028_800);
    for i in 0..48 {
        p.record("cpu_utilization", t, 0.3 + 0.001 * f64::from(i))
            .unwrap();
    }
    let e = p.analyze("cpu_utilization", t).unwrap_err();
    match &e {
        Error::InsufficientData { what, needed, have } => {
            assert!(what.contains("distinct"), "{what}");
            assert_eq!((*needed, *have), (3, 1));
        }
        e => panic!("{e}"),
    }
}

#[test]
fn fourier_asks_only_for_harmonics_below_nyquist() {
    assert!(Fourier::new(1000, 0).is_err());
    let f = Fourier::new(64, 0).unwrap();
    // Hourly: only 11 daily harmonics fit below Nyquist; two days = 48 points.
    assert_eq!(f.min_points(&line(10)), 48);
    let y: Vec<f64> = (0..48)
        .map(|i| 0.5 + 0.2 * (i as f64 * std::f64::consts::TAU / 24.0).sin())
        .collect();
    assert!(f.fit(&hourly(y)).is_ok());
}

#[test]
fn record_says_when_a_sample_is_older_than_retention() {
    let mut cfg = PlannerConfig::default();
    cfg.retention = Duration::from_secs(3600);
    let mut p = Planner::sysmanage(cfg).unwrap();
    let t = Timestamp::from_secs(1_764_028_800);
    assert_eq!(
        p.record("cpu_utilization", t, 0.5).unwrap(),
        Recorded::Stored
    );
    let old = t - Duration::from_secs(7200);
    assert_eq!(
        p.record("cpu_utilization", old, 0.5).unwrap(),
        Recorded::TooOld {
            cutoff: t - Duration::from_secs(3600)
        }
    );
    let cpu = p
        .status()
        .into_iter()
        .find(|s| s.metric == "cpu_utilization");
    assert_eq!(cpu.unwrap().samples, 1);
}

#[test]
fn analyze_before_the_data_says_so() {
    let mut p = Planner::sysmanage(PlannerConfig::default()).unwrap();
    let t = Timestamp::from_secs(1_764_028_800);
    for h in 0..48 {
        p.record(
            "disk_utilization",
            t + Duration::from_secs(3600 * h),
            0.5 + 0.001 * h as f64,
        )
        .unwrap();
    }
    let e = p.analyze("disk_utilization", t).unwrap_err();
    assert_eq!(field(&e), "now", "{e}");
    let report = p.report(t);
    assert!(
        report.skipped.iter().any(
            |s| s.metric == "disk_utilization" && s.reason.contains("before the newest sample")
        ),
        "{:?}",
        report.skipped
    );
    assert!(
        p.analyze("disk_utilization", t + Duration::from_secs(3600 * 47))
            .is_ok()
    );
}

#[test]
fn every_config_range_is_enforced_with_the_field_named() {
    let with = |f: fn(&mut PlannerConfig)| {
        let mut c = PlannerConfig::default();
        f(&mut c);
        c
    };
    let cases: Vec<(PlannerConfig, &str)> = vec![
        (with(|c| c.retention = Duration::MAX), "planner.retention"),
        (
            with(|c| c.horizon = Duration::from_secs(40_000 * 86_400)),
            "planner.horizon",
        ),
        (with(|c| c.season = Duration::MAX), "planner.season"),
        (
            with(|c| c.max_forecast_steps = usize::MAX),
            "planner.max_forecast_steps",
        ),
        (
            with(|c| c.max_report_points = usize::MAX),
            "planner.max_report_points",
        ),
        (with(|c| c.min_samples = usize::MAX), "planner.min_samples"),
        (
            with(|c| c.max_samples_per_metric = std::num::NonZeroUsize::MAX),
            "planner.max_samples_per_metric",
        ),
        (
            with(|c| c.trend_window = Duration::MAX),
            "planner.trend_window",
        ),
        (
            with(|c| c.trend_enter = f64::INFINITY),
            "planner.trend_enter",
        ),
        (
            with(|c| c.max_forward_jump = Duration::MAX),
            "planner.max_forward_jump",
        ),
        (
            with(|c| c.interval_level = f64::NAN),
            "planner.interval_level",
        ),
    ];
    for (cfg, want) in cases {
        let e = Planner::new(cfg).unwrap_err();
        assert_eq!(field(&e), want, "{e}");
        assert!(e.to_string().contains('['), "names the range: {e}");
    }
    let mut h = HygieneConfig::default();
    h.step = Duration::MAX;
    assert_eq!(field(&h.validate().unwrap_err()), "hygiene.step");
    let mut h = HygieneConfig::default();
    h.max_buckets = usize::MAX;
    assert_eq!(field(&h.validate().unwrap_err()), "hygiene.max_buckets");
    let mut s = SelectionConfig::default();
    s.test_window = Duration::MAX;
    assert_eq!(field(&s.validate().unwrap_err()), "selection.test_window");
    let mut s = SelectionConfig::default();
    s.tolerance = 1e300;
    assert_eq!(field(&s.validate().unwrap_err()), "selection.tolerance");
}

#[test]
fn poly2_prediction_at_the_far_end_of_i64_does_not_overflow() {
    let s: Vec<Sample> = (0..10)
        .map(|h| Sample::new(Timestamp::from_secs(3600 * h), h as f64))
        .collect();
    let fit = sysmanage_poly2(&s).unwrap();
    let v = fit.predict(Timestamp::from_millis(i64::MIN));
    assert!(v < 0.0, "{v}"); // a line far in the past, not a panic
}

#[test]
fn samples_whose_sum_overflows_are_a_typed_error() {
    let t = Timestamp::from_secs(1_764_028_800);
    let samples = [
        Sample::new(t, f64::MAX),
        Sample::new(t + Duration::from_secs(60), f64::MAX),
        Sample::new(t + Duration::from_secs(7200), 1.0),
    ];
    let e = prepare(&samples, &HygieneConfig::default(), None).unwrap_err();
    assert_eq!(e.label(), "non_finite", "{e}");
}

#[test]
fn a_first_bucket_whose_sum_overflows_both_ways_is_a_typed_error() {
    // Four partial sums: +MAX twice in one lane, -MAX twice in another:
    // +∞ + −∞ = NaN in the first bucket used to reach the gap filler.
    let t = Timestamp::from_secs(1_764_028_800);
    let v = [
        f64::MAX,
        -f64::MAX,
        f64::MAX,
        -f64::MAX,
        f64::MAX,
        -f64::MAX,
        f64::MAX,
        -f64::MAX,
    ];
    let mut samples: Vec<Sample> = v
        .iter()
        .enumerate()
        .map(|(i, x)| Sample::new(t + Duration::from_secs(i as u64), *x))
        .collect();
    samples.push(Sample::new(t + Duration::from_secs(3 * 3600), 1.0));
    let e = prepare(&samples, &HygieneConfig::default(), None).unwrap_err();
    assert_eq!(e.label(), "non_finite", "{e}");
}
