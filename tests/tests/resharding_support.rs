//! Black-box tests of what the shard node offers the router for resharding and shard moves:
//! the WAL tail, ownership on reads, the write guard and `delete_not_owned`.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use vdb_tests::ownership::{hash, ids_of, ownership, scroll_ids};
use vdb_tests::{assert_error, Http, ShardProcess};

fn create(http: &Http, name: &str, shard_id: u32, epoch: u64) {
    let body = json!({"collection": "c", "shard_id": shard_id, "dimension": 4, "metric": "l2",
                      "epoch": epoch, "hnsw": {"m": 16, "ef_construction": 128, "ef_search": 64}});
    let r = http.put(&format!("/v1/shards/{name}"), &body).unwrap();
    assert_eq!(r.0, 201, "{r:?}");
}

fn vector(i: u64) -> Value {
    let x = i as f32;
    json!([x.sin(), (x * 1.3).cos(), (i % 7) as f32 / 7.0, (i % 11) as f32 / 11.0])
}

fn point(i: u64) -> Value {
    json!({"id": i, "vector": vector(i), "payload": {"n": i, "g": i % 3}})
}

fn upsert(http: &Http, name: &str, ids: impl IntoIterator<Item = u64>) -> u64 {
    let pts: Vec<Value> = ids.into_iter().map(point).collect();
    let r = http.put(&format!("/v1/shards/{name}/points"), &json!({"points": pts})).unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    r.1["lsn"].as_u64().unwrap()
}

fn last_lsn(http: &Http, name: &str) -> u64 {
    http.get(&format!("/v1/shards/{name}")).unwrap().1["last_lsn"].as_u64().unwrap()
}

fn wal(http: &Http, name: &str, query: &str) -> (u16, Value) {
    http.get(&format!("/v1/shards/{name}/wal?{query}")).unwrap()
}

fn lsns(page: &Value) -> Vec<u64> {
    page["records"].as_array().unwrap().iter().map(|r| r["lsn"].as_u64().unwrap()).collect()
}

#[test]
fn wal_pages_follow_the_writes() {
    let node = ShardProcess::start(&["--snapshot-every", "0"]).unwrap();
    let http = node.http();
    create(&http, "w", 0, 3);
    assert_eq!(wal(&http, "w", "after=0").1, json!({"records": [], "last_lsn": 0, "first_lsn": 1}));

    let writes: Vec<(&str, Value)> = vec![
        ("PUT /points", json!({"points": [point(1), point(2), point(3)]})),
        ("POST /points/payload", json!({"ids": [1, 2], "payload": {"tag": "a"}})),
        (
            "PUT /points/payload",
            json!({"filter": {"must": [{"has_id": [3]}]}, "payload": {"only": true}}),
        ),
        ("POST /points/payload/delete", json!({"ids": [1], "keys": ["tag"]})),
        ("PUT /index", json!({"field": "n", "kind": "integer"})),
        ("POST /points/delete", json!({"ids": [2, 99]})),
    ];
    for (route, body) in &writes {
        let (method, path) = route.split_once(' ').unwrap();
        let path = format!("/v1/shards/w{path}");
        let r = if method == "PUT" { http.put(&path, body) } else { http.post(&path, body) };
        assert_eq!(r.unwrap().0, 200);
    }
    assert_eq!(http.delete("/v1/shards/w/index/n").unwrap().0, 204);

    let (status, page) = wal(&http, "w", "after=0");
    assert_eq!(status, 200, "{page:?}");
    assert_eq!((page["last_lsn"].as_u64(), page["first_lsn"].as_u64()), (Some(7), Some(1)));
    assert_eq!(lsns(&page), (1..=7).collect::<Vec<_>>());
    let recs = page["records"].as_array().unwrap();
    assert!(recs.iter().all(|r| r["epoch"] == 3));
    let types: Vec<&str> = recs.iter().map(|r| r["op"]["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "upsert",
            "set_payload",
            "overwrite_payload",
            "delete_payload",
            "create_index",
            "delete",
            "drop_index"
        ]
    );
    let first = &recs[0]["op"]["points"][1];
    assert_eq!(
        (first["id"].clone(), first["payload"].clone()),
        (json!(2), json!({"n": 2, "g": 2}))
    );
    assert_eq!(first["vector"].as_array().unwrap().len(), 4);
    assert_eq!(
        recs[1]["op"],
        json!({"type": "set_payload", "ids": [1, 2], "payload": {"tag": "a"}})
    );
    // Filters are logged as the ids they matched; deletes only name ids that existed.
    assert_eq!(recs[2]["op"]["ids"], json!([3]));
    assert_eq!(recs[3]["op"], json!({"type": "delete_payload", "ids": [1], "keys": ["tag"]}));
    assert_eq!(recs[4]["op"], json!({"type": "create_index", "field": "n", "kind": "integer"}));
    assert_eq!(recs[5]["op"], json!({"type": "delete", "ids": [2]}));
    assert_eq!(recs[6]["op"], json!({"type": "drop_index", "field": "n"}));

    // Paging: after/limit; past the end is an empty page.
    assert_eq!(lsns(&wal(&http, "w", "after=2&limit=2").1), [3, 4]);
    assert_eq!(lsns(&wal(&http, "w", "after=6&limit=5").1), [7]);
    let end = wal(&http, "w", "after=7").1;
    assert_eq!((lsns(&end).len(), end["last_lsn"].as_u64()), (0, Some(7)));

    // Bad queries are JSON 400s; unknown shards 404.
    for q in ["limit=0", "limit=10001", "after=x", "after=-1"] {
        assert_error(&wal(&http, "w", q), 400, "invalid_argument");
    }
    assert_error(&wal(&http, "nope", "after=0"), 404, "not_found");

    // A snapshot truncates the log behind it: older LSNs are gone (410), newer ones follow.
    assert_eq!(http.post("/v1/shards/w/snapshot", &json!({})).unwrap().0, 200);
    let gone = wal(&http, "w", "after=0");
    assert_error(&gone, 410, "wal_truncated");
    let caught_up = wal(&http, "w", "after=7").1;
    assert_eq!((caught_up["first_lsn"].as_u64(), lsns(&caught_up).len()), (Some(8), 0));
    upsert(&http, "w", [5]);
    let next = wal(&http, "w", "after=7").1;
    assert_eq!(lsns(&next), [8]);
    assert_eq!(next["records"][0]["op"]["points"][0]["id"], 5);
    assert_error(&wal(&http, "w", "after=6"), 410, "wal_truncated");
}

#[test]
fn wal_tail_is_consistent_while_writes_run() {
    // Small segments, so pages cross segment boundaries.
    let node = ShardProcess::start(&[
        "--snapshot-every",
        "0",
        "--fsync",
        "never",
        "--wal-segment-bytes",
        "2048",
    ])
    .unwrap();
    let http = node.http();
    create(&http, "t", 0, 1);
    const WRITES: u64 = 300;
    let writer = {
        let http = http.clone();
        std::thread::spawn(move || {
            for i in 0..WRITES {
                // Each write is one record holding one point whose id is its index.
                assert_eq!(upsert(&http, "t", [i]), i + 1);
            }
        })
    };
    let mut after = 0;
    let mut pages = 0;
    while after < WRITES {
        let (status, page) = wal(&http, "t", &format!("after={after}&limit=7"));
        assert_eq!(status, 200, "{page:?}");
        let last = page["last_lsn"].as_u64().unwrap();
        for r in page["records"].as_array().unwrap() {
            let lsn = r["lsn"].as_u64().unwrap();
            assert_eq!(lsn, after + 1, "records follow each other");
            assert!(lsn <= last, "never past the last applied write");
            assert_eq!(r["op"]["points"][0]["id"], lsn - 1);
            assert_eq!(r["op"]["points"][0]["vector"].as_array().unwrap().len(), 4);
            after = lsn;
        }
        pages += 1;
    }
    writer.join().unwrap();
    assert!(pages >= (WRITES / 7) as usize);
    assert_eq!(last_lsn(&http, "t"), WRITES);
}

#[test]
fn ownership_splits_every_read_without_overlap() {
    let node = ShardProcess::start(&["--exact-threshold", "0"]).unwrap();
    let http = node.http();
    const N: u64 = 300;
    // Three copies of the same data, each asked as a different shard of a transition from two
    // hash shards to three consistent-hash shards with source 0 cut over.
    let (from, to) =
        (hash(&[0, 1]), json!({"sharding": {"strategy": "consistent"}, "shards": [0, 1, 2]}));
    let owns: Vec<Value> = (0..3).map(|s| ownership(from.clone(), to.clone(), &[0], s)).collect();
    for s in 0..3 {
        create(&http, &format!("s{s}"), s, 1);
        upsert(&http, &format!("s{s}"), 0..N);
    }
    let names = ["s0", "s1", "s2"];

    // scroll: the owned sets partition the points.
    let sets: Vec<BTreeSet<u64>> =
        (0..3).map(|s| scroll_ids(&http, names[s], Some(&owns[s])).into_iter().collect()).collect();
    assert_eq!(sets.iter().map(BTreeSet::len).sum::<usize>(), N as usize, "no duplicates");
    let union: BTreeSet<u64> = sets.iter().flatten().copied().collect();
    assert_eq!(union, (0..N).collect());
    assert!(sets.iter().all(|s| !s.is_empty()));
    assert_eq!(scroll_ids(&http, "s0", None).len(), N as usize);

    // count, with and without a filter.
    let g1 = json!({"must": [{"key": "g", "match": {"value": 1}}]});
    for (filter, full) in [(None, N), (Some(g1.clone()), N / 3)] {
        let mut total = 0;
        for s in 0..3 {
            let mut req = json!({"ownership": owns[s]});
            if let Some(f) = &filter {
                req["filter"] = f.clone();
            }
            let r = http.post(&format!("/v1/shards/{}/points/count", names[s]), &req).unwrap();
            let c = r.1["count"].as_u64().unwrap();
            if filter.is_none() {
                assert_eq!(c, sets[s].len() as u64);
            }
            total += c;
        }
        assert_eq!(total, full, "filter {filter:?}");
    }

    // get: each shard returns exactly the asked ids it owns.
    let all: Vec<u64> = (0..N).collect();
    for s in 0..3 {
        let r = http
            .post(
                &format!("/v1/shards/{}/points/get", names[s]),
                &json!({"ids": all, "ownership": owns[s], "with_payload": false}),
            )
            .unwrap();
        let got: BTreeSet<u64> = ids_of(&r.1["points"]).into_iter().collect();
        assert_eq!(got, sets[s]);
    }

    // search, every plan, with and without a filter: hits are owned, and merging the shards'
    // top-k gives the full top-k.
    let score = |p: &Value| p["score"].as_f64().unwrap();
    for q in [3u64, 77, 150] {
        for filter in [None, Some(g1.clone())] {
            let mut base = json!({"vector": vector(q), "k": 10, "ef": 512, "exact": true});
            if let Some(f) = &filter {
                base["filter"] = f.clone();
            }
            let full = http.post("/v1/shards/s0/search", &base).unwrap().1;
            let full_ids = ids_of(&full["points"]);
            for plan in ["exact", "hnsw", "auto"] {
                let mut merged: Vec<Value> = Vec::new();
                for s in 0..3 {
                    let mut req = base.clone();
                    req["exact"] = json!(false);
                    req["plan"] = json!(plan);
                    req["ownership"] = owns[s].clone();
                    let r = http.post(&format!("/v1/shards/{}/search", names[s]), &req).unwrap();
                    assert_eq!(r.0, 200, "{r:?}");
                    let expected_plan = if plan == "exact" { "exact" } else { "filtered_hnsw" };
                    if plan != "auto" {
                        assert_eq!(r.1["plan"], expected_plan, "ownership makes it filtered");
                    }
                    let hits = r.1["points"].as_array().unwrap().clone();
                    assert!(ids_of(&r.1["points"]).iter().all(|id| sets[s].contains(id)));
                    merged.extend(hits);
                }
                merged.sort_by(|a, b| {
                    score(a).total_cmp(&score(b)).then(a["id"].as_u64().cmp(&b["id"].as_u64()))
                });
                let all_ids: Vec<u64> = merged.iter().map(|p| p["id"].as_u64().unwrap()).collect();
                let distinct: BTreeSet<u64> = all_ids.iter().copied().collect();
                assert_eq!(distinct.len(), all_ids.len(), "no point is found by two shards");
                let merged_ids = &all_ids[..10.min(all_ids.len())];
                if plan == "exact" {
                    assert_eq!(merged_ids, full_ids, "query {q}, filter {filter:?}, plan {plan}");
                } else {
                    // A graph search is approximate even at a wide ef: in four dimensions a
                    // point can end up with no inbound link, so ask for high recall, not all.
                    let found = merged_ids.iter().filter(|id| full_ids.contains(id)).count();
                    assert!(found >= 8, "query {q}, filter {filter:?}, plan {plan}: {found}/10");
                }
            }
        }
    }

    // An ownership that is not a valid rule is a 400 on every read.
    let bad = ownership(hash(&[]), hash(&[0]), &[], 0);
    let bad_reads = [
        ("search", json!({"vector": vector(1), "k": 3, "ownership": bad})),
        ("points/count", json!({"ownership": bad})),
        ("points/scroll", json!({"ownership": bad})),
        ("points/get", json!({"ids": [1], "ownership": bad})),
        ("points/count", json!({"ownership": ownership(hash(&[0, 1]), hash(&[0, 1]), &[5], 0)})),
        ("points/count", json!({"ownership": ownership(hash(&[0, 1]), hash(&[0, 1]), &[], 4)})),
    ];
    for (path, body) in bad_reads {
        let r = http.post(&format!("/v1/shards/s0/{path}"), &body).unwrap();
        assert_error(&r, 400, "invalid_argument");
    }
}

/// Whether a point exists (read without ownership) and its payload.
fn payload_of(http: &Http, name: &str, id: u64) -> Option<Value> {
    let r = http.post(&format!("/v1/shards/{name}/points/get"), &json!({"ids": [id]})).unwrap();
    r.1["points"].as_array().unwrap().first().map(|p| p["payload"].clone())
}

#[test]
fn the_write_guard_refuses_and_skips_and_persists() {
    let mut node = ShardProcess::start(&[]).unwrap();
    let http = node.http();
    create(&http, "g", 0, 1);
    upsert(&http, "g", 0..100);
    // Shard 0 was the only shard and has handed the points of new shard 1 over.
    let plain = ownership(hash(&[0]), hash(&[0, 1]), &[0], 0);
    let mine = scroll_ids(&http, "g", Some(&plain));
    let theirs: Vec<u64> = (0..100).filter(|i| !mine.contains(i)).collect();
    assert!(!mine.is_empty() && !theirs.is_empty());

    let r = http.put("/v1/shards/g/guard", &json!({"ownership": plain})).unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(r.1["guard"], json!({"ownership": plain, "frozen": false}));
    assert_eq!(http.get("/v1/status").unwrap().1["shards"][0]["guarded"], true);

    // Writes by ids naming a point handed over are refused whole and change nothing.
    let lsn = last_lsn(&http, "g");
    let (m, t) = (mine[0], theirs[0]);
    let refused = [
        ("PUT", "points", json!({"points": [point(m), point(t)]})),
        ("PUT", "points", json!({"points": [point(1000 + t)]})),
        ("POST", "points/delete", json!({"ids": [m, t]})),
        ("POST", "points/payload", json!({"ids": [t], "payload": {"x": 1}})),
        ("PUT", "points/payload", json!({"ids": [t], "payload": {"x": 1}})),
        ("POST", "points/payload/delete", json!({"ids": [t], "keys": ["n"]})),
    ];
    for (method, path, body) in &refused {
        let path = format!("/v1/shards/g/{path}");
        let r =
            if *method == "PUT" { http.put(&path, body) } else { http.post(&path, body) }.unwrap();
        assert_error(&r, 409, "wrong_shard");
        assert!(r.1["error"]["message"].as_str().unwrap().contains(" belongs to shard 1"), "{r:?}");
    }
    let r = http.put("/v1/shards/g/points", &json!({"points": [point(t)]})).unwrap();
    assert!(r.1["error"]["message"].as_str().unwrap().contains(&format!("point {t} ")), "{r:?}");
    assert_eq!(last_lsn(&http, "g"), lsn);
    assert_eq!(http.post("/v1/shards/g/points/count", &json!({})).unwrap().1["count"], 100);
    assert_eq!(payload_of(&http, "g", t), Some(json!({"n": t, "g": t % 3})));

    // Writes to owned points go through; writes by filter skip the others.
    upsert(&http, "g", [m]);
    let all = json!({"must": [{"key": "n", "range": {"gte": 0}}]});
    let r = http
        .post("/v1/shards/g/points/payload", &json!({"filter": all, "payload": {"tag": 1}}))
        .unwrap();
    assert_eq!(r.1["affected"], mine.len() as u64, "{r:?}");
    assert_eq!(payload_of(&http, "g", t).unwrap().get("tag"), None);
    assert_eq!(payload_of(&http, "g", m).unwrap()["tag"], 1);
    let low = json!({"must": [{"key": "n", "range": {"lt": 10}}]});
    let r = http.post("/v1/shards/g/points/delete", &json!({"filter": low})).unwrap();
    assert_eq!(r.1["affected"], mine.iter().filter(|&&i| i < 10).count() as u64);
    let low_theirs: Vec<u64> = theirs.iter().copied().filter(|&i| i < 10).collect();
    assert!(!low_theirs.is_empty());
    assert!(low_theirs.iter().all(|&i| payload_of(&http, "g", i).is_some()));

    // The guard survives a crash.
    node.kill9();
    node.restart().unwrap();
    let http = node.http();
    assert_eq!(http.get("/v1/shards/g").unwrap().1["guard"]["ownership"], plain);
    assert_error(
        &http.put("/v1/shards/g/points", &json!({"points": [point(t)]})).unwrap(),
        409,
        "wrong_shard",
    );

    // Frozen: points leaving this shard (owned under `from`, not under `to`) wait.
    let frozen = ownership(hash(&[0]), hash(&[0, 1]), &[], 0);
    let r = http.put("/v1/shards/g/guard", &json!({"ownership": frozen, "frozen": true})).unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    let lsn = last_lsn(&http, "g");
    let raw = reqwest::blocking::Client::new()
        .put(format!("{}/v1/shards/g/points", node.url))
        .json(&json!({"points": [point(t)]}))
        .send()
        .unwrap();
    assert_eq!(raw.status().as_u16(), 503);
    assert_eq!(raw.headers()["retry-after"], "0");
    let body: Value = raw.json().unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("points are being handed off; retry"));
    let r = http
        .post("/v1/shards/g/points/payload", &json!({"filter": all, "payload": {"tag": 2}}))
        .unwrap();
    assert_error(&r, 503, "unavailable");
    assert_eq!(last_lsn(&http, "g"), lsn, "refused writes change nothing");
    upsert(&http, "g", [m]);

    // Removing the guard (twice is fine) lets every write through, also after a restart.
    assert_eq!(http.delete("/v1/shards/g/guard").unwrap().0, 204);
    assert_eq!(http.delete("/v1/shards/g/guard").unwrap().0, 204);
    assert!(http.get("/v1/shards/g").unwrap().1.get("guard").is_none());
    node.restart().unwrap();
    let http = node.http();
    upsert(&http, "g", [t]);
    assert_eq!(http.get("/v1/status").unwrap().1["shards"][0].get("guarded"), None);

    // A guard that is not a valid rule is refused; an unknown shard is a 404.
    let bad = json!({"ownership": ownership(hash(&[0]), hash(&[0]), &[], 3)});
    assert_error(&http.put("/v1/shards/g/guard", &bad).unwrap(), 400, "invalid_argument");
    assert_error(
        &http.put("/v1/shards/nope/guard", &json!({"ownership": plain})).unwrap(),
        404,
        "not_found",
    );
    assert!(http.get("/v1/shards/g").unwrap().1.get("guard").is_none());
}

#[test]
fn delete_not_owned_sheds_moved_points_in_one_write() {
    let node = ShardProcess::start(&[]).unwrap();
    let http = node.http();
    create(&http, "d", 1, 1);
    upsert(&http, "d", 0..200);
    let own = ownership(hash(&[0, 1]), hash(&[0, 1, 2]), &[1], 1);
    let kept = scroll_ids(&http, "d", Some(&own));
    // A guard does not stand in the way of the clean-up.
    let r = http.put("/v1/shards/d/guard", &json!({"ownership": own})).unwrap();
    assert_eq!(r.0, 200);

    let before = last_lsn(&http, "d");
    let r = http.post("/v1/shards/d/points/delete_not_owned", &own).unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(r.1["affected"], 200 - kept.len() as u64);
    assert_eq!(r.1["lsn"], before + 1, "one logged write");
    assert_eq!(scroll_ids(&http, "d", None), kept);
    let page = wal(&http, "d", &format!("after={before}")).1;
    assert_eq!(page["records"][0]["op"]["type"], "delete");
    assert_eq!(page["records"][0]["op"]["ids"].as_array().unwrap().len(), 200 - kept.len());

    // Nothing left to shed: no write.
    let r = http.post("/v1/shards/d/points/delete_not_owned", &own).unwrap();
    assert_eq!((r.1["affected"].as_u64(), r.1["lsn"].as_u64()), (Some(0), Some(before + 1)));
    let bad = ownership(hash(&[0, 1]), hash(&[0, 1]), &[], 7);
    assert_error(
        &http.post("/v1/shards/d/points/delete_not_owned", &bad).unwrap(),
        400,
        "invalid_argument",
    );
    assert_eq!(scroll_ids(&http, "d", None), kept);
}
