//! `ReplicaRouter::shutdown` against the local PostgreSQL topology: after
//! it, no connection of the router is left on any server (counted
//! server-side in `pg_stat_activity` by the router's `application_name`),
//! and queries fail with a typed error.
#![cfg(feature = "integration")]

use std::time::{Duration, Instant};

use sqlx::PgPool;
use sysmanage_db::Error;
use sysmanage_db::replica::{Consistency, PgNodeOptions, QueryFailure, ReplicaRouter, pg_node};
use sysmanage_test::{pg_primary_url, pg_standby_urls, run_id};

fn with_app_name(url: &str, name: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={name}")
}

/// Connections named `name` on the server at `url`.
async fn connections(url: &str, name: &str) -> i64 {
    let pool = PgPool::connect(url).await.unwrap();
    let n = sqlx::query_scalar("select count(*) from pg_stat_activity where application_name = $1")
        .bind(name)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_no_connection_open() {
    let name = format!("shutdown-{}", run_id().replace('-', "_"));
    let mut opts = PgNodeOptions::default();
    opts.min_connections = 2;
    let standbys = pg_standby_urls();
    let servers = [pg_primary_url(), standbys[0].clone(), standbys[1].clone()];
    let router = ReplicaRouter::builder()
        .primary(pg_node("primary", with_app_name(&servers[0], &name), &opts).unwrap())
        .replica(pg_node("standby1", with_app_name(&servers[1], &name), &opts).unwrap())
        .replica(pg_node("standby2", with_app_name(&servers[2], &name), &opts).unwrap())
        .build()
        .await
        .unwrap();
    for _ in 0..20 {
        let n: i32 = router
            .read(Consistency::Any, |pool| async move {
                sqlx::query_scalar("select 1").fetch_one(&pool).await
            })
            .await
            .unwrap();
        assert_eq!(n, 1);
        router
            .write(|pool| async move { sqlx::query("select 1").execute(&pool).await })
            .await
            .unwrap();
    }
    let mut open = 0;
    for url in &servers {
        open += connections(url, &name).await;
    }
    assert!(open >= 2, "the router holds connections ({open})");
    // A query in flight when shutdown begins is let finish.
    let slow = {
        let router = router.clone();
        tokio::spawn(async move {
            router
                .write(
                    |pool| async move { sqlx::query("select pg_sleep(0.3)").execute(&pool).await },
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    router.shutdown(Duration::from_secs(5)).await.unwrap();
    assert!(slow.await.unwrap().is_ok(), "the query in flight finished");
    // Backends end asynchronously after the client closes: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut left = 0;
        for url in &servers {
            left += connections(url, &name).await;
        }
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} connections left after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = router
        .read(Consistency::Any, |pool| async move {
            sqlx::query_scalar::<_, i32>("select 1")
                .fetch_one(&pool)
                .await
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueryFailure::Router(Error::ShutDown)),
        "{err:?}"
    );
}
