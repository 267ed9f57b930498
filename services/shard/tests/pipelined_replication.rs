//! A primary keeps several batches of its log in flight to a replica; they may arrive in any
//! order. The replica must apply them in LSN order: a batch that arrives before the one it
//! continues waits for it, and one whose predecessor never comes is refused without applying.

use clap::Parser;
use std::time::{Duration, Instant};
use vdb_api::{Metric, Role, ShardConfig};
use vdb_client::ShardClient;
use vdb_shard::ops::{StoredId, WalOp, WalPoint};

/// WAL frames of one upsert per LSN in `lsns`, each of point `lsn` (epoch 1).
fn frames(lsns: std::ops::RangeInclusive<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    for lsn in lsns {
        let point = WalPoint {
            id: StoredId::Num(lsn),
            vector: vec![lsn as f32, 1.0],
            payload: "{}".into(),
        };
        vdb_wal::record::encode(&mut out, lsn, 1, &WalOp::Upsert { points: vec![point] }.encode());
    }
    out
}

async fn replica() -> (ShardClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let config =
        vdb_shard::Config::parse_from(["vdb-shard", "--data-dir", data, "--listen", "127.0.0.1:0"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(vdb_shard::run(config, listener, std::future::pending()));
    let client = ShardClient::new(&url).unwrap();
    while !client.ready().await.unwrap_or(false) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let config = ShardConfig {
        collection: "c".into(),
        shard_id: 0,
        dimension: 2,
        metric: Metric::L2,
        hnsw: Default::default(),
        scalar: Default::default(),
        role: Role::Replica,
        epoch: 1,
    };
    client.create_shard("s", &config).await.unwrap();
    (client, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_applied_in_order_whatever_order_they_arrive_in() {
    let (client, _dir) = replica().await;
    // The second batch (lsn 4..=6, continuing lsn 3) is sent first.
    let second = {
        let client = client.clone();
        tokio::spawn(async move { client.replicate("s", 1, 3, 1, frames(4..=6)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(client.get_shard("s").await.unwrap().replication.last_lsn, 0, "applied early");
    let first = client.replicate("s", 1, 0, 0, frames(1..=3)).await.unwrap();
    assert!(first.matched && first.durable_lsn == 3, "{first:?}");
    let second = second.await.unwrap().unwrap();
    assert!(second.matched && second.durable_lsn == 6, "{second:?}");
    let info = client.get_shard("s").await.unwrap();
    assert_eq!((info.replication.last_lsn, info.points), (6, 6));

    // A batch whose predecessor never arrives is refused after a short wait, applying nothing.
    let started = Instant::now();
    let orphan = client.replicate("s", 1, 8, 1, frames(9..=9)).await.unwrap();
    assert!(!orphan.matched && orphan.last_lsn == 6, "{orphan:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "waited {:?}", started.elapsed());
    assert_eq!(client.get_shard("s").await.unwrap().replication.last_lsn, 6);
}
