//! Trace replay: scalers behave sensibly on the shipped traces.

use std::sync::Arc;
use std::time::Duration;

use sysmanage_core::LoadForecast;
use sysmanage_scaling::limits::MAX_REPLICAS;
use sysmanage_scaling::{
    AutoScaler, Behavior, Decision, Hpa, HpaSpec, MetricSpec, Observation, PredictiveConfig,
    Scaler, ScalerConfig, SeasonalMedian, SeasonalNaive, ServiceModel, SimReport, Trace, simulate,
};

#[derive(Debug)]
struct Fixed(u32);
impl AutoScaler for Fixed {
    fn name(&self) -> &str {
        "fixed"
    }
    fn decide(
        &mut self,
        obs: &Observation,
        now: sysmanage_core::Timestamp,
    ) -> sysmanage_scaling::Result<Decision> {
        let mut h = Hpa::new(HpaSpec::new(
            self.0,
            self.0,
            vec![MetricSpec::resource_utilization("cpu", 50)],
        ))?;
        h.decide(obs, now)
    }
    fn record_actuation(&mut self, _: u32, _: u32, _: sysmanage_core::Timestamp) {}
}

fn hpa_spec() -> HpaSpec {
    HpaSpec::new(2, 60, vec![MetricSpec::resource_utilization("cpu", 60)])
        .with_behavior(Behavior::default())
}

#[test]
fn hpa_beats_a_fixed_fleet_on_slo_and_cost() {
    let trace = Trace::shipped()
        .unwrap()
        .remove(0)
        .truncated(Duration::from_secs(2 * 86_400));
    let model = ServiceModel::default();
    let small = simulate(&trace, &mut Fixed(4), &model, Duration::from_secs(15), None).unwrap();
    let big = simulate(
        &trace,
        &mut Fixed(20),
        &model,
        Duration::from_secs(15),
        None,
    )
    .unwrap();
    let mut hpa = Hpa::new(hpa_spec()).unwrap();
    let auto = simulate(&trace, &mut hpa, &model, Duration::from_secs(15), None).unwrap();
    assert!(
        small.slo_violation_minutes > 600.0,
        "4 replicas cannot serve the peaks: {small:?}"
    );
    assert!(
        auto.slo_violation_minutes < small.slo_violation_minutes / 5.0,
        "{auto:?}"
    );
    assert!(
        auto.replica_hours < big.replica_hours,
        "{auto:?} vs {big:?}"
    );
    assert!(auto.scale_events > 10);
    assert_eq!(auto.decision_errors, 0);
    assert!((big.replica_hours - 20.0 * 48.0).abs() < 1.0);
}

#[test]
fn predictive_reduces_violations_on_seasonal_demand() {
    let trace = Trace::shipped()
        .unwrap()
        .remove(1)
        .truncated(Duration::from_secs(14 * 86_400));
    let model = ServiceModel {
        startup: Duration::from_secs(600),
        ..ServiceModel::default()
    };
    // little headroom: a 75 % CPU target while latency breaks the SLO above 80 %
    let tight = || {
        HpaSpec::new(2, 60, vec![MetricSpec::resource_utilization("cpu", 75)])
            .with_behavior(Behavior::default())
    };
    let mut hpa = Hpa::new(tight()).unwrap();
    let reactive = simulate(&trace, &mut hpa, &model, Duration::from_secs(60), None).unwrap();

    let f = Arc::new(
        SeasonalNaive::new("rps", Duration::from_secs(60), Duration::from_secs(86_400)).unwrap(),
    );
    let p = PredictiveConfig {
        max_recent_error: 0.2,
        ..PredictiveConfig::new("rps", 75.0, Duration::from_secs(900))
    };
    let mut pred = Scaler::new(
        ScalerConfig::new("predictive", tight()).predictive(p),
        Some(f.clone() as Arc<dyn LoadForecast>),
    )
    .unwrap();
    let mut feed = |at, v| f.observe(at, v);
    let predictive = simulate(
        &trace,
        &mut pred,
        &model,
        Duration::from_secs(60),
        Some(&mut feed),
    )
    .unwrap();
    assert!(
        f.recent_error("rps").is_some_and(|e| e < 0.2),
        "{:?}",
        f.recent_error("rps")
    );
    assert!(
        predictive.slo_violation_minutes < reactive.slo_violation_minutes * 0.8,
        "predictive {predictive:?} vs reactive {reactive:?}"
    );
}

#[test]
fn simulate_rejects_bad_settings() {
    let trace = Trace::synthetic(1, 1, 100.0).unwrap();
    let mut hpa = Hpa::new(hpa_spec()).unwrap();
    assert!(
        simulate(
            &trace,
            &mut hpa,
            &ServiceModel::default(),
            Duration::ZERO,
            None
        )
        .is_err()
    );
    let bad = ServiceModel {
        capacity_per_replica: 0.0,
        ..ServiceModel::default()
    };
    assert!(simulate(&trace, &mut hpa, &bad, Duration::from_secs(15), None).is_err());
    assert!(SeasonalNaive::new("rps", Duration::from_secs(7), Duration::from_secs(60)).is_err());
}

#[test]
fn simulate_is_bounded() {
    let trace = Trace::synthetic(1, 1, 100.0).unwrap();
    let mut hpa = Hpa::new(hpa_spec()).unwrap();
    // a day at 1 ms steps is more than MAX_SIM_STEPS: a typed error, not a long loop
    let e = simulate(
        &trace,
        &mut hpa,
        &ServiceModel::default(),
        Duration::from_millis(1),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("simulate.interval"), "{e}");
    // a huge fleet costs memory per scale event, not per replica
    let model = ServiceModel {
        initial_replicas: MAX_REPLICAS,
        ..ServiceModel::default()
    };
    let r = simulate(
        &trace,
        &mut Fixed(MAX_REPLICAS - 1),
        &model,
        Duration::from_secs(60),
        None,
    )
    .unwrap();
    assert_eq!((r.scale_events, r.peak_replicas), (1, MAX_REPLICAS));
    assert_eq!(r.slo_violation_minutes, 0.0);
}

/// The replay example's setting: 70 % CPU target, 10-minute start-up,
/// decisions every 15 s, forecast load sized at the SLO-safe 80 %.
fn replay_default_predictive(trace: &Trace) -> (SimReport, SimReport, Arc<SeasonalMedian>) {
    replay_predictive(trace, |_| {})
}

fn replay_predictive(
    trace: &Trace,
    tweak: impl FnOnce(&mut PredictiveConfig),
) -> (SimReport, SimReport, Arc<SeasonalMedian>) {
    let spec = || {
        HpaSpec::new(2, 60, vec![MetricSpec::resource_utilization("cpu", 70)])
            .with_behavior(Behavior::default())
    };
    let model = ServiceModel {
        startup: Duration::from_secs(600),
        ..ServiceModel::default()
    };
    let step = Duration::from_secs(15);
    let mut hpa = Hpa::new(spec()).unwrap();
    let reactive = simulate(trace, &mut hpa, &model, step, None).unwrap();
    let f = Arc::new(
        SeasonalMedian::new("rps", step, Duration::from_secs(86_400), model.startup).unwrap(),
    );
    let mut p = PredictiveConfig::new("rps", 80.0, model.startup);
    tweak(&mut p);
    let cfg = ScalerConfig::new("predictive", spec()).predictive(p);
    let mut pred = Scaler::new(cfg, Some(f.clone() as Arc<dyn LoadForecast>)).unwrap();
    let mut feed = |at, v| f.observe(at, v);
    let predictive = simulate(trace, &mut pred, &model, step, Some(&mut feed)).unwrap();
    (reactive, predictive, f)
}

#[test]
fn default_predictive_dominates_the_hpa_on_the_bursty_synthetic_trace() {
    let trace = Trace::shipped().unwrap().remove(0);
    let (reactive, predictive, _) = replay_default_predictive(&trace);
    assert!(
        predictive.dominates(&reactive),
        "predictive {predictive:?} vs reactive {reactive:?}"
    );
    // not by a rounding error: at least 1 % fewer replica-hours
    assert!(predictive.replica_hours < 0.99 * reactive.replica_hours);
    assert_eq!(predictive.decision_errors, 0);
}

#[test]
fn an_untrusted_forecast_without_reactive_scale_in_leaves_the_hpa_decisions_unchanged() {
    // sunspots have no daily season: the forecaster measures its own error
    // above the 9 % threshold and, with the reactive scale-in off, the
    // scaler decides exactly as the HPA
    let trace = Trace::shipped()
        .unwrap()
        .remove(5)
        .truncated(Duration::from_secs(4 * 86_400));
    assert_eq!(trace.name(), "sunspots");
    let (reactive, predictive, f) = replay_predictive(&trace, |p| p.reactive_scale_in = false);
    let err = f.recent_error("rps").unwrap();
    assert!(err > 0.09, "measured error {err}");
    assert_eq!(
        (
            predictive.slo_violation_minutes,
            predictive.replica_hours,
            predictive.scale_events
        ),
        (
            reactive.slo_violation_minutes,
            reactive.replica_hours,
            reactive.scale_events
        )
    );
}

#[test]
fn the_steps_add_up_to_the_report() {
    let trace = Trace::shipped()
        .unwrap()
        .remove(0)
        .truncated(Duration::from_secs(86_400));
    let model = ServiceModel {
        startup: Duration::from_secs(600),
        ..ServiceModel::default()
    };
    let step = Duration::from_secs(15);
    let mut hpa = Hpa::new(hpa_spec()).unwrap();
    let plain = simulate(&trace, &mut hpa, &model, step, None).unwrap();
    let mut hpa = Hpa::new(hpa_spec()).unwrap();
    let mut steps = Vec::new();
    let traced =
        sysmanage_scaling::simulate_steps(&trace, &mut hpa, &model, step, None, &mut |s| {
            steps.push(*s)
        })
        .unwrap();
    assert_eq!(traced, plain);
    assert_eq!(steps.len(), 86_400 / 15);
    assert_eq!(steps[0].at, sysmanage_scaling::SIM_START);
    assert!(steps.windows(2).all(|w| w[1].at - w[0].at == step));
    let violating = steps.iter().filter(|s| s.violating).count();
    assert!(violating > 0);
    assert!((violating as f64 * 0.25 - plain.slo_violation_minutes).abs() < 1e-9);
    let hours: f64 = steps.iter().map(|s| f64::from(s.provisioned) / 240.0).sum();
    assert!((hours - plain.replica_hours).abs() < 1e-6);
    let events: Vec<u32> = steps.iter().filter_map(|s| s.scaled_to).collect();
    assert_eq!(events.len() as u32, plain.scale_events);
    // an actuation shows as the next step's provisioned count; replicas
    // serve only once provisioned; a step violates exactly when demand
    // exceeds what the ready replicas serve within the SLO (80 % of 100 rps each)
    for w in steps.windows(2) {
        if let Some(to) = w[0].scaled_to {
            assert_eq!(w[1].provisioned, to);
        }
        assert!(w[0].ready <= w[0].provisioned, "{:?}", w[0]);
        assert_eq!(
            w[0].violating,
            w[0].rps > f64::from(w[0].ready) * 80.0 + 1e-9,
            "{:?}",
            w[0]
        );
    }
}

/// A forecaster that never has a forecast (too little history, forever).
#[derive(Debug)]
struct NoForecast;

impl LoadForecast for NoForecast {
    fn forecast(
        &self,
        _m: &str,
        _now: sysmanage_core::Timestamp,
        _h: Duration,
    ) -> sysmanage_core::Result<sysmanage_core::Forecast> {
        Err(sysmanage_core::Error::InsufficientData {
            what: "no forecast",
            needed: 1,
            have: 0,
        })
    }
}

#[test]
fn without_any_forecast_the_reactive_scale_in_alone_dominates_the_hpa_on_synthetic() {
    let trace = Trace::shipped().unwrap().remove(0);
    let spec = || {
        HpaSpec::new(2, 60, vec![MetricSpec::resource_utilization("cpu", 70)])
            .with_behavior(Behavior::default())
    };
    let model = ServiceModel {
        startup: Duration::from_secs(600),
        ..ServiceModel::default()
    };
    let step = Duration::from_secs(15);
    let mut hpa = Hpa::new(spec()).unwrap();
    let reactive = simulate(&trace, &mut hpa, &model, step, None).unwrap();
    let run = |on: bool| {
        let mut p = PredictiveConfig::new("rps", 80.0, model.startup);
        p.reactive_scale_in = on;
        let cfg = ScalerConfig::new("predictive", spec()).predictive(p);
        let mut s = Scaler::new(cfg, Some(Arc::new(NoForecast) as Arc<dyn LoadForecast>)).unwrap();
        simulate(&trace, &mut s, &model, step, None).unwrap()
    };
    let off = run(false);
    assert_eq!(
        (off.slo_violation_minutes, off.replica_hours),
        (reactive.slo_violation_minutes, reactive.replica_hours)
    );
    let on = run(true);
    assert!(on.dominates(&reactive), "{on:?} vs {reactive:?}");
    assert!(on.replica_hours < reactive.replica_hours);
}
