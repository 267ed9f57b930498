//! The results of `vdb-bench router`: the sides measured, the router overhead, the check
//! against the targets, the human table, the JSON document and the comparison with a
//! previous run.

use crate::report::{Machine, Params, Rate, SearchRun};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
/// One side of the comparison: raw USearch, the shard node directly, or the router over S.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Side {
    /// `raw`, `direct` or `router`.
    pub kind: String,
    /// Shards behind the router (1 for `direct`, absent for `raw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
    /// Raw: the build rate; router: the ingest rate through the router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<Rate>,
    /// Throughput: `--connections` connections (raw: `threads` threads), closed loop.
    pub loaded: Vec<SearchRun>,
    /// Single-query latency: one connection (raw: one thread), one query at a time.
    pub single: Vec<SearchRun>,
}

impl Side {
    fn label(&self) -> String {
        match (self.kind.as_str(), self.shards) {
            ("router", Some(s)) => format!("router S={s}"),
            (kind, _) => kind.to_string(),
        }
    }

    fn at(&self, ef: usize) -> Option<(&SearchRun, &SearchRun)> {
        let single = self.single.iter().find(|r| r.ef == ef)?;
        Some((single, self.loaded.iter().find(|r| r.ef == ef)?))
    }
}

/// The targets, checked on the largest fleet at the smallest ef reaching the recall.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Targets {
    pub shards: usize,
    pub ef: usize,
    pub recall_at_10: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub overhead_p50_ms: Option<f64>,
    pub recall_met: bool,
    pub p50_met: bool,
    pub p99_met: bool,
    pub overhead_met: Option<bool>,
}

const TARGET_RECALL: f64 = 0.95;
const TARGET_P50_MS: f64 = 2.0;
const TARGET_P99_MS: f64 = 10.0;
const TARGET_OVERHEAD_MS: f64 = 0.3;

/// The JSON document `--out` receives and `--compare` reads back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RouterReport {
    pub tool: String,
    pub version: String,
    pub created_unix: u64,
    pub git_commit: String,
    pub machine: Machine,
    pub params: Params,
    pub shards: Vec<usize>,
    pub simd: String,
    pub sides: Vec<Side>,
    /// `ef` → router S=1 p50 minus direct p50, both at one connection.
    pub overhead_p50_ms: BTreeMap<usize, f64>,
    pub targets: Option<Targets>,
}

impl RouterReport {
    fn find(&self, kind: &str, shards: Option<usize>) -> Option<&Side> {
        self.sides.iter().find(|s| s.kind == kind && (shards.is_none() || s.shards == shards))
    }

    /// Fills in the router overhead per ef and the target check.
    pub fn evaluate(&mut self) {
        if let (Some(direct), Some(one)) = (self.find("direct", None), self.find("router", Some(1)))
        {
            self.overhead_p50_ms = self
                .params
                .efs
                .iter()
                .filter_map(|&ef| Some((ef, one.at(ef)?.0.p50_ms - direct.at(ef)?.0.p50_ms)))
                .collect();
        }
        let largest = self.shards.iter().max().copied();
        let Some(side) = largest.and_then(|s| self.find("router", Some(s))) else { return };
        // The smallest ef reaching the recall target, else the one with the best recall.
        let mut runs: Vec<&SearchRun> = side.single.iter().collect();
        runs.sort_by_key(|r| r.ef);
        let Some(run) = runs
            .iter()
            .find(|r| r.recall_at_10 >= TARGET_RECALL)
            .or_else(|| runs.iter().max_by(|a, b| a.recall_at_10.total_cmp(&b.recall_at_10)))
        else {
            return;
        };
        let overhead = self.overhead_p50_ms.get(&run.ef).copied();
        self.targets = Some(Targets {
            shards: side.shards.unwrap_or(0),
            ef: run.ef,
            recall_at_10: run.recall_at_10,
            p50_ms: run.p50_ms,
            p99_ms: run.p99_ms,
            overhead_p50_ms: overhead,
            recall_met: run.recall_at_10 >= TARGET_RECALL,
            p50_met: run.p50_ms <= TARGET_P50_MS,
            p99_met: run.p99_ms <= TARGET_P99_MS,
            overhead_met: overhead.map(|o| o <= TARGET_OVERHEAD_MS),
        });
    }

    /// Every (ef, side) pair, by ef then side.
    fn rows(&self) -> Vec<(usize, &Side, &SearchRun, &SearchRun)> {
        let mut rows = Vec::new();
        for &ef in &self.params.efs {
            for side in &self.sides {
                if let Some((single, loaded)) = side.at(ef) {
                    rows.push((ef, side, single, loaded));
                }
            }
        }
        rows
    }

    /// The human table: load rates, then per ef one row per side, then overhead and targets.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let (p, m) = (&self.params, &self.machine);
        let _ = writeln!(
            out,
            "debian-minilm: {} docs x {} dims, {} queries, M={} ef_construction={}, fsync {}, \
             {} s per measurement (best of {}); shards {:?}, one node each",
            p.docs,
            p.dimension,
            p.queries,
            p.m,
            p.ef_construction,
            p.fsync,
            p.seconds_per_ef,
            p.repeat,
            self.shards
        );
        let _ = writeln!(
            out,
            "{} cores ({}) shared by every node, the router and the load generator; load \
             average {:?} at start, {:?} at end, commit {}",
            m.cores, m.cpu_model, m.load_average, m.load_average_end, self.git_commit
        );
        let _ = writeln!(out, "\n{:<14} {:>10} {:>9}", "load", "vectors/s", "seconds");
        for side in &self.sides {
            if let Some(rate) = &side.load {
                let what =
                    if side.kind == "raw" { "raw (build)".to_string() } else { side.label() };
                let _ = writeln!(
                    out,
                    "{what:<14} {:>10.0} {:>9.2}",
                    rate.vectors_per_second, rate.seconds
                );
            }
        }
        let _ = writeln!(
            out,
            "\n{:<30} | {:<26} | throughput: {} connections (raw: {} threads)",
            "", "latency: 1 connection", p.connections, p.threads
        );
        let _ = writeln!(
            out,
            "{:<5} {:<14} {:>9} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8}",
            "ef", "side", "recall@10", "p50 ms", "p95 ms", "p99 ms", "QPS", "p50 ms", "p99 ms"
        );
        for (ef, side, single, loaded) in self.rows() {
            let errors = single.errors + loaded.errors;
            let _ = writeln!(
                out,
                "{:<5} {:<14} {:>9.4} | {:>8.3} {:>8.3} {:>8.3} | {:>8.0} {:>8.3} {:>8.3}{}",
                ef,
                side.label(),
                single.recall_at_10,
                single.p50_ms,
                single.p95_ms,
                single.p99_ms,
                loaded.qps,
                loaded.p50_ms,
                loaded.p99_ms,
                if errors > 0 { format!(" ({errors} errors)") } else { String::new() }
            );
        }
        let cpu_rows: Vec<_> = self
            .rows()
            .into_iter()
            .filter_map(|(ef, side, _, loaded)| Some((ef, side.label(), loaded.cpu.as_ref()?)))
            .collect();
        if !cpu_rows.is_empty() {
            let _ = writeln!(
                out,
                "\nCPU per search at {} connections (us of user + system time, best trial): this \
                 process is raw USearch or the load generator",
                p.connections
            );
            for (ef, side, cpu) in cpu_rows {
                let _ = writeln!(out, "{ef:<5} {side:<14} {}", cpu.describe());
            }
        }
        if !self.overhead_p50_ms.is_empty() {
            let per_ef: Vec<String> =
                self.overhead_p50_ms.iter().map(|(ef, o)| format!("ef {ef}: {o:+.3}")).collect();
            let _ = writeln!(
                out,
                "\nrouter overhead, p50 at 1 connection (router S=1 minus direct), ms: {}",
                per_ef.join(", ")
            );
        }
        if let Some(t) = &self.targets {
            let mark = |met: bool| if met { "met" } else { "MISSED" };
            let _ = writeln!(
                out,
                "targets, router S={} at ef {} (smallest ef with recall@10 >= {TARGET_RECALL}), \
                 1 connection: recall {:.4} {}; p50 {:.3} ms <= {TARGET_P50_MS} {}; p99 {:.3} \
                 ms <= {TARGET_P99_MS} {}; overhead {}",
                t.shards,
                t.ef,
                t.recall_at_10,
                mark(t.recall_met),
                t.p50_ms,
                mark(t.p50_met),
                t.p99_ms,
                mark(t.p99_met),
                match (t.overhead_p50_ms, t.overhead_met) {
                    (Some(o), Some(met)) =>
                        format!("{o:.3} ms <= {TARGET_OVERHEAD_MS} {}", mark(met)),
                    _ => "not measured (no S=1)".to_string(),
                }
            );
        }
        out
    }

    /// This run next to `old`: recall, 1-connection p50 and QPS, with changes in percent.
    pub fn compare(&self, old: &RouterReport, old_name: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "compared with {old_name} (commit {}, {} docs, {} s per measurement):",
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
        let _ = writeln!(
            out,
            "\n{:<5} {:<14} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "ef",
            "side",
            "old rec",
            "new rec",
            "old p50",
            "new p50",
            "delta",
            "old QPS",
            "new QPS",
            "delta"
        );
        let old_rows = old.rows();
        for (ef, side, single, loaded) in self.rows() {
            let Some((_, _, o_single, o_loaded)) = old_rows
                .iter()
                .find(|(e, s, _, _)| *e == ef && s.kind == side.kind && s.shards == side.shards)
            else {
                continue;
            };
            let _ = writeln!(
                out,
                "{:<5} {:<14} {:>8.4} {:>8.4} {:>8.3} {:>8.3} {:>8} {:>8.0} {:>8.0} {:>8}",
                ef,
                side.label(),
                o_single.recall_at_10,
                single.recall_at_10,
                o_single.p50_ms,
                single.p50_ms,
                delta(single.p50_ms, o_single.p50_ms),
                o_loaded.qps,
                loaded.qps,
                delta(loaded.qps, o_loaded.qps)
            );
        }
        out
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ef: usize, recall: f64, p50: f64, p99: f64) -> SearchRun {
        SearchRun {
            ef,
            recall_at_10: recall,
            qps: 1000.0,
            p50_ms: p50,
            p95_ms: p99,
            p99_ms: p99,
            completed: 1000,
            errors: 0,
            plans: BTreeMap::new(),
            trials_qps: Vec::new(),
            cpu: None,
        }
    }

    fn side(kind: &str, shards: Option<usize>, single: Vec<SearchRun>) -> Side {
        Side { kind: kind.into(), shards, load: None, loaded: single.clone(), single }
    }

    #[test]
    fn targets_use_the_smallest_ef_reaching_the_recall() {
        let mut report = RouterReport {
            tool: "vdb-bench router".into(),
            version: "0".into(),
            created_unix: 0,
            git_commit: "x".into(),
            machine: crate::report::machine(),
            params: serde_json::from_value(serde_json::json!({
                "dataset": "d", "docs": 10, "queries": 2, "dimension": 4, "metric": "cosine",
                "scalar": "f32", "m": 16, "ef_construction": 128, "efs": [16, 64], "k": 10,
                "threads": 2, "seconds_per_ef": 1.0, "batch": 1, "ingest_concurrency": 1,
                "connections": 8, "fsync": "never", "quick": true
            }))
            .unwrap(),
            shards: vec![1, 4],
            simd: String::new(),
            sides: vec![
                side("direct", Some(1), vec![run(16, 0.9, 0.5, 1.0), run(64, 0.96, 1.0, 2.0)]),
                side("router", Some(1), vec![run(16, 0.9, 0.7, 1.0), run(64, 0.96, 1.5, 2.0)]),
                side("router", Some(4), vec![run(16, 0.94, 1.0, 3.0), run(64, 0.99, 2.5, 4.0)]),
            ],
            overhead_p50_ms: BTreeMap::new(),
            targets: None,
        };
        report.evaluate();
        assert!((report.overhead_p50_ms[&16] - 0.2).abs() < 1e-9);
        assert!((report.overhead_p50_ms[&64] - 0.5).abs() < 1e-9);
        let t = report.targets.clone().unwrap();
        assert_eq!((t.shards, t.ef), (4, 64));
        assert!(t.recall_met && !t.p50_met && t.p99_met);
        assert_eq!(t.overhead_met, Some(false));
        let table = report.table();
        assert!(table.contains("router S=4") && table.contains("MISSED"), "{table}");
        let back: RouterReport =
            serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
        assert_eq!(back.sides.len(), 3);
        assert!(report.compare(&back, "old").contains("+0.0%"));
    }
}
