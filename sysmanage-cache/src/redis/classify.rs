//! What a failed command means: whether it may be re-sent, whether it
//! surely did not run, and where a redirection points.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::error::{Error as FredError, ErrorKind};

use sysmanage_core::SplitMix64;

use super::RedisCache;

use crate::error::{CacheError, SharedError};

/// Whether an operation may be repeated after an ambiguous failure.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    Always,
    OnlyIfNotExecuted,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Redirect {
    None,
    Moved(u16, String),
    Ask(String),
}

pub(super) struct Classified {
    pub(super) error: CacheError,
    pub(super) retry: bool,
    pub(super) not_executed: bool,
    pub(super) redirect: Redirect,
}

pub(super) fn shared(e: FredError) -> SharedError {
    Arc::new(e)
}

pub(super) fn classify(e: FredError, slot: u16, node: &str, timeout: Duration) -> Classified {
    let details = e.details().to_owned();
    let mut words = details.split_whitespace();
    let first = words.next().unwrap_or("");
    let unavailable = |e: FredError| CacheError::Unavailable {
        slot,
        node: node.to_owned(),
        source: shared(e),
    };
    let plain = |error, retry, not_executed| Classified {
        error,
        retry,
        not_executed,
        redirect: Redirect::None,
    };
    match first {
        "MOVED" | "ASK" => {
            let s = words.next().and_then(|s| s.parse().ok()).unwrap_or(slot);
            let target = words.next().unwrap_or("").to_owned();
            let redirect = if target.is_empty() {
                Redirect::None
            } else if first == "MOVED" {
                Redirect::Moved(s, target)
            } else {
                Redirect::Ask(target)
            };
            return Classified {
                error: unavailable(e),
                retry: true,
                not_executed: true,
                redirect,
            };
        }
        "TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "MASTERDOWN" | "READONLY" => {
            return plain(unavailable(e), true, true);
        }
        "OOM" => {
            return plain(
                CacheError::OutOfMemory {
                    needed: 0,
                    limit: 0,
                },
                false,
                true,
            );
        }
        _ => {}
    }
    if let Some(reason) = super::tls::auth_failure(&e) {
        let error = CacheError::Auth {
            node: node.to_owned(),
            reason: reason.to_owned(),
            source: shared(e),
        };
        return plain(error, false, true);
    }
    if let Some(reason) = super::tls::tls_failure(&e) {
        let error = CacheError::Tls {
            node: node.to_owned(),
            reason,
            source: shared(e),
        };
        return plain(error, false, true);
    }
    if details.contains("not an integer") {
        return plain(CacheError::NotAnInteger, false, true);
    }
    if details.contains("overflow") {
        return plain(CacheError::Overflow, false, true);
    }
    match e.kind() {
        ErrorKind::Timeout => plain(CacheError::Timeout(timeout), true, false),
        ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Cluster => {
            plain(unavailable(e), true, false)
        }
        // The reply channel of a command queued on a node client that was
        // closed (the node left the topology while it was down, e.g. a
        // primary replaced by its replica): it may or may not have been
        // written before the connection died.
        ErrorKind::Unknown if is_lost_reply(&details) => plain(unavailable(e), true, false),
        // fred found no connection to write the command to (its node's
        // connection was just lost): nothing was sent.
        ErrorKind::Unknown if is_unrouted(&details) => plain(unavailable(e), true, true),
        // No route, no connection or a full command queue: nothing was sent.
        ErrorKind::Routing | ErrorKind::Backpressure => plain(unavailable(e), true, true),
        _ => plain(
            CacheError::Backend {
                backend: "redis",
                source: shared(e),
            },
            false,
            true,
        ),
    }
}

/// fred reports a command whose reply channel was dropped (its client was
/// shut down with the command queued or in flight) as an unknown error
/// with the channel's message.
pub(super) fn is_lost_reply(details: &str) -> bool {
    matches!(
        details,
        "channel closed" | "Canceled." | "Connection closed unexpectedly."
    )
}

/// fred's report of a command it had no connection to write to.
pub(super) fn is_unrouted(details: &str) -> bool {
    details == "Failed to route command."
}

/// Whether a command that failed with `c` may be sent again: the error is
/// transient, the command is idempotent or provably did not run, and the
/// redirections so far (`redirects`, this one included) are within `max`.
pub(super) fn may_resend(c: &Classified, mode: Retry, redirects: u32, max: u32) -> bool {
    c.retry && (mode == Retry::Always || c.not_executed) && redirects <= max
}

/// The node named in errors about a slot no known node serves.
pub(super) const NO_OWNER: &str = "(no owner)";

pub(super) fn routing_error(what: &str) -> FredError {
    FredError::new(ErrorKind::Routing, what.to_owned())
}

impl RedisCache {
    pub(super) fn retry_delay(&self, attempt: u32) -> Duration {
        self.inner
            .config
            .retry
            .delay(attempt, SplitMix64::from_entropy().next_f64())
    }

    pub(super) fn may_retry(&self, attempt: u32, started: Instant) -> bool {
        let cfg = &self.inner.config;
        cfg.retry.max_retries().is_none_or(|m| attempt < m.get())
            && started.elapsed() + self.retry_delay(attempt) < cfg.retry_budget
    }
}
