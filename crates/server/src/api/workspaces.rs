//! Workspaces and their publishable keys.

use super::common::*;
use crate::audit::Change;
use crate::auth::{Access, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ValidJson;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use switchyard_core::crypto::{generate_token, hash_token, token_hint};
use switchyard_core::ids::*;
use switchyard_core::model::{KeyScopeKind, PublishableKey, Workspace};
use switchyard_store::Scope;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_workspace, list_workspaces))
        .routes(routes!(get_workspace, update_workspace, delete_workspace))
        .routes(routes!(create_publishable_key, list_publishable_keys))
        .routes(routes!(delete_publishable_key))
        .routes(routes!(rotate_publishable_key))
}

/// Resolves a workspace from a path for a credential: 404 when it does not exist or is not the
/// credential's to see (the two are indistinguishable to the caller).
pub async fn visible_workspace(state: &AppState, principal: &Principal, raw: &str, access: Access) -> ApiResult<(Scope, Workspace)> {
    let id = path_id(raw, WorkspaceId::parse, "workspace")?;
    let scope = principal.in_workspace(&id, access)?;
    let ws = state.store.get_workspace(&scope, &id).await?.ok_or_else(|| ApiError::not_found("workspace"))?;
    Ok((scope, ws))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    /// e.g. `acme-prod`.
    pub name: String,
    pub description: Option<String>,
    /// The workspace's plan (see `/plans`); the installation's default plan when absent.
    pub plan: Option<String>,
    /// Limits of its own over the plan's, e.g. `{"connections": 20}`; `null` for one lifts it.
    #[schema(value_type = Option<Object>)]
    pub limits: Option<serde_json::Value>,
    /// e.g. `{"env": "prod", "tier": "enterprise"}`: what blueprints and `GET /workspaces?labels=`
    /// select workspaces by. Up to 32; keys and values are 1 to 63 of `A-Z a-z 0-9 _ . -`.
    pub labels: Option<BTreeMap<String, String>>,
    /// Write-only: secrets to set before blueprints are applied (what their `${secret:NAME}`
    /// stand for), e.g. `{"slack_token": "xoxb-..."}`. Never shown again.
    #[schema(value_type = Option<Object>)]
    pub secrets: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkspace {
    pub name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
    /// Another plan; `null` puts it back on the installation's default. Installation keys only.
    #[serde(default, deserialize_with = "present")]
    pub plan: Option<Option<String>>,
    /// Replaces its own limits over the plan's (`{}` removes them all). Installation keys only.
    #[schema(value_type = Option<Object>)]
    pub limits: Option<serde_json::Value>,
    /// Replaces its labels (`{}` removes them all). Installation keys only: labels decide which
    /// blueprints apply to it.
    pub labels: Option<BTreeMap<String, String>>,
}

/// The most labels one workspace holds.
pub const MAX_LABELS: usize = 32;

fn check_labels(labels: &BTreeMap<String, String>) -> ApiResult<()> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::invalid("labels", format!("holds {} labels; the limit is {MAX_LABELS}", labels.len())));
    }
    for (k, v) in labels {
        crate::blueprint::valid_label(k)
            .and_then(|_| crate::blueprint::valid_label(v))
            .map_err(|m| ApiError::invalid(format!("labels.{k}"), m))?;
    }
    Ok(())
}

/// `?labels=env=prod,tier=enterprise`: workspaces holding every label given.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LabelParams {
    /// `key=value` pairs separated by commas; a workspace is listed when it has all of them.
    pub labels: Option<String>,
}

impl LabelParams {
    pub fn selector(&self) -> ApiResult<BTreeMap<String, String>> {
        let mut selector = BTreeMap::new();
        for pair in self.labels.iter().flat_map(|l| l.split(',')).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| ApiError::invalid("labels", format!("{pair:?} is not key=value")))?;
            crate::blueprint::valid_label(k).and_then(|_| crate::blueprint::valid_label(v)).map_err(|m| ApiError::invalid("labels", m))?;
            if selector.insert(k.to_owned(), v.to_owned()).is_some() {
                return Err(ApiError::invalid("labels", format!("{k} is given twice; a workspace has one value per label")));
            }
        }
        if selector.len() > MAX_LABELS {
            return Err(ApiError::invalid("labels", format!("at most {MAX_LABELS} labels")));
        }
        Ok(selector)
    }
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceOut {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// Its own plan; `null`: the installation's default plan, if any (`GET .../usage` shows the limits in force).
    pub plan: Option<String>,
    /// Its own limits over the plan's (`null` for one lifts it).
    #[schema(value_type = Object)]
    pub limits: serde_json::Value,
    pub labels: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Workspace> for WorkspaceOut {
    fn from(w: Workspace) -> Self {
        Self {
            id: w.id.into_string(),
            name: w.name,
            description: w.description,
            plan: w.plan,
            limits: serde_json::Value::Object(w.limit_overrides),
            labels: w.labels,
            created_at: ts(w.created_at),
            updated_at: ts(w.updated_at),
        }
    }
}

/// A plan name that exists.
async fn existing_plan(state: &AppState, name: &str, field: &str) -> ApiResult<String> {
    if state.store.get_plan(name).await?.is_none() {
        return Err(ApiError::invalid(field, format!("there is no plan named `{name}` (see GET /plans)")));
    }
    Ok(name.to_owned())
}

fn overrides(value: &serde_json::Value) -> ApiResult<serde_json::Map<String, serde_json::Value>> {
    switchyard_core::limits::check_overrides(value).map_err(|(field, message)| ApiError::invalid(format!("limits.{field}"), message))
}

/// A new workspace with its first publishable key; the key's secret is shown only here.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceCreated {
    #[serde(flatten)]
    pub workspace: WorkspaceOut,
    pub publishable_key: NewKeyOut,
    /// The blueprints whose targets select the new workspace (by its labels), applied to it.
    pub blueprints: Vec<super::blueprints::AppliedAtCreation>,
}

/// A new publishable key; `key` is shown only in this response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NewKeyOut {
    pub id: String,
    /// The secret value (`pk_...`).
    pub key: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyOut {
    pub id: String,
    /// The first characters of the key, to recognise it.
    pub hint: String,
    pub created_at: String,
}

fn new_publishable_key(ws: &WorkspaceId) -> (PublishableKey, String) {
    let secret = generate_token("pk_");
    let key = PublishableKey {
        id: PublishableKeyId::generate(),
        workspace_id: ws.clone(),
        hint: token_hint(&secret),
        created_at: switchyard_core::now_millis(),
    };
    (key, secret)
}

#[utoipa::path(post, path = "/workspaces", tag = "workspaces", request_body(content = CreateWorkspace, example = json!({"name": "acme-prod", "description": "Acme, production", "labels": {"env": "prod"}, "secrets": {"slack_token": "xoxb-1234"}})),
    responses((status = 201, body = WorkspaceCreated), (status = 422, body = ErrorBody)), security(("api_key" = ["installation"])))]
async fn create_workspace(
    State(state): State<AppState>,
    principal: Principal,
    ValidJson(body): ValidJson<CreateWorkspace>,
) -> ApiResult<(StatusCode, Change, Json<WorkspaceCreated>)> {
    principal.installation(Access::Write)?;
    check_name(&body.name, "name")?;
    let plan = match &body.plan {
        Some(name) => Some(existing_plan(&state, name, "plan").await?),
        None => None,
    };
    let limit_overrides = body.limits.as_ref().map(overrides).transpose()?.unwrap_or_default();
    let labels = body.labels.unwrap_or_default();
    check_labels(&labels)?;
    let secrets = body.secrets.unwrap_or_default();
    super::secrets::check_secrets(&secrets)?;
    let now = switchyard_core::now_millis();
    let ws = Workspace {
        id: WorkspaceId::generate(),
        name: body.name,
        description: body.description,
        plan,
        limit_overrides,
        labels,
        created_at: now,
        updated_at: now,
    };
    let (key, secret) = new_publishable_key(&ws.id);
    state.store.create_workspace(&ws, &key, &hash_token(&secret), state.config.plans.max_workspaces).await?;
    state.config_changed();
    // The workspace exists now, and its publishable key is shown only in this answer: what fails
    // from here is reported in it (a secret not set shows as a blueprint's problem), never a 5xx.
    let mut unset = Vec::new();
    for (name, value) in &secrets {
        let sealed = state.vault.seal(value.as_bytes(), &switchyard_store::secret_id(&ws.id, name));
        if let Err(e) = state.store.put_secret(&ws.id, name, &sealed, now, Some(super::secrets::MAX_SECRETS)).await {
            tracing::warn!(workspace = %ws.id, secret = %name, error = %e, "a new workspace's secret could not be set");
            unset.push(name.clone());
        }
    }
    // Every new customer starts from a working baseline: the blueprints that select it.
    let blueprints = super::blueprints::apply_at_creation(&state, &ws).await;
    let change = Change::new("workspace.create", "workspace", &ws.id).in_workspace(&ws.id).summary(json!({
        "name": ws.name, "publishable_key_id": key.id, "labels": ws.labels, "secrets": secrets.keys().filter(|n| !unset.contains(n)).collect::<Vec<_>>(),
        "blueprints": blueprints.iter().map(|b| json!({"name": b.name, "version": b.version, "status": b.status})).collect::<Vec<_>>(),
    }));
    let publishable_key = NewKeyOut { id: key.id.into_string(), key: secret, created_at: ts(key.created_at) };
    Ok((StatusCode::CREATED, change, Json(WorkspaceCreated { workspace: ws.into(), publishable_key, blueprints })))
}

#[utoipa::path(get, path = "/workspaces", tag = "workspaces", params(ListParams, LabelParams),
    responses((status = 200, body = ListOf<WorkspaceOut>)), security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn list_workspaces(
    State(state): State<AppState>,
    principal: Principal,
    Q(params): Q<ListParams>,
    Q(labels): Q<LabelParams>,
) -> ApiResult<Json<ListOf<WorkspaceOut>>> {
    let page = params.page()?;
    let selector = labels.selector()?;
    let selected = |ws: &Workspace| selector.iter().all(|(k, v)| ws.labels.get(k) == Some(v));
    let items = match &principal {
        Principal::Operator(o) if o.scope == KeyScopeKind::Workspaces => {
            // The key's own workspaces, newest first, a page at a time.
            let mut ids: Vec<&WorkspaceId> =
                o.workspaces.iter().map(|g| &g.workspace_id).filter(|id| page.before.as_deref().is_none_or(|b| id.as_str() < b)).collect();
            ids.sort_unstable_by(|a, b| b.cmp(a));
            let mut items = Vec::new();
            for id in ids {
                if items.len() >= page.limit as usize {
                    break;
                }
                if let Some(ws) = state.store.get_workspace(&Scope::All, id).await?.filter(selected) {
                    items.push(ws);
                }
            }
            items
        }
        Principal::Session(s) => {
            let mut own = state.store.list_workspaces(&Scope::Workspace(s.workspace_id.clone()), &page).await?;
            own.retain(selected);
            own
        }
        _ => state.store.labelled_workspaces(&selector, &page).await?,
    };
    Ok(Json(ListOf::from_fetched(items, &page, |w| w.id.to_string(), WorkspaceOut::from)))
}

#[utoipa::path(get, path = "/workspaces/{id}", tag = "workspaces", params(("id" = String, Path)),
    responses((status = 200, body = WorkspaceOut), (status = 404, body = ErrorBody)), security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn get_workspace(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> ApiResult<Json<WorkspaceOut>> {
    let (_, ws) = visible_workspace(&state, &principal, &id, Access::Read).await?;
    Ok(Json(ws.into()))
}

#[utoipa::path(patch, path = "/workspaces/{id}", tag = "workspaces", params(("id" = String, Path)), request_body(content = UpdateWorkspace, example = json!({"name": "acme-production"})),
    responses((status = 200, body = WorkspaceOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("api_key" = ["admin"])))]
async fn update_workspace(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ValidJson(body): ValidJson<UpdateWorkspace>,
) -> ApiResult<(Change, Json<WorkspaceOut>)> {
    let ws_id = path_id(&id, WorkspaceId::parse, "workspace")?;
    principal.operator_in(&ws_id, Access::Manage)?;
    let (_, mut ws) = visible_workspace(&state, &principal, &id, Access::Manage).await?;
    let changed: Vec<&str> = [
        ("name", body.name.is_some()),
        ("description", body.description.is_some()),
        ("plan", body.plan.is_some()),
        ("limits", body.limits.is_some()),
        ("labels", body.labels.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, g)| g.then_some(f))
    .collect();
    // A workspace's own admins may rename it, never raise its limits.
    if body.plan.is_some() || body.limits.is_some() || body.labels.is_some() {
        principal
            .installation(Access::Write)
            .map_err(|_| ApiError::forbidden("only an installation-wide key may change a workspace's plan, limits or labels"))?;
    }
    // Everything checked first; then the changes are laid over the workspace as it is, and
    // written only if nobody changed it meanwhile (else read again): a rename by the workspace's
    // admin never undoes an installation's label change made at the same time, nor the reverse.
    if let Some(name) = &body.name {
        check_name(name, "name")?;
    }
    let plan = match &body.plan {
        Some(Some(name)) => Some(Some(existing_plan(&state, name, "plan").await?)),
        Some(None) => Some(None),
        None => None,
    };
    let limits = body.limits.as_ref().map(overrides).transpose()?;
    if let Some(labels) = &body.labels {
        check_labels(labels)?;
    }
    let mut attempts: u64 = 0;
    loop {
        attempts += 1;
        let read_at = ws.updated_at;
        if let Some(name) = &body.name {
            ws.name = name.clone();
        }
        if let Some(description) = &body.description {
            ws.description = description.clone();
        }
        if let Some(plan) = &plan {
            ws.plan = plan.clone();
        }
        if let Some(limits) = &limits {
            ws.limit_overrides = limits.clone();
        }
        if let Some(labels) = &body.labels {
            ws.labels = labels.clone();
        }
        // Always later than what was read, even within one millisecond.
        ws.updated_at = switchyard_core::now_millis().max(read_at + 1);
        if state.store.update_workspace(&ws, read_at).await? {
            break;
        }
        if attempts == 32 {
            return Err(ApiError::conflict("the workspace is being changed by others; try again"));
        }
        // A few milliseconds apart, so that writers racing each other do not race again.
        tokio::time::sleep(std::time::Duration::from_millis(attempts + (ulid::Ulid::new().random() % 4) as u64)).await;
        ws = visible_workspace(&state, &principal, &id, Access::Manage).await?.1;
    }
    state.config_changed();
    let change =
        Change::new("workspace.update", "workspace", &ws.id).in_workspace(&ws.id).summary(json!({"name": ws.name, "fields": changed}));
    Ok((change, Json(ws.into())))
}

#[utoipa::path(delete, path = "/workspaces/{id}", tag = "workspaces", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = ["installation"])))]
async fn delete_workspace(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Change, ())> {
    principal.installation(Access::Manage)?;
    let id = path_id(&id, WorkspaceId::parse, "workspace")?;
    let ws = state.store.get_workspace(&Scope::All, &id).await?.ok_or_else(|| ApiError::not_found("workspace"))?;
    if !state.store.delete_workspace(&Scope::All, &id).await? {
        return Err(ApiError::not_found("workspace"));
    }
    state.config_changed();
    Ok((StatusCode::NO_CONTENT, Change::new("workspace.delete", "workspace", &id).in_workspace(&id).summary(json!({"name": ws.name})), ()))
}

#[utoipa::path(post, path = "/workspaces/{id}/publishable-keys", tag = "workspaces", params(("id" = String, Path)),
    responses((status = 201, body = NewKeyOut), (status = 404, body = ErrorBody)), security(("api_key" = ["admin"])))]
async fn create_publishable_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Change, Json<NewKeyOut>)> {
    principal.operator_in(&path_id(&id, WorkspaceId::parse, "workspace")?, Access::Manage)?;
    let (_, ws) = visible_workspace(&state, &principal, &id, Access::Manage).await?;
    let (key, secret) = new_publishable_key(&ws.id);
    state.store.create_publishable_key(&key, &hash_token(&secret)).await?;
    state.config_changed();
    let change = Change::new("publishable_key.create", "publishable_key", &key.id).in_workspace(&ws.id).summary(json!({"hint": key.hint}));
    Ok((StatusCode::CREATED, change, Json(NewKeyOut { id: key.id.into_string(), key: secret, created_at: ts(key.created_at) })))
}

#[utoipa::path(get, path = "/workspaces/{id}/publishable-keys", tag = "workspaces", params(("id" = String, Path), ListParams),
    responses((status = 200, body = ListOf<KeyOut>), (status = 404, body = ErrorBody)), security(("api_key" = ["viewer"])))]
async fn list_publishable_keys(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Q(params): Q<ListParams>,
) -> ApiResult<Json<ListOf<KeyOut>>> {
    principal.operator_in(&path_id(&id, WorkspaceId::parse, "workspace")?, Access::Read)?;
    let (_, ws) = visible_workspace(&state, &principal, &id, Access::Read).await?;
    let page = params.page()?;
    let keys = state.store.list_publishable_keys(&ws.id, &page).await?;
    let out = |k: PublishableKey| KeyOut { id: k.id.into_string(), hint: k.hint, created_at: ts(k.created_at) };
    Ok(Json(ListOf::from_fetched(keys, &page, |k| k.id.to_string(), out)))
}

#[utoipa::path(delete, path = "/workspaces/{id}/publishable-keys/{key_id}", tag = "workspaces",
    params(("id" = String, Path), ("key_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = ["admin"])))]
async fn delete_publishable_key(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Change, ())> {
    principal.operator_in(&path_id(&id, WorkspaceId::parse, "workspace")?, Access::Manage)?;
    let (_, ws) = visible_workspace(&state, &principal, &id, Access::Manage).await?;
    let key_id = path_id(&key_id, PublishableKeyId::parse, "publishable key")?;
    if !state.store.delete_publishable_key(&ws.id, &key_id).await? {
        return Err(ApiError::not_found("publishable key"));
    }
    state.config_changed();
    Ok((StatusCode::NO_CONTENT, Change::new("publishable_key.delete", "publishable_key", &key_id).in_workspace(&ws.id), ()))
}

/// Replaces a publishable key: a new one is made and the old one stops working at once.
#[utoipa::path(post, path = "/workspaces/{id}/publishable-keys/{key_id}/rotate", tag = "workspaces",
    params(("id" = String, Path), ("key_id" = String, Path)),
    responses((status = 201, body = NewKeyOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = ["admin"])))]
async fn rotate_publishable_key(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Change, Json<NewKeyOut>)> {
    principal.operator_in(&path_id(&id, WorkspaceId::parse, "workspace")?, Access::Manage)?;
    let (_, ws) = visible_workspace(&state, &principal, &id, Access::Manage).await?;
    let old = path_id(&key_id, PublishableKeyId::parse, "publishable key")?;
    let (key, secret) = new_publishable_key(&ws.id);
    state.store.create_publishable_key(&key, &hash_token(&secret)).await?;
    if !state.store.delete_publishable_key(&ws.id, &old).await? {
        // Nothing to replace: undo the new key rather than leave an extra one behind.
        state.store.delete_publishable_key(&ws.id, &key.id).await?;
        return Err(ApiError::not_found("publishable key"));
    }
    state.config_changed();
    let change = Change::new("publishable_key.rotate", "publishable_key", &key.id)
        .in_workspace(&ws.id)
        .summary(json!({"replaced": old, "hint": key.hint}));
    Ok((StatusCode::CREATED, change, Json(NewKeyOut { id: key.id.into_string(), key: secret, created_at: ts(key.created_at) })))
}
