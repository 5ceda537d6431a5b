//! OAuth connections against a real authorization server: the `oidc-provider` package (npm),
//! started from tests/oauth-server. The whole flow (PKCE, single-use state), expiry and refresh,
//! 401-then-refresh, exactly one refresh for many deliveries, invalid_grant and reconnect,
//! revocation on disconnect; and provider quirks (Salesforce, Mailchimp, Zoom server-to-server)
//! against loopback stubs of those vendors' token endpoints.

use crate::harness::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_server::oauth::providers::{ClientAuth, Provider, Providers};

const CLIENT_SECRET: &str = "oauth-test-client-secret-0123456789";

/// The authorization server, stopped with the test.
struct AuthServer {
    child: Child,
    issuer: String,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl AuthServer {
    fn start(callback: &str, access_token_ttl: u64) -> Self {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oauth-server");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "the test OAuth server is not installed: run scripts/test, or `npm ci --prefix tests/oauth-server`"
        );
        let clients = json!([
            {"client_id": "hubspot-app", "client_secret": CLIENT_SECRET, "redirect_uris": [callback], "auth_method": "post"},
            {"client_id": "zoom-app", "client_secret": CLIENT_SECRET, "redirect_uris": [callback], "auth_method": "basic"},
        ]);
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .env("CLIENTS", clients.to_string())
            .env("ACCESS_TOKEN_TTL", access_token_ttl.to_string())
            // Single-use refresh tokens (as Zoom's are): two refreshes at once would kill the grant.
            .env("ROTATE_REFRESH_TOKENS", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let issuer = loop {
            let line = lines.next().expect("the OAuth server prints its address").unwrap();
            if let Some(issuer) = line.strip_prefix("listening ") {
                break issuer.trim().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Self { child, issuer }
    }

    fn provider(&self, name: &str, client_id: &str, auth: ClientAuth) -> Provider {
        Provider {
            name: name.into(),
            client_id: client_id.into(),
            client_secret: CLIENT_SECRET.into(),
            authorize_url: format!("{}/auth", self.issuer),
            token_url: format!("{}/token", self.issuer),
            revoke_url: Some(format!("{}/token/revocation", self.issuer)),
            scopes: "openid offline_access".into(),
            authorize_params: vec![("prompt".into(), "consent".into())],
            client_auth: auth,
            metadata_url: None,
            accounts_url: None,
        }
    }

    async fn counts(&self) -> Value {
        reqwest::get(format!("{}/test/counts", self.issuer)).await.unwrap().json().await.unwrap()
    }

    async fn revoke_grants(&self) {
        reqwest::Client::new().post(format!("{}/test/revoke-grants", self.issuer)).send().await.unwrap();
    }

    /// Revokes one access token at the provider (as an admin would).
    async fn revoke_access_token(&self, token: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/token/revocation", self.issuer))
            .form(&[("token", token), ("client_id", "hubspot-app"), ("client_secret", CLIENT_SECRET)])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
}

/// A port nothing listens on yet, so the node's public URL (the OAuth callback) is known before
/// it starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A HubSpot stand-in that accepts a bearer token only if the authorization server says it is
/// live (its userinfo endpoint), and records the tokens it saw.
#[derive(Clone)]
struct Vendor {
    base: String,
    seen: Arc<Mutex<Vec<(String, u16)>>>,
}

impl Vendor {
    async fn start(issuer: &str) -> Self {
        let seen: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
        let (recorded, userinfo) = (seen.clone(), format!("{issuer}/me"));
        let client = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, uri: axum::http::Uri| {
            let (recorded, userinfo, client) = (recorded.clone(), userinfo.clone(), client.clone());
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let live =
                    client.get(&userinfo).header("authorization", &auth).send().await.map(|r| r.status().is_success()).unwrap_or(false);
                let status = if live { 200 } else { 401 };
                recorded.lock().unwrap().push((auth.trim_start_matches("Bearer ").to_owned(), status));
                let body = if uri.path().ends_with("/batch/upsert") {
                    r#"{"status":"COMPLETE","results":[{"id":"101"}]}"#
                } else if live {
                    "{}"
                } else {
                    r#"{"status":"error","message":"Authentication credentials not found.","category":"INVALID_AUTHENTICATION"}"#
                };
                (axum::http::StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Self { base, seen }
    }

    fn seen(&self) -> Vec<(String, u16)> {
        self.seen.lock().unwrap().clone()
    }
}

/// The product's page the browser returns to.
async fn product_page() -> String {
    let app = axum::Router::new().fallback(|| async { "back in the product" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/integrations", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    base
}

/// Follows an authorize URL like a browser (cookies, redirects) and returns the query the
/// product page was given.
async fn browse(authorize_url: &str) -> BTreeMap<String, String> {
    let browser = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::limited(20)).build().unwrap();
    let landed = browser.get(authorize_url).send().await.unwrap();
    assert!(landed.status().is_success(), "the flow ended at {} with {}", landed.url(), landed.status());
    landed.url().query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

async fn oauth_app(auth: &AuthServer, port: u16, providers: Vec<Provider>) -> TestApp {
    TestApp::spawn_with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.public_url = Some(format!("http://127.0.0.1:{port}"));
        c.oauth = Providers(providers.into_iter().map(|p| (p.name.clone(), p)).collect());
        let _ = auth;
    })
    .await
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_oauth_life_of_a_connection_against_a_real_authorization_server() {
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/oauth/callback");
    let auth = AuthServer::start(&callback, 4);
    let app = oauth_app(&auth, port, vec![auth.provider("hubspot", "hubspot-app", ClientAuth::Post)]).await;
    let vendor = Vendor::start(&auth.issuer).await;
    let ws = app.workspace("oauth").await;
    let product = product_page().await;

    // 1. Connect: authorize URL with PKCE S256 and a state; the browser comes back with the id.
    let started = app
        .ok(
            Method::POST,
            &format!("/workspaces/{}/connections/oauth", ws.id),
            Some(json!({"type": "hubspot", "name": "crm", "config": {"base_url": vendor.base}, "redirect_to": product})),
            201,
        )
        .await;
    let authorize_url = started["authorize_url"].as_str().unwrap().to_owned();
    let params: BTreeMap<String, String> = url::Url::parse(&authorize_url).unwrap().query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["redirect_uri"], callback);
    assert!(params["state"].len() >= 32 && params["code_challenge"].len() == 43, "{params:?}");
    let back = browse(&authorize_url).await;
    let conn_id = back.get("connection_id").unwrap_or_else(|| panic!("no connection: {back:?}")).clone();
    let conn = app.ok(Method::GET, &format!("/connections/{conn_id}"), None, 200).await;
    assert_eq!(
        (conn["type"].as_str(), conn["status"].as_str(), conn["has_credentials"].as_bool()),
        (Some("hubspot"), Some("active"), Some(true))
    );
    assert_eq!(auth.counts().await["authorization_code"], 1);

    // The state works once: replaying the callback is refused.
    let replay = format!("http://127.0.0.1:{port}/oauth/callback?code=x&state={}", params["state"]);
    let r = reqwest::get(&replay).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("expired or was already used"));

    app.rule(&ws, &conn, "user.created", json!({"action": "add_to_list", "action_config": {"id": "7"}})).await;
    let emit = |n: usize| {
        let (app, ws) = (&app, &ws);
        async move {
            let mut ids = Vec::new();
            for i in 0..n {
                ids.push(app.emit_ok(ws, json!({"event": "user.created", "payload": {"email": format!("u{i}@example.com")}})).await);
            }
            ids
        }
    };

    // 2. A delivery uses the access token.
    let first = emit(1).await;
    app.wait_event(&first[0], "completed").await;
    let token = vendor.seen()[0].0.clone();
    assert!(vendor.seen().iter().all(|(_, s)| *s == 200));

    // 3. 401, then refresh, then success: the provider revoked the token before it expired.
    auth.revoke_access_token(&token).await;
    let second = emit(1).await;
    let event = app.wait_event(&second[0], "completed").await;
    let delivery = app.delivery(event["deliveries"][0]["id"].as_str().unwrap()).await;
    assert_eq!(delivery["attempt_count"], 1, "a refreshed retry is the same attempt: {delivery}");
    let request = delivery["attempts"][0]["request"].as_str().unwrap();
    assert!(request.contains("HTTP 401: the access token was refreshed"), "{request}");
    assert!(!request.contains(&token), "a token in the attempt record");
    assert_eq!(auth.counts().await["refresh_token"], 1);

    // 4. Expiry: once the token is old, many deliveries at once cause exactly one refresh.
    tokio::time::sleep(Duration::from_millis(4_200)).await;
    let many = emit(12).await;
    for id in &many {
        let e = app.wait_event(id, "completed").await;
        assert_eq!(e["deliveries"][0]["attempt_count"], 1, "{e}");
    }
    let counts = auth.counts().await;
    assert_eq!(counts["refresh_token"], 2, "one refresh for twelve deliveries: {counts}");
    assert_eq!(counts["refresh_failures"], 0, "{counts}");
    let after_expiry: Vec<_> = vendor.seen().into_iter().skip(3).collect();
    assert!(after_expiry.iter().all(|(_, s)| *s == 200), "an expired token was sent: {after_expiry:?}");

    // 5. invalid_grant: the user removed the app at the provider. The connection needs
    // reconnecting, and its deliveries wait without spending attempts.
    auth.revoke_grants().await;
    tokio::time::sleep(Duration::from_millis(4_200)).await;
    let waiting = emit(2).await;
    wait_until("the connection needs reauthorisation", async || {
        app.ok(Method::GET, &format!("/connections/{conn_id}"), None, 200).await["status"] == "needs_reauth"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in &waiting {
        let e = app.event(id).await;
        let d = &e["deliveries"][0];
        assert_eq!(d["attempt_count"], 0, "waiting for reauthorisation spent an attempt: {e}");
        assert_ne!(d["status"], "succeeded");
    }

    // 6. Reconnect: the same connection, new tokens, and the waiting deliveries go out.
    let started = app.ok(Method::POST, &format!("/connections/{conn_id}/reconnect"), Some(json!({"redirect_to": product})), 201).await;
    let back = browse(started["authorize_url"].as_str().unwrap()).await;
    assert_eq!(back.get("connection_id"), Some(&conn_id), "{back:?}");
    assert_eq!(app.ok(Method::GET, &format!("/connections/{conn_id}"), None, 200).await["status"], "active");
    for id in &waiting {
        let e = app.wait_event(id, "completed").await;
        assert_eq!(e["deliveries"][0]["attempt_count"], 1, "{e}");
    }

    // 7. Disconnect revokes the tokens at the provider.
    let revoked_before = auth.counts().await["grants_revoked"].as_u64().unwrap();
    app.ok(Method::DELETE, &format!("/connections/{conn_id}?force=true"), None, 204).await;
    wait_until("the provider revoked the grant", async || auth.counts().await["grants_revoked"].as_u64().unwrap() > revoked_before).await;

    // Nothing of the tokens is in the database.
    let stored = database_contents(&app).await;
    for (token, _) in vendor.seen() {
        assert!(!stored.contains(&token), "an access token is stored in the clear");
    }
    assert!(!stored.contains(CLIENT_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_or_tampered_flow_returns_an_error_and_creates_nothing() {
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/oauth/callback");
    let auth = AuthServer::start(&callback, 3600);
    let app = oauth_app(&auth, port, vec![auth.provider("hubspot", "hubspot-app", ClientAuth::Post)]).await;
    let ws = app.workspace("denied").await;
    let product = product_page().await;
    let start = || {
        let (app, ws, product) = (&app, &ws, product.clone());
        async move {
            let v = app
                .ok(
                    Method::POST,
                    &format!("/workspaces/{}/connections/oauth", ws.id),
                    Some(json!({"type": "hubspot", "name": "crm", "redirect_to": product})),
                    201,
                )
                .await;
            let url = url::Url::parse(v["authorize_url"].as_str().unwrap()).unwrap();
            url.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned()
        }
    };
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // The user said no at the provider.
    let state = start().await;
    let r = no_redirects.get(format!("{callback}?error=access_denied&state={state}")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&product) && location.contains("error=access_denied"), "{location}");

    // A made-up code: the provider refuses it, and the product hears so.
    let state = start().await;
    let r = no_redirects.get(format!("{callback}?code=forged&state={state}")).send().await.unwrap();
    assert!(r.headers()["location"].to_str().unwrap().contains("error=token_exchange_failed"));

    // An unknown state is not followed anywhere.
    let r = no_redirects.get(format!("{callback}?code=x&state=not-a-state")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let listed = app.ok(Method::GET, &format!("/workspaces/{}/connections", ws.id), None, 200).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 0);

    // Checked up front: a provider without an app, a type without OAuth, a bad redirect.
    for (body, field) in [
        (json!({"type": "zoom", "name": "z", "redirect_to": product}), "type"),
        (json!({"type": "webhook", "name": "w", "redirect_to": product}), "type"),
        (json!({"type": "hubspot", "name": "h", "redirect_to": "javascript:alert(1)"}), "redirect_to"),
        (json!({"type": "hubspot", "name": "h", "redirect_to": product, "config": {"nope": 1}}), "config.nope"),
    ] {
        let (status, v) = app.admin(Method::POST, &format!("/workspaces/{}/connections/oauth", ws.id), Some(body)).await;
        assert_eq!(status.as_u16(), 422, "{v}");
        assert_eq!(v["error"]["details"][0]["field"], field, "{v}");
    }
}

/// A token endpoint (and metadata) that answers as one vendor does, recording the forms it got.
async fn vendor_token_endpoint(answer: Value, extra: Value) -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let recorded = got.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, uri: axum::http::Uri, body: String| {
        let (recorded, answer, extra) = (recorded.clone(), answer.clone(), extra.clone());
        async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            recorded.lock().unwrap().push((format!("{}?{}", uri.path(), uri.query().unwrap_or_default()), format!("{auth}|{body}")));
            let reply = if uri.path().ends_with("/token") { answer } else { extra };
            axum::Json(reply)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (base, got)
}

fn stub_provider(name: &str, base: &str) -> Provider {
    Provider {
        name: name.into(),
        client_id: format!("{name}-id"),
        client_secret: CLIENT_SECRET.into(),
        authorize_url: format!("{base}/authorize"),
        token_url: format!("{base}/token"),
        revoke_url: None,
        scopes: String::new(),
        authorize_params: vec![],
        client_auth: ClientAuth::Post,
        metadata_url: Some(format!("{base}/metadata")),
        accounts_url: None,
    }
}

/// Starts a flow and plays the provider's redirect back with a code.
async fn complete_with_code(app: &TestApp, ws: &Workspace, kind: &str, port: u16) -> BTreeMap<String, String> {
    let product = product_page().await;
    let v = app
        .ok(
            Method::POST,
            &format!("/workspaces/{}/connections/oauth", ws.id),
            Some(json!({"type": kind, "name": kind, "redirect_to": product})),
            201,
        )
        .await;
    let state =
        url::Url::parse(v["authorize_url"].as_str().unwrap()).unwrap().query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let landed = reqwest::get(format!("http://127.0.0.1:{port}/oauth/callback?code=the-code&state={state}")).await.unwrap();
    landed.url().query_pairs().into_owned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_quirks_salesforce_instance_url_and_mailchimp_data_centre() {
    let (sf_base, sf_got) = vendor_token_endpoint(
        json!({"access_token": "00Dsf!token", "refresh_token": "sf-refresh", "instance_url": "http://127.0.0.1:9"}),
        json!({}),
    )
    .await;
    let (mc_base, mc_got) = vendor_token_endpoint(
        json!({"access_token": "mc-token-123", "expires_in": 0, "scope": null}),
        json!({"dc": "us6", "api_endpoint": "http://127.0.0.1:8", "login_url": "https://login.mailchimp.com"}),
    )
    .await;
    let port = free_port();
    let app = TestApp::spawn_with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.public_url = Some(format!("http://127.0.0.1:{port}/"));
        c.oauth = Providers(
            [
                ("salesforce".to_owned(), stub_provider("salesforce", &sf_base)),
                ("mailchimp".to_owned(), stub_provider("mailchimp", &mc_base)),
            ]
            .into(),
        );
    })
    .await;
    let ws = app.workspace("quirks").await;

    let back = complete_with_code(&app, &ws, "salesforce", port).await;
    let conn = app.ok(Method::GET, &format!("/connections/{}", back["connection_id"]), None, 200).await;
    assert_eq!(conn["config"]["instance_url"], "http://127.0.0.1:9", "the instance URL comes from the token answer");
    let form = sf_got.lock().unwrap()[0].1.clone();
    for part in [
        "grant_type=authorization_code",
        "code=the-code",
        "code_verifier=",
        "client_id=salesforce-id",
        &format!("redirect_uri=http%3A%2F%2F127.0.0.1%3A{port}%2Foauth%2Fcallback"),
    ] {
        assert!(form.contains(part), "{part} missing from {form}");
    }

    let back = complete_with_code(&app, &ws, "mailchimp", port).await;
    let conn = app.ok(Method::GET, &format!("/connections/{}", back["connection_id"]), None, 200).await;
    assert_eq!(conn["config"]["base_url"], "http://127.0.0.1:8", "the API endpoint comes from the metadata");
    let calls = mc_got.lock().unwrap().clone();
    assert_eq!(calls[1].0, "/metadata?");
    assert!(calls[1].1.starts_with("OAuth mc-token-123|"), "the metadata is asked with the new token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoom_server_to_server_credentials_get_their_own_tokens() {
    let (token_base, token_calls) =
        vendor_token_endpoint(json!({"access_token": "zoom-s2s-token", "token_type": "bearer", "expires_in": 3599}), json!({})).await;
    let zoom = Receiver::start(|_, _| {
        Reply::WithHeaders(201, vec![("content-type", "application/json".into())], r#"{"registrant_id":"r1"}"#.into())
    })
    .await;
    let app = TestApp::spawn_with(|c| c.zoom_token_url = format!("{token_base}/oauth/token")).await;
    let ws = app.workspace("zoom").await;
    let conn = app
        .ok(
            Method::POST,
            &format!("/workspaces/{}/connections", ws.id),
            Some(json!({"type": "zoom", "name": "webinars", "config": {"base_url": format!("http://{}", zoom.addr)},
                        "credentials": {"account_id": "acct-1", "client_id": "s2s-client", "client_secret": "s2s-secret-value"}})),
            201,
        )
        .await;
    app.rule(&ws, &conn, "*", json!({"action": "add_webinar_registrant", "action_config": {"id": "900"}})).await;
    for i in 0..3 {
        let id = app.emit_ok(&ws, json!({"event": "signup", "payload": {"email": format!("p{i}@example.com"), "first_name": "P"}})).await;
        app.wait_event(&id, "completed").await;
    }
    let calls = token_calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "one token serves until it nears expiry: {calls:?}");
    assert_eq!(calls[0].0, "/oauth/token?grant_type=account_credentials&account_id=acct-1");
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("s2s-client:s2s-secret-value");
    assert!(calls[0].1.starts_with(&format!("Basic {basic}|")), "{calls:?}");
    let sent = zoom.all();
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|r| r.headers["authorization"] == "Bearer zoom-s2s-token"));
    assert_eq!(sent[0].path, "/v2/webinars/900/registrants");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_refresh_an_expired_token_once_between_them() {
    let first_port = free_port();
    let callback = format!("http://127.0.0.1:{first_port}/oauth/callback");
    let auth = AuthServer::start(&callback, 3);
    let provider = auth.provider("hubspot", "hubspot-app", ClientAuth::Post);
    let first = oauth_app(&auth, first_port, vec![provider.clone()]).await;
    if first.database_url.starts_with("sqlite") {
        return; // the embedded store has one node; the PostgreSQL pass runs this
    }
    let (shared, key) = (first.database_url.clone(), first.master_key.clone());
    let second = TestApp::spawn_with(|c| {
        c.database_url = shared;
        c.master_key = Some(key);
        c.oauth = Providers([("hubspot".to_owned(), provider)].into());
    })
    .await;
    let vendor = Vendor::start(&auth.issuer).await;
    let ws = first.workspace("cluster").await;
    let started = first
        .ok(
            Method::POST,
            &format!("/workspaces/{}/connections/oauth", ws.id),
            Some(json!({"type": "hubspot", "name": "crm", "config": {"base_url": vendor.base}, "redirect_to": product_page().await})),
            201,
        )
        .await;
    let conn_id = browse(started["authorize_url"].as_str().unwrap()).await["connection_id"].clone();
    let conn = first.ok(Method::GET, &format!("/connections/{conn_id}"), None, 200).await;
    first.rule(&ws, &conn, "*", json!({"action": "add_to_list", "action_config": {"id": "7"}})).await;
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let mut ids = Vec::new();
    for i in 0..16 {
        let node = if i % 2 == 0 { &first } else { &second };
        ids.push(node.emit_ok(&ws, json!({"event": "e", "payload": {"email": format!("n{i}@example.com")}})).await);
    }
    for id in &ids {
        let e = first.wait_event(id, "completed").await;
        assert_eq!(e["deliveries"][0]["attempt_count"], 1, "{e}");
    }
    let counts = auth.counts().await;
    assert_eq!(counts["refresh_token"], 1, "two nodes, one refresh: {counts}");
    assert_eq!(counts["refresh_failures"], 0, "a single-use refresh token was used twice: {counts}");
    assert!(vendor.seen().iter().all(|(_, s)| *s == 200), "{:?}", vendor.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_rotating_tokens_are_replaced_on_each_refresh_until_slack_refuses_them() {
    // Slack's token endpoint with rotation on: each refresh token works once, and errors come as
    // HTTP 200 with ok: false.
    let forms: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorded = forms.clone();
    let app_router = axum::Router::new()
        .route(
            "/api/oauth.v2.access",
            axum::routing::post(move |body: String| {
                let recorded = recorded.clone();
                async move {
                    recorded.lock().unwrap().push(body.clone());
                    let answer = if body.contains("grant_type=authorization_code") {
                        json!({"ok": true, "access_token": "xoxe.xoxb-1", "refresh_token": "xoxe-1-r1", "expires_in": 2, "token_type": "bot"})
                    } else if body.contains("refresh_token=xoxe-1-r1") {
                        json!({"ok": true, "access_token": "xoxe.xoxb-2", "refresh_token": "xoxe-1-r2", "expires_in": 2, "token_type": "bot"})
                    } else {
                        json!({"ok": false, "error": "invalid_refresh_token"})
                    };
                    axum::Json(answer)
                }
            }),
        )
        .route(
            "/api/chat.postMessage",
            axum::routing::post(|headers: axum::http::HeaderMap| async move {
                let token = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                axum::Json(if token.starts_with("Bearer xoxe.xoxb-") { json!({"ok": true}) } else { json!({"ok": false, "error": "invalid_auth"}) })
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slack = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app_router).await.ok() });

    let port = free_port();
    let provider = Provider {
        token_url: format!("{slack}/api/oauth.v2.access"),
        authorize_url: format!("{slack}/oauth/v2/authorize"),
        ..stub_provider("slack", &slack)
    };
    let app = TestApp::spawn_with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.public_url = Some(format!("http://127.0.0.1:{port}"));
        c.oauth = Providers([("slack".to_owned(), provider)].into());
    })
    .await;
    let ws = app.workspace("slack").await;
    let product = product_page().await;
    let v = app
        .ok(
            Method::POST,
            &format!("/workspaces/{}/connections/oauth", ws.id),
            Some(json!({"type": "slack", "name": "team", "config": {"base_url": slack}, "redirect_to": product})),
            201,
        )
        .await;
    let state =
        url::Url::parse(v["authorize_url"].as_str().unwrap()).unwrap().query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let landed = reqwest::get(format!("http://127.0.0.1:{port}/oauth/callback?code=c1&state={state}")).await.unwrap();
    let conn_id = landed.url().query_pairs().find(|(k, _)| k == "connection_id").unwrap().1.into_owned();
    let conn = app.ok(Method::GET, &format!("/connections/{conn_id}"), None, 200).await;
    // No rate limit, so the three messages go out as fast as the test sends them.
    app.ok(Method::PATCH, &format!("/connections/{conn_id}"), Some(json!({"rate_limit_per_minute": null})), 200).await;
    app.rule(&ws, &conn, "*", json!({"action": "send_message", "action_config": {"channel": "C1", "template": "hi"}})).await;

    let first = app.emit_ok(&ws, json!({"event": "a", "payload": {}})).await;
    app.wait_event(&first, "completed").await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let second = app.emit_ok(&ws, json!({"event": "b", "payload": {}})).await;
    app.wait_event(&second, "completed").await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let third = app.emit_ok(&ws, json!({"event": "c", "payload": {}})).await;
    wait_until("Slack's refusal marks the connection", async || {
        app.ok(Method::GET, &format!("/connections/{conn_id}"), None, 200).await["status"] == "needs_reauth"
    })
    .await;
    assert_eq!(app.event(&third).await["deliveries"][0]["attempt_count"], 0);

    let forms = forms.lock().unwrap().clone();
    assert_eq!(forms.len(), 3, "{forms:?}");
    assert!(forms[1].contains("grant_type=refresh_token") && forms[1].contains("refresh_token=xoxe-1-r1"), "{}", forms[1]);
    assert!(forms[2].contains("refresh_token=xoxe-1-r2"), "the rotated refresh token was stored and used: {}", forms[2]);
}
