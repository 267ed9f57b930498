//! Leader election on the [`MetaStore`] primitives alone, so it is the same code on every
//! backend.
//!
//! The leader of election `name` is whoever holds the key `elections/<name>`, created with a
//! compare-and-swap ("must not exist") and bound to the holder's lease; its value is the
//! candidate id. The holder renews the lease every ttl/3; the key disappears when the lease
//! is revoked or expires, and waiting candidates, watching the key, race to create it again.
//!
//! # Safety assumption
//!
//! At most one candidate considers itself leader at any time, provided clocks advance at
//! roughly the same rate on the holder and the store (no bound on their offset is needed) and
//! the holder reacts to [`Leadership::lost`]. A holder counts from the moment it *sent* its
//! last successful renewal: the store restarts the lease TTL only after receiving it, so the
//! holder's deadline always falls before the store's. Without a successful renewal for
//! 3/4 of the TTL the holder considers itself deposed and `lost` fires, a quarter of the TTL
//! before anyone else can be elected. A leader must stop acting as such when `lost` fires;
//! work it sends elsewhere may carry [`Leadership::revision`] as a fencing token.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout_at, Instant};

use crate::{CasOutcome, LeaseId, MetaError, MetaStore, Revision, WatchEvent, WatchStream};

/// Leader election over a [`MetaStore`]; see the module docs for the guarantee.
#[derive(Debug)]
pub struct Election;

impl Election {
    /// The key that names the leader of election `name`.
    pub fn key(name: &str) -> String {
        format!("elections/{name}")
    }

    /// Waits until `candidate` is elected leader of `name`, then keeps the leadership alive
    /// in a background task. The lease TTL is `ttl` (renewed every ttl/3). Store errors are
    /// returned, not retried: the caller decides whether to campaign again.
    pub async fn campaign(
        store: Arc<dyn MetaStore>,
        name: &str,
        candidate: &str,
        ttl: Duration,
    ) -> Result<Leadership, MetaError> {
        let key = Election::key(name);
        loop {
            if let Some(holder) = store.get(&key).await? {
                wait_until_deleted(&*store, &key, holder.mod_revision).await?;
            }
            let started = Instant::now();
            let lease = store.grant_lease(ttl).await?;
            let value = candidate.as_bytes().to_vec();
            match store.compare_and_swap(&key, None, value, Some(lease)).await {
                Ok(CasOutcome::Written(revision)) => {
                    tracing::info!(election = name, candidate, revision, "elected leader");
                    let held = Held { store: store.clone(), key, lease, revision, ttl };
                    return Ok(Leadership::start(held, candidate, started));
                }
                Ok(CasOutcome::Conflict(_)) => {
                    // Another candidate won the race; wait for its key to go.
                    let _ = store.revoke_lease(lease).await;
                }
                Err(e) => {
                    let _ = store.revoke_lease(lease).await;
                    return Err(e);
                }
            }
        }
    }

    /// The candidate id of the current leader of `name`, if there is one.
    pub async fn leader(store: &dyn MetaStore, name: &str) -> Result<Option<String>, MetaError> {
        let kv = store.get(&Election::key(name)).await?;
        Ok(kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }
}

/// Returns once `key` (last written at `revision`) is deleted.
async fn wait_until_deleted(
    store: &dyn MetaStore,
    key: &str,
    mut revision: Revision,
) -> Result<(), MetaError> {
    loop {
        match store.watch(key, revision).await {
            Ok(mut events) => {
                while let Some(event) = events.next().await {
                    match event {
                        Ok(WatchEvent::Delete { key: k, .. }) if k == key => return Ok(()),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
            Err(MetaError::Compacted) => {}
            Err(e) => return Err(e),
        }
        // The watch ended early: look again and watch from what is there now.
        match store.get(key).await? {
            None => return Ok(()),
            Some(kv) => revision = kv.mod_revision,
        }
    }
}

/// What a leader holds: the election key, bound to its lease.
struct Held {
    store: Arc<dyn MetaStore>,
    key: String,
    lease: LeaseId,
    revision: Revision,
    ttl: Duration,
}

/// A won election. Renews its lease in a background task; [`lost`](Leadership::lost) fires
/// when leadership can no longer be guaranteed. Dropping it stops renewing without revoking
/// (like a crash: the lease runs out after its TTL); [`resign`](Leadership::resign) hands over
/// at once.
pub struct Leadership {
    held: Arc<Held>,
    candidate: String,
    state: Arc<watch::Sender<bool>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("key", &self.held.key)
            .field("candidate", &self.candidate)
            .field("lease", &self.held.lease)
            .field("revision", &self.held.revision)
            .field("leader", &self.is_leader())
            .finish()
    }
}

impl Leadership {
    fn start(held: Held, candidate: &str, started: Instant) -> Leadership {
        let held = Arc::new(held);
        let state = Arc::new(watch::Sender::new(true));
        let task = tokio::spawn(maintain(held.clone(), state.clone(), started));
        Leadership { held, candidate: candidate.to_string(), state, task }
    }

    /// Whether this candidate may still act as leader.
    pub fn is_leader(&self) -> bool {
        *self.state.borrow()
    }

    /// Completes when leadership is lost (renewal failed for too long, the lease ended, or
    /// the election key was deleted or overwritten). Immediately if it already is.
    pub async fn lost(&self) {
        let mut rx = self.state.subscribe();
        // An error means the sender is gone, which only happens once leadership ended.
        let _ = rx.wait_for(|leader| !*leader).await;
    }

    /// A receiver of the leader flag (`true` while leader), for `select!` loops.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.state.subscribe()
    }

    /// The candidate id this leadership was won with.
    pub fn candidate(&self) -> &str {
        &self.candidate
    }

    /// The lease that holds the election key.
    pub fn lease(&self) -> LeaseId {
        self.held.lease
    }

    /// The revision at which the election key was created: grows with every new leader, so
    /// it serves as a fencing token (an epoch).
    pub fn revision(&self) -> Revision {
        self.held.revision
    }

    /// Steps down: stops renewing and revokes the lease, deleting the election key so another
    /// candidate is elected at once.
    pub async fn resign(self) -> Result<(), MetaError> {
        self.task.abort();
        self.state.send_replace(false);
        let held = &self.held;
        if let Err(e) = held.store.revoke_lease(held.lease).await {
            // The key must not outlive our resignation by a whole TTL if it can be helped.
            let _ = held.store.delete(&held.key, Some(held.revision)).await;
            return Err(e);
        }
        tracing::info!(key = %held.key, candidate = %self.candidate, "resigned leadership");
        Ok(())
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.task.abort();
        self.state.send_replace(false);
    }
}

/// Renews the lease and watches the key until leadership is lost, then clears the flag.
async fn maintain(held: Arc<Held>, state: Arc<watch::Sender<bool>>, started: Instant) {
    let reason = keep_leading(&held, started).await;
    state.send_replace(false);
    tracing::warn!(key = %held.key, reason, "lost leadership");
}

async fn keep_leading(held: &Held, started: Instant) -> &'static str {
    let valid_for = held.ttl - held.ttl / 4;
    let interval = held.ttl / 3;
    let mut deadline = started + valid_for;
    let mut next_renewal = started + interval;
    let mut events = match watch_held_key(held).await {
        Ok(Some(events)) => Some(events),
        Ok(None) => return "election key changed",
        Err(_) => None,
    };
    loop {
        tokio::select! {
            () = sleep_until(deadline) => return "no successful renewal in time",
            () = sleep_until(next_renewal) => {
                let sent = Instant::now();
                match timeout_at(deadline, held.store.keep_alive(held.lease)).await {
                    Ok(Ok(())) => {
                        deadline = sent + valid_for;
                        next_renewal = sent + interval;
                    }
                    Ok(Err(MetaError::LeaseExpired)) => return "lease expired",
                    Ok(Err(e)) => {
                        tracing::warn!(key = %held.key, error = %e, "leadership renewal failed; retrying");
                        next_renewal = Instant::now() + interval / 3;
                    }
                    Err(_) => return "no successful renewal in time",
                }
                if events.is_none() {
                    match watch_held_key(held).await {
                        Ok(Some(stream)) => events = Some(stream),
                        Ok(None) => return "election key changed",
                        Err(_) => {}
                    }
                }
            }
            event = next_event(&mut events) => match event {
                Some(Ok(event)) if event.key() == held.key => return "election key changed",
                Some(Ok(_)) => {}
                // Re-established after the next renewal.
                Some(Err(_)) | None => events = None,
            },
        }
    }
}

/// Watches the election key from a point where it is verified to still be ours; `None` if
/// it no longer is.
async fn watch_held_key(held: &Held) -> Result<Option<WatchStream>, MetaError> {
    match held.store.watch(&held.key, held.revision).await {
        Err(MetaError::Compacted) => {}
        other => return other.map(Some),
    }
    let listing = held.store.list(&held.key).await?;
    let ours = listing.kvs.iter().any(|kv| kv.key == held.key && kv.mod_revision == held.revision);
    if !ours {
        return Ok(None);
    }
    held.store.watch(&held.key, listing.revision).await.map(Some)
}

async fn next_event(events: &mut Option<WatchStream>) -> Option<Result<WatchEvent, MetaError>> {
    match events {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}
