//! The Prometheus recorder: the one process-wide global (the `metrics`
//! facade requires it). Installed once, even when tests build several apps
//! in one process; each app keeps a [`Metrics`] handle to render from.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::http::Method;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: 1 ms .. 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static RECORDER: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// The request counter and latency histogram of one (method, status).
type RequestHandles = (metrics::Counter, metrics::Histogram);
type HandlesByRoute = foldhash::HashMap<String, foldhash::HashMap<(Method, u16), RequestHandles>>;

/// A handle to the installed recorder, with the per-request metric handles
/// looked up once and kept: `counter!(name, &labels)` with owned label
/// strings costs a registry lookup and several allocations per request.
/// Cloning is one reference count (each request holds a clone).
#[derive(Clone)]
pub struct Metrics(Arc<Shared>);

struct Shared {
    handle: PrometheusHandle,
    in_flight: metrics::Gauge,
    requests: RwLock<HandlesByRoute>,
}

/// Errors installing the recorder (another recorder was installed first).
#[derive(Debug, thiserror::Error)]
#[error("cannot install the Prometheus recorder: {0}")]
pub struct InstallError(String);

impl Metrics {
    /// Installs the recorder on first use, and describes the shared metrics.
    pub fn install(service: &'static str) -> Result<Metrics, InstallError> {
        let mut slot = RECORDER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let handle = match slot.as_ref() {
            Some(handle) => handle.clone(),
            None => {
                let handle = PrometheusBuilder::new()
                    .set_buckets_for_metric(
                        Matcher::Suffix("duration_seconds".to_owned()),
                        LATENCY_BUCKETS,
                    )
                    .map_err(|e| InstallError(e.to_string()))?
                    .install_recorder()
                    .map_err(|e| InstallError(e.to_string()))?;
                describe_http_metrics();
                slot.insert(handle).clone()
            }
        };
        metrics::describe_gauge!(
            "jessy_build_info",
            "Build information: service, version and git revision (value is always 1)."
        );
        metrics::gauge!(
            "jessy_build_info",
            "service" => service,
            "version" => crate::VERSION,
            "revision" => crate::GIT_REVISION,
        )
        .set(1.0);
        Ok(Metrics(Arc::new(Shared {
            handle,
            in_flight: metrics::gauge!("http_requests_in_flight"),
            requests: RwLock::default(),
        })))
    }

    /// `http_requests_in_flight`.
    pub fn in_flight(&self) -> &metrics::Gauge {
        &self.0.in_flight
    }

    /// Counts one answered request in `http_requests_total` and
    /// `http_request_duration_seconds`, labelled by (route template, method,
    /// status). Routes are templates, so the handle cache is as bounded as
    /// the label set itself.
    pub fn record_request(&self, route: &str, method: &Method, status: u16, elapsed: Duration) {
        let record = |(requests, duration): &RequestHandles| {
            requests.increment(1);
            duration.record(elapsed.as_secs_f64());
        };
        {
            let cache = self.0.requests.read().unwrap_or_else(|e| e.into_inner());
            if let Some(handles) = cache
                .get(route)
                .and_then(|by| by.get(&(method.clone(), status)))
            {
                return record(handles);
            }
        }
        let handles = self.request_handles(route, method, status);
        record(&handles);
    }

    fn request_handles(&self, route: &str, method: &Method, status: u16) -> RequestHandles {
        let labels = [
            ("method", method.to_string()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ];
        let handles = (
            metrics::counter!("http_requests_total", &labels),
            metrics::histogram!("http_request_duration_seconds", &labels),
        );
        self.0
            .requests
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(route.to_owned())
            .or_default()
            .insert((method.clone(), status), handles.clone());
        handles
    }

    /// The whole exposition: recorded metrics plus the `process_*` readings.
    pub fn render(&self) -> String {
        let mut text = self.0.handle.render();
        text.push_str(&crate::process::prometheus_text());
        text
    }

    /// Histograms keep samples until upkeep drains them; without it memory
    /// grows with traffic. Runs until the task is dropped or aborted.
    pub async fn run_upkeep(self) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            self.0.handle.run_upkeep();
        }
    }
}

fn describe_http_metrics() {
    metrics::describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by method, matched route and status."
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer HTTP requests, by method, matched route and status."
    );
    metrics::describe_gauge!(
        "http_requests_in_flight",
        "HTTP requests currently being served."
    );
}

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
