//! Blueprints: one integration design (connections, rules, templates, mappings, event types)
//! declared once and applied to many workspaces. See docs/blueprints.md.
//!
//! This module reads and checks the documents: YAML or JSON ([`yaml`] keeps each value's line), the
//! typed shape ([`Blueprint`], whose JSON Schema is published as docs/blueprint.schema.json), and
//! what the shape alone cannot say: that a rule's connection is declared, that references name
//! something, that templates compile and mappings parse. Every problem names its line, column and
//! field.

pub mod export;
pub mod plan;
pub mod resolve;
mod yaml;

pub use yaml::{segment as yaml_segment, to_yaml};

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::events::{validate_event_name, EventPattern};
use switchyard_destinations::Registry;

/// The largest blueprint accepted, in bytes.
pub const MAX_DOCUMENT: usize = 1 << 20;
/// The most problems one answer lists (the rest are counted).
pub const MAX_PROBLEMS: usize = 100;
/// The most connections, rules, templates, mappings, event types or variables one blueprint holds.
pub const MAX_ENTRIES: usize = 500;

/// A blueprint document (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Switchyard blueprint", extend("$id" = "https://switchyard.dev/schemas/blueprint-1.json"))]
pub struct Blueprint {
    /// The document format; always 1.
    pub version: u32,
    /// The blueprint's name: 1 to 64 of `a-z 0-9 _ -`, starting with a letter or digit. It marks
    /// the resources it manages in each workspace.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which workspaces it applies to: those listed, and those whose labels match.
    #[serde(default, skip_serializing_if = "Targets::is_empty")]
    pub targets: Targets,
    /// Values the rest of the document uses as `${var:NAME}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, Variable>,
    /// Per-workspace values of the variables, in order: a later entry that matches wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Values>,
    /// Event types each workspace declares, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub event_types: BTreeMap<String, EventTypeSpec>,
    /// Template sources rules use as `${template:NAME}` (the whole value of a field).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub templates: BTreeMap<String, String>,
    /// Field mappings rules use as `${mapping:NAME}` (the whole value of a field).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, serde_json::Map<String, Value>>")]
    pub mappings: BTreeMap<String, Value>,
    /// Connections, by a key that stays the same across workspaces and versions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connections: BTreeMap<String, ConnectionSpec>,
    /// Rules, by key; each names its connection by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rules: BTreeMap<String, RuleSpec>,
}

/// Workspaces by id, and by labels (a workspace matches when it has every label given).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workspaces: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.workspaces.is_empty() && self.labels.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The value where no entry of `values` gives one; without it, every workspace needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Scalar>,
}

/// Values for the workspaces an entry selects, by id or by labels (every label given must match).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Values {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workspaces: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub variables: BTreeMap<String, Scalar>,
}

/// A variable's value: text, a number or a boolean, put into strings where it is referred to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Number(serde_json::Number),
    Text(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTypeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    pub json_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    pub example: Option<Value>,
}

/// A connection, as `POST /workspaces/{ws}/connections` takes it; `credentials` hold references
/// (`${secret:NAME}`, or `${env:NAME}` for the CLI), never the secrets themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    pub config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<BTreeMap<String, CredentialValue>>")]
    pub credentials: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetrySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<BreakerSpec>,
}

/// A credential: text holding a `${secret:NAME}`, or (secret headers, say) a map of them.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum CredentialValue {
    Text(String),
    Map(BTreeMap<String, String>),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cooldown_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successes_to_close: Option<u32>,
}

/// A rule, as `POST /workspaces/{ws}/rules` takes it, naming its connection by key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    /// An event name or pattern (`user.*`, `*.created`, `*`).
    pub event: String,
    /// The key of a connection in this blueprint.
    pub connection: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    pub action_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    pub conditions: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

/// One thing wrong with a document, where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// 1-based; 0 when the problem is the whole document's.
    pub line: usize,
    /// 1-based; 0 with `line`.
    pub column: usize,
    /// The field's path: `rules.alerts.connection`, `event_types["alert.triggered"].example`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.field.is_empty()) {
            (0, true) => write!(f, "{}", self.message),
            (0, false) => write!(f, "{}: {}", self.field, self.message),
            (_, true) => write!(f, "{}:{}: {}", self.line, self.column, self.message),
            (_, false) => write!(f, "{}:{}: {}: {}", self.line, self.column, self.field, self.message),
        }
    }
}

/// Reads a blueprint from YAML or JSON text and checks it (see the module's documentation). The
/// problems come in the document's order. `${env:NAME}` is allowed: the CLI fills it in.
pub fn parse(text: &str, registry: &Registry) -> Result<Blueprint, Vec<Problem>> {
    parse_as(text, registry, true)
}

/// [`parse`] for a document sent to the server, where `${env:NAME}` has nothing to stand for.
pub fn parse_submitted(text: &str, registry: &Registry) -> Result<Blueprint, Vec<Problem>> {
    parse_as(text, registry, false)
}

fn parse_as(text: &str, registry: &Registry, env: bool) -> Result<Blueprint, Vec<Problem>> {
    if text.len() > MAX_DOCUMENT {
        return Err(vec![Problem {
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("the document is {} bytes; the limit is {MAX_DOCUMENT}", text.len()),
        }]);
    }
    let doc = yaml::load(text).map_err(|e| vec![e])?;
    if !doc.value.is_object() {
        return Err(vec![
            doc.problem("", "a blueprint is a mapping (version: 1, name: ..., connections: ...), not a list or a value".into())
        ]);
    }
    let blueprint: Blueprint = match serde_path_to_error::deserialize(&doc.value) {
        Ok(b) => b,
        Err(e) => {
            let path = yaml::path_of(e.path());
            let message = describe_serde(&e.inner().to_string());
            return Err(vec![doc.problem(&path, message)]);
        }
    };
    let mut problems = Vec::new();
    let mut more = 0usize;
    check(&blueprint, registry, env, &mut |path: String, message: String| {
        if problems.len() < MAX_PROBLEMS {
            problems.push(doc.problem(&path, message));
        } else {
            more += 1;
        }
    });
    if problems.is_empty() {
        Ok(blueprint)
    } else {
        problems.sort_by_key(|p| (p.line, p.column));
        if more > 0 {
            problems.push(Problem { line: 0, column: 0, field: String::new(), message: format!("and {more} more problems, not listed") });
        }
        Err(problems)
    }
}

/// serde's messages name Rust types in places; these are the ones a document's author sees.
fn describe_serde(message: &str) -> String {
    // It may quote the value it refused, which can be long.
    let message: String =
        if message.len() > 500 { format!("{}…", message.chars().take(500).collect::<String>()) } else { message.to_owned() };
    message.replace("u32", "a whole number").replace("u64", "a whole number").replace("f64", "a number").replace("invalid type: ", "")
}

/// A key in one of the blueprint's maps, and a secret's name: 1 to 64 of `A-Z a-z 0-9 _ -`.
pub fn valid_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 64 {
        return Err("a key must be 1 to 64 characters".into());
    }
    if let Some(c) = key.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))) {
        return Err(format!("a key may hold letters, digits, _ and -, not {c:?}"));
    }
    Ok(())
}

/// A label's key or value: 1 to 63 of `A-Z a-z 0-9 _ . -` (as Kubernetes labels are).
pub fn valid_label(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 63 {
        return Err("labels and their values are 1 to 63 characters".into());
    }
    if let Some(c) = text.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(format!("labels and their values hold letters, digits, _ . and -, not {c:?}"));
    }
    Ok(())
}

/// Whether `name` can name a blueprint.
pub fn valid_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
        || name.starts_with(['_', '-'])
    {
        return Err("must be 1 to 64 of a-z, 0-9, _ and -, starting with a letter or digit".into());
    }
    Ok(())
}

fn key_path(map: &str, key: &str) -> String {
    format!("{map}{}", yaml::segment(key))
}

fn check(b: &Blueprint, registry: &Registry, env: bool, report: &mut dyn FnMut(String, String)) {
    if b.version != 1 {
        report("version".into(), format!("version {} is not known; this server reads version 1", b.version));
    }
    if let Err(m) = valid_name(&b.name) {
        report("name".into(), m);
    }
    for (i, w) in b.targets.workspaces.iter().enumerate() {
        if switchyard_core::ids::WorkspaceId::parse(w).is_none() {
            report(format!("targets.workspaces[{i}]"), format!("{} is not a workspace id", short(w)));
        }
    }
    check_labels(&b.targets.labels, "targets.labels", report);

    let sizes = [
        ("variables", b.variables.len()),
        ("event_types", b.event_types.len()),
        ("templates", b.templates.len()),
        ("mappings", b.mappings.len()),
        ("connections", b.connections.len()),
        ("rules", b.rules.len()),
    ];
    for (map, n) in sizes {
        if n > MAX_ENTRIES {
            report(map.into(), format!("holds {n} entries; the limit is {MAX_ENTRIES}"));
        }
    }
    for (map, keys) in [
        ("variables", b.variables.keys().collect::<Vec<_>>()),
        ("templates", b.templates.keys().collect()),
        ("mappings", b.mappings.keys().collect()),
        ("connections", b.connections.keys().collect()),
        ("rules", b.rules.keys().collect()),
    ] {
        for key in keys {
            if let Err(m) = valid_key(key) {
                report(key_path(map, key), m);
            }
        }
    }

    for (i, v) in b.values.iter().enumerate() {
        let at = format!("values[{i}]");
        if v.workspaces.is_empty() && v.labels.is_empty() {
            report(at.clone(), "name the workspaces (workspaces) or labels (labels) these values are for".into());
        }
        for (j, w) in v.workspaces.iter().enumerate() {
            if switchyard_core::ids::WorkspaceId::parse(w).is_none() {
                report(format!("{at}.workspaces[{j}]"), format!("{} is not a workspace id", short(w)));
            }
        }
        check_labels(&v.labels, &format!("{at}.labels"), report);
        for name in v.variables.keys() {
            if !b.variables.contains_key(name) {
                report(format!("{at}.variables{}", yaml::segment(name)), unknown("variable", name, b.variables.keys()));
            }
        }
    }

    for (name, spec) in &b.event_types {
        let at = key_path("event_types", name);
        if let Err(m) = validate_event_name(name) {
            report(at.clone(), format!("not an event name: {m}"));
        }
        if let Some(s) = &spec.json_schema {
            if !s.is_object() {
                report(format!("{at}.json_schema"), "must be an object (a JSON Schema)".into());
            }
        }
        if let Some(e) = &spec.example {
            if !e.is_object() {
                report(format!("{at}.example"), "must be an object (an event's payload)".into());
            }
        }
    }

    for (name, source) in &b.templates {
        if let Err(m) = switchyard_destinations::template::check(source) {
            report(key_path("templates", name), m);
        }
    }
    for (name, mapping) in &b.mappings {
        if let Err(e) = serde_json::from_value::<switchyard_destinations::mapping::Mapping>(mapping.clone()) {
            report(key_path("mappings", name), format!("not a mapping: {e}"));
        }
    }

    for (key, c) in &b.connections {
        let at = key_path("connections", key);
        if registry.get(&c.kind).is_none() {
            report(format!("{at}.type"), not_one_of("a connection type", &c.kind, registry.kinds()));
        }
        if c.name.trim().is_empty() || c.name.chars().count() > 200 {
            report(format!("{at}.name"), "must be 1 to 200 characters".into());
        }
        if let Some(config) = &c.config {
            references(config, &format!("{at}.config"), b, Place::Plain, env, report);
        }
        if let Some(credentials) = &c.credentials {
            references(credentials, &format!("{at}.credentials"), b, Place::Credentials, env, report);
        }
        references(&Value::String(c.name.clone()), &format!("{at}.name"), b, Place::Plain, env, report);
    }

    for (key, r) in &b.rules {
        let at = key_path("rules", key);
        if r.name.trim().is_empty() || r.name.chars().count() > 200 {
            report(format!("{at}.name"), "must be 1 to 200 characters".into());
        }
        references(&Value::String(r.name.clone()), &format!("{at}.name"), b, Place::Plain, env, report);
        if !r.event.contains("${") {
            if let Err(m) = EventPattern::parse(&r.event) {
                report(format!("{at}.event"), m);
            }
        }
        references(&Value::String(r.event.clone()), &format!("{at}.event"), b, Place::Plain, env, report);
        match b.connections.get(&r.connection) {
            None => report(format!("{at}.connection"), unknown("connection", &r.connection, b.connections.keys())),
            Some(c) => {
                if let (Some(action), Some(connector)) = (&r.action, registry.get(&c.kind)) {
                    let actions: Vec<String> = connector.catalog().actions.into_iter().map(|a| a.key).collect();
                    if !actions.contains(action) {
                        report(format!("{at}.action"), not_one_of(&format!("a {} action", c.kind), action, actions.iter()));
                    }
                }
            }
        }
        if let Some(config) = &r.action_config {
            references(config, &format!("{at}.action_config"), b, Place::ActionConfig, env, report);
        }
        if let Some(conditions) = &r.conditions {
            references(conditions, &format!("{at}.conditions"), b, Place::Plain, env, report);
        }
    }
}

fn check_labels(labels: &BTreeMap<String, String>, at: &str, report: &mut dyn FnMut(String, String)) {
    for (k, v) in labels {
        if let Err(m) = valid_label(k).and_then(|_| valid_label(v)) {
            report(format!("{at}{}", yaml::segment(k)), m);
        }
    }
}

/// Text from the document as a message quotes it: at most 64 characters.
fn short(text: &str) -> String {
    let mut out: String = text.chars().take(64).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    format!("{out:?}")
}

/// The names a message offers instead: at most 20, each cut short.
fn offered<T: fmt::Display>(known: impl Iterator<Item = T>) -> String {
    let known: Vec<String> = known.map(|k| k.to_string()).collect();
    let mut list: Vec<String> = known.iter().take(20).map(|k| k.chars().take(64).collect()).collect();
    if known.len() > 20 {
        list.push(format!("and {} more", known.len() - 20));
    }
    list.join(", ")
}

fn unknown<'a, T: fmt::Display + 'a>(what: &str, name: &str, known: impl Iterator<Item = T>) -> String {
    let offered = offered(known);
    let name = short(name);
    if offered.is_empty() {
        format!("no {what} {name} is declared, and none are")
    } else {
        format!("no {what} {name} is declared (there are: {offered})")
    }
}

fn not_one_of<T: fmt::Display>(what: &str, name: &str, known: impl Iterator<Item = T>) -> String {
    format!("{} is not {what} (there are: {})", short(name), offered(known))
}

/// Where a string sits, which decides the references it may hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Plain,
    /// A connection's credentials: the only place `${secret:...}` may go.
    Credentials,
    /// A rule's action config: `${template:...}` and `${mapping:...}` may be a field's whole value.
    ActionConfig,
}

/// A reference in a string: `${kind:name}`. `$${` is a literal `${`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Var(String),
    Secret(String),
    Env(String),
    Template(String),
    Mapping(String),
}

/// The pieces of a string: text and references, in order; an error for a `${` that is not one.
pub fn pieces(s: &str) -> Result<Vec<Result<String, Reference>>, String> {
    let mut out: Vec<Result<String, Reference>> = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        text.push_str(&rest[..at]);
        let after = &rest[at..];
        if let Some(tail) = after.strip_prefix("$${") {
            text.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or_else(|| "a ${ is not closed by }; write $${ for a literal ${".to_owned())?;
            let inner = &tail[..end];
            let (kind, name) = inner.split_once(':').ok_or_else(|| {
                format!("${{{}}} is not a reference: write ${{var:NAME}}, ${{secret:NAME}}, ${{env:NAME}}, ${{template:NAME}} or ${{mapping:NAME}}", short(inner))
            })?;
            valid_key(name).map_err(|m| format!("${{{}}}: {m}", short(inner)))?;
            let name = name.to_owned();
            let reference = match kind {
                "var" => Reference::Var(name),
                "secret" => Reference::Secret(name),
                "env" => Reference::Env(name),
                "template" => Reference::Template(name),
                "mapping" => Reference::Mapping(name),
                other => return Err(format!("{} is not a kind of reference: use var, secret, env, template or mapping", short(other))),
            };
            if !text.is_empty() {
                out.push(Ok(std::mem::take(&mut text)));
            }
            out.push(Err(reference));
            rest = &tail[end + 1..];
        } else {
            text.push('$');
            rest = &after[1..];
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Ok(text));
    }
    Ok(out)
}

/// Fills in every `${env:NAME}` of the connections and rules (where references are read) from
/// `env`, as the CLI does before it sends a blueprint (the server has no environment to take them
/// from). The value is put in as text (a `${` in it stays text); the other references are left as
/// they are. Each variable that is not set is a problem.
pub fn fill_env(b: &Blueprint, env: &dyn Fn(&str) -> Option<String>) -> Result<(Blueprint, bool), Vec<String>> {
    fn walk(v: &mut Value, env: &dyn Fn(&str) -> Option<String>, used: &mut bool, missing: &mut Vec<String>) {
        match v {
            Value::String(s) => {
                let Ok(parts) = pieces(s) else { return };
                if !parts.iter().any(|p| matches!(p, Err(Reference::Env(_)))) {
                    return;
                }
                *used = true;
                let mut out = String::new();
                for part in parts {
                    match part {
                        Ok(text) => out.push_str(&text.replace("${", "$${")),
                        Err(Reference::Env(name)) => match env(&name) {
                            // A `$` at the end would join a `{` or reference after it.
                            Some(value) if value.ends_with('$') => {
                                missing.push(format!("{name} (its value ends with $, which cannot be written before what follows it)"))
                            }
                            Some(value) => out.push_str(&value.replace("${", "$${")),
                            None => {
                                if !missing.contains(&name) {
                                    missing.push(name);
                                }
                            }
                        },
                        Err(Reference::Var(n)) => out.push_str(&format!("${{var:{n}}}")),
                        Err(Reference::Secret(n)) => out.push_str(&format!("${{secret:{n}}}")),
                        Err(Reference::Template(n)) => out.push_str(&format!("${{template:{n}}}")),
                        Err(Reference::Mapping(n)) => out.push_str(&format!("${{mapping:{n}}}")),
                    }
                }
                *s = out;
            }
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, env, used, missing)),
            Value::Object(map) => map.values_mut().for_each(|i| walk(i, env, used, missing)),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(b).expect("a blueprint is JSON");
    let (mut used, mut missing) = (false, Vec::new());
    for section in ["connections", "rules"] {
        if let Some(v) = value.get_mut(section) {
            walk(v, env, &mut used, &mut missing);
        }
    }
    if !missing.is_empty() {
        return Err(missing
            .into_iter()
            .map(|n| {
                if n.contains(' ') {
                    format!("the environment variable {n}")
                } else {
                    format!("the environment variable {n} (for ${{env:{n}}}) is not set")
                }
            })
            .collect());
    }
    let filled = serde_json::from_value(value).map_err(|e| vec![e.to_string()])?;
    Ok((filled, used))
}

fn references(value: &Value, at: &str, b: &Blueprint, place: Place, env: bool, report: &mut dyn FnMut(String, String)) {
    let mut path = at.to_owned();
    references_in(value, &mut path, b, place, env, report);
}

/// Walks `value` with its path in one buffer (a segment pushed going down, cut going up), so a
/// wide, deep value costs its size, not its size times its depth.
fn references_in(value: &Value, at: &mut String, b: &Blueprint, place: Place, env: bool, report: &mut dyn FnMut(String, String)) {
    match value {
        Value::String(s) => {
            let pieces = match pieces(s) {
                Ok(p) => p,
                Err(m) => return report(at.clone(), m),
            };
            let whole = pieces.len() == 1;
            let (mut secrets, mut others) = (0, 0);
            for piece in pieces {
                let Err(reference) = piece else { continue };
                // An env reference is reported as such; a variable's value is in the document.
                others += usize::from(matches!(reference, Reference::Env(_)));
                match reference {
                    Reference::Var(name) if !b.variables.contains_key(&name) => {
                        report(at.clone(), unknown("variable", &name, b.variables.keys()));
                    }
                    Reference::Env(_) if place == Place::Credentials => {
                        report(at.clone(), "credentials take ${secret:NAME}, not ${env:NAME}: a value put in the document would be stored with it, unsealed".into());
                    }
                    Reference::Env(name) if !env => {
                        report(at.clone(), format!("${{env:{name}}} is filled in by the CLI (switchyard blueprint ...) before a blueprint is sent; the server has no environment to take it from"));
                    }
                    Reference::Secret(_) if place != Place::Credentials => {
                        report(at.clone(), "${secret:...} goes only in a connection's credentials, which are sealed".into());
                    }
                    Reference::Secret(_) => secrets += 1,
                    Reference::Template(name) | Reference::Mapping(name) if place != Place::ActionConfig || !whole => {
                        report(at.clone(), format!("${{template:{name}}} and ${{mapping:{name}}} are only the whole value of a field of a rule's action_config"));
                    }
                    Reference::Template(name) if !b.templates.contains_key(&name) => {
                        report(at.clone(), unknown("template", &name, b.templates.keys()));
                    }
                    Reference::Mapping(name) if !b.mappings.contains_key(&name) => {
                        report(at.clone(), unknown("mapping", &name, b.mappings.keys()));
                    }
                    _ => {}
                }
            }
            if place == Place::Credentials && secrets == 0 && others == 0 && !s.is_empty() {
                report(
                    at.clone(),
                    "credentials hold ${secret:NAME} references, never values: the document is stored as written, unsealed; \
                     set the value with PUT /workspaces/{ws}/secrets/NAME (or `switchyard secrets set NAME`)"
                        .into(),
                );
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                references_in(v, at, b, place, env, report);
                at.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let len = at.len();
                at.push_str(&yaml::segment(k));
                references_in(v, at, b, place, env, report);
                at.truncate(len);
            }
        }
        // Numbers and booleans in credentials are values too.
        Value::Number(_) | Value::Bool(_) if place == Place::Credentials => {
            report(at.clone(), "credentials hold ${secret:NAME} references, never values".into());
        }
        _ => {}
    }
}

/// The JSON Schema of a blueprint document, as published in docs/blueprint.schema.json.
pub fn json_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(Blueprint)).expect("a schema is JSON")
}

#[cfg(test)]
mod tests;
