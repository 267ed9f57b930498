//! `vdb-meta`: the cluster metastore seam of the router.
//!
//! A [`MetaStore`] is a small byte-valued key-value store with the few primitives a control
//! plane needs: reads with a store [`Revision`], compare-and-swap on a key's mod revision,
//! watches that resume exactly where a listing left off, and leases whose keys vanish when
//! the holder stops renewing. [`Election`] builds leader election on those primitives only,
//! so it is the same code on every backend. The router puts its typed JSON records on top.
//!
//! Two backends pass one conformance suite (`conformance`, feature `testing`):
//!
//! - `local://` — a JSON file for one router on one machine (the default). Every mutation is
//!   written atomically before it returns; a lock file keeps a second process out; leases and
//!   watch history live in memory.
//! - `etcd://host:port[,host:port...]` — a real etcd cluster via the `etcd-client` crate, so
//!   several routers can share the state and elect one controller.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vdb_meta::MetaError> {
//! let store = vdb_meta::connect("local:///var/lib/vdb/meta.json").await?;
//! store.put("collections/docs", b"{}".to_vec(), None).await?;
//! let listing = store.list("collections/").await?;
//! let mut events = store.watch("collections/", listing.revision).await?;
//! while let Some(event) = events.next().await {
//!     println!("{:?}", event?);
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - `lib.rs` — the [`MetaStore`] trait, its value types, [`connect`].
//! - `error.rs` — [`MetaError`].
//! - `watch.rs` — [`WatchStream`], the receiving end of a watch.
//! - `election.rs` — [`Election`] and [`Leadership`]: campaign, renewal, loss, resignation.
//! - `local/` — the file backend: `mod.rs` (state, revisions, leases, watchers) and `file.rs`
//!   (the on-disk format, atomic writes, the process lock).
//! - `etcd.rs` — the etcd backend: CAS as transactions, watches, leases, timeouts.
//! - `testing.rs` (feature `testing`) — `testing::EtcdServer`, a throwaway real etcd.
//! - `conformance/` (feature `testing`) — checks every backend must pass.

#![warn(missing_docs)]

mod election;
mod error;
mod etcd;
mod local;
mod watch;

#[cfg(feature = "testing")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use election::{Election, Leadership};
pub use error::MetaError;
pub use etcd::EtcdStore;
pub use local::LocalStore;
pub use watch::WatchStream;

/// An etcd-style revision: the store-wide counter bumped by every mutation. Always > 0 for a
/// stored key.
pub type Revision = i64;

/// A lease: keys attached to it are deleted when it expires or is revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseId(pub i64);

/// One stored key with its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key.
    pub key: String,
    /// The value bytes, opaque to the store.
    pub value: Vec<u8>,
    /// The revision of the last write of this key.
    pub mod_revision: Revision,
    /// The lease the key is bound to, if any.
    pub lease: Option<LeaseId>,
}

/// The keys under a prefix, read at one store revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The keys, sorted by key.
    pub kvs: Vec<KeyValue>,
    /// The store revision at read time; pass it to [`MetaStore::watch`] to continue from the
    /// listing without losing or repeating an event.
    pub revision: Revision,
}

/// A change of one key seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was created or overwritten.
    Put(KeyValue),
    /// The key was deleted (explicitly or by its lease ending).
    Delete {
        /// The deleted key.
        key: String,
        /// The revision of the deletion.
        mod_revision: Revision,
    },
}

impl WatchEvent {
    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The revision of the change.
    pub fn mod_revision(&self) -> Revision {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// The result of [`MetaStore::compare_and_swap`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// The value was written at this revision.
    Written(Revision),
    /// The expectation did not hold; this is the key as it is now (`None`: absent).
    Conflict(Option<KeyValue>),
}

/// The cluster metastore: a byte-valued key-value store with revisions, compare-and-swap,
/// watches and leases. Keys are UTF-8 strings; "prefix" means a plain string prefix (the
/// empty prefix is every key).
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, MetaError>;

    /// Reads every key under `prefix`, sorted by key, with the store revision of the read.
    async fn list(&self, prefix: &str) -> Result<Listing, MetaError>;

    /// Writes a key unconditionally, optionally bound to a lease
    /// ([`MetaError::LeaseExpired`] if the lease is gone). Returns the write's revision.
    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<Revision, MetaError>;

    /// Writes only if the key's mod revision equals `expected` (`None` = the key must not
    /// exist).
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Revision>,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<CasOutcome, MetaError>;

    /// Deletes a key; with `Some(rev)` only if its mod revision is `rev`. Returns whether
    /// something was deleted.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<bool, MetaError>;

    /// Streams the changes of keys under `prefix` with revision > `after`, in revision order.
    /// `watch(prefix, listing.revision)` after a `list(prefix)` neither loses nor repeats an
    /// event. Fails with [`MetaError::Compacted`] (at once or later on the stream) when the
    /// history no longer reaches back to `after`; the caller then lists again.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, MetaError>;

    /// Creates a lease that expires `ttl` after its last renewal. Backends may round the TTL
    /// up (etcd counts whole seconds and has a server-side minimum), never down.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, MetaError>;

    /// Renews a lease once. [`MetaError::LeaseExpired`] when it is gone.
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), MetaError>;

    /// Ends a lease now, deleting its keys. Revoking a lease that is already gone is `Ok`.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), MetaError>;
}

/// Options of [`connect_with`].
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Limit of every single etcd request (connecting included); past it the call fails
    /// with [`MetaError::Unavailable`]. Unused by the local backend.
    pub request_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self { request_timeout: Duration::from_secs(5) }
    }
}

/// Opens the metastore named by `url` with default options; see [`connect_with`].
pub async fn connect(url: &str) -> Result<Arc<dyn MetaStore>, MetaError> {
    connect_with(url, &ConnectOptions::default()).await
}

/// Opens the metastore named by `url`:
///
/// - `local:///abs/path/meta.json` or `file:///abs/path/meta.json` — the file backend (what
///   follows `local://` is taken as a file system path);
/// - `etcd://host:port[,host:port...]` — the etcd backend; fails with
///   [`MetaError::Unavailable`] if no endpoint answers within the request timeout.
pub async fn connect_with(
    url: &str,
    options: &ConnectOptions,
) -> Result<Arc<dyn MetaStore>, MetaError> {
    if let Some(path) = url.strip_prefix("local://").or_else(|| url.strip_prefix("file://")) {
        if path.is_empty() {
            return Err(MetaError::InvalidUrl(url.to_string()));
        }
        return Ok(Arc::new(LocalStore::open(path).await?));
    }
    if let Some(hosts) = url.strip_prefix("etcd://") {
        let endpoints: Vec<String> = hosts
            .trim_end_matches('/')
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("http://{h}"))
            .collect();
        if endpoints.is_empty() {
            return Err(MetaError::InvalidUrl(url.to_string()));
        }
        return Ok(Arc::new(EtcdStore::connect(&endpoints, options.request_timeout).await?));
    }
    Err(MetaError::InvalidUrl(url.to_string()))
}
