//! Every metric the shard node exports, declared in one place.
//!
//! Names follow `vdb_shard_<what>_<unit>`; per-shard series carry a `shard` label (the local
//! shard's name), whose cardinality is the number of shards hosted.

use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};
use vdb_common::metrics::{HttpMetrics, LATENCY_BUCKETS};

pub struct ShardMetrics {
    pub registry: Registry,
    pub http: std::sync::Arc<HttpMetrics>,
    pub points: IntGaugeVec,
    pub index_memory_bytes: IntGaugeVec,
    pub payload_bytes: IntGaugeVec,
    pub last_lsn: IntGaugeVec,
    pub wal_appends: IntCounterVec,
    pub wal_append_bytes: IntCounterVec,
    pub replication_batches: IntCounterVec,
    pub replication_pipelined: IntCounterVec,
    pub replica_snapshots: IntCounterVec,
    pub flow_control_waits: IntCounterVec,
    pub wal_fsync_seconds: Histogram,
    pub snapshot_seconds: Histogram,
    pub snapshot_size_bytes: IntGaugeVec,
    pub recovery_seconds: GaugeVec,
    pub search_seconds: HistogramVec,
    pub searches: IntCounterVec,
    pub inflight: IntGauge,
    pub rejected: IntCounter,
    pub ready: Gauge,
}

/// Registers `collector` and hands it back, so each metric is declared in one expression.
fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> prometheus::Result<C> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

impl ShardMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let http = std::sync::Arc::new(HttpMetrics::new("shard", &registry)?);
        let shard_gauge = |name: &str, help: &str| -> prometheus::Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["shard"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let shard_counter = |name: &str, help: &str| -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), &["shard"])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let histogram =
            |name: &str, help: &str, buckets: &[f64]| -> prometheus::Result<Histogram> {
                let h =
                    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let slow_buckets = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
        let m = ShardMetrics {
            points: shard_gauge("vdb_shard_points", "points stored per local shard")?,
            index_memory_bytes: shard_gauge(
                "vdb_shard_index_memory_bytes",
                "memory held by the HNSW index per local shard",
            )?,
            payload_bytes: shard_gauge(
                "vdb_shard_payload_bytes",
                "approximate bytes of payloads per local shard",
            )?,
            last_lsn: shard_gauge("vdb_shard_last_lsn", "last applied log sequence number")?,
            wal_appends: shard_counter(
                "vdb_shard_wal_appends_total",
                "records appended to the wal",
            )?,
            wal_append_bytes: shard_counter(
                "vdb_shard_wal_append_bytes_total",
                "bytes appended to the wal",
            )?,
            replication_batches: shard_counter(
                "vdb_shard_replication_batches_total",
                "batches of the log a primary sent to its replicas (empty check-ins included)",
            )?,
            replication_pipelined: shard_counter(
                "vdb_shard_replication_pipelined_batches_total",
                "batches of the log sent to a replica while another to it was in flight",
            )?,
            replica_snapshots: shard_counter(
                "vdb_shard_replica_snapshots_total",
                "snapshots a primary sent to a replica its log no longer reached back to (or that diverged)",
            )?,
            flow_control_waits: shard_counter(
                "vdb_shard_flow_control_waits_total",
                "writes held back before their answer because an in-sync replica lagged more than --flow-control-lag-ms",
            )?,
            wal_fsync_seconds: histogram(
                "vdb_shard_wal_fsync_duration_seconds",
                "time to fsync the wal",
                LATENCY_BUCKETS,
            )?,
            snapshot_seconds: histogram(
                "vdb_shard_snapshot_duration_seconds",
                "time to take a snapshot",
                &slow_buckets,
            )?,
            snapshot_size_bytes: shard_gauge(
                "vdb_shard_snapshot_size_bytes",
                "size of the latest snapshot",
            )?,
            recovery_seconds: register(
                &registry,
                GaugeVec::new(
                    Opts::new(
                        "vdb_shard_recovery_duration_seconds",
                        "time the last recovery (snapshot load + wal replay) took",
                    ),
                    &["shard"],
                )?,
            )?,
            search_seconds: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "vdb_shard_search_duration_seconds",
                        "time to execute one search, by plan",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["plan"],
                )?,
            )?,
            searches: register(
                &registry,
                IntCounterVec::new(
                    Opts::new("vdb_shard_searches_total", "searches executed, by plan"),
                    &["plan"],
                )?,
            )?,
            inflight: register(
                &registry,
                IntGauge::new(
                    "vdb_shard_inflight_operations",
                    "operations running or queued on the blocking pool",
                )?,
            )?,
            rejected: register(
                &registry,
                IntCounter::new(
                    "vdb_shard_rejected_requests_total",
                    "requests refused with 429 because the queue was full",
                )?,
            )?,
            ready: register(
                &registry,
                Gauge::new("vdb_shard_ready", "1 when every local shard has recovered")?,
            )?,
            http,
            registry,
        };
        Ok(m)
    }

    /// Drops the per-shard series of a dropped shard.
    pub fn forget_shard(&self, shard: &str) {
        for g in [
            &self.points,
            &self.index_memory_bytes,
            &self.payload_bytes,
            &self.last_lsn,
            &self.snapshot_size_bytes,
        ] {
            let _ = g.remove_label_values(&[shard]);
        }
        let _ = self.wal_appends.remove_label_values(&[shard]);
        let _ = self.wal_append_bytes.remove_label_values(&[shard]);
        let _ = self.replication_batches.remove_label_values(&[shard]);
        let _ = self.replication_pipelined.remove_label_values(&[shard]);
        let _ = self.replica_snapshots.remove_label_values(&[shard]);
        let _ = self.flow_control_waits.remove_label_values(&[shard]);
        let _ = self.recovery_seconds.remove_label_values(&[shard]);
    }
}
