//! The records Switchyard keeps. The store reads and writes these; the server turns them into API
//! responses (leaving out sealed secrets).

use crate::ids::*;
use crate::retry::RetryPolicy;
use crate::Millis;
use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// An event's rollup over its deliveries.
    EventStatus {
        Pending => "pending",
        Processing => "processing",
        Completed => "completed",
        Failed => "failed",
    }
);

string_enum!(
    /// Where one delivery stands.
    DeliveryStatus {
        Pending => "pending",
        Delivering => "delivering",
        Succeeded => "succeeded",
        Retrying => "retrying",
        Dead => "dead",
        Cancelled => "cancelled",
    }
);

string_enum!(
    /// What an embed session may do inside its workspace.
    SessionRole {
        Viewer => "viewer",
        Editor => "editor",
        Admin => "admin",
    }
);

string_enum!(
    /// Whether a connection's deliveries can go out. `needs_reauth`: the provider refused the
    /// connection's refresh token, and it waits, with its deliveries, until it is reconnected.
    ConnectionStatus {
        Active => "active",
        NeedsReauth => "needs_reauth",
    }
);

string_enum!(
    /// Where a connection's circuit breaker stands (see [`crate::circuit`]).
    CircuitState {
        Closed => "closed",
        Open => "open",
        HalfOpen => "half_open",
    }
);

string_enum!(
    /// Why a connection was taken out of delivery: `paused` by someone, or `failing` when every
    /// attempt failed for longer than the installation allows (it was disabled). Its deliveries
    /// wait, spending no attempts, until it is resumed.
    InactiveReason {
        Paused => "paused",
        Failing => "failing",
    }
);

#[derive(Debug, Clone)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub description: Option<String>,
    /// Its plan's name; `None`: the installation's default plan, if it has one.
    pub plan: Option<String>,
    /// Limits of its own laid over the plan's (`null` lifts one): see [`crate::limits`].
    pub limit_overrides: serde_json::Map<String, serde_json::Value>,
    /// `env=prod`, `tier=enterprise`: what blueprints and lists select workspaces by.
    pub labels: std::collections::BTreeMap<String, String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone)]
pub struct PublishableKey {
    pub id: PublishableKeyId,
    pub workspace_id: WorkspaceId,
    pub hint: String,
    pub created_at: Millis,
}

string_enum!(
    /// What an API key may do: everything, read everything, or act in listed workspaces.
    KeyScopeKind {
        Admin => "admin",
        ReadOnly => "read_only",
        Workspaces => "workspaces",
    }
);

/// A role in one workspace, held by a workspace-scoped API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkspaceGrant {
    #[schema(value_type = String)]
    pub workspace_id: WorkspaceId,
    pub role: SessionRole,
}

/// A management credential (`sk_...`). Only its SHA-256 digest is stored; `hint` is a non-secret
/// prefix for listings.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub name: String,
    pub hint: String,
    pub scope: KeyScopeKind,
    /// The workspaces and roles of a `workspaces` key (empty for the others).
    pub workspaces: Vec<WorkspaceGrant>,
    pub expires_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
    /// Who created it (an actor id from the audit log), when known.
    pub created_by: Option<String>,
    pub created_at: Millis,
}

impl ApiKey {
    pub fn expired(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

impl SessionRole {
    /// Viewer < editor < admin.
    pub fn rank(self) -> u8 {
        match self {
            SessionRole::Viewer => 0,
            SessionRole::Editor => 1,
            SessionRole::Admin => 2,
        }
    }
}

string_enum!(
    /// A member's role: owners also manage members; admins do everything else; viewers read.
    MemberRole {
        Owner => "owner",
        Admin => "admin",
        Viewer => "viewer",
    }
);

/// A person who signs in to the console through the operator's OpenID Connect provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: MemberId,
    /// Lower case.
    pub email: String,
    pub name: Option<String>,
    /// As of the last sign-in (the allow-list or claim decides it each time).
    pub role: MemberRole,
    /// The provider's `sub` for this person.
    pub subject: Option<String>,
    pub created_at: Millis,
    pub last_sign_in_at: Option<Millis>,
    /// Set when an owner removed them: they cannot sign in until restored.
    pub removed_at: Option<Millis>,
}

/// A signed-in console session (the browser holds its token in an HttpOnly cookie).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub id: ConsoleSessionId,
    /// Who signed in: a member, or the holder of an admin API key.
    pub member_id: Option<MemberId>,
    pub api_key_id: Option<ApiKeyId>,
    pub role: MemberRole,
    /// The member's e-mail or the key's name.
    pub label: String,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// A node of the installation, as its last heartbeat described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    /// `all`, `api` or `worker`.
    pub role: String,
    pub version: String,
    pub hostname: Option<String>,
    pub started_at: Millis,
    pub heartbeat_at: Millis,
}

/// One recorded change (or refused credential): who, what, when, from where.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: AuditId,
    pub at: Millis,
    /// The workspace the change was made in; none for installation-wide changes.
    pub workspace_id: Option<WorkspaceId>,
    /// `api_key`, `admin_key` (SWITCHYARD_ADMIN_KEY), `member`, `session`, `publishable_key`, `anonymous`.
    pub actor_kind: String,
    pub actor_id: Option<String>,
    /// A readable name: the key's name, the member's e-mail, the session's external user.
    pub actor_name: Option<String>,
    /// `connection.create`, `rule.delete`, `session.create`, `sign_in.failed`, ...
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// What changed, secrets left out.
    pub summary: serde_json::Value,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
}

/// A configured destination. Secrets are held sealed (see `crypto::SecretBox`), bound to the id.
#[derive(Debug, Clone)]
pub struct Connection {
    pub id: ConnectionId,
    pub workspace_id: WorkspaceId,
    pub kind: String,
    pub name: String,
    pub config: serde_json::Value,
    pub credentials_sealed: Option<String>,
    pub signing_secret_sealed: Option<String>,
    /// The secret replaced by the last rotation, still used to sign until `previous_secret_expires_at`.
    pub previous_secret_sealed: Option<String>,
    pub previous_secret_expires_at: Option<Millis>,
    pub retry_policy: RetryPolicy,
    pub timeout_ms: u64,
    /// The most requests to this destination in flight at once, across the whole deployment.
    pub max_in_flight: u32,
    /// Deliveries started per minute, at most, by the whole cluster; `None` for no limit.
    pub rate_limit_per_minute: Option<u32>,
    pub status: ConnectionStatus,
    /// Taken out of delivery, why and since when.
    pub inactive: Option<(InactiveReason, Millis)>,
    /// Since when every attempt to it has failed; `None` once one succeeds.
    pub failing_since: Option<Millis>,
    /// When its circuit breaker opens, and how it closes again.
    pub breaker: crate::circuit::BreakerSettings,
    /// Its circuit, as the cluster shares it.
    pub circuit: crate::circuit::Circuit,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: RuleId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub event: String,
    pub connection_id: ConnectionId,
    pub action: String,
    pub action_config: serde_json::Value,
    pub conditions: Option<serde_json::Value>,
    pub active: bool,
    /// A rule bound to one resource matches only that resource's events (a rule made by a
    /// session narrowed to it).
    pub bound_to: Option<ResourceRef>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// One record of the product's own (`resource` and `resource_id`, as events carry them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResourceRef {
    pub resource: String,
    pub resource_id: String,
}

impl ResourceRef {
    /// Whether an event with these fields is this resource's.
    pub fn covers(&self, resource: Option<&str>, resource_id: Option<&str>) -> bool {
        resource == Some(self.resource.as_str()) && resource_id == Some(self.resource_id.as_str())
    }
}

/// An accepted event. The payload stays the JSON text it arrived as.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: EventId,
    pub workspace_id: WorkspaceId,
    pub event: String,
    pub resource: Option<String>,
    pub resource_id: Option<String>,
    pub payload: String,
    pub occurred_at: Option<Millis>,
    pub received_at: Millis,
    pub status: EventStatus,
    pub test: bool,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: DeliveryId,
    pub workspace_id: WorkspaceId,
    pub event_id: EventId,
    pub rule_id: RuleId,
    pub connection_id: ConnectionId,
    pub status: DeliveryStatus,
    pub attempt_count: u32,
    /// Attempts made before the last replay; the retry budget counts from here.
    pub replay_base: u32,
    pub next_attempt_at: Option<Millis>,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub delivery_id: DeliveryId,
    pub number: u32,
    pub started_at: Millis,
    pub duration_ms: u64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
    /// What was sent (method, URL, headers and the start of the body), secrets removed.
    pub request: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: SessionId,
    pub workspace_id: WorkspaceId,
    pub role: SessionRole,
    pub scopes: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub external_user_id: Option<String>,
    /// How the session's embedded pages look; unset fields fall back to the installation's.
    pub branding: Option<Branding>,
    /// A session narrowed to one resource sees only its events and deliveries and the rules bound
    /// to it, binds the rules it makes, and uses the workspace's connections without changing them.
    pub resource: Option<ResourceRef>,
    pub expires_at: Millis,
    pub created_at: Millis,
}

/// The look of the embedded pages: an accent colour (`#rrggbb`), a logo (an https URL) and the
/// name shown beside it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accent_color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Branding {
    /// Each field of `self`, or `fallback`'s where `self` has none.
    pub fn or(&self, fallback: &Branding) -> Branding {
        Branding {
            accent_color: self.accent_color.clone().or_else(|| fallback.accent_color.clone()),
            logo_url: self.logo_url.clone().or_else(|| fallback.logo_url.clone()),
            name: self.name.clone().or_else(|| fallback.name.clone()),
        }
    }
}

/// An event name a workspace knows: learned from what it received, declared through the API, or
/// both.
#[derive(Debug, Clone)]
pub struct EventType {
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub received_count: i64,
    pub first_seen_at: Option<Millis>,
    pub last_seen_at: Option<Millis>,
    /// The payload of the latest event of this name, while it is kept in history.
    pub sample_payload: Option<String>,
    pub description: Option<String>,
    /// A JSON Schema (JSON text) describing the payload.
    pub json_schema: Option<String>,
    /// An example payload (JSON text).
    pub example: Option<String>,
    pub declared_at: Option<Millis>,
    pub updated_at: Millis,
}
