//! A client of the Prometheus HTTP API: instant queries and range queries,
//! with typed results, a timeout, bearer or basic authentication and TLS.
//!
//! Both the autoscaler (`sysmanage-scaling`'s `PrometheusSource`) and the
//! capacity planner's history import (`sysmanage-capacity`) read Prometheus
//! through this one client, so they share its settings, errors and parsing.
//!
//! * [`PrometheusClient::query`] is `GET /api/v1/query` and
//!   [`PrometheusClient::query_range`] is `GET /api/v1/query_range`.
//! * Results are [`QueryResult`]s: vectors, matrices, scalars and strings,
//!   with labels and [`Sample`](crate::Sample)s. Values keep what Prometheus
//!   sent: `"NaN"`, `"+Inf"` and `"-Inf"` become the matching `f64`, so a
//!   caller decides what a NaN means (the scaler refuses it by default, the
//!   importer leaves it out as a gap). Staleness markers never reach the
//!   API: a series that went stale is simply absent from later instant
//!   queries and has no points at later steps of a range query.
//! * The response's `warnings` (and `infos`, Prometheus 3) are kept in
//!   [`QueryResponse`].
//! * Every error is a [`PrometheusError`] naming the query (shortened to
//!   [`MAX_QUERY_IN_ERROR`] characters); credentials are [`Secret`](crate::Secret)s
//!   and never printed.
//!
//! The pure parts ([`parse_response`], [`format_value`]) need no server.
//!
//! # Why reqwest 0.12
//!
//! `reqwest` is the HTTP client of the field; its 0.12 line lets the client
//! be built with a rustls configuration made here with the ring provider
//! (`use_preconfigured_tls`), the provider the PostgreSQL and Redis
//! backends already link: no C build (aws-lc-rs) and no process-wide
//! provider installation. Default features are off (no native-tls, no HTTP/2,
//! no system proxy discovery).
//!
//! # Examples
//! ```no_run
//! use sysmanage_core::prometheus::{PrometheusClient, PrometheusConfig};
//! # #[allow(dead_code)]
//! # async fn run() -> Result<(), sysmanage_core::prometheus::PrometheusError> {
//! let client = PrometheusClient::new(&PrometheusConfig::new("http://127.0.0.1:9090"))?;
//! let response = client.query("sum(rate(http_requests_total[1m]))", None).await?;
//! for sample in response.result.vector()? {
//!     println!("{:?} = {}", sample.labels, sample.sample.value);
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod config;
mod error;
mod response;
mod tls;

pub use client::{MAX_POINTS_PER_SERIES, PrometheusClient, RangeQuery};
pub use config::{PrometheusAuth, PrometheusConfig};
pub use error::{MAX_QUERY_IN_ERROR, PrometheusError};
pub use response::{
    Labels, QueryResponse, QueryResult, RangeSeries, VectorSample, format_value, parse_response,
};
