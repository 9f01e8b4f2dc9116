//! Forwarding `/api/v1/*` to jessy-core, streaming both ways.
//!
//! Failure mapping (what the client sees when the core misbehaves):
//! - the core does not send response headers within UPSTREAM_TIMEOUT → 504
//!   `upstream_timeout`;
//! - the core refuses, resets or cannot be connected to within
//!   UPSTREAM_CONNECT_TIMEOUT → 502 `upstream_unavailable` (502 rather than
//!   503: the gateway itself is fine, its upstream is not);
//! - the client's body crosses MAX_BODY_SIZE while streaming → 413;
//! - any status the core answers, 4xx and 5xx included, passes through unchanged.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, Version, header};
use axum::response::{IntoResponse, Response};

use std::sync::Arc;

use super::GatewayState;
use super::headers::{set_forwarded, strip_hop_by_hop};
use super::pool::SendError;
use super::upstream::UpstreamState;
use crate::http::body_limit::is_limit_error;
use crate::http::error::ApiError;

/// The handler for every forwarded route.
pub async fn forward(State(state): State<Arc<GatewayState>>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let (mut parts, body) = req.into_parts();
    parts.uri = state.upstream.uri_for(&parts.uri);
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    set_forwarded(&mut parts.headers, peer, state.trusted.trusts(peer));
    // The client's Host names the gateway; the pool sets the core's.
    parts.headers.remove(header::HOST);
    crate::telemetry::inject_trace(&mut parts.headers);

    let started = Instant::now();
    let sent = tokio::time::timeout(
        state.upstream_timeout,
        state.upstream.send(Request::from_parts(parts, body)),
    )
    .await;
    match sent {
        Err(_elapsed) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            format!(
                "jessy-core did not answer within {} ms",
                state.upstream_timeout.as_millis()
            ),
        )
        .into_response(),
        Ok(Err(err)) => upstream_error(&state, &err).into_response(),
        Ok(Ok(res)) => {
            state.upstream.mark(UpstreamState::Up);
            state
                .upstream
                .record_latency(res.status().as_u16(), started.elapsed());
            let (mut parts, body) = res.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
    }
}

fn upstream_error(state: &GatewayState, err: &SendError) -> ApiError {
    if is_limit_error(err) {
        return state.body_limit.error();
    }
    if err.is_connect() {
        state.upstream.mark(UpstreamState::Down);
    }
    tracing::warn!(error = %err, source = ?std::error::Error::source(err), upstream = %state.upstream.url(), "forwarding failed");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "upstream_unavailable",
        "jessy-core could not be reached or closed the connection",
    )
}
