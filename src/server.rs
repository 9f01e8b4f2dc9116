//! The accept loop both services run, and its graceful drain: on the
//! signal, readiness flips to 503, the listener keeps accepting for
//! `shutdown_delay` (so load balancers notice), then closes; connections
//! finish the request they are on and close; whatever is still open at
//! `shutdown_timeout` is cut off.
//!
//! What happens on a connection is the service's [`Protocol`]: jessy-core
//! serves its axum app through hyper ([`Hyper`], with a header-read timeout,
//! which `axum::serve` 0.8 lacks: a client that sends half a request is
//! disconnected instead of holding a task forever; the same timer bounds
//! idle keep-alive connections; it runs on a [`ConnectionTimer`]);
//! jessy-api forwards with its own HTTP/1.1 path
//! ([`crate::gateway::connection`]). Each connection is served on one
//! of the [`Workers`] (thread-per-core where the service asks for it) for
//! its whole life.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::Service;

use crate::connection_timer::ConnectionTimer;
use crate::http::App;
use crate::poll_again::PollAgain;
use crate::registered_waker::RegisteredWaker;
use crate::workers::Workers;

/// Whether the service should receive traffic: true while serving, false from
/// the moment shutdown begins. `/ready` answers from this.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
}

/// Timeouts of the serve loop.
#[derive(Debug, Clone, Copy)]
pub struct ServeConfig {
    pub shutdown_delay: Duration,
    pub shutdown_timeout: Duration,
    /// Runtimes that serve connections, the current one included; more than
    /// one only where the service runs thread-per-core (jessy-api).
    pub workers: NonZeroUsize,
}

/// How the drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Every connection finished its requests.
    Complete,
    /// `shutdown_timeout` passed with connections still open; they were cut off.
    TimedOut,
}

/// How a service answers on an accepted connection.
pub trait Protocol: Clone + Send + 'static {
    /// Serves `stream` until the peer closes it or, once `drain` has begun,
    /// until the request in progress is answered.
    fn serve_connection(
        self,
        stream: TcpStream,
        peer: SocketAddr,
        drain: DrainWatch,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// Serves connections accepted on `listener` with `protocol` until
/// `shutdown` completes, then drains.
pub async fn serve<P: Protocol>(
    listener: TcpListener,
    protocol: P,
    readiness: Readiness,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Drain {
    let drainer = Drainer::default();
    let mut workers = Workers::start(config.workers);
    readiness.set(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => handle_accept(accepted, &protocol, &drainer, &mut workers).await,
        }
    }

    readiness.set(false);
    tracing::info!(
        delay_ms = config.shutdown_delay.as_millis() as u64,
        timeout_ms = config.shutdown_timeout.as_millis() as u64,
        "shutdown started"
    );
    if !config.shutdown_delay.is_zero() {
        let delay = tokio::time::sleep(config.shutdown_delay);
        tokio::pin!(delay);
        loop {
            tokio::select! {
                () = &mut delay => break,
                accepted = listener.accept() => handle_accept(accepted, &protocol, &drainer, &mut workers).await,
            }
        }
    }
    drop(listener);

    let drain = match tokio::time::timeout(config.shutdown_timeout, drainer.drain()).await {
        Ok(()) => {
            tracing::info!("shutdown complete: all in-flight requests drained");
            Drain::Complete
        }
        Err(_) => {
            tracing::warn!("shutdown complete: timeout reached, remaining connections cut off");
            Drain::TimedOut
        }
    };
    // Stops the other runtimes; connections cut off above are dropped with them.
    drop(workers);
    drain
}

async fn handle_accept<P: Protocol>(
    accepted: std::io::Result<(TcpStream, SocketAddr)>,
    protocol: &P,
    drainer: &Drainer,
    workers: &mut Workers,
) {
    match accepted {
        Ok((stream, peer)) => {
            let _ = stream.set_nodelay(true);
            let (protocol, drain) = (protocol.clone(), drainer.watch());
            workers.spawn_connection(stream, move |stream| {
                protocol.serve_connection(stream, peer, drain)
            });
        }
        Err(err) => {
            // Out of file descriptors and the like: back off instead of
            // spinning; the connections already open keep being served.
            tracing::error!(error = %err, "accept failed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Starts the drain and counts the connections until each has ended.
struct Drainer {
    begun: Draining,
    signal: watch::Sender<()>,
}

impl Default for Drainer {
    fn default() -> Self {
        Drainer {
            begun: Draining::default(),
            signal: watch::channel(()).0,
        }
    }
}

/// A drainer dropped without draining (the serve future was cancelled)
/// ends the connections' wait too, as a drain would.
impl Drop for Drainer {
    fn drop(&mut self) {
        self.begun.0.store(true, Ordering::Release);
    }
}

impl Drainer {
    /// A watch for one connection; the connection counts until it drops it.
    fn watch(&self) -> DrainWatch {
        let mut receiver = self.signal.subscribe();
        DrainWatch {
            begun: self.begun.clone(),
            signal: Box::pin(async move {
                // An error means the drainer is gone, which is a drain too.
                let _ = receiver.changed().await;
                receiver
            }),
            held: None,
            registered: RegisteredWaker::default(),
        }
    }

    /// Tells every connection, then waits until all have ended.
    async fn drain(self) {
        self.begun.0.store(true, Ordering::Release);
        self.signal.send_replace(());
        self.signal.closed().await;
    }
}

/// Whether the drain has begun.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// One atomic load.
    pub fn has_begun(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// One connection's view of the drain: whether it has begun, and a future
/// that completes when it does. The server waits for every watch to drop.
pub struct DrainWatch {
    begun: Draining,
    /// Completes when the drain begins; made once per connection, so
    /// waiting on it again costs no registration.
    signal: Pin<Box<dyn Future<Output = watch::Receiver<()>> + Send>>,
    /// The receiver, once the signal has completed (the connection still
    /// counts until it ends).
    held: Option<watch::Receiver<()>>,
    /// The waker the signal holds: while it is the task's, the signal will
    /// wake it and need not be polled again.
    registered: RegisteredWaker,
}

impl DrainWatch {
    /// Whether the drain has begun (one atomic load).
    pub fn has_begun(&self) -> bool {
        self.begun.has_begun()
    }

    /// The flag alone, to look at while the connection is busy.
    pub fn draining(&self) -> &Draining {
        &self.begun
    }

    /// Completes when the drain has begun (at once if it already has).
    pub async fn begun(&mut self) {
        std::future::poll_fn(|cx| self.poll_begun(cx)).await;
    }

    /// Ready when the drain has begun. A connection polls this beside its
    /// work at every wake-up, so once the signal has registered the task's
    /// waker it is not polled again (that was a tenth of the per-request
    /// cost of the server loop): the drain sets the flag before it signals,
    /// and so does a drainer dropped without draining.
    pub fn poll_begun(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.held.is_some() {
            return Poll::Ready(());
        }
        if self.registered.wakes(cx) && !self.begun.has_begun() {
            return Poll::Pending;
        }
        let Self {
            signal, registered, ..
        } = self;
        match registered.poll(cx, |cx| signal.as_mut().poll(cx)) {
            Poll::Ready(receiver) => {
                self.held = Some(receiver);
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The app as hyper's service on one connection: called in place. hyper's
/// `service_fn` with `oneshot` (as `axum::serve` does) clones the app for
/// every request, and the clone is two reference counts shared by all
/// worker threads.
struct ConnectionApp(RefCell<App>);

impl hyper::service::Service<hyper::Request<Incoming>> for ConnectionApp {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = <App as Service<axum::extract::Request>>::Future;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        // hyper calls one request at a time, and the borrow ends here.
        let mut app = self.0.borrow_mut();
        // `Common` is ready when axum's router is, which is always: the
        // contract of `poll_ready`, at the cost of one call. (A layer with
        // backpressure inside `App` would need a `oneshot` here instead.)
        let ready = app.poll_ready(&mut Context::from_waker(Waker::noop()));
        debug_assert!(matches!(ready, Poll::Ready(Ok(()))), "App is always ready");
        app.call(req.map(Body::new))
    }
}

/// HTTP/1.1 through hyper into an axum [`App`] (jessy-core).
#[derive(Clone)]
pub struct Hyper {
    pub app: App,
    pub header_read_timeout: Duration,
}

impl Protocol for Hyper {
    fn serve_connection(
        self,
        stream: TcpStream,
        peer: SocketAddr,
        mut drain: DrainWatch,
    ) -> impl Future<Output = ()> + Send + 'static {
        let service = ConnectionApp(RefCell::new(self.app));
        // Per connection: a ConnectionTimer must not be shared
        // (src/connection_timer.rs).
        let mut builder = http1::Builder::new();
        builder
            .timer(ConnectionTimer::new())
            .header_read_timeout(self.header_read_timeout);
        // PollAgain: a request body is read in the turn that asks for it
        // (src/poll_again.rs).
        PollAgain::new(async move {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let outcome = tokio::select! {
                outcome = connection.as_mut() => outcome,
                () = drain.begun() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = outcome {
                tracing::debug!(error = %err, %peer, "connection ended with an error");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{WakeCounter, spend_coop_budget};

    #[tokio::test]
    async fn a_drain_wakes_every_waker_that_waits_for_it_also_after_a_change_of_waker() {
        let drainer = Drainer::default();
        let mut watch = drainer.watch();
        let (_, first_waker) = WakeCounter::waker();
        let (second, second_waker) = WakeCounter::waker();
        for _ in 0..3 {
            let mut cx = Context::from_waker(&first_waker);
            assert!(watch.poll_begun(&mut cx).is_pending());
        }
        // The task's waker changes: the new one must be the one woken.
        let mut cx = Context::from_waker(&second_waker);
        assert!(watch.poll_begun(&mut cx).is_pending());

        let drained = tokio::spawn(drainer.drain());
        tokio::task::yield_now().await;
        assert_eq!(second.wakes(), 1, "the current waker is woken");
        assert!(watch.poll_begun(&mut cx).is_ready());
        assert!(watch.poll_begun(&mut cx).is_ready(), "and stays ready");
        assert!(!drained.is_finished(), "the drain waits for the watch");
        drop(watch);
        tokio::time::timeout(Duration::from_secs(5), drained)
            .await
            .expect("the drain ends once the watch is dropped")
            .unwrap();
    }

    #[tokio::test]
    async fn a_watch_first_polled_without_budget_still_sees_the_drain() {
        let drainer = Drainer::default();
        let mut watch = drainer.watch();
        let (counter, waker) = WakeCounter::waker();
        let mut cx = Context::from_waker(&waker);
        std::future::poll_fn(|task| {
            spend_coop_budget(task);
            assert!(watch.poll_begun(&mut cx).is_pending());
            Poll::Ready(())
        })
        .await;
        // tokio wakes the task to poll it again (the budget's wake, deferred
        // to the end of the poll, not the drain's); polled again with budget,
        // the watch registers, and the drain then wakes it once more.
        tokio::task::yield_now().await;
        let woken = counter.wakes();
        assert!(watch.poll_begun(&mut cx).is_pending());
        let drained = tokio::spawn(drainer.drain());
        tokio::task::yield_now().await;
        assert_eq!(counter.wakes(), woken + 1, "woken by the drain");
        assert!(watch.poll_begun(&mut cx).is_ready());
        drop(watch);
        drained.await.unwrap();
    }

    #[tokio::test]
    async fn a_dropped_drainer_ends_the_wait_of_its_watches() {
        let drainer = Drainer::default();
        let mut watch = drainer.watch();
        let (counter, waker) = WakeCounter::waker();
        let mut cx = Context::from_waker(&waker);
        assert!(watch.poll_begun(&mut cx).is_pending());
        drop(drainer);
        assert_eq!(counter.wakes(), 1, "woken");
        assert!(watch.poll_begun(&mut cx).is_ready());
    }
}
