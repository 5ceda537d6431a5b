//! Embed sessions: short-lived tokens a product's backend mints so its customers can manage their
//! own workspace from embedded pages.

use super::common::*;
use crate::audit::Change;
use crate::auth::{Access, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::{RawBody, ValidJson};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use switchyard_core::crypto::{generate_token, hash_token};
use switchyard_core::ids::*;
use switchyard_core::model::{Branding, ResourceRef, Session, SessionRole};
use switchyard_store::{Owned, Scope};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const MIN_TTL: u64 = 60;
const DEFAULT_TTL: u64 = 1800;
const MAX_TTL: u64 = 24 * 3600;
const KNOWN_SCOPES: &[&str] = &["events.payload:read"];
const MIN_LAUNCH_TTL: u64 = 15;
const DEFAULT_LAUNCH_TTL: u64 = 30;
const MAX_LAUNCH_TTL: u64 = 120;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_session))
        .routes(routes!(current_session))
        .routes(routes!(refresh_session))
        .routes(routes!(delete_session))
        .routes(routes!(list_sessions))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    pub workspace_id: String,
    pub role: SessionRole,
    /// 60..86400, default 1800.
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    pub external_user_id: Option<String>,
    /// Extra permissions: `events.payload:read` lets a viewer see payloads.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The page the launch URL opens: `dashboard` (default), `connections`, `rules`, `events`, or a
    /// deeper path such as `events/evt_...`, `rules/new` or `events?status=failed`.
    pub launch_page: Option<String>,
    /// How long the launch URL may wait for its one load: 15..120, default 30.
    pub launch_ttl_seconds: Option<u64>,
    /// The look of this session's pages; unset fields fall back to the installation's.
    #[schema(value_type = Option<Object>)]
    pub branding: Option<Branding>,
    /// Narrows the session to one of the product's records (give both): it sees only that
    /// resource's events and deliveries and the rules bound to it, binds the rules it makes, and
    /// uses the workspace's connections without changing them.
    pub resource: Option<String>,
    pub resource_id: Option<String>,
}

/// A live session, as listed (never its token).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionOut {
    pub id: String,
    pub workspace_id: String,
    pub role: SessionRole,
    pub scopes: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub external_user_id: Option<String>,
    pub resource: Option<ResourceRef>,
    pub created_at: String,
    pub expires_at: String,
}

/// A workspace's live sessions, newest first.
#[utoipa::path(get, path = "/workspaces/{ws}/sessions", tag = "sessions", params(("ws" = String, Path), ListParams),
    responses((status = 200, body = ListOf<SessionOut>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = ["viewer"])))]
async fn list_sessions(
    State(state): State<AppState>,
    principal: Principal,
    Path(ws): Path<String>,
    Q(params): Q<ListParams>,
) -> ApiResult<Json<ListOf<SessionOut>>> {
    let ws = path_id(&ws, WorkspaceId::parse, "workspace")?;
    let scope = principal.operator_in(&ws, Access::Read)?;
    state.store.get_workspace(&scope, &ws).await?.ok_or_else(|| ApiError::not_found("workspace"))?;
    let page = params.page()?;
    let sessions = state.store.list_sessions(&ws, switchyard_core::now_millis(), &page).await?;
    let out = |s: Session| SessionOut {
        id: s.id.into_string(),
        workspace_id: s.workspace_id.into_string(),
        role: s.role,
        scopes: s.scopes,
        allowed_origins: s.allowed_origins,
        external_user_id: s.external_user_id,
        resource: s.resource,
        created_at: ts(s.created_at),
        expires_at: ts(s.expires_at),
    };
    Ok(Json(ListOf::from_fetched(sessions, &page, |s| s.id.to_string(), out)))
}

/// A session an API key (not another session) refreshes or revokes: one in a workspace where the
/// key may mint sessions.
async fn operators_session(state: &AppState, principal: &Principal, id: &SessionId, access: Access) -> ApiResult<Session> {
    let Principal::Operator(operator) = principal else {
        return Err(ApiError::forbidden("this action needs an API key"));
    };
    let scope = principal.for_row(&*state.store, Owned::Session, id.as_str(), access).await?;
    let session =
        state.store.get_session(id).await?.filter(|s| scope.allows(&s.workspace_id)).ok_or_else(|| ApiError::not_found("session"))?;
    // As when minting: up to the key's own role in the workspace.
    if operator.role_in(&session.workspace_id).is_none_or(|held| held.rank() < session.role.rank()) {
        return Err(ApiError::forbidden(format!("this key may not act on {} sessions in this workspace", session.role)));
    }
    Ok(session)
}

fn check_ttl(ttl: Option<u64>) -> ApiResult<u64> {
    let ttl = ttl.unwrap_or(DEFAULT_TTL);
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(ApiError::invalid("ttl_seconds", format!("must be between {MIN_TTL} and {MAX_TTL}")));
    }
    Ok(ttl)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionCreated {
    pub session_id: String,
    /// The bearer token (`st_...`); shown only here and on refresh.
    pub access_token: String,
    pub expires_at: String,
    /// Load this once, in an iframe, to open the embedded pages (single use).
    pub launch_url: String,
    pub launch_expires_at: String,
}

/// What a session token may do, as its own pages ask it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CurrentSession {
    pub session_id: String,
    pub workspace_id: String,
    pub workspace_name: String,
    pub role: SessionRole,
    pub scopes: Vec<String>,
    /// Whether event payloads are shown to this session.
    pub sees_payloads: bool,
    /// The one resource the session is narrowed to, if any.
    pub resource: Option<ResourceRef>,
    pub expires_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionRefreshed {
    pub access_token: String,
    pub expires_at: String,
}

#[utoipa::path(post, path = "/sessions", tag = "sessions", request_body(content = CreateSession, example = json!({"workspace_id": "ws_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3", "role": "editor", "ttl_seconds": 1800, "allowed_origins": ["https://app.example.com"], "external_user_id": "user-42", "launch_page": "connections"})),
    responses((status = 201, body = SessionCreated), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["viewer"])))]
async fn create_session(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    ValidJson(body): ValidJson<CreateSession>,
) -> ApiResult<(StatusCode, Change, Json<SessionCreated>)> {
    let no_such = || ApiError::invalid("workspace_id", "no such workspace");
    let ws = WorkspaceId::parse(&body.workspace_id).ok_or_else(no_such)?;
    // Minting needs only the viewer role: a key mints sessions up to its own role (below).
    let scope = principal.operator_in(&ws, Access::Read).map_err(|e| if e.code == "not_found" { no_such() } else { e })?;
    state.store.get_workspace(&scope, &ws).await?.ok_or_else(no_such)?;
    // A key mints sessions up to its own role in the workspace.
    if let Principal::Operator(o) = &principal {
        if o.role_in(&ws).is_none_or(|held| held.rank() < body.role.rank()) {
            return Err(ApiError::forbidden(format!("this key may not mint {} sessions in this workspace", body.role)));
        }
    }
    let ttl = check_ttl(body.ttl_seconds)?;
    for (i, origin) in body.allowed_origins.iter().enumerate() {
        // Exactly what browsers send in `Origin`: scheme, host and a non-default port; no user
        // info, path, query or fragment, the host in lower case.
        let ok = url::Url::parse(origin)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.origin().ascii_serialization() == origin.as_str());
        if !ok {
            return Err(ApiError::invalid(
                format!("allowed_origins[{i}]"),
                "must be an origin as browsers send it, like https://app.example.com or http://localhost:3000 (no path, query, user or default port)",
            ));
        }
    }
    if let Some((i, _)) = body.scopes.iter().enumerate().find(|(_, s)| !KNOWN_SCOPES.contains(&s.as_str())) {
        return Err(ApiError::invalid(format!("scopes[{i}]"), format!("unknown scope; known: {}", KNOWN_SCOPES.join(", "))));
    }
    let launch_page = body.launch_page.unwrap_or_else(|| "dashboard".into());
    if !crate::embed::valid_page(&launch_page) {
        return Err(ApiError::invalid(
            "launch_page",
            "must be dashboard, connections, rules or events, or a path inside one such as events/evt_..., rules/new or events?status=failed",
        ));
    }
    let launch_ttl = body.launch_ttl_seconds.unwrap_or(DEFAULT_LAUNCH_TTL);
    if !(MIN_LAUNCH_TTL..=MAX_LAUNCH_TTL).contains(&launch_ttl) {
        return Err(ApiError::invalid("launch_ttl_seconds", format!("must be between {MIN_LAUNCH_TTL} and {MAX_LAUNCH_TTL}")));
    }
    if let Some(branding) = &body.branding {
        crate::embed::check_branding(branding, "branding")?;
    }
    let resource = resource_pair(body.resource, body.resource_id)?;
    let now = switchyard_core::now_millis();
    let token = generate_token("st_");
    let launch_token = generate_token("lt_");
    let launch = switchyard_store::NewLaunch {
        token_hash: hash_token(&launch_token),
        page: launch_page,
        expires_at: now + (launch_ttl.min(ttl) as i64) * 1000,
    };
    let session = Session {
        id: SessionId::generate(),
        workspace_id: ws,
        role: body.role,
        scopes: body.scopes,
        allowed_origins: body.allowed_origins,
        external_user_id: body.external_user_id,
        branding: body.branding,
        resource,
        expires_at: now + ttl as i64 * 1000,
        created_at: now,
    };
    state.store.create_session(&session, &hash_token(&token), Some(&launch)).await?;
    let change = Change::new("session.create", "session", &session.id).in_workspace(&session.workspace_id).summary(serde_json::json!({
        "role": session.role, "scopes": session.scopes, "allowed_origins": session.allowed_origins,
        "external_user_id": session.external_user_id, "resource": session.resource, "expires_at": ts(session.expires_at),
    }));
    Ok((
        StatusCode::CREATED,
        change,
        Json(SessionCreated {
            session_id: session.id.into_string(),
            access_token: token,
            expires_at: ts(session.expires_at),
            launch_url: format!("{}/embed/launch/{launch_token}", crate::embed::public_base(&state, &headers)),
            launch_expires_at: ts(launch.expires_at),
        }),
    ))
}

/// The session whose token calls: its workspace, role and expiry (what its pages need to know).
#[utoipa::path(get, path = "/sessions/current", tag = "sessions",
    responses((status = 200, body = CurrentSession), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("session_token" = ["viewer"])))]
async fn current_session(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<CurrentSession>> {
    let Principal::Session(session) = &principal else {
        return Err(ApiError::forbidden("only a session token has a current session"));
    };
    let ws = state
        .store
        .get_workspace(&Scope::Workspace(session.workspace_id.clone()), &session.workspace_id)
        .await?
        .ok_or_else(|| ApiError::not_found("workspace"))?;
    Ok(Json(CurrentSession {
        session_id: session.id.as_str().to_owned(),
        workspace_id: ws.id.into_string(),
        workspace_name: ws.name,
        role: session.role,
        scopes: session.scopes.clone(),
        sees_payloads: principal.sees_payloads(),
        resource: session.resource.clone(),
        expires_at: ts(session.expires_at),
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshSession {
    /// 60..86400, default 1800, counted from now.
    pub ttl_seconds: Option<u64>,
}

/// Issues a new token for the session (the old one stops working at once), valid for `ttl_seconds` from now.
#[utoipa::path(post, path = "/sessions/{id}/refresh", tag = "sessions", params(("id" = String, Path)),
    request_body(content = Option<RefreshSession>, example = json!({"ttl_seconds": 1800})),
    responses((status = 200, body = SessionRefreshed), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = ["viewer"])))]
async fn refresh_session(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: RawBody,
) -> ApiResult<(Change, Json<SessionRefreshed>)> {
    let id = path_id(&id, SessionId::parse, "session")?;
    let session = operators_session(&state, &principal, &id, Access::Read).await?;
    let options: RefreshSession = body.parse_or_default()?;
    let ttl = check_ttl(options.ttl_seconds)?;
    let now = switchyard_core::now_millis();
    let expired = || ApiError::conflict("the session has expired and cannot be refreshed; create a new one");
    if session.expires_at <= now {
        return Err(expired());
    }
    let token = generate_token("st_");
    let expires_at = now + ttl as i64 * 1000;
    // Only while it is still alive: an expiry between the read and this write refuses too.
    if !state.store.refresh_session(&id, &hash_token(&token), expires_at, now).await? {
        return Err(expired());
    }
    let change = Change::new("session.refresh", "session", &id)
        .in_workspace(&session.workspace_id)
        .summary(serde_json::json!({"expires_at": ts(expires_at)}));
    Ok((change, Json(SessionRefreshed { access_token: token, expires_at: ts(expires_at) })))
}

#[utoipa::path(delete, path = "/sessions/{id}", tag = "sessions", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = ["editor"])))]
async fn delete_session(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Change, ())> {
    let id = path_id(&id, SessionId::parse, "session")?;
    let session = operators_session(&state, &principal, &id, Access::Write).await?;
    if !state.store.delete_session(&id).await? {
        return Err(ApiError::not_found("session"));
    }
    let change = Change::new("session.revoke", "session", &id)
        .in_workspace(&session.workspace_id)
        .summary(serde_json::json!({"role": session.role, "external_user_id": session.external_user_id}));
    Ok((StatusCode::NO_CONTENT, change, ()))
}
