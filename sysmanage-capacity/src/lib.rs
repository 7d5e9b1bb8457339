//! placeholder
#![forbid(unsafe_code)]
pub mod hygiene;
pub mod metric;
pub mod model;
pub mod prometheus;
mod stats;
pub use metric::{Bounds, Direction, MetricKind, MetricSpec};
