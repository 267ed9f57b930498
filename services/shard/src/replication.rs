//! A local shard's place in its replica set: role, epoch, lease, the replicas a primary ships
//! to and how far each has confirmed, and the waiting of writes for those confirmations.
//!
//! Rules (checked under the shard's writer lock, so they are atomic with logging):
//! - only a primary takes writes (others: 409 `not_primary`); a primary that was ever given a
//!   lease takes them only while it holds one (503 once it lapsed): the controller promotes a
//!   replica only after the lease surely ended, so two primaries never acknowledge at once;
//! - the epoch only grows: a role or a replication batch from an older epoch is refused (409
//!   `stale_epoch`); a batch from a newer one makes this copy a replica of that epoch (a
//!   deposed primary learns it here, if not from the controller);
//! - every record is logged with the epoch of the role that wrote it.
//!
//! What the controller assigns (role, epoch, lease, replicas, in-sync set) arrives in
//! [`RoleAssignment`]s; only role, epoch and whether a lease is needed are kept on disk
//! (`role.json`, written like the guard file): after a restart a primary holds no lease and
//! ships to nobody until the controller assigns it again.
//!
//! Acknowledgement ([`LocalShard::await_acks`]): `async` once durable here; `semi_sync`
//! once `acks` in-sync replicas confirmed the write's LSN; `sync` once every in-sync replica
//! did. Confirmations from replicas outside the in-sync set do not count: failover promotes
//! only in-sync replicas. A write whose confirmations do not arrive in time, or that would be
//! acknowledged after the lease lapsed, answers 503 `replication_timeout` (outcome unknown).

use crate::error::{Result, ShardError};
use crate::shard::LocalShard;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use vdb_api::{
    AckMode, ReplicaProgress, ReplicaState, ReplicaTarget, ReplicationInfo, Role, RoleAssignment,
};

const FILE: &str = "role.json";

/// What survives a restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRole {
    pub role: Role,
    pub epoch: u64,
    /// Writes need a lease (the copy was given one once).
    #[serde(default)]
    pub leased: bool,
}

/// The replication state of one local shard.
pub struct Replication {
    state: Mutex<State>,
    /// Bumped on every confirmation and every assignment: what waiting writes watch.
    changed: watch::Sender<u64>,
    /// The last LSN applied: what shippers waiting for new records watch.
    appended: watch::Sender<u64>,
    recent: Mutex<Recent>,
    /// The log tail a primary keeps in memory for its replicas (older records are read back
    /// from the WAL files while they last, then a snapshot is sent).
    recent_bytes: usize,
}

impl State {
    /// Whether `node`'s entry still belongs to the shipper started with `generation`.
    fn current(&self, node: &str, generation: u64) -> bool {
        self.replicas.get(node).is_some_and(|r| r.generation == generation)
    }
}

struct State {
    stored: StoredRole,
    lease_until: Option<Instant>,
    replicas: BTreeMap<String, Replica>,
    in_sync: BTreeSet<String>,
    min_in_sync: u32,
    /// Hands out shipper generations: a shipper runs while its replica's entry holds the
    /// generation it was started with and this copy is a primary. A new role or epoch gives
    /// every replica a new one; a changed replica set only the replicas that changed, so the
    /// others keep streaming (and stay in sync) while replicas are added or removed.
    generation: u64,
    /// Set when this object was replaced (a snapshot installed over it): it takes nothing.
    retired: bool,
    /// A primary handing its role over: no new writes or strong reads.
    handing_over: bool,
}

struct Replica {
    /// The generation its shipper runs with (see [`State::generation`]).
    generation: u64,
    url: String,
    acked_lsn: u64,
    state: ReplicaState,
    error: Option<String>,
}

/// Recently applied records: (lsn, epoch, encoded op, when it was applied).
#[derive(Default)]
struct Recent {
    records: VecDeque<(u64, u64, Arc<[u8]>, Instant)>,
    bytes: usize,
}

/// Log records as shipped: (lsn, epoch, encoded op).
pub type Frames = Vec<(u64, u64, Arc<[u8]>)>;

/// A shipper to start: (node, url, generation).
pub type ShipperStart = (String, String, u64);

impl Replication {
    pub fn new(stored: StoredRole, last_lsn: u64, recent_bytes: usize) -> Self {
        Replication {
            state: Mutex::new(State {
                stored,
                lease_until: None,
                replicas: BTreeMap::new(),
                in_sync: BTreeSet::new(),
                min_in_sync: 0,
                generation: 0,
                retired: false,
                handing_over: false,
            }),
            changed: watch::Sender::new(0),
            appended: watch::Sender::new(last_lsn),
            recent: Mutex::new(Recent::default()),
            recent_bytes,
        }
    }

    pub fn stored(&self) -> StoredRole {
        self.state.lock().stored
    }

    pub fn epoch(&self) -> u64 {
        self.state.lock().stored.epoch
    }

    /// Whether the shipper to `node` started with `generation` may go on.
    pub fn is_current(&self, node: &str, generation: u64) -> bool {
        let s = self.state.lock();
        !s.retired && s.stored.role == Role::Primary && s.current(node, generation)
    }

    /// Stops every shipper (the shard is dropped or replaced).
    pub fn retire(&self) {
        let mut s = self.state.lock();
        s.retired = true;
        s.generation += 1;
        drop(s);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Whether this copy may log a client write now (call under the writer lock); the epoch
    /// to log it with.
    pub fn check_writable(&self) -> Result<u64> {
        let s = self.state.lock();
        if s.retired {
            return Err(ShardError::Unavailable("this copy is being replaced".into()));
        }
        if s.stored.role != Role::Primary {
            return Err(ShardError::NotPrimary(format!(
                "this copy is a replica (epoch {}); write to the primary",
                s.stored.epoch
            )));
        }
        if s.stored.leased && s.lease_until.is_none_or(|t| t <= Instant::now()) {
            return Err(ShardError::Unavailable(format!(
                "this primary's lease (epoch {}) has lapsed; it takes no writes until the \
                 controller renews it or promotes another copy",
                s.stored.epoch
            )));
        }
        if s.handing_over {
            return Err(ShardError::Unavailable(format!(
                "this primary (epoch {}) is handing its role over to a replica; retry shortly",
                s.stored.epoch
            )));
        }
        Ok(s.stored.epoch)
    }

    /// Refuses a sync or semi-sync write up front when too few replicas are in sync.
    pub fn check_quorum(&self, mode: AckMode, acks: u32) -> Result<()> {
        let s = self.state.lock();
        let in_sync = s.in_sync.len() as u32;
        let needed = match mode {
            AckMode::Async => return Ok(()),
            AckMode::Sync => s.min_in_sync,
            AckMode::SemiSync => acks.max(s.min_in_sync),
        };
        if in_sync < needed {
            return Err(ShardError::NotEnoughReplicas(format!(
                "{in_sync} replica(s) in sync, this write needs {needed}; nothing was written"
            )));
        }
        Ok(())
    }

    /// Applies a role assignment (call under the writer lock). Returns the shippers to start
    /// and whether the stored role changed (and must be persisted).
    pub fn assign(&self, a: &RoleAssignment) -> Result<(Vec<ShipperStart>, bool)> {
        let mut s = self.state.lock();
        if s.retired {
            return Err(ShardError::Unavailable("this copy is being replaced".into()));
        }
        if a.epoch < s.stored.epoch {
            return Err(ShardError::StaleEpoch(format!(
                "assignment for epoch {} but this copy is at epoch {}",
                a.epoch, s.stored.epoch
            )));
        }
        if a.epoch == s.stored.epoch && a.role != s.stored.role && s.stored.epoch > 0 {
            return Err(ShardError::StaleEpoch(format!(
                "this copy is the {:?} of epoch {}; a role change needs a new epoch",
                s.stored.role, a.epoch
            )));
        }
        let before = s.stored;
        let restart = a.epoch != before.epoch || a.role != before.role;
        s.stored.epoch = a.epoch;
        s.stored.role = a.role;
        s.handing_over = a.role == Role::Primary && a.handing_over;
        let mut starts = Vec::new();
        match a.role {
            Role::Replica => {
                s.lease_until = None;
                s.replicas.clear();
                s.in_sync.clear();
                s.min_in_sync = 0;
            }
            Role::Primary => {
                if a.lease_until_ms > 0 {
                    s.stored.leased = true;
                    s.lease_until = Some(lease_deadline(a.lease_until_ms));
                } else if restart {
                    s.lease_until = None;
                }
                let wanted: BTreeMap<&str, &ReplicaTarget> =
                    a.replicas.iter().map(|r| (r.node.as_str(), r)).collect();
                let changed_set = restart
                    || wanted.len() != s.replicas.len()
                    || wanted
                        .iter()
                        .any(|(n, r)| s.replicas.get(*n).is_none_or(|x| x.url != r.url));
                if changed_set {
                    s.generation += 1;
                    let generation = s.generation;
                    let mut old = std::mem::take(&mut s.replicas);
                    s.replicas = a
                        .replicas
                        .iter()
                        .map(|r| {
                            let kept = old.remove(&r.node).filter(|x| !restart && x.url == r.url);
                            let replica = kept.unwrap_or_else(|| Replica {
                                generation,
                                url: r.url.clone(),
                                acked_lsn: 0,
                                state: ReplicaState::Unreachable,
                                error: Some("connecting".into()),
                            });
                            (r.node.clone(), replica)
                        })
                        .collect();
                }
                s.in_sync =
                    a.in_sync.iter().filter(|n| wanted.contains_key(n.as_str())).cloned().collect();
                s.min_in_sync = a.min_in_sync;
                if changed_set {
                    // Shippers for the replicas that got a new generation only.
                    starts = s
                        .replicas
                        .iter()
                        .filter(|(_, r)| r.generation == s.generation)
                        .map(|(n, r)| (n.clone(), r.url.clone(), r.generation))
                        .collect();
                }
            }
        }
        if restart && a.role == Role::Replica {
            s.generation += 1;
        }
        let persist = s.stored != before;
        drop(s);
        if a.role == Role::Replica {
            self.recent.lock().clear();
        }
        self.changed.send_modify(|v| *v += 1);
        Ok((starts, persist))
    }

    /// A batch from a primary of `epoch` arrived (call under the writer lock): refused when
    /// older than ours or when we are that epoch's primary; a newer epoch is adopted as a
    /// replica. Returns whether the stored role changed.
    pub fn accept_primary(&self, epoch: u64) -> Result<bool> {
        let mut s = self.state.lock();
        if s.retired {
            return Err(ShardError::Unavailable("this copy is being replaced".into()));
        }
        if epoch < s.stored.epoch {
            return Err(ShardError::StaleEpoch(format!(
                "replication from epoch {epoch}, but this copy is at epoch {}: the sender was \
                 deposed",
                s.stored.epoch
            )));
        }
        if epoch == s.stored.epoch && s.stored.role == Role::Primary {
            return Err(ShardError::StaleEpoch(format!(
                "this copy is the primary of epoch {epoch}; it takes no replication"
            )));
        }
        if epoch == s.stored.epoch {
            return Ok(false);
        }
        s.stored = StoredRole { role: Role::Replica, epoch, leased: s.stored.leased };
        s.lease_until = None;
        s.handing_over = false;
        s.replicas.clear();
        s.in_sync.clear();
        s.generation += 1;
        drop(s);
        self.recent.lock().clear();
        self.changed.send_modify(|v| *v += 1);
        Ok(true)
    }

    /// A replica refused our batch as stale: another copy leads a newer epoch. Stop taking
    /// writes until the controller says otherwise.
    pub fn deposed(&self, node: &str, generation: u64) {
        let mut s = self.state.lock();
        if s.current(node, generation) && s.stored.role == Role::Primary {
            s.stored.role = Role::Replica;
            s.lease_until = None;
            s.handing_over = false;
            s.generation += 1;
            tracing::warn!(epoch = s.stored.epoch, "a replica knows a newer epoch: stepped down");
        }
        drop(s);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Notes a record applied (call under the writer lock, in LSN order).
    pub fn appended(&self, lsn: u64, epoch: u64, op: &[u8]) {
        let keep = {
            let s = self.state.lock();
            s.stored.role == Role::Primary && !s.replicas.is_empty()
        };
        if keep {
            let mut r = self.recent.lock();
            r.records.push_back((lsn, epoch, op.into(), Instant::now()));
            r.bytes += op.len();
            while r.bytes > self.recent_bytes && r.records.len() > 1 {
                let (_, _, old, _) = r.records.pop_front().expect("non-empty");
                r.bytes -= old.len();
            }
        }
        self.appended.send_replace(lsn);
    }

    /// Records after `after`, at most `max_bytes` of them (at least one), from memory; `None`
    /// when memory no longer reaches back to `after + 1` (read the WAL instead).
    pub fn recent_after(&self, after: u64, max_bytes: usize) -> Option<Frames> {
        let r = self.recent.lock();
        let first = r.records.front()?.0;
        if first > after + 1 {
            return None;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for (lsn, epoch, op, _) in r.records.iter().skip((after + 1 - first) as usize) {
            if !out.is_empty() && bytes + op.len() > max_bytes {
                break;
            }
            bytes += op.len();
            out.push((*lsn, *epoch, op.clone()));
        }
        Some(out)
    }

    /// Whether the records after `after` held in memory add up to at least `bytes` (false
    /// when memory no longer reaches back: the caller reads the WAL anyway).
    pub fn recent_bytes_after(&self, after: u64, bytes: usize) -> bool {
        let r = self.recent.lock();
        let Some(first) = r.records.front().map(|f| f.0) else { return false };
        let skip = (after + 1).saturating_sub(first) as usize;
        let mut sum = 0;
        r.records.iter().skip(skip).any(|(_, _, op, _)| {
            sum += op.len();
            sum >= bytes
        })
    }

    /// The epoch of the record at `lsn`, when it is still in memory.
    pub fn recent_epoch(&self, lsn: u64) -> Option<u64> {
        let r = self.recent.lock();
        let first = r.records.front()?.0;
        let i = lsn.checked_sub(first)? as usize;
        r.records.get(i).map(|(_, e, _, _)| *e)
    }

    /// A receiver that changes when a record is applied.
    pub fn watch_appended(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// A replica confirmed everything up to `lsn`.
    pub fn confirmed(&self, node: &str, generation: u64, lsn: u64) {
        let mut s = self.state.lock();
        if !s.current(node, generation) {
            return;
        }
        if let Some(r) = s.replicas.get_mut(node) {
            r.acked_lsn = r.acked_lsn.max(lsn);
            r.state = ReplicaState::Streaming;
            r.error = None;
        }
        drop(s);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Where the stream to `node` stands.
    pub fn set_stream_state(
        &self,
        node: &str,
        generation: u64,
        state: ReplicaState,
        error: Option<String>,
    ) {
        let mut s = self.state.lock();
        if !s.current(node, generation) {
            return;
        }
        if let Some(r) = s.replicas.get_mut(node) {
            r.state = state;
            r.error = error;
        }
    }

    /// Whether a write logged at `lsn` may be acknowledged under `mode`: `Ok(true)` yes,
    /// `Ok(false)` not yet, `Err` never (lease lapsed, stepped down, too few in sync).
    fn acknowledged(&self, lsn: u64, mode: AckMode, acks: u32) -> Result<bool> {
        let s = self.state.lock();
        if s.stored.role != Role::Primary || s.retired {
            return Err(ShardError::ReplicationTimeout(format!(
                "this copy stepped down before the write (lsn {lsn}) was confirmed; its outcome \
                 is unknown"
            )));
        }
        if s.stored.leased && s.lease_until.is_none_or(|t| t <= Instant::now()) {
            return Err(ShardError::ReplicationTimeout(format!(
                "the primary's lease lapsed before the write (lsn {lsn}) could be acknowledged; \
                 its outcome is unknown"
            )));
        }
        let confirmed = s
            .in_sync
            .iter()
            .filter(|n| s.replicas.get(*n).is_some_and(|r| r.acked_lsn >= lsn))
            .count() as u32;
        // The in-sync replicas this write needs; once fewer are left (the controller took
        // some out), it cannot be acknowledged until they catch up: say so now, not at the
        // timeout.
        let needed = match mode {
            AckMode::Async => return Ok(true),
            AckMode::SemiSync => acks.max(s.min_in_sync),
            AckMode::Sync => s.min_in_sync,
        };
        if (s.in_sync.len() as u32) < needed {
            return Err(ShardError::ReplicationTimeout(format!(
                "the in-sync set shrank to {} replicas (this write needs {needed}) before the \
                 write (lsn {lsn}) was confirmed; its outcome is unknown",
                s.in_sync.len()
            )));
        }
        Ok(match mode {
            AckMode::SemiSync => confirmed >= needed,
            AckMode::Sync => confirmed == s.in_sync.len() as u32,
            AckMode::Async => true,
        })
    }

    /// How long the oldest record after `acked` has waited for its confirmation (zero when
    /// `acked` reaches `last_lsn`).
    fn lag(&self, acked: u64, last_lsn: u64, now: Instant) -> Duration {
        if acked >= last_lsn {
            return Duration::ZERO;
        }
        let r = self.recent.lock();
        let at = match r.records.front() {
            Some(&(first, ..)) if first <= acked + 1 => {
                r.records.get((acked + 1 - first) as usize).map(|x| x.3)
            }
            Some(front) => Some(front.3),
            None => None,
        };
        at.map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// The largest [`lag`](Self::lag) among the in-sync replicas whose stream is up (what
    /// flow control keeps under its target): that of the one furthest behind, since the lag
    /// only shrinks as confirmations grow.
    fn in_sync_lag(&self, last_lsn: u64) -> Duration {
        let furthest_behind = {
            let s = self.state.lock();
            if s.stored.role != Role::Primary {
                return Duration::ZERO;
            }
            s.in_sync
                .iter()
                .filter_map(|n| s.replicas.get(n))
                .filter(|r| r.state == ReplicaState::Streaming)
                .map(|r| r.acked_lsn)
                .min()
        };
        furthest_behind.map_or(Duration::ZERO, |a| self.lag(a, last_lsn, Instant::now()))
    }

    /// What `GET /v1/shards/{name}` shows.
    pub fn info(&self, last_lsn: u64, last_epoch: u64) -> ReplicationInfo {
        let s = self.state.lock();
        let now = Instant::now();
        let oldest_waiting = |acked: u64| self.lag(acked, last_lsn, now).as_secs_f64();
        ReplicationInfo {
            role: s.stored.role,
            epoch: s.stored.epoch,
            last_lsn,
            last_epoch,
            lease_remaining_ms: (s.stored.role == Role::Primary && s.stored.leased).then(|| {
                s.lease_until.map_or(0, |t| t.saturating_duration_since(now).as_millis() as u64)
            }),
            replicas: s
                .replicas
                .iter()
                .map(|(node, r)| ReplicaProgress {
                    node: node.clone(),
                    acked_lsn: r.acked_lsn,
                    lag_records: last_lsn.saturating_sub(r.acked_lsn),
                    lag_seconds: oldest_waiting(r.acked_lsn),
                    state: r.state,
                    error: r.error.clone(),
                })
                .collect(),
            in_sync: s.in_sync.iter().cloned().collect(),
            min_in_sync: s.min_in_sync,
        }
    }
}

/// The instant (this process's monotonic clock) at which a lease ending at Unix time
/// `until_ms` (wall clock) ends; already past when it is.
fn lease_deadline(until_ms: u64) -> Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Instant::now() + Duration::from_millis(until_ms.saturating_sub(now_ms))
}

/// Unix time in milliseconds, `ms` from now (what a controller puts in `lease_until_ms`).
pub fn unix_ms_in(ms: u64) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        + ms
}

impl Recent {
    fn clear(&mut self) {
        self.records.clear();
        self.bytes = 0;
    }
}

impl LocalShard {
    /// Flow control: waits, at most `max_wait`, until no in-sync replica's oldest unconfirmed
    /// record is older than `target`. Called before a write is
    /// logged, so writers slow down to the replicas' pace when these fall behind (on CPU
    /// shared with the primary, or on a slower machine), which bounds the replication lag and
    /// with it what an `async` failover can lose. A replica whose stream is down is not
    /// waited for (the controller takes it out of the in-sync set).
    pub async fn flow_control(&self, target: Duration, max_wait: Duration) {
        if target.is_zero() || self.repl.in_sync_lag(self.last_lsn()) <= target {
            return;
        }
        self.env.metrics.flow_control_waits.with_label_values(&[&self.name]).inc();
        let mut changed = self.repl.changed.subscribe();
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            changed.borrow_and_update();
            if self.repl.in_sync_lag(self.last_lsn()) <= target
                || tokio::time::Instant::now() >= deadline
            {
                return;
            }
            // Confirmations wake it; so does the clock, as records age while nothing arrives.
            let tick = (tokio::time::Instant::now() + Duration::from_millis(5)).min(deadline);
            let _ = tokio::time::timeout_at(tick, changed.changed()).await;
        }
    }

    /// Waits until the write logged at `lsn` may be acknowledged under `mode` (see the module
    /// docs), at most `timeout`.
    pub async fn await_acks(
        &self,
        lsn: u64,
        mode: AckMode,
        acks: u32,
        timeout: Duration,
    ) -> Result<()> {
        let mut changed = self.repl.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changed.borrow_and_update();
            if self.repl.acknowledged(lsn, mode, acks)? {
                return Ok(());
            }
            // Wake up for confirmations, and at least every 50 ms to notice a lapsing lease.
            let tick = (tokio::time::Instant::now() + Duration::from_millis(50)).min(deadline);
            let _ = tokio::time::timeout_at(tick, changed.changed()).await;
            if tokio::time::Instant::now() >= deadline {
                return match self.repl.acknowledged(lsn, mode, acks)? {
                    true => Ok(()),
                    false => Err(ShardError::ReplicationTimeout(format!(
                        "the write (lsn {lsn}) is durable on the primary but was not confirmed \
                         by enough in-sync replicas within {} ms; its outcome is unknown",
                        timeout.as_millis()
                    ))),
                };
            }
        }
    }
}

/// Loads `role.json` from a shard directory, if present.
pub fn load(dir: &Path) -> Result<Option<StoredRole>> {
    let path = dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ShardError::Corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `role.json` durably (temporary file, fsync, rename, directory fsync).
pub fn save(dir: &Path, role: &StoredRole) -> Result<()> {
    crate::guard::write_durably(dir, FILE, &serde_json::to_vec_pretty(role).expect("serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn primary(replicas: &[&str], in_sync: &[&str], min: u32, lease_ms: u64) -> RoleAssignment {
        RoleAssignment {
            epoch: 1,
            role: Role::Primary,
            lease_until_ms: if lease_ms == 0 { 0 } else { unix_ms_in(lease_ms) },
            replicas: replicas
                .iter()
                .map(|n| ReplicaTarget { node: n.to_string(), url: format!("http://{n}") })
                .collect(),
            in_sync: in_sync.iter().map(|s| s.to_string()).collect(),
            min_in_sync: min,
            handing_over: false,
        }
    }

    fn fresh() -> Replication {
        Replication::new(StoredRole { role: Role::Primary, epoch: 0, leased: false }, 0, 1 << 20)
    }

    #[test]
    fn acks_count_only_in_sync_replicas() {
        let r = fresh();
        let (starts, persist) =
            r.assign(&primary(&["a", "b", "c"], &["a", "b"], 1, 60_000)).unwrap();
        assert_eq!(starts.len(), 3);
        assert!(persist, "epoch and lease changed");
        let g = starts[0].2;
        r.confirmed("c", g, 10);
        assert!(!r.acknowledged(10, AckMode::SemiSync, 1).unwrap(), "c is not in sync");
        r.confirmed("a", g, 10);
        assert!(r.acknowledged(10, AckMode::SemiSync, 1).unwrap());
        assert!(!r.acknowledged(10, AckMode::Sync, 0).unwrap(), "b has not confirmed");
        r.confirmed("b", g, 12);
        assert!(r.acknowledged(10, AckMode::Sync, 0).unwrap());
        assert!(r.acknowledged(99, AckMode::Async, 0).unwrap());
        r.confirmed("b", g - 1, 99); // an old shipper's confirmation is ignored
        assert!(!r.acknowledged(99, AckMode::Sync, 0).unwrap());
    }

    #[test]
    fn a_waiting_write_fails_once_too_few_replicas_are_in_sync() {
        let r = fresh();
        r.assign(&primary(&["a", "b"], &["a", "b"], 1, 60_000)).unwrap();
        assert!(!r.acknowledged(5, AckMode::SemiSync, 2).unwrap(), "waits for a and b");
        // The controller took b out: two acks can no longer come, one still can.
        r.assign(&primary(&["a", "b"], &["a"], 1, 0)).unwrap();
        let shrank = |mode, acks| matches!(r.acknowledged(5, mode, acks), Err(ShardError::ReplicationTimeout(m)) if m.contains("shrank"));
        assert!(shrank(AckMode::SemiSync, 2));
        assert!(!r.acknowledged(5, AckMode::SemiSync, 1).unwrap());
        assert!(!r.acknowledged(5, AckMode::Sync, 0).unwrap(), "a can still confirm");
        r.assign(&primary(&["a", "b"], &[], 1, 0)).unwrap();
        assert!(shrank(AckMode::SemiSync, 1));
        assert!(shrank(AckMode::Sync, 0), "below min_in_sync");
        assert!(r.acknowledged(5, AckMode::Async, 0).unwrap());
    }

    #[test]
    fn quorum_is_checked_before_writing() {
        let r = fresh();
        r.assign(&primary(&["a", "b"], &["a"], 2, 0)).unwrap();
        assert!(matches!(r.check_quorum(AckMode::Sync, 0), Err(ShardError::NotEnoughReplicas(_))));
        r.check_quorum(AckMode::Async, 0).unwrap();
        assert!(matches!(
            r.check_quorum(AckMode::SemiSync, 2),
            Err(ShardError::NotEnoughReplicas(_))
        ));
    }

    #[test]
    fn a_lapsed_lease_stops_writes_and_acks() {
        let r = fresh();
        r.check_writable().unwrap(); // never leased: a copy without replicas
        r.assign(&primary(&[], &[], 0, 30)).unwrap();
        r.check_writable().unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(r.check_writable(), Err(ShardError::Unavailable(_))));
        assert!(matches!(
            r.acknowledged(1, AckMode::Async, 0),
            Err(ShardError::ReplicationTimeout(_))
        ));
        // A renewal without a new lease keeps the lapsed one; with one, writes resume.
        r.assign(&primary(&[], &[], 0, 0)).unwrap();
        assert!(r.check_writable().is_err());
        r.assign(&primary(&[], &[], 0, 1_000)).unwrap();
        r.check_writable().unwrap();
    }

    #[test]
    fn a_primary_handing_over_takes_nothing_new_but_acks_what_it_logged() {
        let r = fresh();
        let (starts, _) = r.assign(&primary(&["a"], &["a"], 1, 60_000)).unwrap();
        let handing = RoleAssignment { handing_over: true, ..primary(&["a"], &["a"], 1, 0) };
        assert!(r.assign(&handing).unwrap().0.is_empty(), "the replica keeps its stream");
        assert!(matches!(r.check_writable(), Err(ShardError::Unavailable(_))));
        assert!(!r.acknowledged(7, AckMode::Sync, 0).unwrap(), "waits for a's confirmation");
        r.confirmed("a", starts[0].2, 7);
        assert!(r.acknowledged(7, AckMode::Sync, 0).unwrap(), "a logged write is still acked");
        // The handover given up: the next renewal lifts it.
        r.assign(&primary(&["a"], &["a"], 1, 60_000)).unwrap();
        r.check_writable().unwrap();
    }

    #[test]
    fn epochs_only_grow_and_a_newer_primary_deposes() {
        let r = fresh();
        r.assign(&primary(&["a"], &["a"], 0, 0)).unwrap();
        let stale = RoleAssignment { epoch: 0, ..primary(&[], &[], 0, 0) };
        assert!(matches!(r.assign(&stale), Err(ShardError::StaleEpoch(_))));
        assert!(matches!(r.accept_primary(1), Err(ShardError::StaleEpoch(_))), "we lead epoch 1");
        assert!(r.accept_primary(2).unwrap(), "a newer primary: adopt its epoch as a replica");
        assert!(matches!(r.check_writable(), Err(ShardError::NotPrimary(_))));
        assert!(matches!(r.accept_primary(1), Err(ShardError::StaleEpoch(_))));
        assert!(!r.accept_primary(2).unwrap());
        let demote = RoleAssignment { epoch: 2, role: Role::Primary, ..primary(&[], &[], 0, 0) };
        assert!(
            matches!(r.assign(&demote), Err(ShardError::StaleEpoch(_))),
            "same epoch, new role"
        );
    }

    #[test]
    fn memory_tail_serves_recent_records_only() {
        let r = fresh();
        r.assign(&primary(&["a"], &[], 0, 0)).unwrap();
        for lsn in 1..=5 {
            r.appended(lsn, 1, &[lsn as u8; 10]);
        }
        let got = r.recent_after(2, 1 << 20).unwrap();
        assert_eq!(got.iter().map(|x| x.0).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(r.recent_after(3, 15).unwrap().len(), 1, "a byte budget, at least one");
        assert!(r.recent_after(5, 100).unwrap().is_empty());
        assert_eq!(r.recent_epoch(4), Some(1));
        assert_eq!(r.recent_epoch(9), None);
    }
}
