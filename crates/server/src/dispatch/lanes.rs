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

#[derive(Default)]
pub struct Lanes {
    lanes: HashMap<ConnectionId, Lane>,
}

struct Lane {
    cap: usize,
    /// Slots in use: attempts running, or about to run the next waiting delivery.
    running: usize,
    /// Leased, not started, each with the time by which it must start to finish within its lease.
    waiting: VecDeque<(Claimed, Instant)>,
    /// The mean time of recent attempts, in milliseconds.
    attempt_ms: Option<f64>,
    idle_since: Option<Instant>,
}

impl Lane {
    fn new(cap: usize) -> Self {
        Self { cap, running: 0, waiting: VecDeque::new(), attempt_ms: None, idle_since: None }
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
        self.lanes.values().map(|l| (l.multiple() as usize * l.cap).saturating_sub(l.waiting.len())).sum()
    }

    /// Puts a claimed delivery in its connection's lane (`cap`: its `max_in_flight`), to start
    /// by `start_by`.
    pub fn queue(&mut self, claimed: Claimed, cap: usize, start_by: Instant) {
        let lane = self.lanes.entry(claimed.delivery.connection_id.clone()).or_insert_with(|| Lane::new(cap));
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
            lane.idle_since = (lane.running == 0 && lane.waiting.is_empty()).then_some(now);
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
        let handed_back = if succeeded {
            let expired = lane.waiting.iter().take_while(|(_, by)| *by <= now).count();
            lane.waiting.drain(..expired).map(|(c, _)| c.delivery.id).collect()
        } else {
            lane.waiting.drain(..).map(|(c, _)| c.delivery.id).collect()
        };
        Ended::Free(handed_back)
    }

    /// A slot of `connection` is given up (its attempt ended, or its task stopped).
    pub fn free(&mut self, connection: &ConnectionId, now: Instant) {
        if let Some(lane) = self.lanes.get_mut(connection) {
            lane.running = lane.running.saturating_sub(1);
            if lane.running == 0 && lane.waiting.is_empty() {
                lane.idle_since = Some(now);
            }
        }
    }

    /// Empties every lane; returns what waited.
    pub fn clear_all(&mut self) -> Vec<DeliveryId> {
        self.lanes.values_mut().flat_map(|l| l.waiting.drain(..).map(|(c, _)| c.delivery.id)).collect()
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
        for lane in self.lanes.values() {
            if let Some((first, _)) = lane.waiting.front() {
                *by.entry(first.delivery.workspace_id.clone()).or_default() += lane.waiting.len();
            }
        }
        by
    }

    /// Slots in use and deliveries waiting, on the whole node.
    pub fn load(&self) -> (usize, usize) {
        self.lanes.values().fold((0, 0), |(r, w), l| (r + l.running, w + l.waiting.len()))
    }

    /// Forgets lanes idle for a while.
    pub fn prune(&mut self, now: Instant) {
        self.lanes.retain(|_, l| l.idle_since.is_none_or(|since| now.duration_since(since) < KEEP_IDLE));
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
