//! The team that runs the installation: members (people who sign in to the console), their
//! console sign-ins, and the installation's state (nodes, the delivery queue).

use super::common::*;
use crate::audit::Change;
use crate::auth::{Access, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use serde_json::json;
use switchyard_core::ids::*;
use switchyard_core::model::{ConsoleSession, Member, MemberRole, NodeInfo};
use switchyard_store::EndSessions;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// A node whose last heartbeat is older than this is shown as gone (and soon forgotten).
pub const NODE_STALE_MS: i64 = 30_000;
/// Nodes not heard from for this long are no longer listed.
const NODE_FORGET_MS: i64 = 24 * 3600 * 1000;
/// Queue counts stop here (the console shows "1,000,000+").
pub const QUEUE_COUNT_CAP: u64 = 1_000_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_members))
        .routes(routes!(remove_member))
        .routes(routes!(restore_member))
        .routes(routes!(list_console_sessions))
        .routes(routes!(end_console_session))
        .routes(routes!(installation))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberOut {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub role: MemberRole,
    pub created_at: String,
    pub last_sign_in_at: Option<String>,
    /// Set while removed: they cannot sign in.
    pub removed_at: Option<String>,
}

impl From<Member> for MemberOut {
    fn from(m: Member) -> Self {
        Self {
            id: m.id.into_string(),
            email: m.email,
            name: m.name,
            role: m.role,
            created_at: ts(m.created_at),
            last_sign_in_at: m.last_sign_in_at.map(ts),
            removed_at: m.removed_at.map(ts),
        }
    }
}

/// People who have signed in to the console, newest first.
#[utoipa::path(get, path = "/members", tag = "team", params(ListParams),
    responses((status = 200, body = ListOf<MemberOut>), (status = 403, body = ErrorBody)), security(("api_key" = ["installation"])))]
async fn list_members(State(state): State<AppState>, principal: Principal, Q(params): Q<ListParams>) -> ApiResult<Json<ListOf<MemberOut>>> {
    principal.installation(Access::Read)?;
    let page = params.page()?;
    let members = state.store.list_members(&page).await?;
    Ok(Json(ListOf::from_fetched(members, &page, |m| m.id.to_string(), MemberOut::from)))
}

async fn set_removed(state: &AppState, principal: &Principal, raw: &str, remove: bool) -> ApiResult<(Member, Change)> {
    let owner = principal.owner()?;
    let id = path_id(raw, MemberId::parse, "member")?;
    let member = state.store.get_member(&id).await?.ok_or_else(|| ApiError::not_found("member"))?;
    if remove && owner.actor.id.as_deref() == Some(id.as_str()) {
        return Err(ApiError::conflict("you cannot remove yourself; ask another owner"));
    }
    let at = remove.then(switchyard_core::now_millis);
    state.store.set_member_removed(&id, at).await?;
    let change = Change::new(if remove { "member.remove" } else { "member.restore" }, "member", &id)
        .summary(json!({"email": member.email, "role": member.role}));
    Ok((Member { removed_at: at, ..member }, change))
}

/// Removes a member: their console sessions end at once, and they cannot sign in until restored
/// (even while the provider's settings would let them in).
#[utoipa::path(delete, path = "/members/{id}", tag = "team", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = ["installation"])))]
async fn remove_member(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> ApiResult<(StatusCode, Change, ())> {
    let (_, change) = set_removed(&state, &principal, &id, true).await?;
    Ok((StatusCode::NO_CONTENT, change, ()))
}

/// Lets a removed member sign in again.
#[utoipa::path(post, path = "/members/{id}/restore", tag = "team", params(("id" = String, Path)),
    responses((status = 200, body = MemberOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = ["installation"])))]
async fn restore_member(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(Change, Json<MemberOut>)> {
    let (member, change) = set_removed(&state, &principal, &id, false).await?;
    Ok((change, Json(member.into())))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsoleSessionOut {
    pub id: String,
    pub member_id: Option<String>,
    pub api_key_id: Option<String>,
    pub role: MemberRole,
    /// The member's e-mail or the key's name.
    pub label: String,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: String,
    pub expires_at: String,
}

impl From<ConsoleSession> for ConsoleSessionOut {
    fn from(s: ConsoleSession) -> Self {
        Self {
            id: s.id.into_string(),
            member_id: s.member_id.map(MemberId::into_string),
            api_key_id: s.api_key_id.map(ApiKeyId::into_string),
            role: s.role,
            label: s.label,
            client_addr: s.client_addr,
            user_agent: s.user_agent,
            created_at: ts(s.created_at),
            expires_at: ts(s.expires_at),
        }
    }
}

/// Who is signed in to the console now.
#[utoipa::path(get, path = "/console-sessions", tag = "team", params(ListParams),
    responses((status = 200, body = ListOf<ConsoleSessionOut>), (status = 403, body = ErrorBody)), security(("api_key" = ["installation"])))]
async fn list_console_sessions(
    State(state): State<AppState>,
    principal: Principal,
    Q(params): Q<ListParams>,
) -> ApiResult<Json<ListOf<ConsoleSessionOut>>> {
    principal.installation(Access::Read)?;
    let page = params.page()?;
    let sessions = state.store.list_console_sessions(switchyard_core::now_millis(), &page).await?;
    Ok(Json(ListOf::from_fetched(sessions, &page, |s| s.id.to_string(), ConsoleSessionOut::from)))
}

/// Ends one console sign-in.
#[utoipa::path(delete, path = "/console-sessions/{id}", tag = "team", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("api_key" = ["installation"])))]
async fn end_console_session(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Change, ())> {
    principal.installation(Access::Manage)?;
    let id = path_id(&id, ConsoleSessionId::parse, "console session")?;
    if state.store.end_console_sessions(&EndSessions::One(id.clone())).await? == 0 {
        return Err(ApiError::not_found("console session"));
    }
    Ok((StatusCode::NO_CONTENT, Change::new("console_session.end", "console_session", &id), ()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeOut {
    pub id: String,
    /// `all`, `api` or `worker`.
    pub role: String,
    pub version: String,
    pub hostname: Option<String>,
    pub started_at: String,
    pub heartbeat_at: String,
    /// No heartbeat for 30 seconds.
    pub stale: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueOut {
    /// Deliveries per state (counts stop at 1,000,000).
    pub pending: u64,
    pub retrying: u64,
    pub delivering: u64,
    pub dead: u64,
    /// When the delivery that has waited longest was due.
    pub oldest_due_at: Option<String>,
    /// How long ago that was, in seconds (0 when nothing is overdue).
    pub oldest_due_seconds: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstallationOut {
    pub version: String,
    pub nodes: Vec<NodeOut>,
    pub queue: QueueOut,
}

fn node_out(n: NodeInfo, now: i64) -> NodeOut {
    NodeOut {
        stale: now - n.heartbeat_at > NODE_STALE_MS,
        id: n.id,
        role: n.role,
        version: n.version,
        hostname: n.hostname,
        started_at: ts(n.started_at),
        heartbeat_at: ts(n.heartbeat_at),
    }
}

/// The installation's state: its nodes and their heartbeats, and where the delivery queue stands.
#[utoipa::path(get, path = "/installation", tag = "team",
    responses((status = 200, body = InstallationOut), (status = 403, body = ErrorBody)), security(("api_key" = ["installation"])))]
async fn installation(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<InstallationOut>> {
    principal.installation(Access::Read)?;
    let now = switchyard_core::now_millis();
    let nodes = state.store.list_nodes(now - NODE_FORGET_MS).await?;
    let q = state.store.queue_state(QUEUE_COUNT_CAP).await?;
    let count = |status: &str| q.by_status.iter().find(|(s, _)| *s == status).map(|(_, n)| *n).unwrap_or(0);
    let queue = QueueOut {
        pending: count("pending"),
        retrying: count("retrying"),
        delivering: count("delivering"),
        dead: count("dead"),
        oldest_due_at: q.oldest_due_at.map(ts),
        oldest_due_seconds: q.oldest_due_at.map(|t| ((now - t).max(0) / 1000) as u64).unwrap_or(0),
    };
    Ok(Json(InstallationOut {
        version: env!("CARGO_PKG_VERSION").into(),
        nodes: nodes.into_iter().map(|n| node_out(n, now)).collect(),
        queue,
    }))
}
