//! Circuit breakers as this node sees them: a sliding window of each connection's recent attempts,
//! and the reports that move the circuit the store shares with every node (see
//! `switchyard_core::circuit` for the states).
//!
//! Each node counts its own attempts. A node whose window crosses the connection's failure ratio
//! opens the circuit for the cluster; a probe's outcome closes or reopens it.

use std::collections::HashMap;
use std::sync::Mutex;
use switchyard_core::circuit::{BreakerSettings, CircuitState};
use switchyard_core::ids::ConnectionId;
use switchyard_core::model::Connection;
use switchyard_core::Millis;
use switchyard_store::{CircuitReport, Store};

/// Buckets in a window: the window slides by a tenth of its length.
const BUCKETS: usize = 10;

/// Attempts that succeeded and failed in each slice of the window.
#[derive(Default)]
struct Window {
    buckets: [(u32, u32); BUCKETS],
    /// The slice the last bucket written covers (time / slice length).
    slice: i64,
}

impl Window {
    /// Moves the window to the slice of `now`, forgetting slices that left it.
    fn advance(&mut self, slice: i64) {
        let gone = (slice - self.slice).clamp(0, BUCKETS as i64);
        for k in 1..=gone {
            self.buckets[((self.slice + k).rem_euclid(BUCKETS as i64)) as usize] = (0, 0);
        }
        self.slice = self.slice.max(slice);
    }

    fn totals(&self) -> (u32, u32) {
        self.buckets.iter().fold((0, 0), |(ok, failed), (o, f)| (ok + o, failed + f))
    }
}

#[derive(Default)]
pub struct Circuits {
    windows: Mutex<HashMap<ConnectionId, Window>>,
}

impl Circuits {
    /// Counts one attempt of `connection` at `now`; says what to report when its window crosses
    /// the failure ratio (the window then starts again, so one crossing is reported once).
    fn observe(&self, connection: &ConnectionId, breaker: &BreakerSettings, ok: bool, now: Millis) -> Option<CircuitReport> {
        let slice_ms = (i64::from(breaker.window_seconds) * 1_000 / BUCKETS as i64).max(1);
        let slice = now.div_euclid(slice_ms);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let window = windows.entry(connection.clone()).or_insert_with(|| Window { slice, ..Window::default() });
        window.advance(slice);
        let bucket = &mut window.buckets[slice.rem_euclid(BUCKETS as i64) as usize];
        if ok {
            bucket.0 += 1;
        } else {
            bucket.1 += 1;
        }
        let (succeeded, failed) = window.totals();
        let total = succeeded + failed;
        if ok || total < breaker.min_requests || f64::from(failed) < breaker.failure_ratio * f64::from(total) {
            return None;
        }
        *window = Window { slice, ..Window::default() };
        Some(CircuitReport::Tripped {
            reason: format!("{failed} of the last {total} attempts in {} s failed", breaker.window_seconds),
            cooldown_ms: i64::from(breaker.cooldown_seconds) * 1_000,
        })
    }

    /// Takes in one attempt's outcome: `Some(true)` it succeeded, `Some(false)` the destination
    /// looked down (no answer, 5xx), `None` it says nothing of the destination's health (a
    /// refused payload, a rate limit). Reports to the store what moves the circuit.
    pub async fn attempted(&self, store: &dyn Store, connection: &Connection, probe: bool, healthy: Option<bool>, now: Millis) {
        let breaker = &connection.breaker;
        let Some(ok) = healthy else { return };
        if !breaker.enabled {
            return;
        }
        let report = if probe {
            Some(if ok {
                CircuitReport::ProbeSucceeded { needed: breaker.successes_to_close }
            } else {
                CircuitReport::ProbeFailed {
                    reason: "a probe failed while the circuit was half open".into(),
                    base_ms: i64::from(breaker.cooldown_seconds) * 1_000,
                    max_ms: i64::from(breaker.max_cooldown_seconds) * 1_000,
                }
            })
        } else {
            self.observe(&connection.id, breaker, ok, now)
        };
        let Some(report) = report else { return };
        match store.report_circuit(&connection.id, &report, now).await {
            Ok(Some(state)) => {
                metrics::counter!("switchyard_circuit_transitions_total", "to" => state.as_str()).increment(1);
                match (state, &report) {
                    (CircuitState::Open, CircuitReport::Tripped { reason, .. } | CircuitReport::ProbeFailed { reason, .. }) => {
                        tracing::warn!(connection = %connection.id, workspace = %connection.workspace_id, %reason, "circuit opened: deliveries wait");
                    }
                    _ => {
                        tracing::info!(connection = %connection.id, workspace = %connection.workspace_id, state = state.as_str(), "circuit moved")
                    }
                }
                if state == CircuitState::Closed {
                    self.forget(&connection.id);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(connection = %connection.id, error = %e, "could not move the circuit; the next attempts decide again"),
        }
    }

    /// Starts the connection's window afresh (its circuit closed).
    fn forget(&self, connection: &ConnectionId) {
        self.windows.lock().unwrap_or_else(|p| p.into_inner()).remove(connection);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings { min_requests: 4, failure_ratio: 0.5, window_seconds: 10, ..BreakerSettings::default() }
    }

    #[test]
    fn the_window_trips_at_its_ratio_once_it_holds_enough_attempts() {
        let (c, id, s) = (Circuits::default(), ConnectionId::generate(), settings());
        assert!(c.observe(&id, &s, false, 0).is_none(), "one failure is not enough attempts");
        assert!(c.observe(&id, &s, true, 100).is_none());
        assert!(c.observe(&id, &s, true, 200).is_none());
        let Some(CircuitReport::Tripped { reason, cooldown_ms }) = c.observe(&id, &s, false, 300) else { panic!("2 of 4 failed") };
        assert_eq!((reason.as_str(), cooldown_ms), ("2 of the last 4 attempts in 10 s failed", 30_000));
        assert!(c.observe(&id, &s, false, 400).is_none(), "the window starts again after a report");
    }

    #[test]
    fn attempts_older_than_the_window_are_forgotten() {
        let (c, id, s) = (Circuits::default(), ConnectionId::generate(), settings());
        for t in 0..3 {
            assert!(c.observe(&id, &s, false, t).is_none());
        }
        // 11 s later the three failures have left the 10 s window: one more is not four.
        assert!(c.observe(&id, &s, false, 11_000).is_none());
        assert!(c.observe(&id, &s, false, 11_001).is_none());
        assert!(c.observe(&id, &s, false, 11_002).is_none());
        assert!(c.observe(&id, &s, false, 11_003).is_some());
    }
}
