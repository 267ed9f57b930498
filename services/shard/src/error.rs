//! [`ShardError`]: everything a shard operation can fail with, and how each maps to the API.

use crate::index::IndexError;
use vdb_api::ErrorCode;
use vdb_common::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The request is wrong; the message is for the client.
    #[error("{1}")]
    Invalid(ErrorCode, String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// Recovering or shutting down; retry elsewhere or later.
    #[error("{0}")]
    Unavailable(String),
    /// A write guard refuses a point owned by another shard.
    #[error("{0}")]
    WrongShard(String),
    /// A frozen write guard refuses a point being handed off; retry at once (through the
    /// router, which will send it to its new owner once it is cut over).
    #[error("{0}")]
    HandingOff(String),
    /// The WAL no longer holds the records asked for.
    #[error("{0}")]
    WalTruncated(String),
    /// A write reached a copy that is not its replica set's primary.
    #[error("{0}")]
    NotPrimary(String),
    /// A role or replication message from an older epoch.
    #[error("{0}")]
    StaleEpoch(String),
    /// Too few in-sync replicas for a sync or semi-sync write; nothing was written.
    #[error("{0}")]
    NotEnoughReplicas(String),
    /// Written on the primary, not confirmed by enough replicas in time: outcome unknown.
    #[error("{0}")]
    ReplicationTimeout(String),
    #[error("wal: {0}")]
    Wal(#[from] vdb_wal::WalError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Stored data failed validation (checksums, decoding); never served.
    #[error("corrupt: {0}")]
    Corrupt(String),
}

impl ShardError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ShardError::Invalid(ErrorCode::InvalidArgument, message.into())
    }
}

impl From<ShardError> for ApiError {
    fn from(e: ShardError) -> Self {
        match e {
            ShardError::Invalid(code, message) => ApiError::new(code, message),
            ShardError::NotFound(m) => ApiError::not_found(m),
            ShardError::AlreadyExists(m) => ApiError::new(ErrorCode::AlreadyExists, m),
            ShardError::Unavailable(m) | ShardError::HandingOff(m) => ApiError::unavailable(m),
            ShardError::WrongShard(m) => ApiError::new(ErrorCode::WrongShard, m),
            ShardError::WalTruncated(m) => ApiError::new(ErrorCode::WalTruncated, m),
            ShardError::NotPrimary(m) => ApiError::new(ErrorCode::NotPrimary, m),
            ShardError::StaleEpoch(m) => ApiError::new(ErrorCode::StaleEpoch, m),
            ShardError::NotEnoughReplicas(m) => ApiError::new(ErrorCode::NotEnoughReplicas, m),
            ShardError::ReplicationTimeout(m) => ApiError::new(ErrorCode::ReplicationTimeout, m),
            other => {
                // The cause stays in the log; the client gets no internals.
                tracing::error!(error = %other, "shard operation failed");
                ApiError::internal()
            }
        }
    }
}

pub type Result<T, E = ShardError> = std::result::Result<T, E>;
