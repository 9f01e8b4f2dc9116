//! Request ids: kept from `X-Request-Id` when it is well-formed, generated
//! (UUID v4) otherwise, logged, echoed on every response, and written into
//! JSON error bodies. The gateway forwards it to the core on its own path
//! (`gateway::headers`); no handler reads it from the request, so a
//! generated id is not written into the request's headers.
//!
//! Client-supplied ids end up in logs and upstream headers, so they are
//! validated: at most 128 characters of `[A-Za-z0-9._-]`. A malformed id is
//! replaced, not rejected: the client still gets an answer and an id to quote.

use std::cell::Cell;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;

use super::error::ApiError;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served (always valid ASCII, so it is also a
/// header value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Only valid ids and UUIDs are ever stored.
        self.0.to_str().unwrap_or("invalid")
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a client-supplied id may be kept.
pub fn is_valid(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The request's id: its `X-Request-Id` when well-formed, a new one otherwise.
pub fn assign(req: &Request) -> RequestId {
    match req.headers().get(&X_REQUEST_ID) {
        Some(id) if is_valid(id.as_bytes()) => RequestId(id.clone()),
        _ => RequestId(generate()),
    }
}

impl RequestId {
    /// The client's id (the value of its `X-Request-Id`) when it is
    /// well-formed, a new one otherwise.
    pub fn keep_or_generate(client: Option<&[u8]>) -> RequestId {
        match client
            .filter(|id| is_valid(id))
            .map(HeaderValue::from_bytes)
        {
            Some(Ok(id)) => RequestId(id),
            _ => RequestId(generate()),
        }
    }
}

/// Echoes the id on the response and, for an error answer, renders the JSON
/// body with the id in it.
pub fn finish(res: &mut Response, id: RequestId) {
    if let Some(err) = res.extensions_mut().remove::<ApiError>() {
        *res.body_mut() = Body::from(err.body(Some(id.as_str())));
        res.headers_mut().remove(header::CONTENT_LENGTH);
    }
    res.headers_mut().insert(X_REQUEST_ID, id.0);
}

thread_local! {
    /// Per-thread generator state, seeded once from the OS.
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0x9e; 8])) | 1
}

/// A random UUID v4. Ids must be unique, not secret, so the bits come from a
/// per-thread wyrand generator seeded from the OS: one `getrandom` syscall
/// per request (what `Uuid::new_v4` costs) was a measurable share of a
/// `/health` request.
pub fn generate() -> HeaderValue {
    let random = STATE.with(|state| {
        let next = || {
            let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
            state.set(s);
            let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
            ((t >> 64) as u64) ^ (t as u64)
        };
        (u128::from(next()) << 64) | u128::from(next())
    });
    let uuid = uuid::Builder::from_random_bytes(random.to_le_bytes()).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    HeaderValue::from_bytes(uuid.hyphenated().encode_lower(&mut buf).as_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated_by_charset_and_length() {
        assert!(is_valid(b"abc-DEF_123.x"));
        assert!(is_valid("a".repeat(128).as_bytes()));
        assert!(!is_valid(b""));
        assert!(!is_valid("a".repeat(129).as_bytes()));
        for bad in ["a b", "a\nb", "ä", "a/b", "<script>", "id;drop"] {
            assert!(!is_valid(bad.as_bytes()), "{bad:?} must be replaced");
        }
    }

    #[test]
    fn a_client_id_is_kept_when_valid_and_replaced_otherwise() {
        assert_eq!(
            RequestId::keep_or_generate(Some(b"rid-42")).as_str(),
            "rid-42"
        );
        for bad in [Some(&b"a b"[..]), Some(b""), None] {
            let id = RequestId::keep_or_generate(bad);
            assert!(
                uuid::Uuid::parse_str(id.as_str()).is_ok(),
                "{bad:?} -> {id}"
            );
        }
    }

    #[test]
    fn generated_ids_are_distinct_v4_uuids() {
        let ids: std::collections::HashSet<String> = (0..10_000)
            .map(|_| generate().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 10_000, "no repeats");
        for id in ids.iter().take(100) {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version_num(), 4, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert!(is_valid(id.as_bytes()));
        }
    }

    #[test]
    fn threads_do_not_repeat_each_other() {
        let batch = || (0..1000).map(|_| generate()).collect::<Vec<_>>();
        let a = std::thread::spawn(batch).join().unwrap();
        let b = std::thread::spawn(batch).join().unwrap();
        assert!(a.iter().all(|id| !b.contains(id)));
    }
}
