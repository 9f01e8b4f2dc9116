//! Liveness, readiness, status and metrics of jessy-core.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::CoreState;
use crate::http::error::ApiError;
use crate::http::now_rfc3339;

/// `GET /health`: liveness. 200 as long as the process serves, including
/// during shutdown (restarting a draining process would drop its requests).
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "healthy",
        service: "jessy-core",
        version: crate::VERSION,
        timestamp: now_rfc3339(),
    })
}

/// The `/health` answer (typed: the hottest endpoint skips building a
/// `serde_json::Value`).
#[derive(Debug, serde::Serialize)]
pub struct Health {
    pub status: &'static str,
    pub service: &'static str,
    pub version: &'static str,
    pub timestamp: String,
}

/// `GET /ready`: 200 while serving, 503 from the moment shutdown begins.
pub async fn ready(State(state): State<Arc<CoreState>>) -> Result<Json<Value>, ApiError> {
    if state.readiness.is_ready() {
        Ok(Json(json!({ "status": "ready" })))
    } else {
        Err(ApiError::service_unavailable(
            "shutting_down",
            "jessy-core is shutting down and takes no new work",
        ))
    }
}

/// `GET /status`: uptime, memory read from the OS, version, dimensions.
pub async fn status(State(state): State<Arc<CoreState>>) -> Json<Value> {
    Json(json!({
        "status": "running",
        "service": "jessy-core",
        "version": crate::VERSION,
        "revision": crate::GIT_REVISION,
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "memory_rss_bytes": crate::process::resident_memory_bytes(),
        "dimensions_loaded": state.navigator.dimension_labels(),
    }))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<Arc<CoreState>>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
}
