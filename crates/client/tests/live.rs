//! Every `ShardClient` method against the real `vdb-shard` release binary.
//!
//! The binary comes from `VDB_BIN_DIR` or `target/release` (the test script builds it first).
//! When it is missing the test says so and passes, except under CI (`CI=true`), where a
//! missing binary means the build is broken and the test fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vdb_api::*;
use vdb_client::{ClientError, ShardClient};

struct Node {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn shard_bin() -> PathBuf {
    let dir = std::env::var("VDB_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release"));
    dir.join("vdb-shard")
}

/// Starts the node on a free port and returns once it printed where it listens.
fn start(bin: &Path) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--fsync", "never", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a listening line").unwrap();
    // Keep draining stdout so the node never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    let url = format!("http://{}", v["listening"].as_str().unwrap());
    Node { child, url, _dir: dir }
}

fn point(id: u64, vector: [f32; 3], section: &str) -> Point {
    Point {
        id: id.into(),
        vector: vector.to_vec(),
        payload: Some(serde_json::json!({"section": section, "size": id * 10})),
    }
}

fn ids(selected: &[u64]) -> Option<Vec<PointId>> {
    Some(selected.iter().map(|&i| PointId::from(i)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_against_the_real_shard() {
    let bin = shard_bin();
    if !bin.is_file() {
        assert!(
            std::env::var("CI").is_err(),
            "{} missing under CI: the release build must precede the tests",
            bin.display()
        );
        eprintln!("skipping: {} not built", bin.display());
        return;
    }
    let node = start(&bin);
    let client = ShardClient::with_timeout(&node.url, Duration::from_secs(10)).unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    while !client.ready().await.unwrap_or(false) {
        assert!(Instant::now() < deadline, "node not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.health().await.unwrap();
    assert!(client.status().await.unwrap().ready);

    let config = ShardConfig {
        collection: "c".into(),
        shard_id: 0,
        dimension: 3,
        metric: Metric::Cosine,
        hnsw: HnswConfig::default(),
        scalar: ScalarType::F32,
        role: Role::Primary,
        epoch: 0,
    };
    let info = client.create_shard("s", &config).await.unwrap();
    assert_eq!((info.name.as_str(), info.points), ("s", 0));
    let again = client.create_shard("s", &config).await.unwrap_err();
    assert_eq!((again.status(), again.code()), (Some(409), Some(ErrorCode::AlreadyExists)));
    assert_eq!(client.list_shards().await.unwrap().shards.len(), 1);

    let index = CreatePayloadIndex { field: "section".into(), kind: PayloadIndexKind::Keyword };
    let info = client.create_index("s", &index).await.unwrap();
    assert!(info.payload_indexes.contains_key("section"));

    let points = vec![
        point(1, [1.0, 0.0, 0.0], "a"),
        point(2, [0.9, 0.1, 0.0], "b"),
        point(3, [0.0, 1.0, 0.0], "a"),
        point(4, [0.0, 0.0, 1.0], "b"),
    ];
    let written = client.upsert("s", &UpsertPoints { points }).await.unwrap();
    assert_eq!(written.affected, 4);
    assert_eq!(client.get_shard("s").await.unwrap().points, 4);

    let bad =
        UpsertPoints { points: vec![Point { id: 9.into(), vector: vec![1.0], payload: None }] };
    let err = client.upsert("s", &bad).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::DimensionMismatch), "{err}");

    let hits = client.search("s", &SearchRequest::new(vec![1.0, 0.0, 0.0], 2)).await.unwrap();
    let top: Vec<PointId> = hits.points.iter().map(|p| p.id).collect();
    assert_eq!(top, vec![PointId::from(1), PointId::from(2)]);
    let mut filtered = SearchRequest::new(vec![1.0, 0.0, 0.0], 2);
    filtered.filter = Some(Filter::must(Condition::matches("section", "b")));
    let hits = client.search("s", &filtered).await.unwrap();
    assert_eq!(hits.points[0].id, PointId::from(2));
    let batch = BatchSearchRequest { searches: vec![filtered.clone(), filtered] };
    assert_eq!(client.search_batch("s", &batch).await.unwrap().results.len(), 2);

    let get = GetPoints {
        ids: vec![3.into(), 99.into()],
        with_vector: true,
        with_payload: true,
        ownership: None,
    };
    let records = client.get_points("s", &get).await.unwrap();
    assert_eq!(records.points.len(), 1);
    assert_eq!(records.points[0].payload.as_ref().unwrap()["section"], "a");

    let section_a = Filter::must(Condition::matches("section", "a"));
    let count = CountPoints { filter: Some(section_a.clone()), ownership: None };
    assert_eq!(client.count("s", &count).await.unwrap().count, 2);

    let mut payload = Payload::new();
    payload.insert("tag".into(), "x".into());
    let merge = SetPayload { payload: payload.clone(), ids: ids(&[1]), filter: None };
    client.set_payload("s", &merge).await.unwrap();
    let replace = SetPayload { payload, ids: ids(&[2]), filter: None };
    client.overwrite_payload("s", &replace).await.unwrap();
    let drop_keys = DeletePayload { keys: vec!["size".into()], ids: ids(&[1]), filter: None };
    client.delete_payload("s", &drop_keys).await.unwrap();
    let get = GetPoints {
        ids: vec![1.into(), 2.into()],
        with_vector: false,
        with_payload: true,
        ownership: None,
    };
    let records = client.get_points("s", &get).await.unwrap().points;
    let p1 = records[0].payload.as_ref().unwrap();
    assert!(p1.contains_key("tag") && p1.contains_key("section") && !p1.contains_key("size"));
    let p2 = records[1].payload.as_ref().unwrap();
    assert_eq!(p2.keys().collect::<Vec<_>>(), vec!["tag"]);

    let page = client.scroll("s", &ScrollPoints { limit: 3, ..Default::default() }).await.unwrap();
    assert_eq!(page.points.len(), 3);
    assert_eq!(page.next_offset, Some(PointId::from(4)));

    let deleted =
        client.delete_points("s", &PointSelector { ids: None, filter: Some(section_a) }).await;
    assert_eq!(deleted.unwrap().affected, 2);

    let snapshot = client.snapshot("s").await.unwrap();
    assert!(snapshot.lsn > 0);
    client.drop_index("s", "section").await.unwrap();
    assert!(client.metrics().await.unwrap().contains("# TYPE"));

    client.drop_shard("s").await.unwrap();
    let gone = client.get_shard("s").await.unwrap_err();
    assert!(matches!(gone, ClientError::Api { status: 404, code: ErrorCode::NotFound, .. }));
}
