//! `vdb-router`: parse config, start logging, bind, serve until SIGINT/SIGTERM.

use clap::Parser;
use std::io::Write;

/// mimalloc instead of glibc's malloc, as in `vdb-shard`: requests allocate and free many
/// buffers of all sizes across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = vdb_router::Config::parse();
    vdb_common::telemetry::init(config.log_json);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    // Tools and tests read the bound address (port 0 picks one) from this first line.
    let mut out = std::io::stdout();
    writeln!(out, "{}", serde_json::json!({ "listening": listener.local_addr()?.to_string() }))?;
    out.flush()?;
    vdb_router::run(config, listener, vdb_common::shutdown::signal()).await
}
