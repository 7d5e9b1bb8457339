//! Hostile input: every public numeric entry point, driven with NaN, ±inf,
//! ±0, subnormals, integer extremes, empty and huge inputs. Nothing may
//! panic (this runs in the debug profile, with overflow checks), and every
//! result is a typed error or finite and within its documented bounds.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use sysmanage_core::{Forecast, LoadForecast, Timestamp};
use sysmanage_scaling::calc::calculate;
use sysmanage_scaling::kube::{self, RateArgs};
use sysmanage_scaling::limits::{MAX_REPLICAS, MAX_WINDOW};
use sysmanage_scaling::{
    AutoScaler, Behavior, Composite, CompositeConfig, Controller, DecisionStats, Hpa, HpaSpec,
    InMemoryMetrics, InMemoryTarget, MetricSource, MetricSpec, MetricTarget, MetricValue,
    Observation, PodSample, PodStatus, PolicyType, PredictiveConfig, ReplicaCounts, ResolvedRules,
    Scaler, ScalerConfig, ScalingError, ScalingPolicy, ScalingRules, SeasonalNaive, SelectPolicy,
    ServiceModel, Tolerances, Trace, simulate,
};

// ---------------------------------------------------------------- strategies

fn f64_hostile() -> impl Strategy<Value = f64> {
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
        Just(f64::EPSILON),
        Just(1e-4),
        any::<f64>(),
        -10.0..1e4f64,
        0.0..200.0f64,
    ]
}

fn u32_hostile() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(MAX_REPLICAS - 1),
        Just(MAX_REPLICAS),
        Just(MAX_REPLICAS + 1),
        Just(3_000_000_000),
        Just(u32::MAX),
        any::<u32>(),
        0u32..50,
    ]
}

fn i32_hostile() -> impl Strategy<Value = i32> {
    prop_oneof![
        Just(i32::MIN),
        Just(-1),
        Just(0),
        Just(1),
        Just(i32::MAX),
        any::<i32>(),
        1i32..150
    ]
}

fn duration_hostile() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(15)),
        Just(Duration::from_secs(3600)),
        Just(MAX_WINDOW),
        Just(MAX_WINDOW + Duration::from_nanos(1)),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::MAX),
        any::<u64>().prop_map(Duration::from_nanos),
        (0u64..100_000).prop_map(Duration::from_secs),
    ]
}

fn ts_hostile() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        Just(Timestamp::from_millis(i64::MIN)),
        Just(Timestamp::from_millis(i64::MAX)),
        Just(Timestamp::from_millis(0)),
        any::<i64>().prop_map(Timestamp::from_millis),
        (0i64..1_000_000).prop_map(Timestamp::from_secs),
    ]
}

fn name_hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("cpu".to_owned()),
        Just("rps".to_owned()),
        Just("queue".to_owned()),
        "[a-z]{1,4}",
        Just("x".repeat(10_000)),
    ]
}

fn source() -> impl Strategy<Value = MetricSource> {
    prop_oneof![
        Just(MetricSource::Resource),
        Just(MetricSource::ContainerResource),
        Just(MetricSource::Pods),
        Just(MetricSource::Object),
        Just(MetricSource::External),
    ]
}

fn target() -> impl Strategy<Value = MetricTarget> {
    prop_oneof![
        i32_hostile().prop_map(MetricTarget::Utilization),
        f64_hostile().prop_map(MetricTarget::AverageValue),
        f64_hostile().prop_map(MetricTarget::Value),
    ]
}

fn metric_spec() -> impl Strategy<Value = MetricSpec> {
    (name_hostile(), source(), target()).prop_map(|(n, s, t)| MetricSpec::new(n, s, t))
}

fn pod() -> impl Strategy<Value = PodSample> {
    (
        proptest::option::of(f64_hostile()),
        proptest::option::of(f64_hostile()),
        prop_oneof![
            Just(PodStatus::Ready),
            Just(PodStatus::Unready),
            Just(PodStatus::Pending),
            Just(PodStatus::Ignored)
        ],
    )
        .prop_map(|(value, request, status)| PodSample {
            value,
            request,
            status,
        })
}

fn metric_value() -> impl Strategy<Value = MetricValue> {
    prop_oneof![
        proptest::collection::vec(pod(), 0..12).prop_map(MetricValue::PerPod),
        f64_hostile().prop_map(MetricValue::Average),
        f64_hostile().prop_map(MetricValue::Total),
        Just(MetricValue::Unavailable("down".into())),
    ]
}

fn policy() -> impl Strategy<Value = ScalingPolicy> {
    (any::<bool>(), u32_hostile(), u32_hostile()).prop_map(|(pods, v, p)| {
        if pods {
            ScalingPolicy::pods(v, p)
        } else {
            ScalingPolicy::percent(v, p)
        }
    })
}

fn rules() -> impl Strategy<Value = ScalingRules> {
    (
        proptest::option::of(u32_hostile()),
        proptest::option::of(prop_oneof![
            Just(SelectPolicy::Max),
            Just(SelectPolicy::Min),
            Just(SelectPolicy::Disabled)
        ]),
        proptest::option::of(proptest::collection::vec(policy(), 0..4)),
        proptest::option::of(f64_hostile()),
    )
        .prop_map(|(w, sel, pols, tol)| ScalingRules {
            stabilization_window_seconds: w,
            select_policy: sel,
            policies: pols,
            tolerance: tol,
        })
}

fn hpa_spec() -> impl Strategy<Value = HpaSpec> {
    (
        u32_hostile(),
        u32_hostile(),
        proptest::collection::vec(metric_spec(), 0..4),
        proptest::option::of((proptest::option::of(rules()), proptest::option::of(rules()))),
        f64_hostile(),
    )
        .prop_map(|(min, max, metrics, behavior, tol)| {
            let mut s = HpaSpec::new(min, max, metrics).with_tolerance(tol);
            if let Some((up, down)) = behavior {
                s = s.with_behavior(Behavior {
                    scale_up: up,
                    scale_down: down,
                });
            }
            s
        })
}

/// A spec that validates, so the decision path is exercised often.
fn valid_hpa_spec() -> impl Strategy<Value = HpaSpec> {
    (
        1u32..40,
        0u32..60,
        any::<bool>(),
        proptest::option::of(rules()),
    )
        .prop_map(|(min, extra, behavior, up)| {
            let s = HpaSpec::new(
                min,
                min + extra,
                vec![
                    MetricSpec::resource_utilization("cpu", 60),
                    MetricSpec::pods_average_value("rps", 100.0),
                    MetricSpec::object_value("queue", 30.0),
                    MetricSpec::external_average_value("ext", 10.0),
                ],
            );
            if behavior {
                s.with_behavior(Behavior {
                    scale_up: up.filter(|r| {
                        HpaSpec::new(1, 1, vec![MetricSpec::resource_utilization("cpu", 1)])
                            .with_behavior(Behavior {
                                scale_up: Some(r.clone()),
                                scale_down: None,
                            })
                            .validate()
                            .is_ok()
                    }),
                    scale_down: None,
                })
            } else {
                s
            }
        })
}

fn observation() -> impl Strategy<Value = Observation> {
    (
        u32_hostile(),
        proptest::option::of(u32_hostile()),
        proptest::option::of(u32_hostile()),
        proptest::collection::vec(
            (
                prop_oneof![
                    Just("cpu".to_owned()),
                    Just("rps".to_owned()),
                    Just("queue".to_owned()),
                    Just("ext".to_owned()),
                    Just("memory".to_owned())
                ],
                metric_value(),
            ),
            0..6,
        ),
        proptest::option::of(f64_hostile()),
        proptest::option::of(f64_hostile()),
    )
        .prop_map(|(cur, status, ready, readings, lat, err)| {
            let mut o = Observation::new(cur);
            o.status_replicas = status;
            o.ready_replicas = ready;
            for (n, v) in readings {
                o = o.reading(n, v);
            }
            o.latency_p95_ms = lat;
            o.error_rate = err;
            o
        })
}

// ---------------------------------------------------------------- checks

fn finite_opt(x: Option<f64>) -> bool {
    x.is_none_or(f64::is_finite)
}

fn check_decision(
    d: &sysmanage_scaling::Decision,
    max: u32,
) -> std::result::Result<(), TestCaseError> {
    prop_assert!(
        d.desired_replicas <= max,
        "desired {} > max {max}",
        d.desired_replicas
    );
    prop_assert!(d.desired_replicas <= MAX_REPLICAS);
    for p in &d.proposals {
        prop_assert!(finite_opt(p.usage_ratio), "usage ratio {:?}", p.usage_ratio);
        prop_assert!(finite_opt(p.current), "current {:?}", p.current);
        prop_assert!(p.replicas.is_none_or(|r| r <= MAX_REPLICAS));
    }
    if let Some(f) = &d.forecast {
        prop_assert!(f.value.is_finite());
        prop_assert!(finite_opt(f.recent_error));
    }
    Ok(())
}

/// A forecaster returning whatever it was built with.
#[derive(Debug)]
struct Hostile {
    point: f64,
    error: Option<f64>,
}

impl LoadForecast for Hostile {
    fn forecast(
        &self,
        _: &str,
        now: Timestamp,
        horizon: Duration,
    ) -> sysmanage_core::Result<Forecast> {
        // non-finite points cannot be built: they come back as errors
        Forecast::exact(now + horizon, self.point)
    }
    fn recent_error(&self, _: &str) -> Option<f64> {
        self.error
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn calculate_never_panics_and_stays_in_bounds(
        spec in metric_spec(),
        value in metric_value(),
        (s, st, r) in (u32_hostile(), u32_hostile(), u32_hostile()),
        (down, up) in (f64_hostile(), f64_hostile()),
    ) {
        let counts = ReplicaCounts { spec: s, status: st, ready: r };
        let tol = Tolerances { scale_down: down, scale_up: up };
        if let Ok(Ok(c)) = calculate(&spec, &value, counts, tol) {
            prop_assert!(spec.validate().is_ok());
            prop_assert!(c.replicas <= MAX_REPLICAS);
            prop_assert!(c.usage_ratio.is_finite(), "ratio {}", c.usage_ratio);
            prop_assert!(c.current.is_finite());
        }
    }

    #[test]
    fn hpa_specs_validate_or_decide_within_bounds(
        spec in hpa_spec(),
        obs in proptest::collection::vec(observation(), 1..4),
        times in proptest::collection::vec(ts_hostile(), 4),
    ) {
        let Ok(mut hpa) = Hpa::new(spec.clone()) else { return Ok(()) };
        prop_assert!(spec.max_replicas <= MAX_REPLICAS);
        for (o, now) in obs.iter().zip(times) {
            if let Ok(d) = hpa.decide(o, now) {
                check_decision(&d, spec.max_replicas)?;
                hpa.record_actuation(o.current_replicas, d.desired_replicas, now);
            }
        }
    }

    #[test]
    fn valid_hpas_decide_on_hostile_observations(
        spec in valid_hpa_spec(),
        obs in proptest::collection::vec(observation(), 1..6),
        times in proptest::collection::vec(ts_hostile(), 6),
    ) {
        let mut hpa = Hpa::new(spec.clone()).unwrap();
        for (o, now) in obs.iter().zip(times) {
            match hpa.decide(o, now) {
                Ok(d) => {
                    check_decision(&d, spec.max_replicas)?;
                    hpa.record_actuation(o.current_replicas, d.desired_replicas, now);
                }
                Err(e) => {
                    // typed, and it names what was wrong
                    prop_assert!(!e.to_string().is_empty());
                }
            }
            let _ = hpa.propose(o);
        }
    }

    #[test]
    fn normalize_takes_any_counts(
        spec in valid_hpa_spec(),
        current in u32_hostile(),
        proposed in u32_hostile(),
        now in ts_hostile(),
    ) {
        let mut hpa = Hpa::new(spec.clone()).unwrap();
        match hpa.normalize(current, proposed, now) {
            Ok((d, _, _)) => {
                prop_assert!(current <= MAX_REPLICAS && proposed <= MAX_REPLICAS);
                prop_assert!(d <= spec.max_replicas.max(current));
            }
            Err(e) => {
                let out_of_range = matches!(e, ScalingError::OutOfRange { .. });
                prop_assert!(out_of_range, "{}", e);
            }
        }
    }

    #[test]
    fn kube_helpers_never_panic(
        current in u32_hostile(),
        desired in u32_hostile(),
        (min, max) in (u32_hostile(), u32_hostile()),
        changes in proptest::collection::vec((u32_hostile(), ts_hostile()), 0..8),
        pols in proptest::collection::vec(policy(), 1..4),
        (w_up, w_down) in (u32_hostile(), u32_hostile()),
        now in ts_hostile(),
        window in duration_hostile(),
    ) {
        let events: Vec<kube::ScaleEvent> = changes
            .iter()
            .map(|&(change, at)| kube::ScaleEvent { change, at, outdated: false })
            .collect();
        let rules = ResolvedRules {
            stabilization_window_seconds: w_up,
            select_policy: SelectPolicy::Max,
            policies: pols.clone(),
            tolerance: 0.1,
        };
        let min_rules = ResolvedRules { select_policy: SelectPolicy::Min, ..rules.clone() };
        for p in &pols {
            let _ = kube::replicas_change_per_period(p.period_seconds, &events, now);
        }
        let _ = kube::scale_up_limit(current, &events, &events, &rules, now);
        let _ = kube::scale_down_limit(current, &events, &events, &min_rules, now);
        let _ = kube::convert_with_behavior_rate(
            RateArgs {
                current,
                desired,
                min,
                max,
                up: &rules,
                down: &min_rules,
                up_events: &events,
                down_events: &events,
            },
            now,
        );
        let _ = kube::legacy_scale_up_limit(current);
        let (d, _) = kube::convert_with_rules(current, desired, min, max);
        prop_assert!(d == desired || d == min || d == max || d == kube::legacy_scale_up_limit(current));
        let mut recs: Vec<kube::Recommendation> = changes
            .iter()
            .map(|&(replicas, at)| kube::Recommendation { replicas, at })
            .collect();
        let s = kube::stabilize(&mut recs, desired, window, now);
        prop_assert!(s >= desired);
        let _ = kube::stabilize_with_behaviors(&mut recs, current, desired, w_up, w_down, now);
        let mut evs = events.clone();
        kube::store_scale_event(&mut evs, w_down, desired, now);
        prop_assert!(evs.len() <= events.len() + 1);
        let _ = PolicyType::Pods;
    }

    #[test]
    fn scalers_validate_or_decide_within_bounds(
        spec in valid_hpa_spec(),
        (per_replica, lead, step, max_err) in (f64_hostile(), duration_hostile(), duration_hostile(), f64_hostile()),
        (point, error) in (f64_hostile(), proptest::option::of(f64_hostile())),
        flap in proptest::option::of((u32_hostile(), duration_hostile())),
        (lat, err_rate, extra) in (proptest::option::of(f64_hostile()), proptest::option::of(f64_hostile()), any::<bool>()),
        activation in proptest::option::of((f64_hostile(), duration_hostile())),
        fallback in proptest::option::of((u32_hostile(), u32_hostile())),
        obs in proptest::collection::vec(observation(), 1..5),
        times in proptest::collection::vec(ts_hostile(), 5),
    ) {
        let mut hpa = spec.clone();
        let mut cfg = ScalerConfig::new("hostile", spec.clone())
            .predictive(PredictiveConfig {
                step,
                max_recent_error: max_err,
                ..PredictiveConfig::new("rps", per_replica, lead)
            })
            .guards(sysmanage_scaling::Guards {
                latency_slo_ms: lat,
                max_error_rate: err_rate,
                extra_step_up: extra,
            });
        if let Some((n, w)) = flap {
            cfg = cfg.flap_budget(n, w);
        }
        if let Some((threshold, cooldown)) = activation {
            hpa.min_replicas = 0;
            hpa.metrics.push(MetricSpec::external_value("act", 1.0));
            cfg.hpa = hpa;
            cfg = cfg.activation("act", threshold, cooldown);
        }
        if let Some((n, r)) = fallback {
            cfg = cfg.fallback(n, r);
        }
        let max = cfg.hpa.max_replicas;
        let f: Arc<dyn LoadForecast> = Arc::new(Hostile { point, error });
        let Ok(mut s) = Scaler::new(cfg, Some(f)) else { return Ok(()) };
        for (o, now) in obs.iter().zip(times) {
            if let Ok(d) = s.decide(o, now) {
                check_decision(&d, max)?;
                s.record_actuation(o.current_replicas, d.desired_replicas, now);
            }
        }
    }

    #[test]
    fn composite_validates_or_decides_within_bounds(
        (min, max) in (u32_hostile(), u32_hostile()),
        th in proptest::collection::vec(f64_hostile(), 5),
        weights in proptest::collection::vec(f64_hostile(), 5),
        cooldown in duration_hostile(),
        tol in f64_hostile(),
        obs in proptest::collection::vec(observation(), 1..5),
        times in proptest::collection::vec(ts_hostile(), 5),
    ) {
        let cfg = CompositeConfig {
            min_replicas: min,
            max_replicas: max,
            scale_up_threshold: th[0],
            scale_down_threshold: th[1],
            target_latency_ms: th[2],
            target_queue: th[3],
            error_threshold: th[4],
            weights: [weights[0], weights[1], weights[2], weights[3], weights[4]],
            scale_down_cooldown: cooldown,
            tolerance: tol,
        };
        let defaults = Composite::new(CompositeConfig::default()).unwrap();
        for mut c in [Composite::new(cfg).ok(), Some(defaults)].into_iter().flatten() {
            for (o, now) in obs.iter().zip(&times) {
                if let Ok(d) = c.decide(o, *now) {
                    prop_assert!(d.desired_replicas <= MAX_REPLICAS);
                    for p in &d.proposals {
                        prop_assert!(finite_opt(p.usage_ratio));
                    }
                    c.record_actuation(o.current_replicas, d.desired_replicas, *now);
                }
            }
        }
    }

    #[test]
    fn simulate_validates_or_reports_finite_numbers(
        rps in proptest::collection::vec(f64_hostile(), 0..30),
        interval in duration_hostile(),
        (cap, base, slo) in (f64_hostile(), f64_hostile(), f64_hostile()),
        startup in duration_hostile(),
        initial in u32_hostile(),
    ) {
        let Ok(trace) = Trace::new("t", Duration::from_secs(60), rps) else { return Ok(()) };
        let model = ServiceModel {
            capacity_per_replica: cap,
            startup,
            base_latency_ms: base,
            slo_latency_ms: slo,
            initial_replicas: initial,
        };
        let spec = HpaSpec::new(1, 50, vec![MetricSpec::resource_utilization("cpu", 70)])
            .with_behavior(Behavior::default());
        let mut hpa = Hpa::new(spec).unwrap();
        if let Ok(r) = simulate(&trace, &mut hpa, &model, interval, None) {
            prop_assert!(r.slo_violation_minutes.is_finite() && r.slo_violation_minutes >= 0.0);
            prop_assert!(r.replica_hours.is_finite() && r.replica_hours >= 0.0);
            prop_assert!(r.peak_replicas <= MAX_REPLICAS);
        }
    }

    #[test]
    fn traces_and_forecasters_never_panic(
        text in prop_oneof![Just(String::new()), ".{0,200}", "(minute,rps\n)?([0-9]{1,20},[-0-9.eE]{1,12}\n){0,6}"],
        days in prop_oneof![Just(0u32), Just(11_001), Just(u32::MAX)],
        base in f64_hostile(),
        (step, season, horizon) in (duration_hostile(), duration_hostile(), duration_hostile()),
        values in proptest::collection::vec((ts_hostile(), f64_hostile()), 0..40),
        trunc in duration_hostile(),
        at in duration_hostile(),
    ) {
        if let Ok(t) = Trace::from_csv("t", &text) {
            prop_assert!(t.rps().iter().all(|v| v.is_finite() && *v >= 0.0));
            prop_assert!(t.truncated(trunc).rps_at(at).is_finite());
        }
        prop_assert!(Trace::synthetic(1, days, 1.0).is_err());
        if let Ok(t) = Trace::synthetic(3, 1, base) {
            prop_assert!(t.rps().iter().all(|v| v.is_finite()));
        }
        if let Ok(f) = SeasonalNaive::new("rps", step, season) {
            for (at, v) in &values {
                if v.is_finite() && *v >= 0.0 {
                    f.observe(*at, *v);
                }
            }
            if let Ok(fc) = f.forecast("rps", Timestamp::from_secs(0), horizon) {
                prop_assert!(fc.point.is_finite());
            }
            prop_assert!(finite_opt(f.recent_error("rps")));
        }
    }

    #[test]
    fn decision_stats_and_controller_config_never_panic(
        cap in prop_oneof![Just(0usize), Just(1), Just(usize::MAX), any::<usize>()],
        records in proptest::collection::vec(ts_hostile(), 0..20),
        now in ts_hostile(),
        window in duration_hostile(),
        interval in duration_hostile(),
        timeout in duration_hostile(),
    ) {
        let mut s = DecisionStats::new(cap);
        for at in records {
            s.record(at, sysmanage_scaling::Action::ScaleUp);
        }
        let snap = s.snapshot(now, window);
        prop_assert!(snap.actions_per_hour.is_finite() && snap.actions_per_hour >= 0.0);
        let spec = HpaSpec::new(1, 5, vec![MetricSpec::resource_utilization("cpu", 50)]);
        let ctl = Controller::new(
            Hpa::new(spec).unwrap(),
            Arc::new(InMemoryMetrics::default()),
            Arc::new(InMemoryTarget::new(1)),
            Arc::new(sysmanage_core::ManualClock::new(Timestamp::EPOCH)),
            interval,
        );
        match ctl {
            Ok(c) => {
                prop_assert!(interval > Duration::ZERO && interval <= MAX_WINDOW);
                if c.with_call_timeout(timeout).is_ok() {
                    prop_assert!(timeout > Duration::ZERO && timeout <= MAX_WINDOW);
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("controller.interval"), "{e}"),
        }
    }
}

// ---------------------------------------------------------------- regressions

#[test]
fn calculate_rejects_a_zero_target() {
    // was Ok(Ok(2147483647 replicas))
    let spec = MetricSpec::external_average_value("queue", 0.0);
    let counts = ReplicaCounts {
        spec: 2,
        status: 2,
        ready: 2,
    };
    let e = calculate(
        &spec,
        &MetricValue::Total(10.0),
        counts,
        Tolerances::symmetric(0.1),
    )
    .unwrap_err();
    assert!(e.to_string().contains("metrics.target.value"), "{e}");
    let pods = MetricSpec::pods_average_value("rps", 0.0);
    assert!(
        calculate(
            &pods,
            &MetricValue::Average(5.0),
            counts,
            Tolerances::symmetric(0.1)
        )
        .is_err()
    );
    let util = MetricSpec::resource_utilization("cpu", 0);
    assert!(
        calculate(
            &util,
            &MetricValue::Average(5.0),
            counts,
            Tolerances::symmetric(0.1)
        )
        .is_err()
    );
    // a NaN tolerance is an error, not "never within tolerance"
    let ok = MetricSpec::external_average_value("queue", 1.0);
    let e = calculate(
        &ok,
        &MetricValue::Total(10.0),
        counts,
        Tolerances::symmetric(f64::NAN),
    )
    .unwrap_err();
    assert!(e.to_string().contains("tolerances"), "{e}");
}

#[test]
fn max_replicas_is_bounded_to_int32() {
    // was accepted up to u32::MAX
    let spec = HpaSpec::new(
        1,
        u32::MAX,
        vec![MetricSpec::resource_utilization("cpu", 50)],
    );
    let e = spec.validate().unwrap_err();
    assert!(
        matches!(
            e,
            ScalingError::OutOfRange {
                field: "maxReplicas",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("0..=2147483647"), "{e}");
    let spec = HpaSpec::new(
        MAX_REPLICAS + 1,
        MAX_REPLICAS + 1,
        vec![MetricSpec::resource_utilization("cpu", 50)],
    );
    assert!(spec.validate().is_err());
    // a policy value is int32 too
    let spec = HpaSpec::new(1, 10, vec![MetricSpec::resource_utilization("cpu", 50)])
        .with_behavior(Behavior {
            scale_up: Some(ScalingRules::new(
                0,
                vec![ScalingPolicy::pods(u32::MAX, 15)],
            )),
            scale_down: None,
        });
    assert!(spec.validate().is_err());
    assert!(
        HpaSpec::new(
            1,
            MAX_REPLICAS,
            vec![MetricSpec::resource_utilization("cpu", 50)]
        )
        .validate()
        .is_ok()
    );
}

#[test]
fn three_billion_current_replicas_are_an_error_not_a_scale_down() {
    // was: a scale-up signal scaled 3e9 replicas DOWN to 2,147,483,647
    let spec = HpaSpec::new(
        1,
        MAX_REPLICAS,
        vec![MetricSpec::resource_utilization("cpu", 50)],
    )
    .with_behavior(Behavior::default());
    let mut hpa = Hpa::new(spec.clone()).unwrap();
    let obs = Observation::new(3_000_000_000).reading("cpu", MetricValue::Average(90.0));
    let e = hpa.decide(&obs, Timestamp::from_secs(0)).unwrap_err();
    assert!(
        matches!(
            e,
            ScalingError::OutOfRange {
                field: "observation.currentReplicas",
                ..
            }
        ),
        "{e}"
    );
    let e = hpa
        .normalize(3_000_000_000, 3_100_000_000, Timestamp::from_secs(0))
        .unwrap_err();
    assert!(e.to_string().contains("currentReplicas"), "{e}");
    let mut s = Scaler::new(ScalerConfig::new("s", spec), None).unwrap();
    assert!(s.decide(&obs, Timestamp::from_secs(0)).is_err());
    let mut c = Composite::new(CompositeConfig::default()).unwrap();
    assert!(c.decide(&obs, Timestamp::from_secs(0)).is_err());
    // ready and status counts too
    let obs = Observation::new(4)
        .ready(u32::MAX)
        .reading("cpu", MetricValue::Average(90.0));
    assert!(hpa.decide(&obs, Timestamp::from_secs(0)).is_err());
    // at the int32 bound a scale-up signal never scales down
    let obs = Observation::new(MAX_REPLICAS - 10).reading("cpu", MetricValue::Average(90.0));
    let d = hpa.decide(&obs, Timestamp::from_secs(0)).unwrap();
    assert!(d.desired_replicas >= MAX_REPLICAS - 10, "{d:?}");
}

#[test]
fn guard_extra_step_stays_within_int32() {
    let spec = HpaSpec::new(
        1,
        MAX_REPLICAS,
        vec![MetricSpec::resource_utilization("cpu", 1)],
    )
    .with_behavior(Behavior {
        scale_up: Some(ScalingRules::new(0, vec![ScalingPolicy::percent(1000, 15)])),
        scale_down: None,
    });
    let cfg = ScalerConfig::new("g", spec).guards(sysmanage_scaling::Guards {
        latency_slo_ms: Some(1.0),
        max_error_rate: None,
        extra_step_up: true,
    });
    let mut s = Scaler::new(cfg, None).unwrap();
    let obs = Observation::new(MAX_REPLICAS / 2)
        .reading("cpu", MetricValue::Average(100.0))
        .latency_p95_ms(10.0);
    let d = s.decide(&obs, Timestamp::from_secs(0)).unwrap();
    assert_eq!(d.desired_replicas, MAX_REPLICAS);
}

#[test]
fn durations_that_would_panic_or_hang_later_are_rejected() {
    let spec = || HpaSpec::new(1, 5, vec![MetricSpec::resource_utilization("cpu", 50)]);
    // controller timers: Duration::MAX overflowed the timer's deadline
    let e = Controller::new(
        Hpa::new(spec()).unwrap(),
        Arc::new(InMemoryMetrics::default()),
        Arc::new(InMemoryTarget::new(1)),
        Arc::new(sysmanage_core::ManualClock::new(Timestamp::EPOCH)),
        Duration::MAX,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("controller.interval must be in 1ms..=86400s"),
        "{e}"
    );
    // a lead time of years at a nanosecond step was an endless forecast loop
    let f: Arc<dyn LoadForecast> = Arc::new(Hostile {
        point: 1.0,
        error: Some(0.0),
    });
    let cfg = ScalerConfig::new("p", spec()).predictive(PredictiveConfig {
        step: Duration::from_nanos(1),
        ..PredictiveConfig::new("rps", 10.0, Duration::from_secs(u64::MAX))
    });
    let e = Scaler::new(cfg, Some(f.clone())).unwrap_err();
    assert!(e.to_string().contains("predictive.leadTime"), "{e}");
    let cfg = ScalerConfig::new("p", spec()).predictive(PredictiveConfig {
        step: Duration::from_millis(10),
        ..PredictiveConfig::new("rps", 10.0, Duration::from_secs(3600))
    });
    let e = Scaler::new(cfg, Some(f.clone())).unwrap_err();
    assert!(e.to_string().contains("predictive.step"), "{e}");
    // a per-replica load below Kubernetes' milli-unit made every forecast unusable
    let cfg = ScalerConfig::new("p", spec()).predictive(PredictiveConfig::new(
        "rps",
        1e-9,
        Duration::from_secs(60),
    ));
    assert!(Scaler::new(cfg, Some(f)).is_err());
    // flap windows, cooldowns
    let cfg = ScalerConfig::new("f", spec()).flap_budget(2, Duration::MAX);
    assert!(Scaler::new(cfg, None).is_err());
    let cfg = ScalerConfig::new("f", spec()).flap_budget(1000, Duration::from_secs(60));
    assert!(Scaler::new(cfg, None).is_err());
    let mut zero = spec();
    zero.min_replicas = 0;
    zero.metrics.push(MetricSpec::external_value("q", 1.0));
    let cfg = ScalerConfig::new("a", zero).activation("q", 0.0, Duration::MAX);
    assert!(Scaler::new(cfg, None).is_err());
    assert!(
        Composite::new(CompositeConfig {
            scale_down_cooldown: Duration::MAX,
            ..CompositeConfig::default()
        })
        .is_err()
    );
    // simulation: start-up beyond a day, sub-second steps
    let trace = Trace::synthetic(1, 1, 100.0).unwrap();
    let mut hpa = Hpa::new(spec()).unwrap();
    let model = ServiceModel {
        startup: Duration::MAX,
        ..ServiceModel::default()
    };
    let e = simulate(&trace, &mut hpa, &model, Duration::from_secs(15), None).unwrap_err();
    assert!(e.to_string().contains("model.startup"), "{e}");
}

#[test]
fn seasonal_naive_with_a_sub_millisecond_step_is_an_error_not_a_panic() {
    // was: division by zero (step.as_millis() == 0)
    let e =
        SeasonalNaive::new("rps", Duration::from_nanos(1), Duration::from_nanos(1)).unwrap_err();
    assert!(e.to_string().contains("seasonalNaive.step"), "{e}");
    // a season of 2^40 steps would hold that many samples
    assert!(
        SeasonalNaive::new("rps", Duration::from_secs(1), Duration::from_secs(1 << 40)).is_err()
    );
    // a horizon beyond usize is insufficient data, not a truncated index
    let f = SeasonalNaive::new("rps", Duration::from_secs(60), Duration::from_secs(600)).unwrap();
    for i in 0..20 {
        f.observe(Timestamp::from_secs(i * 60), 100.0);
    }
    assert!(
        f.forecast("rps", Timestamp::from_secs(0), Duration::MAX)
            .is_err()
    );
    assert!(
        f.forecast("rps", Timestamp::from_secs(0), Duration::from_secs(60))
            .is_ok()
    );
}

#[test]
fn object_average_value_with_no_replicas_reports_a_finite_ratio() {
    // was NaN (0 / 0) or +inf in the decision's proposals
    let spec = MetricSpec::object_average_value("queue", 10.0);
    let counts = ReplicaCounts {
        spec: 0,
        status: 0,
        ready: 0,
    };
    for v in [0.0, 10.0, 95.0] {
        let c = calculate(
            &spec,
            &MetricValue::Total(v),
            counts,
            Tolerances::symmetric(0.1),
        )
        .unwrap()
        .unwrap();
        assert!(c.usage_ratio.is_finite(), "{v}: {c:?}");
        assert_eq!(c.replicas, (v / 10.0_f64).ceil() as u32);
    }
}

#[test]
fn seasonal_naive_error_stays_finite_on_subnormal_actuals() {
    // was +inf: |forecast − actual| / actual with a subnormal actual
    let f = SeasonalNaive::new(
        "rps",
        Duration::from_secs(86_400),
        Duration::from_secs(86_400),
    )
    .unwrap();
    f.observe(Timestamp::from_secs(0), 8503.7);
    f.observe(Timestamp::from_secs(86_400), 5.6e-309);
    let e = f.recent_error("rps").unwrap();
    assert!(e.is_finite() && e > 1.0, "{e}");
}
