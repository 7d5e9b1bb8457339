//! Controllers as replicas of one fleet, on the in-memory lease and state
//! store with paused time: fencing, resumed windows, forecast inputs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use sysmanage_core::lease::{
    Elector, FenceGuard, FencingToken, InMemoryLease, InMemoryStateStore, LeaseConfig, StateStore,
};
use sysmanage_core::{ManualClock, Timestamp};
use sysmanage_scaling::{
    Behavior, Controller, ControllerState, FencedTarget, Fleet, ForecastInput, Hpa, HpaSpec,
    InMemoryMetrics, InMemoryTarget, MetricSpec, MetricValue, Observation, ScaleTarget,
    ScalingError, ScalingPolicy, ScalingRules,
};

fn lease_cfg() -> LeaseConfig {
    LeaseConfig::new(Duration::from_millis(600)).unwrap()
}

fn cpu(v: f64) -> Observation {
    Observation::default()
        .reading("cpu", MetricValue::Average(v))
        .reading("rps", MetricValue::Total(v * 10.0))
}

struct Replica {
    elector: Elector,
    ctl: Controller<Hpa>,
    paused: Arc<AtomicBool>,
}

/// A future that is not polled while `paused` is set: a stopped process.
struct Pausable<F> {
    inner: Pin<Box<F>>,
    paused: Arc<AtomicBool>,
}

impl<F: Future> Future for Pausable<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if self.paused.load(Ordering::SeqCst) {
            let w = cx.waker().clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                w.wake();
            });
            return Poll::Pending;
        }
        self.inner.as_mut().poll(cx)
    }
}

/// CPU at 50 %; scale-down without a stabilization window but at most one
/// pod per two minutes.
fn spec() -> HpaSpec {
    HpaSpec::new(1, 20, vec![MetricSpec::resource_utilization("cpu", 50)]).with_behavior(Behavior {
        scale_up: None,
        scale_down: Some(ScalingRules::new(0, vec![ScalingPolicy::pods(1, 120)])),
    })
}

fn replica(
    name: &str,
    lease: &Arc<InMemoryLease>,
    store: Option<&Arc<InMemoryStateStore>>,
    metrics: &Arc<InMemoryMetrics>,
    target: Arc<dyn ScaleTarget>,
    clock: &Arc<ManualClock>,
) -> Replica {
    let (elector, run) = Elector::start(name, lease.clone(), lease_cfg()).unwrap();
    let paused = Arc::new(AtomicBool::new(false));
    tokio::spawn(Pausable {
        inner: Box::pin(run),
        paused: paused.clone(),
    });
    let hpa = Hpa::new(spec()).unwrap();
    let mut fleet = Fleet::new(elector.clone());
    if let Some(store) = store {
        fleet = fleet.state_store(store.clone(), "web").unwrap();
    }
    let ctl = Controller::new(
        hpa,
        metrics.clone(),
        target,
        clock.clone(),
        Duration::from_secs(15),
    )
    .unwrap()
    .with_fleet(fleet)
    .unwrap();
    Replica {
        elector,
        ctl,
        paused,
    }
}

#[tokio::test(start_paused = true)]
async fn a_stale_leader_is_fenced_out_and_cannot_overwrite_the_state() {
    let lease = Arc::new(InMemoryLease::new());
    let store = Arc::new(InMemoryStateStore::new());
    let metrics = Arc::new(InMemoryMetrics::new(cpu(100.0)));
    let target = Arc::new(InMemoryTarget::new(2));
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_700_000_000)));
    let mut a = replica("a", &lease, Some(&store), &metrics, target.clone(), &clock);
    let mut b = replica("b", &lease, Some(&store), &metrics, target.clone(), &clock);

    let ta = a.elector.campaign().await.unwrap();
    a.ctl.tick().await.unwrap(); // 2 -> 4
    assert!(matches!(
        b.ctl.tick().await,
        Err(ScalingError::Core(sysmanage_core::Error::NotLeader))
    ));

    // a's process stops; its lease expires and b takes over
    a.paused.store(true, Ordering::SeqCst);
    lease.revoke();
    let tb = b.elector.campaign().await.unwrap();
    assert!(tb > ta);
    clock.advance(Duration::from_secs(15));
    b.ctl.tick().await.unwrap(); // 4 -> 8
    // a wakes up within its local deadline, still holding ta, and acts
    assert_eq!(a.elector.token(), Some(ta), "a's deadline has not passed");
    metrics.set(cpu(400.0));
    let stale = a.ctl.tick().await.unwrap_err();
    assert!(
        matches!(
            &stale,
            ScalingError::Backend { source, .. }
                if matches!(source.downcast_ref::<sysmanage_core::Error>(),
                            Some(sysmanage_core::Error::StaleToken { .. }))
        ),
        "{stale:?}"
    );
    assert_eq!(target.fenced_history(), vec![(ta, 4), (tb, 8)]);
    assert_eq!(target.rejected(), 1);
    // the state is b's
    let (saved_by, bytes) = store.load("web").await.unwrap().unwrap();
    assert_eq!(saved_by, tb);
    assert_eq!(ControllerState::decode(&bytes).unwrap().token, tb);
}

/// The scale-down policy allows one pod per two minutes; a new leader must
/// count the scale-down its predecessor made.
async fn failover_after_load_drop(shared: bool) -> Vec<u32> {
    let lease = Arc::new(InMemoryLease::new());
    let store = Arc::new(InMemoryStateStore::new());
    let metrics = Arc::new(InMemoryMetrics::new(cpu(10.0)));
    let target = Arc::new(InMemoryTarget::new(8));
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_700_000_000)));
    let store_opt = shared.then_some(&store);
    let mut a = replica("a", &lease, store_opt, &metrics, target.clone(), &clock);
    let mut b = replica("b", &lease, store_opt, &metrics, target.clone(), &clock);
    a.elector.campaign().await.unwrap();
    a.ctl.tick().await.unwrap(); // 8 -> 7
    clock.advance(Duration::from_secs(15));
    a.ctl.tick().await.unwrap(); // held by the policy
    a.elector.resign().await;
    b.elector.campaign().await.unwrap();
    for _ in 0..3 {
        clock.advance(Duration::from_secs(15));
        b.ctl.tick().await.unwrap();
    }
    target.history()
}

#[tokio::test(start_paused = true)]
async fn a_new_leader_resumes_the_scaling_windows() {
    assert_eq!(failover_after_load_drop(true).await, vec![7]);
    // without the shared state the new leader scales down again at once:
    // the burst of scale-downs the shared state prevents
    assert_eq!(failover_after_load_drop(false).await, vec![7, 6]);
}

#[derive(Debug, Default)]
struct Recorder(std::sync::Mutex<Vec<(Timestamp, f64)>>);

impl ForecastInput for Recorder {
    fn observe(&self, at: Timestamp, value: f64) {
        self.0.lock().unwrap().push((at, value));
    }
}

#[tokio::test(start_paused = true)]
async fn forecast_inputs_follow_the_leadership() {
    let lease = Arc::new(InMemoryLease::new());
    let store = Arc::new(InMemoryStateStore::new());
    let metrics = Arc::new(InMemoryMetrics::new(cpu(50.0)));
    let target = Arc::new(InMemoryTarget::new(2));
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_700_000_000)));
    let mut a = replica("a", &lease, Some(&store), &metrics, target.clone(), &clock);
    let mut b = replica("b", &lease, Some(&store), &metrics, target.clone(), &clock);
    let rec_a = Arc::new(Recorder::default());
    let rec_b = Arc::new(Recorder::default());
    // rebuild the fleets with forecast inputs (cap 2)
    for (r, rec) in [(&mut a, &rec_a), (&mut b, &rec_b)] {
        let fleet = Fleet::new(r.elector.clone())
            .state_store(store.clone(), "web")
            .unwrap()
            .forecast_inputs("rps", rec.clone(), 2)
            .unwrap();
        let hpa = Hpa::new(spec()).unwrap();
        r.ctl = Controller::new(
            hpa,
            metrics.clone(),
            target.clone(),
            clock.clone(),
            Duration::from_secs(15),
        )
        .unwrap()
        .with_fleet(fleet)
        .unwrap();
    }
    a.elector.campaign().await.unwrap();
    for i in 0..3 {
        metrics.set(cpu(50.0 + f64::from(i)));
        a.ctl.tick().await.unwrap();
        clock.advance(Duration::from_secs(15));
    }
    assert_eq!(rec_a.0.lock().unwrap().len(), 3);
    a.elector.resign().await;
    b.elector.campaign().await.unwrap();
    metrics.set(cpu(60.0));
    b.ctl.tick().await.unwrap();
    let seen = rec_b.0.lock().unwrap().clone();
    // the newest two of a's inputs, then b's own
    let t0 = 1_700_000_000;
    assert_eq!(
        seen,
        vec![
            (Timestamp::from_secs(t0 + 15), 510.0),
            (Timestamp::from_secs(t0 + 30), 520.0),
            (Timestamp::from_secs(t0 + 45), 600.0),
        ]
    );
    assert!(
        Fleet::new(a.elector.clone())
            .forecast_inputs("rps", rec_a.clone(), 0)
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn fenced_target_serialises_terms_and_refuses_unfenced_calls() {
    let inner = Arc::new(InMemoryTarget::new(1));
    let guard = Arc::new(FenceGuard::new());
    let t = FencedTarget::new(inner.clone(), guard.clone());
    t.scale_fenced(2, FencingToken::new(5)).await.unwrap();
    t.scale_fenced(3, FencingToken::new(5)).await.unwrap();
    assert!(t.scale_fenced(4, FencingToken::new(4)).await.is_err());
    assert!(t.scale(9).await.is_err());
    assert_eq!(inner.history(), vec![2, 3]);
    assert_eq!(guard.rejected(), 1);
    assert_eq!(t.replicas().await.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_scaler_without_state_cannot_share_it() {
    #[derive(Debug)]
    struct Fixed;
    impl sysmanage_scaling::AutoScaler for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn decide(
            &mut self,
            obs: &Observation,
            now: Timestamp,
        ) -> sysmanage_scaling::Result<sysmanage_scaling::Decision> {
            Hpa::new(HpaSpec::new(
                1,
                2,
                vec![MetricSpec::resource_utilization("cpu", 50)],
            ))?
            .decide(obs, now)
        }
        fn record_actuation(&mut self, _: u32, _: u32, _: Timestamp) {}
    }
    let lease = Arc::new(InMemoryLease::new());
    let (elector, _run) = Elector::start("a", lease, lease_cfg()).unwrap();
    let fleet = Fleet::new(elector)
        .state_store(Arc::new(InMemoryStateStore::new()), "k")
        .unwrap();
    let ctl = Controller::new(
        Fixed,
        Arc::new(InMemoryMetrics::new(cpu(1.0))),
        Arc::new(InMemoryTarget::new(1)),
        Arc::new(ManualClock::new(Timestamp::EPOCH)),
        Duration::from_secs(1),
    )
    .unwrap();
    let e = ctl.with_fleet(fleet).unwrap_err();
    assert!(e.to_string().contains("exports no state"), "{e}");
}
