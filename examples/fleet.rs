//! Three replicas of an autoscaling service on the local PostgreSQL
//! primary (`scripts/services up`): each runs a `Controller` in a `Fleet`
//! with its own `PgLease` session, they share their state through a
//! `PgStateStore`, and one actuator sits behind a `FenceGuard`. Leadership
//! is moved by faults, round after round: the leader's session is killed
//! (`pg_terminate_backend`), the leader's process stops longer than its
//! lease (once right before it actuates), or the leader resigns.
//!
//! ```text
//! scripts/services up && eval "$(scripts/services env)"
//! cargo run -p sysmanage-examples --features postgres --example fleet
//! ```
//!
//! The actuator logs every action it applied with the term's token; a
//! double actuation is an action whose token is older than one applied
//! before it, or a token used by two replicas. The last line is
//! `summary: leader_changes=… actuations=… double_actuations=0
//! max_leaderless_ms=…` (plus the stale calls the fence turned away); the
//! exit status is non-zero when there was a double actuation or a new
//! leader took longer than the lease's documented bound.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use sysmanage_core::lease::{
    Elector, FenceGuard, FencingToken, LeaseBackend, LeaseConfig, StateStore,
};
use sysmanage_core::{BoxError, SplitMix64, SystemClock};
use sysmanage_db::lease::PgLease;
use sysmanage_db::state_store::PgStateStore;
use sysmanage_examples::{init_tracing, section};
use sysmanage_scaling::{
    Behavior, Controller, ControllerHandle, FencedTarget, Fleet, Hpa, HpaSpec, InMemoryMetrics,
    MetricSpec, MetricValue, Observation, ScaleTarget, ScalingPolicy, ScalingRules,
};

const HINT: &str =
    "start the topology with `scripts/services up` and run `eval \"$(scripts/services env)\"`";
const ROUNDS: u64 = 60;

/// The actuator: the replica count and the log of applied actions.
#[derive(Debug, Default)]
struct Actuator {
    replicas: AtomicU32,
    log: Mutex<Vec<(FencingToken, usize)>>,
}

/// One replica's path to the actuator. The `FencedTarget` in front of it
/// holds the fence while `scale` runs, so the log is in fence order.
#[derive(Debug)]
struct Deployment {
    replica: usize,
    actuator: Arc<Actuator>,
    token: Mutex<Option<FencingToken>>,
}

#[async_trait::async_trait]
impl ScaleTarget for Deployment {
    async fn replicas(&self) -> Result<u32, BoxError> {
        Ok(self.actuator.replicas.load(Ordering::SeqCst).max(1))
    }
    async fn scale(&self, replicas: u32) -> Result<(), BoxError> {
        let token = self.token.lock().unwrap().ok_or("no token")?;
        self.actuator.replicas.store(replicas, Ordering::SeqCst);
        self.actuator
            .log
            .lock()
            .unwrap()
            .push((token, self.replica));
        Ok(())
    }
}

/// Remembers the token of the call for the `Deployment` behind the fence,
/// and can stop the whole replica right before it actuates.
#[derive(Debug)]
struct Replica {
    fenced: FencedTarget<Arc<Deployment>>,
    deployment: Arc<Deployment>,
    stop_before_acting: Mutex<Option<Duration>>,
    process: Arc<Process>,
}

#[async_trait::async_trait]
impl ScaleTarget for Replica {
    async fn replicas(&self) -> Result<u32, BoxError> {
        self.fenced.replicas().await
    }
    async fn scale(&self, replicas: u32) -> Result<(), BoxError> {
        self.fenced.scale(replicas).await
    }
    async fn scale_fenced(&self, replicas: u32, token: FencingToken) -> Result<(), BoxError> {
        let stop = self.stop_before_acting.lock().unwrap().take();
        if let Some(d) = stop {
            self.process.stop_for(d);
            tokio::task::yield_now().await;
        }
        *self.deployment.token.lock().unwrap() = Some(token);
        self.fenced.scale_fenced(replicas, token).await
    }
}

/// A replica's "process": its futures are not polled while it is stopped.
#[derive(Debug, Default)]
struct Process {
    stopped: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Process {
    fn stop_for(self: &Arc<Self>, d: Duration) {
        self.stopped.store(true, Ordering::SeqCst);
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            me.stopped.store(false, Ordering::SeqCst);
            for w in std::mem::take(&mut *me.wakers.lock().unwrap()) {
                w.wake();
            }
        });
    }
}

struct Run<F> {
    fut: Pin<Box<F>>,
    process: Arc<Process>,
}

impl<F: Future> Future for Run<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if self.process.stopped.load(Ordering::SeqCst) {
            self.process.wakers.lock().unwrap().push(cx.waker().clone());
            if self.process.stopped.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        self.fut.as_mut().poll(cx)
    }
}

struct Instance {
    lease: Arc<PgLease>,
    elector: Elector,
    replica: Arc<Replica>,
    handle: ControllerHandle,
}

fn hpa() -> Hpa {
    let fast = || Some(ScalingRules::new(0, vec![ScalingPolicy::pods(100, 1)]));
    Hpa::new(
        HpaSpec::new(1, 50, vec![MetricSpec::resource_utilization("cpu", 50)]).with_behavior(
            Behavior {
                scale_up: fast(),
                scale_down: fast(),
            },
        ),
    )
    .expect("a valid spec")
}

fn leader(instances: &[Instance]) -> Option<(usize, FencingToken)> {
    instances
        .iter()
        .enumerate()
        .filter_map(|(i, x)| x.elector.token().map(|t| (i, t)))
        .max_by_key(|(_, t)| *t)
}

async fn new_term(
    instances: &[Instance],
    after: Option<FencingToken>,
    limit: Duration,
) -> Option<(usize, FencingToken)> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some((i, t)) = leader(instances).filter(|(_, t)| after.is_none_or(|a| *t > a)) {
            return Some((i, t));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    init_tracing();
    let Ok(url) = std::env::var("SYSMANAGE_PG_PRIMARY_URL") else {
        eprintln!("SYSMANAGE_PG_PRIMARY_URL is not set: {HINT}");
        return ExitCode::FAILURE;
    };
    let name = format!("fleet-example-{}", std::process::id());
    // 300 ms leases: a leader steps down 200 ms after its last renewal was
    // sent, renews every 50 ms; followers try every 30 ms.
    let mut cfg = LeaseConfig::new(Duration::from_millis(300)).expect("valid");
    cfg.renew_deadline = Duration::from_millis(200);
    cfg.renew_interval = Duration::from_millis(50);
    cfg.retry_interval = Duration::from_millis(30);
    cfg.call_timeout = Duration::from_millis(150);
    cfg.validate().expect("valid");
    // A stop right before actuating starts at the leader's next pass (10 ms).
    let bound = cfg.takeover_bound() + Duration::from_millis(10);

    section("three replicas");
    let store: Arc<dyn StateStore> = match PgStateStore::connect(&url).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("cannot reach PostgreSQL: {e}; {HINT}");
            return ExitCode::FAILURE;
        }
    };
    let admin = match sqlx::PgPool::connect(&url).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot reach PostgreSQL: {e}; {HINT}");
            return ExitCode::FAILURE;
        }
    };
    let actuator = Arc::new(Actuator::default());
    actuator.replicas.store(4, Ordering::SeqCst);
    let guard = Arc::new(FenceGuard::new());
    let metrics = Arc::new(InMemoryMetrics::new(Observation::default()));
    let mut instances = Vec::new();
    for i in 0..3 {
        let lease = Arc::new(PgLease::connect(&url, &name).await.expect("lease"));
        let (elector, driver) = Elector::start(
            format!("replica-{i}"),
            lease.clone() as Arc<dyn LeaseBackend>,
            cfg.clone(),
        )
        .expect("valid");
        let process = Arc::new(Process::default());
        tokio::spawn(Run {
            fut: Box::pin(driver),
            process: process.clone(),
        });
        let deployment = Arc::new(Deployment {
            replica: i,
            actuator: actuator.clone(),
            token: Mutex::new(None),
        });
        let replica = Arc::new(Replica {
            fenced: FencedTarget::new(deployment.clone(), guard.clone()),
            deployment,
            stop_before_acting: Mutex::new(None),
            process: process.clone(),
        });
        let fleet = Fleet::new(elector.clone())
            .state_store(store.clone(), name.clone())
            .expect("key");
        let ctl = Controller::new(
            hpa(),
            metrics.clone(),
            replica.clone(),
            Arc::new(SystemClock),
            Duration::from_millis(10),
        )
        .and_then(|c| c.with_fleet(fleet))
        .expect("controller");
        let (handle, run) = ctl.start();
        tokio::spawn(Run {
            fut: Box::pin(run),
            process,
        });
        let e = elector.clone();
        tokio::spawn(async move { e.campaign().await });
        println!("replica-{i}: session pid {}", lease.backend_pid());
        instances.push(Instance {
            lease,
            elector,
            replica,
            handle,
        });
    }
    // the load: 2 to 12 replicas' worth, changing every 5 ms
    let noise = {
        let (metrics, actuator) = (metrics.clone(), actuator.clone());
        tokio::spawn(async move {
            let mut rng = SplitMix64::new(1);
            loop {
                let load = 100.0 + 500.0 * rng.next_f64();
                let current = f64::from(actuator.replicas.load(Ordering::SeqCst).max(1));
                metrics.set(
                    Observation::default().reading("cpu", MetricValue::Average(load / current)),
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    section("faults");
    let Some((mut li, mut lt)) = new_term(&instances, None, bound * 4).await else {
        eprintln!("no leader was elected");
        return ExitCode::FAILURE;
    };
    let (mut changes, mut max_leaderless, mut late) = (0u64, Duration::ZERO, 0u64);
    let mut rng = SplitMix64::new(19);
    let stop = cfg.ttl + Duration::from_millis(100);
    for round in 0..ROUNDS {
        let fault = match rng.next_u64() % 4 {
            0 => {
                let pid = instances[li].lease.backend_pid();
                let _ = sqlx::query("select pg_terminate_backend($1)")
                    .bind(pid)
                    .execute(&admin)
                    .await;
                "kill session"
            }
            1 => {
                instances[li].replica.process.stop_for(stop);
                "stop process"
            }
            2 => {
                *instances[li].replica.stop_before_acting.lock().unwrap() = Some(stop);
                "stop process before acting"
            }
            _ => {
                instances[li].elector.resign().await;
                let e = instances[li].elector.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    e.campaign().await
                });
                "resign"
            }
        };
        let t0 = Instant::now();
        let Some((ni, nt)) = new_term(&instances, Some(lt), Duration::from_secs(5)).await else {
            eprintln!("no new leader within 5 s after `{fault}`");
            return ExitCode::FAILURE;
        };
        let took = t0.elapsed();
        late += u64::from(took > bound);
        max_leaderless = max_leaderless.max(took);
        changes += 1;
        if round % 10 == 0 {
            println!(
                "round {round:>2}: {fault:<27} replica-{li} (token {lt}) -> replica-{ni} (token {nt}) in {} ms",
                took.as_millis()
            );
        }
        for x in &instances {
            x.replica.stop_before_acting.lock().unwrap().take();
        }
        (li, lt) = (ni, nt);
        tokio::time::sleep(Duration::from_millis(20 + rng.next_u64() % 25)).await;
    }
    noise.abort();
    for x in &instances {
        let _ = x.handle.shutdown(Duration::from_secs(2)).await;
        x.elector.stop().await;
    }

    section("actuator log");
    let log = actuator.log.lock().unwrap().clone();
    let mut doubles = 0u64;
    let mut newest: Option<FencingToken> = None;
    let mut owner = std::collections::HashMap::new();
    for &(token, replica) in &log {
        if newest.is_some_and(|n| token < n) {
            doubles += 1;
        }
        newest = newest.max(Some(token));
        if owner.insert(token, replica).is_some_and(|r| r != replica) {
            doubles += 1;
        }
    }
    println!(
        "{} actions by {} terms; the fence turned away {} calls from stale leaders; \
         {late} takeovers slower than the {} ms bound",
        log.len(),
        owner.len(),
        guard.rejected(),
        bound.as_millis()
    );
    println!(
        "summary: leader_changes={changes} actuations={} double_actuations={doubles} max_leaderless_ms={} rejected_stale={}",
        log.len(),
        max_leaderless.as_millis(),
        guard.rejected()
    );
    if doubles > 0 || late > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
