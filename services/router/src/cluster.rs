//! [`Cluster`]: what every request handler works with — the cluster view, a client per shard
//! node, and the routing of one collection's points onto its shards.

use crate::config::Config;
use crate::embed::Embedders;
use crate::error::{Result, RouterError};
use crate::metrics::Metrics;
use crate::state::{CollectionRecord, Lifecycle, State};
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vdb_api::{ErrorCode, PointId, Positioned, ReadConsistency, ReadParams};
use vdb_client::{ClientError, ShardClient};
use vdb_meta::Revision;
use vdb_sharding::{ShardMap, Transition};

/// Rounds of a read that shards keep calling outdated before the error is reported.
const READ_ATTEMPTS: u32 = 8;
/// Rounds of a strong read while a shard has no primary that holds its lease (a failover):
/// 100 ms apart, about as long as a write waits.
const STRONG_READ_ATTEMPTS: u32 = 30;

/// The router's shared state.
pub struct Cluster {
    pub config: Config,
    pub id: String,
    pub state: State,
    pub metrics: Arc<Metrics>,
    /// Embedders of the models collections may name (`--embedder`).
    pub embedders: Embedders,
    clients: RwLock<HashMap<String, NodeClients>>,
    /// Routing of each collection, built once per record revision (see [`Cluster::routed`]).
    routes: RwLock<HashMap<String, Arc<Routed>>>,
    /// The last counters seen per local shard, for rates: (when, searches, writes).
    pub samples: parking_lot::Mutex<HashMap<String, (std::time::Instant, u64, u64)>>,
    /// Turns of eventual reads over each shard's copies.
    read_turn: AtomicUsize,
}

/// One read's freshness: which copy of each shard it may ask, and whether a replica
/// answered (the answer's `stale`).
pub struct Reads {
    pub consistency: ReadConsistency,
    stale: AtomicBool,
}

impl Reads {
    pub fn new(consistency: ReadConsistency) -> Reads {
        Reads { consistency, stale: AtomicBool::new(false) }
    }

    /// Whether a replica answered for some shard (or, for a quorum read, whether the
    /// primary was not among the copies that answered).
    pub fn stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    /// The query that asks a shard node for this read's consistency.
    pub fn params(&self) -> ReadParams {
        ReadParams { consistency: self.consistency }
    }
}

/// Clients of one node: reads and writes have different deadlines.
#[derive(Clone)]
pub struct NodeClients {
    pub read: ShardClient,
    pub write: ShardClient,
}

/// A collection resolved for routing: its record and the function from ids to shards.
pub struct Routed {
    pub record: CollectionRecord,
    pub revision: Revision,
    owner: Owner,
}

enum Owner {
    Map(ShardMap),
    Moving(Transition),
}

impl Routed {
    pub fn new(record: CollectionRecord, revision: Revision) -> Result<Routed> {
        let bad = |e: vdb_sharding::ShardingError| {
            RouterError::Internal(format!("stored shard map of {}: {e}", record.name))
        };
        let owner = match &record.resharding {
            None => Owner::Map(ShardMap::new(&record.config.sharding, &record.map).map_err(bad)?),
            Some(r) => Owner::Moving(Transition {
                from: ShardMap::new(&r.from.sharding, &r.from.shards).map_err(bad)?,
                to: ShardMap::new(&r.to.sharding, &r.to.shards).map_err(bad)?,
                cut_over: r.cut_over.iter().copied().collect(),
            }),
        };
        Ok(Routed { record, revision, owner })
    }

    /// The shard that owns `id` now.
    pub fn owner(&self, id: &PointId) -> Result<u32> {
        match &self.owner {
            Owner::Map(m) => m.owner(id),
            Owner::Moving(t) => t.owner(id),
        }
        .map_err(|e| RouterError::Invalid(e.to_string()))
    }

    /// Splits `items` by owning shard, keeping their order within each shard.
    pub fn group<T>(
        &self,
        items: Vec<T>,
        id: impl Fn(&T) -> PointId,
    ) -> Result<BTreeMap<u32, Vec<T>>> {
        let mut groups: BTreeMap<u32, Vec<T>> = BTreeMap::new();
        for item in items {
            groups.entry(self.owner(&id(&item))?).or_default().push(item);
        }
        Ok(groups)
    }

    /// The primary node of `shard`.
    pub fn primary(&self, shard: u32) -> Result<&str> {
        self.record
            .shards
            .get(&shard)
            .and_then(|s| s.nodes.first())
            .map(String::as_str)
            .ok_or_else(|| RouterError::Internal(format!("shard {shard} has no node")))
    }

    pub fn dimension(&self) -> usize {
        self.record.config.dimension
    }
}

/// Shards that failed, with why.
pub type Failed = Vec<(u32, RouterError)>;

/// Outcome of one shard's part of a fan-out.
pub type ShardOutcome<T> = (u32, std::result::Result<T, RouterError>);

impl Cluster {
    pub fn new(config: Config, id: String, state: State, metrics: Arc<Metrics>) -> Cluster {
        Cluster {
            embedders: Embedders::new(&config, metrics.clone()),
            config,
            id,
            state,
            metrics,
            clients: RwLock::default(),
            routes: RwLock::default(),
            samples: Default::default(),
            read_turn: AtomicUsize::new(0),
        }
    }

    /// Clients for `node`, created on first use.
    pub fn clients(&self, node: &str) -> Result<NodeClients> {
        let view = self.state.view();
        let url = &view
            .nodes
            .get(node)
            .ok_or_else(|| RouterError::Unavailable(format!("node {node} is not registered")))?
            .url;
        if let Some(c) = self.clients.read().get(url) {
            return Ok(c.clone());
        }
        let make =
            |t| ShardClient::with_timeout(url, t).map_err(|e| RouterError::Internal(e.to_string()));
        let clients = NodeClients {
            read: make(self.config.read_timeout())?,
            write: make(self.config.write_timeout())?,
        };
        self.clients.write().insert(url.clone(), clients.clone());
        Ok(clients)
    }

    /// The active collection `name`, resolved for routing. A collection this router's view
    /// lacks may have been created through another router a moment ago: then the view is
    /// brought up to the metastore's record before the answer is "not found" (a client that
    /// created a collection through one router can use it through any other at once).
    pub async fn routed(&self, name: &str) -> Result<Arc<Routed>> {
        match self.routed_in_view(name) {
            Err(RouterError::NotFound(_)) if self.state.fresh_collection(name).await?.is_some() => {
                self.routed_in_view(name)
            }
            r => r,
        }
    }

    /// The active collection `name` from the view, resolved for routing.
    ///
    /// Building a shard map (a consistent ring sorts `virtual_nodes × shards` points) is done
    /// once per record revision, not per request.
    fn routed_in_view(&self, name: &str) -> Result<Arc<Routed>> {
        let view = self.state.view();
        match view.collections.get(name) {
            Some((record, rev)) if record.lifecycle == Lifecycle::Active => {
                if let Some(r) = self.routes.read().get(name).filter(|r| r.revision == *rev) {
                    return Ok(r.clone());
                }
                let routed = Arc::new(Routed::new(record.clone(), *rev)?);
                self.routes.write().insert(name.to_string(), routed.clone());
                Ok(routed)
            }
            Some((record, _)) if record.lifecycle == Lifecycle::Creating => {
                Err(RouterError::Unavailable(format!("collection {name} is still being created")))
            }
            _ => Err(RouterError::NotFound(format!("collection {name} does not exist"))),
        }
    }

    /// The same, read straight from the metastore: after a shard said our map is stale.
    pub async fn routed_fresh(&self, name: &str) -> Result<Arc<Routed>> {
        match self.state.fresh_collection(name).await? {
            Some((record, rev)) if record.lifecycle == Lifecycle::Active => {
                Ok(Arc::new(Routed::new(record, rev)?))
            }
            _ => self.routed_in_view(name),
        }
    }

    /// The consistency a write to `routed` gets: the collection's, or the weaker one the
    /// request asked for (a stronger one is refused).
    pub fn write_consistency(
        &self,
        routed: &Routed,
        requested: Option<vdb_api::WriteConsistency>,
    ) -> Result<vdb_api::WriteConsistency> {
        let own = routed.record.config.write_consistency;
        match requested {
            None => Ok(own),
            Some(r) if r.at_most(own) => Ok(r),
            Some(r) => Err(RouterError::Invalid(format!(
                "a write may only weaken its collection's write_consistency ({own:?}), not ask \
                 for {r:?}"
            ))),
        }
    }

    /// How a write waits for replicas under `consistency`.
    pub fn ack_params(&self, consistency: vdb_api::WriteConsistency) -> vdb_api::WriteParams {
        let (consistency, acks) = match consistency {
            vdb_api::WriteConsistency::Async => (vdb_api::AckMode::Async, 0),
            vdb_api::WriteConsistency::SemiSync { acks } => (vdb_api::AckMode::SemiSync, acks),
            vdb_api::WriteConsistency::Sync => (vdb_api::AckMode::Sync, 0),
        };
        vdb_api::WriteParams {
            consistency,
            acks,
            timeout_ms: Some(self.config.replication_timeout_ms),
        }
    }

    /// Runs a read with the collection's routing. When a shard answers that the routing is
    /// outdated (409 `wrong_shard`: the read raced a cut-over of a resharding or a move), the
    /// read runs again with the record read straight from the metastore; so does a strong read
    /// that found no primary holding its lease (a failover under way), 100 ms later.
    pub async fn read_routed<T, F, Fut>(&self, name: &str, reads: &Reads, read: F) -> Result<T>
    where
        F: Fn(Arc<Routed>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut routed = self.routed(name).await?;
        let mut attempt = 0;
        loop {
            reads.stale.store(false, Ordering::Relaxed);
            let pause = match read(routed).await {
                Err(RouterError::Shard { code: ErrorCode::WrongShard, .. })
                    if attempt + 1 < READ_ATTEMPTS =>
                {
                    Duration::from_millis(5 * (attempt as u64 + 1))
                }
                Err(e)
                    if reads.consistency == ReadConsistency::Strong
                        && attempt + 1 < STRONG_READ_ATTEMPTS
                        && no_primary(&e) =>
                {
                    Duration::from_millis(100)
                }
                r => return r,
            };
            attempt += 1;
            self.metrics.read_retries.inc();
            tokio::time::sleep(pause).await;
            routed = self.routed_fresh(name).await?;
        }
    }

    /// Runs `call` against copies of every shard in `shards` at once, as `reads` allows:
    /// `strong` asks the primary (which answers only while its lease holds); `eventual` takes
    /// the healthy in-sync copies in turns, passing to the next copy when one does not answer;
    /// `quorum` asks a majority of the shard's copies (in turns, any that are healthy, the
    /// next one taking over from one that does not answer) and keeps the answer of the copy
    /// whose log reaches furthest.
    pub async fn fan_out_reads<T, F, Fut>(
        &self,
        routed: &Routed,
        shards: &[u32],
        reads: &Reads,
        call: F,
    ) -> Vec<ShardOutcome<T>>
    where
        T: Positioned,
        F: Fn(NodeClients, String, u32) -> Fut,
        Fut: Future<Output = std::result::Result<T, ClientError>>,
    {
        if reads.consistency == ReadConsistency::Strong {
            let strong = reads.params();
            return self
                .fan_out(routed, shards, |c, local, shard| {
                    let c = NodeClients { read: c.read.with_read(strong), write: c.write };
                    call(c, local, shard)
                })
                .await;
        }
        let quorum = reads.consistency == ReadConsistency::Quorum;
        let view = self.state.view();
        let turn = self.read_turn.fetch_add(1, Ordering::Relaxed);
        let call = |c: NodeClients, local: String, shard: u32| {
            if !quorum {
                return call(c, local, shard);
            }
            let read = c.read.with_read(reads.params());
            call(NodeClients { read, write: c.write }, local, shard)
        };
        let calls = shards.iter().map(|&shard| {
            let record = routed.record.shards.get(&shard);
            let nodes = record.map(|s| s.nodes.as_slice()).unwrap_or_default();
            let primary = nodes.first();
            // Eventual: the primary and the replicas in sync; quorum: every copy. Healthy ones
            // only, from this read's turn.
            let mut copies: Vec<&str> = nodes
                .iter()
                .filter(|n| {
                    quorum || Some(*n) == primary || record.is_some_and(|s| s.in_sync.contains(n))
                })
                .filter(|n| view.is_healthy(n))
                .map(String::as_str)
                .collect();
            if !copies.is_empty() {
                let at = turn % copies.len();
                copies.rotate_left(at);
            }
            let need = if quorum { nodes.len() / 2 + 1 } else { 1 };
            let local = routed.record.local_name(shard);
            let call = &call;
            async move {
                if copies.len() < need {
                    let what = if quorum {
                        format!("a quorum read needs {need} of its {} copies", nodes.len())
                    } else {
                        "no healthy copy in sync".to_string()
                    };
                    let healthy = copies.len();
                    let e = format!("shard {shard} is unavailable ({what}; {healthy} healthy)");
                    return (shard, Err(RouterError::Unavailable(e)));
                }
                let answers = match self.ask_copies(shard, &local, copies, need, call).await {
                    Ok(answers) => answers,
                    Err(e) => return (shard, Err(e)),
                };
                if !answers.iter().any(|(node, _)| Some(node) == primary) {
                    reads.stale.store(true, Ordering::Relaxed);
                }
                let furthest = answers
                    .into_iter()
                    .map(|(_, answer)| answer)
                    .max_by_key(|answer| answer.position())
                    .map(|mut answer| {
                        answer.set_position(None);
                        answer
                    });
                (shard, furthest.ok_or_else(|| RouterError::Internal("no answer".into())))
            }
        });
        join_all(calls).await
    }

    /// Asks `copies` of `shard` in order until `need` of them answered, `need` at a time: the
    /// next copy takes over from one that does not answer. A refusal (a bad request, stale
    /// routing) would be the same anywhere and ends the read.
    async fn ask_copies<T, F, Fut>(
        &self,
        shard: u32,
        local: &str,
        copies: Vec<&str>,
        need: usize,
        call: &F,
    ) -> Result<Vec<(String, T)>>
    where
        F: Fn(NodeClients, String, u32) -> Fut,
        Fut: Future<Output = std::result::Result<T, ClientError>>,
    {
        let ask = |node: &str| {
            let node = node.to_string();
            async move {
                let clients = match self.clients(&node) {
                    Ok(c) => c,
                    Err(e) => return (node, Err(e)),
                };
                let mut outcome = call(clients.clone(), local.to_string(), shard).await;
                // A pooled connection the node closed fails before the request is read.
                if let Err(ClientError::Transport(_)) = outcome {
                    outcome = call(clients, local.to_string(), shard).await;
                }
                let outcome = outcome.map_err(|e| {
                    self.metrics.shard_errors.with_label_values(&[&node]).inc();
                    RouterError::from_shard(shard, &node, e)
                });
                (node, outcome)
            }
        };
        let mut waiting = copies.into_iter();
        let mut running: FuturesUnordered<_> = waiting.by_ref().take(need).map(ask).collect();
        let mut answers = Vec::with_capacity(need);
        let mut last = None;
        while let Some((node, outcome)) = running.next().await {
            match outcome {
                Ok(answer) => {
                    answers.push((node, answer));
                    if answers.len() == need {
                        return Ok(answers);
                    }
                }
                Err(e @ RouterError::Unavailable(_)) => {
                    last = Some(e);
                    running.extend(waiting.next().map(ask));
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            RouterError::Unavailable(format!("shard {shard}: too few copies answered"))
        }))
    }

    /// Runs `call` against the primary of every shard in `shards` at once. A shard whose node
    /// the controller marked down fails at once instead of waiting for its deadline.
    pub async fn fan_out<T, F, Fut>(
        &self,
        routed: &Routed,
        shards: &[u32],
        call: F,
    ) -> Vec<ShardOutcome<T>>
    where
        F: Fn(NodeClients, String, u32) -> Fut,
        Fut: Future<Output = std::result::Result<T, ClientError>>,
    {
        let view = self.state.view();
        let calls = shards.iter().map(|&shard| {
            let target = routed.primary(shard).and_then(|node| {
                if !view.is_healthy(node) {
                    return Err(RouterError::Unavailable(format!(
                        "shard {shard} is unavailable (node {node} is down)"
                    )));
                }
                Ok((node.to_string(), self.clients(node)?))
            });
            let local = routed.record.local_name(shard);
            let call = &call;
            async move {
                let result = match target {
                    Ok((node, clients)) => {
                        let mut outcome = call(clients.clone(), local.clone(), shard).await;
                        // A pooled connection the node closed fails before the request is
                        // read: every shard call is idempotent, so try once more at once.
                        if let Err(ClientError::Transport(_)) = outcome {
                            outcome = call(clients, local, shard).await;
                        }
                        outcome.map_err(|e| {
                            self.metrics.shard_errors.with_label_values(&[&node]).inc();
                            RouterError::from_shard(shard, &node, e)
                        })
                    }
                    Err(e) => Err(e),
                };
                (shard, result)
            }
        });
        join_all(calls).await
    }
}

/// Whether an error says a shard has no primary that may serve now: the node is down, the
/// copy asked is a replica, or the primary's lease lapsed.
fn no_primary(err: &RouterError) -> bool {
    match err {
        RouterError::Unavailable(_) => true,
        RouterError::Shard { code, .. } => matches!(code, ErrorCode::NotPrimary),
        _ => false,
    }
}

/// Whether a failed write may be retried: the shard was unreachable, is handing points off,
/// or said the router's map is stale.
pub fn retryable(err: &RouterError) -> bool {
    match err {
        RouterError::Unavailable(_) => true,
        RouterError::Shard { code, .. } => {
            matches!(code, ErrorCode::WrongShard | ErrorCode::NotPrimary)
        }
        _ => false,
    }
}

/// Splits fan-out outcomes into answers and the shards that failed; a client error (4xx from
/// a shard) wins over unavailability since retrying will not help.
pub fn collect<T>(outcomes: Vec<ShardOutcome<T>>) -> (Vec<(u32, T)>, Failed) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (shard, r) in outcomes {
        match r {
            Ok(v) => ok.push((shard, v)),
            Err(e) => failed.push((shard, e)),
        }
    }
    (ok, failed)
}

/// The answers of a fan-out where every shard must answer; otherwise [`first_error`].
pub fn all_answered<T>(outcomes: Vec<ShardOutcome<T>>) -> Result<Vec<(u32, T)>> {
    let (ok, failed) = collect(outcomes);
    if failed.is_empty() {
        Ok(ok)
    } else {
        Err(first_error(failed))
    }
}

/// One error for a set of failed shards: the first client error if any, else a 503 naming
/// every shard that did not answer.
pub fn first_error(mut failed: Vec<(u32, RouterError)>) -> RouterError {
    if let Some(i) = failed.iter().position(|(_, e)| !matches!(e, RouterError::Unavailable(_))) {
        return failed.swap_remove(i).1;
    }
    let shards: Vec<String> = failed.iter().map(|(s, _)| s.to_string()).collect();
    let reasons: Vec<String> = failed.into_iter().map(|(_, e)| e.to_string()).collect();
    RouterError::Unavailable(format!(
        "shards {} cannot answer: {}",
        shards.join(", "),
        reasons.join("; ")
    ))
}
