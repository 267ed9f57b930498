//! The `debian-minilm` dataset for recall tests: loading it (a failure under CI, a skip
//! elsewhere) and ingesting it over HTTP.

use crate::Http;
use serde_json::{json, Value};
use vdb_dataset::Dataset;

/// The dataset, or `None` (with a skip line) when it is missing outside CI. Under `CI=true`
/// a missing dataset fails the test.
pub fn dataset_or_skip(test: &str) -> Option<Dataset> {
    match Dataset::load(None) {
        Ok(d) => Some(d),
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping {test} outside CI: {e}");
            None
        }
        Err(e) => panic!("dataset required under CI: {e}"),
    }
}

/// Upserts every document (vector and payload) to `points_path` (a shard's or a collection's
/// `.../points`) in batches of 500 from two threads; prints how long it took.
pub fn ingest(http: &Http, points_path: &str, data: &Dataset) {
    let chunks: Vec<Vec<Value>> = data
        .base
        .iter()
        .zip(&data.docs)
        .map(|(v, d)| json!({"id": d.id, "vector": v, "payload": d.payload()}))
        .collect::<Vec<_>>()
        .chunks(500)
        .map(<[Value]>::to_vec)
        .collect();
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for part in chunks.chunks(chunks.len().div_ceil(2)) {
            s.spawn(move || {
                for batch in part {
                    let r = http.put(points_path, &json!({"points": batch})).unwrap();
                    assert_eq!(r.0, 200, "{r:?}");
                }
            });
        }
    });
    println!("{points_path}: ingested {} points in {:.1?}", data.base.len(), started.elapsed());
}
