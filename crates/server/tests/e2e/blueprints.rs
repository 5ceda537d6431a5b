//! Blueprints stored on the server: versions, idempotent submission, every problem with its line,
//! and installation keys only.

use crate::harness::*;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

const EXAMPLE: &str = include_str!("../../../../docs/examples/alerts.blueprint.yaml");

/// POSTs `text` as `content_type` with the admin key (or `key`).
async fn submit(app: &TestApp, text: impl Into<reqwest::Body>, content_type: &str, key: Option<&str>) -> (StatusCode, Value) {
    let res = app
        .client
        .post(format!("{}/api/v1/blueprints", app.base))
        .bearer_auth(key.unwrap_or(ADMIN_KEY))
        .header("content-type", content_type)
        .body(text)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_blueprint_is_stored_in_versions_and_resubmitting_it_changes_nothing() {
    let app = TestApp::spawn().await;
    let (status, first) = submit(&app, EXAMPLE, "application/yaml", None).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(
        (first["name"].as_str(), first["version"].as_i64(), first["changed"].as_bool()),
        (Some("alerts-and-signups"), Some(1), Some(true))
    );
    let id = first["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("bp_"));

    // The same document again, even reformatted as JSON, is the same version.
    let (status, again) = submit(&app, EXAMPLE, "application/yaml", None).await;
    assert_eq!((status, again["version"].as_i64(), again["changed"].as_bool()), (StatusCode::OK, Some(1), Some(false)), "{again}");
    let shown = app.ok(Method::GET, "/blueprints/alerts-and-signups", None, 200).await;
    let (status, as_json) = submit(&app, shown["document"].to_string(), "application/json", None).await;
    assert_eq!((status, as_json["changed"].as_bool()), (StatusCode::OK, Some(false)), "{as_json}");

    // A change is the next version; the old one stays readable.
    let changed = EXAMPLE.replace("default: \"#alerts\"", "default: \"#ops\"");
    let (status, second) = submit(&app, changed, "text/yaml", None).await;
    assert_eq!((status, second["version"].as_i64()), (StatusCode::CREATED, Some(2)), "{second}");
    assert_eq!(second["id"], id.as_str());
    let current = app.ok(Method::GET, &format!("/blueprints/{id}"), None, 200).await;
    assert_eq!(current["shown_version"], 2);
    assert_eq!(current["document"]["variables"]["channel"]["default"], "#ops");
    assert!(current["source"].as_str().unwrap().contains("# One integration for every environment"), "the source keeps its comments");
    let old = app.ok(Method::GET, &format!("/blueprints/{id}?version=1"), None, 200).await;
    assert_eq!((old["version"].as_i64(), old["shown_version"].as_i64()), (Some(2), Some(1)));
    assert_eq!(old["document"]["variables"]["channel"]["default"], "#alerts");
    let (status, _) = app.admin(Method::GET, &format!("/blueprints/{id}?version=3"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = submit(&app, "version: 1\nname: second\n", "application/yaml", None).await;
    assert_eq!(status, StatusCode::CREATED);
    let list = app.ok(Method::GET, "/blueprints", None, 200).await;
    let names: Vec<&str> = list["data"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alerts-and-signups", "second"]);

    let audit = app.ok(Method::GET, "/audit-log", None, 200).await.to_string();
    assert!(audit.contains("blueprint.create") && audit.contains("blueprint.update"), "{audit}");

    app.ok(Method::DELETE, "/blueprints/second", None, 204).await;
    app.ok(Method::DELETE, &format!("/blueprints/{id}"), None, 204).await;
    let (status, _) = app.admin(Method::GET, &format!("/blueprints/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.admin(Method::DELETE, &format!("/blueprints/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Deleted, its name starts again at version 1.
    let (_, again) = submit(&app, EXAMPLE, "application/yaml", None).await;
    assert_eq!(again["version"], 1);
}

#[tokio::test]
async fn every_problem_of_a_submitted_blueprint_names_its_line_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let broken = "version: 1\nname: demo\nconnections:\n  s: {type: slak, name: S}\nrules:\n  r: {name: R, event: a, connection: t}\n";
    let (status, err) = submit(&app, broken, "application/yaml", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    let details = err["error"]["details"].as_array().unwrap();
    assert_eq!(details.len(), 2, "{err}");
    assert_eq!(
        (details[0]["field"].as_str(), details[0]["line"].as_u64(), details[0]["column"].as_u64()),
        (Some("connections.s.type"), Some(4), Some(7))
    );
    assert_eq!((details[1]["field"].as_str(), details[1]["line"].as_u64()), (Some("rules.r.connection"), Some(6)));

    // ${env:...} is the CLI's to fill in; the server has nothing to fill it with.
    let env = "version: 1\nname: demo\nconnections:\n  s:\n    type: webhook\n    name: S\n    config: {url: '${env:HOOK_URL}'}\n";
    let (status, err) = submit(&app, env, "application/yaml", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["details"][0]["field"], "connections.s.config.url");
    assert!(err["error"]["details"][0]["message"].as_str().unwrap().contains("filled in by the CLI"), "{err}");

    let (status, err) = submit(&app, "version: 1\nname: [\n", "application/yaml", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert!(err["error"]["details"][0]["line"].as_u64().is_some(), "{err}");
    let (status, err) = submit(&app, vec![0xff, 0xfe, 0x00], "application/yaml", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, err) = submit(&app, "", "application/yaml", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    // An alias bomb is refused at its first alias, before it could expand.
    let bomb = format!("version: 1\nname: demo\ndescription: &a {}\nmappings:\n  m: [*a, *a, *a, *a]\n", "x".repeat(1000));
    let (status, err) = submit(&app, bomb, "application/yaml", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert!(err.to_string().contains("aliases"), "{err}");

    let list = app.ok(Method::GET, "/blueprints", None, 200).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "nothing refused was stored");
}

#[tokio::test]
async fn only_installation_keys_touch_blueprints() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("acme").await;
    let (status, _) = submit(&app, EXAMPLE, "application/yaml", None).await;
    assert_eq!(status, StatusCode::CREATED);
    let key = app
        .ok(
            Method::POST,
            "/api-keys",
            Some(json!({"name": "acme admin", "scope": "workspaces", "workspaces": [{"workspace_id": ws.id, "role": "admin"}]})),
            201,
        )
        .await;
    let key = key["key"].as_str().unwrap().to_owned();
    let read_only = app.ok(Method::POST, "/api-keys", Some(json!({"name": "ro", "scope": "read_only"})), 201).await;
    let read_only = read_only["key"].as_str().unwrap().to_owned();
    let session = app.ok(Method::POST, "/sessions", Some(json!({"workspace_id": ws.id, "role": "admin"})), 201).await;
    let session = session["access_token"].as_str().unwrap().to_owned();

    for credential in [key.as_str(), session.as_str(), ws.pk.as_str()] {
        let (status, _) = submit(&app, EXAMPLE.replace("alerts-and-signups", "mine"), "application/yaml", Some(credential)).await;
        assert!([StatusCode::FORBIDDEN, StatusCode::UNAUTHORIZED].contains(&status), "{status}");
        let (status, _) = app.call(Method::GET, "/api/v1/blueprints", Some(credential), None).await;
        assert!([StatusCode::FORBIDDEN, StatusCode::UNAUTHORIZED].contains(&status), "{status}");
        let (status, _) = app.call(Method::DELETE, "/api/v1/blueprints/alerts-and-signups", Some(credential), None).await;
        assert!([StatusCode::FORBIDDEN, StatusCode::UNAUTHORIZED].contains(&status), "{status}");
    }
    // A read-only key reads, and only reads.
    let (status, _) = app.call(Method::GET, "/api/v1/blueprints/alerts-and-signups", Some(&read_only), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = submit(&app, "version: 1\nname: ro\n", "application/yaml", Some(&read_only)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let list = app.ok(Method::GET, "/blueprints", None, 200).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn concurrent_submissions_of_one_document_store_one_version() {
    let app = TestApp::spawn().await;
    let submissions = (0..6).map(|_| submit(&app, EXAMPLE, "application/yaml", None));
    let answers = futures::future::join_all(submissions).await;
    let created = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    let unchanged = answers.iter().filter(|(s, b)| *s == StatusCode::OK && b["changed"] == false).count();
    assert_eq!((created, unchanged), (1, 5), "{answers:?}");
    assert!(answers.iter().all(|(_, b)| b["version"] == 1), "{answers:?}");
}
