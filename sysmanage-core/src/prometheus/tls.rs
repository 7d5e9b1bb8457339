//! The rustls client configuration of the Prometheus client: the shared
//! [`TlsConfig::rustls_client_config`](crate::tls::TlsConfig::rustls_client_config)
//! with the `prometheus.tls.*` setting names, and a configuration for plain
//! `http://` servers.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

use super::error::PrometheusError;
use crate::tls::{TlsConfig, TlsFields, ring_provider};

type Result<T> = std::result::Result<T, PrometheusError>;

const FIELDS: TlsFields = TlsFields {
    tls: "prometheus.tls",
    ca: "prometheus.tls.ca",
    client_cert: "prometheus.tls.client_cert",
    client_key: "prometheus.tls.client_key",
};

fn invalid(e: crate::Error) -> PrometheusError {
    match e {
        crate::Error::InvalidConfig { field, reason } => PrometheusError::invalid(field, reason),
        other => PrometheusError::invalid(FIELDS.tls, other.to_string()),
    }
}

/// A configuration for plain `http://` servers: reqwest needs one, and no
/// server certificate is ever checked against its empty trust store.
pub(super) fn plain_config() -> Result<Arc<ClientConfig>> {
    let config = ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PrometheusError::invalid(FIELDS.tls, e.to_string()))?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The rustls configuration `tls` describes.
///
/// # Errors
/// [`PrometheusError::InvalidConfig`] naming the setting.
pub(super) fn client_config(tls: &TlsConfig) -> Result<Arc<ClientConfig>> {
    tls.rustls_client_config(&FIELDS).map_err(invalid)
}
