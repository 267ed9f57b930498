//! Recall on the shared `debian-minilm` dataset (61,666 × 384, cosine), through the release
//! binary over HTTP. Asserts recall@10 ≥ 0.95 at the default ef for plain queries (plan must
//! be `hnsw`) and for the filtered queries — both as the planner chooses and with the planner
//! forced to filtered HNSW (plan must be `filtered_hnsw`) — and that `exact` search returns
//! the brute-force ground truth. Under CI a missing dataset fails the test.

use serde_json::{json, Value};
use vdb_dataset::Dataset;
use vdb_tests::data::{dataset_or_skip, ingest};
use vdb_tests::{Http, ShardProcess};

fn ids(reply: &Value) -> Vec<u64> {
    reply["points"].as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect()
}

/// Mean recall@10 of `search` over the queries, checking the plan of every reply.
fn mean_recall(http: &Http, truth: &[Vec<u32>], plan: &str, body: impl Fn(usize) -> Value) -> f64 {
    let mut total = 0.0;
    for (i, t) in truth.iter().enumerate() {
        let r = http.post("/v1/shards/docs/search", &body(i)).unwrap();
        assert_eq!(r.0, 200, "{r:?}");
        assert_eq!(r.1["plan"], plan, "query {i}");
        total += Dataset::recall_at(10, t, &ids(&r.1));
    }
    total / truth.len() as f64
}

#[test]
fn recall_at_10_on_debian_minilm() {
    let Some(data) = dataset_or_skip("recall test") else { return };
    let node = ShardProcess::start(&["--fsync", "never", "--snapshot-every", "0"]).unwrap();
    let http = node.http();
    let r = http
        .put(
            "/v1/shards/docs",
            &json!({"collection": "docs", "dimension": data.dim, "metric": "cosine"}),
        )
        .unwrap();
    assert_eq!(r.0, 201);
    http.put("/v1/shards/docs/index", &json!({"field": "section", "kind": "keyword"})).unwrap();
    ingest(&http, "/v1/shards/docs/points", &data);

    let filter = |i: usize| json!({"must": [{"key": "section", "match": {"value": data.filter_sections[i]}}]});
    let plain =
        mean_recall(&http, &data.gt, "hnsw", |i| json!({"vector": data.queries[i], "k": 10}));
    let filtered_auto = mean_recall(
        &http,
        &data.filtered_gt,
        "exact",
        |i| json!({"vector": data.queries[i], "k": 10, "filter": filter(i)}),
    );
    let filtered_hnsw = mean_recall(
        &http,
        &data.filtered_gt,
        "filtered_hnsw",
        |i| json!({"vector": data.queries[i], "k": 10, "filter": filter(i), "plan": "hnsw"}),
    );
    let exact = mean_recall(
        &http,
        &data.gt[..200],
        "exact",
        |i| json!({"vector": data.queries[i], "k": 10, "exact": true}),
    );
    println!(
        "recall@10 (default ef): plain hnsw {plain:.4}, filtered auto(exact) {filtered_auto:.4}, \
         filtered forced hnsw {filtered_hnsw:.4}, exact {exact:.4} over {} queries",
        data.queries.len()
    );
    assert!(plain >= 0.95, "plain recall {plain}");
    assert!(filtered_auto >= 0.95, "filtered recall (planner) {filtered_auto}");
    assert!(filtered_hnsw >= 0.95, "filtered recall (forced hnsw) {filtered_hnsw}");
    assert!(exact >= 0.999, "exact search must match brute force, got {exact}");

    // A broad filter (most of the corpus) goes to filtered HNSW and keeps recall against
    // exact search over the same filter.
    let broad = json!({"must_not": [{"key": "section", "match": {"value": "libs"}}]});
    let mut total = 0.0;
    for q in data.queries.iter().take(200) {
        let exact = http
            .post(
                "/v1/shards/docs/search",
                &json!({"vector": q, "k": 10, "filter": broad, "exact": true}),
            )
            .unwrap();
        let auto = http
            .post("/v1/shards/docs/search", &json!({"vector": q, "k": 10, "filter": broad}))
            .unwrap();
        assert_eq!(auto.1["plan"], "filtered_hnsw");
        let truth: Vec<u32> = ids(&exact.1).iter().map(|&i| i as u32).collect();
        total += Dataset::recall_at(10, &truth, &ids(&auto.1));
    }
    let broad_recall = total / 200.0;
    println!("recall@10 broad filter (filtered_hnsw vs exact): {broad_recall:.4}");
    assert!(broad_recall >= 0.95, "broad filtered recall {broad_recall}");
}
