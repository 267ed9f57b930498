//! Point writes and reads.

use crate::collection::Ownership;
use crate::filter::Filter;
use crate::ids::PointId;
use crate::Payload;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A point to upsert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub id: PointId,
    pub vector: Vec<f32>,
    /// A JSON object; omitted or null means empty. Anything else is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
}

/// `PUT /v1/shards/{name}/points`: insert or replace a batch of points, all or nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertPoints {
    pub points: Vec<Point>,
}

/// The answer to any write: it is durable per the node's fsync policy once returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WriteResult {
    /// The LSN the write was logged at (unchanged when the write touched nothing).
    pub lsn: u64,
    /// Points the write touched.
    pub affected: u64,
}

/// `POST /v1/shards/{name}/points/get`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetPoints {
    pub ids: Vec<PointId>,
    #[serde(default)]
    pub with_vector: bool,
    #[serde(default = "yes")]
    pub with_payload: bool,
    /// Answer as if points owned by another shard (per this rule) did not exist; routers
    /// send it during a resharding so every point is answered by exactly one shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership: Option<Ownership>,
}

pub(crate) fn yes() -> bool {
    true
}

/// A stored point as returned by reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Record {
    pub id: PointId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Payload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

/// Found points, in the order asked (missing ids are left out).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Records {
    pub points: Vec<Record>,
    /// Present and true when the primary of some shard did not answer: a replica did
    /// (`consistency=eventual`, the default), or the primary was not among the copies of a
    /// `quorum` read. The answer may then miss writes acknowledged in `async` mode in the last
    /// moments (bounded by the router's `--max-replica-lag-ms`). Never set by a shard.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// Set by a shard node on reads with `consistency=quorum`: where this copy's log stood
    /// when the read began. Never set by a router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<crate::LogPosition>,
}

/// Which points a write applies to: `ids` or `filter`, exactly one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<PointId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
}

/// `POST /v1/shards/{name}/points/delete`.
pub type DeletePoints = PointSelector;

/// `POST /v1/shards/{name}/points/payload` (merge keys) and
/// `PUT /v1/shards/{name}/points/payload` (replace the whole payload).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPayload {
    #[schema(value_type = Object)]
    pub payload: Payload,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<PointId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
}

/// `POST /v1/shards/{name}/points/payload/delete`: remove keys (dotted paths).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeletePayload {
    pub keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<PointId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
}

/// `POST /v1/shards/{name}/points/count`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountPoints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Answer as if points owned by another shard (per this rule) did not exist; routers
    /// send it during a resharding so every point is answered by exactly one shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership: Option<Ownership>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CountResult {
    pub count: u64,
    /// Present and true when the primary of some shard did not answer: a replica did
    /// (`consistency=eventual`, the default), or the primary was not among the copies of a
    /// `quorum` read. The answer may then miss writes acknowledged in `async` mode in the last
    /// moments (bounded by the router's `--max-replica-lag-ms`). Never set by a shard.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// Set by a shard node on reads with `consistency=quorum`: where this copy's log stood
    /// when the read began. Never set by a router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<crate::LogPosition>,
}

/// `POST /v1/shards/{name}/points/scroll`: points in id order, a page at a time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScrollPoints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Page size (1..=10000).
    #[serde(default = "default_scroll_limit")]
    pub limit: usize,
    /// Start at this id (inclusive): the `next_offset` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<PointId>,
    #[serde(default = "yes")]
    pub with_payload: bool,
    #[serde(default)]
    pub with_vector: bool,
    /// Answer as if points owned by another shard (per this rule) did not exist; routers
    /// send it during a resharding so every point is answered by exactly one shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership: Option<Ownership>,
}

fn default_scroll_limit() -> usize {
    10
}

impl Default for ScrollPoints {
    fn default() -> Self {
        ScrollPoints {
            filter: None,
            limit: default_scroll_limit(),
            offset: None,
            with_payload: true,
            with_vector: false,
            ownership: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScrollResult {
    pub points: Vec<Record>,
    /// The offset of the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<PointId>,
    /// Present and true when the primary of some shard did not answer: a replica did
    /// (`consistency=eventual`, the default), or the primary was not among the copies of a
    /// `quorum` read. The answer may then miss writes acknowledged in `async` mode in the last
    /// moments (bounded by the router's `--max-replica-lag-ms`). Never set by a shard.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// Set by a shard node on reads with `consistency=quorum`: where this copy's log stood
    /// when the read began. Never set by a router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<crate::LogPosition>,
}
