//! A workspace written as a blueprint, so that a setup built by hand becomes the design the others
//! start from. Credentials become references to secrets (`${secret:slack_access_token}`), never
//! values: the secrets are named, and each workspace the blueprint is applied to sets its own.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};
use switchyard_core::model::{Connection, EventType, Rule, Workspace};
use switchyard_store::{ManagedKind, ManagedResource};

use super::{Blueprint, BreakerSpec, ConnectionSpec, EventTypeSpec, RetrySpec, RuleSpec};
use crate::state::AppState;

/// Keys an OAuth flow keeps beside a token: not the customer's to copy.
const TOKEN_KEYS: &[&str] = &["oauth_provider", "refresh_token", "expires_at", "obtained_at", "scope"];

/// A workspace, exported.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Exported {
    /// The blueprint (see docs/blueprint.schema.json).
    #[schema(value_type = Object)]
    pub document: Value,
    /// The same, as YAML: what `switchyard blueprint export` writes.
    pub yaml: String,
    /// The secrets each workspace needs before the blueprint is applied to it.
    pub secrets: Vec<String>,
    /// What could not be written as it is, and why.
    pub notes: Vec<String>,
}

/// Text as a blueprint writes it: a literal `${` is `$${`.
fn literal(s: &str) -> String {
    s.replace("${", "$${")
}

/// Every string of a value, written as literals.
fn literals(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(literal(s)),
        Value::Array(items) => Value::Array(items.iter().map(literals).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), literals(v))).collect()),
        other => other.clone(),
    }
}

/// A key from a name (`Team Slack` → `team_slack`), unique among `taken`.
fn key_for(name: &str, taken: &mut HashSet<String>) -> String {
    let mut base: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '_' })
        .collect::<String>()
        .split('_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    base.truncate(48);
    if base.is_empty() {
        base = "item".into();
    }
    let mut key = base.clone();
    let mut n = 2;
    while !taken.insert(key.clone()) {
        key = format!("{base}_{n}");
        n += 1;
    }
    key
}

/// A blueprint name from a workspace name: `a-z 0-9 _ -`, starting with a letter or digit.
pub fn name_for(workspace: &str) -> String {
    let name = key_for(workspace, &mut HashSet::new()).replace('_', "-");
    if name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name
    } else {
        format!("ws{name}")
    }
}

fn parse_json(text: &Option<String>) -> Option<Value> {
    text.as_deref().and_then(|t| serde_json::from_str(t).ok())
}

/// The blueprint of a workspace's connections, rules and declared event types.
pub fn export(
    state: &AppState,
    ws: &Workspace,
    name: &str,
    connections: &[Connection],
    rules: &[Rule],
    event_types: &[EventType],
    managed: &[ManagedResource],
) -> (Blueprint, Vec<String>, Vec<String>) {
    let mut notes = Vec::new();
    let mut secrets = Vec::new();
    // Keys: those of the resources a blueprint made first (kept, made unique if two blueprints
    // used one key), then keys from names for the rest.
    let keys_for = |kind: ManagedKind, ids: &[(String, String)]| -> BTreeMap<String, String> {
        let mut taken = HashSet::new();
        let mut out = BTreeMap::new();
        for (id, _) in ids {
            if let Some(m) = managed.iter().find(|m| m.kind == kind && m.resource_id == *id) {
                let key = if taken.insert(m.key.clone()) { m.key.clone() } else { key_for(&m.key, &mut taken) };
                out.insert(id.clone(), key);
            }
        }
        for (id, name) in ids {
            if !out.contains_key(id) {
                out.insert(id.clone(), key_for(name, &mut taken));
            }
        }
        out
    };
    let mut sorted: Vec<&Connection> = connections.iter().collect();
    sorted.sort_by_key(|c| c.created_at);
    let connection_keys = keys_for(ManagedKind::Connection, &sorted.iter().map(|c| (c.id.to_string(), c.name.clone())).collect::<Vec<_>>());
    let mut secret_names = HashSet::new();
    let mut out_connections = BTreeMap::new();
    for c in sorted {
        let key = connection_keys[c.id.as_str()].clone();
        let opened: Option<Map<String, Value>> = c
            .credentials_sealed
            .as_ref()
            .and_then(|sealed| state.vault.open(sealed, c.id.as_str()).ok())
            .and_then(|plain| serde_json::from_slice(&plain).ok());
        let credentials = opened.map(|creds| {
            if creds.contains_key("oauth_provider") {
                notes.push(format!(
                    "connections.{key}: connected with OAuth; its tokens are the customer's: connect it again in each workspace, or set the secret {key}_access_token"
                ));
            }
            let mut refs = Map::new();
            for (field, value) in creds.iter().filter(|(k, _)| !TOKEN_KEYS.contains(&k.as_str())) {
                let mut reference = |name: String| {
                    let secret = key_for(&name, &mut secret_names);
                    secrets.push(secret.clone());
                    Value::String(format!("${{secret:{secret}}}"))
                };
                match value {
                    Value::String(_) => {
                        refs.insert(field.clone(), reference(format!("{key}_{field}")));
                    }
                    // Secret headers, say: a reference per entry.
                    Value::Object(entries) => {
                        let inner: Map<String, Value> = entries
                            .iter()
                            .filter(|(_, v)| v.is_string())
                            .map(|(name, _)| (name.clone(), reference(format!("{key}_{field}_{name}"))))
                            .collect();
                        refs.insert(field.clone(), Value::Object(inner));
                    }
                    _ => notes.push(format!("connections.{key}: credentials.{field} is not text, which a blueprint cannot refer to: left out")),
                }
            }
            Value::Object(refs)
        });
        if c.rate_limit_per_minute.is_none() {
            let default = state.registry.get(&c.kind).and_then(|k| k.catalog().limits.rate_limit_per_minute);
            if let Some(default) = default {
                notes.push(format!(
                    "connections.{key}: has no rate limit, which a blueprint cannot say yet: it will have the integration's {default} per minute"
                ));
            }
        }
        out_connections.insert(
            key,
            ConnectionSpec {
                kind: c.kind.clone(),
                name: literal(&c.name),
                config: Some(literals(&c.config)).filter(|v| v.as_object().is_none_or(|m| !m.is_empty())),
                credentials: credentials.filter(|v| v.as_object().is_some_and(|m| !m.is_empty())),
                retry_policy: Some(RetrySpec {
                    max_attempts: Some(c.retry_policy.max_attempts),
                    initial_delay_ms: Some(c.retry_policy.initial_delay_ms),
                    max_delay_ms: Some(c.retry_policy.max_delay_ms),
                }),
                timeout_ms: Some(c.timeout_ms),
                max_in_flight: Some(c.max_in_flight),
                rate_limit_per_minute: c.rate_limit_per_minute,
                circuit_breaker: Some(BreakerSpec {
                    enabled: Some(c.breaker.enabled),
                    failure_ratio: Some(c.breaker.failure_ratio),
                    min_requests: Some(c.breaker.min_requests),
                    window_seconds: Some(c.breaker.window_seconds),
                    cooldown_seconds: Some(c.breaker.cooldown_seconds),
                    max_cooldown_seconds: Some(c.breaker.max_cooldown_seconds),
                    successes_to_close: Some(c.breaker.successes_to_close),
                }),
            },
        );
    }
    let mut sorted: Vec<&Rule> = rules.iter().collect();
    sorted.sort_by_key(|r| r.created_at);
    let mut exported = Vec::new();
    for r in sorted {
        if let Some(bound) = &r.bound_to {
            notes.push(format!(
                "the rule {:?} is bound to {} {}, one of this workspace's records: left out",
                r.name, bound.resource, bound.resource_id
            ));
            continue;
        }
        if connection_keys.contains_key(r.connection_id.as_str()) {
            exported.push(r);
        }
    }
    let rule_keys = keys_for(ManagedKind::Rule, &exported.iter().map(|r| (r.id.to_string(), r.name.clone())).collect::<Vec<_>>());
    let mut out_rules = BTreeMap::new();
    for r in exported {
        out_rules.insert(
            rule_keys[r.id.as_str()].clone(),
            RuleSpec {
                name: literal(&r.name),
                event: r.event.clone(),
                connection: connection_keys[r.connection_id.as_str()].clone(),
                action: Some(r.action.clone()),
                action_config: Some(literals(&r.action_config)).filter(|v| v.as_object().is_none_or(|m| !m.is_empty())),
                conditions: r.conditions.as_ref().map(literals),
                active: Some(r.active),
            },
        );
    }
    let out_event_types = event_types
        .iter()
        .filter(|t| t.declared_at.is_some())
        .map(|t| {
            (
                t.name.clone(),
                // Event types are taken as written (references are read in connections and
                // rules only): nothing to escape.
                EventTypeSpec {
                    description: t.description.clone(),
                    json_schema: parse_json(&t.json_schema),
                    example: parse_json(&t.example),
                },
            )
        })
        .collect();
    secrets.sort();
    secrets.dedup();
    let blueprint = Blueprint {
        version: 1,
        name: name.to_owned(),
        description: Some(format!("Exported from the workspace {:?} ({})", ws.name, ws.id)),
        targets: Default::default(),
        variables: BTreeMap::new(),
        values: Vec::new(),
        event_types: out_event_types,
        templates: BTreeMap::new(),
        mappings: BTreeMap::new(),
        connections: out_connections,
        rules: out_rules,
    };
    (blueprint, secrets, notes)
}
