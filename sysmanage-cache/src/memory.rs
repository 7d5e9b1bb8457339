//! The in-memory backend.
//!
//! [`MemoryCache`] implements [`ClusterCache`] in process with Redis'
//! semantics: TTLs at millisecond resolution against an injectable
//! [`Clock`], `NX`/`XX`, `incr` that keeps the expiry and rejects what Redis
//! rejects, per-slot key counts, and a memory bound with either Redis'
//! `noeviction` behaviour (writes fail with [`CacheError::OutOfMemory`]) or
//! least-recently-used eviction. It is the backend for tests, single-process
//! deployments and the conformance suite's reference.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use sysmanage_core::duration::deadline;

use sysmanage_core::{Clock, SystemClock};

use crate::cache::{ClusterCache, Limits, SetCondition, SetOptions, Ttl, check_ttl};
use crate::error::{CacheError, KeyResult, Result};
use crate::slot::{SLOT_COUNT, slot};

/// Bytes charged per entry on top of its key and value, for the memory bound.
pub const ENTRY_OVERHEAD_BYTES: usize = 64;

/// What happens when a write would exceed [`MemoryConfig::max_memory_bytes`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Eviction {
    /// Evict expired keys, then the least recently used ones (Redis'
    /// `allkeys-lru`, exact rather than sampled). The default.
    #[default]
    Lru,
    /// Evict expired keys only, then fail the write with
    /// [`CacheError::OutOfMemory`] (Redis' `noeviction`).
    NoEviction,
}

/// Settings of [`MemoryCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Memory bound: keys + values + [`ENTRY_OVERHEAD_BYTES`] per entry.
    /// Default: 64 MiB.
    pub max_memory_bytes: usize,
    /// Behaviour at the bound. Default: [`Eviction::Lru`].
    pub eviction: Eviction,
    /// Input limits. Default: [`Limits::default`].
    pub limits: Limits,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            max_memory_bytes: 64 << 20,
            eviction: Eviction::Lru,
            limits: Limits::default(),
        }
    }
}

/// Counters of a [`MemoryCache`], named as Redis' `INFO` fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct MemoryStats {
    /// Live and not-yet-collected expired keys.
    pub keys: u64,
    /// Bytes charged against the bound.
    pub used_memory: u64,
    /// The bound.
    pub maxmemory: u64,
    /// Reads that found a value.
    pub keyspace_hits: u64,
    /// Reads that found none.
    pub keyspace_misses: u64,
    /// Keys evicted by the memory bound.
    pub evicted_keys: u64,
    /// Keys removed because they expired.
    pub expired_keys: u64,
}

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
    tick: u64,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| now < t)
    }
}

#[derive(Debug)]
struct State {
    map: HashMap<Vec<u8>, Entry>,
    lru: BTreeMap<u64, Vec<u8>>,
    /// Keys with an expiry, soonest first: purging expired keys costs
    /// O(expired · log n), not a scan of the whole map.
    expiry: BTreeSet<(Instant, Vec<u8>)>,
    tick: u64,
    slot_keys: Vec<u32>,
    stats: MemoryStats,
}

fn charge(key: &[u8], value: &[u8]) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD_BYTES
}

impl State {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The live entry at `key`, removing it first when it has expired.
    fn live(&mut self, key: &[u8], now: Instant) -> Option<&mut Entry> {
        let expired = match self.map.get(key) {
            None => return None,
            Some(e) => !e.live(now),
        };
        if expired {
            self.remove(key);
            self.stats.expired_keys += 1;
            return None;
        }
        let tick = self.next_tick();
        let e = self.map.get_mut(key)?;
        self.lru.remove(&e.tick);
        e.tick = tick;
        self.lru.insert(tick, key.to_vec());
        Some(e)
    }

    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let e = self.map.remove(key)?;
        self.lru.remove(&e.tick);
        if let Some(t) = e.expires {
            self.expiry.remove(&(t, key.to_vec()));
        }
        self.stats.used_memory -= charge(key, &e.value) as u64;
        self.stats.keys -= 1;
        self.slot_keys[usize::from(slot(key))] -= 1;
        Some(e)
    }

    fn insert(&mut self, key: &[u8], value: Vec<u8>, expires: Option<Instant>) {
        if self.remove(key).is_some() {
            // replaced: counters are restored below
        }
        let tick = self.next_tick();
        self.stats.used_memory += charge(key, &value) as u64;
        self.stats.keys += 1;
        self.slot_keys[usize::from(slot(key))] += 1;
        self.lru.insert(tick, key.to_vec());
        if let Some(t) = expires {
            self.expiry.insert((t, key.to_vec()));
        }
        self.map.insert(
            key.to_vec(),
            Entry {
                value,
                expires,
                tick,
            },
        );
    }

    /// Sets the expiry of the live entry at `key`; `false` when there is none.
    fn set_expiry(&mut self, key: &[u8], expires: Instant, now: Instant) -> bool {
        let Some(e) = self.live(key, now) else {
            return false;
        };
        let old = e.expires.replace(expires);
        if let Some(t) = old {
            self.expiry.remove(&(t, key.to_vec()));
        }
        self.expiry.insert((expires, key.to_vec()));
        true
    }

    fn purge_expired(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some((t, key)) = self.expiry.first().cloned() {
            if t > now {
                break;
            }
            self.remove(&key);
            n += 1;
        }
        self.stats.expired_keys += n as u64;
        n
    }

    /// Makes room for `needed` more bytes (after freeing `freed` by
    /// replacing), honouring the eviction policy. `protect` is never evicted.
    fn make_room(
        &mut self,
        needed: usize,
        freed: usize,
        protect: &[u8],
        config: &MemoryConfig,
        now: Instant,
    ) -> Result<()> {
        let limit = config.max_memory_bytes as u64;
        let fits = |s: &Self| {
            s.stats
                .used_memory
                .saturating_sub(freed as u64)
                .saturating_add(needed as u64)
                <= limit
        };
        if needed as u64 > limit {
            return Err(CacheError::OutOfMemory {
                needed,
                limit: config.max_memory_bytes,
            });
        }
        if fits(self) {
            return Ok(());
        }
        self.purge_expired(now);
        if fits(self) {
            return Ok(());
        }
        if config.eviction == Eviction::NoEviction {
            return Err(CacheError::OutOfMemory {
                needed,
                limit: config.max_memory_bytes,
            });
        }
        while !fits(self) {
            let victim = self.lru.values().find(|k| k.as_slice() != protect).cloned();
            let Some(victim) = victim else {
                return Err(CacheError::OutOfMemory {
                    needed,
                    limit: config.max_memory_bytes,
                });
            };
            self.remove(&victim);
            self.stats.evicted_keys += 1;
        }
        Ok(())
    }

    fn write(
        &mut self,
        key: &[u8],
        value: &[u8],
        expires: Option<Instant>,
        config: &MemoryConfig,
        now: Instant,
    ) -> Result<()> {
        // An expired entry goes first: it must not count as memory this
        // write frees (purging it would free it a second time).
        let freed = self.live(key, now).map_or(0, |e| charge(key, &e.value));
        self.make_room(charge(key, value), freed, key, config, now)?;
        self.insert(key, value.to_vec(), expires);
        Ok(())
    }
}

/// An in-process [`ClusterCache`] with Redis' semantics. Clones share data.
///
/// ```
/// use std::time::Duration;
/// use sysmanage_cache::{ClusterCache, MemoryCache, SetOptions, Ttl};
/// use sysmanage_core::{ManualClock, Timestamp};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sysmanage_cache::CacheError> {
/// let clock = ManualClock::new(Timestamp::from_secs(0));
/// let cache = MemoryCache::builder().clock(clock.clone()).build()?;
/// assert!(cache.set(b"k", b"v", SetOptions::ttl(Duration::from_secs(10)).if_absent()).await?);
/// assert!(!cache.set(b"k", b"w", SetOptions::default().if_absent()).await?);
/// clock.advance(Duration::from_secs(4));
/// assert_eq!(cache.ttl(b"k").await?, Ttl::ExpiresIn(Duration::from_secs(6)));
/// clock.advance(Duration::from_secs(6));
/// assert_eq!(cache.get(b"k").await?, None);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MemoryCache {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    config: MemoryConfig,
}

/// Builder for [`MemoryCache`].
#[must_use = "a builder does nothing until `.build()` is called"]
#[derive(Debug)]
pub struct MemoryCacheBuilder {
    config: MemoryConfig,
    clock: Arc<dyn Clock>,
}

impl MemoryCacheBuilder {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: MemoryConfig) -> Self {
        self.config = config;
        self
    }

    /// Memory bound in bytes. Default: 64 MiB.
    pub fn max_memory_bytes(mut self, bytes: usize) -> Self {
        self.config.max_memory_bytes = bytes;
        self
    }

    /// Eviction policy. Default: [`Eviction::Lru`].
    pub fn eviction(mut self, eviction: Eviction) -> Self {
        self.config.eviction = eviction;
        self
    }

    /// Input limits. Default: [`Limits::default`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// The clock TTLs are measured against. Default: [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the cache.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] for a zero memory bound or limit.
    pub fn build(self) -> Result<MemoryCache> {
        if self.config.max_memory_bytes == 0 {
            return Err(CacheError::invalid(
                "memory.max_memory_bytes",
                "must be greater than zero",
            ));
        }
        self.config.limits.validate()?;
        Ok(MemoryCache {
            inner: Arc::new(Shared {
                state: Mutex::new(State {
                    map: HashMap::new(),
                    lru: BTreeMap::new(),
                    expiry: BTreeSet::new(),
                    tick: 0,
                    slot_keys: vec![0; usize::from(SLOT_COUNT)],
                    stats: MemoryStats {
                        maxmemory: self.config.max_memory_bytes as u64,
                        ..MemoryStats::default()
                    },
                }),
                clock: self.clock,
                config: self.config,
            }),
        })
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryCache {
    /// A cache with the default [`MemoryConfig`] and the system clock.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .unwrap_or_else(|_| unreachable!("the default configuration is valid"))
    }

    /// A builder starting from the defaults.
    pub fn builder() -> MemoryCacheBuilder {
        MemoryCacheBuilder {
            config: MemoryConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MemoryConfig {
        &self.inner.config
    }

    /// Counters, as Redis' `INFO` reports them.
    pub fn stats(&self) -> MemoryStats {
        self.lock().stats
    }

    /// Keys stored in `slot`, as `CLUSTER COUNTKEYSINSLOT` (expired keys not
    /// yet collected included, as in Redis).
    pub fn keys_in_slot(&self, slot: u16) -> u32 {
        self.lock()
            .slot_keys
            .get(usize::from(slot))
            .copied()
            .unwrap_or(0)
    }

    /// Removes every expired key now; returns how many.
    pub fn purge_expired(&self) -> usize {
        let now = self.inner.clock.now();
        self.lock().purge_expired(now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn limits(&self) -> &Limits {
        &self.inner.config.limits
    }

    fn set_sync(&self, key: &[u8], value: &[u8], opts: SetOptions) -> Result<bool> {
        let limits = self.limits();
        limits.check_key(key)?;
        limits.check_value(value)?;
        let ttl = opts.ttl.map(check_ttl).transpose()?;
        let now = self.inner.clock.now();
        let mut st = self.lock();
        let exists = st.live(key, now).is_some();
        let allowed = match opts.condition {
            SetCondition::Always => true,
            SetCondition::IfAbsent => !exists,
            SetCondition::IfPresent => exists,
        };
        if !allowed {
            return Ok(false);
        }
        let expires = ttl.map(|ms| deadline(now, Duration::from_millis(ms)));
        st.write(key, value, expires, &self.inner.config, now)?;
        Ok(true)
    }
}

/// Parses an integer the way Redis' `string2ll` does: optional `-`, no `+`,
/// no leading zeros, no spaces, at most 20 bytes.
fn parse_redis_int(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    if digits.is_empty()
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits[0] == b'0' && (digits.len() > 1 || b[0] == b'-'))
    {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

impl ClusterCache for MemoryCache {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.limits().check_key(key)?;
        let now = self.inner.clock.now();
        let mut st = self.lock();
        let v = st.live(key, now).map(|e| e.value.clone());
        if v.is_some() {
            st.stats.keyspace_hits += 1;
        } else {
            st.stats.keyspace_misses += 1;
        }
        Ok(v)
    }

    async fn set(&self, key: &[u8], value: &[u8], opts: SetOptions) -> Result<bool> {
        self.set_sync(key, value, opts)
    }

    async fn delete(&self, key: &[u8]) -> Result<bool> {
        self.limits().check_key(key)?;
        let now = self.inner.clock.now();
        let mut st = self.lock();
        if st.live(key, now).is_none() {
            return Ok(false);
        }
        Ok(st.remove(key).is_some())
    }

    async fn exists(&self, key: &[u8]) -> Result<bool> {
        self.limits().check_key(key)?;
        let now = self.inner.clock.now();
        Ok(self.lock().live(key, now).is_some())
    }

    async fn expire(&self, key: &[u8], ttl: Duration) -> Result<bool> {
        self.limits().check_key(key)?;
        let ms = check_ttl(ttl)?;
        let now = self.inner.clock.now();
        Ok(self
            .lock()
            .set_expiry(key, deadline(now, Duration::from_millis(ms)), now))
    }

    async fn ttl(&self, key: &[u8]) -> Result<Ttl> {
        self.limits().check_key(key)?;
        let now = self.inner.clock.now();
        let mut st = self.lock();
        Ok(match st.live(key, now) {
            None => Ttl::Missing,
            Some(Entry { expires: None, .. }) => Ttl::Persistent,
            Some(Entry {
                expires: Some(t), ..
            }) => {
                // Millisecond resolution, as PTTL.
                let left = t.saturating_duration_since(now);
                Ttl::ExpiresIn(Duration::from_millis(left.as_millis() as u64))
            }
        })
    }

    async fn incr(&self, key: &[u8], by: i64) -> Result<i64> {
        self.limits().check_key(key)?;
        let now = self.inner.clock.now();
        let mut st = self.lock();
        let (current, expires) = match st.live(key, now) {
            None => (0, None),
            Some(e) => (
                parse_redis_int(&e.value).ok_or(CacheError::NotAnInteger)?,
                e.expires,
            ),
        };
        let next = current.checked_add(by).ok_or(CacheError::Overflow)?;
        let bytes = next.to_string().into_bytes();
        st.write(key, &bytes, expires, &self.inner.config, now)?;
        Ok(next)
    }

    async fn mget<K: AsRef<[u8]> + Sync>(
        &self,
        keys: &[K],
    ) -> Result<Vec<KeyResult<Option<Vec<u8>>>>> {
        self.limits().check_keys("mget", keys)?;
        let now = self.inner.clock.now();
        let mut st = self.lock();
        Ok(keys
            .iter()
            .map(|k| {
                let v = st.live(k.as_ref(), now).map(|e| e.value.clone());
                if v.is_some() {
                    st.stats.keyspace_hits += 1;
                } else {
                    st.stats.keyspace_misses += 1;
                }
                Ok(v)
            })
            .collect())
    }

    async fn mset<K: AsRef<[u8]> + Sync, V: AsRef<[u8]> + Sync>(
        &self,
        entries: &[(K, V)],
        ttl: Option<Duration>,
    ) -> Result<Vec<KeyResult<()>>> {
        let limits = self.limits();
        if entries.is_empty() {
            return Err(CacheError::EmptyKeys { op: "mset" });
        }
        if entries.len() > limits.max_keys_per_call {
            return Err(CacheError::TooManyKeys {
                op: "mset",
                count: entries.len(),
                limit: limits.max_keys_per_call,
            });
        }
        for (k, v) in entries {
            limits.check_key(k.as_ref())?;
            limits.check_value(v.as_ref())?;
        }
        let ttl = ttl.map(check_ttl).transpose()?;
        let now = self.inner.clock.now();
        let expires = ttl.map(|ms| deadline(now, Duration::from_millis(ms)));
        let mut st = self.lock();
        Ok(entries
            .iter()
            .map(|(k, v)| st.write(k.as_ref(), v.as_ref(), expires, &self.inner.config, now))
            .collect())
    }

    async fn mdel<K: AsRef<[u8]> + Sync>(&self, keys: &[K]) -> Result<Vec<KeyResult<bool>>> {
        self.limits().check_keys("mdel", keys)?;
        let now = self.inner.clock.now();
        let mut st = self.lock();
        Ok(keys
            .iter()
            .map(|k| {
                let k = k.as_ref();
                Ok(st.live(k, now).is_some() && st.remove(k).is_some())
            })
            .collect())
    }

    async fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<Vec<u8>>> {
        if limit == 0 {
            return Err(CacheError::invalid("limit", "must be greater than zero"));
        }
        let limit = limit.min(self.limits().max_scan_results);
        let now = self.inner.clock.now();
        let st = self.lock();
        Ok(st
            .map
            .iter()
            .filter(|(k, e)| k.starts_with(prefix) && e.live(now))
            .map(|(k, _)| k.clone())
            .take(limit)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysmanage_core::{ManualClock, Timestamp};

    #[test]
    fn integers_parse_like_redis() {
        for (s, want) in [
            ("0", Some(0)),
            ("-1", Some(-1)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("+1", None),
            ("01", None),
            ("-0", None),
            (" 1", None),
            ("1.5", None),
            ("", None),
            ("-", None),
        ] {
            assert_eq!(parse_redis_int(s.as_bytes()), want, "{s:?}");
        }
    }

    #[tokio::test]
    async fn lru_evicts_least_recently_used() {
        let cache = MemoryCache::builder()
            .max_memory_bytes(3 * (ENTRY_OVERHEAD_BYTES + 2))
            .build()
            .unwrap();
        for k in [b"a", b"b", b"c"] {
            cache.set(k, b"v", SetOptions::default()).await.unwrap();
        }
        // Touch "a" so "b" is the least recently used.
        assert!(cache.get(b"a").await.unwrap().is_some());
        cache.set(b"d", b"v", SetOptions::default()).await.unwrap();
        assert_eq!(cache.get(b"b").await.unwrap(), None);
        assert!(cache.get(b"a").await.unwrap().is_some());
        assert_eq!(cache.stats().evicted_keys, 1);
        assert!(cache.stats().used_memory <= cache.stats().maxmemory);
    }

    #[tokio::test]
    async fn mset_over_an_expired_entry_at_the_bound_does_not_underflow() {
        let clock = ManualClock::new(Timestamp::from_secs(1_000));
        let big = ENTRY_OVERHEAD_BYTES + 1 + 10;
        let small = ENTRY_OVERHEAD_BYTES + 1 + 1;
        let cache = MemoryCache::builder()
            .clock(clock.clone())
            .max_memory_bytes(big + small)
            .build()
            .unwrap();
        cache
            .set(b"a", &[b'x'; 10], SetOptions::ttl(Duration::from_secs(1)))
            .await
            .unwrap();
        cache.set(b"b", b"v", SetOptions::default()).await.unwrap();
        clock.advance(Duration::from_secs(2));
        // "a" expired; its new value is larger than its old one, so the
        // write needs a purge, which removes the expired "a".
        let res = cache.mset(&[(b"a", [b'y'; 11])], None).await.unwrap();
        assert!(res[0].is_ok(), "{res:?}");
        assert_eq!(cache.get(b"a").await.unwrap(), Some(vec![b'y'; 11]));
        assert!(cache.stats().used_memory <= cache.stats().maxmemory);
    }

    #[tokio::test]
    async fn a_full_cache_purges_keys_expired_by_a_shortened_ttl_before_evicting() {
        let clock = ManualClock::new(Timestamp::from_secs(1_000));
        let cache = MemoryCache::builder()
            .clock(clock.clone())
            .max_memory_bytes(3 * (ENTRY_OVERHEAD_BYTES + 2))
            .build()
            .unwrap();
        let long = SetOptions::ttl(Duration::from_secs(600));
        cache.set(b"a", b"v", long).await.unwrap();
        cache.set(b"b", b"v", SetOptions::default()).await.unwrap();
        cache.set(b"c", b"v", long).await.unwrap();
        assert!(cache.expire(b"a", Duration::from_secs(1)).await.unwrap());
        clock.advance(Duration::from_secs(2));
        cache.set(b"d", b"v", SetOptions::default()).await.unwrap();
        let st = cache.stats();
        assert_eq!((st.expired_keys, st.evicted_keys), (1, 0), "{st:?}");
        for k in [b"b", b"c", b"d"] {
            assert!(cache.exists(k).await.unwrap());
        }
    }

    #[tokio::test]
    async fn noeviction_rejects_writes_at_the_bound() {
        let cache = MemoryCache::builder()
            .max_memory_bytes(2 * (ENTRY_OVERHEAD_BYTES + 2))
            .eviction(Eviction::NoEviction)
            .build()
            .unwrap();
        cache.set(b"a", b"v", SetOptions::default()).await.unwrap();
        cache.set(b"b", b"v", SetOptions::default()).await.unwrap();
        let err = cache
            .set(b"c", b"v", SetOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, CacheError::OutOfMemory { .. }), "{err:?}");
        // Overwriting in place still fits.
        cache.set(b"a", b"w", SetOptions::default()).await.unwrap();
        assert_eq!(cache.get(b"a").await.unwrap().as_deref(), Some(&b"w"[..]));
    }

    #[tokio::test]
    async fn slot_counts_follow_writes_and_deletes() {
        let cache = MemoryCache::new();
        let s = slot(b"{user1000}.following");
        cache
            .mset(
                &[("{user1000}.following", "1"), ("{user1000}.followers", "2")],
                None,
            )
            .await
            .unwrap();
        assert_eq!(cache.keys_in_slot(s), 2);
        cache.delete(b"{user1000}.following").await.unwrap();
        assert_eq!(cache.keys_in_slot(s), 1);
        assert_eq!(cache.stats().keys, 1);
    }

    #[test]
    fn zero_bound_is_rejected() {
        let err = MemoryCache::builder()
            .max_memory_bytes(0)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("max_memory_bytes"), "{err}");
    }
}
