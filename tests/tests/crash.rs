//! Crash test. Nemesis: SIGKILL of the shard process at a random moment (10–400 ms into
//! concurrent ingest by four writers, fsync=always, snapshots every few records so kills also
//! land inside snapshots). Asserts: after every restart, every acknowledged point is present
//! with its payload and vector; no write that got a 200 is ever lost. Prints iterations,
//! kills and points checked.

use rand::{Rng, SeedableRng};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vdb_tests::ShardProcess;

const DIM: usize = 8;
const WRITERS: u64 = 4;

fn vector(id: u64) -> Vec<f32> {
    (0..DIM).map(|d| ((id * 31 + d as u64 * 7) % 97) as f32 + 1.0).collect()
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let iterations: usize =
        std::env::var("VDB_CRASH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let mut node = ShardProcess::start(&["--fsync", "always", "--snapshot-every", "25"]).unwrap();
    let r = node
        .http()
        .put("/v1/shards/crash", &json!({"collection": "c", "dimension": DIM, "metric": "cosine"}))
        .unwrap();
    assert_eq!(r.0, 201);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let mut next_id = 0u64;
    let mut checked_total = 0usize;
    let mut errors_seen = 0usize;
    for iteration in 0..iterations {
        let http = node.http();
        let base = next_id;
        next_id += 1_000_000;
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let http = http.clone();
                let acked = acked.clone();
                std::thread::spawn(move || {
                    let mut errors = 0;
                    for batch in 0..10_000u64 {
                        let ids: Vec<u64> =
                            (0..8).map(|i| base + w * 100_000 + batch * 8 + i).collect();
                        let points: Vec<_> = ids
                            .iter()
                            .map(|&id| json!({"id": id, "vector": vector(id), "payload": {"v": id, "w": w}}))
                            .collect();
                        match http.put("/v1/shards/crash/points", &json!({"points": points})) {
                            Ok((200, _)) => acked.lock().unwrap().extend(ids),
                            // Unknown outcome (connection cut by the kill): not acknowledged.
                            _ => {
                                errors += 1;
                                break;
                            }
                        }
                    }
                    errors
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(10..400)));
        node.kill9();
        errors_seen += writers.into_iter().map(|w| w.join().unwrap()).sum::<usize>();
        node.restart().unwrap();

        // Every acknowledged point must be there, with its payload and vector.
        let http = node.http();
        let all = acked.lock().unwrap().clone();
        for chunk in all.chunks(500) {
            let r = http
                .post("/v1/shards/crash/points/get", &json!({"ids": chunk, "with_vector": true}))
                .unwrap();
            assert_eq!(r.0, 200);
            let got = r.1["points"].as_array().unwrap();
            assert_eq!(got.len(), chunk.len(), "iteration {iteration}: acknowledged points lost");
            for p in got {
                let id = p["id"].as_u64().unwrap();
                assert_eq!(p["payload"]["v"], id);
                let v: Vec<f32> = serde_json::from_value(p["vector"].clone()).unwrap();
                let want = vector(id);
                let cos = v.iter().zip(&want).map(|(a, b)| a * b).sum::<f32>()
                    / (v.iter().map(|a| a * a).sum::<f32>().sqrt()
                        * want.iter().map(|a| a * a).sum::<f32>().sqrt());
                assert!(cos > 0.9999, "vector of {id} changed");
            }
        }
        checked_total += all.len();
        let count = http.post("/v1/shards/crash/points/count", &json!({})).unwrap().1["count"]
            .as_u64()
            .unwrap();
        assert!(count as usize >= all.len());
    }
    let acked_total = acked.lock().unwrap().len();
    println!(
        "crash test: {iterations} iterations, {iterations} SIGKILLs, {acked_total} acknowledged points, \
         {checked_total} point checks, {errors_seen} writes cut by kills, 0 lost"
    );
    assert!(acked_total > 0, "the writers never got a write acknowledged");
}
