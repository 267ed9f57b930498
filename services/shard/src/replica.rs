//! Both ends of the replication stream on a local shard: what a primary reads to ship (its
//! log after some LSN, or a snapshot), and how a replica takes it in.
//!
//! The stream (`POST /v1/shards/{name}/replicate`) carries WAL frames exactly as the primary
//! logged them — LSN, epoch, the encoded op and its CRC32C — so a replica's log is a prefix of
//! its primary's, byte for byte. A batch names the record it continues (`prev_lsn`,
//! `prev_epoch`); a replica whose last record differs answers `matched: false` with where it
//! stands, and applies nothing. The primary then resumes from that point when its own log has
//! the same record there, and otherwise sends a snapshot (`PUT .../replica/snapshot`): the
//! replica's position is no longer in the primary's log, or the replica holds records of an
//! older epoch that the new primary never had (a deposed primary's unacknowledged tail).

use crate::error::{Result, ShardError};
use crate::ops::WalOp;
pub use crate::replication::Frames;
use crate::replication::ShipperStart;
use crate::shard::LocalShard;
use std::sync::atomic::Ordering;
use vdb_api::{LogPosition, ReplicateAck, ReplicationInfo, RoleAssignment};

/// Records read from the WAL files per turn of the writer lock.
const WAL_CHUNK: usize = 256;

/// Encodes records as the stream's body.
pub fn encode_frames(frames: &Frames) -> Vec<u8> {
    let mut out = Vec::with_capacity(frames.iter().map(|f| f.2.len() + 32).sum());
    for (lsn, epoch, op) in frames {
        vdb_wal::record::encode(&mut out, *lsn, *epoch, op);
    }
    out
}

impl LocalShard {
    pub fn replication_info(&self) -> ReplicationInfo {
        let end = self.log_end();
        self.repl.info(end.lsn, end.epoch)
    }

    /// Applies a role assignment from the controller; returns where this copy stands and the
    /// shippers the caller must start (on the async runtime).
    pub fn assign_role(&self, a: &RoleAssignment) -> Result<(ReplicationInfo, Vec<ShipperStart>)> {
        let _writer = self.writer.lock();
        let (starts, persist) = self.repl.assign(a)?;
        if persist {
            crate::replication::save(&self.dir, &self.repl.stored())?;
        }
        tracing::info!(shard = %self.name, role = ?a.role, epoch = a.epoch, replicas = a.replicas.len(),
            in_sync = a.in_sync.len(), lease_until_ms = a.lease_until_ms, "role assigned");
        Ok((self.replication_info(), starts))
    }

    /// Takes in a batch of the primary's log (a replica's side of the stream).
    pub fn replicate(
        &self,
        epoch: u64,
        prev_lsn: u64,
        prev_epoch: u64,
        body: &[u8],
    ) -> Result<ReplicateAck> {
        let mut writer = self.writer.lock();
        if self.repl.accept_primary(epoch)? {
            crate::replication::save(&self.dir, &self.repl.stored())?;
            tracing::info!(shard = %self.name, epoch, "following a primary of a newer epoch");
        }
        let LogPosition { lsn: last_lsn, epoch: last_epoch } = self.log_end();
        let ack = |matched: bool, lsn: u64, lsn_epoch: u64| ReplicateAck {
            matched,
            durable_lsn: if matched { lsn } else { 0 },
            last_lsn: lsn,
            last_epoch: lsn_epoch,
            epoch: self.repl.epoch(),
        };
        if prev_lsn != last_lsn || prev_epoch != last_epoch {
            return Ok(ack(false, last_lsn, last_epoch));
        }
        // Decode and check the whole batch before anything is logged.
        let mut records = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let (r, used) = vdb_wal::record::decode(rest).map_err(|e| {
                ShardError::invalid(format!("replication frame {}: {e}", records.len()))
            })?;
            let expected = prev_lsn + 1 + records.len() as u64;
            if r.lsn != expected || r.epoch > epoch {
                return Err(ShardError::invalid(format!(
                    "replication frame {} has lsn {} epoch {}, expected lsn {expected} of an \
                     epoch up to {epoch}",
                    records.len(),
                    r.lsn,
                    r.epoch
                )));
            }
            let op = WalOp::decode(r.payload).map_err(ShardError::invalid)?;
            records.push((r.lsn, r.epoch, r.payload, op));
            rest = &rest[used..];
        }
        let Some(&(end, end_epoch, ..)) = records.last() else {
            return Ok(ack(true, last_lsn, last_epoch));
        };
        // One write (and one fsync) per run of records of one epoch.
        let mut i = 0;
        while i < records.len() {
            let run_epoch = records[i].1;
            let run = records[i..].iter().take_while(|r| r.1 == run_epoch).count();
            let payloads: Vec<&[u8]> = records[i..i + run].iter().map(|r| r.2).collect();
            let lsns = writer.wal.append_batch(run_epoch, &payloads)?;
            if *lsns.start() != records[i].0 {
                return Err(ShardError::Corrupt(format!(
                    "{}: the log handed out lsn {} for the primary's {}",
                    self.name,
                    lsns.start(),
                    records[i].0
                )));
            }
            i += run;
        }
        for (lsn, lsn_epoch, _, op) in &records {
            if let WalOp::Upsert { points } = op {
                self.index.reserve_for(points.len())?;
            }
            self.apply(op).inspect_err(|e| {
                tracing::error!(shard = %self.name, lsn, error = %e, "applying a replicated write failed");
            })?;
            self.set_last(*lsn, *lsn_epoch);
        }
        writer.records_since_snapshot += records.len() as u64;
        self.refresh_gauges(&writer);
        drop(writer);
        Ok(ack(true, end, end_epoch))
    }

    /// Up to `max_bytes` of records after `after` (at least one when there are any), read
    /// back from the WAL files, for a replica the in-memory tail no longer reaches
    /// ([`crate::replication::Replication::recent_after`] is tried first, off the blocking
    /// pool). [`ShardError::WalTruncated`] when the log no longer reaches back to `after + 1`.
    pub fn wal_frames_after(&self, after: u64, max_bytes: usize) -> Result<Frames> {
        let writer = self.writer.lock();
        // Only applied records are served (as in `wal_page`).
        let last = self.last_lsn();
        if after >= last {
            return Ok(Vec::new());
        }
        let want = WAL_CHUNK.min((last - after) as usize);
        let records = writer.wal.read_from(after + 1, want).map_err(|e| match e {
            vdb_wal::WalError::Truncated { .. } => ShardError::WalTruncated(format!(
                "{}: the log no longer holds lsn {}",
                self.name,
                after + 1
            )),
            other => other.into(),
        })?;
        let mut out: Frames = Vec::new();
        let mut bytes = 0;
        for r in records {
            if !out.is_empty() && bytes + r.payload.len() > max_bytes {
                break;
            }
            bytes += r.payload.len();
            out.push((r.lsn, r.epoch, r.payload.into()));
        }
        Ok(out)
    }

    /// The epoch of this copy's record at `lsn`, when it can still tell (0 for lsn 0).
    pub fn epoch_at(&self, lsn: u64) -> Result<Option<u64>> {
        if lsn == 0 {
            return Ok(Some(0));
        }
        let end = self.log_end();
        if lsn == end.lsn {
            return Ok(Some(end.epoch));
        }
        if let Some(e) = self.repl.recent_epoch(lsn) {
            return Ok(Some(e));
        }
        let writer = self.writer.lock();
        if lsn > self.last_lsn() {
            return Ok(None);
        }
        match writer.wal.read_from(lsn, 1) {
            Ok(r) => Ok(r.first().filter(|r| r.lsn == lsn).map(|r| r.epoch)),
            Err(vdb_wal::WalError::Truncated { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The newest snapshot's files for a replica, taking a snapshot first when there is none.
    pub fn snapshot_for_transfer(&self) -> Result<crate::snapshot::Transfer> {
        let dir = self.dir.join("snapshots");
        if let Some(t) = crate::snapshot::read_latest(&dir)? {
            return Ok(t);
        }
        match self.snapshot() {
            Ok(_) => {}
            // Another snapshot is being taken: use it once it is there.
            Err(ShardError::Unavailable(_)) => {
                while self.snapshotting.load(Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
            Err(e) => return Err(e),
        }
        crate::snapshot::read_latest(&dir)?.ok_or_else(|| {
            ShardError::Unavailable(format!("{}: no snapshot to send yet", self.name))
        })
    }

    fn set_last(&self, lsn: u64, epoch: u64) {
        self.set_log_end(lsn, epoch);
        self.repl.appended(lsn, epoch, &[]);
    }
}
