//! HTTP building blocks both services stack around their routes.
//!
//! Order, outermost first: [`request_id`] (and JSON error bodies get the id)
//! → [`observe`] (access log, metrics, trace span) → panic catching →
//! per-service limits ([`timeout`], [`body_limit`]) → routes, all in one
//! service, [`stack::Common`]. [`error::ApiError`] is the one error shape.

pub mod body_limit;
pub mod error;
pub mod json;
pub mod observe;
pub mod request_id;
pub mod routes;
pub mod stack;
pub mod timeout;

pub use stack::{Common, CommonLayer};

use axum::response::{IntoResponse, Response};

/// Turns a handler panic into a JSON 500 (the process keeps serving; the
/// release profile keeps `panic = "unwind"` for this).
pub fn panic_to_500(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    tracing::error!(panic = %detail, "handler panicked");
    error::ApiError::internal().into_response()
}

/// Now, as an RFC 3339 UTC timestamp (the `timestamp` of health answers).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// The JSON 404 for every unknown route.
pub async fn not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::not_found(format!("no route for {}", uri.path()))
}

/// The JSON 405 for a known route with the wrong method.
pub async fn method_not_allowed(method: axum::http::Method) -> error::ApiError {
    error::ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("method {method} is not allowed on this route"),
    )
}

/// A service's whole HTTP app: its router inside the [`Common`] stack.
pub type App = Common<axum::Router>;
