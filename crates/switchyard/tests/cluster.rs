//! Several nodes on one PostgreSQL database. These tests always use PostgreSQL (the embedded store
//! is single-node): they fail with instructions when no server is reachable.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn postgres_data() -> Data {
    let dir = tempfile::tempdir().unwrap();
    let url = switchyard_store::testing::fresh_postgres_database().await;
    Data { dir, url, master_key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into() }
}

fn missing(tally: &Tally, expected: &HashSet<String>) -> usize {
    let seen = tally.seen.lock().unwrap();
    expected.iter().filter(|id| !seen.contains_key(*id)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_every_event_when_one_is_killed_halfway() {
    const EVENTS: usize = 10_000;
    let data = postgres_data().await;
    let (url_a, tally_a) = receiver(Duration::ZERO).await;
    let (url_b, tally_b) = receiver(Duration::ZERO).await;
    let client = reqwest::Client::new();
    let mut nodes: Vec<Node> = (0..3).map(|_| start(&data)).collect();
    let pk = setup(&client, &nodes[0].base, &[&url_a, &url_b]).await;

    // Bulk requests spread over the three nodes; every event is acknowledged before the kill.
    let mut expected = HashSet::new();
    for (i, chunk) in (0..EVENTS).collect::<Vec<_>>().chunks(500).enumerate() {
        let batch: Vec<Value> = chunk.iter().map(|n| json!({"event": "cluster.test", "payload": {"n": n}})).collect();
        let node = &nodes[i % 3];
        let r: Value = client
            .post(format!("{}/api/v1/events/bulk", node.base))
            .bearer_auth(&pk)
            .json(&batch)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["accepted"], chunk.len());
        expected.extend(r["results"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(expected.len(), EVENTS);

    let deadline = Instant::now() + Duration::from_secs(120);
    while tally_a.seen.lock().unwrap().len() + tally_b.seen.lock().unwrap().len() < EVENTS {
        assert!(Instant::now() < deadline, "the cluster never got halfway");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut victim = nodes.remove(1);
    victim.child.kill().expect("SIGKILL");
    victim.child.wait().unwrap();
    let at_kill = tally_a.seen.lock().unwrap().len() + tally_b.seen.lock().unwrap().len();

    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let left = missing(&tally_a, &expected) + missing(&tally_b, &expected);
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} deliveries never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let duplicates: usize = [&tally_a, &tally_b].iter().map(|t| t.seen.lock().unwrap().values().map(|n| n - 1).sum::<usize>()).sum();
    println!(
        "{} deliveries of {EVENTS} events over 3 nodes; one node killed after {at_kill}; every delivery arrived; {duplicates} duplicates",
        2 * EVENTS
    );
    // Only the killed node's leases can repeat: attempts in flight, and attempts answered whose
    // records had not committed; at most twice each connection's cap (8 each here).
    assert!(duplicates <= 32, "{duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_receiving_one_idempotency_key_at_once_create_one_event() {
    let data = postgres_data().await;
    let client = reqwest::Client::new();
    let nodes: Vec<Node> = (0..2).map(|_| start(&data)).collect();
    let (url, _tally) = receiver(Duration::ZERO).await;
    let pk = setup(&client, &nodes[0].base, &[&url]).await;

    for round in 0..50 {
        let key = format!("order-{round}");
        let send = |base: String| {
            let (client, pk, key) = (client.clone(), pk.clone(), key.clone());
            async move {
                let r = client
                    .post(format!("{base}/api/v1/events"))
                    .bearer_auth(&pk)
                    .header("Idempotency-Key", key)
                    .json(&json!({"event": "order.created"}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned())
            }
        };
        let (a, b) = tokio::join!(send(nodes[0].base.clone()), send(nodes[1].base.clone()));
        assert_eq!(a.1, b.1, "round {round}: both nodes return the same event");
        let mut statuses = [a.0, b.0];
        statuses.sort();
        assert_eq!(statuses, [200, 202], "round {round}: one creates (202), the other repeats (200)");
    }
    let ws: Value =
        client.get(format!("{}/api/v1/workspaces", nodes[0].base)).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    let ws_id = ws["data"][0]["id"].as_str().unwrap();
    let events = admin(&client, reqwest::Method::GET, &format!("{}/api/v1/workspaces/{ws_id}/events?limit=200", nodes[1].base), None).await;
    assert_eq!(events["data"].as_array().unwrap().len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_node_applies_on_another_within_a_second() {
    let data = postgres_data().await;
    let client = reqwest::Client::new();
    let nodes: Vec<Node> = (0..2).map(|_| start(&data)).collect();
    let (url, _tally) = receiver(Duration::ZERO).await;
    let pk = setup(&client, &nodes[0].base, &[&url]).await;
    // Node 1 caches the key by using it.
    let r = client.post(format!("{}/api/v1/events", nodes[1].base)).bearer_auth(&pk).json(&json!({"event": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 202);
    // Node 0 deletes it.
    let ws: Value =
        client.get(format!("{}/api/v1/workspaces", nodes[0].base)).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    let ws_id = ws["data"][0]["id"].as_str().unwrap();
    let keys = admin(&client, reqwest::Method::GET, &format!("{}/api/v1/workspaces/{ws_id}/publishable-keys", nodes[0].base), None).await;
    let key_id = keys["data"][0]["id"].as_str().unwrap();
    let deleted = client
        .delete(format!("{}/api/v1/workspaces/{ws_id}/publishable-keys/{key_id}", nodes[0].base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let changed = Instant::now();
    loop {
        let r = client.post(format!("{}/api/v1/events", nodes[1].base)).bearer_auth(&pk).json(&json!({"event": "x"})).send().await.unwrap();
        if r.status() == 401 {
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(1), "node 1 still accepted the deleted key after {:?}", changed.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("the deleted key was refused by the other node after {:?}", changed.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_node_accepts_and_a_worker_node_delivers() {
    let data = postgres_data().await;
    let client = reqwest::Client::new();
    let api = start_as(&data, "api");
    let (url, tally) = receiver(Duration::ZERO).await;
    let pk = setup(&client, &api.base, &[&url]).await;
    let r = client.post(format!("{}/api/v1/events", api.base)).bearer_auth(&pk).json(&json!({"event": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(tally.seen.lock().unwrap().is_empty(), "an api node does not deliver");

    let worker = start_as(&data, "worker");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tally.seen.lock().unwrap().contains_key(&id) {
        assert!(Instant::now() < deadline, "the worker never delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A worker serves operations endpoints only.
    let health = client.get(format!("{}/healthz", worker.base)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let api_call = client.get(format!("{}/api/v1/workspaces", worker.base)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(api_call.status(), 404);
    // New work reaches the idle worker through NOTIFY, well before its 5 s polling backstop.
    let sent = Instant::now();
    let r = client.post(format!("{}/api/v1/events", api.base)).bearer_auth(&pk).json(&json!({"event": "y"})).send().await.unwrap();
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    while !tally.seen.lock().unwrap().contains_key(&id) {
        assert!(sent.elapsed() < Duration::from_secs(2), "the worker was not woken");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("api → worker delivery took {:?}", sent.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monthly_cap_holds_exactly_across_three_nodes() {
    const CAP: u64 = 250;
    let data = postgres_data().await;
    let plans = data.dir.path().join("plans.toml");
    std::fs::write(&plans, format!("default_plan = \"small\"\n[plans.small]\nevents_per_month = {CAP}\n")).unwrap();
    let plans = plans.to_str().unwrap().to_owned();
    let nodes: Vec<Node> = (0..3)
        .map(|_| start_custom(&data, &["--role", "api"], &[("SWITCHYARD_PLANS_FILE", Some(&plans))], std::process::Stdio::inherit()))
        .collect();
    let client = reqwest::Client::new();
    let ws = admin(&client, reqwest::Method::POST, &format!("{}/api/v1/workspaces", nodes[0].base), Some(json!({"name": "capped"}))).await;
    let pk = ws["publishable_key"]["key"].as_str().unwrap().to_owned();

    // Four senders per node, each with bulk requests of five: 1,200 events racing for 250 places.
    let mut senders = tokio::task::JoinSet::new();
    for node in &nodes {
        for s in 0..4 {
            let (client, base, pk) = (client.clone(), node.base.clone(), pk.clone());
            senders.spawn(async move {
                let mut accepted = Vec::new();
                for i in 0..20 {
                    let batch: Vec<Value> = (0..5).map(|j| json!({"event": "race", "payload": {"s": s, "i": i, "j": j}})).collect();
                    let res = client.post(format!("{base}/api/v1/events/bulk")).bearer_auth(&pk).json(&batch).send().await.unwrap();
                    let status = res.status().as_u16();
                    let body: Value = res.json().await.unwrap();
                    if status == 429 {
                        assert_eq!(body["error"]["code"], "quota_exceeded");
                        continue;
                    }
                    accepted.extend(body["results"].as_array().unwrap().iter().filter_map(|r| r["id"].as_str().map(str::to_owned)));
                }
                accepted
            });
        }
    }
    let mut accepted = HashSet::new();
    while let Some(ids) = senders.join_next().await {
        accepted.extend(ids.unwrap());
    }
    assert_eq!(accepted.len() as u64, CAP, "exactly the cap across the cluster");
    let usage =
        admin(&client, reqwest::Method::GET, &format!("{}/api/v1/workspaces/{}/usage", nodes[2].base, ws["id"].as_str().unwrap()), None)
            .await;
    assert_eq!(usage["events"]["used"], CAP);
    assert_eq!(usage["events"]["limit"], CAP);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_rate_limit_holds_across_three_nodes() {
    // 10 a second, 10 at once, for one key, asked of three nodes as fast as they answer.
    const SECONDS: u64 = 4;
    let data = postgres_data().await;
    let plans = data.dir.path().join("plans.toml");
    std::fs::write(&plans, "[rate_limits]\napi_key = { per_second = 10, burst = 10 }\n").unwrap();
    let plans = plans.to_str().unwrap().to_owned();
    let nodes: Vec<Node> = (0..3)
        .map(|_| start_custom(&data, &["--role", "api"], &[("SWITCHYARD_PLANS_FILE", Some(&plans))], std::process::Stdio::inherit()))
        .collect();
    let client = reqwest::Client::new();
    let start = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for node in &nodes {
        for _ in 0..2 {
            let (client, base) = (client.clone(), node.base.clone());
            senders.spawn(async move {
                let mut admitted = Vec::new();
                while start.elapsed() < Duration::from_secs(SECONDS) {
                    let res = client.get(format!("{base}/api/v1/workspaces")).bearer_auth(ADMIN).send().await.unwrap();
                    match res.status().as_u16() {
                        200 => admitted.push(start.elapsed()),
                        429 => assert!(res.headers().contains_key("retry-after")),
                        other => panic!("unexpected {other}"),
                    }
                }
                admitted
            });
        }
    }
    let mut admitted = Vec::new();
    while let Some(times) = senders.join_next().await {
        admitted.extend(times.unwrap());
    }
    // One node alone would admit 10 + 10 x 4 = 50. Each other node may admit up to one burst and
    // one sync interval's worth (10 + 1) before it learns of the rest: at most 72 in all (three
    // nodes that did not share would admit 150).
    let late = admitted.iter().filter(|t| **t >= Duration::from_secs(2)).count();
    eprintln!("admitted across three nodes in {SECONDS} s: {} ({late} in the last two seconds)", admitted.len());
    assert!(admitted.len() <= 72, "{} admitted across the cluster in {SECONDS} s", admitted.len());
    assert!(admitted.len() >= 45, "only {} admitted: the limit starves", admitted.len());
    // Once the bursts are spent the cluster admits the rate: 20 in the last two seconds (+ a sync's worth
    // per node); nodes that did not share would admit 60.
    assert!(late <= 24, "{late} admitted in the last two seconds");
}

/// A destination that records when each request arrived, how many were open at once, and answers
/// its first request with 429 (Retry-After: 2) when `first_429`, after `delay`.
#[derive(Clone, Default)]
struct Stub {
    arrivals: Arc<Mutex<Vec<Instant>>>,
    open: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
}

async fn stub(delay: Duration, first_429: bool) -> (String, Stub) {
    let stub = Stub::default();
    let s = stub.clone();
    let app = axum::Router::new().fallback(move || {
        let s = s.clone();
        async move {
            let n = {
                let mut arrivals = s.arrivals.lock().unwrap();
                arrivals.push(Instant::now());
                arrivals.len()
            };
            let open = s.open.fetch_add(1, Ordering::SeqCst) + 1;
            s.most_open.fetch_max(open, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            s.open.fetch_sub(1, Ordering::SeqCst);
            if first_429 && n == 1 {
                return (axum::http::StatusCode::TOO_MANY_REQUESTS, [("retry-after", "2")], "slow down");
            }
            (axum::http::StatusCode::OK, [("x-ok", "1")], "ok")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (url, stub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_limits_hold_for_the_cluster_as_a_whole() {
    let data = postgres_data().await;
    let nodes: Vec<Node> = (0..3).map(|_| start(&data)).collect();
    let client = reqwest::Client::new();
    let base = &nodes[0].base;
    let ws = admin(&client, reqwest::Method::POST, &format!("{base}/api/v1/workspaces"), Some(json!({"name": "limited"}))).await;
    let (ws_id, pk) = (ws["id"].as_str().unwrap(), ws["publishable_key"]["key"].as_str().unwrap());
    let (paced_url, paced) = stub(Duration::ZERO, false).await;
    let (narrow_url, narrow) = stub(Duration::from_millis(150), false).await;
    let (held_url, held) = stub(Duration::ZERO, true).await;
    for (event, url, extra) in [
        ("paced", &paced_url, json!({"rate_limit_per_minute": 120})),
        ("narrow", &narrow_url, json!({"max_in_flight": 2})),
        ("held", &held_url, json!({})),
    ] {
        let mut body = json!({"type": "webhook", "name": event, "config": {"url": url},
                              "retry_policy": {"max_attempts": 5, "initial_delay_ms": 50, "max_delay_ms": 5000}});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let conn = admin(&client, reqwest::Method::POST, &format!("{base}/api/v1/workspaces/{ws_id}/connections"), Some(body)).await;
        let rule = json!({"name": event, "event": event, "connection_id": conn["id"]});
        admin(&client, reqwest::Method::POST, &format!("{base}/api/v1/workspaces/{ws_id}/rules"), Some(rule)).await;
    }
    // Backlogs for each, sent through every node.
    for (event, count) in [("paced", 200), ("narrow", 30), ("held", 40)] {
        let batch: Vec<Value> = (0..count).map(|i| json!({"event": event, "payload": {"i": i}})).collect();
        let res = client.post(format!("{}/api/v1/events/bulk", nodes[count % 3].base)).bearer_auth(pk).json(&batch).send().await.unwrap();
        assert_eq!(res.status(), 202);
    }

    // The held connection: after its first answer (429, wait 2 s), no node sends it anything
    // until the wait is over (a request already on its way when the 429 came may still arrive).
    let deadline = Instant::now() + Duration::from_secs(30);
    while held.arrivals.lock().unwrap().len() < 40 + 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let arrivals = held.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 41, "every held delivery arrived, the refused one twice");
    let first = arrivals[0];
    let during: Vec<_> = arrivals
        .iter()
        .map(|t| t.duration_since(first))
        .filter(|d| *d > Duration::from_millis(200) && *d < Duration::from_millis(1_900))
        .collect();
    assert!(during.is_empty(), "sent during the hold: {during:?}");

    // The narrow connection never had more than two open at once across the three nodes.
    while narrow.arrivals.lock().unwrap().len() < 30 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(narrow.arrivals.lock().unwrap().len(), 30);
    assert_eq!(narrow.most_open.load(Ordering::SeqCst), 2, "max_in_flight 2, cluster-wide");

    // The paced connection: 120 a minute, whichever node sends. Watch a little over a minute.
    let started = paced.arrivals.lock().unwrap().first().copied().expect("the paced deliveries began");
    let until = started + Duration::from_secs(62);
    tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
    let arrivals: Vec<Duration> = paced.arrivals.lock().unwrap().iter().map(|t| t.duration_since(started)).collect();
    // In any window of 60 s that ends by the time we looked: at most 120, plus the one that may open it.
    let most_in_a_minute = arrivals
        .iter()
        .map(|from| arrivals.iter().filter(|t| **t >= *from && **t < *from + Duration::from_secs(60)).count())
        .max()
        .unwrap();
    eprintln!("paced at 120/min across three nodes: {} in 62 s, at most {most_in_a_minute} in any 60 s", arrivals.len());
    assert!(most_in_a_minute <= 121, "{most_in_a_minute} deliveries within one minute");
    assert!(arrivals.len() >= 115, "only {} in 62 s: the pace starves", arrivals.len());
}
