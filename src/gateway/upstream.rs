//! jessy-core as seen from the gateway: its keep-alive connections
//! ([`super::pool`]), the URL mapping, and the last known state of the core
//! (from a background probe of its `/ready`, and from every forwarded
//! request's outcome).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::uri::{PathAndQuery, Scheme};
use axum::http::{Request, Uri};

use super::config::UpstreamUrl;
use super::pool::{CorePool, PooledBody, SendError};

/// The core's last known state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamState {
    /// Not probed yet.
    Unknown,
    Up,
    Down,
}

impl UpstreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamState::Unknown => "unknown",
            UpstreamState::Up => "up",
            UpstreamState::Down => "down",
        }
    }
}

/// The client for jessy-core.
#[derive(Debug, Clone)]
pub struct Upstream {
    url: UpstreamUrl,
    pool: Arc<CorePool>,
    state: Arc<AtomicU8>,
    up: metrics::Gauge,
    /// `jessy_api_upstream_duration_seconds` by status, looked up once each.
    latency: Arc<RwLock<foldhash::HashMap<u16, metrics::Histogram>>>,
}

impl Upstream {
    pub fn new(
        url: UpstreamUrl,
        connect_timeout: Duration,
        pool_idle_timeout: Duration,
    ) -> Upstream {
        metrics::describe_gauge!(
            "jessy_api_upstream_up",
            "1 when jessy-core answered the last probe or request, 0 when it did not."
        );
        metrics::describe_histogram!(
            "jessy_api_upstream_duration_seconds",
            metrics::Unit::Seconds,
            "Time until jessy-core's response headers arrived, by upstream status."
        );
        Upstream {
            pool: Arc::new(CorePool::new(
                &url.authority,
                connect_timeout,
                pool_idle_timeout,
            )),
            url,
            state: Arc::new(AtomicU8::new(0)),
            up: metrics::gauge!("jessy_api_upstream_up"),
            latency: Arc::default(),
        }
    }

    /// Records how long the core took to answer with `status`.
    pub fn record_latency(&self, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(histogram) = self
            .latency
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&status)
        {
            return histogram.record(seconds);
        }
        let histogram = metrics::histogram!(
            "jessy_api_upstream_duration_seconds",
            "status" => status.to_string()
        );
        histogram.record(seconds);
        self.latency
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(status, histogram);
    }

    pub fn url(&self) -> &UpstreamUrl {
        &self.url
    }

    /// The core's URI for a gateway path: `/api/v1/status` and
    /// `/api/v1/health` map to the core's `/status` and `/health`; every
    /// other `/api/v1/*` path is forwarded as is. The query string is kept;
    /// the authority is always the configured one, never the client's.
    pub fn uri_for(&self, gateway: &Uri) -> Uri {
        let renamed = match gateway.path() {
            "/api/v1/status" => Some("/status"),
            "/api/v1/health" => Some("/health"),
            _ => None,
        };
        // The common cases reuse the request's bytes or a static path.
        let path_and_query = match (renamed, gateway.query()) {
            (Some(path), None) => Ok(PathAndQuery::from_static(path)),
            (Some(path), Some(q)) => PathAndQuery::try_from(format!("{path}?{q}")),
            (None, _) => Ok(gateway
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"))),
        };
        let mut parts = axum::http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.url.authority.clone());
        parts.path_and_query = path_and_query.ok();
        Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"))
    }

    pub fn state(&self) -> UpstreamState {
        match self.state.load(Ordering::Relaxed) {
            1 => UpstreamState::Up,
            2 => UpstreamState::Down,
            _ => UpstreamState::Unknown,
        }
    }

    pub fn mark(&self, state: UpstreamState) {
        let value = match state {
            UpstreamState::Unknown => 0,
            UpstreamState::Up => 1,
            UpstreamState::Down => 2,
        };
        // Every forwarded request marks; only a change costs more than a load.
        if self.state.load(Ordering::Relaxed) == value {
            return;
        }
        let before = self.state.swap(value, Ordering::Relaxed);
        self.up
            .set(if state == UpstreamState::Up { 1.0 } else { 0.0 });
        if before != value {
            match state {
                UpstreamState::Down => {
                    tracing::warn!(upstream = %self.url, "jessy-core is unreachable")
                }
                _ => {
                    tracing::info!(upstream = %self.url, state = state.as_str(), "jessy-core state changed")
                }
            }
        }
    }

    /// Sends a request to the core (the caller applies deadlines).
    pub async fn send(&self, req: Request<Body>) -> Result<hyper::Response<PooledBody>, SendError> {
        self.pool.send(req).await
    }

    /// Asks the core's `/ready` once; records and returns the state.
    pub async fn probe(&self, timeout: Duration) -> UpstreamState {
        let uri = self.uri_for(&Uri::from_static("/ready"));
        let req = Request::get(uri)
            .header("user-agent", "jessy-api-probe")
            .body(Body::empty())
            .expect("static probe request is valid");
        let state = match tokio::time::timeout(timeout, self.send(req)).await {
            Ok(Ok(res)) if res.status().is_success() => UpstreamState::Up,
            _ => UpstreamState::Down,
        };
        self.mark(state);
        state
    }

    /// Probes every `interval` until the task is aborted.
    pub async fn run_probe(self, interval: Duration, timeout: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.probe(timeout).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::config::parse_upstream_url;

    fn upstream() -> Upstream {
        Upstream::new(
            parse_upstream_url("http://core:8080").unwrap(),
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
    }

    #[tokio::test]
    async fn gateway_paths_map_to_core_paths_with_the_configured_authority() {
        let up = upstream();
        let cases = [
            ("/api/v1/status", "http://core:8080/status"),
            ("/api/v1/health", "http://core:8080/health"),
            ("/api/v1/query", "http://core:8080/api/v1/query"),
            (
                "/api/v1/query?x=1&y=2",
                "http://core:8080/api/v1/query?x=1&y=2",
            ),
            ("/api/v1/status?verbose", "http://core:8080/status?verbose"),
            (
                "http://evil.example/api/v1/query",
                "http://core:8080/api/v1/query",
            ),
            ("/api/v1//double", "http://core:8080/api/v1//double"),
        ];
        for (from, to) in cases {
            assert_eq!(up.uri_for(&from.parse().unwrap()).to_string(), to, "{from}");
        }
    }

    #[tokio::test]
    async fn state_starts_unknown_and_follows_marks() {
        let up = upstream();
        assert_eq!(up.state(), UpstreamState::Unknown);
        up.mark(UpstreamState::Down);
        assert_eq!(up.state(), UpstreamState::Down);
        up.mark(UpstreamState::Up);
        assert_eq!(up.state().as_str(), "up");
    }
}
