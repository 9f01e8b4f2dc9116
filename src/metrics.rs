//! The Prometheus recorder: the one process-wide global (the `metrics`
//! facade requires it). Installed once, even when tests build several apps
//! in one process; each app keeps a [`Metrics`] handle to render from.

mod http_requests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use http_requests::InFlight;
use http_requests::{HttpRequests, LATENCY_BUCKETS};

static RECORDER: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// A handle to the installed recorder, and the service's own HTTP request
/// metrics (`http_requests`: counted per thread, rendered with the rest).
/// Cloning is one reference count.
#[derive(Clone)]
pub struct Metrics(Arc<Shared>);

struct Shared {
    handle: PrometheusHandle,
    requests: HttpRequests,
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
                        &LATENCY_BUCKETS,
                    )
                    .map_err(|e| InstallError(e.to_string()))?
                    .install_recorder()
                    .map_err(|e| InstallError(e.to_string()))?;
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
            requests: HttpRequests::default(),
        })))
    }

    /// Counts a request in `http_requests_in_flight` until the guard is
    /// dropped; the guard counts its answer.
    pub fn begin_request(&self) -> InFlight {
        self.0.requests.begin()
    }

    /// The whole exposition: recorded metrics plus the `process_*` readings.
    pub fn render(&self) -> String {
        let mut text = self.0.handle.render();
        self.0.requests.render(&mut text);
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

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
