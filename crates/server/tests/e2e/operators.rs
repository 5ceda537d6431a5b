//! The operator side from the outside: API keys (scopes, expiry, revocation, the last admin key)
//! and the audit log (who, what, when, from where; refused credentials; who may read it).

use crate::harness::*;
use axum::http::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn create_key(app: &TestApp, body: Value) -> (String, String) {
    let v = app.ok(Method::POST, "/api-keys", Some(body), 201).await;
    (v["id"].as_str().unwrap().to_owned(), v["key"].as_str().unwrap().to_owned())
}

async fn status(app: &TestApp, method: Method, path: &str, key: &str, body: Option<Value>) -> u16 {
    app.call(method, &format!("/api/v1{path}"), Some(key), body).await.0.as_u16()
}

#[tokio::test]
async fn api_keys_are_shown_once_stored_hashed_and_hold_to_their_scope() {
    let app = TestApp::spawn().await;
    let a = app.workspace("a").await;
    let b = app.workspace("b").await;
    let hook = app.webhook(&b, "http://127.0.0.1:9/hook", json!({})).await;

    let (read_id, read_only) = create_key(&app, json!({"name": "dashboards", "scope": "read_only"})).await;
    assert!(read_only.starts_with("sk_"));
    let listed = app.ok(Method::GET, "/api-keys", None, 200).await;
    let entry = listed["data"].as_array().unwrap().iter().find(|k| k["id"] == read_id.as_str()).expect("listed").clone();
    assert_eq!(entry["scope"], "read_only");
    assert!(entry.get("key").is_none(), "a listing never shows the key: {entry}");
    assert!(!listed.to_string().contains(&read_only));
    assert!(!database_contents(&app).await.contains(&read_only), "keys are stored as digests only");

    // Read-only: every GET, nothing else.
    assert_eq!(status(&app, Method::GET, "/workspaces", &read_only, None).await, 200);
    assert_eq!(status(&app, Method::GET, &format!("/connections/{}", hook["id"].as_str().unwrap()), &read_only, None).await, 200);
    assert_eq!(status(&app, Method::GET, "/api-keys", &read_only, None).await, 200);
    assert_eq!(status(&app, Method::POST, "/workspaces", &read_only, Some(json!({"name": "x"}))).await, 403);
    assert_eq!(status(&app, Method::DELETE, &format!("/connections/{}", hook["id"].as_str().unwrap()), &read_only, None).await, 403);

    // A key for one workspace, as an editor there: a product's backend managing its own.
    let (_, scoped) =
        create_key(&app, json!({"name": "backend", "scope": "workspaces", "workspaces": [{"workspace_id": a.id, "role": "editor"}]})).await;
    let (_, listing) = app.call(Method::GET, "/api/v1/workspaces", Some(&scoped), None).await;
    let ids: Vec<&str> = listing["data"].as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![a.id.as_str()], "it lists only its own workspaces");
    assert_eq!(status(&app, Method::GET, &format!("/workspaces/{}", b.id), &scoped, None).await, 404);
    let conn = json!({"type": "webhook", "name": "h", "config": {"url": "http://127.0.0.1:9/h"}});
    let (s, made) = app.call(Method::POST, &format!("/api/v1/workspaces/{}/connections", a.id), Some(&scoped), Some(conn.clone())).await;
    assert_eq!(s.as_u16(), 201, "{made}");
    assert_eq!(status(&app, Method::POST, &format!("/workspaces/{}/connections", b.id), &scoped, Some(conn)).await, 404);
    assert_eq!(status(&app, Method::GET, &format!("/connections/{}", hook["id"].as_str().unwrap()), &scoped, None).await, 404);
    // Deleting needs the admin role; installation-wide actions need the admin scope.
    assert_eq!(status(&app, Method::DELETE, &format!("/connections/{}", made["id"].as_str().unwrap()), &scoped, None).await, 403);
    assert_eq!(status(&app, Method::POST, "/workspaces", &scoped, Some(json!({"name": "x"}))).await, 403);
    assert_eq!(status(&app, Method::GET, "/api-keys", &scoped, None).await, 403);
    // It mints sessions up to its own role, in its own workspaces.
    let session = |ws: &str, role: &str| json!({"workspace_id": ws, "role": role});
    assert_eq!(status(&app, Method::POST, "/sessions", &scoped, Some(session(&a.id, "editor"))).await, 201);
    assert_eq!(status(&app, Method::POST, "/sessions", &scoped, Some(session(&a.id, "admin"))).await, 403);
    assert_eq!(status(&app, Method::POST, "/sessions", &scoped, Some(session(&b.id, "viewer"))).await, 422);

    // What a key may be is checked.
    for (body, field) in [
        (json!({"name": "x", "scope": "workspaces"}), "workspaces"),
        (json!({"name": "x", "scope": "admin", "workspaces": [{"workspace_id": a.id, "role": "admin"}]}), "workspaces"),
        (
            json!({"name": "x", "scope": "workspaces", "workspaces": [{"workspace_id": "ws_01J00000000000000000000000", "role": "admin"}]}),
            "workspaces[0].workspace_id",
        ),
        (
            json!({"name": "x", "scope": "workspaces", "workspaces": [{"workspace_id": a.id, "role": "viewer"}, {"workspace_id": a.id, "role": "admin"}]}),
            "workspaces[1].workspace_id",
        ),
        (json!({"name": "x", "scope": "admin", "expires_at": "2001-01-01T00:00:00Z"}), "expires_at"),
        (json!({"name": "", "scope": "admin"}), "name"),
    ] {
        let (s, v) = app.admin(Method::POST, "/api-keys", Some(body.clone())).await;
        assert_eq!(s.as_u16(), 422, "{body} → {v}");
        assert_eq!(v["error"]["details"][0]["field"], field, "{body} → {v}");
    }
    let (s, _) = app.admin(Method::POST, "/api-keys", Some(json!({"name": "x", "scope": "superuser"}))).await;
    assert_eq!(s.as_u16(), 400, "an unknown scope is a wrong value, as every enum");
    app.shutdown().await;
}

#[tokio::test]
async fn expired_and_revoked_keys_stop_at_once_and_the_last_admin_key_cannot_go() {
    // No SWITCHYARD_ADMIN_KEY: the node creates the first admin key, as on a fresh installation.
    let app = TestApp::spawn_with(|c| c.admin_key = None).await;
    let first = app.bootstrap_key.clone().expect("a first admin key is created");
    let (s, keys) = app.call(Method::GET, "/api/v1/api-keys", Some(&first), None).await;
    assert_eq!(s.as_u16(), 200);
    let keys = keys["data"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!((keys[0]["name"].as_str(), keys[0]["scope"].as_str()), (Some("bootstrap"), Some("admin")));
    let first_id = keys[0]["id"].as_str().unwrap().to_owned();

    // It is the only admin credential: it cannot be revoked, not even by itself.
    let (s, v) = app.call(Method::DELETE, &format!("/api/v1/api-keys/{first_id}"), Some(&first), None).await;
    assert_eq!(s.as_u16(), 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("last admin key"));
    // A read-only key does not count as an admin.
    let make = |body: Value| {
        let (app, first) = (&app, &first);
        async move {
            let (s, v) = app.call(Method::POST, "/api/v1/api-keys", Some(first), Some(body)).await;
            assert_eq!(s.as_u16(), 201, "{v}");
            (v["id"].as_str().unwrap().to_owned(), v["key"].as_str().unwrap().to_owned())
        }
    };
    make(json!({"name": "ro", "scope": "read_only"})).await;
    let (s, _) = app.call(Method::DELETE, &format!("/api/v1/api-keys/{first_id}"), Some(&first), None).await;
    assert_eq!(s.as_u16(), 409);
    // Once another admin key exists, the first can go, and stops working at once.
    let (second_id, second) = make(json!({"name": "ops", "scope": "admin"})).await;
    let (s, _) = app.call(Method::DELETE, &format!("/api/v1/api-keys/{first_id}"), Some(&second), None).await;
    assert_eq!(s.as_u16(), 204);
    let (s, _) = app.call(Method::GET, "/api/v1/workspaces", Some(&first), None).await;
    assert_eq!(s.as_u16(), 401);
    let (s, _) = app.call(Method::DELETE, &format!("/api/v1/api-keys/{second_id}"), Some(&second), None).await;
    assert_eq!(s.as_u16(), 409, "the last admin key stays");

    // Expiry: works until then, refused after, and the refusal is recorded with the key's id.
    let soon = switchyard_core::rfc3339(switchyard_core::now_millis() + 1_500);
    let (short_id, short) = (async {
        let (s, v) = app
            .call(Method::POST, "/api/v1/api-keys", Some(&second), Some(json!({"name": "short", "scope": "admin", "expires_at": soon})))
            .await;
        assert_eq!(s.as_u16(), 201, "{v}");
        (v["id"].as_str().unwrap().to_owned(), v["key"].as_str().unwrap().to_owned())
    })
    .await;
    let (s, _) = app.call(Method::GET, "/api/v1/workspaces", Some(&short), None).await;
    assert_eq!(s.as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let (s, v) = app.call(Method::GET, "/api/v1/workspaces", Some(&short), None).await;
    assert_eq!(s.as_u16(), 401);
    assert_eq!(v["error"]["message"], "the API key has expired");
    let (_, log) = app.call(Method::GET, "/api/v1/audit-log?action=credential.refused", Some(&second), None).await;
    let refused = log["data"].as_array().unwrap();
    assert!(refused.iter().any(|e| e["actor"]["id"] == short_id.as_str() && e["summary"]["reason"] == "expired"), "{log}");
    // An expired admin key is no admin: with it gone, `second` is still the last.
    let (s, _) = app.call(Method::DELETE, &format!("/api/v1/api-keys/{second_id}"), Some(&second), None).await;
    assert_eq!(s.as_u16(), 409);

    // When a key was last used is kept (to the minute, written off the request's path).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, k) = app.call(Method::GET, &format!("/api/v1/api-keys/{second_id}"), Some(&second), None).await;
        if k["last_used_at"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "last_used_at was never written: {k}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.shutdown().await;
}

#[tokio::test]
async fn the_audit_log_says_who_changed_what_when_and_from_where() {
    let app = TestApp::spawn_with(|c| c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    let started = switchyard_core::rfc3339(switchyard_core::now_millis() - 1);
    let a = app.workspace("a").await;
    let b = app.workspace("b").await;
    let secret = "cred-secret-0123456789";
    let res = app
        .client
        .post(format!("{}/api/v1/workspaces/{}/connections", app.base, a.id))
        .bearer_auth(ADMIN_KEY)
        .header("user-agent", "audit-test/1.0")
        .header("x-forwarded-for", "198.51.100.7, 203.0.113.9")
        .json(&json!({"type": "webhook", "name": "crm hook", "config": {"url": "http://127.0.0.1:9/h"}, "credentials": {"bearer_token": secret}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let conn: Value = res.json().await.unwrap();
    app.webhook(&b, "http://127.0.0.1:9/other", json!({})).await;

    let log = app.ok(Method::GET, &format!("/audit-log?workspace_id={}&action=connection.create", a.id), None, 200).await;
    let entries = log["data"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{log}");
    let e = &entries[0];
    assert_eq!(e["actor"]["kind"], "admin_key");
    assert_eq!(e["resource_type"], "connection");
    assert_eq!(e["resource_id"], conn["id"]);
    assert_eq!(e["summary"]["name"], "crm hook");
    assert_eq!(e["summary"]["has_credentials"], true);
    // The last hop that is not a trusted proxy.
    assert_eq!(e["client_addr"], "203.0.113.9");
    assert_eq!(e["user_agent"], "audit-test/1.0");
    assert!(!log.to_string().contains(secret));
    assert!(switchyard_core::parse_rfc3339(e["at"].as_str().unwrap()).unwrap() >= switchyard_core::parse_rfc3339(&started).unwrap());

    // Filters: by kind of action, actor, time; cursor pages.
    let all = app.ok(Method::GET, "/audit-log?action=connection.*", None, 200).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    let none = app.ok(Method::GET, "/audit-log?actor=key_01J00000000000000000000000", None, 200).await;
    assert!(none["data"].as_array().unwrap().is_empty());
    let later = switchyard_core::rfc3339(switchyard_core::now_millis() + 60_000);
    let future = app.ok(Method::GET, &format!("/audit-log?since={later}"), None, 200).await;
    assert!(future["data"].as_array().unwrap().is_empty());
    let page = app.ok(Method::GET, "/audit-log?limit=1", None, 200).await;
    let cursor = page["next_cursor"].as_str().expect("more than one entry").to_owned();
    let next = app.ok(Method::GET, &format!("/audit-log?limit=1&cursor={cursor}"), None, 200).await;
    assert_ne!(page["data"][0]["id"], next["data"][0]["id"]);
    let (s, _) = app.admin(Method::GET, "/audit-log?since=yesterday", None).await;
    assert_eq!(s.as_u16(), 422);

    // An admin session reads its own workspace's entries, and only those; lesser roles none.
    let token = |ws: &Workspace, role: &str| {
        let app = &app;
        let body = json!({"workspace_id": ws.id, "role": role});
        async move { app.ok(Method::POST, "/sessions", Some(body), 201).await["access_token"].as_str().unwrap().to_owned() }
    };
    let admin_a = token(&a, "admin").await;
    let (s, own) = app.call(Method::GET, "/api/v1/audit-log", Some(&admin_a), None).await;
    assert_eq!(s.as_u16(), 200);
    let own = own["data"].as_array().unwrap();
    assert!(!own.is_empty());
    assert!(own.iter().all(|e| e["workspace_id"] == a.id.as_str()), "{own:?}");
    let (s, _) = app.call(Method::GET, &format!("/api/v1/audit-log?workspace_id={}", b.id), Some(&admin_a), None).await;
    assert_eq!(s.as_u16(), 404);
    let (s, _) = app.call(Method::GET, "/api/v1/audit-log", Some(&token(&a, "editor").await), None).await;
    assert_eq!(s.as_u16(), 403);
    // A key holding the admin role in a workspace reads that workspace's entries, naming it.
    let (_, scoped) =
        create_key(&app, json!({"name": "ops a", "scope": "workspaces", "workspaces": [{"workspace_id": a.id, "role": "admin"}]})).await;
    assert_eq!(status(&app, Method::GET, &format!("/audit-log?workspace_id={}", a.id), &scoped, None).await, 200);
    assert_eq!(status(&app, Method::GET, &format!("/audit-log?workspace_id={}", b.id), &scoped, None).await, 404);
    assert_eq!(status(&app, Method::GET, "/audit-log", &scoped, None).await, 422);

    // Refused credentials are recorded, at most ten a minute per address, so a flood cannot fill the log.
    for _ in 0..30 {
        let (s, _) = app.call(Method::GET, "/api/v1/workspaces", Some("sk_wrong_key_000000000000000000"), None).await;
        assert_eq!(s.as_u16(), 401);
    }
    let refused = app.ok(Method::GET, "/audit-log?action=credential.refused&limit=200", None, 200).await;
    let n = refused["data"].as_array().unwrap().len();
    assert!((10..=20).contains(&n), "{n} refusals recorded of 30 (ten a minute per address; the test may span two minutes)");
    let first = &refused["data"][0];
    assert_eq!((first["actor"]["kind"].as_str(), first["summary"]["reason"].as_str()), (Some("anonymous"), Some("unknown")));
    assert!(!refused.to_string().contains("sk_wrong_key"), "a refused credential is never written down");
    app.shutdown().await;
}
