//! Master keys, with the real binary: rotation under a running server while deliveries continue,
//! and a scan of the database files and the logs for secrets written through the API.

mod common;

use common::*;
use serde_json::json;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BEARER: &str = "rotation-test-bearer-0123456789";

/// A receiver that accepts only requests carrying the connection's credential, and counts them.
async fn authenticated_receiver() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (ok, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (o, r) = (ok.clone(), refused.clone());
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let (ok, refused) = (o.clone(), r.clone());
        async move {
            if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {BEARER}")) {
                ok.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::OK
            } else {
                refused.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::UNAUTHORIZED
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (url, ok, refused)
}

fn database_text(data: &Data) -> String {
    let path = data.url.strip_prefix("sqlite://").expect("an embedded database");
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
            all.extend(bytes);
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

fn key_file(data: &Data) -> Vec<String> {
    let path = std::path::Path::new(data.url.strip_prefix("sqlite://").unwrap()).parent().unwrap().join("master.key");
    std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

/// The key id sealed values name: `v1:<id>:...`.
fn key_ids_in(text: &str) -> std::collections::BTreeSet<String> {
    text.match_indices("v1:")
        .filter_map(|(i, _)| text.get(i + 3..i + 15))
        .filter(|id| id.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_master_key_under_a_running_server_loses_no_delivery() {
    let data = data().await;
    if !data.url.starts_with("sqlite://") {
        return; // the key file is the embedded default's; the environment's keys are covered below
    }
    // The embedded default: no SWITCHYARD_MASTER_KEY, a key file in the data folder.
    let node = start_custom(&data, &[], &[("SWITCHYARD_MASTER_KEY", None)], Stdio::inherit());
    let client = reqwest::Client::new();
    let (url, ok, refused) = authenticated_receiver().await;
    let ws = admin(&client, reqwest::Method::POST, &format!("{}/api/v1/workspaces", node.base), Some(json!({"name": "keys"}))).await;
    let ws_id = ws["id"].as_str().unwrap().to_owned();
    let pk = ws["publishable_key"]["key"].as_str().unwrap().to_owned();
    wire(
        &client,
        &node.base,
        &ws_id,
        json!({"type": "webhook", "name": "sink", "config": {"url": url}, "credentials": {"bearer_token": BEARER},
                    "retry_policy": {"max_attempts": 20, "initial_delay_ms": 50, "max_delay_ms": 200}}),
        json!({"event": "*"}),
    )
    .await;
    // A workspace secret is sealed too, and must be re-sealed with the rest.
    admin(&client, reqwest::Method::PUT, &format!("{}/api/v1/workspaces/{ws_id}/secrets/token", node.base), Some(json!({"value": BEARER})))
        .await;
    let old_keys = key_file(&data);
    assert_eq!(old_keys.len(), 1);
    let old_ids = key_ids_in(&database_text(&data));
    assert_eq!(old_ids.len(), 1, "{old_ids:?}");

    // Events keep coming while the key is rotated.
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let emitter = {
        let (client, base, pk, sent, stop) = (client.clone(), node.base.clone(), pk.clone(), sent.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let r = client
                    .post(format!("{base}/api/v1/events"))
                    .bearer_auth(&pk)
                    .json(&json!({"event": "tick", "payload": {}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                sent.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = command(&data, &[("SWITCHYARD_MASTER_KEY", None)])
        .args(["rotate-master-key", "--settle-seconds", "2"])
        .output()
        .expect("the command runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "rotation failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("re-sealed"), "{stdout}");
    // A connection made after the rotation works too.
    let (url2, ok2, _) = authenticated_receiver().await;
    wire(
        &client,
        &node.base,
        &ws_id,
        json!({"type": "webhook", "name": "late", "config": {"url": url2}, "credentials": {"bearer_token": BEARER}}),
        json!({"event": "late"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    emitter.await.unwrap();
    client
        .post(format!("{}/api/v1/events", node.base))
        .bearer_auth(&pk)
        .json(&json!({"event": "late", "payload": {}}))
        .send()
        .await
        .unwrap();

    let total = sent.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ok.load(Ordering::SeqCst) < total || ok2.load(Ordering::SeqCst) < 1 {
        assert!(Instant::now() < deadline, "delivered {} of {total} (late: {})", ok.load(Ordering::SeqCst), ok2.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(refused.load(Ordering::SeqCst), 0, "a request went out without its credential");
    assert!(total > 20, "the emitter ran through the rotation ({total} events)");

    // One new key in the file; nothing in the database sealed with the old one.
    let new_keys = key_file(&data);
    assert_eq!(new_keys.len(), 1);
    assert_ne!(new_keys, old_keys);
    let ids = key_ids_in(&database_text(&data));
    assert!(ids.is_disjoint(&old_ids), "values still sealed under the old key: {ids:?}");

    // A restart opens everything with the new key alone.
    drop(node);
    let node = start_custom(&data, &[], &[("SWITCHYARD_MASTER_KEY", None)], Stdio::inherit());
    client
        .post(format!("{}/api/v1/events", node.base))
        .bearer_auth(&pk)
        .json(&json!({"event": "tick", "payload": {}}))
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ok.load(Ordering::SeqCst) < total + 1 {
        assert!(Instant::now() < deadline, "no delivery after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_keys_rotate_with_the_old_key_given_as_previous() {
    let data = data().await;
    let old = data.master_key.clone();
    let new = "bmV3LWtleS1uZXcta2V5LW5ldy1rZXktbmV3LWtleSE=".to_owned(); // 32 bytes
    let node = start(&data);
    let client = reqwest::Client::new();
    let (url, ok, refused) = authenticated_receiver().await;
    let pk = setup_with_credentials(&client, &node.base, &url).await;
    drop(node);

    // The wrong key alone is refused at start, with a clear message.
    let out = command(&data, &[("SWITCHYARD_MASTER_KEY", Some(&new))]).arg("serve").output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not one this database's secrets were sealed with"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Nodes run with the new key and the old one as previous; the command re-seals everything.
    let env = [("SWITCHYARD_MASTER_KEY", Some(new.as_str())), ("SWITCHYARD_PREVIOUS_MASTER_KEYS", Some(old.as_str()))];
    let node = start_custom(&data, &[], &env, Stdio::inherit());
    let out = command(&data, &env).arg("rotate-master-key").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("remove SWITCHYARD_PREVIOUS_MASTER_KEYS"));
    drop(node);

    // Now the new key alone opens everything, and the old alone no longer does.
    let node = start_custom(&data, &[], &[("SWITCHYARD_MASTER_KEY", Some(new.as_str()))], Stdio::inherit());
    client
        .post(format!("{}/api/v1/events", node.base))
        .bearer_auth(&pk)
        .json(&json!({"event": "tick", "payload": {}}))
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ok.load(Ordering::SeqCst) < 1 {
        assert!(Instant::now() < deadline, "no delivery with the new key");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(refused.load(Ordering::SeqCst), 0);
    drop(node);
    let out = command(&data, &[]).arg("serve").output().unwrap();
    assert!(!out.status.success(), "the retired key still opened the database");
}

/// Creates a connection and a rule sending to it (`rule` is merged into `{"name": "r", "event": "*"}`);
/// returns the connection.
async fn wire(
    client: &reqwest::Client,
    base: &str,
    ws_id: &str,
    connection: serde_json::Value,
    rule: serde_json::Value,
) -> serde_json::Value {
    let conn = admin(client, reqwest::Method::POST, &format!("{base}/api/v1/workspaces/{ws_id}/connections"), Some(connection)).await;
    let mut body = json!({"name": "r", "event": "*", "connection_id": conn["id"]});
    for (k, v) in rule.as_object().cloned().unwrap_or_default() {
        body[k] = v;
    }
    admin(client, reqwest::Method::POST, &format!("{base}/api/v1/workspaces/{ws_id}/rules"), Some(body)).await;
    conn
}

async fn setup_with_credentials(client: &reqwest::Client, base: &str, url: &str) -> String {
    let ws = admin(client, reqwest::Method::POST, &format!("{base}/api/v1/workspaces"), Some(json!({"name": "env-keys"}))).await;
    let ws_id = ws["id"].as_str().unwrap();
    wire(
        client,
        base,
        ws_id,
        json!({"type": "webhook", "name": "sink", "config": {"url": url}, "credentials": {"bearer_token": BEARER}}),
        json!({"event": "*"}),
    )
    .await;
    ws["publishable_key"]["key"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_secrets_reach_neither_the_database_files_nor_the_logs() {
    let data = data().await;
    let log_path = data.dir.path().join("node.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // Everything the server logs, at its most talkative.
    let node = start_custom(&data, &[], &[("SWITCHYARD_LOG", Some("debug,sqlx=debug,tower_http=trace"))], Stdio::from(log));
    let client = reqwest::Client::new();
    // A destination that refuses everything, so failures (and their logs) happen too.
    let refusing = {
        let app = axum::Router::new().fallback(|| async { (axum::http::StatusCode::UNAUTHORIZED, "no") });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        base
    };
    let secrets = [
        "known-secret-bearer-5f1c2b7a9d",
        "known-secret-password-8e3a6c",
        "known-secret-header-4b9d0e",
        "xoxb-known-secret-slack-77aa",
        "known-secret-mailchimp-key-us6",
        "known-discord-webhook-token-abcdefghijklmnop",
    ];
    let ws = admin(&client, reqwest::Method::POST, &format!("{}/api/v1/workspaces", node.base), Some(json!({"name": "scan"}))).await;
    let ws_id = ws["id"].as_str().unwrap();
    let pk = ws["publishable_key"]["key"].as_str().unwrap();
    let connections = [
        json!({"type": "webhook", "name": "bearer", "config": {"url": format!("{refusing}/a")}, "credentials": {"bearer_token": secrets[0]}}),
        json!({"type": "webhook", "name": "basic", "config": {"url": format!("{refusing}/b")},
               "credentials": {"username": "u", "password": secrets[1], "headers": {"X-Api-Key": secrets[2]}}}),
        json!({"type": "slack", "name": "slack", "config": {"base_url": refusing}, "credentials": {"access_token": secrets[3]}}),
        json!({"type": "mailchimp", "name": "mc", "config": {"base_url": refusing}, "credentials": {"api_key": secrets[4]}}),
        json!({"type": "discord", "name": "dc", "config": {"base_url": refusing, "webhook_url": format!("https://discord.com/api/webhooks/1/{}", secrets[5])}}),
    ];
    let mut signing = Vec::new();
    for (i, body) in connections.into_iter().enumerate() {
        let (action, config) = match i {
            2 => ("send_message", json!({"channel": "C1", "template": "hi"})),
            3 => ("add_to_list", json!({"id": "l1"})),
            4 => ("send_message", json!({"title": "t", "template": "b"})),
            _ => ("send_webhook", json!({})),
        };
        let conn = wire(&client, &node.base, ws_id, body, json!({"action": action, "action_config": config})).await;
        if let Some(s) = conn["signing_secret"].as_str() {
            signing.push(s.to_owned());
        }
    }
    let event = client
        .post(format!("{}/api/v1/events", node.base))
        .bearer_auth(pk)
        .json(&json!({"event": "x", "payload": {"email": "a@b.co"}}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let event_url = format!("{}/api/v1/events/{}", node.base, event["id"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = admin(&client, reqwest::Method::GET, &event_url, None).await;
        if e["status"] == "failed" && e["deliveries"].as_array().unwrap().iter().all(|d| d["status"] == "dead") {
            break;
        }
        assert!(Instant::now() < deadline, "the deliveries did not all fail: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Read everything back through the API too.
    let listed = admin(&client, reqwest::Method::GET, &format!("{}/api/v1/workspaces/{ws_id}/connections", node.base), None).await;
    let deliveries = admin(&client, reqwest::Method::GET, &format!("{}/api/v1/workspaces/{ws_id}/deliveries", node.base), None).await;
    let mut responses = listed.to_string() + &deliveries.to_string();
    for d in deliveries["data"].as_array().unwrap() {
        responses += &admin(&client, reqwest::Method::GET, &format!("{}/api/v1/deliveries/{}", node.base, d["id"].as_str().unwrap()), None)
            .await
            .to_string();
    }
    assert!(responses.contains("[redacted]"), "the attempt records show where credentials went");
    // An OAuth provider's redirect carries a code and a state in its query: neither is logged.
    let oauth = ["known-oauth-code-3e9d1f0a", "known-oauth-state-7c2b5e8f"];
    let callback = format!("{}/oauth/callback?code={}&state={}", node.base, oauth[0], oauth[1]);
    client.get(callback).send().await.unwrap();
    drop(node);

    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.len() > 1_000, "the node logged ({} bytes)", logs.len());
    // The database files on the embedded store (the e2e suite scans PostgreSQL's tables).
    let stored = if data.url.starts_with("sqlite://") { database_text(&data) } else { String::new() };
    let hidden = |s: &str| !logs.contains(s) && !stored.contains(s) && !responses.contains(s);
    // Keys (publishable, admin) are stored only as hashes and pass through no log either.
    for secret in secrets.iter().map(|s| s.to_string()).chain(signing.iter().cloned()).chain([pk.to_owned(), ADMIN.to_owned()]) {
        assert!(hidden(&secret), "{secret} leaked into the logs, the database files or an API response");
    }
    for secret in oauth {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
}
