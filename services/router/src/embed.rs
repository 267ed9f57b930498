//! Text to vectors for collections with an embedding model: the embedders this router knows
//! (`--embedder MODEL=URL`), their limits (`/info`, fetched on first use and cached), the
//! texts of one request cut into as few calls as those limits allow, a deadline per call, and
//! embedder failures mapped onto answers that name the point or search whose text failed.
//!
//! | embedder | router answer |
//! |---|---|
//! | unreachable, timed out, not ready, 5xx, wrong model or dimension | 503 `embedder_unavailable` |
//! | 422 (text over the model's limit, not truncated) | 422 `unprocessable`, naming the text |
//! | 429 (queue full) | 429 `overloaded` with `Retry-After` |

use crate::config::Config;
use crate::error::{Result, RouterError};
use crate::metrics::Metrics;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vdb_api::embed::EmbedderInfo;
use vdb_api::{EmbeddingConfig, ErrorCode};
use vdb_client::embedder::{EmbedError, EmbedderClient};

/// Bytes of text sent in one embedder call at most (one text larger than this goes alone):
/// keeps each request well under the embedder's default 4 MiB body limit, JSON escaping
/// included.
pub const MAX_CALL_BYTES: usize = 1 << 20;

/// Texts per call when the embedder's `/info` does not say (it always does today).
const FALLBACK_CALL_TEXTS: usize = 256;

/// The embedders this router may call, by model name.
pub struct Embedders {
    models: BTreeMap<String, Embedder>,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

struct Embedder {
    url: String,
    client: EmbedderClient,
    /// `/info`, cached after the first successful look; dropped when the embedder's answers
    /// suggest it changed (a refused request, vectors of another dimension).
    info: Mutex<Option<EmbedderInfo>>,
}

/// Which text of a request: its position in the request's list of points or searches.
pub trait Labels: Fn(usize) -> String + Sync {}
impl<F: Fn(usize) -> String + Sync> Labels for F {}

impl Embedders {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Embedders {
        let timeout = config.embed_timeout();
        let models = config
            .embedders
            .iter()
            .map(|(model, url)| {
                // The client's own deadline is a backstop; the router's (below) answers first.
                let client = EmbedderClient::with_timeout(url, timeout + Duration::from_secs(5))
                    .expect("embedder URLs are checked when the config is parsed")
                    .with_chunk(usize::MAX);
                let embedder = Embedder { url: url.clone(), client, info: Mutex::new(None) };
                (model.clone(), embedder)
            })
            .collect();
        Embedders { models, timeout, metrics }
    }

    /// The model names this router serves.
    pub fn models(&self) -> Vec<&str> {
        self.models.keys().map(String::as_str).collect()
    }

    fn get(&self, model: &str) -> Result<&Embedder> {
        self.models.get(model).ok_or_else(|| {
            let known = self.models();
            RouterError::Invalid(format!(
                "embedding model {model:?} is not served by this router (it serves {}); \
                 routers learn models from --embedder MODEL=URL",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })
    }

    /// `/info` of the embedder serving `model` (cached), checked to serve that model.
    pub async fn info(&self, model: &str) -> Result<EmbedderInfo> {
        let embedder = self.get(model)?;
        if let Some(info) = embedder.info.lock().clone() {
            return Ok(info);
        }
        let info = match tokio::time::timeout(self.timeout, embedder.client.info()).await {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => {
                return Err(self.failure(model, embedder, e, None, &[], &|_| String::new()).await)
            }
            Err(_) => return Err(self.timed_out(model, embedder)),
        };
        if info.model != model {
            self.metrics.embed_errors.with_label_values(&[model, "wrong_model"]).inc();
            tracing::error!(
                model,
                url = embedder.url,
                serves = info.model,
                "embedder serves another model"
            );
            return Err(unavailable(format!(
                "the embedder configured for model {model} serves model {}; \
                 check the router's --embedder",
                info.model
            )));
        }
        *embedder.info.lock() = Some(info.clone());
        Ok(info)
    }

    /// One vector of `dimension` per text, in order, through the collection's model. Error
    /// messages name text `i` as `label(i)`.
    pub async fn embed(
        &self,
        embedding: &EmbeddingConfig,
        texts: &[&str],
        dimension: usize,
        label: &dyn Labels,
    ) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let model = embedding.model.as_str();
        // The collection was created on a router that served the model: one without it is
        // misconfigured, which is not the client's fault.
        let embedder = self.models.get(model).ok_or_else(|| {
            tracing::error!(model, "a collection names a model this router has no embedder for");
            unavailable(format!(
                "this router has no embedder for model {model}; start it with --embedder {model}=URL"
            ))
        })?;
        let info = self.info(model).await?;
        let per_call = match info.max_client_batch {
            0 => FALLBACK_CALL_TEXTS,
            n => n,
        };
        let mut vectors = Vec::with_capacity(texts.len());
        for range in chunks(texts.iter().map(|t| t.len()), per_call, MAX_CALL_BYTES) {
            let part = &texts[range.clone()];
            self.metrics.embed_calls.with_label_values(&[model]).inc();
            self.metrics.embed_texts.with_label_values(&[model]).inc_by(part.len() as u64);
            let started = Instant::now();
            let call = embedder.client.embed(part, embedding.truncate);
            let got = match tokio::time::timeout(self.timeout, call).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    return Err(self
                        .failure(model, embedder, e, Some(&info), part, &|i| label(range.start + i))
                        .await)
                }
                Err(_) => return Err(self.timed_out(model, embedder)),
            };
            self.metrics
                .embed_seconds
                .with_label_values(&[model])
                .observe(started.elapsed().as_secs_f64());
            if let Some(v) = got.iter().find(|v| v.len() != dimension) {
                self.metrics.embed_errors.with_label_values(&[model, "wrong_dimension"]).inc();
                *embedder.info.lock() = None;
                tracing::error!(
                    model,
                    url = embedder.url,
                    got = v.len(),
                    dimension,
                    "embedder returned vectors of another dimension"
                );
                return Err(unavailable(format!(
                    "the embedder of model {model} returned {}-dimensional vectors; \
                     the collection has {dimension} dimensions",
                    v.len()
                )));
            }
            vectors.extend(got);
        }
        Ok(vectors)
    }

    fn timed_out(&self, model: &str, embedder: &Embedder) -> RouterError {
        self.metrics.embed_errors.with_label_values(&[model, "timeout"]).inc();
        tracing::warn!(
            model,
            url = embedder.url,
            timeout_ms = self.timeout.as_millis() as u64,
            "embedder timed out"
        );
        unavailable(format!(
            "the embedder of model {model} did not answer within {} ms; retry later",
            self.timeout.as_millis()
        ))
    }

    /// Maps a failed call (of `texts`, when embedding) onto the client's answer.
    async fn failure(
        &self,
        model: &str,
        embedder: &Embedder,
        err: EmbedError,
        info: Option<&EmbedderInfo>,
        texts: &[&str],
        label: &dyn Labels,
    ) -> RouterError {
        let reason = match &err {
            EmbedError::Unavailable(_) | EmbedError::Decode(_) | EmbedError::Config(_) => {
                "unavailable"
            }
            EmbedError::Server { .. } => "failed",
            EmbedError::Refused { .. } => "refused",
            EmbedError::Overloaded => "overloaded",
            EmbedError::BadRequest { .. } => "bad_request",
        };
        self.metrics.embed_errors.with_label_values(&[model, reason]).inc();
        match err {
            EmbedError::Refused { message, .. } if !texts.is_empty() => {
                let (at, detail) = match self.too_long(embedder, info, texts).await {
                    Some((i, tokens, max)) => (
                        label(i),
                        format!(
                            "the text has {tokens} tokens, over model {model}'s limit of {max}; \
                             a collection whose embedding sets truncate: true cuts long texts instead"
                        ),
                    ),
                    None => (
                        match texts.len() {
                            1 => label(0),
                            n => format!("one of {} .. {}", label(0), label(n - 1)),
                        },
                        format!("model {model} refuses the text: {message}"),
                    ),
                };
                let message = format!("{at}: {detail}");
                RouterError::Embed { code: ErrorCode::Unprocessable, message }
            }
            EmbedError::Overloaded => RouterError::Embed {
                code: ErrorCode::Overloaded,
                message: format!("the embedder of model {model} is overloaded; retry later"),
            },
            EmbedError::BadRequest { status: 413, .. } if !texts.is_empty() => RouterError::Embed {
                code: ErrorCode::PayloadTooLarge,
                message: format!(
                    "{} .. {}: these texts together exceed the request size \
                     the embedder of model {model} accepts",
                    label(0),
                    label(texts.len().saturating_sub(1))
                ),
            },
            err => {
                // Not the client's fault: the embedder is down, failed, or its limits changed
                // since they were cached (forget them, so the next request looks again).
                *embedder.info.lock() = None;
                tracing::warn!(model, url = embedder.url, error = %err, "embedder call failed");
                unavailable(format!(
                    "the embedder of model {model} cannot embed right now ({}); retry later",
                    match err {
                        EmbedError::Unavailable(_) => "unreachable or not ready",
                        EmbedError::Server { .. } => "it failed",
                        _ => "unexpected answer",
                    }
                ))
            }
        }
    }

    /// Which of `texts` is over the model's limit, with its tokens and the limit: asked of the
    /// embedder's tokenizer, so the answer names the right point without parsing messages.
    async fn too_long(
        &self,
        embedder: &Embedder,
        info: Option<&EmbedderInfo>,
        texts: &[&str],
    ) -> Option<(usize, usize, usize)> {
        let max = info?.max_input_tokens;
        let tokens =
            tokio::time::timeout(self.timeout, embedder.client.tokenize(texts)).await.ok()?.ok()?;
        tokens.iter().enumerate().find(|(_, t)| t.len() > max).map(|(i, t)| (i, t.len(), max))
    }
}

fn unavailable(message: String) -> RouterError {
    RouterError::Embed { code: ErrorCode::EmbedderUnavailable, message }
}

/// Cuts texts (by their byte lengths) into consecutive runs of at most `max_texts` texts and
/// `max_bytes` bytes; a text longer than `max_bytes` runs alone.
pub fn chunks(
    lengths: impl IntoIterator<Item = usize>,
    max_texts: usize,
    max_bytes: usize,
) -> Vec<Range<usize>> {
    let max_texts = max_texts.max(1);
    let mut out = Vec::new();
    let (mut start, mut end, mut bytes) = (0, 0, 0);
    for len in lengths {
        if end > start && (end - start == max_texts || bytes + len > max_bytes) {
            out.push(start..end);
            (start, bytes) = (end, 0);
        }
        bytes += len;
        end += 1;
    }
    if end > start {
        out.push(start..end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_call_unless_a_limit_is_reached() {
        assert_eq!(chunks([10; 5], 1024, MAX_CALL_BYTES), vec![0..5]);
        assert_eq!(chunks([10; 5], 2, MAX_CALL_BYTES), vec![0..2, 2..4, 4..5]);
        assert_eq!(chunks([10, 10, 25, 1], 100, 30), vec![0..2, 2..4]);
        // A text over the byte budget goes alone.
        assert_eq!(chunks([5, 100, 5], 100, 30), vec![0..1, 1..2, 2..3]);
        assert!(chunks(std::iter::empty(), 10, 10).is_empty());
    }

    proptest! {
        /// Runs cover every text once, in order, within both limits (a lone text may exceed
        /// the bytes), and are as few as a greedy cut allows: no two neighbours would fit in one.
        #[test]
        fn runs_cover_in_order_within_limits(
            lengths in proptest::collection::vec(0usize..50, 0..200),
            max_texts in 1usize..20,
            max_bytes in 1usize..200,
        ) {
            let runs = chunks(lengths.iter().copied(), max_texts, max_bytes);
            let mut next = 0;
            for r in &runs {
                prop_assert_eq!(r.start, next);
                prop_assert!(!r.is_empty() && r.len() <= max_texts);
                let bytes: usize = lengths[r.clone()].iter().sum();
                prop_assert!(r.len() == 1 || bytes <= max_bytes);
                next = r.end;
            }
            prop_assert_eq!(next, lengths.len());
            for pair in runs.windows(2) {
                let joined: usize = lengths[pair[0].start..pair[1].end].iter().sum();
                let first_full = pair[0].len() == max_texts;
                let next_len = lengths[pair[1].start];
                let bytes: usize = lengths[pair[0].clone()].iter().sum();
                prop_assert!(first_full || bytes + next_len > max_bytes, "{joined}");
            }
        }
    }
}
