//! Each connection's lane on this node: its slots in use and, on a node alone on its store, the
//! deliveries leased ahead of them.
//!
//! A claim is a write transaction. With a destination that answers in a millisecond, a slot that
//! waits for the next claim stands idle for longer than its attempts take, so a node alone on its
//! store leases a little of each connection's work ahead ([`NodeShare::ahead`]): about
//! [`WINDOW`] of it, judged by the connection's recent attempt times, at most [`MAX_AHEAD`] times
//! its cap. A slot whose attempt succeeded runs the connection's next waiting delivery at once.
//!
//! Caps hold: no more than `max_in_flight` run at a time. What a crash can make repeat is bounded:
//! a delivery starts only while the connection has fewer than `(2 + n) * max_in_flight` in flight
//! or answered but not yet recorded, `n` being how many caps it leases ahead (0 to [`MAX_AHEAD`]):
//! twice the cap without leasing ahead, as before. A delivery waiting here was never sent; after
//! a crash it is due again at the next start.
//!
//! A lane is *open* while the store is known to hold none of its connection's work due and
//! unclaimed: a claim took fewer of its deliveries than it had room for, and every ingest batch
//! that stored some pending had committed before that claim began. Fresh deliveries of an open
//! lane are leased as they are stored and handed to it (see [`super::intake`]), so no claim is
//! made for them. The first that finds no room is stored pending and closes the lane: claims take
//! the connection's work in order again. A closed lane whose last claim took all of its due work
//! that the claim could see (only ingest batches committed since may have stored more), whose
//! claimed work was ordinary (not a circuit's probe, nor paced) and whose attempts have not
//! failed since, still takes a few fresh deliveries leased as they are stored (fewer than half its
//! cap, keeping room for claims), but *parked*: they start only once a claim shows that the older work is all
//! taken, and then the lane opens. So fresh work never overtakes older work due, a lane opens
//! under a steady flow, and a lane with a backlog parks nothing.
//!
//! [`NodeShare::ahead`]: switchyard_store::NodeShare::ahead

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use switchyard_core::ids::{ConnectionId, DeliveryId, WorkspaceId};
use switchyard_store::Claimed;

/// How much of a connection's work is leased ahead, in attempt time.
pub const WINDOW: Duration = Duration::from_millis(25);
/// The most a connection leases ahead, in multiples of its cap.
pub const MAX_AHEAD: u32 = 7;
/// How long an idle lane (and its attempt time) is kept.
const KEEP_IDLE: Duration = Duration::from_secs(60);
/// The weight of the latest attempt in a lane's mean attempt time.
const ALPHA: f64 = 0.2;

/// How a delivery leased at ingest waits (see [`Lanes::hand`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hand {
    Waiting,
    Parked,
}

#[derive(Default)]
pub struct Lanes {
    lanes: HashMap<ConnectionId, Lane>,
    /// Ingest batches begun (the latest's number) and ended: the ingest writer runs one at a
    /// time, so every batch up to `committed` has ended.
    batches: u64,
    committed: u64,
    /// The latest batch that stored pending deliveries of a connection without a lane.
    pending_without_lane: u64,
    /// The last claim may have left work due in the store that no lane accounts for (it took as
    /// many as it asked for, or a workspace's room ran out).
    behind: bool,
}

struct Lane {
    workspace: WorkspaceId,
    cap: usize,
    /// Slots in use: attempts running, or about to run the next waiting delivery.
    running: usize,
    /// Leased, not started, each with the time by which it must start to finish within its lease.
    waiting: VecDeque<(Claimed, Instant)>,
    /// The mean time of recent attempts, in milliseconds.
    attempt_ms: Option<f64>,
    idle_since: Option<Instant>,
    /// Leased at ingest, in a transaction not yet committed: counted as waiting.
    reserved: usize,
    /// Leased at ingest while the lane was closed: they wait until a claim opens it.
    parked: VecDeque<(Claimed, Instant)>,
    /// The latest ingest batch that stored pending deliveries of the connection.
    pending_batch: u64,
    /// See the module's documentation.
    open: bool,
    /// A claim took its work as an ordinary delivery (not a probe of its circuit, nor paced),
    /// and no attempt failed since.
    healthy: bool,
    /// The last claim took all of its due work that the claim could see: what ingest stored
    /// pending meanwhile is all that may wait in the store.
    caught_up: bool,
}

impl Lane {
    fn new(workspace: WorkspaceId, cap: usize) -> Self {
        Self {
            workspace,
            cap,
            running: 0,
            waiting: VecDeque::new(),
            attempt_ms: None,
            idle_since: None,
            reserved: 0,
            parked: VecDeque::new(),
            pending_batch: 0,
            open: false,
            healthy: false,
            caught_up: false,
        }
    }

    /// Claims take the connection's work from here (see [`Lanes::claimed`]).
    fn close(&mut self) {
        self.open = false;
        self.caught_up = false;
    }

    fn held(&self) -> usize {
        self.waiting.len() + self.reserved + self.parked.len()
    }

    /// How many more of the connection's deliveries the lane takes, as a claim counts it: its
    /// cap times one more than its multiple, less those running, waiting or reserved, and its
    /// answers not yet recorded beyond the cap (a claim frees at most the cap for them).
    fn room(&self, answered: usize) -> usize {
        let taken = self.running + self.held() + answered.saturating_sub(self.cap);
        (self.cap * (1 + self.multiple() as usize)).saturating_sub(taken)
    }

    /// How many times its cap the connection may lease ahead: about [`WINDOW`] of attempts.
    fn multiple(&self) -> u32 {
        self.attempt_ms.map_or(0, |ms| (WINDOW.as_secs_f64() * 1_000.0 / ms.max(0.01)).floor().min(f64::from(MAX_AHEAD)) as u32)
    }

    /// How many of the connection's attempts may be in flight or answered and not yet recorded:
    /// what a crash can make repeat. Twice the cap, and as many caps again as it leases ahead
    /// (records commit in batches, and a lane that runs ahead answers faster than one batch
    /// commits).
    fn unrecorded_bound(&self) -> usize {
        (2 + self.multiple() as usize) * self.cap
    }

    /// Whether one more delivery may start with `answered` of the connection's answers unrecorded.
    fn has_room(&self, answered: usize) -> bool {
        self.running < self.cap && self.running + answered < self.unrecorded_bound()
    }
}

/// What a slot does after its attempt.
#[derive(Debug)]
pub enum Ended {
    /// Runs this delivery next.
    Next(Box<Claimed>),
    /// The slot is free; these deliveries waited in the lane and go back to the queue (the
    /// attempt failed, so the connection's next ones are claimed again as its circuit allows).
    Free(Vec<DeliveryId>),
}

impl Lanes {
    /// How many times its cap each timed connection may lease ahead.
    pub fn ahead(&self) -> Vec<(ConnectionId, u32)> {
        self.lanes
            .iter()
            .filter_map(|(id, lane)| {
                let n = lane.multiple();
                (n > 0).then(|| (id.clone(), n))
            })
            .collect()
    }

    /// How many more deliveries the lanes would lease ahead: each timed connection's multiple of
    /// its cap, less what it has waiting. A claim takes no more than this beyond the node's free
    /// slots, so a node whose slots are all busy leases nothing it could not start soon.
    pub fn ahead_room(&self) -> usize {
        self.lanes.values().map(|l| (l.multiple() as usize * l.cap).saturating_sub(l.held())).sum()
    }

    /// Puts a claimed delivery in its connection's lane (`cap`: its `max_in_flight`), to start
    /// by `start_by`.
    pub fn queue(&mut self, claimed: Claimed, cap: usize, start_by: Instant) {
        let pending_without_lane = self.pending_without_lane;
        let lane = self.lanes.entry(claimed.delivery.connection_id.clone()).or_insert_with(|| {
            let mut lane = Lane::new(claimed.delivery.workspace_id.clone(), cap);
            lane.pending_batch = pending_without_lane;
            lane
        });
        lane.cap = cap.max(1);
        lane.idle_since = None;
        lane.waiting.push_back((claimed, start_by));
    }

    /// Takes the waiting deliveries that may start now, in lane order, each with what `admit`
    /// gave it (the node's slot for its workspace); with `capped`, only while its lane has room
    /// (see [`Lane::has_room`]; `answered` counts each connection's answers not yet recorded).
    /// Also returns the deliveries that can no longer start within their leases.
    pub fn startable<P>(
        &mut self,
        answered: &HashMap<ConnectionId, usize>,
        capped: bool,
        now: Instant,
        mut admit: impl FnMut(&Claimed) -> Option<P>,
    ) -> (Vec<(Claimed, P)>, Vec<DeliveryId>) {
        let (mut start, mut expired) = (Vec::new(), Vec::new());
        for (id, lane) in &mut self.lanes {
            let answered = answered.get(id).copied().unwrap_or(0);
            let before = expired.len();
            while lane.parked.front().is_some_and(|(_, by)| *by <= now) {
                expired.push(lane.parked.pop_front().expect("front").0.delivery.id);
            }
            while let Some((_, by)) = lane.waiting.front() {
                if *by <= now {
                    expired.push(lane.waiting.pop_front().expect("front").0.delivery.id);
                    continue;
                }
                if capped && !lane.has_room(answered) {
                    break;
                }
                let Some(permit) = admit(&lane.waiting[0].0) else { break };
                start.push((lane.waiting.pop_front().expect("front").0, permit));
                lane.running += 1;
            }
            if expired.len() > before {
                // Handed back to the store, due now: claims take this connection's work again.
                lane.close();
            }
            lane.idle_since = (lane.running == 0 && lane.held() == 0).then_some(now);
        }
        (start, expired)
    }

    /// A slot of `connection` ended its attempt. After a success it takes the next waiting
    /// delivery if the lane has room (`answered` as for [`Self::startable`], counting this
    /// attempt's answer); otherwise it is freed.
    pub fn ended(&mut self, connection: &ConnectionId, succeeded: bool, answered: usize, now: Instant) -> Ended {
        let Some(lane) = self.lanes.get_mut(connection) else { return Ended::Free(Vec::new()) };
        // This slot is counted in `running`; starting the next delivery in it keeps the count.
        if succeeded && lane.running - 1 + answered < lane.unrecorded_bound() && lane.waiting.front().is_some_and(|(_, by)| *by > now) {
            return Ended::Next(Box::new(lane.waiting.pop_front().expect("front").0));
        }
        let handed_back: Vec<DeliveryId> = if succeeded {
            let expired = lane.waiting.iter().take_while(|(_, by)| *by <= now).count();
            lane.waiting.drain(..expired).map(|(c, _)| c.delivery.id).collect()
        } else {
            lane.healthy = false;
            lane.waiting.drain(..).chain(lane.parked.drain(..)).map(|(c, _)| c.delivery.id).collect()
        };
        if !succeeded || !handed_back.is_empty() {
            lane.close();
        }
        Ended::Free(handed_back)
    }

    /// A slot of `connection` is given up (its attempt ended, or its task stopped).
    pub fn free(&mut self, connection: &ConnectionId, now: Instant) {
        if let Some(lane) = self.lanes.get_mut(connection) {
            lane.running = lane.running.saturating_sub(1);
            if lane.running == 0 && lane.held() == 0 {
                lane.idle_since = Some(now);
            }
        }
    }

    /// Empties every lane; returns what waited.
    pub fn clear_all(&mut self) -> Vec<DeliveryId> {
        self.lanes.values_mut().flat_map(|l| l.waiting.drain(..).chain(l.parked.drain(..)).map(|(c, _)| c.delivery.id)).collect()
    }

    /// Counts an attempt of `connection` that took `took` in its mean attempt time.
    pub fn timed(&mut self, connection: &ConnectionId, took: Duration) {
        if let Some(lane) = self.lanes.get_mut(connection) {
            let ms = took.as_secs_f64() * 1_000.0;
            lane.attempt_ms = Some(lane.attempt_ms.map_or(ms, |mean| mean + ALPHA * (ms - mean)));
        }
    }

    /// Deliveries waiting, per workspace: they count against its share of the node.
    pub fn waiting_by_workspace(&self) -> HashMap<WorkspaceId, usize> {
        let mut by = HashMap::new();
        for lane in self.lanes.values().filter(|l| l.held() > 0) {
            *by.entry(lane.workspace.clone()).or_default() += lane.held();
        }
        by
    }

    /// Slots in use and deliveries waiting, on the whole node.
    pub fn load(&self) -> (usize, usize) {
        self.lanes.values().fold((0, 0), |(r, w), l| (r + l.running, w + l.held()))
    }

    /// Whether `connection`'s lane is open (see the module's documentation).
    pub fn is_open(&self, connection: &ConnectionId) -> bool {
        self.lanes.get(connection).is_some_and(|l| l.open)
    }

    /// Whether a fresh delivery of `connection` may be leased at ingest, and how (`answered`:
    /// the connection's answers not yet recorded): to wait in an open lane with room, or parked
    /// in a closed one, fewer than half its cap, and only while more than half a cap of room is
    /// left: however its lease ahead shrinks, claims keep room for its older work, and a claim
    /// that takes less than it had room for can open it. `None`: it is stored pending.
    pub fn hand(&self, connection: &ConnectionId, answered: usize) -> Option<Hand> {
        let lane = self.lanes.get(connection)?;
        let room = lane.room(answered);
        if lane.open && room > 0 {
            Some(Hand::Waiting)
        } else if !lane.open && lane.healthy && lane.caught_up && lane.parked.len() + lane.reserved < lane.cap / 2 && room > lane.cap / 2 {
            Some(Hand::Parked)
        } else {
            None
        }
    }

    /// Whether fresh deliveries of `connection` may be leased at ingest now (see [`Self::hand`]).
    pub fn may_hand(&self, connection: &ConnectionId) -> bool {
        self.lanes.get(connection).is_some_and(|l| l.open || (l.healthy && l.caught_up))
    }

    /// How many times its cap `connection` leases ahead (0 without a lane).
    pub fn multiple(&self, connection: &ConnectionId) -> u32 {
        self.lanes.get(connection).map_or(0, Lane::multiple)
    }

    /// `connection`'s settings now: its cap, or `None` when it may not be handed work (paused,
    /// waiting to be reconnected, rate limited, its circuit not closed). Such a lane closes and
    /// stays closed until a claim takes its work as ordinary deliveries again.
    pub fn settings(&mut self, connection: &ConnectionId, cap: Option<usize>) {
        if let Some(lane) = self.lanes.get_mut(connection) {
            match cap {
                Some(cap) => lane.cap = cap.max(1),
                None => {
                    lane.healthy = false;
                    lane.close();
                }
            }
        }
    }

    /// An ingest batch begins: its number.
    pub fn begin_batch(&mut self) -> u64 {
        self.batches += 1;
        self.batches
    }

    /// Batch `batch` committed, or failed.
    pub fn end_batch(&mut self, batch: u64) {
        self.committed = self.committed.max(batch);
    }

    /// Counts a delivery of `connection` leased at ingest, until [`Self::unreserve`].
    pub fn reserve(&mut self, connection: &ConnectionId) {
        if let Some(lane) = self.lanes.get_mut(connection) {
            lane.reserved += 1;
            lane.idle_since = None;
        }
    }

    /// The ingest transaction of a reserved delivery ended (it is queued now, or was not stored).
    pub fn unreserve(&mut self, connection: &ConnectionId) {
        if let Some(lane) = self.lanes.get_mut(connection) {
            lane.reserved = lane.reserved.saturating_sub(1);
        }
    }

    /// A delivery leased at ingest, committed: it waits in its lane (`hand` as [`Self::hand`]
    /// said then), or is parked if it was to be and the lane has not opened since.
    pub fn queue_handed(&mut self, claimed: Claimed, hand: Hand, start_by: Instant) {
        let Some(lane) = self.lanes.get_mut(&claimed.delivery.connection_id) else {
            return;
        };
        lane.idle_since = None;
        if hand == Hand::Waiting || lane.open {
            lane.waiting.push_back((claimed, start_by));
        } else {
            lane.parked.push_back((claimed, start_by));
        }
    }

    /// Batch `batch` stores a delivery of `connection` pending: the lane closes, and no claim that
    /// began before the batch committed opens it.
    pub fn stored_pending(&mut self, connection: &ConnectionId, batch: u64) {
        match self.lanes.get_mut(connection) {
            Some(lane) => {
                lane.open = false;
                lane.pending_batch = batch;
            }
            None => self.pending_without_lane = batch,
        }
    }

    /// Each lane's room as the claim about to be made counts it, and the last ingest batch
    /// committed (see [`Self::claimed`]).
    pub fn before_claim(&self, answered: &HashMap<ConnectionId, usize>) -> (HashMap<ConnectionId, usize>, u64) {
        let rooms = self.lanes.iter().map(|(id, l)| (id.clone(), l.room(answered.get(id).copied().unwrap_or(0)))).collect();
        (rooms, self.committed)
    }

    /// After a claim that began with `before` (from [`Self::before_claim`]) and took `claimed`
    /// ordinary deliveries (neither probes of a circuit nor paced) of each connection: those
    /// lanes are healthy. Unless the claim took all it asked for (`saturated`), every healthy
    /// lane opens, its parked deliveries behind what the claim took, that the claim took fewer of
    /// than it had room for (so it took all of its due work that the claim could see), whose
    /// pending deliveries were all committed before the claim began (so it could see them all),
    /// and whose workspace is not in `full` (it took all the room the claim gave it). A lane the
    /// claim made had the room of its cap.
    pub fn claimed(
        &mut self,
        before: (HashMap<ConnectionId, usize>, u64),
        claimed: &HashMap<ConnectionId, usize>,
        full: &[&WorkspaceId],
        saturated: bool,
    ) {
        for id in claimed.keys() {
            if let Some(lane) = self.lanes.get_mut(id) {
                lane.healthy = true;
            }
        }
        // A workspace given no room, or that used all it was given, may have work left in the
        // store that no lane accounts for: its lanes close, and freed slots claim again.
        self.behind = saturated || !full.is_empty();
        let (rooms, committed) = before;
        for (id, lane) in &mut self.lanes {
            let took = claimed.get(id).copied().unwrap_or(0);
            let had = rooms.get(id).copied().unwrap_or(lane.cap);
            lane.caught_up = !saturated && lane.healthy && took < had && !full.contains(&&lane.workspace);
            let was_open = lane.open;
            lane.open = lane.caught_up && lane.pending_batch <= committed;
            if lane.open && !was_open {
                lane.open = true;
                let parked = std::mem::take(&mut lane.parked);
                lane.waiting.extend(parked);
            }
        }
    }

    /// Whether a slot or a record that came free calls for a claim: the last claim may have left
    /// work behind, or some lane's connection may have work due in the store.
    pub fn need_claim(&self) -> bool {
        self.behind || self.lanes.values().any(|l| !l.open)
    }

    /// Forgets lanes idle for a while.
    pub fn prune(&mut self, now: Instant) {
        let committed = self.committed;
        self.lanes.retain(|_, l| {
            l.reserved > 0 || l.pending_batch > committed || l.idle_since.is_none_or(|since| now.duration_since(since) < KEEP_IDLE)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use switchyard_core::ids::RuleId;
    use switchyard_core::model::{Delivery, DeliveryStatus};

    fn claimed(ws: &WorkspaceId, connection: &ConnectionId) -> Claimed {
        let event = switchyard_store::testing::event(ws);
        let delivery = Delivery {
            id: DeliveryId::generate(),
            workspace_id: ws.clone(),
            event_id: event.id.clone(),
            rule_id: RuleId::generate(),
            connection_id: connection.clone(),
            status: DeliveryStatus::Delivering,
            attempt_count: 0,
            replay_base: 0,
            next_attempt_at: Some(0),
            last_error: None,
            created_at: 0,
            updated_at: 0,
        };
        Claimed { delivery, event: Arc::new(event), start_at: 0, next_start_at: None, probe: false }
    }

    #[test]
    fn a_lane_starts_no_more_than_its_cap_nor_beyond_twice_it_with_answers_unrecorded() {
        let (ws, conn) = (WorkspaceId::generate(), ConnectionId::generate());
        let mut lanes = Lanes::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        for _ in 0..10 {
            lanes.queue(claimed(&ws, &conn), 3, later);
        }
        let late = claimed(&ws, &ConnectionId::generate());
        let late_id = late.delivery.id.clone();
        lanes.queue(late, 3, now);
        let (start, expired) = lanes.startable(&HashMap::new(), true, now, |_| Some(()));
        assert_eq!(start.len(), 3, "the cap");
        assert_eq!(expired, vec![late_id], "too late to start within its lease");
        assert_eq!(lanes.load(), (3, 7));
        assert_eq!(lanes.waiting_by_workspace()[&ws], 7);
        // Two slots end, leaving one running. With five answers unrecorded none may start (1 + 5
        // is twice the cap); with four, one (2 + 4 is).
        lanes.free(&conn, now);
        lanes.free(&conn, now);
        let answered = HashMap::from([(conn.clone(), 5)]);
        assert_eq!(lanes.startable(&answered, true, now, |_| Some(())).0.len(), 0);
        let answered = HashMap::from([(conn.clone(), 4)]);
        assert_eq!(lanes.startable(&answered, true, now, |_| Some(())).0.len(), 1);
        // Nothing starts that the node does not admit; uncapped, every admitted one starts.
        assert!(lanes.startable(&HashMap::new(), true, now, |_| None::<()>).0.is_empty());
        assert_eq!(lanes.startable(&HashMap::new(), false, now, |_| Some(())).0.len(), 6);
        assert_eq!(lanes.load(), (8, 0));
    }

    #[test]
    fn a_slot_runs_the_next_delivery_after_a_success_and_hands_the_rest_back_after_a_failure() {
        let (ws, conn) = (WorkspaceId::generate(), ConnectionId::generate());
        let mut lanes = Lanes::default();
        let now = Instant::now();
        for _ in 0..5 {
            lanes.queue(claimed(&ws, &conn), 2, now + Duration::from_secs(5));
        }
        assert_eq!(lanes.startable(&HashMap::new(), true, now, |_| Some(())).0.len(), 2);
        // Succeeded, two answers unrecorded (this one's among them): the slot goes on.
        assert!(matches!(lanes.ended(&conn, true, 2, now), Ended::Next(_)));
        // Three unrecorded with the other slot busy: 1 + 3 reaches twice the cap, so it stops.
        assert!(matches!(lanes.ended(&conn, true, 3, now), Ended::Free(ref back) if back.is_empty()));
        lanes.free(&conn, now);
        // A failure frees the slot and hands back all that waited.
        let Ended::Free(back) = lanes.ended(&conn, false, 0, now) else { panic!("a failed slot stops") };
        assert_eq!(back.len(), 2);
        lanes.free(&conn, now);
        assert_eq!(lanes.load(), (0, 0));
        lanes.prune(now + KEEP_IDLE);
        assert!(lanes.lanes.is_empty());
    }

    #[test]
    fn a_lane_opens_only_when_a_claim_took_all_its_due_work_and_closes_on_a_refusal_or_a_failure() {
        let (ws, conn) = (WorkspaceId::generate(), ConnectionId::generate());
        let mut lanes = Lanes::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let took = |n: usize| HashMap::from([(conn.clone(), n)]);
        let none = HashMap::new();
        // A claim took two with room for two (a cap of 2): it may have left some due.
        let before = lanes.before_claim(&none);
        lanes.queue(claimed(&ws, &conn), 2, later);
        lanes.queue(claimed(&ws, &conn), 2, later);
        lanes.claimed(before, &took(2), &[], false);
        assert!(!lanes.is_open(&conn));
        assert!(lanes.need_claim());
        // Both run and succeed; a claim with room for two takes none: the lane opens.
        assert_eq!(lanes.startable(&none, true, now, |_| Some(())).0.len(), 2);
        for _ in 0..2 {
            assert!(matches!(lanes.ended(&conn, true, 0, now), Ended::Free(_)));
            lanes.free(&conn, now);
        }
        let before = lanes.before_claim(&none);
        lanes.claimed(before, &took(0), &[], false);
        assert!(lanes.is_open(&conn));
        assert!(!lanes.need_claim());
        assert_eq!(lanes.hand(&conn, 0), Some(Hand::Waiting));
        lanes.reserve(&conn);
        assert_eq!(lanes.load(), (0, 1), "a reserved delivery counts as waiting");
        lanes.reserve(&conn);
        assert_eq!(lanes.hand(&conn, 0), None, "no room left");
        lanes.unreserve(&conn);
        lanes.unreserve(&conn);
        // Batch 1 stores a delivery pending: the lane closes. A claim that began before the batch
        // committed cannot open it; one after can.
        let batch = lanes.begin_batch();
        lanes.stored_pending(&conn, batch);
        assert!(!lanes.is_open(&conn));
        let before = lanes.before_claim(&none);
        lanes.end_batch(batch);
        lanes.claimed(before, &took(0), &[], false);
        assert!(!lanes.is_open(&conn), "the batch committed after the claim began");
        // Nor one in a workspace that took all its room, nor one that took as many as it asked for.
        let before = lanes.before_claim(&none);
        lanes.claimed(before, &took(0), &[&ws], false);
        assert!(!lanes.is_open(&conn));
        let before = lanes.before_claim(&none);
        lanes.claimed(before, &took(0), &[], true);
        assert!(!lanes.is_open(&conn));
        assert!(lanes.need_claim());
        // While closed, with room beyond a cap (none here: a cap of 2, nothing ahead), nothing is
        // parked; a claim that saw every batch opens it.
        assert_eq!(lanes.hand(&conn, 0), None);
        let before = lanes.before_claim(&none);
        lanes.claimed(before, &took(0), &[], false);
        assert!(lanes.is_open(&conn));
        // Another workspace that took all its room leaves it open, though freed slots claim again
        // for that workspace's work.
        let before = lanes.before_claim(&none);
        lanes.claimed(before, &took(0), &[&WorkspaceId::generate()], false);
        assert!(lanes.is_open(&conn));
        assert!(lanes.need_claim());
        // A failed attempt closes it, hands back what waited, and it stays closed until a claim
        // takes its work again.
        lanes.queue(claimed(&ws, &conn), 2, later);
        lanes.queue(claimed(&ws, &conn), 2, later);
        assert_eq!(lanes.startable(&none, true, now, |_| Some(())).0.len(), 2);
        let Ended::Free(back) = lanes.ended(&conn, false, 0, now) else { panic!("a failed slot stops") };
        assert!(back.is_empty());
        lanes.free(&conn, now);
        lanes.free(&conn, now);
        let before = lanes.before_claim(&none);
        lanes.claimed(before, &none, &[], false);
        assert!(!lanes.is_open(&conn), "no claim has taken its work since the failure");
        let before = lanes.before_claim(&none);
        lanes.queue(claimed(&ws, &conn), 2, later);
        lanes.claimed(before, &took(1), &[], false);
        assert!(lanes.is_open(&conn));
    }

    #[test]
    fn deliveries_parked_in_a_closed_lane_start_after_what_the_claim_that_opens_it_took() {
        let (ws, conn) = (WorkspaceId::generate(), ConnectionId::generate());
        let mut lanes = Lanes::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let none = HashMap::new();
        // A fast connection with a cap of 2 leases up to seven caps ahead: room for 16.
        let before = lanes.before_claim(&none);
        lanes.queue(claimed(&ws, &conn), 2, later);
        lanes.timed(&conn, Duration::from_micros(500));
        lanes.claimed(before, &HashMap::from([(conn.clone(), 1)]), &[], false);
        assert!(lanes.is_open(&conn));
        // Batch 1 finds room for none more (14 reserved elsewhere in it): stored pending, closed.
        for _ in 0..15 {
            lanes.reserve(&conn);
        }
        let first = lanes.begin_batch();
        assert_eq!(lanes.hand(&conn, 0), None);
        lanes.stored_pending(&conn, first);
        for _ in 0..15 {
            lanes.unreserve(&conn);
        }
        lanes.end_batch(first);
        // Batch 2: the lane is closed but healthy with room beyond a cap: parked.
        let second = lanes.begin_batch();
        assert_eq!(lanes.hand(&conn, 0), Some(Hand::Parked));
        let parked = claimed(&ws, &conn);
        let parked_id = parked.delivery.id.clone();
        lanes.queue_handed(parked, Hand::Parked, later);
        lanes.end_batch(second);
        assert_eq!(lanes.load(), (0, 2));
        // A claim takes batch 1's pending delivery: it goes first, the parked one after it.
        let before = lanes.before_claim(&none);
        let pending = claimed(&ws, &conn);
        let pending_id = pending.delivery.id.clone();
        lanes.queue(pending, 2, later);
        lanes.claimed(before, &HashMap::from([(conn.clone(), 1)]), &[], false);
        assert!(lanes.is_open(&conn));
        let (start, _) = lanes.startable(&none, false, now, |_| Some(()));
        let order: Vec<_> = start.iter().map(|(c, _)| c.delivery.id.clone()).collect();
        // The first claimed delivery, still waiting, then batch 1's, then the parked one (all
        // three here: uncapped).
        assert_eq!(order[1..], [pending_id, parked_id]);
        // Parked deliveries whose time to start passes go back to the queue.
        let before = lanes.before_claim(&none);
        lanes.stored_pending(&conn, lanes.batches + 1);
        lanes.claimed(before, &none, &[], false);
        lanes.queue_handed(claimed(&ws, &conn), Hand::Parked, now);
        let (_, expired) = lanes.startable(&none, true, now, |_| Some(()));
        assert_eq!(expired.len(), 1);
    }

    #[test]
    fn a_lane_closes_when_its_connection_changes_or_its_deliveries_go_back_and_takes_a_lowered_cap_at_once() {
        let (ws, conn) = (WorkspaceId::generate(), ConnectionId::generate());
        let mut lanes = Lanes::default();
        let now = Instant::now();
        let none = HashMap::new();
        let open = |lanes: &mut Lanes| {
            let before = lanes.before_claim(&HashMap::new());
            lanes.claimed(before, &HashMap::from([(conn.clone(), 1)]), &[], false);
        };
        lanes.queue(claimed(&ws, &conn), 4, now + Duration::from_secs(5));
        open(&mut lanes);
        assert!(lanes.is_open(&conn));
        // The cap lowered to 1: one is waiting, so no room is left for a hand-over.
        lanes.settings(&conn, Some(1));
        assert_eq!(lanes.hand(&conn, 0), None);
        // Paused (or rate limited, or its circuit not closed): closed, and a claim that takes
        // none of it (a paused connection's work is not claimed) does not reopen it.
        lanes.settings(&conn, None);
        assert!(!lanes.is_open(&conn));
        let before = lanes.before_claim(&none);
        lanes.claimed(before, &none, &[], false);
        assert!(!lanes.is_open(&conn));
        // Active again with its cap of 4, a claim takes its work again: open. A later claim that
        // finds it full closes it.
        lanes.settings(&conn, Some(4));
        open(&mut lanes);
        assert!(lanes.is_open(&conn));
        for _ in 0..3 {
            lanes.reserve(&conn);
        }
        let before = lanes.before_claim(&none);
        lanes.claimed(before, &none, &[], false);
        assert!(!lanes.is_open(&conn), "a claim with no room for it cannot tell that none of its work is due");
        for _ in 0..3 {
            lanes.unreserve(&conn);
        }
        // A waiting delivery whose time to start passed goes back to the store: closed.
        assert_eq!(lanes.startable(&none, true, now, |_| Some(())).0.len(), 1);
        assert!(matches!(lanes.ended(&conn, true, 0, now), Ended::Free(_)));
        lanes.free(&conn, now);
        open(&mut lanes);
        assert!(lanes.is_open(&conn));
        lanes.queue(claimed(&ws, &conn), 1, now);
        let (_, expired) = lanes.startable(&none, true, now, |_| Some(()));
        assert_eq!(expired.len(), 1);
        assert!(!lanes.is_open(&conn));
    }

    #[test]
    fn how_far_a_connection_leases_ahead_follows_its_attempt_time() {
        let (ws, fast, slow, new) = (WorkspaceId::generate(), ConnectionId::generate(), ConnectionId::generate(), ConnectionId::generate());
        let mut lanes = Lanes::default();
        for conn in [&fast, &slow, &new] {
            lanes.queue(claimed(&ws, conn), 4, Instant::now());
        }
        lanes.timed(&fast, Duration::from_millis(5));
        lanes.timed(&slow, Duration::from_millis(200));
        let ahead: HashMap<_, _> = lanes.ahead().into_iter().collect();
        // 25 ms of 5 ms attempts is five caps ahead; 200 ms attempts and untimed ones get none.
        assert_eq!(ahead, HashMap::from([(fast.clone(), 5)]));
        for _ in 0..30 {
            lanes.timed(&fast, Duration::from_micros(100));
        }
        assert_eq!(lanes.ahead(), vec![(fast.clone(), MAX_AHEAD)]);
        // What the lanes would lease ahead: seven caps of four for the fast one, less the one
        // it has waiting; nothing for the others.
        assert_eq!(lanes.ahead_room(), 7 * 4 - 1);
    }
}
