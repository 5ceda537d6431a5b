//! The measurements of one run: (a) ingest, (b) end to end, (c) latency at a fixed rate,
//! (d) the same with a noisy neighbour, (e) memory, (f) the machine's ceiling, (g) another
//! workspace's ingest while one workspace amplifies (a huge fan-out, a huge replay).

use crate::load::{closed_loop, open_loop_timed};
use crate::node::Node;
use crate::receiver::{self, now_micros, Arrivals};
use crate::BenchConfig;
use anyhow::bail;
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Figures from one run (rates per second, latencies in milliseconds, memory in MiB).
#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    pub ceiling_rps: f64,
    /// (k) ingest and delivery at once, fan-out 3, connections at their defaults.
    pub mixed: crate::mixed::MixedFigures,
    /// (l) one connection at its defaults, a destination that answers at once.
    pub one_connection_dps: f64,
    /// Where (l)'s time went, by stage.
    pub stages: crate::mixed::Stages,
    pub ingest_single_eps: f64,
    pub ingest_bulk_eps: f64,
    pub e2e_deliveries_per_s: f64,
    pub latency_ms: Percentiles,
    /// Where (c)'s time went, by stage, and its requests' time to their `202`.
    pub latency_stages: crate::mixed::Stages,
    pub latency_accepted_ms: Percentiles,
    pub noisy_latency_ms: Percentiles,
    pub peak_rss_mib: f64,
    pub queued_rss_mib: f64,
    pub queued_deliveries: usize,
    /// (g) another workspace's ingest latency (to the 202) while one workspace sends a bulk of
    /// 1,000 tiny events to 1,000 rules on `*`, and while it replays its whole backlog.
    pub fan_out_neighbour_ms: Percentiles,
    pub replay_neighbour_ms: Percentiles,
    pub replayed: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    #[serde(default)]
    pub max: f64,
}

impl Percentiles {
    pub(crate) fn of(mut micros: Vec<u64>) -> anyhow::Result<Self> {
        if micros.is_empty() {
            bail!("no latency samples");
        }
        micros.sort_unstable();
        let at = |p: f64| micros[((micros.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
        Ok(Self { p50: at(0.50), p95: at(0.95), p99: at(0.99), max: at(1.0) })
    }
}

const MIB: f64 = 1024.0 * 1024.0;

fn event(name: &str, n: u64) -> serde_json::Value {
    json!({"event": name, "payload": {"n": n, "email": format!("user{n}@example.com"), "plan": "pro", "sent_us": now_micros()}})
}

pub(crate) fn single_body(n: u64) -> Bytes {
    Bytes::from(serde_json::to_vec(&event("bench.single", n)).unwrap_or_default())
}

/// The `i`th bulk request of `size` events.
pub(crate) fn bulk_body(i: u64, size: u64) -> Bytes {
    let batch: Vec<_> = (0..size).map(|n| event("bench.bulk", (i << 8) + n)).collect();
    Bytes::from(serde_json::to_vec(&batch).unwrap_or_default())
}

/// Sends `count` events in bulk requests of `size`, `parallel` requests at a time.
pub(crate) async fn send_bulk(node: &Node, key: &str, count: usize, size: usize, parallel: usize) -> anyhow::Result<()> {
    let url = format!("{}/api/v1/events/bulk", node.base);
    let chunks: Vec<usize> = (0..count).step_by(size).collect();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(chunks)
        .map(|start| {
            let (client, url, key) = (node.client.clone(), url.clone(), key.to_owned());
            async move {
                let batch: Vec<_> = (start..(start + size).min(count)).map(|n| event("bench.bulk", n as u64)).collect();
                let r = client.post(&url).bearer_auth(&key).json(&batch).send().await?;
                if r.status() != 202 {
                    bail!("bulk request answered {}", r.status());
                }
                Ok(())
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    results.into_iter().collect()
}

pub(crate) async fn wait_for(arrivals: &Arrivals, expected: u64, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while arrivals.count() < expected {
        if Instant::now() > deadline {
            bail!("only {} of {expected} deliveries arrived within {limit:?}", arrivals.count());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// (c): paced single events to a workspace delivering to `arrivals`; emit → arrival percentiles,
/// the node's stage timings meanwhile, and emit → `202` percentiles.
async fn latency(
    node: &Node,
    key: &str,
    arrivals: &Arrivals,
    config: &BenchConfig,
) -> anyhow::Result<(Percentiles, crate::mixed::Stages, Percentiles)> {
    let s = &config.sizes;
    let before = arrivals.count();
    arrivals.record(true);
    let url = format!("{}/api/v1/events", node.base);
    let histograms = node.histograms().await?;
    let (sent, accepted) = open_loop_timed(&node.client, &url, key, s.latency_rate, s.latency_duration, single_body).await?;
    wait_for(arrivals, before + sent, Duration::from_secs(60)).await?;
    // The last records commit just after the last arrival.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stages = crate::mixed::Stages::between(&histograms, &node.histograms().await?);
    Ok((Percentiles::of(arrivals.take_latencies())?, stages, Percentiles::of(accepted)?))
}

pub async fn run_once(config: &BenchConfig) -> anyhow::Result<RunFigures> {
    let s = &config.sizes;
    let pg = config.postgres.as_deref();
    let client = reqwest::Client::builder().pool_max_idle_per_host(1024).tcp_nodelay(true).build()?;

    // (f) the ceiling: the same generator against a trivial server in this process.
    let trivial = receiver::trivial().await?;
    let ceiling_rps = closed_loop(&client, &trivial, "x", s.concurrency, s.ingest_duration, 1, single_body).await?;
    eprintln!("  ceiling: {ceiling_rps:.0} requests/s");

    let (mixed, one_connection_dps, stages) = mixed_and_one(config).await?;

    let node = Node::start(&config.binary, pg).await?;
    // (a) ingest into a workspace without rules, so dispatch does not compete.
    let (key, _) = node.workspace("ingest", &[], json!({})).await?;
    let url = format!("{}/api/v1/events", node.base);
    let ingest_single_eps = closed_loop(&node.client, &url, &key, s.concurrency, s.ingest_duration, 1, single_body).await?;
    eprintln!("  ingest, single: {ingest_single_eps:.0} events/s");
    let bulk = s.bulk_size;
    let bulk_url = format!("{}/api/v1/events/bulk", node.base);
    let ingest_bulk_eps =
        closed_loop(&node.client, &bulk_url, &key, s.concurrency, s.ingest_duration, bulk as u64, move |i| bulk_body(i, bulk as u64))
            .await?;
    eprintln!("  ingest, bulk of {bulk}: {ingest_bulk_eps:.0} events/s");

    // (b) end to end with fan-out: first emit to last arrival.
    let arrivals = Arc::new(Arrivals::default());
    let fast = receiver::fast(arrivals.clone()).await?;
    let urls = vec![fast.clone(); s.fan_out];
    let (key, _) = node.workspace("e2e", &urls, json!({"max_in_flight": 256})).await?;
    let started = Instant::now();
    send_bulk(&node, &key, s.e2e_events, 100, 8).await?;
    let expected = (s.e2e_events * s.fan_out) as u64;
    wait_for(&arrivals, expected, Duration::from_secs(600)).await?;
    let e2e_deliveries_per_s = expected as f64 / started.elapsed().as_secs_f64();
    eprintln!("  end to end, fan-out {}: {e2e_deliveries_per_s:.0} deliveries/s", s.fan_out);

    // (c) latency at a fixed rate.
    let timed = Arc::new(Arrivals::default());
    let timed_url = receiver::fast(timed.clone()).await?;
    let (healthy_key, _) = node.workspace("healthy", &[timed_url], json!({"max_in_flight": 64})).await?;
    let (latency_ms, latency_stages, latency_accepted_ms) = latency(&node, &healthy_key, &timed, config).await?;
    eprintln!(
        "  latency at {}/s: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
        s.latency_rate, latency_ms.p50, latency_ms.p95, latency_ms.p99
    );

    // (d) the same beside a workspace whose destination never answers, with a backlog.
    let hang = receiver::hanging().await?;
    let (noisy_key, _) = node.workspace("noisy", &[hang], json!({"timeout_ms": 10_000})).await?;
    send_bulk(&node, &noisy_key, s.noisy_backlog, 1_000, 4).await?;
    // Measure the steady state beside the backlog, not the write burst that created it.
    tokio::time::sleep(s.settle).await;
    let (noisy_latency_ms, _, _) = latency(&node, &healthy_key, &timed, config).await?;
    eprintln!(
        "  latency beside a noisy neighbour: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
        noisy_latency_ms.p50, noisy_latency_ms.p95, noisy_latency_ms.p99
    );
    let peak_rss_mib = node.rss().1 as f64 / MIB;
    drop(node);

    // (e) memory with a large queue: deliveries waiting behind a destination that never answers.
    let node = Node::start(&config.binary, pg).await?;
    let hang = receiver::hanging().await?;
    let (key, _) = node.workspace("queued", &[hang], json!({"timeout_ms": 120_000, "max_in_flight": 1})).await?;
    send_bulk(&node, &key, s.queued_deliveries, 1_000, 4).await?;
    tokio::time::sleep(s.settle).await;
    let queued_rss_mib = node.rss().0 as f64 / MIB;
    eprintln!(
        "  RSS with {} deliveries queued: {queued_rss_mib:.1} MiB (peak of the main run: {peak_rss_mib:.1} MiB)",
        s.queued_deliveries
    );

    drop(node);

    // (g) amplification beside another workspace's ingest.
    let node = Node::start(&config.binary, pg).await?;
    let (fan_out_neighbour_ms, replay_neighbour_ms, replayed) = amplification(&node, config).await?;
    eprintln!(
        "  neighbour's ingest during a 1,000 x {} fan-out: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; during a replay of {replayed}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        s.amplifier_rules,
        fan_out_neighbour_ms.p50,
        fan_out_neighbour_ms.p99,
        fan_out_neighbour_ms.max,
        replay_neighbour_ms.p50,
        replay_neighbour_ms.p99,
        replay_neighbour_ms.max
    );

    Ok(RunFigures {
        ceiling_rps,
        mixed,
        one_connection_dps,
        stages,
        ingest_single_eps,
        ingest_bulk_eps,
        e2e_deliveries_per_s,
        latency_ms,
        latency_stages,
        latency_accepted_ms,
        noisy_latency_ms,
        peak_rss_mib,
        queued_rss_mib,
        queued_deliveries: s.queued_deliveries,
        fan_out_neighbour_ms,
        replay_neighbour_ms,
        replayed,
    })
}

/// (k) and (l) on a fresh node.
pub(crate) async fn mixed_and_one(config: &BenchConfig) -> anyhow::Result<(crate::mixed::MixedFigures, f64, crate::mixed::Stages)> {
    let s = &config.sizes;
    let node = Node::start(&config.binary, config.postgres.as_deref()).await?;
    let mixed = crate::mixed::run(&node, s.fan_out, s.concurrency, s.mixed_duration).await?;
    eprintln!(
        "  ingest and delivery at once, fan-out {}, defaults: {:.0} events/s accepted, {:.0} deliveries/s ({:.0} events/s delivered everywhere; the last {:.2} s after the senders stopped)",
        s.fan_out, mixed.accepted_eps, mixed.deliveries_per_s, mixed.delivered_eps, mixed.drain_s
    );
    let (one, stages) = crate::mixed::one_connection(&node, s.e2e_events).await?;
    eprintln!("  one connection at its defaults: {one:.0} deliveries/s; {stages:?}");
    Ok((mixed, one, stages))
}

/// Single events from another workspace, 200 a second, each timed to its `202`, while `during`
/// runs (and at least one second).
async fn neighbour_latency<F: std::future::Future<Output = anyhow::Result<T>>, T>(
    node: &Node,
    key: &str,
    during: F,
) -> anyhow::Result<(Percentiles, T)> {
    let url = format!("{}/api/v1/events", node.base);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (client, url, key, stop) = (node.client.clone(), url.clone(), key.to_owned(), stop.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(5));
            let mut tasks = tokio::task::JoinSet::new();
            let started = Instant::now();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || started.elapsed() < Duration::from_secs(1) {
                ticker.tick().await;
                n += 1;
                let request = client.post(&url).bearer_auth(&key).header("content-type", "application/json").body(single_body(n));
                tasks.spawn(async move {
                    let sent = Instant::now();
                    match request.send().await {
                        Ok(r) if r.status() == 202 => Ok(sent.elapsed().as_micros() as u64),
                        Ok(r) => Err(anyhow::anyhow!("the neighbour's event was answered {}", r.status())),
                        Err(e) => Err(e.into()),
                    }
                });
            }
            let mut micros = Vec::new();
            while let Some(done) = tasks.join_next().await {
                micros.push(done??);
            }
            anyhow::Ok(micros)
        })
    };
    let outcome = during.await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let micros = sender.await??;
    Ok((Percentiles::of(micros)?, outcome?))
}

/// (g): a workspace with many rules on `*` behind a destination that never answers (its
/// deliveries stay queued), a backlog, then one bulk of 1,000 tiny events and a replay of
/// everything queued, each beside a neighbour's paced ingest.
async fn amplification(node: &Node, config: &BenchConfig) -> anyhow::Result<(Percentiles, Percentiles, u64)> {
    let s = &config.sizes;
    let hang = receiver::hanging().await?;
    let (key, id) = node.workspace("amplifier", &[hang], json!({"timeout_ms": 120_000, "max_in_flight": 1})).await?;
    let connections =
        node.client.get(format!("{}/api/v1/workspaces/{id}/connections", node.base)).bearer_auth(crate::node::ADMIN_KEY).send().await?;
    let connections: serde_json::Value = connections.json().await?;
    let connection = connections["data"][0]["id"].clone();
    for i in 1..s.amplifier_rules {
        node.admin(&format!("/workspaces/{id}/rules"), json!({"name": format!("r{i}"), "event": "*", "connection_id": connection})).await?;
    }
    let bulk_url = format!("{}/api/v1/events/bulk", node.base);
    let tiny = |n: usize| (0..n).map(|i| json!({"event": "amp", "payload": {"i": i}})).collect::<Vec<_>>();
    for _ in 0..s.amplifier_backlog_requests {
        let r = node.client.post(&bulk_url).bearer_auth(&key).json(&tiny(10)).send().await?;
        if !r.status().is_success() {
            bail!("the backlog's bulk request was answered {}", r.status());
        }
    }
    let (neighbour, _) = node.workspace("neighbour", &[], json!({})).await?;
    tokio::time::sleep(s.settle).await;
    let (fan_out, _) = neighbour_latency(node, &neighbour, async {
        // Accepted whole (202) by a server without a limit, cut at the limit (207) by one with.
        let r = node.client.post(&bulk_url).bearer_auth(&key).json(&tiny(1_000)).send().await?;
        if !r.status().is_success() {
            bail!("the fan-out's bulk request was answered {}", r.status());
        }
        Ok(())
    })
    .await?;
    tokio::time::sleep(s.settle).await;
    let replay_url = format!("{}/api/v1/workspaces/{id}/replay", node.base);
    let (replay, replayed) = neighbour_latency(node, &neighbour, async {
        let r = node.client.post(&replay_url).bearer_auth(crate::node::ADMIN_KEY).json(&json!({"status": "pending"})).send().await?;
        if r.status() != 202 {
            bail!("the replay was answered {}", r.status());
        }
        let v: serde_json::Value = r.json().await?;
        Ok(v["replayed"].as_u64().unwrap_or(0))
    })
    .await?;
    Ok((fan_out, replay, replayed))
}
