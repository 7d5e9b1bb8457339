//! Smoke test of the local topology started by `scripts/services up`:
//! PostgreSQL streaming replication to both standbys, and a healthy six-node
//! Redis Cluster with every slot covered.

use std::time::{Duration, Instant};

use fred::prelude::*;
use sqlx::postgres::PgPoolOptions;
use sysmanage_core::ConnectionUrl;

async fn pool(url: &str) -> sqlx::PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot connect to {}: {e}; {}",
                redacted(url),
                sysmanage_test::START_HINT
            )
        })
}

fn redacted(url: &str) -> ConnectionUrl {
    ConnectionUrl::new(url)
}

#[tokio::test]
async fn primary_replicates_to_both_standbys() {
    let primary = pool(&sysmanage_test::pg_primary_url()).await;
    let in_recovery: bool = sqlx::query_scalar("select pg_is_in_recovery()")
        .fetch_one(&primary)
        .await
        .expect("query primary");
    assert!(
        !in_recovery,
        "the primary reports pg_is_in_recovery() = true"
    );

    let standby_urls = sysmanage_test::pg_standby_urls();
    assert_eq!(
        standby_urls.len(),
        2,
        "expected two standbys, got {standby_urls:?}"
    );
    let mut standbys = Vec::new();
    for url in &standby_urls {
        let p = pool(url).await;
        let in_recovery: bool = sqlx::query_scalar("select pg_is_in_recovery()")
            .fetch_one(&p)
            .await
            .expect("query standby");
        assert!(in_recovery, "standby {} is not in recovery", redacted(url));
        standbys.push(p);
    }

    sqlx::query(
        "create table if not exists topology_smoke (id bigint primary key, note text not null)",
    )
    .execute(&primary)
    .await
    .expect("create table");
    let id: i64 = sqlx::query_scalar(
        "insert into topology_smoke (id, note) \
         select coalesce(max(id), 0) + 1, 'written on the primary' from topology_smoke returning id",
    )
    .fetch_one(&primary)
    .await
    .expect("insert");

    for (url, standby) in standby_urls.iter().zip(&standbys) {
        let started = Instant::now();
        loop {
            // The table itself replays too: ask for it by name before selecting.
            let seen: Option<String> = sqlx::query_scalar(
                "select case when to_regclass('topology_smoke') is null then null \
                 else (select note from topology_smoke where id = $1) end",
            )
            .bind(id)
            .fetch_one(standby)
            .await
            .expect("query standby");
            if seen.as_deref() == Some("written on the primary") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "row {id} did not reach standby {} within 10 s",
                redacted(url)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test]
async fn redis_cluster_is_ok_with_all_slots_covered() {
    let nodes = sysmanage_test::redis_nodes();
    assert_eq!(nodes.len(), 6, "expected six cluster nodes, got {nodes:?}");
    let mut primaries = 0;
    for node in &nodes {
        let config = Config::from_url(&format!("redis://{node}")).expect("valid url");
        let client = Builder::from_config(config).build().expect("client");
        client.init().await.unwrap_or_else(|e| {
            panic!(
                "cannot connect to redis {node}: {e}; {}",
                sysmanage_test::START_HINT
            )
        });
        let info: String = client.cluster_info().await.expect("CLUSTER INFO");
        assert!(info.contains("cluster_state:ok"), "{node}: {info}");
        assert!(info.contains("cluster_slots_ok:16384"), "{node}: {info}");
        let replication: String = client
            .info(Some(fred::types::InfoKind::Replication))
            .await
            .expect("INFO");
        if replication.contains("role:master") {
            primaries += 1;
        } else {
            assert!(
                replication.contains("master_link_status:up"),
                "{node}: {replication}"
            );
        }
        client.quit().await.expect("quit");
    }
    assert_eq!(primaries, 3, "expected three primaries");
}

/// The shard cluster is a second, independent PostgreSQL cluster with
/// `wal_level = logical`, and the primary runs with `wal_level = logical`
/// too, so either can be the source of a shard move.
#[tokio::test]
async fn shard_cluster_is_separate_and_logical() {
    let shard = pool(&sysmanage_test::pg_shard_url()).await;
    let primary = pool(&sysmanage_test::pg_primary_url()).await;
    for (name, p) in [("shard", &shard), ("primary", &primary)] {
        let level: String = sqlx::query_scalar("show wal_level")
            .fetch_one(p)
            .await
            .expect("show wal_level");
        assert_eq!(level, "logical", "{name} cluster wal_level");
    }
    let in_recovery: bool = sqlx::query_scalar("select pg_is_in_recovery()")
        .fetch_one(&shard)
        .await
        .expect("query shard cluster");
    assert!(!in_recovery, "the shard cluster is a primary of its own");
    let id = |p: &sqlx::PgPool| {
        let p = p.clone();
        async move {
            sqlx::query_scalar::<_, i64>("select system_identifier from pg_control_system()")
                .fetch_one(&p)
                .await
                .expect("system identifier")
        }
    };
    assert_ne!(
        id(&shard).await,
        id(&primary).await,
        "the shard cluster must be its own initdb, not a copy of the primary"
    );
}
