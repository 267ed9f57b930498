//! `vdb-embedder`: serve (the default) or `export` training data; see `--help`.

use clap::Parser;
use std::io::Write;
use vdb_embedder::export::ExportArgs;
use vdb_embedder::Config;

#[derive(Parser)]
#[command(name = "vdb-embedder", version, about = "VDB embedder: text to vectors")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Embed a JSON-lines file of texts and labels into training-data files.
    Export(ExportArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Export(args)) = cli.command {
        vdb_common::telemetry::init(args.config.log_json);
        return vdb_embedder::export::run(args).await;
    }
    let config = cli.config;
    vdb_common::telemetry::init(config.log_json);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    // Tools and tests read the bound address (port 0 picks one) from this first line.
    let mut out = std::io::stdout();
    writeln!(out, "{}", serde_json::json!({ "listening": listener.local_addr()?.to_string() }))?;
    out.flush()?;
    vdb_embedder::run(config, listener, vdb_common::shutdown::signal()).await
}
