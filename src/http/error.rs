//! The one error shape both services answer with:
//! `{"error":{"code":"…","message":"…","request_id":"…"}}`.
//!
//! Errors are created anywhere (handlers, extractors, middleware, the panic
//! catcher). [`ApiError::into_response`] stores the error in the response
//! extensions; the request-id middleware, which sits outermost and knows the
//! id, renders the final body. So every error carries its request id without
//! each producer having to know it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer: status, a stable machine-readable `code`, a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for `Retry-After` (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn payload_too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }

    /// A 500 whose message reveals nothing; the cause is logged where it happened.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the server hit an unexpected error; it has been logged",
        )
    }

    pub fn service_unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message).with_retry_after(1)
    }

    /// The JSON body, with the request id when it is known.
    pub fn body(&self, request_id: Option<&str>) -> String {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(id) = request_id {
            error["request_id"] = json!(id);
        }
        json!({ "error": error }).to_string()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body(None),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        res.extensions_mut().insert(self);
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn errors_render_as_the_json_envelope_with_retry_after() {
        let err = ApiError::service_unavailable("overloaded", "try later");
        let res = err.clone().into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(res.extensions().get::<ApiError>(), Some(&err));
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "overloaded");
        assert_eq!(v["error"]["message"], "try later");
    }

    #[test]
    fn body_includes_the_request_id_when_known() {
        let err = ApiError::not_found("nothing here");
        let v: serde_json::Value = serde_json::from_str(&err.body(Some("abc-1"))).unwrap();
        assert_eq!(v["error"]["request_id"], "abc-1");
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(err.to_string(), "404 not_found: nothing here");
    }

    #[test]
    fn retry_after_is_never_zero() {
        let err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down")
            .with_retry_after(0);
        assert_eq!(err.retry_after, Some(1));
    }
}
