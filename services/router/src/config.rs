//! The router's configuration: every flag is also a `VDB_*` environment variable.

use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Parser, Clone, Debug)]
#[command(name = "vdb-router", version, about = "VDB router: collections across shard nodes")]
pub struct Config {
    /// Address to listen on (port 0 picks a free port; the bound address is printed first on
    /// stdout as {"listening": "..."}).
    #[arg(long, env = "VDB_LISTEN", default_value = "127.0.0.1:6333")]
    pub listen: SocketAddr,

    /// Where cluster state lives: `local:///path/meta.json` (one router on one machine) or
    /// `etcd://host:port[,host:port...]` (several routers).
    #[arg(long, env = "VDB_METASTORE", default_value = "local://./vdb-data/router/meta.json")]
    pub metastore: String,

    /// This router's id (defaults to the listen address); used in controller elections.
    #[arg(long, env = "VDB_ROUTER_ID")]
    pub router_id: Option<String>,

    /// Shard nodes to register at start, as `id=http://host:port` (repeatable, or
    /// comma-separated in the environment). Nodes can also register through the API.
    #[arg(long = "node", env = "VDB_NODES", value_delimiter = ',', value_parser = parse_node)]
    pub nodes: Vec<(String, String)>,

    /// Deadline of one router → shard read (search, get, count, scroll).
    #[arg(long, env = "VDB_READ_TIMEOUT_MS", default_value_t = 5_000)]
    pub read_timeout_ms: u64,

    /// Deadline of one router → shard write.
    #[arg(long, env = "VDB_WRITE_TIMEOUT_MS", default_value_t = 30_000)]
    pub write_timeout_ms: u64,

    /// Interval of the controller's health checks of shard nodes (they renew primaries'
    /// leases too): with the defaults a failover completes in about 1.2 s.
    #[arg(long, env = "VDB_HEALTH_INTERVAL_MS", default_value_t = 200)]
    pub health_interval_ms: u64,

    /// A node is marked down after this many failed health checks in a row.
    #[arg(long, env = "VDB_HEALTH_FAILURES", default_value_t = 3)]
    pub health_failures: u32,

    /// Controller lease: a controller that cannot renew within this time stops acting.
    #[arg(long, env = "VDB_CONTROLLER_TTL_MS", default_value_t = 3_000)]
    pub controller_ttl_ms: u64,

    /// How long a primary may acknowledge writes without hearing from the controller (its
    /// lease; renewed every health interval).
    #[arg(long, env = "VDB_PRIMARY_LEASE_MS", default_value_t = 1_000)]
    pub primary_lease_ms: u64,

    /// How far the clocks of routers and shard nodes may disagree: a replica is promoted
    /// only this long after the old primary's lease ended by the controller's clock.
    #[arg(long, env = "VDB_CLOCK_SKEW_MS", default_value_t = 200)]
    pub clock_skew_ms: u64,

    /// A replica whose oldest unconfirmed record waits longer than this leaves the in-sync
    /// set (it rejoins once caught up).
    #[arg(long, env = "VDB_MAX_REPLICA_LAG_MS", default_value_t = 1_000)]
    pub max_replica_lag_ms: u64,

    /// How long a sync or semi-sync write waits for replicas before it answers 503
    /// `replication_timeout`.
    #[arg(long, env = "VDB_REPLICATION_TIMEOUT_MS", default_value_t = 5_000)]
    pub replication_timeout_ms: u64,

    /// Flag a collection whose largest shard exceeds the mean by more than this ratio.
    #[arg(long, env = "VDB_IMBALANCE_RATIO", default_value_t = 1.5)]
    pub imbalance_ratio: f64,

    /// Collections smaller than this are never flagged as imbalanced.
    #[arg(long, env = "VDB_IMBALANCE_MIN_POINTS", default_value_t = 1_000)]
    pub imbalance_min_points: u64,

    /// Largest request body accepted (413 above it).
    #[arg(long, env = "VDB_MAX_BODY_BYTES", default_value_t = 32 << 20)]
    pub max_body_bytes: usize,

    /// Searches over more shards than this fetch payloads and vectors in a second round,
    /// only for the final top-k.
    #[arg(long, env = "VDB_TWO_PHASE_FANOUT", default_value_t = 2)]
    pub two_phase_fanout: usize,

    /// Embedders the router may use, as `MODEL=http://host:port` (repeatable, or
    /// comma-separated in the environment). A collection naming `MODEL` in its `embedding`
    /// has the `text` of its points and searches embedded there.
    #[arg(long = "embedder", env = "VDB_EMBEDDERS", value_delimiter = ',', value_parser = parse_embedder)]
    pub embedders: Vec<(String, String)>,

    /// Deadline of one router → embedder call (one call embeds up to the embedder's
    /// `max_client_batch` texts; a CPU embeds tens to hundreds of texts per second).
    #[arg(long, env = "VDB_EMBED_TIMEOUT_MS", default_value_t = 30_000)]
    pub embed_timeout_ms: u64,

    /// Log JSON lines instead of text.
    #[arg(long, env = "VDB_LOG_JSON")]
    pub log_json: bool,
}

impl Config {
    pub fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms)
    }
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
    pub fn health_interval(&self) -> Duration {
        Duration::from_millis(self.health_interval_ms)
    }
    pub fn controller_ttl(&self) -> Duration {
        Duration::from_millis(self.controller_ttl_ms)
    }
    pub fn embed_timeout(&self) -> Duration {
        Duration::from_millis(self.embed_timeout_ms)
    }

    /// A config with every default, for tests.
    pub fn for_tests(metastore: &str) -> Config {
        let mut c = Config::parse_from(["vdb-router"]);
        c.metastore = metastore.to_string();
        c
    }
}

/// Parses `id=http://host:port`.
pub fn parse_node(s: &str) -> Result<(String, String), String> {
    let (id, url) =
        s.split_once('=').ok_or_else(|| format!("node must be id=http://host:port, got {s:?}"))?;
    crate::state::validate_node_id(id)?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("node url must start with http:// or https://, got {url:?}"));
    }
    Ok((id.to_string(), url.trim_end_matches('/').to_string()))
}

/// Parses `MODEL=http://host:port`.
pub fn parse_embedder(s: &str) -> Result<(String, String), String> {
    let (model, url) = s
        .split_once('=')
        .ok_or_else(|| format!("embedder must be MODEL=http://host:port, got {s:?}"))?;
    if model.is_empty() || model.len() > 200 || model.chars().any(|c| c.is_whitespace() || c == ',')
    {
        return Err(format!(
            "embedder model name must be 1..=200 characters without spaces or commas, \
             got {model:?}"
        ));
    }
    vdb_client::embedder::EmbedderClient::new(url).map_err(|e| e.to_string())?;
    Ok((model.to_string(), url.trim_end_matches('/').to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_parse() {
        assert_eq!(
            parse_node("n1=http://127.0.0.1:7000/").unwrap(),
            ("n1".to_string(), "http://127.0.0.1:7000".to_string())
        );
        assert!(parse_node("n1").is_err());
        assert!(parse_node("n1=ftp://x").is_err());
        assert!(parse_node("bad id=http://x").is_err());
    }

    #[test]
    fn embedders_parse() {
        assert_eq!(
            parse_embedder("all-MiniLM-L6-v2=http://127.0.0.1:6336/").unwrap(),
            ("all-MiniLM-L6-v2".to_string(), "http://127.0.0.1:6336".to_string())
        );
        assert!(parse_embedder("http://127.0.0.1:6336").is_err());
        assert!(parse_embedder("=http://127.0.0.1:6336").is_err());
        assert!(parse_embedder("m=ftp://x").is_err());
        let c = Config::parse_from([
            "vdb-router",
            "--embedder",
            "a=http://h:1",
            "--embedder",
            "b=http://h:2",
            "--embed-timeout-ms",
            "250",
        ]);
        assert_eq!(c.embedders.len(), 2);
        assert_eq!(c.embed_timeout(), Duration::from_millis(250));
    }
}
