//! Admission of forwarded requests, in this order: the client's rate
//! ([`super::rate_limit`]; an abusive client is refused before it takes a
//! concurrency permit), the gateway's concurrency ([`super::load_shed`]; the
//! permit is held until the core's response headers arrive), the body limit.
//!
//! A hand-written route layer: the checks are synchronous, so the route is
//! called directly, without the per-request clone and boxing of `from_fn`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio::sync::OwnedSemaphorePermit;

use super::load_shed::ConcurrencyLimit;
use super::rate_limit::RateLimit;
use crate::http::body_limit::BodyLimit;
use crate::http::error::ApiError;

/// The three checks (as a `Router::route_layer`).
#[derive(Debug, Clone)]
pub struct AdmissionLayer(Arc<Checks>);

#[derive(Debug)]
struct Checks {
    rate_limit: Option<RateLimit>,
    concurrency: ConcurrencyLimit,
    body_limit: BodyLimit,
}

impl AdmissionLayer {
    pub fn new(
        rate_limit: Option<RateLimit>,
        concurrency: ConcurrencyLimit,
        body_limit: BodyLimit,
    ) -> Self {
        AdmissionLayer(Arc::new(Checks {
            rate_limit,
            concurrency,
            body_limit,
        }))
    }
}

impl Checks {
    fn admit(&self, req: &mut Request) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Some(rate_limit) = &self.rate_limit {
            rate_limit.check(req)?;
        }
        let permit = self.concurrency.acquire()?;
        self.body_limit.apply(req)?;
        Ok(permit)
    }
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission {
            inner,
            checks: self.0.clone(),
        }
    }
}

/// See [`AdmissionLayer`].
#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    checks: Arc<Checks>,
}

impl<S> tower::Service<Request> for Admission<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = AdmissionFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        match self.checks.admit(&mut req) {
            Ok(permit) => AdmissionFuture::Admitted {
                inner: self.inner.call(req),
                permit: Some(permit),
            },
            Err(refused) => AdmissionFuture::Refused {
                response: Some(refused.into_response()),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// See [`AdmissionLayer`].
    #[project = AdmissionProjection]
    pub enum AdmissionFuture<F> {
        Admitted { #[pin] inner: F, permit: Option<OwnedSemaphorePermit> },
        Refused { response: Option<Response> },
    }
}

impl<F, E> Future for AdmissionFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AdmissionProjection::Admitted { inner, permit } => {
                let res = std::task::ready!(inner.poll(cx));
                permit.take();
                Poll::Ready(res)
            }
            AdmissionProjection::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("AdmissionFuture polled after completion"))),
        }
    }
}
