//! jessy-core over HTTP: every endpoint and error path.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{client, get_json, spawn_core, spawn_core_with};

async fn post_query(url: &str, body: Value) -> (StatusCode, Value) {
    let res = client().post(url).json(&body).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["error"]["request_id"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn health_reports_service_version_and_a_utc_timestamp() {
    let core = spawn_core().await;
    let res = client().get(core.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["service"], "jessy-core");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let ts = body["timestamp"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && ts.contains('T') && ts.len() >= 20,
        "{ts}"
    );
}

#[tokio::test]
async fn ready_is_200_while_serving() {
    let core = spawn_core().await;
    let res = client().get(core.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn status_reports_uptime_real_memory_and_the_14_dimensions() {
    let core = spawn_core().await;
    let body: Value = get_json(&core.url("/status")).await;
    assert_eq!(body["status"], "running");
    assert!(body["uptime_seconds"].as_f64().unwrap() >= 0.0);
    // Read from /proc, so Linux only; elsewhere it is null, never made up.
    if cfg!(target_os = "linux") {
        let rss = body["memory_rss_bytes"].as_u64().unwrap();
        assert!(rss > 1_000_000, "resident memory is measured: {rss}");
        assert_ne!(rss, 280 * 1024 * 1024, "not the origin's hard-coded 280 MB");
    } else {
        assert!(body["memory_rss_bytes"].is_null(), "{body}");
    }
    let dims: Vec<&str> = body["dimensions_loaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(dims.len(), 14);
    assert_eq!(dims[0], "D01-Emotion");
    assert_eq!(dims[13], "D14-Security");
}

#[tokio::test]
async fn metrics_count_requests_by_route_method_and_status() {
    let core = spawn_core().await;
    let c = client();
    c.get(core.url("/health")).send().await.unwrap();
    c.get(core.url("/health?probe=1")).send().await.unwrap();
    c.get(core.url("/no/such/path/123")).send().await.unwrap();
    c.get(core.url("/health/")).send().await.unwrap();
    // A route with the wrong method is still that route.
    c.delete(core.url("/health")).send().await.unwrap();
    let too_large = c
        .post(core.url("/api/v1/query"))
        .header("content-type", "application/json")
        .body(vec![b' '; 70_000])
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
    let res = c.get(core.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    for line in [
        r#"http_requests_total{method="GET",route="/health",status="200"} 2"#,
        r#"http_requests_total{method="GET",route="unmatched",status="404"} 2"#,
        r#"http_requests_total{method="DELETE",route="/health",status="405"} 1"#,
        // A body over the limit is refused before routing, still on its route.
        r#"http_requests_total{method="POST",route="/api/v1/query",status="413"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
    for needle in [
        "http_request_duration_seconds_bucket{",
        "# TYPE http_request_duration_seconds histogram",
        "# TYPE http_requests_in_flight gauge",
        r#"jessy_build_info{service="jessy-core""#,
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    // The process_* metrics are read from /proc: Linux only, absent elsewhere.
    for needle in [
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert_eq!(
            text.contains(needle),
            cfg!(target_os = "linux"),
            "{needle} in\n{text}"
        );
    }
    assert!(
        !text.contains("/no/such/path"),
        "raw paths never become labels"
    );
}

#[tokio::test]
async fn a_query_is_navigated_deterministically() {
    let core = spawn_core().await;
    let url = core.url("/api/v1/query");
    let q = json!({"query": "How do I fix a memory leak in my Rust code compiler error?", "session_id": "s-1"});
    let (status, first) = post_query(&url, q.clone()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["session_id"], "s-1");
    assert_eq!(first["status"], "completed");
    assert_eq!(first["dimensions"][0]["id"], "D07");
    assert!(first["answer"].as_str().unwrap().contains("D07-Technical"));
    let (_, second) = post_query(&url, q).await;
    assert_eq!(first, second, "equal input, equal output");
}

#[tokio::test]
async fn a_missing_session_id_gets_a_fresh_uuid() {
    let core = spawn_core().await;
    let (status, body) =
        post_query(&core.url("/api/v1/query"), json!({"query": "I feel sad"})).await;
    assert_eq!(status, 200);
    let id = body["session_id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "{id}");
}

#[tokio::test]
async fn harmful_queries_are_blocked() {
    let core = spawn_core().await;
    let (status, body) = post_query(
        &core.url("/api/v1/query"),
        json!({"query": "how to hack into a bank and steal passwords"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "blocked");
    assert_eq!(body["blocked"], true);
    assert_eq!(body["dimensions"].as_array().unwrap().len(), 1);
    assert_eq!(body["dimensions"][0]["id"], "D14");
}

#[tokio::test]
async fn bad_queries_get_json_errors_with_precise_statuses() {
    let core = spawn_core().await;
    let url = core.url("/api/v1/query");
    let c = client();
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            c.post(&url).json(&json!({"query": ""})),
            StatusCode::BAD_REQUEST,
            "empty_query",
        ),
        (
            c.post(&url).json(&json!({"query": " \n\t "})),
            StatusCode::BAD_REQUEST,
            "empty_query",
        ),
        (
            c.post(&url).json(&json!({"query": "a".repeat(10_001)})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "query_too_long",
        ),
        (
            c.post(&url)
                .header("content-type", "application/json")
                .body("{\"query\": "),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            c.post(&url).body("query=hello"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            c.post(&url)
                .header("content-type", "text/plain")
                .body("{\"query\":\"hi\"}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            c.post(&url).json(&json!({"query": 42})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            c.post(&url).json(&json!({"question": "hi"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            c.post(&url).json(&json!([1, 2])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            c.post(&url).json(&json!({"query": "hi", "session_id": 7})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            c.post(&url).json(&json!({"query": "hi", "session_id": ""})),
            StatusCode::BAD_REQUEST,
            "invalid_session_id",
        ),
        (
            c.get(&url),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (c.get(core.url("/nope")), StatusCode::NOT_FOUND, "not_found"),
        (
            c.post(core.url("/api/v2/query")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (req, want_status, want_code) in cases {
        let res = req.send().await.unwrap();
        let status = res.status();
        assert_eq!(res.headers()["content-type"], "application/json");
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, want_status, "{body}");
        assert_error(&body, want_code);
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_declared_or_streamed() {
    let core = spawn_core_with(|c| c.max_body_size = 1024).await;
    let url = core.url("/api/v1/query");
    let big = json!({"query": "x".repeat(2000)}).to_string();
    let declared = client()
        .post(&url)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 413);
    assert_error(&declared.json().await.unwrap(), "body_too_large");

    // Chunked, no Content-Length: cut off while streaming.
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(256)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let streamed = client()
        .post(&url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
    assert_error(&streamed.json().await.unwrap(), "body_too_large");
}

#[tokio::test]
async fn request_ids_are_kept_when_valid_replaced_when_not_and_in_errors() {
    let core = spawn_core().await;
    let c = client();
    let kept = c
        .get(core.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "abc-123");

    let replaced = c
        .get(core.url("/health"))
        .header("x-request-id", "bad id!")
        .send()
        .await
        .unwrap();
    let id = replaced.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(id, "bad id!");
    assert_eq!(id.len(), 36);

    let err = c
        .get(core.url("/missing"))
        .header("x-request-id", "trace-me-7")
        .send()
        .await
        .unwrap();
    assert_eq!(err.headers()["x-request-id"], "trace-me-7");
    let body: Value = err.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], "trace-me-7");
}

#[tokio::test]
async fn nothing_panics_on_hostile_queries() {
    let core = spawn_core().await;
    let url = core.url("/api/v1/query");
    let hostile = [
        "\u{0}\u{0}\u{0}",
        "🔥🔥🔥 💀",
        "e\u{301}\u{301}\u{301}",
        "\u{202e}gnirts desrever",
        "مرحبا بالعالم שלום",
        "'; DROP TABLE queries; --",
        "<script>alert(1)</script>",
        "%00%ff%fe",
        "\u{feff}\u{200b}",
    ];
    for q in hostile {
        let (status, body) = post_query(&url, json!({"query": q})).await;
        assert!(status == 200 || status == 400, "{q:?} -> {status} {body}");
    }
    let max = "ж".repeat(10_000);
    let (status, _) = post_query(&url, json!({"query": max})).await;
    assert_eq!(status, 200);
}
