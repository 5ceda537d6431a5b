//! Operational notifications: a connection failing, recovering, disabled; a delivery out of
//! attempts. Each becomes one `switchyard.*` event in its workspace (and in the operator's), which
//! rules deliver like any other, signed.

use crate::harness::*;
use axum::http::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The notifications a receiver got, by type, in order.
fn notifications(receiver: &Receiver) -> Vec<Value> {
    receiver.all().iter().map(|r| r.json()).filter(|b| b["type"].as_str().is_some_and(|t| t.starts_with("switchyard."))).collect()
}

async fn wait_for_types(receiver: &Receiver, types: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = notifications(receiver);
        let names: Vec<&str> = got.iter().filter_map(|n| n["type"].as_str()).collect();
        if types.iter().all(|t| names.contains(t)) {
            return got;
        }
        assert!(Instant::now() < deadline, "waited for {types:?}, got {names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_failing_connection_and_an_exhausted_delivery_are_told_once_each_to_the_workspace_and_the_operator() {
    let app = TestApp::spawn().await;
    let operator = app.workspace("operator").await;
    let app = app.restart_with(|c| c.notify_workspace = Some(switchyard_core::ids::WorkspaceId::parse(&operator.id).unwrap())).await;
    let ws = app.workspace("acme").await;

    // Where the workspace, and the operator, want to hear about trouble.
    let inbox = Receiver::status(200).await;
    let alerts = app.webhook(&ws, &inbox.url(), json!({})).await;
    let secret = alerts["signing_secret"].as_str().unwrap().to_owned();
    app.rule(&ws, &alerts, "switchyard.*", json!({})).await;
    // And a second subscriber that is down: its copy of each notification dies at once, which
    // must not become a notification in turn.
    let dead_inbox = app.webhook(&ws, &closed_port_url().await, json!({"retry_policy": {"max_attempts": 1}})).await;
    app.rule(&ws, &dead_inbox, "switchyard.delivery.*", json!({})).await;
    let operator_inbox = Receiver::status(200).await;
    let ops = app.webhook(&operator, &operator_inbox.url(), json!({})).await;
    app.rule(&operator, &ops, "switchyard.*", json!({})).await;

    // A destination that fails: two attempts each, and a circuit that opens on 2 failures.
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healthy.clone();
    let flaky =
        Receiver::start(move |_, _| if flag.load(std::sync::atomic::Ordering::SeqCst) { Reply::Status(200) } else { Reply::Status(500) })
            .await;
    let conn = app
        .webhook(
            &ws,
            &flaky.url(),
            json!({"max_in_flight": 1, "retry_policy": {"max_attempts": 2, "initial_delay_ms": 10, "max_delay_ms": 10},
                   "circuit_breaker": {"min_requests": 2, "cooldown_seconds": 1, "successes_to_close": 1}}),
        )
        .await;
    app.rule(&ws, &conn, "order.*", json!({})).await;
    let event = app.emit_ok(&ws, json!({"event": "order.created", "payload": {"n": 1}})).await;
    app.wait_event(&event, "failed").await;

    let got = wait_for_types(&inbox, &["switchyard.connection.failing", "switchyard.delivery.exhausted"]).await;
    let failing = got.iter().find(|n| n["type"] == "switchyard.connection.failing").unwrap();
    assert_eq!(failing["data"]["connection"]["id"], conn["id"]);
    assert_eq!(failing["data"]["workspace_id"], json!(ws.id));
    assert_eq!(failing["data"]["reason"], "2 of the last 2 attempts in 60 s failed");
    let exhausted = got.iter().find(|n| n["type"] == "switchyard.delivery.exhausted").unwrap();
    assert_eq!(exhausted["data"]["delivery"]["event_id"], json!(event));
    assert_eq!(exhausted["data"]["delivery"]["attempts"], 2);
    assert_eq!(exhausted["data"]["delivery"]["last_error"], "HTTP 500");
    // Signed like every delivery.
    let signed = inbox.all().into_iter().find(|r| r.json()["type"] == "switchyard.delivery.exhausted").unwrap();
    standardwebhooks::Webhook::new(&secret).unwrap().verify(&signed.body, &signed.headers).expect("signed");

    // The destination recovers: a replay goes out as the probe, and the circuit closes.
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let delivery = exhausted["data"]["delivery"]["id"].as_str().unwrap();
    app.ok(Method::POST, &format!("/deliveries/{delivery}/replay"), None, 202).await;
    app.wait_event(&event, "completed").await;
    wait_for_types(&inbox, &["switchyard.connection.recovered"]).await;

    // The operator heard the same, each with the workspace it is about.
    let ops_got = wait_for_types(
        &operator_inbox,
        &["switchyard.connection.failing", "switchyard.delivery.exhausted", "switchyard.connection.recovered"],
    )
    .await;
    assert!(ops_got.iter().all(|n| n["data"]["workspace_id"] == json!(ws.id)), "{ops_got:?}");
    // Once each: no second copy, and no notification about a notification.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let mut names: Vec<String> = notifications(&inbox).iter().map(|n| n["type"].as_str().unwrap().to_owned()).collect();
    names.sort();
    assert_eq!(names, ["switchyard.connection.failing", "switchyard.connection.recovered", "switchyard.delivery.exhausted"]);
    let (_, dead) = app
        .admin(
            Method::GET,
            &format!("/workspaces/{}/deliveries?status=dead&connection_id={}", ws.id, dead_inbox["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(dead["data"].as_array().unwrap().len(), 1, "the down subscriber's copy died: {dead}");
    assert_eq!(notifications(&operator_inbox).len(), 3);

    // Customers cannot send Switchyard's own events.
    let (status, body) = app.emit(&ws, json!({"event": "switchyard.connection.failing"})).await;
    assert_eq!(status.as_u16(), 422, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "event");
    app.shutdown().await;
}

#[tokio::test]
async fn a_disabled_connection_is_told_and_its_notification_is_an_event_in_the_history() {
    let app = TestApp::spawn_with(|c| c.disable_failing_after = Some(Duration::from_millis(300))).await;
    let ws = app.workspace("acme").await;
    let inbox = Receiver::status(200).await;
    let alerts = app.webhook(&ws, &inbox.url(), json!({})).await;
    app.rule(&ws, &alerts, "switchyard.connection.disabled", json!({})).await;
    let down = app
        .webhook(
            &ws,
            &closed_port_url().await,
            json!({"retry_policy": {"max_attempts": 100, "initial_delay_ms": 100, "max_delay_ms": 100}}),
        )
        .await;
    app.rule(&ws, &down, "order.*", json!({})).await;
    app.emit_ok(&ws, json!({"event": "order.created"})).await;
    let got = wait_for_types(&inbox, &["switchyard.connection.disabled"]).await;
    assert_eq!(got[0]["data"]["connection"]["id"], down["id"]);
    assert_eq!(got[0]["data"]["reason"], "every attempt failed for too long");
    // The notification is an event like any other: in the history, delivered, completed.
    let listed = app.ok(Method::GET, &format!("/workspaces/{}/events?event=switchyard.connection.disabled", ws.id), None, 200).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    app.shutdown().await;
}
