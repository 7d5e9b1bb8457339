//! The conformance suite against the in-memory backend (no servers needed),
//! with time moved by a `ManualClock`.

mod conformance;

use std::time::Duration;

use conformance::{Harness, VALUE_LIMIT};
use sysmanage_cache::{Limits, MemoryCache};
use sysmanage_core::{ManualClock, Timestamp};

struct MemoryHarness {
    cache: MemoryCache,
    clock: ManualClock,
    prefix: String,
}

impl Harness for MemoryHarness {
    type Cache = MemoryCache;
    fn cache(&self) -> &MemoryCache {
        &self.cache
    }
    fn prefix(&self) -> &str {
        &self.prefix
    }
    async fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }
}

async fn harness(prefix: &str) -> MemoryHarness {
    let clock = ManualClock::new(Timestamp::from_secs(1_000));
    let limits = Limits::default().with_max_value_bytes(VALUE_LIMIT);
    let cache = MemoryCache::builder()
        .clock(clock.clone())
        .limits(limits)
        .build()
        .unwrap();
    MemoryHarness {
        cache,
        clock,
        prefix: prefix.to_owned(),
    }
}

conformance_tests!(tokio::test, super::harness);
