//! A blueprint for one workspace: which workspaces it selects, the variables' values there, and
//! every reference filled in except secrets, which stay references until apply opens them (a
//! plan never holds a secret).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{pieces, yaml, Blueprint, EventTypeSpec, Problem, Reference, Scalar, Targets};

/// A workspace as blueprints see it.
#[derive(Debug, Clone, Copy)]
pub struct Workspace<'a> {
    pub id: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

fn matches(ids: &[String], labels: &BTreeMap<String, String>, ws: Workspace<'_>) -> bool {
    ids.iter().any(|id| id == ws.id) || (!labels.is_empty() && labels.iter().all(|(k, v)| ws.labels.get(k) == Some(v)))
}

/// Whether `targets` select the workspace: it is listed, or it holds every label given.
pub fn selects(targets: &Targets, ws: Workspace<'_>) -> bool {
    matches(&targets.workspaces, &targets.labels, ws)
}

/// What a blueprint asks of one workspace.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub variables: BTreeMap<String, Scalar>,
    pub event_types: BTreeMap<String, EventTypeSpec>,
    /// By key: the body `POST /workspaces/{ws}/connections` takes, credentials still holding
    /// `${secret:NAME}`.
    pub connections: BTreeMap<String, Value>,
    /// By key: the secrets each connection's credentials need.
    pub secrets: BTreeMap<String, Vec<String>>,
    /// By key: the connection's key, and the body `POST /workspaces/{ws}/rules` takes without
    /// `connection_id`.
    pub rules: BTreeMap<String, (String, Value)>,
}

/// The variables' values for `ws`: defaults, then each matching entry of `values` in order.
fn variables(b: &Blueprint, ws: Workspace<'_>) -> (BTreeMap<String, Scalar>, Vec<String>) {
    let mut values: BTreeMap<String, Scalar> = b.variables.iter().filter_map(|(k, v)| v.default.clone().map(|d| (k.clone(), d))).collect();
    for entry in b.values.iter().filter(|e| matches(&e.workspaces, &e.labels, ws)) {
        values.extend(entry.variables.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let missing = b.variables.keys().filter(|k| !values.contains_key(*k)).cloned().collect();
    (values, missing)
}

fn scalar_value(s: &Scalar) -> Value {
    match s {
        Scalar::Bool(b) => Value::Bool(*b),
        Scalar::Number(n) => Value::Number(n.clone()),
        Scalar::Text(t) => Value::String(t.clone()),
    }
}

struct Filler<'a> {
    b: &'a Blueprint,
    variables: &'a BTreeMap<String, Scalar>,
    secrets: Vec<String>,
}

impl Filler<'_> {
    /// `value` with its references filled in; `${secret:...}` is kept as written.
    fn fill(&mut self, value: &Value, at: &str) -> Result<Value, (String, String)> {
        Ok(match value {
            Value::String(s) => {
                let parts = pieces(s).map_err(|m| (at.to_owned(), m))?;
                if let [Err(reference)] = parts.as_slice() {
                    // A string that is one reference takes the value with its type.
                    match reference {
                        Reference::Var(name) => return self.var(name, at).map(scalar_value),
                        Reference::Template(name) => return Ok(Value::String(self.b.templates[name].clone())),
                        Reference::Mapping(name) => return Ok(self.b.mappings[name].clone()),
                        _ => {}
                    }
                }
                let mut out = String::new();
                for part in parts {
                    match part {
                        Ok(text) => out.push_str(&text.replace("${", "$${")),
                        Err(Reference::Var(name)) => out.push_str(&self.var(&name, at)?.to_string().replace("${", "$${")),
                        Err(Reference::Secret(name)) => {
                            out.push_str(&format!("${{secret:{name}}}"));
                            if !self.secrets.contains(&name) {
                                self.secrets.push(name);
                            }
                        }
                        Err(Reference::Env(name)) => {
                            return Err((
                                at.to_owned(),
                                format!("${{env:{name}}} is for the CLI, which fills it in before sending the blueprint"),
                            ))
                        }
                        Err(Reference::Template(_) | Reference::Mapping(_)) => {
                            return Err((at.to_owned(), "templates and mappings are only the whole value of a field".into()))
                        }
                    }
                }
                Value::String(out)
            }
            Value::Array(items) => {
                Value::Array(items.iter().enumerate().map(|(i, v)| self.fill(v, &format!("{at}[{i}]"))).collect::<Result<_, _>>()?)
            }
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    out.insert(k.clone(), self.fill(v, &format!("{at}{}", yaml::segment(k)))?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }

    fn var(&self, name: &str, at: &str) -> Result<&Scalar, (String, String)> {
        self.variables.get(name).ok_or_else(|| (at.to_owned(), format!("the variable {name:?} has no value for this workspace")))
    }
}

/// Credentials as [`resolve`] left them, with each `${secret:NAME}` replaced by `open(NAME)`'s
/// value; the names of the secrets `open` does not have are the error.
pub fn fill_secrets(credentials: &Value, open: &dyn Fn(&str) -> Option<String>) -> Result<Value, Vec<String>> {
    let mut missing = Vec::new();
    let filled = fill_secrets_in(credentials, open, &mut missing);
    if missing.is_empty() {
        Ok(filled)
    } else {
        Err(missing)
    }
}

fn fill_secrets_in(value: &Value, open: &dyn Fn(&str) -> Option<String>, missing: &mut Vec<String>) -> Value {
    match value {
        Value::String(s) => {
            let mut out = String::new();
            // Only text and secrets are left; anything else was filled in by `resolve`.
            for part in pieces(s).unwrap_or_default() {
                match part {
                    Ok(text) => out.push_str(&text),
                    Err(Reference::Secret(name)) => match open(&name) {
                        Some(v) => out.push_str(&v),
                        None if !missing.contains(&name) => missing.push(name),
                        None => {}
                    },
                    Err(_) => {}
                }
            }
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| fill_secrets_in(v, open, missing)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), fill_secrets_in(v, open, missing))).collect()),
        other => other.clone(),
    }
}

/// Puts `$${` back to `${` in text that went through [`Filler::fill`], once secrets are in.
pub fn unescape(value: &mut Value) {
    match value {
        Value::String(s) => *s = s.replace("$${", "${"),
        Value::Array(items) => items.iter_mut().for_each(unescape),
        Value::Object(map) => map.values_mut().for_each(unescape),
        _ => {}
    }
}

/// The blueprint as `ws` should have it (see the module's documentation).
pub fn resolve(b: &Blueprint, ws: Workspace<'_>) -> Result<Resolved, Vec<Problem>> {
    // A variable without a value is a problem only where it is used (reported there).
    let (variables, _) = variables(b, ws);
    let mut problems: Vec<Problem> = Vec::new();
    let mut report = |field: String, message: String| problems.push(Problem { line: 0, column: 0, field, message });
    let mut filler = Filler { b, variables: &variables, secrets: Vec::new() };
    let mut connections = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    for (key, c) in &b.connections {
        let at = format!("connections{}", yaml::segment(key));
        let mut body = serde_json::to_value(c).expect("a connection is JSON");
        let Value::Object(map) = &mut body else { unreachable!("a connection is an object") };
        map.remove("credentials");
        let mut filled = match filler.fill(&body, &at) {
            Ok(mut v) => {
                unescape(&mut v);
                v
            }
            Err((field, message)) => {
                report(field, message);
                continue;
            }
        };
        filler.secrets.clear();
        if let Some(credentials) = &c.credentials {
            match filler.fill(credentials, &format!("{at}.credentials")) {
                Ok(v) => {
                    filled["credentials"] = v;
                }
                Err((field, message)) => report(field, message),
            }
        }
        secrets.insert(key.clone(), std::mem::take(&mut filler.secrets));
        connections.insert(key.clone(), filled);
    }
    let mut rules = BTreeMap::new();
    for (key, r) in &b.rules {
        let at = format!("rules{}", yaml::segment(key));
        let mut body = serde_json::to_value(r).expect("a rule is JSON");
        let Value::Object(map) = &mut body else { unreachable!("a rule is an object") };
        map.remove("connection");
        match filler.fill(&body, &at) {
            Ok(mut filled) => {
                unescape(&mut filled);
                rules.insert(key.clone(), (r.connection.clone(), filled));
            }
            Err((field, message)) => report(field, message),
        }
    }
    if problems.is_empty() {
        Ok(Resolved { variables, event_types: b.event_types.clone(), connections, secrets, rules })
    } else {
        Err(problems)
    }
}
