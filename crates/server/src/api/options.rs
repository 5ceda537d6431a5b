//! Choices the destination itself holds (Slack channels, Mailchimp audiences, HubSpot lists and
//! properties, ...), listed with the connection's credentials for the pickers of the pages.
//!
//! The catalog names a field's choice set (`"choices": "channels"`); `GET
//! /connections/{id}/options/{set}` lists it. Answers are kept for a minute per connection (and
//! dropped when the connection changes), so a form opened twice asks the vendor once.

use crate::api::connections::visible_connection;
use crate::auth::{Access, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::oauth::tokens::TokenError;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchyard_destinations::{Choice, Exchange, OptionsContext};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long a listing is reused.
const FRESH_FOR: Duration = Duration::from_secs(60);
/// Listings kept at once (the oldest goes first).
const CACHED: usize = 1000;
/// The longest a listing may take, all pages together.
const LISTING_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(connection_options))
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Choices {
    pub data: Vec<Choice>,
    /// True when the destination has more than the 1000 listed.
    pub truncated: bool,
}

/// A listing's key: the connection, when it last changed, the set.
type Key = (String, i64, String);

/// Recent listings, with when each was fetched.
#[derive(Default)]
pub struct OptionsCache {
    entries: Mutex<HashMap<Key, (Instant, Choices)>>,
}

impl OptionsCache {
    fn get(&self, key: &Key) -> Option<Choices> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).filter(|(at, _)| at.elapsed() < FRESH_FOR).map(|(_, c)| c.clone())
    }

    fn put(&self, key: Key, choices: Choices) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (at, _)| at.elapsed() < FRESH_FOR);
        if entries.len() >= CACHED {
            if let Some(oldest) = entries.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone()) {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (Instant::now(), choices));
    }
}

/// Lists a field's choices from the destination (the catalog's `choices` names the set).
#[utoipa::path(get, path = "/connections/{id}/options/{set}", tag = "connections",
    params(("id" = String, Path), ("set" = String, Path, description = "A choice set the catalog names: channels, audiences, lists, properties, templates, groups, tags")),
    responses((status = 200, body = Choices), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 504, body = ErrorBody)),
    security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn connection_options(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, set)): Path<(String, String)>,
) -> ApiResult<Json<Choices>> {
    let (_, conn) = visible_connection(&state, &principal, &id, Access::Read).await?;
    let connector = state.registry.get(&conn.kind).ok_or_else(|| ApiError::not_found("connection type"))?.clone();
    let catalog = connector.catalog();
    let mut sets: Vec<&str> = catalog
        .actions
        .iter()
        .flat_map(|a| a.fields.iter())
        .chain(catalog.config_fields.iter())
        .filter_map(|f| f.choices.as_deref())
        .collect();
    sets.sort_unstable();
    sets.dedup();
    if !sets.contains(&set.as_str()) {
        let mut e = ApiError::not_found("choice set");
        e.message = if sets.is_empty() {
            format!("{} lists no choices", catalog.name)
        } else {
            format!("{} lists these choices: {}", catalog.name, sets.join(", "))
        };
        return Err(e);
    }
    let key = (conn.id.to_string(), conn.updated_at, set.clone());
    if let Some(cached) = state.options_cache.get(&key) {
        return Ok(Json(cached));
    }
    let mut secrets = crate::dispatch::attempt::open_secrets(&state, &conn).map_err(ApiError::internal)?;
    match state.tokens.ensure_fresh(&conn, &mut secrets, None).await {
        Ok(_) => {}
        Err(TokenError::NeedsReauth(_)) => {
            return Err(ApiError::conflict("the destination refused the connection's authorisation: reconnect it first"))
        }
        Err(TokenError::Failed(m)) => return Err(destination_error(format!("could not refresh the access token: {m}"))),
    }
    let timeout = Duration::from_millis(conn.timeout_ms).min(LISTING_TIMEOUT);
    let mut exchange = Exchange::new(&state.options_sender, timeout, &secrets, "");
    let ctx = OptionsContext { connection: &conn, secrets: &secrets };
    let listed = tokio::time::timeout(LISTING_TIMEOUT, connector.options(&set, &ctx, &mut exchange)).await;
    match listed {
        Err(_) => {
            let mut e = destination_error(format!("{} took longer than {} s to list its {set}", catalog.name, LISTING_TIMEOUT.as_secs()));
            e.status = StatusCode::GATEWAY_TIMEOUT;
            Err(e)
        }
        Ok(None) => Err(ApiError::not_found("choice set")),
        Ok(Some(Err(classified))) => {
            let why = classified.error.as_deref().unwrap_or("an unexpected answer");
            let hint = if classified.unauthorized { ": the connection's credentials were refused" } else { "" };
            Err(destination_error(format!("{} could not list its {set}{hint} ({})", catalog.name, exchange.redact(why))))
        }
        Ok(Some(Ok(data))) => {
            let truncated = data.len() >= switchyard_destinations::MAX_CHOICES;
            let choices = Choices { data, truncated };
            state.options_cache.put(key, choices.clone());
            Ok(Json(choices))
        }
    }
}

fn destination_error(message: String) -> ApiError {
    let mut e = ApiError::unavailable(message);
    e.status = StatusCode::BAD_GATEWAY;
    e.code = "destination_error";
    e.retry_after = None;
    e
}
