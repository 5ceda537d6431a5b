//! Events: ingestion with a publishable key (single and bulk), and the workspace's event history.

use super::common::*;
use super::deliveries::DeliverySummary;
use super::workspaces::visible_workspace;
use crate::audit::Change;
use crate::auth::{Access, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorDetail};
use crate::json::{parse_json, RawBody};
use crate::rates::RateSlot;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use switchyard_core::events::validate_event_name;
use switchyard_core::ids::*;
use switchyard_core::model::{Event, EventStatus};
use switchyard_store::{EventFilter, IngestOutcome, NewDelivery, NewEvent, Owned};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The largest accepted event (a single request's body, or one item of a bulk request).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
pub const MAX_BULK_EVENTS: usize = 1_000;
const MAX_BULK_BYTES: usize = 16 * 1024 * 1024;
pub(crate) const MAX_FIELD_LEN: usize = 256;

pub fn router() -> OpenApiRouter<AppState> {
    let single = OpenApiRouter::new()
        .routes(routes!(ingest_event))
        .routes(routes!(list_events, emit_event))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_EVENT_BYTES));
    let bulk = OpenApiRouter::new().routes(routes!(ingest_bulk)).layer(axum::extract::DefaultBodyLimit::max(MAX_BULK_BYTES));
    OpenApiRouter::new().merge(single).merge(bulk).routes(routes!(get_event))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// 1..128 characters of `[A-Za-z0-9_.:-]`.
    pub event: String,
    /// A JSON object; `{}` when absent.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Box<RawValue>>,
    pub resource: Option<String>,
    pub resource_id: Option<String>,
    /// RFC 3339; when the event happened in the product.
    pub occurred_at: Option<String>,
    /// Same as the `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventAccepted {
    pub id: String,
    pub event: String,
    pub workspace_id: String,
    pub received_at: String,
    /// `accepted`.
    pub status: &'static str,
}

/// Validates one event and matches it against the workspace's rules; `monthly_cap` is the
/// workspace's (read once per request, not per event).
pub(crate) async fn prepare(
    state: &AppState,
    ws: &WorkspaceId,
    input: EventInput,
    header_key: Option<&str>,
    monthly_cap: Option<u64>,
) -> ApiResult<NewEvent> {
    validate_event_name(&input.event).map_err(|m| ApiError::invalid("event", m))?;
    let payload = match input.payload {
        None => "{}".to_owned(),
        Some(raw) if raw.get().starts_with('{') => String::from(Box::<str>::from(raw)),
        Some(_) => return Err(ApiError::invalid("payload", "must be a JSON object")),
    };
    // Kept as sent, but it must read back as JSON wherever rules, templates and mappings read it.
    if let Some(why) = crate::json::unreadable(&payload) {
        return Err(ApiError::invalid("payload", why));
    }
    for (field, value) in [("resource", &input.resource), ("resource_id", &input.resource_id)] {
        if value.as_ref().is_some_and(|v| v.is_empty() || v.len() > MAX_FIELD_LEN) {
            return Err(ApiError::invalid(field, format!("must be 1 to {MAX_FIELD_LEN} characters")));
        }
        refuse_nul(field, value.as_deref())?;
    }
    let occurred_at = time_param(input.occurred_at.as_deref(), "occurred_at")?;
    let idempotency_key = header_key.map(str::to_owned).or(input.idempotency_key);
    if idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > MAX_FIELD_LEN) {
        return Err(ApiError::invalid("idempotency_key", format!("must be 1 to {MAX_FIELD_LEN} characters")));
    }
    refuse_nul("idempotency_key", idempotency_key.as_deref())?;

    let rules = state.cache.active_rules(&*state.store, ws).await?;
    // The condition context is built only if some candidate rule has conditions.
    let mut context: Option<Value> = None;
    let mut deliveries = Vec::new();
    let bound_here = |r: &crate::cache::CompiledRule| {
        r.rule.bound_to.as_ref().is_none_or(|b| b.covers(input.resource.as_deref(), input.resource_id.as_deref()))
    };
    // Switchyard's own notifications go only to rules that ask for them by name (`switchyard.*`):
    // a catch-all `*` is for the workspace's own events.
    let notification = input.event.starts_with(crate::notify::PREFIX);
    let asked_for = |r: &crate::cache::CompiledRule| !notification || r.rule.event.starts_with(crate::notify::PREFIX);
    for compiled in rules.iter().filter(|r| r.pattern.matches(&input.event) && bound_here(r) && asked_for(r)) {
        if let Some(conditions) = &compiled.conditions {
            let ctx = context.get_or_insert_with(|| {
                serde_json::json!({
                    "event": input.event,
                    "resource": input.resource,
                    "resource_id": input.resource_id,
                    "payload": serde_json::from_str::<Value>(&payload).unwrap_or(Value::Null),
                })
            });
            if !conditions.matches(ctx) {
                continue;
            }
        }
        deliveries.push(NewDelivery {
            id: DeliveryId::generate(),
            rule_id: compiled.rule.id.clone(),
            connection_id: compiled.rule.connection_id.clone(),
            lease: None,
        });
    }
    let event = Event {
        id: EventId::generate(),
        workspace_id: ws.clone(),
        event: input.event,
        resource: input.resource,
        resource_id: input.resource_id,
        payload,
        occurred_at,
        received_at: switchyard_core::now_millis(),
        status: if deliveries.is_empty() { EventStatus::Completed } else { EventStatus::Pending },
        test: false,
    };
    Ok(NewEvent { event, idempotency_key, deliveries, monthly_cap })
}

/// PostgreSQL text cannot hold NUL: such an event would fail its whole group commit (every event
/// ingested beside it, in every workspace), so it is refused here, on every store alike.
fn refuse_nul(field: &str, value: Option<&str>) -> ApiResult<()> {
    if value.is_some_and(|v| v.contains('\0')) {
        return Err(ApiError::invalid(field, "must not contain NUL (U+0000)"));
    }
    Ok(())
}

fn accepted_body(id: &EventId, event: &str, ws: &WorkspaceId, received_at: i64) -> EventAccepted {
    EventAccepted {
        id: id.to_string(),
        event: event.to_owned(),
        workspace_id: ws.to_string(),
        received_at: ts(received_at),
        status: "accepted",
    }
}

/// Stores one prepared event; returns its body, or the first event's for an idempotent repeat.
pub async fn accept(state: &AppState, new: NewEvent) -> ApiResult<EventAccepted> {
    let ws = new.event.workspace_id.clone();
    let cap = new.monthly_cap;
    let at = new.event.received_at;
    let mine = accepted_body(&new.event.id, &new.event.event, &ws, new.event.received_at);
    let mut outcomes = state.ingest.submit(vec![new]).await?;
    Ok(match outcomes.pop() {
        Some(IngestOutcome::Duplicate { id, event, received_at }) => accepted_body(&id, &event, &ws, received_at),
        Some(IngestOutcome::OverQuota) => return Err(over_quota(cap.unwrap_or(0), at)),
        _ => mine,
    })
}

/// Event names under `switchyard.` are Switchyard's own notifications: nobody else may send them.
fn refuse_reserved(event: &str) -> ApiResult<()> {
    if event.starts_with(crate::notify::PREFIX) {
        return Err(ApiError::invalid("event", "names starting with \"switchyard.\" are reserved for Switchyard's own notifications"));
    }
    Ok(())
}

/// The 429 for an event received `at`, past its workspace's monthly cap.
fn over_quota(cap: u64, at: switchyard_core::Millis) -> ApiError {
    let (month, _, resets_at) = switchyard_core::limits::month_of(at);
    crate::limits::month_used_up(cap, &month, resets_at, switchyard_core::now_millis())
}

fn ingest_workspace(principal: &Principal) -> ApiResult<WorkspaceId> {
    match principal {
        Principal::Publishable(ws) => Ok(ws.clone()),
        _ => Err(ApiError::forbidden("events are sent with the workspace's publishable key (pk_...)")),
    }
}

fn idempotency_header(headers: &HeaderMap) -> ApiResult<Option<&str>> {
    headers
        .get("idempotency-key")
        .map(|v| v.to_str().map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII")))
        .transpose()
}

/// Accepts one event. 202 means it is durably stored with its deliveries; a repeated
/// idempotency key within 24 h returns 200 with the first event.
#[utoipa::path(post, path = "/events", tag = "events", request_body(content = EventInput, example = json!({"event": "user.created", "payload": {"email": "ada@example.com", "plan": "pro"}, "resource": "account", "resource_id": "acct_42", "occurred_at": "2026-12-01T09:30:00Z"})),
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key, same workspace, within 24 h: the first event is returned")),
    responses((status = 202, body = EventAccepted), (status = 200, body = EventAccepted, description = "Idempotent repeat"),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("publishable_key" = [])))]
async fn ingest_event(
    State(state): State<AppState>,
    principal: Principal,
    rates: Option<Extension<RateSlot>>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let ws = ingest_workspace(&principal)?;
    let (status, accepted) = ingest_one(&state, rates.as_deref(), &ws, &headers, &body).await?;
    Ok((status, Json(accepted)).into_response())
}

/// Parses, matches and stores one event: 202 for a new one, 200 for an idempotent repeat.
async fn ingest_one(
    state: &AppState,
    rates: Option<&RateSlot>,
    ws: &WorkspaceId,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<(StatusCode, EventAccepted)> {
    let input: EventInput = parse_json(body)?;
    refuse_reserved(&input.event)?;
    let limits = crate::limits::of(state, ws).await?;
    crate::rates::admit_events(state, rates, ws, &limits, 1)?;
    let cap = limits.events_per_month;
    let new = prepare(state, ws, input, idempotency_header(headers)?, cap).await?;
    let max = state.config.max_deliveries_per_request;
    if new.deliveries.len() > max {
        return Err(ApiError::invalid(
            "event",
            format!("this event matches {} rules; one request may create at most {max} deliveries", new.deliveries.len()),
        ));
    }
    let id = new.event.id.clone();
    let accepted = accept(state, new).await?;
    let status = if accepted.id == id.as_str() { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((status, accepted))
}

/// Emits one event into a workspace with an API key (editor or above), for scripts, the CLI and
/// agents that hold no publishable key: the same body, rules, answers and idempotency as
/// `POST /events`. Unlike ingestion, each emit is recorded in the audit log.
#[utoipa::path(post, path = "/workspaces/{ws}/events", tag = "events", params(("ws" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Same key, same workspace, within 24 h: the first event is returned")),
    request_body(content = EventInput, example = json!({"event": "user.created", "payload": {"email": "ada@example.com", "plan": "pro"}})),
    responses((status = 202, body = EventAccepted), (status = 200, body = EventAccepted, description = "Idempotent repeat"),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["editor"])))]
async fn emit_event(
    State(state): State<AppState>,
    principal: Principal,
    rates: Option<Extension<RateSlot>>,
    Path(ws): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Change, Json<EventAccepted>)> {
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Write).await?;
    let (status, accepted) = ingest_one(&state, rates.as_deref(), &ws.id, &headers, &body).await?;
    let change = Change::new("event.emit", "event", &accepted.id).in_workspace(&ws.id).summary(json!({"event": accepted.event}));
    Ok((status, change, Json(accepted)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkAccepted {
    pub accepted: usize,
    pub rejected: usize,
    pub results: Vec<BulkItem>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkItem {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// True when an idempotency key matched an earlier event (whose id is given).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// Accepts 1..1000 events in one request: 202 when all were accepted, 207 when some were not (each
/// result says which). Accepted events are durable before the response.
#[utoipa::path(post, path = "/events/bulk", tag = "events", request_body(content = Vec<EventInput>, example = json!([{"event": "user.created", "payload": {"email": "ada@example.com"}, "idempotency_key": "signup-42"}, {"event": "invoice.paid", "payload": {"amount": 4200, "currency": "EUR"}}])),
    responses((status = 202, body = BulkAccepted), (status = 207, body = BulkAccepted), (status = 400, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("publishable_key" = [])))]
async fn ingest_bulk(
    State(state): State<AppState>,
    principal: Principal,
    rates: Option<Extension<RateSlot>>,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let ws = ingest_workspace(&principal)?;
    let items: Vec<Box<RawValue>> = parse_json(&body)?;
    if items.is_empty() || items.len() > MAX_BULK_EVENTS {
        return Err(ApiError::invalid("body", format!("must be an array of 1 to {MAX_BULK_EVENTS} events")));
    }
    let limits = crate::limits::of(&state, &ws).await?;
    // Every item counts against the events-per-second limit, whatever becomes of it.
    crate::rates::admit_events(&state, rates.as_deref(), &ws, &limits, items.len())?;
    let cap = limits.events_per_month;
    let mut results: Vec<BulkItem> = Vec::with_capacity(items.len());
    let mut batch = Vec::with_capacity(items.len());
    let mut fan_out = 0usize;
    for (index, raw) in items.iter().enumerate() {
        let prepared = if raw.get().len() > MAX_EVENT_BYTES {
            Err(ApiError::payload_too_large(format!("the event is larger than {MAX_EVENT_BYTES} bytes")))
        } else {
            match parse_json::<EventInput>(raw.get().as_bytes()) {
                Ok(input) => match refuse_reserved(&input.event) {
                    Ok(()) => prepare(&state, &ws, input, None, cap).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        };
        // Events past the request's delivery limit are refused, each saying so; what fits is kept.
        let max = state.config.max_deliveries_per_request;
        let prepared = prepared.and_then(|new| {
            if fan_out + new.deliveries.len() > max {
                Err(ApiError::invalid(
                    "event",
                    format!(
                        "this request reached its limit of {max} deliveries ({fan_out} so far, this event matches {} rules); send this event in another request",
                        new.deliveries.len()
                    ),
                ))
            } else {
                fan_out += new.deliveries.len();
                Ok(new)
            }
        });
        match prepared {
            Ok(new) => {
                results.push(BulkItem { index, id: Some(new.event.id.to_string()), duplicate: false, error: None });
                batch.push(new);
            }
            Err(e) => results.push(BulkItem { index, id: None, duplicate: false, error: Some(e.body().error) }),
        }
    }
    let mut accepted = batch.len();
    if !batch.is_empty() {
        let cap = cap.unwrap_or(0);
        let at = batch.first().map(|n| n.event.received_at).unwrap_or_else(switchyard_core::now_millis);
        let outcomes = state.ingest.submit(batch).await?;
        let mut ok_items = results.iter_mut().filter(|r| r.error.is_none());
        for outcome in outcomes {
            let item = ok_items.next().ok_or_else(|| ApiError::internal("ingest returned more outcomes than events"))?;
            match outcome {
                IngestOutcome::Duplicate { id, .. } => {
                    item.id = Some(id.into_string());
                    item.duplicate = true;
                }
                IngestOutcome::OverQuota => {
                    item.id = None;
                    item.error = Some(over_quota(cap, at).body().error);
                    accepted -= 1;
                }
                IngestOutcome::Created => {}
            }
        }
        // Nothing fitted under the monthly cap: the request as a whole is refused, as one event would be.
        if accepted == 0 && results.iter().all(|r| r.error.as_ref().is_some_and(|e| e.code == "quota_exceeded")) {
            return Err(over_quota(cap, at));
        }
    }
    let rejected = results.len() - accepted;
    let status = if rejected == 0 { StatusCode::ACCEPTED } else { StatusCode::MULTI_STATUS };
    Ok((status, Json(BulkAccepted { accepted, rejected, results })).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    pub event: Option<String>,
    /// pending, processing, completed or failed.
    pub status: Option<String>,
    pub resource: Option<String>,
    pub resource_id: Option<String>,
    /// RFC 3339: received at or after.
    pub since: Option<String>,
    /// RFC 3339: received before.
    pub until: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventOut {
    pub id: String,
    pub event: String,
    pub workspace_id: String,
    pub resource: Option<String>,
    pub resource_id: Option<String>,
    pub occurred_at: Option<String>,
    pub received_at: String,
    pub status: EventStatus,
    pub test: bool,
    /// Left out for viewer sessions without the `events.payload:read` scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<Vec<DeliverySummary>>,
}

impl EventOut {
    fn new(e: Event, with_payload: bool) -> Self {
        let payload = if with_payload { RawValue::from_string(e.payload).ok() } else { None };
        Self {
            id: e.id.into_string(),
            event: e.event,
            workspace_id: e.workspace_id.into_string(),
            resource: e.resource,
            resource_id: e.resource_id,
            occurred_at: e.occurred_at.map(ts),
            received_at: ts(e.received_at),
            status: e.status,
            test: e.test,
            payload,
            deliveries: None,
        }
    }
}

#[utoipa::path(get, path = "/workspaces/{ws}/events", tag = "events", params(("ws" = String, Path), EventQuery),
    responses((status = 200, body = ListOf<EventOut>)), security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn list_events(
    State(state): State<AppState>,
    principal: Principal,
    Path(ws): Path<String>,
    Q(q): Q<EventQuery>,
) -> ApiResult<Json<ListOf<EventOut>>> {
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Read).await?;
    let page = ListParams { limit: q.limit, cursor: q.cursor }.page()?;
    let status = q
        .status
        .as_deref()
        .map(|s| EventStatus::parse(s).ok_or_else(|| ApiError::invalid("status", "must be pending, processing, completed or failed")))
        .transpose()?;
    // A session narrowed to one resource sees only its events, whatever the query asks.
    let (resource, resource_id) = match principal.resource() {
        Some(r) => (Some(r.resource.clone()), Some(r.resource_id.clone())),
        None => (q.resource, q.resource_id),
    };
    let filter = EventFilter {
        event: q.event,
        status,
        resource,
        resource_id,
        since: time_param(q.since.as_deref(), "since")?,
        until: time_param(q.until.as_deref(), "until")?,
    };
    let items = state.store.list_events(&ws.id, &filter, &page).await?;
    let with_payload = principal.sees_payloads();
    Ok(Json(ListOf::from_fetched(items, &page, |e| e.id.to_string(), |e| EventOut::new(e, with_payload))))
}

#[utoipa::path(get, path = "/events/{id}", tag = "events", params(("id" = String, Path)),
    responses((status = 200, body = EventOut), (status = 404, body = ErrorBody)), security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn get_event(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> ApiResult<Json<EventOut>> {
    let id = path_id(&id, EventId::parse, "event")?;
    let scope = principal.for_row(&*state.store, Owned::Event, id.as_str(), Access::Read).await?;
    let event = state
        .store
        .get_event(&scope, &id)
        .await?
        .filter(|e| principal.sees_resource(e.resource.as_deref(), e.resource_id.as_deref()))
        .ok_or_else(|| ApiError::not_found("event"))?;
    let deliveries = state.store.event_deliveries(&id).await?;
    let mut out = EventOut::new(event, principal.sees_payloads());
    out.deliveries = Some(deliveries.into_iter().map(DeliverySummary::from).collect());
    Ok(Json(out))
}
