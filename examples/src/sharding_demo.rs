//! Sharding on in-memory node sets: no servers needed.

use std::time::Duration;

use sysmanage_db::shard::{
    MemoryNodeSet, PgHash, ReshardPlan, ShardCtx, ShardId, ShardKey, ShardRouter, Topology,
    merge_sorted,
};

/// A host record as a shard stores it: (logical shard, host, load).
type Row = (ShardId, String, u32);

/// Shards host records over four in-memory databases exactly as PostgreSQL's
/// `PARTITION BY HASH` would, fans a query out with one database down, and
/// plans doubling the shard count.
pub async fn demo_sharding() -> Result<(), Box<dyn std::error::Error>> {
    // 8 logical shards on 4 node sets: shards can later move between
    // databases without rehashing a key.
    let dbs: Vec<MemoryNodeSet<Row>> = (0..4)
        .map(|i| MemoryNodeSet::new(format!("db{i}")))
        .collect();
    let mut builder = ShardRouter::builder(PgHash::new(8)?)
        .max_concurrency(4)
        .shard_timeout(Duration::from_millis(250));
    for db in &dbs {
        builder = builder.node_set(db.name(), db.clone());
    }
    let router = builder.build()?;

    // Writes go to the shard that owns the key.
    for i in 0..1_000_u32 {
        let host = format!("host-{i:04}");
        let shard = router.shard_for(host.as_str())?;
        router
            .node_set_for(host.as_str())?
            .insert((shard, host.clone(), i % 97));
        if i < 3 {
            println!("{host} -> {shard} on {}", router.node_set_name(shard)?);
        }
    }
    // A batch grouped by shard.
    let batch = ["host-0001", "host-0002", "host-0500"];
    let groups = router.group_by_shard(batch, |h| ShardKey::Text(h))?;
    let groups: Vec<String> = groups
        .iter()
        .map(|(shard, hosts)| format!("{shard}: {}", hosts.join(", ")))
        .collect();
    println!("batch grouped by shard: {}", groups.join("; "));

    // Fan out "the 3 hosts with the lowest load" with db2 down.
    dbs[2].set_down("connection refused");
    let lowest = |ctx: ShardCtx<MemoryNodeSet<Row>>| async move {
        let shard = ctx.shard();
        let rows = ctx
            .nodes()
            .query(|rows| {
                let mut mine: Vec<(u32, String)> = rows
                    .iter()
                    .filter(|(s, _, _)| *s == shard)
                    .map(|(_, h, load)| (*load, h.clone()))
                    .collect();
                mine.sort();
                mine.truncate(3);
                mine
            })
            .await?;
        Ok::<_, sysmanage_db::shard::NodeSetDown>(rows)
    };
    let partial = router.fan_out(lowest).await.into_partial();
    for failure in &partial.failed {
        println!(
            "failed: {} on {}: {}",
            failure.shard, failure.node_set, failure.reason
        );
    }
    let failed = partial.failed_shards();
    let top = merge_sorted(partial.into_values(), |r| r.clone(), Some(3))?;
    let top: Vec<String> = top
        .iter()
        .map(|(load, host)| format!("{host} ({load})"))
        .collect();
    println!(
        "lowest load (from the shards that answered): {}",
        top.join(", ")
    );
    if failed != [ShardId(2), ShardId(6)] {
        return Err(
            format!("expected shards 2 and 6 (both on db2) to fail, got {failed:?}").into(),
        );
    }

    // Doubling 8 -> 16 shards, each new shard r + 8 first placed with r.
    let new_f = PgHash::new(16)?;
    let names = ["db0", "db1", "db2", "db3"];
    let plan = ReshardPlan::compute(
        &router.topology(),
        &Topology::new(
            &new_f,
            (0..16).map(|s| names[s % 8 % 4].to_string()).collect(),
        )?,
    )?;
    println!(
        "8 -> 16 shards: {:.0}% of keys change shard, {:.0}% change database",
        plan.moved_fraction * 100.0,
        plan.copied_fraction * 100.0
    );
    Ok(())
}
