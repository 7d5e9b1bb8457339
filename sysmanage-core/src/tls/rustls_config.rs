//! The rustls client configuration a [`TlsConfig`] describes (feature
//! `rustls`), shared by every backend that speaks TLS through rustls (the
//! Redis cache, the Prometheus client): `verify-full` checks chain and name,
//! `verify-ca` the chain only, `require` nothing but the handshake
//! signatures. Always the ring provider, never the process default (which
//! may be ambiguous in a host that links several providers).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::{TlsConfig, TlsMode};
use crate::error::{Error, Result};

/// The names of the settings errors name, e.g. `redis.tls`, `redis.tls.ca`,
/// `redis.tls.client_cert`, `redis.tls.client_key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsFields {
    /// The TLS settings as a whole.
    pub tls: &'static str,
    /// The CA.
    pub ca: &'static str,
    /// The client certificate.
    pub client_cert: &'static str,
    /// The client key.
    pub client_key: &'static str,
}

/// The ring provider: no C/cmake build for hosts, and the provider sqlx's
/// TLS uses too. rustls 0.23.48 deprecates it only for lacking
/// post-quantum key exchange.
pub fn ring_provider() -> Arc<CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(pem: &[u8], field: &'static str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid(field, format!("malformed PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(Error::invalid(field, "holds no CERTIFICATE block"));
    }
    Ok(certs)
}

fn roots(tls: &TlsConfig, fields: &TlsFields) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match &tls.ca {
        Some(ca) => {
            for cert in certificates(&ca.read(fields.ca)?, fields.ca)? {
                roots.add(cert).map_err(|e| {
                    Error::invalid(fields.ca, format!("not a usable CA certificate: {e}"))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(Error::invalid(
                    fields.ca,
                    "no CA given and the platform's trust store holds no certificate",
                ));
            }
        }
    }
    Ok(roots)
}

impl TlsConfig {
    /// The rustls client configuration these settings describe, with the
    /// ring provider.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the setting (from `fields`): a file
    /// that cannot be read, PEM without certificates or key, a key that does
    /// not match its certificate.
    pub fn rustls_client_config(&self, fields: &TlsFields) -> Result<Arc<ClientConfig>> {
        let provider = ring_provider();
        let roots = Arc::new(roots(self, fields)?);
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::invalid(fields.tls, e.to_string()))?;
        let builder = match self.mode {
            TlsMode::VerifyFull => builder.with_root_certificates(roots),
            mode => {
                let verifier: Arc<dyn ServerCertVerifier> = if mode == TlsMode::VerifyCa {
                    let inner =
                        WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                            .build()
                            .map_err(|e| Error::invalid(fields.ca, e.to_string()))?;
                    Arc::new(ChainOnly(inner))
                } else {
                    Arc::new(AnyCertificate(provider))
                };
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
            }
        };
        let config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let chain = certificates(&cert.read(fields.client_cert)?, fields.client_cert)?;
                let key =
                    PrivateKeyDer::from_pem_slice(&key.read(fields.client_key)?).map_err(|_| {
                        Error::invalid(fields.client_key, "holds no usable private key")
                    })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    Error::invalid(
                        fields.client_key,
                        format!("does not fit the client certificate: {e}"),
                    )
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
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
