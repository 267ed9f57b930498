//! The JSON error body and the one table from error codes to HTTP statuses.

use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// `{"error": {"code": "...", "message": "..."}}`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

/// Stable error codes. Clients match on these, never on messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON or does not have the expected shape.
    MalformedJson,
    /// A value is out of range or inconsistent (k = 0, a bad config, ...).
    InvalidArgument,
    /// A vector's length differs from the dimension.
    DimensionMismatch,
    /// A vector holds NaN or infinity.
    InvalidVector,
    /// A filter cannot be evaluated as given.
    InvalidFilter,
    /// A payload is not a JSON object.
    InvalidPayload,
    /// The thing named does not exist.
    NotFound,
    /// It exists already.
    AlreadyExists,
    /// A write names a point this shard does not own (a write guard is installed during a
    /// resharding); the message names the owning shard.
    WrongShard,
    /// The WAL no longer holds the LSN asked for (truncated behind a snapshot).
    WalTruncated,
    /// A write reached a local shard that is not its replica set's primary (a replica, or a
    /// primary that stepped down); the message names the primary when known. Reload the
    /// collection's placement and resend.
    NotPrimary,
    /// A role assignment or replication message from an epoch older than the shard's: its
    /// sender was deposed.
    StaleEpoch,
    /// Fewer replicas are in sync than the collection's `min_in_sync`: a sync or semi-sync
    /// write is refused before anything is written.
    NotEnoughReplicas,
    /// The write is durable on the primary but not enough replicas confirmed it in time: its
    /// outcome is unknown (it may survive a failover or not).
    ReplicationTimeout,
    /// The body exceeds the configured limit.
    PayloadTooLarge,
    /// The body's content type is not JSON.
    UnsupportedMediaType,
    /// The request was understood but cannot be processed (e.g. text the model refuses).
    Unprocessable,
    /// Too many requests in flight; retry later.
    Overloaded,
    /// Not serving right now (recovering, shutting down).
    Unavailable,
    /// The server failed; details are in its log, never in the response.
    Internal,
    /// The embedder a text needs cannot be reached, timed out or failed (the router answers
    /// it; requests with vectors still work).
    EmbedderUnavailable,
}

impl ErrorCode {
    /// Every code, in declaration order (the most generic code of each status first).
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::MalformedJson,
        ErrorCode::InvalidArgument,
        ErrorCode::DimensionMismatch,
        ErrorCode::InvalidVector,
        ErrorCode::InvalidFilter,
        ErrorCode::InvalidPayload,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::WrongShard,
        ErrorCode::WalTruncated,
        ErrorCode::NotPrimary,
        ErrorCode::StaleEpoch,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Unprocessable,
        ErrorCode::Overloaded,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::NotEnoughReplicas,
        ErrorCode::ReplicationTimeout,
        ErrorCode::EmbedderUnavailable,
    ];

    /// The HTTP status for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::MalformedJson
            | ErrorCode::InvalidArgument
            | ErrorCode::DimensionMismatch
            | ErrorCode::InvalidVector
            | ErrorCode::InvalidFilter
            | ErrorCode::InvalidPayload => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::AlreadyExists
            | ErrorCode::WrongShard
            | ErrorCode::NotPrimary
            | ErrorCode::StaleEpoch => 409,
            ErrorCode::WalTruncated => 410,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Unprocessable => 422,
            ErrorCode::Overloaded => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable
            | ErrorCode::NotEnoughReplicas
            | ErrorCode::ReplicationTimeout
            | ErrorCode::EmbedderUnavailable => 503,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::DimensionMismatch => "dimension_mismatch",
            ErrorCode::InvalidVector => "invalid_vector",
            ErrorCode::InvalidFilter => "invalid_filter",
            ErrorCode::InvalidPayload => "invalid_payload",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::WrongShard => "wrong_shard",
            ErrorCode::WalTruncated => "wal_truncated",
            ErrorCode::NotPrimary => "not_primary",
            ErrorCode::StaleEpoch => "stale_epoch",
            ErrorCode::NotEnoughReplicas => "not_enough_replicas",
            ErrorCode::ReplicationTimeout => "replication_timeout",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unprocessable => "unprocessable",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::EmbedderUnavailable => "embedder_unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody { error: ErrorDetail { code, message: message.into() } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert_eq!(ErrorCode::Overloaded.http_status(), 429);
        assert_eq!(ErrorCode::WrongShard.http_status(), 409);
        assert_eq!(ErrorCode::WalTruncated.http_status(), 410);
        assert_eq!(ErrorCode::EmbedderUnavailable.http_status(), 503);
    }
}
