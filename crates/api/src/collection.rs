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
