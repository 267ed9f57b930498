//! A segmented, checksummed write-ahead log.
//!
//! Record framing (little-endian):
//! `len: u32` (length of the body) | `crc32c: u32` (of the body) | body = `lsn: u64 | epoch: u64 | payload`.
//! LSNs start at 1 and grow by exactly one per record. The payload is opaque to the log.
//!
//! Files: a directory of segments `wal-<first lsn, 20 digits>.log`. A segment is closed when it
//! passes `segment_bytes` or on [`Wal::roll`].
//!
//! Crash safety: each append is one `write` call. On open, every segment is validated. A bad
//! record (short, oversized, failing its checksum) at the tail of the last segment, with no valid
//! record after it, is a torn tail: the file is cut there and fsynced, and the event is logged and
//! reported. A bad record anywhere else, or an LSN gap, is corruption: open fails with
//! [`WalError::Corrupt`] / [`WalError::Gap`] rather than load a log with a hole in it.
//!
//! Fsync: with [`FsyncPolicy::Always`] every append is fsynced before it returns. With
//! `Interval`, appends do not fsync; the owner calls [`Wal::sync`] on a timer (group commit).
//! With `Never`, only [`Wal::sync`] does. Fsync errors are returned, never swallowed.

mod segment;

use segment::{scan, Scan, Segment};
use std::fs::{self, File};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Header bytes before the body: length and checksum.
pub const HEADER: usize = 8;
/// Bytes of the body before the payload: lsn and epoch.
pub const BODY_PREFIX: usize = 16;
/// Bodies longer than this are treated as damage, not data.
pub const MAX_BODY: usize = 256 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    Always,
    Interval(Duration),
    Never,
}

#[derive(Clone, Debug)]
pub struct WalOptions {
    pub fsync: FsyncPolicy,
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { fsync: FsyncPolicy::Always, segment_bytes: 64 << 20 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalRecord {
    pub lsn: u64,
    pub epoch: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal io: {0}")]
    Io(#[from] std::io::Error),
    #[error("wal corrupt in {} at offset {offset}: {reason}", segment.display())]
    Corrupt { segment: PathBuf, offset: u64, reason: String },
    #[error("wal gap in {}: expected lsn {expected}, found {found}", segment.display())]
    Gap { segment: PathBuf, expected: u64, found: u64 },
    #[error("wal no longer holds lsn {0}")]
    Truncated(u64),
    #[error("applying lsn {lsn}: {message}")]
    Apply { lsn: u64, message: String },
}

/// A torn tail found and cut on open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub segment: PathBuf,
    pub offset: u64,
    pub bytes_dropped: u64,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub records_replayed: u64,
    pub last_lsn: u64,
    pub torn_tail: Option<TornTail>,
}

pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    /// Closed segments, oldest first: (first lsn, last lsn, path).
    closed: Vec<(u64, u64, PathBuf)>,
    active: Segment,
    last_lsn: u64,
    dirty: bool,
    buf: Vec<u8>,
}

impl Wal {
    /// Opens the log in `dir` (created if missing), validates it, cuts a torn tail, and calls
    /// `apply` for every record with lsn > `after_lsn`, in order. The next LSN handed out is
    /// max(last record, `after_lsn`) + 1.
    pub fn open<E: std::fmt::Display>(
        dir: &Path,
        opts: WalOptions,
        after_lsn: u64,
        mut apply: impl FnMut(WalRecord) -> Result<(), E>,
    ) -> Result<(Wal, OpenReport), WalError> {
        fs::create_dir_all(dir)?;
        let mut paths: Vec<(u64, PathBuf)> = fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| segment::first_lsn_of(&p).map(|l| (l, p)))
            .collect();
        paths.sort();
        let mut report = OpenReport::default();
        let mut closed = Vec::new();
        let mut expected: Option<u64> = None;
        let count = paths.len();
        for (i, (first, path)) in paths.into_iter().enumerate() {
            let is_last = i + 1 == count;
            let bytes = fs::read(&path)?;
            let Scan { records, end, bad } = scan(&bytes);
            if let Some(bad) = bad {
                if !is_last
                    || segment::valid_record_after(
                        &bytes,
                        bad.offset,
                        records.last().map(|r| r.lsn),
                    )
                {
                    return Err(WalError::Corrupt {
                        segment: path,
                        offset: bad.offset as u64,
                        reason: bad.reason,
                    });
                }
                let torn = TornTail {
                    segment: path.clone(),
                    offset: end as u64,
                    bytes_dropped: (bytes.len() - end) as u64,
                    reason: bad.reason,
                };
                tracing::warn!(segment = %path.display(), offset = torn.offset, bytes_dropped = torn.bytes_dropped,
                    reason = %torn.reason, "dropping torn wal tail");
                let f = fs::OpenOptions::new().write(true).open(&path)?;
                f.set_len(end as u64)?;
                f.sync_all()?;
                report.torn_tail = Some(torn);
            }
            for r in &records {
                let want = expected.unwrap_or(r.lsn);
                if r.lsn != want {
                    return Err(WalError::Gap { segment: path, expected: want, found: r.lsn });
                }
                expected = Some(r.lsn + 1);
            }
            let last = records.last().map(|r| r.lsn);
            for r in records {
                report.last_lsn = r.lsn;
                if r.lsn > after_lsn {
                    let lsn = r.lsn;
                    apply(r).map_err(|e| WalError::Apply { lsn, message: e.to_string() })?;
                    report.records_replayed += 1;
                }
            }
            if is_last {
                let next = last.map_or(first.max(after_lsn + 1), |l| l + 1);
                let active = Segment::open_append(&path, first, end as u64)?;
                let mut wal = Wal::assemble(dir, opts, closed, active, next.max(after_lsn + 1) - 1);
                report.last_lsn = wal.last_lsn;
                if wal.active.len == 0 && wal.active.first_lsn != wal.last_lsn + 1 {
                    // An empty segment named for another LSN: start a correctly named one.
                    fs::remove_file(&path)?;
                    wal.active = Segment::create(dir, wal.last_lsn + 1)?;
                }
                return Ok((wal, report));
            }
            closed.push((first, last.unwrap_or(first.saturating_sub(1)), path));
        }
        let last_lsn = after_lsn.max(expected.map_or(0, |e| e - 1));
        let active = Segment::create(dir, last_lsn + 1)?;
        let wal = Wal::assemble(dir, opts, closed, active, last_lsn);
        report.last_lsn = wal.last_lsn;
        Ok((wal, report))
    }

    fn assemble(
        dir: &Path,
        opts: WalOptions,
        closed: Vec<(u64, u64, PathBuf)>,
        active: Segment,
        last_lsn: u64,
    ) -> Wal {
        Wal {
            dir: dir.to_path_buf(),
            opts,
            closed,
            active,
            last_lsn,
            dirty: false,
            buf: Vec::new(),
        }
    }

    /// Appends one record (fsynced before returning under `FsyncPolicy::Always`).
    pub fn append(&mut self, epoch: u64, payload: &[u8]) -> Result<u64, WalError> {
        Ok(*self.append_batch(epoch, &[payload])?.end())
    }

    /// Appends several records with one write and at most one fsync.
    pub fn append_batch(
        &mut self,
        epoch: u64,
        payloads: &[&[u8]],
    ) -> Result<RangeInclusive<u64>, WalError> {
        if self.active.len >= self.opts.segment_bytes {
            self.roll()?;
        }
        self.buf.clear();
        let first = self.last_lsn + 1;
        for (i, p) in payloads.iter().enumerate() {
            segment::encode(&mut self.buf, first + i as u64, epoch, p);
        }
        self.active.write(&self.buf)?;
        self.last_lsn += payloads.len() as u64;
        self.dirty = true;
        if self.opts.fsync == FsyncPolicy::Always {
            self.sync()?;
        }
        Ok(first..=self.last_lsn)
    }

    /// Fsyncs if anything is unsynced.
    pub fn sync(&mut self) -> Result<(), WalError> {
        if self.dirty {
            self.active.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn last_lsn(&self) -> u64 {
        self.last_lsn
    }

    /// The first LSN still on disk, if any record is.
    pub fn first_lsn(&self) -> Option<u64> {
        let first = self.closed.first().map_or(self.active.first_lsn, |c| c.0);
        (first <= self.last_lsn).then_some(first)
    }

    /// Closes the active segment and starts a new one.
    pub fn roll(&mut self) -> Result<(), WalError> {
        self.sync()?;
        if self.active.len == 0 {
            return Ok(());
        }
        let next = Segment::create(&self.dir, self.last_lsn + 1)?;
        let old = std::mem::replace(&mut self.active, next);
        self.closed.push((old.first_lsn, self.last_lsn, old.path));
        Ok(())
    }

    /// Deletes every segment whose records are all ≤ `lsn` (after a snapshot covering `lsn`).
    pub fn truncate_through(&mut self, lsn: u64) -> Result<(), WalError> {
        if self.active.len > 0 && self.last_lsn <= lsn {
            self.roll()?;
        }
        let before = self.closed.len();
        while let Some((_, last, path)) = self.closed.first() {
            if *last > lsn {
                break;
            }
            fs::remove_file(path)?;
            self.closed.remove(0);
        }
        if self.closed.len() != before {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Up to `max` records starting at `from` (for catch-up). Fails with `Truncated` when `from`
    /// is no longer on disk.
    pub fn read_from(&self, from: u64, max: usize) -> Result<Vec<WalRecord>, WalError> {
        if from > self.last_lsn {
            return Ok(Vec::new());
        }
        match self.first_lsn() {
            Some(first) if first <= from => {}
            _ => return Err(WalError::Truncated(from)),
        }
        let mut out = Vec::new();
        let segments = self
            .closed
            .iter()
            .map(|c| (c.0, c.2.clone()))
            .chain([(self.active.first_lsn, self.active.path.clone())]);
        for (_, path) in segments {
            let bytes = fs::read(&path)?;
            for r in scan(&bytes).records {
                if r.lsn >= from && out.len() < max {
                    out.push(r);
                }
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    pub fn size_bytes(&self) -> u64 {
        let closed: u64 =
            self.closed.iter().filter_map(|c| fs::metadata(&c.2).ok()).map(|m| m.len()).sum();
        closed + self.active.len
    }
}
