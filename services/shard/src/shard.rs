//! [`LocalShard`]: one shard of a collection hosted here — its HNSW index, point store,
//! payload indexes and write-ahead log — and the write path.
//!
//! Write path (one writer at a time per shard, under `writer`):
//! 1. validate the whole request against the shard's config; nothing is logged if any part
//!    is wrong, so a batch is applied whole or not at all;
//! 2. resolve it to a [`WalOp`] (filters become concrete ids) and reserve index capacity;
//! 3. check that this copy is a primary holding its lease ([`crate::replication`]), then
//!    append the op to the WAL (fsynced per policy) with the role's epoch — this assigns the
//!    LSN;
//! 4. apply it: vectors into the index (in parallel on the insert pool), then ids, payloads
//!    and payload indexes under the data lock;
//! 5. acknowledge, once the replicas the write's consistency asks for confirmed it.
//!
//! A replica logs and applies the primary's records through [`crate::replica`] instead, with
//! the primary's LSNs and epochs.
//!
//! Recovery replays the same [`LocalShard::apply`] over the WAL tail after loading the
//! latest snapshot, so the live path and the recovery path cannot drift apart.
//! The read side (get, count, scroll, search) lives in [`crate::read`].

use crate::error::{Result, ShardError};
use crate::guard::Guard;
use crate::index::VectorIndex;
use crate::ops::{PayloadMode, StoredId, WalOp, WalPoint};
use crate::replication::{Replication, StoredRole};
use crate::snapshot::{self, PointsImage};

use crate::store::{Entry, PointStore};
use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use vdb_api::{
    ErrorCode, Filter, LogPosition, Metric, Payload, PayloadIndexKind, Point, PointId,
    PointSelector, ShardConfig, ShardState, WriteResult,
};
use vdb_payload::PayloadIndexes;
use vdb_wal::{Wal, WalOptions};

/// What readers share: the point store and the payload indexes over it.
#[derive(Default)]
pub struct ShardData {
    pub store: PointStore,
    pub indexes: PayloadIndexes,
}

/// Settings every local shard of a node shares.
#[derive(Clone)]
pub struct ShardEnv {
    pub wal: WalOptions,
    /// Concurrent index operations to reserve USearch contexts for.
    pub index_threads: usize,
    pub insert_pool: Arc<rayon::ThreadPool>,
    pub metrics: Arc<crate::metrics::ShardMetrics>,
    /// Batches a primary keeps in flight to each replica (see [`crate::shipper`]).
    pub replication_window: usize,
    /// Bytes of the latest log records a primary keeps in memory for its replicas.
    pub replication_memory_bytes: usize,
}

pub(crate) struct Writer {
    pub(crate) wal: Wal,
    pub(crate) records_since_snapshot: u64,
}

pub struct LocalShard {
    pub name: String,
    pub config: ShardConfig,
    pub(crate) dir: PathBuf,
    pub(crate) index: VectorIndex,
    pub(crate) data: RwLock<ShardData>,
    pub(crate) writer: Mutex<Writer>,
    /// The LSN of the last applied record: `end`'s, readable without a lock.
    pub(crate) last_lsn: AtomicU64,
    /// Where the applied log ends (the last record's epoch and LSN), the two read together;
    /// changed only by [`LocalShard::set_log_end`].
    end: Mutex<LogPosition>,
    pub(crate) snapshot_lsn: AtomicU64,
    pub(crate) snapshotting: AtomicBool,
    /// The write guard, if one is installed; changed only under `writer` (see [`crate::guard`]).
    pub(crate) guard: RwLock<Option<Arc<Guard>>>,
    /// Searches served since the process started (for per-shard query rates).
    pub(crate) searches: AtomicU64,
    /// Role, epoch, lease and replicas (see [`crate::replication`]).
    pub(crate) repl: Replication,
    pub(crate) env: ShardEnv,
}

impl LocalShard {
    /// Creates an empty shard in `dir` (which must not hold one).
    pub fn create(name: &str, config: ShardConfig, dir: &Path, env: ShardEnv) -> Result<Self> {
        validate_config(&config)?;
        std::fs::create_dir_all(dir)?;
        write_config(dir, &config)?;
        let index = VectorIndex::new(
            config.dimension,
            config.metric,
            config.scalar,
            &config.hnsw,
            env.index_threads,
        )?;
        let (wal, _) = Wal::open(&dir.join("wal"), env.wal.clone(), 0, |_| Ok::<(), String>(()))
            .map_err(|e| ShardError::Corrupt(e.to_string()))?;
        let role = StoredRole { role: config.role, epoch: config.epoch, leased: false };
        crate::replication::save(dir, &role)?;
        let shard = Self::assemble(name, config, dir, index, ShardData::default(), wal, 0, env);
        Ok(shard.with_role(role, 0))
    }

    fn with_role(mut self, role: StoredRole, last_epoch: u64) -> Self {
        self.repl = Replication::new(role, self.last_lsn(), self.env.replication_memory_bytes);
        self.set_log_end(self.last_lsn(), last_epoch);
        self
    }

    /// Opens an existing shard: loads its latest snapshot, then replays the WAL after it.
    pub fn open(name: &str, dir: &Path, env: ShardEnv) -> Result<Self> {
        let started = Instant::now();
        let config: ShardConfig = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)
            .map_err(|e| ShardError::Corrupt(format!("{}: config.json: {e}", dir.display())))?;
        let (index, data, snapshot_lsn, snapshot_epoch) =
            match snapshot::load_latest(&dir.join("snapshots"))? {
                Some(loaded) => {
                    let index = VectorIndex::load(
                        &loaded.index,
                        config.metric,
                        &config.hnsw,
                        env.index_threads,
                    )?;
                    env.metrics
                        .snapshot_size_bytes
                        .with_label_values(&[name])
                        .set(loaded.size_bytes as i64);
                    (index, data_from_image(loaded.points)?, loaded.lsn, loaded.epoch)
                }
                None => (
                    VectorIndex::new(
                        config.dimension,
                        config.metric,
                        config.scalar,
                        &config.hnsw,
                        env.index_threads,
                    )?,
                    ShardData::default(),
                    0,
                    0,
                ),
            };
        // The WAL validates the whole log (and repairs a torn tail) before anything is
        // applied; the records after the snapshot are collected, then applied in order.
        let mut replayed = Vec::new();
        let (wal, report) = Wal::open(&dir.join("wal"), env.wal.clone(), snapshot_lsn, |record| {
            replayed.push(record);
            Ok::<(), String>(())
        })
        .map_err(|e| ShardError::Corrupt(format!("{}: {e}", dir.display())))?;
        let role = crate::replication::load(dir)?.unwrap_or(StoredRole {
            role: config.role,
            epoch: config.epoch,
            leased: false,
        });
        let shard = Self::assemble(name, config, dir, index, data, wal, snapshot_lsn, env);
        *shard.guard.write() = crate::guard::load(dir)?.map(Arc::new);
        let mut last_epoch = snapshot_epoch;
        for record in replayed {
            let op = WalOp::decode(&record.payload).map_err(|e| {
                ShardError::Corrupt(format!("{}: lsn {}: {e}", dir.display(), record.lsn))
            })?;
            shard.apply(&op)?;
            shard.last_lsn.store(record.lsn, Ordering::SeqCst);
            last_epoch = record.epoch;
        }
        shard.last_lsn.store(report.last_lsn.max(snapshot_lsn), Ordering::SeqCst);
        let shard = shard.with_role(role, last_epoch);
        {
            let mut writer = shard.writer.lock();
            writer.records_since_snapshot = report.records_replayed;
            shard.refresh_gauges(&writer);
        }
        let elapsed = started.elapsed().as_secs_f64();
        shard.env.metrics.recovery_seconds.with_label_values(&[name]).set(elapsed);
        tracing::info!(
            shard = name,
            snapshot_lsn,
            replayed = report.records_replayed,
            last_lsn = shard.last_lsn(),
            points = shard.data.read().store.len(),
            seconds = elapsed,
            "local shard recovered"
        );
        Ok(shard)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        name: &str,
        config: ShardConfig,
        dir: &Path,
        index: VectorIndex,
        data: ShardData,
        wal: Wal,
        snapshot_lsn: u64,
        env: ShardEnv,
    ) -> Self {
        LocalShard {
            name: name.to_string(),
            config,
            dir: dir.to_path_buf(),
            index,
            data: RwLock::new(data),
            last_lsn: AtomicU64::new(wal.last_lsn().max(snapshot_lsn)),
            end: Mutex::new(LogPosition::default()),
            writer: Mutex::new(Writer { wal, records_since_snapshot: 0 }),
            snapshot_lsn: AtomicU64::new(snapshot_lsn),
            snapshotting: AtomicBool::new(false),
            guard: RwLock::new(None),
            searches: AtomicU64::new(0),
            repl: Replication::new(StoredRole::default(), 0, env.replication_memory_bytes),
            env,
        }
    }

    pub fn last_lsn(&self) -> u64 {
        self.last_lsn.load(Ordering::SeqCst)
    }

    /// Where the applied log ends: every record up to it is visible to reads that start after
    /// this returns.
    pub fn log_end(&self) -> LogPosition {
        *self.end.lock()
    }

    /// Records that the log is applied up to `lsn`, written in `epoch`.
    pub(crate) fn set_log_end(&self, lsn: u64, epoch: u64) {
        let mut end = self.end.lock();
        *end = LogPosition { epoch, lsn };
        self.last_lsn.store(lsn, Ordering::SeqCst);
    }

    pub fn snapshot_lsn(&self) -> u64 {
        self.snapshot_lsn.load(Ordering::SeqCst)
    }

    pub fn state(&self) -> ShardState {
        ShardState::Active
    }

    pub(crate) fn env_metrics(&self) -> &crate::metrics::ShardMetrics {
        &self.env.metrics
    }

    pub fn metric(&self) -> Metric {
        self.config.metric
    }

    // ---- writes ------------------------------------------------------------------------

    pub fn upsert(&self, points: Vec<Point>) -> Result<WriteResult> {
        if points.is_empty() {
            return Err(ShardError::invalid("points must not be empty"));
        }
        let mut seen = HashSet::with_capacity(points.len());
        let mut wal_points = Vec::with_capacity(points.len());
        // Later duplicates win, as if the batch were applied point by point.
        for (i, p) in points.into_iter().enumerate().rev() {
            self.check_vector(&p.vector).map_err(|e| prefix(e, &format!("points[{i}]")))?;
            let payload = match p.payload {
                None | Some(serde_json::Value::Null) => "{}".to_string(),
                Some(v @ serde_json::Value::Object(_)) => v.to_string(),
                Some(other) => {
                    return Err(ShardError::Invalid(
                        ErrorCode::InvalidPayload,
                        format!(
                            "points[{i}].payload must be a JSON object, got {}",
                            json_kind(&other)
                        ),
                    ))
                }
            };
            if seen.insert(p.id) {
                wal_points.push(WalPoint { id: p.id.into(), vector: p.vector, payload });
            }
        }
        wal_points.reverse();
        let n = wal_points.len() as u64;
        self.write(WalOp::Upsert { points: wal_points }, n)
    }

    pub fn delete(&self, selector: PointSelector) -> Result<WriteResult> {
        self.write_resolved(&selector.ids, &selector.filter, |ids| WalOp::Delete { ids })
    }

    pub fn set_payload(
        &self,
        payload: Payload,
        ids: Option<Vec<PointId>>,
        filter: Option<Filter>,
        mode: PayloadMode,
    ) -> Result<WriteResult> {
        let payload = serde_json::Value::Object(payload).to_string();
        self.write_resolved(&ids, &filter, |ids| WalOp::SetPayload { ids, payload, mode })
    }

    pub fn delete_payload_keys(
        &self,
        keys: Vec<String>,
        ids: Option<Vec<PointId>>,
        filter: Option<Filter>,
    ) -> Result<WriteResult> {
        if keys.is_empty() {
            return Err(ShardError::invalid("keys must not be empty"));
        }
        if let Some(bad) = keys.iter().find(|k| k.is_empty() || k.split('.').any(str::is_empty)) {
            return Err(ShardError::invalid(format!("invalid payload key {bad:?}")));
        }
        self.write_resolved(&ids, &filter, |ids| WalOp::DeletePayloadKeys { ids, keys })
    }

    pub fn create_payload_index(&self, field: String, kind: PayloadIndexKind) -> Result<()> {
        if field.is_empty() || field.split('.').any(str::is_empty) {
            return Err(ShardError::invalid(format!("invalid payload field {field:?}")));
        }
        self.write(WalOp::CreateIndex { field, kind: kind.into() }, 0).map(|_| ())
    }

    pub fn drop_payload_index(&self, field: &str) -> Result<()> {
        if !self.data.read().indexes.fields().contains_key(field) {
            return Err(ShardError::NotFound(format!("no payload index on {field:?}")));
        }
        self.write(WalOp::DropIndex { field: field.to_string() }, 0).map(|_| ())
    }

    /// Resolves `ids` or `filter` (exactly one) to the ids present now, under the writer lock
    /// so nothing changes between resolving and logging.
    fn write_resolved(
        &self,
        ids: &Option<Vec<PointId>>,
        filter: &Option<Filter>,
        make: impl FnOnce(Vec<StoredId>) -> WalOp,
    ) -> Result<WriteResult> {
        let filter = match (ids, filter) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(ShardError::invalid("give exactly one of ids and filter"))
            }
            (None, Some(f)) => Some(crate::read::checked_filter(f)?),
            (Some(_), None) => None,
        };
        let mut writer = self.writer.lock();
        let guard = self.guard.read().clone();
        if let (Some(guard), Some(ids)) = (&guard, ids) {
            guard.check_ids(ids.iter())?;
        }
        let by_filter = filter.is_some();
        let mut resolved: Vec<StoredId> = {
            let data = self.data.read();
            match (ids, filter) {
                (Some(ids), _) => {
                    let mut seen = HashSet::new();
                    ids.iter()
                        .filter(|id| data.store.key_of(id).is_some() && seen.insert(**id))
                        .map(|&id| id.into())
                        .collect()
                }
                (None, Some(f)) => crate::read::matching_keys(&data, f)
                    .into_iter()
                    .filter_map(|k| data.store.get(k).map(|e| e.id.into()))
                    .collect(),
                (None, None) => unreachable!("checked above"),
            }
        };
        if let (Some(guard), true) = (&guard, by_filter) {
            resolved = guard.keep_owned(resolved)?;
        }
        if resolved.is_empty() {
            return Ok(WriteResult { lsn: self.last_lsn(), affected: 0 });
        }
        let n = resolved.len() as u64;
        self.log_and_apply(&mut writer, make(resolved), n)
    }

    fn write(&self, op: WalOp, affected: u64) -> Result<WriteResult> {
        let mut writer = self.writer.lock();
        if let (Some(guard), WalOp::Upsert { points }) = (&*self.guard.read(), &op) {
            let ids: Vec<PointId> = points.iter().map(|p| p.id.into()).collect();
            guard.check_ids(ids.iter())?;
        }
        self.log_and_apply(&mut writer, op, affected)
    }

    pub(crate) fn log_and_apply(
        &self,
        writer: &mut Writer,
        op: WalOp,
        affected: u64,
    ) -> Result<WriteResult> {
        let epoch = self.repl.check_writable()?;
        if let WalOp::Upsert { points } = &op {
            self.index.reserve_for(points.len())?;
        }
        let bytes = op.encode();
        let started = Instant::now();
        let lsn = writer.wal.append(epoch, &bytes)?;
        if matches!(self.env.wal.fsync, vdb_wal::FsyncPolicy::Always) {
            self.env.metrics.wal_fsync_seconds.observe(started.elapsed().as_secs_f64());
        }
        self.env.metrics.wal_appends.with_label_values(&[&self.name]).inc();
        self.env
            .metrics
            .wal_append_bytes
            .with_label_values(&[&self.name])
            .inc_by(bytes.len() as u64);
        writer.records_since_snapshot += 1;
        self.apply(&op).inspect_err(|e| {
            // The op is logged but not fully applied: the next restart replays it. Until then
            // reads may miss part of it; say so loudly.
            tracing::error!(shard = %self.name, lsn, error = %e, "applying a logged write failed");
        })?;
        self.set_log_end(lsn, epoch);
        self.repl.appended(lsn, epoch, &bytes);
        self.refresh_gauges(writer);
        Ok(WriteResult { lsn, affected })
    }

    /// Applies a logged op to the index and the store. Used live and in recovery.
    pub(crate) fn apply(&self, op: &WalOp) -> Result<()> {
        match op {
            WalOp::Upsert { points } => self.apply_upsert(points),
            WalOp::Delete { ids } => {
                let removed: Vec<u64> = {
                    let mut data = self.data.write();
                    let ShardData { store, indexes } = &mut *data;
                    ids.iter()
                        .filter_map(|&id| store.remove(&PointId::from(id)))
                        .map(|(key, entry)| {
                            indexes.remove(key, &entry.payload);
                            key
                        })
                        .collect()
                };
                for key in removed {
                    self.index.remove(key)?;
                }
                Ok(())
            }
            WalOp::SetPayload { ids, payload, mode } => {
                let patch = parse_payload(payload)?;
                self.update_payloads(ids, |p| match mode {
                    PayloadMode::Overwrite => *p = patch.clone(),
                    PayloadMode::Merge => {
                        for (k, v) in &patch {
                            p.insert(k.clone(), v.clone());
                        }
                    }
                });
                Ok(())
            }
            WalOp::DeletePayloadKeys { ids, keys } => {
                self.update_payloads(ids, |p| {
                    for key in keys {
                        remove_path(p, key);
                    }
                });
                Ok(())
            }
            WalOp::CreateIndex { field, kind } => {
                let mut data = self.data.write();
                let ShardData { store, indexes } = &mut *data;
                indexes.create(field, (*kind).into(), store.iter().map(|(k, e)| (k, &e.payload)));
                Ok(())
            }
            WalOp::DropIndex { field } => {
                self.data.write().indexes.drop(field);
                Ok(())
            }
        }
    }

    fn apply_upsert(&self, points: &[WalPoint]) -> Result<()> {
        let payloads =
            points.iter().map(|p| parse_payload(&p.payload)).collect::<Result<Vec<_>>>()?;
        let base = self.data.read().store.next_key;
        self.index.reserve_for(points.len())?;
        self.env.insert_pool.install(|| {
            points
                .par_iter()
                .enumerate()
                .try_for_each(|(i, p)| self.index.add(base + i as u64, &p.vector))
        })?;
        let replaced: Vec<u64> = {
            let mut data = self.data.write();
            let ShardData { store, indexes } = &mut *data;
            store.next_key = base + points.len() as u64;
            points
                .iter()
                .zip(payloads)
                .enumerate()
                .filter_map(|(i, (p, payload))| {
                    let key = base + i as u64;
                    indexes.insert(key, &payload);
                    let old = store.insert(key, Entry { id: p.id.into(), payload });
                    old.map(|(old_key, old_entry)| {
                        indexes.remove(old_key, &old_entry.payload);
                        old_key
                    })
                })
                .collect()
        };
        for key in replaced {
            self.index.remove(key)?;
        }
        Ok(())
    }

    fn update_payloads(&self, ids: &[StoredId], mut change: impl FnMut(&mut Payload)) {
        let mut data = self.data.write();
        let ShardData { store, indexes } = &mut *data;
        for &id in ids {
            let Some(key) = store.key_of(&PointId::from(id)) else { continue };
            let Some(entry) = store.get(key) else { continue };
            let mut payload = entry.payload.clone();
            change(&mut payload);
            indexes.update(key, &entry.payload, &payload);
            store.set_payload(key, payload);
        }
    }

    /// Sets this shard's gauges; the caller holds the writer lock (`writer`), so the index's
    /// graph may be walked.
    pub(crate) fn refresh_gauges(&self, writer: &Writer) {
        self.index.walk_graph(writer);
        let m = &self.env.metrics;
        let (points, payload_bytes) = {
            let data = self.data.read();
            (data.store.len() as i64, data.store.payload_bytes() as i64)
        };
        m.points.with_label_values(&[&self.name]).set(points);
        m.payload_bytes.with_label_values(&[&self.name]).set(payload_bytes);
        m.index_memory_bytes.with_label_values(&[&self.name]).set(self.index.memory_bytes() as i64);
        m.last_lsn.with_label_values(&[&self.name]).set(self.last_lsn() as i64);
    }

    /// Rejects vectors of the wrong length, with NaN/infinity, or (cosine) of zero length.
    pub(crate) fn check_vector(&self, v: &[f32]) -> Result<()> {
        if v.len() != self.config.dimension {
            return Err(ShardError::Invalid(
                ErrorCode::DimensionMismatch,
                format!(
                    "vector has {} dimensions, shard expects {}",
                    v.len(),
                    self.config.dimension
                ),
            ));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(ShardError::Invalid(
                ErrorCode::InvalidVector,
                format!("vector element {i} is not a finite number"),
            ));
        }
        if self.config.metric == Metric::Cosine && v.iter().all(|&x| x == 0.0) {
            return Err(ShardError::Invalid(
                ErrorCode::InvalidVector,
                "a zero vector has no direction for cosine similarity".into(),
            ));
        }
        Ok(())
    }
}

/// Checks a shard config before anything is created.
pub fn validate_config(c: &ShardConfig) -> Result<()> {
    crate::node::check_name("collection", &c.collection)?;
    if !(1..=65536).contains(&c.dimension) {
        return Err(ShardError::invalid(format!(
            "dimension must be 1..=65536, got {}",
            c.dimension
        )));
    }
    let h = &c.hnsw;
    if !(2..=512).contains(&h.m) {
        return Err(ShardError::invalid(format!("hnsw.m must be 2..=512, got {}", h.m)));
    }
    if !(1..=4096).contains(&h.ef_construction) || !(1..=4096).contains(&h.ef_search) {
        return Err(ShardError::invalid(
            "hnsw.ef_construction and hnsw.ef_search must be 1..=4096",
        ));
    }
    Ok(())
}

fn write_config(dir: &Path, config: &ShardConfig) -> Result<()> {
    let tmp = dir.join("config.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(config).expect("config serialises"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join("config.json"))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn data_from_image(image: PointsImage) -> Result<ShardData> {
    let mut store = PointStore::default();
    store.next_key = image.next_key;
    for (key, id, payload) in image.points {
        store.insert(key, Entry { id: id.into(), payload: parse_payload(&payload)? });
    }
    // One pass over the points builds every payload index.
    let fields = image.indexes.into_iter().map(|(f, k)| (f, k.into())).collect();
    let indexes = PayloadIndexes::build(&fields, store.iter().map(|(k, e)| (k, &e.payload)));
    Ok(ShardData { store, indexes })
}

fn parse_payload(text: &str) -> Result<Payload> {
    serde_json::from_str(text).map_err(|e| ShardError::Corrupt(format!("stored payload: {e}")))
}

/// Removes a dotted path from a payload (missing paths are fine).
fn remove_path(payload: &mut Payload, path: &str) {
    match path.split_once('.') {
        None => {
            payload.remove(path);
        }
        Some((head, rest)) => {
            if let Some(serde_json::Value::Object(inner)) = payload.get_mut(head) {
                remove_path(inner, rest);
            }
        }
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn prefix(e: ShardError, at: &str) -> ShardError {
    match e {
        ShardError::Invalid(code, m) => ShardError::Invalid(code, format!("{at}: {m}")),
        other => other,
    }
}
