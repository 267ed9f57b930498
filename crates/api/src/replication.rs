//! What a shard node exposes for resharding, shard moves and replication: its WAL as a stream
//! of JSON records, the write guard a router installs on a source shard, the role the
//! controller assigns to each copy of a shard, and the replication stream between copies.

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

/// Body of `PUT /v1/shards/{name}/role`: the place of this copy in its replica set, as the
/// controller assigns it. Sent on every change and, to a primary, on every heartbeat: that
/// renews its lease.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleAssignment {
    /// Never lower than the shard's current epoch (409 `stale_epoch`).
    pub epoch: u64,
    pub role: crate::Role,
    /// Primary only: the lease, as a Unix time in milliseconds on the controller's clock: the
    /// primary acknowledges writes only until then (by its own clock). An absolute time, so an
    /// assignment that arrives late (a paused process) cannot stretch the lease; the controller
    /// promotes another copy only after this time plus its clock-skew margin. 0 keeps the
    /// current lease (a copy that never got a lease needs none: one without replicas).
    #[serde(default)]
    pub lease_until_ms: u64,
    /// Primary only: the copies to ship the log to (the local shard has the same name there).
    #[serde(default)]
    pub replicas: Vec<ReplicaTarget>,
    /// Primary only: which replicas (by node) are in sync; their confirmations count for
    /// `sync` and `semi_sync` writes.
    #[serde(default)]
    pub in_sync: Vec<String>,
    /// Primary only: sync and semi-sync writes are refused (503 `not_enough_replicas`) while
    /// fewer replicas than this are in sync.
    #[serde(default)]
    pub min_in_sync: u32,
    /// Primary only: the role is being handed to a replica (a planned move). The primary takes
    /// no new writes and no strong reads (503 `unavailable`, which routers retry) but still
    /// acknowledges the writes it already logged, within its lease. An assignment without it
    /// lifts it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handing_over: bool,
}

/// A replica of a primary's shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicaTarget {
    /// The node's id (as registered with the routers).
    pub node: String,
    /// Its base URL.
    pub url: String,
}

/// How a write waits for replicas (`?consistency=` on a shard's write endpoints); see the
/// collection's `write_consistency` for what each guarantees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AckMode {
    /// Durable on the primary.
    #[default]
    Async,
    /// Durable on the primary and on `acks` replicas.
    SemiSync,
    /// Durable on the primary and on every in-sync replica.
    Sync,
}

/// Query of a shard's point-write endpoints: how long the write waits for replicas before it
/// is acknowledged. On a copy without replicas every mode is `async`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams,
)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WriteParams {
    /// `async` (default), `semi_sync` (with `acks`) or `sync`.
    #[serde(default)]
    pub consistency: AckMode,
    /// `semi_sync`: how many in-sync replicas must confirm.
    #[serde(default)]
    pub acks: u32,
    /// How long to wait for confirmations, in milliseconds (default 5000); past it the write
    /// answers 503 `replication_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// How fresh a read must be: `?consistency=` on read endpoints (search, get, count, scroll).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadConsistency {
    /// Any in-sync copy of each shard answers, the router spreading reads over them; the
    /// answer says `stale: true` when a replica answered.
    #[default]
    Eventual,
    /// The primary answers, and only while it holds its lease: the answer holds every write
    /// acknowledged before the read began, and no write a later failover rolled back.
    Strong,
    /// A majority of each shard's copies answer (any copies, in sync or not, no lease needed)
    /// and the one whose log reaches furthest ([`LogPosition`]) is taken: the answer holds
    /// every write a majority of copies had confirmed before the read began (`sync`, or
    /// `semi_sync` with `acks` ≥ ⌊copies / 2⌋), even while a failover is under way. It may
    /// also show a write still waiting for its confirmations.
    Quorum,
}

/// Where a copy's log ends: the epoch its last record was written in, then that record's
/// LSN. Ordered in that order: of two copies, the one with the greater position holds every
/// write a majority confirmed that the other holds (logs that agree on a record's LSN and
/// epoch agree on everything before it, and a newer epoch's primary started with every
/// confirmed write).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
)]
pub struct LogPosition {
    pub epoch: u64,
    pub lsn: u64,
}

/// A read answer that can say where the answering copy's log stood (shard nodes set it on
/// reads with `consistency=quorum`; routers pick the furthest copy by it and never set it).
pub trait Positioned {
    fn position(&self) -> Option<LogPosition>;
    fn set_position(&mut self, position: Option<LogPosition>);
}

/// Implements [`Positioned`] for answers with a `position` field.
macro_rules! positioned {
    ($($t:ty),*) => {$(
        impl Positioned for $t {
            fn position(&self) -> Option<LogPosition> {
                self.position
            }
            fn set_position(&mut self, position: Option<LogPosition>) {
                self.position = position;
            }
        }
    )*};
}
positioned!(
    crate::Records,
    crate::CountResult,
    crate::ScrollResult,
    crate::SearchResult,
    crate::BatchSearchResult
);

/// Query of the read endpoints.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams,
)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// `eventual` (default), `strong` or `quorum`.
    #[serde(default)]
    pub consistency: ReadConsistency,
}

/// Where a copy stands in its replica set: `replication` in `GET /v1/shards/{name}`, and the
/// answer to `PUT /v1/shards/{name}/role`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplicationInfo {
    pub role: crate::Role,
    pub epoch: u64,
    /// LSN of the last record this copy holds, and the epoch it was written in.
    pub last_lsn: u64,
    pub last_epoch: u64,
    /// Primary: milliseconds of lease left (absent when this copy needs no lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_remaining_ms: Option<u64>,
    /// Primary: the replicas and how far each has confirmed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaProgress>,
    /// Primary: the in-sync set it was given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_sync: Vec<String>,
    #[serde(default)]
    pub min_in_sync: u32,
}

/// How far a replica has confirmed the primary's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplicaProgress {
    pub node: String,
    /// Every record up to this LSN is durable on the replica.
    pub acked_lsn: u64,
    /// Records the primary holds beyond `acked_lsn`.
    pub lag_records: u64,
    /// How long the oldest record it has not confirmed has been waiting (0 when caught up).
    pub lag_seconds: f64,
    pub state: ReplicaState,
    /// The last failure shipping to it, while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the primary's stream to one replica is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Shipping log records.
    Streaming,
    /// Sending a snapshot (the replica's position is no longer in the log, or it diverged).
    Resyncing,
    /// The last attempt failed; retrying.
    Unreachable,
}

/// Answer of `POST /v1/shards/{name}/replicate` (the primary → replica log stream; the body is
/// binary WAL frames, see the endpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplicateAck {
    /// Whether the batch continued this copy's log (`prev_lsn`/`prev_epoch` matched its last
    /// record). When not, nothing was applied and `last_lsn`/`last_epoch` say where it is.
    pub matched: bool,
    /// Every record up to this LSN is durable here.
    pub durable_lsn: u64,
    pub last_lsn: u64,
    pub last_epoch: u64,
    /// This copy's epoch after the batch (it adopts a newer one from the primary).
    pub epoch: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_newer_epoch_is_ahead_whatever_the_lsns() {
        let p = |epoch, lsn| LogPosition { epoch, lsn };
        assert!(p(2, 5) > p(1, 900));
        assert!(p(2, 6) > p(2, 5));
        assert_eq!([p(1, 9), p(3, 1), p(3, 0)].into_iter().max(), Some(p(3, 1)));
    }

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
