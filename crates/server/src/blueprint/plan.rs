//! Plans and applies a blueprint in one workspace.
//!
//! A plan compares what the workspace has with what the blueprint asks of it, resource by
//! resource and field by field, through a *view* of each resource: the fields a person can set,
//! as JSON, with a rule's connection named by its key. Which fields the blueprint owns:
//! - a connection's `name` and `config` always; `credentials`, `retry_policy`, `timeout_ms`,
//!   `max_in_flight`, `rate_limit_per_minute` and `circuit_breaker` when the blueprint gives them;
//! - a rule's `name`, `event`, `connection` and `action_config` always; `action`, `conditions` and
//!   `active` when given;
//! - an event type's `description`, `json_schema` and `example`.
//!
//! A field the blueprint leaves out takes its default when the resource is made, and is the
//! workspace's afterwards. An override (a path such as `action_config.channel`) makes one owned
//! field the workspace's too. Resources are recognised by the marks apply leaves
//! ([`ManagedResource`]), never by name, so what people made by hand is never touched unless a
//! prune is asked for.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{json, Map, Value};
use switchyard_core::circuit::BreakerSettingsInput;
use switchyard_core::conditions::Condition;
use switchyard_core::events::EventPattern;
use switchyard_core::ids::{ConnectionId, RuleId, WorkspaceId};
use switchyard_core::model::{Connection, ConnectionStatus, Rule, Workspace};
use switchyard_core::retry::RetryPolicyInput;
use switchyard_store::{secret_id, BlueprintApply, EventTypeDeclaration, ManagedKind, ManagedResource, Page, RuleCaps, Scope};

use super::resolve::{self, Resolved};
use super::{yaml, Blueprint};
use crate::api::connections::{
    check_limits, connector, empty_object, prepare_connection, seal_credentials, split_secrets, validation_context, CreateConnection,
    DESTINATION_KEYS,
};
use crate::api::event_types::{declaration, DeclareEventType};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// One field that changes: its path in the resource's view, and the values before and after
/// (left out for credentials, which are never shown).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldChange {
    pub field: String,
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
    /// True for credentials: that they change is shown, never what they hold.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

/// What happens to one resource.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ResourceChange {
    /// Where the blueprint declares it: `connections.slack`, `rules.alerts`, `event_types["user.created"]`;
    /// `unmanaged.<kind>.<id>` for what a prune removes.
    pub resource: String,
    /// `create`, `update` or `delete`.
    pub action: &'static str,
    /// The resource's id in the workspace (the name, for an event type); null for one not made yet.
    pub id: Option<String>,
    /// For `update`, what changes; for `create`, every field the blueprint sets.
    pub fields: Vec<FieldChange>,
    /// Why, when it is not plain: `deleted by hand: made again`, `not managed: removed by prune`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A problem that keeps a workspace from being applied.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PlanProblem {
    pub field: String,
    pub message: String,
}

/// A blueprint's plan for one workspace.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkspacePlan {
    pub workspace_id: String,
    pub workspace_name: String,
    /// The version applied there before, if any.
    pub applied_version: Option<i64>,
    pub changes: Vec<ResourceChange>,
    /// Fields the workspace owns instead of the blueprint, by resource.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, Vec<String>>,
    /// When not empty, nothing can be applied to this workspace.
    pub problems: Vec<PlanProblem>,
}

/// A plan, and what applying it writes (none when it has problems).
pub struct Prepared {
    pub plan: WorkspacePlan,
    pub apply: Option<BlueprintApply>,
    /// Whether applying writes anything (changes, or the version applied).
    pub writes: bool,
}

/// What to plan.
pub struct Target<'a> {
    pub blueprint_id: &'a str,
    pub version: i64,
    pub blueprint: &'a Blueprint,
    /// Also remove connections, rules and event type declarations no blueprint manages.
    pub prune: bool,
}

fn section(kind: ManagedKind) -> &'static str {
    match kind {
        ManagedKind::Connection => "connections",
        ManagedKind::Rule => "rules",
        ManagedKind::EventType => "event_types",
    }
}

/// `connections.slack`, as a resource is named in plans and overrides.
pub fn resource_name(kind: ManagedKind, key: &str) -> String {
    format!("{}{}", section(kind), yaml::segment(key))
}

/// The resource a name such as `rules.alerts` stands for.
pub fn parse_resource(name: &str) -> Option<(ManagedKind, String)> {
    let (head, rest) = name.split_at(name.find(['.', '['])?);
    let kind = match head {
        "connections" => ManagedKind::Connection,
        "rules" => ManagedKind::Rule,
        "event_types" => ManagedKind::EventType,
        _ => return None,
    };
    let key =
        if let Some(key) = rest.strip_prefix('.') { key.to_owned() } else { serde_json::from_str::<Vec<String>>(rest).ok()?.pop()? };
    (resource_name(kind, &key) == name).then_some((kind, key))
}

/// The fields of each kind a blueprint can own (and so a workspace can override).
pub fn owned_fields(kind: ManagedKind) -> &'static [&'static str] {
    match kind {
        ManagedKind::Connection => {
            &["name", "config", "credentials", "retry_policy", "timeout_ms", "max_in_flight", "rate_limit_per_minute", "circuit_breaker"]
        }
        ManagedKind::Rule => &["name", "event", "connection", "action", "action_config", "conditions", "active"],
        ManagedKind::EventType => &["description", "json_schema", "example"],
    }
}

/// The path segments of `action_config.channel` (a key with dots is written `["a.b"]`).
fn path_segments(path: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find("\"]")? + 2;
            out.push(serde_json::from_str::<String>(&r[..end - 1]).ok()?);
            rest = &r[end..];
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            out.push(r[..end].to_owned());
            rest = &r[end..];
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The fields whose parts (`config.url`) may be overridden; the others only whole.
fn has_parts(field: &str) -> bool {
    matches!(field, "config" | "retry_policy" | "circuit_breaker" | "action_config" | "conditions" | "json_schema" | "example")
}

/// Whether `path` names something a workspace may override for `kind`: a field the blueprint can
/// own, or a part of one that is an object.
pub fn valid_override(kind: ManagedKind, path: &str) -> bool {
    path_segments(path).is_some_and(|s| owned_fields(kind).contains(&s[0].as_str()) && (s.len() == 1 || has_parts(&s[0])))
}

fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn set_path(v: &mut Value, path: &[String], to: Option<Value>) {
    let Some((last, parents)) = path.split_last() else { return };
    if to.is_none() && get_path(v, parents).is_none_or(|p| !p.is_object()) {
        // Nothing there to remove.
        return;
    }
    let mut at = v;
    for k in parents {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        at = at.as_object_mut().expect("an object").entry(k.clone()).or_insert_with(|| Value::Object(Map::new()));
    }
    if let Some(map) = at.as_object_mut() {
        match to {
            Some(to) => {
                map.insert(last.clone(), to);
            }
            None => {
                map.remove(last);
            }
        }
    }
}

/// Every leaf that differs between two views (objects compared key by key, the rest whole).
fn diff(from: &Value, to: &Value, at: &str, out: &mut Vec<FieldChange>) {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let path = if at.is_empty() { k.clone() } else { format!("{at}{}", yaml::segment(k)) };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff(x, y, &path, out),
                    (x, y) => {
                        if x.unwrap_or(&Value::Null) != y.unwrap_or(&Value::Null) {
                            out.push(FieldChange { field: path, from: x.cloned(), to: y.cloned(), sensitive: false })
                        }
                    }
                }
            }
        }
        (a, b) if a != b => out.push(FieldChange { field: at.to_owned(), from: Some(a.clone()), to: Some(b.clone()), sensitive: false }),
        _ => {}
    }
}

/// The owned fields of `desired` laid over `current`, then each override put back as it is now.
fn merge(current: &Value, desired: &Map<String, Value>, overrides: &[String]) -> Value {
    let mut merged = current.clone();
    for (k, v) in desired {
        set_path(&mut merged, std::slice::from_ref(k), Some(v.clone()));
    }
    for path in overrides {
        if let Some(segments) = path_segments(path) {
            set_path(&mut merged, &segments, get_path(current, &segments).cloned());
        }
    }
    merged
}

fn is_overridden(overrides: &[String], field: &str) -> bool {
    overrides.iter().any(|o| o == field || field.strip_prefix(o.as_str()).is_some_and(|rest| rest.starts_with(['.', '['])))
}

fn connection_view(c: &Connection) -> Value {
    json!({
        "type": c.kind, "name": c.name, "config": c.config, "retry_policy": c.retry_policy, "timeout_ms": c.timeout_ms,
        "max_in_flight": c.max_in_flight, "rate_limit_per_minute": c.rate_limit_per_minute, "circuit_breaker": c.breaker,
    })
}

fn rule_view(r: &Rule, keys: &HashMap<String, String>) -> Value {
    let connection = keys.get(r.connection_id.as_str()).cloned().unwrap_or_else(|| r.connection_id.to_string());
    json!({
        "name": r.name, "event": r.event, "connection": connection, "action": r.action, "action_config": r.action_config,
        "conditions": r.conditions, "active": r.active,
    })
}

fn event_type_view(d: &EventTypeDeclaration) -> Value {
    let parse = |t: &Option<String>| t.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok()).unwrap_or(Value::Null);
    json!({"description": d.description, "json_schema": parse(&d.json_schema), "example": parse(&d.example)})
}

/// Gathers the problems of one workspace's plan.
struct Problems(Vec<PlanProblem>);

/// What a problem with credentials says: the integration's own message could quote the value,
/// which came from the workspace's secrets.
const CREDENTIALS_REFUSED: &str =
    "is refused by the integration once the workspace's secrets are put in (the value is not shown: check the secrets it uses)";

impl Problems {
    fn api(&mut self, at: &str, e: ApiError) {
        if e.details.is_empty() {
            self.0.push(PlanProblem { field: at.to_owned(), message: e.message });
        }
        for d in e.details {
            let message =
                if d.field == "credentials" || d.field.starts_with("credentials.") { CREDENTIALS_REFUSED.to_owned() } else { d.message };
            self.0.push(PlanProblem { field: format!("{at}.{}", d.field), message });
        }
    }

    /// The problems, with any secret's value taken out of them (whatever its case), should a
    /// message quote one anyway.
    fn scrubbed(self, secrets: &HashMap<String, String>) -> Vec<PlanProblem> {
        let values: Vec<String> = secrets.values().filter(|v| v.len() >= 4).map(|v| v.to_lowercase()).collect();
        self.0
            .into_iter()
            .map(|mut p| {
                for v in &values {
                    while let Some(at) = p.message.to_lowercase().find(v.as_str()) {
                        // Lowercasing can change lengths outside ASCII: then the whole message goes.
                        if p.message.to_lowercase().len() != p.message.len() {
                            p.message = "(a message that quoted a secret)".into();
                            break;
                        }
                        p.message.replace_range(at..at + v.len(), "(secret)");
                    }
                }
                p
            })
            .collect()
    }

    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(PlanProblem { field: field.into(), message: message.into() });
    }
}

/// Every connection (or rule) of a workspace, page by page.
pub async fn all_connections(state: &AppState, ws: &WorkspaceId) -> ApiResult<Vec<Connection>> {
    let mut out = Vec::new();
    let mut page = Page { limit: 200, before: None };
    loop {
        let batch = state.store.list_connections(ws, &page).await?;
        let done = batch.len() < page.limit as usize;
        page.before = batch.last().map(|c| c.id.to_string());
        out.extend(batch);
        if done {
            return Ok(out);
        }
    }
}

pub async fn all_rules(state: &AppState, ws: &WorkspaceId) -> ApiResult<Vec<Rule>> {
    let mut out = Vec::new();
    let mut page = Page { limit: 200, before: None };
    loop {
        let batch = state.store.list_rules(ws, &page, None).await?;
        let done = batch.len() < page.limit as usize;
        page.before = batch.last().map(|r| r.id.to_string());
        out.extend(batch);
        if done {
            return Ok(out);
        }
    }
}

/// Every event type of a workspace (learned and declared), page by page.
pub async fn all_event_types(state: &AppState, ws: &WorkspaceId) -> ApiResult<Vec<switchyard_core::model::EventType>> {
    let mut out = Vec::new();
    loop {
        let batch = state.store.list_event_types(ws, out.last().map(|t: &switchyard_core::model::EventType| t.name.as_str()), 200).await?;
        let done = batch.len() < 200;
        out.extend(batch);
        if done {
            return Ok(out);
        }
    }
}

/// The connection a mark names, if it is still there.
async fn marked_connection(state: &AppState, scope: &Scope, m: Option<&ManagedResource>) -> ApiResult<Option<Connection>> {
    match m.and_then(|m| ConnectionId::parse(&m.resource_id)) {
        Some(id) => Ok(state.store.get_connection(scope, &id).await?),
        None => Ok(None),
    }
}

/// The rule a mark names, if it is still there.
async fn marked_rule(state: &AppState, scope: &Scope, m: Option<&ManagedResource>) -> ApiResult<Option<Rule>> {
    match m.and_then(|m| RuleId::parse(&m.resource_id)) {
        Some(id) => Ok(state.store.get_rule(scope, &id).await?),
        None => Ok(None),
    }
}

/// Opens the workspace's secrets the blueprint refers to; a missing one is a problem.
async fn open_secrets(state: &AppState, ws: &WorkspaceId, names: &[String], problems: &mut Problems) -> ApiResult<HashMap<String, String>> {
    let mut out = HashMap::new();
    for name in names {
        match state.store.get_secret(ws, name).await? {
            None => problems
                .add(format!("secrets.{name}"), format!("the workspace has no secret {name:?} (PUT /workspaces/{{ws}}/secrets/{name})")),
            Some(sealed) => {
                let plain =
                    state.vault.open(&sealed, &secret_id(ws, name)).map_err(|_| ApiError::internal("a secret could not be opened"))?;
                out.insert(name.clone(), String::from_utf8(plain).map_err(|_| ApiError::internal("a secret is not text"))?);
            }
        }
    }
    Ok(out)
}

/// Plans `target` for `ws`: what would be created, changed and deleted, and what applying writes.
pub async fn prepare(state: &AppState, ws: &Workspace, target: &Target<'_>) -> ApiResult<Prepared> {
    let b = target.blueprint;
    let mut problems = Problems(Vec::new());
    let all_marks = state.store.managed_resources(&ws.id).await?;
    let (mine, others): (Vec<ManagedResource>, Vec<ManagedResource>) =
        all_marks.into_iter().partition(|m| m.blueprint_id == target.blueprint_id);
    let applied_version =
        state.store.blueprint_applications(target.blueprint_id, Some(&ws.id)).await?.into_iter().next().map(|a| a.version);
    let mark = |kind: ManagedKind, key: &str| mine.iter().find(|m| m.kind == kind && m.key == key);
    let mut plan = WorkspacePlan {
        workspace_id: ws.id.to_string(),
        workspace_name: ws.name.clone(),
        applied_version,
        changes: Vec::new(),
        overrides: mine.iter().filter(|m| !m.overrides.is_empty()).map(|m| (resource_name(m.kind, &m.key), m.overrides.clone())).collect(),
        problems: Vec::new(),
    };

    // The blueprint for this workspace: first with references for secrets (to learn which are
    // used), then with the secrets themselves, opened here and never shown.
    let here = resolve::Workspace { id: ws.id.as_str(), labels: &ws.labels };
    let referenced = match resolve::resolve(b, here, &resolve::referenced) {
        Ok(r) => r,
        Err(found) => {
            plan.problems = found.into_iter().map(|p| PlanProblem { field: p.field, message: p.message }).collect();
            return Ok(Prepared { plan, apply: None, writes: false });
        }
    };
    let mut names: Vec<String> = referenced.secrets.values().flatten().cloned().collect();
    names.sort();
    names.dedup();
    let secrets = open_secrets(state, &ws.id, &names, &mut problems).await?;
    let resolved: Resolved = if problems.0.is_empty() {
        match resolve::resolve(b, here, &|name| secrets.get(name).cloned()) {
            Ok(r) => r,
            Err(found) => {
                plan.problems = found.into_iter().map(|p| PlanProblem { field: p.field, message: p.message }).collect();
                return Ok(Prepared { plan, apply: None, writes: false });
            }
        }
    } else {
        plan.problems = problems.0;
        return Ok(Prepared { plan, apply: None, writes: false });
    };

    let now = switchyard_core::now_millis();
    let scope = Scope::Workspace(ws.id.clone());
    let mut apply = BlueprintApply {
        workspace_id: ws.id.clone(),
        blueprint_id: target.blueprint_id.to_owned(),
        version: target.version,
        expected: mine.clone(),
        read_at: Vec::new(),
        resources: Vec::new(),
        create_connections: Vec::new(),
        update_connections: Vec::new(),
        delete_connections: Vec::new(),
        create_rules: Vec::new(),
        update_rules: Vec::new(),
        delete_rules: Vec::new(),
        declare_event_types: Vec::new(),
        undeclare_event_types: Vec::new(),
        max_connections: None,
        rule_caps: RuleCaps::default(),
    };
    let mut changes = Vec::new();

    // Connections, by key: the id each will have (for rules), and the key of each id (for views).
    let mut connection_ids: HashMap<String, (ConnectionId, String)> = HashMap::new();
    let mut key_of: HashMap<String, String> =
        mine.iter().filter(|m| m.kind == ManagedKind::Connection).map(|m| (m.resource_id.clone(), m.key.clone())).collect();
    for (key, body) in &resolved.connections {
        let at = resource_name(ManagedKind::Connection, key);
        let marked = mark(ManagedKind::Connection, key);
        let current = marked_connection(state, &scope, marked).await?;
        let overrides = marked.map(|m| m.overrides.as_slice()).unwrap_or_default();
        let input: CreateConnection = match serde_json::from_value(body.clone()) {
            Ok(input) => input,
            Err(e) => {
                problems.add(at, e.to_string());
                continue;
            }
        };
        match current {
            None => match prepare_connection(state, ws.id.clone(), input, false) {
                Ok((conn, _secret)) => {
                    let mut fields = Vec::new();
                    diff(&json!({}), &connection_view(&conn), "", &mut fields);
                    if conn.credentials_sealed.is_some() {
                        fields.push(FieldChange { field: "credentials".into(), from: None, to: None, sensitive: true });
                    }
                    connection_ids.insert(key.clone(), (conn.id.clone(), conn.kind.clone()));
                    key_of.insert(conn.id.to_string(), key.clone());
                    changes.push(ResourceChange {
                        resource: at,
                        action: "create",
                        id: None,
                        fields,
                        note: marked.map(|_| "deleted by hand: made again".to_owned()),
                    });
                    apply.resources.push(ManagedResource {
                        blueprint_id: target.blueprint_id.to_owned(),
                        kind: ManagedKind::Connection,
                        key: key.clone(),
                        resource_id: conn.id.to_string(),
                        overrides: overrides.to_vec(),
                    });
                    apply.create_connections.push(conn);
                }
                Err(e) => problems.api(&at, e),
            },
            Some(current) => {
                connection_ids.insert(key.clone(), (current.id.clone(), current.kind.clone()));
                apply.resources.push(ManagedResource {
                    blueprint_id: target.blueprint_id.to_owned(),
                    kind: ManagedKind::Connection,
                    key: key.clone(),
                    resource_id: current.id.to_string(),
                    overrides: overrides.to_vec(),
                });
                match updated_connection(state, &current, input, overrides, now) {
                    Ok(None) => {}
                    Ok(Some((conn, fields))) => {
                        apply.read_at.push((current.id.to_string(), current.updated_at));
                        changes.push(ResourceChange { resource: at, action: "update", id: Some(conn.id.to_string()), fields, note: None });
                        apply.update_connections.push(conn);
                    }
                    Err(e) => problems.api(&at, e),
                }
            }
        }
    }
    for m in mine.iter().filter(|m| m.kind == ManagedKind::Connection && !resolved.connections.contains_key(&m.key)) {
        let exists = marked_connection(state, &scope, Some(m)).await?.map(|c| c.id);
        if let Some(id) = exists {
            changes.push(delete(ManagedKind::Connection, &m.key, id.as_str(), None));
            apply.delete_connections.push(id);
        }
    }

    // Rules.
    for (key, (connection_key, body)) in &resolved.rules {
        let at = resource_name(ManagedKind::Rule, key);
        let marked = mark(ManagedKind::Rule, key);
        let current = marked_rule(state, &scope, marked).await?;
        let overrides = marked.map(|m| m.overrides.as_slice()).unwrap_or_default();
        let Some((connection_id, kind)) = connection_ids.get(connection_key).cloned() else {
            // The connection had a problem of its own (reported above).
            continue;
        };
        let mut desired = Map::new();
        let given = body.as_object().cloned().unwrap_or_default();
        desired.insert("name".into(), given.get("name").cloned().unwrap_or(Value::Null));
        desired.insert("event".into(), given.get("event").cloned().unwrap_or(Value::Null));
        desired.insert("connection".into(), Value::String(connection_key.clone()));
        desired.insert("action_config".into(), given.get("action_config").cloned().unwrap_or_else(empty_object));
        for field in ["action", "conditions", "active"] {
            if let Some(v) = given.get(field) {
                desired.insert(field.into(), v.clone());
            }
        }
        let base = match &current {
            Some(r) => rule_view(r, &key_of),
            None => json!({"action": "", "conditions": null, "active": true}),
        };
        // Made again, a resource has nothing of the workspace's to keep: the blueprint's values.
        let merged = merge(&base, &desired, if current.is_some() { overrides } else { &[] });
        // An overridden connection is the one the workspace chose, whose type the action is for.
        let kind = match merged["connection"].as_str() {
            Some(c) if !connection_ids.contains_key(c) => match ConnectionId::parse(c) {
                Some(id) => state.store.get_connection(&scope, &id).await?.map(|c| c.kind),
                None => None,
            }
            .unwrap_or(kind),
            _ => kind,
        };
        let checked = match checked_rule_view(state, &kind, merged).await {
            Ok(v) => v,
            Err(e) => {
                problems.api(&at, e);
                continue;
            }
        };
        let resource_id;
        match &current {
            None => {
                let mut fields = Vec::new();
                diff(&json!({}), &checked, "", &mut fields);
                let rule = rule_from_view(RuleId::generate(), ws.id.clone(), &checked, &connection_ids, &connection_id, now, now);
                resource_id = rule.id.to_string();
                changes.push(ResourceChange {
                    resource: at,
                    action: "create",
                    id: None,
                    fields,
                    note: marked.map(|_| "deleted by hand: made again".to_owned()),
                });
                apply.create_rules.push(rule);
            }
            Some(r) => {
                resource_id = r.id.to_string();
                let mut fields = Vec::new();
                diff(&base, &checked, "", &mut fields);
                if !fields.is_empty() {
                    let mut rule =
                        rule_from_view(r.id.clone(), ws.id.clone(), &checked, &connection_ids, &connection_id, r.created_at, now);
                    rule.bound_to = r.bound_to.clone();
                    apply.read_at.push((r.id.to_string(), r.updated_at));
                    changes.push(ResourceChange { resource: at, action: "update", id: Some(r.id.to_string()), fields, note: None });
                    apply.update_rules.push(rule);
                }
            }
        }
        apply.resources.push(ManagedResource {
            blueprint_id: target.blueprint_id.to_owned(),
            kind: ManagedKind::Rule,
            key: key.clone(),
            resource_id,
            overrides: overrides.to_vec(),
        });
    }
    for m in mine.iter().filter(|m| m.kind == ManagedKind::Rule && !resolved.rules.contains_key(&m.key)) {
        let exists = marked_rule(state, &scope, Some(m)).await?.map(|r| r.id);
        if let Some(id) = exists {
            // A rule whose connection goes too goes with it; listed all the same.
            changes.push(delete(ManagedKind::Rule, &m.key, id.as_str(), None));
            apply.delete_rules.push(id);
        }
    }

    // Event types, by name (their key): one declared by hand is taken over.
    for (name, spec) in &resolved.event_types {
        let at = resource_name(ManagedKind::EventType, name);
        if let Some(other) = others.iter().find(|m| m.kind == ManagedKind::EventType && m.resource_id == *name) {
            problems.add(at, format!("is managed by another blueprint ({})", other.blueprint_id));
            continue;
        }
        let marked = mark(ManagedKind::EventType, name);
        let overrides = marked.map(|m| m.overrides.as_slice()).unwrap_or_default();
        let current = state.store.get_event_type(&ws.id, name).await?.filter(|t| t.declared_at.is_some()).map(|t| EventTypeDeclaration {
            workspace_id: ws.id.clone(),
            name: name.clone(),
            description: t.description,
            json_schema: t.json_schema,
            example: t.example,
        });
        let input = DeclareEventType {
            description: spec.description.clone(),
            json_schema: spec.json_schema.clone(),
            example: spec.example.clone(),
        };
        let wanted = match declaration(ws.id.clone(), name.clone(), input) {
            Ok(d) => d,
            Err(e) => {
                problems.api(&at, e);
                continue;
            }
        };
        let base = current.as_ref().map(event_type_view).unwrap_or_else(|| json!({}));
        let desired = event_type_view(&wanted).as_object().cloned().unwrap_or_default();
        let merged = merge(&base, &desired, if current.is_some() { overrides } else { &[] });
        let mut fields = Vec::new();
        diff(&base, &merged, "", &mut fields);
        if !fields.is_empty() {
            let text = |v: Option<&Value>| v.filter(|v| !v.is_null()).map(|v| v.to_string());
            let declared = EventTypeDeclaration {
                workspace_id: ws.id.clone(),
                name: name.clone(),
                description: merged.get("description").and_then(Value::as_str).map(str::to_owned),
                json_schema: text(merged.get("json_schema")),
                example: text(merged.get("example")),
            };
            let (action, note) = match (&current, marked) {
                (None, Some(_)) => ("create", Some("deleted by hand: made again".to_owned())),
                (None, None) => ("create", None),
                (Some(_), None) => ("update", Some("declared by hand: the blueprint takes it over".to_owned())),
                (Some(_), Some(_)) => ("update", None),
            };
            changes.push(ResourceChange { resource: at, action, id: current.as_ref().map(|_| name.clone()), fields, note });
            apply.declare_event_types.push(declared);
        } else if marked.is_none() {
            changes.push(ResourceChange {
                resource: at,
                action: "update",
                id: Some(name.clone()),
                fields: Vec::new(),
                note: Some("declared by hand as the blueprint has it: the blueprint takes it over".to_owned()),
            });
        }
        apply.resources.push(ManagedResource {
            blueprint_id: target.blueprint_id.to_owned(),
            kind: ManagedKind::EventType,
            key: name.clone(),
            resource_id: name.clone(),
            overrides: overrides.to_vec(),
        });
    }
    for m in mine.iter().filter(|m| m.kind == ManagedKind::EventType && !resolved.event_types.contains_key(&m.key)) {
        if state.store.get_event_type(&ws.id, &m.resource_id).await?.is_some_and(|t| t.declared_at.is_some()) {
            changes.push(delete(ManagedKind::EventType, &m.key, &m.resource_id, None));
            apply.undeclare_event_types.push(m.resource_id.clone());
        }
    }

    // A prune removes what no blueprint manages.
    if target.prune {
        let managed: std::collections::HashSet<(ManagedKind, &str)> =
            mine.iter().chain(&others).map(|m| (m.kind, m.resource_id.as_str())).collect();
        let note = Some("not managed by a blueprint: removed by prune".to_owned());
        for c in all_connections(state, &ws.id).await? {
            if !managed.contains(&(ManagedKind::Connection, c.id.as_str())) {
                changes.push(unmanaged_delete(ManagedKind::Connection, c.id.as_str(), note.clone()));
                apply.delete_connections.push(c.id);
            }
        }
        for r in all_rules(state, &ws.id).await? {
            let goes_with_connection = apply.delete_connections.contains(&r.connection_id);
            if !managed.contains(&(ManagedKind::Rule, r.id.as_str())) && !goes_with_connection {
                changes.push(unmanaged_delete(ManagedKind::Rule, r.id.as_str(), note.clone()));
                apply.delete_rules.push(r.id);
            }
        }
        for t in all_event_types(state, &ws.id).await? {
            let declared_here = resolved.event_types.contains_key(&t.name);
            if t.declared_at.is_some() && !declared_here && !managed.contains(&(ManagedKind::EventType, t.name.as_str())) {
                changes.push(unmanaged_delete(ManagedKind::EventType, &t.name, note.clone()));
                apply.undeclare_event_types.push(t.name);
            }
        }
    }

    plan.changes = changes;
    plan.problems = problems.scrubbed(&secrets);
    if !plan.problems.is_empty() {
        return Ok(Prepared { plan, apply: None, writes: false });
    }
    let limits = crate::limits::of(state, &ws.id).await?;
    apply.max_connections = limits.connections;
    apply.rule_caps = RuleCaps { per_workspace: limits.rules_per_workspace, per_event_type: limits.rules_per_event_type };
    let mut before = mine;
    before.sort_by(|x, y| (x.kind, &x.key).cmp(&(y.kind, &y.key)));
    let mut after = apply.resources.clone();
    after.sort_by(|x, y| (x.kind, &x.key).cmp(&(y.kind, &y.key)));
    let writes = !plan.changes.is_empty() || before != after || applied_version != Some(target.version);
    Ok(Prepared { plan, apply: Some(apply), writes })
}

fn delete(kind: ManagedKind, key: &str, id: &str, note: Option<String>) -> ResourceChange {
    ResourceChange { resource: resource_name(kind, key), action: "delete", id: Some(id.to_owned()), fields: Vec::new(), note }
}

fn unmanaged_delete(kind: ManagedKind, id: &str, note: Option<String>) -> ResourceChange {
    ResourceChange {
        resource: format!("unmanaged.{}{}", section(kind), yaml::segment(id)),
        action: "delete",
        id: Some(id.to_owned()),
        fields: Vec::new(),
        note,
    }
}

/// The connection as the blueprint (with the workspace's overrides) has it, and what changes;
/// `None` when nothing does.
fn updated_connection(
    state: &AppState,
    current: &Connection,
    input: CreateConnection,
    overrides: &[String],
    now: switchyard_core::Millis,
) -> ApiResult<Option<(Connection, Vec<FieldChange>)>> {
    if input.kind != current.kind {
        return Err(ApiError::invalid(
            "type",
            format!("is {:?} in the workspace: a connection's type cannot change (give the new one another key)", current.kind),
        ));
    }
    let connector = connector(state, &current.kind)?;
    let (mut config, mut credentials) = (input.config, input.credentials);
    split_secrets(&*connector, &mut config, &mut credentials);
    // The blueprint's credentials go only where the blueprint says: never to an address the
    // workspace chose (stored credentials never follow a connection to a new address).
    let address_overridden = overrides.iter().any(|o| {
        o == "config"
            || DESTINATION_KEYS
                .iter()
                .any(|k| o.strip_prefix("config.").is_some_and(|rest| rest == *k || rest.starts_with(&format!("{k}."))))
    });
    if credentials.is_some() && address_overridden && !is_overridden(overrides, "credentials") {
        return Err(ApiError::invalid(
            "credentials",
            "the workspace owns this connection's address (an override), so the blueprint cannot send its credentials there: \
             override the credentials too, or give the address back to the blueprint",
        ));
    }
    crate::api::common::check_name(&input.name, "name")?;
    let mut desired = Map::new();
    desired.insert("name".into(), Value::String(input.name));
    desired.insert("config".into(), connector.validate_config(&config, &validation_context(state))?);
    if let Some(policy) = input.retry_policy {
        let policy = policy.resolve(current.retry_policy).map_err(|(f, m)| ApiError::invalid(f, m))?;
        desired.insert("retry_policy".into(), json!(policy));
    }
    if let Some(v) = input.timeout_ms {
        desired.insert("timeout_ms".into(), json!(v));
    }
    if let Some(v) = input.max_in_flight {
        desired.insert("max_in_flight".into(), json!(v));
    }
    if let Some(v) = input.rate_limit_per_minute {
        desired.insert("rate_limit_per_minute".into(), json!(v));
    }
    if let Some(breaker) = input.circuit_breaker {
        let breaker = breaker.resolve(current.breaker).map_err(|(f, m)| ApiError::invalid(f, m))?;
        desired.insert("circuit_breaker".into(), json!(breaker));
    }
    let base = connection_view(current);
    let mut merged = merge(&base, &desired, overrides);
    // Overrides inside the config make a new whole: checked again.
    if let Some(config) = merged.get("config").cloned() {
        merged["config"] = connector.validate_config(&config, &validation_context(state))?;
    }
    let mut fields = Vec::new();
    diff(&base, &merged, "", &mut fields);

    let credentials = credentials.filter(|_| !is_overridden(overrides, "credentials"));
    let opened = || -> ApiResult<Option<Value>> {
        current
            .credentials_sealed
            .as_ref()
            .map(|sealed| {
                let plain = state
                    .vault
                    .open(sealed, current.id.as_str())
                    .map_err(|_| ApiError::internal("the stored credentials could not be opened"))?;
                serde_json::from_slice(&plain).map_err(|_| ApiError::internal("the stored credentials are not JSON"))
            })
            .transpose()
    };
    let moved_away = DESTINATION_KEYS.iter().any(|k| current.config.get(*k) != merged["config"].get(*k));
    if moved_away && current.credentials_sealed.is_some() && credentials.is_none() {
        return Err(ApiError::invalid(
            "credentials",
            "must be given when the connection's address changes (url, base_url, instance_url, account or region): \
             stored credentials are never sent to a new address",
        ));
    }
    // Given again for a new address, credentials are sealed again even when they are the same.
    let new_credentials = match credentials {
        Some(given) if moved_away || opened()?.as_ref() != Some(&given) => Some(given),
        _ => None,
    };
    if fields.is_empty() && new_credentials.is_none() {
        return Ok(None);
    }
    let mut conn = current.clone();
    conn.name = merged["name"].as_str().unwrap_or_default().to_owned();
    crate::api::common::check_name(&conn.name, "name")?;
    conn.config = merged["config"].clone();
    let parse = |field: &str| merged.get(field).cloned().unwrap_or(Value::Null);
    conn.retry_policy = serde_json::from_value::<RetryPolicyInput>(parse("retry_policy"))
        .map_err(|e| ApiError::invalid("retry_policy", e.to_string()))?
        .resolve(current.retry_policy)
        .map_err(|(f, m)| ApiError::invalid(f, m))?;
    conn.breaker = serde_json::from_value::<BreakerSettingsInput>(parse("circuit_breaker"))
        .map_err(|e| ApiError::invalid("circuit_breaker", e.to_string()))?
        .resolve(current.breaker)
        .map_err(|(f, m)| ApiError::invalid(f, m))?;
    conn.timeout_ms = merged["timeout_ms"].as_u64().unwrap_or(current.timeout_ms);
    conn.max_in_flight = merged["max_in_flight"].as_u64().and_then(|v| u32::try_from(v).ok()).unwrap_or(current.max_in_flight);
    conn.rate_limit_per_minute = merged["rate_limit_per_minute"].as_u64().and_then(|v| u32::try_from(v).ok());
    check_limits(conn.timeout_ms, conn.max_in_flight, conn.rate_limit_per_minute)?;
    if let Some(creds) = new_credentials {
        conn.credentials_sealed = Some(seal_credentials(state, &*connector, &creds, &conn.id, false)?);
        conn.status = ConnectionStatus::Active;
        fields.push(FieldChange { field: "credentials".into(), from: None, to: None, sensitive: true });
    }
    if connector.signs_requests(&conn.config) && conn.signing_secret_sealed.is_none() {
        let secret = switchyard_core::crypto::generate_signing_secret();
        conn.signing_secret_sealed = Some(state.vault.seal(secret.as_bytes(), conn.id.as_str()));
    }
    conn.updated_at = now;
    Ok(Some((conn, fields)))
}

/// Checks a rule's view as `POST /workspaces/{ws}/rules` checks a rule, and fills in what it
/// fills in (the default action, the action's normalised config).
async fn checked_rule_view(state: &AppState, kind: &str, mut view: Value) -> ApiResult<Value> {
    let name = view["name"].as_str().unwrap_or_default();
    crate::api::common::check_name(name, "name")?;
    let event = view["event"].as_str().unwrap_or_default();
    EventPattern::parse(event).map_err(|m| ApiError::invalid("event", m))?;
    let connector = connector(state, kind)?;
    if view["action"].as_str().is_none_or(str::is_empty) {
        view["action"] = Value::String(connector.default_action());
    }
    if !view["action_config"].is_object() {
        return Err(ApiError::invalid("action_config", "must be an object"));
    }
    let action = view["action"].as_str().unwrap_or_default().to_owned();
    let config = view["action_config"].take();
    view["action_config"] = tokio::task::spawn_blocking(move || connector.validate_action(&action, &config))
        .await
        .map_err(|_| ApiError::invalid("action_config", "could not be checked"))??;
    if !view["conditions"].is_null() {
        Condition::parse(&view["conditions"], "conditions").map_err(|e| ApiError::invalid(e.field, e.message))?;
    }
    if !view["active"].is_boolean() {
        return Err(ApiError::invalid("active", "must be true or false"));
    }
    Ok(view)
}

fn rule_from_view(
    id: RuleId,
    ws: WorkspaceId,
    view: &Value,
    connections: &HashMap<String, (ConnectionId, String)>,
    default_connection: &ConnectionId,
    created_at: switchyard_core::Millis,
    now: switchyard_core::Millis,
) -> Rule {
    let text = |f: &str| view[f].as_str().unwrap_or_default().to_owned();
    // The connection is a key of the blueprint's, or (overridden) the id a person chose.
    let connection_id = view["connection"]
        .as_str()
        .and_then(|c| connections.get(c).map(|(id, _)| id.clone()).or_else(|| ConnectionId::parse(c)))
        .unwrap_or_else(|| default_connection.clone());
    Rule {
        id,
        workspace_id: ws,
        name: text("name"),
        event: text("event"),
        connection_id,
        action: text("action"),
        action_config: view["action_config"].clone(),
        conditions: Some(view["conditions"].clone()).filter(|c| !c.is_null()),
        active: view["active"].as_bool().unwrap_or(true),
        bound_to: None,
        created_at,
        updated_at: now,
    }
}

/// Tells of a change made by hand to a resource a blueprint may manage (a `blueprint.drift`
/// notification, when one does). The change is made already: a failure here is only logged.
pub async fn note_hand_change(state: &AppState, ws: &WorkspaceId, kind: ManagedKind, id: &str, fields: &[&str]) {
    if let Err(e) = state.store.note_hand_change(ws, kind, id, fields, switchyard_core::now_millis()).await {
        tracing::warn!(error = %e, resource = id, "could not record a hand change to a managed resource");
    }
}
