//! Helpers shared by the integration tests: opening logs, collecting replays, listing segments.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use vdb_wal::{FsyncPolicy, OpenReport, Wal, WalError, WalOptions, WalRecord};

/// Options that skip per-append fsyncs: the tests kill nothing, and fsync costs milliseconds.
pub fn fast(segment_bytes: u64) -> WalOptions {
    WalOptions { fsync: FsyncPolicy::Never, segment_bytes }
}

/// Opens `dir` and returns the log, the report and every record handed to `apply`.
pub fn try_open(
    dir: &Path,
    opts: WalOptions,
    after_lsn: u64,
) -> Result<(Wal, OpenReport, Vec<WalRecord>), WalError> {
    let mut replayed = Vec::new();
    let (wal, report) = Wal::open(dir, opts, after_lsn, |r| {
        replayed.push(r);
        Ok::<(), String>(())
    })?;
    Ok((wal, report, replayed))
}

pub fn open(dir: &Path, opts: WalOptions, after_lsn: u64) -> (Wal, OpenReport, Vec<WalRecord>) {
    try_open(dir, opts, after_lsn).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// A payload whose length and bytes depend on `i`, so misplaced records are told apart.
pub fn payload(i: u64) -> Vec<u8> {
    let len = (i * 7 % 41) as usize;
    (0..len).map(|j| (i as usize * 31 + j * 17) as u8).collect()
}

/// Appends records `payload(1..=n)` (epoch = lsn / 4 + 1) and returns what was written.
pub fn fill(wal: &mut Wal, n: u64) -> Vec<WalRecord> {
    (0..n)
        .map(|_| {
            let lsn = wal.last_lsn() + 1;
            let record = WalRecord { lsn, epoch: lsn / 4 + 1, payload: payload(lsn) };
            assert_eq!(wal.append(record.epoch, &record.payload).unwrap(), lsn);
            record
        })
        .collect()
}

/// Segment files in `dir`, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with("wal-") && name.ends_with(".log") && name.len() == 28
        })
        .collect();
    files.sort();
    files
}

pub fn segment_name(first_lsn: u64) -> String {
    format!("wal-{first_lsn:020}.log")
}
