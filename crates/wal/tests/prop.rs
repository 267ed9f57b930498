//! Property tests: any mix of appends, batches, rolls, reopens and truncations reads back
//! exactly as written, and any frame decodes to what was encoded.

mod common;

use common::{fast, open};
use proptest::collection::vec;
use proptest::prelude::*;
use vdb_wal::record::{self, encoded_len};
use vdb_wal::WalRecord;

#[derive(Clone, Debug)]
enum Op {
    Append(u64, Vec<u8>),
    Batch(u64, Vec<Vec<u8>>),
    Roll,
    Sync,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..4u64, vec(any::<u8>(), 0..200)).prop_map(|(e, p)| Op::Append(e, p)),
        3 => (0..4u64, vec(vec(any::<u8>(), 0..100), 0..6)).prop_map(|(e, b)| Op::Batch(e, b)),
        1 => Just(Op::Roll),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

fn segment_bytes() -> impl Strategy<Value = u64> {
    prop_oneof![1 => Just(0u64), 1 => Just(1u64 << 20), 6 => 64u64..3000]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn reopening_yields_exactly_the_records_written(
        ops in vec(op(), 0..60),
        segment_bytes in segment_bytes(),
        from in 0u64..300,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let opts = fast(segment_bytes);
        let (mut wal, _, _) = open(tmp.path(), opts.clone(), 0);
        let mut model: Vec<WalRecord> = Vec::new();
        for op in ops {
            match op {
                Op::Append(epoch, payload) => {
                    let lsn = wal.append(epoch, &payload).unwrap();
                    prop_assert_eq!(lsn, model.len() as u64 + 1);
                    model.push(WalRecord { lsn, epoch, payload });
                }
                Op::Batch(epoch, payloads) => {
                    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                    let lsns = wal.append_batch(epoch, &refs).unwrap();
                    prop_assert_eq!(*lsns.start(), model.len() as u64 + 1);
                    prop_assert_eq!(lsns.clone().count(), payloads.len());
                    for (lsn, payload) in lsns.zip(payloads) {
                        model.push(WalRecord { lsn, epoch, payload });
                    }
                }
                Op::Roll => wal.roll().unwrap(),
                Op::Sync => {
                    wal.sync().unwrap();
                    prop_assert!(!wal.is_dirty());
                }
                Op::Reopen => {
                    drop(wal);
                    let (reopened, report, replayed) = open(tmp.path(), opts.clone(), 0);
                    prop_assert_eq!(&replayed, &model);
                    prop_assert_eq!(report.torn_tail_dropped, None);
                    wal = reopened;
                }
            }
        }
        let bytes: u64 = model.iter().map(|r| encoded_len(r.payload.len()) as u64).sum();
        prop_assert_eq!(wal.size_bytes(), bytes);
        let start = from.max(1) as usize - 1;
        let expected = model.get(start..).unwrap_or_default();
        prop_assert_eq!(wal.read_from(from, usize::MAX).unwrap(), expected);
        wal.sync().unwrap();
        drop(wal);

        let (wal, report, replayed) = open(tmp.path(), opts, 0);
        prop_assert_eq!(&replayed, &model);
        prop_assert_eq!(report.records_replayed, model.len() as u64);
        prop_assert_eq!(report.last_lsn, model.len() as u64);
        prop_assert_eq!(wal.size_bytes(), bytes);
        prop_assert_eq!(wal.read_from(from, usize::MAX).unwrap(), expected);
    }

    #[test]
    fn truncation_keeps_every_record_after_the_snapshot(
        n in 0u64..50,
        segment_bytes in segment_bytes(),
        snapshot in 0u64..60,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let opts = fast(segment_bytes);
        let (mut wal, _, _) = open(tmp.path(), opts.clone(), 0);
        let model = common::fill(&mut wal, n);
        wal.truncate_through(snapshot).unwrap();
        let last = n.max(snapshot);
        prop_assert_eq!(wal.last_lsn(), last);
        match wal.first_lsn() {
            Some(first) => {
                prop_assert!(first <= snapshot + 1 && first <= n);
                let kept = wal.read_from(first, usize::MAX).unwrap();
                prop_assert_eq!(kept, &model[first as usize - 1..]);
            }
            None => prop_assert!(snapshot >= n),
        }
        wal.sync().unwrap();
        drop(wal);

        let (mut wal, report, replayed) = open(tmp.path(), opts.clone(), snapshot);
        let after = &model[(snapshot.min(n)) as usize..];
        prop_assert_eq!(&replayed, after);
        prop_assert_eq!(report.last_lsn, last);
        prop_assert_eq!(wal.append(1, b"next").unwrap(), last + 1);
        wal.sync().unwrap();
        drop(wal);
        let (_, _, replayed) = open(tmp.path(), opts, snapshot);
        prop_assert_eq!(replayed.len(), after.len() + 1);
    }

    #[test]
    fn frames_decode_to_what_was_encoded(
        lsn in any::<u64>(),
        epoch in any::<u64>(),
        payload in vec(any::<u8>(), 0..2000),
        trailing in vec(any::<u8>(), 0..40),
    ) {
        let mut bytes = Vec::new();
        record::encode(&mut bytes, lsn, epoch, &payload);
        prop_assert_eq!(bytes.len(), encoded_len(payload.len()));
        bytes.extend_from_slice(&trailing);
        let (decoded, used) = record::decode(&bytes).unwrap();
        prop_assert_eq!(used, encoded_len(payload.len()));
        prop_assert_eq!(decoded.to_owned(), WalRecord { lsn, epoch, payload: payload.clone() });
        prop_assert!(record::decode(&bytes[..used - 1]).is_err());
    }
}
