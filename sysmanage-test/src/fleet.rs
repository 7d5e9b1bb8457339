//! Three controller instances in one process over one lease backend, with
//! fault injection and the actuator-log checks of the fleet tests
//! (feature `fleet`).
//!
//! Every instance runs an [`Elector`] and a [`Controller`] (an HPA on a
//! noisy CPU signal, so nearly every pass actuates) whose target is a
//! [`FencedTarget`] in front of one shared [`ActionLog`]: the log is the
//! actuator, and it records every action it applied with the token and the
//! instance. [`double_actuations`] checks it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use sysmanage_core::lease::{
    Elector, FenceGuard, FencingToken, LeaseBackend, LeaseConfig, StateStore,
};
use sysmanage_core::{BoxError, SplitMix64, SystemClock};
use sysmanage_scaling::{
    Behavior, Controller, ControllerHandle, FencedTarget, Fleet, Hpa, HpaSpec, InMemoryMetrics,
    MetricSpec, MetricValue, Observation, ScaleTarget, ScalingPolicy, ScalingRules,
};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One action the actuator applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    /// The token the call carried.
    pub token: FencingToken,
    /// The instance that made it.
    pub instance: usize,
    /// The replica count it set.
    pub replicas: u32,
}

/// The actuator: a replica count and the log of every action applied.
#[derive(Debug, Default)]
pub struct ActionLog {
    actions: Mutex<Vec<Action>>,
    current: AtomicU32,
}

impl ActionLog {
    /// Every action applied, in the order applied.
    pub fn actions(&self) -> Vec<Action> {
        lock(&self.actions).clone()
    }
}

/// What one instance's [`FencedTarget`] wraps: applies and logs.
#[derive(Debug)]
struct Recorder {
    instance: usize,
    log: Arc<ActionLog>,
    /// The token of the call in flight, set by [`Tagged`].
    token: Arc<Mutex<Option<FencingToken>>>,
}

#[async_trait::async_trait]
impl ScaleTarget for Recorder {
    async fn replicas(&self) -> Result<u32, BoxError> {
        Ok(self.log.current.load(Ordering::SeqCst).max(1))
    }
    async fn scale(&self, replicas: u32) -> Result<(), BoxError> {
        let token = (*lock(&self.token)).ok_or("no token")?;
        self.log.current.store(replicas, Ordering::SeqCst);
        lock(&self.log.actions).push(Action {
            token,
            instance: self.instance,
            replicas,
        });
        Ok(())
    }
}

/// Passes the call's token down to the [`Recorder`] behind the fence.
#[derive(Debug)]
struct Tagged {
    fenced: FencedTarget<Recorder>,
    token: Arc<Mutex<Option<FencingToken>>>,
    attempts: Arc<AtomicU32>,
    /// Set by [`Fault::PauseBeforeActuating`].
    pause_next: Arc<Mutex<Option<Duration>>>,
    switch: Arc<PauseSwitch>,
}

#[async_trait::async_trait]
impl ScaleTarget for Tagged {
    async fn replicas(&self) -> Result<u32, BoxError> {
        self.fenced.replicas().await
    }
    async fn scale(&self, replicas: u32) -> Result<(), BoxError> {
        self.fenced.scale(replicas).await
    }
    async fn scale_fenced(&self, replicas: u32, token: FencingToken) -> Result<(), BoxError> {
        let pause = lock(&self.pause_next).take();
        if let Some(d) = pause {
            // the process stops between reading its token and acting
            let switch = self.switch.clone();
            switch.pause();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                switch.resume();
            });
            tokio::task::yield_now().await;
        }
        self.attempts.fetch_add(1, Ordering::Relaxed);
        // one call at a time per instance: the controller awaits each
        *lock(&self.token) = Some(token);
        self.fenced.scale_fenced(replicas, token).await
    }
}

/// Violations in an actuator log: an action carrying a token older than
/// one applied before it, and a token used by two instances.
pub fn double_actuations(log: &[Action]) -> Vec<String> {
    let mut out = Vec::new();
    let mut newest: Option<Action> = None;
    let mut owner = std::collections::HashMap::new();
    for (i, a) in log.iter().enumerate() {
        if let Some(n) = newest
            && a.token < n.token
        {
            out.push(format!("action {i} {a:?} after {n:?}"));
        }
        if newest.is_none_or(|n| a.token >= n.token) {
            newest = Some(*a);
        }
        if let Some(prev) = owner.insert(a.token, a.instance)
            && prev != a.instance
        {
            out.push(format!(
                "action {i}: token {} used by instances {prev} and {}",
                a.token, a.instance
            ));
        }
    }
    out
}

/// Stops polling a future while paused: a stopped process.
#[derive(Debug, Default)]
pub struct PauseSwitch {
    paused: AtomicBool,
    /// Every paused future's waker (several futures share one switch).
    wakers: Mutex<Vec<Waker>>,
}

impl PauseSwitch {
    /// Stops the futures behind this switch.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }
    /// Lets them run again.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        for w in std::mem::take(&mut *lock(&self.wakers)) {
            w.wake();
        }
    }
}

/// `fut`, not polled while `switch` is paused.
pub fn pausable<F: Future>(switch: Arc<PauseSwitch>, fut: F) -> impl Future<Output = F::Output> {
    Pausable {
        inner: Box::pin(fut),
        switch,
    }
}

struct Pausable<F> {
    inner: Pin<Box<F>>,
    switch: Arc<PauseSwitch>,
}

impl<F: Future> Future for Pausable<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if self.switch.paused.load(Ordering::SeqCst) {
            lock(&self.switch.wakers).push(cx.waker().clone());
            if self.switch.paused.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        self.inner.as_mut().poll(cx)
    }
}

/// One instance of the fleet.
pub struct Instance {
    /// Its elector.
    pub elector: Elector,
    /// Pauses its elector driver and its controller loop together.
    pub switch: Arc<PauseSwitch>,
    handle: ControllerHandle,
    attempts: Arc<AtomicU32>,
    pause_next: Arc<Mutex<Option<Duration>>>,
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("elector", &self.elector)
            .finish_non_exhaustive()
    }
}

/// A fault the soak injects into the leader.
pub enum Fault {
    /// The leader resigns (and campaigns again once a new term leads).
    Resign,
    /// The leader's process stops for this long.
    Pause(Duration),
    /// The leader's process stops for this long at its next actuation,
    /// after it read its token and before the call reaches the fence.
    PauseBeforeActuating(Duration),
    /// A backend-specific fault (a killed session, a killed node).
    Run(Pin<Box<dyn Future<Output = ()> + Send>>),
}

impl fmt::Debug for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resign => f.write_str("Resign"),
            Self::Pause(d) => write!(f, "Pause({d:?})"),
            Self::PauseBeforeActuating(d) => write!(f, "PauseBeforeActuating({d:?})"),
            Self::Run(_) => f.write_str("Run"),
        }
    }
}

/// What a soak measured.
#[derive(Debug, Default)]
pub struct SoakReport {
    /// New terms observed after faults.
    pub leader_changes: u64,
    /// Actions the actuator applied.
    pub actuations: usize,
    /// Calls turned away by the fence (stale tokens).
    pub rejected: u64,
    /// Fenced calls attempted by all instances.
    pub attempts: u64,
    /// [`double_actuations`] of the log.
    pub double_actuations: Vec<String>,
    /// The longest time from a fault to a new term's token.
    pub max_leaderless: Duration,
    /// Faults injected, by name.
    pub faults: std::collections::BTreeMap<&'static str, u64>,
}

/// Three instances (or as many as backends are given).
pub struct Fleet3 {
    /// The instances.
    pub instances: Vec<Instance>,
    /// The actuator.
    pub log: Arc<ActionLog>,
    /// The fence in front of it.
    pub guard: Arc<FenceGuard>,
    cfg: LeaseConfig,
    stop_noise: Arc<AtomicBool>,
}

impl fmt::Debug for Fleet3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet3")
            .field("instances", &self.instances)
            .finish_non_exhaustive()
    }
}

fn hpa() -> Hpa {
    let fast = |_| Some(ScalingRules::new(0, vec![ScalingPolicy::pods(100, 1)]));
    let spec = HpaSpec::new(1, 50, vec![MetricSpec::resource_utilization("cpu", 50)])
        .with_behavior(Behavior {
            scale_up: fast(()),
            scale_down: fast(()),
        });
    Hpa::new(spec).expect("a valid spec")
}

impl Fleet3 {
    /// Starts one instance per backend (each with its own lease client, as
    /// separate processes would have), all campaigning, their controllers
    /// deciding every 10 ms on a CPU signal that changes every 5 ms (a load
    /// that needs between 2 and 12 replicas: nearly every pass actuates).
    ///
    /// # Panics
    /// On an invalid configuration.
    pub fn start(
        backends: Vec<Arc<dyn LeaseBackend>>,
        store: Option<(Arc<dyn StateStore>, String)>,
        cfg: LeaseConfig,
    ) -> Self {
        let log = Arc::new(ActionLog::default());
        log.current.store(4, Ordering::SeqCst);
        let guard = Arc::new(FenceGuard::new());
        let metrics = Arc::new(InMemoryMetrics::new(
            Observation::default().reading("cpu", MetricValue::Average(50.0)),
        ));
        let stop_noise = Arc::new(AtomicBool::new(false));
        {
            let (metrics, stop, log) = (metrics.clone(), stop_noise.clone(), log.clone());
            tokio::spawn(async move {
                let mut rng = SplitMix64::new(7);
                while !stop.load(Ordering::Relaxed) {
                    // a total load that needs 2 to 12 replicas at the 50 % target
                    let load = 100.0 + 500.0 * rng.next_f64();
                    let current = f64::from(log.current.load(Ordering::SeqCst).max(1));
                    let cpu = load / current;
                    metrics.set(Observation::default().reading("cpu", MetricValue::Average(cpu)));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
        }
        let mut instances = Vec::new();
        for (i, backend) in backends.into_iter().enumerate() {
            let (elector, driver) =
                Elector::start(format!("instance-{i}"), backend, cfg.clone()).expect("config");
            let switch = Arc::new(PauseSwitch::default());
            tokio::spawn(Pausable {
                inner: Box::pin(driver),
                switch: switch.clone(),
            });
            let token = Arc::new(Mutex::new(None));
            let attempts = Arc::new(AtomicU32::new(0));
            let pause_next = Arc::new(Mutex::new(None));
            let target = Tagged {
                fenced: FencedTarget::new(
                    Recorder {
                        instance: i,
                        log: log.clone(),
                        token: token.clone(),
                    },
                    guard.clone(),
                ),
                token,
                attempts: attempts.clone(),
                pause_next: pause_next.clone(),
                switch: switch.clone(),
            };
            let mut fleet = Fleet::new(elector.clone());
            if let Some((s, key)) = &store {
                fleet = fleet.state_store(s.clone(), key.clone()).expect("key");
            }
            let ctl = Controller::new(
                hpa(),
                metrics.clone(),
                Arc::new(target),
                Arc::new(SystemClock),
                Duration::from_millis(10),
            )
            .and_then(|c| c.with_call_timeout(Duration::from_millis(500)))
            .and_then(|c| c.with_fleet(fleet))
            .expect("controller");
            let (handle, run) = ctl.start();
            tokio::spawn(Pausable {
                inner: Box::pin(run),
                switch: switch.clone(),
            });
            let e = elector.clone();
            tokio::spawn(async move {
                let _ = e.campaign().await;
            });
            instances.push(Instance {
                elector,
                switch,
                handle,
                attempts,
                pause_next,
            });
        }
        Self {
            instances,
            log,
            guard,
            cfg,
            stop_noise,
        }
    }

    /// The lease configuration every instance uses.
    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    /// The instance leading with the newest token, if any.
    pub fn leader(&self) -> Option<(usize, FencingToken)> {
        self.instances
            .iter()
            .enumerate()
            .filter_map(|(i, inst)| inst.elector.token().map(|t| (i, t)))
            .max_by_key(|(_, t)| *t)
    }

    /// Waits up to `limit` for a term newer than `after` (any term when
    /// `None`); returns its instance and token.
    pub async fn wait_for_term(
        &self,
        after: Option<FencingToken>,
        limit: Duration,
    ) -> Option<(usize, FencingToken)> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some((i, t)) = self.leader()
                && after.is_none_or(|a| t > a)
            {
                return Some((i, t));
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Injects faults into the leader until `min_changes` new terms were
    /// observed or `limit` has passed. Each new term must lead within
    /// `bound` of its fault.
    ///
    /// # Panics
    /// When no new term leads within `bound` of a fault (the message names
    /// the fault).
    pub async fn soak(
        &self,
        min_changes: u64,
        limit: Duration,
        bound: Duration,
        seed: u64,
        mut choose: impl FnMut(usize, &mut SplitMix64) -> (&'static str, Fault),
    ) -> SoakReport {
        let mut rng = SplitMix64::new(seed);
        let mut report = SoakReport::default();
        let started = Instant::now();
        // generous: the backend may still be settling after an earlier fault
        let (mut li, mut lt) = self
            .wait_for_term(None, Duration::from_secs(10))
            .await
            .expect("a first leader within 10 s");
        while report.leader_changes < min_changes && started.elapsed() < limit {
            let (name, fault) = choose(li, &mut rng);
            *report.faults.entry(name).or_default() += 1;
            let t0 = Instant::now();
            let mut resigned = false;
            match fault {
                Fault::Resign => {
                    self.instances[li].elector.resign().await;
                    resigned = true;
                }
                Fault::Pause(d) => {
                    let s = self.instances[li].switch.clone();
                    s.pause();
                    tokio::spawn(async move {
                        tokio::time::sleep(d).await;
                        s.resume();
                    });
                }
                Fault::PauseBeforeActuating(d) => {
                    *lock(&self.instances[li].pause_next) = Some(d);
                }
                Fault::Run(f) => f.await,
            }
            // a leader paused at its next actuation is replaced once it has
            // stopped: at most one controller interval after the fault
            let Some((ni, nt)) = self.wait_for_term(Some(lt), bound).await else {
                panic!(
                    "no new leader within {bound:?} after fault {name} on instance {li} (term {lt}); \
                     leadership: {:?}",
                    self.instances
                        .iter()
                        .map(|i| (i.elector.leadership(), i.elector.stats()))
                        .collect::<Vec<_>>()
                );
            };
            report.max_leaderless = report.max_leaderless.max(t0.elapsed());
            report.leader_changes += 1;
            for i in &self.instances {
                lock(&i.pause_next).take();
            }
            if resigned {
                let e = self.instances[li].elector.clone();
                tokio::spawn(async move {
                    let _ = e.campaign().await;
                });
            }
            (li, lt) = (ni, nt);
            // let the new leader act a few times
            let settle = 20 + rng.next_u64() % 25;
            tokio::time::sleep(Duration::from_millis(settle)).await;
        }
        let actions = self.log.actions();
        report.actuations = actions.len();
        report.double_actuations = double_actuations(&actions);
        report.rejected = self.guard.rejected();
        report.attempts = self
            .instances
            .iter()
            .map(|i| u64::from(i.attempts.load(Ordering::Relaxed)))
            .sum();
        report
    }

    /// Stops every controller and elector (resuming paused ones first).
    pub async fn shutdown(self) {
        self.stop_noise.store(true, Ordering::Relaxed);
        for i in &self.instances {
            i.switch.resume();
        }
        for i in &self.instances {
            let _ = i.handle.shutdown(Duration::from_secs(2)).await;
            i.elector.stop().await;
        }
    }
}

impl SoakReport {
    /// `summary: leader_changes=… actuations=… double_actuations=… max_leaderless_ms=…`.
    pub fn summary(&self) -> String {
        format!(
            "summary: leader_changes={} actuations={} double_actuations={} max_leaderless_ms={} rejected_stale={} faults={:?}",
            self.leader_changes,
            self.actuations,
            self.double_actuations.len(),
            self.max_leaderless.as_millis(),
            self.rejected,
            self.faults
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(token: u64, instance: usize) -> Action {
        Action {
            token: FencingToken::new(token),
            instance,
            replicas: 1,
        }
    }

    #[test]
    fn the_log_check_finds_both_kinds() {
        assert!(double_actuations(&[a(1, 0), a(1, 0), a(2, 1), a(2, 1)]).is_empty());
        assert_eq!(double_actuations(&[a(1, 0), a(2, 1), a(1, 0)]).len(), 1);
        assert_eq!(double_actuations(&[a(1, 0), a(1, 1)]).len(), 1);
    }
}

#[cfg(test)]
mod harness_tests {
    use super::*;
    use sysmanage_core::lease::InMemoryLease;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_harness_moves_leadership_and_the_leaders_act() {
        let lease: Arc<dyn LeaseBackend> = Arc::new(InMemoryLease::new());
        let mut cfg = LeaseConfig::new(Duration::from_millis(300)).unwrap();
        cfg.call_timeout = Duration::from_millis(50);
        let store: Arc<dyn StateStore> = Arc::new(sysmanage_core::lease::InMemoryStateStore::new());
        let fleet = Fleet3::start(
            vec![lease.clone(), lease.clone(), lease],
            Some((store, "k".into())),
            cfg.clone(),
        );
        let report = fleet
            .soak(
                20,
                Duration::from_secs(20),
                cfg.takeover_bound(),
                1,
                |_, rng| match rng.next_u64() % 3 {
                    0 => ("resign", Fault::Resign),
                    1 => ("pause", Fault::Pause(Duration::from_millis(400))),
                    _ => (
                        "pause_before_actuating",
                        Fault::PauseBeforeActuating(Duration::from_millis(400)),
                    ),
                },
            )
            .await;
        eprintln!("{}", report.summary());
        fleet.shutdown().await;
        assert!(report.double_actuations.is_empty());
        assert_eq!(report.leader_changes, 20);
        assert!(report.actuations >= 20, "{report:?}");
        assert!(
            report.rejected > 0,
            "stale leaders reached the fence: {report:?}"
        );
    }
}
