//! (h) Retention: ingestion and delivery while history past its retention is deleted.
//!
//! A workspace is given `rows` events older than its retention (each with a delivery that
//! succeeded and its attempt: three rows per event), written straight into the node's database
//! while it is stopped. The node then starts with a retention of one day, so its maintenance
//! begins deleting them at once, 1,000 events per transaction. Meanwhile single events are sent
//! at a fixed rate to a workspace that delivers them, and each is timed from emit to arrival;
//! once the old history is gone, the same is measured again beside nothing.

use crate::load::open_loop;
use crate::node::Node;
use crate::receiver::{self, now_micros, Arrivals};
use crate::scenarios::Percentiles;
use crate::BenchConfig;
use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::ids::*;
use switchyard_core::model::{Event, EventStatus};
use switchyard_store::{NewDelivery, NewEvent, Scope};

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Serialize)]
pub struct RetentionFigures {
    /// Old events written (each with a delivery and an attempt).
    pub events: u64,
    pub populate_s: f64,
    /// From the node's start to the last old event gone.
    pub prune_s: f64,
    /// Emit → arrival while the prune ran, and afterwards beside nothing.
    pub during_ms: Percentiles,
    pub after_ms: Percentiles,
    pub rate: u32,
}

pub async fn run(config: &BenchConfig) -> anyhow::Result<RetentionFigures> {
    let rows = config.sizes.retention_events;
    let rate = config.sizes.latency_rate;
    let node = Node::start(&config.binary, config.postgres.as_deref()).await?;
    let arrivals = Arc::new(Arrivals::default());
    let fast = receiver::fast(arrivals.clone()).await?;
    let (_, old_ws) = node.workspace("history", std::slice::from_ref(&fast), json!({"max_in_flight": 64})).await?;
    let (live_key, _) = node.workspace("live", &[fast], json!({"max_in_flight": 64})).await?;
    let rules: serde_json::Value = node
        .client
        .get(format!("{}/api/v1/workspaces/{old_ws}/rules", node.base))
        .bearer_auth(crate::node::ADMIN_KEY)
        .send()
        .await?
        .json()
        .await?;
    let rule = RuleId::from_trusted(rules["data"][0]["id"].as_str().context("the rule")?.to_owned());
    let connection = ConnectionId::from_trusted(rules["data"][0]["connection_id"].as_str().context("its connection")?.to_owned());
    let (url, dir) = node.stop();

    let started = Instant::now();
    let last = populate(&url, &WorkspaceId::from_trusted(old_ws), &rule, &connection, rows).await?;
    let populate_s = started.elapsed().as_secs_f64();
    eprintln!("  wrote {rows} old events with their deliveries and attempts in {populate_s:.1} s");

    let node = Node::start_on(&config.binary, url.clone(), dir, &[("SWITCHYARD_RETENTION_DAYS", "1")]).await?;
    let started = Instant::now();
    let store = switchyard_store::open(&url).await?;
    let live_url = format!("{}/api/v1/events", node.base);
    let body = |n: u64| {
        bytes::Bytes::from(serde_json::to_vec(&json!({"event": "live", "payload": {"n": n, "sent_us": now_micros()}})).unwrap_or_default())
    };
    arrivals.record(true);
    let mut expected = arrivals.count();
    loop {
        expected += open_loop(&node.client, &live_url, &live_key, rate, Duration::from_secs(2), body).await?;
        if store.get_event(&Scope::All, &last).await?.is_none() {
            break;
        }
        if started.elapsed() > Duration::from_secs(3_600) {
            bail!("the old history was not gone within an hour");
        }
    }
    let prune_s = started.elapsed().as_secs_f64();
    wait(&arrivals, expected).await?;
    let during_ms = Percentiles::of(arrivals.take_latencies())?;
    eprintln!(
        "  pruned in {prune_s:.1} s; meanwhile, at {rate}/s, emit to arrival p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        during_ms.p50, during_ms.p99, during_ms.max
    );
    arrivals.record(true);
    let sent = open_loop(&node.client, &live_url, &live_key, rate, Duration::from_secs(prune_s.clamp(2.0, 10.0) as u64), body).await?;
    wait(&arrivals, expected + sent).await?;
    let after_ms = Percentiles::of(arrivals.take_latencies())?;
    eprintln!("  afterwards: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms", after_ms.p50, after_ms.p99, after_ms.max);
    Ok(RetentionFigures { events: rows as u64, populate_s, prune_s, during_ms, after_ms, rate })
}

async fn wait(arrivals: &Arrivals, expected: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrivals.count() < expected {
        if Instant::now() > deadline {
            bail!("only {} of {expected} deliveries arrived", arrivals.count());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Writes `rows` events received two days ago, each with one delivery, then marks the deliveries
/// succeeded with one attempt each (raw SQL: no API makes history in the past). Returns the id of
/// the newest, which the prune deletes last.
async fn populate(url: &str, ws: &WorkspaceId, rule: &RuleId, connection: &ConnectionId, rows: usize) -> anyhow::Result<EventId> {
    let store = switchyard_store::open(url).await?;
    let start = switchyard_core::now_millis() - 2 * DAY_MS;
    let id = |prefix: &str, at: i64, n: usize| format!("{prefix}{}", ulid::Ulid::from_parts(at as u64, n as u128));
    let mut last = None;
    for chunk in (0..rows).collect::<Vec<_>>().chunks(1_000) {
        let batch: Vec<NewEvent> = chunk
            .iter()
            .map(|&n| {
                let at = start + (n / 100) as i64;
                let event_id = EventId::from_trusted(id("evt_", at, n));
                last = Some(event_id.clone());
                NewEvent {
                    event: Event {
                        id: event_id,
                        workspace_id: ws.clone(),
                        event: "old.event".into(),
                        resource: None,
                        resource_id: None,
                        payload: format!("{{\"n\": {n}, \"email\": \"user{n}@example.com\"}}"),
                        occurred_at: None,
                        received_at: at,
                        status: EventStatus::Pending,
                        test: false,
                    },
                    idempotency_key: None,
                    deliveries: vec![NewDelivery {
                        id: DeliveryId::from_trusted(id("dlv_", at, n)),
                        rule_id: rule.clone(),
                        connection_id: connection.clone(),
                        lease: None,
                    }],
                    monthly_cap: None,
                }
            })
            .collect();
        store.ingest(&batch, start, 60_000).await?;
    }
    drop(store);
    // Finished: each delivery succeeded at its first attempt, each event completed.
    let statements = [
        "INSERT INTO attempts (delivery_id, number, workspace_id, started_at, duration_ms, status_code)
         SELECT id, 1, workspace_id, created_at, 12, 200 FROM deliveries WHERE event_id IN (SELECT id FROM events WHERE event = 'old.event')",
        "UPDATE deliveries SET status = 'succeeded', attempt_count = 1, next_attempt_at = NULL
         WHERE event_id IN (SELECT id FROM events WHERE event = 'old.event')",
        "UPDATE events SET status = 'completed' WHERE event = 'old.event'",
    ];
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await?;
        for sql in statements {
            sqlx::query(sql).execute(&pool).await?;
        }
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        for sql in statements {
            sqlx::query(sql).execute(&pool).await?;
        }
    }
    last.context("no rows written")
}
