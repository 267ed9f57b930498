//! The local backend: the whole store in memory, persisted to one file on every mutation.
//!
//! One `tokio::sync::Mutex` serializes everything, and a mutation holds it until its file
//! write is durable, so readers never see state that could be lost, and revisions, history and
//! watcher delivery all follow one order. Leases and the watch history exist only in memory:
//! on open, keys bound to a lease are dropped (their holder is gone with the old process) and
//! the history starts at the file's revision.

mod file;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, MutexGuard};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::file::{MetaFile, Stored};
use crate::watch::WatchSender;
use crate::{
    CasOutcome, KeyValue, LeaseId, Listing, MetaError, MetaStore, Revision, WatchEvent, WatchStream,
};

/// Events kept for watches that start in the past.
const HISTORY_LIMIT: usize = 10_000;
/// How often the reaper looks for expired leases.
const REAP_INTERVAL: Duration = Duration::from_millis(50);

/// The file-backed [`MetaStore`] for one router on one machine.
#[derive(Debug)]
pub struct LocalStore {
    shared: Arc<Shared>,
    reaper: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    file: Arc<MetaFile>,
}

#[derive(Debug)]
struct State {
    revision: Revision,
    kvs: BTreeMap<String, Stored>,
    leases: HashMap<i64, Lease>,
    next_lease: i64,
    /// Recent events in revision order.
    history: VecDeque<WatchEvent>,
    /// Every event with a revision above this one is in `history`.
    history_start: Revision,
    watchers: Vec<Watcher>,
}

#[derive(Debug)]
struct Lease {
    ttl: Duration,
    deadline: Instant,
}

#[derive(Debug)]
struct Watcher {
    prefix: String,
    /// Only events above this revision (a watch may start in the future, like etcd's).
    after: Revision,
    sender: WatchSender,
}

impl LocalStore {
    /// Opens (creating if needed) the store file at `path` and locks it for this process.
    /// Fails with [`MetaError::InUse`] if another open store holds it. Dropping the store
    /// releases the file.
    pub async fn open(path: impl AsRef<Path>) -> Result<LocalStore, MetaError> {
        let path = path.as_ref().to_path_buf();
        let (file, loaded) = tokio::task::spawn_blocking(move || MetaFile::open(&path))
            .await
            .map_err(|e| MetaError::Other(format!("open task failed: {e}")))??;
        let file = Arc::new(file);
        let mut revision = loaded.revision;
        let mut kvs = loaded.kvs;
        let before = kvs.len();
        kvs.retain(|_, stored| stored.lease.is_none());
        if kvs.len() != before {
            // The dropped keys' leases died with the previous process: their deletion is a
            // mutation like any other and gets a revision.
            revision += 1;
            let bytes = file::encode(revision, &kvs);
            let writer = file.clone();
            tokio::task::spawn_blocking(move || writer.replace(&bytes))
                .await
                .map_err(|e| MetaError::Other(format!("write task failed: {e}")))??;
            tracing::info!(
                dropped = before - kvs.len(),
                "dropped lease-bound metastore keys of a previous process"
            );
        }
        let state = State {
            revision,
            kvs,
            leases: HashMap::new(),
            next_lease: 1,
            history: VecDeque::new(),
            history_start: revision,
            watchers: Vec::new(),
        };
        let shared = Arc::new(Shared { state: Mutex::new(state), file });
        let reaper = tokio::spawn(reap_leases(Arc::downgrade(&shared)));
        Ok(LocalStore { shared, reaper })
    }
}

impl Drop for LocalStore {
    /// Closes the store: when this returns the file lock is released, even if a background
    /// write still holds a reference to the state.
    fn drop(&mut self) {
        self.reaper.abort();
        self.shared.file.close();
    }
}

/// Deletes the keys of expired leases until the store is dropped.
async fn reap_leases(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut state = shared.state.lock().await;
        if let Err(e) = shared.expire_leases(&mut state).await {
            tracing::warn!(error = %e, "failed to delete the keys of an expired lease");
        }
    }
}

/// One key's new state in a mutation (`None`: deleted).
type Change = (String, Option<Stored>);

impl Shared {
    /// Applies `changes` at the next revision: persists the new state, then updates memory and
    /// notifies watchers. The state is only touched after the write succeeded, with no await in
    /// between, so an error or a caller that gives up mid-write (a dropped future) changes
    /// nothing in memory.
    async fn commit(
        &self,
        state: &mut MutexGuard<'_, State>,
        changes: Vec<Change>,
    ) -> Result<Revision, MetaError> {
        let revision = state.revision + 1;
        let mut kvs = state.kvs.clone();
        let mut events = Vec::with_capacity(changes.len());
        for (key, new) in changes {
            match new {
                Some(stored) => {
                    events.push(WatchEvent::Put(to_kv(&key, &stored)));
                    kvs.insert(key, stored);
                }
                None => {
                    kvs.remove(&key);
                    events.push(WatchEvent::Delete { key, mod_revision: revision });
                }
            }
        }
        let bytes = file::encode(revision, &kvs);
        let file = self.file.clone();
        match tokio::task::spawn_blocking(move || file.replace(&bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(MetaError::Io(e)),
            Err(e) => return Err(MetaError::Other(format!("write task failed: {e}"))),
        }
        state.kvs = kvs;
        state.revision = revision;
        for event in events {
            state.publish(event);
        }
        Ok(revision)
    }

    /// Ends every lease past its deadline, deleting its keys (one revision per lease).
    async fn expire_leases(&self, state: &mut MutexGuard<'_, State>) -> Result<(), MetaError> {
        let now = Instant::now();
        let expired: Vec<i64> =
            state.leases.iter().filter(|(_, l)| l.deadline <= now).map(|(id, _)| *id).collect();
        for id in expired {
            // Forget the lease only once its keys are gone, so a failed write is retried.
            self.delete_lease_keys(state, id).await?;
            state.leases.remove(&id);
            tracing::debug!(lease = id, "metastore lease expired");
        }
        Ok(())
    }

    async fn delete_lease_keys(
        &self,
        state: &mut MutexGuard<'_, State>,
        lease: i64,
    ) -> Result<(), MetaError> {
        let changes: Vec<Change> = state
            .kvs
            .iter()
            .filter(|(_, s)| s.lease == Some(lease))
            .map(|(k, _)| (k.clone(), None))
            .collect();
        if !changes.is_empty() {
            self.commit(state, changes).await?;
        }
        Ok(())
    }

    /// Locks the state, first reaping leases that are past their deadline so that no
    /// operation observes a key whose lease has already ended.
    async fn lock(&self) -> Result<MutexGuard<'_, State>, MetaError> {
        let mut state = self.state.lock().await;
        self.expire_leases(&mut state).await?;
        Ok(state)
    }
}

impl State {
    /// Records an event in the history and hands it to matching watchers.
    fn publish(&mut self, event: WatchEvent) {
        if self.history.len() == HISTORY_LIMIT {
            if let Some(oldest) = self.history.pop_front() {
                self.history_start = oldest.mod_revision();
            }
        }
        self.history.push_back(event.clone());
        let key = event.key().to_string();
        self.watchers.retain(|w| {
            if w.sender.tx.is_closed() {
                return false;
            }
            let wanted = key.starts_with(&w.prefix) && event.mod_revision() > w.after;
            !wanted || w.sender.offer(event.clone())
        });
    }

    fn check_lease(&self, lease: Option<LeaseId>) -> Result<(), MetaError> {
        match lease {
            Some(LeaseId(id)) if !self.leases.contains_key(&id) => Err(MetaError::LeaseExpired),
            _ => Ok(()),
        }
    }
}

fn to_kv(key: &str, s: &Stored) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: s.value.clone(),
        mod_revision: s.mod_revision,
        lease: s.lease.map(LeaseId),
    }
}

#[async_trait]
impl MetaStore for LocalStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, MetaError> {
        let state = self.shared.lock().await?;
        Ok(state.kvs.get(key).map(|s| to_kv(key, s)))
    }

    async fn list(&self, prefix: &str) -> Result<Listing, MetaError> {
        let state = self.shared.lock().await?;
        let kvs = state
            .kvs
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, s)| to_kv(k, s))
            .collect();
        Ok(Listing { kvs, revision: state.revision })
    }

    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<Revision, MetaError> {
        let mut state = self.shared.lock().await?;
        state.check_lease(lease)?;
        let stored = Stored { value, mod_revision: state.revision + 1, lease: lease.map(|l| l.0) };
        self.shared.commit(&mut state, vec![(key.to_string(), Some(stored))]).await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Revision>,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<CasOutcome, MetaError> {
        let mut state = self.shared.lock().await?;
        let current = state.kvs.get(key);
        if current.map(|s| s.mod_revision) != expected {
            return Ok(CasOutcome::Conflict(current.map(|s| to_kv(key, s))));
        }
        state.check_lease(lease)?;
        let stored = Stored { value, mod_revision: state.revision + 1, lease: lease.map(|l| l.0) };
        let revision =
            self.shared.commit(&mut state, vec![(key.to_string(), Some(stored))]).await?;
        Ok(CasOutcome::Written(revision))
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<bool, MetaError> {
        let mut state = self.shared.lock().await?;
        let Some(current) = state.kvs.get(key) else {
            return Ok(false);
        };
        if expected.is_some_and(|rev| rev != current.mod_revision) {
            return Ok(false);
        }
        self.shared.commit(&mut state, vec![(key.to_string(), None)]).await?;
        Ok(true)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, MetaError> {
        let mut state = self.shared.lock().await?;
        if after < state.history_start {
            return Err(MetaError::Compacted);
        }
        let (sender, stream) = WatchStream::channel();
        for event in &state.history {
            if event.mod_revision() > after && event.key().starts_with(prefix) {
                // The channel holds more than the whole history, so a replay always fits.
                sender.offer(event.clone());
            }
        }
        state.watchers.push(Watcher { prefix: prefix.to_string(), after, sender });
        Ok(stream)
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, MetaError> {
        let mut state = self.shared.lock().await?;
        let id = state.next_lease;
        state.next_lease += 1;
        let deadline = Instant::now() + ttl;
        state.leases.insert(id, Lease { ttl, deadline });
        Ok(LeaseId(id))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), MetaError> {
        let mut state = self.shared.lock().await?;
        let lease = state.leases.get_mut(&lease.0).ok_or(MetaError::LeaseExpired)?;
        lease.deadline = Instant::now() + lease.ttl;
        Ok(())
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), MetaError> {
        let mut state = self.shared.lock().await?;
        if state.leases.contains_key(&lease.0) {
            self.shared.delete_lease_keys(&mut state, lease.0).await?;
            state.leases.remove(&lease.0);
        }
        Ok(())
    }
}
