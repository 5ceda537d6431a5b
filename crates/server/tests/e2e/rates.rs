//! Rate limits from the outside, on whichever store this run uses: each credential's bucket and
//! its headers, the per-address bucket of requests without a valid credential, and a plan's
//! events per second.

use crate::harness::*;
use axum::http::{Method, StatusCode};
use reqwest::Response;
use serde_json::{json, Value};
use std::time::Duration;
use switchyard_server::limits::PlansConfig;

async fn app_with(file: &str) -> TestApp {
    let plans = PlansConfig::from_toml(file).unwrap();
    TestApp::spawn_with(|c| c.plans = plans).await
}

async fn get(app: &TestApp, path: &str, token: Option<&str>) -> Response {
    let mut req = app.client.get(format!("{}{path}", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

fn header(res: &Response, name: &str) -> String {
    res.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

async fn error_code(res: Response) -> (StatusCode, Value) {
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_api_key_gets_its_burst_then_429_with_the_draft_headers() {
    let app = app_with("[rate_limits]\napi_key = { per_second = 4, burst = 7 }\n").await;
    let other = app.ok(Method::POST, "/api-keys", Some(json!({"name": "second", "scope": "read_only"})), 201).await;
    let other = other["key"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await; // the admin key's bucket is full again
    for left in (0..7).rev() {
        let res = get(&app, "/api/v1/workspaces", Some(ADMIN_KEY)).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "ratelimit-policy"), "\"api_key\";q=7;w=2");
        let limit = header(&res, "ratelimit");
        assert!(limit.starts_with(&format!("\"api_key\";r={left};t=")), "{limit}");
    }
    let res = get(&app, "/api/v1/workspaces", Some(ADMIN_KEY)).await;
    assert_eq!(header(&res, "retry-after"), "1");
    assert_eq!(header(&res, "ratelimit-policy"), "\"api_key\";q=7;w=2", "a refusal carries the headers too");
    assert!(header(&res, "ratelimit").starts_with("\"api_key\";r=0;t="));
    let (status, body) = error_code(res).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["code"], "rate_limited");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("4 requests per second") && message.contains("bursts of 7"), "{message}");

    // Another key has a bucket of its own.
    assert_eq!(get(&app, "/api/v1/workspaces", Some(&other)).await.status(), 200);

    // After one interval (250 ms) the first key gets one more, and only one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&app, "/api/v1/workspaces", Some(ADMIN_KEY)).await.status(), 200);
    assert_eq!(get(&app, "/api/v1/workspaces", Some(ADMIN_KEY)).await.status(), 429);
    app.shutdown().await;
}

#[tokio::test]
async fn requests_without_a_valid_credential_are_limited_by_address_and_never_spend_a_key() {
    let app = app_with("[rate_limits]\nanonymous = { per_second = 1, burst = 3 }\n").await;
    // No credential, a made-up key, a made-up session: one bucket, the address's.
    let (s1, s2, s3) = (
        get(&app, "/api/v1/workspaces", None).await,
        get(&app, "/api/v1/workspaces", Some("sk_made_up")).await,
        get(&app, "/api/v1/workspaces", Some("st_made_up")).await,
    );
    for (res, left) in [(&s1, 2), (&s2, 1), (&s3, 0)] {
        assert_eq!(res.status(), 401);
        assert_eq!(header(res, "ratelimit-policy"), "\"anonymous\";q=3;w=3");
        assert!(header(res, "ratelimit").starts_with(&format!("\"anonymous\";r={left};")), "{}", header(res, "ratelimit"));
    }
    let res = get(&app, "/api/v1/workspaces", Some("pk_made_up")).await;
    assert!(header(&res, "retry-after").parse::<u64>().unwrap() >= 1);
    let (status, body) = error_code(res).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(get(&app, "/api/v1/workspaces", None).await.status(), 429);
    // While the address's bucket is empty, anything that carries a credential is refused before
    // the credential is looked up: guessing keys costs no lookups, and a right guess is refused too.
    let res = get(&app, "/api/v1/workspaces", Some(ADMIN_KEY)).await;
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "ratelimit-policy"), "\"anonymous\";q=3;w=3");
    // A route that looks at no credential counts against the address whatever the request
    // carries: a made-up header does not escape the limit.
    let res = app.client.get(format!("{}/oauth/callback?state=x&code=y", app.base)).header("authorization", "x").send().await.unwrap();
    assert_eq!(res.status(), 429);
    // Once it has refilled, a valid key has its own bucket (the default: 100 a second), and its
    // requests take nothing from the address's.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for _ in 0..5 {
        let res = get(&app, "/api/v1/workspaces", Some(ADMIN_KEY)).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "ratelimit-policy"), "\"api_key\";q=200;w=2");
    }
    assert_eq!(get(&app, "/api/v1/workspaces", None).await.status(), 401, "the address still had its one request");
    // Health checks are not limited.
    assert_eq!(get(&app, "/healthz", None).await.status(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn an_embed_session_has_its_own_bucket() {
    let app = app_with("[rate_limits]\nsession = { per_second = 2, burst = 2 }\n").await;
    let ws = app.workspace("sessions").await;
    let mint = || app.ok(Method::POST, "/sessions", Some(json!({"workspace_id": ws.id, "role": "viewer"})), 201);
    let (a, b) = (mint().await, mint().await);
    let (a, b) = (a["access_token"].as_str().unwrap().to_owned(), b["access_token"].as_str().unwrap().to_owned());
    let path = format!("/api/v1/workspaces/{}/events", ws.id);
    assert_eq!(get(&app, &path, Some(&a)).await.status(), 200);
    assert_eq!(get(&app, &path, Some(&a)).await.status(), 200);
    let refused = get(&app, &path, Some(&a)).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "ratelimit-policy"), "\"session\";q=2;w=1");
    assert_eq!(get(&app, &path, Some(&b)).await.status(), 200, "another session is not held back");
    app.shutdown().await;
}

const EVENTS_PLAN: &str = r#"
[plans.metered]
events_per_second = 5
events_burst = 5

[rate_limits]
publishable_key = "unlimited"
"#;

#[tokio::test]
async fn a_plans_events_per_second_holds_and_refuses_without_storing() {
    let app = app_with(EVENTS_PLAN).await;
    let ws = app.workspace("metered").await;
    app.ok(Method::PATCH, &format!("/workspaces/{}", ws.id), Some(json!({"plan": "metered"})), 200).await;
    let send =
        |body: Value, path: &'static str| app.client.post(format!("{}/api/v1/{path}", app.base)).bearer_auth(&ws.pk).json(&body).send();
    for left in (2..5).rev() {
        let res = send(json!({"event": "user.created"}), "events").await.unwrap();
        assert_eq!(res.status(), 202);
        assert_eq!(header(&res, "ratelimit-policy"), "\"events\";q=5;w=1");
        assert!(header(&res, "ratelimit").starts_with(&format!("\"events\";r={left};")), "{}", header(&res, "ratelimit"));
    }
    // Two left: a bulk of three does not fit, and nothing of it is kept.
    let three = json!([{"event": "a"}, {"event": "b"}, {"event": "c"}]);
    let res = send(three.clone(), "events/bulk").await.unwrap();
    assert_eq!(header(&res, "retry-after"), "1");
    let (status, body) = error_code(res).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert_eq!(body["error"]["details"][0]["field"], "limits.events_per_second");
    assert!(body["error"]["message"].as_str().unwrap().contains("5 events per second"), "{body}");
    // Two fit.
    let res = send(json!([{"event": "a"}, {"event": "b"}]), "events/bulk").await.unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(send(json!({"event": "user.created"}), "events").await.unwrap().status(), 429);
    // More than the burst at once can never fit: 422 says to split it.
    let six: Vec<Value> = (0..6).map(|i| json!({"event": "x", "payload": {"i": i}})).collect();
    let (status, body) = error_code(send(Value::Array(six), "events/bulk").await.unwrap()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["field"], "limits.events_burst");
    // A second later the bucket is full again.
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    assert_eq!(send(three, "events/bulk").await.unwrap().status(), 202);

    // Exactly the admitted events were stored: 3 + 2 + 3.
    let events = app.ok(Method::GET, &format!("/workspaces/{}/events?limit=50", ws.id), None, 200).await;
    assert_eq!(events["data"].as_array().unwrap().len(), 8);
    // Another workspace on no plan is not limited.
    let free = app.workspace("free").await;
    for _ in 0..20 {
        assert_eq!(app.emit(&free, json!({"event": "x"})).await.0, StatusCode::ACCEPTED);
    }
    let metrics = get(&app, "/metrics", None).await.text().await.unwrap();
    assert!(metrics.contains("switchyard_limit_hits_total{limit=\"events_per_second\"}"), "the refusal is counted");
    app.shutdown().await;
}

#[test]
fn rate_limits_in_the_plans_file_are_checked_at_start() {
    for (file, named) in [
        ("[rate_limits]\napi_key = { per_second = -1, burst = 5 }", "rate_limits.api_key"),
        ("[rate_limits]\nsession = \"off\"", "rate_limits.session"),
        ("[rate_limits]\nkeys = \"unlimited\"", "keys"),
    ] {
        let error = PlansConfig::from_toml(file).unwrap_err();
        assert!(error.contains(named), "{file}: {error}");
    }
}
