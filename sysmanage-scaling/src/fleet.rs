//! Running a [`Controller`](crate::Controller) on several replicas of a
//! service: only the leader acts, every action carries its fencing token,
//! and the scaler's state follows the leadership.
//!
//! [`Fleet`] wires an [`Elector`] (and optionally a [`StateStore`]) into a
//! controller with [`Controller::with_fleet`](crate::Controller::with_fleet).
//! Each pass then:
//!
//! 1. reads the elector's [`token`](Elector::token); a follower's pass ends
//!    there with [`Error::NotLeader`](sysmanage_core::Error::NotLeader);
//! 2. on the first pass of a new term, [`claims`](StateStore::claim) the
//!    shared state (from then on no older term can save it) and resumes
//!    from it: the scaler's stabilization windows, scale events and flap
//!    budget, and the recent forecast inputs, which are fed to the
//!    forecaster again;
//! 3. reads, decides and actuates through
//!    [`ScaleTarget::scale_fenced`] with
//!    the token;
//! 4. saves the state with the token, once per decision.
//!
//! A new leader therefore scales exactly as the old one would have: no
//! burst of scale-downs because its windows started empty.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sysmanage_core::lease::{Elector, FenceGuard, Fenced, FencingToken, StateStore};
use sysmanage_core::{BoxError, Timestamp};

use crate::control::ScaleTarget;
use crate::error::{Result, ScalingError};
use crate::observe::{MetricValue, Observation};
use crate::scaler::AutoScaler;

/// The most forecast inputs a [`Fleet`] keeps in the shared state.
pub const MAX_FORECAST_INPUTS: usize = 100_000;

/// Something a forecaster learns from: the recent values of its signal.
/// Implemented by [`SeasonalMedian`](crate::SeasonalMedian).
pub trait ForecastInput: Send + Sync + fmt::Debug {
    /// Feeds one observation of the signal.
    fn observe(&self, at: Timestamp, value: f64);
}

impl ForecastInput for crate::forecast::SeasonalMedian {
    fn observe(&self, at: Timestamp, value: f64) {
        crate::forecast::SeasonalMedian::observe(self, at, value);
    }
}

/// What a leader saves after each decision and its successor resumes
/// from (JSON in the [`StateStore`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ControllerState {
    /// The scaler's [`export_state`](AutoScaler::export_state).
    pub scaler: serde_json::Value,
    /// The newest observations of the forecast signal, oldest first.
    pub forecast_inputs: VecDeque<(Timestamp, f64)>,
    /// The decision this state follows.
    pub saved_at: Timestamp,
    /// The term that saved it.
    pub token: FencingToken,
}

impl ControllerState {
    /// Decodes a saved state.
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`] (field `state`) when the bytes are not
    /// a controller state.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| ScalingError::invalid("state", format!("not a controller state: {e}")))
    }
}

#[derive(Debug)]
struct Inputs {
    signal: String,
    sink: Arc<dyn ForecastInput>,
    cap: usize,
}

/// Leadership, fencing and shared state for one
/// [`Controller`](crate::Controller); see the [module docs](self).
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use sysmanage_core::lease::{Elector, InMemoryLease, InMemoryStateStore, LeaseConfig};
/// use sysmanage_core::{ManualClock, Timestamp};
/// use sysmanage_scaling::{Controller, Fleet, Hpa, HpaSpec, InMemoryMetrics, InMemoryTarget,
///     MetricSpec, MetricValue, Observation};
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let lease = Arc::new(InMemoryLease::new());
/// let store = Arc::new(InMemoryStateStore::new());
/// let (elector, run) = Elector::start("replica-1", lease, LeaseConfig::default())?;
/// tokio::spawn(run);
/// let hpa = Hpa::new(HpaSpec::new(1, 10, vec![MetricSpec::resource_utilization("cpu", 50)]))?;
/// let metrics = Arc::new(InMemoryMetrics::new(
///     Observation::default().reading("cpu", MetricValue::Average(100.0))));
/// let target = Arc::new(InMemoryTarget::new(2));
/// let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_700_000_000)));
/// let mut ctl = Controller::new(hpa, metrics, target.clone(), clock, Duration::from_secs(15))?
///     .with_fleet(Fleet::new(elector.clone()).state_store(store, "web")?)?;
/// assert!(ctl.tick().await.is_err());        // not the leader yet
/// let token = elector.campaign().await?;
/// ctl.tick().await?;                          // leads: scales 2 -> 4 with its token
/// assert_eq!(target.fenced_history(), vec![(token, 4)]);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Fleet {
    elector: Elector,
    store: Option<(Arc<dyn StateStore>, String)>,
    inputs: Option<Inputs>,
    /// The term whose state the controller holds.
    term: Option<FencingToken>,
    recent: VecDeque<(Timestamp, f64)>,
}

impl Fleet {
    /// Leadership from `elector`; no shared state.
    pub fn new(elector: Elector) -> Self {
        Self {
            elector,
            store: None,
            inputs: None,
            term: None,
            recent: VecDeque::new(),
        }
    }

    /// Shares the scaler's state through `store` under `key`.
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`] for a key that is empty or longer than
    /// 200 bytes.
    pub fn state_store(
        mut self,
        store: Arc<dyn StateStore>,
        key: impl Into<String>,
    ) -> Result<Self> {
        let key = key.into();
        if key.is_empty() || key.len() > 200 {
            return Err(ScalingError::invalid(
                "fleet.stateKey",
                format!("must be 1 to 200 bytes long, got {}", key.len()),
            ));
        }
        self.store = Some((store, key));
        Ok(self)
    }

    /// Feeds the reading of `signal` from every observation the leader
    /// makes to `sink` (a forecaster), keeps the newest `cap` of them in the
    /// shared state, and feeds them to `sink` again when this instance
    /// takes over, so its forecaster has the inputs its predecessor saw.
    /// A total is taken as it is, a per-pod average times the current
    /// replicas.
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`] for an empty signal;
    /// [`ScalingError::OutOfRange`] for a cap outside 1 ..=
    /// [`MAX_FORECAST_INPUTS`].
    pub fn forecast_inputs(
        mut self,
        signal: impl Into<String>,
        sink: Arc<dyn ForecastInput>,
        cap: usize,
    ) -> Result<Self> {
        let signal = signal.into();
        if signal.is_empty() {
            return Err(ScalingError::invalid(
                "fleet.forecastSignal",
                "must not be empty",
            ));
        }
        if !(1..=MAX_FORECAST_INPUTS).contains(&cap) {
            return Err(ScalingError::OutOfRange {
                field: "fleet.forecastInputs",
                value: cap.to_string(),
                range: format!("1..={MAX_FORECAST_INPUTS}"),
            });
        }
        self.inputs = Some(Inputs { signal, sink, cap });
        Ok(self)
    }

    /// The elector.
    pub fn elector(&self) -> &Elector {
        &self.elector
    }

    pub(crate) fn shares_state(&self) -> bool {
        self.store.is_some()
    }

    /// The token for this pass; on the first pass of a term, claims and
    /// restores the shared state.
    pub(crate) async fn begin_pass<S: AutoScaler>(
        &mut self,
        scaler: &mut S,
    ) -> Result<FencingToken> {
        let Some(token) = self.elector.token() else {
            self.term = None;
            return Err(sysmanage_core::Error::NotLeader.into());
        };
        if self.term == Some(token) {
            return Ok(token);
        }
        if let Some((store, key)) = &self.store {
            let claimed = store
                .claim(key, token)
                .await
                .map_err(|source| backend_error(store.backend(), source))?;
            match claimed {
                Fenced::Applied(Some(bytes)) => {
                    let state = ControllerState::decode(&bytes)?;
                    scaler.import_state(state.scaler)?;
                    self.recent = state.forecast_inputs;
                    if let Some(inputs) = &self.inputs {
                        while self.recent.len() > inputs.cap {
                            self.recent.pop_front();
                        }
                        for &(at, v) in &self.recent {
                            inputs.sink.observe(at, v);
                        }
                    }
                    tracing::info!(target: "sysmanage_scaling::fleet", event = "resumed", scaler = scaler.name(), token = token.get(), saved_by = state.token.get());
                }
                Fenced::Applied(None) => {
                    tracing::info!(target: "sysmanage_scaling::fleet", event = "resumed", scaler = scaler.name(), token = token.get(), saved_by = 0);
                }
                Fenced::Stale { newest } => {
                    return Err(sysmanage_core::Error::StaleToken { token, newest }.into());
                }
                _ => return Err(sysmanage_core::Error::NotLeader.into()),
            }
        }
        self.term = Some(token);
        Ok(token)
    }

    /// Feeds the forecast signal of `obs` to the forecaster.
    pub(crate) fn observe(&mut self, obs: &Observation, now: Timestamp) {
        let Some(inputs) = &self.inputs else { return };
        let v = match obs.get(&inputs.signal) {
            Some(MetricValue::Total(v)) => *v,
            Some(MetricValue::Average(v)) => *v * f64::from(obs.current_replicas),
            _ => return,
        };
        if !(v.is_finite() && v >= 0.0) {
            return;
        }
        inputs.sink.observe(now, v);
        if self.recent.len() >= inputs.cap {
            self.recent.pop_front();
        }
        self.recent.push_back((now, v));
    }

    /// Saves the state after a decision of term `token`.
    /// `scaler` is the scaler's [`export_state`](AutoScaler::export_state),
    /// taken before the call (scalers are not `Sync`).
    pub(crate) async fn end_pass(
        &mut self,
        scaler: Option<serde_json::Value>,
        token: FencingToken,
        now: Timestamp,
    ) -> Result<()> {
        let Some((store, key)) = &self.store else {
            return Ok(());
        };
        let state = ControllerState {
            scaler: scaler.unwrap_or(serde_json::Value::Null),
            forecast_inputs: self.recent.clone(),
            saved_at: now,
            token,
        };
        let bytes = serde_json::to_vec(&state)
            .map_err(|e| ScalingError::invalid("state", format!("cannot encode: {e}")))?;
        match store
            .save(key, token, &bytes)
            .await
            .map_err(|source| backend_error(store.backend(), source))?
        {
            Fenced::Applied(()) => Ok(()),
            Fenced::Stale { newest } => {
                self.term = None;
                Err(sysmanage_core::Error::StaleToken { token, newest }.into())
            }
            _ => {
                self.term = None;
                Err(sysmanage_core::Error::NotLeader.into())
            }
        }
    }

    /// Forgets the term after a failed pass, so the next pass claims again.
    pub(crate) fn reset(&mut self) {
        self.term = None;
    }
}

fn backend_error(backend: &'static str, source: BoxError) -> ScalingError {
    ScalingError::Core(sysmanage_core::Error::Backend { backend, source })
}

/// A [`ScaleTarget`] behind a [`FenceGuard`]: calls carrying a token older
/// than the newest the guard has seen do nothing and fail, and plain
/// [`scale`](ScaleTarget::scale) calls (which carry no token) are refused.
///
/// Share the guard (by `Arc`) among every `FencedTarget` in front of the
/// same thing.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use sysmanage_core::lease::{FenceGuard, FencingToken};
/// use sysmanage_scaling::{FencedTarget, InMemoryTarget, ScaleTarget};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let inner = Arc::new(InMemoryTarget::new(2));
/// let target = FencedTarget::new(inner.clone(), Arc::new(FenceGuard::new()));
/// target.scale_fenced(3, FencingToken::new(8)).await.unwrap();
/// assert!(target.scale_fenced(5, FencingToken::new(7)).await.is_err()); // a stale leader
/// assert!(target.scale(5).await.is_err());                              // no token at all
/// assert_eq!(inner.history(), vec![3]);
/// # }
/// ```
#[derive(Debug)]
pub struct FencedTarget<T> {
    inner: T,
    guard: Arc<FenceGuard>,
}

impl<T> FencedTarget<T> {
    /// `inner` behind `guard`.
    pub fn new(inner: T, guard: Arc<FenceGuard>) -> Self {
        Self { inner, guard }
    }
    /// The guard.
    pub fn guard(&self) -> &Arc<FenceGuard> {
        &self.guard
    }
}

#[async_trait::async_trait]
impl<T: ScaleTarget> ScaleTarget for FencedTarget<T> {
    async fn replicas(&self) -> std::result::Result<u32, BoxError> {
        self.inner.replicas().await
    }
    async fn scale(&self, _replicas: u32) -> std::result::Result<(), BoxError> {
        Err("this target is fenced: scale it with scale_fenced and the leader's token".into())
    }
    async fn scale_fenced(
        &self,
        replicas: u32,
        token: FencingToken,
    ) -> std::result::Result<(), BoxError> {
        let _permit = self.guard.enter(token).await?;
        self.inner.scale(replicas).await
    }
}
