//! Unit tests of the Redis backend's pure parts.

use std::sync::Arc;
use std::time::Duration;

use fred::error::{Error as FredError, ErrorKind};

use fred::types::{Expiration, Value};
use sysmanage_core::{Secret, Timestamp};

use super::RedisCache;
use super::classify::{Classified, NO_OWNER, Redirect, Retry, classify, may_resend};
use super::command::{Cmd, scan_page};
use super::config::{RedisConfig, parse_addr};
use super::multi::{Multi, Out, Unit, batch_failed};
use super::refresh::{refresher, shares_refresh};
use super::routing::Routing;
use crate::cache::ClusterCache;
use crate::error::CacheError;
use crate::slot::SLOT_COUNT;
use crate::topology::{RoutingSnapshot, SlotOwner};

#[test]
fn config_is_validated_and_never_prints_the_password() {
    let mut cfg = RedisConfig::new(["127.0.0.1:7000", "[::1]:7001"]);
    cfg.password = Some(Secret::new("hunter2"));
    assert_eq!(cfg.validate().unwrap().len(), 2);
    assert!(!format!("{cfg:?}").contains("hunter2"));
    for (field, bad) in [
        ("redis.nodes", RedisConfig::new(Vec::<String>::new())),
        ("redis.nodes", RedisConfig::new(["localhost"])),
        (
            "redis.refresh_jitter",
            RedisConfig {
                refresh_jitter: 1.5,
                ..RedisConfig::new(["h:1"])
            },
        ),
        (
            "redis.command_timeout",
            RedisConfig {
                command_timeout: Duration::ZERO,
                ..RedisConfig::new(["h:1"])
            },
        ),
    ] {
        let err = bad.validate().unwrap_err();
        assert!(err.to_string().contains(field), "{err}");
    }
}

#[test]
fn url_shaped_seeds_are_rejected_without_echoing_them() {
    for good in [
        "127.0.0.1:7000",
        "redis-0.svc.local:6379",
        "[::1]:7001",
        "h_1:1",
    ] {
        assert!(parse_addr(good).is_some(), "{good}");
    }
    for bad in [
        "redis://:hunter2@host:7000",
        "user:hunter2@host:7000",
        "host:7000/0",
        "redis://host:7000",
        "host:0",
        "host:+7000",
        "host:99999",
        ":7000",
        "[]:7000",
        "ho st:7000",
    ] {
        assert!(parse_addr(bad).is_none(), "{bad}");
        let err = RedisConfig::new([bad]).validate().unwrap_err().to_string();
        assert!(err.contains("redis.nodes"), "{err}");
        assert!(!err.contains("hunter2") && !err.contains(bad), "{err}");
    }
}

#[tokio::test]
async fn keys_of_unowned_slots_fail_without_a_connection_attempt() {
    let cfg = RedisConfig {
        retry_budget: Duration::from_millis(50),
        ..RedisConfig::new(["127.0.0.1:1"])
    };
    let cache = RedisCache::unconnected(cfg).unwrap();
    let keys: Vec<Vec<u8>> = (0..20).map(|i| format!("k{i}").into_bytes()).collect();
    let results = cache.mget(&keys).await.unwrap();
    assert_eq!(results.len(), keys.len());
    for r in results {
        match r {
            Err(CacheError::Unavailable { node, .. }) => assert_eq!(node, NO_OWNER),
            other => panic!("expected a routing error, got {other:?}"),
        }
    }
    assert!(
        cache.inner.nodes.read().unwrap().is_empty(),
        "no client was created for an unowned slot"
    );
}

#[test]
fn server_errors_are_classified() {
    let c = |msg: &str| {
        classify(
            FredError::new(ErrorKind::Unknown, msg.to_owned()),
            1,
            "n:1",
            Duration::from_secs(1),
        )
    };
    let t = c("TRYAGAIN Multiple keys request during rehashing of slot");
    assert!(t.retry && t.not_executed && t.redirect == Redirect::None);
    assert!(matches!(t.error, CacheError::Unavailable { slot: 1, .. }));
    assert_eq!(
        c("MOVED 3999 127.0.0.1:6381").redirect,
        Redirect::Moved(3999, "127.0.0.1:6381".into())
    );
    assert_eq!(
        c("ASK 3999 127.0.0.1:6381").redirect,
        Redirect::Ask("127.0.0.1:6381".into())
    );
    assert!(matches!(
        c("ERR value is not an integer or out of range").error,
        CacheError::NotAnInteger
    ));
    assert!(matches!(
        c("ERR increment or decrement would overflow").error,
        CacheError::Overflow
    ));
    assert!(matches!(
        c("OOM command not allowed").error,
        CacheError::OutOfMemory { .. }
    ));
    let w = c("WRONGTYPE Operation against a key holding the wrong kind of value");
    assert!(!w.retry && matches!(w.error, CacheError::Backend { .. }));
    let timeout = classify(
        FredError::new(ErrorKind::Timeout, "t"),
        1,
        "n:1",
        Duration::from_secs(1),
    );
    assert!(
        timeout.retry && !timeout.not_executed,
        "a timeout is ambiguous"
    );
    let no_route = classify(
        FredError::new(ErrorKind::Routing, "no node"),
        1,
        "n:1",
        Duration::from_secs(1),
    );
    assert!(no_route.retry && no_route.not_executed);
}

#[test]
fn malformed_scan_replies_are_errors_not_the_end_of_the_scan() {
    let page = |cursor: Value, keys: Value| scan_page(Value::Array(vec![cursor, keys]));
    let (next, keys) = page("17".into(), Value::Array(vec!["a".into(), "b".into()])).unwrap();
    assert_eq!((next, keys), (17, vec![b"a".to_vec(), b"b".to_vec()]));
    assert_eq!(page("0".into(), Value::Array(vec![])).unwrap().0, 0);
    for (cursor, keys) in [
        (Value::from("x1"), Value::Array(vec![])),
        (Value::Null, Value::Array(vec![])),
        (Value::from("5"), Value::from("k")),
        (Value::from("5"), Value::Array(vec![Value::Array(vec![])])),
    ] {
        assert!(
            matches!(page(cursor, keys), Err(CacheError::Backend { .. })),
            "must be an error"
        );
    }
    assert!(scan_page(Value::Array(vec!["0".into()])).is_err());
    assert!(scan_page(Value::Null).is_err());
}

#[test]
fn a_refresh_keeps_moved_patches_newer_than_its_view() {
    let snap = |split: u16| {
        RoutingSnapshot::new(
            vec![
                SlotOwner::new(0, split - 1, "a:1"),
                SlotOwner::new(split, SLOT_COUNT - 1, "b:1"),
            ],
            Timestamp::from_secs(0),
        )
    };
    let owner = |r: &Routing, s: u16| r.owner_of(s).map(|n| n.to_string());
    let t = Routing::new(snap(100));
    // MOVED #1 (slot 10 → b) before the refresh asked, #2 (slot 20 → b) after.
    let t = t.patched(10, "b:1", 1).patched(20, "b:1", 2);
    let stale = Routing::refreshed(snap(100), &t, 1);
    assert_eq!(
        owner(&stale, 20).as_deref(),
        Some("b:1"),
        "newer patch kept"
    );
    assert_eq!(
        owner(&stale, 10).as_deref(),
        Some("a:1"),
        "older patch dropped"
    );
    let next = Routing::refreshed(snap(100), &stale, 2);
    assert_eq!(
        owner(&next, 20).as_deref(),
        Some("a:1"),
        "a later view wins"
    );
    assert!(next.patches.is_empty());
}

#[test]
fn a_moved_patch_copies_no_node_name_per_slot() {
    // A MOVED patches the table under the routing lock; while slots migrate
    // that happens many times a second. It must not clone (and later drop)
    // a reference-counted name for each of the 16,384 slots.
    let t = Routing::new(RoutingSnapshot::new(
        vec![
            SlotOwner::new(0, 8191, "a:1"),
            SlotOwner::new(8192, SLOT_COUNT - 1, "b:1"),
        ],
        Timestamp::from_secs(0),
    ));
    let a = t.owner_of(0).unwrap().clone();
    let before = Arc::strong_count(&a);
    let patched = t.patched(9000, "a:1", 1).patched(9001, "c:1", 2);
    assert_eq!(patched.owner_of(9000).map(|n| &**n), Some("a:1"));
    assert_eq!(patched.owner_of(9001).map(|n| &**n), Some("c:1"));
    assert_eq!(patched.owner_of(9002).map(|n| &**n), Some("b:1"));
    assert!(
        Arc::strong_count(&a) - before <= 4,
        "{} references to one node name after two patches",
        Arc::strong_count(&a) - before
    );
}

#[test]
fn concurrent_refresh_calls_share_only_a_later_refresh() {
    // Two refreshes had started when the call arrived; the one in
    // flight (#2) may have read an older view: not shared.
    assert!(!shares_refresh(2, 2));
    // #3 started after the call and succeeded: shared.
    assert!(shares_refresh(3, 2));
    assert!(!shares_refresh(0, 0));
}

#[tokio::test]
async fn a_waiting_refresher_does_not_keep_the_cache_alive() {
    let cfg = RedisConfig {
        refresh_interval: Duration::from_secs(3600),
        ..RedisConfig::new(["127.0.0.1:1"])
    };
    let cache = RedisCache::unconnected(cfg).unwrap();
    let weak = Arc::downgrade(&cache.inner);
    let task = tokio::spawn(refresher(weak.clone(), cache.inner.refresh.clone()));
    cache.inner.tasks.lock().unwrap().push(task);
    // Let the refresher reach its wait.
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(cache);
    assert!(
        weak.upgrade().is_none(),
        "dropped at once, not after the period"
    );
}

fn classified(kind: ErrorKind, msg: &str) -> Classified {
    classify(
        FredError::new(kind, msg.to_owned()),
        7,
        "n:1",
        Duration::from_secs(1),
    )
}

#[test]
fn resend_decisions() {
    let timeout = classified(ErrorKind::Timeout, "t");
    let lost = classified(ErrorKind::IO, "connection reset");
    let full = classified(ErrorKind::Backpressure, "queue full");
    let moved = classified(ErrorKind::Unknown, "MOVED 7 127.0.0.1:7001");
    let ask = classified(ErrorKind::Unknown, "ASK 7 127.0.0.1:7001");
    let tryagain = classified(ErrorKind::Unknown, "TRYAGAIN");
    let wrongtype = classified(ErrorKind::Unknown, "WRONGTYPE Operation");
    // INCRBY / SET NX: never after an ambiguous failure.
    for c in [&timeout, &lost] {
        assert!(!may_resend(c, Retry::OnlyIfNotExecuted, 0, 16));
        assert!(may_resend(c, Retry::Always, 0, 16));
    }
    // ...but after errors that prove the command did not run.
    for c in [&full, &moved, &ask, &tryagain] {
        assert!(may_resend(c, Retry::OnlyIfNotExecuted, 1, 16));
    }
    // Redirections are capped; user errors are final.
    assert!(may_resend(&moved, Retry::Always, 16, 16));
    assert!(!may_resend(&moved, Retry::Always, 17, 16));
    assert!(!may_resend(&wrongtype, Retry::Always, 0, 16));
}

#[test]
fn a_failed_node_batch_is_reported_per_key_as_node_batch() {
    let units = vec![
        Unit {
            slot: 1,
            idx: vec![0, 3],
            redirects: 0,
            ask: None,
        },
        Unit {
            slot: 2,
            idx: vec![1],
            redirects: 2,
            ask: Some("a:1".into()),
        },
    ];
    let out = batch_failed(units, "n:1", 3, classified(ErrorKind::IO, "reset"));
    assert_eq!(out.len(), 2);
    for (u, r) in out {
        let Err(c) = r else {
            panic!("unit {u:?} must fail")
        };
        assert!(c.retry && !c.not_executed && c.redirect == Redirect::None);
        match c.error {
            CacheError::NodeBatch { node, keys, .. } => {
                assert_eq!((node.as_str(), keys), ("n:1", 3))
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn replies_are_decoded_per_unit_and_odd_shapes_are_errors() {
    let u = |idx: Vec<usize>| Unit {
        slot: 0,
        idx,
        redirects: 0,
        ask: None,
    };
    let got = Multi::Get
        .decode(&u(vec![4, 2]), Value::Array(vec!["x".into(), Value::Null]))
        .unwrap();
    assert!(matches!(&got[..], [Out::Value(Some(x)), Out::Value(None)] if x == b"x"));
    // An array of the wrong length is not silently truncated.
    assert!(
        Multi::Get
            .decode(&u(vec![0, 1, 2]), Value::Array(vec!["x".into()]))
            .is_err()
    );
    assert!(matches!(
        Multi::Del.decode(&u(vec![0]), Value::Integer(1)).unwrap()[..],
        [Out::Existed(true)]
    ));
    assert!(Multi::Del.decode(&u(vec![0]), "x".into()).is_err());
    // Per-key operations build one command per unit.
    let keys: Vec<&[u8]> = vec![b"a", b"b"];
    let values: Vec<&[u8]> = vec![b"1", b"2"];
    assert!(Multi::SetEach(&values, 5).per_key() && Multi::Del.per_key());
    assert!(!Multi::Get.per_key() && !Multi::SetAll(&values).per_key());
    match Multi::SetEach(&values, 5).cmd(&keys, &u(vec![1])) {
        Cmd::Set(k, v, Some(Expiration::PX(5)), None) => {
            assert_eq!((k, v), (&b"b"[..], &b"2"[..]))
        }
        _ => panic!("SET b 2 PX 5 expected"),
    }
}

#[test]
fn a_lost_reply_is_retried_but_counts_as_possibly_run() {
    // fred's message when a queued command's client is shut down (a dead
    // primary's client dropped once its replica is promoted).
    for msg in [
        "channel closed",
        "Canceled.",
        "Connection closed unexpectedly.",
    ] {
        let lost = classified(ErrorKind::Unknown, msg);
        assert!(lost.retry && !lost.not_executed, "{msg}");
        assert!(may_resend(&lost, Retry::Always, 0, 16));
        assert!(!may_resend(&lost, Retry::OnlyIfNotExecuted, 0, 16));
    }
    assert!(!classified(ErrorKind::Unknown, "something else").retry);
    // No connection to write to: surely not sent, so even INCRBY may retry.
    let unrouted = classified(ErrorKind::Unknown, "Failed to route command.");
    assert!(unrouted.retry && unrouted.not_executed);
    assert!(may_resend(&unrouted, Retry::OnlyIfNotExecuted, 0, 16));
}
