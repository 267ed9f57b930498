//! Text through the router, with real processes only: the feature-built `vdb-embedder`
//! (torch backend, the exported all-MiniLM-L6-v2), two shard nodes and a router started with
//! `--embedder all-MiniLM-L6-v2=URL`. A collection names the model (no dimension given);
//! 1,000 debian-minilm documents go in as text; the vectors the shards hold must match the
//! golden `base.fvecs` (made by sentence-transformers, cosine >= 0.999 each); searches by a
//! document's text (single and batch) must find that document first; an over-long text on a
//! collection that does not truncate is a 422 naming the point, with nothing written; a killed
//! embedder makes text requests 503 while vector requests still work.
//!
//! Part of the embedder tier (`scripts/test-embedder.sh`). Without the embedder build, the
//! model or the dataset it skips, except under `CI=true`, where it fails.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Instant;
use vdb_tests::embedder::EmbedderProcess;
use vdb_tests::fleet::Fleet;
use vdb_tests::{assert_error, Http};

const MODEL: &str = "all-MiniLM-L6-v2";
const DOCS: usize = 1_000;
const BATCH: usize = 250;

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// The value of an unlabelled-or-labelled sample line `name{...} value` in metrics text.
fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn embed_calls(http: &Http) -> f64 {
    metric(&http.metrics().unwrap(), "vdb_router_embed_calls_total{model=\"all-MiniLM-L6-v2\"}")
}

fn count(http: &Http, coll: &str) -> u64 {
    let r = http.post(&format!("/v1/collections/{coll}/points/count"), &json!({})).unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    r.1["count"].as_u64().unwrap()
}

fn first_hit(result: &Value) -> u64 {
    result["points"][0]["id"].as_u64().unwrap_or(u64::MAX)
}

#[test]
fn text_through_the_router_with_the_real_embedder() {
    let Some(data) = vdb_tests::data::dataset_or_skip("router_text") else { return };
    let Some(mut embedder) = EmbedderProcess::start_or_skip("router_text", &[]) else { return };
    assert_eq!(embedder.model, MODEL);
    let spec = format!("{MODEL}={}", embedder.url);
    let mut fleet =
        Fleet::start(2, &[], &["--embedder", &spec, "--embed-timeout-ms", "120000"]).unwrap();
    let http = fleet.http();

    // The collection takes its dimension from the model.
    let create = json!({"metric": "cosine", "shard_count": 2,
        "embedding": {"model": MODEL, "store_text": "text", "truncate": true}});
    let r = loop {
        // Placement needs the nodes' first health round.
        let r = http.put("/v1/collections/docs", &create).unwrap();
        if r.0 != 503 || r.1["error"]["code"] != "unavailable" {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(r.0, 201, "{r:?}");
    assert_eq!(r.1["config"]["dimension"], 384);
    assert_eq!(
        r.1["config"]["embedding"],
        json!({"model": MODEL, "store_text": "text", "truncate": true})
    );
    let list = http.get("/v1/collections").unwrap().1;
    assert_eq!(list["embedding_models"], json!({"docs": MODEL}));
    let wrong = json!({"dimension": 768, "metric": "cosine", "embedding": {"model": MODEL}});
    assert_error(&http.put("/v1/collections/wrong", &wrong).unwrap(), 400, "dimension_mismatch");
    let unknown = json!({"metric": "cosine", "embedding": {"model": "bge-small"}});
    assert_error(&http.put("/v1/collections/wrong", &unknown).unwrap(), 400, "invalid_argument");
    assert_eq!(http.get("/v1/collections/wrong").unwrap().0, 404);

    // 1,000 documents spread over the dataset, upserted as text in requests of 250: one
    // embedder call per request.
    let step = (data.docs.len() / DOCS).max(1);
    let picked: Vec<usize> = (0..data.docs.len()).step_by(step).take(DOCS).collect();
    assert_eq!(picked.len(), DOCS);
    let calls_before = embed_calls(&http);
    let started = Instant::now();
    for part in picked.chunks(BATCH) {
        let points: Vec<Value> = part
            .iter()
            .map(|&i| {
                let d = &data.docs[i];
                json!({"id": d.id, "text": d.text, "payload": {"section": d.section, "package": d.package}})
            })
            .collect();
        let r = http.put("/v1/collections/docs/points", &json!({ "points": points })).unwrap();
        assert_eq!(r.0, 200, "{r:?}");
        assert_eq!(r.1["affected"], part.len() as u64);
    }
    let upsert_seconds = started.elapsed().as_secs_f64();
    assert_eq!(embed_calls(&http) - calls_before, (DOCS / BATCH) as f64, "one call per request");
    assert_eq!(count(&http, "docs"), DOCS as u64);

    // The stored vectors are the golden ones; the text is in the payload.
    let mut worst = (f32::MAX, 0u64);
    for part in picked.chunks(BATCH) {
        let ids: Vec<u64> = part.iter().map(|&i| data.docs[i].id).collect();
        let r = http
            .post("/v1/collections/docs/points/get", &json!({"ids": ids, "with_vector": true}))
            .unwrap();
        assert_eq!(r.0, 200, "{r:?}");
        let got = r.1["points"].as_array().unwrap();
        assert_eq!(got.len(), part.len());
        for (p, &i) in got.iter().zip(part) {
            let doc = &data.docs[i];
            assert_eq!(p["id"], doc.id);
            assert_eq!(p["payload"]["text"], doc.text.as_str());
            assert_eq!(p["payload"]["section"], doc.section.as_str());
            let v: Vec<f32> = serde_json::from_value(p["vector"].clone()).unwrap();
            let c = cosine(&v, &data.base[i]);
            if c < worst.0 {
                worst = (c, doc.id);
            }
        }
    }
    println!(
        "router_text: {DOCS} documents upserted as text in {upsert_seconds:.1} s; \
         min cosine to base.fvecs {:.6} (doc {})",
        worst.0, worst.1
    );
    assert!(worst.0 >= 0.999, "document {} differs from base.fvecs: cosine {}", worst.1, worst.0);

    // Searching by a document's own text finds it first. Only documents whose text is unique
    // among those upserted can be asked that (no two of these 1,000 are closer than cosine
    // 0.97). The searches are exact: what is tested is the text's vector, not HNSW's recall,
    // which the recall tests measure (an approximate search may rarely miss a point).
    let mut by_text: HashMap<&str, usize> = HashMap::new();
    for &i in &picked {
        *by_text.entry(data.docs[i].text.as_str()).or_default() += 1;
    }
    let unique: Vec<usize> =
        picked.iter().copied().filter(|&i| by_text[data.docs[i].text.as_str()] == 1).collect();
    let probes: Vec<usize> = unique.iter().step_by(unique.len() / 30).take(30).copied().collect();
    for &i in &probes {
        let doc = &data.docs[i];
        let r = http
            .post(
                "/v1/collections/docs/search",
                &json!({"text": doc.text, "k": 3, "exact": true, "with_payload": true}),
            )
            .unwrap();
        assert_eq!(r.0, 200, "{r:?}");
        assert_eq!(first_hit(&r.1), doc.id, "search by the text of doc {}: {}", doc.id, r.1);
        assert!(r.1["points"][0]["score"].as_f64().unwrap() > 0.999, "{}", r.1);
    }
    // A batch of text searches (and one by vector) costs one embedder call.
    let batch: Vec<usize> =
        unique.iter().rev().step_by(unique.len() / 20).take(20).copied().collect();
    let mut searches: Vec<Value> =
        batch.iter().map(|&i| json!({"text": data.docs[i].text, "k": 3, "exact": true})).collect();
    searches.push(json!({"vector": data.base[batch[0]], "k": 3, "exact": true}));
    let calls_before = embed_calls(&http);
    let r =
        http.post("/v1/collections/docs/search/batch", &json!({ "searches": searches })).unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(embed_calls(&http) - calls_before, 1.0, "one call for the batch");
    let results = r.1["results"].as_array().unwrap();
    for (result, &i) in results.iter().zip(&batch) {
        assert_eq!(
            first_hit(result),
            data.docs[i].id,
            "batch search by the text of doc {i}: {result}"
        );
    }
    assert_eq!(first_hit(&results[batch.len()]), data.docs[batch[0]].id);
    println!(
        "router_text: {} single and {} batched text searches found their document first",
        probes.len(),
        batch.len()
    );

    // A collection that does not truncate refuses an over-long text: 422 naming the point,
    // and nothing of the request is written.
    let strict = json!({"metric": "cosine", "embedding": {"model": MODEL}});
    assert_eq!(http.put("/v1/collections/strict", &strict).unwrap().0, 201);
    let long = "debian ".repeat(300);
    let points = json!({"points": [
        {"id": 1, "text": "a short description"},
        {"id": 2, "vector": data.base[0]},
        {"id": 3, "text": long},
    ]});
    let r = http.put("/v1/collections/strict/points", &points).unwrap();
    assert_error(&r, 422, "unprocessable");
    let message = r.1["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("points[2]: the text has "), "{message}");
    assert!(message.contains("tokens, over model all-MiniLM-L6-v2's limit of 256"), "{message}");
    println!("router_text: over-long text refused: {message}");
    assert_eq!(count(&http, "strict"), 0, "a refused request wrote nothing");
    let r = http.post("/v1/collections/strict/search", &json!({"text": long})).unwrap();
    assert_error(&r, 422, "unprocessable");
    // The truncating collection takes it.
    let r = http.post("/v1/collections/docs/search", &json!({"text": long, "k": 1})).unwrap();
    assert_eq!(r.0, 200, "{r:?}");

    // With the embedder gone, text requests get 503 naming the model and change nothing;
    // requests with vectors still work.
    embedder.kill9();
    let points = json!({"points": [{"id": 5, "text": "another description"}]});
    let r = http.put("/v1/collections/docs/points", &points).unwrap();
    assert_error(&r, 503, "embedder_unavailable");
    assert!(r.1["error"]["message"].as_str().unwrap().contains(MODEL), "{r:?}");
    let r = http.post("/v1/collections/docs/search", &json!({"text": "a text editor"})).unwrap();
    assert_error(&r, 503, "embedder_unavailable");
    assert_eq!(count(&http, "docs"), DOCS as u64);
    let i = picked[7];
    let r =
        http.post("/v1/collections/docs/search", &json!({"vector": data.base[i], "k": 1})).unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(first_hit(&r.1), data.docs[i].id);
    let metrics = http.metrics().unwrap();
    assert!(
        metric(
            &metrics,
            "vdb_router_embed_errors_total{model=\"all-MiniLM-L6-v2\",reason=\"unavailable\"}"
        ) >= 2.0,
        "{metrics}"
    );
    fleet.assert_alive();
}
