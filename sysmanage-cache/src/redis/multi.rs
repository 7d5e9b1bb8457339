//! Multi-key operations: keys grouped by slot, slots by node, pipelines
//! per node, nodes concurrently, per-key results in input order.

use crate::join::join_all;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use fred::error::{Error as FredError, ErrorKind};

use fred::types::{Expiration, Value};

use super::RedisCache;
use super::classify::{
    Classified, NO_OWNER, Redirect, Retry, classify, is_lost_reply, is_unrouted, may_resend,
    routing_error,
};
use super::command::{Cmd, bytes_of, exec, int_of, send_cmd, unexpected};
use crate::error::{CacheError, KeyResult, Result};
use crate::slot::group_by_slot;

/// Most commands in one pipeline; a node's batch is sent as consecutive
/// pipelines of this size.
pub(super) const MAX_PIPELINE: usize = 1_000;

/// One command of a multi-key operation: the keys (by input index) of one
/// slot that travel together.
#[derive(Clone, Debug)]
pub(super) struct Unit {
    pub(super) slot: u16,
    pub(super) idx: Vec<usize>,
    pub(super) redirects: u32,
    pub(super) ask: Option<String>,
}

#[derive(Clone, Copy)]
pub(super) enum Multi<'a> {
    Get,
    SetAll(&'a [&'a [u8]]),
    SetEach(&'a [&'a [u8]], u64),
    Del,
}

#[derive(Clone, Debug)]
pub(super) enum Out {
    Value(Option<Vec<u8>>),
    Done,
    Existed(bool),
}

impl<'a> Multi<'a> {
    /// Whether each key needs its own command (else one per slot).
    pub(super) fn per_key(self) -> bool {
        matches!(self, Self::SetEach(..) | Self::Del)
    }

    pub(super) fn cmd(self, keys: &[&'a [u8]], u: &Unit) -> Cmd<'a> {
        match self {
            Self::Get => Cmd::MGet(u.idx.iter().map(|&i| keys[i]).collect()),
            Self::SetAll(values) => {
                Cmd::MSet(u.idx.iter().map(|&i| (keys[i], values[i])).collect())
            }
            Self::SetEach(values, ms) => {
                let i = u.idx[0];
                Cmd::Set(keys[i], values[i], Some(Expiration::PX(ms as i64)), None)
            }
            Self::Del => Cmd::Del(keys[u.idx[0]]),
        }
    }

    pub(super) fn decode(self, u: &Unit, v: Value) -> Result<Vec<Out>> {
        match self {
            Self::Get => match v {
                Value::Array(items) if items.len() == u.idx.len() => items
                    .into_iter()
                    .map(|v| bytes_of(v).map(Out::Value))
                    .collect(),
                other if u.idx.len() == 1 => Ok(vec![Out::Value(bytes_of(other)?)]),
                other => Err(unexpected(&other)),
            },
            Self::SetAll(_) | Self::SetEach(..) => Ok(vec![Out::Done; u.idx.len()]),
            Self::Del => Ok(vec![Out::Existed(int_of(&v)? > 0)]),
        }
    }
}

/// Counts one unit's keys in the node's metrics.
fn count_unit(m: &crate::telemetry::NodeMetrics, res: &std::result::Result<Vec<Out>, Classified>) {
    match res {
        Ok(outs) => {
            let (mut hits, mut misses, mut ok) = (0_u64, 0_u64, 0_u64);
            for o in outs {
                match o {
                    Out::Value(Some(_)) => hits += 1,
                    Out::Value(None) => misses += 1,
                    Out::Done | Out::Existed(_) => ok += 1,
                }
            }
            for (c, n) in [(&m.hits, hits), (&m.misses, misses), (&m.ok, ok)] {
                if n > 0 {
                    c.increment(n);
                }
            }
        }
        // Failures are counted once final (in `multi`), not per attempt.
        Err(c) => match c.redirect {
            Redirect::Moved(..) => m.moved.increment(1),
            Redirect::Ask(..) => m.ask.increment(1),
            Redirect::None => {}
        },
    }
}

impl RedisCache {
    /// Runs the commands of `units` on one node, each with its own reply.
    pub(super) async fn node_batch(
        &self,
        op: Multi<'_>,
        keys: &[&[u8]],
        node: String,
        units: Vec<Unit>,
    ) -> Vec<(Unit, std::result::Result<Vec<Out>, Classified>)> {
        let timeout = self.inner.config.command_timeout;
        let metrics;
        let replies: Vec<std::result::Result<Value, FredError>> = match self.node_conn(&node).await
        {
            Err(e) => {
                let keys_in_batch = units.iter().map(|u| u.idx.len()).sum();
                let c = classify(e, units[0].slot, &node, timeout);
                return batch_failed(units, &node, keys_in_batch, c);
            }
            Ok((client, m)) => {
                metrics = m;
                let cmds: Vec<(Cmd<'_>, bool)> = units
                    .iter()
                    .map(|u| (op.cmd(keys, u), u.ask.is_some()))
                    .collect();
                if cmds.len() == 1 {
                    // Fast path: one slot on this node (e.g. all keys share a tag).
                    vec![exec(&client, &cmds[0].0, cmds[0].1).await]
                } else if cmds.iter().any(|(_, asking)| *asking) {
                    join_all(
                        cmds.iter()
                            .map(|(c, asking)| exec(&client, c, *asking))
                            .collect(),
                    )
                    .await
                } else {
                    // Pipelines of at most MAX_PIPELINE commands, one after
                    // the other: each is a single hand-off to the node's
                    // connection task, written back to back, with its own
                    // command timeout (100,000 keys are not one pipeline
                    // under one deadline, and a timed-out chunk is all a
                    // retry re-sends). This client follows no redirection
                    // itself, so replies stay in order; a redirected
                    // command just reports its error.
                    let mut replies = Vec::with_capacity(cmds.len());
                    for chunk in cmds.chunks(MAX_PIPELINE) {
                        let p = client.pipeline();
                        for (c, _) in chunk {
                            // Queuing only buffers the command.
                            let _ = send_cmd(&p, c).await;
                        }
                        let mut part = p.try_all::<Value>().await;
                        if part.len() != chunk.len() {
                            // The pipeline as a whole failed: every command
                            // shares its error.
                            let e = part
                                .pop()
                                .and_then(std::result::Result::err)
                                .unwrap_or_else(|| {
                                    FredError::new(
                                        ErrorKind::Unknown,
                                        "pipeline returned too few replies",
                                    )
                                });
                            part = chunk.iter().map(|_| Err(e.clone())).collect();
                        }
                        replies.extend(part);
                    }
                    replies
                }
            }
        };
        let transport = |e: &FredError| {
            matches!(
                e.kind(),
                ErrorKind::Timeout | ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Routing
            ) || (*e.kind() == ErrorKind::Unknown
                && (is_lost_reply(e.details()) || is_unrouted(e.details())))
        };
        if units.len() > 1 && replies.iter().all(|r| r.as_ref().is_err_and(transport)) {
            let keys_in_batch = units.iter().map(|u| u.idx.len()).sum();
            let err = replies
                .into_iter()
                .find_map(std::result::Result::err)
                .unwrap_or_else(|| FredError::new(ErrorKind::Unknown, "no reply"));
            let c = classify(err, units[0].slot, &node, timeout);
            return batch_failed(units, &node, keys_in_batch, c);
        }
        units
            .into_iter()
            .zip(replies)
            .map(|(u, r)| {
                let res = match r {
                    Ok(v) => op.decode(&u, v).map_err(|error| Classified {
                        error,
                        retry: false,
                        not_executed: true,
                        redirect: Redirect::None,
                    }),
                    Err(e) => Err(classify(e, u.slot, &node, timeout)),
                };
                count_unit(&metrics, &res);
                (u, res)
            })
            .collect()
    }

    /// Splits by slot, batches per node, runs nodes concurrently, follows
    /// redirections, retries failed slots, and returns per-key results in
    /// input order.
    pub(super) async fn multi(&self, op: Multi<'_>, keys: &[&[u8]]) -> Vec<KeyResult<Out>> {
        let _op = match self.begin() {
            Ok(op) => op,
            Err(e) => return keys.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut results: Vec<Option<KeyResult<Out>>> = vec![None; keys.len()];
        let unit = |slot, idx| Unit {
            slot,
            idx,
            redirects: 0,
            ask: None,
        };
        let groups = group_by_slot(keys);
        let mut pending: Vec<Unit> = if op.per_key() {
            groups
                .into_iter()
                .flat_map(|(s, idx)| idx.into_iter().map(move |i| unit(s, vec![i])))
                .collect()
        } else {
            groups.into_iter().map(|(s, idx)| unit(s, idx)).collect()
        };
        let started = Instant::now();
        let mut attempt = 0;
        while !pending.is_empty() {
            let routing = self.routing_table();
            let mut by_node: BTreeMap<String, Vec<Unit>> = BTreeMap::new();
            // Slots without a known owner fail (retryably) without a
            // connection attempt, as in `run`.
            let mut unrouted = Vec::new();
            for u in pending.drain(..) {
                let node = u
                    .ask
                    .clone()
                    .or_else(|| routing.owner_of(u.slot).map(|n| n.to_string()));
                match node {
                    Some(node) => by_node.entry(node).or_default().push(u),
                    None => {
                        let c = classify(
                            routing_error("no node serves this slot"),
                            u.slot,
                            NO_OWNER,
                            self.inner.config.command_timeout,
                        );
                        unrouted.push((u, Err(c)));
                    }
                }
            }
            let batches = by_node
                .into_iter()
                .map(|(node, units)| self.node_batch(op, keys, node, units))
                .collect();
            let (mut failed_keys, mut must_wait, mut topology_suspect) = (0u64, false, false);
            let outcomes = join_all(batches).await.into_iter().flatten();
            // Decided once the attempt is over: the budget bounds the time
            // spent, waiting on a dead node included.
            let retry_allowed = self.may_retry(attempt, started);
            for (mut u, res) in outcomes.chain(unrouted) {
                match res {
                    Ok(outs) => {
                        for (&i, out) in u.idx.iter().zip(outs) {
                            results[i] = Some(Ok(out));
                        }
                    }
                    // Every multi-key command may be repeated (MGET, MSET,
                    // SET … PX, DEL).
                    Err(c)
                        if retry_allowed
                            && may_resend(
                                &c,
                                Retry::Always,
                                u.redirects + u32::from(c.redirect != Redirect::None),
                                self.inner.config.max_redirections,
                            ) =>
                    {
                        if c.redirect == Redirect::None {
                            must_wait = true;
                            u.ask = None;
                        } else {
                            u.redirects += 1;
                            u.ask = self.follow(&c.redirect);
                        }
                        pending.push(u);
                    }
                    Err(c) => {
                        failed_keys += u.idx.len() as u64;
                        let owner = self.owner(u.slot);
                        crate::telemetry::count_failures(
                            owner.as_deref().unwrap_or(NO_OWNER),
                            u.idx.len() as u64,
                        );
                        topology_suspect |= c.retry;
                        for &i in &u.idx {
                            results[i] = Some(Err(c.error.clone()));
                        }
                    }
                }
            }
            if failed_keys > 0 {
                self.inner
                    .counters
                    .failures
                    .fetch_add(failed_keys, Ordering::Relaxed);
                if topology_suspect {
                    self.request_refresh();
                }
            }
            if !pending.is_empty() {
                self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target: "sysmanage_cache::redis::retry", op = "multi", attempt, slots = pending.len());
                if must_wait {
                    self.request_refresh();
                    tokio::time::sleep(self.retry_delay(attempt)).await;
                    attempt += 1;
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(CacheError::invalid("keys", "internal: key without result"))
                })
            })
            .collect()
    }
}

pub(super) fn batch_failed(
    units: Vec<Unit>,
    node: &str,
    keys: usize,
    c: Classified,
) -> Vec<(Unit, std::result::Result<Vec<Out>, Classified>)> {
    let error = match c.error {
        // Refused credentials and failed handshakes are about the node,
        // not the batch: reported as they are on every key.
        e @ (CacheError::Auth { .. } | CacheError::Tls { .. }) => e,
        e => CacheError::NodeBatch {
            node: node.to_owned(),
            keys,
            source: Arc::new(e),
        },
    };
    units
        .into_iter()
        .map(|u| {
            let e = Classified {
                error: error.clone(),
                retry: c.retry,
                not_executed: c.not_executed,
                redirect: Redirect::None,
            };
            (u, Err(e))
        })
        .collect()
}
