//! A two-tier cache: a bounded in-process L1 in front of any
//! [`ClusterCache`] (the L2), with invalidation, bounded staleness and
//! stampede protection.
//!
//! [`TieredCache`] implements [`ClusterCache`] itself, so it drops in where
//! the L2 was used. Reads try L1 first; misses go to L2 and fill L1; writes
//! go to L2 first and then remove the key from L1.
//!
//! * **L1** is a [moka](https://docs.rs/moka) cache bounded by entry count
//!   and by weight (key + value bytes). Each entry lives at most
//!   [`TieredConfig::local_ttl`], shortened by up to
//!   [`TieredConfig::ttl_jitter`] so entries filled together do not expire
//!   together, and never longer than the key's remaining L2 TTL
//!   ([`TieredConfig::clamp_to_l2_ttl`]). Misses may be cached too
//!   ([`TieredConfig::negative_ttl`]).
//! * **Coherence.** Without a tracker, an instance sees its own writes at
//!   once and other writers' within `local_ttl`. With the `redis` feature,
//!   `TieredCache::with_tracking` keeps one RESP3 connection per primary in
//!   `CLIENT TRACKING ON BCAST PREFIX …` mode: a write by any client to a
//!   tracked key removes it from every instance's L1. While any primary is
//!   not tracked (connection lost, new primary after a failover, before the
//!   first subscription) L1 is flushed and bypassed, so lost invalidations
//!   never leave stale entries behind; `local_ttl` bounds staleness
//!   regardless.
//! * **Fill races.** A fill that read L2 before an invalidation of its key
//!   (or a flush) is dropped: each fill takes a ticket (a global epoch and a
//!   per-key-shard counter) before reading L2 and re-checks it after
//!   inserting.
//! * **Stampede protection.** Concurrent misses of one key share a single L2
//!   read, and with [`TieredCache::get_or_load`] a single origin load. With
//!   [`TieredConfig::early_refresh_beta`] a hit may refresh the entry ahead
//!   of its expiry with probability rising towards it (XFetch,
//!   Vattani et al., VLDB 2015).
//! * **Stats.** [`TieredCache::stats`] returns a serde [`TieredStats`]:
//!   hits, misses, fills, invalidations and flushes of L1, hits and misses of
//!   L2, origin loads, coalesced waiters, tracking state.
//!
//! ```
//! use std::time::Duration;
//! use sysmanage_cache::tiered::{TieredCache, TieredConfig};
//! use sysmanage_cache::{ClusterCache, MemoryCache, SetOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sysmanage_cache::CacheError> {
//! let cache = TieredCache::new(MemoryCache::new(), TieredConfig::default())?;
//! cache.set(b"user:1", b"ada", SetOptions::ttl(Duration::from_secs(60))).await?;
//! assert_eq!(cache.get(b"user:1").await?.as_deref(), Some(&b"ada"[..])); // L2, fills L1
//! assert_eq!(cache.get(b"user:1").await?.as_deref(), Some(&b"ada"[..])); // L1
//! let loaded = cache
//!     .get_or_load(b"user:2", Some(Duration::from_secs(60)), || async {
//!         Ok(Some(b"grace".to_vec())) // e.g. a database query
//!     })
//!     .await?;
//! assert_eq!(loaded.as_deref(), Some(&b"grace"[..]));
//! let stats = cache.stats();
//! assert_eq!((stats.l1.hits, stats.origin.loads), (1, 1));
//! # Ok(())
//! # }
//! ```
//!
//! # Tracing
//!
//! | target | level | event |
//! |---|---|---|
//! | `sysmanage_cache::tiered` | debug | L1 flushes (`reason`), origin load failures, L2 write-back failures |
//! | `sysmanage_cache::tiered::tracking` | info/warn | tracking subscribed / lost per node (`node`, `error`) |

#[cfg(feature = "redis")]
mod tracking;

use crate::join::join_all;
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::{Duration, Instant};
use sysmanage_core::duration::{DAY, MILLISECOND, check_count, check_duration};

use serde::{Deserialize, Serialize};
use sysmanage_core::{Clock, SplitMix64, SystemClock};
use tokio::sync::OnceCell;

use crate::cache::{ClusterCache, SetOptions, Ttl};
use crate::error::{CacheError, KeyResult, Result};

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use tracking::TrackingConfig;

/// Settings of [`TieredCache`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TieredConfig {
    /// Most entries L1 holds. Default: 100,000.
    pub max_entries: u64,
    /// Most bytes (keys + values) L1 holds. Each entry weighs at least
    /// `max_weight_bytes / max_entries`, so both bounds hold at once.
    /// Default: 64 MiB.
    pub max_weight_bytes: u64,
    /// Longest an entry stays in L1: the staleness bound when an
    /// invalidation cannot arrive. Default: 30 s. Range: 1 ms – 1 day.
    #[serde(with = "sysmanage_core::duration::serde_human")]
    pub local_ttl: Duration,
    /// Each entry's lifetime is `local_ttl` shortened by a random fraction
    /// in `[0, ttl_jitter)`. Must be in `[0, 1)`. Default: 0.1.
    pub ttl_jitter: f64,
    /// Cache misses (the key is absent in L2 and, with `get_or_load`, at
    /// the origin) in L1 for this long. Must not exceed `local_ttl`.
    /// Default: `None` (misses are not cached).
    #[serde(with = "sysmanage_core::duration::serde_human_opt")]
    pub negative_ttl: Option<Duration>,
    /// Read the key's TTL from L2 on each L2 hit (one extra command, sent
    /// concurrently with the read) so that an L1 entry never outlives the L2
    /// key. `mget` then reads the TTLs of at most 64 found keys per call
    /// (concurrently, after the `mget`) and keeps only those in L1. With
    /// `false`, entries live `local_ttl` whatever the L2 TTL. Default: `true`.
    pub clamp_to_l2_ttl: bool,
    /// XFetch's β: `Some(1.0)` is the paper's default; larger refreshes
    /// earlier. Default: `None` (no early refresh).
    pub early_refresh_beta: Option<f64>,
    /// Values larger than this are not kept in L1. Default: 1 MiB.
    pub max_value_bytes: usize,
    /// Only keys starting with one of these are kept in L1; other keys pass
    /// straight to L2. With tracking these are the `BCAST` prefixes. Empty
    /// (the default) means every key.
    pub prefixes: Vec<Vec<u8>>,
}

impl Default for TieredConfig {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_weight_bytes: 64 << 20,
            local_ttl: Duration::from_secs(30),
            ttl_jitter: 0.1,
            negative_ttl: None,
            clamp_to_l2_ttl: true,
            early_refresh_beta: None,
            max_value_bytes: 1 << 20,
            prefixes: Vec::new(),
        }
    }
}

impl TieredConfig {
    /// Validates the settings.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.max_entries == 0 {
            return Err(CacheError::invalid(
                "tiered.max_entries",
                "must be greater than zero",
            ));
        }
        if self.max_weight_bytes == 0 {
            return Err(CacheError::invalid(
                "tiered.max_weight_bytes",
                "must be greater than zero",
            ));
        }
        check_duration("tiered.local_ttl", self.local_ttl, MILLISECOND, DAY)?;
        check_count(
            "tiered.max_value_bytes",
            self.max_value_bytes,
            1,
            usize::MAX,
        )?;
        if !(0.0..1.0).contains(&self.ttl_jitter) {
            return Err(CacheError::invalid(
                "tiered.ttl_jitter",
                "must be in [0, 1)",
            ));
        }
        if let Some(n) = self.negative_ttl
            && (n < Duration::from_millis(1) || n > self.local_ttl)
        {
            return Err(CacheError::invalid(
                "tiered.negative_ttl",
                "must be at least 1 ms and at most local_ttl",
            ));
        }
        if let Some(b) = self.early_refresh_beta
            && !(b.is_finite() && b > 0.0)
        {
            return Err(CacheError::invalid(
                "tiered.early_refresh_beta",
                "must be a finite number greater than zero",
            ));
        }
        if self.prefixes.iter().any(Vec::is_empty) {
            return Err(CacheError::invalid(
                "tiered.prefixes",
                "a prefix must not be empty (leave the list empty to cache every key)",
            ));
        }
        Ok(())
    }
}

/// L1 counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct L1Stats {
    /// Reads answered by L1 (cached misses included).
    pub hits: u64,
    /// Reads L1 could not answer (absent, expired, or due for early refresh).
    pub misses: u64,
    /// Reads that skipped L1: key outside the prefixes, or L1 not coherent.
    pub bypassed: u64,
    /// Entries inserted.
    pub fills: u64,
    /// Fills dropped because an invalidation or flush raced them.
    pub fills_dropped: u64,
    /// Keys invalidated (local writes and server invalidations).
    pub invalidations: u64,
    /// Whole-L1 flushes.
    pub flushes: u64,
    /// Hits that chose to refresh early (XFetch).
    pub early_refreshes: u64,
    /// Entries now (approximate).
    pub entries: u64,
    /// Weight now, bytes (approximate).
    pub weight_bytes: u64,
}

/// L2 counters (reads issued by the tiered cache).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct L2Stats {
    /// L2 reads that found the key.
    pub hits: u64,
    /// L2 reads that did not.
    pub misses: u64,
    /// L2 reads or write-backs that failed.
    pub errors: u64,
}

/// Origin counters ([`TieredCache::get_or_load`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OriginStats {
    /// Loader calls.
    pub loads: u64,
    /// Loader calls that failed.
    pub errors: u64,
    /// Callers that waited for another caller's load of the same key
    /// instead of loading themselves.
    pub coalesced: u64,
}

/// Invalidation-connection counters (all zero without tracking).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrackingStats {
    /// Whether tracking is configured.
    pub enabled: bool,
    /// Primaries with an active tracking subscription now.
    pub tracked_nodes: u64,
    /// Primaries known now.
    pub primaries: u64,
    /// Invalidation messages received.
    pub messages: u64,
    /// Tracking connections lost (each flushed L1).
    pub connections_lost: u64,
    /// Tracking subscriptions established.
    pub subscriptions: u64,
}

/// A snapshot of [`TieredCache`]'s counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TieredStats {
    /// The in-process tier.
    pub l1: L1Stats,
    /// The shared tier.
    pub l2: L2Stats,
    /// The origin behind `get_or_load`.
    pub origin: OriginStats,
    /// Server-assisted invalidation.
    pub tracking: TrackingStats,
    /// Whether L1 is serving now (always with no tracker; with a tracker,
    /// only while every primary is tracked).
    pub coherent: bool,
}

#[derive(Debug, Default)]
struct Counters {
    l1_hits: AtomicU64,
    l1_misses: AtomicU64,
    l1_bypassed: AtomicU64,
    l1_fills: AtomicU64,
    l1_fills_dropped: AtomicU64,
    l1_invalidations: AtomicU64,
    l1_flushes: AtomicU64,
    l1_early: AtomicU64,
    l2_hits: AtomicU64,
    l2_misses: AtomicU64,
    l2_errors: AtomicU64,
    loads: AtomicU64,
    load_errors: AtomicU64,
    coalesced: AtomicU64,
    tracking_messages: AtomicU64,
    tracking_lost: AtomicU64,
    tracking_subscriptions: AtomicU64,
    tracked_nodes: AtomicU64,
    primaries: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// An L1 key (moka's signatures take keys by reference).
type L1Key = Box<[u8]>;

/// One L1 entry: a value or a cached miss.
#[derive(Clone, Debug)]
struct Entry {
    value: Option<Arc<[u8]>>,
    expires: Instant,
    lifetime: Duration,
    /// How long the fill took (XFetch's δ).
    delta: Duration,
}

struct EntryExpiry;

impl moka::Expiry<Box<[u8]>, Entry> for EntryExpiry {
    fn expire_after_create(&self, _: &Box<[u8]>, v: &Entry, _: Instant) -> Option<Duration> {
        Some(v.lifetime)
    }
    fn expire_after_update(
        &self,
        _: &Box<[u8]>,
        v: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.lifetime)
    }
}

const SHARDS: usize = 256;

/// Most keys of one `mget` whose L2 TTL is read to fill L1.
const MGET_FILL_LIMIT: usize = 64;

/// Fill tickets: a fill is kept only when neither the epoch (flushes) nor
/// its key's shard counter (invalidations) moved while it read L2.
#[derive(Debug)]
struct Generations {
    epoch: AtomicU64,
    shards: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Ticket {
    epoch: u64,
    shard: u64,
}

impl Generations {
    fn new() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            shards: (0..SHARDS).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
    fn shard(&self, key: &[u8]) -> &AtomicU64 {
        // Truncation is the point: the low bits pick the shard.
        #[allow(clippy::cast_possible_truncation)]
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        &self.shards[i]
    }
    fn ticket(&self, key: &[u8]) -> Ticket {
        Ticket {
            epoch: self.epoch.load(Ordering::SeqCst),
            shard: self.shard(key).load(Ordering::SeqCst),
        }
    }
}

type Flight = Arc<OnceCell<Result<Option<Arc<[u8]>>>>>;

/// What an L1 lookup found.
enum Lookup {
    /// A live entry (a cached miss is `Hit(None)`).
    Hit(Option<Arc<[u8]>>),
    /// No live entry.
    Miss,
    /// A live entry this caller should refresh (XFetch).
    Early,
    /// L1 is not used for this key now.
    Bypass,
}

/// State shared with the tracker.
pub(crate) struct Shared {
    config: TieredConfig,
    l1: moka::sync::Cache<Box<[u8]>, Entry>,
    generations: Generations,
    coherent: AtomicBool,
    tracking: AtomicBool,
    counters: Counters,
    metrics: crate::telemetry::TieredMetrics,
    clock: Arc<dyn Clock>,
    rng: StdMutex<SplitMix64>,
    flights: StdMutex<HashMap<Box<[u8]>, Flight>>,
    /// Set by `shutdown`: every operation fails from then on.
    closed: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("coherent", &self.coherent)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn cacheable(&self, key: &[u8]) -> bool {
        self.config.prefixes.is_empty() || self.config.prefixes.iter().any(|p| key.starts_with(p))
    }

    fn serving(&self) -> bool {
        self.coherent.load(Ordering::SeqCst)
    }

    /// Removes `key` from L1 and voids fills of it in flight.
    pub(crate) fn invalidate(&self, key: &[u8]) {
        self.generations.shard(key).fetch_add(1, Ordering::SeqCst);
        self.l1.invalidate(key);
        bump(&self.counters.l1_invalidations);
    }

    /// [`invalidate`](Self::invalidate), counted as a write through this cache.
    fn invalidate_local(&self, key: &[u8]) {
        self.invalidate(key);
        self.metrics.invalidated_local.increment(1);
    }

    /// Empties L1 and voids every fill in flight.
    pub(crate) fn flush(&self, reason: &'static str) {
        self.generations.epoch.fetch_add(1, Ordering::SeqCst);
        self.l1.invalidate_all();
        bump(&self.counters.l1_flushes);
        self.metrics.invalidated_flush.increment(1);
        tracing::debug!(target: "sysmanage_cache::tiered", reason, "l1 flushed");
    }

    /// Turns L1 serving on or off; either transition flushes.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn set_coherent(&self, coherent: bool, reason: &'static str) {
        if self.coherent.swap(coherent, Ordering::SeqCst) != coherent || !coherent {
            self.flush(reason);
        }
    }

    fn lifetime(&self, base: Duration) -> Duration {
        let u = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_f64();
        base.mul_f64(1.0 - self.config.ttl_jitter * u)
            .max(Duration::from_millis(1))
    }

    /// Looks `key` up in L1.
    fn lookup(&self, key: &[u8], early_ok: bool) -> Lookup {
        let Some(e) = self.l1.get(key) else {
            return Lookup::Miss;
        };
        let now = self.clock.now();
        if now >= e.expires {
            return Lookup::Miss;
        }
        if early_ok
            && e.value.is_some()
            && let Some(beta) = self.config.early_refresh_beta
        {
            let u = self
                .rng
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .next_f64();
            // XFetch: refresh when now - δ·β·ln(u) ≥ expiry, u ∈ (0, 1].
            let gap = e.delta.as_secs_f64() * beta * -(1.0 - u).ln();
            if gap.is_finite()
                && sysmanage_core::duration::deadline(
                    now,
                    Duration::from_secs_f64(gap.clamp(0.0, 1e9)),
                ) >= e.expires
            {
                bump(&self.counters.l1_early);
                return Lookup::Early;
            }
        }
        Lookup::Hit(e.value)
    }

    /// Inserts `value` unless `ticket` went stale; `l2_ttl` caps the lifetime.
    fn fill(
        &self,
        key: &[u8],
        value: Option<Arc<[u8]>>,
        l2_ttl: Option<Duration>,
        ticket: Ticket,
        delta: Duration,
    ) {
        if !self.serving() || !self.cacheable(key) {
            return;
        }
        let base = match (&value, self.config.negative_ttl) {
            (Some(v), _) if v.len() > self.config.max_value_bytes => return,
            (Some(_), _) => self.config.local_ttl,
            (None, Some(n)) => n,
            (None, None) => return,
        };
        let mut lifetime = self.lifetime(base);
        if let Some(t) = l2_ttl {
            lifetime = lifetime.min(t);
        }
        if lifetime.is_zero() || self.generations.ticket(key) != ticket {
            bump(&self.counters.l1_fills_dropped);
            return;
        }
        let entry = Entry {
            value,
            expires: sysmanage_core::duration::deadline(self.clock.now(), lifetime),
            lifetime,
            delta,
        };
        self.l1.insert(key.into(), entry);
        // Re-check after inserting: an invalidation that bumped the counter
        // before this point is seen here; one after it removes the entry.
        if self.generations.ticket(key) != ticket || !self.serving() {
            self.l1.invalidate(key);
            bump(&self.counters.l1_fills_dropped);
        } else {
            bump(&self.counters.l1_fills);
        }
    }
}

/// A caller's membership in the flight of one key. Every clone of a flight
/// is taken and released under the `flights` lock, so the last caller to
/// leave (finished or cancelled) removes the flight from the map.
struct Landing<'a> {
    shared: &'a Shared,
    key: &'a [u8],
    flight: Flight,
}

impl<'a> Landing<'a> {
    fn join(shared: &'a Shared, key: &'a [u8]) -> Self {
        let mut flights = shared
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let flight = flights.entry(key.into()).or_default().clone();
        Self {
            shared,
            key,
            flight,
        }
    }
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        let mut flights = self
            .shared
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        drop(std::mem::take(&mut self.flight));
        if flights
            .get(self.key)
            .is_some_and(|f| f.initialized() || Arc::strong_count(f) == 1)
        {
            flights.remove(self.key);
        }
    }
}

/// A [`ClusterCache`] with an in-process L1 in front of the L2 `C`. Cheap to
/// clone; clones share L1. See the [module docs](self).
pub struct TieredCache<C> {
    l2: C,
    shared: Arc<Shared>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    tasks: Arc<TaskGuard>,
}

impl<C: Clone> Clone for TieredCache<C> {
    fn clone(&self) -> Self {
        Self {
            l2: self.l2.clone(),
            shared: self.shared.clone(),
            tasks: self.tasks.clone(),
        }
    }
}

/// Aborts background tasks when the last clone is dropped.
#[derive(Debug, Default)]
struct TaskGuard(StdMutex<Vec<tokio::task::JoinHandle<()>>>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for t in self
            .0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
    }
}

impl<C> std::fmt::Debug for TieredCache<C>
where
    C: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache")
            .field("l2", &self.l2)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<C: ClusterCache> TieredCache<C> {
    /// An L1 of `config` in front of `l2`, coherent only through its own
    /// writes and `local_ttl` (see `with_tracking` for server-assisted
    /// invalidation).
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] for bad settings.
    pub fn new(l2: C, config: TieredConfig) -> Result<Self> {
        Self::with_clock(l2, config, Arc::new(SystemClock))
    }

    /// As [`new`](Self::new), with the clock that ages L1 entries (tests use
    /// a [`ManualClock`](sysmanage_core::ManualClock); the bound on memory
    /// still runs on real time).
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] for bad settings.
    pub fn with_clock(l2: C, config: TieredConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        config.validate()?;
        let min_weight = u32::try_from((config.max_weight_bytes / config.max_entries).max(1))
            .unwrap_or(u32::MAX);
        let l1 = moka::sync::Cache::builder()
            .name("sysmanage-cache-l1")
            .max_capacity(config.max_weight_bytes)
            .weigher(move |k: &L1Key, v: &Entry| {
                let bytes = k.len() + v.value.as_ref().map_or(0, |v| v.len()) + 64;
                u32::try_from(bytes).unwrap_or(u32::MAX).max(min_weight)
            })
            .expire_after(EntryExpiry)
            .build();
        let shared = Arc::new(Shared {
            config,
            l1,
            generations: Generations::new(),
            coherent: AtomicBool::new(true),
            tracking: AtomicBool::new(false),
            counters: Counters::default(),
            metrics: crate::telemetry::TieredMetrics::new(),
            clock,
            rng: StdMutex::new(SplitMix64::from_entropy()),
            flights: StdMutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        });
        Ok(Self {
            l2,
            shared,
            tasks: Arc::new(TaskGuard::default()),
        })
    }

    /// `Err(ShutDown)` once [`shutdown`](ClusterCache::shutdown) was called.
    fn alive(&self) -> Result<()> {
        if self.shared.closed.load(Ordering::Relaxed) {
            Err(CacheError::ShutDown)
        } else {
            Ok(())
        }
    }

    /// The L2 cache.
    pub fn l2(&self) -> &C {
        &self.l2
    }

    /// The configuration.
    pub fn config(&self) -> &TieredConfig {
        &self.shared.config
    }

    /// Whether `key` has a live L1 entry (a value or a cached miss) now.
    pub fn is_cached_locally(&self, key: &[u8]) -> bool {
        self.shared
            .l1
            .get(key)
            .is_some_and(|e| self.shared.clock.now() < e.expires)
    }

    /// Removes `key` from this instance's L1 only.
    pub fn invalidate_local(&self, key: &[u8]) {
        self.shared.invalidate_local(key);
    }

    /// Empties this instance's L1.
    pub fn flush_local(&self) {
        self.shared.flush("requested");
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TieredStats {
        let c = &self.shared.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TieredStats {
            l1: L1Stats {
                hits: l(&c.l1_hits),
                misses: l(&c.l1_misses),
                bypassed: l(&c.l1_bypassed),
                fills: l(&c.l1_fills),
                fills_dropped: l(&c.l1_fills_dropped),
                invalidations: l(&c.l1_invalidations),
                flushes: l(&c.l1_flushes),
                early_refreshes: l(&c.l1_early),
                entries: self.shared.l1.entry_count(),
                weight_bytes: self.shared.l1.weighted_size(),
            },
            l2: L2Stats {
                hits: l(&c.l2_hits),
                misses: l(&c.l2_misses),
                errors: l(&c.l2_errors),
            },
            origin: OriginStats {
                loads: l(&c.loads),
                errors: l(&c.load_errors),
                coalesced: l(&c.coalesced),
            },
            tracking: TrackingStats {
                enabled: self.shared.tracking.load(Ordering::Relaxed),
                tracked_nodes: l(&c.tracked_nodes),
                primaries: l(&c.primaries),
                messages: l(&c.tracking_messages),
                connections_lost: l(&c.tracking_lost),
                subscriptions: l(&c.tracking_subscriptions),
            },
            coherent: self.shared.serving(),
        }
    }

    /// L1 lookup with the counters.
    fn try_l1(&self, key: &[u8], early_ok: bool) -> Lookup {
        let s = &self.shared;
        if !s.cacheable(key) || !s.serving() {
            bump(&s.counters.l1_bypassed);
            return Lookup::Bypass;
        }
        let found = s.lookup(key, early_ok);
        if matches!(found, Lookup::Hit(_)) {
            bump(&s.counters.l1_hits);
            s.metrics.l1_hits.increment(1);
        } else {
            bump(&s.counters.l1_misses);
            s.metrics.l1_misses.increment(1);
        }
        found
    }

    /// The L1 entry a flight that landed just before this one may have
    /// left, unless this caller is refreshing early.
    fn recheck(&self, key: &[u8], first: &Lookup) -> Option<Option<Arc<[u8]>>> {
        if matches!(first, Lookup::Early) || !self.shared.serving() {
            return None;
        }
        match self.shared.lookup(key, false) {
            Lookup::Hit(v) => Some(v),
            _ => None,
        }
    }

    /// Reads L2 (and its TTL when clamping) and fills L1.
    async fn read_l2(&self, key: &[u8]) -> Result<Option<Arc<[u8]>>> {
        let s = &self.shared;
        let ticket = s.generations.ticket(key);
        let started = s.clock.now();
        let (value, ttl) = if s.config.clamp_to_l2_ttl && s.cacheable(key) {
            let (v, t) = tokio::join!(self.l2.get(key), self.l2.ttl(key));
            (v, Some(t))
        } else {
            (self.l2.get(key).await, None)
        };
        let value = value.inspect_err(|_| bump(&s.counters.l2_errors))?;
        bump(if value.is_some() {
            &s.counters.l2_hits
        } else {
            &s.counters.l2_misses
        });
        let value: Option<Arc<[u8]>> = value.map(Into::into);
        let l2_ttl = match ttl {
            Some(Ok(Ttl::ExpiresIn(d))) => Some(d),
            // Missing after a hit: the key just expired. An unknown TTL
            // might be shorter than L1's. Either way, keep nothing.
            Some(Ok(Ttl::Missing)) if value.is_some() => Some(Duration::ZERO),
            Some(Err(_)) => Some(Duration::ZERO),
            _ => None,
        };
        let delta = s.clock.now().saturating_duration_since(started);
        s.fill(key, value.clone(), l2_ttl, ticket, delta);
        Ok(value)
    }

    /// Runs `work` once for all concurrent callers of `key`.
    async fn coalesce<F, Fut>(&self, key: &[u8], work: F) -> Result<Option<Arc<[u8]>>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Arc<[u8]>>>>,
    {
        let landing = Landing::join(&self.shared, key);
        let mut ran = false;
        let out = landing
            .flight
            .get_or_init(|| {
                ran = true;
                work()
            })
            .await
            .clone();
        if !ran {
            bump(&self.shared.counters.coalesced);
            self.shared.metrics.coalesced.increment(1);
        }
        drop(landing);
        out
    }

    /// The value at `key` from L1, else L2, else `loader` (the origin, e.g.
    /// a database query). A loaded value is written to L2 with `ttl` and
    /// kept in L1 (never longer than `ttl`); a loaded miss is cached when
    /// [`TieredConfig::negative_ttl`] is set. Concurrent calls for one key
    /// in this instance run one L2 read and at most one `loader`; the others
    /// wait for its result.
    ///
    /// A failed write-back to L2 is counted and traced but does not fail
    /// the call: the loaded value is returned (and not kept in L1).
    ///
    /// # Errors
    /// An L2 read error, or the loader's error (shared by every waiter).
    pub async fn get_or_load<F, Fut>(
        &self,
        key: &[u8],
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Option<Vec<u8>>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Vec<u8>>>>,
    {
        self.alive()?;
        let first = match self.try_l1(key, true) {
            Lookup::Hit(v) => return Ok(v.map(|v| v.to_vec())),
            other => other,
        };
        let out = self
            .coalesce(key, || async move {
                if let Some(hit) = self.recheck(key, &first) {
                    return Ok(hit);
                }
                let s = &self.shared;
                if let Some(v) = self.read_l2(key).await? {
                    return Ok(Some(v));
                }
                let ticket = s.generations.ticket(key);
                let started = s.clock.now();
                bump(&s.counters.loads);
                let loaded = loader().await.inspect_err(|e| {
                    bump(&s.counters.load_errors);
                    s.metrics.loads_failed.increment(1);
                    tracing::debug!(target: "sysmanage_cache::tiered", error = %e, "origin load failed");
                })?;
                s.metrics.loads_ok.increment(1);
                let delta = s.clock.now().saturating_duration_since(started);
                match loaded {
                    Some(v) => {
                        let opts = SetOptions {
                            ttl,
                            ..SetOptions::default()
                        };
                        match self.l2.set(key, &v, opts).await {
                            Ok(_) => {
                                // Our own write bumped nothing here; a newer
                                // write elsewhere arrives as an invalidation
                                // and voids the ticket.
                                let v: Arc<[u8]> = v.into();
                                s.fill(key, Some(v.clone()), ttl, ticket, delta);
                                Ok(Some(v))
                            }
                            Err(e) => {
                                bump(&s.counters.l2_errors);
                                tracing::debug!(target: "sysmanage_cache::tiered", error = %e, "l2 write-back failed");
                                Ok(Some(v.into()))
                            }
                        }
                    }
                    None => {
                        s.fill(key, None, None, ticket, delta);
                        Ok(None)
                    }
                }
            })
            .await?;
        Ok(out.map(|v| v.to_vec()))
    }

    fn invalidate_all<K: AsRef<[u8]>>(&self, keys: impl IntoIterator<Item = K>) {
        for k in keys {
            if self.shared.cacheable(k.as_ref()) {
                self.shared.invalidate_local(k.as_ref());
            }
        }
    }
}

impl<C: ClusterCache> ClusterCache for TieredCache<C> {
    /// Closes the tracking connections, empties L1, then shuts the L2
    /// down (which waits for its operations in flight until `deadline`);
    /// every operation on any clone fails with [`CacheError::ShutDown`]
    /// from the first moment.
    async fn shutdown(&self, deadline: Duration) -> Result<()> {
        self.shared.closed.store(true, Ordering::SeqCst);
        for t in self
            .tasks
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
        self.shared.coherent.store(false, Ordering::SeqCst);
        self.shared.l1.invalidate_all();
        self.l2.shutdown(deadline).await
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.alive()?;
        let first = match self.try_l1(key, true) {
            Lookup::Hit(v) => return Ok(v.map(|v| v.to_vec())),
            Lookup::Bypass => return self.l2.get(key).await,
            other => other,
        };
        let out = self
            .coalesce(key, || async move {
                if let Some(hit) = self.recheck(key, &first) {
                    return Ok(hit);
                }
                self.read_l2(key).await
            })
            .await?;
        Ok(out.map(|v| v.to_vec()))
    }

    async fn set(&self, key: &[u8], value: &[u8], opts: SetOptions) -> Result<bool> {
        self.alive()?;
        let r = self.l2.set(key, value, opts).await;
        // Invalidate even on error: a timed-out write may have landed.
        self.invalidate_all([key]);
        r
    }

    async fn delete(&self, key: &[u8]) -> Result<bool> {
        self.alive()?;
        let r = self.l2.delete(key).await;
        self.invalidate_all([key]);
        r
    }

    async fn exists(&self, key: &[u8]) -> Result<bool> {
        self.alive()?;
        self.l2.exists(key).await
    }

    async fn expire(&self, key: &[u8], ttl: Duration) -> Result<bool> {
        self.alive()?;
        let r = self.l2.expire(key, ttl).await;
        self.invalidate_all([key]);
        r
    }

    async fn ttl(&self, key: &[u8]) -> Result<Ttl> {
        self.alive()?;
        self.l2.ttl(key).await
    }

    async fn incr(&self, key: &[u8], by: i64) -> Result<i64> {
        self.alive()?;
        let r = self.l2.incr(key, by).await;
        self.invalidate_all([key]);
        r
    }

    async fn mget<K: AsRef<[u8]> + Sync>(
        &self,
        keys: &[K],
    ) -> Result<Vec<KeyResult<Option<Vec<u8>>>>> {
        self.alive()?;
        if keys.is_empty() {
            return self.l2.mget(keys).await; // the backend's typed error
        }
        let mut out: Vec<Option<KeyResult<Option<Vec<u8>>>>> = keys
            .iter()
            .map(|k| match self.try_l1(k.as_ref(), false) {
                Lookup::Hit(v) => Some(Ok(v.map(|v| v.to_vec()))),
                _ => None,
            })
            .collect();
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            let s = &self.shared;
            let tickets: Vec<Ticket> = missing
                .iter()
                .map(|&i| s.generations.ticket(keys[i].as_ref()))
                .collect();
            let started = s.clock.now();
            let miss_keys: Vec<&[u8]> = missing.iter().map(|&i| keys[i].as_ref()).collect();
            let got = self.l2.mget(&miss_keys).await?;
            // With clamping, the TTLs of up to MGET_FILL_LIMIT found keys are
            // read concurrently; other keys are returned but not kept.
            let fill: Vec<usize> = if s.serving() {
                missing
                    .iter()
                    .zip(&got)
                    .filter(|&(&i, r)| {
                        s.cacheable(keys[i].as_ref())
                            && matches!(r, Ok(v) if v.is_some() || s.config.negative_ttl.is_some())
                    })
                    .map(|(&i, _)| i)
                    .take(if s.config.clamp_to_l2_ttl {
                        MGET_FILL_LIMIT
                    } else {
                        usize::MAX
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let ttls: Vec<Result<Ttl>> = if s.config.clamp_to_l2_ttl && !fill.is_empty() {
                join_all(
                    fill.iter()
                        .map(|&i| self.l2.ttl(keys[i].as_ref()))
                        .collect(),
                )
                .await
            } else {
                Vec::new()
            };
            let mut ttls = fill.iter().copied().zip(ttls).peekable();
            let delta = s.clock.now().saturating_duration_since(started);
            for ((&i, r), ticket) in missing.iter().zip(got).zip(tickets) {
                match &r {
                    Ok(v) => {
                        bump(if v.is_some() {
                            &s.counters.l2_hits
                        } else {
                            &s.counters.l2_misses
                        });
                        let l2_ttl = if s.config.clamp_to_l2_ttl {
                            match ttls.next_if(|(j, _)| *j == i) {
                                Some((_, Ok(Ttl::ExpiresIn(d)))) => Some(Some(d)),
                                Some((_, Ok(Ttl::Persistent))) => Some(None),
                                Some((_, Ok(Ttl::Missing))) if v.is_none() => Some(None),
                                // Expired meanwhile, TTL unknown, or not read.
                                _ => None,
                            }
                        } else {
                            Some(None)
                        };
                        if let Some(l2_ttl) = l2_ttl {
                            s.fill(
                                keys[i].as_ref(),
                                v.as_deref().map(Into::into),
                                l2_ttl,
                                ticket,
                                delta,
                            );
                        }
                    }
                    Err(_) => bump(&s.counters.l2_errors),
                }
                out[i] = Some(r);
            }
        }
        Ok(out.into_iter().map(|r| r.unwrap_or(Ok(None))).collect())
    }

    async fn mset<K: AsRef<[u8]> + Sync, V: AsRef<[u8]> + Sync>(
        &self,
        entries: &[(K, V)],
        ttl: Option<Duration>,
    ) -> Result<Vec<KeyResult<()>>> {
        self.alive()?;
        let r = self.l2.mset(entries, ttl).await;
        self.invalidate_all(entries.iter().map(|(k, _)| k));
        r
    }

    async fn mdel<K: AsRef<[u8]> + Sync>(&self, keys: &[K]) -> Result<Vec<KeyResult<bool>>> {
        self.alive()?;
        let r = self.l2.mdel(keys).await;
        self.invalidate_all(keys);
        r
    }

    async fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<Vec<u8>>> {
        self.alive()?;
        self.l2.scan_prefix(prefix, limit).await
    }
}

#[cfg(test)]
mod tests;
