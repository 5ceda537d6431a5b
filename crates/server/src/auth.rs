//! Who is calling, and whether they may. Every credential (API keys, the configured admin key,
//! publishable keys, embed sessions, and signed-in members of the console) is resolved here, once,
//! into a [`Principal`], and checked here against the route's declared requirement before any
//! handler runs or any body is read.
//!
//! A route's requirement is its `security` in the OpenAPI document (see [`Policy`]): which
//! credential kinds it accepts and, as the requirement's scopes, the role it needs: `installation`
//! (installation-wide: admin keys, and read-only keys for reads), or a workspace role (`viewer`,
//! `editor`, `admin`) held in the workspace the path names. Handlers then ask the principal for the
//! [`Scope`] of what they touch, which the store enforces on every query.

use crate::audit::{Actor, ActorSlot};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams};
use axum::http::header::{AUTHORIZATION, ORIGIN};
use axum::http::request::Parts;
use axum::http::Method;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use switchyard_core::crypto::{constant_time_eq, hash_token};
use switchyard_core::ids::*;
use switchyard_core::model::{ApiKey, ConsoleSession, KeyScopeKind, MemberRole, ResourceRef, Session, SessionRole, WorkspaceGrant};
use switchyard_store::{Owned, Scope, Store};

use crate::cache::KeyOwner;

#[derive(Debug, Clone)]
pub enum Principal {
    /// A management credential: an API key, the configured admin key, or a signed-in member.
    Operator(Arc<Operator>),
    /// A publishable key: may only send events into its workspace.
    Publishable(WorkspaceId),
    /// An embed session: what its role allows, inside its workspace.
    Session(Box<Session>),
}

/// A management credential and what it may do.
#[derive(Debug, Clone)]
pub struct Operator {
    pub actor: Actor,
    pub scope: KeyScopeKind,
    /// For a `workspaces` scope: the role held in each.
    pub workspaces: Vec<WorkspaceGrant>,
    /// Manages the team's members: admin keys, and owners signed in to the console.
    pub owner: bool,
}

impl Operator {
    /// The configured `SWITCHYARD_ADMIN_KEY`.
    pub fn env_admin() -> Self {
        Self {
            actor: Actor { kind: "admin_key", id: None, name: Some("SWITCHYARD_ADMIN_KEY".into()) },
            scope: KeyScopeKind::Admin,
            workspaces: vec![],
            owner: true,
        }
    }

    pub fn from_key(key: &ApiKey) -> Self {
        Self {
            actor: Actor { kind: "api_key", id: Some(key.id.to_string()), name: Some(key.name.clone()) },
            scope: key.scope,
            workspaces: key.workspaces.clone(),
            owner: key.scope == KeyScopeKind::Admin,
        }
    }

    /// Someone signed in to the console: owners and admins administer, viewers read.
    pub fn from_console(session: &ConsoleSession) -> Self {
        let actor = match (&session.member_id, &session.api_key_id) {
            (Some(m), _) => Actor { kind: "member", id: Some(m.to_string()), name: Some(session.label.clone()) },
            (_, Some(k)) => Actor { kind: "api_key", id: Some(k.to_string()), name: Some(session.label.clone()) },
            _ => Actor { kind: "admin_key", id: None, name: Some(session.label.clone()) },
        };
        Self {
            actor,
            scope: if session.role == MemberRole::Viewer { KeyScopeKind::ReadOnly } else { KeyScopeKind::Admin },
            workspaces: vec![],
            owner: session.role == MemberRole::Owner,
        }
    }

    /// The role this credential holds in a workspace (admin and read-only keys: in every one).
    pub fn role_in(&self, ws: &WorkspaceId) -> Option<SessionRole> {
        match self.scope {
            KeyScopeKind::Admin => Some(SessionRole::Admin),
            KeyScopeKind::ReadOnly => Some(SessionRole::Viewer),
            KeyScopeKind::Workspaces => self.workspaces.iter().find(|g| &g.workspace_id == ws).map(|g| g.role),
        }
    }
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

impl Access {
    /// The workspace role an action needs.
    pub fn role(self) -> SessionRole {
        match self {
            Access::Read => SessionRole::Viewer,
            Access::Write => SessionRole::Editor,
            Access::Manage => SessionRole::Admin,
        }
    }
}

fn owned_name(owned: Owned) -> &'static str {
    match owned {
        Owned::Connection => "connection",
        Owned::Rule => "rule",
        Owned::Event => "event",
        Owned::Delivery => "delivery",
        Owned::Session => "session",
    }
}

impl Principal {
    /// Who this is, for the audit log.
    pub fn actor(&self) -> Actor {
        match self {
            Principal::Operator(o) => o.actor.clone(),
            Principal::Publishable(ws) => Actor { kind: "publishable_key", id: None, name: Some(ws.to_string()) },
            Principal::Session(s) => Actor { kind: "session", id: Some(s.id.to_string()), name: s.external_user_id.clone() },
        }
    }

    /// Installation-wide actions (creating workspaces, API keys, the whole audit log): admin
    /// credentials, and read-only ones for reading.
    pub fn installation(&self, access: Access) -> ApiResult<&Operator> {
        match self {
            Principal::Operator(o) => match o.scope {
                KeyScopeKind::Admin => Ok(o),
                KeyScopeKind::ReadOnly if access == Access::Read => Ok(o),
                KeyScopeKind::ReadOnly => Err(ApiError::forbidden("a read-only key may only read")),
                KeyScopeKind::Workspaces => Err(ApiError::forbidden("this key is limited to its workspaces")),
            },
            _ => Err(ApiError::forbidden("this action needs an API key with the admin scope")),
        }
    }

    /// Managing the team's members (removing, restoring): owners and admin keys.
    pub fn owner(&self) -> ApiResult<&Operator> {
        match self {
            Principal::Operator(o) if o.owner => Ok(o),
            _ => Err(ApiError::forbidden("only an owner (or an admin API key) manages members")),
        }
    }

    /// An action inside one workspace: the scope the store enforces. 404 for a workspace that is
    /// not this credential's (indistinguishable from one that does not exist), 403 for an action
    /// its role does not allow there.
    pub fn in_workspace(&self, ws: &WorkspaceId, access: Access) -> ApiResult<Scope> {
        let role = match self {
            Principal::Publishable(_) => return Err(ApiError::forbidden("a publishable key may only send events (POST /events)")),
            Principal::Session(s) => {
                if s.role.rank() < access.role().rank() {
                    return Err(ApiError::forbidden(format!("a {} session may not do this", s.role)));
                }
                if &s.workspace_id != ws {
                    return Err(ApiError::not_found("workspace"));
                }
                s.role
            }
            Principal::Operator(o) => {
                if o.scope == KeyScopeKind::ReadOnly && access != Access::Read {
                    return Err(ApiError::forbidden("a read-only key may only read"));
                }
                o.role_in(ws).ok_or_else(|| ApiError::not_found("workspace"))?
            }
        };
        if role.rank() < access.role().rank() {
            return Err(ApiError::forbidden(format!("this key's role in the workspace ({role}) may not do this")));
        }
        Ok(Scope::Workspace(ws.clone()))
    }

    /// Like [`Self::in_workspace`], for actions only API keys and members take (not sessions):
    /// publishable keys, workspace settings, minting sessions.
    pub fn operator_in(&self, ws: &WorkspaceId, access: Access) -> ApiResult<Scope> {
        match self {
            Principal::Operator(_) => self.in_workspace(ws, access),
            _ => Err(ApiError::forbidden("this action needs an API key")),
        }
    }

    /// An action on one row found by its id: where the store may look for it. A credential limited
    /// to some workspaces has the row's workspace looked up first.
    pub async fn for_row(&self, store: &dyn Store, owned: Owned, id: &str, access: Access) -> ApiResult<Scope> {
        match self {
            Principal::Operator(o) if o.scope != KeyScopeKind::Workspaces => {
                self.installation(access)?;
                Ok(Scope::All)
            }
            Principal::Operator(_) => {
                let ws = store.workspace_of(owned, id).await?.ok_or_else(|| ApiError::not_found(owned_name(owned)))?;
                self.in_workspace(&ws, access).map_err(|e| if e.code == "not_found" { ApiError::not_found(owned_name(owned)) } else { e })
            }
            Principal::Session(s) => self.in_workspace(&s.workspace_id.clone(), access),
            Principal::Publishable(_) => Err(ApiError::forbidden("a publishable key may only send events (POST /events)")),
        }
    }

    /// Any credential that may read somewhere (the catalog of destination types).
    pub fn reads_something(&self) -> ApiResult<()> {
        match self {
            Principal::Publishable(_) => Err(ApiError::forbidden("a publishable key may only send events (POST /events)")),
            _ => Ok(()),
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

/// What a route asks of a credential, read from its `security` in the OpenAPI document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requirement {
    /// API keys (and members): `None` when refused.
    pub api_key: Option<KeyNeed>,
    /// Embed sessions: the least role, `None` when refused.
    pub session: Option<SessionRole>,
    pub publishable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyNeed {
    /// Installation-wide: admin scope (read-only scope for reads).
    Installation,
    /// A role in the workspace the route names (or, where it names none, in some workspace).
    Role(SessionRole),
}

/// Every API route's requirement, by method and route template.
#[derive(Debug, Default)]
pub struct Policy(HashMap<String, Vec<(Method, Requirement)>>);

impl Policy {
    /// Reads the requirements from the OpenAPI document. Panics on a scope it does not know: the
    /// document is built from the code, so that is a programming error caught by every test.
    pub fn from_openapi(doc: &utoipa::openapi::OpenApi) -> Self {
        let mut routes = HashMap::new();
        let value = serde_json::to_value(doc).expect("the OpenAPI document serialises");
        let paths = value.get("paths").and_then(|p| p.as_object()).cloned().unwrap_or_default();
        for (path, ops) in paths {
            for (method, op) in ops.as_object().into_iter().flatten() {
                let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
                let mut req = Requirement::default();
                for alternative in op.get("security").and_then(|s| s.as_array()).into_iter().flatten() {
                    for (scheme, scopes) in alternative.as_object().into_iter().flatten() {
                        let scope = scopes.as_array().and_then(|s| s.first()).and_then(|s| s.as_str()).unwrap_or("");
                        match scheme.as_str() {
                            "api_key" => {
                                req.api_key = Some(match scope {
                                    "installation" => KeyNeed::Installation,
                                    role => KeyNeed::Role(
                                        SessionRole::parse(role).unwrap_or_else(|| panic!("{path}: unknown api_key scope {role:?}")),
                                    ),
                                })
                            }
                            "session_token" => {
                                req.session =
                                    Some(SessionRole::parse(scope).unwrap_or_else(|| panic!("{path}: unknown session scope {scope:?}")))
                            }
                            "publishable_key" => req.publishable = true,
                            other => panic!("{path}: unknown security scheme {other}"),
                        }
                    }
                }
                routes.entry(path.clone()).or_insert_with(Vec::new).push((method, req));
            }
        }
        Self(routes)
    }

    /// (No allocation: ingestion asks this on every request.)
    pub fn get(&self, method: &Method, route: &str) -> Option<Requirement> {
        let method = if method == Method::HEAD { &Method::GET } else { method };
        self.0.get(route)?.iter().find(|(m, _)| m == method).map(|(_, r)| *r)
    }
}

/// The policy of this build's API.
pub fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| Policy::from_openapi(&crate::api::openapi()))
}

/// The token of an `Authorization: Bearer ...` header, if the request has one.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The credential a request carries: `Authorization: Bearer ...` or `X-Publishable-Key`.
fn presented_token(parts: &Parts) -> Option<&str> {
    if parts.headers.contains_key(AUTHORIZATION) {
        return bearer_token(&parts.headers);
    }
    let token = parts.headers.get("x-publishable-key")?.to_str().map(str::trim).unwrap_or_default();
    // This header is for publishable keys only: an admin key or a session token sent in it is
    // refused (as no credential at all), never honoured under a name that says it is harmless.
    Some(if token.starts_with("pk_") { token } else { "" })
}

/// The kind of credential a token claims to be, for the audit log.
fn credential_kind(token: &str) -> &'static str {
    match token.get(..3) {
        Some("sk_") => "api_key",
        Some("pk_") => "publishable_key",
        Some("st_") => "session",
        Some("cs_") => "console_session",
        _ => "unknown",
    }
}

/// Who the token belongs to (and the token's digest), or why it is refused.
async fn authenticate(parts: &Parts, state: &AppState, slot: Option<&ActorSlot>) -> ApiResult<(Principal, String)> {
    let mut digest = String::new();
    let principal = identify(parts, state, slot, &mut digest).await?;
    Ok((principal, digest))
}

async fn identify(parts: &Parts, state: &AppState, slot: Option<&ActorSlot>, digest_out: &mut String) -> ApiResult<Principal> {
    let Some(token) = presented_token(parts).or_else(|| crate::console::cookie_token(&parts.headers)) else {
        return Err(ApiError::unauthorized("missing credential: send Authorization: Bearer <key>"));
    };
    let refuse = |actor: Option<Actor>, reason: &str, error: ApiError| {
        if let Some(slot) = slot {
            slot.refused(credential_kind(token), actor, reason);
        }
        error
    };
    let unknown = || ApiError::unauthorized("the credential is not valid");
    let digest = hash_token(token);
    digest_out.clone_from(&digest);
    let now = switchyard_core::now_millis();
    match token.get(..3).unwrap_or_default() {
        "sk_" => {
            if let Some(env) = &state.env_admin_digest {
                if constant_time_eq(env.as_bytes(), digest.as_bytes()) {
                    return Ok(Principal::Operator(state.env_admin.clone()));
                }
            }
            match state.cache.key_owner(&*state.store, &digest, "sk_").await? {
                Some(KeyOwner::Api { operator, expires_at, id, .. }) => {
                    if expires_at.is_some_and(|t| t <= now) {
                        return Err(refuse(Some(operator.actor.clone()), "expired", ApiError::unauthorized("the API key has expired")));
                    }
                    state.key_usage.touch(&state.store, &id, now);
                    Ok(Principal::Operator(operator))
                }
                _ => Err(refuse(None, "unknown", unknown())),
            }
        }
        "pk_" => match state.cache.key_owner(&*state.store, &digest, "pk_").await? {
            Some(KeyOwner::Workspace(ws)) => Ok(Principal::Publishable(ws)),
            _ => Err(refuse(None, "unknown", unknown())),
        },
        "st_" => {
            let Some(session) = state.store.find_session(&digest).await? else { return Err(refuse(None, "unknown", unknown())) };
            let actor = Principal::Session(Box::new(session.clone())).actor();
            if session.expires_at <= now {
                return Err(refuse(Some(actor), "expired", ApiError::unauthorized("the session has expired; refresh it")));
            }
            if let Some(origin) = parts.headers.get(ORIGIN).and_then(|v| v.to_str().ok()) {
                // The session's own pages call from this server's origin.
                let own = crate::embed::is_own_origin(origin, &parts.headers, state.config.public_url.as_deref());
                if !own && !session.allowed_origins.is_empty() && !session.allowed_origins.iter().any(|o| o == origin) {
                    return Err(refuse(Some(actor), "origin", ApiError::forbidden("this session may not be used from this origin")));
                }
            }
            Ok(Principal::Session(Box::new(session)))
        }
        "cs_" => {
            // The console's own pages, signed in: the cookie, and for every change the CSRF token
            // of the page that holds it.
            let Some(session) = state.store.find_console_session(&digest, now).await? else {
                return Err(refuse(None, "unknown", ApiError::unauthorized("the console sign-in has expired; sign in again")));
            };
            let operator = Operator::from_console(&session);
            if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
                let sent = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
                if !constant_time_eq(sent.as_bytes(), crate::console::csrf_token(token).as_bytes()) {
                    let error = ApiError::forbidden("a console change must carry its page's CSRF token (X-CSRF-Token)");
                    return Err(refuse(Some(operator.actor), "csrf", error));
                }
                let origin = parts.headers.get(ORIGIN).and_then(|v| v.to_str().ok());
                if origin.is_some_and(|o| !crate::embed::is_own_origin(o, &parts.headers, state.config.public_url.as_deref())) {
                    return Err(refuse(
                        Some(operator.actor),
                        "origin",
                        ApiError::forbidden("console changes come from the console's own origin"),
                    ));
                }
            }
            Ok(Principal::Operator(Arc::new(operator)))
        }
        _ => Err(refuse(None, "unknown", unknown())),
    }
}

/// The console sign-in a request's cookie carries, with the cookie's token: for the console's own
/// pages (the shell, signing out). API calls with the cookie go through [`Principal`] as any other.
pub async fn console_sign_in<'h>(state: &AppState, headers: &'h axum::http::HeaderMap) -> ApiResult<Option<(ConsoleSession, &'h str)>> {
    let Some(token) = crate::console::cookie_token(headers) else { return Ok(None) };
    let found = state.store.find_console_session(&hash_token(token), switchyard_core::now_millis()).await?;
    Ok(found.map(|session| (session, token)))
}

/// The workspace a route's path names, directly (`/workspaces/{ws}/...`) or through the row it
/// names (`/connections/{id}`): `Err(404)` when the path names one that does not exist.
async fn path_workspace(parts: &mut Parts, state: &AppState, route: &str) -> ApiResult<Option<(WorkspaceId, &'static str)>> {
    let Ok(params) = RawPathParams::from_request_parts(parts, state).await else { return Ok(None) };
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_owned());
    let rest = route.strip_prefix("/api/v1/").unwrap_or(route);
    let (owned, id) = if rest.starts_with("workspaces/{ws}") {
        (None, param("ws"))
    } else if rest.starts_with("workspaces/{id}") {
        (None, param("id"))
    } else if rest.starts_with("connections/{id}") {
        (Some(Owned::Connection), param("id"))
    } else if rest.starts_with("rules/{id}") {
        (Some(Owned::Rule), param("id"))
    } else if rest.starts_with("events/{id}") {
        (Some(Owned::Event), param("id"))
    } else if rest.starts_with("deliveries/{id}") {
        (Some(Owned::Delivery), param("id"))
    } else if rest.starts_with("sessions/{id}") {
        (Some(Owned::Session), param("id"))
    } else {
        return Ok(None);
    };
    let Some(id) = id else { return Ok(None) };
    match owned {
        None => Ok(Some((WorkspaceId::parse(&id).ok_or_else(|| ApiError::not_found("workspace"))?, "workspace"))),
        Some(owned) => {
            let ws = state.store.workspace_of(owned, &id).await?.ok_or_else(|| ApiError::not_found(owned_name(owned)))?;
            Ok(Some((ws, owned_name(owned))))
        }
    }
}

/// Checks the route's requirement: before the handler runs and before its body is read.
async fn authorize(parts: &mut Parts, state: &AppState, principal: &Principal) -> ApiResult<()> {
    let route = parts.extensions.get::<MatchedPath>().map(|p| p.as_str()).unwrap_or_default();
    let Some(req) = policy().get(&parts.method, route) else {
        tracing::error!(route = %route, "a route that takes credentials has no requirement in the OpenAPI document");
        return Err(ApiError::forbidden("this route declares no access policy"));
    };
    if let Principal::Publishable(_) = principal {
        // The ingestion path: decided without copying anything.
        return if req.publishable { Ok(()) } else { Err(ApiError::forbidden("a publishable key may only send events (POST /events)")) };
    }
    let route = route.to_owned();
    match principal {
        Principal::Publishable(_) if req.publishable => Ok(()),
        Principal::Publishable(_) => Err(ApiError::forbidden("a publishable key may only send events (POST /events)")),
        Principal::Session(s) => match req.session {
            Some(need) if s.role.rank() >= need.rank() => match path_workspace(parts, state, &route).await? {
                Some((ws, what)) if ws != s.workspace_id => Err(ApiError::not_found(what)),
                _ => Ok(()),
            },
            Some(_) => Err(ApiError::forbidden(format!("a {} session may not do this", s.role))),
            None => Err(ApiError::forbidden("this action needs an API key")),
        },
        Principal::Operator(o) => {
            let Some(need) = req.api_key else { return Err(ApiError::forbidden("this action is not for API keys")) };
            let reads = matches!(parts.method, Method::GET | Method::HEAD);
            match (o.scope, need) {
                (KeyScopeKind::Admin, _) => Ok(()),
                // Read-only: whatever needs no more than the viewer role (every read, and minting viewer sessions).
                (KeyScopeKind::ReadOnly, KeyNeed::Role(SessionRole::Viewer)) => Ok(()),
                (KeyScopeKind::ReadOnly, _) if reads => Ok(()),
                (KeyScopeKind::ReadOnly, _) => Err(ApiError::forbidden("a read-only key may only read")),
                (KeyScopeKind::Workspaces, KeyNeed::Installation) => Err(ApiError::forbidden("this key is limited to its workspaces")),
                (KeyScopeKind::Workspaces, KeyNeed::Role(need)) => match path_workspace(parts, state, &route).await? {
                    Some((ws, what)) => {
                        let role = o.role_in(&ws).ok_or_else(|| ApiError::not_found(what))?;
                        if role.rank() < need.rank() {
                            return Err(ApiError::forbidden(format!("this key's role in the workspace ({role}) may not do this")));
                        }
                        Ok(())
                    }
                    // No workspace in the path (lists, minting a session): some workspace must allow it.
                    None if o.workspaces.iter().any(|g| g.role.rank() >= need.rank()) => Ok(()),
                    None => Err(ApiError::forbidden(format!("this key holds no {need} role in any workspace"))),
                },
            }
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let slot = parts.extensions.get::<ActorSlot>().cloned();
        let rates = parts.extensions.get::<crate::rates::RateSlot>().cloned();
        let (principal, digest) = match authenticate(parts, state, slot.as_ref()).await {
            Ok(found) => found,
            // A refused credential counts against its address (a request with none already did).
            Err(e) if e.status == axum::http::StatusCode::UNAUTHORIZED && crate::rates::carries_credential(&parts.headers) => {
                let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
                crate::rates::admit_anonymous(state, rates.as_ref(), crate::audit::client_addr(state, &parts.headers, peer))?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if let Some(rates) = &rates {
            rates.vouch();
        }
        if let Some(token) = presented_token(parts).or_else(|| crate::console::cookie_token(&parts.headers)) {
            crate::rates::admit_credential(state, rates.as_ref(), token, &digest)?;
        }
        if let Some(slot) = &slot {
            slot.set(principal.actor());
        }
        authorize(parts, state, &principal).await?;
        Ok(principal)
    }
}

/// Writes keys' `last_used_at` at most once a minute per key and node, off the request's path.
#[derive(Default)]
pub struct KeyUsage(std::sync::Mutex<HashMap<ApiKeyId, i64>>);

/// How stale a key's `last_used_at` may get.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

impl KeyUsage {
    pub fn touch(&self, store: &Arc<dyn Store>, id: &ApiKeyId, now: i64) {
        {
            let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if seen.get(id).is_some_and(|t| now - t < LAST_USED_RESOLUTION_MS) {
                return;
            }
            if seen.len() > 100_000 {
                seen.clear();
            }
            seen.insert(id.clone(), now);
        }
        let (store, id) = (store.clone(), id.clone());
        tokio::spawn(async move {
            if let Err(e) = store.touch_api_key(&id, now).await {
                tracing::warn!(error = %e, "could not record when an API key was used");
            }
        });
    }
}
