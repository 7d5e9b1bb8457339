//! Moving a group of slots from one primary to another with the documented
//! protocol: `SETSLOT IMPORTING` on the target, `SETSLOT MIGRATING` on the
//! source, `GETKEYSINSLOT` + pipelined `MIGRATE … KEYS` until the slots are
//! empty on the source, then `SETSLOT NODE` on the target, the source and
//! the other primaries. The batching and the reading of `MIGRATE` errors
//! are pure functions below the driver.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fred::error::Error as FredError;
use fred::types::Value;

use super::admin::{Cmd, cluster, down, int, is_reply, keys as key_list, refused, text};
use super::error::{ScaleError, ScaleResult};
use super::executor::{Scaler, Tally};
use super::plan::SlotMove;
use super::progress::ScaleEvent;
use crate::join::join_all;
use crate::redis::config::parse_addr;

/// A node by address and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct NodeRef {
    pub(super) addr: String,
    pub(super) id: String,
}

/// Slots moved together from one source to one target.
#[derive(Clone, Debug)]
pub(super) struct Group {
    pub(super) from: NodeRef,
    pub(super) to: NodeRef,
    pub(super) slots: Vec<u16>,
    /// Set `IMPORTING` on the target first (false where a marker is left
    /// from an interrupted run).
    pub(super) set_importing: bool,
    /// Set `MIGRATING` on the source first.
    pub(super) set_migrating: bool,
    /// The other primaries, told the new owner last.
    pub(super) others: Vec<String>,
    /// Closing a slot an earlier run left open.
    pub(super) closing: bool,
}

/// What a group moved.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct GroupDone {
    pub(super) keys: u64,
}

/// Keys `GETKEYSINSLOT` fetches per slot before the slot is opened; a
/// slot with more is fetched in full with a second call.
const PRESCAN: u64 = 10_000;
/// Keys fetched per slot per round once the slot is open.
const RESCAN: u64 = 1_000;
/// Rounds of `GETKEYSINSLOT` per slot before giving up (keys cannot appear
/// on a migrating source, so a slot empties in a few rounds).
const MAX_ROUNDS: usize = 100_000;

/// Groups of moves: consecutive moves with the same source and target, at
/// most `per_group` slots and `key_budget` keys per group (a slot with more
/// keys moves alone).
pub(super) fn group_moves(
    moves: &[SlotMove],
    per_group: usize,
    key_budget: u64,
) -> Vec<Vec<&SlotMove>> {
    let mut groups: Vec<Vec<&SlotMove>> = Vec::new();
    let mut keys = 0u64;
    for m in moves {
        let fits = groups.last().is_some_and(|g| {
            g[0].from == m.from
                && g[0].to == m.to
                && g.len() < per_group
                && keys.saturating_add(m.keys) <= key_budget
        });
        if fits {
            keys = keys.saturating_add(m.keys);
            if let Some(g) = groups.last_mut() {
                g.push(m);
            }
        } else {
            keys = m.keys;
            groups.push(vec![m]);
        }
    }
    groups
}

/// Batches of `sizes` (in order) for `MIGRATE … KEYS`: at most `max_keys`
/// keys and `max_bytes` bytes each; a key of `max_bytes` or more goes alone.
pub(super) fn migrate_batches(sizes: &[u64], max_keys: usize, max_bytes: u64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, &b) in sizes.iter().enumerate() {
        let full = i - start >= max_keys || (i > start && bytes.saturating_add(b) > max_bytes);
        if full {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes = bytes.saturating_add(b);
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// Credentials for `MIGRATE`'s `AUTH`/`AUTH2` option.
#[derive(Clone, Debug)]
pub(super) enum MigrateAuth {
    None,
    Password(String),
    User(String, String),
}

/// `MIGRATE host port "" 0 timeout_ms [REPLACE] [AUTH…] KEYS k…`.
pub(super) fn migrate_cmd(
    host: &str,
    port: u16,
    timeout: Duration,
    auth: &MigrateAuth,
    replace: bool,
    keys: &[&[u8]],
) -> Cmd {
    let mut args: Vec<Value> = vec![
        host.into(),
        i64::from(port).into(),
        "".into(),
        0.into(),
        i64::try_from(timeout.as_millis())
            .unwrap_or(i64::MAX)
            .into(),
    ];
    if replace {
        args.push("REPLACE".into());
    }
    match auth {
        MigrateAuth::None => {}
        MigrateAuth::Password(p) => {
            args.push("AUTH".into());
            args.push(p.as_str().into());
        }
        MigrateAuth::User(u, p) => {
            args.push("AUTH2".into());
            args.push(u.as_str().into());
            args.push(p.as_str().into());
        }
    }
    args.push("KEYS".into());
    args.extend(keys.iter().map(|k| Value::from(*k)));
    ("MIGRATE", args)
}

/// Whether `e` is `SETSLOT`'s refusal on a node that is now a replica.
fn turned_replica(e: &ScaleError) -> bool {
    match e {
        ScaleError::Command { source, .. } => source.to_string().contains("only with masters"),
        _ => false,
    }
}

/// What a `MIGRATE` error reply means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MigrateError {
    /// The target already has the key (`BUSYKEY`).
    Busy,
    /// The source could not reach the target in time (`IOERR`).
    Io,
    /// The target cannot serve right now (`CLUSTERDOWN`, `TRYAGAIN`,
    /// `LOADING`, `MASTERDOWN`): retried with a pause.
    Transient,
    /// Anything else.
    Other,
}

pub(super) fn classify_migrate(details: &str) -> MigrateError {
    if details.contains("BUSYKEY") {
        MigrateError::Busy
    } else if details.contains("IOERR") {
        MigrateError::Io
    } else if ["CLUSTERDOWN", "TRYAGAIN", "LOADING", "MASTERDOWN"]
        .iter()
        .any(|w| details.contains(w))
    {
        MigrateError::Transient
    } else {
        MigrateError::Other
    }
}

/// A key and its `MEMORY USAGE`.
type SizedKey = (Vec<u8>, u64);

/// Keys of one slot with their sizes.
type SlotKeys = Vec<SizedKey>;

/// Keys sized by one script call.
const SIZES_PER_SCRIPT: usize = 1_000;

/// `MEMORY USAGE` of each key, 0 for a key that is gone.
const SIZES: &str = "local out = {} for i, k in ipairs(KEYS) do \
    out[i] = redis.call('MEMORY', 'USAGE', k) or 0 end return out";

/// `EVAL_RO` of [`SIZES`] over `keys` (all of one slot).
pub(super) fn sizes_script(keys: &[Vec<u8>]) -> Cmd {
    let mut args: Vec<Value> = Vec::with_capacity(keys.len() + 2);
    args.push(SIZES.into());
    args.push((keys.len() as i64).into());
    args.extend(keys.iter().map(|k| Value::from(&k[..])));
    ("EVAL_RO", args)
}

/// The sizes in a reply of [`sizes_script`] over `n` keys.
pub(super) fn sizes_of(v: Value, n: usize) -> Option<Vec<u64>> {
    match v {
        Value::Array(items) if items.len() == n => items
            .iter()
            .map(|x| int(x).map(|b| b.max(0) as u64))
            .collect(),
        _ => None,
    }
}

impl Scaler {
    fn migrate_auth(&self) -> MigrateAuth {
        let c = self.inner.admin.config();
        match (&c.username, &c.password) {
            (Some(u), Some(p)) => MigrateAuth::User(u.clone(), p.expose().to_owned()),
            (None, Some(p)) => MigrateAuth::Password(p.expose().to_owned()),
            _ => MigrateAuth::None,
        }
    }

    /// Per-reply deadline of a `MIGRATE`.
    fn migrate_deadline(&self) -> Duration {
        self.inner
            .config
            .migrate_timeout
            .saturating_add(self.inner.admin.config().command_timeout)
    }

    /// The keys of `slots` on the source, up to `limit` per slot (all of
    /// them when `limit` is `None`), with their `MEMORY USAGE`.
    async fn scan(
        &self,
        source: &str,
        slots: &[u16],
        limit: Option<u64>,
    ) -> ScaleResult<BTreeMap<u16, SlotKeys>> {
        let admin = &self.inner.admin;
        let timeout = admin.config().command_timeout.saturating_mul(4);
        let first = limit.unwrap_or(PRESCAN);
        let mut cmds = Vec::with_capacity(slots.len() * 2);
        for &s in slots {
            cmds.push(cluster("COUNTKEYSINSLOT", [i64::from(s).into()]));
            cmds.push(cluster(
                "GETKEYSINSLOT",
                [
                    i64::from(s).into(),
                    i64::try_from(first).unwrap_or(i64::MAX).into(),
                ],
            ));
        }
        let replies = admin
            .pipeline(source, cmds, timeout)
            .await
            .map_err(|e| down(source, slots.first().copied(), e))?;
        let mut out = BTreeMap::new();
        let mut it = replies.into_iter();
        for &s in slots {
            let (count, got) = (it.next(), it.next());
            let count = match count {
                Some(Ok(v)) => int(&v).unwrap_or(0).max(0) as u64,
                Some(Err(e)) => return Err(refused("CLUSTER COUNTKEYSINSLOT", source, e)),
                None => 0,
            };
            let mut keys = match got {
                Some(Ok(v)) => key_list(v),
                Some(Err(e)) => return Err(refused("CLUSTER GETKEYSINSLOT", source, e)),
                None => Vec::new(),
            };
            if limit.is_none() && count > keys.len() as u64 {
                let v = admin
                    .call(
                        source,
                        cluster(
                            "GETKEYSINSLOT",
                            [
                                i64::from(s).into(),
                                i64::try_from(count).unwrap_or(i64::MAX).into(),
                            ],
                        ),
                        timeout,
                    )
                    .await
                    .map_err(|e| down(source, Some(s), e))?;
                keys = key_list(v);
            }
            out.insert(s, keys);
        }
        // Sizes: one read-only script per slot (its keys share the slot)
        // instead of one MEMORY USAGE per key; per-key commands where the
        // script is refused (a key gone from a migrating slot: TRYAGAIN or
        // ASK; no EVAL_RO before Redis 7).
        let mut calls: Vec<(u16, Vec<Vec<u8>>)> = Vec::new();
        for (s, ks) in out {
            for chunk in ks.chunks(SIZES_PER_SCRIPT) {
                calls.push((s, chunk.to_vec()));
            }
        }
        let mut sized: BTreeMap<u16, SlotKeys> = slots.iter().map(|&s| (s, Vec::new())).collect();
        let cmds = calls.iter().map(|(_, ks)| sizes_script(ks)).collect();
        let replies = admin
            .pipeline(source, cmds, timeout.saturating_mul(4))
            .await
            .map_err(|e| down(source, slots.first().copied(), e))?;
        let mut fallback: Vec<(u16, Vec<u8>)> = Vec::new();
        for ((s, ks), r) in calls.into_iter().zip(replies) {
            match r.ok().and_then(|v| sizes_of(v, ks.len())) {
                Some(sizes) => sized
                    .entry(s)
                    .or_default()
                    .extend(ks.into_iter().zip(sizes)),
                None => fallback.extend(ks.into_iter().map(|k| (s, k))),
            }
        }
        for chunk in fallback.chunks(10_000) {
            let cmds = chunk
                .iter()
                .map(|(_, k)| ("MEMORY", vec![Value::from("USAGE"), Value::from(&k[..])]))
                .collect();
            let sizes = admin
                .pipeline(source, cmds, timeout.saturating_mul(4))
                .await
                .map_err(|e| down(source, Some(chunk[0].0), e))?;
            for ((s, k), r) in chunk.iter().zip(sizes) {
                // A key deleted meanwhile has no size: MIGRATE reports NOKEY.
                let b = r.ok().and_then(|v| int(&v)).unwrap_or(0).max(0) as u64;
                sized.entry(*s).or_default().push((k.clone(), b));
            }
        }
        Ok(sized)
    }

    fn check_big(&self, keys: &BTreeMap<u16, SlotKeys>, slot_open: bool) -> ScaleResult<()> {
        let limit = self.inner.config.max_key_bytes;
        for (&slot, ks) in keys {
            if let Some((k, b)) = ks.iter().find(|(_, b)| *b > limit) {
                return Err(ScaleError::BigKey {
                    slot,
                    key: k.clone(),
                    bytes: *b,
                    limit,
                    slot_open,
                });
            }
        }
        Ok(())
    }

    /// `CLUSTER SETSLOT <slot> <sub> [<id>]` for every slot of `slots` on
    /// `node`, one pipeline.
    async fn setslot(
        &self,
        node: &str,
        slots: &[u16],
        sub: &'static str,
        id: Option<&str>,
        what: &'static str,
    ) -> ScaleResult<()> {
        let cmds = slots
            .iter()
            .map(|&s| {
                let mut args: Vec<Value> = vec![i64::from(s).into(), sub.into()];
                if let Some(id) = id {
                    args.push(id.into());
                }
                cluster("SETSLOT", args)
            })
            .collect();
        let admin = &self.inner.admin;
        let replies = admin
            .pipeline(node, cmds, admin.config().command_timeout.saturating_mul(4))
            .await
            .map_err(|e| down(node, slots.first().copied(), e))?;
        for r in replies {
            if let Err(e) = r {
                return Err(if is_reply(&e) {
                    refused(what, node, e)
                } else {
                    down(node, slots.first().copied(), e)
                });
            }
        }
        Ok(())
    }

    /// Moves a group of slots; see the module documentation.
    pub(super) async fn move_group(&self, g: &Group, tally: &Tally) -> ScaleResult<GroupDone> {
        let started = Instant::now();
        let (src, dst) = (&g.from.addr, &g.to.addr);
        // Before opening: every key and its size, so that a big key stops
        // the run with the slot untouched.
        let mut pending = self.scan(src, &g.slots, None).await?;
        self.check_big(&pending, g.closing)?;
        if g.set_importing {
            self.setslot(
                dst,
                &g.slots,
                "IMPORTING",
                Some(&g.from.id),
                "CLUSTER SETSLOT IMPORTING",
            )
            .await?;
        }
        // MIGRATING, and in the same round trip the keys each slot holds
        // (none can appear once the source migrates).
        let held = self.open_source(g).await?;
        let scanned_none = pending.values().all(Vec::is_empty);
        if scanned_none && held.iter().all(|&n| n == 0) {
            pending.clear();
        } else if scanned_none {
            pending = self.scan(src, &g.slots, Some(RESCAN)).await?;
            self.check_big(&pending, true)?;
        }
        let mut per_slot: BTreeMap<u16, (u64, u64)> = BTreeMap::new();
        for &slot in &g.slots {
            let keys = pending.get(&slot).map_or(0, |k| k.len() as u64);
            tracing::debug!(target: "sysmanage_cache::redis::scale", slot, from = %src, to = %dst, keys, "slot started");
            self.emit(ScaleEvent::SlotStarted {
                slot,
                from: src.clone(),
                to: dst.clone(),
                keys,
            });
        }
        let mut rounds = 0;
        while !pending.values().all(Vec::is_empty) {
            rounds += 1;
            if rounds > MAX_ROUNDS {
                return Err(ScaleError::ClusterState(format!(
                    "slot {} still holds keys on {src} after {MAX_ROUNDS} rounds; slot left open",
                    g.slots[0]
                )));
            }
            self.migrate_round(g, &pending, tally, &mut per_slot)
                .await?;
            pending = self.scan(src, &g.slots, Some(RESCAN)).await?;
            self.check_big(&pending, true)?;
        }
        // The target first (it bumps its epoch and owns the slots), then
        // the source (it refuses while it still holds keys) and the rest.
        self.assign_group(&g.slots, &g.to, src, &g.others).await?;
        let elapsed = started.elapsed();
        let mut done = GroupDone::default();
        for &slot in &g.slots {
            let (keys, bytes) = per_slot.get(&slot).copied().unwrap_or_default();
            done.keys += keys;
            tracing::debug!(target: "sysmanage_cache::redis::scale", slot, keys, bytes, elapsed_secs = elapsed.as_secs_f64(), "slot finished");
            self.emit(ScaleEvent::SlotFinished {
                slot,
                from: src.clone(),
                to: dst.clone(),
                keys,
                bytes,
                elapsed,
            });
        }
        Ok(done)
    }

    /// `SETSLOT MIGRATING` on the source for every slot of the group (when
    /// the group sets it), pipelined with `COUNTKEYSINSLOT` of each slot:
    /// the keys each slot holds once open.
    async fn open_source(&self, g: &Group) -> ScaleResult<Vec<u64>> {
        let src = &g.from.addr;
        let mut cmds = Vec::new();
        if g.set_migrating {
            for &s in &g.slots {
                cmds.push(cluster(
                    "SETSLOT",
                    [
                        i64::from(s).into(),
                        "MIGRATING".into(),
                        g.to.id.as_str().into(),
                    ],
                ));
            }
        }
        for &s in &g.slots {
            cmds.push(cluster("COUNTKEYSINSLOT", [i64::from(s).into()]));
        }
        let admin = &self.inner.admin;
        let replies = admin
            .pipeline(src, cmds, admin.config().command_timeout.saturating_mul(4))
            .await
            .map_err(|e| down(src, g.slots.first().copied(), e))?;
        let split = if g.set_migrating { g.slots.len() } else { 0 };
        let mut counts = Vec::with_capacity(g.slots.len());
        for (i, r) in replies.into_iter().enumerate() {
            match r {
                Err(e) if is_reply(&e) => return Err(refused("CLUSTER SETSLOT MIGRATING", src, e)),
                Err(e) => return Err(down(src, g.slots.first().copied(), e)),
                Ok(v) if i >= split => counts.push(int(&v).unwrap_or(0).max(0) as u64),
                Ok(_) => {}
            }
        }
        Ok(counts)
    }

    /// `SETSLOT NODE` on the new owner, then on the former owner `src`
    /// (unless it is the owner) and on `others` at once (`others` best
    /// effort: gossip carries the change to a node that misses it).
    async fn assign_group(
        &self,
        slots: &[u16],
        owner: &NodeRef,
        src: &str,
        others: &[String],
    ) -> ScaleResult<()> {
        const WHAT: &str = "CLUSTER SETSLOT NODE";
        self.setslot(&owner.addr, slots, "NODE", Some(&owner.id), WHAT)
            .await?;
        let on_src = async {
            if src == owner.addr {
                Ok(())
            } else {
                self.setslot(src, slots, "NODE", Some(&owner.id), WHAT)
                    .await
            }
        };
        let on_others = join_all(
            others
                .iter()
                .filter(|a| **a != owner.addr && *a != src)
                .map(|a| async move {
                    (
                        a,
                        self.setslot(a, slots, "NODE", Some(&owner.id), WHAT).await,
                    )
                })
                .collect(),
        );
        let (src_result, results) = tokio::join!(on_src, on_others);
        for (a, r) in results {
            if let Err(e) = r {
                tracing::debug!(target: "sysmanage_cache::redis::scale", node = %a, error = %e, "SETSLOT NODE on another primary failed; gossip will tell it");
            }
        }
        match src_result {
            // The source learnt by gossip that its last slots went to the
            // owner and, as Redis does, turned into a replica of it: it has
            // nothing left to be told (it held no key of the slots).
            Err(e) if turned_replica(&e) => {
                tracing::debug!(target: "sysmanage_cache::redis::scale", node = %src, "the source gave its last slots away and became a replica");
                Ok(())
            }
            other => other,
        }
    }

    /// The tail of the protocol for a slot that already belongs to `owner`.
    pub(super) async fn assign(
        &self,
        slot: u16,
        owner: &NodeRef,
        others: &[String],
    ) -> ScaleResult<()> {
        self.assign_group(&[slot], owner, &owner.addr, others).await
    }

    /// Clears a marker nothing moved through.
    pub(super) async fn stable(&self, slot: u16, node: &NodeRef) -> ScaleResult<()> {
        self.setslot(
            &node.addr,
            &[slot],
            "STABLE",
            None,
            "CLUSTER SETSLOT STABLE",
        )
        .await
    }

    /// One round: every pending key in `MIGRATE` batches, pipelined;
    /// keys of a failed batch are retried one by one, which names the key
    /// an error is about. Counts what moved after each round trip.
    async fn migrate_round(
        &self,
        g: &Group,
        pending: &BTreeMap<u16, SlotKeys>,
        tally: &Tally,
        per_slot: &mut BTreeMap<u16, (u64, u64)>,
    ) -> ScaleResult<()> {
        let cfg = &self.inner.config;
        let admin = &self.inner.admin;
        let (host, port) = parse_addr(&g.to.addr)
            .ok_or_else(|| ScaleError::ClusterState(format!("{} is not host:port", g.to.addr)))?;
        let auth = self.migrate_auth();
        let mut batches: Vec<(u16, &[SizedKey])> = Vec::new();
        for (&slot, keys) in pending {
            let sizes: Vec<u64> = keys.iter().map(|(_, b)| *b).collect();
            for r in migrate_batches(&sizes, cfg.keys_per_migrate, cfg.max_migrate_bytes) {
                batches.push((slot, &keys[r]));
            }
        }
        let mut retry: Vec<(u16, &(Vec<u8>, u64))> = Vec::new();
        for chunk in batches.chunks(cfg.migrate_pipeline) {
            let cmds = chunk
                .iter()
                .map(|(_, ks)| {
                    let keys: Vec<&[u8]> = ks.iter().map(|(k, _)| k.as_slice()).collect();
                    migrate_cmd(&host, port, cfg.migrate_timeout, &auth, false, &keys)
                })
                .collect();
            let deadline = self.migrate_deadline().saturating_mul(chunk.len() as u32);
            let replies = match admin.pipeline(&g.from.addr, cmds, deadline).await {
                Ok(r) => r,
                // The whole pipeline failed (the source's connection, or no
                // reply in time): each key is retried on its own below.
                Err(e) => {
                    tracing::debug!(target: "sysmanage_cache::redis::scale::migrate", error = %e, "MIGRATE pipeline failed");
                    chunk.iter().map(|_| Err(e.clone())).collect()
                }
            };
            let mut moved: BTreeMap<u16, (u64, u64)> = BTreeMap::new();
            for ((slot, ks), r) in chunk.iter().zip(replies) {
                match r {
                    Ok(_) => {
                        let e = moved.entry(*slot).or_default();
                        e.0 += ks.len() as u64;
                        e.1 += ks.iter().map(|(_, b)| *b).sum::<u64>();
                    }
                    Err(e) => {
                        tracing::debug!(target: "sysmanage_cache::redis::scale::migrate", slot, error = %e, "MIGRATE batch failed; retrying key by key");
                        retry.extend(ks.iter().map(|k| (*slot, k)));
                    }
                }
            }
            for (slot, (k, b)) in moved {
                self.record(slot, k, b, tally, per_slot);
            }
        }
        for (slot, (key, bytes)) in retry {
            if self.migrate_one(g, slot, key, &host, port, &auth).await? {
                self.record(slot, 1, *bytes, tally, per_slot);
            }
        }
        Ok(())
    }

    /// Counts keys and bytes moved in `slot` and says so (`KeysMoved`).
    fn record(
        &self,
        slot: u16,
        keys: u64,
        bytes: u64,
        tally: &Tally,
        per_slot: &mut BTreeMap<u16, (u64, u64)>,
    ) {
        let e = per_slot.entry(slot).or_default();
        e.0 += keys;
        e.1 += bytes;
        tally.keys.fetch_add(keys, Ordering::Relaxed);
        tally.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.emit(ScaleEvent::KeysMoved { slot, keys, bytes });
    }

    /// `MIGRATE` of one key, resolving `BUSYKEY` and telling a dead target
    /// from a slow one. Returns whether the key moved (false: it was gone).
    async fn migrate_one(
        &self,
        g: &Group,
        slot: u16,
        key: &[u8],
        host: &str,
        port: u16,
        auth: &MigrateAuth,
    ) -> ScaleResult<bool> {
        let cfg = &self.inner.config;
        let admin = &self.inner.admin;
        let (src, dst) = (&g.from.addr, &g.to.addr);
        let mut replace = false;
        let mut timeouts = 0;
        let mut transient_until: Option<Instant> = None;
        loop {
            let cmd = migrate_cmd(host, port, cfg.migrate_timeout, auth, replace, &[key]);
            let res = admin.call(src, cmd, self.migrate_deadline()).await;
            let e = match res {
                Ok(v) => return Ok(text(&v).as_deref() != Some("NOKEY")),
                Err(e) => e,
            };
            if !is_reply(&e) {
                // No reply from the source: down, or the MIGRATE is slow.
                self.ping(src).await.map_err(|e| down(src, Some(slot), e))?;
                timeouts += 1;
            } else {
                match classify_migrate(e.details()) {
                    MigrateError::Busy if !replace => {
                        if cfg.replace_busy_keys || self.same_on_both(g, key).await? {
                            tracing::debug!(target: "sysmanage_cache::redis::scale::migrate", slot, "BUSYKEY: replacing the target's copy");
                            replace = true;
                            continue;
                        }
                        return Err(ScaleError::BusyKey {
                            slot,
                            key: key.to_vec(),
                            source_node: src.clone(),
                            target: dst.clone(),
                        });
                    }
                    MigrateError::Io => {
                        self.ping(dst).await.map_err(|e| down(dst, Some(slot), e))?;
                        timeouts += 1;
                    }
                    MigrateError::Transient
                        if transient_until.is_none_or(|t| Instant::now() < t) =>
                    {
                        transient_until.get_or_insert(Instant::now() + cfg.gossip_timeout);
                        tracing::debug!(target: "sysmanage_cache::redis::scale::migrate", slot, error = %e, "target not serving yet; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    _ => {
                        return Err(ScaleError::MigrateFailed {
                            slot,
                            key: key.to_vec(),
                            target: dst.clone(),
                            message: e.details().to_owned(),
                        });
                    }
                }
            }
            if timeouts >= 2 {
                return Err(ScaleError::MigrateTimeout {
                    slot,
                    key: key.to_vec(),
                    target: dst.clone(),
                    timeout: cfg.migrate_timeout,
                });
            }
        }
    }

    async fn ping(&self, addr: &str) -> Result<(), FredError> {
        self.inner
            .admin
            .run(addr, ("PING", Vec::new()))
            .await
            .map(|_| ())
    }

    /// Whether `key` holds the same `DUMP` on the source and (with
    /// `ASKING`) on the target: a `MIGRATE` that timed out after the target
    /// stored the key.
    async fn same_on_both(&self, g: &Group, key: &[u8]) -> ScaleResult<bool> {
        let admin = &self.inner.admin;
        let timeout = self.migrate_deadline();
        let on_src = admin
            .call(&g.from.addr, ("DUMP", vec![Value::from(key)]), timeout)
            .await
            .map_err(|e| down(&g.from.addr, None, e))?;
        let on_dst = admin
            .pipeline(
                &g.to.addr,
                vec![("ASKING", Vec::new()), ("DUMP", vec![Value::from(key)])],
                timeout,
            )
            .await
            .map_err(|e| down(&g.to.addr, None, e))?;
        let dst = on_dst.into_iter().nth(1).and_then(Result::ok);
        Ok(
            match (on_src.as_bytes(), dst.as_ref().and_then(Value::as_bytes)) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(slot: u16, from: &str, to: &str, keys: u64) -> SlotMove {
        SlotMove {
            slot,
            from: from.into(),
            to: to.into(),
            keys,
            bytes: 0,
        }
    }

    #[test]
    fn groups_share_source_and_target_and_respect_both_budgets() {
        let moves = vec![
            mv(0, "a", "n", 1),
            mv(1, "a", "n", 1),
            mv(2, "a", "n", 1),
            mv(3, "a", "n", 500),
            mv(4, "a", "n", 1),
            mv(5, "b", "n", 0),
            mv(6, "b", "m", 0),
        ];
        let g = group_moves(&moves, 2, 400);
        let slots: Vec<Vec<u16>> = g
            .iter()
            .map(|g| g.iter().map(|m| m.slot).collect())
            .collect();
        assert_eq!(
            slots,
            [vec![0, 1], vec![2], vec![3], vec![4], vec![5], vec![6]]
        );
        let g = group_moves(&moves, 16, 400);
        let slots: Vec<Vec<u16>> = g
            .iter()
            .map(|g| g.iter().map(|m| m.slot).collect())
            .collect();
        assert_eq!(slots, [vec![0, 1, 2], vec![3], vec![4], vec![5], vec![6]]);
        assert!(group_moves(&[], 16, 400).is_empty());
    }

    #[test]
    fn batches_bound_keys_and_bytes_and_isolate_big_keys() {
        assert_eq!(migrate_batches(&[1; 5], 2, 100), [0..2, 2..4, 4..5]);
        assert_eq!(
            migrate_batches(&[10, 10, 200, 10], 10, 100),
            [0..2, 2..3, 3..4]
        );
        assert_eq!(migrate_batches(&[200], 10, 100), vec![0..1]);
        assert_eq!(migrate_batches(&[60, 60], 10, 100), [0..1, 1..2]);
        assert!(migrate_batches(&[], 10, 100).is_empty());
        assert_eq!(
            migrate_batches(&[u64::MAX, u64::MAX], 10, 100),
            [0..1, 1..2]
        );
    }

    #[test]
    fn migrate_commands_carry_timeout_auth_and_replace() {
        let text = |c: Cmd| {
            let mut s = c.0.to_owned();
            for a in c.1 {
                s.push(' ');
                s.push_str(&a.as_string().unwrap_or_default());
            }
            s
        };
        let c = migrate_cmd(
            "10.0.0.1",
            7006,
            Duration::from_secs(5),
            &MigrateAuth::None,
            false,
            &[b"k1", b"k2"],
        );
        assert_eq!(text(c), "MIGRATE 10.0.0.1 7006  0 5000 KEYS k1 k2");
        let c = migrate_cmd(
            "h",
            1,
            Duration::from_millis(7),
            &MigrateAuth::User("u".into(), "p".into()),
            true,
            &[b"k"],
        );
        assert_eq!(text(c), "MIGRATE h 1  0 7 REPLACE AUTH2 u p KEYS k");
        let c = migrate_cmd(
            "h",
            1,
            Duration::MAX,
            &MigrateAuth::Password("p".into()),
            false,
            &[b"k"],
        );
        assert!(text(c).contains(&format!("{} AUTH p KEYS k", i64::MAX)));
    }

    #[test]
    fn sizes_come_from_one_script_per_slot_and_a_bad_reply_is_rejected() {
        let (name, args) = sizes_script(&[b"{t}a".to_vec(), b"{t}b".to_vec()]);
        assert_eq!(name, "EVAL_RO");
        assert_eq!(args.len(), 4);
        assert_eq!(args[1], Value::Integer(2));
        let ok = Value::Array(vec![Value::Integer(56), Value::Integer(0)]);
        assert_eq!(sizes_of(ok, 2), Some(vec![56, 0]));
        assert_eq!(sizes_of(Value::Array(vec![Value::Integer(1)]), 2), None);
        assert_eq!(
            sizes_of(Value::Array(vec![Value::Null, Value::Integer(1)]), 2),
            None
        );
        assert_eq!(sizes_of(Value::from("OK"), 1), None);
    }

    #[test]
    fn a_source_turned_replica_is_told_nothing_more() {
        let e = |msg: &str| ScaleError::Command {
            command: "CLUSTER SETSLOT NODE",
            node: "n:1".into(),
            source: std::sync::Arc::new(FredError::new(
                fred::error::ErrorKind::Unknown,
                msg.to_owned(),
            )),
        };
        assert!(turned_replica(&e(
            "ERR Please use SETSLOT only with masters."
        )));
        assert!(!turned_replica(&e(
            "ERR Can't assign hashslot 5 to a different node while I still hold keys for this hash slot."
        )));
        assert!(!turned_replica(&ScaleError::ClusterState("x".into())));
    }

    #[test]
    fn migrate_errors_are_read_from_the_reply() {
        assert_eq!(
            classify_migrate(
                "ERR Target instance replied with error: BUSYKEY Target key name already exists."
            ),
            MigrateError::Busy
        );
        assert_eq!(
            classify_migrate("IOERR error or timeout reading to target instance"),
            MigrateError::Io
        );
        assert_eq!(classify_migrate("ERR syntax error"), MigrateError::Other);
        assert_eq!(
            classify_migrate(
                "ERR Target instance replied with error: CLUSTERDOWN The cluster is down"
            ),
            MigrateError::Transient
        );
    }
}
