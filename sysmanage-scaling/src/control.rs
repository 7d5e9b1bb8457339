//! Async edges: [`MetricsSource`], [`ScaleTarget`], their in-memory
//! implementations, the [`Controller`] loop and [`DecisionStats`].
//!
//! The loop is a thin driver: read, decide (pure), actuate, confirm. It emits
//! `tracing` events with target `sysmanage_scaling::controller` and a stable
//! `event` field: `decision`, `actuated`, `actuation_failed`,
//! `metrics_failed`, `decision_rejected`, `shutdown`.
//!
//! Every call to a [`MetricsSource`] or [`ScaleTarget`] runs under a timeout
//! (default [`DEFAULT_CALL_TIMEOUT`]), and a shutdown signal interrupts a
//! pass that is still waiting on one.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysmanage_core::lease::{FencingToken, admits};
use sysmanage_core::{BoxError, Clock, Timestamp};
use tokio::sync::watch;

use crate::error::{Result, ScalingError};
use crate::fleet::Fleet;
use crate::hpa::{Action, Decision};
use crate::observe::Observation;
use crate::scaler::AutoScaler;

/// Where observations come from (a metrics API, Prometheus, the app itself).
#[async_trait::async_trait]
pub trait MetricsSource: Send + Sync + fmt::Debug {
    /// The current readings. `current_replicas` is overwritten by the
    /// controller with the target's count.
    async fn observe(&self) -> std::result::Result<Observation, BoxError>;
}

/// What gets scaled (a Deployment, an instance group, a worker pool).
#[async_trait::async_trait]
pub trait ScaleTarget: Send + Sync + fmt::Debug {
    /// The current desired replica count.
    async fn replicas(&self) -> std::result::Result<u32, BoxError>;
    /// Sets the desired replica count.
    async fn scale(&self, replicas: u32) -> std::result::Result<(), BoxError>;
    /// Sets the desired replica count for the leadership term `token`; a
    /// [`Controller`] running in a [`Fleet`] calls this
    /// instead of [`scale`](Self::scale).
    ///
    /// A target that leaders of several terms can reach must turn away a
    /// token older than the newest it has seen (and do nothing):
    /// [`InMemoryTarget`] does, and [`FencedTarget`](crate::FencedTarget)
    /// puts a [`FenceGuard`](sysmanage_core::lease::FenceGuard) in front of
    /// any target. The default ignores the token and calls `scale`: a
    /// target that does not override it is not fenced.
    async fn scale_fenced(
        &self,
        replicas: u32,
        token: FencingToken,
    ) -> std::result::Result<(), BoxError> {
        let _ = token;
        self.scale(replicas).await
    }
}

#[async_trait::async_trait]
impl<T: ScaleTarget + ?Sized> ScaleTarget for Arc<T> {
    async fn replicas(&self) -> std::result::Result<u32, BoxError> {
        (**self).replicas().await
    }
    async fn scale(&self, replicas: u32) -> std::result::Result<(), BoxError> {
        (**self).scale(replicas).await
    }
    async fn scale_fenced(
        &self,
        replicas: u32,
        token: FencingToken,
    ) -> std::result::Result<(), BoxError> {
        (**self).scale_fenced(replicas, token).await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An in-memory metrics source: hosts and tests set the next observation.
#[derive(Debug, Default)]
pub struct InMemoryMetrics {
    inner: Mutex<(Observation, u32)>,
}

impl InMemoryMetrics {
    /// A source returning `obs`.
    pub fn new(obs: Observation) -> Self {
        Self {
            inner: Mutex::new((obs, 0)),
        }
    }
    /// Replaces the observation.
    pub fn set(&self, obs: Observation) {
        lock(&self.inner).0 = obs;
    }
    /// Makes the next `n` reads fail.
    pub fn fail_next(&self, n: u32) {
        lock(&self.inner).1 = n;
    }
}

#[async_trait::async_trait]
impl MetricsSource for InMemoryMetrics {
    async fn observe(&self) -> std::result::Result<Observation, BoxError> {
        let mut g = lock(&self.inner);
        if g.1 > 0 {
            g.1 -= 1;
            return Err("metrics unavailable (injected)".into());
        }
        Ok(g.0.clone())
    }
}

/// An in-memory scale target that records every change, fenced: a
/// [`scale_fenced`](ScaleTarget::scale_fenced) call whose token is older
/// than the newest it has seen changes nothing and fails with
/// [`Error::StaleToken`](sysmanage_core::Error::StaleToken); the check and
/// the change happen under one lock.
#[derive(Debug, Default)]
pub struct InMemoryTarget {
    inner: Mutex<TargetState>,
}

#[derive(Debug, Default)]
struct TargetState {
    current: u32,
    history: Vec<u32>,
    fail_next: u32,
    newest: Option<FencingToken>,
    fenced: Vec<(FencingToken, u32)>,
    rejected: u64,
}

impl InMemoryTarget {
    /// A target running `replicas`.
    pub fn new(replicas: u32) -> Self {
        Self {
            inner: Mutex::new(TargetState {
                current: replicas,
                ..TargetState::default()
            }),
        }
    }
    /// Every count it was scaled to, in order.
    pub fn history(&self) -> Vec<u32> {
        lock(&self.inner).history.clone()
    }
    /// Every fenced change, in order, with its token.
    pub fn fenced_history(&self) -> Vec<(FencingToken, u32)> {
        lock(&self.inner).fenced.clone()
    }
    /// How many fenced calls were turned away for a stale token.
    pub fn rejected(&self) -> u64 {
        lock(&self.inner).rejected
    }
    /// The newest token seen.
    pub fn newest_token(&self) -> Option<FencingToken> {
        lock(&self.inner).newest
    }
    /// The current count.
    pub fn current(&self) -> u32 {
        lock(&self.inner).current
    }
    /// Makes the next `n` scale calls fail.
    pub fn fail_next(&self, n: u32) {
        lock(&self.inner).fail_next = n;
    }

    fn apply(g: &mut TargetState, replicas: u32) -> std::result::Result<(), BoxError> {
        if g.fail_next > 0 {
            g.fail_next -= 1;
            return Err("scale call rejected (injected)".into());
        }
        g.current = replicas;
        g.history.push(replicas);
        Ok(())
    }
}

#[async_trait::async_trait]
impl ScaleTarget for InMemoryTarget {
    async fn replicas(&self) -> std::result::Result<u32, BoxError> {
        Ok(lock(&self.inner).current)
    }
    async fn scale(&self, replicas: u32) -> std::result::Result<(), BoxError> {
        Self::apply(&mut lock(&self.inner), replicas)
    }
    async fn scale_fenced(
        &self,
        replicas: u32,
        token: FencingToken,
    ) -> std::result::Result<(), BoxError> {
        let mut g = lock(&self.inner);
        if let Some(newest) = g.newest
            && !admits(Some(newest), token)
        {
            g.rejected += 1;
            return Err(Box::new(sysmanage_core::Error::StaleToken {
                token,
                newest,
            }));
        }
        g.newest = Some(token);
        Self::apply(&mut g, replicas)?;
        g.fenced.push((token, replicas));
        Ok(())
    }
}

/// The direction recent decisions are taking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Trend {
    /// At least 3 of the last 5 decisions scaled up.
    ScalingUp,
    /// At least 3 of the last 5 decisions scaled down.
    ScalingDown,
    /// At least 4 of the last 5 decisions changed nothing.
    Stable,
    /// None of the above.
    Oscillating,
    /// Fewer than 5 decisions.
    InsufficientData,
}

/// Counts over recent decisions.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    /// Decisions in the window.
    pub total: usize,
    /// Of which scale-ups.
    pub scale_up: usize,
    /// Of which scale-downs.
    pub scale_down: usize,
    /// Of which no change.
    pub no_action: usize,
    /// Scale actions per hour over the window.
    pub actions_per_hour: f64,
    /// The trend of the last five decisions.
    pub trend: Trend,
}

/// The most decisions a [`DecisionStats`] keeps (2^20).
pub const MAX_STATS_CAP: usize = 1 << 20;

/// A bounded log of decisions (default 1024) with summary statistics.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use sysmanage_core::Timestamp;
/// use sysmanage_scaling::{Action, DecisionStats, Trend};
/// let mut s = DecisionStats::new(100);
/// for (i, a) in [Action::ScaleUp, Action::ScaleUp, Action::None, Action::ScaleUp, Action::None].into_iter().enumerate() {
///     s.record(Timestamp::from_secs(i as i64 * 60), a);
/// }
/// let snap = s.snapshot(Timestamp::from_secs(300), Duration::from_secs(3600));
/// assert_eq!((snap.scale_up, snap.trend), (3, Trend::ScalingUp));
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecisionStats {
    cap: usize,
    log: VecDeque<(Timestamp, Action)>,
}

impl Default for DecisionStats {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl DecisionStats {
    /// Keeps at most `cap` decisions, clamped to `1..=`[`MAX_STATS_CAP`].
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.clamp(1, MAX_STATS_CAP),
            log: VecDeque::new(),
        }
    }
    /// Records one decision.
    pub fn record(&mut self, at: Timestamp, action: Action) {
        if self.log.len() == self.cap {
            self.log.pop_front();
        }
        self.log.push_back((at, action));
    }
    /// Statistics over the decisions in `(now − window, now]`.
    pub fn snapshot(&self, now: Timestamp, window: Duration) -> StatsSnapshot {
        let cutoff = now - window;
        let recent: Vec<Action> = self
            .log
            .iter()
            .filter(|(at, _)| *at > cutoff && *at <= now)
            .map(|(_, a)| *a)
            .collect();
        let count = |x: Action, v: &[Action]| v.iter().filter(|a| **a == x).count();
        let (up, down, none) = (
            count(Action::ScaleUp, &recent),
            count(Action::ScaleDown, &recent),
            count(Action::None, &recent),
        );
        let last5 = &recent[recent.len().saturating_sub(5)..];
        let trend = if last5.len() < 5 {
            Trend::InsufficientData
        } else if count(Action::ScaleUp, last5) >= 3 {
            Trend::ScalingUp
        } else if count(Action::ScaleDown, last5) >= 3 {
            Trend::ScalingDown
        } else if count(Action::None, last5) >= 4 {
            Trend::Stable
        } else {
            Trend::Oscillating
        };
        let hours = window.as_secs_f64() / 3600.0;
        StatsSnapshot {
            total: recent.len(),
            scale_up: up,
            scale_down: down,
            no_action: none,
            actions_per_hour: if hours > 0.0 {
                (up + down) as f64 / hours
            } else {
                0.0
            },
            trend,
        }
    }
}

/// How long the [`Controller`] waits for one call to a [`MetricsSource`] or
/// [`ScaleTarget`] by default.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Which of two futures finished first.
enum First<A, B> {
    Left(A),
    Right(B),
}

/// Polls `b` first, then `a`; returns whichever is ready first.
async fn first<A: Future, B: Future + Unpin>(a: A, mut b: B) -> First<A::Output, B::Output> {
    let mut a = std::pin::pin!(a);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = std::pin::Pin::new(&mut b).poll(cx) {
            return Poll::Ready(First::Right(v));
        }
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(First::Left(v));
        }
        Poll::Pending
    })
    .await
}

/// Runs `fut` under `limit`; a timeout becomes a [`BoxError`] naming the call.
async fn within<T>(
    limit: Duration,
    what: &'static str,
    fut: impl Future<Output = std::result::Result<T, BoxError>>,
) -> std::result::Result<T, BoxError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("{what} timed out after {limit:?}").into()),
    }
}

fn status_of(
    live: &Live,
    scaler: &str,
    interval: Duration,
    now: Timestamp,
    window: Duration,
) -> ControllerStatus {
    ControllerStatus {
        scaler: scaler.to_owned(),
        interval_secs: interval.as_secs_f64(),
        last_decision: live.last.clone(),
        stats: live.stats.snapshot(now, window),
    }
}

/// What the loop started by [`Controller::start`] is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Run,
    /// Finish the pass in flight, then stop.
    Graceful,
    /// Abandon the pass in flight.
    Abort,
}

/// How a [`ControllerHandle::shutdown`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Shutdown {
    /// `true`: the loop stopped between passes or after finishing the pass in
    /// flight; `false`: the deadline passed and the pass in flight was
    /// abandoned (an actuation it had not confirmed is not recorded).
    pub graceful: bool,
}

/// Reads the status of a running [`Controller`] and shuts it down.
///
/// Cheap to clone; every clone controls the same loop.
#[derive(Clone)]
pub struct ControllerHandle {
    live: Arc<Mutex<Live>>,
    scaler: String,
    interval: Duration,
    clock: Arc<dyn Clock>,
    stop: Arc<watch::Sender<Stop>>,
    done: watch::Receiver<bool>,
}

impl fmt::Debug for ControllerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControllerHandle")
            .field("scaler", &self.scaler)
            .field("stopped", &*self.done.borrow())
            .finish_non_exhaustive()
    }
}

impl ControllerHandle {
    fn check_open(&self) -> Result<()> {
        if lock(&self.live).closed || *self.stop.borrow() != Stop::Run {
            return Err(ScalingError::ShutDown);
        }
        Ok(())
    }

    /// The controller's status while it runs, with statistics over `window`.
    ///
    /// # Errors
    /// [`ScalingError::ShutDown`] once a shutdown has begun.
    pub fn status(&self, window: Duration) -> Result<ControllerStatus> {
        self.check_open()?;
        Ok(status_of(
            &lock(&self.live),
            &self.scaler,
            self.interval,
            self.clock.wall(),
            window,
        ))
    }

    /// The interval between passes.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The scaler's name.
    pub fn scaler_name(&self) -> &str {
        &self.scaler
    }

    /// Now, on the controller's clock.
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.wall()
    }

    /// The last decision, while the controller runs.
    ///
    /// # Errors
    /// [`ScalingError::ShutDown`] once a shutdown has begun.
    pub fn last_decision(&self) -> Result<Option<Decision>> {
        self.check_open()?;
        Ok(lock(&self.live).last.clone())
    }

    /// Stops the loop: no new pass starts; a pass in flight (reading
    /// metrics, deciding, actuating, confirming) may finish until `deadline`
    /// has passed, after which it is abandoned. Resolves once the loop has
    /// stopped (or, if the loop's future is no longer polled, at the deadline).
    ///
    /// # Errors
    /// [`ScalingError::ShutDown`] when a shutdown has already begun;
    /// [`ScalingError::OutOfRange`] for a deadline above one day.
    pub async fn shutdown(&self, deadline: Duration) -> Result<Shutdown> {
        crate::limits::duration(
            "shutdown.deadline",
            deadline,
            Duration::ZERO,
            crate::limits::MAX_WINDOW,
        )?;
        self.check_open()?;
        let mut began = false;
        self.stop.send_if_modified(|s| {
            began = *s == Stop::Run;
            if began {
                *s = Stop::Graceful;
            }
            began
        });
        if !began {
            return Err(ScalingError::ShutDown);
        }
        let mut done = self.done.clone();
        let finished = tokio::time::timeout(deadline, done.wait_for(|d| *d)).await;
        if finished.is_ok() {
            lock(&self.live).closed = true;
            tracing::info!(target: "sysmanage_scaling::controller", event = "shutdown", scaler = %self.scaler, graceful = true);
            return Ok(Shutdown { graceful: true });
        }
        tracing::warn!(target: "sysmanage_scaling::controller", event = "shutdown", scaler = %self.scaler, graceful = false, deadline = ?deadline);
        let _ = self.stop.send(Stop::Abort);
        // an abandoned pass stops at its next await point; a loop whose
        // future is not polled any more never reports back
        let mut done = self.done.clone();
        let _ = tokio::time::timeout(Duration::from_millis(100), done.wait_for(|d| *d)).await;
        lock(&self.live).closed = true;
        Ok(Shutdown { graceful: false })
    }
}

/// A serde-serialisable snapshot of a [`Controller`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControllerStatus {
    /// The scaler's name.
    pub scaler: String,
    /// The decision interval in seconds.
    pub interval_secs: f64,
    /// The last decision, with its explanation.
    pub last_decision: Option<Decision>,
    /// Statistics over the requested window.
    pub stats: StatsSnapshot,
}

/// What a running controller shares with its [`ControllerHandle`].
#[derive(Debug)]
struct Live {
    stats: DecisionStats,
    last: Option<Decision>,
    /// Set once the loop has stopped for a shutdown: later calls fail.
    closed: bool,
}

/// Drives an [`AutoScaler`]: every `interval`, read → decide → actuate → confirm.
///
/// Run it with [`run`](Self::run) (stopped by a `watch` signal) or with
/// [`start`](Self::start), which hands back a [`ControllerHandle`] that reads
/// the status while the loop runs and shuts it down within a deadline.
pub struct Controller<S> {
    scaler: S,
    metrics: Arc<dyn MetricsSource>,
    target: Arc<dyn ScaleTarget>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    call_timeout: Duration,
    live: Arc<Mutex<Live>>,
    fleet: Option<Fleet>,
}

impl<S: AutoScaler> fmt::Debug for Controller<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("scaler", &self.scaler.name())
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl<S: AutoScaler> Controller<S> {
    /// A controller deciding every `interval` (Kubernetes' default sync period is 15 s).
    ///
    /// # Errors
    /// [`ScalingError::OutOfRange`] for an interval outside 1 ms ..= 1 day.
    pub fn new(
        scaler: S,
        metrics: Arc<dyn MetricsSource>,
        target: Arc<dyn ScaleTarget>,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) -> Result<Self> {
        crate::limits::duration(
            "controller.interval",
            interval,
            Duration::from_millis(1),
            crate::limits::MAX_WINDOW,
        )?;
        Ok(Self {
            scaler,
            metrics,
            target,
            clock,
            interval,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            live: Arc::new(Mutex::new(Live {
                stats: DecisionStats::default(),
                last: None,
                closed: false,
            })),
            fleet: None,
        })
    }

    /// Runs this controller as one replica of a fleet: passes act only
    /// while `fleet`'s elector leads, actuate through
    /// [`ScaleTarget::scale_fenced`] with the term's token, and (with a
    /// state store) resume and save the scaler's state; see
    /// [`fleet`](crate::fleet).
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`] (field `fleet.stateStore`) when a
    /// state store is configured but the scaler exports no state.
    pub fn with_fleet(mut self, fleet: Fleet) -> Result<Self> {
        if fleet.shares_state() && self.scaler.export_state().is_none() {
            return Err(ScalingError::invalid(
                "fleet.stateStore",
                format!("scaler {:?} exports no state to share", self.scaler.name()),
            ));
        }
        self.fleet = Some(fleet);
        Ok(self)
    }

    /// The fleet this controller runs in, if any.
    pub fn fleet(&self) -> Option<&Fleet> {
        self.fleet.as_ref()
    }

    /// Sets how long one call to the metrics source or the scale target may
    /// take (default [`DEFAULT_CALL_TIMEOUT`]). A metrics read that times out
    /// counts as a metrics failure; a target call that times out fails the
    /// pass, and its actuation is not recorded.
    ///
    /// # Errors
    /// [`ScalingError::OutOfRange`] for a timeout outside 1 ms ..= 1 day.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Result<Self> {
        crate::limits::duration(
            "controller.callTimeout",
            timeout,
            Duration::from_millis(1),
            crate::limits::MAX_WINDOW,
        )?;
        self.call_timeout = timeout;
        Ok(self)
    }

    /// A copy of the decision statistics.
    pub fn stats(&self) -> DecisionStats {
        lock(&self.live).stats.clone()
    }

    /// A snapshot for status endpoints, with statistics over the last `window`.
    pub fn status(&self, window: Duration) -> ControllerStatus {
        status_of(
            &lock(&self.live),
            self.scaler.name(),
            self.interval,
            self.clock.wall(),
            window,
        )
    }

    /// The last decision.
    pub fn last_decision(&self) -> Option<Decision> {
        lock(&self.live).last.clone()
    }

    /// The scaler.
    pub fn scaler(&self) -> &S {
        &self.scaler
    }

    /// One pass. A metrics-source failure becomes an observation with every
    /// reading unavailable, so failure rules (partial failure, fallback) apply.
    ///
    /// # Errors
    /// [`ScalingError::Backend`] when the target cannot be read or scaled
    /// (including a call that outlasts the call timeout); bad input from the
    /// metrics source; [`ScalingError::ShutDown`] after a
    /// [`ControllerHandle::shutdown`].
    pub async fn tick(&mut self) -> Result<Decision> {
        if lock(&self.live).closed {
            return Err(ScalingError::ShutDown);
        }
        let token = match &mut self.fleet {
            Some(f) => Some(f.begin_pass(&mut self.scaler).await?),
            None => None,
        };
        let r = self.pass(token).await;
        if r.is_err()
            && let Some(f) = &mut self.fleet
        {
            f.reset();
        }
        r
    }

    async fn pass(&mut self, token: Option<FencingToken>) -> Result<Decision> {
        let now = self.clock.wall();
        let limit = self.call_timeout;
        let current = within(limit, "reading the scale target", self.target.replicas())
            .await
            .map_err(|source| {
                crate::telemetry::record_error(self.scaler.name(), "target");
                ScalingError::Backend {
                    backend: "scale target",
                    source,
                }
            })?;
        let mut obs = match within(limit, "reading metrics", self.metrics.observe()).await {
            Ok(o) => o,
            Err(e) => {
                crate::telemetry::record_error(self.scaler.name(), "metrics");
                tracing::warn!(target: "sysmanage_scaling::controller", event = "metrics_failed", scaler = self.scaler.name(), error = %e);
                Observation::default()
            }
        };
        obs.current_replicas = current;
        if let Some(f) = &mut self.fleet {
            f.observe(&obs, now);
        }
        let decision = match self.scaler.decide(&obs, now) {
            Ok(d) => d,
            Err(e) => {
                crate::telemetry::record_error(self.scaler.name(), "decision");
                tracing::warn!(target: "sysmanage_scaling::controller", event = "decision_rejected", scaler = self.scaler.name(), error = %e);
                return Err(e);
            }
        };
        lock(&self.live).stats.record(now, decision.action);
        crate::telemetry::record_decision(
            self.scaler.name(),
            &decision,
            self.scaler.flap_budget_used(now),
        );
        tracing::debug!(
            target: "sysmanage_scaling::controller",
            event = "decision",
            scaler = self.scaler.name(),
            current = decision.current_replicas,
            desired = decision.desired_replicas,
            reasons = ?decision.reasons,
        );
        if decision.desired_replicas != current {
            let scaled = match token {
                Some(t) => {
                    within(
                        limit,
                        "scaling the target",
                        self.target.scale_fenced(decision.desired_replicas, t),
                    )
                    .await
                }
                None => {
                    within(
                        limit,
                        "scaling the target",
                        self.target.scale(decision.desired_replicas),
                    )
                    .await
                }
            };
            match scaled {
                Ok(()) => {
                    crate::telemetry::record_actuation(self.scaler.name(), true);
                    self.scaler
                        .record_actuation(current, decision.desired_replicas, now);
                    tracing::info!(
                        target: "sysmanage_scaling::controller",
                        event = "actuated",
                        scaler = self.scaler.name(),
                        from = current,
                        to = decision.desired_replicas,
                        reasons = ?decision.reasons,
                    );
                }
                Err(source) => {
                    crate::telemetry::record_actuation(self.scaler.name(), false);
                    crate::telemetry::record_error(self.scaler.name(), "target");
                    tracing::warn!(target: "sysmanage_scaling::controller", event = "actuation_failed", scaler = self.scaler.name(), error = %source);
                    lock(&self.live).last = Some(decision);
                    return Err(ScalingError::Backend {
                        backend: "scale target",
                        source,
                    });
                }
            }
        }
        if let (Some(f), Some(t)) = (&mut self.fleet, token)
            && f.shares_state()
        {
            let state = self.scaler.export_state();
            f.end_pass(state, t, now).await?;
        }
        lock(&self.live).last = Some(decision.clone());
        Ok(decision)
    }

    /// Starts the loop: returns a [`ControllerHandle`] and the loop's future,
    /// which the host spawns (`tokio::spawn(run)`) or awaits. The future ends
    /// after [`ControllerHandle::shutdown`] and returns the controller, whose
    /// later [`tick`](Self::tick)s fail with [`ScalingError::ShutDown`].
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use sysmanage_core::{ManualClock, Timestamp};
    /// use sysmanage_scaling::{Controller, Hpa, HpaSpec, InMemoryMetrics, InMemoryTarget,
    ///     MetricSpec, MetricValue, Observation};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), sysmanage_scaling::ScalingError> {
    /// let hpa = Hpa::new(HpaSpec::new(1, 10, vec![MetricSpec::resource_utilization("cpu", 50)]))?;
    /// let metrics = Arc::new(InMemoryMetrics::new(
    ///     Observation::default().reading("cpu", MetricValue::Average(100.0))));
    /// let target = Arc::new(InMemoryTarget::new(2));
    /// let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_700_000_000)));
    /// let ctl = Controller::new(hpa, metrics, target.clone(), clock, Duration::from_secs(15))?;
    /// let (handle, run) = ctl.start();
    /// let task = tokio::spawn(run);
    /// tokio::time::sleep(Duration::from_secs(1)).await;
    /// // the status is readable while the loop runs
    /// let status = handle.status(Duration::from_secs(3600))?;
    /// assert_eq!(status.last_decision.map(|d| d.desired_replicas), Some(4));
    /// assert!(handle.shutdown(Duration::from_secs(5)).await?.graceful);
    /// assert!(handle.status(Duration::from_secs(3600)).is_err());
    /// let ctl = task.await.expect("the loop does not panic");
    /// assert!(ctl.last_decision().is_some());
    /// # Ok(()) }
    /// ```
    pub fn start(self) -> (ControllerHandle, impl Future<Output = Self> + Send)
    where
        S: 'static,
    {
        let (stop_tx, stop_rx) = watch::channel(Stop::Run);
        let (done_tx, done_rx) = watch::channel(false);
        let handle = ControllerHandle {
            live: self.live.clone(),
            scaler: self.scaler.name().to_owned(),
            interval: self.interval,
            clock: self.clock.clone(),
            stop: Arc::new(stop_tx),
            done: done_rx,
        };
        let run = async move {
            let ctl = self.run_until(stop_rx).await;
            lock(&ctl.live).closed = true;
            let _ = done_tx.send(true);
            ctl
        };
        (handle, run)
    }

    async fn run_until(mut self, mut stop: watch::Receiver<Stop>) -> Self {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut graceful = stop.clone();
        loop {
            let stopping = async {
                let _ = graceful.wait_for(|s| *s != Stop::Run).await;
            };
            if let First::Right(()) = first(ticker.tick(), std::pin::pin!(stopping)).await {
                return self;
            }
            // a graceful stop lets this pass finish; an abort interrupts it
            let aborting = async {
                let _ = stop.wait_for(|s| *s == Stop::Abort).await;
            };
            if let First::Right(()) = first(self.tick(), std::pin::pin!(aborting)).await {
                return self;
            }
        }
    }

    /// Runs until `shutdown` turns `true` (or its sender is dropped). Errors of
    /// single passes are logged and the loop goes on. The shutdown signal also
    /// interrupts a pass that is still waiting on the metrics source or the
    /// target (that pass is abandoned; an actuation it did not confirm is not
    /// recorded). Returns the controller.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Self {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = async move {
            // true, or the sender is gone
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        let mut stop = std::pin::pin!(stop);
        loop {
            if let First::Right(()) = first(ticker.tick(), stop.as_mut()).await {
                return self;
            }
            if let First::Right(()) = first(self.tick(), stop.as_mut()).await {
                return self;
            }
        }
    }
}
