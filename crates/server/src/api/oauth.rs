//! OAuth connections: the authorization-code flow with PKCE (S256).
//!
//! `POST /workspaces/{ws}/connections/oauth` (or `POST /connections/{id}/reconnect`) records a
//! single-use `state` (hashed, with the sealed PKCE verifier and the request, valid 10 minutes)
//! and returns the provider's authorize URL. The provider sends the user's browser to
//! `GET /oauth/callback`, which takes the state (once), exchanges the code, seals the tokens,
//! creates (or reconnects) the connection, and redirects the browser to `redirect_to` with
//! `connection_id=...`, or `error=...`.

use super::common::*;
use super::connections::{connector, prepare_connection, visible_connection, CreateConnection};
use super::workspaces::visible_workspace;
use crate::audit::{Actor, Change};
use crate::auth::{Access, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ValidJson;
use crate::oauth::providers::Provider;
use crate::oauth::tokens::{merge_grant, TokenError};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use switchyard_core::crypto::{generate_token, hash_token};
use switchyard_core::ids::*;
use switchyard_core::model::ConnectionStatus;
use switchyard_store::OAuthState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long a started flow may take.
const STATE_TTL_MS: i64 = 10 * 60 * 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(start_oauth)).routes(routes!(reconnect))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartOAuth {
    /// An integration whose provider the operator configured (`slack`, `hubspot`, `salesforce`,
    /// `zoom`, `aweber`, `mailchimp`).
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default = "super::connections::empty_object")]
    #[schema(value_type = Object)]
    pub config: Value,
    /// Where the browser goes afterwards, with `connection_id` or `error` added to the query.
    pub redirect_to: String,
    pub retry_policy: Option<switchyard_core::retry::RetryPolicyInput>,
    pub timeout_ms: Option<u64>,
    pub max_in_flight: Option<u32>,
    pub rate_limit_per_minute: Option<u32>,
    pub circuit_breaker: Option<switchyard_core::circuit::BreakerSettingsInput>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reconnect {
    pub redirect_to: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OAuthStarted {
    /// Send the user's browser here.
    pub authorize_url: String,
    /// The flow must be finished before this time.
    pub expires_at: String,
}

fn provider<'a>(state: &'a AppState, kind: &str) -> ApiResult<&'a Provider> {
    if !crate::oauth::providers::PROVIDERS.contains(&kind) {
        return Err(ApiError::invalid("type", format!("{kind} does not connect through OAuth; create it with credentials instead")));
    }
    state.config.oauth.get(kind).ok_or_else(|| {
        ApiError::invalid(
            "type",
            format!("no OAuth app is configured for {kind} (SWITCHYARD_OAUTH_{}_CLIENT_ID and _CLIENT_SECRET)", kind.to_uppercase()),
        )
    })
}

fn callback_url(state: &AppState) -> ApiResult<String> {
    let base = state.config.public_url.as_deref().ok_or_else(|| {
        ApiError::unavailable("SWITCHYARD_PUBLIC_URL is not set, so no OAuth callback address can be given to the provider")
    })?;
    Ok(format!("{}/oauth/callback", base.trim_end_matches('/')))
}

/// `redirect_to` must be an http(s) URL; a session may only send the browser to its own origins,
/// or to this server's own landing page for OAuth popups (`/embed/oauth/done`).
fn check_redirect(state: &AppState, headers: &HeaderMap, principal: &Principal, raw: &str) -> ApiResult<url::Url> {
    let url = url::Url::parse(raw)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| ApiError::invalid("redirect_to", "must be an http(s) URL"))?;
    if let Principal::Session(session) = principal {
        let origin = url.origin().ascii_serialization();
        let base = crate::embed::public_base(state, headers);
        let landing = url::Url::parse(&base).is_ok_and(|b| b.origin().ascii_serialization() == origin) && url.path() == "/embed/oauth/done";
        if !landing && !session.allowed_origins.is_empty() && !session.allowed_origins.iter().any(|o| o == &origin) {
            return Err(ApiError::invalid("redirect_to", "must be on one of the session's allowed_origins"));
        }
    }
    Ok(url)
}

/// Config keys the provider supplies during the flow, with a stand-in for checking the rest early.
fn flow_supplied(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "salesforce" => &[("instance_url", "https://login.salesforce.com")],
        "mailchimp" => &[("base_url", "https://us1.api.mailchimp.com")],
        "aweber" => &[("account_id", "0")],
        _ => &[],
    }
}

async fn begin(
    state: &AppState,
    provider: &Provider,
    workspace_id: WorkspaceId,
    connection_id: Option<ConnectionId>,
    mut request: Value,
    principal: &Principal,
) -> ApiResult<(StatusCode, Change, Json<OAuthStarted>)> {
    // Who started the flow: the callback records the connection as theirs.
    let actor = principal.actor();
    request["started_by"] = json!({"kind": actor.kind, "id": actor.id, "name": actor.name});
    let action = if connection_id.is_some() { "connection.reconnect_start" } else { "connection.connect_start" };
    let change = match &connection_id {
        Some(id) => Change::new(action, "connection", id),
        None => Change { resource_id: None, ..Change::new(action, "connection", "") },
    }
    .in_workspace(&workspace_id)
    .summary(json!({"provider": provider.name}));
    let redirect_uri = callback_url(state)?;
    let state_param = generate_token("");
    let mut verifier_bytes = [0u8; 48];
    rand::thread_rng().fill_bytes(&mut verifier_bytes);
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(verifier_bytes);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let now = switchyard_core::now_millis();
    let id = format!("oas_{}", ulid::Ulid::new());
    let record = OAuthState {
        code_verifier_sealed: state.vault.seal(verifier.as_bytes(), &id),
        id,
        state_hash: hash_token(&state_param),
        workspace_id,
        provider: provider.name.clone(),
        connection_id,
        request,
        expires_at: now + STATE_TTL_MS,
        created_at: now,
    };
    state.store.create_oauth_state(&record).await?;
    let mut url = url::Url::parse(&provider.authorize_url).map_err(ApiError::internal)?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &provider.client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("state", &state_param)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if !provider.scopes.is_empty() {
            q.append_pair("scope", &provider.scopes);
        }
        for (k, v) in &provider.authorize_params {
            q.append_pair(k, v);
        }
    }
    Ok((StatusCode::CREATED, change, Json(OAuthStarted { authorize_url: url.into(), expires_at: ts(record.expires_at) })))
}

/// Starts connecting a new OAuth connection: returns the URL to send the user's browser to.
#[utoipa::path(post, path = "/workspaces/{ws}/connections/oauth", tag = "connections", params(("ws" = String, Path)),
    request_body(content = StartOAuth, example = json!({"type": "hubspot", "name": "HubSpot", "config": {}, "redirect_to": "https://app.example.com/integrations/done"})),
    responses((status = 201, body = OAuthStarted), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn start_oauth(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(ws): Path<String>,
    ValidJson(body): ValidJson<StartOAuth>,
) -> ApiResult<(StatusCode, Change, Json<OAuthStarted>)> {
    principal.forbid_narrowed("create connections")?;
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Write).await?;
    let provider = provider(&state, &body.kind)?.clone();
    check_redirect(&state, &headers, &principal, &body.redirect_to)?;
    // Refused now rather than after the user has authorised at the provider.
    let limits = crate::limits::of(&state, &ws.id).await?;
    if limits.connections.is_some() {
        crate::limits::check("connections", limits.connections, state.store.count_connections(&ws.id).await?)?;
    }
    let mut request = CreateConnection {
        kind: body.kind,
        name: body.name,
        config: body.config,
        credentials: None,
        retry_policy: body.retry_policy,
        timeout_ms: body.timeout_ms,
        max_in_flight: body.max_in_flight,
        rate_limit_per_minute: body.rate_limit_per_minute.map(Some),
        circuit_breaker: body.circuit_breaker,
    };
    // Check everything now that can be checked before the provider answers.
    let mut trial = CreateConnection { credentials: Some(json!({"access_token": "checked-at-start"})), ..clone_request(&request)? };
    if let Some(config) = trial.config.as_object_mut() {
        for (key, stand_in) in flow_supplied(&trial.kind) {
            config.entry(key.to_string()).or_insert_with(|| json!(stand_in));
        }
    }
    prepare_connection(&state, ws.id.clone(), trial, true)?;
    request.credentials = None;
    let mut stored = serde_json::to_value(&request).map_err(ApiError::internal)?;
    stored["redirect_to"] = json!(body.redirect_to);
    begin(&state, &provider, ws.id, None, stored, &principal).await
}

fn clone_request(r: &CreateConnection) -> ApiResult<CreateConnection> {
    serde_json::from_value(serde_json::to_value(r).map_err(ApiError::internal)?).map_err(ApiError::internal)
}

/// Starts connecting an existing OAuth connection again (after `needs_reauth`, or to change the
/// account): its deliveries resume once the flow completes.
#[utoipa::path(post, path = "/connections/{id}/reconnect", tag = "connections", params(("id" = String, Path)),
    request_body(content = Reconnect, example = json!({"redirect_to": "https://app.example.com/integrations/done"})),
    responses((status = 201, body = OAuthStarted), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn reconnect(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    ValidJson(body): ValidJson<Reconnect>,
) -> ApiResult<(StatusCode, Change, Json<OAuthStarted>)> {
    principal.forbid_narrowed("reconnect connections")?;
    let (_, conn) = visible_connection(&state, &principal, &id, Access::Write).await?;
    let provider = provider(&state, &conn.kind)?.clone();
    check_redirect(&state, &headers, &principal, &body.redirect_to)?;
    begin(&state, &provider, conn.workspace_id.clone(), Some(conn.id.clone()), json!({"redirect_to": body.redirect_to}), &principal).await
}

#[derive(Debug, Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

/// Where the provider sends the browser back. Not under `/api/v1`, and unauthenticated: the
/// single-use `state` is the credential.
pub async fn callback(State(state): State<AppState>, Query(params): Query<CallbackParams>) -> Response {
    let Some(state_param) = params.state.as_deref().filter(|s| !s.is_empty()) else {
        return page(StatusCode::BAD_REQUEST, "This sign-in link is missing its state. Start connecting again.");
    };
    let flow = match state.store.take_oauth_state(&hash_token(state_param), switchyard_core::now_millis()).await {
        Ok(Some(flow)) => flow,
        Ok(None) => return page(StatusCode::BAD_REQUEST, "This sign-in link has expired or was already used. Start connecting again."),
        Err(e) => {
            tracing::error!(error = %e, "could not read an OAuth state");
            return page(StatusCode::SERVICE_UNAVAILABLE, "Switchyard could not finish connecting right now. Try again shortly.");
        }
    };
    let redirect_to = flow.request.get("redirect_to").and_then(Value::as_str).unwrap_or_default().to_owned();
    let back = |pairs: &[(&str, &str)]| -> Response {
        match url::Url::parse(&redirect_to) {
            Ok(mut url) => {
                url.query_pairs_mut().extend_pairs(pairs);
                Redirect::to(url.as_str()).into_response()
            }
            Err(_) => page(StatusCode::BAD_REQUEST, "The page to return to is not a valid address."),
        }
    };
    if let Some(error) = params.error.as_deref() {
        let error: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        return back(&[("error", &error)]);
    }
    let Some(code) = params.code.as_deref().filter(|c| !c.is_empty()) else {
        return back(&[("error", "missing_code")]);
    };
    match finish(&state, &flow, code).await {
        Ok(change) => {
            let id = change.resource_id.clone().unwrap_or_default();
            (change, back(&[("connection_id", id.as_str())])).into_response()
        }
        Err(Failure { code, log }) => {
            tracing::warn!(provider = %flow.provider, workspace = %flow.workspace_id, reason = %log, "an OAuth flow failed");
            back(&[("error", code)])
        }
    }
}

struct Failure {
    /// Shown to the product in `error=`.
    code: &'static str,
    /// Logged (never a token).
    log: String,
}

fn fail(code: &'static str) -> impl FnOnce(String) -> Failure {
    move |log| Failure { code, log }
}

/// Who started a flow, as `begin` wrote it down.
fn flow_actor(flow: &OAuthState) -> Actor {
    let by = flow.request.get("started_by");
    let text = |k: &str| by.and_then(|b| b.get(k)).and_then(Value::as_str).map(str::to_owned);
    let kind = match text("kind").as_deref() {
        Some("api_key") => "api_key",
        Some("admin_key") => "admin_key",
        Some("member") => "member",
        Some("session") => "session",
        _ => "anonymous",
    };
    Actor { kind, id: text("id"), name: text("name") }
}

async fn finish(state: &AppState, flow: &OAuthState, code: &str) -> Result<Change, Failure> {
    let provider = state.config.oauth.get(&flow.provider).ok_or_else(|| fail("provider_not_configured")(flow.provider.clone()))?;
    let verifier = state.vault.open_string(&flow.code_verifier_sealed, &flow.id).map_err(|e| fail("internal")(e.to_string()))?;
    let redirect_uri = callback_url(state).map_err(|e| fail("internal")(e.message))?;
    let answer = state
        .tokens
        .token_request(
            provider,
            &[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", &redirect_uri), ("code_verifier", &verifier)],
        )
        .await
        .map_err(|e| match e {
            TokenError::NeedsReauth(m) | TokenError::Failed(m) => fail("token_exchange_failed")(m),
        })?;
    let credentials = merge_grant(&json!({}), &answer, provider);
    let token = credentials.get("access_token").and_then(Value::as_str).unwrap_or_default().to_owned();
    let derived = derived_config(state, provider, &answer, &token).await.map_err(fail("provider_metadata_failed"))?;

    if let Some(id) = &flow.connection_id {
        // A reconnect: new tokens, the provider's config, and the connection active again.
        let conn = state
            .store
            .get_connection(&switchyard_store::Scope::Workspace(flow.workspace_id.clone()), id)
            .await
            .map_err(|e| fail("internal")(e.to_string()))?
            .ok_or_else(|| fail("connection_deleted")(id.to_string()))?;
        let mut config = conn.config.clone();
        if let (Some(c), Some(d)) = (config.as_object_mut(), derived.as_object()) {
            c.extend(d.clone());
        }
        let connector = connector(state, &conn.kind).map_err(|e| fail("internal")(e.message))?;
        let config = connector
            .validate_config(&config, &super::connections::validation_context(state))
            .map_err(|e| fail("invalid_config")(format!("{e:?}")))?;
        let sealed = state.vault.seal(credentials.to_string().as_bytes(), id.as_str());
        state
            .store
            .store_credentials(id, &sealed, Some(&config), ConnectionStatus::Active)
            .await
            .map_err(|e| fail("internal")(e.to_string()))?;
        state.config_changed();
        state.wake.notify_one();
        tracing::info!(connection = %id, provider = %provider.name, "connection reconnected");
        let change = super::connections::connection_change("connection.reconnect", &conn, json!({"provider": provider.name}));
        return Ok(change.by(flow_actor(flow)));
    }

    let mut request: CreateConnection = serde_json::from_value({
        let mut r = flow.request.clone();
        if let Some(o) = r.as_object_mut() {
            o.remove("redirect_to");
            o.remove("started_by");
        }
        r
    })
    .map_err(|e| fail("internal")(e.to_string()))?;
    if let (Some(c), Some(d)) = (request.config.as_object_mut(), derived.as_object()) {
        c.extend(d.clone());
    }
    request.credentials = Some(credentials);
    let (conn, _) = prepare_connection(state, flow.workspace_id.clone(), request, true).map_err(|e| fail("invalid_config")(e.message))?;
    let limits = crate::limits::of(state, &conn.workspace_id).await.map_err(|e| fail("internal")(e.message))?;
    state.store.create_connection(&conn, limits.connections).await.map_err(|e| match e {
        switchyard_store::StoreError::Limit { .. } => {
            fail("quota_exceeded")("the workspace reached its plan's limit of connections".into())
        }
        other => fail("internal")(other.to_string()),
    })?;
    state.config_changed();
    tracing::info!(connection = %conn.id, provider = %provider.name, "connection created through OAuth");
    let change = super::connections::connection_change("connection.create", &conn, json!({"provider": provider.name}));
    Ok(change.by(flow_actor(flow)))
}

/// Config the provider decides: Salesforce's instance URL (in the token answer), Mailchimp's API
/// endpoint (its metadata), AWeber's account (the accounts list).
async fn derived_config(state: &AppState, provider: &Provider, answer: &Value, token: &str) -> Result<Value, String> {
    match provider.name.as_str() {
        "salesforce" => {
            let instance = answer.get("instance_url").and_then(Value::as_str).ok_or("the token answer has no instance_url")?;
            Ok(json!({"instance_url": instance}))
        }
        "mailchimp" => {
            let url = provider.metadata_url.as_deref().unwrap_or_default();
            let meta = state.tokens.get_json(url, &format!("OAuth {token}")).await.map_err(|e| e.to_string())?;
            let endpoint = meta.get("api_endpoint").and_then(Value::as_str).ok_or("the metadata has no api_endpoint")?;
            Ok(json!({"base_url": endpoint}))
        }
        "aweber" => {
            let url = provider.accounts_url.as_deref().unwrap_or_default();
            let accounts = state.tokens.get_json(url, &format!("Bearer {token}")).await.map_err(|e| e.to_string())?;
            let id = accounts.pointer("/entries/0/id").ok_or("the token sees no AWeber account")?;
            Ok(json!({"account_id": id.as_str().map(str::to_owned).unwrap_or_else(|| id.to_string())}))
        }
        _ => Ok(json!({})),
    }
}

/// A small page for a browser that cannot be sent back to the product.
fn page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>Switchyard</title><p>{}</p>",
        message.replace('&', "&amp;").replace('<', "&lt;")
    );
    (status, [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}
