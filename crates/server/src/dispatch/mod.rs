//! The dispatcher: claims due deliveries and runs their attempts.
//!
//! - [`run`] is the loop: claim what is due (the store's claim is fair across workspaces and caps
//!   each connection's in-flight requests), start one task per slot, then sleep until new work
//!   is signalled, a scheduled retry falls due, or the poll interval passes.
//! - [`lanes`] holds each connection's slots in use and, on a node alone on its store, the work it
//!   leased ahead of them: a slot whose attempt succeeded runs the connection's next delivery.
//! - No workspace holds more than its share of the node's slots ([`Shares`]): an attempt in flight
//!   cannot be taken back, so slots are kept free for workspaces that have none yet, whatever one
//!   workspace's destinations do (hang until their timeout, for instance).
//! - [`attempt`] performs one attempt and decides what comes next.
//! - [`recorder`] writes finished attempts in batches and wakes the loop.
//! - [`maintenance`] recovers leases of dead nodes and refreshes queue metrics.
//! - [`intake`] hands fresh deliveries to this node's lanes as they are stored, leased already,
//!   on a node alone on its store: the claim transaction is skipped while their lanes are open.

pub mod attempt;
pub mod circuit;
pub mod intake;
pub mod lanes;
pub mod limiter;
pub mod maintenance;
pub mod recorder;

use crate::state::AppState;
use attempt::Finished;
use lanes::{Ended, Lanes};
use recorder::Recorder;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::ids::{ConnectionId, DeliveryId, WorkspaceId};
use switchyard_destinations::http::Sender;
use switchyard_store::{Claimed, NextStep, NodeShare};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What the loop and every slot share. Where more than one of its locks is held at once, they are
/// taken in this order: `lanes`, `answered`, `shares`.
struct Node {
    state: AppState,
    owner: String,
    /// `owner`, for the leases taken at ingest.
    owner_arc: Arc<str>,
    lease_margin_ms: i64,
    /// Slots or records came free, or deliveries were handed over at ingest: the loop starts
    /// what waits, and claims only if that may find work ([`Lanes::need_claim`]). `state.wake`
    /// always claims.
    kick: Arc<Notify>,
    sender: Sender,
    holds: limiter::Holds,
    circuits: circuit::Circuits,
    recorder: Recorder,
    answered: Arc<Answered>,
    /// The node's delivery slots (`max_concurrency`).
    permits: Arc<Semaphore>,
    slots: usize,
    /// Deliveries this node holds a lease on and has not yet handed to the recorder (waiting in a
    /// lane, or running).
    leased: Mutex<HashSet<DeliveryId>>,
    shares: Mutex<Shares>,
    lanes: Mutex<Lanes>,
    /// Whether this node is alone on its store and so may lease work ahead (see [`lanes`]).
    alone: bool,
    /// The loop has ended: deliveries handed over at ingest from now are handed back.
    stopped: std::sync::atomic::AtomicBool,
}

/// Runs until `stop` is cancelled, then lets attempts in flight finish (up to the shutdown grace),
/// hands back the leases of any that did not, and flushes their records.
pub async fn run(state: AppState, owner: String, poll_interval: Duration, stop: CancellationToken) {
    let config = state.config.dispatcher.clone();
    // A rate-limited delivery is claimed only when its start is near enough that it can wait for
    // it while its lease has time to spare.
    let pace_horizon_ms = (config.lease_margin.as_millis() as i64 / 2).min(2_000);
    let lease_margin_ms = config.lease_margin.as_millis() as i64;
    let mut last_prune = switchyard_core::now_millis();
    let next_retry = Arc::new(AtomicI64::new(i64::MAX));
    let answered = Arc::new(Answered::default());
    let kick = Arc::new(Notify::new());
    let (recorder, recorder_task) = Recorder::start(state.store.clone(), owner.clone(), next_retry.clone(), kick.clone(), answered.clone());
    let node = Arc::new(Node {
        sender: Sender::new(state.config.allow_private_destinations),
        alone: state.store.single_node(),
        state,
        owner_arc: Arc::from(owner.as_str()),
        owner,
        lease_margin_ms,
        kick,
        holds: limiter::Holds::default(),
        circuits: circuit::Circuits::default(),
        recorder,
        answered,
        permits: Arc::new(Semaphore::new(config.max_concurrency)),
        slots: config.max_concurrency,
        leased: Mutex::default(),
        shares: Mutex::default(),
        lanes: Mutex::default(),
        stopped: Default::default(),
    });
    let state = node.state.clone();
    let mut tasks = JoinSet::new();
    if node.alone && config.hand_over_at_ingest {
        state.intake.attach(&node);
    }
    // Whether this turn of the loop claims: not when only kicked and no claim could find work.
    let mut claim = true;

    loop {
        while tasks.try_join_next().is_some() {}
        if stop.is_cancelled() {
            break;
        }
        let now = switchyard_core::now_millis();
        if now - last_prune > 60_000 {
            node.holds.prune(now);
            lock(&node.lanes).prune(Instant::now());
            last_prune = now;
        }
        if next_retry.load(Ordering::Acquire) <= now {
            next_retry.store(i64::MAX, Ordering::Release);
            claim = true;
        }
        // Deliveries waiting in lanes whose slots came free start first.
        node.start_waiting(&mut tasks).await;
        let claiming = claim || !node.alone || lock(&node.lanes).need_claim();
        // A claim takes what free slots can start now and, alone on its store, what the lanes
        // lease ahead; the node holds at most as many waiting as it has slots.
        let free = if node.alone {
            let lanes = lock(&node.lanes);
            let (running, waiting) = lanes.load();
            (node.permits.available_permits() + lanes.ahead_room()).min((2 * node.slots).saturating_sub(running + waiting))
        } else {
            node.permits.available_permits()
        };
        let free = free.min(config.claim_batch as usize) as u32;
        let mut saturated = false;
        if free > 0 && claiming {
            // A claim asked for is made once a slot is free; until then it stays asked for.
            claim = false;
            let (share, before) = {
                let lanes = lock(&node.lanes);
                let answered = lock(&node.answered.leases);
                let share = NodeShare {
                    pace_horizon_ms,
                    answered: answered.by_delivery.iter().map(|(d, c)| (c.clone(), d.clone())).collect(),
                    ahead: if node.alone { lanes.ahead() } else { Vec::new() },
                    ..lock(&node.shares).node_share(node.slots, &lanes.waiting_by_workspace())
                };
                let before = if node.alone { Some(lanes.before_claim(&answered.per_connection)) } else { None };
                (share, before)
            };
            let began = Instant::now();
            match state.store.claim_due_shared(&node.owner, now, free, lease_margin_ms, &share).await {
                Ok(claimed) => {
                    metrics::histogram!("switchyard_claim_duration_seconds").record(began.elapsed().as_secs_f64());
                    metrics::histogram!("switchyard_claim_deliveries").record(claimed.len() as f64);
                    // Leased again (a deferred delivery handed back, say): whatever answer it had
                    // is history, and this claim did not count it (it was not leased when it ran).
                    node.answered.forget(claimed.iter().map(|c| &c.delivery.id));
                    saturated = claimed.len() as u32 == free;
                    // A rate-limited connection's next start: come back for it when it is near.
                    if let Some(next) = claimed.iter().filter_map(|c| c.next_start_at).min() {
                        next_retry.fetch_min(next - pace_horizon_ms + 1, Ordering::AcqRel);
                    }
                    let opened = before.map(|before| (before, opened(&claimed, &share)));
                    node.queue(claimed, &share.ahead, lease_margin_ms, began).await;
                    if let Some((before, Opened { connections, full })) = opened {
                        let full: Vec<&WorkspaceId> = full.iter().collect();
                        lock(&node.lanes).claimed(before, &connections, &full, saturated);
                    }
                    node.start_waiting(&mut tasks).await;
                    if !node.alone {
                        // The claim took each workspace's room into account; this only guards
                        // against a share that shrank meanwhile (the excess goes straight back).
                        let over_share = lock(&node.lanes).clear_all();
                        node.hand_back(over_share, now).await;
                    }
                }
                Err(e) => {
                    claim = true;
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
        claim |= tokio::select! {
            _ = stop.cancelled() => true,
            _ = state.wake.notified() => true,
            _ = node.kick.notified() => false,
            _ = tokio::time::sleep(nap) => true,
            Some(_) = tasks.join_next(), if node.permits.available_permits() == 0 => false,
        };
    }
    state.intake.detach();
    node.stopped.store(true, Ordering::Release);

    let grace = state.config.shutdown_grace;
    let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    let unfinished: Vec<DeliveryId> = lock(&node.leased).drain().collect();
    if !unfinished.is_empty() {
        tracing::info!(count = unfinished.len(), "handing back leases of deliveries not run or cut off by shutdown");
        if let Err(e) = state.store.release(&node.owner, &unfinished, switchyard_core::now_millis()).await {
            tracing::warn!(error = %e, "could not hand back leases; they expire on their own");
        }
    }
    drop(node);
    let _ = recorder_task.await;
}

impl Node {
    /// Puts claimed deliveries in their connections' lanes, each to start while its lease leaves
    /// an attempt's timeout and half the margin to spare.
    async fn queue(&self, claimed: Vec<Claimed>, ahead: &[(ConnectionId, u32)], lease_margin_ms: i64, claimed_at: Instant) {
        let mut limits: HashMap<ConnectionId, (usize, u64)> = HashMap::new();
        for c in &claimed {
            let id = &c.delivery.connection_id;
            if !limits.contains_key(id) {
                // A connection that cannot be loaded: its attempt says why, at once.
                let limit = match self.state.cache.connection(&*self.state.store, id).await {
                    Ok(Some(conn)) => (conn.max_in_flight as usize, conn.timeout_ms),
                    _ => (1, 0),
                };
                limits.insert(id.clone(), limit);
            }
        }
        lock(&self.leased).extend(claimed.iter().map(|c| c.delivery.id.clone()));
        let mut lanes = lock(&self.lanes);
        for c in claimed {
            let (cap, timeout_ms) = limits[&c.delivery.connection_id];
            // The claim leased ahead only a connection neither probed nor rate limited.
            let multiple = if c.probe || c.next_start_at.is_some() {
                0
            } else {
                ahead.iter().find(|(id, _)| *id == c.delivery.connection_id).map_or(0, |(_, n)| u64::from(*n))
            };
            let spare = Duration::from_millis(timeout_ms * multiple + lease_margin_ms as u64 / 2);
            lanes.queue(c, cap, claimed_at + spare);
        }
    }

    /// Starts the waiting deliveries that have room (alone on its store: within each lane's cap;
    /// otherwise the claim saw to it) and a slot of the node within their workspace's share;
    /// hands back those that can no longer start within their leases.
    async fn start_waiting(self: &Arc<Self>, tasks: &mut JoinSet<()>) {
        let (start, expired) = {
            // Locks are taken in this order everywhere: lanes, answered, shares.
            let mut lanes = lock(&self.lanes);
            let answered = lock(&self.answered.leases);
            lanes.startable(&answered.per_connection, self.alone, Instant::now(), |c| self.admit(&c.delivery.workspace_id))
        };
        for (claimed, permit) in start {
            tasks.spawn(self.clone().run_slot(claimed, permit));
        }
        self.hand_back(expired, switchyard_core::now_millis()).await;
    }

    /// A slot of the node for `workspace`, if it is within its share.
    fn admit(&self, workspace: &WorkspaceId) -> Option<OwnedSemaphorePermit> {
        let mut shares = lock(&self.shares);
        if !shares.take(workspace, self.slots) {
            return None;
        }
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                shares.give_back(workspace);
                None
            }
        }
    }

    /// Returns leased deliveries that this node will not run to the queue, due at `at`.
    async fn hand_back(&self, ids: Vec<DeliveryId>, at: i64) {
        if ids.is_empty() {
            return;
        }
        {
            let mut leased = lock(&self.leased);
            for id in &ids {
                leased.remove(id);
            }
        }
        if let Err(e) = self.state.store.release(&self.owner, &ids, at).await {
            tracing::warn!(error = %e, count = ids.len(), "could not hand back deliveries; their leases expire");
        }
    }

    /// One slot: runs `claimed`, then, while attempts succeed and the lane has room, the
    /// connection's next waiting deliveries.
    async fn run_slot(self: Arc<Self>, mut claimed: Claimed, permit: OwnedSemaphorePermit) {
        let connection = claimed.delivery.connection_id.clone();
        let _slot = Slot { node: &self, connection: &connection, workspace: claimed.delivery.workspace_id.clone(), _permit: permit };
        let dispatch = attempt::Dispatch { sender: &self.sender, holds: &self.holds, circuits: &self.circuits };
        loop {
            let id = claimed.delivery.id.clone();
            let began = Instant::now();
            let finished = attempt::perform(&self.state, &dispatch, claimed).await;
            let succeeded = matches!(&finished, Finished::Attempted(r) if r.next == NextStep::Succeeded);
            if matches!(finished, Finished::Attempted(_)) {
                lock(&self.lanes).timed(&connection, began.elapsed());
            }
            self.recorder.record(finished, id.clone(), connection.clone());
            lock(&self.leased).remove(&id);
            let answered = self.answered.count(&connection);
            let ended = lock(&self.lanes).ended(&connection, succeeded, answered, Instant::now());
            match ended {
                Ended::Next(next) => claimed = *next,
                Ended::Free(back) => {
                    self.hand_back(back, switchyard_core::now_millis()).await;
                    return;
                }
            }
        }
    }
}

/// A slot in use: given back to the lane, the workspace's share and the node when dropped
/// (also when its task panics or is aborted at shutdown).
struct Slot<'a> {
    node: &'a Node,
    connection: &'a ConnectionId,
    workspace: WorkspaceId,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        lock(&self.node.lanes).free(self.connection, Instant::now());
        lock(&self.node.shares).give_back(&self.workspace);
        // The connection's slot is free: the next claim may take it before the record commits.
        // If records are being written, the recorder wakes the dispatcher when they are, with
        // more slots free by then.
        if !self.node.recorder.writing() {
            self.node.kick.notify_one();
        }
    }
}

/// This node's deliveries whose destination has answered and whose records have not committed
/// yet, with their connections. They hold their leases (a crash before the commit makes them due
/// again) but not their connection's in-flight slots: the claim counts them as free (see
/// [`NodeShare::answered`]), so a slot is taken again as soon as an answer arrives, not a record
/// transaction later.
#[derive(Default)]
pub struct Answered {
    leases: Mutex<AnsweredLeases>,
}

#[derive(Default)]
struct AnsweredLeases {
    by_delivery: HashMap<DeliveryId, ConnectionId>,
    per_connection: HashMap<ConnectionId, usize>,
}

impl AnsweredLeases {
    fn remove(&mut self, delivery: &DeliveryId) {
        if let Some(connection) = self.by_delivery.remove(delivery) {
            if let Some(n) = self.per_connection.get_mut(&connection) {
                *n -= 1;
                if *n == 0 {
                    self.per_connection.remove(&connection);
                }
            }
        }
    }
}

impl Answered {
    fn add(&self, delivery: &DeliveryId, connection: &ConnectionId) {
        let mut leases = lock(&self.leases);
        if leases.by_delivery.insert(delivery.clone(), connection.clone()).is_none() {
            *leases.per_connection.entry(connection.clone()).or_default() += 1;
        }
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

    /// How many of `connection`'s answers are not recorded yet.
    fn count(&self, connection: &ConnectionId) -> usize {
        lock(&self.leases).per_connection.get(connection).copied().unwrap_or(0)
    }
}

/// What a claim tells the lanes (see [`Lanes::claimed`]).
struct Opened {
    /// How many ordinary deliveries (neither probes of a circuit nor paced) it took of each
    /// connection.
    connections: HashMap<ConnectionId, usize>,
    /// Workspaces it gave no room, or that took all the room it gave them.
    full: Vec<WorkspaceId>,
}

/// After a claim of `claimed` with `share` (alone on the store).
fn opened(claimed: &[Claimed], share: &NodeShare) -> Opened {
    let mut per_workspace: HashMap<&WorkspaceId, u32> = HashMap::new();
    for c in claimed {
        *per_workspace.entry(&c.delivery.workspace_id).or_default() += 1;
    }
    let room = |w: &WorkspaceId| share.room.iter().find(|(id, _)| id == w).map_or(share.per_workspace, |(_, r)| *r);
    let mut full: Vec<WorkspaceId> = share.room.iter().filter(|(_, r)| *r == 0).map(|(w, _)| w.clone()).collect();
    full.extend(per_workspace.iter().filter(|(w, n)| **n >= room(w)).map(|(w, _)| (*w).clone()));
    let mut connections: HashMap<ConnectionId, usize> = HashMap::new();
    for c in claimed.iter().filter(|c| !c.probe && c.next_start_at.is_none()) {
        *connections.entry(c.delivery.connection_id.clone()).or_default() += 1;
    }
    Opened { connections, full }
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
    /// A workspace's share of the node's `slots` now.
    fn share(&self, slots: usize) -> usize {
        (slots / (self.held.len() + 1)).max(1)
    }

    /// What the next claim may take: each workspace up to its share, less what it holds and what
    /// it has `waiting` in lanes.
    fn node_share(&self, slots: usize, waiting: &HashMap<WorkspaceId, usize>) -> NodeShare {
        let share = self.share(slots);
        let mut room: HashMap<WorkspaceId, usize> = self.held.iter().map(|(w, n)| (w.clone(), *n)).collect();
        for (w, n) in waiting {
            *room.entry(w.clone()).or_default() += n;
        }
        let room = room.into_iter().map(|(w, n)| (w, share.saturating_sub(n) as u32)).collect();
        NodeShare { per_workspace: share as u32, room, ..NodeShare::default() }
    }

    /// Counts a slot for `workspace` if it holds fewer than its share of `slots`.
    fn take(&mut self, workspace: &WorkspaceId, slots: usize) -> bool {
        let share = self.share(slots);
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
        let none = HashMap::new();
        let (a, b) = (WorkspaceId::generate(), WorkspaceId::generate());
        let share = shares.node_share(512, &none);
        assert_eq!(share.per_workspace, 512);
        // Alone, a workspace gets half the slots: the rest wait for others.
        let taken = (0..600).filter(|_| shares.take(&a, 512)).count();
        assert_eq!(taken, 256);
        let now = shares.node_share(512, &none);
        assert_eq!(now.per_workspace, 256);
        assert_eq!(now.room, vec![(a.clone(), 0)]);
        assert_eq!(now.full(), vec![a.as_str()]);
        // A second workspace comes: shares shrink to a third; the first has no room, the second
        // the rest of its share, less what it has waiting in lanes.
        assert!(shares.take(&b, 512));
        let now = shares.node_share(512, &none);
        assert_eq!(now.per_workspace, 170);
        assert_eq!(now.full(), vec![a.as_str()]);
        assert!(now.room.contains(&(b.clone(), 169)));
        let now = shares.node_share(512, &HashMap::from([(b.clone(), 100)]));
        assert!(now.room.contains(&(b.clone(), 69)));
        for _ in 0..256 {
            shares.give_back(&a);
        }
        shares.give_back(&b);
        assert!(shares.held.is_empty());
    }
}
