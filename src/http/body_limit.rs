//! Request body limits: an early 413 when `Content-Length` is over the limit,
//! and a [`Limited`] body otherwise, so a chunked or lying body is cut off at
//! the limit while it streams (nothing is buffered here).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::Limited;

use super::error::ApiError;

/// Middleware state: the largest accepted body, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

impl BodyLimit {
    pub fn error(self) -> ApiError {
        ApiError::payload_too_large(
            "body_too_large",
            format!("the request body exceeds the limit of {} bytes", self.0),
        )
    }
}

/// Middleware: enforce the limit.
pub async fn enforce(State(limit): State<BodyLimit>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit.0 as u64) {
        return limit.error().into_response();
    }
    next.run(req.map(|body| Body::new(Limited::new(body, limit.0))))
        .await
}

/// Whether an error (or anything in its source chain) is the body limit.
pub fn is_limit_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = e.source();
    }
    false
}
