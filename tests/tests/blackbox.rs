//! Black-box tests of the shard node's whole HTTP API against the release binary on a random
//! port: every endpoint, then every kind of bad input (each must get a JSON 4xx and change
//! nothing).

use serde_json::{json, Value};
use vdb_tests::{assert_error, Http, ShardProcess};

fn create(http: &Http, name: &str, body: Value) {
    let r = http.put(&format!("/v1/shards/{name}"), &body).unwrap();
    assert_eq!(r.0, 201, "{r:?}");
}

fn points(n: u64) -> Value {
    let pts: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": i, "vector": [1.0 + i as f32, (i % 3) as f32, 0.5, -(i as f32)],
                   "payload": {"n": i, "group": format!("g{}", i % 3), "meta": {"tags": [format!("t{}", i % 2), "all"]}}})
        })
        .collect();
    json!({ "points": pts })
}

#[test]
fn the_whole_api_works() {
    let node = ShardProcess::start(&[]).unwrap();
    let http = node.http();
    assert_eq!(http.get("/healthz").unwrap().0, 200);
    create(
        &http,
        "s1",
        json!({"collection": "c", "shard_id": 1, "dimension": 4, "metric": "l2",
                               "hnsw": {"m": 8, "ef_construction": 64, "ef_search": 32}}),
    );
    let r = http.put("/v1/shards/s1/points", &points(50)).unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(r.1["affected"], 50);
    let lsn1 = r.1["lsn"].as_u64().unwrap();

    // UUID ids live beside integer ids and sort after them.
    let uuid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
    let r = http
        .put("/v1/shards/s1/points", &json!({"points": [{"id": uuid, "vector": [0, 0, 1, 1]}]}))
        .unwrap();
    assert!(r.1["lsn"].as_u64().unwrap() > lsn1);

    // describe / list / status
    let info = http.get("/v1/shards/s1").unwrap().1;
    assert_eq!(info["points"], 51);
    assert_eq!(info["config"]["metric"], "l2");
    assert!(info["index"]["memory_bytes"].as_u64().unwrap() > 0);
    assert_eq!(http.get("/v1/shards").unwrap().1["shards"].as_array().unwrap().len(), 1);
    let status = http.get("/v1/status").unwrap().1;
    assert_eq!(status["shards"][0]["role"], "primary");
    assert_eq!(status["shards"][0]["last_lsn"], info["last_lsn"]);

    // get with and without vector/payload; missing ids are left out
    let r = http
        .post("/v1/shards/s1/points/get", &json!({"ids": [3, 999, uuid], "with_vector": true}))
        .unwrap();
    let got = r.1["points"].as_array().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["payload"]["group"], "g0");
    assert_eq!(got[0]["vector"], json!([4.0, 0.0, 0.5, -3.0]));
    let r =
        http.post("/v1/shards/s1/points/get", &json!({"ids": [3], "with_payload": false})).unwrap();
    assert!(r.1["points"][0].get("payload").is_none());

    // search: l2 scores are distances, best (lowest) first, exact equals brute force
    let q = json!([4.0, 0.0, 0.5, -3.0]);
    let r =
        http.post("/v1/shards/s1/search", &json!({"vector": q, "k": 3, "exact": true})).unwrap();
    assert_eq!(r.1["plan"], "exact");
    assert_eq!(r.1["points"][0]["id"], 3);
    assert_eq!(r.1["points"][0]["score"], 0.0);
    let scores: Vec<f64> =
        r.1["points"].as_array().unwrap().iter().map(|p| p["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] <= w[1]));
    let r = http
        .post("/v1/shards/s1/search", &json!({"vector": q, "k": 3, "with_payload": true}))
        .unwrap();
    assert_eq!(r.1["plan"], "hnsw");
    assert_eq!(r.1["points"][0]["payload"]["n"], 3);
    let r = http
        .post(
            "/v1/shards/s1/search",
            &json!({"vector": q, "k": 50, "score_threshold": 1.5, "exact": true}),
        )
        .unwrap();
    assert!(r.1["points"].as_array().unwrap().iter().all(|p| p["score"].as_f64().unwrap() <= 1.5));

    // filters: match, any, except, range, has_id, is_empty, nested paths, should, must_not
    let count = |filter: Value| -> u64 {
        let r = http.post("/v1/shards/s1/points/count", &json!({"filter": filter})).unwrap();
        assert_eq!(r.0, 200, "{r:?}");
        r.1["count"].as_u64().unwrap()
    };
    assert_eq!(count(json!({"must": [{"key": "group", "match": {"value": "g1"}}]})), 17);
    assert_eq!(count(json!({"must": [{"key": "group", "match": {"any": ["g1", "g2"]}}]})), 33);
    assert_eq!(count(json!({"must": [{"key": "group", "match": {"except": ["g1"]}}]})), 33);
    assert_eq!(count(json!({"must": [{"key": "n", "range": {"gte": 10, "lt": 20}}]})), 10);
    assert_eq!(count(json!({"must": [{"has_id": [1, 2, 777]}]})), 2);
    assert_eq!(count(json!({"must": [{"is_empty": {"key": "group"}}]})), 1);
    assert_eq!(count(json!({"must": [{"key": "meta.tags", "match": {"value": "t1"}}]})), 25);
    assert_eq!(
        count(json!({"should": [{"has_id": [1]}, {"has_id": [2]}], "must_not": [{"has_id": [2]}]})),
        1
    );

    // payload indexes answer the same as scans
    let r = http.put("/v1/shards/s1/index", &json!({"field": "group", "kind": "keyword"})).unwrap();
    assert_eq!(r.1["payload_indexes"]["group"], "keyword");
    let r = http.put("/v1/shards/s1/index", &json!({"field": "n", "kind": "integer"})).unwrap();
    assert_eq!(r.0, 200);
    assert_eq!(count(json!({"must": [{"key": "group", "match": {"value": "g1"}}]})), 17);
    assert_eq!(count(json!({"must": [{"key": "n", "range": {"gte": 10, "lt": 20}}]})), 10);

    // filtered search: auto picks exact for a selective filter, hnsw can be forced
    let f = json!({"must": [{"key": "group", "match": {"value": "g2"}}]});
    let r = http.post("/v1/shards/s1/search", &json!({"vector": q, "k": 5, "filter": f})).unwrap();
    assert_eq!(r.1["plan"], "exact");
    let exact: Vec<Value> =
        r.1["points"].as_array().unwrap().iter().map(|p| p["id"].clone()).collect();
    assert_eq!(exact.len(), 5);
    let r = http
        .post(
            "/v1/shards/s1/search",
            &json!({"vector": q, "k": 5, "filter": f, "plan": "hnsw", "ef": 64}),
        )
        .unwrap();
    assert_eq!(r.1["plan"], "filtered_hnsw");
    let hnsw: Vec<Value> =
        r.1["points"].as_array().unwrap().iter().map(|p| p["id"].clone()).collect();
    assert_eq!(hnsw, exact);

    // batch search answers in order
    let r = http
        .post(
            "/v1/shards/s1/search/batch",
            &json!({"searches": [{"vector": q, "k": 1}, {"vector": [1, 0, 0.5, 0], "k": 1}]}),
        )
        .unwrap();
    assert_eq!(r.1["results"][0]["points"][0]["id"], 3);
    assert_eq!(r.1["results"][1]["points"][0]["id"], 0);

    // scroll visits every point once, in id order, integers before UUIDs
    let mut seen = Vec::new();
    let mut offset = Value::Null;
    loop {
        let mut body = json!({"limit": 7, "with_payload": false});
        if !offset.is_null() {
            body["offset"] = offset.clone();
        }
        let r = http.post("/v1/shards/s1/points/scroll", &body).unwrap();
        seen.extend(r.1["points"].as_array().unwrap().iter().map(|p| p["id"].clone()));
        offset = r.1.get("next_offset").cloned().unwrap_or(Value::Null);
        if offset.is_null() {
            break;
        }
    }
    assert_eq!(seen.len(), 51);
    assert_eq!(seen[0], 0);
    assert_eq!(seen[50], uuid);
    let r = http
        .post("/v1/shards/s1/points/scroll",
              &json!({"limit": 100, "filter": {"must": [{"key": "group", "match": {"value": "g0"}}]}}))
        .unwrap();
    assert_eq!(r.1["points"].as_array().unwrap().len(), 17);

    // payload: merge, overwrite, delete keys (also nested)
    let r = http
        .post("/v1/shards/s1/points/payload", &json!({"payload": {"extra": true}, "ids": [1, 2]}))
        .unwrap();
    assert_eq!(r.1["affected"], 2);
    let got = http.post("/v1/shards/s1/points/get", &json!({"ids": [1]})).unwrap().1;
    assert_eq!(got["points"][0]["payload"]["extra"], true);
    assert_eq!(got["points"][0]["payload"]["group"], "g1");
    http.post(
        "/v1/shards/s1/points/payload/delete",
        &json!({"keys": ["meta.tags", "extra"], "ids": [1]}),
    )
    .unwrap();
    let got = http.post("/v1/shards/s1/points/get", &json!({"ids": [1]})).unwrap().1;
    assert!(got["points"][0]["payload"].get("extra").is_none());
    assert_eq!(got["points"][0]["payload"]["meta"], json!({}));
    http.put("/v1/shards/s1/points/payload",
             &json!({"payload": {"only": 1}, "filter": {"must": [{"key": "group", "match": {"value": "g2"}}]}}))
        .unwrap();
    assert_eq!(count(json!({"must": [{"key": "only", "match": {"value": 1}}]})), 16);
    assert_eq!(count(json!({"must": [{"key": "group", "match": {"value": "g2"}}]})), 0);

    // delete by ids and by filter
    let r = http.post("/v1/shards/s1/points/delete", &json!({"ids": [0, 1, 12345]})).unwrap();
    assert_eq!(r.1["affected"], 2);
    let r = http
        .post(
            "/v1/shards/s1/points/delete",
            &json!({"filter": {"must": [{"key": "only", "match": {"value": 1}}]}}),
        )
        .unwrap();
    assert_eq!(r.1["affected"], 16);
    assert_eq!(http.post("/v1/shards/s1/points/count", &json!({})).unwrap().1["count"], 33);
    let r = http
        .post("/v1/shards/s1/search", &json!({"vector": [1, 0, 0.5, 0], "k": 100, "exact": true}))
        .unwrap();
    assert_eq!(r.1["points"].as_array().unwrap().len(), 33);

    // snapshot, drop index, drop shard
    let r = http.post("/v1/shards/s1/snapshot", &json!({})).unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    assert!(r.1["size_bytes"].as_u64().unwrap() > 0);
    // metrics in Prometheus format, labelled by route template (a dropped shard's series go)
    let m = http.metrics().unwrap();
    assert!(m.contains("vdb_shard_http_requests_total{method=\"POST\",route=\"/v1/shards/{name}/search\",status=\"200\"}"));
    for name in [
        "vdb_shard_wal_appends_total",
        "vdb_shard_wal_fsync_duration_seconds_bucket",
        "vdb_shard_snapshot_duration_seconds_count",
        "vdb_shard_search_duration_seconds_bucket",
    ] {
        assert!(m.contains(name), "missing {name}");
    }
    assert_eq!(http.delete("/v1/shards/s1/index/group").unwrap().0, 204);
    assert_eq!(http.delete("/v1/shards/s1").unwrap().0, 204);
    assert_error(&http.get("/v1/shards/s1").unwrap(), 404, "not_found");
}

#[test]
fn state_survives_sigterm_and_restart() {
    let mut node = ShardProcess::start(&["--snapshot-every", "3"]).unwrap();
    let http = node.http();
    create(&http, "r", json!({"collection": "c", "dimension": 4, "metric": "cosine"}));
    for i in 0..5 {
        let mut batch = points(10);
        for p in batch["points"].as_array_mut().unwrap() {
            let id = p["id"].as_u64().unwrap() + 10 * i;
            p["id"] = json!(id);
        }
        assert_eq!(http.put("/v1/shards/r/points", &batch).unwrap().0, 200);
    }
    http.put("/v1/shards/r/index", &json!({"field": "group", "kind": "keyword"})).unwrap();
    http.post("/v1/shards/r/points/delete", &json!({"ids": [7]})).unwrap();
    // Background snapshots run after every 3 records; wait for one to land.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let before = loop {
        let info = http.get("/v1/shards/r").unwrap().1;
        if info["snapshot_lsn"].as_u64().unwrap() > 0 {
            break info;
        }
        assert!(std::time::Instant::now() < deadline, "no background snapshot: {info}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let q = json!({"vector": [1, 2, 0.5, -1], "k": 10, "exact": true, "with_payload": true});
    let hits = http.post("/v1/shards/r/search", &q).unwrap().1;
    assert_eq!(node.terminate().unwrap(), Some(0), "SIGTERM exits cleanly");
    node.restart().unwrap();
    let http = node.http();
    let after = http.get("/v1/shards/r").unwrap().1;
    assert_eq!(after["points"], 49);
    assert_eq!(after["last_lsn"], before["last_lsn"]);
    assert_eq!(after["payload_indexes"], before["payload_indexes"]);
    assert_eq!(http.post("/v1/shards/r/search", &q).unwrap().1, hits);
    assert!(http.metrics().unwrap().contains("vdb_shard_recovery_duration_seconds{shard=\"r\"}"));
}

#[test]
fn bad_input_gets_json_errors_and_changes_nothing() {
    let node = ShardProcess::start(&["--max-body-bytes", "65536"]).unwrap();
    let http = node.http();
    create(&http, "b", json!({"collection": "c", "dimension": 3, "metric": "cosine"}));
    http.put("/v1/shards/b/points", &json!({"points": [{"id": 1, "vector": [1, 0, 0]}]})).unwrap();
    let lsn = http.get("/v1/shards/b").unwrap().1["last_lsn"].clone();

    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        (
            "PUT",
            "/v1/shards/b/points",
            json!({"points": [{"id": 2, "vector": [1, 0]}]}),
            400,
            "dimension_mismatch",
        ),
        (
            "PUT",
            "/v1/shards/b/points",
            json!({"points": [{"id": 2, "vector": [1, 0, 0]}, {"id": 3, "vector": [1, 0]}]}),
            400,
            "dimension_mismatch",
        ),
        (
            "PUT",
            "/v1/shards/b/points",
            json!({"points": [{"id": 2, "vector": [0, 0, 0]}]}),
            400,
            "invalid_vector",
        ),
        (
            "PUT",
            "/v1/shards/b/points",
            json!({"points": [{"id": 2, "vector": [1, 0, 0], "payload": [1]}]}),
            400,
            "invalid_payload",
        ),
        (
            "PUT",
            "/v1/shards/b/points",
            json!({"points": [{"id": 2, "vector": [1, 0, 0], "payload": "x"}]}),
            400,
            "invalid_payload",
        ),
        (
            "PUT",
            "/v1/shards/b/points",
            json!({"points": [{"id": -2, "vector": [1, 0, 0]}]}),
            400,
            "malformed_json",
        ),
        (
            "PUT",
            "/v1/shards/b/points",
            json!({"points": [{"id": "nope", "vector": [1, 0, 0]}]}),
            400,
            "malformed_json",
        ),
        ("PUT", "/v1/shards/b/points", json!({"points": []}), 400, "invalid_argument"),
        (
            "PUT",
            "/v1/shards/zz/points",
            json!({"points": [{"id": 2, "vector": [1, 0, 0]}]}),
            404,
            "not_found",
        ),
        (
            "POST",
            "/v1/shards/b/search",
            json!({"vector": [1, 0, 0], "k": 0}),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/shards/b/search",
            json!({"vector": [1, 0, 0], "k": 100000000}),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/shards/b/search",
            json!({"vector": [1, 0, 0], "ef": 0}),
            400,
            "invalid_argument",
        ),
        ("POST", "/v1/shards/b/search", json!({"vector": [1, 0]}), 400, "dimension_mismatch"),
        (
            "POST",
            "/v1/shards/b/search",
            json!({"vector": [1, 0, 0], "filter": {"must": [{"key": "a", "range": {}}]}}),
            400,
            "invalid_filter",
        ),
        (
            "POST",
            "/v1/shards/b/search",
            json!({"vector": [1, 0, 0], "filter": {"must": [{"key": "a", "match": {"value": 1}, "range": {"gt": 1}}]}}),
            400,
            "invalid_filter",
        ),
        (
            "POST",
            "/v1/shards/b/search",
            json!({"vector": [1, 0, 0], "filter": {"must": [{"kee": "a"}]}}),
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/v1/shards/b/search",
            json!({"vector": [1, 0, 0], "exact": true, "plan": "hnsw"}),
            400,
            "invalid_argument",
        ),
        ("POST", "/v1/shards/b/points/delete", json!({}), 400, "invalid_argument"),
        (
            "POST",
            "/v1/shards/b/points/delete",
            json!({"ids": [1], "filter": {}}),
            400,
            "invalid_argument",
        ),
        ("POST", "/v1/shards/b/points/scroll", json!({"limit": 0}), 400, "invalid_argument"),
        (
            "POST",
            "/v1/shards/b/points/payload/delete",
            json!({"keys": ["a..b"], "ids": [1]}),
            400,
            "invalid_argument",
        ),
        ("PUT", "/v1/shards/b/index", json!({"field": "x", "kind": "geo"}), 400, "malformed_json"),
        (
            "PUT",
            "/v1/shards/b",
            json!({"collection": "c", "dimension": 3, "metric": "cosine"}),
            409,
            "already_exists",
        ),
        (
            "PUT",
            "/v1/shards/new",
            json!({"collection": "c", "dimension": 0, "metric": "cosine"}),
            400,
            "invalid_argument",
        ),
        (
            "PUT",
            "/v1/shards/new",
            json!({"collection": "c", "dimension": 3, "metric": "manhattan"}),
            400,
            "malformed_json",
        ),
        (
            "PUT",
            "/v1/shards/bad%20name",
            json!({"collection": "c", "dimension": 3, "metric": "cosine"}),
            400,
            "invalid_argument",
        ),
        ("DELETE", "/v1/shards/b/index/nothing", Value::Null, 404, "not_found"),
        ("GET", "/v1/nowhere", Value::Null, 404, "not_found"),
    ];
    for (method, path, body, status, code) in &cases {
        let r = match *method {
            "PUT" => http.put(path, body),
            "POST" => http.post(path, body),
            "DELETE" => http.delete(path),
            _ => http.get(path),
        }
        .unwrap();
        assert_error(&r, *status, code);
    }
    // NaN and infinity cannot be written in JSON; numbers too large for f32 become infinity.
    let r = http
        .send_raw(
            "PUT",
            "/v1/shards/b/points",
            br#"{"points":[{"id":2,"vector":[1e39,0,0]}]}"#.to_vec(),
        )
        .unwrap();
    assert!(r.0 == 400, "{r:?}");
    assert_error(
        &http.send_raw("POST", "/v1/shards/b/search", b"{not json".to_vec()).unwrap(),
        400,
        "malformed_json",
    );
    let big = vec![b' '; 70_000];
    assert_error(
        &http.send_raw("PUT", "/v1/shards/b/points", big).unwrap(),
        413,
        "payload_too_large",
    );

    let after = http.get("/v1/shards/b").unwrap().1;
    assert_eq!(after["last_lsn"], lsn, "no bad request was logged");
    assert_eq!(after["points"], 1);
    println!("bad-input cases checked: {}", cases.len() + 3);
}

#[test]
fn quantised_storage_and_dot_metric_answer_searches() {
    let node = ShardProcess::start(&[]).unwrap();
    let http = node.http();
    for (name, metric, scalar) in
        [("f16", "cosine", "f16"), ("i8", "cosine", "i8"), ("dot", "dot", "f32")]
    {
        create(
            &http,
            name,
            json!({"collection": "q", "dimension": 4, "metric": metric, "scalar": scalar}),
        );
        let r = http.put(&format!("/v1/shards/{name}/points"), &points(30)).unwrap();
        assert_eq!(r.0, 200, "{r:?}");
        let q = json!({"vector": [4.0, 0.0, 0.5, -3.0], "k": 5});
        let approx = http.post(&format!("/v1/shards/{name}/search"), &q).unwrap().1;
        let mut exact_q = q.clone();
        exact_q["exact"] = json!(true);
        let exact = http.post(&format!("/v1/shards/{name}/search"), &exact_q).unwrap().1;
        assert_eq!(
            approx["points"][0]["id"], exact["points"][0]["id"],
            "{name}: {approx} vs {exact}"
        );
        let scores: Vec<f64> = exact["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["score"].as_f64().unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{name}: higher is better");
    }
}

#[test]
fn overload_answers_429_not_a_hang() {
    // One read thread and one waiting read: the rest of the burst must be refused.
    let flags = ["--search-threads", "1", "--max-concurrency", "1", "--max-queue", "1"];
    let node = ShardProcess::start(&flags).unwrap();
    let http = node.http();
    create(&http, "o", json!({"collection": "o", "dimension": 64, "metric": "l2"}));
    let pts: Vec<Value> = (0..4000u64)
        .map(|i| json!({"id": i, "vector": (0..64).map(|d| ((i * 7 + d) % 101) as f32).collect::<Vec<_>>()}))
        .collect();
    for chunk in pts.chunks(1000) {
        assert_eq!(http.put("/v1/shards/o/points", &json!({"points": chunk})).unwrap().0, 200);
    }
    let q = json!({"vector": vec![1.0; 64], "k": 10, "exact": true});
    let replies: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..32).map(|_| s.spawn(|| http.post("/v1/shards/o/search", &q).unwrap())).collect();
        handles
            .into_iter()
            .map(|h| {
                let r = h.join().unwrap();
                if r.0 == 429 {
                    assert_error(&r, 429, "overloaded");
                }
                r.0
            })
            .collect()
    });
    let rejected = replies.iter().filter(|&&s| s == 429).count();
    let ok = replies.iter().filter(|&&s| s == 200).count();
    println!("overload: {ok} answered, {rejected} refused with 429");
    assert_eq!(ok + rejected, replies.len());
    assert!(rejected > 0 && ok > 0);
    assert!(http.metrics().unwrap().contains("vdb_shard_rejected_requests_total"));
}

#[test]
fn corruption_in_the_middle_of_the_wal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = ShardProcess::start_on(dir.path(), &["--snapshot-every", "0"]).unwrap();
    let http = node.http();
    create(&http, "c", json!({"collection": "c", "dimension": 4, "metric": "l2"}));
    create(&http, "ok", json!({"collection": "c", "dimension": 4, "metric": "l2"}));
    for _ in 0..5 {
        assert_eq!(http.put("/v1/shards/c/points", &points(20)).unwrap().0, 200);
    }
    http.put("/v1/shards/ok/points", &points(5)).unwrap();
    assert_eq!(node.terminate().unwrap(), Some(0));
    let wal_dir = dir.path().join("shards/c/wal");
    let seg = std::fs::read_dir(&wal_dir).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    node.restart().unwrap();
    let http = node.http();
    let r = http.post("/v1/shards/c/points/count", &json!({})).unwrap();
    assert_error(&r, 503, "unavailable");
    assert!(r.1["error"]["message"].as_str().unwrap().contains("could not be recovered"));
    let status = http.get("/v1/status").unwrap().1;
    let states: Vec<(Value, Value)> = status["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].clone(), s["state"].clone()))
        .collect();
    assert!(states.contains(&(json!("c"), json!("failed"))), "{status}");
    assert!(states.contains(&(json!("ok"), json!("active"))), "{status}");
    assert_eq!(http.post("/v1/shards/ok/points/count", &json!({})).unwrap().1["count"], 5);
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "a refused log is left as it was");
}
