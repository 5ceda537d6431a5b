//! Deliveries on PostgreSQL: the due queue shared by every node.

use super::{events::refresh_event_statuses, PostgresStore};
use crate::rows;
use crate::{AttemptRecord, Claimed, DeliveryStore, NextStep, NodeShare, Result};
use async_trait::async_trait;
use sqlx::Postgres;
use sqlx::Row as _;
use std::collections::BTreeSet;
use switchyard_core::ids::DeliveryId;
use switchyard_core::Millis;

/// The claim, in one statement (one round trip, its own transaction):
/// - `locked`: the connections with due work and free slots that no other node is claiming from
///   right now (and that are neither paused nor disabled, that no destination holds, and whose
///   next paced start is within the horizon), locked until the statement commits. Holding these
///   locks is what makes in-flight caps, rate limits and circuits hold across nodes: each
///   connection's leases taken (`in_flight`), `next_start_at` and circuit are read from the row
///   as locked (its latest version, should a claim have committed since this statement began)
///   and moved under the lock. The LATERAL probe is one index seek per connection.
/// - In flight is the leases taken, less those freed (`connection_frees`: see [`free_slots`]),
///   less this node's answered leases ($10) still leased, of which at most `max_in_flight` count
///   (a connection has at most twice its cap leased, and never more than its cap in flight). The
///   freed counts and the answered leases are read in the same snapshot, and a record commits
///   its deliveries' new status and their freed count together, so each answer is subtracted
///   once, either there or here. Freed counts only grow: a stale one overstates what is in flight.
/// - Then the same fair pick as the embedded store (see `sqlite/deliveries.rs`) over the locked
///   connections; the claimed deliveries are added to their connections' leases taken, a
///   rate-limited connection's starts are spaced one interval apart from its next free start (or
///   now) in claim order, and an open circuit that sent its one probe is half open.
/// - Its commit does not wait to reach disk (see [`begin_relaxed`]): `relaxed` sets that for this
///   statement's own transaction, before anything is written.
const CLAIM_SQL: &str = "
WITH answered AS (
    -- By primary key only: the status is a filter, not a condition the planner may take to the
    -- partial index of leases, which holds every dead lease until vacuum (a scan of it took 2 ms).
    SELECT y.connection_id, COUNT(*) FILTER (WHERE y.status = 'delivering') AS n FROM deliveries y
    WHERE y.id = ANY($10)
    GROUP BY y.connection_id
),
locked AS (
    SELECT c.id, c.timeout_ms, c.next_start_at, c.rate_limit_per_minute, c.circuit_state,
           CASE WHEN c.circuit_state = 'closed' THEN c.max_in_flight ELSE 1 END
               - GREATEST(c.in_flight - COALESCE(f.freed, 0) - LEAST(COALESCE(a.n, 0), c.max_in_flight), 0) AS free
    FROM (SELECT set_config('synchronous_commit', 'off', true)) relaxed, connections c
    CROSS JOIN LATERAL (
        SELECT 1 FROM deliveries x
        WHERE x.connection_id = c.id AND x.status IN ('pending', 'retrying') AND x.next_attempt_at <= $2
        ORDER BY x.next_attempt_at LIMIT 1) due
    LEFT JOIN connection_frees f ON f.connection_id = c.id
    LEFT JOIN answered a ON a.connection_id = c.id
    WHERE c.status = 'active' AND c.inactive_reason IS NULL
      AND NOT (c.workspace_id = ANY($5))
      AND c.held_until <= $2 AND c.next_start_at <= $2 + $9
      -- An open circuit, until its cooldown ends; then (half open) one probe at a time.
      AND (c.circuit_state = 'closed' OR c.circuit_retry_at <= $2)
      AND c.in_flight - COALESCE(f.freed, 0) - LEAST(COALESCE(a.n, 0), c.max_in_flight)
          < CASE WHEN c.circuit_state = 'closed' THEN c.max_in_flight ELSE 1 END
    FOR NO KEY UPDATE OF c SKIP LOCKED
),
due AS (
    SELECT d.id, d.workspace_id, d.connection_id, d.next_attempt_at,
           ROW_NUMBER() OVER (PARTITION BY d.connection_id ORDER BY d.next_attempt_at, d.id) AS conn_rank
    FROM locked c
    -- No more of a connection's backlog than its free slots.
    CROSS JOIN LATERAL (
        SELECT x.id, x.workspace_id, x.connection_id, x.next_attempt_at FROM deliveries x
        WHERE x.connection_id = c.id AND x.status IN ('pending', 'retrying') AND x.next_attempt_at <= $2
        ORDER BY x.next_attempt_at LIMIT LEAST($4, c.free)) d
),
allowed AS (
    SELECT due.id, due.workspace_id, due.next_attempt_at,
           ROW_NUMBER() OVER (PARTITION BY due.workspace_id ORDER BY due.conn_rank, due.next_attempt_at) AS ws_rank
    FROM due
    JOIN locked c ON c.id = due.connection_id
    WHERE COALESCE(c.rate_limit_per_minute, 0) <= 0
       OR due.conn_rank <= FLOOR(($2 + $9 - GREATEST(c.next_start_at, $2)) * c.rate_limit_per_minute / 60000.0) + 1
),
picked AS (
    SELECT id FROM allowed
    WHERE ws_rank <= COALESCE((SELECT r.room FROM UNNEST($7::text[], $8::bigint[]) AS r(ws, room) WHERE r.ws = allowed.workspace_id), $6)
    ORDER BY ws_rank, next_attempt_at LIMIT $4
),
claimed AS (
    UPDATE deliveries d
    SET status = 'delivering', lease_owner = $1, updated_at = $2, lease_expires_at = $2 + $3 + c.timeout_ms
    FROM picked, locked c
    WHERE d.id = picked.id AND c.id = d.connection_id AND d.status IN ('pending', 'retrying')
    RETURNING d.*
),
counted AS (
    SELECT connection_id, COUNT(*) AS n FROM claimed GROUP BY connection_id
),
moved AS (
    UPDATE connections c
    SET in_flight = c.in_flight + x.n,
        next_start_at = CASE WHEN COALESCE(l.rate_limit_per_minute, 0) > 0
                             THEN GREATEST(l.next_start_at, $2) + x.n * 60000.0::float8 / l.rate_limit_per_minute
                             ELSE c.next_start_at END,
        circuit_state = CASE WHEN c.circuit_state = 'open' THEN 'half_open' ELSE c.circuit_state END,
        circuit_since = CASE WHEN c.circuit_state = 'open' THEN $2 ELSE c.circuit_since END,
        circuit_successes = CASE WHEN c.circuit_state = 'open' THEN 0 ELSE c.circuit_successes END
    FROM counted x, locked l
    WHERE c.id = x.connection_id AND l.id = x.connection_id
)
SELECT d.*,
       CASE WHEN COALESCE(l.rate_limit_per_minute, 0) > 0
            THEN CEIL(GREATEST(l.next_start_at, $2)
                      + (ROW_NUMBER() OVER (PARTITION BY d.connection_id ORDER BY d.next_attempt_at, d.id) - 1)
                        * 60000.0::float8 / l.rate_limit_per_minute) END AS paced_start,
       CASE WHEN COALESCE(l.rate_limit_per_minute, 0) > 0
            THEN CEIL(GREATEST(l.next_start_at, $2) + x.n * 60000.0::float8 / l.rate_limit_per_minute) END AS paced_next,
       l.circuit_state <> 'closed' AS probe
FROM claimed d JOIN locked l ON l.id = d.connection_id JOIN counted x ON x.connection_id = d.connection_id";

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
),
-- Each moved delivery frees its connection's slot (see `free_slots`).
freed AS (
    INSERT INTO connection_frees (connection_id, freed)
    SELECT connection_id, COUNT(*) FROM moved GROUP BY connection_id ORDER BY connection_id
    ON CONFLICT (connection_id) DO UPDATE SET freed = connection_frees.freed + EXCLUDED.freed
),
-- A connection's health: `failing_since` is cleared by a success, and set by failures when it was
-- not set. Only a connection whose health changes is written (and waits for a claim's lock on
-- it): in the steady state, none.
health AS (
    UPDATE connections c SET failing_since = CASE WHEN x.ok THEN NULL ELSE $11 END
    FROM (SELECT connection_id, bool_or(status = 'succeeded') AS ok FROM moved GROUP BY connection_id) x
    WHERE c.id = x.connection_id AND ((x.ok AND c.failing_since IS NOT NULL) OR (NOT x.ok AND c.failing_since IS NULL))
)
SELECT event_id, status, id FROM moved";

/// Begins a transaction whose commit does not wait to reach disk, in one round trip. Claims and
/// attempt records commit this way: losing one in a crash is harmless (a lost claim leaves the
/// delivery due, a lost record leaves it leased until the lease expires and it is attempted again:
/// at least once, as ever). Ingest never does this: its commit is what a 202 promises.
async fn begin_relaxed(pool: &sqlx::PgPool) -> Result<sqlx::Transaction<'static, Postgres>> {
    Ok(pool.begin_with("BEGIN; SET LOCAL synchronous_commit = off").await?)
}

/// Frees the slots of deliveries that left 'delivering' in this transaction (one connection id per
/// delivery): adds them to their connections' `connection_frees`, never to the row a claim locks,
/// so a record does not wait for a claim nor a claim skip a connection being recorded. The rows
/// are written in id order, so two nodes freeing at once never wait on each other in a cycle.
/// (The attempt record does the same in `RECORD_SQL`.)
pub(super) async fn free_slots<'a>(tx: &mut sqlx::Transaction<'_, Postgres>, connections: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut counts: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for c in connections {
        *counts.entry(c).or_default() += 1;
    }
    if counts.is_empty() {
        return Ok(());
    }
    let (ids, ns): (Vec<&str>, Vec<i64>) = counts.into_iter().unzip();
    sqlx::query(
        "INSERT INTO connection_frees (connection_id, freed)
         SELECT x.id, x.n FROM UNNEST($1::text[], $2::bigint[]) AS x(id, n) JOIN connections c ON c.id = x.id ORDER BY x.id
         ON CONFLICT (connection_id) DO UPDATE SET freed = connection_frees.freed + EXCLUDED.freed",
    )
    .bind(&ids)
    .bind(&ns)
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
        let rows = sqlx::query(CLAIM_SQL)
            .bind(owner)
            .bind(now)
            .bind(lease_margin_ms)
            .bind(limit as i64)
            .bind(&full)
            .bind(share.per_workspace as i64)
            .bind(&room_ws)
            .bind(&room)
            .bind(share.pace_horizon_ms)
            .bind(&answered_ids)
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut deliveries = Vec::with_capacity(rows.len());
        let mut starts = Vec::with_capacity(rows.len());
        let mut probed: Vec<String> = Vec::new();
        for row in &rows {
            let delivery = rows::delivery(row)?;
            let start: Option<f64> = row.try_get("paced_start")?;
            let next: Option<f64> = row.try_get("paced_next")?;
            starts.push((start.map_or(now, |s| s as Millis), next.map(|n| n as Millis)));
            if row.try_get::<bool, _>("probe")? {
                probed.push(delivery.connection_id.as_str().to_owned());
            }
            deliveries.push(delivery);
        }
        let probed: Vec<&str> = probed.iter().map(String::as_str).collect();
        // The events are read after the claim, outside it: the claim holds its connections
        // locked (and other nodes' claims skip them) for one statement only, and an event does
        // not change once stored.
        let event_ids: Vec<&str> = deliveries.iter().map(|d| d.event_id.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
        let events = match sqlx::query("SELECT * FROM events WHERE id = ANY($1)").bind(&event_ids).fetch_all(&self.pool).await {
            Ok(rows) => rows.iter().map(rows::event).collect::<Result<Vec<_>>>(),
            Err(e) => Err(e.into()),
        };
        match events {
            Ok(events) => crate::assemble_claims(deliveries, events, starts, &probed),
            Err(e) => {
                // Hand the leases back rather than leave them to expire.
                let ids: Vec<DeliveryId> = deliveries.into_iter().map(|d| d.id).collect();
                if let Err(release) = crate::QueueStore::release(self, owner, &ids, now).await {
                    tracing::warn!(error = %release, "could not hand back a claim whose events could not be read; its leases expire");
                }
                Err(e)
            }
        }
    }

    async fn record_attempts(&self, owner: &str, records: &[AttemptRecord], now: Millis) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut input = AttemptColumns::default();
        for r in records {
            input.push(r);
        }
        let mut tx = begin_relaxed(&self.pool).await?;
        // One statement for the whole batch: move each delivery on (only where this node still
        // holds the lease), record its attempt, free its slot, and name the events whose rollup
        // may change.
        let moved: Vec<(String, String, String)> = sqlx::query_as(RECORD_SQL)
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
        let events: Vec<&str> = moved.iter().map(|(e, _, _)| e.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
        refresh_event_statuses(&mut tx, &events).await?;
        let dead: Vec<&str> = moved.iter().filter(|(_, status, _)| status == "dead").map(|(_, _, id)| id.as_str()).collect();
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
