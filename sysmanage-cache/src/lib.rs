//! Cluster-aware caching for sysmanage-rs.
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod advisor;
pub mod cache;
pub mod error;
pub mod memory;
pub mod session;
pub mod slot;
pub mod stats;
pub mod topology;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;

pub use cache::{ClusterCache, Codec, JsonCodec, Limits, SetCondition, SetOptions, Ttl, Typed, check_ttl};
pub use error::{CacheError, KeyResult, Result, SharedError};
pub use memory::{Eviction, MemoryCache, MemoryCacheBuilder, MemoryConfig, MemoryStats};
pub use slot::{SLOT_COUNT, group_by_slot, hash_tag, same_slot, slot};
#[cfg(feature = "redis")]
pub use redis::{RedisCache, RedisConfig, RedisCounters};
