//! Crash tails: a log cut or bit-flipped anywhere in its last segment loses exactly the damaged
//! record at the tail and keeps appending after it; damage with valid records behind it, or in
//! a segment that is not the last, is refused.

mod common;

use common::{fast, fill, open, segment_name, segments, try_open};
use std::fs;
use std::path::{Path, PathBuf};
use tempfile::TempDir;
use vdb_wal::record::encoded_len;
use vdb_wal::{FsyncPolicy, WalError, WalOptions, WalRecord};

/// Records 1..=6 in the first segment and 7..=14 in the last.
const FIRST_SEGMENT: u64 = 6;
const TOTAL: u64 = 14;

struct Fixture {
    template: TempDir,
    records: Vec<WalRecord>,
}

impl Fixture {
    fn new() -> Fixture {
        let template = tempfile::tempdir().unwrap();
        let (mut wal, _, _) = open(template.path(), fast(1 << 20), 0);
        let mut records = fill(&mut wal, FIRST_SEGMENT);
        wal.roll().unwrap();
        records.extend(fill(&mut wal, TOTAL - FIRST_SEGMENT));
        wal.sync().unwrap();
        assert_eq!(segments(template.path()).len(), 2);
        Fixture { template, records }
    }

    /// A fresh copy of the log to damage.
    fn copy(&self) -> TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in segments(self.template.path()) {
            fs::copy(&file, dir.path().join(file.file_name().unwrap())).unwrap();
        }
        dir
    }

    fn first_segment(dir: &Path) -> PathBuf {
        dir.join(segment_name(1))
    }

    fn last_segment(dir: &Path) -> PathBuf {
        dir.join(segment_name(FIRST_SEGMENT + 1))
    }

    /// (lsn, start offset, frame length) of each record of the segment starting at `first`.
    fn frames(&self, first: u64, last: u64) -> Vec<(u64, u64, u64)> {
        let mut at = 0;
        (first..=last)
            .map(|lsn| {
                let len = encoded_len(self.records[lsn as usize - 1].payload.len()) as u64;
                at += len;
                (lsn, at - len, len)
            })
            .collect()
    }

    fn last_frames(&self) -> Vec<(u64, u64, u64)> {
        self.frames(FIRST_SEGMENT + 1, TOTAL)
    }
}

fn flip(path: &Path, offset: u64, bit: u32) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 1 << bit;
    fs::write(path, bytes).unwrap();
}

fn cut(path: &Path, len: u64) {
    fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

/// Opens a damaged copy and checks that exactly the records before `torn_lsn` survive, that the
/// torn record at `torn_at` was cut and reported, and that the log carries on after it.
fn assert_torn_tail_dropped(f: &Fixture, dir: &Path, torn_lsn: u64, torn_at: u64, case: &str) {
    let segment = Fixture::last_segment(dir);
    let file_len = fs::metadata(&segment).unwrap().len();
    let (wal, report, replayed) = try_open(dir, fast(1 << 20), 0)
        .unwrap_or_else(|e| panic!("{case}: a torn tail must not fail open: {e}"));
    assert_eq!(replayed, f.records[..torn_lsn as usize - 1], "{case}");
    let torn = report.torn_tail_dropped.unwrap_or_else(|| panic!("{case}: no torn tail reported"));
    assert_eq!((torn.segment.as_path(), torn.offset), (segment.as_path(), torn_at), "{case}");
    assert_eq!(torn.bytes_dropped, file_len - torn_at, "{case}");
    assert!(!torn.reason.is_empty(), "{case}");
    assert_eq!(fs::metadata(&segment).unwrap().len(), torn_at, "{case}: file not cut");
    assert_eq!(wal.last_lsn(), torn_lsn - 1, "{case}");
    drop(wal);

    // The repair is complete: appending continues at the torn record's LSN, durably.
    let always = WalOptions { fsync: FsyncPolicy::Always, segment_bytes: 1 << 20 };
    let (mut wal, report, _) = open(dir, always.clone(), 0);
    assert_eq!(report.torn_tail_dropped, None, "{case}: repair was not durable");
    assert_eq!(wal.append(99, b"after the tear").unwrap(), torn_lsn, "{case}");
    drop(wal);
    let (_, report, replayed) = open(dir, always, 0);
    assert_eq!(report.torn_tail_dropped, None, "{case}");
    assert_eq!(replayed.len() as u64, torn_lsn, "{case}");
    assert_eq!(replayed[..torn_lsn as usize - 1], f.records[..torn_lsn as usize - 1], "{case}");
    let last = replayed.last().unwrap();
    assert_eq!(
        (last.lsn, last.epoch, last.payload.as_slice()),
        (torn_lsn, 99, &b"after the tear"[..])
    );
}

/// Opens a damaged copy and checks that it is refused as corrupt at `offset` of `segment`,
/// without touching any file.
fn assert_refused_as_corrupt(dir: &Path, segment: &Path, offset: u64, case: &str) {
    let before: Vec<Vec<u8>> = segments(dir).iter().map(|p| fs::read(p).unwrap()).collect();
    match try_open(dir, fast(1 << 20), 0) {
        Err(WalError::Corrupt { segment: s, offset: o, reason }) => {
            assert_eq!((s.as_path(), o), (segment, offset), "{case}: {reason}");
        }
        Err(e) => panic!("{case}: expected corrupt, got {e}"),
        Ok((_, report, replayed)) => panic!(
            "{case}: corrupt log was loaded ({} records, torn {:?})",
            replayed.len(),
            report.torn_tail_dropped
        ),
    }
    let after: Vec<Vec<u8>> = segments(dir).iter().map(|p| fs::read(p).unwrap()).collect();
    assert!(before == after, "{case}: a refused log was modified");
}

#[test]
fn cutting_the_last_segment_anywhere_drops_only_the_torn_record() {
    let f = Fixture::new();
    let frames = f.last_frames();
    let end = frames.last().map(|&(_, at, len)| at + len).unwrap();
    let (mut torn, mut clean) = (0, 0);
    for offset in 0..end {
        let dir = f.copy();
        cut(&Fixture::last_segment(dir.path()), offset);
        let &(lsn, at, _) = frames.iter().find(|&&(_, at, len)| offset < at + len).unwrap();
        if offset == at {
            // A cut between records leaves a clean, shorter log.
            let (mut wal, report, replayed) = open(dir.path(), fast(1 << 20), 0);
            assert_eq!(
                (replayed.as_slice(), report.torn_tail_dropped),
                (&f.records[..lsn as usize - 1], None)
            );
            assert_eq!(wal.append(1, b"x").unwrap(), lsn);
            clean += 1;
        } else {
            assert_torn_tail_dropped(&f, dir.path(), lsn, at, &format!("cut at {offset}"));
            torn += 1;
        }
    }
    println!("checked {} cut offsets in the last segment ({torn} torn, {clean} clean)", end);
    assert_eq!(torn + clean, end);
    assert!(torn > 8 * 24);
}

#[test]
fn flipping_any_bit_of_the_last_record_drops_it() {
    let f = Fixture::new();
    let &(lsn, at, len) = f.last_frames().last().unwrap();
    let mut checked = 0;
    for offset in at..at + len {
        // Every bit of the header fields (len, crc, lsn, epoch); one bit per payload byte.
        let bits =
            if offset - at < 24 { 0..8 } else { (offset % 8) as u32..(offset % 8) as u32 + 1 };
        for bit in bits {
            let dir = f.copy();
            flip(&Fixture::last_segment(dir.path()), offset, bit);
            assert_torn_tail_dropped(&f, dir.path(), lsn, at, &format!("bit {bit} at {offset}"));
            checked += 1;
        }
    }
    println!("checked {checked} bit flips in the last record ({len} bytes)");
    assert!(checked >= 24 * 8);
}

#[test]
fn flipping_a_bit_before_the_last_record_is_refused() {
    let f = Fixture::new();
    let frames = f.last_frames();
    let mut checked = 0;
    for &(lsn, at, len) in &frames[..frames.len() - 1] {
        for offset in at..at + len {
            let dir = f.copy();
            let segment = Fixture::last_segment(dir.path());
            flip(&segment, offset, (offset % 8) as u32);
            assert_refused_as_corrupt(
                dir.path(),
                &segment,
                at,
                &format!("lsn {lsn}, byte {offset}"),
            );
            checked += 1;
        }
    }
    println!("checked {checked} bit flips in records followed by valid ones");
    assert!(checked > 6 * 24);
}

#[test]
fn damage_in_a_segment_that_is_not_the_last_is_refused() {
    let f = Fixture::new();
    let frames = f.frames(1, FIRST_SEGMENT);
    let (mut cuts, mut flips) = (0, 0);
    for &(lsn, at, len) in &frames {
        for offset in at..at + len {
            let dir = f.copy();
            let segment = Fixture::first_segment(dir.path());
            flip(&segment, offset, (offset % 8) as u32);
            assert_refused_as_corrupt(
                dir.path(),
                &segment,
                at,
                &format!("flip lsn {lsn} @{offset}"),
            );
            flips += 1;
        }
    }
    // Cutting the first segment inside its last record: a torn write there is not a tail.
    let &(lsn, at, len) = frames.last().unwrap();
    for offset in at + 1..at + len {
        let dir = f.copy();
        let segment = Fixture::first_segment(dir.path());
        cut(&segment, offset);
        assert_refused_as_corrupt(dir.path(), &segment, at, &format!("cut lsn {lsn} @{offset}"));
        cuts += 1;
    }
    // Cutting it between records loses whole records: the next segment no longer follows.
    let dir = f.copy();
    cut(&Fixture::first_segment(dir.path()), at);
    let err = try_open(dir.path(), fast(1 << 20), 0).map(|o| o.1).unwrap_err();
    assert!(
        matches!(err, WalError::Gap { expected, found, .. } if expected == lsn && found == lsn + 1),
        "{err}"
    );
    println!("checked {flips} bit flips and {cuts} cuts in a segment that is not the last");
}

#[test]
fn garbage_after_the_last_record_is_a_torn_tail() {
    let f = Fixture::new();
    let frames = f.last_frames();
    let end = frames.last().map(|&(_, at, len)| at + len).unwrap();
    let mut partial_header = 40u32.to_le_bytes().to_vec();
    partial_header.extend_from_slice(&[0xab; 5]);
    let garbage: [(&str, Vec<u8>); 4] = [
        ("zeros", vec![0; 4096]),
        ("ones", vec![0xff; 100]),
        ("noise", (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()),
        ("partial header", partial_header),
    ];
    for (name, bytes) in garbage {
        let dir = f.copy();
        let segment = Fixture::last_segment(dir.path());
        let mut data = fs::read(&segment).unwrap();
        data.extend_from_slice(&bytes);
        fs::write(&segment, data).unwrap();
        assert_torn_tail_dropped(&f, dir.path(), TOTAL + 1, end, name);
    }
}

#[test]
fn a_valid_record_behind_garbage_means_corruption() {
    let f = Fixture::new();
    let &(_, at, len) = f.last_frames().last().unwrap();
    let dir = f.copy();
    let segment = Fixture::last_segment(dir.path());
    // The last record zeroed out, and the record after it intact: not a torn write.
    let mut data = fs::read(&segment).unwrap();
    data[at as usize..].fill(0);
    let mut next = Vec::new();
    vdb_wal::record::encode(&mut next, TOTAL + 1, 1, b"written after");
    data.extend_from_slice(&next);
    fs::write(&segment, &data).unwrap();
    assert_refused_as_corrupt(dir.path(), &segment, at, "zeroed record");

    // A stale record (an LSN the log already has) behind the damage is no reason to refuse.
    let dir = f.copy();
    let segment = Fixture::last_segment(dir.path());
    let mut data = fs::read(&segment).unwrap();
    data.truncate((at + len - 3) as usize);
    let mut stale = Vec::new();
    vdb_wal::record::encode(&mut stale, 2, 1, b"old");
    data.extend_from_slice(&stale);
    fs::write(&segment, &data).unwrap();
    assert_torn_tail_dropped(&f, dir.path(), TOTAL, at, "stale record after the tear");
}

#[test]
fn a_torn_first_record_leaves_an_empty_last_segment_that_keeps_working() {
    let f = Fixture::new();
    let dir = f.copy();
    cut(&Fixture::last_segment(dir.path()), 5);
    assert_torn_tail_dropped(&f, dir.path(), FIRST_SEGMENT + 1, 0, "first record torn");
    assert_eq!(segments(dir.path()).len(), 2);
}
