//! Live-cluster tests (feature `integration`; `scripts/services up` first):
//! the conformance suite against `RedisCache`, slots against
//! `CLUSTER KEYSLOT`, cross-slot multi-key operations of 1,000 keys, the
//! routing snapshot and node stats. Fault tests are in `cluster_faults.rs`.

mod common;
mod conformance;

use std::time::Duration;

use conformance::{Harness, VALUE_LIMIT};
use fred::clients::Client;
use fred::interfaces::{ClientLike, KeysInterface};
use fred::types::config::ServerConfig;
use fred::types::{Builder, ClusterHash, CustomCommand, Value};
use sysmanage_cache::stats::{ClusterHealth, ClusterNode, Role};
use sysmanage_cache::{
    CacheError, ClusterCache, Limits, RedisCache, RedisConfig, SetOptions, slot,
};
use sysmanage_core::SplitMix64;

fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

async fn connect() -> RedisCache {
    let mut cfg = common::redis_config();
    cfg.limits = Limits::default().with_max_value_bytes(VALUE_LIMIT);
    RedisCache::connect(cfg)
        .await
        .expect("connect to the local Redis Cluster")
}

/// A plain (non-cluster) fred client on one node, as an independent
/// reference next to the code under test.
async fn single_node(addr: &str) -> Client {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let client = Builder::from_config(common::fred_config(ServerConfig::new_centralized(
        host,
        port.parse().unwrap(),
    )))
    .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(5))
    .build()
    .unwrap();
    client.init().await.unwrap();
    client
}

/// fred's own cluster client, as the reference for raw commands.
async fn fred_cluster() -> Client {
    let hosts = sysmanage_test::redis_nodes()
        .iter()
        .map(|n| {
            let (h, p) = n.rsplit_once(':').unwrap();
            (h.to_owned(), p.parse::<u16>().unwrap())
        })
        .collect();
    let client = Builder::from_config(common::fred_config(ServerConfig::new_clustered(hosts)))
        .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(5))
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
}

struct RedisHarness {
    cache: RedisCache,
    prefix: String,
}

impl Harness for RedisHarness {
    type Cache = RedisCache;
    fn cache(&self) -> &RedisCache {
        &self.cache
    }
    fn prefix(&self) -> &str {
        &self.prefix
    }
    async fn advance(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

async fn harness(prefix: &str) -> RedisHarness {
    RedisHarness {
        cache: connect().await,
        prefix: format!("it:{prefix}{}:", run_id()),
    }
}

conformance_tests!(
    tokio::test(flavor = "multi_thread", worker_threads = 2),
    super::harness
);

fn random_key(rng: &mut SplitMix64) -> Vec<u8> {
    let len = rng.below(24) as usize;
    (0..len)
        .map(|_| match rng.below(10) {
            0 | 1 => b'{',
            2 | 3 => b'}',
            _ => rng.below(256) as u8,
        })
        .collect()
}

/// ≥ 10,000 random keys with braces, empty tags and non-UTF-8 bytes:
/// `slot()` agrees with `CLUSTER KEYSLOT` on every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_matches_cluster_keyslot_on_random_keys() {
    let nodes = sysmanage_test::redis_nodes();
    let node = single_node(&nodes[0]).await;
    let mut rng = SplitMix64::new(0x5107);
    let mut keys: Vec<Vec<u8>> = (0..10_000).map(|_| random_key(&mut rng)).collect();
    keys.extend(
        [
            &b""[..],
            b"{}",
            b"{}{a}",
            b"a{}b",
            b"{{}}",
            b"}{",
            b"{\xff\xfe}x",
            b"\x80{a",
        ]
        .map(<[u8]>::to_vec),
    );
    let (mut braces, mut non_utf8, mut tagged) = (0, 0, 0);
    for chunk in keys.chunks(1000) {
        let p = node.pipeline();
        for k in chunk {
            let _: () = p
                .custom(
                    CustomCommand::new_static("CLUSTER", ClusterHash::Random, false),
                    vec![Value::from("KEYSLOT"), Value::from(&k[..])],
                )
                .await
                .unwrap();
        }
        let replies: Vec<i64> = p.all().await.unwrap();
        assert_eq!(replies.len(), chunk.len());
        for (k, want) in chunk.iter().zip(replies) {
            assert_eq!(i64::from(slot(k)), want, "key {k:?}");
            braces += usize::from(k.contains(&b'{') && k.contains(&b'}'));
            non_utf8 += usize::from(std::str::from_utf8(k).is_err());
            tagged += usize::from(sysmanage_cache::hash_tag(k).is_some());
        }
    }
    assert!(keys.len() >= 10_000);
    assert!(
        braces > 1000 && non_utf8 > 1000 && tagged > 100,
        "{braces} {non_utf8} {tagged}"
    );
}

/// 1,000 keys over ~1,000 slots on all three primaries: mset, mget, mdel in
/// input order, checked against raw single-key GETs; a raw fred MGET of the
/// same keys fails with CROSSSLOT (the problem this crate solves).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_slot_multi_key_ops_on_1000_keys() {
    let cache = connect().await;
    let prefix = format!("it:xslot:{}:", run_id());
    let keys: Vec<String> = (0..1000).map(|i| format!("{prefix}{i}")).collect();
    let routing = cache.routing();
    let nodes: std::collections::BTreeSet<_> = keys
        .iter()
        .filter_map(|k| routing.node_for_key(k.as_bytes()))
        .collect();
    assert_eq!(nodes.len(), 3, "keys must span all primaries");
    let entries: Vec<(String, String)> =
        keys.iter().map(|k| (k.clone(), format!("v:{k}"))).collect();
    let res = cache
        .mset(&entries, Some(Duration::from_secs(120)))
        .await
        .unwrap();
    assert!(res.iter().all(Result::is_ok));
    let res = cache.mset(&entries, None).await.unwrap();
    assert!(res.iter().all(Result::is_ok));
    let got = cache.mget(&keys).await.unwrap();
    for (k, r) in keys.iter().zip(&got) {
        assert_eq!(
            r.as_ref().unwrap().as_deref(),
            Some(format!("v:{k}").as_bytes())
        );
    }
    // Independent check through fred's cluster client, one key at a time.
    let raw_client = fred_cluster().await;
    for k in keys.iter().step_by(97) {
        let v: Option<String> = raw_client.get(k.as_str()).await.unwrap();
        assert_eq!(v, Some(format!("v:{k}")));
    }
    let raw: Result<Vec<Option<String>>, _> = raw_client.mget(keys[..10].to_vec()).await;
    let err = raw.expect_err("a raw cross-slot MGET must fail");
    assert!(err.details().contains("CROSSSLOT"), "{err:?}");
    let mut reversed = keys.clone();
    reversed.reverse();
    let got = cache.mget(&reversed).await.unwrap();
    assert_eq!(
        got[0].as_ref().unwrap().as_deref(),
        Some(format!("v:{}", keys[999]).as_bytes())
    );
    let mut half = keys[..500].to_vec();
    half.push(format!("{prefix}missing"));
    let del = cache.mdel(&half).await.unwrap();
    assert!(del[..500].iter().all(|r| *r.as_ref().unwrap()));
    assert!(!*del[500].as_ref().unwrap());
    let got = cache.mget(&keys).await.unwrap();
    assert!(got[..500].iter().all(|r| matches!(r, Ok(None))));
    assert!(got[500..].iter().all(|r| matches!(r, Ok(Some(_)))));
    cache.mdel(&keys).await.unwrap();
}

/// The routing snapshot agrees with `CLUSTER NODES`, and stats cover all six
/// nodes with their roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_snapshot_and_stats_match_the_cluster() {
    let cache = connect().await;
    let snap = cache.routing();
    assert!(snap.covers_all_slots());
    let nodes_text: String = single_node(&sysmanage_test::redis_nodes()[0])
        .await
        .custom(
            CustomCommand::new_static("CLUSTER", ClusterHash::Random, false),
            vec!["NODES"],
        )
        .await
        .unwrap();
    let nodes = ClusterNode::parse_nodes(&nodes_text).unwrap();
    for n in nodes
        .iter()
        .filter(|n| n.role == Role::Primary && !n.failing)
    {
        for &(a, b) in &n.slots {
            assert_eq!(snap.node_for_slot(a), Some(n.addr.as_str()));
            assert_eq!(snap.node_for_slot(b), Some(n.addr.as_str()));
        }
    }
    let stats = cache.cluster_stats().await.unwrap();
    assert_eq!(stats.total_nodes, 6);
    assert_eq!(stats.healthy_nodes, 6, "{stats:#?}");
    assert_eq!(stats.health, ClusterHealth::Healthy);
    assert_eq!(stats.primaries().count(), 3);
    assert_eq!(stats.replicas().count(), 3);
    let info = stats.cluster.as_ref().unwrap();
    assert!(info.state_ok && info.slots_ok == 16384);
    for n in &stats.nodes {
        let s = n.stats.as_ref().unwrap();
        assert_eq!(s.role, n.role);
        assert!(s.used_memory > 0 && s.clients > 0 && s.memory_limit().is_some());
    }
    let json = serde_json::to_string(&stats).unwrap();
    assert!(json.contains("\"health\":\"healthy\""));
}

/// Connecting with bad settings is a typed error, not a panic or a hang.
#[tokio::test]
async fn bad_config_is_rejected() {
    for nodes in [
        vec![],
        vec!["nohostport".to_owned()],
        vec!["h:notaport".to_owned()],
    ] {
        let err = RedisCache::connect(RedisConfig::new(nodes))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("redis.nodes"), "{err}");
    }
    let mut cfg = common::redis_config();
    cfg.command_timeout = Duration::ZERO;
    assert!(
        RedisCache::connect(cfg)
            .await
            .unwrap_err()
            .to_string()
            .contains("command_timeout")
    );
}

/// Explicit topology refreshes complete, concurrent calls never run more
/// refreshes than there are calls, and the routing table matches what the
/// cluster reports.
///
/// How many of the calls share a refresh depends on timing: on loopback a
/// refresh can finish within the first poll of its call, so the calls need
/// not overlap at all. The sharing rule itself is unit-tested
/// (`concurrent_refresh_calls_share_only_a_later_refresh` in `redis.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_refresh_completes() {
    let mut cfg = common::redis_config();
    cfg.refresh_interval = Duration::from_secs(3600); // no periodic refresh
    let cache = RedisCache::connect(cfg).await.expect("connect");
    let before = cache.counters().refreshes;
    let calls = (0..10).map(|_| cache.refresh_now());
    let results = tokio::time::timeout(Duration::from_secs(15), futures_join_all(calls.collect()))
        .await
        .expect("refresh must not hang");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let ran = cache.counters().refreshes - before;
    assert!(
        (1..=10).contains(&ran),
        "{ran} refreshes for 10 concurrent calls"
    );
    let routing = cache.routing();
    assert!(routing.covers_all_slots());
    let per_node = routing.slots_per_node();
    for n in cache.cluster_nodes().await.unwrap() {
        if n.role == Role::Primary && n.slot_count() > 0 {
            assert_eq!(
                per_node.get(&n.addr).copied(),
                Some(n.slot_count()),
                "{}",
                n.addr
            );
        }
    }
    cache.get(b"it:refresh:probe").await.unwrap();
}

/// Polls all futures in one task (so they start together), outputs in
/// input order.
async fn futures_join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futs.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// `WRONGTYPE`-like user errors (here: `INCR` on a non-integer) say nothing
/// about the topology and must not wake the refresher; an explicit request
/// does (the control that the counter moves at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_errors_do_not_trigger_topology_refreshes() {
    let mut cfg = common::redis_config();
    cfg.refresh_interval = Duration::from_secs(3600);
    cfg.min_refresh_gap = Duration::from_millis(10);
    let cache = RedisCache::connect(cfg).await.expect("connect");
    let key = format!("it:usererr:{}", run_id()).into_bytes();
    cache
        .set(&key, b"not a number", SetOptions::default())
        .await
        .unwrap();
    let before = cache.counters().refreshes;
    for _ in 0..5 {
        assert!(matches!(
            cache.incr(&key, 1).await,
            Err(CacheError::NotAnInteger)
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        cache.counters().refreshes,
        before,
        "no refresh after user errors"
    );
    cache.request_refresh();
    tokio::time::timeout(Duration::from_secs(15), async {
        while cache.counters().refreshes == before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("an explicit request refreshes");
}

/// A node that accepts connections but never answers holds back only its
/// own connection attempt, not first contact with other nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_does_not_hold_back_connections_to_others() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = listener.local_addr().unwrap().to_string();
    // Ends with the test process.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept() {
            held.push(socket); // never answered
        }
    });
    let mut cfg = common::redis_config();
    cfg.connect_timeout = Duration::from_secs(30);
    let cache = RedisCache::connect(cfg).await.expect("connect");
    // `connect` dials the primaries; a replica is first contacted below.
    let replica = cache
        .cluster_nodes()
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.role == Role::Replica && !n.failing)
        .expect("a replica")
        .addr;
    let stuck = {
        let (cache, silent) = (cache.clone(), silent.clone());
        tokio::spawn(async move { cache.node_client(&silent).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = tokio::time::timeout(Duration::from_secs(10), cache.node_client(&replica))
        .await
        .expect("connecting to a replica waited for the silent node")
        .expect("the replica answers");
    assert!(client.is_connected());
    assert!(
        !stuck.is_finished(),
        "the silent node is still being dialled"
    );
    stuck.abort();
}

/// Batches larger than one pipeline (1,000 commands) per node: `mset` with a
/// TTL and `mdel` send one command per key, so 6,000 keys go out as several
/// pipelines per node; every result comes back for its own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_batches_span_several_pipelines() {
    let cache = connect().await;
    let prefix = format!("it:chunks:{}:", run_id());
    let keys: Vec<String> = (0..6000).map(|i| format!("{prefix}{i}")).collect();
    let entries: Vec<(String, String)> =
        keys.iter().map(|k| (k.clone(), format!("v:{k}"))).collect();
    let set = cache
        .mset(&entries, Some(Duration::from_secs(120)))
        .await
        .unwrap();
    assert!(set.iter().all(Result::is_ok));
    let got = cache.mget(&keys).await.unwrap();
    for (k, r) in keys.iter().zip(&got) {
        assert_eq!(
            r.as_ref().unwrap().as_deref(),
            Some(format!("v:{k}").as_bytes())
        );
    }
    // Every other key deleted beforehand: mdel must say which existed.
    let odd: Vec<&String> = keys.iter().skip(1).step_by(2).collect();
    assert!(
        cache
            .mdel(&odd)
            .await
            .unwrap()
            .iter()
            .all(|r| matches!(r, Ok(true)))
    );
    let deleted = cache.mdel(&keys).await.unwrap();
    for (i, r) in deleted.iter().enumerate() {
        assert_eq!(*r.as_ref().unwrap(), i % 2 == 0, "key {i}");
    }
}
