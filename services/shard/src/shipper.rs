//! The primary's side of replication: one task per replica ships the log in LSN order, with up
//! to `--replication-window` batches in flight (the replica applies each only after the one it
//! continues, so the stream stays ordered). A batch holds every record applied since the
//! previous one was sent (up to [`MAX_BATCH_BYTES`]), so under load batches grow instead of
//! requests multiplying: while batches are in flight, the next one leaves only once it holds
//! [`PIPELINE_MIN_BYTES`] (every batch costs the replica an fsync, and on a fast link waiting
//! for the answer is cheaper than more, smaller batches; on a slow or busy one enough
//! accumulates during a round trip).
//!
//! Each task first asks the replica where its log ends; when the primary's log has the same
//! record there, streaming resumes after it, otherwise (the replica is ahead, diverged, or
//! behind what the log still holds) it sends a snapshot and streams from the snapshot's LSN.
//! An idle stream sends an empty batch every [`KEEPALIVE`], which also notices a replica that
//! was wiped or restarted. A replica that answers `stale_epoch` knows a newer primary: this
//! copy then stops taking writes ([`crate::replication::Replication::deposed`]). Failures are
//! retried with backoff (batches still in flight are abandoned, and the stream resumes from
//! where the replica's log ends); the task ends when the assignment that started it is
//! replaced.
//!
//! The stream also hands the replica the primary's write guard ([`crate::guard`]), or its
//! absence: before streaming, whenever the stream is set up, and whenever the primary's
//! guard changed since. Routers install guards on every copy, but skip a replica they cannot
//! reach while it is out of sync; without this, such a replica could catch up, be promoted
//! and take writes to points its shard had handed over.

use crate::error::ShardError;
use crate::guard::Guard;
use crate::replica::{encode_frames, Frames};
use crate::replication::ShipperStart;
use crate::shard::LocalShard;
use futures::stream::{FuturesOrdered, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use vdb_api::{ErrorCode, ReplicaState, WriteGuard};
use vdb_client::{ClientError, ShardClient};

/// Most bytes of encoded ops in one batch.
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Least bytes of records a batch needs to leave while others are in flight.
pub const PIPELINE_MIN_BYTES: usize = MAX_BATCH_BYTES / 16;
/// An idle stream checks in this often.
pub const KEEPALIVE: Duration = Duration::from_millis(500);
/// Deadline of one batch.
const BATCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of one snapshot transfer.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(300);

/// Starts the shippers an assignment asked for.
pub fn start(shard: &Arc<LocalShard>, starts: Vec<ShipperStart>) {
    for (node, url, generation) in starts {
        tokio::spawn(run(shard.clone(), node, url, generation));
    }
}

/// Why the stream stopped.
enum Stop {
    /// Another copy leads a newer epoch.
    Deposed,
    /// Retry after a pause.
    Failed(String),
}

impl From<ClientError> for Stop {
    fn from(e: ClientError) -> Self {
        match e.code() {
            Some(ErrorCode::StaleEpoch) => Stop::Deposed,
            _ => Stop::Failed(e.to_string()),
        }
    }
}

impl From<ShardError> for Stop {
    fn from(e: ShardError) -> Self {
        Stop::Failed(e.to_string())
    }
}

struct Stream {
    shard: Arc<LocalShard>,
    node: String,
    generation: u64,
    client: ShardClient,
    bulk: ShardClient,
    /// The last record (lsn, epoch) sent to the replica, once its log is known to match ours
    /// up to where sending started.
    prev: Option<(u64, u64)>,
    /// The primary's guard (by identity) that the replica is known to hold; `None` until the
    /// stream is set up.
    mirrored: Option<Option<Arc<Guard>>>,
}

async fn run(shard: Arc<LocalShard>, node: String, url: String, generation: u64) {
    let clients = ShardClient::with_timeout(&url, BATCH_TIMEOUT)
        .and_then(|c| Ok((c, ShardClient::with_timeout(&url, SNAPSHOT_TIMEOUT)?)));
    let (client, bulk) = match clients {
        Ok(c) => c,
        Err(e) => {
            shard.repl.set_stream_state(
                &node,
                generation,
                ReplicaState::Unreachable,
                Some(e.to_string()),
            );
            return;
        }
    };
    let mut s = Stream { shard, node, generation, client, bulk, prev: None, mirrored: None };
    let mut backoff = Duration::from_millis(20);
    tracing::info!(shard = %s.shard.name, replica = %s.node, "replication stream started");
    while s.shard.repl.is_current(&s.node, generation) {
        match s.step().await {
            Ok(()) => backoff = Duration::from_millis(20),
            Err(Stop::Deposed) => {
                s.shard.repl.deposed(&s.node, generation);
                break;
            }
            Err(Stop::Failed(e)) => {
                tracing::debug!(shard = %s.shard.name, replica = %s.node, error = %e, "replication stream failed; retrying");
                s.shard.repl.set_stream_state(
                    &s.node,
                    generation,
                    ReplicaState::Unreachable,
                    Some(e),
                );
                s.prev = None;
                s.mirrored = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    tracing::info!(shard = %s.shard.name, replica = %s.node, "replication stream ended");
}

impl Stream {
    /// Finds where the replica's log ends and streams from there; returns when the stream
    /// must be set up again (after a mismatch or a snapshot) or the assignment ended.
    async fn step(&mut self) -> Result<(), Stop> {
        if self.prev.is_none() {
            let info = self.client.get_shard(&self.shard.name).await?;
            let repl = info.replication;
            if repl.epoch > self.shard.repl.epoch() {
                return Err(Stop::Deposed);
            }
            self.mirror_guard(info.guard).await?;
            return self.resume_from(repl.last_lsn, repl.last_epoch).await;
        }
        self.stream().await
    }

    /// Ships batches after `prev`, keeping up to the window in flight, and confirms them in
    /// order as the replica acknowledges them.
    async fn stream(&mut self) -> Result<(), Stop> {
        let window = self.shard.env.replication_window.max(1);
        let mut in_flight = FuturesOrdered::new();
        let mut appended = self.shard.repl.watch_appended();
        while self.shard.repl.is_current(&self.node, self.generation) {
            if !self.guard_mirrored() {
                let theirs = self.mirrored.clone().flatten().map(|g| g.spec.clone());
                self.mirror_guard(theirs).await?;
            }
            let (sent, sent_epoch) = self.prev.expect("streaming starts from a known record");
            let worth_sending = in_flight.is_empty()
                || (in_flight.len() < window
                    && self.shard.repl.recent_bytes_after(sent, PIPELINE_MIN_BYTES));
            if worth_sending {
                let frames = match self.frames_after(sent).await {
                    Ok(f) => f,
                    Err(ShardError::WalTruncated(_)) => return self.resync().await,
                    Err(e) => return Err(e.into()),
                };
                if let Some(&(lsn, epoch, _)) = frames.last() {
                    if !in_flight.is_empty() {
                        let pipelined = &self.shard.env.metrics.replication_pipelined;
                        pipelined.with_label_values(&[&self.shard.name]).inc();
                    }
                    in_flight.push_back(self.send(sent, sent_epoch, &frames));
                    self.prev = Some((lsn, epoch));
                    continue;
                }
            }
            // Everything is sent, or too little waits to be worth a batch besides those in
            // flight, or the window is full: wait for an acknowledgement, a new record, or
            // (idle) the time to check in.
            tokio::select! {
                Some(ack) = in_flight.next(), if !in_flight.is_empty() => {
                    let ack = ack?;
                    if !ack.matched {
                        return self.resume_from(ack.last_lsn, ack.last_epoch).await;
                    }
                    self.shard.repl.confirmed(&self.node, self.generation, ack.durable_lsn);
                }
                _ = appended.changed(), if in_flight.len() < window => {}
                _ = tokio::time::sleep(KEEPALIVE), if in_flight.is_empty() => {
                    in_flight.push_back(self.send(sent, sent_epoch, &Vec::new()));
                }
            }
        }
        Ok(())
    }

    /// Whether the replica holds the primary's current guard (or, like it, none).
    fn guard_mirrored(&self) -> bool {
        let ours = self.shard.guard.read();
        match (&self.mirrored, &*ours) {
            (Some(Some(sent)), Some(current)) => Arc::ptr_eq(sent, current),
            (Some(None), None) => true,
            _ => false,
        }
    }

    /// Gives the replica, which holds `theirs`, the primary's guard or removes its own when
    /// the primary has none. Repeats while the primary's guard changes meanwhile: a router
    /// installs a guard on the primary before its replicas, so the guard left on the replica
    /// is never older than one a router sent it.
    async fn mirror_guard(&mut self, mut theirs: Option<WriteGuard>) -> Result<(), Stop> {
        loop {
            let ours = self.shard.guard.read().clone();
            let spec = ours.as_ref().map(|g| &g.spec);
            if spec != theirs.as_ref() {
                match spec {
                    Some(spec) => {
                        self.client.install_guard(&self.shard.name, spec).await?;
                    }
                    None => self.client.remove_guard(&self.shard.name).await?,
                }
                tracing::info!(shard = %self.shard.name, replica = %self.node,
                    guarded = spec.is_some(), "write guard handed to a replica");
            }
            theirs = spec.cloned();
            self.mirrored = Some(ours);
            if self.guard_mirrored() {
                return Ok(());
            }
        }
    }

    /// One batch: `frames`, continuing the record (`prev_lsn`, `prev_epoch`).
    fn send(
        &self,
        prev_lsn: u64,
        prev_epoch: u64,
        frames: &Frames,
    ) -> impl std::future::Future<Output = Result<vdb_api::ReplicateAck, ClientError>> {
        let metrics = &self.shard.env.metrics;
        metrics.replication_batches.with_label_values(&[&self.shard.name]).inc();
        let (client, name) = (self.client.clone(), self.shard.name.clone());
        let (epoch, body) = (self.shard.repl.epoch(), encode_frames(frames));
        async move { client.replicate(&name, epoch, prev_lsn, prev_epoch, body).await }
    }

    /// The replica's log ends at (`lsn`, `epoch`): stream from there when ours has the same
    /// record, otherwise send a snapshot.
    async fn resume_from(&mut self, lsn: u64, epoch: u64) -> Result<(), Stop> {
        let shard = self.shard.clone();
        let ours = tokio::task::spawn_blocking(move || shard.epoch_at(lsn))
            .await
            .map_err(|e| Stop::Failed(e.to_string()))??;
        if lsn <= self.shard.last_lsn() && ours == Some(epoch) {
            self.prev = Some((lsn, epoch));
            self.shard.repl.confirmed(&self.node, self.generation, lsn);
            return Ok(());
        }
        self.resync().await
    }

    /// Sends the replica a snapshot of the shard and streams on from the LSN it covers.
    async fn resync(&mut self) -> Result<(), Stop> {
        self.shard.repl.set_stream_state(
            &self.node,
            self.generation,
            ReplicaState::Resyncing,
            None,
        );
        let shard = self.shard.clone();
        let transfer = tokio::task::spawn_blocking(move || shard.snapshot_for_transfer())
            .await
            .map_err(|e| Stop::Failed(e.to_string()))??;
        tracing::info!(shard = %self.shard.name, replica = %self.node, lsn = transfer.lsn,
            "sending a snapshot to a replica");
        let epoch = self.shard.repl.epoch();
        let ack =
            self.bulk.install_replica_snapshot(&self.shard.name, epoch, transfer.encode()).await?;
        self.shard.env.metrics.replica_snapshots.with_label_values(&[&self.shard.name]).inc();
        self.prev = Some((ack.last_lsn, ack.last_epoch));
        self.shard.repl.confirmed(&self.node, self.generation, ack.durable_lsn);
        Ok(())
    }

    async fn frames_after(&self, after: u64) -> Result<Frames, ShardError> {
        if let Some(frames) = self.shard.repl.recent_after(after, MAX_BATCH_BYTES) {
            return Ok(frames);
        }
        let shard = self.shard.clone();
        tokio::task::spawn_blocking(move || shard.wal_frames_after(after, MAX_BATCH_BYTES))
            .await
            .map_err(|e| ShardError::Unavailable(e.to_string()))?
    }
}
