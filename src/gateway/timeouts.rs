//! Which wait is bounded by what, and the idle timeout that bounds each
//! read and write of a relayed body.
//!
//! - a request head: HEADER_READ_TIMEOUT from the first wait for it (also
//!   how long a keep-alive connection may sit idle, and the whole body of
//!   a request for the gateway's own endpoints) → closed;
//! - each wait for more of a request body: CLIENT_BODY_TIMEOUT → 408
//!   `body_timeout`, closed (the client stopped sending: its fault, not
//!   the core's);
//! - connecting to the core: UPSTREAM_CONNECT_TIMEOUT → 502;
//! - each wait for the core to take more of the request, and for its
//!   response head once the request is sent: UPSTREAM_TIMEOUT → 504
//!   `upstream_timeout`;
//! - each wait for more of the core's response body: UPSTREAM_TIMEOUT,
//!   and each wait for the client to take more of it: CLIENT_SEND_TIMEOUT
//!   → both connections closed (the head is out: nothing else can be said).
//!
//! The body timeouts are idle timeouts, as nginx's `client_body_timeout`,
//! `proxy_read_timeout` and `send_timeout`: they bound a wait without
//! progress, not a whole transfer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The gateway's timeouts (flags of the same names).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub client_body: Duration,
    pub client_send: Duration,
    pub upstream: Duration,
}

/// Whether `err` is an [`Idle`] timeout.
pub fn timed_out(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::TimedOut
}

/// `io` with an idle timeout: a read or write that makes no progress for
/// `after` fails with [`io::ErrorKind::TimedOut`]. The clock starts when an
/// operation first has to wait, so one that completes at once costs no
/// timer at all.
pub struct Idle<'a, S> {
    io: &'a mut S,
    timer: Pin<&'a mut Sleep>,
    after: Duration,
    waiting: bool,
}

impl<'a, S> Idle<'a, S> {
    pub fn new(io: &'a mut S, timer: Pin<&'a mut Sleep>, after: Duration) -> Idle<'a, S> {
        Idle {
            io,
            timer,
            after,
            waiting: false,
        }
    }

    /// After the wrapped operation returned `polled`: its result (the clock
    /// stops), or the timeout once `after` passed without progress.
    fn bound<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = false;
            return polled;
        }
        if !self.waiting {
            self.waiting = true;
            let deadline = Instant::now() + self.after;
            self.timer.as_mut().reset(deadline);
        }
        ready!(self.timer.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no progress in {} ms", self.after.as_millis()),
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut *this.io).poll_read(cx, buf);
        this.bound(polled, cx)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut *this.io).poll_write(cx, buf);
        this.bound(polled, cx)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut *this.io).poll_flush(cx);
        this.bound(polled, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_wait_without_progress_times_out_and_progress_restarts_the_clock() {
        let (mut near, mut far) = tokio::io::duplex(4);
        let mut timer = Box::pin(tokio::time::sleep(Duration::ZERO));
        let after = Duration::from_secs(1);
        let mut idle = Idle::new(&mut near, timer.as_mut(), after);
        let mut byte = [0u8; 1];
        // Bytes that arrive each within `after` of the last, for longer
        // than `after` in all.
        let feeder = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(after / 2).await;
                far.write_all(b"x").await.unwrap();
            }
            far
        });
        for _ in 0..3 {
            assert_eq!(idle.read(&mut byte).await.unwrap(), 1);
        }
        let _far = feeder.await.unwrap();
        // Then nothing: the next read gives up after `after`.
        let started = Instant::now();
        let err = idle.read(&mut byte).await.unwrap_err();
        assert!(timed_out(&err));
        assert!(started.elapsed() >= after);
        // A write into a full pipe nobody reads times out the same way.
        let err = idle.write_all(&[0; 64]).await.unwrap_err();
        assert!(timed_out(&err));
    }
}
