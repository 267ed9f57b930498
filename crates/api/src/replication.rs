//! What a shard node exposes for resharding, shard moves and (later) replication: its WAL as a
//! stream of JSON records, and the write guard a router installs on a source shard.

use crate::collection::Ownership;
use crate::ids::PointId;
use crate::points::Point;
use crate::shard::PayloadIndexKind;
use crate::Payload;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most records one `GET /v1/shards/{name}/wal` page may ask for.
pub const MAX_WAL_PAGE: usize = 10_000;
/// Records a WAL page holds when the request gives no `limit`.
pub const DEFAULT_WAL_PAGE: usize = 1_000;

/// `GET /v1/shards/{name}/wal?after=<lsn>&limit=<n>`: records with LSNs `after + 1`, `after +
/// 2`, ... in order, no gaps. Fewer than `limit` come back when the page would be too large in
/// bytes or the log ends; an empty page means the reader is caught up with `last_lsn`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WalPage {
    pub records: Vec<WalRecord>,
    /// The last LSN applied on the shard when the page was read. Records are never returned
    /// beyond it.
    pub last_lsn: u64,
    /// The oldest LSN still readable (`last_lsn + 1` when the log holds no record). Asking for
    /// anything older answers 410 `wal_truncated`: copy the points instead (scroll), then tail
    /// from the LSN the copy started at.
    pub first_lsn: u64,
}

/// One logged write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WalRecord {
    pub lsn: u64,
    /// The epoch of the shard's role when the write was logged.
    pub epoch: u64,
    pub op: WalEntry,
}

/// A logged write as it was resolved: writes by filter are logged with the ids they matched,
/// so applying the entries in order reproduces the shard's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WalEntry {
    /// Insert or replace these points (ids unique within the entry); payloads are objects.
    Upsert { points: Vec<Point> },
    /// Delete these points.
    Delete { ids: Vec<PointId> },
    /// Merge `payload`'s keys into these points' payloads.
    SetPayload {
        ids: Vec<PointId>,
        #[schema(value_type = Object)]
        payload: Payload,
    },
    /// Replace these points' whole payloads with `payload`.
    OverwritePayload {
        ids: Vec<PointId>,
        #[schema(value_type = Object)]
        payload: Payload,
    },
    /// Remove these keys (dotted paths) from these points' payloads.
    DeletePayload { ids: Vec<PointId>, keys: Vec<String> },
    /// Index a payload field.
    CreateIndex { field: String, kind: PayloadIndexKind },
    /// Drop a payload field's index.
    DropIndex { field: String },
}

/// Body of `PUT /v1/shards/{name}/guard`: restrict writes on a source shard during a
/// resharding or shard move (see the endpoint's description for the rules).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteGuard {
    /// Which points this shard owns; writes to others are refused with `wrong_shard`.
    pub ownership: Ownership,
    /// Also refuse (503, retry) writes to points this shard owns under `ownership.from` but
    /// not under `ownership.to`: they are being handed off.
    #[serde(default)]
    pub frozen: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_are_tagged_by_type() {
        let e: WalEntry =
            serde_json::from_value(json!({"type": "delete_payload", "ids": [1], "keys": ["a.b"]}))
                .unwrap();
        assert_eq!(e, WalEntry::DeletePayload { ids: vec![1.into()], keys: vec!["a.b".into()] });
        let up = WalEntry::Upsert {
            points: vec![Point { id: 7.into(), vector: vec![1.0], payload: Some(json!({})) }],
        };
        let v = serde_json::to_value(&up).unwrap();
        assert_eq!(
            v,
            json!({"type": "upsert", "points": [{"id": 7, "vector": [1.0], "payload": {}}]})
        );
        assert_eq!(serde_json::from_value::<WalEntry>(v).unwrap(), up);
    }

    #[test]
    fn guards_default_to_not_frozen() {
        let spec = json!({"sharding": {"strategy": "hash"}, "shards": [0, 1]});
        let g: WriteGuard =
            serde_json::from_value(json!({"ownership": {"from": spec, "to": spec, "shard": 1}}))
                .unwrap();
        assert!(!g.frozen);
        assert!(g.ownership.cut_over.is_empty());
    }
}
