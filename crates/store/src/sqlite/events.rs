//! Events: the ingest batch (group commit), idempotency, history queries and rollup status.

use super::SqliteStore;
use crate::{EventStore, IngestOutcome, NewEvent, Result};
use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite, Transaction};
use std::collections::HashMap;
use switchyard_core::ids::*;
use switchyard_core::model::*;
use switchyard_core::Millis;

// SQLite allows 32,766 bound parameters per statement; stay well below it.
const EVENT_ROWS_PER_INSERT: usize = 1_000;
const DELIVERY_ROWS_PER_INSERT: usize = 2_000;

#[async_trait]
impl EventStore for SqliteStore {
    async fn ingest(&self, batch: &[NewEvent], now: Millis, window_ms: i64) -> Result<Vec<IngestOutcome>> {
        let mut tx = self.writer.begin().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        // Keys claimed earlier in this same batch, so two requests racing with one key make one event.
        let mut claimed: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, new) in batch.iter().enumerate() {
            let Some(key) = new.idempotency_key.as_deref() else {
                outcomes.push(IngestOutcome::Created);
                continue;
            };
            let ws = new.event.workspace_id.as_str();
            if let Some(&first) = claimed.get(&(ws, key)) {
                let e = &batch[first].event;
                outcomes.push(IngestOutcome::Duplicate { id: e.id.clone(), event: e.event.clone(), received_at: e.received_at });
                continue;
            }
            let existing: Option<(String, String, i64)> = sqlx::query_as(
                "SELECT e.id, e.event, e.received_at FROM idempotency_keys k JOIN events e ON e.id = k.event_id
                 WHERE k.workspace_id = ? AND k.key = ? AND k.expires_at > ?",
            )
            .bind(ws)
            .bind(key)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            match existing {
                Some((id, event, received_at)) => {
                    outcomes.push(IngestOutcome::Duplicate { id: EventId::from_trusted(id), event, received_at })
                }
                None => {
                    claimed.insert((ws, key), i);
                    outcomes.push(IngestOutcome::Created);
                }
            }
        }
        let (month, _, _) = switchyard_core::limits::month_of(now);
        let caps = crate::quota::capped(batch, &outcomes);
        // What each capped workspace has used this month, in the order of `caps`.
        let mut used: Vec<u64> = Vec::new();
        if !caps.is_empty() {
            let known: Vec<Option<u64>> = {
                let counts = self.month_counts.lock().unwrap_or_else(|p| p.into_inner());
                caps.iter().map(|(ws, _)| if counts.0 == month { counts.1.get(*ws).copied() } else { None }).collect()
            };
            // The month's count is the sum of its days (at most 31 rows of the primary key); the
            // single writer makes the read and the count that follows one step.
            let mut range: Option<(String, String)> = None;
            for ((ws, _), known) in caps.iter().zip(known) {
                let n = match known {
                    Some(n) => n,
                    None => {
                        let (from, to) = range.get_or_insert_with(|| (format!("{month}-01"), format!("{month}-32")));
                        let n: Option<i64> =
                            sqlx::query_scalar("SELECT SUM(events) FROM usage_days WHERE workspace_id = ? AND day >= ? AND day < ?")
                                .bind(*ws)
                                .bind(&*from)
                                .bind(&*to)
                                .fetch_one(&mut *tx)
                                .await?;
                        n.unwrap_or(0).max(0) as u64
                    }
                };
                used.push(n);
            }
            crate::quota::refuse_over_cap(batch, &mut outcomes, &caps, &used);
            for n in crate::quota::notifications(batch, &outcomes, &caps, &used, &month, now) {
                SqliteStore::add_notification(&mut tx, &n).await?;
            }
        }
        let created: Vec<&NewEvent> =
            batch.iter().zip(&outcomes).filter(|(_, o)| matches!(o, IngestOutcome::Created)).map(|(n, _)| n).collect();
        insert_events(&mut tx, &created).await?;
        insert_deliveries(&mut tx, &created, now).await?;
        let day = switchyard_core::limits::day_of(now);
        // Usage: one row per workspace and day, the only page counting adds to the commit (the
        // month is the sum of its days).
        let stored = crate::quota::stored_per_workspace(batch, &outcomes);
        for (ws, n, deliveries) in &stored {
            sqlx::query(
                "INSERT INTO usage_days (workspace_id, day, events, deliveries) VALUES (?, ?, ?, ?)
                 ON CONFLICT (workspace_id, day) DO UPDATE
                 SET events = usage_days.events + excluded.events, deliveries = usage_days.deliveries + excluded.deliveries",
            )
            .bind(ws)
            .bind(&day)
            .bind(n)
            .bind(deliveries)
            .execute(&mut *tx)
            .await?;
        }
        for new in created.iter().filter(|n| n.idempotency_key.is_some()) {
            sqlx::query(
                "INSERT INTO idempotency_keys (workspace_id, key, event_id, expires_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (workspace_id, key) DO UPDATE SET event_id = excluded.event_id, expires_at = excluded.expires_at",
            )
            .bind(new.event.workspace_id.as_str())
            .bind(new.idempotency_key.as_deref())
            .bind(new.event.id.as_str())
            .bind(now + window_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        // Committed: the month counts this store knows move on (every stored event counts, test
        // events of a capped workspace included).
        let mut counts = self.month_counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.0 != month {
            counts.0 = month;
            counts.1.clear();
        }
        // A capped workspace's count is now exact (what it had, and what this batch stored); any
        // other count already known moves on by what was stored.
        for (i, (ws, _)) in caps.iter().enumerate() {
            let n = stored.binary_search_by(|(w, _, _)| w.cmp(ws)).map_or(0, |j| stored[j].1 as u64);
            match counts.1.get_mut(*ws) {
                Some(c) => *c = used[i] + n,
                None => {
                    counts.1.insert((*ws).to_owned(), used[i] + n);
                }
            }
        }
        for (ws, n, _) in &stored {
            if crate::quota::cap_index(&caps, ws).is_none() {
                if let Some(c) = counts.1.get_mut(*ws) {
                    *c += *n as u64;
                }
            }
        }
        Ok(outcomes)
    }

    async fn prune_history(&self, before: Millis, limit: u32, ws: Option<&WorkspaceId>) -> Result<u64> {
        let mut tx = self.writer.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM events e WHERE id < ? AND (CAST(? AS TEXT) IS NULL OR workspace_id = ?) AND NOT EXISTS (
                SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status IN ('pending', 'delivering', 'retrying'))
             ORDER BY id LIMIT ?",
        )
        .bind(crate::event_id_floor(before))
        .bind(ws.map(|w| w.as_str()))
        .bind(ws.map(|w| w.as_str()))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let ids_json = serde_json::to_string(&ids).unwrap_or_default();
        for statement in [
            "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id IN (SELECT value FROM json_each(?)))",
            "DELETE FROM deliveries WHERE event_id IN (SELECT value FROM json_each(?))",
            "DELETE FROM events WHERE id IN (SELECT value FROM json_each(?))",
        ] {
            sqlx::query(statement).bind(&ids_json).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    async fn expire_idempotency_keys(&self, now: Millis) -> Result<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= ?").bind(now).execute(&self.writer).await?;
        Ok(done.rows_affected())
    }
}

async fn insert_events(tx: &mut Transaction<'_, Sqlite>, events: &[&NewEvent]) -> Result<()> {
    for chunk in events.chunks(EVENT_ROWS_PER_INSERT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (id, workspace_id, event, resource, resource_id, payload, occurred_at, received_at, status, test) ",
        );
        q.push_values(chunk, |mut b, n| {
            let e = &n.event;
            b.push_bind(e.id.as_str())
                .push_bind(e.workspace_id.as_str())
                .push_bind(e.event.as_str())
                .push_bind(e.resource.as_deref())
                .push_bind(e.resource_id.as_deref())
                .push_bind(e.payload.as_str())
                .push_bind(e.occurred_at)
                .push_bind(e.received_at)
                .push_bind(e.status.as_str())
                .push_bind(e.test);
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_deliveries(tx: &mut Transaction<'_, Sqlite>, events: &[&NewEvent], now: Millis) -> Result<()> {
    let rows: Vec<(&NewEvent, &crate::NewDelivery)> = events.iter().flat_map(|n| n.deliveries.iter().map(move |d| (*n, d))).collect();
    for chunk in rows.chunks(DELIVERY_ROWS_PER_INSERT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO deliveries (id, workspace_id, event_id, rule_id, connection_id, status, next_attempt_at, created_at, updated_at, \
             lease_owner, lease_expires_at) ",
        );
        q.push_values(chunk, |mut b, (n, d)| {
            let status = if d.lease.is_some() { DeliveryStatus::Delivering } else { DeliveryStatus::Pending };
            b.push_bind(d.id.as_str())
                .push_bind(n.event.workspace_id.as_str())
                .push_bind(n.event.id.as_str())
                .push_bind(d.rule_id.as_str())
                .push_bind(d.connection_id.as_str())
                .push_bind(status.as_str())
                .push_bind(now)
                .push_bind(now)
                .push_bind(now)
                .push_bind(d.lease.as_ref().map(|l| &*l.owner))
                .push_bind(d.lease.as_ref().map(|l| l.expires_at));
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// An event's rollup from its deliveries: failed if any is dead, completed when all succeeded or
/// were cancelled (or there are none), processing once any was attempted, else pending.
const ROLLUP: &str = "(SELECT CASE
        WHEN COUNT(*) = 0 THEN 'completed'
        WHEN SUM(status = 'dead') > 0 THEN 'failed'
        WHEN SUM(status IN ('succeeded', 'cancelled')) = COUNT(*) THEN 'completed'
        WHEN SUM(attempt_count) > 0 OR SUM(status = 'delivering') > 0 THEN 'processing'
        ELSE 'pending' END
    FROM deliveries WHERE event_id = events.id)";

pub(crate) async fn refresh_event_status(tx: &mut Transaction<'_, Sqlite>, event_id: &str) -> Result<()> {
    refresh_event_statuses(tx, &serde_json::to_string(&[event_id]).unwrap_or_default()).await
}

/// Recomputes the rollup of the events in a JSON array of ids (its one parameter), writing only
/// those that changed.
pub(crate) static REFRESH_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("UPDATE events SET status = {ROLLUP} WHERE id IN (SELECT value FROM json_each(?)) AND status IS NOT {ROLLUP}")
});

/// Recomputes the rollup of the events in a JSON array of ids, writing only those that changed.
pub(crate) async fn refresh_event_statuses(tx: &mut Transaction<'_, Sqlite>, ids_json: &str) -> Result<()> {
    sqlx::query(&REFRESH_SQL).bind(ids_json).execute(&mut **tx).await?;
    Ok(())
}
