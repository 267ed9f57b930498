//! Reading a local shard's WAL as JSON records: the stream a router tails while it copies a
//! shard's points elsewhere, and later the replication stream.
//!
//! Correct while writes go on: each chunk is read under the writer lock, when nothing is being
//! appended and every record in the log up to [`LocalShard::last_lsn`] has been applied, so a
//! page never holds a half-written record nor one that readers cannot see yet. The lock is
//! released between chunks, so a long page does not stall writers for its whole length.

use crate::error::{Result, ShardError};
use crate::ops::{PayloadMode, WalOp};
use crate::shard::LocalShard;
use vdb_api::{Payload, Point, PointId, WalEntry, WalPage, WalRecord, MAX_WAL_PAGE};

/// Records read per turn of the writer lock.
const CHUNK: usize = 256;
/// A page stops growing once its records hold this many bytes of WAL payload (JSON is bigger:
/// vectors as text), so a page of large upserts stays a reasonable response.
const MAX_PAGE_BYTES: usize = 8 << 20;

impl LocalShard {
    /// Up to `limit` records after LSN `after`, in order. Fails with
    /// [`ShardError::WalTruncated`] when `after + 1` is older than the oldest record still in
    /// the log (and not past the end of it).
    pub fn wal_page(&self, after: u64, limit: usize) -> Result<WalPage> {
        if !(1..=MAX_WAL_PAGE).contains(&limit) {
            return Err(ShardError::invalid(format!("limit must be 1..={MAX_WAL_PAGE}")));
        }
        let mut records: Vec<WalRecord> = Vec::new();
        let mut bytes = 0;
        loop {
            let next = after + 1 + records.len() as u64;
            let (chunk, first_lsn, last_lsn) = {
                let writer = self.writer.lock();
                // A record logged but not applied (its apply failed) is not served.
                let last_lsn = self.last_lsn();
                let first_lsn = writer.wal.first_lsn().unwrap_or(last_lsn + 1).min(last_lsn + 1);
                if next > last_lsn {
                    return Ok(WalPage { records, last_lsn, first_lsn });
                }
                if next < first_lsn {
                    // Truncated behind a snapshot. A snapshot taken between two chunks can
                    // do this to a later chunk too: then the page read so far is still good.
                    if records.is_empty() {
                        return Err(truncated(next, first_lsn));
                    }
                    return Ok(WalPage { records, last_lsn, first_lsn });
                }
                let want = (limit - records.len()).min(CHUNK).min((last_lsn - next + 1) as usize);
                let chunk = writer.wal.read_from(next, want).map_err(|e| match e {
                    vdb_wal::WalError::Truncated { .. } => truncated(next, first_lsn),
                    other => other.into(),
                })?;
                (chunk, first_lsn, last_lsn)
            };
            for r in chunk {
                bytes += r.payload.len();
                let op = WalOp::decode(&r.payload).map_err(|e| {
                    ShardError::Corrupt(format!("{}: wal lsn {}: {e}", self.name, r.lsn))
                })?;
                records.push(WalRecord { lsn: r.lsn, epoch: r.epoch, op: op.to_entry()? });
            }
            if records.len() >= limit || bytes >= MAX_PAGE_BYTES {
                return Ok(WalPage { records, last_lsn, first_lsn });
            }
        }
    }
}

fn truncated(requested: u64, first_lsn: u64) -> ShardError {
    ShardError::WalTruncated(format!(
        "the wal no longer holds lsn {requested} (oldest readable: {first_lsn}); it was \
         truncated behind a snapshot: copy the points, then tail from a newer lsn"
    ))
}

impl WalOp {
    /// The op on the wire.
    pub fn to_entry(&self) -> Result<WalEntry> {
        let ids = |ids: &[crate::ops::StoredId]| ids.iter().map(|&id| PointId::from(id)).collect();
        Ok(match self {
            WalOp::Upsert { points } => WalEntry::Upsert {
                points: points
                    .iter()
                    .map(|p| {
                        Ok(Point {
                            id: p.id.into(),
                            vector: p.vector.clone(),
                            payload: Some(serde_json::Value::Object(payload(&p.payload)?)),
                        })
                    })
                    .collect::<Result<_>>()?,
            },
            WalOp::Delete { ids: i } => WalEntry::Delete { ids: ids(i) },
            WalOp::SetPayload { ids: i, payload: p, mode: PayloadMode::Merge } => {
                WalEntry::SetPayload { ids: ids(i), payload: payload(p)? }
            }
            WalOp::SetPayload { ids: i, payload: p, mode: PayloadMode::Overwrite } => {
                WalEntry::OverwritePayload { ids: ids(i), payload: payload(p)? }
            }
            WalOp::DeletePayloadKeys { ids: i, keys } => {
                WalEntry::DeletePayload { ids: ids(i), keys: keys.clone() }
            }
            WalOp::CreateIndex { field, kind } => {
                WalEntry::CreateIndex { field: field.clone(), kind: (*kind).into() }
            }
            WalOp::DropIndex { field } => WalEntry::DropIndex { field: field.clone() },
        })
    }
}

fn payload(text: &str) -> Result<Payload> {
    serde_json::from_str(text).map_err(|e| ShardError::Corrupt(format!("logged payload: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{StoredId, StoredIndexKind, WalPoint};
    use serde_json::json;

    #[test]
    fn every_op_has_a_wire_form() {
        let ids = vec![StoredId::Num(3)];
        let cases = [
            (
                WalOp::Upsert {
                    points: vec![WalPoint {
                        id: StoredId::Num(3),
                        vector: vec![0.5],
                        payload: r#"{"a":1}"#.into(),
                    }],
                },
                json!({"type": "upsert", "points": [{"id": 3, "vector": [0.5], "payload": {"a": 1}}]}),
            ),
            (WalOp::Delete { ids: ids.clone() }, json!({"type": "delete", "ids": [3]})),
            (
                WalOp::SetPayload {
                    ids: ids.clone(),
                    payload: r#"{"b":2}"#.into(),
                    mode: PayloadMode::Merge,
                },
                json!({"type": "set_payload", "ids": [3], "payload": {"b": 2}}),
            ),
            (
                WalOp::SetPayload {
                    ids: ids.clone(),
                    payload: "{}".into(),
                    mode: PayloadMode::Overwrite,
                },
                json!({"type": "overwrite_payload", "ids": [3], "payload": {}}),
            ),
            (
                WalOp::DeletePayloadKeys { ids, keys: vec!["a.b".into()] },
                json!({"type": "delete_payload", "ids": [3], "keys": ["a.b"]}),
            ),
            (
                WalOp::CreateIndex { field: "f".into(), kind: StoredIndexKind::Keyword },
                json!({"type": "create_index", "field": "f", "kind": "keyword"}),
            ),
            (WalOp::DropIndex { field: "f".into() }, json!({"type": "drop_index", "field": "f"})),
        ];
        for (op, wire) in cases {
            assert_eq!(serde_json::to_value(op.to_entry().unwrap()).unwrap(), wire);
        }
    }
}
