//! Cluster state as the router stores it in the metastore, and the in-memory view every
//! router keeps of it by watching.
//!
//! Keys (all JSON values, under the `vdb/` prefix):
//! - `vdb/nodes/<id>` → [`NodeRecord`]: a registered shard node.
//! - `vdb/health/<id>` → [`HealthRecord`]: the controller's last verdict on a node.
//! - `vdb/collections/<name>` → [`CollectionRecord`]: config, placement, resharding state.
//! - `vdb/elections/controller` (owned by `vdb_meta`'s election).
//!
//! Every change goes through compare-and-swap on the key's revision, so two routers never
//! overwrite each other's update unknowingly.

use parking_lot::RwLock;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use vdb_api::{CollectionConfig, Ownership, ShardMapSpec};
use vdb_meta::{CasOutcome, MetaError, MetaStore, Revision, WatchEvent};

pub const ROOT: &str = "vdb/";
pub const NODES: &str = "vdb/nodes/";
pub const HEALTH: &str = "vdb/health/";
pub const COLLECTIONS: &str = "vdb/collections/";
/// A key read by readiness checks to prove the metastore answers.
pub const CONTROLLER_PROBE: &str = "vdb/probe";

/// A registered shard node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: String,
    pub url: String,
}

/// The controller's verdict on a node, written when it changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthRecord {
    pub healthy: bool,
    pub failed_checks: u32,
}

/// Where a collection stands in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// Local shards are being created; not served yet.
    Creating,
    Active,
    /// Local shards are being dropped; not served any more.
    Deleting,
}

/// One shard of a collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// Nodes holding a copy; the first is the primary.
    pub nodes: Vec<String>,
    /// The primary's epoch: bumped (by compare-and-swap) at every failover.
    pub epoch: u64,
    /// Replicas in sync: their confirmations count for sync and semi-sync writes, and only
    /// they may be promoted. Shrunk here before the primary is told, so a promoted replica
    /// always holds every acknowledged write.
    #[serde(default)]
    pub in_sync: Vec<String>,
}

/// A resharding under way (see `reshard.rs` for the protocol).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReshardRecord {
    pub from: ShardMapSpec,
    pub to: ShardMapSpec,
    /// Sources already handed over, in order.
    pub cut_over: Vec<u32>,
    /// Points copied so far (progress only).
    pub copied: u64,
}

/// A collection: its config, where its shards live, and any resharding in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CollectionRecord {
    pub name: String,
    /// Distinguishes this incarnation from an earlier collection of the same name; part of
    /// every local shard name.
    pub uid: String,
    pub config: CollectionConfig,
    pub lifecycle: Lifecycle,
    /// Shards by id; during a resharding this holds the union of old and new shards.
    pub shards: BTreeMap<u32, ShardRecord>,
    /// Ids of the shards in the current map (excludes shards being added by a resharding).
    pub map: Vec<u32>,
    pub next_shard_id: u32,
    /// When the record entered its lifecycle state (ms since the epoch): lets the controller
    /// finish creations and deletions a crashed router left half done.
    pub since_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resharding: Option<ReshardRecord>,
    /// A shard copy moving between nodes (see `moves.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving: Option<MoveRecord>,
}

/// A move of one shard's copy between nodes, under way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MoveRecord {
    pub shard: u32,
    pub from: String,
    pub to: String,
    /// When it started (ms since the epoch), so the controller can tell abandoned ones.
    pub since_ms: u64,
}

impl CollectionRecord {
    /// The local shard name of `shard` on its nodes.
    pub fn local_name(&self, shard: u32) -> String {
        local_shard_name(&self.name, &self.uid, shard)
    }

    /// The shard map in force (the `from` map while resharding).
    pub fn map_spec(&self) -> ShardMapSpec {
        ShardMapSpec { sharding: self.config.sharding.clone(), shards: self.map.clone() }
    }

    /// The ownership rule reads must carry for `shard`, when a resharding is under way.
    pub fn ownership(&self, shard: u32) -> Option<Ownership> {
        self.resharding.as_ref().map(|r| Ownership {
            from: r.from.clone(),
            to: r.to.clone(),
            cut_over: r.cut_over.clone(),
            shard,
        })
    }

    /// Every shard that may hold points: the current map plus shards being added.
    pub fn all_shards(&self) -> Vec<u32> {
        self.shards.keys().copied().collect()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn local_shard_name(collection: &str, uid: &str, shard: u32) -> String {
    format!("{collection}.{uid}.s{shard}")
}

/// Collection names: 1..=128 of `[A-Za-z0-9_-]`.
pub fn validate_collection_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 128
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    {
        return Err(format!(
            "collection name must be 1 to 128 characters of letters, digits, '_' or '-', got {name:?}"
        ));
    }
    Ok(())
}

/// Node ids: 1..=64 of `[A-Za-z0-9_.-]`.
pub fn validate_node_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > 64
        || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "node id must be 1 to 64 characters of letters, digits, '_', '-' or '.', got {id:?}"
        ));
    }
    Ok(())
}

/// What a router knows of the cluster, as of `revision`.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub revision: Revision,
    pub nodes: BTreeMap<String, NodeRecord>,
    pub health: BTreeMap<String, HealthRecord>,
    /// Collections with the revision of their record (for compare-and-swap).
    pub collections: BTreeMap<String, (CollectionRecord, Revision)>,
}

impl ClusterView {
    /// A node counts as healthy until the controller has said otherwise.
    pub fn is_healthy(&self, node: &str) -> bool {
        self.health.get(node).is_none_or(|h| h.healthy)
    }

    fn apply(&mut self, key: &str, value: Option<(&[u8], Revision)>) {
        fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Option<T> {
            match serde_json::from_slice(bytes) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::error!(key, error = %e, "undecodable metastore record ignored");
                    None
                }
            }
        }
        if let Some(id) = key.strip_prefix(NODES) {
            match value.and_then(|(v, _)| decode(key, v)) {
                Some(n) => self.nodes.insert(id.to_string(), n),
                None => self.nodes.remove(id),
            };
        } else if let Some(id) = key.strip_prefix(HEALTH) {
            match value.and_then(|(v, _)| decode(key, v)) {
                Some(h) => self.health.insert(id.to_string(), h),
                None => self.health.remove(id),
            };
        } else if let Some(name) = key.strip_prefix(COLLECTIONS) {
            match value.and_then(|(v, rev)| decode(key, v).map(|c| (c, rev))) {
                Some(c) => self.collections.insert(name.to_string(), c),
                None => self.collections.remove(name),
            };
        }
    }
}

/// The shared, always-current view, refreshed by a watch on the metastore.
#[derive(Clone)]
pub struct State {
    pub meta: Arc<dyn MetaStore>,
    view: Arc<RwLock<Arc<ClusterView>>>,
    revision: watch::Sender<Revision>,
}

impl State {
    /// Loads the view and starts the task that keeps it current.
    pub async fn start(meta: Arc<dyn MetaStore>) -> Result<State, MetaError> {
        let (tx, _) = watch::channel(0);
        let state = State { meta, view: Arc::default(), revision: tx };
        let after = state.reload().await?;
        let watcher = state.clone();
        tokio::spawn(async move { watcher.follow(after).await });
        Ok(state)
    }

    /// The current view (cheap: an `Arc`).
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.read().clone()
    }

    async fn reload(&self) -> Result<Revision, MetaError> {
        let listing = self.meta.list(ROOT).await?;
        let mut view = ClusterView { revision: listing.revision, ..Default::default() };
        for kv in &listing.kvs {
            view.apply(&kv.key, Some((&kv.value, kv.mod_revision)));
        }
        *self.view.write() = Arc::new(view);
        self.revision.send_replace(listing.revision);
        Ok(listing.revision)
    }

    async fn follow(&self, mut after: Revision) {
        loop {
            match self.meta.watch(ROOT, after).await {
                Ok(mut events) => {
                    while let Some(event) = events.next().await {
                        match event {
                            Ok(event) => after = self.apply(event),
                            Err(e) => {
                                tracing::warn!(error = %e, "metastore watch broke; reloading");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot watch the metastore; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            match self.reload().await {
                Ok(rev) => after = rev,
                Err(e) => tracing::warn!(error = %e, "cannot reload cluster state; retrying"),
            }
        }
    }

    fn apply(&self, event: WatchEvent) -> Revision {
        let mut guard = self.view.write();
        let mut view = (**guard).clone();
        let rev = match &event {
            WatchEvent::Put(kv) => {
                view.apply(&kv.key, Some((&kv.value, kv.mod_revision)));
                kv.mod_revision
            }
            WatchEvent::Delete { key, mod_revision } => {
                view.apply(key, None);
                *mod_revision
            }
        };
        view.revision = view.revision.max(rev);
        let revision = view.revision;
        *guard = Arc::new(view);
        drop(guard);
        self.revision.send_replace(revision);
        revision
    }

    /// Waits until the view reflects everything up to `revision` (a write of this router's),
    /// so a client that got an answer sees its own change on the next request.
    pub async fn caught_up(&self, revision: Revision) {
        let mut rx = self.revision.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|r| *r >= revision)).await;
    }

    /// Writes `record` if `key` is still at `expected` (None: absent). Returns the new
    /// revision, or `None` on a conflict.
    pub async fn cas<T: Serialize>(
        &self,
        key: &str,
        expected: Option<Revision>,
        record: &T,
    ) -> Result<Option<Revision>, MetaError> {
        let bytes = serde_json::to_vec(record).expect("records serialize");
        match self.meta.compare_and_swap(key, expected, bytes, None).await? {
            CasOutcome::Written(rev) => {
                self.caught_up(rev).await;
                Ok(Some(rev))
            }
            CasOutcome::Conflict(_) => Ok(None),
        }
    }

    /// Reads a collection straight from the metastore (not the view): for retries after a
    /// shard said the router's map is stale.
    pub async fn fresh_collection(
        &self,
        name: &str,
    ) -> Result<Option<(CollectionRecord, Revision)>, MetaError> {
        let Some(kv) = self.meta.get(&format!("{COLLECTIONS}{name}")).await? else {
            return Ok(None);
        };
        let record = serde_json::from_slice(&kv.value)
            .map_err(|e| MetaError::Corrupt(format!("collection {name}: {e}")))?;
        self.caught_up(kv.mod_revision).await;
        Ok(Some((record, kv.mod_revision)))
    }

    /// Applies `change` to the stored collection with compare-and-swap, retrying on conflicts
    /// with the fresh record. `change` returns `Ok(false)` to leave the record as it is.
    pub async fn update_collection<E: From<MetaError>>(
        &self,
        name: &str,
        mut change: impl FnMut(&mut CollectionRecord) -> Result<bool, E>,
    ) -> Result<Option<CollectionRecord>, E> {
        loop {
            let Some((mut record, rev)) = self.fresh_collection(name).await? else {
                return Ok(None);
            };
            if !change(&mut record)? {
                return Ok(Some(record));
            }
            if self.cas(&format!("{COLLECTIONS}{name}"), Some(rev), &record).await?.is_some() {
                return Ok(Some(record));
            }
        }
    }
}
