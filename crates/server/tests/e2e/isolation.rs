//! Tenant boundaries and credentials, tested from the outside, and the SSRF guard.

use crate::harness::*;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

async fn session(app: &TestApp, ws: &Workspace, role: &str) -> String {
    let body = json!({"workspace_id": ws.id, "role": role, "ttl_seconds": 600});
    let v = app.ok(Method::POST, "/sessions", Some(body), 201).await;
    v["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_workspace_credential_can_neither_read_nor_change_another_workspace() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::status(200).await;
    let a = app.workspace("a").await;
    let b = app.workspace("b").await;
    let conn_b = app.webhook(&b, &receiver.url(), json!({})).await;
    let rule_b = app.rule(&b, &conn_b, "*", json!({})).await;
    let event_b = app.emit_ok(&b, json!({"event": "secret.thing", "payload": {"ssn": "123"}})).await;
    let delivery_b = app.wait_event(&event_b, "completed").await["deliveries"][0]["id"].as_str().unwrap().to_owned();
    let (conn_b, rule_b) = (conn_b["id"].as_str().unwrap().to_owned(), rule_b["id"].as_str().unwrap().to_owned());

    let token_a = session(&app, &a, "admin").await;
    let as_a = |method: Method, path: String, body: Option<Value>| {
        let token = token_a.clone();
        let app = &app;
        async move { app.call(method, &format!("/api/v1{path}"), Some(&token), body).await }
    };
    for path in [
        format!("/workspaces/{}", b.id),
        format!("/workspaces/{}/connections", b.id),
        format!("/workspaces/{}/rules", b.id),
        format!("/workspaces/{}/events", b.id),
        format!("/workspaces/{}/deliveries", b.id),
        format!("/connections/{conn_b}"),
        format!("/rules/{rule_b}"),
        format!("/events/{event_b}"),
        format!("/deliveries/{delivery_b}"),
    ] {
        let (status, body) = as_a(Method::GET, path.clone(), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "GET {path} → {body}");
        assert_eq!(body["error"]["code"], "not_found");
        assert!(!body.to_string().contains("secret.thing"));
    }
    let writes = [
        (Method::PATCH, format!("/connections/{conn_b}"), Some(json!({"name": "pwned"}))),
        (Method::DELETE, format!("/connections/{conn_b}?force=true"), None),
        (Method::POST, format!("/connections/{conn_b}/rotate-secret"), None),
        (Method::PATCH, format!("/rules/{rule_b}"), Some(json!({"active": false}))),
        (Method::DELETE, format!("/rules/{rule_b}"), None),
        (Method::POST, format!("/rules/{rule_b}/test"), None),
        (Method::POST, format!("/deliveries/{delivery_b}/replay"), None),
        (Method::POST, format!("/workspaces/{}/replay", b.id), Some(json!({}))),
        (
            Method::POST,
            format!("/workspaces/{}/connections", b.id),
            Some(json!({"type": "webhook", "name": "x", "config": {"url": receiver.url()}})),
        ),
        (Method::POST, format!("/workspaces/{}/rules", b.id), Some(json!({"name": "x", "event": "*", "connection_id": conn_b}))),
    ];
    for (method, path, body) in writes {
        let (status, response) = as_a(method.clone(), path.clone(), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path} → {response}");
    }
    // A's own rule cannot point at B's connection.
    let (status, body) =
        as_a(Method::POST, format!("/workspaces/{}/rules", a.id), Some(json!({"name": "x", "event": "*", "connection_id": conn_b}))).await;
    assert_eq!((status, body["error"]["details"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("connection_id")));
    // Listing workspaces shows only its own.
    let (_, listed) = as_a(Method::GET, "/workspaces".into(), None).await;
    let ids: Vec<_> = listed["data"].as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, vec![a.id.clone()]);
    // B's things are untouched.
    let still = app.ok(Method::GET, &format!("/connections/{conn_b}"), None, 200).await;
    assert_eq!(still["name"], "hook");
    assert_eq!(app.ok(Method::GET, &format!("/rules/{rule_b}"), None, 200).await["active"], true);

    // A publishable key sends events into its own workspace only and reads nothing.
    let id = app.emit_ok(&a, json!({"event": "mine"})).await;
    assert_eq!(app.event(&id).await["workspace_id"], a.id.as_str());
    for path in [format!("/api/v1/events/{id}"), format!("/api/v1/workspaces/{}/events", a.id), format!("/api/v1/events/{event_b}")] {
        let (status, body) = app.call(Method::GET, &path, Some(&a.pk), None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{path}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn session_roles_limit_what_a_session_may_do() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::status(200).await;
    let ws = app.workspace("a").await;
    let conn = app.webhook(&ws, &receiver.url(), json!({})).await;
    let conn_path = format!("/api/v1/connections/{}", conn["id"].as_str().unwrap());
    app.rule(&ws, &conn, "*", json!({})).await;
    let event = app.emit_ok(&ws, json!({"event": "x", "payload": {"private": true}})).await;

    let viewer = session(&app, &ws, "viewer").await;
    let (s, _) = app.call(Method::GET, &conn_path, Some(&viewer), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.call(Method::PATCH, &conn_path, Some(&viewer), Some(json!({"name": "n"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, e) = app.call(Method::GET, &format!("/api/v1/events/{event}"), Some(&viewer), None).await;
    assert!(e.get("payload").is_none(), "viewers see no payloads: {e}");
    // Nor the request that carried it.
    let delivered = app.wait_event(&event, "completed").await;
    let delivery_path = format!("/api/v1/deliveries/{}", delivered["deliveries"][0]["id"].as_str().unwrap());
    let (_, d) = app.call(Method::GET, &delivery_path, Some(&viewer), None).await;
    assert!(d["attempts"][0]["request"].is_null() && d["attempts"][0]["response_excerpt"].is_null(), "{d}");
    assert!(app.ok(Method::GET, &delivery_path.replace("/api/v1", ""), None, 200).await["attempts"][0]["request"]
        .as_str()
        .unwrap()
        .contains("private"));

    let editor = session(&app, &ws, "editor").await;
    let (s, _) = app.call(Method::PATCH, &conn_path, Some(&editor), Some(json!({"name": "n"}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.call(Method::DELETE, &conn_path, Some(&editor), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.call(Method::POST, "/api/v1/workspaces", Some(&editor), Some(json!({"name": "new"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // A refresh issues a new token and kills the old one.
    let v = app.ok(Method::POST, "/sessions", Some(json!({"workspace_id": ws.id, "role": "viewer"})), 201).await;
    let (old, sid) = (v["access_token"].as_str().unwrap().to_owned(), v["session_id"].as_str().unwrap().to_owned());
    let refreshed = app.ok(Method::POST, &format!("/sessions/{sid}/refresh"), Some(json!({"ttl_seconds": 120})), 200).await;
    let new = refreshed["access_token"].as_str().unwrap();
    assert_eq!(app.call(Method::GET, &conn_path, Some(&old), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.call(Method::GET, &conn_path, Some(new), None).await.0, StatusCode::OK);
    let (s, b) = app.admin(Method::POST, &format!("/sessions/{sid}/refresh"), Some(json!({"ttl_seconds": 5}))).await;
    assert_eq!((s, b["error"]["details"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("ttl_seconds")));

    // A deleted session is refused at once.
    let v = app.ok(Method::POST, "/sessions", Some(json!({"workspace_id": ws.id, "role": "admin"})), 201).await;
    let token = v["access_token"].as_str().unwrap();
    app.ok(Method::DELETE, &format!("/sessions/{}", v["session_id"].as_str().unwrap()), None, 204).await;
    let (s, _) = app.call(Method::GET, &conn_path, Some(token), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    app.shutdown().await;
}

#[tokio::test]
async fn missing_unknown_and_deleted_keys_are_refused() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("a").await;
    let (s, b) = app.call(Method::GET, "/api/v1/workspaces", None, None).await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    let (s, _) = app.call(Method::GET, "/api/v1/workspaces", Some("sk_not_a_real_key_at_all_0000000000"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = app.call(Method::POST, "/api/v1/events", Some("pk_unknown"), Some(json!({"event": "x"}))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Rotation: a new key works, the deleted one is refused at once (it was cached by its first use).
    app.emit_ok(&ws, json!({"event": "x"})).await;
    let new = app.ok(Method::POST, &format!("/workspaces/{}/publishable-keys", ws.id), None, 201).await;
    let keys = app.ok(Method::GET, &format!("/workspaces/{}/publishable-keys", ws.id), None, 200).await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 2);
    let first = app.ok(Method::GET, &format!("/workspaces/{}/publishable-keys?limit=1", ws.id), None, 200).await;
    assert_eq!(first["data"][0]["id"], new["id"], "newest first");
    assert!(first["next_cursor"].is_string());
    assert!(!keys.to_string().contains(&ws.pk), "listing shows no secrets");
    let old_id = keys["data"].as_array().unwrap().iter().find(|k| k["id"] != new["id"]).unwrap()["id"].as_str().unwrap().to_owned();
    app.ok(Method::DELETE, &format!("/workspaces/{}/publishable-keys/{old_id}", ws.id), None, 204).await;
    let (s, _) = app.emit(&ws, json!({"event": "x"})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let rotated = Workspace { id: ws.id.clone(), pk: new["key"].as_str().unwrap().into() };
    app.emit_ok(&rotated, json!({"event": "x"})).await;

    // The admin key may not send events (they need a workspace's publishable key).
    let (s, _) = app.admin(Method::POST, "/events", Some(json!({"event": "x"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    app.shutdown().await;
}

#[tokio::test]
async fn private_destinations_are_refused_when_saved_and_when_connecting() {
    let app = TestApp::spawn_with(|c| c.allow_private_destinations = false).await;
    let ws = app.workspace("a").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.8/",
        "http://100.64.1.1/",
        "http://[::1]:8080/",
        "http://localhost:8080/",
        "http://[::ffff:127.0.0.1]/",
    ] {
        let body = json!({"type": "webhook", "name": "x", "config": {"url": url}});
        let (s, b) = app.admin(Method::POST, &format!("/workspaces/{}/connections", ws.id), Some(body)).await;
        assert_eq!((s, b["error"]["details"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("config.url")), "{url}: {b}");
    }

    // A host name is only resolved when connecting: this machine's own name resolves to a
    // loopback address, so the attempt is refused after resolution, without a request.
    let receiver = Receiver::status(200).await;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    let resolved: Vec<_> = tokio::net::lookup_host((host.as_str(), 0)).await.expect("the host name resolves").collect();
    assert!(resolved.iter().all(|a| a.ip().is_loopback()), "this test needs {host} to resolve to loopback: {resolved:?}");
    let url = format!("http://{host}:{}/hook", receiver.addr.port());
    let conn = app.webhook(&ws, &url, json!({"config": {"url": url}})).await;
    app.rule(&ws, &conn, "*", json!({})).await;
    let id = app.emit_ok(&ws, json!({"event": "x"})).await;
    let event = app.wait_event(&id, "failed").await;
    let d = app.delivery(event["deliveries"][0]["id"].as_str().unwrap()).await;
    assert_eq!(d["attempt_count"], 1, "a refused address is permanent");
    assert!(d["last_error"].as_str().unwrap().contains("not allowed"), "{d}");
    assert_eq!(receiver.count(), 0);
    app.shutdown().await;
}

#[tokio::test]
async fn secrets_are_stored_sealed_or_hashed_never_in_the_clear() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::status(200).await;
    let ws = app.workspace("a").await;
    let bearer = "tok-0123456789-very-secret-bearer";
    let password = "pw-0123456789-very-secret-password";
    let secret_header = "hdr-0123456789-very-secret-header";
    let with_bearer = app.webhook(&ws, &receiver.url(), json!({"credentials": {"bearer_token": bearer}})).await;
    let with_basic = app
        .webhook(&ws, &receiver.url(), json!({"credentials": {"username": "u", "password": password, "headers": {"X-Key": secret_header}}}))
        .await;
    let signing_secret = with_bearer["signing_secret"].as_str().unwrap().to_owned();
    let rotated = app.ok(Method::POST, &format!("/connections/{}/rotate-secret", with_basic["id"].as_str().unwrap()), None, 200).await;
    let session = session(&app, &ws, "viewer").await;
    app.rule(&ws, &with_bearer, "*", json!({})).await;
    app.emit_ok(&ws, json!({"event": "x"})).await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].headers["authorization"], format!("Bearer {bearer}").as_str(), "the secret still works");

    let stored = database_contents(&app).await;
    assert!(stored.contains("v1:"), "sealed values are there");
    for secret in [
        bearer,
        password,
        secret_header,
        signing_secret.as_str(),
        signing_secret.trim_start_matches("whsec_"),
        rotated["signing_secret"].as_str().unwrap(),
        ws.pk.as_str(),
        session.as_str(),
        ADMIN_KEY,
    ] {
        assert!(!stored.contains(secret), "{secret} is stored in the clear");
    }
    // Nor does any API response show them again.
    for path in [format!("/connections/{}", with_bearer["id"].as_str().unwrap()), format!("/workspaces/{}/connections", ws.id)] {
        let body = app.ok(Method::GET, &path, None, 200).await.to_string();
        for secret in [bearer, password, secret_header, signing_secret.as_str()] {
            assert!(!body.contains(secret), "{path} shows {secret}");
        }
    }
    app.shutdown().await;
}
