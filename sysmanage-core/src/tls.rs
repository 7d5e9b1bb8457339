//! TLS settings shared by the PostgreSQL and Redis backends: how the server
//! is verified, which CA signs it, the client certificate for mutual TLS and
//! the server name to expect.
//!
//! This module only describes and validates the settings (no TLS library is
//! linked here); `sysmanage-db` hands them to sqlx and `sysmanage-cache` to
//! rustls through fred. Files are read when a connection is set up, not
//! when the settings are validated, and a file that cannot be read is a
//! typed error naming the setting and the path.
//!
//! # Examples
//! ```
//! use sysmanage_core::tls::{Pem, TlsConfig, TlsMode};
//!
//! let tls = TlsConfig::verify_full()
//!     .ca(Pem::file("/etc/sysmanage/ca.crt"))
//!     .client_identity(Pem::file("/etc/sysmanage/client.crt"), Pem::file("/etc/sysmanage/client.key"))
//!     .server_name("redis.internal");
//! tls.validate()?;
//! assert_eq!(tls.mode, TlsMode::VerifyFull);
//!
//! // In a configuration file (TOML):
//! let from_file: TlsConfig = serde_json::from_str(
//!     r#"{"mode": "verify-ca", "ca": {"file": "/etc/ssl/db-ca.pem"}}"#,
//! ).unwrap();
//! assert_eq!(from_file.mode, TlsMode::VerifyCa);
//!
//! // Key material never shows.
//! let inline = TlsConfig::verify_full()
//!     .client_identity(Pem::text("-----BEGIN CERTIFICATE-----…"), Pem::text("-----BEGIN PRIVATE KEY-----secret"));
//! assert!(!format!("{inline:?}").contains("secret"));
//! # Ok::<(), sysmanage_core::Error>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How much of the server's certificate is checked. The names are
/// PostgreSQL's `sslmode` values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TlsMode {
    /// Encrypt, but accept any certificate: no protection against an
    /// impostor in the middle. For test set-ups only.
    Require,
    /// The certificate must chain to the CA; its names are not checked.
    VerifyCa,
    /// The certificate must chain to the CA and name the server (the host
    /// connected to, or [`TlsConfig::server_name`]). The default.
    #[default]
    VerifyFull,
}

impl TlsMode {
    /// The `sslmode` spelling: `require`, `verify-ca`, `verify-full`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// PEM data: a file to read, or the text itself. In configuration files,
/// `{ file = "/path/ca.crt" }` or `{ text = "-----BEGIN CERTIFICATE-----…" }`.
///
/// Its `Debug` output shows a file's path but never PEM text (it may be a
/// private key).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Pem {
    /// A file holding PEM blocks.
    File(PathBuf),
    /// PEM blocks.
    Text(String),
}

impl Pem {
    /// PEM data in the file at `path`.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::File(path.into())
    }

    /// PEM data given as text.
    pub fn text(pem: impl Into<String>) -> Self {
        Self::Text(pem.into())
    }

    /// The file's path, if it is a file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::File(p) => Some(p),
            Self::Text(_) => None,
        }
    }

    /// The PEM bytes: the file's content or the text.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `field` and the path when the file
    /// cannot be read or is empty, or when the data holds no PEM block.
    pub fn read(&self, field: &'static str) -> Result<Vec<u8>> {
        let bytes = match self {
            Self::File(path) => std::fs::read(path).map_err(|e| {
                Error::invalid(field, format!("cannot read {}: {e}", path.display()))
            })?,
            Self::Text(text) => text.clone().into_bytes(),
        };
        if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            return Err(Error::invalid(
                field,
                match self {
                    Self::File(path) => format!("{} holds no PEM block", path.display()),
                    Self::Text(_) => "the text holds no PEM block".to_owned(),
                },
            ));
        }
        Ok(bytes)
    }

    fn check(&self, field: &'static str) -> Result<()> {
        match self {
            Self::File(p) if p.as_os_str().is_empty() => {
                Err(Error::invalid(field, "the file path is empty"))
            }
            Self::File(_) => Ok(()),
            Self::Text(t) if !t.contains("-----BEGIN ") => {
                Err(Error::invalid(field, "the text holds no PEM block"))
            }
            Self::Text(t) if t.len() > MAX_PEM_TEXT => Err(Error::invalid(
                field,
                format!("{} bytes of PEM text, more than {MAX_PEM_TEXT}", t.len()),
            )),
            Self::Text(_) => Ok(()),
        }
    }
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Text(t) => write!(f, "Text(<{} bytes>)", t.len()),
        }
    }
}

/// Most bytes of inline PEM text (a long CA bundle fits).
const MAX_PEM_TEXT: usize = 1 << 20;

/// TLS settings of a connection: encryption always, verification per
/// [`mode`](Self::mode).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// How the server's certificate is checked. Default: `verify-full`.
    pub mode: TlsMode,
    /// The CA certificates that sign the servers' certificates. Default:
    /// none, which means the platform's trust store.
    pub ca: Option<Pem>,
    /// The client certificate (chain) for mutual TLS. Set with
    /// [`client_key`](Self::client_key) or not at all.
    pub client_cert: Option<Pem>,
    /// The private key of [`client_cert`](Self::client_cert). Never
    /// serialised when given as text.
    #[serde(skip_serializing_if = "is_text")]
    pub client_key: Option<Pem>,
    /// The name the server's certificate must carry, instead of the host
    /// connected to: for servers announced by IP address (as Redis Cluster
    /// nodes are) whose certificates carry a DNS name. Default: the host.
    pub server_name: Option<String>,
}

fn is_text(pem: &Option<Pem>) -> bool {
    matches!(pem, Some(Pem::Text(_)))
}

impl TlsConfig {
    /// `verify-full` with the platform's trust store.
    pub fn verify_full() -> Self {
        Self::default()
    }

    /// These settings with `mode`.
    #[must_use]
    pub fn mode(mut self, mode: TlsMode) -> Self {
        self.mode = mode;
        self
    }

    /// These settings with the CA certificates `ca`.
    #[must_use]
    pub fn ca(mut self, ca: Pem) -> Self {
        self.ca = Some(ca);
        self
    }

    /// These settings with a client certificate and its key (mutual TLS).
    #[must_use]
    pub fn client_identity(mut self, cert: Pem, key: Pem) -> Self {
        self.client_cert = Some(cert);
        self.client_key = Some(key);
        self
    }

    /// These settings expecting `name` in the server's certificate.
    #[must_use]
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Checks the settings without reading any file.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field: a client certificate
    /// without its key or a key without its certificate, an empty path,
    /// PEM text without a PEM block, or a server name that is not a DNS
    /// name or an IP address.
    pub fn validate(&self) -> Result<()> {
        if let Some(ca) = &self.ca {
            ca.check("tls.ca")?;
        }
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                cert.check("tls.client_cert")?;
                key.check("tls.client_key")?;
            }
            (Some(_), None) => {
                return Err(Error::invalid(
                    "tls.client_key",
                    "client_cert is set without its key",
                ));
            }
            (None, Some(_)) => {
                return Err(Error::invalid(
                    "tls.client_cert",
                    "client_key is set without its certificate",
                ));
            }
            (None, None) => {}
        }
        if let Some(name) = &self.server_name
            && !valid_server_name(name)
        {
            return Err(Error::invalid(
                "tls.server_name",
                format!("{name:?} is neither a DNS name nor an IP address"),
            ));
        }
        Ok(())
    }
}

/// A DNS name (labels of letters, digits, `-` and `_`, at most 253 bytes)
/// or an IP address.
fn valid_server_name(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
mod rustls_config;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub use rustls_config::{TlsFields, ring_provider};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_cert_and_key_come_together() {
        let only_cert = TlsConfig {
            client_cert: Some(Pem::file("c.crt")),
            ..TlsConfig::default()
        };
        let e = only_cert.validate().unwrap_err().to_string();
        assert!(e.contains("tls.client_key"), "{e}");
        let only_key = TlsConfig {
            client_key: Some(Pem::file("c.key")),
            ..TlsConfig::default()
        };
        let e = only_key.validate().unwrap_err().to_string();
        assert!(e.contains("tls.client_cert"), "{e}");
        let both = TlsConfig::verify_full().client_identity(Pem::file("c.crt"), Pem::file("c.key"));
        both.validate().unwrap();
    }

    #[test]
    fn server_names_are_dns_names_or_addresses() {
        for ok in [
            "redis.internal",
            "127.0.0.1",
            "::1",
            "a-b.c_d.example.",
            "x",
        ] {
            assert!(valid_server_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a b",
            "a/b",
            "a:b",
            &"x".repeat(64),
        ] {
            assert!(!valid_server_name(bad), "{bad:?}");
            let cfg = TlsConfig::verify_full().server_name(bad);
            assert!(cfg.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pem_text_must_hold_a_block_and_never_shows() {
        let bad = TlsConfig::verify_full().ca(Pem::text("not pem"));
        assert!(bad.validate().unwrap_err().to_string().contains("tls.ca"));
        let key = Pem::text("-----BEGIN PRIVATE KEY-----\nhunter2\n-----END PRIVATE KEY-----\n");
        assert!(!format!("{key:?}").contains("hunter2"));
        let cfg = TlsConfig::verify_full().client_identity(Pem::file("c.crt"), key);
        assert!(!format!("{cfg:?}").contains("hunter2"));
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(json.contains("c.crt"), "{json}");
    }

    #[test]
    fn reading_names_the_setting_and_the_path() {
        let missing = Pem::file("/nonexistent/sysmanage/ca.crt");
        let e = missing.read("tls.ca").unwrap_err().to_string();
        assert!(
            e.contains("tls.ca") && e.contains("/nonexistent/sysmanage/ca.crt"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("sysmanage-tls-{}", std::process::id()));
        std::fs::write(&dir, "garbage").unwrap();
        let e = Pem::file(&dir).read("tls.ca").unwrap_err().to_string();
        assert!(e.contains("no PEM block"), "{e}");
        std::fs::remove_file(&dir).unwrap();
        let text = Pem::text("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n");
        assert!(text.read("tls.ca").unwrap().starts_with(b"-----BEGIN"));
    }

    #[test]
    fn modes_deserialise_by_their_sslmode_names() {
        for (text, mode) in [
            ("\"require\"", TlsMode::Require),
            ("\"verify-ca\"", TlsMode::VerifyCa),
            ("\"verify-full\"", TlsMode::VerifyFull),
        ] {
            assert_eq!(serde_json::from_str::<TlsMode>(text).unwrap(), mode);
            assert_eq!(format!("\"{mode}\""), text);
        }
        assert!(serde_json::from_str::<TlsMode>("\"disable\"").is_err());
        assert!(serde_json::from_str::<TlsConfig>(r#"{"cafile": "x"}"#).is_err());
    }
}
