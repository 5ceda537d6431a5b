//! Retry policies: how many attempts a delivery gets and how long it waits between them.
//!
//! Delays grow exponentially from `initial_delay_ms`, are capped at `max_delay_ms`, and carry "equal
//! jitter" (half fixed, half random) so that a destination recovering from an outage is not hit by
//! every waiting delivery in the same instant.

use rand::Rng;
use serde::{Deserialize, Serialize};

pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
pub const DEFAULT_INITIAL_DELAY_MS: u64 = 5_000;
pub const DEFAULT_MAX_DELAY_MS: u64 = 3_600_000;
const MAX_ATTEMPTS_LIMIT: u32 = 100;
const MAX_DELAY_LIMIT_MS: u64 = 7 * 24 * 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1..=100).
    pub max_attempts: u32,
    /// The delay before the first retry, in milliseconds.
    pub initial_delay_ms: u64,
    /// The longest delay between two attempts, in milliseconds; also caps a destination's Retry-After.
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: DEFAULT_MAX_ATTEMPTS, initial_delay_ms: DEFAULT_INITIAL_DELAY_MS, max_delay_ms: DEFAULT_MAX_DELAY_MS }
    }
}

/// A policy as submitted: every field optional, the rest filled from defaults.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicyInput {
    pub max_attempts: Option<u32>,
    pub initial_delay_ms: Option<u64>,
    pub max_delay_ms: Option<u64>,
}

impl RetryPolicyInput {
    /// Completes the policy from `base` and checks it; errors name the offending field.
    pub fn resolve(self, base: RetryPolicy) -> Result<RetryPolicy, (&'static str, String)> {
        let policy = RetryPolicy {
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts),
            initial_delay_ms: self.initial_delay_ms.unwrap_or(base.initial_delay_ms),
            max_delay_ms: self.max_delay_ms.unwrap_or(base.max_delay_ms.max(self.initial_delay_ms.unwrap_or(0))),
        };
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&policy.max_attempts) {
            return Err(("retry_policy.max_attempts", format!("must be between 1 and {MAX_ATTEMPTS_LIMIT}")));
        }
        if policy.initial_delay_ms == 0 {
            return Err(("retry_policy.initial_delay_ms", "must be at least 1".into()));
        }
        if policy.max_delay_ms < policy.initial_delay_ms {
            return Err(("retry_policy.max_delay_ms", "must not be less than initial_delay_ms".into()));
        }
        if policy.max_delay_ms > MAX_DELAY_LIMIT_MS {
            return Err(("retry_policy.max_delay_ms", format!("must be at most {MAX_DELAY_LIMIT_MS} (7 days)")));
        }
        Ok(policy)
    }
}

impl RetryPolicy {
    /// The delay after the `attempt`-th failed attempt (1-based), jittered within the policy's bounds.
    pub fn backoff_ms(&self, attempt: u32, rng: &mut impl Rng) -> u64 {
        let exp = attempt.saturating_sub(1).min(40);
        let base = self.initial_delay_ms.saturating_mul(1u64 << exp).min(self.max_delay_ms);
        let half = base / 2;
        let jittered = half + rng.gen_range(0..=base - half);
        jittered.clamp(self.initial_delay_ms, self.max_delay_ms)
    }

    /// Caps a destination's requested wait (Retry-After) to the policy's longest delay.
    pub fn cap_ms(&self, requested_ms: u64) -> u64 {
        requested_ms.min(self.max_delay_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_within_bounds() {
        let p = RetryPolicy { max_attempts: 10, initial_delay_ms: 100, max_delay_ms: 1_000 };
        let mut rng = rand::thread_rng();
        for attempt in 1..=20 {
            for _ in 0..50 {
                let d = p.backoff_ms(attempt, &mut rng);
                assert!((100..=1_000).contains(&d), "attempt {attempt}: {d}");
            }
        }
        // The fourth delay's base is 800ms: jitter keeps it in 400..=800.
        for _ in 0..50 {
            assert!((400..=800).contains(&p.backoff_ms(4, &mut rng)));
        }
    }

    #[test]
    fn partial_input_is_completed_from_defaults_and_checked() {
        let p = RetryPolicyInput { max_attempts: Some(3), ..Default::default() }.resolve(RetryPolicy::default()).unwrap();
        assert_eq!(p.max_attempts, 3);
        assert_eq!(p.initial_delay_ms, DEFAULT_INITIAL_DELAY_MS);
        let e = RetryPolicyInput { max_attempts: Some(0), ..Default::default() }.resolve(RetryPolicy::default()).unwrap_err();
        assert_eq!(e.0, "retry_policy.max_attempts");
        let e = RetryPolicyInput { initial_delay_ms: Some(10), max_delay_ms: Some(5), ..Default::default() }
            .resolve(RetryPolicy::default())
            .unwrap_err();
        assert_eq!(e.0, "retry_policy.max_delay_ms");
    }

    #[test]
    fn a_large_initial_delay_raises_the_default_cap() {
        let p = RetryPolicyInput { initial_delay_ms: Some(7_200_000), ..Default::default() }.resolve(RetryPolicy::default()).unwrap();
        assert_eq!(p.max_delay_ms, 7_200_000);
    }
}
