//! [`Elector`]: the thin async driver that campaigns, renews and steps
//! down, applying the pure decisions of [`decide`](super::decide).

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::backend::LeaseBackend;
use super::config::LeaseConfig;
use super::decide::{
    LeaderNext, RenewResult, StepDown, after_grant, after_renew, call_budget, is_valid,
};
use super::token::FencingToken;
use crate::error::{Error, Result};

/// What an [`Elector`] currently is, as its watch reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "role")]
#[non_exhaustive]
pub enum Leadership {
    /// Not leading (campaigning or not).
    Follower,
    /// Leading the term `token`.
    Leader {
        /// The term's fencing token.
        token: FencingToken,
    },
}

/// Counts over an [`Elector`]'s life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ElectorStats {
    /// Terms won.
    pub terms: u64,
    /// Terms ended by `resign` or `stop`.
    pub resigned: u64,
    /// Terms the backend said were over.
    pub lost: u64,
    /// Terms ended because no renewal succeeded in time.
    pub deadline_passed: u64,
    /// Failed or timed-out grant calls.
    pub acquire_errors: u64,
    /// Failed or timed-out renewals.
    pub renew_errors: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Idle,
    Campaign,
    Stop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Control {
    want: Want,
    seq: u64,
}

struct Shared {
    instance: String,
    backend: Arc<dyn LeaseBackend>,
    cfg: LeaseConfig,
    leadership: watch::Sender<Leadership>,
    control: watch::Sender<Control>,
    /// The last control `seq` the driver has fully applied.
    applied: watch::Sender<u64>,
    /// The running term and its local deadline.
    term: Mutex<Option<(FencingToken, std::time::Instant)>>,
    stats: Mutex<ElectorStats>,
    campaigns: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Stops the driver when the last [`Elector`] handle is dropped.
struct Alive(Arc<Shared>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.control.send_modify(|c| {
            c.want = Want::Stop;
            c.seq += 1;
        });
    }
}

/// Campaigns for one [`LeaseBackend`] lease, keeps it while leading, and
/// reports the current term's [`FencingToken`].
///
/// [`start`](Self::start) returns the handle and the driver's future, which
/// the host spawns. [`campaign`](Self::campaign) starts campaigning and
/// resolves once this instance leads; [`resign`](Self::resign) steps down
/// and releases the lease; [`watch`](Self::watch) reports changes of
/// leadership; [`token`](Self::token) is the check before each action.
///
/// `token()` compares the term's local deadline with the clock *when it is
/// called*, so a leader whose driver has been paused (a stopped process, a
/// starved runtime) does not report a token past its deadline even before
/// the driver notices. The watch reports what the driver has seen.
///
/// Cheap to clone; the driver stops (resigning first) when
/// [`stop`](Self::stop) is called or the last clone is dropped.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use sysmanage_core::lease::{Elector, InMemoryLease, LeaseConfig, Leadership};
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), sysmanage_core::Error> {
/// let lease = Arc::new(InMemoryLease::new());
/// let cfg = LeaseConfig::new(Duration::from_millis(600))?;
/// let (a, run_a) = Elector::start("a", lease.clone(), cfg.clone())?;
/// let (b, run_b) = Elector::start("b", lease.clone(), cfg)?;
/// tokio::spawn(run_a);
/// tokio::spawn(run_b);
/// let ta = a.campaign().await?;
/// assert_eq!(a.token(), Some(ta));
/// let mut watch_b = b.watch();
/// let elected_b = tokio::spawn({ let b = b.clone(); async move { b.campaign().await } });
/// tokio::time::sleep(Duration::from_secs(1)).await;
/// assert_eq!(*watch_b.borrow_and_update(), Leadership::Follower);
/// a.resign().await;                       // a releases the lease, b takes over
/// let tb = elected_b.await.unwrap()?;
/// assert!(tb > ta);
/// assert_eq!(a.token(), None);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Elector {
    shared: Arc<Shared>,
    _alive: Arc<Alive>,
}

impl fmt::Debug for Elector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Elector")
            .field("instance", &self.shared.instance)
            .field("backend", &self.shared.backend.backend())
            .field("leadership", &*self.shared.leadership.borrow())
            .finish_non_exhaustive()
    }
}

impl Elector {
    /// An elector for `instance` (a name for logs and holder ids, e.g. the
    /// pod name) on `backend`, not campaigning yet, and the driver's
    /// future.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] from [`LeaseConfig::validate`] or for an
    /// empty instance name or one longer than 200 bytes.
    pub fn start(
        instance: impl Into<String>,
        backend: Arc<dyn LeaseBackend>,
        cfg: LeaseConfig,
    ) -> Result<(Self, impl Future<Output = ()> + Send + 'static)> {
        cfg.validate()?;
        let instance = instance.into();
        if instance.is_empty() || instance.len() > 200 {
            return Err(Error::invalid(
                "elector.instance",
                format!("must be 1 to 200 bytes long, got {}", instance.len()),
            ));
        }
        let shared = Arc::new(Shared {
            instance,
            backend,
            cfg,
            leadership: watch::channel(Leadership::Follower).0,
            control: watch::channel(Control {
                want: Want::Idle,
                seq: 0,
            })
            .0,
            applied: watch::channel(0).0,
            term: Mutex::new(None),
            stats: Mutex::new(ElectorStats::default()),
            campaigns: AtomicU64::new(0),
        });
        let driver = shared.clone();
        let elector = Self {
            _alive: Arc::new(Alive(shared.clone())),
            shared,
        };
        Ok((elector, drive(driver)))
    }

    /// The configuration.
    pub fn config(&self) -> &LeaseConfig {
        &self.shared.cfg
    }

    /// The instance name.
    pub fn instance(&self) -> &str {
        &self.shared.instance
    }

    /// Starts campaigning (if not already) and resolves with the token once
    /// this instance leads. Dropping the future does not stop the campaign;
    /// [`resign`](Self::resign) does.
    ///
    /// # Errors
    /// [`Error::NotLeader`] when the elector is stopped before it leads.
    pub async fn campaign(&self) -> Result<FencingToken> {
        self.shared.control.send_if_modified(|c| {
            let change = c.want == Want::Idle;
            if change {
                c.want = Want::Campaign;
                c.seq += 1;
            }
            change
        });
        let mut rx = self.shared.leadership.subscribe();
        let mut control = self.shared.control.subscribe();
        loop {
            if let Some(t) = self.token() {
                return Ok(t);
            }
            if control.borrow_and_update().want != Want::Campaign {
                return Err(Error::NotLeader);
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return Err(Error::NotLeader) },
                r = control.changed() => if r.is_err() { return Err(Error::NotLeader) },
            }
        }
    }

    /// Stops campaigning; a leader steps down at once and releases the
    /// lease, so another candidate can take over without waiting for it to
    /// expire. Resolves when that is done (or the release failed, in which
    /// case the lease expires on its own).
    pub async fn resign(&self) {
        self.request(Want::Idle).await;
    }

    /// As [`resign`](Self::resign), then ends the driver's future.
    pub async fn stop(&self) {
        self.request(Want::Stop).await;
    }

    async fn request(&self, want: Want) {
        let mut seq = 0;
        self.shared.control.send_if_modified(|c| {
            if c.want == Want::Stop {
                seq = c.seq;
                return false;
            }
            c.want = want;
            c.seq += 1;
            seq = c.seq;
            true
        });
        let mut applied = self.shared.applied.subscribe();
        let _ = applied.wait_for(|a| *a >= seq).await;
    }

    /// The current term's token, if this instance leads and the term's
    /// local deadline has not passed *now*. Check it right before each
    /// action and pass it along, so the actuator can fence the action.
    pub fn token(&self) -> Option<FencingToken> {
        let now = Instant::now().into_std();
        lock(&self.shared.term)
            .filter(|(_, deadline)| is_valid(now, *deadline))
            .map(|(t, _)| t)
    }

    /// How long the current term has left before its local deadline.
    pub fn remaining(&self) -> Option<Duration> {
        let now = Instant::now().into_std();
        lock(&self.shared.term).and_then(|(_, d)| d.checked_duration_since(now))
    }

    /// What the driver last reported.
    pub fn leadership(&self) -> Leadership {
        *self.shared.leadership.borrow()
    }

    /// A receiver of leadership changes (won a term, stepped down).
    pub fn watch(&self) -> watch::Receiver<Leadership> {
        self.shared.leadership.subscribe()
    }

    /// Counts over the elector's life.
    pub fn stats(&self) -> ElectorStats {
        *lock(&self.shared.stats)
    }
}

impl Shared {
    fn holder_id(&self) -> String {
        let n = self.campaigns.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}/{}-{nanos:x}-{n}", self.instance, std::process::id())
    }

    fn count(&self, f: impl FnOnce(&mut ElectorStats)) {
        f(&mut lock(&self.stats));
    }

    async fn release(&self, holder: &str, token: FencingToken) {
        let r =
            tokio::time::timeout(self.cfg.call_timeout, self.backend.release(holder, token)).await;
        if !matches!(r, Ok(Ok(()))) {
            let error = match r {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_owned(),
            };
            tracing::debug!(target: "sysmanage_core::lease", event = "release_failed", instance = %self.instance, token = token.get(), error = %error);
        }
    }

    /// Leads the term until it ends; returns why it ended.
    async fn lead(
        &self,
        holder: &str,
        token: FencingToken,
        sent: std::time::Instant,
        mut deadline: std::time::Instant,
        control: &mut watch::Receiver<Control>,
    ) -> StepDown {
        *lock(&self.term) = Some((token, deadline));
        self.count(|s| s.terms += 1);
        self.leadership.send_replace(Leadership::Leader { token });
        tracing::info!(target: "sysmanage_core::lease", event = "elected", instance = %self.instance, backend = self.backend.backend(), token = token.get());
        let cfg = &self.cfg;
        let mut renew_at = crate::duration::deadline(sent, cfg.renew_interval);
        let reason = loop {
            let wake = Instant::from_std(renew_at.min(deadline));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                _ = control.changed() => {
                    if control.borrow_and_update().want != Want::Campaign {
                        break StepDown::Resigned;
                    }
                    continue;
                }
            }
            let now = Instant::now().into_std();
            let Some(budget) = call_budget(now, Some(deadline), cfg.call_timeout) else {
                break StepDown::DeadlinePassed;
            };
            let r = tokio::time::timeout(budget, self.backend.renew(holder, token, cfg.ttl)).await;
            let result = match r {
                Ok(Ok(true)) => RenewResult::Renewed,
                Ok(Ok(false)) => RenewResult::Lost,
                Ok(Err(e)) => {
                    self.count(|s| s.renew_errors += 1);
                    tracing::debug!(target: "sysmanage_core::lease", event = "renew_failed", instance = %self.instance, error = %e);
                    RenewResult::Failed
                }
                Err(_) => {
                    self.count(|s| s.renew_errors += 1);
                    tracing::debug!(target: "sysmanage_core::lease", event = "renew_failed", instance = %self.instance, error = "timed out");
                    RenewResult::Failed
                }
            };
            match after_renew(cfg, now, Instant::now().into_std(), result, deadline) {
                LeaderNext::Lead {
                    deadline: d,
                    renew_at: at,
                } => {
                    deadline = d;
                    renew_at = at;
                    *lock(&self.term) = Some((token, deadline));
                }
                LeaderNext::StepDown(reason) => break reason,
            }
        };
        // stop acting first, then tell the backend
        *lock(&self.term) = None;
        self.leadership.send_replace(Leadership::Follower);
        self.count(|s| match reason {
            StepDown::Resigned => s.resigned += 1,
            StepDown::Lost => s.lost += 1,
            StepDown::DeadlinePassed => s.deadline_passed += 1,
        });
        tracing::info!(target: "sysmanage_core::lease", event = "stepped_down", instance = %self.instance, token = token.get(), reason = reason.label());
        // Even a lost term is released: when the backend only lost the
        // session (the row or key still names this term), the release lets
        // a successor take over without waiting for the expiry; when another
        // holder has taken over, it matches nothing.
        self.release(holder, token).await;
        reason
    }
}

async fn drive(shared: Arc<Shared>) {
    let mut control = shared.control.subscribe();
    loop {
        let c = *control.borrow_and_update();
        match c.want {
            Want::Stop => {
                shared.applied.send_replace(c.seq);
                return;
            }
            Want::Idle => {
                shared.applied.send_replace(c.seq);
                if control.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Want::Campaign => {
                shared.applied.send_replace(c.seq);
            }
        }
        let holder = shared.holder_id();
        let sent = Instant::now().into_std();
        let budget = call_budget(sent, None, shared.cfg.call_timeout).unwrap_or_default();
        let r =
            tokio::time::timeout(budget, shared.backend.try_acquire(&holder, shared.cfg.ttl)).await;
        match r {
            Ok(Ok(Some(token))) => {
                match after_grant(&shared.cfg, sent, Instant::now().into_std()) {
                    Some(deadline) => {
                        let reason = shared
                            .lead(&holder, token, sent, deadline, &mut control)
                            .await;
                        if reason == StepDown::Resigned {
                            // applied at the top of the loop, after the release
                            continue;
                        }
                        // a term that ended on its own waits one retry interval
                        // before campaigning again, giving the others their turn
                    }
                    None => shared.release(&holder, token).await,
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                shared.count(|s| s.acquire_errors += 1);
                tracing::debug!(target: "sysmanage_core::lease", event = "acquire_failed", instance = %shared.instance, error = %e);
            }
            Err(_) => {
                shared.count(|s| s.acquire_errors += 1);
                tracing::debug!(target: "sysmanage_core::lease", event = "acquire_failed", instance = %shared.instance, error = "timed out");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(shared.cfg.retry_interval) => {}
            r = control.changed() => if r.is_err() { return },
        }
    }
}
