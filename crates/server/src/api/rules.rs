//! Rules: which events of a workspace go to which connection, filtered by conditions; and the
//! test event that exercises one rule.

use super::common::*;
use super::events::{accept, EventAccepted};
use super::workspaces::visible_workspace;
use crate::audit::{Change, NoChange};
use crate::auth::{Access, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::{RawBody, ValidJson};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use switchyard_core::conditions::Condition;
use switchyard_core::events::EventPattern;
use switchyard_core::ids::*;
use switchyard_core::model::{Event, EventStatus, Rule};
use switchyard_store::{ManagedKind, NewDelivery, NewEvent, Owned, Scope};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_rule, list_rules))
        .routes(routes!(get_rule, update_rule, delete_rule))
        // A test event is held to the size of a real one.
        .merge(
            OpenApiRouter::new()
                .routes(routes!(test_rule))
                .routes(routes!(preview_rule))
                .layer(axum::extract::DefaultBodyLimit::max(super::events::MAX_EVENT_BYTES)),
        )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRule {
    pub name: String,
    /// An event name or a pattern: `user.*`, `*.created`, `*`.
    pub event: String,
    pub connection_id: String,
    /// One of the connection type's actions; defaults to its first (`send_webhook`).
    pub action: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub action_config: Option<Value>,
    /// `{"all": [...]}` / `{"any": [...]}` of `{"path", "op", "value"}` leaves.
    #[schema(value_type = Option<Object>)]
    pub conditions: Option<Value>,
    pub active: Option<bool>,
    /// Binds the rule to one of the product's records: it then matches only events with this
    /// `resource` and `resource_id` (give both). A session narrowed to a resource binds every
    /// rule it makes to it.
    pub resource: Option<String>,
    pub resource_id: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRule {
    pub name: Option<String>,
    pub event: Option<String>,
    pub connection_id: Option<String>,
    pub action: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub action_config: Option<Value>,
    /// Replaces the conditions; `null` removes them.
    #[serde(default, deserialize_with = "some_or_null")]
    #[schema(value_type = Option<Object>)]
    pub conditions: Option<Option<Value>>,
    pub active: Option<bool>,
}

fn some_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Value>>, D::Error> {
    Option::<Value>::deserialize(d).map(Some)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleOut {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub event: String,
    pub connection_id: String,
    pub action: String,
    #[schema(value_type = Object)]
    pub action_config: Value,
    #[schema(value_type = Option<Object>)]
    pub conditions: Option<Value>,
    pub active: bool,
    /// The resource the rule is bound to, if any.
    pub resource: Option<String>,
    pub resource_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Rule> for RuleOut {
    fn from(r: Rule) -> Self {
        Self {
            id: r.id.into_string(),
            workspace_id: r.workspace_id.into_string(),
            name: r.name,
            event: r.event,
            connection_id: r.connection_id.into_string(),
            action: r.action,
            action_config: r.action_config,
            conditions: r.conditions,
            active: r.active,
            resource: r.bound_to.as_ref().map(|b| b.resource.clone()),
            resource_id: r.bound_to.map(|b| b.resource_id),
            created_at: ts(r.created_at),
            updated_at: ts(r.updated_at),
        }
    }
}

/// Checks a rule against its workspace and connection; fills in the default action.
async fn validate(state: &AppState, rule: &mut Rule) -> ApiResult<()> {
    check_name(&rule.name, "name")?;
    EventPattern::parse(&rule.event).map_err(|m| ApiError::invalid("event", m))?;
    let conn = state
        .store
        .get_connection(&Scope::Workspace(rule.workspace_id.clone()), &rule.connection_id)
        .await?
        .ok_or_else(|| ApiError::invalid("connection_id", "no such connection in this workspace"))?;
    let connector = state.registry.get(&conn.kind).ok_or_else(|| ApiError::invalid("connection_id", "the connection's type is unknown"))?;
    if rule.action.is_empty() {
        rule.action = connector.default_action();
    }
    if !rule.action_config.is_object() {
        return Err(ApiError::invalid("action_config", "must be an object"));
    }
    // Templates compile here: off the async workers, on a thread whose stack is known (their size
    // and nesting are checked before the compiler sees them).
    let (connector, action, config) = (connector.clone(), rule.action.clone(), std::mem::take(&mut rule.action_config));
    rule.action_config = tokio::task::spawn_blocking(move || connector.validate_action(&action, &config))
        .await
        .map_err(|_| ApiError::invalid("action_config", "could not be checked"))??;
    if let Some(c) = &rule.conditions {
        Condition::parse(c, "conditions").map_err(|e| ApiError::invalid(e.field, e.message))?;
    }
    Ok(())
}

fn connection_id(raw: &str) -> ApiResult<ConnectionId> {
    ConnectionId::parse(raw).ok_or_else(|| ApiError::invalid("connection_id", "no such connection in this workspace"))
}

#[utoipa::path(post, path = "/workspaces/{ws}/rules", tag = "rules", params(("ws" = String, Path)), request_body(content = CreateRule, example = json!({"name": "New users to the CRM", "event": "user.*", "connection_id": "conn_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3", "conditions": {"all": [{"path": "payload.plan", "op": "eq", "value": "pro"}]}})),
    responses((status = 201, body = RuleOut), (status = 422, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn create_rule(
    State(state): State<AppState>,
    principal: Principal,
    Path(ws): Path<String>,
    ValidJson(body): ValidJson<CreateRule>,
) -> ApiResult<(StatusCode, Change, Json<RuleOut>)> {
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Write).await?;
    // A session narrowed to a resource binds what it makes to it, whatever the body says.
    let asked = resource_pair(body.resource, body.resource_id)?;
    let bound_to = principal.resource().cloned().or(asked);
    let now = switchyard_core::now_millis();
    let mut rule = Rule {
        id: RuleId::generate(),
        workspace_id: ws.id,
        name: body.name,
        event: body.event,
        connection_id: connection_id(&body.connection_id)?,
        action: body.action.unwrap_or_default(),
        action_config: body.action_config.unwrap_or_else(|| json!({})),
        conditions: body.conditions,
        active: body.active.unwrap_or(true),
        bound_to,
        created_at: now,
        updated_at: now,
    };
    validate(&state, &mut rule).await?;
    let limits = crate::limits::of(&state, &rule.workspace_id).await?;
    let caps = switchyard_store::RuleCaps { per_workspace: limits.rules_per_workspace, per_event_type: limits.rules_per_event_type };
    state.store.create_rule(&rule, caps).await?;
    state.config_changed();
    let change = rule_change("rule.create", &rule, json!({}));
    Ok((StatusCode::CREATED, change, Json(rule.into())))
}

#[utoipa::path(get, path = "/workspaces/{ws}/rules", tag = "rules", params(("ws" = String, Path), ListParams),
    responses((status = 200, body = ListOf<RuleOut>)), security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn list_rules(
    State(state): State<AppState>,
    principal: Principal,
    Path(ws): Path<String>,
    Q(params): Q<ListParams>,
) -> ApiResult<Json<ListOf<RuleOut>>> {
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Read).await?;
    let page = params.page()?;
    // A session narrowed to one resource sees the rules bound to it.
    let items = state.store.list_rules(&ws.id, &page, principal.resource()).await?;
    Ok(Json(ListOf::from_fetched(items, &page, |r| r.id.to_string(), RuleOut::from)))
}

/// A change to a rule for the audit log (what it routes where; templates and conditions are named,
/// not copied).
fn rule_change(action: &'static str, rule: &Rule, extra: Value) -> Change {
    let mut summary = json!({
        "name": rule.name, "event": rule.event, "connection_id": rule.connection_id, "action": rule.action, "active": rule.active,
    });
    if let (Some(s), Some(extra)) = (summary.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    Change::new(action, "rule", &rule.id).in_workspace(&rule.workspace_id).summary(summary)
}

async fn visible_rule(state: &AppState, principal: &Principal, raw: &str, access: Access) -> ApiResult<Rule> {
    let id = path_id(raw, RuleId::parse, "rule")?;
    let scope = principal.for_row(&*state.store, Owned::Rule, id.as_str(), access).await?;
    state
        .store
        .get_rule(&scope, &id)
        .await?
        .filter(|r| principal.resource().is_none() || principal.resource() == r.bound_to.as_ref())
        .ok_or_else(|| ApiError::not_found("rule"))
}

#[utoipa::path(get, path = "/rules/{id}", tag = "rules", params(("id" = String, Path)),
    responses((status = 200, body = RuleOut), (status = 404, body = ErrorBody)), security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn get_rule(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> ApiResult<Json<RuleOut>> {
    Ok(Json(visible_rule(&state, &principal, &id, Access::Read).await?.into()))
}

#[utoipa::path(patch, path = "/rules/{id}", tag = "rules", params(("id" = String, Path)), request_body(content = UpdateRule, example = json!({"active": false})),
    responses((status = 200, body = RuleOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn update_rule(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ValidJson(body): ValidJson<UpdateRule>,
) -> ApiResult<(Change, Json<RuleOut>)> {
    let mut rule = visible_rule(&state, &principal, &id, Access::Write).await?;
    let changed: Vec<&str> = [
        ("name", body.name.is_some()),
        ("event", body.event.is_some()),
        ("connection_id", body.connection_id.is_some()),
        ("action", body.action.is_some()),
        ("action_config", body.action_config.is_some()),
        ("conditions", body.conditions.is_some()),
        ("active", body.active.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, given)| given.then_some(field))
    .collect();
    if let Some(v) = body.name {
        rule.name = v;
    }
    if let Some(v) = body.event {
        // Moving a rule to another pattern takes a place there: the plan's cap applies.
        if v != rule.event {
            let limits = crate::limits::of(&state, &rule.workspace_id).await?;
            if limits.rules_per_event_type.is_some() {
                crate::limits::check(
                    "rules_per_event_type",
                    limits.rules_per_event_type,
                    state.store.count_rules(&rule.workspace_id, Some(&v)).await?,
                )?;
            }
        }
        rule.event = v;
    }
    if let Some(v) = body.connection_id {
        rule.connection_id = connection_id(&v)?;
    }
    if let Some(v) = body.action {
        rule.action = v;
    }
    if let Some(v) = body.action_config {
        rule.action_config = v;
    }
    if let Some(v) = body.conditions {
        rule.conditions = v;
    }
    if let Some(v) = body.active {
        rule.active = v;
    }
    validate(&state, &mut rule).await?;
    rule.updated_at = switchyard_core::now_millis();
    state.store.update_rule(&rule).await?;
    state.config_changed();
    crate::blueprint::plan::note_hand_change(&state, &rule.workspace_id, ManagedKind::Rule, rule.id.as_str(), &changed).await;
    let change = rule_change("rule.update", &rule, json!({"fields": changed}));
    Ok((change, Json(rule.into())))
}

#[utoipa::path(delete, path = "/rules/{id}", tag = "rules", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = ["admin"]), ("session_token" = ["admin"])))]
async fn delete_rule(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> ApiResult<(StatusCode, Change, ())> {
    let rule = visible_rule(&state, &principal, &id, Access::Manage).await?;
    let scope = Scope::Workspace(rule.workspace_id.clone());
    if !state.store.delete_rule(&scope, &rule.id).await? {
        return Err(ApiError::not_found("rule"));
    }
    state.config_changed();
    crate::blueprint::plan::note_hand_change(&state, &rule.workspace_id, ManagedKind::Rule, rule.id.as_str(), &["deleted"]).await;
    Ok((StatusCode::NO_CONTENT, rule_change("rule.delete", &rule, json!({})), ()))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRule {
    /// The test event's payload (a JSON object); a sample is used when absent.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestAccepted {
    pub event_id: String,
}

/// Sends a test event through this rule only (conditions and the active flag are bypassed). The
/// event is marked `"test": true` in history.
#[utoipa::path(post, path = "/rules/{id}/test", tag = "rules", params(("id" = String, Path)), request_body(content = Option<TestRule>, example = json!({"payload": {"email": "test@example.com", "plan": "pro"}})),
    responses((status = 202, body = TestAccepted), (status = 404, body = ErrorBody)), security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn test_rule(
    State(state): State<AppState>,
    principal: Principal,
    rates: Option<axum::Extension<crate::rates::RateSlot>>,
    Path(id): Path<String>,
    body: RawBody,
) -> ApiResult<(StatusCode, Change, Json<TestAccepted>)> {
    let rule = visible_rule(&state, &principal, &id, Access::Write).await?;
    // Never refused by the monthly cap, but a test event is an event: it takes its place in the
    // workspace's events per second, so tests cannot be sent faster than events.
    let limits = crate::limits::of(&state, &rule.workspace_id).await?;
    crate::rates::admit_events(&state, rates.as_deref(), &rule.workspace_id, &limits, 1)?;
    let body: TestRule = body.parse_or_default()?;
    let payload =
        body.payload.unwrap_or_else(|| json!({"test": true, "message": "A test event sent by Switchyard", "email": "test@example.com", "first_name": "Test", "last_name": "User"}));
    if !payload.is_object() {
        return Err(ApiError::invalid("payload", "must be a JSON object"));
    }
    let pattern = EventPattern::parse(&rule.event).map_err(ApiError::internal)?;
    let now = switchyard_core::now_millis();
    let event = Event {
        id: EventId::generate(),
        workspace_id: rule.workspace_id.clone(),
        event: pattern.exact().unwrap_or("switchyard.test").to_owned(),
        // A bound rule's test event is its resource's, so the narrowed pages list it.
        resource: rule.bound_to.as_ref().map(|b| b.resource.clone()),
        resource_id: rule.bound_to.as_ref().map(|b| b.resource_id.clone()),
        payload: payload.to_string(),
        occurred_at: None,
        received_at: now,
        status: EventStatus::Pending,
        test: true,
    };
    let new = NewEvent {
        deliveries: vec![NewDelivery {
            id: DeliveryId::generate(),
            rule_id: rule.id.clone(),
            connection_id: rule.connection_id.clone(),
            lease: None,
        }],
        event,
        idempotency_key: None,
        // A test is the operator's, not the product's traffic: counted in usage, never refused by the cap.
        monthly_cap: None,
    };
    let EventAccepted { id, .. } = accept(&state, new).await?;
    let change = rule_change("rule.test", &rule, json!({"event_id": id}));
    Ok((StatusCode::ACCEPTED, change, Json(TestAccepted { event_id: id })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRule {
    pub connection_id: String,
    /// Defaults to the connection type's first action.
    pub action: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub action_config: Option<Value>,
    /// The event name the sample stands for.
    pub event: Option<String>,
    /// The sample payload (a JSON object); a generic one when absent.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    pub resource: Option<String>,
    pub resource_id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PreviewField {
    pub key: String,
    pub label: String,
    /// `template` or `mapping`.
    pub kind: String,
    /// The rendered text (templates) or the mapped fields (mappings).
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    /// Why it could not be rendered against this sample.
    pub error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RulePreview {
    pub action: String,
    /// Each template and mapping of the action's settings, rendered against the sample.
    pub fields: Vec<PreviewField>,
}

/// Renders a rule's templates and mappings against a sample payload, as a delivery would, without
/// sending anything. Settings are checked first (422 naming the field).
#[utoipa::path(post, path = "/workspaces/{ws}/rules/preview", tag = "rules", params(("ws" = String, Path)), request_body(content = PreviewRule, example = json!({"connection_id": "conn_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3", "event": "user.created", "payload": {"email": "ada@example.com"}})),
    responses((status = 200, body = RulePreview), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn preview_rule(
    State(state): State<AppState>,
    principal: Principal,
    Path(ws): Path<String>,
    ValidJson(body): ValidJson<PreviewRule>,
) -> ApiResult<(NoChange, Json<RulePreview>)> {
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Write).await?;
    let conn = state
        .store
        .get_connection(&Scope::Workspace(ws.id.clone()), &connection_id(&body.connection_id)?)
        .await?
        .ok_or_else(|| ApiError::invalid("connection_id", "no such connection in this workspace"))?;
    let connector =
        state.registry.get(&conn.kind).ok_or_else(|| ApiError::invalid("connection_id", "the connection's type is unknown"))?.clone();
    let action = body.action.filter(|a| !a.is_empty()).unwrap_or_else(|| connector.default_action());
    let config = body.action_config.unwrap_or_else(|| json!({}));
    let (checker, checked_action) = (connector.clone(), action.clone());
    let config = tokio::task::spawn_blocking(move || checker.validate_action(&checked_action, &config))
        .await
        .map_err(|_| ApiError::invalid("action_config", "could not be checked"))??;
    let payload = body.payload.unwrap_or_else(|| json!({"email": "test@example.com", "first_name": "Test", "last_name": "User"}));
    if !payload.is_object() {
        return Err(ApiError::invalid("payload", "must be a JSON object"));
    }
    let event =
        body.event.filter(|e| EventPattern::parse(e).is_ok_and(|p| p.exact().is_some())).unwrap_or_else(|| "switchyard.test".into());
    let context = json!({
        "event": event,
        "event_id": "evt_preview",
        "payload": payload,
        "resource": body.resource,
        "resource_id": body.resource_id,
        "workspace_id": ws.id.as_str(),
        "occurred_at": switchyard_core::rfc3339(switchyard_core::now_millis()),
    });
    let catalog = connector.catalog();
    let spec = catalog.actions.iter().find(|a| a.key == action).ok_or_else(|| ApiError::invalid("action", "unknown action"))?;
    let mut fields = Vec::new();
    for f in &spec.fields {
        let Some(value) = config.get(&f.key).filter(|v| !v.is_null()) else { continue };
        let (output, error) = match f.kind.as_str() {
            "template" => {
                let source = value.as_str().unwrap_or_default();
                match state.renderer.render(f.html, source, &context).await {
                    Ok(text) => (Some(Value::String(text)), None),
                    Err(switchyard_destinations::sandbox::RenderError::Template(m)) => (None, Some(m)),
                    Err(e) => return Err(ApiError::unavailable(e.to_string())),
                }
            }
            "mapping" => match switchyard_destinations::mapping::Mapping::parse(value, &f.key) {
                Ok(m) => match m.apply(&context) {
                    Ok(map) => (Some(Value::Object(map)), None),
                    Err(e) => (None, Some(e)),
                },
                Err(errors) => (None, Some(errors.into_iter().map(|e| e.message).collect::<Vec<_>>().join("; "))),
            },
            _ => continue,
        };
        fields.push(PreviewField { key: f.key.clone(), label: f.label.clone(), kind: f.kind.clone(), output, error });
    }
    Ok((NoChange, Json(RulePreview { action, fields })))
}
