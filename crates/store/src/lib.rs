//! Persistence for Switchyard: one interface in the language of the domain, implemented for the
//! embedded SQLite default (and, behind the same traits, for PostgreSQL).
//!
//! The interface is split by concept ([`WorkspaceStore`], [`ConnectionStore`], [`RuleStore`],
//! [`EventStore`] for ingest, [`DeliveryStore`] for the queue, [`HistoryStore`] for reading what
//! happened); [`Store`] is all of them. Every method that reads tenant data
//! takes a [`Scope`], so workspace isolation is enforced here, once, and not in each handler.

mod migrate;
pub mod postgres;
mod quota;
mod rows;
mod shared;
pub mod sqlite;
pub mod testing;

use async_trait::async_trait;
use switchyard_core::ids::*;
use switchyard_core::model::*;
use switchyard_core::Millis;

pub use postgres::{PgOptions, PostgresStore};
pub use sqlite::SqliteStore;

/// Something another node did that this node should react to at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// New deliveries are due (ingest, replay).
    Due,
    /// Keys, connections or rules changed: caches must be dropped.
    ConfigChanged,
}

/// Whose data a call may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// An admin credential: every workspace.
    All,
    /// A workspace-bound credential: this workspace only.
    Workspace(WorkspaceId),
}

impl Scope {
    pub fn allows(&self, ws: &WorkspaceId) -> bool {
        match self {
            Scope::All => true,
            Scope::Workspace(own) => own == ws,
        }
    }

    fn workspace(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::Workspace(ws) => Some(ws.as_str()),
        }
    }
}

/// One page of a newest-first listing: at most `limit` items with ids below `before`.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub limit: u32,
    pub before: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("conflict: {0}")]
    Conflict(String),
    /// Creating this would take the workspace (or the installation) past one of its limits.
    #[error("the limit {limit} of {max} is reached")]
    Limit { limit: &'static str, max: u64 },
    #[error("the stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event: Option<String>,
    pub status: Option<EventStatus>,
    pub resource: Option<String>,
    pub resource_id: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub connection_id: Option<ConnectionId>,
    pub rule_id: Option<RuleId>,
    /// The event's name.
    pub event: Option<String>,
    /// Only deliveries of this resource's events.
    pub resource: Option<ResourceRef>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    /// Only the deliveries of this event.
    pub event_id: Option<EventId>,
}

/// What asking to cancel one delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was waiting; it is `cancelled` now and will not be attempted again.
    Cancelled,
    /// An attempt is in flight: it finishes, and unless it succeeds the delivery is `cancelled`
    /// instead of being retried.
    InFlight,
    /// It had already finished (`succeeded`, `dead` or `cancelled`): nothing changed.
    Finished(DeliveryStatus),
}

/// An operational notification waiting to become an event in its workspace (an outbox row,
/// written in the transaction of the change it reports).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Unique per change (`connection.failing:conn_...:1733131505000`): the event's idempotency key.
    pub id: String,
    pub workspace_id: WorkspaceId,
    /// `connection.failing`, `connection.recovered`, `connection.disabled`,
    /// `connection.needs_reauth` or `delivery.exhausted`.
    pub kind: String,
    pub payload: serde_json::Value,
    pub created_at: Millis,
}

/// How long an emitted notification is remembered.
pub const NOTIFICATIONS_KEPT_MS: i64 = 40 * 86_400_000;

/// What a node saw of a connection's attempts, for its circuit (see `switchyard_core::circuit`).
#[derive(Debug, Clone, PartialEq)]
pub enum CircuitReport {
    /// Too many recent attempts failed: open a closed circuit for `cooldown_ms`.
    Tripped { reason: String, cooldown_ms: i64 },
    /// A probe succeeded: `needed` in a row close the half-open circuit.
    ProbeSucceeded { needed: u32 },
    /// A probe failed: open the circuit again, for twice the last cooldown (within the bounds).
    ProbeFailed { reason: String, base_ms: i64, max_ms: i64 },
}

/// What a cancel by filter did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CancelCount {
    /// Waiting deliveries now `cancelled`.
    pub cancelled: u64,
    /// Deliveries with an attempt in flight, to be `cancelled` when it ends (unless it succeeds).
    pub in_flight: u64,
}

/// Most rules a workspace may hold: in all, and with one event pattern.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleCaps {
    pub per_workspace: Option<u32>,
    pub per_event_type: Option<u32>,
}

/// An event to store together with the deliveries its matching rules produced.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event: Event,
    pub idempotency_key: Option<String>,
    pub deliveries: Vec<NewDelivery>,
    /// Most events its workspace may accept in the calendar month (UTC) of the batch that stores
    /// it: past it, the event is refused ([`IngestOutcome::OverQuota`]) and nothing of it is
    /// stored. `None` (a rule's test event) is counted but never refused.
    pub monthly_cap: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: DeliveryId,
    pub rule_id: RuleId,
    pub connection_id: ConnectionId,
    /// Stored already leased (`delivering`) to the dispatcher that will run it, rather than
    /// `pending` for a claim to take: a node alone on its store hands fresh work to its
    /// dispatcher without a claim transaction. `None`: pending.
    pub lease: Option<IngestLease>,
}

/// A delivery's lease taken at ingest (see [`NewDelivery::lease`]): as a claim would write it.
#[derive(Debug, Clone)]
pub struct IngestLease {
    pub owner: std::sync::Arc<str>,
    pub expires_at: Millis,
}

/// What happened to one event of an ingest batch.
#[derive(Debug, Clone)]
pub enum IngestOutcome {
    /// Stored, with its deliveries.
    Created,
    /// The idempotency key was seen within its window: nothing stored; this is the first event.
    Duplicate { id: EventId, event: String, received_at: Millis },
    /// The workspace's monthly cap is reached: nothing stored.
    OverQuota,
}

/// A delivery leased to one dispatcher, with the event it carries (shared by the event's
/// deliveries claimed together, so a fan-out does not copy the payload).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery: Delivery,
    pub event: std::sync::Arc<Event>,
    /// When the attempt may start: now, or later for a connection with a `rate_limit_per_minute`,
    /// whose starts the claim spaces out across the whole cluster (never beyond the claim's
    /// `pace_horizon_ms`).
    pub start_at: Millis,
    /// For a rate-limited connection: when the start after this claim's falls due, so that the
    /// claiming node can come back for more then.
    pub next_start_at: Option<Millis>,
    /// Its connection's circuit was not closed: this attempt is the one probe the half-open
    /// circuit allows, and its outcome closes or reopens it.
    pub probe: bool,
}

/// The result of one attempt, as the dispatcher records it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempt: Attempt,
    pub next: NextStep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Succeeded,
    RetryAt(Millis),
    Dead,
}

impl NextStep {
    /// The status a record moves its delivery to, and when it is due again.
    pub fn moves_to(self) -> (DeliveryStatus, Option<Millis>) {
        match self {
            NextStep::Succeeded => (DeliveryStatus::Succeeded, None),
            NextStep::RetryAt(at) => (DeliveryStatus::Retrying, Some(at)),
            NextStep::Dead => (DeliveryStatus::Dead, None),
        }
    }
}

/// Why a connection could not be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
    /// Active rules still route to it.
    InUse(Vec<RuleId>),
}

#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<()>;
    /// Cheap liveness query for readiness checks.
    async fn ping(&self) -> Result<()>;
    /// A counter bumped by every change to keys, connections or rules; caches compare it to stay fresh.
    async fn config_version(&self) -> Result<i64>;
    /// A stream of cross-node signals, where the database offers one (PostgreSQL LISTEN/NOTIFY).
    /// Polling stays the backstop: a signal may be lost while a connection is down.
    async fn listen(&self) -> Result<Option<tokio::sync::mpsc::Receiver<Signal>>> {
        Ok(None)
    }
    async fn get_meta(&self, key: &str) -> Result<Option<String>>;
    async fn set_meta(&self, key: &str, value: &str) -> Result<()>;
    /// Makes storage forget content that was replaced or deleted (old sealed values after a
    /// master-key rotation) where the database allows it.
    async fn scrub_freed_space(&self) -> Result<()>;
}

/// What revoking an API key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    Revoked,
    NotFound,
    /// Refused: it is the last usable admin key, and nothing else can administer the installation.
    LastAdmin,
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub workspace_id: Option<WorkspaceId>,
    pub actor_id: Option<String>,
    /// An exact action (`connection.create`), or every action of a kind (`connection.*`).
    pub action: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
}

/// The operator side: API keys and the audit log.
#[async_trait]
pub trait OperatorStore: Send + Sync {
    /// Admin keys that have not expired.
    async fn count_admin_keys(&self, now: Millis) -> Result<u64>;
    async fn create_api_key(&self, key: &ApiKey, key_hash: &str) -> Result<()>;
    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKey>>;
    async fn get_api_key(&self, id: &ApiKeyId) -> Result<Option<ApiKey>>;
    /// Newest first.
    async fn list_api_keys(&self, page: &Page) -> Result<Vec<ApiKey>>;
    /// Deletes a key, unless it is the last admin key that has not expired and `other_admin` (a
    /// credential outside this table that can administer) is false.
    async fn delete_api_key(&self, id: &ApiKeyId, now: Millis, other_admin: bool) -> Result<RevokeOutcome>;
    /// Records when a key was last used (never moves the time back).
    async fn touch_api_key(&self, id: &ApiKeyId, at: Millis) -> Result<()>;
    async fn append_audit(&self, entry: &AuditEntry) -> Result<()>;
    /// Newest first.
    async fn list_audit(&self, filter: &AuditFilter, page: &Page) -> Result<Vec<AuditEntry>>;
    /// Deletes up to `limit` entries recorded before `before`; returns how many.
    async fn prune_audit(&self, before: Millis, limit: u32) -> Result<u64>;
}

/// Who signed in through the provider, and the role the operator's settings give them.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// Lower case.
    pub email: String,
    pub name: Option<String>,
    pub subject: Option<String>,
    pub role: MemberRole,
}

/// Which console sessions to end.
#[derive(Debug, Clone)]
pub enum EndSessions {
    One(ConsoleSessionId),
    /// Every session of a member ("sign out everywhere").
    Member(MemberId),
    /// Every session signed in with an API key.
    ApiKey(ApiKeyId),
    /// Every session signed in with the configured `SWITCHYARD_ADMIN_KEY` (neither member nor stored key).
    ConfiguredKey,
    /// Sessions that expired before this time (housekeeping).
    ExpiredBefore(Millis),
}

/// Where the delivery queue stands; counts stop at the cap asked for.
#[derive(Debug, Clone, Default)]
pub struct QueueState {
    pub by_status: Vec<(&'static str, u64)>,
    /// When the delivery that has waited longest was due.
    pub oldest_due_at: Option<Millis>,
}

/// The console: members, their sessions, sign-ins in progress, and the installation's state.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Records a sign-in: creates the member or updates them. None when they were removed.
    async fn member_signed_in(&self, member: &SignedIn, now: Millis) -> Result<Option<Member>>;
    async fn list_members(&self, page: &Page) -> Result<Vec<Member>>;
    async fn get_member(&self, id: &MemberId) -> Result<Option<Member>>;
    /// Removes a member (ending their sessions) or, with `None`, restores them.
    async fn set_member_removed(&self, id: &MemberId, removed_at: Option<Millis>) -> Result<bool>;
    async fn create_console_session(&self, session: &ConsoleSession, token_hash: &str) -> Result<()>;
    /// A live session by its cookie's digest.
    async fn find_console_session(&self, token_hash: &str, now: Millis) -> Result<Option<ConsoleSession>>;
    async fn list_console_sessions(&self, now: Millis, page: &Page) -> Result<Vec<ConsoleSession>>;
    async fn end_console_sessions(&self, end: &EndSessions) -> Result<u64>;
    async fn create_sign_in_state(&self, state_hash: &str, nonce: &str, verifier_sealed: &str, id: &str, expires_at: Millis) -> Result<()>;
    /// Takes a sign-in state once: (nonce, sealed verifier, id), if it has not expired.
    async fn take_sign_in_state(&self, state_hash: &str, now: Millis) -> Result<Option<(String, String, String)>>;
    async fn heartbeat(&self, node: &NodeInfo) -> Result<()>;
    /// Nodes heard from since `since` (older ones are forgotten).
    async fn list_nodes(&self, since: Millis) -> Result<Vec<NodeInfo>>;
    async fn queue_state(&self, cap: u64) -> Result<QueueState>;
}

/// The tables whose rows belong to one workspace, for finding which (authorisation by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    Connection,
    Rule,
    Event,
    Delivery,
    Session,
}

impl Owned {
    fn table(self) -> &'static str {
        match self {
            Owned::Connection => "connections",
            Owned::Rule => "rules",
            Owned::Event => "events",
            Owned::Delivery => "deliveries",
            Owned::Session => "sessions",
        }
    }
}

#[async_trait]
pub trait WorkspaceStore: Send + Sync {
    /// Creates a workspace with its first key, unless the installation already holds `max`
    /// workspaces ([`StoreError::Limit`]).
    async fn create_workspace(&self, ws: &Workspace, key: &PublishableKey, key_hash: &str, max: Option<u32>) -> Result<()>;
    async fn list_workspaces(&self, scope: &Scope, page: &Page) -> Result<Vec<Workspace>>;
    /// The workspaces holding every label of `selector` (all of them when it is empty), newest first.
    async fn labelled_workspaces(&self, selector: &std::collections::BTreeMap<String, String>, page: &Page) -> Result<Vec<Workspace>>;
    async fn get_workspace(&self, scope: &Scope, id: &WorkspaceId) -> Result<Option<Workspace>>;
    /// Writes a workspace read with `updated_at == read_at`; false (nothing written) when it
    /// changed since, so that a concurrent change is never undone: read it again.
    async fn update_workspace(&self, ws: &Workspace, read_at: Millis) -> Result<bool>;
    /// Deletes the workspace and everything in it. False when it did not exist.
    async fn delete_workspace(&self, scope: &Scope, id: &WorkspaceId) -> Result<bool>;
    async fn create_publishable_key(&self, key: &PublishableKey, key_hash: &str) -> Result<()>;
    async fn list_publishable_keys(&self, ws: &WorkspaceId, page: &Page) -> Result<Vec<PublishableKey>>;
    async fn delete_publishable_key(&self, ws: &WorkspaceId, id: &PublishableKeyId) -> Result<bool>;
    async fn find_publishable_key(&self, key_hash: &str) -> Result<Option<WorkspaceId>>;
    /// Stores a session and, when given, its single-use launch token.
    async fn create_session(&self, session: &Session, token_hash: &str, launch: Option<&NewLaunch>) -> Result<()>;
    /// Uses a launch token: once, before it expires, while its session lives.
    async fn take_launch(&self, token_hash: &str, now: Millis) -> Result<LaunchTaken>;
    async fn find_session(&self, token_hash: &str) -> Result<Option<Session>>;
    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>>;
    /// Replaces the session's token and expiry (refresh).
    async fn refresh_session(&self, id: &SessionId, token_hash: &str, expires_at: Millis, now: Millis) -> Result<bool>;
    async fn delete_session(&self, id: &SessionId) -> Result<bool>;
    /// The workspace a row belongs to (rules: deleted ones too).
    async fn workspace_of(&self, owned: Owned, id: &str) -> Result<Option<WorkspaceId>>;
    /// A workspace's live sessions, newest first.
    async fn list_sessions(&self, ws: &WorkspaceId, now: Millis, page: &Page) -> Result<Vec<Session>>;
}

/// A session's launch token, stored hashed.
#[derive(Debug, Clone)]
pub struct NewLaunch {
    pub token_hash: String,
    /// The page the launch opens: `dashboard`, `events/evt_...`, ...
    pub page: String,
    pub expires_at: Millis,
}

/// What using a launch token found.
#[derive(Debug, Clone)]
pub enum LaunchTaken {
    /// First use in time: the pages open on `page`.
    Opened { session: Session, page: String },
    /// Used before.
    Used { session: Session },
    /// The launch token, or its session, expired first.
    Expired { session: Session },
    /// No such token.
    Unknown,
}

/// What ingestion taught about one event name in a short span (see [`EventTypeStore::learn_event_types`]).
#[derive(Debug, Clone)]
pub struct LearnedEventType {
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub count: i64,
    pub first_seen_at: Millis,
    pub last_seen_at: Millis,
    /// The latest event of this name in the span.
    pub sample_event_id: EventId,
}

/// A declaration of an event type through the API.
#[derive(Debug, Clone)]
pub struct EventTypeDeclaration {
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub description: Option<String>,
    pub json_schema: Option<String>,
    pub example: Option<String>,
}

/// Learning stops adding names to a workspace that has this many (names already known keep counting).
pub const MAX_LEARNED_EVENT_TYPES: i64 = 1000;
/// Declarations are refused past this many event types in a workspace.
pub const MAX_EVENT_TYPES: i64 = 2000;

#[async_trait]
pub trait EventTypeStore: Send + Sync {
    /// Adds what ingestion saw to the workspaces' event types, in one transaction.
    async fn learn_event_types(&self, learned: &[LearnedEventType], now: Millis) -> Result<()>;
    /// A workspace's event types by name, from the first after `after`.
    async fn list_event_types(&self, ws: &WorkspaceId, after: Option<&str>, limit: u32) -> Result<Vec<EventType>>;
    async fn get_event_type(&self, ws: &WorkspaceId, name: &str) -> Result<Option<EventType>>;
    /// Declares (or re-declares) an event type. `Conflict` past [`MAX_EVENT_TYPES`].
    async fn declare_event_type(&self, declaration: &EventTypeDeclaration, now: Millis) -> Result<EventType>;
    /// Removes a declaration; a type never received disappears. False when there was none.
    async fn undeclare_event_type(&self, ws: &WorkspaceId, name: &str, now: Millis) -> Result<bool>;
}

/// Counts for a workspace's dashboard, at a bounded cost: totals stop at [`COUNT_CAP`], and where
/// deliveries stand is read from the latest [`STATUS_SAMPLE`] of the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// Events received in the window, up to [`COUNT_CAP`].
    pub events: u64,
    /// Deliveries created in the window, up to [`COUNT_CAP`].
    pub deliveries_total: u64,
    /// The latest deliveries of the window (at most [`STATUS_SAMPLE`]), by connection and where
    /// they stand now.
    pub deliveries: Vec<(ConnectionId, DeliveryStatus, u64)>,
}

/// Dashboard totals count up to this many (and show "100,000+").
pub const COUNT_CAP: u64 = 100_000;
/// Dashboard statuses and failure rates are those of at most this many of the latest deliveries.
pub const STATUS_SAMPLE: u64 = 10_000;

#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Creates a connection, unless its workspace already holds `max` ([`StoreError::Limit`]).
    async fn create_connection(&self, conn: &Connection, max: Option<u32>) -> Result<()>;
    async fn get_connection(&self, scope: &Scope, id: &ConnectionId) -> Result<Option<Connection>>;
    async fn list_connections(&self, ws: &WorkspaceId, page: &Page) -> Result<Vec<Connection>>;
    /// Writes every mutable field of `conn` (the caller read, changed and validated it).
    async fn update_connection(&self, conn: &Connection) -> Result<()>;
    /// Deletes a connection unless active rules use it; with `force`, its rules go too and its
    /// waiting deliveries become dead.
    async fn delete_connection(&self, scope: &Scope, id: &ConnectionId, force: bool) -> Result<DeleteOutcome>;
}

#[async_trait]
pub trait RuleStore: Send + Sync {
    /// Creates a rule, unless its workspace already holds as many as `caps` allow, in all or with
    /// its event pattern ([`StoreError::Limit`]).
    async fn create_rule(&self, rule: &Rule, caps: RuleCaps) -> Result<()>;
    /// A live rule (not deleted).
    async fn get_rule(&self, scope: &Scope, id: &RuleId) -> Result<Option<Rule>>;
    /// A rule even if deleted: deliveries accepted before a deletion still carry out its action.
    async fn get_rule_for_delivery(&self, id: &RuleId) -> Result<Option<Rule>>;
    /// A workspace's rules, newest first; with `bound`, only the rules bound to that resource.
    async fn list_rules(&self, ws: &WorkspaceId, page: &Page, bound: Option<&ResourceRef>) -> Result<Vec<Rule>>;
    async fn active_rules(&self, ws: &WorkspaceId) -> Result<Vec<Rule>>;
    async fn update_rule(&self, rule: &Rule) -> Result<()>;
    async fn delete_rule(&self, scope: &Scope, id: &RuleId) -> Result<bool>;
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores a batch of events and their deliveries in one transaction (group commit).
    /// Idempotency keys are checked and claimed inside it.
    async fn ingest(&self, batch: &[NewEvent], now: Millis, idempotency_window_ms: i64) -> Result<Vec<IngestOutcome>>;
    /// Deletes idempotency keys whose window has passed.
    async fn expire_idempotency_keys(&self, now: Millis) -> Result<u64>;
    /// Deletes up to `limit` events received before `before` whose deliveries have all finished
    /// (succeeded or dead), with their deliveries and attempts; with `ws`, only that workspace's.
    /// Returns how many events went.
    async fn prune_history(&self, before: Millis, limit: u32, ws: Option<&WorkspaceId>) -> Result<u64>;
}

/// What one claim may take per workspace, so that no workspace holds more than its share of a
/// node's delivery slots.
#[derive(Debug, Clone)]
pub struct NodeShare {
    /// Most deliveries of a workspace not listed in `room`.
    pub per_workspace: u32,
    /// Workspaces that already hold slots, with the room they have left; none of those with 0 is
    /// claimed (their connections are not even looked at).
    pub room: Vec<(WorkspaceId, u32)>,
    /// How far ahead a rate-limited connection's starts may be handed out: a connection whose next
    /// start is further away is not claimed from.
    pub pace_horizon_ms: i64,
    /// Deliveries this node leased whose destination has answered but whose record may not have
    /// committed yet, with their connections: while still leased, they no longer hold one of the
    /// connection's in-flight slots (nothing is in flight to the destination for them). Ids, not
    /// counts: the claim subtracts only those still leased, so a record committing meanwhile is
    /// not subtracted twice. At most `max_in_flight` of a connection's answers free slots, so it
    /// has at most twice its cap leased: what a crash can make repeat.
    pub answered: Vec<(ConnectionId, DeliveryId)>,
    /// Connections whose work this node may lease ahead of their free slots, each with a multiple
    /// of its cap: with `n`, up to `max_in_flight * (1 + n)` may be leased (not for a connection
    /// whose circuit is not closed, nor a rate-limited one), and those leases last `1 + n` times
    /// the connection's timeout plus the margin, so that the node can run them one after another
    /// in the slots it holds without a claim in between. Honoured only by a store with one node
    /// ([`DeliveryStore::single_node`]): on a shared queue, work leased ahead by one node would
    /// wait there while another node could run it.
    pub ahead: Vec<(ConnectionId, u32)>,
}

impl Default for NodeShare {
    fn default() -> Self {
        Self { per_workspace: u32::MAX, room: Vec::new(), pace_horizon_ms: 2_000, answered: Vec::new(), ahead: Vec::new() }
    }
}

/// When a claimed delivery may start, and (paced) its connection's next free start after the claim.
pub(crate) type Start = (Millis, Option<Millis>);

/// Spaces the starts of each rate-limited connection's claimed deliveries: `paces` holds each
/// connection's first free start and its rate. Returns, for each delivery in order, when it may
/// start (`now` unless its connection is paced) and, if paced, its connection's next free start
/// after this claim; and each paced connection's next free start, to be stored with the claim.
/// (The embedded store's claim uses this; PostgreSQL's computes the same in its claim statement.)
pub(crate) fn pace(
    deliveries: &[Delivery],
    paces: &std::collections::HashMap<String, (f64, u32)>,
    now: Millis,
) -> (Vec<Start>, Vec<(String, f64)>) {
    let mut starts = vec![(now, None); deliveries.len()];
    let mut order: Vec<usize> = (0..deliveries.len()).filter(|i| paces.contains_key(deliveries[*i].connection_id.as_str())).collect();
    // Oldest due first per connection.
    order.sort_by(|a, b| {
        let (a, b) = (&deliveries[*a], &deliveries[*b]);
        (a.connection_id.as_str(), a.next_attempt_at, a.id.as_str()).cmp(&(b.connection_id.as_str(), b.next_attempt_at, b.id.as_str()))
    });
    let mut next: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    for i in &order {
        let connection = deliveries[*i].connection_id.as_str();
        let Some((base, per_minute)) = paces.get(connection) else { continue };
        let at = next.entry(connection.to_owned()).or_insert(base.max(now as f64));
        starts[*i].0 = at.ceil() as Millis;
        *at += 60_000.0 / f64::from((*per_minute).max(1));
    }
    for i in order {
        starts[i].1 = next.get(deliveries[i].connection_id.as_str()).map(|at| at.ceil() as Millis);
    }
    (starts, next.into_iter().collect())
}

/// The claims of `deliveries`, in order: each with its event (from `events`, the claim's events
/// read by id), its start from [`pace`], and whether it is the one probe of a connection whose
/// circuit was not closed (`probed`).
pub(crate) fn assemble_claims(deliveries: Vec<Delivery>, events: Vec<Event>, starts: Vec<Start>, probed: &[&str]) -> Result<Vec<Claimed>> {
    let events: std::collections::HashMap<String, std::sync::Arc<Event>> =
        events.into_iter().map(|e| (e.id.as_str().to_owned(), std::sync::Arc::new(e))).collect();
    deliveries
        .into_iter()
        .zip(starts)
        .map(|(delivery, (start_at, next_start_at))| match events.get(delivery.event_id.as_str()) {
            Some(event) => Ok(Claimed {
                event: event.clone(),
                probe: probed.contains(&delivery.connection_id.as_str()),
                delivery,
                start_at,
                next_start_at,
            }),
            None => Err(StoreError::Corrupt(format!("delivery {} has no event", delivery.id))),
        })
        .collect()
}

impl NodeShare {
    /// The workspaces with no room left.
    pub fn full(&self) -> Vec<&str> {
        self.room.iter().filter(|(_, r)| *r == 0).map(|(w, _)| w.as_str()).collect()
    }
}

#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Leases up to `limit` due deliveries to `owner`: fair across workspaces and connections, never
    /// more in flight per connection than its `max_in_flight`. Each lease lasts the connection's
    /// timeout plus `lease_margin_ms`.
    async fn claim_due(&self, owner: &str, now: Millis, limit: u32, lease_margin_ms: i64) -> Result<Vec<Claimed>> {
        self.claim_due_shared(owner, now, limit, lease_margin_ms, &NodeShare::default()).await
    }
    /// [`Self::claim_due`] within the claiming node's share for each workspace: at most its
    /// `share.room`, or `share.per_workspace` for a workspace not listed.
    async fn claim_due_shared(&self, owner: &str, now: Millis, limit: u32, lease_margin_ms: i64, share: &NodeShare)
        -> Result<Vec<Claimed>>;
    /// Records finished attempts and moves each delivery on (one transaction for the batch).
    async fn record_attempts(&self, owner: &str, records: &[AttemptRecord], now: Millis) -> Result<()>;
    /// Whether one node alone runs this store's queue (the embedded store), so that it may lease
    /// work ahead of its free slots ([`NodeShare::ahead`]).
    fn single_node(&self) -> bool {
        false
    }
}

/// The queue's operations besides claiming and recording (`crate::shared::queue`: one
/// implementation for both stores).
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Holds a connection until `until` (a destination answered "too many requests"): no node
    /// claims its deliveries before then.
    async fn hold_connection(&self, id: &ConnectionId, until: Millis) -> Result<()>;
    /// Until when a connection is held (0: never held).
    async fn connection_held_until(&self, id: &ConnectionId) -> Result<Millis>;
    /// Hands leased deliveries back without an attempt (shutdown, deferral), due at `at`.
    async fn release(&self, owner: &str, ids: &[DeliveryId], at: Millis) -> Result<()>;
    /// Returns deliveries whose lease expired (their node died) to the due queue.
    async fn recover_expired_leases(&self, now: Millis) -> Result<u64>;
    /// Returns every delivery leased by an owner other than `owner` (embedded single node: after a crash).
    async fn recover_foreign_leases(&self, owner: &str, now: Millis) -> Result<u64>;
    /// How many deliveries wait for an attempt (pending or retrying), due or not.
    async fn waiting_count(&self) -> Result<u64>;
    /// Sends a delivery back to the due queue, due now, with a fresh retry budget.
    /// None when not found; Some(false) while an attempt is in flight.
    async fn replay_delivery(&self, scope: &Scope, id: &DeliveryId, now: Millis) -> Result<Option<bool>>;
    /// Replays every finished delivery matching the filter; returns how many.
    async fn replay_matching(&self, ws: &WorkspaceId, filter: &DeliveryFilter, now: Millis) -> Result<u64>;
    /// Cancels one delivery: never attempted again (a replay still sends it on purpose). None
    /// when not found.
    async fn cancel_delivery(&self, scope: &Scope, id: &DeliveryId, now: Millis) -> Result<Option<CancelOutcome>>;
    /// Cancels every unfinished delivery of the workspace matching the filter (in batches, like a
    /// replay): waiting ones at once, those in flight when their attempt ends.
    async fn cancel_matching(&self, ws: &WorkspaceId, filter: &DeliveryFilter, now: Millis) -> Result<CancelCount>;
    /// Takes a connection out of delivery for `reason` (its deliveries wait, spending no
    /// attempts); false when not found.
    async fn pause_connection(&self, scope: &Scope, id: &ConnectionId, reason: InactiveReason, now: Millis) -> Result<bool>;
    /// Puts a paused or disabled connection back into delivery: its waiting deliveries go out in
    /// due order at its pace, and its failing clock starts again; an open circuit sends its first
    /// probe at once instead of waiting out its cooldown. False when not found.
    async fn resume_connection(&self, scope: &Scope, id: &ConnectionId, now: Millis) -> Result<bool>;
    /// Moves a connection's circuit on after what a node saw; the new state when it changed (a
    /// report that no longer applies, because another node moved the circuit first, changes nothing).
    async fn report_circuit(&self, id: &ConnectionId, report: &CircuitReport, now: Millis) -> Result<Option<CircuitState>>;
    /// The oldest notifications waiting to become events.
    async fn take_notifications(&self, limit: u32) -> Result<Vec<Notification>>;
    /// Marks notifications that became events (kept [`NOTIFICATIONS_KEPT_MS`], so that a monthly
    /// one is not written again within its month).
    async fn notifications_emitted(&self, ids: &[String], now: Millis) -> Result<()>;
    /// Disables (`failing`) every connection in delivery whose attempts have all failed since
    /// before `before`; returns those it disabled.
    async fn disable_failing_connections(&self, before: Millis, now: Millis) -> Result<Vec<(ConnectionId, WorkspaceId)>>;
}

/// The history people inspect: events, their deliveries and every attempt.
#[async_trait]
pub trait HistoryStore: Send + Sync {
    async fn get_event(&self, scope: &Scope, id: &EventId) -> Result<Option<Event>>;
    async fn list_events(&self, ws: &WorkspaceId, filter: &EventFilter, page: &Page) -> Result<Vec<Event>>;
    async fn event_deliveries(&self, event: &EventId) -> Result<Vec<Delivery>>;
    async fn get_delivery(&self, scope: &Scope, id: &DeliveryId) -> Result<Option<Delivery>>;
    async fn delivery_attempts(&self, id: &DeliveryId) -> Result<Vec<Attempt>>;
    async fn list_deliveries(&self, ws: &WorkspaceId, filter: &DeliveryFilter, page: &Page) -> Result<Vec<Delivery>>;
    /// Events received, and deliveries created, since `since` (through the id indexes: ids are
    /// ULIDs); with `resource`, only that resource's.
    async fn window_counts(&self, ws: &WorkspaceId, since: Millis, resource: Option<&ResourceRef>) -> Result<WindowCounts>;
}

/// The whole store, as the server holds it.
/// A connect flow in progress: created when the user is sent to the provider, taken (once) when
/// the provider sends them back.
#[derive(Debug, Clone)]
pub struct OAuthState {
    pub id: String,
    /// SHA-256 of the `state` parameter; the parameter itself is never stored.
    pub state_hash: String,
    pub workspace_id: WorkspaceId,
    pub provider: String,
    /// Set when the flow reconnects an existing connection.
    pub connection_id: Option<ConnectionId>,
    /// What the flow was started with (name, config, redirect_to), as JSON.
    pub request: serde_json::Value,
    pub code_verifier_sealed: String,
    pub expires_at: Millis,
    pub created_at: Millis,
}

/// One value sealed under a master key, wherever it lives. Its row key is also the context the
/// value is bound to.
#[derive(Debug, Clone)]
pub struct SealedValue {
    pub table: &'static str,
    pub key_column: &'static str,
    pub column: &'static str,
    pub key: String,
    pub sealed: String,
}

/// Every column that holds sealed values: (table, key column, sealed column, extra condition).
/// A delivery whose lease was taken back from a node that stopped this many times in a row (a
/// node that crashed during its attempt, every time) is set aside as dead rather than tried again:
/// whatever ends the process must not end it again after every restart.
pub const MAX_LEASE_RECOVERIES: i64 = 3;

/// Why such a delivery is dead.
/// (No quote in it: it is written into SQL as a literal.)
pub const SET_ASIDE_ERROR: &str =
    "set aside: 3 attempts in a row ended with the node making them (a crash during the attempt?); replay it once the cause is fixed";

/// The `SET` clause that takes a lease back from a stopped node, at `now` (a bound parameter):
/// back to the queue, or dead once [`MAX_LEASE_RECOVERIES`] is reached, or `cancelled` if a
/// cancel came while it was leased. Expressions read the row as it was.
pub(crate) fn recover_lease_set(now: &str) -> String {
    let limit = MAX_LEASE_RECOVERIES;
    format!(
        "lease_recoveries = lease_recoveries + 1, \
         status = CASE WHEN cancelled_at IS NOT NULL THEN 'cancelled' WHEN lease_recoveries + 1 >= {limit} THEN 'dead' \
             WHEN attempt_count > 0 THEN 'retrying' ELSE 'pending' END, \
         last_error = CASE WHEN cancelled_at IS NULL AND lease_recoveries + 1 >= {limit} THEN '{SET_ASIDE_ERROR}' ELSE last_error END, \
         next_attempt_at = CASE WHEN lease_recoveries + 1 >= {limit} THEN NULL ELSE {now} END, \
         lease_owner = NULL, lease_expires_at = NULL, updated_at = {now}"
    )
}

/// Deliveries a bulk replay moves per transaction: a replay of any size never holds the writer
/// for long.
pub const REPLAY_BATCH: i64 = 1_000;

pub const SEALED_COLUMNS: &[(&str, &str, &str, &str)] = &[
    ("connections", "id", "credentials_sealed", "TRUE"),
    ("connections", "id", "signing_secret_sealed", "TRUE"),
    ("connections", "id", "previous_secret_sealed", "TRUE"),
    ("oauth_states", "id", "code_verifier_sealed", "TRUE"),
    ("meta", "key", "value", "key = 'master_key_check'"),
    ("workspace_secrets", "id", "value_sealed", "TRUE"),
];

/// A workspace secret as listed: its name, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub name: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// The id a workspace's secret is stored and sealed under.
pub fn secret_id(ws: &WorkspaceId, name: &str) -> String {
    format!("{ws}/{name}")
}

/// Credentials: sealed values (master-key rotation), token refresh, OAuth flows in progress.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Sets a workspace's secret (sealed under [`secret_id`]); true when it is new. A new one
    /// past `max` secrets in the workspace is refused with [`StoreError::Limit`].
    async fn put_secret(&self, ws: &WorkspaceId, name: &str, sealed: &str, now: Millis, max: Option<u32>) -> Result<bool>;
    async fn list_secrets(&self, ws: &WorkspaceId) -> Result<Vec<SecretInfo>>;
    /// The sealed value of a workspace's secret.
    async fn get_secret(&self, ws: &WorkspaceId, name: &str) -> Result<Option<String>>;
    async fn delete_secret(&self, ws: &WorkspaceId, name: &str) -> Result<bool>;
    /// Up to `limit` sealed values not sealed under the key `key_id`.
    async fn sealed_values(&self, key_id: &str, limit: u32) -> Result<Vec<SealedValue>>;
    /// Replaces a sealed value if it still holds what was read (compare and swap): false when it
    /// changed meanwhile (it will be read again).
    async fn reseal(&self, value: &SealedValue, resealed: &str) -> Result<bool>;
    /// Takes a connection's refresh lock until `until`; false while another holder has it.
    async fn lock_refresh(&self, id: &ConnectionId, owner: &str, now: Millis, until: Millis) -> Result<bool>;
    async fn unlock_refresh(&self, id: &ConnectionId, owner: &str) -> Result<()>;
    /// Stores a connection's new credentials (and config, when given), sets its status and
    /// releases the refresh lock.
    async fn store_credentials(
        &self,
        id: &ConnectionId,
        sealed: &str,
        config: Option<&serde_json::Value>,
        status: ConnectionStatus,
    ) -> Result<()>;
    async fn set_connection_status(&self, id: &ConnectionId, status: ConnectionStatus) -> Result<()>;
    async fn create_oauth_state(&self, state: &OAuthState) -> Result<()>;
    /// Removes and returns the flow with this state, if it has not expired: a state works once.
    async fn take_oauth_state(&self, state_hash: &str, now: Millis) -> Result<Option<OAuthState>>;
    async fn purge_oauth_states(&self, now: Millis) -> Result<u64>;
}

/// One workspace's use of one day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayUsage {
    /// `2026-12-01` (UTC).
    pub day: String,
    pub events: u64,
    /// Deliveries created with the day's events.
    pub deliveries: u64,
    /// Deliveries whose last attempt, that day, succeeded.
    pub succeeded: u64,
    /// Deliveries given up on that day.
    pub dead: u64,
}

/// One workspace's use of the month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceUsage {
    pub workspace_id: WorkspaceId,
    pub events: u64,
}

/// Plans, and the usage they limit.
#[async_trait]
pub trait LimitStore: Send + Sync {
    async fn list_plans(&self) -> Result<Vec<switchyard_core::limits::Plan>>;
    async fn get_plan(&self, name: &str) -> Result<Option<switchyard_core::limits::Plan>>;
    /// Creates or replaces a plan (keeping its `created_at`).
    async fn put_plan(&self, plan: &switchyard_core::limits::Plan) -> Result<()>;
    /// Deletes a plan no workspace is on: `Err(Conflict)` names how many are.
    async fn delete_plan(&self, name: &str) -> Result<bool>;
    /// Makes the stored configuration plans exactly `plans`: upserts them, and hands plans that
    /// left the file over to the API (they are kept: workspaces may be on them).
    async fn sync_config_plans(&self, plans: &[switchyard_core::limits::Plan]) -> Result<()>;
    /// Events a workspace accepted in a month (`2026-12`).
    async fn month_events(&self, ws: &WorkspaceId, month: &str) -> Result<u64>;
    /// A workspace's usage per day since `from_day` (`2026-09-03`), oldest first; days with none are left out.
    async fn daily_usage(&self, ws: &WorkspaceId, from_day: &str) -> Result<Vec<DayUsage>>;
    /// The month's events of the busiest workspaces, most first, and the total.
    async fn installation_month(&self, month: &str, top: u32) -> Result<(u64, Vec<WorkspaceUsage>)>;
    async fn count_connections(&self, ws: &WorkspaceId) -> Result<u64>;
    /// Live rules of a workspace; with `event`, only those with that pattern.
    async fn count_rules(&self, ws: &WorkspaceId, event: Option<&str>) -> Result<u64>;
    async fn count_workspaces(&self) -> Result<u64>;
}

/// Rate-limit buckets shared by the nodes of a cluster (see the server's `rates` module).
#[async_trait]
pub trait RateStore: Send + Sync {
    /// Whether nodes share buckets through this store (a single-node store does not).
    fn shares_rates(&self) -> bool {
        false
    }
    /// Adds each key's cost (milliseconds of its bucket), taken from `since` on, to the shared
    /// bucket, forgets buckets full since before `forget_before`, and returns each key's shared
    /// arrival time.
    async fn share_rates(&self, _keys: &[String], _costs: &[f64], _since: &[f64], _forget_before: f64) -> Result<Vec<(String, f64)>> {
        Ok(Vec::new())
    }
}

/// A blueprint: its name and current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlueprintRecord {
    pub id: String,
    pub name: String,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// One version of a blueprint: the document as read (JSON) and as submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlueprintVersion {
    pub version: i64,
    pub document: String,
    pub source: String,
    pub created_at: Millis,
}

/// Blueprints (docs/blueprints.md).
#[async_trait]
pub trait BlueprintStore: Send + Sync {
    /// Stores `document` as the next version of the blueprint named `name` (created with `new_id`
    /// if there is none); nothing when it equals the current version. True when stored.
    async fn put_blueprint(&self, new_id: &str, name: &str, document: &str, source: &str, now: Millis) -> Result<(BlueprintRecord, bool)>;
    async fn list_blueprints(&self) -> Result<Vec<BlueprintRecord>>;
    /// By id or name; the current version unless `version` is given.
    async fn get_blueprint(&self, id_or_name: &str, version: Option<i64>) -> Result<Option<(BlueprintRecord, BlueprintVersion)>>;
    async fn delete_blueprint(&self, id: &str) -> Result<bool>;
    /// Every resource any blueprint manages in a workspace.
    async fn managed_resources(&self, ws: &WorkspaceId) -> Result<Vec<ManagedResource>>;
    /// Where a blueprint has been applied (in `ws` only, when given), and which version.
    async fn blueprint_applications(&self, blueprint_id: &str, ws: Option<&WorkspaceId>) -> Result<Vec<BlueprintApplication>>;
    /// Makes a workspace what a plan says, in one transaction: every change or none. `Conflict`
    /// when the blueprint's resources in the workspace are no longer `apply.expected` (another
    /// apply came first: plan again); `Limit` past the workspace's caps.
    async fn apply_blueprint(&self, apply: &BlueprintApply, now: Millis) -> Result<()>;
    /// Replaces the overrides of the blueprint's resources in a workspace (resources not named get
    /// none). False when the blueprint was never applied there.
    async fn set_overrides(&self, ws: &WorkspaceId, blueprint_id: &str, overrides: &[(ManagedKind, String, Vec<String>)]) -> Result<bool>;
    /// Notes that a resource was changed by hand: a `blueprint.drift` notification when a
    /// blueprint manages it.
    async fn note_hand_change(&self, ws: &WorkspaceId, kind: ManagedKind, resource_id: &str, fields: &[&str], now: Millis) -> Result<()>;
}

/// What a blueprint manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ManagedKind {
    Connection,
    Rule,
    EventType,
}

impl ManagedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::Rule => "rule",
            Self::EventType => "event_type",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "connection" => Self::Connection,
            "rule" => Self::Rule,
            "event_type" => Self::EventType,
            _ => return None,
        })
    }
}

/// A resource a blueprint manages in a workspace: found by the blueprint's key, whatever its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedResource {
    pub blueprint_id: String,
    pub kind: ManagedKind,
    pub key: String,
    /// The connection's or rule's id; an event type's name.
    pub resource_id: String,
    /// Fields (paths such as `action_config.channel`) the workspace owns instead of the blueprint.
    pub overrides: Vec<String>,
}

/// A blueprint's version applied to a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlueprintApplication {
    pub workspace_id: WorkspaceId,
    pub blueprint_id: String,
    pub version: i64,
    pub applied_at: Millis,
}

/// One workspace's changes from one blueprint, applied together.
#[derive(Debug, Clone)]
pub struct BlueprintApply {
    pub workspace_id: WorkspaceId,
    pub blueprint_id: String,
    pub version: i64,
    /// The blueprint's resources in the workspace when the plan was made.
    pub expected: Vec<ManagedResource>,
    /// The `updated_at` of each connection and rule to update, as the plan read them: a change
    /// made since (by hand, a token refresh) is not overwritten: `Conflict`, plan again.
    pub read_at: Vec<(String, Millis)>,
    /// The blueprint's resources once applied (overrides included).
    pub resources: Vec<ManagedResource>,
    pub create_connections: Vec<Connection>,
    pub update_connections: Vec<Connection>,
    pub delete_connections: Vec<ConnectionId>,
    pub create_rules: Vec<Rule>,
    pub update_rules: Vec<Rule>,
    pub delete_rules: Vec<RuleId>,
    pub declare_event_types: Vec<EventTypeDeclaration>,
    pub undeclare_event_types: Vec<String>,
    /// The workspace's caps (checked once everything is in).
    pub max_connections: Option<u32>,
    pub rule_caps: RuleCaps,
}

pub trait Store:
    AdminStore
    + RateStore
    + LimitStore
    + WorkspaceStore
    + ConnectionStore
    + RuleStore
    + EventStore
    + DeliveryStore
    + QueueStore
    + HistoryStore
    + CredentialStore
    + EventTypeStore
    + OperatorStore
    + ConsoleStore
    + BlueprintStore
{
}

impl<
        T: AdminStore
            + RateStore
            + LimitStore
            + WorkspaceStore
            + ConnectionStore
            + RuleStore
            + EventStore
            + DeliveryStore
            + QueueStore
            + HistoryStore
            + CredentialStore
            + EventTypeStore
            + OperatorStore
            + ConsoleStore
            + BlueprintStore,
    > Store for T
{
}

/// Opens the store a database URL names (with default PostgreSQL options) and applies its migrations.
pub async fn open(database_url: &str) -> Result<std::sync::Arc<dyn Store>, OpenError> {
    open_with(database_url, &PgOptions::default()).await
}

/// Opens the store a database URL names and applies its migrations.
pub async fn open_with(database_url: &str, pg: &PgOptions) -> Result<std::sync::Arc<dyn Store>, OpenError> {
    if database_url.starts_with("sqlite:") {
        let store = SqliteStore::open(database_url).await?;
        store.migrate().await?;
        Ok(std::sync::Arc::new(store))
    } else if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
        let store = PostgresStore::open(database_url, pg).await?;
        store.migrate().await?;
        Ok(std::sync::Arc::new(store))
    } else {
        Err(OpenError::Unsupported(format!(
            "unsupported database URL scheme {:?}; expected sqlite://PATH or postgres://...",
            database_url.split(':').next().unwrap_or_default()
        )))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The smallest event id created at `ms`: ids are ULIDs, so `id < event_id_floor(t)` selects the
/// events created before `t` through the primary key index.
pub(crate) fn event_id_floor(ms: Millis) -> String {
    id_floor(EventId::PREFIX, ms)
}

/// The smallest id with `prefix` created at `ms`.
pub(crate) fn id_floor(prefix: &str, ms: Millis) -> String {
    format!("{prefix}{}", ulid::Ulid::from_parts(ms.max(0) as u64, 0))
}
