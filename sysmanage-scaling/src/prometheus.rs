//! [`PrometheusSource`]: the autoscaler's [`MetricsSource`] reading a real
//! Prometheus, modelled on KEDA's Prometheus scaler.
//!
//! One PromQL instant query per metric ([`PrometheusMetric`]), evaluated at
//! every pass of the [`Controller`](crate::Controller):
//!
//! * `threshold` is the per-replica target, as KEDA's (an `AverageValue`
//!   target: [`PrometheusSourceConfig::hpa_metrics`] builds the HPA
//!   metrics from it); `activationThreshold` is KEDA's activation
//!   ([`PrometheusSourceConfig::activation`] builds the scaler's
//!   [`Activation`]);
//! * an `External` metric (the default, as KEDA's) must return exactly one
//!   series, read as a [`MetricValue::Total`]; a `Pods` metric returns one
//!   series per pod, read as [`MetricValue::PerPod`] so Kubernetes' rules
//!   for missing pods apply;
//! * an empty result and a NaN are errors by default (`onEmpty`, `onNan`:
//!   `error` or `zero`, KEDA's `ignoreNullValues`); ±∞ and negative values
//!   are always errors. A metric in error is read as
//!   [`MetricValue::Unavailable`] with the reason naming the query, so the
//!   HPA's rules for unavailable metrics decide (no scale-down on partial
//!   data; KEDA-style fallback when every metric fails);
//! * timeout, bearer/basic auth and TLS are the client's
//!   ([`PrometheusConfig`]); queries that time out are unavailable too.
//!
//! The reading of a response is a pure function ([`read_metric`]).
//!
//! # Examples
//! ```
//! use sysmanage_scaling::prometheus::PrometheusSourceConfig;
//! let cfg: PrometheusSourceConfig = serde_json::from_str(r#"{
//!     "server": {"url": "http://127.0.0.1:9090", "timeout": "2s"},
//!     "metrics": [{
//!         "name": "queue",
//!         "query": "sum(queue_depth{app=\"worker\"})",
//!         "threshold": 30,
//!         "activationThreshold": 5
//!     }]
//! }"#).unwrap();
//! let metrics = cfg.hpa_metrics();
//! assert_eq!(metrics[0].name, "queue");
//! let activation = cfg.activation(std::time::Duration::from_secs(300)).unwrap();
//! assert_eq!(activation.threshold, 5.0);
//! ```

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use sysmanage_core::BoxError;
use sysmanage_core::prometheus::{
    PrometheusClient, PrometheusConfig, PrometheusError, QueryResponse,
};

use crate::control::MetricsSource;
use crate::error::{Result, ScalingError};
use crate::observe::{MetricValue, Observation, PodSample};
use crate::scaler::Activation;
use crate::spec::{HpaSpec, MetricSource, MetricSpec};

/// What an empty result (no series) means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnEmpty {
    /// The metric is unavailable (the default).
    #[default]
    Error,
    /// The value is 0 (KEDA's `ignoreNullValues: true`).
    Zero,
}

/// What a NaN value means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnNan {
    /// The metric is unavailable (the default).
    #[default]
    Error,
    /// The value is 0.
    Zero,
}

fn external() -> MetricSource {
    MetricSource::External
}

/// One metric read with one PromQL query.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct PrometheusMetric {
    /// The metric's name in the HPA spec.
    pub name: String,
    /// The PromQL instant query.
    pub query: String,
    /// `External` (the default: one series, its value is the total) or
    /// `Pods` (one series per pod).
    #[serde(default = "external")]
    pub source: MetricSource,
    /// The target value per replica (KEDA's `threshold`), at least 0.001.
    pub threshold: f64,
    /// Scale from zero when the value is above this (KEDA's
    /// `activationThreshold`). Default: none.
    #[serde(default)]
    pub activation_threshold: Option<f64>,
    /// An empty result. Default: error.
    #[serde(default)]
    pub on_empty: OnEmpty,
    /// A NaN value. Default: error.
    #[serde(default)]
    pub on_nan: OnNan,
}

impl PrometheusMetric {
    /// An `External` metric with the error defaults.
    pub fn new(name: impl Into<String>, query: impl Into<String>, threshold: f64) -> Self {
        Self {
            name: name.into(),
            query: query.into(),
            source: MetricSource::External,
            threshold,
            activation_threshold: None,
            on_empty: OnEmpty::Error,
            on_nan: OnNan::Error,
        }
    }
    /// A `Pods` metric: one series per pod.
    #[must_use]
    pub fn per_pod(mut self) -> Self {
        self.source = MetricSource::Pods;
        self
    }
    /// Sets the activation threshold.
    #[must_use]
    pub fn activation_threshold(mut self, t: f64) -> Self {
        self.activation_threshold = Some(t);
        self
    }
    /// Sets what an empty result means.
    #[must_use]
    pub fn on_empty(mut self, p: OnEmpty) -> Self {
        self.on_empty = p;
        self
    }
    /// Sets what a NaN means.
    #[must_use]
    pub fn on_nan(mut self, p: OnNan) -> Self {
        self.on_nan = p;
        self
    }

    /// The HPA metric: `AverageValue` = `threshold`, per pod for `Pods`.
    pub fn hpa_metric(&self) -> MetricSpec {
        match self.source {
            MetricSource::Pods => MetricSpec::pods_average_value(&self.name, self.threshold),
            _ => MetricSpec::external_average_value(&self.name, self.threshold),
        }
    }
}

/// Settings of a [`PrometheusSource`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct PrometheusSourceConfig {
    /// The server, timeout, credentials and TLS.
    pub server: PrometheusConfig,
    /// One query per metric; at least one, names unique.
    pub metrics: Vec<PrometheusMetric>,
}

impl PrometheusSourceConfig {
    /// Settings for `server` with `metrics`.
    pub fn new(server: PrometheusConfig, metrics: Vec<PrometheusMetric>) -> Self {
        Self { server, metrics }
    }

    /// The HPA metrics these queries feed (see [`PrometheusMetric::hpa_metric`]).
    pub fn hpa_metrics(&self) -> Vec<MetricSpec> {
        self.metrics
            .iter()
            .map(PrometheusMetric::hpa_metric)
            .collect()
    }

    /// The scaler's activation from the first metric with an
    /// `activationThreshold`, with KEDA's `cooldownPeriod` `cooldown`.
    pub fn activation(&self, cooldown: Duration) -> Option<Activation> {
        self.metrics.iter().find_map(|m| {
            m.activation_threshold.map(|threshold| Activation {
                metric: m.name.clone(),
                threshold,
                cooldown,
            })
        })
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`] naming the field: no metric, a
    /// duplicate or empty name, an empty query, a source other than
    /// `External` or `Pods`, a threshold that is not a valid target, a
    /// non-finite activation threshold, or invalid server settings.
    pub fn validate(&self) -> Result<()> {
        self.server.validate().map_err(server_error)?;
        if self.metrics.is_empty() {
            return Err(ScalingError::invalid(
                "prometheus.metrics",
                "must not be empty",
            ));
        }
        for (i, m) in self.metrics.iter().enumerate() {
            if self.metrics[..i].iter().any(|o| o.name == m.name) {
                return Err(ScalingError::DuplicateMetric(m.name.clone()));
            }
            if m.query.trim().is_empty() {
                return Err(ScalingError::invalid(
                    "prometheus.metrics.query",
                    format!("metric {:?}: the query is empty", m.name),
                ));
            }
            if !matches!(m.source, MetricSource::External | MetricSource::Pods) {
                return Err(ScalingError::invalid(
                    "prometheus.metrics.source",
                    format!(
                        "metric {:?}: must be External or Pods, got {:?}",
                        m.name, m.source
                    ),
                ));
            }
            m.hpa_metric().validate()?;
            if let Some(a) = m.activation_threshold
                && !a.is_finite()
            {
                return Err(ScalingError::NonFinite {
                    metric: m.name.clone(),
                    field: "activationThreshold",
                    value: a,
                });
            }
        }
        Ok(())
    }

    /// Checks that every metric of `spec` has a query here, and every query
    /// a metric there, with the same source.
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`] naming the metric.
    pub fn check_spec(&self, spec: &HpaSpec) -> Result<()> {
        for m in &spec.metrics {
            match self.metrics.iter().find(|q| q.name == m.name) {
                None => {
                    return Err(ScalingError::invalid(
                        "prometheus.metrics",
                        format!("the HPA metric {:?} has no query", m.name),
                    ));
                }
                Some(q) if q.source != m.source => {
                    return Err(ScalingError::invalid(
                        "prometheus.metrics.source",
                        format!(
                            "metric {:?}: the HPA has {:?}, the query {:?}",
                            m.name, m.source, q.source
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(q) = self
            .metrics
            .iter()
            .find(|q| !spec.metrics.iter().any(|m| m.name == q.name))
        {
            return Err(ScalingError::invalid(
                "prometheus.metrics",
                format!("the query of {:?} feeds no HPA metric", q.name),
            ));
        }
        Ok(())
    }
}

fn server_error(e: PrometheusError) -> ScalingError {
    match e {
        PrometheusError::InvalidConfig { field, reason } => ScalingError::invalid(field, reason),
        other => ScalingError::invalid("prometheus", other.to_string()),
    }
}

/// The reading of one metric from its query's outcome (pure).
///
/// # Examples
/// ```
/// use sysmanage_core::prometheus::parse_response;
/// use sysmanage_scaling::MetricValue;
/// use sysmanage_scaling::prometheus::{read_metric, PrometheusMetric};
/// let m = PrometheusMetric::new("queue", "sum(q)", 10.0);
/// let r = parse_response("sum(q)", 200, br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#);
/// assert!(matches!(read_metric(&m, r), MetricValue::Unavailable(why) if why.contains("no series")));
/// ```
pub fn read_metric(
    metric: &PrometheusMetric,
    outcome: std::result::Result<QueryResponse, PrometheusError>,
) -> MetricValue {
    let q = &metric.query;
    let response = match outcome {
        Ok(r) => r,
        Err(e) => return MetricValue::Unavailable(e.to_string()),
    };
    let vector = match response.vector() {
        Ok(v) => v,
        Err(e) => return MetricValue::Unavailable(e.to_string()),
    };
    let value = |v: f64| -> std::result::Result<f64, String> {
        if v.is_nan() {
            return match metric.on_nan {
                OnNan::Zero => Ok(0.0),
                OnNan::Error => Err(format!("prometheus query {q:?} returned NaN")),
            };
        }
        if !v.is_finite() || v < 0.0 {
            return Err(format!(
                "prometheus query {q:?} returned {v}, not a finite non-negative number"
            ));
        }
        Ok(v)
    };
    if vector.is_empty() {
        return match metric.on_empty {
            OnEmpty::Zero if metric.source == MetricSource::Pods => MetricValue::PerPod(Vec::new()),
            OnEmpty::Zero => MetricValue::Total(0.0),
            OnEmpty::Error => {
                MetricValue::Unavailable(format!("prometheus query {q:?} returned no series"))
            }
        };
    }
    match metric.source {
        MetricSource::Pods => {
            let mut pods = Vec::with_capacity(vector.len());
            for s in &vector {
                match value(s.sample.value) {
                    Ok(v) => pods.push(PodSample::ready(v)),
                    Err(why) => return MetricValue::Unavailable(why),
                }
            }
            MetricValue::PerPod(pods)
        }
        _ => {
            if vector.len() > 1 {
                return MetricValue::Unavailable(format!(
                    "prometheus query {q:?} returned {} series, expected one (aggregate it, e.g. with sum())",
                    vector.len()
                ));
            }
            match value(vector[0].sample.value) {
                Ok(v) => MetricValue::Total(v),
                Err(why) => MetricValue::Unavailable(why),
            }
        }
    }
}

/// A [`MetricsSource`] running one PromQL instant query per metric against
/// a Prometheus server (see the [module documentation](self)).
#[derive(Clone)]
pub struct PrometheusSource {
    client: PrometheusClient,
    metrics: Vec<PrometheusMetric>,
}

impl fmt::Debug for PrometheusSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusSource")
            .field("client", &self.client)
            .field(
                "metrics",
                &self.metrics.iter().map(|m| &m.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl PrometheusSource {
    /// A source for `config`.
    ///
    /// # Errors
    /// [`ScalingError::InvalidSpec`] naming the setting
    /// ([`PrometheusSourceConfig::validate`], and TLS files that cannot be read).
    pub fn new(config: PrometheusSourceConfig) -> Result<Self> {
        config.validate()?;
        let client = PrometheusClient::new(&config.server).map_err(server_error)?;
        Ok(Self {
            client,
            metrics: config.metrics,
        })
    }

    /// The client, for other queries against the same server.
    pub fn client(&self) -> &PrometheusClient {
        &self.client
    }

    /// Runs every query now and reads each metric; never fails: a metric
    /// whose query failed is [`MetricValue::Unavailable`].
    pub async fn read(&self) -> Observation {
        let mut obs = Observation::new(0);
        for m in &self.metrics {
            let outcome = self.client.query(&m.query, None).await;
            if let Ok(r) = &outcome
                && !r.warnings.is_empty()
            {
                tracing::debug!(target: "sysmanage_scaling::prometheus", event = "query_warnings", metric = %m.name, warnings = ?r.warnings);
            }
            obs = obs.reading(m.name.clone(), read_metric(m, outcome));
        }
        obs
    }
}

#[async_trait::async_trait]
impl MetricsSource for PrometheusSource {
    async fn observe(&self) -> std::result::Result<Observation, BoxError> {
        Ok(self.read().await)
    }
}

#[cfg(test)]
mod tests {
    use sysmanage_core::prometheus::parse_response;

    use super::*;

    fn vector(items: &[(&str, &str)]) -> std::result::Result<QueryResponse, PrometheusError> {
        let result: Vec<String> = items
            .iter()
            .map(|(pod, v)| format!(r#"{{"metric":{{"pod":"{pod}"}},"value":[100,"{v}"]}}"#))
            .collect();
        let body = format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
            result.join(",")
        );
        parse_response("q", 200, body.as_bytes())
    }

    #[test]
    fn external_metrics_need_one_series() {
        let m = PrometheusMetric::new("x", "q", 10.0);
        assert_eq!(
            read_metric(&m, vector(&[("a", "12.5")])),
            MetricValue::Total(12.5)
        );
        let two = read_metric(&m, vector(&[("a", "1"), ("b", "2")]));
        assert!(matches!(two, MetricValue::Unavailable(w) if w.contains("2 series")));
    }

    #[test]
    fn empty_and_nan_are_errors_unless_configured() {
        let m = PrometheusMetric::new("x", "q", 10.0);
        assert!(
            matches!(read_metric(&m, vector(&[])), MetricValue::Unavailable(w) if w.contains("\"q\""))
        );
        assert!(
            matches!(read_metric(&m, vector(&[("a", "NaN")])), MetricValue::Unavailable(w) if w.contains("NaN"))
        );
        let lenient = m.clone().on_empty(OnEmpty::Zero).on_nan(OnNan::Zero);
        assert_eq!(read_metric(&lenient, vector(&[])), MetricValue::Total(0.0));
        assert_eq!(
            read_metric(&lenient, vector(&[("a", "NaN")])),
            MetricValue::Total(0.0)
        );
        for bad in ["+Inf", "-Inf", "-1"] {
            assert!(
                matches!(
                    read_metric(&lenient, vector(&[("a", bad)])),
                    MetricValue::Unavailable(_)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn pods_metrics_are_per_pod() {
        let m = PrometheusMetric::new("rps", "q", 10.0).per_pod();
        assert_eq!(
            read_metric(&m, vector(&[("a", "10"), ("b", "30")])),
            MetricValue::PerPod(vec![PodSample::ready(10.0), PodSample::ready(30.0)])
        );
        assert!(matches!(
            read_metric(&m, vector(&[("a", "10"), ("b", "NaN")])),
            MetricValue::Unavailable(_)
        ));
        assert_eq!(m.hpa_metric(), MetricSpec::pods_average_value("rps", 10.0));
    }

    #[test]
    fn errors_become_unavailable_naming_the_query() {
        let m = PrometheusMetric::new("x", "sum(up)", 10.0);
        let e = parse_response(
            "sum(up)",
            400,
            br#"{"status":"error","errorType":"bad_data","error":"boom"}"#,
        );
        assert!(
            matches!(read_metric(&m, e), MetricValue::Unavailable(w) if w.contains("sum(up)") && w.contains("bad_data"))
        );
    }

    #[test]
    fn config_is_checked_against_the_spec() {
        let cfg = PrometheusSourceConfig::new(
            PrometheusConfig::new("http://127.0.0.1:9090"),
            vec![
                PrometheusMetric::new("a", "q", 5.0),
                PrometheusMetric::new("b", "q", 1.0).per_pod(),
            ],
        );
        cfg.validate().unwrap();
        let spec = HpaSpec::new(1, 10, cfg.hpa_metrics());
        cfg.check_spec(&spec).unwrap();
        let other = HpaSpec::new(1, 10, vec![MetricSpec::external_value("c", 1.0)]);
        assert!(
            cfg.check_spec(&other)
                .unwrap_err()
                .to_string()
                .contains("\"c\"")
        );
        let mut dup = cfg.clone();
        dup.metrics.push(PrometheusMetric::new("a", "q", 5.0));
        assert!(matches!(
            dup.validate(),
            Err(ScalingError::DuplicateMetric(_))
        ));
        let mut zero = cfg.clone();
        zero.metrics[0].threshold = 0.0;
        assert!(zero.validate().is_err());
        let json = r#"{"server":{"url":"http://h:1"},"metrics":[{"name":"a","query":"q","threshold":1,"onEmpty":"zero","onNan":"zero","source":"Pods"}]}"#;
        let parsed: PrometheusSourceConfig = serde_json::from_str(json).unwrap();
        assert_eq!(parsed.metrics[0].on_empty, OnEmpty::Zero);
        assert!(
            serde_json::from_str::<PrometheusSourceConfig>(&json.replace("onNan", "onNaN"))
                .is_err()
        );
    }
}
