//! Plans and the limits they set, from the outside, on whichever store this run uses: each cap and
//! its error, the bulk split, what usage counts, and exact counts under concurrent ingestion.

use crate::harness::*;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard_server::limits::PlansConfig;

const PLANS: &str = r#"
default_plan = "free"
max_workspaces = 4

[plans.free]
description = "Trying it out"
events_per_month = 5
connections = 1
rules_per_workspace = 2
rules_per_event_type = 1
retention_days = 7

[plans.unlimited]
"#;

async fn app_with_plans() -> TestApp {
    TestApp::spawn_with(|c| c.plans = PlansConfig::from_toml(PLANS).unwrap()).await
}

#[tokio::test]
async fn past_the_monthly_cap_ingestion_answers_429_and_nothing_accepted_is_lost() {
    let app = app_with_plans().await;
    let ws = app.workspace("capped").await;
    let receiver = Receiver::status(200).await;
    let conn = app.webhook(&ws, &receiver.url(), json!({})).await;
    let rule = app.rule(&ws, &conn, "audit.*", json!({})).await;
    let mut accepted = Vec::new();
    for i in 0..5 {
        accepted.push(app.emit_ok(&ws, json!({"event": "user.created", "payload": {"i": i}})).await);
    }
    let (status, body) = app.emit(&ws, json!({"event": "user.created", "idempotency_key": "late-1"})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("5 events") && message.contains("events_per_month") && message.contains("T00:00:00"), "{message}");
    assert_eq!(body["error"]["details"][0]["field"], "limits.events_per_month");

    // Retry-After points at the first of next month.
    let res = app.client.post(format!("{}/api/v1/events", app.base)).bearer_auth(&ws.pk).json(&json!({"event": "x"})).send().await.unwrap();
    let retry_after: i64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    let (_, _, end) = switchyard_core::limits::month_of(switchyard_core::now_millis());
    let expected = (end - switchyard_core::now_millis()) / 1000;
    assert!((retry_after - expected).abs() <= 2, "Retry-After {retry_after}, month ends in {expected} s");

    // An operator's test is never refused by the cap (it is counted).
    app.ok(Method::POST, &format!("/rules/{}/test", rule["id"].as_str().unwrap()), Some(json!({})), 202).await;

    // The five are all there (with the test event); the refused ones are not.
    let events = app.ok(Method::GET, &format!("/workspaces/{}/events?limit=50", ws.id), None, 200).await;
    let mut stored: Vec<String> =
        events["data"].as_array().unwrap().iter().filter(|e| e["test"] == false).map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    stored.sort();
    accepted.sort();
    assert_eq!(stored, accepted);

    // Raising the workspace's own limit lets events in again, and the refused key was not used up.
    app.ok(Method::PATCH, &format!("/workspaces/{}", ws.id), Some(json!({"limits": {"events_per_month": 8}})), 200).await;
    let (status, first) = app.emit(&ws, json!({"event": "user.created", "idempotency_key": "late-1"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "a refused event's key stays free: {first}");
    let (status, again) = app.emit(&ws, json!({"event": "user.created", "idempotency_key": "late-1"})).await;
    assert_eq!(status, StatusCode::OK, "and is now this event's: {again}");
    assert_eq!(again["id"], first["id"]);
    let usage = app.ok(Method::GET, &format!("/workspaces/{}/usage", ws.id), None, 200).await;
    assert_eq!(usage["events"]["used"], 7, "five, the test event and the late one");
    // The test event counted toward the cap too: one place is left, not two.
    assert_eq!(app.emit(&ws, json!({"event": "user.created"})).await.0, StatusCode::ACCEPTED);
    assert_eq!(app.emit(&ws, json!({"event": "user.created"})).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(usage["events"]["limit"], 8);
    assert_eq!(usage["plan"], "free");
    app.shutdown().await;
}

#[tokio::test]
async fn a_bulk_request_crossing_the_cap_keeps_what_fits_and_names_the_rest() {
    let app = app_with_plans().await;
    let ws = app.workspace("bulk").await;
    for _ in 0..3 {
        app.emit_ok(&ws, json!({"event": "a"})).await;
    }
    let bulk = json!([{"event": "b", "payload": {"n": 1}}, {"event": "bad name"}, {"event": "b", "payload": {"n": 2}}, {"event": "b", "payload": {"n": 3}}]);
    let (status, body) = app.call(Method::POST, "/api/v1/events/bulk", Some(&ws.pk), Some(bulk)).await;
    assert_eq!(status.as_u16(), 207, "{body}");
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"], 2);
    let results = body["results"].as_array().unwrap();
    assert!(results[0]["id"].is_string() && results[2]["id"].is_string(), "the first two valid events fit: {body}");
    assert_eq!(results[1]["error"]["code"], "validation_failed");
    assert_eq!(results[3]["error"]["code"], "quota_exceeded");
    assert!(results[3].get("id").is_none());

    // Nothing fits any more: the whole request is refused like a single event.
    let (status, body) = app.call(Method::POST, "/api/v1/events/bulk", Some(&ws.pk), Some(json!([{"event": "c"}]))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert_eq!(app.ok(Method::GET, &format!("/workspaces/{}/usage", ws.id), None, 200).await["events"]["used"], 5);
    app.shutdown().await;
}

#[tokio::test]
async fn connections_rules_and_workspaces_past_their_caps_answer_422_naming_the_limit() {
    let app = app_with_plans().await;
    let ws = app.workspace("caps").await;
    let receiver = Receiver::status(200).await;
    let conn = app.webhook(&ws, &receiver.url(), json!({})).await;
    let (status, body) = app
        .admin(
            Method::POST,
            &format!("/workspaces/{}/connections", ws.id),
            Some(json!({"type": "webhook", "name": "second", "config": {"url": receiver.url()}})),
        )
        .await;
    assert_eq!(status.as_u16(), 422, "{body}");
    assert_eq!(body["error"]["code"], "validation_failed", "a 422 has the contract's code; the field names the limit");
    assert_eq!(body["error"]["details"][0]["field"], "limits.connections");
    assert!(body["error"]["message"].as_str().unwrap().contains("1 connections"), "{body}");

    app.rule(&ws, &conn, "user.created", json!({})).await;
    let (status, body) = app
        .admin(
            Method::POST,
            &format!("/workspaces/{}/rules", ws.id),
            Some(json!({"name": "again", "event": "user.created", "connection_id": conn["id"]})),
        )
        .await;
    assert_eq!(status.as_u16(), 422);
    assert_eq!(body["error"]["details"][0]["field"], "limits.rules_per_event_type");
    let second = app.rule(&ws, &conn, "user.deleted", json!({})).await;
    // Moving a rule onto a full pattern is refused as creating one there would be.
    let (status, body) =
        app.admin(Method::PATCH, &format!("/rules/{}", second["id"].as_str().unwrap()), Some(json!({"event": "user.created"}))).await;
    assert_eq!(status.as_u16(), 422, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "limits.rules_per_event_type");
    let (status, body) = app
        .admin(
            Method::POST,
            &format!("/workspaces/{}/rules", ws.id),
            Some(json!({"name": "third", "event": "order.*", "connection_id": conn["id"]})),
        )
        .await;
    assert_eq!(status.as_u16(), 422);
    assert_eq!(body["error"]["details"][0]["field"], "limits.rules_per_workspace");

    let usage = app.ok(Method::GET, &format!("/workspaces/{}/usage", ws.id), None, 200).await;
    assert_eq!((usage["connections"]["used"].as_u64(), usage["connections"]["limit"].as_u64()), (Some(1), Some(1)));
    assert_eq!((usage["rules"]["used"].as_u64(), usage["rules"]["limit"].as_u64()), (Some(2), Some(2)));
    assert_eq!(usage["limits"]["retention_days"], 7);
    assert_eq!(usage["daily"].as_array().unwrap().len(), 90);

    // Another plan lifts them; an override of null lifts one.
    app.ok(Method::PATCH, &format!("/workspaces/{}", ws.id), Some(json!({"plan": "unlimited"})), 200).await;
    app.webhook(&ws, &receiver.url(), json!({"name": "second"})).await;
    app.ok(Method::PATCH, &format!("/workspaces/{}", ws.id), Some(json!({"plan": null, "limits": {"connections": null}})), 200).await;
    app.webhook(&ws, &receiver.url(), json!({"name": "third"})).await;

    // The installation holds at most four workspaces.
    for i in 0..3 {
        app.workspace(&format!("more-{i}")).await;
    }
    let (status, body) = app.admin(Method::POST, "/workspaces", Some(json!({"name": "one too many"}))).await;
    assert_eq!(status.as_u16(), 422, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "limits.workspaces");
    let installation = app.ok(Method::GET, "/usage", None, 200).await;
    assert_eq!((installation["workspaces"]["used"].as_u64(), installation["workspaces"]["limit"].as_u64()), (Some(4), Some(4)));
    app.shutdown().await;
}

#[tokio::test]
async fn plans_are_managed_through_the_api_except_those_of_the_plans_file() {
    let app = app_with_plans().await;
    let listed = app.ok(Method::GET, "/plans", None, 200).await;
    assert_eq!(listed["default_plan"], "free");
    let free = listed["data"].as_array().unwrap().iter().find(|p| p["name"] == "free").unwrap().clone();
    assert_eq!(free["source"], "config");
    assert_eq!(
        free["limits"],
        json!({"events_per_month": 5, "connections": 1, "rules_per_workspace": 2, "rules_per_event_type": 1, "retention_days": 7})
    );
    let (status, _) = app.admin(Method::PUT, "/plans/free", Some(json!({"limits": {}}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "the file's plans change in the file");

    let pro = app
        .ok(Method::PUT, "/plans/pro", Some(json!({"description": "Growing", "limits": {"events_per_month": 100, "connections": 10}})), 201)
        .await;
    assert_eq!(pro["source"], "api");
    let (status, body) = app.admin(Method::PUT, "/plans/pro", Some(json!({"limits": {"events_per_day": 5}}))).await;
    assert_eq!(status.as_u16(), 422);
    assert_eq!(body["error"]["details"][0]["field"], "limits.events_per_day");
    let (status, body) = app.admin(Method::PUT, "/plans/Pro!", Some(json!({"limits": {}}))).await;
    assert_eq!(status.as_u16(), 422, "{body}");

    let ws = app.ok(Method::POST, "/workspaces", Some(json!({"name": "on pro", "plan": "pro", "limits": {"connections": 20}})), 201).await;
    assert_eq!(ws["plan"], "pro");
    assert_eq!(ws["limits"], json!({"connections": 20}));
    let usage = app.ok(Method::GET, &format!("/workspaces/{}/usage", ws["id"].as_str().unwrap()), None, 200).await;
    assert_eq!(usage["limits"], json!({"events_per_month": 100, "connections": 20}));
    let (status, body) = app.admin(Method::POST, "/workspaces", Some(json!({"name": "x", "plan": "nope"}))).await;
    assert_eq!(status.as_u16(), 422);
    assert_eq!(body["error"]["details"][0]["field"], "plan");

    // Changing a plan changes its workspaces at once.
    app.ok(Method::PUT, "/plans/pro", Some(json!({"limits": {"events_per_month": 200}})), 200).await;
    let usage = app.ok(Method::GET, &format!("/workspaces/{}/usage", ws["id"].as_str().unwrap()), None, 200).await;
    assert_eq!(usage["events"]["limit"], 200);
    let (status, _) = app.admin(Method::DELETE, "/plans/pro", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "a workspace is on it");
    app.ok(Method::PATCH, &format!("/workspaces/{}", ws["id"].as_str().unwrap()), Some(json!({"plan": null})), 200).await;
    app.ok(Method::DELETE, "/plans/pro", None, 204).await;
    app.shutdown().await;
}

#[tokio::test]
async fn only_an_installation_key_changes_a_workspaces_plan_or_limits() {
    let app = app_with_plans().await;
    let ws = app.workspace("tenant").await;
    let key = app
        .ok(
            Method::POST,
            "/api-keys",
            Some(json!({"name": "tenant admin", "scope": "workspaces", "workspaces": [{"workspace_id": ws.id, "role": "admin"}]})),
            201,
        )
        .await;
    let key = key["key"].as_str().unwrap();
    for body in [json!({"limits": {"events_per_month": null}}), json!({"plan": "unlimited"})] {
        let (status, answer) = app.call(Method::PATCH, &format!("/api/v1/workspaces/{}", ws.id), Some(key), Some(body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    }
    let (status, _) = app.call(Method::PATCH, &format!("/api/v1/workspaces/{}", ws.id), Some(key), Some(json!({"name": "renamed"}))).await;
    assert_eq!(status, StatusCode::OK, "renaming stays the workspace admin's");
    let (status, _) = app.call(Method::GET, &format!("/api/v1/workspaces/{}/usage", ws.id), Some(key), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call(Method::GET, "/api/v1/usage", Some(key), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A session narrowed to one of the product's records sees none of the workspace's counts.
    let narrowed = app
        .ok(
            Method::POST,
            "/sessions",
            Some(json!({"workspace_id": ws.id, "role": "viewer", "resource": "account", "resource_id": "a1"})),
            201,
        )
        .await;
    let token = narrowed["access_token"].as_str().unwrap();
    let (status, _) = app.call(Method::GET, &format!("/api/v1/workspaces/{}/usage", ws.id), Some(token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let whole = app.ok(Method::POST, "/sessions", Some(json!({"workspace_id": ws.id, "role": "viewer"})), 201).await;
    let (status, _) =
        app.call(Method::GET, &format!("/api/v1/workspaces/{}/usage", ws.id), Some(whole["access_token"].as_str().unwrap()), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call(Method::PUT, "/api/v1/plans/mine", Some(key), Some(json!({"limits": {}}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.shutdown().await;
}

#[tokio::test]
async fn concurrent_ingestion_fills_the_cap_exactly_and_counts_every_event() {
    let app = TestApp::spawn().await;
    app.ok(Method::PUT, "/plans/capped", Some(json!({"limits": {"events_per_month": 300}})), 201).await;
    let capped = app.workspace("capped").await;
    app.ok(Method::PATCH, &format!("/workspaces/{}", capped.id), Some(json!({"plan": "capped"})), 200).await;
    let open = app.workspace("open").await;

    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..16 {
        for ws in [capped.clone(), open.clone()] {
            let (client, base) = (app.client.clone(), app.base.clone());
            tasks.spawn(async move {
                let mut ok = 0;
                for i in 0..20 {
                    let bulk: Vec<Value> = (0..2).map(|j| json!({"event": "load", "payload": {"t": t, "i": i, "j": j}})).collect();
                    let res = client.post(format!("{base}/api/v1/events/bulk")).bearer_auth(&ws.pk).json(&bulk).send().await.unwrap();
                    let status = res.status().as_u16();
                    let body: Value = res.json().await.unwrap();
                    if status != 429 {
                        ok += body["accepted"].as_u64().unwrap();
                    }
                }
                (ws.id, ok)
            });
        }
    }
    let mut accepted = std::collections::HashMap::<String, u64>::new();
    while let Some(done) = tasks.join_next().await {
        let (ws, n) = done.unwrap();
        *accepted.entry(ws).or_default() += n;
    }
    assert_eq!(accepted[&capped.id], 300, "exactly the cap, with 640 sent");
    assert_eq!(accepted[&open.id], 640);
    for (ws, n) in [(&capped, 300), (&open, 640)] {
        let usage = app.ok(Method::GET, &format!("/workspaces/{}/usage", ws.id), None, 200).await;
        assert_eq!(usage["events"]["used"], n, "no lost updates");
        assert_eq!(usage["daily"].as_array().unwrap().last().unwrap()["events"], n);
        let mut stored = 0;
        let mut cursor = String::new();
        loop {
            let page = app.ok(Method::GET, &format!("/workspaces/{}/events?limit=200{cursor}", ws.id), None, 200).await;
            stored += page["data"].as_array().unwrap().len();
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(stored as u64, n);
    }
    let installation = app.ok(Method::GET, "/usage", None, 200).await;
    assert_eq!(installation["events"], 940);
    assert_eq!(installation["busiest"][0]["workspace_id"], open.id.as_str());
    assert_eq!(installation["busiest"][1]["limit"], 300);
    app.shutdown().await;
}

#[test]
fn a_plans_file_with_a_mistake_names_it() {
    assert!(PlansConfig::from_toml("default_plan = \"gold\"\n[plans.free]\n").unwrap_err().contains("gold"));
    assert!(PlansConfig::from_toml("[plans.free]\nevents_per_day = 3\n").unwrap_err().contains("events_per_day"));
    assert!(PlansConfig::from_toml("[plans.Free]\n").unwrap_err().contains("Free"));
    assert!(PlansConfig::from_toml("[plans.free]\nretention_days = 0\n").unwrap_err().contains("retention_days"));
    let ok = PlansConfig::from_toml(PLANS).unwrap();
    assert_eq!(ok.plans.len(), 2);
    assert_eq!(ok.max_workspaces, Some(4));
}

#[tokio::test]
async fn usage_counts_deliveries_by_outcome_per_day() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("outcomes").await;
    let ok = Receiver::status(200).await;
    let failing = Receiver::status(500).await;
    let good = app.webhook(&ws, &ok.url(), json!({})).await;
    let bad = app
        .webhook(
            &ws,
            &failing.url(),
            json!({"name": "bad", "retry_policy": {"max_attempts": 2, "initial_delay_ms": 10, "max_delay_ms": 20}}),
        )
        .await;
    app.rule(&ws, &good, "order.*", json!({})).await;
    app.rule(&ws, &bad, "order.*", json!({})).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(app.emit_ok(&ws, json!({"event": "order.placed", "payload": {"i": i}})).await);
    }
    app.emit_ok(&ws, json!({"event": "nobody.listens"})).await;
    for id in &ids {
        app.wait_event(id, "failed").await;
    }
    let usage = app.ok(Method::GET, &format!("/workspaces/{}/usage", ws.id), None, 200).await;
    assert_eq!(usage["events"]["used"], 4);
    assert_eq!(usage["deliveries"], json!({"created": 6, "succeeded": 3, "dead": 3}));
    let today = usage["daily"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(today["day"], switchyard_core::limits::day_of(switchyard_core::now_millis()));
    assert_eq!((today["events"].as_u64(), today["deliveries"].as_u64()), (Some(4), Some(6)));
    assert_eq!((today["succeeded"].as_u64(), today["dead"].as_u64()), (Some(3), Some(3)));
    app.shutdown().await;
}

#[tokio::test]
async fn a_workspace_is_told_once_a_month_when_it_nears_and_when_it_passes_its_monthly_cap() {
    let app = app_with_plans().await;
    let ws = app.workspace("capped").await;
    let inbox = Receiver::status(200).await;
    let conn = app.webhook(&ws, &inbox.url(), json!({})).await;
    app.rule(&ws, &conn, "switchyard.quota.*", json!({})).await;
    for i in 0..5 {
        app.emit_ok(&ws, json!({"event": "user.created", "payload": {"i": i}})).await;
    }
    for _ in 0..3 {
        let (status, _) = app.emit(&ws, json!({"event": "user.created"})).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    }
    let got = inbox.wait_for(2).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    assert_eq!(inbox.count(), 2, "once each, however many were refused");
    let bodies: Vec<Value> = got.iter().map(|r| r.json()).collect();
    let month = switchyard_core::limits::month_of(switchyard_core::now_millis()).0;
    let approaching = bodies.iter().find(|b| b["type"] == "switchyard.quota.approaching").expect("approaching");
    assert_eq!(
        approaching["data"],
        json!({"type": "quota.approaching", "workspace_id": ws.id, "at": approaching["data"]["at"],
        "limit": "events_per_month", "month": month, "used": 4, "cap": 5})
    );
    let exceeded = bodies.iter().find(|b| b["type"] == "switchyard.quota.exceeded").expect("exceeded");
    assert_eq!((exceeded["data"]["used"].as_u64(), exceeded["data"]["cap"].as_u64()), (Some(5), Some(5)));
    // Notifications are not the workspace's traffic: its usage is its own five events.
    assert_eq!(app.ok(Method::GET, &format!("/workspaces/{}/usage", ws.id), None, 200).await["events"]["used"], 5);
    app.shutdown().await;
}
