//! Pure functions the router uses to map point ids onto shards and shard replicas onto
//! nodes. No I/O, no async: everything here is deterministic, so every router instance
//! computes the same answers from the same metadata.
//!
//! # Layout
//!
//! - [`hash`](hash64): the one hash function, 64 bits of MurmurHash3 x64_128 (seed 0),
//!   whose exact bits are part of the contract.
//! - `map`: [`ShardMap`], a validated [`Sharding`](vdb_api::Sharding) over a collection's
//!   shard ids (or a wire [`ShardMapSpec`](vdb_api::ShardMapSpec)), and [`ShardMap::owner`]:
//!   hash modulo, integer ranges, or a consistent-hash ring.
//! - `ring`: the consistent-hash ring ([`vnode_hash`] says where ring points sit).
//! - `transition`: [`Transition`] (wire form [`Ownership`](vdb_api::Ownership)), routing
//!   during resharding, one source shard cut over at a time (the module docs describe the
//!   protocol).
//! - `imbalance`: [`detect_imbalance`], flagging a shard much larger than the mean.
//! - `placement`: [`place`] and [`rebalance`], replicas on distinct, evenly loaded nodes.
//! - `error`: [`ShardingError`], lowercase messages that end up in 400 responses.
//!
//! The statistical behaviour (spread over shards, ids moved when a shard is added) is
//! measured by `tests/distribution.rs`; run it with `--nocapture` to see the numbers.

#![deny(missing_docs)]

mod error;
mod hash;
mod imbalance;
mod map;
mod placement;
mod ring;
mod transition;

pub use error::ShardingError;
pub use hash::hash64;
pub use imbalance::{detect_imbalance, Imbalance};
pub use map::{ShardMap, MAX_VIRTUAL_NODES, MIN_VIRTUAL_NODES};
pub use placement::{apply_moves, place, rebalance, Move, NodeLoad, Placement, PlacementError};
pub use ring::vnode_hash;
pub use transition::Transition;

/// The id of a shard within its collection. Ids need not be contiguous: shards are added
/// and removed online.
pub type ShardId = u32;

/// The id of a shard node (as the router's membership names it).
pub type NodeId = String;
