//! Local shard configuration, description and the shard node's status.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// How vectors are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Cosine similarity; higher is better.
    Cosine,
    /// Euclidean distance; lower is better.
    L2,
    /// Dot product; higher is better.
    Dot,
}

impl Metric {
    /// True when a larger score means a closer point.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::L2)
    }
}

/// The scalar type vectors are stored as (the index quantises on insert).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScalarType {
    #[default]
    F32,
    F16,
    I8,
}

/// HNSW graph parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HnswConfig {
    /// Edges per node (connectivity).
    #[serde(default = "default_m")]
    pub m: usize,
    /// Candidate list size while building.
    #[serde(default = "default_ef_construction")]
    pub ef_construction: usize,
    /// Default candidate list size while searching.
    #[serde(default = "default_ef_search")]
    pub ef_search: usize,
}

fn default_m() -> usize {
    16
}
fn default_ef_construction() -> usize {
    128
}
fn default_ef_search() -> usize {
    64
}

impl Default for HnswConfig {
    fn default() -> Self {
        HnswConfig {
            m: default_m(),
            ef_construction: default_ef_construction(),
            ef_search: default_ef_search(),
        }
    }
}

/// The role a local shard plays in its replica set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    Primary,
    Replica,
}

/// Body of `PUT /v1/shards/{name}`: create a local shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// The collection this shard belongs to.
    pub collection: String,
    /// The shard's number within its collection.
    #[serde(default)]
    pub shard_id: u32,
    /// Vector dimension (1..=65536).
    pub dimension: usize,
    pub metric: Metric,
    #[serde(default)]
    pub hnsw: HnswConfig,
    #[serde(default)]
    pub scalar: ScalarType,
    #[serde(default)]
    pub role: Role,
    /// The epoch in which this shard holds its role.
    #[serde(default)]
    pub epoch: u64,
}

/// Whether a local shard is serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShardState {
    /// Loading its snapshot and replaying its WAL.
    Recovering,
    Active,
    /// Recovery refused its data (e.g. corruption in the middle of the WAL); see the log.
    Failed,
}

/// The kind of a payload index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayloadIndexKind {
    /// Exact string values.
    Keyword,
    /// 64-bit integers (exact match and ranges).
    Integer,
    /// Numbers (ranges).
    Float,
}

/// Body of `PUT /v1/shards/{name}/index`: index a payload field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePayloadIndex {
    /// Dotted path of the field.
    pub field: String,
    pub kind: PayloadIndexKind,
}

/// Statistics of the HNSW index.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IndexStats {
    /// Live vectors in the index.
    pub vectors: u64,
    /// Slots reserved.
    pub capacity: u64,
    /// Bytes the index uses (graph and vectors).
    pub memory_bytes: u64,
    /// Graph nodes and edges at the base level.
    pub nodes: u64,
    pub edges: u64,
}

/// `GET /v1/shards/{name}`: a local shard described.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShardInfo {
    pub name: String,
    pub config: ShardConfig,
    pub state: ShardState,
    pub points: u64,
    /// LSN of the last write applied.
    pub last_lsn: u64,
    /// LSN covered by the latest snapshot (0 when none).
    pub snapshot_lsn: u64,
    pub index: IndexStats,
    /// Approximate bytes held by payloads.
    pub payload_bytes: u64,
    pub payload_indexes: BTreeMap<String, PayloadIndexKind>,
    /// Searches served since the node started (each query of a batch counts).
    #[serde(default)]
    pub searches: u64,
    /// The write guard installed on this shard, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<crate::replication::WriteGuard>,
    /// Role, epoch, lease and replica progress.
    #[serde(default)]
    pub replication: crate::replication::ReplicationInfo,
}

/// `GET /v1/shards`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShardList {
    pub shards: Vec<ShardInfo>,
}

/// One local shard in the node status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShardStatus {
    pub name: String,
    pub collection: String,
    pub shard_id: u32,
    pub role: Role,
    pub epoch: u64,
    pub last_lsn: u64,
    pub points: u64,
    pub state: ShardState,
    /// A write guard is installed (a resharding or move is under way); see `GET
    /// /v1/shards/{name}` for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guarded: bool,
}

/// `GET /v1/status`: what this node hosts, for routers and replication.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeStatus {
    pub node_id: String,
    pub version: String,
    pub ready: bool,
    pub shards: Vec<ShardStatus>,
}

/// `POST /v1/shards/{name}/snapshot`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotInfo {
    /// The LSN the snapshot covers.
    pub lsn: u64,
    pub size_bytes: u64,
    pub duration_seconds: f64,
}
