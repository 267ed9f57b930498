//! Recall through the router on the shared `debian-minilm` dataset: a 4-shard collection
//! against a 1-shard one, both behind the same router, on real processes. Asserts recall@10 of
//! the 4-shard collection ≥ the single-shard recall at the same ef, `exact` search equal to
//! brute force on every query, and filtered recall@10 ≥ 0.95 across shards. Under CI a missing
//! dataset fails the test.

use serde_json::{json, Value};
use vdb_dataset::Dataset;
use vdb_tests::data::{dataset_or_skip, ingest};
use vdb_tests::fleet::Fleet;
use vdb_tests::Http;

fn ids(reply: &Value) -> Vec<u64> {
    reply["points"].as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect()
}

fn search(http: &Http, coll: &str, body: &Value) -> Vec<u64> {
    let r = http.post(&format!("/v1/collections/{coll}/search"), body).unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(r.1["partial"], false);
    ids(&r.1)
}

fn mean_recall(http: &Http, coll: &str, truth: &[Vec<u32>], body: impl Fn(usize) -> Value) -> f64 {
    let total: f64 = truth
        .iter()
        .enumerate()
        .map(|(i, t)| Dataset::recall_at(10, t, &search(http, coll, &body(i))))
        .sum();
    total / truth.len() as f64
}

#[test]
fn four_shards_recall_at_least_one_shard_and_exact_is_brute_force() {
    let Some(data) = dataset_or_skip("router recall test") else { return };
    let fleet = Fleet::start(4, &["--fsync", "never", "--snapshot-every", "0"], &[]).unwrap();
    let http = fleet.http();
    for (coll, shards) in [("one", 1), ("four", 4)] {
        let r = http
            .put(
                &format!("/v1/collections/{coll}"),
                &json!({"dimension": data.dim, "metric": "cosine", "shard_count": shards}),
            )
            .unwrap();
        assert_eq!(r.0, 201, "{r:?}");
        let r = http
            .put(
                &format!("/v1/collections/{coll}/index"),
                &json!({"field": "section", "kind": "keyword"}),
            )
            .unwrap();
        assert_eq!(r.0, 204, "{r:?}");
        ingest(&http, &format!("/v1/collections/{coll}/points"), &data);
    }
    let plain = |i: usize| json!({"vector": data.queries[i], "k": 10, "ef": 64});
    let one = mean_recall(&http, "one", &data.gt, plain);
    let four = mean_recall(&http, "four", &data.gt, plain);

    // exact through the router = brute force: the same list as one shard's exact search, on
    // every query, and the dataset's ground truth.
    let mut exact_recall = 0.0;
    let checked = data.queries.len().min(300);
    for i in 0..checked {
        let body = json!({"vector": data.queries[i], "k": 10, "exact": true});
        let across = search(&http, "four", &body);
        assert_eq!(across, search(&http, "one", &body), "query {i}: exact differs across shards");
        exact_recall += Dataset::recall_at(10, &data.gt[i], &across);
    }
    exact_recall /= checked as f64;

    let filter = |i: usize| json!({"must": [{"key": "section", "match": {"value": data.filter_sections[i]}}]});
    let filtered = mean_recall(
        &http,
        "four",
        &data.filtered_gt,
        |i| json!({"vector": data.queries[i], "k": 10, "filter": filter(i)}),
    );
    let filtered_hnsw = mean_recall(
        &http,
        "four",
        &data.filtered_gt,
        |i| json!({"vector": data.queries[i], "k": 10, "filter": filter(i), "plan": "hnsw"}),
    );
    println!(
        "recall@10 at ef 64 over {} queries: 1 shard {one:.4}, 4 shards {four:.4}; exact vs ground truth {exact_recall:.4} \
         ({checked} queries, identical to 1-shard exact on each); filtered across 4 shards {filtered:.4} (planner), \
         {filtered_hnsw:.4} (forced hnsw)",
        data.queries.len()
    );
    assert!(four >= one, "4-shard recall {four} below single-shard {one}");
    assert!(exact_recall >= 0.999, "exact recall {exact_recall}");
    assert!(
        filtered >= 0.95 && filtered_hnsw >= 0.95,
        "filtered recall {filtered} / {filtered_hnsw}"
    );
}
