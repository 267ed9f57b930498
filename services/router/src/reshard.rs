//! Online resharding: add or remove a shard of a live collection, moving only the points
//! whose owner changes, with reads and writes served throughout.
//!
//! The protocol (the controller drives it; its state lives in the collection record, so a new
//! controller resumes it):
//! 1. The new map is recorded next to the old one (`resharding`), with the new shard created
//!    empty. Routers route by the *transition*: a point belongs to its old owner until that
//!    owner is *cut over*, then to its new one. Reads carry the transition as `ownership`, so
//!    each shard answers only for what it owns and no point is seen twice or missed.
//! 2. For each source shard in turn: note its last LSN, copy its moving points (scroll, then
//!    upsert on the target), replay its WAL from the noted LSN for the moving ids until caught
//!    up, then *freeze* it (a write guard refusing writes to moving ids with a retryable 503),
//!    replay the last records, record the cut-over in the metastore, and replace the guard by
//!    one that refuses writes to the ids it no longer owns (`wrong_shard`: the router reloads
//!    its map and resends). Writes to moving ids wait only between freeze and cut-over.
//! 3. When every source is cut over, sources delete what they no longer own, the new map
//!    becomes the collection's map, a removed shard is dropped, and every shard keeps a guard
//!    for the final map so that a router with a stale map is corrected, never obeyed.
//!
//! Replaying the WAL on top of a copy converges because every logged write is last-writer-
//! wins per point and per payload key: applying the records after the noted LSN, in order, to
//! any state reached between that LSN and now gives the same result as applying them to the
//! state at that LSN.

use crate::cluster::{Cluster, Routed};
use crate::error::{Result, RouterError};
use crate::handoff::{copy_points, follow_wal, replay, TailError};
use crate::state::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;
use vdb_api::*;
use vdb_client::ShardClient;
use vdb_sharding::{ShardMap, Transition};

/// The ownership rule of `shard` once the sources `cut_over` are handed over.
fn ownership(plan: &ReshardRecord, cut_over: &[u32], shard: u32) -> Ownership {
    Ownership { from: plan.from.clone(), to: plan.to.clone(), cut_over: cut_over.to_vec(), shard }
}
/// How long routers may go on using a routing the metastore just replaced: their watch lag
/// plus the requests they have in flight. Data the old routing points at is deleted (points
/// that moved, a removed shard, a moved copy) only this long after the new routing is
/// recorded. Shards also refuse reads routed with an outdated map once their guard knows
/// better (see the shard's `guard` module), which covers requests slower than this.
pub(crate) const ROUTING_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

impl Cluster {
    /// Adds one shard (online). Returns once the resharding is recorded; the controller runs
    /// it, and `GET /v1/collections/{name}` shows its progress.
    pub async fn add_shard(&self, name: &str, req: AddShard) -> Result<CollectionInfo> {
        let routed = self.routed(name).await?;
        let record = &routed.record;
        let new = record.next_shard_id;
        let mut shards = record.map.clone();
        shards.push(new);
        let sharding = match (&record.config.sharding, req.ranges) {
            (Sharding::Range { .. }, Some(ranges)) => Sharding::Range { ranges },
            (Sharding::Range { .. }, None) => {
                return Err(RouterError::Invalid(
                    "a range-sharded collection needs the new map's ranges to add a shard".into(),
                ))
            }
            (_, Some(_)) => {
                return Err(RouterError::Invalid("ranges apply to range sharding only".into()))
            }
            (s, None) => s.clone(),
        };
        self.start_resharding(&routed, ShardMapSpec { sharding, shards }, Some(new)).await?;
        self.describe_collection(name).await
    }

    /// Removes shard `shard` (online): its points move to the others.
    pub async fn remove_shard(
        &self,
        name: &str,
        shard: u32,
        req: AddShard,
    ) -> Result<CollectionInfo> {
        let routed = self.routed(name).await?;
        let record = &routed.record;
        if !record.map.contains(&shard) {
            return Err(RouterError::NotFound(format!("collection {name} has no shard {shard}")));
        }
        if record.map.len() == 1 {
            return Err(RouterError::Invalid("cannot remove the last shard".into()));
        }
        let shards: Vec<u32> = record.map.iter().copied().filter(|&s| s != shard).collect();
        let sharding = match (&record.config.sharding, req.ranges) {
            (Sharding::Range { .. }, Some(ranges)) => Sharding::Range { ranges },
            (Sharding::Range { .. }, None) => {
                return Err(RouterError::Invalid(
                    "a range-sharded collection needs the new map's ranges to remove a shard"
                        .into(),
                ))
            }
            (_, Some(_)) => {
                return Err(RouterError::Invalid("ranges apply to range sharding only".into()))
            }
            (s, None) => s.clone(),
        };
        self.start_resharding(&routed, ShardMapSpec { sharding, shards }, None).await?;
        self.describe_collection(name).await
    }

    /// Splits the range of a hot range-sharded shard at its median id, or adds a shard to a
    /// hashed collection.
    pub async fn split_hot_shard(&self, name: &str, hot: u32) -> Result<()> {
        let routed = self.routed(name).await?;
        let Sharding::Range { ranges } = &routed.record.config.sharding else {
            self.add_shard(name, AddShard::default()).await?;
            return Ok(());
        };
        let median = self.median_id(&routed, hot).await?;
        let new = routed.record.next_shard_id;
        let mut split = Vec::with_capacity(ranges.len() + 1);
        for r in ranges {
            if r.shard == hot && r.from < median && r.to.is_none_or(|to| median < to) {
                split.push(ShardRange { shard: hot, from: r.from, to: Some(median) });
                split.push(ShardRange { shard: new, from: median, to: r.to });
            } else {
                split.push(r.clone());
            }
        }
        if split.len() == ranges.len() {
            return Err(RouterError::Invalid(format!(
                "shard {hot} has no range to split at {median}"
            )));
        }
        self.add_shard(name, AddShard { ranges: Some(split) }).await.map(|_| ())
    }

    /// The id in the middle of `shard`'s points (scrolling ids only).
    async fn median_id(&self, routed: &Routed, shard: u32) -> Result<u64> {
        let client = self.clients(routed.primary(shard)?)?.read;
        let local = routed.record.local_name(shard);
        let total = client
            .get_shard(&local)
            .await
            .map_err(|e| RouterError::from_shard(shard, "", e))?
            .points;
        let mut remaining = (total / 2).max(1) as usize;
        let mut offset = None;
        loop {
            let page = client
                .scroll(
                    &local,
                    &ScrollPoints {
                        limit: remaining.min(10_000),
                        offset,
                        with_payload: false,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| RouterError::from_shard(shard, "", e))?;
            remaining -= page.points.len().min(remaining);
            match (remaining, page.next_offset) {
                (0, Some(PointId::Num(n))) => return Ok(n),
                (_, Some(next)) if remaining > 0 => offset = Some(next),
                _ => {
                    return Err(RouterError::Invalid(format!(
                        "shard {shard} is too small to split"
                    )))
                }
            }
        }
    }

    async fn start_resharding(
        &self,
        routed: &Routed,
        to: ShardMapSpec,
        new: Option<u32>,
    ) -> Result<()> {
        let record = &routed.record;
        if record.resharding.is_some() {
            return Err(RouterError::Rejected {
                code: ErrorCode::AlreadyExists,
                message: format!("collection {} is already being resharded", record.name),
            });
        }
        ShardMap::new(&to.sharding, &to.shards).map_err(|e| RouterError::Invalid(e.to_string()))?;
        let mut next = record.clone();
        if let Some(new) = new {
            let loads = crate::catalog::node_loads(&self.state.view());
            let placed =
                vdb_sharding::place(&[new], record.config.replication_factor as usize, &loads)
                    .map_err(|e| {
                        RouterError::Unavailable(format!("cannot place the new shard: {e}"))
                    })?;
            next.shards.insert(
                new,
                ShardRecord {
                    nodes: placed[&new].clone(),
                    epoch: 1,
                    in_sync: placed[&new][1..].to_vec(),
                },
            );
            next.next_shard_id = new + 1;
            self.create_local_shards(&next, &[new]).await?;
            // Replicated: the new primary takes writes (the payload indexes below, the copy)
            // only with a lease, and streams them to its replicas.
            self.assign_roles(&next, &[new]).await?;
            // The new shard needs the collection's payload indexes.
            let source = record.map[0];
            let client = self.clients(routed.primary(source)?)?.read;
            let info = client
                .get_shard(&record.local_name(source))
                .await
                .map_err(|e| RouterError::from_shard(source, "", e))?;
            let target = self.clients(&next.shards[&new].nodes[0])?.write;
            for (field, kind) in info.payload_indexes {
                target
                    .create_index(&next.local_name(new), &CreatePayloadIndex { field, kind })
                    .await
                    .map_err(|e| RouterError::from_shard(new, "", e))?;
            }
        }
        next.resharding =
            Some(ReshardRecord { from: record.map_spec(), to, cut_over: vec![], copied: 0 });
        let key = format!("{COLLECTIONS}{}", record.name);
        if self.state.cas(&key, Some(routed.revision), &next).await?.is_none() {
            return Err(RouterError::Unavailable(format!(
                "collection {} changed meanwhile; retry",
                record.name
            )));
        }
        tracing::info!(collection = record.name, "resharding started");
        Ok(())
    }

    /// Runs (or resumes) the resharding of `name` to its end.
    pub async fn drive_resharding(&self, name: &str) -> Result<()> {
        let routed = self.routed_fresh(name).await?;
        let Some(plan) = routed.record.resharding.clone() else { return Ok(()) };
        let started = Instant::now();
        let transition = |cut_over: &[u32]| -> Result<Transition> {
            let map = |s: &ShardMapSpec| {
                ShardMap::new(&s.sharding, &s.shards)
                    .map_err(|e| RouterError::Internal(e.to_string()))
            };
            Ok(Transition {
                from: map(&plan.from)?,
                to: map(&plan.to)?,
                cut_over: cut_over.iter().copied().collect(),
            })
        };
        // Copies left on targets by an interrupted attempt may be stale: clear them first.
        let targets: BTreeSet<u32> = plan.to.shards.iter().copied().collect();
        for &t in &targets {
            let own = routed.record.ownership(t).expect("resharding");
            self.shard_client(&routed, t)?
                .delete_not_owned(&routed.record.local_name(t), &own)
                .await
                .map_err(|e| RouterError::from_shard(t, "", e))?;
        }
        let mut cut_over = plan.cut_over.clone();
        for &source in &plan.from.shards {
            if cut_over.contains(&source) {
                continue;
            }
            let t = transition(&cut_over)?;
            let copied = self.hand_off(&routed, &t, &plan, &cut_over, source).await?;
            cut_over.push(source);
            tracing::info!(collection = name, source, copied, "source cut over");
        }
        // Every source is cut over: routing equals the new map. Once no router reads with the
        // routing before the last cut-over, sources drop what moved.
        tokio::time::sleep(ROUTING_GRACE).await;
        let done = self.routed_fresh(name).await?;
        for &source in &plan.from.shards {
            let own = done.record.ownership(source).expect("resharding");
            self.shard_client(&done, source)?
                .delete_not_owned(&done.record.local_name(source), &own)
                .await
                .map_err(|e| RouterError::from_shard(source, "", e))?;
        }
        let removed: Vec<u32> =
            plan.from.shards.iter().copied().filter(|s| !plan.to.shards.contains(s)).collect();
        let finished = self
            .state
            .update_collection(name, |r| {
                r.config.sharding = plan.to.sharding.clone();
                r.map = plan.to.shards.clone();
                r.shards.retain(|s, _| !removed.contains(s));
                r.resharding = None;
                Ok::<_, RouterError>(true)
            })
            .await?
            .ok_or_else(|| RouterError::NotFound(format!("collection {name} was deleted")))?;
        // Keep a guard for the finished move everywhere, so a router with a stale map is told
        // to reload it rather than obeyed.
        let routed_final = Routed::new(finished.clone(), 0)?;
        for &shard in &plan.to.shards {
            let guard =
                WriteGuard { ownership: ownership(&plan, &plan.from.shards, shard), frozen: false };
            self.install_guard_on_copies(&routed_final, shard, &guard).await?;
        }
        if !removed.is_empty() {
            // Requests routed with the previous view may still reach a removed shard: let them
            // finish before it goes.
            tokio::time::sleep(ROUTING_GRACE).await;
            let mut gone = finished.clone();
            gone.shards = routed
                .record
                .shards
                .iter()
                .filter(|(s, _)| removed.contains(s))
                .map(|(s, r)| (*s, r.clone()))
                .collect();
            self.drop_local_shards(&gone).await;
        }
        self.metrics.reshard_seconds.observe(started.elapsed().as_secs_f64());
        tracing::info!(
            collection = name,
            seconds = started.elapsed().as_secs_f64(),
            "resharding finished"
        );
        Ok(())
    }

    fn shard_client(&self, routed: &Routed, shard: u32) -> Result<ShardClient> {
        Ok(self.clients(routed.primary(shard)?)?.write)
    }

    /// Installs `guard` on the primary of `shard`, then on its replicas, so that a replica
    /// promoted later keeps refusing what the shard no longer owns. The primary and every
    /// in-sync replica (those that may be promoted) must take it; a replica out of sync that
    /// cannot be reached is skipped (logged).
    async fn install_guard_on_copies(
        &self,
        routed: &Routed,
        shard: u32,
        guard: &WriteGuard,
    ) -> Result<()> {
        let record = &routed.record;
        let local = record.local_name(shard);
        let s = &record.shards[&shard];
        for (i, node) in s.nodes.iter().enumerate() {
            let result = match self.clients(node) {
                Ok(c) => c
                    .write
                    .install_guard(&local, guard)
                    .await
                    .map(|_| ())
                    .map_err(|e| RouterError::from_shard(shard, node, e)),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {}
                Err(e) if i > 0 && !s.in_sync.contains(node) => {
                    tracing::warn!(collection = record.name, shard, node, error = %e,
                        "write guard not installed on an out-of-sync replica");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Steps 2 of the protocol for one source: copy, catch up, freeze, cut over.
    async fn hand_off(
        &self,
        routed: &Routed,
        t: &Transition,
        plan: &ReshardRecord,
        cut_over: &[u32],
        source: u32,
    ) -> Result<u64> {
        let name = &routed.record.name;
        let local = routed.record.local_name(source);
        let src = self.shard_client(routed, source)?;
        let err = |e| RouterError::from_shard(source, "", e);
        'attempt: loop {
            let mut lsn = src.get_shard(&local).await.map_err(err)?.last_lsn;
            let copied = copy_points(
                &src,
                &local,
                |points| self.apply_to_targets(routed, t, source, WalEntry::Upsert { points }),
                err,
            )
            .await?;
            // Catch up, then freeze and drain the last records.
            for frozen in [false, true] {
                if frozen {
                    let guard =
                        WriteGuard { ownership: ownership(plan, cut_over, source), frozen: true };
                    self.install_guard_on_copies(routed, source, &guard).await?;
                }
                let apply = |op| self.apply_to_targets(routed, t, source, op);
                match follow_wal(&src, &local, &mut lsn, apply).await {
                    Ok(()) => {}
                    Err(TailError::Truncated) => {
                        tracing::info!(
                            collection = name,
                            source,
                            "WAL truncated under the copy; starting over"
                        );
                        continue 'attempt;
                    }
                    Err(TailError::Source(e)) => return Err(err(e)),
                    Err(TailError::Apply(e)) => return Err(e),
                }
            }
            let frozen_at = Instant::now();
            self.state
                .update_collection(name, |r| {
                    let Some(rs) = r.resharding.as_mut() else {
                        return Err(RouterError::Unavailable("resharding was cancelled".into()));
                    };
                    if !rs.cut_over.contains(&source) {
                        rs.cut_over.push(source);
                        rs.copied += copied;
                    }
                    Ok(true)
                })
                .await?
                .ok_or_else(|| RouterError::NotFound(format!("collection {name} was deleted")))?;
            let mut now_cut = cut_over.to_vec();
            now_cut.push(source);
            let guard = WriteGuard { ownership: ownership(plan, &now_cut, source), frozen: false };
            self.install_guard_on_copies(routed, source, &guard).await?;
            self.metrics.write_block_seconds.observe(frozen_at.elapsed().as_secs_f64());
            return Ok(copied);
        }
    }

    /// Applies a source's logged write to the targets of its moving points; returns how many
    /// points it touched there.
    async fn apply_to_targets(
        &self,
        routed: &Routed,
        t: &Transition,
        source: u32,
        op: WalEntry,
    ) -> Result<u64> {
        let target_of = |id: &PointId| -> Option<u32> {
            match t.moves(id) {
                Ok(Some((from, to))) if from == source => Some(to),
                _ => None,
            }
        };
        let mut by_target: BTreeMap<u32, WalEntry> = BTreeMap::new();
        let split_ids = |ids: Vec<PointId>| {
            let mut m: BTreeMap<u32, Vec<PointId>> = BTreeMap::new();
            for id in ids {
                if let Some(to) = target_of(&id) {
                    m.entry(to).or_default().push(id);
                }
            }
            m
        };
        match op {
            WalEntry::Upsert { points } => {
                let mut m: BTreeMap<u32, Vec<Point>> = BTreeMap::new();
                for p in points {
                    if let Some(to) = target_of(&p.id) {
                        m.entry(to).or_default().push(p);
                    }
                }
                by_target
                    .extend(m.into_iter().map(|(to, points)| (to, WalEntry::Upsert { points })));
            }
            WalEntry::Delete { ids } => {
                by_target.extend(
                    split_ids(ids).into_iter().map(|(to, ids)| (to, WalEntry::Delete { ids })),
                );
            }
            WalEntry::SetPayload { ids, payload } => by_target.extend(
                split_ids(ids)
                    .into_iter()
                    .map(|(to, ids)| (to, WalEntry::SetPayload { ids, payload: payload.clone() })),
            ),
            WalEntry::OverwritePayload { ids, payload } => {
                by_target.extend(split_ids(ids).into_iter().map(|(to, ids)| {
                    (to, WalEntry::OverwritePayload { ids, payload: payload.clone() })
                }))
            }
            WalEntry::DeletePayload { ids, keys } => by_target.extend(
                split_ids(ids)
                    .into_iter()
                    .map(|(to, ids)| (to, WalEntry::DeletePayload { ids, keys: keys.clone() })),
            ),
            // Index changes reach every shard through the router already.
            WalEntry::CreateIndex { .. } | WalEntry::DropIndex { .. } => {}
        }
        let mut touched = 0;
        for (to, entry) in by_target {
            let c = self.shard_client(routed, to)?;
            touched += replay(&c, &routed.record.local_name(to), entry)
                .await
                .map_err(|e| RouterError::from_shard(to, "", e))?;
        }
        Ok(touched)
    }
}
