//! `jessy-api`: the public gateway in front of jessy-core.
//!
//! Where things are decided: [`rate_limit`] (is this client over its rate?),
//! [`load_shed`] (is the gateway over its concurrency?), [`admission`] (the
//! order those checks and the body limit run in), [`proxy`] (forwarding
//! and how core failures map to 502/504), [`connection`] (a client
//! connection: reading requests, keep-alive, what is forwarded and what the
//! gateway answers itself), [`headers`] (hop-by-hop and `X-Forwarded-*`),
//! [`relay`] (bodies, both ways), [`pool`] (the keep-alive connections to
//! the core), [`exchange`] (reading the core's answer), [`client_ip`] (who
//! the client is behind trusted proxies), [`upstream`] (the core's paths and
//! last known state), [`cors`], [`rejections`] (counting refusals),
//! [`answer`] (the answers the gateway writes itself), [`local`] and
//! [`handlers`] (the gateway's own health, readiness and metrics),
//! [`timeouts`] (which wait is bounded by what, and the idle timeout of
//! relayed bodies), [`target`] (the path requests are routed and forwarded
//! by), [`config`] (flags).
//!
//! Forwarded requests never go through hyper or axum: the gateway speaks
//! HTTP/1.1 itself on that path ([`crate::h1`] says why). Its own endpoints
//! are an axum router behind the same common stack as jessy-core's.

pub mod admission;
pub mod answer;
pub mod client_ip;
pub mod config;
pub mod connection;
pub mod cors;
pub mod exchange;
pub mod handlers;
pub mod headers;
pub mod load_shed;
pub mod local;
pub mod pool;
pub mod proxy;
pub mod rate_limit;
pub mod rejections;
pub mod relay;
pub mod target;
pub mod timeouts;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use tokio::net::{TcpListener, TcpStream};
use tower::Layer;

use crate::http::body_limit::BodyLimit;
use crate::http::routes::Routes;
use crate::http::{self as jhttp, App, CommonLayer};
use crate::metrics::Metrics;
use crate::server::{self, Drain, DrainWatch, Protocol, Readiness, ServeConfig};
use admission::Admission;
use client_ip::TrustedProxies;
pub use config::{GatewayCli, GatewayCommand, GatewayConfig};
use cors::Cors;
use load_shed::ConcurrencyLimit;
use rate_limit::{RateLimit, RateLimiter};
use timeouts::Timeouts;
use upstream::Upstream;

/// What the gateway's own handlers share.
#[derive(Clone)]
pub struct GatewayState {
    pub upstream: Upstream,
    pub trusted: TrustedProxies,
    pub readiness: Readiness,
    pub metrics: Metrics,
}

/// Everything a client connection needs, shared by all of them.
pub struct Gateway {
    pub state: GatewayState,
    pub admission: Admission,
    pub cors: Option<Cors>,
    /// The gateway's own endpoints.
    pub app: App,
    pub timeouts: Timeouts,
}

/// The gateway's own routes (health, readiness, metrics; everything else
/// that is not forwarded gets the JSON 404) in the common stack.
pub fn router(state: GatewayState, cors: Option<&Cors>) -> App {
    let (own, labels) = Routes::default()
        .route("/api/health", get(handlers::health))
        .route("/api/ready", get(handlers::ready))
        .route("/api/metrics", get(handlers::metrics))
        .into_parts();
    let mut routes = own
        .method_not_allowed_fallback(jhttp::method_not_allowed)
        .fallback(jhttp::not_found);
    if let Some(cors) = cors {
        routes = routes.layer(cors.layer());
    }
    CommonLayer::new(&state.metrics, labels).layer(routes.with_state(Arc::new(state)))
}

/// jessy-api's way of serving a connection ([`connection::serve`]).
#[derive(Clone)]
pub struct GatewayProtocol(Arc<Gateway>);

impl Protocol for GatewayProtocol {
    fn serve_connection(
        self,
        stream: TcpStream,
        peer: SocketAddr,
        drain: DrainWatch,
    ) -> impl Future<Output = ()> + Send + 'static {
        connection::serve(stream, peer, self.0, drain)
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Metrics(#[from] crate::metrics::InstallError),
}

/// A bound, ready-to-run jessy-api.
pub struct Application {
    listener: TcpListener,
    gateway: Arc<Gateway>,
    limiter: Option<Arc<RateLimiter>>,
    probe_interval: Duration,
    probe_timeout: Duration,
    serve: ServeConfig,
}

impl Application {
    /// Builds the client for the core, installs metrics, binds the listener.
    pub async fn build(config: &GatewayConfig) -> Result<Application, StartError> {
        let metrics = Metrics::install("jessy-api")?;
        rejections::describe();
        let upstream = Upstream::new(
            config.upstream_url.clone(),
            config.upstream_connect_timeout,
            config.upstream_pool_idle_timeout,
        );
        let trusted = TrustedProxies(config.trusted_proxies.0.clone());
        let state = GatewayState {
            upstream,
            trusted: trusted.clone(),
            readiness: Readiness::default(),
            metrics,
        };
        let limiter = config.rate_limit_enabled.then(|| {
            Arc::new(RateLimiter::new(
                config.rate_limit_requests,
                config.rate_limit_window,
                config.rate_limit_burst(),
            ))
        });
        let admission = Admission::new(
            limiter
                .clone()
                .map(|limiter| RateLimit { limiter, trusted }),
            ConcurrencyLimit::new(config.max_concurrent_requests as usize),
            BodyLimit(config.max_body_size),
        );
        let cors = Cors::new(&config.cors_allowed_origins.0);
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let gateway = Gateway {
            app: router(state.clone(), cors.as_ref()),
            state,
            admission,
            cors,
            timeouts: Timeouts {
                header_read: config.common.header_read_timeout,
                client_body: config.client_body_timeout,
                client_send: config.client_send_timeout,
                upstream: config.upstream_timeout,
            },
        };
        Ok(Application {
            listener,
            gateway: Arc::new(gateway),
            limiter,
            probe_interval: config.upstream_probe_interval,
            probe_timeout: config.upstream_connect_timeout + Duration::from_secs(1),
            // Thread-per-core: WORKER_THREADS single-threaded runtimes.
            serve: ServeConfig {
                workers: config.common.worker_count(),
                ..config.common.serve_config()
            },
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// Serves until `shutdown` completes, then drains. The core is probed in
    /// the background meanwhile; background tasks stop with the server.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Drain {
        let state = &self.gateway.state;
        let mut background = vec![
            tokio::spawn(state.metrics.clone().run_upkeep()),
            tokio::spawn(
                state
                    .upstream
                    .clone()
                    .run_probe(self.probe_interval, self.probe_timeout),
            ),
        ];
        if let Some(limiter) = self.limiter {
            background.push(tokio::spawn(limiter.run_cleanup()));
        }
        let readiness = state.readiness.clone();
        let drain = server::serve(
            self.listener,
            GatewayProtocol(self.gateway),
            readiness,
            self.serve,
            shutdown,
        )
        .await;
        for task in background {
            task.abort();
        }
        drain
    }
}
