//! The accept loop both services run, with what `axum::serve` 0.8 lacks:
//!
//! - a header-read timeout (hyper's, which needs a timer): a client that
//!   sends half a request is disconnected instead of holding a task forever;
//!   the same timer bounds idle keep-alive connections;
//! - a graceful shutdown with a deadline: on the signal, readiness flips to
//!   503, the listener keeps accepting for `shutdown_delay` (so load
//!   balancers notice), then closes; in-flight requests finish; whatever is
//!   still running at `shutdown_timeout` is cut off.
//!
//! Each connection gets the peer address as `ConnectInfo`, which the
//! gateway's rate limiter keys on, and is served on one of the
//! [`Workers`] (thread-per-core) for its whole life.

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::http::App;
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
    pub header_read_timeout: Duration,
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

/// Serves `app` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    app: App,
    readiness: Readiness,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Drain {
    let graceful = GracefulShutdown::new();
    let mut workers = Workers::start(config.workers);
    readiness.set(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => handle_accept(accepted, &app, &graceful, &mut workers, config).await,
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
                accepted = listener.accept() => handle_accept(accepted, &app, &graceful, &mut workers, config).await,
            }
        }
    }
    drop(listener);

    let drain = match tokio::time::timeout(config.shutdown_timeout, graceful.shutdown()).await {
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

async fn handle_accept(
    accepted: std::io::Result<(TcpStream, SocketAddr)>,
    app: &App,
    graceful: &GracefulShutdown,
    workers: &mut Workers,
    config: ServeConfig,
) {
    match accepted {
        Ok((stream, peer)) => serve_connection(stream, peer, app, graceful, workers, config),
        Err(err) => {
            // Out of file descriptors and the like: back off instead of
            // spinning; the connections already open keep being served.
            tracing::error!(error = %err, "accept failed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: &App,
    graceful: &GracefulShutdown,
    workers: &mut Workers,
    config: ServeConfig,
) {
    let _ = stream.set_nodelay(true);
    let app = app.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req.map(Body::new))
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    let watcher = graceful.watcher();
    workers.spawn_connection(stream, move |stream| async move {
        let connection = watcher.watch(builder.serve_connection(TokioIo::new(stream), service));
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, %peer, "connection ended with an error");
        }
    });
}
