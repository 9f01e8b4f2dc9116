//! Request body limits: an early 413 when `Content-Length` is over the limit,
//! and a [`Limited`] body otherwise, so a chunked or lying body is cut off at
//! the limit while it streams (nothing is buffered here).

use axum::body::{Body, HttpBody as _};
use axum::extract::Request;
use axum::http::header;
use http_body_util::Limited;

use super::error::ApiError;

/// The largest accepted body, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

impl BodyLimit {
    pub fn error(self) -> ApiError {
        ApiError::payload_too_large(
            "body_too_large",
            format!("the request body exceeds the limit of {} bytes", self.0),
        )
    }

    /// Refuses a request whose declared length is over the limit; otherwise
    /// wraps its body so that streaming stops at the limit.
    pub fn apply(self, req: &mut Request) -> Result<(), ApiError> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.0 as u64) {
            return Err(self.error());
        }
        // An empty body (a GET, say) needs no wrapper.
        if !req.body().is_end_stream() {
            let body = std::mem::take(req.body_mut());
            *req.body_mut() = Body::new(Limited::new(body, self.0));
        }
        Ok(())
    }
}
