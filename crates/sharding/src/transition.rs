//! Resharding: routing while a collection moves from one shard map to another.
//!
//! # Protocol
//!
//! Changing a collection's shards (adding one, splitting a range, changing `virtual_nodes`)
//! changes the owner of some ids. Rather than flipping every router to the new map at once,
//! which would route reads to shards that do not have the data yet, the source shards are
//! *cut over one at a time*:
//!
//! 1. Start with `Transition { from: old, to: new, cut_over: {} }`: routing equals `old`.
//! 2. Pick a source shard `s`. Copy to their new owners the points of `s` for which
//!    [`Transition::moves`] returns `Some((s, _))`, while writes for `s` keep going to `s`
//!    (and are forwarded, or re-copied before the switch).
//! 3. Add `s` to `cut_over` (one metadata write that every router picks up): ids owned by `s`
//!    under `old` are now routed by `new`. Then delete the moved points from `s`.
//! 4. Repeat for each source shard. Once every source is cut over, routing equals `new`, and
//!    the transition is replaced by the plain `new` map.
//!
//! Because cut-over is decided by the *old* owner, the ids of one source shard switch all
//! together, and at every step each id has exactly one owner.

use crate::error::ShardingError;
use crate::map::ShardMap;
use crate::ShardId;
use std::collections::BTreeSet;
use vdb_api::{Ownership, PointId};

/// A collection in the middle of resharding from `from` to `to` (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The map before resharding.
    pub from: ShardMap,
    /// The map after resharding.
    pub to: ShardMap,
    /// Source shards (shards of `from`) whose ids are already routed by `to`.
    pub cut_over: BTreeSet<ShardId>,
}

impl Transition {
    /// A transition that has not cut over any source yet: it routes exactly like `from`.
    pub fn new(from: ShardMap, to: ShardMap) -> Transition {
        Transition { from, to, cut_over: BTreeSet::new() }
    }

    /// The transition described by a wire [`Ownership`] (its `shard` field, the shard
    /// asking, is the caller's business: it owns `id` when `owner(id)` is that shard).
    pub fn from_ownership(ownership: &Ownership) -> Result<Transition, ShardingError> {
        Ok(Transition {
            from: ShardMap::from_spec(&ownership.from)?,
            to: ShardMap::from_spec(&ownership.to)?,
            cut_over: ownership.cut_over.iter().copied().collect(),
        })
    }

    /// The transition as a wire [`Ownership`] for shard `shard`.
    pub fn ownership(&self, shard: ShardId) -> Ownership {
        Ownership {
            from: self.from.spec(),
            to: self.to.spec(),
            cut_over: self.cut_over.iter().copied().collect(),
            shard,
        }
    }

    /// The shard that owns `id` now: `to.owner(id)` if `from.owner(id)` is cut over, else
    /// `from.owner(id)`.
    pub fn owner(&self, id: &PointId) -> Result<ShardId, ShardingError> {
        let old = self.from.owner(id)?;
        if self.cut_over.contains(&old) {
            self.to.owner(id)
        } else {
            Ok(old)
        }
    }

    /// `Some((from_owner, to_owner))` when the owner of `id` differs between the two maps,
    /// `None` when it stays put. Independent of `cut_over`: this is the copy plan.
    ///
    /// Errors when either map cannot route `id` (a range map that does not cover it).
    pub fn moves(&self, id: &PointId) -> Result<Option<(ShardId, ShardId)>, ShardingError> {
        let old = self.from.owner(id)?;
        let new = self.to.owner(id)?;
        Ok((old != new).then_some((old, new)))
    }

    /// True when every shard of `from` is cut over, so routing equals `to`.
    pub fn is_complete(&self) -> bool {
        self.from.shards().iter().all(|s| self.cut_over.contains(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vdb_api::{ShardRange, Sharding};

    fn consistent(shards: &[ShardId]) -> ShardMap {
        ShardMap::new(&Sharding::Consistent { virtual_nodes: 150 }, shards).unwrap()
    }

    #[test]
    fn cut_over_one_source_at_a_time() {
        let t0 = Transition::new(consistent(&[0, 1, 2]), consistent(&[0, 1, 2, 3]));
        let mut t = t0.clone();
        t.cut_over.insert(1);
        let mut moved_from_1 = 0;
        for n in 0..10_000u64 {
            let id = PointId::Num(n);
            match t.moves(&id).unwrap() {
                Some((1, to)) => {
                    moved_from_1 += 1;
                    assert_eq!(to, 3);
                    assert_eq!(t.owner(&id).unwrap(), 3);
                }
                Some((src, _)) => assert_eq!(t.owner(&id).unwrap(), src),
                None => assert_eq!(t.owner(&id).unwrap(), t.from.owner(&id).unwrap()),
            }
        }
        assert!(moved_from_1 > 0);
        assert!(!t.is_complete());
        t.cut_over.extend([0, 2]);
        assert!(t.is_complete());
    }

    #[test]
    fn errors_of_either_map_surface() {
        let from = ShardMap::new(&Sharding::Hash, &[0, 1]).unwrap();
        let to = ShardMap::new(
            &Sharding::Range { ranges: vec![ShardRange { shard: 0, from: 0, to: Some(10) }] },
            &[0],
        )
        .unwrap();
        let mut t = Transition::new(from, to);
        let far = PointId::Num(500);
        assert_eq!(t.moves(&far), Err(ShardingError::NoShardForId(far)));
        t.cut_over.extend([0, 1]);
        assert_eq!(t.owner(&far), Err(ShardingError::NoShardForId(far)));
        assert_eq!(t.owner(&PointId::Num(3)), Ok(0));
    }

    #[test]
    fn round_trips_through_the_wire_ownership() {
        let mut t = Transition::new(
            ShardMap::new(&Sharding::Hash, &[2, 1]).unwrap(),
            consistent(&[1, 2, 3]),
        );
        t.cut_over.insert(2);
        let wire = t.ownership(3);
        assert_eq!(wire.from.shards, vec![1, 2]);
        assert_eq!(wire.cut_over, vec![2]);
        assert_eq!(wire.shard, 3);
        assert_eq!(Transition::from_ownership(&wire).unwrap(), t);
        let mut bad = wire.clone();
        bad.to.shards.clear();
        assert_eq!(Transition::from_ownership(&bad), Err(ShardingError::NoShards));
    }

    proptest! {
        #[test]
        fn empty_cut_over_is_from_and_full_cut_over_is_to(
            old in prop::collection::btree_set(0u32..64, 1..8),
            new in prop::collection::btree_set(0u32..64, 1..8),
            hash_from in any::<bool>(),
            ids in prop::collection::vec(any::<u64>(), 1..100),
        ) {
            let old: Vec<ShardId> = old.into_iter().collect();
            let new: Vec<ShardId> = new.into_iter().collect();
            let from = if hash_from {
                ShardMap::new(&Sharding::Hash, &old).unwrap()
            } else {
                consistent(&old)
            };
            let mut t = Transition::new(from, consistent(&new));
            let full = Transition { cut_over: old.iter().copied().collect(), ..t.clone() };
            prop_assert!(full.is_complete());
            for n in &ids {
                let id = PointId::Num(*n);
                prop_assert_eq!(t.owner(&id), t.from.owner(&id));
                prop_assert_eq!(full.owner(&id), t.to.owner(&id));
                let (a, b) = (t.from.owner(&id).unwrap(), t.to.owner(&id).unwrap());
                prop_assert_eq!(t.moves(&id).unwrap(), (a != b).then_some((a, b)));
            }
            // Cutting over one source changes exactly that source's moving ids.
            t.cut_over.insert(old[0]);
            for n in &ids {
                let id = PointId::Num(*n);
                let expected = match t.moves(&id).unwrap() {
                    Some((src, dst)) if src == old[0] => dst,
                    _ => t.from.owner(&id).unwrap(),
                };
                prop_assert_eq!(t.owner(&id).unwrap(), expected);
            }
        }
    }
}
