//! Black-box tests of the router against real processes: a router on a local metastore file
//! in front of real shard nodes, all on loopback. Covers the public API end to end, bad input
//! (JSON 4xx, nothing changed), exact search against brute force across shards, node failure
//! (503 naming the shard, or flagged partial results), and sharding strategies.

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use vdb_tests::fleet::Fleet;
use vdb_tests::{assert_error, Http};

const DIM: usize = 8;

fn vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect()).collect()
}

fn upsert(http: &Http, coll: &str, ids: impl Iterator<Item = u64>, vecs: &[Vec<f32>]) {
    let points: Vec<Value> = ids
        .map(|i| json!({"id": i, "vector": vecs[i as usize], "payload": {"n": i, "group": format!("g{}", i % 5)}}))
        .collect();
    for chunk in points.chunks(500) {
        let r = http
            .put(&format!("/v1/collections/{coll}/points"), &json!({ "points": chunk }))
            .unwrap();
        assert_eq!(r.0, 200, "{r:?}");
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn ids_of(reply: &Value) -> Vec<u64> {
    reply["points"].as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect()
}

fn count(http: &Http, coll: &str) -> u64 {
    let r = http.post(&format!("/v1/collections/{coll}/points/count"), &json!({})).unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    r.1["count"].as_u64().unwrap()
}

#[test]
fn collections_points_and_search_across_four_shards() {
    let fleet = Fleet::start(3, &[], &[]).unwrap();
    let http = fleet.http();
    let r = http
        .put(
            "/v1/collections/docs",
            &json!({"dimension": DIM, "metric": "cosine", "shard_count": 4}),
        )
        .unwrap();
    assert_eq!(r.0, 201, "{r:?}");
    assert_eq!(r.1["shards"].as_array().unwrap().len(), 4);
    // Placement spreads the 4 shards over the 3 nodes: no node has more than 2.
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for s in r.1["shards"].as_array().unwrap() {
        *per_node.entry(s["nodes"][0].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(per_node.values().all(|&n| n <= 2));
    assert_eq!(http.get("/v1/collections").unwrap().1["collections"], json!(["docs"]));
    assert_error(
        &http.put("/v1/collections/docs", &json!({"dimension": DIM, "metric": "cosine"})).unwrap(),
        409,
        "already_exists",
    );

    let n = 2000;
    let vecs = vectors(n, 1);
    upsert(&http, "docs", 0..n as u64, &vecs);
    assert_eq!(count(&http, "docs"), n as u64);
    let info = http.get("/v1/collections/docs").unwrap().1;
    assert_eq!(info["points"], n as u64);
    assert_eq!(info["status"], "green");
    let per_shard: Vec<u64> =
        info["shards"].as_array().unwrap().iter().map(|s| s["points"].as_u64().unwrap()).collect();
    assert_eq!(per_shard.iter().sum::<u64>(), n as u64);
    assert!(per_shard.iter().all(|&p| p > 350), "hash spreads points: {per_shard:?}");

    // get: only the asked ids, in the order asked, missing ones left out.
    let r = http
        .post(
            "/v1/collections/docs/points/get",
            &json!({"ids": [7, 99999, 3, 1500], "with_vector": true}),
        )
        .unwrap();
    assert_eq!(ids_of(&r.1), vec![7, 3, 1500]);
    assert_eq!(r.1["points"][0]["payload"]["n"], 7);
    assert_eq!(r.1["points"][0]["vector"].as_array().unwrap().len(), DIM);

    // exact search equals brute force over the whole collection, on every query.
    let queries = vectors(25, 2);
    for q in &queries {
        let mut truth: Vec<(f32, u64)> =
            vecs.iter().enumerate().map(|(i, v)| (cosine(q, v), i as u64)).collect();
        truth.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let r = http
            .post("/v1/collections/docs/search", &json!({"vector": q, "k": 10, "exact": true}))
            .unwrap();
        assert_eq!(r.0, 200, "{r:?}");
        let got = ids_of(&r.1);
        let want: Vec<u64> = truth.iter().take(10).map(|t| t.1).collect();
        assert_eq!(got, want);
        // offset pages through the same order
        let r = http
            .post(
                "/v1/collections/docs/search",
                &json!({"vector": q, "k": 5, "offset": 5, "exact": true, "with_payload": true}),
            )
            .unwrap();
        assert_eq!(ids_of(&r.1), want[5..10].to_vec());
        assert!(r.1["points"][0]["payload"]["n"].is_u64(), "two-phase payload fetch: {r:?}");
        assert_eq!(r.1["partial"], false);
    }
    // approximate search finds most of the exact top-10
    let mut hits = 0;
    for q in &queries {
        let exact = ids_of(
            &http
                .post("/v1/collections/docs/search", &json!({"vector": q, "k": 10, "exact": true}))
                .unwrap()
                .1,
        );
        let approx: BTreeSet<u64> = ids_of(
            &http.post("/v1/collections/docs/search", &json!({"vector": q, "k": 10})).unwrap().1,
        )
        .into_iter()
        .collect();
        hits += exact.iter().filter(|i| approx.contains(i)).count();
    }
    assert!(hits as f64 / (queries.len() * 10) as f64 >= 0.9, "recall {hits}");
    // batch search: one result per query, same as single searches
    let r = http.post("/v1/collections/docs/search/batch", &json!({"searches": [
        {"vector": queries[0], "k": 3, "exact": true}, {"vector": queries[1], "k": 4, "exact": true}]})).unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(r.1["results"][1]["points"].as_array().unwrap().len(), 4);
    // filtered search returns only matches
    let r = http
        .post(
            "/v1/collections/docs/search",
            &json!({"vector": queries[0], "k": 20,
        "filter": {"must": [{"key": "group", "match": {"value": "g3"}}]}, "with_payload": true}),
        )
        .unwrap();
    assert_eq!(r.1["points"].as_array().unwrap().len(), 20);
    assert!(r.1["points"].as_array().unwrap().iter().all(|p| p["payload"]["group"] == "g3"));

    // per-shard statistics: counters, and rates since this router's previous look
    http.get("/v1/collections/docs").unwrap();
    for q in &queries[..10] {
        http.post("/v1/collections/docs/search", &json!({"vector": q, "k": 3})).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let stats = http.get("/v1/collections/docs").unwrap().1;
    for s in stats["shards"].as_array().unwrap() {
        assert!(s["searches_total"].as_u64().unwrap() >= 10, "{s}");
        assert!(s["writes_total"].as_u64().unwrap() >= 1, "{s}");
        assert!(s["search_rate"].as_f64().unwrap() > 0.0, "{s}");
        assert!(s["write_rate"].as_f64().is_some(), "{s}");
    }

    // scroll walks every point once, in id order
    let mut seen = Vec::new();
    let mut offset = Value::Null;
    loop {
        let mut body = json!({"limit": 333, "with_payload": false});
        if !offset.is_null() {
            body["offset"] = offset.clone();
        }
        let r = http.post("/v1/collections/docs/points/scroll", &body).unwrap();
        assert_eq!(r.0, 200, "{r:?}");
        seen.extend(ids_of(&r.1));
        offset = r.1["next_offset"].clone();
        if offset.is_null() {
            break;
        }
    }
    assert_eq!(seen, (0..n as u64).collect::<Vec<_>>());

    // payload updates by id and by filter, delete by id and by filter
    let r = http
        .post(
            "/v1/collections/docs/points/payload",
            &json!({"payload": {"tag": "x"}, "ids": [1, 2, 3]}),
        )
        .unwrap();
    assert_eq!(r.1["affected"], 3);
    let r = http
        .post(
            "/v1/collections/docs/points/count",
            &json!({"filter": {"must": [{"key": "tag", "match": {"value": "x"}}]}}),
        )
        .unwrap();
    assert_eq!(r.1["count"], 3);
    let r = http.post("/v1/collections/docs/points/payload/delete", &json!({"keys": ["tag"], "filter": {"must": [{"key": "tag", "match": {"value": "x"}}]}})).unwrap();
    assert_eq!(r.1["affected"], 3, "{r:?}");
    let r = http.post("/v1/collections/docs/points/delete", &json!({"ids": [0, 1, 2]})).unwrap();
    assert_eq!(r.1["affected"], 3);
    let r = http
        .post(
            "/v1/collections/docs/points/delete",
            &json!({"filter": {"must": [{"key": "group", "match": {"value": "g4"}}]}}),
        )
        .unwrap();
    assert_eq!(r.1["affected"], 400, "{r:?}");
    assert_eq!(count(&http, "docs"), n as u64 - 3 - 400);

    // payload index on every shard; update ef; delete the collection
    let r = http
        .put("/v1/collections/docs/index", &json!({"field": "group", "kind": "keyword"}))
        .unwrap();
    assert_eq!(r.0, 204, "{r:?}");
    let r = http
        .send_raw(
            "PATCH",
            "/v1/collections/docs",
            serde_json::to_vec(&json!({"ef_search": 128})).unwrap(),
        )
        .unwrap();
    assert_eq!(r.1["config"]["hnsw"]["ef_search"], 128, "{r:?}");
    let cluster = http.get("/v1/cluster").unwrap().1;
    assert_eq!(cluster["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(cluster["controller"], "r1");
    assert_eq!(http.delete("/v1/collections/docs").unwrap().0, 204);
    assert_error(&http.get("/v1/collections/docs").unwrap(), 404, "not_found");
    for s in &fleet.shards {
        assert_eq!(
            s.http().get("/v1/shards").unwrap().1["shards"],
            json!([]),
            "local shards dropped"
        );
    }
}

#[test]
fn bad_input_gets_a_json_4xx_and_changes_nothing() {
    let fleet = Fleet::start(2, &[], &["--max-body-bytes", "100000"]).unwrap();
    let http = fleet.http();
    let bad_configs = [
        (json!({"dimension": 4, "metric": "cosine", "shard_count": 0}), "invalid_argument"),
        (json!({"dimension": 0, "metric": "cosine"}), "invalid_argument"),
        (json!({"dimension": 4, "metric": "hamming"}), "malformed_json"),
        (
            json!({"dimension": 4, "metric": "l2", "shard_count": 2, "sharding": {"strategy": "range",
            "ranges": [{"shard": 0, "from": 0, "to": 100}, {"shard": 1, "from": 50}]}}),
            "invalid_argument",
        ),
        (
            json!({"dimension": 4, "metric": "l2", "sharding": {"strategy": "consistent", "virtual_nodes": 0}}),
            "invalid_argument",
        ),
        (json!({"dimension": 4, "metric": "l2", "surprise": 1}), "malformed_json"),
    ];
    for (body, code) in bad_configs {
        assert_error(&http.put("/v1/collections/c", &body).unwrap(), 400, code);
    }
    assert_error(
        &http.put("/v1/collections/bad.name", &json!({"dimension": 4, "metric": "l2"})).unwrap(),
        400,
        "invalid_argument",
    );
    assert_eq!(http.get("/v1/collections").unwrap().1["collections"], json!([]));

    let r = http.put("/v1/collections/c", &json!({"dimension": 4, "metric": "l2", "shard_count": 2,
        "sharding": {"strategy": "range", "ranges": [{"shard": 0, "from": 0, "to": 100}, {"shard": 1, "from": 100, "to": 200}]}})).unwrap();
    assert_eq!(r.0, 201, "{r:?}");
    let ok = json!({"id": 1, "vector": [0.0, 1.0, 2.0, 3.0]});
    assert_eq!(http.put("/v1/collections/c/points", &json!({"points": [ok]})).unwrap().0, 200);
    // each bad point spoils the whole batch, whichever shard it belongs to
    let bad_batches = [
        (json!({"id": 150, "vector": [1.0, 2.0]}), 400, "dimension_mismatch"),
        (json!({"id": 150, "vector": [1.0, 2.0, 3.0, "x"]}), 400, "malformed_json"),
        (
            json!({"id": 150, "vector": [1.0, 2.0, 3.0, 4.0], "payload": [1]}),
            400,
            "invalid_payload",
        ),
        (
            json!({"id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "vector": [1.0, 2.0, 3.0, 4.0]}),
            400,
            "invalid_argument",
        ),
        (json!({"id": 500, "vector": [1.0, 2.0, 3.0, 4.0]}), 400, "invalid_argument"),
    ];
    for (bad, status, code) in bad_batches {
        let body = json!({"points": [{"id": 2, "vector": [1.0, 1.0, 1.0, 1.0]}, {"id": 120, "vector": [1.0, 1.0, 1.0, 1.0]}, bad]});
        assert_error(&http.put("/v1/collections/c/points", &body).unwrap(), status, code);
    }
    assert_eq!(count(&http, "c"), 1, "bad batches changed nothing");
    let huge: Vec<Value> =
        (0..3000).map(|i| json!({"id": i % 200, "vector": [1.0, 2.0, 3.0, 4.0]})).collect();
    assert_error(
        &http.put("/v1/collections/c/points", &json!({"points": huge})).unwrap(),
        413,
        "payload_too_large",
    );
    assert_error(
        &http.post("/v1/collections/c/search", &json!({"vector": [1.0, 2.0], "k": 3})).unwrap(),
        400,
        "dimension_mismatch",
    );
    assert_error(
        &http
            .post("/v1/collections/c/search", &json!({"vector": [1.0, 2.0, 3.0, 4.0], "k": 0}))
            .unwrap(),
        400,
        "invalid_argument",
    );
    assert_error(
        &http
            .post(
                "/v1/collections/c/search",
                &json!({"vector": [1.0, 2.0, 3.0, 4.0],
        "filter": {"must": [{"key": "a", "range": {}}]}}),
            )
            .unwrap(),
        400,
        "invalid_filter",
    );
    assert_error(
        &http.post("/v1/collections/c/points/count", &json!({"ownership": {}})).unwrap(),
        400,
        "malformed_json",
    );
    assert_error(
        &http.post("/v1/collections/nope/search", &json!({"vector": [1.0], "k": 1})).unwrap(),
        404,
        "not_found",
    );
    assert_error(
        &http.send_raw("PUT", "/v1/collections/c/points", b"{not json".to_vec()).unwrap(),
        400,
        "malformed_json",
    );
    assert_error(
        &http.post("/v1/collections/c/points/delete", &json!({})).unwrap(),
        400,
        "invalid_argument",
    );
    assert_error(&http.get("/v1/nothing").unwrap(), 404, "not_found");
    assert_eq!(count(&http, "c"), 1);
}

#[test]
fn a_dead_node_gives_503_naming_the_shard_or_flagged_partial_results() {
    let mut fleet = Fleet::start(2, &[], &[]).unwrap();
    let http = fleet.http();
    let r = http
        .put("/v1/collections/c", &json!({"dimension": DIM, "metric": "l2", "shard_count": 2}))
        .unwrap();
    assert_eq!(r.0, 201, "{r:?}");
    let vecs = vectors(400, 3);
    upsert(&http, "c", 0..400, &vecs);
    let dead_shard =
        r.1["shards"].as_array().unwrap().iter().find(|s| s["nodes"][0] == "n1").unwrap()["shard"]
            .as_u64()
            .unwrap();
    fleet.shards[1].kill9();
    let q = json!({"vector": vecs[0], "k": 50});
    let r = http.post("/v1/collections/c/search", &q).unwrap();
    assert_error(&r, 503, "unavailable");
    let message = r.1["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("shard {dead_shard}")), "{message}");
    let mut partial = q.clone();
    partial["allow_partial"] = json!(true);
    let r = http.post("/v1/collections/c/search", &partial).unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(r.1["partial"], true);
    assert_eq!(r.1["missing_shards"], json!([dead_shard]));
    let got = ids_of(&r.1);
    let unique: BTreeSet<u64> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "no duplicates");
    assert!(!got.is_empty());
    // The controller marks the node down; the collection turns red.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let nodes = http.get("/v1/cluster").unwrap().1["nodes"].clone();
        if nodes.as_array().unwrap().iter().any(|n| n["id"] == "n1" && n["healthy"] == false) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "node never marked down: {nodes}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(http.get("/v1/collections/c").unwrap().1["status"], "red");
    println!(
        "dead node: 503 named shard {dead_shard}; partial search returned {} hits, missing {:?}",
        got.len(),
        [dead_shard]
    );
}

#[test]
fn a_hung_node_never_holds_a_request_past_its_deadline() {
    // Nemesis: SIGSTOP of one shard node (alive, silent). Asserts: searches answer within the
    // read deadline (503 naming the shard, or partial results when asked), writes to the hung
    // shard fail within the write deadline, and everything works again after SIGCONT.
    let fleet =
        Fleet::start(2, &[], &["--read-timeout-ms", "500", "--write-timeout-ms", "800"]).unwrap();
    let http = fleet.http();
    let r = http
        .put("/v1/collections/c", &json!({"dimension": DIM, "metric": "l2", "shard_count": 2}))
        .unwrap();
    assert_eq!(r.0, 201, "{r:?}");
    let nodes: BTreeSet<String> = r.1["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["nodes"][0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(nodes.len(), 2, "one shard per node: {r:?}");
    let vecs = vectors(200, 4);
    upsert(&http, "c", 0..200, &vecs);
    fleet.shards[1].pause();
    let started = std::time::Instant::now();
    let r = http.post("/v1/collections/c/search", &json!({"vector": vecs[0], "k": 5})).unwrap();
    let strict = started.elapsed();
    assert_error(&r, 503, "unavailable");
    let started = std::time::Instant::now();
    let r = http
        .post(
            "/v1/collections/c/search",
            &json!({"vector": vecs[0], "k": 5, "allow_partial": true}),
        )
        .unwrap();
    let partial = started.elapsed();
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(r.1["partial"], true);
    let started = std::time::Instant::now();
    let r = http.put("/v1/collections/c/points", &json!({"points": (0..20).map(|i| json!({"id": i, "vector": vecs[i]})).collect::<Vec<_>>()})).unwrap();
    let write = started.elapsed();
    assert_error(&r, 503, "unavailable");
    // Deadline plus one immediate retry and scheduling slack.
    assert!(strict < std::time::Duration::from_millis(2500), "search took {strict:?}");
    assert!(partial < std::time::Duration::from_millis(2500), "partial search took {partial:?}");
    assert!(write < std::time::Duration::from_secs(5), "write took {write:?}");
    fleet.shards[1].resume();
    // Back in service once the controller's next health check passes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = http.post("/v1/collections/c/search", &json!({"vector": vecs[0], "k": 5})).unwrap();
        if r.0 == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never recovered: {r:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    println!("hung node: strict search failed after {strict:?}, partial answered after {partial:?}, write failed after {write:?}");
}
