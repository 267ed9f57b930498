//! Every metric the router exports, declared in one place (`vdb_router_<what>_<unit>`).

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};
use std::sync::Arc;
use vdb_common::metrics::{register, HttpMetrics};

pub struct Metrics {
    pub registry: Registry,
    pub http: Arc<HttpMetrics>,
    pub searches: IntCounter,
    pub shard_errors: IntCounterVec,
    pub write_retries: IntCounter,
    pub read_retries: IntCounter,
    pub controller: IntGauge,
    pub node_up: IntGaugeVec,
    pub imbalance: GaugeVec,
    pub auto_reshards: IntCounter,
    pub reshard_seconds: Histogram,
    pub write_block_seconds: Histogram,
    pub failovers: IntCounter,
    pub failover_seconds: Histogram,
    pub handovers: IntCounter,
    pub embed_calls: IntCounterVec,
    pub embed_texts: IntCounterVec,
    pub embed_seconds: HistogramVec,
    pub embed_errors: IntCounterVec,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let r = &registry;
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            register(
                r,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?,
            )
        };
        Ok(Metrics {
            http: Arc::new(HttpMetrics::new("router", r)?),
            searches: register(r, IntCounter::new("vdb_router_searches_total", "Searches served (each query of a batch counts)")?)?,
            shard_errors: register(r, IntCounterVec::new(
                Opts::new("vdb_router_shard_errors_total", "Failed router → shard calls by node"),
                &["node"],
            )?)?,
            write_retries: register(r, IntCounter::new(
                "vdb_router_write_retries_total",
                "Parts of writes sent again (shard handing off points, stale map, node unreachable)",
            )?)?,
            read_retries: register(r, IntCounter::new(
                "vdb_router_read_retries_total",
                "Reads run again with a fresh map because a shard said theirs was outdated (a cut-over raced them)",
            )?)?,
            controller: register(r, IntGauge::new("vdb_router_controller", "1 while this router is the elected controller")?)?,
            node_up: register(r, IntGaugeVec::new(
                Opts::new("vdb_router_node_up", "1 when the node passes health checks (controller only)"),
                &["node"],
            )?)?,
            imbalance: register(r, GaugeVec::new(
                Opts::new("vdb_router_collection_imbalance_ratio", "Largest shard's points over the mean (controller only)"),
                &["collection"],
            )?)?,
            auto_reshards: register(r, IntCounter::new(
                "vdb_router_auto_reshards_total",
                "Shards added because a collection was imbalanced",
            )?)?,
            reshard_seconds: histogram(
                "vdb_router_reshard_duration_seconds",
                "Duration of whole reshardings",
                &[1.0, 5.0, 15.0, 60.0, 300.0, 1800.0],
            )?,
            write_block_seconds: histogram(
                "vdb_router_reshard_write_block_seconds",
                "How long writes to moving points waited at one source's cut-over",
                &[0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0],
            )?,
            failovers: register(r, IntCounter::new(
                "vdb_router_failovers_total",
                "Replicas promoted because their primary's node was down (controller only)",
            )?)?,
            failover_seconds: histogram(
                "vdb_router_failover_seconds",
                "From the first failed lease renewal to the new primary's assignment",
                &[0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0],
            )?,
            handovers: register(r, IntCounter::new(
                "vdb_router_handovers_total",
                "Primary roles handed to an in-sync replica by a planned move (controller only)",
            )?)?,
            embed_calls: register(r, IntCounterVec::new(
                Opts::new("vdb_router_embed_calls_total", "Router → embedder calls that embed texts, by model"),
                &["model"],
            )?)?,
            embed_texts: register(r, IntCounterVec::new(
                Opts::new("vdb_router_embed_texts_total", "Texts sent to be embedded, by model"),
                &["model"],
            )?)?,
            embed_seconds: register(r, HistogramVec::new(
                HistogramOpts::new("vdb_router_embed_duration_seconds", "Duration of successful router → embedder calls, by model")
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                &["model"],
            )?)?,
            embed_errors: register(r, IntCounterVec::new(
                Opts::new(
                    "vdb_router_embed_errors_total",
                    "Failed router → embedder calls by model and reason (unavailable, timeout, failed, refused, overloaded, bad_request, wrong_model, wrong_dimension)",
                ),
                &["model", "reason"],
            )?)?,
            registry,
        })
    }
}
