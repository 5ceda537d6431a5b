//! Destination limits as this node applies them. The pace of a connection's deliveries under its
//! `rate_limit_per_minute` is kept by the store's claim, across every node (see
//! [`switchyard_store::Claimed::start_at`]); a destination's "too many requests" holds the
//! connection in the store, so no node claims its deliveries until the wait has passed.
//!
//! What this node keeps is the holds it saw itself, so that deliveries it already claimed and has
//! not started yet (waiting for their paced start) go back to the queue instead of being sent into
//! the wait. Waiting never spends an attempt.

use std::collections::HashMap;
use std::sync::Mutex;
use switchyard_core::ids::ConnectionId;
use switchyard_core::Millis;

#[derive(Default)]
pub struct Holds {
    until: Mutex<HashMap<ConnectionId, Millis>>,
}

impl Holds {
    /// Holds the connection until `until` (a destination's 429 and its requested wait).
    pub fn hold(&self, connection: &ConnectionId, until: Millis) {
        let mut holds = self.until.lock().unwrap_or_else(|p| p.into_inner());
        let held = holds.entry(connection.clone()).or_default();
        *held = (*held).max(until);
    }

    /// Until when the connection is held, if it is at `now`.
    pub fn held_until(&self, connection: &ConnectionId, now: Millis) -> Option<Millis> {
        let holds = self.until.lock().unwrap_or_else(|p| p.into_inner());
        holds.get(connection).copied().filter(|until| *until > now)
    }

    /// Forgets holds that have passed.
    pub fn prune(&self, now: Millis) {
        self.until.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, until| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_lasts_until_its_end_and_only_grows() {
        let holds = Holds::default();
        let (c, other) = (ConnectionId::generate(), ConnectionId::generate());
        holds.hold(&c, 30_000);
        holds.hold(&c, 20_000);
        assert_eq!(holds.held_until(&c, 1_000), Some(30_000));
        assert_eq!(holds.held_until(&other, 1_000), None);
        assert_eq!(holds.held_until(&c, 30_000), None);
        holds.prune(31_000);
        assert!(holds.until.lock().unwrap().is_empty());
    }
}
