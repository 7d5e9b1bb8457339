//! `sysmanage-scaling` in a few lines: an HPA-compatible scaler with a latency
//! guard, deciding on in-memory metrics and scaling an in-memory target.

use std::sync::Arc;
use std::time::Duration;

use sysmanage_core::{ManualClock, Timestamp};
use sysmanage_scaling::{
    Behavior, Controller, Guards, HpaSpec, InMemoryMetrics, InMemoryTarget, MetricSpec,
    MetricValue, Observation, Scaler, ScalerConfig,
};

/// Runs a scaler through a load spike and its aftermath, printing each explained decision.
pub async fn demo_scaling() -> Result<(), Box<dyn std::error::Error>> {
    // Kubernetes semantics: CPU target 60 %, behavior defaults (scale up by
    // max(4 pods, 100 %) per 15 s, scale down after a 300 s window).
    let hpa = HpaSpec::new(2, 20, vec![MetricSpec::resource_utilization("cpu", 60)])
        .with_behavior(Behavior::default());
    let cfg = ScalerConfig::new("web", hpa).guards(Guards {
        latency_slo_ms: Some(250.0),
        ..Guards::default()
    });
    let scaler = Scaler::new(cfg, None)?;

    let metrics = Arc::new(InMemoryMetrics::new(Observation::default()));
    let target = Arc::new(InMemoryTarget::new(3));
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let mut controller = Controller::new(
        scaler,
        metrics.clone(),
        target.clone(),
        Arc::new(clock.clone()),
        Duration::from_secs(15),
    )?;

    let phases = [
        ("spike", 95.0, 180.0),
        ("still hot", 80.0, 150.0),
        ("cooling, latency still high", 30.0, 400.0),
        ("cool", 30.0, 90.0),
    ];
    for (label, cpu, p95) in phases {
        metrics.set(
            Observation::default()
                .reading("cpu", MetricValue::Average(cpu))
                .latency_p95_ms(p95),
        );
        let d = controller.tick().await?;
        let reasons: Vec<&str> = d.reasons.iter().map(|r| r.as_str()).collect();
        println!(
            "{label:<30} cpu={cpu:>3}% p95={p95:>3}ms  {} -> {} replicas  [{}]",
            d.current_replicas,
            d.desired_replicas,
            reasons.join(", ")
        );
        clock.advance(Duration::from_secs(15));
    }
    println!("target scaled through {:?}", target.history());
    Ok(())
}
