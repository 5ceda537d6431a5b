//! Blueprints (docs/blueprints.md): stored by name, a new version each time the document changes.
//! Installation keys only: a blueprint reaches into many workspaces.

use crate::audit::Change;
use crate::auth::{Access, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody, FieldDetail};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use switchyard_store::{BlueprintRecord, BlueprintVersion};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::common::{ts, Q};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(put_blueprint, list_blueprints)).routes(routes!(get_blueprint, delete_blueprint))
}

/// A blueprint: its name and current version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BlueprintOut {
    pub id: String,
    pub name: String,
    /// The current version (1 for the first).
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl From<BlueprintRecord> for BlueprintOut {
    fn from(r: BlueprintRecord) -> Self {
        Self { id: r.id, name: r.name, version: r.version, created_at: ts(r.created_at), updated_at: ts(r.updated_at) }
    }
}

/// What `POST /blueprints` did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BlueprintStored {
    #[serde(flatten)]
    pub blueprint: BlueprintOut,
    /// False when the document was the current version's: nothing was stored.
    pub changed: bool,
}

/// One version of a blueprint.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BlueprintVersionOut {
    #[serde(flatten)]
    pub blueprint: BlueprintOut,
    /// The version shown (the current one unless `?version=` asked for another).
    pub shown_version: i64,
    /// The document as read (see docs/blueprint.schema.json).
    #[schema(value_type = Object)]
    pub document: Value,
    /// The document as submitted, comments and all.
    pub source: String,
    pub version_created_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BlueprintList {
    pub data: Vec<BlueprintOut>,
    /// Always `null`: the list is whole.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionParams {
    /// A version other than the current one.
    pub version: Option<i64>,
}

const EXAMPLE: &str = "version: 1\nname: alerts\nconnections:\n  hook:\n    type: webhook\n    name: Alerts\n    config: {url: \"https://hooks.example.com/alerts\"}\nrules:\n  all:\n    name: Every alert\n    event: alert.*\n    connection: hook\n";

/// Stores a blueprint (YAML or JSON, as the body) as the next version of the one with its `name`,
/// or as a new blueprint. `201` when stored, `200` with `changed: false` when the document equals
/// the current version. Every problem is a `422` detail with its `line` and `column`.
#[utoipa::path(post, path = "/blueprints", tag = "blueprints",
    request_body(content(
        (Object = "application/json", example = json!({"version": 1, "name": "alerts",
            "connections": {"hook": {"type": "webhook", "name": "Alerts", "config": {"url": "https://hooks.example.com/alerts"}}},
            "rules": {"all": {"name": "Every alert", "event": "alert.*", "connection": "hook"}}})),
        (String = "application/yaml", example = json!(EXAMPLE)),
    )),
    responses((status = 201, body = BlueprintStored), (status = 200, body = BlueprintStored), (status = 422, body = ErrorBody)),
    security(("api_key" = ["installation"])))]
async fn put_blueprint(
    State(state): State<AppState>,
    principal: Principal,
    body: Bytes,
) -> ApiResult<(StatusCode, Change, Json<BlueprintStored>)> {
    principal.installation(Access::Write)?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("a blueprint is UTF-8 text (YAML or JSON)"))?;
    let registry = state.registry.clone();
    let owned = text.to_owned();
    // Templates compile here: on the blocking pool, as rules' are.
    let parsed = tokio::task::spawn_blocking(move || crate::blueprint::parse_submitted(&owned, &registry))
        .await
        .map_err(|_| ApiError::internal("reading the blueprint failed"))?;
    let blueprint = parsed.map_err(|problems| {
        ApiError::validation(
            problems
                .into_iter()
                .map(|p| FieldDetail {
                    field: p.field,
                    message: p.message,
                    line: (p.line > 0).then_some(p.line),
                    column: (p.line > 0).then_some(p.column),
                })
                .collect(),
        )
    })?;
    let document = serde_json::to_string(&blueprint).expect("a blueprint is JSON");
    let id = format!("bp_{}", ulid::Ulid::new());
    let (record, changed) = state.store.put_blueprint(&id, &blueprint.name, &document, text, switchyard_core::now_millis()).await?;
    let action = match (changed, record.version) {
        (false, _) => "blueprint.unchanged",
        (true, 1) => "blueprint.create",
        (true, _) => "blueprint.update",
    };
    let change = Change::new(action, "blueprint", &record.id).summary(json!({"name": record.name, "version": record.version}));
    let status = if changed { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, change, Json(BlueprintStored { blueprint: record.into(), changed })))
}

#[utoipa::path(get, path = "/blueprints", tag = "blueprints", responses((status = 200, body = BlueprintList)), security(("api_key" = ["installation"])))]
async fn list_blueprints(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<BlueprintList>> {
    principal.installation(Access::Read)?;
    let data = state.store.list_blueprints().await?.into_iter().map(BlueprintOut::from).collect();
    Ok(Json(BlueprintList { data, next_cursor: None }))
}

/// A blueprint by id or name, with its current document (or `?version=`'s).
#[utoipa::path(get, path = "/blueprints/{id}", tag = "blueprints", params(("id" = String, Path, description = "The blueprint's id or name"), VersionParams),
    responses((status = 200, body = BlueprintVersionOut), (status = 404, body = ErrorBody)), security(("api_key" = ["installation"])))]
async fn get_blueprint(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Q(params): Q<VersionParams>,
) -> ApiResult<Json<BlueprintVersionOut>> {
    principal.installation(Access::Read)?;
    let (record, version): (BlueprintRecord, BlueprintVersion) =
        state.store.get_blueprint(&id, params.version).await?.ok_or_else(|| ApiError::not_found("blueprint"))?;
    let document = serde_json::from_str(&version.document).map_err(|_| ApiError::internal("a stored blueprint is not JSON"))?;
    Ok(Json(BlueprintVersionOut {
        blueprint: record.into(),
        shown_version: version.version,
        document,
        source: version.source,
        version_created_at: ts(version.created_at),
    }))
}

/// Deletes a blueprint and its versions.
#[utoipa::path(delete, path = "/blueprints/{id}", tag = "blueprints", params(("id" = String, Path, description = "The blueprint's id or name")),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = ["installation"])))]
async fn delete_blueprint(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Change, ())> {
    principal.installation(Access::Write)?;
    let (record, _) = state.store.get_blueprint(&id, None).await?.ok_or_else(|| ApiError::not_found("blueprint"))?;
    if !state.store.delete_blueprint(&record.id).await? {
        return Err(ApiError::not_found("blueprint"));
    }
    Ok((StatusCode::NO_CONTENT, Change::new("blueprint.delete", "blueprint", &record.id).summary(json!({"name": record.name})), ()))
}
