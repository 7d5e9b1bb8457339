//! Secrets that cannot leak through formatting.
//!
//! [`Secret`] wraps a password or token; [`ConnectionUrl`] wraps a database or
//! cache URL whose password is replaced by `***` whenever it is formatted.
//! Neither type implements `Serialize`: the only way to the raw text is an
//! explicit call to `expose()`, which is easy to grep for in review.

use std::fmt;

/// The text printed in place of a secret.
pub const REDACTED: &str = "***";

/// A secret string (password, token) that prints as `***` in `Debug` and `Display`.
///
/// # Examples
/// ```
/// use sysmanage_core::Secret;
/// let s = Secret::new("hunter2");
/// assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself. Call this only where the secret is handed to the
    /// system that needs it (a connection, a header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

/// A connection URL or libpq-style connection string whose password never
/// appears when it is formatted.
///
/// Redaction covers the password in the userinfo part
/// (`postgres://user:***@host:5432/db`), `password=` parameters in a query
/// string (`redis://host/?password=***`) and `password=` pairs in key/value
/// connection strings (`host=db password=*** user=app`).
///
/// # Examples
/// ```
/// use sysmanage_core::ConnectionUrl;
/// let url = ConnectionUrl::new("postgres://app:s3cret@db.internal:5432/inventory");
/// assert_eq!(url.to_string(), "postgres://app:***@db.internal:5432/inventory");
/// assert!(!format!("{url:?}").contains("s3cret"));
/// assert_eq!(url.expose(), "postgres://app:s3cret@db.internal:5432/inventory");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionUrl {
    raw: String,
    redacted: String,
}

impl ConnectionUrl {
    /// Wraps a URL or key/value connection string.
    pub fn new(url: impl Into<String>) -> Self {
        let raw = url.into();
        let redacted = redact(&raw);
        Self { raw, redacted }
    }

    /// The full URL including its password, for handing to a client library.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The URL with every password replaced by `***`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// Whether the URL carries a password anywhere.
    pub fn has_password(&self) -> bool {
        self.raw != self.redacted
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConnectionUrl")
            .field(&self.redacted)
            .finish()
    }
}

impl fmt::Display for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl From<String> for ConnectionUrl {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl From<&str> for ConnectionUrl {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl<'de> serde::Deserialize<'de> for ConnectionUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

/// Returns `url` with every password replaced by [`REDACTED`].
///
/// Handles `scheme://user:password@host/...` (the userinfo ends at the last
/// `@` before the path), `password=`/`pass=`/`pwd=` query parameters and
/// libpq key/value strings (`password=secret`, `password='quoted secret'`).
///
/// # Examples
/// ```
/// use sysmanage_core::secret::redact;
/// assert_eq!(redact("redis://:pw@127.0.0.1:7000"), "redis://:***@127.0.0.1:7000");
/// assert_eq!(redact("host=db password='a b' user=x"), "host=db password=*** user=x");
/// ```
pub fn redact(url: &str) -> String {
    match url.find("://") {
        Some(scheme_end) => redact_url(url, scheme_end + 3),
        None => redact_key_values(url),
    }
}

fn redact_url(url: &str, authority_start: usize) -> String {
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..authority_start]);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let tail = &rest[authority_len..];
    match tail.find('?') {
        Some(q) => {
            out.push_str(&tail[..q + 1]);
            let (query, fragment) = match tail[q + 1..].find('#') {
                Some(h) => tail[q + 1..].split_at(h),
                None => (&tail[q + 1..], ""),
            };
            let params: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if is_password_key(k) => format!("{k}={REDACTED}"),
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
            out.push_str(fragment);
        }
        None => out.push_str(tail),
    }
    out
}

fn is_password_key(key: &str) -> bool {
    let k = key.trim().to_ascii_lowercase();
    matches!(
        k.as_str(),
        "password" | "pass" | "pwd" | "passwd" | "secret" | "token" | "sslpassword"
    )
}

/// Redacts libpq `key=value` connection strings, where values may be
/// single-quoted with backslash escapes.
fn redact_key_values(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let (before, after_eq) = rest.split_at(eq);
        let trimmed = before.trim_end();
        let key_start = trimmed
            .char_indices()
            .rfind(|(_, c)| c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8());
        let key = &trimmed[key_start..];
        out.push_str(before);
        out.push('=');
        let value_src = after_eq[1..].trim_start();
        out.push_str(&after_eq[1..after_eq.len() - value_src.len()]);
        let value_len = kv_value_len(value_src);
        if is_password_key(key) {
            out.push_str(REDACTED);
        } else {
            out.push_str(&value_src[..value_len]);
        }
        rest = &value_src[value_len..];
    }
    out.push_str(rest);
    out
}

/// The length of a libpq value at the start of `s`: a quoted string with its
/// quotes, or everything up to the next whitespace.
fn kv_value_len(s: &str) -> usize {
    if let Some(body) = s.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => return i + 2,
                _ => {}
            }
        }
        s.len()
    } else {
        s.find(char::is_whitespace).unwrap_or(s.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CASES: &[(&str, &str)] = &[
        (
            "postgres://user:pw@host:5432/db",
            "postgres://user:***@host:5432/db",
        ),
        ("postgres://user@host/db", "postgres://user@host/db"),
        ("postgres://host/db", "postgres://host/db"),
        ("redis://:pw@127.0.0.1:7000", "redis://:***@127.0.0.1:7000"),
        (
            "postgres://u:p@ss:w@rd@host/db?sslmode=require",
            "postgres://u:***@host/db?sslmode=require",
        ),
        (
            "postgres://u@host/db?password=pw&sslmode=disable",
            "postgres://u@host/db?password=***&sslmode=disable",
        ),
        (
            "redis://host:7000/0?PASSWORD=pw#frag",
            "redis://host:7000/0?PASSWORD=***#frag",
        ),
        (
            "postgres://u:pw@/db?host=/var/run/postgresql",
            "postgres://u:***@/db?host=/var/run/postgresql",
        ),
        (
            "host=db port=5432 password=pw user=app",
            "host=db port=5432 password=*** user=app",
        ),
        (
            "host=db password = 'it\\'s secret' user=app",
            "host=db password = *** user=app",
        ),
        ("password='unterminated", "password=***"),
        ("", ""),
    ];

    #[test]
    fn redacts_known_shapes() {
        for (input, want) in CASES {
            assert_eq!(redact(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn no_formatting_path_leaks() {
        let url =
            ConnectionUrl::new("postgres://app:topsecretvalue@db:5432/x?password=topsecretvalue");
        let secret = Secret::new("topsecretvalue");
        let rendered = [
            format!("{url}"),
            format!("{url:?}"),
            format!("{url:#?}"),
            format!("{url:>80}"),
            url.redacted().to_string(),
            format!("{secret}"),
            format!("{secret:?}"),
            format!("{secret:#?}"),
            format!("{:?}", Some(&url)),
            format!("{:?}", vec![secret.clone()]),
        ];
        for r in rendered {
            assert!(!r.contains("topsecretvalue"), "leaked in {r:?}");
        }
        assert!(url.has_password());
        assert!(!ConnectionUrl::new("postgres://a@b/c").has_password());
    }

    #[test]
    fn deserialises_without_serialising() {
        let url: ConnectionUrl = serde_json::from_str("\"redis://:pw@h:1\"").unwrap();
        assert_eq!(url.expose(), "redis://:pw@h:1");
        let s: Secret = serde_json::from_str("\"pw\"").unwrap();
        assert_eq!(s.expose(), "pw");
    }

    proptest! {
        #[test]
        fn password_never_survives(
            user in "[a-z]{1,8}",
            pw in "[A-Za-z0-9!$%^&*()_+]{12,24}",
            host in "[a-z]{1,8}(\\.[a-z]{1,5})?",
            port in 1u16..,
            db in "[a-z]{0,8}",
        ) {
            let raw = format!("postgres://{user}:{pw}@{host}:{port}/{db}");
            let url = ConnectionUrl::new(raw.clone());
            prop_assert!(!url.to_string().contains(&pw));
            let debug = format!("{url:?}");
            prop_assert!(!debug.contains(&pw));
            prop_assert_eq!(url.to_string(), format!("postgres://{user}:***@{host}:{port}/{db}"));
            prop_assert_eq!(url.expose(), raw.as_str());
            let kv = ConnectionUrl::new(format!("host={host} password={pw} user={user}"));
            prop_assert!(!kv.to_string().contains(&pw));
        }

        #[test]
        fn redact_never_panics(s in ".{0,64}") {
            let _ = redact(&s);
        }
    }
}
