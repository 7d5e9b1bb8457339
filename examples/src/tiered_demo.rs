//! The two-tier cache over the in-memory backend, for the quickstart.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sysmanage_cache::tiered::{TieredCache, TieredConfig};
use sysmanage_cache::{ClusterCache, MemoryCache, SetOptions};

/// An L1 in front of an in-memory L2: hits, own-write invalidation, and one
/// origin load for 100 concurrent misses of the same key.
///
/// # Errors
/// Any cache error (none are expected on the in-memory backend).
pub async fn demo_tiered() -> Result<(), Box<dyn std::error::Error>> {
    let cache = Arc::new(TieredCache::new(
        MemoryCache::new(),
        TieredConfig::default(),
    )?);
    let ttl = SetOptions::ttl(Duration::from_secs(60));

    cache.set(b"host:web-1", b"healthy", ttl).await?;
    for _ in 0..10 {
        cache.get(b"host:web-1").await?; // the first read fills L1, the rest hit it
    }
    cache.set(b"host:web-1", b"draining", ttl).await?; // L2 first, then out of L1
    let after = cache.get(b"host:web-1").await?;
    println!(
        "after our own write the cache serves {:?} (never the old value)",
        after
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default()
    );

    let loads = Arc::new(AtomicUsize::new(0));
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (cache, loads) = (Arc::clone(&cache), Arc::clone(&loads));
        readers.spawn(async move {
            cache
                .get_or_load(
                    b"report:daily",
                    Some(Duration::from_secs(60)),
                    || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await; // a slow query
                        Ok(Some(b"42 hosts".to_vec()))
                    },
                )
                .await
        });
    }
    while let Some(res) = readers.join_next().await {
        res??;
    }
    let stats = cache.stats();
    println!(
        "100 concurrent misses of one key -> {} origin load(s); L1 hits {}, misses {}",
        loads.load(Ordering::SeqCst),
        stats.l1.hits,
        stats.l1.misses
    );
    if loads.load(Ordering::SeqCst) != 1 {
        return Err("stampede protection failed: more than one load".into());
    }
    Ok(())
}
