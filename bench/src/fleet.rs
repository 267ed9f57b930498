//! A local fleet for `vdb-bench router`: S shard nodes and one router on a local metastore
//! file, each started by this tool on a free port and killed on drop, and a collection with S
//! shards placed one per node, loaded with the dataset through the router.

use crate::data::Dataset;
use crate::http::{self, call, Lean, Node};
use crate::raw::Hnsw;
use crate::report::Rate;
use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use hyper::{Method, StatusCode, Uri};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vdb_api::{
    CollectionInfo, CountResult, CreateCollection, CreatePayloadIndex, HnswConfig, Metric,
    PayloadIndexKind, ScalarType, ShardList, Sharding, WriteConsistency,
};

/// The collection the benchmark creates through the router.
pub const COLLECTION: &str = "bench";

/// How long processes may take to become ready and the router to see its nodes healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The binaries a fleet runs, and its nodes' WAL policy (flags shared by the subcommands that
/// start one).
#[derive(clap::Args)]
pub struct FleetArgs {
    /// The shard binary to start.
    #[arg(long, default_value = "target/release/vdb-shard")]
    pub shard_bin: PathBuf,
    /// The router binary to start.
    #[arg(long, default_value = "target/release/vdb-router")]
    pub router_bin: PathBuf,
    /// WAL fsync policy of the started nodes: always, never or <N>ms.
    #[arg(long, default_value = "always")]
    pub fsync: String,
}

/// S shard nodes and the router in front of them.
pub struct Fleet {
    pub shards: usize,
    pub nodes: Vec<Node>,
    pub router: Node,
}

impl Fleet {
    /// Starts `shards` nodes (WAL policy `fsync`) and a router that registers them as
    /// `n0..`, with its metastore in its own temporary directory.
    pub fn start(bins: &FleetArgs, shards: usize) -> Result<Self> {
        let (shard_bin, router_bin, fsync) = (&bins.shard_bin, &bins.router_bin, &bins.fsync);
        if !router_bin.is_file() {
            bail!(
                "router binary {} not found: build it with `cargo build --release -p vdb-router`, \
                 or pass --router-bin",
                router_bin.display()
            );
        }
        let nodes =
            (0..shards).map(|_| Node::spawn(shard_bin, fsync)).collect::<Result<Vec<_>>>()?;
        let router = Node::start(router_bin, |dir| {
            let mut args = vec![
                "--metastore".into(),
                format!("local://{}", dir.join("meta.json").display()).into(),
                "--router-id".into(),
                "bench".into(),
            ];
            for (i, node) in nodes.iter().enumerate() {
                args.push("--node".into());
                args.push(format!("n{i}={}", node.url).into());
            }
            args
        })?;
        Ok(Fleet { shards, nodes, router })
    }

    /// The shard node the router knows as `id` (`n0`, `n1`, ...: the names `start` gave).
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id.strip_prefix('n')?.parse::<usize>().ok()?)
    }

    /// The last lines of every process's log, for error messages.
    pub fn log_tail(&self) -> String {
        let mut out = self.router.log_tail();
        self.nodes.iter().for_each(|n| out.push_str(&n.log_tail()));
        out
    }

    /// `POST /v1/collections/bench/search` on the router.
    pub fn search_uri(&self) -> Result<Uri> {
        Ok(format!("{}/v1/collections/{COLLECTION}/search", self.router.url).parse()?)
    }

    /// Creates the collection (and the shard bench's keyword index on `section`), checks
    /// that every node holds exactly one of its shards, and upserts every document through
    /// the router. Returns the ingest rate and the local shard name on the first node.
    pub async fn load(
        &self,
        client: &Lean,
        data: &Dataset,
        hnsw: Hnsw,
        batch: usize,
        ingest_concurrency: usize,
    ) -> Result<(Rate, String)> {
        for process in self.nodes.iter().chain([&self.router]) {
            wait_ready(client, &process.url).await?;
        }
        let create = CreateCollection {
            dimension: Some(data.dim),
            metric: Metric::Cosine,
            hnsw: HnswConfig {
                m: hnsw.m,
                ef_construction: hnsw.ef_construction,
                ef_search: hnsw.ef_search,
            },
            scalar: ScalarType::F32,
            shard_count: self.shards as u32,
            replication_factor: 1,
            sharding: Sharding::Hash,
            write_consistency: WriteConsistency::Async,
            min_in_sync: None,
            auto_reshard: false,
            embedding: None,
        };
        let url = &self.router.url;
        let uri: Uri = format!("{url}/v1/collections/{COLLECTION}").parse()?;
        let body = Bytes::from(serde_json::to_vec(&create)?);
        // The router registers its nodes at start; until its first health round marks them
        // up, placement answers 503.
        let deadline = Instant::now() + READY_TIMEOUT;
        let info: CollectionInfo = loop {
            let (status, answer) = call(client, Method::PUT, &uri, body.clone()).await?;
            if status.is_success() {
                break serde_json::from_slice(&answer).context("decoding the collection")?;
            }
            ensure!(
                status == StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline,
                "creating the collection answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let index =
            CreatePayloadIndex { field: "section".to_string(), kind: PayloadIndexKind::Keyword };
        let uri = format!("{url}/v1/collections/{COLLECTION}/index").parse()?;
        expect_success(client, Method::PUT, &uri, &index, "creating the section index").await?;

        let mut locals = Vec::new();
        for node in &self.nodes {
            let uri = format!("{}/v1/shards", node.url).parse()?;
            let (status, answer) = call(client, Method::GET, &uri, Bytes::new()).await?;
            ensure!(status.is_success(), "GET /v1/shards answered {status}");
            let list: ShardList = serde_json::from_slice(&answer)?;
            ensure!(
                list.shards.len() == 1,
                "node {} hosts {} shards, expected one (placement: {:?})",
                node.url,
                list.shards.len(),
                info.shards
            );
            locals.push(list.shards[0].name.clone());
        }

        eprintln!("router S={}: ingesting {} vectors through {url}", self.shards, data.len());
        let uri = format!("{url}/v1/collections/{COLLECTION}/points").parse()?;
        let rate = http::ingest(client, &uri, data, batch, ingest_concurrency).await?;
        let uri = format!("{url}/v1/collections/{COLLECTION}/points/count").parse()?;
        let (status, answer) = call(client, Method::POST, &uri, Bytes::from_static(b"{}")).await?;
        ensure!(status.is_success(), "count answered {status}");
        let count: CountResult = serde_json::from_slice(&answer)?;
        ensure!(
            count.count == data.len() as u64,
            "the collection holds {} points, expected {}",
            count.count,
            data.len()
        );
        Ok((rate, locals.swap_remove(0)))
    }
}

/// Polls `GET /readyz` until it answers 200.
pub async fn wait_ready(client: &Lean, url: &str) -> Result<()> {
    let uri: Uri = format!("{url}/readyz").parse()?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok((StatusCode::OK, _)) = call(client, Method::GET, &uri, Bytes::new()).await {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{url} not ready after {READY_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn expect_success(
    client: &Lean,
    method: Method,
    uri: &Uri,
    body: &impl serde::Serialize,
    what: &str,
) -> Result<()> {
    let (status, answer) =
        call(client, method, uri, Bytes::from(serde_json::to_vec(body)?)).await?;
    ensure!(status.is_success(), "{what} answered {status}: {}", String::from_utf8_lossy(&answer));
    Ok(())
}
