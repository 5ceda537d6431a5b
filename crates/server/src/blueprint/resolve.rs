//! A blueprint for one workspace: which workspaces it selects, the variables' values there, and
//! every reference filled in. Secrets come from a function the caller gives: a plan gives one
//! that writes the reference back (`${secret:NAME}`), so a plan never holds a secret; apply gives
//! one that opens the workspace's secret. Each string is read once, so a value put in (a
//! variable's, a secret's) is never read again for references.

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
    /// By key: the body `POST /workspaces/{ws}/connections` takes.
    pub connections: BTreeMap<String, Value>,
    /// By key: the secrets each connection's credentials use.
    pub secrets: BTreeMap<String, Vec<String>>,
    /// By key: the connection's key, and the body `POST /workspaces/{ws}/rules` takes without
    /// `connection_id`.
    pub rules: BTreeMap<String, (String, Value)>,
}

/// A plan's secrets: the reference itself, never the value.
pub fn referenced(name: &str) -> Option<String> {
    Some(format!("${{secret:{name}}}"))
}

/// The variables' values for `ws`: defaults, then each matching entry of `values` in order.
fn variables(b: &Blueprint, ws: Workspace<'_>) -> BTreeMap<String, Scalar> {
    let mut values: BTreeMap<String, Scalar> = b.variables.iter().filter_map(|(k, v)| v.default.clone().map(|d| (k.clone(), d))).collect();
    for entry in b.values.iter().filter(|e| matches(&e.workspaces, &e.labels, ws)) {
        values.extend(entry.variables.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    values
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
    secret: &'a dyn Fn(&str) -> Option<String>,
    /// The secrets used since last taken.
    used: Vec<String>,
}

type Failed = (String, String);

impl Filler<'_> {
    /// `value` with its references filled in (see the module's documentation).
    fn fill(&mut self, value: &Value, at: &str) -> Result<Value, Failed> {
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
                        Ok(text) => out.push_str(&text),
                        Err(Reference::Var(name)) => out.push_str(&self.var(&name, at)?.to_string()),
                        Err(Reference::Secret(name)) => {
                            let value = (self.secret)(&name).ok_or_else(|| {
                                (at.to_owned(), format!("the workspace has no secret {name:?} (PUT /workspaces/{{ws}}/secrets/{name})"))
                            })?;
                            out.push_str(&value);
                            if !self.used.contains(&name) {
                                self.used.push(name);
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

    fn var(&self, name: &str, at: &str) -> Result<&Scalar, Failed> {
        self.variables.get(name).ok_or_else(|| (at.to_owned(), format!("the variable {name:?} has no value for this workspace")))
    }
}

/// The blueprint as `ws` should have it, with `secret` giving each `${secret:NAME}` (see the
/// module's documentation). Every problem is reported, without lines (the stored document has
/// none); a variable without a value is a problem only where it is used.
pub fn resolve(b: &Blueprint, ws: Workspace<'_>, secret: &dyn Fn(&str) -> Option<String>) -> Result<Resolved, Vec<Problem>> {
    let variables = variables(b, ws);
    let mut problems: Vec<Problem> = Vec::new();
    let mut report = |(field, message): Failed| problems.push(Problem { line: 0, column: 0, field, message });
    let mut filler = Filler { b, variables: &variables, secret, used: Vec::new() };
    let mut connections = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    for (key, c) in &b.connections {
        let at = format!("connections{}", yaml::segment(key));
        match filler.fill(&serde_json::to_value(c).expect("a connection is JSON"), &at) {
            Ok(filled) => {
                connections.insert(key.clone(), filled);
            }
            Err(failed) => report(failed),
        }
        secrets.insert(key.clone(), std::mem::take(&mut filler.used));
    }
    let mut rules = BTreeMap::new();
    for (key, r) in &b.rules {
        let at = format!("rules{}", yaml::segment(key));
        let mut body = serde_json::to_value(r).expect("a rule is JSON");
        if let Value::Object(map) = &mut body {
            map.remove("connection");
        }
        match filler.fill(&body, &at) {
            Ok(filled) => {
                rules.insert(key.clone(), (r.connection.clone(), filled));
            }
            Err(failed) => report(failed),
        }
    }
    if problems.is_empty() {
        Ok(Resolved { variables, event_types: b.event_types.clone(), connections, secrets, rules })
    } else {
        Err(problems)
    }
}
