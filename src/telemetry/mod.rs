//! Logs and traces. Logs go to stdout through `tracing` (`RUST_LOG` filter,
//! JSON or pretty), in batches per runtime thread ([`flush_thread_logs`]).
//! With the `otel` cargo feature and an OTLP endpoint, spans are also
//! exported as traces, and the W3C `traceparent` header is
//! continued on the way in and injected on the way out (gateway → core), so
//! one request through the gateway is one trace across both services.
//! Without the feature, `traceparent` still passes through the gateway
//! untouched, so an outer tracer's context is not lost.

use tracing::Metadata;
use tracing::subscriber::{Interest, Subscriber};
use tracing_subscriber::filter::{FilterExt, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

use crate::config::LogFormat;

mod batched_writer;
mod json_format;

use batched_writer::BatchedWriter;
pub use batched_writer::{flush_logs_before_exit, flush_thread_logs};
use json_format::JsonFormat;

/// Keeps the trace exporter alive; flushes it when dropped (after the drain).
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(Err(err)) = self.provider.take().map(|p| p.shutdown()) {
            eprintln!("trace exporter shutdown failed: {err}");
        }
    }
}

/// Installs the global subscriber. Call once, inside the Tokio runtime (the
/// gRPC exporter needs it).
/// `service_name` (`OTEL_SERVICE_NAME`) replaces `service` on exported
/// traces; log lines and messages keep `service`.
pub fn init(
    service: &'static str,
    format: LogFormat,
    otel_endpoint: Option<&str>,
    service_name: Option<&str>,
) -> TelemetryGuard {
    #[cfg(feature = "otel")]
    {
        let trace_name = service_name.unwrap_or(service).to_owned();
        let provider =
            otel_endpoint.and_then(|endpoint| match otel::provider(trace_name, endpoint) {
                Ok(provider) => Some(provider),
                Err(err) => {
                    eprintln!("{service}: trace export disabled: {err}");
                    None
                }
            });
        let _ = with_export(format, provider.as_ref(), service).try_init();
        if let Some(endpoint) = otel_endpoint.filter(|_| provider.is_some()) {
            tracing::info!(%endpoint, "exporting traces over OTLP/gRPC");
        }
        TelemetryGuard { provider }
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = service_name;
        let _ = logs(format).try_init();
        if let Some(endpoint) = otel_endpoint {
            tracing::warn!(
                %endpoint,
                %service,
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but this binary was built without the `otel` feature; traces are not exported"
            );
        }
        TelemetryGuard {}
    }
}

/// The log layer, plus the trace-export layer when there is an exporter.
/// Without one, no layer at all: an absent `Option<Layer>` still answers
/// "always" for every callsite, which enabled the per-request span the JSON
/// logs skip (a span built, entered and closed on every request: about 3.6k
/// instructions, measured with callgrind on `/health`).
#[cfg(feature = "otel")]
fn with_export(
    format: LogFormat,
    provider: Option<&opentelemetry_sdk::trace::SdkTracerProvider>,
    service: &'static str,
) -> Box<dyn Subscriber + Send + Sync> {
    use opentelemetry::trace::TracerProvider as _;
    match provider {
        None => Box::new(logs(format)),
        Some(provider) => Box::new(
            logs(format).with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer(service))
                    .with_filter(env_filter()),
            ),
        ),
    }
}

/// `RUST_LOG`, INFO when unset.
fn env_filter() -> EnvFilter {
    EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy()
}

/// The log layer on a registry. Every layer carries its own filter, so a
/// span no layer wants is disabled at its callsite and costs nothing.
fn logs(format: LogFormat) -> impl Subscriber + for<'a> LookupSpan<'a> + Send + Sync {
    let stdout = BatchedWriter::new(std::io::stdout);
    let layer = match format {
        // JSON lines print neither the current span nor the span list, so
        // the JSON layer takes no spans at all: then the per-request span is
        // disabled (unless trace export wants it) instead of being built,
        // entered and closed for nothing on every request.
        LogFormat::Json => fmt::layer()
            .event_format(JsonFormat)
            .with_writer(stdout)
            .with_filter(env_filter().and(EventsOnly))
            .boxed(),
        LogFormat::Pretty => fmt::layer()
            .compact()
            .with_writer(stdout)
            .with_filter(env_filter())
            .boxed(),
    };
    tracing_subscriber::registry().with(layer)
}

/// A filter that passes events and never spans.
struct EventsOnly;

impl<S> tracing_subscriber::layer::Filter<S> for EventsOnly {
    fn enabled(&self, meta: &Metadata<'_>, _: &tracing_subscriber::layer::Context<'_, S>) -> bool {
        meta.is_event()
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_span() {
            Interest::never()
        } else {
            Interest::always()
        }
    }
}

/// Makes `span` continue the trace named by the request's `traceparent`.
/// A disabled span (no trace export) has no parent to set: the header is
/// not even read then.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    #[cfg(feature = "otel")]
    if !span.is_disabled() {
        otel::continue_trace(span, headers);
    }
    #[cfg(not(feature = "otel"))]
    let _ = (span, headers);
}

/// The current span's trace context, as the fields to send the core
/// (`traceparent`, `tracestate`) in place of the client's; empty without
/// the `otel` feature or without trace export, so any incoming
/// `traceparent` then passes through as it is.
pub fn trace_context_to_send() -> Vec<(String, String)> {
    #[cfg(feature = "otel")]
    return otel::fields_to_send();
    #[cfg(not(feature = "otel"))]
    Vec::new()
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// `service_name` is the configured `OTEL_SERVICE_NAME` (already read
    /// by clap, so `--otel-service-name` works too), else the binary's name.
    pub fn provider(
        service_name: String,
        endpoint: &str,
    ) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?;
        let resource = opentelemetry_sdk::Resource::builder().with_service_name(service_name);
        Ok(SdkTracerProvider::builder()
            .with_resource(resource.build())
            .with_batch_exporter(exporter)
            .build())
    }

    struct HeaderExtractor<'a>(&'a http::HeaderMap);

    impl Extractor for HeaderExtractor<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }

        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(http::HeaderName::as_str).collect()
        }
    }

    struct FieldInjector(Vec<(String, String)>);

    impl Injector for FieldInjector {
        fn set(&mut self, key: &str, value: String) {
            // Only header-safe text may go into a request head.
            let safe = |s: &str| s.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
            if safe(key) && safe(&value) && !key.is_empty() {
                self.0.push((key.to_owned(), value));
            }
        }
    }

    pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        // Without the OTel layer installed this reports "layer not found";
        // that is the export-disabled case, not an error.
        let _ = span.set_parent(parent);
    }

    pub fn fields_to_send() -> Vec<(String, String)> {
        let context = tracing::Span::current().context();
        let mut fields = FieldInjector(Vec::new());
        TraceContextPropagator::new().inject_context(&context, &mut fields);
        fields.0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Collects what a log layer writes.
    #[derive(Clone, Default)]
    pub(super) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        pub(super) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl MakeWriter<'_> for Captured {
        type Writer = Captured;

        fn make_writer(&self) -> Captured {
            self.clone()
        }
    }

    #[test]
    fn json_logs_take_events_but_no_spans() {
        tracing::subscriber::with_default(logs(LogFormat::Json), || {
            assert!(tracing::info_span!("request").is_disabled());
            assert!(tracing::enabled!(tracing::Level::INFO));
            assert!(!tracing::enabled!(tracing::Level::DEBUG));
        });
    }

    /// What ships is built with `otel`: without an exporter configured the
    /// request span must still cost nothing; with one, it is exported.
    #[cfg(feature = "otel")]
    #[test]
    fn json_logs_without_trace_export_take_no_spans_either() {
        tracing::subscriber::with_default(with_export(LogFormat::Json, None, "t"), || {
            assert!(tracing::info_span!("request").is_disabled());
        });
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        tracing::subscriber::with_default(
            with_export(LogFormat::Json, Some(&provider), "t"),
            || {
                assert!(!tracing::info_span!("request").is_disabled());
            },
        );
    }

    #[test]
    fn pretty_logs_show_spans() {
        tracing::subscriber::with_default(logs(LogFormat::Pretty), || {
            assert!(!tracing::info_span!("request").is_disabled());
        });
    }
}
