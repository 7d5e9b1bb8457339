//! Every tracing event's target starts with the crate name. Alone in its
//! test binary: tracing caches callsite interest process-wide, so a test
//! running on another thread could register a callsite before this test's
//! scoped subscriber exists and hide its events.

use std::sync::Arc;
use std::time::Duration;

use sysmanage_core::{ManualClock, Timestamp};
use sysmanage_scaling::{
    Controller, HpaSpec, InMemoryMetrics, InMemoryTarget, MetricSpec, MetricValue, Observation,
    Scaler, ScalerConfig,
};

fn spec() -> HpaSpec {
    HpaSpec::new(1, 20, vec![MetricSpec::resource_utilization("cpu", 50)])
}

fn cpu(pct: f64) -> Observation {
    Observation::default().reading("cpu", MetricValue::Average(pct))
}

/// Records `(target, event field)` of every tracing event.
#[derive(Clone, Default)]
struct Recorder(Arc<std::sync::Mutex<Vec<(String, String)>>>);

struct EventField(String);
impl tracing::field::Visit for EventField {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "event" {
            self.0 = value.to_owned();
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "event" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        let mut f = EventField(String::new());
        e.record(&mut f);
        self.0
            .lock()
            .unwrap()
            .push((e.metadata().target().to_owned(), f.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[derive(Debug)]
struct FailingForecast;
impl sysmanage_core::LoadForecast for FailingForecast {
    fn forecast(
        &self,
        _: &str,
        _: Timestamp,
        _: Duration,
    ) -> sysmanage_core::Result<sysmanage_core::Forecast> {
        Err(sysmanage_core::Error::Empty { field: "history" })
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_tracing_target_starts_with_the_crate_name() {
    let rec = Recorder::default();
    let _guard = tracing::subscriber::set_default(rec.clone());

    let metrics = Arc::new(InMemoryMetrics::new(cpu(100.0)));
    let target = Arc::new(InMemoryTarget::new(2));
    let cfg = ScalerConfig::new("p", spec()).predictive(sysmanage_scaling::PredictiveConfig::new(
        "rps",
        10.0,
        Duration::from_secs(60),
    ));
    let scaler = Scaler::new(cfg, Some(Arc::new(FailingForecast))).unwrap();
    let mut ctl = Controller::new(
        scaler,
        metrics.clone(),
        target.clone(),
        Arc::new(ManualClock::new(Timestamp::from_secs(1_700_000_000))),
        Duration::from_secs(15),
    )
    .unwrap();
    ctl.tick().await.unwrap(); // decision, actuated, forecast_failed
    metrics.fail_next(1);
    ctl.tick().await.unwrap(); // metrics_failed
    metrics.set(cpu(400.0));
    target.fail_next(1);
    assert!(ctl.tick().await.is_err()); // actuation_failed
    metrics.set(cpu(f64::NAN));
    assert!(ctl.tick().await.is_err()); // decision_rejected
    let (handle, run) = ctl.start();
    let task = tokio::spawn(run);
    handle.shutdown(Duration::from_secs(1)).await.unwrap(); // shutdown
    task.await.unwrap();

    let seen = rec.0.lock().unwrap().clone();
    for (target, event) in &seen {
        assert!(
            target.starts_with("sysmanage_scaling::"),
            "{target} ({event})"
        );
    }
    let events: std::collections::BTreeSet<&str> = seen.iter().map(|(_, e)| e.as_str()).collect();
    for e in [
        "decision",
        "actuated",
        "actuation_failed",
        "metrics_failed",
        "decision_rejected",
        "shutdown",
        "forecast_failed",
    ] {
        assert!(events.contains(e), "{e} missing from {events:?}");
    }
}
