//! The durability side of a local shard: WAL fsync for the group-commit timer and shutdown,
//! and snapshots (claimed so that only one runs at a time, written by [`crate::snapshot`]).

use crate::error::{Result, ShardError};
use crate::shard::LocalShard;
use crate::snapshot::{self, PointsImage};
use std::sync::atomic::Ordering;
use std::time::Instant;
use vdb_api::LogPosition;

impl LocalShard {
    // ---- durability --------------------------------------------------------------------

    /// Fsyncs the WAL if it has unsynced records (interval policy and shutdown).
    pub fn sync_wal(&self) -> Result<()> {
        let mut writer = self.writer.lock();
        if writer.wal.is_dirty() {
            let started = Instant::now();
            writer.wal.sync()?;
            self.env.metrics.wal_fsync_seconds.observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Claims the right to take a background snapshot when enough records were logged since
    /// the last one; the caller must then call [`LocalShard::run_claimed_snapshot`].
    pub fn claim_due_snapshot(&self, every: u64) -> bool {
        every > 0
            && self.writer.lock().records_since_snapshot >= every
            && self
                .snapshotting
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
    }

    /// Takes a snapshot now (on request), unless one is already being taken.
    pub fn snapshot(&self) -> Result<vdb_api::SnapshotInfo> {
        if self.snapshotting.swap(true, Ordering::SeqCst) {
            return Err(ShardError::Unavailable(format!(
                "a snapshot of {} is already being taken",
                self.name
            )));
        }
        self.run_claimed_snapshot()
    }

    /// Takes a snapshot and truncates the WAL behind it, then releases the claim. Writers wait
    /// only while the index is copied into memory; searches go on throughout.
    pub fn run_claimed_snapshot(&self) -> Result<vdb_api::SnapshotInfo> {
        let result = self.snapshot_inner();
        self.snapshotting.store(false, Ordering::SeqCst);
        result
    }

    fn snapshot_inner(&self) -> Result<vdb_api::SnapshotInfo> {
        let started = Instant::now();
        let (lsn, epoch, index_bytes, image) = {
            let mut writer = self.writer.lock();
            // The WAL must be durable up to the LSN the snapshot claims before the log
            // behind it may go.
            writer.wal.sync()?;
            let LogPosition { lsn, epoch } = self.log_end();
            let index_bytes = self.index.save_to_vec()?;
            let data = self.data.read();
            let image = PointsImage {
                next_key: data.store.next_key,
                points: data
                    .store
                    .iter()
                    .map(|(k, e)| {
                        (k, e.id.into(), serde_json::Value::Object(e.payload.clone()).to_string())
                    })
                    .collect(),
                indexes: data.indexes.fields().into_iter().map(|(f, k)| (f, k.into())).collect(),
            };
            writer.records_since_snapshot = 0;
            (lsn, epoch, index_bytes, image)
        };
        let size = snapshot::write(&self.dir.join("snapshots"), lsn, epoch, &index_bytes, &image)?;
        self.snapshot_lsn.store(lsn, Ordering::SeqCst);
        self.writer.lock().wal.truncate_through(lsn)?;
        let seconds = started.elapsed().as_secs_f64();
        self.env.metrics.snapshot_seconds.observe(seconds);
        self.env.metrics.snapshot_size_bytes.with_label_values(&[&self.name]).set(size as i64);
        tracing::info!(shard = %self.name, lsn, size, seconds, "snapshot taken");
        Ok(vdb_api::SnapshotInfo { lsn, size_bytes: size, duration_seconds: seconds })
    }
}
