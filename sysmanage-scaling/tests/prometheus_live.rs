//! The Prometheus client and `PrometheusSource` against the local
//! Prometheus (`scripts/services up`): series a test exporter serves are
//! scraped, queried and scaled on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sysmanage_core::prometheus::{
    PrometheusAuth, PrometheusClient, PrometheusConfig, PrometheusError, RangeQuery,
};
use sysmanage_core::{Secret, SystemClock, Timestamp};
use sysmanage_scaling::prometheus::{
    OnEmpty, PrometheusMetric, PrometheusSource, PrometheusSourceConfig,
};
use sysmanage_scaling::{Controller, Hpa, HpaSpec, InMemoryTarget, MetricValue, MetricsSource};
use sysmanage_test::prometheus::{TestExporter, prometheus_url};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client() -> PrometheusClient {
    PrometheusClient::new(&PrometheusConfig::new(prometheus_url()).timeout(Duration::from_secs(5)))
        .expect("client")
}

/// A name no earlier run used (series stay in the server's data).
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        Timestamp::now().as_millis() % 1_000_000
    )
}

/// Waits until `query` returns `n` series (scrape + discovery take a few seconds).
async fn wait_for_series(client: &PrometheusClient, query: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.query(query, None).await
            && r.vector().map(|v| v.len()).unwrap_or(0) == n
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{query} did not return {n} series within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_and_range_queries_against_the_real_server() {
    let c = client();
    let up = c.query("up{job=\"prometheus\"}", None).await.unwrap();
    let v = up.vector().unwrap();
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].sample.value, 1.0);
    assert_eq!(v[0].labels["job"], "prometheus");

    // special values travel as Prometheus spells them
    let nan = c.query("0/0", None).await.unwrap();
    assert!(nan.vector().unwrap()[0].sample.value.is_nan());
    let inf = c.query("vector(1)/0", None).await.unwrap();
    assert_eq!(inf.vector().unwrap()[0].sample.value, f64::INFINITY);

    // a range of the server's own series, one point per second at most
    let end = Timestamp::now();
    let r = c
        .query_range(
            "up{job=\"prometheus\"}",
            RangeQuery::new(end - Duration::from_secs(20), end, Duration::from_secs(2)),
        )
        .await
        .unwrap();
    let m = r.matrix().unwrap();
    assert_eq!(m.len(), 1);
    assert!(!m[0].samples.is_empty() && m[0].samples.len() <= 11);
    assert!(m[0].samples.windows(2).all(|w| w[0].at < w[1].at));

    // a bad query is the server's bad_data, naming the query
    let e = c.query("sum(", None).await.unwrap_err();
    match &e {
        PrometheusError::Api {
            status,
            error_type,
            query,
            ..
        } => {
            assert_eq!(
                (*status, error_type.as_str(), query.as_str()),
                (400, "bad_data", "sum(")
            );
        }
        other => panic!("{other:?}"),
    }
    // too many points is refused before asking
    let e = c
        .query_range(
            "up",
            RangeQuery::new(
                end - Duration::from_secs(86_400),
                end,
                Duration::from_secs(1),
            ),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("11000"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_unreachable_servers_and_credentials() {
    // a server that accepts and never answers: the timeout names the query
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let slow = PrometheusClient::new(
        &PrometheusConfig::new(format!("http://{addr}")).timeout(Duration::from_millis(300)),
    )
    .unwrap();
    let e = slow.query("up", None).await.unwrap_err();
    assert!(
        matches!(e, PrometheusError::Timeout { ref query, .. } if query == "up"),
        "{e:?}"
    );
    assert!(e.is_transient());
    hold.abort();

    // nothing listening: a transport error naming the query and the server
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = free.local_addr().unwrap();
    drop(free);
    let e = PrometheusClient::new(&PrometheusConfig::new(format!("http://{gone}")))
        .unwrap()
        .query("up", None)
        .await
        .unwrap_err();
    assert!(matches!(e, PrometheusError::Transport { .. }), "{e:?}");
    assert!(e.to_string().contains(&gone.to_string()), "{e}");

    // bearer and basic credentials reach the server as headers, never in messages
    for (auth, expected) in [
        (
            PrometheusAuth::Bearer {
                token: Secret::new("tok-123"),
            },
            "authorization: Bearer tok-123",
        ),
        (
            PrometheusAuth::Basic {
                username: "u".into(),
                password: Secret::new("pw-456"),
            },
            // base64("u:pw-456")
            "authorization: Basic dTpwdy00NTY=",
        ),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0_u8; 8192];
            let n = s.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
            let body = r#"{"status":"error","errorType":"unauthorized","error":"no"}"#;
            let reply = format!(
                "HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(reply.as_bytes()).await.unwrap();
            head
        });
        let cfg = PrometheusConfig::new(format!("http://{addr}")).auth(auth);
        let c = PrometheusClient::new(&cfg).unwrap();
        let e = c.query("up", None).await.unwrap_err();
        assert!(
            matches!(e, PrometheusError::Unauthorized { status: 401, .. }),
            "{e:?}"
        );
        let head = server.await.unwrap();
        assert!(head.contains(&expected.to_ascii_lowercase()), "{head}");
        for shown in [
            format!("{e}"),
            format!("{e:?}"),
            format!("{c:?}"),
            format!("{cfg:?}"),
        ] {
            assert!(
                !shown.contains("tok-123") && !shown.contains("pw-456"),
                "{shown}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_scales_on_series_scraped_by_prometheus() {
    let queue = unique("sysmanage_test_queue_depth");
    let rps = unique("sysmanage_test_requests_per_second");
    let exporter = TestExporter::start(&unique("scaling")).await;
    exporter.set(format!(
        "# TYPE {queue} gauge\n{queue} 120\n# TYPE {rps} gauge\n{rps}{{pod=\"a\"}} 40\n{rps}{{pod=\"b\"}} 80\n"
    ));
    let c = client();
    wait_for_series(&c, &rps, 2).await;
    wait_for_series(&c, &queue, 1).await;

    let cfg = PrometheusSourceConfig::new(
        PrometheusConfig::new(prometheus_url()),
        vec![
            // 120 / 30 per replica = 4
            PrometheusMetric::new("queue", format!("sum({queue})"), 30.0).activation_threshold(5.0),
            // (40 + 80) / 20 per pod, over the 2 current pods: ceil(2 × 60/20) = 6
            PrometheusMetric::new("rps", rps.clone(), 20.0).per_pod(),
            // a series nobody exports, empty read as zero: proposes the minimum
            PrometheusMetric::new("idle", format!("sum({queue}_absent)"), 1.0)
                .on_empty(OnEmpty::Zero),
        ],
    );
    let spec = HpaSpec::new(1, 10, cfg.hpa_metrics());
    cfg.check_spec(&spec).unwrap();
    let source = Arc::new(PrometheusSource::new(cfg.clone()).unwrap());

    let obs = source.observe().await.unwrap();
    assert_eq!(obs.get("queue"), Some(&MetricValue::Total(120.0)));
    assert!(matches!(obs.get("rps"), Some(MetricValue::PerPod(p)) if p.len() == 2));
    assert_eq!(obs.get("idle"), Some(&MetricValue::Total(0.0)));

    let target = Arc::new(InMemoryTarget::new(2));
    let mut ctl = Controller::new(
        Hpa::new(spec).unwrap(),
        source.clone(),
        target.clone(),
        Arc::new(SystemClock),
        Duration::from_secs(1),
    )
    .unwrap();
    let d = ctl.tick().await.unwrap();
    assert_eq!(d.combined, Some(6), "{d:?}");
    assert_eq!(target.current(), 4, "{d:?}"); // the default scale-up limit: max(+4, +100 %) of 2

    // the default is strict: a missing series is unavailable, naming the query
    let mut strict = cfg.clone();
    strict.metrics[2].on_empty = OnEmpty::Error;
    let obs = PrometheusSource::new(strict)
        .unwrap()
        .observe()
        .await
        .unwrap();
    assert!(
        matches!(obs.get("idle"), Some(MetricValue::Unavailable(w)) if w.contains("_absent") && w.contains("no series"))
    );

    // a server that is down leaves every metric unavailable, never a panic
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = free.local_addr().unwrap();
    drop(free);
    let mut down = cfg;
    down.server = PrometheusConfig::new(format!("http://{gone}"));
    let obs = PrometheusSource::new(down)
        .unwrap()
        .observe()
        .await
        .unwrap();
    assert!(
        obs.readings
            .iter()
            .all(|r| matches!(r.value, MetricValue::Unavailable(_)))
    );
    drop(exporter);
}
