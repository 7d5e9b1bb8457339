//! The HTTP driver: builds requests, sends them under the timeout, hands
//! the body to [`parse_response`](super::parse_response).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::config::{PrometheusAuth, PrometheusConfig};
use super::error::{PrometheusError, short};
use super::response::{QueryResponse, parse_response};
use crate::Timestamp;

/// The most points Prometheus returns for one series of a range query
/// (`(end − start) / step + 1`); longer ranges must be split.
pub const MAX_POINTS_PER_SERIES: u64 = 11_000;

/// The span and resolution of a range query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RangeQuery {
    /// First evaluation time.
    pub start: Timestamp,
    /// Last evaluation time (inclusive when on the step grid).
    pub end: Timestamp,
    /// Time between evaluations.
    pub step: Duration,
}

impl RangeQuery {
    /// A range query from `start` to `end` every `step`.
    pub const fn new(start: Timestamp, end: Timestamp, step: Duration) -> Self {
        Self { start, end, step }
    }

    /// How many points each series has at most: `⌊(end − start) / step⌋ + 1`
    /// (0 for a zero step or an end before the start).
    pub fn points(&self) -> u64 {
        let step = self.step.as_millis();
        let span = self.end.as_millis() - self.start.as_millis();
        if step == 0 || span < 0 {
            return 0;
        }
        u64::try_from(span as u128 / step + 1).unwrap_or(u64::MAX)
    }

    /// Checks what Prometheus would refuse.
    ///
    /// # Errors
    /// [`PrometheusError::InvalidConfig`]: a step under 1 ms, an end before
    /// the start, more than [`MAX_POINTS_PER_SERIES`] points.
    pub fn validate(&self) -> Result<(), PrometheusError> {
        if self.step < Duration::from_millis(1) {
            return Err(PrometheusError::invalid(
                "range.step",
                format!("must be at least 1ms, got {:?}", self.step),
            ));
        }
        if self.end < self.start {
            return Err(PrometheusError::invalid(
                "range.end",
                format!("{} is before the start {}", self.end, self.start),
            ));
        }
        let points = self.points();
        if points > MAX_POINTS_PER_SERIES {
            return Err(PrometheusError::invalid(
                "range.step",
                format!(
                    "{points} points per series, more than Prometheus' {MAX_POINTS_PER_SERIES}: use a longer step or split the range"
                ),
            ));
        }
        Ok(())
    }
}

/// A Prometheus HTTP API client. Cheap to clone (one connection pool).
///
/// Plain `http://` and TLS (`https://`, per [`PrometheusConfig::tls`]) with
/// the ring provider; no HTTP proxy; redirects are not followed.
#[derive(Clone)]
pub struct PrometheusClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// The base URL with a trailing `/` (API paths are joined to it).
    base: reqwest::Url,
    /// The base URL as configured, for messages.
    shown: String,
    auth: PrometheusAuth,
    timeout: Duration,
}

impl fmt::Debug for PrometheusClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.inner.auth {
            PrometheusAuth::Bearer { .. } => "bearer",
            PrometheusAuth::Basic { .. } => "basic",
            _ => "none",
        };
        f.debug_struct("PrometheusClient")
            .field("url", &self.inner.shown)
            .field("timeout", &self.inner.timeout)
            .field("auth", &auth)
            .finish_non_exhaustive()
    }
}

/// Seconds with millisecond precision, as Prometheus reads times and durations.
fn secs(ms: i64) -> String {
    Timestamp::from_millis(ms).to_string()
}

impl PrometheusClient {
    /// A client for the server `config` names. Reads the TLS files, and
    /// when [`TlsConfig::server_name`](crate::tls::TlsConfig::server_name)
    /// is set resolves the URL's host once (blocking DNS for a host name)
    /// so that connections go to that address while the certificate is
    /// checked against the server name.
    ///
    /// # Errors
    /// [`PrometheusError::InvalidConfig`] naming the setting (see
    /// [`PrometheusConfig::validate`]; TLS files that cannot be read or do
    /// not fit; a host that does not resolve).
    pub fn new(config: &PrometheusConfig) -> Result<Self, PrometheusError> {
        config.validate()?;
        let mut base = config.parsed_url()?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        let tls = if base.scheme() == "https" {
            let tls = config.tls.clone().unwrap_or_default();
            if let Some(name) = &tls.server_name {
                let addrs = base.socket_addrs(|| Some(443)).map_err(|e| {
                    PrometheusError::invalid(
                        "prometheus.url",
                        format!("cannot resolve {:?}: {e}", base.host_str().unwrap_or("")),
                    )
                })?;
                let addr = *addrs.first().ok_or_else(|| {
                    PrometheusError::invalid("prometheus.url", "the host resolves to no address")
                })?;
                base.set_host(Some(name)).map_err(|e| {
                    PrometheusError::invalid("prometheus.tls.server_name", e.to_string())
                })?;
                builder = builder.resolve(name, addr);
            }
            super::tls::client_config(&tls)?
        } else {
            super::tls::plain_config()?
        };
        let http = builder
            .use_preconfigured_tls(rustls::ClientConfig::clone(&tls))
            .build()
            .map_err(|e| {
                PrometheusError::invalid("prometheus", format!("cannot build the HTTP client: {e}"))
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                shown: config.url.clone(),
                auth: config.auth.clone(),
                timeout: config.timeout,
            }),
        })
    }

    /// The configured timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// An instant query (`/api/v1/query`) evaluated at `at`, or at the
    /// server's current time when `None`.
    ///
    /// # Errors
    /// A [`PrometheusError`] naming the query: timeout, transport, refused
    /// credentials, an API error (bad PromQL is `bad_data`), a malformed
    /// response.
    pub async fn query(
        &self,
        promql: &str,
        at: Option<Timestamp>,
    ) -> Result<QueryResponse, PrometheusError> {
        let mut params = vec![("query", promql.to_owned())];
        if let Some(at) = at {
            params.push(("time", at.to_string()));
        }
        self.get("api/v1/query", params, promql).await
    }

    /// A range query (`/api/v1/query_range`).
    ///
    /// # Errors
    /// As [`query`](Self::query), and [`PrometheusError::InvalidConfig`]
    /// for a range Prometheus would refuse ([`RangeQuery::validate`]).
    pub async fn query_range(
        &self,
        promql: &str,
        range: RangeQuery,
    ) -> Result<QueryResponse, PrometheusError> {
        range.validate()?;
        let params = vec![
            ("query", promql.to_owned()),
            ("start", range.start.to_string()),
            ("end", range.end.to_string()),
            (
                "step",
                secs(i64::try_from(range.step.as_millis()).unwrap_or(i64::MAX)),
            ),
        ];
        self.get("api/v1/query_range", params, promql).await
    }

    async fn get(
        &self,
        path: &str,
        mut params: Vec<(&'static str, String)>,
        promql: &str,
    ) -> Result<QueryResponse, PrometheusError> {
        let inner = &self.inner;
        let mut url = inner
            .base
            .join(path)
            .map_err(|e| PrometheusError::invalid("prometheus.url", e.to_string()))?;
        params.push((
            "timeout",
            secs(i64::try_from(inner.timeout.as_millis()).unwrap_or(i64::MAX)),
        ));
        url.query_pairs_mut().extend_pairs(params);
        let mut request = inner.http.get(url);
        match &inner.auth {
            PrometheusAuth::Bearer { token } => request = request.bearer_auth(token.expose()),
            PrometheusAuth::Basic { username, password } => {
                request = request.basic_auth(username, Some(password.expose()));
            }
            _ => {}
        }
        let fail = |e: reqwest::Error| {
            if e.is_timeout() {
                PrometheusError::Timeout {
                    query: short(promql),
                    after: inner.timeout,
                }
            } else {
                PrometheusError::Transport {
                    query: short(promql),
                    url: inner.shown.clone(),
                    source: Box::new(e.without_url()),
                }
            }
        };
        let response = request.send().await.map_err(fail)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(fail)?;
        parse_response(promql, status, &body)
    }
}
