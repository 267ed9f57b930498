//! Checks of leases: expiry, renewal and revocation.

use std::time::Duration;

use tokio::time::Instant;

use crate::conformance::{next_event, StoreFactory, PATIENCE};
use crate::{LeaseId, MetaError, WatchEvent};

const TTL: Duration = Duration::from_secs(1);

/// A lease that is not renewed expires: its keys are deleted (with delete events) and the
/// lease can be neither renewed nor used again; keys without a lease stay.
pub async fn lease_expiry_deletes_keys(factory: &dyn StoreFactory) {
    let store = factory.client().await;
    let lease = store.grant_lease(TTL).await.unwrap();
    let granted = Instant::now();
    let rev = store.put("l/a", b"a".to_vec(), Some(lease)).await.unwrap();
    store.put("l/b", b"b".to_vec(), Some(lease)).await.unwrap();
    store.put("l/plain", b"p".to_vec(), None).await.unwrap();
    assert_eq!(store.get("l/a").await.unwrap().unwrap().lease, Some(lease));

    let mut events = store.watch("l/", rev).await.unwrap();
    let mut deleted = Vec::new();
    while deleted.len() < 2 {
        match next_event(&mut events).await {
            WatchEvent::Delete { key, .. } => deleted.push(key),
            WatchEvent::Put(kv) => assert!(kv.key == "l/b" || kv.key == "l/plain", "{kv:?}"),
        }
    }
    assert!(granted.elapsed() >= TTL, "expired early: {:?}", granted.elapsed());
    deleted.sort();
    assert_eq!(deleted, ["l/a", "l/b"]);
    let left = store.list("l/").await.unwrap();
    assert_eq!(left.kvs.len(), 1);
    assert_eq!(left.kvs[0].key, "l/plain");

    assert!(matches!(store.keep_alive(lease).await, Err(MetaError::LeaseExpired)));
    let put = store.put("l/c", b"c".to_vec(), Some(lease)).await;
    assert!(matches!(put, Err(MetaError::LeaseExpired)), "{put:?}");
    let unknown = store.put("l/c", b"c".to_vec(), Some(LeaseId(0x7eadbeef))).await;
    assert!(matches!(unknown, Err(MetaError::LeaseExpired)), "{unknown:?}");
    assert_eq!(store.get("l/c").await.unwrap(), None);
}

/// Renewing a lease keeps its keys past the TTL; once renewals stop it expires.
pub async fn keep_alive_extends(factory: &dyn StoreFactory) {
    let store = factory.client().await;
    let lease = store.grant_lease(TTL).await.unwrap();
    store.put("k", b"v".to_vec(), Some(lease)).await.unwrap();
    let until = Instant::now() + TTL * 5 / 2;
    while Instant::now() < until {
        tokio::time::sleep(TTL / 4).await;
        store.keep_alive(lease).await.unwrap();
    }
    assert!(store.get("k").await.unwrap().is_some(), "renewed lease kept its key");

    let stopped = Instant::now();
    while store.get("k").await.unwrap().is_some() {
        assert!(stopped.elapsed() < PATIENCE, "lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stopped.elapsed() >= TTL / 2, "expired too early after the last renewal");
}

/// Revoking a lease deletes its keys at once; revoking again is fine; it cannot be renewed.
pub async fn revoke_deletes_keys(factory: &dyn StoreFactory) {
    let store = factory.client().await;
    let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    let other = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    let rev = store.put("r/a", b"a".to_vec(), Some(lease)).await.unwrap();
    store.put("r/b", b"b".to_vec(), Some(lease)).await.unwrap();
    store.put("r/other", b"o".to_vec(), Some(other)).await.unwrap();
    store.put("r/plain", b"p".to_vec(), None).await.unwrap();
    let mut events = store.watch("r/", rev).await.unwrap();
    assert!(matches!(next_event(&mut events).await, WatchEvent::Put(kv) if kv.key == "r/b"));
    assert!(matches!(next_event(&mut events).await, WatchEvent::Put(kv) if kv.key == "r/other"));
    assert!(matches!(next_event(&mut events).await, WatchEvent::Put(kv) if kv.key == "r/plain"));

    store.revoke_lease(lease).await.unwrap();
    let keys: Vec<String> =
        store.list("r/").await.unwrap().kvs.into_iter().map(|kv| kv.key).collect();
    assert_eq!(keys, ["r/other", "r/plain"]);
    let mut deleted = Vec::new();
    for _ in 0..2 {
        match next_event(&mut events).await {
            WatchEvent::Delete { key, .. } => deleted.push(key),
            other => panic!("expected a delete, got {other:?}"),
        }
    }
    deleted.sort();
    assert_eq!(deleted, ["r/a", "r/b"]);

    store.revoke_lease(lease).await.unwrap();
    assert!(matches!(store.keep_alive(lease).await, Err(MetaError::LeaseExpired)));
    store.keep_alive(other).await.unwrap();
}
