//! Checks of reads, writes, compare-and-swap and deletes.

use crate::conformance::StoreFactory;
use crate::{CasOutcome, KeyValue};

/// `get`, `put` and `list`: values round-trip, listings are sorted by key and limited to
/// the prefix, and carry the store revision.
pub async fn get_put_list(factory: &dyn StoreFactory) {
    let store = factory.client().await;
    assert_eq!(store.get("b/1").await.unwrap(), None);
    let empty = store.list("b/").await.unwrap();
    assert!(empty.kvs.is_empty());

    for key in ["b/2", "a", "b/10", "c", "b/1", "bb"] {
        store.put(key, key.as_bytes().to_vec(), None).await.unwrap();
    }
    let rev = store.put("b/2", b"two".to_vec(), None).await.unwrap();
    let kv = store.get("b/2").await.unwrap().unwrap();
    let expected =
        KeyValue { key: "b/2".into(), value: b"two".to_vec(), mod_revision: rev, lease: None };
    assert_eq!(kv, expected);

    let listing = store.list("b/").await.unwrap();
    let keys: Vec<&str> = listing.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["b/1", "b/10", "b/2"]);
    assert_eq!(listing.kvs[2], expected);
    assert_eq!(listing.revision, rev, "listing revision is the store revision");

    let all = store.list("").await.unwrap();
    let keys: Vec<&str> = all.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["a", "b/1", "b/10", "b/2", "bb", "c"]);
    let binary = vec![0u8, 0xff, 0x80, 10];
    store.put("bin", binary.clone(), None).await.unwrap();
    assert_eq!(store.get("bin").await.unwrap().unwrap().value, binary);
}

/// Every mutation gets a revision above all earlier ones; reads do not advance it.
pub async fn revisions_increase(factory: &dyn StoreFactory) {
    let store = factory.client().await;
    let mut last = store.list("").await.unwrap().revision;
    for i in 0..5 {
        let rev = store.put(&format!("k{i}"), vec![i], None).await.unwrap();
        assert!(rev > last, "put revision {rev} after {last}");
        last = rev;
        let CasOutcome::Written(rev) =
            store.compare_and_swap(&format!("k{i}"), Some(rev), vec![i, i], None).await.unwrap()
        else {
            panic!("cas with the current revision must write");
        };
        assert!(rev > last, "cas revision {rev} after {last}");
        last = rev;
    }
    assert!(store.delete("k0", None).await.unwrap());
    let after_delete = store.list("").await.unwrap().revision;
    assert!(after_delete > last, "delete advances the revision");
    assert_eq!(store.list("").await.unwrap().revision, after_delete);
    assert_eq!(store.get("k1").await.unwrap().unwrap().value, vec![1, 1]);
}

/// Compare-and-swap writes only when the expected mod revision (or absence) holds, and
/// reports the current key on conflict.
pub async fn compare_and_swap(factory: &dyn StoreFactory) {
    let store = factory.client().await;
    let created = match store.compare_and_swap("x", None, b"1".to_vec(), None).await.unwrap() {
        CasOutcome::Written(rev) => rev,
        other => panic!("create-if-absent on a missing key: {other:?}"),
    };
    let current = store.get("x").await.unwrap().unwrap();
    assert_eq!(current.mod_revision, created);

    let again = store.compare_and_swap("x", None, b"2".to_vec(), None).await;
    assert_eq!(again.unwrap(), CasOutcome::Conflict(Some(current.clone())));

    let updated =
        match store.compare_and_swap("x", Some(created), b"3".to_vec(), None).await.unwrap() {
            CasOutcome::Written(rev) => rev,
            other => panic!("cas at the current revision: {other:?}"),
        };
    assert!(updated > created);

    let stale = store.compare_and_swap("x", Some(created), b"4".to_vec(), None).await.unwrap();
    let CasOutcome::Conflict(Some(now)) = stale else {
        panic!("cas at a stale revision: {stale:?}");
    };
    assert_eq!((now.value, now.mod_revision), (b"3".to_vec(), updated));

    let missing = store.compare_and_swap("y", Some(created), b"5".to_vec(), None).await.unwrap();
    assert_eq!(missing, CasOutcome::Conflict(None));
    assert_eq!(store.get("y").await.unwrap(), None);
    assert_eq!(store.get("x").await.unwrap().unwrap().value, b"3".to_vec());
}

/// Eight clients racing to create the same key: exactly one wins, the others see its value.
pub async fn cas_create_race(factory: &dyn StoreFactory) {
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(factory.client().await);
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(stores.len()));
    let tasks: Vec<_> = stores
        .into_iter()
        .enumerate()
        .map(|(i, store)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let value = format!("candidate-{i}").into_bytes();
                store.compare_and_swap("race", None, value, None).await.unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let winners: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            CasOutcome::Written(rev) => Some(*rev),
            CasOutcome::Conflict(_) => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "exactly one creator wins: {outcomes:?}");
    let stored = factory.client().await.get("race").await.unwrap().unwrap();
    assert_eq!(stored.mod_revision, winners[0]);
    for outcome in &outcomes {
        if let CasOutcome::Conflict(current) = outcome {
            assert_eq!(current.as_ref(), Some(&stored), "losers see the winner");
        }
    }
}

/// Deletes, unconditional and conditional on the mod revision.
pub async fn delete(factory: &dyn StoreFactory) {
    let store = factory.client().await;
    assert!(!store.delete("gone", None).await.unwrap());
    assert!(!store.delete("gone", Some(1)).await.unwrap());

    let rev = store.put("d", b"1".to_vec(), None).await.unwrap();
    let newer = store.put("d", b"2".to_vec(), None).await.unwrap();
    assert!(!store.delete("d", Some(rev)).await.unwrap(), "stale revision");
    assert_eq!(store.get("d").await.unwrap().unwrap().value, b"2".to_vec());
    assert!(store.delete("d", Some(newer)).await.unwrap());
    assert_eq!(store.get("d").await.unwrap(), None);

    store.put("d", b"3".to_vec(), None).await.unwrap();
    store.put("d/child", b"4".to_vec(), None).await.unwrap();
    assert!(store.delete("d", None).await.unwrap());
    assert_eq!(store.get("d").await.unwrap(), None);
    let rest = store.list("d").await.unwrap();
    assert_eq!(rest.kvs.len(), 1, "a delete removes one key, not a prefix");
}
