//! One client connection of jessy-api, from its first byte to its close:
//! read a request head (within HEADER_READ_TIMEOUT, which also bounds how
//! long a keep-alive connection may sit idle), decide what it is —
//! forwarded to the core ([`super::proxy`]), one of the gateway's own
//! endpoints ([`super::local`]), or malformed (400, 431 or 501, then
//! close) — answer it, and go on while the client keeps the connection and
//! the drain has not begun. Requests that arrive back to back
//! (pipelined) are answered in order.
//!
//! A connection holds no read buffer until its first bytes arrive, so a
//! flood of connections that send nothing costs their sockets and tasks,
//! not 8 KiB each; a kept-alive one keeps its buffer between requests.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::StatusCode;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::Gateway;
use super::answer::{self, Persistence};
use super::headers::Peer;
use super::{local, proxy, target};
use crate::h1::HeadError;
use crate::h1::buffer::ReadBuf;
use crate::h1::request::{self, RequestHead, header_slots};
use crate::http::error::ApiError;
use crate::http::request_id::RequestId;
use crate::server::DrainWatch;

/// Read buffer of a client connection (a head may grow it to
/// [`crate::h1::MAX_HEAD_BYTES`]).
const READ_BUFFER: usize = 8 * 1024;

/// A client connection and its buffers.
pub struct Connection {
    pub stream: TcpStream,
    pub buf: ReadBuf,
    /// What goes out next: the core's request head, then the client's
    /// response head (and small bodies with them).
    pub out: Vec<u8>,
    pub peer: Peer,
    pub addr: SocketAddr,
}

/// The connection's timers, made once and moved forward per wait (moving a
/// registered timer later costs an atomic store, not a lock); which wait
/// gets which timeout is [`super::timeouts`]'.
pub struct Deadlines {
    /// Waits on the client: for the next request head, for the body of a
    /// request, for it to take an answer.
    pub client: Pin<Box<Sleep>>,
    /// Waits on the core ([`super::proxy`]).
    pub upstream: Pin<Box<Sleep>>,
}

/// What a parsed head asks for.
enum Plan {
    Forward(proxy::Forward),
    Local(local::Local),
}

/// Serves `stream` until the client closes it, a request ends it, or the
/// drain begins while it waits for a request.
pub async fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    gateway: Arc<Gateway>,
    mut drain: DrainWatch,
) {
    let ip = addr.ip();
    let mut conn = Connection {
        stream,
        buf: ReadBuf::with_capacity(READ_BUFFER),
        out: Vec::new(),
        peer: Peer {
            ip,
            text: ip.to_string().into_boxed_str(),
            trusted: gateway.state.trusted.trusts(ip),
        },
        addr,
    };
    let far = Instant::now() + gateway.timeouts.header_read;
    let mut deadlines = Deadlines {
        client: Box::pin(tokio::time::sleep_until(far)),
        upstream: Box::pin(tokio::time::sleep_until(far)),
    };
    loop {
        let plan = match next_request(&mut conn, &gateway, &mut deadlines, &mut drain).await {
            Some(Ok(plan)) => plan,
            Some(Err(refused)) => {
                refuse_malformed(&mut conn, &gateway, refused).await;
                break;
            }
            None => return,
        };
        // The router's future (the gateway's own endpoints, a rare path) is
        // boxed so that every connection's task does not carry it (a task
        // is as large as its largest state). Forwarding is not: boxing it
        // cost ~660 instructions per request (callgrind, api-health) for
        // ~200 bytes per idle connection in a release build.
        let keep_open = match plan {
            Plan::Forward(forward) => {
                proxy::forward(
                    &mut conn,
                    &gateway,
                    forward,
                    &mut deadlines,
                    drain.draining(),
                )
                .await
            }
            Plan::Local(local) => {
                Box::pin(local::answer(
                    &mut conn,
                    &gateway,
                    local,
                    &mut deadlines,
                    drain.draining(),
                ))
                .await
            }
        };
        if !keep_open {
            break;
        }
    }
    close_after_last_answer(conn.stream).await;
}

/// Closes after a last answer without losing it: closing with unread bytes
/// (a body the gateway refused to read, a pipelined request) makes the
/// kernel reset the connection, and a reset can discard the answer before
/// the client reads it. So the gateway's side is shut first and what the
/// client still sends is read and dropped, for a bounded time, until it
/// closes too (nginx's lingering close).
async fn close_after_last_answer(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
    const LINGER_BYTES: usize = 1 << 20;
    if stream.shutdown().await.is_err() {
        return;
    }
    let drained = async {
        // On the heap: an array here would make every connection's task
        // 4 KiB larger for the whole of its life.
        let mut sink = vec![0u8; 4096];
        let mut total = 0;
        while let Ok(n @ 1..) = stream.read(&mut sink).await {
            total += n;
            if total >= LINGER_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drained).await;
}

/// Waits for the next complete request head and plans its answer; `None`
/// when the connection should just close (the client closed it or went
/// silent, or the drain began while it was idle).
async fn next_request(
    conn: &mut Connection,
    gateway: &Gateway,
    deadlines: &mut Deadlines,
    drain: &mut DrainWatch,
) -> Option<Result<Plan, HeadError>> {
    let mut waiting = false;
    loop {
        match plan(conn, gateway) {
            Ok(Some(plan)) => return Some(Ok(plan)),
            Ok(None) => {}
            Err(refused) => return Some(Err(refused)),
        }
        let idle = conn.buf.is_empty();
        if idle && drain.has_begun() {
            return None;
        }
        if !waiting {
            // The clock runs from the first wait for this head.
            waiting = true;
            let deadline = Instant::now() + gateway.timeouts.header_read;
            deadlines.client.as_mut().reset(deadline);
            conn.buf.shrink();
        }
        tokio::select! {
            biased;
            read = read_more(conn) => match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            },
            () = deadlines.client.as_mut() => {
                tracing::debug!(peer = %conn.addr, "no complete request head in time; closing");
                return None;
            }
            () = drain.begun(), if idle => return None,
        }
    }
}

/// Reads more of a head; the buffer is taken only once bytes are there
/// (a peeked byte: readiness alone is reported for a freshly accepted
/// socket that has sent nothing).
async fn read_more(conn: &mut Connection) -> io::Result<usize> {
    if !conn.buf.is_allocated() && conn.stream.peek(&mut [0u8; 1]).await? == 0 {
        return Ok(0);
    }
    conn.buf.read_from(&mut conn.stream).await
}

/// Parses the buffered head, if it is complete, and plans its answer (the
/// head's bytes are consumed; a forwarded request's core head is in `out`).
fn plan(conn: &mut Connection, gateway: &Gateway) -> Result<Option<Plan>, HeadError> {
    let Connection { buf, out, peer, .. } = conn;
    let mut slots = header_slots();
    let Some(head) = request::parse(buf.data(), &mut slots)? else {
        return Ok(None);
    };
    let plan = plan_head(&head, gateway, peer, out)?;
    let len = head.len;
    buf.consume(len);
    Ok(Some(plan))
}

fn plan_head(
    head: &RequestHead<'_, '_>,
    gateway: &Gateway,
    peer: &Peer,
    out: &mut Vec<u8>,
) -> Result<Plan, HeadError> {
    let framing = head.framing()?;
    head.check_host()?;
    let path = head
        .path_and_query()
        .ok_or(HeadError::Invalid("unsupported request target"))?;
    let path = target::normalize(path);
    let path = path.as_ref();
    // CORS preflights (every OPTIONS, as tower-http sees them) are answered
    // by the layer around the gateway's own router; so is CONNECT (a tunnel
    // the gateway does not open: its router has no such route).
    let preflight = gateway.cors.is_some() && head.method == "OPTIONS";
    if proxy::is_forwarded(path) && !preflight && head.method != "CONNECT" {
        Ok(Plan::Forward(proxy::plan(
            head, path, framing, peer, gateway, out,
        )))
    } else {
        local::plan(head, path, framing).map(Plan::Local)
    }
}

/// Answers a head that could not be read as a request, and closes.
async fn refuse_malformed(conn: &mut Connection, gateway: &Gateway, refused: HeadError) {
    let status = StatusCode::from_u16(refused.status()).unwrap_or(StatusCode::BAD_REQUEST);
    tracing::debug!(peer = %conn.addr, reason = refused.reason(), "refusing a malformed request");
    let error = ApiError::new(status, refused.code(), refused.reason());
    let request_id = RequestId::keep_or_generate(None);
    conn.out.clear();
    answer::write_error(
        &mut conn.out,
        &error,
        &request_id,
        gateway.cors.as_ref(),
        None,
        Persistence::Close,
    );
    let _ = super::relay::flush(&mut conn.stream, &mut conn.out).await;
}
