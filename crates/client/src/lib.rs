//! Typed async HTTP client for the shard node (`vdb-shard`), speaking the JSON wire types of
//! [`vdb_api`].
//!
//! Every endpoint is one method; errors come back as [`ClientError`], with the server's stable
//! [`ErrorCode`] when it sent its `{"error": {"code", "message"}}` body.
//!
//! ```no_run
//! use std::time::Duration;
//! use vdb_api::{Metric, Point, SearchRequest, ShardConfig, UpsertPoints};
//! use vdb_client::ShardClient;
//!
//! # async fn demo() -> Result<(), vdb_client::ClientError> {
//! let client = ShardClient::with_timeout("http://127.0.0.1:6334", Duration::from_secs(5))?;
//! let config: ShardConfig =
//!     serde_json::from_value(serde_json::json!({"collection": "docs", "dimension": 3,
//!                                              "metric": "cosine"}))
//!         .expect("valid config");
//! client.create_shard("docs-0", &config).await?;
//! let point = Point { id: 1.into(), vector: vec![0.1, 0.2, 0.3], payload: None };
//! client.upsert("docs-0", &UpsertPoints { points: vec![point] }).await?;
//! let hits = client.search("docs-0", &SearchRequest::new(vec![0.1, 0.2, 0.3], 5)).await?;
//! println!("{:?} via {:?}", hits.points, hits.plan);
//! # Ok(())
//! # }
//! ```

pub mod embedder;

use bytes::Bytes;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{Method, Response, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use vdb_api::{
    BatchSearchRequest, BatchSearchResult, CountPoints, CountResult, CreatePayloadIndex,
    DeletePayload, ErrorBody, ErrorCode, GetPoints, NodeStatus, Ownership, PointSelector, Records,
    ReplicateAck, ReplicationInfo, RoleAssignment, ScrollPoints, ScrollResult, SearchRequest,
    SearchResult, SetPayload, ShardConfig, ShardInfo, ShardList, SnapshotInfo, UpsertPoints,
    WalPage, WriteGuard, WriteResult,
};

/// The per-request timeout used by [`ShardClient::new`]: generous, because a large upsert or a
/// snapshot legitimately takes seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A request body serialized once, to send the same request to many nodes (a router's
/// fan-out) without formatting it again for each: cloning it shares the bytes.
#[derive(Clone, Debug)]
pub struct JsonBody(Bytes);

impl JsonBody {
    pub fn new<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        serde_json::to_vec(value)
            .map(|v| JsonBody(v.into()))
            .map_err(|e| ClientError::Encode(e.to_string()))
    }
}

/// What can go wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status. `code` comes from its JSON error body; when
    /// the body is not one (e.g. a proxy's or framework's plain-text 413), it is the code the
    /// status stands for in [`ErrorCode::http_status`].
    #[error("HTTP {status} {code}: {message}")]
    Api { status: u16, code: ErrorCode, message: String },
    /// The request could not be sent or its response not read (refused, reset, ...).
    #[error("transport: {0}")]
    Transport(reqwest::Error),
    /// No complete answer within the client's timeout.
    #[error("request timed out")]
    Timeout,
    /// The response was not what the endpoint promises.
    #[error("cannot decode response: {0}")]
    Decode(String),
    /// The request body could not be serialized (a type that JSON cannot represent).
    #[error("cannot encode request: {0}")]
    Encode(String),
    /// The client could not be set up (a base URL that is not `http://host:port`, ...).
    #[error("client configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            ClientError::Timeout
        } else {
            ClientError::Transport(e)
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A client for one shard node. Cheap to clone: clones share the connection pool.
#[derive(Clone, Debug)]
pub struct ShardClient {
    http: reqwest::Client,
    base: Url,
    /// How writes wait for replicas (the query of every request), when set.
    ack: Option<vdb_api::WriteParams>,
    /// How fresh reads must be (the query of every request), when set.
    read: Option<vdb_api::ReadParams>,
}

/// For endpoints without a request body.
const NO_BODY: Option<&()> = None;

impl ShardClient {
    /// A client for the node at `base_url` (e.g. `http://127.0.0.1:6334`) with
    /// [`DEFAULT_TIMEOUT`].
    pub fn new(base_url: &str) -> Result<Self> {
        Self::with_timeout(base_url, DEFAULT_TIMEOUT)
    }

    /// A client whose every request must complete (headers and body) within `timeout`.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Self> {
        let base = Url::parse(base_url)
            .map_err(|e| ClientError::Config(format!("base URL {base_url:?}: {e}")))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::Config(format!("base URL {base_url:?} is not http(s)")));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(ShardClient { http, base, ack: None, read: None })
    }

    /// The same client, sending `params` with its writes: how long they wait for replicas.
    pub fn with_ack(&self, params: vdb_api::WriteParams) -> ShardClient {
        ShardClient { ack: Some(params), ..self.clone() }
    }

    /// The same client, sending `params` with its reads: how fresh they must be.
    pub fn with_read(&self, params: vdb_api::ReadParams) -> ShardClient {
        ShardClient { read: Some(params), ..self.clone() }
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `GET /healthz`: the process is up.
    pub async fn health(&self) -> Result<()> {
        self.send(Method::GET, &["healthz"], NO_BODY).await.map(drop)
    }

    /// `GET /readyz`: true when serving, false while recovering (503); other failures are
    /// errors.
    pub async fn ready(&self) -> Result<bool> {
        match self.send(Method::GET, &["readyz"], NO_BODY).await {
            Ok(_) => Ok(true),
            Err(ClientError::Api { status: 503, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET /metrics`: Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String> {
        Ok(self.send(Method::GET, &["metrics"], NO_BODY).await?.text().await?)
    }

    pub async fn status(&self) -> Result<NodeStatus> {
        self.json(Method::GET, &["v1", "status"], NO_BODY).await
    }

    pub async fn list_shards(&self) -> Result<ShardList> {
        self.json(Method::GET, &["v1", "shards"], NO_BODY).await
    }

    pub async fn create_shard(&self, name: &str, config: &ShardConfig) -> Result<ShardInfo> {
        self.json(Method::PUT, &["v1", "shards", name], Some(config)).await
    }

    pub async fn get_shard(&self, name: &str) -> Result<ShardInfo> {
        self.json(Method::GET, &["v1", "shards", name], NO_BODY).await
    }

    pub async fn drop_shard(&self, name: &str) -> Result<()> {
        self.send(Method::DELETE, &["v1", "shards", name], NO_BODY).await.map(drop)
    }

    pub async fn upsert(&self, name: &str, req: &UpsertPoints) -> Result<WriteResult> {
        self.json(Method::PUT, &["v1", "shards", name, "points"], Some(req)).await
    }

    pub async fn get_points(&self, name: &str, req: &GetPoints) -> Result<Records> {
        self.json(Method::POST, &["v1", "shards", name, "points", "get"], Some(req)).await
    }

    pub async fn delete_points(&self, name: &str, req: &PointSelector) -> Result<WriteResult> {
        self.json(Method::POST, &["v1", "shards", name, "points", "delete"], Some(req)).await
    }

    /// Merges the given keys into the selected points' payloads.
    pub async fn set_payload(&self, name: &str, req: &SetPayload) -> Result<WriteResult> {
        self.json(Method::POST, &["v1", "shards", name, "points", "payload"], Some(req)).await
    }

    /// Replaces the selected points' whole payloads.
    pub async fn overwrite_payload(&self, name: &str, req: &SetPayload) -> Result<WriteResult> {
        self.json(Method::PUT, &["v1", "shards", name, "points", "payload"], Some(req)).await
    }

    pub async fn delete_payload(&self, name: &str, req: &DeletePayload) -> Result<WriteResult> {
        let path = ["v1", "shards", name, "points", "payload", "delete"];
        self.json(Method::POST, &path, Some(req)).await
    }

    pub async fn count(&self, name: &str, req: &CountPoints) -> Result<CountResult> {
        self.json(Method::POST, &["v1", "shards", name, "points", "count"], Some(req)).await
    }

    pub async fn scroll(&self, name: &str, req: &ScrollPoints) -> Result<ScrollResult> {
        self.json(Method::POST, &["v1", "shards", name, "points", "scroll"], Some(req)).await
    }

    pub async fn search(&self, name: &str, req: &SearchRequest) -> Result<SearchResult> {
        self.json(Method::POST, &["v1", "shards", name, "search"], Some(req)).await
    }

    pub async fn search_batch(
        &self,
        name: &str,
        req: &BatchSearchRequest,
    ) -> Result<BatchSearchResult> {
        self.search_batch_body(name, &JsonBody::new(req)?).await
    }

    /// [`Self::search_batch`] with a [`BatchSearchRequest`] serialized beforehand.
    pub async fn search_batch_body(
        &self,
        name: &str,
        body: &JsonBody,
    ) -> Result<BatchSearchResult> {
        let path = ["v1", "shards", name, "search", "batch"];
        let bytes = self.send_body(Method::POST, &path, Some(body)).await?.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn create_index(&self, name: &str, req: &CreatePayloadIndex) -> Result<ShardInfo> {
        self.json(Method::PUT, &["v1", "shards", name, "index"], Some(req)).await
    }

    pub async fn drop_index(&self, name: &str, field: &str) -> Result<()> {
        self.send(Method::DELETE, &["v1", "shards", name, "index", field], NO_BODY).await.map(drop)
    }

    pub async fn snapshot(&self, name: &str) -> Result<SnapshotInfo> {
        self.json(Method::POST, &["v1", "shards", name, "snapshot"], NO_BODY).await
    }

    /// `GET /v1/shards/{name}/wal`: up to `limit` (server default 1000) WAL records after LSN
    /// `after`. A log truncated past `after + 1` answers [`ErrorCode::WalTruncated`] (410).
    pub async fn wal(&self, name: &str, after: u64, limit: Option<usize>) -> Result<WalPage> {
        let mut url = self.url(&["v1", "shards", name, "wal"])?;
        url.query_pairs_mut().append_pair("after", &after.to_string());
        if let Some(limit) = limit {
            url.query_pairs_mut().append_pair("limit", &limit.to_string());
        }
        let response = self.http.get(url).send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if !status.is_success() {
            return Err(api_error(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `PUT /v1/shards/{name}/guard`: installs (or replaces) the shard's write guard.
    pub async fn install_guard(&self, name: &str, guard: &WriteGuard) -> Result<ShardInfo> {
        self.json(Method::PUT, &["v1", "shards", name, "guard"], Some(guard)).await
    }

    /// `DELETE /v1/shards/{name}/guard`: removes the write guard (fine when there is none).
    pub async fn remove_guard(&self, name: &str) -> Result<()> {
        self.send(Method::DELETE, &["v1", "shards", name, "guard"], NO_BODY).await.map(drop)
    }

    /// `POST /v1/shards/{name}/points/delete_not_owned`: deletes every point the shard does not
    /// own under `ownership`, as one write.
    pub async fn delete_not_owned(&self, name: &str, ownership: &Ownership) -> Result<WriteResult> {
        let path = ["v1", "shards", name, "points", "delete_not_owned"];
        self.json(Method::POST, &path, Some(ownership)).await
    }

    /// `PUT /v1/shards/{name}/role`: assigns the copy's role (and renews a primary's lease).
    pub async fn assign_role(&self, name: &str, role: &RoleAssignment) -> Result<ReplicationInfo> {
        self.json(Method::PUT, &["v1", "shards", name, "role"], Some(role)).await
    }

    /// `POST /v1/shards/{name}/replicate`: a batch of the primary's log (binary WAL frames)
    /// continuing the record (`prev_lsn`, `prev_epoch`).
    pub async fn replicate(
        &self,
        name: &str,
        epoch: u64,
        prev_lsn: u64,
        prev_epoch: u64,
        frames: Vec<u8>,
    ) -> Result<ReplicateAck> {
        let query = [("epoch", epoch), ("prev_lsn", prev_lsn), ("prev_epoch", prev_epoch)];
        self.bytes(Method::POST, &["v1", "shards", name, "replicate"], &query, frames).await
    }

    /// `PUT /v1/shards/{name}/replica/snapshot`: replaces a replica's data by a primary's
    /// snapshot (the body of `vdb_shard::snapshot::Transfer`).
    pub async fn install_replica_snapshot(
        &self,
        name: &str,
        epoch: u64,
        snapshot: Vec<u8>,
    ) -> Result<ReplicateAck> {
        let path = ["v1", "shards", name, "replica", "snapshot"];
        self.bytes(Method::PUT, &path, &[("epoch", epoch)], snapshot).await
    }

    /// Sends a binary body with query parameters and decodes the JSON answer.
    async fn bytes<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, u64)],
        body: Vec<u8>,
    ) -> Result<T> {
        let mut url = self.url(path)?;
        for (k, v) in query {
            url.query_pairs_mut().append_pair(k, &v.to_string());
        }
        let response = self
            .http
            .request(method, url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if !status.is_success() {
            return Err(api_error(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `base` + the percent-encoded path segments.
    fn url(&self, path: &[&str]) -> Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| ClientError::Config("base URL cannot take a path".into()))?
            .pop_if_empty()
            .extend(path);
        Ok(url)
    }

    /// Sends a request and decodes its JSON answer.
    async fn json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &[&str],
        body: Option<&B>,
    ) -> Result<T> {
        let bytes = self.send(method, path, body).await?.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Sends a request; a non-2xx answer becomes [`ClientError::Api`]. Path segments are
    /// percent-encoded, so names and dotted field paths go through as given.
    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &[&str],
        body: Option<&B>,
    ) -> Result<Response> {
        let body = body.map(JsonBody::new).transpose()?;
        self.send_body(method, path, body.as_ref()).await
    }

    /// [`Self::send`] with the body already serialized.
    async fn send_body(
        &self,
        method: Method,
        path: &[&str],
        body: Option<&JsonBody>,
    ) -> Result<Response> {
        let mut request = self.http.request(method, self.url(path)?);
        if let Some(ack) = &self.ack {
            request = request.query(ack);
        }
        if let Some(read) = &self.read {
            request = request.query(read);
        }
        if let Some(JsonBody(bytes)) = body {
            request = request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(bytes.clone());
        }
        let response = request.send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.bytes().await?;
        Err(api_error(status.as_u16(), &bytes))
    }
}

/// The error for a non-2xx answer: the server's JSON error body when there is one, else the
/// code the status stands for with the body's text as the message.
fn api_error(status: u16, body: &[u8]) -> ClientError {
    if let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) {
        return ClientError::Api { status, code: error.code, message: error.message };
    }
    let message = String::from_utf8_lossy(body).trim().to_string();
    match code_for_status(status) {
        Some(code) => ClientError::Api { status, code, message },
        None => ClientError::Decode(format!("HTTP {status} without an error body: {message}")),
    }
}

/// The first code (in declaration order, so the most generic one) that maps to `status`.
fn code_for_status(status: u16) -> Option<ErrorCode> {
    ErrorCode::ALL.into_iter().find(|c| c.http_status() == status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_params_travel_as_the_query_the_shard_parses() {
        let c = ShardClient::new("http://127.0.0.1:1").unwrap();
        let semi = vdb_api::WriteParams {
            consistency: vdb_api::AckMode::SemiSync,
            acks: 2,
            timeout_ms: Some(500),
        };
        let request = c.http.get(c.url(&["v1"]).unwrap()).query(&semi).build().unwrap();
        let query = request.url().query().unwrap().to_string();
        assert_eq!(query, "consistency=semi_sync&acks=2&timeout_ms=500");
        let back: vdb_api::WriteParams = serde_json::from_value(serde_json::json!(
            {"consistency": "semi_sync", "acks": 2, "timeout_ms": 500}))
        .unwrap();
        assert_eq!(back, semi);
    }

    #[test]
    fn error_bodies_become_api_errors() {
        let body = br#"{"error":{"code":"dimension_mismatch","message":"expected 384"}}"#;
        match api_error(400, body) {
            ClientError::Api { status, code, message } => {
                assert_eq!((status, code), (400, ErrorCode::DimensionMismatch));
                assert_eq!(message, "expected 384");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn plain_text_errors_fall_back_to_the_status() {
        let e = api_error(413, b"length limit exceeded");
        assert_eq!(e.code(), Some(ErrorCode::PayloadTooLarge));
        assert_eq!(e.status(), Some(413));
        assert!(matches!(api_error(405, b""), ClientError::Decode(_)));
    }

    #[test]
    fn resharding_codes_map_from_their_statuses() {
        assert_eq!(api_error(410, b"gone").code(), Some(ErrorCode::WalTruncated));
        let body = br#"{"error":{"code":"wrong_shard","message":"point 3 belongs to shard 1"}}"#;
        assert_eq!(api_error(409, body).code(), Some(ErrorCode::WrongShard));
        assert_eq!(api_error(409, b"").code(), Some(ErrorCode::AlreadyExists));
    }

    #[test]
    fn bad_base_urls_are_refused() {
        assert!(matches!(ShardClient::new("not a url"), Err(ClientError::Config(_))));
        assert!(matches!(ShardClient::new("mailto:x@y"), Err(ClientError::Config(_))));
        assert!(ShardClient::new("http://127.0.0.1:6334/").is_ok());
    }

    /// Serves one connection with a canned `response` and hands back the request head, so a
    /// test sees exactly what the client sent without a real shard.
    async fn canned_server(response: String) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            let end = loop {
                if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "client closed before sending a full head");
                head.extend_from_slice(&buf[..n]);
            };
            // The body too, when the request says how long it is.
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            let length = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            while head.len() < end + length {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "client closed before sending its body");
                head.extend_from_slice(&buf[..n]);
            }
            socket.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&head).into_owned()
        });
        (base, task)
    }

    #[tokio::test]
    async fn sends_a_body_serialized_beforehand_as_json() {
        let answer = r#"{"results":[]}"#;
        let (base, server) = canned_server(format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        ))
        .await;
        let ask = BatchSearchRequest { searches: Vec::new() };
        let body = JsonBody::new(&ask).unwrap();
        let client = ShardClient::new(&base).unwrap();
        let result = client.search_batch_body("s", &body.clone()).await.unwrap();
        assert!(result.results.is_empty());
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /v1/shards/s/search/batch "), "{request}");
        assert!(request.to_ascii_lowercase().contains("content-type: application/json"));
        assert!(request.ends_with(&serde_json::to_string(&ask).unwrap()), "{request}");
    }

    #[tokio::test]
    async fn decodes_answers_and_encodes_path_segments() {
        let (base, server) = canned_server(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 14\r\n\r\n\
             {\"count\": 42}\n"
                .to_string(),
        )
        .await;
        let client = ShardClient::new(&base).unwrap();
        let count = client.count("a b", &CountPoints::default()).await.unwrap();
        assert_eq!(count.count, 42);
        let head = server.await.unwrap();
        assert!(head.starts_with("POST /v1/shards/a%20b/points/count HTTP/1.1"), "{head}");
    }

    #[tokio::test]
    async fn json_error_bodies_reach_the_caller() {
        let body = r#"{"error":{"code":"not_found","message":"no shard x"}}"#;
        let response = format!(
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (base, _server) = canned_server(response).await;
        let err = ShardClient::new(&base).unwrap().get_shard("x").await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Api { status: 404, code: ErrorCode::NotFound, message }
                if message == "no shard x"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn slow_servers_time_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        // Accepts and then never answers.
        let _hold = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(socket);
        });
        let client = ShardClient::with_timeout(&base, Duration::from_millis(200)).unwrap();
        assert!(matches!(client.status().await, Err(ClientError::Timeout)));
    }

    #[tokio::test]
    async fn refused_connections_are_transport_errors() {
        // Port 9 on localhost (discard) is essentially never open in test environments.
        let client =
            ShardClient::with_timeout("http://127.0.0.1:9", Duration::from_secs(2)).unwrap();
        let err = client.health().await.unwrap_err();
        assert!(matches!(err, ClientError::Transport(_) | ClientError::Timeout), "{err:?}");
    }
}
