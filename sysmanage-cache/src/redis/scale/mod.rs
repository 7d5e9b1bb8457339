//! Online scaling of a Redis Cluster: add and remove primaries and move
//! slots while the cluster serves traffic, executed by the library.
//!
//! [`Scaler::plan`] is the dry run: from the cluster's `CLUSTER NODES`, a
//! [`ScaleTarget`] (nodes to add, nodes to remove, a rebalance, explicit
//! moves) and per-slot measurements (`CLUSTER COUNTKEYSINSLOT`, `INFO`,
//! optionally `MEMORY USAGE` samples), it lists the joins, the replica
//! attachments, the slot moves with the keys and bytes each carries, and
//! the nodes to forget. [`Scaler::execute`] carries the same plan out.
//!
//! ```no_run
//! use sysmanage_cache::RedisConfig;
//! use sysmanage_cache::redis::scale::{Balance, NewPrimary, ScaleConfig, ScaleEvent, ScaleTarget, Scaler};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let scaler = Scaler::new(RedisConfig::new(["127.0.0.1:7000"]), ScaleConfig::default())?;
//! let target = ScaleTarget::scale_out([NewPrimary::new("127.0.0.1:7006", ["127.0.0.1:7008"])])
//!     .balance_by(Balance::Memory);
//! let plan = scaler.plan(&target).await?;
//! println!("{}", plan.summary());
//! let mut events = scaler.subscribe();
//! tokio::spawn(async move {
//!     while let Ok(ev) = events.recv().await {
//!         if let ScaleEvent::Progress(p) = ev {
//!             println!("{}/{} slots, {:.0} keys/s, eta {:?}", p.slots_done, p.slots_total, p.keys_per_sec, p.eta);
//!         }
//!     }
//! });
//! let report = scaler.execute(&target).await?; // rerun after a crash: it resumes
//! println!("moved {} slots, {} keys", report.slots_moved, report.keys_moved);
//! # Ok(())
//! # }
//! # fn main() { let _ = run(); }
//! ```
//!
//! # Phases
//!
//! A run goes through the [`Phase`]s in order, each derived from what the
//! cluster shows at that moment (never from a journal of an earlier run):
//!
//! 1. **Discover**: `CLUSTER NODES` of every member, merged into a
//!    [`ClusterView`] (owners by highest config epoch, open slots from each
//!    node's own line, whether all nodes agree).
//! 2. **Join**: each node to add is checked (answers, cluster-enabled, no
//!    keys, no slots, knows no other cluster), sent `CLUSTER MEET <a
//!    member>`, and the run waits until every member knows it.
//! 3. **AttachReplicas**: `CLUSTER REPLICATE <primary id>` on each new
//!    replica; the run waits until the members see it and its replication
//!    link is up, so that moved keys are replicated as they arrive.
//! 4. **CloseOpenSlots**: slots an interrupted run left `MIGRATING` /
//!    `IMPORTING` are closed by the rules of the resume table below.
//! 5. **Plan**: keys and bytes per slot are measured and the moves
//!    computed ([`compute_plan`], pure).
//! 6. **Migrate**: groups of slots sharing source and target (up to
//!    [`ScaleConfig::slots_per_group`]) go through the documented
//!    protocol: every key of the slots and its `MEMORY USAGE` are read
//!    first (a key above [`ScaleConfig::max_key_bytes`] stops the run
//!    before the slot is opened), `SETSLOT IMPORTING` on the target,
//!    `SETSLOT MIGRATING` on the source, `MIGRATE … KEYS` batches
//!    (by key count and bytes) pipelined on the source until
//!    `GETKEYSINSLOT` comes back empty, then `SETSLOT NODE` on the target,
//!    on the source, and on every other primary. One `SETSLOT` pipeline per
//!    node per group means one `nodes.conf` save per group, not per slot.
//!    Groups from different sources run concurrently
//!    ([`ScaleConfig::parallel_slots`]).
//! 7. **Converge**: the run waits until every node agrees on every owner.
//! 8. **Forget**: each removed node (replicas first: a replica refuses to
//!    forget its primary) is sent to `CLUSTER FORGET` on every other member
//!    at once, within the 60 s ban that keeps gossip from re-adding it,
//!    then `CLUSTER RESET HARD` ([`ScaleConfig::reset_removed`]).
//!
//! # Resume
//!
//! Rerunning [`Scaler::execute`] with the same target after a crash, a
//! killed task, an error or a cancel finishes the job: joined nodes are
//! not met again, attached replicas not re-attached, the plan is computed
//! from the current owners (a scale-out that moved 1,000 of 4,096 slots
//! moves the other 3,096), removed nodes that are gone count as done. A
//! half-migrated slot is closed forward whenever keys may already sit on
//! its target, so no key is ever dropped:
//!
//! | markers left | owner | closing |
//! |---|---|---|
//! | source `MIGRATING` → target and target `IMPORTING` ← source | source | move the rest of the keys, assign to the target |
//! | the same | target | `SETSLOT NODE` everywhere (the protocol's tail) |
//! | only source `MIGRATING` | source | re-open the target side and finish; to the target's primary if it failed over; `STABLE` if the target left the cluster |
//! | only target `IMPORTING`, target holds none of the slot's keys | source | `SETSLOT STABLE` on the target |
//! | the same, target holds keys | source | re-open the source side and finish |
//!
//! Any other combination is a [`ScaleError::ClusterState`] naming the slot.
//!
//! # Cancel and the before-slot hook
//!
//! [`Canceller::cancel`] stops a run at the next group boundary: groups in
//! flight finish, no new slot is opened, the run waits for agreement and
//! returns [`Outcome::Cancelled`]. A [`BeforeSlot`] hook
//! ([`Scaler::with_before_slot`]) runs before each slot is opened or
//! closed; an error refuses the slot ([`ScaleError::Refused`]) with the
//! cluster consistent. That is where a leader lease or fencing token is
//! checked.
//!
//! # Errors never lose data
//!
//! `MIGRATE` deletes a key on the source only once the target acknowledged
//! it. A failed batch is retried key by key, which names the key:
//! `BUSYKEY` with identical contents on both sides (a `MIGRATE` that timed
//! out after the target stored the key) is resolved with `REPLACE`; with
//! different contents it is [`ScaleError::BusyKey`] (unless
//! [`ScaleConfig::replace_busy_keys`]); `IOERR` or no reply with the
//! target answering `PING` twice is [`ScaleError::MigrateTimeout`]; a
//! target or source that does not answer is [`ScaleError::NodeDown`]. Each
//! names the slot (and the key), and the slot stays open for the next run.
//!
//! # Tracing
//!
//! | target | level | event |
//! |---|---|---|
//! | `sysmanage_cache::redis::scale` | info | phases, nodes met / attached / forgotten / reset, open slots closed, the plan, the end of a run |
//! | `sysmanage_cache::redis::scale` | debug | each slot started and finished, progress, a failed run's error |
//! | `sysmanage_cache::redis::scale::migrate` | debug | a failed `MIGRATE` batch or pipeline, a `BUSYKEY` resolved by `REPLACE` |

mod admin;
mod config;
mod error;
mod executor;
mod hook;
mod measure;
mod membership;
mod migrate;
mod plan;
mod progress;
mod resume;
mod target;
mod view;
mod weights;

pub use config::{Measure, ScaleConfig};
pub use error::{ScaleError, ScaleResult};
pub use executor::{Outcome, Report, Scaler};
pub use hook::{BeforeSlot, BoxError, Canceller, SlotStep};
pub use plan::{NodeLoad, Plan, ReplicaAttach, SlotMove, compute_plan};
pub use progress::{Closed, Phase, Progress, ScaleEvent};
pub use target::{Balance, NewPrimary, ScaleTarget};
pub use view::{ClusterView, NodeRole, OpenSide, OpenSlot, ViewNode};
pub use weights::SlotWeights;
