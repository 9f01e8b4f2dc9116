//! How the gateway writes the answers it makes itself (refusals and errors),
//! and the parts every answer it writes shares: the status line, the
//! request id, CORS, and what `Connection` says.

use axum::http::StatusCode;

use super::cors::Cors;
use crate::h1::{Framing, Version, date};
use crate::http::error::ApiError;
use crate::http::request_id::RequestId;

/// What an answer's `Connection` field says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// The connection stays open (HTTP/1.0 clients are told so).
    KeepAlive { http10: bool },
    /// This is the last answer on the connection.
    Close,
}

impl Persistence {
    /// Open after this answer only if the client wants it and the gateway
    /// is not draining.
    pub fn decide(client_keep_alive: bool, version: Version, draining: bool) -> Persistence {
        if client_keep_alive && !draining {
            Persistence::KeepAlive {
                http10: version == Version::Http10,
            }
        } else {
            Persistence::Close
        }
    }

    pub fn keeps_open(self) -> bool {
        self != Persistence::Close
    }

    /// Appends the `Connection` field this needs, if any.
    pub fn write_field(self, out: &mut Vec<u8>) {
        match self {
            Persistence::Close => out.extend_from_slice(b"connection: close\r\n"),
            Persistence::KeepAlive { http10: true } => {
                out.extend_from_slice(b"connection: keep-alive\r\n");
            }
            Persistence::KeepAlive { http10: false } => {}
        }
    }
}

/// Writes a JSON error answer (the one error shape, with the request id)
/// into `out`.
pub fn write_error(
    out: &mut Vec<u8>,
    error: &ApiError,
    request_id: &RequestId,
    cors: Option<&Cors>,
    origin: Option<&[u8]>,
    persistence: Persistence,
) {
    let body = error.body(Some(request_id.as_str()));
    write_status_line(out, error.status.as_u16());
    out.extend_from_slice(b"content-type: application/json\r\n");
    if let Some(seconds) = error.retry_after {
        out.extend_from_slice(b"retry-after: ");
        out.extend_from_slice(itoa::Buffer::new().format(seconds).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    date::write_field(out);
    write_common_fields(out, request_id, cors, origin, persistence);
    super::headers::write_framing(out, Framing::Length(body.len() as u64));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
}

/// `HTTP/1.1 <status> <reason>\r\n`.
pub fn write_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The fields every answer the gateway writes gets: the request id, CORS
/// (when configured), and what `Connection` says.
pub fn write_common_fields(
    out: &mut Vec<u8>,
    request_id: &RequestId,
    cors: Option<&Cors>,
    origin: Option<&[u8]>,
    persistence: Persistence,
) {
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(request_id.0.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(cors) = cors {
        cors.write_fields(out, origin);
    }
    persistence.write_field(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_stays_open_only_if_the_client_wants_it_and_no_drain_began() {
        assert_eq!(
            Persistence::decide(true, Version::Http11, false),
            Persistence::KeepAlive { http10: false }
        );
        assert_eq!(
            Persistence::decide(true, Version::Http10, false),
            Persistence::KeepAlive { http10: true }
        );
        assert_eq!(
            Persistence::decide(false, Version::Http11, false),
            Persistence::Close
        );
        assert_eq!(
            Persistence::decide(true, Version::Http11, true),
            Persistence::Close
        );
    }

    #[test]
    fn an_error_answer_is_the_json_envelope_with_its_fields() {
        let error = ApiError::service_unavailable("overloaded", "retry shortly");
        let id = RequestId::keep_or_generate(Some(b"rid-7"));
        let mut out = Vec::new();
        write_error(&mut out, &error, &id, None, None, Persistence::Close);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        for field in [
            "content-type: application/json",
            "retry-after: 1",
            "x-request-id: rid-7",
            "connection: close",
            &format!("content-length: {}", body.len()),
        ] {
            assert!(head.contains(field), "{field} in {head}");
        }
        assert!(head.contains("\r\ndate: "), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "overloaded");
        assert_eq!(json["error"]["request_id"], "rid-7");
    }

    #[test]
    fn a_status_without_a_known_reason_gets_an_empty_one() {
        let mut out = Vec::new();
        write_status_line(&mut out, 599);
        assert_eq!(out, b"HTTP/1.1 599 \r\n");
    }
}
