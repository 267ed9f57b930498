//! Typed async client of the embedder (`vdb-embedder`).
//!
//! Errors say what the caller should do: [`EmbedError::Unavailable`] (down, starting, timed
//! out: answer 503 or retry elsewhere), [`EmbedError::Refused`] (the text itself is refused,
//! e.g. too long without truncation: answer 422), [`EmbedError::Overloaded`] (429: back off).
//!
//! ```no_run
//! use vdb_client::embedder::EmbedderClient;
//!
//! # async fn demo() -> Result<(), vdb_client::embedder::EmbedError> {
//! let embedder = EmbedderClient::new("http://127.0.0.1:6336")?;
//! let vectors = embedder.embed(&["a vector database", "debian packages"], true).await?;
//! assert_eq!(vectors.len(), 2);
//! # Ok(())
//! # }
//! ```

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use vdb_api::embed::{EmbedderInfo, Token};
use vdb_api::{ErrorBody, ErrorCode};

/// Per-request timeout of [`EmbedderClient::new`]: a full batch on a busy CPU takes seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Texts per request; longer lists are sent in several requests (the server refuses more
/// than its `max_client_batch`, 1024 by default).
pub const DEFAULT_CHUNK: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// Not reachable, not ready (503), timed out, or the connection broke.
    #[error("embedder unavailable: {0}")]
    Unavailable(String),
    /// The server refuses this input (422): e.g. over the model's length limit.
    #[error("embedder refused the input: {message}")]
    Refused { code: ErrorCode, message: String },
    /// The server's queue is full (429); retry later.
    #[error("embedder overloaded")]
    Overloaded,
    /// Another 4xx: the request itself is wrong (a bug in the caller).
    #[error("embedder rejected the request: HTTP {status} {code}: {message}")]
    BadRequest { status: u16, code: ErrorCode, message: String },
    /// The server failed (5xx other than 503).
    #[error("embedder failed: HTTP {status}")]
    Server { status: u16 },
    /// The answer is not what the API promises.
    #[error("cannot decode the embedder's answer: {0}")]
    Decode(String),
    /// A base URL that is not http(s).
    #[error("embedder client configuration: {0}")]
    Config(String),
}

impl EmbedError {
    /// Whether trying again later (or elsewhere) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            EmbedError::Unavailable(_) | EmbedError::Overloaded | EmbedError::Server { .. }
        )
    }

    fn from_status(status: u16, body: &[u8]) -> Self {
        let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => (b.error.code, b.error.message),
            Err(_) => (
                ErrorCode::ALL
                    .into_iter()
                    .find(|c| c.http_status() == status)
                    .unwrap_or(ErrorCode::Internal),
                String::from_utf8_lossy(body).chars().take(200).collect(),
            ),
        };
        match status {
            422 => EmbedError::Refused { code, message },
            429 => EmbedError::Overloaded,
            503 => EmbedError::Unavailable(message),
            400..=499 => EmbedError::BadRequest { status, code, message },
            _ => EmbedError::Server { status },
        }
    }
}

impl From<reqwest::Error> for EmbedError {
    fn from(e: reqwest::Error) -> Self {
        EmbedError::Unavailable(if e.is_timeout() { "timed out".into() } else { e.to_string() })
    }
}

/// A client of one embedder. Cheap to clone: clones share the connection pool.
#[derive(Clone, Debug)]
pub struct EmbedderClient {
    http: reqwest::Client,
    base: Url,
    chunk: usize,
}

#[derive(Serialize)]
struct EmbedBody<'a> {
    inputs: Vec<&'a str>,
    truncate: bool,
}

#[derive(Serialize)]
struct TokenizeBody<'a> {
    inputs: Vec<&'a str>,
}

impl EmbedderClient {
    /// A client for the embedder at `base_url` (e.g. `http://127.0.0.1:6336`) with
    /// [`DEFAULT_TIMEOUT`].
    pub fn new(base_url: &str) -> Result<Self, EmbedError> {
        Self::with_timeout(base_url, DEFAULT_TIMEOUT)
    }

    /// A client whose every request must complete within `timeout`.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Self, EmbedError> {
        let base = Url::parse(base_url)
            .map_err(|e| EmbedError::Config(format!("base URL {base_url:?}: {e}")))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(EmbedError::Config(format!("base URL {base_url:?} is not http(s)")));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| EmbedError::Config(e.to_string()))?;
        Ok(EmbedderClient { http, base, chunk: DEFAULT_CHUNK })
    }

    /// Sends at most `chunk` texts per request.
    pub fn with_chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk.max(1);
        self
    }

    /// One L2-normalised vector per text, in order. Texts over the model's limit are cut when
    /// `truncate`, refused ([`EmbedError::Refused`]) otherwise.
    pub async fn embed<S: AsRef<str>>(
        &self,
        texts: &[S],
        truncate: bool,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.chunk) {
            let body = EmbedBody { inputs: chunk.iter().map(AsRef::as_ref).collect(), truncate };
            let vectors: Vec<Vec<f32>> = self.call(Method::POST, "embed", Some(&body)).await?;
            if vectors.len() != chunk.len() {
                return Err(EmbedError::Decode(format!(
                    "{} vectors for {} texts",
                    vectors.len(),
                    chunk.len()
                )));
            }
            out.extend(vectors);
        }
        Ok(out)
    }

    /// The tokens of each text as the model sees them.
    pub async fn tokenize<S: AsRef<str>>(
        &self,
        texts: &[S],
    ) -> Result<Vec<Vec<Token>>, EmbedError> {
        let body = TokenizeBody { inputs: texts.iter().map(AsRef::as_ref).collect() };
        self.call(Method::POST, "tokenize", Some(&body)).await
    }

    /// `GET /info`: model, dimension, device, limits.
    pub async fn info(&self) -> Result<EmbedderInfo, EmbedError> {
        self.call::<(), _>(Method::GET, "info", None).await
    }

    /// `GET /readyz`: true once the model is loaded; false while loading (503).
    pub async fn ready(&self) -> Result<bool, EmbedError> {
        match self.raw(Method::GET, "readyz", None::<&()>).await {
            Ok(_) => Ok(true),
            Err(EmbedError::Unavailable(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET /metrics`: Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String, EmbedError> {
        let bytes = self.raw(Method::GET, "metrics", None::<&()>).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, EmbedError> {
        let bytes = self.raw(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| EmbedError::Decode(e.to_string()))
    }

    async fn raw<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Vec<u8>, EmbedError> {
        let url = self.base.join(path).map_err(|e| EmbedError::Config(e.to_string()))?;
        let mut req = self.http.request(method, url);
        if let Some(body) = body {
            req = req.json(body);
        }
        let response = req.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?.to_vec();
        if !(200..300).contains(&status) {
            return Err(EmbedError::from_status(status, &bytes));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_what_the_caller_does() {
        let body = br#"{"error":{"code":"unprocessable","message":"input 0 has 300 tokens"}}"#;
        assert!(matches!(
            EmbedError::from_status(422, body),
            EmbedError::Refused { code: ErrorCode::Unprocessable, .. }
        ));
        assert!(matches!(EmbedError::from_status(429, b""), EmbedError::Overloaded));
        assert!(matches!(EmbedError::from_status(503, b"down"), EmbedError::Unavailable(_)));
        assert!(matches!(EmbedError::from_status(413, b"big"), EmbedError::BadRequest { .. }));
        assert!(matches!(EmbedError::from_status(500, b""), EmbedError::Server { status: 500 }));
        assert!(EmbedError::Overloaded.is_retryable());
        assert!(!EmbedError::Refused { code: ErrorCode::Unprocessable, message: String::new() }
            .is_retryable());
    }
}
