//! Behaviour of the etcd backend beyond the conformance suite: compaction, an unreachable or
//! crashed server, and leadership when the store goes away.

use std::time::{Duration, Instant};

use vdb_meta::testing::EtcdServer;
use vdb_meta::{connect_with, ConnectOptions, Election, MetaError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_compacted_revision_fails_with_compacted() {
    let Some(server) = EtcdServer::start_or_skip("compacted watch") else {
        return;
    };
    let store = server.connect().await.unwrap();
    let first = store.put("c/a", b"1".to_vec(), None).await.unwrap();
    store.put("c/a", b"2".to_vec(), None).await.unwrap();
    let last = store.put("c/b", b"3".to_vec(), None).await.unwrap();
    let mut raw = etcd_client::Client::connect([server.endpoint()], None).await.unwrap();
    raw.compact(last, None).await.unwrap();

    match store.watch("c/", first).await {
        Err(MetaError::Compacted) => {}
        Ok(mut stream) => {
            let item = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
            assert!(matches!(item, Ok(Some(Err(MetaError::Compacted)))), "{item:?}");
        }
        Err(e) => panic!("unexpected error {e}"),
    }
    // From the listing's revision it works again.
    let listing = store.list("c/").await.unwrap();
    assert_eq!(listing.kvs.len(), 2);
    let mut stream = store.watch("c/", listing.revision).await.unwrap();
    store.put("c/d", b"4".to_vec(), None).await.unwrap();
    let event = stream.next().await.unwrap().unwrap();
    assert_eq!(event.key(), "c/d");
}

#[tokio::test]
async fn an_unreachable_etcd_is_unavailable_within_the_timeout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let options = ConnectOptions { request_timeout: Duration::from_millis(500) };
    let started = Instant::now();
    let result = connect_with(&format!("etcd://127.0.0.1:{port}"), &options).await;
    assert!(matches!(result, Err(MetaError::Unavailable(_))), "{:?}", result.err());
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_etcd_fails_calls_and_watches_and_deposes_the_leader() {
    let Some(mut server) = EtcdServer::start_or_skip("crashed etcd") else {
        return;
    };
    let options = ConnectOptions { request_timeout: Duration::from_millis(500) };
    let store = connect_with(&server.url(), &options).await.unwrap();
    let rev = store.put("k", b"v".to_vec(), None).await.unwrap();
    let mut stream = store.watch("", rev).await.unwrap();
    let ttl = Duration::from_secs(2);
    let leader = Election::campaign(store.clone(), "controller", "a", ttl).await.unwrap();
    let put = stream.next().await.unwrap().unwrap();
    assert_eq!(put.key(), Election::key("controller"));

    server.kill();
    let killed = Instant::now();
    let item = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
    assert!(matches!(item, Ok(Some(Err(MetaError::Unavailable(_))))), "{item:?}");
    let get = store.get("k").await;
    assert!(matches!(get, Err(MetaError::Unavailable(_))), "{get:?}");
    tokio::time::timeout(ttl, leader.lost())
        .await
        .expect("a leader that cannot renew is deposed within the ttl");
    assert!(killed.elapsed() < ttl, "{:?}", killed.elapsed());
    assert!(!leader.is_leader());
}
