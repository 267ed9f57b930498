//! The embedder's HTTP API in-process on a port-0 listener, with the fake model (no libtorch or
//! TensorFlow needed): every endpoint, the error statuses, 429 when the queue is full,
//! readiness, and that concurrent requests are batched together. The typed client in
//! `vdb-client` is exercised against it too.

use serde_json::{json, Value};
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vdb_api::embed::Pooling;
use vdb_client::embedder::{EmbedError, EmbedderClient};
use vdb_embedder::backend::fake::{Fake, Probe};
use vdb_embedder::config::{BackendKind, Config};
use vdb_embedder::model::Manifest;
use vdb_embedder::tokenize::{test_tokenizer, TextTokenizer};
use vdb_embedder::Embedder;

const DIM: usize = 8;
const MAX_TOKENS: usize = 16;

struct Server {
    url: String,
    probe: Arc<Probe>,
    embedder: Arc<Embedder>,
    http: reqwest::Client,
}

impl Server {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.post(format!("{}{path}", self.url)).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self.http.get(format!("{}{path}", self.url)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    fn client(&self) -> EmbedderClient {
        EmbedderClient::new(&self.url).unwrap()
    }
}

/// Starts a server; `hold` keeps the fake model's warm-up waiting (not ready) until opened.
async fn start(tweak: impl FnOnce(&mut Config), hold: bool) -> Server {
    let mut config = Config::for_model("/nonexistent", BackendKind::Torch);
    config.max_wait_ms = 5.0;
    tweak(&mut config);
    let manifest = Manifest {
        name: "fake-minilm".into(),
        max_input_tokens: MAX_TOKENS,
        pooling: Pooling::Mean,
        normalize: true,
    };
    let tokenizer = TextTokenizer::new(test_tokenizer(), MAX_TOKENS).unwrap();
    let probe = Arc::new(Probe::default());
    if hold {
        probe.close();
    }
    let p = probe.clone();
    let factory = Box::new(move || Ok(Fake::loaded(DIM, p)));
    let (embedder, ready) = Embedder::from_parts(config, manifest, tokenizer, factory).unwrap();
    if !hold {
        ready.await.unwrap().unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, vdb_embedder::app(embedder.clone())).into_future());
    Server {
        url: url.trim_end_matches('/').to_string(),
        probe,
        embedder,
        http: reqwest::Client::new(),
    }
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn vectors(v: &Value) -> Vec<Vec<f32>> {
    serde_json::from_value(v.clone()).unwrap()
}

#[tokio::test]
async fn embeds_one_or_many_in_order() {
    let s = start(|_| {}, false).await;
    let (status, one) = s.post("/embed", json!({"inputs": "the vector database"})).await;
    assert_eq!(status, 200, "{one}");
    let one = vectors(&one);
    assert_eq!((one.len(), one[0].len()), (1, DIM));
    assert!((norm(&one[0]) - 1.0).abs() < 1e-5);

    let texts = ["debian package", "the vector database", "a", "embed text!"];
    let (status, many) = s.post("/embed", json!({"inputs": texts})).await;
    assert_eq!(status, 200);
    let many = vectors(&many);
    assert_eq!(many.len(), 4);
    // Padding in a batch does not change a text's vector.
    assert_eq!(many[1], one[0]);
    assert_ne!(many[0], many[2]);

    let (_, raw) = s.post("/embed", json!({"inputs": ["a"], "normalize": false})).await;
    assert!((norm(&vectors(&raw)[0]) - 1.0).abs() > 1e-3, "unnormalised when asked");
}

#[tokio::test]
async fn openai_compatible_endpoint() {
    let s = start(|_| {}, false).await;
    let (status, r) =
        s.post("/v1/embeddings", json!({"input": ["a", "debian"], "model": "m"})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["object"], "list");
    assert_eq!(r["model"], "m");
    assert_eq!(r["data"][1]["index"], 1);
    assert_eq!(r["data"][0]["object"], "embedding");
    assert_eq!(r["usage"]["prompt_tokens"], 6, "[CLS] x [SEP] twice");
    let floats: Vec<f32> = serde_json::from_value(r["data"][0]["embedding"].clone()).unwrap();

    let (_, b) = s.post("/v1/embeddings", json!({"input": "a", "encoding_format": "base64"})).await;
    assert_eq!(b["model"], "fake-minilm");
    let encoded = b["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(encoded, vdb_embedder::http::base64_f32(&floats));

    // Long text is truncated by default here, refused when asked not to.
    let long = "the ".repeat(40);
    assert_eq!(s.post("/v1/embeddings", json!({"input": long})).await.0, 200);
    let (status, e) = s.post("/v1/embeddings", json!({"input": long, "truncate": false})).await;
    assert_eq!((status, e["error"]["code"].as_str()), (422, Some("unprocessable")));
}

#[tokio::test]
async fn tokenize_and_info() {
    let s = start(|c| c.max_batch_size = 7, false).await;
    let (status, t) = s.post("/tokenize", json!({"inputs": ["Debian!"]})).await;
    assert_eq!(status, 200);
    let texts: Vec<&str> =
        t[0].as_array().unwrap().iter().map(|t| t["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["[CLS]", "debian", "!", "[SEP]"]);
    let (_, bare) = s.post("/tokenize", json!({"inputs": "a", "add_special_tokens": false})).await;
    assert_eq!(bare[0].as_array().unwrap().len(), 1);

    let info = s.client().info().await.unwrap();
    assert_eq!(
        (info.model.as_str(), info.dimension, info.max_input_tokens),
        ("fake-minilm", DIM, MAX_TOKENS)
    );
    assert_eq!((info.device.as_str(), info.dtype.as_str(), info.max_batch_size), ("cpu", "f32", 7));
    assert_eq!(s.get("/healthz").await.0, 200);
    assert_eq!(s.get("/readyz").await.0, 200);
}

#[tokio::test]
async fn bad_input_gets_json_errors() {
    let s = start(
        |c| {
            c.max_body_bytes = 2048;
            c.max_client_batch = 3;
        },
        false,
    )
    .await;
    let long = "the ".repeat(40);
    let cases = [
        (json!({"inputs": long}), 422, "unprocessable"),
        (json!({"inputs": []}), 400, "invalid_argument"),
        (json!({"inputs": ["a", "a", "a", "a"]}), 400, "invalid_argument"),
        (json!({"inputs": "a", "colour": 1}), 400, "malformed_json"),
        (json!({"text": "a"}), 400, "malformed_json"),
        (json!({"inputs": "x".repeat(4000)}), 413, "payload_too_large"),
    ];
    for (body, status, code) in cases {
        let (got, e) = s.post("/embed", body.clone()).await;
        assert_eq!((got, e["error"]["code"].as_str()), (status, Some(code)), "{body}");
    }
    assert_eq!(s.post("/embed", json!({"inputs": long, "truncate": true})).await.0, 200);
    let r = s
        .http
        .post(format!("{}/embed", s.url))
        .body("{not json")
        .header("content-type", "application/json");
    assert_eq!(r.send().await.unwrap().status(), 400);
    assert_eq!(s.get("/nope").await.0, 404);

    // The typed client tells refused input from other failures.
    let err = s.client().embed(&[long.as_str()], false).await.unwrap_err();
    assert!(matches!(err, EmbedError::Refused { .. }), "{err:?}");
    assert_eq!(s.client().embed(&[long.as_str()], true).await.unwrap().len(), 1);
}

#[tokio::test]
async fn full_queue_answers_429_and_recovers() {
    let s = start(|c| c.max_queue = 4, false).await;
    s.probe.close();
    let first = tokio::spawn({
        let c = s.client();
        async move { c.embed(&["a"], false).await }
    });
    wait_for(|| s.probe.held() == 1).await;
    // The model is stuck on `first`; fill the queue to its bound.
    let second = tokio::spawn({
        let c = s.client();
        async move { c.embed(&["a", "debian", "text", "the"], false).await }
    });
    wait_for(|| s.embedder.batcher.queued() == 4).await;
    let r =
        s.http.post(format!("{}/embed", s.url)).json(&json!({"inputs": "a"})).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(matches!(s.client().embed(&["a"], false).await, Err(EmbedError::Overloaded)));
    s.probe.open();
    assert_eq!(first.await.unwrap().unwrap().len(), 1);
    assert_eq!(second.await.unwrap().unwrap().len(), 4);
    assert_eq!(s.client().embed(&["a"], false).await.unwrap().len(), 1);
    let (_, metrics) = s.get("/metrics").await;
    assert!(
        metrics.contains("vdb_embedder_rejected_requests_total{reason=\"queue_full\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn concurrent_requests_share_batches() {
    let s = start(|c| c.max_batch_size = 6, false).await;
    s.probe.close();
    let c = s.client();
    let blocker = tokio::spawn({
        let c = c.clone();
        async move { c.embed(&["a"], false).await }
    });
    wait_for(|| s.probe.held() == 1).await;
    let texts = ["a", "the vector", "debian", "text", "embed", "database", "the", "package", "a a"];
    let mut tasks = Vec::new();
    for t in texts {
        let c = c.clone();
        tasks.push(tokio::spawn(async move { c.embed(&[t], false).await }));
    }
    wait_for(|| s.embedder.batcher.queued() == texts.len()).await;
    s.probe.open();
    blocker.await.unwrap().unwrap();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().len(), 1);
    }
    let batches = s.probe.batches.lock().clone();
    // warm-up, the blocker alone, then nine queued texts in batches of at most six.
    let mut sizes: Vec<usize> = batches.iter().map(|b| b.0).collect();
    sizes[2..].sort_unstable();
    assert_eq!(sizes, vec![1, 1, 3, 6], "{batches:?}");
    let (_, metrics) = s.get("/metrics").await;
    for name in [
        "vdb_embedder_batch_size_bucket",
        "vdb_embedder_queue_duration_seconds_bucket",
        "vdb_embedder_inference_duration_seconds_bucket",
        "vdb_embedder_tokens_total",
        "vdb_embedder_http_requests_total",
        "vdb_embedder_ready 1",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
}

#[tokio::test]
async fn not_ready_until_warmed_up() {
    let s = start(|_| {}, true).await;
    assert_eq!(s.get("/healthz").await.0, 200);
    assert_eq!(s.get("/readyz").await.0, 503);
    assert_eq!(s.get("/info").await.0, 503);
    let (status, e) = s.post("/embed", json!({"inputs": "a"})).await;
    assert_eq!((status, e["error"]["code"].as_str()), (503, Some("unavailable")));
    assert!(!s.client().ready().await.unwrap());
    s.probe.open();
    wait_for(|| s.embedder.is_ready()).await;
    assert!(s.client().ready().await.unwrap());
    assert_eq!(s.post("/embed", json!({"inputs": "a"})).await.0, 200);
}

#[tokio::test]
async fn client_reports_a_down_server_as_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = EmbedderClient::new(&url).unwrap().embed(&["a"], true).await.unwrap_err();
    assert!(matches!(err, EmbedError::Unavailable(_)) && err.is_retryable(), "{err:?}");
    assert!(EmbedderClient::new("not a url").is_err());
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not reached in 10 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
