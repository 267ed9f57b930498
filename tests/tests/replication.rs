//! Replicated collections through the router, with failover.
//!
//! Nemesis: the node holding the primary of the collection's shard is killed with SIGKILL,
//! again and again, while a writer upserts through the router (each write carries a unique
//! value); the killed node is restarted and re-registered (it rejoins as a replica) before the
//! next kill. `VDB_FAILOVERS` sets how many failovers (default 5, the CI run; the long run uses
//! 20).
//! Asserts: with `sync` writes and RF=3, every acknowledged write is present afterwards with
//! its value or a later one that was attempted (failed or unknown writes may or may not have
//! been applied); no value appears that was never written; every failover bumped the epoch.
//! A reader meanwhile reads random points with `consistency=strong` and checks that each
//! point's value never goes back (a strong read never returns a value a failover rolled back,
//! nor one older than a value already read) and was written; another reads with the default
//! `eventual` consistency and counts answers marked `stale` (served by a replica).
//! Prints operations checked, faults injected, anomalies and failover times (p50/max), the
//! failover measured with the router's default health interval (200 ms).

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use vdb_tests::fleet::Fleet;
use vdb_tests::Http;

const DIM: usize = 4;
const IDS: u64 = 400;

/// One write's outcome, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    Ok,
    Failed,
    Unknown,
}

/// (id, value, outcome) of every point write, in the order they were sent.
type History = Vec<(u64, u64, Outcome)>;

fn writer(http: Http, stop: Arc<AtomicBool>) -> thread::JoinHandle<History> {
    thread::spawn(move || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut history = History::new();
        let mut value = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let batch: Vec<(u64, u64)> = (0..5)
                .map(|_| {
                    value += 1;
                    (rng.gen_range(0..IDS), value)
                })
                .collect();
            // Only the last value per id of a batch is sent.
            let mut seen = BTreeSet::new();
            let sent: Vec<(u64, u64)> =
                batch.iter().rev().filter(|(id, _)| seen.insert(*id)).copied().collect();
            let points: Vec<Value> = sent
                .iter()
                .map(|(id, v)| json!({"id": id, "vector": [*id as f32, 1.0, 0.5, -1.0], "payload": {"v": v}}))
                .collect();
            let outcome = match http.put("/v1/collections/c/points", &json!({ "points": points })) {
                Ok((200, _)) => Outcome::Ok,
                Ok((503, body)) if body["error"]["code"] == "replication_timeout" => {
                    Outcome::Unknown
                }
                Ok((s, _)) if s >= 400 => Outcome::Failed,
                _ => Outcome::Unknown,
            };
            history.extend(sent.iter().map(|&(id, v)| (id, v, outcome)));
            if outcome != Outcome::Ok {
                thread::sleep(Duration::from_millis(20));
            }
        }
        history
    })
}

/// Strong reads of random points: (id, value) in the order read. Unanswered reads (during
/// failover) are skipped; counts (answered, refused).
fn strong_reader(http: Http, stop: Arc<AtomicBool>) -> thread::JoinHandle<(Vec<(u64, u64)>, u64)> {
    thread::spawn(move || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let (mut seen, mut refused) = (Vec::new(), 0);
        while !stop.load(Ordering::Relaxed) {
            let ids: Vec<u64> = (0..10).map(|_| rng.gen_range(0..IDS)).collect();
            let ask = json!({"ids": ids, "with_payload": true});
            match http.post("/v1/collections/c/points/get?consistency=strong", &ask) {
                Ok((200, body)) => {
                    assert!(body.get("stale").is_none(), "a strong read marked stale: {body}");
                    for p in body["points"].as_array().unwrap() {
                        seen.push((p["id"].as_u64().unwrap(), p["payload"]["v"].as_u64().unwrap()));
                    }
                }
                _ => refused += 1,
            }
            thread::sleep(Duration::from_millis(5));
        }
        (seen, refused)
    })
}

/// Default (eventual) counts: (answered, answered by a replica).
fn eventual_reader(http: Http, stop: Arc<AtomicBool>) -> thread::JoinHandle<(u64, u64)> {
    thread::spawn(move || {
        let (mut answered, mut stale) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            if let Ok((200, body)) = http.post("/v1/collections/c/points/count", &json!({})) {
                answered += 1;
                stale += u64::from(body["stale"] == true);
            }
            thread::sleep(Duration::from_millis(10));
        }
        (answered, stale)
    })
}

fn shard0(http: &Http) -> Value {
    http.get("/v1/collections/c").unwrap().1["shards"][0].clone()
}

/// Every point's payload value, by scrolling.
fn content(http: &Http) -> BTreeMap<u64, u64> {
    let r = http
        .post("/v1/collections/c/points/scroll?consistency=strong", &json!({"limit": 10_000}))
        .unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    r.1["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_u64().unwrap(), p["payload"]["v"].as_u64().unwrap()))
        .collect()
}

#[test]
fn sync_writes_survive_repeated_primary_kills() {
    let failovers: usize =
        std::env::var("VDB_FAILOVERS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    // The router's default health interval, so the failover times are those users get.
    let mut fleet = Fleet::start(3, &[], &["--health-interval-ms", "200"]).unwrap();
    let http = fleet.http();
    let r = http
        .put(
            "/v1/collections/c",
            &json!({"dimension": DIM, "metric": "l2", "replication_factor": 3,
                    "write_consistency": {"mode": "sync"}}),
        )
        .unwrap();
    assert_eq!(r.0, 201, "{r:?}");
    assert_eq!(shard0(&http)["in_sync"].as_array().unwrap().len(), 2, "{r:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(http.clone(), stop.clone());
    let strong = strong_reader(http.clone(), stop.clone());
    let eventual = eventual_reader(http.clone(), stop.clone());
    let mut times = Vec::new();
    for round in 0..failovers {
        thread::sleep(Duration::from_millis(500));
        let before = shard0(&http);
        let primary = before["nodes"][0].as_str().unwrap().to_string();
        let epoch = before["epoch"].as_u64().unwrap();
        let i: usize = primary.trim_start_matches('n').parse().unwrap();
        fleet.shards[i].kill9();
        let killed = Instant::now();
        // Failed over: a new primary in a newer epoch, and writes are acknowledged again.
        let deadline = killed + Duration::from_secs(30);
        loop {
            let now = shard0(&http);
            if now["epoch"].as_u64().unwrap() > epoch && now["nodes"][0] != primary.as_str() {
                let probe = http.put(
                    "/v1/collections/c/points",
                    &json!({"points": [{"id": IDS + round as u64, "vector": [0.0, 0.0, 0.0, 1.0], "payload": {"v": 0}}]}),
                );
                if matches!(probe, Ok((200, _))) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "round {round}: no failover: {now}");
            thread::sleep(Duration::from_millis(20));
        }
        times.push(killed.elapsed());
        // The killed node comes back (on a new port) and rejoins as a replica, in sync.
        fleet.shards[i].restart().unwrap();
        let url = fleet.shards[i].url.clone();
        assert_eq!(
            http.put(&format!("/v1/cluster/nodes/{primary}"), &json!({"url": url})).unwrap().0,
            200
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let in_sync = |s: &Value| {
            s["in_sync"].as_array().is_some_and(|a| a.iter().any(|n| n == primary.as_str()))
        };
        while !in_sync(&shard0(&http)) {
            assert!(
                Instant::now() < deadline,
                "round {round}: {primary} never got back in sync: {}",
                shard0(&http)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let history = w.join().unwrap();
    let (strong_reads, strong_refused) = strong.join().unwrap();
    let (eventual_reads, stale_reads) = eventual.join().unwrap();
    let content = content(&http);

    // Check: per id, the stored value is the last acknowledged one or one attempted after it.
    let written: BTreeSet<u64> = history.iter().map(|h| h.1).collect();
    let mut anomalies = Vec::new();
    let mut by_id: BTreeMap<u64, Vec<(u64, Outcome)>> = BTreeMap::new();
    for &(id, v, o) in &history {
        by_id.entry(id).or_default().push((v, o));
    }
    for (id, writes) in &by_id {
        let last_ok = writes.iter().rposition(|w| w.1 == Outcome::Ok);
        let allowed: BTreeSet<u64> = match last_ok {
            Some(i) => writes[i..].iter().map(|w| w.0).collect(),
            None => writes.iter().map(|w| w.0).collect(),
        };
        match content.get(id) {
            Some(v) if allowed.contains(v) => {}
            Some(v) if !written.contains(v) => {
                anomalies.push(format!("id {id}: value {v} was never written"))
            }
            None if last_ok.is_none() => {}
            other => anomalies.push(format!(
                "id {id}: has {other:?}, acknowledged {:?}",
                last_ok.map(|i| writes[i].0)
            )),
        }
    }
    // Strong reads: every value was written, and per point values only grow (one writer sends
    // growing values, so going back means a read saw a write that was later rolled back).
    let mut last_read: BTreeMap<u64, u64> = BTreeMap::new();
    for &(id, v) in &strong_reads {
        if v != 0 && !written.contains(&v) {
            anomalies.push(format!("strong read of id {id}: value {v} was never written"));
        }
        if let Some(&before) = last_read.get(&id) {
            if v < before {
                anomalies.push(format!("strong read of id {id}: {v} after {before}"));
            }
        }
        last_read.insert(id, v);
    }
    let ok = history.iter().filter(|h| h.2 == Outcome::Ok).count();
    let failed = history.iter().filter(|h| h.2 == Outcome::Failed).count();
    let unknown = history.iter().filter(|h| h.2 == Outcome::Unknown).count();
    times.sort();
    let p50 = times[times.len() / 2];
    let max = *times.last().unwrap();
    println!(
        "sync RF=3: {failovers} primaries killed (SIGKILL), {} point writes checked ({ok} ok, {failed} failed, \
         {unknown} unknown) over {} ids; anomalies: {}; failover (kill to next acknowledged write) p50 {p50:?}, max {max:?}",
        history.len(),
        by_id.len(),
        anomalies.len()
    );
    println!(
        "reads: {} strong point reads checked ({strong_refused} strong requests refused during \
         failovers); {eventual_reads} eventual counts, {stale_reads} answered by a replica",
        strong_reads.len()
    );
    assert!(anomalies.is_empty(), "anomalies: {anomalies:?}");
    assert!(stale_reads > 0, "no eventual read was spread to a replica");
    assert!(stale_reads < eventual_reads, "no eventual read reached the primary");
    let final_epoch = shard0(&http)["epoch"].as_u64().unwrap();
    assert!(final_epoch > failovers as u64, "every failover bumps the epoch: {final_epoch}");
}
