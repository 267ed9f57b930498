//! The seam between the service and the libraries that run models: a small synchronous
//! [`Backend`] trait, one implementation per Cargo feature (`torch`, `tensorflow`) and an
//! in-memory [`fake`] for fast tests.
//!
//! A backend is created on, and only ever used from, the model thread (see [`crate::batcher`]),
//! so it need not be `Send`: libtorch tensors and TensorFlow graphs stay on one OS thread.

pub mod fake;
#[cfg(feature = "tensorflow")]
pub mod tf;
#[cfg(feature = "torch")]
pub mod torch;

use crate::config::{BackendKind, Config};
use crate::error::StartError;
use crate::model::{Batch, Output};

/// Runs a model on padded batches of token ids.
pub trait Backend {
    /// One forward pass. The error is logged by the caller; clients see a generic 500.
    fn forward(&mut self, batch: &Batch) -> Result<Output, String>;
}

/// A backend ready to serve, with what `/info` reports about it.
pub struct Loaded {
    pub backend: Box<dyn Backend>,
    /// `cpu`, `cuda:0`, `/device:GPU:0`, ...
    pub device: String,
    /// `f32` or `f16`.
    pub dtype: String,
}

/// Builds a backend on the model thread (it is called there, once).
pub type Factory = Box<dyn FnOnce() -> Result<Loaded, StartError> + Send>;

/// The factory for the backend `config` names, or why this binary cannot provide it.
pub fn factory(config: &Config) -> Result<Factory, StartError> {
    let config = config.clone();
    match config.backend {
        BackendKind::Torch => {
            #[cfg(feature = "torch")]
            return Ok(Box::new(move || torch::load(&config)));
            #[cfg(not(feature = "torch"))]
            Err(not_built("torch"))
        }
        BackendKind::Tensorflow => {
            #[cfg(feature = "tensorflow")]
            return Ok(Box::new(move || tf::load(&config)));
            #[cfg(not(feature = "tensorflow"))]
            Err(not_built("tensorflow"))
        }
    }
}

#[allow(dead_code)]
fn not_built(feature: &str) -> StartError {
    StartError::Backend(format!(
        "this binary was built without the {feature} backend; build it with \
         `cargo build --release -p vdb-embedder --features {feature}` (see README)"
    ))
}

/// The backends compiled into this binary.
pub fn available() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "torch") {
        v.push("torch");
    }
    if cfg!(feature = "tensorflow") {
        v.push("tensorflow");
    }
    v
}
