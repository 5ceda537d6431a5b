//! Generated from the OpenAPI document, so that no endpoint escapes them:
//! - the access matrix: every operation, called by every kind of credential (admin, read-only and
//!   workspace-scoped API keys, a key of another workspace, a publishable key, sessions of each
//!   role and of another workspace), is allowed or refused as its declared `security` says;
//! - the audit: every changing operation, done once, leaves exactly one audit entry, described by
//!   its handler, with no secret in it.

use crate::harness::*;
use axum::http::Method;
use serde_json::{json, Value};
use switchyard_server::oauth::providers::{ClientAuth, Provider, Providers};

/// One operation of the document.
#[derive(Debug, Clone)]
struct Op {
    method: Method,
    /// As documented: `/api/v1/connections/{id}`.
    path: String,
    /// The least workspace role, or `installation`, asked of API keys; None when they are refused.
    api_key: Option<String>,
    session: Option<String>,
    publishable: bool,
    /// The statuses its `responses` document.
    documented: Vec<u16>,
    /// Whether it takes a request body, and the body's documented example.
    has_body: bool,
    example: Option<Value>,
}

async fn operations(app: &TestApp) -> Vec<Op> {
    let (_, doc) = app.call(Method::GET, "/api/v1/openapi.json", None, None).await;
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            let documented = op["responses"].as_object().unwrap().keys().map(|k| k.parse().expect("numeric statuses")).collect();
            let example = op["requestBody"]["content"]["application/json"]["example"].clone();
            let mut o = Op {
                method: method.to_uppercase().parse().unwrap(),
                path: path.clone(),
                api_key: None,
                session: None,
                publishable: false,
                documented,
                has_body: op["requestBody"].is_object(),
                example: (!example.is_null()).then_some(example),
            };
            let security = op["security"].as_array().unwrap_or_else(|| panic!("{method} {path} declares no security"));
            for alternative in security {
                for (scheme, scopes) in alternative.as_object().unwrap() {
                    let scope = scopes[0].as_str().map(str::to_owned);
                    match scheme.as_str() {
                        "api_key" => o.api_key = Some(scope.unwrap_or_else(|| panic!("{method} {path}: api_key names no role"))),
                        "session_token" => {
                            o.session = Some(scope.unwrap_or_else(|| panic!("{method} {path}: session_token names no role")))
                        }
                        "publishable_key" => o.publishable = true,
                        other => panic!("{method} {path}: unknown scheme {other}"),
                    }
                }
            }
            ops.push(o);
        }
    }
    assert!(ops.len() > 40, "the document lists every operation");
    ops
}

fn rank(role: &str) -> u8 {
    match role {
        "viewer" => 0,
        "editor" => 1,
        "admin" => 2,
        other => panic!("unknown role {other}"),
    }
}

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    AdminKey,
    ReadOnlyKey,
    /// A key holding this role in the fixture's workspace.
    KeyIn(&'static str),
    /// A key holding the admin role in another workspace only.
    KeyElsewhere,
    Publishable,
    SessionIn(&'static str),
    SessionElsewhere,
}

const CALLERS: &[Caller] = &[
    Caller::AdminKey,
    Caller::ReadOnlyKey,
    Caller::KeyIn("viewer"),
    Caller::KeyIn("editor"),
    Caller::KeyIn("admin"),
    Caller::KeyElsewhere,
    Caller::Publishable,
    Caller::SessionIn("viewer"),
    Caller::SessionIn("editor"),
    Caller::SessionIn("admin"),
    Caller::SessionElsewhere,
];

impl Op {
    /// Whether the operation concerns the fixture's workspace (in its path, body or query).
    fn names_workspace(&self) -> bool {
        self.path.contains('{') || (self.method == Method::POST && self.path == "/api/v1/sessions") || self.path == "/api/v1/audit-log"
    }

    /// What the declared security says for this caller.
    fn allows(&self, caller: Caller) -> bool {
        let reads = self.method == Method::GET;
        match caller {
            Caller::AdminKey => self.api_key.is_some(),
            Caller::ReadOnlyKey => self.api_key.as_deref().is_some_and(|need| reads || need == "viewer"),
            Caller::KeyIn(role) => self.api_key.as_deref().is_some_and(|need| need != "installation" && rank(role) >= rank(need)),
            Caller::KeyElsewhere => self.api_key.as_deref().is_some_and(|need| need != "installation") && !self.names_workspace(),
            Caller::Publishable => self.publishable,
            Caller::SessionIn(role) => self.session.as_deref().is_some_and(|need| rank(role) >= rank(need)),
            Caller::SessionElsewhere => self.session.is_some() && !self.names_workspace(),
        }
    }
}

/// A workspace with one of everything an operation's path can name, and a credential of each kind.
struct Fixture {
    ws: Workspace,
    connection: String,
    oauth_connection: String,
    rule: String,
    event: String,
    delivery: String,
    /// An event whose delivery waits an hour for its next attempt (its destination is down), for cancels.
    waiting_event: String,
    waiting_delivery: String,
    /// A session that operations on `/sessions/{id}` act on (not a caller).
    session: String,
    publishable_key_id: String,
    /// A read-only key that `DELETE /api-keys/{id}` revokes.
    spare_key: String,
    /// A member (removed, so restoring them changes something) and a console sign-in.
    member: String,
    console_session: String,
    keys: Vec<(Caller, String)>,
    /// Secrets that must never appear in an audit entry.
    secrets: Vec<String>,
}

const CREDENTIAL: &str = "bearer-credential-7f3a9c";

async fn fixture(app: &TestApp, elsewhere: &Workspace, elsewhere_key: &str, elsewhere_session: &str, receiver: &str) -> Fixture {
    let ws = app.workspace("fixture").await;
    // A member as a sign-in through the provider would leave one (the console's tests sign in for real).
    let store = switchyard_store::open(&app.database_url).await.expect("the node's store");
    let who = switchyard_store::SignedIn {
        email: format!("{}@example.com", ws.id.to_lowercase()),
        name: None,
        subject: None,
        role: switchyard_core::model::MemberRole::Admin,
    };
    // A second writer beside the node's: SQLite may answer "locked" at once when both write; retry.
    let mut tries = 0;
    let member = loop {
        let made = async {
            let member = store.member_signed_in(&who, switchyard_core::now_millis()).await?.expect("not removed").id;
            store.set_member_removed(&member, Some(switchyard_core::now_millis())).await.map(|_| member)
        };
        match made.await {
            Ok(member) => break member,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("retrying the member fixture: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    let console_session = sign_in_to_console(app).await;
    let created = app.ok(Method::GET, &format!("/workspaces/{}/publishable-keys", ws.id), None, 200).await;
    let publishable_key_id = created["data"][0]["id"].as_str().unwrap().to_owned();
    let conn = app.webhook(&ws, receiver, json!({"credentials": {"bearer_token": CREDENTIAL}})).await;
    let signing_secret = conn["signing_secret"].as_str().unwrap_or_default().to_owned();
    let oauth = app
        .ok(
            Method::POST,
            &format!("/workspaces/{}/connections", ws.id),
            Some(json!({"type": "hubspot", "name": "crm", "config": {"base_url": receiver}, "credentials": {"access_token": CREDENTIAL}})),
            201,
        )
        .await;
    let rule = app.rule(&ws, &conn, "order.*", json!({})).await;
    app.ok(Method::PUT, &format!("/workspaces/{}/event-types/order.created", ws.id), Some(json!({"description": "An order"})), 200).await;
    app.ok(Method::PUT, &format!("/workspaces/{}/secrets/fixture_secret", ws.id), Some(json!({"value": CREDENTIAL})), 201).await;
    // A blueprint (stored again unchanged when the fixture is made again).
    let blueprint = json!({"version": 1, "name": "fixture-blueprint", "targets": {"workspaces": [ws.id]},
        "connections": {"hook": {"type": "webhook", "name": "managed hook", "config": {"url": receiver}}},
        "rules": {"alerts": {"name": "managed rule", "event": "order.*", "connection": "hook"}}});
    let (status, body) = app.admin(Method::POST, "/blueprints", Some(blueprint)).await;
    assert!(status.is_success(), "{body}");
    app.ok(Method::POST, &format!("/blueprints/fixture-blueprint/apply?workspaces={}", ws.id), None, 200).await;
    // A plan made through the API (each fixture its own, so deleting it in one run leaves the next one's).
    app.ok(
        Method::PUT,
        "/plans/fixture-plan",
        Some(json!({"limits": {"connections": 100}})),
        if app_has_plan(app).await { 200 } else { 201 },
    )
    .await;
    let event = app.emit_ok(&ws, json!({"event": "order.created", "payload": {"n": 1}})).await;
    let deliveries = app.ok(Method::GET, &format!("/workspaces/{}/deliveries", ws.id), None, 200).await;
    let delivery = deliveries["data"][0]["id"].as_str().expect("the event made a delivery").to_owned();
    let down = app
        .webhook(
            &ws,
            &closed_port_url().await,
            json!({"retry_policy": {"max_attempts": 5, "initial_delay_ms": 3_600_000, "max_delay_ms": 3_600_000}}),
        )
        .await;
    app.rule(&ws, &down, "hold.*", json!({})).await;
    let waiting_event = app.emit_ok(&ws, json!({"event": "hold.created", "payload": {}})).await;
    let waiting_delivery = app.event(&waiting_event).await["deliveries"][0]["id"].as_str().expect("a delivery").to_owned();
    let session = app.ok(Method::POST, "/sessions", Some(json!({"workspace_id": ws.id, "role": "viewer"})), 201).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let spare = app.ok(Method::POST, "/api-keys", Some(json!({"name": "spare", "scope": "read_only"})), 201).await;
    let mut keys = vec![(Caller::AdminKey, ADMIN_KEY.to_owned()), (Caller::Publishable, ws.pk.clone())];
    let read_only = app.ok(Method::POST, "/api-keys", Some(json!({"name": "ro", "scope": "read_only"})), 201).await;
    keys.push((Caller::ReadOnlyKey, read_only["key"].as_str().unwrap().to_owned()));
    for role in ["viewer", "editor", "admin"] {
        let k = app
            .ok(
                Method::POST,
                "/api-keys",
                Some(json!({"name": role, "scope": "workspaces", "workspaces": [{"workspace_id": ws.id, "role": role}]})),
                201,
            )
            .await;
        keys.push((Caller::KeyIn(role), k["key"].as_str().unwrap().to_owned()));
        let s = app.ok(Method::POST, "/sessions", Some(json!({"workspace_id": ws.id, "role": role})), 201).await;
        keys.push((Caller::SessionIn(role), s["access_token"].as_str().unwrap().to_owned()));
    }
    keys.push((Caller::KeyElsewhere, elsewhere_key.to_owned()));
    keys.push((Caller::SessionElsewhere, elsewhere_session.to_owned()));
    let _ = elsewhere;
    let mut secrets: Vec<String> = keys.iter().map(|(_, k)| k.clone()).collect();
    secrets.extend([CREDENTIAL.to_owned(), spare["key"].as_str().unwrap().to_owned()]);
    if !signing_secret.is_empty() {
        secrets.push(signing_secret);
    }
    Fixture {
        ws,
        connection: conn["id"].as_str().unwrap().to_owned(),
        oauth_connection: oauth["id"].as_str().unwrap().to_owned(),
        rule: rule["id"].as_str().unwrap().to_owned(),
        event,
        delivery,
        waiting_event,
        waiting_delivery,
        session,
        publishable_key_id,
        spare_key: spare["id"].as_str().unwrap().to_owned(),
        member: member.into_string(),
        console_session,
        keys,
        secrets,
    }
}

impl Fixture {
    fn key(&self, caller: Caller) -> &str {
        &self.keys.iter().find(|(c, _)| *c == caller).expect("a credential of each kind").1
    }

    /// The operation's path with the fixture's ids in it, and its query.
    fn url(&self, op: &Op) -> String {
        let rest = op.path.strip_prefix("/api/v1").unwrap();
        let id = if rest.starts_with("/workspaces/{id}") {
            self.ws.id.clone()
        } else if rest.starts_with("/connections/{id}/reconnect") {
            self.oauth_connection.clone()
        } else if rest.starts_with("/connections/{id}") {
            self.connection.clone()
        } else if rest.starts_with("/rules/{id}") {
            self.rule.clone()
        } else if rest == "/events/{id}/cancel" {
            self.waiting_event.clone()
        } else if rest == "/deliveries/{id}/cancel" {
            self.waiting_delivery.clone()
        } else if rest.starts_with("/events/{id}") {
            self.event.clone()
        } else if rest.starts_with("/deliveries/{id}") {
            self.delivery.clone()
        } else if rest.starts_with("/sessions/{id}") {
            self.session.clone()
        } else if rest.starts_with("/api-keys/{id}") {
            self.spare_key.clone()
        } else if rest.starts_with("/members/{id}") {
            self.member.clone()
        } else if rest.starts_with("/console-sessions/{id}") {
            self.console_session.clone()
        } else if rest.starts_with("/blueprints/{id}") {
            "fixture-blueprint".to_owned()
        } else {
            String::new()
        };
        let mut url = op
            .path
            .replace("{ws}", &self.ws.id)
            .replace("{id}", &id)
            .replace("{key_id}", &self.publishable_key_id)
            .replace("{name}", if rest.starts_with("/plans/") { "fixture-plan" } else { "order.created" })
            .replace("{set}", "lists")
            .replace("{secret}", "fixture_secret");
        assert!(!url.contains('{'), "the matrix does not know how to fill {}", op.path);
        if op.path == "/api/v1/audit-log" {
            url.push_str(&format!("?workspace_id={}", self.ws.id));
        }
        url
    }

    /// A body that makes the operation succeed (for the audit); `{}` where none is known.
    fn body(&self, op: &Op, receiver: &str) -> Option<Value> {
        if op.method == Method::GET || op.method == Method::DELETE {
            return None;
        }
        let ws = &self.ws.id;
        let body = match (op.method.as_str(), op.path.strip_prefix("/api/v1").unwrap()) {
            ("POST", "/workspaces") => json!({"name": "another"}),
            ("POST", "/blueprints") => json!({"version": 1, "name": "made-by-the-matrix"}),
            ("POST", "/blueprints/plan") => json!({"version": 1, "name": "fixture-blueprint", "targets": {"workspaces": [ws]}}),
            ("POST", "/blueprints/{id}/plan") | ("POST", "/blueprints/{id}/apply") => json!({}),
            ("PUT", "/blueprints/{id}/overrides/{ws}") => json!({"overrides": {}}),
            ("PATCH", "/workspaces/{id}") => json!({"name": "renamed", "description": "d"}),
            ("POST", "/workspaces/{id}/publishable-keys") => json!({}),
            ("POST", "/workspaces/{ws}/connections") => {
                json!({"type": "webhook", "name": "new", "config": {"url": receiver}, "credentials": {"bearer_token": CREDENTIAL}})
            }
            ("POST", "/workspaces/{ws}/connections/oauth") => {
                json!({"type": "hubspot", "name": "crm", "config": {"base_url": receiver}, "redirect_to": "https://app.example.com/done"})
            }
            ("PATCH", "/connections/{id}") => json!({"name": "renamed", "credentials": {"bearer_token": CREDENTIAL}}),
            ("POST", "/connections/{id}/rotate-secret") => json!({}),
            ("POST", "/connections/{id}/pause") | ("POST", "/connections/{id}/resume") => json!({}),
            ("POST", "/connections/{id}/reconnect") => json!({"redirect_to": "https://app.example.com/done"}),
            ("POST", "/workspaces/{ws}/rules") => json!({"name": "r", "event": "order.*", "connection_id": self.connection}),
            ("POST", "/workspaces/{ws}/rules/preview") => json!({"connection_id": self.connection, "event": "order.created"}),
            ("PATCH", "/rules/{id}") => json!({"name": "renamed", "active": false}),
            ("POST", "/rules/{id}/test") => json!({}),
            ("PUT", "/workspaces/{ws}/event-types/{name}") => json!({"description": "An order, again"}),
            ("PUT", "/workspaces/{ws}/secrets/{secret}") => json!({"value": CREDENTIAL}),
            ("PUT", "/plans/{name}") => json!({"description": "Again", "limits": {"connections": 50}}),
            ("POST", "/deliveries/{id}/replay") => json!({}),
            ("POST", "/workspaces/{ws}/replay") => json!({"status": "succeeded"}),
            ("POST", "/workspaces/{ws}/cancel") => json!({"status": "pending"}),
            ("POST", "/deliveries/{id}/cancel") | ("POST", "/events/{id}/cancel") => json!({}),
            ("POST", "/sessions") => json!({"workspace_id": ws, "role": "viewer"}),
            ("POST", "/sessions/{id}/refresh") => json!({}),
            ("POST", "/api-keys") => json!({"name": "made", "scope": "workspaces", "workspaces": [{"workspace_id": ws, "role": "viewer"}]}),
            ("POST", "/events") => json!({"event": "order.created", "payload": {}}),
            ("POST", "/workspaces/{ws}/events") => json!({"event": "order.created", "payload": {"total": 42}}),
            ("POST", "/events/bulk") => json!({"events": [{"event": "order.created", "payload": {}}]}),
            ("POST", "/members/{id}/restore") => json!({}),
            ("POST", "/workspaces/{id}/publishable-keys/{key_id}/rotate") => json!({}),
            _ => return None,
        };
        Some(body)
    }
}

/// Whether the fixture's plan exists already (fixtures are made more than once on one node).
async fn app_has_plan(app: &TestApp) -> bool {
    app.admin(Method::GET, "/plans/fixture-plan", None).await.0 == axum::http::StatusCode::OK
}

/// Signs in to the console with the admin key, as its sign-in form does; returns the session's id.
async fn sign_in_to_console(app: &TestApp) -> String {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res =
        client.post(format!("{}/console/sign-in", app.base)).header("origin", &app.base).form(&[("key", ADMIN_KEY)]).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers()["location"], "/console");
    let sessions = app.ok(Method::GET, "/console-sessions", None, 200).await;
    sessions["data"][0]["id"].as_str().unwrap().to_owned()
}

/// Whether an answer is a refusal of the caller (as opposed to anything the handler said after
/// letting them in): 401, 403, or 404 for the workspace or row the path names.
fn refused(status: u16, body: &Value) -> bool {
    let message = body["error"]["message"].as_str().unwrap_or_default();
    let named = ["workspace", "connection", "rule", "event", "delivery", "session"].iter().any(|w| message == format!("{w} not found"));
    assert_ne!(message, "route not found", "the matrix called a path that does not exist");
    matches!(status, 401 | 403) || (status == 404 && named) || (status == 422 && message.contains("no such workspace"))
}

async fn node() -> (TestApp, Receiver) {
    let receiver = Receiver::status(200).await;
    let app = TestApp::spawn_with(|c| {
        c.public_url = Some("http://127.0.0.1:1".into());
        // The matrix calls every route with every credential, faster than any default rate allows:
        // rates are not what it tests (tests/e2e/rates.rs does).
        c.plans.rate_limits = switchyard_server::rates::RateLimits { api_key: None, session: None, publishable_key: None, anonymous: None };
        let hubspot = Provider {
            name: "hubspot".into(),
            client_id: "app".into(),
            client_secret: "client-secret-of-the-app".into(),
            authorize_url: "http://127.0.0.1:1/authorize".into(),
            token_url: "http://127.0.0.1:1/token".into(),
            revoke_url: None,
            scopes: "crm".into(),
            authorize_params: vec![],
            client_auth: ClientAuth::Post,
            metadata_url: None,
            accounts_url: None,
        };
        c.oauth = Providers([("hubspot".to_owned(), hubspot)].into_iter().collect());
    })
    .await;
    (app, receiver)
}

#[tokio::test]
async fn every_operation_allows_and_refuses_every_kind_of_credential_as_declared() {
    let (app, receiver) = node().await;
    let elsewhere = app.workspace("elsewhere").await;
    let key = app
        .ok(
            Method::POST,
            "/api-keys",
            Some(json!({"name": "b", "scope": "workspaces", "workspaces": [{"workspace_id": elsewhere.id, "role": "admin"}]})),
            201,
        )
        .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let session = app.ok(Method::POST, "/sessions", Some(json!({"workspace_id": elsewhere.id, "role": "admin"})), 201).await
        ["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut failures = Vec::new();
    let mut checked = 0;
    for op in operations(&app).await {
        // Refusals first (they change nothing), then the allowed from the least to the most
        // privileged; an operation that removes what it names gets a fresh fixture after each success.
        let mut order: Vec<Caller> = CALLERS.iter().copied().filter(|c| !op.allows(*c)).collect();
        order.extend(CALLERS.iter().copied().filter(|c| op.allows(*c)));
        let mut fx = fixture(&app, &elsewhere, &key, &session, &receiver.url()).await;
        for caller in order {
            let url = fx.url(&op);
            let (status, body) = app.call(op.method.clone(), &url, Some(fx.key(caller)), fx.body(&op, &receiver.url())).await;
            let status = status.as_u16();
            checked += 1;
            if !op.documented.contains(&status) {
                failures.push(format!(
                    "{} {} by {caller:?}: {status} is not among its documented answers {:?}",
                    op.method, op.path, op.documented
                ));
            }
            let expected = op.allows(caller);
            if expected == refused(status, &body) {
                failures.push(format!(
                    "{} {} by {caller:?}: expected {}, got {status} {body}",
                    op.method,
                    op.path,
                    if expected { "allowed" } else { "refused" }
                ));
            }
            if expected && (200..300).contains(&status) && (op.method == Method::DELETE || op.path.ends_with("/refresh")) {
                fx = fixture(&app, &elsewhere, &key, &session, &receiver.url()).await;
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} calls disagree with the document:\n{}", failures.len(), failures.join("\n"));
    app.shutdown().await;
}

#[tokio::test]
async fn every_change_leaves_exactly_one_audit_entry_without_secrets() {
    let (app, receiver) = node().await;
    let elsewhere = app.workspace("elsewhere").await;
    let mut failures = Vec::new();
    let mut checked = 0;
    for op in operations(&app).await {
        let ingestion = op.publishable;
        if op.method == Method::GET || ingestion {
            continue;
        }
        let fx = fixture(&app, &elsewhere, ADMIN_KEY, ADMIN_KEY, &receiver.url()).await;
        let Some(body) = fx.body(&op, &receiver.url()).or_else(|| (op.method == Method::DELETE).then_some(Value::Null)) else {
            failures.push(format!("{} {}: the test knows no body for it (add one)", op.method, op.path));
            continue;
        };
        let before = app.ok(Method::GET, "/audit-log?limit=1", None, 200).await["data"][0]["id"].as_str().map(str::to_owned);
        let mut url = fx.url(&op);
        if op.method == Method::DELETE && op.path.ends_with("/connections/{id}") {
            url.push_str("?force=true");
        }
        let (status, answer) = app.call(op.method.clone(), &url, Some(ADMIN_KEY), (!body.is_null()).then_some(body)).await;
        if !status.is_success() {
            failures.push(format!("{} {}: {status} {answer}", op.method, op.path));
            continue;
        }
        if !op.documented.contains(&status.as_u16()) {
            failures.push(format!("{} {}: {status} is not among its documented answers", op.method, op.path));
        }
        checked += 1;
        let log = app.ok(Method::GET, "/audit-log?limit=200", None, 200).await;
        let new: Vec<&Value> =
            log["data"].as_array().unwrap().iter().take_while(|e| Some(e["id"].as_str().unwrap()) != before.as_deref()).collect();
        let text = serde_json::to_string(&new).unwrap();
        let preview = op.path.ends_with("/preview") || op.path.ends_with("/plan");
        match (preview, new.as_slice()) {
            (true, []) => {}
            (true, _) => failures.push(format!("{} {}: a preview changes nothing, yet left {text}", op.method, op.path)),
            (false, [entry]) => {
                let action = entry["action"].as_str().unwrap_or_default();
                if action.contains(' ') || !action.contains('.') {
                    failures.push(format!("{} {}: described by no handler: {entry}", op.method, op.path));
                }
                if entry["actor"]["kind"] != "admin_key" {
                    failures.push(format!("{} {}: wrong actor {entry}", op.method, op.path));
                }
                if entry["client_addr"] != "127.0.0.1" {
                    failures.push(format!("{} {}: no client address {entry}", op.method, op.path));
                }
            }
            (false, entries) => failures.push(format!("{} {}: {} entries: {text}", op.method, op.path, entries.len())),
        }
        for secret in &fx.secrets {
            if text.contains(secret.as_str()) {
                failures.push(format!("{} {}: a secret is in the log: {text}", op.method, op.path));
            }
        }
        for field in ["key", "access_token", "signing_secret"] {
            if let Some(secret) = answer[field].as_str() {
                if text.contains(secret) {
                    failures.push(format!("{} {}: the answer's {field} is in the log", op.method, op.path));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} changes were checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    app.shutdown().await;
}

/// Puts the fixture's ids where a documented example has placeholder ids.
fn with_fixture_ids(example: &Value, fx: &Fixture) -> Value {
    let replace = |text: String, prefix: &str, id: &str| {
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(prefix) {
            out.push_str(&rest[..at]);
            let tail = &rest[at + prefix.len()..];
            let len = tail.chars().take_while(|c| c.is_ascii_alphanumeric()).count();
            if len == 26 {
                out.push_str(id);
            } else {
                out.push_str(&rest[at..at + prefix.len() + len]);
            }
            rest = &tail[len..];
        }
        out.push_str(rest);
        out
    };
    let text = replace(example.to_string(), "conn_", &fx.connection);
    let text = replace(text, "ws_", &fx.ws.id);
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn every_answer_is_documented_and_every_documented_example_is_accepted() {
    let (app, receiver) = node().await;
    let elsewhere = app.workspace("elsewhere").await;
    let mut failures = Vec::new();
    let ops = operations(&app).await;
    for op in &ops {
        let fx = fixture(&app, &elsewhere, ADMIN_KEY, ADMIN_KEY, &receiver.url()).await;
        let url = fx.url(op);
        let key = if op.publishable { fx.ws.pk.clone() } else { ADMIN_KEY.to_owned() };
        let mut check = |what: &str, status: u16, body: &Value| {
            if !op.documented.contains(&status) {
                failures.push(format!(
                    "{} {} ({what}): {status} {body} is not among its documented answers {:?}",
                    op.method, op.path, op.documented
                ));
            }
        };
        // No credential, and a wrong one.
        let (status, body) = app.call(op.method.clone(), &url, None, None).await;
        check("no credential", status.as_u16(), &body);
        let (status, body) = app.call(op.method.clone(), &url, Some("sk_not_a_key_000000000000000000000"), None).await;
        check("wrong credential", status.as_u16(), &body);
        // A malformed body, where it takes one.
        if op.example.is_some() {
            let res = app
                .client
                .request(op.method.clone(), format!("{}{url}", app.base))
                .bearer_auth(&key)
                .header("content-type", "application/json")
                .body("{\"not json")
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            check("malformed body", status, &body);
        }
        // A list's limit out of range.
        if op.method == Method::GET && op.documented.contains(&422) {
            let sep = if url.contains('?') { '&' } else { '?' };
            let (status, body) = app.call(Method::GET, &format!("{url}{sep}limit=0"), Some(&key), None).await;
            check("limit=0", status.as_u16(), &body);
        }
        // The documented example, with this fixture's ids: accepted as it stands.
        if let Some(example) = &op.example {
            let (status, body) = app.call(op.method.clone(), &url, Some(&key), Some(with_fixture_ids(example, &fx))).await;
            check("its example", status.as_u16(), &body);
            if !(200..300).contains(&status.as_u16()) {
                failures.push(format!("{} {}: its documented example was refused: {status} {body}", op.method, op.path));
            }
        }
    }
    let undocumented: Vec<String> =
        ops.iter().filter(|o| o.has_body && o.example.is_none()).map(|o| format!("{} {}", o.method, o.path)).collect();
    assert!(undocumented.is_empty(), "these take a body but document no example of it: {undocumented:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    app.shutdown().await;
}
