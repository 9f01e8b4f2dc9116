//! The service every request enters first, in this order: request id →
//! observation (span, metrics, access log) → panic catching → the service's
//! deadline and body limit, when it sets them → the router.
//!
//! One hand-written service rather than a stack of `from_fn` layers: each of
//! those clones and boxes its inner service and boxes its future on every
//! request, which profiling showed to be most of a `/health` request's cost
//! (README, "Performance"). Here a request costs one boxed future.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::body_limit::BodyLimit;
use super::observe::Observation;
use super::request_id;
use super::timeout::RequestTimeout;
use crate::metrics::Metrics;

/// The configuration of [`Common`]: metrics always; a deadline and a body
/// limit when the service wants them around all of its routes.
#[derive(Clone)]
pub struct CommonLayer(Arc<Settings>);

#[derive(Clone)]
struct Settings {
    metrics: Metrics,
    timeout: Option<RequestTimeout>,
    body_limit: Option<BodyLimit>,
}

impl CommonLayer {
    pub fn new(metrics: &Metrics) -> CommonLayer {
        CommonLayer(Arc::new(Settings {
            metrics: metrics.clone(),
            timeout: None,
            body_limit: None,
        }))
    }

    /// Answers 503 `timeout` when a request takes longer than this.
    pub fn timeout(self, timeout: RequestTimeout) -> CommonLayer {
        self.with(|s| s.timeout = Some(timeout))
    }

    /// Answers 413 `body_too_large` for bodies over this (also while they stream).
    pub fn body_limit(self, limit: BodyLimit) -> CommonLayer {
        self.with(|s| s.body_limit = Some(limit))
    }

    fn with(self, change: impl FnOnce(&mut Settings)) -> CommonLayer {
        let mut settings = Arc::unwrap_or_clone(self.0);
        change(&mut settings);
        CommonLayer(Arc::new(settings))
    }
}

impl<S> tower::Layer<S> for CommonLayer {
    type Service = Common<S>;

    fn layer(&self, inner: S) -> Common<S> {
        Common {
            inner,
            settings: self.0.clone(),
        }
    }
}

/// See the module documentation and [`CommonLayer`].
#[derive(Clone)]
pub struct Common<S> {
    inner: S,
    settings: Arc<Settings>,
}

type Panic = Box<dyn Any + Send + 'static>;

impl<S> tower::Service<Request> for Common<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let id = request_id::assign(&mut req);
        let observation = Observation::start(&req, id.clone(), &self.settings.metrics);
        let span = observation.span().clone();
        let timeout = self.settings.timeout;
        let deadline = tokio::time::Instant::from_std(observation.started());

        // Refusals that need no handler, then the router (its synchronous
        // part can panic too).
        let admitted = match self.settings.body_limit.map(|limit| limit.apply(&mut req)) {
            Some(Err(refused)) => Err(refused.into_response()),
            _ => {
                let _entered = span.enter();
                std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req)))
                    .map_err(super::panic_to_500)
            }
        };

        Box::pin(async move {
            let mut res = match admitted {
                Err(res) => res,
                Ok(handling) => {
                    let handling = catch_panics(handling).instrument(span);
                    let outcome = match timeout {
                        Some(limit) => within(deadline + limit.0, handling)
                            .await
                            .unwrap_or_else(|| Ok(Ok(limit.error().into_response()))),
                        None => handling.await,
                    };
                    match outcome {
                        Ok(Ok(res)) => res,
                        Ok(Err(never)) => match never {},
                        Err(panic) => super::panic_to_500(panic),
                    }
                }
            };
            observation.finish(&res);
            request_id::finish(&mut res, &id);
            Ok(res)
        })
    }
}

/// Runs `future` until `deadline`; `None` when it is not done by then. Most
/// requests finish on their first poll, and only those that wait pay for a
/// timer.
async fn within<F: Future>(deadline: tokio::time::Instant, future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    if let Poll::Ready(output) =
        std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await
    {
        return Some(output);
    }
    tokio::time::timeout_at(deadline, future).await.ok()
}

/// Polls `future`, turning a panic into an `Err` (the process keeps serving;
/// the release profile keeps `panic = "unwind"` for this).
async fn catch_panics<F: Future>(future: F) -> Result<F::Output, Panic> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    })
    .await
}
