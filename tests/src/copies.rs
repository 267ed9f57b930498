//! The copies of a replicated collection as its shard nodes hold them, for tests that compare
//! them with each other and with the collection (works with [`crate::history`]'s points).

use crate::history::{values, DIM};
use crate::{Http, ShardProcess};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

/// Creates collection `c` for the history's points: `replication_factor` copies of each of
/// `shard_count` shards, writes in `consistency` (`{"mode": "sync"}`, ...).
pub fn create_collection(
    http: &Http,
    replication_factor: u32,
    shard_count: u32,
    consistency: Value,
) {
    let r = http
        .put(
            "/v1/collections/c",
            &json!({"dimension": DIM, "metric": "l2", "replication_factor": replication_factor,
                    "shard_count": shard_count, "write_consistency": consistency}),
        )
        .unwrap();
    assert_eq!(r.0, 201, "{r:?}");
}

/// id → payload value of one node's copy of `local`, read straight from the shard node.
pub fn copy_content(node: &Http, local: &str) -> BTreeMap<u64, u64> {
    let r = node
        .post(
            &format!("/v1/shards/{local}/points/scroll"),
            &json!({"limit": 10_000, "with_payload": true}),
        )
        .unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    values(&r.1)
}

/// Local shard names on one node.
pub fn local_shards(node: &Http) -> Vec<String> {
    let r = node.get("/v1/shards").unwrap();
    r.1["shards"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().into()).collect()
}

/// Every copy the router names of collection `c` holds the same points as the others of its
/// shard (waiting up to 10 s for a copy to catch up), the shards together hold `content` with
/// every point on one shard only, and no node holds a copy the router does not name; how
/// many copies were compared. `shards[i]` is node `n{i}`.
pub fn assert_copies_match(
    http: &Http,
    shards: &[ShardProcess],
    content: &BTreeMap<u64, u64>,
) -> usize {
    let r = http.get("/v1/collections/c").unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    let index = |node: &str| -> usize { node.trim_start_matches('n').parse().unwrap() };
    let mut union = BTreeMap::new();
    let mut compared = 0;
    let mut named: Vec<Vec<String>> = vec![Vec::new(); shards.len()];
    for s in r.1["shards"].as_array().unwrap() {
        let mut first: Option<BTreeMap<u64, u64>> = None;
        for holder in s["nodes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()) {
            let node = shards[index(holder)].http();
            let mine = local_shards(&node);
            let local = mine
                .iter()
                .find(|l| l.ends_with(&format!(".s{}", s["shard"])))
                .unwrap_or_else(|| {
                    panic!("{holder} holds no copy of shard {}: {mine:?}", s["shard"])
                })
                .clone();
            let deadline = Instant::now() + Duration::from_secs(10);
            let copy = loop {
                let copy = copy_content(&node, &local);
                if first.as_ref().is_none_or(|f| *f == copy) || Instant::now() > deadline {
                    break copy;
                }
                thread::sleep(Duration::from_millis(50));
            };
            if let Some(f) = &first {
                assert_eq!(f, &copy, "{holder}'s copy of shard {} differs", s["shard"]);
            }
            first.get_or_insert(copy);
            named[index(holder)].push(local);
            compared += 1;
        }
        for (id, value) in first.unwrap() {
            assert!(union.insert(id, value).is_none(), "point {id} is on two shards");
        }
    }
    assert_eq!(&union, content, "the copies do not add up to the collection");
    for (i, node) in shards.iter().enumerate() {
        let mut held = local_shards(&node.http());
        held.sort();
        named[i].sort();
        assert_eq!(held, named[i], "n{i} holds copies the router does not name");
    }
    compared
}
