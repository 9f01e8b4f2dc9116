//! The gateway's own endpoints — `/api/health`, `/api/ready`,
//! `/api/metrics`, the JSON 404 and 405, CORS preflights — are an axum
//! router behind the common stack (request id, access log, metrics), as in
//! jessy-core. Here a request the connection parsed is handed to that router
//! and its answer written back. These are probes and errors, not the
//! traffic the gateway is for, so a header map is built and bodies are
//! collected whole.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, Response, header};
use tower::ServiceExt;

use super::Gateway;
use super::answer::{self, Persistence};
use super::connection::{Connection, Deadlines};
use super::relay::{self, Encode, RelayError, Source};
use crate::h1::request::RequestHead;
use crate::h1::{Framing, HeadError, Version};
use crate::http::request_id::{RequestId, X_REQUEST_ID};
use crate::server::Draining;

/// A request for the gateway's own router.
pub struct Local {
    request: Request<()>,
    framing: Framing,
    version: Version,
    keep_alive: bool,
}

/// The request for the router, from the parsed head and the path it is
/// routed by (the body is read when it is answered).
pub fn plan(head: &RequestHead<'_, '_>, path: &str, framing: Framing) -> Result<Local, HeadError> {
    let invalid = |_| HeadError::Invalid("invalid request");
    let mut request = Request::builder()
        .method(head.method)
        .uri(path)
        .version(match head.version {
            Version::Http10 => axum::http::Version::HTTP_10,
            Version::Http11 => axum::http::Version::HTTP_11,
        })
        .body(())
        .map_err(invalid)?;
    let headers = request.headers_mut();
    for field in head.headers {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| HeaderError)?;
        let value = HeaderValue::from_bytes(field.value).map_err(|_| HeaderError)?;
        headers.append(name, value);
    }
    Ok(Local {
        request,
        framing,
        version: head.version,
        keep_alive: head.keep_alive(),
    })
}

/// A field httparse let through that `http` refuses (it is stricter about
/// some bytes in values).
struct HeaderError;

impl From<HeaderError> for HeadError {
    fn from(HeaderError: HeaderError) -> HeadError {
        HeadError::Invalid("invalid header field")
    }
}

/// Reads the body, asks the router, writes its answer. Returns whether the
/// connection stays open.
pub async fn answer(
    conn: &mut Connection,
    gateway: &Gateway,
    local: Local,
    deadlines: &mut Deadlines,
    drain: &Draining,
) -> bool {
    let Local {
        request,
        framing,
        version,
        keep_alive,
    } = local;
    let mut body = Vec::new();
    let source = Source {
        io: &mut conn.stream,
        buf: &mut conn.buf,
        framing,
    };
    let limit = gateway.admission.body_limit.0 as u64;
    // The endpoints read no body: it only has to arrive, as a head must.
    let deadline = tokio::time::Instant::now() + gateway.timeouts.header_read;
    deadlines.client.as_mut().reset(deadline);
    let mut staged = Vec::new();
    let read = tokio::select! {
        biased;
        read = relay::body(source, &mut body, &mut staged, Encode::Raw, limit) => read,
        () = deadlines.client.as_mut() => return false,
    };
    match read {
        Ok(_) => {}
        Err(RelayError::TooLarge) => {
            let request_id = RequestId::keep_or_generate(
                request
                    .headers()
                    .get(X_REQUEST_ID)
                    .map(HeaderValue::as_bytes),
            );
            let origin = request
                .headers()
                .get(header::ORIGIN)
                .map(HeaderValue::as_bytes);
            conn.out.clear();
            answer::write_error(
                &mut conn.out,
                &gateway.admission.body_limit.error(),
                &request_id,
                gateway.cors.as_ref(),
                origin,
                Persistence::Close,
            );
            let _ = relay::flush(&mut conn.stream, &mut conn.out).await;
            return false;
        }
        Err(_) => return false,
    }
    let head_request = request.method() == axum::http::Method::HEAD;
    let request = request.map(|()| Body::from(body));
    let response = match gateway.app.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return false;
    };
    let persistence = Persistence::decide(keep_alive, version, drain.has_begun());
    conn.out.clear();
    write_response(
        &mut conn.out,
        &Response::from_parts(parts, ()),
        &body,
        head_request,
        persistence,
    );
    relay::flush(&mut conn.stream, &mut conn.out).await.is_ok() && persistence.keeps_open()
}

/// Writes the router's answer: its fields (framing and connection ones are
/// the gateway's to write), a `Date` when it has none, the length, the body.
fn write_response(
    out: &mut Vec<u8>,
    response: &Response<()>,
    body: &[u8],
    head_request: bool,
    persistence: Persistence,
) {
    let status = response.status().as_u16();
    answer::write_status_line(out, status);
    for (name, value) in response.headers() {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !response.headers().contains_key(header::DATE) {
        crate::h1::date::write_field(out);
    }
    persistence.write_field(out);
    let bodiless_status = status == 204 || status == 304 || (100..200).contains(&status);
    if !bodiless_status {
        super::headers::write_framing(out, Framing::Length(body.len() as u64));
    }
    out.extend_from_slice(b"\r\n");
    if !head_request && !bodiless_status {
        out.extend_from_slice(body);
    }
}
