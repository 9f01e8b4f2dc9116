//! Step definitions. Every `Then` asserts on the answer the gateway gave.

use cucumber::{given, then, when};
use serde_json::{Value, json};

use crate::helpers::client;
use crate::world::{JessyWorld, Stack, remote_api};

// ---- Given -----------------------------------------------------------------

#[given("a running Jessy stack")]
async fn running_stack(world: &mut JessyWorld) {
    let stack = match remote_api() {
        Some(api) => Stack::Remote { api },
        None => Stack::local(10_000).await,
    };
    stack.wait_ready().await;
    world.stack = Some(stack);
}

#[given(expr = "a Jessy stack whose gateway allows {int} requests per minute")]
async fn limited_stack(world: &mut JessyWorld, per_minute: u32) {
    let stack = Stack::local(per_minute).await;
    stack.wait_ready().await;
    world.stack = Some(stack);
}

#[given("the core is stopped")]
async fn core_stopped(world: &mut JessyWorld) {
    world.stack.as_mut().expect("a stack").stop_core().await;
}

// ---- When ------------------------------------------------------------------

#[when(expr = "I ask {string}")]
async fn ask(world: &mut JessyWorld, query: String) {
    world.ask(json!({ "query": query })).await;
}

#[when(expr = "I ask {string} with session {string}")]
async fn ask_with_session(world: &mut JessyWorld, query: String, session: String) {
    world
        .ask(json!({ "query": query, "session_id": session }))
        .await;
}

#[when(expr = "I ask {string} twice")]
async fn ask_twice(world: &mut JessyWorld, query: String) {
    for _ in 0..2 {
        world
            .ask(json!({ "query": query, "session_id": "same" }))
            .await;
    }
}

#[when(expr = "I ask {string} {int} times")]
async fn ask_n_times(world: &mut JessyWorld, query: String, times: usize) {
    for _ in 0..times {
        world.ask(json!({ "query": query })).await;
    }
}

#[when(expr = "I ask a query of {int} characters")]
async fn ask_long(world: &mut JessyWorld, chars: usize) {
    world.ask(json!({ "query": "a".repeat(chars) })).await;
}

#[when(regex = r"^I send the JSON body (.+)$")]
async fn send_raw_json(world: &mut JessyWorld, body: String) {
    let req = client()
        .post(world.stack().url("/api/v1/query"))
        .header("content-type", "application/json")
        .body(body);
    world.send(req).await;
}

#[when(expr = "I send a body of {int} bytes")]
async fn send_bytes(world: &mut JessyWorld, bytes: usize) {
    let req = client()
        .post(world.stack().url("/api/v1/query"))
        .header("content-type", "application/json")
        .body(vec![b' '; bytes]);
    world.send(req).await;
}

#[when(expr = "I send the query as {string}")]
async fn send_with_content_type(world: &mut JessyWorld, content_type: String) {
    let req = client()
        .post(world.stack().url("/api/v1/query"))
        .header("content-type", content_type)
        .body(r#"{"query":"hello"}"#);
    world.send(req).await;
}

#[when(expr = "I GET {string}")]
async fn get(world: &mut JessyWorld, path: String) {
    let req = client().get(world.stack().url(&path));
    world.send(req).await;
}

#[when(expr = "I GET {string} with request id {string}")]
async fn get_with_id(world: &mut JessyWorld, path: String, id: String) {
    let req = client()
        .get(world.stack().url(&path))
        .header("x-request-id", id);
    world.send(req).await;
}

// ---- Then: HTTP --------------------------------------------------------------

#[then(expr = "the answer is {int}")]
async fn status_is(world: &mut JessyWorld, status: u16) {
    let last = world.last();
    assert_eq!(last.status, status, "{}", last.text);
}

#[then(expr = "the error code is {string}")]
async fn error_code(world: &mut JessyWorld, code: String) {
    let body = world.last().json();
    assert_eq!(body["error"]["code"], code.as_str(), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body["error"]["request_id"].is_string(), "{body}");
}

#[then(expr = "the response header {string} is {string}")]
async fn header_is(world: &mut JessyWorld, name: String, value: String) {
    let last = world.last();
    assert_eq!(
        last.headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok()),
        Some(value.as_str())
    );
}

#[then(expr = "the response has a {string} header")]
async fn has_header(world: &mut JessyWorld, name: String) {
    assert!(
        world.last().headers.contains_key(name.as_str()),
        "{:?}",
        world.last().headers
    );
}

#[then(expr = "the JSON field {string} is {string}")]
async fn json_field(world: &mut JessyWorld, path: String, value: String) {
    let body = world.last().json();
    let found = path.split('.').fold(&body, |v, key| &v[key]);
    assert_eq!(found.as_str(), Some(value.as_str()), "{path} in {body}");
}

#[then(expr = "the body contains {string}")]
async fn body_contains(world: &mut JessyWorld, needle: String) {
    assert!(
        world.last().text.contains(&needle),
        "{needle} not in {}",
        world.last().text
    );
}

#[then(expr = "the session id is {string}")]
async fn session_is(world: &mut JessyWorld, id: String) {
    assert_eq!(world.last().json()["session_id"], id.as_str());
}

#[then(expr = "the first {int} answers are {int} and the last is {int}")]
async fn first_and_last(world: &mut JessyWorld, first: usize, ok: u16, last: u16) {
    let statuses: Vec<u16> = world.answers.iter().map(|a| a.status).collect();
    assert!(statuses.len() > first, "{statuses:?}");
    assert!(statuses[..first].iter().all(|s| *s == ok), "{statuses:?}");
    assert_eq!(*statuses.last().unwrap(), last, "{statuses:?}");
}

// ---- Then: navigation ----------------------------------------------------------

fn dimension_ids(world: &JessyWorld) -> Vec<String> {
    let body = world.last().json();
    body["dimensions"]
        .as_array()
        .unwrap_or_else(|| panic!("no dimensions in {body}"))
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

fn frequency(world: &JessyWorld) -> f64 {
    world.last().json()["dominant_frequency_hz"]
        .as_f64()
        .expect("a frequency")
}

#[then(expr = "dimension {word} is activated")]
async fn activated(world: &mut JessyWorld, id: String) {
    assert!(
        dimension_ids(world).contains(&id),
        "{id} not in {:?}",
        dimension_ids(world)
    );
}

#[then(expr = "dimension {word} is not activated")]
async fn not_activated(world: &mut JessyWorld, id: String) {
    assert!(
        !dimension_ids(world).contains(&id),
        "{id} in {:?}",
        dimension_ids(world)
    );
}

#[then(expr = "the first dimension is {word}")]
async fn first_dimension(world: &mut JessyWorld, id: String) {
    assert_eq!(dimension_ids(world).first(), Some(&id));
}

#[then(expr = "the only dimension is {word}")]
async fn only_dimension(world: &mut JessyWorld, id: String) {
    assert_eq!(dimension_ids(world), vec![id]);
}

#[then(expr = "exactly {int} dimensions are listed")]
async fn listed(world: &mut JessyWorld, n: usize) {
    assert_eq!(dimension_ids(world).len(), n);
}

#[then(expr = "more than {int} dimensions were activated")]
async fn activated_count(world: &mut JessyWorld, n: u64) {
    let count = world.last().json()["activated_count"].as_u64().unwrap();
    assert!(count > n, "activated_count {count}");
}

#[then(expr = "the dominant frequency is below {float} Hz")]
async fn below(world: &mut JessyWorld, hz: f64) {
    assert!(frequency(world) < hz, "{} Hz", frequency(world));
}

#[then(expr = "the dominant frequency is at most {float} Hz")]
async fn at_most(world: &mut JessyWorld, hz: f64) {
    assert!(frequency(world) <= hz, "{} Hz", frequency(world));
}

#[then(expr = "the dominant frequency is within {float} of {float} Hz")]
async fn near(world: &mut JessyWorld, tolerance: f64, hz: f64) {
    let f = frequency(world);
    assert!(
        (f - hz).abs() <= tolerance,
        "{f} Hz not within {tolerance} of {hz}"
    );
}

#[then(expr = "the dominant frequency is between {float} and {float} Hz")]
async fn between(world: &mut JessyWorld, low: f64, high: f64) {
    let f = frequency(world);
    assert!((low..=high).contains(&f), "{f} Hz");
}

#[then("the query is blocked")]
async fn blocked(world: &mut JessyWorld) {
    let body = world.last().json();
    assert_eq!(body["blocked"], true, "{body}");
    assert_eq!(body["status"], "blocked");
    assert!(
        body["answer"].as_str().unwrap().contains("blocked"),
        "{body}"
    );
}

#[then("the navigation returned to source")]
async fn returned(world: &mut JessyWorld) {
    assert_eq!(world.last().json()["return_to_source"], true);
}

#[then("balance was applied")]
async fn balanced(world: &mut JessyWorld) {
    assert_eq!(world.last().json()["balance_applied"], true);
}

#[then(expr = "the keywords are {string}")]
async fn keywords(world: &mut JessyWorld, expected: String) {
    let body = world.last().json();
    let got: Vec<&str> = body["keywords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    let want: Vec<&str> = expected
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(got, want);
}

#[then("both answers are identical")]
async fn identical(world: &mut JessyWorld) {
    let n = world.answers.len();
    assert!(n >= 2);
    let a: Value = world.answers[n - 2].json();
    let b: Value = world.answers[n - 1].json();
    assert_eq!(world.answers[n - 1].status, 200);
    assert_eq!(a, b);
}
