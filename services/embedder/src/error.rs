//! The embedder's errors: [`StartError`] stops the process at startup, [`EmbedError`] fails one
//! request and maps onto the shared `ErrorCode → HTTP status` table.

use vdb_api::ErrorCode;
use vdb_common::ApiError;

/// Why the service cannot start (bad model directory, missing library, unusable device).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("model: {0}")]
    Model(String),
    #[error("backend: {0}")]
    Backend(String),
    #[error("device: {0}")]
    Device(String),
}

/// Why one request got no vectors.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmbedError {
    #[error("no inputs given")]
    Empty,
    #[error("{n} inputs in one request; at most {max} are allowed")]
    TooManyInputs { n: usize, max: usize },
    #[error("input {index} has {tokens} tokens, over the model's limit of {max}; send truncate: true to cut it")]
    TooLong { index: usize, tokens: usize, max: usize },
    #[error("cannot tokenize input {index}: {reason}")]
    Tokenize { index: usize, reason: String },
    #[error("the queue is full; retry later")]
    Overloaded,
    #[error("the model is not serving (starting or shutting down)")]
    Unavailable,
    /// The model failed on a batch; the cause is logged where it happened.
    #[error("inference failed")]
    Inference,
}

impl From<EmbedError> for ApiError {
    fn from(e: EmbedError) -> Self {
        let code = match &e {
            EmbedError::Empty | EmbedError::TooManyInputs { .. } => ErrorCode::InvalidArgument,
            EmbedError::TooLong { .. } | EmbedError::Tokenize { .. } => ErrorCode::Unprocessable,
            EmbedError::Overloaded => ErrorCode::Overloaded,
            EmbedError::Unavailable => ErrorCode::Unavailable,
            EmbedError::Inference => return ApiError::internal(),
        };
        ApiError::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let status = |e: EmbedError| ApiError::from(e).code.http_status();
        assert_eq!(status(EmbedError::TooLong { index: 0, tokens: 300, max: 256 }), 422);
        assert_eq!(status(EmbedError::Overloaded), 429);
        assert_eq!(status(EmbedError::Empty), 400);
        assert_eq!(status(EmbedError::Unavailable), 503);
        assert_eq!(status(EmbedError::Inference), 500);
    }
}
