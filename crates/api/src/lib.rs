//! Wire types of every VDB endpoint.
//!
//! Everything that crosses a process boundary as JSON is defined here once, with its serde
//! representation and its OpenAPI schema (`utoipa`). The crate does no I/O and pulls in no
//! heavy dependencies, so clients, services and tests can all share it.
//!
//! Layout:
//! - [`collection`]: collections as the router serves them (sharding strategies).
//! - [`ids`]: point ids (unsigned integers or UUIDs) and their ordering.
//! - [`filter`]: the payload filter language (must / should / must_not, match, range, ...).
//! - [`shard`]: local shard configuration, description and node status.
//! - [`points`]: point writes and reads (upsert, get, delete, payload, count, scroll).
//! - [`search`]: search requests and results.
//! - [`replication`]: the WAL as JSON records and the write guard (resharding, moves).
//! - [`embed`]: the embedder's requests and answers (embed, OpenAI embeddings, tokenize, info).
//! - [`error`]: the JSON error body and the one `ErrorCode` → HTTP status table.

pub mod collection;
pub mod embed;
pub mod error;
pub mod filter;
pub mod ids;
pub mod points;
pub mod replication;
pub mod search;
pub mod shard;

pub use collection::*;
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use filter::{Condition, FieldCondition, Filter, Match, MatchValue, Range};
pub use ids::PointId;
pub use points::*;
pub use replication::{
    AckMode, LogPosition, Positioned, ReadConsistency, ReadParams, ReplicaProgress, ReplicaState,
    ReplicaTarget, ReplicateAck, ReplicationInfo, RoleAssignment, WalEntry, WalPage, WalRecord,
    WriteGuard, WriteParams, DEFAULT_WAL_PAGE, MAX_WAL_PAGE,
};
pub use search::*;
pub use shard::*;

/// A JSON object used as a point payload.
pub type Payload = serde_json::Map<String, serde_json::Value>;
