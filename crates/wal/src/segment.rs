//! One segment file: record encoding, scanning, and the appending handle.

use crate::{WalError, WalRecord, BODY_PREFIX, HEADER, MAX_BODY};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends one framed record to `out`.
pub fn encode(out: &mut Vec<u8>, lsn: u64, epoch: u64, payload: &[u8]) {
    let body_len = BODY_PREFIX + payload.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Where a scan stopped on a bad record.
pub struct Bad {
    pub offset: usize,
    pub reason: String,
}

pub struct Scan {
    pub records: Vec<WalRecord>,
    /// Offset just past the last good record.
    pub end: usize,
    pub bad: Option<Bad>,
}

/// Decodes the record at `at`, or says why it cannot.
fn decode_at(bytes: &[u8], at: usize) -> Result<(WalRecord, usize), String> {
    let rest = &bytes[at..];
    if rest.len() < HEADER {
        return Err(format!("incomplete header ({} bytes)", rest.len()));
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    if !(BODY_PREFIX..=MAX_BODY).contains(&len) {
        return Err(format!("implausible record length {len}"));
    }
    if rest.len() < HEADER + len {
        return Err(format!(
            "incomplete record: {len} bytes announced, {} present",
            rest.len() - HEADER
        ));
    }
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    let body = &rest[HEADER..HEADER + len];
    if crc32c::crc32c(body) != crc {
        return Err("checksum mismatch".into());
    }
    let lsn = u64::from_le_bytes(body[0..8].try_into().expect("8 bytes"));
    let epoch = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
    Ok((WalRecord { lsn, epoch, payload: body[BODY_PREFIX..].to_vec() }, HEADER + len))
}

/// Reads records from the start until the end or the first bad one.
pub fn scan(bytes: &[u8]) -> Scan {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match decode_at(bytes, at) {
            Ok((r, n)) => {
                records.push(r);
                at += n;
            }
            Err(reason) => return Scan { records, end: at, bad: Some(Bad { offset: at, reason }) },
        }
    }
    Scan { records, end: at, bad: None }
}

/// True when a valid record with an LSN after `last_good` starts somewhere after `bad_at`:
/// then the damage is in the middle of the log, not a torn tail.
pub fn valid_record_after(bytes: &[u8], bad_at: usize, last_good: Option<u64>) -> bool {
    (bad_at + 1..bytes.len().saturating_sub(HEADER + BODY_PREFIX - 1))
        .any(|at| matches!(decode_at(bytes, at), Ok((r, _)) if last_good.is_none_or(|l| r.lsn > l)))
}

/// The first LSN encoded in a segment's file name.
pub fn first_lsn_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("wal-")?.strip_suffix(".log")?.parse().ok()
}

/// The segment being appended to.
pub struct Segment {
    pub path: PathBuf,
    pub file: File,
    pub first_lsn: u64,
    pub len: u64,
}

impl Segment {
    /// Creates an empty segment whose first record will be `first_lsn`, durably.
    pub fn create(dir: &Path, first_lsn: u64) -> Result<Segment, WalError> {
        let path = dir.join(format!("wal-{first_lsn:020}.log"));
        let file = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
        file.sync_all()?;
        File::open(dir)?.sync_all()?;
        Ok(Segment { path, file, first_lsn, len: 0 })
    }

    /// Reopens an existing segment for appending after `len` valid bytes.
    pub fn open_append(path: &Path, first_lsn: u64, len: u64) -> Result<Segment, WalError> {
        let file = OpenOptions::new().append(true).open(path)?;
        debug_assert_eq!(fs::metadata(path)?.len(), len);
        Ok(Segment { path: path.to_path_buf(), file, first_lsn, len })
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_scans() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, 7, b"hello");
        encode(&mut buf, 2, 7, b"");
        let s = scan(&buf);
        assert!(s.bad.is_none());
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.records[0], WalRecord { lsn: 1, epoch: 7, payload: b"hello".to_vec() });
        assert_eq!(first_lsn_of(Path::new("/x/wal-00000000000000000042.log")), Some(42));
        assert_eq!(first_lsn_of(Path::new("/x/other.log")), None);
    }
}
