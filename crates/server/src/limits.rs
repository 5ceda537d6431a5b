//! Plans and limits as the API applies them (see docs/limits.md): a workspace's effective limits,
//! the errors that name a limit, and the plans file.

use crate::error::{ApiError, FieldDetail};
use axum::http::StatusCode;
use serde::Deserialize;
use std::collections::BTreeMap;
use switchyard_core::limits::{Limits, Plan};
use switchyard_core::model::Workspace;
use switchyard_store::Store;

/// The installation's plans and limits, from the plans file (`SWITCHYARD_PLANS_FILE`).
#[derive(Debug, Clone, Default)]
pub struct PlansConfig {
    /// Request rates per credential and per client address (see [`crate::rates`]).
    pub rate_limits: crate::rates::RateLimits,
    /// The plan of every workspace that has none of its own.
    pub default_plan: Option<String>,
    /// Most workspaces the installation holds.
    pub max_workspaces: Option<u32>,
    /// Plans defined in the file: read-only through the API.
    pub plans: Vec<Plan>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlansFile {
    default_plan: Option<String>,
    max_workspaces: Option<u32>,
    #[serde(default)]
    plans: BTreeMap<String, PlanEntry>,
    #[serde(default)]
    rate_limits: crate::rates::RateLimitsFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanEntry {
    description: Option<String>,
    #[serde(flatten)]
    limits: Limits,
}

impl PlansConfig {
    /// Reads a plans file (TOML). Errors name what is wrong.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: PlansFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let now = switchyard_core::now_millis();
        let mut plans = Vec::new();
        for (name, entry) in file.plans {
            switchyard_core::limits::validate_plan_name(&name).map_err(|m| format!("plan `{name}`: its name {m}"))?;
            let limits = Limits::from_json(&serde_json::to_value(&entry.limits).unwrap_or_default())
                .map_err(|(field, m)| format!("plan `{name}`: {field} {m}"))?;
            plans.push(Plan { name, description: entry.description, limits, from_config: true, created_at: now, updated_at: now });
        }
        if let Some(default) = &file.default_plan {
            if !plans.iter().any(|p| &p.name == default) {
                return Err(format!("default_plan `{default}` is not one of the file's plans"));
            }
        }
        let rate_limits = file.rate_limits.resolve()?;
        Ok(Self { rate_limits, default_plan: file.default_plan, max_workspaces: file.max_workspaces, plans })
    }
}

/// A workspace's effective limits, cached until the configuration changes.
pub async fn of(state: &crate::state::AppState, ws: &switchyard_core::ids::WorkspaceId) -> crate::error::ApiResult<std::sync::Arc<Limits>> {
    state.cache.limits(&*state.store, ws, state.config.plans.default_plan.as_deref()).await?.ok_or_else(|| ApiError::not_found("workspace"))
}

/// Fails with the limit's error when the workspace already holds `used` of a limit of `max`.
pub fn check(limit: &'static str, max: Option<u32>, used: u64) -> crate::error::ApiResult<()> {
    match max {
        Some(max) if used >= u64::from(max) => Err(limit_reached(limit, u64::from(max))),
        _ => Ok(()),
    }
}

/// The plan a workspace is on: its own, else the default (if any).
pub fn plan_name<'a>(ws: &'a Workspace, default_plan: Option<&'a str>) -> Option<&'a str> {
    ws.plan.as_deref().or(default_plan)
}

/// A workspace's limits: its plan's, with its overrides laid over them. A plan that no longer
/// exists limits nothing (deleting one that workspaces are on is refused).
pub async fn effective(store: &dyn Store, ws: &Workspace, default_plan: Option<&str>) -> switchyard_store::Result<Limits> {
    let base = match plan_name(ws, default_plan) {
        Some(name) => match store.get_plan(name).await? {
            Some(plan) => plan.limits,
            None => {
                // Deleting a plan in use is refused, so only a race with that deletion gets here.
                tracing::error!(workspace = %ws.id, plan = name, "the workspace's plan does not exist: it is not limited by one");
                Limits::default()
            }
        },
        None => Limits::default(),
    };
    Ok(base.with_overrides(&ws.limit_overrides))
}

fn what(limit: &str) -> &str {
    match limit {
        "connections" => "connections",
        "rules_per_workspace" => "rules",
        "rules_per_event_type" => "rules for one event pattern",
        "workspaces" => "workspaces",
        other => other,
    }
}

/// 422 `validation_failed` (the contract's code for a 422): creating this would pass a limit;
/// the detail's field names it (`limits.connections`), the message says the plan's figure.
pub fn limit_reached(limit: &str, max: u64) -> ApiError {
    metrics::counter!("switchyard_limit_hits_total", "limit" => limit.to_owned()).increment(1);
    let message = if limit == "workspaces" {
        format!("the installation has reached its limit of {max} workspaces")
    } else {
        format!("this workspace has reached its plan's limit of {max} {}", what(limit))
    };
    let mut e = ApiError::invalid(format!("limits.{limit}"), message.clone());
    e.message = message;
    e
}

/// 429 `quota_exceeded` for an event past the monthly cap, with `Retry-After` until the month ends.
pub fn month_used_up(cap: u64, month: &str, resets_at: switchyard_core::Millis, now: switchyard_core::Millis) -> ApiError {
    metrics::counter!("switchyard_limit_hits_total", "limit" => "events_per_month").increment(1);
    let message = format!(
        "this workspace has accepted its {cap} events for {month} (its plan's events_per_month); it accepts events again at {}",
        switchyard_core::rfc3339(resets_at)
    );
    let mut e = ApiError::invalid("limits.events_per_month", message.clone());
    e.status = StatusCode::TOO_MANY_REQUESTS;
    e.code = "quota_exceeded";
    e.message = message;
    e.details = vec![FieldDetail {
        field: "limits.events_per_month".into(),
        message: format!("{cap} per calendar month (UTC)"),
        line: None,
        column: None,
    }];
    e.retry_after = Some(((resets_at - now).max(1000) as u64).div_ceil(1000));
    e
}
