//! `vdb-shard`: parse config, start logging and the runtime, bind, serve until SIGINT/SIGTERM.

use clap::Parser;
use std::io::Write;

/// mimalloc instead of glibc's malloc: the request path allocates and frees small buffers
/// on one thread and large ones (vectors, answers) across threads, where glibc's arenas
/// spend measurably more (consolidation, unlinking).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = vdb_shard::Config::parse();
    vdb_common::telemetry::init(config.log_json);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.http_threads())
        .enable_all()
        .build()?
        .block_on(serve(config))
}

async fn serve(config: vdb_shard::Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    // Tools and tests read the bound address (port 0 picks one) from this first line.
    let mut out = std::io::stdout();
    writeln!(out, "{}", serde_json::json!({ "listening": listener.local_addr()?.to_string() }))?;
    out.flush()?;
    vdb_shard::run(config, listener, vdb_common::shutdown::signal()).await
}
