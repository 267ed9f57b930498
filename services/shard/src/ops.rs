//! Write operations as they are logged in the WAL (and later shipped to replicas).
//!
//! Operations are resolved before they are logged: a delete or payload update by filter is
//! logged with the concrete ids it matched, so replaying the log (or applying it on a
//! replica) gives the same state whatever the payloads looked like at replay time.
//!
//! Encoding: bincode of [`WalOp`]. Payloads travel as JSON text because bincode cannot carry
//! self-describing JSON values.

use serde::{Deserialize, Serialize};
use vdb_api::{PayloadIndexKind, PointId};

/// A point id in a form bincode can encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StoredId {
    Num(u64),
    Uuid([u8; 16]),
}

impl From<PointId> for StoredId {
    fn from(id: PointId) -> Self {
        match id {
            PointId::Num(n) => StoredId::Num(n),
            PointId::Uuid(u) => StoredId::Uuid(*u.as_bytes()),
        }
    }
}

impl From<StoredId> for PointId {
    fn from(id: StoredId) -> Self {
        match id {
            StoredId::Num(n) => PointId::Num(n),
            StoredId::Uuid(b) => PointId::Uuid(uuid::Uuid::from_bytes(b)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WalPoint {
    pub id: StoredId,
    pub vector: Vec<f32>,
    /// The payload object as JSON text.
    pub payload: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayloadMode {
    /// Set the given keys, keep the others.
    Merge,
    /// Replace the whole payload.
    Overwrite,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WalOp {
    /// Insert or replace points (ids unique within the op).
    Upsert {
        points: Vec<WalPoint>,
    },
    Delete {
        ids: Vec<StoredId>,
    },
    SetPayload {
        ids: Vec<StoredId>,
        payload: String,
        mode: PayloadMode,
    },
    DeletePayloadKeys {
        ids: Vec<StoredId>,
        keys: Vec<String>,
    },
    CreateIndex {
        field: String,
        kind: StoredIndexKind,
    },
    DropIndex {
        field: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredIndexKind {
    Keyword,
    Integer,
    Float,
}

impl From<PayloadIndexKind> for StoredIndexKind {
    fn from(k: PayloadIndexKind) -> Self {
        match k {
            PayloadIndexKind::Keyword => StoredIndexKind::Keyword,
            PayloadIndexKind::Integer => StoredIndexKind::Integer,
            PayloadIndexKind::Float => StoredIndexKind::Float,
        }
    }
}

impl From<StoredIndexKind> for PayloadIndexKind {
    fn from(k: StoredIndexKind) -> Self {
        match k {
            StoredIndexKind::Keyword => PayloadIndexKind::Keyword,
            StoredIndexKind::Integer => PayloadIndexKind::Integer,
            StoredIndexKind::Float => PayloadIndexKind::Float,
        }
    }
}

impl WalOp {
    pub fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("wal ops always serialise")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        bincode::deserialize(bytes).map_err(|e| format!("undecodable wal op: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id() -> impl Strategy<Value = StoredId> {
        prop_oneof![
            any::<u64>().prop_map(StoredId::Num),
            any::<[u8; 16]>().prop_map(StoredId::Uuid)
        ]
    }

    proptest! {
        #[test]
        fn ops_round_trip(ids in proptest::collection::vec(id(), 0..20),
                          vector in proptest::collection::vec(-1e6f32..1e6, 0..16),
                          text in ".{0,40}") {
            let payload = serde_json::json!({"t": text}).to_string();
            let ops = vec![
                WalOp::Upsert { points: ids.iter().map(|&id| WalPoint { id, vector: vector.clone(), payload: payload.clone() }).collect() },
                WalOp::Delete { ids: ids.clone() },
                WalOp::SetPayload { ids: ids.clone(), payload: payload.clone(), mode: PayloadMode::Merge },
                WalOp::DeletePayloadKeys { ids: ids.clone(), keys: vec![text.clone()] },
                WalOp::CreateIndex { field: text.clone(), kind: StoredIndexKind::Float },
                WalOp::DropIndex { field: text },
            ];
            for op in ops {
                prop_assert_eq!(WalOp::decode(&op.encode()).unwrap(), op);
            }
        }
    }

    #[test]
    fn ids_convert_both_ways() {
        let u = PointId::Uuid(uuid::Uuid::new_v4());
        assert_eq!(PointId::from(StoredId::from(u)), u);
        assert_eq!(PointId::from(StoredId::from(PointId::Num(9))), PointId::Num(9));
        assert!(WalOp::decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
