//! Every public entry point that takes numbers, durations or strings, driven
//! with hostile values: NaN, ±∞, ±0, subnormals, `f64::MAX`, i64/u64/usize
//! extremes, empty and long inputs. Runs in the debug profile (overflow
//! checks on). Each property asserts that nothing panics and that every
//! answer is a typed error or finite and within its documented bounds.

use std::num::NonZeroUsize;
use std::time::Duration;

use proptest::prelude::*;
use sysmanage_capacity::chart::{LineStyle, TimeChart, format_utc, nice_ticks, time_ticks};
use sysmanage_capacity::hygiene::{HygieneConfig, RegularSeries, clean, damp_outliers, prepare};
use sysmanage_capacity::model::{
    DoubleExponential, EtsInit, EtsParams, Forecaster, Fourier, HoltWinters, Linear, ModelKind,
    Poly2, Prediction, ets_fitted_values, sysmanage_poly2,
};
use sysmanage_capacity::prometheus::{
    deriv, double_exponential_smoothing, linear_regression, predict_linear,
};
use sysmanage_capacity::select::{SelectionConfig, select};
use sysmanage_capacity::{
    Bounds, CapacityPlanner, Direction, MetricSpec, Planner, PlannerConfig, TimeToLimit, Unit,
};
use sysmanage_core::{Error, LoadForecast, Sample, Timestamp};

fn hostile_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(f64::MIN_POSITIVE / 4.0), // subnormal
        Just(-f64::MIN_POSITIVE / 4.0),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(1e200),
        Just(-1e160),
        Just(f64::EPSILON),
        any::<f64>(),
        -2.0..2.0f64,
        -1e6..1e6f64,
    ]
}

fn finite_f64() -> impl Strategy<Value = f64> {
    hostile_f64().prop_map(|v| if v.is_finite() { v } else { 0.5 })
}

fn hostile_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(i64::MIN + 1),
        Just(i64::MAX - 1),
        Just(0),
        any::<i64>(),
        1_700_000_000_000..1_800_000_000_000i64,
    ]
}

fn hostile_usize() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(usize::MAX),
        Just(usize::MAX / 2),
        Just(u32::MAX as usize),
        0..400usize,
        any::<usize>(),
    ]
}

fn hostile_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(3600)),
        Just(Duration::from_secs(86_400)),
        Just(Duration::from_secs(36_500 * 86_400)),
        Just(Duration::from_secs(36_500 * 86_400 + 1)),
        any::<u64>().prop_map(Duration::from_nanos),
        any::<u64>().prop_map(Duration::from_millis),
        (0..10_000_000u64).prop_map(Duration::from_secs),
    ]
}

fn hostile_samples(max: usize) -> impl Strategy<Value = Vec<Sample>> {
    prop_oneof![
        // Anything at all.
        proptest::collection::vec(
            (hostile_i64(), hostile_f64())
                .prop_map(|(t, v)| Sample::new(Timestamp::from_millis(t), v)),
            0..max,
        ),
        // Plausible times (minutes, shuffled) with hostile values.
        proptest::collection::vec((0..(3 * 1440i64), finite_f64()), 0..max).prop_map(|v| {
            v.into_iter()
                .map(|(m, x)| Sample::new(Timestamp::from_secs(1_764_028_800 + 60 * m), x))
                .collect()
        }),
    ]
}

fn series() -> impl Strategy<Value = RegularSeries> {
    let step = prop_oneof![
        Just(Duration::from_secs(3600)),
        Just(Duration::from_secs(60)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(36_500 * 86_400)),
        (1..100_000u64).prop_map(Duration::from_millis),
    ];
    let values = prop_oneof![
        proptest::collection::vec(finite_f64(), 0..120),
        // Smooth daily shape at large or tiny scale.
        (finite_f64(), 48..120usize).prop_map(|(scale, n)| {
            (0..n)
                .map(|i| scale * (1.0 + 0.5 * (i as f64 * std::f64::consts::TAU / 24.0).sin()))
                .collect()
        }),
    ];
    (hostile_i64(), step, values)
        .prop_map(|(start, step, v)| RegularSeries::new(Timestamp::from_millis(start), step, v))
        .prop_filter_map("valid series", Result::ok)
}

fn prediction_ok(p: Prediction) -> Result<(), TestCaseError> {
    // predict() clamps its horizon; the values may still overflow on
    // extreme data, which try_predict reports. A finite point always has a
    // non-negative deviation.
    if p.point.is_finite() && p.sd.is_finite() {
        prop_assert!(p.sd >= 0.0, "{p:?}");
    }
    Ok(())
}

fn typed(e: &Error) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(
            e,
            Error::InvalidConfig { .. }
                | Error::NonFinite { .. }
                | Error::Empty { .. }
                | Error::InsufficientData { .. }
                | Error::Unknown { .. }
                | Error::Duplicate { .. }
        ),
        "unexpected error kind: {e}"
    );
    prop_assert!(!e.to_string().is_empty());
    Ok(())
}

fn forecasters() -> Vec<Box<dyn Forecaster>> {
    ModelKind::ALL.iter().map(|k| k.forecaster()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn promql_functions_answer_or_refuse(
        samples in hostile_samples(40),
        eval in hostile_i64(),
        horizon in hostile_f64(),
        sf in hostile_f64(),
        tf in hostile_f64(),
    ) {
        let mut sorted = samples.clone();
        sorted.sort_by_key(|s| s.at);
        let eval = Timestamp::from_millis(eval);
        match predict_linear(&sorted, eval, horizon) {
            Ok(v) => prop_assert!(v.is_finite()),
            Err(e) => typed(&e)?,
        }
        match linear_regression(&sorted, eval) {
            Ok((a, b)) => prop_assert!(a.is_finite() && b.is_finite()),
            Err(e) => typed(&e)?,
        }
        match deriv(&sorted) {
            Ok(v) => prop_assert!(v.is_finite()),
            Err(e) => typed(&e)?,
        }
        let values: Vec<f64> = sorted.iter().map(|s| s.value).collect();
        match double_exponential_smoothing(&values, sf, tf) {
            Ok(v) => prop_assert!(v.is_finite()),
            Err(e) => typed(&e)?,
        }
        match sysmanage_poly2(&sorted) {
            Ok(fit) => {
                prop_assert!(fit.intercept.is_finite() && fit.coef.iter().all(|c| c.is_finite()));
                prop_assert!(fit.r2.is_finite() && fit.r2 <= 1.0 + 1e-9, "{}", fit.r2);
                prop_assert!((0.1..=0.95).contains(&fit.confidence));
                let _ = fit.predict(eval);
            }
            Err(e) => typed(&e)?,
        }
    }

    #[test]
    fn hygiene_answers_or_refuses(
        samples in hostile_samples(200),
        step in hostile_duration(),
        threshold in hostile_f64(),
        half_window in hostile_usize(),
        max_buckets in hostile_usize(),
        season in proptest::option::of(hostile_duration()),
    ) {
        let mut cfg = HygieneConfig::default();
        cfg.step = step;
        cfg.outlier_threshold = threshold;
        cfg.outlier_half_window = half_window;
        cfg.max_buckets = max_buckets.min(200_000);
        let valid = cfg.validate();
        match prepare(&samples, &cfg, season) {
            Ok(r) => {
                prop_assert!(valid.is_ok());
                prop_assert_eq!(r.mean.len(), r.counts.len());
                prop_assert_eq!(r.max.len(), r.counts.len());
                prop_assert!(r.mean.values().iter().all(|v| v.is_finite()));
                prop_assert!(r.max.values().iter().all(|v| v.is_finite()));
                prop_assert!(r.mean.len() <= cfg.max_buckets);
                prop_assert_eq!(r.quality.raw_samples, samples.len());
            }
            Err(e) => typed(&e)?,
        }
        match clean(samples.clone()) {
            Ok((s, merged)) => {
                prop_assert!(s.windows(2).all(|w| w[0].at < w[1].at));
                prop_assert_eq!(s.len() + merged, samples.len());
            }
            Err(e) => typed(&e)?,
        }
        if valid.is_ok() {
            let mut v: Vec<f64> = samples.iter().map(|s| s.value).filter(|v| v.is_finite()).collect();
            let before = v.clone();
            let damped = damp_outliers(&mut v, season.map(|_| 24), &cfg);
            prop_assert!(damped <= v.len());
            prop_assert!(v.iter().all(|x| x.is_finite()));
            prop_assert_eq!(v.len(), before.len());
        }
    }

    #[test]
    fn every_model_fits_and_predicts_or_refuses(
        s in series(),
        h in hostile_usize(),
        hf in hostile_f64(),
        steps in hostile_usize(),
        level in hostile_f64(),
    ) {
        let mut models = forecasters();
        models.push(Box::new(Fourier::new(64, 64).unwrap()));
        models.push(Box::new(HoltWinters::with_season(Duration::from_secs(7200))));
        for m in &models {
            let _ = m.min_points(&s);
            match m.fit(&s) {
                Ok(fit) => {
                    prop_assert!(fit.sigma().is_finite() && fit.sigma() >= 0.0);
                    prop_assert!(fit.at_origin().point.is_finite());
                    prediction_ok(fit.predict(h))?;
                    prediction_ok(fit.predict_at(hf))?;
                    match fit.try_predict(h) {
                        Ok(p) => prop_assert!(p.point.is_finite() && p.sd.is_finite() && p.sd >= 0.0),
                        Err(e) => typed(&e)?,
                    }
                    match fit.predict(1).try_interval(level) {
                        Ok((lo, hi)) => prop_assert!(lo <= hi && level > 0.0 && level < 1.0),
                        Err(e) => typed(&e)?,
                    }
                    match fit.try_predict_at(hf) {
                        Ok(p) => prop_assert!(p.point.is_finite() && p.sd.is_finite()),
                        Err(e) => typed(&e)?,
                    }
                    let _ = fit.time_after(hf);
                    let _ = fit.steps_until(fit.last_time());
                    match fit.forecast_path(steps.min(2_000_000), level, |v| v) {
                        Ok(path) => {
                            prop_assert!(steps.min(2_000_000) == path.len());
                            for f in path {
                                prop_assert!(f.lower <= f.point && f.point <= f.upper, "{f:?}");
                            }
                        }
                        Err(e) => typed(&e)?,
                    }
                }
                Err(e) => typed(&e)?,
            }
        }
    }

    #[test]
    fn fixed_smoothing_settings_are_validated(
        s in series(),
        alpha in hostile_f64(),
        beta in hostile_f64(),
        gamma in hostile_f64(),
        level in hostile_f64(),
        trend in hostile_f64(),
        seasonal in proptest::collection::vec(hostile_f64(), 0..30),
        m in hostile_usize(),
        daily in any::<u32>(),
        weekly in any::<u32>(),
    ) {
        let params = EtsParams { alpha, beta, gamma };
        let init = EtsInit { level, trend, seasonal };
        let v = s.values();
        match ets_fitted_values(v, params, &init) {
            Ok((fitted, sse)) => {
                prop_assert!(sse.is_finite());
                prop_assert_eq!(fitted.len(), v.len());
            }
            Err(e) => typed(&e)?,
        }
        match HoltWinters::fit_params(v, &init) {
            Ok(p) => prop_assert!(p.validate().is_ok(), "{p:?}"),
            Err(e) => typed(&e)?,
        }
        match HoltWinters::default().fixed(params, Some(init)) {
            Ok(hw) => {
                prop_assert!(params.validate().is_ok());
                match hw.fit(&s) {
                    Ok(fit) => prediction_ok(fit.predict(1))?,
                    Err(e) => typed(&e)?,
                }
            }
            Err(e) => typed(&e)?,
        }
        for r in [EtsInit::heuristic(v, m), EtsInit::statsmodels_heuristic(v, m)] {
            match r {
                Ok(i) => prop_assert!(i.validate().is_ok()),
                Err(e) => typed(&e)?,
            }
        }
        match Fourier::new(daily, weekly) {
            Ok(f) => {
                prop_assert!(daily <= 64 && weekly <= 64);
                let _ = f.min_points(&s);
            }
            Err(e) => typed(&e)?,
        }
        match DoubleExponential::with_factors(alpha, beta) {
            Ok(d) => match d.fit(&s) {
                Ok(fit) => prediction_ok(fit.predict(3))?,
                Err(e) => typed(&e)?,
            },
            Err(e) => typed(&e)?,
        }
        let _ = (Linear, Poly2);
    }

    #[test]
    fn selection_answers_or_refuses(
        s in series(),
        folds in hostile_usize(),
        test_window in hostile_duration(),
        tolerance in hostile_f64(),
        candidates in proptest::collection::vec(0..5usize, 0..8),
    ) {
        let mut cfg = SelectionConfig::default();
        cfg.folds = folds;
        cfg.test_window = test_window;
        cfg.tolerance = tolerance;
        cfg.candidates = candidates.iter().map(|&i| ModelKind::ALL[i]).collect();
        let fs: Vec<Box<dyn Forecaster>> = cfg.candidates.iter().map(|k| k.forecaster()).collect();
        match select(&s, &fs, &cfg) {
            Ok((fit, sel)) => {
                prop_assert!(cfg.validate().is_ok());
                prop_assert_eq!(fit.kind(), sel.model);
                prop_assert!(sel.holdout_mae.is_none_or(|e| e.is_finite() && e >= 0.0));
            }
            Err(e) => typed(&e)?,
        }
    }
}

/// A planner configuration with every field drawn from hostile values.
fn hostile_config() -> impl Strategy<Value = PlannerConfig> {
    (
        (
            hostile_duration(),
            hostile_usize(),
            hostile_duration(),
            hostile_f64(),
            hostile_duration(),
            hostile_duration(),
        ),
        (
            hostile_duration(),
            hostile_f64(),
            hostile_f64(),
            hostile_duration(),
            hostile_usize(),
            hostile_usize(),
        ),
        (hostile_usize(), hostile_duration(), hostile_duration()),
    )
        .prop_map(
            |(
                (retention, max_samples, horizon, level, high, medium),
                (trend_window, enter, exit, season, min_samples, report_points),
                (forecast_steps, jump, step),
            )| {
                let mut c = PlannerConfig::default();
                c.retention = retention;
                c.max_samples_per_metric =
                    NonZeroUsize::new(max_samples).unwrap_or(NonZeroUsize::MIN);
                c.horizon = horizon;
                c.interval_level = level;
                c.high_within = high;
                c.medium_within = medium;
                c.trend_window = trend_window;
                c.trend_enter = enter;
                c.trend_exit = exit;
                c.season = season;
                c.min_samples = min_samples;
                c.max_report_points = report_points;
                c.max_forecast_steps = forecast_steps;
                c.max_forward_jump = jump;
                c.hygiene.step = step;
                c
            },
        )
}

/// A valid configuration, edges included, cheap enough to analyse often in
/// a debug build.
fn valid_config() -> impl Strategy<Value = PlannerConfig> {
    (
        prop_oneof![
            Just(Duration::from_millis(1)),
            Just(Duration::from_secs(3600)),
            Just(Duration::from_secs(36_500 * 86_400))
        ],
        prop_oneof![Just(1usize), Just(3), Just(1000)],
        prop_oneof![
            Just(Duration::from_millis(1)),
            Just(Duration::from_secs(86_400)),
            Just(Duration::from_secs(36_500 * 86_400))
        ],
        prop_oneof![Just(1e-9), Just(0.95), Just(1.0 - 1e-12)],
        prop_oneof![
            Just(Duration::from_millis(1)),
            Just(Duration::from_secs(60)),
            Just(Duration::from_secs(3600))
        ],
        prop_oneof![
            Just(Duration::from_millis(2)),
            Just(Duration::from_secs(86_400))
        ],
        prop_oneof![Just(1usize), Just(100), Just(1000)],
    )
        .prop_map(
            |(retention, max_samples, horizon, level, step, season, steps)| {
                let mut c = PlannerConfig::default();
                c.retention = retention;
                c.max_samples_per_metric =
                    NonZeroUsize::new(max_samples).unwrap_or(NonZeroUsize::MIN);
                c.horizon = horizon;
                c.interval_level = level;
                c.hygiene.step = step;
                c.season = season;
                c.max_forecast_steps = steps;
                c.max_report_points = steps;
                c
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn planner_settings_are_validated_with_the_field_named(cfg in hostile_config()) {
        match Planner::new(cfg.clone()) {
            Ok(_) => prop_assert!(cfg.validate().is_ok()),
            Err(e) => {
                prop_assert!(matches!(e, Error::InvalidConfig { .. } | Error::Empty { .. }), "{e}");
                prop_assert!(e.to_string().contains("planner.") || e.to_string().contains("hygiene."), "{e}");
            }
        }
    }

    #[test]
    fn metric_specs_are_validated(
        name in prop_oneof![Just(String::new()), ".{0,40}", Just("x".repeat(10_000)), Just("<script>\"'&".to_owned())],
        limit in hostile_f64(),
        min in proptest::option::of(hostile_f64()),
        max in proptest::option::of(hostile_f64()),
        floor in any::<bool>(),
    ) {
        let dir = if floor { Direction::Floor } else { Direction::Ceiling };
        match MetricSpec::custom(name.clone(), limit, dir) {
            Ok(spec) => {
                prop_assert!(limit.is_finite() && !name.is_empty());
                let spec = spec.with_bounds(Bounds { min, max });
                match spec.validate() {
                    Ok(()) => {
                        let c = spec.bounds.clamp(limit);
                        prop_assert!(c.is_finite());
                        let mut p = Planner::new(PlannerConfig::default()).unwrap();
                        prop_assert!(p.register(spec).is_ok());
                    }
                    Err(e) => typed(&e)?,
                }
            }
            Err(e) => typed(&e)?,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn planner_ingest_analysis_and_report_answer_or_refuse(
        cfg in valid_config(),
        samples in hostile_samples(150),
        now in hostile_i64(),
        horizon in hostile_duration(),
        limit in finite_f64(),
    ) {
        let mut p = Planner::sysmanage(cfg.clone()).unwrap();
        let custom = MetricSpec::custom("custom", limit, Direction::Ceiling);
        let has_custom = custom.is_ok();
        if let Ok(spec) = custom {
            p.register(spec).unwrap();
        }
        for s in &samples {
            for metric in ["cpu_utilization", "queue_length", "custom", "unknown"] {
                match p.record(metric, s.at, s.value) {
                    Ok(_) => prop_assert!(s.value.is_finite()),
                    Err(e) => typed(&e)?,
                }
            }
        }
        let now = Timestamp::from_millis(now);
        for metric in ["cpu_utilization", "queue_length"] {
            match p.analyze(metric, now) {
                Ok(f) => {
                    let spec = p.spec(metric).unwrap().clone();
                    prop_assert!(f.forecasts.len() <= cfg.max_report_points);
                    for fc in &f.forecasts {
                        prop_assert!(fc.lower.is_finite() && fc.point.is_finite() && fc.upper.is_finite());
                        prop_assert!(fc.lower <= fc.point && fc.point <= fc.upper, "{fc:?}");
                        prop_assert_eq!(spec.bounds.clamp(fc.point), fc.point);
                    }
                    for t in [f.time_to_limit, f.time_to_limit_bound, f.time_to_limit_peak] {
                        if let TimeToLimit::Within { hours, .. } = t {
                            prop_assert!(hours.is_finite() && hours >= 0.0);
                        }
                    }
                    prop_assert!((0.1..=0.95).contains(&f.confidence));
                }
                Err(e) => typed(&e)?,
            }
            match p.forecast(metric, now, horizon) {
                Ok(f) => prop_assert!(f.lower <= f.point && f.point <= f.upper),
                Err(e) => typed(&e)?,
            }
        }
        let report = p.report(now);
        prop_assert_eq!(
            report.forecasts.len() + report.skipped.len(),
            8 + usize::from(has_custom)
        );
        for r in &report.recommendations {
            prop_assert!(r.time_to_limit_hours.is_finite() && r.time_to_limit_hours >= 0.0);
        }
        let status = p.status();
        for s in status {
            prop_assert!(s.samples <= cfg.max_samples_per_metric.get());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn charts_and_units_render_anything(
        points in proptest::collection::vec((hostile_i64(), hostile_f64(), hostile_f64()), 0..60),
        limit in hostile_f64(),
        marker in hostile_i64(),
        lo in hostile_f64(),
        hi in hostile_f64(),
        t0 in hostile_i64(),
        t1 in hostile_i64(),
        target in hostile_usize(),
        title in ".{0,30}",
        unit_text in ".{0,40}",
        size in (hostile_f64(), hostile_f64()),
    ) {
        let units = [
            Unit::None, Unit::Ratio, Unit::Bytes, Unit::BytesPerSecond,
            Unit::RequestsPerSecond, Unit::Seconds, Unit::Count, Unit::Other(unit_text),
        ];
        for u in &units {
            let text = u.format(lo, hi);
            prop_assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
        }
        let ticks = nice_ticks(lo, hi, target);
        prop_assert!(ticks.len() <= 102 && ticks.iter().all(|t| t.is_finite()));
        let tt = time_ticks(t0, t1, target);
        prop_assert!(tt.len() <= 64);
        prop_assert!(tt.iter().all(|(t, _)| *t >= t0 && *t <= t1));
        let _ = format_utc(Timestamp::from_millis(t0));
        let line: Vec<(Timestamp, f64)> =
            points.iter().map(|p| (Timestamp::from_millis(p.0), p.1)).collect();
        let band: Vec<(Timestamp, f64, f64)> =
            points.iter().map(|p| (Timestamp::from_millis(p.0), p.1, p.2)).collect();
        let svg = TimeChart::new(title, units[(t0.unsigned_abs() % 8) as usize].clone())
            .size(size.0, size.1)
            .target_ticks(target)
            .line("history", LineStyle::Solid, line.clone())
            .line("steps", LineStyle::Step, line)
            .band("interval", band)
            .limit("limit", limit)
            .marker("event", Timestamp::from_millis(marker), "note")
            .span("span", Timestamp::from_millis(t0), Timestamp::from_millis(t1))
            .to_svg();
        prop_assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        prop_assert!(!svg.contains("NaN") && !svg.contains("inf\""), "{svg}");
        prop_assert!(!svg.contains("<script"));
    }
}
