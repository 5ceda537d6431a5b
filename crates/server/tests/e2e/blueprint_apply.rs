//! Blueprints planned and applied: three workspaces with their own variables, idempotency,
//! resources made by hand left alone, concurrent applies, drift reverted or accepted.

use crate::harness::*;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

const EXAMPLE: &str = include_str!("../../../../docs/examples/alerts.blueprint.yaml");

async fn submit(app: &TestApp, text: &str) -> Value {
    let res = app
        .client
        .post(format!("{}/api/v1/blueprints", app.base))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/yaml")
        .body(text.to_owned())
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    res.json().await.unwrap()
}

/// A workspace labelled `product=acme, env=<env>`, with the example's two secrets.
async fn environment(app: &TestApp, env: &str) -> String {
    let ws = app.ok(Method::POST, "/workspaces", Some(json!({"name": env, "labels": {"product": "acme", "env": env}})), 201).await;
    let id = ws["id"].as_str().unwrap().to_owned();
    for (name, value) in [("slack_token", format!("xoxb-{env}-token")), ("hubspot_token", format!("pat-{env}-token"))] {
        app.ok(Method::PUT, &format!("/workspaces/{id}/secrets/{name}"), Some(json!({"value": value})), 201).await;
    }
    id
}

/// The workspace's rules (or connections) by name.
async fn by_name(app: &TestApp, ws: &str, what: &str) -> std::collections::BTreeMap<String, Value> {
    let list = app.ok(Method::GET, &format!("/workspaces/{ws}/{what}?limit=100"), None, 200).await;
    list["data"].as_array().unwrap().iter().map(|r| (r["name"].as_str().unwrap().to_owned(), r.clone())).collect()
}

fn plan_of<'a>(out: &'a Value, ws: &str) -> &'a Value {
    out["workspaces"].as_array().unwrap().iter().find(|w| w["workspace_id"] == ws).unwrap_or_else(|| panic!("{ws} in {out}"))
}

fn actions(changes: &Value) -> Vec<String> {
    changes.as_array().unwrap().iter().map(|c| format!("{} {}", c["action"].as_str().unwrap(), c["resource"].as_str().unwrap())).collect()
}

#[tokio::test]
async fn a_blueprint_is_planned_and_applied_to_three_workspaces_each_with_its_values_and_applying_again_changes_nothing() {
    let app = TestApp::spawn().await;
    let (dev, staging, prod) = (environment(&app, "dev").await, environment(&app, "staging").await, environment(&app, "prod").await);
    // Labelled like the others, but its secrets were never set: it cannot be applied.
    let bare = app.ok(Method::POST, "/workspaces", Some(json!({"name": "bare", "labels": {"product": "acme", "env": "prod"}})), 201).await;
    let bare = bare["id"].as_str().unwrap().to_owned();
    // Not selected by the targets.
    let other = app.workspace("other").await;
    let stored = submit(&app, EXAMPLE).await;
    assert_eq!(stored["version"], 1);

    let plan = app.ok(Method::POST, "/blueprints/alerts-and-signups/plan", None, 200).await;
    assert_eq!(plan["workspaces"].as_array().unwrap().len(), 4, "{plan}");
    assert!(!plan.to_string().contains(&other.id));
    let expected = [
        "create connections.hubspot",
        "create connections.slack",
        "create rules.alerts",
        "create rules.signups",
        "create event_types[\"alert.triggered\"]",
        "create event_types[\"user.created\"]",
    ];
    for ws in [&dev, &staging, &prod] {
        assert_eq!(actions(&plan_of(&plan, ws)["changes"]), expected, "{plan}");
        assert_eq!(plan_of(&plan, ws)["problems"], json!([]));
    }
    let bare_plan = plan_of(&plan, &bare);
    assert_eq!(bare_plan["problems"][0]["field"], "secrets.hubspot_token", "{bare_plan}");
    assert_eq!(plan["failed"], 1);
    // A plan never holds a secret.
    assert!(!plan.to_string().contains("-token"), "{plan}");
    // Planning wrote nothing.
    assert!(by_name(&app, &dev, "connections").await.is_empty());

    let applied = app.ok(Method::POST, "/blueprints/alerts-and-signups/apply", None, 200).await;
    assert_eq!((applied["applied"].as_u64(), applied["failed"].as_u64()), (Some(3), Some(1)), "{applied}");
    assert_eq!(plan_of(&applied, &bare)["status"], "failed");
    assert!(by_name(&app, &bare, "connections").await.is_empty(), "a workspace with problems is left as it was");

    // Each workspace has its own channel, list and threshold.
    for (ws, channel, list, severity) in
        [(&dev, "#dev-alerts", "101", 1), (&staging, "#staging-alerts", "102", 2), (&prod, "#alerts", "103", 2)]
    {
        let rules = by_name(&app, ws, "rules").await;
        let alerts = &rules[&format!("Alerts to {channel}")];
        assert_eq!(alerts["action_config"]["channel"], channel);
        assert_eq!(alerts["conditions"]["all"][0]["value"], severity);
        assert!(alerts["action_config"]["template"].as_str().unwrap().contains("payload.title"));
        assert_eq!(rules["New users to HubSpot"]["action_config"]["id"], list);
        let connections = by_name(&app, ws, "connections").await;
        assert_eq!(connections["Team Slack"]["has_credentials"], true);
        assert_eq!(connections["HubSpot"]["max_in_flight"], 4);
        assert_eq!(alerts["connection_id"], connections["Team Slack"]["id"]);
        let declared = app.ok(Method::GET, &format!("/workspaces/{ws}/event-types/user.created"), None, 200).await;
        assert_eq!(declared["declared"], true);
    }
    // The secrets were sealed into the credentials, never written out.
    assert!(!database_contents(&app).await.contains("xoxb-dev-token"));

    // Applying again changes nothing (not even an updated_at); nor does planning show anything.
    let (rules_before, connections_before) = (by_name(&app, &prod, "rules").await, by_name(&app, &prod, "connections").await);
    let again = app.ok(Method::POST, "/blueprints/alerts-and-signups/apply?workspaces=", None, 200).await;
    assert_eq!((again["applied"].as_u64(), again["unchanged"].as_u64()), (Some(0), Some(3)), "{again}");
    assert_eq!(by_name(&app, &prod, "connections").await, connections_before);
    let before = rules_before;
    let plan = app.ok(Method::POST, &format!("/blueprints/alerts-and-signups/plan?workspaces={dev},{staging},{prod}"), None, 200).await;
    assert_eq!(plan["changes"], 0, "{plan}");
    assert_eq!(by_name(&app, &prod, "rules").await, before, "not even updated_at moves");

    // A connection made by hand is never the blueprint's to delete.
    let hand =
        app.webhook(&Workspace { id: dev.clone(), pk: String::new() }, "https://hooks.example.com/x", json!({"name": "By hand"})).await;

    // Version 2: the default channel changes (only prod uses it) and the HubSpot part goes.
    let mut v2 = EXAMPLE.replace("default: \"#alerts\"", "default: \"#ops\"");
    let cut = v2.find("  signups:").unwrap();
    v2.truncate(cut);
    let start = v2.find("  hubspot:\n").unwrap();
    let end = v2[start..].find("rules:").unwrap() + start;
    v2.replace_range(start..end, "\n");
    assert_eq!(submit(&app, &v2).await["version"], 2);
    let plan = app.ok(Method::POST, &format!("/blueprints/alerts-and-signups/plan?workspaces={dev},{prod}"), None, 200).await;
    assert_eq!(actions(&plan_of(&plan, &dev)["changes"]), ["delete connections.hubspot", "delete rules.signups"], "{plan}");
    let prod_plan = plan_of(&plan, &prod);
    assert_eq!(actions(&prod_plan["changes"]), ["delete connections.hubspot", "update rules.alerts", "delete rules.signups"], "{plan}");
    let fields = &prod_plan["changes"][1]["fields"];
    assert_eq!(
        fields,
        &json!([{"field": "action_config.channel", "from": "#alerts", "to": "#ops"}, {"field": "name", "from": "Alerts to #alerts", "to": "Alerts to #ops"}])
    );
    // Asked for, a prune also removes what was made by hand.
    let pruned = app.ok(Method::POST, &format!("/blueprints/alerts-and-signups/plan?workspaces={dev}&prune=true"), None, 200).await;
    assert!(
        actions(&plan_of(&pruned, &dev)["changes"]).contains(&format!("delete unmanaged.connections.{}", hand["id"].as_str().unwrap())),
        "{pruned}"
    );

    app.ok(Method::POST, &format!("/blueprints/alerts-and-signups/apply?workspaces={dev},{prod}"), None, 200).await;
    let dev_connections = by_name(&app, &dev, "connections").await;
    assert_eq!(dev_connections.keys().collect::<Vec<_>>(), ["By hand", "Team Slack"]);
    assert_eq!(by_name(&app, &prod, "rules").await.keys().collect::<Vec<_>>(), ["Alerts to #ops"]);
    // Staging was not asked: it keeps version 1 until applied.
    assert_eq!(by_name(&app, &staging, "rules").await.len(), 2);

    // Only installation keys plan and apply.
    let key = app
        .ok(
            Method::POST,
            "/api-keys",
            Some(json!({"name": "dev only", "scope": "workspaces", "workspaces": [{"workspace_id": dev, "role": "admin"}]})),
            201,
        )
        .await;
    let key = key["key"].as_str().unwrap();
    for path in ["/api/v1/blueprints/alerts-and-signups/plan", "/api/v1/blueprints/alerts-and-signups/apply"] {
        let (status, _) = app.call(Method::POST, path, Some(key), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let audit = app.ok(Method::GET, "/audit-log", None, 200).await.to_string();
    assert!(audit.contains("blueprint.apply"), "{audit}");
}

#[tokio::test]
async fn a_document_can_be_planned_before_it_is_stored_and_problems_of_a_workspace_are_named() {
    let app = TestApp::spawn().await;
    let dev = environment(&app, "dev").await;
    let res = app
        .client
        .post(format!("{}/api/v1/blueprints/plan", app.base))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/yaml")
        .body(EXAMPLE)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let plan: Value = res.json().await.unwrap();
    assert_eq!((plan["blueprint"].clone(), plan["version"].as_i64()), (Value::Null, Some(0)));
    assert_eq!(plan_of(&plan, &dev)["changes"].as_array().unwrap().len(), 6);
    let (status, _) = app.admin(Method::POST, "/blueprints/alerts-and-signups/apply", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing stored, nothing to apply");

    // A variable without a value for this workspace, and a config the connection refuses.
    let broken = "version: 1\nname: broken\nvariables:\n  url: {}\nconnections:\n  hook:\n    type: webhook\n    name: Hook\n    config: {url: \"${var:url}\"}\n  bad:\n    type: webhook\n    name: Bad\n    config: {url: \"not a url\"}\n";
    submit(&app, broken).await;
    let plan = app.ok(Method::POST, &format!("/blueprints/broken/plan?workspaces={dev}"), None, 200).await;
    let problems = &plan_of(&plan, &dev)["problems"];
    assert_eq!(problems[0]["field"], "connections.hook.config.url", "{plan}");
    assert!(problems[0]["message"].as_str().unwrap().contains("no value"), "{plan}");
    // No targets: the workspaces must be named.
    let (status, body) = app.admin(Method::POST, "/blueprints/broken/plan", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let fixed = broken.replace("  url: {}", "  url: {default: \"https://hooks.example.com/a\"}");
    submit(&app, &fixed).await;
    let plan = app.ok(Method::POST, &format!("/blueprints/broken/plan?workspaces={dev}"), None, 200).await;
    let problems = &plan_of(&plan, &dev)["problems"];
    assert_eq!(problems.as_array().unwrap().len(), 1, "{plan}");
    assert_eq!(problems[0]["field"], "connections.bad.config.url", "{plan}");
}

#[tokio::test]
async fn concurrent_applies_to_one_workspace_make_each_resource_once() {
    let app = TestApp::spawn().await;
    let dev = environment(&app, "dev").await;
    submit(&app, EXAMPLE).await;
    let path = format!("/api/v1/blueprints/alerts-and-signups/apply?workspaces={dev}");
    let calls = (0..6).map(|_| app.call(Method::POST, &path, Some(ADMIN_KEY), None));
    let results = futures::future::join_all(calls).await;
    let mut applied = 0;
    for (status, body) in &results {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body["failed"], 0, "{body}");
        applied += body["applied"].as_u64().unwrap();
    }
    assert_eq!(applied, 1, "one apply made the resources; the others found nothing to do");
    assert_eq!(by_name(&app, &dev, "connections").await.len(), 2);
    assert_eq!(by_name(&app, &dev, "rules").await.len(), 2);
}

#[tokio::test]
async fn a_change_by_hand_is_drift_until_applied_over_or_accepted_as_the_workspaces_own() {
    let app = TestApp::spawn().await;
    let prod = environment(&app, "prod").await;
    let ws = Workspace { id: prod.clone(), pk: String::new() };
    // The workspace listens for drift notifications.
    let inbox = Receiver::status(200).await;
    let hook = app.webhook(&ws, &inbox.url(), json!({"name": "ops inbox"})).await;
    app.rule(&ws, &hook, "switchyard.blueprint.*", json!({"name": "drift to ops"})).await;
    submit(&app, EXAMPLE).await;
    app.ok(Method::POST, "/blueprints/alerts-and-signups/apply", None, 200).await;
    let drift = app.ok(Method::GET, "/blueprints/alerts-and-signups/drift", None, 200).await;
    assert_eq!((drift["drifted"].as_u64(), drift["workspaces"][0]["drift"].clone()), (Some(0), json!([])), "{drift}");

    // The customer, in the embedded pages (an editor session), moves the alerts to another
    // channel; an operator renames the Slack connection.
    let rules = by_name(&app, &prod, "rules").await;
    let rule_id = rules["Alerts to #alerts"]["id"].as_str().unwrap().to_owned();
    let session = app.ok(Method::POST, "/sessions", Some(json!({"workspace_id": prod, "role": "editor"})), 201).await;
    let token = session["access_token"].as_str().unwrap();
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/rules/{rule_id}"),
            Some(token),
            Some(json!({"action_config": {"channel": "#mine", "template": "{{ payload.title }}"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The session can neither see the blueprint's drift nor accept its own change.
    let (status, _) = app.call(Method::GET, "/api/v1/blueprints/alerts-and-signups/drift", Some(token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let overrides_path = format!("/api/v1/blueprints/alerts-and-signups/overrides/{prod}");
    let (status, _) = app.call(Method::PUT, &overrides_path, Some(token), Some(json!({"overrides": {}}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let slack = by_name(&app, &prod, "connections").await["Team Slack"]["id"].as_str().unwrap().to_owned();
    app.ok(Method::PATCH, &format!("/connections/{slack}"), Some(json!({"name": "Our Slack"})), 200).await;

    let drift = app.ok(Method::GET, "/blueprints/alerts-and-signups/drift", None, 200).await;
    assert_eq!(drift["drifted"], 1, "{drift}");
    let changes = &drift["workspaces"][0]["drift"];
    assert_eq!(actions(changes), ["update connections.slack", "update rules.alerts"]);
    assert_eq!(changes[0]["fields"], json!([{"field": "name", "from": "Our Slack", "to": "Team Slack"}]));
    let rule_fields: Vec<&str> = changes[1]["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(rule_fields, ["action_config.channel", "action_config.template"], "{drift}");
    assert_eq!(changes[1]["fields"][0], json!({"field": "action_config.channel", "from": "#mine", "to": "#alerts"}));

    // Each hand change was told as a notification.
    let told = inbox.wait_for(2).await;
    let bodies: Vec<Value> = told.iter().map(|r| r.json()).collect();
    let resources: Vec<&str> = bodies.iter().filter_map(|b| b["data"]["resource"].as_str()).collect();
    assert!(resources.contains(&"rules.alerts") && resources.contains(&"connections.slack"), "{bodies:?}");
    assert!(
        bodies.iter().all(|b| b["type"] == "switchyard.blueprint.drift" && b["data"]["blueprint"] == "alerts-and-signups"),
        "{bodies:?}"
    );

    // Applying reverts it.
    let applied = app.ok(Method::POST, "/blueprints/alerts-and-signups/apply", None, 200).await;
    assert_eq!(applied["applied"], 1, "{applied}");
    let rules = by_name(&app, &prod, "rules").await;
    assert_eq!(rules["Alerts to #alerts"]["action_config"]["channel"], "#alerts");
    assert!(by_name(&app, &prod, "connections").await.contains_key("Team Slack"));
    assert_eq!(app.ok(Method::GET, "/blueprints/alerts-and-signups/drift", None, 200).await["drifted"], 0);

    // The customer owns their channel: an override, then their change is not drift and stays.
    let overrides = json!({"overrides": {"rules.alerts": ["action_config.channel"]}});
    app.ok(Method::PUT, &format!("/blueprints/alerts-and-signups/overrides/{prod}"), Some(overrides.clone()), 200).await;
    assert_eq!(app.ok(Method::GET, &format!("/blueprints/alerts-and-signups/overrides/{prod}"), None, 200).await, overrides);
    let template = rules["Alerts to #alerts"]["action_config"]["template"].clone();
    app.ok(Method::PATCH, &format!("/rules/{rule_id}"), Some(json!({"action_config": {"channel": "#mine", "template": template}})), 200)
        .await;
    let drift = app.ok(Method::GET, "/blueprints/alerts-and-signups/drift", None, 200).await;
    assert_eq!(drift["drifted"], 0, "{drift}");
    assert_eq!(drift["workspaces"][0]["overrides"], overrides["overrides"]);
    let again = app.ok(Method::POST, "/blueprints/alerts-and-signups/apply", None, 200).await;
    assert_eq!(again["unchanged"], 1, "{again}");
    assert_eq!(by_name(&app, &prod, "rules").await["Alerts to #alerts"]["action_config"]["channel"], "#mine");
    // The rest of the rule is still the blueprint's.
    app.ok(Method::PATCH, &format!("/rules/{rule_id}"), Some(json!({"event": "alert.critical"})), 200).await;
    let drift = app.ok(Method::GET, "/blueprints/alerts-and-signups/drift", None, 200).await;
    assert_eq!(
        drift["workspaces"][0]["drift"][0]["fields"],
        json!([{"field": "event", "from": "alert.critical", "to": "alert.*"}]),
        "{drift}"
    );

    // Deleted by hand, a connection (and the rule with it) is drift, and made again by apply.
    app.ok(Method::DELETE, &format!("/connections/{slack}?force=true"), None, 204).await;
    let drift = app.ok(Method::GET, "/blueprints/alerts-and-signups/drift", None, 200).await;
    let notes: Vec<&str> = drift["workspaces"][0]["drift"].as_array().unwrap().iter().filter_map(|c| c["note"].as_str()).collect();
    assert_eq!(notes, ["deleted by hand: made again", "deleted by hand: made again"], "{drift}");
    app.ok(Method::POST, "/blueprints/alerts-and-signups/apply", None, 200).await;
    let rules = by_name(&app, &prod, "rules").await;
    // Made again, it has the blueprint's values; the override stays for the next hand change.
    assert_eq!(rules["Alerts to #alerts"]["action_config"]["channel"], "#alerts");
    assert_eq!(rules["Alerts to #alerts"]["event"], "alert.*");
    assert_eq!(app.ok(Method::GET, &format!("/blueprints/alerts-and-signups/overrides/{prod}"), None, 200).await, overrides);

    // Overrides name managed resources and their fields.
    for bad in [
        json!({"overrides": {"rules.nope": ["name"]}}),
        json!({"overrides": {"rules.alerts": ["colour"]}}),
        json!({"overrides": {"webhooks.x": ["name"]}}),
    ] {
        let (status, body) = app.admin(Method::PUT, &format!("/blueprints/alerts-and-signups/overrides/{prod}"), Some(bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
}

#[tokio::test]
async fn a_workspace_created_with_labels_a_blueprint_selects_starts_with_the_blueprint_applied() {
    let app = TestApp::spawn().await;
    submit(&app, EXAMPLE).await;
    // Created with its labels and the secrets the blueprint refers to: ready at once.
    let created = app
        .ok(
            Method::POST,
            "/workspaces",
            Some(json!({"name": "new customer", "labels": {"product": "acme", "env": "staging"},
                        "secrets": {"slack_token": "xoxb-new-customer", "hubspot_token": "pat-new-customer"}})),
            201,
        )
        .await;
    assert!(!created.to_string().contains("new-customer"), "secrets are never shown: {created}");
    let ws = created["id"].as_str().unwrap().to_owned();
    let applied = &created["blueprints"];
    assert_eq!(applied.as_array().unwrap().len(), 1, "{created}");
    assert_eq!(
        (applied[0]["name"].as_str(), applied[0]["version"].as_i64(), applied[0]["status"].as_str()),
        (Some("alerts-and-signups"), Some(1), Some("applied"))
    );
    assert_eq!(applied[0]["changes"].as_array().unwrap().len(), 6);
    let rules = by_name(&app, &ws, "rules").await;
    assert_eq!(rules["Alerts to #staging-alerts"]["action_config"]["channel"], "#staging-alerts");
    assert_eq!(by_name(&app, &ws, "connections").await["Team Slack"]["has_credentials"], true);
    let secrets = app.ok(Method::GET, &format!("/workspaces/{ws}/secrets"), None, 200).await;
    assert_eq!(secrets["data"].as_array().unwrap().len(), 2);
    let drift = app.ok(Method::GET, "/blueprints/alerts-and-signups/drift", None, 200).await;
    assert_eq!(drift["workspaces"][0]["workspace_id"], ws.as_str());
    let audit = app.ok(Method::GET, "/audit-log", None, 200).await.to_string();
    assert!(!audit.contains("new-customer") && audit.contains("slack_token"), "secrets are named in the log, never shown");

    // Without its secrets the workspace is made all the same; the blueprint waits for them.
    let bare = app.ok(Method::POST, "/workspaces", Some(json!({"name": "bare", "labels": {"product": "acme", "env": "dev"}})), 201).await;
    let bare_id = bare["id"].as_str().unwrap().to_owned();
    assert_eq!(bare["blueprints"][0]["status"], "failed", "{bare}");
    assert_eq!(bare["blueprints"][0]["problems"][0]["field"], "secrets.hubspot_token");
    assert!(by_name(&app, &bare_id, "connections").await.is_empty());
    for name in ["slack_token", "hubspot_token"] {
        app.ok(Method::PUT, &format!("/workspaces/{bare_id}/secrets/{name}"), Some(json!({"value": "v"})), 201).await;
    }
    let applied = app.ok(Method::POST, &format!("/blueprints/alerts-and-signups/apply?workspaces={bare_id}"), None, 200).await;
    assert_eq!(applied["applied"], 1, "{applied}");
    assert!(by_name(&app, &bare_id, "rules").await.contains_key("Alerts to #dev-alerts"));

    // Not selected: nothing applied.
    let other = app.ok(Method::POST, "/workspaces", Some(json!({"name": "other", "labels": {"product": "other"}})), 201).await;
    assert_eq!(other["blueprints"], json!([]));
    // Bad secrets refuse the workspace before anything is made.
    let (status, body) = app.admin(Method::POST, "/workspaces", Some(json!({"name": "x", "secrets": {"bad name": "v"}}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "secrets[\"bad name\"]");
    let (status, _) = app.admin(Method::POST, "/workspaces", Some(json!({"name": "x", "secrets": {"empty": ""}}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let list = app.ok(Method::GET, "/workspaces?limit=100", None, 200).await;
    assert!(list["data"].as_array().unwrap().iter().all(|w| w["name"] != "x"));
}

/// A connection's or rule's view without what is the workspace's own (ids, times).
fn portable(mut v: Value, connection_names: &std::collections::BTreeMap<String, String>) -> Value {
    let map = v.as_object_mut().unwrap();
    for field in ["id", "workspace_id", "created_at", "updated_at", "signing_secret", "previous_secret_expires_at"] {
        map.remove(field);
    }
    if let Some(Value::String(id)) = map.remove("connection_id") {
        map.insert("connection".into(), Value::String(connection_names[&id].clone()));
    }
    v
}

async fn portable_views(app: &TestApp, ws: &str) -> (Value, Value, Value) {
    let connections = by_name(app, ws, "connections").await;
    let names: std::collections::BTreeMap<String, String> =
        connections.values().map(|c| (c["id"].as_str().unwrap().to_owned(), c["name"].as_str().unwrap().to_owned())).collect();
    let connections: Vec<Value> = connections.into_values().map(|c| portable(c, &names)).collect();
    let rules: Vec<Value> = by_name(app, ws, "rules").await.into_values().map(|r| portable(r, &names)).collect();
    let declared = app.ok(Method::GET, &format!("/workspaces/{ws}/event-types/order.created"), None, 200).await;
    let declared = json!([declared["description"], declared["json_schema"], declared["example"], declared["declared"]]);
    (json!(connections), json!(rules), declared)
}

#[tokio::test]
async fn a_workspace_exported_and_applied_to_an_empty_one_is_reproduced_exactly() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::status(200).await;
    let a = app.workspace("Hand built").await;
    let hook = app
        .webhook(
            &a,
            &receiver.url(),
            json!({"name": "Orders hook", "credentials": {"bearer_token": "tok-a", "headers": {"X-Api-Key": "hdr-a"}}, "retry_policy": {"max_attempts": 3, "initial_delay_ms": 100, "max_delay_ms": 1000},
                   "timeout_ms": 3000, "max_in_flight": 2, "circuit_breaker": {"min_requests": 7}}),
        )
        .await;
    let slack = app
        .ok(
            Method::POST,
            &format!("/workspaces/{}/connections", a.id),
            Some(json!({"type": "slack", "name": "Team Slack", "credentials": {"access_token": "xoxb-a"}})),
            201,
        )
        .await;
    app.rule(
        &a,
        &hook,
        "order.created",
        json!({"name": "Big orders", "active": false, "conditions": {"all": [{"path": "payload.total", "op": "gte", "value": 100}]}}),
    )
    .await;
    app.rule(
        &a,
        &slack,
        "order.*",
        json!({"name": "Orders to ${not a reference}", "action": "send_message",
               "action_config": {"channel": "#orders", "template": "Order of {{ payload.total }} (costs $${price})"}}),
    )
    .await;
    app.ok(
        Method::PUT,
        &format!("/workspaces/{}/event-types/order.created", a.id),
        Some(json!({"description": "An order (costs ${price})", "json_schema": {"type": "object"}, "example": {"total": 120, "note": "${x}"}})),
        200,
    )
    .await;

    let exported = app.ok(Method::GET, &format!("/workspaces/{}/blueprint?name=orders", a.id), None, 200).await;
    assert_eq!(
        exported["secrets"],
        json!(["orders_hook_bearer_token", "orders_hook_headers_x-api-key", "team_slack_access_token"]),
        "{exported}"
    );
    let yaml = exported["yaml"].as_str().unwrap();
    assert!(!yaml.contains("tok-a") && !yaml.contains("xoxb-a"), "credentials are references: {yaml}");
    assert!(yaml.contains("${secret:orders_hook_bearer_token}") && yaml.starts_with("version: 1"), "{yaml}");
    assert_eq!(submit(&app, yaml).await["name"], "orders");

    // An empty workspace, given the same secrets, becomes the same.
    let b = app
        .ok(
            Method::POST,
            "/workspaces",
            Some(json!({"name": "Copy", "secrets": {"orders_hook_bearer_token": "tok-a", "orders_hook_headers_x-api-key": "hdr-a", "team_slack_access_token": "xoxb-a"}})),
            201,
        )
        .await;
    let b = b["id"].as_str().unwrap().to_owned();
    let applied = app.ok(Method::POST, &format!("/blueprints/orders/apply?workspaces={b}"), None, 200).await;
    assert_eq!(applied["applied"], 1, "{applied}");
    let (from, to) = (portable_views(&app, &a.id).await, portable_views(&app, &b).await);
    assert_eq!(from.0, to.0, "connections");
    assert_eq!(from.1, to.1, "rules");
    assert_eq!(from.2, to.2, "event types");
    assert_eq!(to.1[1]["name"], "Orders to ${not a reference}");
    // The credentials are the same too: planning again finds nothing to change.
    let plan = app.ok(Method::POST, &format!("/blueprints/orders/plan?workspaces={b}"), None, 200).await;
    assert_eq!(plan["changes"], 0, "{plan}");
    // And the copy delivers with them.
    let rules = by_name(&app, &b, "rules").await;
    app.ok(Method::PATCH, &format!("/rules/{}", rules["Big orders"]["id"].as_str().unwrap()), Some(json!({"active": true})), 200).await;
    app.ok(Method::POST, &format!("/workspaces/{b}/events"), Some(json!({"event": "order.created", "payload": {"total": 500}})), 202).await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].headers.get("authorization").and_then(|h| h.to_str().ok()), Some("Bearer tok-a"));
    assert_eq!(got[0].headers.get("x-api-key").and_then(|h| h.to_str().ok()), Some("hdr-a"));
}

#[tokio::test]
async fn a_workspace_past_its_limits_is_left_as_it_was_and_the_others_are_applied() {
    let app = TestApp::spawn().await;
    let (dev, prod) = (environment(&app, "dev").await, environment(&app, "prod").await);
    // Room for one connection: the blueprint makes two.
    app.ok(Method::PATCH, &format!("/workspaces/{dev}"), Some(json!({"limits": {"connections": 1}})), 200).await;
    submit(&app, EXAMPLE).await;
    let applied = app.ok(Method::POST, "/blueprints/alerts-and-signups/apply", None, 200).await;
    assert_eq!((applied["applied"].as_u64(), applied["failed"].as_u64()), (Some(1), Some(1)), "{applied}");
    let failed = plan_of(&applied, &dev);
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["problems"][0]["field"], "connections", "{failed}");
    assert!(failed["problems"][0]["message"].as_str().unwrap().contains("limit of 1 connection"), "{failed}");
    assert!(by_name(&app, &dev, "connections").await.is_empty(), "all of a workspace's changes or none");
    assert!(by_name(&app, &dev, "rules").await.is_empty());
    let declared = app.ok(Method::GET, &format!("/workspaces/{dev}/event-types?limit=100"), None, 200).await;
    assert_eq!(declared["data"], json!([]), "not even the event types");
    assert_eq!(by_name(&app, &prod, "connections").await.len(), 2);
    let drift = app.ok(Method::GET, "/blueprints/alerts-and-signups/drift", None, 200).await;
    assert_eq!(drift["workspaces"].as_array().unwrap().len(), 1, "applied to prod only: {drift}");
}

#[tokio::test]
async fn a_plan_never_quotes_a_secret_even_where_an_integration_refuses_it() {
    // No private addresses: the integration names the address it refuses.
    let app = TestApp::spawn_with(|c| c.allow_private_destinations = false).await;
    let ws = app.workspace("acme").await;
    app.ok(Method::PUT, &format!("/workspaces/{}/secrets/token", ws.id), Some(json!({"value": "Xoxb-Secret-Value-1234"})), 201).await;
    // Secrets are write-only even for an admin key: a document planned must not be a way to read them.
    let doc = format!(
        "version: 1\nname: probe\ntargets: {{workspaces: [{}]}}\nconnections:\n  d:\n    type: discord\n    name: D\n    credentials: {{webhook_url: \"http://${{secret:token}}.localhost/\"}}\n",
        ws.id
    );
    let res = app
        .client
        .post(format!("{}/api/v1/blueprints/plan", app.base))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/yaml")
        .body(doc)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let plan = res.text().await.unwrap();
    assert!(!plan.to_lowercase().contains("secret-value"), "{plan}");
    let plan: Value = serde_json::from_str(&plan).unwrap();
    let problem = &plan["workspaces"][0]["problems"][0];
    assert_eq!(problem["field"], "connections.d.credentials.webhook_url", "{plan}");
    assert!(problem["message"].as_str().unwrap().contains("not shown"), "{plan}");
}
