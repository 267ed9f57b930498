//! Moving a shard's copy from one node to another, online: on request
//! (`POST /v1/collections/{name}/shards/{shard}/move`), or to follow nodes that join
//! (`POST /v1/cluster/rebalance`) or leave (`POST /v1/cluster/nodes/{id}/drain`). A
//! collection moves one copy at a time; its record's `moving` field names it.
//!
//! **Unreplicated shards** are moved here, by the router that was asked, like a resharding
//! moves points: note the source's LSN, copy every point to a new local shard on the target
//! node, replay the source's WAL until caught up, freeze the source (a write guard under which
//! every point is being handed off: writes get a retryable 503), replay the last records,
//! switch the placement in the metastore, turn the source's guard into "everything handed
//! over" (`409 wrong_shard`, so a router with a stale view reloads it), and drop the source
//! after a grace period. Reads are served by the source until the switch and by the target
//! after it; both hold every point. A move whose router died is rolled back by the controller
//! after [`ABANDONED_MOVE`] (the target copy is dropped; the source never stopped serving).
//!
//! **Replicated shards** are moved by the controller (`replicas.rs`), which keeps every
//! replica set anyway: the target joins as one more replica, its primary streams it the log
//! (or a snapshot) until it is in sync, and then the source's copy leaves like a removed
//! replica; a primary first hands its role over to the target (its lease is cut short, the
//! target confirms its whole log, and the epoch is bumped). The router asked only records the
//! move and waits for the controller to clear it.

use crate::catalog::{node_loads, shard_config};
use crate::cluster::Cluster;
use crate::error::{Result, RouterError};
use crate::handoff::{copy_points, follow_wal, replay, TailError};
use crate::state::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vdb_api::*;

/// A move older than this is given up: an unreplicated one whose router is gone is rolled
/// back, a replicated one that has not finished loses its new copy unless that is in sync.
pub const ABANDONED_MOVE: Duration = Duration::from_secs(300);

/// How often a router waiting for the controller to finish a replicated move looks.
const MOVE_POLL: Duration = Duration::from_millis(100);

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
    pub async fn drain_node(self: &Arc<Self>, node: &str) -> Result<Vec<ShardMoveInfo>> {
        let view = self.state.view();
        if !view.nodes.contains_key(node) {
            return Err(RouterError::NotFound(format!("node {node} is not registered")));
        }
        self.plan_and_run(Some(node)).await
    }

    /// Evens out shards per node (after nodes joined). Runs in the background; returns the
    /// planned moves.
    pub async fn rebalance(self: &Arc<Self>) -> Result<Vec<ShardMoveInfo>> {
        self.plan_and_run(None).await
    }

    /// Moves the copy of `shard` of `name` on `req.from` to `req.to`: checked and started
    /// now, finished in the background.
    pub async fn request_move(
        self: &Arc<Self>,
        name: &str,
        shard: u32,
        req: MoveShard,
    ) -> Result<ShardMoveInfo> {
        let record = self.begin_move(name, shard, &req.from, &req.to).await?;
        let cluster = self.clone();
        let info = ShardMoveInfo { collection: name.into(), shard, from: req.from, to: req.to };
        let m = info.clone();
        tokio::spawn(async move {
            if let Err(e) = cluster.complete_move(&record, shard, &m.from, &m.to).await {
                tracing::warn!(collection = m.collection, shard, error = %e, "shard move failed");
            }
        });
        Ok(info)
    }

    async fn plan_and_run(self: &Arc<Self>, leaving: Option<&str>) -> Result<Vec<ShardMoveInfo>> {
        let view = self.state.view();
        let mut loads: Vec<vdb_sharding::NodeLoad> =
            node_loads(&view).into_iter().filter(|l| Some(l.node.as_str()) != leaving).collect();
        if loads.is_empty() {
            return Err(RouterError::Unavailable("no other healthy node to move shards to".into()));
        }
        let mut planned = Vec::new();
        for (record, _) in view.collections.values() {
            if record.lifecycle != Lifecycle::Active
                || record.resharding.is_some()
                || record.moving.is_some()
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
                // Missing replicas (`from: None`) are the controller's to add.
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

    /// Moves `shard` of `name` from node `from` to node `to`; returns once it is done (see
    /// the module docs).
    pub async fn move_shard(&self, name: &str, shard: u32, from: &str, to: &str) -> Result<()> {
        let record = self.begin_move(name, shard, from, to).await?;
        self.complete_move(&record, shard, from, to).await
    }

    /// Checks a move and records it in the collection (one at a time per collection).
    async fn begin_move(
        &self,
        name: &str,
        shard: u32,
        from: &str,
        to: &str,
    ) -> Result<CollectionRecord> {
        let view = self.state.view();
        match view.nodes.get(to) {
            None => return Err(RouterError::Invalid(format!("node {to} is not registered"))),
            Some(_) if !view.is_healthy(to) => {
                return Err(RouterError::Unavailable(format!("node {to} is not healthy")))
            }
            Some(_) => {}
        }
        self.state
            .update_collection(name, |r| {
                if r.lifecycle != Lifecycle::Active {
                    return Err(RouterError::NotFound(format!("collection {name} does not exist")));
                }
                let Some(s) = r.shards.get(&shard) else {
                    return Err(RouterError::NotFound(format!(
                        "collection {name} has no shard {shard}"
                    )));
                };
                if !s.nodes.iter().any(|n| n == from) || s.nodes.iter().any(|n| n == to) {
                    return Err(RouterError::Invalid(format!(
                        "shard {shard} is not on {from}, or already on {to}"
                    )));
                }
                if r.resharding.is_some() || r.moving.is_some() {
                    return Err(RouterError::Unavailable(format!(
                        "collection {name} is being resharded or has a shard moving; retry later"
                    )));
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
            .ok_or_else(|| RouterError::NotFound(format!("collection {name} does not exist")))
    }

    /// Carries out the move `begin_move` recorded.
    async fn complete_move(
        &self,
        record: &CollectionRecord,
        shard: u32,
        from: &str,
        to: &str,
    ) -> Result<()> {
        let (name, started) = (&record.name, Instant::now());
        let result = if record.config.replication_factor > 1 {
            self.await_replicated_move(name, shard, from, to).await
        } else {
            let moved = self.copy_and_switch(record, shard, from, to).await;
            if let Err(e) = &moved {
                tracing::warn!(collection = name, shard, from, to, error = %e, "move failed; rolling back");
                self.abort_move(name).await;
            }
            moved
        };
        if result.is_ok() {
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(collection = name, shard, from, to, seconds, "shard moved");
        }
        result
    }

    /// Waits until the controller has finished (or given up) the replicated move it found
    /// recorded.
    async fn await_replicated_move(
        &self,
        name: &str,
        shard: u32,
        from: &str,
        to: &str,
    ) -> Result<()> {
        let deadline = Instant::now() + ABANDONED_MOVE + Duration::from_secs(60);
        loop {
            let Some((r, _)) = self.state.fresh_collection(name).await? else {
                return Err(RouterError::NotFound(format!("collection {name} is gone")));
            };
            let ours = |m: &MoveRecord| m.shard == shard && m.from == from && m.to == to;
            if !r.moving.as_ref().is_some_and(ours) {
                let nodes = r.shards.get(&shard).map(|s| &s.nodes);
                return match nodes {
                    Some(n) if n.iter().any(|x| x == to) && !n.iter().any(|x| x == from) => Ok(()),
                    _ => Err(RouterError::Unavailable(format!(
                        "the move of shard {shard} from {from} to {to} was given up"
                    ))),
                };
            }
            if Instant::now() > deadline {
                return Err(RouterError::Unavailable(format!(
                    "the move of shard {shard} from {from} to {to} is still under way"
                )));
            }
            tokio::time::sleep(MOVE_POLL).await;
        }
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
        let ours = record.moving.clone();
        self.state
            .update_collection(&record.name, |r| {
                // Rolled back meanwhile (the controller gave it up): the target is gone.
                if r.moving != ours {
                    return Err(RouterError::Unavailable(format!(
                        "the move of shard {shard} was rolled back"
                    )));
                }
                if let Some(s) = r.shards.get_mut(&shard) {
                    for n in s.nodes.iter_mut() {
                        if n == from {
                            *n = to.to_string();
                        }
                    }
                }
                r.moving = None;
                Ok(true)
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

    /// Rolls back the unreplicated move recorded in `name`: the record forgets it first (so
    /// its router, should it still be at work, cannot switch to the target any more), then
    /// the target copy goes and the source takes writes again.
    pub async fn abort_move(&self, name: &str) {
        let Ok(Some((record, _))) = self.state.fresh_collection(name).await else { return };
        let Some(m) = record.moving.clone() else { return };
        // Whether this call's compare-and-swap took the move out (the loop retries on
        // conflicts, so the last attempt decides).
        let mut cleared = false;
        let updated = self
            .state
            .update_collection(name, |r| {
                cleared = r.moving.as_ref() == Some(&m);
                if cleared {
                    r.moving = None;
                }
                Ok::<_, RouterError>(cleared)
            })
            .await;
        if updated.is_err() || !cleared {
            return;
        }
        let local = record.local_name(m.shard);
        if let Ok(c) = self.clients(&m.from) {
            let _ = c.write.remove_guard(&local).await;
        }
        if let Ok(c) = self.clients(&m.to) {
            let _ = c.write.drop_shard(&local).await;
        }
    }
}
