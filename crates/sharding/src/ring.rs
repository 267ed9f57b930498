//! The consistent-hash ring: `virtual_nodes` points per shard, looked up by binary search,
//! with multi-probe lookups for an even spread.
//!
//! Ring point `v` of shard `s` sits at [`vnode_hash`]`(s, v)`. An id is looked up at
//! [`PROBES`] positions derived from `hash64(id.to_bytes())` ([`probe`]); each position's
//! successor is the first ring point at or after it, wrapping past `u64::MAX` to the first
//! point, and the id belongs to the shard of the successor *closest* to its probe (ties to the
//! earlier probe). With one probe this is the classic ring, whose arcs vary by about
//! 1/√virtual_nodes; several probes average that out (multi-probe consistent hashing,
//! Appleton & O'Reilly 2015). The ring is a function of the set of shards and
//! `virtual_nodes` alone, so every router builds the same one; adding a shard only inserts
//! points, which can only shorten some probe's distance to a point *of the new shard*, so the
//! ids that change owner all move to the new shard.

use crate::hash::hash64;
use crate::ShardId;

/// The ring position of virtual node `vnode` (0-based) of `shard`: [`hash64`] of 8 bytes,
/// the shard id as a little-endian `u32` followed by `vnode` as a little-endian `u32`.
pub fn vnode_hash(shard: ShardId, vnode: u32) -> u64 {
    let mut key = [0u8; 8];
    key[..4].copy_from_slice(&shard.to_le_bytes());
    key[4..].copy_from_slice(&vnode.to_le_bytes());
    hash64(&key)
}

/// Probes per lookup.
pub const PROBES: u64 = 8;

/// Probe `p` of an id whose hash is `hash`: the hash itself for probe 0, then SplitMix64
/// steps of `hash + p·γ` (γ = 0x9e3779b97f4a7c15).
pub fn probe(hash: u64, p: u64) -> u64 {
    if p == 0 {
        return hash;
    }
    let mut z = hash.wrapping_add(p.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A sorted ring of `(position, shard)` points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ring {
    /// Sorted by position, then shard id, so equal positions (vanishingly rare) still order
    /// the same way on every router.
    points: Vec<(u64, ShardId)>,
}

impl Ring {
    /// Builds the ring of `shards` (non-empty) with `virtual_nodes` (≥ 1) points each.
    pub(crate) fn new(shards: &[ShardId], virtual_nodes: u32) -> Ring {
        let mut points: Vec<(u64, ShardId)> = shards
            .iter()
            .flat_map(|&s| (0..virtual_nodes).map(move |v| (vnode_hash(s, v), s)))
            .collect();
        points.sort_unstable();
        points.dedup();
        Ring { points }
    }

    /// The first ring point at or after `position`, wrapping around. O(log n).
    pub(crate) fn successor(&self, position: u64) -> (u64, ShardId) {
        let i = self.points.partition_point(|&(pos, _)| pos < position);
        // Past the last point the ring wraps to the first one.
        *self.points.get(i).unwrap_or(&self.points[0])
    }

    /// The shard of the ring point closest after any of the id's probes. O(PROBES · log n).
    pub(crate) fn owner(&self, hash: u64) -> ShardId {
        (0..PROBES)
            .map(|p| {
                let at = probe(hash, p);
                let (pos, shard) = self.successor(at);
                (pos.wrapping_sub(at), p, shard)
            })
            .min()
            .expect("at least one probe")
            .2
    }

    /// The ring points in order (for tests).
    #[cfg(test)]
    pub(crate) fn points(&self) -> &[(u64, ShardId)] {
        &self.points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_has_virtual_nodes_points_per_shard_sorted() {
        let ring = Ring::new(&[3, 9, 40], 150);
        assert_eq!(ring.points().len(), 450);
        assert!(ring.points().windows(2).all(|w| w[0] <= w[1]));
        for s in [3, 9, 40] {
            assert_eq!(ring.points().iter().filter(|p| p.1 == s).count(), 150);
        }
    }

    #[test]
    fn lookup_takes_first_point_at_or_after_and_wraps() {
        let ring = Ring::new(&[1, 2, 3], 4);
        let pts = ring.points().to_vec();
        let (first, last) = (pts[0], pts[pts.len() - 1]);
        // Exactly on a point: that point's shard.
        for &(pos, shard) in &pts {
            assert_eq!(ring.owner(pos), shard);
        }
        // Just after a point: the next point.
        assert_eq!(ring.successor(pts[0].0 + 1), pts[1]);
        // Before the first point and after the last: the first point.
        assert_eq!(ring.successor(0), first);
        if last.0 < u64::MAX {
            assert_eq!(ring.successor(last.0 + 1), first);
        }
        assert_eq!(ring.successor(u64::MAX), if last.0 == u64::MAX { last } else { first });
    }

    #[test]
    fn the_closest_probe_wins() {
        let ring = Ring::new(&[1, 2, 3, 4], 16);
        for hash in (0..2000u64).map(|i| i.wrapping_mul(0x2545_f491_4f6c_dd1d)) {
            let best = (0..PROBES)
                .map(|p| {
                    let at = probe(hash, p);
                    (ring.successor(at).0.wrapping_sub(at), ring.successor(at).1)
                })
                .min_by_key(|c| c.0)
                .unwrap();
            assert_eq!(ring.owner(hash), best.1);
        }
    }

    #[test]
    fn vnode_hash_is_documented_bytes() {
        let mut key = Vec::new();
        key.extend_from_slice(&7u32.to_le_bytes());
        key.extend_from_slice(&3u32.to_le_bytes());
        assert_eq!(vnode_hash(7, 3), hash64(&key));
        assert_ne!(vnode_hash(7, 3), vnode_hash(3, 7));
    }
}
