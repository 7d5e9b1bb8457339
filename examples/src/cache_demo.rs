//! The cache and session store on the in-memory backend, for the quickstart.

use std::time::Duration;

use sysmanage_cache::session::{SessionConfig, SessionStore};
use sysmanage_cache::{ClusterCache, MemoryCache, SetOptions, Typed, same_slot, slot};

/// Caches a few typed values, reads them back across slots in one call,
/// then creates, touches and revokes sessions.
///
/// # Errors
/// Only if the in-memory cache rejects the demo's input, which it does not.
pub async fn demo_cache() -> Result<(), Box<dyn std::error::Error>> {
    let cache = MemoryCache::builder().max_memory_bytes(16 << 20).build()?;

    // Typed values (JSON by default) with a TTL; `NX` makes the write
    // conditional, as in Redis.
    let typed = Typed::new(cache.clone());
    let ttl = SetOptions::ttl(Duration::from_secs(300));
    typed
        .set(
            b"host:web-1",
            &serde_json::json!({"cpu": 0.42, "role": "web"}),
            ttl,
        )
        .await?;
    typed
        .set(
            b"host:db-1",
            &serde_json::json!({"cpu": 0.71, "role": "db"}),
            ttl,
        )
        .await?;
    let first = typed
        .set(b"host:web-1", &"ignored", ttl.if_absent())
        .await?;
    println!("NX on an existing key wrote: {first}");

    // One call for keys in different slots; results come back in input order.
    let keys = ["host:db-1", "host:missing", "host:web-1"];
    let slots: Vec<String> = keys
        .iter()
        .map(|k| format!("{k} = slot {}", slot(k.as_bytes())))
        .collect();
    println!("{}", slots.join(", "));
    for (key, value) in keys
        .iter()
        .zip(typed.mget::<serde_json::Value, _>(&keys).await?)
    {
        let shown = value?.map_or_else(|| "(missing)".to_owned(), |v| v.to_string());
        println!("  {key} -> {shown}");
    }
    println!(
        "`{{user1000}}.following` and `{{user1000}}.followers` share a slot: {}",
        same_slot(["{user1000}.following", "{user1000}.followers"])
    );
    println!(
        "requests counter: {}",
        cache.incr(b"stats:requests", 5).await?
    );
    let s = cache.stats();
    println!(
        "cache: {} keys, {} B used of {} MiB, hits {}, misses {}",
        s.keys,
        s.used_memory,
        s.maxmemory >> 20,
        s.keyspace_hits,
        s.keyspace_misses
    );

    // Sessions: 128-bit ids, sliding expiry, revoke-all per user.
    let store = SessionStore::new(cache, SessionConfig::default())?;
    let laptop = store
        .create("alice", &serde_json::json!({"device": "laptop"}))
        .await?;
    let phone = store
        .create("alice", &serde_json::json!({"device": "phone"}))
        .await?;
    println!("session ids print redacted: {} / {:?}", laptop.id, phone.id);
    println!(
        "touch slides the expiry: {}",
        store.touch(&laptop.id).await?
    );
    println!("revoked for alice: {}", store.revoke_all("alice").await?);
    let after = store.get::<serde_json::Value>(&phone.id).await?;
    println!(
        "phone session after revoke: {}",
        if after.is_none() {
            "gone"
        } else {
            "still there (unexpected)"
        }
    );
    Ok(())
}
