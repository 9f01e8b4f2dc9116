//! Startup, shutdown and connection handling, on the real binaries where
//! the process boundary matters (signals, exit codes, config errors).

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use tower::Layer;

use crate::helpers::{
    API_BIN, CORE_BIN, Process, client, dead_address, expect_error, get_status, spawn_core_with,
    spawn_gateway_with, spawn_stub,
};

/// Runs a binary with `env` and no other environment; returns (code, stderr).
fn run_with_env(bin: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(bin)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_configuration_stops_the_start_with_one_line_naming_the_variable() {
    let cases: [(&str, &str, &str); 7] = [
        (CORE_BIN, "JESSY_PORT", "abc"),
        (CORE_BIN, "REQUEST_TIMEOUT", "10"),
        (CORE_BIN, "MAX_BODY_SIZE", "lots"),
        (API_BIN, "RUST_SERVICE_URL", "jessy-core:8080"),
        (API_BIN, "RATE_LIMIT_WINDOW", "0s"),
        (API_BIN, "RATE_LIMIT_REQUESTS", "0"),
        (API_BIN, "TRUSTED_PROXIES", "10.0.0.0/99"),
    ];
    for (bin, var, value) in cases {
        let (code, stderr) = run_with_env(bin, &[], &[(var, value)]);
        assert_eq!(code, Some(2), "{var}={value}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(var), "{var} named in: {stderr}");
    }
    let (code, stderr) = run_with_env(API_BIN, &[], &[("LOG_FORMAT", "xml")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("LOG_FORMAT"), "{stderr}");
}

#[test]
fn help_and_version_exit_zero() {
    let out = Command::new(CORE_BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("JESSY_PORT") && help.contains("healthcheck"),
        "{help}"
    );
    // Every variable the binaries read is documented in --help.
    for bin in [CORE_BIN, API_BIN] {
        let out = Command::new(bin).arg("--help").output().unwrap();
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("OTEL_SERVICE_NAME"), "{bin}: {help}");
    }
    let out = Command::new(API_BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn healthcheck_subcommand_exits_0_when_healthy_and_1_when_not() {
    let core = Process::start(CORE_BIN, "JESSY_PORT", "/health", &[]).await;
    let port = core.port.to_string();
    let (code, stderr) = run_with_env(CORE_BIN, &["healthcheck"], &[("JESSY_PORT", &port)]);
    assert_eq!(code, Some(0), "{stderr}");

    // Compose passes `VAR=` for variables left empty in .env: empty means unset.
    let gw = Process::start(
        API_BIN,
        "API_PORT",
        "/api/health",
        &[
            ("RUST_SERVICE_URL", &format!("http://127.0.0.1:{port}")),
            ("RATE_LIMIT_BURST", ""),
            ("TRUSTED_PROXIES", ""),
            ("CORS_ALLOWED_ORIGINS", ""),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        ],
    )
    .await;
    let (code, stderr) = run_with_env(
        API_BIN,
        &["healthcheck"],
        &[("API_PORT", &gw.port.to_string())],
    );
    assert_eq!(code, Some(0), "{stderr}");

    let nothing = dead_address().await.port().to_string();
    let (code, stderr) = run_with_env(
        CORE_BIN,
        &["healthcheck", "--timeout", "500ms"],
        &[("JESSY_PORT", &nothing)],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("unhealthy"), "{stderr}");
}

#[tokio::test]
async fn sigterm_lets_every_in_flight_request_finish_then_exits_0() {
    // Requests held in flight by a slow stub core behind the real gateway binary.
    let slow_core = Router::new().route("/ready", get(|| async { "ok" })).route(
        "/api/v1/wait",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            "done"
        }),
    );
    let (core_addr, _stub) = spawn_stub(slow_core).await;
    let gw = Process::start(
        API_BIN,
        "API_PORT",
        "/api/health",
        &[
            ("RUST_SERVICE_URL", &format!("http://{core_addr}")),
            ("SHUTDOWN_TIMEOUT", "10s"),
        ],
    )
    .await;
    let c = client();
    let in_flight: Vec<_> = (0..8)
        .map(|_| tokio::spawn(c.get(gw.url("/api/v1/wait")).send()))
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    gw.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The listener is closed: new connections are refused.
    let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(
        fresh.get(gw.url("/api/health")).send().await.is_err(),
        "no new connections during drain"
    );
    for request in in_flight {
        let res = request.await.unwrap().expect("in-flight request answered");
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.unwrap(), "done");
    }
    let (code, logs) = tokio::task::spawn_blocking(move || gw.wait(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert!(
        logs.contains("shutdown started") && logs.contains("shutdown complete"),
        "{logs}"
    );
}

#[tokio::test]
async fn sigterm_on_the_core_finishes_a_request_whose_body_is_still_arriving() {
    let core = Process::start(CORE_BIN, "JESSY_PORT", "/health", &[]).await;
    let body = json!({"query": "I feel so sad and lonely today"}).to_string();
    let (first, rest) = body.split_at(10);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", core.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /api/v1/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    core.signal("INT");
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(rest.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("D01"), "{answer}");
    let (code, logs) = core.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{logs}");
}

#[tokio::test]
async fn shutdown_timeout_cuts_off_stragglers() {
    let hung_core = Router::new().route("/ready", get(|| async { "ok" })).route(
        "/api/v1/hang",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "never"
        }),
    );
    let (core_addr, _stub) = spawn_stub(hung_core).await;
    let gw = Process::start(
        API_BIN,
        "API_PORT",
        "/api/health",
        &[
            ("RUST_SERVICE_URL", &format!("http://{core_addr}")),
            ("SHUTDOWN_TIMEOUT", "500ms"),
            ("UPSTREAM_TIMEOUT", "60s"),
        ],
    )
    .await;
    let hung = tokio::spawn(client().get(gw.url("/api/v1/hang")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    gw.signal("TERM");
    let (code, logs) = tokio::task::spawn_blocking(move || gw.wait(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "exited at the deadline"
    );
    assert!(logs.contains("timeout reached"), "{logs}");
    assert!(hung.await.unwrap().is_err(), "the straggler was cut off");
}

#[tokio::test]
async fn readiness_is_503_from_the_moment_shutdown_begins() {
    let mut core = spawn_core_with(|c| c.common.shutdown_delay = Duration::from_millis(800)).await;
    let c = client();
    assert_eq!(get_status(&core.url("/ready")).await, 200);
    core.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = c.get(core.url("/ready")).send().await.unwrap();
    expect_error(ready, 503, "shutting_down").await;
    assert_eq!(get_status(&core.url("/health")).await, 200, "still alive");
    assert_eq!(core.join().await, jessy::server::Drain::Complete);

    let addr = dead_address().await;
    let mut gw = spawn_gateway_with(&format!("http://{addr}"), |c| {
        c.common.shutdown_delay = Duration::from_millis(500)
    })
    .await;
    gw.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = client().get(gw.url("/api/ready")).send().await.unwrap();
    assert_eq!(
        ready.json::<Value>().await.unwrap()["error"]["code"],
        "shutting_down"
    );
}

/// Sends half a request head to `addr` (whose header-read timeout is
/// 500 ms) and checks that the connection is closed at the timeout, not
/// before, with nothing or a 408 said.
async fn assert_half_a_request_is_cut_at_the_timeout(addr: std::net::SocketAddr, path: &str) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    let elapsed = started.elapsed();
    assert!(read.is_ok(), "connection was not closed within 5 s");
    assert!(
        elapsed >= Duration::from_millis(400),
        "closed at the timeout, not before: {elapsed:?}"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test]
async fn a_client_sending_half_a_request_is_disconnected() {
    let addr = dead_address().await;
    let gw = spawn_gateway_with(&format!("http://{addr}"), |c| {
        c.common.header_read_timeout = Duration::from_millis(500)
    })
    .await;
    assert_half_a_request_is_cut_at_the_timeout(gw.addr, "/api/health").await;
    // A complete request on a new connection is still served.
    assert_eq!(get_status(&gw.url("/api/health")).await, 200);
}

/// Reads one `Connection: keep-alive` answer to GET /health off `stream`
/// (headers and the Content-Length body); its status line.
async fn read_one_answer(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed mid-answer: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("a content-length")
                .parse()
                .unwrap();
            if buf.len() >= end + 4 + length {
                return text.lines().next().unwrap().to_owned();
            }
        }
    }
}

#[tokio::test]
async fn the_core_disconnects_a_client_sending_half_a_request_at_the_header_timeout() {
    let core = spawn_core_with(|c| c.common.header_read_timeout = Duration::from_millis(500)).await;
    assert_half_a_request_is_cut_at_the_timeout(core.addr, "/health").await;
    assert_eq!(get_status(&core.url("/health")).await, 200);
}

/// The header timeout runs on one timer per connection (src/connection_timer.rs):
/// a connection whose requests keep coming stays open well past one
/// timeout, and once it falls silent it is closed one timeout later.
#[tokio::test]
async fn a_busy_keep_alive_connection_to_the_core_stays_open_and_an_idle_one_is_closed() {
    let timeout = Duration::from_millis(400);
    let core = spawn_core_with(|c| c.common.header_read_timeout = timeout).await;
    let mut stream = tokio::net::TcpStream::connect(core.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let opened = Instant::now();
    // 10 requests 150 ms apart: 1.5 s on one connection, almost four timeouts.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_one_answer(&mut stream).await, "HTTP/1.1 200 OK");
    }
    assert!(opened.elapsed() >= 3 * timeout);
    // Silent now: closed after one timeout (plus the timer's millisecond).
    let idle = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    let waited = idle.elapsed();
    assert!(
        closed.is_ok(),
        "the idle connection was not closed within 5 s"
    );
    assert!(
        waited >= timeout - Duration::from_millis(50) && waited < timeout * 3,
        "closed after {waited:?}, the timeout is {timeout:?}"
    );
    // Half a request after a busy spell is cut at the timeout too.
    let mut stream = tokio::net::TcpStream::connect(core.addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_one_answer(&mut stream).await, "HTTP/1.1 200 OK");
    // The timeout runs from the first wait for the next head, idle time
    // included, as hyper's own.
    let answered = Instant::now();
    tokio::time::sleep(timeout / 2).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    let waited = answered.elapsed();
    assert!(closed.is_ok(), "half a request was not cut off within 5 s");
    assert!(
        waited >= timeout - Duration::from_millis(50) && waited < timeout * 3,
        "cut {waited:?} after the answer, the timeout is {timeout:?}"
    );
}

#[tokio::test]
async fn a_handler_panic_is_a_json_500_and_the_server_keeps_serving() {
    let metrics = jessy::metrics::Metrics::install("test").unwrap();
    let app = jessy::http::CommonLayer::new(&metrics, Default::default()).layer(
        Router::new()
            .route(
                "/boom",
                get(|| async {
                    if std::hint::black_box(true) {
                        panic!("kaboom");
                    }
                    "unreachable"
                }),
            )
            .route("/fine", get(|| async { "fine" })),
    );
    let (addr, _server) = spawn_stub(Router::new().fallback_service(app)).await;
    let res = client()
        .get(format!("http://{addr}/boom"))
        .header("x-request-id", "p1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal_error");
    assert_eq!(body["error"]["request_id"], "p1");
    assert!(
        !body.to_string().contains("kaboom"),
        "panic details are not leaked"
    );
    let res = client()
        .get(format!("http://{addr}/fine"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "fine");
}

#[tokio::test]
async fn a_request_over_the_deadline_is_503() {
    let metrics = jessy::metrics::Metrics::install("test").unwrap();
    let app = jessy::http::CommonLayer::new(&metrics, Default::default())
        .timeout(jessy::http::timeout::RequestTimeout(Duration::from_millis(
            200,
        )))
        .layer(
            Router::new()
                .route(
                    "/slow",
                    get(|| async {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        "late"
                    }),
                )
                // Busy: spends the task's coop budget at every poll.
                .route(
                    "/busy",
                    get(|| async {
                        while std::hint::black_box(true) {
                            tokio::task::coop::consume_budget().await;
                        }
                        "never"
                    }),
                ),
        );
    let (addr, _server) = spawn_stub(Router::new().fallback_service(app)).await;
    for path in ["/slow", "/busy"] {
        let res = tokio::time::timeout(
            Duration::from_secs(5),
            client().get(format!("http://{addr}{path}")).send(),
        )
        .await
        .unwrap_or_else(|_| panic!("{path}: no answer at the 200 ms deadline"))
        .unwrap();
        assert_eq!(res.status(), 503, "{path}");
        assert!(res.headers().contains_key("retry-after"));
        assert_eq!(
            res.json::<Value>().await.unwrap()["error"]["code"],
            "timeout"
        );
    }
}
