//! Bounded concurrency: at most N requests are forwarded at once; beyond
//! that the gateway sheds load with 503 `overloaded` and `Retry-After`
//! instead of queueing without bound (a queue only adds latency to requests
//! that will time out anyway).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::error::ApiError;

/// The permits.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit(pub Arc<Semaphore>);

impl ConcurrencyLimit {
    pub fn new(max: usize) -> Self {
        ConcurrencyLimit(Arc::new(Semaphore::new(max)))
    }

    /// A permit to hold for the request's lifetime, or 503 `overloaded`.
    pub fn acquire(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.0.clone().try_acquire_owned().map_err(|_| {
            ApiError::service_unavailable(
                "overloaded",
                "the gateway is at its concurrency limit; retry shortly",
            )
        })
    }
}
