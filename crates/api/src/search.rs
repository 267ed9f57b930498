//! Search requests and results.

use crate::collection::Ownership;
use crate::filter::Filter;
use crate::ids::PointId;
use crate::Payload;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a search is executed. The planner picks one unless the request forces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchPlan {
    /// Approximate search in the HNSW graph, no filter.
    Hnsw,
    /// Approximate search in the HNSW graph, skipping points the filter rejects.
    FilteredHnsw,
    /// Brute force over every point that matches the filter (all points when none).
    Exact,
}

/// What plan a request asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanChoice {
    /// Let the planner choose from the filter's selectivity.
    #[default]
    Auto,
    /// Always use the graph (filtered when there is a filter).
    Hnsw,
    /// Always brute force.
    Exact,
}

/// `POST /v1/shards/{name}/search`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub vector: Vec<f32>,
    /// How many results (1..=10000).
    #[serde(default = "default_k")]
    pub k: usize,
    /// Candidate list size for this query (defaults to the shard's `ef_search`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Drop results worse than this score (below it, or above it for `l2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_threshold: Option<f32>,
    #[serde(default)]
    pub with_payload: bool,
    #[serde(default)]
    pub with_vector: bool,
    /// Brute force: the exact top-k (same as `plan: exact`).
    #[serde(default)]
    pub exact: bool,
    #[serde(default)]
    pub plan: PlanChoice,
    /// Answer as if points owned by another shard (per this rule) did not exist: one more
    /// filter condition. Routers send it during a resharding so every point is answered by
    /// exactly one shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership: Option<Ownership>,
}

fn default_k() -> usize {
    10
}

impl SearchRequest {
    pub fn new(vector: Vec<f32>, k: usize) -> Self {
        SearchRequest {
            vector,
            k,
            ef: None,
            filter: None,
            score_threshold: None,
            with_payload: false,
            with_vector: false,
            exact: false,
            plan: PlanChoice::Auto,
            ownership: None,
        }
    }
}

/// A search hit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScoredPoint {
    pub id: PointId,
    /// Cosine similarity, dot product, or Euclidean distance (lower is better only for `l2`).
    pub score: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Payload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

/// Hits best first; ties broken by id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchResult {
    pub points: Vec<ScoredPoint>,
    /// The plan that ran.
    pub plan: SearchPlan,
    /// Set by a shard node on reads with `consistency=quorum`: where this copy's log stood
    /// when the read began. Never set by a router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<crate::LogPosition>,
}

/// `POST /v1/shards/{name}/search/batch`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchSearchRequest {
    pub searches: Vec<SearchRequest>,
}

/// One result per search, in request order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchSearchResult {
    pub results: Vec<SearchResult>,
    /// Set by a shard node on reads with `consistency=quorum`: where this copy's log stood
    /// when the read began. Never set by a router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<crate::LogPosition>,
}
