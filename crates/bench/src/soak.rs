//! `switchyard soak`: crash safety under steady load (docs/reliability.md).
//!
//! Events go in at a steady rate, each with an idempotency key and retried until a node answers
//! 202, and fan out to three webhook connections at default settings whose receiver fails a few
//! requests on purpose. Meanwhile nodes are killed with SIGKILL at random intervals and started
//! again on the same database: the one node of an embedded (SQLite) store, or, on PostgreSQL, the
//! nodes of a cluster in turn. At the end the sending stops and the receiver is watched until every
//! accepted event has arrived at every connection: what never arrives is *missing* (the run
//! fails), what arrives more than once is counted as a *duplicate* (at-least-once allows it).

use crate::node::Node;
use anyhow::Context;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How a soak runs.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    pub binary: std::path::PathBuf,
    /// A PostgreSQL server: the soak runs a cluster of `nodes` on a fresh database there. SQLite
    /// (one node) when absent.
    pub postgres: Option<String>,
    pub nodes: usize,
    pub duration: Duration,
    /// Events per second sent, in all.
    pub rate: u32,
    /// A kill comes after a random pause in this range.
    pub kill_every: (Duration, Duration),
    /// How long a killed cluster node stays down (a lone SQLite node restarts at once).
    pub down_for: Duration,
    /// The share of requests the receiver fails with a 503, so that retries are part of the run.
    pub fail_ratio: f64,
    /// How long to wait, after the sending stops, for every delivery to arrive.
    pub drain: Duration,
    pub out: std::path::PathBuf,
}

/// What a soak found.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub store: &'static str,
    pub nodes: usize,
    pub seconds: f64,
    pub kills: u64,
    /// Events a node accepted (202, or 200 to a repeat of a request whose answer was lost).
    pub accepted: u64,
    /// Requests that got no 202 (a node was down or dying) and were sent again.
    pub resent: u64,
    /// Deliveries owed: accepted events × connections.
    pub expected: u64,
    /// Owed deliveries that arrived at least once.
    pub arrived: u64,
    pub missing: u64,
    /// Arrivals beyond the first of the same event at the same connection.
    pub duplicates: u64,
    /// Requests the receiver failed on purpose (then retried by the nodes).
    pub failed_on_purpose: u64,
    /// From the end of sending until every delivery had arrived (or the drain gave up).
    pub drain_seconds: f64,
    /// From an event's first send to its first arrival at each connection, in milliseconds: how
    /// far behind delivery ran.
    pub lag_ms: crate::scenarios::Percentiles,
    /// A few missing (event sequence number, connection) pairs, to start looking from.
    pub missing_sample: Vec<(u64, usize)>,
}

const CONNECTIONS: usize = 3;

/// Arrivals per (event sequence number, connection).
#[derive(Default)]
struct Tally {
    arrivals: Mutex<HashMap<(u64, usize), u32>>,
    /// For each first arrival, microseconds since the event was first sent.
    lags_us: Mutex<Vec<u64>>,
    failed_on_purpose: AtomicU64,
    fail_ratio: f64,
}

async fn receive(State(tally): State<Arc<Tally>>, Path(k): Path<usize>, body: axum::body::Bytes) -> StatusCode {
    if rand::thread_rng().gen_bool(tally.fail_ratio) {
        tally.failed_on_purpose.fetch_add(1, Ordering::Relaxed);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return StatusCode::BAD_REQUEST };
    let Some(seq) = v["data"]["seq"].as_u64() else { return StatusCode::BAD_REQUEST };
    let first = {
        let mut arrivals = tally.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        let n = arrivals.entry((seq, k)).or_default();
        *n += 1;
        *n == 1
    };
    if let (true, Some(sent)) = (first, v["data"]["sent_us"].as_u64()) {
        tally.lags_us.lock().unwrap_or_else(|p| p.into_inner()).push(crate::receiver::now_micros().saturating_sub(sent));
    }
    StatusCode::OK
}

/// The nodes: their addresses as the sender sees them, and the processes.
struct Cluster {
    binary: std::path::PathBuf,
    url: String,
    env: Vec<(String, String)>,
    nodes: Vec<Option<Node>>,
    /// The base URLs of the nodes that are up.
    live: Arc<RwLock<Vec<String>>>,
}

impl Cluster {
    async fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let node = Node::start_on(&self.binary, self.url.clone(), tempfile::tempdir()?, &env).await?;
        self.live.write().unwrap_or_else(|p| p.into_inner()).push(node.base.clone());
        self.nodes[i] = Some(node);
        Ok(())
    }

    fn kill_node(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            self.live.write().unwrap_or_else(|p| p.into_inner()).retain(|b| *b != node.base);
            drop(node); // SIGKILL, then reaped
        }
    }
}

pub async fn run(config: &SoakConfig) -> anyhow::Result<SoakReport> {
    let tally = Arc::new(Tally { fail_ratio: config.fail_ratio, ..Default::default() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().route("/hook/{k}", axum::routing::post(receive)).with_state(tally.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });

    let dir = tempfile::tempdir()?;
    let (store, url, nodes) = match &config.postgres {
        Some(base) => ("postgres", switchyard_store::testing::fresh_database_on(base).await, config.nodes.max(2)),
        None => ("sqlite", format!("sqlite://{}/switchyard.db", dir.path().display()), 1),
    };
    let mut cluster = Cluster {
        binary: config.binary.clone(),
        url,
        env: Vec::new(),
        nodes: (0..nodes).map(|_| None).collect(),
        live: Arc::new(RwLock::new(Vec::new())),
    };
    for i in 0..nodes {
        cluster.start_node(i).await?;
    }
    let first = cluster.nodes[0].as_ref().context("the first node")?;
    let urls: Vec<String> = (0..CONNECTIONS).map(|k| format!("{receiver}/hook/{k}")).collect();
    let (key, _) = first.workspace("soak", &urls, json!({})).await?;
    eprintln!("soak: {store}, {nodes} node(s), {} events/s for {:?}", config.rate, config.duration);

    // The sender: one task per event, each retrying until a node accepts it.
    let accepted = Arc::new(AtomicU64::new(0));
    let resent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let sender = {
        let (live, accepted, resent, stop, client) = (cluster.live.clone(), accepted.clone(), resent.clone(), stop.clone(), client.clone());
        let interval = Duration::from_secs_f64(1.0 / f64::from(config.rate.max(1)));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut tasks = tokio::task::JoinSet::new();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                ticker.tick().await;
                let (live, accepted, resent, client, key) = (live.clone(), accepted.clone(), resent.clone(), client.clone(), key.clone());
                tasks.spawn(send_until_accepted(client, live, key, seq, accepted, resent));
                seq += 1;
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
            seq
        })
    };

    // The killer.
    let started = Instant::now();
    let mut kills = 0u64;
    let mut turn = 0usize;
    loop {
        let (lo, hi) = config.kill_every;
        let pause = if hi > lo { rand::thread_rng().gen_range(lo..hi) } else { lo };
        let left = config.duration.saturating_sub(started.elapsed());
        if pause >= left {
            tokio::time::sleep(left).await;
            break;
        }
        tokio::time::sleep(pause).await;
        let i = turn % nodes;
        turn += 1;
        cluster.kill_node(i);
        kills += 1;
        if nodes > 1 {
            tokio::time::sleep(config.down_for).await;
        }
        cluster.start_node(i).await?;
        eprintln!(
            "  {:>5.0} s: killed and restarted node {i} ({} accepted so far)",
            started.elapsed().as_secs_f64(),
            accepted.load(Ordering::Relaxed)
        );
    }
    stop.store(true, Ordering::Relaxed);
    let sent = sender.await?;
    let seconds = started.elapsed().as_secs_f64();
    let accepted = accepted.load(Ordering::Relaxed);
    anyhow::ensure!(accepted == sent, "{sent} events sent but {accepted} accepted");

    // The drain: every accepted event at every connection.
    let expected = accepted * CONNECTIONS as u64;
    let drain_started = Instant::now();
    let count_arrived =
        || tally.arrivals.lock().unwrap_or_else(|p| p.into_inner()).keys().filter(|(seq, _)| *seq < accepted).count() as u64;
    while count_arrived() < expected && drain_started.elapsed() < config.drain {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    let arrivals = tally.arrivals.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut missing_sample = Vec::new();
    let mut missing = 0u64;
    for seq in 0..accepted {
        for k in 0..CONNECTIONS {
            if !arrivals.contains_key(&(seq, k)) {
                missing += 1;
                if missing_sample.len() < 10 {
                    missing_sample.push((seq, k));
                }
            }
        }
    }
    let report = SoakReport {
        store,
        nodes,
        seconds,
        kills,
        accepted,
        resent: resent.load(Ordering::Relaxed),
        expected,
        arrived: expected - missing,
        missing,
        duplicates: arrivals.values().map(|n| u64::from(n - 1)).sum(),
        failed_on_purpose: tally.failed_on_purpose.load(Ordering::Relaxed),
        drain_seconds,
        lag_ms: crate::scenarios::Percentiles::of(std::mem::take(&mut *tally.lags_us.lock().unwrap_or_else(|p| p.into_inner())))?,
        missing_sample,
    };
    for i in 0..nodes {
        cluster.kill_node(i);
    }
    println!(
        "soak ({store}, {nodes} node(s)): {:.0} s, {} kills; {} events accepted ({} requests resent); {} of {} deliveries arrived, {} missing, {} duplicates; {} answers failed on purpose; drained in {:.1} s; send to first arrival p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        report.seconds,
        report.kills,
        report.accepted,
        report.resent,
        report.arrived,
        report.expected,
        report.missing,
        report.duplicates,
        report.failed_on_purpose,
        report.drain_seconds,
        report.lag_ms.p50,
        report.lag_ms.p99,
        report.lag_ms.max
    );
    std::fs::write(&config.out, serde_json::to_vec_pretty(&report)?)?;
    eprintln!("wrote {}", config.out.display());
    Ok(report)
}

/// Sends event `seq` to a live node (with its idempotency key) until one answers 202.
async fn send_until_accepted(
    client: reqwest::Client,
    live: Arc<RwLock<Vec<String>>>,
    key: String,
    seq: u64,
    accepted: Arc<AtomicU64>,
    resent: Arc<AtomicU64>,
) {
    let body = json!({"event": "soak.test", "payload": {"seq": seq, "sent_us": crate::receiver::now_micros()}});
    let idempotency = format!("soak-{seq}");
    for attempt in 0u64.. {
        let base = {
            let live = live.read().unwrap_or_else(|p| p.into_inner());
            (!live.is_empty()).then(|| live[(seq + attempt) as usize % live.len()].clone())
        };
        if let Some(base) = base {
            let sent = client
                .post(format!("{base}/api/v1/events"))
                .bearer_auth(&key)
                .header("idempotency-key", &idempotency)
                .json(&body)
                .send()
                .await;
            // 202, or 200 for a repeat whose first try was stored though its answer was lost.
            if matches!(&sent, Ok(r) if r.status().is_success()) {
                accepted.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        resent.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
