//! (k) the real thing: single-event ingestion and delivery at once, fan-out 3, connections at
//! their defaults; and (l) one connection at its defaults to a destination that answers at once.
//!
//! (k) is a closed loop around the whole path: 64 connections send single events as fast as
//! answers come, but a sender waits while more than [`BACKLOG_EVENTS`] accepted events are not yet
//! delivered everywhere. So ingestion runs at the highest rate that delivery sustains (neither
//! side can run ahead and hide the other's cost), the backlog stays bounded, and when the
//! senders stop, what is left drains in well under a second at that rate.

use crate::node::Node;
use crate::receiver::{self, Arrivals};
use crate::scenarios::single_body;
use anyhow::bail;
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Accepted events not yet delivered to every connection, past which a sender waits.
pub const BACKLOG_EVENTS: u64 = 2_000;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct MixedFigures {
    /// Events accepted per second while the senders ran.
    pub accepted_eps: f64,
    /// Deliveries per second, from the first send to the last arrival.
    pub deliveries_per_s: f64,
    /// Events per second delivered everywhere, from the first send to the last arrival.
    pub delivered_eps: f64,
    /// From the senders stopping to the last arrival.
    pub drain_s: f64,
    pub events: u64,
}

/// (k): `fan_out` webhook connections at their defaults, each with a rule on `*`.
pub async fn run(node: &Node, fan_out: usize, concurrency: usize, duration: Duration) -> anyhow::Result<MixedFigures> {
    let arrivals = Arc::new(Arrivals::default());
    let fast = receiver::fast(arrivals.clone()).await?;
    let (key, _) = node.workspace("mixed", &vec![fast; fan_out], json!({})).await?;
    let url = format!("{}/api/v1/events", node.base);
    let accepted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::with_capacity(concurrency);
    for w in 0..concurrency as u64 {
        let (client, url, key, accepted, failed, arrivals) =
            (node.client.clone(), url.clone(), key.clone(), accepted.clone(), failed.clone(), arrivals.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w << 32;
            while Instant::now() < deadline {
                let behind = accepted.load(Ordering::Relaxed).saturating_sub(arrivals.count() / fan_out as u64);
                if behind > BACKLOG_EVENTS {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                i += 1;
                let sent = client.post(&url).bearer_auth(&key).header("content-type", "application/json").body(single_body(i)).send().await;
                match sent {
                    Ok(r) if r.status() == 202 => {
                        let _ = r.bytes().await;
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let sending = started.elapsed();
    let failures = failed.load(Ordering::Relaxed);
    if failures > 0 {
        bail!("{failures} single-event requests were not accepted");
    }
    let events = accepted.load(Ordering::Relaxed);
    let expected = events * fan_out as u64;
    let limit = Instant::now() + Duration::from_secs(300);
    while arrivals.count() < expected {
        if Instant::now() > limit {
            bail!("only {} of {expected} deliveries arrived within 300 s of the last send", arrivals.count());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let total = started.elapsed();
    Ok(MixedFigures {
        accepted_eps: events as f64 / sending.as_secs_f64(),
        deliveries_per_s: expected as f64 / total.as_secs_f64(),
        delivered_eps: events as f64 / total.as_secs_f64(),
        drain_s: (total - sending).as_secs_f64(),
        events,
    })
}

/// Where a delivery's time goes, from the node's own histograms over one measurement: means in
/// milliseconds, and the sizes of the batches the claim and the recorder work in.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Stages {
    /// One claim transaction, and the deliveries it leased.
    pub claim_ms: f64,
    pub per_claim: f64,
    /// One attempt: load, render and sign, the HTTP exchange.
    pub attempt_ms: f64,
    /// From the answer to its record's commit.
    pub record_wait_ms: f64,
    /// One record transaction, and the attempts it recorded.
    pub record_ms: f64,
    pub per_record: f64,
}

impl std::fmt::Display for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "claim {:.2} ms for {:.1} deliveries; attempt {:.2} ms; answer to record {:.2} ms; record {:.2} ms for {:.1} attempts",
            self.claim_ms, self.per_claim, self.attempt_ms, self.record_wait_ms, self.record_ms, self.per_record
        )
    }
}

impl Stages {
    pub(crate) fn between(before: &HashMap<String, (f64, f64)>, after: &HashMap<String, (f64, f64)>) -> Self {
        let diff = |name: &str| {
            let (s0, c0) = before.get(name).copied().unwrap_or_default();
            let (s1, c1) = after.get(name).copied().unwrap_or_default();
            (s1 - s0, c1 - c0)
        };
        let mean = |name: &str| {
            let (sum, count) = diff(name);
            if count > 0.0 {
                sum / count
            } else {
                0.0
            }
        };
        Self {
            claim_ms: mean("switchyard_claim_duration_seconds") * 1e3,
            per_claim: mean("switchyard_claim_deliveries"),
            attempt_ms: mean("switchyard_attempt_duration_seconds") * 1e3,
            record_wait_ms: mean("switchyard_record_wait_seconds") * 1e3,
            record_ms: mean("switchyard_record_duration_seconds") * 1e3,
            per_record: mean("switchyard_record_batch_attempts"),
        }
    }
}

/// (l): `events` events in bulk requests to one webhook connection at its defaults; deliveries
/// per second from the first send to the last arrival, and the node's stage timings meanwhile.
pub async fn one_connection(node: &Node, events: usize) -> anyhow::Result<(f64, Stages)> {
    let arrivals = Arc::new(Arrivals::default());
    let fast = receiver::fast(arrivals.clone()).await?;
    let (key, _) = node.workspace("one-connection", &[fast], json!({})).await?;
    let before = node.histograms().await?;
    let started = Instant::now();
    crate::scenarios::send_bulk(node, &key, events, 100, 8).await?;
    crate::scenarios::wait_for(&arrivals, events as u64, Duration::from_secs(600)).await?;
    let rate = events as f64 / started.elapsed().as_secs_f64();
    // The last records commit just after the last arrival.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok((rate, Stages::between(&before, &node.histograms().await?)))
}
