//! The service every request enters first, in this order: request id →
//! observation (span, metrics, access log) → panic catching → the service's
//! deadline and body limit, when it sets them → the router.
//!
//! One hand-written service rather than a stack of `from_fn` layers: each of
//! those clones and boxes its inner service and boxes its future on every
//! request, which profiling showed to be most of a `/health` request's cost
//! (README, "Performance"). Here a request allocates nothing of its own.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio::task::coop::{Unconstrained, unconstrained};

use super::body_limit::BodyLimit;
use super::observe::Observation;
use super::request_id;
use super::routes::RouteLabels;
use super::timeout::RequestTimeout;
use crate::metrics::Metrics;

/// The configuration of [`Common`]: metrics and route labels always; a
/// deadline and a body limit when the service wants them around all of its
/// routes.
#[derive(Clone)]
pub struct CommonLayer(Arc<Settings>);

#[derive(Clone)]
struct Settings {
    metrics: Metrics,
    routes: RouteLabels,
    timeout: Option<RequestTimeout>,
    body_limit: Option<BodyLimit>,
}

impl CommonLayer {
    /// `routes`: the labels of the routes inside (from [`super::routes::Routes`]).
    pub fn new(metrics: &Metrics, routes: RouteLabels) -> CommonLayer {
        CommonLayer(Arc::new(Settings {
            metrics: metrics.clone(),
            routes,
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

impl<S> tower::Service<Request> for Common<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = CommonFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let id = request_id::assign(&req);
        let route = self.settings.routes.of(req.uri().path());
        let observation = Observation::start(&req, id, &self.settings.metrics);
        let timeout = self.settings.timeout;
        let deadline = timeout.map(|limit| {
            (
                tokio::time::Instant::from_std(observation.started()) + limit.0,
                limit,
            )
        });

        // Refusals that need no handler, then the router (its synchronous
        // part can panic too).
        let (handling, answer) = match self.settings.body_limit.map(|limit| limit.apply(&mut req)) {
            Some(Err(refused)) => (None, Some(refused.into_response())),
            _ => {
                let _entered = observation.span().enter();
                match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
                    Ok(handling) => (Some(handling), None),
                    Err(panic) => (None, Some(super::panic_to_500(panic))),
                }
            }
        };
        CommonFuture {
            handling,
            answer,
            deadline,
            timer: None,
            route,
            observation: Some(observation),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`Common`]: the handler's response (or the refusal, the
    /// panic's 500, the deadline's 503), observed and given its request id.
    /// A named future rather than a boxed `async` block: no allocation, and
    /// the handler's future is not moved after it is made.
    pub struct CommonFuture<F> {
        #[pin]
        handling: Option<F>,
        answer: Option<Response>,
        deadline: Option<(tokio::time::Instant, RequestTimeout)>,
        // Made only when the handler waits: most requests finish on their
        // first poll and pay for no timer. Unconstrained, as in tokio's
        // `Timeout`: a handler that spends the task's coop budget at every
        // poll must not keep its deadline from being noticed.
        timer: Option<Pin<Box<Unconstrained<tokio::time::Sleep>>>>,
        route: &'static str,
        observation: Option<Observation>,
    }
}

impl<F> Future for CommonFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut res = match this.answer.take() {
            Some(res) => res,
            None => {
                let observation = this
                    .observation
                    .as_ref()
                    .expect("CommonFuture polled after it completed");
                let handled = {
                    let _entered = observation.span().enter();
                    poll_catching_panics(this.handling.as_mut(), cx)
                };
                match handled {
                    Poll::Ready(res) => res,
                    Poll::Pending => match this.deadline {
                        None => return Poll::Pending,
                        Some((deadline, limit)) => {
                            let timer = this.timer.get_or_insert_with(|| {
                                Box::pin(unconstrained(tokio::time::sleep_until(*deadline)))
                            });
                            std::task::ready!(timer.as_mut().poll(cx));
                            limit.error().into_response()
                        }
                    },
                }
            }
        };
        // Done: the handler's future goes now, not when hyper drops this one.
        this.handling.set(None);
        let observation = this
            .observation
            .take()
            .expect("CommonFuture polled after it completed");
        let id = observation.end(this.route, res.status().as_u16());
        request_id::finish(&mut res, id);
        Poll::Ready(Ok(res))
    }
}

/// Polls the handler, turning a panic into a JSON 500 (the process keeps
/// serving; the release profile keeps `panic = "unwind"` for this).
fn poll_catching_panics<F>(handling: Pin<&mut Option<F>>, cx: &mut Context<'_>) -> Poll<Response>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    // Some until the answer is made; polling after it is a caller's bug, as
    // for any future.
    let handling = handling
        .as_pin_mut()
        .expect("CommonFuture polled after it completed");
    match std::panic::catch_unwind(AssertUnwindSafe(|| handling.poll(cx))) {
        Ok(Poll::Ready(Ok(res))) => Poll::Ready(res),
        Ok(Poll::Ready(Err(never))) => match never {},
        Ok(Poll::Pending) => Poll::Pending,
        Err(panic) => Poll::Ready(super::panic_to_500(panic)),
    }
}
