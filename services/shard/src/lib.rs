//! The VDB shard node: hosts local shards of collections, each a USearch HNSW index with a
//! payload store, payload indexes, a write-ahead log and snapshots, served over JSON/HTTP.
//!
//! Layout:
//! - [`config`]: flags and `VDB_*` environment variables.
//! - [`http`]: routes and thin handlers; the OpenAPI document.
//! - [`node`]: the local shards of this process, the blocking-work limiter, readiness, shutdown.
//! - [`pool`]: the threads serving reads, fed by a bounded queue.
//! - [`shard`]: one local shard and its write path (validate → WAL → apply).
//! - [`durability`]: WAL fsync on a timer and at shutdown; snapshots.
//! - [`wal_tail`]: the WAL read back as JSON records (resharding, moves, replication).
//! - [`ownership`], [`guard`]: which points a shard owns during a resharding; the write guard.
//! - [`replication`]: role, epoch, lease, replicas and write acknowledgement; [`replica`]: the
//!   log stream's two ends and snapshot transfer; [`shipper`]: a primary's stream per replica.
//! - [`read`]: get, count, scroll and search with the planner.
//! - [`index`]: the USearch index made safe to share.
//! - [`store`]: ids and payloads; [`ops`]: WAL records; [`snapshot`]: snapshot files.
//! - [`metrics`], [`error`].

pub mod config;
pub mod durability;
pub mod error;
pub mod guard;
pub mod http;
pub mod index;
pub mod metrics;
pub mod node;
pub mod ops;
pub mod ownership;
pub mod pool;
pub mod read;
pub mod replica;
pub mod replication;
pub mod shard;
pub mod shipper;
pub mod snapshot;
pub mod store;
pub mod wal_tail;

use std::future::Future;
use std::time::Duration;

pub use config::Config;
pub use http::app;
pub use node::Node;

/// Serves on `listener` until `shutdown` resolves, then drains: no new writes, in-flight
/// requests finish (up to the grace period), and every WAL is fsynced.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let node_id = config.node_id.clone().unwrap_or_else(|| addr.to_string());
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let node = Node::new(config, node_id)?;
    node.start_wal_syncer();
    let recovering = node.clone();
    tokio::task::spawn_blocking(move || recovering.recover_all());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let draining = node.clone();
    tokio::spawn(async move {
        shutdown.await;
        draining.stop_writes();
        let _ = stop_tx.send(true);
    });
    let mut stop_rx2 = stop_rx.clone();
    let server = axum::serve(vdb_common::listener::nodelay(listener), app(node.clone()))
        .with_graceful_shutdown(async move {
            let _ = stop_rx2.wait_for(|s| *s).await;
        });
    tracing::info!(%addr, "serving");
    let mut stop_rx3 = stop_rx;
    tokio::select! {
        r = server => r?,
        _ = async {
            let _ = stop_rx3.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!("grace period over; closing with requests in flight"),
    }
    let flushing = node.clone();
    tokio::task::spawn_blocking(move || flushing.flush_all()).await?;
    tracing::info!("stopped");
    Ok(())
}
