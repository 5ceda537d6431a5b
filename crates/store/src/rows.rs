//! Row to record conversions, shared by both stores: the schemas use the same column names and
//! kinds (text, 64-bit integers, booleans), so one mapping reads a row of either.

use crate::{Result, StoreError};
use sqlx::Row;
use switchyard_core::ids::*;
use switchyard_core::model::*;

/// A database row of either store.
pub trait AnyRow: Row {
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    fn flag(&self, col: &str) -> Result<bool>;
}

macro_rules! any_row {
    ($row:ty) => {
        impl AnyRow for $row {
            fn text(&self, col: &str) -> Result<String> {
                Ok(self.try_get(col)?)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>> {
                Ok(self.try_get(col)?)
            }
            fn int(&self, col: &str) -> Result<i64> {
                Ok(self.try_get(col)?)
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>> {
                Ok(self.try_get(col)?)
            }
            fn flag(&self, col: &str) -> Result<bool> {
                Ok(self.try_get(col)?)
            }
        }
    };
}

any_row!(sqlx::sqlite::SqliteRow);
any_row!(sqlx::postgres::PgRow);

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn json(row: &impl AnyRow, col: &str) -> Result<serde_json::Value> {
    serde_json::from_str(&row.text(col)?).map_err(|_| corrupt(col))
}

pub fn workspace(row: &impl AnyRow) -> Result<Workspace> {
    Ok(Workspace {
        id: WorkspaceId::from_trusted(row.text("id")?),
        name: row.text("name")?,
        description: row.opt_text("description")?,
        plan: row.opt_text("plan")?,
        limit_overrides: match serde_json::from_str(&row.text("limit_overrides")?) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(crate::StoreError::Corrupt("a workspace's limit overrides are not a JSON object".into())),
        },
        labels: serde_json::from_str(&row.text("labels")?)
            .map_err(|_| crate::StoreError::Corrupt("a workspace's labels are not a JSON object of text".into()))?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub fn plan(row: &impl AnyRow) -> Result<switchyard_core::limits::Plan> {
    let limits: switchyard_core::limits::Limits =
        serde_json::from_str(&row.text("limits")?).map_err(|e| crate::StoreError::Corrupt(format!("a plan's limits do not read: {e}")))?;
    Ok(switchyard_core::limits::Plan {
        name: row.text("name")?,
        description: row.opt_text("description")?,
        limits,
        from_config: row.flag("from_config")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub fn publishable_key(row: &impl AnyRow) -> Result<PublishableKey> {
    Ok(PublishableKey {
        id: PublishableKeyId::from_trusted(row.text("id")?),
        workspace_id: WorkspaceId::from_trusted(row.text("workspace_id")?),
        hint: row.text("hint")?,
        created_at: row.int("created_at")?,
    })
}

pub fn api_key(row: &impl AnyRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: ApiKeyId::from_trusted(row.text("id")?),
        name: row.text("name")?,
        hint: row.text("hint")?,
        scope: KeyScopeKind::parse(&row.text("scope")?).ok_or_else(|| corrupt("api_keys.scope"))?,
        workspaces: serde_json::from_str(&row.text("workspaces")?).map_err(|_| corrupt("api_keys.workspaces"))?,
        expires_at: row.opt_int("expires_at")?,
        last_used_at: row.opt_int("last_used_at")?,
        created_by: row.opt_text("created_by")?,
        created_at: row.int("created_at")?,
    })
}

pub fn member(row: &impl AnyRow) -> Result<Member> {
    Ok(Member {
        id: MemberId::from_trusted(row.text("id")?),
        email: row.text("email")?,
        name: row.opt_text("name")?,
        role: MemberRole::parse(&row.text("role")?).ok_or_else(|| corrupt("members.role"))?,
        subject: row.opt_text("subject")?,
        created_at: row.int("created_at")?,
        last_sign_in_at: row.opt_int("last_sign_in_at")?,
        removed_at: row.opt_int("removed_at")?,
    })
}

pub fn console_session(row: &impl AnyRow) -> Result<ConsoleSession> {
    Ok(ConsoleSession {
        id: ConsoleSessionId::from_trusted(row.text("id")?),
        member_id: row.opt_text("member_id")?.map(MemberId::from_trusted),
        api_key_id: row.opt_text("api_key_id")?.map(ApiKeyId::from_trusted),
        role: MemberRole::parse(&row.text("role")?).ok_or_else(|| corrupt("console_sessions.role"))?,
        label: row.text("label")?,
        client_addr: row.opt_text("client_addr")?,
        user_agent: row.opt_text("user_agent")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
    })
}

pub fn node(row: &impl AnyRow) -> Result<NodeInfo> {
    Ok(NodeInfo {
        id: row.text("id")?,
        role: row.text("role")?,
        version: row.text("version")?,
        hostname: row.opt_text("hostname")?,
        started_at: row.int("started_at")?,
        heartbeat_at: row.int("heartbeat_at")?,
    })
}

pub fn audit_entry(row: &impl AnyRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: AuditId::from_trusted(row.text("id")?),
        at: row.int("at")?,
        workspace_id: row.opt_text("workspace_id")?.map(WorkspaceId::from_trusted),
        actor_kind: row.text("actor_kind")?,
        actor_id: row.opt_text("actor_id")?,
        actor_name: row.opt_text("actor_name")?,
        action: row.text("action")?,
        resource_type: row.opt_text("resource_type")?,
        resource_id: row.opt_text("resource_id")?,
        summary: json(row, "summary")?,
        client_addr: row.opt_text("client_addr")?,
        user_agent: row.opt_text("user_agent")?,
    })
}

pub fn session(row: &impl AnyRow) -> Result<Session> {
    let role = row.text("role")?;
    let scopes = row.text("scopes")?;
    let origins = row.text("allowed_origins")?;
    Ok(Session {
        id: SessionId::from_trusted(row.text("id")?),
        workspace_id: WorkspaceId::from_trusted(row.text("workspace_id")?),
        role: SessionRole::parse(&role).ok_or_else(|| corrupt("sessions.role"))?,
        scopes: serde_json::from_str(&scopes).map_err(|_| corrupt("sessions.scopes"))?,
        allowed_origins: serde_json::from_str(&origins).map_err(|_| corrupt("sessions.allowed_origins"))?,
        external_user_id: row.opt_text("external_user_id")?,
        branding: match row.opt_text("branding")? {
            Some(text) => Some(serde_json::from_str(&text).map_err(|_| corrupt("sessions.branding"))?),
            None => None,
        },
        resource: resource_ref(row)?,
        expires_at: row.int("expires_at")?,
        created_at: row.int("created_at")?,
    })
}

/// `resource` and `resource_id` together, or neither.
fn resource_ref(row: &impl AnyRow) -> Result<Option<ResourceRef>> {
    match (row.opt_text("resource")?, row.opt_text("resource_id")?) {
        (Some(resource), Some(resource_id)) => Ok(Some(ResourceRef { resource, resource_id })),
        _ => Ok(None),
    }
}

pub fn event_type(row: &impl AnyRow) -> Result<EventType> {
    Ok(EventType {
        workspace_id: WorkspaceId::from_trusted(row.text("workspace_id")?),
        name: row.text("name")?,
        received_count: row.int("received_count")?,
        first_seen_at: row.opt_int("first_seen_at")?,
        last_seen_at: row.opt_int("last_seen_at")?,
        sample_payload: row.opt_text("sample_payload")?,
        description: row.opt_text("description")?,
        json_schema: row.opt_text("json_schema")?,
        example: row.opt_text("example")?,
        declared_at: row.opt_int("declared_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub fn connection(row: &impl AnyRow) -> Result<Connection> {
    let policy = row.text("retry_policy")?;
    let timeout = row.int("timeout_ms")?;
    let max_in_flight = row.int("max_in_flight")?;
    Ok(Connection {
        id: ConnectionId::from_trusted(row.text("id")?),
        workspace_id: WorkspaceId::from_trusted(row.text("workspace_id")?),
        kind: row.text("kind")?,
        name: row.text("name")?,
        config: json(row, "config")?,
        credentials_sealed: row.opt_text("credentials_sealed")?,
        signing_secret_sealed: row.opt_text("signing_secret_sealed")?,
        previous_secret_sealed: row.opt_text("previous_secret_sealed")?,
        previous_secret_expires_at: row.opt_int("previous_secret_expires_at")?,
        retry_policy: serde_json::from_str(&policy).map_err(|_| corrupt("connections.retry_policy"))?,
        timeout_ms: timeout as u64,
        max_in_flight: max_in_flight as u32,
        rate_limit_per_minute: row.opt_int("rate_limit_per_minute")?.map(|r| r.clamp(0, u32::MAX as i64) as u32),
        status: ConnectionStatus::parse(&row.text("status")?).ok_or_else(|| corrupt("connections.status"))?,
        inactive: match row.opt_text("inactive_reason")? {
            None => None,
            Some(reason) => Some((
                InactiveReason::parse(&reason).ok_or_else(|| corrupt("connections.inactive_reason"))?,
                row.opt_int("inactive_since")?.unwrap_or(0),
            )),
        },
        failing_since: row.opt_int("failing_since")?,
        breaker: match row.opt_text("circuit_breaker")? {
            Some(json) => serde_json::from_str(&json).map_err(|_| corrupt("connections.circuit_breaker"))?,
            None => Default::default(),
        },
        circuit: switchyard_core::circuit::Circuit {
            state: CircuitState::parse(&row.text("circuit_state")?).ok_or_else(|| corrupt("connections.circuit_state"))?,
            since: row.opt_int("circuit_since")?,
            reason: row.opt_text("circuit_reason")?,
            retry_at: Some(row.int("circuit_retry_at")?).filter(|t| *t > 0),
        },
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub fn rule(row: &impl AnyRow) -> Result<Rule> {
    let conditions = row.opt_text("conditions")?;
    Ok(Rule {
        id: RuleId::from_trusted(row.text("id")?),
        workspace_id: WorkspaceId::from_trusted(row.text("workspace_id")?),
        name: row.text("name")?,
        event: row.text("event")?,
        connection_id: ConnectionId::from_trusted(row.text("connection_id")?),
        action: row.text("action")?,
        action_config: json(row, "action_config")?,
        conditions: conditions.map(|c| serde_json::from_str(&c)).transpose().map_err(|_| corrupt("rules.conditions"))?,
        active: row.flag("active")?,
        bound_to: resource_ref(row)?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub fn event(row: &impl AnyRow) -> Result<Event> {
    let status = row.text("status")?;
    Ok(Event {
        id: EventId::from_trusted(row.text("id")?),
        workspace_id: WorkspaceId::from_trusted(row.text("workspace_id")?),
        event: row.text("event")?,
        resource: row.opt_text("resource")?,
        resource_id: row.opt_text("resource_id")?,
        payload: row.text("payload")?,
        occurred_at: row.opt_int("occurred_at")?,
        received_at: row.int("received_at")?,
        status: EventStatus::parse(&status).ok_or_else(|| corrupt("events.status"))?,
        test: row.flag("test")?,
    })
}

pub fn delivery(row: &impl AnyRow) -> Result<Delivery> {
    let status = row.text("status")?;
    let attempts = row.int("attempt_count")?;
    let base = row.int("replay_base")?;
    Ok(Delivery {
        id: DeliveryId::from_trusted(row.text("id")?),
        workspace_id: WorkspaceId::from_trusted(row.text("workspace_id")?),
        event_id: EventId::from_trusted(row.text("event_id")?),
        rule_id: RuleId::from_trusted(row.text("rule_id")?),
        connection_id: ConnectionId::from_trusted(row.text("connection_id")?),
        status: DeliveryStatus::parse(&status).ok_or_else(|| corrupt("deliveries.status"))?,
        attempt_count: attempts as u32,
        replay_base: base as u32,
        next_attempt_at: row.opt_int("next_attempt_at")?,
        last_error: row.opt_text("last_error")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub fn attempt(row: &impl AnyRow) -> Result<Attempt> {
    let number = row.int("number")?;
    let duration = row.int("duration_ms")?;
    let code = row.opt_int("status_code")?;
    Ok(Attempt {
        delivery_id: DeliveryId::from_trusted(row.text("delivery_id")?),
        number: number as u32,
        started_at: row.int("started_at")?,
        duration_ms: duration as u64,
        status_code: code.map(|c| c as u16),
        error: row.opt_text("error")?,
        response_excerpt: row.opt_text("response_excerpt")?,
        request: row.opt_text("request_excerpt")?,
    })
}
