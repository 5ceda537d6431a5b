//! Pickers fed by the destination: `GET /connections/{id}/options/{set}` against loopback stubs
//! that answer as each vendor documents its listing, page by page.

use crate::harness::*;
use reqwest::Method;
use serde_json::{json, Value};

/// A stub of every vendor's listing endpoints. Each paged listing has two pages, so that paging
/// is exercised; every answer is checked for the connection's credential first.
async fn listings() -> Receiver {
    Receiver::start(|_, r| {
        let query = r.query.clone().unwrap_or_default();
        let has = |pair: &str| query.split('&').any(|p| p == pair);
        let auth = r.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let api_token = r.headers.get("api-token").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let ok = |body: Value| Reply::WithHeaders(200, vec![("content-type", "application/json".into())], body.to_string());
        let refuse = || Reply::WithHeaders(401, vec![("content-type", "application/json".into())], r#"{"message":"bad token"}"#.into());
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/api/conversations.list") if auth == "Bearer xoxb-slack" => {
                if has("cursor=page2") {
                    ok(json!({"ok": true, "channels": [{"id": "C3", "name": "ops"}], "response_metadata": {"next_cursor": ""}}))
                } else if has("types=public_channel%2Cprivate_channel") && has("exclude_archived=true") {
                    ok(json!({"ok": true, "channels": [{"id": "C1", "name": "general"}, {"id": "C2", "name": "alerts"}], "response_metadata": {"next_cursor": "page2"}}))
                } else {
                    ok(json!({"ok": false, "error": "invalid_arguments"}))
                }
            }
            ("GET", "/api/conversations.list") => ok(json!({"ok": false, "error": "invalid_auth"})),
            ("GET", "/3.0/lists") if auth.starts_with("Basic ") => {
                if has("offset=100") {
                    ok(json!({"lists": [{"id": "aud3", "name": "Customers"}], "total_items": 101}))
                } else {
                    ok(json!({"lists": (0..100).map(|i| json!({"id": format!("a{i}"), "name": format!("Audience {i}")})).collect::<Vec<_>>(), "total_items": 101}))
                }
            }
            ("POST", "/crm/v3/lists/search") if auth == "Bearer pat-hubspot" => {
                if r.json()["offset"] == 2 {
                    ok(json!({"lists": [{"listId": "13", "name": "Churned"}], "hasMore": false, "offset": 3}))
                } else {
                    ok(json!({"lists": [{"listId": "11", "name": "Trials"}, {"listId": "12", "name": "Customers"}], "hasMore": true, "offset": 2}))
                }
            }
            ("GET", "/crm/v3/properties/contacts") if auth == "Bearer pat-hubspot" => ok(json!({"results": [
                {"name": "email", "label": "Email"},
                {"name": "lifecyclestage", "label": "Lifecycle stage"},
                {"name": "hs_object_id", "label": "Record ID", "modificationMetadata": {"readOnlyValue": true}}
            ]})),
            ("GET", "/v3/marketing/lists") if auth == "Bearer SG.key" => {
                if has("page_token=t2") {
                    ok(json!({"result": [{"id": "l3", "name": "VIP"}], "_metadata": {"self": "x"}}))
                } else {
                    ok(json!({"result": [{"id": "l1", "name": "Newsletter"}], "_metadata": {"next": "https://api.sendgrid.com/v3/marketing/lists?page_size=100&page_token=t2"}}))
                }
            }
            ("GET", "/v3/templates") if auth == "Bearer SG.key" && has("generations=dynamic") => {
                ok(json!({"result": [{"id": "d-1", "name": "Welcome"}], "_metadata": {}}))
            }
            ("GET", "/api/groups") if auth == "Bearer ml-token" => {
                if has("page=2") {
                    ok(json!({"data": [{"id": "g2", "name": "Beta"}], "meta": {"last_page": 2}}))
                } else {
                    ok(json!({"data": [{"id": "g1", "name": "Alpha"}], "meta": {"last_page": 2}}))
                }
            }
            ("GET", "/api/3/lists") if api_token == "ac-key" => ok(json!({"lists": [{"id": "1", "name": "Master"}], "meta": {"total": "1"}})),
            ("GET", "/api/3/tags") if api_token == "ac-key" => ok(json!({"tags": [{"id": "9", "tag": "vip"}], "meta": {"total": "1"}})),
            ("GET", "/1.0/accounts/acc1/lists") if auth == "Bearer aw-token" => {
                if has("ws.start=100") {
                    ok(json!({"entries": [{"id": 2, "name": "Second"}], "total_size": 101}))
                } else {
                    ok(json!({"entries": [{"id": 1, "name": "First"}], "total_size": 101}))
                }
            }
            _ => refuse(),
        }
    })
    .await
}

async fn connection(app: &TestApp, ws: &Workspace, kind: &str, config: Value, credentials: Value) -> String {
    let v = app
        .ok(
            Method::POST,
            &format!("/workspaces/{}/connections", ws.id),
            Some(json!({"type": kind, "name": kind, "config": config, "credentials": credentials})),
            201,
        )
        .await;
    v["id"].as_str().unwrap().to_owned()
}

fn values(v: &Value) -> Vec<(String, String)> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["value"].as_str().unwrap().to_owned(), c["label"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn every_picker_lists_the_destination_s_own_choices_page_by_page() {
    let app = TestApp::spawn().await;
    let stub = listings().await;
    let ws = app.workspace("a").await;
    let origin = format!("http://{}", stub.addr);
    let base = json!({"base_url": origin});
    let slack = connection(&app, &ws, "slack", base.clone(), json!({"access_token": "xoxb-slack"})).await;
    let mailchimp = connection(&app, &ws, "mailchimp", base.clone(), json!({"api_key": "mc-key-us6"})).await;
    let hubspot = connection(&app, &ws, "hubspot", base.clone(), json!({"access_token": "pat-hubspot"})).await;
    let sendgrid = connection(&app, &ws, "sendgrid", base.clone(), json!({"api_key": "SG.key"})).await;
    let mailerlite = connection(&app, &ws, "mailerlite", base.clone(), json!({"api_key": "ml-token"})).await;
    let activecampaign = connection(&app, &ws, "activecampaign", base.clone(), json!({"api_key": "ac-key"})).await;
    let aweber =
        connection(&app, &ws, "aweber", json!({"base_url": origin, "account_id": "acc1"}), json!({"access_token": "aw-token"})).await;
    let list = |id: &str, set: &str| {
        let path = format!("/connections/{id}/options/{set}");
        let app = &app;
        async move { app.ok(Method::GET, &path, None, 200).await }
    };
    let s = |pairs: &[(&str, &str)]| pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect::<Vec<_>>();
    assert_eq!(values(&list(&slack, "channels").await), s(&[("C1", "#general"), ("C2", "#alerts"), ("C3", "#ops")]));
    let audiences = list(&mailchimp, "audiences").await;
    assert_eq!(audiences["data"].as_array().unwrap().len(), 101);
    assert_eq!(values(&audiences).last().unwrap(), &("aud3".to_owned(), "Customers".to_owned()));
    assert_eq!(values(&list(&hubspot, "lists").await), s(&[("11", "Trials"), ("12", "Customers"), ("13", "Churned")]));
    assert_eq!(values(&list(&hubspot, "properties").await), s(&[("email", "Email"), ("lifecyclestage", "Lifecycle stage")]));
    assert_eq!(values(&list(&sendgrid, "lists").await), s(&[("l1", "Newsletter"), ("l3", "VIP")]));
    assert_eq!(values(&list(&sendgrid, "templates").await), s(&[("d-1", "Welcome")]));
    assert_eq!(values(&list(&mailerlite, "groups").await), s(&[("g1", "Alpha"), ("g2", "Beta")]));
    assert_eq!(values(&list(&activecampaign, "lists").await), s(&[("1", "Master")]));
    assert_eq!(values(&list(&activecampaign, "tags").await), s(&[("9", "vip")]));
    assert_eq!(values(&list(&aweber, "lists").await), s(&[("1", "First"), ("2", "Second")]));
    assert_eq!(audiences["truncated"], false);

    // The catalog says which field each set fills.
    let catalog = app.ok(Method::GET, "/integrations", None, 200).await;
    let slack_entry = catalog["data"].as_array().unwrap().iter().find(|c| c["type"] == "slack").unwrap();
    assert_eq!(slack_entry["actions"][0]["fields"][0]["choices"], "channels");

    // A second listing within the minute is served without asking the vendor again.
    let asked = stub.count();
    list(&slack, "channels").await;
    assert_eq!(stub.count(), asked);
    app.shutdown().await;
}

#[tokio::test]
async fn listing_failures_are_clear_and_never_show_the_credential() {
    let app = TestApp::spawn().await;
    let stub = listings().await;
    let a = app.workspace("a").await;
    let b = app.workspace("b").await;
    let origin = format!("http://{}", stub.addr);
    let base = json!({"base_url": origin});
    let refused = connection(&app, &a, "mailerlite", base.clone(), json!({"api_key": "ml-wrong-secret-token"})).await;
    let (status, v) = app.admin(Method::GET, &format!("/connections/{refused}/options/groups"), None).await;
    assert_eq!(status.as_u16(), 502, "{v}");
    assert_eq!(v["error"]["code"], "destination_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("MailerLite could not list its groups") && message.contains("bad token"), "{message}");
    assert!(!v.to_string().contains("ml-wrong-secret-token"));
    // A Slack answer of ok: false names Slack's error.
    let slack = connection(&app, &a, "slack", base.clone(), json!({"access_token": "xoxb-revoked"})).await;
    let (status, v) = app.admin(Method::GET, &format!("/connections/{slack}/options/channels"), None).await;
    assert_eq!(status.as_u16(), 502, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("invalid_auth"), "{v}");

    // Unknown sets name the known ones; a webhook has none.
    let (status, v) = app.admin(Method::GET, &format!("/connections/{slack}/options/lists"), None).await;
    assert_eq!(status.as_u16(), 404);
    assert!(v["error"]["message"].as_str().unwrap().contains("channels"), "{v}");
    let hook = app.webhook(&a, &stub.url(), json!({})).await;
    let (status, v) = app.admin(Method::GET, &format!("/connections/{}/options/channels", hook["id"].as_str().unwrap()), None).await;
    assert_eq!(status.as_u16(), 404);
    assert!(v["error"]["message"].as_str().unwrap().contains("lists no choices"), "{v}");

    // Editors may list; viewers may not; another workspace's session cannot see the connection.
    let good = connection(&app, &a, "mailerlite", base.clone(), json!({"api_key": "ml-token"})).await;
    let token = |ws: &Workspace, role: &str| {
        let app = &app;
        let body = json!({"workspace_id": ws.id, "role": role});
        async move { app.ok(Method::POST, "/sessions", Some(body), 201).await["access_token"].as_str().unwrap().to_owned() }
    };
    let path = format!("/api/v1/connections/{good}/options/groups");
    let (status, _) = app.call(Method::GET, &path, Some(&token(&a, "editor").await), None).await;
    assert_eq!(status.as_u16(), 200);
    // Listing choices is reading: a viewer may (read-only API keys read every GET).
    let (status, _) = app.call(Method::GET, &path, Some(&token(&a, "viewer").await), None).await;
    assert_eq!(status.as_u16(), 200);
    let (status, _) = app.call(Method::GET, &path, Some(&token(&b, "admin").await), None).await;
    assert_eq!(status.as_u16(), 404);
    app.shutdown().await;
}
