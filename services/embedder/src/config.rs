//! The embedder's configuration: every flag is also a `VDB_*` environment variable.

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Which library runs the model. Each is a Cargo feature of `vdb-embedder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// A TorchScript module (`model.torchscript.pt`) through libtorch (feature `torch`).
    Torch,
    /// A SavedModel (`saved_model/`) through the TensorFlow C API (feature `tensorflow`).
    Tensorflow,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Torch => "torch",
            BackendKind::Tensorflow => "tensorflow",
        }
    }
}

/// Where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The first GPU when the library sees one, else the CPU.
    Auto,
    Cpu,
    /// GPU number N; fails at startup when it is not there.
    Cuda(usize),
}

impl DeviceChoice {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .or_else(|| s.strip_prefix("gpu:"))
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| format!("device must be auto, cpu, cuda or cuda:N, got {s:?}")),
        }
    }
}

/// Precision of the weights and activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DType {
    F32,
    /// Half precision; GPU only (the CPU kernels gain nothing and lose accuracy).
    F16,
}

impl DType {
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
        }
    }
}

#[derive(Parser, Clone, Debug)]
#[command(name = "vdb-embedder", version, about = "VDB embedder: text to vectors")]
pub struct Config {
    /// Address to listen on (port 0 picks a free port; the bound address is printed first on
    /// stdout as {"listening": "..."}).
    #[arg(long, env = "VDB_LISTEN", default_value = "127.0.0.1:6336")]
    pub listen: SocketAddr,

    /// Directory of an exported model: tokenizer.json, embedder.json, and
    /// model.torchscript.pt and/or saved_model/ [default: ~/.cache/vdb/models/all-MiniLM-L6-v2,
    /// where scripts/setup-embedder.sh exports the default model].
    #[arg(long, env = "VDB_EMBEDDER_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,

    /// Library running the model.
    #[arg(long, env = "VDB_EMBEDDER_BACKEND", value_enum, default_value_t = BackendKind::Torch)]
    pub backend: BackendKind,

    /// Device: auto (GPU when available, else CPU), cpu, cuda or cuda:N.
    #[arg(long, env = "VDB_EMBEDDER_DEVICE", default_value = "auto", value_parser = DeviceChoice::parse)]
    pub device: DeviceChoice,

    /// Precision: f32, or f16 on a GPU (torch backend).
    #[arg(long, env = "VDB_EMBEDDER_DTYPE", value_enum, default_value_t = DType::F32)]
    pub dtype: DType,

    /// Threads inside one operation (matrix products) on the CPU; defaults to the cores.
    #[arg(long, env = "VDB_EMBEDDER_INTRA_OP_THREADS")]
    pub intra_op_threads: Option<usize>,

    /// Operations run in parallel on the CPU.
    #[arg(long, env = "VDB_EMBEDDER_INTER_OP_THREADS", default_value_t = 1)]
    pub inter_op_threads: usize,

    /// Longest input in tokens; defaults to the model's (embedder.json), never above it.
    #[arg(long, env = "VDB_EMBEDDER_MAX_INPUT_TOKENS")]
    pub max_input_tokens: Option<usize>,

    /// Padded tokens (inputs × longest input) in one batch.
    #[arg(long, env = "VDB_EMBEDDER_MAX_BATCH_TOKENS", default_value_t = 16_384)]
    pub max_batch_tokens: usize,

    /// Inputs in one batch.
    #[arg(long, env = "VDB_EMBEDDER_MAX_BATCH_SIZE", default_value_t = 64)]
    pub max_batch_size: usize,

    /// Milliseconds an idle model waits for more inputs before running a batch that is not
    /// full (fractions allowed; 0 runs at once).
    #[arg(long, env = "VDB_EMBEDDER_MAX_WAIT_MS", default_value_t = 1.0)]
    pub max_wait_ms: f64,

    /// Texts allowed to wait for the model; beyond this requests get 429.
    #[arg(long, env = "VDB_EMBEDDER_MAX_QUEUE", default_value_t = 4096)]
    pub max_queue: usize,

    /// Texts allowed in one request (400 above it).
    #[arg(long, env = "VDB_EMBEDDER_MAX_CLIENT_BATCH", default_value_t = 1024)]
    pub max_client_batch: usize,

    /// Largest request body accepted (413 above it).
    #[arg(long, env = "VDB_MAX_BODY_BYTES", default_value_t = 4 << 20)]
    pub max_body_bytes: usize,

    /// Log JSON lines instead of text.
    #[arg(long, env = "VDB_LOG_JSON")]
    pub log_json: bool,

    /// Seconds to let in-flight requests finish after SIGTERM.
    #[arg(long, env = "VDB_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
}

impl Config {
    pub fn cores() -> usize {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
    }

    pub fn intra_op_threads(&self) -> usize {
        self.intra_op_threads.unwrap_or_else(Self::cores).max(1)
    }

    pub fn model_dir(&self) -> PathBuf {
        self.model_dir.clone().unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
            home.join(".cache/vdb/models/all-MiniLM-L6-v2")
        })
    }

    pub fn max_wait(&self) -> Duration {
        Duration::from_secs_f64(self.max_wait_ms.clamp(0.0, 1000.0) / 1000.0)
    }

    /// A configuration for `model_dir` with every other setting at its default.
    pub fn for_model(model_dir: impl Into<PathBuf>, backend: BackendKind) -> Self {
        let mut c = Config::parse_from(["vdb-embedder"]);
        c.model_dir = Some(model_dir.into());
        c.backend = backend;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn devices_parse() {
        assert_eq!(DeviceChoice::parse("auto"), Ok(DeviceChoice::Auto));
        assert_eq!(DeviceChoice::parse("cpu"), Ok(DeviceChoice::Cpu));
        assert_eq!(DeviceChoice::parse("cuda"), Ok(DeviceChoice::Cuda(0)));
        assert_eq!(DeviceChoice::parse("cuda:3"), Ok(DeviceChoice::Cuda(3)));
        assert!(DeviceChoice::parse("tpu").is_err() && DeviceChoice::parse("cuda:x").is_err());
    }
}
