//! A workspace's secrets: the values `${secret:NAME}` stands for in a blueprint's credentials.
//! Write-only: set, listed by name, deleted; never read back. Sealed with the master key, each to
//! its own `<workspace>/<name>` id.

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
use serde_json::json;
use switchyard_store::{secret_id, StoreError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The most secrets one workspace holds.
pub const MAX_SECRETS: u32 = 100;
/// The longest value, in bytes.
pub const MAX_SECRET_BYTES: usize = 16 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_secrets)).routes(routes!(put_secret, delete_secret))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// The value, 1 to 16 KiB; never shown again.
    pub value: String,
}

/// A secret as listed: its name and when it was set, never its value.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretOut {
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretList {
    pub data: Vec<SecretOut>,
    /// Always `null`: the list is whole (at most 100).
    pub next_cursor: Option<String>,
}

/// Sets a secret (or replaces its value): `201` when it is new, `200` when replaced.
#[utoipa::path(put, path = "/workspaces/{ws}/secrets/{secret}", tag = "workspaces", params(("ws" = String, Path), ("secret" = String, Path)),
    request_body(content = PutSecret, example = json!({"value": "xoxb-..."})),
    responses((status = 201, body = SecretOut), (status = 200, body = SecretOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn put_secret(
    State(state): State<AppState>,
    principal: Principal,
    Path((ws, name)): Path<(String, String)>,
    ValidJson(body): ValidJson<PutSecret>,
) -> ApiResult<(StatusCode, Change, Json<SecretOut>)> {
    principal.forbid_narrowed("set secrets")?;
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Write).await?;
    check_secret(&name, &body.value, "name", "value")?;
    let sealed = state.vault.seal(body.value.as_bytes(), &secret_id(&ws.id, &name));
    let now = switchyard_core::now_millis();
    let created = state.store.put_secret(&ws.id, &name, &sealed, now, Some(MAX_SECRETS)).await.map_err(|e| match e {
        StoreError::Limit { max, .. } => ApiError::invalid("name", format!("a workspace holds at most {max} secrets; delete one first")),
        other => other.into(),
    })?;
    let info = state.store.list_secrets(&ws.id).await?.into_iter().find(|s| s.name == name);
    let out = match info {
        Some(s) => SecretOut { name: s.name, created_at: ts(s.created_at), updated_at: ts(s.updated_at) },
        None => SecretOut { name: name.clone(), created_at: ts(now), updated_at: ts(now) },
    };
    let change = Change::new(if created { "secret.create" } else { "secret.update" }, "secret", &name)
        .in_workspace(&ws.id)
        .summary(json!({"name": name}));
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, change, Json(out)))
}

/// Checks a secret's name (the rule of the `${secret:NAME}` that refers to it) and value.
fn check_secret(name: &str, value: &str, name_field: &str, value_field: &str) -> ApiResult<()> {
    crate::blueprint::valid_key(name).map_err(|m| ApiError::invalid(name_field, m))?;
    if value.is_empty() || value.len() > MAX_SECRET_BYTES {
        return Err(ApiError::invalid(value_field, format!("must be 1 to {MAX_SECRET_BYTES} bytes")));
    }
    Ok(())
}

/// Checks the secrets a new workspace is created with.
pub(crate) fn check_secrets(secrets: &std::collections::BTreeMap<String, String>) -> ApiResult<()> {
    if secrets.len() > MAX_SECRETS as usize {
        return Err(ApiError::invalid("secrets", format!("a workspace holds at most {MAX_SECRETS} secrets")));
    }
    for (name, value) in secrets {
        let field = format!("secrets{}", crate::blueprint::yaml_segment(name));
        check_secret(name, value, &field, &field)?;
    }
    Ok(())
}

/// The workspace's secrets by name (never their values).
#[utoipa::path(get, path = "/workspaces/{ws}/secrets", tag = "workspaces", params(("ws" = String, Path)),
    responses((status = 200, body = SecretList), (status = 404, body = ErrorBody)),
    security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn list_secrets(State(state): State<AppState>, principal: Principal, Path(ws): Path<String>) -> ApiResult<Json<SecretList>> {
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Read).await?;
    let data = state
        .store
        .list_secrets(&ws.id)
        .await?
        .into_iter()
        .map(|s| SecretOut { name: s.name, created_at: ts(s.created_at), updated_at: ts(s.updated_at) })
        .collect();
    Ok(Json(SecretList { data, next_cursor: None }))
}

#[utoipa::path(delete, path = "/workspaces/{ws}/secrets/{secret}", tag = "workspaces", params(("ws" = String, Path), ("secret" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn delete_secret(
    State(state): State<AppState>,
    principal: Principal,
    Path((ws, name)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Change, ())> {
    principal.forbid_narrowed("delete secrets")?;
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Write).await?;
    if !state.store.delete_secret(&ws.id, &name).await? {
        return Err(ApiError::not_found("secret"));
    }
    Ok((StatusCode::NO_CONTENT, Change::new("secret.delete", "secret", &name).in_workspace(&ws.id).summary(json!({"name": name})), ()))
}
