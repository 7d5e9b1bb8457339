//! TLS and authentication against the secure Redis Cluster that
//! `scripts/services up` starts (TLS only, an ACL user and a `requirepass`
//! password, certificates from a throw-away CA): logging in every way a
//! host may (ACL user, legacy password, client certificate, a server-name
//! override), the tiered cache's tracking connections and the session store
//! over TLS, and every way it must fail: wrong CA, wrong server name,
//! expired and self-signed certificates, an untrusted client certificate,
//! wrong or missing password, plain text against a TLS port and TLS against
//! a plain port. Each failure is a typed error naming the node, returned
//! without a retry loop, and no password shows in any error or log.
//!
//! The conformance suite and the cluster fault tests run over TLS too:
//! `scripts/test` runs `redis_cluster`, `cluster_faults`, `tiered_live` and
//! `tiered_faults` again with `SYSMANAGE_TEST_SECURE=1`.

mod common;

use std::time::{Duration, Instant};

use sysmanage_cache::session::{SessionConfig, SessionStore};
use sysmanage_cache::tiered::TrackingConfig;
use sysmanage_cache::{
    CacheError, ClusterCache, RedisCache, RedisConfig, SetOptions, TieredCache, TieredConfig,
};
use sysmanage_core::{Pem, Secret, TlsConfig, TlsMode};
use sysmanage_test::{TlsDecoy, redis_tls_nodes, redis_tls_security, run_id, tls_file};

/// Connection attempts fail within this; a retry loop would take the
/// (much longer) retry budget.
use common::{CONNECT_TIMEOUT, assert_no_secret, secure_config};

/// The error, its `Debug` and its whole source chain, as one text.
fn chain(e: &CacheError) -> String {
    let mut text = format!("{e} | {e:?}");
    let mut next = std::error::Error::source(e);
    while let Some(s) = next {
        text.push_str(&format!(" | {s}"));
        next = s.source();
    }
    text
}

/// Connects with `cfg`, expecting a failure; returns it after checking it
/// came within the connect timeout (no retry loop) and shows no secret.
async fn connect_fails(cfg: RedisConfig) -> CacheError {
    let started = Instant::now();
    let e = RedisCache::connect(cfg)
        .await
        .expect_err("the connection must be refused");
    let took = started.elapsed();
    assert!(
        took < CONNECT_TIMEOUT + Duration::from_secs(1),
        "failing took {took:?}: a retry loop, not a typed failure ({})",
        chain(&e)
    );
    assert_no_secret(&chain(&e));
    e
}

#[track_caller]
fn assert_tls(e: &CacheError, node: &str, words: &str) {
    match e {
        CacheError::Tls {
            node: n, reason, ..
        } => {
            assert_eq!(n, node, "{}", chain(e));
            assert!(reason.contains(words), "{reason:?} lacks {words:?}");
        }
        other => panic!("expected a TLS error, got {}", chain(other)),
    }
    assert_eq!(e.label(), "tls");
    assert!(!e.is_transient());
}

#[track_caller]
fn assert_auth(e: &CacheError, node: &str, words: &str) {
    match e {
        CacheError::Auth {
            node: n, reason, ..
        } => {
            assert_eq!(n, node, "{}", chain(e));
            assert!(reason.contains(words), "{reason:?} lacks {words:?}");
        }
        other => panic!("expected an authentication error, got {}", chain(other)),
    }
    assert_eq!(e.label(), "auth");
}

/// Keys spread over many slots, so every primary is used.
fn keys(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}{i}").into_bytes())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_over_verified_tls_serves_every_slot() {
    let cache = RedisCache::connect(secure_config()).await.expect("connect");
    let prefix = format!("tls:{}:", run_id());
    let ks = keys(&prefix, 500);
    let refs: Vec<&[u8]> = ks.iter().map(Vec::as_slice).collect();
    let values: Vec<Vec<u8>> = (0..ks.len()).map(|i| i.to_string().into_bytes()).collect();
    let pairs: Vec<(&[u8], &[u8])> = refs
        .iter()
        .zip(&values)
        .map(|(k, v)| (*k, v.as_slice()))
        .collect();
    for r in cache.mset(&pairs, None).await.expect("mset over TLS") {
        r.expect("mset over TLS");
    }
    let got = cache.mget(&refs).await.expect("mget over TLS");
    for (i, r) in got.into_iter().enumerate() {
        assert_eq!(r.unwrap().as_deref(), Some(values[i].as_slice()));
    }
    assert_eq!(cache.routing().primaries().len(), 3);
    // The topology refresh and the stats run over the same connections.
    cache.refresh_now().await.expect("refresh over TLS");
    let stats = cache.cluster_stats().await.expect("cluster stats over TLS");
    assert_eq!(stats.total_nodes, 6, "{stats:?}");
    assert_eq!(stats.healthy_nodes, 6, "{stats:?}");
    assert!(stats.nodes.iter().all(|n| n.stats.is_some()), "{stats:?}");
    // The server agrees who we are.
    let client = cache.node_client(&redis_tls_nodes()[0]).await.unwrap();
    let who: String = fred::interfaces::ClientLike::custom(
        &client,
        fred::types::CustomCommand::new_static("ACL", fred::types::ClusterHash::Random, false),
        vec!["WHOAMI"],
    )
    .await
    .unwrap();
    assert_eq!(who, redis_tls_security().username);
    cache.mdel(&refs).await.unwrap();
}

#[tokio::test]
async fn legacy_requirepass_logs_in_as_the_default_user() {
    let mut cfg = secure_config();
    cfg.username = None;
    cfg.password = Some(Secret::new(sysmanage_test::required_env(
        "SYSMANAGE_REDIS_LEGACY_PASSWORD",
    )));
    let cache = RedisCache::connect(cfg)
        .await
        .expect("connect with requirepass");
    let client = cache.node_client(&redis_tls_nodes()[0]).await.unwrap();
    let who: String = fred::interfaces::ClientLike::custom(
        &client,
        fred::types::CustomCommand::new_static("ACL", fred::types::ClusterHash::Random, false),
        vec!["WHOAMI"],
    )
    .await
    .unwrap();
    assert_eq!(who, "default");
    let k = format!("tls:{}:legacy", run_id());
    assert!(
        cache
            .set(k.as_bytes(), b"v", SetOptions::default())
            .await
            .unwrap()
    );
    assert!(cache.delete(k.as_bytes()).await.unwrap());
}

#[tokio::test]
async fn client_certificates_are_sent_and_checked() {
    let mut cfg = secure_config();
    cfg.tls = Some(
        TlsConfig::verify_full()
            .ca(Pem::file(tls_file("ca.crt")))
            .client_identity(
                Pem::file(tls_file("client.crt")),
                Pem::file(tls_file("client.key")),
            ),
    );
    let cache = RedisCache::connect(cfg).await.expect("mutual TLS");
    let k = format!("tls:{}:mtls", run_id());
    assert!(
        cache
            .set(k.as_bytes(), b"v", SetOptions::default())
            .await
            .unwrap()
    );
    cache.delete(k.as_bytes()).await.unwrap();

    // A certificate from a CA the servers do not trust is refused.
    let mut cfg = secure_config();
    cfg.nodes = vec![redis_tls_nodes()[0].clone()];
    cfg.tls = Some(
        TlsConfig::verify_full()
            .ca(Pem::file(tls_file("ca.crt")))
            .client_identity(
                Pem::file(tls_file("other-client.crt")),
                Pem::file(tls_file("other-client.key")),
            ),
    );
    let e = connect_fails(cfg).await;
    assert_tls(&e, &redis_tls_nodes()[0], "client certificate");
}

#[tokio::test]
async fn a_server_name_override_verifies_nodes_announced_by_ip() {
    // The nodes announce 127.0.0.1; their certificate also names
    // sysmanage.test, which the override asks for.
    let mut cfg = secure_config();
    cfg.tls = Some(
        TlsConfig::verify_full()
            .ca(Pem::file(tls_file("ca.crt")))
            .server_name("sysmanage.test"),
    );
    let cache = RedisCache::connect(cfg).await.expect("override");
    cache.cluster_stats().await.expect("every node verified");

    let mut cfg = secure_config();
    cfg.nodes = vec![redis_tls_nodes()[1].clone()];
    cfg.tls = Some(
        TlsConfig::verify_full()
            .ca(Pem::file(tls_file("ca.crt")))
            .server_name("wrong.example"),
    );
    let e = connect_fails(cfg).await;
    assert_tls(&e, &redis_tls_nodes()[1], "expected name");

    // verify-ca checks the chain only; require checks nothing.
    let mut cfg = secure_config();
    cfg.tls = Some(
        TlsConfig::verify_full()
            .mode(TlsMode::VerifyCa)
            .ca(Pem::file(tls_file("ca.crt")))
            .server_name("wrong.example"),
    );
    RedisCache::connect(cfg)
        .await
        .expect("verify-ca ignores names");
    let mut cfg = secure_config();
    cfg.tls = Some(
        TlsConfig::verify_full()
            .mode(TlsMode::Require)
            .ca(Pem::file(tls_file("other-ca.crt"))),
    );
    RedisCache::connect(cfg)
        .await
        .expect("require verifies nothing");
}

#[tokio::test]
async fn an_untrusted_ca_is_refused() {
    let mut cfg = secure_config();
    cfg.nodes = vec![redis_tls_nodes()[2].clone()];
    cfg.tls = Some(TlsConfig::verify_full().ca(Pem::file(tls_file("other-ca.crt"))));
    let e = connect_fails(cfg).await;
    assert_tls(&e, &redis_tls_nodes()[2], "not signed by a trusted CA");
}

#[tokio::test]
async fn expired_and_self_signed_certificates_are_refused() {
    for (cert, words) in [
        ("expired.crt", "expired"),
        ("self-signed.crt", "not signed by a trusted CA"),
    ] {
        let decoy = TlsDecoy::start(&tls_file(cert), false);
        let mut cfg = secure_config();
        cfg.nodes = vec![decoy.addr().to_owned()];
        let e = connect_fails(cfg).await;
        assert_tls(&e, decoy.addr(), words);
    }
}

#[tokio::test]
async fn wrong_or_missing_passwords_are_typed_and_not_retried() {
    let node = redis_tls_nodes()[0].clone();
    let mut cfg = secure_config();
    cfg.nodes = vec![node.clone()];
    cfg.password = Some(Secret::new("not-the-password"));
    let e = connect_fails(cfg).await;
    assert_auth(&e, &node, "WRONGPASS");
    assert!(!chain(&e).contains("not-the-password"), "{}", chain(&e));

    let mut cfg = secure_config();
    cfg.nodes = vec![node.clone()];
    cfg.username = None;
    cfg.password = None;
    let e = connect_fails(cfg).await;
    assert_auth(&e, &node, "NOAUTH");
}

#[tokio::test]
async fn plain_text_and_tls_must_meet_their_own_kind() {
    // Plain text against a TLS-only port.
    let node = redis_tls_nodes()[3].clone();
    let mut cfg = secure_config();
    cfg.nodes = vec![node.clone()];
    cfg.tls = None;
    let e = connect_fails(cfg).await;
    assert_tls(&e, &node, "TLS-only port");

    // TLS against a plain-text port.
    let plain = std::env::var("SYSMANAGE_REDIS_NODES").expect("plain nodes");
    let plain = plain.split(',').next().unwrap().to_owned();
    let mut cfg = secure_config();
    cfg.nodes = vec![plain.clone()];
    let e = connect_fails(cfg).await;
    assert_tls(&e, &plain, "plain-text port");
}

#[tokio::test]
async fn tls_settings_are_checked_before_connecting() {
    let mut cfg = secure_config();
    cfg.tls = Some(TlsConfig::verify_full().ca(Pem::file("/nonexistent/sysmanage/ca.crt")));
    let e = RedisCache::connect(cfg).await.err().unwrap();
    assert!(
        matches!(&e, CacheError::InvalidArgument { field, reason }
            if *field == "redis.tls.ca" && reason.contains("/nonexistent/sysmanage/ca.crt")),
        "{e:?}"
    );
    let mut cfg = secure_config();
    cfg.tls = Some(TlsConfig::verify_full().client_identity(
        Pem::file(tls_file("client.crt")),
        Pem::file(tls_file("other-client.key")),
    ));
    let e = RedisCache::connect(cfg).await.err().unwrap();
    assert!(
        matches!(&e, CacheError::InvalidArgument { field, .. } if *field == "redis.tls.client_key"),
        "{e:?}"
    );
    // The key text never shows, nor the password.
    let mut cfg = secure_config();
    cfg.tls = Some(TlsConfig::verify_full().client_identity(
        Pem::text(std::fs::read_to_string(tls_file("client.crt")).unwrap()),
        Pem::text(std::fs::read_to_string(tls_file("client.key")).unwrap()),
    ));
    let shown = format!("{cfg:?}");
    assert_no_secret(&shown);
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_connections_and_sessions_run_over_tls() {
    let prefix = format!("tls:{}:t:", run_id());
    let mut config = TieredConfig::default();
    config.local_ttl = Duration::from_secs(60);
    config.prefixes = vec![prefix.as_bytes().to_vec()];
    let l2 = RedisCache::connect(secure_config()).await.unwrap();
    let tiered = TieredCache::with_tracking(l2, config, TrackingConfig::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !tiered.stats().coherent {
        assert!(
            Instant::now() < deadline,
            "tracking over TLS not established: {:?}",
            tiered.stats().tracking
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let writer = RedisCache::connect(secure_config()).await.unwrap();
    let k = format!("{prefix}k");
    writer
        .set(k.as_bytes(), b"one", SetOptions::default())
        .await
        .unwrap();
    assert_eq!(
        tiered.get(k.as_bytes()).await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    // Another client's write reaches the L1 as an invalidation over TLS.
    writer
        .set(k.as_bytes(), b"two", SetOptions::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if tiered.get(k.as_bytes()).await.unwrap().as_deref() == Some(&b"two"[..]) {
            break;
        }
        assert!(Instant::now() < deadline, "no invalidation over TLS");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.delete(k.as_bytes()).await.unwrap();

    let store = SessionStore::new(writer, SessionConfig::default()).unwrap();
    let session = store.create("alice", &"cart".to_owned()).await.unwrap();
    let back = store.get::<String>(&session.id).await.unwrap().unwrap();
    assert_eq!(back.user_id, "alice");
    assert_eq!(back.data, "cart");
    assert!(store.delete(&session.id).await.unwrap());
}
