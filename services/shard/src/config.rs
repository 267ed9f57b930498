//! The shard node's configuration: every flag is also a `VDB_*` environment variable.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use vdb_wal::FsyncPolicy;

#[derive(Parser, Clone, Debug)]
#[command(name = "vdb-shard", version, about = "VDB shard node: local shards on USearch HNSW")]
pub struct Config {
    /// Address to listen on (port 0 picks a free port; the bound address is printed first on
    /// stdout as {"listening": "..."}).
    #[arg(long, env = "VDB_LISTEN", default_value = "127.0.0.1:6334")]
    pub listen: SocketAddr,

    /// Directory holding the local shards (config, WAL, snapshots).
    #[arg(long, env = "VDB_SHARD_DATA_DIR", default_value = "./vdb-data/shard")]
    pub data_dir: PathBuf,

    /// This node's id in status reports (defaults to the listen address).
    #[arg(long, env = "VDB_NODE_ID")]
    pub node_id: Option<String>,

    /// When the WAL is fsynced: `always` (before every acknowledgement), `<N>ms` (group
    /// commit every N milliseconds: a crash loses at most that window), or `never`.
    #[arg(long, env = "VDB_FSYNC", default_value = "always", value_parser = parse_fsync)]
    pub fsync: FsyncPolicy,

    /// Take a snapshot after this many WAL records (0 = only on request).
    #[arg(long, env = "VDB_SNAPSHOT_EVERY", default_value_t = 10_000)]
    pub snapshot_every: u64,

    /// Size at which a WAL segment is closed and a new one started.
    #[arg(long, env = "VDB_WAL_SEGMENT_BYTES", default_value_t = 64 << 20)]
    pub wal_segment_bytes: u64,

    /// Largest request body accepted (413 above it).
    #[arg(long, env = "VDB_MAX_BODY_BYTES", default_value_t = 32 << 20)]
    pub max_body_bytes: usize,

    /// Writes and other blocking operations (not reads) executing at once; defaults to twice
    /// the cores.
    #[arg(long, env = "VDB_MAX_CONCURRENCY")]
    pub max_concurrency: Option<usize>,

    /// Threads serving reads (search, get, count, scroll); defaults to one more than the
    /// cores. Each takes the next queued read as soon as it is done with one.
    #[arg(long, env = "VDB_SEARCH_THREADS")]
    pub search_threads: Option<usize>,

    /// Threads of the async runtime (HTTP and JSON only; index work runs on the read, insert
    /// and blocking threads); defaults to a quarter of the cores, at least one.
    #[arg(long, env = "VDB_HTTP_THREADS")]
    pub http_threads: Option<usize>,

    /// Reads, and other operations, allowed to wait for a thread; beyond this requests get 429.
    #[arg(long, env = "VDB_MAX_QUEUE", default_value_t = 1024)]
    pub max_queue: usize,

    /// Threads inserting one batch into the HNSW index; defaults to the cores.
    #[arg(long, env = "VDB_INSERT_THREADS")]
    pub insert_threads: Option<usize>,

    /// Filtered searches expected to match at most this many points run exactly (brute
    /// force over the matches); broader ones use filtered HNSW.
    #[arg(long, env = "VDB_EXACT_THRESHOLD", default_value_t = 10_000)]
    pub exact_threshold: u64,

    /// Batches of the log a primary keeps in flight to each replica (1 = send the next batch
    /// only once the previous one was confirmed).
    #[arg(long, env = "VDB_REPLICATION_WINDOW", default_value_t = 4,
        value_parser = clap::value_parser!(u64).range(1..=64))]
    pub replication_window: u64,

    /// Bytes of the latest log records each primary shard keeps in memory for its replicas;
    /// a replica further behind is sent older records from the WAL files while they last
    /// (snapshots truncate them), then a snapshot.
    #[arg(long, env = "VDB_REPLICATION_MEMORY_BYTES", default_value_t = 32 << 20)]
    pub replication_memory_bytes: u64,

    /// Flow control: a primary holds back the answer to a write while an in-sync replica's
    /// oldest unconfirmed record is older than this, so writers slow down to the pace of their
    /// replicas and `async` replicas stay this close (0 turns it off).
    #[arg(long, env = "VDB_FLOW_CONTROL_LAG_MS", default_value_t = 50)]
    pub flow_control_lag_ms: u64,

    /// The longest flow control holds back one write.
    #[arg(long, env = "VDB_FLOW_CONTROL_MAX_WAIT_MS", default_value_t = 100)]
    pub flow_control_max_wait_ms: u64,

    /// Log JSON lines instead of text.
    #[arg(long, env = "VDB_LOG_JSON")]
    pub log_json: bool,

    /// Seconds to let in-flight requests finish after SIGTERM.
    #[arg(long, env = "VDB_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
}

impl Config {
    pub fn cores() -> usize {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
    }

    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency.unwrap_or(2 * Self::cores()).max(1)
    }

    /// One more than the cores: the HTTP thread and clients on the same machine preempt read
    /// threads all the time, and a spare runnable one keeps a core from idling meanwhile
    /// (measured in `docs/benchmarks.md`).
    pub fn search_threads(&self) -> usize {
        self.search_threads.unwrap_or(Self::cores() + 1).max(1)
    }

    /// Few async threads: they only parse and answer, and fewer of them wake each other less
    /// (each wake-up is a context switch on a core that is searching).
    pub fn http_threads(&self) -> usize {
        self.http_threads.unwrap_or(Self::cores() / 4).max(1)
    }

    pub fn insert_threads(&self) -> usize {
        self.insert_threads.unwrap_or(Self::cores()).max(1)
    }
}

/// Parses `always`, `never` or `<N>ms`.
pub fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    match s {
        "always" => Ok(FsyncPolicy::Always),
        "never" => Ok(FsyncPolicy::Never),
        _ => s
            .strip_suffix("ms")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&n| n > 0)
            .map(|n| FsyncPolicy::Interval(Duration::from_millis(n)))
            .ok_or_else(|| format!("fsync must be always, never or <N>ms (e.g. 10ms), got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policies_parse() {
        assert!(matches!(parse_fsync("always"), Ok(FsyncPolicy::Always)));
        assert!(matches!(parse_fsync("never"), Ok(FsyncPolicy::Never)));
        assert!(
            matches!(parse_fsync("25ms"), Ok(FsyncPolicy::Interval(d)) if d == Duration::from_millis(25))
        );
        assert!(parse_fsync("0ms").is_err() && parse_fsync("soon").is_err());
    }
}
