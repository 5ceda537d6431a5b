//! SaaS connectors end to end: an event emitted with a publishable key goes through rules to
//! loopback stubs standing in for each vendor, shaped as the vendor expects; connections and rules
//! are validated against the catalog; rate limits space deliveries without spending attempts.

use crate::harness::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A stub vendor: answers each documented path with the vendor's success body.
async fn vendor_stub() -> Receiver {
    Receiver::start(|_, r| {
        let body = match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/api/chat.postMessage") => r#"{"ok":true,"channel":"C1","ts":"1.2"}"#,
            ("POST", "/crm/v3/objects/contacts/batch/upsert") => r#"{"status":"COMPLETE","results":[{"id":"101","properties":{}}]}"#,
            ("PATCH", p) if p.contains("/sobjects/Contact/") => r#"{"id":"003XX0000001","success":true,"errors":[],"created":true}"#,
            ("POST", p) if p.ends_with("/sobjects/CampaignMember") => r#"{"id":"00vXX1","success":true,"errors":[]}"#,
            ("POST", "/contacts") => r#"{"type":"contact","id":"c_77","email":"ada@example.com"}"#,
            ("POST", "/api/3/contact/sync") => r#"{"contact":{"id":"7","email":"ada@example.com"}}"#,
            ("POST", "/api/subscribers") => r#"{"data":{"id":"s_1","email":"ada@example.com"}}"#,
            ("GET", p) if p.ends_with("/subscribers") => r#"{"entries":[],"total_size":0}"#,
            _ => "{}",
        };
        let status = match (r.method.as_str(), r.path.as_str()) {
            ("POST", p) if p.ends_with("/subscribers") && p.starts_with("/1.0/") => 201,
            ("POST", "/v3/mail/send") | ("PUT", "/v3/marketing/contacts") => 202,
            ("POST", p) if p.contains("/registrants") => 201,
            _ => 200,
        };
        Reply::WithHeaders(status, vec![("content-type", "application/json".into())], body.into())
    })
    .await
}

struct Case {
    kind: &'static str,
    config: Value,
    credentials: Value,
    action: &'static str,
    action_config: Value,
    secret: &'static str,
    /// `METHOD /path` of every request expected, in order.
    requests: &'static [&'static str],
}

fn cases(base: &str) -> Vec<Case> {
    let b = json!({"base_url": base});
    vec![
        Case {
            kind: "slack",
            config: b.clone(),
            credentials: json!({"access_token": "xoxb-e2e-slack-token"}),
            action: "send_message",
            action_config: json!({"channel": "C1", "template": "{{ payload.first_name }} signed up"}),
            secret: "xoxb-e2e-slack-token",
            requests: &["POST /api/chat.postMessage"],
        },
        Case {
            kind: "discord",
            config: json!({"base_url": base, "webhook_url": "https://discord.com/api/webhooks/42/discord-e2e-webhook-token-abcdef"}),
            credentials: json!({}),
            action: "send_message",
            action_config: json!({"title": "{{ event }}", "template": "{{ payload.email }}"}),
            secret: "discord-e2e-webhook-token-abcdef",
            requests: &["POST /api/webhooks/42/discord-e2e-webhook-token-abcdef"],
        },
        Case {
            kind: "hubspot",
            config: b.clone(),
            credentials: json!({"access_token": "pat-e2e-hubspot"}),
            action: "add_to_list",
            action_config: json!({"id": "12"}),
            secret: "pat-e2e-hubspot",
            requests: &["POST /crm/v3/objects/contacts/batch/upsert", "PUT /crm/v3/lists/12/memberships/add"],
        },
        Case {
            kind: "salesforce",
            config: json!({"instance_url": base}),
            credentials: json!({"access_token": "00Dxx!e2e-salesforce"}),
            action: "add_to_campaign",
            action_config: json!({"id": "701XX"}),
            secret: "00Dxx!e2e-salesforce",
            requests: &[
                "PATCH /services/data/v60.0/sobjects/Contact/Email__c/ada@example.com",
                "POST /services/data/v60.0/sobjects/CampaignMember",
            ],
        },
        Case {
            kind: "mailchimp",
            config: b.clone(),
            credentials: json!({"api_key": "e2e-mailchimp-key-us6"}),
            action: "add_to_list",
            action_config: json!({"id": "aud1"}),
            secret: "e2e-mailchimp-key-us6",
            // md5("ada@example.com")
            requests: &["PUT /3.0/lists/aud1/members/3e3417d7ef77d5932a6734b916515ed5"],
        },
        Case {
            kind: "sendgrid",
            config: b.clone(),
            credentials: json!({"api_key": "SG.e2e-sendgrid-key"}),
            action: "send_email",
            action_config: json!({"from": "hi@acme.test", "subject": "Welcome {{ payload.first_name }}", "template": "<p>Hello</p>"}),
            secret: "SG.e2e-sendgrid-key",
            requests: &["POST /v3/mail/send"],
        },
        Case {
            kind: "resend",
            config: b.clone(),
            credentials: json!({"api_key": "re_e2e_resend_key"}),
            action: "send_email_template",
            action_config: json!({"id": "tmpl_1", "from": "Acme <hi@acme.test>"}),
            secret: "re_e2e_resend_key",
            requests: &["POST /emails"],
        },
        Case {
            kind: "intercom",
            config: b.clone(),
            credentials: json!({"access_token": "e2e-intercom-token"}),
            action: "add_tag",
            action_config: json!({"id": "t9"}),
            secret: "e2e-intercom-token",
            requests: &["POST /contacts", "POST /contacts/c_77/tags"],
        },
        Case {
            kind: "customerio",
            config: b.clone(),
            credentials: json!({"site_id": "e2e-site-id", "api_key": "e2e-cio-api-key"}),
            action: "track_event",
            action_config: json!({}),
            secret: "e2e-cio-api-key",
            requests: &["PUT /api/v1/customers/ada@example.com", "POST /api/v1/customers/ada@example.com/events"],
        },
        Case {
            kind: "activecampaign",
            config: b.clone(),
            credentials: json!({"api_key": "e2e-activecampaign-key"}),
            action: "add_to_list",
            action_config: json!({"id": "3"}),
            secret: "e2e-activecampaign-key",
            requests: &["POST /api/3/contact/sync", "POST /api/3/contactLists"],
        },
        Case {
            kind: "mailerlite",
            config: b.clone(),
            credentials: json!({"api_key": "e2e-mailerlite-token"}),
            action: "add_to_group",
            action_config: json!({"id": "g5"}),
            secret: "e2e-mailerlite-token",
            requests: &["POST /api/subscribers"],
        },
        Case {
            kind: "aweber",
            config: json!({"base_url": base, "account_id": "acc1"}),
            credentials: json!({"access_token": "e2e-aweber-token"}),
            action: "add_to_list",
            action_config: json!({"id": "l2"}),
            secret: "e2e-aweber-token",
            requests: &["GET /1.0/accounts/acc1/lists/l2/subscribers", "POST /1.0/accounts/acc1/lists/l2/subscribers"],
        },
        Case {
            kind: "zoom",
            config: b,
            credentials: json!({"access_token": "e2e-zoom-token"}),
            action: "add_meeting_registrant",
            action_config: json!({"id": "85746065"}),
            secret: "e2e-zoom-token",
            requests: &["POST /v2/meetings/85746065/registrants"],
        },
    ]
}

#[tokio::test]
async fn one_event_reaches_every_vendor_shaped_as_it_expects() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("saas").await;
    let mut wired = Vec::new();
    for case in cases("http://placeholder") {
        let stub = vendor_stub().await;
        let base = format!("http://{}", stub.addr);
        let case = cases(&base).into_iter().find(|c| c.kind == case.kind).unwrap();
        let body = json!({"type": case.kind, "name": case.kind, "config": case.config, "credentials": case.credentials,
                          "retry_policy": {"max_attempts": 2, "initial_delay_ms": 20, "max_delay_ms": 50}});
        let conn = app.ok(Method::POST, &format!("/workspaces/{}/connections", ws.id), Some(body), 201).await;
        assert!(!conn.to_string().contains(case.secret), "{} shows a secret: {conn}", case.kind);
        let rule = app.rule(&ws, &conn, "user.created", json!({"action": case.action, "action_config": case.action_config})).await;
        wired.push((case, stub, conn, rule));
    }
    let payload = json!({"email": "Ada@Example.com", "first_name": "Ada", "last_name": "Lovelace", "name": "Ada Lovelace"});
    let id = app.emit_ok(&ws, json!({"event": "user.created", "payload": payload})).await;
    let event = app.wait_event(&id, "completed").await;
    assert_eq!(event["deliveries"].as_array().unwrap().len(), wired.len());

    for (case, stub, conn, rule) in &wired {
        let seen: Vec<String> = stub.all().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
        assert_eq!(seen, case.requests.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{}", case.kind);
        let delivery = event["deliveries"].as_array().unwrap().iter().find(|d| d["rule_id"] == rule["id"]).unwrap();
        let detail = app.delivery(delivery["id"].as_str().unwrap()).await;
        let attempt = &detail["attempts"][0];
        let request = attempt["request"].as_str().unwrap_or_else(|| panic!("{}: no recorded request: {detail}", case.kind));
        assert!(request.starts_with(case.requests[0].split(' ').next().unwrap()), "{}: {request}", case.kind);
        assert!(!detail.to_string().contains(case.secret), "{}: a secret in the attempt record: {detail}", case.kind);
        let shown = app.ok(Method::GET, &format!("/connections/{}", conn["id"].as_str().unwrap()), None, 200).await;
        assert!(!shown.to_string().contains(case.secret), "{}: {shown}", case.kind);
        assert_eq!(shown["has_credentials"], true, "{}", case.kind);
    }
    // Spot-check bodies: the person was mapped, and templates were rendered.
    let body = |kind: &str, n: usize| {
        let (_, stub, _, _) = wired.iter().find(|(c, ..)| c.kind == kind).unwrap();
        stub.all()[n].json()
    };
    assert_eq!(body("slack", 0)["text"], "Ada signed up");
    assert_eq!(body("hubspot", 0)["inputs"][0]["properties"]["firstname"], "Ada");
    assert_eq!(body("mailchimp", 0)["email_address"], "ada@example.com");
    assert_eq!(body("sendgrid", 0)["subject"], "Welcome Ada");
    assert_eq!(body("zoom", 0)["last_name"], "Lovelace");
    let (_, resend, _, _) = wired.iter().find(|(c, ..)| c.kind == "resend").unwrap();
    assert_eq!(
        resend.all()[0].headers["idempotency-key"],
        event["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["connection_id"] == wired.iter().find(|(c, ..)| c.kind == "resend").unwrap().2["id"])
            .unwrap()["id"]
            .as_str()
            .unwrap()
    );

    // Every rule's test event goes through that rule alone, to its vendor, and the attempt shows
    // the request sent and the vendor's answer.
    for (case, stub, _, rule) in &wired {
        let before = stub.count();
        let test = app.ok(Method::POST, &format!("/rules/{}/test", rule["id"].as_str().unwrap()), Some(json!({})), 202).await;
        let tested = app.wait_event(test["event_id"].as_str().unwrap(), "completed").await;
        assert_eq!(tested["test"], true);
        assert_eq!(tested["deliveries"].as_array().unwrap().len(), 1, "{}", case.kind);
        assert_eq!(stub.count(), before + case.requests.len(), "{}", case.kind);
        let detail = app.delivery(tested["deliveries"][0]["id"].as_str().unwrap()).await;
        assert!(detail["attempts"][0]["request"].is_string(), "{}: {detail}", case.kind);
        assert!(detail["attempts"][0]["status_code"].as_u64().is_some_and(|c| (200..300).contains(&c)), "{}: {detail}", case.kind);
    }
    let (_, hubspot, _, _) = wired.iter().find(|(c, ..)| c.kind == "hubspot").unwrap();
    let last_upsert = hubspot.all().iter().rev().find(|r| r.path.ends_with("/batch/upsert")).unwrap().json();
    assert_eq!(last_upsert["inputs"][0]["id"], "test@example.com");
}

#[tokio::test]
async fn connections_and_rules_are_checked_against_the_catalog() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("catalog").await;
    let catalog = app.ok(Method::GET, "/integrations", None, 200).await;
    let kinds: Vec<&str> = catalog["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    for k in [
        "webhook",
        "slack",
        "discord",
        "hubspot",
        "salesforce",
        "mailchimp",
        "sendgrid",
        "resend",
        "intercom",
        "customerio",
        "activecampaign",
        "mailerlite",
        "aweber",
        "zoom",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let slack = catalog["data"].as_array().unwrap().iter().find(|e| e["type"] == "slack").unwrap();
    assert_eq!(slack["limits"]["rate_limit_per_minute"], 60);
    assert_eq!(slack["retries_may_duplicate"], true);

    let create = |body: Value| {
        let app = &app;
        let path = format!("/workspaces/{}/connections", ws.id);
        async move { app.admin(Method::POST, &path, Some(body)).await }
    };
    let field = |v: &Value| v["error"]["details"][0]["field"].as_str().unwrap_or_default().to_owned();
    let (status, v) = create(json!({"type": "slack", "name": "s", "config": {}})).await;
    assert_eq!((status.as_u16(), field(&v).as_str()), (422, "credentials.access_token"), "{v}");
    let (status, v) = create(json!({"type": "salesforce", "name": "s", "credentials": {"access_token": "x"}, "config": {}})).await;
    assert_eq!((status.as_u16(), field(&v).as_str()), (422, "config.instance_url"), "{v}");
    let (status, v) =
        create(json!({"type": "mailchimp", "name": "m", "credentials": {"api_key": "k-us1"}, "config": {"region": "x"}})).await;
    assert_eq!((status.as_u16(), field(&v).as_str()), (422, "config.region"), "{v}");

    let conn = app
        .ok(
            Method::POST,
            &format!("/workspaces/{}/connections", ws.id),
            Some(json!({"type": "slack", "name": "s", "credentials": {"access_token": "xoxb-1"}})),
            201,
        )
        .await;
    assert_eq!(conn["rate_limit_per_minute"], 60, "the vendor's default limit: {conn}");
    assert_eq!(conn["max_in_flight"], 4);
    let rule = |action_config: Value| {
        let app = &app;
        let path = format!("/workspaces/{}/rules", ws.id);
        let body =
            json!({"name": "r", "event": "*", "connection_id": conn["id"], "action": "send_message", "action_config": action_config});
        async move { app.admin(Method::POST, &path, Some(body)).await }
    };
    let (status, v) = rule(json!({"channel": "C1", "template": "Hello {{ payload.name "})).await;
    assert_eq!((status.as_u16(), field(&v).as_str()), (422, "action_config.template"), "{v}");
    assert!(v["error"]["details"][0]["message"].as_str().unwrap().contains("syntax"), "{v}");
    let (status, v) = rule(json!({"template": "hi"})).await;
    assert_eq!((status.as_u16(), field(&v).as_str()), (422, "action_config.channel"), "{v}");

    let hubspot = app
        .ok(
            Method::POST,
            &format!("/workspaces/{}/connections", ws.id),
            Some(json!({"type": "hubspot", "name": "h", "credentials": {"access_token": "pat-1"}})),
            201,
        )
        .await;
    let (status, v) = app
        .admin(
            Method::POST,
            &format!("/workspaces/{}/rules", ws.id),
            Some(json!({"name": "r", "event": "*",
        "connection_id": hubspot["id"], "action": "add_to_list", "action_config": {"id": "1", "mapping": {"schema_version": 1,
        "fields": [{"dest": "email", "source": {"type": "path", "value": "payload.email"}, "transforms": ["shout"]}]}}})),
        )
        .await;
    assert_eq!((status.as_u16(), field(&v).as_str()), (422, "action_config.mapping.fields[0].transforms[0]"), "{v}");
    let (status, v) = app
        .admin(
            Method::POST,
            &format!("/workspaces/{}/rules", ws.id),
            Some(json!({"name": "r", "event": "*",
        "connection_id": hubspot["id"], "action": "send_message"})),
        )
        .await;
    assert_eq!((status.as_u16(), field(&v).as_str()), (422, "action"), "{v}");
}

#[tokio::test]
async fn a_template_that_fails_at_delivery_is_a_recorded_permanent_failure() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("render").await;
    let stub = vendor_stub().await;
    let conn = app
        .ok(
            Method::POST,
            &format!("/workspaces/{}/connections", ws.id),
            Some(json!({"type": "slack", "name": "s",
        "config": {"base_url": format!("http://{}", stub.addr)}, "credentials": {"access_token": "xoxb-1"}})),
            201,
        )
        .await;
    app.rule(
        &ws,
        &conn,
        "*",
        json!({"action": "send_message", "action_config": {"channel": "C1", "template": "{{ payload.when | date }}"}}),
    )
    .await;
    let id = app.emit_ok(&ws, json!({"event": "x", "payload": {"when": "not a date"}})).await;
    let event = app.wait_event(&id, "failed").await;
    let delivery = app.delivery(event["deliveries"][0]["id"].as_str().unwrap()).await;
    assert_eq!(delivery["status"], "dead");
    assert_eq!(delivery["attempt_count"], 1, "a render error is not retried");
    assert!(delivery["attempts"][0]["error"].as_str().unwrap().contains("template failed"), "{delivery}");
    assert_eq!(stub.count(), 0);
}

#[tokio::test]
async fn a_rate_limit_spaces_one_connection_and_leaves_others_alone() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("limits").await;
    let limited = Receiver::status(200).await;
    let free = Receiver::status(200).await;
    // 300 a minute: one every 200 ms.
    let slow = app.webhook(&ws, &limited.url(), json!({"rate_limit_per_minute": 300, "max_in_flight": 8})).await;
    assert_eq!(slow["rate_limit_per_minute"], 300);
    let fast = app.webhook(&ws, &free.url(), json!({})).await;
    app.rule(&ws, &slow, "tick", json!({})).await;
    app.rule(&ws, &fast, "tick", json!({})).await;
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(app.emit_ok(&ws, json!({"event": "tick", "payload": {"i": i}})).await);
    }
    free.wait_for(8).await;
    let unlimited_done = started.elapsed();
    let arrivals: Vec<Instant> = limited.wait_for(8).await.iter().map(|r| r.at).collect();
    let span = arrivals.last().unwrap().duration_since(arrivals[0]);
    // Eight starts at 200 ms spacing take at least 1.4 s; allow scheduling slack downwards.
    assert!(span >= Duration::from_millis(1_300), "8 deliveries at 300/min arrived within {span:?}");
    assert!(unlimited_done < span, "the unlimited connection waited for the limited one ({unlimited_done:?} vs {span:?})");
    for id in ids {
        let event = app.wait_event(&id, "completed").await;
        for d in event["deliveries"].as_array().unwrap() {
            assert_eq!(d["attempt_count"], 1, "waiting for a rate limit spent an attempt: {event}");
        }
    }
    // The limit can be changed or removed.
    let path = format!("/connections/{}", slow["id"].as_str().unwrap());
    let patched = app.ok(Method::PATCH, &path, Some(json!({"rate_limit_per_minute": null})), 200).await;
    assert_eq!(patched["rate_limit_per_minute"], Value::Null);
    let (status, v) = app.admin(Method::PATCH, &path, Some(json!({"rate_limit_per_minute": 0}))).await;
    assert_eq!(status.as_u16(), 422, "{v}");
}

#[tokio::test]
async fn a_429_holds_the_whole_connection_for_the_requested_wait() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("throttled").await;
    let receiver = Receiver::start(|n, _| {
        if n == 0 {
            Reply::WithHeaders(429, vec![("retry-after", "1".into())], "slow down".into())
        } else {
            Reply::Status(200)
        }
    })
    .await;
    // The wait is honoured up to the policy's longest delay.
    let conn = app.webhook(&ws, &receiver.url(), json!({"max_in_flight": 1, "retry_policy": {"max_delay_ms": 5000}})).await;
    app.rule(&ws, &conn, "*", json!({})).await;
    let first = app.emit_ok(&ws, json!({"event": "a", "payload": {}})).await;
    receiver.wait_for(1).await;
    let mut later = Vec::new();
    for _ in 0..3 {
        later.push(app.emit_ok(&ws, json!({"event": "b", "payload": {}})).await);
    }
    let all = receiver.wait_for(5).await;
    let held = all[1].at.duration_since(all[0].at);
    assert!(held >= Duration::from_millis(900), "the connection was not held after a 429: next request after {held:?}");
    let first = app.wait_event(&first, "completed").await;
    assert_eq!(first["deliveries"][0]["attempt_count"], 2);
    for id in later {
        let e = app.wait_event(&id, "completed").await;
        assert_eq!(e["deliveries"][0]["attempt_count"], 1, "a delivery that only waited spent an attempt: {e}");
    }
}

#[tokio::test]
async fn stored_credentials_never_follow_a_connection_to_a_new_address() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("moves").await;
    let conn = app
        .ok(Method::POST, &format!("/workspaces/{}/connections", ws.id),
            Some(json!({"type": "slack", "name": "s", "config": {"base_url": "http://127.0.0.1:1"}, "credentials": {"access_token": "xoxb-1"}})), 201)
        .await;
    let path = format!("/connections/{}", conn["id"].as_str().unwrap());
    let (status, v) = app.admin(Method::PATCH, &path, Some(json!({"config": {"base_url": "http://127.0.0.1:2"}}))).await;
    assert_eq!(status.as_u16(), 422, "{v}");
    assert_eq!(v["error"]["details"][0]["field"], "credentials");
    let hook = app.webhook(&ws, "http://127.0.0.1:3/hook", json!({"credentials": {"bearer_token": "b"}})).await;
    let hook_path = format!("/connections/{}", hook["id"].as_str().unwrap());
    let (status, _) = app.admin(Method::PATCH, &hook_path, Some(json!({"config": {"url": "http://127.0.0.1:4/elsewhere"}}))).await;
    assert_eq!(status.as_u16(), 422);
    // Given again, or an unchanged address: fine.
    app.ok(
        Method::PATCH,
        &path,
        Some(json!({"config": {"base_url": "http://127.0.0.1:2"}, "credentials": {"access_token": "xoxb-2"}})),
        200,
    )
    .await;
    app.ok(Method::PATCH, &path, Some(json!({"config": {"base_url": "http://127.0.0.1:2"}})), 200).await;
    // A connector that needs credentials cannot lose them.
    let (status, v) = app.admin(Method::PATCH, &path, Some(json!({"credentials": null}))).await;
    assert_eq!((status.as_u16(), v["error"]["details"][0]["field"].as_str()), (422, Some("credentials")), "{v}");
}
