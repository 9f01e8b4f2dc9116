//! The gateway's keep-alive connections to jessy-core, kept per serving
//! thread: nginx's `upstream { keepalive }` cache, one per worker.
//!
//! A forwarded request takes the most recently used idle connection of its
//! own thread (or opens one), and the response body puts it back when it has
//! been read to the end. A connection's task runs on the thread that opened
//! it, so a request never leaves the thread that serves its client
//! (thread-per-core, [`crate::workers`]).
//!
//! Why not hyper-util's pooled client: per request it locked its pool, hashed
//! the pool key, raced a checkout against a lazy connect and spawned a task
//! to return the connection. Here a checkout is a pop from the thread's own
//! list and the response body puts the connection back. Alternated against
//! that client in front of the same core it saved about 3 % of the gateway's
//! CPU per forwarded request (within the noise of three runs), and it drops
//! two crates from the build (README, "Performance"); what it is kept for is
//! that its reuse rules are these few lines, tested below.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderValue, Request, Response, Uri, header};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use thread_local::ThreadLocal;
use tokio::net::TcpStream;

/// Idle connections kept per thread; one more is closed instead.
const MAX_IDLE_PER_THREAD: usize = 256;

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection to the core could be opened in time.
    #[error("cannot connect to jessy-core: {0}")]
    Connect(#[source] std::io::Error),
    /// The connection failed while the request or the response head was on it.
    #[error("jessy-core connection failed: {0}")]
    Http(#[source] hyper::Error),
}

impl SendError {
    /// True when the core could not be reached at all (not merely one
    /// broken exchange).
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

/// Per-thread idle connections to one core address.
#[derive(Debug)]
pub struct CorePool {
    host: String,
    port: u16,
    /// The `Host` header of every forwarded request.
    host_header: HeaderValue,
    connect_timeout: Duration,
    idle_timeout: Duration,
    idle: ThreadLocal<RefCell<VecDeque<Idle>>>,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl CorePool {
    pub fn new(
        authority: &axum::http::uri::Authority,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> CorePool {
        CorePool {
            host: authority.host().to_owned(),
            port: authority.port_u16().unwrap_or(80),
            host_header: HeaderValue::from_str(authority.as_str())
                .expect("an authority is a valid header value"),
            connect_timeout,
            idle_timeout,
            idle: ThreadLocal::new(),
        }
    }

    /// Sends `req` (its URI's path and query are used; the authority is the
    /// pool's).
    ///
    /// A pooled connection can be closed by the core (its idle timeout, its
    /// shutdown) a moment before the request goes out on it. Then the request
    /// is sent once more, on a new connection, when that is safe: when hyper
    /// hands it back unsent, or when the core closed without answering and
    /// the request is idempotent with an empty body, so it can be rebuilt
    /// (nginx's `proxy_next_upstream` rule). A POST already written is never
    /// sent twice: that is a 502.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<Response<PooledBody>, SendError> {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
        req.headers_mut()
            .insert(header::HOST, self.host_header.clone());

        let mut from_pool = true;
        loop {
            let pooled = if from_pool { self.checkout() } else { None };
            let reused = pooled.is_some();
            let mut sender = match pooled {
                Some(sender) => sender,
                None => self.connect().await?,
            };
            // The retry, if any, goes to a new connection: at most two tries.
            from_pool = false;
            if reused && sender.ready().await.is_err() {
                continue;
            }
            let replay = if reused { replayable_copy(&req) } else { None };
            match sender.try_send_request(req).await {
                Ok(res) => {
                    let (parts, body) = res.into_parts();
                    let mut body = PooledBody {
                        inner: body,
                        give_back: Some((sender, Arc::clone(self))),
                    };
                    body.give_back_if_done();
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut err) => {
                    let closed_unanswered = err.error().is_incomplete_message();
                    req = match (err.take_message(), replay) {
                        (Some(unsent), _) if reused => unsent,
                        (_, Some(copy)) if closed_unanswered => copy,
                        _ => return Err(SendError::Http(err.into_error())),
                    };
                }
            }
        }
    }

    /// The most recently used live connection of this thread; closed and
    /// expired ones are dropped on the way.
    fn checkout(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.get_or_default().borrow_mut();
        while let Some(entry) = idle.pop_back() {
            if !entry.sender.is_closed() && entry.since.elapsed() < self.idle_timeout {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Keeps `sender` for the next request on this thread.
    fn checkin(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.get_or_default().borrow_mut();
        // The oldest sit at the front: expire them there, and make room.
        while idle.front().is_some_and(|entry| {
            entry.since.elapsed() >= self.idle_timeout || idle.len() >= MAX_IDLE_PER_THREAD
        }) {
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// Opens a connection and runs it as a task on this thread's runtime.
    async fn connect(&self) -> Result<SendRequest<Body>, SendError> {
        let connecting = TcpStream::connect((self.host.as_str(), self.port));
        let stream = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(SendError::Connect(err)),
            Err(_elapsed) => {
                return Err(SendError::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no connection within {} ms",
                        self.connect_timeout.as_millis()
                    ),
                )));
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Http)?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection to jessy-core ended with an error");
            }
        });
        Ok(sender)
    }
}

/// A copy of `req` to send again if its connection turns out closed: only
/// for idempotent methods without a body (the body is a stream, read once).
fn replayable_copy(req: &Request<Body>) -> Option<Request<Body>> {
    if !req.method().is_idempotent() || !req.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(Body::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// A response body from the core that returns its connection to the pool
/// once it has been read to the end. Dropped earlier (the client went away),
/// the connection is dropped with it and closes: it is mid-response.
#[derive(Debug)]
pub struct PooledBody {
    inner: Incoming,
    give_back: Option<(SendRequest<Body>, Arc<CorePool>)>,
}

impl PooledBody {
    fn give_back_if_done(&mut self) {
        if self.inner.is_end_stream()
            && let Some((sender, pool)) = self.give_back.take()
        {
            pool.checkin(sender);
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some((sender, pool)) = self.give_back.take() {
                    pool.checkin(sender);
                }
            }
            // Readers may stop at is_end_stream after the last frame.
            Poll::Ready(Some(Ok(_))) => self.give_back_if_done(),
            // A broken exchange: the connection is not reused.
            Poll::Ready(Some(Err(_))) => self.give_back = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// How the fake core treats each connection after answering once.
    #[derive(Clone, Copy)]
    enum After {
        /// Keep answering on the same connection.
        KeepAlive,
        /// Close the connection right after the first response, without
        /// saying so in a header: the core's own idle timeout firing.
        CloseSilently,
    }

    /// A fake core on 127.0.0.1 that answers every bodiless request with
    /// `body` and counts the connections it accepted.
    async fn fake_core(body: &'static str, after: After) -> (Arc<AtomicUsize>, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while let Some(end) = find_head_end(&buf) {
                            buf.drain(..end);
                            let response = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if stream.write_all(response.as_bytes()).await.is_err() {
                                return;
                            }
                            if let After::CloseSilently = after {
                                return;
                            }
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        (accepted, port)
    }

    fn find_head_end(buf: &[u8]) -> Option<usize> {
        buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
    }

    fn pool(port: u16, idle_timeout: Duration) -> Arc<CorePool> {
        let authority = format!("127.0.0.1:{port}").parse().unwrap();
        Arc::new(CorePool::new(
            &authority,
            Duration::from_secs(2),
            idle_timeout,
        ))
    }

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).unwrap()
    }

    async fn body_of(res: Response<PooledBody>) -> String {
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_read_to_the_end_is_reused() {
        let (accepted, port) = fake_core("{\"ok\":true}", After::KeepAlive).await;
        let pool = pool(port, Duration::from_secs(60));
        for _ in 0..5 {
            let res = pool.send(get("/health")).await.unwrap();
            assert_eq!(res.status(), 200);
            assert_eq!(body_of(res).await, "{\"ok\":true}");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_response_dropped_before_its_end_takes_its_connection_with_it() {
        let (accepted, port) = fake_core("a body nobody reads", After::KeepAlive).await;
        let pool = pool(port, Duration::from_secs(60));
        let unread = pool.send(get("/a")).await.unwrap();
        drop(unread);
        let res = pool.send(get("/b")).await.unwrap();
        assert_eq!(body_of(res).await, "a body nobody reads");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_core_has_closed_is_not_handed_out_again() {
        let (accepted, port) = fake_core("fresh", After::CloseSilently).await;
        let pool = pool(port, Duration::from_secs(60));
        for round in 1..=4 {
            let res = pool.send(get("/health")).await.unwrap();
            assert_eq!(body_of(res).await, "fresh", "round {round}");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
    }

    /// A fake core on its own OS thread that answers once per connection and
    /// closes it, without a `connection: close` header, when told to.
    struct ClosingCore {
        port: u16,
        accepted: Arc<AtomicUsize>,
        close: std::sync::mpsc::Sender<()>,
        closed: std::sync::mpsc::Receiver<()>,
    }

    fn closing_core() -> ClosingCore {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let (close, close_rx) = std::sync::mpsc::channel::<()>();
        let (closed_tx, closed) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while find_head_end(&buf).is_none() {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                if close_rx.recv().is_err() {
                    return;
                }
                drop(stream);
                let _ = closed_tx.send(());
            }
        });
        ClosingCore {
            port,
            accepted,
            close,
            closed,
        }
    }

    /// The race the retry exists for: the core closes an idle connection
    /// after the pool last looked at it. The test blocks its single-threaded
    /// runtime while the core closes, so the connection's task cannot notice
    /// before the next request is written.
    async fn second_request_after_a_close_behind_the_pools_back(
        second: Request<Body>,
    ) -> (Result<Response<PooledBody>, SendError>, usize) {
        let core = closing_core();
        let pool = pool(core.port, Duration::from_secs(60));
        assert_eq!(body_of(pool.send(get("/first")).await.unwrap()).await, "ok");
        // Blocking, on purpose: the runtime must not run until the core closed.
        core.close.send(()).unwrap();
        core.closed.recv_timeout(Duration::from_secs(10)).unwrap();
        std::thread::sleep(Duration::from_millis(10));
        // The retry's connection, if any, is answered; then the core stops.
        drop(core.close);
        let result = pool.send(second).await;
        (result, core.accepted.load(Ordering::SeqCst))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_idempotent_request_is_sent_again_on_a_new_connection() {
        let (result, connections) =
            second_request_after_a_close_behind_the_pools_back(get("/second")).await;
        assert_eq!(body_of(result.unwrap()).await, "ok");
        assert_eq!(connections, 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_post_already_written_is_not_sent_twice() {
        let post = Request::post("/api/v1/query")
            .body(Body::from("{\"query\":\"once\"}"))
            .unwrap();
        let (result, connections) = second_request_after_a_close_behind_the_pools_back(post).await;
        let err = result.unwrap_err();
        assert!(!err.is_connect(), "{err:?}");
        assert!(
            matches!(&err, SendError::Http(e) if e.is_incomplete_message()),
            "{err:?}"
        );
        assert_eq!(connections, 1);
    }

    #[tokio::test]
    async fn idle_connections_expire_after_the_idle_timeout() {
        let (accepted, port) = fake_core("x", After::KeepAlive).await;
        let pool = pool(port, Duration::from_millis(20));
        body_of(pool.send(get("/")).await.unwrap()).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        body_of(pool.send(get("/")).await.unwrap()).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_request_carries_origin_form_and_the_core_host() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while find_head_end(&buf).is_none() {
                let n = stream.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
            }
            stream
                .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(buf).unwrap()
        });
        let pool = pool(port, Duration::from_secs(60));
        let res = pool
            .send(get("http://client-chosen.example/api/v1/query?q=1"))
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
        let head = seen.await.unwrap().to_ascii_lowercase();
        assert!(
            head.starts_with("get /api/v1/query?q=1 http/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("host: 127.0.0.1:{port}\r\n")),
            "{head}"
        );
    }

    #[tokio::test]
    async fn a_core_that_is_not_listening_is_a_connect_error() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let err = pool(port, Duration::from_secs(60))
            .send(get("/health"))
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err:?}");
    }
}
