//! Tracing spans and events of the shard router carry shard ids.
//!
//! A test binary of its own: tracing caches per-callsite interest globally,
//! and a callsite first hit by another test's thread while this test installs
//! its thread-local subscriber can be cached as uninteresting, losing spans.
//! Alone in its process, the test sees every span and event.

use std::time::Duration;

use sysmanage_db::shard::{MemoryNodeSet, PgHash, ShardRouter};

type Mem = MemoryNodeSet<i64>;

fn sets(n: usize) -> Vec<Mem> {
    (0..n)
        .map(|i| MemoryNodeSet::new(format!("mem{i}")))
        .collect()
}

fn router_over(f: PgHash, sets: &[Mem]) -> ShardRouter<Mem> {
    let mut b = ShardRouter::builder(f).shard_timeout(Duration::from_secs(1));
    for s in sets {
        b = b.node_set(s.name(), s.clone());
    }
    b.build().unwrap()
}

mod spans {
    //! A minimal subscriber recording span names and their `shard` field.

    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    /// (span name, `shard`, `node_set`).
    pub(crate) type SpanRecord = (String, Option<u64>, Option<String>);
    /// (event message, `shard`).
    pub(crate) type EventRecord = (String, Option<u64>);

    #[derive(Clone, Default)]
    pub(crate) struct Recorder {
        pub(crate) spans: Arc<Mutex<Vec<SpanRecord>>>,
        pub(crate) events: Arc<Mutex<Vec<EventRecord>>>,
    }

    #[derive(Default)]
    struct Fields {
        shard: Option<u64>,
        node_set: Option<String>,
        message: Option<String>,
    }

    impl Visit for Fields {
        fn record_u64(&mut self, field: &Field, value: u64) {
            if field.name() == "shard" {
                self.shard = Some(value);
            }
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "node_set" {
                self.node_set = Some(value.to_owned());
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.message = Some(format!("{value:?}"));
            }
        }
    }

    impl Subscriber for Recorder {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let mut f = Fields::default();
            span.record(&mut f);
            let mut spans = self.spans.lock().unwrap();
            spans.push((span.metadata().name().to_owned(), f.shard, f.node_set));
            Id::from_u64(spans.len() as u64)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut f = Fields::default();
            event.record(&mut f);
            self.events
                .lock()
                .unwrap()
                .push((f.message.unwrap_or_default(), f.shard));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

#[tokio::test(flavor = "current_thread")]
async fn spans_and_events_carry_shard_ids() {
    let recorder = spans::Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());
    let s = sets(2);
    s[1].set_down("gone");
    let router = router_over(PgHash::new(4).unwrap(), &s);
    let _ = router
        .fan_out(|ctx| async move { ctx.nodes().query(|rows| rows.len()).await })
        .await;
    let spans = recorder.spans.lock().unwrap().clone();
    assert!(
        spans
            .iter()
            .any(|(name, _, _)| name == "sysmanage_db.shard.fan_out")
    );
    let mut shard_spans: Vec<(u64, String)> = spans
        .iter()
        .filter(|(name, _, _)| name == "sysmanage_db.shard")
        .map(|(_, shard, node_set)| (shard.unwrap(), node_set.clone().unwrap()))
        .collect();
    shard_spans.sort();
    assert_eq!(
        shard_spans,
        [(0, "mem0"), (1, "mem1"), (2, "mem0"), (3, "mem1")].map(|(s, n)| (s, n.to_string()))
    );
    let mut failed: Vec<u64> = recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|(msg, _)| msg == "sysmanage_db.shard.failed")
        .filter_map(|(_, shard)| *shard)
        .collect();
    failed.sort();
    assert_eq!(failed, [1, 3]);
}
