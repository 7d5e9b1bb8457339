//! Replica-aware read routing and PostgreSQL-compatible sharding.
//!
//! (Crate-level docs and the opening example are assembled when both routers land.)
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod error;
pub mod replica;
pub mod shard;

pub use error::{Error, Result};
pub use replica::{Consistency, NodeSpec, ReplicaConfig, ReplicaRouter, WalToken};
pub use shard::{FanOut, NodeSet, PgHash, ShardFunction, ShardId, ShardKey, ShardRouter};
