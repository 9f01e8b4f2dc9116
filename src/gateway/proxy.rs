//! Forwarding `/api/v1/*` to jessy-core, streaming both ways.
//!
//! Failure mapping (what the client sees when the core misbehaves):
//! - the core takes no more of the request, or sends no response head, for
//!   UPSTREAM_TIMEOUT → 504 `upstream_timeout`;
//! - the core refuses, resets or cannot be connected to within
//!   UPSTREAM_CONNECT_TIMEOUT → 502 `upstream_unavailable` (502 rather than
//!   503: the gateway itself is fine, its upstream is not);
//! - any status the core answers, 4xx and 5xx included, passes through
//!   unchanged, also when it answers before taking the whole body and
//!   closes (then the client's connection closes after it).
//!
//! And when the client misbehaves: its body crosses MAX_BODY_SIZE while
//! streaming → 413; it stops sending its body for CLIENT_BODY_TIMEOUT →
//! 408 `body_timeout`. Either way its connection closes, as it does after
//! any failure that leaves part of a body unread (the core unreachable
//! before the body was read included): what is left of a body is never
//! read as a request. [`super::timeouts`] lists every timeout.
//!
//! A pooled connection can be closed by the core (its idle timeout, its
//! shutdown) a moment before a request goes out on it. Such a request is
//! sent once more, on a new connection, only when it is idempotent and has
//! no body (nginx's `proxy_next_upstream` rule): a POST already written is
//! never sent twice, that is a 502.

use std::pin::Pin;
use std::time::Instant;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;
use tracing::Instrument;

use super::Gateway;
use super::answer::{self, Persistence};
use super::connection::{Connection, Deadlines};
use super::exchange::{self, CoreResponse, ExchangeError};
use super::headers::{self, Peer, Upstream as UpstreamHead};
use super::pool::CoreConn;
use super::rejections;
use super::relay::{self, Encode, RelayError, Source};
use super::timeouts::{self, Idle};
use super::upstream::{Upstream, UpstreamState};
use crate::h1::chunked::ChunkError;
use crate::h1::request::RequestHead;
use crate::h1::response::ResponseHead;
use crate::h1::{Framing, Version, name_is};
use crate::http::error::ApiError;
use crate::http::observe::Observation;
use crate::http::request_id::RequestId;
use crate::server::Draining;

/// Whether a request for `path_and_query` goes to the core: `/api/v1/`
/// and something after it.
pub fn is_forwarded(path_and_query: &str) -> bool {
    let path = path_only(path_and_query);
    path.strip_prefix("/api/v1/")
        .is_some_and(|rest| !rest.is_empty())
}

fn path_only(path_and_query: &str) -> &str {
    path_and_query
        .split_once('?')
        .map_or(path_and_query, |(path, _)| path)
}

/// The route label of a forwarded path in metrics and logs: the three
/// routes the core documents by name, every other one as the wildcard.
fn route(path_and_query: &str) -> &'static str {
    match path_only(path_and_query) {
        "/api/v1/query" => "/api/v1/query",
        "/api/v1/status" => "/api/v1/status",
        "/api/v1/health" => "/api/v1/health",
        _ => "/api/v1/{*rest}",
    }
}

/// A forwarded request, as the connection keeps it once its head has left
/// the read buffer (the core's request head is in the connection's output
/// buffer when it was admitted).
pub struct Forward {
    observation: Observation,
    route: &'static str,
    request: RequestFacts,
    admitted: Result<OwnedSemaphorePermit, ApiError>,
}

/// What answering needs to know about the request.
struct RequestFacts {
    request_id: RequestId,
    head_request: bool,
    /// Idempotent and without a body: safe to send twice.
    replayable: bool,
    framing: Framing,
    expects_continue: bool,
    version: Version,
    keep_alive: bool,
    /// The `Origin` it came with, when CORS is configured.
    origin: Option<Box<[u8]>>,
}

/// Starts observing the request, runs admission and, when admitted, writes
/// the core's request head into `out`.
pub fn plan(
    head: &RequestHead<'_, '_>,
    path: &str,
    framing: Framing,
    peer: &Peer,
    gateway: &Gateway,
    out: &mut Vec<u8>,
) -> Forward {
    let request_id = RequestId::keep_or_generate(field(head, "x-request-id"));
    let method = Method::from_bytes(head.method.as_bytes()).unwrap_or_default();
    let uri = Uri::try_from(path).unwrap_or_else(|_| Uri::from_static("/"));
    let replayable = method.is_idempotent() && framing == Framing::Empty;
    let observation = Observation::begin(
        method,
        uri,
        request_id.clone(),
        &gateway.state.metrics,
        |span| crate::telemetry::continue_trace(span, &trace_context(head)),
    );
    let forwarded_for = head
        .headers
        .iter()
        .filter(|h| name_is(h.name, "x-forwarded-for"))
        .map(|h| h.value);
    let admitted = gateway.admission.admit(peer.ip, forwarded_for, framing);
    out.clear();
    if admitted.is_ok() {
        let injected = observation
            .span()
            .in_scope(crate::telemetry::trace_context_to_send);
        let upstream = UpstreamHead {
            path: &Upstream::path_for(path),
            authority: gateway.state.upstream.authority(),
            request_id: &request_id,
            framing,
            injected: &injected,
        };
        headers::write_request_head(out, head, peer, &upstream);
    }
    Forward {
        observation,
        route: route(path),
        request: RequestFacts {
            request_id,
            head_request: head.method == "HEAD",
            replayable,
            framing,
            expects_continue: head.expects_continue(),
            version: head.version,
            keep_alive: head.keep_alive(),
            origin: gateway
                .cors
                .as_ref()
                .and_then(|_| field(head, "origin"))
                .map(Box::from),
        },
        admitted,
    }
}

/// The value of the first field called `name`.
fn field<'b>(head: &RequestHead<'_, 'b>, name: &str) -> Option<&'b [u8]> {
    head.headers
        .iter()
        .find(|h| name_is(h.name, name))
        .map(|h| h.value)
}

/// The incoming trace context, for a span that continues it (only built
/// when trace export is on).
fn trace_context(head: &RequestHead<'_, '_>) -> HeaderMap {
    let mut context = HeaderMap::new();
    for name in ["traceparent", "tracestate"] {
        if let Some(value) = field(head, name).and_then(|v| HeaderValue::from_bytes(v).ok()) {
            context.insert(HeaderName::from_static(name), value);
        }
    }
    context
}

/// Why a forwarded request got no answer from the core.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("cannot connect to jessy-core: {0}")]
    Connect(#[source] std::io::Error),
    /// Writing the request failed (its body may be partly unread) and the
    /// core had not answered.
    #[error("sending the request to jessy-core failed: {0}")]
    Send(#[source] std::io::Error),
    /// The core took no more of the request, or sent no response head, for
    /// UPSTREAM_TIMEOUT.
    #[error("jessy-core did not take the request or answer it within {0} ms")]
    CoreStalled(u128),
    /// The request went out whole; its answer did not come.
    #[error(transparent)]
    Core(#[from] ExchangeError),
    #[error("the request body is over the limit")]
    TooLarge,
    #[error(transparent)]
    BadBody(ChunkError),
    /// No more of the body came for CLIENT_BODY_TIMEOUT.
    #[error("no more of the request body arrived within {0} ms")]
    ClientStalled(u128),
    #[error("the client went away")]
    ClientGone,
}

/// How the response body goes to the client.
#[derive(Debug, Clone, Copy)]
struct ClientFraming {
    encode: Encode,
    persistence: Persistence,
}

/// Answers a planned request: refused, or forwarded and relayed back.
/// Returns whether the connection stays open.
pub async fn forward(
    conn: &mut Connection,
    gateway: &Gateway,
    forward: Forward,
    deadlines: &mut Deadlines,
    drain: &Draining,
) -> bool {
    let Forward {
        observation,
        route,
        request,
        admitted,
    } = forward;
    // Decided when the answer is written: a drain that began meanwhile
    // makes it the connection's last.
    let persistence =
        || Persistence::decide(request.keep_alive, request.version, drain.has_begun());
    let permit = match admitted {
        Ok(permit) => permit,
        Err(refusal) => {
            // The body was not read: the connection can go on only if it
            // has none or all of it is here already.
            let persistence = if skip_buffered_body(conn, request.framing) {
                persistence()
            } else {
                Persistence::Close
            };
            return answer_error(
                conn,
                gateway,
                &request,
                observation,
                route,
                &refusal,
                persistence,
            )
            .await;
        }
    };

    let upstream = &gateway.state.upstream;
    let started = Instant::now();
    let span = observation.span().clone();
    let exchanged = exchange_with_core(conn, gateway, &request, &persistence, deadlines)
        .instrument(span)
        .await;
    let (mut core, response, client) = match exchanged {
        Ok(exchanged) => exchanged,
        Err(ForwardError::ClientGone) => return false,
        Err(err) => {
            // The connection is in step only if the whole request was read:
            // it went out whole, or had no body, or the core was never
            // reached and all of the body is here to be skipped. Otherwise
            // what is left of the body must never be read as a request.
            let in_step = match err {
                ForwardError::Core(_) => true,
                ForwardError::Connect(_) => skip_buffered_body(conn, request.framing),
                _ => request.framing == Framing::Empty,
            };
            let persistence = if in_step {
                persistence()
            } else {
                Persistence::Close
            };
            let error = failure_answer(gateway, &err);
            return answer_error(
                conn,
                gateway,
                &request,
                observation,
                route,
                &error,
                persistence,
            )
            .await;
        }
    };
    upstream.mark(UpstreamState::Up);
    upstream.record_latency(response.status, started.elapsed());
    drop(permit);
    observation.end(route, response.status);

    // Neither side may stall the relay for longer than its idle timeout.
    let timeouts = &gateway.timeouts;
    let relayed = {
        let mut from_core = Idle::new(
            &mut core.stream,
            deadlines.upstream.as_mut(),
            timeouts.upstream,
        );
        let mut to_client = Idle::new(
            &mut conn.stream,
            deadlines.client.as_mut(),
            timeouts.client_send,
        );
        let source = Source {
            io: &mut from_core,
            buf: &mut core.buf,
            framing: response.framing,
        };
        relay::body(
            source,
            &mut to_client,
            &mut conn.out,
            client.encode,
            u64::MAX,
        )
        .await
    };
    match relayed {
        Ok(_) => {
            if response.reusable {
                upstream.pool().checkin(core);
            }
            client.persistence.keeps_open()
        }
        Err(err) => {
            // The head is out: all that can be done is to close.
            tracing::debug!(error = %err, "relaying the core's response body failed");
            false
        }
    }
}

/// Sends the request to the core and reads its response head, writing the
/// client's head into the output buffer; one retry on a fresh connection
/// for a replayable request whose pooled connection turned out closed.
async fn exchange_with_core(
    conn: &mut Connection,
    gateway: &Gateway,
    request: &RequestFacts,
    persistence: &impl Fn() -> Persistence,
    deadlines: &mut Deadlines,
) -> Result<(CoreConn, CoreResponse, ClientFraming), ForwardError> {
    let pool = gateway.state.upstream.pool();
    let mut core = pool.checkout().await.map_err(ForwardError::Connect)?;
    let mut retried = false;
    loop {
        let answered = match send_request(conn, &mut core, gateway, request, deadlines).await {
            Ok(()) => {
                let timer = deadlines.upstream.as_mut();
                read_head(conn, &mut core, gateway, request, persistence, timer).await
            }
            Err(ForwardError::Send(err)) if request.framing != Framing::Empty => {
                early_answer(conn, &mut core, gateway, request, deadlines)
                    .await
                    .ok_or(ForwardError::Send(err))
            }
            Err(err) => Err(err),
        };
        match answered {
            Ok((response, client)) => return Ok((core, response, client)),
            Err(err)
                if !retried && request.replayable && core.reused && unanswered(&err, &core) =>
            {
                tracing::debug!(error = %err, "pooled connection to jessy-core was closed; retrying once");
                retried = true;
                core = pool.connect().await.map_err(ForwardError::Connect)?;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Reads the core's response head, within UPSTREAM_TIMEOUT from now, and
/// writes the client's head from it.
async fn read_head(
    conn: &mut Connection,
    core: &mut CoreConn,
    gateway: &Gateway,
    request: &RequestFacts,
    persistence: &impl Fn() -> Persistence,
    mut timer: Pin<&mut Sleep>,
) -> Result<(CoreResponse, ClientFraming), ForwardError> {
    let cors = gateway.cors.as_ref();
    let out = &mut conn.out;
    let within = gateway.timeouts.upstream;
    timer.as_mut().reset((Instant::now() + within).into());
    let reading = exchange::read_response_head(core, request.head_request, |head, framing| {
        out.clear();
        write_client_head(out, head, framing, request, cors, persistence())
    });
    tokio::select! {
        biased;
        read = reading => read.map_err(ForwardError::Core),
        () = timer => Err(ForwardError::CoreStalled(within.as_millis())),
    }
}

/// The core's answer after it stopped taking the request body, if it sent
/// one before closing: a server may answer early (a 413, a 401) and close
/// without reading the rest. That answer is the client's to see, not a
/// 502. The client's connection closes after it (the body was not all
/// read) and the core's is not reused.
async fn early_answer(
    conn: &mut Connection,
    core: &mut CoreConn,
    gateway: &Gateway,
    request: &RequestFacts,
    deadlines: &mut Deadlines,
) -> Option<(CoreResponse, ClientFraming)> {
    let timer = deadlines.upstream.as_mut();
    let close = || Persistence::Close;
    let (mut response, client) = read_head(conn, core, gateway, request, &close, timer)
        .await
        .ok()?;
    tracing::debug!(
        status = response.status,
        "jessy-core answered before taking the whole request body"
    );
    response.reusable = false;
    Some((response, client))
}

/// Whether a failed exchange never got any answer (so a replayable request
/// can safely go out again).
fn unanswered(err: &ForwardError, core: &CoreConn) -> bool {
    match err {
        ForwardError::Send(_) => true,
        ForwardError::Core(ExchangeError::Closed { answered }) => !answered,
        ForwardError::Core(ExchangeError::Io(_)) => core.buf.is_empty(),
        _ => false,
    }
}

/// Writes the request (head and body) to the core. A bodiless request's
/// head stays in the output buffer, in case it has to go out again.
async fn send_request(
    conn: &mut Connection,
    core: &mut CoreConn,
    gateway: &Gateway,
    request: &RequestFacts,
    deadlines: &mut Deadlines,
) -> Result<(), ForwardError> {
    let timeouts = &gateway.timeouts;
    let not_sent = |err: std::io::Error| {
        if timeouts::timed_out(&err) {
            ForwardError::CoreStalled(timeouts.upstream.as_millis())
        } else {
            ForwardError::Send(err)
        }
    };
    let Deadlines {
        client: client_timer,
        upstream: core_timer,
    } = deadlines;
    let mut to_core = Idle::new(&mut core.stream, core_timer.as_mut(), timeouts.upstream);
    if request.framing == Framing::Empty {
        return to_core.write_all(&conn.out).await.map_err(not_sent);
    }
    if request.expects_continue && conn.buf.is_empty() {
        let mut to_client = Idle::new(
            &mut conn.stream,
            client_timer.as_mut(),
            timeouts.client_send,
        );
        to_client
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|_| ForwardError::ClientGone)?;
    }
    let encode = match request.framing {
        Framing::Chunked => Encode::Chunked,
        _ => Encode::Raw,
    };
    let mut from_client = Idle::new(
        &mut conn.stream,
        client_timer.as_mut(),
        timeouts.client_body,
    );
    let source = Source {
        io: &mut from_client,
        buf: &mut conn.buf,
        framing: request.framing,
    };
    let limit = gateway.admission.body_limit.0 as u64;
    relay::body(source, &mut to_core, &mut conn.out, encode, limit)
        .await
        .map(drop)
        .map_err(|err| match err {
            RelayError::Read(err) if timeouts::timed_out(&err) => {
                ForwardError::ClientStalled(timeouts.client_body.as_millis())
            }
            RelayError::Read(_) | RelayError::Truncated => ForwardError::ClientGone,
            RelayError::Write(err) => not_sent(err),
            RelayError::Framing(err) => ForwardError::BadBody(err),
            RelayError::TooLarge => ForwardError::TooLarge,
        })
}

/// Writes the client's response head from the core's, and decides how the
/// body goes to the client: as it is when its length is known, re-chunked
/// for an HTTP/1.1 client otherwise, and until close for an HTTP/1.0 one.
fn write_client_head(
    out: &mut Vec<u8>,
    core: &ResponseHead<'_, '_>,
    framing: Framing,
    request: &RequestFacts,
    cors: Option<&super::cors::Cors>,
    persistence: Persistence,
) -> ClientFraming {
    let chunked = matches!(framing, Framing::Chunked | Framing::UntilClose);
    let (encode, persistence) = match (chunked, request.version) {
        (true, Version::Http11) => (Encode::Chunked, persistence),
        (true, Version::Http10) => (Encode::Raw, Persistence::Close),
        (false, _) => (Encode::Raw, persistence),
    };
    answer::write_status_line(out, core.status);
    // A HEAD or 304 answer's Content-Length describes the body it does not
    // carry: it passes through.
    let keep_length = request.head_request || core.status == 304;
    let replaced: &[&str] = if cors.is_some() {
        &super::cors::Cors::REPLACED
    } else {
        &[]
    };
    headers::write_response_fields(out, core, keep_length, replaced);
    answer::write_common_fields(
        out,
        &request.request_id,
        cors,
        request.origin.as_deref(),
        persistence,
    );
    match framing {
        Framing::Length(n) => headers::write_framing(out, Framing::Length(n)),
        Framing::Chunked | Framing::UntilClose if encode == Encode::Chunked => {
            headers::write_framing(out, Framing::Chunked);
        }
        Framing::Empty if !keep_length && core.status != 204 => {
            headers::write_framing(out, Framing::Length(0));
        }
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
    ClientFraming {
        encode,
        persistence,
    }
}

/// Consumes a refused request's body if all of it is already buffered;
/// whether the connection is then in step for the next request.
fn skip_buffered_body(conn: &mut Connection, framing: Framing) -> bool {
    match framing {
        Framing::Empty => true,
        Framing::Length(n) if n <= conn.buf.data().len() as u64 => {
            conn.buf.consume(n as usize);
            true
        }
        _ => false,
    }
}

/// The answer for a forwarding failure (logged here, where its cause is
/// known): the client's own faults are 4xx, only the core's are 5xx.
fn failure_answer(gateway: &Gateway, err: &ForwardError) -> ApiError {
    match err {
        ForwardError::TooLarge => return gateway.admission.body_limit.error(),
        ForwardError::BadBody(err) => return ApiError::bad_request("bad_request", err.to_string()),
        ForwardError::ClientStalled(_) => {
            tracing::debug!(error = %err, "the client stopped sending its body");
            return ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", err.to_string());
        }
        ForwardError::CoreStalled(ms) => {
            tracing::warn!(error = %err, upstream = %gateway.state.upstream.url(), "forwarding failed");
            return ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                format!("jessy-core did not answer within {ms} ms"),
            );
        }
        ForwardError::Connect(_) => gateway.state.upstream.mark(UpstreamState::Down),
        ForwardError::Send(_) | ForwardError::Core(_) | ForwardError::ClientGone => {}
    }
    tracing::warn!(error = %err, source = ?std::error::Error::source(err), upstream = %gateway.state.upstream.url(), "forwarding failed");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "upstream_unavailable",
        "jessy-core could not be reached or closed the connection",
    )
}

/// Writes an error answer for a forwarded route, counts and logs it.
async fn answer_error(
    conn: &mut Connection,
    gateway: &Gateway,
    request: &RequestFacts,
    observation: Observation,
    route: &'static str,
    error: &ApiError,
    persistence: Persistence,
) -> bool {
    rejections::record(error);
    observation.end(route, error.status.as_u16());
    conn.out.clear();
    answer::write_error(
        &mut conn.out,
        error,
        &request.request_id,
        gateway.cors.as_ref(),
        request.origin.as_deref(),
        persistence,
    );
    relay::flush(&mut conn.stream, &mut conn.out).await.is_ok() && persistence.keeps_open()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_under_api_v1_with_something_after_are_forwarded() {
        for path in ["/api/v1/query", "/api/v1/x/y?z", "/api/v1/health?deep"] {
            assert!(is_forwarded(path), "{path}");
        }
        for path in [
            "/api/v1",
            "/api/v1/",
            "/api/v1/?x",
            "/api/health",
            "/",
            "/api/v10/x",
        ] {
            assert!(!is_forwarded(path), "{path}");
        }
    }

    #[test]
    fn routes_are_labelled_by_template() {
        assert_eq!(route("/api/v1/query?x=1"), "/api/v1/query");
        assert_eq!(route("/api/v1/status"), "/api/v1/status");
        assert_eq!(route("/api/v1/health"), "/api/v1/health");
        assert_eq!(route("/api/v1/random/123"), "/api/v1/{*rest}");
    }
}
