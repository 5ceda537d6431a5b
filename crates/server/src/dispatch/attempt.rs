//! One attempt of one delivery: load what it needs, build the request, send it, classify the
//! answer, and decide the next step under the connection's retry policy.

use super::limiter::Holds;
use crate::oauth::tokens::{managed, Managed, TokenError};
use crate::state::AppState;
use std::time::{Duration, Instant};
use switchyard_core::model::{Attempt, Connection, ConnectionStatus};
use switchyard_core::retry::RetryPolicy;
use switchyard_destinations::http::Sender;
use switchyard_destinations::outcome::{Classified, Outcome};
use switchyard_destinations::sandbox::Renderer;
use switchyard_destinations::{DeliveryContext, Exchange, OpenedSecrets};
use switchyard_store::{AttemptRecord, Claimed, NextStep};

/// How long a delivery waits when this node cannot attempt it (store or master-key trouble).
const DEFER_MS: i64 = 5_000;
/// How long a connection is held after a rate-limit answer that named no wait.
const DEFAULT_RATE_LIMIT_PAUSE_MS: i64 = 1_000;

/// What became of a claimed delivery.
#[derive(Debug)]
pub enum Finished {
    /// An attempt was made (or the delivery can never be attempted): record it.
    Attempted(AttemptRecord),
    /// Nothing was sent, for reasons that are not the destination's: hand the delivery back,
    /// due at `until`, without spending an attempt.
    Deferred { id: switchyard_core::ids::DeliveryId, until: i64 },
}

/// Settings of this node's dispatcher that an attempt needs.
pub struct Dispatch<'a> {
    pub sender: &'a Sender,
    /// Connections a destination asked this node to leave alone for a while.
    pub holds: &'a Holds,
    /// This node's windows of each connection's recent attempts, for the circuit breakers.
    pub circuits: &'a super::circuit::Circuits,
}

pub async fn perform(state: &AppState, dispatch: &Dispatch<'_>, claimed: Claimed) -> Finished {
    let Claimed { delivery, event, start_at, probe, .. } = claimed;
    let number = delivery.attempt_count + 1;
    let started_at = switchyard_core::now_millis();
    let clock = Instant::now();
    let store = &*state.store;

    // The attempt's record, timed from `since` (after any wait for a rate-limit slot).
    let attempt =
        |since: (i64, Instant), classified: Classified, status_code: Option<u16>, excerpt: Option<String>, request: Option<String>| {
            Attempt {
                delivery_id: delivery.id.clone(),
                number,
                started_at: since.0,
                duration_ms: since.1.elapsed().as_millis() as u64,
                status_code,
                error: classified.error,
                response_excerpt: excerpt,
                request,
            }
        };
    // A delivery that can never be attempted is dead at once, with the reason recorded.
    let dead = |message: &str| {
        record_metrics(NextStep::Dead, clock.elapsed());
        Finished::Attempted(AttemptRecord {
            attempt: attempt((started_at, clock), Classified::permanent(message), None, None, None),
            next: NextStep::Dead,
        })
    };
    let defer = || Finished::Deferred { id: delivery.id.clone(), until: switchyard_core::now_millis() + DEFER_MS };

    let connection = match state.cache.connection(store, &delivery.connection_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return dead("the connection was deleted"),
        Err(e) => {
            tracing::warn!(error = %e, "could not load a connection; deferring the delivery");
            return defer();
        }
    };
    // Paused or disabled since the delivery was leased (a moment ago, or ahead of its slot): hand
    // it back without an attempt; claims skip the connection until it is active again.
    if connection.status != ConnectionStatus::Active || connection.inactive.is_some() {
        return Finished::Deferred { id: delivery.id.clone(), until: switchyard_core::now_millis() };
    }
    let rule = match state.cache.rule(store, &delivery.rule_id).await {
        Ok(Some(r)) => r,
        Ok(None) => return dead("the rule no longer exists"),
        Err(e) => {
            tracing::warn!(error = %e, "could not load a rule; deferring the delivery");
            return defer();
        }
    };
    let Some(connector) = state.registry.get(&connection.kind) else {
        return dead(&format!("no connector for connection type {:?}", connection.kind));
    };
    let secrets = match open_secrets(state, &connection) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(connection = %connection.id, error = %e, "could not open a connection's secrets; deferring its deliveries");
            return defer();
        }
    };
    // A rate-limited connection's deliveries start at the times the claim gave them.
    let wait = start_at - switchyard_core::now_millis();
    let mut held = dispatch.holds.held_until(&connection.id, switchyard_core::now_millis());
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        // Another node may have been told to stop while this delivery waited for its start.
        let now = switchyard_core::now_millis();
        held = match store.connection_held_until(&connection.id).await {
            Ok(until) if until > now => Some(until),
            _ => dispatch.holds.held_until(&connection.id, now),
        };
    }
    if let Some(until) = held {
        metrics::counter!("switchyard_rate_limit_deferrals_total").increment(1);
        return Finished::Deferred { id: delivery.id.clone(), until };
    }
    let started_at = switchyard_core::now_millis();
    let clock = Instant::now();
    let mut secrets = secrets;
    let now_defer = || Finished::Deferred { id: delivery.id.clone(), until: switchyard_core::now_millis() };
    // OAuth tokens: refreshed before they expire.
    if let Err(e) = state.tokens.ensure_fresh(&connection, &mut secrets, None).await {
        match e {
            // The connection now waits to be reconnected; claims skip it, so its deliveries wait
            // without spending attempts.
            TokenError::NeedsReauth(_) => return now_defer(),
            TokenError::Failed(_) if still_valid(&secrets) => {}
            TokenError::Failed(_) => {
                let classified = Classified::retry(None, e.to_string());
                let next = next_step(&connection.retry_policy, number.saturating_sub(delivery.replay_base), classified.outcome, started_at);
                record_metrics(next, clock.elapsed());
                return Finished::Attempted(AttemptRecord { attempt: attempt((started_at, clock), classified, None, None, None), next });
            }
        }
    }
    let timeout = Duration::from_millis(connection.timeout_ms);
    let mut exchange = Exchange::new(dispatch.sender, timeout, &secrets, &event.payload);
    let parts = Parts {
        connector: &**connector,
        delivery: &delivery,
        number,
        event: &event,
        rule: &rule,
        connection: &connection,
        started_at,
        renderer: &state.renderer,
    };
    let mut classified = parts.deliver(&secrets, &mut exchange).await;
    let mut earlier_request = None;
    // A refused token is refreshed once, and the attempt made again with the new one.
    if classified.unauthorized && managed(secrets.credentials.as_ref()) != Managed::No {
        let used_token = secrets.credentials.as_ref().and_then(|c| c.get("access_token")).and_then(|t| t.as_str()).map(str::to_owned);
        match state.tokens.ensure_fresh(&connection, &mut secrets, used_token.as_deref()).await {
            Ok(_) => {
                earlier_request = exchange
                    .request_record()
                    .map(|r| format!("{r}\n-> HTTP 401: the access token was refreshed and the request sent again"));
                exchange = Exchange::new(dispatch.sender, timeout, &secrets, &event.payload);
                classified = parts.deliver(&secrets, &mut exchange).await;
            }
            Err(TokenError::NeedsReauth(_)) => return now_defer(),
            Err(TokenError::Failed(m)) => {
                classified = Classified::retry(None, format!("the access token was refused and could not be refreshed: {m}"))
            }
        }
    }
    let now = switchyard_core::now_millis();
    if classified.rate_limited {
        // The destination's limit is the connection's, not this delivery's: hold them all.
        let wait = match classified.outcome {
            Outcome::Retry { after: Some(wait) } => wait.as_millis() as i64,
            _ => DEFAULT_RATE_LIMIT_PAUSE_MS,
        };
        let until = now + wait.min(connection.retry_policy.max_delay_ms as i64);
        dispatch.holds.hold(&connection.id, until);
        // Every node: no claim takes the connection's deliveries until then.
        if let Err(e) = store.hold_connection(&connection.id, until).await {
            tracing::warn!(connection = %connection.id, error = %e, "could not hold the connection for the other nodes; this node holds it");
        }
    }
    let (status_code, excerpt) = exchange.last_response();
    let request = match (earlier_request, exchange.request_record()) {
        (Some(first), Some(second)) => Some(format!("{first}\n\n{second}")),
        (first, second) => second.or(first),
    };
    // What the answer says of the destination's health, for its circuit: a refused payload says
    // it is up only to a probe (the window counts what says it is down), a rate limit nothing.
    let healthy = match classified.outcome {
        Outcome::Success => Some(true),
        Outcome::Retry { .. } if classified.rate_limited => None,
        Outcome::Retry { .. } => Some(false),
        Outcome::Permanent => probe.then_some(true),
    };
    dispatch.circuits.attempted(store, &connection, probe, healthy, now).await;
    let used = number.saturating_sub(delivery.replay_base);
    let next = next_step(&connection.retry_policy, used, classified.outcome, now);
    record_metrics(next, clock.elapsed());
    let classified = Classified { error: classified.error.map(|e| exchange.redact(&e)), ..classified };
    Finished::Attempted(AttemptRecord { attempt: attempt((started_at, clock), classified, status_code, excerpt, request), next })
}

/// What one attempt delivers, but for the secrets (which a token refresh replaces).
struct Parts<'a> {
    connector: &'a dyn switchyard_destinations::Connector,
    delivery: &'a switchyard_core::model::Delivery,
    number: u32,
    event: &'a switchyard_core::model::Event,
    rule: &'a switchyard_core::model::Rule,
    connection: &'a Connection,
    started_at: i64,
    renderer: &'a Renderer,
}

impl Parts<'_> {
    /// One run of the connector.
    async fn deliver(&self, secrets: &OpenedSecrets, exchange: &mut Exchange<'_>) -> Classified {
        let ctx = DeliveryContext {
            delivery_id: self.delivery.id.as_str(),
            attempt: self.number,
            event: self.event,
            rule: self.rule,
            connection: self.connection,
            secrets,
            timestamp: self.started_at / 1000,
            renderer: self.renderer,
        };
        match self.connector.deliver(&ctx, exchange).await {
            Ok(()) => Classified::success(),
            Err(c) => c,
        }
    }
}

/// Whether the credentials' access token has not expired yet (a failed early refresh can wait).
fn still_valid(secrets: &OpenedSecrets) -> bool {
    let Some(c) = &secrets.credentials else { return false };
    c.get("access_token").is_some() && c.get("expires_at").and_then(|e| e.as_i64()).is_none_or(|at| at > switchyard_core::now_millis())
}

/// What follows an attempt: `used` counts attempts since the last replay, this one included.
pub fn next_step(policy: &RetryPolicy, used: u32, outcome: Outcome, now: i64) -> NextStep {
    match outcome {
        Outcome::Success => NextStep::Succeeded,
        Outcome::Permanent => NextStep::Dead,
        Outcome::Retry { .. } if used >= policy.max_attempts => NextStep::Dead,
        Outcome::Retry { after } => {
            let delay = match after {
                Some(wait) => policy.cap_ms(wait.as_millis() as u64),
                None => policy.backoff_ms(used, &mut rand::thread_rng()),
            };
            NextStep::RetryAt(now + delay as i64)
        }
    }
}

pub(crate) fn open_secrets(state: &AppState, connection: &Connection) -> Result<OpenedSecrets, switchyard_core::crypto::CryptoError> {
    let context = connection.id.as_str();
    let mut signing_secrets = Vec::new();
    if let Some(sealed) = &connection.signing_secret_sealed {
        signing_secrets.push(state.vault.open_string(sealed, context)?);
    }
    if let (Some(sealed), Some(until)) = (&connection.previous_secret_sealed, connection.previous_secret_expires_at) {
        if until > switchyard_core::now_millis() {
            signing_secrets.push(state.vault.open_string(sealed, context)?);
        }
    }
    let credentials = match &connection.credentials_sealed {
        Some(sealed) => Some(
            serde_json::from_slice(&state.vault.open(sealed, context)?).map_err(|_| switchyard_core::crypto::CryptoError::Undecryptable)?,
        ),
        None => None,
    };
    Ok(OpenedSecrets { credentials, signing_secrets })
}

fn record_metrics(next: NextStep, duration: Duration) {
    let outcome = match next {
        NextStep::Succeeded => "succeeded",
        NextStep::RetryAt(_) => "retrying",
        NextStep::Dead => "dead",
    };
    metrics::counter!("switchyard_attempts_total", "outcome" => outcome).increment(1);
    metrics::histogram!("switchyard_attempt_duration_seconds").record(duration.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stop_at_the_policy_budget() {
        let p = RetryPolicy { max_attempts: 3, initial_delay_ms: 10, max_delay_ms: 100 };
        let retry = Outcome::Retry { after: None };
        assert!(matches!(next_step(&p, 1, retry, 0), NextStep::RetryAt(t) if (10..=100).contains(&t)));
        assert!(matches!(next_step(&p, 2, retry, 0), NextStep::RetryAt(_)));
        assert_eq!(next_step(&p, 3, retry, 0), NextStep::Dead);
        assert_eq!(next_step(&p, 1, Outcome::Permanent, 0), NextStep::Dead);
        assert_eq!(next_step(&p, 1, Outcome::Success, 0), NextStep::Succeeded);
    }

    #[test]
    fn retry_after_is_honoured_but_capped() {
        let p = RetryPolicy { max_attempts: 3, initial_delay_ms: 10, max_delay_ms: 60_000 };
        let asked = |s| Outcome::Retry { after: Some(Duration::from_secs(s)) };
        assert_eq!(next_step(&p, 1, asked(2), 1_000), NextStep::RetryAt(3_000));
        assert_eq!(next_step(&p, 1, asked(3_600), 0), NextStep::RetryAt(60_000));
    }
}
