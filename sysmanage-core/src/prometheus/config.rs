//! Where the Prometheus server is and how to talk to it.

use std::time::Duration;

use serde::Deserialize;

use super::error::PrometheusError;
use crate::duration::{DAY, MILLISECOND, check_duration};
use crate::secret::Secret;
use crate::tls::TlsConfig;

/// How requests authenticate. In a configuration file:
/// `auth = { type = "bearer", token = "…" }` or
/// `auth = { type = "basic", username = "…", password = "…" }`.
///
/// Secrets print as `***` in `Debug` and `Display`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum PrometheusAuth {
    /// No credentials (the default).
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: Secret,
    },
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
}

/// Settings of a [`PrometheusClient`](super::PrometheusClient).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use sysmanage_core::prometheus::{PrometheusAuth, PrometheusConfig};
/// let cfg: PrometheusConfig = serde_json::from_str(r#"{
///     "url": "https://prometheus.internal:9090",
///     "timeout": "5s",
///     "auth": {"type": "bearer", "token": "s3cret"},
///     "tls": {"ca": {"file": "/etc/ssl/prom-ca.pem"}}
/// }"#).unwrap();
/// assert_eq!(cfg.timeout, Duration::from_secs(5));
/// assert!(matches!(cfg.auth, PrometheusAuth::Bearer { .. }));
/// assert!(!format!("{cfg:?}").contains("s3cret"));
/// cfg.validate()?;
/// # Ok::<(), sysmanage_core::prometheus::PrometheusError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PrometheusConfig {
    /// The server's base URL, `http://` or `https://`, optionally with a
    /// path prefix (`https://host/prometheus`); never with credentials in
    /// it (use [`auth`](Self::auth)). Default: `http://127.0.0.1:9090`.
    pub url: String,
    /// The longest a query may take, end to end; also sent to Prometheus as
    /// the query's `timeout`. 1 ms to 1 day. Default: 3 s (KEDA's default
    /// HTTP timeout).
    #[serde(with = "crate::duration::serde_human")]
    pub timeout: Duration,
    /// Credentials. Default: none.
    pub auth: PrometheusAuth,
    /// TLS settings for an `https://` URL. Default: `None`, which for an
    /// `https://` URL means `verify-full` against the platform's trust store.
    pub tls: Option<TlsConfig>,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9090".to_owned(),
            timeout: Duration::from_secs(3),
            auth: PrometheusAuth::None,
            tls: None,
        }
    }
}

impl PrometheusConfig {
    /// The defaults with the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// These settings with `timeout`.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// These settings with `auth`.
    #[must_use]
    pub fn auth(mut self, auth: PrometheusAuth) -> Self {
        self.auth = auth;
        self
    }

    /// These settings with `tls`.
    #[must_use]
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Checks the settings without touching the network or reading files.
    ///
    /// # Errors
    /// [`PrometheusError::InvalidConfig`] naming the field: a URL that is
    /// not `http(s)://host…`, carries credentials, a query or a fragment; a
    /// timeout outside 1 ms – 1 day; an empty bearer token or user name;
    /// invalid TLS settings, or TLS settings for an `http://` URL.
    pub fn validate(&self) -> Result<(), PrometheusError> {
        self.parsed_url()?;
        check_duration("prometheus.timeout", self.timeout, MILLISECOND, DAY)
            .map_err(|e| PrometheusError::invalid("prometheus.timeout", e.to_string()))?;
        match &self.auth {
            PrometheusAuth::Bearer { token } if token.is_empty() => {
                return Err(PrometheusError::invalid(
                    "prometheus.auth.token",
                    "the bearer token is empty",
                ));
            }
            PrometheusAuth::Basic { username, .. } if username.is_empty() => {
                return Err(PrometheusError::invalid(
                    "prometheus.auth.username",
                    "the user name is empty",
                ));
            }
            _ => {}
        }
        if let Some(tls) = &self.tls {
            tls.validate()
                .map_err(|e| PrometheusError::invalid("prometheus.tls", e.to_string()))?;
            if !self.url.starts_with("https://") {
                return Err(PrometheusError::invalid(
                    "prometheus.tls",
                    "TLS settings need an https:// URL",
                ));
            }
        }
        Ok(())
    }

    /// The base URL, checked, without a trailing slash.
    pub(crate) fn parsed_url(&self) -> Result<reqwest::Url, PrometheusError> {
        let bad = |reason: String| PrometheusError::invalid("prometheus.url", reason);
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| bad(format!("{:?} is not a URL: {e}", shorten(&self.url))))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(bad(format!(
                "scheme must be http or https, got {:?}",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("the URL has no host".to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "credentials must not be part of the URL; set prometheus.auth".to_owned(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("the URL must have no query or fragment".to_owned()));
        }
        Ok(url)
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_credentials_refused() {
        for ok in [
            "http://127.0.0.1:9090",
            "https://p.internal/prom/",
            "http://[::1]:9090",
        ] {
            PrometheusConfig::new(ok).validate().unwrap();
        }
        for bad in [
            "",
            "127.0.0.1:9090",
            "ftp://x",
            "http://user:pw@host:9090",
            "http://host/?a=b",
            "http://host/#x",
        ] {
            let e = PrometheusConfig::new(bad)
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains("prometheus.url"), "{bad}: {e}");
            assert!(!e.contains("pw@"), "{e}");
        }
    }

    #[test]
    fn secrets_never_print_and_unknown_fields_are_refused() {
        let cfg: PrometheusConfig = serde_json::from_str(
            r#"{"url":"http://h:1","auth":{"type":"basic","username":"u","password":"hunter2"}}"#,
        )
        .unwrap();
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert!(serde_json::from_str::<PrometheusConfig>(r#"{"uri":"http://h"}"#).is_err());
        assert!(
            serde_json::from_str::<PrometheusConfig>(
                r#"{"auth":{"type":"bearer","token":"t","x":1}}"#
            )
            .is_err()
        );
        let e = PrometheusConfig::new("http://h:1")
            .auth(PrometheusAuth::Bearer {
                token: Secret::new(""),
            })
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("prometheus.auth.token"));
        let e = PrometheusConfig::new("http://h:1")
            .timeout(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("prometheus.timeout"));
        let e = PrometheusConfig::new("http://h:1")
            .tls(TlsConfig::verify_full())
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
    }
}
