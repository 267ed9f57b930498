//! The VDB router: the stateless front door. It maps collections onto shard nodes, routes
//! point writes to the shard that owns each point, scatter-gathers searches into the global
//! top-k, and — when elected controller — checks node health and drives reshardings. Cluster
//! state lives in a metastore (`vdb-meta`: a local file or etcd).
//!
//! Layout:
//! - [`config`]: flags and `VDB_*` environment variables.
//! - [`http`]: routes and thin handlers; the OpenAPI document.
//! - [`state`]: cluster records in the metastore and the watched in-memory view.
//! - [`cluster`]: the shared [`Cluster`]: node clients, routing of one collection, fan-out.
//! - [`catalog`]: collections and nodes (create, describe, update, delete, register).
//! - [`points`]: point writes and reads routed to shards; [`search`]: scatter-gather top-k.
//! - [`embed`]: text to vectors through the embedders (`--embedder MODEL=URL`) for
//!   collections with an embedding model; [`text`]: text points and queries resolved to
//!   vectors.
//! - [`controller`]: election, health checks, clean-up, imbalance; [`replicas`]: primary
//!   leases, in-sync sets and failover of replicated collections; [`reshard`]: online
//!   resharding; [`moves`]: moving shard copies between nodes (drain, rebalance).
//! - [`handoff`]: copying a local shard and following its WAL (used by both).
//! - [`metrics`], [`error`].

pub mod catalog;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod embed;
pub mod error;
pub mod handoff;
pub mod http;
pub mod metrics;
pub mod moves;
pub mod points;
pub mod replicas;
pub mod reshard;
pub mod search;
pub mod state;
pub mod text;

use std::future::Future;
use std::sync::Arc;

pub use cluster::Cluster;
pub use config::Config;
pub use http::app;

/// Serves on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let id = config.router_id.clone().unwrap_or_else(|| addr.to_string());
    let meta = vdb_meta::connect(&config.metastore).await?;
    let state = state::State::start(meta).await?;
    let metrics = Arc::new(metrics::Metrics::new()?);
    let cluster = Arc::new(Cluster::new(config, id, state, metrics));
    for (node, url) in cluster.config.nodes.clone() {
        let known = cluster.state.view().nodes.get(&node).map(|n| n.url.clone());
        if known.as_deref() != Some(url.as_str()) {
            cluster.register_node(&node, vdb_api::RegisterNode { url }).await?;
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let controller = tokio::spawn(controller::run(cluster.clone(), stop_rx.clone()));
    let mut stopping = stop_rx;
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    tracing::info!(%addr, router = cluster.id, "serving");
    axum::serve(vdb_common::listener::nodelay(listener), app(cluster))
        .with_graceful_shutdown(async move {
            let _ = stopping.wait_for(|s| *s).await;
        })
        .await?;
    // Resign so another router takes over at once instead of after the lease expires.
    let _ = controller.await;
    tracing::info!("stopped");
    Ok(())
}
