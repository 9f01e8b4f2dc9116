//! `jessy-api`: the public gateway in front of jessy-core.
//!
//! Where things are decided: [`rate_limit`] (is this client over its rate?),
//! [`load_shed`] (is the gateway over its concurrency?), [`admission`] (the
//! order those checks and the body limit run in), [`proxy`] (forwarding
//! and how core failures map to 502/504), [`pool`] (the keep-alive
//! connections to the core), [`headers`] (hop-by-hop and
//! `X-Forwarded-*`), [`client_ip`] (who the client is behind trusted
//! proxies), [`upstream`] (the client for the core and its last known
//! state), [`rejections`] (counting refusals), [`handlers`] (the gateway's own
//! health, readiness and metrics), [`config`] (flags).

pub mod admission;
pub mod client_ip;
pub mod config;
pub mod handlers;
pub mod headers;
pub mod load_shed;
pub mod pool;
pub mod proxy;
pub mod rate_limit;
pub mod rejections;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, Method, header};
use axum::routing::{any, get};
use tokio::net::TcpListener;
use tower::Layer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::http::body_limit::BodyLimit;
use crate::http::observe::RecordRouteLayer;
use crate::http::{self as jhttp, App, CommonLayer};
use crate::metrics::Metrics;
use crate::server::{self, Drain, Readiness, ServeConfig};
use admission::AdmissionLayer;
use client_ip::TrustedProxies;
pub use config::{GatewayCli, GatewayCommand, GatewayConfig};
use load_shed::ConcurrencyLimit;
use rate_limit::{RateLimit, RateLimiter};
use upstream::Upstream;

/// What the handlers share.
#[derive(Clone)]
pub struct GatewayState {
    pub upstream: Upstream,
    pub upstream_timeout: Duration,
    pub trusted: TrustedProxies,
    pub body_limit: BodyLimit,
    pub readiness: Readiness,
    pub metrics: Metrics,
}

/// The routes and middleware of jessy-api.
pub fn router(
    state: GatewayState,
    limiter: Option<Arc<RateLimiter>>,
    config: &GatewayConfig,
) -> App {
    // Forwarded routes: the three the core documents get their own route
    // labels in metrics; anything else under /api/v1 is forwarded too. Only
    // they are admission-checked (rate, concurrency, body size; bodies
    // stream to the core, so no extractor's default limit applies).
    let admission = AdmissionLayer::new(
        limiter.map(|limiter| RateLimit {
            limiter,
            trusted: state.trusted.clone(),
        }),
        ConcurrencyLimit::new(config.max_concurrent_requests as usize),
        state.body_limit,
    );
    // axum wraps every route once per route layer and each wrapper costs a
    // clone, an allocation and a boxed future per request, so a forwarded
    // request goes through one: the route label and admission together.
    let forwarded = Router::new()
        .route("/api/v1/query", any(proxy::forward))
        .route("/api/v1/status", any(proxy::forward))
        .route("/api/v1/health", any(proxy::forward))
        .route("/api/v1/{*rest}", any(proxy::forward))
        .route_layer(
            tower::ServiceBuilder::new()
                .layer(RecordRouteLayer)
                .layer(admission),
        );
    let own = Router::new()
        .route("/api/health", get(handlers::health))
        .route("/api/ready", get(handlers::ready))
        .route("/api/metrics", get(handlers::metrics))
        .method_not_allowed_fallback(jhttp::method_not_allowed)
        .route_layer(RecordRouteLayer);

    let mut routes = own.merge(forwarded).fallback(jhttp::not_found);
    if let Some(cors) = cors(&config.cors_allowed_origins.0) {
        routes = routes.layer(cors);
    }
    let common = CommonLayer::new(&state.metrics).on_response(rejections::count);
    common.layer(routes.with_state(Arc::new(state)))
}

/// CORS for the configured origins only; none configured, no CORS headers
/// (browsers then refuse cross-origin calls, the safe default).
fn cors(origins: &[config::Origin]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().map(|o| o.0.clone())))
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([
                header::CONTENT_TYPE,
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("traceparent"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
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
    app: App,
    state: GatewayState,
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
        let state = GatewayState {
            upstream,
            upstream_timeout: config.upstream_timeout,
            trusted: TrustedProxies(config.trusted_proxies.0.clone()),
            body_limit: BodyLimit(config.max_body_size),
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
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        Ok(Application {
            listener,
            app: router(state.clone(), limiter.clone(), config),
            state,
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
        let mut background = vec![
            tokio::spawn(self.state.metrics.clone().run_upkeep()),
            tokio::spawn(
                self.state
                    .upstream
                    .clone()
                    .run_probe(self.probe_interval, self.probe_timeout),
            ),
        ];
        if let Some(limiter) = self.limiter {
            background.push(tokio::spawn(limiter.run_cleanup()));
        }
        let drain = server::serve(
            self.listener,
            self.app,
            self.state.readiness.clone(),
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
