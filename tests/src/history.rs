//! Histories of client operations against a replicated collection, and their checker.
//!
//! Every write carries a unique value and each point is written by one writer only, so a
//! point's values grow over time. Every client outcome is recorded: ok, failed (4xx) or
//! unknown (5xx or no answer: it may have been applied). [`check`] then verifies a history
//! against the final content: every acknowledged write is present with its value or a later
//! attempted one (else it was lost), no value appears that was never written, strong reads
//! only return written values that never go back per point, and quorum reads hold every write
//! acknowledged before they were sent.
//!
//! Writers and readers work on the collection they are given, with 4-dimensional vectors;
//! writer `k` owns ids `k * IDS .. (k + 1) * IDS`.

use crate::Http;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The dimension of the points written.
pub const DIM: usize = 4;
/// Points each writer writes (writer `k` owns ids `k * IDS .. (k + 1) * IDS`).
pub const IDS: u64 = 400;

/// One write's outcome, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    Ok,
    Failed,
    Unknown,
}

/// One point write: id, value, outcome, when the answer came.
#[derive(Clone, Copy, Debug)]
pub struct Write {
    pub id: u64,
    pub value: u64,
    pub outcome: Outcome,
    pub at: Instant,
}

/// Writes random points of writer `k`'s ids through `path` (a router's or a shard's upsert
/// endpoint, with its query) until `stop`; every write in order.
pub fn writer(
    http: Http,
    path: String,
    k: u64,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<Write>> {
    thread::spawn(move || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11 + k);
        let mut history = Vec::new();
        let mut value = k * 1_000_000_000;
        while !stop.load(Ordering::Relaxed) {
            // Distinct ids per batch, so every value sent is a write of its own.
            let ids: BTreeSet<u64> = (0..5).map(|_| k * IDS + rng.gen_range(0..IDS)).collect();
            let sent: Vec<(u64, u64)> = ids
                .into_iter()
                .map(|id| {
                    value += 1;
                    (id, value)
                })
                .collect();
            let points: Vec<Value> = sent
                .iter()
                .map(|(id, v)| json!({"id": id, "vector": [*id as f32, 1.0, 0.5, -1.0], "payload": {"v": v}}))
                .collect();
            let outcome = match http.put(&path, &json!({ "points": points })) {
                Ok((200, _)) => Outcome::Ok,
                Ok((s, _)) if (400..500).contains(&s) => Outcome::Failed,
                _ => Outcome::Unknown,
            };
            let at = Instant::now();
            history.extend(sent.iter().map(|&(id, value)| Write { id, value, outcome, at }));
            if outcome != Outcome::Ok {
                thread::sleep(Duration::from_millis(20));
            }
        }
        history
    })
}

/// Strong reads of writer 0's points: (id, value) in the order read; counts refusals (during
/// failovers, after the router's retries).
pub fn strong_reader(
    http: Http,
    collection: &str,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<(Vec<(u64, u64)>, u64)> {
    let collection = collection.to_string();
    thread::spawn(move || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let (mut seen, mut refused) = (Vec::new(), 0);
        while !stop.load(Ordering::Relaxed) {
            let ids: Vec<u64> = (0..10).map(|_| rng.gen_range(0..IDS)).collect();
            let ask = json!({"ids": ids, "with_payload": true});
            match http
                .post(&format!("/v1/collections/{collection}/points/get?consistency=strong"), &ask)
            {
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

/// A quorum read of one point: id, the value it found (0 when absent), when it was sent.
#[derive(Clone, Copy, Debug)]
pub struct QuorumRead {
    pub id: u64,
    pub value: u64,
    pub sent: Instant,
}

/// Quorum reads of the points of writers 0 and 1, one point per request; counts refusals.
pub fn quorum_reader(
    http: Http,
    collection: &str,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<(Vec<QuorumRead>, u64)> {
    let collection = collection.to_string();
    thread::spawn(move || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let (mut seen, mut refused) = (Vec::new(), 0);
        while !stop.load(Ordering::Relaxed) {
            let id = rng.gen_range(0..2 * IDS);
            let sent = Instant::now();
            let ask = json!({"ids": [id], "with_payload": true});
            match http
                .post(&format!("/v1/collections/{collection}/points/get?consistency=quorum"), &ask)
            {
                Ok((200, body)) => {
                    let value = body["points"][0]["payload"]["v"].as_u64().unwrap_or(0);
                    seen.push(QuorumRead { id, value, sent });
                }
                _ => refused += 1,
            }
            thread::sleep(Duration::from_millis(5));
        }
        (seen, refused)
    })
}

/// Default (eventual) counts: (answered, answered by a replica).
pub fn eventual_reader(
    http: Http,
    collection: &str,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<(u64, u64)> {
    let collection = collection.to_string();
    thread::spawn(move || {
        let (mut answered, mut stale) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            if let Ok((200, body)) =
                http.post(&format!("/v1/collections/{collection}/points/count"), &json!({}))
            {
                answered += 1;
                stale += u64::from(body["stale"] == true);
            }
            thread::sleep(Duration::from_millis(10));
        }
        (answered, stale)
    })
}

/// id → payload value of the points of a scroll page.
pub fn values(page: &Value) -> BTreeMap<u64, u64> {
    page["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_u64().unwrap(), p["payload"]["v"].as_u64().unwrap()))
        .collect()
}

/// Every point's payload value in `collection`, read with `consistency=strong`.
pub fn content(http: &Http, collection: &str) -> BTreeMap<u64, u64> {
    let r = http
        .post(
            &format!("/v1/collections/{collection}/points/scroll?consistency=strong"),
            &json!({"limit": 10_000}),
        )
        .unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    values(&r.1)
}

/// What the checker found.

#[derive(Default)]
pub struct Verdict {
    /// Values present that were never written, strong reads going back.
    pub anomalies: Vec<String>,
    /// Acknowledged writes missing (neither their value nor a later attempted one is there).
    pub lost: Vec<Write>,
    pub ok: usize,
    pub failed: usize,
    pub unknown: usize,
    pub checked: usize,
    pub strong_reads: usize,
    pub quorum_reads: usize,
    /// Quorum reads that missed a write acknowledged before they were sent.
    pub quorum_missed: Vec<String>,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} point writes checked ({} ok, {} failed, {} unknown), {} strong point reads checked; \
             {} quorum point reads checked; acknowledged writes lost: {}; anomalies: {}; \
             quorum reads missing an acknowledged write: {}",
            self.checked,
            self.ok,
            self.failed,
            self.unknown,
            self.strong_reads,
            self.quorum_reads,
            self.lost.len(),
            self.anomalies.len(),
            self.quorum_missed.len()
        )
    }
}

impl Verdict {
    /// Fails on any anomaly, lost acknowledged write or quorum read that missed one (the
    /// modes that put every acknowledged write on a majority of copies).
    pub fn assert_nothing_lost(&self) {
        assert!(self.anomalies.is_empty(), "anomalies: {:?}", self.anomalies);
        assert!(self.lost.is_empty(), "acknowledged writes lost: {:?}", self.lost);
        assert!(self.quorum_reads > 0, "no quorum read was answered");
        assert!(self.quorum_missed.is_empty(), "quorum reads missed: {:?}", self.quorum_missed);
    }
}

pub fn check(seen: &Seen, content: &BTreeMap<u64, u64>) -> Verdict {
    let (history, strong) = (&seen.history, &seen.strong);
    let mut v = Verdict {
        checked: history.len(),
        strong_reads: strong.len(),
        quorum_reads: seen.quorum.len(),
        ..Verdict::default()
    };
    let written: BTreeSet<u64> = history.iter().map(|w| w.value).collect();
    let mut by_id: BTreeMap<u64, Vec<&Write>> = BTreeMap::new();
    for w in history {
        by_id.entry(w.id).or_default().push(w);
        match w.outcome {
            Outcome::Ok => v.ok += 1,
            Outcome::Failed => v.failed += 1,
            Outcome::Unknown => v.unknown += 1,
        }
    }
    for (id, writes) in &by_id {
        let last_ok = writes.iter().rposition(|w| w.outcome == Outcome::Ok);
        let allowed: BTreeSet<u64> =
            writes[last_ok.unwrap_or(0)..].iter().map(|w| w.value).collect();
        match content.get(id) {
            Some(x) if allowed.contains(x) => {}
            Some(x) if !written.contains(x) => {
                v.anomalies.push(format!("id {id}: value {x} was never written"))
            }
            None if last_ok.is_none() => {}
            _ => v.lost.push(*writes[last_ok.expect("an older value means a later ack")]),
        }
    }
    let mut last_read: BTreeMap<u64, u64> = BTreeMap::new();
    for &(id, x) in strong {
        if x != 0 && !written.contains(&x) {
            v.anomalies.push(format!("strong read of id {id}: value {x} was never written"));
        }
        if let Some(&before) = last_read.get(&id) {
            if x < before {
                v.anomalies.push(format!("strong read of id {id}: {x} after {before}"));
            }
        }
        last_read.insert(id, x);
    }
    for r in &seen.quorum {
        if r.value != 0 && !written.contains(&r.value) {
            v.anomalies
                .push(format!("quorum read of id {}: value {} was never written", r.id, r.value));
        }
        let acked_before = by_id.get(&r.id).and_then(|writes| {
            writes.iter().rev().find(|w| w.outcome == Outcome::Ok && w.at < r.sent)
        });
        if let Some(w) = acked_before.filter(|w| r.value < w.value) {
            v.quorum_missed.push(format!("{r:?} missed {w:?}"));
        }
    }
    v
}

/// Writers and readers running against a router.
pub struct Load {
    stop: Arc<AtomicBool>,
    writers: Vec<thread::JoinHandle<Vec<Write>>>,
    strong: thread::JoinHandle<(Vec<(u64, u64)>, u64)>,
    quorum: thread::JoinHandle<(Vec<QuorumRead>, u64)>,
    eventual: thread::JoinHandle<(u64, u64)>,
}

/// What a load saw.
pub struct Seen {
    pub history: Vec<Write>,
    pub strong: Vec<(u64, u64)>,
    pub strong_refused: u64,
    pub quorum: Vec<QuorumRead>,
    pub quorum_refused: u64,
    pub eventual: (u64, u64),
}

impl Load {
    /// One writer (ids of writer 0), a strong, a quorum and an eventual reader on `collection`.
    pub fn start(http: &Http, collection: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        Load {
            writers: vec![writer(
                http.clone(),
                format!("/v1/collections/{collection}/points"),
                0,
                stop.clone(),
            )],
            strong: strong_reader(http.clone(), collection, stop.clone()),
            quorum: quorum_reader(http.clone(), collection, stop.clone()),
            eventual: eventual_reader(http.clone(), collection, stop.clone()),
            stop,
        }
    }

    pub fn stop(self) -> Seen {
        thread::sleep(Duration::from_millis(300));
        self.stop.store(true, Ordering::Relaxed);
        let history = self.writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        let (strong, strong_refused) = self.strong.join().unwrap();
        let (quorum, quorum_refused) = self.quorum.join().unwrap();
        let eventual = self.eventual.join().unwrap();
        Seen { history, strong, strong_refused, quorum, quorum_refused, eventual }
    }
}
