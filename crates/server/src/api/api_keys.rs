//! API keys: named management credentials, shown once, stored hashed, each with a scope (`admin`,
//! `read_only`, or a list of workspaces with a role in each) and an optional expiry.

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
use std::collections::HashSet;
use switchyard_core::crypto::{generate_token, hash_token, token_hint};
use switchyard_core::ids::*;
use switchyard_core::model::{ApiKey, KeyScopeKind, WorkspaceGrant};
use switchyard_store::{RevokeOutcome, Scope};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most workspaces one key may be scoped to.
pub const MAX_GRANTS: usize = 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_api_key, list_api_keys)).routes(routes!(get_api_key, delete_api_key))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// What the key is for, e.g. `billing backend` or `CI`.
    pub name: String,
    /// `admin` (everything), `read_only` (every GET), or `workspaces` (the listed workspaces, with a
    /// role in each).
    pub scope: KeyScopeKind,
    /// For the `workspaces` scope: each workspace and the role held in it (viewer, editor, admin).
    #[serde(default)]
    pub workspaces: Vec<WorkspaceGrant>,
    /// When the key stops working (RFC 3339, in the future); never when absent.
    pub expires_at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyOut {
    pub id: String,
    pub name: String,
    /// The key's first characters, to tell keys apart.
    pub hint: String,
    pub scope: KeyScopeKind,
    pub workspaces: Vec<WorkspaceGrant>,
    pub expires_at: Option<String>,
    /// To the minute.
    pub last_used_at: Option<String>,
    /// Who created it (an actor id of the audit log), when known.
    pub created_by: Option<String>,
    pub created_at: String,
}

impl From<&ApiKey> for ApiKeyOut {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id.to_string(),
            name: k.name.clone(),
            hint: k.hint.clone(),
            scope: k.scope,
            workspaces: k.workspaces.clone(),
            expires_at: k.expires_at.map(ts),
            last_used_at: k.last_used_at.map(ts),
            created_by: k.created_by.clone(),
            created_at: ts(k.created_at),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyCreated {
    #[serde(flatten)]
    pub api_key: ApiKeyOut,
    /// The key itself (`sk_...`): shown only here.
    pub key: String,
}

/// Creates a key. Its value is in the answer and nowhere else: store it now.
#[utoipa::path(post, path = "/api-keys", tag = "api-keys", request_body(content = CreateApiKey, example = json!({"name": "billing backend", "scope": "workspaces", "workspaces": [{"workspace_id": "ws_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3", "role": "admin"}], "expires_at": "2027-06-30T00:00:00Z"})),
    responses((status = 201, body = ApiKeyCreated), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["installation"])))]
async fn create_api_key(
    State(state): State<AppState>,
    principal: Principal,
    ValidJson(body): ValidJson<CreateApiKey>,
) -> ApiResult<(StatusCode, Change, Json<ApiKeyCreated>)> {
    let operator = principal.installation(Access::Write)?;
    check_name(&body.name, "name")?;
    let now = switchyard_core::now_millis();
    let expires_at = time_param(body.expires_at.as_deref(), "expires_at")?;
    if expires_at.is_some_and(|t| t <= now) {
        return Err(ApiError::invalid("expires_at", "must be in the future"));
    }
    match body.scope {
        KeyScopeKind::Workspaces if body.workspaces.is_empty() => {
            return Err(ApiError::invalid("workspaces", "a key with the workspaces scope needs at least one workspace"));
        }
        KeyScopeKind::Workspaces if body.workspaces.len() > MAX_GRANTS => {
            return Err(ApiError::invalid("workspaces", format!("at most {MAX_GRANTS} workspaces per key")));
        }
        KeyScopeKind::Admin | KeyScopeKind::ReadOnly if !body.workspaces.is_empty() => {
            return Err(ApiError::invalid("workspaces", "only a key with the workspaces scope lists workspaces"));
        }
        _ => {}
    }
    let mut seen = HashSet::new();
    for (i, grant) in body.workspaces.iter().enumerate() {
        if !seen.insert(&grant.workspace_id) {
            return Err(ApiError::invalid(format!("workspaces[{i}].workspace_id"), "listed twice"));
        }
        let known = WorkspaceId::parse(grant.workspace_id.as_str()).is_some()
            && state.store.get_workspace(&Scope::All, &grant.workspace_id).await?.is_some();
        if !known {
            return Err(ApiError::invalid(format!("workspaces[{i}].workspace_id"), "no such workspace"));
        }
    }
    let secret = generate_token("sk_");
    let key = ApiKey {
        id: ApiKeyId::generate(),
        name: body.name,
        hint: token_hint(&secret),
        scope: body.scope,
        workspaces: body.workspaces,
        expires_at,
        last_used_at: None,
        created_by: operator.actor.id.clone().or_else(|| Some(operator.actor.kind.to_owned())),
        created_at: now,
    };
    state.store.create_api_key(&key, &hash_token(&secret)).await?;
    state.config_changed();
    let change = Change::new("api_key.create", "api_key", &key.id).summary(json!({
        "name": key.name, "scope": key.scope, "workspaces": key.workspaces, "expires_at": key.expires_at.map(ts),
    }));
    Ok((StatusCode::CREATED, change, Json(ApiKeyCreated { api_key: ApiKeyOut::from(&key), key: secret })))
}

#[utoipa::path(get, path = "/api-keys", tag = "api-keys", params(ListParams),
    responses((status = 200, body = ListOf<ApiKeyOut>), (status = 403, body = ErrorBody)), security(("api_key" = ["installation"])))]
async fn list_api_keys(
    State(state): State<AppState>,
    principal: Principal,
    Q(params): Q<ListParams>,
) -> ApiResult<Json<ListOf<ApiKeyOut>>> {
    principal.installation(Access::Read)?;
    let page = params.page()?;
    let keys = state.store.list_api_keys(&page).await?;
    Ok(Json(ListOf::from_fetched(keys, &page, |k| k.id.to_string(), |k| ApiKeyOut::from(&k))))
}

#[utoipa::path(get, path = "/api-keys/{id}", tag = "api-keys", params(("id" = String, Path)),
    responses((status = 200, body = ApiKeyOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = ["installation"])))]
async fn get_api_key(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> ApiResult<Json<ApiKeyOut>> {
    principal.installation(Access::Read)?;
    let id = path_id(&id, ApiKeyId::parse, "API key")?;
    let key = state.store.get_api_key(&id).await?.ok_or_else(|| ApiError::not_found("API key"))?;
    Ok(Json(ApiKeyOut::from(&key)))
}

/// Revokes a key at once, on every node. The last admin credential cannot be revoked: create
/// another admin key first (or set `SWITCHYARD_ADMIN_KEY`).
#[utoipa::path(delete, path = "/api-keys/{id}", tag = "api-keys", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = ["installation"])))]
async fn delete_api_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Change, ())> {
    principal.installation(Access::Manage)?;
    let id = path_id(&id, ApiKeyId::parse, "API key")?;
    let key = state.store.get_api_key(&id).await?.ok_or_else(|| ApiError::not_found("API key"))?;
    let other_admin = state.env_admin_digest.is_some();
    match state.store.delete_api_key(&id, switchyard_core::now_millis(), other_admin).await? {
        RevokeOutcome::Revoked => {
            state.config_changed();
            let change = Change::new("api_key.delete", "api_key", &id).summary(json!({"name": key.name, "scope": key.scope}));
            Ok((StatusCode::NO_CONTENT, change, ()))
        }
        RevokeOutcome::NotFound => Err(ApiError::not_found("API key")),
        RevokeOutcome::LastAdmin => {
            Err(ApiError::conflict("this is the last admin key: create another admin key first, so the installation is never locked out"))
        }
    }
}
