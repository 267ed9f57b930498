//! The controller: one router at a time, elected through the metastore, checks the health
//! of every shard node, keeps replica sets (leases, in-sync sets, failover; see
//! [`crate::replicas`]), finishes collection creations and deletions a crashed router left
//! half done, watches shard sizes for imbalance, and drives reshardings.
//!
//! A controller that cannot renew its leadership stops acting before its lease can expire
//! (`vdb_meta::Leadership::lost`), so two controllers never act at once while the lease
//! assumptions hold.

use crate::catalog::ABANDONED_AFTER;
use crate::cluster::Cluster;
use crate::moves::ABANDONED_MOVE;
use crate::state::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex};
use vdb_api::NodeStatus;
use vdb_meta::Election;

/// Runs for the life of the router: campaigns, acts while elected, campaigns again.
pub async fn run(cluster: Arc<Cluster>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let campaign = Election::campaign(
            cluster.state.meta.clone(),
            CONTROLLER_ELECTION,
            &cluster.id,
            cluster.config.controller_ttl(),
        );
        let leadership = tokio::select! {
            r = campaign => r,
            _ = stopped(&mut shutdown) => return,
        };
        let leadership = match leadership {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "controller campaign failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        tracing::info!(router = cluster.id, "elected controller");
        cluster.metrics.controller.set(1);
        let controller = Controller::new(cluster.clone());
        tokio::select! {
            _ = leadership.lost() => tracing::warn!("controller leadership lost"),
            _ = controller.act() => {}
            _ = stopped(&mut shutdown) => {
                cluster.metrics.controller.set(0);
                let _ = leadership.resign().await;
                return;
            }
        }
        cluster.metrics.controller.set(0);
        // Only the controller's gauges mean anything: a former controller drops its own.
        cluster.metrics.node_up.reset();
        cluster.metrics.imbalance.reset();
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// The shortest a health check may take before it counts as missed (for short intervals on
/// busy machines).
const MIN_CHECK_DEADLINE: Duration = Duration::from_millis(250);

/// The election's name in the metastore.
pub const CONTROLLER_ELECTION: &str = "controller";

struct Controller {
    cluster: Arc<Cluster>,
    replicas: crate::replicas::Replicas,
    failures: HashMap<String, u32>,
    /// Collections with a resharding task running in this controller.
    resharding: Arc<Mutex<HashSet<String>>>,
}

impl Controller {
    fn new(cluster: Arc<Cluster>) -> Controller {
        Controller {
            replicas: crate::replicas::Replicas::new(cluster.clone()),
            cluster,
            failures: HashMap::new(),
            resharding: Arc::default(),
        }
    }

    async fn act(mut self) {
        let mut tick = tokio::time::interval(self.cluster.config.health_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let statuses = self.check_health().await;
            self.replicas.tick().await;
            self.tidy().await;
            self.watch_balance(&statuses).await;
        }
    }

    /// Asks every node for its status; records verdicts that changed.
    async fn check_health(&mut self) -> BTreeMap<String, NodeStatus> {
        let view = self.cluster.state.view();
        // A check answers within one interval (at least MIN_CHECK_DEADLINE) or counts as
        // missed: a node silent for `--health-failures` intervals in a row is down. A longer
        // deadline would make a hung node (paused, partitioned: no refusal, just silence) take
        // seconds to detect, and hold up this tick's lease renewals of every other primary.
        let deadline = self.cluster.config.health_interval().max(MIN_CHECK_DEADLINE);
        let checks = view.nodes.keys().map(|id| {
            let cluster = &self.cluster;
            async move {
                let status = match cluster.clients(id) {
                    Ok(c) => tokio::time::timeout(deadline, c.read.status())
                        .await
                        .ok()
                        .and_then(|r| r.ok()),
                    Err(_) => None,
                };
                (id.clone(), status)
            }
        });
        let results = futures::future::join_all(checks).await;
        let mut statuses = BTreeMap::new();
        let mut up = Vec::new();
        for (id, status) in results {
            let failures = self.failures.entry(id.clone()).or_default();
            match status {
                Some(s) if s.ready => {
                    *failures = 0;
                    statuses.insert(id.clone(), s);
                }
                _ => *failures += 1,
            }
            let verdict = HealthRecord {
                healthy: *failures < self.cluster.config.health_failures,
                failed_checks: *failures,
            };
            let known = view.health.get(&id);
            let changed = known.map(|h| h.healthy) != Some(verdict.healthy)
                || (verdict.failed_checks == 0 && known.is_some_and(|h| h.failed_checks > 0));
            if changed {
                if verdict.healthy != known.is_none_or(|h| h.healthy) {
                    tracing::warn!(node = id, healthy = verdict.healthy, "node health changed");
                }
                let bytes = serde_json::to_vec(&verdict).expect("json");
                if let Err(e) =
                    self.cluster.state.meta.put(&format!("{HEALTH}{id}"), bytes, None).await
                {
                    tracing::warn!(error = %e, "cannot record node health");
                }
            }
            up.push((id, verdict.healthy));
        }
        // Replaced whole, so deregistered nodes leave the metric.
        self.cluster.metrics.node_up.reset();
        for (id, healthy) in up {
            self.cluster.metrics.node_up.with_label_values(&[&id]).set(healthy as i64);
        }
        statuses
    }

    /// Rolls back abandoned creations and moves, finishes deletions, resumes reshardings.
    async fn tidy(&self) {
        let view = self.cluster.state.view();
        let now = now_ms();
        for (record, rev) in view.collections.values() {
            let stale = now.saturating_sub(record.since_ms) > ABANDONED_AFTER.as_millis() as u64;
            match record.lifecycle {
                Lifecycle::Creating if stale => {
                    tracing::warn!(collection = record.name, "rolling back an abandoned creation");
                    let mut deleting = record.clone();
                    deleting.lifecycle = Lifecycle::Deleting;
                    deleting.since_ms = now;
                    let key = format!("{COLLECTIONS}{}", record.name);
                    let _ = self.cluster.state.cas(&key, Some(*rev), &deleting).await;
                }
                Lifecycle::Deleting => self.cluster.finish_delete(record).await,
                Lifecycle::Active if record.resharding.is_some() => {
                    self.spawn_reshard(&record.name).await
                }
                // Replicated shards' moves are driven by `Replicas`, which gives them up itself.
                Lifecycle::Active
                    if record.config.replication_factor == 1
                        && record.moving.as_ref().is_some_and(|m| {
                            now.saturating_sub(m.since_ms) > ABANDONED_MOVE.as_millis() as u64
                        }) =>
                {
                    tracing::warn!(
                        collection = record.name,
                        "rolling back an abandoned shard move"
                    );
                    self.cluster.abort_move(&record.name).await
                }
                _ => {}
            }
        }
    }

    async fn spawn_reshard(&self, name: &str) {
        let mut running = self.resharding.lock().await;
        if !running.insert(name.to_string()) {
            return;
        }
        let (cluster, set, name) =
            (self.cluster.clone(), self.resharding.clone(), name.to_string());
        tokio::spawn(async move {
            if let Err(e) = cluster.drive_resharding(&name).await {
                tracing::warn!(collection = name, error = %e, "resharding step failed; will retry");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            set.lock().await.remove(&name);
        });
    }

    /// Exports each collection's imbalance and, where enabled, adds a shard to fix it.
    async fn watch_balance(&self, statuses: &BTreeMap<String, NodeStatus>) {
        let points: HashMap<&str, u64> = statuses
            .values()
            .flat_map(|s| s.shards.iter().map(|l| (l.name.as_str(), l.points)))
            .collect();
        let view = self.cluster.state.view();
        let mut flagged_collections = Vec::new();
        let mut ratios = Vec::new();
        for (record, _) in view.collections.values() {
            if record.lifecycle != Lifecycle::Active {
                continue;
            }
            let counts: Option<Vec<(u32, u64)>> = record
                .map
                .iter()
                .map(|&s| points.get(record.local_name(s).as_str()).map(|&p| (s, p)))
                .collect();
            let Some(counts) = counts else { continue };
            let total: u64 = counts.iter().map(|c| c.1).sum();
            let max = counts.iter().map(|c| c.1).max().unwrap_or(0);
            let ratio =
                if total == 0 { 1.0 } else { max as f64 * counts.len() as f64 / total as f64 };
            ratios.push((record.name.clone(), ratio));
            let flagged = vdb_sharding::detect_imbalance(
                &counts,
                self.cluster.config.imbalance_ratio,
                self.cluster.config.imbalance_min_points,
            );
            if let Some(i) = flagged {
                flagged_collections.push((record.clone(), i));
            }
        }
        // Replaced whole, so deleted collections leave the metric.
        self.cluster.metrics.imbalance.reset();
        for (name, ratio) in ratios {
            self.cluster.metrics.imbalance.with_label_values(&[&name]).set(ratio);
        }
        for (record, i) in flagged_collections {
            if record.config.auto_reshard && record.resharding.is_none() {
                tracing::warn!(
                    collection = record.name,
                    shard = i.shard,
                    ratio = i.ratio,
                    "shard imbalance; adding a shard"
                );
                match self.cluster.split_hot_shard(&record.name, i.shard).await {
                    Ok(()) => self.cluster.metrics.auto_reshards.inc(),
                    Err(e) => {
                        tracing::warn!(collection = record.name, error = %e, "cannot add a shard")
                    }
                }
            }
        }
    }
}
