//! WAL tail tests: truncated and bit-flipped tails at every offset of the last records must be
//! dropped (earlier records kept, appends continue); damage followed by valid records, or in an
//! older segment, must be refused.

use std::fs;
use std::path::{Path, PathBuf};
use vdb_wal::{FsyncPolicy, Wal, WalError, WalOptions, WalRecord};

fn opts() -> WalOptions {
    WalOptions { fsync: FsyncPolicy::Never, segment_bytes: 1 << 20 }
}

fn open(dir: &Path) -> Result<(Wal, Vec<WalRecord>, vdb_wal::OpenReport), WalError> {
    let mut got = Vec::new();
    let (wal, report) = Wal::open(dir, opts(), 0, |r| {
        got.push(r);
        Ok::<(), String>(())
    })?;
    Ok((wal, got, report))
}

fn payload(i: u64) -> Vec<u8> {
    format!("record-{i}-{}", "x".repeat((i % 13) as usize)).into_bytes()
}

/// Writes `n` records into a fresh dir; returns the dir, the segment and each record's offset.
fn setup(n: u64) -> (tempfile::TempDir, PathBuf, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let mut offsets = Vec::new();
    {
        let (mut wal, _, _) = open(dir.path()).unwrap();
        for i in 1..=n {
            offsets.push(wal.size_bytes());
            assert_eq!(wal.append(3, &payload(i)).unwrap(), i);
        }
        wal.sync().unwrap();
    }
    let seg = fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
    (dir, seg, offsets)
}

fn copy(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        fs::copy(&p, to.path().join(p.file_name().unwrap())).unwrap();
    }
    to
}

#[test]
fn truncated_tails_are_dropped_at_every_offset() {
    let (dir, seg, offsets) = setup(20);
    let full = fs::read(&seg).unwrap();
    let last_start = offsets[offsets.len() - 3] as usize;
    let mut checked = 0;
    for cut in last_start..full.len() {
        let d = copy(dir.path());
        let s = d.path().join(seg.file_name().unwrap());
        fs::write(&s, &full[..cut]).unwrap();
        let (mut wal, got, report) = open(d.path()).unwrap();
        let whole = offsets.iter().filter(|&&o| (o as usize) < cut).count() as u64;
        let complete = if offsets.contains(&(cut as u64)) { whole } else { whole - 1 };
        assert_eq!(got.len() as u64, complete, "cut at {cut}");
        assert_eq!(report.torn_tail.is_some(), !offsets.contains(&(cut as u64)), "cut at {cut}");
        assert_eq!(wal.append(3, b"after").unwrap(), complete + 1);
        wal.sync().unwrap();
        drop(wal);
        let (_, again, report) = open(d.path()).unwrap();
        assert_eq!(again.len() as u64, complete + 1);
        assert_eq!(again.last().unwrap().payload, b"after");
        assert!(report.torn_tail.is_none());
        checked += 1;
    }
    println!("truncation offsets checked: {checked}");
}

#[test]
fn bit_flips_in_the_last_record_drop_only_it() {
    let (dir, seg, offsets) = setup(10);
    let full = fs::read(&seg).unwrap();
    let last = *offsets.last().unwrap() as usize;
    let mut checked = 0;
    for at in last..full.len() {
        for bit in [0u8, 3, 7] {
            let d = copy(dir.path());
            let mut bytes = full.clone();
            bytes[at] ^= 1 << bit;
            fs::write(d.path().join(seg.file_name().unwrap()), &bytes).unwrap();
            let (_, got, report) = open(d.path()).unwrap();
            assert_eq!(got.len(), 9, "flip at {at} bit {bit}");
            assert!(report.torn_tail.is_some());
            checked += 1;
        }
    }
    println!("bit flips checked: {checked}");
}

#[test]
fn damage_in_the_middle_is_refused() {
    let (dir, seg, offsets) = setup(10);
    let full = fs::read(&seg).unwrap();
    let mut checked = 0;
    for rec in 0..8 {
        let start = offsets[rec] as usize;
        let end = offsets[rec + 1] as usize;
        for at in (start..end).step_by(3) {
            let d = copy(dir.path());
            let mut bytes = full.clone();
            bytes[at] ^= 0x10;
            fs::write(d.path().join(seg.file_name().unwrap()), &bytes).unwrap();
            let err = open(d.path()).err().unwrap_or_else(|| panic!("flip at {at} loaded"));
            assert!(matches!(err, WalError::Corrupt { .. }), "{err}");
            checked += 1;
        }
    }
    println!("mid-log corruptions refused: {checked}");
}

#[test]
fn damage_in_an_older_segment_is_refused_and_gaps_too() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, _, _) = open(dir.path()).unwrap();
        for i in 1..=5 {
            wal.append(1, &payload(i)).unwrap();
        }
        wal.roll().unwrap();
        for i in 6..=10 {
            wal.append(1, &payload(i)).unwrap();
        }
        wal.sync().unwrap();
    }
    let mut segs: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    segs.sort();
    assert_eq!(segs.len(), 2);
    let d = copy(dir.path());
    let first = d.path().join(segs[0].file_name().unwrap());
    let mut bytes = fs::read(&first).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 1;
    fs::write(&first, bytes).unwrap();
    assert!(matches!(open(d.path()), Err(WalError::Corrupt { .. })));

    // Removing a middle segment leaves a gap.
    let d = copy(dir.path());
    fs::remove_file(d.path().join(segs[0].file_name().unwrap())).unwrap();
    let (_, got, _) = open(d.path()).unwrap();
    assert_eq!(got.first().unwrap().lsn, 6, "a log starting later is fine (snapshot covers it)");
}

#[test]
fn snapshot_truncation_and_catch_up_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(dir.path()).unwrap();
    for i in 1..=10 {
        wal.append(2, &payload(i)).unwrap();
        if i % 3 == 0 {
            wal.roll().unwrap();
        }
    }
    assert_eq!(
        wal.read_from(4, 3).unwrap().iter().map(|r| r.lsn).collect::<Vec<_>>(),
        vec![4, 5, 6]
    );
    wal.truncate_through(7).unwrap();
    assert!(matches!(wal.read_from(2, 10), Err(WalError::Truncated(2))));
    assert_eq!(wal.first_lsn(), Some(7));
    wal.truncate_through(10).unwrap();
    assert_eq!(wal.first_lsn(), None);
    drop(wal);
    // After every segment is gone, LSNs continue after the snapshot's.
    let (mut wal, got, _) = Wal::open(dir.path(), opts(), 10, |_| Ok::<(), String>(()))
        .map(|(w, r)| (w, Vec::<WalRecord>::new(), r))
        .unwrap();
    assert!(got.is_empty());
    assert_eq!(wal.append(2, b"x").unwrap(), 11);
    let r = wal.append_batch(2, &[b"a", b"b"]).unwrap();
    assert_eq!(r, 12..=13);
    drop(wal);
    let (_, got, report) = Wal::open(dir.path(), opts(), 10, |_| Ok::<(), String>(()))
        .map(|(w, r)| (w, (), r))
        .unwrap();
    let _ = got;
    assert_eq!(report.last_lsn, 13);
    assert_eq!(report.records_replayed, 3);
}

#[test]
fn records_replay_after_the_snapshot_lsn_only() {
    let (dir, _, _) = setup(10);
    let mut seen = Vec::new();
    let (mut wal, report) = Wal::open(dir.path(), opts(), 6, |r| {
        seen.push(r.lsn);
        Ok::<(), String>(())
    })
    .unwrap();
    assert_eq!(seen, vec![7, 8, 9, 10]);
    assert_eq!(report.records_replayed, 4);
    assert_eq!(wal.append(1, b"y").unwrap(), 11);
}
