//! Connections: configured destinations inside a workspace, with write-only credentials and
//! (for signed destinations) a signing secret shown once.

use super::common::*;
use super::workspaces::visible_workspace;
use crate::audit::Change;
use crate::auth::{Access, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::{RawBody, ValidJson};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use switchyard_core::circuit::{BreakerSettings, BreakerSettingsInput, CircuitState};
use switchyard_core::crypto::generate_signing_secret;
use switchyard_core::ids::*;
use switchyard_core::model::{Connection, ConnectionStatus, InactiveReason};
use switchyard_core::retry::{RetryPolicy, RetryPolicyInput};
use switchyard_destinations::{Connector, ValidationContext};
use switchyard_store::{DeleteOutcome, ManagedKind, Owned, Scope};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=120_000;
const MAX_IN_FLIGHT_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000;
const RATE_LIMIT_RANGE: std::ops::RangeInclusive<u32> = 1..=600_000;
const DEFAULT_ROTATION_GRACE_SECS: u64 = 24 * 3600;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_connection, list_connections))
        .routes(routes!(get_connection, update_connection, delete_connection))
        .routes(routes!(rotate_secret))
        .routes(routes!(pause_connection))
        .routes(routes!(resume_connection))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// An integration type from `GET /integrations`, e.g. `webhook`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub config: Value,
    /// Write-only: never returned, encrypted at rest.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicyInput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Most requests in flight to this destination at once (default: the integration's, else 16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Most deliveries started per minute, by the whole cluster (default: the integration's, e.g.
    /// 60 for Slack; `null` for no limit).
    #[serde(default, with = "double_option", skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_minute: Option<Option<u32>>,
    /// When the circuit breaker opens and how it closes; fields left out keep their defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<BreakerSettingsInput>,
}

pub(crate) fn empty_object() -> Value {
    Value::Object(Default::default())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnection {
    pub name: Option<String>,
    /// Replaces the whole config.
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    /// Replaces the credentials; `null` removes them.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Option<Value>>,
    pub retry_policy: Option<RetryPolicyInput>,
    pub timeout_ms: Option<u64>,
    pub max_in_flight: Option<u32>,
    /// `null` removes the limit.
    #[serde(default, with = "double_option")]
    pub rate_limit_per_minute: Option<Option<u32>>,
    /// Fields given replace the connection's; the others stay.
    pub circuit_breaker: Option<BreakerSettingsInput>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
    pub fn serialize<S: Serializer, T: Serialize>(v: &Option<Option<T>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectionOut {
    pub id: String,
    pub workspace_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub config: Value,
    /// Whether credentials are stored (they are never shown).
    pub has_credentials: bool,
    pub retry_policy: RetryPolicy,
    pub timeout_ms: u64,
    pub max_in_flight: u32,
    pub rate_limit_per_minute: Option<u32>,
    /// `active` when its deliveries go out. Otherwise they wait, spending no attempts: `paused`
    /// (someone paused it: resume it), `disabled` (every attempt failed for longer than the
    /// installation allows: fix the destination, then resume it), or `needs_reauth` (the provider
    /// refused its refresh token: reconnect it).
    pub status: &'static str,
    /// Why it is not `active`: `paused`, `failing` or `needs_reauth`; null when it is.
    pub inactive_reason: Option<&'static str>,
    /// Since when it was paused or disabled.
    pub inactive_since: Option<String>,
    /// Since when every attempt to it has failed; null once one succeeds.
    pub failing_since: Option<String>,
    pub circuit_breaker: BreakerSettings,
    pub circuit: CircuitOut,
    /// While a rotated-out signing secret is still used beside the new one.
    pub previous_secret_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Shown once, in the response that creates the connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
}

impl ConnectionOut {
    fn new(c: &Connection, signing_secret: Option<String>) -> Self {
        let now = switchyard_core::now_millis();
        Self {
            id: c.id.to_string(),
            workspace_id: c.workspace_id.to_string(),
            kind: c.kind.clone(),
            name: c.name.clone(),
            config: c.config.clone(),
            has_credentials: c.credentials_sealed.is_some(),
            retry_policy: c.retry_policy,
            timeout_ms: c.timeout_ms,
            max_in_flight: c.max_in_flight,
            rate_limit_per_minute: c.rate_limit_per_minute,
            status: match (c.inactive, c.status) {
                (Some((InactiveReason::Paused, _)), _) => "paused",
                (Some((InactiveReason::Failing, _)), _) => "disabled",
                (None, status) => status.as_str(),
            },
            inactive_reason: match (c.inactive, c.status) {
                (Some((reason, _)), _) => Some(reason.as_str()),
                (None, ConnectionStatus::NeedsReauth) => Some("needs_reauth"),
                (None, ConnectionStatus::Active) => None,
            },
            inactive_since: c.inactive.map(|(_, since)| ts(since)),
            failing_since: c.failing_since.map(ts),
            circuit_breaker: c.breaker,
            circuit: CircuitOut {
                state: c.circuit.state,
                since: c.circuit.since.map(ts),
                reason: c.circuit.reason.clone(),
                retry_at: c.circuit.retry_at.filter(|_| c.circuit.state == CircuitState::Open).map(ts),
            },
            previous_secret_expires_at: c.previous_secret_expires_at.filter(|t| *t > now).map(ts),
            created_at: ts(c.created_at),
            updated_at: ts(c.updated_at),
            signing_secret,
        }
    }
}

/// A connection's circuit breaker, as the whole cluster shares it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CircuitOut {
    /// `closed` (deliveries go out), `open` (too many recent attempts failed: deliveries wait,
    /// spending no attempts), or `half_open` (one delivery at a time goes out as a probe).
    pub state: CircuitState,
    /// When it entered this state; null if it has always been closed.
    pub since: Option<String>,
    /// Why it opened, e.g. "12 of the last 20 attempts in 60 s failed".
    pub reason: Option<String>,
    /// While open: when the first probe may go.
    pub retry_at: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the old secret keeps signing beside the new one (default 86400; 0 ends it now).
    pub grace_period_seconds: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RotatedSecret {
    pub signing_secret: String,
    pub previous_secret_expires_at: Option<String>,
}

pub(crate) fn connector(state: &AppState, kind: &str) -> ApiResult<Arc<dyn Connector>> {
    state.registry.get(kind).cloned().ok_or_else(|| {
        let kinds: Vec<_> = state.registry.kinds().collect();
        ApiError::invalid("type", format!("unknown integration; available: {}", kinds.join(", ")))
    })
}

pub(crate) fn check_limits(timeout_ms: u64, max_in_flight: u32, rate_limit_per_minute: Option<u32>) -> ApiResult<()> {
    if rate_limit_per_minute.is_some_and(|r| !RATE_LIMIT_RANGE.contains(&r)) {
        return Err(ApiError::invalid(
            "rate_limit_per_minute",
            format!("must be between {} and {}, or null for no limit", RATE_LIMIT_RANGE.start(), RATE_LIMIT_RANGE.end()),
        ));
    }
    if !TIMEOUT_RANGE_MS.contains(&timeout_ms) {
        return Err(ApiError::invalid(
            "timeout_ms",
            format!("must be between {} and {}", TIMEOUT_RANGE_MS.start(), TIMEOUT_RANGE_MS.end()),
        ));
    }
    if !MAX_IN_FLIGHT_RANGE.contains(&max_in_flight) {
        return Err(ApiError::invalid(
            "max_in_flight",
            format!("must be between {} and {}", MAX_IN_FLIGHT_RANGE.start(), MAX_IN_FLIGHT_RANGE.end()),
        ));
    }
    Ok(())
}

/// Config keys that decide where a connection's requests (and credentials) go.
pub(crate) const DESTINATION_KEYS: &[&str] = &["url", "base_url", "instance_url", "account", "region"];

/// Keys the OAuth flow keeps beside an access token; never accepted from a caller.
const TOKEN_KEYS: &[&str] = &["oauth_provider", "refresh_token", "expires_at", "obtained_at", "scope"];

/// Checks and seals credentials. Those from an OAuth flow (`from_flow`) carry token bookkeeping
/// the integration's fields do not name; callers may not send it.
pub(crate) fn seal_credentials(
    state: &AppState,
    connector: &dyn Connector,
    credentials: &Value,
    id: &ConnectionId,
    from_flow: bool,
) -> ApiResult<String> {
    let mut checked = credentials.clone();
    if let Some(map) = checked.as_object_mut() {
        for key in TOKEN_KEYS {
            if map.contains_key(*key) && !from_flow {
                return Err(ApiError::invalid(
                    format!("credentials.{key}"),
                    "is set by the OAuth flow; connect with POST /workspaces/{ws}/connections/oauth",
                ));
            }
            map.remove(*key);
        }
    }
    connector.validate_credentials(&checked, &validation_context(state))?;
    Ok(state.vault.seal(credentials.to_string().as_bytes(), id.as_str()))
}

/// Moves secrets a connector keeps in `config` (a Discord webhook URL) into the credentials, so
/// they are encrypted and never shown again.
pub(crate) fn split_secrets(connector: &dyn Connector, config: &mut Value, credentials: &mut Option<Value>) {
    for key in connector.secret_config_keys() {
        if let Some(secret) = config.as_object_mut().and_then(|c| c.remove(*key)) {
            let creds = credentials.get_or_insert_with(empty_object);
            if let Some(map) = creds.as_object_mut() {
                map.insert((*key).to_owned(), secret);
            }
        }
    }
}

pub(crate) fn validation_context(state: &AppState) -> ValidationContext {
    ValidationContext { allow_private_destinations: state.config.allow_private_destinations }
}

/// Validates a new connection against its integration and fills in the defaults; seals its
/// credentials and makes its signing secret (returned once). Nothing is stored yet.
pub(crate) fn prepare_connection(
    state: &AppState,
    workspace_id: WorkspaceId,
    body: CreateConnection,
    from_flow: bool,
) -> ApiResult<(Connection, Option<String>)> {
    check_name(&body.name, "name")?;
    let connector = connector(state, &body.kind)?;
    let (mut config, mut credentials) = (body.config, body.credentials);
    split_secrets(&*connector, &mut config, &mut credentials);
    let config = connector.validate_config(&config, &validation_context(state))?;
    let defaults = &state.config.defaults;
    let catalog = connector.catalog();
    let limits = catalog.limits;
    let retry_policy = body.retry_policy.unwrap_or_default().resolve(defaults.retry_policy).map_err(|(f, m)| ApiError::invalid(f, m))?;
    let timeout_ms = body.timeout_ms.unwrap_or(defaults.timeout_ms);
    let max_in_flight = body.max_in_flight.or(limits.max_in_flight).unwrap_or(defaults.max_in_flight);
    let rate_limit_per_minute = body.rate_limit_per_minute.unwrap_or(limits.rate_limit_per_minute);
    check_limits(timeout_ms, max_in_flight, rate_limit_per_minute)?;

    let id = ConnectionId::generate();
    // A connector that needs credentials gets a clear 422 when none were given.
    let credentials = credentials.unwrap_or_else(empty_object);
    let wants_credentials = catalog.auth.kind != "none" || catalog.auth.fields.iter().any(|f| f.required);
    let credentials_sealed = if wants_credentials || credentials.as_object().is_some_and(|c| !c.is_empty()) {
        Some(seal_credentials(state, &*connector, &credentials, &id, from_flow)?)
    } else {
        None
    };
    let signing_secret = connector.signs_requests(&config).then(generate_signing_secret);
    let now = switchyard_core::now_millis();
    let conn = Connection {
        signing_secret_sealed: signing_secret.as_ref().map(|s| state.vault.seal(s.as_bytes(), id.as_str())),
        id,
        workspace_id,
        kind: body.kind,
        name: body.name,
        config,
        credentials_sealed,
        previous_secret_sealed: None,
        previous_secret_expires_at: None,
        retry_policy,
        timeout_ms,
        max_in_flight,
        rate_limit_per_minute,
        status: ConnectionStatus::Active,
        inactive: None,
        failing_since: None,
        breaker: body.circuit_breaker.unwrap_or_default().resolve(BreakerSettings::default()).map_err(|(f, m)| ApiError::invalid(f, m))?,
        circuit: Default::default(),
        created_at: now,
        updated_at: now,
    };
    Ok((conn, signing_secret))
}

#[utoipa::path(post, path = "/workspaces/{ws}/connections", tag = "connections", params(("ws" = String, Path)),
    request_body(content = CreateConnection, example = json!({"type": "webhook", "name": "CRM hook", "config": {"url": "https://hooks.example.com/switchyard"}, "credentials": {"bearer_token": "secret-token"}, "retry_policy": {"max_attempts": 8}})),
    responses((status = 201, body = ConnectionOut), (status = 422, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn create_connection(
    State(state): State<AppState>,
    principal: Principal,
    Path(ws): Path<String>,
    ValidJson(body): ValidJson<CreateConnection>,
) -> ApiResult<(StatusCode, Change, Json<ConnectionOut>)> {
    principal.forbid_narrowed("create connections")?;
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Write).await?;
    let (conn, signing_secret) = prepare_connection(&state, ws.id, body, false)?;
    let limits = crate::limits::of(&state, &conn.workspace_id).await?;
    state.store.create_connection(&conn, limits.connections).await?;
    state.config_changed();
    let change = connection_change("connection.create", &conn, json!({}));
    Ok((StatusCode::CREATED, change, Json(ConnectionOut::new(&conn, signing_secret))))
}

#[utoipa::path(get, path = "/workspaces/{ws}/connections", tag = "connections", params(("ws" = String, Path), ListParams),
    responses((status = 200, body = ListOf<ConnectionOut>)), security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn list_connections(
    State(state): State<AppState>,
    principal: Principal,
    Path(ws): Path<String>,
    Q(params): Q<ListParams>,
) -> ApiResult<Json<ListOf<ConnectionOut>>> {
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Read).await?;
    let page = params.page()?;
    let items = state.store.list_connections(&ws.id, &page).await?;
    Ok(Json(ListOf::from_fetched(items, &page, |c| c.id.to_string(), |c| ConnectionOut::new(&c, None))))
}

/// A change to a connection for the audit log: its name, type and config fields (never values,
/// which may hold addresses with tokens in them), and whether credentials are set.
pub(crate) fn connection_change(action: &'static str, conn: &Connection, extra: Value) -> Change {
    let mut summary = json!({
        "name": conn.name,
        "type": conn.kind,
        "config_fields": conn.config.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default(),
        "has_credentials": conn.credentials_sealed.is_some(),
    });
    if let (Some(s), Some(extra)) = (summary.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    Change::new(action, "connection", &conn.id).in_workspace(&conn.workspace_id).summary(summary)
}

pub(crate) async fn visible_connection(
    state: &AppState,
    principal: &Principal,
    raw: &str,
    access: Access,
) -> ApiResult<(Scope, Connection)> {
    let id = path_id(raw, ConnectionId::parse, "connection")?;
    let scope = principal.for_row(&*state.store, Owned::Connection, id.as_str(), access).await?;
    let conn = state.store.get_connection(&scope, &id).await?.ok_or_else(|| ApiError::not_found("connection"))?;
    Ok((scope, conn))
}

#[utoipa::path(get, path = "/connections/{id}", tag = "connections", params(("id" = String, Path)),
    responses((status = 200, body = ConnectionOut), (status = 404, body = ErrorBody)), security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn get_connection(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> ApiResult<Json<ConnectionOut>> {
    let (_, conn) = visible_connection(&state, &principal, &id, Access::Read).await?;
    Ok(Json(ConnectionOut::new(&conn, None)))
}

#[utoipa::path(patch, path = "/connections/{id}", tag = "connections", params(("id" = String, Path)), request_body(content = UpdateConnection, example = json!({"name": "CRM hook (prod)", "timeout_ms": 10000})),
    responses((status = 200, body = ConnectionOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn update_connection(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ValidJson(body): ValidJson<UpdateConnection>,
) -> ApiResult<(Change, Json<ConnectionOut>)> {
    principal.forbid_narrowed("change connections")?;
    let (_, mut conn) = visible_connection(&state, &principal, &id, Access::Write).await?;
    let changed: Vec<&str> = [
        ("name", body.name.is_some()),
        ("config", body.config.is_some()),
        ("credentials", body.credentials.is_some()),
        ("retry_policy", body.retry_policy.is_some()),
        ("timeout_ms", body.timeout_ms.is_some()),
        ("max_in_flight", body.max_in_flight.is_some()),
        ("rate_limit_per_minute", body.rate_limit_per_minute.is_some()),
        ("circuit_breaker", body.circuit_breaker.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, given)| given.then_some(field))
    .collect();
    let connector = connector(&state, &conn.kind)?;
    if let Some(name) = body.name {
        check_name(&name, "name")?;
        conn.name = name;
    }
    let mut new_secret = None;
    let mut credentials = body.credentials;
    if let Some(mut config) = body.config {
        let mut moved = None;
        split_secrets(&*connector, &mut config, &mut moved);
        if let Some(moved) = moved {
            // A secret given in config joins the credentials given beside it, else the stored ones.
            let mut merged = match (&credentials, &conn.credentials_sealed) {
                (Some(Some(given)), _) => given.clone(),
                (_, Some(sealed)) => serde_json::from_slice(
                    &state
                        .vault
                        .open(sealed, conn.id.as_str())
                        .map_err(|_| ApiError::internal("the stored credentials could not be opened"))?,
                )
                .unwrap_or_else(|_| empty_object()),
                _ => empty_object(),
            };
            if let (Some(m), Some(new)) = (merged.as_object_mut(), moved.as_object()) {
                m.extend(new.clone());
            }
            credentials = Some(Some(merged));
        }
        let config = connector.validate_config(&config, &validation_context(&state))?;
        // Stored credentials never follow a connection to a new address: whoever changes where
        // it points gives the credentials again (or reconnects an OAuth connection).
        let moved_away = DESTINATION_KEYS.iter().any(|k| conn.config.get(*k) != config.get(*k));
        if moved_away && conn.credentials_sealed.is_some() && credentials.is_none() {
            return Err(ApiError::invalid(
                "credentials",
                "must be given again when the connection's address changes (url, base_url, instance_url, account or region): \
                 stored credentials are never sent to a new address",
            ));
        }
        conn.config = config;
        // Turning signing on gives the connection a secret, shown in this response.
        if connector.signs_requests(&conn.config) && conn.signing_secret_sealed.is_none() {
            let secret = generate_signing_secret();
            conn.signing_secret_sealed = Some(state.vault.seal(secret.as_bytes(), conn.id.as_str()));
            new_secret = Some(secret);
        }
    }
    match credentials {
        None => {}
        Some(None) if connector.catalog().auth.kind != "none" => {
            return Err(ApiError::invalid("credentials", "this integration needs credentials; give new ones instead of null"));
        }
        Some(None) => conn.credentials_sealed = None,
        Some(Some(creds)) => {
            conn.credentials_sealed = Some(seal_credentials(&state, &*connector, &creds, &conn.id, false)?);
            // New credentials are what a connection waiting to be reconnected needed.
            conn.status = ConnectionStatus::Active;
        }
    }
    if let Some(policy) = body.retry_policy {
        conn.retry_policy = policy.resolve(conn.retry_policy).map_err(|(f, m)| ApiError::invalid(f, m))?;
    }
    if let Some(breaker) = body.circuit_breaker {
        conn.breaker = breaker.resolve(conn.breaker).map_err(|(f, m)| ApiError::invalid(f, m))?;
    }
    conn.timeout_ms = body.timeout_ms.unwrap_or(conn.timeout_ms);
    conn.max_in_flight = body.max_in_flight.unwrap_or(conn.max_in_flight);
    conn.rate_limit_per_minute = body.rate_limit_per_minute.unwrap_or(conn.rate_limit_per_minute);
    check_limits(conn.timeout_ms, conn.max_in_flight, conn.rate_limit_per_minute)?;
    conn.updated_at = switchyard_core::now_millis();
    state.store.update_connection(&conn).await?;
    state.config_changed();
    crate::blueprint::plan::note_hand_change(&state, &conn.workspace_id, ManagedKind::Connection, conn.id.as_str(), &changed).await;
    let change = connection_change("connection.update", &conn, json!({"fields": changed}));
    Ok((change, Json(ConnectionOut::new(&conn, new_secret))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// Delete even while active rules use the connection (they are deleted with it).
    pub force: Option<bool>,
}

#[utoipa::path(delete, path = "/connections/{id}", tag = "connections", params(("id" = String, Path), DeleteParams),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = ["admin"]), ("session_token" = ["admin"])))]
async fn delete_connection(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Q(params): Q<DeleteParams>,
) -> ApiResult<(StatusCode, Change, ())> {
    principal.forbid_narrowed("delete connections")?;
    let id = path_id(&id, ConnectionId::parse, "connection")?;
    let scope = principal.for_row(&*state.store, Owned::Connection, id.as_str(), Access::Manage).await?;
    let existing = state.store.get_connection(&scope, &id).await?.ok_or_else(|| ApiError::not_found("connection"))?;
    // Read the tokens first: a disconnected OAuth connection's tokens are revoked where the
    // provider allows it.
    let credentials = match &existing.credentials_sealed {
        Some(sealed) => state.vault.open(sealed, id.as_str()).ok().and_then(|p| serde_json::from_slice::<Value>(&p).ok()),
        None => None,
    };
    let force = params.force.unwrap_or(false);
    match state.store.delete_connection(&scope, &id, force).await? {
        DeleteOutcome::Deleted => {
            state.config_changed();
            crate::blueprint::plan::note_hand_change(&state, &existing.workspace_id, ManagedKind::Connection, id.as_str(), &["deleted"])
                .await;
            let provider = credentials
                .as_ref()
                .and_then(|c| c.get("oauth_provider"))
                .and_then(Value::as_str)
                .and_then(|p| state.config.oauth.get(p))
                .cloned();
            if let (Some(provider), Some(credentials)) = (provider, credentials) {
                let state = state.clone();
                tokio::spawn(async move { state.tokens.revoke(&provider, &credentials).await });
            }
            Ok((StatusCode::NO_CONTENT, connection_change("connection.delete", &existing, json!({"force": force})), ()))
        }
        DeleteOutcome::NotFound => Err(ApiError::not_found("connection")),
        DeleteOutcome::InUse(rules) => {
            let ids: Vec<String> = rules.iter().map(ToString::to_string).collect();
            Err(ApiError::conflict(format!(
                "active rules use this connection ({}); delete or deactivate them, or pass ?force=true",
                ids.join(", ")
            )))
        }
    }
}

#[utoipa::path(post, path = "/connections/{id}/rotate-secret", tag = "connections", params(("id" = String, Path)),
    request_body(content = Option<RotateSecret>, example = json!({"grace_period_seconds": 86400})),
    responses((status = 200, body = RotatedSecret), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = ["admin"]), ("session_token" = ["admin"])))]
async fn rotate_secret(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: RawBody,
) -> ApiResult<(Change, Json<RotatedSecret>)> {
    principal.forbid_narrowed("rotate signing secrets")?;
    let (_, mut conn) = visible_connection(&state, &principal, &id, Access::Manage).await?;
    let options: RotateSecret = body.parse_or_default()?;
    let grace = options.grace_period_seconds.unwrap_or(DEFAULT_ROTATION_GRACE_SECS);
    if grace > 7 * 24 * 3600 {
        return Err(ApiError::invalid("grace_period_seconds", "must be at most 604800 (7 days)"));
    }
    let Some(current) = conn.signing_secret_sealed.take() else {
        return Err(ApiError::conflict("this connection does not sign its requests"));
    };
    let now = switchyard_core::now_millis();
    let secret = generate_signing_secret();
    conn.signing_secret_sealed = Some(state.vault.seal(secret.as_bytes(), conn.id.as_str()));
    if grace > 0 {
        conn.previous_secret_sealed = Some(current);
        conn.previous_secret_expires_at = Some(now + grace as i64 * 1000);
    } else {
        conn.previous_secret_sealed = None;
        conn.previous_secret_expires_at = None;
    }
    conn.updated_at = now;
    state.store.update_connection(&conn).await?;
    state.config_changed();
    let change = connection_change("connection.rotate_secret", &conn, json!({"grace_period_seconds": grace}));
    Ok((change, Json(RotatedSecret { signing_secret: secret, previous_secret_expires_at: conn.previous_secret_expires_at.map(ts) })))
}

/// Pauses a connection: nothing more is sent to it (attempts in flight finish), and its deliveries
/// wait, spending no attempts, until it is resumed. Pausing a paused connection changes nothing.
#[utoipa::path(post, path = "/connections/{id}/pause", tag = "connections", params(("id" = String, Path)),
    responses((status = 200, body = ConnectionOut), (status = 404, body = ErrorBody)),
    security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn pause_connection(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(Change, Json<ConnectionOut>)> {
    principal.forbid_narrowed("pause connections")?;
    let (scope, conn) = visible_connection(&state, &principal, &id, Access::Write).await?;
    let was = ConnectionOut::new(&conn, None).status;
    if !state.store.pause_connection(&scope, &conn.id, InactiveReason::Paused, switchyard_core::now_millis()).await? {
        return Err(ApiError::not_found("connection"));
    }
    state.config_changed();
    let conn = state.store.get_connection(&scope, &conn.id).await?.ok_or_else(|| ApiError::not_found("connection"))?;
    let change = connection_change("connection.pause", &conn, json!({"was": was}));
    Ok((change, Json(ConnectionOut::new(&conn, None))))
}

/// Resumes a paused or disabled connection: its waiting deliveries go out again, oldest due first,
/// at its own pace (`max_in_flight`, `rate_limit_per_minute`), not all at once; its failing clock
/// starts again. A connection that needs reauthorisation is reconnected instead (409).
#[utoipa::path(post, path = "/connections/{id}/resume", tag = "connections", params(("id" = String, Path)),
    responses((status = 200, body = ConnectionOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn resume_connection(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(Change, Json<ConnectionOut>)> {
    principal.forbid_narrowed("resume connections")?;
    let (scope, conn) = visible_connection(&state, &principal, &id, Access::Write).await?;
    if conn.inactive.is_none() && conn.status == ConnectionStatus::NeedsReauth {
        return Err(ApiError::conflict("this connection needs to be reconnected (POST /connections/{id}/reconnect), not resumed"));
    }
    let was = ConnectionOut::new(&conn, None).status;
    if !state.store.resume_connection(&scope, &conn.id, switchyard_core::now_millis()).await? {
        return Err(ApiError::not_found("connection"));
    }
    state.config_changed();
    state.wake.notify_one();
    let conn = state.store.get_connection(&scope, &conn.id).await?.ok_or_else(|| ApiError::not_found("connection"))?;
    let change = connection_change("connection.resume", &conn, json!({"was": was}));
    Ok((change, Json(ConnectionOut::new(&conn, None))))
}
