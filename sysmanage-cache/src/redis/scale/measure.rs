//! Measuring keys and bytes per slot on the live cluster: `CLUSTER
//! COUNTKEYSINSLOT` for every slot on its owner, `INFO` for each owner's
//! bytes per key, and optionally `MEMORY USAGE` of sampled keys.

use fred::types::Value;

use super::admin::{Cmd, cluster, down, int, keys as key_list, text};
use super::config::Measure;
use super::error::ScaleResult;
use super::executor::Scaler;
use super::view::ClusterView;
use super::weights::{SlotWeights, bytes_per_key, estimate_bytes, sampled_bytes};
use crate::join::join_all;
use crate::slot::SLOT_COUNT;

/// Commands per pipeline while measuring.
const CHUNK: usize = 2_000;

/// `used_memory_dataset` and the `db0` key count from an `INFO` reply.
pub(super) fn dataset_and_keys(info: &str) -> (u64, u64) {
    let mut dataset = 0;
    let mut keys = 0;
    for line in info.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("used_memory_dataset:") {
            dataset = v.parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("db0:") {
            keys = v
                .split(',')
                .find_map(|p| p.strip_prefix("keys="))
                .and_then(|k| k.parse().ok())
                .unwrap_or(0);
        }
    }
    (dataset, keys)
}

impl Scaler {
    async fn run_chunks(&self, addr: &str, cmds: Vec<Cmd>) -> ScaleResult<Vec<Value>> {
        let admin = &self.inner.admin;
        let timeout = admin.config().command_timeout.saturating_mul(10);
        let mut out = Vec::with_capacity(cmds.len());
        let mut cmds = cmds.into_iter().peekable();
        while cmds.peek().is_some() {
            let chunk: Vec<Cmd> = cmds.by_ref().take(CHUNK).collect();
            let replies = admin
                .pipeline(addr, chunk, timeout)
                .await
                .map_err(|e| down(addr, None, e))?;
            out.extend(replies.into_iter().map(|r| r.unwrap_or(Value::Null)));
        }
        Ok(out)
    }

    /// Keys and bytes of every slot, measured on each slot's owner.
    pub(super) async fn measure(&self, view: &ClusterView) -> ScaleResult<SlotWeights> {
        let measure = self.inner.config.measure;
        if measure == Measure::Off {
            return Ok(SlotWeights::unmeasured());
        }
        let mut keys = vec![0u64; usize::from(SLOT_COUNT)];
        let mut bytes = vec![0u64; usize::from(SLOT_COUNT)];
        let owners: Vec<(&str, Vec<u16>)> = view
            .primaries()
            .filter(|n| n.slots > 0)
            .map(|n| {
                let slots = (0..SLOT_COUNT)
                    .filter(|&s| view.owner(s).is_some_and(|o| o.id == n.id))
                    .collect();
                (n.addr.as_str(), slots)
            })
            .collect();
        let per_node = join_all(
            owners
                .iter()
                .map(|(addr, slots)| async move {
                    let counts = self
                        .run_chunks(
                            addr,
                            slots
                                .iter()
                                .map(|&s| cluster("COUNTKEYSINSLOT", [i64::from(s).into()]))
                                .collect(),
                        )
                        .await?;
                    let info = self
                        .inner
                        .admin
                        .run(addr, ("INFO", vec!["memory".into(), "keyspace".into()]))
                        .await
                        .map_err(|e| down(addr, None, e))?;
                    let (dataset, node_keys) = dataset_and_keys(&text(&info).unwrap_or_default());
                    let counts: Vec<u64> = counts
                        .iter()
                        .map(|v| int(v).unwrap_or(0).max(0) as u64)
                        .collect();
                    let sampled = match measure {
                        Measure::Sampled { keys_per_slot } => {
                            Some(self.sample(addr, slots, &counts, keys_per_slot).await?)
                        }
                        _ => None,
                    };
                    ScaleResult::Ok((counts, bytes_per_key(dataset, node_keys), sampled))
                })
                .collect(),
        )
        .await;
        for ((_, slots), res) in owners.iter().zip(per_node) {
            let (counts, per_key, sampled) = res?;
            for (i, &s) in slots.iter().enumerate() {
                let k = counts.get(i).copied().unwrap_or(0);
                keys[usize::from(s)] = k;
                bytes[usize::from(s)] = match &sampled {
                    Some(samples) => sampled_bytes(k, &samples[i]),
                    None => estimate_bytes(k, per_key),
                };
            }
        }
        SlotWeights::new(keys, bytes)
    }

    /// `MEMORY USAGE` of up to `n` keys of each non-empty slot.
    async fn sample(
        &self,
        addr: &str,
        slots: &[u16],
        counts: &[u64],
        n: u32,
    ) -> ScaleResult<Vec<Vec<u64>>> {
        let busy: Vec<usize> = (0..slots.len()).filter(|&i| counts[i] > 0).collect();
        let got = self
            .run_chunks(
                addr,
                busy.iter()
                    .map(|&i| {
                        cluster(
                            "GETKEYSINSLOT",
                            [i64::from(slots[i]).into(), i64::from(n).into()],
                        )
                    })
                    .collect(),
            )
            .await?;
        let mut owner_of: Vec<usize> = Vec::new();
        let mut cmds: Vec<Cmd> = Vec::new();
        for (&i, v) in busy.iter().zip(got) {
            for k in key_list(v) {
                owner_of.push(i);
                cmds.push(("MEMORY", vec!["USAGE".into(), Value::from(&k[..])]));
            }
        }
        let sizes = self.run_chunks(addr, cmds).await?;
        let mut out = vec![Vec::new(); slots.len()];
        for (i, v) in owner_of.into_iter().zip(sizes) {
            if let Some(b) = int(&v) {
                out[i].push(b.max(0) as u64);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_read_and_missing_ones_are_zero() {
        let info = "# Memory\r\nused_memory:2000\r\nused_memory_dataset:1500\r\n# Keyspace\r\ndb0:keys=30,expires=2,avg_ttl=0\r\n";
        assert_eq!(dataset_and_keys(info), (1500, 30));
        assert_eq!(dataset_and_keys("# Keyspace\r\n"), (0, 0));
        assert_eq!(
            dataset_and_keys("used_memory_dataset:x\r\ndb0:keys=y"),
            (0, 0)
        );
    }
}
