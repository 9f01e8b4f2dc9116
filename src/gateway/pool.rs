//! The gateway's keep-alive connections to jessy-core, kept per serving
//! thread: nginx's `upstream { keepalive }` cache, one per worker.
//!
//! A forwarded request takes the most recently used idle connection of its
//! own thread (or opens one) and, when the exchange ended cleanly, puts it
//! back; a request never leaves the thread that serves its client
//! (thread-per-core, [`crate::workers`]). A connection the core has closed
//! while it sat idle is noticed from the reactor's readiness, without a
//! syscall, and dropped instead of used.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use thread_local::ThreadLocal;
use tokio::net::TcpStream;

use crate::h1::buffer::ReadBuf;

/// Idle connections kept per thread; one more is closed instead.
const MAX_IDLE_PER_THREAD: usize = 256;

/// Read buffer of a connection to the core.
const READ_BUFFER: usize = 8 * 1024;

/// A connection to the core and what has been read from it.
#[derive(Debug)]
pub struct CoreConn {
    pub stream: TcpStream,
    pub buf: ReadBuf,
    /// Whether it came from the pool (and so may have been closed by the
    /// core a moment before it was used).
    pub reused: bool,
}

#[derive(Debug)]
struct Idle {
    conn: CoreConn,
    since: Instant,
}

/// Per-thread idle connections to one core address.
#[derive(Debug)]
pub struct CorePool {
    host: String,
    port: u16,
    connect_timeout: Duration,
    idle_timeout: Duration,
    idle: ThreadLocal<RefCell<VecDeque<Idle>>>,
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
            connect_timeout,
            idle_timeout,
            idle: ThreadLocal::new(),
        }
    }

    /// An idle connection of this thread, or a new one.
    pub async fn checkout(&self) -> std::io::Result<CoreConn> {
        match self.take_idle() {
            Some(conn) => Ok(conn),
            None => self.connect().await,
        }
    }

    /// The most recently used idle connection of this thread that is still
    /// open; expired and closed ones are dropped on the way.
    fn take_idle(&self) -> Option<CoreConn> {
        let mut idle = self.idle.get_or_default().borrow_mut();
        while let Some(entry) = idle.pop_back() {
            if entry.since.elapsed() < self.idle_timeout && still_open(&entry.conn) {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Keeps `conn`, whose last exchange ended cleanly, for the next request
    /// on this thread.
    pub fn checkin(&self, mut conn: CoreConn) {
        if !conn.buf.is_empty() {
            // Bytes beyond the response: the core is out of step; do not reuse.
            return;
        }
        conn.reused = true;
        let mut idle = self.idle.get_or_default().borrow_mut();
        // The oldest sit at the front: expire them there, and make room.
        while idle.front().is_some_and(|entry| {
            entry.since.elapsed() >= self.idle_timeout || idle.len() >= MAX_IDLE_PER_THREAD
        }) {
            idle.pop_front();
        }
        idle.push_back(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// Opens a new connection within the connect timeout.
    pub async fn connect(&self) -> std::io::Result<CoreConn> {
        let connecting = TcpStream::connect((self.host.as_str(), self.port));
        let stream = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(connected) => connected?,
            Err(_elapsed) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no connection within {} ms",
                        self.connect_timeout.as_millis()
                    ),
                ));
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(CoreConn {
            stream,
            buf: ReadBuf::with_capacity(READ_BUFFER),
            reused: false,
        })
    }
}

/// Whether an idle connection can still carry a request: the reactor has
/// seen nothing arrive on it (an idle connection only becomes readable when
/// the core closes it). If it has, one non-blocking read tells.
fn still_open(conn: &CoreConn) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match conn.stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => matches!(
            conn.stream.try_read(&mut [0u8; 1]),
            Err(ref err) if err.kind() == std::io::ErrorKind::WouldBlock
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A listener on 127.0.0.1 that counts connections and closes each after
    /// reading one byte (or keeps it, with `close: false`).
    async fn fake_core(close: bool) -> (Arc<AtomicUsize>, CorePool) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut byte = [0u8; 1];
                    while stream.read(&mut byte).await.unwrap_or(0) > 0 {
                        if close {
                            return;
                        }
                        let _ = stream.write_all(b"k").await;
                    }
                });
            }
        });
        let authority = addr.to_string().parse().unwrap();
        let pool = CorePool::new(&authority, Duration::from_secs(1), Duration::from_secs(5));
        (accepted, pool)
    }

    #[tokio::test]
    async fn a_checked_in_connection_is_reused_by_the_next_checkout() {
        let (accepted, pool) = fake_core(false).await;
        let mut first = pool.checkout().await.unwrap();
        assert!(!first.reused);
        first.stream.write_all(b"x").await.unwrap();
        first.stream.read_exact(&mut [0u8; 1]).await.unwrap();
        pool.checkin(first);
        let second = pool.checkout().await.unwrap();
        assert!(second.reused);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_core_closed_while_idle_is_not_handed_out() {
        let (_, pool) = fake_core(true).await;
        let mut conn = pool.checkout().await.unwrap();
        let first = conn.stream.local_addr().unwrap();
        // The core closes after this byte; give the reactor time to see it.
        conn.stream.write_all(b"x").await.unwrap();
        pool.checkin(conn);
        let closed = async {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let idle = pool.idle.get_or_default().borrow();
                if idle.back().is_some_and(|e| !still_open(&e.conn)) {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), closed)
            .await
            .unwrap();
        let fresh = pool.checkout().await.unwrap();
        assert!(!fresh.reused, "the closed connection was dropped");
        assert_ne!(fresh.stream.local_addr().unwrap(), first);
    }

    #[tokio::test]
    async fn unread_bytes_or_expiry_keep_a_connection_out_of_the_pool() {
        let (_, pool) = fake_core(false).await;
        let mut conn = pool.checkout().await.unwrap();
        conn.stream.write_all(b"x").await.unwrap();
        conn.buf.read_from(&mut conn.stream).await.unwrap();
        pool.checkin(conn);
        assert!(
            !pool.checkout().await.unwrap().reused,
            "out of step: not kept"
        );

        let authority = pool_authority(&pool);
        let short = CorePool::new(&authority, Duration::from_secs(1), Duration::ZERO);
        let conn = short.checkout().await.unwrap();
        short.checkin(conn);
        assert!(!short.checkout().await.unwrap().reused, "expired: not kept");
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let pool = CorePool::new(
            &addr.to_string().parse().unwrap(),
            Duration::from_secs(1),
            Duration::from_secs(5),
        );
        assert!(pool.checkout().await.is_err());
    }

    fn pool_authority(pool: &CorePool) -> axum::http::uri::Authority {
        format!("{}:{}", pool.host, pool.port).parse().unwrap()
    }
}
