//! A segmented, checksummed write-ahead log: every write is logged (and fsynced per policy)
//! before it is acknowledged, and the log doubles as the replication stream.
//!
//! # Records
//!
//! Each record is one frame, all integers little-endian:
//!
//! ```text
//! len: u32 | crc32c: u32 | body = lsn: u64 | epoch: u64 | payload bytes
//! ```
//!
//! `len` is the body length and `crc32c` the CRC-32C of the body. LSNs start at 1 and grow by
//! exactly one per record; the payload is opaque to the log. A body longer than
//! [`record::MAX_BODY_LEN`] (256 MiB) is never written and, when read, is taken for damage.
//!
//! # Files
//!
//! The log is a directory of segments named `wal-<first lsn, 20 digits zero-padded>.log`.
//! Appends go to the newest segment; a new one is started once it holds `segment_bytes` or more,
//! and on [`Wal::roll`]. A segment is fsynced before a newer one is created, so only the newest
//! can ever hold a torn write. New segment files are fsynced along with their directory, and the
//! directory is fsynced after segments are deleted.
//!
//! # Fsync policy
//!
//! - [`FsyncPolicy::Always`]: [`Wal::append`] and [`Wal::append_batch`] fsync before they return,
//!   so an acknowledged record survives power loss. A batch shares one write and one fsync.
//! - [`FsyncPolicy::Interval`]: appends do **not** fsync. The owner runs a timer that calls
//!   [`Wal::sync`] at that interval (and once more at shutdown); a crash loses at most the
//!   records appended since the last sync. The log itself starts no thread.
//! - [`FsyncPolicy::Never`]: only explicit [`Wal::sync`] calls (and rolls) fsync.
//!
//! Fsync errors are always returned, never swallowed. After a failed fsync, or a failed write
//! that could not be undone, the page cache no longer tells what is on disk, so the [`Wal`]
//! refuses further writes with [`WalError::Poisoned`]; reopening it re-validates the files.
//! Dropping a [`Wal`] does not fsync: call [`Wal::sync`] at shutdown.
//!
//! # Recovery
//!
//! [`Wal::open`] reads and checks every segment before it changes anything or hands out a
//! record:
//!
//! - A bad record (header or body running past the end of the file, a length out of bounds, a
//!   failing checksum) at the end of the **last** segment, with nothing but garbage after it, is
//!   a torn tail from a crash mid-write: the file is cut at the start of that record and
//!   fsynced, the cut is logged and reported in [`OpenReport::torn_tail_dropped`], and appends
//!   continue from there.
//! - A bad record in any other segment, or one followed by a valid record with a plausible LSN,
//!   is damage in the middle of the log: open fails with [`WalError::Corrupt`], naming the segment
//!   and offset. Loading around a hole would silently lose acknowledged writes.
//! - Consecutive records must have consecutive LSNs, within and across segments, and the first
//!   record of a segment must carry the LSN in its name; otherwise open fails with
//!   [`WalError::Gap`]. So does a log whose oldest record comes after `after_lsn + 1` (records
//!   between the snapshot and the log are missing).
//! - A zero-length segment (a crash right after creating it) is fine.
//!
//! # Replication
//!
//! [`Wal::read_from`] returns records from a given LSN for catch-up. It may return records that
//! are not yet fsynced; a primary that must only ship durable records reads up to
//! [`Wal::synced_lsn`].

#![forbid(unsafe_code)]

pub mod record;
mod recover;
mod segment;

use record::MAX_PAYLOAD_LEN;
use segment::{ActiveSegment, SegmentReader};
use std::collections::VecDeque;
use std::fs;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// When appended records are fsynced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before every append returns.
    Always,
    /// By the owner's timer calling [`Wal::sync`] at this interval; appends never fsync.
    Interval(Duration),
    /// Only on explicit [`Wal::sync`] (and when a segment is closed).
    Never,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalOptions {
    pub fsync: FsyncPolicy,
    /// A new segment is started once the active one holds this many bytes or more.
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { fsync: FsyncPolicy::Always, segment_bytes: 64 << 20 }
    }
}

/// One logged operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalRecord {
    pub lsn: u64,
    pub epoch: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt wal segment {} at offset {offset}: {reason}", segment.display())]
    Corrupt { segment: PathBuf, offset: u64, reason: String },
    #[error(
        "lsn gap in wal segment {} at offset {offset}: expected lsn {expected}, found {found}",
        segment.display()
    )]
    Gap { segment: PathBuf, offset: u64, expected: u64, found: u64 },
    #[error("wal payload of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// The requested LSN was dropped by [`Wal::truncate_through`]; the reader needs a snapshot.
    #[error("wal no longer holds lsn {requested}")]
    Truncated { requested: u64, first_available: Option<u64> },
    /// The `apply` callback of [`Wal::open`] failed.
    #[error("replaying wal lsn {lsn}: {source}")]
    Apply {
        lsn: u64,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("wal is unusable after an earlier i/o failure ({reason}); reopen it")]
    Poisoned { reason: String },
}

/// A torn tail that [`Wal::open`] cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub segment: PathBuf,
    /// Where the torn record started; the file now ends here.
    pub offset: u64,
    pub bytes_dropped: u64,
    pub reason: String,
}

/// What [`Wal::open`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Records handed to `apply` (those after `after_lsn`).
    pub records_replayed: u64,
    /// The last LSN handed out so far: max(last record on disk, `after_lsn`).
    pub last_lsn: u64,
    pub torn_tail_dropped: Option<TornTail>,
}

/// A segment that is no longer appended to.
#[derive(Debug)]
pub(crate) struct ClosedSegment {
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub path: PathBuf,
    pub len: u64,
}

/// An open log. Not shared: the owner serialises appends (they take `&mut self`).
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    /// Oldest first; each holds at least one record, and they continue each other.
    closed: VecDeque<ClosedSegment>,
    /// Continues the closed segments. When empty its name is `last_lsn + 1`.
    active: ActiveSegment,
    last_lsn: u64,
    synced_lsn: u64,
    dirty: bool,
    poisoned: Option<String>,
    /// Reused frame buffer, so steady-state appends do not allocate.
    buf: Vec<u8>,
}

/// Frame buffers above this are released after use instead of kept for the next append.
const KEEP_BUF_BYTES: usize = 4 << 20;

impl Wal {
    /// Opens the log in `dir` (creating the directory if needed), validates every segment,
    /// repairs a torn tail, and calls `apply` for each record with lsn > `after_lsn`, in order.
    ///
    /// `after_lsn` is the LSN a snapshot already covers. The next LSN handed out is
    /// max(last record's lsn, `after_lsn`) + 1, even if no segment is left. Segments whose
    /// records the snapshot covers entirely may be removed when the log cannot continue them
    /// (the log is behind the snapshot). `apply` is only called once the whole log has been
    /// validated; if it fails, open fails with [`WalError::Apply`].
    pub fn open<E>(
        dir: &Path,
        opts: WalOptions,
        after_lsn: u64,
        apply: impl FnMut(WalRecord) -> Result<(), E>,
    ) -> Result<(Wal, OpenReport), WalError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let recovered = recover::recover(dir, after_lsn, apply)?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            opts,
            closed: recovered.closed,
            active: recovered.active,
            last_lsn: recovered.last_lsn,
            // Recovery read everything back from disk (and cut what it dropped durably).
            synced_lsn: recovered.last_lsn,
            dirty: false,
            poisoned: None,
            buf: Vec::new(),
        };
        Ok((wal, recovered.report))
    }

    /// Appends one record; under [`FsyncPolicy::Always`] it is fsynced before this returns.
    /// Returns its LSN.
    pub fn append(&mut self, epoch: u64, payload: &[u8]) -> Result<u64, WalError> {
        Ok(*self.append_batch(epoch, &[payload])?.end())
    }

    /// Appends several records with a single write and (under [`FsyncPolicy::Always`]) a single
    /// fsync: group commit. Returns their LSNs; an empty batch writes nothing and returns an
    /// empty range starting at the next LSN.
    pub fn append_batch(
        &mut self,
        epoch: u64,
        payloads: &[&[u8]],
    ) -> Result<RangeInclusive<u64>, WalError> {
        self.check_usable()?;
        let first = self.last_lsn + 1;
        if payloads.is_empty() {
            return Ok(first..=self.last_lsn);
        }
        if let Some(p) = payloads.iter().find(|p| p.len() > MAX_PAYLOAD_LEN) {
            return Err(WalError::TooLarge { len: p.len(), max: MAX_PAYLOAD_LEN });
        }
        if self.active.len >= self.opts.segment_bytes {
            self.roll()?;
        }
        self.buf.clear();
        for (lsn, payload) in (first..).zip(payloads) {
            record::encode(&mut self.buf, lsn, epoch, payload);
        }
        let written = self.active.write(&self.buf);
        if self.buf.capacity() > KEEP_BUF_BYTES {
            self.buf = Vec::new();
        }
        if let Err((e, undo)) = written {
            if let Some(undo) = undo {
                self.poison(format!("append failed ({e}) and could not be undone ({undo})"));
            }
            return Err(e.into());
        }
        self.last_lsn = first + payloads.len() as u64 - 1;
        self.dirty = true;
        if self.opts.fsync == FsyncPolicy::Always {
            self.sync()?;
        }
        Ok(first..=self.last_lsn)
    }

    /// Fsyncs the active segment if anything is unsynced. Under [`FsyncPolicy::Interval`] the
    /// owner's timer calls this; everyone calls it at shutdown. A failure poisons the log.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check_usable()?;
        if !self.dirty {
            return Ok(());
        }
        if let Err(e) = self.active.file.sync_data() {
            self.poison(format!("fsync of {} failed: {e}", self.active.path.display()));
            return Err(e.into());
        }
        self.dirty = false;
        self.synced_lsn = self.last_lsn;
        Ok(())
    }

    /// Whether appended bytes are waiting for an fsync.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The LSN of the last record appended (or covered by the snapshot given to [`Wal::open`] or
    /// [`Wal::truncate_through`]); 0 for a new log.
    pub fn last_lsn(&self) -> u64 {
        self.last_lsn
    }

    /// The highest LSN known to be on stable storage.
    pub fn synced_lsn(&self) -> u64 {
        self.synced_lsn
    }

    /// The oldest record still on disk, if any.
    pub fn first_lsn(&self) -> Option<u64> {
        match self.closed.front() {
            Some(c) => Some(c.first_lsn),
            None => (self.active.len > 0).then_some(self.active.first_lsn),
        }
    }

    /// Closes the active segment (fsynced first) and starts a new one. Does nothing while the
    /// active segment is empty.
    pub fn roll(&mut self) -> Result<(), WalError> {
        self.check_usable()?;
        if self.active.len == 0 {
            return Ok(());
        }
        self.sync()?;
        self.start_segment(self.last_lsn + 1)
    }

    /// Deletes whole segments whose records are all <= `lsn`, oldest first, and fsyncs the
    /// directory. Called after a snapshot covering `lsn` is durable. If the active segment is
    /// entirely covered it is closed first (so it can go too).
    ///
    /// If `lsn` is beyond the last record, every record is covered and, as with `after_lsn` in
    /// [`Wal::open`], the next LSN handed out becomes `lsn + 1`.
    pub fn truncate_through(&mut self, lsn: u64) -> Result<(), WalError> {
        self.check_usable()?;
        if lsn > self.last_lsn {
            // Every record is covered, so every segment, the active one included (even when
            // empty: it is named for an LSN that will now never be written), goes below.
            self.sync()?;
            self.start_segment(lsn + 1)?;
            self.last_lsn = lsn;
            self.synced_lsn = lsn;
        } else if self.active.len > 0 && self.last_lsn <= lsn {
            self.roll()?;
        }
        let mut removed = 0;
        while let Some(oldest) = self.closed.front() {
            if oldest.last_lsn > lsn {
                break;
            }
            fs::remove_file(&oldest.path)?;
            self.closed.pop_front();
            removed += 1;
        }
        if removed > 0 {
            segment::sync_dir(&self.dir)?;
            tracing::debug!(dir = %self.dir.display(), removed, through_lsn = lsn, "wal truncated");
        }
        Ok(())
    }

    /// Up to `max_records` records starting at `from_lsn` (an LSN of 0 reads from 1), for
    /// replication catch-up. Empty when `from_lsn` is past the last record. Fails with
    /// [`WalError::Truncated`] when `from_lsn` was already dropped: the reader needs a snapshot.
    pub fn read_from(&self, from_lsn: u64, max_records: usize) -> Result<Vec<WalRecord>, WalError> {
        let from = from_lsn.max(1);
        if from > self.last_lsn || max_records == 0 {
            return Ok(Vec::new());
        }
        let first_available = self.first_lsn();
        if first_available.is_none_or(|first| first > from) {
            return Err(WalError::Truncated { requested: from, first_available });
        }
        let segments: Vec<(u64, &Path, u64)> = self
            .closed
            .iter()
            .map(|c| (c.first_lsn, c.path.as_path(), c.len))
            .chain([(self.active.first_lsn, self.active.path.as_path(), self.active.len)])
            .collect();
        let start = segments.partition_point(|s| s.0 <= from) - 1;
        let wanted = (self.last_lsn - from + 1).min(max_records as u64) as usize;
        let mut out = Vec::with_capacity(wanted.min(4096));
        for &(first_lsn, path, len) in &segments[start..] {
            let mut reader = SegmentReader::open(path, len)?;
            let mut expected = first_lsn;
            while let Some(record) = reader.next_record()? {
                if record.lsn != expected {
                    return Err(WalError::Gap {
                        segment: path.to_path_buf(),
                        offset: 0,
                        expected,
                        found: record.lsn,
                    });
                }
                expected += 1;
                if record.lsn >= from {
                    out.push(record);
                    if out.len() == wanted {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Bytes of records on disk, over all segments.
    pub fn size_bytes(&self) -> u64 {
        self.closed.iter().map(|c| c.len).sum::<u64>() + self.active.len
    }

    /// Segment files on disk, the active one included.
    pub fn segment_count(&self) -> usize {
        self.closed.len() + 1
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &WalOptions {
        &self.opts
    }

    /// Closes the active segment (which must be synced) and starts one named `first_lsn`. An
    /// empty active segment is moved to the closed list too, so only a caller that removes it
    /// right away may start a segment while the active one is empty.
    fn start_segment(&mut self, first_lsn: u64) -> Result<(), WalError> {
        // A half-created segment could be named for LSNs the old segment goes on to hold, which
        // recovery would refuse; the only safe answer is to stop writing.
        let next = ActiveSegment::create(&self.dir, first_lsn).map_err(|e| {
            self.poison(format!("creating a wal segment failed: {e}"));
            WalError::Io(e)
        })?;
        let old = std::mem::replace(&mut self.active, next);
        self.closed.push_back(ClosedSegment {
            first_lsn: old.first_lsn,
            last_lsn: self.last_lsn,
            path: old.path,
            len: old.len,
        });
        Ok(())
    }

    fn poison(&mut self, reason: String) {
        tracing::error!(dir = %self.dir.display(), %reason, "wal poisoned");
        self.poisoned = Some(reason);
    }

    fn check_usable(&self) -> Result<(), WalError> {
        match &self.poisoned {
            Some(reason) => Err(WalError::Poisoned { reason: reason.clone() }),
            None => Ok(()),
        }
    }
}
