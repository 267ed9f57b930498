//! The search planner: how many points a filter matches, and which plan runs a search.
//!
//! [`estimate`] combines two sources. The payload indexes give a hard upper bound
//! ([`PayloadIndexes::cardinality_bound`]); a sample of points the caller picks (deterministic,
//! e.g. every n-th point, so identical queries plan identically) gives the matching fraction,
//! with a ~95% Wilson interval for `min`/`max`. A sample holding every point gives the exact
//! count.
//!
//! [`choose_plan`] rules, and why:
//! - `plan: exact` → [`SearchPlan::Exact`]: the request asks for the true top-k.
//! - `plan: hnsw` → [`SearchPlan::Hnsw`], or [`SearchPlan::FilteredHnsw`] with a filter: the
//!   request asks for the graph, and a filter can only be applied inside it.
//! - `auto` without a filter → [`SearchPlan::Hnsw`]: the graph is what it is built for.
//! - `auto` with a filter expected to match at most `max(exact_threshold, k)` points →
//!   [`SearchPlan::Exact`]: brute force over the matching keys costs one distance per match,
//!   which for a selective filter is less than a graph walk that must step over the many
//!   rejected points (and, when few points match, loses recall where the filter disconnects
//!   the graph). Below `k` matches the graph cannot even fill the result, hence the `k`.
//! - otherwise → [`SearchPlan::FilteredHnsw`], with `ef` widened by [`filtered_ef`] so the
//!   walk still collects about `ef` matching candidates.
//!
//! The decision uses `expected`, not `max`: an overestimate only costs speed (an exact scan of
//! somewhat more points), while planning on the pessimistic bound would send most moderately
//! selective filters to the graph.

use crate::filter::PreparedFilter;
use crate::index::PayloadIndexes;
use vdb_api::filter::Filter;
use vdb_api::{Payload, PlanChoice, PointId, SearchPlan};

/// z for the sampling interval (about 95%).
const Z: f64 = 2.0;

/// How many points a filter is expected to match, out of `total`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Likely lower end; at least the matches seen in the sample.
    pub min: u64,
    pub expected: u64,
    /// Likely upper end; never above the index bound or `total`.
    pub max: u64,
    /// The points the estimate is out of.
    pub total: u64,
}

impl Estimate {
    /// Exactly `count` matches out of `total`.
    pub fn exact(count: u64, total: u64) -> Self {
        Estimate { min: count, expected: count, max: count, total }
    }

    /// The expected fraction of points that match, in [0, 1] (1 when there are no points).
    pub fn selectivity(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            (self.expected as f64 / self.total as f64).min(1.0)
        }
    }
}

/// Estimates how many of `total_points` points match `filter`, from the index bound and the
/// caller's `sample` of points (see the module docs). The empty filter matches everything.
pub fn estimate<'a>(
    filter: &Filter,
    indexes: &PayloadIndexes,
    total_points: u64,
    sample: impl IntoIterator<Item = (&'a PointId, &'a Payload)>,
) -> Estimate {
    let total = total_points;
    if filter.is_empty() {
        return Estimate::exact(total, total);
    }
    let bound = indexes.cardinality_bound(filter).map_or(total, |b| b.min(total));
    if bound == 0 {
        return Estimate::exact(0, total);
    }
    let prepared = PreparedFilter::new(filter);
    let (mut seen, mut hits) = (0u64, 0u64);
    for (id, payload) in sample {
        seen += 1;
        hits += u64::from(prepared.matches(id, payload));
    }
    if seen == 0 {
        // Nothing sampled: only the bound is known, and planning on it is the safe side.
        return Estimate { min: 0, expected: bound, max: bound, total };
    }
    if seen >= total {
        return Estimate::exact(hits.min(total), total);
    }
    let p = hits as f64 / seen as f64;
    let (lo, hi) = wilson(hits, seen);
    let scale = total as f64;
    // Sampled matches are real points, so they bound `min` from below.
    let max = ((hi * scale).ceil() as u64).min(bound).max(hits.min(bound));
    let min = ((lo * scale).floor() as u64).max(hits).min(max);
    let expected = ((p * scale).round() as u64).clamp(min, max);
    Estimate { min, expected, max, total }
}

/// Wilson score interval for `hits` successes in `n` trials, at [`Z`].
fn wilson(hits: u64, n: u64) -> (f64, f64) {
    let n = n as f64;
    let p = hits as f64 / n;
    let z2 = Z * Z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Picks the plan for a search of `k` results (see the module docs for the rule). `estimate`
/// is `None` when the search has no filter (or an empty one).
pub fn choose_plan(
    estimate: Option<&Estimate>,
    total_points: u64,
    k: usize,
    exact_threshold: u64,
    choice: PlanChoice,
) -> SearchPlan {
    match (choice, estimate) {
        (PlanChoice::Exact, _) => SearchPlan::Exact,
        (PlanChoice::Hnsw | PlanChoice::Auto, None) => SearchPlan::Hnsw,
        (PlanChoice::Hnsw, Some(_)) => SearchPlan::FilteredHnsw,
        (PlanChoice::Auto, Some(e)) => {
            let expected = e.expected.min(total_points);
            if expected <= exact_threshold.max(k as u64) {
                SearchPlan::Exact
            } else {
                SearchPlan::FilteredHnsw
            }
        }
    }
}

/// The `ef` for a filtered graph search: `max(ef, k) / selectivity`, so that about `max(ef,
/// k)` of the candidates the walk keeps pass the filter, clamped to `[max(ef, k), max_ef]`
/// (never below `max(ef, k)`, even if `max_ef` is). A selectivity of 0 or NaN gives the cap.
pub fn filtered_ef(ef: usize, k: usize, selectivity: f64, max_ef: usize) -> usize {
    let floor = ef.max(k);
    let cap = max_ef.max(floor);
    if selectivity.is_nan() || selectivity <= 0.0 {
        return cap;
    }
    let wanted = (floor as f64 / selectivity.min(1.0)).ceil();
    if wanted >= cap as f64 {
        cap
    } else {
        (wanted as usize).clamp(floor, cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vdb_api::PayloadIndexKind;

    fn points(n: u64) -> Vec<(u64, PointId, Payload)> {
        (0..n)
            .map(|i| {
                let p = json!({"m": i % 10, "tag": if i % 100 == 0 { "rare" } else { "common" }});
                (i, PointId::Num(i), serde_json::from_value(p).unwrap())
            })
            .collect()
    }

    fn filter(v: serde_json::Value) -> Filter {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn estimates_from_sample_and_bound() {
        let pts = points(10_000);
        let sample = || pts.iter().step_by(7).map(|(_, id, p)| (id, p));
        let none = PayloadIndexes::default();
        let f = filter(json!({"must": [{"key": "m", "match": {"value": 3}}]}));
        let e = estimate(&f, &none, 10_000, sample());
        assert!(e.min <= e.expected && e.expected <= e.max && e.max <= 10_000, "{e:?}");
        assert!((900..=1100).contains(&e.expected), "{e:?}");
        assert!(e.min >= 100 && e.min < 1000 && e.max > 1000, "{e:?}");
        assert!((e.selectivity() - 0.1).abs() < 0.02);

        // The keyword index bounds the rare tag at 100, below what sampling alone allows.
        let mut ix = PayloadIndexes::default();
        ix.create("tag", PayloadIndexKind::Keyword, pts.iter().map(|(k, _, p)| (*k, p)));
        let rare = filter(json!({"must": [{"key": "tag", "match": {"value": "rare"}}]}));
        let plain = estimate(&rare, &none, 10_000, sample());
        let bounded = estimate(&rare, &ix, 10_000, sample());
        assert!(plain.max > 100, "{plain:?}");
        assert!(bounded.max <= 100 && bounded.expected <= 100, "{bounded:?}");

        let all = estimate(&f, &none, 10_000, pts.iter().map(|(_, id, p)| (id, p)));
        assert_eq!(all, Estimate::exact(1000, 10_000));
        assert_eq!(
            estimate(&Filter::default(), &none, 7, std::iter::empty()),
            Estimate::exact(7, 7)
        );
        let unsampled = estimate(&f, &none, 50, std::iter::empty());
        assert_eq!((unsampled.min, unsampled.expected, unsampled.max), (0, 50, 50));
        let ids = filter(json!({"must": [{"has_id": [1, 2]}]}));
        assert!(estimate(&ids, &none, 10_000, sample()).max <= 2);
    }

    #[test]
    fn plan_rules() {
        let e = |expected| Estimate { min: 0, expected, max: expected * 2, total: 100_000 };
        let plan = |est: Option<&Estimate>, choice| choose_plan(est, 100_000, 10, 1_000, choice);
        assert_eq!(plan(None, PlanChoice::Auto), SearchPlan::Hnsw);
        assert_eq!(plan(None, PlanChoice::Hnsw), SearchPlan::Hnsw);
        assert_eq!(plan(None, PlanChoice::Exact), SearchPlan::Exact);
        assert_eq!(plan(Some(&e(5)), PlanChoice::Hnsw), SearchPlan::FilteredHnsw);
        assert_eq!(plan(Some(&e(50_000)), PlanChoice::Exact), SearchPlan::Exact);
        assert_eq!(plan(Some(&e(1_000)), PlanChoice::Auto), SearchPlan::Exact);
        assert_eq!(plan(Some(&e(1_001)), PlanChoice::Auto), SearchPlan::FilteredHnsw);
        // Fewer expected matches than k: exact, whatever the threshold.
        assert_eq!(choose_plan(Some(&e(40)), 100_000, 50, 0, PlanChoice::Auto), SearchPlan::Exact);
        assert_eq!(
            choose_plan(Some(&e(60)), 100_000, 50, 0, PlanChoice::Auto),
            SearchPlan::FilteredHnsw
        );
    }

    #[test]
    fn ef_widening() {
        assert_eq!(filtered_ef(64, 10, 1.0, 10_000), 64);
        assert_eq!(filtered_ef(64, 10, 0.5, 10_000), 128);
        assert_eq!(filtered_ef(64, 100, 0.5, 10_000), 200);
        assert_eq!(filtered_ef(64, 10, 0.001, 10_000), 10_000);
        assert_eq!(filtered_ef(64, 10, 0.0, 10_000), 10_000);
        assert_eq!(filtered_ef(64, 10, f64::NAN, 1_000), 1_000);
        assert_eq!(filtered_ef(64, 10, 0.1, 32), 64);
        assert_eq!(filtered_ef(64, 10, 3.0, 10_000), 64);
    }
}
