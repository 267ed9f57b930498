//! Unit and property tests of `ShardMap`: validation errors, range edges, ring wraparound.

use super::*;
use proptest::prelude::*;
use uuid::Uuid;

fn range(shard: ShardId, from: u64, to: Option<u64>) -> ShardRange {
    ShardRange { shard, from, to }
}

fn ranges(rs: Vec<ShardRange>) -> Sharding {
    Sharding::Range { ranges: rs }
}

fn num(n: u64) -> PointId {
    PointId::Num(n)
}

#[test]
fn rejects_no_shards_and_duplicates() {
    for s in [Sharding::Hash, Sharding::Consistent { virtual_nodes: 150 }] {
        assert_eq!(ShardMap::new(&s, &[]), Err(ShardingError::NoShards));
        assert_eq!(ShardMap::new(&s, &[4, 1, 4]), Err(ShardingError::DuplicateShard(4)));
    }
    assert_eq!(ShardMap::new(&ranges(vec![]), &[]), Err(ShardingError::NoShards));
}

#[test]
fn rejects_virtual_nodes_out_of_bounds() {
    for v in [0, 10_001, u32::MAX] {
        let err = ShardMap::new(&Sharding::Consistent { virtual_nodes: v }, &[0]).unwrap_err();
        assert_eq!(err, ShardingError::VirtualNodes(v));
        assert!(err.to_string().starts_with("virtual_nodes must be between 1 and 10000"));
    }
    for v in [1, 10_000] {
        assert!(ShardMap::new(&Sharding::Consistent { virtual_nodes: v }, &[0, 5]).is_ok());
    }
}

#[test]
fn rejects_bad_ranges() {
    let empty = ranges(vec![range(0, 10, Some(10))]);
    let err = ShardMap::new(&empty, &[0]).unwrap_err();
    assert_eq!(err, ShardingError::EmptyRange { shard: 0, range: "10..10".into() });
    assert_eq!(err.to_string(), "range 10..10 of shard 0 is empty: from must be less than to");
    let backwards = ranges(vec![range(0, 10, Some(3))]);
    assert!(matches!(ShardMap::new(&backwards, &[0]), Err(ShardingError::EmptyRange { .. })));

    let overlap = ranges(vec![range(1, 50, None), range(0, 0, Some(51))]);
    let err = ShardMap::new(&overlap, &[0, 1]).unwrap_err();
    assert_eq!(err.to_string(), "range 0..51 of shard 0 overlaps range 50.. of shard 1");
    // Two open-ended ranges always overlap; so do identical ones.
    let open = ranges(vec![range(0, 5, None), range(1, 9, None)]);
    assert!(matches!(ShardMap::new(&open, &[0, 1]), Err(ShardingError::OverlappingRanges { .. })));
    let same = ranges(vec![range(0, 5, Some(9)), range(0, 5, Some(9))]);
    assert!(matches!(ShardMap::new(&same, &[0]), Err(ShardingError::OverlappingRanges { .. })));

    let unknown = ranges(vec![range(0, 0, Some(10)), range(7, 10, None)]);
    assert_eq!(ShardMap::new(&unknown, &[0, 1]), Err(ShardingError::RangeForUnknownShard(7)));
    let uncovered = ranges(vec![range(0, 0, None)]);
    let err = ShardMap::new(&uncovered, &[0, 1]).unwrap_err();
    assert_eq!(err, ShardingError::ShardWithoutRange(1));
    assert_eq!(err.to_string(), "shard 1 has no range");
}

#[test]
fn adjacent_ranges_and_boundaries() {
    // Non-contiguous shard ids, ranges given out of order, a gap at 200..300.
    let s = ranges(vec![range(42, 300, None), range(7, 0, Some(100)), range(13, 100, Some(200))]);
    let map = ShardMap::new(&s, &[42, 13, 7]).unwrap();
    assert_eq!(map.shards(), &[7, 13, 42]);
    assert_eq!(map.owner(&num(0)).unwrap(), 7);
    assert_eq!(map.owner(&num(99)).unwrap(), 7);
    assert_eq!(map.owner(&num(100)).unwrap(), 13); // `to` is exclusive
    assert_eq!(map.owner(&num(199)).unwrap(), 13);
    assert_eq!(map.owner(&num(200)), Err(ShardingError::NoShardForId(num(200))));
    assert_eq!(map.owner(&num(299)), Err(ShardingError::NoShardForId(num(299))));
    assert_eq!(map.owner(&num(300)).unwrap(), 42);
    assert_eq!(map.owner(&num(u64::MAX)).unwrap(), 42); // `to: None` includes u64::MAX
    let ranges_sorted = match map.sharding() {
        Sharding::Range { ranges } => ranges.iter().map(|r| r.from).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(ranges_sorted, vec![0, 100, 300]);
}

#[test]
fn range_edges_at_zero_and_u64_max() {
    // A range ending at u64::MAX (exclusive) leaves u64::MAX itself unowned.
    let s = ranges(vec![range(1, 5, Some(u64::MAX))]);
    let map = ShardMap::new(&s, &[1]).unwrap();
    assert_eq!(map.owner(&num(u64::MAX - 1)).unwrap(), 1);
    let err = map.owner(&num(u64::MAX)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("point id {} is outside every shard range of the collection", u64::MAX)
    );
    assert_eq!(map.owner(&num(4)), Err(ShardingError::NoShardForId(num(4))));
    // A one-id range at u64::MAX.
    let s = ranges(vec![range(0, 0, Some(u64::MAX)), range(9, u64::MAX, None)]);
    let map = ShardMap::new(&s, &[0, 9]).unwrap();
    assert_eq!(map.owner(&num(u64::MAX)).unwrap(), 9);
    assert_eq!(map.owner(&num(u64::MAX - 1)).unwrap(), 0);
    assert_eq!(map.owner(&num(0)).unwrap(), 0);
}

#[test]
fn range_rejects_uuids() {
    let map = ShardMap::new(&ranges(vec![range(0, 0, None)]), &[0]).unwrap();
    let id = PointId::Uuid(Uuid::nil());
    let err = map.owner(&id).unwrap_err();
    assert_eq!(err, ShardingError::UuidInRangeSharding(id));
    assert_eq!(
        err.to_string(),
        "point id 00000000-0000-0000-0000-000000000000 is a uuid, but the collection is sharded by integer ranges"
    );
}

#[test]
fn hash_indexes_sorted_shard_list() {
    let map = ShardMap::new(&Sharding::Hash, &[30, 10, 20]).unwrap();
    for n in 0..1000u64 {
        let id = num(n);
        let i = (hash64(&id.to_bytes()) % 3) as usize;
        assert_eq!(map.owner(&id).unwrap(), [10, 20, 30][i]);
    }
    // A single shard owns everything, UUIDs included.
    let one = ShardMap::new(&Sharding::Hash, &[5]).unwrap();
    assert_eq!(one.owner(&PointId::Uuid(Uuid::max())).unwrap(), 5);
}

#[test]
fn consistent_ring_wraps_around() {
    let map = ShardMap::new(&Sharding::Consistent { virtual_nodes: 3 }, &[2, 11]).unwrap();
    let Kind::Consistent { ring, .. } = &map.kind else { unreachable!() };
    let first = ring.points()[0];
    let last = *ring.points().last().unwrap();
    // Ids that hash past the last ring point find the first point as their successor.
    let wrapped: Vec<PointId> =
        (0..100_000u64).map(num).filter(|id| hash64(&id.to_bytes()) > last.0).take(20).collect();
    assert!(!wrapped.is_empty());
    for id in &wrapped {
        assert_eq!(ring.successor(hash64(&id.to_bytes())), first);
        assert!([2, 11].contains(&map.owner(id).unwrap()));
    }
}

#[test]
fn consistent_ring_depends_only_on_the_shard_set() {
    let s = Sharding::Consistent { virtual_nodes: 150 };
    let a = ShardMap::new(&s, &[1, 5, 9]).unwrap();
    let b = ShardMap::new(&s, &[9, 1, 5]).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.sharding(), s);
}

fn sharding_strategy() -> impl Strategy<Value = Sharding> {
    prop_oneof![
        Just(Sharding::Hash),
        (1u32..300).prop_map(|virtual_nodes| Sharding::Consistent { virtual_nodes }),
    ]
}

fn point_id() -> impl Strategy<Value = PointId> {
    prop_oneof![
        any::<u64>().prop_map(PointId::Num),
        any::<u128>().prop_map(|u| PointId::Uuid(Uuid::from_u128(u))),
    ]
}

proptest! {
    #[test]
    fn owner_is_one_of_the_shards_and_deterministic(
        sharding in sharding_strategy(),
        shards in prop::collection::btree_set(any::<u32>(), 1..20),
        ids in prop::collection::vec(point_id(), 1..50),
    ) {
        let mut shards: Vec<ShardId> = shards.into_iter().collect();
        let map = ShardMap::new(&sharding, &shards).unwrap();
        shards.reverse();
        let again = ShardMap::new(&sharding, &shards).unwrap();
        for id in &ids {
            let owner = map.owner(id).unwrap();
            prop_assert!(shards.contains(&owner));
            prop_assert_eq!(owner, map.owner(id).unwrap());
            prop_assert_eq!(owner, again.owner(id).unwrap());
        }
    }

    #[test]
    fn range_owner_is_the_covering_range(
        cuts in prop::collection::btree_set(1u64..u64::MAX, 1..10),
        ids in prop::collection::vec(any::<u64>(), 1..50),
    ) {
        // Ranges 0..c1, c1..c2, ..., ck.. over shards 100, 101, ...: every id is covered.
        let mut bounds: Vec<u64> = vec![0];
        bounds.extend(cuts);
        let rs: Vec<ShardRange> = bounds
            .iter()
            .enumerate()
            .map(|(i, &from)| range(100 + i as u32, from, bounds.get(i + 1).copied()))
            .collect();
        let shards: Vec<ShardId> = rs.iter().map(|r| r.shard).collect();
        let map = ShardMap::new(&ranges(rs.clone()), &shards).unwrap();
        for n in ids {
            let owner = map.owner(&num(n)).unwrap();
            let r = rs.iter().find(|r| r.shard == owner).unwrap();
            prop_assert!(r.from <= n && r.to.is_none_or(|to| n < to));
        }
    }
}
