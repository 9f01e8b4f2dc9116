//! jessy-core as seen from the gateway: its keep-alive connections
//! ([`super::pool`]), the path mapping, and the last known state of the
//! core (from a background probe of its `/ready`, and from every forwarded
//! request's outcome).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::config::UpstreamUrl;
use super::exchange::{self, ExchangeError};
use super::pool::CorePool;
use super::relay::{self, Encode, Source};

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

    /// The core's `host:port`, as its requests' `Host` says it.
    pub fn authority(&self) -> &str {
        self.url.authority.as_str()
    }

    pub fn pool(&self) -> &CorePool {
        &self.pool
    }

    /// The core's path and query for a gateway path and query:
    /// `/api/v1/status` and `/api/v1/health` map to the core's `/status`
    /// and `/health`; every other `/api/v1/*` path is forwarded as is. The
    /// query string is kept.
    pub fn path_for(gateway: &str) -> Cow<'_, str> {
        let (path, query) = match gateway.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (gateway, None),
        };
        let renamed = match path {
            "/api/v1/status" => "/status",
            "/api/v1/health" => "/health",
            _ => return Cow::Borrowed(gateway),
        };
        match query {
            None => Cow::Borrowed(renamed),
            Some(query) => Cow::Owned(format!("{renamed}?{query}")),
        }
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

    /// Asks the core's `/ready` once; records and returns the state.
    pub async fn probe(&self, timeout: Duration) -> UpstreamState {
        let state = match tokio::time::timeout(timeout, self.ask_ready()).await {
            Ok(Ok(status)) if (200..300).contains(&status) => UpstreamState::Up,
            _ => UpstreamState::Down,
        };
        self.mark(state);
        state
    }

    /// `GET /ready` on a new connection (the probe also asks whether the
    /// core can be connected to at all): the status. The body is read and
    /// dropped, so the connection can join the pool.
    async fn ask_ready(&self) -> Result<u16, ExchangeError> {
        let mut conn = self.pool.connect().await?;
        let request = format!(
            "GET /ready HTTP/1.1\r\nhost: {}\r\nuser-agent: jessy-api-probe\r\n\r\n",
            self.authority()
        );
        conn.stream.write_all(request.as_bytes()).await?;
        let (response, ()) = exchange::read_response_head(&mut conn, false, |_, _| ()).await?;
        let source = Source {
            io: &mut conn.stream,
            buf: &mut conn.buf,
            framing: response.framing,
        };
        relay::body(
            source,
            &mut tokio::io::sink(),
            &mut Vec::new(),
            Encode::Raw,
            u64::MAX,
        )
        .await
        .map_err(|err| ExchangeError::Io(std::io::Error::other(err)))?;
        if response.reusable {
            self.pool.checkin(conn);
        }
        Ok(response.status)
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

    #[test]
    fn gateway_paths_map_to_core_paths_and_keep_the_query() {
        let cases = [
            ("/api/v1/status", "/status"),
            ("/api/v1/health", "/health"),
            ("/api/v1/query", "/api/v1/query"),
            ("/api/v1/query?x=1&y=2", "/api/v1/query?x=1&y=2"),
            ("/api/v1/status?verbose", "/status?verbose"),
            ("/api/v1/health/deep", "/api/v1/health/deep"),
            ("/api/v1//double", "/api/v1//double"),
        ];
        for (from, to) in cases {
            assert_eq!(Upstream::path_for(from), to, "{from}");
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
