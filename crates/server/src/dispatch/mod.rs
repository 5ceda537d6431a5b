//! The dispatcher: claims due deliveries and runs their attempts.
//!
//! - [`run`] is the loop: claim what is due (the store's claim is fair across workspaces and caps
//!   each connection's in-flight requests), start one task per delivery, then sleep until new work
//!   is signalled, a scheduled retry falls due, or the poll interval passes.
//! - [`attempt`] performs one attempt and decides what comes next.
//! - [`recorder`] writes finished attempts in batches and wakes the loop.
//! - [`maintenance`] recovers leases of dead nodes and refreshes queue metrics.

pub mod attempt;
pub mod limiter;
pub mod maintenance;
pub mod recorder;

use crate::state::AppState;
use recorder::Recorder;
use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_core::ids::DeliveryId;
use switchyard_destinations::http::Sender;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Runs until `stop` is cancelled, then lets attempts in flight finish (up to the shutdown grace),
/// hands back the leases of any that did not, and flushes their records.
pub async fn run(state: AppState, owner: String, poll_interval: Duration, stop: CancellationToken) {
    let config = state.config.dispatcher.clone();
    let sender = Sender::new(state.config.allow_private_destinations);
    let limiter = Arc::new(limiter::Limiter::default());
    // A rate-limited delivery sleeps for its slot only while its lease has time to spare.
    let sleep_horizon_ms = (config.lease_margin.as_millis() as u64 / 2).min(2_000);
    let mut last_prune = switchyard_core::now_millis();
    let next_retry = Arc::new(AtomicI64::new(i64::MAX));
    let (recorder, recorder_task) = Recorder::start(state.store.clone(), owner.clone(), next_retry.clone(), state.wake.clone());
    let permits = Arc::new(Semaphore::new(config.max_concurrency));
    // Deliveries this node holds a lease on and has not yet handed to the recorder.
    let leased: Arc<Mutex<HashSet<DeliveryId>>> = Arc::default();
    let mut tasks = JoinSet::new();

    loop {
        while tasks.try_join_next().is_some() {}
        if stop.is_cancelled() {
            break;
        }
        let now = switchyard_core::now_millis();
        if now - last_prune > 60_000 {
            limiter.prune(now);
            last_prune = now;
        }
        if next_retry.load(Ordering::Acquire) <= now {
            next_retry.store(i64::MAX, Ordering::Release);
        }
        let free = permits.available_permits().min(config.claim_batch as usize) as u32;
        let mut saturated = false;
        if free > 0 {
            match state.store.claim_due(&owner, now, free, config.lease_margin.as_millis() as i64).await {
                Ok(claimed) => {
                    saturated = claimed.len() as u32 == free;
                    for c in claimed {
                        let Ok(permit) = permits.clone().try_acquire_owned() else { break };
                        leased.lock().unwrap_or_else(|p| p.into_inner()).insert(c.delivery.id.clone());
                        let (state, sender, recorder, leased) = (state.clone(), sender.clone(), recorder.clone(), leased.clone());
                        let limiter = limiter.clone();
                        tasks.spawn(async move {
                            let id = c.delivery.id.clone();
                            let dispatch = attempt::Dispatch { sender: &sender, limiter: &limiter, sleep_horizon_ms };
                            let record = attempt::perform(&state, &dispatch, c).await;
                            recorder.record(record);
                            leased.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming deliveries failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        if saturated {
            continue;
        }
        let until_retry = next_retry.load(Ordering::Acquire).saturating_sub(switchyard_core::now_millis()).max(1) as u64;
        let nap = poll_interval.min(Duration::from_millis(until_retry));
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = state.wake.notified() => {}
            _ = tokio::time::sleep(nap) => {}
            Some(_) = tasks.join_next(), if permits.available_permits() == 0 => {}
        }
    }

    let grace = state.config.shutdown_grace;
    let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    let unfinished: Vec<DeliveryId> = leased.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
    if !unfinished.is_empty() {
        tracing::info!(count = unfinished.len(), "handing back leases of attempts cut off by shutdown");
        if let Err(e) = state.store.release(&owner, &unfinished, switchyard_core::now_millis()).await {
            tracing::warn!(error = %e, "could not hand back leases; they expire on their own");
        }
    }
    drop(recorder);
    let _ = recorder_task.await;
}
