//! Bare axum reference for `bench/run.sh`: `GET /health` returns the same JSON
//! as jessy-core's `/health` (status, service, version, RFC 3339 timestamp),
//! built the same way (`serde_json::json!` + `time`), on `axum::serve` with
//! Tokio's default multi-thread runtime. No middleware, no logging, no metrics:
//! this is the floor jessy-core is compared against.
//!
//! Env: BIND (default 127.0.0.1:24182). Tokio honours TOKIO_WORKER_THREADS.

use axum::{Json, Router, routing::get};
use serde_json::{Value, json};

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

#[tokio::main]
async fn main() {
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:24182".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .unwrap_or_else(|err| panic!("cannot bind {bind}: {err}"));
    let app = Router::new().route("/health", get(health));
    axum::serve(listener, app).await.expect("server error");
}

#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
