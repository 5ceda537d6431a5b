//! Deliveries on PostgreSQL: the due queue shared by every node.

use super::{events::refresh_event_statuses, PostgresStore};
use crate::rows;
use crate::{AttemptRecord, Claimed, DeliveryStore, NextStep, NodeShare, Result};
use async_trait::async_trait;
use sqlx::Postgres;
use std::collections::{BTreeSet, HashMap};
use switchyard_core::model::*;
use switchyard_core::Millis;

/// Locks the connections with due work and free slots that no other node is claiming from right
/// now (and that are neither paused nor disabled, that no destination holds, and whose next paced
/// start is within the horizon).
/// Holding these locks until commit is what makes in-flight caps and rate limits hold across
/// nodes: each connection's `in_flight` counter and `next_start_at` are read, and moved by the
/// claim, under its lock. The LATERAL probe is one index seek per connection, whatever its backlog.
const LOCK_CONNECTIONS_SQL: &str = "
SELECT c.id, c.next_start_at, c.rate_limit_per_minute, c.circuit_state FROM connections c
CROSS JOIN LATERAL (
    SELECT 1 FROM deliveries x
    WHERE x.connection_id = c.id AND x.status IN ('pending', 'retrying') AND x.next_attempt_at <= $1
    ORDER BY x.next_attempt_at LIMIT 1) due
-- In flight: leased and not yet answered. $4, $5: the claiming node's answered leases per connection,
-- some of which may have been recorded already: this only picks the connections to look at; the
-- claim below counts exactly.
LEFT JOIN UNNEST($4::text[], $5::bigint[]) AS a(id, n) ON a.id = c.id
WHERE c.status = 'active' AND c.inactive_reason IS NULL AND c.in_flight - LEAST(COALESCE(a.n, 0), c.max_in_flight) < c.max_in_flight
  AND NOT (c.workspace_id = ANY($2))
  AND c.held_until <= $1 AND c.next_start_at <= $1 + $3
  AND (c.circuit_state = 'closed' OR (c.circuit_retry_at <= $1 AND c.in_flight - LEAST(COALESCE(a.n, 0), c.max_in_flight) <= 0))
FOR NO KEY UPDATE OF c SKIP LOCKED";

/// The same fair pick as the embedded store (see `sqlite/deliveries.rs`), over the locked
/// connections; the claimed deliveries are added to their connections' `in_flight`.
const CLAIM_SQL: &str = "
-- Slots taken: leases, less those the claiming node has answered ($10, counted once per connection),
-- of which at most max_in_flight count: a connection has at most twice its cap leased, and never
-- more than its cap in flight. Under the connections' locks no record can lower `in_flight`
-- meanwhile, so each answer is subtracted once.
WITH answered AS (
    SELECT y.connection_id, COUNT(*) AS n FROM deliveries y
    WHERE y.id = ANY($10) AND y.connection_id = ANY($5) AND y.status = 'delivering'
    GROUP BY y.connection_id
),
due AS (
    SELECT d.id, d.workspace_id, d.connection_id, d.next_attempt_at,
           ROW_NUMBER() OVER (PARTITION BY d.connection_id ORDER BY d.next_attempt_at, d.id) AS conn_rank
    FROM connections c
    -- No more of a connection's backlog than it could take: its cap, or one probe.
    CROSS JOIN LATERAL (
        SELECT x.id, x.workspace_id, x.connection_id, x.next_attempt_at FROM deliveries x
        WHERE x.connection_id = c.id AND x.status IN ('pending', 'retrying') AND x.next_attempt_at <= $2
        ORDER BY x.next_attempt_at LIMIT LEAST($4, CASE WHEN c.circuit_state = 'closed' THEN c.max_in_flight ELSE 1 END)) d
    WHERE c.id = ANY($5)
),
allowed AS (
    SELECT due.id, due.workspace_id, due.next_attempt_at,
           ROW_NUMBER() OVER (PARTITION BY due.workspace_id ORDER BY due.conn_rank, due.next_attempt_at) AS ws_rank
    FROM due
    JOIN connections c ON c.id = due.connection_id
    LEFT JOIN answered a ON a.connection_id = c.id
    WHERE due.conn_rank + GREATEST(c.in_flight - LEAST(COALESCE(a.n, 0), c.max_in_flight), 0) <= CASE WHEN c.circuit_state = 'closed' THEN c.max_in_flight ELSE 1 END
      AND (COALESCE(c.rate_limit_per_minute, 0) <= 0
           OR due.conn_rank <= FLOOR(($2 + $9 - GREATEST(c.next_start_at, $2)) * c.rate_limit_per_minute / 60000.0) + 1)
),
picked AS (
    SELECT id FROM allowed
    WHERE ws_rank <= COALESCE((SELECT r.room FROM UNNEST($7::text[], $8::bigint[]) AS r(ws, room) WHERE r.ws = allowed.workspace_id), $6)
    ORDER BY ws_rank, next_attempt_at LIMIT $4),
claimed AS (
    UPDATE deliveries d
    SET status = 'delivering', lease_owner = $1, updated_at = $2, lease_expires_at = $2 + $3 + c.timeout_ms
    FROM picked, connections c
    WHERE d.id = picked.id AND c.id = d.connection_id AND d.status IN ('pending', 'retrying')
    RETURNING d.*
),
counted AS (
    UPDATE connections c SET in_flight = c.in_flight + x.n
    FROM (SELECT connection_id, COUNT(*) AS n FROM claimed GROUP BY connection_id) x
    WHERE c.id = x.connection_id
)
SELECT * FROM claimed";

const RECORD_SQL: &str = "
WITH input AS (
    SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[],
                         $8::bigint[], $9::text[], $10::text[], $13::text[])
        AS t(id, number, status, next_at, last_error, started_at, duration_ms, status_code, error, excerpt, request)
),
moved AS (
    UPDATE deliveries d
    -- A cancel asked for while the attempt ran: it ends the delivery instead of a retry.
    SET status = CASE WHEN d.cancelled_at IS NOT NULL AND i.status = 'retrying' THEN 'cancelled' ELSE i.status END,
        attempt_count = GREATEST(d.attempt_count, i.number),
        next_attempt_at = CASE WHEN d.cancelled_at IS NOT NULL THEN NULL ELSE i.next_at END,
        last_error = i.last_error, lease_owner = NULL, lease_expires_at = NULL, lease_recoveries = 0, updated_at = $11
    FROM input i
    WHERE d.id = i.id AND d.status = 'delivering' AND d.lease_owner = $12
    RETURNING d.id, d.workspace_id, d.event_id, d.connection_id, d.status
),
recorded AS (
    INSERT INTO attempts (delivery_id, number, workspace_id, started_at, duration_ms, status_code, error, response_excerpt,
                          request_excerpt)
    SELECT i.id, i.number, m.workspace_id, i.started_at, i.duration_ms, i.status_code, i.error, i.excerpt, i.request
    FROM moved m JOIN input i ON i.id = m.id
    ON CONFLICT DO NOTHING
),
finished AS (
    INSERT INTO usage_days (workspace_id, day, succeeded, dead)
    SELECT m.workspace_id, $14, COUNT(*) FILTER (WHERE i.status = 'succeeded'), COUNT(*) FILTER (WHERE i.status = 'dead')
    FROM moved m JOIN input i ON i.id = m.id
    WHERE i.status IN ('succeeded', 'dead')
    GROUP BY m.workspace_id ORDER BY m.workspace_id
    ON CONFLICT (workspace_id, day) DO UPDATE
    SET succeeded = usage_days.succeeded + EXCLUDED.succeeded, dead = usage_days.dead + EXCLUDED.dead
)
SELECT event_id, connection_id, status, id FROM moved";

/// Claims and attempt records do not wait for their commit to reach disk. Losing one in a crash
/// is harmless: a lost claim leaves the delivery due, a lost record leaves it leased until the
/// lease expires and it is attempted again (at least once, as ever). Ingest never does this: its
/// commit is what a 202 promises.
async fn relaxed_commit(tx: &mut sqlx::Transaction<'_, Postgres>) -> Result<()> {
    sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut **tx).await?;
    Ok(())
}

/// Lowers the `in_flight` counters of the connections of deliveries that left 'delivering' in
/// this transaction (one id per delivery). The rows are locked in id order first, so two nodes
/// recording at once never wait on each other in a cycle.
pub(super) async fn free_slots<'a>(tx: &mut sqlx::Transaction<'_, Postgres>, connections: impl Iterator<Item = &'a str>) -> Result<()> {
    free_slots_and_track(tx, connections.map(|c| (c, None)), 0).await
}

/// [`free_slots`], and each connection's health from the attempts that freed them (`Some(true)`
/// when one succeeded): `failing_since` is cleared by a success, and set at `now` by failures
/// when it was not set.
async fn free_slots_and_track<'a>(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    freed: impl Iterator<Item = (&'a str, Option<bool>)>,
    now: Millis,
) -> Result<()> {
    let mut counts: std::collections::BTreeMap<&str, (i64, Option<bool>)> = std::collections::BTreeMap::new();
    for (c, succeeded) in freed {
        let entry = counts.entry(c).or_insert((0, None));
        entry.0 += 1;
        if let Some(ok) = succeeded {
            entry.1 = Some(entry.1.unwrap_or(false) || ok);
        }
    }
    if counts.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(counts.len());
    let (mut ns, mut oks) = (Vec::with_capacity(counts.len()), Vec::with_capacity(counts.len()));
    for (id, (n, ok)) in counts {
        ids.push(id);
        ns.push(n);
        oks.push(ok);
    }
    sqlx::query("SELECT 1 FROM connections WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE").bind(&ids).execute(&mut **tx).await?;
    sqlx::query(
        "UPDATE connections c SET in_flight = GREATEST(c.in_flight - x.n, 0),
             failing_since = CASE WHEN x.ok IS NULL THEN c.failing_since WHEN x.ok THEN NULL ELSE COALESCE(c.failing_since, $4) END
         FROM UNNEST($1::text[], $2::bigint[], $3::bool[]) AS x(id, n, ok) WHERE c.id = x.id",
    )
    .bind(&ids)
    .bind(&ns)
    .bind(&oks)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl DeliveryStore for PostgresStore {
    async fn claim_due_shared(
        &self,
        owner: &str,
        now: Millis,
        limit: u32,
        lease_margin_ms: i64,
        share: &NodeShare,
    ) -> Result<Vec<Claimed>> {
        let full = share.full();
        let (room_ws, room): (Vec<&str>, Vec<i64>) = share.room.iter().map(|(w, r)| (w.as_str(), *r as i64)).unzip();
        let answered_ids: Vec<&str> = share.answered.iter().map(|(_, d)| d.as_str()).collect();
        let mut per_connection: HashMap<&str, i64> = HashMap::new();
        for (c, _) in &share.answered {
            *per_connection.entry(c.as_str()).or_default() += 1;
        }
        let (answered, answered_n): (Vec<&str>, Vec<i64>) = per_connection.into_iter().unzip();
        let mut tx = self.pool.begin().await?;
        relaxed_commit(&mut tx).await?;
        let locked: Vec<(String, f64, Option<i64>, String)> = sqlx::query_as(LOCK_CONNECTIONS_SQL)
            .bind(now)
            .bind(&full)
            .bind(share.pace_horizon_ms)
            .bind(&answered)
            .bind(&answered_n)
            .fetch_all(&mut *tx)
            .await?;
        if locked.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let connections: Vec<&str> = locked.iter().map(|(id, _, _, _)| id.as_str()).collect();
        let paces: HashMap<String, (f64, u32)> = locked
            .iter()
            .filter_map(|(id, next, rate, _)| rate.filter(|r| *r > 0).map(|r| (id.clone(), (*next, r.min(u32::MAX as i64) as u32))))
            .collect();
        let rows = sqlx::query(CLAIM_SQL)
            .bind(owner)
            .bind(now)
            .bind(lease_margin_ms)
            .bind(limit as i64)
            .bind(&connections)
            .bind(share.per_workspace as i64)
            .bind(&room_ws)
            .bind(&room)
            .bind(share.pace_horizon_ms)
            .bind(&answered_ids)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            // End the transaction now: dropped, it would keep the connections' row locks until
            // its pool connection is next used, and every claim meanwhile would skip them.
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let deliveries = rows.iter().map(rows::delivery).collect::<Result<Vec<_>>>()?;
        let event_ids: Vec<&str> = deliveries.iter().map(|d| d.event_id.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
        let event_rows = sqlx::query("SELECT * FROM events WHERE id = ANY($1)").bind(&event_ids).fetch_all(&mut *tx).await?;
        let mut events: HashMap<String, std::sync::Arc<Event>> = HashMap::with_capacity(event_rows.len());
        for row in &event_rows {
            let e = rows::event(row)?;
            events.insert(e.id.as_str().to_owned(), std::sync::Arc::new(e));
        }
        let mut claimed = deliveries
            .into_iter()
            .map(|delivery| match events.get(delivery.event_id.as_str()) {
                Some(event) => Ok(Claimed { event: event.clone(), delivery, start_at: now, next_start_at: None, probe: false }),
                None => Err(crate::StoreError::Corrupt(format!("delivery {} has no event", delivery.id))),
            })
            .collect::<Result<Vec<_>>>()?;
        // A connection whose circuit was not closed sent its one probe: the circuit is half open.
        let probed: Vec<&str> = locked.iter().filter(|(_, _, _, state)| state != "closed").map(|(id, _, _, _)| id.as_str()).collect();
        if !probed.is_empty() {
            crate::mark_probes(&mut claimed, &probed);
            let probed: Vec<&str> =
                probed.into_iter().filter(|id| claimed.iter().any(|c| c.delivery.connection_id.as_str() == *id)).collect();
            sqlx::query("UPDATE connections SET circuit_state = 'half_open', circuit_since = $1, circuit_successes = 0 WHERE id = ANY($2) AND circuit_state = 'open'")
                .bind(now)
                .bind(&probed)
                .execute(&mut *tx)
                .await?;
        }
        let next = crate::pace(&mut claimed, &paces, now);
        if !next.is_empty() {
            let (ids, starts): (Vec<String>, Vec<f64>) = next.into_iter().unzip();
            sqlx::query(
                "UPDATE connections c SET next_start_at = x.next FROM UNNEST($1::text[], $2::float8[]) AS x(id, next) WHERE c.id = x.id",
            )
            .bind(&ids)
            .bind(&starts)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn record_attempts(&self, owner: &str, records: &[AttemptRecord], now: Millis) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut input = AttemptColumns::default();
        for r in records {
            input.push(r);
        }
        let mut tx = self.pool.begin().await?;
        relaxed_commit(&mut tx).await?;
        // One statement for the whole batch: move each delivery on (only where this node still
        // holds the lease), record its attempt, and name the events whose rollup may change.
        let moved: Vec<(String, String, String, String)> = sqlx::query_as(RECORD_SQL)
            .bind(&input.ids)
            .bind(&input.numbers)
            .bind(&input.statuses)
            .bind(&input.next_at)
            .bind(&input.last_errors)
            .bind(&input.started_at)
            .bind(&input.durations)
            .bind(&input.codes)
            .bind(&input.errors)
            .bind(&input.excerpts)
            .bind(now)
            .bind(owner)
            .bind(&input.requests)
            .bind(switchyard_core::limits::day_of(now))
            .fetch_all(&mut *tx)
            .await?;
        let events: Vec<&str> = moved.iter().map(|(e, _, _, _)| e.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
        free_slots_and_track(&mut tx, moved.iter().map(|(_, c, status, _)| (c.as_str(), Some(status == "succeeded"))), now).await?;
        refresh_event_statuses(&mut tx, &events).await?;
        let dead: Vec<&str> = moved.iter().filter(|(_, _, status, _)| status == "dead").map(|(_, _, _, id)| id.as_str()).collect();
        if !dead.is_empty() {
            Self::notify_exhausted(&mut tx, &dead, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// A batch of attempt records as columns, for UNNEST.
#[derive(Default)]
struct AttemptColumns<'a> {
    ids: Vec<&'a str>,
    numbers: Vec<i64>,
    statuses: Vec<&'static str>,
    next_at: Vec<Option<i64>>,
    last_errors: Vec<Option<&'a str>>,
    started_at: Vec<i64>,
    durations: Vec<i64>,
    codes: Vec<Option<i64>>,
    errors: Vec<Option<&'a str>>,
    excerpts: Vec<Option<&'a str>>,
    requests: Vec<Option<&'a str>>,
}

impl<'a> AttemptColumns<'a> {
    fn push(&mut self, r: &'a AttemptRecord) {
        let a = &r.attempt;
        let (status, next_at) = r.next.moves_to();
        self.ids.push(a.delivery_id.as_str());
        self.numbers.push(a.number as i64);
        self.statuses.push(status.as_str());
        self.next_at.push(next_at);
        self.last_errors.push(if r.next == NextStep::Succeeded { None } else { a.error.as_deref() });
        self.started_at.push(a.started_at);
        self.durations.push(a.duration_ms as i64);
        self.codes.push(a.status_code.map(i64::from));
        self.errors.push(a.error.as_deref());
        self.excerpts.push(a.response_excerpt.as_deref());
        self.requests.push(a.request.as_deref());
    }
}
