//! Switchyard's domain: identifiers, event names and patterns, rule conditions, retry policy and the
//! cryptography that protects keys and secrets. Nothing here performs I/O, so every rule of the domain
//! can be unit-tested in isolation and shared by the store, the connectors and the server.
//!
//! Layout:
//! - [`ids`]: prefixed, time-sortable identifiers (`ws_`, `conn_`, `evt_`, ...).
//! - [`events`]: validated event names and the patterns rules subscribe with (`user.*`).
//! - [`conditions`]: the condition tree a rule filters events with.
//! - [`retry`]: retry policies and exponential backoff with jitter.
//! - [`model`]: the records the store keeps and the API shows.
//! - [`crypto`]: API keys, webhook signing secrets, Standard Webhooks signatures, secrets at rest.

pub mod circuit;
pub mod conditions;
pub mod crypto;
pub mod events;
pub mod ids;
pub mod limits;
pub mod model;
pub mod retry;

/// Milliseconds since the Unix epoch, the store's unit of time.
pub type Millis = i64;

/// The current time in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// Formats milliseconds since the epoch as an RFC 3339 UTC timestamp (`2026-01-02T03:04:05.678Z`).
pub fn rfc3339(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 timestamp into milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis())
}
