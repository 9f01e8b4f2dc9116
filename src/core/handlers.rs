//! Liveness, readiness, status and metrics of jessy-core.

use std::sync::Arc;
use std::time::Duration;

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
        "uptime_seconds": uptime_seconds(state.started.elapsed()),
        "memory_rss_bytes": crate::process::resident_memory_bytes(),
        "dimensions_loaded": state.navigator.dimension_labels(),
    }))
}

/// `elapsed` in seconds, rounded to the millisecond. A plain `as_secs_f64()`
/// carries binary noise into the answer (`1.2901500719999999`); an integer
/// count of milliseconds divided by 1000 is the double nearest to a
/// 3-decimal number, which prints as one (`1.29`).
fn uptime_seconds(elapsed: Duration) -> f64 {
    let millis = (elapsed.as_nanos() + 500_000) / 1_000_000;
    // u128 -> f64: exact below 2^53 ms (285 000 years).
    millis as f64 / 1000.0
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<Arc<CoreState>>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_is_rounded_to_the_millisecond() {
        // 1.290150072 s, which `as_secs_f64()` writes as 1.2901500719999999.
        let noisy = Duration::from_nanos(1_290_150_072);
        assert_eq!(uptime_seconds(noisy), 1.29);
        assert_eq!(json!(uptime_seconds(noisy)).to_string(), "1.29");
        assert_eq!(uptime_seconds(Duration::from_nanos(1_290_499_999)), 1.29);
        assert_eq!(uptime_seconds(Duration::from_nanos(1_290_500_000)), 1.291);
        assert_eq!(json!(uptime_seconds(Duration::ZERO)).to_string(), "0.0");
        assert_eq!(
            json!(uptime_seconds(Duration::from_secs(86_400 * 365))).to_string(),
            "31536000.0"
        );
        // Every millisecond count up to a day prints with at most 3 decimals.
        for millis in (0..86_400_000_u64).step_by(997) {
            let text = json!(uptime_seconds(Duration::from_millis(millis))).to_string();
            let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
            assert!(decimals <= 3, "{millis} ms printed as {text}");
        }
    }
}
