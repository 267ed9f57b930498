//! Every metric the embedder exports, declared in one place (`vdb_embedder_<what>_<unit>`).
//! HTTP request counts and latencies come from the shared middleware.

use prometheus::core::Collector;
use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use vdb_common::metrics::{HttpMetrics, LATENCY_BUCKETS};

pub struct EmbedderMetrics {
    pub registry: Registry,
    pub http: std::sync::Arc<HttpMetrics>,
    pub texts: IntCounterVec,
    pub tokens: IntCounter,
    pub padding_tokens: IntCounter,
    pub batch_size: Histogram,
    pub batch_tokens: Histogram,
    pub tokenize_seconds: Histogram,
    pub queue_seconds: Histogram,
    pub inference_seconds: Histogram,
    pub queue_texts: IntGauge,
    pub rejected: IntCounterVec,
    pub cancelled: IntCounter,
    pub batches_failed: IntCounter,
    pub ready: Gauge,
}

fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> prometheus::Result<C> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

impl EmbedderMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let http = std::sync::Arc::new(HttpMetrics::new("embedder", &registry)?);
        let r = &registry;
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            register(
                r,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?,
            )
        };
        let sizes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
        let tokens = [64.0, 256.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0];
        Ok(EmbedderMetrics {
            texts: register(
                r,
                IntCounterVec::new(
                    Opts::new("vdb_embedder_texts_total", "texts embedded, by endpoint"),
                    &["endpoint"],
                )?,
            )?,
            tokens: register(
                r,
                IntCounter::new("vdb_embedder_tokens_total", "input tokens run through the model")?,
            )?,
            padding_tokens: register(
                r,
                IntCounter::new(
                    "vdb_embedder_padding_tokens_total",
                    "padding tokens run through the model (wasted work)",
                )?,
            )?,
            batch_size: histogram("vdb_embedder_batch_size", "inputs per batch", &sizes)?,
            batch_tokens: histogram(
                "vdb_embedder_batch_tokens",
                "padded tokens per batch (inputs x longest)",
                &tokens,
            )?,
            tokenize_seconds: histogram(
                "vdb_embedder_tokenize_duration_seconds",
                "time to tokenize one request",
                LATENCY_BUCKETS,
            )?,
            queue_seconds: histogram(
                "vdb_embedder_queue_duration_seconds",
                "time an input waited for its batch",
                LATENCY_BUCKETS,
            )?,
            inference_seconds: histogram(
                "vdb_embedder_inference_duration_seconds",
                "time to run one batch through the model",
                LATENCY_BUCKETS,
            )?,
            queue_texts: register(
                r,
                IntGauge::new("vdb_embedder_queue_texts", "texts waiting for the model")?,
            )?,
            rejected: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "vdb_embedder_rejected_requests_total",
                        "requests refused, by reason",
                    ),
                    &["reason"],
                )?,
            )?,
            cancelled: register(
                r,
                IntCounter::new(
                    "vdb_embedder_cancelled_texts_total",
                    "queued texts dropped because their client went away",
                )?,
            )?,
            batches_failed: register(
                r,
                IntCounter::new(
                    "vdb_embedder_failed_batches_total",
                    "batches the model failed on",
                )?,
            )?,
            ready: register(
                r,
                Gauge::new("vdb_embedder_ready", "1 once the model has loaded and warmed up")?,
            )?,
            http,
            registry,
        })
    }
}
