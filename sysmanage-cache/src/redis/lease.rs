//! Leader election on Redis Cluster: [`RedisLease`], a lease key set with
//! `SET NX PX` and renewed by a compare-and-renew script, for
//! [`Elector`](sysmanage_core::lease::Elector).
//!
//! Both keys of a lease carry one hash tag, `{sysmanage:lease:<name>}`, so
//! they live in one slot on one primary and every script runs atomically
//! there:
//!
//! - **grant**: when the lease key is absent, the next token is
//!   `max(last token + 1, the server's TIME in ms)`; it is stored in the
//!   epoch key and the lease key is set to `<token>:<holder>` with
//!   `SET NX PX ttl`. Repeated for a holder that already has the key (a
//!   reply that was lost), it returns that holder's token.
//! - **renewal**: `PEXPIRE` only while the key still holds this term's
//!   `<token>:<holder>` (compare and renew).
//! - **release**: `DEL` under the same comparison.
//!
//! Expiry is judged by the primary's clock alone.
//!
//! # Why one cluster, and what Redlock would add
//!
//! The lease lives on the primary that owns its slot, and Redis replicates
//! asynchronously: if that primary dies, a grant or renewal it had not yet
//! sent to its replica is lost with it. After the replica is promoted the
//! key may be missing (another candidate can be granted a term while the
//! old leader still counts down its own deadline) or older than it was.
//! Two things keep this safe:
//!
//! - the old leader's renewals go to the promoted replica, which does not
//!   hold its term (or holds an older expiry), so it steps down at its next
//!   renewal or its deadline, whichever comes first;
//! - tokens stay monotonic across the failover because a new token is at
//!   least the server's time in milliseconds: a term granted by the
//!   promoted replica gets a larger token than the lost term's as long as
//!   the replica's wall clock is behind the failed primary's by less than
//!   the failover took (`cluster-node-timeout` plus the election, seconds
//!   against NTP's milliseconds). Actuators that check the token never apply
//!   the old term's actions after the new term's.
//!
//! So a failover can shorten a term, never produce two actions out of token
//! order at a fenced actuator, under that one clock assumption.
//!
//! Redlock (a majority of N independent primaries) would make a *grant*
//! survive the loss of a minority of nodes, so two leaders would overlap
//! less often. It would not make actions safe without fencing: it still
//! relies on bounded clock drift and pauses, and it produces no monotonic
//! token by itself (Kleppmann's critique, accepted by its author for
//! fencing). With fencing in place, a single-slot lease with tokens that
//! cannot go backwards gives the same safety with one round trip to one
//! node, and the cluster the host already runs. Hosts that need grants to
//! survive every failover should use the PostgreSQL backend, whose rows are
//! as durable as its commits.

use std::sync::Arc;
use std::time::Duration;

use fred::types::Value;
use sysmanage_core::BoxError;
use sysmanage_core::lease::{FencingToken, LeaseBackend};

use super::RedisCache;
use super::classify::Retry;
use super::command::Cmd;
use crate::error::{CacheError, Result};

const GRANT: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, ':', 1, true)
  if sep and string.sub(cur, sep + 1) == ARGV[1] then
    return string.sub(cur, 1, sep - 1)
  end
  return false
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tok = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
if now > tok then tok = now end
local s = string.format('%.0f', tok)
redis.call('SET', KEYS[2], s)
redis.call('SET', KEYS[1], s .. ':' .. ARGV[1], 'NX', 'PX', ARGV[2])
return s
";

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Checks a name that becomes part of a hash-tagged key.
pub(super) fn check_name(field: &'static str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 200 || name.contains(['{', '}']) {
        return Err(CacheError::InvalidArgument {
            field,
            reason: format!(
                "must be 1 to 200 bytes without '{{' or '}}', got {:?}",
                name.chars().take(40).collect::<String>()
            ),
        });
    }
    Ok(())
}

fn unexpected(what: &str, v: &Value) -> BoxError {
    format!("unexpected reply to {what}: {v:?}").into()
}

/// A [`LeaseBackend`] on Redis Cluster; see the [module docs](self).
///
/// # Examples
/// ```no_run
/// use std::sync::Arc;
/// use sysmanage_cache::redis::{RedisCache, RedisConfig};
/// use sysmanage_cache::redis::lease::RedisLease;
/// use sysmanage_core::lease::{Elector, LeaseConfig};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let cache = RedisCache::connect(RedisConfig::new(["127.0.0.1:7000"])).await?;
/// let lease = RedisLease::new(cache, "autoscaler/web")?;
/// let (elector, driver) = Elector::start("pod-a", Arc::new(lease), LeaseConfig::default())?;
/// tokio::spawn(driver);
/// let token = elector.campaign().await?;
/// # let _ = token; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RedisLease {
    cache: RedisCache,
    key: Arc<[u8]>,
    epoch_key: Arc<[u8]>,
}

impl RedisLease {
    /// The lease `name` (1 to 200 bytes, no braces) on `cache`'s cluster.
    ///
    /// # Errors
    /// [`CacheError::InvalidArgument`] for a bad name.
    pub fn new(cache: RedisCache, name: &str) -> Result<Self> {
        check_name("lease.name", name)?;
        let key = format!("{{sysmanage:lease:{name}}}");
        Ok(Self {
            cache,
            epoch_key: format!("{key}:epoch").into_bytes().into(),
            key: key.into_bytes().into(),
        })
    }

    /// The lease key (its slot is the lease's slot).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    async fn eval(
        &self,
        op: &'static str,
        script: &'static str,
        keys: Vec<&[u8]>,
        args: Vec<Value>,
    ) -> std::result::Result<Value, BoxError> {
        Ok(self
            .cache
            .run(op, &self.key, Retry::Always, Cmd::Eval(script, keys, args))
            .await?)
    }
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

#[async_trait::async_trait]
impl LeaseBackend for RedisLease {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn try_acquire(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> std::result::Result<Option<FencingToken>, BoxError> {
        let v = self
            .eval(
                "lease.grant",
                GRANT,
                vec![&self.key, &self.epoch_key],
                vec![Value::from(holder), Value::from(ttl_ms(ttl))],
            )
            .await?;
        match v {
            Value::Null => Ok(None),
            other => other
                .as_u64()
                .map(|t| Some(FencingToken::new(t)))
                .ok_or_else(|| unexpected("the grant", &other)),
        }
    }

    async fn renew(
        &self,
        holder: &str,
        token: FencingToken,
        ttl: Duration,
    ) -> std::result::Result<bool, BoxError> {
        let v = self
            .eval(
                "lease.renew",
                RENEW,
                vec![&self.key],
                vec![
                    Value::from(format!("{token}:{holder}")),
                    Value::from(ttl_ms(ttl)),
                ],
            )
            .await?;
        v.as_i64()
            .map(|n| n == 1)
            .ok_or_else(|| unexpected("the renewal", &v))
    }

    async fn release(
        &self,
        holder: &str,
        token: FencingToken,
    ) -> std::result::Result<(), BoxError> {
        self.eval(
            "lease.release",
            RELEASE,
            vec![&self.key],
            vec![Value::from(format!("{token}:{holder}"))],
        )
        .await?;
        Ok(())
    }
}
