//! A typed Rust client for Switchyard's API: workspaces, publishable keys, connections, rules,
//! events, deliveries, sessions and event types.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchyard_client::Error> {
//! use switchyard_client::{Client, models::{NewEvent, Page}};
//!
//! let admin = Client::new("http://127.0.0.1:8080", "sk_...")?;
//! for ws in admin.list_workspaces(&Page::default()).await?.data {
//!     println!("{} {}", ws.id, ws.name);
//! }
//! // Sending events takes the workspace's publishable key.
//! let product = Client::new("http://127.0.0.1:8080", "pk_...")?;
//! product.emit(&NewEvent::new("user.created", serde_json::json!({"email": "ada@example.com"}))).await?;
//! # Ok(()) }
//! ```
//!
//! Requests that are safe to repeat (reads, deletes, PUTs, and event emits, which carry one
//! idempotency key across their attempts) are retried on network errors, `429` and `5xx`, with
//! exponential backoff and full jitter. A `Retry-After` is waited out when it is no longer than
//! the longest backoff ([`Retries::max_delay`]); a longer one ends the call with its error, which
//! carries it. Everything else is sent once.
//!
//! The HTTP exchange is a [`Transport`]: [`Client::new`] uses `reqwest`; a server can hand its own
//! router in (as Switchyard's MCP endpoint does) so that each call passes the same checks as a
//! request from outside.

pub mod models;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use models::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The API's error, or why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error (the documented `{"error": {...}}` shape).
    #[error("{message} ({status} {code})")]
    Api { status: u16, code: String, message: String, details: Vec<ErrorDetail>, retry_after: Option<Duration> },
    /// No answer: the server could not be reached, or did not answer in time.
    #[error("could not reach the server: {0}")]
    Transport(String),
    /// An answer this client does not understand.
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
    /// The client was given something it cannot use (a malformed URL or key).
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API's error code (`not_found`, `validation_failed`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            Error::Transport(_) => true,
            Error::Api { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed future of a transport's answer.
pub type Exchange<'a> = Pin<Box<dyn Future<Output = Result<Response<Bytes>>> + Send + 'a>>;

/// Carries one request to the server and brings its whole answer back.
pub trait Transport: Send + Sync + 'static {
    fn send(&self, request: Request<Bytes>) -> Exchange<'_>;
}

/// HTTP over the network with `reqwest`.
pub struct HttpTransport {
    http: reqwest::Client,
}

impl HttpTransport {
    pub fn new(timeout: Duration) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("switchyard-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("could not set up HTTP: {e}")))?;
        Ok(Self { http })
    }
}

impl Transport for HttpTransport {
    fn send(&self, request: Request<Bytes>) -> Exchange<'_> {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request.map(reqwest::Body::from)).map_err(|e| Error::Config(e.to_string()))?;
            let response = self.http.execute(request).await.map_err(transport_error)?;
            let mut out = Response::builder().status(response.status());
            if let Some(headers) = out.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = response.bytes().await.map_err(transport_error)?;
            out.body(body).map_err(|e| Error::Decode(e.to_string()))
        })
    }
}

/// A reqwest error without the URL (which is ours) or anything of the request.
fn transport_error(e: reqwest::Error) -> Error {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection refused or unreachable"
    } else {
        "connection failed"
    };
    let mut cause = std::error::Error::source(&e);
    let mut deepest = None;
    while let Some(c) = cause {
        deepest = Some(c.to_string());
        cause = c.source();
    }
    Error::Transport(match deepest {
        Some(d) => format!("{what} ({d})"),
        None => what.to_owned(),
    })
}

/// Retries of repeatable requests: how many, and the backoff's first and longest delay.
#[derive(Debug, Clone, Copy)]
pub struct Retries {
    pub max_retries: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Retries {
    fn default() -> Self {
        Self { max_retries: 3, initial_delay: Duration::from_millis(200), max_delay: Duration::from_secs(5) }
    }
}

/// A client of one server with one credential: an API key (`sk_...`), a session token, or a
/// publishable key (`pk_...`, which may only emit events).
#[derive(Clone)]
pub struct Client {
    base: url::Url,
    authorization: Option<HeaderValue>,
    transport: Arc<dyn Transport>,
    retries: Retries,
    extra_headers: http::HeaderMap,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base.as_str()).field("credential", &self.authorization.is_some()).finish()
    }
}

impl Client {
    /// A client over HTTP, with a 30-second timeout per attempt.
    pub fn new(base_url: &str, credential: &str) -> Result<Self> {
        Self::with_transport(base_url, Some(credential), Arc::new(HttpTransport::new(Duration::from_secs(30))?))
    }

    /// A client over any transport; `credential` may be `None` for the public endpoints.
    pub fn with_transport(base_url: &str, credential: Option<&str>, transport: Arc<dyn Transport>) -> Result<Self> {
        let mut base = url::Url::parse(base_url).map_err(|e| Error::Config(format!("the server URL `{base_url}` is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::Config(format!("the server URL must start with http:// or https://, not `{}`", base.scheme())));
        }
        base.set_query(None);
        base.set_fragment(None);
        let path = base.path().trim_end_matches('/').to_owned();
        base.set_path(&format!("{path}/api/v1"));
        let authorization = credential
            .map(|c| {
                let c = c.trim();
                let mut value = HeaderValue::from_str(&format!("Bearer {c}"))
                    .map_err(|_| Error::Config("the credential has characters a header cannot carry".into()))?;
                value.set_sensitive(true);
                Ok::<_, Error>(value)
            })
            .transpose()?;
        Ok(Self { base, authorization, transport, retries: Retries::default(), extra_headers: http::HeaderMap::new() })
    }

    /// How repeatable requests are retried (`max_retries: 0` turns retrying off).
    pub fn retries(mut self, retries: Retries) -> Self {
        self.retries = retries;
        self
    }

    /// A header sent with every request (a tracing id, say).
    pub fn header(mut self, name: http::HeaderName, value: HeaderValue) -> Self {
        self.extra_headers.insert(name, value);
        self
    }

    /// The API's root, e.g. `http://127.0.0.1:8080/api/v1`.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    // --- workspaces --------------------------------------------------------------------------

    pub async fn list_workspaces(&self, page: &Page) -> Result<List<Workspace>> {
        self.get("/workspaces", &page_query(page)).await
    }

    /// The workspaces holding every label of `labels` (`env=prod`, ...).
    pub async fn list_labelled_workspaces(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
        page: &Page,
    ) -> Result<List<Workspace>> {
        let mut query = page_query(page);
        if !labels.is_empty() {
            query.push(("labels", labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")));
        }
        self.get("/workspaces", &query).await
    }

    pub async fn get_workspace(&self, id: &str) -> Result<Workspace> {
        self.get(&format!("/workspaces/{}", seg(id)), &[]).await
    }

    pub async fn create_workspace(&self, new: &NewWorkspace) -> Result<WorkspaceCreated> {
        self.send(Method::POST, "/workspaces", Some(new), None).await
    }

    pub async fn update_workspace(&self, id: &str, changes: &WorkspaceChanges) -> Result<Workspace> {
        self.send(Method::PATCH, &format!("/workspaces/{}", seg(id)), Some(changes), None).await
    }

    /// Deletes a workspace and everything in it.
    pub async fn delete_workspace(&self, id: &str) -> Result<()> {
        self.delete(&format!("/workspaces/{}", seg(id))).await
    }

    // --- publishable keys --------------------------------------------------------------------

    pub async fn list_publishable_keys(&self, workspace: &str) -> Result<List<PublishableKey>> {
        self.get(&format!("/workspaces/{}/publishable-keys", seg(workspace)), &[]).await
    }

    pub async fn create_publishable_key(&self, workspace: &str) -> Result<NewPublishableKey> {
        self.send(Method::POST, &format!("/workspaces/{}/publishable-keys", seg(workspace)), None::<&()>, None).await
    }

    /// Replaces a key with a new one; the old one stops working at once.
    pub async fn rotate_publishable_key(&self, workspace: &str, key_id: &str) -> Result<NewPublishableKey> {
        let path = format!("/workspaces/{}/publishable-keys/{}/rotate", seg(workspace), seg(key_id));
        self.send(Method::POST, &path, None::<&()>, None).await
    }

    pub async fn delete_publishable_key(&self, workspace: &str, key_id: &str) -> Result<()> {
        self.delete(&format!("/workspaces/{}/publishable-keys/{}", seg(workspace), seg(key_id))).await
    }

    // --- connections -------------------------------------------------------------------------

    /// The integration catalog: every destination type with its auth, config fields and actions.
    pub async fn list_integrations(&self) -> Result<Catalog> {
        self.get("/integrations", &[]).await
    }

    pub async fn list_connections(&self, workspace: &str, page: &Page) -> Result<List<Connection>> {
        self.get(&format!("/workspaces/{}/connections", seg(workspace)), &page_query(page)).await
    }

    pub async fn get_connection(&self, id: &str) -> Result<Connection> {
        self.get(&format!("/connections/{}", seg(id)), &[]).await
    }

    pub async fn create_connection(&self, workspace: &str, new: &NewConnection) -> Result<Connection> {
        self.send(Method::POST, &format!("/workspaces/{}/connections", seg(workspace)), Some(new), None).await
    }

    pub async fn update_connection(&self, id: &str, changes: &ConnectionChanges) -> Result<Connection> {
        self.send(Method::PATCH, &format!("/connections/{}", seg(id)), Some(changes), None).await
    }

    /// Deletes a connection; `force` also deletes the rules that use it.
    pub async fn delete_connection(&self, id: &str, force: bool) -> Result<()> {
        let path = format!("/connections/{}{}", seg(id), if force { "?force=true" } else { "" });
        self.delete(&path).await
    }

    pub async fn rotate_connection_secret(&self, id: &str) -> Result<RotatedSecret> {
        self.send(Method::POST, &format!("/connections/{}/rotate-secret", seg(id)), None::<&()>, None).await
    }

    /// Pauses a connection: its deliveries wait, spending no attempts, until it is resumed.
    pub async fn pause_connection(&self, id: &str) -> Result<Connection> {
        self.send(Method::POST, &format!("/connections/{}/pause", seg(id)), None::<&()>, None).await
    }

    /// Resumes a paused or disabled connection: what waited goes out, oldest first, at its pace.
    pub async fn resume_connection(&self, id: &str) -> Result<Connection> {
        self.send(Method::POST, &format!("/connections/{}/resume", seg(id)), None::<&()>, None).await
    }

    // --- rules -------------------------------------------------------------------------------

    pub async fn list_rules(&self, workspace: &str, page: &Page) -> Result<List<Rule>> {
        self.get(&format!("/workspaces/{}/rules", seg(workspace)), &page_query(page)).await
    }

    pub async fn get_rule(&self, id: &str) -> Result<Rule> {
        self.get(&format!("/rules/{}", seg(id)), &[]).await
    }

    pub async fn create_rule(&self, workspace: &str, new: &NewRule) -> Result<Rule> {
        self.send(Method::POST, &format!("/workspaces/{}/rules", seg(workspace)), Some(new), None).await
    }

    pub async fn update_rule(&self, id: &str, changes: &RuleChanges) -> Result<Rule> {
        self.send(Method::PATCH, &format!("/rules/{}", seg(id)), Some(changes), None).await
    }

    pub async fn delete_rule(&self, id: &str) -> Result<()> {
        self.delete(&format!("/rules/{}", seg(id))).await
    }

    /// Sends a test event through this rule only (its conditions and active flag bypassed).
    pub async fn test_rule(&self, id: &str, payload: Option<&serde_json::Value>) -> Result<TestAccepted> {
        let body = payload.map(|p| serde_json::json!({ "payload": p }));
        self.send(Method::POST, &format!("/rules/{}/test", seg(id)), body.as_ref(), None).await
    }

    // --- events ------------------------------------------------------------------------------

    /// Sends one event with a publishable key. The idempotency key (generated when unset) is the
    /// same on every retry, so a retry never stores the event twice.
    pub async fn emit(&self, event: &NewEvent) -> Result<EventAccepted> {
        let (event, key) = keyed(event);
        self.send(Method::POST, "/events", Some(&event), Some(&key)).await
    }

    /// Sends one event into a workspace with an API key (editor or above), as `emit` does.
    pub async fn emit_to(&self, workspace: &str, event: &NewEvent) -> Result<EventAccepted> {
        let (event, key) = keyed(event);
        self.send(Method::POST, &format!("/workspaces/{}/events", seg(workspace)), Some(&event), Some(&key)).await
    }

    pub async fn list_events(&self, workspace: &str, filter: &EventFilter, page: &Page) -> Result<List<Event>> {
        let mut query = page_query(page);
        push(&mut query, "event", &filter.event);
        push(&mut query, "status", &filter.status);
        push(&mut query, "resource", &filter.resource);
        push(&mut query, "resource_id", &filter.resource_id);
        push(&mut query, "since", &filter.since.map(rfc3339));
        push(&mut query, "until", &filter.until.map(rfc3339));
        self.get(&format!("/workspaces/{}/events", seg(workspace)), &query).await
    }

    /// An event with its payload (where the credential may read it) and its deliveries.
    pub async fn get_event(&self, id: &str) -> Result<Event> {
        self.get(&format!("/events/{}", seg(id)), &[]).await
    }

    // --- deliveries --------------------------------------------------------------------------

    pub async fn list_deliveries(&self, workspace: &str, filter: &DeliveryFilter, page: &Page) -> Result<List<DeliverySummary>> {
        let mut query = page_query(page);
        push(&mut query, "status", &filter.status);
        push(&mut query, "connection_id", &filter.connection_id);
        push(&mut query, "rule_id", &filter.rule_id);
        push(&mut query, "event", &filter.event);
        push(&mut query, "since", &filter.since.map(rfc3339));
        push(&mut query, "until", &filter.until.map(rfc3339));
        self.get(&format!("/workspaces/{}/deliveries", seg(workspace)), &query).await
    }

    pub async fn get_delivery(&self, id: &str) -> Result<Delivery> {
        self.get(&format!("/deliveries/{}", seg(id)), &[]).await
    }

    /// Sends a delivery again, whatever its state, as a new run of attempts.
    pub async fn replay_delivery(&self, id: &str) -> Result<ReplayAccepted> {
        self.send(Method::POST, &format!("/deliveries/{}/replay", seg(id)), None::<&()>, None).await
    }

    /// Replays every delivery of a workspace the filter matches (by default the dead ones).
    pub async fn replay_deliveries(&self, workspace: &str, filter: &ReplayFilter) -> Result<BulkReplayed> {
        self.send(Method::POST, &format!("/workspaces/{}/replay", seg(workspace)), Some(filter), None).await
    }

    /// Cancels a delivery that has not finished: it is never attempted again (a replay still sends it).
    pub async fn cancel_delivery(&self, id: &str) -> Result<CancelAccepted> {
        self.send(Method::POST, &format!("/deliveries/{}/cancel", seg(id)), None::<&()>, None).await
    }

    /// Cancels every unfinished delivery of an event.
    pub async fn cancel_event(&self, id: &str) -> Result<BulkCancelled> {
        self.send(Method::POST, &format!("/events/{}/cancel", seg(id)), None::<&()>, None).await
    }

    /// Cancels every unfinished delivery of a workspace the filter matches.
    pub async fn cancel_deliveries(&self, workspace: &str, filter: &ReplayFilter) -> Result<BulkCancelled> {
        self.send(Method::POST, &format!("/workspaces/{}/cancel", seg(workspace)), Some(filter), None).await
    }

    // --- sessions ----------------------------------------------------------------------------

    /// Mints a session token and launch URL for the embedded pages.
    pub async fn create_session(&self, new: &NewSession) -> Result<SessionCreated> {
        self.send(Method::POST, "/sessions", Some(new), None).await
    }

    pub async fn list_sessions(&self, workspace: &str, page: &Page) -> Result<List<Session>> {
        self.get(&format!("/workspaces/{}/sessions", seg(workspace)), &page_query(page)).await
    }

    /// Ends a session at once.
    pub async fn delete_session(&self, id: &str) -> Result<()> {
        self.delete(&format!("/sessions/{}", seg(id))).await
    }

    // --- event types -------------------------------------------------------------------------

    /// Sets a workspace secret (what `${secret:NAME}` stands for in a blueprint).
    pub async fn put_secret(&self, workspace: &str, name: &str, value: &str) -> Result<Secret> {
        let body = serde_json::json!({"value": value});
        self.send(Method::PUT, &format!("/workspaces/{}/secrets/{}", seg(workspace), seg(name)), Some(&body), None).await
    }

    /// A workspace's secrets by name (never their values).
    pub async fn list_secrets(&self, workspace: &str) -> Result<List<Secret>> {
        self.get(&format!("/workspaces/{}/secrets", seg(workspace)), &[]).await
    }

    pub async fn delete_secret(&self, workspace: &str, name: &str) -> Result<()> {
        self.delete(&format!("/workspaces/{}/secrets/{}", seg(workspace), seg(name))).await
    }

    pub async fn list_event_types(&self, workspace: &str) -> Result<List<EventType>> {
        self.get(&format!("/workspaces/{}/event-types", seg(workspace)), &[]).await
    }

    pub async fn get_event_type(&self, workspace: &str, name: &str) -> Result<EventType> {
        self.get(&format!("/workspaces/{}/event-types/{}", seg(workspace), seg(name)), &[]).await
    }

    pub async fn declare_event_type(&self, workspace: &str, name: &str, declaration: &EventTypeDeclaration) -> Result<EventType> {
        self.send(Method::PUT, &format!("/workspaces/{}/event-types/{}", seg(workspace), seg(name)), Some(declaration), None).await
    }

    pub async fn undeclare_event_type(&self, workspace: &str, name: &str) -> Result<()> {
        self.delete(&format!("/workspaces/{}/event-types/{}", seg(workspace), seg(name))).await
    }

    // --- plans and usage ---------------------------------------------------------------------

    pub async fn list_plans(&self) -> Result<PlanList> {
        self.get("/plans", &[]).await
    }

    pub async fn get_plan(&self, name: &str) -> Result<Plan> {
        self.get(&format!("/plans/{}", seg(name)), &[]).await
    }

    /// Creates or replaces a plan (installation keys).
    pub async fn put_plan(&self, name: &str, plan: &PlanDefinition) -> Result<Plan> {
        self.send(Method::PUT, &format!("/plans/{}", seg(name)), Some(plan), None).await
    }

    pub async fn delete_plan(&self, name: &str) -> Result<()> {
        self.delete(&format!("/plans/{}", seg(name))).await
    }

    /// This month's events, connections and rules against the limits in force.
    pub async fn workspace_usage(&self, workspace: &str) -> Result<WorkspaceUsage> {
        self.get(&format!("/workspaces/{}/usage", seg(workspace)), &[]).await
    }

    pub async fn installation_usage(&self) -> Result<InstallationUsage> {
        self.get("/usage", &[]).await
    }

    // --- any other call ----------------------------------------------------------------------

    /// Any API call, by path under `/api/v1`, answering the JSON as it came (`Null` for 204).
    pub async fn request(&self, method: Method, path: &str, body: Option<&serde_json::Value>) -> Result<serde_json::Value> {
        self.send(method, path, body, None).await
    }

    /// Any API call with a body that is not JSON (a blueprint's YAML, say), answering JSON.
    pub async fn request_text(&self, method: Method, path: &str, content_type: &'static str, body: String) -> Result<serde_json::Value> {
        let url = self.url(path)?;
        self.exchange_as(method, url, Some((Bytes::from(body), content_type)), None).await
    }

    // --- the exchange ------------------------------------------------------------------------

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T> {
        let mut url = self.url(path)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        self.exchange(Method::GET, url, None, None).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let url = self.url(path)?;
        self.exchange::<serde_json::Value>(Method::DELETE, url, None, None).await.map(|_| ())
    }

    async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        idempotency_key: Option<&str>,
    ) -> Result<T> {
        let url = self.url(path)?;
        let body = body.map(|b| serde_json::to_vec(b).map(Bytes::from)).transpose().map_err(|e| Error::Config(e.to_string()))?;
        self.exchange(method, url, body, idempotency_key).await
    }

    fn url(&self, path: &str) -> Result<url::Url> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let mut url = self.base.clone();
        url.set_path(&format!("{}{}", self.base.path(), path));
        if !query.is_empty() {
            url.set_query(Some(query));
        }
        Ok(url)
    }

    /// One call with its retries: reads, deletes, PUTs and keyed emits are repeatable.
    async fn exchange<T: DeserializeOwned>(&self, method: Method, url: url::Url, body: Option<Bytes>, key: Option<&str>) -> Result<T> {
        self.exchange_as(method, url, body.map(|b| (b, "application/json")), key).await
    }

    async fn exchange_as<T: DeserializeOwned>(
        &self,
        method: Method,
        url: url::Url,
        body: Option<(Bytes, &'static str)>,
        key: Option<&str>,
    ) -> Result<T> {
        let (body, content_type) = match body {
            Some((b, t)) => (Some(b), t),
            None => (None, "application/json"),
        };
        let repeatable = matches!(method, Method::GET | Method::PUT | Method::DELETE) || key.is_some();
        let mut attempt = 0u32;
        loop {
            let mut request = Request::builder().method(method.clone()).uri(url.as_str());
            let headers = request.headers_mut().expect("a fresh builder has headers");
            headers.extend(self.extra_headers.clone());
            headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
            if let Some(auth) = &self.authorization {
                headers.insert(header::AUTHORIZATION, auth.clone());
            }
            if body.is_some() {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            }
            if let Some(key) = key {
                headers.insert(
                    "idempotency-key",
                    HeaderValue::from_str(key).map_err(|_| Error::Config("the idempotency key must be visible ASCII".into()))?,
                );
            }
            let request = request.body(body.clone().unwrap_or_default()).map_err(|e| Error::Config(e.to_string()))?;
            let result = self.transport.send(request).await.and_then(|response| decode(&response));
            match result {
                // A delete whose first answer was lost finds nothing the second time: it is done.
                Err(Error::Api { status: 404, .. }) if method == Method::DELETE && attempt > 0 => {
                    return decode(&Response::builder().status(StatusCode::NO_CONTENT).body(Bytes::new()).expect("a static response"));
                }
                Err(e) if repeatable && e.retryable() && attempt < self.retries.max_retries => {
                    let wait = match &e {
                        // A server that asks for a longer wait than we would give gets its error
                        // back: the caller decides when to come back.
                        Error::Api { retry_after: Some(after), .. } if *after > self.retries.max_delay => return Err(e),
                        Error::Api { retry_after: Some(after), .. } => (*after).max(backoff(self.retries, attempt)),
                        _ => backoff(self.retries, attempt),
                    };
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }
}

/// The answer's JSON, or its error. A 204 decodes as JSON `null` (so into `()` or `Value`).
fn decode<T: DeserializeOwned>(response: &Response<Bytes>) -> Result<T> {
    let status = response.status();
    if status.is_success() {
        let body: &[u8] = if status == StatusCode::NO_CONTENT || response.body().is_empty() { b"null" } else { response.body() };
        return serde_json::from_slice(body).map_err(|e| Error::Decode(format!("{status}: {e}")));
    }
    let retry_after = response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| {
        v.trim()
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
            .or_else(|| httpdate::parse_http_date(v).ok().map(|at| at.duration_since(std::time::SystemTime::now()).unwrap_or_default()))
    });
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Body,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        code: String,
        message: String,
        #[serde(default)]
        details: Vec<ErrorDetail>,
    }
    match serde_json::from_slice::<Envelope>(response.body()) {
        Ok(Envelope { error }) => {
            Err(Error::Api { status: status.as_u16(), code: error.code, message: error.message, details: error.details, retry_after })
        }
        Err(_) => Err(Error::Api {
            status: status.as_u16(),
            code: "http_error".into(),
            message: format!("the server answered {status} without an error body"),
            details: Vec::new(),
            retry_after,
        }),
    }
}

/// Exponential backoff with full jitter: a random wait up to `initial × 2^attempt`, capped.
fn backoff(retries: Retries, attempt: u32) -> Duration {
    let ceiling = retries.initial_delay.saturating_mul(1u32 << attempt.min(16)).min(retries.max_delay);
    let millis = ceiling.as_millis().max(1) as u64;
    Duration::from_millis(rand::Rng::gen_range(&mut rand::thread_rng(), 0..=millis))
}

/// The event with an idempotency key: its own, or a fresh one (ULID) kept for every retry.
fn keyed(event: &NewEvent) -> (NewEvent, String) {
    let mut event = event.clone();
    let key = event.idempotency_key.take().unwrap_or_else(|| ulid::Ulid::new().to_string());
    (event, key)
}

/// A path segment, percent-encoded (ids never need it, names of event types may).
fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

fn page_query(page: &Page) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    push(&mut query, "limit", &page.limit.map(|l| l.to_string()));
    push(&mut query, "cursor", &page.cursor);
    query
}

fn push(query: &mut Vec<(&'static str, String)>, name: &'static str, value: &Option<String>) {
    if let Some(v) = value {
        query.push((name, v.clone()));
    }
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = Retries { max_retries: 5, initial_delay: Duration::from_millis(100), max_delay: Duration::from_millis(1000) };
        for _ in 0..50 {
            let first = backoff(r, 0);
            assert!(first <= Duration::from_millis(100), "{first:?}");
            assert!(backoff(r, 10) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn the_base_url_keeps_a_path_prefix_and_drops_a_trailing_slash() {
        let transport = Arc::new(HttpTransport::new(Duration::from_secs(1)).unwrap());
        let c = Client::with_transport("https://example.test/switchyard/", None, transport.clone()).unwrap();
        assert_eq!(c.url("/workspaces").unwrap().as_str(), "https://example.test/switchyard/api/v1/workspaces");
        let c = Client::with_transport("http://127.0.0.1:8080", None, transport.clone()).unwrap();
        assert_eq!(c.url("/connections/conn_1?force=true").unwrap().as_str(), "http://127.0.0.1:8080/api/v1/connections/conn_1?force=true");
        assert!(matches!(Client::with_transport("ftp://x", None, transport.clone()), Err(Error::Config(_))));
        assert!(matches!(Client::with_transport("http://x", Some("bad\nkey"), transport), Err(Error::Config(_))));
    }

    /// Answers from a script, counting the requests.
    struct Scripted {
        answers: std::sync::Mutex<Vec<(u16, &'static str, &'static str)>>,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl Transport for Scripted {
        fn send(&self, _request: Request<Bytes>) -> Exchange<'_> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (status, retry_after, body) = self.answers.lock().unwrap().remove(0);
            Box::pin(async move {
                let mut r = Response::builder().status(status);
                if !retry_after.is_empty() {
                    r = r.header("retry-after", retry_after);
                }
                Ok(r.body(Bytes::from_static(body.as_bytes())).unwrap())
            })
        }
    }

    fn scripted(answers: Vec<(u16, &'static str, &'static str)>) -> (Client, Arc<Scripted>) {
        let t = Arc::new(Scripted { answers: std::sync::Mutex::new(answers), calls: Default::default() });
        let retries = Retries { max_retries: 3, initial_delay: Duration::from_millis(1), max_delay: Duration::from_secs(2) };
        (Client::with_transport("http://127.0.0.1:1", Some("sk_x"), t.clone()).unwrap().retries(retries), t)
    }

    const BUSY: &str = r#"{"error":{"code":"rate_limited","message":"slow down"}}"#;

    #[tokio::test]
    async fn a_short_retry_after_is_waited_out_and_a_long_one_ends_the_call() {
        let (c, t) = scripted(vec![(429, "0", BUSY), (503, "", BUSY), (200, "", r#"{"data":[],"next_cursor":null}"#)]);
        c.list_workspaces(&Page::default()).await.unwrap();
        assert_eq!(t.calls.load(std::sync::atomic::Ordering::SeqCst), 3);

        let (c, t) = scripted(vec![(429, "30", BUSY)]);
        let e = c.list_workspaces(&Page::default()).await.unwrap_err();
        assert_eq!(t.calls.load(std::sync::atomic::Ordering::SeqCst), 1, "not retried within the call");
        assert!(matches!(e, Error::Api { status: 429, retry_after: Some(d), .. } if d == Duration::from_secs(30)));
    }

    #[tokio::test]
    async fn creates_are_sent_once_and_a_repeated_delete_that_finds_nothing_is_done() {
        let (c, t) = scripted(vec![(503, "", BUSY)]);
        assert!(c.create_workspace(&NewWorkspace { name: "x".into(), ..NewWorkspace::default() }).await.is_err());
        assert_eq!(t.calls.load(std::sync::atomic::Ordering::SeqCst), 1, "a create may have happened: never repeated");

        let not_found = r#"{"error":{"code":"not_found","message":"rule not found"}}"#;
        let (c, _) = scripted(vec![(502, "", BUSY), (404, "", not_found)]);
        c.delete_rule("rule_1").await.unwrap();
        let (c, _) = scripted(vec![(404, "", not_found)]);
        assert_eq!(c.delete_rule("rule_1").await.unwrap_err().status(), Some(404), "a first 404 is an error");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("order paid/eu"), "order%20paid%2Feu");
        assert_eq!(seg("user.created"), "user.created");
    }

    #[test]
    fn errors_decode_from_the_documented_shape() {
        let response = Response::builder()
            .status(422)
            .header("retry-after", "3")
            .body(Bytes::from_static(
                br#"{"error":{"code":"validation_failed","message":"bad","details":[{"field":"name","message":"required"}]}}"#,
            ))
            .unwrap();
        match decode::<serde_json::Value>(&response) {
            Err(Error::Api { status: 422, code, details, retry_after, .. }) => {
                assert_eq!(code, "validation_failed");
                assert_eq!(details[0].field, "name");
                assert_eq!(retry_after, Some(Duration::from_secs(3)));
            }
            other => panic!("{other:?}"),
        }
        let empty = Response::builder().status(204).body(Bytes::new()).unwrap();
        decode::<()>(&empty).unwrap();
        let html = Response::builder().status(502).body(Bytes::from_static(b"<html>")).unwrap();
        assert!(matches!(decode::<()>(&html), Err(Error::Api { status: 502, .. })));
    }
}
