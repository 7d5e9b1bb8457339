//! The health registry over real HTTP: every route, its status codes and
//! JSON bodies, with critical and non-critical checks failing.
#![cfg(feature = "http")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use sysmanage_core::{CheckResult, Criticality, FnCheck, HealthRegistry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 GET: the status code and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).await.unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (code, head.to_ascii_lowercase(), body.to_owned())
}

/// 0 healthy, 1 degraded, 2 unhealthy.
fn result(state: &AtomicU8, what: &str) -> CheckResult {
    match state.load(Ordering::SeqCst) {
        0 => CheckResult::healthy(),
        1 => CheckResult::degraded(format!("{what} slow")),
        _ => CheckResult::unhealthy(format!("{what} down")),
    }
}

#[tokio::test]
async fn routes_status_codes_and_bodies_follow_the_checks() {
    let db = Arc::new(AtomicU8::new(0));
    let cache = Arc::new(AtomicU8::new(0));
    let (d, c) = (db.clone(), cache.clone());
    let registry = HealthRegistry::builder()
        .default_timeout(Duration::from_secs(1))
        .check(FnCheck::new("db", Criticality::Critical, move || {
            let d = d.clone();
            async move { result(&d, "db") }
        }))
        .check(FnCheck::new("cache", Criticality::NonCritical, move || {
            let c = c.clone();
            async move { result(&c, "cache") }
        }))
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sysmanage_core::http::serve(listener, registry, async {
        let _ = stopped.await;
    }));

    // All healthy.
    for path in ["/live", "/ready", "/health", "/health/detailed"] {
        let (code, head, body) = get(addr, path).await;
        assert_eq!(code, 200, "{path}: {body}");
        assert!(head.contains("content-type: application/json"), "{path}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v.is_object(), "{path}");
    }
    let (_, _, body) = get(addr, "/health/detailed").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["checks"].as_array().unwrap().len(), 2);

    // A non-critical check fails: still ready, overall unhealthy.
    cache.store(2, Ordering::SeqCst);
    let (code, _, body) = get(addr, "/ready").await;
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = get(addr, "/health").await;
    assert_eq!(code, 503);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "unhealthy");
    let (code, _, body) = get(addr, "/health/detailed").await;
    assert_eq!(code, 503);
    assert!(body.contains("cache down"), "{body}");

    // A degraded critical check keeps the service ready.
    cache.store(0, Ordering::SeqCst);
    db.store(1, Ordering::SeqCst);
    let (code, _, body) = get(addr, "/ready").await;
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = get(addr, "/health").await;
    assert_eq!(code, 200);
    assert!(body.contains("\"degraded\""), "{body}");

    // A failing critical check: not ready; liveness runs no check.
    db.store(2, Ordering::SeqCst);
    let (code, _, body) = get(addr, "/ready").await;
    assert_eq!(code, 503);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false);
    assert_eq!(v["failing"][0], "db");
    let (code, _, _) = get(addr, "/live").await;
    assert_eq!(code, 200);

    // Unknown routes.
    let (code, _, _) = get(addr, "/nope").await;
    assert_eq!(code, 404);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_hanging_check_times_out_instead_of_hanging_the_probe() {
    let registry = HealthRegistry::builder()
        .check_with_timeout(
            FnCheck::new("stuck", Criticality::Critical, || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                CheckResult::healthy()
            }),
            Duration::from_millis(100),
        )
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(sysmanage_core::http::serve(
        listener,
        registry,
        std::future::pending(),
    ));
    let (code, _, body) = tokio::time::timeout(Duration::from_secs(10), get(addr, "/ready"))
        .await
        .expect("the probe answers");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("stuck"), "{body}");
    server.abort();
}
