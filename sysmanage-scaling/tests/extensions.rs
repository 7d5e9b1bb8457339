//! Beyond the HPA: prediction, flap budget, guards, activation, fallback, state, bad input.

use std::sync::Arc;
use std::time::Duration;

use sysmanage_core::{Forecast, LoadForecast, Timestamp};
use sysmanage_scaling::{
    AutoScaler, Behavior, Guards, Hpa, HpaSpec, HpaState, MetricSpec, MetricValue, Observation,
    PredictiveConfig, Reason, Scaler, ScalerConfig, ScalerState, ScalingError, ScalingPolicy,
    ScalingRules,
};

const T0: Timestamp = Timestamp::from_secs(1_700_000_000);

fn at(secs: u64) -> Timestamp {
    T0 + Duration::from_secs(secs)
}

/// A forecaster that always predicts `value` and reports `error`.
#[derive(Debug)]
struct Fixed {
    value: f64,
    error: Option<f64>,
    fail: bool,
}

impl LoadForecast for Fixed {
    fn forecast(
        &self,
        _m: &str,
        now: Timestamp,
        horizon: Duration,
    ) -> sysmanage_core::Result<Forecast> {
        if self.fail {
            return Err(sysmanage_core::Error::InsufficientData {
                what: "test",
                needed: 1,
                have: 0,
            });
        }
        Forecast::exact(now + horizon, self.value)
    }
    fn recent_error(&self, _m: &str) -> Option<f64> {
        self.error
    }
}

/// Fast behaviour: no stabilization, generous rate limits.
fn fast() -> Behavior {
    Behavior {
        scale_up: Some(ScalingRules::new(0, vec![ScalingPolicy::percent(1000, 15)])),
        scale_down: Some(ScalingRules::new(0, vec![ScalingPolicy::percent(100, 15)])),
    }
}

fn cpu_hpa() -> HpaSpec {
    HpaSpec::new(1, 50, vec![MetricSpec::resource_utilization("cpu", 60)]).with_behavior(fast())
}

fn cpu(current: u32, pct: f64) -> Observation {
    Observation::new(current).reading("cpu", MetricValue::Average(pct))
}

fn predictive(value: f64, error: Option<f64>, tweak: impl FnOnce(&mut PredictiveConfig)) -> Scaler {
    let mut p = PredictiveConfig::new("rps", 60.0, Duration::from_secs(180));
    tweak(&mut p);
    let f: Arc<dyn LoadForecast> = Arc::new(Fixed {
        value,
        error,
        fail: false,
    });
    Scaler::new(
        ScalerConfig::new("predictive", cpu_hpa()).predictive(p),
        Some(f),
    )
    .unwrap()
}

#[test]
fn forecast_scales_out_ahead_of_load() {
    let mut s = predictive(1000.0, Some(0.05), |_| {});
    let d = s.decide(&cpu(4, 60.0), T0).unwrap();
    // reactive: at target → 4; predictive: ceil(1000 / 60) = 17
    assert_eq!(d.desired_replicas, 17);
    assert!(d.has(Reason::ForecastUsed));
    let f = d.forecast.unwrap();
    assert!(f.applied);
    assert_eq!((f.replicas, f.recent_error), (17, Some(0.05)));
    // the scale-in floor keeps the measured error as a margin: ceil(1050 / 60)
    assert_eq!((f.peak, f.peak_replicas), (1000.0, 18));
    assert!(
        d.proposals
            .iter()
            .any(|p| p.metric == "forecast:rps" && p.replicas == Some(17))
    );
}

#[test]
fn max_of_reactive_and_predictive() {
    // reactive wants ceil(120/60 × 4) = 8, forecast only 5: reactive wins
    let mut s = predictive(300.0, Some(0.1), |_| {});
    let d = s.decide(&cpu(4, 120.0), T0).unwrap();
    assert_eq!(d.desired_replicas, 8);
    assert!(d.has(Reason::ForecastIgnored));
}

#[test]
fn forecast_with_high_or_unknown_error_is_ignored() {
    for err in [Some(0.5), None, Some(f64::NAN)] {
        let mut s = predictive(1000.0, err, |_| {});
        let d = s.decide(&cpu(4, 60.0), T0).unwrap();
        assert_eq!(d.desired_replicas, 4, "error {err:?}");
        assert!(d.has(Reason::ForecastIgnored));
        assert!(!d.forecast.unwrap().applied);
    }
}

#[test]
fn shadow_mode_reports_without_acting() {
    let mut s = predictive(1000.0, Some(0.05), |p| p.shadow = true);
    let d = s.decide(&cpu(4, 60.0), T0).unwrap();
    assert_eq!(d.desired_replicas, 4);
    let f = d.forecast.unwrap();
    assert_eq!((f.replicas, f.applied), (17, false));
}

#[test]
fn forecast_gated_scale_in_skips_the_downscale_window_only_when_both_agree() {
    // the Kubernetes default behavior: a 300 s downscale window, 100 % per 15 s
    let windowed = |value: f64, error: f64, scale_in: bool, down: Option<ScalingRules>| {
        let hpa = HpaSpec::new(1, 50, vec![MetricSpec::resource_utilization("cpu", 60)])
            .with_behavior(Behavior {
                scale_up: None,
                scale_down: down,
            });
        let f: Arc<dyn LoadForecast> = Arc::new(Fixed {
            value,
            error: Some(error),
            fail: false,
        });
        let cfg = ScalerConfig::new("p", hpa).predictive(PredictiveConfig {
            allow_scale_in: scale_in,
            ..PredictiveConfig::new("rps", 60.0, Duration::from_secs(180))
        });
        Scaler::new(cfg, Some(f)).unwrap()
    };
    // reactive: ceil(20/60 × 4) = 2; the window holds 4
    let mut s = windowed(60.0, 0.05, false, None);
    let d = s.decide(&cpu(4, 20.0), T0).unwrap();
    assert_eq!(d.desired_replicas, 4);
    assert!(d.has(Reason::ScaleDownStabilized));
    // on (the default): the forecast peak needs 1, the reactive proposal 2 → 2 now
    assert!(PredictiveConfig::new("rps", 1.0, Duration::from_secs(60)).allow_scale_in);
    let mut s = windowed(60.0, 0.05, true, None);
    let d = s.decide(&cpu(4, 20.0), T0).unwrap();
    assert_eq!(d.desired_replicas, 2);
    assert!(d.has(Reason::ForecastScaleIn));
    // the forecast alone never scales in: reactive at target holds 4
    let mut s = windowed(60.0, 0.05, true, None);
    assert_eq!(s.decide(&cpu(4, 60.0), T0).unwrap().desired_replicas, 4);
    // an untrusted forecast does not either
    let mut s = windowed(60.0, 0.5, true, None);
    assert_eq!(s.decide(&cpu(4, 20.0), T0).unwrap().desired_replicas, 4);
    // a forecast peak above the reactive proposal sets the floor: ceil(150/60) = 3
    let mut s = windowed(150.0, 0.05, true, None);
    assert_eq!(s.decide(&cpu(4, 20.0), T0).unwrap().desired_replicas, 3);
    // the rate policy still applies: at most 1 pod per 15 s
    let one_pod = ScalingRules::new(300, vec![ScalingPolicy::pods(1, 15)]);
    let mut s = windowed(60.0, 0.05, true, Some(one_pod));
    assert_eq!(s.decide(&cpu(4, 20.0), T0).unwrap().desired_replicas, 3);
}

#[test]
fn failing_forecaster_does_not_block_the_decision() {
    let f: Arc<dyn LoadForecast> = Arc::new(Fixed {
        value: 0.0,
        error: Some(0.0),
        fail: true,
    });
    let cfg = ScalerConfig::new("p", cpu_hpa()).predictive(PredictiveConfig::new(
        "rps",
        60.0,
        Duration::from_secs(60),
    ));
    let mut s = Scaler::new(cfg, Some(f)).unwrap();
    let d = s.decide(&cpu(4, 120.0), T0).unwrap();
    assert_eq!(d.desired_replicas, 8);
    assert!(d.has(Reason::ForecastIgnored));
    assert!(d.forecast.is_none());
}

#[test]
fn flap_budget_freezes_scale_down_after_k_reversals() {
    let cfg = ScalerConfig::new("flap", cpu_hpa()).flap_budget(2, Duration::from_secs(600));
    let mut s = Scaler::new(cfg, None).unwrap();
    s.record_actuation(4, 8, at(0));
    s.record_actuation(8, 4, at(60));
    s.record_actuation(4, 8, at(120)); // two reversals
    let d = s.decide(&cpu(8, 20.0), at(180)).unwrap();
    assert_eq!(d.desired_replicas, 8);
    assert!(d.has(Reason::FlapBudgetExhausted));
    // scale-up still allowed
    let d = s.decide(&cpu(8, 120.0), at(200)).unwrap();
    assert_eq!(d.desired_replicas, 16);
    // after the window the budget is back
    let d = s.decide(&cpu(8, 20.0), at(900)).unwrap();
    assert_eq!(d.desired_replicas, 3);
    assert!(!d.has(Reason::FlapBudgetExhausted));
}

#[test]
fn one_reversal_is_within_budget() {
    let cfg = ScalerConfig::new("flap", cpu_hpa()).flap_budget(2, Duration::from_secs(600));
    let mut s = Scaler::new(cfg, None).unwrap();
    s.record_actuation(4, 8, at(0));
    s.record_actuation(8, 6, at(60));
    let d = s.decide(&cpu(6, 20.0), at(120)).unwrap();
    assert_eq!(d.desired_replicas, 2);
}

fn guarded(extra: bool) -> Scaler {
    let g = Guards {
        latency_slo_ms: Some(250.0),
        max_error_rate: Some(0.02),
        extra_step_up: extra,
    };
    Scaler::new(ScalerConfig::new("guarded", cpu_hpa()).guards(g), None).unwrap()
}

#[test]
fn guards_block_scale_down() {
    let mut s = guarded(false);
    let d = s.decide(&cpu(8, 20.0).error_rate(0.1), T0).unwrap();
    assert_eq!(d.desired_replicas, 8);
    assert!(d.has(Reason::ErrorRateGuard));
    let d = s
        .decide(&cpu(8, 20.0).latency_p95_ms(100.0).error_rate(0.0), T0)
        .unwrap();
    assert_eq!(d.desired_replicas, 3, "no guard, scale down");
}

#[test]
fn guards_never_drive_scaling_alone_but_add_a_step_to_a_scale_up() {
    let mut s = guarded(true);
    // metrics at target, latency breached: hold, do not scale up
    let d = s.decide(&cpu(4, 60.0).latency_p95_ms(900.0), T0).unwrap();
    assert_eq!(d.desired_replicas, 4);
    assert!(d.has(Reason::LatencyGuard));
    // metrics want 8: the guard adds one step
    let d = s.decide(&cpu(4, 120.0).latency_p95_ms(900.0), T0).unwrap();
    assert_eq!(d.desired_replicas, 9);
    let mut plain = guarded(false);
    assert_eq!(
        plain
            .decide(&cpu(4, 120.0).latency_p95_ms(900.0), T0)
            .unwrap()
            .desired_replicas,
        8
    );
}

fn keda() -> Scaler {
    // KEDA: minReplicaCount 0 (scale to zero), the HPA part runs 1..=20
    let hpa = HpaSpec::new(
        0,
        20,
        vec![MetricSpec::external_average_value("queue", 10.0)],
    )
    .with_behavior(fast());
    let cfg = ScalerConfig::new("keda", hpa)
        .activation("queue", 0.0, Duration::from_secs(300))
        .fallback(3, 5);
    Scaler::new(cfg, None).unwrap()
}

fn queue(current: u32, depth: f64) -> Observation {
    Observation::new(current).reading("queue", MetricValue::Total(depth))
}

#[test]
fn activation_scales_from_and_to_zero_with_cooldown() {
    let mut s = keda();
    let d = s.decide(&queue(0, 0.0), at(0)).unwrap();
    assert_eq!(d.desired_replicas, 0);
    let d = s.decide(&queue(0, 35.0), at(15)).unwrap();
    assert_eq!((d.desired_replicas, d.reasons[0]), (1, Reason::Activated));
    s.record_actuation(0, 1, at(15));
    let d = s.decide(&queue(1, 35.0), at(30)).unwrap();
    assert_eq!(d.desired_replicas, 4, "ceil(35 / 10)");
    s.record_actuation(1, 4, at(30));
    // idle, but inside the cooldown: the HPA part scales down to 1, never to 0
    let d = s.decide(&queue(4, 0.0), at(200)).unwrap();
    assert!(d.has(Reason::CooldownHold));
    assert_eq!(d.desired_replicas, 1);
    s.record_actuation(4, 1, at(200));
    let d = s.decide(&queue(1, 0.0), at(329)).unwrap();
    assert!(d.has(Reason::CooldownHold));
    assert_eq!(d.desired_replicas, 1, "one second before the cooldown ends");
    // cooldown elapsed since the last activity (t = 30)
    let d = s.decide(&queue(1, 0.0), at(330)).unwrap();
    assert_eq!(
        (d.desired_replicas, d.reasons[0]),
        (0, Reason::ScaledToZero)
    );
}

#[test]
fn fallback_after_n_consecutive_failures_and_reset_on_recovery() {
    let mut s = keda();
    let broken = Observation::new(2).reading("queue", MetricValue::Unavailable("timeout".into()));
    for i in 0..2 {
        let d = s.decide(&broken, at(i)).unwrap();
        assert_eq!(d.desired_replicas, 2);
        assert!(d.has(Reason::FailedGetMetrics));
    }
    let d = s.decide(&broken, at(3)).unwrap();
    assert_eq!(d.desired_replicas, 5);
    assert!(d.has(Reason::FallbackReplicas));
    assert_eq!(s.state().consecutive_failures, 3);
    let d = s.decide(&queue(5, 20.0), at(4)).unwrap();
    assert_eq!(d.desired_replicas, 2);
    assert_eq!(s.state().consecutive_failures, 0);
}

#[test]
fn state_survives_a_restart() {
    let spec = HpaSpec::new(1, 20, vec![MetricSpec::resource_utilization("cpu", 50)]);
    let mut a = Hpa::new(spec.clone()).unwrap();
    a.decide(&cpu(10, 50.0), at(0)).unwrap();
    let json = serde_json::to_string(a.state()).unwrap();
    let restored: HpaState = serde_json::from_str(&json).unwrap();
    let mut b = Hpa::with_state(spec, restored).unwrap();
    // the 5-minute downscale window remembers the recommendation of 10
    let da = a.decide(&cpu(10, 10.0), at(60)).unwrap();
    let db = b.decide(&cpu(10, 10.0), at(60)).unwrap();
    assert_eq!(da, db);
    assert_eq!(db.desired_replicas, 10);
    assert!(db.has(Reason::ScaleDownStabilized));

    let cfg = ScalerConfig::new("s", cpu_hpa()).flap_budget(1, Duration::from_secs(600));
    let mut s = Scaler::new(cfg.clone(), None).unwrap();
    s.record_actuation(4, 8, at(0));
    s.record_actuation(8, 4, at(10));
    let st: ScalerState =
        serde_json::from_str(&serde_json::to_string(&s.state()).unwrap()).unwrap();
    let mut s2 = Scaler::with_state(cfg, None, st).unwrap();
    assert!(
        s2.decide(&cpu(4, 10.0), at(20))
            .unwrap()
            .has(Reason::FlapBudgetExhausted)
    );
}

#[test]
fn default_behavior_matches_kubernetes() {
    // behavior: {} → scale up by max(4 pods, 100 %) per 15 s, scale down after 300 s
    let spec = HpaSpec::new(1, 100, vec![MetricSpec::resource_utilization("cpu", 50)])
        .with_behavior(Behavior::default());
    let mut h = Hpa::new(spec).unwrap();
    let d = h.decide(&cpu(2, 500.0), at(0)).unwrap();
    assert_eq!(
        (d.desired_replicas, d.reasons[1]),
        (6, Reason::ScaleUpLimit),
        "2 + 4 pods beats 2 × 100 %"
    );
    h.record_actuation(2, 6, at(0));
    let d = h.decide(&cpu(6, 500.0), at(10)).unwrap();
    assert_eq!(
        d.desired_replicas, 6,
        "15 s period not over: the budget is spent"
    );
    let d = h.decide(&cpu(6, 500.0), at(16)).unwrap();
    assert_eq!(d.desired_replicas, 12, "6 + 100 %");
    let d = h.decide(&cpu(12, 5.0), at(20)).unwrap();
    assert_eq!(d.desired_replicas, 12);
    assert!(d.has(Reason::ScaleDownStabilized));
}

#[test]
fn bad_input_is_a_typed_error() {
    let mut h = Hpa::new(cpu_hpa()).unwrap();
    assert!(matches!(
        h.decide(&cpu(4, f64::NAN), T0),
        Err(ScalingError::NonFinite { .. })
    ));
    assert!(matches!(
        h.decide(&cpu(4, -1.0), T0),
        Err(ScalingError::Negative { .. })
    ));
    assert!(matches!(
        h.decide(&cpu(4, 50.0).latency_p95_ms(f64::INFINITY), T0),
        Err(ScalingError::NonFinite { .. })
    ));
    let e = h
        .decide(
            &Observation::new(4).reading("cpu", MetricValue::Total(3.0)),
            T0,
        )
        .unwrap_err();
    assert!(matches!(e, ScalingError::MismatchedReading { .. }), "{e}");

    let m = || vec![MetricSpec::resource_utilization("cpu", 50)];
    let bad = |spec: HpaSpec| spec.validate().unwrap_err();
    assert!(matches!(
        bad(HpaSpec::new(5, 3, m())),
        ScalingError::MinAboveMax { min: 5, max: 3 }
    ));
    assert!(
        bad(HpaSpec::new(1, 0, m()))
            .to_string()
            .contains("maxReplicas")
    );
    assert!(
        bad(HpaSpec::new(0, 3, m()))
            .to_string()
            .contains("minReplicas")
    );
    assert!(
        bad(HpaSpec::new(1, 3, vec![]))
            .to_string()
            .contains("metrics")
    );
    assert!(
        bad(HpaSpec::new(
            1,
            3,
            vec![MetricSpec::resource_utilization("cpu", 0)]
        ))
        .to_string()
        .contains("averageUtilization")
    );
    assert!(
        bad(HpaSpec::new(
            1,
            3,
            vec![MetricSpec::pods_average_value("qps", 0.0)]
        ))
        .to_string()
        .contains("greater than zero")
    );
    assert!(matches!(
        bad(HpaSpec::new(
            1,
            3,
            vec![MetricSpec::object_value("q", f64::NAN)]
        )),
        ScalingError::NonFinite { .. }
    ));
    assert!(matches!(
        bad(HpaSpec::new(1, 3, [m(), m()].concat())),
        ScalingError::DuplicateMetric(_)
    ));
    assert!(
        bad(HpaSpec::new(
            1,
            3,
            vec![MetricSpec::new(
                "x",
                sysmanage_scaling::MetricSource::Pods,
                sysmanage_scaling::MetricTarget::Value(1.0)
            )]
        ))
        .to_string()
        .contains("cannot have")
    );
    assert!(
        bad(HpaSpec::new(1, 3, m()).with_tolerance(f64::NAN))
            .to_string()
            .contains("tolerance")
    );
    let with = |up: ScalingRules| {
        HpaSpec::new(1, 3, m()).with_behavior(Behavior {
            scale_up: Some(up),
            scale_down: None,
        })
    };
    let e = bad(with(ScalingRules::new(
        3601,
        vec![ScalingPolicy::pods(1, 15)],
    )));
    assert_eq!(
        e.to_string(),
        "invalid behavior.scaleUp.stabilizationWindowSeconds: must be less than or equal to 3600, got 3601"
    );
    assert!(
        with(ScalingRules::new(3600, vec![ScalingPolicy::pods(1, 1800)]))
            .validate()
            .is_ok()
    );
    assert!(
        bad(with(ScalingRules::new(
            0,
            vec![ScalingPolicy::pods(1, 1801)]
        )))
        .to_string()
        .contains("periodSeconds")
    );
    assert!(
        bad(with(ScalingRules::new(0, vec![ScalingPolicy::pods(1, 0)])))
            .to_string()
            .contains("periodSeconds")
    );
    assert!(
        bad(with(ScalingRules::new(
            0,
            vec![ScalingPolicy::percent(0, 15)]
        )))
        .to_string()
        .contains("value")
    );
    assert!(
        bad(with(ScalingRules::new(0, vec![])))
            .to_string()
            .contains("at least one Policy")
    );
    assert!(
        bad(with(
            ScalingRules::new(0, vec![ScalingPolicy::pods(1, 15)]).tolerance(-0.1)
        ))
        .to_string()
        .contains("tolerance")
    );

    let cfg = ScalerConfig::new("x", cpu_hpa()).predictive(PredictiveConfig::new(
        "rps",
        0.0,
        Duration::from_secs(60),
    ));
    assert!(Scaler::new(cfg, None).is_err());
    assert!(Scaler::new(ScalerConfig::new("x", cpu_hpa()).fallback(0, 2), None).is_err());
    assert!(Scaler::new(ScalerConfig::new("x", cpu_hpa()).fallback(1, 51), None).is_err());
    assert!(
        Scaler::new(
            ScalerConfig::new("x", cpu_hpa()).flap_budget(1, Duration::ZERO),
            None
        )
        .is_err()
    );
}

#[test]
fn per_direction_tolerance() {
    let rules = |t: f64| ScalingRules {
        tolerance: Some(t),
        ..ScalingRules::default()
    };
    let spec = HpaSpec::new(1, 100, vec![MetricSpec::resource_utilization("cpu", 100)])
        .with_behavior(Behavior {
            scale_up: Some(rules(0.05)),
            scale_down: Some(ScalingRules {
                stabilization_window_seconds: Some(0),
                ..rules(0.3)
            }),
        });
    let mut h = Hpa::new(spec).unwrap();
    // 108 % is outside a 5 % up-tolerance: 10 → ceil(10.8) = 11
    assert_eq!(h.decide(&cpu(10, 108.0), T0).unwrap().desired_replicas, 11);
    // 75 % is inside a 30 % down-tolerance: stay (tolerance is inclusive at 70 %)
    assert_eq!(
        h.decide(&cpu(10, 75.0), at(1)).unwrap().desired_replicas,
        10
    );
    assert_eq!(
        h.decide(&cpu(10, 70.0), at(2)).unwrap().desired_replicas,
        10
    );
    assert_eq!(h.decide(&cpu(10, 69.0), at(3)).unwrap().desired_replicas, 7);
}

mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn decisions_stay_within_bounds(
            current in 1u32..60,
            readings in proptest::collection::vec(0.0f64..1000.0, 1..5),
            steps in 1usize..20,
        ) {
            let metrics: Vec<MetricSpec> = (0..readings.len())
                .map(|i| MetricSpec::resource_utilization(format!("m{i}"), 50))
                .collect();
            let mut h = Hpa::new(HpaSpec::new(2, 40, metrics).with_behavior(Behavior::default())).unwrap();
            let mut cur = current.clamp(2, 40);
            for k in 0..steps {
                let mut obs = Observation::new(cur);
                for (i, r) in readings.iter().enumerate() {
                    obs = obs.reading(format!("m{i}"), MetricValue::Average(r * (k as f64 + 1.0) / 3.0));
                }
                let d = h.decide(&obs, at(k as u64 * 15)).unwrap();
                prop_assert!((2..=40).contains(&d.desired_replicas));
                // never more than the default scale-up rate allows
                prop_assert!(d.desired_replicas <= (cur * 2).max(cur + 4));
                if d.desired_replicas != cur {
                    h.record_actuation(cur, d.desired_replicas, at(k as u64 * 15));
                    cur = d.desired_replicas;
                }
            }
        }

        #[test]
        fn guards_never_scale_up_alone(
            current in 1u32..40,
            cpu_pct in 0.0f64..66.0,
            latency in 0.0f64..5000.0,
            errors in 0.0f64..1.0,
        ) {
            // cpu at or below target + tolerance: metrics never ask for more
            let mut s = guarded(true);
            let d = s.decide(&cpu(current, cpu_pct).latency_p95_ms(latency).error_rate(errors), T0).unwrap();
            prop_assert!(d.desired_replicas <= current);
        }

        #[test]
        fn forecasts_never_lower_the_reactive_decision_without_scale_in(
            current in 1u32..40,
            cpu_pct in 0.0f64..300.0,
            forecast in 0.0f64..5000.0,
        ) {
            let mut reactive = Scaler::new(ScalerConfig::new("r", cpu_hpa()), None).unwrap();
            let mut predictive = predictive(forecast, Some(0.0), |p| p.allow_scale_in = false);
            let r = reactive.decide(&cpu(current, cpu_pct), T0).unwrap();
            let p = predictive.decide(&cpu(current, cpu_pct), T0).unwrap();
            prop_assert!(p.desired_replicas >= r.desired_replicas);
        }

        #[test]
        fn trusted_scale_in_stays_above_the_exact_target_and_the_forecast(
            current in 1u32..40,
            cpu_pct in 0.0f64..300.0,
            forecast in 0.0f64..5000.0,
        ) {
            let mut reactive = Scaler::new(ScalerConfig::new("r", cpu_hpa()), None).unwrap();
            let mut predictive = predictive(forecast, Some(0.0), |_| {});
            let r = reactive.decide(&cpu(current, cpu_pct), T0).unwrap();
            let p = predictive.decide(&cpu(current, cpu_pct), T0).unwrap();
            // the HPA at its exact target (integer percent, as Kubernetes) and the forecast
            let exact = (cpu_pct.floor() / 60.0 * f64::from(current)).ceil() as u32;
            let needed = (forecast / 60.0).ceil() as u32;
            let floor = exact.max(needed).clamp(1, 50);
            prop_assert!(p.desired_replicas >= r.desired_replicas.min(floor));
        }

        #[test]
        fn garbage_readings_never_panic(v in proptest::num::f64::ANY) {
            let mut h = Hpa::new(cpu_hpa()).unwrap();
            let r = h.decide(&cpu(3, v), T0);
            prop_assert_eq!(r.is_ok(), v.is_finite() && v >= 0.0);
        }
    }
}

#[test]
fn unreadable_activation_metric_never_scales_to_zero() {
    let mut s = keda();
    let broken = Observation::new(3).reading("queue", MetricValue::Unavailable("timeout".into()));
    for i in 0..2 {
        let d = s.decide(&broken, at(1000 * i)).unwrap();
        assert_eq!(d.desired_replicas, 3);
        assert!(d.has(Reason::FailedGetMetrics));
    }
    // the third failure in a row: fallback, not zero
    assert_eq!(s.decide(&broken, at(5000)).unwrap().desired_replicas, 5);
    let d = s.decide(&Observation::new(0), at(6000)).unwrap();
    assert_eq!(
        (d.desired_replicas, d.reasons[0]),
        (0, Reason::FailedGetMetrics)
    );
}

#[test]
fn decisions_serialise_with_kubernetes_reason_names() {
    let mut s = predictive(1000.0, Some(0.05), |_| {});
    let d = s.decide(&cpu(4, 60.0), T0).unwrap();
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["desiredReplicas"], 17);
    assert_eq!(v["action"], "ScaleUp");
    assert_eq!(v["reasons"][0], "ForecastUsed");
    assert_eq!(v["forecast"]["applied"], true);
    assert_eq!(v["proposals"][0]["metric"], "cpu");
    let back: sysmanage_scaling::Decision = serde_json::from_value(v).unwrap();
    assert_eq!(back, d);
    assert_eq!(Reason::ScaleUpLimit.to_string(), "ScaleUpLimit");
}

#[test]
fn forecasts_convert_without_a_tolerance_band() {
    // per_replica is already the load one replica carries within the SLO:
    // 620 / 60 = 10.3 asks for 11 even though 620 / 600 is within the 10 % band
    let mut s = predictive(620.0, Some(0.05), |_| {});
    let d = s.decide(&cpu(10, 60.0), T0).unwrap();
    assert_eq!(d.forecast.as_ref().unwrap().replicas, 11);
    assert_eq!(d.desired_replicas, 11);
    assert!(d.has(Reason::ForecastUsed));
    // the default trust threshold is 9 % measured error
    assert_eq!(
        PredictiveConfig::new("rps", 1.0, Duration::from_secs(60)).max_recent_error,
        0.09
    );
    let mut s = predictive(620.0, Some(0.1), |_| {});
    assert_eq!(s.decide(&cpu(10, 60.0), T0).unwrap().desired_replicas, 10);
}

/// Load that rises and falls inside the lead time: `peak` at 60 s ahead, `at_lead` at the lead.
#[derive(Debug)]
struct Hump {
    peak: f64,
    at_lead: f64,
}

impl LoadForecast for Hump {
    fn forecast(
        &self,
        _m: &str,
        now: Timestamp,
        horizon: Duration,
    ) -> sysmanage_core::Result<Forecast> {
        let v = if horizon == Duration::from_secs(60) {
            self.peak
        } else {
            self.at_lead
        };
        Forecast::exact(now + horizon, v)
    }
    fn recent_error(&self, _m: &str) -> Option<f64> {
        Some(0.01)
    }
}

#[test]
fn pre_warming_uses_the_forecast_at_the_lead_time_and_scale_in_the_peak() {
    // Kubernetes' default behavior: the 300 s downscale window holds the current count
    let spec = HpaSpec::new(1, 50, vec![MetricSpec::resource_utilization("cpu", 60)])
        .with_behavior(Behavior::default());
    let scaler = |peak: f64, at_lead: f64| {
        let f: Arc<dyn LoadForecast> = Arc::new(Hump { peak, at_lead });
        let cfg = ScalerConfig::new("p", spec.clone()).predictive(PredictiveConfig::new(
            "rps",
            60.0,
            Duration::from_secs(180),
        ));
        Scaler::new(cfg, Some(f)).unwrap()
    };
    // a peak 60 s ahead that is gone by the lead time: replicas started now
    // would arrive too late for it, so no pre-warming (reactive: 4 at target)
    let mut s = scaler(1200.0, 240.0);
    let d = s.decide(&cpu(4, 60.0), T0).unwrap();
    assert_eq!(d.desired_replicas, 4);
    assert!(d.has(Reason::ForecastIgnored));
    let f = d.forecast.unwrap();
    assert_eq!((f.replicas, f.peak_replicas), (4, 21));
    // but the peak bounds scale-in: the window holds 30, reactive is
    // ceil(20/60 × 30) = 10, the peak plus the measured 1 % error needs
    // ceil(1212 / 60) = 21: scale in to 21 now
    let mut s = scaler(1200.0, 240.0);
    let d = s.decide(&cpu(30, 20.0), T0).unwrap();
    assert_eq!(d.desired_replicas, 21);
    assert!(d.has(Reason::ForecastScaleIn));
    // a rise at the lead time pre-warms (20 asked, the default rate allows 8 per 15 s)
    let mut s = scaler(240.0, 1200.0);
    let d = s.decide(&cpu(4, 60.0), T0).unwrap();
    assert_eq!((d.combined, d.desired_replicas), (Some(20), 8));
    assert!(d.has(Reason::ForecastUsed) && d.has(Reason::ScaleUpLimit));
}

#[test]
fn trusted_scale_in_ignores_the_tolerance_band_not_the_target() {
    // HPA with default behavior (300 s window, 10 % tolerance), CPU target 60 %
    let spec = HpaSpec::new(1, 50, vec![MetricSpec::resource_utilization("cpu", 60)])
        .with_behavior(Behavior::default());
    let make = |error: f64, scale_in: bool| {
        let f: Arc<dyn LoadForecast> = Arc::new(Fixed {
            value: 300.0,
            error: Some(error),
            fail: false,
        });
        let cfg = ScalerConfig::new("p", spec.clone()).predictive(PredictiveConfig {
            allow_scale_in: scale_in,
            ..PredictiveConfig::new("rps", 60.0, Duration::from_secs(180))
        });
        Scaler::new(cfg, Some(f)).unwrap()
    };
    // 55 % of 20 pods: 0.92 of target is inside the band, the HPA holds 20
    let obs = cpu(20, 55.0);
    let mut hpa = Hpa::new(spec.clone()).unwrap();
    assert_eq!(hpa.decide(&obs, T0).unwrap().desired_replicas, 20);
    // a trusted forecast (5 replicas' load) lets it go to the exact target: ceil(55/60 × 20) = 19
    let d = make(0.05, true).decide(&obs, T0).unwrap();
    assert_eq!(d.desired_replicas, 19);
    assert!(d.has(Reason::ForecastScaleIn));
    // untrusted, or scale-in off: the HPA's 20
    assert_eq!(
        make(0.2, true).decide(&obs, T0).unwrap().desired_replicas,
        20
    );
    assert_eq!(
        make(0.05, false).decide(&obs, T0).unwrap().desired_replicas,
        20
    );
    // the current load is a floor too: 1500 rps needs ceil(1500 / 60) = 25 > 19, so hold 20
    let busy = cpu(20, 55.0).reading("rps", MetricValue::Total(1500.0));
    assert_eq!(
        make(0.05, true).decide(&busy, T0).unwrap().desired_replicas,
        20
    );
    // a per-pod average counts times the current replicas: 70 × 20 = 1400 → 24
    let busy = cpu(20, 55.0).reading("rps", MetricValue::Average(70.0));
    assert_eq!(
        make(0.05, true).decide(&busy, T0).unwrap().desired_replicas,
        20
    );
}

#[test]
fn prediction_without_a_forecaster_is_a_config_error() {
    let cfg = ScalerConfig::new("p", cpu_hpa()).predictive(PredictiveConfig::new(
        "rps",
        60.0,
        Duration::from_secs(60),
    ));
    let e = Scaler::new(cfg, None).unwrap_err();
    assert!(e.to_string().contains("no forecaster"), "{e}");
}

#[test]
fn select_policy_disabled_and_min() {
    let spec = |down: ScalingRules| {
        HpaSpec::new(1, 100, vec![MetricSpec::resource_utilization("cpu", 50)]).with_behavior(
            Behavior {
                scale_up: Some(
                    ScalingRules::new(
                        0,
                        vec![ScalingPolicy::pods(2, 60), ScalingPolicy::percent(50, 60)],
                    )
                    .select(sysmanage_scaling::SelectPolicy::Min),
                ),
                scale_down: Some(down),
            },
        )
    };
    // scale-down disabled: never below the current count
    let mut h = Hpa::new(spec(
        ScalingRules::new(0, vec![ScalingPolicy::percent(100, 15)])
            .select(sysmanage_scaling::SelectPolicy::Disabled),
    ))
    .unwrap();
    let d = h.decide(&cpu(10, 5.0), T0).unwrap();
    assert_eq!(
        (d.desired_replicas, d.reasons[1]),
        (10, Reason::ScaleDownLimit)
    );
    // scale-up with Min: the smaller of +2 pods and +50 % → 10 + 2
    let d = h.decide(&cpu(10, 500.0), at(1)).unwrap();
    assert_eq!(
        (d.desired_replicas, d.reasons[1]),
        (12, Reason::ScaleUpLimit)
    );
}

#[test]
fn cooldown_holds_one_replica_until_it_elapses() {
    let mut s = keda();
    s.decide(&queue(1, 5.0), at(0)).unwrap(); // active at t = 0
    for t in [15, 100, 200, 299] {
        let d = s.decide(&queue(1, 0.0), at(t)).unwrap();
        assert_eq!(d.desired_replicas, 1, "t = {t}: inside the cooldown");
        assert!(d.has(Reason::CooldownHold), "t = {t}");
    }
    let d = s.decide(&queue(1, 0.0), at(300)).unwrap();
    assert_eq!(
        (d.desired_replicas, d.reasons[0]),
        (0, Reason::ScaledToZero)
    );
    // activity inside the cooldown restarts it
    let mut s = keda();
    s.decide(&queue(1, 5.0), at(0)).unwrap();
    s.decide(&queue(1, 5.0), at(200)).unwrap();
    assert_eq!(
        s.decide(&queue(1, 0.0), at(300)).unwrap().desired_replicas,
        1
    );
    assert_eq!(
        s.decide(&queue(1, 0.0), at(500)).unwrap().desired_replicas,
        0
    );
}

#[test]
fn scale_to_zero_needs_min_replicas_zero() {
    // KEDA scales to zero only with minReplicaCount: 0
    let hpa = HpaSpec::new(
        1,
        20,
        vec![MetricSpec::external_average_value("queue", 10.0)],
    );
    let cfg = ScalerConfig::new("keda", hpa).activation("queue", 0.0, Duration::from_secs(300));
    let e = Scaler::new(cfg, None).unwrap_err();
    assert!(
        matches!(
            e,
            ScalingError::InvalidSpec {
                field: "activation",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("minReplicas"), "{e}");
}

#[test]
fn a_flap_budget_of_zero_reversals_is_rejected() {
    let cfg = ScalerConfig::new("s", cpu_hpa()).flap_budget(0, Duration::from_secs(600));
    let e = Scaler::new(cfg, None).unwrap_err();
    assert!(
        matches!(
            e,
            ScalingError::InvalidSpec {
                field: "flapBudget.maxReversals",
                ..
            }
        ),
        "{e}"
    );
}

/// A forecaster whose point forecast is whatever `point` is, NaN and infinity included.
#[derive(Debug)]
struct Raw {
    point: f64,
}

impl LoadForecast for Raw {
    fn forecast(
        &self,
        _m: &str,
        now: Timestamp,
        horizon: Duration,
    ) -> sysmanage_core::Result<Forecast> {
        let mut f = Forecast::exact(now + horizon, 0.0)?;
        f.point = self.point;
        Ok(f)
    }
    fn recent_error(&self, _m: &str) -> Option<f64> {
        Some(0.0)
    }
}

#[test]
fn non_finite_forecasts_are_ignored_never_acted_on() {
    for point in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let f: Arc<dyn LoadForecast> = Arc::new(Raw { point });
        let p = PredictiveConfig {
            allow_scale_in: true,
            ..PredictiveConfig::new("rps", 60.0, Duration::from_secs(180))
        };
        let mut s = Scaler::new(ScalerConfig::new("p", cpu_hpa()).predictive(p), Some(f)).unwrap();
        let d = s.decide(&cpu(4, 60.0), T0).unwrap();
        assert_eq!(d.desired_replicas, 4, "forecast {point}");
        assert!(d.has(Reason::ForecastIgnored), "forecast {point}");
        assert!(!d.has(Reason::ForecastUsed), "forecast {point}");
        assert_eq!(d.forecast, None, "forecast {point}");
        let fp = d
            .proposals
            .iter()
            .find(|p| p.metric == "forecast:rps")
            .unwrap();
        assert_eq!(fp.replicas, None);
        assert!(fp.error.as_deref().unwrap().contains("not a finite number"));
    }
    // a finite but huge forecast is still acted on, capped by maxReplicas
    let f: Arc<dyn LoadForecast> = Arc::new(Raw { point: 1e300 });
    let p = PredictiveConfig::new("rps", 60.0, Duration::from_secs(180));
    let mut s = Scaler::new(ScalerConfig::new("p", cpu_hpa()).predictive(p), Some(f)).unwrap();
    let d = s.decide(&cpu(4, 60.0), T0).unwrap();
    assert!(d.has(Reason::ForecastUsed));
    assert_eq!(
        d.desired_replicas, 44,
        "4 + 1000 % per 15 s, under maxReplicas 50"
    );
}

/// HPA defaults (300 s downscale window, 10 % tolerance), CPU target 60 %,
/// a forecaster whose measured error (50 %) is never trusted.
fn untrusted(tweak: impl FnOnce(&mut PredictiveConfig)) -> Scaler {
    let spec = HpaSpec::new(1, 50, vec![MetricSpec::resource_utilization("cpu", 60)])
        .with_behavior(Behavior::default());
    let mut p = PredictiveConfig::new("rps", 60.0, Duration::from_secs(180));
    tweak(&mut p);
    let f: Arc<dyn LoadForecast> = Arc::new(Fixed {
        value: 0.0,
        error: Some(0.5),
        fail: false,
    });
    Scaler::new(ScalerConfig::new("p", spec).predictive(p), Some(f)).unwrap()
}

fn load(current: u32, cpu_pct: f64, rps: f64) -> Observation {
    cpu(current, cpu_pct).reading("rps", MetricValue::Total(rps))
}

#[test]
fn without_a_trusted_forecast_scale_in_follows_the_recent_peak_load() {
    // 55 % of 20 pods is inside the HPA's band: it holds 20
    let steady = load(20, 55.0, 1100.0);
    let mut hpa = Hpa::new(
        HpaSpec::new(1, 50, vec![MetricSpec::resource_utilization("cpu", 60)])
            .with_behavior(Behavior::default()),
    )
    .unwrap();
    assert_eq!(hpa.decide(&steady, T0).unwrap().desired_replicas, 20);
    // the load has been steady for the whole lead time: the exact target,
    // ceil(55/60 × 20) = 19, at once
    let mut s = untrusted(|_| {});
    let d = s.decide(&steady, T0).unwrap();
    assert_eq!(d.desired_replicas, 19);
    assert!(d.has(Reason::PeakLoadScaleIn) && d.has(Reason::ForecastIgnored));
    assert!(!d.has(Reason::ForecastScaleIn));

    // 1300 rps two minutes ago: the exact proposal for that peak is
    // ceil(19 × 1300 / 1100) = 23 > 20, so the HPA's 20 hold
    let mut s = untrusted(|_| {});
    let d = s.decide(&load(20, 65.0, 1300.0), T0).unwrap();
    assert_eq!(d.desired_replicas, 20);
    let d = s.decide(&steady, at(120)).unwrap();
    assert_eq!(d.desired_replicas, 20);
    assert!(!d.has(Reason::PeakLoadScaleIn));
    // once the peak is older than the lead time (180 s, plus at most one
    // sixteenth of it for the bucket), the steady load decides again
    let d = s.decide(&steady, at(120 + 180 + 12)).unwrap();
    assert_eq!(d.desired_replicas, 19);
    assert!(d.has(Reason::PeakLoadScaleIn));
}

#[test]
fn reactive_scale_in_needs_the_signal_and_stays_out_of_shadow_mode_and_guards() {
    let steady = load(20, 55.0, 1100.0);
    // switched off, in shadow mode, without the signal: the HPA's 20
    for (label, mut s, obs) in [
        (
            "off",
            untrusted(|p| p.reactive_scale_in = false),
            steady.clone(),
        ),
        ("shadow", untrusted(|p| p.shadow = true), steady.clone()),
        ("no signal", untrusted(|_| {}), cpu(20, 55.0)),
    ] {
        let d = s.decide(&obs, T0).unwrap();
        assert_eq!(d.desired_replicas, 20, "{label}");
        assert!(!d.has(Reason::PeakLoadScaleIn), "{label}");
    }
    // the default is on
    assert!(PredictiveConfig::new("rps", 1.0, Duration::from_secs(60)).reactive_scale_in);
    // a firing latency guard blocks it
    let spec = HpaSpec::new(1, 50, vec![MetricSpec::resource_utilization("cpu", 60)])
        .with_behavior(Behavior::default());
    let f: Arc<dyn LoadForecast> = Arc::new(Fixed {
        value: 0.0,
        error: None,
        fail: true,
    });
    let cfg = ScalerConfig::new("p", spec)
        .predictive(PredictiveConfig::new("rps", 60.0, Duration::from_secs(180)))
        .guards(Guards {
            latency_slo_ms: Some(250.0),
            ..Guards::default()
        });
    let mut s = Scaler::new(cfg.clone(), Some(f.clone())).unwrap();
    let d = s.decide(&steady.clone().latency_p95_ms(400.0), T0).unwrap();
    assert_eq!(d.desired_replicas, 20);
    // a failing forecaster is no trusted forecast: without the guard it scales in
    let mut s = Scaler::new(cfg, Some(f)).unwrap();
    let d = s.decide(&steady.latency_p95_ms(100.0), T0).unwrap();
    assert_eq!(d.desired_replicas, 19);
    assert!(d.has(Reason::PeakLoadScaleIn));
}

#[test]
fn reactive_scale_in_holds_when_the_load_vanished_from_a_busy_window() {
    let mut s = untrusted(|_| {});
    s.decide(&load(20, 55.0, 1100.0), T0).unwrap();
    // no load now but 1100 rps a minute ago: no evidence the load is gone
    // for good, the HPA decides (its window holds the 20)
    let d = s.decide(&load(20, 0.0, 0.0), at(60)).unwrap();
    assert_eq!(d.desired_replicas, 20);
    assert!(!d.has(Reason::PeakLoadScaleIn));
}

#[test]
fn a_trusted_forecast_keeps_its_measured_error_as_scale_in_margin() {
    // the HPA's default window holds 20 pods at 20 % CPU (exact target:
    // ceil(20/60 × 20) = 7); the forecast peak is 600 rps = 10 replicas'
    // load; with a measured error of 5 % the floor is ceil(630 / 60) = 11
    let spec = HpaSpec::new(1, 50, vec![MetricSpec::resource_utilization("cpu", 60)])
        .with_behavior(Behavior::default());
    let floor = |error: f64| {
        let f: Arc<dyn LoadForecast> = Arc::new(Fixed {
            value: 600.0,
            error: Some(error),
            fail: false,
        });
        let cfg = ScalerConfig::new("p", spec.clone()).predictive(PredictiveConfig::new(
            "rps",
            60.0,
            Duration::from_secs(180),
        ));
        let d = Scaler::new(cfg, Some(f))
            .unwrap()
            .decide(&cpu(20, 20.0), T0)
            .unwrap();
        (d.desired_replicas, d.forecast.unwrap().peak_replicas)
    };
    assert_eq!(floor(0.0), (10, 10));
    assert_eq!(floor(0.05), (11, 11));
    // past the trust threshold (and no load signal): the HPA's 20
    assert_eq!(floor(0.2).0, 20);
}

#[test]
fn states_and_configurations_saved_before_reactive_scale_in_still_load() {
    // a ScalerState without `recentLoad`, a PredictiveConfig without
    // `reactiveScaleIn` (both as the previous release wrote them)
    let state = serde_json::json!({
        "hpa": serde_json::to_value(HpaState::default()).unwrap(),
        "actuations": [],
        "consecutiveFailures": 0,
        "lastActive": null
    });
    let state: ScalerState = serde_json::from_value(state).unwrap();
    assert_eq!(state, ScalerState::default());
    let mut cfg =
        serde_json::to_value(PredictiveConfig::new("rps", 60.0, Duration::from_secs(180))).unwrap();
    cfg.as_object_mut().unwrap().remove("reactiveScaleIn");
    let cfg: PredictiveConfig = serde_json::from_value(cfg).unwrap();
    assert!(cfg.reactive_scale_in);
    // and the recent peak survives a save and restore
    let mut s = untrusted(|_| {});
    s.decide(&load(20, 65.0, 1300.0), T0).unwrap();
    let saved: ScalerState =
        serde_json::from_str(&serde_json::to_string(&s.state()).unwrap()).unwrap();
    let mut resumed = untrusted(|_| {});
    resumed.restore(saved);
    let d = resumed.decide(&load(20, 55.0, 1100.0), at(60)).unwrap();
    assert_eq!(d.desired_replicas, 20, "the 1300 rps peak still holds");
}
