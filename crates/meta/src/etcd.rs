//! The etcd backend: the trait mapped onto etcd's v3 API with the `etcd-client` crate.
//!
//! Revisions are etcd's own, so they are shared by every router of the cluster. A CAS is a
//! transaction comparing the key's mod revision (create revision 0 for "must not exist");
//! a watch starts at `after + 1`; leases are etcd leases. Every unary call is bounded by the
//! request timeout; a watch is bounded until etcd confirms it, then lives as long as its
//! stream (gRPC keepalives notice a dead server).

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};

use crate::watch::WatchSender;
use crate::{
    CasOutcome, KeyValue, LeaseId, Listing, MetaError, MetaStore, Revision, WatchEvent, WatchStream,
};

/// The etcd-backed [`MetaStore`], shared by every router of a cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    timeout: Duration,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`http://host:port`) and checks that it answers.
    /// Every later request is bounded by `timeout`.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<EtcdStore, MetaError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(5), timeout);
        let client = within(timeout, Client::connect(endpoints, Some(options))).await?;
        let store = EtcdStore { client, timeout };
        // The channel connects lazily; one read proves an endpoint answers.
        store.get("vdb-meta/ping").await?;
        Ok(store)
    }
}

/// Runs one etcd call under the request timeout.
async fn within<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, MetaError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(map_err),
        Err(_) => Err(MetaError::Unavailable(format!("etcd did not answer within {timeout:?}"))),
    }
}

fn map_err(e: etcd_client::Error) -> MetaError {
    use etcd_client::Error;
    use tonic::Code;
    match e {
        Error::GRpcStatus(status) => {
            let message = status.message().to_string();
            match status.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
                    MetaError::Unavailable(message)
                }
                // A broken connection surfaces as Unknown with the transport's message.
                Code::Unknown if is_connection_error(&message) => MetaError::Unavailable(message),
                Code::NotFound if message.contains("lease not found") => MetaError::LeaseExpired,
                Code::OutOfRange if message.contains("compacted") => MetaError::Compacted,
                _ => MetaError::Other(format!("etcd: {message}")),
            }
        }
        Error::TransportError(e) => MetaError::Unavailable(format!("etcd transport: {e}")),
        Error::IoError(e) => MetaError::Unavailable(format!("etcd i/o: {e}")),
        Error::LeaseKeepAliveError(m) if m.contains("lease not found") => MetaError::LeaseExpired,
        other => MetaError::Other(other.to_string()),
    }
}

fn is_connection_error(message: &str) -> bool {
    ["h2 protocol error", "connection", "transport", "broken pipe"]
        .iter()
        .any(|needle| message.contains(needle))
}

fn to_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue, MetaError> {
    let key = kv.key_str().map_err(|_| MetaError::Corrupt("etcd key is not utf-8".to_string()))?;
    Ok(KeyValue {
        key: key.to_string(),
        value: kv.value().to_vec(),
        mod_revision: kv.mod_revision(),
        lease: (kv.lease() != 0).then_some(LeaseId(kv.lease())),
    })
}

fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision, MetaError> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| MetaError::Other("etcd response without header".to_string()))
}

fn put_options(lease: Option<LeaseId>) -> Option<PutOptions> {
    lease.map(|l| PutOptions::new().with_lease(l.0))
}

#[async_trait]
impl MetaStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, MetaError> {
        let mut kv = self.client.kv_client();
        let resp = within(self.timeout, kv.get(key, None)).await?;
        resp.kvs().first().map(to_kv).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<Listing, MetaError> {
        let mut kv = self.client.kv_client();
        let options = GetOptions::new().with_prefix();
        let resp = within(self.timeout, kv.get(prefix, Some(options))).await?;
        // etcd returns a range sorted by key.
        let kvs = resp.kvs().iter().map(to_kv).collect::<Result<_, _>>()?;
        let revision = revision_of(resp.header())?;
        Ok(Listing { kvs, revision })
    }

    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<Revision, MetaError> {
        let mut kv = self.client.kv_client();
        let resp = within(self.timeout, kv.put(key, value, put_options(lease))).await?;
        revision_of(resp.header())
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Revision>,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<CasOutcome, MetaError> {
        let compare = match expected {
            None => Compare::create_revision(key, CompareOp::Equal, 0),
            Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev),
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(key, value, put_options(lease))])
            .or_else([TxnOp::get(key, None)]);
        let mut kv = self.client.kv_client();
        let resp = within(self.timeout, kv.txn(txn)).await?;
        if resp.succeeded() {
            return Ok(CasOutcome::Written(revision_of(resp.header())?));
        }
        let current = match resp.op_responses().first() {
            Some(TxnOpResponse::Get(get)) => get.kvs().first().map(to_kv).transpose()?,
            _ => return Err(MetaError::Other("etcd txn without its read".to_string())),
        };
        Ok(CasOutcome::Conflict(current))
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<bool, MetaError> {
        let mut kv = self.client.kv_client();
        let Some(rev) = expected else {
            let resp = within(self.timeout, kv.delete(key, None)).await?;
            return Ok(resp.deleted() > 0);
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
            .and_then([TxnOp::delete(key, None::<DeleteOptions>)]);
        let resp = within(self.timeout, kv.txn(txn)).await?;
        let deleted = resp.succeeded()
            && matches!(resp.op_responses().first(), Some(TxnOpResponse::Delete(d)) if d.deleted() > 0);
        Ok(deleted)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, MetaError> {
        let mut client = self.client.watch_client();
        let options = WatchOptions::new().with_prefix().with_start_revision(after + 1);
        let mut stream = within(self.timeout, client.watch(prefix, Some(options))).await?;
        // Wait for etcd to confirm the watch, so an unreachable store fails here.
        let created = within(self.timeout, stream.message()).await?;
        match created {
            Some(resp) if resp.compact_revision() > 0 => return Err(MetaError::Compacted),
            Some(resp) if resp.canceled() => {
                return Err(MetaError::Other(format!(
                    "etcd cancelled the watch: {}",
                    resp.cancel_reason()
                )))
            }
            Some(_) => {}
            None => return Err(MetaError::Unavailable("etcd closed the watch".to_string())),
        }
        let (sender, watch) = WatchStream::channel();
        tokio::spawn(forward_watch(stream, sender));
        Ok(watch)
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, MetaError> {
        // etcd counts whole seconds; round up so a lease never ends earlier than asked.
        let secs = (ttl.as_secs_f64().ceil() as i64).max(1);
        let mut lease = self.client.lease_client();
        let resp = within(self.timeout, lease.grant(secs, None)).await?;
        Ok(LeaseId(resp.id()))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), MetaError> {
        // Opening the keep-alive stream sends one renewal and waits for its answer
        // (an error if the lease is gone); dropping the stream ends it.
        let mut client = self.client.lease_client();
        within(self.timeout, client.keep_alive(lease.0)).await?;
        Ok(())
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), MetaError> {
        let mut client = self.client.lease_client();
        match within(self.timeout, client.revoke(lease.0)).await {
            Ok(_) | Err(MetaError::LeaseExpired) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Moves events from etcd's watch stream to the watcher until either side ends.
async fn forward_watch(stream: etcd_client::WatchStream, sender: WatchSender) {
    // Keep the request half open: closing it would end the watch on the server.
    let (_requests, mut responses) = stream.split();
    let tx = sender.tx;
    loop {
        let message = tokio::select! {
            () = tx.closed() => return,
            message = responses.message() => message,
        };
        let resp = match message {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                let _ = tx.send(Err(MetaError::Unavailable("etcd closed the watch".into()))).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(map_err(e))).await;
                return;
            }
        };
        if resp.compact_revision() > 0 {
            let _ = tx.send(Err(MetaError::Compacted)).await;
            return;
        }
        if resp.canceled() {
            let reason = format!("etcd cancelled the watch: {}", resp.cancel_reason());
            let _ = tx.send(Err(MetaError::Other(reason))).await;
            return;
        }
        for event in resp.events() {
            let converted = match (event.event_type(), event.kv()) {
                (etcd_client::EventType::Put, Some(kv)) => to_kv(kv).map(WatchEvent::Put),
                (etcd_client::EventType::Delete, Some(kv)) => to_kv(kv)
                    .map(|kv| WatchEvent::Delete { key: kv.key, mod_revision: kv.mod_revision }),
                (_, None) => Err(MetaError::Other("etcd event without a key".to_string())),
            };
            let failed = converted.is_err();
            if tx.send(converted).await.is_err() || failed {
                return;
            }
        }
    }
}
