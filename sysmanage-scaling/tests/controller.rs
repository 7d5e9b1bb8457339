//! The async controller loop on in-memory edges, and decision statistics.

use std::sync::Arc;
use std::time::Duration;

use sysmanage_core::{ManualClock, Timestamp};
use sysmanage_scaling::{
    Action, AutoScaler, Controller, DecisionStats, Hpa, HpaSpec, InMemoryMetrics, InMemoryTarget,
    MetricSpec, MetricValue, Observation, Reason, Scaler, ScalerConfig, ScalingError, Trend,
};
use tokio::sync::watch;

fn spec() -> HpaSpec {
    HpaSpec::new(1, 20, vec![MetricSpec::resource_utilization("cpu", 50)])
}

fn cpu(pct: f64) -> Observation {
    Observation::default().reading("cpu", MetricValue::Average(pct))
}

#[tokio::test(start_paused = true)]
async fn loop_reads_decides_actuates_and_stops_on_signal() {
    let metrics = Arc::new(InMemoryMetrics::new(cpu(100.0)));
    let target = Arc::new(InMemoryTarget::new(2));
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let ctl = Controller::new(
        Hpa::new(spec()).unwrap(),
        metrics.clone(),
        target.clone(),
        Arc::new(clock.clone()),
        Duration::from_secs(15),
    )
    .unwrap();
    let (tx, rx) = watch::channel(false);
    let handle = tokio::spawn(ctl.run(rx));
    // first tick fires immediately: 2 → ceil(2 × 100/50) = 4
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(target.history(), vec![4]);
    metrics.set(cpu(50.0));
    clock.advance(Duration::from_secs(15));
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(target.current(), 4, "at target: no change");
    tx.send(true).unwrap();
    let ctl = tokio::time::timeout(Duration::from_secs(1), handle)
        .await
        .unwrap()
        .unwrap();
    let snap = ctl.stats().snapshot(
        Timestamp::from_secs(1_700_000_100),
        Duration::from_secs(3600),
    );
    assert_eq!((snap.scale_up, snap.no_action), (1, 1));
    assert_eq!(ctl.last_decision().unwrap().action, Action::None);
    let status = serde_json::to_value(ctl.status(Duration::from_secs(3600))).unwrap();
    assert_eq!(status["scaler"], "hpa");
    assert_eq!(status["stats"]["scaleUp"], 1);
    assert_eq!(status["lastDecision"]["desiredReplicas"], 4);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_sender_stops_the_loop() {
    let ctl = Controller::new(
        Hpa::new(spec()).unwrap(),
        Arc::new(InMemoryMetrics::new(cpu(50.0))),
        Arc::new(InMemoryTarget::new(2)),
        Arc::new(ManualClock::new(Timestamp::EPOCH)),
        Duration::from_secs(15),
    )
    .unwrap();
    let (tx, rx) = watch::channel(false);
    let handle = tokio::spawn(ctl.run(rx));
    tokio::time::sleep(Duration::from_secs(40)).await;
    drop(tx);
    let ctl = tokio::time::timeout(Duration::from_secs(1), handle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ctl.stats()
            .snapshot(Timestamp::EPOCH, Duration::from_secs(60))
            .total,
        3
    );
}

#[tokio::test]
async fn failed_actuation_is_not_recorded_and_metric_failures_reach_the_scaler() {
    let hpa = spec().with_behavior(sysmanage_scaling::Behavior::default());
    let scaler = Scaler::new(ScalerConfig::new("s", hpa).fallback(2, 6), None).unwrap();
    let metrics = Arc::new(InMemoryMetrics::new(cpu(100.0)));
    let target = Arc::new(InMemoryTarget::new(2));
    let clock = ManualClock::new(Timestamp::from_secs(1_000));
    let mut ctl = Controller::new(
        scaler,
        metrics.clone(),
        target.clone(),
        Arc::new(clock.clone()),
        Duration::from_secs(15),
    )
    .unwrap();
    target.fail_next(1);
    assert!(matches!(
        ctl.tick().await,
        Err(ScalingError::Backend {
            backend: "scale target",
            ..
        })
    ));
    assert!(
        ctl.scaler().state().hpa.scale_up_events.is_empty(),
        "no confirmed actuation, no event"
    );
    let d = ctl.tick().await.unwrap();
    assert_eq!(d.desired_replicas, 4);
    assert_eq!(ctl.scaler().state().hpa.scale_up_events.len(), 1);
    // metrics source down twice → fallback replicas
    metrics.fail_next(2);
    clock.advance(Duration::from_secs(15));
    assert!(ctl.tick().await.unwrap().has(Reason::FailedGetMetrics));
    let d = ctl.tick().await.unwrap();
    assert!(d.has(Reason::FallbackReplicas));
    assert_eq!(target.current(), 6);
    assert!(
        Controller::new(
            Hpa::new(spec()).unwrap(),
            metrics,
            target,
            Arc::new(clock),
            Duration::ZERO
        )
        .is_err()
    );
}

#[test]
fn stats_trends() {
    let run = |actions: &[Action]| {
        let mut s = DecisionStats::new(3);
        let mut big = DecisionStats::default();
        for (i, a) in actions.iter().enumerate() {
            s.record(Timestamp::from_secs(i as i64), *a);
            big.record(Timestamp::from_secs(i as i64), *a);
        }
        assert!(
            s.snapshot(Timestamp::from_secs(100), Duration::from_secs(3600))
                .total
                <= 3,
            "bounded"
        );
        big.snapshot(Timestamp::from_secs(100), Duration::from_secs(3600))
    };
    use Action::*;
    assert_eq!(run(&[ScaleUp, None]).trend, Trend::InsufficientData);
    assert_eq!(
        run(&[ScaleDown, ScaleDown, None, ScaleDown, None]).trend,
        Trend::ScalingDown
    );
    assert_eq!(run(&[None, None, ScaleUp, None, None]).trend, Trend::Stable);
    let s = run(&[ScaleUp, ScaleDown, ScaleUp, ScaleDown, None]);
    assert_eq!(s.trend, Trend::Oscillating);
    assert_eq!(s.actions_per_hour, 4.0);
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains("\"trend\":\"oscillating\""), "{json}");
}

#[test]
fn scaler_names() {
    assert_eq!(Hpa::new(spec()).unwrap().name(), "hpa");
}

/// A scale target whose `scale` never returns, and a metrics source whose `observe` never returns.
#[derive(Debug)]
struct Stuck;

#[async_trait::async_trait]
impl sysmanage_scaling::ScaleTarget for Stuck {
    async fn replicas(&self) -> Result<u32, sysmanage_core::BoxError> {
        Ok(2)
    }
    async fn scale(&self, _: u32) -> Result<(), sysmanage_core::BoxError> {
        std::future::pending().await
    }
}

#[async_trait::async_trait]
impl sysmanage_scaling::MetricsSource for Stuck {
    async fn observe(&self) -> Result<Observation, sysmanage_core::BoxError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_interrupts_a_pass_stuck_on_the_target() {
    // CPU at 100 % wants 4 replicas; the target never answers the scale call.
    let ctl = Controller::new(
        Hpa::new(spec()).unwrap(),
        Arc::new(InMemoryMetrics::new(cpu(100.0))),
        Arc::new(Stuck),
        Arc::new(ManualClock::new(Timestamp::EPOCH)),
        Duration::from_secs(15),
    )
    .unwrap();
    let (tx, rx) = watch::channel(false);
    let handle = tokio::spawn(ctl.run(rx));
    tokio::time::sleep(Duration::from_secs(1)).await;
    tx.send(true).unwrap();
    // the call timeout (30 s by default) has not fired yet: shutdown alone ends the loop
    let ctl = tokio::time::timeout(Duration::from_secs(1), handle)
        .await
        .expect("run() returns on shutdown while scale() hangs")
        .unwrap();
    assert_eq!(
        ctl.stats()
            .snapshot(Timestamp::EPOCH, Duration::from_secs(60))
            .scale_up,
        1
    );
    assert!(
        ctl.last_decision().is_none(),
        "the abandoned pass confirmed nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn calls_that_outlast_the_call_timeout_fail_the_pass() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_000)));
    let behaved = spec().with_behavior(sysmanage_scaling::Behavior::default());
    // a stuck scale call: a typed backend error naming the timeout, no event recorded
    let mut ctl = Controller::new(
        Hpa::new(behaved.clone()).unwrap(),
        Arc::new(InMemoryMetrics::new(cpu(100.0))),
        Arc::new(Stuck),
        clock.clone(),
        Duration::from_secs(15),
    )
    .unwrap()
    .with_call_timeout(Duration::from_secs(5))
    .unwrap();
    let started = tokio::time::Instant::now();
    let e = ctl.tick().await.unwrap_err();
    assert!(
        matches!(
            e,
            ScalingError::Backend {
                backend: "scale target",
                ..
            }
        ),
        "{e}"
    );
    let source = std::error::Error::source(&e).unwrap().to_string();
    assert!(source.contains("timed out after 5s"), "{source}");
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(5),
        "paused clock: exactly the timeout"
    );
    assert!(ctl.scaler().state().scale_up_events.is_empty());
    // a stuck metrics source: the pass decides on unavailable metrics
    let target = Arc::new(InMemoryTarget::new(3));
    let mut ctl = Controller::new(
        Hpa::new(behaved).unwrap(),
        Arc::new(Stuck),
        target.clone(),
        clock,
        Duration::from_secs(15),
    )
    .unwrap()
    .with_call_timeout(Duration::from_secs(5))
    .unwrap();
    let d = ctl.tick().await.unwrap();
    assert_eq!(d.desired_replicas, 3);
    assert!(d.has(Reason::FailedGetMetrics));
    assert_eq!(d.proposals[0].error.as_deref(), Some("no reading"));
    assert!(target.history().is_empty());
    // a zero timeout is rejected
    assert!(
        Controller::new(
            Hpa::new(spec()).unwrap(),
            Arc::new(Stuck),
            target,
            Arc::new(ManualClock::new(Timestamp::EPOCH)),
            Duration::from_secs(15),
        )
        .unwrap()
        .with_call_timeout(Duration::ZERO)
        .is_err()
    );
}

#[test]
fn the_run_future_is_send() {
    fn send<T: Send>(_: &T) {}
    let ctl = Controller::new(
        Hpa::new(spec()).unwrap(),
        Arc::new(Stuck),
        Arc::new(Stuck),
        Arc::new(ManualClock::new(Timestamp::EPOCH)),
        Duration::from_secs(15),
    )
    .unwrap();
    let (_tx, rx) = watch::channel(false);
    let fut = ctl.run(rx);
    send(&fut);
}

/// A target whose scale calls take `delay` (a slow cloud API).
#[derive(Debug)]
struct SlowTarget {
    inner: InMemoryTarget,
    delay: Duration,
}

#[async_trait::async_trait]
impl sysmanage_scaling::ScaleTarget for SlowTarget {
    async fn replicas(&self) -> Result<u32, sysmanage_core::BoxError> {
        self.inner.replicas().await
    }
    async fn scale(&self, replicas: u32) -> Result<(), sysmanage_core::BoxError> {
        tokio::time::sleep(self.delay).await;
        self.inner.scale(replicas).await
    }
}

fn slow_controller(delay: Duration) -> (Controller<Hpa>, Arc<SlowTarget>, Arc<InMemoryMetrics>) {
    let metrics = Arc::new(InMemoryMetrics::new(cpu(100.0)));
    let target = Arc::new(SlowTarget {
        inner: InMemoryTarget::new(2),
        delay,
    });
    let ctl = Controller::new(
        Hpa::new(spec()).unwrap(),
        metrics.clone(),
        target.clone(),
        Arc::new(ManualClock::new(Timestamp::from_secs(1_700_000_000))),
        Duration::from_secs(15),
    )
    .unwrap()
    .with_call_timeout(Duration::from_secs(120))
    .unwrap();
    (ctl, target, metrics)
}

#[tokio::test(start_paused = true)]
async fn the_handle_reads_status_while_the_loop_runs() {
    let (ctl, target, metrics) = slow_controller(Duration::ZERO);
    let (handle, run) = ctl.start();
    let task = tokio::spawn(run);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = handle.status(Duration::from_secs(3600)).unwrap();
    assert_eq!(status.scaler, "hpa");
    assert_eq!(status.stats.scale_up, 1);
    assert_eq!(status.last_decision.unwrap().desired_replicas, 4);
    metrics.set(cpu(50.0));
    tokio::time::sleep(Duration::from_secs(15)).await;
    let status = handle.status(Duration::from_secs(3600)).unwrap();
    assert_eq!(status.stats.total, 2, "the second pass is visible too");
    assert_eq!(
        handle.last_decision().unwrap().unwrap().action,
        Action::None
    );
    assert!(!task.is_finished());
    assert!(
        handle
            .shutdown(Duration::from_secs(1))
            .await
            .unwrap()
            .graceful
    );
    let ctl = task.await.unwrap();
    assert_eq!(target.inner.history(), vec![4]);
    assert_eq!(
        ctl.stats()
            .snapshot(Timestamp::from_secs(1_700_000_000), Duration::from_secs(60))
            .total,
        2
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_an_in_flight_actuation_finish_within_the_deadline() {
    // the scale call takes 5 s; shutdown starts 1 s into it with a 10 s deadline
    let (ctl, target, _) = slow_controller(Duration::from_secs(5));
    let (handle, run) = ctl.start();
    let task = tokio::spawn(run);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        target.inner.history().is_empty(),
        "the scale call is in flight"
    );
    let started = tokio::time::Instant::now();
    let r = handle.shutdown(Duration::from_secs(10)).await.unwrap();
    assert!(r.graceful);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(4),
        "waited for the call, not the deadline"
    );
    assert_eq!(target.inner.history(), vec![4], "the actuation completed");
    let mut ctl = task.await.unwrap();
    // the confirmed actuation was recorded and the decision kept
    assert_eq!(ctl.last_decision().unwrap().desired_replicas, 4);
    // later calls are typed errors
    assert!(matches!(
        handle.status(Duration::from_secs(60)),
        Err(ScalingError::ShutDown)
    ));
    assert!(matches!(
        handle.last_decision(),
        Err(ScalingError::ShutDown)
    ));
    assert!(matches!(
        handle.shutdown(Duration::from_secs(1)).await,
        Err(ScalingError::ShutDown)
    ));
    assert!(matches!(ctl.tick().await, Err(ScalingError::ShutDown)));
    assert!(target.inner.history().len() == 1, "no pass after shutdown");
}

#[tokio::test(start_paused = true)]
async fn shutdown_abandons_a_pass_that_outlasts_the_deadline() {
    let (ctl, target, _) = slow_controller(Duration::from_secs(60));
    let (handle, run) = ctl.start();
    let task = tokio::spawn(run);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let clone = handle.clone();
    let started = tokio::time::Instant::now();
    let r = clone.shutdown(Duration::from_secs(2)).await.unwrap();
    assert!(!r.graceful);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let ctl = task.await.unwrap();
    assert!(
        target.inner.history().is_empty(),
        "the scale call was abandoned"
    );
    assert!(
        ctl.last_decision().is_none(),
        "an unconfirmed actuation is not recorded"
    );
    assert!(handle.status(Duration::from_secs(60)).is_err());
    // a deadline beyond a day is refused before anything stops
    let (ctl, _, _) = slow_controller(Duration::ZERO);
    let (h, _run) = ctl.start();
    assert!(matches!(
        h.shutdown(Duration::MAX).await,
        Err(ScalingError::OutOfRange { .. })
    ));
    assert!(h.status(Duration::from_secs(1)).is_ok());
}
