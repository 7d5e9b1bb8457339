//! The [`ClusterCache`] operations.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fred::types::Value;

use super::RedisCache;
use super::classify::{Retry, classify};
use super::command::{Cmd, bytes_of, exec, int_of, key_vec, scan_page, set_parts};
use super::multi::{Multi, Out};
use crate::cache::{ClusterCache, SetOptions, Ttl, check_ttl};
use crate::error::{CacheError, KeyResult, Result};

impl ClusterCache for RedisCache {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.config.limits.check_key(key)?;
        bytes_of(self.run("get", key, Retry::Always, Cmd::Get(key)).await?)
    }

    async fn set(&self, key: &[u8], value: &[u8], opts: SetOptions) -> Result<bool> {
        let limits = &self.inner.config.limits;
        limits.check_key(key)?;
        limits.check_value(value)?;
        let (exp, cond, mode) = set_parts(opts)?;
        let v = self
            .run("set", key, mode, Cmd::Set(key, value, exp, cond))
            .await?;
        Ok(!matches!(v, Value::Null))
    }

    async fn delete(&self, key: &[u8]) -> Result<bool> {
        self.inner.config.limits.check_key(key)?;
        Ok(int_of(
            &self
                .run("delete", key, Retry::Always, Cmd::Del(key))
                .await?,
        )? > 0)
    }

    async fn exists(&self, key: &[u8]) -> Result<bool> {
        self.inner.config.limits.check_key(key)?;
        Ok(int_of(
            &self
                .run("exists", key, Retry::Always, Cmd::Exists(key))
                .await?,
        )? > 0)
    }

    async fn expire(&self, key: &[u8], ttl: Duration) -> Result<bool> {
        self.inner.config.limits.check_key(key)?;
        let ms = check_ttl(ttl)? as i64;
        Ok(int_of(
            &self
                .run("expire", key, Retry::Always, Cmd::PExpire(key, ms))
                .await?,
        )? > 0)
    }

    async fn ttl(&self, key: &[u8]) -> Result<Ttl> {
        self.inner.config.limits.check_key(key)?;
        let v = self.run("ttl", key, Retry::Always, Cmd::PTtl(key)).await?;
        Ok(match int_of(&v)? {
            -2 => Ttl::Missing,
            -1 => Ttl::Persistent,
            ms => Ttl::ExpiresIn(Duration::from_millis(ms.max(0) as u64)),
        })
    }

    async fn incr(&self, key: &[u8], by: i64) -> Result<i64> {
        self.inner.config.limits.check_key(key)?;
        int_of(
            &self
                .run("incr", key, Retry::OnlyIfNotExecuted, Cmd::IncrBy(key, by))
                .await?,
        )
    }

    async fn mget<K: AsRef<[u8]> + Sync>(
        &self,
        keys: &[K],
    ) -> Result<Vec<KeyResult<Option<Vec<u8>>>>> {
        self.inner.config.limits.check_keys("mget", keys)?;
        let keys = key_vec(keys);
        Ok(self
            .multi(Multi::Get, &keys)
            .await
            .into_iter()
            .map(|r| match r? {
                Out::Value(v) => Ok(v),
                // Never a miss: an unexpected shape is an error.
                other => Err(CacheError::Backend {
                    backend: "redis",
                    source: Arc::new(std::io::Error::other(format!(
                        "mget decoded {other:?} instead of a value"
                    ))),
                }),
            })
            .collect())
    }

    async fn mset<K: AsRef<[u8]> + Sync, V: AsRef<[u8]> + Sync>(
        &self,
        entries: &[(K, V)],
        ttl: Option<Duration>,
    ) -> Result<Vec<KeyResult<()>>> {
        let limits = &self.inner.config.limits;
        let keys: Vec<&[u8]> = entries.iter().map(|(k, _)| k.as_ref()).collect();
        limits.check_keys("mset", &keys)?;
        let values: Vec<&[u8]> = entries.iter().map(|(_, v)| v.as_ref()).collect();
        values.iter().try_for_each(|v| limits.check_value(v))?;
        let op = match ttl.map(check_ttl).transpose()? {
            None => Multi::SetAll(&values),
            Some(ms) => Multi::SetEach(&values, ms),
        };
        Ok(self
            .multi(op, &keys)
            .await
            .into_iter()
            .map(|r| r.map(|_| ()))
            .collect())
    }

    async fn mdel<K: AsRef<[u8]> + Sync>(&self, keys: &[K]) -> Result<Vec<KeyResult<bool>>> {
        self.inner.config.limits.check_keys("mdel", keys)?;
        let keys = key_vec(keys);
        Ok(self
            .multi(Multi::Del, &keys)
            .await
            .into_iter()
            .map(|r| r.map(|o| matches!(o, Out::Existed(true))))
            .collect())
    }

    async fn shutdown(&self, deadline: Duration) -> Result<()> {
        RedisCache::shutdown(self, deadline).await
    }

    async fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<Vec<u8>>> {
        let _op = self.begin()?;
        if limit == 0 {
            return Err(CacheError::invalid("limit", "must be greater than zero"));
        }
        let limit = limit.min(self.inner.config.limits.max_scan_results);
        let mut pattern = Vec::with_capacity(prefix.len() + 8);
        for &b in prefix {
            if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                pattern.push(b'\\');
            }
            pattern.push(b);
        }
        pattern.push(b'*');
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let snapshot = self.routing();
        let timeout = self.inner.config.command_timeout;
        for first in snapshot.primaries() {
            // A slot of this node: after a failure, the scan restarts on
            // whichever node serves it then (a promoted replica).
            let probe = snapshot
                .ranges
                .iter()
                .find(|r| r.node == first)
                .map_or(0, |r| r.start);
            let mut node = first.to_owned();
            let (started, mut attempt) = (Instant::now(), 0);
            let mut cursor: u64 = 0;
            // Bounded: at most 10,000 pages per node.
            for _ in 0..10_000 {
                let args: Vec<Value> = vec![
                    cursor.to_string().into(),
                    "MATCH".into(),
                    Value::from(&pattern[..]),
                    "COUNT".into(),
                    1000.into(),
                ];
                let res = match self.node(&node).await {
                    Ok(c) => exec(&c, &Cmd::Scan(args), false).await,
                    Err(e) => Err(e),
                };
                let reply = match res {
                    Ok(v) => v,
                    Err(e) => {
                        let c = classify(e, probe, &node, timeout);
                        if !c.retry || !self.may_retry(attempt, started) {
                            self.inner.counters.failures.fetch_add(1, Ordering::Relaxed);
                            if c.retry {
                                self.request_refresh();
                            }
                            return Err(c.error);
                        }
                        self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(target: "sysmanage_cache::redis::retry", op = "scan_prefix", attempt, error = %c.error);
                        tokio::time::sleep(self.retry_delay(attempt)).await;
                        attempt += 1;
                        let _ = self.refresh_now().await;
                        if let Some(owner) = self.owner(probe)
                            && *owner != *node
                        {
                            // A cursor is only valid on the node that issued it.
                            node = owner.to_string();
                            cursor = 0;
                        }
                        continue;
                    }
                };
                let (next, keys) = scan_page(reply)?;
                for k in keys {
                    if k.starts_with(prefix) {
                        seen.insert(k);
                        if seen.len() >= limit {
                            return Ok(seen.into_iter().collect());
                        }
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(seen.into_iter().collect())
    }
}
