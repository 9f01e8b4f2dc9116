//! Spawning the services for tests: in-process on port 0 (fast, most tests)
//! or as the real built binaries (signals, exit codes, config errors).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use jessy::core::CoreConfig;
use jessy::gateway::GatewayConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A reqwest client that never goes through a proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("test client")
}

/// GET `url` and parse the JSON answer.
pub async fn get_json(url: &str) -> serde_json::Value {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// GET `url` and return the status code.
pub async fn get_status(url: &str) -> u16 {
    client().get(url).send().await.unwrap().status().as_u16()
}

/// Polls GET `url` until it answers `status` (bounded by `within`).
pub async fn wait_for_status(url: &str, status: u16, within: Duration) -> bool {
    let c = client();
    eventually(within, || {
        let req = c.get(url);
        async move { req.send().await.is_ok_and(|r| r.status() == status) }
    })
    .await
}

/// Asserts an error answer: its status and its JSON error code; returns the body.
pub async fn expect_error(res: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(res.status(), status);
    let body: serde_json::Value = res.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["code"], code, "{body}");
    body
}

/// A service running inside the test process.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<jessy::server::Drain>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Triggers the shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub async fn join(mut self) -> jessy::server::Drain {
        self.task.take().unwrap().await.expect("server task")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Runs a built application on the test runtime; `Running` triggers its shutdown.
fn run_in_background<F>(addr: SocketAddr, run: impl FnOnce(ShutdownSignal) -> F) -> Running
where
    F: std::future::Future<Output = jessy::server::Drain> + Send + 'static,
{
    let (tx, rx) = oneshot::channel::<()>();
    let shutdown: ShutdownSignal = Box::pin(async move {
        let _ = rx.await;
    });
    Running {
        addr,
        shutdown: Some(tx),
        task: Some(tokio::spawn(run(shutdown))),
    }
}

type ShutdownSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// jessy-core in-process, with `tweak` applied to its defaults.
pub async fn spawn_core_with(tweak: impl FnOnce(&mut CoreConfig)) -> Running {
    let mut config = CoreConfig::local(0);
    tweak(&mut config);
    let app = jessy::core::Application::build(&config)
        .await
        .expect("core starts");
    run_in_background(app.local_addr(), |shutdown| app.run(shutdown))
}

pub async fn spawn_core() -> Running {
    spawn_core_with(|_| {}).await
}

/// jessy-api in-process in front of `upstream`, with `tweak` applied.
pub async fn spawn_gateway_with(upstream: &str, tweak: impl FnOnce(&mut GatewayConfig)) -> Running {
    let mut config = GatewayConfig::local(0, upstream);
    config.upstream_probe_interval = Duration::from_millis(100);
    tweak(&mut config);
    let app = jessy::gateway::Application::build(&config)
        .await
        .expect("gateway starts");
    run_in_background(app.local_addr(), |shutdown| app.run(shutdown))
}

pub async fn spawn_gateway(upstream: &str) -> Running {
    spawn_gateway_with(upstream, |_| {}).await
}

/// A stand-in for jessy-core: any axum router on a loopback port.
pub async fn spawn_stub(router: Router) -> (SocketAddr, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (addr, task)
}

/// A loopback address where nothing listens (bound, then released).
pub async fn dead_address() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Polls `f` until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A built binary running as a child process.
pub struct Process {
    pub child: Child,
    pub port: u16,
}

impl Process {
    /// Starts `bin` with `env` (on a free loopback port) and waits until
    /// `health_path` answers.
    pub async fn start(
        bin: &str,
        port_var: &str,
        health_path: &str,
        env: &[(&str, &str)],
    ) -> Process {
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env(port_var, port.to_string())
            .env("RUST_LOG", "info")
            .env("LOG_FORMAT", "json")
            .env(
                if port_var == "JESSY_PORT" {
                    "JESSY_HOST"
                } else {
                    "API_HOST"
                },
                "127.0.0.1",
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn binary");
        let process = Process { child, port };
        let url = process.url(health_path);
        let up = eventually(Duration::from_secs(10), || {
            let url = url.clone();
            async move {
                client()
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        assert!(up, "{bin} did not become healthy on {url}");
        process
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for exit (bounded) and returns (exit code, stdout).
    pub fn wait(mut self, within: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let mut out = String::new();
                if let Some(mut stdout) = self.child.stdout.take() {
                    use std::io::Read;
                    let _ = stdout.read_to_string(&mut out);
                }
                return (status.code(), out);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("process did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub const CORE_BIN: &str = env!("CARGO_BIN_EXE_jessy-core");
pub const API_BIN: &str = env!("CARGO_BIN_EXE_jessy-api");
