//! Scatter-gather search: every shard is asked for its best `k + offset` at once, and the
//! answers are merged into the global top-k (score order of the metric, ties by id, no id
//! twice). When many shards answer, payloads and vectors are fetched in a second round for
//! the final top-k only, instead of shipping `shards × (k + offset)` of them.

use crate::cluster::{collect, first_error, Cluster, Reads, Routed};
use crate::error::{Result, RouterError};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use vdb_api::*;
use vdb_client::JsonBody;

/// The largest `k + offset` a search may ask for.
pub const MAX_DEPTH: usize = 10_000;

impl Cluster {
    pub async fn search(
        &self,
        name: &str,
        req: CollectionSearch,
        reads: &Reads,
    ) -> Result<CollectionSearchResult> {
        let batch = CollectionBatchSearch { searches: vec![req] };
        let mut results = self.search_batch(name, batch, reads).await?;
        Ok(results.results.pop().expect("one result per search"))
    }

    /// Many searches, one request per shard.
    pub async fn search_batch(
        &self,
        name: &str,
        req: CollectionBatchSearch,
        reads: &Reads,
    ) -> Result<CollectionBatchSearchResult> {
        let routed = self.routed(name).await?;
        if req.searches.is_empty() {
            return Err(RouterError::Invalid("searches must not be empty".into()));
        }
        let many = req.searches.len() > 1;
        for (i, s) in req.searches.iter().enumerate() {
            let at = if many { format!("searches[{i}]") } else { "search".to_string() };
            crate::text::check_search(&routed, s, &at)?;
            validate(&routed, s).map_err(|e| match e {
                RouterError::Invalid(m) if many => {
                    RouterError::Invalid(format!("searches[{i}]: {m}"))
                }
                e => e,
            })?;
        }
        // Every check passed: only now are texts embedded (one call for the whole batch).
        let vectors = self.query_vectors(&routed, &req.searches).await?;
        let shards = routed.record.all_shards();
        let two_phase = shards.len() > self.config.two_phase_fanout;
        let (searches, vectors) = (&req.searches, &vectors);
        let mut results = self
            .read_routed(name, reads, |routed| async move {
                self.gather(&routed, searches, vectors, two_phase, reads).await
            })
            .await?;
        let mut stale = reads.stale();
        if two_phase {
            for (result, search) in results.iter_mut().zip(&req.searches) {
                if search.with_payload || search.with_vector {
                    // The second round reads as freshly as the first.
                    let second = Reads::new(reads.consistency);
                    self.attach(name, result, search, &second).await?;
                    stale |= second.stale();
                }
            }
        }
        for result in &mut results {
            result.stale = stale;
        }
        self.metrics.searches.inc_by(req.searches.len() as u64);
        Ok(CollectionBatchSearchResult { results })
    }

    /// One round of a batch search: every shard asked at once, answers merged per query.
    async fn gather(
        &self,
        routed: &Routed,
        searches: &[CollectionSearch],
        vectors: &[Vec<f32>],
        two_phase: bool,
        reads: &Reads,
    ) -> Result<Vec<CollectionSearchResult>> {
        let shards = routed.record.all_shards();
        let ask = |ownership: Option<Ownership>| {
            let searches = searches
                .iter()
                .zip(vectors)
                .map(|(s, v)| per_shard(routed, s, v, ownership.clone(), two_phase))
                .collect();
            JsonBody::new(&BatchSearchRequest { searches })
        };
        // Outside a resharding every shard gets the same request: it is serialized once (its
        // vectors are most of it) instead of once per shard.
        let shared = if routed.record.resharding.is_none() {
            Some(ask(None).map_err(|e| RouterError::Internal(e.to_string()))?)
        } else {
            None
        };
        let (ask, shared) = (&ask, &shared);
        let outcomes = self
            .fan_out_reads(routed, &shards, reads, |c, local, shard| async move {
                let body = match shared {
                    Some(body) => body.clone(),
                    None => ask(routed.record.ownership(shard))?,
                };
                c.read.search_batch_body(&local, &body).await
            })
            .await;
        let (ok, failed) = collect(outcomes);
        let partial_ok = searches.iter().all(|s| s.allow_partial);
        if !failed.is_empty()
            && (!partial_ok
                || failed.iter().any(|(_, e)| !matches!(e, RouterError::Unavailable(_))))
        {
            return Err(first_error(failed));
        }
        let mut missing: Vec<u32> = failed.iter().map(|(s, _)| *s).collect();
        missing.sort_unstable();
        let higher = routed.record.config.metric.higher_is_better();
        let mut results = Vec::with_capacity(searches.len());
        for (q, search) in searches.iter().enumerate() {
            let lists = ok.iter().map(|(_, r)| r.results[q].points.clone()).collect();
            let points = merge_top_k(lists, search.k, search.offset, higher);
            results.push(CollectionSearchResult {
                points,
                partial: !missing.is_empty(),
                missing_shards: missing.clone(),
                stale: false,
            });
        }
        Ok(results)
    }

    /// The second round: payloads and vectors of the final hits only.
    async fn attach(
        &self,
        name: &str,
        result: &mut CollectionSearchResult,
        search: &CollectionSearch,
        reads: &Reads,
    ) -> Result<()> {
        if result.points.is_empty() {
            return Ok(());
        }
        let ids = result.points.iter().map(|p| p.id).collect();
        let ask = GetPoints {
            ids,
            with_payload: search.with_payload,
            with_vector: search.with_vector,
            ownership: None,
        };
        let mut records: HashMap<PointId, Record> =
            self.get(name, ask, reads).await?.points.into_iter().map(|r| (r.id, r)).collect();
        // A point deleted between the rounds is dropped rather than shown without its data.
        result.points.retain_mut(|p| match records.remove(&p.id) {
            Some(r) => {
                p.payload = r.payload;
                p.vector = r.vector;
                true
            }
            None => false,
        });
        Ok(())
    }
}

fn validate(routed: &Routed, s: &CollectionSearch) -> Result<()> {
    if s.k == 0 || s.k + s.offset > MAX_DEPTH {
        return Err(RouterError::Invalid(format!(
            "k must be at least 1 and k + offset at most {MAX_DEPTH}, got k {} offset {}",
            s.k, s.offset
        )));
    }
    match &s.vector {
        Some(v) if v.len() != routed.dimension() => {
            return Err(RouterError::Rejected {
                code: ErrorCode::DimensionMismatch,
                message: format!(
                    "query vector has {} dimensions, collection {} expects {}",
                    v.len(),
                    routed.record.name,
                    routed.dimension()
                ),
            });
        }
        _ => {}
    }
    if let Some(f) = &s.filter {
        vdb_api::filter::validate(f)
            .map_err(|message| RouterError::Rejected { code: ErrorCode::InvalidFilter, message })?;
    }
    Ok(())
}

/// What one shard is asked for one search; `ownership` is the shard's during a resharding.
fn per_shard(
    routed: &Routed,
    s: &CollectionSearch,
    vector: &[f32],
    ownership: Option<Ownership>,
    two_phase: bool,
) -> SearchRequest {
    SearchRequest {
        vector: vector.to_vec(),
        k: s.k + s.offset,
        ef: s.ef.or(Some(routed.record.config.hnsw.ef_search)),
        filter: s.filter.clone(),
        score_threshold: s.score_threshold,
        with_payload: s.with_payload && !two_phase,
        with_vector: s.with_vector && !two_phase,
        exact: s.exact,
        plan: s.plan,
        ownership,
    }
}

/// Orders hits best first for the metric, ties by id.
pub fn rank(higher_is_better: bool) -> impl Fn(&ScoredPoint, &ScoredPoint) -> Ordering {
    move |a, b| {
        let by_score = if higher_is_better {
            b.score.total_cmp(&a.score)
        } else {
            a.score.total_cmp(&b.score)
        };
        by_score.then_with(|| a.id.cmp(&b.id))
    }
}

/// The global top-k of per-shard top lists: ranked, each id once (its best hit), `offset`
/// skipped.
pub fn merge_top_k(
    lists: Vec<Vec<ScoredPoint>>,
    k: usize,
    offset: usize,
    higher_is_better: bool,
) -> Vec<ScoredPoint> {
    let mut all: Vec<ScoredPoint> = lists.into_iter().flatten().collect();
    all.sort_by(rank(higher_is_better));
    let mut seen = HashSet::with_capacity(all.len());
    all.into_iter().filter(|p| seen.insert(p.id)).skip(offset).take(k).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hit(id: u64, score: f32) -> ScoredPoint {
        ScoredPoint { id: id.into(), score, payload: None, vector: None }
    }

    fn ids(hits: &[ScoredPoint]) -> Vec<PointId> {
        hits.iter().map(|h| h.id).collect()
    }

    #[test]
    fn merges_by_metric_order_with_ties_by_id() {
        let a = vec![hit(5, 0.9), hit(1, 0.5)];
        let b = vec![hit(3, 0.9), hit(2, 0.7)];
        let merged = merge_top_k(vec![a.clone(), b.clone()], 3, 0, true);
        assert_eq!(ids(&merged), vec![3.into(), 5.into(), 2.into()]);
        // l2: lower is better.
        let merged = merge_top_k(vec![a, b], 2, 1, false);
        assert_eq!(ids(&merged), vec![2.into(), 3.into()]);
    }

    #[test]
    fn duplicate_ids_appear_once() {
        let merged =
            merge_top_k(vec![vec![hit(1, 0.9)], vec![hit(1, 0.8), hit(2, 0.1)]], 5, 0, true);
        assert_eq!(ids(&merged), vec![1.into(), 2.into()]);
        assert_eq!(merged[0].score, 0.9);
    }

    proptest! {
        /// Merging per-shard top lists equals the top-k of everything, for any split.
        #[test]
        fn merge_equals_global_top_k(
            scores in proptest::collection::vec(-1000i32..1000, 1..200),
            shards in 1usize..6,
            k in 1usize..30,
            offset in 0usize..10,
            higher in any::<bool>(),
        ) {
            let points: Vec<ScoredPoint> =
                scores.iter().enumerate().map(|(i, &s)| hit(i as u64, s as f32 / 10.0)).collect();
            let mut global = points.clone();
            global.sort_by(rank(higher));
            let expected: Vec<PointId> = ids(&global).into_iter().skip(offset).take(k).collect();
            let lists = (0..shards)
                .map(|s| {
                    let mut mine: Vec<ScoredPoint> =
                        points.iter().filter(|p| matches!(p.id, PointId::Num(n) if n as usize % shards == s)).cloned().collect();
                    mine.sort_by(rank(higher));
                    mine.truncate(k + offset);
                    mine
                })
                .collect();
            prop_assert_eq!(ids(&merge_top_k(lists, k, offset, higher)), expected);
        }
    }
}
