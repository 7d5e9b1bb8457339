//! The rustls client configuration of the Prometheus client, built from a
//! [`TlsConfig`](crate::tls::TlsConfig) with the ring provider, as the
//! Redis and PostgreSQL backends build theirs: `verify-full` checks chain
//! and name, `verify-ca` the chain only, `require` nothing but the
//! handshake signatures.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::error::PrometheusError;
use crate::tls::{TlsConfig, TlsMode};

type Result<T> = std::result::Result<T, PrometheusError>;

fn invalid(field: &'static str, reason: impl Into<String>) -> PrometheusError {
    PrometheusError::invalid(field, reason)
}

fn read(pem: &crate::tls::Pem, field: &'static str) -> Result<Vec<u8>> {
    pem.read(field).map_err(|e| match e {
        crate::Error::InvalidConfig { reason, .. } => invalid(field, reason),
        other => invalid(field, other.to_string()),
    })
}

/// A configuration for plain `http://` servers: reqwest needs one, and no
/// server certificate is ever checked against its empty trust store.
pub(super) fn plain_config() -> Result<Arc<ClientConfig>> {
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("prometheus.tls", e.to_string()))?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn certificates(pem: &[u8], field: &'static str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid(field, format!("malformed PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(field, "holds no CERTIFICATE block"));
    }
    Ok(certs)
}

fn roots(tls: &TlsConfig) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match &tls.ca {
        Some(ca) => {
            let pem = read(ca, "prometheus.tls.ca")?;
            for cert in certificates(&pem, "prometheus.tls.ca")? {
                roots.add(cert).map_err(|e| {
                    invalid(
                        "prometheus.tls.ca",
                        format!("not a usable CA certificate: {e}"),
                    )
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(invalid(
                    "prometheus.tls.ca",
                    "no CA given and the platform's trust store holds no certificate",
                ));
            }
        }
    }
    Ok(roots)
}

/// The rustls configuration `tls` describes, with the ring provider
/// (never the process default, which may be ambiguous in a host that
/// links several providers).
///
/// # Errors
/// [`PrometheusError::InvalidConfig`] naming the setting: a file that
/// cannot be read, PEM without certificates or key, a key that does not
/// match its certificate.
pub(super) fn client_config(tls: &TlsConfig) -> Result<Arc<ClientConfig>> {
    // ring rather than aws-lc-rs: no C/cmake build for hosts, and the
    // provider sqlx's TLS uses too. rustls 0.23.48 deprecates it only
    // for lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(roots(tls)?);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("prometheus.tls", e.to_string()))?;
    let builder = match tls.mode {
        TlsMode::VerifyFull => builder.with_root_certificates(roots),
        mode => {
            let verifier: Arc<dyn ServerCertVerifier> = if mode == TlsMode::VerifyCa {
                let inner = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| invalid("prometheus.tls.ca", e.to_string()))?;
                Arc::new(ChainOnly(inner))
            } else {
                Arc::new(AnyCertificate(provider))
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
        }
    };
    let config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let chain = certificates(
                &read(cert, "prometheus.tls.client_cert")?,
                "prometheus.tls.client_cert",
            )?;
            let key = PrivateKeyDer::from_pem_slice(&read(key, "prometheus.tls.client_key")?)
                .map_err(|_| invalid("prometheus.tls.client_key", "holds no usable private key"))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                invalid(
                    "prometheus.tls.client_key",
                    format!("does not fit the client certificate: {e}"),
                )
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// `verify-ca`: the chain must verify; the name need not match.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            // webpki checks the chain before the name: a name error
            // means the chain verified.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require`: any certificate; the handshake signatures are still
/// checked against it.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
