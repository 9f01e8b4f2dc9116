//! With the `otel` feature: one request through the gateway is one trace
//! across both services. Spans go to an in-memory exporter instead of a
//! collector; the assertions are on the exported parent/child links.

use std::sync::{Arc, Mutex};

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::helpers::{client, spawn_core, spawn_gateway};

#[derive(Debug, Clone, Default)]
struct InMemory(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for InMemory {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_request_through_the_gateway_is_one_trace_across_both_services() {
    let exported = InMemory::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exported.clone())
        .build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .try_init()
        .expect("nextest runs each test in its own process");

    let core = spawn_core().await;
    let gateway = spawn_gateway(&format!("http://{}", core.addr)).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let res = client()
        .post(gateway.url("/api/v1/query"))
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(&json!({"query": "forest and river"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    drop((gateway, core));
    provider.force_flush().unwrap();

    let spans = exported.0.lock().unwrap();
    let requests: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "POST /api/v1/query")
        .collect();
    assert_eq!(
        requests.len(),
        2,
        "a server span in each service: {:#?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let trace = TraceId::from_hex(trace_id).unwrap();
    for span in &requests {
        assert_eq!(
            span.span_context.trace_id(),
            trace,
            "same trace as the client's traceparent"
        );
    }
    let (gateway_span, core_span) =
        if requests[0].parent_span_id == SpanId::from_hex(client_span).unwrap() {
            (requests[0], requests[1])
        } else {
            (requests[1], requests[0])
        };
    assert_eq!(
        gateway_span.parent_span_id,
        SpanId::from_hex(client_span).unwrap(),
        "gateway continues the client"
    );
    assert_eq!(
        core_span.parent_span_id,
        gateway_span.span_context.span_id(),
        "the core's span is a child of the gateway's: the gateway injected its own context"
    );
    assert!(core_span.parent_span_is_remote);
}
