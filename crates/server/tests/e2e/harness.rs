//! The test harness: a real node on an ephemeral port with its own SQLite file, an HTTP client
//! speaking to it, and real loopback receivers standing in for destinations.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_server::config::Config;
use switchyard_server::Application;
use tokio_util::sync::CancellationToken;

pub const ADMIN_KEY: &str = "sk_test_admin_key_0123456789abcdef";

pub struct TestApp {
    pub base: String,
    /// The node's database (a SQLite file in the test's folder, or a PostgreSQL database).
    pub database_url: String,
    /// The node's master key (a second node on the same database needs it).
    pub master_key: String,
    pub client: reqwest::Client,
    /// The admin key the node created at first start (only when no SWITCHYARD_ADMIN_KEY is set).
    pub bootstrap_key: Option<String>,
    stop: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A node with test-friendly settings (private destinations allowed, fast polling); `tweak`
    /// adjusts them further.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = switchyard_store::testing::database_url(dir.path()).await;
        Self::start_on(dir, database_url, switchyard_core::crypto::MasterKey::generate_base64(), tweak).await
    }

    /// Stops the node and starts it again on the same data, with `tweak` applied to its settings.
    pub async fn restart_with(mut self, tweak: impl FnOnce(&mut Config)) -> Self {
        self.stop.cancel();
        if let Some(h) = self.handle.take() {
            h.await.expect("join").expect("clean shutdown");
        }
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("temp dir"));
        Self::start_on(dir, self.database_url.clone(), self.master_key.clone(), tweak).await
    }

    async fn start_on(dir: tempfile::TempDir, database_url: String, master_key: String, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::new(database_url.clone());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.admin_key = Some(ADMIN_KEY.into());
        config.master_key = Some(master_key);
        config.allow_private_destinations = true;
        config.dispatcher.poll_interval = Duration::from_millis(100);
        config.dispatcher.lease_check_interval = Duration::from_millis(200);
        config.shutdown_grace = Duration::from_secs(2);
        config.cache_check_interval = Duration::from_millis(100);
        tweak(&mut config);
        let master_key = config.master_key.clone().unwrap_or_default();
        let app = Application::build(config).await.expect("the node builds");
        let base = format!("http://{}", app.local_addr());
        let bootstrap_key = app.bootstrap_admin_key.clone();
        let stop = app.shutdown_token();
        let handle = tokio::spawn(app.run_until_stopped());
        Self { base, database_url, master_key, client: reqwest::Client::new(), bootstrap_key, stop, handle: Some(handle), _dir: dir }
    }

    /// Stops the node gracefully and waits for it.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(h) = self.handle.take() {
            h.await.expect("join").expect("clean shutdown");
        }
    }

    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request reaches the node");
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, value)
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, &format!("/api/v1{path}"), Some(ADMIN_KEY), body).await
    }

    /// Admin call that must succeed with `expected`.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>, expected: u16) -> Value {
        let (status, value) = self.admin(method.clone(), path, body).await;
        assert_eq!(status.as_u16(), expected, "{method} {path} → {value}");
        value
    }

    pub async fn workspace(&self, name: &str) -> Workspace {
        let v = self.ok(Method::POST, "/workspaces", Some(json!({"name": name})), 201).await;
        Workspace { id: v["id"].as_str().unwrap().into(), pk: v["publishable_key"]["key"].as_str().unwrap().into() }
    }

    /// A webhook connection with a fast retry policy; `extra` is merged into the request.
    pub async fn webhook(&self, ws: &Workspace, url: &str, extra: Value) -> Value {
        let mut body = json!({
            "type": "webhook",
            "name": "hook",
            "config": {"url": url},
            "retry_policy": {"max_attempts": 5, "initial_delay_ms": 20, "max_delay_ms": 100},
            "timeout_ms": 2000
        });
        merge(&mut body, extra);
        self.ok(Method::POST, &format!("/workspaces/{}/connections", ws.id), Some(body), 201).await
    }

    pub async fn rule(&self, ws: &Workspace, connection: &Value, event: &str, extra: Value) -> Value {
        let mut body = json!({"name": "rule", "event": event, "connection_id": connection["id"]});
        merge(&mut body, extra);
        self.ok(Method::POST, &format!("/workspaces/{}/rules", ws.id), Some(body), 201).await
    }

    pub async fn emit(&self, ws: &Workspace, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, "/api/v1/events", Some(&ws.pk), Some(body)).await
    }

    /// Emits and expects 202; returns the event id.
    pub async fn emit_ok(&self, ws: &Workspace, body: Value) -> String {
        let (status, v) = self.emit(ws, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }

    pub async fn event(&self, id: &str) -> Value {
        self.ok(Method::GET, &format!("/events/{id}"), None, 200).await
    }

    pub async fn delivery(&self, id: &str) -> Value {
        self.ok(Method::GET, &format!("/deliveries/{id}"), None, 200).await
    }

    /// Polls an event until its status is `status`; returns it.
    pub async fn wait_event(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let e = self.event(id).await;
            if e["status"] == status {
                return e;
            }
            assert!(Instant::now() < deadline, "event {id} never reached {status}: {e:#}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls a delivery until its status is `status`; returns it.
    pub async fn wait_delivery(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let d = self.delivery(id).await;
            if d["status"] == status {
                return d;
            }
            assert!(Instant::now() < deadline, "delivery {id} never reached {status}: {d:#}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

pub fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
}

#[derive(Clone)]
pub struct Workspace {
    pub id: String,
    pub pk: String,
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    /// The query string, when there was one.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

type Responder = Arc<dyn Fn(usize, &Received) -> Reply + Send + Sync>;

/// What a receiver answers.
pub enum Reply {
    Status(u16),
    WithHeaders(u16, Vec<(&'static str, String)>, String),
    /// Never answers (the connection stays open).
    Hang,
    /// Answers with this status after this long.
    After(Duration, u16),
}

/// A real HTTP server on loopback that records every request and answers as told.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Answers every request with `status`.
    pub async fn status(status: u16) -> Self {
        Self::start(move |_, _| Reply::Status(status)).await
    }

    /// `responder(n, request)` decides the answer to the n-th request (0-based).
    pub async fn start(responder: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) -> Self {
        let responder: Responder = Arc::new(responder);
        let requests: Arc<Mutex<Vec<Received>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recorded = requests.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let (recorded, responder) = (recorded.clone(), responder.clone());
            async move {
                let received = Received {
                    method,
                    path: uri.path().to_owned(),
                    query: uri.query().map(str::to_owned),
                    headers,
                    body,
                    at: Instant::now(),
                };
                let n = {
                    let mut all = recorded.lock().unwrap();
                    all.push(received.clone());
                    all.len() - 1
                };
                match responder(n, &received) {
                    Reply::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
                    Reply::WithHeaders(s, headers, body) => {
                        let mut r: Response = (StatusCode::from_u16(s).unwrap(), body).into_response();
                        for (k, v) in headers {
                            r.headers_mut().insert(k, v.parse().unwrap());
                        }
                        r
                    }
                    Reply::After(wait, s) => {
                        tokio::time::sleep(wait).await;
                        StatusCode::from_u16(s).unwrap().into_response()
                    }
                    Reply::Hang => {
                        std::future::pending::<()>().await;
                        unreachable!()
                    }
                }
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Self { addr, requests }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.count() < n {
            assert!(Instant::now() < deadline, "expected {n} requests, got {}", self.count());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.all()
    }
}

/// An address where nothing listens (connections are refused).
pub async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hook")
}

/// Everything the node's database holds, as text: the raw SQLite files (database and WAL), or
/// every PostgreSQL table's rows.
pub async fn database_contents(app: &TestApp) -> String {
    if let Some(path) = app.database_url.strip_prefix("sqlite://") {
        let mut all = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
                all.extend(bytes);
            }
        }
        return String::from_utf8_lossy(&all).into_owned();
    }
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&app.database_url).await.expect("the test database");
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'").fetch_all(&mut conn).await.unwrap();
    let mut all = String::new();
    for table in tables {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM \"{table}\" t")).fetch_all(&mut conn).await.unwrap();
        all.push_str(&rows.join("\n"));
    }
    all
}
