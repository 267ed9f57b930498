//! Where a timed loop's CPU went: this process (the load generator, or raw USearch), the shard
//! node by thread group or every process of a fleet by its role, and how busy the machine was,
//! read from `/proc` before and after.
//!
//! The benchmark's QPS ratio is a CPU budget split between parties on the same cores: per
//! search, the node's read threads, its HTTP threads and the client each take some. Reporting
//! those microseconds next to raw USearch's shows what a gap is made of, not only its size.
//! Linux only; elsewhere (or for a node on another machine) the figures are simply absent.

use crate::report::Timed;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;

/// CPU time per completed operation (a search, an upserted point), in microseconds of user +
/// system time.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuUse {
    /// This process: the load generator's runtime, or raw USearch's search threads.
    pub bench_us: f64,
    /// The shard node by thread name without its number (`vdb-read`, `tokio-rt-worker`, ...);
    /// empty for raw USearch or a node whose process was not found.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_us: BTreeMap<String, f64>,
    /// Whole processes (every thread, ended ones too) by their role in a fleet: `router`,
    /// `primary`, `replica 1`, ...
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub processes_us: BTreeMap<String, f64>,
    /// Share of the machine's CPU time that was busy (any process), in percent.
    pub machine_busy_percent: f64,
}

impl CpuUse {
    pub fn total_us(&self) -> f64 {
        self.bench_us + self.node_us.values().chain(self.processes_us.values()).sum::<f64>()
    }

    /// `total 385 = this process 36 + vdb-read 291 + tokio-rt-worker 58; machine 97% busy`.
    pub fn describe(&self) -> String {
        let mut parts =
            format!("total {:>4.0} = this process {:.0}", self.total_us(), self.bench_us);
        for (part, us) in self.node_us.iter().chain(&self.processes_us) {
            parts += &format!(" + {part} {us:.0}");
        }
        format!("{parts}; machine {:.0}% busy", self.machine_busy_percent)
    }
}

/// Clock ticks read at one moment.
pub struct Sample {
    own: u64,
    node: BTreeMap<String, u64>,
    processes: BTreeMap<String, u64>,
    machine: Option<(u64, u64)>,
}

/// Reads this process's CPU time, `node`'s per thread group, each of `processes` (role, pid)
/// whole, and the machine's busy/total.
pub fn sample(node: Option<u32>, processes: &[(String, u32)]) -> Sample {
    let process = |pid: u32| ticks(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?);
    Sample {
        own: fs::read_to_string("/proc/self/stat").ok().and_then(|s| ticks(&s)).unwrap_or(0),
        node: node.map(thread_groups).unwrap_or_default(),
        processes: processes
            .iter()
            .filter_map(|(role, pid)| Some((role.clone(), process(*pid)?)))
            .collect(),
        machine: fs::read_to_string("/proc/stat").ok().and_then(|s| machine(&s)),
    }
}

impl Sample {
    /// What was spent between `self` and `later`, per operation over `operations`.
    pub fn per_op(&self, later: &Sample, operations: u64) -> Option<CpuUse> {
        let (Some(before), Some(after)) = (self.machine, later.machine) else { return None };
        if operations == 0 || after.1 <= before.1 {
            return None;
        }
        let us = |ticks: u64| ticks as f64 * 1e6 / USER_HZ / operations as f64;
        // A thread or process absent before started during the loop and counts from zero.
        let spent = |before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>| {
            after
                .iter()
                .map(|(part, &t)| {
                    (part.clone(), us(t.saturating_sub(*before.get(part).unwrap_or(&0))))
                })
                .filter(|&(_, v)| v > 0.0)
                .collect()
        };
        Some(CpuUse {
            bench_us: us(later.own.saturating_sub(self.own)),
            node_us: spent(&self.node, &later.node),
            processes_us: spent(&self.processes, &later.processes),
            machine_busy_percent: 100.0 * (after.0 - before.0) as f64 / (after.1 - before.1) as f64,
        })
    }
}

/// Runs one timed loop and records what it cost per search: this process's CPU, `node`'s by
/// thread group and each of `processes` whole.
pub fn with_cpu(
    node: Option<u32>,
    processes: &[(String, u32)],
    trial: impl FnOnce() -> anyhow::Result<Timed>,
) -> anyhow::Result<Timed> {
    let before = sample(node, processes);
    let mut timed = trial()?;
    timed.cpu = before.per_op(&sample(node, processes), timed.log.len() as u64);
    Ok(timed)
}

/// Clock ticks per second in `/proc` times (USER_HZ: 100 on every architecture Linux runs the
/// project on).
const USER_HZ: f64 = 100.0;

/// utime + stime from a `/proc/.../stat` line (fields 14 and 15, after the parenthesised name).
fn ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    Some(fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?)
}

/// The thread's name, from between the parentheses of its stat line.
fn name(stat: &str) -> Option<&str> {
    Some(&stat[stat.find('(')? + 1..stat.rfind(')')?])
}

/// A thread name without the number that tells pool members apart: `vdb-read-2` → `vdb-read`.
fn group(name: &str) -> &str {
    name.trim_end_matches(|c: char| c.is_ascii_digit()).trim_end_matches('-')
}

/// CPU ticks of `pid`'s live threads, summed by group.
fn thread_groups(pid: u32) -> BTreeMap<String, u64> {
    let mut groups = BTreeMap::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return groups };
    for task in tasks.flatten() {
        let Ok(stat) = fs::read_to_string(task.path().join("stat")) else { continue };
        if let (Some(name), Some(t)) = (name(&stat), ticks(&stat)) {
            *groups.entry(group(name).to_string()).or_insert(0) += t;
        }
    }
    groups
}

/// (busy, total) ticks of all CPUs from `/proc/stat`'s first line; idle and iowait are idle.
fn machine(stat: &str) -> Option<(u64, u64)> {
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

/// The process listening on TCP `port` of this machine, if there is one we may look at:
/// the socket's inode from `/proc/net/tcp{,6}`, then the process holding it among `/proc/*/fd`.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|table| {
        let text = fs::read_to_string(table).ok()?;
        text.lines().skip(1).find_map(|line| listening_inode(line, port))
    })?;
    let target = format!("socket:[{inode}]");
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let fds = fs::read_dir(entry.path().join("fd")).ok()?;
        fds.flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l.to_str() == Some(&target)))
            .then_some(pid)
    })
}

/// The inode of a `/proc/net/tcp` row that listens (state 0A) on `port`.
fn listening_inode(line: &str, port: u16) -> Option<u64> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local_port = u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
    if local_port != port || *fields.get(3)? != "0A" {
        return None;
    }
    fields.get(9)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stat_lines() {
        // A thread name may hold spaces and parentheses; fields count from the last ')'.
        let line = "4242 (tokio (rt) 1) S 1 2 3 4 5 6 7 8 9 10 250 37 0 0 20 0 1 0";
        assert_eq!(name(line), Some("tokio (rt) 1"));
        assert_eq!(ticks(line), Some(287));
        assert_eq!(group("vdb-read-12"), "vdb-read");
        assert_eq!(group("tokio-rt-worker"), "tokio-rt-worker");
        assert_eq!(machine("cpu  10 0 5 80 5 0 0 0 0 0\ncpu0 1 2"), Some((15, 100)));
    }

    #[test]
    fn finds_listening_sockets() {
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
        let listen = "   0: 0100007F:1BBD 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 98765 1";
        let connected = "   1: 0100007F:1BBD 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 12345 1";
        assert_eq!(listening_inode(listen, 7101), Some(98765));
        assert_eq!(listening_inode(connected, 7101), None);
        assert_eq!(listening_inode(listen, 7102), None);
        assert_eq!(listening_inode(header, 7101), None);
    }

    #[test]
    fn finds_its_own_listener_and_counts_its_cpu() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(pid_listening_on(port), Some(std::process::id()));
        let me = std::process::id();
        let before = sample(Some(me), &[("itself".to_string(), me)]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
        let mut x = 0u64;
        while std::time::Instant::now() < deadline {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        let used = before.per_op(&sample(Some(me), &[("itself".to_string(), me)]), 1).unwrap();
        // ~200 ms of spinning, at 10-ms tick resolution.
        assert!((100_000.0..1_000_000.0).contains(&used.bench_us), "{used:?}");
        assert!(used.node_us.values().sum::<f64>() >= 100_000.0, "{used:?}");
        assert!(used.processes_us["itself"] >= 100_000.0, "{used:?}");
    }
}
