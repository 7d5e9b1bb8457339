//! Runs the quickstart's replica demo (`examples/src/replica_demo.rs`) so the
//! snippet users copy keeps compiling and working. No servers needed.

#[path = "../../examples/src/replica_demo.rs"]
#[expect(unreachable_pub, reason = "the demo is public in the examples crate")]
mod replica_demo;

#[tokio::test]
async fn quickstart_replica_demo_runs() {
    replica_demo::demo_replicas().await.unwrap();
}
