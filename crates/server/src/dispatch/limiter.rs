//! Per-connection rate limits on this node: each connection's deliveries start no closer together
//! than its `rate_limit_per_minute` allows, and a destination that answered "too many requests"
//! holds the whole connection until the wait it asked for has passed.
//!
//! Waiting never spends an attempt: a delivery whose start is near sleeps for it, one whose start
//! is further away goes back to the queue, due at that time, without being attempted. Each
//! connection has its own schedule, so one connection's limit never delays another's deliveries.

use std::collections::HashMap;
use std::sync::Mutex;
use switchyard_core::ids::ConnectionId;
use switchyard_core::Millis;

#[derive(Default)]
pub struct Limiter {
    schedules: Mutex<HashMap<ConnectionId, Schedule>>,
}

#[derive(Default, Clone, Copy)]
struct Schedule {
    /// The earliest start of the next delivery, in fractional milliseconds.
    next_start: f64,
    /// Until when the destination asked us to stop.
    paused_until: Millis,
}

/// When a delivery may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Now, or after a short sleep (milliseconds): the slot is reserved.
    After(u64),
    /// Not before this time: hand the delivery back, due then (nothing is reserved).
    Defer(Millis),
}

impl Limiter {
    /// Reserves a start for one delivery of `connection`. Starts more than `horizon_ms` away are
    /// not reserved but deferred, so a long pause or backlog never holds a task asleep.
    pub fn reserve(&self, connection: &ConnectionId, per_minute: Option<u32>, now: Millis, horizon_ms: u64) -> Start {
        let mut schedules = self.schedules.lock().unwrap_or_else(|p| p.into_inner());
        let interval = match per_minute {
            Some(r) if r > 0 => 60_000.0 / f64::from(r),
            _ => 0.0,
        };
        let Some(s) = schedules.get_mut(connection) else {
            if interval > 0.0 {
                schedules.insert(connection.clone(), Schedule { next_start: now as f64 + interval, paused_until: 0 });
            }
            return Start::After(0);
        };
        let start = s.next_start.max(now as f64).max(s.paused_until as f64);
        let wait = start - now as f64;
        if wait > horizon_ms as f64 {
            return Start::Defer(start.ceil() as Millis);
        }
        s.next_start = start + interval;
        Start::After(wait.ceil() as u64)
    }

    /// Holds the connection until `until` (a destination's 429 and its requested wait).
    pub fn pause(&self, connection: &ConnectionId, until: Millis) {
        let mut schedules = self.schedules.lock().unwrap_or_else(|p| p.into_inner());
        let s = schedules.entry(connection.clone()).or_default();
        s.paused_until = s.paused_until.max(until);
    }

    /// Forgets schedules that no longer constrain anything, so the map holds only busy connections.
    pub fn prune(&self, now: Millis) {
        let mut schedules = self.schedules.lock().unwrap_or_else(|p| p.into_inner());
        schedules.retain(|_, s| s.next_start > now as f64 || s.paused_until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_are_spaced_by_the_rate() {
        let l = Limiter::default();
        let c = ConnectionId::generate();
        // 120 a minute: one every 500 ms.
        assert_eq!(l.reserve(&c, Some(120), 1_000, 2_000), Start::After(0));
        assert_eq!(l.reserve(&c, Some(120), 1_000, 2_000), Start::After(500));
        assert_eq!(l.reserve(&c, Some(120), 1_000, 2_000), Start::After(1_000));
        assert_eq!(l.reserve(&c, Some(120), 1_000, 2_000), Start::After(1_500));
        assert_eq!(l.reserve(&c, Some(120), 1_000, 2_000), Start::After(2_000));
        // Beyond the horizon: deferred, and nothing reserved.
        assert_eq!(l.reserve(&c, Some(120), 1_000, 2_000), Start::Defer(3_500));
        assert_eq!(l.reserve(&c, Some(120), 1_000, 2_000), Start::Defer(3_500));
        // Once time has passed the schedule continues from it.
        assert_eq!(l.reserve(&c, Some(120), 10_000, 2_000), Start::After(0));
    }

    #[test]
    fn connections_do_not_share_a_schedule() {
        let l = Limiter::default();
        let (a, b) = (ConnectionId::generate(), ConnectionId::generate());
        assert_eq!(l.reserve(&a, Some(1), 0, 2_000), Start::After(0));
        assert!(matches!(l.reserve(&a, Some(1), 0, 2_000), Start::Defer(60_000)));
        assert_eq!(l.reserve(&b, Some(1), 0, 2_000), Start::After(0));
        assert_eq!(l.reserve(&b, None, 0, 2_000), Start::Defer(60_000), "a limit lowered to none still waits out the last slot");
    }

    #[test]
    fn a_pause_holds_every_delivery_of_the_connection() {
        let l = Limiter::default();
        let c = ConnectionId::generate();
        l.pause(&c, 30_000);
        assert_eq!(l.reserve(&c, None, 1_000, 2_000), Start::Defer(30_000));
        assert_eq!(l.reserve(&c, None, 29_000, 2_000), Start::After(1_000));
        assert_eq!(l.reserve(&c, None, 31_000, 2_000), Start::After(0));
        l.prune(31_000);
        assert!(l.schedules.lock().unwrap().is_empty());
    }
}
