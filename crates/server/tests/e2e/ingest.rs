//! Ingestion: validation, limits, idempotency, bulk.

use crate::harness::*;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn an_idempotency_key_returns_the_first_event_and_creates_nothing_new() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::status(200).await;
    let ws = app.workspace("acme").await;
    let conn = app.webhook(&ws, &receiver.url(), json!({})).await;
    app.rule(&ws, &conn, "*", json!({})).await;

    let send = |key: &'static str| {
        app.client
            .post(format!("{}/api/v1/events", app.base))
            .bearer_auth(&ws.pk)
            .header("Idempotency-Key", key)
            .json(&json!({"event": "order.created", "payload": {"n": 1}}))
            .send()
    };
    let first = send("order-1").await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let again = send("order-1").await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(first, again, "the repeat returns the first event's body");

    // The body field works too, and another key is another event.
    let (status, via_field) = app.emit(&ws, json!({"event": "order.created", "idempotency_key": "order-1"})).await;
    assert_eq!((status, &via_field["id"]), (StatusCode::OK, &first["id"]));
    let other = app.emit_ok(&ws, json!({"event": "order.created", "idempotency_key": "order-2"})).await;
    assert_ne!(Value::String(other), first["id"]);

    // Concurrent repeats make one event.
    let (a, b, c) = tokio::join!(send("order-3"), send("order-3"), send("order-3"));
    let mut ids = std::collections::HashSet::new();
    for response in [a, b, c] {
        let v: Value = response.unwrap().json().await.unwrap();
        ids.insert(v["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);

    receiver.wait_for(3).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 3, "repeats create no new deliveries");
    let (_, events) = app.admin(Method::GET, &format!("/workspaces/{}/events", ws.id), None).await;
    assert_eq!(events["data"].as_array().unwrap().len(), 3);

    // The key is per workspace.
    let other_ws = app.workspace("other").await;
    let (status, _) = app.emit(&other_ws, json!({"event": "order.created", "idempotency_key": "order-1"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.shutdown().await;
}

#[tokio::test]
async fn bulk_accepts_the_valid_events_and_names_each_rejected_one() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("acme").await;
    let mut batch: Vec<Value> = (0..10).map(|i| json!({"event": "row.imported", "payload": {"i": i}})).collect();
    batch[3] = json!({"event": "bad name!"});
    batch[7] = json!({"event": "ok", "payload": [1, 2]});
    batch[8] = json!({"payload": {}});
    let (status, body) = app.call(Method::POST, "/api/v1/events/bulk", Some(&ws.pk), Some(json!(batch))).await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert_eq!(body["accepted"], 7);
    assert_eq!(body["rejected"], 3);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 10);
    assert_eq!(results[3]["error"]["code"], "validation_failed");
    assert_eq!(results[3]["error"]["details"][0]["field"], "event");
    assert_eq!(results[7]["error"]["details"][0]["field"], "payload");
    assert_eq!(results[8]["error"]["details"][0]["field"], "event");
    let id = results[0]["id"].as_str().unwrap();
    assert_eq!(app.event(id).await["payload"], json!({"i": 0}));

    let all_good: Vec<Value> = (0..1000).map(|i| json!({"event": "row", "payload": {"i": i}})).collect();
    let (status, body) = app.call(Method::POST, "/api/v1/events/bulk", Some(&ws.pk), Some(json!(all_good))).await;
    assert_eq!((status, body["accepted"].as_u64()), (StatusCode::ACCEPTED, Some(1000)));

    let too_many: Vec<Value> = (0..1001).map(|_| json!({"event": "row"})).collect();
    let (status, body) = app.call(Method::POST, "/api/v1/events/bulk", Some(&ws.pk), Some(json!(too_many))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")));
    let (status, _) = app.call(Method::POST, "/api/v1/events/bulk", Some(&ws.pk), Some(json!([]))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    app.shutdown().await;
}

async fn raw(app: &TestApp, ws: &Workspace, body: &'static str) -> (StatusCode, Value) {
    let r = app
        .client
        .post(format!("{}/api/v1/events", app.base))
        .header("X-Publishable-Key", &ws.pk)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

#[tokio::test]
async fn malformed_wrong_typed_and_invalid_bodies_get_the_documented_errors() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("acme").await;
    let (s, b) = raw(&app, &ws, "{\"event\": ").await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
    let (s, b) = raw(&app, &ws, "{\"event\": 42}").await;
    assert_eq!((s, b["error"]["details"][0]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("event")));
    let (s, b) = raw(&app, &ws, "{\"event\": \"a\", \"resource\": []}").await;
    assert_eq!((s, b["error"]["details"][0]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("resource")));
    let (s, b) = raw(&app, &ws, "{\"payload\": {}}").await;
    assert_eq!((s, b["error"]["details"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("event")));
    let (s, b) = raw(&app, &ws, "{\"event\": \"a\", \"payload\": \"text\"}").await;
    assert_eq!((s, b["error"]["details"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("payload")));
    let (s, b) = raw(&app, &ws, "{\"event\": \"a\", \"occurred_at\": \"yesterday\"}").await;
    assert_eq!((s, b["error"]["details"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("occurred_at")));
    let (s, b) = raw(&app, &ws, "{\"event\": \"a\", \"paylod\": {}}").await;
    assert_eq!((s, b["error"]["details"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("paylod")));
    let (s, _) = raw(&app, &ws, "[]").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let long_name = "x".repeat(129);
    let (s, b) = app.emit(&ws, json!({"event": long_name})).await;
    assert_eq!((s, b["error"]["details"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("event")));

    let big = "y".repeat(300 * 1024);
    let (s, b) = app.emit(&ws, json!({"event": "big", "payload": {"blob": big}})).await;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));
    let fits = "y".repeat(250 * 1024);
    let (s, _) = app.emit(&ws, json!({"event": "big", "payload": {"blob": fits}})).await;
    assert_eq!(s, StatusCode::ACCEPTED);

    // Every error has the documented shape.
    assert!(b["error"]["message"].is_string());
    app.shutdown().await;
}

#[tokio::test]
async fn history_filters_and_paginates_newest_first() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("acme").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let resource = if i % 2 == 0 { "even" } else { "odd" };
        ids.push(app.emit_ok(&ws, json!({"event": format!("n.{i}"), "resource": resource, "resource_id": format!("r{i}")})).await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/workspaces/{}/events?limit=3&cursor={c}", ws.id),
            None => format!("/workspaces/{}/events?limit=3", ws.id),
        };
        let page = app.ok(Method::GET, &path, None, 200).await;
        seen.extend(page["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);

    let odd = app.ok(Method::GET, &format!("/workspaces/{}/events?resource=odd", ws.id), None, 200).await;
    assert_eq!(odd["data"].as_array().unwrap().len(), 3);
    let one = app.ok(Method::GET, &format!("/workspaces/{}/events?event=n.4&resource_id=r4", ws.id), None, 200).await;
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    let done = app.ok(Method::GET, &format!("/workspaces/{}/events?status=completed", ws.id), None, 200).await;
    assert_eq!(done["data"].as_array().unwrap().len(), 7);
    let future = app.ok(Method::GET, &format!("/workspaces/{}/events?since=2999-01-01T00:00:00Z", ws.id), None, 200).await;
    assert!(future["data"].as_array().unwrap().is_empty());
    let (s, b) = app.admin(Method::GET, &format!("/workspaces/{}/events?limit=500", ws.id), None).await;
    assert_eq!((s, b["error"]["details"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("limit")));
    let (s, _) = app.admin(Method::GET, &format!("/workspaces/{}/events?since=nope", ws.id), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    app.shutdown().await;
}
