//! `vdb-bench replication`: what replication costs writes, and how far replicas trail.
//!
//! One fleet (as many shard nodes as the largest replication factor, one router, all started
//! by this tool on loopback) measures one row per replication factor and write consistency:
//! RF 1 (the baseline), then for every replication factor in `--rf` `async`, `semi_sync` with
//! one ack and `sync`. Every trial of a row creates a fresh single-shard collection with that
//! RF and consistency, and `--writers` closed-loop writers upsert batches of fresh random
//! points into it through the router for `--seconds`; then it is dropped. The rows take
//! turns, `--repeat` times; a row's throughput and replica lag are those of its trial with the
//! most points/s, its latency percentiles pool the writes of all its trials (the tail of one
//! 5-s trial on shared cores moves by ±10 ms from trial to trial). Meanwhile the primary's
//! `GET /v1/shards/{name}` is read every `--lag-interval-ms` for its replicas' progress
//! (`replication.replicas[].lag_seconds` / `lag_records`), and once the writers stop, how long
//! every replica takes to confirm the whole log. What each point cost the CPU of the load
//! generator, the router, the primary and every replica is read from `/proc` around the trial,
//! from its first write until every replica has confirmed the whole log.

use crate::cpu::{self, CpuUse};
use crate::fleet::{wait_ready, Fleet, FleetArgs};
use crate::http::{self, call, Lean, PointBody, UpsertBody};
use crate::replication_report::{ReplicaLag, ReplicationParams, ReplicationReport, Row, Summary};
use crate::report;
use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use hyper::{Method, StatusCode, Uri};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vdb_api::{
    CollectionInfo, CreateCollection, HnswConfig, Metric, ReplicaState, ScalarType, ShardInfo,
    ShardList, Sharding, WriteConsistency,
};

#[derive(clap::Args)]
pub struct ReplicationArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// Replication factors to measure (each with async, semi_sync acks=1 and sync) besides the
    /// RF 1 baseline; the fleet has as many shard nodes as the largest.
    #[arg(long, value_delimiter = ',', default_value = "2,3")]
    rf: Vec<u32>,
    /// Concurrent writers, each with one upsert in flight.
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// Points per upsert request.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Dimension of the random vectors (cosine).
    #[arg(long, default_value_t = 128)]
    dimension: usize,
    /// Seconds of writing per row and trial (default 5, 2 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Timed trials per row, the rows taking turns; the one with the most points/s is kept
    /// (default 3, 1 with --quick).
    #[arg(long)]
    repeat: Option<usize>,
    /// How often to read the primary's replica progress while the writers run.
    #[arg(long, default_value_t = 25)]
    lag_interval_ms: u64,
    /// Threads of the load generator's runtime (default: cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench/results/latest-replication.json")]
    out: PathBuf,
    /// Smoke run: 2 s per row, one trial.
    #[arg(long)]
    quick: bool,
}

/// How long a catch-up after the load may take before it is reported as not reached.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the fleet may take to place a collection and bring its replicas in sync.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Untimed upserts per writer after a collection is created (connections, first index pages).
const WARMUP_WRITES: usize = 4;

/// One row's collection, placed and ready.
struct Target {
    rf: u32,
    consistency: WriteConsistency,
    collection: String,
    /// Node ids, primary first.
    placement: Vec<String>,
    /// Every copy: (node id, `GET /v1/shards/{local}` on its node); the primary first.
    copies: Vec<(String, Uri)>,
    points_uri: Uri,
    next_id: Arc<AtomicU64>,
}

impl Target {
    fn primary_info(&self) -> &Uri {
        &self.copies[0].1
    }
}

/// What one timed trial of one row saw.
struct Trial {
    /// The trial's own collection.
    target: Target,
    latencies_ns: Vec<u64>,
    writes: u64,
    points: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    /// Per replica node: (lag ms, lag records, streaming) per sample.
    samples: BTreeMap<String, Vec<(f64, f64, bool)>>,
    min_in_sync: Option<usize>,
    catch_up_ms: BTreeMap<String, f64>,
    /// Per acknowledged point, by role.
    cpu: Option<CpuUse>,
}

impl Trial {
    fn points_per_second(&self) -> f64 {
        self.points as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn p99_ms(&self) -> f64 {
        let mut ns = self.latencies_ns.clone();
        ns.sort_unstable();
        percentile_ms(&ns, 99.0)
    }
}

fn percentile_ms(sorted_ns: &[u64], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = ((sorted_ns.len() as f64 * p / 100.0) as usize).min(sorted_ns.len() - 1);
    sorted_ns[rank] as f64 / 1e6
}

fn mode_name(c: WriteConsistency) -> (&'static str, Option<u32>) {
    match c {
        WriteConsistency::Async => ("async", None),
        WriteConsistency::SemiSync { acks } => ("semi_sync", Some(acks)),
        WriteConsistency::Sync => ("sync", None),
    }
}

pub fn run(args: ReplicationArgs) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(cores);
    ensure!(threads > 0 && args.writers > 0 && args.batch > 0, "counts must be positive");
    ensure!(args.dimension > 0 && args.lag_interval_ms > 0, "counts must be positive");
    ensure!(args.rf.iter().all(|&rf| rf > 1), "--rf takes replication factors above 1");
    let seconds = args.seconds.unwrap_or(if args.quick { 2.0 } else { 5.0 });
    let repeat = args.repeat.unwrap_or(if args.quick { 1 } else { 3 });
    ensure!(seconds > 0.0 && repeat > 0, "--seconds and --repeat must be positive");
    let duration = Duration::from_secs_f64(seconds);
    let mut rfs = args.rf.clone();
    rfs.sort_unstable();
    rfs.dedup();
    let nodes = rfs.last().copied().unwrap_or(1) as usize;

    let mut rows = vec![(1, WriteConsistency::Async)];
    for &rf in &rfs {
        rows.push((rf, WriteConsistency::Async));
        rows.push((rf, WriteConsistency::SemiSync { acks: 1 }));
        rows.push((rf, WriteConsistency::Sync));
    }

    let mut machine = report::machine();
    let fleet = Fleet::start(&args.fleet, nodes)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    let client = http::lean_client(args.writers + 2);
    let failed =
        |e: anyhow::Error| e.context(format!("replication bench failed{}", fleet.log_tail()));

    let trials = runtime
        .block_on(async {
            for process in fleet.nodes.iter().chain([&fleet.router]) {
                wait_ready(&client, &process.url).await?;
            }
            // Every trial writes into a fresh collection: with random vectors an insert costs
            // more as the index grows, so trials that went on filling one collection would
            // not be comparable with each other.
            let mut trials: Vec<Vec<Trial>> = rows.iter().map(|_| Vec::new()).collect();
            let mut consistent = true;
            for round in 0..repeat {
                for (&(rf, consistency), trials) in rows.iter().zip(&mut trials) {
                    let (mode, _) = mode_name(consistency);
                    let name = format!("rf{rf}-{mode}-t{}", round + 1);
                    let target = create(&client, &fleet, &name, rf, consistency, &args).await?;
                    eprintln!(
                        "trial {}/{repeat}: RF={rf} {mode} (placement {:?})",
                        round + 1,
                        target.placement
                    );
                    warm_up(&client, &target, &args).await?;
                    wait_in_sync(&client, &target).await?;
                    let roles = roles(&fleet, &target);
                    trials.push(trial(&client, target, &args, duration, &roles).await?);
                    let target = &trials.last().expect("just pushed").target;
                    consistent &= check_copies(&client, target).await?;
                    drop_collection(&client, &fleet, &target.collection).await?;
                }
            }
            anyhow::Ok((trials, consistent))
        })
        .map_err(failed)?;
    let (trials, consistent) = trials;
    drop(fleet);
    machine.load_average_end = report::load_average();

    let rows = trials.into_iter().map(row).collect();
    let mut report = ReplicationReport {
        tool: "vdb-bench replication".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        created_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        git_commit: report::git_commit(),
        machine,
        params: ReplicationParams {
            nodes,
            shard_count: 1,
            dimension: args.dimension,
            metric: "cosine".to_string(),
            batch: args.batch,
            writers: args.writers,
            seconds_per_row: seconds,
            repeat,
            lag_interval_ms: args.lag_interval_ms,
            fsync: args.fleet.fsync.clone(),
            threads,
            quick: args.quick,
        },
        rows,
        targets: Vec::new(),
    };
    report.evaluate();
    println!("{}", report.table());
    report.write(&args.out)?;
    eprintln!("results written to {}", args.out.display());
    ensure!(consistent, "the copies of some shard disagree after catching up (see above)");
    Ok(())
}

/// One row: throughput and replica lag from its kept trial (most points/s), latency
/// percentiles over the writes of all its trials.
fn row(trials: Vec<Trial>) -> Row {
    let trials_points_per_second: Vec<f64> = trials.iter().map(Trial::points_per_second).collect();
    let trials_p99_ms: Vec<f64> = trials.iter().map(Trial::p99_ms).collect();
    let mut ns: Vec<u64> = trials.iter().flat_map(|t| t.latencies_ns.iter().copied()).collect();
    ns.sort_unstable();
    let best = trials
        .into_iter()
        .max_by(|a, b| a.points_per_second().total_cmp(&b.points_per_second()))
        .expect("at least one trial");
    let target = &best.target;
    let (mode, acks) = mode_name(target.consistency);
    let replicas = target.copies[1..]
        .iter()
        .map(|(node, _)| {
            let samples = best.samples.get(node).cloned().unwrap_or_default();
            ReplicaLag {
                node: node.clone(),
                samples: samples.len(),
                lag_ms: Summary::of(samples.iter().map(|s| s.0).collect()),
                lag_records: Summary::of(samples.iter().map(|s| s.1).collect()),
                not_streaming: samples.iter().filter(|s| !s.2).count(),
                catch_up_ms: best.catch_up_ms.get(node).copied(),
            }
        })
        .collect();
    let seconds = best.elapsed.as_secs_f64().max(1e-9);
    let several = trials_p99_ms.len() > 1;
    Row {
        replication_factor: target.rf,
        mode: mode.to_string(),
        acks,
        collection: target.collection.clone(),
        placement: target.placement.clone(),
        points_per_second: best.points as f64 / seconds,
        writes_per_second: best.writes as f64 / seconds,
        latency_samples: ns.len(),
        p50_ms: percentile_ms(&ns, 50.0),
        p95_ms: percentile_ms(&ns, 95.0),
        p99_ms: percentile_ms(&ns, 99.0),
        max_ms: ns.last().map_or(0.0, |&v| v as f64 / 1e6),
        writes: best.writes,
        errors: best.errors,
        first_error: best.first_error.clone(),
        seconds: best.elapsed.as_secs_f64(),
        min_in_sync: best.min_in_sync,
        replicas,
        trials_points_per_second: if several { trials_points_per_second } else { Vec::new() },
        trials_p99_ms: if several { trials_p99_ms } else { Vec::new() },
        cpu: best.cpu,
    }
}

/// The processes a trial of `target` runs on, by role, for [`cpu::sample`]: the router, the
/// primary, then the replicas in placement order.
fn roles(fleet: &Fleet, target: &Target) -> Vec<(String, u32)> {
    let copies = target.placement.iter().enumerate().map(|(i, id)| {
        let role = if i == 0 { "primary".to_string() } else { format!("replica {i}") };
        (role, fleet.node(id))
    });
    std::iter::once(("router".to_string(), Some(&fleet.router)))
        .chain(copies)
        .filter_map(|(role, node)| Some((role, node?.pid()?)))
        .collect()
}

async fn get<T: serde::de::DeserializeOwned>(client: &Lean, uri: &Uri) -> Result<T> {
    let (status, answer) = call(client, Method::GET, uri, Bytes::new()).await?;
    ensure!(
        status.is_success(),
        "GET {uri} answered {status}: {}",
        String::from_utf8_lossy(&answer)
    );
    serde_json::from_slice(&answer).with_context(|| format!("decoding GET {uri}"))
}

/// Creates collection `collection` through the router (one shard, `rf` copies,
/// `consistency`) and finds its copies on the nodes.
async fn create(
    client: &Lean,
    fleet: &Fleet,
    collection: &str,
    rf: u32,
    consistency: WriteConsistency,
    args: &ReplicationArgs,
) -> Result<Target> {
    let create = CreateCollection {
        dimension: Some(args.dimension),
        metric: Metric::Cosine,
        hnsw: HnswConfig::default(),
        scalar: ScalarType::F32,
        shard_count: 1,
        replication_factor: rf,
        sharding: Sharding::Hash,
        write_consistency: consistency,
        min_in_sync: None,
        auto_reshard: false,
        embedding: None,
    };
    let url = &fleet.router.url;
    let uri: Uri = format!("{url}/v1/collections/{collection}").parse()?;
    let body = Bytes::from(serde_json::to_vec(&create)?);
    // Until the router's first health round marks the nodes up, placement answers 503.
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let (status, answer) = call(client, Method::PUT, &uri, body.clone()).await?;
        if status.is_success() {
            break;
        }
        ensure!(
            status == StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline,
            "creating {collection} answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let info: CollectionInfo = get(client, &uri).await?;
    let placement = info.shards.first().context("the collection has no shard")?.nodes.clone();
    ensure!(placement.len() == rf as usize, "{collection} placed on {placement:?}, RF {rf}");
    let mut copies = Vec::new();
    for node in &placement {
        let i: usize = node
            .strip_prefix('n')
            .and_then(|i| i.parse().ok())
            .with_context(|| format!("unexpected node id {node:?}"))?;
        let node_url = &fleet.nodes.get(i).context("node id beyond the fleet")?.url;
        let list: ShardList = get(client, &format!("{node_url}/v1/shards").parse()?).await?;
        let local = list
            .shards
            .iter()
            .find(|s| s.config.collection == collection)
            .with_context(|| format!("no copy of {collection} on {node}"))?;
        copies.push((node.clone(), format!("{node_url}/v1/shards/{}", local.name).parse()?));
    }
    Ok(Target {
        rf,
        consistency,
        collection: collection.to_string(),
        placement,
        copies,
        points_uri: format!("{url}/v1/collections/{collection}/points").parse()?,
        next_id: Arc::new(AtomicU64::new(0)),
    })
}

/// Waits until the primary has every replica in sync and caught up.
async fn wait_in_sync(client: &Lean, target: &Target) -> Result<()> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let info: ShardInfo = get(client, target.primary_info()).await?;
        let r = &info.replication;
        let caught_up = r.replicas.iter().all(|p| p.acked_lsn >= r.last_lsn);
        if r.in_sync.len() + 1 == target.rf as usize
            && r.replicas.len() + 1 == target.rf as usize
            && caught_up
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{}: replicas not in sync after {SETUP_TIMEOUT:?}: {r:?}", target.collection);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `DELETE /v1/collections/{collection}`: the next trials run without its copies.
async fn drop_collection(client: &Lean, fleet: &Fleet, collection: &str) -> Result<()> {
    let uri = format!("{}/v1/collections/{collection}", fleet.router.url).parse()?;
    let (status, answer) = call(client, Method::DELETE, &uri, Bytes::new()).await?;
    ensure!(
        status.is_success(),
        "deleting {collection} answered {status}: {}",
        String::from_utf8_lossy(&answer)
    );
    Ok(())
}

/// A few untimed upserts per writer.
async fn warm_up(client: &Lean, target: &Target, args: &ReplicationArgs) -> Result<()> {
    wait_in_sync(client, target).await?;
    let writes = (0..args.writers).map(|w| {
        let mut rng = SplitMix(0x5eed ^ w as u64);
        async move {
            for _ in 0..WARMUP_WRITES {
                let first = target.next_id.fetch_add(args.batch as u64, Ordering::Relaxed);
                let body = upsert_body(&mut rng, first, args.batch, args.dimension)?;
                let (status, answer) = call(client, Method::PUT, &target.points_uri, body).await?;
                ensure!(
                    status.is_success(),
                    "warm-up upsert into {} answered {status}: {}",
                    target.collection,
                    String::from_utf8_lossy(&answer)
                );
            }
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(writes).await?;
    Ok(())
}

/// One timed trial: the writers for `duration`, the lag sampler alongside, then the catch-up;
/// the CPU of `roles` is read before the first write and after the catch-up.
async fn trial(
    client: &Lean,
    target: Target,
    args: &ReplicationArgs,
    duration: Duration,
    roles: &[(String, u32)],
) -> Result<Trial> {
    let cpu_before = cpu::sample(None, roles);
    let start = Instant::now();
    let deadline = start + duration;
    let sampler = (target.rf > 1).then(|| {
        let (client, uri) = (client.clone(), target.primary_info().clone());
        let interval = Duration::from_millis(args.lag_interval_ms);
        tokio::spawn(async move { sample_lag(&client, &uri, interval, deadline).await })
    });
    let writers: Vec<_> = (0..args.writers)
        .map(|w| {
            let (client, uri, next_id) =
                (client.clone(), target.points_uri.clone(), target.next_id.clone());
            // The same seeds in every trial: every row writes the same vectors.
            let seed = 0x7e57 ^ ((w as u64 + 1) << 32);
            let (batch, dimension) = (args.batch, args.dimension);
            tokio::spawn(async move {
                writer(client, uri, next_id, batch, dimension, seed, deadline).await
            })
        })
        .collect();
    let mut out = Trial {
        target,
        latencies_ns: Vec::new(),
        writes: 0,
        points: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        samples: BTreeMap::new(),
        min_in_sync: None,
        catch_up_ms: BTreeMap::new(),
        cpu: None,
    };
    let mut last_ack = start;
    for w in writers {
        let log = w.await??;
        out.latencies_ns.extend(log.latencies_ns);
        out.errors += log.errors;
        out.first_error = out.first_error.or(log.first_error);
        last_ack = last_ack.max(log.last_ack);
    }
    out.writes = out.latencies_ns.len() as u64;
    out.points = out.writes * args.batch as u64;
    out.elapsed = last_ack.saturating_duration_since(start);
    if let Some(sampler) = sampler {
        let (samples, min_in_sync) = sampler.await??;
        out.samples = samples;
        out.min_in_sync = min_in_sync;
        out.catch_up_ms = catch_up(client, &out.target, last_ack).await?;
    }
    out.cpu = cpu_before.per_op(&cpu::sample(None, roles), out.points);
    Ok(out)
}

/// One writer's share of a trial.
struct WriterLog {
    latencies_ns: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    last_ack: Instant,
}

/// Upserts batches of fresh points until `deadline`, one at a time, each timed from send to
/// the last byte of the answer (the body is built before the clock starts). A failed write is
/// counted, not retried.
async fn writer(
    client: Lean,
    uri: Uri,
    next_id: Arc<AtomicU64>,
    batch: usize,
    dimension: usize,
    seed: u64,
    deadline: Instant,
) -> Result<WriterLog> {
    let mut rng = SplitMix(seed);
    let mut log = WriterLog {
        latencies_ns: Vec::new(),
        errors: 0,
        first_error: None,
        last_ack: Instant::now(),
    };
    while Instant::now() < deadline {
        let first = next_id.fetch_add(batch as u64, Ordering::Relaxed);
        let body = upsert_body(&mut rng, first, batch, dimension)?;
        let sent = Instant::now();
        let outcome = call(&client, Method::PUT, &uri, body).await;
        let done = Instant::now();
        let error = match outcome {
            Ok((status, _)) if status.is_success() => {
                log.latencies_ns.push(done.duration_since(sent).as_nanos() as u64);
                log.last_ack = done;
                continue;
            }
            Ok((status, answer)) => {
                let answer = String::from_utf8_lossy(&answer);
                format!("{status}: {}", answer.chars().take(300).collect::<String>())
            }
            Err(e) => format!("{e:#}"),
        };
        log.errors += 1;
        log.first_error.get_or_insert(error);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(log)
}

type Samples = BTreeMap<String, Vec<(f64, f64, bool)>>;

/// Reads the primary's replica progress every `interval` until `deadline`: per replica its
/// `lag_seconds` (as ms), `lag_records` and whether it is streaming, and the smallest in-sync
/// set seen.
async fn sample_lag(
    client: &Lean,
    uri: &Uri,
    interval: Duration,
    deadline: Instant,
) -> Result<(Samples, Option<usize>)> {
    let mut samples = Samples::new();
    let mut min_in_sync: Option<usize> = None;
    loop {
        let tick = Instant::now();
        if tick >= deadline {
            return Ok((samples, min_in_sync));
        }
        let info: ShardInfo = get(client, uri).await?;
        let r = info.replication;
        min_in_sync = Some(min_in_sync.map_or(r.in_sync.len(), |m| m.min(r.in_sync.len())));
        for p in r.replicas {
            samples.entry(p.node).or_default().push((
                p.lag_seconds * 1000.0,
                p.lag_records as f64,
                p.state == ReplicaState::Streaming,
            ));
        }
        // Not past the deadline: the catch-up measurement waits for this task.
        tokio::time::sleep_until((tick + interval).min(deadline).into()).await;
    }
}

/// After the writers stopped: per replica, ms from the last acknowledged write to the first
/// answer of the primary showing that replica confirmed its whole log (absent after
/// [`CATCH_UP_TIMEOUT`]).
async fn catch_up(
    client: &Lean,
    target: &Target,
    last_ack: Instant,
) -> Result<BTreeMap<String, f64>> {
    let mut caught = BTreeMap::new();
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    while Instant::now() < deadline {
        let info: ShardInfo = get(client, target.primary_info()).await?;
        let seen = Instant::now();
        let r = &info.replication;
        for p in &r.replicas {
            if p.acked_lsn >= r.last_lsn && !caught.contains_key(&p.node) {
                let ms = seen.saturating_duration_since(last_ack).as_secs_f64() * 1000.0;
                caught.insert(p.node.clone(), ms);
            }
        }
        if caught.len() + 1 >= target.rf as usize {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(caught)
}

/// After every trial: every copy holds as many points as the primary and the same last LSN.
async fn check_copies(client: &Lean, target: &Target) -> Result<bool> {
    let mut seen = Vec::new();
    for (node, uri) in &target.copies {
        let info: ShardInfo = get(client, uri).await?;
        seen.push((node.clone(), info.points, info.last_lsn));
    }
    let agree = seen.iter().all(|s| (s.1, s.2) == (seen[0].1, seen[0].2));
    let written = target.next_id.load(Ordering::Relaxed);
    if !agree || seen[0].1 > written {
        eprintln!(
            "warning: copies of {} disagree (node, points, last LSN): {seen:?}; {written} ids sent",
            target.collection
        );
        return Ok(false);
    }
    Ok(true)
}

/// `{"points": [...]}` with ids `first..first + batch` and random vectors.
fn upsert_body(rng: &mut SplitMix, first: u64, batch: usize, dimension: usize) -> Result<Bytes> {
    let values: Vec<f32> = (0..batch * dimension).map(|_| rng.unit()).collect();
    let points = values
        .chunks(dimension)
        .enumerate()
        .map(|(i, vector)| PointBody { id: first + i as u64, vector, payload: None })
        .collect();
    Ok(Bytes::from(serde_json::to_vec(&UpsertBody { points })?))
}

/// SplitMix64: enough randomness for benchmark vectors, without a dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_randomness() {
        let mut rng = SplitMix(7);
        let values: Vec<f32> = (0..10_000).map(|_| rng.unit()).collect();
        assert!(values.iter().all(|v| (-1.0..1.0).contains(v)));
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        assert!(mean.abs() < 0.05, "mean {mean}");
        let body = upsert_body(&mut rng, 32, 2, 3).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["points"][1]["id"], 33);
        assert_eq!(v["points"][1]["vector"].as_array().unwrap().len(), 3);
        assert_eq!(percentile_ms(&[1_000_000, 2_000_000, 3_000_000], 50.0), 2.0);
    }
}
