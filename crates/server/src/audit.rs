//! The audit log: who changed what, when, and from where.
//!
//! One layer around the API records every change. The credential extractor tells it who is calling
//! (an [`ActorSlot`] in the request), the handler tells it what changed (a [`Change`] attached to
//! its response), and the layer adds when and from where and writes the entry before the answer
//! leaves. A successful change whose handler attached no [`Change`] is still recorded, under its
//! method and route, so nothing escapes the log. Refused credentials are recorded too, at most
//! [`REFUSALS_PER_MINUTE`] per client address, so a flood of bad keys cannot fill the table.
//!
//! Ingestion (`POST /events`, `/events/bulk`) passes straight through: events are not audit entries.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponseParts, Response, ResponseParts};
use serde_json::Value;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use switchyard_core::ids::{AuditId, WorkspaceId};
use switchyard_core::model::AuditEntry;
use switchyard_core::Millis;

/// Refused credentials recorded per client address and minute; the rest are counted in a metric.
pub const REFUSALS_PER_MINUTE: u32 = 10;
/// User agents are cut to this many characters.
const MAX_USER_AGENT: usize = 256;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `api_key`, `admin_key` (SWITCHYARD_ADMIN_KEY), `member`, `session`, `publishable_key`, `anonymous`.
    pub kind: &'static str,
    pub id: Option<String>,
    /// The key's name, the member's e-mail, the session's external user id.
    pub name: Option<String>,
}

impl Actor {
    pub fn anonymous() -> Self {
        Self { kind: "anonymous", id: None, name: None }
    }
}

/// What the credential extractor found, for the layer to read after the handler.
#[derive(Debug, Clone)]
enum Seen {
    Actor(Actor),
    /// A credential was refused: which kind, whose (when the key was known, e.g. expired), why.
    Refused {
        credential: &'static str,
        actor: Option<Actor>,
        reason: String,
    },
}

/// Filled in by the credential extractor; read by the audit layer once the handler has answered.
#[derive(Debug, Clone, Default)]
pub struct ActorSlot(Arc<Mutex<Option<Seen>>>);

impl ActorSlot {
    pub fn set(&self, actor: Actor) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Seen::Actor(actor));
    }

    pub fn refused(&self, credential: &'static str, actor: Option<Actor>, reason: impl Into<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Seen::Refused { credential, actor, reason: reason.into() });
    }

    fn take(&self) -> Option<Seen> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// What a handler changed: attach it to the response (`(StatusCode, Change, Json(..))`).
#[derive(Debug, Clone)]
pub struct Change {
    /// `connection.create`, `rule.update`, `session.create`, ...
    pub action: &'static str,
    pub resource_type: &'static str,
    pub resource_id: Option<String>,
    pub workspace_id: Option<WorkspaceId>,
    /// What changed, secrets left out.
    pub summary: Value,
    /// Who, when the request itself carries no credential (an OAuth callback: who started the flow).
    pub actor: Option<Actor>,
}

impl Change {
    pub fn new(action: &'static str, resource_type: &'static str, id: impl ToString) -> Self {
        Self {
            action,
            resource_type,
            resource_id: Some(id.to_string()),
            workspace_id: None,
            summary: Value::Object(Default::default()),
            actor: None,
        }
    }

    pub fn by(mut self, actor: Actor) -> Self {
        self.actor = Some(actor);
        self
    }

    pub fn in_workspace(mut self, ws: &WorkspaceId) -> Self {
        self.workspace_id = Some(ws.clone());
        self
    }

    pub fn summary(mut self, summary: Value) -> Self {
        self.summary = summary;
        self
    }
}

impl IntoResponseParts for Change {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.extensions_mut().insert(self);
        Ok(res)
    }
}

/// Attached by a handler that answers a changing method without changing anything (a preview).
#[derive(Debug, Clone, Copy)]
pub struct NoChange;

impl IntoResponseParts for NoChange {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.extensions_mut().insert(self);
        Ok(res)
    }
}

/// Counts refusals per client address in the current minute.
#[derive(Default)]
pub struct RefusalLimiter(Mutex<(Millis, HashMap<IpAddr, u32>)>);

impl RefusalLimiter {
    /// Whether another refusal from `addr` may be recorded now.
    pub fn allow(&self, addr: Option<IpAddr>, now: Millis) -> bool {
        let Some(addr) = addr else { return true };
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (minute, counts) = &mut *guard;
        if now / 60_000 != *minute {
            *minute = now / 60_000;
            counts.clear();
        }
        if counts.len() >= 100_000 && !counts.contains_key(&addr) {
            return false;
        }
        let n = counts.entry(addr).or_default();
        *n += 1;
        *n <= REFUSALS_PER_MINUTE
    }
}

/// The client's address: the peer, or, behind a trusted proxy, the last `X-Forwarded-For` hop that
/// is not one.
pub fn client_addr(state: &AppState, req_headers: &axum::http::HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
    let peer = peer?.ip();
    let proxies = &state.config.trusted_proxies;
    if !proxies.iter().any(|p| p.contains(peer)) {
        return Some(peer);
    }
    let forwarded = req_headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    for hop in forwarded.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if proxies.iter().any(|p| p.contains(ip)) => continue,
            Ok(ip) => return Some(ip),
            Err(_) => break,
        }
    }
    Some(peer)
}

fn is_ingestion(method: &Method, path: &str) -> bool {
    method == Method::POST && matches!(path, "/api/v1/events" | "/api/v1/events/bulk")
}

/// The layer: see the module's documentation.
pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if is_ingestion(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let slot = ActorSlot::default();
    req.extensions_mut().insert(slot.clone());
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let peer = req.extensions().get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0);
    let addr = client_addr(&state, req.headers(), peer);
    let user_agent =
        req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|v| v.chars().take(MAX_USER_AGENT).collect::<String>());

    let response = next.run(req).await;

    let now = switchyard_core::now_millis();
    let seen = slot.take();
    let change = response.extensions().get::<Change>().cloned();
    let entry = |actor: Actor, action: String, change: Option<Change>, summary: Value| AuditEntry {
        id: AuditId::generate(),
        at: now,
        workspace_id: change.as_ref().and_then(|c| c.workspace_id.clone()),
        actor_kind: actor.kind.to_owned(),
        actor_id: actor.id,
        actor_name: actor.name,
        action,
        resource_type: change.as_ref().map(|c| c.resource_type.to_owned()),
        resource_id: change.as_ref().and_then(|c| c.resource_id.clone()),
        summary,
        client_addr: addr.map(|a| a.to_string()),
        user_agent: user_agent.clone(),
    };
    let record = match (seen, change) {
        (Some(Seen::Refused { credential, actor, reason }), _) => {
            if !state.refusals.allow(addr, now) {
                metrics::counter!("switchyard_audit_refusals_suppressed_total").increment(1);
                return response;
            }
            let summary = serde_json::json!({"credential": credential, "reason": reason, "route": route, "method": method.as_str()});
            Some(entry(actor.unwrap_or_else(Actor::anonymous), "credential.refused".into(), None, summary))
        }
        // Sign-in forms answer with redirects, whichever way they went.
        (seen, Some(change)) if response.status().is_success() || response.status().is_redirection() => {
            let actor = match (seen, &change.actor) {
                (Some(Seen::Actor(a)), _) => a,
                (_, Some(a)) => a.clone(),
                _ => Actor::anonymous(),
            };
            let summary = change.summary.clone();
            Some(entry(actor, change.action.to_owned(), Some(change), summary))
        }
        (Some(Seen::Actor(actor)), None)
            if response.status().is_success()
                && !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
                && response.extensions().get::<NoChange>().is_none() =>
        {
            // A change whose handler did not describe it: recorded all the same.
            tracing::warn!(method = %method, route = ?route, "a change was made without an audit description");
            let summary = serde_json::json!({"route": route, "method": method.as_str()});
            Some(entry(actor, format!("{} {}", method, route.as_deref().unwrap_or("?")), None, summary))
        }
        _ => None,
    };
    if let Some(record) = record {
        if let Err(e) = state.store.append_audit(&record).await {
            tracing::error!(error = %e, action = %record.action, "could not write an audit entry");
            metrics::counter!("switchyard_audit_write_failures_total").increment(1);
        }
    }
    response
}
