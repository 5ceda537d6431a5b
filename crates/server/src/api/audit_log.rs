//! Reading the audit log. Admin and read-only keys read all of it; a key holding the admin role in
//! a workspace, and an admin session, read that workspace's entries.

use super::common::*;
use crate::auth::{Access, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use switchyard_core::ids::WorkspaceId;
use switchyard_core::model::{AuditEntry, KeyScopeKind};
use switchyard_store::AuditFilter;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit_log))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only this workspace's entries (required for credentials limited to workspaces).
    pub workspace_id: Option<String>,
    /// Only this actor's entries: an API key id (`key_...`), a member id, a session id.
    pub actor: Option<String>,
    /// An action (`connection.create`), or all of a kind (`connection.*`).
    pub action: Option<String>,
    /// RFC 3339: entries at or after.
    pub since: Option<String>,
    /// RFC 3339: entries before.
    pub until: Option<String>,
    /// 1..200, default 50.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActorOut {
    /// `api_key`, `admin_key` (SWITCHYARD_ADMIN_KEY), `member`, `session`, `publishable_key`, `anonymous`.
    pub kind: String,
    pub id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntryOut {
    pub id: String,
    pub at: String,
    pub workspace_id: Option<String>,
    pub actor: ActorOut,
    /// `connection.create`, `rule.delete`, `session.create`, `credential.refused`, ...
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// What changed, secrets left out.
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
}

impl From<AuditEntry> for AuditEntryOut {
    fn from(e: AuditEntry) -> Self {
        Self {
            id: e.id.into_string(),
            at: ts(e.at),
            workspace_id: e.workspace_id.map(WorkspaceId::into_string),
            actor: ActorOut { kind: e.actor_kind, id: e.actor_id, name: e.actor_name },
            action: e.action,
            resource_type: e.resource_type,
            resource_id: e.resource_id,
            summary: e.summary,
            client_addr: e.client_addr,
            user_agent: e.user_agent,
        }
    }
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/audit-log", tag = "audit", params(AuditParams),
    responses((status = 200, body = ListOf<AuditEntryOut>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["admin"]), ("session_token" = ["admin"])))]
async fn list_audit_log(
    State(state): State<AppState>,
    principal: Principal,
    Q(params): Q<AuditParams>,
) -> ApiResult<Json<ListOf<AuditEntryOut>>> {
    let page = ListParams { limit: params.limit, cursor: params.cursor.clone() }.page()?;
    let asked = match params.workspace_id.as_deref() {
        Some(raw) => Some(WorkspaceId::parse(raw).ok_or_else(|| ApiError::not_found("workspace"))?),
        None => None,
    };
    let workspace_id = match &principal {
        Principal::Operator(o) if o.scope != KeyScopeKind::Workspaces => {
            principal.installation(Access::Read)?;
            asked
        }
        Principal::Session(s) => {
            let ws = asked.unwrap_or_else(|| s.workspace_id.clone());
            principal.in_workspace(&ws, Access::Manage)?;
            Some(ws)
        }
        _ => {
            let ws = asked.ok_or_else(|| ApiError::invalid("workspace_id", "required for a key limited to workspaces"))?;
            principal.in_workspace(&ws, Access::Manage)?;
            Some(ws)
        }
    };
    let filter = AuditFilter {
        workspace_id,
        actor_id: params.actor,
        action: params.action,
        since: time_param(params.since.as_deref(), "since")?,
        until: time_param(params.until.as_deref(), "until")?,
    };
    let entries = state.store.list_audit(&filter, &page).await?;
    Ok(Json(ListOf::from_fetched(entries, &page, |e| e.id.to_string(), AuditEntryOut::from)))
}
