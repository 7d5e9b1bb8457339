//! What a running controller records through the `metrics` facade, with
//! the names and labels the crate documents.

use std::sync::Arc;
use std::time::Duration;

use sysmanage_core::{ManualClock, Timestamp};
use sysmanage_scaling::telemetry::{self, METRICS};
use sysmanage_scaling::{
    Controller, HpaSpec, InMemoryMetrics, InMemoryTarget, MetricSpec, MetricValue, Observation,
    Scaler, ScalerConfig,
};
use sysmanage_test::metrics::Capture;

#[test]
fn controller_records_replicas_decisions_reasons_actuations_and_flap_budget() {
    let capture = Capture::new();
    capture.run(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let hpa = HpaSpec::new(1, 10, vec![MetricSpec::resource_utilization("cpu", 50)]);
                let cfg = ScalerConfig::new("web", hpa).flap_budget(2, Duration::from_secs(3600));
                let scaler = Scaler::new(cfg, None).unwrap();
                let obs = |cpu| Observation::default().reading("cpu", MetricValue::Average(cpu));
                let metrics = Arc::new(InMemoryMetrics::new(obs(100.0)));
                let target = Arc::new(InMemoryTarget::new(2));
                let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
                let mut ctl = Controller::new(
                    scaler,
                    metrics.clone(),
                    target.clone(),
                    Arc::new(clock.clone()),
                    Duration::from_secs(15),
                )
                .unwrap();
                let first = ctl.tick().await.unwrap();
                assert_eq!(first.desired_replicas, 4);
                metrics.set(obs(50.0));
                clock.advance(Duration::from_secs(15));
                ctl.tick().await.unwrap();
            });
    });
    let scaler = [("scaler", "web")];
    assert_eq!(
        capture.value(telemetry::DESIRED_REPLICAS, &scaler),
        Some(4.0)
    );
    assert_eq!(
        capture.value(telemetry::CURRENT_REPLICAS, &scaler),
        Some(4.0)
    );
    assert_eq!(
        capture.value(
            telemetry::DECISIONS,
            &[("scaler", "web"), ("action", "scale_up")]
        ),
        Some(1.0)
    );
    assert_eq!(
        capture.value(
            telemetry::DECISIONS,
            &[("scaler", "web"), ("action", "none")]
        ),
        Some(1.0)
    );
    assert_eq!(
        capture.value(
            telemetry::ACTUATIONS,
            &[("scaler", "web"), ("result", "ok")]
        ),
        Some(1.0)
    );
    assert!(capture.value(telemetry::DECISION_REASONS, &scaler).unwrap() >= 2.0);
    assert_eq!(capture.value(telemetry::FLAP_BUDGET, &scaler), Some(2.0));
    assert_eq!(capture.value(telemetry::FLAP_REVERSALS, &scaler), Some(0.0));
    capture.assert_documented(METRICS);
}
