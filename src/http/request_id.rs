//! Request ids: kept from `X-Request-Id` when it is well-formed, generated
//! (UUID v4) otherwise, passed inward as a header and a [`RequestId`]
//! extension, echoed on every response, and written into JSON error bodies.
//!
//! Client-supplied ids end up in logs and upstream headers, so they are
//! validated: at most 128 characters of `[A-Za-z0-9._-]`. A malformed id is
//! replaced, not rejected: the client still gets an answer and an id to quote.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Whether a client-supplied id may be kept.
pub fn is_valid(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Middleware: assign, propagate and echo the request id.
pub async fn assign(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_valid(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // Valid ids and UUIDs are plain ASCII, so this cannot fail.
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    req.headers_mut().insert(X_REQUEST_ID, value.clone());
    req.extensions_mut().insert(RequestId(id.clone()));

    let mut res = next.run(req).await;
    if let Some(err) = res.extensions_mut().remove::<ApiError>() {
        *res.body_mut() = Body::from(err.body(Some(&id)));
        res.headers_mut().remove(header::CONTENT_LENGTH);
    }
    res.headers_mut().insert(X_REQUEST_ID, value);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated_by_charset_and_length() {
        assert!(is_valid("abc-DEF_123.x"));
        assert!(is_valid(&"a".repeat(128)));
        assert!(!is_valid(""));
        assert!(!is_valid(&"a".repeat(129)));
        for bad in ["a b", "a\nb", "ä", "a/b", "<script>", "id;drop"] {
            assert!(!is_valid(bad), "{bad:?} must be replaced");
        }
    }
}
