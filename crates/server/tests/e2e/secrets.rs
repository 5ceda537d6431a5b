//! A workspace's secrets (what `${secret:NAME}` stands for in blueprints): set, replaced, listed by
//! name, deleted; never shown, never stored in the clear, never visible from another workspace.

use crate::harness::*;
use axum::http::{Method, StatusCode};
use serde_json::json;

const VALUE: &str = "xoxb-secret-value-3f9a1c7e";

#[tokio::test]
async fn secrets_are_write_only_sealed_and_kept_to_their_workspace() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("acme").await;
    let other = app.workspace("globex").await;
    let path = |ws: &Workspace, name: &str| format!("/workspaces/{}/secrets/{name}", ws.id);

    let set = app.ok(Method::PUT, &path(&ws, "slack_token"), Some(json!({"value": VALUE})), 201).await;
    assert_eq!(set["name"], "slack_token");
    assert!(set.get("value").is_none(), "{set}");
    let replaced = app.ok(Method::PUT, &path(&ws, "slack_token"), Some(json!({"value": format!("{VALUE}-2")})), 200).await;
    assert_eq!(replaced["created_at"], set["created_at"]);
    app.ok(Method::PUT, &path(&ws, "hubspot-token"), Some(json!({"value": "pat-1"})), 201).await;
    let list = app.ok(Method::GET, &format!("/workspaces/{}/secrets", ws.id), None, 200).await;
    let names: Vec<&str> = list["data"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hubspot-token", "slack_token"]);
    assert!(!list.to_string().contains("xoxb") && !list.to_string().contains("pat-1"), "{list}");
    // Sealed at rest, and out of the audit log.
    let stored = database_contents(&app).await;
    assert!(!stored.contains(VALUE), "a secret is in the database in the clear");
    let audit = app.ok(Method::GET, "/audit-log", None, 200).await;
    assert!(audit.to_string().contains("secret.create") && !audit.to_string().contains(VALUE), "{audit}");

    // Another workspace's credentials see none of it and change none of it.
    let key = app
        .ok(
            Method::POST,
            "/api-keys",
            Some(json!({"name": "globex admin", "scope": "workspaces", "workspaces": [{"workspace_id": other.id, "role": "admin"}]})),
            201,
        )
        .await;
    let key = key["key"].as_str().unwrap();
    let session = app.ok(Method::POST, "/sessions", Some(json!({"workspace_id": other.id, "role": "admin"})), 201).await;
    let token = session["access_token"].as_str().unwrap();
    for credential in [key, token, ws.pk.as_str()] {
        let (status, _) = app.call(Method::GET, &format!("/api/v1/workspaces/{}/secrets", ws.id), Some(credential), None).await;
        assert!([StatusCode::NOT_FOUND, StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status), "{status}");
        let (status, _) =
            app.call(Method::PUT, &format!("/api/v1{}", path(&ws, "slack_token")), Some(credential), Some(json!({"value": "evil"}))).await;
        assert!([StatusCode::NOT_FOUND, StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status), "{status}");
        let (status, _) = app.call(Method::DELETE, &format!("/api/v1{}", path(&ws, "slack_token")), Some(credential), None).await;
        assert!([StatusCode::NOT_FOUND, StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status), "{status}");
    }
    // The same name in the other workspace is its own secret.
    let (status, _) =
        app.call(Method::PUT, &format!("/api/v1{}", path(&other, "slack_token")), Some(key), Some(json!({"value": "globex"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let list = app.ok(Method::GET, &format!("/workspaces/{}/secrets", ws.id), None, 200).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    // A viewer session of its own workspace lists, but may not set.
    let viewer = app.ok(Method::POST, "/sessions", Some(json!({"workspace_id": ws.id, "role": "viewer"})), 201).await;
    let viewer = viewer["access_token"].as_str().unwrap();
    let (status, _) = app.call(Method::GET, &format!("/api/v1/workspaces/{}/secrets", ws.id), Some(viewer), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call(Method::PUT, &format!("/api/v1{}", path(&ws, "x")), Some(viewer), Some(json!({"value": "v"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    app.ok(Method::DELETE, &path(&ws, "slack_token"), None, 204).await;
    let (status, _) = app.admin(Method::DELETE, &path(&ws, "slack_token"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Deleting the workspace takes its secrets.
    app.ok(Method::DELETE, &format!("/workspaces/{}", ws.id), None, 204).await;
    let (status, _) = app.admin(Method::GET, &format!("/workspaces/{}/secrets", ws.id), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_secrets_are_refused_and_a_workspace_holds_at_most_100() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("acme").await;
    let put = |name: String, body: serde_json::Value| {
        let app = &app;
        let path = format!("/workspaces/{}/secrets/{name}", ws.id);
        async move { app.admin(Method::PUT, &path, Some(body)).await }
    };
    for (name, body, field) in [
        ("a.b".to_owned(), json!({"value": "v"}), "name"),
        ("x".repeat(65), json!({"value": "v"}), "name"),
        ("ok".to_owned(), json!({"value": ""}), "value"),
        ("ok".to_owned(), json!({"value": "v".repeat(16 * 1024 + 1)}), "value"),
    ] {
        let (status, err) = put(name.clone(), body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {err}");
        assert_eq!(err["error"]["details"][0]["field"], field, "{err}");
    }
    let (status, err) = put("ok".into(), json!({"value": "v", "extra": 1})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");

    for i in 0..100 {
        let (status, err) = put(format!("s{i}"), json!({"value": "v"})).await;
        assert_eq!(status, StatusCode::CREATED, "{err}");
    }
    let (status, err) = put("one_more".into(), json!({"value": "v"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("at most 100 secrets"), "{err}");
    // Replacing one at the limit is fine.
    let (status, err) = put("s7".into(), json!({"value": "w"})).await;
    assert_eq!(status, StatusCode::OK, "{err}");
}
