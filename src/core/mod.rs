//! `jessy-core`: the query service.
//!
//! [`config`] holds its flags; [`handlers`] the health, readiness, status and
//! metrics endpoints; [`query`] the query API; [`navigation`] the
//! deterministic engine behind it. [`Application`] binds and serves.

pub mod config;
pub mod handlers;
pub mod navigation;
pub mod query;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower::Layer;

use crate::http::body_limit::BodyLimit;
use crate::http::routes::Routes;
use crate::http::timeout::RequestTimeout;
use crate::http::{self as jhttp, App, CommonLayer};
use crate::metrics::Metrics;
use crate::server::{self, Drain, Readiness, ServeConfig};
pub use config::{CoreCli, CoreCommand, CoreConfig};
use navigation::Navigator;

/// What the handlers share (behind one `Arc`: extracting it is one count).
pub struct CoreState {
    pub navigator: Arc<Navigator>,
    pub readiness: Readiness,
    pub metrics: Metrics,
    pub started: Instant,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Navigation(#[from] navigation::DataError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::InstallError),
}

/// The routes and middleware of jessy-core.
pub fn router(state: CoreState, config: &CoreConfig) -> App {
    let (routes, labels) = Routes::default()
        .route("/health", get(handlers::health))
        .route("/ready", get(handlers::ready))
        .route("/metrics", get(handlers::metrics))
        .route("/status", get(handlers::status))
        // The common body limit answers in JSON and also covers chunked
        // bodies; axum's default limit for extractors is turned off here.
        .route(
            "/api/v1/query",
            post(query::query).layer(DefaultBodyLimit::disable()),
        )
        .into_parts();
    let routes = routes
        .method_not_allowed_fallback(jhttp::method_not_allowed)
        .fallback(jhttp::not_found);
    CommonLayer::new(&state.metrics, labels)
        .timeout(RequestTimeout(config.request_timeout))
        .body_limit(BodyLimit(config.max_body_size))
        .layer(routes.with_state(Arc::new(state)))
}

/// A bound, ready-to-run jessy-core.
pub struct Application {
    listener: TcpListener,
    app: App,
    readiness: Readiness,
    metrics: Metrics,
    header_read_timeout: Duration,
    serve: ServeConfig,
}

impl Application {
    /// Loads the navigation data, installs metrics and binds the listener
    /// (port 0 picks a free port, which tests use).
    pub async fn build(config: &CoreConfig) -> Result<Application, StartError> {
        let navigator = Navigator::from_embedded()?;
        let metrics = Metrics::install("jessy-core")?;
        query::describe_metrics();
        let readiness = Readiness::default();
        let state = CoreState {
            navigator: Arc::new(navigator),
            readiness: readiness.clone(),
            metrics: metrics.clone(),
            started: Instant::now(),
        };
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        Ok(Application {
            listener,
            app: router(state, config),
            readiness,
            metrics,
            header_read_timeout: config.common.header_read_timeout,
            serve: config.common.serve_config(),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Drain {
        let upkeep = tokio::spawn(self.metrics.clone().run_upkeep());
        let protocol = server::Hyper {
            app: self.app,
            header_read_timeout: self.header_read_timeout,
        };
        let drain = server::serve(
            self.listener,
            protocol,
            self.readiness,
            self.serve,
            shutdown,
        )
        .await;
        upkeep.abort();
        drain
    }
}
