//! Shared building blocks for the sysmanage-rs crates.
//!
//! `sysmanage-core` holds what every sysmanage crate and host needs and
//! nothing heavy: no database or cache client; of `tokio` only the timer and
//! task spawning, so health checks run concurrently under their timeouts.
//!
//! | module | what |
//! |---|---|
//! | [`health`] | [`HealthCheck`], [`HealthRegistry`] and the liveness / readiness / detailed reports |
//! | [`backoff`] | [`Backoff`]: exponential backoff with jitter, as a pure function |
//! | [`breaker`] | [`CircuitBreaker`]: a pure state machine over an explicit `now` |
//! | [`secret`] | [`Secret`] and [`ConnectionUrl`], which never print a password |
//! | [`series`] | [`Timestamp`] and [`SampleBuffer`], a bounded time series with window queries |
//! | [`tls`] | [`TlsConfig`]: TLS settings (mode, CA, client certificate, server name) both backends take |
//! | [`forecast`] | [`LoadForecast`], implemented by capacity planners and consumed by autoscalers |
//! | [`clock`] | [`Clock`], [`SystemClock`] and [`ManualClock`] for deterministic tests |
//! | [`lease`] | leader election: [`Elector`](lease::Elector) over a [`LeaseBackend`](lease::LeaseBackend), [`FencingToken`](lease::FencingToken)s, the [`FenceGuard`](lease::FenceGuard) actuators check, a fenced [`StateStore`](lease::StateStore) |
//! | [`telemetry`] | [`MetricDef`](telemetry::MetricDef): the metrics each crate exports through the [`metrics`] facade, and [`describe`](telemetry::describe) |
//! | `http` | the health registry over HTTP with axum: `/live`, `/ready`, `/health`, `/health/detailed` (feature `http`) |
//! | `prometheus` | (feature `prometheus`) a Prometheus HTTP API client: instant and range queries, typed results, auth, TLS |
//! | [`duration`] | human-readable durations (`"250ms"`, `"1h30m"`) for config files, and the range checks every setting goes through |
//!
//! # Example
//!
//! A readiness endpoint backed by two checks, a breaker guarding a flaky
//! dependency, and a connection URL that is safe to log:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sysmanage_core::{
//!     BreakerConfig, CheckResult, CircuitBreaker, ConnectionUrl, Criticality, FnCheck,
//!     HealthRegistry,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sysmanage_core::Error> {
//! let url = ConnectionUrl::new("postgres://app:s3cret@127.0.0.1:5432/app");
//! assert_eq!(url.to_string(), "postgres://app:***@127.0.0.1:5432/app");
//!
//! let registry = HealthRegistry::builder()
//!     .default_timeout(Duration::from_millis(500))
//!     .check(FnCheck::new("database", Criticality::Critical, || async {
//!         CheckResult::healthy().with_detail("pool_idle", 4)
//!     }))
//!     .check(FnCheck::new("cache", Criticality::NonCritical, || async {
//!         CheckResult::degraded("one node failing over")
//!     }))
//!     .build()?;
//! let readiness = registry.readiness().await;
//! assert_eq!(readiness.http_status(), 200);
//!
//! let mut breaker = CircuitBreaker::new(BreakerConfig::default())?;
//! let now = Instant::now();
//! breaker.try_acquire(now)?;
//! breaker.record_success(now);
//! # Ok(())
//! # }
//! ```
//!
//! # Validation
//!
//! Every setting is checked when its type is built, against a documented
//! range, with [`Error::InvalidConfig`] naming the field and the range:
//! backoff `max` and breaker windows at most one day, health-check timeouts
//! 1 ms – 1 day, multipliers 1–1,000, NaN and infinities refused everywhere
//! ([`duration`] holds the checks). What is clamped rather than refused:
//! a backoff's random `unit` outside `[0, 1)`, deadlines past what the
//! platform's `Instant` can hold ([`duration::deadline`]), and timestamp
//! arithmetic, which saturates.
//!
//! # Tracing
//!
//! Every target starts with `sysmanage_core`, so
//! `RUST_LOG=sysmanage_core=debug` shows them all. The library never
//! installs a subscriber.
//!
//! | target | level | event |
//! |---|---|---|
//! | `sysmanage_core::health` | debug | a health check finished (`check`, `status`, `duration_ms`) |
//! | `sysmanage_core::breaker` | debug | a circuit opened or went half-open |
//! | `sysmanage_core::lease` | info | `elected` (`instance`, `backend`, `token`), `stepped_down` (`instance`, `token`, `reason`) |
//! | `sysmanage_core::lease` | debug | `acquire_failed`, `renew_failed`, `release_failed` (`instance`, `error`) |
//!
//! # Feature flags
//!
//! - `http`: the `http` module, serving a [`HealthRegistry`] over HTTP with
//!   axum.
//! - `prometheus`: the `prometheus` module, a client of the Prometheus HTTP
//!   API (reqwest with rustls on the ring provider).
//! - `rustls`: `TlsConfig::rustls_client_config`, the rustls client
//!   configuration a [`TlsConfig`] describes (ring provider), which the Redis
//!   cache's `redis-tls` and the Prometheus client share.
//!
//! Everything else is always available.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod backoff;
pub mod breaker;
pub mod clock;
pub mod duration;
pub mod error;
pub mod forecast;
pub mod health;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod lease;
#[cfg(feature = "prometheus")]
pub mod prometheus;
pub mod secret;
pub mod series;
pub mod telemetry;
pub mod tls;

pub use backoff::{Backoff, BackoffBuilder, BackoffIter, Jitter, SplitMix64};
pub use breaker::{BreakerConfig, BreakerStatus, CircuitBreaker, CircuitState, FailureRatio};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{BoxError, Error, Result, ensure_finite, ensure_nonzero, positive_secs};
pub use forecast::{Forecast, LoadForecast};
pub use health::{
    CheckReport, CheckResult, Criticality, DetailedReport, FnCheck, HealthCheck, HealthRegistry,
    HealthRegistryBuilder, HealthStatus, LivenessReport, ReadinessReport,
};
pub use secret::{ConnectionUrl, Secret};
pub use series::{Sample, SampleBuffer, Timestamp, WindowStats};
pub use tls::{Pem, TlsConfig, TlsMode};
