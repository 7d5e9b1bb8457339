//! Shared by the live tests (each test binary uses a part of it).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use fred::interfaces::ClientLike;
use sysmanage_cache::stats::{ClusterNode, Role};
use sysmanage_cache::{RedisCache, RedisConfig};
use sysmanage_core::{Pem, Secret, TlsConfig};

/// The settings of the cluster this run targets: the plain one, or in a
/// secure run (`SYSMANAGE_TEST_SECURE=1`) the TLS-only one as its ACL user,
/// verifying the nodes' certificates against the test CA.
pub(crate) fn redis_config() -> RedisConfig {
    let mut cfg = RedisConfig::new(sysmanage_test::redis_nodes());
    if let Some(sec) = sysmanage_test::redis_security() {
        cfg.username = Some(sec.username);
        cfg.password = Some(Secret::new(sec.password));
        cfg.tls = Some(TlsConfig::verify_full().ca(Pem::file(sec.ca)));
    }
    cfg
}

/// A fred configuration for a raw reference client of `server` on the
/// cluster this run targets: TLS against the test CA and the ACL user in a
/// secure run, plain text otherwise.
pub(crate) fn fred_config(
    server: fred::types::config::ServerConfig,
) -> fred::types::config::Config {
    use fred::types::config::{Config, TlsConfig as FredTls};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let Some(sec) = sysmanage_test::redis_security() else {
        return Config {
            server,
            ..Config::default()
        };
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&sec.ca).expect("read the test CA") {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("add the CA");
    }
    // ring, as the crate does (rustls 0.23.48 deprecates it only for
    // lacking post-quantum key exchange).
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Config {
        server,
        username: Some(sec.username),
        password: Some(sec.password),
        tls: Some(FredTls::from(tls)),
        ..Config::default()
    }
}

/// `INFO <section>` of the node on `port`, through `scripts/services`
/// (which speaks TLS to the secure cluster).
pub(crate) fn node_info(port: &str, section: &str) -> String {
    sysmanage_test::services(&["redis-cli", port, "info", section])
}

/// The cluster's layout once every node agrees with it: each primary with
/// slots says it is a primary and each replica says it is a replica (a node
/// restarted by an earlier test may still advertise its old role for a
/// moment, and a test that kills "the primary of these slots" must not
/// kill a node that is no longer one).
///
/// # Panics
/// When the layout does not settle within 30 s, or a node is failing.
pub(crate) async fn settled_layout(cache: &RedisCache) -> Vec<ClusterNode> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = cache.refresh_now().await;
        let nodes = cache.cluster_nodes().await.expect("CLUSTER NODES");
        let mut agree = nodes.iter().all(|n| !n.failing);
        for n in nodes
            .iter()
            .filter(|n| n.slot_count() > 0 || n.role == Role::Replica)
        {
            if !agree {
                break;
            }
            let Ok(client) = cache.node_client(&n.addr).await else {
                agree = false;
                break;
            };
            let info: String = client
                .info(Some(fred::types::InfoKind::Replication))
                .await
                .unwrap_or_default();
            let says = if info.contains("role:master") {
                Role::Primary
            } else {
                Role::Replica
            };
            agree &= says == n.role;
        }
        let routed = cache.routing();
        agree &= nodes.iter().filter(|n| n.slot_count() > 0).all(|n| {
            n.slots
                .iter()
                .all(|&(a, _)| routed.node_for_slot(a) == Some(n.addr.as_str()))
        });
        if agree {
            return nodes;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster layout did not settle: {nodes:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Connection attempts to the secure cluster fail within this; a retry
/// loop would take the (much longer) retry budget.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The retry budget of [`secure_config`].
pub(crate) const RETRY_BUDGET: Duration = Duration::from_secs(30);

/// The secure (TLS-only) cluster as its ACL user, verifying against the
/// test CA, whatever this run targets.
pub(crate) fn secure_config() -> RedisConfig {
    let sec = sysmanage_test::redis_tls_security();
    let mut cfg = RedisConfig::new(sysmanage_test::redis_tls_nodes());
    cfg.username = Some(sec.username);
    cfg.password = Some(Secret::new(sec.password));
    cfg.tls = Some(TlsConfig::verify_full().ca(Pem::file(sec.ca)));
    cfg.connect_timeout = CONNECT_TIMEOUT;
    cfg.retry_budget = RETRY_BUDGET;
    cfg
}

/// The secure cluster's passwords (the ACL user's and the legacy one).
pub(crate) fn passwords() -> Vec<String> {
    vec![
        sysmanage_test::redis_tls_security().password,
        sysmanage_test::required_env("SYSMANAGE_REDIS_LEGACY_PASSWORD"),
    ]
}

/// Fails when `text` contains one of [`passwords`].
#[track_caller]
pub(crate) fn assert_no_secret(text: &str) {
    for p in passwords() {
        assert!(!text.contains(&p), "a password leaked: {text}");
    }
}
