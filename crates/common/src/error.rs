//! [`ApiError`]: an error code and a message for the client, rendered as
//! `{"error": {"code", "message"}}` with the status from [`ErrorCode::http_status`].

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use vdb_api::{ErrorBody, ErrorCode};

/// An error on its way to the client. Internal errors carry no detail: log the cause where it
/// happens and return [`ApiError::internal`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn overloaded() -> Self {
        Self::new(ErrorCode::Overloaded, "too many requests in flight; retry later")
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// A server-side failure; the message shown is generic on purpose.
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error; see the server log")
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response =
            (status, axum::Json(ErrorBody::new(self.code, self.message))).into_response();
        if self.code == ErrorCode::Overloaded {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}
