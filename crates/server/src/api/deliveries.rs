//! Deliveries: one event through one rule, with every attempt; replay and cancel, one by one, by
//! event or by filter.

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
use switchyard_core::ids::*;
use switchyard_core::model::{Attempt, Delivery, DeliveryStatus};
use switchyard_store::{CancelCount, CancelOutcome, DeliveryFilter, Owned, Scope};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_delivery))
        .routes(routes!(list_deliveries))
        .routes(routes!(replay_delivery))
        .routes(routes!(replay_workspace))
        .routes(routes!(cancel_delivery))
        .routes(routes!(cancel_event))
        .routes(routes!(cancel_workspace))
}

/// A delivery as listed, and as embedded in its event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliverySummary {
    pub id: String,
    pub event_id: String,
    pub rule_id: String,
    pub connection_id: String,
    pub workspace_id: String,
    pub status: DeliveryStatus,
    pub attempt_count: u32,
    /// When the next attempt is due (pending and retrying deliveries).
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Delivery> for DeliverySummary {
    fn from(d: Delivery) -> Self {
        let waiting = matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Retrying);
        Self {
            id: d.id.into_string(),
            event_id: d.event_id.into_string(),
            rule_id: d.rule_id.into_string(),
            connection_id: d.connection_id.into_string(),
            workspace_id: d.workspace_id.into_string(),
            status: d.status,
            attempt_count: d.attempt_count,
            next_attempt_at: d.next_attempt_at.filter(|_| waiting).map(ts),
            last_error: d.last_error,
            created_at: ts(d.created_at),
            updated_at: ts(d.updated_at),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptOut {
    pub number: u32,
    pub started_at: String,
    pub duration_ms: u64,
    /// The destination's HTTP status; null when no response came (timeout, refused connection).
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// The first 2 KiB of the response body.
    pub response_excerpt: Option<String>,
    /// What was sent: method and URL, headers and the start of the body, with credentials
    /// replaced by `[redacted]`. Several requests when the action needed them (find, then update).
    /// This and `response_excerpt` are left out for a viewer session without `events.payload:read`.
    pub request: Option<String>,
}

impl From<Attempt> for AttemptOut {
    fn from(a: Attempt) -> Self {
        Self {
            number: a.number,
            started_at: ts(a.started_at),
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            error: a.error,
            response_excerpt: a.response_excerpt,
            request: a.request,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryOut {
    #[serde(flatten)]
    pub delivery: DeliverySummary,
    pub attempts: Vec<AttemptOut>,
}

#[utoipa::path(get, path = "/deliveries/{id}", tag = "deliveries", params(("id" = String, Path)),
    responses((status = 200, body = DeliveryOut), (status = 404, body = ErrorBody)), security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn get_delivery(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> ApiResult<Json<DeliveryOut>> {
    let id = path_id(&id, DeliveryId::parse, "delivery")?;
    let scope = principal.for_row(&*state.store, Owned::Delivery, id.as_str(), Access::Read).await?;
    let delivery = state.store.get_delivery(&scope, &id).await?.ok_or_else(|| ApiError::not_found("delivery"))?;
    visible_to_narrowed(&state, &principal, &scope, &delivery.event_id).await?;
    let attempts = state.store.delivery_attempts(&id).await?;
    // What was sent carries the payload (and what came back may echo it): only for those who
    // may see payloads.
    let with_payload = principal.sees_payloads();
    let attempts = attempts
        .into_iter()
        .map(AttemptOut::from)
        .map(|a| if with_payload { a } else { AttemptOut { request: None, response_excerpt: None, ..a } })
        .collect();
    Ok(Json(DeliveryOut { delivery: delivery.into(), attempts }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// pending, delivering, succeeded, retrying or dead.
    pub status: Option<String>,
    pub connection_id: Option<String>,
    pub rule_id: Option<String>,
    /// The event's name (exact).
    pub event: Option<String>,
    /// RFC 3339: created at or after.
    pub since: Option<String>,
    /// RFC 3339: created before.
    pub until: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// A filter over a workspace's deliveries, as query parameters or a replay body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayFilter {
    /// Default `dead`.
    pub status: Option<String>,
    pub connection_id: Option<String>,
    pub rule_id: Option<String>,
    /// Only deliveries of events with this name (exact).
    pub event: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

fn delivery_filter(
    status: Option<&str>,
    connection_id: Option<&str>,
    rule_id: Option<&str>,
    event: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
) -> ApiResult<DeliveryFilter> {
    let status = status
        .map(|s| {
            DeliveryStatus::parse(s)
                .ok_or_else(|| ApiError::invalid("status", "must be pending, delivering, succeeded, retrying, dead or cancelled"))
        })
        .transpose()?;
    // An id that cannot exist matches nothing, like any other unknown id.
    let connection_id = connection_id.map(|c| ConnectionId::parse(c).unwrap_or_else(|| ConnectionId::from_trusted(c.to_owned())));
    let rule_id = rule_id.map(|r| RuleId::parse(r).unwrap_or_else(|| RuleId::from_trusted(r.to_owned())));
    Ok(DeliveryFilter {
        status,
        connection_id,
        rule_id,
        resource: None,
        event: event.filter(|e| !e.is_empty()).map(str::to_owned),
        since: time_param(since, "since")?,
        until: time_param(until, "until")?,
        event_id: None,
    })
}

#[utoipa::path(get, path = "/workspaces/{ws}/deliveries", tag = "deliveries", params(("ws" = String, Path), DeliveryQuery),
    responses((status = 200, body = ListOf<DeliverySummary>)), security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn list_deliveries(
    State(state): State<AppState>,
    principal: Principal,
    Path(ws): Path<String>,
    Q(q): Q<DeliveryQuery>,
) -> ApiResult<Json<ListOf<DeliverySummary>>> {
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Read).await?;
    let page = ListParams { limit: q.limit, cursor: q.cursor.clone() }.page()?;
    let filter = delivery_filter(
        q.status.as_deref(),
        q.connection_id.as_deref(),
        q.rule_id.as_deref(),
        q.event.as_deref(),
        q.since.as_deref(),
        q.until.as_deref(),
    )?;
    let filter = DeliveryFilter { resource: principal.resource().cloned(), ..filter };
    let items = state.store.list_deliveries(&ws.id, &filter, &page).await?;
    Ok(Json(ListOf::from_fetched(items, &page, |d| d.id.to_string(), DeliverySummary::from)))
}

/// A session narrowed to one resource sees only that resource's events' deliveries: any other is
/// not found.
async fn visible_to_narrowed(state: &AppState, principal: &Principal, scope: &Scope, event: &EventId) -> ApiResult<()> {
    if principal.resource().is_none() {
        return Ok(());
    }
    let event = state.store.get_event(scope, event).await?.ok_or_else(|| ApiError::not_found("delivery"))?;
    if principal.sees_resource(event.resource.as_deref(), event.resource_id.as_deref()) {
        Ok(())
    } else {
        Err(ApiError::not_found("delivery"))
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplayAccepted {
    pub id: String,
    /// `pending`.
    pub status: DeliveryStatus,
}

/// Sends a delivery back to `pending`, due now, with a fresh retry budget. Its earlier attempts
/// stay in its history. 409 while an attempt is in flight.
#[utoipa::path(post, path = "/deliveries/{id}/replay", tag = "deliveries", params(("id" = String, Path)),
    responses((status = 202, body = ReplayAccepted), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn replay_delivery(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Change, Json<ReplayAccepted>)> {
    let id = path_id(&id, DeliveryId::parse, "delivery")?;
    let scope = principal.for_row(&*state.store, Owned::Delivery, id.as_str(), Access::Write).await?;
    let delivery = state.store.get_delivery(&scope, &id).await?.ok_or_else(|| ApiError::not_found("delivery"))?;
    visible_to_narrowed(&state, &principal, &scope, &delivery.event_id).await?;
    let change = Change::new("delivery.replay", "delivery", &id)
        .in_workspace(&delivery.workspace_id)
        .summary(json!({"event_id": delivery.event_id, "connection_id": delivery.connection_id, "was": delivery.status}));
    match state.store.replay_delivery(&scope, &id, switchyard_core::now_millis()).await? {
        None => Err(ApiError::not_found("delivery")),
        Some(false) => Err(ApiError::conflict("an attempt of this delivery is in flight; replay it once it finishes")),
        Some(true) => {
            state.wake.notify_one();
            Ok((StatusCode::ACCEPTED, change, Json(ReplayAccepted { id: id.into_string(), status: DeliveryStatus::Pending })))
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkReplayed {
    pub replayed: u64,
}

/// Replays every delivery of the workspace matching the filter (by default every dead one).
#[utoipa::path(post, path = "/workspaces/{ws}/replay", tag = "deliveries", params(("ws" = String, Path)), request_body(content = ReplayFilter, example = json!({"status": "dead", "connection_id": "conn_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3", "since": "2026-12-01T00:00:00Z"})),
    responses((status = 202, body = BulkReplayed), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn replay_workspace(
    State(state): State<AppState>,
    principal: Principal,
    Path(ws): Path<String>,
    ValidJson(body): ValidJson<ReplayFilter>,
) -> ApiResult<(StatusCode, Change, Json<BulkReplayed>)> {
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Write).await?;
    let filter = delivery_filter(
        Some(body.status.as_deref().unwrap_or("dead")),
        body.connection_id.as_deref(),
        body.rule_id.as_deref(),
        body.event.as_deref(),
        body.since.as_deref(),
        body.until.as_deref(),
    )?;
    let filter = DeliveryFilter { resource: principal.resource().cloned(), ..filter };
    if filter.status == Some(DeliveryStatus::Delivering) {
        return Err(ApiError::invalid("status", "deliveries in flight cannot be replayed"));
    }
    let replayed = state.store.replay_matching(&ws.id, &filter, switchyard_core::now_millis()).await?;
    if replayed > 0 {
        state.wake.notify_one();
    }
    let change = Change { resource_id: None, ..Change::new("deliveries.replay", "delivery", "") }.in_workspace(&ws.id).summary(json!({
        "replayed": replayed,
        "filter": {"status": filter.status, "connection_id": filter.connection_id, "rule_id": filter.rule_id, "event": filter.event,
                   "since": filter.since.map(ts), "until": filter.until.map(ts)},
    }));
    Ok((StatusCode::ACCEPTED, change, Json(BulkReplayed { replayed })))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CancelAccepted {
    pub id: String,
    /// `cancelled`; or `delivering` while an attempt is in flight: it finishes, and unless it
    /// succeeds the delivery is `cancelled` instead of being retried.
    pub status: DeliveryStatus,
}

/// Cancels a delivery that has not finished: it is never attempted again (a replay still sends it
/// on purpose). 200 when it is `cancelled` (again: cancelling twice is harmless); 202 while an
/// attempt is in flight, which ends it unless it succeeds; 409 once it succeeded or is dead.
#[utoipa::path(post, path = "/deliveries/{id}/cancel", tag = "deliveries", params(("id" = String, Path)),
    responses((status = 200, body = CancelAccepted), (status = 202, body = CancelAccepted, description = "An attempt is in flight"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn cancel_delivery(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Change, Json<CancelAccepted>)> {
    let id = path_id(&id, DeliveryId::parse, "delivery")?;
    let scope = principal.for_row(&*state.store, Owned::Delivery, id.as_str(), Access::Write).await?;
    let delivery = state.store.get_delivery(&scope, &id).await?.ok_or_else(|| ApiError::not_found("delivery"))?;
    visible_to_narrowed(&state, &principal, &scope, &delivery.event_id).await?;
    let change = Change::new("delivery.cancel", "delivery", &id)
        .in_workspace(&delivery.workspace_id)
        .summary(json!({"event_id": delivery.event_id, "connection_id": delivery.connection_id, "was": delivery.status}));
    let (status, now) = match state.store.cancel_delivery(&scope, &id, switchyard_core::now_millis()).await? {
        None => return Err(ApiError::not_found("delivery")),
        Some(CancelOutcome::Cancelled) => (StatusCode::OK, DeliveryStatus::Cancelled),
        Some(CancelOutcome::InFlight) => (StatusCode::ACCEPTED, DeliveryStatus::Delivering),
        Some(CancelOutcome::Finished(DeliveryStatus::Cancelled)) => (StatusCode::OK, DeliveryStatus::Cancelled),
        Some(CancelOutcome::Finished(done)) => {
            return Err(ApiError::conflict(format!("this delivery is {done}: there is nothing left to cancel")));
        }
    };
    Ok((status, change, Json(CancelAccepted { id: id.into_string(), status: now })))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkCancelled {
    /// Waiting deliveries now `cancelled`.
    pub cancelled: u64,
    /// Deliveries with an attempt in flight: each is `cancelled` when its attempt ends, unless it succeeds.
    pub in_flight: u64,
}

impl From<CancelCount> for BulkCancelled {
    fn from(c: CancelCount) -> Self {
        Self { cancelled: c.cancelled, in_flight: c.in_flight }
    }
}

/// Cancels every unfinished delivery of an event (pending, retrying, or in flight).
#[utoipa::path(post, path = "/events/{id}/cancel", tag = "deliveries", params(("id" = String, Path)),
    responses((status = 200, body = BulkCancelled), (status = 404, body = ErrorBody)),
    security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn cancel_event(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(Change, Json<BulkCancelled>)> {
    let id = path_id(&id, EventId::parse, "event")?;
    let scope = principal.for_row(&*state.store, Owned::Event, id.as_str(), Access::Write).await?;
    let event = state.store.get_event(&scope, &id).await?.ok_or_else(|| ApiError::not_found("event"))?;
    if !principal.sees_resource(event.resource.as_deref(), event.resource_id.as_deref()) {
        return Err(ApiError::not_found("event"));
    }
    let filter = DeliveryFilter { event_id: Some(id.clone()), ..DeliveryFilter::default() };
    let count = state.store.cancel_matching(&event.workspace_id, &filter, switchyard_core::now_millis()).await?;
    let change = Change::new("event.cancel", "event", &id)
        .in_workspace(&event.workspace_id)
        .summary(json!({"cancelled": count.cancelled, "in_flight": count.in_flight}));
    Ok((change, Json(count.into())))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelFilter {
    /// `pending`, `retrying` or `delivering`; by default all three.
    pub status: Option<String>,
    pub connection_id: Option<String>,
    pub rule_id: Option<String>,
    /// Only deliveries of events with this name (exact).
    pub event: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

/// Cancels every unfinished delivery of the workspace matching the filter (by default every
/// one): waiting ones at once, those in flight when their attempt ends.
#[utoipa::path(post, path = "/workspaces/{ws}/cancel", tag = "deliveries", params(("ws" = String, Path)), request_body(content = CancelFilter, example = json!({"connection_id": "conn_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3", "status": "retrying"})),
    responses((status = 200, body = BulkCancelled), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["editor"]), ("session_token" = ["editor"])))]
async fn cancel_workspace(
    State(state): State<AppState>,
    principal: Principal,
    Path(ws): Path<String>,
    ValidJson(body): ValidJson<CancelFilter>,
) -> ApiResult<(Change, Json<BulkCancelled>)> {
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Write).await?;
    let filter = delivery_filter(
        body.status.as_deref(),
        body.connection_id.as_deref(),
        body.rule_id.as_deref(),
        body.event.as_deref(),
        body.since.as_deref(),
        body.until.as_deref(),
    )?;
    if matches!(filter.status, Some(DeliveryStatus::Succeeded | DeliveryStatus::Dead | DeliveryStatus::Cancelled)) {
        return Err(ApiError::invalid("status", "only unfinished deliveries can be cancelled: pending, retrying or delivering"));
    }
    let filter = DeliveryFilter { resource: principal.resource().cloned(), ..filter };
    let count = state.store.cancel_matching(&ws.id, &filter, switchyard_core::now_millis()).await?;
    let change = Change { resource_id: None, ..Change::new("deliveries.cancel", "delivery", "") }.in_workspace(&ws.id).summary(json!({
        "cancelled": count.cancelled,
        "in_flight": count.in_flight,
        "filter": {"status": filter.status, "connection_id": filter.connection_id, "rule_id": filter.rule_id, "event": filter.event,
                   "since": filter.since.map(ts), "until": filter.until.map(ts)},
    }));
    Ok((change, Json(count.into())))
}
