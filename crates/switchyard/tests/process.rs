//! Tests of the real binary as a child process: crash safety under `kill -9`, and graceful
//! shutdown on SIGTERM.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_accepted_event_and_restart_delivers_every_one() {
    let data = data().await;
    let (url, tally) = receiver(Duration::from_millis(15)).await;
    let client = reqwest::Client::new();
    let mut node = start(&data);
    let pk = setup(&client, &node.base, &[&url]).await;

    // Emit from 16 concurrent senders; kill the node while events are both arriving and in flight.
    let accepted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut senders = Vec::new();
    for s in 0..16 {
        let (client, base, pk, accepted) = (client.clone(), node.base.clone(), pk.clone(), accepted.clone());
        senders.push(tokio::spawn(async move {
            for i in 0..100 {
                let sent = client
                    .post(format!("{base}/api/v1/events"))
                    .bearer_auth(&pk)
                    .json(&json!({"event": "crash.test", "payload": {"sender": s, "i": i}}))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 202 => {
                        let v: Value = r.json().await.unwrap();
                        accepted.lock().unwrap().insert(v["id"].as_str().unwrap().to_owned());
                    }
                    _ => return, // the node is gone: this event was never acknowledged
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted.lock().unwrap().len() < 400 || tally.seen.lock().unwrap().len() < 50 {
        assert!(Instant::now() < deadline, "the node never got busy");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.child.kill().expect("SIGKILL");
    node.child.wait().unwrap();
    for s in senders {
        s.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    let delivered_before = tally.seen.lock().unwrap().len();
    assert!(delivered_before < accepted.len(), "the kill must interrupt delivery for this test to mean anything");

    let _restarted = start(&data); // delivers the rest; stopped when the test ends
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing = accepted.iter().filter(|id| !tally.seen.lock().unwrap().contains_key(*id)).count();
        if missing == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{missing} accepted events were never delivered after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = tally.seen.lock().unwrap().clone();
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    println!(
        "accepted {} events; {} delivered before the kill; {} duplicate deliveries (in flight, or answered and not recorded, at the kill)",
        accepted.len(),
        delivered_before,
        duplicates
    );
    // Only attempts in flight at the kill, or answered and not yet recorded, can repeat: a
    // connection starts a delivery only while it has fewer than (2 + n) times its cap (8) of
    // those, n being how many caps it leases ahead: 25 ms of attempts, one cap at 15 ms each.
    assert!(duplicates <= 24, "{duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_attempts_in_flight_finish_and_exits_zero() {
    let data = data().await;
    let (url, tally) = receiver(Duration::from_millis(500)).await;
    let client = reqwest::Client::new();
    let mut node = start(&data);
    let pk = setup(&client, &node.base, &[&url]).await;
    let r = client.post(format!("{}/api/v1/events", node.base)).bearer_auth(&pk).json(&json!({"event": "slow"})).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(250)).await; // the attempt is now in flight

    let status = Command::new("kill").arg("-TERM").arg(node.child.id().to_string()).status().unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || node.child.wait().unwrap()).await.unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    assert_eq!(tally.seen.lock().unwrap().get(&id), Some(&1), "the in-flight attempt finished before exit");

    // And its success was recorded: a restarted node does not send it again.
    let node = start(&data);
    let event = admin(&client, reqwest::Method::GET, &format!("{}/api/v1/events/{id}", node.base), None).await;
    assert_eq!(event["status"], "completed");
}

#[test]
fn bad_settings_stop_the_server_with_a_clear_message() {
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.arg("serve").args(args).env("SWITCHYARD_LOG", "error").current_dir(data.path());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, err) = run(&["--database-url", "mysql://localhost/x"], &[]);
    assert!(!ok && err.contains("--database-url must start with sqlite:// or postgres://"), "{err}");
    let (ok, err) = run(&["--listen", "not-an-address"], &[]);
    assert!(!ok && err.contains("--listen"), "{err}");
    let (ok, err) = run(&["--role", "boss"], &[]);
    assert!(!ok && err.contains("--role"), "{err}");
    let (ok, err) = run(&["--listen", "127.0.0.1:0"], &[("SWITCHYARD_ADMIN_KEY", "letmein")]);
    assert!(!ok && err.contains("SWITCHYARD_ADMIN_KEY must start with sk_"), "{err}");
    let (ok, err) = run(&["--listen", "127.0.0.1:0"], &[("SWITCHYARD_MASTER_KEY", "nope")]);
    assert!(!ok && err.contains("SWITCHYARD_MASTER_KEY is malformed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_the_grace_period_hands_back_the_leases_of_attempts_still_running() {
    let data = data().await;
    let (url, _tally) = receiver(Duration::from_secs(3600)).await; // answers only after the test
    let client = reqwest::Client::new();
    let mut node = start_with(&data, &["--shutdown-grace-seconds", "0"]);
    let pk = setup(&client, &node.base, &[&url]).await;
    let r = client.post(format!("{}/api/v1/events", node.base)).bearer_auth(&pk).json(&json!({"event": "slow"})).send().await.unwrap();
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await; // the attempt is in flight (2 s timeout)

    let stopping = Instant::now();
    assert!(Command::new("kill").arg("-TERM").arg(node.child.id().to_string()).status().unwrap().success());
    let exit = tokio::task::spawn_blocking(move || node.child.wait().unwrap()).await.unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(stopping.elapsed() < Duration::from_millis(1500), "shutdown waited {:?} for an attempt", stopping.elapsed());

    // The delivery went back to the queue: no lease left behind, no attempt counted.
    let store = switchyard_store::open(&data.url).await.unwrap();
    let event = store.get_event(&switchyard_store::Scope::All, &switchyard_core::ids::EventId::parse(&id).unwrap()).await.unwrap().unwrap();
    let deliveries = store.event_deliveries(&event.id).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, switchyard_core::model::DeliveryStatus::Pending);
    assert_eq!(deliveries[0].attempt_count, 0);
}
