//! The smaller holes a tenant could use, each closed: see docs/security.md.

use crate::harness::*;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn a_rule_test_payload_is_held_to_the_size_of_an_event() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("t").await;
    let conn = app.webhook(&ws, "http://127.0.0.1:9/x", json!({})).await;
    let rule = app.rule(&ws, &conn, "*", json!({})).await;
    let path = format!("/rules/{}/test", rule["id"].as_str().unwrap());
    let big = "x".repeat(300 * 1024);
    let (status, body) = app.admin(Method::POST, &path, Some(json!({"payload": {"blob": big}}))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn destination_addresses_that_reach_private_networks_are_refused_when_saved() {
    let app = TestApp::spawn_with(|c| c.allow_private_destinations = false).await;
    let ws = app.workspace("ssrf").await;
    for url in [
        "http://[::ffff:0:7f00:1]/x",   // IPv4-translated 127.0.0.1
        "http://[::ffff:0:a9fe:a9fe]/", // IPv4-translated 169.254.169.254
        "http://[2001::5efe:7f00:1]/",  // Teredo
        "http://[100::1]/",             // discard-only
        "http://localhost./x",
        "http://metadata.localhost./",
    ] {
        let body = json!({"type": "webhook", "name": "w", "config": {"url": url}});
        let (status, v) = app.admin(Method::POST, &format!("/workspaces/{}/connections", ws.id), Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {v}");
        assert_eq!(v["error"]["details"][0]["field"], "config.url", "{url}: {v}");
    }
}

#[tokio::test]
async fn x_publishable_key_takes_publishable_keys_only() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("pk").await;
    let session = app.ok(Method::POST, "/sessions", Some(json!({"workspace_id": ws.id, "role": "admin"})), 201).await;
    let st = session["access_token"].as_str().unwrap();
    let send = |key: String, path: &'static str, method: Method| {
        let request = app.client.request(method, format!("{}{path}", app.base)).header("X-Publishable-Key", key);
        async move {
            let r = request.json(&json!({"event": "a.b", "payload": {}})).send().await.unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(send(ws.pk.clone(), "/api/v1/events", Method::POST).await, 202);
    // An admin key or a session token in this header is no credential at all.
    assert_eq!(send(ADMIN_KEY.to_owned(), "/api/v1/workspaces", Method::GET).await, 401);
    assert_eq!(send(ADMIN_KEY.to_owned(), "/api/v1/events", Method::POST).await, 401);
    assert_eq!(send(st.to_owned(), "/api/v1/workspaces/x/connections", Method::GET).await, 401);
    assert_eq!(send(st.to_owned(), "/api/v1/events", Method::POST).await, 401);
}

#[tokio::test]
async fn webhook_headers_are_bounded_and_cannot_steer_the_connection() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("h").await;
    let path = format!("/workspaces/{}/connections", ws.id);
    let create = |config_headers: Value, secret_headers: Value| {
        let body = json!({"type": "webhook", "name": "w", "config": {"url": "http://127.0.0.1:9/x", "headers": config_headers},
                          "credentials": {"headers": secret_headers}});
        app.admin(Method::POST, &path, Some(body))
    };
    for name in ["Upgrade", "TE", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Trailer", "Expect", "Connection", "Host"] {
        let (status, v) = create(json!({name: "x"}), json!({})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {v}");
        let (status, v) = create(json!({}), json!({name: "x"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {v}");
    }
    let (status, v) = create(json!({"X-Big": "v".repeat(5_000)}), json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("longer than 4096"), "{v}");
    let (status, v) = create(json!({"X-".to_owned() + &"n".repeat(200): "v"}), json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let many: serde_json::Map<String, Value> = (0..33).map(|i| (format!("X-H{i}"), json!("v"))).collect();
    let (status, v) = create(Value::Object(many.clone()), json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("limit is 32"), "{v}");
    let (status, v) = create(json!({}), Value::Object(many)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (status, v) = create(json!({"X-Team": "a"}), json!({"X-Api-Key": "k"})).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
}

#[tokio::test]
async fn allowed_origins_must_be_origins_as_browsers_send_them() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("o").await;
    for origin in [
        "https://app.example.com/path",
        "https://app.example.com/",
        "https://app.example.com?x=1",
        "https://app.example.com#top",
        "https://user@app.example.com",
        "https://user:pw@app.example.com",
        "https://app.example.com:443",
        "https://App.Example.com",
        "javascript:alert(1)",
        "app.example.com",
        "*",
    ] {
        let body = json!({"workspace_id": ws.id, "role": "viewer", "allowed_origins": [origin]});
        let (status, v) = app.admin(Method::POST, "/sessions", Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{origin}: {v}");
        assert_eq!(v["error"]["details"][0]["field"], "allowed_origins[0]");
    }
    let body = json!({"workspace_id": ws.id, "role": "viewer", "allowed_origins": ["https://app.example.com", "http://localhost:3000"]});
    app.ok(Method::POST, "/sessions", Some(body), 201).await;
}

#[tokio::test]
async fn an_expired_session_cannot_be_refreshed_back_to_life() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("s").await;
    // A session that expired a second ago, written as the server would have.
    let store = switchyard_store::open(&app.database_url).await.unwrap();
    let now = switchyard_core::now_millis();
    let token = "st_expired_session_token_0123456789abcdefghij";
    let session = switchyard_core::model::Session {
        id: switchyard_core::ids::SessionId::generate(),
        workspace_id: switchyard_core::ids::WorkspaceId::parse(&ws.id).unwrap(),
        role: switchyard_core::model::SessionRole::Admin,
        scopes: vec![],
        allowed_origins: vec![],
        external_user_id: None,
        branding: None,
        resource: None,
        expires_at: now - 1_000,
        created_at: now - 60_000,
    };
    store.create_session(&session, &switchyard_core::crypto::hash_token(token), None).await.unwrap();
    let (status, _) = app.call(Method::GET, &format!("/api/v1/workspaces/{}/rules", ws.id), Some(token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, v) = app.admin(Method::POST, &format!("/sessions/{}/refresh", session.id.as_str()), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"), "{v}");
    let (status, _) = app.call(Method::GET, &format!("/api/v1/workspaces/{}/rules", ws.id), Some(token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "still refused");
}

/// A destination that echoes the request's credentials and payload back, as a debugging endpoint
/// would; it fails so that the answer is also quoted in the error.
async fn echo() -> Receiver {
    Receiver::start(|_, r| {
        let auth = r.headers.get("authorization").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let key = r.headers.get("x-key").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let guess = r.json()["data"]["guess"].clone();
        let body = json!({"message": format!("rejected {guess} with {auth} and x-key: {key}"), "authorization": auth}).to_string();
        Reply::WithHeaders(422, vec![("content-type", "application/json".into())], body)
    })
    .await
}

#[tokio::test]
async fn recorded_attempts_hide_credentials_where_placed_and_never_confirm_a_guess() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("leak").await;
    let receiver = echo().await;
    let password = "hunter2!";
    let conn = app
        .webhook(&ws, &receiver.url(), json!({"credentials": {"username": "ada", "password": password, "headers": {"X-Key": "k9"}}}))
        .await;
    app.rule(&ws, &conn, "*", json!({})).await;
    let mut seen = Vec::new();
    for guess in [password, "hunter3!"] {
        let id = app.emit_ok(&ws, json!({"event": "guess.made", "payload": {"guess": guess}})).await;
        let event = app.wait_event(&id, "failed").await;
        let delivery = app.delivery(event["deliveries"][0]["id"].as_str().unwrap()).await;
        let attempt = &delivery["attempts"][0];
        let request = attempt["request"].as_str().unwrap();
        let excerpt = attempt["response_excerpt"].as_str().unwrap();
        let error = attempt["error"].as_str().unwrap();
        // Basic's base64 of ada:hunter2! and the short secret header are nowhere. The
        // signature line is left out: its base64 holds "k9" by chance about once in a hundred.
        let unsigned: String = request.lines().filter(|l| !l.starts_with("webhook-signature:")).collect::<Vec<_>>().join("\n");
        for text in [unsigned.as_str(), excerpt, error, delivery["last_error"].as_str().unwrap()] {
            assert!(!text.contains("YWRhOmh1bnRlcjIh"), "{text}");
            assert!(!text.contains("k9"), "{text}");
        }
        assert!(request.contains("authorization: [redacted]") && request.contains("x-key: [redacted]"), "{request}");
        // The body as recorded: the envelope's data, with the guess where it was.
        let body: Value = serde_json::from_str(request.split_once("\n\n").unwrap().1).unwrap();
        let headers: Vec<&str> = request.lines().take_while(|l| !l.is_empty()).filter(|l| !l.starts_with("webhook-")).collect();
        seen.push((headers.join("\n"), body["data"].to_string().replace(guess, "GUESS"), excerpt.to_owned(), error.to_owned()));
    }
    // The body is recorded as sent (each guess in clear), and the answers alike: nothing tells
    // the right guess from the wrong one.
    assert_eq!(seen[0].1, r#"{"guess":"GUESS"}"#);
    assert_eq!(seen[0], seen[1]);
}

#[tokio::test]
async fn errors_shown_to_viewers_without_payload_access_quote_no_payload_value() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("err").await;
    let receiver = echo().await;
    let conn = app.webhook(&ws, &receiver.url(), json!({})).await;
    app.rule(&ws, &conn, "*", json!({})).await;
    let id = app.emit_ok(&ws, json!({"event": "x.y", "payload": {"guess": "ada@example.com", "short": "ab"}})).await;
    let event = app.wait_event(&id, "failed").await;
    let delivery_id = event["deliveries"][0]["id"].as_str().unwrap();
    let viewer = app.ok(Method::POST, "/sessions", Some(json!({"workspace_id": ws.id, "role": "viewer"})), 201).await;
    let (status, d) =
        app.call(Method::GET, &format!("/api/v1/deliveries/{delivery_id}"), Some(viewer["access_token"].as_str().unwrap()), None).await;
    assert_eq!(status, StatusCode::OK);
    let shown = d.to_string();
    assert!(!shown.contains("ada@example.com"), "{shown}");
    assert!(d["attempts"][0]["error"].as_str().unwrap().contains("HTTP 422"), "{d}");
}

#[tokio::test]
async fn a_workspace_whose_destination_hangs_cannot_take_every_dispatch_slot() {
    let app = TestApp::spawn().await;
    let hog = app.workspace("hog").await;
    let hanging = Receiver::start(|_, _| Reply::Hang).await;
    let conn = app.webhook(&hog, &hanging.url(), json!({"max_in_flight": 1000, "timeout_ms": 60000})).await;
    app.rule(&hog, &conn, "*", json!({})).await;
    for chunk in 0..9 {
        let events: Vec<Value> = (0..100).map(|i| json!({"event": "hog.event", "payload": {"n": chunk * 100 + i}})).collect();
        let (status, v) = app.call(Method::POST, "/api/v1/events/bulk", Some(&hog.pk), Some(json!(events))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    }
    // The hog's deliveries fill what the node lets one workspace hold, and stay there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while hanging.count() < 256 {
        assert!(std::time::Instant::now() < deadline, "only {} attempts started", hanging.count());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(hanging.count() <= 512, "{}", hanging.count());

    let other = app.workspace("other").await;
    let fast = Receiver::status(200).await;
    let conn = app.webhook(&other, &fast.url(), json!({})).await;
    app.rule(&other, &conn, "*", json!({})).await;
    let started = std::time::Instant::now();
    app.emit_ok(&other, json!({"event": "other.event", "payload": {}})).await;
    fast.wait_for(1).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "the other workspace waited {:?}", started.elapsed());
}

#[tokio::test]
async fn one_request_creates_no_more_deliveries_than_the_limit_and_a_bulk_keeps_what_fits() {
    let app = TestApp::spawn_with(|c| c.max_deliveries_per_request = 50).await;
    let ws = app.workspace("fan").await;
    let receiver = Receiver::status(200).await;
    let conn = app.webhook(&ws, &receiver.url(), json!({})).await;
    for _ in 0..30 {
        app.rule(&ws, &conn, "*", json!({})).await;
    }
    let events: Vec<Value> = (0..3).map(|i| json!({"event": "fan.out", "payload": {"i": i}})).collect();
    let (status, v) = app.call(Method::POST, "/api/v1/events/bulk", Some(&ws.pk), Some(json!(events))).await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{v}");
    assert_eq!((v["accepted"].as_u64(), v["rejected"].as_u64()), (Some(1), Some(2)), "{v}");
    let refusal = v["results"][1]["error"]["message"].as_str().unwrap();
    assert!(refusal.contains("limit of 50 deliveries") && refusal.contains("another request"), "{refusal}");
    // What was accepted has all its deliveries.
    let accepted = app.event(v["results"][0]["id"].as_str().unwrap()).await;
    assert_eq!(accepted["deliveries"].as_array().unwrap().len(), 30);
    for _ in 0..21 {
        app.rule(&ws, &conn, "*", json!({})).await;
    }
    let (status, v) = app.emit(&ws, json!({"event": "fan.out", "payload": {}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("matches 51 rules; one request may create at most 50"), "{v}");
}

#[tokio::test]
async fn a_large_replay_runs_in_batches_and_replays_every_delivery_once() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("replay").await;
    let accept = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = accept.clone();
    let receiver = Receiver::start(move |_, _| Reply::Status(if flag.load(std::sync::atomic::Ordering::SeqCst) { 200 } else { 400 })).await;
    let conn = app.webhook(&ws, &receiver.url(), json!({"max_in_flight": 64})).await;
    app.rule(&ws, &conn, "*", json!({})).await;
    let total = 2_500;
    for chunk in 0..(total / 500) {
        let events: Vec<Value> = (0..500).map(|i| json!({"event": "r.e", "payload": {"n": chunk * 500 + i}})).collect();
        let (status, v) = app.call(Method::POST, "/api/v1/events/bulk", Some(&ws.pk), Some(json!(events))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    }
    receiver.wait_for(total).await;
    // Every delivery has failed for good once none is waiting or in flight.
    let unfinished = || async {
        let mut n = 0;
        for status in ["pending", "retrying", "delivering"] {
            let (_, v) = app.admin(Method::GET, &format!("/workspaces/{}/deliveries?status={status}&limit=1", ws.id), None).await;
            n += v["data"].as_array().map(Vec::len).unwrap_or(0);
        }
        n
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while unfinished().await > 0 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    accept.store(true, std::sync::atomic::Ordering::SeqCst);
    let v = app.ok(Method::POST, &format!("/workspaces/{}/replay", ws.id), Some(json!({"status": "dead"})), 202).await;
    assert_eq!(v["replayed"], total as u64, "{v}");
    receiver.wait_for(2 * total).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 2 * total, "every dead delivery was replayed exactly once");
}
