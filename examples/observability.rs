//! Observability end to end against the local servers
//! (`scripts/services up && eval "$(scripts/services env)"`):
//!
//! 1. installs `metrics-exporter-prometheus`'s recorder before building
//!    anything, so the replica router, the Redis cache and the controller
//!    register their series with it;
//! 2. serves `/metrics` and the health registry (`/live`, `/ready`,
//!    `/health`, `/health/detailed`) on one loopback port, and registers
//!    that port as a scrape target of the topology's Prometheus;
//! 3. runs reads and writes through a `ReplicaRouter` over the PostgreSQL
//!    primary and standbys and a `RedisCache` over the cluster;
//! 4. runs the autoscaler's `Controller` on a `PrometheusSource` whose query
//!    is the cache's own operation rate as Prometheus scraped it — the
//!    library scaling on the metrics it exported;
//! 5. checks that Prometheus holds the exported series and that `/ready`
//!    answers 200.
//!
//! ```text
//! cargo run -p sysmanage-examples --features observability --example observability
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusBuilder;
use sysmanage_cache::{ClusterCache, ClusterCheck, RedisCache, SetOptions};
use sysmanage_core::prometheus::{PrometheusClient, PrometheusConfig, QueryResult};
use sysmanage_core::{HealthRegistry, SystemClock};
use sysmanage_db::replica::{Consistency, ReplicaRouter, RouterCheck, pg_node};
use sysmanage_examples::{init_tracing, section, secure};
use sysmanage_scaling::prometheus::{
    OnEmpty, PrometheusMetric, PrometheusSource, PrometheusSourceConfig,
};
use sysmanage_scaling::{Controller, ControllerCheck, Hpa, HpaSpec, InMemoryTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The label Prometheus adds to every series scraped from this process.
const JOB: &str = "observability";

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| {
        format!("{name} is not set: run `scripts/services up && eval \"$(scripts/services env)\"`")
    })
}

/// One HTTP/1.1 GET on loopback: the status code and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).await?;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_owned()))
}

/// The `sysmanage_` series in an exposition: one per sample line.
fn exported_series(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("sysmanage_"))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();

    section("metrics recorder");
    let recorder = PrometheusBuilder::new().build_recorder();
    let exposition = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    sysmanage_db::telemetry::describe();
    sysmanage_cache::telemetry::describe();
    sysmanage_scaling::telemetry::describe();
    sysmanage_capacity::telemetry::describe();
    println!("installed before any router, cache or controller is built");

    section("backends");
    let pg = secure::pg_target(false)?;
    let mut router =
        ReplicaRouter::builder().primary(pg_node("primary", pg.primary.as_str(), &pg.options)?);
    for (i, url) in pg.standbys.iter().enumerate() {
        router = router.replica(pg_node(
            format!("standby{}", i + 1),
            url.as_str(),
            &pg.options,
        )?);
    }
    let router = router.build().await?;
    router.probe_all().await;
    let cache = RedisCache::connect(secure::redis_config(false)?).await?;
    println!(
        "postgres primary + {} standbys, redis cluster with {} primaries",
        pg.standbys.len(),
        cache.routing().primaries().len()
    );

    section("controller on Prometheus");
    let prometheus_url = env("SYSMANAGE_PROMETHEUS_URL")?;
    let server = PrometheusConfig::new(prometheus_url.clone()).timeout(Duration::from_secs(2));
    // The cache's operation rate as Prometheus scraped it: 150 ops/s per
    // replica. No data yet (before the first scrapes) reads as no load.
    let query = format!("sum(rate(sysmanage_cache_operations_total{{job=\"{JOB}\"}}[5s]))");
    let source_cfg = PrometheusSourceConfig::new(
        server.clone(),
        vec![PrometheusMetric::new("cache_ops", query.clone(), 150.0).on_empty(OnEmpty::Zero)],
    );
    let spec = HpaSpec::new(1, 10, source_cfg.hpa_metrics());
    source_cfg.check_spec(&spec)?;
    let source = Arc::new(PrometheusSource::new(source_cfg)?);
    let target = Arc::new(InMemoryTarget::new(1));
    let controller = Controller::new(
        Hpa::new(spec)?,
        source,
        target.clone(),
        Arc::new(SystemClock),
        Duration::from_secs(2),
    )?;
    let (ctl, run) = controller.start();
    let ctl_task = tokio::spawn(run);
    println!("query: {query}");

    section("metrics and health over HTTP");
    let registry = HealthRegistry::builder()
        .default_timeout(Duration::from_secs(3))
        .check(RouterCheck::new("postgres", router.clone()))
        .check(ClusterCheck::new("redis", cache.clone()))
        .check(ControllerCheck::new("autoscaler", ctl.clone()))
        .build()?;
    let app = sysmanage_core::http::router(registry).route(
        "/metrics",
        axum::routing::get(move || {
            let exposition = exposition.clone();
            async move { exposition.render() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = http_stopped.await;
            })
            .await
    });
    // File service discovery: Prometheus picks the file up within seconds.
    let targets = std::path::PathBuf::from(env("SYSMANAGE_PROMETHEUS_TARGETS_DIR")?);
    let target_file = targets.join(format!("{JOB}.json"));
    let tmp = targets.join(format!(".{JOB}.json.tmp"));
    std::fs::write(
        &tmp,
        format!(r#"[{{"targets": ["{addr}"], "labels": {{"job": "{JOB}"}}}}]"#),
    )?;
    std::fs::rename(&tmp, &target_file)?;
    println!("http://{addr}/metrics and /ready, scraped by {prometheus_url}");

    section("workload");
    let errors = Arc::new(AtomicU64::new(0));
    let ops = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let run_for = Duration::from_secs(20);
    let mut workers = Vec::new();
    for w in 0..4 {
        let (cache, router, errors, ops) =
            (cache.clone(), router.clone(), errors.clone(), ops.clone());
        workers.push(tokio::spawn(async move {
            let ttl = SetOptions::ttl(Duration::from_secs(300));
            let mut i = 0_u64;
            while started.elapsed() < run_for {
                let key = format!("observability:{w}:{}", i % 500);
                let ok = cache.set(key.as_bytes(), b"value", ttl).await.is_ok()
                    && cache.get(key.as_bytes()).await.is_ok();
                let read = router
                    .read(Consistency::Any, |pool| async move {
                        sqlx::query_scalar::<_, i32>("SELECT 1")
                            .fetch_one(&pool)
                            .await
                    })
                    .await;
                if !ok || read.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                ops.fetch_add(3, Ordering::Relaxed);
                i += 1;
                // ~250 cache ops/s per worker at most: enough load to scale.
                tokio::time::sleep(Duration::from_millis(8)).await;
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let replicas = target.current();
    println!(
        "{} operations in {:.1} s; the controller scaled the target to {replicas}",
        ops.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );

    section("what Prometheus holds");
    // Two more scrapes of the final values.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let exported = exported_series(&http_get(addr, "/metrics").await?.1);
    let client = PrometheusClient::new(&server)?;
    let found = match client
        .query(
            &format!("{{__name__=~\"sysmanage_.+\",job=\"{JOB}\"}}"),
            None,
        )
        .await?
        .result
    {
        QueryResult::Vector(v) => v.len(),
        _ => 0,
    };
    println!(
        "exported {} series, {found} of them in Prometheus",
        exported.len()
    );
    let ready = http_get(addr, "/ready").await?.0 == 200;
    let status = ctl.status(Duration::from_secs(3600))?;
    let decisions = status.stats.total;
    println!("/ready → {}", if ready { 200 } else { 503 });

    // Clean shutdown: the scrape target, the controller, the HTTP server,
    // the cache and the router.
    let _ = std::fs::remove_file(&target_file);
    ctl.shutdown(Duration::from_secs(5)).await?;
    ctl_task.await?;
    let _ = stop_http.send(());
    http.await??;
    cache.shutdown(Duration::from_secs(5)).await?;
    router.shutdown(Duration::from_secs(5)).await?;

    println!(
        "summary: exported_series={} prometheus_series_found={found} decisions={decisions} errors={} health_ready={ready}",
        exported.len(),
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}
