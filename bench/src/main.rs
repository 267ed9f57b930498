//! `vdb-bench`: measures VDB's shard over HTTP side by side with raw in-process USearch on the
//! `debian-minilm` dataset, with the same index parameters, threads and cores (see
//! `bench/README.md` for what is measured and the fairness rules).

mod cpu;
mod data;
mod embed;
mod fleet;
mod http;
mod raw;
mod replication;
mod replication_report;
mod report;
mod router;
mod router_report;

use anyhow::{ensure, Result};
use clap::{Parser, Subcommand, ValueEnum};
use data::Dataset;
use raw::Hnsw;
use report::{Params, RawResults, Report, SearchRun, VdbResults};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
#[command(name = "vdb-bench", version, about = "VDB benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One shard over HTTP vs raw USearch in-process: build/ingest rate, then QPS, latency and
    /// recall@10 per ef, plain and filtered by section.
    Shard(ShardArgs),
    /// The embedder over HTTP (torch and tensorflow, CPU) vs sentence-transformers: texts/s
    /// and p50/p99 at 1, 8 and 64 concurrent clients.
    Embed(embed::EmbedArgs),
    /// The same searches through the router over 1, 2 and 4 local shard nodes, next to the
    /// shard node directly and raw USearch: recall, single-query latency, QPS, router overhead.
    Router(router::RouterArgs),
    /// Writes through the router to a collection with RF 1, and RF 2 and 3 in each write
    /// consistency (async, semi_sync with one ack, sync): points/s, p50/p99, and the replicas'
    /// lag behind the primary under that load.
    Replication(replication::ReplicationArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Side {
    Both,
    Raw,
    Vdb,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Queries {
    Both,
    Plain,
    Filtered,
}

#[derive(clap::Args)]
struct ShardArgs {
    /// Directory holding debian-minilm/ (relative paths resolve from the current directory).
    #[arg(long, env = "VDB_DATA_DIR", default_value = "../shared/data")]
    data_dir: PathBuf,
    /// Threads for raw USearch (build and search) and the load generator's runtime.
    #[arg(long)]
    threads: Option<usize>,
    /// Search candidate list sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    ef: Vec<usize>,
    /// Seconds of timed searching per ef and query kind (default 5, 1 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// The shard binary to start.
    #[arg(long, default_value = "target/release/vdb-shard")]
    shard_bin: PathBuf,
    /// Use the shard node at this URL instead of starting one (its `bench` shard is replaced).
    #[arg(long)]
    url: Option<String>,
    /// WAL fsync policy for the started node: always, never or <N>ms.
    #[arg(long, default_value = "always")]
    fsync: String,
    /// Points per upsert request.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Upsert requests in flight at once.
    #[arg(long, default_value_t = 4)]
    ingest_concurrency: usize,
    /// Concurrent keep-alive connections searching.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench/results/latest.json")]
    out: PathBuf,
    /// A previous results file to print next to this run's numbers.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Smoke run: the first 10,000 documents, 200 queries, 1 s per ef.
    #[arg(long)]
    quick: bool,
    /// Timed trials per ef, query kind and side, alternating between the sides; the best is
    /// reported (background load only ever slows a trial down).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// With --url: search the `bench` shard an earlier run left there (if it holds the whole
    /// dataset) instead of loading a new one. Each load builds a different graph in different
    /// memory, which moves QPS by ~10 % between loads; comparing node settings or builds on
    /// one loaded shard leaves that out.
    #[arg(long, requires = "url")]
    reuse: bool,
    /// Measure only one side.
    #[arg(long, value_enum, default_value_t = Side::Both)]
    only: Side,
    /// Measure only one kind of query (plain: no filter; filtered: by section).
    #[arg(long, value_enum, default_value_t = Queries::Both)]
    queries: Queries,
}

/// Index parameters shared by both sides.
const HNSW: Hnsw = Hnsw { m: 16, ef_construction: 128, ef_search: 64 };
const QUICK_DOCS: usize = 10_000;
const QUICK_QUERIES: usize = 200;

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Shard(args) => shard(args),
        Command::Embed(args) => embed::run(args),
        Command::Router(args) => router::run(args),
        Command::Replication(args) => replication::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The cause chain says what to fix; a backtrace (RUST_BACKTRACE) would bury it.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn shard(args: ShardArgs) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(cores);
    ensure!(threads > 0 && args.connections > 0 && args.batch > 0, "counts must be positive");
    ensure!(args.ingest_concurrency > 0 && args.repeat > 0, "counts must be positive");
    ensure!(!args.ef.is_empty(), "--ef needs at least one value");
    let seconds = args.seconds.unwrap_or(if args.quick { 1.0 } else { 5.0 });
    let duration = Duration::from_secs_f64(seconds);
    let (docs, queries) =
        if args.quick { (Some(QUICK_DOCS), Some(QUICK_QUERIES)) } else { (None, None) };

    let mut machine = report::machine();
    let old = args.compare.as_deref().map(Report::read).transpose()?;
    eprintln!("loading {}", args.data_dir.join(data::DATASET).display());
    let data = Dataset::load(&args.data_dir, docs, queries)?;

    // Start the node first so a missing binary fails before minutes of raw measurements.
    let node = match (&args.url, args.only) {
        (_, Side::Raw) => None,
        (Some(url), _) => Some(http::Node::external(url)),
        (None, _) => Some(http::Node::spawn(&args.shard_bin, &args.fsync)?),
    };

    // Loads one after the other, each side alone on the machine.
    let raw_index = match args.only {
        Side::Vdb => None,
        _ => {
            eprintln!("raw usearch: building {} vectors with {threads} threads", data.len());
            Some(raw::build(&data, HNSW, threads)?)
        }
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    let vdb_failed = |node: &http::Node, e: anyhow::Error| {
        e.context(format!("VDB side failed{}", node.log_tail()))
    };
    let vdb = match &node {
        Some(node) => {
            let setup = http::Setup {
                hnsw: HNSW,
                efs: &args.ef,
                batch: args.batch,
                ingest_concurrency: args.ingest_concurrency,
                connections: args.connections,
                reuse: args.reuse,
            };
            Some(
                runtime
                    .block_on(http::Vdb::load(node, &data, setup))
                    .map_err(|e| vdb_failed(node, e))?,
            )
        }
        None => None,
    };

    let node_pid = node.as_ref().and_then(http::Node::pid);

    // Searches alternate between the sides at every ef, query kind and trial, so drift in
    // whatever else the machine is doing hits both alike. Every plain ef runs before any
    // filtered one: a USearch search context keeps the largest visited set it ever needed and
    // clears all of it on every search, so raw USearch's filtered graph walks (which visit
    // many more nodes) would slow its later plain searches by ~10 %, while the shard answers
    // these filters exactly and never grows its contexts that way.
    let (mut raw_runs, mut vdb_runs) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for (kind, filtered) in [false, true].into_iter().enumerate() {
        let skipped = if filtered { Queries::Plain } else { Queries::Filtered };
        if args.queries == skipped {
            continue;
        }
        for &ef in &args.ef {
            let label = if filtered { "filtered" } else { "plain" };
            eprintln!("{label} ef={ef}");
            let raw_accuracy = match &raw_index {
                Some((index, _)) => Some(raw::accuracy(index, &data, ef, filtered, threads)?),
                None => None,
            };
            let vdb_accuracy = match (&vdb, &node) {
                (Some(vdb), Some(node)) => Some(
                    runtime
                        .block_on(vdb.accuracy(&data, ef, filtered))
                        .map_err(|e| vdb_failed(node, e))?,
                ),
                _ => None,
            };
            let (mut raw_trials, mut vdb_trials) = (Vec::new(), Vec::new());
            for _ in 0..args.repeat {
                if let Some((index, _)) = &raw_index {
                    let trial = || raw::timed(index, &data, ef, filtered, threads, duration);
                    raw_trials.push(cpu::with_cpu(None, &[], trial)?);
                }
                if let (Some(vdb), Some(node)) = (&vdb, &node) {
                    let trial = || runtime.block_on(vdb.timed(ef, filtered, duration));
                    vdb_trials.push(
                        cpu::with_cpu(node_pid, &[], trial).map_err(|e| vdb_failed(node, e))?,
                    );
                }
            }
            if let Some(accuracy) = raw_accuracy {
                raw_runs[kind].push(SearchRun::best_of(ef, accuracy, raw_trials));
            }
            if let Some(accuracy) = vdb_accuracy {
                vdb_runs[kind].push(SearchRun::best_of(ef, accuracy, vdb_trials));
            }
        }
    }
    let [raw_plain, raw_filtered] = raw_runs;
    let raw = raw_index.map(|(index, build)| RawResults {
        simd: index.hardware_acceleration(),
        build,
        search: raw_plain,
        filtered: raw_filtered,
    });
    let [vdb_plain, vdb_filtered] = vdb_runs;
    let vdb = vdb.map(|v| VdbResults {
        url: v.url.clone(),
        spawned: args.url.is_none(),
        ingest: v.ingest.clone(),
        search: vdb_plain,
        filtered: vdb_filtered,
    });
    drop(node);
    machine.load_average_end = report::load_average();

    let mut report = Report {
        tool: "vdb-bench shard".to_string(),
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
            k: data::K,
            threads,
            seconds_per_ef: seconds,
            repeat: args.repeat,
            batch: args.batch,
            ingest_concurrency: args.ingest_concurrency,
            connections: args.connections,
            fsync: if args.url.is_some() {
                "as configured".to_string()
            } else {
                args.fsync.clone()
            },
            quick: args.quick,
        },
        raw,
        vdb,
        ratios: Default::default(),
    };
    report.compute_ratios();
    println!("{}", report.table());
    if let (Some(old), Some(path)) = (&old, &args.compare) {
        println!("{}", report.compare(old, &path.display().to_string()));
    }
    report.write(&args.out)?;
    eprintln!("results written to {}", args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["vdb-bench", "shard", "--quick", "--ef", "8,16"]).unwrap();
        let Command::Shard(args) = cli.command else { panic!("not shard") };
        assert!(args.quick);
        assert_eq!(args.ef, vec![8, 16]);
        let cli = Cli::try_parse_from(["vdb-bench", "replication", "--quick", "--rf", "2"]);
        assert!(matches!(cli.unwrap().command, Command::Replication(_)));
    }
}
