//! Errors of shard maps: bad sharding configurations and ids that no shard owns.
//!
//! Messages are lowercase and meant for users: the router returns them in 400 responses.

use crate::ShardId;
use thiserror::Error;
use vdb_api::PointId;

/// Why a [`crate::ShardMap`] could not be built, or could not route an id.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ShardingError {
    /// The collection lists no shard.
    #[error("a collection needs at least one shard")]
    NoShards,
    /// The same shard id is listed twice.
    #[error("shard {0} is listed more than once")]
    DuplicateShard(ShardId),
    /// `virtual_nodes` is outside [`crate::MIN_VIRTUAL_NODES`]..=[`crate::MAX_VIRTUAL_NODES`].
    #[error("virtual_nodes must be between 1 and 10000, got {0}")]
    VirtualNodes(u32),
    /// A range's `from` is not below its `to`.
    #[error("range {range} of shard {shard} is empty: from must be less than to")]
    EmptyRange {
        /// The shard the range was given to.
        shard: ShardId,
        /// The range as `from..to` (or `from..` when it runs through `u64::MAX`).
        range: String,
    },
    /// Two ranges share at least one id.
    #[error(
        "range {first} of shard {first_shard} overlaps range {second} of shard {second_shard}"
    )]
    OverlappingRanges {
        /// The shard of the range that starts first.
        first_shard: ShardId,
        /// The range that starts first.
        first: String,
        /// The shard of the range that starts second.
        second_shard: ShardId,
        /// The range that starts second.
        second: String,
    },
    /// A range names a shard that is not one of the collection's shards.
    #[error("a range is given to shard {0}, which is not a shard of the collection")]
    RangeForUnknownShard(ShardId),
    /// A shard of a range-sharded collection has no range, so it would never own a point.
    #[error("shard {0} has no range")]
    ShardWithoutRange(ShardId),
    /// Range sharding routes integer ids only.
    #[error("point id {0} is a uuid, but the collection is sharded by integer ranges")]
    UuidInRangeSharding(PointId),
    /// An integer id falls between (or outside) the configured ranges.
    #[error("point id {0} is outside every shard range of the collection")]
    NoShardForId(PointId),
}
