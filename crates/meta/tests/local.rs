//! Behaviour of the local backend beyond the conformance suite: restarts, the process lock,
//! crash leftovers and corrupt files.

use std::time::Duration;

use vdb_meta::{connect, LocalStore, MetaError, MetaStore};

#[tokio::test]
async fn reopen_keeps_plain_keys_and_revision_and_drops_lease_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.json");
    let (a_rev, c_rev, before) = {
        let store = LocalStore::open(&path).await.unwrap();
        let lease = store.grant_lease(Duration::from_secs(60)).await.unwrap();
        let a_rev = store.put("a", b"1".to_vec(), None).await.unwrap();
        store.put("b", b"2".to_vec(), Some(lease)).await.unwrap();
        let c_rev = store.put("c", vec![0xff, 0], None).await.unwrap();
        (a_rev, c_rev, store.list("").await.unwrap().revision)
    };
    let store = LocalStore::open(&path).await.unwrap();
    let listing = store.list("").await.unwrap();
    let keys: Vec<(&str, i64)> =
        listing.kvs.iter().map(|kv| (kv.key.as_str(), kv.mod_revision)).collect();
    assert_eq!(keys, [("a", a_rev), ("c", c_rev)]);
    assert_eq!(listing.kvs[1].value, vec![0xff, 0]);
    assert!(listing.revision > before, "dropping lease keys is a mutation");
    let next = store.put("d", b"4".to_vec(), None).await.unwrap();
    assert!(next > listing.revision);
    assert!(matches!(store.watch("", before).await, Err(MetaError::Compacted)));
    drop(store);

    // Without lease keys to drop, a reopen changes nothing.
    let again = LocalStore::open(&path).await.unwrap();
    assert_eq!(again.list("").await.unwrap().revision, next);
}

#[tokio::test]
async fn a_second_open_of_the_same_file_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.json");
    let url = format!("local://{}", path.display());
    let first = connect(&url).await.unwrap();
    first.put("k", b"v".to_vec(), None).await.unwrap();
    let second = connect(&url).await;
    let Err(err) = second else {
        panic!("second open succeeded");
    };
    assert!(matches!(err, MetaError::InUse(_)), "{err:?}");
    assert!(err.to_string().contains("metastore file is in use by another process"), "{err}");
    drop(first);
    let reopened = connect(&format!("file://{}", path.display())).await.unwrap();
    assert_eq!(reopened.get("k").await.unwrap().unwrap().value, b"v");
}

#[tokio::test]
async fn a_torn_temp_file_never_corrupts_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.json");
    {
        let store = LocalStore::open(&path).await.unwrap();
        store.put("k", b"v".to_vec(), None).await.unwrap();
    }
    // A crash in the middle of a write leaves a partial temp file behind.
    let tmp = dir.path().join("meta.json.tmp");
    std::fs::write(&tmp, b"{\"format\":1,\"revision\":9,\"keys\":[{\"key\":\"k\",\"te").unwrap();
    let store = LocalStore::open(&path).await.unwrap();
    assert_eq!(store.get("k").await.unwrap().unwrap().value, b"v");
    assert!(!tmp.exists(), "the leftover is removed");
    store.put("k2", b"w".to_vec(), None).await.unwrap();
    drop(store);
    let store = LocalStore::open(&path).await.unwrap();
    assert_eq!(store.list("").await.unwrap().kvs.len(), 2);
}

#[tokio::test]
async fn every_acknowledged_mutation_is_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.json");
    let store = LocalStore::open(&path).await.unwrap();
    let rev = store.put("router/config", b"{\"a\":1}".to_vec(), None).await.unwrap();
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(on_disk["revision"], rev);
    assert_eq!(on_disk["keys"][0]["key"], "router/config");
    assert_eq!(on_disk["keys"][0]["text"], "{\"a\":1}");
    assert!(store.delete("router/config", None).await.unwrap());
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(on_disk["keys"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_corrupt_file_is_refused_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.json");
    std::fs::write(&path, b"{\"format\":1,\"revision\":").unwrap();
    let err = LocalStore::open(&path).await.unwrap_err();
    assert!(matches!(err, MetaError::Corrupt(_)), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"{\"format\":1,\"revision\":");
}

#[tokio::test]
async fn urls_name_a_backend() {
    for bad in ["", "local://", "etcd://", "redis://x", "/tmp/meta.json"] {
        let Err(err) = connect(bad).await else {
            panic!("{bad:?} accepted");
        };
        assert!(matches!(err, MetaError::InvalidUrl(_)), "{bad:?}: {err:?}");
    }
}
