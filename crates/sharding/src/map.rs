//! `ShardMap`: a validated sharding strategy over a collection's shard ids, answering "which
//! shard owns this point id".

use crate::error::ShardingError;
use crate::hash::hash64;
use crate::ring::Ring;
use crate::ShardId;
use std::collections::BTreeSet;
use vdb_api::{PointId, ShardMapSpec, ShardRange, Sharding};

/// The fewest virtual nodes a shard may have on a consistent-hash ring.
pub const MIN_VIRTUAL_NODES: u32 = 1;
/// The most virtual nodes a shard may have on a consistent-hash ring (bounds the ring's memory).
pub const MAX_VIRTUAL_NODES: u32 = 10_000;

/// Maps point ids onto the shards of one collection.
///
/// Built once per collection (and per shard-set change) by [`ShardMap::new`], which validates
/// the configuration; [`ShardMap::owner`] is then a pure lookup:
///
/// - [`Sharding::Hash`]: `shards[hash64(id) % shards.len()]` over the shard ids sorted
///   ascending ([`crate::hash64`] is MurmurHash3 x64_128, seed 0, first 64 bits).
/// - [`Sharding::Range`]: the shard whose range holds the integer id; UUIDs and ids outside
///   every range are errors. O(log ranges).
/// - [`Sharding::Consistent`]: the shard of the first ring point at or after `hash64(id)`,
///   wrapping around (see [`crate::vnode_hash`] for where ring points sit). O(log ring).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardMap {
    /// Sorted ascending, no duplicates.
    shards: Vec<ShardId>,
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Hash,
    /// Sorted by `from`, non-overlapping, each non-empty.
    Range(Vec<ShardRange>),
    Consistent {
        virtual_nodes: u32,
        ring: Ring,
    },
}

impl ShardMap {
    /// Validates `sharding` over `shards` (any order, ids need not be contiguous) and builds
    /// the map.
    ///
    /// Errors: no shard, a duplicate shard id, `virtual_nodes` outside 1..=10000, and for
    /// range sharding an empty range (`from >= to`), overlapping ranges, a range naming an
    /// unknown shard, or a shard with no range.
    pub fn new(sharding: &Sharding, shards: &[ShardId]) -> Result<ShardMap, ShardingError> {
        let mut sorted = shards.to_vec();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return Err(ShardingError::NoShards);
        }
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(ShardingError::DuplicateShard(w[0]));
        }
        let kind = match sharding {
            Sharding::Hash => Kind::Hash,
            Sharding::Range { ranges } => Kind::Range(validate_ranges(ranges, &sorted)?),
            &Sharding::Consistent { virtual_nodes } => {
                if !(MIN_VIRTUAL_NODES..=MAX_VIRTUAL_NODES).contains(&virtual_nodes) {
                    return Err(ShardingError::VirtualNodes(virtual_nodes));
                }
                Kind::Consistent { virtual_nodes, ring: Ring::new(&sorted, virtual_nodes) }
            }
        };
        Ok(ShardMap { shards: sorted, kind })
    }

    /// The shard that owns `id`.
    ///
    /// Errors only under range sharding: [`ShardingError::UuidInRangeSharding`] and
    /// [`ShardingError::NoShardForId`].
    pub fn owner(&self, id: &PointId) -> Result<ShardId, ShardingError> {
        match &self.kind {
            Kind::Hash => {
                let n = self.shards.len() as u64;
                Ok(self.shards[(hash64(&id.to_bytes()) % n) as usize])
            }
            Kind::Range(ranges) => {
                let PointId::Num(n) = *id else {
                    return Err(ShardingError::UuidInRangeSharding(*id));
                };
                // The last range starting at or before `n` is the only one that can hold it.
                let i = ranges.partition_point(|r| r.from <= n);
                match i.checked_sub(1).map(|i| &ranges[i]) {
                    Some(r) if r.to.is_none_or(|to| n < to) => Ok(r.shard),
                    _ => Err(ShardingError::NoShardForId(*id)),
                }
            }
            Kind::Consistent { ring, .. } => Ok(ring.owner(hash64(&id.to_bytes()))),
        }
    }

    /// Builds the map of a wire [`ShardMapSpec`] (same validation as [`ShardMap::new`]).
    pub fn from_spec(spec: &ShardMapSpec) -> Result<ShardMap, ShardingError> {
        ShardMap::new(&spec.sharding, &spec.shards)
    }

    /// The map as its wire type (shards sorted, ranges sorted by `from`).
    pub fn spec(&self) -> ShardMapSpec {
        ShardMapSpec { sharding: self.sharding(), shards: self.shards.clone() }
    }

    /// The collection's shard ids, sorted ascending.
    pub fn shards(&self) -> &[ShardId] {
        &self.shards
    }

    /// The strategy as its wire type (ranges sorted by `from`).
    pub fn sharding(&self) -> Sharding {
        match &self.kind {
            Kind::Hash => Sharding::Hash,
            Kind::Range(ranges) => Sharding::Range { ranges: ranges.clone() },
            Kind::Consistent { virtual_nodes, .. } => {
                Sharding::Consistent { virtual_nodes: *virtual_nodes }
            }
        }
    }
}

/// Checks ranges against the sorted shard ids and returns them sorted by `from`.
fn validate_ranges(
    ranges: &[ShardRange],
    shards: &[ShardId],
) -> Result<Vec<ShardRange>, ShardingError> {
    for r in ranges {
        if shards.binary_search(&r.shard).is_err() {
            return Err(ShardingError::RangeForUnknownShard(r.shard));
        }
        if r.to.is_some_and(|to| r.from >= to) {
            return Err(ShardingError::EmptyRange { shard: r.shard, range: show(r) });
        }
    }
    let mut sorted = ranges.to_vec();
    sorted.sort_by_key(|r| (r.from, r.shard, r.to));
    for w in sorted.windows(2) {
        // `a` starts no later than `b`; they overlap unless `a` ends at or before `b.from`.
        let (a, b) = (&w[0], &w[1]);
        if a.to.is_none_or(|to| to > b.from) {
            return Err(ShardingError::OverlappingRanges {
                first_shard: a.shard,
                first: show(a),
                second_shard: b.shard,
                second: show(b),
            });
        }
    }
    let covered: BTreeSet<ShardId> = sorted.iter().map(|r| r.shard).collect();
    if let Some(&s) = shards.iter().find(|s| !covered.contains(s)) {
        return Err(ShardingError::ShardWithoutRange(s));
    }
    Ok(sorted)
}

/// A range as users wrote it: `from..to`, or `from..` when it runs through `u64::MAX`.
fn show(r: &ShardRange) -> String {
    match r.to {
        Some(to) => format!("{}..{}", r.from, to),
        None => format!("{}..", r.from),
    }
}

#[cfg(test)]
#[path = "map_tests.rs"]
mod tests;
