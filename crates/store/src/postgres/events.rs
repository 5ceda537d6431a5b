//! Events on PostgreSQL: the ingest batch in a few round trips (UNNEST), idempotency keys claimed
//! with ON CONFLICT so that concurrent nodes agree, history queries and rollup status.

use super::{notify_due, PostgresStore};
use crate::{EventStore, IngestOutcome, NewEvent, Result};
use async_trait::async_trait;
use sqlx::{Postgres, Row, Transaction};
use std::collections::{HashMap, HashSet};
use switchyard_core::ids::*;
use switchyard_core::model::*;
use switchyard_core::Millis;

#[async_trait]
impl EventStore for PostgresStore {
    async fn ingest(&self, batch: &[NewEvent], now: Millis, window_ms: i64) -> Result<Vec<IngestOutcome>> {
        let mut tx = self.pool.begin().await?;
        // The first event of the batch to carry each key; later ones in the batch repeat it.
        let mut first_with_key: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, new) in batch.iter().enumerate() {
            if let Some(key) = new.idempotency_key.as_deref() {
                first_with_key.entry((new.event.workspace_id.as_str(), key)).or_insert(i);
            }
        }
        // Claim the keys: a row that exists and has not expired is someone else's (committed).
        let mut won: HashSet<(String, String)> = HashSet::new();
        if !first_with_key.is_empty() {
            let (mut ws, mut keys, mut events) = (Vec::new(), Vec::new(), Vec::new());
            // Claimed in one order on every node, so two batches sharing keys never deadlock.
            let mut claims: Vec<(&(&str, &str), &usize)> = first_with_key.iter().collect();
            claims.sort_unstable();
            for ((w, k), i) in claims {
                ws.push(*w);
                keys.push(*k);
                events.push(batch[*i].event.id.as_str());
            }
            let rows = sqlx::query(
                "INSERT INTO idempotency_keys (workspace_id, key, event_id, expires_at)
                 SELECT w, k, e, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(w, k, e)
                 ON CONFLICT (workspace_id, key) DO UPDATE SET event_id = EXCLUDED.event_id, expires_at = EXCLUDED.expires_at
                    WHERE idempotency_keys.expires_at <= $5
                 RETURNING workspace_id, key",
            )
            .bind(&ws)
            .bind(&keys)
            .bind(&events)
            .bind(now + window_ms)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                won.insert((row.try_get("workspace_id")?, row.try_get("key")?));
            }
        }
        let lost: Vec<(&str, &str)> =
            first_with_key.keys().filter(|(w, k)| !won.contains(&((*w).to_owned(), (*k).to_owned()))).copied().collect();
        let mut existing: HashMap<(String, String), (String, String, i64)> = HashMap::new();
        if !lost.is_empty() {
            let (ws, keys): (Vec<&str>, Vec<&str>) = lost.iter().copied().unzip();
            let rows = sqlx::query(
                "SELECT k.workspace_id, k.key, e.id, e.event, e.received_at
                 FROM idempotency_keys k JOIN events e ON e.id = k.event_id
                 JOIN UNNEST($1::text[], $2::text[]) AS t(w, k2) ON k.workspace_id = t.w AND k.key = t.k2",
            )
            .bind(&ws)
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                existing.insert(
                    (row.try_get("workspace_id")?, row.try_get("key")?),
                    (row.try_get("id")?, row.try_get("event")?, row.try_get("received_at")?),
                );
            }
        }

        let mut outcomes = Vec::with_capacity(batch.len());
        for (i, new) in batch.iter().enumerate() {
            let Some(key) = new.idempotency_key.as_deref() else {
                outcomes.push(IngestOutcome::Created);
                continue;
            };
            let ws = new.event.workspace_id.as_str();
            let first = first_with_key[&(ws, key)];
            if let Some((id, event, received_at)) = existing.get(&(ws.to_owned(), key.to_owned())) {
                outcomes.push(IngestOutcome::Duplicate {
                    id: EventId::from_trusted(id.clone()),
                    event: event.clone(),
                    received_at: *received_at,
                });
            } else if first != i {
                let e = &batch[first].event;
                outcomes.push(IngestOutcome::Duplicate { id: e.id.clone(), event: e.event.clone(), received_at: e.received_at });
            } else {
                outcomes.push(IngestOutcome::Created);
            }
        }
        let (month, _, _) = switchyard_core::limits::month_of(now);
        // The month rows of every workspace this batch stores events for, locked in id order
        // (so two batches never wait on each other crosswise), before any count is read: a
        // racing node waits here, then sees this batch's count.
        let workspaces: Vec<&str> = crate::quota::stored_per_workspace(batch, &outcomes).into_iter().map(|(ws, _, _)| ws).collect();
        let mut used = HashMap::new();
        if !workspaces.is_empty() {
            sqlx::query(
                "INSERT INTO usage_months (workspace_id, month, events)
                 SELECT w, $2, 0 FROM UNNEST($1::text[]) AS t(w) ORDER BY w
                 ON CONFLICT (workspace_id, month) DO NOTHING",
            )
            .bind(&workspaces)
            .bind(&month)
            .execute(&mut *tx)
            .await?;
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT workspace_id, events FROM usage_months WHERE month = $2 AND workspace_id = ANY($1) ORDER BY workspace_id FOR UPDATE",
            )
            .bind(&workspaces)
            .bind(&month)
            .fetch_all(&mut *tx)
            .await?;
            used = rows.into_iter().map(|(w, n)| (w, n.max(0) as u64)).collect();
        }
        let caps = crate::quota::capped(batch, &outcomes);
        if !caps.is_empty() {
            let used: Vec<u64> = caps.iter().map(|(ws, _)| used.get(*ws).copied().unwrap_or(0)).collect();
            crate::quota::refuse_over_cap(batch, &mut outcomes, &caps, &used);
            for n in crate::quota::notifications(batch, &outcomes, &caps, &used, &month, now) {
                PostgresStore::add_notification(&mut tx, &n).await?;
            }
            // A refused event's idempotency key was claimed above: let it go, so a retry next month counts.
            let (mut ws, mut keys, mut ids) = (Vec::new(), Vec::new(), Vec::new());
            for (new, outcome) in batch.iter().zip(&outcomes) {
                if let (IngestOutcome::OverQuota, Some(key)) = (outcome, new.idempotency_key.as_deref()) {
                    ws.push(new.event.workspace_id.as_str());
                    keys.push(key);
                    ids.push(new.event.id.as_str());
                }
            }
            if !ids.is_empty() {
                sqlx::query(
                    "DELETE FROM idempotency_keys k USING UNNEST($1::text[], $2::text[], $3::text[]) AS t(w, k2, e)
                     WHERE k.workspace_id = t.w AND k.key = t.k2 AND k.event_id = t.e",
                )
                .bind(&ws)
                .bind(&keys)
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
            }
        }
        let created: Vec<&NewEvent> =
            batch.iter().zip(&outcomes).filter(|(_, o)| matches!(o, IngestOutcome::Created)).map(|(n, _)| n).collect();
        insert_events(&mut tx, &created).await?;
        if insert_deliveries(&mut tx, &created, now).await? > 0 {
            notify_due(&mut tx).await?;
        }
        // Usage, counted with what it counts; last, so its rows are held only until the commit.
        let stored = crate::quota::stored_per_workspace(batch, &outcomes);
        if !stored.is_empty() {
            let mut ws = Vec::with_capacity(stored.len());
            let (mut events, mut deliveries) = (Vec::with_capacity(stored.len()), Vec::with_capacity(stored.len()));
            for (w, n, d) in stored {
                ws.push(w);
                events.push(n);
                deliveries.push(d);
            }
            let day = switchyard_core::limits::day_of(now);
            sqlx::query(
                "INSERT INTO usage_months (workspace_id, month, events) SELECT w, $3, n FROM UNNEST($1::text[], $2::bigint[]) AS t(w, n)
                 ON CONFLICT (workspace_id, month) DO UPDATE SET events = usage_months.events + EXCLUDED.events",
            )
            .bind(&ws)
            .bind(&events)
            .bind(&month)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO usage_days (workspace_id, day, events, deliveries)
                 SELECT w, $4, n, d FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS t(w, n, d)
                 ON CONFLICT (workspace_id, day) DO UPDATE
                 SET events = usage_days.events + EXCLUDED.events, deliveries = usage_days.deliveries + EXCLUDED.deliveries",
            )
            .bind(&ws)
            .bind(&events)
            .bind(&deliveries)
            .bind(&day)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn prune_history(&self, before: Millis, limit: u32, ws: Option<&WorkspaceId>) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        // Two statements rather than one with an optional filter, so each keeps its own plan (by
        // id alone, or by the workspace's index).
        let sql = if ws.is_some() {
            "SELECT id FROM events e WHERE workspace_id = $3 AND id < $1 AND NOT EXISTS (
                SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status IN ('pending', 'delivering', 'retrying'))
             ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"
        } else {
            "SELECT id FROM events e WHERE id < $1 AND CAST($3 AS TEXT) IS NULL AND NOT EXISTS (
                SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status IN ('pending', 'delivering', 'retrying'))
             ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"
        };
        let ids: Vec<String> = sqlx::query_scalar(sql)
            .bind(crate::event_id_floor(before))
            .bind(limit as i64)
            .bind(ws.map(|w| w.as_str()))
            .fetch_all(&mut *tx)
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        for statement in [
            "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ANY($1))",
            "DELETE FROM deliveries WHERE event_id = ANY($1)",
            "DELETE FROM events WHERE id = ANY($1)",
        ] {
            sqlx::query(statement).bind(&ids).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    async fn expire_idempotency_keys(&self, now: Millis) -> Result<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1").bind(now).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }
}

async fn insert_events(tx: &mut Transaction<'_, Postgres>, events: &[&NewEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let e = |f: fn(&Event) -> Option<&str>| events.iter().map(|n| f(&n.event)).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO events (id, workspace_id, event, resource, resource_id, payload, occurred_at, received_at, status, test)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::text[], $10::bool[])",
    )
    .bind(e(|e| Some(e.id.as_str())))
    .bind(e(|e| Some(e.workspace_id.as_str())))
    .bind(e(|e| Some(e.event.as_str())))
    .bind(e(|e| e.resource.as_deref()))
    .bind(e(|e| e.resource_id.as_deref()))
    .bind(e(|e| Some(e.payload.as_str())))
    .bind(events.iter().map(|n| n.event.occurred_at).collect::<Vec<_>>())
    .bind(events.iter().map(|n| n.event.received_at).collect::<Vec<_>>())
    .bind(e(|e| Some(e.status.as_str())))
    .bind(events.iter().map(|n| n.event.test).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts the deliveries of the created events; returns how many.
async fn insert_deliveries(tx: &mut Transaction<'_, Postgres>, events: &[&NewEvent], now: Millis) -> Result<usize> {
    let (mut ids, mut ws, mut evs, mut rules, mut conns) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut owners, mut expiries): (Vec<Option<&str>>, Vec<Option<Millis>>) = (Vec::new(), Vec::new());
    for n in events {
        for d in &n.deliveries {
            ids.push(d.id.as_str());
            ws.push(n.event.workspace_id.as_str());
            evs.push(n.event.id.as_str());
            rules.push(d.rule_id.as_str());
            conns.push(d.connection_id.as_str());
            owners.push(d.lease.as_ref().map(|l| &*l.owner));
            expiries.push(d.lease.as_ref().map(|l| l.expires_at));
        }
    }
    if ids.is_empty() {
        return Ok(0);
    }
    sqlx::query(
        "INSERT INTO deliveries (id, workspace_id, event_id, rule_id, connection_id, status, next_attempt_at, created_at, updated_at,
                                 lease_owner, lease_expires_at)
         SELECT i, w, e, r, c, CASE WHEN o IS NULL THEN 'pending' ELSE 'delivering' END, $6, $6, $6, o, x
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $7::text[], $8::bigint[]) AS t(i, w, e, r, c, o, x)",
    )
    .bind(&ids)
    .bind(&ws)
    .bind(&evs)
    .bind(&rules)
    .bind(&conns)
    .bind(now)
    .bind(&owners)
    .bind(&expiries)
    .execute(&mut **tx)
    .await?;
    // Leases taken here count against their connections' caps, as a claim's do.
    let leased: Vec<&str> = conns.iter().zip(&owners).filter(|(_, o)| o.is_some()).map(|(c, _)| *c).collect();
    if !leased.is_empty() {
        sqlx::query(
            "UPDATE connections c SET in_flight = c.in_flight + x.n
             FROM (SELECT id, COUNT(*) AS n FROM UNNEST($1::text[]) AS t(id) GROUP BY id) x WHERE c.id = x.id",
        )
        .bind(&leased)
        .execute(&mut **tx)
        .await?;
    }
    Ok(ids.len())
}

/// Recomputes the rollup of many events in one statement, writing only those that changed.
pub(crate) async fn refresh_event_statuses(tx: &mut Transaction<'_, Postgres>, event_ids: &[&str]) -> Result<()> {
    if event_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE events e SET status = s.status
         FROM (SELECT event_id, CASE
                   WHEN COUNT(*) FILTER (WHERE status = 'dead') > 0 THEN 'failed'
                   WHEN COUNT(*) FILTER (WHERE status IN ('succeeded', 'cancelled')) = COUNT(*) THEN 'completed'
                   WHEN SUM(attempt_count) > 0 OR COUNT(*) FILTER (WHERE status = 'delivering') > 0 THEN 'processing'
                   ELSE 'pending' END AS status
               FROM deliveries WHERE event_id = ANY($1) GROUP BY event_id) s
         -- `e.id = ANY($1)` too: without it the planner may hash-join a scan of every event.
         WHERE e.id = ANY($1) AND e.id = s.event_id AND e.status IS DISTINCT FROM s.status",
    )
    .bind(event_ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Recomputes an event's rollup from its deliveries (see the SQLite store for the rules).
pub(crate) async fn refresh_event_status(tx: &mut Transaction<'_, Postgres>, event_id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE events SET status = (
            SELECT CASE
                WHEN COUNT(*) = 0 THEN 'completed'
                WHEN COUNT(*) FILTER (WHERE status = 'dead') > 0 THEN 'failed'
                WHEN COUNT(*) FILTER (WHERE status IN ('succeeded', 'cancelled')) = COUNT(*) THEN 'completed'
                WHEN SUM(attempt_count) > 0 OR COUNT(*) FILTER (WHERE status = 'delivering') > 0 THEN 'processing'
                ELSE 'pending' END
            FROM deliveries WHERE event_id = $1)
         WHERE id = $1",
    )
    .bind(event_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
