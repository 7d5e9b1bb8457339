//! Fan-out against real shard databases (being written).
