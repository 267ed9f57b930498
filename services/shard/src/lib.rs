//! Shard node (being written).
