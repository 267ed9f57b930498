//! Behaviour of the public API: appends, reopening, rolling, truncation, catch-up reads,
//! snapshot LSNs, fsync policies and the errors open refuses a log with.

mod common;

use common::{fast, fill, open, payload, segment_name, segments, try_open};
use std::fs;
use std::time::Duration;
use vdb_wal::record::{encoded_len, MAX_PAYLOAD_LEN};
use vdb_wal::{FsyncPolicy, Wal, WalError, WalOptions, WalRecord};

#[test]
fn new_log_creates_its_directory_and_starts_at_lsn_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/wal");
    let (mut wal, report, replayed) = open(&dir, WalOptions::default(), 0);
    assert!(replayed.is_empty());
    assert_eq!((report.last_lsn, report.records_replayed, report.torn_tail_dropped), (0, 0, None));
    assert_eq!((wal.last_lsn(), wal.first_lsn(), wal.size_bytes()), (0, None, 0));
    assert_eq!(wal.append(1, b"first").unwrap(), 1);
    assert_eq!(wal.first_lsn(), Some(1));
    assert_eq!(segments(&dir), vec![dir.join(segment_name(1))]);
}

#[test]
fn append_then_reopen_replays_every_record_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = WalOptions::default();
    let (mut wal, _, _) = open(tmp.path(), opts.clone(), 0);
    let written = fill(&mut wal, 40);
    assert!(!wal.is_dirty(), "fsync always leaves nothing unsynced");
    assert_eq!(wal.synced_lsn(), 40);
    drop(wal);

    let (mut wal, report, replayed) = open(tmp.path(), opts.clone(), 0);
    assert_eq!(replayed, written);
    assert_eq!(
        (report.records_replayed, report.last_lsn, report.torn_tail_dropped),
        (40, 40, None)
    );
    assert_eq!(wal.size_bytes(), written.iter().map(|r| encoded_len(r.payload.len()) as u64).sum());
    assert_eq!(wal.append(9, b"after reopen").unwrap(), 41);
    drop(wal);

    let (_, _, replayed) = open(tmp.path(), opts, 0);
    assert_eq!(replayed.len(), 41);
    assert_eq!(replayed[40], WalRecord { lsn: 41, epoch: 9, payload: b"after reopen".to_vec() });
}

#[test]
fn segments_roll_once_they_reach_the_size_limit() {
    let tmp = tempfile::tempdir().unwrap();
    // Frames of 74 bytes: a segment reaches 200 bytes with its third record.
    let opts = fast(200);
    let (mut wal, _, _) = open(tmp.path(), opts.clone(), 0);
    for lsn in 1..=10 {
        assert_eq!(wal.append(1, &[lsn as u8; 50]).unwrap(), lsn);
    }
    wal.sync().unwrap();
    let files = segments(tmp.path());
    let names: Vec<_> = [1, 4, 7, 10].map(|l| tmp.path().join(segment_name(l))).to_vec();
    assert_eq!(files, names);
    let lens: Vec<u64> = files.iter().map(|f| fs::metadata(f).unwrap().len()).collect();
    assert_eq!(lens, vec![222, 222, 222, 74]);
    assert_eq!(wal.size_bytes(), 740);
    assert_eq!(wal.segment_count(), 4);
    drop(wal);

    let (wal, _, replayed) = open(tmp.path(), opts, 0);
    assert_eq!(replayed.iter().map(|r| r.lsn).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert!(replayed.iter().all(|r| r.payload == vec![r.lsn as u8; 50]));
    assert_eq!((wal.segment_count(), wal.size_bytes()), (4, 740));
}

#[test]
fn roll_starts_a_new_segment_and_does_nothing_on_an_empty_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(tmp.path(), fast(1 << 20), 0);
    wal.roll().unwrap();
    assert_eq!(segments(tmp.path()).len(), 1, "rolling an empty segment is a no-op");
    fill(&mut wal, 3);
    assert!(wal.is_dirty());
    wal.roll().unwrap();
    assert!(!wal.is_dirty(), "a segment is fsynced before it is closed");
    wal.roll().unwrap();
    fill(&mut wal, 2);
    let expected: Vec<_> = [1, 4].map(|l| tmp.path().join(segment_name(l))).to_vec();
    assert_eq!(segments(tmp.path()), expected);
    wal.sync().unwrap();
    drop(wal);
    let (_, _, replayed) = open(tmp.path(), fast(1 << 20), 0);
    assert_eq!(replayed.len(), 5);
}

#[test]
fn truncate_through_deletes_only_fully_covered_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(tmp.path(), fast(200), 0);
    for _ in 0..10 {
        wal.append(1, &[7; 50]).unwrap();
    }
    // Segments hold 1-3, 4-6, 7-9 and 10.
    wal.truncate_through(5).unwrap();
    assert_eq!(wal.first_lsn(), Some(4));
    assert_eq!(segments(tmp.path())[0], tmp.path().join(segment_name(4)));
    wal.truncate_through(9).unwrap();
    assert_eq!(wal.first_lsn(), Some(10));
    assert_eq!(wal.size_bytes(), 74);
    // The active segment is entirely covered: it is closed and removed, the log stays usable.
    wal.truncate_through(10).unwrap();
    assert_eq!((wal.first_lsn(), wal.last_lsn(), wal.size_bytes()), (None, 10, 0));
    assert_eq!(segments(tmp.path()), vec![tmp.path().join(segment_name(11))]);
    assert_eq!(wal.append(2, b"next").unwrap(), 11);
    wal.sync().unwrap();
    drop(wal);

    let (wal, report, replayed) = open(tmp.path(), fast(200), 10);
    assert_eq!(replayed, vec![WalRecord { lsn: 11, epoch: 2, payload: b"next".to_vec() }]);
    assert_eq!((report.last_lsn, wal.first_lsn()), (11, Some(11)));
}

#[test]
fn truncate_through_past_the_last_record_moves_the_next_lsn() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(tmp.path(), fast(1 << 20), 0);
    fill(&mut wal, 3);
    wal.truncate_through(20).unwrap();
    assert_eq!((wal.last_lsn(), wal.first_lsn()), (20, None));
    assert_eq!(segments(tmp.path()), vec![tmp.path().join(segment_name(21))]);
    // Twice in a row: the empty active segment is replaced, not left behind.
    wal.truncate_through(30).unwrap();
    assert_eq!(segments(tmp.path()), vec![tmp.path().join(segment_name(31))]);
    assert_eq!(wal.append(1, b"x").unwrap(), 31);
    wal.sync().unwrap();
    drop(wal);
    let (_, _, replayed) = open(tmp.path(), fast(1 << 20), 30);
    assert_eq!(replayed.iter().map(|r| r.lsn).collect::<Vec<_>>(), vec![31]);
}

#[test]
fn read_from_serves_catch_up_across_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(tmp.path(), fast(300), 0);
    let written = fill(&mut wal, 30);
    assert!(wal.segment_count() > 3);
    assert_eq!(wal.read_from(1, 1000).unwrap(), written);
    assert_eq!(wal.read_from(0, 1000).unwrap(), written, "lsn 0 reads from the start");
    assert_eq!(wal.read_from(5, 3).unwrap(), written[4..7].to_vec());
    assert_eq!(wal.read_from(30, 10).unwrap(), written[29..].to_vec());
    for from in 1..=30 {
        assert_eq!(
            wal.read_from(from, 4).unwrap(),
            written[from as usize - 1..][..4.min(31 - from as usize)]
        );
    }
    assert!(wal.read_from(31, 10).unwrap().is_empty(), "caught up");
    assert!(wal.read_from(5, 0).unwrap().is_empty());

    wal.truncate_through(12).unwrap();
    let first = wal.first_lsn().unwrap();
    assert!(first > 1 && first <= 13);
    match wal.read_from(1, 10) {
        Err(WalError::Truncated { requested: 1, first_available }) => {
            assert_eq!(first_available, Some(first))
        }
        other => panic!("expected truncated, got {other:?}"),
    }
    assert_eq!(wal.read_from(first, 100).unwrap(), written[first as usize - 1..].to_vec());
}

#[test]
fn after_lsn_skips_records_the_snapshot_covers() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(tmp.path(), fast(250), 0);
    let written = fill(&mut wal, 10);
    wal.sync().unwrap();
    drop(wal);
    let (wal, report, replayed) = open(tmp.path(), fast(250), 6);
    assert_eq!(replayed, written[6..].to_vec());
    assert_eq!((report.records_replayed, report.last_lsn, wal.last_lsn()), (4, 10, 10));
    assert_eq!(wal.first_lsn(), Some(1), "covered records stay until truncate_through");
    drop(wal);
    let (mut wal, report, replayed) = open(tmp.path(), fast(250), 10);
    assert!(replayed.is_empty());
    assert_eq!(report.records_replayed, 0);
    assert_eq!(wal.append(1, b"x").unwrap(), 11);
}

#[test]
fn next_lsn_follows_the_snapshot_even_with_every_segment_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(tmp.path(), fast(250), 0);
    fill(&mut wal, 10);
    wal.sync().unwrap();
    drop(wal);
    for file in segments(tmp.path()) {
        fs::remove_file(file).unwrap();
    }
    let (mut wal, report, replayed) = open(tmp.path(), fast(250), 10);
    assert!(replayed.is_empty());
    assert_eq!((report.last_lsn, wal.last_lsn(), wal.first_lsn()), (10, 10, None));
    assert_eq!(wal.append(3, b"eleven").unwrap(), 11);
    wal.sync().unwrap();
    drop(wal);
    let (wal, _, replayed) = open(tmp.path(), fast(250), 10);
    assert_eq!(replayed, vec![WalRecord { lsn: 11, epoch: 3, payload: b"eleven".to_vec() }]);
    assert_eq!(wal.last_lsn(), 11);
}

#[test]
fn a_log_behind_its_snapshot_continues_after_the_snapshot() {
    // Under a relaxed fsync policy the snapshot can hold records the log lost in a crash.
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(tmp.path(), fast(1 << 20), 0);
    fill(&mut wal, 5);
    wal.sync().unwrap();
    drop(wal);
    let (mut wal, report, replayed) = open(tmp.path(), fast(1 << 20), 8);
    assert!(replayed.is_empty());
    assert_eq!((report.last_lsn, wal.first_lsn()), (8, None));
    assert_eq!(segments(tmp.path()), vec![tmp.path().join(segment_name(9))]);
    assert_eq!(wal.append(1, b"nine").unwrap(), 9);
    wal.sync().unwrap();
    drop(wal);
    let (_, _, replayed) = open(tmp.path(), fast(1 << 20), 8);
    assert_eq!(replayed.iter().map(|r| r.lsn).collect::<Vec<_>>(), vec![9]);
    // Without the snapshot, records 1-8 are missing from the log.
    assert!(matches!(
        try_open(tmp.path(), fast(1 << 20), 0),
        Err(WalError::Gap { expected: 1, found: 9, .. })
    ));
}

#[test]
fn a_crash_while_dropping_covered_segments_is_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(tmp.path(), fast(1 << 20), 0);
    fill(&mut wal, 5);
    wal.sync().unwrap();
    drop(wal);
    // What truncate_through(8) leaves if it stops between creating 9 and deleting 1.
    fs::File::create(tmp.path().join(segment_name(9))).unwrap();
    assert!(matches!(
        try_open(tmp.path(), fast(1 << 20), 5),
        Err(WalError::Gap { expected: 6, found: 9, .. })
    ));
    let (mut wal, _, replayed) = open(tmp.path(), fast(1 << 20), 8);
    assert!(replayed.is_empty());
    assert_eq!(segments(tmp.path()), vec![tmp.path().join(segment_name(9))]);
    assert_eq!(wal.append(1, b"x").unwrap(), 9);
}

#[test]
fn a_log_starting_after_the_snapshot_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(tmp.path(), fast(200), 0);
    for _ in 0..10 {
        wal.append(1, &[0; 50]).unwrap();
    }
    wal.truncate_through(5).unwrap();
    drop(wal);
    match try_open(tmp.path(), fast(200), 2) {
        Err(WalError::Gap { expected: 3, found: 4, segment, .. }) => {
            assert_eq!(segment, tmp.path().join(segment_name(4)))
        }
        other => panic!("expected a gap, got {:?}", other.map(|o| o.1)),
    }
    assert_eq!(open(tmp.path(), fast(200), 3).2.len(), 7);
}

#[test]
fn a_missing_or_misnamed_segment_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(tmp.path(), fast(200), 0);
    for _ in 0..10 {
        wal.append(1, &[0; 50]).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    let middle = tmp.path().join(segment_name(4));
    let aside = tmp.path().join("aside");
    fs::rename(&middle, &aside).unwrap();
    let err = try_open(tmp.path(), fast(200), 0).map(|o| o.1).unwrap_err();
    assert!(matches!(err, WalError::Gap { expected: 4, found: 7, .. }), "{err}");
    assert!(err.to_string().starts_with("lsn gap in wal segment"), "{err}");

    // Records 4-6 under a name that claims 5.
    fs::rename(&aside, tmp.path().join(segment_name(5))).unwrap();
    let err = try_open(tmp.path(), fast(200), 0).map(|o| o.1).unwrap_err();
    assert!(matches!(err, WalError::Gap { expected: 5, found: 4, offset: 0, .. }), "{err}");
}

#[test]
fn append_batch_is_one_write_and_one_fsync() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(tmp.path(), WalOptions::default(), 0);
    wal.append(1, b"solo").unwrap();
    let batch: Vec<&[u8]> = vec![b"a", b"", b"ccc", &[9; 100]];
    assert_eq!(wal.append_batch(2, &batch).unwrap(), 2..=5);
    assert!(!wal.is_dirty());
    let before = wal.size_bytes();
    let empty = wal.append_batch(2, &[]).unwrap();
    assert!(empty.is_empty());
    assert_eq!((*empty.start(), wal.size_bytes(), wal.last_lsn()), (6, before, 5));
    drop(wal);
    let (_, _, replayed) = open(tmp.path(), WalOptions::default(), 0);
    let got: Vec<(u64, u64, &[u8])> =
        replayed.iter().map(|r| (r.lsn, r.epoch, r.payload.as_slice())).collect();
    assert_eq!(
        got,
        vec![(1, 1, &b"solo"[..]), (2, 2, b"a"), (3, 2, b""), (4, 2, b"ccc"), (5, 2, &[9; 100])]
    );
}

#[test]
fn interval_and_never_leave_fsync_to_the_owner() {
    for fsync in [FsyncPolicy::Interval(Duration::from_millis(5)), FsyncPolicy::Never] {
        let tmp = tempfile::tempdir().unwrap();
        let opts = WalOptions { fsync: fsync.clone(), segment_bytes: 1 << 20 };
        let (mut wal, _, _) = open(tmp.path(), opts, 0);
        assert!(!wal.is_dirty());
        wal.sync().unwrap();
        wal.append(1, b"x").unwrap();
        wal.append_batch(1, &[b"y", b"z"]).unwrap();
        assert!(wal.is_dirty(), "{fsync:?}: appends must not fsync");
        assert_eq!(wal.synced_lsn(), 0);
        wal.sync().unwrap();
        assert!(!wal.is_dirty());
        assert_eq!(wal.synced_lsn(), 3);
        assert_eq!(wal.options().fsync, fsync);
    }
}

#[test]
fn oversized_payloads_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(tmp.path(), fast(1 << 20), 0);
    wal.append(1, b"ok").unwrap();
    let huge = vec![0u8; MAX_PAYLOAD_LEN + 1];
    let err = wal.append_batch(1, &[b"fine", &huge]).unwrap_err();
    assert!(
        matches!(err, WalError::TooLarge { len, max } if len == huge.len() && max == MAX_PAYLOAD_LEN)
    );
    assert_eq!((wal.last_lsn(), wal.size_bytes()), (1, encoded_len(2) as u64));
    assert_eq!(wal.append(1, b"still fine").unwrap(), 2);
}

#[test]
fn a_failing_apply_fails_open_with_its_lsn() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(tmp.path(), fast(1 << 20), 0);
    fill(&mut wal, 5);
    wal.sync().unwrap();
    drop(wal);
    let mut seen = Vec::new();
    let result = Wal::open(tmp.path(), fast(1 << 20), 1, |r| {
        seen.push(r.lsn);
        if r.lsn == 3 {
            Err("bad op")
        } else {
            Ok(())
        }
    });
    let err = result.map(|o| o.1).unwrap_err();
    assert!(matches!(err, WalError::Apply { lsn: 3, .. }), "{err}");
    assert_eq!(err.to_string(), "replaying wal lsn 3: bad op");
    assert_eq!(seen, vec![2, 3]);
}

#[test]
fn empty_segments_and_foreign_files_are_tolerated() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(tmp.path(), fast(1 << 20), 0);
    fill(&mut wal, 4);
    wal.sync().unwrap();
    drop(wal);
    // A crash right after creating the next segment leaves it empty.
    fs::File::create(tmp.path().join(segment_name(5))).unwrap();
    fs::write(tmp.path().join("notes.txt"), b"not a segment").unwrap();
    fs::write(tmp.path().join("wal-5.log"), b"not a segment name either").unwrap();
    let (mut wal, report, replayed) = open(tmp.path(), fast(1 << 20), 0);
    assert_eq!((replayed.len(), report.torn_tail_dropped), (4, None));
    assert_eq!(wal.append(1, b"five").unwrap(), 5);
    assert_eq!(wal.segment_count(), 2);
    wal.roll().unwrap();
    drop(wal);
    assert!(tmp.path().join("notes.txt").exists());

    // An empty segment before the last one holds nothing and is cleared away.
    fs::remove_file(tmp.path().join(segment_name(6))).unwrap();
    fs::File::create(tmp.path().join(segment_name(3))).unwrap();
    fs::remove_file(tmp.path().join(segment_name(1))).unwrap();
    fs::File::create(tmp.path().join(segment_name(1))).unwrap();
    let (wal, _, replayed) = open(tmp.path(), fast(1 << 20), 4);
    assert_eq!(replayed.iter().map(|r| r.lsn).collect::<Vec<_>>(), vec![5]);
    assert_eq!(segments(tmp.path()), vec![tmp.path().join(segment_name(5))]);
    assert_eq!(wal.first_lsn(), Some(5));
}

#[test]
fn payloads_of_many_sizes_survive() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = open(tmp.path(), fast(64 << 10), 0);
    let sizes = [0usize, 1, 7, 8, 15, 16, 17, 255, 4096, 65_535, 65_536, 300_000];
    for (i, &size) in sizes.iter().enumerate() {
        let bytes: Vec<u8> = (0..size).map(|j| (j * 13 + i) as u8).collect();
        wal.append(i as u64, &bytes).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    let (_, _, replayed) = open(tmp.path(), fast(64 << 10), 0);
    for (i, r) in replayed.iter().enumerate() {
        assert_eq!(r.payload.len(), sizes[i]);
        assert!(r.payload.iter().enumerate().all(|(j, &b)| b == (j * 13 + i) as u8));
        assert_eq!(r.epoch, i as u64);
    }
    assert_eq!(payload(3).len(), 21, "helper payloads vary in length");
}

#[test]
fn lsns_that_skip_or_repeat_inside_a_segment_are_refused() {
    let cases: [(&[u64], usize, u64, u64); 4] = [
        (&[1, 2, 4, 5], 2, 3, 4),
        (&[1, 2, 2, 3], 2, 3, 2),
        (&[1, 3], 1, 2, 3),
        (&[2, 3], 0, 1, 2),
    ];
    for (lsns, bad, want_expected, want_found) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        let mut bad_offset = 0;
        for (i, &lsn) in lsns.iter().enumerate() {
            if i == bad {
                bad_offset = bytes.len() as u64;
            }
            vdb_wal::record::encode(&mut bytes, lsn, 1, b"payload");
        }
        let segment = tmp.path().join(segment_name(1));
        fs::write(&segment, &bytes).unwrap();
        match try_open(tmp.path(), fast(1 << 20), 0) {
            Err(WalError::Gap { segment: s, offset, expected, found }) => {
                assert_eq!((s, offset), (segment.clone(), bad_offset), "{lsns:?}");
                assert_eq!((expected, found), (want_expected, want_found), "{lsns:?}");
            }
            other => panic!("{lsns:?}: expected a gap, got {:?}", other.map(|o| o.2)),
        }
        assert_eq!(fs::read(&segment).unwrap(), bytes, "a refused log is left as it was");
    }
}
