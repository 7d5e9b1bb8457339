//! Leader election with fencing tokens, and state that only the newest
//! leader may write.
//!
//! Several replicas of a service embed the same controller; one of them
//! must act. [`Elector`] campaigns for a named lease on a server every
//! replica reaches (PostgreSQL in `sysmanage-db`, Redis Cluster in
//! `sysmanage-cache`, [`InMemoryLease`] here), keeps it by renewing, and
//! steps down when it cannot. Every term carries a [`FencingToken`] larger
//! than every earlier term's; actions carry the token and a [`FenceGuard`]
//! in front of the actuator turns away tokens older than the newest it has
//! seen. A [`StateStore`] applies the same rule to the controller's saved
//! state.
//!
//! | item | what |
//! |---|---|
//! | [`LeaseBackend`] | the backend primitive: `try_acquire`, `renew`, `release` of one lease |
//! | [`Elector`] | the driver: [`campaign`](Elector::campaign), [`resign`](Elector::resign), [`watch`](Elector::watch), [`token`](Elector::token) |
//! | [`LeaseConfig`] | ttl, renew deadline, renew and retry intervals, call timeout; validated |
//! | [`decide`] | the pure decisions: term deadlines, renewal outcomes, call budgets |
//! | [`FencingToken`], [`FenceGuard`], [`admits`] | the token and the actuator's check |
//! | [`StateStore`], [`Fenced`] | state claimed and saved by token |
//! | [`InMemoryLease`], [`InMemoryStateStore`] | in-process backends |
//!
//! # Safety argument
//!
//! **What the token guarantees, with no assumption about clocks.** Each
//! backend grants tokens in increasing order (a counter on the server,
//! advanced atomically with the grant). An actuator that checks every call
//! with a [`FenceGuard`] (or the equivalent check where the action lands)
//! never applies an action of term *n* after it has applied one of a term
//! newer than *n*: a leader that was paused, partitioned or slow and wakes
//! up believing it still leads is turned away as soon as its successor has
//! acted. A [`StateStore`] turns away the saves of a term once a newer term
//! has claimed the state, so a stale leader cannot overwrite its
//! successor's windows. This holds whatever the clocks do; it needs only
//! that the check and the action are atomic at the actuator
//! ([`FenceGuard::enter`] holds the next term back while an action runs).
//!
//! **What the lease adds, under a clock assumption.** The lease keeps two
//! leaders from *deciding* at the same time, so that in the normal case
//! nothing needs fencing. Only the server's clock decides expiry; a
//! candidate never compares its clock with another machine's. The leader
//! counts its term from the moment it *sent* its last successful renewal
//! and stops acting `renew_deadline` after that ([`decide::term_deadline`]);
//! the server counts `ttl` from the moment it *handled* the renewal, which
//! is later. So the leader stops before the server can grant the lease to
//! anyone else as long as, over one term, the leader's monotonic clock runs
//! slow against the server's by less than the margin `ttl − renew_deadline`
//! (default 5 s of 15 s: a rate error of a third, where real clocks are off
//! by parts per million). [`Elector::token`] reads the clock at each call,
//! so even a leader whose driver was paused does not hand out a token past
//! its deadline. What remains is the gap between reading the token and the
//! action landing (a pause right there, a slow network): the token covers
//! it.
//!
//! **Bounds.** After the leader's process dies or stops, a follower leads
//! within [`LeaseConfig::takeover_bound`] (`ttl + retry_interval +
//! call_timeout`). A leader that steps down while it can still reach the
//! backend (resign, lost session, failed renewals) releases the lease, and
//! a follower leads within `retry_interval + call_timeout`.
//!
//! # Examples
//! See [`Elector`]; the backends' crates show the same calls on real servers.

pub mod backend;
pub mod config;
pub mod decide;
pub mod elector;
pub mod memory;
pub mod token;

pub use backend::{Fenced, LeaseBackend, StateStore};
pub use config::{LeaseConfig, MAX_TTL, MIN_TTL};
pub use decide::{LeaderNext, RenewResult, StepDown, after_grant, after_renew, call_budget};
pub use elector::{Elector, ElectorStats, Leadership};
pub use memory::{InMemoryLease, InMemoryStateStore};
pub use token::{FenceGuard, FencePermit, FencingToken, admits};

#[cfg(test)]
mod tests;
