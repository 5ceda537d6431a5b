//! Workspaces, connections and rules as resources; operational endpoints; the OpenAPI document.

use crate::harness::*;
use axum::http::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn workspaces_are_created_listed_updated_and_deleted() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("acme-prod").await;
    assert!(ws.id.starts_with("ws_") && ws.pk.starts_with("pk_"));
    let got = app.ok(Method::GET, &format!("/workspaces/{}", ws.id), None, 200).await;
    assert_eq!(got["name"], "acme-prod");
    let patched = app.ok(Method::PATCH, &format!("/workspaces/{}", ws.id), Some(json!({"description": "production"})), 200).await;
    assert_eq!((patched["name"].as_str(), patched["description"].as_str()), (Some("acme-prod"), Some("production")));
    let cleared = app.ok(Method::PATCH, &format!("/workspaces/{}", ws.id), Some(json!({"description": null})), 200).await;
    assert!(cleared["description"].is_null());
    let (s, b) = app.admin(Method::PUT, &format!("/workspaces/{}", ws.id), Some(json!({}))).await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")));
    app.workspace("acme-dev").await;
    let listed = app.ok(Method::GET, "/workspaces?limit=1", None, 200).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert!(listed["next_cursor"].is_string());

    let (s, b) = app.admin(Method::POST, "/workspaces", Some(json!({"name": ""}))).await;
    assert_eq!((s, b["error"]["details"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("name")));
    let (s, _) = app.admin(Method::POST, "/workspaces", Some(json!({"name": 5}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    app.emit_ok(&ws, json!({"event": "x"})).await;
    app.ok(Method::DELETE, &format!("/workspaces/{}", ws.id), None, 204).await;
    let (s, _) = app.admin(Method::GET, &format!("/workspaces/{}", ws.id), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.emit(&ws, json!({"event": "x"})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a deleted workspace's key stops working");
    let (s, _) = app.admin(Method::GET, "/workspaces/ws_nonsense", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.shutdown().await;
}

#[tokio::test]
async fn connections_validate_their_settings_and_resist_deletion_while_in_use() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("a").await;
    let path = format!("/workspaces/{}/connections", ws.id);
    let cases = [
        (json!({"type": "pigeon", "name": "x", "config": {}}), "type"),
        (json!({"type": "webhook", "name": "x", "config": {}}), "config.url"),
        (json!({"type": "webhook", "name": "x", "config": {"url": "ftp://x"}}), "config.url"),
        (json!({"type": "webhook", "name": "x", "config": {"url": "http://127.0.0.1/", "method": "GET"}}), "config.method"),
        (
            json!({"type": "webhook", "name": "x", "config": {"url": "http://127.0.0.1/", "headers": {"Webhook-Id": "x"}}}),
            "config.headers.Webhook-Id",
        ),
        (
            json!({"type": "webhook", "name": "x", "config": {"url": "http://127.0.0.1/"}, "retry_policy": {"max_attempts": 0}}),
            "retry_policy.max_attempts",
        ),
        (
            json!({"type": "webhook", "name": "x", "config": {"url": "http://127.0.0.1/"}, "retry_policy": {"tries": 3}}),
            "retry_policy.tries",
        ),
        (json!({"type": "webhook", "name": "x", "config": {"url": "http://127.0.0.1/"}, "timeout_ms": 5}), "timeout_ms"),
        (
            json!({"type": "webhook", "name": "x", "config": {"url": "http://127.0.0.1/"}, "credentials": {"api_key": "k"}}),
            "credentials.api_key",
        ),
    ];
    for (body, field) in cases {
        let (s, b) = app.admin(Method::POST, &path, Some(body.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {b}");
        let fields: Vec<_> = b["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap().to_owned()).collect();
        assert!(fields.contains(&field.to_owned()), "{body}: expected {field} in {fields:?}");
    }

    let receiver = Receiver::status(200).await;
    let conn = app.webhook(&ws, &receiver.url(), json!({"credentials": {"bearer_token": "s3cr3t-token"}})).await;
    assert_eq!(conn["config"]["method"], "POST");
    assert_eq!(conn["retry_policy"]["max_attempts"], 5);
    let id = conn["id"].as_str().unwrap();
    let patched = app
        .ok(
            Method::PATCH,
            &format!("/connections/{id}"),
            Some(json!({"name": "renamed", "retry_policy": {"max_attempts": 2}, "credentials": null})),
            200,
        )
        .await;
    assert_eq!((patched["name"].as_str(), patched["retry_policy"]["max_attempts"].as_u64()), (Some("renamed"), Some(2)));
    assert_eq!(patched["has_credentials"], false);
    assert_eq!(patched["retry_policy"]["initial_delay_ms"], 20, "unnamed policy fields keep their values");
    let listed = app.ok(Method::GET, &path, None, 200).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains("s3cr3t-token"));

    let rule = app.rule(&ws, &conn, "*", json!({})).await;
    let (s, b) = app.admin(Method::DELETE, &format!("/connections/{id}"), None).await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
    assert!(b["error"]["message"].as_str().unwrap().contains(rule["id"].as_str().unwrap()));
    app.ok(Method::DELETE, &format!("/connections/{id}?force=true"), None, 204).await;
    let (s, _) = app.admin(Method::GET, &format!("/rules/{}", rule["id"].as_str().unwrap()), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "its rules went with it");

    // Without active rules, deletion needs no force.
    let conn = app.webhook(&ws, &receiver.url(), json!({})).await;
    app.rule(&ws, &conn, "*", json!({"active": false})).await;
    app.ok(Method::DELETE, &format!("/connections/{}", conn["id"].as_str().unwrap()), None, 204).await;
    app.shutdown().await;
}

#[tokio::test]
async fn rules_validate_patterns_conditions_and_actions() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("a").await;
    let receiver = Receiver::status(200).await;
    let conn = app.webhook(&ws, &receiver.url(), json!({})).await;
    let path = format!("/workspaces/{}/rules", ws.id);
    let base = |extra: serde_json::Value| {
        let mut b = json!({"name": "r", "event": "user.*", "connection_id": conn["id"]});
        merge(&mut b, extra);
        b
    };
    let cases = [
        (base(json!({"event": "user*"})), "event"),
        (base(json!({"connection_id": "conn_01J0000000000000000000000"})), "connection_id"),
        (base(json!({"action": "send_fax"})), "action"),
        (base(json!({"conditions": {"all": [{"path": "payload.x", "op": "between", "value": 1}]}})), "conditions.all[0].op"),
        (base(json!({"conditions": {"path": "secrets", "op": "exists"}})), "conditions.path"),
    ];
    for (body, field) in cases {
        let (s, b) = app.admin(Method::POST, &path, Some(body.clone())).await;
        assert_eq!((s, b["error"]["details"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{body}: {b}");
    }
    let rule = app.ok(Method::POST, &path, Some(base(json!({}))), 201).await;
    assert_eq!(rule["action"], "send_webhook");
    let id = rule["id"].as_str().unwrap();
    let patched = app
        .ok(Method::PATCH, &format!("/rules/{id}"), Some(json!({"conditions": {"path": "payload.plan", "op": "eq", "value": "pro"}})), 200)
        .await;
    assert_eq!(patched["conditions"]["op"], "eq");

    // A changed rule applies to the next event at once.
    let plain = app.emit_ok(&ws, json!({"event": "user.created", "payload": {"plan": "free"}})).await;
    assert_eq!(app.event(&plain).await["deliveries"].as_array().unwrap().len(), 0);
    let pro = app.emit_ok(&ws, json!({"event": "user.created", "payload": {"plan": "pro"}})).await;
    assert_eq!(app.event(&pro).await["deliveries"].as_array().unwrap().len(), 1);
    app.ok(Method::PATCH, &format!("/rules/{id}"), Some(json!({"conditions": null})), 200).await;
    let again = app.emit_ok(&ws, json!({"event": "user.created", "payload": {"plan": "free"}})).await;
    assert_eq!(app.event(&again).await["deliveries"].as_array().unwrap().len(), 1);

    app.ok(Method::DELETE, &format!("/rules/{id}"), None, 204).await;
    let after = app.emit_ok(&ws, json!({"event": "user.created"})).await;
    assert_eq!(app.event(&after).await["deliveries"].as_array().unwrap().len(), 0);
    app.shutdown().await;
}

#[tokio::test]
async fn health_readiness_metrics_and_the_catalog_are_served() {
    let app = TestApp::spawn().await;
    let (s, _) = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("ready")));

    let receiver = Receiver::status(200).await;
    let ws = app.workspace("a").await;
    let conn = app.webhook(&ws, &receiver.url(), json!({})).await;
    app.rule(&ws, &conn, "*", json!({})).await;
    let id = app.emit_ok(&ws, json!({"event": "x"})).await;
    app.wait_event(&id, "completed").await;
    let text = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    for metric in ["switchyard_events_ingested_total", "switchyard_attempts_total", "switchyard_attempt_duration_seconds_bucket"] {
        assert!(text.contains(metric), "{metric} missing from /metrics");
    }

    let catalog = app.ok(Method::GET, "/integrations", None, 200).await;
    let webhook = catalog["data"].as_array().unwrap().iter().find(|i| i["type"] == "webhook").unwrap().clone();
    assert_eq!(webhook["actions"][0]["key"], "send_webhook");
    assert_eq!(webhook["auth"]["type"], "none");
    let (s, b) = app.call(Method::GET, "/nowhere", None, None).await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    app.shutdown().await;
}

#[tokio::test]
async fn the_committed_openapi_document_matches_the_code() {
    let app = TestApp::spawn().await;
    let served =
        app.client.get(format!("{}/api/v1/openapi.json", app.base)).send().await.unwrap().json::<serde_json::Value>().await.unwrap();
    let generated = serde_json::to_value(switchyard_server::api::openapi()).unwrap();
    assert_eq!(served, generated);
    for path in ["/api/v1/events", "/api/v1/workspaces/{ws}/connections", "/api/v1/deliveries/{id}/replay"] {
        assert!(generated["paths"].get(path).is_some(), "{path} is documented");
    }
    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(committed_path).expect("docs/openapi.json is committed"))
            .expect("docs/openapi.json is JSON");
    assert!(committed == generated, "docs/openapi.json is out of date: run `cargo run -q -p switchyard -- openapi > docs/openapi.json`");
    app.shutdown().await;
}

#[tokio::test]
async fn a_master_key_other_than_the_databases_is_refused_at_start() {
    use switchyard_core::crypto::MasterKey;
    use switchyard_server::config::Config;
    let dir = tempfile::tempdir().unwrap();
    let url = switchyard_store::testing::database_url(dir.path()).await;
    let config = |key: String| {
        let mut c = Config::new(url.clone());
        c.listen = "127.0.0.1:0".parse().unwrap();
        c.admin_key = Some(ADMIN_KEY.into());
        c.master_key = Some(key);
        c
    };
    let original = MasterKey::generate_base64();
    let first = switchyard_server::Application::build(config(original.clone())).await.expect("first start");
    drop(first);
    let error = match switchyard_server::Application::build(config(MasterKey::generate_base64())).await {
        Ok(_) => panic!("a wrong master key must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("not one this database's secrets were sealed with"), "{error}");
    assert!(!error.contains(&original));
    let error = match switchyard_server::Application::build(config("too-short".into())).await {
        Ok(_) => panic!("a malformed master key must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("SWITCHYARD_MASTER_KEY is malformed"), "{error}");
    switchyard_server::Application::build(config(original)).await.expect("the original key still works");
}

#[tokio::test]
async fn llms_txt_tells_agents_where_the_reference_is_and_what_not_to_do() {
    let app = TestApp::spawn().await;
    let res = app.client.get(format!("{}/llms.txt", app.base)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-type"], "text/markdown; charset=utf-8");
    let text = res.text().await.unwrap();
    assert!(text.starts_with("# Switchyard\n"), "an llms.txt opens with the name");
    assert!(text.contains("](/api/v1/openapi.json)"));
    assert!(text.contains("## Do not"));
    // Every API path it names exists in the document.
    let (_, doc) = app.call(axum::http::Method::GET, "/api/v1/openapi.json", None, None).await;
    for path in text.split('`').filter(|s| s.contains("/api/v1/")).filter_map(|s| s.split_whitespace().find(|w| w.starts_with("/api/v1/")))
    {
        let path = path.trim_end_matches([',', '.', ')']);
        if path == "/api/v1/openapi.json" {
            continue;
        }
        assert!(doc["paths"].get(path).is_some(), "llms.txt names {path}, which the API does not have");
    }
    app.shutdown().await;
}
