//! The error type of every metastore operation.

use std::path::PathBuf;

/// What went wrong talking to the metastore.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The store could not be reached or did not answer in time; retrying may help.
    #[error("metastore unavailable: {0}")]
    Unavailable(String),
    /// A watch asked for history the store no longer keeps; list again and watch from the
    /// listing's revision.
    #[error("metastore history compacted past the requested revision")]
    Compacted,
    /// The lease expired or was revoked (its keys are gone).
    #[error("lease expired or not found")]
    LeaseExpired,
    /// The local metastore file is locked by another process.
    #[error("metastore file is in use by another process: {}", .0.display())]
    InUse(PathBuf),
    /// The stored state cannot be read back.
    #[error("metastore data is corrupt: {0}")]
    Corrupt(String),
    /// A file system operation of the local backend failed.
    #[error("metastore i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The metastore URL names no known backend.
    #[error("invalid metastore url {0:?} (expected local:///path or etcd://host:port[,...])")]
    InvalidUrl(String),
    /// Anything else the backend reported.
    #[error("metastore error: {0}")]
    Other(String),
}
