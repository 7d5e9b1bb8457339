//! Leader election and shared controller state on the live Redis Cluster
//! (feature `integration`): three controller instances in this process,
//! each with its own [`RedisCache`] client, moved between by resignations
//! and paused processes, and through a SIGKILL of the primary that owns
//! the lease's slot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sysmanage_cache::redis::lease::RedisLease;
use sysmanage_cache::redis::state_store::RedisStateStore;
use sysmanage_cache::{RedisCache, RedisConfig, slot};
use sysmanage_core::lease::{Fenced, FencingToken, LeaseBackend, LeaseConfig, StateStore};
use sysmanage_test::fleet::{Fault, Fleet3};
use sysmanage_test::{KilledRedisNode, port_of, redis_nodes, run_id};

mod common;

/// As the PostgreSQL fleet tests: 300 ms leases, new leader within 480 ms.
fn cfg() -> LeaseConfig {
    let mut c = LeaseConfig::new(Duration::from_millis(300)).unwrap();
    c.renew_deadline = Duration::from_millis(200);
    c.renew_interval = Duration::from_millis(50);
    c.retry_interval = Duration::from_millis(30);
    c.call_timeout = Duration::from_millis(150);
    c.validate().unwrap();
    c
}

async fn cache() -> RedisCache {
    RedisCache::connect(RedisConfig::new(redis_nodes()))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach the cluster: {e}; {}",
                sysmanage_test::START_HINT
            )
        })
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
fn grants_renewals_releases_and_fenced_state() {
    serial(async {
        let name = format!("basics-{}", run_id());
        let a = RedisLease::new(cache().await, &name).unwrap();
        let b = RedisLease::new(cache().await, &name).unwrap();
        let ttl = Duration::from_millis(300);
        let ta = a.try_acquire("a", ttl).await.unwrap().expect("free lease");
        // a retried grant (its reply lost) returns the same term
        assert_eq!(a.try_acquire("a", ttl).await.unwrap(), Some(ta));
        assert_eq!(b.try_acquire("b", ttl).await.unwrap(), None, "held");
        assert!(a.renew("a", ta, ttl).await.unwrap());
        assert!(
            !a.renew("a", FencingToken::new(ta.get() + 1), ttl)
                .await
                .unwrap()
        );
        assert!(
            !b.renew("b", ta, ttl).await.unwrap(),
            "only the holder renews"
        );
        // expiry on the server's clock
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        assert!(!a.renew("a", ta, ttl).await.unwrap());
        let tb = b.try_acquire("b", ttl).await.unwrap().expect("expired");
        assert!(tb > ta);
        b.release("b", tb).await.unwrap();
        let ta2 = a.try_acquire("a2", ttl).await.unwrap().expect("released");
        assert!(ta2 > tb);
        assert!(RedisLease::new(cache().await, "a{b}").is_err());

        let store = RedisStateStore::new(cache().await);
        let key = format!("state-{}", run_id());
        let t = FencingToken::new;
        assert_eq!(
            store.claim(&key, t(9)).await.unwrap(),
            Fenced::Applied(None)
        );
        assert_eq!(
            store.save(&key, t(9), b"nine").await.unwrap(),
            Fenced::Applied(())
        );
        assert_eq!(
            store.save(&key, t(8), b"eight").await.unwrap(),
            Fenced::Stale { newest: t(9) }
        );
        // tokens compare as numbers, not as strings
        assert_eq!(
            store.claim(&key, t(10)).await.unwrap(),
            Fenced::Applied(Some(b"nine".to_vec()))
        );
        assert_eq!(
            store.save(&key, t(9), b"late").await.unwrap(),
            Fenced::Stale { newest: t(10) }
        );
        let big = t(u64::MAX);
        assert_eq!(
            store.save(&key, big, b"max").await.unwrap(),
            Fenced::Applied(())
        );
        assert_eq!(
            store.load(&key).await.unwrap(),
            Some((big, b"max".to_vec()))
        );
    });
}

async fn fleet(name: &str) -> (Fleet3, Vec<Arc<RedisLease>>) {
    let mut leases = Vec::new();
    for _ in 0..3 {
        leases.push(Arc::new(RedisLease::new(cache().await, name).unwrap()));
    }
    let store: Arc<dyn StateStore> = Arc::new(RedisStateStore::new(cache().await));
    let backends: Vec<Arc<dyn LeaseBackend>> = leases
        .iter()
        .map(|l| l.clone() as Arc<dyn LeaseBackend>)
        .collect();
    (
        Fleet3::start(backends, Some((store, name.to_owned())), cfg()),
        leases,
    )
}

#[test]
fn three_instances_survive_200_leader_changes_without_a_double_actuation() {
    serial(async {
        let name = format!("soak-{}", run_id());
        let (fleet, _leases) = fleet(&name).await;
        let cfg = cfg();
        let pause = cfg.ttl + Duration::from_millis(100);
        let bound = cfg.takeover_bound() + Duration::from_millis(10);
        let report = fleet
            .soak(200, Duration::from_secs(50), bound, 23, |_, rng| {
                match rng.next_u64() % 10 {
                    0..=4 => ("resign", Fault::Resign),
                    5..=7 => ("pause", Fault::Pause(pause)),
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
    });
}

#[test]
fn a_killed_primary_moves_the_lease_to_a_newer_term() {
    serial(async {
        let name = format!("kill-{}", run_id());
        let probe = cache().await;
        let nodes = common::settled_layout(&probe).await;
        let (fleet, leases) = fleet(&name).await;
        let (_, first) = fleet
            .wait_for_term(None, Duration::from_secs(10))
            .await
            .expect("a first leader");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let owner = probe
            .routing()
            .node_for_slot(slot(leases[0].key()))
            .expect("the lease slot has a primary")
            .to_owned();
        assert!(nodes.iter().any(|n| n.addr == owner));
        let before = fleet.log.actions().len();
        let node = KilledRedisNode::kill(&port_of(&owner));
        let killed = Instant::now();
        // The leader cannot renew on a dead primary: it steps down at its
        // deadline. A new term starts once the replica is promoted
        // (cluster-node-timeout 2 s plus the election) and the old key has
        // expired or was lost with the primary.
        let (_, after) = fleet
            .wait_for_term(Some(first), Duration::from_secs(15))
            .await
            .expect("a new term after the failover");
        let took = killed.elapsed();
        assert!(after > first, "tokens do not go back across the failover");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let actions = fleet.log.actions();
        fleet.shutdown().await;
        node.restore();
        println!(
            "primary {owner} killed: new term {after} (was {first}) after {} ms, {} actions since",
            took.as_millis(),
            actions.len() - before
        );
        let doubles = sysmanage_test::fleet::double_actuations(&actions);
        assert!(doubles.is_empty(), "{doubles:?}");
        assert!(actions.len() > before, "the new leader acts");
    });
}
