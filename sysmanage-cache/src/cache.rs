//! The [`ClusterCache`] trait, its options and limits.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{CacheError, KeyResult, Result};

/// Which existing state a `set` requires, as Redis' `NX` / `XX` flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum SetCondition {
    /// Write unconditionally. The default.
    #[default]
    Always,
    /// Write only when the key does not exist (`NX`).
    IfAbsent,
    /// Write only when the key already exists (`XX`).
    IfPresent,
}

/// Options of [`ClusterCache::set`].
///
/// ```
/// use std::time::Duration;
/// use sysmanage_cache::SetOptions;
/// let opts = SetOptions::ttl(Duration::from_secs(60)).if_absent();
/// assert_eq!(opts.ttl, Some(Duration::from_secs(60)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetOptions {
    /// Expire the key after this long (millisecond resolution; must be at
    /// least 1 ms). `None` (the default) stores the key without expiry and
    /// removes any previous expiry, as a plain Redis `SET` does.
    pub ttl: Option<Duration>,
    /// `NX` / `XX`. Default: [`SetCondition::Always`].
    pub condition: SetCondition,
}

impl SetOptions {
    /// Options with a TTL and no condition.
    pub fn ttl(ttl: Duration) -> Self {
        Self {
            ttl: Some(ttl),
            condition: SetCondition::Always,
        }
    }

    /// Adds `NX`: write only when the key does not exist.
    #[must_use]
    pub fn if_absent(mut self) -> Self {
        self.condition = SetCondition::IfAbsent;
        self
    }

    /// Adds `XX`: write only when the key exists.
    #[must_use]
    pub fn if_present(mut self) -> Self {
        self.condition = SetCondition::IfPresent;
        self
    }
}

/// The remaining lifetime of a key, as `PTTL` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Ttl {
    /// The key does not exist (`PTTL` → -2).
    Missing,
    /// The key exists and never expires (`PTTL` → -1).
    Persistent,
    /// The key expires after this long.
    ExpiresIn(Duration),
}

/// Input limits every backend enforces before touching data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Limits {
    /// Largest value accepted by `set`/`mset`. Default: 8 MiB.
    pub max_value_bytes: usize,
    /// Largest key accepted. Default: 64 KiB.
    pub max_key_bytes: usize,
    /// Most keys accepted by one `mget`/`mset`/`mdel`. Default: 100,000.
    pub max_keys_per_call: usize,
    /// Most keys one `scan_prefix` returns. Default: 10,000.
    pub max_scan_results: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_value_bytes: 8 << 20,
            max_key_bytes: 64 << 10,
            max_keys_per_call: 100_000,
            max_scan_results: 10_000,
        }
    }
}

impl Limits {
    /// These limits with `max_value_bytes` replaced.
    #[must_use]
    pub fn with_max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// Rejects a key over the limit.
    ///
    /// # Errors
    /// [`CacheError::KeyTooLarge`].
    pub fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.len() > self.max_key_bytes {
            return Err(CacheError::KeyTooLarge {
                size: key.len(),
                limit: self.max_key_bytes,
            });
        }
        Ok(())
    }

    /// Rejects a value over the limit.
    ///
    /// # Errors
    /// [`CacheError::ValueTooLarge`].
    pub fn check_value(&self, value: &[u8]) -> Result<()> {
        if value.len() > self.max_value_bytes {
            return Err(CacheError::ValueTooLarge {
                size: value.len(),
                limit: self.max_value_bytes,
            });
        }
        Ok(())
    }

    /// Rejects an empty or oversized key list and oversized keys.
    ///
    /// # Errors
    /// [`CacheError::EmptyKeys`], [`CacheError::TooManyKeys`], [`CacheError::KeyTooLarge`].
    pub fn check_keys<K: AsRef<[u8]>>(&self, op: &'static str, keys: &[K]) -> Result<()> {
        if keys.is_empty() {
            return Err(CacheError::EmptyKeys { op });
        }
        if keys.len() > self.max_keys_per_call {
            return Err(CacheError::TooManyKeys {
                op,
                count: keys.len(),
                limit: self.max_keys_per_call,
            });
        }
        keys.iter().try_for_each(|k| self.check_key(k.as_ref()))
    }

    /// Validates the limits themselves.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] when a limit is zero or above what
    /// Redis accepts (512 MiB for keys and values).
    pub fn validate(&self) -> Result<()> {
        const REDIS_MAX_BULK: usize = 512 << 20;
        for (field, v, max) in [
            (
                "limits.max_value_bytes",
                self.max_value_bytes,
                REDIS_MAX_BULK,
            ),
            ("limits.max_key_bytes", self.max_key_bytes, REDIS_MAX_BULK),
            (
                "limits.max_keys_per_call",
                self.max_keys_per_call,
                10_000_000,
            ),
            ("limits.max_scan_results", self.max_scan_results, 10_000_000),
        ] {
            sysmanage_core::duration::check_count(field, v, 1, max)?;
        }
        Ok(())
    }
}

/// Largest capacity of an event or invalidation channel (a broadcast
/// channel allocates it up front).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) const MAX_CHANNEL: usize = 1 << 20;

/// Rejects a TTL of zero or below one millisecond (Redis' resolution).
///
/// # Errors
/// [`CacheError::InvalidTtl`].
pub fn check_ttl(ttl: Duration) -> Result<u64> {
    if ttl.is_zero() {
        return Err(CacheError::InvalidTtl {
            ttl,
            reason: "must be greater than zero",
        });
    }
    let ms = ttl.as_millis();
    if ms == 0 {
        return Err(CacheError::InvalidTtl {
            ttl,
            reason: "must be at least 1 ms",
        });
    }
    u64::try_from(ms)
        .ok()
        .filter(|&ms| ms <= i64::MAX as u64 / 2)
        .ok_or(CacheError::InvalidTtl {
            ttl,
            reason: "is too large",
        })
}

/// A key-value cache spread over the slots of a cluster.
///
/// Keys and values are bytes; [`Typed`] adds serde on top. The
/// semantics are those of Redis: a `set` without TTL removes an earlier
/// expiry, `incr` keeps it, `NX`/`XX` make writes conditional, and expired
/// keys are invisible to every operation.
///
/// Multi-key operations accept keys from any slots. The outer `Result`
/// rejects bad input (an empty key list, a value over the limit) before
/// anything is sent; the inner per-key results, in input order, report keys
/// whose node failed with a typed error — a failure is never reported as a
/// miss.
///
/// Implemented by [`MemoryCache`](crate::MemoryCache) and, with the `redis`
/// feature, by `RedisCache`. Both pass the same conformance suite.
pub trait ClusterCache: Send + Sync + std::fmt::Debug {
    /// The value stored at `key`, or `None` when it is missing or expired.
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;

    /// Stores `value` at `key`. Returns whether it was written (`false` when
    /// the `NX`/`XX` condition was not met).
    ///
    /// # Errors
    /// [`CacheError::ValueTooLarge`], [`CacheError::InvalidTtl`] for bad input.
    fn set(
        &self,
        key: &[u8],
        value: &[u8],
        opts: SetOptions,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Removes `key`; returns whether it existed. On Redis, when a timeout
    /// made the call retry, `false` may also mean the first attempt
    /// deleted it (see the [`redis`](crate::redis) module docs).
    fn delete(&self, key: &[u8]) -> impl Future<Output = Result<bool>> + Send;

    /// Whether `key` exists (and has not expired).
    fn exists(&self, key: &[u8]) -> impl Future<Output = Result<bool>> + Send;

    /// Sets the key's expiry; returns `false` when the key does not exist.
    ///
    /// # Errors
    /// [`CacheError::InvalidTtl`] for a zero TTL.
    fn expire(&self, key: &[u8], ttl: Duration) -> impl Future<Output = Result<bool>> + Send;

    /// The key's remaining lifetime.
    fn ttl(&self, key: &[u8]) -> impl Future<Output = Result<Ttl>> + Send;

    /// Adds `by` to the integer at `key` (a missing key counts as 0) and
    /// returns the new value. The key's expiry is kept.
    ///
    /// # Errors
    /// [`CacheError::NotAnInteger`], [`CacheError::Overflow`].
    fn incr(&self, key: &[u8], by: i64) -> impl Future<Output = Result<i64>> + Send;

    /// The values of `keys`, in input order.
    ///
    /// # Errors
    /// [`CacheError::EmptyKeys`] for an empty list; per-key errors inside.
    fn mget<K: AsRef<[u8]> + Sync>(
        &self,
        keys: &[K],
    ) -> impl Future<Output = Result<Vec<KeyResult<Option<Vec<u8>>>>>> + Send;

    /// Stores every `(key, value)` pair with an optional TTL, in input order.
    ///
    /// Not atomic as a whole; check each per-key result. On Redis, without
    /// a TTL the pairs of one slot go out as one `MSET` and are written
    /// together; with a TTL each pair is its own `SET … PX`, so pairs of one
    /// slot can fail separately. The in-memory backend writes pair by pair
    /// and can fail part-way with [`CacheError::OutOfMemory`] at its bound.
    ///
    /// # Errors
    /// [`CacheError::EmptyKeys`], [`CacheError::ValueTooLarge`],
    /// [`CacheError::InvalidTtl`] for bad input; per-key errors inside.
    fn mset<K: AsRef<[u8]> + Sync, V: AsRef<[u8]> + Sync>(
        &self,
        entries: &[(K, V)],
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<Vec<KeyResult<()>>>> + Send;

    /// Removes `keys`; per key, whether it existed (with the caveat of
    /// [`delete`](Self::delete) about retries).
    ///
    /// # Errors
    /// [`CacheError::EmptyKeys`] for an empty list; per-key errors inside.
    fn mdel<K: AsRef<[u8]> + Sync>(
        &self,
        keys: &[K],
    ) -> impl Future<Output = Result<Vec<KeyResult<bool>>>> + Send;

    /// Up to `limit` live keys that start with `prefix`, in no particular
    /// order. `limit` is capped by [`Limits::max_scan_results`].
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] for a `limit` of zero.
    fn scan_prefix(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Vec<u8>>>> + Send;

    /// Shuts the cache down for every clone: stops background tasks, lets
    /// operations in flight finish until `deadline`, closes connections;
    /// later operations fail with [`CacheError::ShutDown`]. The default (an
    /// in-process cache holding no connection) does nothing.
    ///
    /// # Errors
    /// [`CacheError::Timeout`] when operations were still in flight at the
    /// deadline.
    fn shutdown(&self, deadline: Duration) -> impl Future<Output = Result<()>> + Send {
        let _ = deadline;
        std::future::ready(Ok(()))
    }
}

macro_rules! forward_cluster_cache {
    ($($ty:ty),*) => {$(
        impl<C: ClusterCache + ?Sized> ClusterCache for $ty {
            fn get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send {
                (**self).get(key)
            }
            fn set(&self, key: &[u8], value: &[u8], opts: SetOptions) -> impl Future<Output = Result<bool>> + Send {
                (**self).set(key, value, opts)
            }
            fn delete(&self, key: &[u8]) -> impl Future<Output = Result<bool>> + Send {
                (**self).delete(key)
            }
            fn exists(&self, key: &[u8]) -> impl Future<Output = Result<bool>> + Send {
                (**self).exists(key)
            }
            fn expire(&self, key: &[u8], ttl: Duration) -> impl Future<Output = Result<bool>> + Send {
                (**self).expire(key, ttl)
            }
            fn ttl(&self, key: &[u8]) -> impl Future<Output = Result<Ttl>> + Send {
                (**self).ttl(key)
            }
            fn incr(&self, key: &[u8], by: i64) -> impl Future<Output = Result<i64>> + Send {
                (**self).incr(key, by)
            }
            fn mget<K: AsRef<[u8]> + Sync>(&self, keys: &[K]) -> impl Future<Output = Result<Vec<KeyResult<Option<Vec<u8>>>>>> + Send {
                (**self).mget(keys)
            }
            fn mset<K: AsRef<[u8]> + Sync, V: AsRef<[u8]> + Sync>(&self, entries: &[(K, V)], ttl: Option<Duration>) -> impl Future<Output = Result<Vec<KeyResult<()>>>> + Send {
                (**self).mset(entries, ttl)
            }
            fn mdel<K: AsRef<[u8]> + Sync>(&self, keys: &[K]) -> impl Future<Output = Result<Vec<KeyResult<bool>>>> + Send {
                (**self).mdel(keys)
            }
            fn shutdown(&self, deadline: Duration) -> impl Future<Output = Result<()>> + Send {
                (**self).shutdown(deadline)
            }
            fn scan_prefix(&self, prefix: &[u8], limit: usize) -> impl Future<Output = Result<Vec<Vec<u8>>>> + Send {
                (**self).scan_prefix(prefix, limit)
            }
        }
    )*};
}

forward_cluster_cache!(&C, Arc<C>);

/// A boxed, `Send` future, as returned by [`DynClusterCache`].
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What `mget` returns: per key, in input order, the value or `None`.
pub type MgetResult = Result<Vec<KeyResult<Option<Vec<u8>>>>>;

/// The object-safe twin of [`ClusterCache`], for holding a cache whose type
/// is chosen at run time (`Arc<dyn DynClusterCache>`).
///
/// Every `ClusterCache` implements it; `dyn DynClusterCache` implements
/// `ClusterCache` again, so `Arc<dyn DynClusterCache>` works wherever a
/// `ClusterCache` is expected (e.g. [`Typed`], a session store). Each call
/// costs one allocation for the boxed future.
///
/// ```
/// use std::sync::Arc;
/// use sysmanage_cache::{ClusterCache, DynClusterCache, MemoryCache, SetOptions};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sysmanage_cache::CacheError> {
/// let cache: Arc<dyn DynClusterCache> = Arc::new(MemoryCache::new());
/// cache.set(b"k", b"v", SetOptions::default()).await?;
/// let got = cache.mget(&[&b"k"[..], &b"missing"[..]]).await?;
/// assert_eq!(got[0].as_ref().unwrap().as_deref(), Some(&b"v"[..]));
/// assert_eq!(got[1].as_ref().unwrap(), &None);
/// # Ok(())
/// # }
/// ```
pub trait DynClusterCache: Send + Sync + std::fmt::Debug {
    /// [`ClusterCache::get`].
    fn dyn_get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Vec<u8>>>>;
    /// [`ClusterCache::set`].
    fn dyn_set<'a>(
        &'a self,
        key: &'a [u8],
        value: &'a [u8],
        opts: SetOptions,
    ) -> BoxFuture<'a, Result<bool>>;
    /// [`ClusterCache::delete`].
    fn dyn_delete<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<bool>>;
    /// [`ClusterCache::exists`].
    fn dyn_exists<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<bool>>;
    /// [`ClusterCache::expire`].
    fn dyn_expire<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<bool>>;
    /// [`ClusterCache::ttl`].
    fn dyn_ttl<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Ttl>>;
    /// [`ClusterCache::incr`].
    fn dyn_incr<'a>(&'a self, key: &'a [u8], by: i64) -> BoxFuture<'a, Result<i64>>;
    /// [`ClusterCache::mget`].
    fn dyn_mget<'a>(&'a self, keys: &'a [&'a [u8]]) -> BoxFuture<'a, MgetResult>;
    /// [`ClusterCache::mset`].
    fn dyn_mset<'a>(
        &'a self,
        entries: &'a [(&'a [u8], &'a [u8])],
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<Vec<KeyResult<()>>>>;
    /// [`ClusterCache::mdel`].
    fn dyn_mdel<'a>(&'a self, keys: &'a [&'a [u8]]) -> BoxFuture<'a, Result<Vec<KeyResult<bool>>>>;
    /// [`ClusterCache::scan_prefix`].
    fn dyn_scan_prefix<'a>(
        &'a self,
        prefix: &'a [u8],
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Vec<u8>>>>;
    /// [`ClusterCache::shutdown`].
    fn dyn_shutdown(&self, deadline: Duration) -> BoxFuture<'_, Result<()>>;
}

impl<C: ClusterCache> DynClusterCache for C {
    fn dyn_get<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(self.get(key))
    }
    fn dyn_set<'a>(
        &'a self,
        key: &'a [u8],
        value: &'a [u8],
        opts: SetOptions,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.set(key, value, opts))
    }
    fn dyn_delete<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.delete(key))
    }
    fn dyn_exists<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.exists(key))
    }
    fn dyn_expire<'a>(&'a self, key: &'a [u8], ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.expire(key, ttl))
    }
    fn dyn_ttl<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Ttl>> {
        Box::pin(self.ttl(key))
    }
    fn dyn_incr<'a>(&'a self, key: &'a [u8], by: i64) -> BoxFuture<'a, Result<i64>> {
        Box::pin(self.incr(key, by))
    }
    fn dyn_mget<'a>(&'a self, keys: &'a [&'a [u8]]) -> BoxFuture<'a, MgetResult> {
        Box::pin(self.mget(keys))
    }
    fn dyn_mset<'a>(
        &'a self,
        entries: &'a [(&'a [u8], &'a [u8])],
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<Vec<KeyResult<()>>>> {
        Box::pin(self.mset(entries, ttl))
    }
    fn dyn_mdel<'a>(&'a self, keys: &'a [&'a [u8]]) -> BoxFuture<'a, Result<Vec<KeyResult<bool>>>> {
        Box::pin(self.mdel(keys))
    }
    fn dyn_scan_prefix<'a>(
        &'a self,
        prefix: &'a [u8],
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Vec<u8>>>> {
        Box::pin(self.scan_prefix(prefix, limit))
    }
    fn dyn_shutdown(&self, deadline: Duration) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.shutdown(deadline))
    }
}

impl ClusterCache for dyn DynClusterCache {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.dyn_get(key).await
    }
    async fn shutdown(&self, deadline: Duration) -> Result<()> {
        self.dyn_shutdown(deadline).await
    }
    async fn set(&self, key: &[u8], value: &[u8], opts: SetOptions) -> Result<bool> {
        self.dyn_set(key, value, opts).await
    }
    async fn delete(&self, key: &[u8]) -> Result<bool> {
        self.dyn_delete(key).await
    }
    async fn exists(&self, key: &[u8]) -> Result<bool> {
        self.dyn_exists(key).await
    }
    async fn expire(&self, key: &[u8], ttl: Duration) -> Result<bool> {
        self.dyn_expire(key, ttl).await
    }
    async fn ttl(&self, key: &[u8]) -> Result<Ttl> {
        self.dyn_ttl(key).await
    }
    async fn incr(&self, key: &[u8], by: i64) -> Result<i64> {
        self.dyn_incr(key, by).await
    }
    async fn mget<K: AsRef<[u8]> + Sync>(
        &self,
        keys: &[K],
    ) -> Result<Vec<KeyResult<Option<Vec<u8>>>>> {
        let keys: Vec<&[u8]> = keys.iter().map(AsRef::as_ref).collect();
        self.dyn_mget(&keys).await
    }
    async fn mset<K: AsRef<[u8]> + Sync, V: AsRef<[u8]> + Sync>(
        &self,
        entries: &[(K, V)],
        ttl: Option<Duration>,
    ) -> Result<Vec<KeyResult<()>>> {
        let entries: Vec<(&[u8], &[u8])> = entries
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        self.dyn_mset(&entries, ttl).await
    }
    async fn mdel<K: AsRef<[u8]> + Sync>(&self, keys: &[K]) -> Result<Vec<KeyResult<bool>>> {
        let keys: Vec<&[u8]> = keys.iter().map(AsRef::as_ref).collect();
        self.dyn_mdel(&keys).await
    }
    async fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<Vec<u8>>> {
        self.dyn_scan_prefix(prefix, limit).await
    }
}

/// Turns typed values into bytes and back.
pub trait Codec: Send + Sync + std::fmt::Debug {
    /// Encodes `value`.
    ///
    /// # Errors
    /// [`CacheError::Codec`].
    fn encode<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>>;
    /// Decodes `bytes`.
    ///
    /// # Errors
    /// [`CacheError::Codec`].
    fn decode<T: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> Result<T>;
}

/// The default codec: JSON via `serde_json`.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    fn encode<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        serde_json::to_vec(value).map_err(|e| CacheError::codec("json", e))
    }
    fn decode<T: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| CacheError::codec("json", e))
    }
}

/// Typed access to any [`ClusterCache`] through a [`Codec`] (JSON by default).
///
/// ```
/// use sysmanage_cache::{MemoryCache, SetOptions, Typed};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sysmanage_cache::CacheError> {
/// let cache = Typed::new(MemoryCache::new());
/// cache.set(b"answer", &42u32, SetOptions::default()).await?;
/// assert_eq!(cache.get::<u32>(b"answer").await?, Some(42));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Typed<C, K = JsonCodec> {
    cache: C,
    codec: K,
}

impl<C: ClusterCache> Typed<C, JsonCodec> {
    /// Wraps `cache` with the JSON codec.
    pub fn new(cache: C) -> Self {
        Self {
            cache,
            codec: JsonCodec,
        }
    }
}

impl<C: ClusterCache, K: Codec> Typed<C, K> {
    /// Wraps `cache` with `codec`.
    pub fn with_codec(cache: C, codec: K) -> Self {
        Self { cache, codec }
    }

    /// The wrapped cache.
    pub fn inner(&self) -> &C {
        &self.cache
    }

    /// The codec.
    pub fn codec(&self) -> &K {
        &self.codec
    }

    /// Decoded value at `key`.
    ///
    /// # Errors
    /// As [`ClusterCache::get`], plus [`CacheError::Codec`].
    pub async fn get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.cache.get(key).await? {
            Some(b) => self.codec.decode(&b).map(Some),
            None => Ok(None),
        }
    }

    /// Encodes and stores `value`.
    ///
    /// # Errors
    /// As [`ClusterCache::set`], plus [`CacheError::Codec`].
    pub async fn set<T: serde::Serialize + ?Sized + Sync>(
        &self,
        key: &[u8],
        value: &T,
        opts: SetOptions,
    ) -> Result<bool> {
        let bytes = self.codec.encode(value)?;
        self.cache.set(key, &bytes, opts).await
    }

    /// Decoded values of `keys`, in input order; a value that fails to decode
    /// is a per-key [`CacheError::Codec`].
    ///
    /// # Errors
    /// As [`ClusterCache::mget`].
    pub async fn mget<T: serde::de::DeserializeOwned, Q: AsRef<[u8]> + Sync>(
        &self,
        keys: &[Q],
    ) -> Result<Vec<KeyResult<Option<T>>>> {
        let raw = self.cache.mget(keys).await?;
        Ok(raw
            .into_iter()
            .map(|r| r.and_then(|v| v.map(|b| self.codec.decode(&b)).transpose()))
            .collect())
    }

    /// Encodes and stores every pair.
    ///
    /// # Errors
    /// As [`ClusterCache::mset`], plus [`CacheError::Codec`].
    pub async fn mset<T: serde::Serialize + Sync, Q: AsRef<[u8]> + Sync>(
        &self,
        entries: &[(Q, T)],
        ttl: Option<Duration>,
    ) -> Result<Vec<KeyResult<()>>> {
        let encoded = entries
            .iter()
            .map(|(k, v)| Ok((k.as_ref(), self.codec.encode(v)?)))
            .collect::<Result<Vec<_>>>()?;
        self.cache.mset(&encoded, ttl).await
    }
}
