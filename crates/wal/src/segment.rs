//! Segment files: naming, durable creation, appending, validation on open, and streaming reads.

use crate::record::{self, DecodeError, HEADER_LEN};
use crate::{TornTail, WalError, WalRecord};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

const PREFIX: &str = "wal-";
const SUFFIX: &str = ".log";
const DIGITS: usize = 20;

/// The file name of the segment whose first record is `first_lsn`.
pub fn file_name(first_lsn: u64) -> String {
    format!("{PREFIX}{first_lsn:020}{SUFFIX}")
}

/// The first LSN a segment file name announces, or `None` for any other file.
pub fn parse_name(name: &OsStr) -> Option<u64> {
    let digits = name.to_str()?.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, oldest first. Other files are left alone.
pub fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(first_lsn) = parse_name(&entry.file_name()) {
            segments.push((first_lsn, entry.path()));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Makes creations, deletions and renames in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segment being appended to.
#[derive(Debug)]
pub struct ActiveSegment {
    pub path: PathBuf,
    pub file: File,
    pub first_lsn: u64,
    /// Bytes of whole records in the file; the file is never longer while the log is healthy.
    pub len: u64,
}

impl ActiveSegment {
    /// Creates an empty segment whose first record will be `first_lsn`, and makes both the file
    /// and its directory entry durable so that a crash cannot lose the segment under records
    /// that were later fsynced into it.
    pub fn create(dir: &Path, first_lsn: u64) -> io::Result<ActiveSegment> {
        let path = dir.join(file_name(first_lsn));
        // create_new: an existing file under this name would hold records; never clobber it.
        let file = OpenOptions::new().append(true).create_new(true).open(&path)?;
        file.sync_all()?;
        sync_dir(dir)?;
        Ok(ActiveSegment { path, file, first_lsn, len: 0 })
    }

    /// Reopens a validated segment for appending after its `len` bytes of whole records.
    pub fn reopen(path: &Path, first_lsn: u64, len: u64) -> io::Result<ActiveSegment> {
        let file = OpenOptions::new().append(true).open(path)?;
        let on_disk = file.metadata()?.len();
        if on_disk != len {
            return Err(io::Error::other(format!(
                "segment {} is {on_disk} bytes, expected {len}",
                path.display()
            )));
        }
        Ok(ActiveSegment { path: path.to_path_buf(), file, first_lsn, len })
    }

    /// Appends `bytes` with a single write. If the write fails part-way, the partial frame is cut
    /// off again so that later appends do not land behind garbage (which recovery would have to
    /// refuse as mid-log corruption). Returns the write error, and whether the cut failed too.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), (io::Error, Option<io::Error>)> {
        match self.file.write_all(bytes) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => Err((e, self.file.set_len(self.len).err())),
        }
    }
}

/// What validating one segment file found.
#[derive(Debug)]
pub struct SegmentCheck {
    pub path: PathBuf,
    /// The first LSN the file name announces.
    pub first_lsn: u64,
    /// Valid records in the file, numbered `first_lsn..first_lsn + records`.
    pub records: u64,
    /// Bytes of valid records; a torn tail starts here.
    pub valid_len: u64,
    /// A torn tail that the caller must cut off.
    pub torn: Option<TornTail>,
}

impl SegmentCheck {
    /// The LSN that follows this segment's records.
    pub fn end_lsn(&self) -> u64 {
        self.first_lsn + self.records
    }
}

/// Reads a whole segment and checks every record: framing, checksum, and LSNs counting up by
/// one from the file name's. A bad record is a torn tail only in the last segment and only if
/// no plausible valid record follows it; anything else is corruption.
pub fn check(path: &Path, first_lsn: u64, is_last: bool) -> Result<SegmentCheck, WalError> {
    let corrupt = |offset: usize, reason: String| WalError::Corrupt {
        segment: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    if first_lsn == 0 {
        return Err(corrupt(0, "segment name announces lsn 0; lsns start at 1".into()));
    }
    let bytes = fs::read(path)?;
    let mut at = 0;
    let mut next = first_lsn;
    let mut torn = None;
    while at < bytes.len() {
        match record::decode(&bytes[at..]) {
            Ok((r, n)) => {
                if r.lsn != next {
                    return Err(WalError::Gap {
                        segment: path.to_path_buf(),
                        offset: at as u64,
                        expected: next,
                        found: r.lsn,
                    });
                }
                next += 1;
                at += n;
            }
            Err(e) => {
                if !is_last {
                    return Err(corrupt(at, format!("{e} in a segment that is not the last")));
                }
                if let Some((found_at, lsn)) = record::find_valid_after(&bytes, at, next - 1) {
                    return Err(corrupt(
                        at,
                        format!("{e}, yet a valid record (lsn {lsn}) follows at offset {found_at}"),
                    ));
                }
                torn = Some(TornTail {
                    segment: path.to_path_buf(),
                    offset: at as u64,
                    bytes_dropped: (bytes.len() - at) as u64,
                    reason: e.to_string(),
                });
                break;
            }
        }
    }
    Ok(SegmentCheck {
        path: path.to_path_buf(),
        first_lsn,
        records: next - first_lsn,
        valid_len: at as u64,
        torn,
    })
}

/// Cuts a segment back to `len` bytes, durably.
pub fn cut(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

/// Streams the records of one segment, verifying each, up to a known end offset. Used after the
/// segment was validated (replay, replication reads), so anything bad here is corruption.
pub struct SegmentReader {
    path: PathBuf,
    reader: BufReader<File>,
    offset: u64,
    end: u64,
    body: Vec<u8>,
}

impl SegmentReader {
    pub fn open(path: &Path, end: u64) -> io::Result<SegmentReader> {
        let reader = BufReader::with_capacity(256 << 10, File::open(path)?);
        Ok(SegmentReader { path: path.to_path_buf(), reader, offset: 0, end, body: Vec::new() })
    }

    pub fn next_record(&mut self) -> Result<Option<WalRecord>, WalError> {
        let remaining = self.end.saturating_sub(self.offset);
        if remaining == 0 {
            return Ok(None);
        }
        let corrupt = |offset: u64, e: DecodeError| WalError::Corrupt {
            segment: self.path.clone(),
            offset,
            reason: e.to_string(),
        };
        if remaining < HEADER_LEN as u64 {
            return Err(corrupt(
                self.offset,
                DecodeError::ShortHeader { have: remaining as usize },
            ));
        }
        let mut header = [0; HEADER_LEN];
        self.reader.read_exact(&mut header)?;
        let (len, crc) = record::parse_header(&header).map_err(|e| corrupt(self.offset, e))?;
        let have = remaining - HEADER_LEN as u64;
        if have < len as u64 {
            return Err(corrupt(
                self.offset,
                DecodeError::ShortBody { want: len, have: have as usize },
            ));
        }
        self.body.resize(len, 0);
        self.reader.read_exact(&mut self.body)?;
        let record = record::decode_body(&self.body, crc).map_err(|e| corrupt(self.offset, e))?;
        let record = record.to_owned();
        self.offset += (HEADER_LEN + len) as u64;
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_twenty_digit_lsns() {
        assert_eq!(file_name(42), "wal-00000000000000000042.log");
        assert_eq!(parse_name(OsStr::new("wal-00000000000000000042.log")), Some(42));
        assert_eq!(parse_name(OsStr::new(&file_name(u64::MAX))), Some(u64::MAX));
        for other in ["wal-42.log", "wal-0000000000000000004x.log", "wal-00000000000000000042.tmp"]
        {
            assert_eq!(parse_name(OsStr::new(other)), None, "{other}");
        }
    }
}
