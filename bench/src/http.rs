//! The VDB side: starts (or connects to) a shard node, loads the dataset over HTTP and drives
//! search load with a lean hyper client.
//!
//! The load generator shares the cores with the server, so everything it can do ahead of time
//! (serialising every request body) happens before the clock starts, and the timed loop only
//! sends prepared bytes and drains the answers without parsing them. Recall and the plan the
//! shard chose come from a separate, untimed pass over every query.

use crate::data::{recall, Dataset, K};
use crate::raw::Hnsw;
use crate::report::{Accuracy, LatencyLog, Rate, Timed};
use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vdb_api::{
    Condition, CreatePayloadIndex, Filter, HnswConfig, Metric, PayloadIndexKind, PointId, Role,
    ScalarType, SearchPlan, SearchResult, ShardConfig,
};
use vdb_client::{ClientError, ShardClient};

/// The local shard the benchmark creates (and replaces, if a `--url` node already has one).
pub const SHARD: &str = "bench";

/// How long a node may take to bind and then to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A shard node: one this tool started (killed and its data removed on drop) or one at `--url`.
pub struct Node {
    pub url: String,
    child: Option<Child>,
    /// Holds the node's data dir and its log for as long as the node runs.
    _dir: Option<tempfile::TempDir>,
    log: Option<PathBuf>,
}

impl Node {
    pub fn external(url: &str) -> Self {
        Node { url: url.trim_end_matches('/').to_string(), child: None, _dir: None, log: None }
    }

    /// Starts `bin` on a free port with a fresh data dir and waits for the `{"listening": ..}`
    /// line it prints first on stdout.
    pub fn spawn(bin: &Path, fsync: &str) -> Result<Self> {
        if !bin.is_file() {
            bail!(
                "shard binary {} not found: build it with `cargo build --release -p vdb-shard`, \
                 or pass --shard-bin, or --url of a running node",
                bin.display()
            );
        }
        Self::start(bin, |dir| {
            vec!["--data-dir".into(), dir.join("data").into(), "--fsync".into(), fsync.into()]
        })
    }

    /// Starts `bin --listen 127.0.0.1:0` plus the arguments `args` gives for a fresh temporary
    /// directory (removed on drop, holding the log too) and waits for the `{"listening": ..}`
    /// line it prints first on stdout.
    pub fn start(bin: &Path, args: impl FnOnce(&Path) -> Vec<OsString>) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("vdb-bench-").tempdir()?;
        let log = dir.path().join("process.log");
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0"])
            .args(args(dir.path()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("shard stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the first line for us, then keeps draining stdout so the node never blocks on
        // a full pipe.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            lines.for_each(drop);
        });
        let mut node =
            Node { url: String::new(), child: Some(child), _dir: Some(dir), log: Some(log) };
        let first = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            Ok(_) | Err(_) => {
                bail!("{} printed no listening line{}", bin.display(), node.log_tail())
            }
        };
        let addr = serde_json::from_str::<serde_json::Value>(&first)
            .ok()
            .and_then(|v| v.get("listening")?.as_str().map(str::to_string))
            .with_context(|| {
                format!(
                    "first stdout line {first:?} is not {{\"listening\": ..}}{}",
                    node.log_tail()
                )
            })?;
        node.url = format!("http://{addr}");
        Ok(node)
    }

    /// The node's process, when it runs on this machine: the child this tool started, or the
    /// process listening on a loopback `--url`'s port.
    pub fn pid(&self) -> Option<u32> {
        if let Some(child) = &self.child {
            return Some(child.id());
        }
        let uri: Uri = self.url.parse().ok()?;
        let local = matches!(uri.host()?, "127.0.0.1" | "localhost" | "[::1]");
        local.then(|| crate::cpu::pid_listening_on(uri.port_u16()?))?
    }

    /// The end of the node's log, for error messages.
    pub fn log_tail(&self) -> String {
        let Some(text) = self.log.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) else {
            return String::new();
        };
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "\n--- {} (last lines) ---\n{}",
            self.log.as_ref().map_or(String::new(), |p| p.display().to_string()),
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for `/readyz`, then creates the `bench` shard (replacing an old one) and its keyword
/// index on `section`.
async fn prepare(client: &ShardClient, data: &Dataset, hnsw: Hnsw) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match client.ready().await {
            Ok(true) => break,
            Ok(false) | Err(ClientError::Transport(_) | ClientError::Timeout) => {}
            Err(e) => bail!("GET /readyz: {e}"),
        }
        ensure!(Instant::now() < deadline, "shard not ready after {START_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match client.get_shard(SHARD).await {
        Ok(_) => client.drop_shard(SHARD).await.context("dropping the old bench shard")?,
        Err(e) if e.status() == Some(404) => {}
        Err(e) => bail!("GET /v1/shards/{SHARD}: {e}"),
    }
    let config = ShardConfig {
        collection: SHARD.to_string(),
        shard_id: 0,
        dimension: data.dim,
        metric: Metric::Cosine,
        hnsw: HnswConfig {
            m: hnsw.m,
            ef_construction: hnsw.ef_construction,
            ef_search: hnsw.ef_search,
        },
        scalar: ScalarType::F32,
        role: Role::Primary,
        epoch: 0,
    };
    client.create_shard(SHARD, &config).await.context("creating the bench shard")?;
    let index =
        CreatePayloadIndex { field: "section".to_string(), kind: PayloadIndexKind::Keyword };
    client.create_index(SHARD, &index).await.context("creating the section index")?;
    Ok(())
}

pub type Lean = Client<HttpConnector, Full<Bytes>>;

/// A keep-alive HTTP/1 client with up to `connections` pooled connections.
pub fn lean_client(connections: usize) -> Lean {
    let mut connector = HttpConnector::new();
    // Small request/response pairs: without nodelay, Nagle adds tens of milliseconds.
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(connections)
        .pool_idle_timeout(None)
        .build(connector)
}

fn request(method: Method, uri: &Uri, body: Bytes) -> Result<Request<Full<Bytes>>> {
    Ok(Request::builder()
        .method(method)
        .uri(uri.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(Full::new(body))?)
}

/// Sends one request and reads the whole answer.
pub async fn call(
    client: &Lean,
    method: Method,
    uri: &Uri,
    body: Bytes,
) -> Result<(StatusCode, Bytes)> {
    let response = client.request(request(method, uri, body)?).await?;
    let status = response.status();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

/// The body of an upsert, serialised straight from borrowed vectors.
#[derive(Serialize)]
pub struct UpsertBody<'a> {
    pub points: Vec<PointBody<'a>>,
}

#[derive(Serialize)]
pub struct PointBody<'a> {
    pub id: u64,
    pub vector: &'a [f32],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<PayloadBody<'a>>,
}

#[derive(Serialize)]
pub struct PayloadBody<'a> {
    package: &'a str,
    section: &'a str,
    priority: &'a str,
    installed_size: i64,
}

/// Upserts every document in batches of `batch`, `concurrency` requests at a time; the rate
/// runs from the first request to the last acknowledgement (the shard indexes before it
/// acknowledges). A 429 is retried after a pause.
pub async fn ingest(
    client: &Lean,
    uri: &Uri,
    data: &Dataset,
    batch: usize,
    concurrency: usize,
) -> Result<Rate> {
    let bodies: Vec<Bytes> = (0..data.len())
        .step_by(batch)
        .map(|from| {
            let points = (from..(from + batch).min(data.len()))
                .map(|id| {
                    let d = &data.docs[id];
                    PointBody {
                        id: d.id,
                        vector: data.vector(id),
                        payload: Some(PayloadBody {
                            package: &d.package,
                            section: &d.section,
                            priority: &d.priority,
                            installed_size: d.installed_size,
                        }),
                    }
                })
                .collect();
            serde_json::to_vec(&UpsertBody { points }).map(Bytes::from)
        })
        .collect::<Result<_, _>>()?;
    let start = Instant::now();
    futures::stream::iter(bodies.into_iter().map(Ok))
        .try_for_each_concurrent(concurrency, |body| {
            let uri = &uri;
            async move {
                loop {
                    let (status, answer) = call(client, Method::PUT, uri, body.clone()).await?;
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    ensure!(
                        status.is_success(),
                        "upsert answered {status}: {}",
                        String::from_utf8_lossy(&answer)
                    );
                    return Ok(());
                }
            }
        })
        .await?;
    Ok(Rate::new(data.len(), start.elapsed()))
}

#[derive(Serialize)]
struct SearchBody<'a> {
    vector: &'a [f32],
    k: usize,
    ef: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    filter: Option<Filter>,
}

/// Every query's request body at `ef`, plain or restricted to its section.
pub fn search_bodies(data: &Dataset, ef: usize, filtered: bool) -> Result<Vec<Bytes>> {
    (0..data.num_queries())
        .map(|q| {
            let filter = filtered.then(|| {
                let section = data.sections[data.query_section[q] as usize].as_str();
                Filter::must(Condition::matches("section", section))
            });
            let body = SearchBody { vector: data.query(q), k: K, ef, filter };
            Ok(Bytes::from(serde_json::to_vec(&body)?))
        })
        .collect()
}

/// Recall and the plans reported over every query once, `connections` requests at a time.
async fn accuracy(
    client: &Lean,
    uri: &Uri,
    bodies: &[Bytes],
    truth: &[Vec<u32>],
    connections: usize,
) -> Result<Accuracy> {
    let answers: Vec<SearchResult> = futures::stream::iter(bodies.iter().cloned())
        .map(|body| async move {
            let (status, answer) = call(client, Method::POST, uri, body).await?;
            ensure!(
                status.is_success(),
                "search answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
            serde_json::from_slice(&answer).context("decoding a search answer")
        })
        .buffered(connections)
        .try_collect()
        .await?;
    let mut plans = BTreeMap::new();
    let mut recall_sum = 0.0;
    for (answer, truth) in answers.iter().zip(truth) {
        // The benchmark only writes integer ids; a UUID can only be a wrong answer.
        let ids: Vec<u64> = answer
            .points
            .iter()
            .map(|p| match p.id {
                PointId::Num(n) => n,
                PointId::Uuid(_) => u64::MAX,
            })
            .collect();
        recall_sum += recall(truth, &ids);
        *plans.entry(plan_name(answer.plan).to_string()).or_insert(0u64) += 1;
    }
    Ok(Accuracy { recall: recall_sum / answers.len().max(1) as f64, plans })
}

/// All queries cycled for `duration` over `connections` concurrent keep-alive connections.
pub async fn timed(
    client: &Lean,
    uri: &Uri,
    bodies: Arc<Vec<Bytes>>,
    connections: usize,
    duration: Duration,
) -> Result<Timed> {
    let deadline = Instant::now() + duration;
    let start = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|c| {
            let (client, uri, bodies) = (client.clone(), uri.clone(), bodies.clone());
            tokio::spawn(async move { load(client, uri, bodies, c, connections, deadline).await })
        })
        .collect();
    let mut logs = Vec::with_capacity(connections);
    let (mut errors, mut first_error) = (0, None);
    for worker in workers {
        let (log, failed, error) = worker.await?;
        logs.push(log);
        errors += failed;
        first_error = first_error.or(error);
    }
    let elapsed = start.elapsed();
    if let Some(e) = first_error {
        eprintln!("warning: {errors} failed searches; first: {e}");
    }
    Ok(Timed { log: LatencyLog::merge(logs), elapsed, errors, cpu: None })
}

/// One connection's share of the timed loop: prepared bodies in turn, answers drained unread.
/// Returns the latencies of the successes, the failure count and the first failure.
async fn load(
    client: Lean,
    uri: Uri,
    bodies: Arc<Vec<Bytes>>,
    worker: usize,
    workers: usize,
    deadline: Instant,
) -> (LatencyLog, u64, Option<String>) {
    let mut log = LatencyLog::with_capacity(deadline.saturating_duration_since(Instant::now()));
    let (mut errors, mut first_error) = (0u64, None);
    // Connections start at different queries so they do not send the same one together.
    let mut q = worker * bodies.len() / workers;
    loop {
        let sent = Instant::now();
        if sent >= deadline {
            return (log, errors, first_error);
        }
        let outcome = async {
            let response = client.request(request(Method::POST, &uri, bodies[q].clone())?).await?;
            let status = response.status();
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                frame?;
            }
            ensure!(status.is_success(), "HTTP {status}");
            anyhow::Ok(())
        }
        .await;
        match outcome {
            Ok(()) => log.record(sent.elapsed()),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
        q = (q + 1) % bodies.len();
    }
}

fn plan_name(plan: SearchPlan) -> &'static str {
    match plan {
        SearchPlan::Hnsw => "hnsw",
        SearchPlan::FilteredHnsw => "filtered_hnsw",
        SearchPlan::Exact => "exact",
    }
}

/// What [`Vdb::load`] needs besides the node and the data.
pub struct Setup<'a> {
    pub hnsw: Hnsw,
    pub efs: &'a [usize],
    pub batch: usize,
    pub ingest_concurrency: usize,
    pub connections: usize,
    /// Search the `bench` shard a previous run loaded, if it holds the whole dataset.
    pub reuse: bool,
}

/// The VDB side, loaded and ready to search.
pub struct Vdb {
    pub url: String,
    /// `None` when an earlier run's shard was reused.
    pub ingest: Option<Rate>,
    client: Lean,
    search_uri: Uri,
    connections: usize,
    /// Request bodies by (ef, filtered).
    bodies: BTreeMap<(usize, bool), Arc<Vec<Bytes>>>,
}

impl Vdb {
    /// Creates the shard, loads every document and serialises every search body up front.
    pub async fn load(node: &Node, data: &Dataset, setup: Setup<'_>) -> Result<Self> {
        let api = ShardClient::new(&node.url)?;
        let client = lean_client(setup.connections.max(setup.ingest_concurrency));
        let ingest = if setup.reuse && check_count(&api, data.len()).await.is_ok() {
            eprintln!("vdb: searching the {SHARD} shard already loaded at {}", node.url);
            None
        } else {
            prepare(&api, data, setup.hnsw).await?;
            eprintln!("vdb: ingesting {} vectors into {}", data.len(), node.url);
            let uri = format!("{}/v1/shards/{SHARD}/points", node.url).parse()?;
            let rate = ingest(&client, &uri, data, setup.batch, setup.ingest_concurrency).await?;
            check_count(&api, data.len()).await?;
            Some(rate)
        };
        let mut bodies = BTreeMap::new();
        for &ef in setup.efs {
            for filtered in [false, true] {
                bodies.insert((ef, filtered), Arc::new(search_bodies(data, ef, filtered)?));
            }
        }
        Ok(Vdb {
            url: node.url.clone(),
            ingest,
            client,
            search_uri: format!("{}/v1/shards/{SHARD}/search", node.url).parse()?,
            connections: setup.connections,
            bodies,
        })
    }

    fn bodies(&self, ef: usize, filtered: bool) -> Result<&Arc<Vec<Bytes>>> {
        self.bodies.get(&(ef, filtered)).context("no request bodies for this ef")
    }

    /// Recall over every query at `ef` (untimed; it also warms the caches).
    pub async fn accuracy(&self, data: &Dataset, ef: usize, filtered: bool) -> Result<Accuracy> {
        let truth = if filtered { &data.filtered_gt } else { &data.gt };
        let bodies = self.bodies(ef, filtered)?;
        accuracy(&self.client, &self.search_uri, bodies, truth, self.connections).await
    }

    /// All queries at `ef` cycled for `duration`.
    pub async fn timed(&self, ef: usize, filtered: bool, duration: Duration) -> Result<Timed> {
        let bodies = self.bodies(ef, filtered)?.clone();
        timed(&self.client, &self.search_uri, bodies, self.connections, duration).await
    }
}

/// Confirms the shard holds every point (catches a silently dropped batch).
async fn check_count(client: &ShardClient, expected: usize) -> Result<()> {
    let info = client.get_shard(SHARD).await.map_err(|e| anyhow!("GET /v1/shards/{SHARD}: {e}"))?;
    ensure!(
        info.points == expected as u64,
        "shard holds {} points, expected {expected}",
        info.points
    );
    Ok(())
}
