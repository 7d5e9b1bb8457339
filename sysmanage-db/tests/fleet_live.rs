//! Leader election and shared controller state on the live PostgreSQL
//! primary (feature `integration`): three controller instances in this
//! process, each with its own [`PgLease`] session, moved between by killed
//! sessions (`pg_terminate_backend`), paused processes and resignations.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sysmanage_core::lease::{Elector, FencingToken, LeaseBackend, LeaseConfig, StateStore};
use sysmanage_core::{ManualClock, Timestamp};
use sysmanage_db::lease::PgLease;
use sysmanage_db::state_store::PgStateStore;
use sysmanage_scaling::{
    Behavior, Controller, Fleet, Hpa, HpaSpec, InMemoryMetrics, InMemoryTarget, MetricSpec,
    MetricValue, Observation, ScalingPolicy, ScalingRules,
};
use sysmanage_test::fleet::{Fault, Fleet3, PauseSwitch, pausable};
use sysmanage_test::{pg_primary_url, run_id};

/// 300 ms leases: 200 ms renew deadline, renewals every 50 ms, retries every
/// 30 ms, calls cut at 150 ms. A new leader within 480 ms of any fault.
fn cfg() -> LeaseConfig {
    let mut c = LeaseConfig::new(Duration::from_millis(300)).unwrap();
    c.renew_deadline = Duration::from_millis(200);
    c.renew_interval = Duration::from_millis(50);
    c.retry_interval = Duration::from_millis(30);
    c.call_timeout = Duration::from_millis(150);
    c.validate().unwrap();
    c
}

async fn admin() -> sqlx::PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(&pg_primary_url())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach the primary: {e}; {}",
                sysmanage_test::START_HINT
            )
        })
}

async fn kill_session(admin: &sqlx::PgPool, pid: i32) {
    let _: Option<bool> = sqlx::query_scalar("select pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(admin)
        .await
        .expect("pg_terminate_backend");
}

/// The tests of this file run one at a time: each moves the leadership
/// with real faults and measures how long that takes.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial(f: impl std::future::Future<Output = ()>) {
    let _guard = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f);
}

#[test]
fn grants_renewals_and_a_killed_session() {
    serial(async {
        let url = pg_primary_url();
        let name = format!("basics-{}", run_id());
        let a = PgLease::connect(&url, &name).await.unwrap();
        let b = PgLease::connect(&url, &name).await.unwrap();
        let ttl = Duration::from_millis(500);
        let ta = a.try_acquire("a", ttl).await.unwrap().expect("free lease");
        assert_eq!(b.try_acquire("b", ttl).await.unwrap(), None, "held");
        assert!(a.renew("a", ta, ttl).await.unwrap());
        assert!(
            !a.renew("a", FencingToken::new(ta.get() + 1), ttl)
                .await
                .unwrap()
        );
        // the session dies: the term cannot be renewed from a new one
        kill_session(&admin().await, a.backend_pid()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let renewed = a.renew("a", ta, ttl).await;
        assert!(!matches!(renewed, Ok(true)), "{renewed:?}");
        if renewed.is_err() {
            assert!(
                !a.renew("a", ta, ttl).await.unwrap(),
                "lost on the new session"
            );
        }
        // the row is still running: b waits for it, then takes over with a newer token
        assert_eq!(b.try_acquire("b", ttl).await.unwrap(), None);
        a.release("a", ta).await.unwrap();
        let tb = b.try_acquire("b", ttl).await.unwrap().expect("released");
        assert!(tb > ta);
        // a paused holder: its session lives on past its lease, and the next
        // candidate ends it
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        assert_eq!(
            a.try_acquire("a2", ttl).await.unwrap(),
            None,
            "b's session still holds the lock"
        );
        let ta2 = loop {
            if let Some(t) = a.try_acquire("a2", ttl).await.unwrap() {
                break t;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(ta2 > tb);
        assert!(!b.renew("b", tb, ttl).await.unwrap_or(false));
        assert!(PgLease::connect(&url, "").await.is_err());
    });
}

#[test]
fn three_instances_survive_200_leader_changes_without_a_double_actuation() {
    serial(async {
        let url = pg_primary_url();
        let name = format!("soak-{}", run_id());
        let mut leases = Vec::new();
        for _ in 0..3 {
            leases.push(Arc::new(PgLease::connect(&url, &name).await.unwrap()));
        }
        let store: Arc<dyn StateStore> = Arc::new(PgStateStore::connect(&url).await.unwrap());
        let backends: Vec<Arc<dyn LeaseBackend>> = leases
            .iter()
            .map(|l| l.clone() as Arc<dyn LeaseBackend>)
            .collect();
        let cfg = cfg();
        let fleet = Fleet3::start(backends, Some((store, name.clone())), cfg.clone());
        let admin = admin().await;
        let pause = cfg.ttl + Duration::from_millis(100);
        // a leader paused at its next actuation stops up to one controller
        // interval (10 ms) after the fault
        let bound = cfg.takeover_bound() + Duration::from_millis(10);
        let report = fleet
            .soak(200, Duration::from_secs(50), bound, 19, |li, rng| {
                match rng.next_u64() % 20 {
                    0..=6 => ("resign", Fault::Resign),
                    7..=13 => {
                        let (admin, pid) = (admin.clone(), leases[li].backend_pid());
                        (
                            "kill_session",
                            Fault::Run(Box::pin(async move { kill_session(&admin, pid).await })),
                        )
                    }
                    14..=16 => ("pause", Fault::Pause(pause)),
                    _ => ("pause_before_actuating", Fault::PauseBeforeActuating(pause)),
                }
            })
            .await;
        println!("{}", report.summary());
        fleet.shutdown().await;
        assert!(
            report.double_actuations.is_empty(),
            "{:?}",
            report.double_actuations
        );
        assert!(report.leader_changes >= 200, "{report:?}");
        assert!(report.actuations > 200, "{report:?}");
        assert!(
            report.rejected > 0,
            "stale leaders reached the fence: {report:?}"
        );
        assert!(report.max_leaderless <= bound);
        for f in ["resign", "kill_session", "pause", "pause_before_actuating"] {
            assert!(
                report.faults.get(f).copied().unwrap_or(0) > 10,
                "{report:?}"
            );
        }
    });
}

fn spec() -> HpaSpec {
    HpaSpec::new(1, 20, vec![MetricSpec::resource_utilization("cpu", 50)]).with_behavior(Behavior {
        scale_up: None,
        scale_down: Some(ScalingRules::new(0, vec![ScalingPolicy::pods(1, 120)])),
    })
}

#[test]
fn a_new_leader_resumes_the_windows_after_the_leader_session_is_killed() {
    serial(async {
        let url = pg_primary_url();
        let name = format!("windows-{}", run_id());
        let store: Arc<dyn StateStore> = Arc::new(PgStateStore::connect(&url).await.unwrap());
        let metrics = Arc::new(InMemoryMetrics::new(
            Observation::default().reading("cpu", MetricValue::Average(10.0)),
        ));
        let target = Arc::new(InMemoryTarget::new(8));
        let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_700_000_000)));
        let mut instances = Vec::new();
        let switch = Arc::new(PauseSwitch::default());
        for i in 0..3 {
            let lease = Arc::new(PgLease::connect(&url, &name).await.unwrap());
            let (elector, driver) = Elector::start(format!("i{i}"), lease.clone(), cfg()).unwrap();
            if i == 0 {
                tokio::spawn(pausable(switch.clone(), driver));
            } else {
                tokio::spawn(driver);
            }
            let fleet = Fleet::new(elector.clone())
                .state_store(store.clone(), name.clone())
                .unwrap();
            let ctl = Controller::new(
                Hpa::new(spec()).unwrap(),
                metrics.clone(),
                target.clone(),
                clock.clone(),
                Duration::from_secs(15),
            )
            .unwrap()
            .with_fleet(fleet)
            .unwrap();
            instances.push((lease, elector, ctl));
        }
        let first = instances[0].1.campaign().await.unwrap();
        for (_, e, _) in &instances[1..] {
            let e = e.clone();
            tokio::spawn(async move { e.campaign().await });
        }
        instances[0].2.tick().await.unwrap(); // 8 -> 7; the policy allows the next at +120 s
        clock.advance(Duration::from_secs(15));
        instances[0].2.tick().await.unwrap();
        // the leader's connection is killed while its process hangs
        switch.pause();
        kill_session(&admin().await, instances[0].0.backend_pid()).await;
        let started = std::time::Instant::now();
        let (next, token) = loop {
            if let Some((i, t)) = instances
                .iter()
                .enumerate()
                .find_map(|(i, (_, e, _))| e.token().filter(|t| *t > first).map(|t| (i, t)))
            {
                break (i, t);
            }
            assert!(
                started.elapsed() <= cfg().takeover_bound(),
                "no new leader in time"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        assert_ne!(next, 0);
        assert_eq!(
            instances[0].1.token(),
            None,
            "the hung leader's deadline has passed"
        );
        for _ in 0..3 {
            clock.advance(Duration::from_secs(15));
            instances[next].2.tick().await.unwrap();
        }
        assert_eq!(
            target.history(),
            vec![7],
            "the new leader counted the old leader's scale-down"
        );
        assert_eq!(target.fenced_history()[0].1, 7);
        // 120 s after the first scale-down the policy allows the next
        clock.advance(Duration::from_secs(60));
        instances[next].2.tick().await.unwrap();
        assert_eq!(target.history(), vec![7, 6]);
        let (saved_by, _) = store.load(&name).await.unwrap().unwrap();
        assert_eq!(saved_by, token);
        switch.resume();
        for (_, e, _) in &instances {
            e.stop().await;
        }
    });
}
