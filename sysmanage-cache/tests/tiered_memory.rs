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

/// With a single writer (this instance), an L1 must be invisible: every
/// operation returns what the bare L2 returns, whatever the sequence of
/// writes, expiries, cached misses and time steps.
mod model {
    use std::sync::Arc;
    use std::time::Duration;

    use proptest::prelude::*;
    use sysmanage_cache::{ClusterCache, MemoryCache, SetOptions, TieredCache, TieredConfig};
    use sysmanage_core::{ManualClock, Timestamp};

    #[derive(Clone, Debug)]
    enum Op {
        Get(u8),
        Set(u8, u8, Option<u16>),
        SetNx(u8, u8),
        Delete(u8),
        Incr(u8),
        Expire(u8, u16),
        Mget(Vec<u8>),
        Mset(Vec<(u8, u8)>, Option<u16>),
        Mdel(Vec<u8>),
        Advance(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        let k = 0u8..6;
        let ttl = proptest::option::of(1u16..500);
        prop_oneof![
            4 => k.clone().prop_map(Op::Get),
            2 => (k.clone(), any::<u8>(), ttl.clone()).prop_map(|(k, v, t)| Op::Set(k, v, t)),
            1 => (k.clone(), any::<u8>()).prop_map(|(k, v)| Op::SetNx(k, v)),
            1 => k.clone().prop_map(Op::Delete),
            1 => k.clone().prop_map(Op::Incr),
            1 => (k.clone(), 1u16..500).prop_map(|(k, t)| Op::Expire(k, t)),
            1 => proptest::collection::vec(k.clone(), 1..4).prop_map(Op::Mget),
            1 => (proptest::collection::vec((k.clone(), any::<u8>()), 1..4), ttl)
                .prop_map(|(e, t)| Op::Mset(e, t)),
            1 => proptest::collection::vec(k, 1..4).prop_map(Op::Mdel),
            2 => (1u16..400).prop_map(Op::Advance),
        ]
    }

    fn key(k: u8) -> Vec<u8> {
        format!("m:{k}").into_bytes()
    }

    fn ms(t: u16) -> Duration {
        Duration::from_millis(u64::from(t))
    }

    /// Runs `op` on `c`, rendering the result as text for comparison.
    async fn apply<C: ClusterCache>(c: &C, op: &Op) -> String {
        match op {
            Op::Get(k) => format!("{:?}", c.get(&key(*k)).await),
            Op::Set(k, v, t) => {
                let opts = t.map_or_else(SetOptions::default, |t| SetOptions::ttl(ms(t)));
                format!("{:?}", c.set(&key(*k), &[*v], opts).await)
            }
            Op::SetNx(k, v) => format!(
                "{:?}",
                c.set(&key(*k), &[*v], SetOptions::default().if_absent())
                    .await
            ),
            Op::Delete(k) => format!("{:?}", c.delete(&key(*k)).await),
            Op::Incr(k) => format!("{:?}", c.incr(&key(*k), 1).await),
            Op::Expire(k, t) => format!("{:?}", c.expire(&key(*k), ms(*t)).await),
            Op::Mget(ks) => {
                let ks: Vec<Vec<u8>> = ks.iter().map(|k| key(*k)).collect();
                format!("{:?}", c.mget(&ks).await)
            }
            Op::Mset(e, t) => {
                let e: Vec<(Vec<u8>, Vec<u8>)> =
                    e.iter().map(|(k, v)| (key(*k), vec![*v])).collect();
                format!("{:?}", c.mset(&e, t.map(ms)).await)
            }
            Op::Mdel(ks) => {
                let ks: Vec<Vec<u8>> = ks.iter().map(|k| key(*k)).collect();
                format!("{:?}", c.mdel(&ks).await)
            }
            Op::Advance(_) => String::new(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn l1_is_invisible_to_a_single_writer(ops in proptest::collection::vec(op(), 1..60), negative in any::<bool>()) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let clock = ManualClock::new(Timestamp::from_secs(1_000));
                let bare = MemoryCache::builder().clock(clock.clone()).build().unwrap();
                let under = MemoryCache::builder().clock(clock.clone()).build().unwrap();
                let mut config = TieredConfig::default();
                config.local_ttl = Duration::from_millis(700);
                config.negative_ttl = negative.then(|| Duration::from_millis(300));
                let tiered = TieredCache::with_clock(under, config, Arc::new(clock.clone())).unwrap();
                for (i, op) in ops.iter().enumerate() {
                    if let Op::Advance(t) = op {
                        clock.advance(ms(*t));
                        continue;
                    }
                    let want = apply(&bare, op).await;
                    let got = apply(&tiered, op).await;
                    assert_eq!(got, want, "step {i}: {op:?}");
                }
            });
        }
    }
}
