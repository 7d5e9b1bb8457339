//! `TieredCache` with client tracking on the live Redis Cluster.
