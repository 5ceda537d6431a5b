//! The management commands, run as a user runs them: the real binary against a real server, its
//! `--json` output parsed, its exit codes checked, and `events tail` timed against a new event.

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Runs the CLI with only the given settings (nothing inherited from the machine's environment
/// or profile file).
#[derive(Clone)]
struct Cli {
    env: Vec<(String, String)>,
    config: std::sync::Arc<tempfile::TempDir>,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "exit {}; stderr: {}", self.code, self.stderr);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

impl Cli {
    fn new(base: &str, key: &str) -> Self {
        Self {
            env: vec![("SWITCHYARD_URL".into(), base.into()), ("SWITCHYARD_API_KEY".into(), key.into())],
            config: std::sync::Arc::new(tempfile::tempdir().unwrap()),
        }
    }

    /// No settings at all.
    fn bare() -> Self {
        Self { env: Vec::new(), config: std::sync::Arc::new(tempfile::tempdir().unwrap()) }
    }

    fn with(&self, name: &str, value: &str) -> Self {
        let mut more = self.clone();
        more.env.push((name.into(), value.into()));
        more
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
        for var in ["SWITCHYARD_URL", "SWITCHYARD_API_KEY", "SWITCHYARD_PUBLISHABLE_KEY", "SWITCHYARD_WORKSPACE", "SWITCHYARD_PROFILE"] {
            command.env_remove(var);
        }
        command.env("SWITCHYARD_CONFIG", self.config.path().join("profiles.toml"));
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command.args(args).stdin(Stdio::null()).kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().await.unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    /// `--json` output of a command that exits with `code`.
    async fn json_exit(&self, args: &[&str], code: i32) -> Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let run = self.run(&with_json).await;
        assert_eq!(run.code, code, "stdout: {}; stderr: {}", run.stdout, run.stderr);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout))
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        self.run(&with_json).await.json()
    }
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_workspace_is_set_up_used_and_torn_down_from_the_command_line() {
    let data = data().await;
    let node = start(&data);
    let (hook, tally) = receiver(Duration::ZERO).await;
    let cli = Cli::new(&node.base, ADMIN);

    let ws = cli.json(&["workspaces", "create", "--name", "acme-prod", "--description", "Acme, production"]).await;
    let ws_id = ws["id"].as_str().unwrap().to_owned();
    let pk = ws["publishable_key"]["key"].as_str().unwrap().to_owned();
    assert!(pk.starts_with("pk_"));
    let listed = cli.json(&["workspaces", "list"]).await;
    assert!(listed["data"].as_array().unwrap().iter().any(|w| w["id"] == ws_id.as_str()));
    let cli = cli.with("SWITCHYARD_WORKSPACE", &ws_id);

    // The human table names what the JSON holds.
    let table = cli.run(&["workspaces", "list"]).await;
    assert_eq!(table.code, 0);
    assert!(table.stdout.starts_with("ID"), "{}", table.stdout);
    assert!(table.stdout.contains("acme-prod") && table.stdout.contains(&ws_id));

    let keys = cli.json(&["keys", "list"]).await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 1);
    let second = cli.json(&["keys", "create"]).await;
    assert!(second["key"].as_str().unwrap().starts_with("pk_"));
    let rotated = cli.json(&["keys", "rotate", second["id"].as_str().unwrap()]).await;
    assert_ne!(rotated["key"], second["key"]);
    cli.json(&["keys", "delete", rotated["id"].as_str().unwrap(), "--yes"]).await;
    assert_eq!(cli.json(&["keys", "list"]).await["data"].as_array().unwrap().len(), 1);

    let catalog = cli.json(&["connections", "integrations"]).await;
    assert_eq!(catalog["data"].as_array().unwrap().len(), 14, "every destination type");
    let config = json!({"url": hook}).to_string();
    let conn =
        cli.json(&["connections", "create", "--type", "webhook", "--name", "crm hook", "--config", &config, "--max-in-flight", "4"]).await;
    let conn_id = conn["id"].as_str().unwrap().to_owned();
    assert!(conn["signing_secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(conn["max_in_flight"], 4);
    let renamed = cli.json(&["connections", "update", &conn_id, "--name", "CRM hook"]).await;
    assert_eq!(renamed["name"], "CRM hook");
    assert_eq!(renamed["config"]["url"], hook.as_str(), "a partial update keeps the rest");
    assert!(renamed.get("signing_secret").is_none(), "the secret is shown only at creation");

    let rule = cli.json(&["rules", "create", "--name", "signups", "--event", "user.*", "--connection", &conn_id]).await;
    let rule_id = rule["id"].as_str().unwrap().to_owned();
    assert_eq!(rule["action"], "send_webhook");

    // Emitted with the publishable key, delivered, and visible in history.
    let accepted = cli
        .with("SWITCHYARD_PUBLISHABLE_KEY", &pk)
        .json(&["events", "emit", "user.created", "--payload", r#"{"email":"ada@example.com"}"#])
        .await;
    let event_id = accepted["id"].as_str().unwrap().to_owned();
    wait_for("the delivery", || tally.seen.lock().unwrap().contains_key(&event_id)).await;
    // With no publishable key, the API key emits into the workspace.
    let by_operator =
        cli.json(&["events", "emit", "user.updated", "--payload", r#"{"plan":"pro"}"#, "--idempotency-key", "cli-test-1"]).await;
    let again = cli.json(&["events", "emit", "user.updated", "--payload", r#"{"plan":"pro"}"#, "--idempotency-key", "cli-test-1"]).await;
    assert_eq!(by_operator["id"], again["id"], "the same idempotency key names the same event");
    let events = cli.json(&["events", "list", "--event", "user.created"]).await;
    assert_eq!(events["data"].as_array().unwrap().len(), 1);
    let mut shown = cli.json(&["events", "show", &event_id]).await;
    for _ in 0..100 {
        if shown["deliveries"][0]["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        shown = cli.json(&["events", "show", &event_id]).await;
    }
    assert_eq!(shown["payload"]["email"], "ada@example.com");
    assert_eq!(shown["deliveries"][0]["status"], "succeeded");
    let delivery_id = shown["deliveries"][0]["id"].as_str().unwrap().to_owned();

    let deliveries = cli.json(&["deliveries", "list", "--connection", &conn_id, "--status", "succeeded"]).await;
    assert!(deliveries["data"].as_array().unwrap().iter().any(|d| d["id"] == delivery_id.as_str()));
    let delivery = cli.json(&["deliveries", "show", &delivery_id]).await;
    assert_eq!(delivery["attempts"][0]["status_code"], 200);
    let human = cli.run(&["deliveries", "show", &delivery_id]).await;
    assert!(human.stdout.contains("succeeded") && human.stdout.contains("200"), "{}", human.stdout);
    cli.json(&["deliveries", "replay", &delivery_id]).await;
    wait_for("the replay", || tally.seen.lock().unwrap().get(&event_id) == Some(&2)).await;

    let test = cli.json(&["rules", "test", &rule_id]).await;
    let test_event = test["event_id"].as_str().unwrap().to_owned();
    wait_for("the test event", || tally.seen.lock().unwrap().contains_key(&test_event)).await;
    let off = cli.json(&["rules", "update", &rule_id, "--active", "false"]).await;
    assert_eq!(off["active"], false);
    // Conditions set, then cleared with an explicit null.
    let narrowed =
        cli.json(&["rules", "update", &rule_id, "--conditions", r#"{"all":[{"path":"payload.plan","op":"eq","value":"pro"}]}"#]).await;
    assert_eq!(narrowed["conditions"]["all"][0]["value"], "pro");
    let cleared = cli.json(&["rules", "update", &rule_id, "--conditions", "null"]).await;
    assert!(cleared["conditions"].is_null(), "{cleared}");
    let limited = cli.json(&["connections", "update", &conn_id, "--rate-limit-per-minute", "60"]).await;
    assert_eq!(limited["rate_limit_per_minute"], 60);
    let unlimited = cli.json(&["connections", "update", &conn_id, "--no-rate-limit"]).await;
    assert!(unlimited["rate_limit_per_minute"].is_null(), "{unlimited}");

    // Names seen in traffic are counted once a second.
    for attempt in 0.. {
        let types = cli.json(&["event-types", "list"]).await;
        if types["data"].as_array().unwrap().iter().any(|t| t["name"] == "user.created") {
            break;
        }
        assert!(attempt < 100, "user.created was never listed: {types}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let declared = cli
        .json(&["event-types", "declare", "invoice.paid", "--description", "An invoice was paid", "--example", r#"{"amount":4200}"#])
        .await;
    assert_eq!(declared["declared"], true);

    let session = cli.json(&["sessions", "create", "--role", "viewer", "--external-user-id", "u_42"]).await;
    assert!(session["launch_url"].as_str().unwrap().starts_with(&node.base));
    let sessions = cli.json(&["sessions", "list"]).await;
    assert_eq!(sessions["data"][0]["external_user_id"], "u_42");
    cli.json(&["sessions", "revoke", session["session_id"].as_str().unwrap()]).await;
    assert_eq!(cli.json(&["sessions", "list"]).await["data"].as_array().unwrap().len(), 0);

    cli.json(&["rules", "delete", &rule_id, "--yes"]).await;
    cli.json(&["connections", "delete", &conn_id, "--yes"]).await;
    assert_eq!(cli.json(&["connections", "list"]).await["data"].as_array().unwrap().len(), 0);
    cli.json(&["workspaces", "delete", &ws_id, "--yes"]).await;
    assert_eq!(cli.run(&["workspaces", "show", &ws_id]).await.code, 4);
}

#[tokio::test]
async fn exit_codes_tell_scripts_what_went_wrong() {
    let data = data().await;
    let node = start(&data);
    let cli = Cli::new(&node.base, ADMIN);
    let ws = cli.json(&["workspaces", "create", "--name", "codes"]).await;
    let ws_id = ws["id"].as_str().unwrap();

    let not_found = cli.run(&["rules", "show", "rule_01M8T4D945G9KWHH94CR1F90ZN"]).await;
    assert_eq!(not_found.code, 4, "{}", not_found.stderr);
    assert!(not_found.stderr.contains("not_found"), "{}", not_found.stderr);

    let stranger = "sk_not_a_key_of_this_server_000000";
    let refused = Cli::new(&node.base, stranger).run(&["workspaces", "list"]).await;
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(!refused.stderr.contains(stranger) && !refused.stdout.contains(stranger), "the key is never printed");

    // A read-only key may look but not change.
    let read_only = admin(
        &reqwest::Client::new(),
        reqwest::Method::POST,
        &format!("{}/api/v1/api-keys", node.base),
        Some(json!({"name": "auditor", "scope": "read_only"})),
    )
    .await;
    let viewer = Cli::new(&node.base, read_only["key"].as_str().unwrap()).with("SWITCHYARD_WORKSPACE", ws_id);
    assert_eq!(viewer.run(&["connections", "list"]).await.code, 0);
    let forbidden =
        viewer.run(&["connections", "create", "--type", "webhook", "--name", "x", "--config", r#"{"url":"http://127.0.0.1:9/"}"#]).await;
    assert_eq!(forbidden.code, 3, "{}", forbidden.stderr);

    let cli = cli.with("SWITCHYARD_WORKSPACE", ws_id);
    let secret = r#"{"bearer_token":"tok_secret_never_printed_0123"}"#;
    let invalid = cli
        .run(&["connections", "create", "--type", "webhook", "--name", "x", "--config", r#"{"url":"not a url"}"#, "--credentials", secret])
        .await;
    assert_eq!(invalid.code, 5, "{}", invalid.stderr);
    assert!(invalid.stderr.contains("config.url"), "the field is named: {}", invalid.stderr);
    assert!(!invalid.stderr.contains("tok_secret") && !invalid.stderr.contains(ADMIN), "{}", invalid.stderr);

    let usage = cli.run(&["connections", "create", "--type", "webhook", "--name", "x", "--config", "{not json"]).await;
    assert_eq!(usage.code, 2, "{}", usage.stderr);
    let unconfirmed = cli.run(&["workspaces", "delete", ws_id]).await;
    assert_eq!(unconfirmed.code, 2, "no terminal, no --yes: nothing is deleted ({})", unconfirmed.stderr);
    assert_eq!(cli.run(&["workspaces", "show", ws_id]).await.code, 0);
    let no_server = Cli::bare().run(&["workspaces", "list"]).await;
    assert_eq!(no_server.code, 2);
    assert!(no_server.stderr.contains("--url"), "{}", no_server.stderr);

    // Nothing listens there: worth retrying later.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = Cli::new(&dead, ADMIN).run(&["workspaces", "list"]).await;
    assert_eq!(unreachable.code, 6, "{}", unreachable.stderr);
}

#[tokio::test]
async fn events_tail_shows_a_new_event_within_a_second_and_then_its_delivery() {
    let data = data().await;
    let node = start(&data);
    let (hook, _tally) = receiver(Duration::ZERO).await;
    let pk = setup(&reqwest::Client::new(), &node.base, &[&hook]).await;
    let cli = Cli::new(&node.base, ADMIN);
    let ws_id = cli.json(&["workspaces", "list"]).await["data"][0]["id"].as_str().unwrap().to_owned();
    // An event from before the tail starts is not news.
    let http = reqwest::Client::new();
    let emit = |name: &'static str| {
        let (http, base, pk) = (http.clone(), node.base.clone(), pk.clone());
        async move {
            let r = http.post(format!("{base}/api/v1/events")).bearer_auth(&pk).json(&json!({"event": name})).send().await.unwrap();
            assert_eq!(r.status(), 202);
            r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
        }
    };
    let old = emit("user.old").await;

    let mut tail =
        cli.command(&["events", "tail", "--json", "--workspace", &ws_id]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(tail.stderr.take().unwrap()).lines();
    let banner = tokio::time::timeout(Duration::from_secs(10), stderr.next_line()).await.unwrap().unwrap().unwrap();
    assert!(banner.contains("following"), "{banner}");
    let mut stdout = BufReader::new(tail.stdout.take().unwrap()).lines();

    let emitted_at = Instant::now();
    let new = emit("user.created").await;
    let first = tokio::time::timeout(Duration::from_secs(1), stdout.next_line())
        .await
        .expect("the event is shown within a second")
        .unwrap()
        .unwrap();
    let seen_after = emitted_at.elapsed();
    let line: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(line["type"], "event");
    assert_eq!(line["event"]["id"], new.as_str(), "the first line is the new event, not the one from before");
    eprintln!("tail showed the event {} ms after it was emitted (old one: {old})", seen_after.as_millis());

    // Then its delivery, as it changes, until it succeeded.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let next = tokio::time::timeout_at(deadline.into(), stdout.next_line()).await.expect("the delivery is shown").unwrap().unwrap();
        let line: Value = serde_json::from_str(&next).unwrap();
        assert_eq!(line["type"], "delivery", "{next}");
        assert_eq!(line["delivery"]["event_id"], new.as_str());
        if line["delivery"]["status"] == "succeeded" {
            break;
        }
    }

    // A burst bigger than a page (and several polls' worth) is shown whole, each event once.
    let burst: Vec<Value> = (0..450).map(|i| json!({"event": "import.row", "payload": {"i": i}})).collect();
    let r = http.post(format!("{}/api/v1/events/bulk", node.base)).bearer_auth(&pk).json(&burst).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let ids: std::collections::HashSet<String> =
        r.json::<Value>().await.unwrap()["results"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().to_owned()).collect();
    let mut shown = std::collections::HashMap::<String, usize>::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while shown.len() < ids.len() || shown.values().any(|n| *n > 1) {
        let next = tokio::time::timeout_at(deadline.into(), stdout.next_line()).await.expect("the whole burst is shown").unwrap().unwrap();
        let line: Value = serde_json::from_str(&next).unwrap();
        if line["type"] == "event" {
            let id = line["event"]["id"].as_str().unwrap().to_owned();
            assert!(ids.contains(&id), "only the burst's events are new");
            *shown.entry(id).or_default() += 1;
            assert!(shown.values().all(|n| *n == 1), "an event was shown twice");
        }
    }
    tail.kill().await.unwrap();
}

#[tokio::test]
async fn profiles_fill_in_what_flags_and_environment_leave_out() {
    let data = data().await;
    let node = start(&data);
    let bare = Cli::bare();
    let saved = bare.run(&["profile", "save", "--url", &node.base, "--api-key", ADMIN]).await;
    assert_eq!(saved.code, 0, "{}", saved.stderr);
    let path = bare.config.path().join("profiles.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "the file holds keys");
    }
    let ws = bare.json(&["workspaces", "create", "--name", "from-profile"]).await;
    let ws_id = ws["id"].as_str().unwrap();
    assert_eq!(bare.run(&["profile", "save", "--workspace", ws_id]).await.code, 0);
    assert_eq!(bare.json(&["keys", "list"]).await["data"].as_array().unwrap().len(), 1);

    let shown = bare.json(&["profile", "show"]).await;
    assert_eq!(shown["url"], node.base.as_str());
    assert_eq!(shown["workspace"], ws_id);
    assert!(!shown.to_string().contains(ADMIN), "keys are masked: {shown}");

    // A flag wins over the profile; a named profile must exist.
    let elsewhere = bare.run(&["workspaces", "list", "--url", "http://127.0.0.1:9"]).await;
    assert_eq!(elsewhere.code, 6, "{}", elsewhere.stderr);
    let missing = bare.run(&["workspaces", "list", "--profile", "staging"]).await;
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("staging"));
    assert_eq!(bare.run(&["profile", "save", "--name", "staging", "--url", &node.base, "--api-key", ADMIN]).await.code, 0);
    assert_eq!(bare.run(&["workspaces", "list", "--profile", "staging"]).await.code, 0);
    assert_eq!(bare.json(&["profile", "list"]).await, json!(["default", "staging"]));
}

#[tokio::test]
async fn shell_completions_name_the_commands() {
    let cli = Cli::bare();
    for shell in ["bash", "zsh", "fish"] {
        let out = cli.run(&["completions", shell]).await;
        assert_eq!(out.code, 0);
        for word in ["workspaces", "connections", "deliveries", "tail"] {
            assert!(out.stdout.contains(word), "{shell} completion lacks {word}");
        }
    }
}

#[tokio::test]
async fn plans_and_usage_from_the_command_line() {
    let data = data().await;
    let node = start(&data);
    let cli = Cli::new(&node.base, ADMIN);
    let plan =
        cli.json(&["plans", "set", "tiny", "--limits", r#"{"events_per_month": 2, "connections": 1}"#, "--description", "For tests"]).await;
    assert_eq!(plan["source"], "api");
    let ws = cli.json(&["workspaces", "create", "--name", "on-tiny", "--plan", "tiny"]).await;
    assert_eq!(ws["plan"], "tiny");
    let pk = ws["publishable_key"]["key"].as_str().unwrap().to_owned();
    let cli = cli.with("SWITCHYARD_WORKSPACE", ws["id"].as_str().unwrap());
    let product = cli.with("SWITCHYARD_PUBLISHABLE_KEY", &pk);
    for i in 0..2 {
        product.json(&["events", "emit", "user.created", "--payload", &format!(r#"{{"i":{i}}}"#)]).await;
    }
    let over = product.run(&["events", "emit", "user.created"]).await;
    assert_eq!(over.code, 6, "past the cap: worth trying again later ({})", over.stderr);
    assert!(over.stderr.contains("quota_exceeded") && over.stderr.contains("events_per_month"), "{}", over.stderr);

    let usage = cli.json(&["usage"]).await;
    assert_eq!((usage["events"]["used"].as_u64(), usage["events"]["limit"].as_u64()), (Some(2), Some(2)));
    assert_eq!(usage["plan"], "tiny");
    let human = cli.run(&["usage"]).await;
    assert!(human.stdout.contains("2 of 2"), "{}", human.stdout);
    let installation = cli.json(&["usage", "--installation"]).await;
    assert_eq!(installation["events"], 2);

    // Lifting the workspace's own limit lets events in again.
    cli.json(&["workspaces", "update", ws["id"].as_str().unwrap(), "--limits", r#"{"events_per_month": null}"#]).await;
    product.json(&["events", "emit", "user.created"]).await;
    let listed = cli.json(&["plans", "list"]).await;
    assert!(listed["data"].as_array().unwrap().iter().any(|p| p["name"] == "tiny"));
    assert_eq!(cli.run(&["plans", "delete", "tiny", "--yes"]).await.code, 5, "a workspace is on it: 409");
}

#[tokio::test]
async fn connections_are_paused_and_resumed_and_deliveries_cancelled_from_the_command_line() {
    let data = data().await;
    let node = start(&data);
    let cli = Cli::new(&node.base, ADMIN);
    let ws = cli.json(&["workspaces", "create", "--name", "ops"]).await;
    let cli = cli.with("SWITCHYARD_WORKSPACE", ws["id"].as_str().unwrap());
    // A destination nobody listens on: nothing could be delivered anyway.
    let conn = cli
        .json(&["connections", "create", "--type", "webhook", "--name", "down", "--config", r#"{"url":"http://127.0.0.1:9/hook"}"#])
        .await;
    let id = conn["id"].as_str().unwrap();
    cli.json(&["rules", "create", "--name", "all", "--event", "*", "--connection", id]).await;
    let paused = cli.json(&["connections", "pause", id]).await;
    assert_eq!((paused["status"].as_str(), paused["inactive_reason"].as_str()), (Some("paused"), Some("paused")), "{paused}");
    let mut events = Vec::new();
    for i in 0..3 {
        events.push(
            cli.json(&["events", "emit", "order.created", "--payload", &format!(r#"{{"i":{i}}}"#)]).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let one = cli.json(&["events", "show", &events[0]]).await["deliveries"][0]["id"].as_str().unwrap().to_owned();
    let cancelled = cli.json(&["deliveries", "cancel", &one]).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cli.json(&["deliveries", "cancel", "--event", &events[1]]).await, json!({"cancelled": 1, "in_flight": 0}));
    let human = cli.run(&["deliveries", "cancel", "--all", "--status", "pending"]).await;
    assert!(human.stdout.contains("cancelled 1 deliveries"), "{}", human.stdout);
    let resumed = cli.json(&["connections", "resume", id]).await;
    assert_eq!(resumed["status"], "active");
    assert_eq!(cli.json(&["deliveries", "list", "--status", "cancelled"]).await["data"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn blueprints_are_validated_without_a_server() {
    let cli = Cli::bare();
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs");
    let example = format!("{docs}/examples/alerts.blueprint.yaml");
    let out = cli.run(&["blueprint", "validate", &example]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("valid: blueprint \"alerts-and-signups\": 2 connections, 2 rules, 1 template, 1 mapping"),
        "{}",
        out.stdout
    );

    // Two broken files and a good one: every problem of each, as file:line:column: field: message.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "version: 1\nname: demo\nconnections:\n  s: {type: slak, name: S}\nrules:\n  r: {name: R, event: a, connection: t}\n",
    )
    .unwrap();
    let garbled = dir.path().join("garbled.json");
    std::fs::write(&garbled, "{\"version\": 1,\n \"name\": [\n").unwrap();
    let (broken, garbled) = (broken.to_str().unwrap(), garbled.to_str().unwrap());
    let out = cli.run(&["blueprint", "validate", broken, &example, garbled]).await;
    assert_eq!(out.code, 5, "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(lines[0].starts_with(&format!("{broken}:4:7: connections.s.type: \"slak\" is not a connection type")), "{}", out.stderr);
    assert!(lines[1].starts_with(&format!("{broken}:6:26: rules.r.connection: no connection \"t\"")), "{}", out.stderr);
    assert!(lines[2].starts_with(&format!("{garbled}:")) && lines[2].contains("not valid YAML"), "{}", out.stderr);
    assert_eq!(lines[3], "error: 2 files failed validation", "{}", out.stderr);

    let out = cli.run(&["blueprint", "validate", "/nonexistent/blueprint.yaml"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);

    let out = cli.run(&["blueprint", "schema"]).await;
    assert_eq!(out.code, 0);
    let published: Value = serde_json::from_str(&std::fs::read_to_string(format!("{docs}/blueprint.schema.json")).unwrap()).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&out.stdout).unwrap(), published);
}

#[tokio::test]
async fn workspaces_are_labelled_and_selected_by_label_from_the_command_line() {
    let data = data().await;
    let node = start(&data);
    let cli = Cli::new(&node.base, ADMIN);
    let dev = cli.json(&["workspaces", "create", "--name", "dev", "--label", "env=dev", "--label", "product=acme"]).await;
    assert_eq!(dev["labels"], json!({"env": "dev", "product": "acme"}));
    cli.json(&["workspaces", "create", "--name", "prod", "--label", "env=prod", "--label", "product=acme"]).await;
    cli.json(&["workspaces", "create", "--name", "unlabelled"]).await;

    let names = |list: &Value| -> Vec<String> {
        let mut n: Vec<String> = list["data"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap().to_owned()).collect();
        n.sort();
        n
    };
    assert_eq!(names(&cli.json(&["workspaces", "list", "--label", "product=acme"]).await), ["dev", "prod"]);
    assert_eq!(names(&cli.json(&["workspaces", "list", "--label", "product=acme", "--label", "env=prod"]).await), ["prod"]);
    let table = cli.run(&["workspaces", "list", "--label", "env=dev"]).await;
    assert!(table.stdout.contains("LABELS") && table.stdout.contains("env=dev,product=acme"), "{}", table.stdout);

    let id = dev["id"].as_str().unwrap();
    let updated = cli.json(&["workspaces", "update", id, "--label", "env=staging"]).await;
    assert_eq!(updated["labels"], json!({"env": "staging"}));
    let cleared = cli.json(&["workspaces", "update", id, "--no-labels"]).await;
    assert_eq!(cleared["labels"], json!({}));
    let bad = cli.run(&["workspaces", "create", "--name", "x", "--label", "env"]).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let refused = cli.run(&["workspaces", "create", "--name", "x", "--label", "env=a b"]).await;
    assert_eq!(refused.code, 5, "{}", refused.stderr);
    assert!(refused.stderr.contains("labels.env"), "{}", refused.stderr);
}

#[tokio::test]
async fn secrets_are_set_from_standard_input_listed_and_deleted_from_the_command_line() {
    let data = data().await;
    let node = start(&data);
    let cli = Cli::new(&node.base, ADMIN);
    let ws = cli.json(&["workspaces", "create", "--name", "acme"]).await;
    let cli = cli.with("SWITCHYARD_WORKSPACE", ws["id"].as_str().unwrap());

    // From standard input, so the value stays out of shell history and `ps`.
    let mut child = cli.command(&["secrets", "set", "slack_token", "--json"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"xoxb-from-stdin\n").await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    let set: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(set["name"], "slack_token");
    cli.json(&["secrets", "set", "hubspot_token", "--value", "pat-1"]).await;

    let list = cli.json(&["secrets", "list"]).await;
    let names: Vec<&str> = list["data"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hubspot_token", "slack_token"]);
    let table = cli.run(&["secrets", "list"]).await;
    assert!(table.stdout.contains("slack_token") && !table.stdout.contains("xoxb"), "{}", table.stdout);

    cli.json(&["secrets", "delete", "slack_token"]).await;
    let gone = cli.run(&["secrets", "delete", "slack_token"]).await;
    assert_eq!(gone.code, 4, "{}", gone.stderr);
    let bad = cli.run(&["secrets", "set", "a.b", "--value", "v"]).await;
    assert_eq!(bad.code, 5, "{}", bad.stderr);
    // No value on standard input (here, /dev/null) is refused by the server, not stored empty.
    let empty = cli.run(&["secrets", "set", "empty"]).await;
    assert_eq!(empty.code, 5, "{}", empty.stderr);
}

#[tokio::test]
async fn blueprints_are_planned_applied_watched_for_drift_and_exported_from_the_command_line() {
    let data = data().await;
    let node = start(&data);
    let cli = Cli::new(&node.base, ADMIN);
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/examples/alerts.blueprint.yaml");
    let ws = cli.json(&["workspaces", "create", "--name", "prod", "--label", "product=acme", "--label", "env=prod"]).await;
    let id = ws["id"].as_str().unwrap().to_owned();
    let inws = cli.with("SWITCHYARD_WORKSPACE", &id);
    inws.json(&["secrets", "set", "slack_token", "--value", "xoxb-1"]).await;

    // A workspace with problems: exit 5, the problem named.
    let plan = cli.run(&["blueprint", "plan", example]).await;
    assert_eq!(plan.code, 5, "{}{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("! secrets.hubspot_token: the workspace has no secret"), "{}", plan.stdout);
    inws.json(&["secrets", "set", "hubspot_token", "--value", "pat-1"]).await;

    // Changes: exit 2 (as terraform plan -detailed-exitcode), a readable diff, nothing on stderr.
    let plan = cli.run(&["blueprint", "plan", example]).await;
    assert_eq!((plan.code, plan.stderr.as_str()), (2, ""), "{}", plan.stdout);
    assert!(plan.stdout.contains(&format!("{id} (prod), never applied")), "{}", plan.stdout);
    assert!(plan.stdout.contains("  + rules.alerts create\n      action: \"send_message\""), "{}", plan.stdout);
    assert!(plan.stdout.contains("      credentials: (set from secrets; not shown)"), "{}", plan.stdout);
    assert!(plan.stdout.contains("Plan: 6 to create, 0 to change, 0 to delete, in 1 workspace."), "{}", plan.stdout);
    assert!(!plan.stdout.contains("xoxb-1"));
    let listed = cli.json_exit(&["blueprint", "plan", example], 2).await;
    assert_eq!(listed["changes"], 6);

    let applied = cli.run(&["blueprint", "apply", example]).await;
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    assert!(applied.stdout.contains("blueprint \"alerts-and-signups\" stored as version 1"), "{}", applied.stdout);
    assert!(applied.stdout.contains("Applied to 1 workspace, 0 unchanged, 0 failed."), "{}", applied.stdout);
    let plan = cli.run(&["blueprint", "plan", example]).await;
    assert_eq!(plan.code, 0, "{}", plan.stdout);
    assert!(plan.stdout.contains("no changes"), "{}", plan.stdout);
    let again = cli.run(&["blueprint", "apply", example]).await;
    assert!(again.stdout.contains("unchanged at version 1") && again.stdout.contains("0 failed"), "{}", again.stdout);

    // A change by hand is drift (exit 2) until accepted as the workspace's own.
    let drift = cli.run(&["blueprint", "drift", "alerts-and-signups"]).await;
    assert_eq!(drift.code, 0, "{}", drift.stdout);
    let rules = inws.json(&["rules", "list"]).await;
    let rule =
        rules["data"].as_array().unwrap().iter().find(|r| r["name"] == "Alerts to #alerts").unwrap()["id"].as_str().unwrap().to_owned();
    inws.json(&["rules", "update", &rule, "--name", "Our alerts"]).await;
    let drift = cli.run(&["blueprint", "drift", "alerts-and-signups"]).await;
    assert_eq!(drift.code, 2, "{}{}", drift.stdout, drift.stderr);
    assert!(
        drift.stdout.contains("  ~ rules.alerts update") && drift.stdout.contains("name: \"Our alerts\" -> \"Alerts to #alerts\""),
        "{}",
        drift.stdout
    );
    let accepted = inws.run(&["blueprint", "accept", "alerts-and-signups", "rules.alerts", "name"]).await;
    assert_eq!(accepted.code, 0, "{}", accepted.stderr);
    let drift = cli.run(&["blueprint", "drift", "alerts-and-signups"]).await;
    assert_eq!(drift.code, 0, "{}", drift.stdout);
    assert!(drift.stdout.contains("= rules.alerts: the workspace's own [\"name\"]"), "{}", drift.stdout);

    // ${env:NAME} is filled in from the CLI's environment; one not set is named.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hook.yaml");
    std::fs::write(
        &file,
        format!("version: 1\nname: hook\ntargets: {{workspaces: [{id}]}}\nconnections:\n  hook:\n    type: webhook\n    name: Hook\n    config: {{url: \"${{env:HOOK_URL}}\"}}\n"),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let unset = cli.run(&["blueprint", "plan", file]).await;
    assert_eq!(unset.code, 5, "not 2, which a pipeline takes for changes: {}", unset.stderr);
    assert!(unset.stderr.contains("HOOK_URL"), "{}", unset.stderr);
    let set = cli.with("HOOK_URL", "https://hooks.example.com/ci").json_exit(&["blueprint", "plan", file], 2).await;
    assert_eq!(set["workspaces"][0]["changes"][0]["fields"][1]["to"]["url"], "https://hooks.example.com/ci", "{set}");

    // The workspace exported is a valid blueprint naming its secrets.
    let out = dir.path().join("prod.yaml");
    let exported = inws.run(&["blueprint", "export", "--name", "prod-copy", "-o", out.to_str().unwrap()]).await;
    assert_eq!(exported.code, 0, "{}", exported.stderr);
    assert!(exported.stderr.contains("needs these secrets: hubspot_access_token, slack_access_token"), "{}", exported.stderr);
    let valid = cli.run(&["blueprint", "validate", out.to_str().unwrap()]).await;
    assert_eq!(valid.code, 0, "{}{}", valid.stdout, valid.stderr);
    assert!(valid.stdout.contains("blueprint \"prod-copy\": 2 connections, 2 rules"), "{}", valid.stdout);
}
