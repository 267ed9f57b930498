//! Moving copies of replicated shards between nodes, online, through the router: on request
//! (`POST /v1/collections/{name}/shards/{shard}/move`), by draining a node, and by rebalancing
//! onto nodes that joined.
//!
//! Every write carries a unique value and its outcome (ok, failed, unknown) is recorded; the
//! checker (`vdb_tests::history`) verifies the history against the final content. Each test
//! prints operations checked, moves made (the nemesis) and anomalies.
//!
//! - `replica_and_primary_copies_move_under_sync_writes`: `sync`, RF=2, 4 nodes. A replica's
//!   copy moves, then the primary's (a planned handover), then the node holding the new
//!   primary is drained. Asserts: each move ends with the target holding an in-sync copy (or
//!   the primary role) and the source none; the epoch grows by one per primary handed over;
//!   no write fails (the routers retry through a handover), nothing acknowledged is lost, no
//!   anomaly, quorum reads hold every acknowledged write; the copies left hold exactly the
//!   collection's content; bad move requests are refused with the right status and change
//!   nothing.
//! - `async_handover_loses_nothing_and_rebalance_fills_new_nodes`: `async`, RF=2, 2 shards
//!   on 2 nodes; 2 more nodes join and `rebalance` spreads the copies onto them, then each
//!   shard's primary moves to a node that held none of it. Asserts: every node ends with one
//!   copy after the rebalance; each primary move bumps the epoch once and leaves the target
//!   leading; nothing acknowledged is lost even in `async` mode (a handover waits until the
//!   target confirmed the old primary's whole log); no write fails; copies match.

use serde_json::{json, Value};
use std::thread;
use std::time::{Duration, Instant};
use vdb_tests::copies::{assert_copies_match, create_collection, local_shards};
use vdb_tests::fleet::Fleet;
use vdb_tests::history::{check, content, Load};
use vdb_tests::{assert_error, Http, ShardProcess};

const ROUTER_ARGS: &[&str] = &["--health-interval-ms", "200"];

fn collection(http: &Http) -> Value {
    let r = http.get("/v1/collections/c").unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    r.1
}

fn shard(http: &Http, id: u64) -> Value {
    let info = collection(http);
    info["shards"].as_array().unwrap().iter().find(|s| s["shard"] == id).unwrap().clone()
}

fn nodes(s: &Value) -> Vec<String> {
    s["nodes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect()
}

fn index(node: &str) -> usize {
    node.trim_start_matches('n').parse().unwrap()
}

/// Waits until no move is recorded and every shard has `copies` nodes, all replicas in sync;
/// how long it took.
fn await_settled(http: &Http, copies: usize) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    loop {
        let info = collection(http);
        let settled = info.get("moving").is_none()
            && info["shards"].as_array().unwrap().iter().all(|s| {
                nodes(s).len() == copies && s["in_sync"].as_array().unwrap().len() == copies - 1
            });
        if settled {
            return started.elapsed();
        }
        assert!(Instant::now() < deadline, "moves never settled: {info}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Requests a move of shard `id`'s copy on `from` to `to` and waits until it is done; how
/// long it took.
fn move_copy(http: &Http, id: u64, from: &str, to: &str) -> Duration {
    let started = Instant::now();
    let r = http
        .post(&format!("/v1/collections/c/shards/{id}/move"), &json!({"from": from, "to": to}))
        .unwrap();
    assert_eq!(r.0, 202, "{r:?}");
    assert_eq!(r.1, json!({"collection": "c", "shard": id, "from": from, "to": to}));
    await_settled(http, 2);
    let s = shard(http, id);
    let held = nodes(&s);
    assert!(held.contains(&to.to_string()) && !held.contains(&from.to_string()), "{s}");
    started.elapsed()
}

#[test]
fn replica_and_primary_copies_move_under_sync_writes() {
    let fleet = Fleet::start(4, &[], ROUTER_ARGS).unwrap();
    let http = fleet.http();
    create_collection(&http, 2, 1, json!({"mode": "sync"}));
    await_settled(&http, 2);
    let load = Load::start(&http, "c");
    thread::sleep(Duration::from_millis(500));

    // Bad requests change nothing.
    let s = shard(&http, 0);
    let (held, epoch) = (nodes(&s), s["epoch"].as_u64().unwrap());
    let free: Vec<String> = (0..4).map(|i| format!("n{i}")).filter(|n| !held.contains(n)).collect();
    let mv = |id: u64, body: Value| {
        http.post(&format!("/v1/collections/c/shards/{id}/move"), &body).unwrap()
    };
    let r = mv(0, json!({"from": held[0], "to": held[1]}));
    assert_error(&r, 400, "invalid_argument");
    let r = mv(0, json!({"from": free[0], "to": free[1]}));
    assert_error(&r, 400, "invalid_argument");
    let r = mv(0, json!({"from": held[0], "to": "n9"}));
    assert_error(&r, 400, "invalid_argument");
    let r = mv(7, json!({"from": held[0], "to": free[0]}));
    assert_error(&r, 404, "not_found");
    let r = http
        .post("/v1/collections/nope/shards/0/move", &json!({"from": held[0], "to": free[0]}))
        .unwrap();
    assert_error(&r, 404, "not_found");
    let r = mv(0, json!({"from": held[0], "to": free[0], "extra": 1}));
    assert_eq!(r.0, 400, "{r:?}");
    assert_eq!(nodes(&shard(&http, 0)), held, "a refused move changed the placement");

    // A replica's copy moves.
    let replica_move = move_copy(&http, 0, &held[1], &free[0]);
    assert_eq!(nodes(&shard(&http, 0))[0], held[0], "moving a replica kept the primary");
    assert_eq!(shard(&http, 0)["epoch"], epoch, "moving a replica kept the epoch");

    // The primary's copy moves: a handover to the new copy, one epoch later.
    let primary = held[0].clone();
    let to = free[1].clone();
    let primary_move = move_copy(&http, 0, &primary, &to);
    let s = shard(&http, 0);
    assert_eq!(nodes(&s)[0], to, "the moved primary's target leads: {s}");
    assert_eq!(s["epoch"].as_u64().unwrap(), epoch + 1, "{s}");

    // Draining the node of the new primary moves its copy (a handover) onto a free node.
    let r = http.post(&format!("/v1/cluster/nodes/{to}/drain"), &json!({})).unwrap();
    assert_eq!(r.0, 202, "{r:?}");
    assert_eq!(r.1["moves"].as_array().unwrap().len(), 1, "{r:?}");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    while nodes(&shard(&http, 0)).contains(&to) || collection(&http).get("moving").is_some() {
        assert!(Instant::now() < deadline, "drain never finished: {}", collection(&http));
        thread::sleep(Duration::from_millis(20));
    }
    await_settled(&http, 2);
    let drain = started.elapsed();
    assert_eq!(shard(&http, 0)["epoch"].as_u64().unwrap(), epoch + 2);
    assert!(local_shards(&fleet.shards[index(&to)].http()).is_empty(), "drained node holds copies");

    let seen = load.stop();
    let content = content(&http, "c");
    let v = check(&seen, &content);
    let compared = assert_copies_match(&http, &fleet.shards, &content);
    println!(
        "sync RF=2: 3 moves (replica {replica_move:?}, primary {primary_move:?}, drain of the \
         primary's node {drain:?}), 2 handovers; {v}; {compared} copies compared point by point"
    );
    v.assert_nothing_lost();
    // A handover makes the routers retry writes until the new primary takes them: none fails.
    assert_eq!((v.failed, v.unknown), (0, 0), "writes failed while copies moved");
}

#[test]
fn async_handover_loses_nothing_and_rebalance_fills_new_nodes() {
    let mut fleet = Fleet::start(2, &[], ROUTER_ARGS).unwrap();
    let http = fleet.http();
    create_collection(&http, 2, 2, json!({"mode": "async"}));
    await_settled(&http, 2);
    let load = Load::start(&http, "c");
    thread::sleep(Duration::from_millis(500));

    for i in 2..4 {
        fleet.shards.push(ShardProcess::start(&[]).unwrap());
        let url = fleet.shards[i].url.clone();
        let r = http.put(&format!("/v1/cluster/nodes/n{i}"), &json!({ "url": url })).unwrap();
        assert_eq!(r.0, 200, "{r:?}");
    }
    let r = http.post("/v1/cluster/rebalance", &json!({})).unwrap();
    assert_eq!(r.0, 202, "{r:?}");
    let planned = r.1["moves"].as_array().unwrap().len();
    assert!(planned >= 2, "rebalance planned {planned} moves: {r:?}");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(90);
    let spread = |info: &Value| {
        let mut per_node = [0usize; 4];
        for s in info["shards"].as_array().unwrap() {
            for n in nodes(s) {
                per_node[index(&n)] += 1;
            }
        }
        per_node
    };
    loop {
        let info = collection(&http);
        if info.get("moving").is_none() && spread(&info).iter().all(|&c| c == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "rebalance never finished: {info}");
        thread::sleep(Duration::from_millis(50));
    }
    await_settled(&http, 2);
    let took = started.elapsed();

    // Then each shard's primary moves to a node that holds the other shard: a handover in
    // `async` mode, where the old primary's log may run ahead of its replicas.
    let mut handovers = Vec::new();
    for id in 0..2u64 {
        let s = shard(&http, id);
        let (held, epoch) = (nodes(&s), s["epoch"].as_u64().unwrap());
        let to = (0..4).map(|i| format!("n{i}")).find(|n| !held.contains(n)).unwrap();
        handovers.push(move_copy(&http, id, &held[0], &to));
        let s = shard(&http, id);
        assert_eq!((nodes(&s)[0].as_str(), s["epoch"].as_u64().unwrap()), (to.as_str(), epoch + 1));
    }

    let seen = load.stop();
    let content = content(&http, "c");
    let v = check(&seen, &content);
    let compared = assert_copies_match(&http, &fleet.shards, &content);
    println!(
        "async RF=2, 2 shards: 2 nodes joined, rebalance moved {planned} copies in {took:?}, \
         then 2 primaries moved (handovers, {handovers:?}); {v}; {compared} copies compared \
         point by point"
    );
    assert!(v.anomalies.is_empty(), "anomalies: {:?}", v.anomalies);
    assert!(v.lost.is_empty(), "acknowledged writes lost in a planned handover: {:?}", v.lost);
    assert_eq!((v.failed, v.unknown), (0, 0), "writes failed while copies moved");
}
