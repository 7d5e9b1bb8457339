//! Errors of the caller's queries: how the router classifies them (so that
//! a replica dying under load costs no failed read) and how it hands them
//! back typed.
//!
//! Read and write closures may return any error type `E` that implements
//! `std::error::Error + Send + Sync + 'static` — sqlx's, your own enum, an
//! `io::Error` — or [`DynError`], which `?` fills from `anyhow::Error`,
//! `Box<dyn Error + Send + Sync>` or any error. The router hands `E` back
//! in [`QueryFailure::Query`], typed: matching `sqlx::Error::RowNotFound`
//! needs no downcast. It classifies the failure by walking its source chain:
//! a `sqlx::Error` or an `io::Error` anywhere in it is classified as sqlx
//! and the OS say; wrap an error in [`Classified`] to say what it is
//! yourself.

use std::fmt;

use sysmanage_core::BoxError;

use crate::error::Error;

/// What a failed query says about the node it ran on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureClass {
    /// The server is unreachable, the connection broke, or the server is
    /// shutting down: the node is banned and a read runs elsewhere.
    Connection,
    /// The client side was saturated (no pooled connection in time): a read
    /// runs elsewhere, the node is not banned.
    Saturated,
    /// A write reached a node that is read-only (in recovery): the monitor
    /// probes at once to find the promoted primary.
    ReadOnly,
    /// An ordinary SQL or application error: returned as it is; repeated
    /// ones ban the node.
    Query,
    /// The node refused the login (SQLSTATE class 28: wrong password, no
    /// `pg_hba.conf` entry) or the TLS handshake failed (certificate not
    /// trusted, wrong name, expired; TLS required but not offered): a
    /// configuration error. Returned at once naming the node, not retried
    /// elsewhere (the same settings usually serve every node); the node is
    /// banned.
    Rejected,
}

impl FailureClass {
    /// Whether the failure is at the connection level (retried elsewhere).
    pub const fn is_connection(self) -> bool {
        matches!(self, Self::Connection | Self::Saturated)
    }
}

/// Errors the router can classify: every `std::error::Error + Send + Sync +
/// 'static` type (by its source chain, see [`classify`]) and
/// [`DynError`]. Implemented for you; you cannot implement it for your own
/// error types (wrap them in [`Classified`] to choose the class).
pub trait QueryError: fmt::Debug + fmt::Display + Send + Sync + 'static {
    /// What the failure says about the node.
    fn class(&self) -> FailureClass;

    /// The error as a `dyn Error`, for source chains and logs.
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static);

    /// The error, boxed (for [`Error::Query`]).
    fn into_boxed(self) -> BoxError
    where
        Self: Sized;
}

impl<E: std::error::Error + Send + Sync + 'static> QueryError for E {
    fn class(&self) -> FailureClass {
        classify(self)
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_boxed(self) -> BoxError {
        Box::new(self)
    }
}

/// An error with the class you give it (see [`FailureClass`]), for errors
/// of your own that the router cannot classify from their source chain.
///
/// ```
/// use sysmanage_db::replica::{Classified, FailureClass};
/// let e = Classified::connection(std::io::Error::other("rpc to the shard proxy failed"));
/// assert_eq!(e.class(), FailureClass::Connection);
/// ```
#[derive(Debug)]
pub struct Classified {
    class: FailureClass,
    source: BoxError,
}

impl Classified {
    /// `source` with class `class`.
    pub fn new(class: FailureClass, source: impl Into<BoxError>) -> Self {
        Self {
            class,
            source: source.into(),
        }
    }

    /// A connection-level failure (the node is banned, a read retried).
    pub fn connection(source: impl Into<BoxError>) -> Self {
        Self::new(FailureClass::Connection, source)
    }

    /// A saturated client (a read is retried elsewhere, no ban).
    pub fn saturated(source: impl Into<BoxError>) -> Self {
        Self::new(FailureClass::Saturated, source)
    }

    /// The class.
    pub fn class(&self) -> FailureClass {
        self.class
    }

    /// The wrapped error.
    pub fn into_inner(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl std::error::Error for Classified {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

/// Any error, type-erased: what a closure returns when its errors come
/// from several libraries. `?` converts `anyhow::Error`,
/// `Box<dyn Error + Send + Sync>` and every `std::error::Error` into it;
/// the router classifies it by its source chain as it does any error.
///
/// ```
/// use sysmanage_db::replica::{DynError, QueryError, FailureClass};
/// fn query() -> Result<u32, DynError> {
///     let boxed: Box<dyn std::error::Error + Send + Sync> = "bad row".into();
///     Err(boxed)?
/// }
/// let e = query().unwrap_err();
/// assert_eq!(e.to_string(), "bad row");
/// assert_eq!(e.class(), FailureClass::Query);
/// ```
pub struct DynError(BoxError);

impl DynError {
    /// The boxed error.
    pub fn into_inner(self) -> BoxError {
        self.0
    }

    /// The error, borrowed.
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl<E: Into<BoxError>> From<E> for DynError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl fmt::Debug for DynError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for DynError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl QueryError for DynError {
    fn class(&self) -> FailureClass {
        classify(&*self.0)
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }

    fn into_boxed(self) -> BoxError {
        self.0
    }
}

/// Classifies `e` by the first error in its source chain the router knows:
/// [`Classified`], `sqlx::Error` (feature `postgres`),
/// [`MemoryError`](super::MemoryError) or `std::io::Error`; anything else
/// is an ordinary [`FailureClass::Query`].
pub fn classify(e: &(dyn std::error::Error + 'static)) -> FailureClass {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    // Bounded: a cyclic chain (a buggy `source`) cannot loop for ever.
    for _ in 0..64 {
        let Some(err) = next else { break };
        if let Some(c) = err.downcast_ref::<Classified>() {
            return c.class;
        }
        if let Some(m) = err.downcast_ref::<super::MemoryError>() {
            return match m {
                super::MemoryError::Down(_) => FailureClass::Connection,
                super::MemoryError::ReadOnly(_) => FailureClass::ReadOnly,
            };
        }
        #[cfg(feature = "postgres")]
        if let Some(s) = err.downcast_ref::<sqlx::Error>() {
            return super::postgres::classify_sqlx(s);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return if is_tls_failure(io) {
                FailureClass::Rejected
            } else {
                FailureClass::Connection
            };
        }
        next = err.source();
    }
    FailureClass::Query
}

/// Whether an I/O error is a failed TLS handshake: rustls reports one as
/// `InvalidData` carrying its own error (an untrusted or expired
/// certificate, a wrong name, an alert from the server, a peer that does
/// not speak TLS).
pub(super) fn is_tls_failure(io: &std::io::Error) -> bool {
    const TLS_FAILURES: [&str; 8] = [
        "InvalidCertificate(",
        "AlertReceived(",
        "InvalidMessage(",
        "PeerIncompatible(",
        "PeerMisbehaved(",
        "NoCertificatesPresented",
        "InappropriateMessage",
        "InappropriateHandshakeMessage",
    ];
    io.kind() == std::io::ErrorKind::InvalidData
        && io.get_ref().is_some_and(|inner| {
            let shown = format!("{inner:?}");
            TLS_FAILURES.iter().any(|m| shown.starts_with(m))
        })
}

/// Why a read or write failed: the closure's own error on a node, typed, or
/// the router's (no primary, no replica for the level).
#[derive(Debug)]
#[non_exhaustive]
pub enum QueryFailure<E> {
    /// The closure failed on `node`.
    Query {
        /// The node's name.
        node: String,
        /// Whether the failure was at the connection level.
        connection: bool,
        /// The closure's error, as it returned it.
        source: E,
    },
    /// The router could not run the closure.
    Router(Error),
}

impl<E> QueryFailure<E> {
    /// The closure's error, if that is what failed.
    pub fn query(&self) -> Option<&E> {
        match self {
            Self::Query { source, .. } => Some(source),
            Self::Router(_) => None,
        }
    }

    /// The closure's error, or `Err(self)`.
    ///
    /// # Errors
    /// `self` when the router failed rather than the closure.
    pub fn into_query(self) -> Result<E, Self> {
        match self {
            Self::Query { source, .. } => Ok(source),
            other => Err(other),
        }
    }

    /// The node the closure failed on.
    pub fn node(&self) -> Option<&str> {
        match self {
            Self::Query { node, .. } => Some(node),
            Self::Router(_) => None,
        }
    }

    /// Whether the failure was at the connection level.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            Self::Query {
                connection: true,
                ..
            }
        )
    }
}

impl<E: QueryError> fmt::Display for QueryFailure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Query { node, .. } => write!(f, "query on node {node:?} failed"),
            Self::Router(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<E: QueryError> std::error::Error for QueryFailure<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Query { source, .. } => Some(source.as_error()),
            Self::Router(e) => std::error::Error::source(e),
        }
    }
}

impl<E: QueryError> From<QueryFailure<E>> for Error {
    /// Erases the closure's error type into [`Error::Query`].
    fn from(f: QueryFailure<E>) -> Self {
        match f {
            QueryFailure::Query {
                node,
                connection,
                source,
            } => Error::Query {
                node,
                connection,
                source: source.into_boxed(),
            },
            QueryFailure::Router(e) => e,
        }
    }
}

impl<E> From<Error> for QueryFailure<E> {
    fn from(e: Error) -> Self {
        Self::Router(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped")]
    struct Wrapper(#[source] std::io::Error);

    #[test]
    fn the_source_chain_decides() {
        assert_eq!(
            classify(&Wrapper(std::io::Error::other("reset"))),
            FailureClass::Connection
        );
        let plain: BoxError = "constraint violated".into();
        assert_eq!(classify(&*plain), FailureClass::Query);
        assert_eq!(
            Classified::saturated("pool busy").class(),
            FailureClass::Saturated
        );
        assert_eq!(
            DynError::from(Classified::connection("x")).class(),
            FailureClass::Connection
        );
        assert_eq!(
            super::super::MemoryError::ReadOnly(0).class(),
            FailureClass::ReadOnly
        );
    }

    #[test]
    fn the_typed_error_comes_back() {
        let f: QueryFailure<Wrapper> = QueryFailure::Query {
            node: "r0".into(),
            connection: true,
            source: Wrapper(std::io::Error::other("reset")),
        };
        assert!(f.is_connection());
        assert_eq!(f.node(), Some("r0"));
        assert_eq!(f.to_string(), "query on node \"r0\" failed");
        let erased: Error = QueryFailure::<Wrapper>::Router(Error::NoPrimary).into();
        assert!(matches!(erased, Error::NoPrimary));
        let w = f.into_query().unwrap();
        assert_eq!(w.0.to_string(), "reset");
    }
}
