//! [`Node`]: the local shards this process hosts, and what they share — the blocking-work
//! limiter, the insert pool, metrics, readiness and the shutdown switch.
//!
//! Layout on disk: `<data_dir>/shards/<name>/{config.json, wal/, snapshots/, guard.json}`
//! (`guard.json` only while a write guard is installed).
//! At start the node serves at once (`/readyz` false) while shards recover in the background.

use crate::config::Config;
use crate::error::{Result, ShardError};
use crate::metrics::ShardMetrics;
use crate::pool::WorkPool;
use crate::read::PlannerConfig;
use crate::shard::{LocalShard, ShardEnv};
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use vdb_api::{ShardConfig, ShardInfo, ShardState, ShardStatus};
use vdb_common::ApiError;
use vdb_wal::{FsyncPolicy, WalOptions};

enum Slot {
    Recovering,
    Ready(Arc<LocalShard>),
    /// Recovery refused the shard's data (corruption); the reason is in the log.
    Failed,
}

pub struct Node {
    pub config: Config,
    pub node_id: String,
    pub metrics: Arc<ShardMetrics>,
    pub planner: PlannerConfig,
    shards: RwLock<BTreeMap<String, Slot>>,
    create_lock: Mutex<()>,
    env: ShardEnv,
    limiter: Limiter,
    reads: WorkPool,
    ready: AtomicBool,
    accepting_writes: AtomicBool,
}

impl Node {
    pub fn new(config: Config, node_id: String) -> anyhow::Result<Arc<Self>> {
        let metrics = Arc::new(ShardMetrics::new()?);
        let insert_pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.insert_threads())
            .thread_name(|i| format!("vdb-insert-{i}"))
            .build()?;
        let concurrency = config.max_concurrency();
        let env = ShardEnv {
            wal: WalOptions {
                fsync: config.fsync.clone(),
                segment_bytes: config.wal_segment_bytes,
            },
            // Every read thread, every other blocking operation and every insert thread may
            // touch the index at once; USearch needs a context for each.
            index_threads: config.search_threads() + concurrency + config.insert_threads() + 1,
            insert_pool: Arc::new(insert_pool),
            metrics: metrics.clone(),
            replication_window: config.replication_window as usize,
            replication_memory_bytes: config.replication_memory_bytes as usize,
        };
        std::fs::create_dir_all(config.data_dir.join("shards"))?;
        Ok(Arc::new(Node {
            planner: PlannerConfig { exact_threshold: config.exact_threshold },
            limiter: Limiter::new(concurrency, config.max_queue),
            reads: WorkPool::new("vdb-read", config.search_threads(), config.max_queue)?,
            node_id,
            metrics,
            shards: RwLock::new(BTreeMap::new()),
            create_lock: Mutex::new(()),
            env,
            ready: AtomicBool::new(false),
            accepting_writes: AtomicBool::new(true),
            config,
        }))
    }

    fn shard_dir(&self, name: &str) -> PathBuf {
        self.config.data_dir.join("shards").join(name)
    }

    /// Recovers every shard found on disk (blocking; run it off the async runtime).
    pub fn recover_all(&self) {
        let names: Vec<String> = std::fs::read_dir(self.config.data_dir.join("shards"))
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("config.json").exists())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        {
            let mut shards = self.shards.write();
            for name in &names {
                shards.insert(name.clone(), Slot::Recovering);
            }
        }
        for name in names {
            let slot = match LocalShard::open(&name, &self.shard_dir(&name), self.env.clone()) {
                Ok(shard) => Slot::Ready(Arc::new(shard)),
                Err(e) => {
                    tracing::error!(shard = %name, error = %e, "local shard refused: not serving it");
                    Slot::Failed
                }
            };
            self.shards.write().insert(name, slot);
        }
        self.ready.store(true, Ordering::SeqCst);
        self.metrics.ready.set(1.0);
        tracing::info!("recovery finished; ready");
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The shard called `name`, if it is serving.
    pub fn shard(&self, name: &str) -> Result<Arc<LocalShard>> {
        match self.shards.read().get(name) {
            Some(Slot::Ready(s)) => Ok(s.clone()),
            Some(Slot::Recovering) => {
                Err(ShardError::Unavailable(format!("local shard {name:?} is recovering")))
            }
            Some(Slot::Failed) => Err(ShardError::Unavailable(format!(
                "local shard {name:?} could not be recovered (corrupt data); see the node log"
            ))),
            None => Err(ShardError::NotFound(format!("no local shard named {name:?}"))),
        }
    }

    /// The shard called `name`, if it may take writes now.
    pub fn writable_shard(&self, name: &str) -> Result<Arc<LocalShard>> {
        if !self.accepting_writes.load(Ordering::SeqCst) {
            return Err(ShardError::Unavailable("shutting down; not taking writes".into()));
        }
        self.shard(name)
    }

    pub fn create_shard(&self, name: &str, config: ShardConfig) -> Result<ShardInfo> {
        check_name("shard name", name)?;
        crate::shard::validate_config(&config)?;
        if !self.accepting_writes.load(Ordering::SeqCst) {
            return Err(ShardError::Unavailable("shutting down".into()));
        }
        let _guard = self.create_lock.lock();
        let dir = self.shard_dir(name);
        if self.shards.read().contains_key(name) || dir.exists() {
            return Err(ShardError::AlreadyExists(format!("local shard {name:?} exists")));
        }
        let shard = match LocalShard::create(name, config, &dir, self.env.clone()) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        shard.refresh_gauges(&shard.writer.lock());
        let info = self.describe(&shard);
        self.shards.write().insert(name.to_string(), Slot::Ready(shard));
        tracing::info!(shard = name, "local shard created");
        Ok(info)
    }

    pub fn drop_shard(&self, name: &str) -> Result<()> {
        let _guard = self.create_lock.lock();
        match self.shards.read().get(name) {
            None => return Err(ShardError::NotFound(format!("no local shard named {name:?}"))),
            Some(Slot::Recovering) => {
                return Err(ShardError::Unavailable(format!("local shard {name:?} is recovering")))
            }
            _ => {}
        }
        if let Some(Slot::Ready(shard)) = self.shards.write().remove(name) {
            shard.repl.retire();
        }
        std::fs::remove_dir_all(self.shard_dir(name))?;
        self.metrics.forget_shard(name);
        tracing::info!(shard = name, "local shard dropped");
        Ok(())
    }

    /// Replaces a replica's data by its primary's snapshot (see [`crate::replica`]): the old
    /// copy is retired under its writer lock (it takes nothing more), its log and snapshots
    /// give way to the snapshot, and the shard is opened again from it.
    pub fn install_replica_snapshot(
        &self,
        name: &str,
        epoch: u64,
        body: &[u8],
    ) -> Result<vdb_api::ReplicateAck> {
        let transfer = crate::snapshot::Transfer::decode(body)?;
        let _create = self.create_lock.lock();
        let old = self.shard(name)?;
        let _writer = old.writer.lock();
        old.repl.accept_primary(epoch)?;
        let role = old.repl.stored();
        old.repl.retire();
        let dir = self.shard_dir(name);
        let replace = || -> Result<LocalShard> {
            for sub in ["wal", "snapshots"] {
                match std::fs::remove_dir_all(dir.join(sub)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
            transfer.install(&dir.join("snapshots"))?;
            crate::replication::save(&dir, &role)?;
            LocalShard::open(name, &dir, self.env.clone())
        };
        match replace() {
            Ok(shard) => {
                self.shards.write().insert(name.to_string(), Slot::Ready(Arc::new(shard)));
                tracing::info!(
                    shard = name,
                    lsn = transfer.lsn,
                    epoch,
                    "replica snapshot installed"
                );
                Ok(vdb_api::ReplicateAck {
                    matched: true,
                    durable_lsn: transfer.lsn,
                    last_lsn: transfer.lsn,
                    last_epoch: transfer.epoch,
                    epoch: role.epoch,
                })
            }
            Err(e) => {
                tracing::error!(shard = name, error = %e, "installing a replica snapshot failed");
                self.shards.write().insert(name.to_string(), Slot::Failed);
                Err(e)
            }
        }
    }

    pub fn describe(&self, shard: &LocalShard) -> ShardInfo {
        let data = shard.data.read();
        ShardInfo {
            name: shard.name.clone(),
            config: shard.config.clone(),
            state: shard.state(),
            points: data.store.len() as u64,
            last_lsn: shard.last_lsn(),
            snapshot_lsn: shard.snapshot_lsn(),
            index: shard.index.stats(),
            payload_bytes: data.store.payload_bytes(),
            payload_indexes: data.indexes.fields(),
            searches: shard.searches.load(std::sync::atomic::Ordering::Relaxed),
            guard: shard.guard(),
            replication: shard.replication_info(),
        }
    }

    pub fn list(&self) -> Vec<ShardInfo> {
        self.ready_shards().iter().map(|s| self.describe(s)).collect()
    }

    fn ready_shards(&self) -> Vec<Arc<LocalShard>> {
        self.shards
            .read()
            .values()
            .filter_map(|slot| match slot {
                Slot::Ready(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn status(&self) -> vdb_api::NodeStatus {
        let shards = self
            .shards
            .read()
            .iter()
            .map(|(name, slot)| match slot {
                Slot::Ready(s) => ShardStatus {
                    name: name.clone(),
                    collection: s.config.collection.clone(),
                    shard_id: s.config.shard_id,
                    role: s.repl.stored().role,
                    epoch: s.repl.stored().epoch,
                    last_lsn: s.last_lsn(),
                    points: s.data.read().store.len() as u64,
                    state: ShardState::Active,
                    guarded: s.guard.read().is_some(),
                },
                Slot::Recovering | Slot::Failed => ShardStatus {
                    name: name.clone(),
                    collection: String::new(),
                    shard_id: 0,
                    role: vdb_api::Role::Primary,
                    epoch: 0,
                    last_lsn: 0,
                    points: 0,
                    state: if matches!(slot, Slot::Failed) {
                        ShardState::Failed
                    } else {
                        ShardState::Recovering
                    },
                    guarded: false,
                },
            })
            .collect();
        vdb_api::NodeStatus {
            node_id: self.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ready: self.is_ready(),
            shards,
        }
    }

    /// Runs blocking shard work on the blocking pool, at most `max_concurrency` at once;
    /// beyond `max_queue` waiting, refuses with 429.
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Node) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, ApiError> {
        let permit = self.limiter.acquire().await.inspect_err(|_| self.metrics.rejected.inc())?;
        self.metrics.inflight.inc();
        let node = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            let _permit: OwnedSemaphorePermit = permit;
            work(&node)
        })
        .await;
        self.metrics.inflight.dec();
        match result {
            Ok(r) => r.map_err(ApiError::from),
            Err(e) => {
                tracing::error!(error = %e, "blocking task failed");
                Err(ApiError::internal())
            }
        }
    }

    /// Runs a read on the read threads (see [`crate::pool`]); beyond `max_queue` waiting,
    /// refuses with 429.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Node) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, ApiError> {
        let node = self.clone();
        let answer = self.reads.submit(move || work(&node)).map_err(|_| {
            self.metrics.rejected.inc();
            ApiError::overloaded()
        })?;
        // Counted until answered, or until the request is dropped (client gone).
        let _inflight = Inflight::new(&self.metrics.inflight);
        match answer.await {
            Ok(r) => r.map_err(ApiError::from),
            Err(_) => {
                tracing::error!("read failed: its job panicked");
                Err(ApiError::internal())
            }
        }
    }

    /// Called after each acknowledged write: starts a background snapshot when due.
    pub fn after_write(&self, shard: &Arc<LocalShard>) {
        if shard.claim_due_snapshot(self.config.snapshot_every) {
            let shard = shard.clone();
            std::thread::Builder::new()
                .name("vdb-snapshot".into())
                .spawn(move || {
                    if let Err(e) = shard.run_claimed_snapshot() {
                        tracing::error!(shard = %shard.name, error = %e, "background snapshot failed");
                    }
                })
                .map(|_| ())
                .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start snapshot thread"));
        }
    }

    /// Starts the group-commit thread when the fsync policy is an interval.
    pub fn start_wal_syncer(self: &Arc<Self>) {
        let FsyncPolicy::Interval(every) = self.config.fsync else { return };
        let node = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("vdb-wal-sync".into())
            .spawn(move || {
                while let Some(node) = node.upgrade() {
                    for shard in node.ready_shards() {
                        if let Err(e) = shard.sync_wal() {
                            // An fsync error leaves durability unknown: stop rather than
                            // acknowledge writes that may not be on disk.
                            tracing::error!(shard = %shard.name, error = %e, "wal fsync failed; aborting");
                            std::process::abort();
                        }
                    }
                    drop(node);
                    std::thread::sleep(every);
                }
            })
            .expect("start wal sync thread");
    }

    /// First step of shutdown: refuse new writes.
    pub fn stop_writes(&self) {
        self.accepting_writes.store(false, Ordering::SeqCst);
    }

    /// Last step of shutdown: make every logged write durable.
    pub fn flush_all(&self) {
        for shard in self.ready_shards() {
            if let Err(e) = shard.sync_wal() {
                tracing::error!(shard = %shard.name, error = %e, "final wal fsync failed");
            }
        }
        tracing::info!("wal flushed");
    }
}

/// Holds one unit of the in-flight gauge while alive.
struct Inflight<'a>(&'a prometheus::IntGauge);

impl<'a> Inflight<'a> {
    fn new(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Inflight(gauge)
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Names of shards and collections: 1 to 128 of `[A-Za-z0-9_.-]`, not starting with a dot.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ShardError::invalid(format!(
            "{what} {name:?} must be 1-128 characters of A-Z a-z 0-9 _ - . and not start with a dot"
        )))
    }
}

/// Bounds blocking work: `permits` run, up to `max_waiting` wait, the rest are refused.
struct Limiter {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Limiter {
    fn new(permits: usize, max_waiting: usize) -> Self {
        Limiter {
            permits: Arc::new(Semaphore::new(permits)),
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    async fn acquire(&self) -> std::result::Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::overloaded());
        }
        let permit = self.permits.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        permit.map_err(|_| ApiError::unavailable("shutting down"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["docs", "docs.0", "a_b-C.9"] {
            check_name("n", ok).unwrap();
        }
        for bad in ["", ".hidden", "a/b", "..", "x y", &"a".repeat(129)] {
            assert!(check_name("n", bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn limiter_queues_then_refuses() {
        let limiter = Arc::new(Limiter::new(1, 1));
        let running = limiter.acquire().await.unwrap();
        let queued = {
            let l = limiter.clone();
            tokio::spawn(async move { l.acquire().await.is_ok() })
        };
        while limiter.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let refused = limiter.acquire().await.unwrap_err();
        assert_eq!(refused.code, vdb_api::ErrorCode::Overloaded);
        drop(running);
        assert!(queued.await.unwrap(), "the queued request runs once a slot frees");
    }
}
