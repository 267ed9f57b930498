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
