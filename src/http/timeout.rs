//! A deadline for the whole request. It also bounds how long a graceful
//! shutdown can wait for any one request.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Middleware state: the deadline.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeout(pub Duration);

/// Middleware: 503 `timeout` (with Retry-After) when the handler overruns.
/// 503 rather than 408: the server was slow, not the client.
pub async fn enforce(State(limit): State<RequestTimeout>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit.0, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::service_unavailable(
            "timeout",
            format!("the request took longer than {} ms", limit.0.as_millis()),
        )
        .into_response(),
    }
}
