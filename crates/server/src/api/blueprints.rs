//! Blueprints (docs/blueprints.md): stored by name, a new version each time the document changes.
//! Installation keys only: a blueprint reaches into many workspaces.

use crate::audit::{Change, NoChange};
use crate::auth::{Access, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody, FieldDetail};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use switchyard_core::ids::WorkspaceId;
use switchyard_core::model::Workspace;
use switchyard_store::{BlueprintRecord, BlueprintVersion, ManagedKind, Page, Scope, StoreError};

use crate::blueprint::plan::{self, ResourceChange, WorkspacePlan};
use crate::blueprint::{Blueprint, Problem};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::common::{ts, Q};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_blueprint, list_blueprints))
        .routes(routes!(get_blueprint, delete_blueprint))
        .routes(routes!(plan_document))
        .routes(routes!(plan_blueprint))
        .routes(routes!(apply_blueprint))
        .routes(routes!(blueprint_drift))
        .routes(routes!(get_overrides, put_overrides))
        .routes(routes!(export_workspace))
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
    // Templates compile there: on the blocking pool, as rules' are.
    let (blueprint, text) = read_document(&state, &body).await?;
    if blueprint.name == "plan" {
        return Err(ApiError::invalid("name", "\"plan\" is taken by POST /blueprints/plan: choose another name"));
    }
    let text = text.as_str();
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

fn problems_error(problems: Vec<Problem>) -> ApiError {
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
}

/// Reads a submitted document (YAML or JSON) off the async workers.
async fn read_document(state: &AppState, body: &[u8]) -> ApiResult<(Blueprint, String)> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("a blueprint is UTF-8 text (YAML or JSON)"))?.to_owned();
    let registry = state.registry.clone();
    let owned = text.clone();
    let parsed = tokio::task::spawn_blocking(move || crate::blueprint::parse_submitted(&owned, &registry))
        .await
        .map_err(|_| ApiError::internal("reading the blueprint failed"))?;
    Ok((parsed.map_err(problems_error)?, text))
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlanParams {
    /// Comma-separated workspace ids: only these (each must be one of the blueprint's targets,
    /// when it has targets). Default: every workspace the targets select.
    pub workspaces: Option<String>,
    /// A version other than the current one.
    pub version: Option<i64>,
    /// Also remove the connections, rules and event type declarations no blueprint manages
    /// (those people made by hand). Default false.
    #[serde(default)]
    pub prune: bool,
}

/// A blueprint's plan.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlanOut {
    /// The stored blueprint of that name; null for a document planned before it was ever stored.
    pub blueprint: Option<BlueprintOut>,
    /// The version planned (0 for a document sent with `POST /blueprints/plan`).
    pub version: i64,
    pub workspaces: Vec<WorkspacePlan>,
    /// Changes in all, over every workspace.
    pub changes: usize,
    /// Workspaces that cannot be applied as they are.
    pub failed: usize,
}

/// What an apply did in one workspace.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AppliedWorkspace {
    /// `applied`, `unchanged`, or `failed` (nothing was written: see `problems`).
    pub status: &'static str,
    #[serde(flatten)]
    pub plan: WorkspacePlan,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApplyOut {
    pub blueprint: BlueprintOut,
    pub version: i64,
    pub workspaces: Vec<AppliedWorkspace>,
    pub applied: usize,
    pub unchanged: usize,
    pub failed: usize,
}

/// How one workspace differs from the version applied to it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceDrift {
    pub workspace_id: String,
    pub workspace_name: String,
    pub applied_version: i64,
    pub applied_at: String,
    /// Managed resources changed (field by field) or deleted by hand since.
    pub drift: Vec<ResourceChange>,
    /// Fields the workspace owns instead of the blueprint (never drift).
    pub overrides: BTreeMap<String, Vec<String>>,
    /// What keeps the applied version from being compared (a secret deleted since, say).
    pub problems: Vec<plan::PlanProblem>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DriftOut {
    pub blueprint: BlueprintOut,
    pub workspaces: Vec<WorkspaceDrift>,
    /// Workspaces with drift.
    pub drifted: usize,
}

/// The fields each managed resource of a workspace owns instead of the blueprint.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// By resource (`rules.alerts`): paths such as `action_config.channel`, or a whole field (`name`).
    pub overrides: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DriftParams {
    /// Comma-separated workspace ids: only these.
    pub workspaces: Option<String>,
}

fn requested(list: &Option<String>) -> ApiResult<Option<Vec<WorkspaceId>>> {
    let Some(list) = list else { return Ok(None) };
    let ids: Vec<WorkspaceId> = list
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| WorkspaceId::parse(s).ok_or_else(|| ApiError::invalid("workspaces", format!("{s:?} is not a workspace id"))))
        .collect::<ApiResult<_>>()?;
    if ids.is_empty() {
        return Ok(None);
    }
    if ids.len() > 1000 {
        return Err(ApiError::invalid("workspaces", "at most 1000 at once"));
    }
    Ok(Some(ids))
}

/// The workspaces a blueprint's targets select, or those asked for (which must be among them).
async fn target_workspaces(state: &AppState, b: &Blueprint, asked: Option<Vec<WorkspaceId>>) -> ApiResult<Vec<Workspace>> {
    let mut selected: Vec<Workspace> = Vec::new();
    for id in &b.targets.workspaces {
        if let Some(id) = WorkspaceId::parse(id) {
            if let Some(ws) = state.store.get_workspace(&Scope::All, &id).await? {
                selected.push(ws);
            }
        }
    }
    if !b.targets.labels.is_empty() {
        let mut page = Page { limit: 200, before: None };
        loop {
            let batch = state.store.labelled_workspaces(&b.targets.labels, &page).await?;
            let done = batch.len() < page.limit as usize;
            page.before = batch.last().map(|w| w.id.to_string());
            selected.extend(batch);
            if done {
                break;
            }
        }
    }
    selected.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    selected.dedup_by(|a, b| a.id == b.id);
    let Some(asked) = asked else {
        if b.targets.is_empty() {
            return Err(ApiError::invalid("workspaces", "the blueprint has no targets: name the workspaces (?workspaces=ws_...,ws_...)"));
        }
        return Ok(selected);
    };
    let mut out = Vec::new();
    for id in asked {
        if let Some(ws) = selected.iter().find(|w| w.id == id) {
            out.push(ws.clone());
        } else if b.targets.is_empty() {
            out.push(
                state
                    .store
                    .get_workspace(&Scope::All, &id)
                    .await?
                    .ok_or_else(|| ApiError::invalid("workspaces", format!("no workspace {id}")))?,
            );
        } else {
            return Err(ApiError::invalid("workspaces", format!("{id} is not one of the blueprint's targets")));
        }
    }
    Ok(out)
}

/// A stored blueprint's version, read.
async fn stored(state: &AppState, id: &str, version: Option<i64>) -> ApiResult<(BlueprintRecord, i64, Blueprint)> {
    let (record, v) = state.store.get_blueprint(id, version).await?.ok_or_else(|| ApiError::not_found("blueprint"))?;
    let b: Blueprint = serde_json::from_str(&v.document).map_err(|_| ApiError::internal("a stored blueprint could not be read"))?;
    Ok((record, v.version, b))
}

/// Plans a stored blueprint (the current version, or `?version=`): for each workspace, what would
/// be created, changed (field by field) and deleted. Nothing is written.
#[utoipa::path(post, path = "/blueprints/{id}/plan", tag = "blueprints", params(("id" = String, Path, description = "The blueprint's id or name"), PlanParams),
    responses((status = 200, body = PlanOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["installation"])))]
async fn plan_blueprint(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Q(params): Q<PlanParams>,
) -> ApiResult<(NoChange, Json<PlanOut>)> {
    principal.installation(Access::Read)?;
    let asked = requested(&params.workspaces)?;
    let (record, version, b) = stored(&state, &id, params.version).await?;
    Ok((NoChange, plan_out(&state, Some(record), version, &b, asked, params.prune).await?))
}

/// Plans a document sent as the body (YAML or JSON) without storing it: what a pipeline checks
/// before it stores and applies. Compared with what the blueprint of the same name (if stored)
/// manages in each workspace.
#[utoipa::path(post, path = "/blueprints/plan", tag = "blueprints", params(PlanParams),
    request_body(content(
        (Object = "application/json", example = json!({"version": 1, "name": "alerts", "targets": {"labels": {"env": "prod"}},
            "connections": {"hook": {"type": "webhook", "name": "Alerts", "config": {"url": "https://hooks.example.com/alerts"}}},
            "rules": {"all": {"name": "Every alert", "event": "alert.*", "connection": "hook"}}})),
        (String = "application/yaml", example = json!(EXAMPLE)),
    )),
    responses((status = 200, body = PlanOut), (status = 422, body = ErrorBody)),
    security(("api_key" = ["installation"])))]
async fn plan_document(
    State(state): State<AppState>,
    principal: Principal,
    Q(params): Q<PlanParams>,
    body: Bytes,
) -> ApiResult<(NoChange, Json<PlanOut>)> {
    principal.installation(Access::Read)?;
    let asked = requested(&params.workspaces)?;
    let (b, _) = read_document(&state, &body).await?;
    let record = state.store.get_blueprint(&b.name, None).await?.map(|(r, _)| r).filter(|r| r.name == b.name);
    Ok((NoChange, plan_out(&state, record, 0, &b, asked, params.prune).await?))
}

async fn plan_out(
    state: &AppState,
    record: Option<BlueprintRecord>,
    version: i64,
    b: &Blueprint,
    asked: Option<Vec<WorkspaceId>>,
    prune: bool,
) -> ApiResult<Json<PlanOut>> {
    let workspaces = target_workspaces(state, b, asked).await?;
    let blueprint_id = record.as_ref().map(|r| r.id.clone()).unwrap_or_default();
    let target = plan::Target { blueprint_id: &blueprint_id, version, blueprint: b, prune };
    let mut plans = Vec::new();
    for ws in &workspaces {
        plans.push(plan::prepare(state, ws, &target).await?.plan);
    }
    Ok(Json(PlanOut {
        blueprint: record.map(BlueprintOut::from),
        version,
        changes: plans.iter().map(|p| p.changes.len()).sum(),
        failed: plans.iter().filter(|p| !p.problems.is_empty()).count(),
        workspaces: plans,
    }))
}

/// Applies a blueprint to one workspace, planning again when another apply came first.
pub(crate) async fn apply_to(state: &AppState, ws: &Workspace, target: &plan::Target<'_>) -> ApiResult<AppliedWorkspace> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let prepared = plan::prepare(state, ws, target).await?;
        let Some(apply) = prepared.apply else {
            return Ok(AppliedWorkspace { status: "failed", plan: prepared.plan });
        };
        if !prepared.writes {
            return Ok(AppliedWorkspace { status: "unchanged", plan: prepared.plan });
        }
        let mut plan = prepared.plan;
        match state.store.apply_blueprint(&apply, switchyard_core::now_millis()).await {
            Ok(()) => {
                state.config_changed();
                return Ok(AppliedWorkspace { status: if plan.changes.is_empty() { "unchanged" } else { "applied" }, plan });
            }
            Err(StoreError::Conflict(_)) if attempt < 5 => continue,
            Err(StoreError::Conflict(m)) => {
                plan.problems.push(plan::PlanProblem { field: String::new(), message: m });
                return Ok(AppliedWorkspace { status: "failed", plan });
            }
            Err(StoreError::Limit { limit, max }) => {
                let e = crate::limits::limit_reached(limit, max);
                plan.problems.push(plan::PlanProblem { field: limit.to_owned(), message: e.message });
                return Ok(AppliedWorkspace { status: "failed", plan });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A workspace that could not be applied for a reason of the server's.
fn failed_with(ws: &Workspace, e: ApiError) -> AppliedWorkspace {
    tracing::warn!(workspace = %ws.id, error = %e.message, "a blueprint could not be applied to a workspace");
    AppliedWorkspace {
        status: "failed",
        plan: WorkspacePlan {
            workspace_id: ws.id.to_string(),
            workspace_name: ws.name.clone(),
            applied_version: None,
            changes: Vec::new(),
            overrides: BTreeMap::new(),
            problems: vec![plan::PlanProblem { field: String::new(), message: format!("not applied: {}", e.message) }],
        },
    }
}

/// Applies a stored version of a blueprint (the current one, or `?version=`) to each workspace:
/// all of a workspace's changes or none, and nothing where nothing differs (applying twice
/// changes nothing). A workspace with problems is left as it was and reported `failed`; the
/// others are applied.
#[utoipa::path(post, path = "/blueprints/{id}/apply", tag = "blueprints", params(("id" = String, Path, description = "The blueprint's id or name"), PlanParams),
    responses((status = 200, body = ApplyOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["installation"])))]
async fn apply_blueprint(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Q(params): Q<PlanParams>,
) -> ApiResult<(Change, Json<ApplyOut>)> {
    principal.installation(Access::Write)?;
    let asked = requested(&params.workspaces)?;
    let (record, version, b) = stored(&state, &id, params.version).await?;
    let workspaces = target_workspaces(&state, &b, asked).await?;
    let target = plan::Target { blueprint_id: &record.id, version, blueprint: &b, prune: params.prune };
    let mut results = Vec::new();
    for ws in &workspaces {
        // One workspace's failure (the database, say) is its own: the others are still applied,
        // and the answer (and the audit log) says which were.
        results.push(apply_to(&state, ws, &target).await.unwrap_or_else(|e| failed_with(ws, e)));
    }
    let count = |status: &str| results.iter().filter(|r| r.status == status).count();
    let (applied, unchanged, failed) = (count("applied"), count("unchanged"), count("failed"));
    let ids = |status: &str| results.iter().filter(|r| r.status == status).map(|r| r.plan.workspace_id.clone()).collect::<Vec<_>>();
    let change = Change::new("blueprint.apply", "blueprint", &record.id).summary(json!({
        "name": record.name, "version": version, "prune": params.prune, "applied": ids("applied"), "failed": ids("failed"),
    }));
    Ok((change, Json(ApplyOut { blueprint: record.into(), version, workspaces: results, applied, unchanged, failed })))
}

/// Drift: how each workspace the blueprint was applied to differs from the version applied
/// there, resource by resource and field by field (changes made by hand in the API or the
/// embedded pages, resources deleted by hand). Overridden fields are the workspace's and never
/// drift. Apply again to revert, or accept a change with `PUT .../overrides/{ws}`.
#[utoipa::path(get, path = "/blueprints/{id}/drift", tag = "blueprints", params(("id" = String, Path, description = "The blueprint's id or name"), DriftParams),
    responses((status = 200, body = DriftOut), (status = 404, body = ErrorBody)), security(("api_key" = ["installation"])))]
async fn blueprint_drift(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Q(params): Q<DriftParams>,
) -> ApiResult<Json<DriftOut>> {
    principal.installation(Access::Read)?;
    let asked = requested(&params.workspaces)?;
    let (record, _) = state.store.get_blueprint(&id, None).await?.ok_or_else(|| ApiError::not_found("blueprint"))?;
    let mut versions: BTreeMap<i64, Blueprint> = BTreeMap::new();
    let mut out = Vec::new();
    for application in state.store.blueprint_applications(&record.id, None).await? {
        if asked.as_ref().is_some_and(|a| !a.contains(&application.workspace_id)) {
            continue;
        }
        let Some(ws) = state.store.get_workspace(&Scope::All, &application.workspace_id).await? else { continue };
        if let std::collections::btree_map::Entry::Vacant(slot) = versions.entry(application.version) {
            slot.insert(stored(&state, &record.id, Some(application.version)).await?.2);
        }
        let b = &versions[&application.version];
        let target = plan::Target { blueprint_id: &record.id, version: application.version, blueprint: b, prune: false };
        let prepared = plan::prepare(&state, &ws, &target).await?;
        let drift = prepared
            .plan
            .changes
            .into_iter()
            .filter(|c| c.action == "update" || c.note.as_deref().is_some_and(|n| n.starts_with("deleted by hand")))
            .collect();
        out.push(WorkspaceDrift {
            workspace_id: ws.id.to_string(),
            workspace_name: ws.name,
            applied_version: application.version,
            applied_at: ts(application.applied_at),
            drift,
            overrides: prepared.plan.overrides,
            problems: prepared.plan.problems,
        });
    }
    let drifted = out.iter().filter(|w| !w.drift.is_empty()).count();
    Ok(Json(DriftOut { blueprint: record.into(), workspaces: out, drifted }))
}

/// The fields a workspace owns instead of the blueprint.
#[utoipa::path(get, path = "/blueprints/{id}/overrides/{ws}", tag = "blueprints", params(("id" = String, Path, description = "The blueprint's id or name"), ("ws" = String, Path)),
    responses((status = 200, body = Overrides), (status = 404, body = ErrorBody)), security(("api_key" = ["installation"])))]
async fn get_overrides(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, ws)): Path<(String, String)>,
) -> ApiResult<Json<Overrides>> {
    principal.installation(Access::Read)?;
    let (record, _) = state.store.get_blueprint(&id, None).await?.ok_or_else(|| ApiError::not_found("blueprint"))?;
    let ws = WorkspaceId::parse(&ws).ok_or_else(|| ApiError::not_found("workspace"))?;
    let overrides = state
        .store
        .managed_resources(&ws)
        .await?
        .into_iter()
        .filter(|m| m.blueprint_id == record.id && !m.overrides.is_empty())
        .map(|m| (plan::resource_name(m.kind, &m.key), m.overrides))
        .collect();
    Ok(Json(Overrides { overrides }))
}

/// Replaces the fields a workspace owns instead of the blueprint: a change made by hand to one
/// of them is no longer drift, and applying keeps it. Resources not named own none.
#[utoipa::path(put, path = "/blueprints/{id}/overrides/{ws}", tag = "blueprints", params(("id" = String, Path, description = "The blueprint's id or name"), ("ws" = String, Path)),
    request_body(content = Overrides, example = json!({"overrides": {"rules.alerts": ["action_config.channel"]}})),
    responses((status = 200, body = Overrides), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["installation"])))]
async fn put_overrides(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, ws)): Path<(String, String)>,
    crate::json::ValidJson(body): crate::json::ValidJson<Overrides>,
) -> ApiResult<(Change, Json<Overrides>)> {
    principal.installation(Access::Write)?;
    let (record, _) = state.store.get_blueprint(&id, None).await?.ok_or_else(|| ApiError::not_found("blueprint"))?;
    let ws = WorkspaceId::parse(&ws).ok_or_else(|| ApiError::not_found("workspace"))?;
    let managed = state.store.managed_resources(&ws).await?;
    let mut list: Vec<(ManagedKind, String, Vec<String>)> = Vec::new();
    for (resource, fields) in &body.overrides {
        let field = format!("overrides{}", crate::blueprint::yaml_segment(resource));
        let (kind, key) = plan::parse_resource(resource)
            .ok_or_else(|| ApiError::invalid(&field, "names a resource as connections.KEY, rules.KEY or event_types.KEY"))?;
        if !managed.iter().any(|m| m.blueprint_id == record.id && m.kind == kind && m.key == key) {
            return Err(ApiError::invalid(&field, "the blueprint manages no such resource in this workspace"));
        }
        if fields.len() > 100 {
            return Err(ApiError::invalid(&field, "at most 100 fields"));
        }
        if let Some(bad) = fields.iter().find(|f| f.len() > 512 || !plan::valid_override(kind, f)) {
            return Err(ApiError::invalid(
                &field,
                format!("{bad:?} is not a field of the resource (one of: {})", plan::owned_fields(kind).join(", ")),
            ));
        }
        let mut fields = fields.clone();
        fields.sort();
        fields.dedup();
        list.push((kind, key, fields));
    }
    if !state.store.set_overrides(&ws, &record.id, &list).await? {
        return Err(ApiError::not_found("blueprint applied to this workspace"));
    }
    let change = Change::new("blueprint.overrides", "blueprint", &record.id)
        .in_workspace(&ws)
        .summary(json!({"name": record.name, "overrides": body.overrides}));
    Ok((change, Json(body)))
}

/// A blueprint applied to a workspace as it was created.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AppliedAtCreation {
    pub id: String,
    pub name: String,
    pub version: i64,
    /// `applied`, `unchanged` (nothing to make) or `failed` (nothing was made: see `problems`,
    /// then set what is missing and apply the blueprint).
    pub status: &'static str,
    /// What was made.
    pub changes: Vec<ResourceChange>,
    pub problems: Vec<plan::PlanProblem>,
}

/// Applies to a new workspace every blueprint whose targets select it by its labels. Never fails:
/// the workspace exists already (and its publishable key is shown once, in the same answer), so
/// what could not be applied is reported, to be applied later.
pub(crate) async fn apply_at_creation(state: &AppState, ws: &Workspace) -> Vec<AppliedAtCreation> {
    let mut out = Vec::new();
    if ws.labels.is_empty() {
        return out;
    }
    let records = match state.store.list_blueprints().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(workspace = %ws.id, error = %e, "could not list the blueprints to apply to a new workspace");
            return out;
        }
    };
    for record in records {
        let (record, version, b) = match stored(state, &record.id, None).await {
            Ok(found) => found,
            // Deleted meanwhile, or unreadable: nothing to apply.
            Err(_) => continue,
        };
        if b.targets.labels.is_empty()
            || !crate::blueprint::resolve::selects(
                &b.targets,
                crate::blueprint::resolve::Workspace { id: ws.id.as_str(), labels: &ws.labels },
            )
        {
            continue;
        }
        let target = plan::Target { blueprint_id: &record.id, version, blueprint: &b, prune: false };
        let done = apply_to(state, ws, &target).await.unwrap_or_else(|e| failed_with(ws, e));
        out.push(AppliedAtCreation {
            id: record.id,
            name: record.name,
            version,
            status: done.status,
            changes: done.plan.changes,
            problems: done.plan.problems,
        });
    }
    out
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// The blueprint's name (default: from the workspace's name).
    pub name: Option<String>,
}

/// The workspace as a blueprint: its connections (credentials as `${secret:...}` references,
/// never values), rules and declared event types, so that a setup built by hand becomes the
/// design other workspaces start from. `secrets` names what each workspace must set before it is
/// applied there.
#[utoipa::path(get, path = "/workspaces/{ws}/blueprint", tag = "blueprints", params(("ws" = String, Path), ExportParams),
    responses((status = 200, body = crate::blueprint::export::Exported), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn export_workspace(
    State(state): State<AppState>,
    principal: Principal,
    Path(ws): Path<String>,
    Q(params): Q<ExportParams>,
) -> ApiResult<Json<crate::blueprint::export::Exported>> {
    principal.forbid_narrowed("export a workspace")?;
    let (_, ws) = super::workspaces::visible_workspace(&state, &principal, &ws, Access::Read).await?;
    let name = params.name.unwrap_or_else(|| crate::blueprint::export::name_for(&ws.name));
    crate::blueprint::valid_name(&name).map_err(|m| ApiError::invalid("name", m))?;
    let connections = plan::all_connections(&state, &ws.id).await?;
    let rules = plan::all_rules(&state, &ws.id).await?;
    let event_types = plan::all_event_types(&state, &ws.id).await?;
    let managed = state.store.managed_resources(&ws.id).await?;
    let (blueprint, secrets, notes) = crate::blueprint::export::export(&state, &ws, &name, &connections, &rules, &event_types, &managed);
    let document = serde_json::to_value(&blueprint).map_err(|_| ApiError::internal("the blueprint could not be written"))?;
    let yaml = crate::blueprint::to_yaml(&document);
    Ok(Json(crate::blueprint::export::Exported { document, yaml, secrets, notes }))
}
