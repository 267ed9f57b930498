//! The read side of a local shard: get, count, scroll and search, with the search planner.
//!
//! Search plans (see `vdb_payload::planner` for the rule):
//! - `hnsw`: no filter — USearch's graph search at the requested `ef`;
//! - `filtered_hnsw`: a broad filter — the graph search skips points the filter rejects, with
//!   `ef` widened by the filter's selectivity so enough matching points are visited;
//! - `exact`: a selective filter, or `exact: true` — brute force over the matching points
//!   (all points without a filter), which gives the true top-k.
//!
//! Results are ordered best first with ties broken by id, so exact results are deterministic.
//!
//! Every read may carry an `ownership` rule (during a resharding): points owned by another
//! shard are then invisible, as if they were not stored here. For search it is one more filter
//! condition, so an unfiltered search with an ownership runs as a filtered one.

use crate::error::{Result, ShardError};
use crate::index::exact_score;
use crate::ownership::Owner;
use crate::shard::{LocalShard, ShardData};
use crate::store::Entry;
use std::cmp::Ordering;
use vdb_api::{
    CountPoints, ErrorCode, Filter, GetPoints, Ownership, PlanChoice, PointId, Record, Records,
    ScoredPoint, ScrollPoints, ScrollResult, SearchPlan, SearchRequest, SearchResult,
};
use vdb_payload::{Estimate, PreparedFilter};

/// Largest `k`, scroll `limit` and `ef` a request may ask for.
pub const MAX_K: usize = 10_000;
pub const MAX_EF: usize = 10_000;
/// Points sampled to estimate a filter's selectivity when no payload index answers it.
const SAMPLE: usize = 1_000;

/// Planner settings of the node.
#[derive(Clone, Copy, Debug)]
pub struct PlannerConfig {
    /// Filters expected to match at most this many points are searched exactly.
    pub exact_threshold: u64,
}

/// Validates a filter for the API.
pub fn checked_filter(f: &Filter) -> Result<&Filter> {
    vdb_api::filter::validate(f).map_err(|m| ShardError::Invalid(ErrorCode::InvalidFilter, m))?;
    Ok(f)
}

/// Every key whose point matches `filter`: from the payload indexes' candidates when they
/// help, otherwise by scanning all points.
pub fn matching_keys(data: &ShardData, filter: &Filter) -> Vec<u64> {
    let filter = PreparedFilter::new(filter);
    let candidates = data.indexes.candidates_with_ids(filter.filter(), |id| data.store.key_of(id));
    match candidates {
        Some(candidates) => candidates
            .iter()
            .filter(|&k| data.store.get(k).is_some_and(|e| filter.matches(&e.id, &e.payload)))
            .collect(),
        None => data
            .store
            .iter()
            .filter(|(_, e)| filter.matches(&e.id, &e.payload))
            .map(|(k, _)| k)
            .collect(),
    }
}

/// The owner rule of a read, built once per request.
fn owner(ownership: &Option<Ownership>) -> Result<Option<Owner>> {
    ownership.as_ref().map(Owner::new).transpose()
}

/// Whether a point is visible to a read with this owner rule.
fn visible(owner: &Option<Owner>, entry: &Entry) -> bool {
    owner.as_ref().is_none_or(|o| o.owns(&entry.id))
}

impl LocalShard {
    pub fn get(&self, req: &GetPoints) -> Result<Records> {
        let owner = owner(&req.ownership)?;
        let data = self.data.read();
        self.check_read_routing(req.ownership.as_ref())?;
        let mut seen = std::collections::HashSet::new();
        let points = req
            .ids
            .iter()
            .filter(|id| seen.insert(**id))
            .filter(|id| owner.as_ref().is_none_or(|o| o.owns(id)))
            .filter_map(|id| data.store.key_of(id))
            .map(|key| self.record(&data, key, req.with_payload, req.with_vector))
            .collect::<Result<Vec<_>>>()?;
        Ok(Records { points, stale: false, position: None })
    }

    pub fn count(&self, req: &CountPoints) -> Result<u64> {
        let filter =
            req.filter.as_ref().filter(|f| !f.is_empty()).map(checked_filter).transpose()?;
        let owner = owner(&req.ownership)?;
        let data = self.data.read();
        self.check_read_routing(req.ownership.as_ref())?;
        Ok(match (filter, &owner) {
            (None, None) => data.store.len() as u64,
            (Some(f), None) => matching_keys(&data, f).len() as u64,
            (None, Some(o)) => data.store.iter().filter(|(_, e)| o.owns(&e.id)).count() as u64,
            (Some(f), Some(o)) => matching_keys(&data, f)
                .into_iter()
                .filter(|&k| data.store.get(k).is_some_and(|e| o.owns(&e.id)))
                .count() as u64,
        })
    }

    pub fn scroll(&self, req: &ScrollPoints) -> Result<ScrollResult> {
        if !(1..=MAX_K).contains(&req.limit) {
            return Err(ShardError::invalid(format!("limit must be 1..={MAX_K}")));
        }
        let filter = req.filter.as_ref().map(checked_filter).transpose()?.map(PreparedFilter::new);
        let owner = owner(&req.ownership)?;
        let data = self.data.read();
        self.check_read_routing(req.ownership.as_ref())?;
        let mut page = data
            .store
            .iter_from(req.offset.as_ref())
            .filter(|(_, e)| filter.as_ref().is_none_or(|f| f.matches(&e.id, &e.payload)))
            .filter(|(_, e)| visible(&owner, e))
            .take(req.limit + 1)
            .map(|(k, _)| k)
            .collect::<Vec<_>>();
        let next_offset = if page.len() > req.limit {
            page.pop().and_then(|k| data.store.get(k)).map(|e| e.id)
        } else {
            None
        };
        let points = page
            .into_iter()
            .map(|k| self.record(&data, k, req.with_payload, req.with_vector))
            .collect::<Result<Vec<_>>>()?;
        Ok(ScrollResult { points, next_offset, stale: false, position: None })
    }

    fn record(&self, data: &ShardData, key: u64, payload: bool, vector: bool) -> Result<Record> {
        let entry = data.store.get(key).expect("keys come from the store");
        Ok(Record {
            id: entry.id,
            payload: payload.then(|| entry.payload.clone()),
            vector: if vector { self.vector_of(key)? } else { None },
        })
    }

    fn vector_of(&self, key: u64) -> Result<Option<Vec<f32>>> {
        let mut buf = Vec::new();
        Ok(self.index.get(key, &mut buf)?.then_some(buf))
    }

    /// Runs one search (the caller is on a blocking thread).
    pub fn search(&self, req: &SearchRequest, planner: PlannerConfig) -> Result<SearchResult> {
        self.check_vector(&req.vector)?;
        self.searches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !(1..=MAX_K).contains(&req.k) {
            return Err(ShardError::invalid(format!("k must be 1..={MAX_K}, got {}", req.k)));
        }
        if let Some(ef) = req.ef {
            if !(1..=MAX_EF).contains(&ef) {
                return Err(ShardError::invalid(format!("ef must be 1..={MAX_EF}, got {ef}")));
            }
        }
        if req.exact && req.plan == PlanChoice::Hnsw {
            return Err(ShardError::invalid("exact: true contradicts plan: hnsw"));
        }
        let choice = if req.exact { PlanChoice::Exact } else { req.plan };
        let filter =
            req.filter.as_ref().filter(|f| !f.is_empty()).map(checked_filter).transpose()?;
        let owner = owner(&req.ownership)?;
        let ef = req.ef.unwrap_or(self.config.hnsw.ef_search).max(req.k);
        let started = std::time::Instant::now();

        let data = self.data.read();
        self.check_read_routing(req.ownership.as_ref())?;
        let total = data.store.len() as u64;
        let (plan, hits) = match (filter, &owner) {
            (None, None) => {
                let plan =
                    vdb_payload::choose_plan(None, total, req.k, planner.exact_threshold, choice);
                let hits = match plan {
                    SearchPlan::Exact => self.brute_force(
                        &data,
                        &req.vector,
                        req.k,
                        data.store.iter().map(|(k, _)| k),
                    )?,
                    _ => self.index.search(&req.vector, req.k, ef)?,
                };
                (plan, hits)
            }
            (filter, owner) => {
                let estimate = self.estimate_visible(&data, filter, owner.as_ref());
                let plan = vdb_payload::choose_plan(
                    Some(&estimate),
                    total,
                    req.k,
                    planner.exact_threshold,
                    choice,
                );
                let hits = match plan {
                    SearchPlan::Exact => {
                        let keys = match filter {
                            Some(f) => matching_keys(&data, f),
                            None => data.store.iter().map(|(k, _)| k).collect(),
                        };
                        let keys = keys.into_iter().filter(|&k| {
                            owner.is_none() || data.store.get(k).is_some_and(|e| visible(owner, e))
                        });
                        self.brute_force(&data, &req.vector, req.k, keys)?
                    }
                    _ => {
                        let ef =
                            vdb_payload::filtered_ef(ef, req.k, estimate.selectivity(), MAX_EF);
                        let f = filter.map(PreparedFilter::new);
                        self.index.filtered_search(&req.vector, req.k, ef, |key| {
                            data.store.get(key).is_some_and(|e| {
                                f.as_ref().is_none_or(|f| f.matches(&e.id, &e.payload))
                                    && visible(owner, e)
                            })
                        })?
                    }
                };
                (plan, hits)
            }
        };
        let metric = self.metric();
        let mut points: Vec<ScoredPoint> = hits
            .into_iter()
            .filter(|&(_, score)| match req.score_threshold {
                None => true,
                Some(t) if metric.higher_is_better() => score >= t,
                Some(t) => score <= t,
            })
            .filter_map(|(key, score)| {
                // A key missing from the store is a write in flight; it is not visible yet.
                let entry = data.store.get(key)?;
                Some((key, entry, score))
            })
            .map(|(key, entry, score)| {
                Ok(ScoredPoint {
                    id: entry.id,
                    score,
                    payload: req.with_payload.then(|| entry.payload.clone()),
                    vector: if req.with_vector { self.vector_of(key)? } else { None },
                })
            })
            .collect::<Result<_>>()?;
        drop(data);
        points.sort_by(|a, b| rank(metric.higher_is_better(), a.score, &a.id, b.score, &b.id));
        let label = plan_label(plan);
        self.env_metrics()
            .search_seconds
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
        self.env_metrics().searches.with_label_values(&[label]).inc();
        Ok(SearchResult { points, plan, position: None })
    }

    /// How many points the filter and the owner rule together let through (at least one is
    /// given). The owned fraction comes from the same sample as the filter's estimate and is
    /// assumed independent of the filter; a sample holding every point counts exactly.
    fn estimate_visible(
        &self,
        data: &ShardData,
        filter: Option<&Filter>,
        owner: Option<&Owner>,
    ) -> Estimate {
        let total = data.store.len() as u64;
        let base = filter.map_or(Estimate::exact(total, total), |f| self.estimate(data, f));
        let Some(owner) = owner else { return base };
        let sample: Vec<&Entry> = data.store.iter().take(SAMPLE).map(|(_, e)| e).collect();
        if sample.len() as u64 >= total {
            let f = filter.map(PreparedFilter::new);
            let n = sample
                .iter()
                .filter(|e| owner.owns(&e.id))
                .filter(|e| f.as_ref().is_none_or(|f| f.matches(&e.id, &e.payload)))
                .count();
            return Estimate::exact(n as u64, total);
        }
        let owned = sample.iter().filter(|e| owner.owns(&e.id)).count() as f64;
        let fraction = owned / sample.len() as f64;
        let scale = |n: u64| (n as f64 * fraction).round() as u64;
        Estimate { min: scale(base.min), expected: scale(base.expected), max: base.max, total }
    }

    fn estimate(&self, data: &ShardData, filter: &Filter) -> Estimate {
        // The store iterates in hash order, which is unrelated to ids and payloads: its first
        // points are a fair sample, stable while the shard is unchanged, and cost O(SAMPLE).
        let sample = data.store.iter().take(SAMPLE).map(|(_, e)| (&e.id, &e.payload));
        vdb_payload::estimate(filter, &data.indexes, data.store.len() as u64, sample)
    }

    /// Exact top-`k` among `keys`, best first, ties by id.
    fn brute_force(
        &self,
        data: &ShardData,
        query: &[f32],
        k: usize,
        keys: impl Iterator<Item = u64>,
    ) -> Result<Vec<(u64, f32)>> {
        let metric = self.metric();
        let higher = metric.higher_is_better();
        let mut buf = Vec::with_capacity(query.len());
        let mut scored: Vec<(u64, f32, PointId)> = Vec::new();
        for key in keys {
            let Some(entry) = data.store.get(key) else { continue };
            if self.index.get(key, &mut buf)? {
                scored.push((key, exact_score(metric, query, &buf), entry.id));
            }
        }
        let cmp =
            |a: &(u64, f32, PointId), b: &(u64, f32, PointId)| rank(higher, a.1, &a.2, b.1, &b.2);
        if scored.len() > k {
            scored.select_nth_unstable_by(k - 1, cmp);
            scored.truncate(k);
        }
        scored.sort_by(cmp);
        Ok(scored.into_iter().map(|(key, score, _)| (key, score)).collect())
    }
}

/// Best first; equal scores in id order.
fn rank(higher_is_better: bool, sa: f32, ia: &PointId, sb: f32, ib: &PointId) -> Ordering {
    let by_score = if higher_is_better { sb.total_cmp(&sa) } else { sa.total_cmp(&sb) };
    by_score.then_with(|| ia.cmp(ib))
}

pub fn plan_label(plan: SearchPlan) -> &'static str {
    match plan {
        SearchPlan::Hnsw => "hnsw",
        SearchPlan::FilteredHnsw => "filtered_hnsw",
        SearchPlan::Exact => "exact",
    }
}
