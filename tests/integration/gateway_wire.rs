//! jessy-api on the wire: what only raw bytes show. The gateway speaks
//! HTTP/1.1 itself on its forwarding path, so its framing, keep-alive and
//! refusals are tested here byte for byte: pipelining, HTTP/1.0, `Expect:
//! 100-continue`, chunked bodies both ways, HEAD, the smuggling-shaped
//! heads it refuses, `Connection: close`, the retry rule for pooled
//! connections the core closed, and the drain.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::routing::{any, get};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{spawn_gateway, spawn_gateway_with, spawn_stub, wait_for_status};

/// A stub core: echoes what reached it, streams a chunked body, and answers
/// slowly on request.
fn stub_core() -> Router {
    async fn echo(
        method: axum::http::Method,
        headers: HeaderMap,
        uri: axum::http::Uri,
        body: Bytes,
    ) -> axum::Json<Value> {
        let host = headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        axum::Json(json!({
            "method": method.as_str(),
            "uri": uri.to_string(),
            "host": host,
            "body": String::from_utf8_lossy(&body),
            "transfer_encoding": headers.get("transfer-encoding").is_some(),
            "expect": headers.get("expect").is_some(),
        }))
    }
    Router::new()
        .route("/api/v1/echo", any(echo))
        .route(
            "/api/v1/stream",
            get(|| async {
                let pieces =
                    ["alpha ", "beta ", "gamma"].map(|p| Ok::<_, std::io::Error>(Bytes::from(p)));
                Body::from_stream(futures::stream::iter(pieces))
            }),
        )
        .route(
            "/api/v1/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "finally"
            }),
        )
}

/// An answer as read off the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Field names in lowercase.
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("JSON body: {self:?}"))
    }
}

/// A client that writes raw bytes and reads answers one by one.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: std::net::SocketAddr) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads more; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
            .await
            .expect("an answer within 10 s")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next answer to a request with `method` (HEAD answers have no body).
    async fn answer_to(&mut self, method: &str) -> Answer {
        let (status, fields, head_len) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut res = httparse::Response::new(&mut slots);
            if let httparse::Status::Complete(len) = res.parse(&self.buf).unwrap() {
                let fields = res
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect::<Vec<_>>();
                break (res.code.unwrap(), fields, len);
            }
            assert!(self.fill().await, "closed before a complete head");
        };
        self.buf.drain(..head_len);
        let mut answer = Answer {
            status,
            fields,
            body: Vec::new(),
        };
        if method == "HEAD" || status == 100 || status == 204 || status == 304 {
            return answer;
        }
        if let Some(length) = answer.field("content-length") {
            let length: usize = length.parse().unwrap();
            while self.buf.len() < length {
                assert!(self.fill().await, "closed inside the body");
            }
            answer.body = self.buf.drain(..length).collect();
        } else if answer.field("transfer-encoding") == Some("chunked") {
            answer.body = self.dechunk().await;
        } else {
            while self.fill().await {}
            answer.body = std::mem::take(&mut self.buf);
        }
        answer
    }

    async fn answer(&mut self) -> Answer {
        self.answer_to("GET").await
    }

    /// A chunked body, decoded independently of the gateway's own decoder.
    async fn dechunk(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break at;
                }
                assert!(self.fill().await, "closed inside a chunk line");
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&self.buf[..line_end]).unwrap(), 16)
                    .unwrap();
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                assert!(self.fill().await, "closed inside a chunk");
            }
            body.extend(self.buf.drain(..size));
            assert_eq!(self.buf.drain(..2).collect::<Vec<_>>(), b"\r\n");
            if size == 0 {
                return body;
            }
        }
    }

    /// Whether the gateway closes the connection (reads nothing more).
    async fn is_closed_by_peer(&mut self) -> bool {
        !self.fill().await && self.buf.is_empty()
    }
}

async fn gateway_on_stub() -> (crate::helpers::Running, tokio::task::JoinHandle<()>) {
    let (addr, stub) = spawn_stub(stub_core()).await;
    (spawn_gateway(&format!("http://{addr}")).await, stub)
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (gw, _stub) = gateway_on_stub().await;
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(
        b"GET /api/v1/echo?n=1 HTTP/1.1\r\nHost: gw\r\nX-Request-Id: one\r\n\r\n\
          POST /api/v1/echo?n=2 HTTP/1.1\r\nHost: gw\r\nX-Request-Id: two\r\nContent-Length: 5\r\n\r\nhello\
          GET /api/health HTTP/1.1\r\nHost: gw\r\nX-Request-Id: three\r\n\r\n",
    )
    .await;
    let first = raw.answer().await;
    assert_eq!(
        (first.status, first.field("x-request-id")),
        (200, Some("one"))
    );
    assert_eq!(first.json()["uri"], "/api/v1/echo?n=1");
    let second = raw.answer().await;
    assert_eq!(second.field("x-request-id"), Some("two"));
    assert_eq!(second.json()["body"], "hello");
    let third = raw.answer().await;
    assert_eq!(third.field("x-request-id"), Some("three"));
    assert_eq!(third.json()["service"], "jessy-api");
    assert!(third.field("connection").is_none(), "still open");
}

#[tokio::test]
async fn http_1_0_clients_get_keep_alive_only_when_they_ask() {
    let (gw, _stub) = gateway_on_stub().await;
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(b"GET /api/v1/echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let kept = raw.answer().await;
    assert_eq!(kept.status, 200);
    assert_eq!(kept.field("connection"), Some("keep-alive"));
    raw.send(b"GET /api/v1/echo HTTP/1.0\r\n\r\n").await;
    let last = raw.answer().await;
    assert_eq!(last.status, 200);
    assert_eq!(last.field("connection"), Some("close"));
    assert!(raw.is_closed_by_peer().await);
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let (gw, _stub) = gateway_on_stub().await;
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(b"POST /api/v1/echo HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        .await;
    let interim = raw.answer().await;
    assert_eq!(interim.status, 100);
    raw.send(b"body").await;
    let done = raw.answer().await;
    assert_eq!(done.status, 200);
    let seen = done.json();
    assert_eq!(seen["body"], "body");
    assert_eq!(
        seen["expect"], false,
        "the gateway answered the expectation itself"
    );
}

#[tokio::test]
async fn chunked_bodies_are_relayed_both_ways() {
    let (gw, _stub) = gateway_on_stub().await;
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(
        b"POST /api/v1/echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n\
          3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    .await;
    let echoed = raw.answer().await;
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.json()["body"], "abcdefg");
    assert_eq!(
        echoed.json()["transfer_encoding"],
        true,
        "streamed to the core as chunks"
    );

    raw.send(b"GET /api/v1/stream HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await;
    let streamed = raw.answer().await;
    assert_eq!(streamed.field("transfer-encoding"), Some("chunked"));
    assert_eq!(streamed.body, b"alpha beta gamma");

    // An HTTP/1.0 client cannot read chunks: the body comes raw, then close.
    let mut old = Raw::connect(gw.addr).await;
    old.send(b"GET /api/v1/stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let raw_body = old.answer().await;
    assert!(raw_body.field("transfer-encoding").is_none());
    assert_eq!(raw_body.field("connection"), Some("close"));
    assert_eq!(raw_body.body, b"alpha beta gamma");
}

#[tokio::test]
async fn head_answers_keep_the_length_and_carry_no_body() {
    let (gw, _stub) = gateway_on_stub().await;
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(b"HEAD /api/v1/echo HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await;
    let head = raw.answer_to("HEAD").await;
    assert_eq!(head.status, 200);
    let length: usize = head.field("content-length").unwrap().parse().unwrap();
    assert!(length > 0);
    // Nothing follows the head: the next answer on the connection parses.
    raw.send(b"GET /api/v1/echo HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await;
    assert_eq!(raw.answer().await.json()["method"], "GET");
}

#[tokio::test]
async fn ambiguous_or_oversized_heads_are_refused_and_the_connection_closed() {
    let (gw, _stub) = gateway_on_stub().await;
    let big = format!(
        "GET /api/v1/echo HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let cases: [(&[u8], u16, &str); 6] = [
        (
            b"POST /api/v1/echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"POST /api/v1/echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
            "bad_request",
        ),
        (
            b"POST /api/v1/echo HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
            "unsupported_transfer_coding",
        ),
        (
            b"GET /api/v1/echo HTTP/1.1\r\nX-Fold: a\r\n b\r\n\r\n",
            400,
            "bad_request",
        ),
        (b"GET /api/v1/echo HTTP/2.0\r\n\r\n", 400, "bad_request"),
        (big.as_bytes(), 431, "headers_too_large"),
    ];
    for (request, status, code) in cases {
        let mut raw = Raw::connect(gw.addr).await;
        raw.send(request).await;
        let refused = raw.answer().await;
        let shown = String::from_utf8_lossy(&request[..request.len().min(60)]);
        assert_eq!(refused.status, status, "{shown}");
        assert_eq!(refused.field("connection"), Some("close"), "{shown}");
        assert_eq!(refused.json()["error"]["code"], code, "{shown}");
        assert!(raw.is_closed_by_peer().await, "{shown}");
    }
    // A broken chunk after a good head: 400, and nothing half-sent is answered by the core.
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(b"POST /api/v1/echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        .await;
    let refused = raw.answer().await;
    assert_eq!(refused.status, 400);
    assert!(raw.is_closed_by_peer().await);
}

#[tokio::test]
async fn connect_is_never_forwarded() {
    let (gw, _stub) = gateway_on_stub().await;
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(b"CONNECT /api/v1/echo HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await;
    let answer = raw.answer().await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["error"]["code"], "not_found");
}

#[tokio::test]
async fn connection_close_and_absolute_targets_are_honoured() {
    let (gw, _stub) = gateway_on_stub().await;
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(b"GET http://evil.example/api/v1/echo?x=1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        .await;
    let answer = raw.answer().await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.field("connection"), Some("close"));
    let seen = answer.json();
    assert_eq!(
        seen["uri"], "/api/v1/echo?x=1",
        "only the path goes to the core"
    );
    assert_ne!(seen["host"], "evil.example", "the core's own Host");
    assert!(raw.is_closed_by_peer().await);
}

#[tokio::test]
async fn an_idle_connection_lives_for_the_header_timeout_counted_from_its_last_answer() {
    let (addr, _stub) = spawn_stub(stub_core()).await;
    let timeout = Duration::from_millis(400);
    let gw = spawn_gateway_with(&format!("http://{addr}"), |c| {
        c.common.header_read_timeout = timeout;
    })
    .await;
    let mut raw = Raw::connect(gw.addr).await;
    // Three requests 0.6 timeouts apart: 1.2 timeouts in all, on one connection.
    for round in 0..3 {
        if round > 0 {
            tokio::time::sleep(timeout * 6 / 10).await;
        }
        raw.send(b"GET /api/v1/echo HTTP/1.1\r\nHost: gw\r\n\r\n")
            .await;
        assert_eq!(raw.answer().await.status, 200, "request {round}");
    }
    // Then silence: the gateway closes it.
    let started = std::time::Instant::now();
    assert!(raw.is_closed_by_peer().await);
    assert!(
        started.elapsed() >= timeout / 2,
        "closed too early: {:?}",
        started.elapsed()
    );
}

/// Reads until a request head has ended; false when the peer left first.
async fn read_a_head(stream: &mut TcpStream) -> bool {
    let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

/// A stand-in core on a loopback port that runs `serve` on every connection
/// it accepts, each with the one counter the test reads back.
async fn fake_core<F, Fut>(serve: F) -> (std::net::SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream, Arc<AtomicUsize>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(serve(stream, Arc::clone(&counter)));
        }
    });
    (addr, count)
}

/// A core whose connections each answer one `/api/v1/x` request and, on a
/// second one, close without answering: its idle timeout firing just as
/// the gateway reuses the connection. Anything else (the gateway's
/// readiness probe) is answered. Counts the `/api/v1/x` requests it read.
async fn core_closing_reused_connections() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    fake_core(move |mut stream, counter| async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut seen_here = 0;
        loop {
            // One request: a head and its Content-Length body.
            let end = loop {
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            while buf.len() < end + length {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..end + length);
            if head.contains(" /api/v1/x ") {
                counter.fetch_add(1, Ordering::SeqCst);
                seen_here += 1;
                if seen_here > 1 {
                    return;
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    })
    .await
}

#[tokio::test]
async fn a_bodiless_get_is_retried_on_a_fresh_connection_but_a_post_is_never_sent_twice() {
    let (core, requests) = core_closing_reused_connections().await;
    let gw = spawn_gateway_with(&format!("http://{core}"), |c| {
        // One probe at start (awaited below), then none to share the pool.
        c.upstream_probe_interval = Duration::from_secs(3600);
    })
    .await;
    assert!(wait_for_status(&gw.url("/api/ready"), 200, Duration::from_secs(5)).await);
    let mut raw = Raw::connect(gw.addr).await;
    for round in 1..=2 {
        raw.send(b"GET /api/v1/x HTTP/1.1\r\nHost: gw\r\n\r\n")
            .await;
        assert_eq!(raw.answer().await.status, 200, "GET {round}");
    }
    // The second GET reached the core twice: once unanswered on the reused
    // connection, once on a fresh one.
    assert_eq!(requests.load(Ordering::SeqCst), 3);

    let mut statuses = Vec::new();
    for _ in 0..2 {
        raw.send(b"POST /api/v1/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\nhi")
            .await;
        statuses.push(raw.answer().await.status);
    }
    // The first POST went out on the reused connection, which the core
    // dropped after reading it: 502, not resent. The second got a fresh one.
    assert_eq!(statuses, [502, 200]);
    assert_eq!(requests.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn the_drain_closes_idle_connections_and_ends_busy_ones_after_their_answer() {
    let (addr, _stub) = spawn_stub(stub_core()).await;
    let mut gw = spawn_gateway(&format!("http://{addr}")).await;
    let mut idle = Raw::connect(gw.addr).await;
    idle.send(b"GET /api/v1/echo HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await;
    assert_eq!(idle.answer().await.status, 200);
    let mut busy = Raw::connect(gw.addr).await;
    busy.send(b"GET /api/v1/slow HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    gw.begin_shutdown();
    assert!(
        idle.is_closed_by_peer().await,
        "an idle connection is closed"
    );
    let last = busy.answer().await;
    assert_eq!(last.status, 200);
    assert_eq!(last.body, b"finally");
    assert_eq!(last.field("connection"), Some("close"));
    assert!(busy.is_closed_by_peer().await);
    assert_eq!(gw.join().await, jessy::server::Drain::Complete);
}

// --- Failure paths (issue 15): what a strict proxy answers when the core
// is down, answers early or stalls, when the client stalls, and for
// targets and hosts an upstream could read differently.

/// The smuggling-shaped body of issue 15: a whole request inside a POST's body.
const HIDDEN: &[u8] = b"GET /api/v1/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n";

#[tokio::test]
async fn a_body_is_never_run_as_a_request_when_the_core_cannot_be_reached() {
    assert_eq!(HIDDEN.len(), 48);
    let dead = crate::helpers::dead_address().await;
    let gw = spawn_gateway(&format!("http://{dead}")).await;
    // Head and body in one write, and the body 0.3 s after the head (as an
    // `Expect: 100-continue` client sends it when no 100 comes).
    for (expect, pause) in [("", false), ("Expect: 100-continue\r\n", true)] {
        let mut raw = Raw::connect(gw.addr).await;
        let head = format!(
            "POST /api/v1/query HTTP/1.1\r\nHost: gw.test\r\n{expect}Content-Length: 48\r\n\r\n"
        );
        if pause {
            raw.send(head.as_bytes()).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            raw.send(HIDDEN).await;
        } else {
            raw.send(&[head.as_bytes(), HIDDEN].concat()).await;
        }
        let answer = raw.answer().await;
        assert_eq!(answer.status, 502, "pause {pause}");
        assert_eq!(answer.json()["error"]["code"], "upstream_unavailable");
        // The body is never answered as a request: the connection is closed
        // (the body had not arrived), or, if all of it had and was skipped,
        // the next answer is the next request's.
        let _ = raw
            .stream
            .write_all(b"GET /api/health HTTP/1.1\r\nHost: gw.test\r\n\r\n")
            .await;
        if raw.fill().await || !raw.buf.is_empty() {
            let next = raw.answer().await;
            assert_eq!(
                (next.status, next.json()["service"].as_str()),
                (200, Some("jessy-api")),
                "the health check's answer, not one for the body (pause {pause})"
            );
        } else {
            assert!(
                pause,
                "a body that was all there is skipped, not a reason to close"
            );
        }
    }
}

/// A core that answers every request as soon as its head is in, without
/// reading the body, then closes (a server refusing a body it will not
/// read: the close resets the connection, as jessy-core's 413 does).
async fn core_answering_early(status_line: &'static str) -> std::net::SocketAddr {
    fake_core(move |mut stream, _| async move {
        if !read_a_head(&mut stream).await {
            return;
        }
        let body = br#"{"error":{"code":"body_too_large","message":"from the core"}}"#;
        let answer = format!(
            "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.write_all(body).await;
        // Dropped with the body unread: a reset.
    })
    .await
    .0
}

#[tokio::test]
async fn an_early_answer_from_the_core_reaches_the_client_not_a_502() {
    let core = core_answering_early("HTTP/1.1 413 Payload Too Large").await;
    let gw = spawn_gateway_with(&format!("http://{core}"), |c| {
        c.max_body_size = 64 << 20;
        c.upstream_probe_interval = Duration::from_secs(3600);
    })
    .await;
    // Far more than socket buffers hold: the gateway is still writing the
    // body when the core's reset arrives.
    const BODY: usize = 32 << 20;
    for round in 0..3 {
        let stream = TcpStream::connect(gw.addr).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let writer = tokio::spawn(async move {
            let head = format!(
                "POST /api/v1/query HTTP/1.1\r\nHost: gw\r\nContent-Length: {BODY}\r\n\r\n"
            );
            let _ = write.write_all(head.as_bytes()).await;
            let piece = vec![b'q'; 64 * 1024];
            for _ in 0..BODY / piece.len() {
                if write.write_all(&piece).await.is_err() {
                    break;
                }
            }
            write
        });
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = tokio::time::timeout(Duration::from_secs(10), read.read(&mut chunk))
                .await
                .expect("an answer within 10 s")
                .unwrap_or(0);
            assert!(n > 0, "closed before an answer (round {round})");
            got.extend_from_slice(&chunk[..n]);
            if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
        };
        let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
        assert!(
            head.starts_with("http/1.1 413"),
            "the core's own answer (round {round}): {head}"
        );
        assert!(head.contains("connection: close"), "{head}");
        writer.abort();
    }
}

/// A core that answers complete requests (`Content-Length` bodies) with 200
/// and counts the connections that closed while a request body was still
/// coming.
async fn core_counting_cut_bodies() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    fake_core(move |mut stream, counter| async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let mut in_body = false;
            let mut need = usize::MAX;
            while buf.len() < need {
                if need == usize::MAX
                    && let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n")
                {
                    let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
                    let chunked = head.contains("transfer-encoding: chunked");
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    in_body = chunked || length > 0;
                    need = if chunked {
                        usize::MAX - 1
                    } else {
                        at + 4 + length
                    };
                    continue;
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => {
                        if in_body {
                            counter.fetch_add(1, Ordering::SeqCst);
                        }
                        return;
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..need);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    })
    .await
}

#[tokio::test]
async fn a_stalled_request_body_gets_408_and_frees_the_core_connection_and_the_slot() {
    let (core, cut) = core_counting_cut_bodies().await;
    let gw = spawn_gateway_with(&format!("http://{core}"), |c| {
        c.client_body_timeout = Duration::from_millis(300);
        c.upstream_timeout = Duration::from_secs(3);
        c.max_concurrent_requests = 1;
        c.upstream_probe_interval = Duration::from_secs(3600);
    })
    .await;
    let stalls: [&[u8]; 2] = [
        b"POST /api/v1/query HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n0123456789",
        b"POST /api/v1/query HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ];
    for (round, stall) in stalls.into_iter().enumerate() {
        let mut raw = Raw::connect(gw.addr).await;
        raw.send(stall).await;
        let answer = raw.answer().await;
        assert_eq!(answer.status, 408, "round {round}: {answer:?}");
        assert_eq!(answer.json()["error"]["code"], "body_timeout");
        assert_eq!(answer.field("connection"), Some("close"));
        assert!(raw.is_closed_by_peer().await);
        // The core's connection is let go, not pooled with half a body.
        let freed = crate::helpers::eventually(Duration::from_secs(2), || async {
            cut.load(Ordering::SeqCst) == round + 1
        })
        .await;
        assert!(freed, "the core saw the cut body (round {round})");
        // And the one concurrency slot is free again.
        let mut next = Raw::connect(gw.addr).await;
        next.send(b"POST /api/v1/query HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\nhi")
            .await;
        assert_eq!(next.answer().await.status, 200, "round {round}");
    }
}

/// A core that sends a head and the first `sent` bytes of a `length`-byte
/// body, then goes silent; it counts the connections the gateway closed.
async fn core_stalling_in_its_body(
    length: usize,
    sent: usize,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    fake_core(move |mut stream, counter| async move {
        if !read_a_head(&mut stream).await {
            return;
        }
        let mut chunk = [0u8; 4096];
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {length}\r\n\r\n");
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(&vec![b'b'; sent]).await;
        // Silent until the gateway gives up on it.
        while let Ok(1..) = stream.read(&mut chunk).await {}
        counter.fetch_add(1, Ordering::SeqCst);
    })
    .await
}

/// Reads an answer's head and then everything until the gateway closes;
/// the status and how many body bytes came.
async fn status_and_bytes_until_close(stream: &mut TcpStream) -> (u16, usize) {
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("the gateway closes within 10 s")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    let at = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let status = String::from_utf8_lossy(&got[9..12]).parse().unwrap();
    (status, got.len() - at - 4)
}

#[tokio::test]
async fn a_core_that_stalls_inside_its_body_is_cut_off_both_ways() {
    let (core, closed) = core_stalling_in_its_body(100_000, 1000).await;
    let gw = spawn_gateway_with(&format!("http://{core}"), |c| {
        c.upstream_timeout = Duration::from_millis(400);
        c.upstream_probe_interval = Duration::from_secs(3600);
    })
    .await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"GET /api/v1/big HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let (status, bytes) = status_and_bytes_until_close(&mut stream).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, 1000, "what came before the stall, then close");
    let released = crate::helpers::eventually(Duration::from_secs(2), || async {
        closed.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(released, "the core's connection was closed too");
}

#[tokio::test]
async fn a_client_that_does_not_read_its_answer_is_cut_off() {
    const BIG: usize = 64 << 20;
    let router = Router::new().route(
        "/api/v1/big",
        get(|| async { Bytes::from(vec![b'x'; BIG]) }),
    );
    let (core, _stub) = spawn_stub(router).await;
    let gw = spawn_gateway_with(&format!("http://{core}"), |c| {
        c.client_send_timeout = Duration::from_millis(300);
    })
    .await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"GET /api/v1/big HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    // Not reading: socket buffers fill, then the gateway waits on this client.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, bytes) = status_and_bytes_until_close(&mut stream).await;
    assert_eq!(status, 200);
    assert!(bytes < BIG, "cut off after {bytes} of {BIG} bytes");
}

#[tokio::test]
async fn http_1_1_requests_need_exactly_one_host() {
    let (gw, _stub) = gateway_on_stub().await;
    let refused: [&[u8]; 4] = [
        b"GET /api/v1/echo HTTP/1.1\r\n\r\n",
        b"GET /api/v1/echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /api/health HTTP/1.1\r\n\r\n",
        b"GET /api/v1/echo HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n",
    ];
    for request in refused {
        let shown = String::from_utf8_lossy(request);
        let mut raw = Raw::connect(gw.addr).await;
        raw.send(request).await;
        let answer = raw.answer().await;
        assert_eq!(answer.status, 400, "{shown}");
        assert_eq!(answer.json()["error"]["code"], "bad_request", "{shown}");
        assert_eq!(answer.field("connection"), Some("close"), "{shown}");
        assert!(raw.is_closed_by_peer().await, "{shown}");
    }
    // HTTP/1.0 did not require it.
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(b"GET /api/v1/echo HTTP/1.0\r\n\r\n").await;
    assert_eq!(raw.answer().await.status, 200);
}

#[tokio::test]
async fn dot_segments_are_removed_before_routing_and_forwarding() {
    let (gw, _stub) = gateway_on_stub().await;
    let mut raw = Raw::connect(gw.addr).await;
    // Up and out of /api/v1/: the gateway's own JSON 404, nothing forwarded.
    for target in [
        "/api/v1/../../metrics",
        "/api/v1/%2e%2e/%2E%2e/metrics",
        "/api/v1/./../../../metrics?x=1",
    ] {
        raw.send(format!("GET {target} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes())
            .await;
        let answer = raw.answer().await;
        assert_eq!(answer.status, 404, "{target}");
        assert_eq!(answer.json()["error"]["code"], "not_found", "{target}");
    }
    // Within it: forwarded with the normalised path.
    for (target, seen) in [
        ("/api/v1/x/../echo?q=/../1", "/api/v1/echo?q=/../1"),
        ("/api/v1/./echo", "/api/v1/echo"),
        ("/api/v1/x/%2E%2E/echo", "/api/v1/echo"),
    ] {
        raw.send(format!("GET {target} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes())
            .await;
        let answer = raw.answer().await;
        assert_eq!(answer.status, 200, "{target}");
        assert_eq!(answer.json()["uri"], seen, "{target}");
    }
}
