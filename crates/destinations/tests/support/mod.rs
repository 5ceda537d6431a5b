//! Contract stubs: a real HTTP server on loopback standing in for a vendor. It records every
//! request and answers from a script of the vendor's documented responses (200 `{}` once the
//! script runs out), so a test can assert exactly what a connector sent and how it judged each
//! answer.

#![allow(dead_code)]

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use switchyard_core::ids::*;
use switchyard_core::model::{Connection, Event, EventStatus, Rule};
use switchyard_destinations::exchange::Step;
use switchyard_destinations::http::Sender;
use switchyard_destinations::{Delivered, DeliveryContext, Exchange, OpenedSecrets, Registry, ValidationContext};

/// One request as the stub saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The path and query, exactly as sent.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `METHOD /path?query`, for compact assertions.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.uri)
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

pub fn reply(status: u16, body: &str) -> Reply {
    Reply { status, headers: vec![("content-type".into(), "application/json".into())], body: body.into() }
}

impl Reply {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

#[derive(Clone)]
pub struct Stub {
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
}

impl Stub {
    pub async fn start() -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Arc<Mutex<VecDeque<Reply>>> = Arc::default();
        let (s, r) = (seen.clone(), script.clone());
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (seen, script) = (s.clone(), r.clone());
            async move {
                seen.lock().unwrap().push(Seen { method: method.to_string(), uri: uri.to_string(), headers, body });
                let next = script.lock().unwrap().pop_front().unwrap_or_else(|| reply(200, "{}"));
                let mut response = axum::response::Response::new(axum::body::Body::from(next.body));
                *response.status_mut() = StatusCode::from_u16(next.status).unwrap();
                for (k, v) in next.headers {
                    response.headers_mut().insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Self { base, seen, script }
    }

    /// Queues answers, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    pub fn seen(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// One delivery through a connector, as the dispatcher makes it.
pub struct Call<'a> {
    pub kind: &'a str,
    pub config: Value,
    pub credentials: Value,
    pub action: &'a str,
    pub action_config: Value,
    pub payload: Value,
}

pub const EVENT_NAME: &str = "user.created";
pub const DELIVERY_ID: &str = "dlv_01JDCONTRACT0000000000000";

/// Validates the connection and rule as the API would (so defaults are filled in), then makes
/// one attempt against the stub. Returns the verdict and the recorded steps.
pub async fn deliver(call: Call<'_>) -> (Delivered, Vec<Step>) {
    let registry = Registry::default();
    let connector = registry.get(call.kind).unwrap_or_else(|| panic!("no connector {}", call.kind));
    let ctx = ValidationContext { allow_private_destinations: true };
    let mut config = call.config;
    let mut credentials = call.credentials;
    for key in connector.secret_config_keys() {
        if let Some(v) = config.as_object_mut().and_then(|c| c.remove(*key)) {
            credentials[*key] = v;
        }
    }
    let config = connector.validate_config(&config, &ctx).unwrap_or_else(|e| panic!("config rejected: {e:?}"));
    connector.validate_credentials(&credentials, &ctx).unwrap_or_else(|e| panic!("credentials rejected: {e:?}"));
    let action_config = connector.validate_action(call.action, &call.action_config).unwrap_or_else(|e| panic!("action rejected: {e:?}"));
    let ws = WorkspaceId::generate();
    let connection = Connection {
        id: ConnectionId::generate(),
        workspace_id: ws.clone(),
        kind: call.kind.into(),
        name: "contract".into(),
        config,
        credentials_sealed: None,
        signing_secret_sealed: None,
        previous_secret_sealed: None,
        previous_secret_expires_at: None,
        retry_policy: Default::default(),
        timeout_ms: 5_000,
        max_in_flight: 1,
        rate_limit_per_minute: None,
        status: switchyard_core::model::ConnectionStatus::Active,
        inactive: None,
        failing_since: None,
        breaker: Default::default(),
        circuit: Default::default(),
        created_at: 0,
        updated_at: 0,
    };
    let rule = Rule {
        id: RuleId::generate(),
        workspace_id: ws.clone(),
        name: "contract".into(),
        event: EVENT_NAME.into(),
        connection_id: connection.id.clone(),
        action: call.action.into(),
        action_config,
        conditions: None,
        active: true,
        bound_to: None,
        created_at: 0,
        updated_at: 0,
    };
    let event = Event {
        id: EventId::generate(),
        workspace_id: ws,
        event: EVENT_NAME.into(),
        resource: None,
        resource_id: None,
        payload: call.payload.to_string(),
        // 2026-11-23T17:00:00Z
        occurred_at: Some(1_795_453_200_000),
        received_at: 1_795_453_200_000,
        status: EventStatus::Pending,
        test: false,
    };
    let secrets = OpenedSecrets { credentials: Some(credentials), signing_secrets: vec![] };
    let ctx = DeliveryContext {
        delivery_id: DELIVERY_ID,
        attempt: 1,
        event: &event,
        rule: &rule,
        connection: &connection,
        secrets: &secrets,
        timestamp: 1_795_453_200,
        renderer: &switchyard_destinations::sandbox::Renderer::InProcess,
    };
    let sender = Sender::new(true);
    let mut exchange = Exchange::new(&sender, std::time::Duration::from_secs(5), &secrets, &event.payload);
    let verdict = connector.deliver(&ctx, &mut exchange).await;
    (verdict, exchange.steps().to_vec())
}

/// A typical person event.
pub fn person() -> Value {
    json!({"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", "name": "Ada Lovelace", "phone": "+44 20 7946 0000", "id": "u_42", "plan": "pro"})
}

/// Asserts a verdict is a retry (optionally after `secs`) or permanent, with text in its error.
pub fn assert_retry(verdict: &Delivered, after_secs: Option<f64>, rate_limited: bool) {
    let c = verdict.as_ref().expect_err("expected a failure");
    match c.outcome {
        switchyard_destinations::Outcome::Retry { after } => {
            if let Some(secs) = after_secs {
                let got = after.expect("expected a requested wait").as_secs_f64();
                assert!((got - secs).abs() < 1.5, "waited {got}s, expected about {secs}s");
            }
        }
        other => panic!("expected a retry, got {other:?} ({:?})", c.error),
    }
    assert_eq!(c.rate_limited, rate_limited, "rate_limited flag ({:?})", c.error);
}

pub fn assert_permanent(verdict: &Delivered, contains: &str) {
    let c = verdict.as_ref().expect_err("expected a failure");
    assert_eq!(c.outcome, switchyard_destinations::Outcome::Permanent, "{:?}", c.error);
    let e = c.error.as_deref().unwrap_or_default();
    assert!(e.contains(contains), "error {e:?} does not mention {contains:?}");
}

/// Secrets never reach the recorded requests.
pub fn assert_redacted(steps: &[Step], secrets: &[&str]) {
    for s in steps {
        for secret in secrets {
            assert!(!s.request.contains(secret), "a secret leaked into the recorded request:\n{}", s.request);
        }
    }
}
