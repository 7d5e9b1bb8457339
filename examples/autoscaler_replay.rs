//! Replays the traces shipped with `sysmanage-scaling` through three scalers
//! and compares SLO-violation minutes, replica-hours and scale events.
//!
//! Run with `cargo run --release --example autoscaler_replay`. It exits with
//! an error if any scaler rejected a decision during a replay.

use std::sync::Arc;
use std::time::Duration;

use sysmanage_core::LoadForecast;
use sysmanage_examples::{init_tracing, section};
use sysmanage_scaling::{
    AutoScaler, Behavior, Composite, CompositeConfig, Hpa, HpaSpec, MetricSpec, PredictiveConfig,
    Scaler, ScalerConfig, SeasonalNaive, ServiceModel, SimReport, Trace, simulate,
};

use sysmanage_examples::scaling_demo;

/// Decisions (and simulation steps) at the HPA's default sync period.
const INTERVAL: Duration = Duration::from_secs(15);
/// CPU target (the model's latency breaks the SLO above 80 % utilisation).
const CPU_TARGET: i32 = 70;
/// The price of one SLO-violating minute, in replica-hours, for ranking scalers.
const VIOLATION_MINUTE_COST: f64 = 10.0;

fn hpa_spec() -> HpaSpec {
    HpaSpec::new(
        2,
        60,
        vec![MetricSpec::resource_utilization("cpu", CPU_TARGET)],
    )
    .with_behavior(Behavior::default())
}

fn replay(
    trace: &Trace,
    model: &ServiceModel,
) -> Result<Vec<SimReport>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();

    let mut hpa = Hpa::new(hpa_spec())?;
    let mut report = simulate(trace, &mut hpa, model, INTERVAL, None)?;
    report.scaler = "hpa-default".into();
    out.push(report);

    let forecaster = Arc::new(SeasonalNaive::new(
        "rps",
        INTERVAL,
        Duration::from_secs(86_400),
    )?);
    let lead = model.startup + Duration::from_secs(300);
    let cfg = ScalerConfig::new("predictive", hpa_spec()).predictive(PredictiveConfig {
        max_recent_error: 0.2,
        ..PredictiveConfig::new(
            "rps",
            model.capacity_per_replica * f64::from(CPU_TARGET) / 100.0,
            lead,
        )
    });
    let mut predictive = Scaler::new(cfg, Some(forecaster.clone() as Arc<dyn LoadForecast>))?;
    let mut feed = |at, v| forecaster.observe(at, v);
    out.push(simulate(
        trace,
        &mut predictive,
        model,
        INTERVAL,
        Some(&mut feed),
    )?);

    let mut composite = Composite::new(CompositeConfig {
        max_replicas: 60,
        // the simulated service reports no memory signal: switch it off
        // (a missing signal with a weight would block every scale-down)
        weights: [0.3, 0.0, 0.2, 0.15, 0.1],
        ..CompositeConfig::default()
    })?;
    out.push(simulate(
        trace,
        &mut composite as &mut dyn AutoScaler,
        model,
        INTERVAL,
        None,
    )?);
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();

    section("one scaler, four decisions");
    scaling_demo::demo_scaling().await?;

    let model = ServiceModel {
        // ten minutes from scale-up to serving (image pull, JVM warm-up, cache fill)
        startup: Duration::from_secs(600),
        ..ServiceModel::default()
    };
    let traces = Trace::shipped()?;
    section("trace replay");
    println!(
        "model: {} rps per replica, start-up {:?}, p95 SLO {} ms; CPU target {CPU_TARGET} %; decisions every {:?}",
        model.capacity_per_replica, model.startup, model.slo_latency_ms, INTERVAL
    );
    println!("cost = replica-hours + {VIOLATION_MINUTE_COST} x SLO-violation minutes");
    println!(
        "{:<16} {:<12} {:>10} {:>14} {:>12} {:>6} {:>7} {:>10}",
        "trace", "scaler", "slo_min", "replica_hours", "scale_events", "peak", "errors", "cost"
    );
    let mut totals: Vec<(String, f64, f64)> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for trace in &traces {
        for r in replay(trace, &model)? {
            println!(
                "{:<16} {:<12} {:>10.1} {:>14.1} {:>12} {:>6} {:>7} {:>10.0}",
                r.trace,
                r.scaler,
                r.slo_violation_minutes,
                r.replica_hours,
                r.scale_events,
                r.peak_replicas,
                r.decision_errors,
                r.replica_hours + VIOLATION_MINUTE_COST * r.slo_violation_minutes
            );
            if r.decision_errors > 0 {
                failed.push(format!(
                    "{} on {}: {} decision errors",
                    r.scaler, r.trace, r.decision_errors
                ));
            }
            match totals.iter_mut().find(|t| t.0 == r.scaler) {
                Some(t) => {
                    t.1 += r.slo_violation_minutes;
                    t.2 += r.replica_hours;
                }
                None => totals.push((r.scaler.clone(), r.slo_violation_minutes, r.replica_hours)),
            }
        }
    }
    // a scaler that rejected decisions did not really run the replay
    if !failed.is_empty() {
        return Err(format!("decisions failed: {}", failed.join("; ")).into());
    }
    // best: the lowest total cost over all traces
    let cost = |t: &(String, f64, f64)| t.2 + VIOLATION_MINUTE_COST * t.1;
    totals.sort_by(|a, b| cost(a).total_cmp(&cost(b)));
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
