//! The Composite scaler: each fixed defect of SysManage's `IntelligentAutoScaler`
//! is shown on the original formula first, then on [`Composite`].

use std::time::Duration;

use sysmanage_core::Timestamp;
use sysmanage_scaling::{
    Action, AutoScaler, Composite, CompositeConfig, CompositeState, MetricValue, Observation,
    Reason, ScalingError,
};

const T0: Timestamp = Timestamp::from_secs(1_700_000_000);

/// The original `_calculate_scaling_factors` + `_make_scaling_decision`
/// (utilizations as fractions, as in the Python), without prediction.
fn original(
    cpu: f64,
    mem: f64,
    p95_ms: f64,
    queue: f64,
    err: f64,
    current: u32,
    trend: f64,
) -> (u32, f64) {
    let util = |u: f64| {
        if u > 0.7 {
            (u / 0.7).min(2.0)
        } else if u < 0.3 {
            (u / 0.3).max(0.5)
        } else {
            1.0
        }
    };
    let lat = if p95_ms > 500.0 {
        (p95_ms / 500.0).min(3.0)
    } else {
        1.0
    };
    let q = if queue > 10.0 {
        (queue / 10.0).min(2.0)
    } else {
        (queue / 10.0).max(0.8)
    };
    let e = if err > 0.05 {
        (1.0 + err).min(2.0)
    } else {
        1.0
    };
    let weighted = util(cpu) * 0.3 + util(mem) * 0.25 + lat * 0.2 + q * 0.15 + e * 0.1;
    let factor = weighted * trend;
    let target = (f64::from(current) * factor) as u32; // int() truncates
    (target.clamp(2, 50), factor)
}

fn obs(current: u32, cpu_pct: f64, mem_pct: f64, queue: f64) -> Observation {
    Observation::new(current)
        .reading("cpu", MetricValue::Average(cpu_pct))
        .reading("memory", MetricValue::Average(mem_pct))
        .reading("queue", MetricValue::Total(queue))
        .latency_p95_ms(100.0)
        .error_rate(0.0)
}

#[test]
fn defect_1_saturated_cpu_with_empty_queue_scales_up() {
    // Original: 100 % CPU, empty queue → never scales up below 11 replicas.
    for current in 2..=10 {
        let (target, factor) = original(1.0, 0.5, 100.0, 0.0, 0.0, current, 1.0);
        assert_eq!(
            target, current,
            "original at {current} replicas (factor {factor:.4})"
        );
    }
    assert!(original(1.0, 0.5, 100.0, 0.0, 0.0, 11, 1.0).0 > 11);
    // Fixed: the largest factor (CPU 1/0.7) drives the scale-up at every size.
    let mut c = Composite::new(CompositeConfig::default()).unwrap();
    for current in 2..=10u32 {
        let d = c.decide(&obs(current, 100.0, 50.0, 0.0), T0).unwrap();
        let expected = (current * 100).div_ceil(70);
        assert_eq!(d.desired_replicas, expected, "at {current}");
        assert_eq!(d.action, Action::ScaleUp);
    }
}

#[test]
fn defect_2_truncation_replaced_by_ceil() {
    // 5 replicas at 80 % CPU and 80 % memory: original factor 1.0786 → int(5.45) = 5, no change
    let (target, _) = original(0.8, 0.8, 100.0, 10.0, 0.0, 5, 1.0);
    assert_eq!(target, 5);
    let mut c = Composite::new(CompositeConfig::default()).unwrap();
    let d = c.decide(&obs(5, 80.0, 80.0, 10.0), T0).unwrap();
    assert_eq!(d.desired_replicas, 6, "ceil(5 × 0.8 / 0.7)");
}

#[test]
fn defect_3_and_4_reported_target_is_acted_on_and_scale_up_is_never_dampened() {
    // Original: after any scale decision in the last 5 minutes, confidence is
    // halved and the action becomes NO_ACTION while target_replicas still
    // holds the new count: (action, target) = (NO_ACTION, 14) at 10 replicas.
    let (target, factor) = original(1.0, 1.0, 900.0, 40.0, 0.0, 10, 1.0);
    let confidence = ((factor - 1.0) * 2.0).min(1.0) * 0.5;
    assert!(
        confidence < 0.7 && target != 10,
        "original dampens a needed scale-up but reports {target}"
    );
    // Fixed: right after an actuation, a scale-up still happens, and desired is what to actuate.
    let mut c = Composite::new(CompositeConfig::default()).unwrap();
    c.record_actuation(8, 10, T0);
    let d = c
        .decide(
            &obs(10, 100.0, 100.0, 40.0).latency_p95_ms(900.0),
            T0 + Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(d.action, Action::ScaleUp);
    assert_eq!(
        d.desired_replicas, 20,
        "ceil(10 × max factor 2.0 (queue 40 of 10, capped))"
    );
    // ...while a scale-down waits out the cooldown after a confirmed actuation
    let d = c
        .decide(&obs(10, 10.0, 10.0, 0.0), T0 + Duration::from_secs(60))
        .unwrap();
    assert_eq!(d.desired_replicas, 10);
    assert!(d.has(Reason::ScaleDownCooldown));
    let d = c
        .decide(&obs(10, 10.0, 10.0, 0.0), T0 + Duration::from_secs(301))
        .unwrap();
    assert!(d.desired_replicas < 10);
}

#[test]
fn defect_5_trend_only_amplifies_scale_up() {
    // Original: a falling request rate (trend 0.5) halves a hot service.
    let (target, _) = original(0.75, 0.5, 100.0, 10.0, 0.0, 10, 0.5);
    assert!(target < 10, "original scales a hot service down: {target}");
    let mut c = Composite::new(CompositeConfig::default()).unwrap();
    let mut d = None;
    for (i, rps) in (0..10).map(|i| 1000.0 - 80.0 * f64::from(i)).enumerate() {
        let o = obs(10, 75.0, 50.0, 10.0).reading("rps", MetricValue::Total(rps));
        d = Some(
            c.decide(&o, T0 + Duration::from_secs(i as u64 * 15))
                .unwrap(),
        );
    }
    assert_eq!(
        d.as_ref().unwrap().desired_replicas,
        11,
        "ceil(10 × 0.75/0.7), trend ignored downward"
    );
    // a rising trend amplifies
    let mut c = Composite::new(CompositeConfig::default()).unwrap();
    for (i, rps) in (0..10).map(|i| 500.0 + 50.0 * f64::from(i)).enumerate() {
        let o = obs(10, 75.0, 50.0, 10.0).reading("rps", MetricValue::Total(rps));
        d = Some(
            c.decide(&o, T0 + Duration::from_secs(i as u64 * 15))
                .unwrap(),
        );
    }
    assert!(d.unwrap().desired_replicas > 11);
}

#[test]
fn defect_6_no_scale_down_on_noise_and_real_scale_down_works() {
    let mut c = Composite::new(CompositeConfig::default()).unwrap();
    // queue 9 of 10, everything else neutral: weighted 0.985 → stay
    assert_eq!(
        c.decide(&obs(10, 50.0, 50.0, 9.0), T0)
            .unwrap()
            .desired_replicas,
        10
    );
    // everything idle: weighted (0.5·0.3 + 0.5·0.25 + 0.2 + 0.8·0.15 + 0.1) = 0.695
    let d = c.decide(&obs(10, 5.0, 5.0, 0.0), T0).unwrap();
    assert_eq!(d.desired_replicas, 7);
    assert_eq!(
        c.decide(&obs(3, 5.0, 5.0, 0.0), T0)
            .unwrap()
            .desired_replicas,
        3,
        "min 2 … ceil(3 × 0.695) = 3"
    );
}

#[test]
fn defect_7_bad_input_is_a_typed_error() {
    let mut c = Composite::new(CompositeConfig::default()).unwrap();
    assert!(matches!(
        c.decide(&obs(4, f64::NAN, 50.0, 0.0), T0),
        Err(ScalingError::NonFinite { .. })
    ));
    assert!(matches!(
        c.decide(&obs(4, 50.0, 50.0, -3.0), T0),
        Err(ScalingError::Negative { .. })
    ));
    assert!(matches!(
        Composite::new(CompositeConfig {
            min_replicas: 9,
            max_replicas: 3,
            ..CompositeConfig::default()
        }),
        Err(ScalingError::MinAboveMax { .. })
    ));
    assert!(
        Composite::new(CompositeConfig {
            weights: [0.0; 5],
            ..CompositeConfig::default()
        })
        .is_err()
    );
    assert!(
        Composite::new(CompositeConfig {
            scale_down_threshold: 80.0,
            ..CompositeConfig::default()
        })
        .is_err()
    );
}

#[test]
fn bounds_are_reported() {
    let mut c = Composite::new(CompositeConfig {
        max_replicas: 6,
        ..CompositeConfig::default()
    })
    .unwrap();
    let d = c.decide(&obs(5, 100.0, 100.0, 100.0), T0).unwrap();
    assert_eq!(d.desired_replicas, 6);
    assert!(d.has(Reason::TooManyReplicas));
}

#[test]
fn defect_8_a_missing_signal_is_reported_and_never_counts_as_at_target() {
    let cfg = CompositeConfig::default();
    // memory missing, everything present is idle: before, memory counted as 1.0
    // ("at target") and the service scaled down; now the gap blocks scale-down.
    let no_memory = Observation::new(10)
        .reading("cpu", MetricValue::Average(5.0))
        .reading("queue", MetricValue::Total(0.0))
        .latency_p95_ms(100.0)
        .error_rate(0.0);
    let mut c = Composite::new(cfg.clone()).unwrap();
    let d = c.decide(&no_memory, T0).unwrap();
    assert_eq!(d.desired_replicas, 10);
    assert!(d.has(Reason::PartialMetricsFailure));
    assert!(d.has(Reason::FailedGetMetrics));
    let memory = d.proposals.iter().find(|p| p.metric == "memory").unwrap();
    assert_eq!(
        (memory.replicas, memory.error.as_deref()),
        (None, Some("no reading"))
    );
    // ...but never blocks a scale-up driven by the signals that are present
    let hot = Observation::new(10).reading("cpu", MetricValue::Average(100.0));
    let d = c.decide(&hot, T0).unwrap();
    assert_eq!(d.desired_replicas, 15, "ceil(10 × 100/70)");
    assert!(d.has(Reason::PartialMetricsFailure));
    assert_eq!(
        d.proposals.iter().filter(|p| p.error.is_some()).count(),
        4,
        "memory, latency, queue and errors are missing"
    );
    // nothing at all: no change, FailedGetMetrics
    let d = c.decide(&Observation::new(10), T0).unwrap();
    assert_eq!(d.desired_replicas, 10);
    assert_eq!(d.reasons, vec![Reason::FailedGetMetrics]);
    assert_eq!(d.proposals.len(), 5);
    // a signal with weight 0 is switched off: neither read nor required
    let mut c = Composite::new(CompositeConfig {
        weights: [0.3, 0.0, 0.2, 0.15, 0.1],
        ..cfg
    })
    .unwrap();
    let d = c.decide(&no_memory, T0).unwrap();
    assert!(d.desired_replicas < 10, "scales down: {d:?}");
    assert!(!d.has(Reason::PartialMetricsFailure));
    assert!(d.proposals.iter().all(|p| p.metric != "memory"));
}

#[test]
fn composite_state_survives_a_restart() {
    let mut a = Composite::new(CompositeConfig::default()).unwrap();
    for i in 0..12u32 {
        let o = obs(10, 50.0, 50.0, 5.0)
            .reading("rps", MetricValue::Total(100.0 + 10.0 * f64::from(i)));
        a.decide(&o, T0 + Duration::from_secs(u64::from(i) * 15))
            .unwrap();
    }
    a.record_actuation(8, 10, T0 + Duration::from_secs(180));
    let json = serde_json::to_string(a.state()).unwrap();
    let state: CompositeState = serde_json::from_str(&json).unwrap();
    assert_eq!(state.rps.len(), 10, "bounded");
    let mut b = Composite::with_state(CompositeConfig::default(), state).unwrap();
    // the cooldown after the actuation at t = 180 s is remembered
    let idle = obs(10, 5.0, 5.0, 0.0);
    let later = T0 + Duration::from_secs(240);
    let (da, db) = (
        a.decide(&idle, later).unwrap(),
        b.decide(&idle, later).unwrap(),
    );
    assert_eq!(da, db);
    assert!(db.has(Reason::ScaleDownCooldown));
    // and the rising trend too
    let warm = obs(10, 80.0, 50.0, 5.0).reading("rps", MetricValue::Total(230.0));
    let at = T0 + Duration::from_secs(255);
    assert_eq!(a.decide(&warm, at).unwrap(), b.decide(&warm, at).unwrap());
    // a restored state is checked and bounded
    let bad = CompositeState {
        rps: [1.0, f64::NAN].into_iter().collect(),
        last_actuation: None,
    };
    assert!(Composite::with_state(CompositeConfig::default(), bad).is_err());
    let long = CompositeState {
        rps: (0..50).map(f64::from).collect(),
        last_actuation: None,
    };
    let c = Composite::with_state(CompositeConfig::default(), long).unwrap();
    assert_eq!(c.state().rps.front(), Some(&40.0));
}
