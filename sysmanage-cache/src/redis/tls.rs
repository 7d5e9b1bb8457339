//! TLS and authentication of the node connections: the rustls client
//! configuration built once from [`TlsConfig`](sysmanage_core::TlsConfig),
//! and what a failed handshake or a refused login means.

use fred::error::{Error as FredError, ErrorKind};

use super::classify::shared;
use crate::error::CacheError;

/// Why a connection attempt failed when the node refused the credentials
/// (`WRONGPASS`, `NOAUTH`, `NOPERM` or fred's own authentication error).
pub(super) fn auth_failure(e: &FredError) -> Option<&'static str> {
    let details = e.details();
    let first = details.split_whitespace().next().unwrap_or("");
    match first {
        "WRONGPASS" => Some("wrong user name or password, or the user is disabled (WRONGPASS)"),
        "NOAUTH" => Some("the node requires a password and none was given (NOAUTH)"),
        "NOPERM" => Some("the user lacks a permission this operation needs (NOPERM)"),
        _ if e.kind() == &ErrorKind::Auth => {
            if details.contains("WRONGPASS") {
                Some("wrong user name or password, or the user is disabled (WRONGPASS)")
            } else if details.contains("NOAUTH") {
                Some("the node requires a password and none was given (NOAUTH)")
            } else {
                Some("authentication failed")
            }
        }
        _ => None,
    }
}

/// Why a TLS handshake failed, in words, when `e` is a TLS failure: the
/// server's certificate was rejected (untrusted issuer, wrong name,
/// expired), the server rejected ours, or the two ends do not both speak
/// TLS. `None` for other errors.
pub(super) fn tls_failure(e: &FredError) -> Option<String> {
    let details = e.details();
    if let Some(inner) = between(details, "InvalidCertificate(") {
        let why = if inner.starts_with("UnknownIssuer") || inner.contains("CaUsedAsEndEntity") {
            "the server's certificate is not signed by a trusted CA (another CA, or self-signed)"
                .to_owned()
        } else if inner.starts_with("NotValidForName") {
            "the server's certificate does not carry the expected name (set tls.server_name \
             to a name it carries)"
                .to_owned()
        } else if inner.starts_with("Expired") {
            "the server's certificate has expired".to_owned()
        } else if inner.starts_with("NotValidYet") {
            "the server's certificate is not valid yet".to_owned()
        } else if inner.starts_with("Revoked") {
            "the server's certificate is revoked".to_owned()
        } else {
            format!(
                "the server's certificate was rejected ({})",
                first_word(inner)
            )
        };
        return Some(why);
    }
    if let Some(inner) = between(details, "AlertReceived(") {
        let alert = first_word(inner);
        return Some(match alert {
            "UnknownCA"
            | "BadCertificate"
            | "CertificateRequired"
            | "AccessDenied"
            | "UnsupportedCertificate"
            | "CertificateUnknown" => format!(
                "the server rejected the client certificate (alert {alert}): is it signed by a \
                 CA the server trusts?"
            ),
            _ => format!("the server ended the handshake (alert {alert})"),
        });
    }
    for marker in [
        "InvalidContentType",
        "InvalidMessage(",
        "InappropriateMessage",
        "InappropriateHandshakeMessage",
        "CorruptMessage",
    ] {
        if details.contains(marker) {
            return Some("the node did not answer in TLS: is this a plain-text port?".to_owned());
        }
    }
    if details.contains("PeerIncompatible(") {
        return Some("no TLS version or cipher suite in common with the server".to_owned());
    }
    #[cfg(feature = "redis-tls")]
    if e.kind() == &ErrorKind::Tls {
        return Some(format!("TLS error: {}", first_word(details)));
    }
    None
}

/// An error of a connection attempt to `node` as the cache reports it:
/// [`CacheError::Auth`] and [`CacheError::Tls`] for refused credentials
/// and failed handshakes (not retried: waiting does not fix them), a
/// backend error otherwise.
pub(super) fn connect_error(e: FredError, node: &str) -> CacheError {
    if let Some(reason) = auth_failure(&e) {
        return CacheError::Auth {
            node: node.to_owned(),
            reason: reason.to_owned(),
            source: shared(e),
        };
    }
    if let Some(reason) = tls_failure(&e) {
        return CacheError::Tls {
            node: node.to_owned(),
            reason,
            source: shared(e),
        };
    }
    CacheError::Backend {
        backend: "redis",
        source: shared(e),
    }
}

/// What a plain-text `PING` to a node shows, after a connection attempt
/// failed without a clear reason (a timeout, a reset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PlainProbe {
    /// It accepted the connection and dropped it without a reply (or
    /// answered with a TLS alert record): a TLS-only port.
    Refused,
    /// It answered in RESP: a plain-text port.
    Answered,
    /// Nothing conclusive (down, slow, or something else).
    Unknown,
}

/// Sends a plain-text `PING` to `addr` and reads the first bytes back.
pub(super) async fn probe_plain(addr: &str, within: std::time::Duration) -> PlainProbe {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"*1\r\n$4\r\nPING\r\n").await.ok()?;
        let mut buf = [0u8; 8];
        Some(match s.read(&mut buf).await {
            Ok(0) | Err(_) => PlainProbe::Refused,
            Ok(n) if n >= 2 && buf[0] == 0x15 && buf[1] == 0x03 => PlainProbe::Refused,
            Ok(_) if matches!(buf[0], b'+' | b'-') => PlainProbe::Answered,
            Ok(_) => PlainProbe::Unknown,
        })
    };
    tokio::time::timeout(within, probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(PlainProbe::Unknown)
}

/// A connection failure `e` to `node` without a clear reason, explained by
/// a plain-text probe when one end speaks TLS and the other does not.
pub(super) async fn explain(
    node: &str,
    e: CacheError,
    tls_configured: bool,
    within: std::time::Duration,
) -> CacheError {
    if !matches!(e, CacheError::Backend { .. }) {
        return e;
    }
    let reason = match (tls_configured, probe_plain(node, within).await) {
        (false, PlainProbe::Refused) => {
            "the node closed the connection on plain text: is it a TLS-only port (set redis.tls)?"
        }
        (true, PlainProbe::Answered) => {
            "the node answered in plain text: is this a plain-text port, not a TLS one?"
        }
        _ => return e,
    };
    CacheError::Tls {
        node: node.to_owned(),
        reason: reason.to_owned(),
        source: std::sync::Arc::new(e),
    }
}

fn between<'a>(s: &'a str, start: &str) -> Option<&'a str> {
    s.find(start).map(|i| &s[i + start.len()..])
}

fn first_word(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The rustls configuration `tls` describes, errors naming the
/// `redis.tls.*` settings.
///
/// # Errors
/// [`CacheError::InvalidArgument`] naming the setting.
#[cfg(feature = "redis-tls")]
pub(super) fn client_config(
    tls: &sysmanage_core::tls::TlsConfig,
) -> crate::error::Result<std::sync::Arc<rustls::ClientConfig>> {
    const FIELDS: sysmanage_core::tls::TlsFields = sysmanage_core::tls::TlsFields {
        tls: "redis.tls",
        ca: "redis.tls.ca",
        client_cert: "redis.tls.client_cert",
        client_key: "redis.tls.client_key",
    };
    tls.rustls_client_config(&FIELDS).map_err(CacheError::from)
}
