//! The conformance suite against `TieredCache` over the in-memory backend:
//! an L1 in front of a cache must keep the cache's semantics. L1 and L2 age
//! on one `ManualClock`.

mod conformance;

use std::sync::Arc;
use std::time::Duration;

use conformance::{Harness, VALUE_LIMIT};
use sysmanage_cache::{Limits, MemoryCache, TieredCache, TieredConfig};
use sysmanage_core::{ManualClock, Timestamp};

struct TieredHarness {
    cache: TieredCache<MemoryCache>,
    clock: ManualClock,
    prefix: String,
}

impl Harness for TieredHarness {
    type Cache = TieredCache<MemoryCache>;
    fn cache(&self) -> &TieredCache<MemoryCache> {
        &self.cache
    }
    fn prefix(&self) -> &str {
        &self.prefix
    }
    async fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }
}

async fn harness(prefix: &str) -> TieredHarness {
    let clock = ManualClock::new(Timestamp::from_secs(1_000));
    let limits = Limits::default().with_max_value_bytes(VALUE_LIMIT);
    let l2 = MemoryCache::builder()
        .clock(clock.clone())
        .limits(limits)
        .build()
        .unwrap();
    let mut config = TieredConfig::default();
    config.negative_ttl = Some(Duration::from_secs(1));
    let cache = TieredCache::with_clock(l2, config, Arc::new(clock.clone())).unwrap();
    TieredHarness {
        cache,
        clock,
        prefix: prefix.to_owned(),
    }
}

conformance_tests!(tokio::test, super::harness);
