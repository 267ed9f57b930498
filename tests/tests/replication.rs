//! Replicated collections through the router, under faults.
//!
//! Every write carries a unique value, and each point is written by one writer only, so a
//! point's values grow over time. Every client outcome is recorded: ok, failed (4xx) or unknown
//! (5xx or no answer: it may have been applied). The checker (`vdb_tests::history`) verifies
//! the history against the final content, read with `consistency=strong`: every acknowledged write is present with
//! its value or a later attempted one (else it was lost), no value appears that was never
//! written; strong reads made meanwhile only return written values that never go back per
//! point (going back means a read saw a write that a failover rolled back); and quorum reads
//! (`consistency=quorum`, answered by a majority of copies without the primary's lease) hold
//! every write acknowledged before they began, in the modes where an acknowledged write is on
//! a majority (`sync`, `semi_sync` with one ack at RF=3). Each test prints operations checked,
//! faults injected and anomalies.
//!
//! Nemeses, and what is asserted:
//! - `sync_writes_survive_repeated_primary_kills`: SIGKILL the node of the shard's primary,
//!   again and again (`VDB_FAILOVERS`, default 5 in CI, 20 for the long run), restarting and
//!   re-registering it each time (it rejoins as a replica). `sync`, RF=3: nothing lost; every
//!   failover bumps the epoch; eventual reads are spread over replicas and primary. Failover
//!   time (kill to next acknowledged write) p50/max with the router's default health interval.
//! - `async_loses_at_most_the_last_moment_before_a_kill`: the same nemesis in `async` mode:
//!   lost acknowledged writes are counted, and each was acknowledged less than the documented
//!   bound (`--max-replica-lag-ms` + one health interval) before the kill that lost it.
//! - `a_paused_primary_never_acknowledges_in_its_old_epoch`: SIGSTOP the primary's node past
//!   failover, then SIGCONT it: it refuses writes sent straight to it, nothing acknowledged is
//!   lost, strong reads never go back, and it rejoins as an in-sync replica.
//! - `replicas_are_added_and_removed_online`: the replication factor goes 2 → 3 → 4 → 2 under
//!   sync writes: new replicas catch up and join the in-sync set, removed copies are dropped,
//!   no write fails, and the remaining copies hold the same content.
//! - `a_partitioned_primary_stops_acknowledging_within_its_lease`: `semi_sync` with one ack,
//!   RF=3. A TCP proxy cuts the primary off from the router (controller and clients through
//!   it) while a client keeps writing straight to it and it still reaches its replicas: it
//!   acknowledges nothing after its lease, nothing after the new primary was named (no split
//!   brain), and the new primary holds every write either side acknowledged.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use vdb_tests::fleet::{Fleet, RouterProcess};
use vdb_tests::history::{check, content, values, writer, Load, Outcome, Seen, DIM, IDS};
use vdb_tests::proxy::Proxy;
use vdb_tests::{Http, ShardProcess};

/// The router's default health interval, so failover times are those users get.
const ROUTER_ARGS: &[&str] = &["--health-interval-ms", "200"];
/// The router defaults the bounds below depend on.
const LEASE: Duration = Duration::from_millis(1_000);
const MAX_REPLICA_LAG: Duration = Duration::from_millis(1_000);
const HEALTH_INTERVAL: Duration = Duration::from_millis(200);

fn create(http: &Http, consistency: Value) {
    let r = http
        .put(
            "/v1/collections/c",
            &json!({"dimension": DIM, "metric": "l2", "replication_factor": 3,
                    "write_consistency": consistency}),
        )
        .unwrap();
    assert_eq!(r.0, 201, "{r:?}");
    assert_eq!(shard0(http)["in_sync"].as_array().unwrap().len(), 2, "{r:?}");
}

fn shard0(http: &Http) -> Value {
    http.get("/v1/collections/c").unwrap().1["shards"][0].clone()
}

/// The primary's node id and index (`n{i}`), and the shard's epoch.
fn primary(http: &Http) -> (String, usize, u64) {
    let s = shard0(http);
    let node = s["nodes"][0].as_str().unwrap().to_string();
    let i = node.trim_start_matches('n').parse().unwrap();
    (node, i, s["epoch"].as_u64().unwrap())
}

/// Waits until a node other than `old` leads an epoch newer than `epoch` and a write through
/// the router is acknowledged again; returns when the new epoch was first seen.
fn await_failover(http: &Http, old: &str, epoch: u64, probe_id: u64) -> Instant {
    // Requests that touch the old primary's node wait for their deadline while it hangs:
    // poll with a short one, so the failover is seen when it happens.
    let http = &Http::with_timeout(http.base(), Duration::from_millis(300));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut named = None;
    loop {
        let now = match http.get("/v1/collections/c") {
            Ok((200, body)) => body["shards"][0].clone(),
            _ => Value::Null,
        };
        if now["epoch"].as_u64().is_some_and(|e| e > epoch) && now["nodes"][0] != old {
            let named = *named.get_or_insert_with(Instant::now);
            let probe = http.put(
                "/v1/collections/c/points",
                &json!({"points": [{"id": probe_id, "vector": [0.0, 0.0, 0.0, 1.0], "payload": {"v": 0}}]}),
            );
            if matches!(probe, Ok((200, _))) {
                return named;
            }
        }
        assert!(Instant::now() < deadline, "no failover from {old}: {now}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `node` is an in-sync replica again.
fn await_in_sync(http: &Http, node: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let in_sync = |s: &Value| s["in_sync"].as_array().is_some_and(|a| a.iter().any(|n| n == node));
    while !in_sync(&shard0(http)) {
        assert!(Instant::now() < deadline, "{node} never got back in sync: {}", shard0(http));
        thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the primary's node `failovers` times under load; the kill instants and failover
/// times (kill to the next acknowledged write).
fn kill_primaries(fleet: &mut Fleet, failovers: usize) -> (Seen, Vec<Instant>, Vec<Duration>) {
    let http = fleet.http();
    let load = Load::start(&http, "c");
    let (mut kills, mut times) = (Vec::new(), Vec::new());
    for round in 0..failovers {
        thread::sleep(Duration::from_millis(500));
        let (node, i, epoch) = primary(&http);
        fleet.shards[i].kill9();
        let killed = Instant::now();
        await_failover(&http, &node, epoch, 10 * IDS + round as u64);
        times.push(killed.elapsed());
        kills.push(killed);
        // The killed node comes back (on a new port) and rejoins as a replica, in sync.
        fleet.shards[i].restart().unwrap();
        let url = fleet.shards[i].url.clone();
        let r = http.put(&format!("/v1/cluster/nodes/{node}"), &json!({ "url": url })).unwrap();
        assert_eq!(r.0, 200, "{r:?}");
        await_in_sync(&http, &node);
    }
    (load.stop(), kills, times)
}

fn p50_max(times: &mut [Duration]) -> (Duration, Duration) {
    times.sort();
    (times[times.len() / 2], *times.last().unwrap())
}

#[test]
fn sync_writes_survive_repeated_primary_kills() {
    let failovers: usize =
        std::env::var("VDB_FAILOVERS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let mut fleet = Fleet::start(3, &[], ROUTER_ARGS).unwrap();
    let http = fleet.http();
    create(&http, json!({"mode": "sync"}));
    let (seen, _, mut times) = kill_primaries(&mut fleet, failovers);
    let v = check(&seen, &content(&http, "c"));
    let (p50, max) = p50_max(&mut times);
    let (eventual, stale) = seen.eventual;
    println!(
        "sync RF=3: {failovers} primaries killed (SIGKILL); {v} ({} strong requests refused); \
         {} quorum requests refused; failover (kill to next acknowledged write) p50 {p50:?}, \
         max {max:?}; {eventual} eventual counts, {stale} answered by a replica",
        seen.strong_refused, seen.quorum_refused
    );
    v.assert_nothing_lost();
    assert!(stale > 0, "no eventual read was spread to a replica");
    assert!(stale < eventual, "no eventual read reached the primary");
    let (_, _, epoch) = primary(&http);
    assert!(epoch > failovers as u64, "every failover bumps the epoch: {epoch}");
}

#[test]
fn async_loses_at_most_the_last_moment_before_a_kill() {
    let failovers = 2;
    let mut fleet = Fleet::start(3, &[], ROUTER_ARGS).unwrap();
    let http = fleet.http();
    create(&http, json!({"mode": "async"}));
    let (seen, kills, _) = kill_primaries(&mut fleet, failovers);
    let v = check(&seen, &content(&http, "c"));
    // A replica stays in sync only while its oldest unconfirmed record is younger than the
    // lag bound (checked every health interval), and only in-sync replicas are promoted.
    let bound = MAX_REPLICA_LAG + HEALTH_INTERVAL;
    let out_of_bound: Vec<String> = v
        .lost
        .iter()
        .map(|w| match kills.iter().find(|&&k| k >= w.at) {
            Some(&k) if k - w.at <= bound => Ok(()),
            Some(&k) => Err(format!("{w:?} acknowledged {:?} before a kill", k - w.at)),
            None => Err(format!("{w:?} lost without a kill after it")),
        })
        .filter_map(Result::err)
        .collect();
    println!(
        "async RF=3: {failovers} primaries killed (SIGKILL); {v}; lost beyond the bound \
         (acknowledged more than {bound:?} before the kill): {}",
        out_of_bound.len()
    );
    assert!(v.anomalies.is_empty(), "anomalies: {:?}", v.anomalies);
    assert!(out_of_bound.is_empty(), "lost beyond the documented bound: {out_of_bound:?}");
}

/// The name of the shard's local copy on `node`.
fn local_name(node: &Http) -> String {
    node.get("/v1/shards").unwrap().1["shards"][0]["name"].as_str().unwrap().to_string()
}

#[test]
fn a_paused_primary_never_acknowledges_in_its_old_epoch() {
    // A router write stuck on the paused node gives up after 2 s (then it is unknown).
    let args = [ROUTER_ARGS, &["--write-timeout-ms", "2000"][..]].concat();
    let fleet = Fleet::start(3, &[], &args).unwrap();
    let http = fleet.http();
    create(&http, json!({"mode": "sync"}));
    let load = Load::start(&http, "c");
    thread::sleep(Duration::from_millis(500));
    let (node, i, epoch) = primary(&http);
    let old = fleet.shards[i].http();
    let local = local_name(&old);
    fleet.shards[i].pause();
    let paused = Instant::now();
    await_failover(&http, &node, epoch, 10 * IDS);
    let failover = paused.elapsed();
    // Writes go on in the new epoch while the old primary still sleeps, then it wakes up.
    thread::sleep(Duration::from_millis(1_000));
    fleet.shards[i].resume();
    let mut refused = 0;
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        let point = json!({"points": [{"id": 10 * IDS + 1, "vector": [1.0, 0.0, 0.0, 0.0], "payload": {"v": 0}}]});
        let r = old.put(&format!("/v1/shards/{local}/points"), &point).unwrap();
        assert!(
            r.0 == 503 || (r.0 == 409 && r.1["error"]["code"] == "not_primary"),
            "the resumed primary of epoch {epoch} acknowledged a write: {r:?}"
        );
        refused += 1;
        thread::sleep(Duration::from_millis(20));
    }
    await_in_sync(&http, &node);
    let seen = load.stop();
    let v = check(&seen, &content(&http, "c"));
    println!(
        "pause: primary {node} stopped (SIGSTOP) for {:?}, failover after {failover:?}; {refused} \
         writes straight to it after SIGCONT, all refused; {v}",
        paused.elapsed()
    );
    v.assert_nothing_lost();
}

#[test]
fn a_partitioned_primary_stops_acknowledging_within_its_lease() {
    // The router reaches every node through a proxy; the test's direct writer does not.
    let nodes: Vec<ShardProcess> = (0..3).map(|_| ShardProcess::start(&[]).unwrap()).collect();
    let proxies: Vec<Proxy> = nodes.iter().map(|n| Proxy::start(&n.url).unwrap()).collect();
    let meta = tempfile::tempdir().unwrap();
    let registered: Vec<(String, String)> =
        proxies.iter().enumerate().map(|(i, p)| (format!("n{i}"), p.url.clone())).collect();
    let router = RouterProcess::start(
        "r1",
        &format!("local://{}", meta.path().join("meta.json").display()),
        &registered,
        ROUTER_ARGS,
    )
    .unwrap();
    let http = router.http();
    create(&http, json!({"mode": "semi_sync", "acks": 1}));
    let load = Load::start(&http, "c");
    let (node, i, epoch) = primary(&http);
    let direct = nodes[i].http();
    let path = format!("/v1/shards/{}/points?consistency=semi_sync&acks=1", local_name(&direct));
    let stop_direct = Arc::new(AtomicBool::new(false));
    let direct_writer = writer(direct, path, 1, stop_direct.clone());
    thread::sleep(Duration::from_millis(500));

    proxies[i].cut();
    let cut = Instant::now();
    let named = await_failover(&http, &node, epoch, 10 * IDS);
    let failover = cut.elapsed();
    thread::sleep(Duration::from_millis(1_000));
    stop_direct.store(true, Ordering::Relaxed);
    let direct_history = direct_writer.join().unwrap();
    proxies[i].heal();
    await_in_sync(&http, &node);
    let mut seen = load.stop();

    let acked_after =
        |t: Instant| direct_history.iter().filter(|w| w.outcome == Outcome::Ok && w.at > t).count();
    let last_direct_ack =
        direct_history.iter().filter(|w| w.outcome == Outcome::Ok).map(|w| w.at).max().unwrap();
    let acked_during_cut = acked_after(cut);
    let split_brain = acked_after(named);
    seen.history.extend(direct_history);
    let v = check(&seen, &content(&http, "c"));
    let stopped_after = last_direct_ack.saturating_duration_since(cut);
    println!(
        "partition: primary {node} cut off from the router (its controller) for {:?}, failover after \
         {failover:?}; straight to it: {acked_during_cut} writes acknowledged after the cut, the last \
         {stopped_after:?} after it (lease {LEASE:?}), {split_brain} after the new primary was named; \
         {v}",
        cut.elapsed()
    );
    assert_eq!(split_brain, 0, "the old primary acknowledged writes after the new one was named");
    // The lease was renewed at most once more after the cut (a renewal already under way).
    assert!(
        stopped_after <= LEASE + HEALTH_INTERVAL * 2,
        "acknowledged {stopped_after:?} after the cut"
    );
    v.assert_nothing_lost();
}

/// id → payload value of one node's copy, read straight from the shard node.
fn copy_content(node: &Http, local: &str) -> BTreeMap<u64, u64> {
    let r = node
        .post(
            &format!("/v1/shards/{local}/points/scroll"),
            &json!({"limit": 10_000, "with_payload": true}),
        )
        .unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    values(&r.1)
}

/// Waits until the shard has `copies` nodes, all but the primary in sync; how long it took.
fn await_copies(http: &Http, copies: usize) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    loop {
        let s = shard0(http);
        let nodes = s["nodes"].as_array().map_or(0, Vec::len);
        let in_sync = s["in_sync"].as_array().map_or(0, Vec::len);
        if nodes == copies && in_sync == copies - 1 {
            return started.elapsed();
        }
        assert!(Instant::now() < deadline, "never reached {copies} copies in sync: {s}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn replicas_are_added_and_removed_online() {
    // Nemesis: the replication factor changes under sync writes and reads: 2 → 3 → 4 → 2.
    // Asserts: each new replica catches up and joins the in-sync set; removed replicas' copies
    // are dropped; no write fails meanwhile and nothing acknowledged is lost; every remaining
    // copy holds the same content.
    let fleet = Fleet::start(4, &[], ROUTER_ARGS).unwrap();
    let http = fleet.http();
    let r = http
        .put(
            "/v1/collections/c",
            &json!({"dimension": DIM, "metric": "l2", "replication_factor": 2,
                    "write_consistency": {"mode": "sync"}}),
        )
        .unwrap();
    assert_eq!(r.0, 201, "{r:?}");
    let load = Load::start(&http, "c");
    thread::sleep(Duration::from_millis(300));
    let mut took = Vec::new();
    for rf in [3usize, 4, 2] {
        let r = http.patch("/v1/collections/c", &json!({ "replication_factor": rf })).unwrap();
        assert_eq!(r.0, 200, "{r:?}");
        took.push((rf, await_copies(&http, rf)));
        thread::sleep(Duration::from_millis(300));
    }
    let r = http.patch("/v1/collections/c", &json!({"replication_factor": 1})).unwrap();
    assert_eq!((r.0, r.1["error"]["code"].as_str()), (400, Some("invalid_argument")), "{r:?}");
    let r = http.patch("/v1/collections/c", &json!({"replication_factor": 5})).unwrap();
    assert_eq!(r.0, 400, "more copies than nodes: {r:?}");

    // A write may weaken its collection's consistency, never strengthen it.
    let write = |query: &str| {
        let point = json!({"points": [{"id": 10 * IDS, "vector": [1.0, 0.0, 0.0, 0.0], "payload": {"v": 0}}]});
        http.put(&format!("/v1/collections/c/points?{query}"), &point).unwrap()
    };
    for query in ["consistency=async", "consistency=semi_sync&acks=1", "consistency=sync"] {
        assert_eq!(write(query).0, 200, "{query} on a sync collection");
    }
    let r = http
        .patch("/v1/collections/c", &json!({"write_consistency": {"mode": "semi_sync", "acks": 1}}))
        .unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    for query in ["consistency=sync", "consistency=semi_sync", "acks=1", "consistency=strong"] {
        let r = write(query);
        assert_eq!(
            (r.0, r.1["error"]["code"].as_str()),
            (400, Some("invalid_argument")),
            "{query}: {r:?}"
        );
    }
    assert_eq!(write("consistency=async").0, 200);
    let seen = load.stop();
    let content = content(&http, "c");
    let v = check(&seen, &content);

    // The two copies left hold the same points as the router answers; the others none.
    let s = shard0(&http);
    let holders: Vec<usize> = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().trim_start_matches('n').parse().unwrap())
        .collect();
    let local = local_name(&fleet.shards[holders[0]].http());
    for (i, node) in fleet.shards.iter().enumerate() {
        let h = node.http();
        if holders.contains(&i) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while copy_content(&h, &local) != content {
                assert!(Instant::now() < deadline, "n{i}'s copy differs from the collection");
                thread::sleep(Duration::from_millis(50));
            }
        } else {
            let shards = h.get("/v1/shards").unwrap().1["shards"].clone();
            assert_eq!(shards, json!([]), "n{i} still holds a removed copy");
        }
    }
    println!(
        "replication factor 2 → 3 → 4 → 2 under load, copies in sync after {took:?}; {v}; {} copies \
         compared point by point",
        holders.len()
    );
    v.assert_nothing_lost();
    // Online: replicas that stay keep streaming and in sync, so no write fails meanwhile.
    assert_eq!((v.failed, v.unknown), (0, 0), "writes failed while replicas changed");
}
