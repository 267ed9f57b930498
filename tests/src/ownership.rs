//! The JSON of shard ownerships as routers send them to shard nodes during a reshard: which
//! layout a shard's points were placed by (`from`), which one they move to (`to`), and which
//! shards of `to` already took over (`cut_over`).

use serde_json::{json, Value};

/// A hash layout over `shards`.
pub fn hash(shards: &[u32]) -> Value {
    json!({"sharding": {"strategy": "hash"}, "shards": shards})
}

/// The ownership of shard `shard` while its points move from layout `from` to `to`.
pub fn ownership(from: Value, to: Value, cut_over: &[u32], shard: u32) -> Value {
    json!({"from": from, "to": to, "cut_over": cut_over, "shard": shard})
}
