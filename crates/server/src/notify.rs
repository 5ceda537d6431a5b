//! Operational notifications: the store writes each one (a connection failing, recovered,
//! disabled or needing reauthorisation; a delivery out of attempts) into an outbox in the
//! transaction of the change it reports; this worker turns them into events named
//! `switchyard.<kind>` in their workspace, and in the operator's workspace when one is configured,
//! where rules deliver them like any event (signed webhooks, Slack, retries, history).
//!
//! Each notification's id is its event's idempotency key, so one that became an event before a
//! crash, but was not yet forgotten, does not become two.

use crate::state::AppState;
use serde_json::{json, Value};
use std::time::Duration;
use switchyard_core::ids::WorkspaceId;
use switchyard_store::Notification;
use tokio_util::sync::CancellationToken;

const INTERVAL: Duration = Duration::from_millis(500);
const BATCH: u32 = 200;
/// The prefix of every notification's event name; customers' events may not use it.
pub const PREFIX: &str = "switchyard.";

pub async fn run(state: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = drain(&state).await {
                    tracing::warn!(error = %e.message, "could not turn notifications into events; trying again");
                }
            }
        }
    }
}

/// Turns every waiting notification into events, a batch at a time.
async fn drain(state: &AppState) -> Result<(), crate::error::ApiError> {
    loop {
        let waiting = state.store.take_notifications(BATCH).await?;
        if waiting.is_empty() {
            return Ok(());
        }
        let mut done = Vec::with_capacity(waiting.len());
        let mut failed = None;
        'notifications: for n in &waiting {
            let mut targets = vec![(n.workspace_id.clone(), n.id.clone())];
            if let Some(operator) = state.config.notify_workspace.as_ref().filter(|w| **w != n.workspace_id) {
                targets.push((operator.clone(), format!("{}:operator", n.id)));
            }
            for (ws, key) in targets {
                match emit(state, &ws, n, &key).await {
                    Ok(()) => {}
                    // A workspace deleted meanwhile has nobody to tell.
                    Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => {}
                    // Refused for good (more matching rules than one event may have, say): told
                    // in the log and let go, so that it cannot hold up the ones behind it.
                    Err(e) if e.status.is_client_error() => {
                        tracing::warn!(notification = %n.id, kind = %n.kind, workspace = %ws, error = %e.message, "a notification could not become an event");
                    }
                    // Likely passing (the database): this one and those after it wait for the next round.
                    Err(e) => {
                        failed = Some(e);
                        break 'notifications;
                    }
                }
            }
            metrics::counter!("switchyard_notifications_total", "kind" => n.kind.clone()).increment(1);
            done.push(n.id.clone());
        }
        if !done.is_empty() {
            state.store.notifications_emitted(&done, switchyard_core::now_millis()).await?;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if waiting.len() < BATCH as usize {
            return Ok(());
        }
    }
}

/// The body of a notification's event.
pub fn payload(n: &Notification) -> Value {
    let mut body = json!({"type": n.kind, "workspace_id": n.workspace_id, "at": crate::api::common::ts(n.created_at)});
    if let (Some(body), Some(details)) = (body.as_object_mut(), n.payload.as_object()) {
        body.extend(details.clone());
    }
    body
}

async fn emit(state: &AppState, ws: &WorkspaceId, n: &Notification, key: &str) -> Result<(), crate::error::ApiError> {
    if state.store.get_workspace(&switchyard_store::Scope::All, ws).await?.is_none() {
        return Err(crate::error::ApiError::not_found("workspace"));
    }
    let input = crate::api::events::EventInput {
        event: format!("{PREFIX}{}", n.kind),
        payload: serde_json::value::to_raw_value(&payload(n)).ok(),
        resource: None,
        resource_id: None,
        occurred_at: None,
        idempotency_key: None,
    };
    // Never refused by a monthly cap: the installation's own events.
    let new = crate::api::events::prepare(state, ws, input, Some(key), None).await?;
    // Nobody here asked for it: nothing to deliver, nothing to keep.
    if !new.deliveries.is_empty() {
        state.ingest.submit(vec![new]).await?;
    }
    Ok(())
}
