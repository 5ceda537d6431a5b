//! Periodic housekeeping on worker nodes: recover leases of nodes that died, publish queue depth,
//! and forget idempotency keys whose window has passed.

use crate::state::AppState;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const QUEUE_GAUGE_INTERVAL: Duration = Duration::from_secs(5);
const IDEMPOTENCY_SWEEP_INTERVAL: Duration = Duration::from_secs(600);

pub async fn run(state: AppState, stop: CancellationToken) {
    let mut leases = tokio::time::interval(state.config.dispatcher.lease_check_interval);
    let mut gauge = tokio::time::interval(QUEUE_GAUGE_INTERVAL);
    let mut sweep = tokio::time::interval(IDEMPOTENCY_SWEEP_INTERVAL);
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
            }
            _ = sweep.tick() => {
                if let Err(e) = state.store.expire_idempotency_keys(switchyard_core::now_millis()).await {
                    tracing::warn!(error = %e, "idempotency key sweep failed");
                }
            }
        }
    }
}
