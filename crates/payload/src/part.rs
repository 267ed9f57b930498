//! Partial answers of the payload indexes: the keys one condition may match, as a union of
//! posting lists, and the numeric intervals that select those lists.

use crate::posting::{Candidates, Posting};
use vdb_api::Range;

/// A range touching more distinct values than this is not answered by the index: collecting
/// that many posting lists per query would cost more than checking points directly.
pub(crate) const RANGE_SCAN_LIMIT: usize = 1 << 16;

/// The closed interval `[lo, hi]` holding every value the range accepts (its exclusive
/// bounds are re-checked per value); `None` when it accepts nothing.
pub(crate) fn interval(r: &Range) -> Option<(f64, f64)> {
    let lows = r.gt.into_iter().chain(r.gte);
    let highs = r.lt.into_iter().chain(r.lte);
    if lows.clone().chain(highs.clone()).any(f64::is_nan) {
        return None;
    }
    let lo = lows.fold(f64::NEG_INFINITY, f64::max);
    let hi = highs.fold(f64::INFINITY, f64::min);
    (lo <= hi).then_some((lo, hi))
}

/// The integers `i` with `lo <= i as f64 <= hi`. Found by binary search on the conversion
/// itself rather than by rounding the bounds, because near 2^63 many integers round to the
/// same f64 and hand-written rounding would miss some of them.
pub(crate) fn int_interval(lo: f64, hi: f64) -> Option<std::ops::RangeInclusive<i64>> {
    let first = first_true(|i| i as f64 >= lo)?;
    let last = match first_true(|i| i as f64 > hi) {
        None => i64::MAX,
        Some(i) => i.checked_sub(1)?,
    };
    (first <= last).then_some(first..=last)
}

/// The smallest `i` for which `pred` holds, given that it is false and then true over i64.
fn first_true(pred: impl Fn(i64) -> bool) -> Option<i64> {
    if !pred(i64::MAX) {
        return None;
    }
    // Invariant: the answer lies in [lo, hi] and pred(hi) holds.
    let (mut lo, mut hi) = (i128::from(i64::MIN), i128::from(i64::MAX));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid as i64) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo as i64)
}

/// Keys that may satisfy one condition: the union of some posting lists and sorted key lists.
#[derive(Default)]
pub(crate) struct Part<'a> {
    postings: Vec<&'a Posting>,
    lists: Vec<Vec<u64>>,
    /// Sum of the sizes; an upper bound on the union.
    pub(crate) bound: u64,
}

impl<'a> Part<'a> {
    pub(crate) fn list(keys: Vec<u64>) -> Self {
        Part { bound: keys.len() as u64, lists: vec![keys], postings: Vec::new() }
    }

    pub(crate) fn push(&mut self, p: &'a Posting) {
        self.bound += p.len() as u64;
        self.postings.push(p);
    }

    pub(crate) fn extend(&mut self, postings: impl IntoIterator<Item = &'a Posting>) {
        for p in postings {
            self.push(p);
        }
    }

    /// `extend`, or `None` past [`RANGE_SCAN_LIMIT`] lists.
    pub(crate) fn extend_limited(
        &mut self,
        postings: impl IntoIterator<Item = &'a Posting>,
    ) -> Option<()> {
        for p in postings {
            if self.postings.len() >= RANGE_SCAN_LIMIT {
                return None;
            }
            self.push(p);
        }
        Some(())
    }

    pub(crate) fn absorb(&mut self, other: Part<'a>) {
        self.bound += other.bound;
        self.postings.extend(other.postings);
        self.lists.extend(other.lists);
    }

    pub(crate) fn sources(&self) -> usize {
        self.postings.len() + self.lists.len()
    }

    pub(crate) fn contains(&self, key: u64) -> bool {
        self.postings.iter().any(|p| p.contains(key))
            || self.lists.iter().any(|l| l.binary_search(&key).is_ok())
    }

    /// The union, sorted and deduplicated.
    pub(crate) fn into_sorted(mut self) -> Vec<u64> {
        match (self.postings.len(), self.lists.len()) {
            (0, 1) => self.lists.pop().unwrap_or_default(),
            (1, 0) => self.postings[0].iter().collect(),
            _ => {
                let mut keys = Vec::with_capacity(self.bound as usize);
                keys.extend(self.postings.iter().flat_map(|p| p.iter()));
                keys.extend(self.lists.into_iter().flatten());
                Candidates::from_keys(keys).into_vec()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_interval_is_exact_near_the_limits() {
        let big = 2f64.powi(63);
        assert_eq!(int_interval(big, f64::INFINITY), Some(i64::MAX - 511..=i64::MAX));
        assert_eq!(int_interval(f64::NEG_INFINITY, -big), Some(i64::MIN..=i64::MIN + 512));
        assert_eq!(int_interval(1.5, 3.5), Some(2..=3));
        assert_eq!(int_interval(1.2, 1.8), None);
        assert_eq!(int_interval(1e300, f64::INFINITY), None);
        let i = i64::MAX - 511;
        assert!(i as f64 >= big && ((i - 1) as f64) < big);
    }
}
