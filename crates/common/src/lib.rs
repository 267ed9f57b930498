//! What every VDB service shares.
//!
//! - [`error`]: [`ApiError`], the one way a handler fails, rendered as the JSON error body.
//! - [`json`]: [`Json`], an extractor that turns every rejection into that JSON body too.
//! - [`listener`]: [`listener::nodelay`], the listener every service serves on.
//! - [`metrics`]: HTTP request metrics labelled by route template, and the `/metrics` handler.
//! - [`openapi`]: the drift check of each service's committed OpenAPI document.
//! - [`telemetry`]: structured logging setup.
//! - [`shutdown`]: a future that resolves on SIGINT or SIGTERM.

pub mod error;
pub mod json;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod shutdown;
pub mod telemetry;

pub use error::ApiError;
pub use json::Json;
