//! Who is calling. Credentials are resolved once, here, into a [`Principal`]; handlers ask it for
//! the [`Scope`] an action needs, and the store enforces that scope on every query.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, ORIGIN};
use axum::http::request::Parts;
use switchyard_core::crypto::{constant_time_eq, hash_token};
use switchyard_core::ids::WorkspaceId;
use switchyard_core::model::{ResourceRef, Session, SessionRole};
use switchyard_store::Scope;

use crate::cache::KeyOwner;

#[derive(Debug, Clone)]
pub enum Principal {
    /// An admin key: every workspace.
    Admin,
    /// A publishable key: may only send events into its workspace.
    Publishable(WorkspaceId),
    /// An embed session: what its role allows, inside its workspace.
    Session(Box<Session>),
}

/// What an action does, for role checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Read configuration and history.
    Read,
    /// Create and change connections and rules, replay, send test events.
    Write,
    /// Delete, rotate secrets.
    Manage,
}

impl Principal {
    /// The scope for an action, or 403 when this credential may not do it.
    pub fn scope(&self, access: Access) -> Result<Scope, ApiError> {
        match self {
            Principal::Admin => Ok(Scope::All),
            Principal::Publishable(_) => Err(ApiError::forbidden("a publishable key may only send events (POST /events)")),
            Principal::Session(s) => {
                let allowed = match s.role {
                    SessionRole::Viewer => Access::Read,
                    SessionRole::Editor => Access::Write,
                    SessionRole::Admin => Access::Manage,
                };
                if access <= allowed {
                    Ok(Scope::Workspace(s.workspace_id.clone()))
                } else {
                    Err(ApiError::forbidden(format!("a {} session may not do this", s.role)))
                }
            }
        }
    }

    /// Admin keys only (workspace management, sessions).
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Principal::Admin => Ok(()),
            _ => Err(ApiError::forbidden("this action needs an admin key")),
        }
    }

    /// The one resource a narrowed session sees, if it is one.
    pub fn resource(&self) -> Option<&ResourceRef> {
        match self {
            Principal::Session(s) => s.resource.as_ref(),
            _ => None,
        }
    }

    /// Refuses a session narrowed to one resource: it uses the workspace's connections and event
    /// types but does not change them.
    pub fn forbid_narrowed(&self, what: &str) -> Result<(), ApiError> {
        match self.resource() {
            Some(r) => Err(ApiError::forbidden(format!("a session narrowed to {} {} may not {what}", r.resource, r.resource_id))),
            None => Ok(()),
        }
    }

    /// Whether this credential may see an event with these fields.
    pub fn sees_resource(&self, resource: Option<&str>, resource_id: Option<&str>) -> bool {
        self.resource().is_none_or(|r| r.covers(resource, resource_id))
    }

    /// Whether event payloads may be shown (viewers need the `events.payload:read` scope).
    pub fn sees_payloads(&self) -> bool {
        match self {
            Principal::Session(s) if s.role == SessionRole::Viewer => s.scopes.iter().any(|x| x == "events.payload:read"),
            _ => true,
        }
    }
}

/// The credential a request carries: `Authorization: Bearer ...` or `X-Publishable-Key`.
fn presented_token(parts: &Parts) -> Option<&str> {
    if let Some(value) = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let mut it = value.splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (it.next(), it.next()) {
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some(token.trim());
            }
        }
        return None;
    }
    let token = parts.headers.get("x-publishable-key")?.to_str().map(str::trim).unwrap_or_default();
    // This header is for publishable keys only: an admin key or a session token sent in it is
    // refused (as no credential at all), never honoured under a name that says it is harmless.
    Some(if token.starts_with("pk_") { token } else { "" })
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = presented_token(parts).ok_or_else(|| ApiError::unauthorized("missing credential: send Authorization: Bearer <key>"))?;
        let unknown = || ApiError::unauthorized("the credential is not valid");
        let prefix = token.get(..3).ok_or_else(unknown)?;
        let digest = hash_token(token);
        match prefix {
            "sk_" => {
                if let Some(env) = &state.env_admin_digest {
                    if constant_time_eq(env.as_bytes(), digest.as_bytes()) {
                        return Ok(Principal::Admin);
                    }
                }
                match state.cache.key_owner(&*state.store, &digest, prefix).await? {
                    Some(KeyOwner::Admin) => Ok(Principal::Admin),
                    _ => Err(unknown()),
                }
            }
            "pk_" => match state.cache.key_owner(&*state.store, &digest, prefix).await? {
                Some(KeyOwner::Workspace(ws)) => Ok(Principal::Publishable(ws)),
                _ => Err(unknown()),
            },
            "st_" => {
                let session = state.store.find_session(&digest).await?.ok_or_else(unknown)?;
                if session.expires_at <= switchyard_core::now_millis() {
                    return Err(ApiError::unauthorized("the session has expired; refresh it"));
                }
                if let Some(origin) = parts.headers.get(ORIGIN).and_then(|v| v.to_str().ok()) {
                    // The session's own pages call from this server's origin.
                    let own = crate::embed::is_own_origin(origin, &parts.headers, state.config.public_url.as_deref());
                    if !own && !session.allowed_origins.is_empty() && !session.allowed_origins.iter().any(|o| o == origin) {
                        return Err(ApiError::forbidden("this session may not be used from this origin"));
                    }
                }
                Ok(Principal::Session(Box::new(session)))
            }
            _ => Err(unknown()),
        }
    }
}
