//! Point operations routed to shards: writes by id go to the owning shard, writes by filter
//! and reads that cannot be keyed (count, scroll) fan out to every shard.
//!
//! A write that spans shards is applied per shard, all or nothing on each (the shard node's
//! guarantee); the router validates the whole request first, so bad input changes nothing.
//! A shard that is handing its points off during a resharding, or that says the router's map
//! is stale, gets the affected part of the write again after a short pause and a fresh map.

use crate::cluster::{all_answered, first_error, retryable, Cluster, Reads, Routed};
use crate::error::{Result, RouterError};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;
use vdb_api::*;
use vdb_client::{ClientError, ShardClient};

/// Rounds of a write before its failure is reported (about 3 s of retrying: longer than a
/// failover takes with the default lease).
const WRITE_ATTEMPTS: u32 = 32;

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((10u64 << attempt.min(3)).min(100))
}

/// Checks a batch of points the way the shard would, before anything is sent.
pub fn validate_points(routed: &Routed, points: &[Point]) -> Result<()> {
    if points.is_empty() {
        return Err(RouterError::Invalid("points must not be empty".into()));
    }
    for (i, p) in points.iter().enumerate() {
        validate_point(routed, i, &p.id, Some(&p.vector), p.payload.as_ref())?;
    }
    Ok(())
}

/// Checks `points[i]` the way the shard would; `vector` is `None` for a text not embedded yet.
pub fn validate_point(
    routed: &Routed,
    i: usize,
    id: &PointId,
    vector: Option<&[f32]>,
    payload: Option<&serde_json::Value>,
) -> Result<()> {
    let config = &routed.record.config;
    let bad = |code, message: String| RouterError::Rejected {
        code,
        message: format!("points[{i}]: {message}"),
    };
    if let Some(vector) = vector {
        if vector.len() != config.dimension {
            return Err(bad(
                ErrorCode::DimensionMismatch,
                format!(
                    "vector has {} dimensions, collection {} expects {}",
                    vector.len(),
                    routed.record.name,
                    config.dimension
                ),
            ));
        }
        if let Some(e) = vector.iter().position(|x| !x.is_finite()) {
            return Err(bad(
                ErrorCode::InvalidVector,
                format!("vector element {e} is not a finite number"),
            ));
        }
        if config.metric == Metric::Cosine && vector.iter().all(|&x| x == 0.0) {
            return Err(bad(
                ErrorCode::InvalidVector,
                "a zero vector has no direction for cosine similarity".into(),
            ));
        }
    }
    if !matches!(payload, None | Some(serde_json::Value::Null | serde_json::Value::Object(_))) {
        return Err(bad(ErrorCode::InvalidPayload, "payload must be a JSON object".into()));
    }
    routed.owner(id).map_err(|e| match e {
        RouterError::Invalid(m) => RouterError::Invalid(format!("points[{i}]: {m}")),
        e => e,
    })?;
    Ok(())
}

fn check_filter(filter: Option<&Filter>) -> Result<()> {
    match filter {
        Some(f) => vdb_api::filter::validate(f)
            .map_err(|message| RouterError::Rejected { code: ErrorCode::InvalidFilter, message }),
        None => Ok(()),
    }
}

/// Ids or filter, exactly one.
fn selector(ids: &Option<Vec<PointId>>, filter: &Option<Filter>) -> Result<()> {
    match (ids, filter) {
        (Some(_), None) => Ok(()),
        (None, Some(f)) => check_filter(Some(f)),
        _ => Err(RouterError::Invalid("give exactly one of ids and filter".into())),
    }
}

impl Cluster {
    /// Sends `items` to the shards owning them, retrying the parts that hit a shard being
    /// handed off or a stale map.
    pub async fn write_by_ids<T, F, Fut>(
        &self,
        name: &str,
        consistency: Option<WriteConsistency>,
        items: Vec<T>,
        id: impl Fn(&T) -> PointId,
        send: F,
    ) -> Result<CollectionWriteResult>
    where
        T: Clone,
        F: Fn(ShardClient, String, Vec<T>) -> Fut,
        Fut: Future<Output = std::result::Result<WriteResult, ClientError>>,
    {
        let mut routed = self.routed(name).await?;
        let ack = self.ack_params(self.write_consistency(&routed, consistency)?);
        let mut pending = items;
        let mut affected = 0;
        let mut applied = BTreeSet::new();
        for attempt in 0.. {
            let groups = routed.group(pending, &id)?;
            let shards: Vec<u32> = groups.keys().copied().collect();
            let groups = &groups;
            let send = &send;
            let outcomes = self
                .fan_out(&routed, &shards, |c, local, shard| {
                    send(c.write.with_ack(ack), local, groups[&shard].clone())
                })
                .await;
            let mut retry = Vec::new();
            let mut failed = Vec::new();
            for (shard, outcome) in outcomes {
                match outcome {
                    Ok(w) => {
                        affected += w.affected;
                        applied.insert(shard);
                    }
                    Err(e) if retryable(&e) && attempt + 1 < WRITE_ATTEMPTS => {
                        self.metrics.write_retries.inc();
                        retry.extend(groups[&shard].iter().cloned());
                    }
                    Err(e) => failed.push((shard, e)),
                }
            }
            if !failed.is_empty() {
                return Err(partial(first_error(failed), &applied));
            }
            if retry.is_empty() {
                break;
            }
            pending = retry;
            tokio::time::sleep(backoff(attempt)).await;
            routed = self.routed_fresh(name).await?;
        }
        Ok(CollectionWriteResult { affected, shards: applied.into_iter().collect() })
    }

    /// Sends one write to every shard (writes by filter), retrying shards that are briefly
    /// unavailable.
    pub async fn write_everywhere<F, Fut>(
        &self,
        name: &str,
        consistency: Option<WriteConsistency>,
        send: F,
    ) -> Result<CollectionWriteResult>
    where
        F: Fn(ShardClient, String) -> Fut,
        Fut: Future<Output = std::result::Result<WriteResult, ClientError>>,
    {
        let mut routed = self.routed(name).await?;
        let ack = self.ack_params(self.write_consistency(&routed, consistency)?);
        let mut pending = routed.record.all_shards();
        let mut affected = 0;
        let mut applied = BTreeSet::new();
        for attempt in 0.. {
            let outcomes = self
                .fan_out(&routed, &pending, |c, local, _| send(c.write.with_ack(ack), local))
                .await;
            let mut retry = Vec::new();
            let mut failed = Vec::new();
            for (shard, outcome) in outcomes {
                match outcome {
                    Ok(w) => {
                        affected += w.affected;
                        applied.insert(shard);
                    }
                    Err(e) if retryable(&e) && attempt + 1 < WRITE_ATTEMPTS => retry.push(shard),
                    Err(e) => failed.push((shard, e)),
                }
            }
            if !failed.is_empty() {
                return Err(partial(first_error(failed), &applied));
            }
            if retry.is_empty() {
                break;
            }
            pending = retry;
            tokio::time::sleep(backoff(attempt)).await;
            routed = self.routed_fresh(name).await?;
            // A resharding may have added a shard meanwhile: it must get the write too.
            for s in routed.record.all_shards() {
                if !applied.contains(&s) && !pending.contains(&s) {
                    pending.push(s);
                }
            }
        }
        Ok(CollectionWriteResult { affected, shards: applied.into_iter().collect() })
    }

    /// Upserts points given by vector or by text: every point is checked, then all texts are
    /// embedded, then the vectors checked, and only then is anything sent to a shard.
    pub async fn upsert(
        &self,
        name: &str,
        req: CollectionUpsertPoints,
        consistency: Option<WriteConsistency>,
    ) -> Result<CollectionWriteResult> {
        let routed = self.routed(name).await?;
        crate::text::check_points(&routed, &req.points)?;
        let points = self.embed_points(&routed, req.points).await?;
        validate_points(&routed, &points)?;
        self.write_by_ids(
            name,
            consistency,
            points,
            |p| p.id,
            |c, local, points| async move { c.upsert(&local, &UpsertPoints { points }).await },
        )
        .await
    }

    pub async fn delete(
        &self,
        name: &str,
        req: PointSelector,
        consistency: Option<WriteConsistency>,
    ) -> Result<CollectionWriteResult> {
        selector(&req.ids, &req.filter)?;
        match req.ids {
            Some(ids) => {
                self.write_by_ids(
                    name,
                    consistency,
                    ids,
                    |id| *id,
                    |c, local, ids| async move {
                        c.delete_points(&local, &PointSelector { ids: Some(ids), filter: None })
                            .await
                    },
                )
                .await
            }
            None => {
                let req = &req;
                self.write_everywhere(name, consistency, |c, local| async move {
                    c.delete_points(&local, req).await
                })
                .await
            }
        }
    }

    /// Merges (`overwrite = false`) or replaces payloads.
    pub async fn set_payload(
        &self,
        name: &str,
        req: SetPayload,
        overwrite: bool,
        consistency: Option<WriteConsistency>,
    ) -> Result<CollectionWriteResult> {
        selector(&req.ids, &req.filter)?;
        let send = |c: ShardClient, local: String, req: SetPayload| async move {
            if overwrite {
                c.overwrite_payload(&local, &req).await
            } else {
                c.set_payload(&local, &req).await
            }
        };
        match req.ids.clone() {
            Some(ids) => {
                let payload = &req.payload;
                self.write_by_ids(
                    name,
                    consistency,
                    ids,
                    |id| *id,
                    |c, local, ids| {
                        send(
                            c,
                            local,
                            SetPayload { payload: payload.clone(), ids: Some(ids), filter: None },
                        )
                    },
                )
                .await
            }
            None => {
                let req = &req;
                self.write_everywhere(name, consistency, |c, local| send(c, local, req.clone()))
                    .await
            }
        }
    }

    pub async fn delete_payload(
        &self,
        name: &str,
        req: DeletePayload,
        consistency: Option<WriteConsistency>,
    ) -> Result<CollectionWriteResult> {
        selector(&req.ids, &req.filter)?;
        match req.ids.clone() {
            Some(ids) => {
                let keys = &req.keys;
                self.write_by_ids(
                    name,
                    consistency,
                    ids,
                    |id| *id,
                    |c, local, ids| async move {
                        let req =
                            DeletePayload { keys: keys.clone(), ids: Some(ids), filter: None };
                        c.delete_payload(&local, &req).await
                    },
                )
                .await
            }
            None => {
                let req = &req;
                self.write_everywhere(name, consistency, |c, local| async move {
                    c.delete_payload(&local, req).await
                })
                .await
            }
        }
    }

    /// Points by id, in the order asked; only the owning shards are asked.
    pub async fn get(&self, name: &str, req: GetPoints, reads: &Reads) -> Result<Records> {
        let req = &req;
        let mut records = self
            .read_routed(name, reads, |routed| async move {
                let groups = routed.group(req.ids.clone(), |id| *id)?;
                let shards: Vec<u32> = groups.keys().copied().collect();
                let (groups, routed_ref) = (&groups, &routed);
                let outcomes = self
                    .fan_out_reads(&routed, &shards, reads, |c, local, shard| async move {
                        let ask = GetPoints {
                            ids: groups[&shard].clone(),
                            ownership: routed_ref.record.ownership(shard),
                            ..req.clone()
                        };
                        c.read.get_points(&local, &ask).await
                    })
                    .await;
                let ok = all_answered(outcomes)?;
                let mut found: HashMap<PointId, Record> =
                    ok.into_iter().flat_map(|(_, r)| r.points).map(|r| (r.id, r)).collect();
                let points = req.ids.iter().filter_map(|id| found.remove(id)).collect();
                Ok(Records { points, stale: false, position: None })
            })
            .await?;
        records.stale = reads.stale();
        Ok(records)
    }

    pub async fn count(&self, name: &str, req: CountPoints, reads: &Reads) -> Result<CountResult> {
        check_filter(req.filter.as_ref())?;
        let req = &req;
        let count = self
            .read_routed(name, reads, |routed| async move {
                let routed_ref = &routed;
                let shards = routed.record.all_shards();
                let outcomes = self
                    .fan_out_reads(&routed, &shards, reads, |c, local, shard| async move {
                        let ask = CountPoints {
                            ownership: routed_ref.record.ownership(shard),
                            ..req.clone()
                        };
                        c.read.count(&local, &ask).await
                    })
                    .await;
                let ok = all_answered(outcomes)?;
                Ok(ok.iter().map(|(_, c)| c.count).sum())
            })
            .await?;
        Ok(CountResult { count, stale: reads.stale(), position: None })
    }

    /// One page in id order across all shards: every shard returns its first `limit` points
    /// from `offset`; the merged page stops before the smallest id some shard did not send.
    pub async fn scroll(
        &self,
        name: &str,
        req: ScrollPoints,
        reads: &Reads,
    ) -> Result<ScrollResult> {
        check_filter(req.filter.as_ref())?;
        if !(1..=10_000).contains(&req.limit) {
            return Err(RouterError::Invalid(format!(
                "limit must be 1..=10000, got {}",
                req.limit
            )));
        }
        let req = &req;
        let mut page = self
            .read_routed(name, reads, |routed| async move {
                let routed_ref = &routed;
                let shards = routed.record.all_shards();
                let outcomes = self
                    .fan_out_reads(&routed, &shards, reads, |c, local, shard| async move {
                        let ask = ScrollPoints {
                            ownership: routed_ref.record.ownership(shard),
                            ..req.clone()
                        };
                        c.read.scroll(&local, &ask).await
                    })
                    .await;
                let ok = all_answered(outcomes)?;
                Ok(merge_scroll(ok.into_iter().map(|(_, page)| page).collect(), req.limit))
            })
            .await?;
        page.stale = reads.stale();
        Ok(page)
    }

    /// Creates a payload index on every shard.
    pub async fn create_index(&self, name: &str, req: CreatePayloadIndex) -> Result<()> {
        let routed = self.routed(name).await?;
        let req = &req;
        let outcomes = self
            .fan_out(&routed, &routed.record.all_shards(), |c, local, _| async move {
                c.write.create_index(&local, req).await.map(|_| ())
            })
            .await;
        all_answered(outcomes).map(drop)
    }

    pub async fn drop_index(&self, name: &str, field: &str) -> Result<()> {
        let routed = self.routed(name).await?;
        let outcomes = self
            .fan_out(&routed, &routed.record.all_shards(), |c, local, _| async move {
                match c.write.drop_index(&local, field).await {
                    Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok(()),
                    r => r,
                }
            })
            .await;
        all_answered(outcomes).map(drop)
    }
}

/// Says which shards applied a write that then failed on others.
fn partial(err: RouterError, applied: &BTreeSet<u32>) -> RouterError {
    if applied.is_empty() {
        return err;
    }
    let list: Vec<String> = applied.iter().map(|s| s.to_string()).collect();
    match err {
        RouterError::Unavailable(m) => RouterError::Unavailable(format!(
            "{m}; the write was applied on shards {} (retrying it is safe)",
            list.join(", ")
        )),
        e => e,
    }
}

/// Merges per-shard scroll pages into one page of at most `limit` points.
pub fn merge_scroll(pages: Vec<ScrollResult>, limit: usize) -> ScrollResult {
    // Below this id every shard sent all it has.
    let horizon = pages.iter().filter_map(|p| p.next_offset).min();
    let mut points: Vec<Record> = pages.into_iter().flat_map(|p| p.points).collect();
    points.sort_by_key(|p| p.id);
    points.dedup_by(|a, b| a.id == b.id);
    if let Some(h) = horizon {
        points.retain(|p| p.id < h);
    }
    let next_offset = if points.len() > limit { Some(points[limit].id) } else { horizon };
    points.truncate(limit);
    ScrollResult { points, next_offset, stale: false, position: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ids: &[u64], next: Option<u64>) -> ScrollResult {
        ScrollResult {
            points: ids
                .iter()
                .map(|&i| Record { id: i.into(), payload: None, vector: None })
                .collect(),
            next_offset: next.map(Into::into),
            stale: false,
            position: None,
        }
    }

    fn ids(r: &ScrollResult) -> Vec<u64> {
        r.points
            .iter()
            .map(|p| match p.id {
                PointId::Num(n) => n,
                PointId::Uuid(_) => panic!(),
            })
            .collect()
    }

    #[test]
    fn scroll_pages_merge_without_gaps() {
        // Shard A holds 1,3,5,7,9; shard B holds 2,4,6,8,10; pages of 3.
        let merged = merge_scroll(vec![page(&[1, 3, 5], Some(7)), page(&[2, 4, 6], Some(8))], 3);
        assert_eq!(ids(&merged), vec![1, 2, 3]);
        assert_eq!(merged.next_offset, Some(4.into()));
        // A shard stopping early bounds the page even when it is not full.
        let merged = merge_scroll(vec![page(&[1, 2], Some(3)), page(&[10, 11], None)], 5);
        assert_eq!(ids(&merged), vec![1, 2]);
        assert_eq!(merged.next_offset, Some(3.into()));
        // The last page has no next offset.
        let merged = merge_scroll(vec![page(&[5], None), page(&[], None)], 3);
        assert_eq!(ids(&merged), vec![5]);
        assert_eq!(merged.next_offset, None);
    }

    #[test]
    fn scroll_walks_every_point_once() {
        // Simulate 3 shards over ids 0..100 split by id % 3, paging through the merge.
        let shards: Vec<Vec<u64>> =
            (0..3).map(|s| (0..100).filter(|i| i % 3 == s).collect()).collect();
        let scroll = |offset: u64, limit: usize, shard: &Vec<u64>| {
            let rest: Vec<u64> = shard.iter().copied().filter(|&i| i >= offset).collect();
            page(&rest[..rest.len().min(limit)], rest.get(limit).copied())
        };
        let mut seen = Vec::new();
        let mut offset = Some(0u64);
        while let Some(o) = offset {
            let merged = merge_scroll(shards.iter().map(|s| scroll(o, 7, s)).collect(), 7);
            assert!(merged.points.len() <= 7);
            seen.extend(ids(&merged));
            offset = merged.next_offset.map(|id| match id {
                PointId::Num(n) => n,
                PointId::Uuid(_) => panic!(),
            });
        }
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }
}
