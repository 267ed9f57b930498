//! The embedder's wire types: `/embed`, the OpenAI-compatible `/v1/embeddings`, `/tokenize`
//! and `/info`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One text or a list of texts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Inputs {
    One(String),
    Many(Vec<String>),
}

impl Inputs {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Inputs::One(s) => vec![s],
            Inputs::Many(v) => v,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Inputs::One(_) => 1,
            Inputs::Many(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Vec<String>> for Inputs {
    fn from(v: Vec<String>) -> Self {
        Inputs::Many(v)
    }
}

fn yes() -> bool {
    true
}

/// `POST /embed`: answers `[[f32]]`, one vector per input, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    pub inputs: Inputs,
    /// Cut inputs longer than the model's limit instead of refusing them with 422.
    #[serde(default)]
    pub truncate: bool,
    /// L2-normalise the vectors (the default; cosine and dot product then agree).
    #[serde(default = "yes")]
    pub normalize: bool,
}

impl EmbedRequest {
    pub fn new(texts: Vec<String>, truncate: bool) -> Self {
        EmbedRequest { inputs: Inputs::Many(texts), truncate, normalize: true }
    }
}

/// How `/v1/embeddings` encodes each vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EncodingFormat {
    /// A JSON array of numbers.
    #[default]
    Float,
    /// Base64 of the little-endian f32 bytes.
    Base64,
}

/// `POST /v1/embeddings` (OpenAI-compatible). Inputs over the model's limit are truncated, as
/// OpenAI clients do not expect a 422 for long text, unless `truncate: false` is sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OpenAiEmbedRequest {
    pub input: Inputs,
    /// Ignored beyond being echoed: the server serves one model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub encoding_format: EncodingFormat,
    /// Refuse (422) instead of cutting inputs over the model's limit when false.
    #[serde(default = "yes")]
    pub truncate: bool,
}

/// One vector of a `/v1/embeddings` answer: numbers, or a base64 string.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingValue {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OpenAiEmbedding {
    /// Always `embedding`.
    pub object: String,
    pub embedding: EmbeddingValue,
    pub index: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OpenAiUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OpenAiEmbedResponse {
    /// Always `list`.
    pub object: String,
    pub data: Vec<OpenAiEmbedding>,
    pub model: String,
    pub usage: OpenAiUsage,
}

/// `POST /tokenize`: answers one token list per input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeRequest {
    pub inputs: Inputs,
    /// Include `[CLS]`/`[SEP]` (or the model's equivalents), as the model sees them.
    #[serde(default = "yes")]
    pub add_special_tokens: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Token {
    pub id: u32,
    pub text: String,
    pub special: bool,
    /// Byte offsets of the token in the input (0, 0 for special tokens).
    pub start: usize,
    pub stop: usize,
}

/// How token embeddings become one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The mean over the real (unpadded) tokens.
    Mean,
    /// The first token's embedding.
    Cls,
}

/// `GET /info`: what is served and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EmbedderInfo {
    pub model: String,
    /// `torch` or `tensorflow`.
    pub backend: String,
    pub dimension: usize,
    /// Longest input in tokens (special tokens included).
    pub max_input_tokens: usize,
    pub pooling: Pooling,
    /// `cpu`, `cuda:0`, `/device:GPU:0`, ...
    pub device: String,
    /// `f32` or `f16`.
    pub dtype: String,
    pub intra_op_threads: usize,
    pub inter_op_threads: usize,
    /// Padded tokens (batch size × longest input) allowed in one batch.
    pub max_batch_tokens: usize,
    pub max_batch_size: usize,
    pub max_wait_ms: f64,
    /// Texts allowed to wait; beyond this requests get 429.
    pub max_queue: usize,
    /// Texts allowed in one request.
    pub max_client_batch: usize,
    pub version: String,
}
