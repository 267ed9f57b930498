//! Opening a log: validate every segment, tell a torn tail from corruption, repair, then replay.
//!
//! Validation finishes before anything on disk is changed or any record is handed to the caller,
//! so a log that is refused is left exactly as it was found, for a person to look at.

use crate::segment::{self, ActiveSegment, SegmentCheck, SegmentReader};
use crate::{ClosedSegment, OpenReport, WalError, WalRecord};
use std::collections::VecDeque;
use std::fs;
use std::path::Path;

/// A validated, repaired log, ready to be appended to.
pub(crate) struct Recovered {
    pub closed: VecDeque<ClosedSegment>,
    pub active: ActiveSegment,
    pub last_lsn: u64,
    pub report: OpenReport,
}

pub(crate) fn recover<E>(
    dir: &Path,
    after_lsn: u64,
    mut apply: impl FnMut(WalRecord) -> Result<(), E>,
) -> Result<Recovered, WalError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let created = ensure_dir(dir)?;
    let listed = segment::list(dir)?;
    let count = listed.len();
    let mut checks: Vec<SegmentCheck> = Vec::with_capacity(count);
    let mut empty = Vec::new();
    for (i, (first_lsn, path)) in listed.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let check = segment::check(&path, first_lsn, is_last)?;
        // Only a zero-length file gets here with no records and not last (a non-last segment
        // with a bad record is refused by `check`): it holds nothing, so it can go.
        if !is_last && check.records == 0 {
            empty.push(check.path);
        } else {
            checks.push(check);
        }
    }

    let floor = after_lsn.saturating_add(1);
    // Segments must continue each other. A jump is harmless only where the snapshot covers
    // everything before it: that is what a crash in the middle of dropping covered segments
    // leaves behind. The segments before such a jump are then dropped as well, so the log on
    // disk stays contiguous for replication reads.
    let mut keep_from = 0;
    for i in 1..checks.len() {
        let (prev, cur) = (&checks[i - 1], &checks[i]);
        let expected = prev.end_lsn();
        if cur.first_lsn == expected {
            continue;
        }
        if cur.first_lsn > expected && cur.first_lsn <= floor {
            keep_from = i;
            continue;
        }
        return Err(WalError::Gap {
            segment: cur.path.clone(),
            offset: 0,
            expected,
            found: cur.first_lsn,
        });
    }
    if let Some(first) = checks.get(keep_from) {
        if first.first_lsn > floor {
            // Records between the snapshot and the oldest segment are gone.
            return Err(WalError::Gap {
                segment: first.path.clone(),
                offset: 0,
                expected: floor,
                found: first.first_lsn,
            });
        }
    }
    let log_end = checks.last().map_or(0, SegmentCheck::end_lsn);
    // Behind the snapshot: the snapshot holds records the log lost (an unsynced tail under a
    // relaxed fsync policy) or never had. New LSNs must follow the snapshot, and appending them
    // behind the old records would leave a gap, so a fresh segment is started.
    let behind = log_end < floor;
    let last_lsn = log_end.saturating_sub(1).max(after_lsn);

    let mut report = OpenReport::default();
    let mut dir_changed = false;
    for path in &empty {
        tracing::warn!(segment = %path.display(), "removing empty wal segment before the last one");
        fs::remove_file(path)?;
        dir_changed = true;
    }
    if let Some(torn) = checks.last().and_then(|c| c.torn.clone()) {
        tracing::warn!(
            segment = %torn.segment.display(),
            offset = torn.offset,
            bytes_dropped = torn.bytes_dropped,
            reason = %torn.reason,
            "dropping torn wal tail"
        );
        segment::cut(&torn.segment, torn.offset)?;
        report.torn_tail_dropped = Some(torn);
    }
    let drop_until = if behind { checks.len() } else { keep_from };
    // The new segment is created before the covered ones are removed: a crash in between leaves
    // a jump that the continuity rule above accepts.
    let active = if behind {
        ActiveSegment::create(dir, floor)?
    } else {
        let last = checks.last().expect("not behind, so some segment exists");
        ActiveSegment::reopen(&last.path, last.first_lsn, last.valid_len)?
    };
    if drop_until > 0 {
        tracing::info!(
            segments = drop_until,
            through_lsn = checks[drop_until - 1].end_lsn() - 1,
            after_lsn,
            "removing wal segments the snapshot covers"
        );
    }
    // Oldest first, so that an interrupted removal leaves a contiguous log.
    for c in &checks[..drop_until] {
        fs::remove_file(&c.path)?;
        dir_changed = true;
    }
    if dir_changed {
        segment::sync_dir(dir)?;
    }
    if created {
        sync_parent(dir)?;
    }

    let retained = &checks[drop_until..];
    for c in retained.iter().filter(|c| c.records > 0 && c.end_lsn() - 1 > after_lsn) {
        let mut reader = SegmentReader::open(&c.path, c.valid_len)?;
        let mut expected = c.first_lsn;
        while let Some(record) = reader.next_record()? {
            // Validated a moment ago; checked again because it costs nothing next to the read.
            if record.lsn != expected {
                return Err(WalError::Gap {
                    segment: c.path.clone(),
                    offset: 0,
                    expected,
                    found: record.lsn,
                });
            }
            expected += 1;
            if record.lsn > after_lsn {
                let lsn = record.lsn;
                apply(record).map_err(|e| WalError::Apply { lsn, source: e.into() })?;
                report.records_replayed += 1;
            }
        }
    }

    let closed = if behind {
        VecDeque::new()
    } else {
        retained[..retained.len() - 1]
            .iter()
            .map(|c| ClosedSegment {
                first_lsn: c.first_lsn,
                last_lsn: c.end_lsn() - 1,
                path: c.path.clone(),
                len: c.valid_len,
            })
            .collect()
    };
    report.last_lsn = last_lsn;
    tracing::debug!(
        dir = %dir.display(),
        segments = closed.len() + 1,
        last_lsn,
        after_lsn,
        replayed = report.records_replayed,
        "wal opened"
    );
    Ok(Recovered { closed, active, last_lsn, report })
}

/// Creates `dir` if needed; returns whether it did.
fn ensure_dir(dir: &Path) -> std::io::Result<bool> {
    if dir.is_dir() {
        return Ok(false);
    }
    fs::create_dir_all(dir)?;
    Ok(true)
}

/// Makes a newly created directory's own entry durable; without this a crash could lose the
/// whole log directory along with records already acknowledged as fsynced.
fn sync_parent(dir: &Path) -> std::io::Result<()> {
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => segment::sync_dir(parent),
        _ => segment::sync_dir(Path::new(".")),
    }
}
