//! Replays the traces shipped with `sysmanage-scaling` through three scalers
//! and compares SLO-violation minutes, replica-hours and scale events.
//!
//! Run with `cargo run --release --example autoscaler_replay`.

use std::sync::Arc;
use std::time::Duration;

use sysmanage_core::LoadForecast;
use sysmanage_examples::{init_tracing, section};
use sysmanage_scaling::{
    AutoScaler, Behavior, Composite, CompositeConfig, Hpa, HpaSpec, MetricSpec, PredictiveConfig,
    Scaler, ScalerConfig, SeasonalNaive, ServiceModel, SimReport, Trace, simulate,
};

#[allow(unreachable_pub, dead_code)]
#[path = "src/scaling_demo.rs"]
mod scaling_demo;

/// Decisions (and simulation steps) every minute.
const INTERVAL: Duration = Duration::from_secs(60);

fn hpa_spec() -> HpaSpec {
    HpaSpec::new(2, 60, vec![MetricSpec::resource_utilization("cpu", 70)]).with_behavior(Behavior::default())
}

fn replay(trace: &Trace, model: &ServiceModel) -> Result<Vec<SimReport>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();

    let mut hpa = Hpa::new(hpa_spec())?;
    let mut report = simulate(trace, &mut hpa, model, INTERVAL, None)?;
    report.scaler = "hpa-default".into();
    out.push(report);

    let forecaster = Arc::new(SeasonalNaive::new("rps", INTERVAL, Duration::from_secs(86_400))?);
    let lead = model.startup + Duration::from_secs(300);
    let cfg = ScalerConfig::new("predictive", hpa_spec()).predictive(PredictiveConfig {
        max_recent_error: 0.2,
        ..PredictiveConfig::new("rps", model.capacity_per_replica * 0.7, lead)
    });
    let mut predictive = Scaler::new(cfg, Some(forecaster.clone() as Arc<dyn LoadForecast>))?;
    let mut feed = |at, v| forecaster.observe(at, v);
    out.push(simulate(trace, &mut predictive, model, INTERVAL, Some(&mut feed))?);

    let mut composite = Composite::new(CompositeConfig {
        max_replicas: 60,
        ..CompositeConfig::default()
    })?;
    out.push(simulate(trace, &mut composite as &mut dyn AutoScaler, model, INTERVAL, None)?);
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();

    section("one scaler, four decisions");
    scaling_demo::demo_scaling().await?;

    let model = ServiceModel {
        startup: Duration::from_secs(300),
        ..ServiceModel::default()
    };
    let traces = Trace::shipped()?;
    section("trace replay");
    println!(
        "model: {} rps per replica, start-up {:?}, p95 SLO {} ms; decisions every {:?}",
        model.capacity_per_replica, model.startup, model.slo_latency_ms, INTERVAL
    );
    println!(
        "{:<16} {:<12} {:>10} {:>14} {:>12} {:>6}",
        "trace", "scaler", "slo_min", "replica_hours", "scale_events", "peak"
    );
    let mut totals: Vec<(String, f64, f64)> = Vec::new();
    for trace in &traces {
        for r in replay(trace, &model)? {
            println!(
                "{:<16} {:<12} {:>10.1} {:>14.1} {:>12} {:>6}",
                r.trace, r.scaler, r.slo_violation_minutes, r.replica_hours, r.scale_events, r.peak_replicas
            );
            match totals.iter_mut().find(|t| t.0 == r.scaler) {
                Some(t) => {
                    t.1 += r.slo_violation_minutes;
                    t.2 += r.replica_hours;
                }
                None => totals.push((r.scaler.clone(), r.slo_violation_minutes, r.replica_hours)),
            }
        }
    }
    // best: fewest SLO-violation minutes, then fewest replica-hours
    totals.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.2.total_cmp(&b.2)));
    let best = &totals[0];
    println!(
        "summary: traces={} best_scaler={} slo_violation_minutes={:.1} replica_hours={:.1}",
        traces.len(),
        best.0,
        best.1,
        best.2
    );
    Ok(())
}
