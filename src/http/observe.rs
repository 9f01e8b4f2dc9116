//! Observation of every request: one access-log line, the request metrics
//! (`http_requests_total`, `http_request_duration_seconds`,
//! `http_requests_in_flight`) and a tracing span that carries the trace
//! context (and, with the `otel` feature, continues an incoming `traceparent`).
//!
//! Metrics are labelled by the matched route template, never the raw path,
//! so a scan of random URLs cannot explode label cardinality: the router's
//! [`record_route`] layer reports the template; everything unmatched is
//! `"unmatched"`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::request_id::RequestId;
use crate::metrics::Metrics;

/// The matched route template, handed from the router to [`track`].
#[derive(Debug, Clone)]
pub struct RouteLabel(pub String);

/// Routes that orchestrators and scrapers call every few seconds: logged at
/// DEBUG, so the access log shows traffic rather than probes.
const PROBE_ROUTES: [&str; 7] = [
    "/health",
    "/ready",
    "/metrics",
    "/api/health",
    "/api/ready",
    "/api/metrics",
    "/api/v1/health",
];

/// Route layer: report which route template matched.
pub async fn record_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let mut res = next.run(req).await;
    if let Some(route) = route {
        res.extensions_mut().insert(RouteLabel(route));
    }
    res
}

/// Counts a request as in flight until dropped, also when the request's
/// future is cancelled (client gone, shutdown deadline).
struct InFlight(metrics::Gauge);

impl InFlight {
    fn enter(gauge: metrics::Gauge) -> Self {
        gauge.increment(1.0);
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Middleware: span, access log and metrics for each request.
pub async fn track(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{method} {path}"),
        otel.kind = "server",
        http.request.method = %method,
        url.path = %path,
        request_id = %request_id,
    );
    crate::telemetry::continue_trace(&span, req.headers());

    let _in_flight = InFlight::enter(metrics.in_flight());
    let res = next.run(req).instrument(span.clone()).await;

    let status = res.status().as_u16();
    let route = res
        .extensions()
        .get::<RouteLabel>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| "unmatched".to_owned());
    let elapsed = started.elapsed();
    let (requests, duration) = metrics.request_handles(&route, &method, status);
    requests.increment(1);
    duration.record(elapsed.as_secs_f64());

    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(%request_id, %method, %route, %path, status, latency_ms, "request failed");
        } else if PROBE_ROUTES.contains(&route.as_str()) {
            tracing::debug!(%request_id, %method, %route, %path, status, latency_ms, "request");
        } else {
            tracing::info!(%request_id, %method, %route, %path, status, latency_ms, "request");
        }
    });
    res
}
