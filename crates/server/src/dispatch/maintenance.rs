//! Periodic housekeeping on worker nodes: recover leases of nodes that died, publish queue depth,
//! disable connections that have failed for too long, forget idempotency keys whose window has
//! passed, and delete history past its retention.

use crate::state::AppState;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const QUEUE_GAUGE_INTERVAL: Duration = Duration::from_secs(5);
const IDEMPOTENCY_SWEEP_INTERVAL: Duration = Duration::from_secs(600);
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// Events deleted per transaction, so pruning never holds long locks.
const RETENTION_BATCH: u32 = 200;

pub async fn run(state: AppState, stop: CancellationToken) {
    let mut leases = tokio::time::interval(state.config.dispatcher.lease_check_interval);
    let mut gauge = tokio::time::interval(QUEUE_GAUGE_INTERVAL);
    let mut sweep = tokio::time::interval(IDEMPOTENCY_SWEEP_INTERVAL);
    let mut retention = tokio::time::interval(RETENTION_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = leases.tick() => {
                match state.store.recover_expired_leases(switchyard_core::now_millis()).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::warn!(deliveries = n, "recovered deliveries whose lease expired");
                        metrics::counter!("switchyard_lease_recoveries_total").increment(n);
                        state.wake.notify_one();
                    }
                    Err(e) => tracing::warn!(error = %e, "lease recovery failed"),
                }
            }
            _ = gauge.tick() => {
                if let Ok(n) = state.store.waiting_count().await {
                    metrics::gauge!("switchyard_deliveries_waiting").set(n as f64);
                }
                disable_failing(&state).await;
            }
            _ = sweep.tick() => {
                if let Err(e) = state.store.expire_idempotency_keys(switchyard_core::now_millis()).await {
                    tracing::warn!(error = %e, "idempotency key sweep failed");
                }
                // Connect flows started and never finished.
                if let Err(e) = state.store.purge_oauth_states(switchyard_core::now_millis()).await {
                    tracing::warn!(error = %e, "OAuth state sweep failed");
                }
                // Console sign-ins past their expiry (they are refused already; this frees the rows).
                let expired = switchyard_store::EndSessions::ExpiredBefore(switchyard_core::now_millis());
                if let Err(e) = state.store.end_console_sessions(&expired).await {
                    tracing::warn!(error = %e, "console session sweep failed");
                }
            }
            _ = retention.tick() => {
                if state.config.retention.is_some() {
                    prune(&state, &stop).await;
                }
                prune_by_plan(&state, &stop).await;
                prune_audit(&state, &stop).await;
            }
        }
    }
}

/// Disables the connections that have failed for longer than the installation allows.
async fn disable_failing(state: &AppState) {
    let Some(after) = state.config.disable_failing_after else { return };
    let now = switchyard_core::now_millis();
    match state.store.disable_failing_connections(now - after.as_millis() as i64, now).await {
        Ok(disabled) if disabled.is_empty() => {}
        Ok(disabled) => {
            for (connection, workspace) in &disabled {
                tracing::warn!(%connection, %workspace, hours = after.as_secs() / 3_600, "connection disabled: every attempt failed for too long");
            }
            metrics::counter!("switchyard_connections_disabled_total").increment(disabled.len() as u64);
            state.config_changed();
        }
        Err(e) => tracing::warn!(error = %e, "disabling failing connections failed"),
    }
}

/// Deletes audit entries older than their retention, a batch at a time.
async fn prune_audit(state: &AppState, stop: &CancellationToken) {
    let Some(keep) = state.config.audit_retention else { return };
    let before = switchyard_core::now_millis() - keep.as_millis() as i64;
    let mut total = 0;
    while !stop.is_cancelled() {
        match state.store.prune_audit(before, RETENTION_BATCH).await {
            Ok(n) => {
                total += n;
                if n < u64::from(RETENTION_BATCH) {
                    break;
                }
                tokio::task::yield_now().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit log pruning failed");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(entries = total, "pruned the audit log past its retention");
    }
}

/// Deletes finished history older than the installation's retention, a batch at a time.
async fn prune(state: &AppState, stop: &CancellationToken) {
    let Some(keep) = state.config.retention else { return };
    let before = switchyard_core::now_millis() - keep.as_millis() as i64;
    prune_before(state, stop, before, None).await;
}

/// Deletes each workspace's finished history older than its plan's `retention_days`.
async fn prune_by_plan(state: &AppState, stop: &CancellationToken) {
    let mut page = switchyard_store::Page { limit: 200, before: None };
    loop {
        let workspaces = match state.store.list_workspaces(&switchyard_store::Scope::All, &page).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "listing workspaces for retention failed");
                return;
            }
        };
        for ws in &workspaces {
            if stop.is_cancelled() {
                return;
            }
            let limits = match state.cache.limits(&*state.store, &ws.id, state.config.plans.default_plan.as_deref()).await {
                Ok(Some(l)) => l,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, workspace = %ws.id, "reading a workspace's limits failed");
                    continue;
                }
            };
            if let Some(days) = limits.retention_days {
                let before = switchyard_core::now_millis() - i64::from(days) * 86_400_000;
                prune_before(state, stop, before, Some(&ws.id)).await;
            }
        }
        match workspaces.last() {
            Some(last) if workspaces.len() == page.limit as usize => page.before = Some(last.id.to_string()),
            _ => return,
        }
    }
}

/// Deletes finished history received before `before` (of one workspace, or all), a batch per
/// transaction so that ingestion and delivery never wait long behind it.
async fn prune_before(
    state: &AppState,
    stop: &CancellationToken,
    before: switchyard_core::Millis,
    ws: Option<&switchyard_core::ids::WorkspaceId>,
) {
    let mut total = 0;
    while !stop.is_cancelled() {
        let started = std::time::Instant::now();
        match state.store.prune_history(before, RETENTION_BATCH, ws).await {
            Ok(n) => {
                total += n;
                if n < RETENTION_BATCH as u64 {
                    break;
                }
                // Rest as long as the batch took: the prune holds the database's writer at most
                // half the time, so ingestion and delivery always find it free in between.
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(started.elapsed().max(Duration::from_millis(5))) => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "pruning history failed");
                break;
            }
        }
    }
    if total > 0 {
        match ws {
            Some(ws) => tracing::info!(events = total, workspace = %ws, "pruned history past the workspace's retention"),
            None => tracing::info!(events = total, "pruned history past its retention"),
        }
        metrics::counter!("switchyard_events_pruned_total").increment(total);
    }
}
