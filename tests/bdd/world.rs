//! The world of one scenario: the stack under test and the last answers.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Running, client, eventually, spawn_core, spawn_gateway_with};

/// The gateway of a running stack to test against, if one is given.
pub fn remote_api() -> Option<String> {
    std::env::var("JESSY_STACK_API_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .map(|url| url.trim_end_matches('/').to_owned())
}

/// The services under test.
#[derive(Debug)]
pub enum Stack {
    /// A stack someone else runs (compose).
    Remote { api: String },
    /// Core and gateway started by this scenario.
    Local {
        core: Option<Running>,
        gateway: Running,
    },
}

impl Stack {
    /// A local core with a gateway in front allowing `per_minute` requests.
    pub async fn local(per_minute: u32) -> Stack {
        let core = spawn_core().await;
        let gateway = spawn_gateway_with(&format!("http://{}", core.addr), |c| {
            c.rate_limit_requests = per_minute;
            c.max_body_size = 16 * 1024;
        })
        .await;
        Stack::Local {
            core: Some(core),
            gateway,
        }
    }

    pub fn url(&self, path: &str) -> String {
        match self {
            Stack::Remote { api } => format!("{api}{path}"),
            Stack::Local { gateway, .. } => gateway.url(path),
        }
    }

    /// Waits (bounded) until the gateway reports the core ready.
    pub async fn wait_ready(&self) {
        let url = self.url("/api/ready");
        let c = client();
        let ready = eventually(Duration::from_secs(20), || {
            let req = c.get(&url);
            async move { req.send().await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        assert!(ready, "{url} never answered 200");
    }

    /// Stops the core gracefully (its listener and pooled connections close).
    pub async fn stop_core(&mut self) {
        match self {
            Stack::Local { core, .. } => {
                let mut core = core.take().expect("core is running");
                core.begin_shutdown();
                core.join().await;
            }
            Stack::Remote { .. } => panic!("@local scenario ran against a remote stack"),
        }
    }
}

/// An HTTP answer as the steps see it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

#[derive(Debug, Default, cucumber::World)]
pub struct JessyWorld {
    pub stack: Option<Stack>,
    pub answers: Vec<Answer>,
}

impl JessyWorld {
    pub fn stack(&self) -> &Stack {
        self.stack
            .as_ref()
            .expect("a stack was started by a Given step")
    }

    pub fn last(&self) -> &Answer {
        self.answers.last().expect("a request was sent")
    }

    /// Sends a request and records the answer.
    pub async fn send(&mut self, req: reqwest::RequestBuilder) -> &Answer {
        let res = req.send().await.expect("the gateway answered");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        self.answers.push(Answer {
            status,
            headers,
            text,
        });
        self.last()
    }

    pub async fn ask(&mut self, body: Value) -> &Answer {
        let req = client().post(self.stack().url("/api/v1/query")).json(&body);
        self.send(req).await
    }
}
