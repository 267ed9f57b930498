//! The shard node's HTTP API: thin handlers that extract, run one node/shard function on the
//! blocking pool, and map the result. `openapi/shard.json` is generated from the annotations
//! here (see [`ApiDoc`]).

use crate::error::ShardError;
use crate::node::Node;
use crate::ops::PayloadMode;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi;
use vdb_api::*;
use vdb_common::{ApiError, Json};

type Node_ = State<Arc<Node>>;
type ApiResult<T> = Result<Json<T>, ApiError>;
type WriteReply<T> = Result<Json<T>, WriteError>;

/// The whole API, with metrics and the body limit applied.
pub fn app(node: Arc<Node>) -> Router {
    let metrics = node.metrics.http.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/v1/status", get(status))
        .route("/v1/shards", get(list_shards))
        .route("/v1/shards/{name}", put(create_shard).get(describe_shard).delete(drop_shard))
        .route("/v1/shards/{name}/points", put(upsert))
        .route("/v1/shards/{name}/points/get", post(get_points))
        .route("/v1/shards/{name}/points/delete", post(delete_points))
        .route("/v1/shards/{name}/points/delete_not_owned", post(delete_not_owned))
        .route("/v1/shards/{name}/points/payload", post(set_payload).put(overwrite_payload))
        .route("/v1/shards/{name}/points/payload/delete", post(delete_payload))
        .route("/v1/shards/{name}/points/count", post(count))
        .route("/v1/shards/{name}/points/scroll", post(scroll))
        .route("/v1/shards/{name}/search", post(search))
        .route("/v1/shards/{name}/search/batch", post(search_batch))
        .route("/v1/shards/{name}/index", put(create_index))
        .route("/v1/shards/{name}/index/{field}", axum::routing::delete(drop_index))
        .route("/v1/shards/{name}/snapshot", post(snapshot))
        .route("/v1/shards/{name}/wal", get(wal))
        .route("/v1/shards/{name}/guard", put(install_guard).delete(remove_guard))
        .route("/v1/shards/{name}/role", put(assign_role))
        .route("/v1/shards/{name}/replicate", post(replicate))
        .route(
            "/v1/shards/{name}/replica/snapshot",
            put(install_replica_snapshot).layer(DefaultBodyLimit::disable()),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(metrics, vdb_common::metrics::track))
        .layer(DefaultBodyLimit::max(node.config.max_body_bytes))
        .with_state(node)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the process is alive")))]
async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "every local shard has recovered"),
    (status = 503, description = "still recovering", body = ErrorBody)))]
async fn readyz(State(node): Node_) -> Response {
    if node.is_ready() {
        "ready".into_response()
    } else {
        ApiError::unavailable("recovering local shards").into_response()
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
async fn metrics_text(State(node): Node_) -> Response {
    vdb_common::metrics::render(&node.metrics.registry)
}

#[utoipa::path(get, path = "/v1/status", tag = "node", responses((status = 200, body = NodeStatus)))]
async fn status(State(node): Node_) -> Json<NodeStatus> {
    Json(node.status())
}

#[utoipa::path(get, path = "/v1/shards", tag = "shards", responses((status = 200, body = ShardList)))]
async fn list_shards(State(node): Node_) -> ApiResult<ShardList> {
    node.blocking(|n| Ok(ShardList { shards: n.list() })).await.map(Json)
}

#[utoipa::path(put, path = "/v1/shards/{name}", tag = "shards", request_body = ShardConfig,
    params(("name" = String, Path, description = "local shard name")),
    responses((status = 201, body = ShardInfo), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_shard(
    State(node): Node_,
    Path(name): Path<String>,
    Json(config): Json<ShardConfig>,
) -> Result<(StatusCode, Json<ShardInfo>), ApiError> {
    let info = node.blocking(move |n| n.create_shard(&name, config)).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

#[utoipa::path(get, path = "/v1/shards/{name}", tag = "shards",
    params(("name" = String, Path, description = "local shard name")),
    responses((status = 200, body = ShardInfo), (status = 404, body = ErrorBody)))]
async fn describe_shard(State(node): Node_, Path(name): Path<String>) -> ApiResult<ShardInfo> {
    node.blocking(move |n| Ok(n.describe(&*n.shard(&name)?))).await.map(Json)
}

#[utoipa::path(delete, path = "/v1/shards/{name}", tag = "shards",
    params(("name" = String, Path, description = "local shard name")),
    responses((status = 204, description = "dropped with its data"), (status = 404, body = ErrorBody)))]
async fn drop_shard(State(node): Node_, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    node.blocking(move |n| n.drop_shard(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The error answer of a write. A write refused because its points are being handed off
/// (a frozen write guard) also carries `Retry-After: 0`: retrying through the router at once
/// reaches the new owner as soon as the source is cut over.
struct WriteError {
    error: ApiError,
    retry_now: bool,
}

impl From<ApiError> for WriteError {
    fn from(error: ApiError) -> Self {
        WriteError { error, retry_now: false }
    }
}

impl IntoResponse for WriteError {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        if self.retry_now {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
        }
        response
    }
}

/// Default of `timeout_ms` on writes that wait for replicas.
const DEFAULT_ACK_TIMEOUT_MS: u64 = 5_000;

/// Runs a write on the named shard, lets the node schedule a snapshot after it, and answers
/// once the replicas `params` asks for confirmed it (see [`crate::replication`]).
async fn write(
    node: Arc<Node>,
    name: String,
    params: Result<Query<WriteParams>, QueryRejection>,
    op: impl FnOnce(&crate::shard::LocalShard) -> crate::error::Result<WriteResult> + Send + 'static,
) -> WriteReply<WriteResult> {
    let Query(params) = params.map_err(|e| ApiError::invalid(e.body_text()))?;
    // Flow control admits the write into the log only once the replicas keep up. The shard
    // is looked up again below: the wait may outlast it (dropped, node shutting down), and a
    // missing one answers there.
    if let Ok(shard) = node.shard(&name) {
        let c = &node.config;
        let (target, max_wait) = (c.flow_control_lag_ms, c.flow_control_max_wait_ms);
        shard.flow_control(Duration::from_millis(target), Duration::from_millis(max_wait)).await;
    }
    let (shard, out) = node
        .blocking(move |n| {
            let shard = n.writable_shard(&name)?;
            shard.repl.check_quorum(params.consistency, params.acks)?;
            match op(&shard) {
                Ok(out) => {
                    n.after_write(&shard);
                    Ok((shard, Ok(out)))
                }
                Err(ShardError::HandingOff(m)) => Ok((shard, Err(m))),
                Err(e) => Err(e),
            }
        })
        .await?;
    let out = out.map_err(|m| WriteError { error: ApiError::unavailable(m), retry_now: true })?;
    if out.affected > 0 {
        let timeout = Duration::from_millis(params.timeout_ms.unwrap_or(DEFAULT_ACK_TIMEOUT_MS));
        shard
            .await_acks(out.lsn, params.consistency, params.acks, timeout)
            .await
            .map_err(ApiError::from)?;
    }
    Ok(Json(out))
}

/// How long a strong read waits for in-sync replicas to confirm what it read.
const STRONG_READ_WAIT: Duration = Duration::from_secs(2);

/// Runs a read on the named shard, on the node's read threads.
///
/// A `strong` read is served only by a primary that may acknowledge writes now (its lease
/// holds): a copy that lost its lease, or was deposed without knowing it yet, could miss
/// writes a newer primary took. And it answers only once every in-sync replica confirmed the
/// log up to where the read stood, as a `sync` write would: a write the read saw that no
/// replica had yet could be lost by a failover, and a strong read must never show a value
/// that is rolled back afterwards.
///
/// A `quorum` read is served by any copy, with the answer's `position` saying where its log
/// stood before the read began (so the answer holds at least that much).
async fn read<T: Positioned + Send + 'static>(
    node: Arc<Node>,
    name: String,
    params: Result<Query<ReadParams>, QueryRejection>,
    op: impl FnOnce(&Node, &crate::shard::LocalShard) -> crate::error::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let Query(params) = params.map_err(|e| ApiError::invalid(e.body_text()))?;
    let strong = params.consistency == ReadConsistency::Strong;
    let quorum = params.consistency == ReadConsistency::Quorum;
    let (shard, out) = node
        .read(move |n| {
            let shard = n.shard(&name)?;
            if strong {
                shard.repl.check_writable()?;
            }
            let position = quorum.then(|| shard.log_end());
            let mut out = op(n, &shard)?;
            out.set_position(position);
            Ok((shard, out))
        })
        .await?;
    if strong {
        let lsn = shard.last_lsn();
        shard.await_acks(lsn, AckMode::Sync, 0, STRONG_READ_WAIT).await.map_err(|e| match e {
            ShardError::ReplicationTimeout(_) => ApiError::from(ShardError::Unavailable(format!(
                "in-sync replicas did not confirm the log up to lsn {lsn} within {} ms; \
                 a strong read answers only then",
                STRONG_READ_WAIT.as_millis()
            ))),
            e => ApiError::from(e),
        })?;
    }
    Ok(Json(out))
}

/// Inserts or replaces a batch of points, all or nothing.
///
/// While a write guard is installed (`PUT /v1/shards/{name}/guard`), writes naming points owned
/// by another shard are refused whole (409 `wrong_shard`), writes by filter skip such points,
/// and a frozen guard refuses points being handed off (503, `Retry-After: 0`).
#[utoipa::path(put, path = "/v1/shards/{name}/points", tag = "points", request_body = UpsertPoints,
    params(("name" = String, Path), WriteParams),
    responses((status = 200, body = WriteResult), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody, description = "wrong_shard: a write guard is installed and a point named is owned by another shard"),
    (status = 503, body = ErrorBody, description = "unavailable: a frozen write guard refuses points being handed off (Retry-After: 0)")))]
async fn upsert(
    State(node): Node_,
    Path(name): Path<String>,
    params: Result<Query<WriteParams>, QueryRejection>,
    Json(req): Json<UpsertPoints>,
) -> WriteReply<WriteResult> {
    write(node, name, params, move |s| s.upsert(req.points)).await
}

#[utoipa::path(post, path = "/v1/shards/{name}/points/get", tag = "points", request_body = GetPoints,
    params(("name" = String, Path), ReadParams), responses((status = 200, body = Records)))]
async fn get_points(
    State(node): Node_,
    Path(name): Path<String>,
    params: Result<Query<ReadParams>, QueryRejection>,
    Json(req): Json<GetPoints>,
) -> ApiResult<Records> {
    read(node, name, params, move |_, s| s.get(&req)).await
}

/// Deletes points by ids or by filter.
///
/// While a write guard is installed (`PUT /v1/shards/{name}/guard`), writes naming points owned
/// by another shard are refused whole (409 `wrong_shard`), writes by filter skip such points,
/// and a frozen guard refuses points being handed off (503, `Retry-After: 0`).
#[utoipa::path(post, path = "/v1/shards/{name}/points/delete", tag = "points", request_body = PointSelector,
    params(("name" = String, Path), WriteParams), responses((status = 200, body = WriteResult),
    (status = 409, body = ErrorBody, description = "wrong_shard: a write guard is installed and a point named is owned by another shard"),
    (status = 503, body = ErrorBody, description = "unavailable: a frozen write guard refuses points being handed off (Retry-After: 0)")))]
async fn delete_points(
    State(node): Node_,
    Path(name): Path<String>,
    params: Result<Query<WriteParams>, QueryRejection>,
    Json(req): Json<PointSelector>,
) -> WriteReply<WriteResult> {
    write(node, name, params, move |s| s.delete(req)).await
}

/// Merges keys into the payloads of points selected by ids or by filter.
///
/// While a write guard is installed (`PUT /v1/shards/{name}/guard`), writes naming points owned
/// by another shard are refused whole (409 `wrong_shard`), writes by filter skip such points,
/// and a frozen guard refuses points being handed off (503, `Retry-After: 0`).
#[utoipa::path(post, path = "/v1/shards/{name}/points/payload", tag = "points", request_body = SetPayload,
    params(("name" = String, Path), WriteParams), responses((status = 200, body = WriteResult),
    (status = 409, body = ErrorBody, description = "wrong_shard: a write guard is installed and a point named is owned by another shard"),
    (status = 503, body = ErrorBody, description = "unavailable: a frozen write guard refuses points being handed off (Retry-After: 0)")))]
async fn set_payload(
    State(node): Node_,
    Path(name): Path<String>,
    params: Result<Query<WriteParams>, QueryRejection>,
    Json(req): Json<SetPayload>,
) -> WriteReply<WriteResult> {
    write(node, name, params, move |s| {
        s.set_payload(req.payload, req.ids, req.filter, PayloadMode::Merge)
    })
    .await
}

/// Replaces the payloads of points selected by ids or by filter.
///
/// While a write guard is installed (`PUT /v1/shards/{name}/guard`), writes naming points owned
/// by another shard are refused whole (409 `wrong_shard`), writes by filter skip such points,
/// and a frozen guard refuses points being handed off (503, `Retry-After: 0`).
#[utoipa::path(put, path = "/v1/shards/{name}/points/payload", tag = "points", request_body = SetPayload,
    params(("name" = String, Path), WriteParams), responses((status = 200, body = WriteResult),
    (status = 409, body = ErrorBody, description = "wrong_shard: a write guard is installed and a point named is owned by another shard"),
    (status = 503, body = ErrorBody, description = "unavailable: a frozen write guard refuses points being handed off (Retry-After: 0)")))]
async fn overwrite_payload(
    State(node): Node_,
    Path(name): Path<String>,
    params: Result<Query<WriteParams>, QueryRejection>,
    Json(req): Json<SetPayload>,
) -> WriteReply<WriteResult> {
    write(node, name, params, move |s| {
        s.set_payload(req.payload, req.ids, req.filter, PayloadMode::Overwrite)
    })
    .await
}

/// Removes keys from the payloads of points selected by ids or by filter.
///
/// While a write guard is installed (`PUT /v1/shards/{name}/guard`), writes naming points owned
/// by another shard are refused whole (409 `wrong_shard`), writes by filter skip such points,
/// and a frozen guard refuses points being handed off (503, `Retry-After: 0`).
#[utoipa::path(post, path = "/v1/shards/{name}/points/payload/delete", tag = "points", request_body = DeletePayload,
    params(("name" = String, Path), WriteParams), responses((status = 200, body = WriteResult),
    (status = 409, body = ErrorBody, description = "wrong_shard: a write guard is installed and a point named is owned by another shard"),
    (status = 503, body = ErrorBody, description = "unavailable: a frozen write guard refuses points being handed off (Retry-After: 0)")))]
async fn delete_payload(
    State(node): Node_,
    Path(name): Path<String>,
    params: Result<Query<WriteParams>, QueryRejection>,
    Json(req): Json<DeletePayload>,
) -> WriteReply<WriteResult> {
    write(node, name, params, move |s| s.delete_payload_keys(req.keys, req.ids, req.filter)).await
}

#[utoipa::path(post, path = "/v1/shards/{name}/points/count", tag = "points", request_body = CountPoints,
    params(("name" = String, Path), ReadParams), responses((status = 200, body = CountResult)))]
async fn count(
    State(node): Node_,
    Path(name): Path<String>,
    params: Result<Query<ReadParams>, QueryRejection>,
    Json(req): Json<CountPoints>,
) -> ApiResult<CountResult> {
    read(node, name, params, move |_, s| {
        Ok(CountResult { count: s.count(&req)?, stale: false, position: None })
    })
    .await
}

#[utoipa::path(post, path = "/v1/shards/{name}/points/scroll", tag = "points", request_body = ScrollPoints,
    params(("name" = String, Path), ReadParams), responses((status = 200, body = ScrollResult)))]
async fn scroll(
    State(node): Node_,
    Path(name): Path<String>,
    params: Result<Query<ReadParams>, QueryRejection>,
    Json(req): Json<ScrollPoints>,
) -> ApiResult<ScrollResult> {
    read(node, name, params, move |_, s| s.scroll(&req)).await
}

#[utoipa::path(post, path = "/v1/shards/{name}/search", tag = "search", request_body = SearchRequest,
    params(("name" = String, Path), ReadParams),
    responses((status = 200, body = SearchResult), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn search(
    State(node): Node_,
    Path(name): Path<String>,
    params: Result<Query<ReadParams>, QueryRejection>,
    Json(req): Json<SearchRequest>,
) -> ApiResult<SearchResult> {
    read(node, name, params, move |n, s| s.search(&req, n.planner)).await
}

/// Most searches one batch may carry.
const MAX_BATCH: usize = 1_000;

#[utoipa::path(post, path = "/v1/shards/{name}/search/batch", tag = "search", request_body = BatchSearchRequest,
    params(("name" = String, Path), ReadParams), responses((status = 200, body = BatchSearchResult)))]
async fn search_batch(
    State(node): Node_,
    Path(name): Path<String>,
    params: Result<Query<ReadParams>, QueryRejection>,
    Json(req): Json<BatchSearchRequest>,
) -> ApiResult<BatchSearchResult> {
    if req.searches.is_empty() || req.searches.len() > MAX_BATCH {
        return Err(ApiError::invalid(format!("searches must hold 1..={MAX_BATCH} requests")));
    }
    read(node, name, params, move |n, s| {
        let results = req
            .searches
            .iter()
            .enumerate()
            .map(|(i, r)| s.search(r, n.planner).map_err(|e| prefix(e, i)))
            .collect::<crate::error::Result<_>>()?;
        Ok(BatchSearchResult { results, position: None })
    })
    .await
}

fn prefix(e: crate::error::ShardError, i: usize) -> crate::error::ShardError {
    match e {
        crate::error::ShardError::Invalid(code, m) => {
            crate::error::ShardError::Invalid(code, format!("searches[{i}]: {m}"))
        }
        other => other,
    }
}

#[utoipa::path(put, path = "/v1/shards/{name}/index", tag = "shards", request_body = CreatePayloadIndex,
    params(("name" = String, Path)), responses((status = 200, body = ShardInfo)))]
async fn create_index(
    State(node): Node_,
    Path(name): Path<String>,
    Json(req): Json<CreatePayloadIndex>,
) -> ApiResult<ShardInfo> {
    node.blocking(move |n| {
        let shard = n.writable_shard(&name)?;
        shard.create_payload_index(req.field, req.kind)?;
        Ok(n.describe(&shard))
    })
    .await
    .map(Json)
}

#[utoipa::path(delete, path = "/v1/shards/{name}/index/{field}", tag = "shards",
    params(("name" = String, Path), ("field" = String, Path)),
    responses((status = 204, description = "dropped"), (status = 404, body = ErrorBody)))]
async fn drop_index(
    State(node): Node_,
    Path((name, field)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    node.blocking(move |n| n.writable_shard(&name)?.drop_payload_index(&field)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes, as one logged write, every point this shard does not own under the given rule.
///
/// The clean-up of a source shard after its points were copied to their new owners (and the
/// rule cut over). The write guard does not apply to it. Points no map of the rule can route
/// (e.g. a UUID under range sharding) have no owner and are deleted too.
#[utoipa::path(post, path = "/v1/shards/{name}/points/delete_not_owned", tag = "resharding",
    request_body = Ownership, params(("name" = String, Path), WriteParams),
    responses((status = 200, body = WriteResult), (status = 400, body = ErrorBody, description = "invalid ownership rule"),
    (status = 404, body = ErrorBody)))]
async fn delete_not_owned(
    State(node): Node_,
    Path(name): Path<String>,
    params: Result<Query<WriteParams>, QueryRejection>,
    Json(req): Json<Ownership>,
) -> WriteReply<WriteResult> {
    write(node, name, params, move |s| s.delete_not_owned(&req)).await
}

/// Query of `GET /v1/shards/{name}/wal`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct WalQuery {
    /// Return records after this LSN (0: from the start).
    #[serde(default)]
    after: u64,
    /// Most records to return (1..=10000, default 1000).
    limit: Option<usize>,
}

/// Reads the shard's write-ahead log: records with LSNs `after + 1`, `after + 2`, ... in order.
///
/// A page ends early when its records grow large or the log ends (an empty page: caught up to
/// `last_lsn`). Records are never returned beyond the last applied write, nor half-written,
/// while writes go on. When `after + 1` was already truncated behind a snapshot the answer is
/// 410 `wal_truncated`: copy the points (scroll) instead, then tail from a newer LSN.
#[utoipa::path(get, path = "/v1/shards/{name}/wal", tag = "resharding",
    params(("name" = String, Path), WalQuery),
    responses((status = 200, body = WalPage), (status = 400, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 410, body = ErrorBody, description = "wal_truncated")))]
async fn wal(
    State(node): Node_,
    Path(name): Path<String>,
    query: Result<Query<WalQuery>, QueryRejection>,
) -> ApiResult<WalPage> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_WAL_PAGE);
    // It reads files under the writer lock: keep it off the read threads, with the writes.
    node.blocking(move |n| n.shard(&name)?.wal_page(q.after, limit)).await.map(Json)
}

/// Installs (or replaces) the write guard of a source shard during a resharding or move.
///
/// Persisted in the shard's directory (`guard.json`, written atomically and fsynced), so it
/// survives restarts; it is not logged in the WAL. While installed, checked before anything
/// is logged (a refused write changes nothing):
/// - a write by ids (upsert, delete, payload by ids) naming any point whose owner under
///   `ownership` is not `ownership.shard` is refused whole with 409 `wrong_shard`; the message
///   names the point and its owner;
/// - with `frozen: true`, a write touching a point this shard owns under `ownership.from` whose
///   owner under `ownership.to` is another shard is refused with 503 `unavailable` and
///   `Retry-After: 0` ("points are being handed off; retry");
/// - a write by filter applies only to the matching points this shard owns; the others are
///   skipped, not refused (frozen: refused as above if one of them is being handed off);
/// - `delete_not_owned`, payload indexes and reads are not affected.
#[utoipa::path(put, path = "/v1/shards/{name}/guard", tag = "resharding", request_body = WriteGuard,
    params(("name" = String, Path)),
    responses((status = 200, body = ShardInfo), (status = 400, body = ErrorBody, description = "invalid ownership rule"),
    (status = 404, body = ErrorBody)))]
async fn install_guard(
    State(node): Node_,
    Path(name): Path<String>,
    Json(req): Json<WriteGuard>,
) -> ApiResult<ShardInfo> {
    node.blocking(move |n| {
        let shard = n.writable_shard(&name)?;
        shard.install_guard(req)?;
        Ok(n.describe(&shard))
    })
    .await
    .map(Json)
}

/// Removes the write guard (204 also when none was installed).
#[utoipa::path(delete, path = "/v1/shards/{name}/guard", tag = "resharding",
    params(("name" = String, Path)),
    responses((status = 204, description = "no guard is installed now"), (status = 404, body = ErrorBody)))]
async fn remove_guard(
    State(node): Node_,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    node.blocking(move |n| n.writable_shard(&name)?.remove_guard()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/shards/{name}/snapshot", tag = "shards",
    params(("name" = String, Path)), responses((status = 200, body = SnapshotInfo)))]
async fn snapshot(State(node): Node_, Path(name): Path<String>) -> ApiResult<SnapshotInfo> {
    node.blocking(move |n| n.shard(&name)?.snapshot()).await.map(Json)
}

/// Assigns this copy's role in its replica set (the controller calls it on every change and,
/// for a primary, on every heartbeat: that renews the lease).
///
/// The epoch never goes back (409 `stale_epoch`); a role change needs a new epoch. A primary
/// ships its log to the listed replicas (one ordered stream each) and counts the confirmations
/// of the in-sync ones for `sync`/`semi_sync` writes. A primary that was given a lease takes
/// writes only until the `lease_until_ms` of the last assignment that carried one (a Unix
/// time on the controller's clock, so a late assignment cannot stretch it). Role, epoch and
/// whether a lease is needed are persisted (`role.json`); the rest is not, so after a restart
/// a primary waits for the controller.
#[utoipa::path(put, path = "/v1/shards/{name}/role", tag = "replication", request_body = RoleAssignment,
    params(("name" = String, Path)),
    responses((status = 200, body = ReplicationInfo), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody, description = "stale_epoch: the assignment is older than this copy's epoch")))]
async fn assign_role(
    State(node): Node_,
    Path(name): Path<String>,
    Json(req): Json<RoleAssignment>,
) -> ApiResult<ReplicationInfo> {
    let (shard, info, starts) = node
        .blocking(move |n| {
            let shard = n.shard(&name)?;
            let (info, starts) = shard.assign_role(&req)?;
            Ok((shard, info, starts))
        })
        .await?;
    crate::shipper::start(&shard, starts);
    Ok(Json(info))
}

/// Query of `POST /v1/shards/{name}/replicate`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ReplicateQuery {
    /// The sender's epoch.
    epoch: u64,
    /// LSN and epoch of the record the batch continues (0, 0 for the log's start).
    prev_lsn: u64,
    prev_epoch: u64,
}

/// A batch of the primary's log, sent by the primary to a replica.
///
/// The body (`application/octet-stream`) is WAL frames exactly as the primary logged them:
/// per record `[body length: u32 LE][CRC32C of the body: u32 LE][lsn: u64 LE][epoch: u64 LE]
/// [encoded op]`, LSNs consecutive from `prev_lsn + 1`. A batch from an older epoch than this
/// copy's is refused (409 `stale_epoch`); a newer epoch makes this copy a replica of it. When
/// this copy's last record is not (`prev_lsn`, `prev_epoch`) nothing is applied and the answer
/// says `matched: false` with where its log ends; a batch that continues a record this copy
/// does not have yet (the primary keeps several batches in flight) first waits up to 1 s for
/// it. Otherwise the records are logged and applied
/// (an empty batch only checks), and the answer gives the LSN now durable here.
#[utoipa::path(post, path = "/v1/shards/{name}/replicate", tag = "replication",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    params(("name" = String, Path), ReplicateQuery),
    responses((status = 200, body = ReplicateAck), (status = 400, body = ErrorBody, description = "a damaged or out-of-order frame"),
    (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody, description = "stale_epoch: the sender was deposed")))]
async fn replicate(
    State(node): Node_,
    Path(name): Path<String>,
    query: Result<Query<ReplicateQuery>, QueryRejection>,
    body: bytes::Bytes,
) -> ApiResult<ReplicateAck> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let shard = node.shard(&name)?;
    // A primary keeps several batches in flight: this one may arrive before the one it
    // continues was applied. Wait a little for it; past that the answer says where the log
    // ends, as for any batch that does not continue it.
    let mut applied = shard.repl.watch_appended();
    if shard.last_lsn() < q.prev_lsn {
        let reached = applied.wait_for(|_| shard.last_lsn() >= q.prev_lsn);
        let _ = tokio::time::timeout(PIPELINE_WAIT, reached).await;
    }
    // A snapshot may have replaced the shard meanwhile.
    let shard = node.shard(&name)?;
    // Replicas take their own background snapshots, so their logs are truncated too.
    replication_work(move || {
        let ack = shard.replicate(q.epoch, q.prev_lsn, q.prev_epoch, &body)?;
        node.after_write(&shard);
        Ok(ack)
    })
    .await
}

/// How long a batch waits for the batch before it (see [`replicate`]).
const PIPELINE_WAIT: Duration = Duration::from_secs(1);

/// Runs replication work on the blocking pool, outside the request limiter: client load must
/// not starve replication.
async fn replication_work<T: Send + 'static>(
    work: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ApiError::internal())?
        .map(Json)
        .map_err(ApiError::from)
}

/// Query of `PUT /v1/shards/{name}/replica/snapshot`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SnapshotQuery {
    /// The sender's epoch.
    epoch: u64,
}

/// Replaces this replica's data by its primary's snapshot (when the primary's log no longer
/// reaches back to this copy's position, or this copy diverged).
///
/// The body is `[meta length: u32 LE][meta JSON: lsn, epoch, lengths and CRC32C of the two
/// files][index.usearch][points.bin]`; it is verified whole before anything is replaced. The
/// copy's log and snapshots are replaced and the shard is reopened from the snapshot; its write
/// guard and role stay. Same epoch rules as `replicate`. No body size limit applies.
#[utoipa::path(put, path = "/v1/shards/{name}/replica/snapshot", tag = "replication",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    params(("name" = String, Path), SnapshotQuery),
    responses((status = 200, body = ReplicateAck), (status = 400, body = ErrorBody, description = "a damaged transfer"),
    (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody, description = "stale_epoch: the sender was deposed")))]
async fn install_replica_snapshot(
    State(node): Node_,
    Path(name): Path<String>,
    query: Result<Query<SnapshotQuery>, QueryRejection>,
    body: bytes::Bytes,
) -> ApiResult<ReplicateAck> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    replication_work(move || node.install_replica_snapshot(&name, q.epoch, &body)).await
}

/// The shard node's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "VDB shard node",
        description = "Local shards of collections: points, payloads, filtered vector search."
    ),
    paths(
        healthz,
        readyz,
        metrics_text,
        status,
        list_shards,
        create_shard,
        describe_shard,
        drop_shard,
        upsert,
        get_points,
        delete_points,
        set_payload,
        overwrite_payload,
        delete_payload,
        count,
        scroll,
        search,
        search_batch,
        create_index,
        drop_index,
        snapshot,
        wal,
        install_guard,
        remove_guard,
        delete_not_owned,
        assign_role,
        replicate,
        install_replica_snapshot
    ),
    components(schemas(
        ErrorBody,
        AckMode,
        ReadConsistency,
        LogPosition,
        ErrorDetail,
        ErrorCode,
        PointId,
        Filter,
        Condition,
        Match,
        MatchValue,
        Range
    ))
)]
pub struct ApiDoc;
