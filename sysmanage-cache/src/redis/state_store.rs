//! [`RedisStateStore`]: a [`StateStore`] in a Redis hash, fenced by token
//! inside one script.
//!
//! Each key is a hash `{sysmanage:state:<key>}` with fields `token` and
//! `value`. A claim raises `token` (never lowers it) and returns `value`;
//! a save writes both unless the stored token is newer. Tokens are compared
//! as decimal strings (length first), exactly for every `u64`.
//!
//! Durability is Redis': a failover can lose the newest saves that the
//! replica had not received, and the next leader then resumes from a
//! slightly older state (an older window, never a newer term's state
//! overwritten by an older term). Use the PostgreSQL store where the
//! windows must survive every failover.

use fred::types::Value;
use sysmanage_core::BoxError;
use sysmanage_core::lease::{Fenced, FencingToken, StateStore};

use super::RedisCache;
use super::classify::Retry;
use super::command::Cmd;
use super::lease::check_name;

const CLAIM: &str = r"
local function older(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local cur = redis.call('HGET', KEYS[1], 'token')
if cur and older(ARGV[1], cur) then return {0, cur} end
redis.call('HSET', KEYS[1], 'token', ARGV[1])
local v = redis.call('HGET', KEYS[1], 'value')
if v then return {1, v} end
return {1}
";

const SAVE: &str = r"
local function older(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local cur = redis.call('HGET', KEYS[1], 'token')
if cur and older(ARGV[1], cur) then return {0, cur} end
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'value', ARGV[2])
return {1}
";

/// A [`StateStore`] on Redis Cluster; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct RedisStateStore {
    cache: RedisCache,
}

fn hash_key(key: &str) -> Vec<u8> {
    format!("{{sysmanage:state:{key}}}").into_bytes()
}

fn bad(what: &str, v: &Value) -> BoxError {
    format!("unexpected reply to {what}: {v:?}").into()
}

fn token_in(v: &Value) -> Option<FencingToken> {
    v.as_u64().map(FencingToken::new)
}

/// `{1, value?}` or `{0, newest}`.
fn fenced_reply(what: &str, v: Value) -> std::result::Result<Fenced<Option<Vec<u8>>>, BoxError> {
    let Value::Array(parts) = &v else {
        return Err(bad(what, &v));
    };
    match (parts.first().and_then(Value::as_i64), parts.get(1)) {
        (Some(1), None) => Ok(Fenced::Applied(None)),
        (Some(1), Some(value)) => Ok(Fenced::Applied(Some(
            value
                .as_bytes()
                .map(<[u8]>::to_vec)
                .ok_or_else(|| bad(what, &v))?,
        ))),
        (Some(0), Some(newest)) => Ok(Fenced::Stale {
            newest: token_in(newest).ok_or_else(|| bad(what, &v))?,
        }),
        _ => Err(bad(what, &v)),
    }
}

impl RedisStateStore {
    /// A store on `cache`'s cluster.
    pub fn new(cache: RedisCache) -> Self {
        Self { cache }
    }

    async fn eval(
        &self,
        op: &'static str,
        script: &'static str,
        key: &str,
        args: Vec<Value>,
    ) -> std::result::Result<Value, BoxError> {
        check_name("stateStore.key", key)?;
        let k = hash_key(key);
        Ok(self
            .cache
            .run(op, &k, Retry::Always, Cmd::Eval(script, vec![&k], args))
            .await?)
    }
}

#[async_trait::async_trait]
impl StateStore for RedisStateStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn claim(
        &self,
        key: &str,
        token: FencingToken,
    ) -> std::result::Result<Fenced<Option<Vec<u8>>>, BoxError> {
        let v = self
            .eval(
                "state.claim",
                CLAIM,
                key,
                vec![Value::from(token.to_string())],
            )
            .await?;
        fenced_reply("the claim", v)
    }

    async fn save(
        &self,
        key: &str,
        token: FencingToken,
        value: &[u8],
    ) -> std::result::Result<Fenced<()>, BoxError> {
        let v = self
            .eval(
                "state.save",
                SAVE,
                key,
                vec![Value::from(token.to_string()), Value::from(value)],
            )
            .await?;
        Ok(match fenced_reply("the save", v)? {
            Fenced::Stale { newest } => Fenced::Stale { newest },
            _ => Fenced::Applied(()),
        })
    }

    async fn load(
        &self,
        key: &str,
    ) -> std::result::Result<Option<(FencingToken, Vec<u8>)>, BoxError> {
        const LOAD: &str = "return redis.call('HMGET', KEYS[1], 'token', 'value')";
        let v = self.eval("state.load", LOAD, key, Vec::new()).await?;
        let Value::Array(parts) = &v else {
            return Err(bad("the load", &v));
        };
        match (parts.first(), parts.get(1)) {
            (Some(t), Some(value)) if !value.is_null() => Ok(Some((
                token_in(t).ok_or_else(|| bad("the load", &v))?,
                value
                    .as_bytes()
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| bad("the load", &v))?,
            ))),
            _ => Ok(None),
        }
    }
}
