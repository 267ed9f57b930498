//! Results: latency summaries, the human table, the JSON document and the comparison with a
//! previous run.

use crate::cpu::CpuUse;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Per-request latencies of one timed loop, in nanoseconds.
pub struct LatencyLog(Vec<u64>);

impl LatencyLog {
    /// Sized for a generous rate so recording never reallocates inside the timed loop.
    pub fn with_capacity(duration: Duration) -> Self {
        LatencyLog(Vec::with_capacity((duration.as_secs_f64() * 20_000.0) as usize + 1024))
    }

    pub fn record(&mut self, latency: Duration) {
        self.0.push(latency.as_nanos() as u64);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn merge(logs: Vec<LatencyLog>) -> LatencyLog {
        LatencyLog(logs.into_iter().flat_map(|l| l.0).collect())
    }
}

/// Throughput of a bulk load.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rate {
    pub vectors: usize,
    pub seconds: f64,
    pub vectors_per_second: f64,
}

impl Rate {
    pub fn new(vectors: usize, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        Rate { vectors, seconds, vectors_per_second: vectors as f64 / seconds.max(1e-9) }
    }
}

/// One timed search loop at one `ef`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SearchRun {
    pub ef: usize,
    pub recall_at_10: f64,
    pub qps: f64,
    pub p50_ms: f64,
    /// Absent from files written before it was recorded.
    #[serde(default)]
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Searches completed in the timed loop.
    pub completed: u64,
    /// Requests that failed in the timed loop (not counted in `qps`).
    pub errors: u64,
    /// VDB only: how many recall-pass answers reported each plan.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plans: BTreeMap<String, u64>,
    /// With `--repeat`: every trial's QPS (the numbers above are from the best one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trials_qps: Vec<f64>,
    /// CPU time per search in the best trial (absent where `/proc` could not tell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuUse>,
}

/// What the untimed pass over every query found: mean recall@10 and, for VDB, how often the
/// shard reported each plan.
#[derive(Clone, Debug, Default)]
pub struct Accuracy {
    pub recall: f64,
    pub plans: BTreeMap<String, u64>,
}

/// One timed loop: the latencies of the searches that succeeded, over `elapsed`.
pub struct Timed {
    pub log: LatencyLog,
    pub elapsed: Duration,
    pub errors: u64,
    /// What the loop cost per search, where the caller measured it.
    pub cpu: Option<CpuUse>,
}

impl Timed {
    fn qps(&self) -> f64 {
        self.log.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl SearchRun {
    /// The run from the trial with the highest QPS: background load on a shared machine only
    /// ever slows a trial down, so the best one is the closest to the machine's capacity.
    pub fn best_of(ef: usize, accuracy: Accuracy, trials: Vec<Timed>) -> Self {
        let trials_qps: Vec<f64> = trials.iter().map(Timed::qps).collect();
        let best = trials.into_iter().max_by(|a, b| a.qps().total_cmp(&b.qps()));
        let Timed { log, elapsed, errors, cpu } = best.unwrap_or(Timed {
            log: LatencyLog(Vec::new()),
            elapsed: Duration::ZERO,
            errors: 0,
            cpu: None,
        });
        let mut ns = log.0;
        ns.sort_unstable();
        let pct = |p: usize| {
            ns.get((ns.len() * p / 100).min(ns.len().saturating_sub(1)))
                .map_or(0.0, |&v| v as f64 / 1e6)
        };
        SearchRun {
            ef,
            recall_at_10: accuracy.recall,
            qps: ns.len() as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_ms: pct(50),
            p95_ms: pct(95),
            p99_ms: pct(99),
            completed: ns.len() as u64,
            errors,
            plans: accuracy.plans,
            trials_qps: if trials_qps.len() > 1 { trials_qps } else { Vec::new() },
            cpu,
        }
    }

    /// The plans as `name` or `name:count,...` when they were mixed.
    fn plan_label(&self) -> String {
        match self.plans.len() {
            0 => String::new(),
            1 => self.plans.keys().next().cloned().unwrap_or_default(),
            _ => self.plans.iter().map(|(p, n)| format!("{p}:{n}")).collect::<Vec<_>>().join(","),
        }
    }
}

/// USearch in-process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RawResults {
    /// The SIMD kernels USearch picked (e.g. "haswell"), to explain differences between machines.
    #[serde(default)]
    pub simd: String,
    pub build: Rate,
    pub search: Vec<SearchRun>,
    pub filtered: Vec<SearchRun>,
}

/// VDB's shard over HTTP.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VdbResults {
    pub url: String,
    /// True when the tool started the shard itself (else `--url`).
    pub spawned: bool,
    /// Absent when `--reuse` searched a shard loaded by an earlier run.
    pub ingest: Option<Rate>,
    pub search: Vec<SearchRun>,
    pub filtered: Vec<SearchRun>,
}

/// VDB divided by raw USearch (1.0 = as fast as the library alone).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ratios {
    pub ingest: Option<f64>,
    /// `ef` → QPS ratio.
    pub search_qps: BTreeMap<usize, f64>,
    pub filtered_qps: BTreeMap<usize, f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    /// `cpu family/model` from /proc/cpuinfo (e.g. "25/17"): a cloud guest's model name ("AMD
    /// EPYC") does not tell CPU generations apart, and they run the same kernels at different
    /// speeds.
    #[serde(default)]
    pub cpu_family_model: String,
    /// The widest vector extension the CPU reports: "avx512", "avx2", "sse4_2" or "".
    #[serde(default)]
    pub vector_isa: String,
    pub memory_gib: f64,
    pub os: String,
    /// 1, 5 and 15 minute load averages when the run started: other work on the machine
    /// skews every number, so a busy start is worth knowing about.
    #[serde(default)]
    pub load_average: Vec<f64>,
    /// The same at the end: a high 1-minute value here means something else ran meanwhile.
    #[serde(default)]
    pub load_average_end: Vec<f64>,
}

impl Machine {
    /// One line for a report's header: cores, CPU, load at start and end, the commit.
    pub fn describe(&self, commit: &str) -> String {
        format!(
            "{} cores ({}, family/model {}, {}), load average {:?} at start, {:?} at end, commit {commit}",
            self.cores,
            self.cpu_model,
            self.cpu_family_model,
            self.vector_isa,
            self.load_average,
            self.load_average_end
        )
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub dataset: String,
    pub docs: usize,
    pub queries: usize,
    pub dimension: usize,
    pub metric: String,
    pub scalar: String,
    pub m: usize,
    pub ef_construction: usize,
    pub efs: Vec<usize>,
    pub k: usize,
    pub threads: usize,
    pub seconds_per_ef: f64,
    /// Timed trials per measurement (the best is reported).
    #[serde(default = "one")]
    pub repeat: usize,
    pub batch: usize,
    pub ingest_concurrency: usize,
    pub connections: usize,
    pub fsync: String,
    pub quick: bool,
}

fn one() -> usize {
    1
}

/// The JSON document `--out` receives and `--compare` reads back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    pub created_unix: u64,
    pub git_commit: String,
    pub machine: Machine,
    pub params: Params,
    pub raw: Option<RawResults>,
    pub vdb: Option<VdbResults>,
    pub ratios: Ratios,
}

impl Report {
    pub fn compute_ratios(&mut self) {
        let (Some(raw), Some(vdb)) = (&self.raw, &self.vdb) else { return };
        let per_ef = |vdb: &[SearchRun], raw: &[SearchRun]| {
            vdb.iter()
                .filter_map(|v| {
                    let r = raw.iter().find(|r| r.ef == v.ef)?;
                    Some((v.ef, v.qps / r.qps.max(1e-9)))
                })
                .collect()
        };
        self.ratios = Ratios {
            ingest: vdb
                .ingest
                .as_ref()
                .map(|i| i.vectors_per_second / raw.build.vectors_per_second.max(1e-9)),
            search_qps: per_ef(&vdb.search, &raw.search),
            filtered_qps: per_ef(&vdb.filtered, &raw.filtered),
        };
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Every row of the table: (query kind, side, run).
    fn rows(&self) -> Vec<(&'static str, &'static str, &SearchRun)> {
        let mut rows = Vec::new();
        let raw = self.raw.as_ref();
        let vdb = self.vdb.as_ref();
        for (kind, raw_runs, vdb_runs) in [
            ("plain", raw.map(|r| &r.search), vdb.map(|v| &v.search)),
            ("filtered", raw.map(|r| &r.filtered), vdb.map(|v| &v.filtered)),
        ] {
            for ef in &self.params.efs {
                for (side, runs) in [("raw", raw_runs), ("vdb", vdb_runs)] {
                    if let Some(run) = runs.and_then(|rs| rs.iter().find(|r| r.ef == *ef)) {
                        rows.push((kind, side, run));
                    }
                }
            }
        }
        rows
    }

    /// The human table: bulk load rates, then one row per side, query kind and ef.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let p = &self.params;
        let _ = writeln!(
            out,
            "debian-minilm: {} docs x {} dims, {} queries, M={} ef_construction={}, {} threads, \
             {} connections, {} s per ef (best of {}), fsync {}",
            p.docs,
            p.dimension,
            p.queries,
            p.m,
            p.ef_construction,
            p.threads,
            p.connections,
            p.seconds_per_ef,
            p.repeat,
            p.fsync
        );
        let _ = writeln!(out, "{}", self.machine.describe(&self.git_commit));
        let _ =
            writeln!(out, "\n{:<8} {:>14} {:>10} {:>8}", "load", "vectors/s", "seconds", "ratio");
        if let Some(raw) = &self.raw {
            let _ = writeln!(
                out,
                "{:<8} {:>14.0} {:>10.2} {:>8}",
                "raw", raw.build.vectors_per_second, raw.build.seconds, ""
            );
        }
        if let Some(ingest) = self.vdb.as_ref().and_then(|v| v.ingest.as_ref()) {
            let ratio = self.ratios.ingest.map(|r| format!("{r:.2}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<8} {:>14.0} {:>10.2} {:>8}",
                "vdb", ingest.vectors_per_second, ingest.seconds, ratio
            );
        }
        let _ = writeln!(
            out,
            "\n{:<9} {:<5} {:>5} {:>10} {:>10} {:>8} {:>8} {:>7}  plan",
            "query", "side", "ef", "recall@10", "QPS", "p50 ms", "p99 ms", "ratio"
        );
        for (kind, side, run) in self.rows() {
            let ratios =
                if kind == "plain" { &self.ratios.search_qps } else { &self.ratios.filtered_qps };
            let ratio = match side {
                "vdb" => ratios.get(&run.ef).map(|r| format!("{r:.2}")).unwrap_or_default(),
                _ => String::new(),
            };
            let errors =
                if run.errors > 0 { format!(" ({} errors)", run.errors) } else { String::new() };
            let _ = writeln!(
                out,
                "{:<9} {:<5} {:>5} {:>10.4} {:>10.0} {:>8.3} {:>8.3} {:>7}  {}{}",
                kind,
                side,
                run.ef,
                run.recall_at_10,
                run.qps,
                run.p50_ms,
                run.p99_ms,
                ratio,
                run.plan_label(),
                errors
            );
        }
        let cpu_rows: Vec<_> = self
            .rows()
            .into_iter()
            .filter_map(|(k, side, r)| Some((k, side, r.ef, r.cpu.as_ref()?)))
            .collect();
        if !cpu_rows.is_empty() {
            let _ = writeln!(
                out,
                "\nCPU per search (us of user + system time, best trial): this process is raw \
                 USearch or the load generator"
            );
            for (kind, side, ef, cpu) in cpu_rows {
                let _ = writeln!(out, "{kind:<9} {side:<5} {ef:>5} {}", cpu.describe());
            }
        }
        out
    }

    /// This run next to `old`: QPS and p99 with their change in percent, recall side by side.
    pub fn compare(&self, old: &Report, old_name: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "compared with {old_name} (commit {}, {} docs, {} s per ef):",
            old.git_commit, old.params.docs, old.params.seconds_per_ef
        );
        if old.params.docs != self.params.docs || old.params.queries != self.params.queries {
            let _ =
                writeln!(out, "  note: different dataset sizes; the numbers are not comparable");
        }
        let delta = |new: f64, old: f64| {
            if old > 0.0 {
                format!("{:+.1}%", (new / old - 1.0) * 100.0)
            } else {
                "n/a".to_string()
            }
        };
        let _ =
            writeln!(out, "\n{:<8} {:>14} {:>14} {:>8}", "load", "old vec/s", "new vec/s", "delta");
        let loads = [
            ("raw", old.raw.as_ref().map(|r| &r.build), self.raw.as_ref().map(|r| &r.build)),
            (
                "vdb",
                old.vdb.as_ref().and_then(|v| v.ingest.as_ref()),
                self.vdb.as_ref().and_then(|v| v.ingest.as_ref()),
            ),
        ];
        for (side, old_rate, new_rate) in loads {
            if let (Some(o), Some(n)) = (old_rate, new_rate) {
                let _ = writeln!(
                    out,
                    "{:<8} {:>14.0} {:>14.0} {:>8}",
                    side,
                    o.vectors_per_second,
                    n.vectors_per_second,
                    delta(n.vectors_per_second, o.vectors_per_second)
                );
            }
        }
        let _ = writeln!(
            out,
            "\n{:<9} {:<5} {:>5} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8}",
            "query",
            "side",
            "ef",
            "old rec",
            "new rec",
            "old QPS",
            "new QPS",
            "delta",
            "old p99",
            "new p99"
        );
        let old_rows = old.rows();
        for (kind, side, run) in self.rows() {
            let Some((_, _, o)) =
                old_rows.iter().find(|(k, s, r)| *k == kind && *s == side && r.ef == run.ef)
            else {
                continue;
            };
            let _ = writeln!(
                out,
                "{:<9} {:<5} {:>5} {:>10.4} {:>10.4} {:>10.0} {:>10.0} {:>8} {:>8.3} {:>8.3}",
                kind,
                side,
                run.ef,
                o.recall_at_10,
                run.recall_at_10,
                o.qps,
                run.qps,
                delta(run.qps, o.qps),
                o.p99_ms,
                run.p99_ms
            );
        }
        out
    }
}

/// Cores, CPU model and memory as Linux reports them (best effort elsewhere).
pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let (cpu_model, cpu_family_model, vector_isa) = cpu(&cpuinfo);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        cpu_family_model,
        vector_isa,
        memory_gib: (memory_kib / (1024.0 * 1024.0) * 10.0).round() / 10.0,
        os: std::env::consts::OS.to_string(),
        load_average: load_average(),
        load_average_end: Vec::new(),
    }
}

/// Model name, "family/model" and widest vector extension of the first processor in a
/// /proc/cpuinfo text.
fn cpu(cpuinfo: &str) -> (String, String, String) {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    let model = field("model name").unwrap_or_else(|| "unknown".to_string());
    let family_model = match (field("cpu family"), field("model")) {
        (Some(family), Some(model)) => format!("{family}/{model}"),
        _ => String::new(),
    };
    let flags = field("flags").unwrap_or_default();
    let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
    let isa = [("avx512f", "avx512"), ("avx2", "avx2"), ("sse4_2", "sse4_2")]
        .into_iter()
        .find(|(flag, _)| has(flag))
        .map_or(String::new(), |(_, name)| name.to_string());
    (model, family_model, isa)
}

/// The 1, 5 and 15 minute load averages (empty where /proc/loadavg is missing).
pub fn load_average() -> Vec<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).filter_map(|v| v.parse().ok()).collect()
}

/// `git rev-parse --short HEAD`, with `-dirty` when the work tree has uncommitted changes,
/// or "unknown" outside a checkout.
pub fn git_commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("{commit}-dirty"),
            _ => commit,
        },
        None => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_reads_the_first_processor() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n\
                    model name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx2 avx512f avx512bw\n\n\
                    processor\t: 1\ncpu family\t: 6\nmodel\t\t: 85\n";
        assert_eq!(cpu(text), ("AMD EPYC".into(), "25/17".into(), "avx512".into()));
        let older = "cpu family\t: 23\nmodel\t\t: 49\nflags\t\t: sse4_2 avx2 avx512_bf16\n";
        assert_eq!(cpu(older), ("unknown".into(), "23/49".into(), "avx2".into()));
        assert_eq!(cpu(""), ("unknown".into(), String::new(), String::new()));
    }

    #[test]
    fn percentiles_and_rate() {
        let mut log = LatencyLog::with_capacity(Duration::from_secs(1));
        (1..=100).for_each(|ms| log.record(Duration::from_millis(ms)));
        let slow = Timed {
            log: LatencyLog(vec![5; 10]),
            elapsed: Duration::from_secs(2),
            errors: 1,
            cpu: None,
        };
        let cpu = CpuUse { bench_us: 40.0, machine_busy_percent: 99.0, ..CpuUse::default() };
        let fast =
            Timed { log, elapsed: Duration::from_secs(2), errors: 0, cpu: Some(cpu.clone()) };
        let run = SearchRun::best_of(16, Accuracy::default(), vec![slow, fast]);
        assert_eq!((run.completed, run.errors), (100, 0));
        assert_eq!(run.qps, 50.0);
        assert_eq!((run.p50_ms, run.p99_ms), (51.0, 100.0));
        assert_eq!(run.trials_qps, vec![5.0, 50.0]);
        assert_eq!(run.cpu, Some(cpu), "the CPU figures are the best trial's");
        let empty = Timed {
            log: LatencyLog(Vec::new()),
            elapsed: Duration::from_secs(1),
            errors: 3,
            cpu: None,
        };
        let run = SearchRun::best_of(16, Accuracy::default(), vec![empty]);
        assert_eq!((run.qps, run.p99_ms, run.errors), (0.0, 0.0, 3));
        assert!(run.trials_qps.is_empty());
    }
}
