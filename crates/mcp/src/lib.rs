//! Switchyard's API as Model Context Protocol tools, on the official Rust SDK (`rmcp`).
//!
//! Every tool is one API call made with the caller's own credential, so an agent can do exactly
//! what its key may do and no more: a read-only key's agent can look, and is refused (with the
//! API's `403`, as a tool error it can read) when it tries to change anything. Two ways in:
//!
//! - [`serve_stdio`]: `switchyard mcp`, a local process an agent starts, calling a server's API
//!   with the key it was given;
//! - [`http_service`]: `/mcp` on the server itself (streamable HTTP, stateless, so any node of a
//!   cluster answers), where each request's `Authorization` header is the credential.
//!
//! Each tool carries a description, an input schema, and hints: `readOnlyHint` for tools that
//! only look, `destructiveHint` for those that delete or overwrite, `idempotentHint` where
//! repeating changes nothing more.

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Extensions, Implementation, ServerCapabilities, ServerConfig};
use rmcp::schemars::{self, JsonSchema};
use rmcp::{tool, tool_handler, tool_router, ErrorData, ServerHandler, ServiceExt};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use switchyard_client::models::*;
use switchyard_client::{Client, Error};

/// Makes the client for one HTTP request from its head (its `Authorization` header), or says why
/// it cannot.
pub type ClientForRequest = Arc<dyn Fn(&http::request::Parts) -> Result<Client, String> + Send + Sync>;

#[derive(Clone)]
enum Source {
    Fixed(Box<Client>),
    PerRequest(ClientForRequest),
}

/// The tools, bound to where their calls go.
#[derive(Clone)]
pub struct Tools {
    source: Source,
    tool_router: ToolRouter<Self>,
}

const INSTRUCTIONS: &str = "Switchyard delivers a product's events (user.created, invoice.paid, ...) to its customers' tools. \
A workspace holds connections (destinations such as a webhook, Slack or HubSpot, with their credentials) and rules \
(which events go to which connection, in what shape). To set up an integration: list_integrations to learn a \
destination's config fields and actions; create_connection; create_rule; test_rule; then get_event on the test event \
to see its delivery. Never put secrets in rule templates or event payloads. Ask before deleting anything.";

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`), so a change can clear.
fn nullable<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A page of a list.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct PageArgs {
    /// Items per page, 1..200 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageArgs {
    fn page(&self) -> Page {
        Page { limit: self.limit, cursor: self.cursor.clone() }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct IdArgs {
    /// The id, e.g. `ws_...`, `conn_...`, `rule_...`, `evt_...`, `dlv_...`.
    pub id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WorkspaceListArgs {
    /// The workspace (`ws_...`).
    pub workspace_id: String,
    #[serde(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WorkspaceArgs {
    /// The workspace (`ws_...`).
    pub workspace_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateWorkspaceArgs {
    /// e.g. `acme-prod`: one workspace per customer or per environment.
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateConnectionArgs {
    /// The workspace (`ws_...`).
    pub workspace_id: String,
    /// The integration type from list_integrations: `webhook`, `slack`, `hubspot`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// A name people will recognise, e.g. `Sales Slack`.
    pub name: String,
    /// The integration's config fields (see list_integrations), e.g. `{"url": "https://..."}` for a webhook.
    #[serde(default)]
    pub config: Map<String, Value>,
    /// The integration's auth fields (API key, token, webhook URL), stored encrypted and never shown again.
    pub credentials: Option<Map<String, Value>>,
    /// Longest wait for the destination, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Most deliveries in flight to this connection at once.
    pub max_in_flight: Option<u32>,
    /// Most deliveries per minute (default: the vendor's own limit).
    pub rate_limit_per_minute: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct UpdateConnectionArgs {
    /// The connection (`conn_...`).
    pub id: String,
    pub name: Option<String>,
    /// Replaces the whole config.
    pub config: Option<Map<String, Value>>,
    /// Replaces the credentials; `null` removes them.
    #[serde(default, deserialize_with = "nullable")]
    pub credentials: Option<Option<Map<String, Value>>>,
    pub timeout_ms: Option<u64>,
    pub max_in_flight: Option<u32>,
    /// Most deliveries per minute; `null` removes the limit.
    #[serde(default, deserialize_with = "nullable")]
    pub rate_limit_per_minute: Option<Option<u32>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeleteConnectionArgs {
    /// The connection (`conn_...`).
    pub id: String,
    /// Also delete the rules that use it (otherwise a connection in use is not deleted).
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct IntegrationArgs {
    /// One integration type to describe in full (its config fields, auth fields and actions); all in brief when absent.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateRuleArgs {
    /// The workspace (`ws_...`).
    pub workspace_id: String,
    pub name: String,
    /// The event pattern: an exact name (`user.created`), a prefix (`user.*`) or `*`.
    pub event: String,
    /// The connection that receives the events (`conn_...`).
    pub connection_id: String,
    /// One of the connection type's actions (see list_integrations); its default when absent.
    pub action: Option<String>,
    /// The action's fields: fixed values, templates (`{{ payload.email }}`) or mappings.
    pub action_config: Option<Map<String, Value>>,
    /// Conditions on the event, e.g. `{"all": [{"path": "payload.plan", "op": "eq", "value": "pro"}]}`.
    pub conditions: Option<Map<String, Value>>,
    /// Created switched off when false.
    pub active: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct UpdateRuleArgs {
    /// The rule (`rule_...`).
    pub id: String,
    pub name: Option<String>,
    pub event: Option<String>,
    pub connection_id: Option<String>,
    pub action: Option<String>,
    pub action_config: Option<Map<String, Value>>,
    /// Replaces the conditions; `null` removes them (the rule then takes every matching event).
    #[serde(default, deserialize_with = "nullable")]
    pub conditions: Option<Option<Map<String, Value>>>,
    pub active: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TestRuleArgs {
    /// The rule (`rule_...`).
    pub id: String,
    /// The test event's payload; a sample when absent.
    pub payload: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct EmitArgs {
    /// The workspace (`ws_...`).
    pub workspace_id: String,
    /// The event's name, e.g. `user.created`.
    pub event: String,
    /// The event's data.
    pub payload: Option<Map<String, Value>>,
    /// The product's record the event is about, e.g. `account`.
    pub resource: Option<String>,
    pub resource_id: Option<String>,
    /// Repeating a call with the same key within 24 hours returns the first event instead of a new one.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListEventsArgs {
    /// The workspace (`ws_...`).
    pub workspace_id: String,
    /// Only events with this name.
    pub event: Option<String>,
    /// `pending`, `processing`, `completed` or `failed`.
    pub status: Option<String>,
    #[serde(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListDeliveriesArgs {
    /// The workspace (`ws_...`).
    pub workspace_id: String,
    /// `pending`, `delivering`, `succeeded`, `retrying` or `dead`.
    pub status: Option<String>,
    pub connection_id: Option<String>,
    pub rule_id: Option<String>,
    /// Only deliveries of events with this name.
    pub event: Option<String>,
    #[serde(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateSessionArgs {
    /// The workspace (`ws_...`).
    pub workspace_id: String,
    /// `viewer`, `editor` or `admin`.
    pub role: String,
    /// The product's user the session is for.
    pub external_user_id: Option<String>,
    /// 60..86400 seconds (default 1800).
    pub ttl_seconds: Option<u64>,
    /// Origins allowed to frame the pages, e.g. `https://app.example.com`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct EventTypeArgs {
    /// The workspace (`ws_...`).
    pub workspace_id: String,
    /// The event type's name, e.g. `invoice.paid`.
    pub name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeclareEventTypeArgs {
    /// The workspace (`ws_...`).
    pub workspace_id: String,
    /// The event type's name, e.g. `invoice.paid`.
    pub name: String,
    pub description: Option<String>,
    /// A JSON Schema for the payload.
    pub json_schema: Option<Map<String, Value>>,
    /// An example payload: the sample rules are previewed with.
    pub example: Option<Map<String, Value>>,
}

type Answer = Result<CallToolResult, ErrorData>;

/// The API's answer as the tool's result: its JSON, or its error as a tool error the agent reads.
fn answer<T: serde::Serialize>(result: Result<T, Error>) -> Answer {
    Ok(match result {
        Ok(value) => {
            let value = serde_json::to_value(value).unwrap_or(Value::Null);
            let text = if value.is_null() { "done".to_owned() } else { serde_json::to_string_pretty(&value).unwrap_or_default() };
            let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
            if value.is_object() {
                result.structured_content = Some(value);
            }
            result
        }
        Err(Error::Api { status, code, message, details, .. }) => {
            let mut text = format!("{status} {code}: {message}");
            for d in details {
                text.push_str(&format!("\n- {}: {}", d.field, d.message));
            }
            if status == 403 {
                text.push_str("\nThe key this agent was given may not do this; ask a person with a key that may.");
            }
            CallToolResult::error(vec![ContentBlock::text(text)])
        }
        Err(other) => CallToolResult::error(vec![ContentBlock::text(other.to_string())]),
    })
}

fn object(map: Option<Map<String, Value>>) -> Option<Value> {
    map.map(Value::Object)
}

#[tool_router]
impl Tools {
    /// Tools that call the API with one client (`switchyard mcp`).
    pub fn with_client(client: Client) -> Self {
        Self { source: Source::Fixed(Box::new(client)), tool_router: Self::tool_router() }
    }

    /// Tools whose calls use each request's own credential (`/mcp`).
    pub fn per_request(make: ClientForRequest) -> Self {
        Self { source: Source::PerRequest(make), tool_router: Self::tool_router() }
    }

    fn client(&self, extensions: &Extensions) -> Result<Client, ErrorData> {
        match &self.source {
            Source::Fixed(client) => Ok(Client::clone(client)),
            Source::PerRequest(make) => {
                let parts = extensions
                    .get::<http::request::Parts>()
                    .ok_or_else(|| ErrorData::internal_error("the request's headers are missing", None))?;
                make(parts).map_err(|message| ErrorData::invalid_request(message, None))
            }
        }
    }

    #[tool(
        description = "List the workspaces this key can see (one per customer or environment).",
        annotations(title = "List workspaces", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_workspaces(&self, ext: Extensions, Parameters(a): Parameters<PageArgs>) -> Answer {
        answer(self.client(&ext)?.list_workspaces(&a.page()).await)
    }

    #[tool(description = "Show one workspace.", annotations(title = "Show a workspace", read_only_hint = true, open_world_hint = false))]
    async fn get_workspace(&self, ext: Extensions, Parameters(a): Parameters<IdArgs>) -> Answer {
        answer(self.client(&ext)?.get_workspace(&a.id).await)
    }

    #[tool(
        description = "Create a workspace with its first publishable key (pk_..., shown only in this answer; the product sends events with it). Needs an installation-wide key.",
        annotations(
            title = "Create a workspace",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn create_workspace(&self, ext: Extensions, Parameters(a): Parameters<CreateWorkspaceArgs>) -> Answer {
        answer(
            self.client(&ext)?
                .create_workspace(&NewWorkspace { name: a.name, description: a.description, ..NewWorkspace::default() })
                .await,
        )
    }

    #[tool(
        description = "The integration catalog: every destination type (webhook, slack, hubspot, ...) with its auth fields, config fields and actions. Call with a type to see one in full before creating a connection or rule for it.",
        annotations(title = "List integrations", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_integrations(&self, ext: Extensions, Parameters(a): Parameters<IntegrationArgs>) -> Answer {
        let catalog = self.client(&ext)?.list_integrations().await;
        match (catalog, a.kind) {
            (Ok(catalog), Some(kind)) => match catalog.data.into_iter().find(|i| i.kind == kind) {
                Some(one) => answer(Ok(one)),
                None => Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "no integration of type `{kind}`; call list_integrations without a type to see them all"
                ))])),
            },
            (Ok(catalog), None) => {
                let brief: Vec<Value> = catalog
                    .data
                    .iter()
                    .map(|i| {
                        let actions: Vec<&Value> = i.actions.iter().filter_map(|a| a.get("key")).collect();
                        serde_json::json!({"type": i.kind, "name": i.name, "description": i.description, "auth": i.auth.get("type"), "actions": actions})
                    })
                    .collect();
                answer(Ok(serde_json::json!({ "data": brief })))
            }
            (Err(e), _) => answer::<()>(Err(e)),
        }
    }

    #[tool(
        description = "List a workspace's connections (destinations with their config; credentials are never shown).",
        annotations(title = "List connections", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_connections(&self, ext: Extensions, Parameters(a): Parameters<WorkspaceListArgs>) -> Answer {
        answer(self.client(&ext)?.list_connections(&a.workspace_id, &a.page.page()).await)
    }

    #[tool(description = "Show one connection.", annotations(title = "Show a connection", read_only_hint = true, open_world_hint = false))]
    async fn get_connection(&self, ext: Extensions, Parameters(a): Parameters<IdArgs>) -> Answer {
        answer(self.client(&ext)?.get_connection(&a.id).await)
    }

    #[tool(
        description = "Create a connection: a destination of one integration type with its config and credentials. For OAuth integrations (Slack, HubSpot, Salesforce, Zoom, AWeber, Mailchimp) a person must authorise in a browser instead: tell them to use the embedded Connections page.",
        annotations(
            title = "Create a connection",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn create_connection(&self, ext: Extensions, Parameters(a): Parameters<CreateConnectionArgs>) -> Answer {
        let new = NewConnection {
            kind: a.kind,
            name: a.name,
            config: Value::Object(a.config),
            credentials: object(a.credentials),
            retry_policy: None,
            timeout_ms: a.timeout_ms,
            max_in_flight: a.max_in_flight,
            rate_limit_per_minute: a.rate_limit_per_minute,
        };
        answer(self.client(&ext)?.create_connection(&a.workspace_id, &new).await)
    }

    #[tool(
        description = "Change a connection's name, config, credentials or limits; what is given replaces what was there.",
        annotations(
            title = "Update a connection",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn update_connection(&self, ext: Extensions, Parameters(a): Parameters<UpdateConnectionArgs>) -> Answer {
        let changes = ConnectionChanges {
            name: a.name,
            config: object(a.config),
            credentials: a.credentials.map(object),
            retry_policy: None,
            timeout_ms: a.timeout_ms,
            max_in_flight: a.max_in_flight,
            rate_limit_per_minute: a.rate_limit_per_minute,
        };
        answer(self.client(&ext)?.update_connection(&a.id, &changes).await)
    }

    #[tool(
        description = "Delete a connection (and, with force, the rules that use it). Ask the user first.",
        annotations(
            title = "Delete a connection",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn delete_connection(&self, ext: Extensions, Parameters(a): Parameters<DeleteConnectionArgs>) -> Answer {
        answer(self.client(&ext)?.delete_connection(&a.id, a.force).await)
    }

    #[tool(
        description = "List a workspace's rules: which events go to which connection, with what action and conditions.",
        annotations(title = "List rules", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_rules(&self, ext: Extensions, Parameters(a): Parameters<WorkspaceListArgs>) -> Answer {
        answer(self.client(&ext)?.list_rules(&a.workspace_id, &a.page.page()).await)
    }

    #[tool(description = "Show one rule.", annotations(title = "Show a rule", read_only_hint = true, open_world_hint = false))]
    async fn get_rule(&self, ext: Extensions, Parameters(a): Parameters<IdArgs>) -> Answer {
        answer(self.client(&ext)?.get_rule(&a.id).await)
    }

    #[tool(
        description = "Create a rule: events matching a pattern (and its conditions) go to a connection through one of its actions. Then call test_rule.",
        annotations(
            title = "Create a rule",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn create_rule(&self, ext: Extensions, Parameters(a): Parameters<CreateRuleArgs>) -> Answer {
        let new = NewRule {
            name: a.name,
            event: a.event,
            connection_id: a.connection_id,
            action: a.action,
            action_config: object(a.action_config),
            conditions: object(a.conditions),
            active: a.active,
            resource: None,
            resource_id: None,
        };
        answer(self.client(&ext)?.create_rule(&a.workspace_id, &new).await)
    }

    #[tool(
        description = "Change a rule; what is given replaces what was there (active: false switches it off).",
        annotations(
            title = "Update a rule",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn update_rule(&self, ext: Extensions, Parameters(a): Parameters<UpdateRuleArgs>) -> Answer {
        let changes = RuleChanges {
            name: a.name,
            event: a.event,
            connection_id: a.connection_id,
            action: a.action,
            action_config: object(a.action_config),
            conditions: a.conditions.map(object),
            active: a.active,
        };
        answer(self.client(&ext)?.update_rule(&a.id, &changes).await)
    }

    #[tool(
        description = "Delete a rule. Ask the user first.",
        annotations(
            title = "Delete a rule",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn delete_rule(&self, ext: Extensions, Parameters(a): Parameters<IdArgs>) -> Answer {
        answer(self.client(&ext)?.delete_rule(&a.id).await)
    }

    #[tool(
        description = "Send a test event through one rule (its conditions and active flag bypassed) to its real destination; answers the test event's id, whose delivery get_event then shows.",
        annotations(
            title = "Test a rule",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn test_rule(&self, ext: Extensions, Parameters(a): Parameters<TestRuleArgs>) -> Answer {
        let payload = object(a.payload);
        answer(self.client(&ext)?.test_rule(&a.id, payload.as_ref()).await)
    }

    #[tool(
        description = "Emit an event into a workspace, as the product would: every matching rule delivers it to its connection.",
        annotations(
            title = "Emit an event",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn emit_event(&self, ext: Extensions, Parameters(a): Parameters<EmitArgs>) -> Answer {
        let event = NewEvent {
            event: a.event,
            payload: object(a.payload),
            resource: a.resource,
            resource_id: a.resource_id,
            occurred_at: None,
            idempotency_key: a.idempotency_key,
        };
        answer(self.client(&ext)?.emit_to(&a.workspace_id, &event).await)
    }

    #[tool(
        description = "List a workspace's events, newest first.",
        annotations(title = "List events", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_events(&self, ext: Extensions, Parameters(a): Parameters<ListEventsArgs>) -> Answer {
        let filter = EventFilter { event: a.event, status: a.status, ..EventFilter::default() };
        answer(self.client(&ext)?.list_events(&a.workspace_id, &filter, &a.page.page()).await)
    }

    #[tool(
        description = "Show one event with its payload and its deliveries (their status, attempts and last error).",
        annotations(title = "Show an event", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_event(&self, ext: Extensions, Parameters(a): Parameters<IdArgs>) -> Answer {
        answer(self.client(&ext)?.get_event(&a.id).await)
    }

    #[tool(
        description = "List a workspace's deliveries, newest first; status `dead` finds the ones that gave up.",
        annotations(title = "List deliveries", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_deliveries(&self, ext: Extensions, Parameters(a): Parameters<ListDeliveriesArgs>) -> Answer {
        let filter = DeliveryFilter {
            status: a.status,
            connection_id: a.connection_id,
            rule_id: a.rule_id,
            event: a.event,
            ..DeliveryFilter::default()
        };
        answer(self.client(&ext)?.list_deliveries(&a.workspace_id, &filter, &a.page.page()).await)
    }

    #[tool(
        description = "Show one delivery with every attempt: status code, error, duration and an excerpt of the destination's answer.",
        annotations(title = "Show a delivery", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_delivery(&self, ext: Extensions, Parameters(a): Parameters<IdArgs>) -> Answer {
        answer(self.client(&ext)?.get_delivery(&a.id).await)
    }

    #[tool(
        description = "Send a delivery again to its destination, as a new run of attempts (after fixing what made it fail).",
        annotations(
            title = "Replay a delivery",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn replay_delivery(&self, ext: Extensions, Parameters(a): Parameters<IdArgs>) -> Answer {
        answer(self.client(&ext)?.replay_delivery(&a.id).await)
    }

    #[tool(
        description = "Mint a short-lived session for the embedded pages (where a person manages connections and rules): answers its token and a launch URL to open once.",
        annotations(
            title = "Create a session",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn create_session(&self, ext: Extensions, Parameters(a): Parameters<CreateSessionArgs>) -> Answer {
        let new = NewSession {
            workspace_id: a.workspace_id,
            role: a.role,
            external_user_id: a.external_user_id,
            ttl_seconds: a.ttl_seconds,
            allowed_origins: a.allowed_origins,
            ..NewSession::default()
        };
        answer(self.client(&ext)?.create_session(&new).await)
    }

    #[tool(
        description = "List a workspace's live sessions (never their tokens).",
        annotations(title = "List sessions", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_sessions(&self, ext: Extensions, Parameters(a): Parameters<WorkspaceListArgs>) -> Answer {
        answer(self.client(&ext)?.list_sessions(&a.workspace_id, &a.page.page()).await)
    }

    #[tool(
        description = "End a session at once.",
        annotations(
            title = "Revoke a session",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn revoke_session(&self, ext: Extensions, Parameters(a): Parameters<IdArgs>) -> Answer {
        answer(self.client(&ext)?.delete_session(&a.id).await)
    }

    #[tool(
        description = "A workspace's month against its plan's limits: events accepted (and when the count resets), connections and rules, and events per day for 90 days.",
        annotations(title = "Show usage", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_usage(&self, ext: Extensions, Parameters(a): Parameters<WorkspaceArgs>) -> Answer {
        answer(self.client(&ext)?.workspace_usage(&a.workspace_id).await)
    }

    #[tool(
        description = "List a workspace's event types: declared ones and those seen in traffic, with counts and the latest sample payload.",
        annotations(title = "List event types", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_event_types(&self, ext: Extensions, Parameters(a): Parameters<WorkspaceArgs>) -> Answer {
        answer(self.client(&ext)?.list_event_types(&a.workspace_id).await)
    }

    #[tool(
        description = "Show one event type with its schema, example and latest sample: what fields a rule's template can use.",
        annotations(title = "Show an event type", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_event_type(&self, ext: Extensions, Parameters(a): Parameters<EventTypeArgs>) -> Answer {
        answer(self.client(&ext)?.get_event_type(&a.workspace_id, &a.name).await)
    }

    #[tool(
        description = "Declare an event type with a description, a JSON Schema and an example payload (replaces an earlier declaration).",
        annotations(
            title = "Declare an event type",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn declare_event_type(&self, ext: Extensions, Parameters(a): Parameters<DeclareEventTypeArgs>) -> Answer {
        let declaration =
            EventTypeDeclaration { description: a.description, json_schema: object(a.json_schema), example: object(a.example) };
        answer(self.client(&ext)?.declare_event_type(&a.workspace_id, &a.name, &declaration).await)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("switchyard", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}

/// Serves the tools over standard input and output until the client goes away.
pub async fn serve_stdio(client: Client) -> Result<(), String> {
    let running = Tools::with_client(client).serve(rmcp::transport::stdio()).await.map_err(|e| e.to_string())?;
    running.waiting().await.map_err(|e| e.to_string())?;
    Ok(())
}

/// The streamable HTTP endpoint: stateless (any node answers any request), JSON answers, each
/// request's credential used for its calls. Stops taking requests when `stop` is cancelled.
pub fn http_service(
    make: ClientForRequest,
    stop: tokio_util::sync::CancellationToken,
) -> rmcp::transport::StreamableHttpService<Tools, rmcp::transport::streamable_http_server::session::local::LocalSessionManager> {
    use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
    let mut config = StreamableHttpServerConfig::default();
    config.legacy_session_mode = false;
    config.json_response = true;
    config.cancellation_token = stop;
    // Every request carries its credential in a header a browser page cannot attach to another
    // site's request, so the Host check against DNS rebinding adds nothing here.
    config.allowed_hosts = Vec::new();
    config.max_request_body_bytes = 1 << 20;
    let tools = Tools::per_request(make);
    rmcp::transport::StreamableHttpService::new(move || Ok(tools.clone()), Default::default(), config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_description_a_schema_and_hints() {
        let tools = Tools::tool_router().list_all();
        assert!(tools.len() >= 28, "{}", tools.len());
        for tool in &tools {
            assert!(tool.description.as_deref().is_some_and(|d| d.len() > 10), "{}", tool.name);
            assert_eq!(tool.input_schema.get("type").and_then(Value::as_str), Some("object"), "{}", tool.name);
            let hints = tool.annotations.as_ref().unwrap_or_else(|| panic!("{} has no annotations", tool.name));
            let read_only = hints.read_only_hint.unwrap_or_else(|| panic!("{} says nothing of read-only", tool.name));
            let lists = tool.name.starts_with("list_") || tool.name.starts_with("get_");
            assert_eq!(read_only, lists, "{}: only lists and gets are read-only", tool.name);
            if !read_only {
                assert!(hints.destructive_hint.is_some(), "{} says nothing of being destructive", tool.name);
            }
            let destructive = hints.destructive_hint == Some(true);
            let overwrites = tool.name.starts_with("delete_")
                || tool.name.starts_with("update_")
                || tool.name.starts_with("revoke_")
                || tool.name.starts_with("declare_");
            assert_eq!(destructive, overwrites, "{}", tool.name);
        }
    }
}
