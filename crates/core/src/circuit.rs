//! A connection's circuit breaker: when too many of its recent attempts fail, it stops sending
//! (deliveries wait, spending no attempts), then tries one delivery at a time until enough succeed.
//!
//! - `closed`: deliveries go out. Each node keeps a sliding window of the connection's recent
//!   attempts; once it holds at least `min_requests` and at least `failure_ratio` of them failed
//!   (timeouts, connection errors, 5xx: what says the destination is down, not a refused
//!   payload or a rate limit), the circuit opens for the whole cluster.
//! - `open`: nothing is claimed for `cooldown_seconds`.
//! - `half_open`: one delivery at a time is sent as a probe. `successes_to_close` successes in a
//!   row close the circuit; a failure opens it again for twice as long (up to
//!   `max_cooldown_seconds`).

use crate::Millis;
use serde::{Deserialize, Serialize};

/// The breaker's settings, per connection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BreakerSettings {
    /// False: the connection never stops for failures (retries still apply).
    pub enabled: bool,
    /// The share of failed attempts in the window that opens the circuit (0 < r <= 1).
    pub failure_ratio: f64,
    /// Fewest attempts in the window before it can open.
    pub min_requests: u32,
    /// The window's length.
    pub window_seconds: u32,
    /// How long it stays open the first time.
    pub cooldown_seconds: u32,
    /// The longest it stays open, as failed probes double the cooldown.
    pub max_cooldown_seconds: u32,
    /// Probes that must succeed, one after another, to close it.
    pub successes_to_close: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_ratio: 0.5,
            min_requests: 20,
            window_seconds: 60,
            cooldown_seconds: 30,
            max_cooldown_seconds: 600,
            successes_to_close: 2,
        }
    }
}

/// Settings as submitted: every field optional, the rest kept from what the connection had.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettingsInput {
    pub enabled: Option<bool>,
    pub failure_ratio: Option<f64>,
    pub min_requests: Option<u32>,
    pub window_seconds: Option<u32>,
    pub cooldown_seconds: Option<u32>,
    pub max_cooldown_seconds: Option<u32>,
    pub successes_to_close: Option<u32>,
}

impl BreakerSettingsInput {
    /// Completes the settings from `base` and checks them; errors name the offending field.
    pub fn resolve(self, base: BreakerSettings) -> Result<BreakerSettings, (&'static str, String)> {
        let s = BreakerSettings {
            enabled: self.enabled.unwrap_or(base.enabled),
            failure_ratio: self.failure_ratio.unwrap_or(base.failure_ratio),
            min_requests: self.min_requests.unwrap_or(base.min_requests),
            window_seconds: self.window_seconds.unwrap_or(base.window_seconds),
            cooldown_seconds: self.cooldown_seconds.unwrap_or(base.cooldown_seconds),
            max_cooldown_seconds: self.max_cooldown_seconds.unwrap_or(base.max_cooldown_seconds.max(self.cooldown_seconds.unwrap_or(0))),
            successes_to_close: self.successes_to_close.unwrap_or(base.successes_to_close),
        };
        if !(s.failure_ratio > 0.0 && s.failure_ratio <= 1.0) {
            return Err(("circuit_breaker.failure_ratio", "must be more than 0 and at most 1".into()));
        }
        if !(1..=100_000).contains(&s.min_requests) {
            return Err(("circuit_breaker.min_requests", "must be between 1 and 100000".into()));
        }
        if !(1..=3_600).contains(&s.window_seconds) {
            return Err(("circuit_breaker.window_seconds", "must be between 1 and 3600".into()));
        }
        if !(1..=86_400).contains(&s.cooldown_seconds) {
            return Err(("circuit_breaker.cooldown_seconds", "must be between 1 and 86400".into()));
        }
        if s.max_cooldown_seconds < s.cooldown_seconds || s.max_cooldown_seconds > 86_400 {
            return Err(("circuit_breaker.max_cooldown_seconds", "must be at least cooldown_seconds and at most 86400".into()));
        }
        if !(1..=100).contains(&s.successes_to_close) {
            return Err(("circuit_breaker.successes_to_close", "must be between 1 and 100".into()));
        }
        Ok(s)
    }
}

pub use crate::model::CircuitState;

/// A connection's circuit, as the store holds it for the whole cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Circuit {
    pub state: CircuitState,
    /// When it entered this state (`None`: closed since the connection was made).
    pub since: Option<Millis>,
    /// Why it opened, e.g. "12 of 20 attempts in 60 s failed".
    pub reason: Option<String>,
    /// While open: when a probe may go.
    pub retry_at: Option<Millis>,
}

impl Default for Circuit {
    fn default() -> Self {
        Self { state: CircuitState::Closed, since: None, reason: None, retry_at: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_completed_and_checked_field_by_field() {
        let base = BreakerSettings::default();
        let s = BreakerSettingsInput { min_requests: Some(5), cooldown_seconds: Some(900), ..Default::default() }.resolve(base).unwrap();
        assert_eq!(
            (s.min_requests, s.cooldown_seconds, s.max_cooldown_seconds),
            (5, 900, 900),
            "the longest cooldown follows a longer first one"
        );
        for (input, field) in [
            (BreakerSettingsInput { failure_ratio: Some(0.0), ..Default::default() }, "circuit_breaker.failure_ratio"),
            (BreakerSettingsInput { failure_ratio: Some(f64::NAN), ..Default::default() }, "circuit_breaker.failure_ratio"),
            (BreakerSettingsInput { min_requests: Some(0), ..Default::default() }, "circuit_breaker.min_requests"),
            (BreakerSettingsInput { window_seconds: Some(0), ..Default::default() }, "circuit_breaker.window_seconds"),
            (
                BreakerSettingsInput { cooldown_seconds: Some(100), max_cooldown_seconds: Some(50), ..Default::default() },
                "circuit_breaker.max_cooldown_seconds",
            ),
            (BreakerSettingsInput { successes_to_close: Some(0), ..Default::default() }, "circuit_breaker.successes_to_close"),
        ] {
            assert_eq!(input.resolve(base).unwrap_err().0, field);
        }
    }
}
