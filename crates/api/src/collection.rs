//! Collections as the router serves them: how points are mapped onto shards.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a collection maps point ids onto its shards.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum Sharding {
    /// MurmurHash3 of the id's byte encoding ([`crate::PointId::to_bytes`]) modulo the number
    /// of shards.
    #[default]
    Hash,
    /// Integer ids by configured ranges; UUID ids are rejected.
    Range { ranges: Vec<ShardRange> },
    /// A hash ring with `virtual_nodes` points per shard.
    Consistent {
        #[serde(default = "default_virtual_nodes")]
        virtual_nodes: u32,
    },
}

/// The default number of virtual nodes per shard on a consistent-hash ring.
pub const DEFAULT_VIRTUAL_NODES: u32 = 150;

fn default_virtual_nodes() -> u32 {
    DEFAULT_VIRTUAL_NODES
}

/// Integer ids `from..to` (`to` exclusive; absent means up to and including `u64::MAX`)
/// belong to `shard`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShardRange {
    pub shard: u32,
    pub from: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
}

/// A collection's shard map: its strategy and the ids of its shards (not always contiguous:
/// shards are added and removed online).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShardMapSpec {
    pub sharding: Sharding,
    pub shards: Vec<u32>,
}

/// Which points local shard `shard` owns while its collection moves from one shard map to
/// another. Sources are cut over one at a time: a point whose owner under `from` is in
/// `cut_over` belongs to its owner under `to`, every other point to its owner under `from`.
/// Outside a resharding `from == to` and `cut_over` is empty.
///
/// Routers attach it to reads during a resharding so each point is counted by exactly one
/// shard; a shard node installs it as a write guard on a source shard (see the router docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ownership {
    pub from: ShardMapSpec,
    pub to: ShardMapSpec,
    #[serde(default)]
    pub cut_over: Vec<u32>,
    /// The shard asking: points owned by another shard are skipped.
    pub shard: u32,
}

/// When a write to a replicated shard is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum WriteConsistency {
    /// Once durable on the primary; replicas follow in the background.
    #[default]
    Async,
    /// Once `acks` replicas (not counting the primary) confirm durability.
    SemiSync { acks: u32 },
    /// Once every in-sync replica confirms.
    Sync,
}

/// Query of the router's point-write endpoints: this write's consistency, when it should be
/// weaker than the collection's `write_consistency` (a stronger one is refused: 400).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams,
)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WriteQuery {
    /// `async`, `semi_sync` (with `acks`) or `sync`; absent: the collection's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<crate::AckMode>,
    /// `semi_sync`: how many replicas must confirm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acks: Option<u32>,
}

impl WriteQuery {
    /// The consistency asked for, if any.
    pub fn requested(&self) -> Result<Option<WriteConsistency>, String> {
        match (self.consistency, self.acks) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err("acks needs consistency=semi_sync".into()),
            (Some(crate::AckMode::SemiSync), Some(acks)) if acks > 0 => {
                Ok(Some(WriteConsistency::SemiSync { acks }))
            }
            (Some(crate::AckMode::SemiSync), _) => {
                Err("consistency=semi_sync needs acks of at least 1".into())
            }
            (Some(_), Some(_)) => Err("acks goes only with consistency=semi_sync".into()),
            (Some(crate::AckMode::Async), None) => Ok(Some(WriteConsistency::Async)),
            (Some(crate::AckMode::Sync), None) => Ok(Some(WriteConsistency::Sync)),
        }
    }
}

impl WriteConsistency {
    /// Whether `self` promises no more than `other` (async < semi_sync by acks < sync).
    pub fn at_most(self, other: WriteConsistency) -> bool {
        use WriteConsistency::*;
        match (self, other) {
            (Async, _) | (_, Sync) => true,
            (SemiSync { acks: a }, SemiSync { acks: b }) => a <= b,
            _ => false,
        }
    }
}

/// A collection's embedding model: its points and searches may then carry `text`, which the
/// router turns into vectors through the embedder serving `model`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingConfig {
    /// The model's name: one the router serves (`--embedder MODEL=URL`), as that embedder's
    /// `/info` reports it.
    pub model: String,
    /// The payload key an upserted point's text is stored under (not stored when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_text: Option<String>,
    /// Cut texts longer than the model's input limit instead of refusing them with 422.
    #[serde(default)]
    pub truncate: bool,
}

/// `PUT /v1/collections/{name}`: create a collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    /// Vector dimension (1..=65536). May be omitted when `embedding` names a model: the
    /// model's dimension is taken; when given, it must equal the model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimension: Option<usize>,
    pub metric: crate::Metric,
    #[serde(default)]
    pub hnsw: crate::HnswConfig,
    #[serde(default)]
    pub scalar: crate::ScalarType,
    /// Number of shards (1..=1024).
    #[serde(default = "one")]
    pub shard_count: u32,
    /// Copies of every shard, on distinct nodes.
    #[serde(default = "one")]
    pub replication_factor: u32,
    #[serde(default)]
    pub sharding: Sharding,
    #[serde(default)]
    pub write_consistency: WriteConsistency,
    /// Fewest replicas (besides the primary) that must be in sync for `sync` and `semi_sync`
    /// writes to be taken: below it they fail with 503 `not_enough_replicas` instead of
    /// silently weakening. Default: 1 when `replication_factor` > 1, else 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_in_sync: Option<u32>,
    /// Add a shard automatically when the largest shard holds more than `imbalance_ratio`
    /// times the mean.
    #[serde(default)]
    pub auto_reshard: bool,
    /// The embedding model that turns the `text` of points and searches into vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingConfig>,
}

fn one() -> u32 {
    1
}

/// `PATCH /v1/collections/{name}`: what can change on a live collection. Absent fields keep
/// their value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCollection {
    /// Copies of every shard (2..=16, at most the registered nodes; a collection created with
    /// one copy may grow, a replicated one keeps at least 2). The controller adds replicas
    /// (each catches up from its primary's log or a snapshot, then joins the in-sync set) or
    /// removes them (unhealthy, then out-of-sync ones first) online, one per shard per health
    /// interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<u32>,
    /// Default candidate list size of searches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_search: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_consistency: Option<WriteConsistency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_in_sync: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_reshard: Option<bool>,
}

/// The stored configuration of a collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CollectionConfig {
    pub dimension: usize,
    pub metric: crate::Metric,
    pub hnsw: crate::HnswConfig,
    pub scalar: crate::ScalarType,
    pub replication_factor: u32,
    pub sharding: Sharding,
    pub write_consistency: WriteConsistency,
    /// See [`CreateCollection::min_in_sync`].
    #[serde(default)]
    pub min_in_sync: u32,
    pub auto_reshard: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingConfig>,
}

/// Whether every shard of a collection can answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CollectionStatus {
    /// Every shard's node is healthy.
    Green,
    /// A resharding or a move is under way; everything answers.
    Yellow,
    /// Some shard's node is down: searches fail unless partial results are allowed.
    Red,
}

/// One shard of a collection: where it lives and what it holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShardPlacementInfo {
    pub shard: u32,
    /// Nodes holding a copy; the first is the primary.
    pub nodes: Vec<String>,
    /// Bumped at every failover: at most one primary acknowledges writes per epoch.
    pub epoch: u64,
    /// Replicas whose confirmations count for `sync`/`semi_sync` writes and which failover
    /// may promote.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_sync: Vec<String>,
    /// Per replica, how far it has confirmed the primary's log (records and seconds of lag),
    /// as the primary reports it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<crate::replication::ReplicaProgress>,
    /// Points in the shard (absent when its node did not answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<u64>,
    /// Bytes held by the shard's index and payloads (absent when its node did not answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Searches the shard served since its node started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub searches_total: Option<u64>,
    /// Writes the shard logged (its last LSN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes_total: Option<u64>,
    /// Searches per second since this router's previous look at the shard (absent on the
    /// first look, or when that was more than 5 minutes ago).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_rate: Option<f64>,
    /// Writes per second, measured the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_rate: Option<f64>,
    /// Whether the primary's node passes health checks.
    pub healthy: bool,
}

/// A collection whose largest shard exceeds the mean by more than the configured ratio.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImbalanceInfo {
    pub shard: u32,
    pub points: u64,
    pub mean: f64,
    pub ratio: f64,
}

/// A resharding in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReshardingInfo {
    pub from: ShardMapSpec,
    pub to: ShardMapSpec,
    /// Source shards already handed over.
    pub cut_over: Vec<u32>,
    /// Points copied so far.
    pub copied: u64,
}

/// `GET /v1/collections/{name}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CollectionInfo {
    pub name: String,
    pub config: CollectionConfig,
    pub status: CollectionStatus,
    /// Sum over shards that answered.
    pub points: u64,
    pub shards: Vec<ShardPlacementInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imbalance: Option<ImbalanceInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resharding: Option<ReshardingInfo>,
    /// The shard copy moving between nodes, while one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving: Option<ShardMoveInfo>,
}

/// `GET /v1/collections`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CollectionList {
    pub collections: Vec<String>,
    /// The embedding model of each collection that has one.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub embedding_models: std::collections::BTreeMap<String, String>,
}

/// `POST /v1/collections/{name}/shards`: add one shard (online).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddShard {
    /// For range sharding: the new shard map's ranges (they must cover what the old ones did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<ShardRange>>,
}

/// A point as the router takes it: a `vector`, or a `text` that the collection's embedding
/// model turns into one (exactly one of them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionPoint {
    pub id: crate::PointId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    /// Embedded by the collection's model (`embedding`); stored in the payload under
    /// `embedding.store_text` when that is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A JSON object; omitted or null means empty. Anything else is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
}

impl From<crate::Point> for CollectionPoint {
    fn from(p: crate::Point) -> Self {
        CollectionPoint { id: p.id, vector: Some(p.vector), text: None, payload: p.payload }
    }
}

/// `PUT /v1/collections/{name}/points`: insert or replace points (by vector or by text).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionUpsertPoints {
    pub points: Vec<CollectionPoint>,
}

impl From<crate::UpsertPoints> for CollectionUpsertPoints {
    fn from(u: crate::UpsertPoints) -> Self {
        CollectionUpsertPoints { points: u.points.into_iter().map(Into::into).collect() }
    }
}

/// `POST /v1/collections/{name}/search`: like a shard search, plus `offset` and partial
/// results. The query is a `vector`, or a `text` the collection's embedding model turns into
/// one (exactly one of them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionSearch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    /// Embedded by the collection's model (`embedding`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// How many results (1..=10000).
    #[serde(default = "default_k")]
    pub k: usize,
    /// Skip this many of the best results (paging).
    #[serde(default)]
    pub offset: usize,
    /// Candidate list size for this query (defaults to the collection's `ef_search`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<crate::Filter>,
    /// Drop results worse than this score (below it, or above it for `l2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_threshold: Option<f32>,
    #[serde(default)]
    pub with_payload: bool,
    #[serde(default)]
    pub with_vector: bool,
    /// Brute force over the whole collection: the exact top-k.
    #[serde(default)]
    pub exact: bool,
    #[serde(default)]
    pub plan: crate::PlanChoice,
    /// Answer from the shards that can when some cannot (the response lists the missing
    /// ones) instead of failing with 503.
    #[serde(default)]
    pub allow_partial: bool,
}

fn default_k() -> usize {
    10
}

impl CollectionSearch {
    pub fn new(vector: Vec<f32>, k: usize) -> Self {
        CollectionSearch { vector: Some(vector), text: None, ..Self::text(String::new(), k) }
    }

    /// A search by text (the collection must have an embedding model).
    pub fn text(text: impl Into<String>, k: usize) -> Self {
        CollectionSearch {
            vector: None,
            text: Some(text.into()),
            k,
            offset: 0,
            ef: None,
            filter: None,
            score_threshold: None,
            with_payload: false,
            with_vector: false,
            exact: false,
            plan: crate::PlanChoice::Auto,
            allow_partial: false,
        }
    }
}

/// Global top-k of a collection search, best first, ties by id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CollectionSearchResult {
    pub points: Vec<crate::ScoredPoint>,
    /// True when some shards did not answer (only with `allow_partial`).
    #[serde(default)]
    pub partial: bool,
    /// The shards that did not answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_shards: Vec<u32>,
    /// Present and true when the primary of some shard did not answer: a replica did
    /// (`consistency=eventual`, the default), or the primary was not among the copies of a
    /// `quorum` read. The answer may then miss writes acknowledged in `async` mode in the last
    /// moments (bounded by the router's `--max-replica-lag-ms`). Never set by a shard.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

/// `POST /v1/collections/{name}/search/batch`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionBatchSearch {
    pub searches: Vec<CollectionSearch>,
}

/// One result per search, in request order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CollectionBatchSearchResult {
    pub results: Vec<CollectionSearchResult>,
}

/// A write routed to several shards: the sum of what they touched.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CollectionWriteResult {
    /// Points the write touched.
    pub affected: u64,
    /// Shards the write was applied on.
    pub shards: Vec<u32>,
}

/// A shard node known to the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    pub id: String,
    pub url: String,
    /// Passed its last health check.
    pub healthy: bool,
    /// Consecutive failed health checks.
    pub failed_checks: u32,
    /// Local shards hosted, by placement.
    pub shards: u32,
    /// Points over its local shards at the last check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<u64>,
}

/// `PUT /v1/cluster/nodes/{id}`: register a shard node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterNode {
    /// Base URL the routers reach it at, e.g. `http://10.0.0.5:6334`.
    pub url: String,
}

/// `GET /v1/cluster`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterInfo {
    /// This router's id.
    pub router: String,
    /// The router currently elected controller, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    pub nodes: Vec<NodeInfo>,
    pub collections: Vec<String>,
}

/// A move of one shard's copy from one node to another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShardMoveInfo {
    pub collection: String,
    pub shard: u32,
    pub from: String,
    pub to: String,
}

/// `POST /v1/collections/{name}/shards/{shard}/move`: move the shard's copy on `from` to `to`
/// (a node without a copy of that shard). A replicated shard's copy moves as a new replica
/// that catches up, joins the in-sync set and then replaces it (a primary hands over to it
/// first); an unreplicated shard is copied, caught up from its log and switched over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveShard {
    pub from: String,
    pub to: String,
}

/// `POST /v1/cluster/rebalance` and `POST /v1/cluster/nodes/{id}/drain`: the moves started
/// (they run in the background, one after another).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShardMoves {
    pub moves: Vec<ShardMoveInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AckMode;

    #[test]
    fn a_write_may_only_weaken_its_collections_consistency() {
        use WriteConsistency::*;
        let semi = |acks| SemiSync { acks };
        for (weaker, stronger) in
            [(Async, semi(1)), (semi(1), semi(2)), (semi(2), Sync), (Async, Sync)]
        {
            assert!(
                weaker.at_most(stronger) && !stronger.at_most(weaker),
                "{weaker:?} < {stronger:?}"
            );
        }
        assert!(Sync.at_most(Sync) && semi(1).at_most(semi(1)));
        let query = |consistency, acks| WriteQuery { consistency, acks }.requested();
        assert_eq!(query(None, None), Ok(None));
        assert_eq!(query(Some(AckMode::SemiSync), Some(2)), Ok(Some(semi(2))));
        assert_eq!(query(Some(AckMode::Sync), None), Ok(Some(Sync)));
        assert!(query(Some(AckMode::SemiSync), None).is_err());
        assert!(query(Some(AckMode::SemiSync), Some(0)).is_err());
        assert!(query(None, Some(1)).is_err());
        assert!(query(Some(AckMode::Async), Some(1)).is_err());
    }
}
