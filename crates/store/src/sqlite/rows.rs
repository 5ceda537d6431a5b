//! Row to record conversions shared by the SQLite modules.

use crate::{Result, StoreError};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use switchyard_core::ids::*;
use switchyard_core::model::*;

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn json(row: &SqliteRow, col: &str) -> Result<serde_json::Value> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|_| corrupt(col))
}

pub fn workspace(row: &SqliteRow) -> Result<Workspace> {
    Ok(Workspace {
        id: WorkspaceId::from_trusted(row.try_get("id")?),
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub fn publishable_key(row: &SqliteRow) -> Result<PublishableKey> {
    Ok(PublishableKey {
        id: PublishableKeyId::from_trusted(row.try_get("id")?),
        workspace_id: WorkspaceId::from_trusted(row.try_get("workspace_id")?),
        hint: row.try_get("hint")?,
        created_at: row.try_get("created_at")?,
    })
}

pub fn session(row: &SqliteRow) -> Result<Session> {
    let role: String = row.try_get("role")?;
    let scopes: String = row.try_get("scopes")?;
    let origins: String = row.try_get("allowed_origins")?;
    Ok(Session {
        id: SessionId::from_trusted(row.try_get("id")?),
        workspace_id: WorkspaceId::from_trusted(row.try_get("workspace_id")?),
        role: SessionRole::parse(&role).ok_or_else(|| corrupt("sessions.role"))?,
        scopes: serde_json::from_str(&scopes).map_err(|_| corrupt("sessions.scopes"))?,
        allowed_origins: serde_json::from_str(&origins).map_err(|_| corrupt("sessions.allowed_origins"))?,
        external_user_id: row.try_get("external_user_id")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
    })
}

pub fn connection(row: &SqliteRow) -> Result<Connection> {
    let policy: String = row.try_get("retry_policy")?;
    let timeout: i64 = row.try_get("timeout_ms")?;
    let max_in_flight: i64 = row.try_get("max_in_flight")?;
    Ok(Connection {
        id: ConnectionId::from_trusted(row.try_get("id")?),
        workspace_id: WorkspaceId::from_trusted(row.try_get("workspace_id")?),
        kind: row.try_get("kind")?,
        name: row.try_get("name")?,
        config: json(row, "config")?,
        credentials_sealed: row.try_get("credentials_sealed")?,
        signing_secret_sealed: row.try_get("signing_secret_sealed")?,
        previous_secret_sealed: row.try_get("previous_secret_sealed")?,
        previous_secret_expires_at: row.try_get("previous_secret_expires_at")?,
        retry_policy: serde_json::from_str(&policy).map_err(|_| corrupt("connections.retry_policy"))?,
        timeout_ms: timeout as u64,
        max_in_flight: max_in_flight as u32,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub fn rule(row: &SqliteRow) -> Result<Rule> {
    let conditions: Option<String> = row.try_get("conditions")?;
    Ok(Rule {
        id: RuleId::from_trusted(row.try_get("id")?),
        workspace_id: WorkspaceId::from_trusted(row.try_get("workspace_id")?),
        name: row.try_get("name")?,
        event: row.try_get("event")?,
        connection_id: ConnectionId::from_trusted(row.try_get("connection_id")?),
        action: row.try_get("action")?,
        action_config: json(row, "action_config")?,
        conditions: conditions.map(|c| serde_json::from_str(&c)).transpose().map_err(|_| corrupt("rules.conditions"))?,
        active: row.try_get("active")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Reads an event from columns named with an optional prefix (claims join events as `e_*`).
pub fn event_prefixed(row: &SqliteRow, p: &str) -> Result<Event> {
    let col = |name: &str| format!("{p}{name}");
    let status: String = row.try_get(col("status").as_str())?;
    Ok(Event {
        id: EventId::from_trusted(row.try_get(col("id").as_str())?),
        workspace_id: WorkspaceId::from_trusted(row.try_get(col("workspace_id").as_str())?),
        event: row.try_get(col("event").as_str())?,
        resource: row.try_get(col("resource").as_str())?,
        resource_id: row.try_get(col("resource_id").as_str())?,
        payload: row.try_get(col("payload").as_str())?,
        occurred_at: row.try_get(col("occurred_at").as_str())?,
        received_at: row.try_get(col("received_at").as_str())?,
        status: EventStatus::parse(&status).ok_or_else(|| corrupt("events.status"))?,
        test: row.try_get(col("test").as_str())?,
    })
}

pub fn event(row: &SqliteRow) -> Result<Event> {
    event_prefixed(row, "")
}

pub fn delivery(row: &SqliteRow) -> Result<Delivery> {
    let status: String = row.try_get("status")?;
    let attempts: i64 = row.try_get("attempt_count")?;
    let base: i64 = row.try_get("replay_base")?;
    Ok(Delivery {
        id: DeliveryId::from_trusted(row.try_get("id")?),
        workspace_id: WorkspaceId::from_trusted(row.try_get("workspace_id")?),
        event_id: EventId::from_trusted(row.try_get("event_id")?),
        rule_id: RuleId::from_trusted(row.try_get("rule_id")?),
        connection_id: ConnectionId::from_trusted(row.try_get("connection_id")?),
        status: DeliveryStatus::parse(&status).ok_or_else(|| corrupt("deliveries.status"))?,
        attempt_count: attempts as u32,
        replay_base: base as u32,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub fn attempt(row: &SqliteRow) -> Result<Attempt> {
    let number: i64 = row.try_get("number")?;
    let duration: i64 = row.try_get("duration_ms")?;
    let code: Option<i64> = row.try_get("status_code")?;
    Ok(Attempt {
        delivery_id: DeliveryId::from_trusted(row.try_get("delivery_id")?),
        number: number as u32,
        started_at: row.try_get("started_at")?,
        duration_ms: duration as u64,
        status_code: code.map(|c| c as u16),
        error: row.try_get("error")?,
        response_excerpt: row.try_get("response_excerpt")?,
    })
}
