//! The JSON of shard ownerships as routers send them to shard nodes during a reshard: which
//! layout a shard's points were placed by (`from`), which one they move to (`to`), and which
//! shards of `to` already took over (`cut_over`); and what a read under one sees.

use crate::Http;
use serde_json::{json, Value};

/// A hash layout over `shards`.
pub fn hash(shards: &[u32]) -> Value {
    json!({"sharding": {"strategy": "hash"}, "shards": shards})
}

/// The ownership of shard `shard` while its points move from layout `from` to `to`.
pub fn ownership(from: Value, to: Value, cut_over: &[u32], shard: u32) -> Value {
    json!({"from": from, "to": to, "cut_over": cut_over, "shard": shard})
}

/// The ids of a list of points in a JSON answer.
pub fn ids_of(points: &Value) -> Vec<u64> {
    points.as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect()
}

/// Every id of local shard `name` that a read with ownership `own` (or without one) sees, by
/// scrolling in small pages.
pub fn scroll_ids(http: &Http, name: &str, own: Option<&Value>) -> Vec<u64> {
    let mut ids = Vec::new();
    let mut offset = Value::Null;
    loop {
        let mut req = json!({"limit": 7, "with_payload": false});
        if let Some(o) = own {
            req["ownership"] = o.clone();
        }
        if !offset.is_null() {
            req["offset"] = offset.clone();
        }
        let r = http.post(&format!("/v1/shards/{name}/points/scroll"), &req).unwrap();
        assert_eq!(r.0, 200, "{r:?}");
        ids.extend(ids_of(&r.1["points"]));
        offset = r.1["next_offset"].clone();
        if offset.is_null() {
            return ids;
        }
    }
}
