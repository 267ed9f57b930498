//! Moving a shard's data from one node to another, online: how placement follows nodes that
//! join (`POST /v1/cluster/rebalance`) or leave (`POST /v1/cluster/nodes/{id}/drain`).
//!
//! A move copies the whole local shard like a resharding copies moving points: note the
//! source's LSN, copy every point to a new local shard on the target node, replay the source's
//! WAL until caught up, freeze the source (a write guard under which every point is being
//! handed off: writes get a retryable 503), replay the last records, switch the placement in
//! the metastore, turn the source's guard into "everything handed over" (`409 wrong_shard`, so
//! a router with a stale view reloads it), and drop the source after a grace period. Reads are
//! served by the source until the switch and by the target after it; both hold every point.
//!
//! The record's `moving` field says a move is under way; a move whose router died is rolled
//! back by the controller (the target copy is dropped; the source never stopped serving).

use crate::catalog::{node_loads, shard_config};
use crate::cluster::Cluster;
use crate::error::{Result, RouterError};
use crate::handoff::{copy_points, follow_wal, replay, TailError};
use crate::state::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use vdb_api::*;

/// A move older than this whose router is gone is rolled back.
pub const ABANDONED_MOVE: Duration = Duration::from_secs(300);

/// A shard id no collection uses: the "new owner" of every point in a move's freeze guard.
const ELSEWHERE: u32 = u32::MAX;

/// Ownership under which `shard` hands every point over (`cut_over` once it has).
fn everything_moves(shard: u32, handed_over: bool) -> Ownership {
    Ownership {
        from: ShardMapSpec { sharding: Sharding::Hash, shards: vec![shard] },
        to: ShardMapSpec { sharding: Sharding::Hash, shards: vec![ELSEWHERE] },
        cut_over: if handed_over { vec![shard] } else { vec![] },
        shard,
    }
}

impl Cluster {
    /// Moves shards off `node` onto the others (placement rules), then it can be
    /// deregistered. Runs in the background; returns the planned moves.
    pub async fn drain_node(self: &std::sync::Arc<Self>, node: &str) -> Result<Vec<ShardMoveInfo>> {
        let view = self.state.view();
        if !view.nodes.contains_key(node) {
            return Err(RouterError::NotFound(format!("node {node} is not registered")));
        }
        self.plan_and_run(Some(node)).await
    }

    /// Evens out shards per node (after nodes joined). Runs in the background; returns the
    /// planned moves.
    pub async fn rebalance(self: &std::sync::Arc<Self>) -> Result<Vec<ShardMoveInfo>> {
        self.plan_and_run(None).await
    }

    async fn plan_and_run(
        self: &std::sync::Arc<Self>,
        leaving: Option<&str>,
    ) -> Result<Vec<ShardMoveInfo>> {
        let view = self.state.view();
        let mut loads: Vec<vdb_sharding::NodeLoad> =
            node_loads(&view).into_iter().filter(|l| Some(l.node.as_str()) != leaving).collect();
        if loads.is_empty() {
            return Err(RouterError::Unavailable("no other healthy node to move shards to".into()));
        }
        let mut planned = Vec::new();
        for (record, _) in view.collections.values() {
            // Replicated shards are not moved yet: their copies are kept by failover instead.
            if record.lifecycle != Lifecycle::Active
                || record.resharding.is_some()
                || record.moving.is_some()
                || record.config.replication_factor > 1
            {
                continue;
            }
            let placement: BTreeMap<u32, Vec<String>> =
                record.shards.iter().map(|(s, r)| (*s, r.nodes.clone())).collect();
            let moves = vdb_sharding::rebalance(
                &placement,
                record.config.replication_factor as usize,
                &loads,
            )
            .map_err(|e| RouterError::Unavailable(format!("cannot place shards: {e}")))?;
            for m in moves {
                let Some(from) = m.from.clone() else { continue };
                for l in loads.iter_mut() {
                    if l.node == m.to {
                        l.shards += 1;
                    } else if l.node == from {
                        l.shards = l.shards.saturating_sub(1);
                    }
                }
                planned.push(ShardMoveInfo {
                    collection: record.name.clone(),
                    shard: m.shard,
                    from,
                    to: m.to,
                });
            }
        }
        let cluster = self.clone();
        let work = planned.clone();
        tokio::spawn(async move {
            for m in work {
                if let Err(e) = cluster.move_shard(&m.collection, m.shard, &m.from, &m.to).await {
                    tracing::warn!(collection = m.collection, shard = m.shard, error = %e, "shard move failed");
                }
            }
        });
        Ok(planned)
    }

    /// Moves `shard` of `name` from node `from` to node `to` (see the module docs).
    pub async fn move_shard(&self, name: &str, shard: u32, from: &str, to: &str) -> Result<()> {
        let started = Instant::now();
        let record = self
            .state
            .update_collection(name, |r| {
                if r.resharding.is_some() || r.moving.is_some() {
                    return Err(RouterError::Unavailable(format!(
                        "collection {name} is busy; retry later"
                    )));
                }
                match r.shards.get(&shard) {
                    Some(s)
                        if s.nodes.iter().any(|n| n == from)
                            && !s.nodes.iter().any(|n| n == to) => {}
                    _ => {
                        return Err(RouterError::Invalid(format!(
                            "shard {shard} is not on {from}, or already on {to}"
                        )))
                    }
                }
                r.moving = Some(MoveRecord {
                    shard,
                    from: from.into(),
                    to: to.into(),
                    since_ms: now_ms(),
                });
                Ok(true)
            })
            .await?
            .ok_or_else(|| RouterError::NotFound(format!("collection {name} does not exist")))?;
        let result = self.copy_and_switch(&record, shard, from, to).await;
        if let Err(e) = &result {
            tracing::warn!(collection = name, shard, from, to, error = %e, "move failed; rolling back");
            self.abort_move(name).await;
        } else {
            tracing::info!(
                collection = name,
                shard,
                from,
                to,
                seconds = started.elapsed().as_secs_f64(),
                "shard moved"
            );
        }
        result
    }

    async fn copy_and_switch(
        &self,
        record: &CollectionRecord,
        shard: u32,
        from: &str,
        to: &str,
    ) -> Result<()> {
        let local = record.local_name(shard);
        let src = self.clients(from)?.write;
        let dst = self.clients(to)?.write;
        let serr = |e| RouterError::from_shard(shard, from, e);
        let derr = |e| RouterError::from_shard(shard, to, e);
        let info = src.get_shard(&local).await.map_err(serr)?;
        let replica = record.shards[&shard].nodes.iter().position(|n| n == from).unwrap_or(0);
        dst.create_shard(&local, &shard_config(record, shard, replica)).await.map_err(derr)?;
        for (field, kind) in &info.payload_indexes {
            dst.create_index(&local, &CreatePayloadIndex { field: field.clone(), kind: *kind })
                .await
                .map_err(derr)?;
        }
        let mut lsn = info.last_lsn;
        let upsert = |points| async {
            replay(&dst, &local, WalEntry::Upsert { points }).await.map_err(derr)
        };
        copy_points(&src, &local, upsert, serr).await?;
        for frozen in [false, true] {
            if frozen {
                let guard = WriteGuard { ownership: everything_moves(shard, false), frozen: true };
                src.install_guard(&local, &guard).await.map_err(serr)?;
            }
            let apply = |op| async { replay(&dst, &local, op).await.map_err(derr) };
            match follow_wal(&src, &local, &mut lsn, apply).await {
                Ok(()) => {}
                Err(TailError::Truncated) => {
                    return Err(RouterError::Unavailable(format!(
                        "{from}'s log of shard {shard} was truncated by a snapshot during the copy; retry the move"
                    )))
                }
                Err(TailError::Source(e)) => return Err(serr(e)),
                Err(TailError::Apply(e)) => return Err(e),
            }
        }
        let frozen_at = Instant::now();
        self.state
            .update_collection(&record.name, |r| {
                if let Some(s) = r.shards.get_mut(&shard) {
                    for n in s.nodes.iter_mut() {
                        if n == from {
                            *n = to.to_string();
                        }
                    }
                }
                r.moving = None;
                Ok::<_, RouterError>(true)
            })
            .await?;
        let handed = WriteGuard { ownership: everything_moves(shard, true), frozen: false };
        src.install_guard(&local, &handed).await.map_err(serr)?;
        self.metrics.write_block_seconds.observe(frozen_at.elapsed().as_secs_f64());
        if let Some(guard) = info.guard {
            dst.install_guard(&local, &guard).await.map_err(derr)?;
        }
        tokio::time::sleep(crate::reshard::ROUTING_GRACE).await;
        if let Err(e) = src.drop_shard(&local).await {
            tracing::warn!(node = from, local, error = %e, "cannot drop the moved shard's old copy yet");
        }
        Ok(())
    }

    /// Rolls back the move recorded in `name`: the target copy goes, the source stays.
    pub async fn abort_move(&self, name: &str) {
        let Ok(Some((record, _))) = self.state.fresh_collection(name).await else { return };
        let Some(m) = record.moving.clone() else { return };
        let local = record.local_name(m.shard);
        if let Ok(c) = self.clients(&m.from) {
            let _ = c.write.remove_guard(&local).await;
        }
        if let Ok(c) = self.clients(&m.to) {
            let _ = c.write.drop_shard(&local).await;
        }
        let _ = self
            .state
            .update_collection(name, |r| Ok::<_, RouterError>(r.moving.take().is_some()))
            .await;
    }
}
