//! Statistical behaviour of the shard maps on 1,000,000 ids: load spread over shards, and the
//! share of ids that move when a shard is added. Run with `--nocapture` to see the numbers.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Builder;
use vdb_api::{PointId, Sharding, DEFAULT_VIRTUAL_NODES};
use vdb_sharding::{ShardId, ShardMap};

const IDS: u64 = 1_000_000;

/// Bound on max/mean load with 150 vnodes, over 4 and 8 shards and both id kinds. Measured
/// with 8-probe lookups: 1.041 (4 shards) and 1.035 (8 shards); the ring is fixed, so the
/// numbers are too. With one probe a shard's share of the ring spreads by about
/// 1/sqrt(vnodes) (it measured 1.082 and 1.147); `vnode_sweep` prints the trend.
const CONSISTENT_MAX_OVER_MEAN: f64 = 1.05;

fn id_sets() -> Vec<(&'static str, Vec<PointId>)> {
    let sequential = (0..IDS).map(PointId::Num).collect();
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let uuids = (0..IDS)
        .map(|_| PointId::Uuid(Builder::from_random_bytes(rng.gen()).into_uuid()))
        .collect();
    vec![("sequential integers", sequential), ("random uuids", uuids)]
}

fn consistent(shards: &[ShardId]) -> ShardMap {
    ring(shards, DEFAULT_VIRTUAL_NODES)
}

fn ring(shards: &[ShardId], virtual_nodes: u32) -> ShardMap {
    ShardMap::new(&Sharding::Consistent { virtual_nodes }, shards).unwrap()
}

/// Points per shard, in the order of `map.shards()`.
fn loads(map: &ShardMap, ids: &[PointId]) -> Vec<u64> {
    let mut counts = vec![0u64; map.shards().len()];
    for id in ids {
        let owner = map.owner(id).unwrap();
        counts[map.shards().binary_search(&owner).unwrap()] += 1;
    }
    counts
}

fn max_min_over_mean(counts: &[u64]) -> (f64, f64) {
    let mean = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
    let max = *counts.iter().max().unwrap() as f64;
    let min = *counts.iter().min().unwrap() as f64;
    (max / mean, min / mean)
}

#[test]
fn consistent_ring_spreads_load_evenly() {
    for (kind, ids) in id_sets() {
        for n in [4u32, 8] {
            // Non-contiguous ids, as after shards were added and removed.
            let shards: Vec<ShardId> = (0..n).map(|i| i * 3 + 1).collect();
            let counts = loads(&consistent(&shards), &ids);
            let (max, min) = max_min_over_mean(&counts);
            println!(
                "consistent, {DEFAULT_VIRTUAL_NODES} vnodes, {n} shards, {kind}: \
                 max/mean {max:.4}, min/mean {min:.4}, counts {counts:?}"
            );
            assert!(
                max <= CONSISTENT_MAX_OVER_MEAN,
                "max/mean {max:.4} > {CONSISTENT_MAX_OVER_MEAN}"
            );
        }
    }
}

#[test]
fn adding_a_shard_moves_about_one_in_n_plus_one_ids_all_to_it() {
    for (kind, ids) in id_sets() {
        for n in [4u32, 8] {
            let before: Vec<ShardId> = (0..n).collect();
            let mut after = before.clone();
            after.push(n);
            let (old, new) = (consistent(&before), consistent(&after));
            let mut moved = 0u64;
            for id in &ids {
                let (a, b) = (old.owner(id).unwrap(), new.owner(id).unwrap());
                if a != b {
                    assert_eq!(b, n, "{id} moved from {a} to {b}, not to the new shard");
                    moved += 1;
                }
            }
            let fraction = moved as f64 / ids.len() as f64;
            let ideal = 1.0 / f64::from(n + 1);
            println!(
                "consistent, {n} -> {} shards, {kind}: moved {fraction:.4} of ids \
                 (ideal {ideal:.4}, ratio {:.3})",
                n + 1,
                fraction / ideal
            );
            assert!(
                (fraction / ideal - 1.0).abs() <= 0.25,
                "moved {fraction:.4}, ideal {ideal:.4}"
            );
        }
    }
}

#[test]
fn hash_modulo_spreads_within_two_percent() {
    for (kind, ids) in id_sets() {
        for shards in [vec![0u32, 1, 2, 3], vec![2, 3, 5, 8, 13, 21, 34, 55]] {
            let map = ShardMap::new(&Sharding::Hash, &shards).unwrap();
            let counts = loads(&map, &ids);
            let (max, min) = max_min_over_mean(&counts);
            println!(
                "hash modulo, {} shards, {kind}: max/mean {max:.4}, min/mean {min:.4}",
                shards.len()
            );
            assert!(max <= 1.02 && min >= 0.98, "max {max:.4}, min {min:.4}");
        }
    }
}

/// Informational: how the spread shrinks with more virtual nodes (asserts only that it does).
#[test]
fn vnode_sweep() {
    let ids: Vec<PointId> = (0..IDS).map(PointId::Num).collect();
    for n in [4u32, 8] {
        let shards: Vec<ShardId> = (0..n).collect();
        let mut worst = Vec::new();
        for vnodes in [150, 500, 1000, 5000] {
            let (max, min) = max_min_over_mean(&loads(&ring(&shards, vnodes), &ids));
            println!(
                "consistent, {vnodes} vnodes, {n} shards, sequential integers: \
                 max/mean {max:.4}, min/mean {min:.4}"
            );
            worst.push(max);
        }
        assert!(worst[3] < worst[0], "more vnodes should spread better: {worst:?}");
    }
}
