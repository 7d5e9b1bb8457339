//! The two traits a backend implements: [`LeaseBackend`] (one lease, its
//! terms and their tokens) and [`StateStore`] (state written only by the
//! newest term).

use std::fmt;
use std::time::Duration;

use super::token::FencingToken;
use crate::error::BoxError;

/// One named lease on a server every candidate reaches.
///
/// The server's clock alone decides when a lease has expired; candidates
/// only ever compare their own monotonic clock with their own earlier
/// readings. Every grant returns a token larger than any the backend
/// granted before for this lease.
///
/// `holder` identifies one campaign of one candidate: the
/// [`Elector`](super::Elector) makes a fresh one for every campaign, so a
/// grant repeated for the same holder (a retried call whose first reply was
/// lost) returns the same term, and a holder that stepped down never
/// renews the old term.
#[async_trait::async_trait]
pub trait LeaseBackend: Send + Sync + fmt::Debug {
    /// A short name for logs and errors, e.g. `"postgres"`.
    fn backend(&self) -> &'static str;

    /// Starts a term for `holder` lasting `ttl` from when the server
    /// handles the call, unless another holder's term is still running.
    /// `Ok(None)`: another holder leads.
    async fn try_acquire(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<FencingToken>, BoxError>;

    /// Extends `holder`'s term `token` to `ttl` from now (server time).
    /// `Ok(false)`: that term is over (expired, taken over, or its session
    /// is gone) and cannot be extended.
    async fn renew(
        &self,
        holder: &str,
        token: FencingToken,
        ttl: Duration,
    ) -> Result<bool, BoxError>;

    /// Ends `holder`'s term `token` now so that another candidate can take
    /// over at once. Does nothing when that term is already over.
    async fn release(&self, holder: &str, token: FencingToken) -> Result<(), BoxError>;
}

/// The outcome of a fenced write.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fenced<T> {
    /// The write was applied; `T` is what it returned.
    Applied(T),
    /// A newer term has written: nothing was changed.
    Stale {
        /// The newest token the store has seen.
        newest: FencingToken,
    },
}

impl<T> Fenced<T> {
    /// The value of an applied write.
    pub fn applied(self) -> Option<T> {
        match self {
            Self::Applied(v) => Some(v),
            Self::Stale { .. } => None,
        }
    }
}

/// State that a leader saves after each decision, so that the next leader
/// resumes from it, fenced by token: once a term has claimed or saved the
/// state, writes of older terms are turned away.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync + fmt::Debug {
    /// A short name for logs and errors, e.g. `"postgres"`.
    fn backend(&self) -> &'static str;

    /// Makes `token` the newest token of `key` (unless a newer one has
    /// claimed it) and returns the state saved so far, atomically: every
    /// later save of an older term is [`Fenced::Stale`].
    async fn claim(
        &self,
        key: &str,
        token: FencingToken,
    ) -> Result<Fenced<Option<Vec<u8>>>, BoxError>;

    /// Replaces the state of `key` with `value` unless a newer term has
    /// claimed or saved it.
    async fn save(
        &self,
        key: &str,
        token: FencingToken,
        value: &[u8],
    ) -> Result<Fenced<()>, BoxError>;

    /// The state saved under `key` and the token that saved or claimed it
    /// last, for inspection.
    async fn load(&self, key: &str) -> Result<Option<(FencingToken, Vec<u8>)>, BoxError>;
}
