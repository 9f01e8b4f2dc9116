//! Bounded concurrency: at most N requests are forwarded at once; beyond
//! that the gateway sheds load with 503 `overloaded` and `Retry-After`
//! instead of queueing without bound (a queue only adds latency to requests
//! that will time out anyway).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::http::error::ApiError;

/// Middleware state: the permits.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit(pub Arc<Semaphore>);

impl ConcurrencyLimit {
    pub fn new(max: usize) -> Self {
        ConcurrencyLimit(Arc::new(Semaphore::new(max)))
    }
}

/// Middleware: take a permit for the request's lifetime, or shed it.
pub async fn enforce(State(limit): State<ConcurrencyLimit>, req: Request, next: Next) -> Response {
    match limit.0.clone().try_acquire_owned() {
        Ok(_permit) => next.run(req).await,
        Err(_) => ApiError::service_unavailable(
            "overloaded",
            "the gateway is at its concurrency limit; retry shortly",
        )
        .into_response(),
    }
}
