//! Deliveries: the due queue (claim, lease, release, recovery), attempt records and replay.

use super::SqliteStore;
use crate::rows;
use crate::{AttemptRecord, Claimed, DeliveryStore, NextStep, NodeShare, Result};
use async_trait::async_trait;
use std::collections::{BTreeSet, HashMap};
use switchyard_core::Millis;

/// Picks due deliveries fairly. Per connection, only its oldest due rows are looked at (an index
/// seek on `deliveries_due`, so a huge backlog on one connection costs the others nothing), no
/// more than its free in-flight slots are taken, and the result interleaves workspaces: every
/// workspace's first candidate comes before any workspace's second.
const CLAIM_SQL: &str = "
UPDATE deliveries
SET status = 'delivering', lease_owner = ?1, updated_at = ?2,
    lease_expires_at = ?2 + ?3 + (
        SELECT c.timeout_ms * (1 + CASE WHEN c.circuit_state = 'closed' AND COALESCE(c.rate_limit_per_minute, 0) <= 0
                                        THEN COALESCE(json_extract(?10, '$.' || c.id), 0) ELSE 0 END)
        FROM connections c WHERE c.id = deliveries.connection_id)
WHERE id IN (
    -- Slots taken: leases, less those the claiming node has answered (?9), of which at most
    -- max_in_flight count: a connection has at most twice its cap leased, and never more than its
    -- cap in flight.
    WITH busy AS (
        SELECT l.connection_id,
               COUNT(*) - MIN(SUM(l.id IN (SELECT value FROM json_each(?9))), MAX(lc.max_in_flight)) AS n
        FROM deliveries l JOIN connections lc ON lc.id = l.connection_id
        WHERE l.status = 'delivering'
        GROUP BY l.connection_id
    ),
    due AS (
        SELECT d.id, d.workspace_id, d.connection_id, d.next_attempt_at,
               ROW_NUMBER() OVER (PARTITION BY d.connection_id ORDER BY d.next_attempt_at, d.id) AS conn_rank
        FROM connections c
        LEFT JOIN busy cb ON cb.connection_id = c.id
        -- Read no more of a connection's backlog than any connection could take: SQLite's LIMIT
        -- cannot name the connection's own cap, so the largest cap (times the lease ahead) bounds
        -- it. Reading up to the whole batch (256) from each connection cost four times the instructions.
        JOIN deliveries d ON d.id IN (
            SELECT x.id FROM deliveries x
            WHERE x.connection_id = c.id AND x.status IN ('pending', 'retrying') AND x.next_attempt_at <= ?2
            ORDER BY x.next_attempt_at
            LIMIT MIN(?4, COALESCE((SELECT MAX(m.max_in_flight * (1 + COALESCE(json_extract(?10, '$.' || m.id), 0)))
                                    FROM connections m WHERE m.status = 'active'), 0)))
        -- A connection at its cap, waiting to be reconnected, paused or disabled, or of a workspace
        -- at its share of this node, is skipped before any of its backlog is read.
        WHERE COALESCE(cb.n, 0) < c.max_in_flight * (1 + COALESCE(json_extract(?10, '$.' || c.id), 0))
          AND c.status = 'active' AND c.inactive_reason IS NULL
          AND c.workspace_id NOT IN (SELECT value FROM json_each(?6))
          AND c.held_until <= ?2 AND c.next_start_at <= ?2 + ?8
          -- An open circuit, until its cooldown ends; then (half open) one probe at a time.
          AND (c.circuit_state = 'closed' OR (c.circuit_retry_at <= ?2 AND COALESCE(cb.n, 0) = 0))
    ),
    allowed AS (
        SELECT due.id, due.workspace_id, due.next_attempt_at,
               ROW_NUMBER() OVER (PARTITION BY due.workspace_id ORDER BY due.conn_rank, due.next_attempt_at) AS ws_rank
        FROM due
        JOIN connections c ON c.id = due.connection_id
        LEFT JOIN busy b ON b.connection_id = due.connection_id
        -- Up to the cap, or (?10) a multiple of it leased ahead; one probe for a circuit not closed.
        WHERE due.conn_rank + COALESCE(b.n, 0) <= CASE
                WHEN c.circuit_state <> 'closed' THEN 1
                WHEN COALESCE(c.rate_limit_per_minute, 0) > 0 THEN c.max_in_flight
                ELSE c.max_in_flight * (1 + COALESCE(json_extract(?10, '$.' || c.id), 0)) END
          AND (COALESCE(c.rate_limit_per_minute, 0) <= 0
               OR due.conn_rank <= CAST((?2 + ?8 - MAX(c.next_start_at, ?2)) * c.rate_limit_per_minute / 60000.0 AS INTEGER) + 1)
    )
    SELECT id FROM allowed
    WHERE ws_rank <= COALESCE((SELECT r.value FROM json_each(?7) r WHERE r.key = allowed.workspace_id), ?5)
    ORDER BY ws_rank, next_attempt_at LIMIT ?4
)
RETURNING *";

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn claim_due_shared(
        &self,
        owner: &str,
        now: Millis,
        limit: u32,
        lease_margin_ms: i64,
        share: &NodeShare,
    ) -> Result<Vec<Claimed>> {
        claim_in(self.relaxed_tx().await?, owner, now, limit, lease_margin_ms, share).await
    }

    async fn record_attempts(&self, owner: &str, records: &[AttemptRecord], now: Millis) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        record_in(self.relaxed_tx().await?, owner, records, now).await
    }

    fn single_node(&self) -> bool {
        true
    }
}

/// The claim's first trip: the transaction's start and the claim.
static CLAIM_BEGIN_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| format!("{}; {CLAIM_SQL}", super::RELAXED_BEGIN));

/// The claim's second trip: the claimed deliveries' events, and the pacing and circuit state of
/// their connections that are rate-limited or whose circuit is not closed (`pace_connection`
/// tells these rows from the events').
const CLAIM_READS_SQL: &str = "SELECT * FROM events WHERE id IN (SELECT value FROM json_each(?));
    SELECT id AS pace_connection, next_start_at, COALESCE(rate_limit_per_minute, 0), circuit_state FROM connections
    WHERE id IN (SELECT value FROM json_each(?)) AND (rate_limit_per_minute > 0 OR circuit_state <> 'closed')";

/// The claim, in a transaction on `w` (see [`DeliveryStore::claim_due_shared`]): three trips to
/// SQLite when no connection is paced or probed.
async fn claim_in(
    mut w: super::RelaxedTx,
    owner: &str,
    now: Millis,
    limit: u32,
    lease_margin_ms: i64,
    share: &NodeShare,
) -> Result<Vec<Claimed>> {
    let room: serde_json::Map<String, serde_json::Value> =
        share.room.iter().map(|(w, r)| (w.as_str().to_owned(), serde_json::Value::from(*r))).collect();
    let answered: Vec<&str> = share.answered.iter().map(|(_, d)| d.as_str()).collect();
    let ahead: serde_json::Map<String, serde_json::Value> =
        share.ahead.iter().map(|(c, n)| (c.as_str().to_owned(), serde_json::Value::from(*n))).collect();
    let rows = sqlx::query(&CLAIM_BEGIN_SQL)
        .bind(owner)
        .bind(now)
        .bind(lease_margin_ms)
        .bind(limit)
        .bind(share.per_workspace as i64)
        .bind(serde_json::to_string(&share.full()).unwrap_or_default())
        .bind(serde_json::Value::Object(room).to_string())
        .bind(share.pace_horizon_ms)
        .bind(serde_json::to_string(&answered).unwrap_or_default())
        .bind(serde_json::Value::Object(ahead).to_string())
        .fetch_all(&mut *w)
        .await?;
    if rows.is_empty() {
        w.rollback().await?;
        return Ok(Vec::new());
    }
    let deliveries = rows.iter().map(rows::delivery).collect::<Result<Vec<_>>>()?;
    let event_ids: BTreeSet<&str> = deliveries.iter().map(|d| d.event_id.as_str()).collect();
    let connections: BTreeSet<&str> = deliveries.iter().map(|d| d.connection_id.as_str()).collect();
    let rows = sqlx::query(CLAIM_READS_SQL)
        .bind(serde_json::to_string(&event_ids).unwrap_or_default())
        .bind(serde_json::to_string(&connections).unwrap_or_default())
        .fetch_all(&mut *w)
        .await?;
    let (state_rows, event_rows): (Vec<_>, Vec<_>) = rows.iter().partition(|r| sqlx::Row::try_column(*r, "pace_connection").is_ok());
    let events = event_rows.into_iter().map(rows::event).collect::<Result<Vec<_>>>()?;
    let states = state_rows
        .into_iter()
        .map(|r| -> Result<(String, f64, i64, String)> {
            use sqlx::Row;
            Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))
        })
        .collect::<Result<Vec<_>>>()?;
    // Rate-limited connections: their starts are spaced, and their next free start moved on.
    // A connection whose circuit was not closed sent its one probe: the circuit is half open.
    let paces: HashMap<String, (f64, u32)> = states
        .iter()
        .filter(|(_, _, rate, _)| *rate > 0)
        .map(|(id, next, rate, _)| (id.clone(), (*next, (*rate).min(u32::MAX as i64) as u32)))
        .collect();
    let (starts, next) = crate::pace(&deliveries, &paces, now);
    for (id, next) in next {
        sqlx::query("UPDATE connections SET next_start_at = ? WHERE id = ?").bind(next).bind(id).execute(&mut *w).await?;
    }
    let probed: Vec<&str> = states.iter().filter(|(_, _, _, state)| state != "closed").map(|(id, _, _, _)| id.as_str()).collect();
    if !probed.is_empty() {
        sqlx::query(
            "UPDATE connections SET circuit_state = 'half_open', circuit_since = ?1, circuit_successes = 0
             WHERE id IN (SELECT value FROM json_each(?2)) AND circuit_state = 'open'",
        )
        .bind(now)
        .bind(serde_json::to_string(&probed).unwrap_or_default())
        .execute(&mut *w)
        .await?;
    }
    let claimed = crate::assemble_claims(deliveries, events, starts, &probed)?;
    sqlx::query(super::RELAXED_COMMIT).execute(&mut *w).await?;
    w.ended();
    Ok(claimed)
}

/// Connections, each with whether one of its attempts succeeded.
type Marked<'a> = Vec<(&'a str, bool)>;

/// Records per statement in [`record_in`]. Each statement has room for this many rows (unused
/// rows are bound to NULL and match nothing), so the same two prepared statements serve every
/// batch, and no record is re-parsed from JSON once per column.
const RECORD_CHUNK: usize = 32;

/// `(?, ?, …), (…), …`: `rows` rows of `columns` parameters each.
fn placeholders(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

/// Moves each delivery on where this node still holds the lease; a node presumed dead records
/// nothing. A cancel asked for while the attempt ran ends the delivery instead of a retry.
static RECORD_MOVE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH input (id, number, status, next_at, last_error) AS (VALUES {})
         UPDATE deliveries SET
             status = CASE WHEN deliveries.cancelled_at IS NOT NULL AND input.status = 'retrying' THEN 'cancelled' ELSE input.status END,
             attempt_count = MAX(deliveries.attempt_count, input.number),
             next_attempt_at = CASE WHEN deliveries.cancelled_at IS NOT NULL THEN NULL ELSE input.next_at END,
             last_error = input.last_error, lease_owner = NULL, lease_expires_at = NULL,
             lease_recoveries = 0, updated_at = ?
         FROM input
         WHERE deliveries.id = input.id AND deliveries.status = 'delivering' AND deliveries.lease_owner = ?
         RETURNING deliveries.id, deliveries.event_id, deliveries.workspace_id, deliveries.connection_id",
        placeholders(RECORD_CHUNK, 5)
    )
});

/// A record's first trip: the transaction's start and its first deliveries moved on.
static RECORD_BEGIN_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{}; {}", super::RELAXED_BEGIN, *RECORD_MOVE_SQL));

/// Records the attempts of the deliveries that moved.
static RECORD_ATTEMPTS_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO attempts (delivery_id, number, workspace_id, started_at, duration_ms, status_code, error, response_excerpt,
                               request_excerpt)
         SELECT * FROM (VALUES {}) WHERE column1 IS NOT NULL
         ON CONFLICT DO NOTHING",
        placeholders(RECORD_CHUNK, 9)
    )
});

/// The end of a record's transaction, after its attempts: the moved deliveries' events rolled up
/// (a JSON array of ids), the connections with an attempt that succeeded no longer failing (a JSON
/// array), those whose attempts all failed failing from now (the time, a JSON array), and the
/// finished deliveries counted on today's usage rows (the day, a JSON object of workspaces'
/// `[succeeded, dead]`). Each statement takes its lists as JSON, so the text does not change with
/// them: a record of up to [`RECORD_CHUNK`] attempts is always the same text, prepared once.
/// Parameters are bound in the order they appear across the statements, so none of them may be
/// numbered (`?1`), which would take a value by its position instead.
static RECORD_END_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{};
         UPDATE connections SET failing_since = NULL WHERE id IN (SELECT value FROM json_each(?)) AND failing_since IS NOT NULL;
         UPDATE connections SET failing_since = ? WHERE id IN (SELECT value FROM json_each(?)) AND failing_since IS NULL;
         INSERT INTO usage_days (workspace_id, day, succeeded, dead)
         SELECT key, ?, json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?) WHERE true
         ON CONFLICT (workspace_id, day) DO UPDATE SET succeeded = usage_days.succeeded + excluded.succeeded,
             dead = usage_days.dead + excluded.dead;
         {}",
        *super::events::REFRESH_SQL,
        super::RELAXED_COMMIT
    )
});

/// A record's second trip when it has up to [`RECORD_CHUNK`] attempts: them, then its end.
static RECORD_ONE_CHUNK_END_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{}; {}", *RECORD_ATTEMPTS_SQL, *RECORD_END_SQL));

/// The records, in a transaction on `w` (see [`DeliveryStore::record_attempts`]): two trips to
/// SQLite for up to [`RECORD_CHUNK`] records, none of whose deliveries died.
async fn record_in(mut w: super::RelaxedTx, owner: &str, records: &[AttemptRecord], now: Millis) -> Result<()> {
    let mut moved: Vec<(String, String, String, String)> = Vec::with_capacity(records.len());
    for (i, chunk) in records.chunks(RECORD_CHUNK).enumerate() {
        let mut query = sqlx::query_as(if i == 0 { RECORD_BEGIN_SQL.as_str() } else { RECORD_MOVE_SQL.as_str() });
        for r in chunk {
            let a = &r.attempt;
            let (status, next_at) = r.next.moves_to();
            let last_error = if r.next == NextStep::Succeeded { None } else { a.error.as_deref() };
            query = query.bind(a.delivery_id.as_str()).bind(a.number).bind(status.as_str()).bind(next_at).bind(last_error);
        }
        for _ in chunk.len()..RECORD_CHUNK {
            query = query.bind(None::<&str>).bind(None::<u32>).bind(None::<&str>).bind(None::<i64>).bind(None::<&str>);
        }
        moved.extend(query.bind(now).bind(owner).fetch_all(&mut *w).await?);
    }
    if moved.is_empty() {
        return w.rollback().await;
    }
    let outcome: HashMap<&str, NextStep> = records.iter().map(|r| (r.attempt.delivery_id.as_str(), r.next)).collect();
    let dead: Vec<&str> =
        moved.iter().filter(|(id, _, _, _)| outcome.get(id.as_str()) == Some(&NextStep::Dead)).map(|(id, _, _, _)| id.as_str()).collect();
    if !dead.is_empty() {
        SqliteStore::notify_exhausted(&mut w, &dead, now).await?;
    }
    let workspaces: HashMap<&str, &str> = moved.iter().map(|(id, _, ws, _)| (id.as_str(), ws.as_str())).collect();
    let attempts: Vec<(&AttemptRecord, &str)> =
        records.iter().filter_map(|r| workspaces.get(r.attempt.delivery_id.as_str()).map(|ws| (r, *ws))).collect();
    let chunks = attempts.len().div_ceil(RECORD_CHUNK);
    // Up to one chunk of attempts (nearly every batch), the text is built once; beyond, per batch.
    let longer;
    let sql = if chunks == 1 {
        RECORD_ONE_CHUNK_END_SQL.as_str()
    } else {
        longer = format!("{}; {}", vec![RECORD_ATTEMPTS_SQL.as_str(); chunks].join("; "), *RECORD_END_SQL);
        longer.as_str()
    };
    // Nine values for each attempt's row, then six for the end: a parameter added to the text and
    // not bound below would silently take the value meant for the next one.
    debug_assert_eq!(sql.matches('?').count(), chunks * RECORD_CHUNK * 9 + 6);
    let mut query = sqlx::query(sql);
    for chunk in attempts.chunks(RECORD_CHUNK) {
        for (r, ws) in chunk {
            let a = &r.attempt;
            query = query
                .bind(a.delivery_id.as_str())
                .bind(a.number)
                .bind(*ws)
                .bind(a.started_at)
                .bind(a.duration_ms.min(i64::MAX as u64) as i64)
                .bind(a.status_code)
                .bind(a.error.as_deref())
                .bind(a.response_excerpt.as_deref())
                .bind(a.request.as_deref());
        }
        for _ in chunk.len()..RECORD_CHUNK {
            query = query
                .bind(None::<&str>)
                .bind(None::<u32>)
                .bind(None::<&str>)
                .bind(None::<i64>)
                .bind(None::<i64>)
                .bind(None::<u16>)
                .bind(None::<&str>)
                .bind(None::<&str>)
                .bind(None::<&str>);
        }
    }
    let events: BTreeSet<&str> = moved.iter().map(|(_, e, _, _)| e.as_str()).collect();
    // Usage: the deliveries that finished, per workspace, on today's row.
    let mut finished: std::collections::BTreeMap<&str, (i64, i64)> = std::collections::BTreeMap::new();
    // Health: a connection with an attempt that succeeded is not failing; one whose attempts
    // all failed is failing from now, unless it already was.
    let mut succeeded_any: std::collections::BTreeMap<&str, bool> = std::collections::BTreeMap::new();
    for (id, _, ws, connection) in &moved {
        let next = outcome.get(id.as_str());
        *succeeded_any.entry(connection.as_str()).or_default() |= next == Some(&NextStep::Succeeded);
        match next {
            Some(NextStep::Succeeded) => finished.entry(ws.as_str()).or_default().0 += 1,
            Some(NextStep::Dead) => finished.entry(ws.as_str()).or_default().1 += 1,
            _ => {}
        }
    }
    let (healthy, failing): (Marked, Marked) = succeeded_any.into_iter().partition(|(_, ok)| *ok);
    let ids = |list: Marked| serde_json::to_string(&list.into_iter().map(|(id, _)| id).collect::<Vec<_>>()).unwrap_or_default();
    let usage: serde_json::Map<String, serde_json::Value> =
        finished.into_iter().map(|(ws, (succeeded, dead))| (ws.to_owned(), serde_json::json!([succeeded, dead]))).collect();
    query
        .bind(serde_json::to_string(&events).unwrap_or_default())
        .bind(ids(healthy))
        .bind(now)
        .bind(ids(failing))
        .bind(switchyard_core::limits::day_of(now))
        .bind(serde_json::Value::Object(usage).to_string())
        .execute(&mut *w)
        .await?;
    w.ended();
    Ok(())
}
