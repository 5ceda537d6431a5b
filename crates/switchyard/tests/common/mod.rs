//! Helpers for tests that run the real binary: start nodes as child processes on a store of this
//! run's choosing, and receivers that count what arrives.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const ADMIN: &str = "sk_process_test_admin_key_000000000";

pub struct Node {
    pub child: Child,
    pub base: String,
}

/// A node never outlives its test, even one that fails half-way.
impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A data folder and database for one test, on the store this run is for.
pub struct Data {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub master_key: String,
}

pub async fn data() -> Data {
    let dir = tempfile::tempdir().unwrap();
    let url = switchyard_store::testing::database_url(dir.path()).await;
    Data { dir, url, master_key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into() }
}

pub fn start(data: &Data) -> Node {
    start_as(data, "all")
}

/// Starts a node with the given `--role`.
pub fn start_as(data: &Data, role: &str) -> Node {
    start_with(data, &["--role", role])
}

/// Starts a node with extra `serve` flags.
pub fn start_with(data: &Data, flags: &[&str]) -> Node {
    start_custom(data, flags, &[], Stdio::inherit())
}

/// The binary with this test's environment: the data's database and master key, the test admin
/// key, private destinations allowed. `env` overrides it (`None` removes a variable).
pub fn command(data: &Data, env: &[(&str, Option<&str>)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .current_dir(data.dir.path())
        .env("SWITCHYARD_DATABASE_URL", &data.url)
        .env("SWITCHYARD_MASTER_KEY", &data.master_key)
        .env("SWITCHYARD_LISTEN", "127.0.0.1:0")
        .env("SWITCHYARD_ADMIN_KEY", ADMIN)
        .env("SWITCHYARD_ALLOW_PRIVATE_DESTINATIONS", "true")
        .env("SWITCHYARD_POLL_INTERVAL_MS", "100")
        .env("SWITCHYARD_LEASE_MARGIN_MS", "500")
        .env("SWITCHYARD_LOG", "warn");
    for (name, value) in env {
        match value {
            Some(v) => command.env(name, v),
            None => command.env_remove(name),
        };
    }
    command
}

/// Starts a node with extra flags, environment overrides, and somewhere for its logs.
pub fn start_custom(data: &Data, flags: &[&str], env: &[(&str, Option<&str>)], stderr: Stdio) -> Node {
    let mut command = command(data, env);
    command.arg("serve").args(flags).stdout(Stdio::piped()).stderr(stderr);
    spawn_node(command)
}

/// Runs a prepared `serve` command (stdout piped) and waits until it listens.
pub fn spawn_node(mut command: Command) -> Node {
    let mut child = command.spawn().expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines.next().expect("the node prints its address").expect("stdout is readable");
        if let Some(addr) = line.strip_prefix("switchyard listening on ") {
            break addr.trim().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Node { child, base }
}

/// A receiver that takes a little while per request and records which events arrived how often.
#[derive(Clone, Default)]
pub struct Tally {
    pub seen: Arc<Mutex<HashMap<String, usize>>>,
}

pub async fn receiver(delay: Duration) -> (String, Tally) {
    let tally = Tally::default();
    let seen = tally.seen.clone();
    let app = axum::Router::new().fallback(move |_headers: HeaderMap, body: Bytes| {
        let seen = seen.clone();
        async move {
            tokio::time::sleep(delay).await;
            let v: Value = serde_json::from_slice(&body).unwrap();
            *seen.lock().unwrap().entry(v["id"].as_str().unwrap().to_owned()).or_default() += 1;
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (url, tally)
}

/// An admin call that must succeed; returns its JSON body. Past the key's request rate (a test
/// that sets up a thousand rules gets there) it waits as `Retry-After` says, as any script should.
pub async fn admin(client: &reqwest::Client, method: reqwest::Method, url: &str, body: Option<Value>) -> Value {
    for _ in 0..30 {
        let mut request = client.request(method.clone(), url).bearer_auth(ADMIN);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait: u64 = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1);
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(body["error"]["code"], "rate_limited", "{method} {url} → 429 {body}");
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        assert!(response.status().is_success(), "{method} {url} → {}", response.status());
        return response.json().await.unwrap_or(Value::Null);
    }
    panic!("{method} {url}: still rate-limited after 30 waits");
}

/// A workspace whose every event goes to each of `urls` (one connection and rule per URL);
/// returns its publishable key.
pub async fn setup(client: &reqwest::Client, base: &str, urls: &[&str]) -> String {
    let ws = admin(client, reqwest::Method::POST, &format!("{base}/api/v1/workspaces"), Some(json!({"name": "crash"}))).await;
    let ws_id = ws["id"].as_str().unwrap();
    for url in urls {
        let body = json!({"type": "webhook", "name": "sink", "config": {"url": url}, "max_in_flight": 8, "timeout_ms": 2000,
                          "retry_policy": {"max_attempts": 20, "initial_delay_ms": 50, "max_delay_ms": 200}});
        let conn = admin(client, reqwest::Method::POST, &format!("{base}/api/v1/workspaces/{ws_id}/connections"), Some(body)).await;
        let rule = json!({"name": "all", "event": "*", "connection_id": conn["id"]});
        admin(client, reqwest::Method::POST, &format!("{base}/api/v1/workspaces/{ws_id}/rules"), Some(rule)).await;
    }
    ws["publishable_key"]["key"].as_str().unwrap().to_owned()
}
