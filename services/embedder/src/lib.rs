//! The VDB embedder: turns text into vectors with a TorchScript model (libtorch, feature
//! `torch`) or a TensorFlow SavedModel (feature `tensorflow`), batching concurrent requests
//! dynamically on a dedicated model thread, served as JSON over HTTP. It also writes
//! training data (embeddings + labels) as PyTorch and TFRecord files.
//!
//! Layout:
//! - [`config`]: flags and `VDB_*` environment variables.
//! - [`http`]: routes and thin handlers; the OpenAPI document.
//! - [`service`]: [`Embedder`], texts in, vectors out (tokenize → batcher → normalise).
//! - [`tokenize`]: `tokenizer.json` through the `tokenizers` crate, the input limit.
//! - [`batcher`]: the model thread and dynamic batching (token budget, batch size, max wait).
//! - [`backend`]: the [`backend::Backend`] trait, `torch`, `tf` and an in-memory `fake`.
//! - [`model`]: the model manifest, padded batches, pooling and normalisation.
//! - [`export`]: training-data files (`torch.load`-able tensors, TFRecord) and the `export`
//!   command.
//! - [`metrics`], [`error`].

pub mod backend;
pub mod batcher;
pub mod config;
pub mod error;
pub mod export;
pub mod http;
pub mod metrics;
pub mod model;
pub mod service;
pub mod tokenize;

use std::future::Future;
use std::time::Duration;

pub use config::Config;
pub use http::app;
pub use service::Embedder;

/// Serves on `listener` until `shutdown` resolves. The model loads in the background:
/// `/healthz` answers at once, `/readyz` once the model has warmed up. A model that fails to
/// load ends the process with the error.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    tracing::info!(
        backend = config.backend.as_str(),
        model_dir = %config.model_dir().display(),
        compiled = ?backend::available(),
        "starting"
    );
    let factory = backend::factory(&config)?;
    let (embedder, ready) = Embedder::start(config, factory)?;

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut failed = tokio::spawn(async move {
        match ready.await {
            Ok(Ok(_)) => std::future::pending().await,
            Ok(Err(e)) => anyhow::Error::from(e).context("the model could not be loaded"),
            Err(_) => anyhow::anyhow!("the model thread ended while loading"),
        }
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut stop_rx2 = stop_rx.clone();
    let server = axum::serve(vdb_common::listener::nodelay(listener), app(embedder))
        .with_graceful_shutdown(async move {
            let _ = stop_rx2.wait_for(|s| *s).await;
        });
    tracing::info!(%addr, "serving");
    tokio::select! {
        r = server => r?,
        e = &mut failed => return Err(e?),
        _ = async {
            let _ = stop_rx.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!("grace period over; closing with requests in flight"),
    }
    failed.abort();
    tracing::info!("stopped");
    Ok(())
}
