//! Bare axum reference for `bench/run.sh`: `GET /health` returns the same JSON
//! as jessy-core's `/health` (status, service, version, RFC 3339 timestamp),
//! built the same way (`serde_json::json!` + `time`), on `axum::serve` with
//! Tokio's default multi-thread runtime. No middleware, no logging, no metrics:
//! this is the floor jessy-core is compared against.
//!
//! With `REFERENCE_MIDDLEWARE=standard` (bench case `axum-mw`) the same route
//! runs behind what jessy-core's own middleware does per request, built from
//! the crates the ecosystem uses for it: tower-http's request id (set and
//! echoed), trace span, panic catching, timeout and body limit, a JSON
//! `tracing-subscriber` at `info`, and the request metrics of axum's
//! `prometheus-metrics` example (counter and histogram by method, matched
//! route and status) plus an in-flight gauge. It measures jessy's hand-written
//! stack against the standard one, not against nothing.
//!
//! Env: BIND (default 127.0.0.1:24182), REFERENCE_MIDDLEWARE. Tokio honours
//! TOKIO_WORKER_THREADS.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::{Json, Router, routing::get};
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

async fn health() -> Json<Value> {
    let timestamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned());
    Json(json!({
        "status": "healthy",
        "service": "jessy-core",
        "version": "0.1.0",
        "timestamp": timestamp,
    }))
}

/// axum's `prometheus-metrics` example, with jessy's label names.
async fn track_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    metrics::gauge!("http_requests_in_flight").increment(1.0);
    let response = next.run(req).await;
    metrics::gauge!("http_requests_in_flight").decrement(1.0);
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

fn standard_middleware(routes: Router) -> Router {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .init();
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("no other recorder");
    // Histograms keep samples until upkeep drains them (jessy runs it too).
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            handle.run_upkeep();
        }
    });
    routes
        .route_layer(middleware::from_fn(track_metrics))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(TraceLayer::new_for_http())
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(CatchPanicLayer::new())
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Duration::from_secs(30),
                ))
                .layer(RequestBodyLimitLayer::new(1024 * 1024)),
        )
}

#[tokio::main]
async fn main() {
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:24182".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .unwrap_or_else(|err| panic!("cannot bind {bind}: {err}"));
    let mut app = Router::new().route("/health", get(health));
    match std::env::var("REFERENCE_MIDDLEWARE").as_deref() {
        Ok("standard") => app = standard_middleware(app),
        Ok(other) => panic!("REFERENCE_MIDDLEWARE={other}: only `standard` is known"),
        Err(_) => {}
    }
    axum::serve(listener, app).await.expect("server error");
}

#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
