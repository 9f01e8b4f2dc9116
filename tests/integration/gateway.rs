//! jessy-api over HTTP, in front of a real jessy-core or a stub core.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{any, get, post};
use serde_json::{Value, json};

use crate::helpers::{
    client, dead_address, expect_error, get_json, get_status, spawn_core, spawn_gateway,
    spawn_gateway_with, spawn_stub, wait_for_status,
};

/// A stub core that shows what reached it.
fn stub_core() -> Router {
    async fn echo_headers(headers: HeaderMap, body: Bytes) -> axum::Json<Value> {
        let map: BTreeMap<String, String> = headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
            .collect();
        axum::Json(json!({ "headers": map, "body_len": body.len() }))
    }
    Router::new()
        .route("/api/v1/echo", any(echo_headers))
        .route(
            "/status",
            get(|| async { axum::Json(json!({"from": "status"})) }),
        )
        .route(
            "/health",
            get(|| async { axum::Json(json!({"from": "health"})) }),
        )
        .route("/ready", get(|| async { "ok" }))
        .route(
            "/api/v1/teapot",
            get(|| async {
                (
                    StatusCode::IM_A_TEAPOT,
                    [("x-core", "1")],
                    "short and stout",
                )
            }),
        )
        .route(
            "/api/v1/unavailable",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "core says no") }),
        )
        .route(
            "/api/v1/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "finally"
            }),
        )
        .route(
            "/api/v1/hop",
            get(|| async {
                (
                    [
                        ("connection", "x-internal"),
                        ("x-internal", "secret"),
                        ("keep-alive", "timeout=5"),
                    ],
                    "hop",
                )
            }),
        )
        .route(
            "/api/v1/upload",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
}

async fn gateway_in_front_of_stub() -> (crate::helpers::Running, tokio::task::JoinHandle<()>) {
    let (addr, stub) = spawn_stub(stub_core()).await;
    (spawn_gateway(&format!("http://{addr}")).await, stub)
}

#[tokio::test]
async fn a_query_through_the_gateway_reaches_the_real_core() {
    let core = spawn_core().await;
    let gw = spawn_gateway(&format!("http://{}", core.addr)).await;
    let res = client()
        .post(gw.url("/api/v1/query"))
        .header("x-request-id", "through-both")
        .json(&json!({"query": "What is the meaning of life and existence?", "session_id": "s9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "through-both");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["session_id"], "s9");
    assert_eq!(body["dimensions"][0]["id"], "D06");
    assert!(body["dominant_frequency_hz"].as_f64().unwrap() < 0.5);

    // /api/v1/status and /api/v1/health map to the core's /status and /health.
    let status: Value = get_json(&gw.url("/api/v1/status")).await;
    assert_eq!(status["service"], "jessy-core");
    assert_eq!(status["dimensions_loaded"].as_array().unwrap().len(), 14);
    let health: Value = get_json(&gw.url("/api/v1/health")).await;
    assert_eq!(health["service"], "jessy-core");

    // Core errors pass through unchanged, with the core's envelope.
    let res = client()
        .post(gw.url("/api/v1/query"))
        .json(&json!({"query": ""}))
        .send()
        .await
        .unwrap();
    expect_error(res, 400, "empty_query").await;
}

#[tokio::test]
async fn forwarded_requests_carry_ids_forwarding_headers_and_trace_context() {
    let (gw, _stub) = gateway_in_front_of_stub().await;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let res = client()
        .get(gw.url("/api/v1/echo?x=1"))
        .header("x-request-id", "rid-42")
        .header("traceparent", traceparent)
        .header("x-forwarded-for", "6.6.6.6")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "rid-42");
    let seen: Value = res.json().await.unwrap();
    let h = &seen["headers"];
    assert_eq!(h["x-request-id"], "rid-42", "{seen}");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "untrusted XFF replaced");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert!(
        h["x-forwarded-host"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let tp = h["traceparent"].as_str().unwrap();
    assert!(
        tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
        "trace id kept: {tp}"
    );
    assert!(
        h.get("x-drop-me").is_none(),
        "Connection-listed header stripped"
    );
    assert!(h.get("proxy-authorization").is_none());
    let host = h["host"].as_str().unwrap();
    assert_ne!(
        host,
        gw.addr.to_string(),
        "Host is the core's, not the client's"
    );
}

#[tokio::test]
async fn a_generated_request_id_is_sent_to_the_core_and_echoed() {
    let (gw, _stub) = gateway_in_front_of_stub().await;
    let res = client().get(gw.url("/api/v1/echo")).send().await.unwrap();
    let echoed = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let seen: Value = res.json().await.unwrap();
    assert_eq!(seen["headers"]["x-request-id"], echoed.as_str());
}

#[tokio::test]
async fn upstream_statuses_and_bodies_pass_through_unchanged() {
    let (gw, _stub) = gateway_in_front_of_stub().await;
    let res = client().get(gw.url("/api/v1/teapot")).send().await.unwrap();
    assert_eq!(res.status(), 418);
    assert_eq!(res.headers()["x-core"], "1");
    assert_eq!(res.text().await.unwrap(), "short and stout");
    let res = client()
        .get(gw.url("/api/v1/unavailable"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.text().await.unwrap(), "core says no");
    let res = client().get(gw.url("/api/v1/hop")).send().await.unwrap();
    assert!(
        res.headers().get("x-internal").is_none(),
        "response hop-by-hop stripped"
    );
    assert!(res.headers().get("keep-alive").is_none());
}

#[tokio::test]
async fn a_dead_core_is_502_and_not_ready_then_recovers() {
    let addr = dead_address().await;
    let gw = spawn_gateway(&format!("http://{addr}")).await;
    let res = client()
        .post(gw.url("/api/v1/query"))
        .json(&json!({"query": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unavailable");
    assert!(body["error"]["request_id"].is_string());
    let ready = client().get(gw.url("/api/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let health: Value = get_json(&gw.url("/api/health")).await;
    assert_eq!(health["status"], "healthy", "the gateway itself is alive");
    assert_eq!(health["upstream"]["state"], "down");

    // The core comes up on that address: readiness and forwarding recover
    // without restarting the gateway.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let _core = tokio::spawn(async move { axum::serve(listener, stub_core()).await.unwrap() });
    assert!(wait_for_status(&gw.url("/api/ready"), 200, Duration::from_secs(5)).await);
    assert_eq!(get_status(&gw.url("/api/v1/status")).await, 200);
}

#[tokio::test]
async fn a_slow_core_is_504_within_the_deadline() {
    let (addr, _stub) = spawn_stub(stub_core()).await;
    let gw = spawn_gateway_with(&format!("http://{addr}"), |c| {
        c.upstream_timeout = Duration::from_millis(300);
    })
    .await;
    let started = std::time::Instant::now();
    let res = client().get(gw.url("/api/v1/slow")).send().await.unwrap();
    assert_eq!(res.status(), 504);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "did not wait for the core"
    );
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "upstream_timeout"
    );
}

#[tokio::test]
async fn bodies_stream_through_and_oversized_ones_are_413() {
    let (addr, _stub) = spawn_stub(stub_core()).await;
    let gw = spawn_gateway_with(&format!("http://{addr}"), |c| c.max_body_size = 4096).await;
    let ok = client()
        .post(gw.url("/api/v1/upload"))
        .body(vec![b'a'; 4000])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), "4000");

    let declared = client()
        .post(gw.url("/api/v1/upload"))
        .body(vec![b'a'; 5000])
        .send()
        .await
        .unwrap();
    expect_error(declared, 413, "body_too_large").await;

    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b'b'; 1000])).collect();
    let streamed = client()
        .post(gw.url("/api/v1/upload"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    expect_error(streamed, 413, "body_too_large").await;
}

#[tokio::test]
async fn clients_over_their_rate_get_429_with_retry_after_but_health_is_exempt() {
    let (addr, _stub) = spawn_stub(stub_core()).await;
    let gw = spawn_gateway_with(&format!("http://{addr}"), |c| {
        c.rate_limit_requests = 3;
        c.rate_limit_window = Duration::from_secs(60);
    })
    .await;
    let c = client();
    for _ in 0..3 {
        assert_eq!(get_status(&gw.url("/api/v1/status")).await, 200);
    }
    let limited = c.get(gw.url("/api/v1/status")).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "one token per 20 s: {retry}");
    assert_eq!(
        limited.json::<Value>().await.unwrap()["error"]["code"],
        "rate_limited"
    );
    for path in ["/api/health", "/api/metrics", "/api/ready"] {
        assert_ne!(get_status(&gw.url(path)).await, 429, "{path} is exempt");
    }
    let metrics = c
        .get(gw.url("/api/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // At least the one above (the recorder is per process; other tests in
    // the same process may add to it).
    let counted: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix(r#"jessy_api_rejections_total{reason="rate_limited"} "#))
        .unwrap_or_else(|| panic!("no rate_limited rejections counter in\n{metrics}"))
        .parse()
        .unwrap();
    assert!(counted >= 1.0, "{metrics}");
}

#[tokio::test]
async fn x_forwarded_for_only_counts_from_trusted_proxies() {
    let (addr, _stub) = spawn_stub(stub_core()).await;
    let gw = spawn_gateway_with(&format!("http://{addr}"), |c| {
        c.rate_limit_requests = 1;
        c.trusted_proxies = jessy::config::parse_list("127.0.0.1/32").unwrap();
    })
    .await;
    let c = client();
    // Behind a trusted proxy (127.0.0.1), each forwarded client has its own bucket.
    for client_ip in ["198.51.100.1", "198.51.100.2"] {
        let res = c
            .get(gw.url("/api/v1/echo"))
            .header("x-forwarded-for", client_ip)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let seen: Value = res.json().await.unwrap();
        assert_eq!(
            seen["headers"]["x-forwarded-for"],
            format!("{client_ip}, 127.0.0.1")
        );
    }
    let again = c
        .get(gw.url("/api/v1/echo"))
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 429);

    // Untrusted peers cannot dodge their limit by rotating X-Forwarded-For.
    let gw2 = spawn_gateway_with(&format!("http://{addr}"), |c| c.rate_limit_requests = 1).await;
    assert_eq!(
        c.get(gw2.url("/api/v1/echo"))
            .header("x-forwarded-for", "1.1.1.1")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(gw2.url("/api/v1/echo"))
            .header("x-forwarded-for", "2.2.2.2")
            .send()
            .await
            .unwrap()
            .status(),
        429
    );
}

#[tokio::test]
async fn beyond_the_concurrency_limit_requests_are_shed_with_503() {
    let (addr, _stub) = spawn_stub(stub_core()).await;
    let gw = spawn_gateway_with(&format!("http://{addr}"), |c| c.max_concurrent_requests = 1).await;
    let slow = tokio::spawn(client().get(gw.url("/api/v1/slow")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shed = client().get(gw.url("/api/v1/status")).send().await.unwrap();
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(
        shed.json::<Value>().await.unwrap()["error"]["code"],
        "overloaded"
    );
    assert_eq!(
        get_status(&gw.url("/api/health")).await,
        200,
        "health is not shed"
    );
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn cors_answers_only_allowed_origins() {
    let (addr, _stub) = spawn_stub(stub_core()).await;
    let gw = spawn_gateway_with(&format!("http://{addr}"), |c| {
        c.cors_allowed_origins = jessy::config::parse_list("https://app.example.com").unwrap();
    })
    .await;
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, gw.url("/api/v1/query"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let denied = preflight("https://evil.example.com").await.unwrap();
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let default_gw = spawn_gateway(&format!("http://{addr}")).await;
    let res = client()
        .get(default_gw.url("/api/v1/status"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(
        res.headers().get("access-control-allow-origin").is_none(),
        "no origins by default"
    );
}

#[tokio::test]
async fn the_gateway_has_its_own_health_metrics_and_json_404() {
    let core = spawn_core().await;
    let gw = spawn_gateway(&format!("http://{}", core.addr)).await;
    let c = client();
    let health: Value = get_json(&gw.url("/api/health")).await;
    assert_eq!(health["service"], "jessy-api");
    assert!(health["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(
        wait_for_status(&gw.url("/api/ready"), 200, Duration::from_secs(5)).await,
        "ready once the core answers the probe"
    );
    c.post(gw.url("/api/v1/query"))
        .json(&json!({"query": "forest river"}))
        .send()
        .await
        .unwrap();
    let metrics = c
        .get(gw.url("/api/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"http_requests_total{method="POST",route="/api/v1/query",status="200"}"#,
        "jessy_api_upstream_duration_seconds_bucket{",
        "jessy_api_upstream_up 1",
        r#"jessy_build_info{service="jessy-api""#,
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    // Read from /proc: Linux only, absent elsewhere.
    assert_eq!(
        metrics.contains("process_resident_memory_bytes "),
        cfg!(target_os = "linux"),
        "{metrics}"
    );
    for path in ["/", "/api", "/api/v2/query", "/metrics"] {
        let res = c.get(gw.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        assert_eq!(
            res.json::<Value>().await.unwrap()["error"]["code"],
            "not_found"
        );
    }
    let res = c.post(gw.url("/api/health")).send().await.unwrap();
    assert_eq!(res.status(), 405);
}
