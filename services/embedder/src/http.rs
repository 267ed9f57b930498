//! The embedder's HTTP API: thin handlers over [`Embedder`]. `openapi/embedder.json` is
//! generated from the annotations here (see [`ApiDoc`]).

use crate::service::Embedder;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use utoipa::OpenApi;
use vdb_api::embed::*;
use vdb_api::ErrorBody;
use vdb_common::{ApiError, Json};

type Embedder_ = State<Arc<Embedder>>;
type ApiResult<T> = Result<Json<T>, ApiError>;

/// The whole API, with metrics and the body limit applied.
pub fn app(embedder: Arc<Embedder>) -> Router {
    let metrics = embedder.metrics.http.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/info", get(info))
        .route("/embed", post(embed))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/tokenize", post(tokenize))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(metrics, vdb_common::metrics::track))
        .layer(DefaultBodyLimit::max(embedder.config.max_body_bytes))
        .with_state(embedder)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the process is alive")))]
async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "the model has loaded and warmed up"),
    (status = 503, description = "still loading", body = ErrorBody)))]
async fn readyz(State(e): Embedder_) -> Response {
    if e.is_ready() {
        "ready".into_response()
    } else {
        ApiError::unavailable("loading the model").into_response()
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
async fn metrics_text(State(e): Embedder_) -> Response {
    vdb_common::metrics::render(&e.metrics.registry)
}

#[utoipa::path(get, path = "/info", tag = "embedder", responses(
    (status = 200, body = EmbedderInfo), (status = 503, description = "still loading", body = ErrorBody)))]
async fn info(State(e): Embedder_) -> ApiResult<EmbedderInfo> {
    e.info().map(Json).ok_or_else(|| ApiError::unavailable("loading the model"))
}

#[utoipa::path(post, path = "/embed", tag = "embedder", request_body = EmbedRequest, responses(
    (status = 200, description = "one vector per input, in order", body = Vec<Vec<f32>>),
    (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
    (status = 422, description = "an input is over the model's limit and truncate is false", body = ErrorBody),
    (status = 429, description = "the queue is full", body = ErrorBody),
    (status = 503, description = "the model is not loaded", body = ErrorBody)))]
async fn embed(State(e): Embedder_, Json(req): Json<EmbedRequest>) -> ApiResult<Vec<Vec<f32>>> {
    let out = e.embed(req.inputs.into_vec(), req.truncate, req.normalize, "embed").await?;
    Ok(Json(out.vectors))
}

#[utoipa::path(post, path = "/v1/embeddings", tag = "embedder", request_body = OpenAiEmbedRequest, responses(
    (status = 200, body = OpenAiEmbedResponse),
    (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
    (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn openai_embeddings(
    State(e): Embedder_,
    Json(req): Json<OpenAiEmbedRequest>,
) -> ApiResult<OpenAiEmbedResponse> {
    let out = e.embed(req.input.into_vec(), req.truncate, true, "openai").await?;
    let data = out
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| OpenAiEmbedding {
            object: "embedding".into(),
            embedding: match req.encoding_format {
                EncodingFormat::Float => EmbeddingValue::Float(v),
                EncodingFormat::Base64 => EmbeddingValue::Base64(base64_f32(&v)),
            },
            index,
        })
        .collect();
    Ok(Json(OpenAiEmbedResponse {
        object: "list".into(),
        data,
        model: req.model.unwrap_or_else(|| e.manifest.name.clone()),
        usage: OpenAiUsage { prompt_tokens: out.tokens, total_tokens: out.tokens },
    }))
}

#[utoipa::path(post, path = "/tokenize", tag = "embedder", request_body = TokenizeRequest, responses(
    (status = 200, description = "the tokens of each input", body = Vec<Vec<Token>>),
    (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn tokenize(
    State(e): Embedder_,
    Json(req): Json<TokenizeRequest>,
) -> ApiResult<Vec<Vec<Token>>> {
    Ok(Json(e.tokenize(req.inputs.into_vec(), req.add_special_tokens).await?))
}

/// Standard base64 (with padding) of the little-endian bytes of `v`.
pub fn base64_f32(v: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The OpenAPI document of this API (`openapi/embedder.json`).
#[derive(OpenApi)]
#[openapi(
    info(title = "VDB embedder", description = "Text to vectors: TorchScript or TensorFlow SavedModel backends with dynamic batching."),
    paths(healthz, readyz, metrics_text, info, embed, openai_embeddings, tokenize),
    components(schemas(ErrorBody, EmbedRequest, Inputs, OpenAiEmbedRequest, EncodingFormat,
        OpenAiEmbedResponse, OpenAiEmbedding, EmbeddingValue, OpenAiUsage, TokenizeRequest, Token,
        EmbedderInfo, Pooling)),
    tags((name = "embedder", description = "embedding and tokenizing"),
         (name = "operations", description = "health, readiness, metrics"))
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::base64_f32;

    #[test]
    fn base64_of_floats() {
        // 1.0f32 = 00 00 80 3f
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, 1.0]), "AACAPwAAgD8=");
        assert_eq!(base64_f32(&[]), "");
    }
}
