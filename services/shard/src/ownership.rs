//! [`Owner`]: which points a local shard owns while its collection is resharded, built once per
//! request (or per installed write guard) from the wire [`Ownership`], never per point.
//!
//! The rule is [`vdb_sharding::Transition::owner`]: a point whose owner under `from` is cut over
//! belongs to its owner under `to`, every other point to its owner under `from`. A point that
//! neither map can route (a UUID under range sharding, an integer outside every range) has no
//! owner, so no shard owns it: reads skip it and `delete_not_owned` removes it.

use crate::error::{Result, ShardError};
use std::collections::BTreeSet;
use vdb_api::{Ownership, PointId, ShardMapSpec};
use vdb_sharding::{ShardMap, ShardingError, Transition};

pub struct Owner {
    transition: Transition,
    /// The shard asking.
    shard: u32,
}

impl Owner {
    /// Validates `o` (both maps, `cut_over` ⊆ shards of `from`, `shard` a shard of either map);
    /// a bad rule is the caller's mistake: 400 `invalid_argument`.
    pub fn new(o: &Ownership) -> Result<Self> {
        let map = |what: &str, spec: &ShardMapSpec| {
            ShardMap::new(&spec.sharding, &spec.shards)
                .map_err(|e| ShardError::invalid(format!("ownership.{what}: {e}")))
        };
        let (from, to) = (map("from", &o.from)?, map("to", &o.to)?);
        if let Some(s) = o.cut_over.iter().find(|s| !o.from.shards.contains(s)) {
            return Err(ShardError::invalid(format!(
                "ownership.cut_over names shard {s}, which is not a shard of ownership.from"
            )));
        }
        if !o.from.shards.contains(&o.shard) && !o.to.shards.contains(&o.shard) {
            return Err(ShardError::invalid(format!(
                "ownership.shard {} is a shard of neither ownership.from nor ownership.to",
                o.shard
            )));
        }
        let cut_over: BTreeSet<u32> = o.cut_over.iter().copied().collect();
        Ok(Owner { transition: Transition { from, to, cut_over }, shard: o.shard })
    }

    /// The shard asking.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// The shard that owns `id` now.
    pub fn owner(&self, id: &PointId) -> std::result::Result<u32, ShardingError> {
        self.transition.owner(id)
    }

    /// Whether this shard owns `id` now.
    pub fn owns(&self, id: &PointId) -> bool {
        self.owner(id) == Ok(self.shard)
    }

    /// The owner of `id` when this shard owned it under `from` and has handed it over (its
    /// source is cut over): a write naming it was routed with a stale map.
    pub fn given_away_to(&self, id: &PointId) -> Option<u32> {
        let from = self.transition.from.owner(id).ok()?;
        let now = self.owner(id).ok()?;
        (from == self.shard && now != self.shard).then_some(now)
    }

    /// The new owner of `id` when this shard owns it under `from` and another shard does
    /// under `to`: the point is being handed off.
    pub fn handed_off_to(&self, id: &PointId) -> Option<u32> {
        let from = self.transition.from.owner(id).ok()?;
        let to = self.transition.to.owner(id).ok()?;
        (from == self.shard && to != self.shard).then_some(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vdb_api::Sharding;

    fn spec(shards: &[u32]) -> ShardMapSpec {
        ShardMapSpec { sharding: Sharding::Hash, shards: shards.to_vec() }
    }

    fn ownership(shard: u32, cut_over: &[u32]) -> Ownership {
        Ownership { from: spec(&[0, 1]), to: spec(&[0, 1, 2]), cut_over: cut_over.to_vec(), shard }
    }

    #[test]
    fn every_point_has_exactly_one_owner_at_every_step() {
        for cut in [&[][..], &[0], &[0, 1]] {
            let owners: Vec<Owner> =
                (0..3).map(|s| Owner::new(&ownership(s, cut)).unwrap()).collect();
            for n in 0..2_000u64 {
                let id = PointId::Num(n);
                assert_eq!(owners.iter().filter(|o| o.owns(&id)).count(), 1, "{id} at {cut:?}");
            }
        }
        let before = Owner::new(&ownership(2, &[])).unwrap();
        assert!((0..2_000u64).all(|n| !before.owns(&PointId::Num(n))), "2 owns nothing yet");
    }

    #[test]
    fn hand_offs_are_points_leaving_this_shard() {
        let o = Owner::new(&ownership(0, &[])).unwrap();
        let leaving = (0..2_000u64).map(PointId::Num).filter(|id| o.handed_off_to(id).is_some());
        assert!(leaving.clone().count() > 0);
        for id in leaving {
            assert!(o.owns(&id), "not cut over yet: still owned here");
            assert!(matches!(o.handed_off_to(&id), Some(1 | 2)), "hash modulo moves ids anywhere");
        }
    }

    #[test]
    fn bad_rules_are_invalid_arguments() {
        let bad = [
            Ownership { from: spec(&[]), ..ownership(0, &[]) },
            Ownership { to: spec(&[1, 1]), ..ownership(0, &[]) },
            ownership(0, &[7]),
            ownership(9, &[]),
        ];
        for o in bad {
            match Owner::new(&o) {
                Err(ShardError::Invalid(vdb_api::ErrorCode::InvalidArgument, m)) => {
                    assert!(m.starts_with("ownership."), "{m}")
                }
                other => panic!("{o:?} gave {:?}", other.err()),
            }
        }
    }
}
