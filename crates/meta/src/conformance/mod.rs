//! The conformance suite (feature `testing`): checks every [`MetaStore`] backend must pass.
//!
//! Each check is an async function taking a [`StoreFactory`] and panicking on failure; a
//! backend's test file runs each one as its own `#[tokio::test]` against a fresh, empty store
//! (see `crates/meta/tests/conformance.rs`). Every check gets its own store, so keys need no
//! namespacing. Lease TTLs are 1–2 s: the whole suite stays well under a minute.

mod election;
mod kv;
mod lease;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{MetaStore, WatchEvent, WatchStream};

pub use election::{
    election_lost_when_lease_revoked, election_resign_hands_over, election_single_leader,
    election_takeover_after_crash, leader_reports_holder,
};
pub use kv::{cas_create_race, compare_and_swap, delete, get_put_list, revisions_increase};
pub use lease::{keep_alive_extends, lease_expiry_deletes_keys, revoke_deletes_keys};
pub use watch::{watch_after_list_loses_nothing, watch_replays_history};

/// Opens clients of the store under test. Where the backend allows several clients (etcd),
/// every call returns a new one, as several routers would have; the local backend returns
/// its one store.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// A client of the store under test.
    async fn client(&self) -> Arc<dyn MetaStore>;
}

#[async_trait]
impl StoreFactory for Arc<dyn MetaStore> {
    async fn client(&self) -> Arc<dyn MetaStore> {
        self.clone()
    }
}

/// Longest wait for something a check expects to happen.
const PATIENCE: Duration = Duration::from_secs(10);

/// The next event of a watch, failing the check if none comes in time.
async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(PATIENCE, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {PATIENCE:?}"),
    }
}

/// Asserts that a watch delivers nothing more for `quiet`.
async fn assert_no_event(stream: &mut WatchStream, quiet: Duration) {
    if let Ok(event) = tokio::time::timeout(quiet, stream.next()).await {
        panic!("unexpected watch item: {event:?}");
    }
}
