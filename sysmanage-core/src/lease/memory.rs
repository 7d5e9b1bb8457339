//! In-process backends: for tests, examples and hosts running one process.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::backend::{Fenced, LeaseBackend, StateStore};
use super::token::FencingToken;
use crate::duration::deadline;
use crate::error::BoxError;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct LeaseState {
    holder: Option<(String, FencingToken, Instant)>,
    epoch: u64,
    fail_next: u32,
}

/// A lease held in memory, with expiry on Tokio's clock (so tests with
/// paused time control it). Shared by `Arc` among the candidates.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use sysmanage_core::lease::{InMemoryLease, LeaseBackend};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sysmanage_core::BoxError> {
/// let lease = InMemoryLease::new();
/// let ttl = Duration::from_secs(1);
/// let t = lease.try_acquire("a", ttl).await?.expect("free");
/// assert_eq!(lease.try_acquire("b", ttl).await?, None);
/// lease.release("a", t).await?;
/// assert!(lease.try_acquire("b", ttl).await?.expect("released") > t);
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct InMemoryLease {
    state: Mutex<LeaseState>,
}

impl InMemoryLease {
    /// A free lease.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends the current term at once, as a killed session would.
    pub fn revoke(&self) {
        lock(&self.state).holder = None;
    }

    /// Makes the next `n` calls fail with a backend error.
    pub fn fail_next(&self, n: u32) {
        lock(&self.state).fail_next = n;
    }

    /// The current holder and token, if the lease has not expired.
    pub fn holder(&self) -> Option<(String, FencingToken)> {
        let now = Instant::now();
        lock(&self.state)
            .holder
            .as_ref()
            .filter(|(_, _, until)| now < *until)
            .map(|(h, t, _)| (h.clone(), *t))
    }

    fn injected(st: &mut LeaseState) -> Result<(), BoxError> {
        if st.fail_next > 0 {
            st.fail_next -= 1;
            return Err("lease backend unavailable (injected)".into());
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl LeaseBackend for InMemoryLease {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn try_acquire(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<FencingToken>, BoxError> {
        let now = Instant::now();
        let mut st = lock(&self.state);
        Self::injected(&mut st)?;
        if let Some((h, t, until)) = &st.holder
            && now < *until
        {
            return Ok((h == holder).then_some(*t));
        }
        st.epoch = st.epoch.checked_add(1).ok_or("lease epoch exhausted")?;
        let token = FencingToken::new(st.epoch);
        st.holder = Some((
            holder.to_owned(),
            token,
            deadline(now.into_std(), ttl).into(),
        ));
        Ok(Some(token))
    }

    async fn renew(
        &self,
        holder: &str,
        token: FencingToken,
        ttl: Duration,
    ) -> Result<bool, BoxError> {
        let now = Instant::now();
        let mut st = lock(&self.state);
        Self::injected(&mut st)?;
        match &mut st.holder {
            Some((h, t, until)) if h == holder && *t == token && now < *until => {
                *until = deadline(now.into_std(), ttl).into();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, holder: &str, token: FencingToken) -> Result<(), BoxError> {
        let mut st = lock(&self.state);
        Self::injected(&mut st)?;
        if st
            .holder
            .as_ref()
            .is_some_and(|(h, t, _)| h == holder && *t == token)
        {
            st.holder = None;
        }
        Ok(())
    }
}

/// The newest token of a key and its saved state (`None` when only claimed).
type Slot = (FencingToken, Option<Vec<u8>>);

/// A [`StateStore`] in memory.
///
/// # Examples
/// ```
/// use sysmanage_core::lease::{FencingToken, Fenced, InMemoryStateStore, StateStore};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sysmanage_core::BoxError> {
/// let store = InMemoryStateStore::new();
/// let t = FencingToken::new;
/// assert_eq!(store.save("k", t(1), b"one").await?, Fenced::Applied(()));
/// assert_eq!(store.claim("k", t(2)).await?, Fenced::Applied(Some(b"one".to_vec())));
/// assert_eq!(store.save("k", t(1), b"late").await?, Fenced::Stale { newest: t(2) });
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct InMemoryStateStore {
    map: Mutex<HashMap<String, Slot>>,
}

impl InMemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl StateStore for InMemoryStateStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn claim(
        &self,
        key: &str,
        token: FencingToken,
    ) -> Result<Fenced<Option<Vec<u8>>>, BoxError> {
        let mut map = lock(&self.map);
        match map.get_mut(key) {
            Some((newest, _)) if *newest > token => Ok(Fenced::Stale { newest: *newest }),
            Some((newest, value)) => {
                *newest = token;
                Ok(Fenced::Applied(value.clone()))
            }
            None => {
                map.insert(key.to_owned(), (token, None));
                Ok(Fenced::Applied(None))
            }
        }
    }

    async fn save(
        &self,
        key: &str,
        token: FencingToken,
        value: &[u8],
    ) -> Result<Fenced<()>, BoxError> {
        let mut map = lock(&self.map);
        match map.get_mut(key) {
            Some((newest, _)) if *newest > token => Ok(Fenced::Stale { newest: *newest }),
            _ => {
                map.insert(key.to_owned(), (token, Some(value.to_vec())));
                Ok(Fenced::Applied(()))
            }
        }
    }

    async fn load(&self, key: &str) -> Result<Option<(FencingToken, Vec<u8>)>, BoxError> {
        Ok(lock(&self.map)
            .get(key)
            .and_then(|(t, v)| v.clone().map(|v| (*t, v))))
    }
}
