//! Settings of the scaling executor.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysmanage_core::duration::{DAY, MILLISECOND, check_count, check_duration};

use crate::error::{CacheError, Result};

/// How the executor measures the load of each slot for a plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum Measure {
    /// `CLUSTER COUNTKEYSINSLOT` for every slot on its owner; bytes per
    /// slot are its keys times the owner's bytes per key
    /// (`used_memory_dataset / keys` from `INFO`). About 16,384 pipelined
    /// commands per plan.
    #[default]
    Info,
    /// As [`Info`](Self::Info), then `MEMORY USAGE` of up to
    /// `keys_per_slot` keys of every non-empty slot (`GETKEYSINSLOT`): bytes
    /// per slot are its keys times their mean size. Sees big values that
    /// the per-node mean hides.
    Sampled {
        /// Keys sampled per slot, 1 – 1,000.
        keys_per_slot: u32,
    },
    /// No measurement: plans by slot counts only, expected keys and bytes
    /// unknown (0). Refused with [`Balance::Keys`](super::Balance::Keys)
    /// and [`Balance::Memory`](super::Balance::Memory).
    Off,
}

/// Settings of the [`Scaler`](super::Scaler).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ScaleConfig {
    /// Keys per `MIGRATE … KEYS` command. Default: 100 (redis-cli uses 10).
    /// Range: 1 – 10,000.
    pub keys_per_migrate: usize,
    /// Most bytes (`MEMORY USAGE`) in one `MIGRATE`; a key at least this
    /// big travels alone. Default: 4 MiB. Range: 1 KiB – 512 MiB.
    pub max_migrate_bytes: u64,
    /// `MIGRATE` commands sent back to back (pipelined) to a source before
    /// reading their replies. The source runs them one after the other
    /// either way; the pipeline saves round trips. Default: 4. Range: 1 –
    /// 64.
    pub migrate_pipeline: usize,
    /// `MIGRATE`'s own timeout (source ↔ target I/O). The executor waits
    /// for a reply this long per command plus
    /// [`RedisConfig::command_timeout`](crate::RedisConfig::command_timeout).
    /// Keep it well below `cluster-node-timeout`: a source waiting on its
    /// target answers nothing else, pings included, and a cluster that
    /// misses its pings that long fails it over. Default: 1 s. Range: 1 ms
    /// – 1 day.
    pub migrate_timeout: Duration,
    /// Largest key (`MEMORY USAGE`) the executor moves. A bigger key stops
    /// the run with [`ScaleError::BigKey`](super::ScaleError::BigKey)
    /// before its slot is opened. Default: 64 MiB: a `MIGRATE` blocks source
    /// and target while it serialises, sends and restores the value, and a
    /// restore above the default replica output-buffer soft limit (64 MiB)
    /// risks disconnecting the target's replicas. Range: 1 KiB – 512 MiB
    /// (Redis' largest bulk string).
    pub max_key_bytes: u64,
    /// Slots opened, moved and assigned together when they share source
    /// and target: one `SETSLOT` pipeline per node for the whole group, so
    /// one `nodes.conf` save instead of one per slot, and a few round trips
    /// per group instead of per slot. A cancel takes effect at the next
    /// group boundary. Default: 16; 1 moves slot by slot. Range: 1 – 1,024.
    pub slots_per_group: usize,
    /// Most keys in one group; a slot with more moves alone. Bounds how
    /// long a group's slots stay open (multi-key commands on a slot being
    /// migrated get `TRYAGAIN` until it closes). Default: 2,000. Range: 1 –
    /// 10,000,000.
    pub group_keys: u64,
    /// Groups migrated at once, in all; never with a node the source of
    /// one group and the target of another (two sources waiting on each
    /// other's `MIGRATE` would stop answering pings). Default: 4. Range: 1
    /// – 64.
    pub parallel_slots: usize,
    /// Groups migrated at once from one source primary. Default: 1.
    /// Range: 1 – 64.
    pub parallel_per_source: usize,
    /// Pause after each slot, to spare a latency-sensitive cluster.
    /// Default: 0. Range: 0 – 1 day.
    pub pause_between_slots: Duration,
    /// How long joins, replica attachments and slot assignments may take
    /// to spread by gossip. Default: 60 s. Range: 1 ms – 1 day.
    pub gossip_timeout: Duration,
    /// Per-slot load measurement. Default: [`Measure::Info`].
    pub measure: Measure,
    /// A primary whose load is within this fraction of its share is left
    /// alone by a rebalance (redis-cli's `--cluster-threshold`, as a
    /// fraction). Default: 0.02. Range: [0, 1].
    pub tolerance: f64,
    /// With [`Balance::Keys`](super::Balance::Keys) or
    /// [`Balance::Memory`](super::Balance::Memory), every slot also weighs
    /// this fraction of the mean slot's load, so that empty slots still
    /// spread (new keys hash to every slot alike). It also means byte (or
    /// key) loads end up to about this fraction of a slot's mean per slot
    /// of difference apart. Default: 0.1. Range: [0, 100].
    pub slot_floor: f64,
    /// On `BUSYKEY` with different contents on the target, overwrite the
    /// target's copy with the source's (`MIGRATE … REPLACE`), as
    /// `redis-cli --cluster-replace` does. When the two copies are
    /// identical (a `MIGRATE` that timed out after the target stored the
    /// key) the executor replaces regardless. Default: false (stop with
    /// [`ScaleError::BusyKey`](super::ScaleError::BusyKey)).
    pub replace_busy_keys: bool,
    /// `CLUSTER RESET HARD` removed nodes once forgotten, so that they
    /// stop gossiping and can join again later as empty nodes. Default:
    /// true.
    pub reset_removed: bool,
    /// Capacity of the event channel; slow subscribers lose the oldest
    /// events. Default: 4,096. Range: 1 – 1,048,576.
    pub event_capacity: usize,
}

impl Default for ScaleConfig {
    fn default() -> Self {
        Self {
            keys_per_migrate: 100,
            max_migrate_bytes: 4 << 20,
            migrate_pipeline: 4,
            migrate_timeout: Duration::from_secs(1),
            max_key_bytes: 64 << 20,
            slots_per_group: 16,
            group_keys: 2_000,
            parallel_slots: 4,
            parallel_per_source: 1,
            pause_between_slots: Duration::ZERO,
            gossip_timeout: Duration::from_secs(60),
            measure: Measure::Info,
            tolerance: 0.02,
            slot_floor: 0.1,
            replace_busy_keys: false,
            reset_removed: true,
            event_capacity: 4096,
        }
    }
}

impl ScaleConfig {
    /// Checks every setting against its documented range.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] naming the field.
    pub fn validate(&self) -> Result<()> {
        check_count("scale.keys_per_migrate", self.keys_per_migrate, 1, 10_000)?;
        check_count(
            "scale.max_migrate_bytes",
            self.max_migrate_bytes,
            1 << 10,
            512 << 20,
        )?;
        check_count("scale.migrate_pipeline", self.migrate_pipeline, 1, 64)?;
        check_count(
            "scale.max_key_bytes",
            self.max_key_bytes,
            1 << 10,
            512 << 20,
        )?;
        check_count("scale.slots_per_group", self.slots_per_group, 1, 1_024)?;
        check_count("scale.group_keys", self.group_keys, 1, 10_000_000)?;
        check_count("scale.parallel_slots", self.parallel_slots, 1, 64)?;
        check_count("scale.parallel_per_source", self.parallel_per_source, 1, 64)?;
        check_count("scale.event_capacity", self.event_capacity, 1, 1 << 20)?;
        check_duration(
            "scale.migrate_timeout",
            self.migrate_timeout,
            MILLISECOND,
            DAY,
        )?;
        check_duration(
            "scale.gossip_timeout",
            self.gossip_timeout,
            MILLISECOND,
            DAY,
        )?;
        check_duration(
            "scale.pause_between_slots",
            self.pause_between_slots,
            Duration::ZERO,
            DAY,
        )?;
        if let Measure::Sampled { keys_per_slot } = self.measure {
            check_count("scale.measure.keys_per_slot", keys_per_slot, 1, 1_000)?;
        }
        if !(0.0..=1.0).contains(&self.tolerance) {
            return Err(CacheError::invalid(
                "scale.tolerance",
                format!("must be in [0, 1], got {}", self.tolerance),
            ));
        }
        if !(0.0..=100.0).contains(&self.slot_floor) {
            return Err(CacheError::invalid(
                "scale.slot_floor",
                format!("must be in [0, 100], got {}", self.slot_floor),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_each_bad_field_is_named() {
        ScaleConfig::default().validate().unwrap();
        let cases: Vec<(ScaleConfig, &str)> = vec![
            (
                ScaleConfig {
                    keys_per_migrate: 0,
                    ..ScaleConfig::default()
                },
                "scale.keys_per_migrate",
            ),
            (
                ScaleConfig {
                    max_key_bytes: 1 << 40,
                    ..ScaleConfig::default()
                },
                "scale.max_key_bytes",
            ),
            (
                ScaleConfig {
                    parallel_slots: 65,
                    ..ScaleConfig::default()
                },
                "scale.parallel_slots",
            ),
            (
                ScaleConfig {
                    migrate_timeout: Duration::ZERO,
                    ..ScaleConfig::default()
                },
                "scale.migrate_timeout",
            ),
            (
                ScaleConfig {
                    gossip_timeout: Duration::MAX,
                    ..ScaleConfig::default()
                },
                "scale.gossip_timeout",
            ),
            (
                ScaleConfig {
                    tolerance: f64::NAN,
                    ..ScaleConfig::default()
                },
                "scale.tolerance",
            ),
            (
                ScaleConfig {
                    slot_floor: -1.0,
                    ..ScaleConfig::default()
                },
                "scale.slot_floor",
            ),
            (
                ScaleConfig {
                    measure: Measure::Sampled { keys_per_slot: 0 },
                    ..ScaleConfig::default()
                },
                "scale.measure.keys_per_slot",
            ),
            (
                ScaleConfig {
                    migrate_pipeline: 0,
                    ..ScaleConfig::default()
                },
                "scale.migrate_pipeline",
            ),
            (
                ScaleConfig {
                    max_migrate_bytes: 0,
                    ..ScaleConfig::default()
                },
                "scale.max_migrate_bytes",
            ),
            (
                ScaleConfig {
                    slots_per_group: 0,
                    ..ScaleConfig::default()
                },
                "scale.slots_per_group",
            ),
            (
                ScaleConfig {
                    group_keys: 0,
                    ..ScaleConfig::default()
                },
                "scale.group_keys",
            ),
            (
                ScaleConfig {
                    parallel_per_source: 0,
                    ..ScaleConfig::default()
                },
                "scale.parallel_per_source",
            ),
            (
                ScaleConfig {
                    event_capacity: 0,
                    ..ScaleConfig::default()
                },
                "scale.event_capacity",
            ),
        ];
        for (c, field) in cases {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
    }
}
