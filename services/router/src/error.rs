//! The router's errors and how each reaches the client.

use vdb_api::ErrorCode;
use vdb_client::ClientError;
use vdb_common::ApiError;
use vdb_meta::MetaError;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// Bad input: nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// Bad input with a specific code (dimension mismatch, invalid filter...).
    #[error("{message}")]
    Rejected { code: ErrorCode, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// A shard node answered with an error meant for the client (bad filter, dimension...).
    #[error("shard {shard}: {message}")]
    Shard { shard: u32, code: ErrorCode, message: String },
    /// Some shards cannot answer; the message names them.
    #[error("{0}")]
    Unavailable(String),
    /// A text could not be embedded: the embedder is unavailable (503), refuses the text
    /// (422, naming the point or search), or is overloaded (429). The cause was logged.
    #[error("{message}")]
    Embed { code: ErrorCode, message: String },
    /// The metastore cannot be reached or refused the operation.
    #[error("metastore: {0}")]
    Meta(#[from] MetaError),
    #[error("{0}")]
    Internal(String),
}

impl RouterError {
    /// Maps a shard node's failure, naming the shard so the client knows which one.
    pub fn from_shard(shard: u32, node: &str, err: ClientError) -> RouterError {
        match err {
            ClientError::Api { code, message, .. }
                if code.http_status() < 500 && code != ErrorCode::Overloaded =>
            {
                RouterError::Shard { shard, code, message }
            }
            // Replication verdicts: retrying would not help (too few replicas) or would wait
            // all over again (a write whose outcome is unknown); the client decides.
            ClientError::Api {
                code: code @ (ErrorCode::NotEnoughReplicas | ErrorCode::ReplicationTimeout),
                message,
                ..
            } => RouterError::Shard { shard, code, message: format!("shard {shard}: {message}") },
            ClientError::Api { code: ErrorCode::Overloaded, .. } => RouterError::Shard {
                shard,
                code: ErrorCode::Overloaded,
                message: format!("node {node} is overloaded; retry later"),
            },
            ClientError::Encode(m) => {
                RouterError::Internal(format!("encoding the request for shard {shard}: {m}"))
            }
            other => RouterError::Unavailable(format!(
                "shard {shard} is unavailable (node {node}: {})",
                describe(&other)
            )),
        }
    }
}

/// A short reason for a failed shard call, without internals.
pub fn describe(err: &ClientError) -> String {
    match err {
        ClientError::Api { status, message, .. } => format!("HTTP {status}: {message}"),
        ClientError::Transport(e) if e.is_connect() => "connection refused".into(),
        ClientError::Transport(_) => "connection failed".into(),
        ClientError::Timeout => "timed out".into(),
        ClientError::Decode(_) => "bad response".into(),
        ClientError::Encode(_) => "request not encodable".into(),
        ClientError::Config(m) => m.clone(),
    }
}

impl From<RouterError> for ApiError {
    fn from(e: RouterError) -> ApiError {
        match e {
            RouterError::Invalid(m) => ApiError::invalid(m),
            RouterError::Rejected { code, message } => ApiError::new(code, message),
            RouterError::NotFound(m) => ApiError::not_found(m),
            RouterError::AlreadyExists(m) => ApiError::new(ErrorCode::AlreadyExists, m),
            RouterError::Shard { shard, code, message } => {
                ApiError::new(code, format!("shard {shard}: {message}"))
            }
            RouterError::Unavailable(m) => ApiError::unavailable(m),
            RouterError::Embed { code, message } => ApiError::new(code, message),
            RouterError::Meta(e) => {
                tracing::error!(error = %e, "metastore failure");
                ApiError::unavailable("cluster metastore unavailable; retry later")
            }
            RouterError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                ApiError::internal()
            }
        }
    }
}

pub type Result<T, E = RouterError> = std::result::Result<T, E>;
