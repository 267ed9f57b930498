//! The router's public HTTP API: thin handlers that extract, call one [`Cluster`] function
//! and map the result. `openapi/router.json` is generated from the annotations here.

use crate::cluster::{Cluster, Reads};
use crate::error::RouterError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use std::sync::Arc;
use utoipa::OpenApi;
use vdb_api::*;
use vdb_common::{ApiError, Json};

type Cluster_ = State<Arc<Cluster>>;
type ApiResult<T> = Result<Json<T>, ApiError>;

/// The whole API, with metrics and the body limit applied.
pub fn app(cluster: Arc<Cluster>) -> Router {
    let metrics = cluster.metrics.http.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/v1/cluster", get(cluster_info))
        .route("/v1/cluster/nodes/{id}", put(register_node).get(node_info).delete(deregister_node))
        .route("/v1/cluster/nodes/{id}/drain", post(drain_node))
        .route("/v1/cluster/rebalance", post(rebalance))
        .route("/v1/collections", get(list_collections))
        .route(
            "/v1/collections/{name}",
            put(create_collection)
                .get(describe_collection)
                .patch(update_collection)
                .delete(delete_collection),
        )
        .route("/v1/collections/{name}/shards", post(add_shard))
        .route("/v1/collections/{name}/shards/{shard}/remove", post(remove_shard))
        .route("/v1/collections/{name}/shards/{shard}/move", post(move_shard))
        .route("/v1/collections/{name}/points", put(upsert))
        .route("/v1/collections/{name}/points/get", post(get_points))
        .route("/v1/collections/{name}/points/delete", post(delete_points))
        .route("/v1/collections/{name}/points/payload", post(set_payload).put(overwrite_payload))
        .route("/v1/collections/{name}/points/payload/delete", post(delete_payload))
        .route("/v1/collections/{name}/points/count", post(count))
        .route("/v1/collections/{name}/points/scroll", post(scroll))
        .route("/v1/collections/{name}/search", post(search))
        .route("/v1/collections/{name}/search/batch", post(search_batch))
        .route("/v1/collections/{name}/index", put(create_index))
        .route("/v1/collections/{name}/index/{field}", axum::routing::delete(drop_index))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(metrics, vdb_common::metrics::track))
        .layer(DefaultBodyLimit::max(cluster.config.max_body_bytes))
        .with_state(cluster)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// `ownership` is for router → shard calls; a client must not set it.
fn no_ownership(o: &Option<Ownership>) -> Result<(), ApiError> {
    match o {
        Some(_) => Err(ApiError::invalid("ownership is set by the router, not by clients")),
        None => Ok(()),
    }
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the process is alive")))]
async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "the cluster state is loaded and the metastore answers"),
    (status = 503, description = "the metastore does not answer", body = ErrorBody)))]
async fn readyz(State(c): Cluster_) -> Response {
    match tokio::time::timeout(
        std::time::Duration::from_secs(2),
        c.state.meta.get(crate::state::CONTROLLER_PROBE),
    )
    .await
    {
        Ok(Ok(_)) => "ready".into_response(),
        _ => ApiError::unavailable("metastore unavailable").into_response(),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
async fn metrics_text(State(c): Cluster_) -> Response {
    vdb_common::metrics::render(&c.metrics.registry)
}

#[utoipa::path(get, path = "/v1/cluster", tag = "cluster", responses((status = 200, body = ClusterInfo)))]
async fn cluster_info(State(c): Cluster_) -> ApiResult<ClusterInfo> {
    Ok(Json(c.cluster_info().await?))
}

#[utoipa::path(put, path = "/v1/cluster/nodes/{id}", tag = "cluster", request_body = RegisterNode,
    params(("id" = String, Path, description = "node id")),
    responses((status = 200, body = NodeInfo), (status = 400, body = ErrorBody)))]
async fn register_node(
    State(c): Cluster_,
    Path(id): Path<String>,
    Json(req): Json<RegisterNode>,
) -> ApiResult<NodeInfo> {
    Ok(Json(c.register_node(&id, req).await?))
}

#[utoipa::path(get, path = "/v1/cluster/nodes/{id}", tag = "cluster",
    params(("id" = String, Path, description = "node id")),
    responses((status = 200, body = NodeInfo), (status = 404, body = ErrorBody)))]
async fn node_info(State(c): Cluster_, Path(id): Path<String>) -> ApiResult<NodeInfo> {
    Ok(Json(c.node_info(&id).await?))
}

#[utoipa::path(delete, path = "/v1/cluster/nodes/{id}", tag = "cluster",
    params(("id" = String, Path, description = "node id")),
    responses((status = 204, description = "deregistered"), (status = 400, description = "the node still hosts shards", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn deregister_node(
    State(c): Cluster_,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    c.deregister_node(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/cluster/nodes/{id}/drain", tag = "cluster",
    params(("id" = String, Path, description = "node id")),
    responses((status = 202, description = "moves of every shard copy off the node, running in the background", body = ShardMoves),
        (status = 404, body = ErrorBody), (status = 503, description = "no other node to move to", body = ErrorBody)))]
async fn drain_node(
    State(c): Cluster_,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<ShardMoves>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(ShardMoves { moves: c.drain_node(&id).await? })))
}

#[utoipa::path(post, path = "/v1/cluster/rebalance", tag = "cluster",
    responses((status = 202, description = "moves that even out shards per node, running in the background", body = ShardMoves)))]
async fn rebalance(State(c): Cluster_) -> Result<(StatusCode, Json<ShardMoves>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(ShardMoves { moves: c.rebalance().await? })))
}

#[utoipa::path(get, path = "/v1/collections", tag = "collections", responses((status = 200, body = CollectionList)))]
async fn list_collections(State(c): Cluster_) -> Json<CollectionList> {
    Json(c.list_collections())
}

#[utoipa::path(put, path = "/v1/collections/{name}", tag = "collections", request_body = CreateCollection,
    params(("name" = String, Path, description = "collection name")),
    responses((status = 201, body = CollectionInfo),
        (status = 400, description = "bad config (nothing created): e.g. an embedding model this router does not serve, or a dimension other than the model's", body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 503, description = "no healthy node, a node refused, or `embedder_unavailable`: the model's embedder cannot be asked for its dimension", body = ErrorBody)))]
async fn create_collection(
    State(c): Cluster_,
    Path(name): Path<String>,
    Json(req): Json<CreateCollection>,
) -> Result<(StatusCode, Json<CollectionInfo>), ApiError> {
    Ok((StatusCode::CREATED, Json(c.create_collection(&name, req).await?)))
}

#[utoipa::path(get, path = "/v1/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "collection name")),
    responses((status = 200, body = CollectionInfo), (status = 404, body = ErrorBody)))]
async fn describe_collection(
    State(c): Cluster_,
    Path(name): Path<String>,
) -> ApiResult<CollectionInfo> {
    Ok(Json(c.describe_collection(&name).await?))
}

#[utoipa::path(patch, path = "/v1/collections/{name}", tag = "collections", request_body = UpdateCollection,
    params(("name" = String, Path, description = "collection name")),
    responses((status = 200, body = CollectionInfo), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_collection(
    State(c): Cluster_,
    Path(name): Path<String>,
    Json(req): Json<UpdateCollection>,
) -> ApiResult<CollectionInfo> {
    Ok(Json(c.update_collection(&name, req).await?))
}

#[utoipa::path(delete, path = "/v1/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "collection name")),
    responses((status = 204, description = "deleted (local shards on unreachable nodes are dropped later)"), (status = 404, body = ErrorBody)))]
async fn delete_collection(
    State(c): Cluster_,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    c.delete_collection(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/collections/{name}/shards", tag = "collections", request_body = AddShard,
    params(("name" = String, Path, description = "collection name")),
    responses((status = 202, description = "resharding started; progress in the collection's `resharding`", body = CollectionInfo),
        (status = 400, body = ErrorBody), (status = 409, description = "already resharding", body = ErrorBody)))]
async fn add_shard(
    State(c): Cluster_,
    Path(name): Path<String>,
    Json(req): Json<AddShard>,
) -> Result<(StatusCode, Json<CollectionInfo>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(c.add_shard(&name, req).await?)))
}

#[utoipa::path(post, path = "/v1/collections/{name}/shards/{shard}/remove", tag = "collections", request_body = AddShard,
    params(("name" = String, Path, description = "collection name"), ("shard" = u32, Path, description = "shard id")),
    responses((status = 202, description = "resharding started", body = CollectionInfo),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn remove_shard(
    State(c): Cluster_,
    Path((name, shard)): Path<(String, u32)>,
    Json(req): Json<AddShard>,
) -> Result<(StatusCode, Json<CollectionInfo>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(c.remove_shard(&name, shard, req).await?)))
}

#[utoipa::path(post, path = "/v1/collections/{name}/shards/{shard}/move", tag = "collections", request_body = MoveShard,
    params(("name" = String, Path, description = "collection name"), ("shard" = u32, Path, description = "shard id")),
    responses((status = 202, description = "move started; it runs in the background (`moving` in the collection's record until done)", body = ShardMoveInfo),
        (status = 400, description = "`from` holds no copy of the shard, `to` already holds one, or `to` is not registered (nothing changed)", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, description = "`to` is not healthy, or the collection is being resharded or has a shard moving: retry later", body = ErrorBody)))]
async fn move_shard(
    State(c): Cluster_,
    Path((name, shard)): Path<(String, u32)>,
    Json(req): Json<MoveShard>,
) -> Result<(StatusCode, Json<ShardMoveInfo>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(c.request_move(&name, shard, req).await?)))
}

#[utoipa::path(put, path = "/v1/collections/{name}/points", tag = "points", request_body = CollectionUpsertPoints,
    params(("name" = String, Path, description = "collection name"), WriteQuery),
    responses((status = 200, description = "applied on every owning shard", body = CollectionWriteResult),
        (status = 400, description = "bad input (nothing written): `points[i]` with both or neither of vector and text, text without an embedding model, ...", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "the embedder refuses a text (e.g. over the model's limit without truncation); the message names the point; nothing written", body = ErrorBody),
        (status = 429, description = "the embedder is overloaded; retry after `Retry-After` seconds; nothing written", body = ErrorBody),
        (status = 503, description = "a shard cannot be reached (the message says which shards applied the write), or `embedder_unavailable`: the embedder cannot be reached or timed out (nothing written)", body = ErrorBody)))]
async fn upsert(
    State(c): Cluster_,
    Path(name): Path<String>,
    params: Result<Query<WriteQuery>, QueryRejection>,
    Json(req): Json<CollectionUpsertPoints>,
) -> ApiResult<CollectionWriteResult> {
    Ok(Json(c.upsert(&name, req, writes(params)?).await?))
}

/// The consistency a write's query asks for (`?consistency=async|semi_sync|sync&acks=n`), if
/// any.
fn writes(
    params: Result<Query<WriteQuery>, QueryRejection>,
) -> Result<Option<WriteConsistency>, RouterError> {
    let Query(params) = params.map_err(|e| RouterError::Invalid(e.body_text()))?;
    params.requested().map_err(RouterError::Invalid)
}

/// The freshness a read's query asks for (`?consistency=eventual|strong`).
fn reads(params: Result<Query<ReadParams>, QueryRejection>) -> Result<Reads, RouterError> {
    let Query(params) = params.map_err(|e| RouterError::Invalid(e.body_text()))?;
    Ok(Reads::new(params.consistency))
}

#[utoipa::path(post, path = "/v1/collections/{name}/points/get", tag = "points", request_body = GetPoints,
    params(("name" = String, Path, description = "collection name"), ReadParams),
    responses((status = 200, body = Records), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn get_points(
    State(c): Cluster_,
    Path(name): Path<String>,
    params: Result<Query<ReadParams>, QueryRejection>,
    Json(req): Json<GetPoints>,
) -> ApiResult<Records> {
    no_ownership(&req.ownership)?;
    Ok(Json(c.get(&name, req, &reads(params)?).await?))
}

#[utoipa::path(post, path = "/v1/collections/{name}/points/delete", tag = "points", request_body = PointSelector,
    params(("name" = String, Path, description = "collection name"), WriteQuery),
    responses((status = 200, body = CollectionWriteResult), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn delete_points(
    State(c): Cluster_,
    Path(name): Path<String>,
    params: Result<Query<WriteQuery>, QueryRejection>,
    Json(req): Json<PointSelector>,
) -> ApiResult<CollectionWriteResult> {
    Ok(Json(c.delete(&name, req, writes(params)?).await?))
}

#[utoipa::path(post, path = "/v1/collections/{name}/points/payload", tag = "points", request_body = SetPayload,
    params(("name" = String, Path, description = "collection name"), WriteQuery),
    responses((status = 200, description = "keys merged", body = CollectionWriteResult), (status = 400, body = ErrorBody)))]
async fn set_payload(
    State(c): Cluster_,
    Path(name): Path<String>,
    params: Result<Query<WriteQuery>, QueryRejection>,
    Json(req): Json<SetPayload>,
) -> ApiResult<CollectionWriteResult> {
    Ok(Json(c.set_payload(&name, req, false, writes(params)?).await?))
}

#[utoipa::path(put, path = "/v1/collections/{name}/points/payload", tag = "points", request_body = SetPayload,
    params(("name" = String, Path, description = "collection name"), WriteQuery),
    responses((status = 200, description = "payloads replaced", body = CollectionWriteResult), (status = 400, body = ErrorBody)))]
async fn overwrite_payload(
    State(c): Cluster_,
    Path(name): Path<String>,
    params: Result<Query<WriteQuery>, QueryRejection>,
    Json(req): Json<SetPayload>,
) -> ApiResult<CollectionWriteResult> {
    Ok(Json(c.set_payload(&name, req, true, writes(params)?).await?))
}

#[utoipa::path(post, path = "/v1/collections/{name}/points/payload/delete", tag = "points", request_body = DeletePayload,
    params(("name" = String, Path, description = "collection name"), WriteQuery),
    responses((status = 200, body = CollectionWriteResult), (status = 400, body = ErrorBody)))]
async fn delete_payload(
    State(c): Cluster_,
    Path(name): Path<String>,
    params: Result<Query<WriteQuery>, QueryRejection>,
    Json(req): Json<DeletePayload>,
) -> ApiResult<CollectionWriteResult> {
    Ok(Json(c.delete_payload(&name, req, writes(params)?).await?))
}

#[utoipa::path(post, path = "/v1/collections/{name}/points/count", tag = "points", request_body = CountPoints,
    params(("name" = String, Path, description = "collection name"), ReadParams),
    responses((status = 200, body = CountResult), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn count(
    State(c): Cluster_,
    Path(name): Path<String>,
    params: Result<Query<ReadParams>, QueryRejection>,
    Json(req): Json<CountPoints>,
) -> ApiResult<CountResult> {
    no_ownership(&req.ownership)?;
    Ok(Json(c.count(&name, req, &reads(params)?).await?))
}

#[utoipa::path(post, path = "/v1/collections/{name}/points/scroll", tag = "points", request_body = ScrollPoints,
    params(("name" = String, Path, description = "collection name"), ReadParams),
    responses((status = 200, body = ScrollResult), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn scroll(
    State(c): Cluster_,
    Path(name): Path<String>,
    params: Result<Query<ReadParams>, QueryRejection>,
    Json(req): Json<ScrollPoints>,
) -> ApiResult<ScrollResult> {
    no_ownership(&req.ownership)?;
    Ok(Json(c.scroll(&name, req, &reads(params)?).await?))
}

#[utoipa::path(post, path = "/v1/collections/{name}/search", tag = "search", request_body = CollectionSearch,
    params(("name" = String, Path, description = "collection name"), ReadParams),
    responses((status = 200, body = CollectionSearchResult), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "the embedder refuses the query text", body = ErrorBody),
        (status = 429, description = "the embedder is overloaded; retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "a shard cannot answer (the message names it) and partial results were not allowed, or `embedder_unavailable`", body = ErrorBody)))]
async fn search(
    State(c): Cluster_,
    Path(name): Path<String>,
    params: Result<Query<ReadParams>, QueryRejection>,
    Json(req): Json<CollectionSearch>,
) -> ApiResult<CollectionSearchResult> {
    Ok(Json(c.search(&name, req, &reads(params)?).await?))
}

#[utoipa::path(post, path = "/v1/collections/{name}/search/batch", tag = "search", request_body = CollectionBatchSearch,
    params(("name" = String, Path, description = "collection name"), ReadParams),
    responses((status = 200, body = CollectionBatchSearchResult), (status = 400, body = ErrorBody),
        (status = 422, description = "the embedder refuses a query text; the message names `searches[i]`", body = ErrorBody),
        (status = 429, description = "the embedder is overloaded; retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn search_batch(
    State(c): Cluster_,
    Path(name): Path<String>,
    params: Result<Query<ReadParams>, QueryRejection>,
    Json(req): Json<CollectionBatchSearch>,
) -> ApiResult<CollectionBatchSearchResult> {
    Ok(Json(c.search_batch(&name, req, &reads(params)?).await?))
}

#[utoipa::path(put, path = "/v1/collections/{name}/index", tag = "collections", request_body = CreatePayloadIndex,
    params(("name" = String, Path, description = "collection name")),
    responses((status = 204, description = "indexed on every shard"), (status = 400, body = ErrorBody)))]
async fn create_index(
    State(c): Cluster_,
    Path(name): Path<String>,
    Json(req): Json<CreatePayloadIndex>,
) -> Result<StatusCode, ApiError> {
    c.create_index(&name, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/collections/{name}/index/{field}", tag = "collections",
    params(("name" = String, Path, description = "collection name"), ("field" = String, Path, description = "indexed field")),
    responses((status = 204, description = "dropped on every shard")))]
async fn drop_index(
    State(c): Cluster_,
    Path((name, field)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    c.drop_index(&name, &field).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The router's OpenAPI document (`openapi/router.json`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "VDB router",
        description = "Collections of vectors across shard nodes: the public API."
    ),
    paths(
        healthz,
        readyz,
        metrics_text,
        cluster_info,
        register_node,
        node_info,
        deregister_node,
        drain_node,
        rebalance,
        list_collections,
        create_collection,
        describe_collection,
        update_collection,
        delete_collection,
        add_shard,
        remove_shard,
        move_shard,
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
        drop_index
    ),
    components(schemas(
        ErrorBody,
        AckMode,
        ReadConsistency,
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
