//! Sessions shared across application instances, over any [`ClusterCache`].
//!
//! * **Ids** carry 128 random bits read from the operating system's CSPRNG
//!   (through `getrandom`, on every platform Rust supports), hex-encoded, after a short slot tag:
//!   `<tag>.<32 hex digits>`. [`SessionId`] never prints the random part in
//!   `Debug`/`Display`.
//! * **Create** writes with `SET … NX PX` and draws a new id on the
//!   (astronomically unlikely) collision, up to
//!   [`SessionConfig::create_attempts`] times.
//! * **Update** writes with `SET … XX`, so a session deleted or expired
//!   meanwhile is not resurrected. It writes back the revocation epoch it
//!   validated (never a newer one) and re-reads the epoch afterwards, so a
//!   `revoke_all` racing with it cannot revive the session. **Touch** slides the expiry. Both, and
//!   `get`, also enforce an absolute [`SessionConfig::max_lifetime`].
//! * **Revoke all of a user's sessions**: every key of one user — the
//!   sessions, the per-user index of their ids and the user's revocation
//!   epoch — shares one hash tag, so it lives in one slot. Revocation
//!   increments the epoch (one atomic `INCR`: every older session is invalid
//!   from that instant, even one created concurrently), then deletes the
//!   sessions listed in the index. A `get` reads the session, then the
//!   epoch of its user (same slot, same node).
//!
//! The tag is the slot of the user id, in hex: it places a user's keys
//! together without putting the user id into the session id.
//!
//! ```
//! use sysmanage_cache::MemoryCache;
//! use sysmanage_cache::session::{SessionConfig, SessionStore};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sysmanage_cache::CacheError> {
//! let store = SessionStore::new(MemoryCache::new(), SessionConfig::default())?;
//! let a = store.create("user-7", &"laptop").await?;
//! let b = store.create("user-7", &"phone").await?;
//! assert_eq!(store.get::<String>(&a.id).await?.unwrap().data, "laptop");
//! assert_eq!(store.revoke_all("user-7").await?, 2);
//! assert!(store.get::<String>(&b.id).await?.is_none());
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use sysmanage_core::duration::{MILLISECOND, YEAR, check_count, check_duration};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sysmanage_core::{Clock, SystemClock, Timestamp};

use crate::cache::{ClusterCache, Codec, JsonCodec, SetOptions};
use crate::error::{CacheError, Result};
use crate::slot::slot;

/// Least extra lifetime of a revocation epoch beyond `max_lifetime`.
const EPOCH_TTL_MARGIN: Duration = Duration::from_secs(60);

/// Settings of a [`SessionStore`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Key prefix; must not contain `{` or `}`. Default: `"session:"`.
    pub prefix: String,
    /// Idle expiry, renewed by `update` and `touch`. Default: 30 min.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub ttl: Duration,
    /// Absolute lifetime from creation, whatever the activity. Default: 24 h.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub max_lifetime: Duration,
    /// Ids kept in a user's index (oldest dropped first; dropped sessions
    /// are still revoked by the epoch). Default: 256.
    pub max_sessions_per_user: usize,
    /// Ids drawn before `create` gives up. Default: 5.
    pub create_attempts: u32,
}

impl SessionConfig {
    /// Validates the settings (what [`SessionStore::new`] checks).
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] naming the field and its range.
    pub fn validate(&self) -> Result<()> {
        if self.prefix.contains(['{', '}']) {
            return Err(CacheError::invalid(
                "session.prefix",
                "must not contain { or }",
            ));
        }
        check_duration("session.ttl", self.ttl, MILLISECOND, YEAR)?;
        check_duration("session.max_lifetime", self.max_lifetime, MILLISECOND, YEAR)?;
        check_count(
            "session.max_sessions_per_user",
            self.max_sessions_per_user,
            1,
            1_000_000,
        )?;
        check_count("session.create_attempts", self.create_attempts, 1, 100)?;
        if self.max_sessions_per_user == 0 || self.create_attempts == 0 {
            return Err(CacheError::invalid(
                "session.max_sessions_per_user",
                "max_sessions_per_user and create_attempts must be at least 1",
            ));
        }
        Ok(())
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            prefix: "session:".into(),
            ttl: Duration::from_secs(30 * 60),
            max_lifetime: Duration::from_secs(24 * 3600),
            max_sessions_per_user: 256,
            create_attempts: 5,
        }
    }
}

/// A session id: `<4 hex slot tag>.<32 hex random>`. `Debug` and `Display`
/// show only the tag.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// Parses an id received from a client.
    ///
    /// # Errors
    /// [`CacheError::InvalidSessionId`] when it does not have the shape
    /// this store issues.
    pub fn parse(s: &str) -> Result<Self> {
        let ok = s.len() == 37
            && s.as_bytes()[4] == b'.'
            && s.bytes()
                .enumerate()
                .all(|(i, b)| i == 4 || matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(CacheError::InvalidSessionId)
        }
    }

    /// The full id, to hand to the client (e.g. in a cookie).
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn tag(&self) -> &str {
        &self.0[..4]
    }

    fn random(&self) -> &str {
        &self.0[5..]
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}.***)", self.tag())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.***", self.tag())
    }
}

/// A session as returned by the store.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Session<T> {
    /// Its id.
    pub id: SessionId,
    /// The user it belongs to.
    pub user_id: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Application data.
    pub data: T,
}

#[derive(Serialize, Deserialize)]
struct Record<T> {
    user: String,
    created_ms: i64,
    epoch: i64,
    data: T,
}

/// 128 bits from the OS CSPRNG, hex-encoded.
fn random_hex() -> Result<String> {
    let mut buf = [0u8; 16];
    getrandom::fill(&mut buf).map_err(|e| CacheError::Backend {
        backend: "os random",
        source: Arc::new(std::io::Error::other(e.to_string())),
    })?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn tag_of(user_id: &str) -> String {
    format!("{:04x}", slot(user_id.as_bytes()))
}

fn ms_of(t: Timestamp) -> i64 {
    (t.as_secs_f64() * 1000.0).round() as i64
}

/// Sessions over any [`ClusterCache`]; see the [module docs](self).
#[derive(Debug)]
pub struct SessionStore<C, K = JsonCodec> {
    cache: C,
    codec: K,
    config: SessionConfig,
    clock: Arc<dyn Clock>,
}

impl<C: ClusterCache> SessionStore<C, JsonCodec> {
    /// A store with the JSON codec and the system clock.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] for a bad configuration.
    pub fn new(cache: C, config: SessionConfig) -> Result<Self> {
        Self::with_parts(cache, JsonCodec, config, Arc::new(SystemClock))
    }
}

impl<C: ClusterCache, K: Codec> SessionStore<C, K> {
    /// A store with a codec and a clock of your choice.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] for a bad configuration.
    pub fn with_parts(
        cache: C,
        codec: K,
        config: SessionConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            cache,
            codec,
            config,
            clock,
        })
    }

    /// The cache underneath.
    pub fn cache(&self) -> &C {
        &self.cache
    }

    fn session_key(&self, tag: &str, random: &str) -> Vec<u8> {
        format!("{}{{{tag}}}:s:{random}", self.config.prefix).into_bytes()
    }

    fn index_key(&self, tag: &str, user: &str) -> Vec<u8> {
        format!("{}{{{tag}}}:u:{user}", self.config.prefix).into_bytes()
    }

    fn epoch_key(&self, tag: &str, user: &str) -> Vec<u8> {
        format!("{}{{{tag}}}:e:{user}", self.config.prefix).into_bytes()
    }

    /// Lifetime of a user's revocation epoch: longer than any session
    /// created under an older epoch may live, with a margin for the clock
    /// difference between this host and the server (and for the time
    /// between reading and writing the epoch). An epoch that expired too
    /// early would read as 0 again and revive sessions revoked from 0.
    fn epoch_ttl(&self) -> Duration {
        let margin = (self.config.max_lifetime / 10).max(EPOCH_TTL_MARGIN);
        self.config.max_lifetime.saturating_add(margin)
    }

    fn parse_epoch(raw: Option<&[u8]>) -> Result<i64> {
        raw.map_or(Ok(0), |b| {
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(CacheError::NotAnInteger)
        })
    }

    /// The idle TTL, capped by what is left of the absolute lifetime.
    fn ttl_for(&self, created: Timestamp, now: Timestamp) -> Option<Duration> {
        let left = self
            .config
            .max_lifetime
            .checked_sub(now.saturating_since(created))?;
        let ttl = self.config.ttl.min(left);
        (ttl.as_millis() > 0).then_some(ttl)
    }

    /// Creates a session for `user_id` holding `data`.
    ///
    /// # Errors
    /// Cache and codec errors; a backend error when the OS random source
    /// fails or no unique id was found.
    pub async fn create<T: Serialize + Sync + Clone>(
        &self,
        user_id: &str,
        data: &T,
    ) -> Result<Session<T>> {
        let tag = tag_of(user_id);
        let epoch_key = self.epoch_key(&tag, user_id);
        let epoch = Self::parse_epoch(self.cache.get(&epoch_key).await?.as_deref())?;
        if epoch > 0 {
            // The epoch must outlive every session created under it.
            self.cache.expire(&epoch_key, self.epoch_ttl()).await?;
        }
        let now = self.clock.wall();
        let record = Record {
            user: user_id.to_owned(),
            created_ms: ms_of(now),
            epoch,
            data,
        };
        let bytes = self.codec.encode(&record)?;
        let mut id = None;
        for _ in 0..self.config.create_attempts {
            let random = random_hex()?;
            let key = self.session_key(&tag, &random);
            if self
                .cache
                .set(&key, &bytes, SetOptions::ttl(self.config.ttl).if_absent())
                .await?
            {
                id = Some(SessionId(format!("{tag}.{random}")));
                break;
            }
        }
        let id = id.ok_or_else(|| CacheError::Backend {
            backend: "session",
            source: Arc::new(std::io::Error::other(
                "no unique session id after the configured attempts",
            )),
        })?;
        // Best-effort index of the user's sessions (revocation itself relies
        // on the epoch, not on this list).
        let index_key = self.index_key(&tag, user_id);
        let mut ids: Vec<String> = match self.cache.get(&index_key).await? {
            Some(b) => self.codec.decode(&b).unwrap_or_default(),
            None => Vec::new(),
        };
        ids.push(id.random().to_owned());
        let excess = ids.len().saturating_sub(self.config.max_sessions_per_user);
        ids.drain(..excess);
        let encoded = self.codec.encode(&ids)?;
        self.cache
            .set(
                &index_key,
                &encoded,
                SetOptions::ttl(self.config.max_lifetime),
            )
            .await?;
        Ok(Session {
            id,
            user_id: user_id.to_owned(),
            created_at: now,
            data: data.clone(),
        })
    }

    /// The session, or `None` when it is missing, expired, past its
    /// absolute lifetime or revoked.
    ///
    /// # Errors
    /// Cache and codec errors.
    pub async fn get<T: DeserializeOwned>(&self, id: &SessionId) -> Result<Option<Session<T>>> {
        Ok(self.get_validated(id).await?.map(|(s, _)| s))
    }

    /// The session and the revocation epoch it was validated against.
    async fn get_validated<T: DeserializeOwned>(
        &self,
        id: &SessionId,
    ) -> Result<Option<(Session<T>, i64)>> {
        let key = self.session_key(id.tag(), id.random());
        let Some(raw) = self.cache.get(&key).await? else {
            return Ok(None);
        };
        let record: Record<T> = self.codec.decode(&raw)?;
        if tag_of(&record.user) != id.tag() {
            return Ok(None);
        }
        let epoch = self.current_epoch(id.tag(), &record.user).await?;
        let created =
            Timestamp::from_secs(0) + Duration::from_millis(record.created_ms.max(0) as u64);
        let now = self.clock.wall();
        if record.epoch != epoch || self.ttl_for(created, now).is_none() {
            self.cache.delete(&key).await?;
            return Ok(None);
        }
        Ok(Some((
            Session {
                id: id.clone(),
                user_id: record.user,
                created_at: created,
                data: record.data,
            },
            epoch,
        )))
    }

    async fn current_epoch(&self, tag: &str, user: &str) -> Result<i64> {
        Self::parse_epoch(self.cache.get(&self.epoch_key(tag, user)).await?.as_deref())
    }

    /// Replaces the session's data (`SET … XX`) and slides its expiry;
    /// `false` when the session no longer exists.
    ///
    /// # Errors
    /// Cache and codec errors.
    pub async fn update<T: Serialize + DeserializeOwned + Sync>(
        &self,
        id: &SessionId,
        data: &T,
    ) -> Result<bool> {
        let Some((current, epoch)) = self.get_validated::<serde::de::IgnoredAny>(id).await? else {
            return Ok(false);
        };
        let Some(ttl) = self.ttl_for(current.created_at, self.clock.wall()) else {
            return Ok(false);
        };
        // Write back the epoch `get` validated, never a fresh read: a
        // `revoke_all` in between must leave the record stale.
        let key = self.session_key(id.tag(), id.random());
        let record = Record {
            user: current.user_id,
            created_ms: ms_of(current.created_at),
            epoch,
            data,
        };
        let bytes = self.codec.encode(&record)?;
        if !self
            .cache
            .set(&key, &bytes, SetOptions::ttl(ttl).if_present())
            .await?
        {
            return Ok(false);
        }
        // A revocation that landed meanwhile: drop the record now rather
        // than at its next read.
        if self.current_epoch(id.tag(), &record.user).await? != epoch {
            self.cache.delete(&key).await?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Slides the session's expiry; `false` when it no longer exists.
    ///
    /// # Errors
    /// Cache and codec errors.
    pub async fn touch(&self, id: &SessionId) -> Result<bool> {
        let Some(current) = self.get::<serde::de::IgnoredAny>(id).await? else {
            return Ok(false);
        };
        match self.ttl_for(current.created_at, self.clock.wall()) {
            Some(ttl) => {
                self.cache
                    .expire(&self.session_key(id.tag(), id.random()), ttl)
                    .await
            }
            None => Ok(false),
        }
    }

    /// Deletes the session; `false` when it did not exist.
    ///
    /// # Errors
    /// Cache errors.
    pub async fn delete(&self, id: &SessionId) -> Result<bool> {
        self.cache
            .delete(&self.session_key(id.tag(), id.random()))
            .await
    }

    /// Revokes every session of `user_id`: atomically invalidates them (epoch
    /// increment), then deletes those in the user's index. Returns how many
    /// session keys were deleted — a lower bound: the index keeps the newest
    /// [`SessionConfig::max_sessions_per_user`] ids and concurrent `create`s
    /// may overwrite each other's entry. Sessions missing from it are
    /// revoked all the same and deleted at their next read.
    ///
    /// # Errors
    /// Cache errors. Once the epoch increment succeeded, all sessions are
    /// revoked even if the clean-up then fails.
    pub async fn revoke_all(&self, user_id: &str) -> Result<usize> {
        let tag = tag_of(user_id);
        let epoch_key = self.epoch_key(&tag, user_id);
        self.cache.incr(&epoch_key, 1).await?;
        self.cache.expire(&epoch_key, self.epoch_ttl()).await?;
        let index_key = self.index_key(&tag, user_id);
        let ids: Vec<String> = match self.cache.get(&index_key).await? {
            Some(b) => self.codec.decode(&b).unwrap_or_default(),
            None => Vec::new(),
        };
        let mut keys: Vec<Vec<u8>> = ids.iter().map(|r| self.session_key(&tag, r)).collect();
        keys.push(index_key);
        let expected = keys.len();
        let deleted = self.cache.mdel(&keys).await?;
        // The last result is the index key's.
        let sessions = match deleted.split_last() {
            Some((_, sessions)) if deleted.len() == expected => sessions,
            _ => {
                return Err(CacheError::Backend {
                    backend: "session",
                    source: Arc::new(std::io::Error::other(format!(
                        "mdel returned {} results for {expected} keys",
                        deleted.len()
                    ))),
                });
            }
        };
        let mut n = 0;
        for r in sessions {
            n += usize::from(*r.as_ref().map_err(Clone::clone)?);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryCache;
    use sysmanage_core::ManualClock;

    fn store() -> (SessionStore<MemoryCache>, ManualClock) {
        let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
        let cache = MemoryCache::builder().clock(clock.clone()).build().unwrap();
        let cfg = SessionConfig {
            ttl: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(300),
            ..SessionConfig::default()
        };
        (
            SessionStore::with_parts(cache, JsonCodec, cfg, Arc::new(clock.clone())).unwrap(),
            clock,
        )
    }

    /// A cache that runs a hook after the `n`-th read of an epoch key and
    /// can drop the last `mdel` result (a misbehaving implementation).
    #[derive(Debug)]
    struct Interposed {
        inner: MemoryCache,
        epoch_reads: std::sync::atomic::AtomicUsize,
        revoke_after_epoch_read: usize,
        short_mdel: bool,
    }

    impl Interposed {
        fn new(inner: MemoryCache) -> Self {
            Self {
                inner,
                epoch_reads: 0.into(),
                revoke_after_epoch_read: usize::MAX,
                short_mdel: false,
            }
        }
    }

    impl ClusterCache for Interposed {
        async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            let v = self.inner.get(key).await?;
            if key.windows(3).any(|w| w == b":e:") {
                let n = self
                    .epoch_reads
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    + 1;
                if n == self.revoke_after_epoch_read {
                    // A concurrent revoke_all lands right after this read.
                    self.inner.incr(key, 1).await?;
                }
            }
            Ok(v)
        }
        async fn set(&self, key: &[u8], value: &[u8], opts: SetOptions) -> Result<bool> {
            self.inner.set(key, value, opts).await
        }
        async fn delete(&self, key: &[u8]) -> Result<bool> {
            self.inner.delete(key).await
        }
        async fn exists(&self, key: &[u8]) -> Result<bool> {
            self.inner.exists(key).await
        }
        async fn expire(&self, key: &[u8], ttl: Duration) -> Result<bool> {
            self.inner.expire(key, ttl).await
        }
        async fn ttl(&self, key: &[u8]) -> Result<crate::Ttl> {
            self.inner.ttl(key).await
        }
        async fn incr(&self, key: &[u8], by: i64) -> Result<i64> {
            self.inner.incr(key, by).await
        }
        async fn mget<Q: AsRef<[u8]> + Sync>(
            &self,
            keys: &[Q],
        ) -> Result<Vec<crate::KeyResult<Option<Vec<u8>>>>> {
            self.inner.mget(keys).await
        }
        async fn mset<Q: AsRef<[u8]> + Sync, V: AsRef<[u8]> + Sync>(
            &self,
            entries: &[(Q, V)],
            ttl: Option<Duration>,
        ) -> Result<Vec<crate::KeyResult<()>>> {
            self.inner.mset(entries, ttl).await
        }
        async fn mdel<Q: AsRef<[u8]> + Sync>(
            &self,
            keys: &[Q],
        ) -> Result<Vec<crate::KeyResult<bool>>> {
            let mut out = self.inner.mdel(keys).await?;
            if self.short_mdel {
                out.clear();
            }
            Ok(out)
        }
        async fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<Vec<u8>>> {
            self.inner.scan_prefix(prefix, limit).await
        }
    }

    fn interposed(cache: Interposed) -> SessionStore<Interposed> {
        SessionStore::new(cache, SessionConfig::default()).unwrap()
    }

    #[tokio::test]
    async fn update_racing_revoke_all_does_not_revive_the_session() {
        let mut cache = Interposed::new(MemoryCache::new());
        // Epoch reads: #1 in create, #2 in update's validation; the
        // revocation lands right after #2.
        cache.revoke_after_epoch_read = 2;
        let s = interposed(cache);
        let sess = s.create("erin", &"v1".to_owned()).await.unwrap();
        assert!(
            !s.update(&sess.id, &"v2".to_owned()).await.unwrap(),
            "the update saw the revocation"
        );
        assert!(
            s.get::<String>(&sess.id).await.unwrap().is_none(),
            "a session revoked during update stays revoked"
        );
    }

    #[tokio::test]
    async fn revoke_all_rejects_a_short_mdel_reply() {
        let mut cache = Interposed::new(MemoryCache::new());
        cache.short_mdel = true;
        let s = interposed(cache);
        s.create("frank", &0).await.unwrap();
        assert!(matches!(
            s.revoke_all("frank").await,
            Err(CacheError::Backend {
                backend: "session",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn works_over_a_trait_object() {
        let cache: Arc<dyn crate::DynClusterCache> = Arc::new(MemoryCache::new());
        let s = SessionStore::new(cache, SessionConfig::default()).unwrap();
        let a = s.create("hal", &1).await.unwrap();
        assert!(s.update(&a.id, &2).await.unwrap());
        assert_eq!(s.get::<i32>(&a.id).await.unwrap().unwrap().data, 2);
        assert_eq!(s.revoke_all("hal").await.unwrap(), 1);
        assert!(s.get::<i32>(&a.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_epoch_outlives_max_lifetime() {
        let (s, _) = store();
        s.create("gina", &0).await.unwrap();
        s.revoke_all("gina").await.unwrap();
        let tag = tag_of("gina");
        match s.cache().ttl(&s.epoch_key(&tag, "gina")).await.unwrap() {
            crate::Ttl::ExpiresIn(left) => {
                assert!(left >= Duration::from_secs(300 + 60), "{left:?}");
            }
            other => panic!("epoch ttl {other:?}"),
        }
    }

    #[tokio::test]
    async fn ids_are_128_bit_tagged_and_redacted() {
        let (s, _) = store();
        let a = s.create("alice", &1).await.unwrap();
        let b = s.create("alice", &2).await.unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.expose().len(), 4 + 1 + 32);
        assert_eq!(a.id.tag(), b.id.tag(), "one user, one slot");
        assert!(!format!("{:?} {}", a.id, a.id).contains(a.id.random()));
        assert_eq!(SessionId::parse(a.id.expose()).unwrap(), a.id);
        for bad in [
            "",
            "abcd",
            "zzzz.0123456789abcdef0123456789abcdef",
            "abcd-0123456789abcdef0123456789abcdef",
        ] {
            assert!(matches!(
                SessionId::parse(bad),
                Err(CacheError::InvalidSessionId)
            ));
        }
        // The session, the index and the epoch share one slot.
        let keys = [
            s.session_key(a.id.tag(), a.id.random()),
            s.index_key(a.id.tag(), "alice"),
            s.epoch_key(a.id.tag(), "alice"),
        ];
        assert!(crate::same_slot(keys));
    }

    #[tokio::test]
    async fn sliding_expiry_and_absolute_lifetime() {
        let (s, clock) = store();
        let sess = s.create("bob", &"v1".to_owned()).await.unwrap();
        clock.advance(Duration::from_secs(50));
        assert!(s.touch(&sess.id).await.unwrap());
        clock.advance(Duration::from_secs(50));
        assert!(
            s.get::<String>(&sess.id).await.unwrap().is_some(),
            "touch slid the expiry"
        );
        assert!(s.update(&sess.id, &"v2".to_owned()).await.unwrap());
        assert_eq!(s.get::<String>(&sess.id).await.unwrap().unwrap().data, "v2");
        for _ in 0..4 {
            clock.advance(Duration::from_secs(50));
            s.touch(&sess.id).await.unwrap();
        }
        // 300 s after creation: past the absolute lifetime despite activity.
        clock.advance(Duration::from_secs(10));
        assert!(s.get::<String>(&sess.id).await.unwrap().is_none());
        assert!(!s.touch(&sess.id).await.unwrap());
    }

    #[tokio::test]
    async fn idle_sessions_expire_and_update_does_not_resurrect() {
        let (s, clock) = store();
        let sess = s.create("carol", &0).await.unwrap();
        clock.advance(Duration::from_secs(61));
        assert!(s.get::<i32>(&sess.id).await.unwrap().is_none());
        assert!(!s.update(&sess.id, &1).await.unwrap());
        assert!(!s.delete(&sess.id).await.unwrap());
    }

    #[tokio::test]
    async fn revoke_all_only_hits_that_user() {
        let (s, _) = store();
        let a1 = s.create("dave", &1).await.unwrap();
        let a2 = s.create("dave", &2).await.unwrap();
        let other = s.create("erin", &3).await.unwrap();
        assert_eq!(s.revoke_all("dave").await.unwrap(), 2);
        assert!(s.get::<i32>(&a1.id).await.unwrap().is_none());
        assert!(s.get::<i32>(&a2.id).await.unwrap().is_none());
        assert!(s.get::<i32>(&other.id).await.unwrap().is_some());
        // New sessions after the revocation work.
        let a3 = s.create("dave", &4).await.unwrap();
        assert_eq!(s.get::<i32>(&a3.id).await.unwrap().unwrap().data, 4);
        assert_eq!(s.revoke_all("nobody").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn sessions_outside_the_index_are_still_revoked() {
        let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
        let cache = MemoryCache::builder().clock(clock.clone()).build().unwrap();
        let cfg = SessionConfig {
            max_sessions_per_user: 1,
            ..SessionConfig::default()
        };
        let s = SessionStore::with_parts(cache, JsonCodec, cfg, Arc::new(clock)).unwrap();
        let old = s.create("frank", &1).await.unwrap();
        let new = s.create("frank", &2).await.unwrap(); // drops `old` from the index
        assert_eq!(s.revoke_all("frank").await.unwrap(), 1);
        assert!(
            s.get::<i32>(&old.id).await.unwrap().is_none(),
            "revoked by the epoch"
        );
        assert!(s.get::<i32>(&new.id).await.unwrap().is_none());
    }

    #[test]
    fn bad_config_is_rejected() {
        let cfg = SessionConfig {
            prefix: "s{x}:".into(),
            ..SessionConfig::default()
        };
        assert!(SessionStore::new(MemoryCache::new(), cfg).is_err());
        let cfg = SessionConfig {
            ttl: Duration::ZERO,
            ..SessionConfig::default()
        };
        assert!(SessionStore::new(MemoryCache::new(), cfg).is_err());
    }
}
