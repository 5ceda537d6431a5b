//! The server side of the embedded pages: launch URLs, the pages' headers and assets, the session's
//! own view of itself, event types, the dashboard's figures, rule previews, and replay by event
//! name; each across workspaces and roles.

use crate::harness::*;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

async fn mint(app: &TestApp, body: Value) -> Value {
    app.ok(Method::POST, "/sessions", Some(body), 201).await
}

async fn session(app: &TestApp, ws: &Workspace, role: &str) -> String {
    mint(app, json!({"workspace_id": ws.id, "role": role})).await["access_token"].as_str().unwrap().to_owned()
}

async fn get_page(app: &TestApp, url: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let res = app.client.get(url).send().await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    (status, headers, res.text().await.unwrap())
}

#[tokio::test]
async fn a_launch_url_opens_the_pages_once_with_the_session_s_frame_policy() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("acme").await;
    let before = switchyard_core::now_millis();
    let s = mint(
        &app,
        json!({"workspace_id": ws.id, "role": "editor", "allowed_origins": ["https://app.example.com", "http://localhost:3000"],
               "launch_page": "events?status=failed", "launch_ttl_seconds": 20,
               "branding": {"name": "Acme <script>alert(1)</script>", "accent_color": "#0b7285"}}),
    )
    .await;
    let url = s["launch_url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/embed/launch/lt_", app.base)), "{url}");
    let expires = chrono::DateTime::parse_from_rfc3339(s["launch_expires_at"].as_str().unwrap()).unwrap().timestamp_millis();
    assert!((before + 19_000..=before + 21_000 + 2_000).contains(&expires), "{expires} vs {before}");
    assert!(!url.contains(s["access_token"].as_str().unwrap()));

    let (status, headers, body) = get_page(&app, url).await;
    assert_eq!(status, StatusCode::OK);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors https://app.example.com http://localhost:3000"), "{csp}");
    assert!(csp.contains("script-src 'self'") && csp.contains("style-src 'self'") && csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers.get("set-cookie").is_none());
    assert!(body.contains("data-page=\"events?status=failed\""), "{body}");
    assert!(body.contains("Acme &lt;script&gt;alert(1)&lt;/script&gt;"), "{body}");
    assert!(!body.contains("<script>alert"), "{body}");
    // No inline script or style: every script and stylesheet is a file of this server.
    assert_eq!(body.matches("<script").count(), body.matches("<script src=\"/embed/assets/").count(), "{body}");
    assert!(!body.contains("style="), "{body}");

    // Used once: a second load is refused, in words.
    let (status, headers, body) = get_page(&app, url).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(body.contains("already used") && body.contains("new session"), "{body}");
    assert!(headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors https://app.example.com"));
    let (status, _, body) = get_page(&app, &format!("{}/embed/launch/lt_nope", app.base)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("not valid"), "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_expired_launch_says_so_and_a_session_without_origins_cannot_be_framed() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("acme").await;
    // A launch token whose 15 seconds ran out, written as the server writes it.
    let store = switchyard_store::open(&app.database_url).await.unwrap();
    let now = switchyard_core::now_millis();
    let session = switchyard_core::model::Session {
        id: switchyard_core::ids::SessionId::generate(),
        workspace_id: switchyard_core::ids::WorkspaceId::parse(&ws.id).unwrap(),
        role: switchyard_core::model::SessionRole::Viewer,
        scopes: vec![],
        allowed_origins: vec!["https://app.example.com".into()],
        external_user_id: None,
        branding: None,
        resource: None,
        expires_at: now + 600_000,
        created_at: now - 20_000,
    };
    let launch = switchyard_store::NewLaunch {
        token_hash: switchyard_core::crypto::hash_token("lt_expired_launch_token_0123456789"),
        page: "dashboard".into(),
        expires_at: now - 5_000,
    };
    store.create_session(&session, "st_digest_unused", Some(&launch)).await.unwrap();
    let (status, _, body) = get_page(&app, &format!("{}/embed/launch/lt_expired_launch_token_0123456789", app.base)).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(body.contains("expired"), "{body}");

    let s = mint(&app, json!({"workspace_id": ws.id, "role": "viewer"})).await;
    let (status, headers, _) = get_page(&app, s["launch_url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-security-policy"].to_str().unwrap().ends_with("frame-ancestors 'none'"));
    app.shutdown().await;
}

#[tokio::test]
async fn launch_settings_are_checked() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("acme").await;
    for (extra, field) in [
        (json!({"launch_page": "settings"}), "launch_page"),
        (json!({"launch_page": "events/../../admin"}), "launch_page"),
        (json!({"launch_ttl_seconds": 5}), "launch_ttl_seconds"),
        (json!({"launch_ttl_seconds": 121}), "launch_ttl_seconds"),
        (json!({"branding": {"accent_color": "red"}}), "branding.accent_color"),
        (json!({"branding": {"logo_url": "javascript:alert(1)"}}), "branding.logo_url"),
    ] {
        let mut body = json!({"workspace_id": ws.id, "role": "viewer"});
        merge(&mut body, extra.clone());
        let (status, v) = app.admin(Method::POST, "/sessions", Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{extra} → {v}");
        assert_eq!(v["error"]["details"][0]["field"], field, "{v}");
    }
    // A logo's origin is the only other place images may come from.
    let s = mint(&app, json!({"workspace_id": ws.id, "role": "viewer", "branding": {"logo_url": "https://cdn.example.com/acme/logo.png"}}))
        .await;
    let (_, headers, body) = get_page(&app, s["launch_url"].as_str().unwrap()).await;
    assert!(headers["content-security-policy"].to_str().unwrap().contains("img-src 'self' data: https://cdn.example.com;"));
    assert!(body.contains("src=\"https://cdn.example.com/acme/logo.png\""));
    app.shutdown().await;
}

#[tokio::test]
async fn assets_are_served_compressed_cached_and_revalidated() {
    let app = TestApp::spawn().await;
    let res = app.client.get(format!("{}/embed.js", app.base)).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-encoding"], "gzip");
    assert_eq!(res.headers()["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(res.headers()["cross-origin-resource-policy"], "cross-origin");
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let res = app.client.get(format!("{}/embed.js", app.base)).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    // The versioned name the pages link is cached for good; any other is revalidated.
    let hash = etag.trim_matches('"');
    let res = app.client.get(format!("{}/embed/assets/embed.js", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let ws = app.workspace("acme").await;
    let s = mint(&app, json!({"workspace_id": ws.id, "role": "viewer"})).await;
    let (_, _, body) = get_page(&app, s["launch_url"].as_str().unwrap()).await;
    let app_js = body.split("src=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let res = app.client.get(format!("{}{app_js}", app.base)).send().await.unwrap();
    assert_eq!(res.headers()["cache-control"], "public, max-age=31536000, immutable");
    let res = app.client.get(format!("{}/embed/assets/app.js?v={hash}", app.base)).send().await.unwrap();
    assert_eq!(res.headers()["cache-control"], "no-cache");
    let text = res.text().await.unwrap();
    assert!(text.contains("switchyard:"));
    app.shutdown().await;
}

#[tokio::test]
async fn a_session_reads_itself_and_its_own_pages_may_call_from_the_server_s_origin() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("acme").await;
    let s = mint(
        &app,
        json!({"workspace_id": ws.id, "role": "viewer", "allowed_origins": ["https://app.example.com"], "scopes": ["events.payload:read"]}),
    )
    .await;
    let token = s["access_token"].as_str().unwrap();
    let (status, me) = app.call(Method::GET, "/api/v1/sessions/current", Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["workspace_id"], ws.id);
    assert_eq!(me["workspace_name"], "acme");
    assert_eq!(me["role"], "viewer");
    assert_eq!(me["sees_payloads"], true);
    assert_eq!(me["session_id"], s["session_id"]);
    let (status, _) = app.admin(Method::GET, "/sessions/current", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The pages call from the server's own origin; a foreign one is still refused.
    let own = app.base.clone();
    let with_origin = |origin: &str| {
        app.client.get(format!("{}/api/v1/workspaces/{}/rules", app.base, ws.id)).bearer_auth(token).header("origin", origin).send()
    };
    assert_eq!(with_origin(&own).await.unwrap().status(), StatusCode::OK);
    assert_eq!(with_origin("https://app.example.com").await.unwrap().status(), StatusCode::OK);
    assert_eq!(with_origin("https://evil.example").await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(with_origin("null").await.unwrap().status(), StatusCode::FORBIDDEN);
    app.shutdown().await;
}

async fn event_types(app: &TestApp, token: &str, ws: &Workspace) -> Value {
    let (status, v) = app.call(Method::GET, &format!("/api/v1/workspaces/{}/event-types", ws.id), Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

#[tokio::test]
async fn event_types_are_learned_from_ingestion_and_declared_through_the_api() {
    let app = TestApp::spawn().await;
    let a = app.workspace("a").await;
    let b = app.workspace("b").await;
    for plan in ["free", "pro", "team"] {
        app.emit_ok(&a, json!({"event": "user.created", "payload": {"plan": plan}})).await;
    }
    app.emit_ok(&a, json!({"event": "invoice.paid", "payload": {"amount": 12}})).await;
    app.emit_ok(&b, json!({"event": "b.only", "payload": {}})).await;
    let editor = session(&app, &a, "editor").await;
    let mut listed = Value::Null;
    for _ in 0..50 {
        listed = event_types(&app, &editor, &a).await;
        if listed["data"].as_array().unwrap().iter().any(|t| t["name"] == "user.created" && t["received_count"] == 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["invoice.paid", "user.created"], "{listed}");
    let created = &listed["data"][1];
    assert_eq!(created["received_count"], 3);
    assert_eq!(created["sample"], json!({"plan": "team"}), "the latest payload is the sample");
    assert_eq!(created["declared"], false);
    assert!(created["last_seen_at"].is_string() && created["first_seen_at"].is_string());

    // A viewer without the payload scope sees names and counts, not payloads.
    let viewer = session(&app, &a, "viewer").await;
    let seen = event_types(&app, &viewer, &a).await;
    assert!(seen["data"][1]["sample"].is_null() && seen["data"][1]["received_count"] == 3, "{seen}");

    // Declaring: description, schema, example; checked.
    let path = format!("/api/v1/workspaces/{}/event-types/order.shipped", a.id);
    let declaration = json!({"description": "An order left the warehouse", "json_schema": {"type": "object", "required": ["order_id"]}, "example": {"order_id": "o-1"}});
    let (status, v) = app.call(Method::PUT, &path, Some(&editor), Some(declaration)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["declared"], true);
    assert_eq!(v["received_count"], 0);
    assert_eq!(v["example"], json!({"order_id": "o-1"}));
    for (bad, field) in [
        (json!({"json_schema": "object"}), "json_schema"),
        (json!({"example": [1]}), "example"),
        (json!({"json_schema": {"type": 3}}), "json_schema.type"),
        (json!({"description": "x".repeat(2001)}), "description"),
    ] {
        let (status, v) = app.call(Method::PUT, &path, Some(&editor), Some(bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"]["details"][0]["field"], field, "{v}");
    }
    let (status, v) =
        app.call(Method::PUT, &format!("/api/v1/workspaces/{}/event-types/has%20space", a.id), Some(&editor), Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (status, _) = app.call(Method::PUT, &path, Some(&viewer), Some(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Removing a declaration is an admin's; a type never received then disappears.
    let (status, _) = app.call(Method::DELETE, &path, Some(&editor), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let admin = session(&app, &a, "admin").await;
    let (status, _) = app.call(Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.call(Method::GET, &path, Some(&admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Another workspace's session sees none of it, and cannot write into it.
    let other = session(&app, &b, "admin").await;
    for (method, body) in [(Method::GET, None), (Method::PUT, Some(json!({"description": "x"})))] {
        let (status, _) = app.call(method, &format!("/api/v1/workspaces/{}/event-types", a.id), Some(&other), body).await;
        assert!(status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED);
    }
    let (status, _) = app.call(Method::PUT, &path, Some(&other), Some(json!({"description": "x"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let theirs = event_types(&app, &other, &b).await;
    assert_eq!(theirs["data"].as_array().unwrap().len(), 1, "{theirs}");
    app.shutdown().await;
}

#[tokio::test]
async fn test_events_are_not_learned() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("a").await;
    let receiver = Receiver::status(200).await;
    let conn = app.webhook(&ws, &receiver.url(), json!({})).await;
    let rule = app.rule(&ws, &conn, "order.created", json!({})).await;
    app.ok(Method::POST, &format!("/rules/{}/test", rule["id"].as_str().unwrap()), None, 202).await;
    app.emit_ok(&ws, json!({"event": "real.one"})).await;
    receiver.wait_for(1).await;
    let admin = session(&app, &ws, "admin").await;
    let mut names = Vec::new();
    for _ in 0..50 {
        let v = event_types(&app, &admin, &ws).await;
        names = v["data"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect();
        if !names.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(names, ["real.one"]);
    app.shutdown().await;
}

#[tokio::test]
async fn the_dashboard_counts_a_workspace_s_own_traffic_and_names_failing_connections() {
    let app = TestApp::spawn().await;
    let a = app.workspace("a").await;
    let b = app.workspace("b").await;
    let ok = Receiver::status(200).await;
    let bad = Receiver::status(400).await;
    let good_conn = app.webhook(&a, &ok.url(), json!({"name": "fine"})).await;
    let bad_conn = app.webhook(&a, &bad.url(), json!({"name": "broken"})).await;
    app.rule(&a, &good_conn, "*", json!({})).await;
    app.rule(&a, &bad_conn, "*", json!({})).await;
    let mut last = String::new();
    for i in 0..3 {
        last = app.emit_ok(&a, json!({"event": "user.created", "payload": {"i": i}})).await;
    }
    app.emit_ok(&b, json!({"event": "noise"})).await;
    app.wait_event(&last, "failed").await;
    let viewer = session(&app, &a, "viewer").await;
    let (status, stats) = app.call(Method::GET, &format!("/api/v1/workspaces/{}/stats", a.id), Some(&viewer), None).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["last_24h"]["events"], 3);
    assert_eq!(stats["last_24h"]["deliveries"]["total"], 6);
    assert_eq!((stats["last_24h"]["deliveries_total"].as_u64(), stats["last_24h"]["sampled"].as_u64()), (Some(6), Some(6)));
    assert_eq!(stats["last_24h"]["capped"], false);
    assert_eq!(stats["last_24h"]["deliveries"]["succeeded"], 3);
    assert_eq!(stats["last_24h"]["deliveries"]["dead"], 3);
    assert_eq!(stats["last_24h"]["failure_rate"], 0.5);
    assert_eq!(stats["last_7d"]["events"], 3);
    let attention = stats["attention"].as_array().unwrap();
    assert_eq!(attention.len(), 1, "{stats}");
    assert_eq!(attention[0]["name"], "broken");
    assert_eq!(attention[0]["reason"], "failing");
    let other = session(&app, &b, "admin").await;
    let (status, _) = app.call(Method::GET, &format!("/api/v1/workspaces/{}/stats", a.id), Some(&other), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.shutdown().await;
}

#[tokio::test]
async fn a_rule_preview_renders_templates_and_mappings_without_sending() {
    let app = TestApp::spawn().await;
    let a = app.workspace("a").await;
    let b = app.workspace("b").await;
    let receiver = Receiver::status(200).await;
    let discord = app
        .ok(
            Method::POST,
            &format!("/workspaces/{}/connections", a.id),
            Some(json!({"type": "discord", "name": "chat", "credentials": {"webhook_url": format!("{}/api/webhooks/1/secret", receiver.url())}})),
            201,
        )
        .await;
    let sendgrid = app
        .ok(
            Method::POST,
            &format!("/workspaces/{}/connections", a.id),
            Some(json!({"type": "sendgrid", "name": "mail", "credentials": {"api_key": "SG.secret"}})),
            201,
        )
        .await;
    let editor = session(&app, &a, "editor").await;
    let preview = |body: Value, token: String| {
        let app = &app;
        let path = format!("/api/v1/workspaces/{}/rules/preview", a.id);
        async move { app.call(Method::POST, &path, Some(&token), Some(body)).await }
    };
    let (status, v) = preview(
        json!({"connection_id": discord["id"], "event": "user.created", "payload": {"name": "Ada"},
               "action_config": {"title": "New user", "template": "Hello {{ payload.name }} ({{ event }})"}}),
        editor.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["action"], "send_message");
    let body = v["fields"].as_array().unwrap().iter().find(|f| f["key"] == "template").unwrap();
    assert_eq!(body["output"], "Hello Ada (user.created)");
    // HTML templates escape what they print, as the delivery would; mappings map.
    let (status, v) = preview(
        json!({"connection_id": sendgrid["id"], "action": "send_email", "payload": {"name": "<b>Ada</b>", "mail": "ADA@EXAMPLE.COM "},
               "action_config": {"from": "a@example.com", "subject": "Hi", "template": "<p>{{ payload.name }}</p>",
                                 "mapping": {"schema_version": 1, "fields": [{"dest": "email", "source": {"type": "path", "value": "payload.mail"}, "transforms": ["trim", "lower"]}]}}}),
        editor.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let field = |k: &str| v["fields"].as_array().unwrap().iter().find(|f| f["key"] == k).unwrap().clone();
    assert_eq!(field("template")["output"], "<p>&lt;b&gt;Ada&lt;&#x2f;b&gt;</p>");
    assert_eq!(field("mapping")["output"], json!({"email": "ada@example.com"}));
    // A template that does not compile is a 422 naming it; one that fails on this sample says why, in place.
    let (status, v) =
        preview(json!({"connection_id": discord["id"], "action_config": {"title": "x", "template": "{{ oops"}}), editor.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["details"][0]["field"], "action_config.template", "{v}");
    let (status, v) = preview(
        json!({"connection_id": discord["id"], "action_config": {"title": "x", "template": "{{ payload.n | nosuchfilter }}"}}),
        editor.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["fields"][1]["error"].as_str().unwrap().contains("nosuchfilter"), "{v}");
    assert!(v["fields"][1]["output"].is_null(), "{v}");
    assert_eq!(receiver.count(), 0, "a preview sends nothing");
    // Viewers may not; another workspace's connection is not found.
    let viewer = session(&app, &a, "viewer").await;
    let (status, _) = preview(json!({"connection_id": discord["id"]}), viewer).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let other = session(&app, &b, "admin").await;
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/api/v1/workspaces/{}/rules/preview", b.id),
            Some(&other),
            Some(json!({"connection_id": discord["id"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    app.shutdown().await;
}

#[tokio::test]
async fn failed_deliveries_replay_by_event_name() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("a").await;
    let receiver = Receiver::status(400).await;
    let conn = app.webhook(&ws, &receiver.url(), json!({})).await;
    app.rule(&ws, &conn, "*", json!({})).await;
    let first = app.emit_ok(&ws, json!({"event": "user.created"})).await;
    let second = app.emit_ok(&ws, json!({"event": "invoice.paid"})).await;
    app.wait_event(&first, "failed").await;
    app.wait_event(&second, "failed").await;
    let (status, listed) = app.admin(Method::GET, &format!("/workspaces/{}/deliveries?status=dead&event=invoice.paid", ws.id), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["data"][0]["event_id"], second.as_str());
    let editor = session(&app, &ws, "editor").await;
    let (status, v) = app
        .call(Method::POST, &format!("/api/v1/workspaces/{}/replay", ws.id), Some(&editor), Some(json!({"event": "invoice.paid"})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["replayed"], 1);
    app.shutdown().await;
}

#[tokio::test]
async fn a_session_narrowed_to_one_resource_sees_and_binds_only_that_resource() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("a").await;
    let receiver = Receiver::status(200).await;
    let conn = app.webhook(&ws, &receiver.url(), json!({})).await;
    let unbound = app.rule(&ws, &conn, "*", json!({"name": "everything"})).await;
    let p1 = app.emit_ok(&ws, json!({"event": "task.done", "resource": "project", "resource_id": "p1"})).await;
    let p2 = app.emit_ok(&ws, json!({"event": "task.done", "resource": "project", "resource_id": "p2"})).await;
    app.wait_event(&p1, "completed").await;
    app.wait_event(&p2, "completed").await;
    let (status, v) =
        app.admin(Method::POST, "/sessions", Some(json!({"workspace_id": ws.id, "role": "admin", "resource": "project"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let s = mint(&app, json!({"workspace_id": ws.id, "role": "admin", "resource": "project", "resource_id": "p1"})).await;
    let token = s["access_token"].as_str().unwrap().to_owned();
    let call = |method: Method, path: String, body: Option<Value>| {
        let (app, token) = (&app, token.clone());
        async move { app.call(method, &format!("/api/v1{path}"), Some(&token), body).await }
    };
    let (_, me) = call(Method::GET, "/sessions/current".into(), None).await;
    assert_eq!(me["resource"], json!({"resource": "project", "resource_id": "p1"}));

    // Events and deliveries: only p1's, whatever the query asks.
    let (_, events) = call(Method::GET, format!("/workspaces/{}/events?resource_id=p2", ws.id), None).await;
    let ids: Vec<&str> = events["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [p1.as_str()]);
    assert_eq!(call(Method::GET, format!("/events/{p2}"), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(Method::GET, format!("/events/{p1}"), None).await.0, StatusCode::OK);
    let theirs = app.event(&p2).await["deliveries"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(call(Method::GET, format!("/deliveries/{theirs}"), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(Method::POST, format!("/deliveries/{theirs}/replay"), None).await.0, StatusCode::NOT_FOUND);
    let (_, deliveries) = call(Method::GET, format!("/workspaces/{}/deliveries", ws.id), None).await;
    assert_eq!(deliveries["data"].as_array().unwrap().len(), 1, "{deliveries}");
    assert_eq!(deliveries["data"][0]["event_id"], p1.as_str());

    // Rules: only those bound to p1; a rule it makes is bound to p1 and matches only p1's events.
    let (_, rules) = call(Method::GET, format!("/workspaces/{}/rules", ws.id), None).await;
    assert_eq!(rules["data"].as_array().unwrap().len(), 0, "{rules}");
    let unbound_id = unbound["id"].as_str().unwrap();
    assert_eq!(call(Method::GET, format!("/rules/{unbound_id}"), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(Method::PATCH, format!("/rules/{unbound_id}"), Some(json!({"active": false}))).await.0, StatusCode::NOT_FOUND);
    let (status, bound) = call(
        Method::POST,
        format!("/workspaces/{}/rules", ws.id),
        Some(json!({"name": "mine", "event": "*", "connection_id": conn["id"], "resource": "project", "resource_id": "p2"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{bound}");
    assert_eq!((bound["resource"].as_str(), bound["resource_id"].as_str()), (Some("project"), Some("p1")), "{bound}");
    let mine = app.emit_ok(&ws, json!({"event": "task.done", "resource": "project", "resource_id": "p1"})).await;
    let other = app.emit_ok(&ws, json!({"event": "task.done", "resource": "project", "resource_id": "p2"})).await;
    assert_eq!(app.wait_event(&mine, "completed").await["deliveries"].as_array().unwrap().len(), 2);
    assert_eq!(app.wait_event(&other, "completed").await["deliveries"].as_array().unwrap().len(), 1);
    // Its test event is p1's too, so its pages list it.
    let (status, tested) = call(Method::POST, format!("/rules/{}/test", bound["id"].as_str().unwrap()), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{tested}");
    let test_event = app.wait_event(tested["event_id"].as_str().unwrap(), "completed").await;
    assert_eq!(test_event["resource_id"], "p1");

    // Connections: used, never changed.
    assert_eq!(call(Method::GET, format!("/workspaces/{}/connections", ws.id), None).await.0, StatusCode::OK);
    let conn_id = conn["id"].as_str().unwrap();
    for (method, path, body) in [
        (
            Method::POST,
            format!("/workspaces/{}/connections", ws.id),
            Some(json!({"type": "webhook", "name": "x", "config": {"url": receiver.url()}})),
        ),
        (Method::PATCH, format!("/connections/{conn_id}"), Some(json!({"name": "renamed"}))),
        (Method::DELETE, format!("/connections/{conn_id}"), None),
        (Method::POST, format!("/connections/{conn_id}/rotate-secret"), None),
        (Method::PUT, format!("/workspaces/{}/event-types/task.done", ws.id), Some(json!({"description": "x"}))),
    ] {
        let (status, v) = call(method.clone(), path.clone(), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} → {v}");
    }

    // The dashboard counts p1's traffic only; bulk replay reaches p1's deliveries only.
    let (_, stats) = call(Method::GET, format!("/workspaces/{}/stats", ws.id), None).await;
    assert_eq!(stats["last_24h"]["events"], 3, "{stats}");
    assert_eq!(stats["last_24h"]["deliveries"]["total"], 4, "{stats}");
    let (status, replayed) = call(Method::POST, format!("/workspaces/{}/replay", ws.id), Some(json!({"status": "succeeded"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(replayed["replayed"], 4, "{replayed}");
    app.shutdown().await;
}

#[tokio::test]
async fn installation_branding_applies_where_a_session_sets_none() {
    let app = TestApp::spawn_with(|c| {
        c.branding = switchyard_core::model::Branding {
            accent_color: Some("#112233".into()),
            logo_url: Some("https://brand.example.com/logo.svg".into()),
            name: Some("Acme Cloud".into()),
        }
    })
    .await;
    let ws = app.workspace("acme").await;
    let plain = mint(&app, json!({"workspace_id": ws.id, "role": "viewer"})).await;
    let (_, headers, body) = get_page(&app, plain["launch_url"].as_str().unwrap()).await;
    assert!(
        body.contains("Acme Cloud") && body.contains("data-accent=\"#112233\"") && body.contains("brand.example.com/logo.svg"),
        "{body}"
    );
    assert!(headers["content-security-policy"].to_str().unwrap().contains("img-src 'self' data: https://brand.example.com;"));
    // A session's branding wins field by field.
    let own = mint(&app, json!({"workspace_id": ws.id, "role": "viewer", "branding": {"name": "Globex"}})).await;
    let (_, _, body) = get_page(&app, own["launch_url"].as_str().unwrap()).await;
    assert!(body.contains("Globex") && !body.contains("Acme Cloud") && body.contains("data-accent=\"#112233\""), "{body}");
    app.shutdown().await;
}
