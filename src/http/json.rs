//! A JSON body extractor whose every rejection is an [`ApiError`], so bad
//! input gets the JSON envelope and a precise status instead of axum's
//! plain-text rejections.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;

use super::error::ApiError;

/// `axum::Json`, with JSON errors.
#[derive(Debug, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a request body with Content-Type: application/json",
            ),
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::bad_request("invalid_json", e.body_text())
            }
            JsonRejection::JsonDataError(e) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                e.body_text(),
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::payload_too_large("body_too_large", "the request body is too large")
            }
            other => ApiError::bad_request("invalid_body", other.body_text()),
        }
    }
}
