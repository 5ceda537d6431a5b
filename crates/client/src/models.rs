//! What the API answers and what it takes, as Rust types. Times are RFC 3339 UTC.
//!
//! Field sets follow the OpenAPI document (`docs/openapi.json`). Unknown fields are ignored so an
//! older client keeps working against a newer server, except under the `strict` feature, which the
//! project's tests use to catch drift.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Reads a field that tells absent (`None`) from an explicit `null` (`Some(None)`): with
/// `#[serde(default)]`, changes can clear a value as well as set it.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A page of results, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct List<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

/// Which page of a list to fetch.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// 1..=200; the server's default (50) when unset.
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl Page {
    pub fn first(limit: u32) -> Self {
        Self { limit: Some(limit), cursor: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// Its own plan; `None`: the installation's default plan, if any.
    pub plan: Option<String>,
    /// Its own limits over the plan's (`null` for one lifts it).
    pub limits: Value,
    /// `env=prod`, `tier=enterprise`: what blueprints and lists select it by.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new workspace with its first publishable key (its secret shown only here).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct WorkspaceCreated {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub plan: Option<String>,
    pub limits: Value,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub publishable_key: NewPublishableKey,
    /// The blueprints whose targets select the new workspace, applied to it as it was created.
    #[serde(default)]
    pub blueprints: Vec<AppliedBlueprint>,
}

/// A blueprint applied to a workspace as it was created.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct AppliedBlueprint {
    pub id: String,
    pub name: String,
    pub version: i64,
    /// `applied`, `unchanged`, or `failed` (nothing was made: see `problems`).
    pub status: String,
    /// What was made, as `POST /blueprints/{id}/plan` lists changes.
    #[serde(default)]
    pub changes: Vec<Value>,
    #[serde(default)]
    pub problems: Vec<BlueprintProblem>,
}

/// Why a blueprint cannot be applied to a workspace.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct BlueprintProblem {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewWorkspace {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The installation's default plan when unset (installation keys only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Limits of its own over the plan's, e.g. `{"connections": 20}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Value>,
    /// Its labels (installation keys only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Secrets to set before the blueprints its labels select are applied (write-only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
}

/// Changes to a workspace; unset fields keep their value, `description: Some(None)` clears it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkspaceChanges {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub description: Option<Option<String>>,
    /// Another plan; `Some(None)`: back to the default plan (installation keys only).
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub plan: Option<Option<String>>,
    /// Replaces its own limits (installation keys only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Value>,
    /// Replaces its labels; `Some({})` removes them (installation keys only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// A workspace secret as listed: its name, never its value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct Secret {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A publishable key as listed: a hint of its value, never the value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct PublishableKey {
    pub id: String,
    pub hint: String,
    pub created_at: DateTime<Utc>,
}

/// A publishable key just made: `key` (`pk_...`) is shown only this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct NewPublishableKey {
    pub id: String,
    pub key: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_delay_ms: u64,
    pub max_delay_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct Connection {
    pub id: String,
    pub workspace_id: String,
    /// The integration: `webhook`, `slack`, `hubspot`, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub config: Value,
    pub has_credentials: bool,
    pub retry_policy: RetryPolicy,
    pub timeout_ms: u64,
    pub max_in_flight: u32,
    pub rate_limit_per_minute: Option<u32>,
    /// `active`; otherwise its deliveries wait: `paused`, `disabled` (failed for too long) or
    /// `needs_reauth`.
    pub status: String,
    /// Why it is not active: `paused`, `failing` or `needs_reauth`.
    #[serde(default)]
    pub inactive_reason: Option<String>,
    /// Since when it was paused or disabled.
    #[serde(default)]
    pub inactive_since: Option<DateTime<Utc>>,
    /// Since when every attempt to it has failed.
    #[serde(default)]
    pub failing_since: Option<DateTime<Utc>>,
    /// When its circuit breaker opens and how it closes.
    #[serde(default)]
    pub circuit_breaker: Option<BreakerSettings>,
    /// Its circuit: `closed`, `open` or `half_open`.
    #[serde(default)]
    pub circuit: Option<Circuit>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// A new webhook connection's signing secret, shown only when it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
}

/// Retry settings to change; unset fields keep their value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RetryPolicyInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_delay_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delay_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewConnection {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub config: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicyInput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_minute: Option<u32>,
}

/// Changes to a connection; unset fields keep their value. `credentials: Some(None)` removes the
/// credentials, `rate_limit_per_minute: Some(None)` the limit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectionChanges {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Option<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicyInput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_minute: Option<Option<u32>>,
}

/// A webhook connection's new signing secret; the previous one stays valid until the time given.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct RotatedSecret {
    pub signing_secret: String,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

/// One destination type of the catalog: its auth, config fields and actions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct Integration {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub description: String,
    pub auth: Value,
    pub config_fields: Vec<Value>,
    pub actions: Vec<Value>,
    /// True when a retry after a lost response can create a duplicate at the destination.
    pub retries_may_duplicate: bool,
    /// What a new connection gets unless it says otherwise.
    pub limits: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct Catalog {
    pub data: Vec<Integration>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct Rule {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    /// The event pattern: `user.created`, `user.*`, `*`.
    pub event: String,
    pub connection_id: String,
    pub action: String,
    pub action_config: Value,
    pub conditions: Option<Value>,
    pub active: bool,
    pub resource: Option<String>,
    pub resource_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewRule {
    pub name: String,
    pub event: String,
    pub connection_id: String,
    /// The connection type's default action when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_config: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
}

/// Changes to a rule; unset fields keep their value. `conditions: Some(None)` removes them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuleChanges {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_config: Option<Value>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Option<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct TestAccepted {
    pub event_id: String,
}

/// An event to send. `payload` must be a JSON object.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewEvent {
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    /// Generated per call when unset, and kept across the client's retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl NewEvent {
    pub fn new(event: impl Into<String>, payload: Value) -> Self {
        Self { event: event.into(), payload: Some(payload), ..Self::default() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct EventAccepted {
    pub id: String,
    pub event: String,
    pub workspace_id: String,
    pub received_at: DateTime<Utc>,
    /// `accepted`.
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct Event {
    pub id: String,
    pub event: String,
    pub workspace_id: String,
    pub resource: Option<String>,
    pub resource_id: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    /// `pending`, `processing`, `completed` or `failed`.
    pub status: String,
    pub test: bool,
    /// Left out for credentials that may not see payloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Given by [`crate::Client::get_event`], not by lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<Vec<DeliverySummary>>,
}

/// Filters of [`crate::Client::list_events`]; times are RFC 3339.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event: Option<String>,
    pub status: Option<String>,
    pub resource: Option<String>,
    pub resource_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct DeliverySummary {
    pub id: String,
    pub event_id: String,
    pub rule_id: String,
    pub connection_id: String,
    pub workspace_id: String,
    /// `pending`, `delivering`, `succeeded`, `retrying`, `dead`.
    pub status: String,
    pub attempt_count: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct Attempt {
    pub number: u32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
    pub request: Option<String>,
}

/// A delivery with every attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    pub rule_id: String,
    pub connection_id: String,
    pub workspace_id: String,
    pub status: String,
    pub attempt_count: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub attempts: Vec<Attempt>,
}

/// Filters of [`crate::Client::list_deliveries`].
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<String>,
    pub connection_id: Option<String>,
    pub rule_id: Option<String>,
    pub event: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct ReplayAccepted {
    pub id: String,
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct BulkReplayed {
    pub replayed: u64,
}

/// A connection's circuit breaker settings (docs/reliability.md).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct BreakerSettings {
    pub enabled: bool,
    pub failure_ratio: f64,
    pub min_requests: u32,
    pub window_seconds: u32,
    pub cooldown_seconds: u32,
    pub max_cooldown_seconds: u32,
    pub successes_to_close: u32,
}

/// Where a connection's circuit stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct Circuit {
    /// `closed`, `open` or `half_open`.
    pub state: String,
    pub since: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub retry_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct CancelAccepted {
    pub id: String,
    /// `cancelled`, or `delivering` while an attempt is in flight (it ends the delivery unless it succeeds).
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct BulkCancelled {
    /// Waiting deliveries now cancelled.
    pub cancelled: u64,
    /// Deliveries in flight, cancelled when their attempt ends unless it succeeds.
    pub in_flight: u64,
}

/// Which of a workspace's deliveries to replay (default: the dead ones) or to cancel (default:
/// every unfinished one; `status` then is `pending`, `retrying` or `delivering`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplayFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// The record a session is narrowed to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct ResourceRef {
    pub resource: String,
    pub resource_id: String,
}

/// A live session of the embedded pages, as listed (never its token).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct Session {
    pub id: String,
    pub workspace_id: String,
    /// `viewer`, `editor` or `admin`.
    pub role: String,
    pub scopes: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub external_user_id: Option<String>,
    pub resource: Option<ResourceRef>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewSession {
    pub workspace_id: String,
    /// `viewer`, `editor` or `admin`.
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_user_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_page: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_ttl_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branding: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
}

/// A session just made: its token and launch URL are shown only here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct SessionCreated {
    pub session_id: String,
    pub access_token: String,
    pub expires_at: DateTime<Utc>,
    pub launch_url: String,
    pub launch_expires_at: DateTime<Utc>,
}

/// An event type: declared (with a description, schema or example) or only seen.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct EventType {
    pub name: String,
    pub description: Option<String>,
    pub json_schema: Option<Value>,
    pub example: Option<Value>,
    pub declared: bool,
    pub received_count: i64,
    pub first_seen_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub sample: Option<Value>,
    pub sample_truncated: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EventTypeDeclaration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<Value>,
}

/// A plan: a named set of limits that workspaces are put on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct Plan {
    pub name: String,
    pub description: Option<String>,
    /// `events_per_month`, `connections`, ...; a limit left out is no limit.
    pub limits: Value,
    /// `config` (the plans file; read-only through the API) or `api`.
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct PlanList {
    pub data: Vec<Plan>,
    pub default_plan: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PlanDefinition {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub limits: Value,
}

/// A count against its limit (`None`: no limit).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct Counted {
    pub used: u64,
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct MonthEvents {
    pub used: u64,
    pub limit: Option<u64>,
    pub resets_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct Period {
    /// `2026-12` (UTC).
    pub month: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct DayCount {
    pub day: String,
    pub events: u64,
    /// Deliveries created with the day's events.
    pub deliveries: u64,
    /// Deliveries whose last attempt that day succeeded.
    pub succeeded: u64,
    /// Deliveries given up on that day.
    pub dead: u64,
}

/// The month's deliveries: created with its events, and finished by outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct MonthDeliveries {
    pub created: u64,
    pub succeeded: u64,
    pub dead: u64,
}

/// A workspace's month against the limits in force.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct WorkspaceUsage {
    pub workspace_id: String,
    pub plan: Option<String>,
    pub limits: Value,
    pub period: Period,
    pub events: MonthEvents,
    pub deliveries: MonthDeliveries,
    pub connections: Counted,
    pub rules: Counted,
    /// The last 90 days, oldest first.
    pub daily: Vec<DayCount>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct BusyWorkspace {
    pub workspace_id: String,
    pub name: String,
    pub plan: Option<String>,
    pub events: u64,
    pub limit: Option<u64>,
}

/// The installation's month.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "strict", serde(deny_unknown_fields))]
pub struct InstallationUsage {
    pub period: Period,
    pub events: u64,
    pub workspaces: Counted,
    pub busiest: Vec<BusyWorkspace>,
}

/// One field of a validation error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub field: String,
    pub message: String,
    /// Where in a submitted document (a blueprint) the problem is, 1-based.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_clears_and_absent_keeps() {
        let clear: RuleChanges = serde_json::from_value(serde_json::json!({"conditions": null})).unwrap();
        assert_eq!(serde_json::to_value(&clear).unwrap(), serde_json::json!({"conditions": null}));
        let keep: RuleChanges = serde_json::from_value(serde_json::json!({"name": "x"})).unwrap();
        assert_eq!(serde_json::to_value(&keep).unwrap(), serde_json::json!({"name": "x"}));
        let conn: ConnectionChanges =
            serde_json::from_value(serde_json::json!({"credentials": null, "rate_limit_per_minute": null})).unwrap();
        assert_eq!(serde_json::to_value(&conn).unwrap(), serde_json::json!({"credentials": null, "rate_limit_per_minute": null}));
        let ws = WorkspaceChanges { description: Some(None), ..WorkspaceChanges::default() };
        assert_eq!(serde_json::to_value(&ws).unwrap(), serde_json::json!({"description": null}));
    }
}
