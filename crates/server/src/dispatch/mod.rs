//! The dispatcher: claims due deliveries and runs their attempts.
//!
//! - [`run`] is the loop: claim what is due (the store's claim is fair across workspaces and caps
//!   each connection's in-flight requests), start one task per delivery, then sleep until new work
//!   is signalled, a scheduled retry falls due, or the poll interval passes.
//! - No workspace holds more than its share of the node's slots ([`Shares`]): an attempt in flight
//!   cannot be taken back, so slots are kept free for workspaces that have none yet, whatever one
//!   workspace's destinations do (hang until their timeout, for instance).
//! - [`attempt`] performs one attempt and decides what comes next.
//! - [`recorder`] writes finished attempts in batches and wakes the loop.
//! - [`maintenance`] recovers leases of dead nodes and refreshes queue metrics.

pub mod attempt;
pub mod circuit;
pub mod limiter;
pub mod maintenance;
pub mod recorder;

use crate::state::AppState;
use recorder::Recorder;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_core::ids::{ConnectionId, DeliveryId, WorkspaceId};
use switchyard_destinations::http::Sender;
use switchyard_store::NodeShare;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Runs until `stop` is cancelled, then lets attempts in flight finish (up to the shutdown grace),
/// hands back the leases of any that did not, and flushes their records.
pub async fn run(state: AppState, owner: String, poll_interval: Duration, stop: CancellationToken) {
    let config = state.config.dispatcher.clone();
    let sender = Sender::new(state.config.allow_private_destinations);
    let holds = Arc::new(limiter::Holds::default());
    let circuits = Arc::new(circuit::Circuits::default());
    // A rate-limited delivery is claimed only when its start is near enough that it can wait for
    // it while its lease has time to spare.
    let pace_horizon_ms = (config.lease_margin.as_millis() as i64 / 2).min(2_000);
    let mut last_prune = switchyard_core::now_millis();
    let next_retry = Arc::new(AtomicI64::new(i64::MAX));
    let answered = Arc::new(Answered::default());
    let (recorder, recorder_task) =
        Recorder::start(state.store.clone(), owner.clone(), next_retry.clone(), state.wake.clone(), answered.clone());
    let permits = Arc::new(Semaphore::new(config.max_concurrency));
    // Deliveries this node holds a lease on and has not yet handed to the recorder.
    let leased: Arc<Mutex<HashSet<DeliveryId>>> = Arc::default();
    let shares: Arc<Mutex<Shares>> = Arc::default();
    let mut tasks = JoinSet::new();

    loop {
        while tasks.try_join_next().is_some() {}
        if stop.is_cancelled() {
            break;
        }
        let now = switchyard_core::now_millis();
        if now - last_prune > 60_000 {
            holds.prune(now);
            last_prune = now;
        }
        if next_retry.load(Ordering::Acquire) <= now {
            next_retry.store(i64::MAX, Ordering::Release);
        }
        let free = permits.available_permits().min(config.claim_batch as usize) as u32;
        let mut saturated = false;
        if free > 0 {
            let share = NodeShare { pace_horizon_ms, answered: answered.list(), ..lock(&shares).node_share(config.max_concurrency) };
            let began = std::time::Instant::now();
            match state.store.claim_due_shared(&owner, now, free, config.lease_margin.as_millis() as i64, &share).await {
                Ok(claimed) => {
                    metrics::histogram!("switchyard_claim_duration_seconds").record(began.elapsed().as_secs_f64());
                    metrics::histogram!("switchyard_claim_deliveries").record(claimed.len() as f64);
                    // Leased again (a deferred delivery handed back, say): whatever answer it had
                    // is history, and this claim did not count it (it was not leased when it ran).
                    answered.forget(claimed.iter().map(|c| &c.delivery.id));
                    saturated = claimed.len() as u32 == free;
                    let mut over_share = Vec::new();
                    // A rate-limited connection's next start: come back for it when it is near.
                    if let Some(next) = claimed.iter().filter_map(|c| c.next_start_at).min() {
                        next_retry.fetch_min(next - pace_horizon_ms + 1, Ordering::AcqRel);
                    }
                    for c in claimed {
                        // The claim took each workspace's room into account; this only guards
                        // against a share that shrank meanwhile (the excess goes straight back).
                        if !lock(&shares).take(&c.delivery.workspace_id, share.per_workspace as usize) {
                            over_share.push(c.delivery.id.clone());
                            continue;
                        }
                        let Ok(permit) = permits.clone().try_acquire_owned() else {
                            lock(&shares).give_back(&c.delivery.workspace_id);
                            over_share.push(c.delivery.id.clone());
                            continue;
                        };
                        lock(&leased).insert(c.delivery.id.clone());
                        let (state, sender, recorder, leased) = (state.clone(), sender.clone(), recorder.clone(), leased.clone());
                        let (holds, shares, circuits) = (holds.clone(), shares.clone(), circuits.clone());
                        tasks.spawn(async move {
                            let (id, workspace, connection) =
                                (c.delivery.id.clone(), c.delivery.workspace_id.clone(), c.delivery.connection_id.clone());
                            let dispatch = attempt::Dispatch { sender: &sender, holds: &holds, circuits: &circuits };
                            let record = attempt::perform(&state, &dispatch, c).await;
                            recorder.record(record, id.clone(), connection);
                            lock(&leased).remove(&id);
                            lock(&shares).give_back(&workspace);
                            drop(permit);
                            // The connection's slot is free: the next claim may take it before
                            // the record commits. If records are being written, the recorder
                            // wakes the dispatcher when they are, with more slots free by then.
                            if !recorder.writing() {
                                state.wake.notify_one();
                            }
                        });
                    }
                    if !over_share.is_empty() {
                        if let Err(e) = state.store.release(&owner, &over_share, now).await {
                            tracing::warn!(error = %e, "could not hand back deliveries over a workspace's share; their leases expire");
                        }
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
    let unfinished: Vec<DeliveryId> = lock(&leased).drain().collect();
    if !unfinished.is_empty() {
        tracing::info!(count = unfinished.len(), "handing back leases of attempts cut off by shutdown");
        if let Err(e) = state.store.release(&owner, &unfinished, switchyard_core::now_millis()).await {
            tracing::warn!(error = %e, "could not hand back leases; they expire on their own");
        }
    }
    drop(recorder);
    let _ = recorder_task.await;
}

/// This node's deliveries whose destination has answered and whose records have not committed
/// yet, with their connections. They hold their leases (a crash before the commit makes them due
/// again) but not their connection's in-flight slots: the claim counts them as free (see
/// [`NodeShare::answered`]), so a slot is taken again as soon as an answer arrives, not a record
/// transaction later.
#[derive(Default)]
pub struct Answered {
    leases: Mutex<HashMap<DeliveryId, ConnectionId>>,
}

impl Answered {
    fn add(&self, delivery: &DeliveryId, connection: &ConnectionId) {
        lock(&self.leases).insert(delivery.clone(), connection.clone());
    }

    fn remove(&self, delivery: &DeliveryId) {
        lock(&self.leases).remove(delivery);
    }

    fn forget<'a>(&self, deliveries: impl Iterator<Item = &'a DeliveryId>) {
        let mut leases = lock(&self.leases);
        for d in deliveries {
            leases.remove(d);
        }
    }

    fn list(&self) -> Vec<(ConnectionId, DeliveryId)> {
        lock(&self.leases).iter().map(|(d, c)| (c.clone(), d.clone())).collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The node's delivery slots each workspace holds. A workspace may hold at most
/// `slots / (workspaces holding slots + 1)`: alone, half of them; beside two others, a quarter.
/// So however long one workspace's attempts take, a workspace that holds none finds slots free,
/// and the shares even out as attempts finish.
#[derive(Default)]
struct Shares {
    held: HashMap<WorkspaceId, usize>,
}

impl Shares {
    /// What the next claim may take: each workspace up to its share, less what it holds.
    fn node_share(&self, slots: usize) -> NodeShare {
        let share = (slots / (self.held.len() + 1)).max(1);
        let room = self.held.iter().map(|(w, n)| (w.clone(), share.saturating_sub(*n) as u32)).collect();
        NodeShare { per_workspace: share as u32, room, ..NodeShare::default() }
    }

    /// Counts a slot for `workspace` if it holds fewer than `share`.
    fn take(&mut self, workspace: &WorkspaceId, share: usize) -> bool {
        // `share` is at least 1, so a workspace at its share is already in the map.
        let held = self.held.entry(workspace.clone()).or_default();
        if *held >= share {
            return false;
        }
        *held += 1;
        true
    }

    fn give_back(&mut self, workspace: &WorkspaceId) {
        if let Some(held) = self.held.get_mut(workspace) {
            *held -= 1;
            if *held == 0 {
                self.held.remove(workspace);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_holds_at_most_its_share_and_leaves_room_for_newcomers() {
        let mut shares = Shares::default();
        let (a, b) = (WorkspaceId::generate(), WorkspaceId::generate());
        let share = shares.node_share(512);
        assert_eq!(share.per_workspace, 512);
        // Alone, a workspace gets half the slots: the rest wait for others.
        let share = (512 / 2) as usize;
        let taken = (0..600).filter(|_| shares.take(&a, share)).count();
        assert_eq!(taken, 256);
        let now = shares.node_share(512);
        assert_eq!(now.per_workspace, 256);
        assert_eq!(now.room, vec![(a.clone(), 0)]);
        assert_eq!(now.full(), vec![a.as_str()]);
        // A second workspace comes: shares shrink to a third; the first has no room, the second
        // the rest of its share.
        assert!(shares.take(&b, now.per_workspace as usize));
        let now = shares.node_share(512);
        assert_eq!(now.per_workspace, 170);
        assert_eq!(now.full(), vec![a.as_str()]);
        assert!(now.room.contains(&(b.clone(), 169)));
        for _ in 0..256 {
            shares.give_back(&a);
        }
        shares.give_back(&b);
        assert!(shares.held.is_empty());
    }
}
