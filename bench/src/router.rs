//! `vdb-bench router`: the same searches through the router in front of 1, 2 and 4 local shard
//! nodes, next to the single shard node asked directly and raw USearch in-process, in one run.
//!
//! Every side is measured twice per ef: at `--connections` concurrent connections for
//! throughput (QPS), and at one connection, one query after the other, for single-query latency
//! (the latency targets). The router's own overhead is the 1-connection p50 through the router
//! with one shard minus the same queries sent to that shard's node directly. Every timed loop
//! also records its CPU per search: the load generator's, the directly asked node's by thread
//! group, or the router's and each shard node's.

use crate::cpu;
use crate::data::{recall, Dataset, K};
use crate::fleet::{Fleet, FleetArgs};
use crate::http::{self, call, Lean};
use crate::report::{self, Accuracy, Params, Rate, SearchRun};
use crate::router_report::{RouterReport, Side};
use crate::{raw, HNSW, QUICK_DOCS, QUICK_QUERIES};
use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use hyper::{Method, Uri};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use usearch::Index;
use vdb_api::PointId;

#[derive(clap::Args)]
pub struct RouterArgs {
    /// Directory holding debian-minilm/ (relative paths resolve from the current directory).
    #[arg(long, env = "VDB_DATA_DIR", default_value = "../shared/data")]
    data_dir: PathBuf,
    /// Threads for raw USearch (build and loaded search) and the load generator's runtime.
    #[arg(long)]
    threads: Option<usize>,
    /// Search candidate list sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    ef: Vec<usize>,
    /// Shard counts to measure through the router (one node per shard).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    shards: Vec<usize>,
    /// Seconds of timed searching per ef, side and load (default 5, 1 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    #[command(flatten)]
    fleet: FleetArgs,
    /// Points per upsert request.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Upsert requests in flight at once.
    #[arg(long, default_value_t = 4)]
    ingest_concurrency: usize,
    /// Concurrent keep-alive connections for the throughput (QPS) measurement.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench/results/latest-router.json")]
    out: PathBuf,
    /// A previous `vdb-bench router` results file to print next to this run's numbers.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Smoke run: the first 10,000 documents, 200 queries, 1 s per measurement.
    #[arg(long)]
    quick: bool,
    /// Timed trials per ef, side and load, taking turns between the sides; the best is kept.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
}

/// Where a side's searches go.
enum Target<'a> {
    Raw(&'a Index),
    /// The URI, and the processes answering it for [`cpu::with_cpu`]: the node asked directly
    /// (by thread group), or the router and its shard nodes (whole, by role).
    Http(Uri, Option<u32>, Vec<(String, u32)>),
}

pub fn run(args: RouterArgs) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(cores);
    ensure!(threads > 0 && args.connections > 0 && args.batch > 0, "counts must be positive");
    ensure!(args.ingest_concurrency > 0 && args.repeat > 0, "counts must be positive");
    ensure!(!args.ef.is_empty() && !args.shards.is_empty(), "--ef and --shards need values");
    ensure!(args.shards.iter().all(|&s| s > 0), "shard counts must be positive");
    let seconds = args.seconds.unwrap_or(if args.quick { 1.0 } else { 5.0 });
    let duration = Duration::from_secs_f64(seconds);
    let (docs, queries) =
        if args.quick { (Some(QUICK_DOCS), Some(QUICK_QUERIES)) } else { (None, None) };

    let mut machine = report::machine();
    let old = args.compare.as_deref().map(RouterReport::read).transpose()?;
    eprintln!("loading {}", args.data_dir.join(crate::data::DATASET).display());
    let data = Dataset::load(&args.data_dir, docs, queries)?;

    // Every fleet runs for the whole run so the sides can take turns at every ef; idle ones
    // only answer health checks.
    let mut shards = args.shards.clone();
    shards.sort_unstable();
    shards.dedup();
    let fleets =
        shards.iter().map(|&s| Fleet::start(&args.fleet, s)).collect::<Result<Vec<_>>>()?;
    let failed = |fleet: &Fleet, e: anyhow::Error| {
        e.context(format!("router S={} failed{}", fleet.shards, fleet.log_tail()))
    };

    eprintln!("raw usearch: building {} vectors with {threads} threads", data.len());
    let (index, build) = raw::build(&data, HNSW, threads)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    let client = http::lean_client(args.connections.max(args.ingest_concurrency));

    let mut sides = vec![side("raw", None, Some(build))];
    let mut targets = vec![Target::Raw(&index)];
    let mut routed = Vec::new();
    for fleet in &fleets {
        let (rate, local) = runtime
            .block_on(fleet.load(&client, &data, HNSW, args.batch, args.ingest_concurrency))
            .map_err(|e| failed(fleet, e))?;
        if fleet.shards == 1 {
            let node = &fleet.nodes[0].url;
            sides.push(side("direct", Some(1), None));
            let uri = format!("{node}/v1/shards/{local}/search").parse()?;
            targets.push(Target::Http(uri, fleet.nodes[0].pid(), Vec::new()));
        }
        let mut processes: Vec<_> =
            fleet.router.pid().map(|p| ("router".into(), p)).into_iter().collect();
        for (i, node) in fleet.nodes.iter().enumerate() {
            processes.extend(node.pid().map(|p| (format!("shard node {}", i + 1), p)));
        }
        let target = Target::Http(fleet.search_uri()?, None, processes);
        routed.push((side("router", Some(fleet.shards), Some(rate)), target));
    }
    for (side, target) in routed {
        sides.push(side);
        targets.push(target);
    }

    for &ef in &args.ef {
        eprintln!("ef={ef}");
        let bodies = Arc::new(http::search_bodies(&data, ef, false)?);
        let mut accuracy = Vec::new();
        for target in &targets {
            accuracy.push(match target {
                Target::Raw(index) => raw::accuracy(index, &data, ef, false, threads)?,
                Target::Http(uri, ..) => runtime
                    .block_on(http_accuracy(&client, uri, &bodies, &data.gt, args.connections))
                    .with_context(|| format!("recall pass against {uri}"))?,
            });
        }
        let mut trials: Vec<[Vec<report::Timed>; 2]> =
            targets.iter().map(|_| [Vec::new(), Vec::new()]).collect();
        for _ in 0..args.repeat {
            for (target, trials) in targets.iter().zip(&mut trials) {
                for (load, concurrency) in [(0, 1), (1, threads)] {
                    let timed = match target {
                        Target::Raw(index) => cpu::with_cpu(None, &[], || {
                            raw::timed(index, &data, ef, false, concurrency, duration)
                        })?,
                        Target::Http(uri, node, processes) => {
                            let connections = if load == 0 { 1 } else { args.connections };
                            cpu::with_cpu(*node, processes, || {
                                runtime.block_on(http::timed(
                                    &client,
                                    uri,
                                    bodies.clone(),
                                    connections,
                                    duration,
                                ))
                            })?
                        }
                    };
                    trials[load].push(timed);
                }
            }
        }
        for ((side, [single, loaded]), accuracy) in sides.iter_mut().zip(trials).zip(accuracy) {
            side.single.push(SearchRun::best_of(ef, accuracy.clone(), single));
            side.loaded.push(SearchRun::best_of(ef, accuracy, loaded));
        }
    }
    drop(fleets);
    machine.load_average_end = report::load_average();

    let mut report = RouterReport {
        tool: "vdb-bench router".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        created_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        git_commit: report::git_commit(),
        machine,
        params: Params {
            dataset: data.dir.display().to_string(),
            docs: data.len(),
            queries: data.num_queries(),
            dimension: data.dim,
            metric: "cosine".to_string(),
            scalar: "f32".to_string(),
            m: HNSW.m,
            ef_construction: HNSW.ef_construction,
            efs: args.ef.clone(),
            k: K,
            threads,
            seconds_per_ef: seconds,
            repeat: args.repeat,
            batch: args.batch,
            ingest_concurrency: args.ingest_concurrency,
            connections: args.connections,
            fsync: args.fleet.fsync.clone(),
            quick: args.quick,
        },
        shards,
        simd: index.hardware_acceleration(),
        sides,
        overhead_p50_ms: BTreeMap::new(),
        targets: None,
    };
    report.evaluate();
    println!("{}", report.table());
    if let (Some(old), Some(path)) = (&old, &args.compare) {
        println!("{}", report.compare(old, &path.display().to_string()));
    }
    report.write(&args.out)?;
    eprintln!("results written to {}", args.out.display());
    Ok(())
}

fn side(kind: &str, shards: Option<usize>, load: Option<Rate>) -> Side {
    Side { kind: kind.to_string(), shards, load, loaded: Vec::new(), single: Vec::new() }
}

/// The part of a search answer recall needs; the shard's and the router's both have it.
#[derive(Deserialize)]
struct Hits {
    points: Vec<Hit>,
    #[serde(default)]
    partial: bool,
}

#[derive(Deserialize)]
struct Hit {
    id: PointId,
}

/// Mean recall@10 over every query once, `connections` requests at a time (untimed; it also
/// warms the caches). A partial router answer is an error, not a lower recall.
async fn http_accuracy(
    client: &Lean,
    uri: &Uri,
    bodies: &[Bytes],
    truth: &[Vec<u32>],
    connections: usize,
) -> Result<Accuracy> {
    let answers: Vec<Hits> = futures::stream::iter(bodies.iter().cloned())
        .map(|body| async move {
            let (status, answer) = call(client, Method::POST, uri, body).await?;
            ensure!(
                status.is_success(),
                "search answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
            let hits: Hits = serde_json::from_slice(&answer).context("decoding a search answer")?;
            ensure!(!hits.partial, "partial answer: a shard did not answer");
            Ok(hits)
        })
        .buffered(connections)
        .try_collect()
        .await?;
    let sum: f64 = answers
        .iter()
        .zip(truth)
        .map(|(hits, truth)| {
            // The benchmark only writes integer ids; a UUID can only be a wrong answer.
            let ids: Vec<u64> = hits
                .points
                .iter()
                .map(|p| match p.id {
                    PointId::Num(n) => n,
                    PointId::Uuid(_) => u64::MAX,
                })
                .collect();
            recall(truth, &ids)
        })
        .sum();
    Ok(Accuracy { recall: sum / answers.len().max(1) as f64, plans: Default::default() })
}
