//! Replica sets of replicated collections (`replication_factor` > 1): role assignments,
//! primary leases, the in-sync set, and failover. The controller runs [`Replicas::tick`] after
//! every round of health checks.
//!
//! Per shard, every tick:
//! - a healthy primary gets its assignment again: its replicas, the in-sync set, the
//!   collection's `min_in_sync`, and a lease ending `primary_lease_ms` from now (Unix time on
//!   this router's clock). The lease is granted only while the previous renewal succeeded, and
//!   every attempt that may have reached the primary counts as granted;
//! - the primary's answer says how far each replica has confirmed: a replica lagging more than
//!   `max_replica_lag_ms`, unreachable, being resynced or on an unhealthy node leaves the
//!   in-sync set; a healthy one that has confirmed everything (or, under steady writes, keeps
//!   within a tenth of that bound) joins it. The set is changed in
//!   the metastore (compare-and-swap) *before* the primary hears of it, so a replica the
//!   primary stops waiting for is never promoted;
//! - replicas get their assignment (role and epoch), which also turns a former primary that
//!   came back into a replica; a replica's node that answers without the copy (wiped, or a
//!   new disk) gets it created empty and resynced;
//! - a shard with fewer copies than the collection's `replication_factor` gets a replica on the
//!   least-loaded healthy node without one (created empty; its primary streams it its log, or
//!   a snapshot, and it joins the in-sync set once caught up); one with more loses a replica
//!   (unhealthy, then out of sync, then the last): removed from the record first, then from
//!   the primary's assignment, then dropped on its node. One change per shard per tick;
//! - a primary whose node is down, or answers without the copy, is replaced once its lease
//!   has surely ended (the latest grant plus `clock_skew_ms`; a controller that just took
//!   over assumes a grant at its start): the healthy in-sync replica with the highest LSN is
//!   promoted with a compare-and-swap that bumps the shard's epoch. With no healthy in-sync
//!   replica the shard stays unavailable rather than lose acknowledged writes.

use crate::cluster::Cluster;
use crate::error::{Result, RouterError};
use crate::state::*;
use futures::future::join_all;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vdb_api::{ErrorCode, ReplicaState, ReplicaTarget, ReplicationInfo, Role, RoleAssignment};
use vdb_client::ClientError;

impl Cluster {
    /// The assignment of `node`'s copy of `shard` (`lease_until_ms` 0: keep the lease).
    pub fn assignment(
        &self,
        record: &CollectionRecord,
        shard: u32,
        node: &str,
        lease_until_ms: u64,
    ) -> Result<RoleAssignment> {
        let s = record
            .shards
            .get(&shard)
            .ok_or_else(|| RouterError::Internal(format!("no shard {shard}")))?;
        if s.nodes.first().map(String::as_str) != Some(node) {
            return Ok(RoleAssignment {
                epoch: s.epoch,
                role: Role::Replica,
                lease_until_ms: 0,
                replicas: vec![],
                in_sync: vec![],
                min_in_sync: 0,
                handing_over: false,
            });
        }
        let view = self.state.view();
        let replicas = s.nodes[1..]
            .iter()
            .filter_map(|n| {
                view.nodes.get(n).map(|r| ReplicaTarget { node: n.clone(), url: r.url.clone() })
            })
            .collect();
        Ok(RoleAssignment {
            epoch: s.epoch,
            role: Role::Primary,
            lease_until_ms,
            replicas,
            in_sync: s.in_sync.clone(),
            min_in_sync: record.config.min_in_sync,
            handing_over: false,
        })
    }

    /// Tells every copy of a new collection its role (replicas first), the primaries with a
    /// lease. Nothing to do without replicas: a lone copy needs no lease.
    pub async fn assign_all_roles(&self, record: &CollectionRecord) -> Result<()> {
        let shards: Vec<u32> = record.shards.keys().copied().collect();
        self.assign_roles(record, &shards).await
    }

    /// [`Cluster::assign_all_roles`] for the new shards `shards` of `record` only.
    pub async fn assign_roles(&self, record: &CollectionRecord, shards: &[u32]) -> Result<()> {
        if record.config.replication_factor < 2 {
            return Ok(());
        }
        for &shard in shards {
            let s = &record.shards[&shard];
            for node in s.nodes.iter().skip(1).chain(s.nodes.first()) {
                let lease = now_ms() + self.config.primary_lease_ms;
                let a = self.assignment(record, shard, node, lease)?;
                self.clients(node)?
                    .write
                    .assign_role(&record.local_name(shard), &a)
                    .await
                    .map_err(|e| RouterError::from_shard(shard, node, e))?;
            }
        }
        Ok(())
    }
}

/// What [`Replicas::leases`] files a shard's lease under: its local name and epoch.
fn lease_key(record: &CollectionRecord, shard: u32) -> String {
    format!("{}@{}", record.local_name(shard), record.shards[&shard].epoch)
}

/// What the controller remembers of one primary's lease.
#[derive(Clone, Copy)]
struct Lease {
    /// The latest lease end that may have reached the primary (Unix ms).
    granted_until_ms: u64,
    /// Whether the last renewal succeeded: only then is the lease extended again.
    renewing: bool,
    /// When renewals started failing (for the failover time).
    failing_since: Option<Instant>,
}

/// The controller's replica-set duty (see the module docs).
pub struct Replicas {
    cluster: Arc<Cluster>,
    /// Held only between awaits: shards are upkept concurrently, each touching its own.
    leases: Mutex<HashMap<String, Lease>>,
    /// A controller that just took over assumes a lease granted at this time.
    started_ms: u64,
}

impl Replicas {
    pub fn new(cluster: Arc<Cluster>) -> Replicas {
        Replicas { cluster, leases: Mutex::default(), started_ms: now_ms() }
    }

    pub async fn tick(&mut self) {
        let view = self.cluster.state.view();
        let mut work = Vec::new();
        for (record, _) in view.collections.values() {
            if record.lifecycle != Lifecycle::Active || record.config.replication_factor < 2 {
                continue;
            }
            for &shard in record.shards.keys() {
                work.push((record.clone(), shard));
            }
        }
        // Leases of shards gone (dropped, or failed over: the key holds the epoch) are
        // forgotten.
        let live: std::collections::HashSet<String> =
            work.iter().map(|(r, shard)| lease_key(r, *shard)).collect();
        self.leases.lock().retain(|key, _| live.contains(key));
        // All shards at once: a slow or hung node must not hold up the lease renewals of
        // primaries elsewhere (a lease lapses after `primary_lease_ms`).
        let this = &*self;
        join_all(work.iter().map(|(record, shard)| async move {
            if let Err(e) = this.shard(record, *shard).await {
                tracing::warn!(collection = record.name, shard, error = %e, "replica set upkeep failed");
            }
        }))
        .await;
    }

    async fn shard(&self, record: &CollectionRecord, shard: u32) -> Result<()> {
        if self.view_healthy_primary(record, shard) && self.reshape(record, shard).await? {
            return Ok(()); // the next tick works from the changed record
        }
        let view = self.cluster.state.view();
        let s = &record.shards[&shard];
        let local = record.local_name(shard);
        let primary = s.nodes[0].clone();
        let key = lease_key(record, shard);
        let lease_ms = self.cluster.config.primary_lease_ms;
        let started_ms = self.started_ms;
        let mut lease = *self.leases.lock().entry(key.clone()).or_insert(Lease {
            granted_until_ms: started_ms + lease_ms,
            renewing: true,
            failing_since: None,
        });
        let remember = |lease: Lease| self.leases.lock().insert(key.clone(), lease);
        let deadline = self.cluster.config.health_interval().max(Duration::from_millis(200));
        // A primary whose node answers but no longer holds the copy (its disk was wiped or
        // replaced) is failed over like a dead one, and comes back as a replica.
        let mut copy_lost = false;
        if view.is_healthy(&primary) {
            let until = if lease.renewing { now_ms() + lease_ms } else { 0 };
            lease.granted_until_ms = lease.granted_until_ms.max(until);
            // Recorded before it is sent: a grant that may arrive counts.
            remember(lease);
            let a = self.cluster.assignment(record, shard, &primary, until)?;
            let answer = match self.cluster.clients(&primary) {
                Ok(c) => tokio::time::timeout(deadline, c.write.assign_role(&local, &a))
                    .await
                    .unwrap_or(Err(ClientError::Timeout)),
                Err(e) => return Err(e),
            };
            match answer {
                Ok(info) => {
                    lease.renewing = true;
                    lease.failing_since = None;
                    remember(lease);
                    self.update_in_sync(record, shard, &info).await?;
                }
                Err(e) => {
                    lease.renewing = false;
                    lease.failing_since.get_or_insert_with(Instant::now);
                    remember(lease);
                    copy_lost = e.code() == Some(ErrorCode::NotFound);
                    tracing::debug!(collection = record.name, shard, error = %e, "lease renewal failed");
                }
            }
        }
        if copy_lost || !view.is_healthy(&primary) {
            lease.failing_since.get_or_insert_with(Instant::now);
            remember(lease);
            let ends = lease.granted_until_ms + self.cluster.config.clock_skew_ms;
            if now_ms() >= ends {
                self.failover(record, shard, lease.failing_since).await?;
                self.leases.lock().remove(&key);
                return Ok(());
            }
        }
        // Replicas learn their role and epoch (a former primary that came back steps down),
        // all at once, each within the deadline.
        let assignments =
            s.nodes.iter().skip(1).filter(|n| view.is_healthy(n)).map(|node| {
                tokio::time::timeout(deadline, self.assign_replica(record, shard, node))
            });
        join_all(assignments).await;
        Ok(())
    }

    /// Gives `node`'s copy of `shard` its replica assignment. A node that answers but lost
    /// its copy (wiped, or its disk replaced) gets it created empty first: its primary then
    /// resyncs it from the log, or with a snapshot where the log no longer reaches back.
    async fn assign_replica(&self, record: &CollectionRecord, shard: u32, node: &str) {
        let (Ok(a), Ok(c)) =
            (self.cluster.assignment(record, shard, node, 0), self.cluster.clients(node))
        else {
            return;
        };
        let local = record.local_name(shard);
        let Err(e) = c.write.assign_role(&local, &a).await else { return };
        if e.code() != Some(ErrorCode::NotFound) || !self.still_holds(record, shard, node).await {
            return;
        }
        let config = crate::catalog::shard_config(record, shard, 1); // a replica's
        if let Err(e) = c.write.create_shard(&local, &config).await {
            tracing::warn!(collection = record.name, shard, node, error = %e, "cannot recreate a missing replica copy");
            return;
        }
        // A deletion (or a removal of this replica) that dropped the copy while it was being
        // recreated finds it on the second look, and it goes again.
        if !self.still_holds(record, shard, node).await {
            let _ = c.write.drop_shard(&local).await;
            return;
        }
        tracing::warn!(
            collection = record.name,
            shard,
            node,
            "a replica's copy was missing: recreated empty"
        );
        let _ = c.write.assign_role(&local, &a).await;
    }

    /// Whether the metastore's record of `record` (read afresh) is still active and lists
    /// `node` among the copies of `shard`.
    async fn still_holds(&self, record: &CollectionRecord, shard: u32, node: &str) -> bool {
        matches!(
            self.cluster.state.fresh_collection(&record.name).await,
            Ok(Some((fresh, _))) if fresh.uid == record.uid
                && fresh.lifecycle == Lifecycle::Active
                && fresh.shards.get(&shard).is_some_and(|s| s.nodes.iter().any(|n| n == node))
        )
    }

    fn view_healthy_primary(&self, record: &CollectionRecord, shard: u32) -> bool {
        record.shards[&shard].nodes.first().is_some_and(|p| self.cluster.state.view().is_healthy(p))
    }

    /// Works on the copies of `shard`: the move under way, else its replication factor.
    /// Whether the record changed.
    async fn reshape(&self, record: &CollectionRecord, shard: u32) -> Result<bool> {
        match record.moving.as_ref().filter(|m| m.shard == shard) {
            Some(m) => self.move_step(record, shard, m).await,
            None => self.resize(record, shard).await,
        }
    }

    /// Adds or removes one replica of `shard` when its copies differ from the collection's
    /// replication factor (see the module docs); whether the record changed.
    async fn resize(&self, record: &CollectionRecord, shard: u32) -> Result<bool> {
        let s = &record.shards[&shard];
        let want = record.config.replication_factor as usize;
        if s.nodes.len() < want {
            let view = self.cluster.state.view();
            let Some(node) = crate::catalog::node_loads(&view)
                .into_iter()
                .filter(|l| !s.nodes.contains(&l.node))
                .min_by(|a, b| (a.shards, &a.node).cmp(&(b.shards, &b.node)))
                .map(|l| l.node)
            else {
                return Ok(false); // too few healthy nodes: wait for one
            };
            return self.add_replica(record, shard, &node, want).await;
        }
        if s.nodes.len() > want.max(2) {
            let view = self.cluster.state.view();
            let replicas = &s.nodes[1..];
            let victim = replicas
                .iter()
                .rev()
                .find(|n| !view.is_healthy(n))
                .or_else(|| replicas.iter().rev().find(|n| !s.in_sync.contains(n)))
                .or(replicas.last())
                .cloned()
                .expect("a shard with more copies than wanted has replicas");
            return self.remove_replica(record, shard, &victim, want).await;
        }
        Ok(false)
    }

    /// One step of the replicated move `m` of `shard` (see `moves.rs`): add the target as a
    /// replica; once it is in sync, hand it the primary role if the source has it; then remove
    /// the source's copy, which ends the move. A move older than `ABANDONED_MOVE` is given up
    /// (`resize` then trims the extra copy, preferring one not in sync). Whether the record
    /// changed.
    async fn move_step(
        &self,
        record: &CollectionRecord,
        shard: u32,
        m: &MoveRecord,
    ) -> Result<bool> {
        let s = &record.shards[&shard];
        let abandoned =
            now_ms().saturating_sub(m.since_ms) > crate::moves::ABANDONED_MOVE.as_millis() as u64;
        if abandoned || !s.nodes.contains(&m.from) {
            if abandoned {
                tracing::warn!(
                    collection = record.name,
                    shard,
                    from = m.from,
                    to = m.to,
                    "giving up a shard move that did not finish"
                );
            }
            let ours = Some(m.clone());
            self.cluster
                .state
                .update_collection(&record.name, |r| {
                    let changed = r.moving == ours;
                    if changed {
                        r.moving = None;
                    }
                    Ok::<_, RouterError>(changed)
                })
                .await?;
            return Ok(true);
        }
        if !s.nodes.contains(&m.to) {
            if !self.cluster.state.view().is_healthy(&m.to) {
                return Ok(false); // wait for the target to be back
            }
            return self.add_replica(record, shard, &m.to, s.nodes.len() + 1).await;
        }
        if s.nodes[0] == m.from {
            if !s.in_sync.contains(&m.to) {
                return Ok(false); // still catching up
            }
            return self.hand_over(record, shard, &m.to).await;
        }
        if s.nodes[0] != m.to && !s.in_sync.contains(&m.to) {
            return Ok(false);
        }
        self.remove_replica(record, shard, &m.from, 1).await
    }

    /// Adds `node` as a replica of `shard`, unless the shard already has `limit` copies:
    /// created empty there, then named in the record (its primary streams it the log, or a
    /// snapshot). Whether the record changed.
    async fn add_replica(
        &self,
        record: &CollectionRecord,
        shard: u32,
        node: &str,
        limit: usize,
    ) -> Result<bool> {
        let s = &record.shards[&shard];
        let (epoch, local) = (s.epoch, record.local_name(shard));
        let config = crate::catalog::shard_config(record, shard, s.nodes.len());
        match self.cluster.clients(node)?.write.create_shard(&local, &config).await {
            Ok(_) => {}
            // A copy left from an earlier membership: its primary resyncs it.
            Err(e) if e.code() == Some(ErrorCode::AlreadyExists) => {}
            Err(e) => return Err(RouterError::from_shard(shard, node, e)),
        }
        let added = self
            .cluster
            .state
            .update_collection(&record.name, |r| {
                let Some(s) = r.shards.get_mut(&shard) else {
                    return Ok::<_, RouterError>(false);
                };
                if s.epoch != epoch || s.nodes.len() >= limit || s.nodes.iter().any(|n| n == node) {
                    return Ok(false);
                }
                s.nodes.push(node.to_string());
                Ok(true)
            })
            .await?;
        let added = added.is_some_and(|r| r.shards[&shard].nodes.iter().any(|n| n == node));
        if added {
            tracing::info!(collection = record.name, shard, node, "replica added");
        }
        Ok(added)
    }

    /// Removes the replica on `victim` unless the shard has only `keep` copies: from the
    /// record first (ending a move whose source it is), then from the primary's assignment,
    /// then its copy is dropped. Whether the record changed.
    async fn remove_replica(
        &self,
        record: &CollectionRecord,
        shard: u32,
        victim: &str,
        keep: usize,
    ) -> Result<bool> {
        let (epoch, local) = (record.shards[&shard].epoch, record.local_name(shard));
        let updated = self
            .cluster
            .state
            .update_collection(&record.name, |r| {
                let moving_from =
                    r.moving.as_ref().is_some_and(|m| m.shard == shard && m.from == victim);
                let Some(s) = r.shards.get_mut(&shard) else {
                    return Ok::<_, RouterError>(false);
                };
                if s.epoch != epoch
                    || s.nodes.len() <= keep
                    || !s.nodes[1..].iter().any(|n| n == victim)
                {
                    return Ok(false);
                }
                s.nodes.retain(|n| n != victim);
                s.in_sync.retain(|n| n != victim);
                if moving_from {
                    r.moving = None;
                }
                Ok(true)
            })
            .await?;
        let Some(updated) = updated.filter(|r| !r.shards[&shard].nodes.iter().any(|n| n == victim))
        else {
            return Ok(false);
        };
        // The primary stops shipping to it and waiting for it before its copy goes.
        let primary = &updated.shards[&shard].nodes[0];
        let a = self.cluster.assignment(&updated, shard, primary, 0)?;
        if let Ok(c) = self.cluster.clients(primary) {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), c.write.assign_role(&local, &a)).await;
        }
        let dropped = match self.cluster.clients(victim) {
            Ok(c) => c.write.drop_shard(&local).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = dropped {
            tracing::warn!(collection = record.name, shard, node = victim, error = %e,
                "removed replica's copy not dropped");
        }
        tracing::info!(collection = record.name, shard, node = victim, "replica removed");
        Ok(true)
    }

    /// Hands the primary role of `shard` to its in-sync replica `to` (a planned switchover):
    /// the primary is told it is handing over, so it takes no new writes or strong reads (the
    /// routers retry them) while still acknowledging what it logged; once `to` has confirmed
    /// its whole log, a compare-and-swap bumps the epoch with `to` first and the old primary
    /// last among the replicas, and both hear their new roles. Nothing acknowledged can be
    /// missing from `to`, whatever the write consistency. If `to` does not catch up within
    /// half a lease (the old primary's lease is not renewed meanwhile), this same tick's lease
    /// renewal lifts the handover and the primary goes on.
    async fn hand_over(&self, record: &CollectionRecord, shard: u32, to: &str) -> Result<bool> {
        let s = &record.shards[&shard];
        let (old, epoch, local) = (s.nodes[0].clone(), s.epoch, record.local_name(shard));
        // Its lease is kept, so the writes it logged are still acknowledged.
        let stop = RoleAssignment {
            handing_over: true,
            ..self.cluster.assignment(record, shard, &old, 0)?
        };
        let client = self.cluster.clients(&old)?.write;
        let deadline =
            Instant::now() + Duration::from_millis(self.cluster.config.primary_lease_ms / 2);
        loop {
            let answer =
                tokio::time::timeout(Duration::from_secs(1), client.assign_role(&local, &stop))
                    .await
                    .unwrap_or(Err(ClientError::Timeout));
            let caught_up = match answer {
                Ok(info) => {
                    info.replicas.iter().any(|r| r.node == to && r.acked_lsn >= info.last_lsn)
                }
                Err(e) => {
                    tracing::warn!(collection = record.name, shard, node = old, error = %e,
                        "primary did not step down for a handover");
                    false
                }
            };
            if caught_up {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    collection = record.name,
                    shard,
                    from = old,
                    to,
                    "handover target did not confirm the primary's log in time; retrying later"
                );
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let updated = self
            .cluster
            .state
            .update_collection(&record.name, |r| {
                let Some(s) = r.shards.get_mut(&shard) else { return Ok::<_, RouterError>(false) };
                if s.epoch != epoch || s.nodes[0] != old || !s.in_sync.iter().any(|n| n == to) {
                    return Ok(false);
                }
                let mut nodes = vec![to.to_string()];
                nodes.extend(s.nodes.iter().filter(|n| **n != to && **n != old).cloned());
                nodes.push(old.clone());
                s.nodes = nodes;
                s.epoch = epoch + 1;
                s.in_sync.retain(|n| n != to);
                Ok(true)
            })
            .await?
            .ok_or_else(|| RouterError::NotFound(format!("collection {} is gone", record.name)))?;
        if updated.shards[&shard].epoch != epoch + 1 {
            return Ok(false); // changed meanwhile; the old primary's lease is renewed again
        }
        let lease = now_ms() + self.cluster.config.primary_lease_ms;
        let a = self.cluster.assignment(&updated, shard, to, lease)?;
        self.cluster
            .clients(to)?
            .write
            .assign_role(&local, &a)
            .await
            .map_err(|e| RouterError::from_shard(shard, to, e))?;
        let demoted = self.cluster.assignment(&updated, shard, &old, 0)?;
        let _ = tokio::time::timeout(Duration::from_secs(1), client.assign_role(&local, &demoted))
            .await;
        self.cluster.metrics.handovers.inc();
        tracing::info!(
            collection = record.name,
            shard,
            from = old,
            to,
            epoch = epoch + 1,
            "primary handed over"
        );
        Ok(true)
    }

    /// Recomputes the in-sync set from the primary's report; records a change.
    async fn update_in_sync(
        &self,
        record: &CollectionRecord,
        shard: u32,
        info: &ReplicationInfo,
    ) -> Result<()> {
        let view = self.cluster.state.view();
        let s = &record.shards[&shard];
        let max_lag = self.cluster.config.max_replica_lag_ms as f64 / 1000.0;
        let mut in_sync = s.in_sync.clone();
        for r in &info.replicas {
            let healthy = view.is_healthy(&r.node);
            let member = in_sync.contains(&r.node);
            let lagging = !healthy || r.state != ReplicaState::Streaming || r.lag_seconds > max_lag;
            // Back in once it confirmed everything, or, while writes keep coming (so that the
            // last records are always in flight), once it keeps within a tenth of the bound.
            let close = r.lag_records == 0 || r.lag_seconds <= max_lag / 10.0;
            let caught_up = healthy && r.state == ReplicaState::Streaming && close;
            if member && lagging {
                in_sync.retain(|n| n != &r.node);
            } else if !member && caught_up {
                in_sync.push(r.node.clone());
            }
        }
        in_sync.sort_by_key(|n| s.nodes.iter().position(|x| x == n));
        if in_sync == s.in_sync {
            return Ok(());
        }
        tracing::info!(collection = record.name, shard, ?in_sync, "in-sync set changed");
        let epoch = s.epoch;
        self.cluster
            .state
            .update_collection(&record.name, |r| {
                let Some(s) = r.shards.get_mut(&shard) else { return Ok::<_, RouterError>(false) };
                if s.epoch != epoch {
                    return Ok(false);
                }
                s.in_sync = in_sync.clone();
                Ok(true)
            })
            .await?;
        Ok(())
    }

    /// Promotes the most up-to-date healthy in-sync replica of `shard`.
    async fn failover(
        &self,
        record: &CollectionRecord,
        shard: u32,
        failing_since: Option<Instant>,
    ) -> Result<()> {
        let view = self.cluster.state.view();
        let s = &record.shards[&shard];
        let local = record.local_name(shard);
        let mut best: Option<(u64, String)> = None;
        let mut alive = Vec::new();
        for node in s.in_sync.iter().filter(|n| view.is_healthy(n)) {
            let Ok(c) = self.cluster.clients(node) else { continue };
            match tokio::time::timeout(Duration::from_secs(1), c.read.get_shard(&local)).await {
                Ok(Ok(info)) => {
                    alive.push(node.clone());
                    let lsn = info.replication.last_lsn;
                    if best.as_ref().is_none_or(|(b, _)| lsn > *b) {
                        best = Some((lsn, node.clone()));
                    }
                }
                _ => continue,
            }
        }
        let Some((lsn, promoted)) = best else {
            tracing::error!(
                collection = record.name,
                shard,
                "primary is down and no in-sync replica is reachable: the shard stays unavailable"
            );
            return Ok(());
        };
        let old = s.nodes[0].clone();
        let epoch = s.epoch;
        let updated = self
            .cluster
            .state
            .update_collection(&record.name, |r| {
                let Some(s) = r.shards.get_mut(&shard) else { return Ok::<_, RouterError>(false) };
                if s.epoch != epoch || s.nodes[0] != old {
                    return Ok(false);
                }
                let mut nodes = vec![promoted.clone()];
                nodes.extend(s.nodes.iter().filter(|n| **n != promoted && **n != old).cloned());
                nodes.push(old.clone());
                s.nodes = nodes;
                s.epoch = epoch + 1;
                s.in_sync = alive.iter().filter(|n| **n != promoted).cloned().collect();
                Ok(true)
            })
            .await?
            .ok_or_else(|| RouterError::NotFound(format!("collection {} is gone", record.name)))?;
        let s = &updated.shards[&shard];
        if s.epoch != epoch + 1 || s.nodes[0] != promoted {
            return Ok(()); // someone else changed it first
        }
        let lease = now_ms() + self.cluster.config.primary_lease_ms;
        let a = self.cluster.assignment(&updated, shard, &promoted, lease)?;
        self.cluster
            .clients(&promoted)?
            .write
            .assign_role(&local, &a)
            .await
            .map_err(|e| RouterError::from_shard(shard, &promoted, e))?;
        let took = failing_since.map(|t| t.elapsed().as_secs_f64());
        self.cluster.metrics.failovers.inc();
        if let Some(t) = took {
            self.cluster.metrics.failover_seconds.observe(t);
        }
        tracing::warn!(
            collection = record.name,
            shard,
            from = old,
            to = promoted,
            epoch = epoch + 1,
            lsn,
            seconds = took,
            "primary failed over"
        );
        Ok(())
    }
}
