//! Attacks by a tenant (an editor or a publishable-key holder) against the real binary: each must
//! leave the server up, responsive and correct. See docs/security.md ("What a tenant can do to the
//! installation").

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A Slack stand-in on loopback that accepts every message.
async fn slack_stub() -> String {
    let app = axum::Router::new().fallback(|| async { axum::Json(json!({"ok": true, "ts": "1.0"})) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    url
}

struct Workspace {
    id: String,
    pk: String,
    slack: String,
}

/// A workspace with one Slack connection (to the stub, no rate limit); no rules yet.
async fn workspace(client: &reqwest::Client, base: &str, slack_url: &str) -> Workspace {
    let ws = admin(client, Method::POST, &format!("{base}/api/v1/workspaces"), Some(json!({"name": "tenant"}))).await;
    let id = ws["id"].as_str().unwrap().to_owned();
    let conn = json!({"type": "slack", "name": "slack", "config": {"base_url": slack_url}, "credentials": {"access_token": "xoxb-hardening"},
                      "rate_limit_per_minute": null, "max_in_flight": 8});
    let conn = admin(client, Method::POST, &format!("{base}/api/v1/workspaces/{id}/connections"), Some(conn)).await;
    Workspace { id, pk: ws["publishable_key"]["key"].as_str().unwrap().to_owned(), slack: conn["id"].as_str().unwrap().to_owned() }
}

async fn call(client: &reqwest::Client, method: Method, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Creates a Slack rule for `event` with `template`; returns the status and body.
async fn slack_rule(client: &reqwest::Client, base: &str, ws: &Workspace, event: &str, template: &str) -> (u16, Value) {
    let rule = json!({"name": event, "event": event, "connection_id": ws.slack,
                      "action_config": {"channel": "C1", "template": template}});
    call(client, Method::POST, &format!("{base}/api/v1/workspaces/{}/rules", ws.id), ADMIN, Some(rule)).await
}

async fn emit(client: &reqwest::Client, base: &str, ws: &Workspace, event: &str) -> String {
    let (status, v) =
        call(client, Method::POST, &format!("{base}/api/v1/events"), &ws.pk, Some(json!({"event": event, "payload": {"n": 1}}))).await;
    assert_eq!(status, 202, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

/// The workspace's deliveries of one event, once every one has finished.
async fn finished(client: &reqwest::Client, base: &str, ws: &Workspace, event_id: &str, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let (_, event) = call(client, Method::GET, &format!("{base}/api/v1/events/{event_id}"), ADMIN, None).await;
        let ids: Vec<String> =
            event["deliveries"].as_array().map(|d| d.iter().map(|d| d["id"].as_str().unwrap().to_owned()).collect()).unwrap_or_default();
        let mut all = Vec::new();
        for id in &ids {
            all.push(call(client, Method::GET, &format!("{base}/api/v1/deliveries/{id}"), ADMIN, None).await.1);
        }
        if !all.is_empty() && all.iter().all(|d| matches!(d["status"].as_str(), Some("succeeded" | "dead"))) {
            return all;
        }
        assert!(Instant::now() < deadline, "deliveries of {event_id} in {} did not finish: {all:?}", ws.id);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn healthy(client: &reqwest::Client, base: &str) -> Duration {
    let started = Instant::now();
    let r = client.get(format!("{base}/healthz")).timeout(Duration::from_secs(30)).send().await.expect("healthz answers");
    assert_eq!(r.status(), 200);
    started.elapsed()
}

/// Starts a node whose whole process may use at most `bytes` of address space, as `prlimit --as`
/// would: a template that escaped its worker's budget would abort the node instead of exhausting
/// the machine.
fn start_capped(data: &Data, bytes: u64) -> Node {
    use std::os::unix::process::CommandExt;
    let mut command = command(data, &[]);
    command.arg("serve").stdout(Stdio::piped()).stderr(Stdio::inherit());
    // SAFETY: setrlimit is async-signal-safe and touches nothing of the parent.
    unsafe {
        command.pre_exec(move || {
            let cap = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
            if libc::setrlimit(libc::RLIMIT_AS, &cap) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    spawn_node(command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_that_would_overflow_the_compiler_s_stack_are_refused_with_a_422() {
    let data = data().await;
    let node = start(&data);
    let client = reqwest::Client::new();
    let ws = workspace(&client, &node.base, &slack_stub().await).await;
    for (template, says) in [
        (format!("{{{{ {}1 }}}}", "-".repeat(10_000)), "tokens"),
        (format!("{{{{ payload{} }}}}", ".a".repeat(10_000)), "tokens"),
        (format!("{{{{ payload{} }}}}", "|upper".repeat(10_000)), "tokens"),
        (format!("{{{{ payload{} }}}}", "|upper".repeat(12_000)), "limit is 65536"),
        (format!("{}x{}", "{% if a %}".repeat(2_500), "{% endif %}".repeat(2_500)), "nested"),
    ] {
        let (status, body) = slack_rule(&client, &node.base, &ws, "a.*", &template).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["details"][0]["field"], "action_config.template", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(says), "{body}");
    }
    healthy(&client, &node.base).await;
    // The node still takes good rules and delivers through them.
    let (status, body) = slack_rule(&client, &node.base, &ws, "good.*", "{{ event }} for {{ payload.n }}").await;
    assert_eq!(status, 201, "{body}");
    let event = emit(&client, &node.base, &ws, "good.one").await;
    let done = finished(&client, &node.base, &ws, &event, Duration::from_secs(20)).await;
    assert_eq!(done[0]["status"], "succeeded", "{done:?}");
    // It rendered in a worker process, which holds none of the node's secrets.
    let workers = children_of(node.child.id());
    assert!(!workers.is_empty(), "no template worker is running");
    for pid in workers {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(String::from_utf8_lossy(&cmdline).contains("render-worker"));
        let environ = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap()).into_owned();
        assert!(!environ.contains("SWITCHYARD_"), "a template worker sees the node's environment: {environ}");
        // A worker killed from outside is replaced at the next render, not blamed on it.
        // SAFETY: kill only sends a signal.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let event = emit(&client, &node.base, &ws, "good.two").await;
    let done = finished(&client, &node.base, &ws, &event, Duration::from_secs(20)).await;
    assert_eq!(done[0]["status"], "succeeded", "{done:?}");
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        // The parent pid is the second field after the parenthesised command name.
        let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
        if parent == Some(pid) {
            children.push(child);
        }
    }
    children
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_template_fails_its_delivery_and_the_node_stays_up() {
    let data = data().await;
    // 4 GiB for the whole node: far more than it needs, far less than the bomb's 3.2 GB string.
    let node = start_capped(&data, 4 << 30);
    let client = reqwest::Client::new();
    let ws = workspace(&client, &node.base, &slack_stub().await).await;
    let bomb = r#"{% set a = "x" * 100000000 %}{% set b = a ~ a ~ a ~ a ~ a ~ a ~ a ~ a %}{% set c = b ~ b ~ b ~ b %}{{ c|length }}"#;
    let (status, body) = slack_rule(&client, &node.base, &ws, "bomb.*", bomb).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = slack_rule(&client, &node.base, &ws, "fine.*", "fine {{ payload.n }}").await;
    assert_eq!(status, 201, "{body}");

    let bombs: Vec<String> = futures_join(&client, &node.base, &ws, "bomb.go", 3).await;
    let fine = emit(&client, &node.base, &ws, "fine.go").await;
    for event in &bombs {
        let done = finished(&client, &node.base, &ws, event, Duration::from_secs(60)).await;
        assert_eq!(done[0]["status"], "dead", "{done:?}");
        let error = done[0]["last_error"].as_str().unwrap();
        assert!(error.contains("more memory than the limit of 256 MiB"), "{error}");
        assert_eq!(done[0]["attempts"].as_array().unwrap().len(), 1, "a render that breaks a limit is permanent");
    }
    let done = finished(&client, &node.base, &ws, &fine, Duration::from_secs(20)).await;
    assert_eq!(done[0]["status"], "succeeded", "{done:?}");
    healthy(&client, &node.base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_templates_neither_stall_the_node_nor_run_past_their_time_limit() {
    let data = data().await;
    let node = start_custom(&data, &["--template-time-limit-ms", "1500"], &[], Stdio::inherit());
    let client = reqwest::Client::new();
    let ws = workspace(&client, &node.base, &slack_stub().await).await;
    // Each loop turn builds and scans a 10 MB string: seconds of work within the fuel.
    let slow = r#"{% for i in range(100000) %}{{ ("x" * 10000000)|upper|length }}{% endfor %}"#;
    assert_eq!(slack_rule(&client, &node.base, &ws, "slow.*", slow).await.0, 201);
    let events = futures_join(&client, &node.base, &ws, "slow.go", 4).await;
    // While they render, the API answers at once and takes events.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        slowest = slowest.max(healthy(&client, &node.base).await);
        let started = Instant::now();
        emit(&client, &node.base, &ws, "other.event").await;
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(slowest < Duration::from_millis(500), "the API took {slowest:?} while templates rendered");
    let started = Instant::now();
    for event in &events {
        let done = finished(&client, &node.base, &ws, event, Duration::from_secs(30)).await;
        assert_eq!(done[0]["status"], "dead", "{done:?}");
        assert!(done[0]["last_error"].as_str().unwrap().contains("longer than the limit of 1500 ms"), "{done:?}");
    }
    // Four renders on two workers, each stopped at 1.5 s.
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// Emits `n` events named `event`; returns their ids.
async fn futures_join(client: &reqwest::Client, base: &str, ws: &Workspace, event: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(emit(client, base, ws, event).await);
    }
    ids
}

/// A receiver that never answers; counts the requests that reached it.
async fn black_hole() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let arrived = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = arrived.clone();
    let app = axum::Router::new().fallback(move || {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            "never"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (url, arrived)
}

/// Whatever makes a node die during an attempt (here `kill -9`, standing in for any crash), the
/// delivery is set aside after the third time instead of ending every restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_attempts_keep_ending_the_node_is_set_aside_not_retried_forever() {
    let data = data().await;
    let (url, arrived) = black_hole().await;
    let client = reqwest::Client::new();
    let mut node = start(&data);
    let base = node.base.clone();
    let ws = admin(&client, Method::POST, &format!("{base}/api/v1/workspaces"), Some(json!({"name": "loop"}))).await;
    let ws_id = ws["id"].as_str().unwrap();
    let conn = json!({"type": "webhook", "name": "hangs", "config": {"url": url}, "timeout_ms": 2000,
                      "retry_policy": {"max_attempts": 50, "initial_delay_ms": 10, "max_delay_ms": 20}});
    let conn = admin(&client, Method::POST, &format!("{base}/api/v1/workspaces/{ws_id}/connections"), Some(conn)).await;
    admin(
        &client,
        Method::POST,
        &format!("{base}/api/v1/workspaces/{ws_id}/rules"),
        Some(json!({"name": "all", "event": "*", "connection_id": conn["id"]})),
    )
    .await;
    // The workspace is told of deliveries that run out of attempts.
    let (told_url, told) = receiver(Duration::ZERO).await;
    let alerts = json!({"type": "webhook", "name": "alerts", "config": {"url": told_url}});
    let alerts = admin(&client, Method::POST, &format!("{base}/api/v1/workspaces/{ws_id}/connections"), Some(alerts)).await;
    let rule = json!({"name": "exhausted", "event": "switchyard.delivery.exhausted", "connection_id": alerts["id"]});
    admin(&client, Method::POST, &format!("{base}/api/v1/workspaces/{ws_id}/rules"), Some(rule)).await;
    let pk = ws["publishable_key"]["key"].as_str().unwrap();
    let (status, event) =
        call(&client, Method::POST, &format!("{base}/api/v1/events"), pk, Some(json!({"event": "crash.me", "payload": {}}))).await;
    assert_eq!(status, 202);
    let event_id = event["id"].as_str().unwrap();

    for crash in 1..=3 {
        // Each crash happens while the attempt is in flight.
        let deadline = Instant::now() + Duration::from_secs(30);
        while arrived.load(std::sync::atomic::Ordering::SeqCst) < crash {
            assert!(Instant::now() < deadline, "attempt {crash} never reached the receiver");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        node.child.kill().unwrap();
        node.child.wait().unwrap();
        node = start(&data);
    }
    let base = node.base.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivery = loop {
        let (_, e) = call(&client, Method::GET, &format!("{base}/api/v1/events/{event_id}"), ADMIN, None).await;
        let d = e["deliveries"][0].clone();
        if d["status"] == "dead" {
            break d;
        }
        assert!(Instant::now() < deadline, "the delivery was not set aside: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(delivery["last_error"].as_str().unwrap().contains("3 attempts in a row ended with the node making them"), "{delivery}");
    let (_, e) = call(&client, Method::GET, &format!("{base}/api/v1/events/{event_id}"), ADMIN, None).await;
    assert_eq!(e["status"], "failed", "{e}");
    // Set aside is out of attempts: the workspace hears of it once, as of any exhausted delivery.
    let deadline = Instant::now() + Duration::from_secs(20);
    while told.seen.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no delivery.exhausted notification arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let notices: Vec<String> = told.seen.lock().unwrap().keys().cloned().collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    let (_, notice) = call(&client, Method::GET, &format!("{base}/api/v1/events/{}", notices[0]), ADMIN, None).await;
    assert_eq!(notice["event"], "switchyard.delivery.exhausted", "{notice}");
    assert_eq!(notice["payload"]["delivery"]["id"], delivery["id"], "{notice}");
    // The node stays up and tries it no more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(arrived.load(std::sync::atomic::Ordering::SeqCst), 3);
    healthy(&client, &base).await;
    // A replay, on purpose, tries it again.
    let id = delivery["id"].as_str().unwrap();
    call(&client, Method::POST, &format!("{base}/api/v1/deliveries/{id}/replay"), ADMIN, None).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while arrived.load(std::sync::atomic::Ordering::SeqCst) < 4 {
        assert!(Instant::now() < deadline, "the replay was not attempted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

mod http_limits {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    fn addr(node: &Node) -> String {
        node.base.trim_start_matches("http://").to_owned()
    }

    /// Reads until the server closes the connection (or `within` passes); returns what it sent and
    /// whether it closed.
    async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            }
        }
    }

    /// A client sending a partial request line and then one header line at a time, never finishing.
    async fn slow_loris(addr: String, every: Duration) -> (Duration, bool) {
        let started = Instant::now();
        let Ok(mut stream) = TcpStream::connect(&addr).await else { return (started.elapsed(), true) };
        if stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.is_err() {
            return (started.elapsed(), true);
        }
        for i in 0..100 {
            tokio::time::sleep(every).await;
            if stream.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes()).await.is_err() {
                return (started.elapsed(), true);
            }
            let mut probe = [0u8; 1];
            if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await {
                return (started.elapsed(), true);
            }
        }
        (started.elapsed(), false)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_headers_are_cut_off_and_the_api_keeps_answering() {
        let data = data().await;
        let node = start_with(&data, &["--http-header-timeout-ms", "1000"]);
        let client = reqwest::Client::new();
        // Three hundred slow clients at once, each one header every 300 ms.
        let lorises: Vec<_> = (0..300).map(|_| tokio::spawn(slow_loris(addr(&node), Duration::from_millis(300)))).collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(healthy(&client, &node.base).await < Duration::from_millis(500));
        for loris in lorises {
            let (held, closed) = loris.await.unwrap();
            assert!(closed, "a slow client was held for {held:?}");
            assert!(held < Duration::from_secs(4), "a slow client was held for {held:?}");
        }
        healthy(&client, &node.base).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_keep_alive_connections_are_closed_and_busy_ones_are_not() {
        let data = data().await;
        let node = start_with(&data, &["--http-idle-timeout-ms", "1500"]);
        let mut stream = TcpStream::connect(addr(&node)).await.unwrap();
        let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        // Requests 700 ms apart keep the connection: it is never idle for 1.5 s.
        for _ in 0..4 {
            stream.write_all(request).await.unwrap();
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        // Then left alone, it is closed.
        let started = Instant::now();
        let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(closed);
        assert!(started.elapsed() < Duration::from_millis(1500), "closed after {:?}", started.elapsed());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_that_never_finishes_gets_a_408() {
        let data = data().await;
        let node = start_with(&data, &["--http-body-timeout-ms", "1000"]);
        let client = reqwest::Client::new();
        let ws = admin(&client, Method::POST, &format!("{}/api/v1/workspaces", node.base), Some(json!({"name": "b"}))).await;
        let pk = ws["publishable_key"]["key"].as_str().unwrap();
        let mut stream = TcpStream::connect(addr(&node)).await.unwrap();
        let head = format!(
            "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {pk}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"event\""
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        // A byte now and then does not extend the deadline.
        let started = Instant::now();
        let trickle = async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if stream.write_all(b" ").await.is_err() {
                    break;
                }
                let mut buf = [0u8; 4096];
                if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(5), stream.read(&mut buf)).await {
                    return String::from_utf8_lossy(&buf[..n]).into_owned();
                }
                if started.elapsed() > Duration::from_secs(10) {
                    break;
                }
            }
            String::new()
        };
        let answer = trickle.await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"request_timeout\""), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_past_the_cap_get_a_503_and_the_cap_frees_up() {
        let data = data().await;
        let node = start_with(&data, &["--http-max-connections", "20"]);
        let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        let mut held = Vec::new();
        for _ in 0..20 {
            held.push(TcpStream::connect(addr(&node)).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let over = client.get(format!("{}/healthz", node.base)).send().await.unwrap();
        assert_eq!(over.status(), 503);
        assert_eq!(over.headers()["retry-after"], "1");
        let body: Value = over.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unavailable");
        drop(held);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = client.get(format!("{}/healthz", node.base)).send().await.unwrap();
            if r.status() == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "the cap never freed up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// 1,000 rules on `*` and bulk requests of tiny events: each request creates at most the limit of
/// deliveries (10,000 by default), and another workspace's events keep being accepted at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_fan_out_is_cut_at_the_request_limit_and_never_stalls_another_workspace() {
    let data = data().await;
    let node = start(&data);
    let client = reqwest::Client::new();
    let (url, _) = receiver(Duration::ZERO).await;
    let base = node.base.clone();
    let ws = admin(&client, Method::POST, &format!("{base}/api/v1/workspaces"), Some(json!({"name": "amplifier"}))).await;
    let ws_id = ws["id"].as_str().unwrap();
    let conn = admin(
        &client,
        Method::POST,
        &format!("{base}/api/v1/workspaces/{ws_id}/connections"),
        Some(json!({"type": "webhook", "name": "sink", "config": {"url": url}})),
    )
    .await;
    for i in 0..1_000 {
        let rule = json!({"name": format!("r{i}"), "event": "*", "connection_id": conn["id"]});
        admin(&client, Method::POST, &format!("{base}/api/v1/workspaces/{ws_id}/rules"), Some(rule)).await;
    }
    let pk = ws["publishable_key"]["key"].as_str().unwrap().to_owned();
    let tiny: Vec<Value> = (0..1_000).map(|i| json!({"event": "t", "payload": {"i": i}})).collect();
    let (status, v) = call(&client, Method::POST, &format!("{base}/api/v1/events/bulk"), &pk, Some(json!(tiny))).await;
    assert_eq!(status, 207, "{v}");
    assert_eq!((v["accepted"].as_u64(), v["rejected"].as_u64()), (Some(10), Some(990)));

    let other = workspace(&client, &base, &slack_stub().await).await;
    let flooding = Instant::now() + Duration::from_secs(4);
    let floods: Vec<_> = (0..2)
        .map(|_| {
            let (client, base, pk) = (client.clone(), base.clone(), pk.clone());
            tokio::spawn(async move {
                let ten: Vec<Value> = (0..10).map(|i| json!({"event": "t", "payload": {"i": i}})).collect();
                let mut sent = 0;
                while Instant::now() < flooding {
                    let (status, _) = call(&client, Method::POST, &format!("{base}/api/v1/events/bulk"), &pk, Some(json!(ten))).await;
                    assert_eq!(status, 202);
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let mut latencies = Vec::new();
    while Instant::now() < flooding {
        let started = Instant::now();
        emit(&client, &base, &other, "other.event").await;
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut requests = 0;
    for f in floods {
        requests += f.await.unwrap();
    }
    latencies.sort();
    let (median, max) = (latencies[latencies.len() / 2], *latencies.last().unwrap());
    println!(
        "{requests} requests of 10,000 deliveries each; the other workspace's ingest: median {median:?}, max {max:?} ({} events)",
        latencies.len()
    );
    assert!(requests >= 2, "the flood got through {requests} requests");
    assert!(max < Duration::from_millis(1_500), "another workspace's ingest waited {max:?} behind the fan-out");
}
