//! Plans (installation-wide) and usage: what each workspace may use, and what it has used.

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
use serde_json::{json, Value};
use switchyard_core::limits::{day_of, month_of, validate_plan_name, Limits, Plan};
use switchyard_store::Scope;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_plans))
        .routes(routes!(get_plan, put_plan, delete_plan))
        .routes(routes!(workspace_usage))
        .routes(routes!(installation_usage))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlanOut {
    pub name: String,
    pub description: Option<String>,
    /// A limit left out is no limit.
    pub limits: Limits,
    /// `config`: defined in the plans file, read-only here; `api`: made through the API.
    pub source: &'static str,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Plan> for PlanOut {
    fn from(p: Plan) -> Self {
        Self {
            name: p.name,
            description: p.description,
            limits: p.limits,
            source: if p.from_config { "config" } else { "api" },
            created_at: ts(p.created_at),
            updated_at: ts(p.updated_at),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlanList {
    pub data: Vec<PlanOut>,
    /// The plan of workspaces without one of their own, if the plans file names one.
    pub default_plan: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutPlan {
    pub description: Option<String>,
    /// `events_per_month`, `events_per_second`, `events_burst`, `connections`,
    /// `rules_per_workspace`, `rules_per_event_type`, `retention_days`; each left out is no limit.
    #[schema(value_type = Object)]
    pub limits: Value,
}

/// Every plan, and the default one.
#[utoipa::path(get, path = "/plans", tag = "plans", responses((status = 200, body = PlanList)), security(("api_key" = ["installation"])))]
async fn list_plans(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<PlanList>> {
    principal.installation(Access::Read)?;
    let plans = state.store.list_plans().await?;
    Ok(Json(PlanList { data: plans.into_iter().map(PlanOut::from).collect(), default_plan: state.config.plans.default_plan.clone() }))
}

#[utoipa::path(get, path = "/plans/{name}", tag = "plans", params(("name" = String, Path)),
    responses((status = 200, body = PlanOut), (status = 404, body = ErrorBody)), security(("api_key" = ["installation"])))]
async fn get_plan(State(state): State<AppState>, principal: Principal, Path(name): Path<String>) -> ApiResult<Json<PlanOut>> {
    principal.installation(Access::Read)?;
    let plan = state.store.get_plan(&name).await?.ok_or_else(|| ApiError::not_found("plan"))?;
    Ok(Json(plan.into()))
}

/// Creates a plan (201) or replaces one made through the API (200). Workspaces on it get the new
/// limits at once. Plans from the plans file are changed in the file (409 here).
#[utoipa::path(put, path = "/plans/{name}", tag = "plans", params(("name" = String, Path)),
    request_body(content = PutPlan, example = json!({"description": "Growing teams", "limits": {"events_per_month": 1_000_000, "events_per_second": 100, "connections": 25, "rules_per_workspace": 100, "retention_days": 30}})),
    responses((status = 201, body = PlanOut), (status = 200, body = PlanOut), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["installation"])))]
async fn put_plan(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    ValidJson(body): ValidJson<PutPlan>,
) -> ApiResult<(StatusCode, Change, Json<PlanOut>)> {
    principal.installation(Access::Manage)?;
    validate_plan_name(&name).map_err(|m| ApiError::invalid("name", m))?;
    let limits = Limits::from_json(&body.limits).map_err(|(field, m)| ApiError::invalid(format!("limits.{field}"), m))?;
    let now = switchyard_core::now_millis();
    let existing = state.store.get_plan(&name).await?;
    if existing.as_ref().is_some_and(|p| p.from_config) {
        return Err(ApiError::conflict("this plan is defined in the plans file (SWITCHYARD_PLANS_FILE): change it there"));
    }
    let plan = Plan {
        name: name.clone(),
        description: body.description,
        limits,
        from_config: false,
        created_at: existing.as_ref().map(|p| p.created_at).unwrap_or(now),
        updated_at: now,
    };
    state.store.put_plan(&plan).await?;
    state.config_changed();
    let status = if existing.is_some() { StatusCode::OK } else { StatusCode::CREATED };
    let change = Change::new(if existing.is_some() { "plan.update" } else { "plan.create" }, "plan", &name)
        .summary(json!({"limits": serde_json::to_value(&plan.limits).unwrap_or_default()}));
    Ok((status, change, Json(plan.into())))
}

/// Deletes a plan made through the API that no workspace is on (409 otherwise).
#[utoipa::path(delete, path = "/plans/{name}", tag = "plans", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("api_key" = ["installation"])))]
async fn delete_plan(State(state): State<AppState>, principal: Principal, Path(name): Path<String>) -> ApiResult<(StatusCode, Change, ())> {
    principal.installation(Access::Manage)?;
    let plan = state.store.get_plan(&name).await?.ok_or_else(|| ApiError::not_found("plan"))?;
    if plan.from_config {
        return Err(ApiError::conflict("this plan is defined in the plans file (SWITCHYARD_PLANS_FILE): remove it there"));
    }
    if state.config.plans.default_plan.as_deref() == Some(name.as_str()) {
        return Err(ApiError::conflict("this is the default plan"));
    }
    if !state.store.delete_plan(&name).await? {
        return Err(ApiError::not_found("plan"));
    }
    state.config_changed();
    Ok((StatusCode::NO_CONTENT, Change::new("plan.delete", "plan", &name), ()))
}

/// A count against its limit (`null`: no limit).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Counted {
    pub used: u64,
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MonthEvents {
    pub used: u64,
    pub limit: Option<u64>,
    /// When the month's count starts again (the first of next month, UTC).
    pub resets_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Period {
    /// `2026-12`: usage counts per calendar month, UTC.
    pub month: String,
    pub start: String,
    pub end: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DayCount {
    /// `2026-12-01` (UTC).
    pub day: String,
    pub events: u64,
    /// Deliveries created with the day's events.
    pub deliveries: u64,
    /// Deliveries whose last attempt that day succeeded.
    pub succeeded: u64,
    /// Deliveries given up on that day (out of attempts, or refused for good).
    pub dead: u64,
}

/// The month's deliveries by outcome. A delivery counts as created on the day of its event and
/// as succeeded or dead on the day it finished (a replayed delivery counts again when it finishes
/// again); what is neither is still on its way or waiting for a retry.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct MonthDeliveries {
    pub created: u64,
    pub succeeded: u64,
    pub dead: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceUsageOut {
    pub workspace_id: String,
    /// The plan in force: the workspace's own, else the default; `null` when neither.
    pub plan: Option<String>,
    /// The limits in force: the plan's with the workspace's own over them. Left out: no limit.
    pub limits: Limits,
    pub period: Period,
    /// Events accepted this month (test events included).
    pub events: MonthEvents,
    pub deliveries: MonthDeliveries,
    pub connections: Counted,
    pub rules: Counted,
    /// Events and deliveries per day over the last 90 days, oldest first, every day listed.
    pub daily: Vec<DayCount>,
}

fn period(now: switchyard_core::Millis) -> (Period, String, switchyard_core::Millis) {
    let (month, start, end) = month_of(now);
    (Period { month: month.clone(), start: ts(start), end: ts(end) }, month, end)
}

/// This month's events, connections and rules against the limits in force, and a daily series.
#[utoipa::path(get, path = "/workspaces/{ws}/usage", tag = "plans", params(("ws" = String, Path)),
    responses((status = 200, body = WorkspaceUsageOut), (status = 404, body = ErrorBody)),
    security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn workspace_usage(
    State(state): State<AppState>,
    principal: Principal,
    Path(ws): Path<String>,
) -> ApiResult<Json<WorkspaceUsageOut>> {
    // The counts are the whole workspace's: not for a session that sees one resource's events.
    principal.forbid_narrowed("read the workspace's usage")?;
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Read).await?;
    let limits = crate::limits::effective(&*state.store, &ws, state.config.plans.default_plan.as_deref()).await?;
    let now = switchyard_core::now_millis();
    let (period, month, end) = period(now);
    let first_day = now - 89 * 86_400_000;
    let mut counted: std::collections::HashMap<String, switchyard_store::DayUsage> =
        state.store.daily_usage(&ws.id, &day_of(first_day)).await?.into_iter().map(|d| (d.day.clone(), d)).collect();
    let mut deliveries = MonthDeliveries::default();
    let daily = (0..90)
        .map(|i| day_of(first_day + i * 86_400_000))
        .map(|day| {
            let d = counted.remove(&day).unwrap_or_default();
            if day.starts_with(&month) {
                deliveries.created += d.deliveries;
                deliveries.succeeded += d.succeeded;
                deliveries.dead += d.dead;
            }
            DayCount { day, events: d.events, deliveries: d.deliveries, succeeded: d.succeeded, dead: d.dead }
        })
        .collect();
    Ok(Json(WorkspaceUsageOut {
        workspace_id: ws.id.to_string(),
        plan: crate::limits::plan_name(&ws, state.config.plans.default_plan.as_deref()).map(str::to_owned),
        period,
        events: MonthEvents { used: state.store.month_events(&ws.id, &month).await?, limit: limits.events_per_month, resets_at: ts(end) },
        deliveries,
        connections: Counted { used: state.store.count_connections(&ws.id).await?, limit: limits.connections.map(u64::from) },
        rules: Counted { used: state.store.count_rules(&ws.id, None).await?, limit: limits.rules_per_workspace.map(u64::from) },
        limits,
        daily,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BusyWorkspace {
    pub workspace_id: String,
    pub name: String,
    pub plan: Option<String>,
    pub events: u64,
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstallationUsageOut {
    pub period: Period,
    /// Events accepted this month across every workspace.
    pub events: u64,
    pub workspaces: Counted,
    /// The month's 20 busiest workspaces, most events first.
    pub busiest: Vec<BusyWorkspace>,
}

/// The installation's month: events in all, workspaces against their limit, the busiest ones.
#[utoipa::path(get, path = "/usage", tag = "plans", responses((status = 200, body = InstallationUsageOut)), security(("api_key" = ["installation"])))]
async fn installation_usage(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<InstallationUsageOut>> {
    principal.installation(Access::Read)?;
    let now = switchyard_core::now_millis();
    let (period, month, _) = period(now);
    let (events, top) = state.store.installation_month(&month, 20).await?;
    let mut busiest = Vec::with_capacity(top.len());
    let default_plan = state.config.plans.default_plan.as_deref();
    for usage in top {
        let Some(ws) = state.store.get_workspace(&Scope::All, &usage.workspace_id).await? else { continue };
        let limit = crate::limits::effective(&*state.store, &ws, default_plan).await?.events_per_month;
        busiest.push(BusyWorkspace {
            workspace_id: ws.id.to_string(),
            plan: crate::limits::plan_name(&ws, default_plan).map(str::to_owned),
            name: ws.name,
            events: usage.events,
            limit,
        });
    }
    Ok(Json(InstallationUsageOut {
        period,
        events,
        workspaces: Counted { used: state.store.count_workspaces().await?, limit: state.config.plans.max_workspaces.map(u64::from) },
        busiest,
    }))
}
