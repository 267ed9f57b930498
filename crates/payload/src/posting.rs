//! Key sets: the posting lists payload indexes keep per value, and the sorted candidate sets
//! they answer with.

use std::cmp::Ordering;
use std::collections::{btree_set, BTreeSet};

/// Past this many keys a posting list moves from a sorted `Vec` to a `BTreeSet`.
///
/// Most values of a high-cardinality field (ids, timestamps, prices) hold one or a few keys,
/// where a `Vec` costs 24 bytes plus the keys while a `BTreeSet` allocates a ~100-byte node;
/// large lists need the set's O(log n) removal instead of a `Vec`'s memmove.
const SMALL_MAX: usize = 32;

/// The keys of the points holding one value of an indexed field.
#[derive(Clone, Debug)]
pub(crate) enum Posting {
    Small(Vec<u64>),
    Large(BTreeSet<u64>),
}

impl Posting {
    pub(crate) fn single(key: u64) -> Self {
        Posting::Small(vec![key])
    }

    pub(crate) fn insert(&mut self, key: u64) {
        match self {
            Posting::Small(keys) => {
                if let Err(at) = keys.binary_search(&key) {
                    if keys.len() < SMALL_MAX {
                        keys.insert(at, key);
                    } else {
                        let mut set: BTreeSet<u64> = keys.drain(..).collect();
                        set.insert(key);
                        *self = Posting::Large(set);
                    }
                }
            }
            Posting::Large(set) => {
                set.insert(key);
            }
        }
    }

    pub(crate) fn remove(&mut self, key: u64) {
        match self {
            Posting::Small(keys) => {
                if let Ok(at) = keys.binary_search(&key) {
                    keys.remove(at);
                }
            }
            Posting::Large(set) => {
                set.remove(&key);
                // Half the threshold, so a list hovering around it does not flip every write.
                if set.len() <= SMALL_MAX / 2 {
                    *self = Posting::Small(set.iter().copied().collect());
                }
            }
        }
    }

    pub(crate) fn contains(&self, key: u64) -> bool {
        match self {
            Posting::Small(keys) => keys.binary_search(&key).is_ok(),
            Posting::Large(set) => set.contains(&key),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Posting::Small(keys) => keys.len(),
            Posting::Large(set) => set.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys in ascending order.
    pub(crate) fn iter(&self) -> PostingIter<'_> {
        match self {
            Posting::Small(keys) => PostingIter::Small(keys.iter()),
            Posting::Large(set) => PostingIter::Large(set.iter()),
        }
    }

    /// Heap bytes, approximately (B-tree leaves hold up to 11 keys at ~2/3 fill, ~100 bytes).
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Posting::Small(keys) => keys.capacity() * 8,
            Posting::Large(set) => set.len().div_ceil(7) * 104,
        }
    }
}

/// Equal when the keys are, whichever representation holds them (a list that grew and shrank
/// may stay large where a fresh build is small).
impl PartialEq for Posting {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

pub(crate) enum PostingIter<'a> {
    Small(std::slice::Iter<'a, u64>),
    Large(btree_set::Iter<'a, u64>),
}

impl Iterator for PostingIter<'_> {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        match self {
            PostingIter::Small(it) => it.next().copied(),
            PostingIter::Large(it) => it.next().copied(),
        }
    }
}

/// An `f64` with a total order, as a `BTreeMap` key. JSON numbers are never NaN, and `-0.0`
/// is stored as `0.0` so that range bounds, which compare them equal, find both.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OrdF64(pub(crate) f64);

impl OrdF64 {
    pub(crate) fn new(v: f64) -> Self {
        // Adding +0.0 turns -0.0 into +0.0 and leaves every other value unchanged.
        OrdF64(v + 0.0)
    }
}

impl PartialEq for OrdF64 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Internal keys that may match a filter: a superset of the matching ones, sorted and without
/// duplicates. The caller still checks every candidate with [`crate::matches()`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Candidates {
    keys: Vec<u64>,
}

impl Candidates {
    /// Wraps keys, sorting and deduplicating them.
    pub fn from_keys(mut keys: Vec<u64>) -> Self {
        keys.sort_unstable();
        keys.dedup();
        Candidates { keys }
    }

    pub(crate) fn from_sorted(keys: Vec<u64>) -> Self {
        debug_assert!(keys.windows(2).all(|w| w[0] < w[1]));
        Candidates { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Binary search.
    pub fn contains(&self, key: u64) -> bool {
        self.keys.binary_search(&key).is_ok()
    }

    /// Keys in ascending order.
    pub fn iter(&self) -> std::iter::Copied<std::slice::Iter<'_, u64>> {
        self.keys.iter().copied()
    }

    pub fn as_slice(&self) -> &[u64] {
        &self.keys
    }

    pub fn into_vec(self) -> Vec<u64> {
        self.keys
    }
}

impl IntoIterator for Candidates {
    type Item = u64;
    type IntoIter = std::vec::IntoIter<u64>;
    fn into_iter(self) -> Self::IntoIter {
        self.keys.into_iter()
    }
}

impl<'a> IntoIterator for &'a Candidates {
    type Item = u64;
    type IntoIter = std::iter::Copied<std::slice::Iter<'a, u64>>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Keys in both sorted, deduplicated lists.
pub(crate) fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            Ordering::Less => i += 1,
            Ordering::Greater => j += 1,
            Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posting_grows_and_shrinks() {
        let mut p = Posting::single(5);
        for k in (0..100).rev() {
            p.insert(k);
        }
        assert!(matches!(p, Posting::Large(_)));
        assert_eq!(p.len(), 100);
        assert!(p.iter().eq(0..100));
        for k in 0..90 {
            p.remove(k);
        }
        assert!(matches!(p, Posting::Small(_)));
        assert!(p.iter().eq(90..100));
        assert!(p.contains(95) && !p.contains(5));
        p.insert(95);
        assert_eq!(p.len(), 10);
        let fresh = Posting::Large((90..100).collect());
        assert_eq!(p, fresh);
    }

    #[test]
    fn ordf64_normalises_negative_zero() {
        assert_eq!(OrdF64::new(-0.0), OrdF64::new(0.0));
        assert!(OrdF64::new(-1.0) < OrdF64::new(-0.0));
        assert!(OrdF64::new(f64::INFINITY) > OrdF64::new(1e308));
    }

    #[test]
    fn candidates_and_intersection() {
        let c = Candidates::from_keys(vec![5, 1, 5, 3]);
        assert_eq!(c.as_slice(), &[1, 3, 5]);
        assert!(c.contains(3) && !c.contains(4));
        assert_eq!(intersect(&[1, 2, 4, 8], &[2, 3, 4, 9]), vec![2, 4]);
        assert!(intersect(&[], &[1]).is_empty());
    }
}
