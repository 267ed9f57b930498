//! Load imbalance: flags the largest shard of a collection when it holds far more points than
//! the average shard (a hot range, or too few virtual nodes).

use crate::ShardId;
use serde::Serialize;

/// The largest shard of a collection, when it is too large compared with the mean.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Imbalance {
    /// The largest shard (the lowest id among equally large ones).
    pub shard: ShardId,
    /// Points it holds.
    pub points: u64,
    /// Mean points per shard of the collection.
    pub mean: f64,
    /// `points / mean`.
    pub ratio: f64,
}

/// Returns the largest shard when `largest / mean > max_ratio`.
///
/// `None` for an empty list, or when the collection holds fewer than `min_points` points in
/// all (small collections are noisy and cheap, not worth resharding).
pub fn detect_imbalance(
    points_per_shard: &[(ShardId, u64)],
    max_ratio: f64,
    min_points: u64,
) -> Option<Imbalance> {
    let total: u128 = points_per_shard.iter().map(|&(_, p)| u128::from(p)).sum();
    if total == 0 || total < u128::from(min_points) {
        return None;
    }
    let &(shard, points) =
        points_per_shard.iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))?;
    let mean = total as f64 / points_per_shard.len() as f64;
    let ratio = points as f64 / mean;
    (ratio > max_ratio).then_some(Imbalance { shard, points, mean, ratio })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_the_largest_shard_above_the_ratio() {
        let found = detect_imbalance(&[(0, 100), (5, 400), (9, 100), (12, 200)], 1.5, 0).unwrap();
        assert_eq!(found, Imbalance { shard: 5, points: 400, mean: 200.0, ratio: 2.0 });
        let json = serde_json::to_value(&found).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"shard": 5, "points": 400, "mean": 200.0, "ratio": 2.0})
        );
        // Exactly at the ratio is not flagged.
        assert_eq!(detect_imbalance(&[(0, 100), (5, 400), (9, 100), (12, 200)], 2.0, 0), None);
    }

    #[test]
    fn balanced_small_and_empty_collections_are_not_flagged() {
        assert_eq!(detect_imbalance(&[], 1.1, 0), None);
        assert_eq!(detect_imbalance(&[(0, 0), (1, 0)], 1.1, 0), None);
        assert_eq!(detect_imbalance(&[(0, 100), (1, 101)], 1.1, 0), None);
        // 10 points in all: below min_points, however skewed.
        assert_eq!(detect_imbalance(&[(0, 10), (1, 0)], 1.1, 11), None);
        assert!(detect_imbalance(&[(0, 10), (1, 0)], 1.1, 10).is_some());
        // One shard is its own mean.
        assert_eq!(detect_imbalance(&[(3, 1_000)], 1.0, 0), None);
    }

    #[test]
    fn ties_pick_the_lowest_shard_id_and_large_counts_do_not_overflow() {
        let found = detect_imbalance(&[(8, 50), (2, 50), (4, 0)], 1.2, 0).unwrap();
        assert_eq!(found.shard, 2);
        let huge =
            detect_imbalance(&[(0, u64::MAX), (1, u64::MAX), (2, 0)], 1.2, u64::MAX).unwrap();
        assert_eq!(huge.shard, 0);
        assert!((huge.ratio - 1.5).abs() < 1e-9);
    }
}
