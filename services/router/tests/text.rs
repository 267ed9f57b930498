//! Text in the router, in-process: the router's HTTP app on a local metastore in front of a
//! fake embedder (axum on port 0) whose behaviour each test sets. The shard node the
//! collections are placed on does not exist, so a request that gets past validation and
//! embedding ends in a 503 naming the shard (or, for searches allowing it, a partial answer):
//! that is how these tests see that the texts were embedded and the request went on. The real
//! embedder, shard nodes and router are tested together in `tests/tests/router_text.rs`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use vdb_api::embed::{EmbedderInfo, Pooling};
use vdb_api::*;
use vdb_router::state::{now_ms, CollectionRecord, Lifecycle, ShardRecord, COLLECTIONS};
use vdb_router::{Cluster, Config};

const DIM: usize = 4;
const MODEL: &str = "mini";

/// How the fake embedder answers `/embed`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Normal,
    /// 429, queue full.
    Overloaded,
    /// 503, as while loading.
    Loading,
    /// Answers after this long.
    Slow(Duration),
    /// Vectors of one dimension too many.
    WrongDimension,
}

/// A fake embedder: a text's tokens are its words plus two special tokens; the limit is 8.
struct Fake {
    mode: Mutex<Mode>,
    model: String,
    max_client_batch: usize,
    /// Texts per `/embed` call, in call order.
    calls: Mutex<Vec<Vec<String>>>,
}

const MAX_TOKENS: usize = 8;

fn tokens(text: &str) -> usize {
    text.split_whitespace().count() + 2
}

fn vector_of(text: &str, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim).map(|i| 1.0 + ((text.len() + i * 7) % 5) as f32).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

async fn info(State(f): State<Arc<Fake>>) -> axum::Json<EmbedderInfo> {
    axum::Json(EmbedderInfo {
        model: f.model.clone(),
        backend: "fake".into(),
        dimension: DIM,
        max_input_tokens: MAX_TOKENS,
        pooling: Pooling::Mean,
        device: "cpu".into(),
        dtype: "f32".into(),
        intra_op_threads: 1,
        inter_op_threads: 1,
        max_batch_tokens: 1024,
        max_batch_size: 64,
        max_wait_ms: 1.0,
        max_queue: 1024,
        max_client_batch: f.max_client_batch,
        version: "test".into(),
    })
}

fn error(status: StatusCode, code: &str, message: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

async fn embed(
    State(f): State<Arc<Fake>>,
    axum::Json(body): axum::Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let texts: Vec<String> = serde_json::from_value(body["inputs"].clone()).unwrap();
    let truncate = body["truncate"].as_bool().unwrap_or(false);
    f.calls.lock().push(texts.clone());
    let mode = *f.mode.lock();
    match mode {
        Mode::Overloaded => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                "the queue is full; retry later",
            )
        }
        Mode::Loading => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the model is not serving",
            )
        }
        Mode::Slow(d) => tokio::time::sleep(d).await,
        _ => {}
    }
    if !truncate {
        if let Some(i) = texts.iter().position(|t| tokens(t) > MAX_TOKENS) {
            let message = format!(
                "input {i} has {} tokens, over the model's limit of {MAX_TOKENS}",
                tokens(&texts[i])
            );
            return error(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", &message);
        }
    }
    let dim = if mode == Mode::WrongDimension { DIM + 1 } else { DIM };
    axum::Json(texts.iter().map(|t| vector_of(t, dim)).collect::<Vec<_>>()).into_response()
}

async fn tokenize(axum::Json(body): axum::Json<Value>) -> axum::Json<Vec<Vec<Value>>> {
    let texts: Vec<String> = serde_json::from_value(body["inputs"].clone()).unwrap();
    axum::Json(
        texts
            .iter()
            .map(|t| {
                (0..tokens(t))
                    .map(|i| json!({"id": i, "text": "w", "special": false, "start": 0, "stop": 0}))
                    .collect()
            })
            .collect(),
    )
}

/// Starts a fake embedder serving `model`; returns it and its URL.
async fn fake_embedder(model: &str, max_client_batch: usize) -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake {
        mode: Mutex::new(Mode::Normal),
        model: model.into(),
        max_client_batch,
        calls: Mutex::default(),
    });
    let app = axum::Router::new()
        .route("/info", get(info))
        .route("/embed", post(embed))
        .route("/tokenize", post(tokenize))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, url)
}

/// A URL nothing listens on.
async fn closed_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

struct Router {
    cluster: Arc<Cluster>,
    _dir: tempfile::TempDir,
}

impl Router {
    async fn start(embedders: Vec<(String, String)>, timeout_ms: u64) -> Router {
        let dir = tempfile::tempdir().unwrap();
        let mut config =
            Config::for_tests(&format!("local://{}", dir.path().join("meta.json").display()));
        config.embedders = embedders;
        config.embed_timeout_ms = timeout_ms;
        let meta = vdb_meta::connect(&config.metastore).await.unwrap();
        let state = vdb_router::state::State::start(meta).await.unwrap();
        let metrics = Arc::new(vdb_router::metrics::Metrics::new().unwrap());
        let cluster = Arc::new(Cluster::new(config, "r1".into(), state, metrics));
        Router { cluster, _dir: dir }
    }

    /// An active collection of one shard on node `n0`, which nothing serves.
    async fn collection(&self, name: &str, embedding: Option<EmbeddingConfig>) {
        let url = closed_url().await;
        self.cluster.register_node("n0", RegisterNode { url }).await.unwrap();
        let record = CollectionRecord {
            name: name.into(),
            uid: "0000test".into(),
            config: CollectionConfig {
                dimension: DIM,
                metric: Metric::Cosine,
                hnsw: HnswConfig::default(),
                scalar: ScalarType::F32,
                replication_factor: 1,
                sharding: Sharding::Hash,
                write_consistency: WriteConsistency::Async,
                min_in_sync: 0,
                auto_reshard: false,
                embedding,
            },
            lifecycle: Lifecycle::Active,
            shards: BTreeMap::from([(
                0,
                ShardRecord { nodes: vec!["n0".into()], epoch: 1, in_sync: vec![] },
            )]),
            map: vec![0],
            next_shard_id: 1,
            since_ms: now_ms(),
            resharding: None,
            moving: None,
        };
        let key = format!("{COLLECTIONS}{name}");
        self.cluster.state.cas(&key, None, &record).await.unwrap().unwrap();
    }

    async fn call(
        &self,
        method: &str,
        path: impl AsRef<str>,
        body: Value,
    ) -> (StatusCode, Value, Option<String>) {
        let request = Request::builder()
            .method(method)
            .uri(path.as_ref())
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = vdb_router::app(self.cluster.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let retry_after =
            response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), retry_after)
    }

    async fn metrics(&self) -> String {
        let request = Request::get("/metrics").body(Body::empty()).unwrap();
        let response = vdb_router::app(self.cluster.clone()).oneshot(request).await.unwrap();
        String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec())
            .unwrap()
    }
}

fn embedding(store_text: Option<&str>, truncate: bool) -> EmbeddingConfig {
    EmbeddingConfig { model: MODEL.into(), store_text: store_text.map(Into::into), truncate }
}

#[track_caller]
fn assert_error(
    reply: &(StatusCode, Value, Option<String>),
    status: u16,
    code: &str,
    needle: &str,
) {
    assert_eq!(reply.0.as_u16(), status, "{reply:?}");
    assert_eq!(reply.1["error"]["code"], code, "{reply:?}");
    let message = reply.1["error"]["message"].as_str().unwrap();
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
}

fn text_points(texts: &[&str]) -> Vec<Value> {
    texts.iter().enumerate().map(|(i, t)| json!({"id": i, "text": t})).collect()
}

#[tokio::test]
async fn creation_checks_the_model_before_anything_is_created() {
    let (_fake, url) = fake_embedder(MODEL, 1024).await;
    let (_other, other_url) = fake_embedder("another-model", 1024).await;
    let down = closed_url().await;
    let r = Router::start(
        vec![(MODEL.into(), url), ("misnamed".into(), other_url), ("down".into(), down)],
        1_000,
    )
    .await;
    let create = |body: Value| r.call("PUT", "/v1/collections/docs", body);

    let unknown = create(json!({"metric": "cosine", "embedding": {"model": "nope"}})).await;
    assert_error(
        &unknown,
        400,
        "invalid_argument",
        "\"nope\" is not served by this router (it serves down, mini, misnamed)",
    );
    let mismatch =
        create(json!({"dimension": 8, "metric": "cosine", "embedding": {"model": MODEL}})).await;
    assert_error(&mismatch, 400, "dimension_mismatch", "dimension 8 differs from model mini's 4");
    let no_dimension = create(json!({"metric": "cosine"})).await;
    assert_error(&no_dimension, 400, "invalid_argument", "dimension is required");
    let dotted =
        create(json!({"metric": "cosine", "embedding": {"model": MODEL, "store_text": "a.b"}}))
            .await;
    assert_error(&dotted, 400, "invalid_argument", "store_text");
    let bad_field =
        create(json!({"metric": "cosine", "embedding": {"model": MODEL, "pooling": "cls"}})).await;
    assert_error(&bad_field, 400, "malformed_json", "pooling");
    let bad_metric = create(json!({"metric": "manhattan", "embedding": {"model": MODEL}})).await;
    assert_error(&bad_metric, 400, "malformed_json", "metric");
    let down = create(json!({"metric": "cosine", "embedding": {"model": "down"}})).await;
    assert_error(&down, 503, "embedder_unavailable", "model down");
    let misnamed = create(json!({"metric": "cosine", "embedding": {"model": "misnamed"}})).await;
    assert_error(&misnamed, 503, "embedder_unavailable", "serves model another-model");
    // A good config gets past the embedder (dimension omitted) and stops at placement: there
    // is no shard node in this test.
    let good =
        create(json!({"metric": "cosine", "embedding": {"model": MODEL, "store_text": "text"}}))
            .await;
    assert_error(&good, 503, "unavailable", "no healthy shard node");
    let list = r.call("GET", "/v1/collections", Value::Null).await;
    assert_eq!(list.1, json!({"collections": []}), "nothing was created");
}

#[tokio::test]
async fn upserts_are_checked_whole_then_embedded_in_one_call() {
    let (fake, url) = fake_embedder(MODEL, 1024).await;
    let r = Router::start(vec![(MODEL.into(), url)], 1_000).await;
    r.collection("docs", Some(embedding(Some("text"), false))).await;
    r.collection("plain", None).await;
    let list = r.call("GET", "/v1/collections", Value::Null).await;
    assert_eq!(list.1["embedding_models"], json!({"docs": MODEL}));
    let upsert = |coll: &str, points: Vec<Value>| {
        r.call("PUT", format!("/v1/collections/{coll}/points"), json!({ "points": points }))
    };

    let mut points = text_points(&["a", "b", "c"]);
    points[1] = json!({"id": 1, "text": "b", "vector": [1, 0, 0, 0]});
    assert_error(
        &upsert("docs", points).await,
        400,
        "invalid_argument",
        "points[1]: give a vector or a text, not both",
    );
    let mut points = text_points(&["a", "b", "c"]);
    points[2] = json!({"id": 2, "payload": {}});
    assert_error(
        &upsert("docs", points).await,
        400,
        "invalid_argument",
        "points[2]: give a vector or a text",
    );
    let mut points = text_points(&["a", "b"]);
    points[1] = json!({"id": 1, "text": ""});
    assert_error(
        &upsert("docs", points).await,
        400,
        "invalid_argument",
        "points[1]: text must not be empty",
    );
    let mut points = text_points(&["a", "b"]);
    points[0]["payload"] = json!({"text": "mine"});
    assert_error(
        &upsert("docs", points).await,
        400,
        "invalid_payload",
        "points[0]: payload key \"text\"",
    );
    let mut points = text_points(&["a", "b"]);
    points.push(json!({"id": 9, "vector": [1, 2, 3]}));
    assert_error(&upsert("docs", points).await, 400, "dimension_mismatch", "points[2]");
    assert_error(
        &upsert("plain", text_points(&["a"])).await,
        400,
        "invalid_argument",
        "points[0]: collection plain has no embedding model",
    );
    assert!(fake.calls.lock().is_empty(), "bad input reached the embedder");

    // Ten texts between two vectors: one embedder call with the ten texts, in order; then the
    // write goes on to the shard (which does not exist here).
    let mut points = vec![json!({"id": 100, "vector": [1, 0, 0, 0]})];
    let texts: Vec<String> = (0..10).map(|i| format!("text {i}")).collect();
    points.extend(texts.iter().enumerate().map(|(i, t)| json!({"id": i, "text": t})));
    points.push(json!({"id": 101, "vector": [0, 1, 0, 0]}));
    let reply = upsert("docs", points).await;
    assert_error(&reply, 503, "unavailable", "shard 0");
    assert_eq!(*fake.calls.lock(), vec![texts.clone()]);

    // A text over the model's limit: 422 naming the point, found through /tokenize.
    let mut points = text_points(&["short", "short too", "one two three four five six seven"]);
    points.insert(0, json!({"id": 50, "vector": [1, 1, 1, 1]}));
    let reply = upsert("docs", points).await;
    assert_error(
        &reply,
        422,
        "unprocessable",
        "points[3]: the text has 9 tokens, over model mini's limit of 8",
    );

    *fake.mode.lock() = Mode::Overloaded;
    let reply = upsert("docs", text_points(&["a"])).await;
    assert_error(&reply, 429, "overloaded", "model mini is overloaded");
    assert_eq!(reply.2.as_deref(), Some("1"), "Retry-After");

    *fake.mode.lock() = Mode::Loading;
    let reply = upsert("docs", text_points(&["a"])).await;
    assert_error(
        &reply,
        503,
        "embedder_unavailable",
        "the embedder of model mini cannot embed right now",
    );

    *fake.mode.lock() = Mode::WrongDimension;
    let reply = upsert("docs", text_points(&["a"])).await;
    assert_error(&reply, 503, "embedder_unavailable", "returned 5-dimensional vectors");

    *fake.mode.lock() = Mode::Slow(Duration::from_secs(3));
    let reply = upsert("docs", text_points(&["a"])).await;
    assert_error(&reply, 503, "embedder_unavailable", "did not answer within 1000 ms");

    let metrics = r.metrics().await;
    for line in [
        // 10 + 3 + one per failure below.
        "vdb_router_embed_calls_total{model=\"mini\"} 6",
        "vdb_router_embed_texts_total{model=\"mini\"} 17",
        "vdb_router_embed_errors_total{model=\"mini\",reason=\"refused\"} 1",
        "vdb_router_embed_errors_total{model=\"mini\",reason=\"overloaded\"} 1",
        "vdb_router_embed_errors_total{model=\"mini\",reason=\"unavailable\"} 1",
        "vdb_router_embed_errors_total{model=\"mini\",reason=\"wrong_dimension\"} 1",
        "vdb_router_embed_errors_total{model=\"mini\",reason=\"timeout\"} 1",
        // Calls that answered vectors: the ten texts, the wrong dimension.
        "vdb_router_embed_duration_seconds_count{model=\"mini\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

#[tokio::test]
async fn large_upserts_are_cut_at_the_embedders_limit() {
    let (fake, url) = fake_embedder(MODEL, 4).await;
    let r = Router::start(vec![(MODEL.into(), url)], 1_000).await;
    r.collection("docs", Some(embedding(None, true))).await;
    let texts: Vec<String> = (0..10).map(|i| format!("text {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let reply =
        r.call("PUT", "/v1/collections/docs/points", json!({"points": text_points(&refs)})).await;
    assert_error(&reply, 503, "unavailable", "shard 0");
    let sizes: Vec<usize> = fake.calls.lock().iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![4, 4, 2]);
    assert_eq!(fake.calls.lock().concat(), texts);
    // truncate: true lets long texts through.
    let reply = r
        .call(
            "PUT",
            "/v1/collections/docs/points",
            json!({"points": text_points(&["a b c d e f g h i j"])}),
        )
        .await;
    assert_error(&reply, 503, "unavailable", "shard 0");
}

#[tokio::test]
async fn searches_by_text_embed_the_whole_batch_in_one_call() {
    let (fake, url) = fake_embedder(MODEL, 1024).await;
    let r = Router::start(vec![(MODEL.into(), url)], 1_000).await;
    r.collection("docs", Some(embedding(None, false))).await;
    r.collection("plain", None).await;

    // The only shard cannot answer; allow_partial lets the search finish, empty and flagged.
    let reply = r
        .call(
            "POST",
            "/v1/collections/docs/search",
            json!({"text": "a query", "k": 3, "allow_partial": true}),
        )
        .await;
    assert_eq!(reply.0, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.1["partial"], true);
    assert_eq!(reply.1["missing_shards"], json!([0]));
    assert_eq!(*fake.calls.lock(), vec![vec!["a query".to_string()]]);

    let batch = json!({"searches": [
        {"text": "one", "allow_partial": true},
        {"vector": [1, 0, 0, 0], "allow_partial": true},
        {"text": "two", "allow_partial": true},
        {"text": "three", "allow_partial": true},
    ]});
    let reply = r.call("POST", "/v1/collections/docs/search/batch", batch).await;
    assert_eq!(reply.0, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.1["results"].as_array().unwrap().len(), 4);
    assert_eq!(fake.calls.lock()[1], vec!["one", "two", "three"]);
    assert_eq!(fake.calls.lock().len(), 2);

    let reply = r
        .call(
            "POST",
            "/v1/collections/docs/search/batch",
            json!({"searches": [{"text": "a"}, {"text": "b", "vector": [1, 0, 0, 0]}]}),
        )
        .await;
    assert_error(&reply, 400, "invalid_argument", "searches[1]: give a vector or a text, not both");
    let reply = r.call("POST", "/v1/collections/docs/search", json!({"k": 3})).await;
    assert_error(&reply, 400, "invalid_argument", "give a vector or a text");
    let reply = r.call("POST", "/v1/collections/plain/search", json!({"text": "a"})).await;
    assert_error(&reply, 400, "invalid_argument", "collection plain has no embedding model");
    assert_eq!(fake.calls.lock().len(), 2, "bad searches reached the embedder");

    let long = "a b c d e f g h i";
    let reply = r
        .call(
            "POST",
            "/v1/collections/docs/search/batch",
            json!({"searches": [{"text": "a"}, {"vector": [1, 0, 0, 0]}, {"text": long}]}),
        )
        .await;
    assert_error(&reply, 422, "unprocessable", "searches[2]: the text has 11 tokens");
    let reply = r.call("POST", "/v1/collections/docs/search", json!({"text": long})).await;
    assert_error(&reply, 422, "unprocessable", "the query text: the text has 11 tokens");

    *fake.mode.lock() = Mode::Overloaded;
    let reply = r.call("POST", "/v1/collections/docs/search", json!({"text": "a"})).await;
    assert_error(&reply, 429, "overloaded", "overloaded");
    assert_eq!(reply.2.as_deref(), Some("1"), "Retry-After");
    // A search by vector needs no embedder.
    *fake.mode.lock() = Mode::Loading;
    let reply = r
        .call(
            "POST",
            "/v1/collections/docs/search",
            json!({"vector": [1, 0, 0, 0], "allow_partial": true}),
        )
        .await;
    assert_eq!(reply.0, StatusCode::OK, "{reply:?}");
}

#[tokio::test]
async fn an_unreachable_embedder_is_a_503_naming_the_model() {
    let down = closed_url().await;
    let r = Router::start(vec![(MODEL.into(), down)], 1_000).await;
    r.collection("docs", Some(embedding(None, false))).await;
    let reply =
        r.call("PUT", "/v1/collections/docs/points", json!({"points": text_points(&["a"])})).await;
    assert_error(&reply, 503, "embedder_unavailable", "model mini");
    let reply = r.call("POST", "/v1/collections/docs/search", json!({"text": "a"})).await;
    assert_error(&reply, 503, "embedder_unavailable", "model mini");
    // A collection whose model this router has no embedder for: the router is misconfigured.
    r.collection(
        "orphan",
        Some(EmbeddingConfig { model: "gone".into(), store_text: None, truncate: false }),
    )
    .await;
    let reply = r.call("POST", "/v1/collections/orphan/search", json!({"text": "a"})).await;
    assert_error(&reply, 503, "embedder_unavailable", "no embedder for model gone");
    // Vectors still go through (to the missing shard here).
    let reply = r
        .call(
            "PUT",
            "/v1/collections/docs/points",
            json!({"points": [{"id": 1, "vector": [1, 0, 0, 0]}]}),
        )
        .await;
    assert_error(&reply, 503, "unavailable", "shard 0");
}
