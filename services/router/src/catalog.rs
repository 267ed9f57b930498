//! Collections and nodes: create, describe, update and delete collections (placing their
//! shards on nodes), register shard nodes, describe the cluster.
//!
//! Creating a collection is two-phase: the record is written as `creating` (so two routers
//! cannot create the same name), the local shards are created on their nodes, then the record
//! becomes `active`. A router that dies in between leaves a `creating` record that the
//! controller rolls back; deletion is the same in reverse.

use crate::cluster::{collect, Cluster, Reads, Routed};
use crate::error::{Result, RouterError};
use crate::state::*;
use futures::future::join_all;
use std::collections::BTreeMap;
use std::time::Duration;
use vdb_api::*;
use vdb_sharding::{NodeLoad, ShardMap};

/// A `creating` or `deleting` record older than this was abandoned by its router.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// Checks a collection's config; returns the stored form with `dimension` (the request's, or
/// its embedding model's).
pub fn validate_create(req: &CreateCollection, dimension: usize) -> Result<CollectionConfig> {
    let invalid = |m: String| Err(RouterError::Invalid(m));
    if !(1..=65_536).contains(&dimension) {
        return invalid(format!("dimension must be 1..=65536, got {dimension}"));
    }
    if let Some(e) = &req.embedding {
        if e.model.is_empty() {
            return invalid("embedding.model must name a model".into());
        }
        if let Some(key) = &e.store_text {
            if key.is_empty() || key.contains('.') || key.len() > 256 {
                return invalid(format!(
                    "embedding.store_text must be a top-level payload key (1..=256 characters, \
                     no dots), got {key:?}"
                ));
            }
        }
    }
    let h = &req.hnsw;
    if !(2..=512).contains(&h.m) {
        return invalid(format!("hnsw.m must be 2..=512, got {}", h.m));
    }
    if !(1..=4096).contains(&h.ef_construction) || !(1..=4096).contains(&h.ef_search) {
        return invalid("hnsw.ef_construction and hnsw.ef_search must be 1..=4096".into());
    }
    if !(1..=1024).contains(&req.shard_count) {
        return invalid(format!("shard_count must be 1..=1024, got {}", req.shard_count));
    }
    if req.replication_factor == 0 {
        return invalid("replication_factor must be at least 1".into());
    }
    if req.replication_factor > 16 {
        return invalid(format!(
            "replication_factor must be 1..=16, got {}",
            req.replication_factor
        ));
    }
    let replicas = req.replication_factor - 1;
    check_consistency(req.write_consistency, replicas)?;
    let min_in_sync = req.min_in_sync.unwrap_or(replicas.min(1));
    if min_in_sync > replicas {
        return invalid(format!(
            "min_in_sync must be 0..={replicas} (replicas besides the primary), got {min_in_sync}"
        ));
    }
    let shards: Vec<u32> = (0..req.shard_count).collect();
    ShardMap::new(&req.sharding, &shards).map_err(|e| RouterError::Invalid(e.to_string()))?;
    Ok(CollectionConfig {
        dimension,
        metric: req.metric,
        hnsw: req.hnsw,
        scalar: req.scalar,
        replication_factor: req.replication_factor,
        sharding: req.sharding.clone(),
        write_consistency: req.write_consistency,
        min_in_sync,
        auto_reshard: req.auto_reshard,
        embedding: req.embedding.clone(),
    })
}

/// A write consistency a collection with `replicas` replicas per shard can give.
fn check_consistency(w: WriteConsistency, replicas: u32) -> Result<()> {
    match w {
        WriteConsistency::SemiSync { acks } if acks == 0 || acks > replicas => {
            Err(RouterError::Invalid(format!(
                "semi_sync acks must be 1..={replicas} (replicas besides the primary), got {acks}"
            )))
        }
        _ => Ok(()),
    }
}

/// Local shards each healthy node hosts, by placement.
pub fn node_loads(view: &ClusterView) -> Vec<NodeLoad> {
    let mut loads: BTreeMap<&str, usize> =
        view.nodes.keys().filter(|n| view.is_healthy(n)).map(|n| (n.as_str(), 0)).collect();
    for (record, _) in view.collections.values() {
        for shard in record.shards.values() {
            for node in &shard.nodes {
                if let Some(n) = loads.get_mut(node.as_str()) {
                    *n += 1;
                }
            }
        }
    }
    loads.into_iter().map(|(node, shards)| NodeLoad { node: node.to_string(), shards }).collect()
}

/// The local shard config of `shard` of `record` on its `replica`-th node.
pub fn shard_config(record: &CollectionRecord, shard: u32, replica: usize) -> ShardConfig {
    let c = &record.config;
    ShardConfig {
        collection: record.name.clone(),
        shard_id: shard,
        dimension: c.dimension,
        metric: c.metric,
        hnsw: c.hnsw,
        scalar: c.scalar,
        role: if replica == 0 { Role::Primary } else { Role::Replica },
        epoch: record.shards.get(&shard).map_or(1, |s| s.epoch),
    }
}

fn key(name: &str) -> String {
    format!("{COLLECTIONS}{name}")
}

impl Cluster {
    pub async fn create_collection(
        &self,
        name: &str,
        req: CreateCollection,
    ) -> Result<CollectionInfo> {
        validate_collection_name(name).map_err(RouterError::Invalid)?;
        // Everything but the dimension first, so bad input is refused before an embedder is
        // asked for its model's dimension.
        validate_create(&req, req.dimension.unwrap_or(1))?;
        let dimension = self.collection_dimension(&req).await?;
        let config = validate_create(&req, dimension)?;
        let view = self.state.view();
        let loads = node_loads(&view);
        if loads.is_empty() {
            return Err(RouterError::Unavailable("no healthy shard node is registered".into()));
        }
        let shard_ids: Vec<u32> = (0..req.shard_count).collect();
        let placement = vdb_sharding::place(&shard_ids, req.replication_factor as usize, &loads)
            .map_err(|e| RouterError::Unavailable(format!("cannot place shards: {e}")))?;
        let record = CollectionRecord {
            name: name.to_string(),
            uid: format!("{:08x}", rand::random::<u32>()),
            config,
            lifecycle: Lifecycle::Creating,
            shards: placement
                .into_iter()
                .map(|(shard, nodes)| {
                    let in_sync = nodes[1..].to_vec();
                    (shard, ShardRecord { nodes, epoch: 1, in_sync })
                })
                .collect(),
            map: shard_ids,
            next_shard_id: req.shard_count,
            since_ms: now_ms(),
            resharding: None,
            moving: None,
        };
        let Some(rev) = self.state.cas(&key(name), None, &record).await? else {
            return Err(RouterError::AlreadyExists(format!("collection {name} already exists")));
        };
        let created = match self.create_local_shards(&record, &record.all_shards()).await {
            Ok(()) => self.assign_all_roles(&record).await,
            Err(e) => Err(e),
        };
        if let Err(e) = created {
            tracing::warn!(collection = name, error = %e, "creation failed; rolling back");
            self.drop_local_shards(&record).await;
            let _ = self.state.meta.delete(&key(name), Some(rev)).await;
            return Err(e);
        }
        let mut active = record;
        active.lifecycle = Lifecycle::Active;
        active.since_ms = now_ms();
        if self.state.cas(&key(name), Some(rev), &active).await?.is_none() {
            return Err(RouterError::Unavailable(format!(
                "collection {name} changed while it was being created; retry"
            )));
        }
        tracing::info!(collection = name, shards = active.map.len(), "collection created");
        self.describe_collection(name).await
    }

    /// The dimension a new collection gets: the request's, or its embedding model's (which a
    /// given dimension must equal).
    async fn collection_dimension(&self, req: &CreateCollection) -> Result<usize> {
        let Some(embedding) = &req.embedding else {
            return req.dimension.ok_or_else(|| {
                RouterError::Invalid(
                    "dimension is required unless embedding names a model to take it from".into(),
                )
            });
        };
        let model = self.embedders.info(&embedding.model).await?;
        match req.dimension {
            Some(d) if d != model.dimension => Err(RouterError::Rejected {
                code: ErrorCode::DimensionMismatch,
                message: format!(
                    "dimension {d} differs from model {}'s {}; omit dimension to take the model's",
                    embedding.model, model.dimension
                ),
            }),
            _ => Ok(model.dimension),
        }
    }

    /// Creates the local shards `shards` of `record` on every node of theirs.
    pub async fn create_local_shards(
        &self,
        record: &CollectionRecord,
        shards: &[u32],
    ) -> Result<()> {
        let calls = shards.iter().flat_map(|&shard| {
            record.shards[&shard].nodes.iter().enumerate().map(move |(replica, node)| async move {
                let config = shard_config(record, shard, replica);
                let clients = self.clients(node)?;
                match clients.write.create_shard(&record.local_name(shard), &config).await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(RouterError::from_shard(shard, node, e)),
                }
            })
        });
        join_all(calls).await.into_iter().collect()
    }

    /// Drops every local shard of `record`; a node that cannot be reached keeps its copy
    /// (logged), which the controller drops later.
    pub async fn drop_local_shards(&self, record: &CollectionRecord) -> bool {
        let calls = record.shards.iter().flat_map(|(&shard, s)| {
            s.nodes.iter().map(move |node| async move {
                let local = record.local_name(shard);
                let result = match self.clients(node) {
                    Ok(c) => c.write.drop_shard(&local).await.or_else(|e| {
                        if e.code() == Some(ErrorCode::NotFound) {
                            Ok(())
                        } else {
                            Err(e.to_string())
                        }
                    }),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = &result {
                    tracing::warn!(node, local, error = %e, "cannot drop local shard yet");
                }
                result.is_ok()
            })
        });
        join_all(calls).await.into_iter().all(|ok| ok)
    }

    pub async fn delete_collection(&self, name: &str) -> Result<()> {
        let record = self
            .state
            .update_collection(name, |r| {
                if r.lifecycle == Lifecycle::Deleting {
                    return Ok::<_, RouterError>(false);
                }
                r.lifecycle = Lifecycle::Deleting;
                r.since_ms = now_ms();
                Ok(true)
            })
            .await?
            .ok_or_else(|| RouterError::NotFound(format!("collection {name} does not exist")))?;
        self.finish_delete(&record).await;
        Ok(())
    }

    /// Drops the local shards of a `deleting` collection and, when all are gone, its record.
    pub async fn finish_delete(&self, record: &CollectionRecord) {
        if self.drop_local_shards(record).await {
            match self.state.fresh_collection(&record.name).await {
                Ok(Some((r, rev))) if r.uid == record.uid => {
                    if let Ok(true) = self.state.meta.delete(&key(&record.name), Some(rev)).await {
                        self.state.caught_up(rev).await;
                        tracing::info!(collection = record.name, "collection deleted");
                    }
                }
                _ => {}
            }
        }
    }

    pub async fn update_collection(
        &self,
        name: &str,
        req: UpdateCollection,
    ) -> Result<CollectionInfo> {
        if let Some(ef) = req.ef_search {
            if !(1..=4096).contains(&ef) {
                return Err(RouterError::Invalid(format!("ef_search must be 1..=4096, got {ef}")));
            }
        }
        let routed = self.routed(name).await?;
        let config = &routed.record.config;
        let rf = req.replication_factor.unwrap_or(config.replication_factor);
        if req.replication_factor.is_some() {
            let nodes = self.state.view().nodes.len() as u32;
            if !(1..=16.min(nodes)).contains(&rf) {
                return Err(RouterError::Invalid(format!(
                    "replication_factor must be 1..={} (at most one copy per registered node), \
                     got {rf}",
                    16.min(nodes)
                )));
            }
            // A replicated shard's primary holds a lease the controller renews; going back to
            // one copy would need it released everywhere first.
            if rf == 1 && config.replication_factor > 1 {
                return Err(RouterError::Invalid(
                    "a replicated collection keeps at least 2 copies (replication_factor 1 is \
                     only for collections created so)"
                        .into(),
                ));
            }
            if rf != config.replication_factor
                && (routed.record.resharding.is_some() || routed.record.moving.is_some())
            {
                return Err(RouterError::Invalid(
                    "replication_factor cannot change while shards are resharded or moved".into(),
                ));
            }
        }
        // The new settings must fit the new number of replicas together.
        let replicas = rf - 1;
        check_consistency(req.write_consistency.unwrap_or(config.write_consistency), replicas)
            .map_err(|e| match e {
                RouterError::Invalid(m) if req.write_consistency.is_none() => RouterError::Invalid(
                    format!("{m}: lower write_consistency in the same request"),
                ),
                e => e,
            })?;
        // Unless given: a collection on the default keeps the default (1 with replicas, as at
        // creation), another keeps its choice where it still fits.
        let default_for = |replicas: u32| replicas.min(1);
        let min_in_sync = req.min_in_sync.unwrap_or(
            if config.min_in_sync == default_for(config.replication_factor - 1) {
                default_for(replicas)
            } else {
                config.min_in_sync.min(replicas)
            },
        );
        if min_in_sync > replicas {
            return Err(RouterError::Invalid(format!(
                "min_in_sync must be 0..={replicas} (replicas besides the primary), got \
                 {min_in_sync}"
            )));
        }
        self.state
            .update_collection(name, |r| {
                r.config.replication_factor = rf;
                r.config.min_in_sync = min_in_sync;
                if let Some(ef) = req.ef_search {
                    r.config.hnsw.ef_search = ef;
                }
                if let Some(w) = req.write_consistency {
                    r.config.write_consistency = w;
                }
                if let Some(a) = req.auto_reshard {
                    r.config.auto_reshard = a;
                }
                Ok::<_, RouterError>(true)
            })
            .await?;
        self.describe_collection(name).await
    }

    pub fn list_collections(&self) -> CollectionList {
        let view = self.state.view();
        let active = || view.collections.values().filter(|(r, _)| r.lifecycle == Lifecycle::Active);
        CollectionList {
            collections: active().map(|(r, _)| r.name.clone()).collect(),
            embedding_models: active()
                .filter_map(|(r, _)| {
                    Some((r.name.clone(), r.config.embedding.as_ref()?.model.clone()))
                })
                .collect(),
        }
    }

    /// Config, placement, and per-shard statistics asked of the nodes now.
    pub async fn describe_collection(&self, name: &str) -> Result<CollectionInfo> {
        let routed = self.routed(name).await?;
        let shards = routed.record.all_shards();
        let outcomes = self
            .fan_out(&routed, &shards, |c, local, _| async move { c.read.get_shard(&local).await })
            .await;
        let view = self.state.view();
        let (ok, failed) = collect(outcomes);
        let stats: BTreeMap<u32, ShardInfo> = ok.into_iter().collect();
        let record = &routed.record;
        let infos: Vec<ShardPlacementInfo> = record
            .shards
            .iter()
            .map(|(&shard, s)| {
                let info = stats.get(&shard);
                let (search_rate, write_rate) = match info {
                    Some(i) => self.rates(&i.name, i.searches, i.last_lsn),
                    None => (None, None),
                };
                ShardPlacementInfo {
                    shard,
                    nodes: s.nodes.clone(),
                    epoch: s.epoch,
                    in_sync: s.in_sync.clone(),
                    replicas: info.map(|i| i.replication.replicas.clone()).unwrap_or_default(),
                    points: info.map(|i| i.points),
                    memory_bytes: info.map(|i| i.index.memory_bytes + i.payload_bytes),
                    searches_total: info.map(|i| i.searches),
                    writes_total: info.map(|i| i.last_lsn),
                    search_rate,
                    write_rate,
                    healthy: info.is_some() && s.nodes.first().is_some_and(|n| view.is_healthy(n)),
                }
            })
            .collect();
        let status = if !failed.is_empty() || infos.iter().any(|i| !i.healthy) {
            CollectionStatus::Red
        } else if record.resharding.is_some() || record.moving.is_some() {
            CollectionStatus::Yellow
        } else {
            CollectionStatus::Green
        };
        // The shards' own counts add up to the collection's, except while a resharding keeps
        // copies of moving points on two shards: then only an ownership-aware count is right.
        let answered: u64 = infos.iter().filter_map(|i| i.points).sum();
        let points = match record.resharding {
            Some(_) => self
                .count(name, CountPoints::default(), &Reads::new(ReadConsistency::Eventual))
                .await
                .map_or(answered, |c| c.count),
            None => answered,
        };
        Ok(CollectionInfo {
            name: record.name.clone(),
            config: record.config.clone(),
            status,
            points,
            imbalance: imbalance(
                &routed,
                &infos,
                self.config.imbalance_ratio,
                self.config.imbalance_min_points,
            ),
            resharding: record.resharding.as_ref().map(|r| ReshardingInfo {
                from: r.from.clone(),
                to: r.to.clone(),
                cut_over: r.cut_over.clone(),
                copied: r.copied,
            }),
            moving: record.moving.as_ref().map(|m| ShardMoveInfo {
                collection: record.name.clone(),
                shard: m.shard,
                from: m.from.clone(),
                to: m.to.clone(),
            }),
            shards: infos,
        })
    }

    /// Searches and writes per second of a local shard since this router last looked at it.
    fn rates(&self, local: &str, searches: u64, writes: u64) -> (Option<f64>, Option<f64>) {
        let now = std::time::Instant::now();
        let previous = self.samples.lock().insert(local.to_string(), (now, searches, writes));
        match previous {
            Some((then, s0, w0)) => {
                let dt = now.duration_since(then).as_secs_f64();
                if !(0.01..=300.0).contains(&dt) || searches < s0 || writes < w0 {
                    return (None, None);
                }
                (Some((searches - s0) as f64 / dt), Some((writes - w0) as f64 / dt))
            }
            None => (None, None),
        }
    }

    /// Registers (or moves) a shard node.
    pub async fn register_node(&self, id: &str, req: RegisterNode) -> Result<NodeInfo> {
        validate_node_id(id).map_err(RouterError::Invalid)?;
        let (_, url) = crate::config::parse_node(&format!("{id}={}", req.url))
            .map_err(RouterError::Invalid)?;
        let record = NodeRecord { id: id.to_string(), url };
        let rev = self
            .state
            .meta
            .put(&format!("{NODES}{id}"), serde_json::to_vec(&record).expect("json"), None)
            .await?;
        self.state.caught_up(rev).await;
        tracing::info!(node = id, url = record.url, "node registered");
        self.node_info(id).await
    }

    /// Removes a node that hosts no shards.
    pub async fn deregister_node(&self, id: &str) -> Result<()> {
        let view = self.state.view();
        if !view.nodes.contains_key(id) {
            return Err(RouterError::NotFound(format!("node {id} is not registered")));
        }
        let hosted: Vec<String> = view
            .collections
            .values()
            .filter(|(r, _)| r.shards.values().any(|s| s.nodes.iter().any(|n| n == id)))
            .map(|(r, _)| r.name.clone())
            .collect();
        if !hosted.is_empty() {
            return Err(RouterError::Rejected {
                code: ErrorCode::InvalidArgument,
                message: format!(
                    "node {id} hosts shards of {}; delete or move them first",
                    hosted.join(", ")
                ),
            });
        }
        self.state.meta.delete(&format!("{NODES}{id}"), None).await?;
        self.state.meta.delete(&format!("{HEALTH}{id}"), None).await?;
        Ok(())
    }

    pub async fn node_info(&self, id: &str) -> Result<NodeInfo> {
        let view = self.state.view();
        let node = view
            .nodes
            .get(id)
            .ok_or_else(|| RouterError::NotFound(format!("node {id} is not registered")))?;
        let loads = node_loads(&view);
        let points = match self.clients(id) {
            Ok(c) => tokio::time::timeout(Duration::from_secs(2), c.read.status())
                .await
                .ok()
                .and_then(|r| r.ok())
                .map(|s| s.shards.iter().map(|s| s.points).sum()),
            Err(_) => None,
        };
        let health = view
            .health
            .get(id)
            .cloned()
            .unwrap_or(HealthRecord { healthy: true, failed_checks: 0 });
        Ok(NodeInfo {
            id: id.to_string(),
            url: node.url.clone(),
            healthy: health.healthy,
            failed_checks: health.failed_checks,
            shards: loads.iter().find(|l| l.node == id).map_or(0, |l| l.shards as u32),
            points,
        })
    }

    pub async fn cluster_info(&self) -> Result<ClusterInfo> {
        let view = self.state.view();
        let nodes = join_all(view.nodes.keys().map(|id| self.node_info(id))).await;
        Ok(ClusterInfo {
            router: self.id.clone(),
            controller: vdb_meta::Election::leader(
                &*self.state.meta,
                crate::controller::CONTROLLER_ELECTION,
            )
            .await?,
            nodes: nodes.into_iter().collect::<Result<_>>()?,
            collections: self.list_collections().collections,
        })
    }
}

/// The imbalance flag of a collection from its shards' point counts.
pub fn imbalance(
    routed: &Routed,
    infos: &[ShardPlacementInfo],
    ratio: f64,
    min_points: u64,
) -> Option<ImbalanceInfo> {
    let counts: Vec<(u32, u64)> = infos
        .iter()
        .filter(|i| routed.record.map.contains(&i.shard))
        .filter_map(|i| i.points.map(|p| (i.shard, p)))
        .collect();
    vdb_sharding::detect_imbalance(&counts, ratio, min_points).map(|i| ImbalanceInfo {
        shard: i.shard,
        points: i.points,
        mean: i.mean,
        ratio: i.ratio,
    })
}
