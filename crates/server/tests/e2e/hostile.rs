//! Hostile destinations (docs/reliability.md): real loopback servers that misbehave on the wire.
//! Each attempt must end within the connection's timeout with an error a person can read, read
//! at most a small part of any answer, and leave the node serving everyone else.

use crate::harness::{TestApp, Workspace};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use switchyard_bench::hostile::{Fault, Hostile};

const TIMEOUT_MS: u64 = 2000;

/// One connection to `fault`, one attempt and no retries.
async fn connection(app: &TestApp, ws: &Workspace, fault: Fault, server: &Hostile) -> Value {
    app.webhook(ws, &server.url(), json!({"name": format!("{fault:?}"), "retry_policy": {"max_attempts": 1}, "timeout_ms": TIMEOUT_MS}))
        .await
}

/// Waits until none of the event's deliveries is waiting or in flight; returns the event.
async fn settled(app: &TestApp, event: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = app.event(event).await;
        let busy = |d: &Value| matches!(d["status"].as_str(), Some("pending" | "delivering" | "retrying"));
        if !e["deliveries"].as_array().unwrap().iter().any(busy) {
            return e;
        }
        assert!(Instant::now() < deadline, "the deliveries never finished: {e:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn every_hostile_destination_ends_its_attempt_in_time_with_a_readable_error() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("hostile").await;
    // What the recorded error must say, for each fault.
    let cases: [(Fault, &[&str]); 10] = [
        (Fault::ResetMidResponse, &["the response (HTTP 200) broke off after 7 bytes"]),
        (Fault::TrickleBody, &["timed out reading the response (HTTP 200, "]),
        (Fault::TrickleHeaders, &["timed out"]),
        (Fault::TenGigabytes, &[]),
        (Fault::EndlessHeaders, &["request failed", "too large"]),
        (Fault::InvalidHttp, &["request failed", "invalid HTTP"]),
        (Fault::RedirectLoop, &["HTTP 302", "redirects are not followed"]),
        (Fault::TlsGarbage, &["could not connect"]),
        (Fault::TlsSilent, &["timed out"]),
        (Fault::NeverReads, &["timed out"]),
    ];
    let mut servers = Vec::new();
    for (fault, _) in &cases {
        let server = Hostile::start(*fault).await.unwrap();
        let conn = connection(&app, &ws, *fault, &server).await;
        app.rule(&ws, &conn, "hostile.test", json!({})).await;
        servers.push((server, conn));
    }
    let started = Instant::now();
    let event = app.emit_ok(&ws, json!({"event": "hostile.test", "payload": {"n": 1}})).await;
    // Every delivery is over once its one attempt is: well within the timeout plus scheduling.
    let finished = settled(&app, &event).await;
    let whole = started.elapsed();
    assert!(whole < Duration::from_millis(TIMEOUT_MS + 3000), "the attempts took {whole:?} in all");
    let deliveries = finished["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), cases.len(), "{finished:#}");

    for ((fault, expected), (server, conn)) in cases.iter().zip(&servers) {
        let summary = deliveries.iter().find(|d| d["connection_id"] == conn["id"]).unwrap();
        let d = app.delivery(summary["id"].as_str().unwrap()).await;
        let attempts = d["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{fault:?}: {d:#}");
        let attempt = &attempts[0];
        let duration = attempt["duration_ms"].as_u64().unwrap();
        assert!(duration <= TIMEOUT_MS + 500, "{fault:?} took {duration} ms: {attempt:#}");
        assert!(server.seen.load(Ordering::SeqCst) >= 1, "{fault:?} was never reached");
        let excerpt = attempt["response_excerpt"].as_str().unwrap_or_default();
        assert!(excerpt.len() <= 2048 + 4, "{fault:?} kept {} bytes of its answer", excerpt.len());

        if *fault == Fault::TenGigabytes {
            // The answer is a success; what matters is that it was not read to its end.
            assert_eq!(d["status"], "succeeded", "{d:#}");
            assert_eq!(attempt["status_code"], 200, "{attempt:#}");
            continue;
        }
        assert_eq!(d["status"], "dead", "{fault:?}: {d:#}");
        let error = attempt["error"].as_str().unwrap_or_else(|| panic!("{fault:?} recorded no error: {attempt:#}"));
        assert!(expected.iter().any(|e| error.contains(e)), "{fault:?}: the error {error:?} says none of {expected:?}");
        assert!(error.chars().all(|c| !c.is_control()) && error.len() < 600, "{fault:?}: unreadable error {error:?}");
    }

    // The 10 GB answer was dropped after the first part: what the server got to write is what the
    // node's read limit and the sockets' buffers hold, not gigabytes.
    let (big, _) = &servers[3];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let written = big.written.load(Ordering::Relaxed);
    assert!(written < 32 << 20, "the node let the destination send {written} bytes");
    // Redirects are never followed: the server saw one request.
    assert_eq!(servers[6].0.seen.load(Ordering::SeqCst), 1);
    // And the node serves everyone else meanwhile.
    let (status, _) = app.admin(Method::GET, &format!("/workspaces/{}", ws.id), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_destination_that_hangs_is_retried_on_schedule_and_each_attempt_ends_at_the_timeout() {
    let app = TestApp::spawn().await;
    let ws = app.workspace("hung").await;
    let server = Hostile::start(Fault::TrickleBody).await.unwrap();
    let conn = app
        .webhook(
            &ws,
            &server.url(),
            json!({"retry_policy": {"max_attempts": 3, "initial_delay_ms": 20, "max_delay_ms": 50}, "timeout_ms": 1000}),
        )
        .await;
    app.rule(&ws, &conn, "*", json!({})).await;
    let event = app.emit_ok(&ws, json!({"event": "slow.test", "payload": {}})).await;
    let finished = settled(&app, &event).await;
    let d = app.delivery(finished["deliveries"][0]["id"].as_str().unwrap()).await;
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{d:#}");
    for a in attempts {
        let ms = a["duration_ms"].as_u64().unwrap();
        assert!((900..=1500).contains(&ms), "an attempt took {ms} ms: {a:#}");
        let error = a["error"].as_str().unwrap();
        assert!(error.starts_with("timed out reading the response (HTTP 200, "), "{a:#}");
        // What had arrived before the timeout is not kept as if it were the answer.
        assert!(a["status_code"].is_null(), "{a:#}");
    }
    assert_eq!(server.seen.load(Ordering::SeqCst), 3);
}
