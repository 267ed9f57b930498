//! [`Json`]: axum's JSON extractor, but every rejection becomes a JSON [`ApiError`].

use crate::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use vdb_api::ErrorCode;

/// Extracts and renders JSON. A rejected body answers 400 (bad JSON or shape), 413 (too
/// large) or 415 (not JSON) with the JSON error body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(rejection_to_error(rejection)),
        }
    }
}

fn rejection_to_error(rejection: JsonRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(ErrorCode::PayloadTooLarge, "request body exceeds the configured limit")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected a body with content-type application/json",
        ),
        _ => {
            // The body text is serde's message (line, column, what was expected) and is safe.
            let text = rejection.body_text();
            let message = if text.contains("length limit exceeded") {
                return ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "request body exceeds the configured limit",
                );
            } else {
                text
            };
            ApiError::new(ErrorCode::MalformedJson, message)
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}
