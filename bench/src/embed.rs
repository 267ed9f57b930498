//! `vdb-bench embed`: the embedder over HTTP (torch and tensorflow backends, on the CPU) next
//! to sentence-transformers in Python, on the same debian-minilm texts, threads and machine.
//!
//! Each backend serves from its own `vdb-embedder` process; 1, 8 and 64 concurrent clients
//! each send one text per request until every text has been embedded once, giving texts/s and
//! per-request p50/p99. sentence-transformers encodes the same texts in-process at several
//! batch sizes (its best counts) and one text per call (its latency). Sides alternate per
//! trial (`--repeat`), and the best trial of each is kept.

use crate::report::{git_commit, load_average, machine, Machine};
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vdb_client::embedder::EmbedderClient;

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// Directory holding debian-minilm/.
    #[arg(long, env = "VDB_DATA_DIR", default_value = "../shared/data")]
    data_dir: PathBuf,
    /// The embedder binary built with both backends.
    #[arg(long, env = "VDB_EMBEDDER_BIN", default_value = "target/embedder/release/vdb-embedder")]
    embedder_bin: PathBuf,
    /// Exported model directory (scripts/setup-embedder.sh).
    #[arg(long, env = "VDB_EMBEDDER_MODEL_DIR")]
    model_dir: Option<PathBuf>,
    /// Python with sentence-transformers (scripts/setup-embedder.sh's venv).
    #[arg(long, env = "VDB_EMBEDDER_PYTHON", default_value = "python3")]
    python: PathBuf,
    /// Backends to measure.
    #[arg(long, value_delimiter = ',', default_value = "torch,tensorflow")]
    backends: Vec<String>,
    /// Concurrent clients, one text per request.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    clients: Vec<usize>,
    /// sentence-transformers batch sizes (1 = one call per text).
    #[arg(long, value_delimiter = ',', default_value = "1,16,32,64,128")]
    st_batch_sizes: Vec<usize>,
    /// Documents embedded per measurement, spread evenly over the dataset.
    #[arg(long, default_value_t = 1000)]
    texts: usize,
    /// Threads for the model on both sides (intra-op); defaults to the cores.
    #[arg(long)]
    threads: Option<usize>,
    /// Extra flags for vdb-embedder (e.g. --max-batch-tokens=4096).
    #[arg(long, allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Trials per side, alternating; the best is kept.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Smoke run: 100 texts, clients 1 and 8, sentence-transformers at batch size 32 only.
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value = "bench/results/latest-embedder.json")]
    out: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientRun {
    pub clients: usize,
    pub texts: usize,
    pub seconds: f64,
    pub texts_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Server side, from its metrics: mean inputs per batch and the share of padding tokens.
    pub mean_batch: f64,
    pub padding_share: f64,
    /// CPU time the server process used (user + system): on a shared machine, texts per
    /// CPU-second compare the sides' efficiency even when other work steals the cores.
    pub cpu_seconds: f64,
    pub texts_per_cpu_second: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackendResult {
    pub backend: String,
    pub device: String,
    pub dtype: String,
    pub runs: Vec<ClientRun>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EmbedReport {
    pub tool: String,
    pub created_unix: u64,
    pub git_commit: String,
    pub machine: Machine,
    pub texts: usize,
    pub threads: usize,
    pub server_args: Vec<String>,
    /// `OMP_WAIT_POLICY` as both sides saw it (libtorch's OpenMP threads spin by default).
    pub omp_wait_policy: String,
    pub repeat: usize,
    pub sentence_transformers: serde_json::Value,
    pub backends: Vec<BackendResult>,
}

pub fn run(args: EmbedArgs) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(cores);
    let (n, clients, st_sizes) = if args.quick {
        (100, vec![1, 8], vec![32])
    } else {
        (args.texts, args.clients.clone(), args.st_batch_sizes.clone())
    };
    ensure!(n > 0 && threads > 0 && args.repeat > 0, "counts must be positive");
    let mut machine = machine();
    let texts = sample_texts(&args.data_dir.join("debian-minilm/docs.jsonl"), n)?;
    let texts_file = tempfile::NamedTempFile::new()?;
    serde_json::to_writer(texts_file.as_file(), &texts)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;

    let mut st_best: Option<serde_json::Value> = None;
    let mut best: Vec<Option<BackendResult>> = vec![None; args.backends.len()];
    for trial in 0..args.repeat {
        eprintln!("trial {}: sentence-transformers", trial + 1);
        let st = sentence_transformers(&args.python, texts_file.path(), threads, &st_sizes)?;
        if st_best.as_ref().is_none_or(|b| st_rate(&st) > st_rate(b)) {
            st_best = Some(st);
        }
        for (i, backend) in args.backends.iter().enumerate() {
            eprintln!("trial {}: vdb-embedder {backend}", trial + 1);
            let server = Server::spawn(&args, backend, threads)?;
            let result = runtime.block_on(measure(&server, backend, &texts, &clients))?;
            best[i] = Some(match best[i].take() {
                None => result,
                Some(old) => keep_best(old, result),
            });
        }
    }
    machine.load_average_end = load_average();
    let report = EmbedReport {
        tool: "vdb-bench embed".into(),
        created_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        git_commit: git_commit(),
        machine,
        texts: texts.len(),
        threads,
        server_args: args.server_args.clone(),
        omp_wait_policy: std::env::var("OMP_WAIT_POLICY").unwrap_or_default(),
        repeat: args.repeat,
        sentence_transformers: st_best.unwrap_or_default(),
        backends: best.into_iter().flatten().collect(),
    };
    println!("{}", table(&report));
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)? + "\n")?;
    eprintln!("results written to {}", args.out.display());
    Ok(())
}

/// `n` document texts spread evenly over the dataset.
fn sample_texts(path: &Path, n: usize) -> Result<Vec<String>> {
    let docs: Vec<vdb_dataset::Doc> = vdb_dataset::read_jsonl(path)
        .with_context(|| format!("reading {} (set VDB_DATA_DIR)", path.display()))?;
    let step = (docs.len() / n).max(1);
    Ok(docs.into_iter().step_by(step).take(n).map(|d| d.text).collect())
}

fn st_rate(v: &serde_json::Value) -> f64 {
    v["best"]["texts_per_second"].as_f64().unwrap_or(0.0)
}

fn sentence_transformers(
    python: &Path,
    texts: &Path,
    threads: usize,
    sizes: &[usize],
) -> Result<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench_st.py");
    let sizes: Vec<String> = sizes.iter().map(ToString::to_string).collect();
    let out = Command::new(python)
        .arg(script)
        .args(["--texts", &texts.display().to_string(), "--threads", &threads.to_string()])
        .args(["--batch-sizes", &sizes.join(",")])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    ensure!(out.status.success(), "bench_st.py failed ({})", out.status);
    let line = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string();
    serde_json::from_str(&line).context("bench_st.py printed no JSON")
}

/// Per client count, the faster of two results.
fn keep_best(mut a: BackendResult, b: BackendResult) -> BackendResult {
    for (x, y) in a.runs.iter_mut().zip(b.runs) {
        if y.texts_per_second > x.texts_per_second {
            *x = y;
        }
    }
    a
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn spawn(args: &EmbedArgs, backend: &str, threads: usize) -> Result<Self> {
        let mut cmd = Command::new(&args.embedder_bin);
        cmd.args(["--listen", "127.0.0.1:0", "--backend", backend, "--device", "cpu"])
            .args(["--intra-op-threads", &threads.to_string()])
            .args(&args.server_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(dir) = &args.model_dir {
            cmd.arg("--model-dir").arg(dir);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} (make embedder)", args.embedder_bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let v: serde_json::Value = serde_json::from_str(&line).context("no listening line")?;
        let url = format!("http://{}", v["listening"].as_str().context("no address")?);
        Ok(Server { child, url })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn measure(
    server: &Server,
    backend: &str,
    texts: &[String],
    clients: &[usize],
) -> Result<BackendResult> {
    let client = EmbedderClient::with_timeout(&server.url, Duration::from_secs(120))?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !client.ready().await.unwrap_or(false) {
        if Instant::now() > deadline {
            bail!("{backend} embedder not ready after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let info = client.info().await?;
    client.embed(&texts[..texts.len().min(64)], true).await?; // warm-up
    let mut runs = Vec::new();
    for &c in clients {
        let before = metrics(&client).await?;
        let cpu_before = cpu_seconds(server.child.id());
        let next = Arc::new(AtomicUsize::new(0));
        let texts = Arc::new(texts.to_vec());
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..c {
            let (client, next, texts) = (client.clone(), next.clone(), texts.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(text) = texts.get(i) else { break };
                    let t0 = Instant::now();
                    client.embed(std::slice::from_ref(text), true).await?;
                    latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await??);
        }
        let seconds = start.elapsed().as_secs_f64();
        let after = metrics(&client).await?;
        let cpu = cpu_seconds(server.child.id()) - cpu_before;
        latencies.sort_by(f64::total_cmp);
        let pct =
            |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        let d = |name: &str| after.get(name).unwrap_or(&0.0) - before.get(name).unwrap_or(&0.0);
        let padding = d("vdb_embedder_padding_tokens_total");
        runs.push(ClientRun {
            clients: c,
            texts: latencies.len(),
            seconds,
            texts_per_second: latencies.len() as f64 / seconds,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            mean_batch: d("vdb_embedder_batch_size_sum")
                / d("vdb_embedder_batch_size_count").max(1.0),
            padding_share: padding / (padding + d("vdb_embedder_tokens_total")).max(1.0),
            cpu_seconds: cpu,
            texts_per_cpu_second: latencies.len() as f64 / cpu.max(1e-9),
        });
        eprintln!(
            "  {backend} clients={c}: {:.1} texts/s",
            runs.last().map_or(0.0, |r| r.texts_per_second)
        );
    }
    Ok(BackendResult { backend: backend.into(), device: info.device, dtype: info.dtype, runs })
}

/// User + system CPU seconds of process `pid` so far (Linux: /proc, 100 ticks a second).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the parenthesised command name, utime and stime are the 12th and 13th fields.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Unlabelled series of the server's metrics.
async fn metrics(client: &EmbedderClient) -> Result<std::collections::HashMap<String, f64>> {
    let text = client.metrics().await?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
        .collect())
}

fn table(r: &EmbedReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let st = &r.sentence_transformers;
    let st_best = st_rate(st);
    let _ = writeln!(s, "{} texts, {} threads, CPU", r.texts, r.threads);
    let st_cpu = st["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["texts_per_cpu_second"].as_f64())
        .fold(0.0, f64::max);
    let _ = writeln!(
        s,
        "sentence-transformers: best {:.1} texts/s at batch {} (best {:.1} texts per CPU-second); \
         one text per call p50 {:.1} ms, p99 {:.1} ms",
        st_best,
        st["best"]["batch_size"],
        st_cpu,
        st["runs"][0]["p50_ms"].as_f64().unwrap_or(f64::NAN),
        st["runs"][0]["p99_ms"].as_f64().unwrap_or(f64::NAN)
    );
    let _ = writeln!(
        s,
        "| backend | clients | texts/s | vs ST | p50 ms | p99 ms | mean batch | padding | texts/CPU-s | vs ST |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for b in &r.backends {
        for run in &b.runs {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {:.2}x | {:.1} | {:.1} | {:.1} | {:.0}% | {:.1} | {:.2}x |",
                b.backend,
                run.clients,
                run.texts_per_second,
                run.texts_per_second / st_best.max(1e-9),
                run.p50_ms,
                run.p99_ms,
                run.mean_batch,
                run.padding_share * 100.0,
                run.texts_per_cpu_second,
                run.texts_per_cpu_second / st_cpu.max(1e-9)
            );
        }
    }
    s
}
