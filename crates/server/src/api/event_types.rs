//! Event types: the names a workspace has received (learned by ingestion: count, first and last
//! seen, the latest payload as a sample) and those declared through the API (description, JSON
//! Schema, example). The rule builder and test events of the embedded pages use them.

use super::common::*;
use super::workspaces::visible_workspace;
use crate::audit::Change;
use crate::auth::{Access, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ValidJson;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use switchyard_core::events::validate_event_name;
use switchyard_core::ids::WorkspaceId;
use switchyard_core::model::EventType;
use switchyard_store::{EventTypeDeclaration, ManagedKind, Page};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Samples larger than this are left out of listings (the single type's page has them whole).
const LIST_SAMPLE_MAX: usize = 16 * 1024;
/// A declared schema or example may be this large, as JSON.
const MAX_DECLARED_JSON: usize = 64 * 1024;
const MAX_DESCRIPTION: usize = 2000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_event_types)).routes(routes!(get_event_type, declare_event_type, undeclare_event_type))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventTypeOut {
    pub name: String,
    pub description: Option<String>,
    /// The declared JSON Schema of the payload.
    #[schema(value_type = Option<Object>)]
    pub json_schema: Option<Box<RawValue>>,
    /// The declared example payload.
    #[schema(value_type = Option<Object>)]
    pub example: Option<Box<RawValue>>,
    /// Whether it was declared through the API (and not only learned).
    pub declared: bool,
    /// Events of this name received (test events are not counted).
    pub received_count: i64,
    pub first_seen_at: Option<String>,
    pub last_seen_at: Option<String>,
    /// The latest payload of this name, while history keeps it; left out for viewers without
    /// `events.payload:read`, and from listings when larger than 16 KiB (`sample_truncated`).
    #[schema(value_type = Option<Object>)]
    pub sample: Option<Box<RawValue>>,
    pub sample_truncated: bool,
}

impl EventTypeOut {
    fn new(t: EventType, with_payload: bool, sample_max: usize) -> Self {
        let raw = |text: Option<String>| text.and_then(|t| RawValue::from_string(t).ok());
        let (sample, sample_truncated) = match t.sample_payload {
            Some(p) if with_payload && p.len() > sample_max => (None, true),
            Some(p) if with_payload => (raw(Some(p)), false),
            _ => (None, false),
        };
        Self {
            name: t.name,
            description: t.description,
            json_schema: raw(t.json_schema),
            example: if with_payload { raw(t.example) } else { None },
            declared: t.declared_at.is_some(),
            received_count: t.received_count,
            first_seen_at: t.first_seen_at.map(ts),
            last_seen_at: t.last_seen_at.map(ts),
            sample,
            sample_truncated,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclareEventType {
    pub description: Option<String>,
    /// A JSON Schema (an object) for the payload.
    #[schema(value_type = Option<Object>)]
    pub json_schema: Option<Value>,
    /// An example payload (an object): the sample the rule builder previews with.
    #[schema(value_type = Option<Object>)]
    pub example: Option<Value>,
}

/// Samples and examples go to those who may read payloads, and not to a session narrowed to one
/// resource (the latest payload of a name may be another resource's).
fn samples_for(principal: &Principal) -> bool {
    principal.sees_payloads() && principal.resource().is_none()
}

fn check_name(name: &str) -> ApiResult<()> {
    validate_event_name(name).map_err(|m| ApiError::invalid("name", m))
}

/// The workspace's event types, by name: learned from ingestion and declared.
#[utoipa::path(get, path = "/workspaces/{ws}/event-types", tag = "events", params(("ws" = String, Path), ListParams),
    responses((status = 200, body = ListOf<EventTypeOut>), (status = 404, body = ErrorBody)),
    security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn list_event_types(
    State(state): State<AppState>,
    principal: Principal,
    Path(ws): Path<String>,
    Q(params): Q<ListParams>,
) -> ApiResult<Json<ListOf<EventTypeOut>>> {
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Read).await?;
    let page: Page = params.page()?;
    let items = state.store.list_event_types(&ws.id, page.before.as_deref(), page.limit).await?;
    let with_payload = samples_for(&principal);
    Ok(Json(ListOf::from_fetched(items, &page, |t| t.name.clone(), |t| EventTypeOut::new(t, with_payload, LIST_SAMPLE_MAX))))
}

#[utoipa::path(get, path = "/workspaces/{ws}/event-types/{name}", tag = "events", params(("ws" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = EventTypeOut), (status = 404, body = ErrorBody)),
    security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn get_event_type(
    State(state): State<AppState>,
    principal: Principal,
    Path((ws, name)): Path<(String, String)>,
) -> ApiResult<Json<EventTypeOut>> {
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Read).await?;
    let found = state.store.get_event_type(&ws.id, &name).await?.ok_or_else(|| ApiError::not_found("event type"))?;
    Ok(Json(EventTypeOut::new(found, samples_for(&principal), usize::MAX)))
}

/// Declares an event type (or replaces its declaration): description, JSON Schema, example.
#[utoipa::path(put, path = "/workspaces/{ws}/event-types/{name}", tag = "events", params(("ws" = String, Path), ("name" = String, Path)),
    request_body(content = DeclareEventType, example = json!({"description": "A user signed up", "json_schema": {"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}}, "example": {"email": "ada@example.com", "plan": "pro"}})),
    responses((status = 200, body = EventTypeOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn declare_event_type(
    State(state): State<AppState>,
    principal: Principal,
    Path((ws, name)): Path<(String, String)>,
    ValidJson(body): ValidJson<DeclareEventType>,
) -> ApiResult<(Change, Json<EventTypeOut>)> {
    principal.forbid_narrowed("declare event types")?;
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Write).await?;
    let change = Change::new("event_type.declare", "event_type", &name).in_workspace(&ws.id).summary(json!({
        "description": body.description.is_some(), "json_schema": body.json_schema.is_some(), "example": body.example.is_some(),
    }));
    let declared_in = ws.id.clone();
    let declaration = declaration(ws.id, name, body)?;
    let declared = state.store.declare_event_type(&declaration, switchyard_core::now_millis()).await.map_err(|e| match e {
        switchyard_store::StoreError::Conflict(m) => ApiError::invalid("name", m),
        other => other.into(),
    })?;
    crate::blueprint::plan::note_hand_change(
        &state,
        &declared_in,
        ManagedKind::EventType,
        &declared.name,
        &["description", "json_schema", "example"],
    )
    .await;
    Ok((change, Json(EventTypeOut::new(declared, samples_for(&principal), usize::MAX))))
}

/// Checks a declaration as `PUT /workspaces/{ws}/event-types/{name}` takes it.
pub(crate) fn declaration(ws: WorkspaceId, name: String, body: DeclareEventType) -> ApiResult<EventTypeDeclaration> {
    check_name(&name)?;
    if body.description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
        return Err(ApiError::invalid("description", format!("must be at most {MAX_DESCRIPTION} characters")));
    }
    let as_text = |value: Option<Value>, field: &str| -> ApiResult<Option<String>> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::Object(_)) => {
                let text = v.to_string();
                if text.len() > MAX_DECLARED_JSON {
                    return Err(ApiError::invalid(field, format!("must be at most {} KiB as JSON", MAX_DECLARED_JSON / 1024)));
                }
                Ok(Some(text))
            }
            Some(_) => Err(ApiError::invalid(field, "must be a JSON object")),
        }
    };
    if let Some(kind) = body.json_schema.as_ref().and_then(|s| s.get("type")) {
        if !(kind.is_string() || kind.is_array()) {
            return Err(ApiError::invalid("json_schema.type", "must be a type name or a list of them"));
        }
    }
    Ok(EventTypeDeclaration {
        workspace_id: ws,
        name,
        description: body.description.filter(|d| !d.trim().is_empty()),
        json_schema: as_text(body.json_schema, "json_schema")?,
        example: as_text(body.example, "example")?,
    })
}

/// Removes a declaration. What ingestion learned stays; a type never received disappears.
#[utoipa::path(delete, path = "/workspaces/{ws}/event-types/{name}", tag = "events", params(("ws" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = ["admin"]), ("session_token" = ["admin"])))]
async fn undeclare_event_type(
    State(state): State<AppState>,
    principal: Principal,
    Path((ws, name)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Change, ())> {
    principal.forbid_narrowed("remove event type declarations")?;
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Manage).await?;
    if !state.store.undeclare_event_type(&ws.id, &name, switchyard_core::now_millis()).await? {
        return Err(ApiError::not_found("event type declaration"));
    }
    crate::blueprint::plan::note_hand_change(&state, &ws.id, ManagedKind::EventType, &name, &["deleted"]).await;
    Ok((StatusCode::NO_CONTENT, Change::new("event_type.undeclare", "event_type", &name).in_workspace(&ws.id), ()))
}
