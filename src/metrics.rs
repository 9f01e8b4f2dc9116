//! The Prometheus recorder: the one process-wide global (the `metrics`
//! facade requires it). Installed once, even when tests build several apps
//! in one process; each app keeps a [`Metrics`] handle to render from.

use std::sync::Mutex;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: 1 ms .. 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static RECORDER: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// A handle to the installed recorder.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
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
        Ok(Metrics { handle })
    }

    /// The whole exposition: recorded metrics plus the `process_*` readings.
    pub fn render(&self) -> String {
        let mut text = self.handle.render();
        text.push_str(&crate::process::prometheus_text());
        text
    }

    /// Histograms keep samples until upkeep drains them; without it memory
    /// grows with traffic. Runs until the task is dropped or aborted.
    pub async fn run_upkeep(self) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            self.handle.run_upkeep();
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
