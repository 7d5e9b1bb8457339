//! PostgreSQL over TLS against the local topology: every node runs with
//! `ssl = on` and a certificate from the throw-away CA of `scripts/services`,
//! and a role that may only log in over TLS with a scram-sha-256 password.
//!
//! The replica router (its pools and the monitor's probes) and shard node
//! sets over `verify-full`, `verify-ca` and `require`, with the password
//! kept out of the URL or in it; a client certificate; and every way it
//! must fail: untrusted CA, wrong host name, expired and self-signed server
//! certificates, an untrusted client certificate, a wrong password, plain
//! text for the TLS-only role. Each failure is classified
//! [`FailureClass::Rejected`] within the acquire timeout and shows no
//! password. The router's live suite (`replica_topology`) runs over
//! `verify-full` too: `scripts/test` runs it again with
//! `SYSMANAGE_TEST_SECURE=1`.
#![cfg(feature = "integration")]

use std::time::{Duration, Instant};

use sqlx::PgPool;
use sysmanage_core::{Pem, Secret, TlsConfig, TlsMode};
use sysmanage_db::replica::{
    Consistency, FailureClass, NodeState, PgNodeOptions, QueryFailure, ReplicaRouter, classify,
    pg_node, pg_pool,
};
use sysmanage_db::shard::{PgHash, ShardRouter};
use sysmanage_test::{TlsDecoy, required_env, tls_file};

const ACQUIRE: Duration = Duration::from_secs(2);

fn password() -> String {
    required_env("SYSMANAGE_PG_TLS_PASSWORD")
}

/// `url` without its query string: TLS comes from the options instead.
fn bare(url: &str) -> String {
    url.split('?').next().unwrap().to_owned()
}

fn primary_url() -> String {
    required_env("SYSMANAGE_PG_TLS_PRIMARY_URL")
}

fn standby_urls() -> Vec<String> {
    required_env("SYSMANAGE_PG_TLS_STANDBY_URLS")
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// The password in the options, TLS as `tls`.
fn options(tls: TlsConfig) -> PgNodeOptions {
    let mut o = PgNodeOptions::default();
    o.acquire_timeout = ACQUIRE;
    o.password = Some(Secret::new(password()));
    o.tls = Some(tls);
    o
}

fn verify_full() -> TlsConfig {
    TlsConfig::verify_full().ca(Pem::file(tls_file("ca.crt")))
}

/// Whether the connection that runs this is encrypted, and with what.
async fn ssl_of(pool: &PgPool) -> (bool, String) {
    sqlx::query_as(
        "select ssl, coalesce(version, '') from pg_stat_ssl where pid = pg_backend_pid()",
    )
    .fetch_one(pool)
    .await
    .expect("pg_stat_ssl")
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{e} | {e:?}");
    let mut next = e.source();
    while let Some(s) = next {
        text.push_str(&format!(" | {s}"));
        next = s.source();
    }
    text
}

/// A query through `pool` fails, classified `Rejected`, within the acquire
/// timeout, without the password in the error; returns the error's text.
async fn rejected(pool: &PgPool) -> String {
    let started = Instant::now();
    let e = sqlx::query("select 1")
        .execute(pool)
        .await
        .expect_err("the connection must be refused");
    let took = started.elapsed();
    let text = chain(&e);
    assert_eq!(classify(&e), FailureClass::Rejected, "{text}");
    assert!(
        took < ACQUIRE + Duration::from_secs(1),
        "took {took:?}: {text}"
    );
    assert!(!text.contains(&password()), "the password leaked: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_reads_and_writes_over_verify_full() {
    let opts = options(verify_full());
    let standbys = standby_urls();
    let router = ReplicaRouter::builder()
        .primary(pg_node("primary", bare(&primary_url()), &opts).unwrap())
        .replica(pg_node("standby1", bare(&standbys[0]), &opts).unwrap())
        .replica(pg_node("standby2", bare(&standbys[1]), &opts).unwrap())
        .build()
        .await
        .unwrap();
    let table = format!("tls_{}", std::process::id());
    router
        .write(|pool| {
            let table = table.clone();
            async move {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "create table if not exists {table} (v int)"
                )))
                .execute(&pool)
                .await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "insert into {table} values (42)"
                )))
                .execute(&pool)
                .await
            }
        })
        .await
        .unwrap();
    let token = router.wal_token().await.unwrap();
    let v: i32 = router
        .read(Consistency::at_least(token), |pool| {
            let table = table.clone();
            async move {
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select v from {table}")))
                    .fetch_one(&pool)
                    .await
            }
        })
        .await
        .unwrap();
    assert_eq!(v, 42);
    // Every node's connections are encrypted, the monitor's probes included
    // (they passed: every node is up).
    for node in ["primary", "standby1", "standby2"] {
        let pool = router.node_pool(node).expect("node pool");
        let (ssl, version) = ssl_of(&pool).await;
        assert!(ssl, "{node} is not on TLS");
        assert!(version.starts_with("TLSv1."), "{node}: {version}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while router
        .status()
        .nodes
        .iter()
        .any(|n| n.state != NodeState::Healthy)
    {
        assert!(Instant::now() < deadline, "{:?}", router.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    router
        .write(|pool| {
            let table = table.clone();
            async move {
                sqlx::query(sqlx::AssertSqlSafe(format!("drop table {table}")))
                    .execute(&pool)
                    .await
            }
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn url_parameters_and_every_mode_connect() {
    // sslmode and sslrootcert from the URL, the password from the options.
    let mut opts = PgNodeOptions::default();
    opts.password = Some(Secret::new(password()));
    let pool = pg_pool(primary_url(), &opts).unwrap();
    assert!(ssl_of(&pool).await.0);
    // The password in the URL works as well (and is redacted when shown).
    let with_password = primary_url().replacen(
        "sysmanage_tls@",
        &format!("sysmanage_tls:{}@", password()),
        1,
    );
    let spec = pg_node("p", with_password, &PgNodeOptions::default()).unwrap();
    assert!(!format!("{spec:?}").contains(&password()));
    for mode in [TlsMode::VerifyCa, TlsMode::Require] {
        let pool = pg_pool(bare(&primary_url()), &options(verify_full().mode(mode))).unwrap();
        assert!(ssl_of(&pool).await.0, "{mode}");
    }
    // verify-ca checks no name: "localhost" is not in the certificate.
    let localhost = bare(&primary_url()).replace("127.0.0.1", "localhost");
    let pool = pg_pool(localhost, &options(verify_full().mode(TlsMode::VerifyCa))).unwrap();
    assert!(ssl_of(&pool).await.0);
    // require checks no chain: another CA will do.
    let pool = pg_pool(
        bare(&primary_url()),
        &options(
            TlsConfig::verify_full()
                .mode(TlsMode::Require)
                .ca(Pem::file(tls_file("other-ca.crt"))),
        ),
    )
    .unwrap();
    assert!(ssl_of(&pool).await.0);
}

#[tokio::test]
async fn client_certificates_are_sent_and_checked() {
    let good = verify_full().client_identity(
        Pem::file(tls_file("client.crt")),
        Pem::file(tls_file("client.key")),
    );
    let pool = pg_pool(bare(&primary_url()), &options(good)).unwrap();
    let (ssl, _) = ssl_of(&pool).await;
    assert!(ssl);
    let client_dn: Option<String> =
        sqlx::query_scalar("select client_dn from pg_stat_ssl where pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        client_dn
            .unwrap_or_default()
            .contains("sysmanage-rs test client"),
        "the client certificate was not presented"
    );
    let untrusted = verify_full().client_identity(
        Pem::file(tls_file("other-client.crt")),
        Pem::file(tls_file("other-client.key")),
    );
    let pool = pg_pool(bare(&primary_url()), &options(untrusted)).unwrap();
    rejected(&pool).await;
}

#[tokio::test]
async fn untrusted_ca_wrong_name_and_bad_certificates_are_rejected() {
    let pool = pg_pool(
        bare(&primary_url()),
        &options(TlsConfig::verify_full().ca(Pem::file(tls_file("other-ca.crt")))),
    )
    .unwrap();
    let text = rejected(&pool).await;
    assert!(text.contains("UnknownIssuer"), "{text}");

    // verify-full checks the host connected to: "localhost" is not among
    // the certificate's names (127.0.0.1 and sysmanage.test are).
    let localhost = bare(&primary_url()).replace("127.0.0.1", "localhost");
    let pool = pg_pool(localhost, &options(verify_full())).unwrap();
    let text = rejected(&pool).await;
    assert!(text.contains("NotValidForName"), "{text}");

    for (cert, words) in [
        ("expired.crt", "Expired"),
        ("self-signed.crt", "UnknownIssuer"),
    ] {
        let decoy = TlsDecoy::start(&tls_file(cert), true);
        let url = format!(
            "postgres://sysmanage_tls@127.0.0.1:{}/sysmanage_test",
            decoy.port()
        );
        let pool = pg_pool(url, &options(verify_full())).unwrap();
        let text = rejected(&pool).await;
        assert!(text.contains(words), "{cert}: {text}");
    }
}

#[tokio::test]
async fn a_wrong_password_and_plain_text_are_rejected() {
    let mut opts = options(verify_full());
    opts.password = Some(Secret::new("not-the-password"));
    let pool = pg_pool(bare(&primary_url()), &opts).unwrap();
    let text = rejected(&pool).await;
    assert!(text.contains("28P01"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");

    // The role may log in only over TLS.
    let mut opts = PgNodeOptions::default();
    opts.acquire_timeout = ACQUIRE;
    opts.password = Some(Secret::new(password()));
    let plain = format!("{}?sslmode=disable", bare(&primary_url()));
    let pool = pg_pool(plain, &opts).unwrap();
    let text = rejected(&pool).await;
    assert!(text.contains("no encryption"), "{text}");
}

#[tokio::test]
async fn the_router_names_the_node_that_rejects() {
    let opts = options(TlsConfig::verify_full().ca(Pem::file(tls_file("other-ca.crt"))));
    let router = ReplicaRouter::builder()
        .monitor(false)
        .primary(pg_node("primary", bare(&primary_url()), &opts).unwrap())
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let e = router
        .write(|pool| async move { sqlx::query("select 1").execute(&pool).await })
        .await
        .expect_err("rejected");
    assert!(started.elapsed() < ACQUIRE + Duration::from_secs(1));
    match &e {
        QueryFailure::Query {
            node, connection, ..
        } => {
            assert_eq!(node, "primary");
            assert!(!connection, "a rejection is not a connection failure");
        }
        other => panic!("expected the node's failure, got {other:?}"),
    }
    assert_eq!(classify(&e), FailureClass::Rejected);
}

#[tokio::test]
async fn settings_are_checked_when_the_node_is_made() {
    let e = pg_pool(
        bare(&primary_url()),
        &options(TlsConfig::verify_full().ca(Pem::file("/nonexistent/sysmanage/ca.crt"))),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("tls.ca") && e.contains("/nonexistent/sysmanage/ca.crt"),
        "{e}"
    );
    let e = pg_node(
        "primary",
        bare(&primary_url()),
        &options(verify_full().server_name("db.internal")),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("tls.server_name") && e.contains("\"primary\""),
        "{e}"
    );
    let opts = options(verify_full());
    assert!(!format!("{opts:?}").contains(&password()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_node_sets_run_over_tls() {
    let opts = options(verify_full());
    let shard_url = required_env("SYSMANAGE_PG_TLS_SHARD_URL");
    let router: ShardRouter<PgPool> = ShardRouter::builder(PgHash::new(2).unwrap())
        .node_set("a", pg_pool(bare(&primary_url()), &opts).unwrap())
        .node_set("b", pg_pool(bare(&shard_url), &opts).unwrap())
        .build()
        .unwrap();
    let ports = router
        .fan_out(|ctx| async move {
            sqlx::query_as::<_, (i32, bool)>(
                "select inet_server_port(), ssl from pg_stat_ssl where pid = pg_backend_pid()",
            )
            .fetch_one(ctx.nodes())
            .await
        })
        .await
        .into_complete()
        .expect("both node sets answer over TLS");
    assert_eq!(ports.len(), 2);
    assert!(ports.iter().all(|(_, ssl)| *ssl), "{ports:?}");
    let mut distinct: Vec<i32> = ports.iter().map(|(p, _)| *p).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 2, "two clusters: {ports:?}");
}
