//! A [`HealthRegistry`] over HTTP, with [axum](https://docs.rs/axum)
//! (feature `http`).
//!
//! | route | answers | status code |
//! |---|---|---|
//! | `GET /live` | [`LivenessReport`](crate::LivenessReport) (no check runs) | 200 |
//! | `GET /ready` | [`ReadinessReport`](crate::ReadinessReport): the critical checks | 200 when every critical check is healthy or degraded, else 503 |
//! | `GET /health` | `{"status", "checked_at", "duration_ms"}`: every check, summarised | 200 for healthy or degraded, 503 for unhealthy |
//! | `GET /health/detailed` | [`DetailedReport`](crate::DetailedReport): every check with its status, reason, details and duration | as `/health` |
//!
//! Bodies are JSON (`application/json`). Each request runs the checks anew,
//! concurrently, under the registry's timeouts (a check outlasting its
//! timeout is aborted; a probe that hangs up earlier does not abort them, so
//! keep check timeouts at or below the probe's). Mount [`router`] into an application of your own (under a
//! prefix with `Router::nest`), or let [`serve`] run a small server until a
//! shutdown signal.
//!
//! ```
//! use std::time::Duration;
//! use sysmanage_core::{CheckResult, Criticality, FnCheck, HealthRegistry};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = HealthRegistry::builder()
//!     .check(FnCheck::new("db", Criticality::Critical, || async { CheckResult::healthy() }))
//!     .build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(sysmanage_core::http::serve(listener, registry, async {
//!     let _ = stopped.await;
//! }));
//! // GET /ready with a plain HTTP/1.1 request
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! let mut conn = tokio::net::TcpStream::connect(addr).await?;
//! conn.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
//! let mut reply = String::new();
//! conn.read_to_string(&mut reply).await?;
//! assert!(reply.starts_with("HTTP/1.1 200"));
//! assert!(reply.contains("\"ready\":true"));
//! let _ = stop.send(());
//! server.await??;
//! # let _ = Duration::ZERO;
//! # Ok(())
//! # }
//! ```

use std::future::Future;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::health::{HealthRegistry, HealthStatus};
use crate::series::Timestamp;

/// The `/health` body: the overall status of every check.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct HealthSummary {
    /// The worst status of any check.
    pub status: HealthStatus,
    /// When the checks ran.
    pub checked_at: Timestamp,
    /// Wall time of the run, in milliseconds.
    pub duration_ms: f64,
}

/// The routes above, over `registry`.
pub fn router(registry: HealthRegistry) -> Router {
    Router::new()
        .route("/live", get(live))
        .route("/ready", get(ready))
        .route("/health", get(health))
        .route("/health/detailed", get(detailed))
        .with_state(registry)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then
/// finishes the requests in flight (graceful shutdown).
///
/// # Errors
/// The listener's I/O error.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: HealthRegistry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(registry))
        .with_graceful_shutdown(shutdown)
        .await
}

fn json<T: serde::Serialize>(code: u16, body: &T) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(body)).into_response()
}

async fn live(State(r): State<HealthRegistry>) -> Response {
    let report = r.liveness();
    json(report.http_status(), &report)
}

async fn ready(State(r): State<HealthRegistry>) -> Response {
    let report = r.readiness().await;
    json(report.http_status(), &report)
}

async fn health(State(r): State<HealthRegistry>) -> Response {
    let report = r.detailed().await;
    let summary = HealthSummary {
        status: report.status,
        checked_at: report.checked_at,
        duration_ms: report.duration_ms,
    };
    json(report.http_status(), &summary)
}

async fn detailed(State(r): State<HealthRegistry>) -> Response {
    let report = r.detailed().await;
    json(report.http_status(), &report)
}
