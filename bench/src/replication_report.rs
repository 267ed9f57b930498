//! The results of `vdb-bench replication`: one row per replication factor and write
//! consistency, the replication lag of every replica, the check against the targets, the human
//! table and the JSON document.

use crate::cpu::CpuUse;
use crate::report::Machine;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// Sync p99 may exceed async p99 (same replication factor) by at most this much.
pub const TARGET_SYNC_OVER_ASYNC_P99_MS: f64 = 3.0;
/// Async replication lag p99 must stay under this.
pub const TARGET_ASYNC_LAG_P99_MS: f64 = 100.0;

/// What every row shares.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplicationParams {
    /// Shard nodes in the fleet (the largest replication factor).
    pub nodes: usize,
    pub shard_count: u32,
    pub dimension: usize,
    pub metric: String,
    /// Points per upsert request.
    pub batch: usize,
    /// Concurrent writers, each with one upsert in flight (closed loop).
    pub writers: usize,
    pub seconds_per_row: f64,
    /// Timed trials per row, the rows taking turns; the one with the most points/s is kept.
    pub repeat: usize,
    /// How often the primary's replica progress was read during a trial.
    pub lag_interval_ms: u64,
    pub fsync: String,
    /// The load generator's runtime threads.
    pub threads: usize,
    pub quick: bool,
}

/// One replication factor and write consistency.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub replication_factor: u32,
    /// `async`, `semi_sync` or `sync`.
    pub mode: String,
    /// `semi_sync` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acks: Option<u32>,
    pub collection: String,
    /// Nodes holding the shard, primary first.
    pub placement: Vec<String>,
    /// Points acknowledged per second, first request to last acknowledgement.
    pub points_per_second: f64,
    /// Upsert requests acknowledged per second.
    pub writes_per_second: f64,
    /// Latency percentiles over the upserts of every trial of the row (not only the kept one):
    /// `latency_samples` of them.
    #[serde(default)]
    pub latency_samples: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Upserts acknowledged in the kept trial.
    pub writes: u64,
    /// Upserts that failed (not counted above).
    pub errors: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub seconds: f64,
    /// The smallest in-sync set the primary reported during the trial (absent at RF 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_in_sync: Option<usize>,
    /// Per replica, as the primary reported it during the trial.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaLag>,
    /// With `--repeat`: every trial's points/s and own p99.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trials_points_per_second: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trials_p99_ms: Vec<f64>,
    /// CPU per acknowledged point in the kept trial, from its first write until every replica
    /// had confirmed the whole log: the load generator (`bench_us`) and the router, primary and
    /// replica processes (`processes_us`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuUse>,
}

impl Row {
    pub fn label(&self) -> String {
        match self.acks {
            Some(acks) => format!("{}(acks={acks})", self.mode),
            None => self.mode.clone(),
        }
    }

    /// The worst replica's lag p99 in milliseconds.
    pub fn lag_p99_ms(&self) -> Option<f64> {
        self.replicas.iter().map(|r| r.lag_ms.p99).reduce(f64::max)
    }
}

/// How far one replica was behind its primary while the writers ran, sampled every
/// `lag_interval_ms` from the primary's `GET /v1/shards/{name}` (`replication.replicas`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplicaLag {
    pub node: String,
    pub samples: usize,
    /// `lag_seconds` in ms: how long the oldest record the replica had not confirmed had been
    /// waiting (0 when caught up).
    pub lag_ms: Summary,
    /// `lag_records`: log records (one per upsert request) the primary held beyond the
    /// replica's confirmed LSN.
    pub lag_records: Summary,
    /// Samples in which the primary's stream to it was not `streaming`.
    pub not_streaming: usize,
    /// From the last acknowledged write to the first look at the primary that showed this
    /// replica had confirmed the whole log (absent if it had not after 10 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up_ms: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Summary {
            p50: percentile(&values, 50.0),
            p99: percentile(&values, 99.0),
            max: values.last().copied().unwrap_or(0.0),
        }
    }
}

/// The value at `p` percent of sorted `values` (nearest rank), 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * p / 100.0) as usize).min(sorted.len() - 1);
    sorted[rank]
}

/// One target checked at one replication factor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetCheck {
    pub target: String,
    pub replication_factor: u32,
    /// What was measured, in words with numbers.
    pub measured: String,
    pub met: bool,
}

/// The JSON document `--out` receives.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplicationReport {
    pub tool: String,
    pub version: String,
    pub created_unix: u64,
    pub git_commit: String,
    pub machine: Machine,
    pub params: ReplicationParams,
    pub rows: Vec<Row>,
    pub targets: Vec<TargetCheck>,
}

impl ReplicationReport {
    fn find(&self, rf: u32, mode: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.replication_factor == rf && r.mode == mode)
    }

    /// Checks the targets at every replication factor above 1 that has the rows they need.
    pub fn evaluate(&mut self) {
        let mut rfs: Vec<u32> =
            self.rows.iter().map(|r| r.replication_factor).filter(|&rf| rf > 1).collect();
        rfs.sort_unstable();
        rfs.dedup();
        let mut targets = Vec::new();
        for &rf in &rfs {
            if let (Some(a), Some(s)) = (self.find(rf, "async"), self.find(rf, "sync")) {
                targets.push(TargetCheck {
                    target: format!(
                        "sync p99 at most {TARGET_SYNC_OVER_ASYNC_P99_MS} ms above async p99"
                    ),
                    replication_factor: rf,
                    measured: format!(
                        "sync {:.2} ms, async {:.2} ms: {:+.2} ms",
                        s.p99_ms,
                        a.p99_ms,
                        s.p99_ms - a.p99_ms
                    ),
                    met: s.p99_ms <= a.p99_ms + TARGET_SYNC_OVER_ASYNC_P99_MS,
                });
            }
        }
        for &rf in &rfs {
            if let Some(lag) = self.find(rf, "async").and_then(Row::lag_p99_ms) {
                targets.push(TargetCheck {
                    target: format!("async replication lag p99 under {TARGET_ASYNC_LAG_P99_MS} ms"),
                    replication_factor: rf,
                    measured: format!("{lag:.1} ms (worst replica)"),
                    met: lag < TARGET_ASYNC_LAG_P99_MS,
                });
            }
        }
        self.targets = targets;
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// The human tables: writes per row, lag per replica, targets.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let p = &self.params;
        let _ = writeln!(
            out,
            "replication: {} shard nodes + 1 router on loopback, 1 shard; {} writers x {} points \
             x {} dims ({}), {} s per row (best of {}), fsync {}, lag read every {} ms",
            p.nodes,
            p.writers,
            p.batch,
            p.dimension,
            p.metric,
            p.seconds_per_row,
            p.repeat,
            p.fsync,
            p.lag_interval_ms
        );
        let _ = writeln!(out, "{}", self.machine.describe(&self.git_commit));
        let _ = writeln!(
            out,
            "\n{:>2} {:<17} {:>9} {:>8} {:>7} {:>7} {:>7} {:>8} {:>7} {:>7} {:>11}",
            "RF",
            "mode",
            "points/s",
            "writes/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "errors",
            "in-sync",
            "lag p99 ms"
        );
        for r in &self.rows {
            let in_sync = r.min_in_sync.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
            let lag = r.lag_p99_ms().map(|l| format!("{l:.1}")).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "{:>2} {:<17} {:>9.0} {:>8.0} {:>7.2} {:>7.2} {:>7.2} {:>8.2} {:>7} {:>7} {:>11}",
                r.replication_factor,
                r.label(),
                r.points_per_second,
                r.writes_per_second,
                r.p50_ms,
                r.p95_ms,
                r.p99_ms,
                r.max_ms,
                r.errors,
                in_sync,
                lag
            );
        }
        let _ = writeln!(
            out,
            "\nreplication lag per replica, as the primary reports it (ms: age of the oldest \
             unconfirmed record; rec: log records not confirmed, one per upsert)"
        );
        let _ = writeln!(
            out,
            "{:>2} {:<17} {:<7} {:>7} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>12}",
            "RF",
            "mode",
            "replica",
            "samples",
            "ms p50",
            "ms p99",
            "ms max",
            "rec p50",
            "rec p99",
            "rec max",
            "catch-up ms"
        );
        for r in &self.rows {
            for rep in &r.replicas {
                let catch_up =
                    rep.catch_up_ms.map(|c| format!("{c:.1}")).unwrap_or_else(|| ">10000".into());
                let _ = writeln!(
                    out,
                    "{:>2} {:<17} {:<7} {:>7} {:>8.1} {:>8.1} {:>8.1} {:>7.0} {:>7.0} {:>7.0} {:>12}",
                    r.replication_factor,
                    r.label(),
                    rep.node,
                    rep.samples,
                    rep.lag_ms.p50,
                    rep.lag_ms.p99,
                    rep.lag_ms.max,
                    rep.lag_records.p50,
                    rep.lag_records.p99,
                    rep.lag_records.max,
                    catch_up
                );
            }
        }
        if self.rows.iter().any(|r| r.cpu.is_some()) {
            let _ = writeln!(
                out,
                "\nCPU per point (us of user + system time, kept trial, first write to full \
                 catch-up; this process is the load generator)"
            );
            for r in &self.rows {
                if let Some(cpu) = &r.cpu {
                    let label = r.label();
                    let _ =
                        writeln!(out, "{:>2} {label:<17} {}", r.replication_factor, cpu.describe());
                }
            }
        }
        let _ = writeln!(out, "\ntargets");
        for t in &self.targets {
            let _ = writeln!(
                out,
                "  {:<48} RF={}  {:<40} {}",
                t.target,
                t.replication_factor,
                t.measured,
                if t.met { "met" } else { "NOT met" }
            );
        }
        let errors: u64 = self.rows.iter().map(|r| r.errors).sum();
        if errors > 0 {
            let _ = writeln!(out, "\n{errors} upserts failed; first errors by row:");
            for r in self.rows.iter().filter(|r| r.errors > 0) {
                let _ = writeln!(
                    out,
                    "  RF={} {}: {}",
                    r.replication_factor,
                    r.label(),
                    r.first_error.as_deref().unwrap_or("")
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(rf: u32, mode: &str, p99: f64, lag_p99: Option<f64>) -> Row {
        Row {
            replication_factor: rf,
            mode: mode.to_string(),
            acks: None,
            collection: String::new(),
            placement: Vec::new(),
            points_per_second: 0.0,
            writes_per_second: 0.0,
            latency_samples: 0,
            p50_ms: 0.0,
            p95_ms: 0.0,
            p99_ms: p99,
            max_ms: 0.0,
            writes: 0,
            errors: 0,
            first_error: None,
            seconds: 0.0,
            min_in_sync: None,
            replicas: lag_p99
                .map(|p99| ReplicaLag {
                    node: "n1".into(),
                    samples: 1,
                    lag_ms: Summary { p50: 0.0, p99, max: p99 },
                    lag_records: Summary::default(),
                    not_streaming: 0,
                    catch_up_ms: Some(1.0),
                })
                .into_iter()
                .collect(),
            trials_points_per_second: Vec::new(),
            trials_p99_ms: Vec::new(),
            cpu: (rf > 1).then(|| CpuUse {
                bench_us: 20.0,
                processes_us: [("primary".to_string(), 400.0), ("router".to_string(), 60.0)]
                    .into_iter()
                    .collect(),
                ..CpuUse::default()
            }),
        }
    }

    #[test]
    fn targets_and_percentiles() {
        let summary = Summary::of((1..=100).rev().map(f64::from).collect());
        assert_eq!((summary.p50, summary.p99, summary.max), (51.0, 100.0, 100.0));
        assert_eq!(Summary::of(Vec::new()).max, 0.0);
        let mut report = ReplicationReport {
            tool: String::new(),
            version: String::new(),
            created_unix: 0,
            git_commit: String::new(),
            machine: crate::report::machine(),
            params: ReplicationParams {
                nodes: 3,
                shard_count: 1,
                dimension: 4,
                metric: "cosine".into(),
                batch: 1,
                writers: 1,
                seconds_per_row: 1.0,
                repeat: 1,
                lag_interval_ms: 25,
                fsync: "always".into(),
                threads: 1,
                quick: true,
            },
            rows: vec![
                row(1, "async", 1.0, None),
                row(2, "async", 4.0, Some(20.0)),
                row(2, "sync", 6.5, Some(0.0)),
                row(3, "async", 4.0, Some(150.0)),
                row(3, "sync", 7.5, Some(0.0)),
            ],
            targets: Vec::new(),
        };
        report.evaluate();
        let met: Vec<(u32, bool)> =
            report.targets.iter().map(|t| (t.replication_factor, t.met)).collect();
        assert_eq!(met, vec![(2, true), (3, false), (2, true), (3, false)]);
        let table = report.table();
        assert!(table.contains("NOT met"));
        assert!(
            table.contains("total  480 = this process 20 + primary 400 + router 60"),
            "{table}"
        );
    }
}
