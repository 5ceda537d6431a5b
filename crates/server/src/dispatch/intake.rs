//! Fresh deliveries handed to this node's dispatcher as they are stored, on a node alone on its
//! store.
//!
//! A claim is a write transaction on the store's one writer, and so is the ingest batch that
//! stored the deliveries it claims. When a connection's lane is open (the store holds none of its
//! work due and unclaimed, see [`super::lanes`]) and has room, the ingest transaction stores its
//! fresh deliveries leased to this node, as a claim would have leased them, and once it commits
//! they wait in the lane like claimed ones: no claim is made for them. A lane that has just caught
//! up with its older work takes a few parked, to start once a claim has shown it is all taken.
//!
//! Every guarantee of a claim holds. The lease is in the database, so a crash makes the delivery
//! due again when it expires (or at the next start); the lane's room is the claim's (its cap,
//! and as many caps again as it leases ahead), and so is each workspace's share of the node's
//! slots. A delivery that finds no room is stored pending and closes its lane, so claims take the
//! connection's work in order again: fresh work never overtakes older work due. The ingest writer
//! runs one batch at a time; each is numbered, so a claim opens a lane only if every batch that
//! stored some of its work pending had committed before the claim began.

use super::lanes::Hand;
use super::{lock, Node};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use switchyard_core::ids::{ConnectionId, WorkspaceId};
use switchyard_core::model::{ConnectionStatus, Delivery, DeliveryStatus};
use switchyard_core::Millis;
use switchyard_store::{Claimed, IngestLease, IngestOutcome, NewEvent};

/// Where the ingest writer finds this node's dispatcher, while it runs alone on its store.
#[derive(Default)]
pub struct Intake {
    node: Mutex<Weak<Node>>,
}

/// Deliveries of one ingest batch leased to the dispatcher, to be queued once the batch commits.
/// Dropped without [`Handed::deliver`] (the transaction failed), their lanes' room is given back.
#[must_use]
pub struct Handed {
    node: Option<Arc<Node>>,
    /// When the batch is stored.
    now: Millis,
    /// The batch's number (see [`super::lanes::Lanes::begin_batch`]).
    batch: u64,
    entries: Vec<Entry>,
}

/// A leased delivery: its event's and its own index in the batch, its connection and the
/// connection's cap, and when it must start by to finish within its lease.
struct Entry {
    event: usize,
    delivery: usize,
    connection: ConnectionId,
    hand: Hand,
    start_by: Instant,
}

impl Intake {
    pub(super) fn attach(&self, node: &Arc<Node>) {
        *lock(&self.node) = Arc::downgrade(node);
    }

    pub(super) fn detach(&self) {
        *lock(&self.node) = Weak::new();
    }

    /// Leases to this node's dispatcher the deliveries of `batch` whose lanes are open and have
    /// room (their [`switchyard_store::NewDelivery::lease`] is set), to be stored at `now`. A
    /// delivery of an open lane that finds no room closes the lane.
    pub async fn lease(&self, batch: &mut [NewEvent], now: Millis) -> Handed {
        let Some(node) = lock(&self.node).upgrade() else { return Handed { node: None, now, batch: 0, entries: Vec::new() } };
        // The batch's connections, found before any lock is taken: a fan-out to many rules
        // holds the dispatcher's locks only for what may be handed over.
        let connections: Vec<ConnectionId> = {
            let mut all: Vec<&ConnectionId> = batch.iter().flat_map(|e| e.deliveries.iter().map(|d| &d.connection_id)).collect();
            all.sort_unstable();
            all.dedup();
            all.into_iter().cloned().collect()
        };
        let open: Vec<&ConnectionId> = {
            let lanes = lock(&node.lanes);
            connections.iter().filter(|c| lanes.may_hand(c)).collect()
        };
        // The connections as configured now (from the cache): a paused or rate-limited one, or
        // one whose circuit is not closed, is left to claims.
        let mut settings: HashMap<ConnectionId, u64> = HashMap::new();
        let mut caps: Vec<(&ConnectionId, Option<usize>)> = Vec::with_capacity(open.len());
        for id in open {
            let found = node.state.cache.connection(&*node.state.store, id).await;
            let plain = found.as_ref().ok().and_then(Option::as_ref).filter(|c| {
                c.status == ConnectionStatus::Active
                    && c.inactive.is_none()
                    && c.rate_limit_per_minute.unwrap_or(0) == 0
                    && c.circuit.state == switchyard_core::circuit::CircuitState::Closed
            });
            match plain {
                Some(c) => {
                    settings.insert(id.clone(), c.timeout_ms);
                    caps.push((id, Some(c.max_in_flight as usize)));
                }
                // A cache that could not be read closes nothing: the batch just claims.
                None if found.is_err() => {}
                None => caps.push((id, None)),
            }
        }
        let mut entries = Vec::new();
        let started = Instant::now();
        // Locks in the order the dispatcher takes them: lanes, answered, shares.
        let mut lanes = lock(&node.lanes);
        let answered = lock(&node.answered.leases);
        let shares = lock(&node.shares);
        let number = lanes.begin_batch();
        // Its cap as configured now (lowered, it holds at once), or closed for good until claimed.
        for (id, cap) in caps {
            lanes.settings(id, cap);
        }
        // Stored pending: claims take these connections' work from here.
        for c in connections.iter().filter(|c| !settings.contains_key(*c)) {
            lanes.stored_pending(c, number);
        }
        if settings.is_empty() {
            drop((lanes, answered, shares));
            return Handed { node: Some(node), now, batch: number, entries: Vec::new() };
        }
        let (running, waiting) = lanes.load();
        let mut node_room = (2 * node.slots).saturating_sub(running + waiting);
        let share = shares.share(node.slots);
        let mut held: HashMap<WorkspaceId, usize> = lanes.waiting_by_workspace();
        for (w, n) in &shares.held {
            *held.entry(w.clone()).or_default() += n;
        }
        for (i, event) in batch.iter_mut().enumerate() {
            let workspace = &event.event.workspace_id;
            for (j, d) in event.deliveries.iter_mut().enumerate() {
                if !settings.contains_key(&d.connection_id) {
                    continue;
                }
                let in_share = held.get(workspace).copied().unwrap_or(0) < share;
                let unrecorded = answered.per_connection.get(&d.connection_id).copied().unwrap_or(0);
                let hand = lanes.hand(&d.connection_id, unrecorded);
                let (Some(&timeout_ms), Some(hand), true, true) = (settings.get(&d.connection_id), hand, node_room > 0, in_share) else {
                    // Stored pending: claims take this connection's work from here, and the rest
                    // of the batch's deliveries of it are stored pending too.
                    lanes.stored_pending(&d.connection_id, number);
                    settings.remove(&d.connection_id);
                    continue;
                };
                let multiple = u64::from(lanes.multiple(&d.connection_id));
                d.lease = Some(IngestLease {
                    owner: node.owner_arc.clone(),
                    expires_at: now + node.lease_margin_ms + (timeout_ms * (1 + multiple)) as i64,
                });
                lanes.reserve(&d.connection_id);
                node_room -= 1;
                *held.entry(workspace.clone()).or_default() += 1;
                let spare = Duration::from_millis(timeout_ms * multiple + node.lease_margin_ms as u64 / 2);
                entries.push(Entry { event: i, delivery: j, connection: d.connection_id.clone(), hand, start_by: started + spare });
            }
        }
        drop((lanes, answered, shares));
        Handed { node: Some(node), now, batch: number, entries }
    }
}

impl Handed {
    /// The batch committed with `outcomes`: its stored deliveries that were leased wait in their
    /// lanes, and the dispatcher is told.
    pub async fn deliver(mut self, batch: &[NewEvent], outcomes: &[IngestOutcome]) {
        let Some(node) = self.node.take() else { return };
        let mut claimed = Vec::with_capacity(self.entries.len());
        let mut event = None;
        for &Entry { event: i, delivery: j, hand, start_by: by, .. } in &self.entries {
            if !matches!(outcomes.get(i), Some(IngestOutcome::Created)) {
                continue;
            }
            let (new, d) = (&batch[i], &batch[i].deliveries[j]);
            let shared = match &event {
                Some((at, shared)) if *at == i => Arc::clone(shared),
                _ => {
                    let shared = Arc::new(new.event.clone());
                    event = Some((i, shared.clone()));
                    shared
                }
            };
            let at = self.now;
            let delivery = Delivery {
                id: d.id.clone(),
                workspace_id: new.event.workspace_id.clone(),
                event_id: new.event.id.clone(),
                rule_id: d.rule_id.clone(),
                connection_id: d.connection_id.clone(),
                status: DeliveryStatus::Delivering,
                attempt_count: 0,
                replay_base: 0,
                next_attempt_at: Some(at),
                last_error: None,
                created_at: at,
                updated_at: at,
            };
            claimed.push((Claimed { delivery, event: shared, start_at: at, next_start_at: None, probe: false }, hand, by));
        }
        metrics::counter!("switchyard_deliveries_handed_over_total").increment(claimed.len() as u64);
        let ids: Vec<_> = claimed.iter().map(|(c, _, _)| c.delivery.id.clone()).collect();
        lock(&node.leased).extend(ids.iter().cloned());
        {
            let mut lanes = lock(&node.lanes);
            for entry in self.entries.drain(..) {
                lanes.unreserve(&entry.connection);
            }
            lanes.end_batch(self.batch);
            for (c, hand, by) in claimed {
                lanes.queue_handed(c, hand, by);
            }
        }
        if ids.is_empty() {
            return;
        }
        if node.stopped.load(std::sync::atomic::Ordering::Acquire) {
            // The dispatcher stopped meanwhile: nothing will run these.
            node.hand_back(ids, switchyard_core::now_millis()).await;
            return;
        }
        node.kick.notify_one();
    }
}

impl Drop for Handed {
    fn drop(&mut self) {
        let Some(node) = self.node.take() else { return };
        let mut lanes = lock(&node.lanes);
        for entry in self.entries.drain(..) {
            lanes.unreserve(&entry.connection);
        }
        lanes.end_batch(self.batch);
    }
}
