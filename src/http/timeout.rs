//! A deadline for the whole request. It also bounds how long a graceful
//! shutdown can wait for any one request.

use std::time::Duration;

use super::error::ApiError;

/// The deadline of every request.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeout(pub Duration);

impl RequestTimeout {
    /// 503 `timeout` (with Retry-After) when the handler overruns.
    /// 503 rather than 408: the server was slow, not the client.
    pub fn error(self) -> ApiError {
        ApiError::service_unavailable(
            "timeout",
            format!("the request took longer than {} ms", self.0.as_millis()),
        )
    }
}
