//! The gateway's own endpoints: liveness, readiness, metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use std::sync::Arc;

use super::GatewayState;
use super::upstream::UpstreamState;
use crate::http::error::ApiError;
use crate::http::now_rfc3339;

/// `GET /api/health`: the gateway is alive (200 whatever the core's state,
/// which is reported alongside so an operator sees both at once).
pub async fn health(State(state): State<Arc<GatewayState>>) -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "service": "jessy-api",
        "version": crate::VERSION,
        "timestamp": now_rfc3339(),
        "upstream": {
            "url": state.upstream.url().to_string(),
            "state": state.upstream.state().as_str(),
        },
    }))
}

/// `GET /api/ready`: 200 only when the core answered its last probe and the
/// gateway is not shutting down.
pub async fn ready(State(state): State<Arc<GatewayState>>) -> Result<Json<Value>, ApiError> {
    if !state.readiness.is_ready() {
        return Err(ApiError::service_unavailable(
            "shutting_down",
            "jessy-api is shutting down and takes no new work",
        ));
    }
    match state.upstream.state() {
        UpstreamState::Up => Ok(Json(json!({ "status": "ready", "upstream": "up" }))),
        other => Err(ApiError::service_unavailable(
            "upstream_unavailable",
            format!("jessy-core is {}", other.as_str()),
        )),
    }
}

/// `GET /api/metrics`: Prometheus text format.
pub async fn metrics(State(state): State<Arc<GatewayState>>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
}
