//! One command, its encoding through fred and the decoding of its reply;
//! single-key commands with redirections and retries.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use fred::clients::Client;
use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::{ClientLike, KeysInterface};
use fred::types::{ClusterHash, CustomCommand, Expiration, Key, SetOptions as FredSet, Value};

use super::RedisCache;
use super::classify::{NO_OWNER, Redirect, Retry, classify, may_resend, routing_error};
use crate::cache::{SetCondition, SetOptions, check_ttl};
use crate::error::{CacheError, Result};
use crate::slot::slot;

/// One command, described so it can be sent directly or after `ASKING`.
#[derive(Clone)]
pub(super) enum Cmd<'a> {
    Get(&'a [u8]),
    Set(&'a [u8], &'a [u8], Option<Expiration>, Option<FredSet>),
    Del(&'a [u8]),
    Exists(&'a [u8]),
    PExpire(&'a [u8], i64),
    PTtl(&'a [u8]),
    IncrBy(&'a [u8], i64),
    MGet(Vec<&'a [u8]>),
    MSet(Vec<(&'a [u8], &'a [u8])>),
    Scan(Vec<Value>),
    /// `EVAL script numkeys keys… args…`; every key in one slot.
    Eval(&'static str, Vec<&'a [u8]>, Vec<Value>),
}

pub(super) async fn send_cmd<C: KeysInterface + Sync>(
    c: &C,
    cmd: &Cmd<'_>,
) -> std::result::Result<Value, FredError> {
    match cmd {
        Cmd::Get(k) => c.get(*k).await,
        Cmd::Set(k, v, exp, cond) => c.set(*k, *v, exp.clone(), cond.clone(), false).await,
        Cmd::Del(k) => c.del(*k).await,
        Cmd::Exists(k) => c.exists(*k).await,
        Cmd::PExpire(k, ms) => c.pexpire(*k, *ms, None).await,
        Cmd::PTtl(k) => c.pttl(*k).await,
        Cmd::IncrBy(k, by) => c.incr_by(*k, *by).await,
        Cmd::MGet(keys) => {
            c.mget(keys.iter().map(|k| Key::from(*k)).collect::<Vec<_>>())
                .await
        }
        Cmd::MSet(pairs) => {
            let pairs: Vec<(Key, Value)> = pairs
                .iter()
                .map(|(k, v)| (Key::from(*k), Value::from(*v)))
                .collect();
            c.mset(pairs).await.map(|()| Value::Null)
        }
        Cmd::Scan(args) => {
            c.custom(
                CustomCommand::new_static("SCAN", ClusterHash::Random, false),
                args.clone(),
            )
            .await
        }
        Cmd::Eval(script, keys, args) => {
            let mut all: Vec<Value> = Vec::with_capacity(2 + keys.len() + args.len());
            all.push(Value::from(*script));
            all.push(Value::from(keys.len() as i64));
            all.extend(keys.iter().map(|k| Value::from(*k)));
            all.extend(args.iter().cloned());
            c.custom(
                CustomCommand::new_static("EVAL", ClusterHash::FirstKey, false),
                all,
            )
            .await
        }
    }
}

/// Sends `cmd` on `client`; after an `ASK`, as `ASKING` + `cmd` written
/// back to back on the node's connection.
pub(super) async fn exec(
    client: &Client,
    cmd: &Cmd<'_>,
    asking: bool,
) -> std::result::Result<Value, FredError> {
    if !asking {
        return send_cmd(client, cmd).await;
    }
    let p = client.pipeline();
    let _: () = p
        .custom(
            CustomCommand::new_static("ASKING", ClusterHash::Random, false),
            Vec::<Value>::new(),
        )
        .await?;
    // Queuing only buffers the command.
    let _ = send_cmd(&p, cmd).await;
    let mut replies = p.try_all::<Value>().await;
    match replies.len() {
        2 => replies
            .pop()
            .unwrap_or_else(|| Err(FredError::new(ErrorKind::Unknown, "no reply"))),
        _ => replies
            .into_iter()
            .find(std::result::Result::is_err)
            .unwrap_or_else(|| Err(FredError::new(ErrorKind::Unknown, "no reply"))),
    }
}

pub(super) fn bytes_of(v: Value) -> Result<Option<Vec<u8>>> {
    match v {
        Value::Null => Ok(None),
        other => other
            .as_bytes()
            .map(|b| Some(b.to_vec()))
            .ok_or_else(|| unexpected(&other)),
    }
}

pub(super) fn int_of(v: &Value) -> Result<i64> {
    match v {
        Value::Integer(i) => Ok(*i),
        other => other.as_i64().ok_or_else(|| unexpected(other)),
    }
}

pub(super) fn unexpected(v: &Value) -> CacheError {
    CacheError::Backend {
        backend: "redis",
        source: Arc::new(std::io::Error::other(format!(
            "unexpected reply of kind {:?}",
            v.kind()
        ))),
    }
}

pub(super) fn set_parts(opts: SetOptions) -> Result<(Option<Expiration>, Option<FredSet>, Retry)> {
    let exp = opts
        .ttl
        .map(check_ttl)
        .transpose()?
        .map(|ms| Expiration::PX(ms as i64));
    Ok(match opts.condition {
        SetCondition::Always => (exp, None, Retry::Always),
        SetCondition::IfPresent => (exp, Some(FredSet::XX), Retry::Always),
        SetCondition::IfAbsent => (exp, Some(FredSet::NX), Retry::OnlyIfNotExecuted),
    })
}

pub(super) fn key_vec<K: AsRef<[u8]>>(keys: &[K]) -> Vec<&[u8]> {
    keys.iter().map(AsRef::as_ref).collect()
}

/// A `SCAN` reply: the next cursor and the keys. Any other shape is an
/// error, never an early end of the scan.
pub(super) fn scan_page(reply: Value) -> Result<(u64, Vec<Vec<u8>>)> {
    let bad = |what: &str| CacheError::Backend {
        backend: "redis",
        source: Arc::new(std::io::Error::other(format!(
            "malformed SCAN reply: {what}"
        ))),
    };
    let Value::Array(mut parts) = reply else {
        return Err(unexpected(&reply));
    };
    if parts.len() != 2 {
        return Err(bad("not [cursor, keys]"));
    }
    let keys = parts.pop().unwrap_or(Value::Null);
    let next = parts.pop().unwrap_or(Value::Null);
    let cursor = next
        .as_bytes()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| bad("cursor is not an unsigned integer"))?;
    let Value::Array(keys) = keys else {
        return Err(bad("keys are not an array"));
    };
    let keys = keys
        .into_iter()
        .map(|k| {
            k.as_bytes()
                .map(<[u8]>::to_vec)
                .ok_or_else(|| bad("a key is not a string"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((cursor, keys))
}

impl RedisCache {
    /// Sends a single-key command to the key's node, following redirections
    /// and retrying transient errors within the budget.
    pub(super) async fn run(
        &self,
        op: &'static str,
        key: &[u8],
        mode: Retry,
        cmd: Cmd<'_>,
    ) -> Result<Value> {
        let _op = self.begin()?;
        let s = slot(key);
        let started = Instant::now();
        let (mut attempt, mut redirects) = (0, 0);
        let mut ask: Option<String> = None;
        let is_read = matches!(cmd, Cmd::Get(_));
        loop {
            let asking = ask.is_some();
            let node: Option<Arc<str>> = ask.take().map(Arc::from).or_else(|| self.owner(s));
            let mut metrics = None;
            let res = match &node {
                Some(n) => match self.node_conn(n).await {
                    Ok((c, m)) => {
                        metrics = Some(m);
                        exec(&c, &cmd, asking).await
                    }
                    Err(e) => Err(e),
                },
                None => Err(routing_error("no node serves this slot")),
            };
            let e = match res {
                Ok(v) => {
                    if let Some(m) = &metrics {
                        let outcome = match (is_read, v.is_null()) {
                            (true, true) => &m.misses,
                            (true, false) => &m.hits,
                            (false, _) => &m.ok,
                        };
                        outcome.increment(1);
                        m.duration.record(started.elapsed());
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            let c = classify(
                e,
                s,
                node.as_deref().unwrap_or(NO_OWNER),
                self.inner.config.command_timeout,
            );
            let redirected = c.redirect != Redirect::None;
            redirects += u32::from(redirected);
            let allowed = may_resend(&c, mode, redirects, self.inner.config.max_redirections);
            if let Some(m) = &metrics {
                match c.redirect {
                    Redirect::None => {}
                    Redirect::Moved(..) => m.moved.increment(1),
                    Redirect::Ask(..) => m.ask.increment(1),
                }
            }
            if !allowed || !self.may_retry(attempt, started) {
                self.inner.counters.failures.fetch_add(1, Ordering::Relaxed);
                match &metrics {
                    Some(m) => m.errors.increment(1),
                    None => {
                        crate::telemetry::count_failures(node.as_deref().unwrap_or(NO_OWNER), 1)
                    }
                }
                // Only transport and cluster errors say anything about the
                // topology; WRONGTYPE, OOM or "not an integer" do not.
                if c.retry {
                    self.request_refresh();
                }
                if mode == Retry::OnlyIfNotExecuted && c.retry && !c.not_executed {
                    // Not re-sent because it may have run: say so.
                    return Err(CacheError::Indeterminate {
                        op,
                        slot: s,
                        node: node.as_deref().unwrap_or(NO_OWNER).to_owned(),
                        source: Arc::new(c.error),
                    });
                }
                return Err(c.error);
            }
            self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = &metrics {
                m.retries.increment(1);
            }
            tracing::debug!(target: "sysmanage_cache::redis::retry", op, attempt, error = %c.error);
            if redirected {
                ask = self.follow(&c.redirect);
            } else {
                self.request_refresh();
                tokio::time::sleep(self.retry_delay(attempt)).await;
                attempt += 1;
            }
        }
    }
}
