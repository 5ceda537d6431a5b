//! A workspace's dashboard figures: events and deliveries over the last 24 hours and 7 days, the
//! failure rate, and the connections that need attention. Their cost is bounded whatever the
//! workspace's traffic: totals stop counting at 100,000, and where deliveries stand (and so the
//! failure rate and the failing connections) is read from the latest 10,000 of each window.

use super::workspaces::visible_workspace;
use crate::auth::{Access, Principal};
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use std::collections::BTreeMap;
use switchyard_core::model::{ConnectionStatus, DeliveryStatus, InactiveReason};
use switchyard_store::WindowCounts;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const DAY_MS: i64 = 24 * 3600 * 1000;
/// A connection is failing when at least this share of its last day's finished deliveries failed.
const FAILING_SHARE: f64 = 0.1;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(workspace_stats))
}

#[derive(Debug, Default, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct DeliveryCounts {
    pub total: u64,
    pub succeeded: u64,
    /// Gave up after their last attempt.
    pub dead: u64,
    pub retrying: u64,
    pub pending: u64,
    pub delivering: u64,
    /// Cancelled before they were delivered.
    pub cancelled: u64,
}

impl DeliveryCounts {
    fn add(&mut self, status: DeliveryStatus, n: u64) {
        self.total += n;
        match status {
            DeliveryStatus::Succeeded => self.succeeded += n,
            DeliveryStatus::Dead => self.dead += n,
            DeliveryStatus::Retrying => self.retrying += n,
            DeliveryStatus::Pending => self.pending += n,
            DeliveryStatus::Delivering => self.delivering += n,
            DeliveryStatus::Cancelled => self.cancelled += n,
        }
    }

    /// Failed (dead or retrying) among those that are done or have tried: 0..1.
    fn failure_rate(&self) -> f64 {
        let tried = self.succeeded + self.dead + self.retrying;
        if tried == 0 {
            0.0
        } else {
            (self.dead + self.retrying) as f64 / tried as f64
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WindowStats {
    /// Events received (counting stops at 100,000: see `capped`).
    pub events: u64,
    /// Deliveries created (counting stops at 100,000).
    pub deliveries_total: u64,
    /// True when `events` or `deliveries_total` reached 100,000: there are at least that many.
    pub capped: bool,
    /// Where the latest deliveries of the window stand (at most 10,000 of them: `sampled`).
    pub deliveries: DeliveryCounts,
    /// How many deliveries `deliveries` and `failure_rate` cover.
    pub sampled: u64,
    /// Dead or retrying deliveries among those attempted, 0..1, of the sampled ones.
    pub failure_rate: f64,
}

impl WindowStats {
    fn new(w: &WindowCounts) -> Self {
        let mut deliveries = DeliveryCounts::default();
        for (_, status, n) in &w.deliveries {
            deliveries.add(*status, *n);
        }
        Self {
            events: w.events,
            deliveries_total: w.deliveries_total,
            capped: w.events >= switchyard_store::COUNT_CAP || w.deliveries_total >= switchyard_store::COUNT_CAP,
            sampled: deliveries.total,
            failure_rate: deliveries.failure_rate(),
            deliveries,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttentionItem {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `needs_reauth` (reconnect it), `disabled` (it failed for too long: fix it, then resume it),
    /// `paused` (resume it when ready), or `failing` (at least a tenth of the last day's deliveries
    /// failed).
    pub reason: &'static str,
    /// Its deliveries among the last 24 hours' latest 10,000.
    pub deliveries_24h: DeliveryCounts,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceStats {
    pub last_24h: WindowStats,
    pub last_7d: WindowStats,
    /// Connections that need attention: needing reauthorisation, disabled, paused, then failing.
    pub attention: Vec<AttentionItem>,
}

/// Events and deliveries over the last 24 hours and 7 days, and the connections needing attention.
#[utoipa::path(get, path = "/workspaces/{ws}/stats", tag = "workspaces", params(("ws" = String, Path)),
    responses((status = 200, body = WorkspaceStats), (status = 404, body = ErrorBody)),
    security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn workspace_stats(State(state): State<AppState>, principal: Principal, Path(ws): Path<String>) -> ApiResult<Json<WorkspaceStats>> {
    let (_, ws) = visible_workspace(&state, &principal, &ws, Access::Read).await?;
    let now = switchyard_core::now_millis();
    // A session narrowed to one resource counts only that resource's events and deliveries.
    let resource = principal.resource();
    let (day, week) = tokio::try_join!(
        state.store.window_counts(&ws.id, now - DAY_MS, resource),
        state.store.window_counts(&ws.id, now - 7 * DAY_MS, resource)
    )?;
    let mut per_connection: BTreeMap<&str, DeliveryCounts> = BTreeMap::new();
    for (conn, status, n) in &day.deliveries {
        per_connection.entry(conn.as_str()).or_default().add(*status, *n);
    }
    let mut attention = Vec::new();
    // Every connection needing reauthorisation, then those failing.
    let mut page = switchyard_store::Page { limit: 500, before: None };
    loop {
        let batch = state.store.list_connections(&ws.id, &page).await?;
        for c in &batch {
            let counts = per_connection.get(c.id.as_str()).copied().unwrap_or_default();
            let reason = if c.status == ConnectionStatus::NeedsReauth {
                Some("needs_reauth")
            } else if let Some((why, _)) = c.inactive {
                Some(if why == InactiveReason::Failing { "disabled" } else { "paused" })
            } else if counts.dead + counts.retrying > 0 && counts.failure_rate() >= FAILING_SHARE {
                Some("failing")
            } else {
                None
            };
            if let Some(reason) = reason {
                attention.push(AttentionItem {
                    id: c.id.to_string(),
                    name: c.name.clone(),
                    kind: c.kind.clone(),
                    reason,
                    deliveries_24h: counts,
                });
            }
        }
        if batch.len() < page.limit as usize {
            break;
        }
        page.before = batch.last().map(|c| c.id.to_string());
    }
    let rank = |reason: &str| ["needs_reauth", "disabled", "paused"].iter().position(|r| *r == reason).unwrap_or(3);
    attention.sort_by_key(|a| (rank(a.reason), std::cmp::Reverse(a.deliveries_24h.dead + a.deliveries_24h.retrying)));
    Ok(Json(WorkspaceStats { last_24h: WindowStats::new(&day), last_7d: WindowStats::new(&week), attention }))
}
