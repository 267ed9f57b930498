//! Replication between real shard-node processes, driven the way the controller drives it
//! (role assignments over HTTP), without a router.
//!
//! Nemeses: a replica killed (SIGKILL) and restarted; a replica wiped and recreated empty; a
//! primary whose log was truncated behind a snapshot; a primary whose lease is not renewed; a
//! primary deposed by a newer epoch while it still thinks it leads; a deposed primary with an
//! unreplicated tail rejoining as a replica; replicas down (killed, stopped) while a write
//! guard is installed on the primary only.
//! Asserts: a `sync` write is on every in-sync replica when acknowledged; too few in-sync
//! replicas refuse sync writes before writing; a missing confirmation times out (503) instead
//! of acknowledging; replicas converge to the primary's exact content (ids and payload
//! checksums) by log catch-up or snapshot; a lapsed lease stops writes; a deposed primary
//! steps down and acknowledges nothing in sync mode; a divergent tail is discarded; bulky
//! writes are shipped with several batches in flight and still converge; flow control holds
//! async writes back while an in-sync replica hangs (SIGSTOP), at most its wait per write, and
//! not at all while the replicas keep up; replicas get the primary's write guard (and its
//! removal) from their stream. Each test prints what it checked.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use vdb_tests::ownership::{hash, ownership, scroll_ids};
use vdb_tests::{Http, ShardProcess};

const NAME: &str = "c.1.s0";
const DIM: usize = 4;

fn create(node: &ShardProcess, role: &str) {
    let r = node
        .http()
        .put(
            &format!("/v1/shards/{NAME}"),
            &json!({"collection": "c", "dimension": DIM, "metric": "l2", "role": role}),
        )
        .unwrap();
    assert_eq!(r.0, 201, "{r:?}");
}

/// Assigns a role; `replicas` are (node id, process).
fn assign(
    node: &ShardProcess,
    epoch: u64,
    role: &str,
    lease_ms: u64,
    replicas: &[(&str, &ShardProcess)],
    in_sync: &[&str],
    min_in_sync: u32,
) -> (u16, Value) {
    let replicas: Vec<Value> =
        replicas.iter().map(|(n, p)| json!({"node": n, "url": p.url})).collect();
    node.http()
        .put(
            &format!("/v1/shards/{NAME}/role"),
            &json!({"epoch": epoch, "role": role, "lease_until_ms": lease_until(lease_ms), "replicas": replicas,
                    "in_sync": in_sync, "min_in_sync": min_in_sync}),
        )
        .unwrap()
}

/// A lease ending `ms` from now (Unix milliseconds); 0 for none.
fn lease_until(ms: u64) -> u64 {
    if ms == 0 {
        return 0;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    now.as_millis() as u64 + ms
}

/// Upserts ids `ids` with payload `{"v": value}`.
fn upsert(http: &Http, ids: std::ops::Range<u64>, value: u64, query: &str) -> (u16, Value) {
    let points: Vec<Value> = ids
        .map(|i| json!({"id": i, "vector": [i as f32, 1.0, -(i as f32), 0.5], "payload": {"v": value}}))
        .collect();
    http.put(&format!("/v1/shards/{NAME}/points?{query}"), &json!({ "points": points })).unwrap()
}

/// id → payload value, by scrolling the whole shard.
fn content(http: &Http) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    let mut offset = Value::Null;
    loop {
        let mut body = json!({"limit": 1000, "with_payload": true});
        if !offset.is_null() {
            body["offset"] = offset;
        }
        let r = http.post(&format!("/v1/shards/{NAME}/points/scroll"), &body).unwrap();
        assert_eq!(r.0, 200, "{r:?}");
        for p in r.1["points"].as_array().unwrap() {
            out.insert(p["id"].as_u64().unwrap(), p["payload"]["v"].as_u64().unwrap());
        }
        offset = r.1["next_offset"].clone();
        if offset.is_null() {
            return out;
        }
    }
}

/// Counts the shard's points with the read query `query` (e.g. `consistency=strong`).
fn count(http: &Http, query: &str) -> (u16, Value) {
    http.post(&format!("/v1/shards/{NAME}/points/count?{query}"), &json!({})).unwrap()
}

fn replication(http: &Http) -> Value {
    http.get(&format!("/v1/shards/{NAME}")).unwrap().1["replication"].clone()
}

/// Waits until `replica` holds exactly the primary's content; returns it.
fn converged(primary: &Http, replica: &Http, what: &str) -> BTreeMap<u64, u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (p, r) = (content(primary), content(replica));
        if p == r {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: replica never converged: {} vs {} points",
            p.len(),
            r.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn three() -> [ShardProcess; 3] {
    let nodes = [(); 3].map(|_| ShardProcess::start(&[]).unwrap());
    create(&nodes[0], "primary");
    create(&nodes[1], "replica");
    create(&nodes[2], "replica");
    nodes
}

#[test]
fn sync_writes_are_on_every_in_sync_replica_when_acknowledged() {
    let [p, r1, r2] = three();
    for r in [&r1, &r2] {
        assert_eq!(assign(r, 1, "replica", 0, &[], &[], 0).0, 200);
    }
    let a = assign(&p, 1, "primary", 60_000, &[("n1", &r1), ("n2", &r2)], &["n1", "n2"], 1);
    assert_eq!(a.0, 200, "{a:?}");
    let (ph, h1, h2) = (p.http(), r1.http(), r2.http());
    let mut checked = 0;
    for batch in 0..40u64 {
        let r = upsert(&ph, batch * 10..batch * 10 + 10, batch, "consistency=sync");
        assert_eq!(r.0, 200, "{r:?}");
        // Acknowledged in sync mode: already applied on both replicas.
        for h in [&h1, &h2] {
            let got = h
                .post(&format!("/v1/shards/{NAME}/points/get"), &json!({"ids": [batch * 10 + 9]}))
                .unwrap();
            assert_eq!(
                got.1["points"].as_array().unwrap().len(),
                1,
                "batch {batch} missing on a replica"
            );
            checked += 1;
        }
    }
    let info = replication(&ph);
    assert_eq!(info["role"], "primary");
    for rep in info["replicas"].as_array().unwrap() {
        assert_eq!(rep["acked_lsn"], info["last_lsn"], "{info}");
    }
    // Replicas refuse client writes.
    let r = upsert(&h1, 0..1, 0, "");
    assert_eq!((r.0, r.1["error"]["code"].as_str()), (409, Some("not_primary")), "{r:?}");
    for h in [&h1, &h2] {
        converged(&ph, h, "sync");
    }
    println!("sync: 40 acknowledged batches, {checked} replica reads confirmed them at once; replicas identical");
}

#[test]
fn too_few_in_sync_refuses_and_a_dead_replica_times_out_then_catches_up() {
    let [p, mut r1, r2] = three();
    let ph = p.http();
    assert_eq!(assign(&p, 1, "primary", 60_000, &[("n1", &r1), ("n2", &r2)], &["n1"], 2).0, 200);
    let before = replication(&ph)["last_lsn"].clone();
    let r = upsert(&ph, 0..5, 1, "consistency=sync");
    assert_eq!((r.0, r.1["error"]["code"].as_str()), (503, Some("not_enough_replicas")), "{r:?}");
    assert_eq!(replication(&ph)["last_lsn"], before, "refused before anything was written");
    // Async writes need no replica.
    assert_eq!(upsert(&ph, 0..5, 1, "").0, 200);

    assert_eq!(
        assign(&p, 1, "primary", 60_000, &[("n1", &r1), ("n2", &r2)], &["n1", "n2"], 1).0,
        200
    );
    assert_eq!(upsert(&ph, 5..10, 2, "consistency=sync").0, 200);
    r1.kill9();
    let started = Instant::now();
    let r = upsert(&ph, 10..20, 3, "consistency=sync&timeout_ms=500");
    assert_eq!((r.0, r.1["error"]["code"].as_str()), (503, Some("replication_timeout")), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // n2 alone satisfies semi-sync with one ack.
    let r = upsert(&ph, 20..30, 4, "consistency=semi_sync&acks=1&timeout_ms=2000");
    assert_eq!(r.0, 200, "{r:?}");
    // Writes go on while n1 is down; it catches up from the primary's log when it is back.
    for b in 3..20u64 {
        assert_eq!(upsert(&ph, b * 10..b * 10 + 10, b, "").0, 200);
    }
    r1.restart().unwrap();
    // The harness restarts it on a new port: the controller would send the node's new address.
    assert_eq!(assign(&p, 1, "primary", 60_000, &[("n1", &r1), ("n2", &r2)], &["n2"], 1).0, 200);
    let c = converged(&ph, &r1.http(), "restarted replica");
    converged(&ph, &r2.http(), "live replica");
    let info = replication(&ph);
    println!(
        "quorum: refused below min_in_sync, timed out with a dead in-sync replica, restarted replica caught up on {} points (log {}); replicas: {}",
        c.len(),
        info["last_lsn"],
        info["replicas"]
    );
}

#[test]
fn replicas_behind_a_truncated_log_get_a_snapshot() {
    let [p, r1, r2] = three();
    let ph = p.http();
    for b in 0..10u64 {
        assert_eq!(upsert(&ph, b * 20..b * 20 + 20, b, "").0, 200);
    }
    // The primary's log is truncated behind a snapshot: a fresh replica needs the snapshot.
    assert_eq!(ph.post(&format!("/v1/shards/{NAME}/snapshot"), &json!({})).unwrap().0, 200);
    for b in 10..15u64 {
        assert_eq!(upsert(&ph, b * 20..b * 20 + 20, b, "").0, 200);
    }
    assert_eq!(
        assign(&p, 1, "primary", 60_000, &[("n1", &r1), ("n2", &r2)], &["n1", "n2"], 1).0,
        200
    );
    let c1 = converged(&ph, &r1.http(), "fresh replica");
    converged(&ph, &r2.http(), "fresh replica");
    assert_eq!(
        upsert(&ph, 1000..1010, 99, "consistency=sync").0,
        200,
        "streaming after the snapshot"
    );
    // A replica wiped and recreated empty is resynced too.
    drop(r1);
    let r1 = ShardProcess::start(&[]).unwrap();
    create(&r1, "replica");
    assert_eq!(assign(&p, 1, "primary", 60_000, &[("n1", &r1), ("n2", &r2)], &["n2"], 1).0, 200);
    let c = converged(&ph, &r1.http(), "wiped replica");
    let checksum: u64 = c.iter().map(|(id, v)| id.wrapping_mul(31).wrapping_add(*v)).sum();
    println!(
        "snapshot catch-up: {} points on fresh replicas, then {} after a wipe (checksum {checksum})",
        c1.len(),
        c.len()
    );
}

#[test]
fn leases_and_epochs_fence_a_deposed_primary() {
    let [p, r1, r2] = three();
    let (ph, h1, h2) = (p.http(), r1.http(), r2.http());
    for r in [&r1, &r2] {
        assert_eq!(assign(r, 1, "replica", 0, &[], &[], 0).0, 200);
    }
    // A lease that is not renewed lapses: writes stop.
    assert_eq!(assign(&p, 1, "primary", 300, &[("n1", &r1), ("n2", &r2)], &["n1", "n2"], 1).0, 200);
    assert_eq!(upsert(&ph, 0..10, 1, "consistency=sync").0, 200);
    std::thread::sleep(Duration::from_millis(350));
    let r = upsert(&ph, 10..20, 2, "");
    assert_eq!(r.0, 503, "a lapsed lease takes no writes: {r:?}");
    assert_eq!(replication(&ph)["lease_remaining_ms"], 0);
    // Strong reads need the lease too; eventual reads do not, on any copy.
    let r = count(&ph, "consistency=strong");
    assert_eq!((r.0, r.1["error"]["code"].as_str()), (503, Some("unavailable")), "{r:?}");
    assert_eq!(count(&ph, "consistency=eventual"), (200, json!({"count": 10})));
    converged(&ph, &h1, "before strong reads");
    let r = count(&h1, "consistency=strong");
    assert_eq!((r.0, r.1["error"]["code"].as_str()), (409, Some("not_primary")), "{r:?}");
    assert_eq!(count(&h1, ""), (200, json!({"count": 10})));
    let r = count(&h1, "consistency=linearizable");
    assert_eq!((r.0, r.1["error"]["code"].as_str()), (400, Some("invalid_argument")), "{r:?}");
    let r = assign(&p, 0, "primary", 60_000, &[], &[], 0);
    assert_eq!((r.0, r.1["error"]["code"].as_str()), (409, Some("stale_epoch")), "{r:?}");

    // The old primary is renewed (it still thinks it leads epoch 1) while n1 is promoted in
    // epoch 2 and n2 follows n1: n0's batches are refused, it steps down, and a sync write on
    // it is never acknowledged.
    assert_eq!(assign(&p, 1, "primary", 60_000, &[("n2", &r2)], &["n2"], 1).0, 200);
    converged(&ph, &h2, "before the promotion");
    assert_eq!(assign(&r1, 2, "primary", 60_000, &[("n2", &r2)], &["n2"], 1).0, 200);
    assert_eq!(assign(&r2, 2, "replica", 0, &[], &[], 0).0, 200);
    let r = upsert(&ph, 100..110, 7, "consistency=sync&timeout_ms=1000");
    assert_ne!(r.0, 200, "a deposed primary acknowledged a sync write: {r:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = upsert(&ph, 200..201, 8, "");
        if r.0 == 409 {
            assert_eq!(r.1["error"]["code"], "not_primary", "{r:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the deposed primary never stepped down: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!content(&h2).contains_key(&100), "n2 took a write of the deposed epoch");
    let r = count(&ph, "consistency=strong");
    assert_eq!((r.0, r.1["error"]["code"].as_str()), (409, Some("not_primary")), "{r:?}");
    assert_eq!(count(&h1, "consistency=strong").0, 200, "the new primary serves strong reads");

    // The new primary's writes reach n2; n0 rejoins as a replica of epoch 2: its tail of
    // epoch 1 that n1 never had (ids 100.., 200) is discarded and it converges to n1.
    assert_eq!(upsert(&h1, 300..320, 9, "consistency=sync").0, 200);
    // Quorum reads are served by any copy, lease or not, and say where its log ends: the
    // deposed primary's tail is of epoch 1, the new primary's of epoch 2 (ahead, whatever
    // the LSNs).
    let (old, new) = (count(&ph, "consistency=quorum"), count(&h1, "consistency=quorum"));
    assert_eq!((old.0, new.0), (200, 200), "{old:?} {new:?}");
    assert_eq!(old.1["position"]["epoch"], 1, "{old:?}");
    assert_eq!(new.1["position"], json!({"epoch": 2, "lsn": 2}), "{new:?}");
    assert!(count(&ph, "").1.get("position").is_none(), "only quorum reads say where they stood");
    assert_eq!(assign(&p, 2, "replica", 0, &[], &[], 0).0, 200);
    assert_eq!(assign(&r1, 2, "primary", 60_000, &[("n2", &r2), ("n0", &p)], &["n2"], 1).0, 200);
    let c = converged(&h1, &ph, "rejoined primary");
    assert!(!c.contains_key(&100) && !c.contains_key(&200), "the divergent tail survived");
    converged(&h1, &h2, "replica");
    println!(
        "fencing: lapsed lease refused writes; deposed primary stepped down without acknowledging; \
         its divergent tail was discarded on rejoin ({} points on every copy)",
        c.len()
    );
}

#[test]
fn bulky_writes_are_pipelined_and_replicas_converge() {
    // Writes of ~0.5 MB each from two clients at once: while one batch is on its way to a
    // replica the next has enough to leave too, so several are in flight; replicas must still
    // apply them in order and end up equal to the primary.
    let [p, r1, r2] = three();
    for r in [&r1, &r2] {
        assert_eq!(assign(r, 1, "replica", 0, &[], &[], 0).0, 200);
    }
    let a = assign(&p, 1, "primary", 60_000, &[("n1", &r1), ("n2", &r2)], &["n1", "n2"], 1);
    assert_eq!(a.0, 200, "{a:?}");
    let pad = "x".repeat(200);
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let (ph, pad) = (p.http(), pad.clone());
            std::thread::spawn(move || {
                for round in 0..10u64 {
                    let points: Vec<Value> = (0..2_000u64)
                        .map(|i| {
                            let id = w * 1_000_000 + (round % 5) * 2_000 + i;
                            json!({"id": id, "vector": [id as f32, 1.0, 0.0, 0.5],
                                   "payload": {"v": round, "pad": pad}})
                        })
                        .collect();
                    let r = ph
                        .put(&format!("/v1/shards/{NAME}/points"), &json!({ "points": points }))
                        .unwrap();
                    assert_eq!(r.0, 200, "{r:?}");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let c = converged(&p.http(), &r1.http(), "n1");
    converged(&p.http(), &r2.http(), "n2");
    let metrics = p.http().metrics().unwrap();
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let (batches, pipelined) = (
        sample("vdb_shard_replication_batches_total"),
        sample("vdb_shard_replication_pipelined_batches_total"),
    );
    println!(
        "pipelining: 20 writes of 2,000 points to 2 replicas in {batches} batches, {pipelined} \
         sent while another was in flight; {} points on every copy",
        c.len()
    );
    assert!(pipelined > 0.0, "no batch was pipelined ({batches} batches)");
}

/// The primary's count of writes held back by flow control.
fn flow_control_waits(http: &Http) -> f64 {
    let text = http.metrics().unwrap();
    let name = "vdb_shard_flow_control_waits_total";
    let samples = text.lines().filter(|l| l.starts_with(name));
    samples.filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum::<f64>().abs()
}

#[test]
fn flow_control_holds_async_writes_back_while_a_replica_hangs() {
    // Nemesis: SIGSTOP of an in-sync replica (its stream stays open, so it is waited for until
    // the controller would take it out). Asserts: while both replicas keep up, async writes
    // are not held back; while one hangs, they are, each at most the node's wait (100 ms by
    // default) beyond what it costs; once it resumes it converges.
    let [p, r1, r2] = three();
    let ph = p.http();
    assert_eq!(
        assign(&p, 1, "primary", 60_000, &[("n1", &r1), ("n2", &r2)], &["n1", "n2"], 1).0,
        200
    );
    const WRITES: u64 = 10;
    let timed = |from: u64| {
        let started = Instant::now();
        for b in from..from + WRITES {
            assert_eq!(upsert(&ph, b * 10..b * 10 + 10, b, "").0, 200);
        }
        started.elapsed()
    };
    let keeping_up = timed(0);
    assert_eq!(flow_control_waits(&ph), 0.0, "nothing held back while the replicas keep up");
    r1.pause();
    // One write it will not confirm, left to age past the 50 ms target.
    assert_eq!(upsert(&ph, 1_000..1_010, 1, "").0, 200);
    std::thread::sleep(Duration::from_millis(60));
    let hanging = timed(WRITES);
    let waits = flow_control_waits(&ph);
    r1.resume();
    converged(&ph, &r1.http(), "resumed replica");
    converged(&ph, &r2.http(), "live replica");
    println!(
        "flow control: {WRITES} async writes took {keeping_up:?} with both replicas keeping up, \
         {hanging:?} with one stopped ({waits} held back)"
    );
    assert!(waits >= WRITES as f64, "only {waits} writes held back");
    assert!(hanging >= Duration::from_millis(100) * WRITES as u32, "{hanging:?}");
    assert!(hanging < Duration::from_millis(150) * WRITES as u32 + keeping_up, "{hanging:?}");
}

/// The guard a copy holds (`null` for none).
fn guard_of(http: &Http) -> Value {
    http.get(&format!("/v1/shards/{NAME}")).unwrap().1.get("guard").cloned().unwrap_or(Value::Null)
}

/// Waits until `http` holds `want` as its guard; returns how long that took.
fn guard_arrives(http: &Http, want: &Value, what: &str) -> Duration {
    let started = Instant::now();
    while guard_of(http) != *want {
        assert!(started.elapsed() < Duration::from_secs(15), "{what}: guard never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

#[test]
fn replicas_that_missed_a_write_guard_get_it_from_their_primary() {
    // Nemeses: a replica killed (SIGKILL) and one stopped (SIGSTOP) while a write guard is
    // installed on the primary only (as a router does when it cannot reach an out-of-sync
    // replica); later the guard is removed from the primary only. Asserts: each replica ends
    // up with the primary's guard, or with none like it; the killed one, once promoted, refuses
    // exactly the points its shard handed over (409) and takes the ones it still owns.
    let [p, mut r1, r2] = three();
    let ph = p.http();
    let nodes = |r1: &ShardProcess| {
        assign(&p, 1, "primary", 60_000, &[("n1", r1), ("n2", &r2)], &["n1", "n2"], 1).0
    };
    assert_eq!(nodes(&r1), 200);
    for b in 0..10u64 {
        assert_eq!(upsert(&ph, b * 10..b * 10 + 10, b, "").0, 200);
    }
    converged(&ph, &r1.http(), "replica n1");
    converged(&ph, &r2.http(), "replica n2");

    // Shard 0 was the only shard and has handed the points of a new shard 1 over.
    let own = ownership(hash(&[0]), hash(&[0, 1]), &[0], 0);
    let guard = json!({"ownership": own, "frozen": false});
    r1.kill9();
    r2.pause();
    assert_eq!(ph.put(&format!("/v1/shards/{NAME}/guard"), &guard).unwrap().0, 200);
    std::thread::sleep(Duration::from_millis(300));
    r2.resume();
    let stopped = guard_arrives(&r2.http(), &guard, "stopped replica");
    r1.restart().unwrap();
    let r1h = r1.http();
    assert_eq!(guard_of(&r1h), Value::Null, "the killed replica missed the guard");
    assert_eq!(nodes(&r1), 200);
    let killed = guard_arrives(&r1h, &guard, "restarted replica");
    converged(&ph, &r1h, "restarted replica");

    assert_eq!(ph.delete(&format!("/v1/shards/{NAME}/guard")).unwrap().0, 204);
    let removed = guard_arrives(&r2.http(), &Value::Null, "removal");
    guard_arrives(&r1h, &Value::Null, "removal");
    assert_eq!(ph.put(&format!("/v1/shards/{NAME}/guard"), &guard).unwrap().0, 200);
    guard_arrives(&r1h, &guard, "second guard");

    // The replica that was down takes over: it refuses what its shard handed over, which is
    // what a read under the same ownership no longer sees.
    let owned: BTreeSet<u64> =
        scroll_ids(&r1h, NAME, Some(&own)).into_iter().filter(|&i| i < 100).collect();
    assert_eq!(assign(&p, 2, "replica", 0, &[], &[], 0).0, 200);
    assert_eq!(assign(&r1, 2, "primary", 60_000, &[], &[], 0).0, 200);
    let (mut refused, mut taken) = (0, BTreeSet::new());
    for i in 0..100u64 {
        let r = upsert(&r1h, i..i + 1, 99, "");
        match r.0 {
            409 => refused += 1,
            200 => _ = taken.insert(i),
            _ => panic!("{r:?}"),
        }
    }
    println!(
        "guards: a stopped replica got the guard {stopped:?} after it resumed, a killed one \
         {killed:?} after it was assigned again, removal reached them in {removed:?}; the \
         promoted replica refused {refused} of 100 writes (handed over) and took {}",
        taken.len()
    );
    assert!(refused > 0 && !taken.is_empty(), "{refused} refused, {taken:?} taken");
    assert_eq!(taken, owned, "the promoted replica took exactly the points it owns");
}
