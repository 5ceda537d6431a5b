//! Workspace labels (`env=prod`): set at creation and by installation keys, listed, and selected
//! by; a workspace's own admins can neither change them nor see other workspaces through them.

use crate::harness::*;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

fn names(list: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = list["data"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    names
}

#[tokio::test]
async fn workspaces_are_labelled_listed_by_label_and_relabelled() {
    let app = TestApp::spawn().await;
    let create = |name: &'static str, labels: Value| {
        let app = &app;
        async move { app.ok(Method::POST, "/workspaces", Some(json!({"name": name, "labels": labels})), 201).await }
    };
    let dev = create("dev", json!({"env": "dev", "product": "acme"})).await;
    assert_eq!(dev["labels"], json!({"env": "dev", "product": "acme"}));
    let prod = create("prod", json!({"env": "prod", "product": "acme", "tier": "enterprise"})).await;
    create("other", json!({"env": "prod", "product": "globex"})).await;
    app.ok(Method::POST, "/workspaces", Some(json!({"name": "plain"})), 201).await;

    let list = |query: &'static str| {
        let app = &app;
        async move { app.ok(Method::GET, &format!("/workspaces{query}"), None, 200).await }
    };
    assert_eq!(names(&list("?labels=product=acme").await), ["dev", "prod"]);
    assert_eq!(names(&list("?labels=env=prod").await), ["other", "prod"]);
    assert_eq!(names(&list("?labels=env=prod,product=acme").await), ["prod"]);
    assert_eq!(names(&list("?labels=env=prod,product=acme,tier=enterprise").await), ["prod"]);
    assert_eq!(names(&list("?labels=env=staging").await), Vec::<&str>::new());
    // A label's value must match, not just its key, and every label given must be there.
    assert_eq!(names(&list("?labels=env=prod,tier=free").await), Vec::<&str>::new());
    assert_eq!(names(&list("").await), ["dev", "other", "plain", "prod"]);
    // Pages of a selection follow the cursor like any list.
    let first = list("?labels=env=prod&limit=1").await;
    assert_eq!(first["data"].as_array().unwrap().len(), 1);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app.ok(Method::GET, &format!("/workspaces?labels=env=prod&limit=1&cursor={cursor}"), None, 200).await;
    assert_ne!(second["data"][0]["id"], first["data"][0]["id"]);
    assert!(second["next_cursor"].is_null());

    // Relabelled: the selection follows at once; `{}` removes them all.
    let id = prod["id"].as_str().unwrap();
    let changed =
        app.ok(Method::PATCH, &format!("/workspaces/{id}"), Some(json!({"labels": {"env": "staging", "product": "acme"}})), 200).await;
    assert_eq!(changed["labels"], json!({"env": "staging", "product": "acme"}));
    assert_eq!(names(&list("?labels=env=prod").await), ["other"]);
    assert_eq!(names(&list("?labels=env=staging").await), ["prod"]);
    let shown = app.ok(Method::GET, &format!("/workspaces/{id}"), None, 200).await;
    assert_eq!(shown["labels"], json!({"env": "staging", "product": "acme"}));
    app.ok(Method::PATCH, &format!("/workspaces/{id}"), Some(json!({"labels": {}})), 200).await;
    assert_eq!(names(&list("?labels=product=acme").await), ["dev"]);
    // Other fields leave labels alone.
    let dev_id = dev["id"].as_str().unwrap();
    let renamed = app.ok(Method::PATCH, &format!("/workspaces/{dev_id}"), Some(json!({"name": "development"})), 200).await;
    assert_eq!(renamed["labels"], json!({"env": "dev", "product": "acme"}));
    // Deleted, a workspace's labels go with it.
    app.ok(Method::DELETE, &format!("/workspaces/{dev_id}"), None, 204).await;
    assert_eq!(names(&list("?labels=product=acme").await), Vec::<&str>::new());
}

#[tokio::test]
async fn bad_labels_are_refused_with_the_field_named() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"name": "x", "labels": {"env": "pro d"}}), "labels.env"),
        (json!({"name": "x", "labels": {"": "prod"}}), "labels."),
        (json!({"name": "x", "labels": {"env": "x".repeat(64)}}), "labels.env"),
        (json!({"name": "x", "labels": (0..33).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}), "labels"),
    ];
    for (body, field) in cases {
        let (status, err) = app.admin(Method::POST, "/workspaces", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {err}");
        assert_eq!(err["error"]["details"][0]["field"], field, "{err}");
    }
    let (status, err) = app.admin(Method::POST, "/workspaces", Some(json!({"name": "x", "labels": {"env": 1}}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    for query in ["?labels=env", "?labels=env=a%20b", "?labels==prod", "?labels=env=prod,env=dev"] {
        let (status, err) = app.admin(Method::GET, &format!("/workspaces{query}"), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {err}");
        assert_eq!(err["error"]["details"][0]["field"], "labels", "{err}");
    }
    // Nothing was created by the refused requests.
    let list = app.ok(Method::GET, "/workspaces", None, 200).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn only_installation_keys_change_labels_and_a_selection_never_crosses_a_key_s_workspaces() {
    let app = TestApp::spawn().await;
    let mine = app.ok(Method::POST, "/workspaces", Some(json!({"name": "mine", "labels": {"env": "prod"}})), 201).await;
    app.ok(Method::POST, "/workspaces", Some(json!({"name": "theirs", "labels": {"env": "prod"}})), 201).await;
    let id = mine["id"].as_str().unwrap();
    let key = app
        .ok(
            Method::POST,
            "/api-keys",
            Some(json!({"name": "admin of mine", "scope": "workspaces", "workspaces": [{"workspace_id": id, "role": "admin"}]})),
            201,
        )
        .await;
    let key = key["key"].as_str().unwrap();

    // The workspace's admin may rename it, not relabel it (labels decide which blueprints apply).
    let (status, err) =
        app.call(Method::PATCH, &format!("/api/v1/workspaces/{id}"), Some(key), Some(json!({"labels": {"env": "dev"}}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("labels"), "{err}");
    let (status, _) = app.call(Method::PATCH, &format!("/api/v1/workspaces/{id}"), Some(key), Some(json!({"name": "renamed"}))).await;
    assert_eq!(status, StatusCode::OK);
    let shown = app.ok(Method::GET, &format!("/workspaces/{id}"), None, 200).await;
    assert_eq!(shown["labels"], json!({"env": "prod"}));

    // Listing by a label both workspaces hold shows the key only its own.
    let (status, list) = app.call(Method::GET, "/api/v1/workspaces?labels=env=prod", Some(key), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names(&list), ["renamed"]);
    let (_, list) = app.call(Method::GET, "/api/v1/workspaces?labels=env=dev", Some(key), None).await;
    assert_eq!(names(&list), Vec::<&str>::new());
    // And an embed session sees its own workspace only, labels or not.
    let session = app.ok(Method::POST, "/sessions", Some(json!({"workspace_id": id, "role": "admin"})), 201).await;
    let token = session["access_token"].as_str().unwrap();
    let (status, list) = app.call(Method::GET, "/api/v1/workspaces?labels=env=prod", Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(names(&list), ["renamed"]);
}

#[tokio::test]
async fn concurrent_changes_to_a_workspace_never_undo_each_other() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("acme").await;
    let path = format!("/api/v1/workspaces/{}", ws.id);
    for round in 0..10 {
        // Each request changes one field; whatever their order, every one of them is kept.
        let label = app.call(Method::PATCH, &path, Some(ADMIN_KEY), Some(json!({"labels": {"round": format!("r{round}")}})));
        let limits = app.call(Method::PATCH, &path, Some(ADMIN_KEY), Some(json!({"limits": {"connections": 10 + round}})));
        let description = app.call(Method::PATCH, &path, Some(ADMIN_KEY), Some(json!({"description": format!("d{round}")})));
        let names = (0..4).map(|i| app.call(Method::PATCH, &path, Some(ADMIN_KEY), Some(json!({"name": format!("acme-{round}-{i}")}))));
        let (l, m, d, n) = tokio::join!(label, limits, description, futures::future::join_all(names));
        for (status, body) in [l, m, d].iter().chain(n.iter()) {
            assert_eq!(*status, StatusCode::OK, "{body}");
        }
        let now = app.ok(Method::GET, &format!("/workspaces/{}", ws.id), None, 200).await;
        assert_eq!(now["labels"]["round"], format!("r{round}"), "round {round}: {now}");
        assert_eq!(now["limits"]["connections"], 10 + round, "round {round}: {now}");
        assert_eq!(now["description"], format!("d{round}"), "round {round}: {now}");
        assert!(now["name"].as_str().unwrap().starts_with(&format!("acme-{round}-")), "round {round}: {now}");
    }
}
