//! HTTP request metrics and the `/metrics` handler.
//!
//! Requests are labelled by the matched route template (`/v1/shards/{name}/search`), never by
//! the raw URI, so label cardinality stays bounded.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use std::sync::Arc;
use std::time::Instant;

/// Latency buckets in seconds, from 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Request counters and latency histograms for one service.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl HttpMetrics {
    /// Registers `vdb_<service>_http_requests_total` and
    /// `vdb_<service>_http_request_duration_seconds` in `registry`.
    pub fn new(service: &str, registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                format!("vdb_{service}_http_requests_total"),
                "HTTP requests by method, route and status",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                format!("vdb_{service}_http_request_duration_seconds"),
                "HTTP request latency by method and route",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(HttpMetrics { requests, latency })
    }
}

/// Middleware recording every request (use with `axum::middleware::from_fn_with_state`).
pub async fn track(State(metrics): State<Arc<HttpMetrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics.requests.with_label_values(&[&method, &route, &status]).inc();
    metrics.latency.with_label_values(&[&method, &route]).observe(start.elapsed().as_secs_f64());
    response
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> Response {
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&registry.gather(), &mut buf) {
        tracing::error!(error = %e, "encoding metrics failed");
        return crate::ApiError::internal().into_response();
    }
    ([(CONTENT_TYPE, encoder.format_type().to_owned())], buf).into_response()
}

/// Registers `collector` in `registry` and hands it back, so each metric is declared in one
/// expression.
pub fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> prometheus::Result<C> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}
