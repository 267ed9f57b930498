//! The embedder as the handlers (and the export command) see it: texts in, vectors out.
//! Knows nothing of HTTP.

use crate::backend::Factory;
use crate::batcher::{Batcher, Limits, ModelInfo};
use crate::config::Config;
use crate::error::{EmbedError, StartError};
use crate::metrics::EmbedderMetrics;
use crate::model::{normalize, Manifest};
use crate::tokenize::TextTokenizer;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;
use vdb_api::embed::{EmbedderInfo, Token};

/// Vectors for a request, with the tokens they took (for OpenAI's `usage`).
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: usize,
}

pub struct Embedder {
    pub config: Config,
    pub manifest: Manifest,
    pub tokenizer: Arc<TextTokenizer>,
    pub batcher: Batcher,
    pub metrics: Arc<EmbedderMetrics>,
}

/// Resolves once the model has loaded and warmed up, or failed to.
pub type Ready = oneshot::Receiver<Result<ModelInfo, StartError>>;

impl Embedder {
    /// Reads the model directory named by `config` and starts loading the model on its own
    /// thread with `factory` (see [`crate::backend::factory`]).
    pub fn start(config: Config, factory: Factory) -> Result<(Arc<Self>, Ready), StartError> {
        let dir = config.model_dir();
        let manifest = Manifest::read(&dir)?;
        let max = max_input_tokens(&config, &manifest);
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"), max)?;
        Self::from_parts(config, manifest, tokenizer, factory)
    }

    /// Like [`Embedder::start`] with the manifest and tokenizer given (tests use a fake model).
    pub fn from_parts(
        config: Config,
        manifest: Manifest,
        tokenizer: TextTokenizer,
        factory: Factory,
    ) -> Result<(Arc<Self>, Ready), StartError> {
        let metrics = Arc::new(
            EmbedderMetrics::new().map_err(|e| StartError::Backend(format!("metrics: {e}")))?,
        );
        let limits = Limits {
            max_batch_tokens: config.max_batch_tokens.max(1),
            max_batch_size: config.max_batch_size.max(1),
            max_wait: config.max_wait(),
            max_queue: config.max_queue.max(1),
        };
        let warmup = tokenizer
            .encode(0, "warm up", true)
            .map_err(|e| StartError::Model(format!("tokenizer: {e}")))?;
        let (batcher, ready) =
            Batcher::spawn(factory, warmup, manifest.pooling, limits, metrics.clone())
                .map_err(|e| StartError::Backend(format!("cannot start the model thread: {e}")))?;
        let embedder =
            Embedder { config, manifest, tokenizer: Arc::new(tokenizer), batcher, metrics };
        Ok((Arc::new(embedder), ready))
    }

    pub fn is_ready(&self) -> bool {
        self.batcher.info().is_some()
    }

    /// Embeds `texts` in order. Long inputs are cut when `truncate`, refused (422) otherwise.
    pub async fn embed(
        &self,
        texts: Vec<String>,
        truncate: bool,
        normalized: bool,
        endpoint: &str,
    ) -> Result<Embeddings, EmbedError> {
        self.check_count(texts.len())?;
        if !self.is_ready() {
            return Err(EmbedError::Unavailable);
        }
        let arrival = self.batcher.announce();
        let tokenizer = self.tokenizer.clone();
        let start = Instant::now();
        let inputs = tokio::task::spawn_blocking(move || tokenizer.encode_all(&texts, truncate))
            .await
            .map_err(|_| EmbedError::Inference)?;
        self.metrics.tokenize_seconds.observe(start.elapsed().as_secs_f64());
        let inputs = inputs.inspect_err(|e| {
            let reason =
                if matches!(e, EmbedError::TooLong { .. }) { "too_long" } else { "tokenize" };
            self.metrics.rejected.with_label_values(&[reason]).inc();
        })?;
        let tokens = inputs.iter().map(|i| i.len()).sum();
        let n = inputs.len() as u64;
        let mut vectors = self.batcher.embed(inputs, arrival).await?;
        if normalized && self.manifest.normalize {
            vectors.iter_mut().for_each(|v| normalize(v));
        }
        self.metrics.texts.with_label_values(&[endpoint]).inc_by(n);
        Ok(Embeddings { vectors, tokens })
    }

    /// The tokens of each text, never truncated.
    pub async fn tokenize(
        &self,
        texts: Vec<String>,
        add_special: bool,
    ) -> Result<Vec<Vec<Token>>, EmbedError> {
        self.check_count(texts.len())?;
        let tokenizer = self.tokenizer.clone();
        tokio::task::spawn_blocking(move || {
            texts.iter().enumerate().map(|(i, t)| tokenizer.tokens(i, t, add_special)).collect()
        })
        .await
        .map_err(|_| EmbedError::Inference)?
    }

    fn check_count(&self, n: usize) -> Result<(), EmbedError> {
        if n == 0 {
            return Err(EmbedError::Empty);
        }
        if n > self.config.max_client_batch {
            self.metrics.rejected.with_label_values(&["too_many_inputs"]).inc();
            return Err(EmbedError::TooManyInputs { n, max: self.config.max_client_batch });
        }
        Ok(())
    }

    /// What `/info` reports; `None` until the model is ready.
    pub fn info(&self) -> Option<EmbedderInfo> {
        let model = self.batcher.info()?;
        let limits = self.batcher.limits();
        Some(EmbedderInfo {
            model: self.manifest.name.clone(),
            backend: self.config.backend.as_str().to_string(),
            dimension: model.dimension,
            max_input_tokens: self.tokenizer.max_tokens(),
            pooling: self.manifest.pooling,
            device: model.device.clone(),
            dtype: model.dtype.clone(),
            intra_op_threads: self.config.intra_op_threads(),
            inter_op_threads: self.config.inter_op_threads,
            max_batch_tokens: limits.max_batch_tokens,
            max_batch_size: limits.max_batch_size,
            max_wait_ms: limits.max_wait.as_secs_f64() * 1000.0,
            max_queue: limits.max_queue,
            max_client_batch: self.config.max_client_batch,
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }
}

/// The model's input limit, lowered (never raised) by the configuration.
fn max_input_tokens(config: &Config, manifest: &Manifest) -> usize {
    config.max_input_tokens.map_or(manifest.max_input_tokens, |n| n.min(manifest.max_input_tokens))
}
