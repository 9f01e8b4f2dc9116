//! Observation of every request: one access-log line, the request metrics
//! (`http_requests_total`, `http_request_duration_seconds`,
//! `http_requests_in_flight`) and a tracing span that carries the trace
//! context (and, with the `otel` feature, continues an incoming `traceparent`).
//!
//! Metrics are labelled by the route template, never the raw path, so a
//! scan of random URLs cannot explode label cardinality (the labels:
//! [`super::routes`], and the gateway's forwarded routes).

use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{Method, Uri};

use super::request_id::RequestId;
use crate::metrics::{InFlight, Metrics};

/// Routes that orchestrators and scrapers call every few seconds: their
/// successful answers are logged at DEBUG, so the access log shows traffic
/// rather than probes (a refused or failed probe is still logged).
const PROBE_ROUTES: [&str; 7] = [
    "/health",
    "/ready",
    "/metrics",
    "/api/health",
    "/api/ready",
    "/api/metrics",
    "/api/v1/health",
];

/// One request being observed, from arrival to its response.
pub struct Observation {
    started: Instant,
    method: Method,
    // A clone shares the request's bytes; the path is logged at the end.
    uri: Uri,
    request_id: RequestId,
    span: tracing::Span,
    in_flight: InFlight,
}

impl Observation {
    /// Starts observing `req` (after its id is assigned).
    pub fn start(req: &Request, request_id: RequestId, metrics: &Metrics) -> Observation {
        Observation::begin(
            req.method().clone(),
            req.uri().clone(),
            request_id,
            metrics,
            |span| crate::telemetry::continue_trace(span, req.headers()),
        )
    }

    /// Starts observing a request given by its parts; `continue_trace`
    /// joins the span to an incoming trace and runs only when the span is
    /// enabled (trace export on).
    pub fn begin(
        method: Method,
        uri: Uri,
        request_id: RequestId,
        metrics: &Metrics,
        continue_trace: impl FnOnce(&tracing::Span),
    ) -> Observation {
        let path = uri.path();
        // No subscriber wants spans unless trace export is on (the JSON log
        // layer ignores them), and then the span is disabled and free.
        let span = tracing::info_span!(
            "request",
            otel.name = tracing::field::Empty,
            otel.kind = "server",
            http.request.method = %method,
            url.path = %path,
            request_id = %request_id,
        );
        if !span.is_disabled() {
            span.record("otel.name", format!("{method} {path}"));
            continue_trace(&span);
        }
        Observation {
            started: Instant::now(),
            method,
            uri,
            request_id,
            span,
            in_flight: metrics.begin_request(),
        }
    }

    /// When the request arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The span the request's handling runs in.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Records the metrics and writes the access-log line for an answer
    /// with `status` on `route` (a route template, or `"unmatched"`), and
    /// gives back the request's id (for the response: no copy of it is made).
    pub fn end(self, route: &'static str, status: u16) -> RequestId {
        let elapsed = self.started.elapsed();
        self.in_flight
            .answered(route, &self.method, status, elapsed);

        let latency_ms = latency_ms(elapsed);
        // Recorded as strings, not through `Display`: the formatting
        // machinery was a third of the cost of writing the line.
        let (request_id, method, path) = (
            self.request_id.as_str(),
            self.method.as_str(),
            self.uri.path(),
        );
        self.span.in_scope(|| {
            if status >= 500 {
                tracing::warn!(
                    request_id,
                    method,
                    route,
                    path,
                    status,
                    latency_ms,
                    "request failed"
                );
            } else if status < 400 && PROBE_ROUTES.contains(&route) {
                tracing::debug!(
                    request_id, method, route, path, status, latency_ms, "request"
                );
            } else {
                tracing::info!(
                    request_id, method, route, path, status, latency_ms, "request"
                );
            }
        });
        self.request_id
    }
}

/// `elapsed` in milliseconds, rounded to the microsecond. A plain
/// `as_secs_f64() * 1000.0` carries binary noise into the log line
/// (`0.050544000000000006`); an integer count of microseconds divided by
/// 1000 is the double nearest to a 3-decimal number, which prints as one
/// (`0.051`).
fn latency_ms(elapsed: Duration) -> f64 {
    let micros = (elapsed.as_nanos() + 500) / 1000;
    // u128 -> f64: exact below 2^53 µs (285 years).
    micros as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_rounded_to_the_microsecond() {
        // 0.050544 ms, which `as_secs_f64() * 1000.0` writes as 0.050544000000000006.
        let noisy = Duration::from_nanos(50_544);
        assert_eq!(latency_ms(noisy), 0.051);
        assert_eq!(latency_ms(noisy).to_string(), "0.051");
        // As the JSON log line writes it (src/telemetry/json_format.rs).
        assert_eq!(
            zmij::Buffer::new().format_finite(latency_ms(noisy)),
            "0.051"
        );
        assert_eq!(latency_ms(Duration::from_nanos(50_499)).to_string(), "0.05");
        assert_eq!(latency_ms(Duration::ZERO).to_string(), "0");
        assert_eq!(
            latency_ms(Duration::from_micros(1_234_567)).to_string(),
            "1234.567"
        );
        // Every microsecond count up to ten seconds prints with at most 3 decimals.
        for micros in (0..10_000_000_u64).step_by(997) {
            let text = latency_ms(Duration::from_micros(micros)).to_string();
            let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
            assert!(decimals <= 3, "{micros} µs printed as {text}");
        }
    }
}
