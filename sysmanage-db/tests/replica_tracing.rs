//! Tracing events of the replica router have stable names.
//!
//! A test binary of its own: tracing caches per-callsite interest globally,
//! and a callsite first hit by another test's thread while this test installs
//! its thread-local subscriber can be cached as uninteresting, losing events.
//! Alone in its process, the test sees every event.

use std::sync::Arc;
use std::time::Duration;

use sysmanage_core::{Backoff, Jitter, ManualClock, Timestamp};
use sysmanage_db::replica::{
    Consistency, MemoryCluster, MemoryError, MemoryNode, NodeSpec, ReplicaConfig, ReplicaRouter,
};

/// Collects the `event` field of every tracing event.
#[derive(Clone, Default)]
struct EventNames(Arc<std::sync::Mutex<Vec<String>>>);

impl tracing::Subscriber for EventNames {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Visit<'a>(&'a mut Vec<String>);
        impl tracing::field::Visit for Visit<'_> {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "event" {
                    self.0.push(value.to_owned());
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        assert_eq!(event.metadata().target(), "sysmanage_db::replica");
        event.record(&mut Visit(&mut self.0.lock().unwrap()));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn tracing_events_have_stable_names() {
    let names = EventNames::default();
    let _guard = tracing::subscriber::set_default(names.clone());
    let cluster = MemoryCluster::new();
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let primary = cluster.add_primary();
    let replica = cluster.add_replica();
    let mut config = ReplicaConfig::default();
    config.seed = Some(7);
    config.ban_backoff = Backoff::builder()
        .initial(Duration::from_secs(1))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let router: ReplicaRouter<MemoryNode> = ReplicaRouter::builder()
        .config(config)
        .clock(Arc::new(clock.clone()))
        .monitor(false)
        .primary(NodeSpec::new("primary", primary.clone()))
        .replica(NodeSpec::new("r0", replica.clone()))
        .build()
        .await
        .unwrap();
    replica.set_up(false);
    router.probe_all().await; // ban
    router
        .read(Consistency::Any, |db| async move {
            Ok::<_, MemoryError>(db.id())
        })
        .await
        .unwrap(); // fallback
    replica.set_up(true);
    clock.advance(Duration::from_secs(2));
    router.probe_all().await; // unban
    primary.set_up(false);
    replica.promote();
    router.probe_all().await;
    router.probe_all().await; // role change
    primary.set_up(true);
    router.probe_all().await; // split brain: both writable
    router.probe_all().await; // reported once
    primary.demote();
    router.probe_all().await; // resolved
    let got = names.0.lock().unwrap().clone();
    assert_eq!(
        got.iter().filter(|n| *n == "replica.split_brain").count(),
        1,
        "{got:?}"
    );
    for want in [
        "replica.ban",
        "replica.fallback",
        "replica.unban",
        "replica.role_change",
        "replica.split_brain",
        "replica.split_brain_resolved",
    ] {
        assert!(got.iter().any(|n| n == want), "{want} missing from {got:?}");
    }
}
